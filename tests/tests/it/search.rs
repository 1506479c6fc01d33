//! `gpuflow search` and `gpuflow offer` against real `gpuflow-node` processes on loopback.

use std::time::Duration;

use gpuflow_protocol::offer::OfferId;
use gpuflow_tests::cli::{gpuflow, gpuflow_json};
use gpuflow_tests::procs::{Node, NodeSpec};
use serde_json::Value;

fn offer_id(peer: &str, name: &str) -> String {
    OfferId::derive(&peer.parse().unwrap(), name).to_string()
}

async fn search_json(addr: &str, query: &[&str]) -> Value {
    let mut args = vec!["search", "--json", "--bootstrap", addr];
    args.extend_from_slice(query);
    gpuflow_json(&args).await
}

fn ids(result: &Value) -> Vec<String> {
    result["offers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn search_and_offer_show_a_running_nodes_offer() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(&NodeSpec::new("RTX_4090", 2, "0.400001"), dir.path())
        .await
        .unwrap();
    let id = offer_id(&node.peer_id, "rtx_4090");
    let addr = node.tcp_addr().to_owned();

    let out = gpuflow(&["search", "--bootstrap", &addr]).await.unwrap();
    assert_eq!(out.code(), 0, "stderr: {}", out.stderr);
    let row = out
        .stdout
        .lines()
        .find(|l| l.contains(&id))
        .unwrap_or_else(|| {
            panic!(
                "offer {id} not in the table:\n{}\nnode log:\n{}",
                out.stdout,
                node.log()
            )
        });
    for want in ["RTX_4090", "0.400001", "0.800002", "DE", "no (declared)"] {
        assert!(row.contains(want), "`{want}` missing from `{row}`");
    }

    let json = search_json(&addr, &["gpu_name=RTX_4090", "num_gpus>=2"]).await;
    assert_eq!(ids(&json), [id.as_str()]);
    let o = &json["offers"][0];
    assert_eq!(o["price_per_gpu_hour"]["base_units"], "400001");
    assert_eq!(o["price_per_hour"]["base_units"], "800002");
    assert_eq!(o["price_per_hour"]["formatted"], "0.800002");
    assert_eq!(o["num_gpus"], 2);
    assert_eq!(o["host"], node.peer_id.as_str());
    assert_eq!(o["verified"], false);
    // A filter that excludes it really excludes it.
    assert!(ids(&search_json(&addr, &["num_gpus>=3"]).await).is_empty());
    assert!(ids(&search_json(&addr, &["geolocation", "in", "[NL,FR]"]).await).is_empty());

    let out = gpuflow(&["offer", &id, "--bootstrap", &addr])
        .await
        .unwrap();
    assert_eq!(out.code(), 0, "stderr: {}", out.stderr);
    for want in [
        id.as_str(),
        node.peer_id.as_str(),
        "0.400001 per GPU-hour",
        "verified",
    ] {
        assert!(
            out.stdout.contains(want),
            "`{want}` missing:\n{}",
            out.stdout
        );
    }
    let out = gpuflow(&["offer", &id, "--json", "--bootstrap", &addr])
        .await
        .unwrap();
    let full: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(full["signature"]["verified"], true);
    assert_eq!(full["id"], id.as_str());

    let status = node.stop().await.unwrap();
    assert!(status.success(), "node exit: {status}");
}

#[tokio::test]
async fn bad_queries_exit_2_and_name_the_field() {
    // The query is checked before any network access, so no node is needed.
    let addr = "/ip4/127.0.0.1/tcp/9";
    for (query, names) in [
        ("num_gpus>=two", &["num_gpus", "two"][..]),
        ("gpu_nme=RTX_4090", &["gpu_nme", "gpu_name"][..]),
    ] {
        let out = gpuflow(&["search", "--bootstrap", addr, query])
            .await
            .unwrap();
        assert_eq!(out.code(), 2, "{query}: {}", out.stderr);
        assert!(
            out.stdout.is_empty(),
            "stdout must stay clean: {}",
            out.stdout
        );
        for n in names {
            assert!(
                out.stderr.contains(n),
                "{query}: `{n}` not in {}",
                out.stderr
            );
        }
    }
    let out = gpuflow(&["search", "--bootstrap", addr, "-o", "dph*"])
        .await
        .unwrap();
    assert_eq!(out.code(), 2, "{}", out.stderr);
    let out = gpuflow(&["offer", "not-an-id", "--bootstrap", addr])
        .await
        .unwrap();
    assert_eq!(out.code(), 2, "{}", out.stderr);
}

#[tokio::test]
async fn no_node_is_a_clear_error_in_bounded_time() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let peer = gpuflow_protocol::offer::fixture::TestHost::from_seed(1).peer_id();
    let addr = format!("/ip4/127.0.0.1/tcp/{port}/p2p/{peer}");
    let started = std::time::Instant::now();
    let out = gpuflow(&["search", "--bootstrap", &addr, "--timeout", "5"])
        .await
        .unwrap();
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert!(out.stdout.is_empty());
    assert!(
        out.stderr.contains(&addr),
        "error names the address: {}",
        out.stderr
    );
    // Bounded by --timeout (plus process start), not by a network default.
    assert!(started.elapsed() < Duration::from_secs(30));

    // No bootstrap peer configured anywhere: a usage error that says how to configure one.
    let out = gpuflow(&["search"]).await.unwrap();
    assert_eq!(out.code(), 2, "{}", out.stderr);
    assert!(out.stderr.contains("--bootstrap"), "{}", out.stderr);
}

/// Waits until `addr`'s book holds offer `id`. The offer travels between two other processes
/// by gossip, so the only thing to observe is a query; it is repeated with a short pause,
/// bounded by `limit`.
async fn wait_for_offer(addr: &str, id: &str, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if ids(&search_json(addr, &[]).await).iter().any(|i| i == id) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "offer {id} never reached {addr}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_restarted_node_starts_with_a_warm_book() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let spec_a = NodeSpec::new("RTX_4090", 1, "0.40");
    let a = Node::start(&spec_a, dir_a.path()).await.unwrap();
    let mut spec_b = NodeSpec::new("A100", 4, "1.25");
    spec_b.bootstrap = vec![a.tcp_addr().to_owned()];
    spec_b.wallet_key = format!("0x{}", "22".repeat(32));
    let b = Node::start(&spec_b, dir_b.path()).await.unwrap();
    let b_offer = offer_id(&b.peer_id, "a100");

    wait_for_offer(a.tcp_addr(), &b_offer, Duration::from_secs(30)).await;
    // A first, so it does not hear B withdraw its offers on shutdown.
    assert!(a.stop().await.unwrap().success());
    assert!(b.stop().await.unwrap().success());

    // A comes back alone: B is gone, so B's offer can only come from A's store.
    let a = Node::start(&spec_a, dir_a.path()).await.unwrap();
    let json = search_json(a.tcp_addr(), &["gpu_name=A100"]).await;
    assert_eq!(ids(&json), [b_offer], "node log:\n{}", a.log());
    assert_eq!(
        json["offers"][0]["price_per_gpu_hour"]["base_units"],
        "1250000"
    );
    assert!(
        a.log().contains("loaded=1"),
        "B's offer loaded from the store (A withdrew its own):\n{}",
        a.log()
    );
    assert!(a.stop().await.unwrap().success());
}
