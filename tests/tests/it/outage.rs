//! What the running node could not see: an RPC outage (anvil stopped with its state saved and
//! started again on the same port), and escrow events that happened while the node itself was
//! stopped. Either way the node must catch up from its persisted cursor and act on every event,
//! once.
//!
//! The host here declares two GPUs (`lease::start_host` declares one), so two leases can be
//! quoted and live at the same time.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use alloy::node_bindings::{Anvil, AnvilInstance};
use alloy::primitives::{Address, B256, U256};
use alloy::providers::{Provider, ProviderBuilder};
use anyhow::{Context, bail};
use gpuflow_p2p::{Keypair, Multiaddr, P2pConfig, PeerId};
use gpuflow_protocol::book::OfferBook;
use gpuflow_protocol::escrow::{GpuFlowEscrow, MockStablecoin, Quote};
use gpuflow_protocol::offer::OfferId;
use gpuflow_protocol::wire::{LeaseRequest, LeaseResponse, LeaseStatus, QuoteRequest, SignedQuote};
use gpuflow_tests::chain::{ACCEPT_TIMEOUT, FEE_BPS, TestChain, anvil_path};
use gpuflow_tests::procs::{NodeSpec, START_TIMEOUT, bin};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::expiry::{Renter, expect_quote, fund_renter, mine, open};
use crate::lease::{HOST, RENTER, WorkloadGuard, http_get, lease_closed};
use crate::recovery::starts;

/// Upper bound for anything these tests wait for (a start, a stop, a catch-up).
const LIMIT: Duration = Duration::from_secs(60);
/// Seconds of rent each lease here is opened with: the renter closes long before.
const DEPOSIT_SECS: u64 = 600;
/// Blocks the node's watcher waits before it trusts an event (its default confirmations).
const CONFIRMATIONS: u64 = 2;

/// A `gpuflow-node run` with `gpus` RTX 4090s and the lease engine; killed when dropped.
struct Host {
    child: Child,
    peer: PeerId,
    addr: Multiaddr,
    data_dir: PathBuf,
}

