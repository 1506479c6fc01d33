//! Renter-signed receipts end to end: a real host node on anvil, a lease rented with the real
//! `gpuflow rent`, `gpuflow wait --until closed` probing the workload and sending signed
//! receipts, the host publishing them with its offer, and `gpuflow host --json` counting them
//! for the lease; a receipt signed by a wallet that is not the renter is refused by the host
//! and never published.

use std::time::Duration;

use alloy::primitives::{B256, U256};
use gpuflow_protocol::escrow;
use gpuflow_protocol::receipt::{Receipt, SignedReceipt};
use gpuflow_protocol::wire::{LeaseRequest, LeaseResponse, code};
use gpuflow_tests::chain::{HOST, RENTER, TestChain};
use gpuflow_tests::cli::{CliRenter, gpuflow_in};
use gpuflow_tests::host::{HostNode, HostOpts};
use gpuflow_tests::poll::poll_every;
use gpuflow_tests::rental::mint;
use gpuflow_tests::renter::Renter;
use serde_json::Value;

/// How long receipts may take from the renter's first probe to `gpuflow host`.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(60);
/// A wallet that never rented anything.
const STRANGER: usize = 6;

/// `gpuflow host <wallet> --json` until `done` holds for it (the host re-announces its offer
/// every 5 s; nothing notifies the renter).
async fn host_until(r: &CliRenter, wallet: &str, done: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    let reached = poll_every(PUBLISH_TIMEOUT, Duration::from_millis(500), async || {
        last = r.json(&["host", wallet, "--json"]).await;
        done(&last).then(|| last.clone())
    })
    .await;
    reached.unwrap_or_else(|| panic!("not reached in time: {last:#}"))
}

fn lease_receipts(h: &Value) -> u64 {
    h["history"][0]["receipts"].as_u64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_sends_receipts_the_host_publishes_them_and_a_strangers_is_refused() {
    let chain = TestChain::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let opts = HostOpts {
        env: vec![
            ("GPUFLOW_OFFER_TTL_SECS".into(), "10".into()),
            ("GPUFLOW_API_ADDR".into(), "127.0.0.1:0".into()),
        ],
        ..HostOpts::default()
    };
    let host = HostNode::start(&chain, &dir.path().join("host"), &opts)
        .await
        .unwrap();
    let _workloads = host.guard_workloads();
    let host_wallet = chain.signer(HOST).address().to_string();
    mint(&chain, RENTER, U256::from(100_000_000u64)).await;
    let r = CliRenter::new(&chain, &dir.path().join("renter"), RENTER, &[&host]);

    let rented = r.rent_first(&[]).await;
    let lease_id: B256 = rented["lease_id"].as_str().unwrap().parse().unwrap();
    let prefix = format!("{lease_id:x}")[..8].to_owned();

    // `gpuflow wait` probes every second and sends a receipt per window until the lease closes.
    let (home, env) = (r.home.clone(), r.env.clone());
    let wait_prefix = prefix.clone();
    let waiting = tokio::spawn(async move {
        gpuflow_in(
            &home,
            &env,
            &[
                "wait",
                &wait_prefix,
                "--until",
                "closed",
                "--probe-interval",
                "1",
                "--timeout",
                "120",
            ],
        )
        .await
    });

    // The host publishes the renter's receipts with its offer; the CLI verifies and counts them.
    let h = host_until(&r, &host_wallet, |h| lease_receipts(h) >= 1).await;
    assert_eq!(h["history"][0]["outcome"], "running", "{h:#}");
    assert_eq!(h["ignored_receipts"], 0, "{h:#}");

    // A receipt for this lease signed by a wallet that is not its renter is refused.
    let client = Renter::start(&chain);
    let stranger = chain.signer(STRANGER);
    let now = chain.now().await.unwrap();
    let forged = Receipt {
        leaseId: lease_id,
        renter: stranger.address(),
        windowStart: now - 60,
        windowEnd: now,
        probes: 60,
        reachable: 0,
    };
    let domain = escrow::domain(chain.chain_id(), chain.escrow);
    let signed = SignedReceipt::sign(&stranger, &forged, &domain).unwrap();
    let answer = client.ask(&host, LeaseRequest::Receipt(signed)).await;
    assert!(
        matches!(&answer, LeaseResponse::Error { code: c, .. } if c == code::INVALID_REQUEST),
        "{answer:?}"
    );

    // The renter stops the lease; `wait` sees it closed and exits 0.
    let stopped = r.json(&["stop", &prefix, "--json"]).await;
    assert!(stopped["closed_at"].as_u64().is_some(), "{stopped}");
    let out = waiting.await.unwrap().unwrap();
    assert_eq!(out.code(), 0, "wait failed: {}", out.stderr);
    assert!(
        !out.stderr.contains("refused"),
        "the host refused a renter's receipt: {}",
        out.stderr
    );

    // Ended normally with the workload reachable whenever probed: receipts counted, o = 1, and
    // nothing the host published was ignored (the stranger's receipt never got into the offer).
    let h = host_until(&r, &host_wallet, |h| {
        h["history"][0]["outcome"] == "normal_end"
    })
    .await;
    assert!(lease_receipts(&h) >= 1, "{h:#}");
    assert_eq!(h["history"][0]["good"], 1.0, "{h:#}");
    assert_eq!(h["ignored_receipts"], 0, "{h:#}");
}
