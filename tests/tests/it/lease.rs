//! A whole lease against anvil and a real `gpuflow-node` running the lease engine: quote over
//! p2p, `open` by the renter, `start` and a launched workload by the host, an HTTP 200 from the
//! workload, the renter's `close`, the workload stopped, and the payout checked to the unit.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use alloy::primitives::{B256, U256};
use alloy::providers::Provider;
use alloy::sol_types::SolEvent;
use anyhow::{Context, bail};
use gpuflow_p2p::{Keypair, Multiaddr, P2pConfig, PeerId};
use gpuflow_protocol::book::OfferBook;
use gpuflow_protocol::escrow::{GpuFlowEscrow, Quote};
use gpuflow_protocol::offer::OfferId;
use gpuflow_protocol::wire::{LeaseRequest, LeaseResponse, LeaseStatus, QuoteRequest};
use gpuflow_tests::chain::{FEE_BPS, TestChain};
use gpuflow_tests::procs::{NodeSpec, START_TIMEOUT, bin};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

pub(crate) const HOST: usize = 1;
pub(crate) const RENTER: usize = 2;
/// How long the host may take from `open` to a reachable workload before the test fails.
const RUNNING_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the host may take to stop the workload after the renter's close.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// A `gpuflow-node run` with the lease engine on `rpc`; killed when dropped.
pub(crate) struct HostNode {
    child: Child,
    pub(crate) peer: PeerId,
    pub(crate) addr: Multiaddr,
    pub(crate) data_dir: std::path::PathBuf,
    /// The API's base URL from the node's `api http://…` line, if it printed one.
    pub(crate) api: Option<String>,
}

impl HostNode {
    /// Sends SIGTERM (a planned shutdown) and waits for the node to exit.
    pub(crate) async fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = i32::try_from(self.child.id().expect("node still running")).unwrap();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        tokio::time::timeout(gpuflow_tests::procs::STOP_TIMEOUT, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("node did not stop after SIGTERM; log:\n{}", self.log()))
            .unwrap()
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("node.log")).unwrap_or_default()
    }

    /// Kills the node with SIGKILL (no clean-up of any kind) and reaps it.
    pub(crate) async fn kill9(&mut self) {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
    }
}

/// Kills, when dropped, every process workload still recorded under `<data_dir>/workloads`
/// (they run in their own process group and outlive the node), so a failing test leaves none.
pub(crate) struct WorkloadGuard(pub(crate) std::path::PathBuf);

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

/// Starts (or restarts, on the same `data_dir`) the host node.
pub(crate) async fn start_host(chain: &TestChain, data_dir: &Path) -> anyhow::Result<HostNode> {
    start_host_with(chain, data_dir, &HostOpts::default()).await
}

/// What [`start_host_with`] changes from [`start_host`].
#[derive(Debug, Clone, Default)]
pub(crate) struct HostOpts {
    /// Extra environment variables (e.g. `GPUFLOW_WITHDRAW_INTERVAL_SECS`).
    pub(crate) env: Vec<(String, String)>,
    /// Extra `gpuflow-node run` flags.
    pub(crate) args: Vec<String>,
    /// Leave `GPUFLOW_HOST_PRIVATE_KEY` unset (the key comes from a keystore in `args`/`env`).
    pub(crate) no_key_env: bool,
    /// RTX 4090s offered (0: one, as [`start_host`]).
    pub(crate) gpus: u32,
}

