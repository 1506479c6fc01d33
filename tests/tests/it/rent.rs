//! The renter's journey with the real `gpuflow` CLI: two host nodes on one anvil chain, `search`,
//! `rent --query` (it must pick what the ranking says), the workload answering HTTP, `extend`,
//! `stop`, and every balance checked to the unit against the price and the seconds billed.
//!
//! The helpers here (a host launcher with its own key, price and bootstrap, and a CLI runner
//! with the renter's environment) are shared with `rent_failures` and `wallet`.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use alloy::primitives::{Address, U256};
use anyhow::{Context, bail};
use gpuflow_p2p::PeerId;
use gpuflow_protocol::offer::OfferId;
use gpuflow_tests::chain::{FEE_BPS, TestChain};
use gpuflow_tests::procs::{CLI_TIMEOUT, CliOutput, NodeSpec, START_TIMEOUT, bin};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::lease::{WorkloadGuard, http_get};

/// A public key the quote desk accepts (the renter never connects over SSH in these tests).
pub(crate) const SSH_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl renter@test";
/// The renter: anvil account 2.
pub(crate) const RENTER: usize = 2;

/// A `gpuflow-node` with its own wallet, price and bootstrap peers; killed when dropped.
pub(crate) struct Host {
    child: Child,
    pub(crate) peer: PeerId,
    pub(crate) addr: String,
    pub(crate) data_dir: PathBuf,
    pub(crate) wallet: Address,
    _workloads: WorkloadGuard,
}

impl Host {
    /// Starts a host with anvil key `key_idx`, one RTX_4090 at `price` per GPU-hour. With
    /// `engine` it gets the chain RPC and runs the lease engine; without, it only quotes.
    pub(crate) async fn start(
        chain: &TestChain,
        data_dir: &Path,
        key_idx: usize,
        price: &str,
        bootstrap: &[&str],
        engine: bool,
    ) -> anyhow::Result<Self> {
        let signer = chain.signer(key_idx);
        let mut spec = NodeSpec::new("RTX_4090", 1, price);
        spec.wallet_key = format!("{:#x}", signer.to_bytes());
        spec.bootstrap = bootstrap.iter().map(|s| (*s).to_owned()).collect();
        let toml = spec
            .toml(data_dir)
            .replace(&format!("0x{}", "ee".repeat(20)), &chain.escrow.to_string())
            .replace(&format!("0x{}", "70".repeat(20)), &chain.token.to_string());
        std::fs::create_dir_all(data_dir)?;
        let config = data_dir.join("node.toml");
        std::fs::write(&config, toml)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data_dir.join("node.log"))?;
        let mut cmd = Command::new(bin("gpuflow-node")?);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", data_dir)
            .env("GPUFLOW_HOST_PRIVATE_KEY", &spec.wallet_key)
            // Two hosts in one test (and tests in parallel) must not share the API port.
            .env("GPUFLOW_API_ADDR", "127.0.0.1:0")
            .env("RUST_LOG", "info")
            .current_dir(data_dir)
            .arg("run")
            .arg("--config")
            .arg(&config);
        if engine {
            cmd.arg("--rpc-url").arg(chain.anvil.endpoint());
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("spawning gpuflow-node")?;
        let mut lines = BufReader::new(child.stdout.take().context("no stdout")?).lines();
        let mut addr = None;
        let peer = tokio::time::timeout(START_TIMEOUT, async {
            while let Some(line) = lines.next_line().await? {
                if let Some(a) = line.strip_prefix("listening ")
                    && a.contains("/tcp/")
                {
                    addr = Some(a.to_owned());
                } else if let Some(p) = line.strip_prefix("ready ") {
                    return Ok::<_, anyhow::Error>(p.to_owned());
                }
            }
            bail!("gpuflow-node exited before `ready`")
        })
        .await
        .context("gpuflow-node not ready in time")??;
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self {
            child,
            peer: peer.parse()?,
            addr: addr.context("no TCP listen address")?,
            data_dir: data_dir.to_owned(),
            wallet: signer.address(),
            _workloads: WorkloadGuard(data_dir.to_owned()),
        })
    }

    /// The id of this host's one offer.
    pub(crate) fn offer_id(&self) -> String {
        OfferId::derive(&self.peer, "rtx_4090").to_string()
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("node.log")).unwrap_or_default()
    }

    /// SIGTERM and wait: the node withdraws its offers on the way down.
    pub(crate) async fn stop(mut self) {
        let pid = i32::try_from(self.child.id().unwrap()).unwrap();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        tokio::time::timeout(START_TIMEOUT, self.child.wait())
            .await
            .unwrap()
            .unwrap();
    }
}

