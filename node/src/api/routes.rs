//! The routes: one table ([`table`]) of method, path, access and handler, and the handlers.
//!
//! The table is the single place a route is declared: the router is built from it, the auth
//! layer is attached from its `access` column, and a test checks that `/openapi.json`
//! documents exactly its rows.

use std::sync::Arc;

use alloy::primitives::{Address, B256, U256};
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::handler::Handler;
use axum::http::{HeaderMap, header};
use axum::middleware::from_fn_with_state;
use axum::response::Json;
use axum::routing::{MethodFilter, MethodRouter, on};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::ApiState;
use super::auth::{ApiToken, require_token};
use super::error::ApiError;
use super::view::{WithdrawReport, decimal_u256};
use super::{metrics, openapi, scores};
use crate::lease::{LeaseRecord, State as LeaseState};
use crate::runtime::{PortMapping, RuntimeKind};

/// `GET /leases` returns at most this many leases unless `limit` says otherwise.
pub const DEFAULT_LEASE_LIMIT: usize = 100;
/// The largest `limit` `GET /leases` accepts, so one response stays a few hundred KiB.
pub const MAX_LEASE_LIMIT: usize = 1000;

/// The HTTP methods the API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verb {
    Get,
    Post,
}

impl Verb {
    /// Upper-case, as HTTP spells it.
    pub(crate) fn as_upper(self) -> &'static str {
        match self {
            Verb::Get => "GET",
            Verb::Post => "POST",
        }
    }

    fn filter(self) -> MethodFilter {
        match self {
            Verb::Get => MethodFilter::GET,
            Verb::Post => MethodFilter::POST,
        }
    }
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Anyone who can reach the API (read-only routes).
    Open,
    /// Only with `Authorization: Bearer <token>`.
    Token,
}

/// One row of the route table.
pub(crate) struct Route {
    pub(crate) verb: Verb,
    pub(crate) path: &'static str,
    pub(crate) access: Access,
    handler: MethodRouter<ApiState>,
}

fn row<H, T>(verb: Verb, path: &'static str, access: Access, handler: H) -> Route
where
    H: Handler<T, ApiState>,
    T: 'static,
{
    Route {
        verb,
        path,
        access,
        handler: on(verb.filter(), handler),
    }
}

/// Every route of the API.
pub(crate) fn table() -> Vec<Route> {
    use Access::{Open, Token};
    use Verb::{Get, Post};
    vec![
        row(Get, "/health", Open, health),
        row(Get, "/status", Open, status),
        row(Get, "/leases", Open, leases),
        row(Get, "/leases/{id}", Open, lease),
        row(Get, "/earnings", Open, earnings),
        row(Get, "/reliability", Open, scores::reliability),
        row(Get, "/hosts/{address}", Open, scores::host),
        row(Get, "/metrics", Open, metrics::metrics),
        row(Get, "/openapi.json", Open, openapi_json),
        row(Post, "/offers/pause", Token, pause),
        row(Post, "/offers/resume", Token, resume),
        row(Post, "/withdraw", Token, withdraw),
    ]
}

/// The router with every route of [`table`], the token check on the `Token` ones.
pub(crate) fn add_routes(router: Router<ApiState>, token: &Arc<ApiToken>) -> Router<ApiState> {
    table().into_iter().fold(router, |router, r| {
        let handler = match r.access {
            Access::Open => r.handler,
            // route_layer: runs only when path and method match, so a wrong method is a 405
            // and not a 401.
            Access::Token => r
                .handler
                .route_layer(from_fn_with_state(Arc::clone(token), require_token)),
        };
        router.route(r.path, handler)
    })
}

async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn status(State(s): State<ApiState>) -> Result<Json<super::NodeStatus>, ApiError> {
    Ok(Json(s.node.status().await?))
}

async fn earnings(State(s): State<ApiState>) -> Result<Json<super::Earnings>, ApiError> {
    Ok(Json(s.node.earnings().await?))
}

async fn openapi_json() -> Json<Value> {
    Json(openapi::document())
}

/// `GET /leases` query string. Unknown parameters are refused so a typo (`?status=running`)
/// is an error rather than an unfiltered list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LeaseQuery {
    state: Option<String>,
    limit: Option<usize>,
}

