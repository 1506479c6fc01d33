//! A stranger cannot take a host off the market through quotes: a quote request must be
//! signed by its renter wallet for this host, the wallet must hold the quote's smallest deposit
//! and gas, a quote holds its GPUs only briefly unless the renter says it is opening it, and a
//! released quote frees them at once. `gpuflow rent` checks the wallet before it asks for a
//! quote, so a renter who cannot or will not pay never blocks anyone.

use alloy::primitives::U256;
use gpuflow_protocol::escrow::{self, Quote};
use gpuflow_protocol::wire::{LeaseRequest, LeaseResponse, SignedQuote, code};
use gpuflow_tests::chain::{RENTER, TestChain};
use gpuflow_tests::cli::CliRenter;
use gpuflow_tests::host::HostOpts;
use gpuflow_tests::market::Market;
use gpuflow_tests::poll::wait_wall_clock_past;
use gpuflow_tests::rental::mint;

use crate::rent::start_host;

/// An anvil account that holds gas but no stablecoin.
const UNFUNDED: usize = 6;

async fn expect_code(m: &Market, req: LeaseRequest, want: &str) -> String {
    match m.renter.ask(&m.host, req).await {
        LeaseResponse::Error { code: c, message } => {
            assert_eq!(c, want, "{message}");
            message
        }
        other => panic!("expected `{want}`, got {other:?}"),
    }
}

