//! The escrow hardening against the running node and the real CLI: a quote carries the host's
//! shortest lease, so the escrow refuses a dust deposit; a lease below the host's current
//! minimum is declined (`HostDeclined`, full refund) instead of started; a wallet that keeps
//! opening and cancelling is no longer quoted; and `gpuflow rent` pays with one permit
//! transaction when the token supports EIP-2612.

use std::time::Duration;

use alloy::primitives::U256;
use gpuflow_protocol::escrow::GpuFlowEscrow::GpuFlowEscrowErrors;
use gpuflow_protocol::escrow::Quote;
use gpuflow_protocol::escrow_events::CloseReason;
use gpuflow_protocol::wire::{LeaseRequest, LeaseResponse, code};
use gpuflow_tests::chain::{RENTER, TestChain};
use gpuflow_tests::cli::{CliRenter, units};
use gpuflow_tests::host::{HostNode, HostOpts};
use gpuflow_tests::market::Market;
use gpuflow_tests::poll::poll;
use gpuflow_tests::rental::{Balances, Wallet, closed_on_chain, mint, renter_close};

use crate::rent::start_host;

/// Longest wait for the node to act on something it saw on chain.
const ACT_TIMEOUT: Duration = Duration::from_secs(30);

/// Host options with `[offers] min_duration_secs` overridden by the flag.
fn min_duration(secs: u64) -> HostOpts {
    HostOpts {
        args: vec!["--min-duration-secs".into(), secs.to_string()],
        ..HostOpts::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quote_carries_the_hosts_minimum_and_the_escrow_refuses_a_dust_deposit() {
    let m = Market::start(&min_duration(600)).await;
    let q = m.quote().await;
    assert_eq!(q.quote.min_duration, U256::from(600u64));
    let price = q.quote.price_per_second;

    // One second short of the minimum: `open` reverts and nothing moves.
    let before = Balances::of(&m.chain).await;
    let err = m
        .chain
        .escrow_as(RENTER)
        .open(
            Quote::from(q.quote.clone()),
            q.signature.clone(),
            price * U256::from(599u64),
        )
        .send()
        .await
        .expect_err("a deposit below the quote's minimum must not open");
    match err.as_decoded_interface_error::<GpuFlowEscrowErrors>() {
        Some(GpuFlowEscrowErrors::DepositBelowMinimum(e)) => {
            assert_eq!(e.deposit, price * U256::from(599u64));
            assert_eq!(e.minimum, price * U256::from(600u64));
        }
        other => panic!("expected DepositBelowMinimum, got {other:?} ({err})"),
    }
    assert_eq!(Balances::of(&m.chain).await, before);

    // Exactly the minimum opens, and the host runs it.
    let lease = m.open(&q, 600).await;
    m.renter.opened(&m.host, lease.id, lease.tx_hash).await;
    m.wait_running(&lease).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_below_the_hosts_current_minimum_is_declined_with_a_full_refund() {
    // Quoted while the host's minimum was 1 s (the test default); the host then raises it to
    // 10 minutes, and the renter opens the old quote with one minute of rent meanwhile.
    let mut m = Market::start(&HostOpts::default()).await;
    let q = m.quote().await;
    assert_eq!(q.quote.min_duration, U256::from(1u64));
    m.host.kill9().await;
    let lease = m.open(&q, 60).await;
    let data_dir = m.host.data_dir.clone();
    m.host = HostNode::start(&m.chain, &data_dir, &min_duration(600))
        .await
        .unwrap();
    m.renter.opened(&m.host, lease.id, lease.tx_hash).await;

    let closed = poll(ACT_TIMEOUT, async || closed_on_chain(&m.chain).await)
        .await
        .unwrap_or_else(|| panic!("the host never declined; log:\n{}", m.host.log()));
    assert_eq!(closed.leaseId, lease.id);
    assert_eq!(
        closed.reason,
        CloseReason::HostDeclined.code(),
        "{closed:?}"
    );
    assert_eq!(closed.closedBy, m.host_wallet());
    assert_eq!(closed.refund, lease.deposit);
    assert_eq!(closed.hostAmount, U256::ZERO);
    assert_eq!(closed.fee, U256::ZERO);
    assert_eq!(m.chain.balance(m.renter_wallet()).await.unwrap(), m.funds);
    assert!(
        m.host.log().contains("declining the lease"),
        "{}",
        m.host.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wallet_that_keeps_opening_and_cancelling_is_no_longer_quoted() {
    let mut m = Market::start(&HostOpts::default()).await;
    // Each round: a quote, the host down (so it cannot start the lease), open, cancel.
    for _ in 0..gpuflow_node::quote::MAX_CANCELS_PER_RENTER {
        let q = m.quote().await;
        m.host.kill9().await;
        let lease = m.open(&q, 600).await;
        let closed = renter_close(&m.chain, &lease.quote).await;
        assert_eq!(closed.reason, CloseReason::CancelledBeforeStart.code());
        m.host.restart(&m.chain).await.unwrap();
        // The renter's hint makes the host look at the lease now (it finds it cancelled).
        m.renter.opened(&m.host, lease.id, lease.tx_hash).await;
        let seen = poll(ACT_TIMEOUT, async || {
            (m.status(&lease).await.state == "cancelled").then_some(())
        })
        .await;
        assert!(seen.is_some(), "never cancelled; log:\n{}", m.host.log());
    }
    // Every deposit came back.
    assert_eq!(m.chain.balance(m.renter_wallet()).await.unwrap(), m.funds);

    // Once the host has seen the cancellations on chain, this wallet is refused...
    let request = m.renter.quote_request(&m.host);
    let refused = poll(ACT_TIMEOUT, async || {
        let signed = m.renter.signed(&m.host, &request);
        match m.renter.ask(&m.host, LeaseRequest::Quote(signed)).await {
            LeaseResponse::Error { code: c, message } if c == code::RATE_LIMITED => Some(message),
            _ => None,
        }
    })
    .await
    .unwrap_or_else(|| panic!("never rate limited; log:\n{}", m.host.log()));
    assert!(refused.contains("cancelled 3 pending leases"), "{refused}");
    assert!(refused.contains("try again in"), "{refused}");

    // ...while another (funded) wallet is still quoted.
    mint(&m.chain, 5, U256::from(1_000_000u64)).await;
    let mut other = request;
    other.renter = m.chain.signer(5).address();
    let other = m.renter.signed_by(&m.host, &other, &m.chain.signer(5));
    match m.renter.ask(&m.host, LeaseRequest::Quote(other)).await {
        LeaseResponse::Quote(_) => {}
        r => panic!("another wallet must still get a quote, got {r:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rent_pays_with_one_permit_transaction_and_refuses_a_duration_below_the_minimum() {
    let chain = TestChain::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (host, _guard) = start_host(&chain, &dir.path().join("a"), 1, "0.40", &[], true).await;
    mint(&chain, RENTER, U256::from(100_000_000u64)).await;
    let me = chain.signer(RENTER).address();
    let r = CliRenter::new(&chain, &dir.path().join("renter"), RENTER, &[&host]);
    let offer = host.offer_id().to_string();
    let ssh = r.ssh_key();

    // A first-time renter: no allowance, no transaction sent yet.
    let before = Wallet::of(&chain, me).await;
    assert_eq!((before.allowance, before.nonce), (U256::ZERO, 0));
    let rented = r
        .json(&[
            "rent",
            &offer,
            "--hours",
            "1",
            "--ssh-key",
            &ssh,
            "--yes",
            "--json",
        ])
        .await;
    assert_eq!(rented["payment"], "permit", "{rented}");
    let deposit = units(&rented["deposit"]);
    let after = Wallet::of(&chain, me).await;
    // One transaction (openWithPermit), the exact deposit taken, no allowance left over.
    assert_eq!(after.nonce, 1, "{rented}");
    assert_eq!(after.tokens, before.tokens - deposit);
    assert_eq!(after.allowance, U256::ZERO);

    // A second rent of a host whose minimum is ten minutes, for six: refused before anything
    // is asked of the host or sent.
    let (strict, _g2) = {
        let opts = HostOpts {
            key: 3,
            ..min_duration(600)
        };
        let h = HostNode::start(&chain, &dir.path().join("b"), &opts)
            .await
            .unwrap();
        let g = h.guard_workloads();
        (h, g)
    };
    let r2 = CliRenter::new(&chain, &dir.path().join("renter2"), RENTER, &[&strict]);
    let out = r2
        .run(&[
            "rent",
            &strict.offer_id().to_string(),
            "--hours",
            "0.1",
            "--ssh-key",
            &ssh,
            "--yes",
        ])
        .await;
    assert_eq!(out.code(), 2, "{out:?}");
    assert!(out.stderr.contains("600s to"), "{}", out.stderr);
    assert_eq!(Wallet::of(&chain, me).await, after, "nothing spent");
}
