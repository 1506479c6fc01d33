//! `GET /reliability` and `GET /hosts/{address}` on a temporary reliability index synced from
//! a scripted RPC (one `HostRegistered` of [`HOST`]): 200s, the 400/404/503 cases, the gauges.

use std::path::Path;

use alloy::primitives::Address;
use gpuflow_reliability::{HostScore, Params};
use libp2p::identity::Keypair;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::super::ApiLimits;
use super::fake::FakeNode;
use super::{prom, start_full};
use crate::scores::{DB_FILE, IndexProgress, ScoreIndex, mock};

/// This node's host wallet (the fake's), registered on the scripted chain.
pub(super) const HOST: Address = Address::repeat_byte(0x11);

/// The peer id [`HOST`] registered (a fixed key, so every run is the same).
fn peer_id() -> libp2p::PeerId {
    Keypair::ed25519_from_bytes([7u8; 32])
        .unwrap()
        .public()
        .to_peer_id()
}

/// Which reliability index the API gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Index {
    /// Synced once over the scripted chain.
    Synced,
    /// Opened, never synced.
    Syncing,
    /// None: a node without a chain RPC.
    Absent,
}

impl Index {
    pub(super) async fn open(self, dir: &Path) -> Option<ScoreIndex> {
        let db = dir.join(DB_FILE);
        match self {
            Index::Absent => None,
            Index::Synced => {
                let logs = [mock::registered(HOST, &peer_id().to_bytes())];
                let (ix, _) = mock::synced_indexer(&db, &logs).await;
                let progress = IndexProgress {
                    block: Some(1),
                    head: Some(1),
                    synced: true,
                    error: None,
                };
                Some(ScoreIndex::new(
                    ix.reader(),
                    watch::channel(progress).1,
                    HOST,
                ))
            }
            Index::Syncing => {
                let asserter = alloy::transports::mock::Asserter::new();
                let cfg = gpuflow_reliability::IndexerConfig::new(mock::ESCROW, 0);
                let ix = gpuflow_reliability::Indexer::open(&db, mock::provider(&asserter), cfg)
                    .await
                    .unwrap();
                let progress = IndexProgress {
                    block: None,
                    head: Some(40),
                    synced: false,
                    error: Some("RPC eth_getLogs failed".into()),
                };
                Some(ScoreIndex::new(
                    ix.reader(),
                    watch::channel(progress).1,
                    HOST,
                ))
            }
        }
    }
}

#[tokio::test]
async fn api_reliability_shows_this_hosts_score_and_the_index_progress() {
    let api = start_full(ApiLimits::default(), FakeNode::new(), Index::Synced).await;
    let r = api.get("/reliability").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    let prior = HostScore::new_host(&Params::for_decimals(6));
    assert_eq!(v["host"], HOST.to_string());
    assert_eq!(v["leases"], 0);
    assert_eq!(v["reliability"], json!(prior.reliability));
    assert_eq!(v["rank"], json!(prior.rank));
    assert_eq!(v["alpha"], json!(prior.alpha));
    assert_eq!(v["beta"], json!(prior.beta));
    assert_eq!(
        v["volume"],
        json!({ "base_units": "0", "formatted": "0.00" })
    );
    assert_eq!(v["registered_at"], mock::BLOCK_TIME);
    assert_eq!(
        v["index"],
        json!({ "block": 1, "head": 1, "synced": true, "error": null })
    );
    assert!(v["at"].as_u64().unwrap() > mock::BLOCK_TIME);

    let series = prom::parse(&api.get("/metrics").await.text);
    let get = |n: &str| series.get(&(n.to_owned(), String::new())).cloned();
    assert_eq!(get("gpuflow_host_reliability"), Some("0.6".into()));
    assert_eq!(
        get("gpuflow_host_reliability_rank"),
        Some(prior.rank.to_string())
    );
    assert_eq!(get("gpuflow_indexer_block"), Some("1".into()));
}

#[tokio::test]
async fn api_hosts_200_400_404() {
    let api = start_full(ApiLimits::default(), FakeNode::new(), Index::Synced).await;
    for addr in [HOST.to_string(), format!("{HOST:#x}")] {
        let r = api.get(&format!("/hosts/{addr}")).await;
        assert_eq!(r.status, 200, "{addr}: {}", r.text);
        let v = r.json();
        assert_eq!(v["host"], HOST.to_string());
        assert_eq!(v["peer_id"], peer_id().to_string());
        assert_eq!(v["registered_at"], mock::BLOCK_TIME);
        assert_eq!(v["history"], json!([]));
        assert_eq!(v["score"]["prior_mean"], json!(0.6));
        assert_eq!(v["score"]["prior_strength"]["base_units"], "20000000");
        assert_eq!(v["index"]["synced"], true);
        for key in [
            "leases",
            "outcomes",
            "volume",
            "ignored_receipts",
            "first_seen",
        ] {
            assert!(v.get(key).is_some(), "{key} in {v}");
        }
    }
    for bad in [
        "0x1234",
        "abc",
        &"11".repeat(20),
        "0xzz11111111111111111111111111111111111111",
    ] {
        let r = api.get(&format!("/hosts/{bad}")).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text);
        assert_eq!(r.error_code(), "invalid_address");
        assert!(r.text.contains("40 hex digits"), "{}", r.text);
    }
    let stranger = Address::repeat_byte(0x22);
    let r = api.get(&format!("/hosts/{stranger}")).await;
    assert_eq!(r.status, 404, "{}", r.text);
    assert_eq!(r.error_code(), "host_not_found");
}

#[tokio::test]
async fn api_scores_are_503_until_the_index_caught_up_and_without_an_rpc() {
    let api = start_full(ApiLimits::default(), FakeNode::new(), Index::Syncing).await;
    for path in ["/reliability".to_owned(), format!("/hosts/{HOST}")] {
        let r = api.send(axum::http::Method::GET, &path, &[], None).await;
        assert_eq!(r.status, 503, "{path}: {}", r.text);
        assert_eq!(r.error_code(), "index_syncing");
        let msg = r.json()["error"]["message"].as_str().unwrap().to_owned();
        assert!(
            msg.contains("head 40") && msg.contains("eth_getLogs"),
            "{msg}"
        );
    }
    // A malformed address is the client's mistake whatever the index's state.
    assert_eq!(api.get("/hosts/0x12").await.status, 400);
    let series = prom::parse(&api.get("/metrics").await.text);
    assert!(
        !series.keys().any(|(n, _)| n.starts_with("gpuflow_host_reliability")
            || n == "gpuflow_indexer_block"),
        "no score gauges before the index caught up"
    );

    let api = start_full(ApiLimits::default(), FakeNode::new(), Index::Absent).await;
    let r = api
        .send(axum::http::Method::GET, "/reliability", &[], None)
        .await;
    assert_eq!(r.status, 503, "{}", r.text);
    assert_eq!(r.error_code(), "node_unavailable");
    assert!(r.text.contains("--rpc-url"), "{}", r.text);
    let v: Value = api.get("/status").await.json();
    assert_eq!(v["peers"], 3, "the rest of the API is unaffected");
}