/// [`start_host`] with extra environment and flags.
pub(crate) async fn start_host_with(
    chain: &TestChain,
    data_dir: &Path,
    opts: &HostOpts,
) -> anyhow::Result<HostNode> {
    let key = chain.signer(HOST).to_bytes();
    let mut spec = NodeSpec::new("RTX_4090", opts.gpus.max(1), "0.40");
    spec.wallet_key = format!("{key:#x}");
    // The harness config names placeholder contracts; point it at this chain's.
    let toml = spec
        .toml(data_dir)
        .replace(&format!("0x{}", "ee".repeat(20)), &chain.escrow.to_string())
        .replace(&format!("0x{}", "70".repeat(20)), &chain.token.to_string());
    std::fs::create_dir_all(data_dir)?;
    let config = data_dir.join("node.toml");
    std::fs::write(&config, toml)?;
    // Appended to, so a restarted node's log follows the first run's.
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data_dir.join("node.log"))?;
    let mut cmd = Command::new(bin("gpuflow-node")?);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", data_dir)
        .env("RUST_LOG", "info");
    if !opts.no_key_env {
        cmd.env("GPUFLOW_HOST_PRIVATE_KEY", &spec.wallet_key);
    }
    cmd.envs(opts.env.iter().map(|(k, v)| (k, v)));
    let mut child = cmd
        .current_dir(data_dir)
        .arg("run")
        .arg("--config")
        .arg(&config)
        .arg("--rpc-url")
        .arg(chain.anvil.endpoint())
        .args(&opts.args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .context("spawning gpuflow-node")?;
    let mut lines = BufReader::new(child.stdout.take().context("no stdout")?).lines();
    let mut addr = None;
    let mut api = None;
    let peer = tokio::time::timeout(START_TIMEOUT, async {
        while let Some(line) = lines.next_line().await? {
            if let Some(a) = line.strip_prefix("listening ")
                && a.contains("/tcp/")
            {
                addr = Some(a.to_owned());
            } else if let Some(a) = line.strip_prefix("api ") {
                api = Some(a.to_owned());
            } else if let Some(p) = line.strip_prefix("ready ") {
                return Ok::<_, anyhow::Error>(p.to_owned());
            }
        }
        bail!("gpuflow-node exited before `ready`")
    })
    .await
    .context("gpuflow-node not ready in time")??;
    // Keep draining stdout so the node never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(HostNode {
        child,
        peer: peer.parse()?,
        addr: addr.context("no TCP listen address")?.parse()?,
        data_dir: data_dir.to_owned(),
        api,
    })
}

pub(crate) async fn status(
    renter: &gpuflow_p2p::Client,
    host: &HostNode,
    lease_id: B256,
) -> LeaseStatus {
    let resp = renter
        .request_lease(
            host.peer,
            Some(host.addr.clone()),
            LeaseRequest::Status { lease_id },
        )
        .await
        .unwrap();
    match resp {
        LeaseResponse::Status(s) => s,
        other => panic!("expected a status, got {other:?}"),
    }
}

/// Sends `GET /` and returns the status line.
pub(crate) async fn http_get(port: u16) -> anyhow::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    let text = String::from_utf8_lossy(&buf);
    Ok(text.lines().next().unwrap_or_default().to_owned())
}

/// A host node, a renter p2p node, and a lease opened by the renter and reported to the host.
pub(crate) struct Rental {
    pub(crate) chain: TestChain,
    pub(crate) host: HostNode,
    pub(crate) renter: gpuflow_p2p::Client,
    _stop: tokio_util::sync::DropGuard,
    _workloads: WorkloadGuard,
    _dir: tempfile::TempDir,
    pub(crate) quote: Quote,
    pub(crate) lease_id: B256,
    price: U256,
    pub(crate) deposit: U256,
    pub(crate) funds: U256,
    opened_at: Instant,
}

/// Starts everything and opens a lease holding `deposit_secs` of rent.
async fn rent(deposit_secs: u64) -> Rental {
    rent_opts(deposit_secs, false).await
}

