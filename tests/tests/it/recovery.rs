//! Host restarts with the lease engine against anvil: a `kill -9` while a lease runs (the
//! workload is re-adopted, not doubled, and no second `start` is sent), and a node that comes
//! back after the accept timeout (it does not start the lease; the renter gets everything back).
//!
//! Also: a workload that died with the node is relaunched (one process, billing unbroken); a
//! lease closed while the node was down has its workload stopped; and a `start` caught by the
//! crash is sent again only if the chain node no longer holds it (anvil's automine is switched
//! off so the transaction waits in its pool while the node is killed).

use std::time::Duration;

use alloy::primitives::{B256, U256};
use alloy::providers::Provider;
use alloy::sol_types::SolEvent;
use gpuflow_protocol::escrow::GpuFlowEscrow;
use gpuflow_protocol::wire::{LeaseRequest, LeaseResponse};
use gpuflow_tests::chain::{ACCEPT_TIMEOUT, FEE_BPS, TestChain};
use tokio::net::TcpStream;

use crate::lease::{HOST, RENTER, Rental, http_get, rent_opts, start_host};

/// How long a restarted node may take to reconcile its leases.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(60);

/// `LeaseStarted` events for `lease` on the whole chain.
pub(crate) async fn starts(chain: &TestChain, lease: B256) -> usize {
    let filter = alloy::rpc::types::Filter::new()
        .address(chain.escrow)
        .event_signature(GpuFlowEscrow::LeaseStarted::SIGNATURE_HASH)
        .topic1(lease)
        .from_block(0);
    chain.provider(0).get_logs(&filter).await.unwrap().len()
}