/// `GET /leases` body.
#[derive(Debug, Serialize)]
struct LeaseList {
    /// Newest first.
    leases: Vec<LeaseView>,
    /// More leases matched than `limit`.
    truncated: bool,
}

async fn leases(
    State(s): State<ApiState>,
    query: Result<Query<LeaseQuery>, QueryRejection>,
) -> Result<Json<LeaseList>, ApiError> {
    let Query(q) = query.map_err(|e| {
        ApiError::InvalidQuery(format!(
            "{}; /leases takes `state` (a lease state) and `limit` (1 to {MAX_LEASE_LIMIT})",
            e.body_text()
        ))
    })?;
    let limit = q.limit.unwrap_or(DEFAULT_LEASE_LIMIT);
    if !(1..=MAX_LEASE_LIMIT).contains(&limit) {
        return Err(ApiError::InvalidQuery(format!(
            "limit {limit} is out of range; use 1 to {MAX_LEASE_LIMIT}"
        )));
    }
    let states: Vec<LeaseState> = match q.state.as_deref() {
        None => LeaseState::ALL.to_vec(),
        Some(name) => vec![name.parse().map_err(|_| {
            let names: Vec<&str> = LeaseState::ALL.iter().map(|s| s.as_str()).collect();
            ApiError::InvalidQuery(format!(
                "unknown lease state {name:?}; use one of {}",
                names.join(", ")
            ))
        })?],
    };
    // The repository returns oldest first; operators want the newest.
    let mut all = s.leases.in_states(&states).await?;
    let truncated = all.len() > limit;
    all.reverse();
    all.truncate(limit);
    Ok(Json(LeaseList {
        leases: all.iter().map(LeaseView::from).collect(),
        truncated,
    }))
}

async fn lease(
    State(s): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<LeaseView>, ApiError> {
    let Path(text) = id.map_err(|e| ApiError::InvalidLeaseId(e.body_text()))?;
    let id = parse_lease_id(&text).ok_or(ApiError::InvalidLeaseId(text))?;
    let rec = s.leases.get(id).await?.ok_or(ApiError::LeaseNotFound(id))?;
    Ok(Json(LeaseView::from(&rec)))
}

/// `0x` + 64 hex digits, nothing else (no missing prefix, no short forms).
fn parse_lease_id(text: &str) -> Option<B256> {
    let hex = text.strip_prefix("0x")?;
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    text.parse().ok()
}

/// `POST /offers/pause` body (optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PauseRequest {
    /// Why, for the node's log.
    reason: Option<String>,
}

/// `POST /offers/resume` and `POST /withdraw` take no options; a body, if sent, must be `{}`,
/// so a client that believes it is passing options learns that it is not.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoOptions {}

async fn pause(
    State(s): State<ApiState>,
    OptionalJson(body): OptionalJson<PauseRequest>,
) -> Result<Json<Value>, ApiError> {
    tracing::info!(target: "api", reason = body.reason.as_deref(), "operator paused offers");
    s.node.pause_offers(true).await?;
    Ok(Json(json!({ "paused": true })))
}

async fn resume(
    State(s): State<ApiState>,
    OptionalJson(NoOptions {}): OptionalJson<NoOptions>,
) -> Result<Json<Value>, ApiError> {
    tracing::info!(target: "api", "operator resumed offers");
    s.node.pause_offers(false).await?;
    Ok(Json(json!({ "paused": false })))
}

async fn withdraw(
    State(s): State<ApiState>,
    OptionalJson(NoOptions {}): OptionalJson<NoOptions>,
) -> Result<Json<WithdrawReport>, ApiError> {
    tracing::info!(target: "api", "operator asked for a withdrawal");
    Ok(Json(s.node.withdraw_now().await?))
}

/// A JSON body that may be left out (empty body: `T::default()`). When present it must be
/// `application/json` (415 otherwise), parse (400) and fit `T` (422); the size limit gives 413,
/// at once when `Content-Length` is over it. Every refusal is the API's JSON error, never
/// axum's plain-text one.
pub(crate) struct OptionalJson<T>(pub(crate) T);