impl Host {
    /// Starts (or restarts, on the same `data_dir`) the node, as `lease::start_host` does.
    async fn start(chain: &TestChain, data_dir: &Path, gpus: u32) -> anyhow::Result<Self> {
        let key = chain.signer(HOST).to_bytes();
        let mut spec = NodeSpec::new("RTX_4090", gpus, "0.40");
        spec.wallet_key = format!("{key:#x}");
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
        let mut child = Command::new(bin("gpuflow-node")?)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", data_dir)
            .env("GPUFLOW_HOST_PRIVATE_KEY", &spec.wallet_key)
            .env("RUST_LOG", "info")
            .current_dir(data_dir)
            .arg("run")
            .arg("--config")
            .arg(&config)
            .arg("--rpc-url")
            .arg(chain.anvil.endpoint())
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
        .context("gpuflow-node not ready in time")
        .and_then(|r| r)
        .with_context(|| {
            let log = std::fs::read_to_string(data_dir.join("node.log")).unwrap_or_default();
            format!("log:\n{log}")
        })?;
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self {
            child,
            peer: peer.parse()?,
            addr: addr.context("no TCP listen address")?.parse()?,
            data_dir: data_dir.to_owned(),
        })
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("node.log")).unwrap_or_default()
    }

    /// Stops the node with SIGTERM (a planned stop) and checks it exits cleanly.
    async fn stop(mut self) {
        let pid = i32::try_from(self.child.id().unwrap()).unwrap();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let status = tokio::time::timeout(LIMIT, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("node did not stop; log:\n{}", self.log()))
            .unwrap();
        assert!(
            status.success(),
            "node exited with {status}; log:\n{}",
            self.log()
        );
    }

    /// `GET path` on the node's HTTP API: the status code and the JSON body.
    async fn api_get(&self, path: &str) -> (u16, serde_json::Value) {
        let addr = std::fs::read_to_string(self.data_dir.join("api_addr")).unwrap();
        let mut s = TcpStream::connect(addr.trim()).await.unwrap();
        let req = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.unwrap();
        let text = String::from_utf8(buf).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let code = head.split(' ').nth(1).unwrap().parse().unwrap();
        (
            code,
            serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
        )
    }

    /// Waits until the API's `/status` shows the watcher within the confirmation depth of
    /// `head`.
    async fn wait_caught_up(&self, head: u64) {
        tokio::time::timeout(LIMIT, async {
            loop {
                let (code, status) = self.api_get("/status").await;
                assert_eq!(code, 200, "{status}");
                if status["chain_height"].as_u64() >= Some(head - CONFIRMATIONS) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("watcher never reached block {head}; log:\n{}", self.log()));
    }

    /// Asserts the node process is still running (an RPC outage must not end it).
    fn assert_alive(&mut self) {
        let exited = self.child.try_wait().unwrap();
        assert_eq!(exited, None, "node process ended; log:\n{}", self.log());
    }

    async fn quote(&self, chain: &TestChain, renter: &Renter) -> SignedQuote {
        expect_quote(
            renter.quote(chain, self.peer, &self.addr).await,
            &self.log(),
        )
    }

    async fn status(&self, renter: &Renter, lease: B256) -> LeaseStatus {
        renter.status(self.peer, &self.addr, lease).await
    }

    /// Tells the node the lease was opened (the renter's hint; it only speeds things up).
    async fn hint_opened(&self, renter: &Renter, lease_id: B256) {
        let ack = renter
            .ask(
                self.peer,
                &self.addr,
                LeaseRequest::Opened {
                    lease_id,
                    tx_hash: B256::ZERO,
                },
            )
            .await;
        assert_eq!(ack, LeaseResponse::Ack);
    }

    /// Waits until the node serves `lease`; returns the workload's port.
    async fn wait_running(&self, renter: &Renter, lease: B256) -> u16 {
        tokio::time::timeout(LIMIT, async {
            loop {
                let s = self.status(renter, lease).await;
                if let (true, Some(port)) = (s.state == "running", s.port) {
                    return port;
                }
                assert!(
                    ["quoted", "opened", "starting", "launching"].contains(&s.state.as_str()),
                    "lease {lease} went {s:?}; log:\n{}",
                    self.log()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("lease {lease} not running in time; log:\n{}", self.log()))
    }

    /// Waits until `port` refuses connections and the node reports `lease` closed.
    async fn wait_stopped(&self, renter: &Renter, lease: B256, port: u16) {
        tokio::time::timeout(LIMIT, async {
            while TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            while self.status(renter, lease).await.state != "closed" {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("lease {lease} not stopped in time; log:\n{}", self.log()));
    }
}

/// Anvil on `port` with its state in `state`: loaded if the file exists, written on SIGTERM.
fn anvil_with_state(port: u16, state: &Path) -> AnvilInstance {
    Anvil::at(anvil_path().unwrap())
        .port(port)
        .args(["--state".into(), state.display().to_string()])
        .try_spawn()
        .unwrap()
}

/// A [`TestChain`] on an anvil that keeps its state in `state`, so it can be restarted.
async fn chain_with_state(port: u16, state: &Path) -> TestChain {
    let anvil = anvil_with_state(port, state);
    let deployer = ProviderBuilder::new()
        .wallet(alloy::signers::local::PrivateKeySigner::from_signing_key(
            anvil.keys()[0].clone().into(),
        ))
        .connect_http(anvil.endpoint_url())
        .erased();
    let token = MockStablecoin::deploy(&deployer).await.unwrap();
    let (treasury, guardian) = (anvil.addresses()[9], anvil.addresses()[8]);
    let escrow = GpuFlowEscrow::deploy(
        &deployer,
        *token.address(),
        treasury,
        FEE_BPS,
        ACCEPT_TIMEOUT,
        guardian,
    )
    .await
    .unwrap();
    TestChain {
        escrow: *escrow.address(),
        token: *token.address(),
        treasury,
        guardian,
        anvil,
    }
}

/// The deployment of a chain whose anvil is stopped.
#[derive(Clone, Copy)]
struct Stopped {
    escrow: Address,
    token: Address,
    treasury: Address,
    guardian: Address,
}

/// Stops anvil with SIGTERM, so it writes its state file, and waits for it to exit.
fn stop_anvil(chain: TestChain) -> Stopped {
    let TestChain {
        mut anvil,
        escrow,
        token,
        treasury,
        guardian,
    } = chain;
    let pid = i32::try_from(anvil.child().id()).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    anvil.child_mut().wait().unwrap();
    Stopped {
        escrow,
        token,
        treasury,
        guardian,
    }
}

/// Starts anvil again on the same port from its state file.
fn restart_anvil(stopped: Stopped, port: u16, state: &Path) -> TestChain {
    let Stopped {
        escrow,
        token,
        treasury,
        guardian,
    } = stopped;
    TestChain {
        anvil: anvil_with_state(port, state),
        escrow,
        token,
        treasury,
        guardian,
    }
}

/// Polls `log` until `what` occurs `n` times, failing with the log after [`LIMIT`].
async fn wait_log_count(log: impl Fn() -> String, what: &str, n: usize) {
    let found = tokio::time::timeout(LIMIT, async {
        while log().matches(what).count() < n {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(
        found.is_ok(),
        "fewer than {n} {what:?} in the log:\n{}",
        log()
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_rides_out_an_rpc_outage_and_acts_on_what_happens_after_it() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("anvil-state.json");
    let port = free_port();
    let chain = chain_with_state(port, &state).await;
    let mut host = Host::start(&chain, &tmp.path().join("host"), 2)
        .await
        .unwrap();
    let _workloads = WorkloadGuard(host.data_dir.clone());
    let renter = Renter::start();

    // Lease A runs before the outage; lease B is quoted before it and opened after it.
    let qa = host.quote(&chain, &renter).await;
    let qb = host.quote(&chain, &renter).await;
    let deposit = qa.quote.price_per_second * U256::from(DEPOSIT_SECS);
    fund_renter(&chain, deposit * U256::from(2u64)).await;
    let a = open(&chain, &qa, deposit).await;
    host.hint_opened(&renter, a).await;
    let port_a = host.wait_running(&renter, a).await;

    // The RPC goes away. The node says so, keeps retrying, and keeps serving lease A.
    let failed = "chain watcher step failed";
    let failures_before = host.log().matches(failed).count();
    let stopped = stop_anvil(chain);
    wait_log_count(|| host.log(), failed, failures_before + 2).await;
    host.assert_alive();
    let (code, health) = host.api_get("/health").await;
    assert_eq!(code, 200, "the API answers during the outage: {health}");
    let line = http_get(port_a).await.unwrap();
    assert!(
        line.contains(" 200 "),
        "lease A during the outage: {line:?}"
    );
    assert_eq!(host.status(&renter, a).await.state, "running");

    // Back on the same port with its state. B is opened without a hint to the node: only the
    // watcher can find it. The renter also closes A.
    let chain = restart_anvil(stopped, port, &state);
    let b = open(&chain, &qb, deposit).await;
    let closed_a = {
        let receipt = chain
            .escrow_as(RENTER)
            .close(Quote::from(qa.quote.clone()))
            .send()
            .await
            .unwrap()
            .get_receipt()
            .await
            .unwrap();
        assert!(receipt.status());
        lease_closed(receipt.inner.logs()).unwrap()
    };
    mine(&chain, CONFIRMATIONS).await;
    let port_b = host.wait_running(&renter, b).await;
    let line = http_get(port_b).await.unwrap();
    assert!(line.contains(" 200 "), "lease B after the outage: {line:?}");
    host.wait_stopped(&renter, a, port_a).await;
    let head = chain.provider(0).get_block_number().await.unwrap();
    host.wait_caught_up(head).await;

    // Each lease started once; A paid to the unit for its whole run, outage included.
    assert_eq!(starts(&chain, a).await, 1);
    assert_eq!(starts(&chain, b).await, 1);
    let billed = closed_a.closedAt - closed_a.startedAt;
    assert_eq!(
        closed_a.hostAmount + closed_a.fee,
        qa.quote.price_per_second * billed
    );
    assert_eq!(
        closed_a.refund,
        deposit - closed_a.hostAmount - closed_a.fee
    );
    host.assert_alive();
    let log = host.log();
    assert!(!log.contains("panicked"), "a node task panicked:\n{log}");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_while_the_node_was_stopped_are_all_acted_on_after_it_starts() {
    let chain = TestChain::start().await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("host");
    let host = Host::start(&chain, &dir, 2).await.unwrap();
    let _workloads = WorkloadGuard(dir.clone());
    let renter = Renter::start();

    // A runs; B is quoted.
    let qa = host.quote(&chain, &renter).await;
    let qb = host.quote(&chain, &renter).await;
    let deposit = qa.quote.price_per_second * U256::from(DEPOSIT_SECS);
    fund_renter(&chain, deposit * U256::from(2u64)).await;
    let a = open(&chain, &qa, deposit).await;
    host.hint_opened(&renter, a).await;
    let port_a = host.wait_running(&renter, a).await;

    // The node stops (the workload outlives it); meanwhile A is closed and B opened, with no
    // hint: the node learns of both from the chain alone.
    host.stop().await;
    let line = http_get(port_a).await.unwrap();
    assert!(
        line.contains(" 200 "),
        "A's workload outlives the node: {line:?}"
    );
    let close = chain
        .escrow_as(RENTER)
        .close(Quote::from(qa.quote.clone()))
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(close.status());
    let b = open(&chain, &qb, deposit).await;
    mine(&chain, CONFIRMATIONS).await;

    let host = Host::start(&chain, &dir, 2).await.unwrap();
    let port_b = host.wait_running(&renter, b).await;
    let line = http_get(port_b).await.unwrap();
    assert!(line.contains(" 200 "), "lease B: {line:?}");
    host.wait_stopped(&renter, a, port_a).await;
    let head = chain.provider(0).get_block_number().await.unwrap();
    host.wait_caught_up(head).await;
    assert_eq!(starts(&chain, a).await, 1);
    assert_eq!(starts(&chain, b).await, 1, "B started exactly once");
    let log = host.log();
    assert!(!log.contains("panicked"), "a node task panicked:\n{log}");
    host.stop().await;
}
