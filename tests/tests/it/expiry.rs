//! Quote expiry against the running node: a quote holds the offer's GPUs until its expiry (a
//! second quote for them is refused `no_capacity`); once the chain's clock passes the expiry the
//! quote can no longer be opened (the escrow reverts `QuoteExpired`); and once the wall clock
//! passes it, the GPUs are free and a new quote succeeds.
//!
//! The node is started with `--quote-ttl-secs` [`TTL`] so the test waits seconds, not the
//! default five minutes, for the expiry. (Double booking around running leases and restarts:
//! `booking.rs`.)

use std::time::Duration;

use alloy::primitives::U256;
use gpuflow_protocol::escrow::GpuFlowEscrow::GpuFlowEscrowErrors;
use gpuflow_protocol::escrow::{self, Quote};
use gpuflow_protocol::wire::code;
use gpuflow_tests::chain::RENTER;
use gpuflow_tests::host::HostOpts;
use gpuflow_tests::market::Market;
use gpuflow_tests::poll::{unix_now, wait_wall_clock_past};
use gpuflow_tests::rental::Balances;

/// Seconds a quote of the node under test can be opened (and holds its GPUs). Long enough for
/// the checks made while the first quote is live, short enough to wait for.
const TTL: u64 = 10;

/// Host options: the default host (one GPU) with quotes valid for `ttl` seconds.
pub(crate) fn quote_ttl(ttl: u64) -> HostOpts {
    HostOpts {
        args: vec!["--quote-ttl-secs".into(), ttl.to_string()],
        ..HostOpts::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quote_holds_all_gpus_until_its_expiry_and_cannot_be_opened_after_it() {
    // One GPU behind the offer: one quote takes all of it.
    let m = Market::start(&quote_ttl(TTL)).await;
    let (host, renter, chain) = (&m.host, &m.renter, &m.chain);

    let before = unix_now();
    let first = renter.expect_quote(host).await;
    let expiry = u64::try_from(first.quote.expiry).unwrap();
    assert!(
        (before + TTL..=unix_now() + TTL).contains(&expiry),
        "the quote expires {TTL} s after it was issued: {expiry}"
    );
    assert_eq!(
        U256::from(first.reserved_until),
        first.quote.expiry,
        "the GPUs are held exactly as long as the quote can be opened"
    );
    renter.expect_refusal(host, code::NO_CAPACITY).await;

    // The chain's clock passes the expiry: `open` reverts, nothing is taken from the renter.
    let deposit = first.quote.price_per_second * U256::from(600u64);
    chain.set_next_timestamp(expiry + 1).await.unwrap();
    chain.mine(1).await.unwrap();
    let err = chain
        .escrow_as(RENTER)
        .open(
            Quote::from(first.quote.clone()),
            first.signature.clone(),
            deposit,
        )
        .send()
        .await
        .expect_err("an expired quote must not open");
    match err.as_decoded_interface_error::<GpuFlowEscrowErrors>() {
        Some(GpuFlowEscrowErrors::QuoteExpired(e)) => {
            assert_eq!(e.expiry, first.quote.expiry);
            assert!(e.now > e.expiry);
        }
        other => panic!("expected QuoteExpired, got {other:?} ({err})"),
    }
    let balances = Balances::of(chain).await;
    assert_eq!(balances.renter, m.funds);
    assert_eq!(balances.escrow, U256::ZERO);

    // The node holds the quote as never opened.
    let lease = escrow::lease_id(
        &Quote::from(first.quote.clone()),
        &escrow::domain(chain.chain_id(), chain.escrow),
    );
    let s = renter.status(host, lease).await;
    assert_eq!(s.state, "quoted", "{s:?}");

    // The wall clock (the node's) passes the reservation: the GPU is free for a new quote.
    wait_wall_clock_past(first.reserved_until, Duration::from_secs(TTL + 30)).await;
    let second = renter.expect_quote(host).await;
    assert!(second.reserved_until > first.reserved_until);
}
