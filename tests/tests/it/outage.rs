//! What the running node could not see: an RPC outage (anvil stopped with its state saved and
//! started again on the same port), and escrow events that happened while the node itself was
//! stopped. Either way the node must catch up from its persisted cursor and act on every event,
//! once.
//!
//! The host here declares two GPUs (the default host declares one), so two leases can be
//! quoted and live at the same time.

use std::time::Duration;

use gpuflow_tests::chain::{TestChain, free_port};
use gpuflow_tests::host::{HostNode, HostOpts, assert_serves};
use gpuflow_tests::market::Market;
use gpuflow_tests::poll::{poll, wait_log_count};
use gpuflow_tests::rental::{Lease, assert_settled, renter_close, starts};
use gpuflow_tests::renter::Renter;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Upper bound for anything these tests wait for (a start, a stop, a catch-up).
const LIMIT: Duration = Duration::from_secs(60);
/// Seconds of rent each lease here is opened with: the renter closes long before.
const DEPOSIT_SECS: u64 = 600;
/// Blocks the node's watcher waits before it trusts an event (its default confirmations).
const CONFIRMATIONS: u64 = 2;

fn two_gpus() -> HostOpts {
    HostOpts {
        gpus: 2,
        ..HostOpts::default()
    }
}

/// `GET path` on the node's HTTP API (found through `<data_dir>/api_addr`): the status code
/// and the JSON body.
async fn api_get(host: &HostNode, path: &str) -> (u16, Value) {
    let addr = std::fs::read_to_string(host.data_dir.join("api_addr")).unwrap();
    let mut s = TcpStream::connect(addr.trim()).await.unwrap();
    let req = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8(buf).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let code = head.split(' ').nth(1).unwrap().parse().unwrap();
    (code, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// Waits until the API's `/status` shows the watcher within the confirmation depth of the
/// chain's head.
async fn wait_caught_up(host: &HostNode, chain: &TestChain) {
    let head = chain.head().await.unwrap();
    let reached = poll(LIMIT, async || {
        let (code, status) = api_get(host, "/status").await;
        assert_eq!(code, 200, "{status}");
        (status["chain_height"].as_u64() >= Some(head - CONFIRMATIONS)).then_some(())
    })
    .await;
    assert!(
        reached.is_some(),
        "watcher never reached block {head}; log:\n{}",
        host.log()
    );
}

/// Waits until `lease`'s workload on `port` is stopped and the node reports it closed.
async fn wait_stopped(renter: &Renter, host: &HostNode, lease: &Lease, port: u16) {
    renter
        .wait_stopped_within(host, lease.id, port, LIMIT)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_rides_out_an_rpc_outage_and_acts_on_what_happens_after_it() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("anvil-state.json");
    let port = free_port().unwrap();
    let chain = TestChain::start_with_state(port, &state).await.unwrap();
    let mut m = Market::start_on(chain, tmp, &two_gpus()).await;

    // Lease A runs before the outage; lease B is quoted before it and opened after it.
    let qa = m.quote().await;
    let qb = m.quote().await;
    let a = m.open(&qa, DEPOSIT_SECS).await;
    m.renter.opened(&m.host, a.id, a.tx_hash).await;
    let port_a = m.wait_running(&a).await;

    // The RPC goes away. The node says so, keeps retrying, and keeps serving lease A.
    let failed = "chain watcher step failed";
    let failures_before = m.host.log().matches(failed).count();
    m.chain.stop().unwrap();
    wait_log_count(|| m.host.log(), failed, failures_before + 2, LIMIT).await;
    m.host.assert_alive();
    let (code, health) = api_get(&m.host, "/health").await;
    assert_eq!(code, 200, "the API answers during the outage: {health}");
    assert_serves(port_a, "lease A during the outage").await;
    assert_eq!(m.renter.status(&m.host, a.id).await.state, "running");

    // Back on the same port with its state. B is opened without a hint to the node: only the
    // watcher can find it. The renter also closes A.
    m.chain.restart(port, &state).unwrap();
    let b = m.open(&qb, DEPOSIT_SECS).await;
    let closed_a = renter_close(&m.chain, &a.quote).await;
    m.chain.mine(CONFIRMATIONS).await.unwrap();
    let port_b = m.wait_running(&b).await;
    assert_serves(port_b, "lease B after the outage").await;
    wait_stopped(&m.renter, &m.host, &a, port_a).await;
    wait_caught_up(&m.host, &m.chain).await;

    // Each lease started once; A paid to the unit for its whole run, outage included.
    assert_eq!(starts(&m.chain, a.id).await, 1);
    assert_eq!(starts(&m.chain, b.id).await, 1);
    assert_settled(&closed_a, a.price(), a.deposit);
    m.host.assert_alive();
    let log = m.host.log();
    assert!(!log.contains("panicked"), "a node task panicked:\n{log}");
    m.host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_while_the_node_was_stopped_are_all_acted_on_after_it_starts() {
    let mut m = Market::start(&two_gpus()).await;

    // A runs; B is quoted.
    let qa = m.quote().await;
    let qb = m.quote().await;
    let a = m.open(&qa, DEPOSIT_SECS).await;
    m.renter.opened(&m.host, a.id, a.tx_hash).await;
    let port_a = m.wait_running(&a).await;

    // The node stops (the workload outlives it); meanwhile A is closed and B opened, with no
    // hint: the node learns of both from the chain alone.
    m.host.stop().await;
    assert_serves(port_a, "A's workload outlives the node").await;
    renter_close(&m.chain, &a.quote).await;
    let b = m.open(&qb, DEPOSIT_SECS).await;
    m.chain.mine(CONFIRMATIONS).await.unwrap();

    m.host.restart(&m.chain).await.unwrap();
    let port_b = m.wait_running(&b).await;
    assert_serves(port_b, "lease B").await;
    wait_stopped(&m.renter, &m.host, &a, port_a).await;
    wait_caught_up(&m.host, &m.chain).await;
    assert_eq!(starts(&m.chain, a.id).await, 1);
    assert_eq!(starts(&m.chain, b.id).await, 1, "B started exactly once");
    let log = m.host.log();
    assert!(!log.contains("panicked"), "a node task panicked:\n{log}");
    m.host.stop().await;
}
