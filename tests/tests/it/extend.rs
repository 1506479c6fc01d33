//! `topUp` against a running node: a lease opened with a short deposit and topped up before it
//! runs out keeps its workload serving past the original end, and the close pays everyone to
//! the unit for the whole run. (A deposit that runs out without a top-up is
//! `lease::host_closes_a_lease_whose_deposit_is_used_up_and_stops_the_workload`.)

use gpuflow_protocol::escrow::status;
use std::time::Duration;

use alloy::primitives::U256;
use alloy::sol_types::SolEvent;
use gpuflow_protocol::escrow::GpuFlowEscrow;
use gpuflow_tests::chain::RENTER;
use gpuflow_tests::host::http_get;
use gpuflow_tests::market::Market;
use gpuflow_tests::poll::unix_now;
use gpuflow_tests::rental::{Balances, assert_settled, fee, mint};

/// Seconds of rent the first deposit buys. Long enough for the workload to come up and the
/// top-up to be mined on a slow machine (the top-up reverts once the deposit is used up).
const FIRST_SECS: u64 = 20;
/// Seconds of rent the top-up buys: the renter closes long before it runs out.
const TOP_UP_SECS: u64 = 600;
/// How long past the original end the workload must still be served. The node checks the
/// deposit every second and stops a workload within a second or two of deciding to.
const PAST_END: u64 = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_up_extends_the_run_past_the_original_end_and_the_close_pays_it_to_the_unit() {
    let (m, lease) = Market::rent(FIRST_SECS).await;
    let price = lease.price();
    let port = m.wait_running(&lease).await;
    let escrow = m.chain.escrow_as(RENTER);
    let started = escrow.lease(lease.id).call().await.unwrap();
    assert_eq!(started.status, status::RUNNING, "running on chain");
    let since = u64::try_from(started.since).unwrap();

    // The renter tops up before the first deposit runs out.
    let top_up = price * U256::from(TOP_UP_SECS);
    mint(&m.chain, RENTER, top_up).await;
    let receipt = escrow
        .topUp(lease.quote.clone(), top_up)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(
        receipt.status(),
        "topUp reverted: the first deposit ran out before it was mined"
    );
    let topped = receipt
        .inner
        .logs()
        .iter()
        .find_map(|l| GpuFlowEscrow::LeaseToppedUp::decode_log_data(&l.inner.data).ok())
        .expect("LeaseToppedUp in the topUp receipt");
    assert_eq!(topped.newDeposit, lease.deposit + top_up);

    // Served all the way past the original end; the node reads the new deposit from the chain.
    let original_end = since + FIRST_SECS;
    tokio::time::timeout(Duration::from_secs(FIRST_SECS + PAST_END + 30), async {
        loop {
            let s = m.status(&lease).await;
            assert_eq!(
                (s.state.as_str(), s.port),
                ("running", Some(port)),
                "the topped-up lease must keep running; log:\n{}",
                m.host.log()
            );
            let line = http_get(port)
                .await
                .unwrap_or_else(|e| panic!("workload unreachable ({e}); log:\n{}", m.host.log()));
            assert!(line.contains(" 200 "), "workload answered {line:?}");
            if unix_now() > original_end + PAST_END {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
    .await
    .expect("the wall clock did not pass the original end in time");
    let view = escrow.lease(lease.id).call().await.unwrap();
    assert_eq!(
        view.status,
        status::RUNNING,
        "still running on chain past the original end"
    );

    // The renter closes; the workload stops; every unit is accounted for.
    let closed = m.renter_close(&lease).await;
    m.wait_stopped(&lease, port).await;
    assert_eq!(closed.closedBy, m.renter_wallet());
    assert_eq!(closed.reason, 0, "RenterClosed");
    assert_eq!(closed.startedAt, U256::from(since));
    let billed = closed.closedAt - closed.startedAt;
    assert!(
        billed > U256::from(FIRST_SECS + PAST_END),
        "billed {billed}s, not past the original {FIRST_SECS}s"
    );
    let total_deposit = lease.deposit + top_up;
    let earned = assert_settled(&closed, price, total_deposit);
    assert_eq!(earned, price * billed, "price × billed seconds");
    assert_eq!(
        closed.hostAmount + closed.fee + closed.refund,
        total_deposit,
        "host + fee + refund == deposit + topUp"
    );
    assert_eq!(
        Balances::of(&m.chain).await,
        Balances {
            renter: m.funds + top_up - total_deposit + closed.refund,
            host: closed.hostAmount,
            escrow: fee(earned),
        },
        "only the fee stays in the escrow"
    );
}
