//! `gpuflow rent`, `stop` and `extend` when things go wrong: each failure must say what to do,
//! and spend nothing it should not.

use alloy::primitives::U256;
use alloy::providers::Provider;
use gpuflow_tests::chain::{RENTER, TestChain};
use gpuflow_tests::cli::{CliRenter, units};
use gpuflow_tests::procs::START_TIMEOUT;
use gpuflow_tests::rental::{Wallet, mint};

use crate::rent::start_host;

/// `gpuflow rent OFFER --hours 1 --yes` as `r`, which must fail with exit 1, print each of
/// `says` on stderr, and leave the renter's wallet on `chain` as it was.
async fn rent_refused(chain: &TestChain, r: &CliRenter, offer: &str, says: &[&str]) {
    let me = chain.signer(RENTER).address();
    let before = Wallet::of(chain, me).await;
    let ssh = r.ssh_key();
    let out = r
        .run(&["rent", offer, "--hours", "1", "--ssh-key", &ssh, "--yes"])
        .await;
    assert_eq!(out.code(), 1, "{}", out.stderr);
    for want in says {
        assert!(out.stderr.contains(want), "`{want}` in: {}", out.stderr);
    }
    assert_eq!(Wallet::of(chain, me).await, before, "nothing spent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insufficient_funds_is_a_clear_error_and_spends_nothing() {
    let chain = TestChain::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (host, _host) = start_host(&chain, &dir.path().join("h"), 1, "0.40", &[], true).await;
    // One base unit: far below the deposit.
    mint(&chain, RENTER, U256::from(1u64)).await;
    let r = CliRenter::new(&chain, &dir.path().join("r"), RENTER, &[&host]);
    // 111 per second for an hour = 399600; one unit held: names the shortfall and says how to
    // get some.
    let id = host.offer_id().to_string();
    rent_refused(&chain, &r, &id, &["not enough", "0.399599", "cast send"]).await;
    let leases = r.json(&["leases", "--json", "--all"]).await;
    assert_eq!(leases, serde_json::json!([]), "no lease recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_quote_is_refused_before_anything_is_sent() {
    let chain = TestChain::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (host, _host) = start_host(&chain, &dir.path().join("h"), 1, "0.40", &[], true).await;
    mint(&chain, RENTER, U256::from(10_000_000u64)).await;
    // The chain's clock runs an hour ahead of the host's: every quote (valid for minutes by
    // the host's clock) is already expired by the chain's.
    let p = chain.provider(0);
    let _: serde_json::Value = p
        .raw_request("evm_increaseTime".into(), (3600u64,))
        .await
        .unwrap();
    let _: serde_json::Value = p.raw_request("evm_mine".into(), ()).await.unwrap();
    let r = CliRenter::new(&chain, &dir.path().join("r"), RENTER, &[&host]);
    let id = host.offer_id().to_string();
    rent_refused(&chain, &r, &id, &["quote expired", "run the command again"]).await;
}

/// The host quotes but never starts (its lease engine is down: no chain connection). `rent`
/// times out with exit 3 and says how to get the money back; `stop` refunds the whole deposit;
/// a second `stop` says the lease is closed, exits 4 and sends nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_down_before_start_refunds_in_full_and_stop_twice_sends_nothing() {
    let chain = TestChain::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (host, _host) = start_host(&chain, &dir.path().join("h"), 1, "0.40", &[], false).await;
    let funds = U256::from(10_000_000u64);
    mint(&chain, RENTER, funds).await;
    let r = CliRenter::new(&chain, &dir.path().join("r"), RENTER, &[&host]);
    let me = chain.signer(RENTER).address();
    let (ssh, id) = (r.ssh_key(), host.offer_id().to_string());
    let out = r
        .run(&[
            "rent",
            &id,
            "--hours",
            "1",
            "--ssh-key",
            &ssh,
            "--yes",
            "--timeout",
            "2",
        ])
        .await;
    assert_eq!(out.code(), 3, "{}", out.stderr);
    assert!(out.stderr.contains("gpuflow stop"), "{}", out.stderr);
    let deposit = U256::from(111u64 * 3600);
    assert_eq!(
        chain.balance(me).await.unwrap(),
        funds - deposit,
        "deposit in escrow"
    );

    let listed = r.json(&["leases", "--json"]).await;
    assert_eq!(listed[0]["state"], "pending", "{listed}");
    let lease_id = listed[0]["lease_id"].as_str().unwrap().to_owned();
    let waited = r
        .run(&[
            "wait",
            &lease_id[2..12],
            "--until",
            "running",
            "--timeout",
            "1",
        ])
        .await;
    assert_eq!(waited.code(), 3, "wait times out: {}", waited.stderr);

    let stopped = r.json(&["stop", &lease_id[2..12], "--json"]).await;
    assert_eq!(units(&stopped["refund"]), deposit, "{stopped}");
    assert_eq!(units(&stopped["host_amount"]), U256::ZERO);
    assert_eq!(units(&stopped["fee"]), U256::ZERO);
    assert_eq!(chain.balance(me).await.unwrap(), funds, "all of it back");
    assert_eq!(chain.balance(host.wallet).await.unwrap(), U256::ZERO);

    let before = Wallet::of(&chain, me).await;
    let again = r.run(&["stop", &lease_id[2..12]]).await;
    assert_eq!(again.code(), 4, "{}", again.stderr);
    assert!(again.stderr.contains("already closed"), "{}", again.stderr);
    assert!(
        again.stderr.contains("nothing was sent"),
        "{}",
        again.stderr
    );
    assert_eq!(
        Wallet::of(&chain, me).await,
        before,
        "the second stop sent nothing"
    );
    let ext = r
        .run(&["extend", &lease_id[2..12], "--hours", "1", "--yes"])
        .await;
    assert_eq!(ext.code(), 4, "{}", ext.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renting_a_withdrawn_offer_says_so() {
    let chain = TestChain::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (a, _a) = start_host(&chain, &dir.path().join("a"), 1, "0.40", &[], true).await;
    let (mut b, _b) = start_host(&chain, &dir.path().join("b"), 3, "0.50", &[&a], true).await;
    mint(&chain, RENTER, U256::from(10_000_000u64)).await;
    // The renter knows only host A; B's offer reaches it through A.
    let r = CliRenter::new(&chain, &dir.path().join("r"), RENTER, &[&a]);
    r.search_until(2).await;
    let gone = b.offer_id().to_string();
    b.stop().await;
    // A clean shutdown withdraws the offer; wait until A's book has dropped it.
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    loop {
        let out = r.run(&["offer", &gone]).await;
        if out.code() == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "offer {gone} never withdrawn\nA:\n{}\nB:\n{}",
            a.log(),
            b.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    rent_refused(&chain, &r, &gone, &["withdrew it or it expired"]).await;
}

/// An RPC on another chain than the offer's is refused before anything is asked or sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_chain_is_refused() {
    let chain = TestChain::start().await.unwrap();
    let other = alloy::node_bindings::Anvil::at(gpuflow_tests::chain::anvil_path().unwrap())
        .chain_id(5)
        .try_spawn()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (host, _host) = start_host(&chain, &dir.path().join("h"), 1, "0.40", &[], true).await;
    let mut r = CliRenter::new(&chain, &dir.path().join("r"), RENTER, &[&host]);
    r.set_env("GPUFLOW_RPC_URL", other.endpoint());
    let id = host.offer_id().to_string();
    rent_refused(&chain, &r, &id, &["wrong chain", "serves chain 5"]).await;
}
