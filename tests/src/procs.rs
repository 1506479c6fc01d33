//! The real `gpuflow-node` and `gpuflow` binaries as child processes.
//!
//! Finding the binaries: cargo gives an integration test `CARGO_BIN_EXE_<name>` only for the
//! binaries of its own package, and these live in `node/` and `client/`. So [`bin`] runs
//! `cargo build -p gpuflow-node -p gpuflow` once per test process, with the profile and target
//! directory of the running test executable (`target/<profile>/deps/it-…`), and returns
//! `target/<profile>/<name>`. Under `cargo test --workspace` the binaries were just built and
//! the call is a quick no-op; run alone (`cargo test -p gpuflow-tests`) it builds them. Set
//! `GPUFLOW_BIN_DIR` to a directory holding prebuilt binaries to skip the build.
//!
//! Every child runs with a cleared environment (only `PATH`, a temporary `HOME` and what the
//! test passes), so a developer's `GPUFLOW_*` variables or `~/.config/gpuflow` never leak in,
//! and with `kill_on_drop`, so a failing test leaves no process behind.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use alloy::primitives::Address;
use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Longest a node may take from spawn to `ready`.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest a node may take to stop after SIGTERM.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// Directory of the built binaries; builds them the first time.
fn bin_dir() -> anyhow::Result<PathBuf> {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    DIR.get_or_init(|| build().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

fn build() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("GPUFLOW_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let exe = std::env::current_exe().context("locating the test executable")?;
    // target/<profile>/deps/<test exe>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("test executable is not under target/<profile>/deps")?
        .to_owned();
    let target_dir = profile_dir.parent().context("no target directory")?;
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev".to_owned(),
        Some(other) => other.to_owned(),
        None => bail!(
            "cannot tell the build profile from {}",
            profile_dir.display()
        ),
    };
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut cmd = std::process::Command::new(cargo);
    // Cargo gives this process the test package's CARGO_PKG_* / CARGO_MANIFEST_* variables;
    // passed on, they would make the nested build see a changed environment and rebuild
    // half the dependency tree (and the next plain `cargo build` rebuild it back).
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        if [
            "CARGO_PKG_",
            "CARGO_MANIFEST_",
            "CARGO_CRATE_",
            "CARGO_BIN_",
            "CARGO_TARGET_TMPDIR",
            "CARGO_PRIMARY_PACKAGE",
        ]
        .iter()
        .any(|p| k.starts_with(p))
        {
            cmd.env_remove(&key);
        }
    }
    let status = cmd
        .current_dir(&workspace)
        .args([
            "build",
            "--quiet",
            "-p",
            "gpuflow-node",
            "-p",
            "gpuflow",
            "--profile",
        ])
        .arg(&profile)
        .arg("--target-dir")
        .arg(target_dir)
        .status()
        .context("running cargo build for the node and CLI binaries")?;
    if !status.success() {
        bail!("cargo build -p gpuflow-node -p gpuflow failed ({status})");
    }
    Ok(profile_dir)
}

/// Path of the built binary `name` (`gpuflow-node` or `gpuflow`).
pub fn bin(name: &str) -> anyhow::Result<PathBuf> {
    let p = bin_dir()?.join(name);
    if !p.is_file() {
        bail!("{} not found after building", p.display());
    }
    Ok(p)
}

/// A command for `name` with a clean environment rooted at `home` (killed when dropped).
pub fn command(name: &str, home: &Path) -> anyhow::Result<Command> {
    let mut cmd = Command::new(bin(name)?);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        // RUST_LOG passes through, so a failing run can be repeated with the programs' logs.
        .envs(std::env::var_os("RUST_LOG").map(|v| ("RUST_LOG", v)))
        .current_dir(home)
        .kill_on_drop(true);
    Ok(cmd)
}

