//! The API end to end: a real server on 127.0.0.1:0, a real HTTP client, a fake [`NodeView`]
//! and a real [`LeaseRepo`] on a temporary SQLite file.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

use alloy::primitives::{Address, B256, U256};
use alloy::signers::local::PrivateKeySigner;
use axum::http::{HeaderMap, Method};
use gpuflow_protocol::escrow::{Quote, domain, sign_quote};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use super::routes::{Access, Verb, table};
use super::*;
use crate::lease::{Event, LeaseRecord, LeaseSpec, State as LeaseState};
use crate::runtime::{PortMapping, RuntimeKind, WorkloadHandle};

mod conn;
mod fake;
mod limits;
mod prom;
mod scores;
mod token;
mod write;

use fake::{Behaviour, Call, FakeNode};

const TOKEN: &str = "5f0c2a7e4b9d1c3a8e6f0b2d4c6a8e0f1a3b5c7d9e1f2a4b6c8d0e2f4a6b8c0d";

/// A running API and everything behind it.
struct Api {
    base: String,
    client: reqwest::Client,
    node: Arc<FakeNode>,
    running: LeaseRecord,
    quoted: LeaseRecord,
    shutdown: CancellationToken,
    server: JoinHandle<io::Result<()>>,
    _dir: tempfile::TempDir,
}

struct Reply {
    status: u16,
    headers: HeaderMap,
    text: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text))
    }

    /// Asserts the API's error shape and returns the code.
    fn error_code(&self) -> String {
        let v = self.json();
        assert!(v["error"]["message"].as_str().is_some(), "{v}");
        v["error"]["code"].as_str().unwrap().to_owned()
    }
}

fn lease(signer: &PrivateKeySigner, nonce: u64, now: u64) -> LeaseRecord {
    let d = domain(31_337, Address::repeat_byte(0xee));
    let q = Quote {
        host: signer.address(),
        renter: Address::repeat_byte(0x70),
        pricePerSecond: U256::from(139u64),
        minDuration: U256::ZERO,
        maxDuration: U256::from(86_400u64),
        expiry: U256::from(1_900_000_000u64),
        nonce: U256::from(nonce),
        specHash: B256::repeat_byte(0x11),
    };
    let sig = sign_quote(signer, &q, &d).unwrap();
    let spec = LeaseSpec {
        gpus: vec!["0".into()],
        image: Some("ubuntu:24.04".into()),
        env: [("SECRET".into(), "hunter2".into())].into(),
        ports: vec![8080],
        ..LeaseSpec::default()
    };
    LeaseRecord::quoted(q, sig, spec, &d, now)
}

async fn start(limits: ApiLimits) -> Api {
    start_with(limits, FakeNode::new()).await
}

async fn start_with(limits: ApiLimits, node: FakeNode) -> Api {
    start_full(limits, node, scores::Index::Synced).await
}

async fn start_full(limits: ApiLimits, node: FakeNode, index: scores::Index) -> Api {
    let dir = tempfile::tempdir().unwrap();
    let repo = LeaseRepo::open(&dir.path().join("node.db")).await.unwrap();
    // A fixed key: the lease ids are the same on every run.
    let signer = PrivateKeySigner::from_bytes(&B256::repeat_byte(0x42)).unwrap();
    let running = lease(&signer, 1, 1_000);
    let quoted = lease(&signer, 2, 2_000);
    repo.insert(&running).await.unwrap();
    repo.insert(&quoted).await.unwrap();
    for ev in [
        Event::LeaseOpenedSeen,
        Event::StartSent,
        Event::StartConfirmed,
        Event::WorkloadUp,
    ] {
        repo.apply(running.id, ev, 1_100).await.unwrap();
    }
    let handle = WorkloadHandle {
        kind: RuntimeKind::Process,
        lease: running.id,
        id: "4242:1".into(),
        ports: vec![PortMapping {
            workload: 8080,
            host: 40_000,
        }],
    };
    repo.set_workload(running.id, Some(&handle), 1_100)
        .await
        .unwrap();
    let running = repo.get(running.id).await.unwrap().unwrap();

    let node = Arc::new(node);
    let view: Arc<dyn NodeView> = node.clone();
    let mut state = ApiState::new(view, repo, ApiToken::from_text(TOKEN)).with_limits(limits);
    if let Some(index) = index.open(dir.path()).await {
        state = state.with_scores(index);
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(serve(listener, state, shutdown.clone()));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    Api {
        base,
        client,
        node,
        running,
        quoted,
        shutdown,
        server,
        _dir: dir,
    }
}

impl Api {
    async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Reply {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.body(b.to_owned());
        }
        let resp = req.send().await.unwrap();
        Reply {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            text: resp.text().await.unwrap(),
        }
    }

    /// A request that must not be answered with a 5xx.
    async fn call(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Reply {
        let r = self.send(method.clone(), path, headers, body).await;
        assert!(r.status < 500, "{method} {path}: {} {}", r.status, r.text);
        r
    }

    async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, &[], None).await
    }

    async fn post(&self, path: &str, token: Option<&str>) -> Reply {
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| ("authorization", a))
            .into_iter()
            .collect();
        self.call(Method::POST, path, &headers, None).await
    }
}

