//! A host: `gpuflow-node run` against a [`TestChain`] with the lease engine (or without an RPC,
//! quoting only), started, restarted on the same data directory, stopped with SIGTERM or killed
//! with SIGKILL; and the workloads it launches ([`WorkloadGuard`], [`http_get`]).

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use alloy::primitives::Address;
use anyhow::Context;
use gpuflow_p2p::{Multiaddr, PeerId};
use gpuflow_protocol::offer::OfferId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Child;

use crate::chain::{HOST, TestChain};
use crate::poll::poll;
use crate::procs::{NodeSpec, node_command, spawn_node, terminate};

/// GPU model every test host declares; its offer is named after it.
pub const GPU_MODEL: &str = "RTX_4090";

/// How a host is started. `HostOpts::default()`: anvil key [`HOST`], one RTX 4090 at 0.40 per
/// GPU-hour, no bootstrap peers, the lease engine on the chain's RPC.
#[derive(Debug, Clone)]
pub struct HostOpts {
    /// Anvil account whose key is the host wallet.
    pub key: usize,
    /// RTX 4090s offered.
    pub gpus: u32,
    /// Price per GPU-hour, as a decimal string.
    pub price: String,
    /// Bootstrap multiaddrs.
    pub bootstrap: Vec<String>,
    /// Leave out `--rpc-url`: no lease engine, the node only quotes.
    pub no_rpc: bool,
    /// Extra environment variables (e.g. `GPUFLOW_WITHDRAW_INTERVAL_SECS`).
    pub env: Vec<(String, String)>,
    /// Extra `gpuflow-node run` flags.
    pub args: Vec<String>,
    /// Leave `GPUFLOW_HOST_PRIVATE_KEY` unset (the key comes from a keystore in `args`/`env`).
    pub no_key_env: bool,
    /// `[offers] templates`; `None`: the harness default (`["pytorch"]`).
    pub templates: Option<Vec<String>>,
}

impl Default for HostOpts {
    fn default() -> Self {
        Self {
            key: HOST,
            gpus: 1,
            price: "0.40".into(),
            bootstrap: Vec::new(),
            no_rpc: false,
            env: Vec::new(),
            args: Vec::new(),
            no_key_env: false,
            templates: None,
        }
    }
}

impl HostOpts {
    /// A host on the Docker runtime at `docker_host` (a `DOCKER_HOST` value) with simulated
    /// GPUs, offering any image (no templates).
    pub fn docker(docker_host: &str) -> Self {
        Self {
            env: vec![("DOCKER_HOST".into(), docker_host.into())],
            args: ["--runtime", "docker", "--gpu-simulated", "true"]
                .map(String::from)
                .to_vec(),
            templates: Some(Vec::new()),
            ..Self::default()
        }
    }

    /// The default options with environment variable `key` set to `value`.
    pub fn with_env(key: &str, value: &str) -> Self {
        Self {
            env: vec![(key.into(), value.into())],
            ..Self::default()
        }
    }
}

/// A running host node; killed when dropped. Its workloads are not: they run in their own
/// process groups and outlive it, as on a real host (see [`WorkloadGuard`]).
#[derive(Debug)]
pub struct HostNode {
    child: Child,
    opts: HostOpts,
    /// Its peer id.
    pub peer: PeerId,
    /// Its TCP listen multiaddr.
    pub addr: Multiaddr,
    /// Its data directory (database, key, log, workloads).
    pub data_dir: PathBuf,
    /// The API's base URL from the node's `api http://…` line, if it printed one.
    pub api: Option<String>,
    /// The host wallet.
    pub wallet: Address,
}