impl<T> FromRequest<ApiState> for OptionalJson<T>
where
    T: DeserializeOwned + Default,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &ApiState) -> Result<Self, ApiError> {
        let limit = state.limits.max_body_bytes;
        if let Some(declared) = declared_length(req.headers())
            && declared > limit as u64
        {
            // Without waiting for a body that will be refused anyway.
            return Err(ApiError::body(
                axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is {declared} bytes; the limit is {limit} bytes"),
            ));
        }
        let is_json = is_json(req.headers());
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::body(e.status(), e.body_text()))?;
        if bytes.is_empty() {
            return Ok(Self(T::default()));
        }
        if !is_json {
            return Err(ApiError::body(
                axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send the body with `Content-Type: application/json`, or send no body".into(),
            ));
        }
        match Json::<T>::from_bytes(&bytes) {
            Ok(Json(v)) => Ok(Self(v)),
            Err(e) => Err(ApiError::body(e.status(), e.body_text())),
        }
    }
}

/// The request's `Content-Length`, if it has a valid one.
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = ct.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
        || (essence.len() > 5
            && essence.starts_with("application/")
            && essence.to_ascii_lowercase().ends_with("+json"))
}

/// A lease as the API shows it. The spec's environment is left out: renters may put secrets
/// there, and the API's GETs are unauthenticated.
#[derive(Debug, Serialize)]
pub(crate) struct LeaseView {
    id: B256,
    state: LeaseStateName,
    renter: Address,
    /// Token base units per second.
    #[serde(with = "decimal_u256")]
    price_per_second: U256,
    #[serde(with = "decimal_u256")]
    max_duration_secs: U256,
    /// Unix seconds after which the quote could no longer be opened.
    #[serde(with = "decimal_u256")]
    quote_expiry: U256,
    spec_hash: B256,
    gpus: Vec<String>,
    image: Option<String>,
    runtime: Option<RuntimeKind>,
    ports: Vec<PortMapping>,
    created_at: u64,
    updated_at: u64,
    opened_at: Option<u64>,
    started_at: Option<u64>,
    ended_at: Option<u64>,
    last_error: Option<String>,
}

/// [`LeaseState`] serialized by its stored name (`running`, `quote_expired`, …).
#[derive(Debug)]
struct LeaseStateName(LeaseState);

impl Serialize for LeaseStateName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.as_str())
    }
}

impl From<&LeaseRecord> for LeaseView {
    fn from(r: &LeaseRecord) -> Self {
        Self {
            id: r.id,
            state: LeaseStateName(r.state),
            renter: r.quote.renter,
            price_per_second: r.quote.pricePerSecond,
            max_duration_secs: r.quote.maxDuration,
            quote_expiry: r.quote.expiry,
            spec_hash: r.quote.specHash,
            gpus: r.spec.gpus.clone(),
            image: r.spec.image.clone(),
            runtime: r.workload.as_ref().map(|w| w.kind),
            ports: r
                .workload
                .as_ref()
                .map(|w| w.ports.clone())
                .unwrap_or_default(),
            created_at: r.created_at,
            updated_at: r.updated_at,
            opened_at: r.opened_at,
            started_at: r.started_at,
            ended_at: r.ended_at,
            last_error: r.last_error.clone(),
        }
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn api_lease_id_format() {
        let good = format!("0x{}", "ab".repeat(32));
        assert_eq!(parse_lease_id(&good), Some(B256::repeat_byte(0xab)));
        assert_eq!(
            parse_lease_id(&good.to_uppercase().replacen("0X", "0x", 1)),
            Some(B256::repeat_byte(0xab))
        );
        for bad in [
            "ab".repeat(32),
            format!("0x{}", "ab".repeat(31)),
            format!("0x{}", "ab".repeat(33)),
            format!("0x{}zz", "ab".repeat(31)),
            format!("0X{}", "ab".repeat(32)),
            String::new(),
            "0x".into(),
        ] {
            assert_eq!(parse_lease_id(&bad), None, "{bad}");
        }
    }

    #[test]
    fn api_json_content_types() {
        let mut h = HeaderMap::new();
        assert!(!is_json(&h));
        for (ct, ok) in [
            ("application/json", true),
            ("Application/JSON; charset=utf-8", true),
            ("application/merge-patch+json", true),
            ("text/plain", false),
            ("application/x-www-form-urlencoded", false),
            ("+json", false),
        ] {
            h.insert(header::CONTENT_TYPE, ct.parse().unwrap());
            assert_eq!(is_json(&h), ok, "{ct}");
        }
    }
}