fn hex(id: B256) -> String {
    format!("{id:#x}")
}

#[tokio::test]
async fn api_get_health_status_earnings() {
    let api = start(ApiLimits::default()).await;

    let r = api.get("/health").await;
    assert_eq!((r.status, r.json()), (200, json!({ "status": "ok" })));

    let r = api.get("/status").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.headers["content-type"].to_str().unwrap(),
        "application/json"
    );
    assert_eq!(r.json(), serde_json::to_value(fake::status()).unwrap());
    let v = r.json();
    assert_eq!(v["peer_id"], "12D3KooWGpuflowFakePeer");
    assert_eq!(v["gpus"][0]["source"], "nvml");
    assert_eq!(v["offers"][0]["id"], "07".repeat(16));
    assert_eq!(v["offers"][0]["price_per_hour"], "1500000");
    assert_eq!(v["chain_lag_blocks"], 2);

    let r = api.get("/earnings").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        json!({
            "accrued": "123456789012345678901234567890",
            "withdrawn": "100",
            "pending": "123456789012345678901234567790",
            "block": 120,
            "token": format!("{:#x}", Address::repeat_byte(0x22)),
            "decimals": 6,
        })
    );
}

#[tokio::test]
async fn api_leases_list_filter_and_limit() {
    let api = start(ApiLimits::default()).await;
    let ids = |v: &Value| -> Vec<String> {
        v["leases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["id"].as_str().unwrap().to_owned())
            .collect()
    };

    let r = api.get("/leases").await;
    assert_eq!(r.status, 200);
    let v = r.json();
    // Newest first.
    assert_eq!(ids(&v), [hex(api.quoted.id), hex(api.running.id)]);
    assert_eq!(v["truncated"], false);

    let v = api.get("/leases?state=running").await.json();
    assert_eq!(ids(&v), [hex(api.running.id)]);
    let v = api.get("/leases?state=quoted").await.json();
    assert_eq!(ids(&v), [hex(api.quoted.id)]);
    let v = api.get("/leases?state=closed").await.json();
    assert_eq!(ids(&v), Vec::<String>::new());

    let v = api.get("/leases?limit=1").await.json();
    assert_eq!(ids(&v), [hex(api.quoted.id)]);
    assert_eq!(v["truncated"], true);

    for bad in [
        "/leases?state=paused",
        "/leases?status=running",
        "/leases?limit=0",
        "/leases?limit=1001",
        "/leases?limit=many",
    ] {
        let r = api.get(bad).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text);
        assert_eq!(r.error_code(), "invalid_query", "{bad}");
    }
    let r = api.get("/leases?state=paused").await;
    assert!(
        r.text.contains("running"),
        "lists the valid states: {}",
        r.text
    );
}

#[tokio::test]
async fn api_lease_by_id_200_400_404() {
    let api = start(ApiLimits::default()).await;

    let r = api.get(&format!("/leases/{}", hex(api.running.id))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert_eq!(v["id"], hex(api.running.id));
    assert_eq!(v["state"], "running");
    assert_eq!(v["renter"], format!("{:#x}", Address::repeat_byte(0x70)));
    assert_eq!(v["price_per_second"], "139");
    assert_eq!(v["max_duration_secs"], "86400");
    assert_eq!(v["gpus"], json!(["0"]));
    assert_eq!(v["runtime"], "process");
    assert_eq!(v["ports"], json!([{ "workload": 8080, "host": 40000 }]));
    assert_eq!(v["started_at"], 1_100);
    assert!(
        !r.text.contains("hunter2"),
        "the spec's environment is not shown"
    );

    // Upper-case hex digits are the same id.
    let upper = format!("0x{}", hex(api.quoted.id)[2..].to_uppercase());
    let r = api.get(&format!("/leases/{upper}")).await;
    assert_eq!(
        (r.status, r.json()["state"].clone()),
        (200, json!("quoted"))
    );

    for bad in ["0x1234", "abc", &hex(api.running.id)[2..], "0xzz"] {
        let r = api.get(&format!("/leases/{bad}")).await;
        assert_eq!(r.status, 400, "{bad}");
        assert_eq!(r.error_code(), "invalid_lease_id");
        assert!(
            r.text.contains("0x followed by 64 hex digits"),
            "{}",
            r.text
        );
    }

    let r = api
        .get(&format!("/leases/{}", hex(B256::repeat_byte(9))))
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.error_code(), "lease_not_found");
}