/// A node config: TOML text for `gpuflow-node run --config`.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// Declared GPUs: (model, count, price per GPU-hour as a decimal string).
    pub gpus: Vec<(String, u32, String)>,
    /// Region code.
    pub region: String,
    /// Bootstrap multiaddrs.
    pub bootstrap: Vec<String>,
    /// Hex private key of the host wallet (for `GPUFLOW_HOST_PRIVATE_KEY`).
    pub wallet_key: String,
    /// The escrow contract (a placeholder unless the node runs against a [`TestChain`]).
    ///
    /// [`TestChain`]: crate::chain::TestChain
    pub escrow: Address,
    /// The stablecoin contract (a placeholder, like `escrow`).
    pub token: Address,
    /// `[offers] min_duration_secs`; `None` leaves the node's default (10 minutes). Tests
    /// default to 1 s so a lease can be funded for a few seconds and run out.
    pub min_duration_secs: Option<u64>,
    /// `[offers] templates` (default `["pytorch"]`); empty: the offer runs any `--image`.
    pub templates: Vec<String>,
}

impl NodeSpec {
    /// One group of `count` × `model` at `price` per GPU-hour, region DE, wallet key `0x11…`.
    pub fn new(model: &str, count: u32, price: &str) -> Self {
        Self {
            gpus: vec![(model.into(), count, price.into())],
            region: "DE".into(),
            bootstrap: Vec::new(),
            wallet_key: format!("0x{}", "11".repeat(32)),
            escrow: Address::repeat_byte(0xee),
            token: Address::repeat_byte(0x70),
            min_duration_secs: Some(1),
            templates: vec!["pytorch".into()],
        }
    }

    /// The config file text, listening (p2p and the local API) on 127.0.0.1 with OS-assigned
    /// ports, so nodes of parallel tests never collide.
    pub fn toml(&self, data_dir: &Path) -> String {
        let mut s = format!(
            "data_dir = {:?}\nlisten = [\"/ip4/127.0.0.1/tcp/0\"]\nbootstrap = {:?}\n\
             [chain]\nchain_id = 31337\nescrow = \"{:#x}\"\ntoken = \"{:#x}\"\ntoken_decimals = 6\n\
             [machine]\nregion = {:?}\ncpu_cores = 16\nram_mib = 65536\n\
             [offers]\ntemplates = {:?}\n{}[gpu]\ndetection = \"declared\"\n\
             [api]\naddr = \"127.0.0.1:0\"\n[runtime]\nkind = \"process\"\n",
            data_dir.display().to_string(),
            self.bootstrap,
            self.escrow,
            self.token,
            self.region,
            self.templates,
            self.min_duration_secs
                .map(|m| format!("min_duration_secs = {m}\n"))
                .unwrap_or_default(),
        );
        s.push_str("[pricing]\n");
        for (model, _, price) in &self.gpus {
            s.push_str(&format!("{model} = {price:?}\n"));
        }
        for (model, count, _) in &self.gpus {
            s.push_str(&format!(
                "[[gpu.declared]]\nmodel = {model:?}\ncount = {count}\nvram_mib = 24564\n\
                 cuda = \"12.4\"\ndriver = \"550.54.14\"\n"
            ));
        }
        s
    }
}

/// A running `gpuflow-node`; killed when dropped, stopped gracefully by [`Node::stop`].
#[derive(Debug)]
pub struct Node {
    child: Child,
    /// Its data directory (database, key, log).
    pub data_dir: PathBuf,
    /// Its peer id.
    pub peer_id: String,
    /// Its listen multiaddrs with `/p2p/<peer id>`, as printed on stdout.
    pub addrs: Vec<String>,
}

impl Node {
    /// Starts a node with `spec` on `data_dir` (created if needed; reuse it to restart) and
    /// waits for its `ready` line. Its stderr goes to `<data_dir>/node.log`.
    pub async fn start(spec: &NodeSpec, data_dir: &Path) -> anyhow::Result<Self> {
        let mut cmd = node_command(spec, data_dir)?;
        cmd.env("GPUFLOW_HOST_PRIVATE_KEY", &spec.wallet_key);
        let started = spawn_node(cmd, data_dir).await?;
        Ok(Self {
            child: started.child,
            data_dir: data_dir.to_owned(),
            peer_id: started.peer_id,
            addrs: started.addrs,
        })
    }