/// The renter's side: a data dir, an SSH key file, the chain and the peers to use.
pub(crate) struct Renter {
    pub(crate) home: PathBuf,
    pub(crate) env: Vec<(String, String)>,
}

impl Renter {
    /// A renter signing with anvil key `key_idx` through `GPUFLOW_PRIVATE_KEY`.
    pub(crate) fn new(chain: &TestChain, home: &Path, key_idx: usize, bootstrap: &[&str]) -> Self {
        std::fs::create_dir_all(home).unwrap();
        std::fs::write(home.join("id.pub"), format!("{SSH_KEY}\n")).unwrap();
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

    /// Runs `gpuflow ARGS` with this renter's environment.
    pub(crate) async fn run(&self, args: &[&str]) -> CliOutput {
        cli(&self.home, &self.env, args).await.unwrap()
    }

    /// Runs a command that must succeed and print JSON; returns the JSON.
    pub(crate) async fn json(&self, args: &[&str]) -> Value {
        let out = self.run(args).await;
        assert_eq!(
            out.code(),
            0,
            "gpuflow {args:?} failed\nstdout: {}\nstderr: {}",
            out.stdout,
            out.stderr
        );
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
    }

    pub(crate) fn ssh_key(&self) -> String {
        self.home.join("id.pub").display().to_string()
    }
}

/// Runs the `gpuflow` binary with a clean environment: `HOME` and `GPUFLOW_HOME` under `home`,
/// plus `env`.
pub(crate) async fn cli(
    home: &Path,
    env: &[(String, String)],
    args: &[&str],
) -> anyhow::Result<CliOutput> {
    let run = Command::new(bin("gpuflow")?)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("GPUFLOW_HOME", home.join("gpuflow"))
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(home)
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
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

/// A base-unit amount from the CLI's JSON (`{"base_units": "…", …}`).
pub(crate) fn units(v: &Value) -> U256 {
    v["base_units"]
        .as_str()
        .unwrap_or_else(|| panic!("no base_units in {v}"))
        .parse()
        .unwrap()
}

/// Mints `amount` test stablecoin to anvil account `idx`.
pub(crate) async fn fund(chain: &TestChain, idx: usize, amount: U256) {
    let r = chain
        .token_as(0)
        .mint(chain.signer(idx).address(), amount)
        .send()
        .await
        .unwrap();
    assert!(r.get_receipt().await.unwrap().status());
}

/// Search until `n` offers are visible (the second host's offer reaches the first by gossip).
pub(crate) async fn search_until(r: &Renter, n: usize) -> Value {
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    loop {
        let v = r.json(&["search", "--json"]).await;
        if v["offers"].as_array().map_or(0, Vec::len) >= n {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "fewer than {n} offers: {v}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_search_rent_by_query_reach_extend_stop_with_exact_balances() {
    let chain = TestChain::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let a = Host::start(&chain, &dir.path().join("a"), 1, "0.40", &[], true)
        .await
        .unwrap();
    let b = Host::start(&chain, &dir.path().join("b"), 3, "0.50", &[&a.addr], true)
        .await
        .unwrap();
    let funds = U256::from(100_000_000u64);
    fund(&chain, RENTER, funds).await;
    let r = Renter::new(
        &chain,
        &dir.path().join("renter"),
        RENTER,
        &[&a.addr, &b.addr],
    );
    let me = chain.signer(RENTER).address();

    // Both offers are found; the default ranking puts the cheaper host A first.
    let found = search_until(&r, 2).await;
    let first = found["offers"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(first, a.offer_id(), "{found}");

    // `rent --query` picks the offer the ranking puts first.
    let ssh = r.ssh_key();
    let rented = r
        .json(&[
            "rent",
            "--query",
            "num_gpus>=1",
            "--hours",
            "0.5",
            "--ssh-key",
            &ssh,
            "--yes",
            "--json",
            "--timings",
        ])
        .await;
    assert_eq!(rented["offer_id"], first.as_str(), "{rented}");
    assert_eq!(rented["host_peer"], a.peer.to_string());
    let price = units(&rented["price_per_second"]);
    // 0.40 per GPU-hour = 400000 base units / 3600 s, floored.
    assert_eq!(price, U256::from(111u64));
    let deposit = units(&rented["deposit"]);
    assert_eq!(deposit, price * U256::from(1800u64));
    eprintln!("rent → reachable workload: {} ms", rented["elapsed_ms"]);

    // The workload answers on the published port.
    let port = u16::try_from(rented["ports"][0]["host"].as_u64().unwrap()).unwrap();
    assert_eq!(rented["host"], "127.0.0.1");
    assert!(
        rented["ssh"].is_null(),
        "the process runtime has no SSH: {rented}"
    );
    let line = http_get(port).await.unwrap();
    assert!(line.contains(" 200 "), "workload answered {line:?}");

    // The lease shows as running, by a prefix of its id.
    let lease_id = rented["lease_id"].as_str().unwrap().to_owned();
    let prefix = &lease_id[2..10];
    let shown = r.json(&["lease", prefix, "--json"]).await;
    assert_eq!(shown["state"], "running", "{shown}");
    assert_eq!(shown["host_state"], "running", "{shown}");
    let listed = r.json(&["leases", "--json"]).await;
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");

    // Extend by a quarter hour.
    let ext = r
        .json(&["extend", prefix, "--hours", "0.25", "--yes", "--json"])
        .await;
    let added = units(&ext["added"]);
    assert_eq!(added, price * U256::from(900u64));
    assert_eq!(units(&ext["deposit"]), deposit + added);

    // Stop: the payout to the unit, from the chain's own timestamps.
    let stopped = r.json(&["stop", prefix, "--json"]).await;
    let secs = stopped["closed_at"].as_u64().unwrap() - stopped["started_at"].as_u64().unwrap();
    let total_deposit = deposit + added;
    let billed = (price * U256::from(secs)).min(total_deposit);
    let fee = billed * U256::from(FEE_BPS) / U256::from(10_000u64);
    assert_eq!(units(&stopped["host_amount"]), billed - fee, "{stopped}");
    assert_eq!(units(&stopped["fee"]), fee);
    assert_eq!(units(&stopped["refund"]), total_deposit - billed);
    assert_eq!(chain.balance(me).await.unwrap(), funds - billed);
    assert_eq!(chain.balance(a.wallet).await.unwrap(), billed - fee);
    assert_eq!(chain.balance(b.wallet).await.unwrap(), U256::ZERO);
    // The fee waits in the escrow until it is swept to the treasury.
    assert_eq!(chain.balance(chain.escrow).await.unwrap(), fee);
    let sweep = chain.escrow_as(0).sweepFees().send().await.unwrap();
    assert!(sweep.get_receipt().await.unwrap().status());
    assert_eq!(chain.balance(chain.treasury).await.unwrap(), fee);
    assert_eq!(chain.balance(chain.escrow).await.unwrap(), U256::ZERO);

    // The host stops the workload once it sees the close.
    let waited = r
        .run(&["wait", prefix, "--until", "closed", "--timeout", "30"])
        .await;
    assert_eq!(waited.code(), 0, "{}", waited.stderr);
    let stopped_in_time = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(
        stopped_in_time.is_ok(),
        "workload still up; log:\n{}",
        a.log()
    );
}