async fn quote_of(m: &Market, req: LeaseRequest) -> SignedQuote {
    match m.renter.ask(&m.host, req).await {
        LeaseResponse::Quote(q) => q,
        other => panic!("expected a quote, got {other:?}; log:\n{}", m.host.log()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_forged_and_unfunded_requests_hold_nothing() {
    let m = Market::start(&HostOpts::default()).await;
    let req = m.renter.quote_request(&m.host);

    // Unsigned; signed by a wallet that is not the renter it names; naming an unfunded wallet.
    let msg = expect_code(&m, LeaseRequest::Quote(req.clone()), code::UNAUTHORIZED).await;
    assert!(msg.contains("signed by the renter wallet"), "{msg}");
    let forged = m.renter.signed_by(&m.host, &req, &m.chain.signer(UNFUNDED));
    expect_code(&m, LeaseRequest::Quote(forged), code::UNAUTHORIZED).await;
    let mut poor = req.clone();
    poor.renter = m.chain.signer(UNFUNDED).address();
    let poor = m
        .renter
        .signed_by(&m.host, &poor, &m.chain.signer(UNFUNDED));
    let msg = expect_code(&m, LeaseRequest::Quote(poor), code::INSUFFICIENT_FUNDS).await;
    assert!(msg.contains("smallest deposit"), "{msg}");

    // The host's only GPU is still free for the funded renter; the same signed request cannot
    // be used a second time.
    let signed = m.renter.signed(&m.host, &req);
    quote_of(&m, LeaseRequest::Quote(signed.clone())).await;
    let msg = expect_code(&m, LeaseRequest::Quote(signed), code::UNAUTHORIZED).await;
    assert!(msg.contains("used already"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quote_holds_briefly_unless_opening_and_a_release_frees_it_at_once() {
    let hold = 3;
    let m = Market::start(&HostOpts {
        args: vec!["--quote-hold-secs".into(), hold.to_string()],
        ..HostOpts::default()
    })
    .await;
    let domain = escrow::domain(m.chain.chain_id(), m.chain.escrow);
    let lease_of = |q: &SignedQuote| escrow::lease_id(&Quote::from(q.quote.clone()), &domain);
    // A second funded wallet competes for the host's one GPU.
    let rival = m.chain.signer(5);
    mint(&m.chain, 5, U256::from(1_000_000_000u64)).await;
    let mut rival_req = m.renter.quote_request(&m.host);
    rival_req.renter = rival.address();
    let rival_quote = || LeaseRequest::Quote(m.renter.signed_by(&m.host, &rival_req, &rival));

    // 1. A quote nobody says it is opening: the GPU is busy, then free once the hold ends.
    let q = m.quote().await;
    expect_code(&m, rival_quote(), code::NO_CAPACITY).await;
    wait_wall_clock_past(q.reserved_until, std::time::Duration::from_secs(30)).await;
    let rq = quote_of(&m, rival_quote()).await;
    // Released by the rival's peer (the same p2p node here): free at once.
    let release = LeaseRequest::Release {
        lease_id: lease_of(&rq),
    };
    assert_eq!(m.renter.ask(&m.host, release).await, LeaseResponse::Ack);

    // 2. A quote whose renter says it is opening: held until the quote expires.
    let q = m.quote().await;
    let lease = lease_of(&q);
    let opening = LeaseRequest::Opening { lease_id: lease };
    assert_eq!(m.renter.ask(&m.host, opening).await, LeaseResponse::Ack);
    wait_wall_clock_past(q.reserved_until, std::time::Duration::from_secs(30)).await;
    expect_code(&m, rival_quote(), code::NO_CAPACITY).await;
    // ...and it still opens and runs.
    let lease = m.open(&q, 600).await;
    m.renter.opened(&m.host, lease.id, lease.tx_hash).await;
    m.wait_running(&lease).await;

    // Opening a quote the host no longer holds is refused, so the CLI stops before paying.
    let gone = LeaseRequest::Opening {
        lease_id: lease_of(&rq),
    };
    expect_code(&m, gone, code::NO_HOLD).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rent_that_cannot_or_will_not_pay_never_blocks_the_next_renter() {
    let chain = TestChain::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (host, _guard) = start_host(&chain, &dir.path().join("a"), 1, "0.40", &[], true).await;
    let offer = host.offer_id().to_string();
    let poor = CliRenter::new(&chain, &dir.path().join("poor"), UNFUNDED, &[&host]);
    let ssh = poor.ssh_key();
    let rent = ["rent", &offer, "--hours", "1", "--ssh-key", &ssh];

    // An unfunded wallet: refused before any quote (the old CLI held the GPU for 5 minutes).
    let out = poor.run(&[&rent[..], &["--yes"]].concat()).await;
    assert_eq!(out.code(), 1, "{out:?}");
    assert!(out.stderr.contains("not enough"), "{}", out.stderr);
    // A funded renter without --yes and no terminal: refused before any quote too.
    mint(&chain, RENTER, U256::from(100_000_000u64)).await;
    let r = CliRenter::new(&chain, &dir.path().join("renter"), RENTER, &[&host]);
    let out = r.run(&rent).await;
    assert_eq!(out.code(), 2, "{out:?}");
    assert!(
        host.log().matches("quote issued").count() == 0,
        "{}",
        host.log()
    );

    // Right after, the host's only GPU is rented at once.
    let rented = r.json(&[&rent[..], &["--yes", "--json"]].concat()).await;
    assert_eq!(rented["offer_id"], offer.as_str(), "{rented}");
    let log = host.log();
    assert!(log.contains("renter is opening"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quote_opened_after_its_hold_lapsed_on_a_gpu_leased_since_is_declined() {
    let m = Market::start(&HostOpts {
        args: vec!["--quote-hold-secs".into(), "2".into()],
        ..HostOpts::default()
    })
    .await;
    let domain = escrow::domain(m.chain.chain_id(), m.chain.escrow);
    // The renter's quote lapses without an "opening"...
    let late = m.quote().await;
    wait_wall_clock_past(late.reserved_until, std::time::Duration::from_secs(30)).await;

    // ...a rival is quoted the same GPU, says it is opening, opens and runs it...
    let rival = m.chain.signer(5);
    mint(&m.chain, 5, U256::from(1_000_000_000u64)).await;
    let mut req = m.renter.quote_request(&m.host);
    req.renter = rival.address();
    let rq = quote_of(
        &m,
        LeaseRequest::Quote(m.renter.signed_by(&m.host, &req, &rival)),
    )
    .await;
    let rival_quote = Quote::from(rq.quote.clone());
    let rival_lease = escrow::lease_id(&rival_quote, &domain);
    let opening = LeaseRequest::Opening {
        lease_id: rival_lease,
    };
    assert_eq!(m.renter.ask(&m.host, opening).await, LeaseResponse::Ack);
    let (token, escrow_c) = (m.chain.token_as(5), m.chain.escrow_as(5));
    let approved = token
        .approve(m.chain.escrow, U256::MAX)
        .send()
        .await
        .unwrap();
    assert!(approved.get_receipt().await.unwrap().status());
    let deposit = rq.quote.price_per_second * U256::from(600u64);
    let sent = escrow_c
        .open(rival_quote, rq.signature.clone(), deposit)
        .send()
        .await
        .unwrap();
    let receipt = sent.get_receipt().await.unwrap();
    assert!(receipt.status());
    m.renter
        .opened(&m.host, rival_lease, receipt.transaction_hash)
        .await;
    m.renter.wait_running(&m.host, rival_lease).await;

    // ...then the renter opens its lapsed quote (still before its expiry): the host declines it
    // at once instead of double-booking the GPU, and the renter gets everything back.
    let lease = m.open(&late, 600).await;
    m.renter.opened(&m.host, lease.id, lease.tx_hash).await;
    let closed = gpuflow_tests::poll::poll(std::time::Duration::from_secs(30), async || {
        gpuflow_tests::rental::closed_on_chain(&m.chain).await
    })
    .await
    .unwrap_or_else(|| panic!("never declined; log:\n{}", m.host.log()));
    assert_eq!(closed.leaseId, lease.id);
    assert_eq!(
        closed.reason,
        gpuflow_protocol::escrow_events::CloseReason::HostDeclined.code()
    );
    assert_eq!(closed.refund, lease.deposit);
    assert_eq!(m.chain.balance(m.renter_wallet()).await.unwrap(), m.funds);
    assert_eq!(m.renter.status(&m.host, rival_lease).await.state, "running");
}
