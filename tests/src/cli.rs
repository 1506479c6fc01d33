//! The real `gpuflow` CLI: one invocation in a clean environment ([`gpuflow_in`], [`gpuflow`]),
//! and a renter ([`CliRenter`]) with its own `GPUFLOW_HOME`, key, RPC and bootstrap peers.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use alloy::primitives::U256;
use anyhow::Context;
use serde_json::Value;

use crate::chain::TestChain;
use crate::host::HostNode;
use crate::procs::{START_TIMEOUT, command};

/// Longest one CLI invocation may take before the test fails.
pub const CLI_TIMEOUT: Duration = Duration::from_secs(60);
/// A public key the quote desk accepts (the renter never connects over SSH in these tests).
pub const SSH_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl renter@test";

/// What a CLI run printed.
#[derive(Debug)]
pub struct CliOutput {
    /// Exit status.
    pub status: ExitStatus,
    /// Everything on stdout.
    pub stdout: String,
    /// Everything on stderr.
    pub stderr: String,
}

impl CliOutput {
    /// The exit code (-1 if killed by a signal).
    pub fn code(&self) -> i32 {
        self.status.code().unwrap_or(-1)
    }
}

/// Runs `gpuflow ARGS` in `home` with a clean environment: `HOME` is `home`, `GPUFLOW_HOME` is
/// `home/gpuflow`, plus `env`; fails if it takes longer than [`CLI_TIMEOUT`].
pub async fn gpuflow_in(
    home: &Path,
    env: &[(String, String)],
    args: &[&str],
) -> anyhow::Result<CliOutput> {
    let run = command("gpuflow", home)?
        .env("GPUFLOW_HOME", home.join("gpuflow"))
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .args(args)
        .stdin(Stdio::null())
        .output();
    let out = tokio::time::timeout(CLI_TIMEOUT, run)
        .await
        .with_context(|| format!("gpuflow {args:?} still running after {CLI_TIMEOUT:?}"))??;
    Ok(CliOutput {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Runs `gpuflow ARGS` in an empty temporary directory (no `.devnet/` above it to pick up, no
/// earlier state), as [`gpuflow_in`] does.
pub async fn gpuflow(args: &[&str]) -> anyhow::Result<CliOutput> {
    let home = tempfile::tempdir()?;
    gpuflow_in(home.path(), &[], args).await
}

/// `gpuflow ARGS`, which must exit 0 and print JSON; returns the JSON.
pub async fn gpuflow_json(args: &[&str]) -> Value {
    json_of(args, &gpuflow(args).await.expect("running gpuflow"))
}

fn json_of(args: &[&str], out: &CliOutput) -> Value {
    assert_eq!(
        out.code(),
        0,
        "gpuflow {args:?} failed\nstdout: {}\nstderr: {}",
        out.stdout,
        out.stderr
    );
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

/// The renter's side of the CLI: a home directory with an SSH key file, and the environment
/// naming its key, the chain and the peers to use.
#[derive(Debug)]
pub struct CliRenter {
    /// `HOME` of every run (`GPUFLOW_HOME` is `home/gpuflow`).
    pub home: PathBuf,
    /// `GPUFLOW_PRIVATE_KEY`, `GPUFLOW_RPC_URL`, `GPUFLOW_BOOTSTRAP`.
    pub env: Vec<(String, String)>,
}

impl CliRenter {
    /// A renter signing with anvil key `key_idx`, bootstrapping from `hosts`.
    pub fn new(chain: &TestChain, home: &Path, key_idx: usize, hosts: &[&HostNode]) -> Self {
        std::fs::create_dir_all(home).expect("creating the renter's home");
        std::fs::write(home.join("id.pub"), format!("{SSH_KEY}\n")).expect("writing id.pub");
        let bootstrap: Vec<String> = hosts.iter().map(|h| h.addr.to_string()).collect();
        Self {
            home: home.to_owned(),
            env: vec![
                (
                    "GPUFLOW_PRIVATE_KEY".into(),
                    format!("{:#x}", chain.signer(key_idx).to_bytes()),
                ),
                ("GPUFLOW_RPC_URL".into(), chain.anvil.endpoint()),
                ("GPUFLOW_BOOTSTRAP".into(), bootstrap.join(",")),
            ],
        }
    }

    /// Sets (replaces) one variable of the environment.
    pub fn set_env(&mut self, key: &str, value: String) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_owned(), value));
    }

    /// Runs `gpuflow ARGS` with this renter's environment.
    pub async fn run(&self, args: &[&str]) -> CliOutput {
        gpuflow_in(&self.home, &self.env, args)
            .await
            .expect("running gpuflow")
    }

    /// Runs a command that must succeed and print JSON; returns the JSON.
    /// Starts `gpuflow ARGS` as this renter without waiting, stdout piped (for `--follow`);
    /// killed when dropped.
    pub fn spawn(&self, args: &[&str]) -> tokio::process::Child {
        command("gpuflow", &self.home)
            .expect("the gpuflow binary")
            .env("GPUFLOW_HOME", self.home.join("gpuflow"))
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning gpuflow")
    }

    /// Runs `gpuflow ARGS --json` as this renter and parses stdout; fails unless it exits 0.
    pub async fn json(&self, args: &[&str]) -> Value {
        json_of(args, &self.run(args).await)
    }

    /// The path of the renter's SSH public key file.
    pub fn ssh_key(&self) -> String {
        self.home.join("id.pub").display().to_string()
    }

    /// `gpuflow rent --query num_gpus>=1 --hours 0.5 --ssh-key <its key> --yes --json` and
    /// `extra`: rents whatever the ranking puts first; must succeed; returns the JSON.
    pub async fn rent_first(&self, extra: &[&str]) -> Value {
        let ssh = self.ssh_key();
        let mut args = vec![
            "rent",
            "--query",
            "num_gpus>=1",
            "--hours",
            "0.5",
            "--ssh-key",
            &ssh,
            "--yes",
            "--json",
        ];
        args.extend_from_slice(extra);
        self.json(&args).await
    }

    /// `gpuflow search --json` until `n` offers are visible (offers of other hosts reach the
    /// bootstrap node by gossip), for up to [`START_TIMEOUT`].
    pub async fn search_until(&self, n: usize) -> Value {
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            let v = self.json(&["search", "--json"]).await;
            if v["offers"].as_array().map_or(0, Vec::len) >= n {
                return v;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "fewer than {n} offers: {v}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// A base-unit amount from the CLI's JSON (`{"base_units": "…", …}`).
pub fn units(v: &Value) -> U256 {
    v["base_units"]
        .as_str()
        .unwrap_or_else(|| panic!("no base_units in {v}"))
        .parse()
        .unwrap_or_else(|e| panic!("base_units of {v}: {e}"))
}
