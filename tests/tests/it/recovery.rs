//! Host restarts with the lease engine against anvil: a `kill -9` while a lease runs (the
//! workload is re-adopted, not doubled, and no second `start` is sent), and a node that comes
//! back after the accept timeout (it does not start the lease; the renter gets everything back).

use std::time::Duration;

use alloy::primitives::{B256, U256};
use alloy::providers::Provider;
use alloy::sol_types::SolEvent;
use gpuflow_protocol::escrow::GpuFlowEscrow;
use gpuflow_protocol::wire::{LeaseRequest, LeaseResponse};
use gpuflow_tests::chain::{ACCEPT_TIMEOUT, TestChain};

use crate::lease::{HOST, RENTER, http_get, rent_opts, start_host};

/// How long a restarted node may take to reconcile its leases.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(60);

/// `LeaseStarted` events for `lease` on the whole chain.
async fn starts(chain: &TestChain, lease: B256) -> usize {
    let filter = alloy::rpc::types::Filter::new()
        .address(chain.escrow)
        .event_signature(GpuFlowEscrow::LeaseStarted::SIGNATURE_HASH)
        .topic1(lease)
        .from_block(0);
    chain.provider(0).get_logs(&filter).await.unwrap().len()
}

/// Pids of the processes whose environment names `lease` (every workload copy of the lease).
fn workload_pids(lease: B256) -> Vec<u32> {
    let marker = format!("GPUFLOW_LEASE_ID={lease:#x}");
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        // Unreadable (another user's, or gone meanwhile): not ours.
        let Ok(env) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        let zombie = std::fs::read_to_string(entry.path().join("stat"))
            .is_ok_and(|s| s.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('Z')));
        if !zombie && env.split(|b| *b == 0).any(|kv| kv == marker.as_bytes()) {
            pids.push(pid);
        }
    }
    pids
}

/// Polls the host log until it contains `what`, failing with the log after `limit`.
async fn wait_log(log: impl Fn() -> String, what: &str, limit: Duration) {
    let found = tokio::time::timeout(limit, async {
        while !log().contains(what) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(found.is_ok(), "no {what:?} in the host log:\n{}", log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_host_readopts_its_running_workload_and_stops_it_on_close() {
    let mut r = rent_opts(600, false).await;
    let port = r.wait_running().await;
    let before = workload_pids(r.lease_id);
    assert_eq!(before.len(), 1, "one workload process: {before:?}");

    // kill -9: the node gets no chance to clean up; the workload lives in its own group.
    r.host.kill9().await;
    let line = http_get(port).await.unwrap();
    assert!(line.contains(" 200 "), "workload after the crash: {line:?}");

    let data_dir = r.host.data_dir.clone();
    r.host = start_host(&r.chain, &data_dir).await.unwrap();
    let host = &r.host;
    wait_log(
        || host.log(),
        "recovery: workload re-adopted",
        RECOVERY_TIMEOUT,
    )
    .await;
    let s = r.status().await;
    assert_eq!(s.state, "running", "{s:?}");
    assert_eq!(s.port, Some(port), "same port after the restart");
    assert_eq!(
        workload_pids(r.lease_id),
        before,
        "the same single process, re-adopted"
    );
    let line = http_get(port).await.unwrap();
    assert!(
        line.contains(" 200 "),
        "workload after the restart: {line:?}"
    );
    assert_eq!(starts(&r.chain, r.lease_id).await, 1, "exactly one start");

    // The renter closes; the re-adopted workload is stopped.
    r.renter_close().await;
    r.wait_stopped(port).await;
    assert_eq!(workload_pids(r.lease_id), Vec::<u32>::new());
    assert_eq!(starts(&r.chain, r.lease_id).await, 1, "still one start");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_back_after_the_accept_timeout_never_starts_and_the_renter_gets_everything_back() {
    // The host quotes, then dies; the renter opens while it is down.
    let mut r = rent_opts(600, true).await;
    let escrow = r.chain.escrow_as(RENTER);
    let opened = escrow.lease(r.lease_id).call().await.unwrap();
    assert_eq!(opened.status, 1, "pending on chain");

    // The accept timeout passes on the chain's clock.
    let since = u64::try_from(opened.since).unwrap();
    r.chain
        .set_next_timestamp(since + ACCEPT_TIMEOUT + 1)
        .await
        .unwrap();
    let _: serde_json::Value = r
        .chain
        .provider(0)
        .raw_request("evm_mine".into(), ())
        .await
        .unwrap();

    // The host comes back; the renter tells it about the lease, as it would have.
    let data_dir = r.host.data_dir.clone();
    r.host = start_host(&r.chain, &data_dir).await.unwrap();
    let ack = r
        .renter
        .request_lease(
            r.host.peer,
            Some(r.host.addr.clone()),
            LeaseRequest::Opened {
                lease_id: r.lease_id,
                tx_hash: B256::ZERO,
            },
        )
        .await
        .unwrap();
    assert_eq!(ack, LeaseResponse::Ack);
    tokio::time::timeout(RECOVERY_TIMEOUT, async {
        loop {
            let s = r.status().await;
            assert!(
                ["quoted", "opened", "never_started"].contains(&s.state.as_str()),
                "the host must not try to start: {s:?}\n{}",
                r.host.log()
            );
            if s.state == "never_started" {
                assert_eq!(s.port, None);
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("lease not never_started in time; log:\n{}", r.host.log()));
    assert_eq!(starts(&r.chain, r.lease_id).await, 0, "no start sent");
    assert!(
        !r.host.log().contains("call=\"start\""),
        "no start transaction sent"
    );

    // The renter takes the deposit back, to the unit.
    let closed = r.renter_close().await;
    assert_eq!(closed.reason, 4, "NeverStarted");
    assert_eq!(closed.refund, r.deposit);
    assert_eq!(closed.hostAmount, U256::ZERO);
    assert_eq!(closed.fee, U256::ZERO);
    let c = &r.chain;
    assert_eq!(
        c.balance(c.signer(RENTER).address()).await.unwrap(),
        r.funds
    );
    assert_eq!(
        c.balance(c.signer(HOST).address()).await.unwrap(),
        U256::ZERO
    );
    assert_eq!(c.balance(c.escrow).await.unwrap(), U256::ZERO);
}
