//! Host restarts with the lease engine against anvil: a `kill -9` while a lease runs (the
//! workload is re-adopted, not doubled, and no second `start` is sent), and a node that comes
//! back after the accept timeout (it does not start the lease; the renter gets everything back).
//!
//! Also: a workload that died with the node ends its lease as the host's fault, as when it dies
//! with the node up (closed by the host, billed from the one start to the close, the rest
//! refunded; never relaunched on new ports); a lease closed while the node was down has its
//! workload stopped; and a `start` caught by the
//! crash is sent again only if the chain node no longer holds it (anvil's automine is switched
//! off so the transaction waits in its pool while the node is killed).

use gpuflow_protocol::escrow::status;
use std::time::Duration;

use alloy::primitives::{B256, U256};
use alloy::providers::Provider;
use gpuflow_protocol::escrow::GpuFlowEscrow;
use gpuflow_tests::chain::{ACCEPT_TIMEOUT, HOST, RENTER, TestChain};
use gpuflow_tests::host::{assert_serves, http_get, wait_refused};
use gpuflow_tests::market::Market;
use gpuflow_tests::poll::{poll, unix_now, wait_log, wait_wall_clock_past};
use gpuflow_tests::rental::{Balances, Lease, assert_settled, closed_on_chain, fee, starts};

/// How long a restarted node may take to reconcile its leases.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(60);

