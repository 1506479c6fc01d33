//! The node's own reliability index end to end: a real `gpuflow-node` with an RPC indexes the
//! whole escrow (every host's events) in `<data_dir>/reliability.db`; after a lease on it runs
//! to completion on anvil, `GET /reliability` and `GET /hosts/{address}` answer what the
//! reliability crate computes from the same chain, to the last bit of the formula's inputs.

use std::time::Duration;

use alloy::primitives::{Address, U256};
use alloy::transports::http::reqwest;
use gpuflow_node::scores::reliability::{Indexer, IndexerConfig};
use gpuflow_tests::chain::{HOST, RENTER, TestChain};
use gpuflow_tests::market::Market;
use gpuflow_tests::rental::{direct_quote, mint, open_signed, renter_close, start};
use serde_json::Value;

use crate::api::Api;

/// A host the renter also paid (directly on chain), so its credibility is 1.
const ELSEWHERE: usize = 5;
/// The elsewhere lease's price: 10 tokens per hour.
const PRICE: u64 = 2_777;
/// How long the node's index may take to reach a block.
const INDEX_TIMEOUT: Duration = Duration::from_secs(60);

/// The renter pays `ELSEWHERE` for three hours (≈ 30 tokens, more than the credibility
/// threshold of 25) and closes; returns the block of the close.
async fn spend_elsewhere(c: &TestChain) -> u64 {
    let deposit = U256::from(PRICE * 4 * 3600);
    mint(c, RENTER, deposit).await;
    let (q, sig) = direct_quote(c, ELSEWHERE, PRICE, 77).await;
    open_signed(c, &q, &sig, deposit).await;
    start(c, ELSEWHERE, &q).await;
    let now = c.now().await.unwrap();
    c.set_next_timestamp(now + 3 * 3600).await.unwrap();
    renter_close(c, &q).await;
    // Automine: the close is in the latest block.
    c.head().await.unwrap()
}

/// `GET /reliability` once the node's index covers `block`.
async fn reliability_at(base: &str, block: u64) -> Value {
    let mut last = Value::Null;
    let reached = tokio::time::timeout(INDEX_TIMEOUT, async {
        loop {
            let (code, body) = get(base, "/reliability").await;
            if code == 200 {
                last = serde_json::from_str(&body).unwrap();
                if last["index"]["block"].as_u64().is_some_and(|b| b >= block) {
                    return;
                }
            } else {
                // Only "still catching up" is acceptable while waiting.
                assert_eq!(code, 503, "{body}");
                assert!(body.contains("index_syncing"), "{body}");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
    .await;
    assert!(
        reached.is_ok(),
        "the index never reached block {block}: {last}"
    );
    last
}

/// GET `base` + `path`: status and body, whatever the status.
async fn get(base: &str, path: &str) -> (u16, String) {
    let r = reqwest::get(format!("{base}{path}")).await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

fn close_enough(got: &Value, want: f64, what: &str) {
    let got = got
        .as_f64()
        .unwrap_or_else(|| panic!("{what} is not a number: {got}"));
    // JSON carries the shortest round-trip decimal; parsing may differ in the last ulp.
    assert!(
        (got - want).abs() <= 1e-12 * want.abs().max(1.0),
        "{what}: node {got}, crate {want}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nodes_index_scores_a_finished_lease_as_the_crate_does() {
    // A lease on the real node: quoted for an hour (the most the node's quote allows to
    // deposit), opened, started, 50 (warped) minutes later closed by the renter.
    let (r, lease) = Market::rent(3600).await;
    let port = r.wait_running(&lease).await;
    let c = &r.chain;
    c.set_next_timestamp(c.now().await.unwrap() + 3000)
        .await
        .unwrap();
    let closed = r.renter_close(&lease).await;
    r.wait_stopped(&lease, port).await;
    let last_block = spend_elsewhere(c).await;

    let api = Api::of(&r.host);
    let base = r.host.api.clone().expect("the node printed `api http://…`");
    let v = reliability_at(&base, last_block).await;
    let host = c.signer(HOST).address();
    assert_eq!(v["host"], host.to_string(), "{v}");
    assert_eq!(v["leases"], 1, "{v}");
    assert_eq!(v["outcomes"]["normal_end"], 1, "{v}");
    assert!(v["index"]["synced"].as_bool().unwrap(), "{v}");
    assert!(v["index"]["head"].as_u64().unwrap() >= last_block, "{v}");
    let paid = closed.hostAmount + closed.fee;
    assert_eq!(v["volume"]["base_units"], paid.to_string(), "{v}");

    // The same chain through the crate, at the same instant.
    let dir = tempfile::tempdir().unwrap();
    let mut ix = Indexer::connect(
        &dir.path().join("reliability.db"),
        &c.anvil.endpoint(),
        IndexerConfig::new(c.escrow, 0),
    )
    .await
    .unwrap();
    ix.sync_to_head(|_| {}).await.unwrap();
    let at = v["at"].as_u64().unwrap();
    let want = ix.host_history(host, at).await.unwrap();
    let s = &want.report.score;
    assert_eq!(s.leases, 1);
    close_enough(&v["reliability"], s.reliability, "reliability");
    close_enough(&v["rank"], s.rank, "rank");
    close_enough(&v["alpha"], s.alpha, "alpha");
    close_enough(&v["beta"], s.beta, "beta");
    close_enough(&v["evidence"], s.evidence, "evidence");
    assert_eq!(v["first_seen"].as_u64(), s.first_seen);
    // The renter paid elsewhere, so the normal end counts: above the new-host prior of 0.6.
    assert!(s.reliability > 0.6, "{s:?}");
    assert_eq!(want.report.contributions[0].credibility, 1.0);

    // Any host's history, the shape of `gpuflow host --json`.
    let (code, body) = get(&base, &format!("/hosts/{host}")).await;
    assert_eq!(code, 200, "{body}");
    let h: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(h["history"][0]["lease_id"], lease.id.to_string(), "{h}");
    assert_eq!(h["history"][0]["outcome"], "normal_end", "{h}");
    assert_eq!(h["history"][0]["paid"]["base_units"], paid.to_string());
    let at = h["at"].as_u64().unwrap();
    let want = ix.host_history(host, at).await.unwrap();
    close_enough(
        &h["score"]["reliability"],
        want.report.score.reliability,
        "host reliability",
    );
    close_enough(
        &h["history"][0]["weight"],
        want.report.contributions[0].weight,
        "weight",
    );
    // The index covers the whole escrow, not only this host.
    let elsewhere = c.signer(ELSEWHERE).address();
    let (code, body) = get(&base, &format!("/hosts/{elsewhere:#x}")).await;
    assert_eq!(code, 200, "{body}");
    let e: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(e["leases"], 1, "{e}");
    // A wallet the escrow never saw as a host.
    let stranger: Address = c.signer(7).address();
    let (code, body) = get(&base, &format!("/hosts/{stranger}")).await;
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("host_not_found"), "{body}");
    let (code, body) = get(&base, "/hosts/0x1234").await;
    assert_eq!(code, 400, "{body}");

    let metrics = api.get_text("/metrics").await;
    for name in [
        "gpuflow_host_reliability ",
        "gpuflow_host_reliability_rank ",
        "gpuflow_indexer_block ",
    ] {
        assert!(
            metrics.lines().any(|l| l.starts_with(name)),
            "{name} in\n{metrics}"
        );
    }
}
