//! The HTTP API of a running `gpuflow-node` (lease engine on anvil, a real lease): reads checked
//! against the chain and the p2p network, auth and error handling of the POSTs, pausing offers
//! (seen by `gpuflow search`), and a node that refuses to start when Docker is unreachable.

use std::os::unix::fs::PermissionsExt;

use alloy::primitives::{B256, U256};
use alloy::transports::http::reqwest;
use gpuflow_tests::chain::{RENTER, TestChain};
use gpuflow_tests::cli::gpuflow_json;
use gpuflow_tests::host::{HostNode, HostOpts};
use gpuflow_tests::market::Market;
use serde_json::{Value, json};

/// A client for one node's API.
pub(crate) struct Api {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Api {
    /// The API of `host`, from its `api http://…` line; the token from its data directory.
    pub(crate) fn of(host: &HostNode) -> Self {
        let base = host.api.clone().expect("the node printed `api http://…`");
        let token = std::fs::read_to_string(host.data_dir.join("api.token")).unwrap();
        Self {
            base,
            token: token.trim().to_owned(),
            http: reqwest::Client::new(),
        }
    }

    pub(crate) fn token(&self) -> &str {
        &self.token
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// GET `path`, which must answer 200 with JSON.
    pub(crate) async fn get_json(&self, path: &str) -> Value {
        let (code, body) = self.get(path).await;
        assert_eq!(code, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }

    /// GET `path`, which must answer 200.
    pub(crate) async fn get_text(&self, path: &str) -> String {
        let (code, body) = self.get(path).await;
        assert_eq!(code, 200, "GET {path}: {body}");
        body
    }

    /// POST `path` with an optional bearer token and an optional JSON body.
    pub(crate) async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (u16, String) {
        let mut req = self.http.post(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_owned());
        }
        let r = req.send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }
}

/// A 4xx answer with the API's JSON error body; returns its `code`.
fn error_code(code: u16, body: &str, want: u16) -> String {
    assert_eq!(code, want, "{body}");
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert!(v["error"]["message"].is_string(), "{v}");
    v["error"]["code"].as_str().unwrap().to_owned()
}

/// Offer ids `gpuflow search` lists through `bootstrap`.
async fn searched(bootstrap: &str) -> Vec<String> {
    let v = gpuflow_json(&["search", "--json", "--bootstrap", bootstrap]).await;
    v["offers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_running_nodes_api_reads_real_state_and_guards_its_actions() {
    let m = Market::start(&HostOpts::with_env("GPUFLOW_WITHDRAW_INTERVAL_SECS", "0")).await;
    let lease = m.open_lease(600).await;
    m.wait_running(&lease).await;
    m.advance(3).await;
    let host = &m.host;
    let api = Api::of(host);

    // Where the API is: the stdout line, <data_dir>/api_addr, and a private token file.
    let addr = std::fs::read_to_string(host.data_dir.join("api_addr")).unwrap();
    assert_eq!(api.base, format!("http://{}", addr.trim()));
    let mode = std::fs::metadata(host.data_dir.join("api.token"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(api.token().len(), 64);

    assert_eq!(api.get_json("/health").await, json!({ "status": "ok" }));

    let offer_id = host.offer_id().to_string();
    let s = api.get_json("/status").await;
    assert_eq!(s["peer_id"], host.peer.to_string());
    assert_eq!(s["wallet"], format!("{:#x}", m.host_wallet()));
    assert_eq!(s["gpus"][0]["model"], "RTX_4090");
    assert_eq!(s["gpus"][0]["source"], "declared");
    assert_eq!(s["offers_paused"], false);
    assert_eq!(s["offers"].as_array().unwrap().len(), 1, "{s}");
    assert_eq!(s["offers"][0]["id"], offer_id);
    assert_eq!(s["offers"][0]["price_per_hour"], "400000");

    // The lease, as the host recorded it.
    let list = api.get_json("/leases").await;
    let ours: Vec<&Value> = list["leases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["id"] == format!("{:#x}", lease.id))
        .collect();
    assert_eq!(ours.len(), 1, "{list}");
    assert_eq!(ours[0]["state"], "running");
    let one = api.get_json(&format!("/leases/{:#x}", lease.id)).await;
    assert_eq!(one["state"], "running");
    assert_eq!(
        one["renter"],
        format!("{:#x}", m.chain.signer(RENTER).address())
    );
    assert_eq!(
        one["price_per_second"],
        lease.quote.pricePerSecond.to_string()
    );
    // The stand-in's HTTP port, then the pytorch template's SSH.
    let workload_ports: Vec<&Value> = one["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["workload"])
        .collect();
    assert_eq!(workload_ports, [&json!(8080), &json!(22)], "{one}");
    let running = api.get_json("/leases?state=running").await;
    assert_eq!(running["leases"].as_array().unwrap().len(), 1);

    // Earnings to the base unit, at the block the node read.
    let e = api.get_json("/earnings").await;
    let block = e["block"].as_u64().unwrap();
    let pending = m.net_withdrawable(&[&lease], block).await;
    assert!(pending > U256::ZERO);
    assert_eq!(e["pending"], pending.to_string());
    assert_eq!(e["accrued"], pending.to_string());
    assert_eq!(e["withdrawn"], "0");
    assert_eq!(e["token"], format!("{:#x}", m.chain.token));
    assert_eq!(e["decimals"], 6);

    let metrics = api.get_text("/metrics").await;
    for want in [
        "gpuflow_leases{state=\"running\"} 1",
        "gpuflow_leases{state=\"closed\"} 0",
        "gpuflow_offers 1",
        "gpuflow_offers_paused 0",
        "gpuflow_earnings_base_units{kind=\"withdrawn\"} 0",
        "# TYPE gpuflow_peers gauge",
    ] {
        assert!(metrics.contains(want), "`{want}` missing:\n{metrics}");
    }
    let doc = api.get_json("/openapi.json").await;
    assert!(doc["paths"]["/withdraw"]["post"].is_object(), "{doc}");
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));

    // Actions need the token; bad input is a 4xx JSON error, never a 5xx.
    let (code, body) = api.post("/offers/pause", None, None).await;
    assert_eq!(error_code(code, &body, 401), "unauthorized");
    let wrong = "0".repeat(64);
    let (code, body) = api.post("/offers/pause", Some(&wrong), None).await;
    assert_eq!(error_code(code, &body, 401), "unauthorized");
    let (code, body) = api.post("/withdraw", Some(&wrong), None).await;
    assert_eq!(error_code(code, &body, 401), "unauthorized");
    let (code, body) = api
        .post("/offers/pause", Some(api.token()), Some("{not json"))
        .await;
    assert_eq!(error_code(code, &body, 400), "invalid_json");
    let (code, body) = api
        .post(
            "/offers/pause",
            Some(api.token()),
            Some(r#"{"reasons": 1}"#),
        )
        .await;
    assert_eq!(error_code(code, &body, 422), "invalid_body");
    let (code, body) = api
        .get(&format!("/leases/{:#x}", B256::repeat_byte(7)))
        .await;
    assert_eq!(error_code(code, &body, 404), "lease_not_found");
    let (code, body) = api.get("/leases/42").await;
    assert_eq!(error_code(code, &body, 400), "invalid_lease_id");
    assert_eq!(
        api.get_json("/status").await["offers_paused"],
        false,
        "refused requests changed nothing"
    );

    // Pause: the offers are withdrawn from the network; resume brings them back.
    let bootstrap = host.addr.to_string();
    assert!(searched(&bootstrap).await.contains(&offer_id));
    let (code, body) = api
        .post(
            "/offers/pause",
            Some(api.token()),
            Some(r#"{"reason": "maintenance"}"#),
        )
        .await;
    assert_eq!((code, body.as_str()), (200, r#"{"paused":true}"#));
    let s = api.get_json("/status").await;
    assert_eq!(s["offers_paused"], true);
    assert_eq!(s["offers"], json!([]));
    assert!(api.get_text("/metrics").await.contains("gpuflow_offers 0"));
    assert!(!searched(&bootstrap).await.contains(&offer_id));
    // The running lease is not touched.
    assert_eq!(
        api.get_json(&format!("/leases/{:#x}", lease.id)).await["state"],
        "running"
    );

    let (code, body) = api.post("/offers/resume", Some(api.token()), None).await;
    assert_eq!((code, body.as_str()), (200, r#"{"paused":false}"#));
    let s = api.get_json("/status").await;
    assert_eq!(s["offers_paused"], false);
    assert_eq!(s["offers"][0]["id"], offer_id);
    assert!(searched(&bootstrap).await.contains(&offer_id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_the_docker_runtime_and_no_docker_refuses_to_start_and_says_why() {
    let chain = TestChain::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let socket = format!("unix://{}/no-docker.sock", dir.path().display());
    let data = dir.path().join("host");
    let res = HostNode::start(
        &chain,
        &data,
        &HostOpts {
            env: vec![("DOCKER_HOST".into(), socket.clone())],
            args: vec!["--runtime".into(), "docker".into()],
            ..HostOpts::default()
        },
    )
    .await;
    assert!(res.is_err(), "the node started without Docker");
    let log = std::fs::read_to_string(data.join("node.log")).unwrap();
    assert!(
        log.contains(&format!("cannot reach Docker at {socket}: ")),
        "{log}"
    );
    assert!(
        log.contains("install Docker or use --runtime process"),
        "{log}"
    );
    assert!(!data.join("api_addr").exists(), "nothing started");
}
