//! Reliability scores end to end: lease outcomes made on anvil, read back by the real
//! `gpuflow search -o score-` and `gpuflow host` through the CLI's reliability cache.
//!
//! The chain history is driven directly with alloy (host-signed quotes, open/start/close,
//! time warps); three real host nodes whose wallets are those hosts publish the offers.

use std::time::Duration;

use alloy::primitives::{Address, Bytes, U256};
use gpuflow_p2p::PeerId;
use gpuflow_protocol::escrow::Quote;
use gpuflow_protocol::offer::fixture::TestHost;
use gpuflow_tests::chain::{ACCEPT_TIMEOUT, TestChain};
use gpuflow_tests::cli::{CliRenter, gpuflow, gpuflow_json as search_json};
use gpuflow_tests::procs::{Node, NodeSpec};
use gpuflow_tests::rental::{close, direct_quote, fund_renter, open_signed, start};
use serde_json::Value;

/// Renter, and the accounts of the three scored hosts and of a fourth host the renter also
/// pays (so its credibility is above zero).
const RENTER: usize = 2;
const GOOD: usize = 1;
const HOST_CLOSED: usize = 3;
const NEVER: usize = 4;
const ELSEWHERE: usize = 5;
/// A wallet that registers other hosts' peer ids in the escrow's registry.
const SQUATTER: usize = 6;
/// 10 tokens per hour (6 decimals), rounded down to whole base units per second.
const PRICE: u64 = 2_777;

struct Leases<'a> {
    chain: &'a TestChain,
    nonce: u64,
}

impl Leases<'_> {
    /// Opens a quote of host `host` for the renter with 10 hours of deposit.
    async fn open(&mut self, host: usize) -> Quote {
        self.nonce += 1;
        let (q, sig) = direct_quote(self.chain, host, PRICE, self.nonce).await;
        let deposit = U256::from(PRICE * 10 * 3600);
        open_signed(self.chain, &q, &sig, deposit).await;
        q
    }

    /// The next transaction's block comes `secs` later.
    async fn warp(&self, secs: u64) {
        let now = self.chain.now().await.unwrap();
        self.chain.set_next_timestamp(now + secs).await.unwrap();
    }
}