/// Pids of the processes of `m`'s host whose environment names `lease` (every workload copy of
/// the lease). Only processes running in the host's data directory count: tests run side by
/// side on chains with the same escrow address, host key and renter, so two of them can quote
/// the same lease id in the same second.
fn workload_pids(m: &Market, lease: &Lease) -> Vec<u32> {
    let marker = format!("GPUFLOW_LEASE_ID={:#x}", lease.id);
    let home = m.host.data_dir.canonicalize().unwrap();
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

/// Kills the whole process group led by workload process `leader`.
fn kill_workload(leader: u32) {
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(i32::try_from(leader).unwrap()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
}

/// Waits until the host's log contains `what`.
async fn wait_host_log(m: &Market, what: &str) {
    wait_log(|| m.host.log(), what, RECOVERY_TIMEOUT).await;
}

/// The lease as the escrow sees it.
async fn on_chain(m: &Market, lease: &Lease) -> GpuFlowEscrow::Lease {
    m.chain
        .escrow_as(RENTER)
        .lease(lease.id)
        .call()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_host_readopts_its_running_workload_and_stops_it_on_close() {
    let (mut m, lease) = Market::rent(600).await;
    let port = m.wait_running(&lease).await;
    let before = workload_pids(&m, &lease);
    assert_eq!(before.len(), 1, "one workload process: {before:?}");

    // kill -9: the node gets no chance to clean up; the workload lives in its own group.
    m.host.kill9().await;
    assert_serves(port, "workload after the crash").await;

    m.host.restart(&m.chain).await.unwrap();
    wait_host_log(&m, "recovery: workload re-adopted").await;
    let s = m.status(&lease).await;
    assert_eq!(s.state, "running", "{s:?}");
    assert_eq!(s.port, Some(port), "same port after the restart");
    assert_eq!(
        workload_pids(&m, &lease),
        before,
        "the same single process, re-adopted"
    );
    assert_serves(port, "workload after the restart").await;
    assert_eq!(starts(&m.chain, lease.id).await, 1, "exactly one start");

    // The renter closes; the re-adopted workload is stopped.
    m.renter_close(&lease).await;
    m.wait_stopped(&lease, port).await;
    assert_eq!(workload_pids(&m, &lease), Vec::<u32>::new());
    assert_eq!(starts(&m.chain, lease.id).await, 1, "still one start");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_back_after_the_accept_timeout_never_starts_and_the_renter_gets_everything_back() {
    // The host quotes, then dies; the renter opens while it is down.
    let (mut m, lease) = Market::rent_while_host_down(600).await;
    let opened = on_chain(&m, &lease).await;
    assert_eq!(opened.status, status::PENDING, "pending on chain");

    // The accept timeout passes on the chain's clock.
    let since = u64::try_from(opened.since).unwrap();
    m.chain
        .set_next_timestamp(since + ACCEPT_TIMEOUT + 1)
        .await
        .unwrap();
    m.chain.mine(1).await.unwrap();

    // The host comes back; the renter tells it about the lease, as it would have.
    m.host.restart(&m.chain).await.unwrap();
    m.renter.opened(&m.host, lease.id, B256::ZERO).await;
    let never_started = poll(RECOVERY_TIMEOUT, async || {
        let s = m.status(&lease).await;
        assert!(
            ["quoted", "opened", "never_started"].contains(&s.state.as_str()),
            "the host must not try to start: {s:?}\n{}",
            m.host.log()
        );
        (s.state == "never_started").then(|| assert_eq!(s.port, None))
    })
    .await;
    assert!(
        never_started.is_some(),
        "lease not never_started in time; log:\n{}",
        m.host.log()
    );
    assert_eq!(starts(&m.chain, lease.id).await, 0, "no start sent");
    assert!(
        !m.host.log().contains("call=\"start\""),
        "no start transaction sent"
    );

    // The renter takes the deposit back, to the unit.
    let closed = m.renter_close(&lease).await;
    assert_eq!(closed.reason, 4, "NeverStarted");
    assert_eq!(closed.refund, lease.deposit);
    assert_eq!(closed.hostAmount, U256::ZERO);
    assert_eq!(closed.fee, U256::ZERO);
    assert_eq!(
        Balances::of(&m.chain).await,
        Balances {
            renter: m.funds,
            host: U256::ZERO,
            escrow: U256::ZERO,
        }
    );
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
/// `Renter::wait_running` it does not trust the first port reported: right after a restart
/// the record may still name a workload that recovery is about to replace.
async fn wait_served(m: &Market, lease: &Lease) -> u16 {
    poll(RECOVERY_TIMEOUT, async || {
        let s = m.renter.try_status(&m.host, lease.id).await?;
        match (s.state == "running", s.port) {
            (true, Some(port)) if http_get(port).await.is_ok_and(|l| l.contains(" 200 ")) => {
                Some(port)
            }
            _ => None,
        }
    })
    .await
    .unwrap_or_else(|| panic!("lease not served in time; log:\n{}", m.host.log()))
}

/// Checks the renter's close paid the host price × seconds since the original start.
fn assert_billed_from(closed: &GpuFlowEscrow::LeaseClosed, lease: &Lease, started_at: U256) {
    assert_eq!(closed.startedAt, started_at, "billing never restarted");
    assert_settled(closed, lease.price(), lease.deposit);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_host_ends_a_lease_whose_workload_died_with_it_as_a_host_fault() {
    let (mut m, lease) = Market::rent(600).await;
    let port = m.wait_running(&lease).await;
    let before = workload_pids(&m, &lease);
    assert_eq!(before.len(), 1, "one workload process: {before:?}");
    let started = on_chain(&m, &lease).await;

    // The node and the workload's whole process group die.
    m.host.kill9().await;
    kill_workload(before[0]);
    assert!(
        wait_refused(port, RECOVERY_TIMEOUT).await,
        "port still open"
    );
    let view = on_chain(&m, &lease).await;
    assert_eq!(
        view.status,
        status::RUNNING,
        "still running on chain when the node restarts"
    );

    // As when the workload dies under a running node: the host ends the lease and closes it.
    m.host.restart(&m.chain).await.unwrap();
    wait_host_log(
        &m,
        "recovery: workload died while the node was down; ending the lease",
    )
    .await;
    let closed = poll(RECOVERY_TIMEOUT, async || {
        let s = m.renter.try_status(&m.host, lease.id).await?;
        (s.state == "closed").then(|| assert_eq!(s.port, None, "{s:?}"))
    })
    .await;
    assert!(closed.is_some(), "lease not closed; log:\n{}", m.host.log());
    let log = m.host.log();
    assert!(
        !log.contains("relaunching it") && log.matches("process workload started").count() == 1,
        "the workload was relaunched:\n{log}"
    );
    assert_eq!(
        workload_pids(&m, &lease),
        Vec::<u32>::new(),
        "no new process"
    );
    assert_eq!(starts(&m.chain, lease.id).await, 1, "exactly one start");

    // Closed by the host (a host fault), billed from the first start to the close, the rest
    // of the deposit refunded, to the unit.
    let closed = closed_on_chain(&m.chain)
        .await
        .expect("LeaseClosed on chain");
    assert_eq!(closed.closedBy, m.host_wallet(), "closed by the host");
    assert_eq!(closed.reason, 1, "HostClosed");
    assert!(closed.refund > U256::ZERO, "the unused deposit is refunded");
    assert_billed_from(&closed, &lease, U256::from(started.since));
    m.check_payout(&lease, &closed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_closed_while_the_host_was_down_has_its_workload_stopped_on_restart() {
    let (mut m, lease) = Market::rent(600).await;
    let port = m.wait_running(&lease).await;
    let started = on_chain(&m, &lease).await;
    m.host.kill9().await;
    assert_serves(port, "the workload outlives the node").await;

    // The renter closes while the host is down: the workload is now an orphan.
    let closed = m.renter_close(&lease).await;
    m.host.restart(&m.chain).await.unwrap();
    wait_host_log(
        &m,
        "recovery: lease closed on chain while the node was down",
    )
    .await;
    m.wait_stopped(&lease, port).await;
    assert_eq!(workload_pids(&m, &lease), Vec::<u32>::new(), "no orphan");
    assert_eq!(starts(&m.chain, lease.id).await, 1);
    assert_billed_from(&closed, &lease, U256::from(started.since));
    assert_eq!(Balances::of(&m.chain).await.host, closed.hostAmount);
}

/// Opens a lease while the host is down, then brings the host up with automine off and tells it
/// about the lease: its `start` waits in anvil's pool. Kills the host while it is `starting`.
async fn host_killed_with_start_in_the_pool() -> (Market, Lease) {
    let (mut m, lease) = Market::rent_while_host_down(600).await;
    automine(&m.chain, false).await;
    m.host.restart(&m.chain).await.unwrap();
    // The renter's hint (retried while its p2p node still holds the dead node's connection).
    m.renter.opened(&m.host, lease.id, B256::ZERO).await;
    let host = m.chain.signer(HOST).address();
    let provider = m.chain.provider(0);
    let sent = poll(RECOVERY_TIMEOUT, async || {
        let pending = provider
            .get_transaction_count(host)
            .pending()
            .await
            .unwrap();
        let starting = m
            .renter
            .try_status(&m.host, lease.id)
            .await
            .is_some_and(|s| s.state == "starting");
        (starting && pending == 1).then_some(())
    })
    .await;
    assert!(sent.is_some(), "start never sent; log:\n{}", m.host.log());
    m.host.kill9().await;
    assert_eq!(host_nonce(&m.chain).await, 0, "start not mined yet");
    (m, lease)
}

/// The lease is served after exactly one `start` (the host's only transaction), and stopped
/// when the renter closes it.
async fn served_after_one_start(m: &Market, lease: &Lease) {
    let port = wait_served(m, lease).await;
    assert_eq!(starts(&m.chain, lease.id).await, 1);
    assert_eq!(
        host_nonce(&m.chain).await,
        1,
        "one host transaction: one start"
    );
    m.renter_close(lease).await;
    m.wait_stopped(lease, port).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_still_in_the_pool_at_restart_is_not_sent_again() {
    let (mut m, lease) = host_killed_with_start_in_the_pool().await;
    m.host.restart(&m.chain).await.unwrap();
    wait_host_log(
        &m,
        "recovery: a host transaction is still pending; not resending start",
    )
    .await;

    // The chain mines the first `start`; the node launches the workload.
    m.chain.mine(1).await.unwrap();
    automine(&m.chain, true).await;
    served_after_one_start(&m, &lease).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_lost_with_the_crash_is_sent_once_after_restart() {
    let (mut m, lease) = host_killed_with_start_in_the_pool().await;
    // The chain node forgets the transaction, as a restarted RPC or a dropped broadcast would.
    let _: serde_json::Value = m
        .chain
        .provider(0)
        .raw_request("anvil_dropAllTransactions".into(), ())
        .await
        .unwrap();
    automine(&m.chain, true).await;
    m.host.restart(&m.chain).await.unwrap();
    wait_host_log(&m, "recovery: start was not mined before the restart").await;
    served_after_one_start(&m, &lease).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_that_ran_out_while_the_host_was_down_is_settled_without_a_relaunch() {
    // Ten seconds of rent: used up while the host is down.
    const SECS: u64 = 10;
    let (mut m, lease) = Market::rent(SECS).await;
    let port = m.wait_running(&lease).await;
    let pids = workload_pids(&m, &lease);
    m.host.kill9().await;
    kill_workload(pids[0]);
    assert!(
        wait_refused(port, RECOVERY_TIMEOUT).await,
        "port still open"
    );
    let view = on_chain(&m, &lease).await;
    assert_eq!(
        view.status,
        status::RUNNING,
        "still running on chain when the host died"
    );

    // The deposit runs out on the wall clock (the node's clock for billing) while it is down.
    let end = u64::try_from(view.since).unwrap() + SECS;
    wait_wall_clock_past(end, Duration::from_secs(SECS + 5)).await;
    assert!(unix_now() > end);

    m.host.restart(&m.chain).await.unwrap();
    wait_host_log(
        &m,
        "recovery: workload gone and the deposit used up while the node was down",
    )
    .await;
    let closed = poll(RECOVERY_TIMEOUT, async || {
        let s = m.renter.try_status(&m.host, lease.id).await?;
        (s.state == "closed").then_some(())
    })
    .await;
    assert!(closed.is_some(), "lease not closed; log:\n{}", m.host.log());
    assert!(
        !m.host
            .log()
            .contains("workload gone while the lease runs; relaunching it"),
        "an unpaid workload was relaunched"
    );
    assert_eq!(workload_pids(&m, &lease), Vec::<u32>::new());

    // Settled on chain by the host: the whole deposit earned, nothing refunded.
    let closed = m.closed_depleted().await;
    assert_eq!(closed.hostAmount + closed.fee, lease.deposit);
    assert_eq!(closed.fee, fee(lease.deposit));
    assert_eq!(Balances::of(&m.chain).await.host, closed.hostAmount);
    assert_eq!(starts(&m.chain, lease.id).await, 1);
}