impl HostNode {
    /// Starts the node on `data_dir` (created if needed) with `opts` and waits for `ready`.
    pub async fn start(
        chain: &TestChain,
        data_dir: &Path,
        opts: &HostOpts,
    ) -> anyhow::Result<Self> {
        let signer = chain.signer(opts.key);
        let mut spec = NodeSpec::new(GPU_MODEL, opts.gpus, &opts.price);
        spec.wallet_key = format!("{:#x}", signer.to_bytes());
        spec.bootstrap.clone_from(&opts.bootstrap);
        spec.escrow = chain.escrow;
        spec.token = chain.token;
        if let Some(t) = &opts.templates {
            spec.templates.clone_from(t);
        }
        let mut cmd = node_command(&spec, data_dir)?;
        if !opts.no_key_env {
            cmd.env("GPUFLOW_HOST_PRIVATE_KEY", &spec.wallet_key);
        }
        cmd.envs(opts.env.iter().map(|(k, v)| (k, v)));
        if !opts.no_rpc {
            cmd.arg("--rpc-url").arg(chain.anvil.endpoint());
        }
        cmd.args(&opts.args);
        let started = spawn_node(cmd, data_dir).await?;
        let addr = started
            .addrs
            .iter()
            .find(|a| a.contains("/tcp/"))
            .context("no TCP listen address")?;
        Ok(Self {
            child: started.child,
            opts: opts.clone(),
            peer: started.peer_id.parse()?,
            addr: addr.parse()?,
            data_dir: data_dir.to_owned(),
            api: started.api,
            wallet: signer.address(),
        })
    }

    /// Starts the node again on the same data directory with the same options, after killing
    /// it with SIGKILL if it still runs.
    pub async fn restart(&mut self, chain: &TestChain) -> anyhow::Result<()> {
        self.kill9().await;
        *self = Self::start(chain, &self.data_dir, &self.opts).await?;
        Ok(())
    }

    /// The id of this host's one offer.
    pub fn offer_id(&self) -> OfferId {
        OfferId::derive(&self.peer, &GPU_MODEL.to_lowercase())
    }

    /// The node process's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The node's log so far (all runs on this data directory).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("node.log")).unwrap_or_default()
    }

    /// Kills the node with SIGKILL (no clean-up of any kind) and reaps it; nothing if it has
    /// exited already.
    pub async fn kill9(&mut self) {
        // Fails only if the process was reaped already.
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }

    /// Sends SIGTERM (a planned shutdown) and waits for the node to exit.
    pub async fn terminate(&mut self) -> ExitStatus {
        let data_dir = self.data_dir.clone();
        terminate(&mut self.child, || {
            std::fs::read_to_string(data_dir.join("node.log")).unwrap_or_default()
        })
        .await
        .unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// [`HostNode::terminate`], and the node must exit cleanly.
    pub async fn stop(&mut self) {
        let status = self.terminate().await;
        assert!(
            status.success(),
            "node exited with {status}; log:\n{}",
            self.log()
        );
    }

    /// Asserts the node process is still running.
    pub fn assert_alive(&mut self) {
        let exited = self.child.try_wait().expect("checking the node process");
        assert_eq!(exited, None, "node process ended; log:\n{}", self.log());
    }

    /// A guard that kills this host's workloads when dropped.
    pub fn guard_workloads(&self) -> WorkloadGuard {
        WorkloadGuard(self.data_dir.clone())
    }
}

/// Kills, when dropped, every process workload still recorded under `<data_dir>/workloads`
/// (they run in their own process group and outlive the node), so a failing test leaves none.
#[derive(Debug)]
pub struct WorkloadGuard(pub PathBuf);

impl Drop for WorkloadGuard {
    fn drop(&mut self) {
        let Ok(dirs) = std::fs::read_dir(self.0.join("workloads")) else {
            return;
        };
        for dir in dirs.flatten() {
            let Ok(text) = std::fs::read_to_string(dir.path().join("pid.json")) else {
                continue;
            };
            let pid = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["id"].as_str()?.split(':').next()?.parse::<i32>().ok());
            if let Some(pid) = pid {
                // The workload leads its own process group.
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

/// Sends `GET /` to a workload on 127.0.0.1:`port` and returns the status line.
pub async fn http_get(port: u16) -> anyhow::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    let text = String::from_utf8_lossy(&buf);
    Ok(text.lines().next().unwrap_or_default().to_owned())
}

/// Asserts the workload on `port` answers `GET /` with a 200; `what` names it in the failure.
pub async fn assert_serves(port: u16, what: &str) {
    let line = http_get(port)
        .await
        .unwrap_or_else(|e| panic!("{what}: unreachable ({e})"));
    assert!(line.contains(" 200 "), "{what}: {line:?}");
}

/// Waits until nothing accepts connections on 127.0.0.1:`port`; false after `limit`.
pub async fn wait_refused(port: u16, limit: Duration) -> bool {
    poll(limit, async || {
        TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
            .then_some(())
    })
    .await
    .is_some()
}