#[tokio::test]
async fn api_metrics_parse_as_prometheus_text() {
    let api = start(ApiLimits::default()).await;
    let r = api.get("/metrics").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-type"], METRICS_CONTENT_TYPE);
    let series = prom::parse(&r.text);
    let want = [
        ("gpuflow_leases", r#"state="running""#, "1"),
        ("gpuflow_leases", r#"state="quoted""#, "1"),
        ("gpuflow_leases", r#"state="closed""#, "0"),
        ("gpuflow_leases", r#"state="quote_expired""#, "0"),
        (
            "gpuflow_earnings_base_units",
            r#"kind="accrued""#,
            "123456789012345678901234567890",
        ),
        ("gpuflow_earnings_base_units", r#"kind="withdrawn""#, "100"),
        (
            "gpuflow_earnings_base_units",
            r#"kind="pending""#,
            "123456789012345678901234567790",
        ),
        ("gpuflow_offers", "", "1"),
        ("gpuflow_offers_paused", "", "0"),
        ("gpuflow_peers", "", "3"),
        ("gpuflow_chain_height", "", "120"),
        ("gpuflow_chain_lag_blocks", "", "2"),
        ("gpuflow_host_reliability", "", "0.6"),
        ("gpuflow_indexer_block", "", "1"),
    ];
    for (name, labels, value) in want {
        assert_eq!(
            series
                .get(&(name.to_owned(), labels.to_owned()))
                .map(String::as_str),
            Some(value),
            "{name}{{{labels}}} in\n{}",
            r.text
        );
    }
    // One series per stored state, `new` never stored.
    let states = series.keys().filter(|(n, _)| n == "gpuflow_leases").count();
    assert_eq!(states, LeaseState::ALL.len() - 1);
}

#[tokio::test]
async fn api_metrics_leave_out_unknown_chain_lag() {
    let mut node = FakeNode::new();
    node.status.chain_height = None;
    node.status.chain_lag_blocks = None;
    let api = start_with(ApiLimits::default(), node).await;
    let series = prom::parse(&api.get("/metrics").await.text);
    assert!(!series.keys().any(|(n, _)| n.starts_with("gpuflow_chain")));
    assert!(series.contains_key(&("gpuflow_peers".to_owned(), String::new())));
}

#[tokio::test]
async fn api_openapi_lists_every_route_with_its_auth() {
    let api = start(ApiLimits::default()).await;
    let r = api.get("/openapi.json").await;
    assert_eq!(r.status, 200);
    let doc = r.json();
    assert_eq!(doc["openapi"], "3.1.0");

    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let secured = !op["security"].as_array().unwrap().is_empty();
            documented.insert((method.clone(), path.clone(), secured));
            assert!(op["responses"]["200"].is_object(), "{method} {path}");
        }
    }
    let routed: BTreeSet<(String, String, bool)> = table()
        .iter()
        .map(|r| {
            (
                r.verb.as_upper().to_ascii_lowercase(),
                r.path.to_owned(),
                r.access == Access::Token,
            )
        })
        .collect();
    assert_eq!(documented, routed);

    // Every `$ref` points at a schema that exists.
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(refs.len() > 10);
    for r in refs {
        let name = r.strip_prefix("#/components/schemas/").unwrap();
        assert!(schemas.contains_key(name), "dangling $ref {r}");
    }

    // And every route is served: the documented method on the documented path answers 200.
    for r in table() {
        let path = r
            .path
            .replace("{id}", &hex(api.running.id))
            .replace("{address}", &scores::HOST.to_string());
        let reply = match r.verb {
            Verb::Get => api.get(&path).await,
            Verb::Post => api.post(&path, Some(TOKEN)).await,
        };
        assert_eq!(reply.status, 200, "{:?} {path}: {}", r.verb, reply.text);
    }
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("$ref", Value::String(s)) => out.push(s.clone()),
                    _ => collect_refs(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}
