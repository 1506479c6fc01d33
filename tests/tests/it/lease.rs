//! A whole lease against anvil and a real `gpuflow-node` running the lease engine: quote over
//! p2p, `open` by the renter, `start` and a launched workload by the host, an HTTP 200 from the
//! workload, the renter's `close`, the workload stopped, and the payout checked to the unit.

use alloy::primitives::U256;
use gpuflow_protocol::escrow::status;
use gpuflow_tests::chain::RENTER;
use gpuflow_tests::host::assert_serves;
use gpuflow_tests::market::Market;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opened_lease_is_started_served_and_stopped_on_close_with_exact_payout() {
    // Ten minutes of rent: the renter closes long before it runs out.
    let (m, lease) = Market::rent(600).await;
    let port = m.wait_running(&lease).await;
    assert_serves(port, "workload").await;
    let reachable = lease.opened_at.elapsed();
    eprintln!("open -> reachable workload: {} ms", reachable.as_millis());
    let escrow = m.chain.escrow_as(RENTER);
    let started = escrow.lease(lease.id).call().await.unwrap();
    assert_eq!(started.status, status::RUNNING, "running on chain");

    // The renter closes; the host stops the workload.
    let closed = m.renter_close(&lease).await;
    assert_eq!(closed.closedBy, m.renter_wallet());
    assert_eq!(closed.startedAt, U256::from(started.since));
    m.wait_stopped(&lease, port).await;
    m.check_payout(&lease, &closed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_closes_a_lease_whose_deposit_is_used_up_and_stops_the_workload() {
    // Three seconds of rent: the host's timer ends it.
    let (m, lease) = Market::rent(3).await;
    let port = m.wait_running(&lease).await;
    m.wait_stopped(&lease, port).await;
    let escrow = m.chain.escrow_as(RENTER);
    let view = escrow.lease(lease.id).call().await.unwrap();
    assert_eq!(view.status, status::CLOSED, "closed on chain");
    let closed = m.closed_depleted().await;
    m.check_payout(&lease, &closed).await;
}