    /// The TCP listen multiaddr.
    pub fn tcp_addr(&self) -> &str {
        self.addrs
            .iter()
            .find(|a| a.contains("/tcp/"))
            .map_or("", String::as_str)
    }

    /// The node's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("node.log")).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for the node to exit.
    pub async fn stop(mut self) -> anyhow::Result<ExitStatus> {
        let data_dir = self.data_dir.clone();
        terminate(&mut self.child, || {
            std::fs::read_to_string(data_dir.join("node.log")).unwrap_or_default()
        })
        .await
    }
}

/// `gpuflow-node run --config <data_dir>/node.toml` with `spec` written there, in a clean
/// environment rooted at `data_dir` (`RUST_LOG=info`; the caller adds the key and the rest).
pub fn node_command(spec: &NodeSpec, data_dir: &Path) -> anyhow::Result<Command> {
    std::fs::create_dir_all(data_dir)?;
    let config = data_dir.join("node.toml");
    std::fs::write(&config, spec.toml(data_dir))?;
    let mut cmd = command("gpuflow-node", data_dir)?;
    cmd.env("RUST_LOG", "info")
        .arg("run")
        .arg("--config")
        .arg(&config);
    Ok(cmd)
}

/// What a node printed before `ready`.
#[derive(Debug)]
pub struct Started {
    /// The node process (killed when dropped).
    pub child: Child,
    /// Its peer id, from the `ready` line.
    pub peer_id: String,
    /// Its listen multiaddrs with `/p2p/<peer id>`, from the `listening` lines.
    pub addrs: Vec<String>,
    /// The API's base URL, from the `api` line, if it printed one.
    pub api: Option<String>,
}

/// Spawns the node command `cmd` (see [`node_command`]) and waits up to [`START_TIMEOUT`] for
/// its `ready` line. Its stderr is appended to `<data_dir>/node.log` (a restarted node's log
/// follows the first run's); the error of a failed start carries that log.
pub async fn spawn_node(mut cmd: Command, data_dir: &Path) -> anyhow::Result<Started> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data_dir.join("node.log"))?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .context("spawning gpuflow-node")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let mut addrs = Vec::new();
    let mut api = None;
    let ready = tokio::time::timeout(START_TIMEOUT, async {
        while let Some(line) = lines.next_line().await? {
            if let Some(a) = line.strip_prefix("listening ") {
                addrs.push(a.to_owned());
            } else if let Some(a) = line.strip_prefix("api ") {
                api = Some(a.to_owned());
            } else if let Some(p) = line.strip_prefix("ready ") {
                return Ok::<_, anyhow::Error>(Some(p.to_owned()));
            }
        }
        Ok(None)
    })
    .await;
    let log_text = || std::fs::read_to_string(data_dir.join("node.log")).unwrap_or_default();
    let peer_id = match ready {
        Ok(Ok(Some(p))) => p,
        Ok(Ok(None)) => bail!("gpuflow-node exited before `ready`; log:\n{}", log_text()),
        Ok(Err(e)) => return Err(e),
        Err(_) => bail!(
            "gpuflow-node not ready after {START_TIMEOUT:?}; log:\n{}",
            log_text()
        ),
    };
    // Keep draining stdout so the node never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(Started {
        child,
        peer_id,
        addrs,
        api,
    })
}

/// Sends SIGTERM to `child` and waits up to [`STOP_TIMEOUT`] for it to exit.
pub async fn terminate(child: &mut Child, log: impl Fn() -> String) -> anyhow::Result<ExitStatus> {
    let pid = child.id().context("the process already exited")?;
    let pid = i32::try_from(pid).context("pid out of range")?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .context("sending SIGTERM")?;
    match tokio::time::timeout(STOP_TIMEOUT, child.wait()).await {
        Ok(status) => Ok(status?),
        Err(_) => bail!(
            "did not stop within {STOP_TIMEOUT:?} of SIGTERM; log:\n{}",
            log()
        ),
    }
}