/// Like [`rent`]; with `host_down_at_open` the host node is killed right after it quotes, so
/// the renter opens the lease (and does not tell the host) while it is down.
pub(crate) async fn rent_opts(deposit_secs: u64, host_down_at_open: bool) -> Rental {
    let chain = TestChain::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut host = start_host(&chain, &dir.path().join("host")).await.unwrap();
    let workloads = WorkloadGuard(host.data_dir.clone());
    let renter_wallet = chain.signer(RENTER).address();

    // The renter's own short-lived p2p node.
    let stop = CancellationToken::new();
    let (renter, renter_loop, _) = gpuflow_p2p::new(
        P2pConfig::new(Keypair::generate_ed25519()),
        OfferBook::new(),
    )
    .unwrap();
    tokio::spawn(renter_loop.run(stop.clone()));

    // 1. Quote.
    let offer_id = OfferId::derive(&host.peer, "rtx_4090");
    let resp = renter
        .request_lease(
            host.peer,
            Some(host.addr.clone()),
            LeaseRequest::Quote(QuoteRequest {
                offer_id,
                renter: renter_wallet,
                duration_secs: 3600,
                image_or_template: "pytorch".into(),
                ssh_public_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl renter@test".into(),
                gpus: 1,
                env: Default::default(),
                ports: Vec::new(),
            }),
        )
        .await
        .unwrap();
    let LeaseResponse::Quote(signed) = resp else {
        panic!("expected a quote, got {resp:?}\n{}", host.log());
    };
    let quote = Quote::from(signed.quote.clone());
    assert_eq!(quote.host, chain.signer(HOST).address());
    let price = quote.pricePerSecond;
    let deposit = price * U256::from(deposit_secs);
    let funds = deposit * U256::from(2u64);

    if host_down_at_open {
        host.kill9().await;
    }

    // 2. Fund and open as the renter.
    let token = chain.token_as(RENTER);
    let r = token.mint(renter_wallet, funds).send().await.unwrap();
    assert!(r.get_receipt().await.unwrap().status());
    let r = token.approve(chain.escrow, U256::MAX).send().await.unwrap();
    assert!(r.get_receipt().await.unwrap().status());
    let escrow = chain.escrow_as(RENTER);
    let opened_at = Instant::now();
    let receipt = escrow
        .open(quote.clone(), signed.signature.clone(), deposit)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(receipt.status());
    let lease_id = escrow.quoteDigest(quote.clone()).call().await.unwrap();

    // 3. Tell the host.
    if !host_down_at_open {
        let ack = renter
            .request_lease(
                host.peer,
                Some(host.addr.clone()),
                LeaseRequest::Opened {
                    lease_id,
                    tx_hash: receipt.transaction_hash,
                },
            )
            .await
            .unwrap();
        assert_eq!(ack, LeaseResponse::Ack);
    }
    Rental {
        chain,
        host,
        renter,
        _stop: stop.drop_guard(),
        _workloads: workloads,
        _dir: dir,
        quote,
        lease_id,
        price,
        deposit,
        funds,
        opened_at,
    }
}

impl Rental {
    /// The renter closes the lease on chain; returns the `LeaseClosed` event of that
    /// transaction.
    pub(crate) async fn renter_close(&self) -> GpuFlowEscrow::LeaseClosed {
        let receipt = self
            .chain
            .escrow_as(RENTER)
            .close(self.quote.clone())
            .send()
            .await
            .unwrap()
            .get_receipt()
            .await
            .unwrap();
        assert!(receipt.status(), "renter's close reverted: {receipt:?}");
        lease_closed(receipt.inner.logs()).expect("LeaseClosed in the close receipt")
    }

    pub(crate) async fn status(&self) -> LeaseStatus {
        status(&self.renter, &self.host, self.lease_id).await
    }

