//! `gpuflow rent`, `stop` and `extend` when things go wrong: each failure must say what to do,
//! and spend nothing it should not.

use alloy::primitives::{Address, U256};
use alloy::providers::Provider;
use gpuflow_tests::chain::TestChain;
use gpuflow_tests::procs::START_TIMEOUT;

use crate::rent::{Host, RENTER, Renter, fund, units};

/// Everything that moves when a renter spends: token balance, allowance, gas, nonce.
#[derive(Debug, PartialEq, Eq)]
struct Wallet {
    tokens: U256,
    allowance: U256,
    gas: U256,
    nonce: u64,
}

async fn wallet(chain: &TestChain, who: Address) -> Wallet {
    let p = chain.provider(0);
    Wallet {
        tokens: chain.balance(who).await.unwrap(),
        allowance: chain
            .token_as(0)
            .allowance(who, chain.escrow)
            .call()
            .await
            .unwrap(),
        gas: p.get_balance(who).await.unwrap(),
        nonce: p.get_transaction_count(who).await.unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insufficient_funds_is_a_clear_error_and_spends_nothing() {
    let chain = TestChain::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(&chain, &dir.path().join("h"), 1, "0.40", &[], true)
        .await
        .unwrap();
    // One base unit: far below the deposit.
    fund(&chain, RENTER, U256::from(1u64)).await;
    let r = Renter::new(&chain, &dir.path().join("r"), RENTER, &[&host.addr]);
    let me = chain.signer(RENTER).address();
    let before = wallet(&chain, me).await;
    let ssh = r.ssh_key();
    let id = host.offer_id();
    let out = r
        .run(&["rent", &id, "--hours", "1", "--ssh-key", &ssh, "--yes"])
        .await;
    assert_eq!(out.code(), 1, "{}", out.stderr);
    // 111 per second for an hour = 399600; one unit held.
    assert!(out.stderr.contains("not enough"), "{}", out.stderr);
    assert!(
        out.stderr.contains("0.399599"),
        "names the shortfall: {}",
        out.stderr
    );
    assert!(
        out.stderr.contains("cast send"),
        "says how to get some: {}",
        out.stderr
    );
    assert_eq!(wallet(&chain, me).await, before, "nothing spent");
    let leases = r.json(&["leases", "--json", "--all"]).await;
    assert_eq!(leases, serde_json::json!([]), "no lease recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_quote_is_refused_before_anything_is_sent() {
    let chain = TestChain::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(&chain, &dir.path().join("h"), 1, "0.40", &[], true)
        .await
        .unwrap();
    fund(&chain, RENTER, U256::from(10_000_000u64)).await;
    // The chain's clock runs an hour ahead of the host's: every quote (valid for minutes by
    // the host's clock) is already expired by the chain's.
    let p = chain.provider(0);
    let _: serde_json::Value = p
        .raw_request("evm_increaseTime".into(), (3600u64,))
        .await
        .unwrap();
    let _: serde_json::Value = p.raw_request("evm_mine".into(), ()).await.unwrap();
    let r = Renter::new(&chain, &dir.path().join("r"), RENTER, &[&host.addr]);
    let me = chain.signer(RENTER).address();
    let before = wallet(&chain, me).await;
    let (ssh, id) = (r.ssh_key(), host.offer_id());
    let out = r
        .run(&["rent", &id, "--hours", "1", "--ssh-key", &ssh, "--yes"])
        .await;
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("quote expired"), "{}", out.stderr);
    assert!(
        out.stderr.contains("run the command again"),
        "{}",
        out.stderr
    );
    assert_eq!(wallet(&chain, me).await, before, "nothing spent");
}

/// The host quotes but never starts (its lease engine is down: no chain connection). `rent`
/// times out with exit 3 and says how to get the money back; `stop` refunds the whole deposit;
/// a second `stop` says the lease is closed, exits 4 and sends nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_down_before_start_refunds_in_full_and_stop_twice_sends_nothing() {
    let chain = TestChain::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(&chain, &dir.path().join("h"), 1, "0.40", &[], false)
        .await
        .unwrap();
    let funds = U256::from(10_000_000u64);
    fund(&chain, RENTER, funds).await;
    let r = Renter::new(&chain, &dir.path().join("r"), RENTER, &[&host.addr]);
    let me = chain.signer(RENTER).address();
    let (ssh, id) = (r.ssh_key(), host.offer_id());
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

    let before = wallet(&chain, me).await;
    let again = r.run(&["stop", &lease_id[2..12]]).await;
    assert_eq!(again.code(), 4, "{}", again.stderr);
    assert!(again.stderr.contains("already closed"), "{}", again.stderr);
    assert!(
        again.stderr.contains("nothing was sent"),
        "{}",
        again.stderr
    );
    assert_eq!(
        wallet(&chain, me).await,
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
    let a = Host::start(&chain, &dir.path().join("a"), 1, "0.40", &[], true)
        .await
        .unwrap();
    let b = Host::start(&chain, &dir.path().join("b"), 3, "0.50", &[&a.addr], true)
        .await
        .unwrap();
    fund(&chain, RENTER, U256::from(10_000_000u64)).await;
    // The renter knows only host A; B's offer reaches it through A.
    let r = Renter::new(&chain, &dir.path().join("r"), RENTER, &[&a.addr]);
    crate::rent::search_until(&r, 2).await;
    let gone = b.offer_id();
    let b_dir = b.data_dir.clone();
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
            std::fs::read_to_string(b_dir.join("node.log")).unwrap_or_default()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let me = chain.signer(RENTER).address();
    let before = wallet(&chain, me).await;
    let ssh = r.ssh_key();
    let out = r
        .run(&["rent", &gone, "--hours", "1", "--ssh-key", &ssh, "--yes"])
        .await;
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("withdrew it or it expired"),
        "{}",
        out.stderr
    );
    assert_eq!(wallet(&chain, me).await, before, "nothing spent");
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
    let host = Host::start(&chain, &dir.path().join("h"), 1, "0.40", &[], true)
        .await
        .unwrap();
    let mut r = Renter::new(&chain, &dir.path().join("r"), RENTER, &[&host.addr]);
    r.env.retain(|(k, _)| k != "GPUFLOW_RPC_URL");
    r.env.push(("GPUFLOW_RPC_URL".into(), other.endpoint()));
    let (ssh, id) = (r.ssh_key(), host.offer_id());
    let out = r
        .run(&["rent", &id, "--hours", "1", "--ssh-key", &ssh, "--yes"])
        .await;
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("wrong chain"), "{}", out.stderr);
    assert!(out.stderr.contains("serves chain 5"), "{}", out.stderr);
}