/// Pids of the processes of `r`'s host whose environment names `r`'s lease (every workload copy
/// of the lease). Only processes running in the host's data directory count: tests run side by
/// side on chains with the same escrow address, host key and renter, so two of them can quote
/// the same lease id in the same second.
fn workload_pids(r: &Rental) -> Vec<u32> {
    let lease = r.lease_id;
    let marker = format!("GPUFLOW_LEASE_ID={lease:#x}");
    let home = r.host.data_dir.canonicalize().unwrap();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        // Unreadable (another user's, or gone meanwhile): not ours.
        let Ok(env) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        let ours = std::fs::read_link(entry.path().join("cwd")).is_ok_and(|d| d.starts_with(&home));
        if !ours {
            continue;
        }
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
    let before = workload_pids(&r);
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
        workload_pids(&r),
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
    assert_eq!(workload_pids(&r), Vec::<u32>::new());
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

/// Switches anvil's automine on or off (off: transactions wait in its pool until `evm_mine`).
async fn automine(chain: &TestChain, on: bool) {
    let _: serde_json::Value = chain
        .provider(0)
        .raw_request("evm_setAutomine".into(), (on,))
        .await
        .unwrap();
}

/// Transactions the host wallet has had mined.
async fn host_nonce(chain: &TestChain) -> u64 {
    let host = chain.signer(HOST).address();
    chain.provider(0).get_transaction_count(host).await.unwrap()
}

/// Polls the host until it serves the lease with an HTTP 200; returns the port. Unlike
/// `Rental::wait_running` it does not trust the first port reported: right after a restart
/// the record may still name a workload that recovery is about to replace.
async fn wait_served(r: &Rental) -> u16 {
    tokio::time::timeout(RECOVERY_TIMEOUT, async {
        loop {
            let s = r.status().await;
            if let (true, Some(port)) = (s.state == "running", s.port)
                && http_get(port).await.is_ok_and(|l| l.contains(" 200 "))
            {
                return port;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("lease not served in time; log:\n{}", r.host.log()))
}

/// Waits until nothing accepts connections on `port`.
async fn wait_refused(port: u16) {
    tokio::time::timeout(RECOVERY_TIMEOUT, async {
        while TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("port still accepts connections");
}

/// Checks the renter's close paid the host price × seconds since the original start.
fn assert_billed_from(closed: &GpuFlowEscrow::LeaseClosed, r: &Rental, started_at: U256) {
    assert_eq!(closed.startedAt, started_at, "billing never restarted");
    let earned = r.quote.pricePerSecond * (closed.closedAt - closed.startedAt);
    assert_eq!(closed.hostAmount + closed.fee, earned);
    assert_eq!(
        closed.fee,
        earned * U256::from(FEE_BPS) / U256::from(10_000u64)
    );
    assert_eq!(closed.refund, r.deposit - earned);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_host_relaunches_a_workload_that_died_with_it_and_billing_continues() {
    let mut r = rent_opts(600, false).await;
    let port = r.wait_running().await;
    let before = workload_pids(&r);
    assert_eq!(before.len(), 1, "one workload process: {before:?}");
    let started = r
        .chain
        .escrow_as(RENTER)
        .lease(r.lease_id)
        .call()
        .await
        .unwrap();

    // The node and the workload's whole process group die.
    r.host.kill9().await;
    let leader = i32::try_from(before[0]).unwrap();
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(leader),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_refused(port).await;

    let data_dir = r.host.data_dir.clone();
    r.host = start_host(&r.chain, &data_dir).await.unwrap();
    let host = &r.host;
    wait_log(
        || host.log(),
        "recovery: workload gone while the lease runs; relaunching it",
        RECOVERY_TIMEOUT,
    )
    .await;
    let port = wait_served(&r).await;
    let after = workload_pids(&r);
    assert_eq!(after.len(), 1, "exactly one workload process: {after:?}");
    assert_ne!(after, before, "a new process");
    let view = r
        .chain
        .escrow_as(RENTER)
        .lease(r.lease_id)
        .call()
        .await
        .unwrap();
    assert_eq!(view.status, 2, "still running on chain");
    assert_eq!(
        view.since, started.since,
        "billing continues from the first start"
    );
    assert_eq!(starts(&r.chain, r.lease_id).await, 1, "exactly one start");

    let closed = r.renter_close().await;
    r.wait_stopped(port).await;
    assert_eq!(workload_pids(&r), Vec::<u32>::new());
    assert_billed_from(&closed, &r, U256::from(started.since));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_closed_while_the_host_was_down_has_its_workload_stopped_on_restart() {
    let mut r = rent_opts(600, false).await;
    let port = r.wait_running().await;
    let started = r
        .chain
        .escrow_as(RENTER)
        .lease(r.lease_id)
        .call()
        .await
        .unwrap();
    r.host.kill9().await;
    let line = http_get(port).await.unwrap();
    assert!(
        line.contains(" 200 "),
        "the workload outlives the node: {line:?}"
    );

    // The renter closes while the host is down: the workload is now an orphan.
    let closed = r.renter_close().await;
    let data_dir = r.host.data_dir.clone();
    r.host = start_host(&r.chain, &data_dir).await.unwrap();
    let host = &r.host;
    wait_log(
        || host.log(),
        "recovery: lease closed on chain while the node was down",
        RECOVERY_TIMEOUT,
    )
    .await;
    r.wait_stopped(port).await;
    assert_eq!(workload_pids(&r), Vec::<u32>::new(), "no orphan");
    assert_eq!(starts(&r.chain, r.lease_id).await, 1);
    assert_billed_from(&closed, &r, U256::from(started.since));
    let c = &r.chain;
    assert_eq!(
        c.balance(c.signer(HOST).address()).await.unwrap(),
        closed.hostAmount
    );
}

/// Opens a lease while the host is down, then brings the host up with automine off and tells it
/// about the lease: its `start` waits in anvil's pool. Kills the host while it is `starting`.
async fn host_killed_with_start_in_the_pool() -> Rental {
    let mut r = rent_opts(600, true).await;
    automine(&r.chain, false).await;
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
    let host = r.chain.signer(HOST).address();
    let provider = r.chain.provider(0);
    tokio::time::timeout(RECOVERY_TIMEOUT, async {
        loop {
            let pending = provider
                .get_transaction_count(host)
                .pending()
                .await
                .unwrap();
            if r.status().await.state == "starting" && pending == 1 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("start never sent; log:\n{}", r.host.log()));
    r.host.kill9().await;
    assert_eq!(host_nonce(&r.chain).await, 0, "start not mined yet");
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_still_in_the_pool_at_restart_is_not_sent_again() {
    let mut r = host_killed_with_start_in_the_pool().await;
    let data_dir = r.host.data_dir.clone();
    r.host = start_host(&r.chain, &data_dir).await.unwrap();
    let host = &r.host;
    wait_log(
        || host.log(),
        "recovery: a host transaction is still pending; not resending start",
        RECOVERY_TIMEOUT,
    )
    .await;

    // The chain mines the first `start`; the node launches the workload.
    let _: serde_json::Value = r
        .chain
        .provider(0)
        .raw_request("evm_mine".into(), ())
        .await
        .unwrap();
    automine(&r.chain, true).await;
    let port = wait_served(&r).await;
    assert_eq!(starts(&r.chain, r.lease_id).await, 1);
    assert_eq!(
        host_nonce(&r.chain).await,
        1,
        "one host transaction: one start"
    );
    r.renter_close().await;
    r.wait_stopped(port).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_lost_with_the_crash_is_sent_once_after_restart() {
    let mut r = host_killed_with_start_in_the_pool().await;
    // The chain node forgets the transaction, as a restarted RPC or a dropped broadcast would.
    let _: serde_json::Value = r
        .chain
        .provider(0)
        .raw_request("anvil_dropAllTransactions".into(), ())
        .await
        .unwrap();
    automine(&r.chain, true).await;
    let data_dir = r.host.data_dir.clone();
    r.host = start_host(&r.chain, &data_dir).await.unwrap();
    let host = &r.host;
    wait_log(
        || host.log(),
        "recovery: start was not mined before the restart",
        RECOVERY_TIMEOUT,
    )
    .await;
    let port = wait_served(&r).await;
    assert_eq!(starts(&r.chain, r.lease_id).await, 1);
    assert_eq!(
        host_nonce(&r.chain).await,
        1,
        "one host transaction: one start"
    );
    r.renter_close().await;
    r.wait_stopped(port).await;
}
