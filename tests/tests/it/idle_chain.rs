//! A lease opened on an idle devnet chain without the renter's "opened" hint (the CLI died
//! right after `open`): anvil mines a block only per transaction, so no block follows the
//! `open`. The host must find the lease from the chain alone and start it, without waiting for
//! blocks that may never come before the accept timeout.

use std::time::Duration;

use gpuflow_tests::host::{HostOpts, assert_serves};
use gpuflow_tests::market::Market;
use gpuflow_tests::rental::starts;

/// How long the host may take: a few of its watcher's 2 s polls and a launch, far below the
/// accept timeout.
const START_LIMIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_opened_without_a_hint_on_an_idle_chain_is_started() {
    let m = Market::start(&HostOpts::default()).await;
    let q = m.quote().await;
    // Opened; no hint to the host, and nothing else is sent, so no block is mined after it.
    let lease = m.open(&q, 600).await;
    let head = m.chain.head().await.unwrap();

    // `start` is the host's transaction; nothing else may have moved the chain before it.
    let port = m
        .renter
        .wait_running_within(&m.host, lease.id, START_LIMIT)
        .await;
    assert_serves(port, "the lease's workload").await;
    assert_eq!(starts(&m.chain, lease.id).await, 1, "started once");
    assert_eq!(
        m.chain.head().await.unwrap(),
        head + 1,
        "only the host's start was mined after the open"
    );
    let closed = m.renter_close(&lease).await;
    m.wait_stopped(&lease, port).await;
    m.check_payout(&lease, &closed).await;
}