    /// Polls the host until it reports the workload's port (the host sends no notification).
    pub(crate) async fn wait_running(&self) -> u16 {
        tokio::time::timeout(RUNNING_TIMEOUT, async {
            loop {
                let s = self.status().await;
                if let (Some(h), Some(p)) = (&s.host, s.port) {
                    assert_eq!(s.state, "running");
                    assert_eq!(h, "127.0.0.1");
                    return p;
                }
                assert!(
                    !["start_failed", "closed", "cancelled"].contains(&s.state.as_str()),
                    "lease ended: {s:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("lease not running in time; log:\n{}", self.host.log()))
    }

    /// Waits until the workload port refuses connections and the host reports `closed`.
    pub(crate) async fn wait_stopped(&self, port: u16) {
        tokio::time::timeout(STOP_TIMEOUT, async {
            while TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            loop {
                let s = self.status().await;
                if s.state == "closed" {
                    assert_eq!(s.port, None);
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await
        .unwrap_or_else(|_| {
            panic!(
                "workload not stopped after close; log:\n{}",
                self.host.log()
            )
        });
    }

    /// Checks every balance against `LeaseClosed`, billing from the chain's start to its close.
    async fn check_payout(&self, closed: &GpuFlowEscrow::LeaseClosed) {
        let secs = closed.closedAt - closed.startedAt;
        let total = (self.price * secs).min(self.deposit);
        let fee = total * U256::from(FEE_BPS) / U256::from(10_000u64);
        assert_eq!(closed.refund, self.deposit - total);
        assert_eq!(closed.hostAmount, total - fee);
        assert_eq!(closed.fee, fee);
        let c = &self.chain;
        assert_eq!(
            c.balance(c.signer(RENTER).address()).await.unwrap(),
            self.funds - self.deposit + (self.deposit - (total - fee) - fee),
            "renter gets back deposit - host pay - fee"
        );
        assert_eq!(
            c.balance(c.signer(HOST).address()).await.unwrap(),
            total - fee
        );
        assert_eq!(
            c.balance(c.escrow).await.unwrap(),
            fee,
            "only the fee stays in the escrow"
        );
    }
}

pub(crate) fn lease_closed(logs: &[alloy::rpc::types::Log]) -> Option<GpuFlowEscrow::LeaseClosed> {
    logs.iter()
        .find_map(|l| GpuFlowEscrow::LeaseClosed::decode_log_data(&l.inner.data).ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opened_lease_is_started_served_and_stopped_on_close_with_exact_payout() {
    // Ten minutes of rent: the renter closes long before it runs out.
    let r = rent(600).await;
    let port = r.wait_running().await;
    let line = http_get(port).await.unwrap();
    let reachable = r.opened_at.elapsed();
    eprintln!("open -> reachable workload: {} ms", reachable.as_millis());
    assert!(line.contains(" 200 "), "workload answered {line:?}");
    let escrow = r.chain.escrow_as(RENTER);
    let started = escrow.lease(r.lease_id).call().await.unwrap();
    assert_eq!(started.status, 2, "running on chain");

    // The renter closes; the host stops the workload.
    let closed = r.renter_close().await;
    assert_eq!(closed.closedBy, r.chain.signer(RENTER).address());
    assert_eq!(closed.startedAt, U256::from(started.since));
    r.wait_stopped(port).await;
    r.check_payout(&closed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_closes_a_lease_whose_deposit_is_used_up_and_stops_the_workload() {
    // Three seconds of rent: the host's timer ends it.
    let r = rent(3).await;
    let port = r.wait_running().await;
    r.wait_stopped(port).await;
    let escrow = r.chain.escrow_as(RENTER);
    let view = escrow.lease(r.lease_id).call().await.unwrap();
    assert_eq!(view.status, 3, "closed on chain");
    let logs = r
        .chain
        .provider(0)
        .get_logs(
            &alloy::rpc::types::Filter::new()
                .address(r.chain.escrow)
                .event_signature(GpuFlowEscrow::LeaseClosed::SIGNATURE_HASH)
                .from_block(0),
        )
        .await
        .unwrap();
    let closed = lease_closed(&logs).expect("LeaseClosed on chain");
    assert_eq!(closed.closedBy, r.chain.signer(HOST).address());
    assert_eq!(closed.reason, 2, "Depleted");
    assert_eq!(closed.refund, U256::ZERO);
    r.check_payout(&closed).await;
}
