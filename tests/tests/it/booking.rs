//! No double booking: a GPU that a running lease uses, or that an unexpired quote reserved
//! before the node restarted, is not quoted again. The desk's own reservations end with the
//! quote's TTL and live only in memory; the node also asks the lease engine's records
//! (`LeaseFront::busy_devices`) which GPUs are taken.

use std::time::Duration;

use gpuflow_protocol::wire::code;
use gpuflow_tests::host::HostOpts;
use gpuflow_tests::market::Market;
use gpuflow_tests::poll::{unix_now, wait_wall_clock_past};

use crate::expiry::quote_ttl;

/// Quote TTL of the host in the running-lease test: the quote of the running lease must have
/// expired before the new quote is asked for.
const TTL: u64 = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_lease_keeps_its_gpu_from_new_quotes_until_its_workload_stops() {
    // The host's only GPU is quoted, opened and running.
    let m = Market::start(&quote_ttl(TTL)).await;
    let lease = m.open_lease(600).await;
    let port = m.wait_running(&lease).await;

    // The quote's reservation is over; the running lease still holds the GPU.
    let expiry = u64::try_from(lease.quote.expiry).unwrap();
    wait_wall_clock_past(expiry, Duration::from_secs(TTL + 30)).await;
    m.renter.expect_refusal(&m.host, code::NO_CAPACITY).await;
    assert_eq!(m.status(&lease).await.state, "running");

    // The renter closes; once the workload is stopped the GPU can be quoted again.
    let closed = m.renter_close(&lease).await;
    assert_eq!(closed.closedBy, m.renter_wallet());
    m.wait_stopped(&lease, port).await;
    m.renter.expect_quote(&m.host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quote_outstanding_at_a_restart_still_holds_its_gpu() {
    // The default TTL (300 s): the quote stays live across the restart.
    let mut m = Market::start(&HostOpts::default()).await;
    let q = m.quote().await;

    // kill -9 and start again: the desk's in-memory reservation is gone, the quote's record
    // in the node's database is not.
    m.host.restart(&m.chain).await.unwrap();
    m.renter.expect_refusal(&m.host, code::NO_CAPACITY).await;
    assert!(
        u64::try_from(q.quote.expiry).unwrap() > unix_now(),
        "the quote was still live when the second one was refused"
    );

    // The quote is still good: opened after the restart, its lease runs on the reserved GPU.
    let lease = m.open(&q, 600).await;
    m.renter.opened(&m.host, lease.id, lease.tx_hash).await;
    m.wait_running(&lease).await;
}