#[tokio::test]
async fn lease_outcomes_order_search_by_score_and_show_in_host() {
    let chain = TestChain::start().await.unwrap();
    fund_renter(&chain, U256::from(10_000_000_000u64)).await;
    let mut l = Leases {
        chain: &chain,
        nonce: 0,
    };
    // Spending elsewhere: 3 hours (30 tokens) at a fourth host, ended normally.
    let q = l.open(ELSEWHERE).await;
    start(&chain, ELSEWHERE, &q).await;
    l.warp(3 * 3600).await;
    close(&chain, RENTER, &q).await;
    // Normal end: 2 hours, closed by the renter.
    let q = l.open(GOOD).await;
    start(&chain, GOOD, &q).await;
    l.warp(2 * 3600).await;
    close(&chain, RENTER, &q).await;
    // Host closed while funded: 10 minutes served, 9 h 50 min of deposit left.
    let q = l.open(HOST_CLOSED).await;
    start(&chain, HOST_CLOSED, &q).await;
    l.warp(600).await;
    close(&chain, HOST_CLOSED, &q).await;
    // Never started: the accept timeout passes, the renter takes the deposit back.
    let q = l.open(NEVER).await;
    l.warp(ACCEPT_TIMEOUT + 1).await;
    close(&chain, RENTER, &q).await;

    // Three hosts whose wallets are those accounts publish offers (same GPU, same price, so
    // only the score can order them).
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = Vec::new();
    let mut bootstrap: Vec<String> = Vec::new();
    for (i, who) in [GOOD, HOST_CLOSED, NEVER].into_iter().enumerate() {
        let mut spec = NodeSpec::new("RTX_4090", 1, "0.5");
        spec.wallet_key = chain.signer(who).to_bytes().to_string();
        spec.bootstrap = bootstrap.clone();
        let node = Node::start(&spec, &dir.path().join(format!("h{i}")))
            .await
            .unwrap();
        if bootstrap.is_empty() {
            bootstrap.push(node.tcp_addr().to_owned());
        }
        nodes.push(node);
    }
    let rpc = chain.anvil.endpoint();
    let escrow = chain.escrow.to_string();
    let addr = bootstrap[0].clone();
    let base = [
        "search",
        "--json",
        "--bootstrap",
        &addr,
        "--rpc-url",
        &rpc,
        "--escrow",
        &escrow,
        "-o",
        "score-",
    ];
    // Gossip brings the other two offers to the first node; wait for all three (bounded).
    let mut result = Value::Null;
    for _ in 0..60 {
        result = search_json(&base).await;
        if result["offers"].as_array().unwrap().len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let offers = result["offers"].as_array().unwrap();
    assert_eq!(offers.len(), 3, "{result:#}");
    assert_eq!(result["scores"]["source"], "chain", "{result:#}");
    let wallets: Vec<Address> = offers
        .iter()
        .map(|o| o["wallet"].as_str().unwrap().parse().unwrap())
        .collect();
    let want: Vec<Address> = [GOOD, HOST_CLOSED, NEVER]
        .map(|i| chain.signer(i).address())
        .to_vec();
    assert_eq!(wallets, want, "order by score-: {result:#}");
    let scores: Vec<f64> = offers
        .iter()
        .map(|o| o["score"].as_f64().unwrap())
        .collect();
    assert!(scores[0] > scores[1] && scores[1] > scores[2], "{scores:?}");
    for o in offers {
        assert_eq!(o["leases"], 1);
        assert_eq!(o["scored"], true);
    }
    // A reliability filter uses the same scores: only the good host is above the prior.
    let mut filtered = base.to_vec();
    filtered.push("reliability>0.6");
    let only = search_json(&filtered).await;
    let only = only["offers"].as_array().unwrap();
    assert_eq!(only.len(), 1);
    assert_eq!(only[0]["wallet"].as_str().unwrap(), want[0].to_string());

    // The table shows the columns, and without an RPC the prior is shown, marked.
    let table: Vec<&str> = base.iter().copied().filter(|a| *a != "--json").collect();
    let out = gpuflow(&table).await.unwrap();
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert!(out.stdout.starts_with("GPU"), "{}", out.stdout);
    assert!(out.stdout.lines().next().unwrap().contains("LEASES"));
    let out = gpuflow(&["search", "--bootstrap", &addr]).await.unwrap();
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert!(out.stdout.contains("0.60*"), "{}", out.stdout);
    assert!(out.stderr.contains("unavailable"), "{}", out.stderr);

    // `gpuflow host` shows the counts, by address and by peer id.
    let host_json = |id: String| {
        let rpc = rpc.clone();
        let escrow = escrow.clone();
        let addr = addr.clone();
        async move {
            search_json(&[
                "host",
                &id,
                "--json",
                "--rpc-url",
                &rpc,
                "--escrow",
                &escrow,
                "--bootstrap",
                &addr,
            ])
            .await
        }
    };
    let h = host_json(want[1].to_string()).await;
    assert_eq!(h["leases"], 1, "{h:#}");
    assert_eq!(h["outcomes"]["host_closed"], 1);
    assert_eq!(h["history"][0]["outcome"], "host_closed");
    assert_eq!(
        h["volume"]["base_units"],
        (u128::from(PRICE) * 600).to_string(),
        "10 minutes paid"
    );
    assert!(h["score"]["reliability"].as_f64().unwrap() < 0.6);
    // A squatter registers the never-started host's peer id (`registerHost` takes any bytes):
    // the peer's own signed offer still decides which wallet its peer id shows.
    let register = async |peer: &PeerId| {
        let receipt = chain
            .escrow_as(SQUATTER)
            .registerHost(Bytes::from(peer.to_bytes()), U256::ZERO)
            .send()
            .await
            .expect("sending registerHost")
            .get_receipt()
            .await
            .expect("registerHost receipt");
        assert!(receipt.status(), "registerHost reverted: {receipt:?}");
    };
    let victim: PeerId = nodes[2].peer_id.parse().unwrap();
    register(&victim).await;
    let h = host_json(nodes[2].peer_id.clone()).await;
    assert_eq!(h["host"], want[2].to_string(), "{h:#}");
    assert_eq!(h["outcomes"]["never_started"], 1, "{h:#}");
    assert_eq!(h["wallet_source"]["from"], "offer", "{h:#}");
    assert_eq!(h["wallet_source"]["verified"], true, "{h:#}");
    // A peer id with no offer in the book resolves through the registry, marked unverified;
    // the squatter re-registering elsewhere also ends its claim on the victim's peer id.
    let offline = TestHost::from_seed(0x5eed).peer_id();
    register(&offline).await;
    let h = host_json(offline.to_string()).await;
    let squatter = chain.signer(SQUATTER).address().to_string();
    assert_eq!(h["host"], squatter, "{h:#}");
    assert_eq!(h["wallet_source"]["from"], "registry", "{h:#}");
    assert_eq!(h["wallet_source"]["verified"], false, "{h:#}");
    assert_eq!(h["wallet_source"]["registrants"], 1, "{h:#}");
    assert_eq!(h["peer_id"], offline.to_string(), "{h:#}");
    let h = host_json(nodes[2].peer_id.clone()).await;
    assert_eq!(h["host"], want[2].to_string(), "{h:#}");
    let h = host_json(want[0].to_string()).await;
    assert_eq!(h["outcomes"]["normal_end"], 1, "{h:#}");
    assert!((h["history"][0]["credibility"].as_f64().unwrap() - 1.0).abs() < 1e-12);

    // `rent --query` ranks the same three offers by expected cost (same price: the rank
    // decides) and skips the hosts that failed this renter: it picks the good host. The pick is
    // made before any quote; what happens after it (this chain's clock runs ahead of the
    // quotes' wall-clock expiry) does not matter here.
    let home = tempfile::tempdir().unwrap();
    let mut renter = CliRenter::new(&chain, home.path(), RENTER, &[]);
    renter.set_env("GPUFLOW_BOOTSTRAP", addr.clone());
    let ssh = renter.ssh_key();
    // These test offers name a placeholder escrow; the config names the real one, whose
    // events the scores come from.
    let config = home.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[deployment]\nchain_id = 31337\nescrow = \"{}\"\ntoken = \"{}\"\n",
            chain.escrow, chain.token
        ),
    )
    .unwrap();
    let config = config.display().to_string();
    let args = [
        "rent",
        "--query",
        "gpu_name=RTX_4090",
        "--hours",
        "1",
        "--ssh-key",
        &ssh,
        "--yes",
        "--timeout",
        "5",
        "--config",
        &config,
    ];
    let out = renter.run(&args).await;
    let good_offer = offers[0]["id"].as_str().unwrap();
    assert!(
        out.stderr.contains(&format!("picked offer {good_offer}"))
            && out
                .stderr
                .contains("skipped 2 offer(s) from hosts that failed you before"),
        "{}",
        out.stderr
    );
    // A renter with no history with these hosts is not steered away from any of them, and
    // still gets the best-ranked one.
    let mut fresh = CliRenter::new(&chain, home.path(), 7, &[]);
    fresh.set_env("GPUFLOW_BOOTSTRAP", addr.clone());
    let out = fresh.run(&args).await;
    assert!(
        out.stderr.contains(&format!("picked offer {good_offer}"))
            && !out.stderr.contains("skipped"),
        "{}",
        out.stderr
    );

    for n in nodes {
        n.stop().await.unwrap();
    }
}
