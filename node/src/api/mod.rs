//! The node's local HTTP API (axum): status, leases, earnings and metrics to read; pausing
//! offers and withdrawing to act.
//!
//! - [`router`] builds the routes (one table in `routes.rs`) with the middleware of `layers.rs`
//!   (tracing span per request under target `api`, `Host` check, body-read timeout, timeout,
//!   concurrency limit, panic guard) and a body size limit; [`serve`] runs it on an injected
//!   listener until a cancellation token fires, so tests bind `127.0.0.1:0`. `serve.rs` owns
//!   the connections: per-address and total caps, header-read and idle timeouts, the request
//!   head size limit ([`ApiLimits`] has each bound and what happens when it is hit).
//! - The node's live state comes through the [`NodeView`] trait, which the node implements;
//!   leases are read straight from the [`LeaseRepo`].
//! - Auth (`auth.rs`): POSTs need the bearer token from `<data_dir>/api.token`
//!   ([`load_or_create_token`]). GETs are read-only and open: on loopback every client is
//!   already a local user, and what they show is public on chain or on the p2p network.
//! - Reliability (`scores.rs`): `GET /reliability` and `GET /hosts/{address}` read the node's
//!   reliability index ([`ScoreIndex`], given with [`ApiState::with_scores`]).
//! - Every error is JSON `{"error": {"code", "message"}}` ([`ApiError`]), 4xx for anything the
//!   client got wrong; `GET /openapi.json` describes every route.
//!
//! Listens on [`DEFAULT_API_ADDR`] (loopback) by default. Binding any other address is a
//! deliberate choice of the operator: the GETs are unauthenticated, and requests must then also
//! be allowed past the loopback-only `Host` check with [`ApiLimits::allow_any_host`].
//!
//! Code map: `view.rs` (the [`NodeView`] trait and its data), `routes.rs` (route table,
//! handlers), `serve.rs` (accept loop and connection bounds), `auth.rs`, `layers.rs`,
//! `error.rs`, `metrics.rs`, `openapi.rs`, `scores.rs`, `tests/`.

mod auth;
mod error;
mod layers;
mod metrics;
mod openapi;
mod routes;
mod scores;
mod serve;
mod view;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{Method, Uri};
use axum::middleware::from_fn_with_state;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::lease::LeaseRepo;
use crate::scores::ScoreIndex;

pub use auth::{ApiToken, TOKEN_FILE, TokenError, load_or_create_token};
pub use error::ApiError;
pub use metrics::CONTENT_TYPE as METRICS_CONTENT_TYPE;
pub use routes::{DEFAULT_LEASE_LIMIT, MAX_LEASE_LIMIT};
pub use view::{
    BoxFuture, Earnings, GpuGroupView, NodeStatus, NodeView, OfferStatus, ViewError, WithdrawReport,
};

/// Where the API listens unless configured otherwise: loopback only. Binding elsewhere is a
/// deliberate choice (see the module docs).
pub use crate::config::DEFAULT_API_ADDR;

/// Default [`ApiLimits::header_read_timeout`]: a connection has this long to send a complete
/// request head (its first one from the accept, a later one from its first byte).
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Default [`ApiLimits::idle_timeout`]: how long a kept-alive connection may wait for its next
/// request.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default [`ApiLimits::body_read_timeout`]: a request body must have arrived this long after
/// its head.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default [`ApiLimits::max_header_bytes`]: request line plus headers.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 16 * 1024;
/// Default [`ApiLimits::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 64;
/// Default [`ApiLimits::max_connections_per_ip`]: a quarter of [`DEFAULT_MAX_CONNECTIONS`], so
/// one address cannot take them all.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 16;

/// Bounds on what the API takes on. The defaults suit a local operator and a Prometheus scraper.
///
/// Whenever a bound is hit the API answers or closes at once; nothing is queued without limit.
/// A connection over a connection cap is accepted and closed straight away (the client reads
/// end of stream); one that overruns a header or idle timeout is closed; a head over
/// `max_header_bytes` gets `431` and is closed; a body over `max_body_bytes` gets `413`, a body
/// that stalls `408` (and the connection is closed); a request the node is slow to answer gets
/// `503 timeout`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiLimits {
    /// A request (including its wait for a free slot) that takes longer gets `503 timeout`.
    /// Dropping the handler drops only its wait on the node: the [`NodeView`] should hand
    /// long work (a withdrawal transaction) to a task so it completes anyway.
    pub request_timeout: Duration,
    /// Requests handled at once; more wait for a slot (within `request_timeout`).
    pub max_concurrent_requests: usize,
    /// Open connections in all. Beyond it a new connection is accepted and closed at once, so a
    /// client fails fast instead of waiting in the kernel's backlog. Keep it above
    /// `max_connections_per_ip` so one address cannot fill it.
    pub max_connections: usize,
    /// Open connections from one IP address; beyond it that address's new connections are
    /// closed at once while other addresses are still served.
    pub max_connections_per_ip: usize,
    /// Time a connection has to send a complete request head: its first one counted from the
    /// accept, a later one from its first byte. Then it is closed without an answer (slowloris).
    pub header_read_timeout: Duration,
    /// Time a kept-alive connection may wait, after a response, for the first byte of its next
    /// request; then it is closed. Also bounds a client that stops reading a response.
    pub idle_timeout: Duration,
    /// Time the whole request body has, from its head, to arrive; a body still incomplete then
    /// gets `408 body_timeout` and the connection is closed. Keep it below `request_timeout`.
    pub body_read_timeout: Duration,
    /// Largest request head (request line and headers, in bytes); a larger one gets `431` and
    /// the connection is closed.
    pub max_header_bytes: usize,
    /// Largest request body; larger ones get `413` (at once when `Content-Length` says so).
    pub max_body_bytes: usize,
    /// After shutdown is requested, how long open connections may take to finish their
    /// requests before `serve` returns anyway.
    pub drain_timeout: Duration,
    /// Answer requests whatever their `Host` header. Off by default: only loopback names are
    /// accepted, which stops a web page from reading the API through DNS rebinding. Turn it on
    /// only together with a non-loopback listen address.
    pub allow_any_host: bool,
}

impl Default for ApiLimits {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(30),
            max_concurrent_requests: 32,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_body_bytes: 64 * 1024,
            drain_timeout: Duration::from_secs(5),
            allow_any_host: false,
        }
    }
}

/// What the handlers share. Cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    node: Arc<dyn NodeView>,
    leases: LeaseRepo,
    /// The reliability index; `None` without a chain RPC.
    scores: Option<ScoreIndex>,
    token: Arc<ApiToken>,
    limits: ApiLimits,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("leases", &self.leases)
            .field("scores", &self.scores)
            .field("token", &self.token)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl ApiState {
    /// State with the default [`ApiLimits`].
    pub fn new(node: Arc<dyn NodeView>, leases: LeaseRepo, token: ApiToken) -> Self {
        Self {
            node,
            leases,
            scores: None,
            token: Arc::new(token),
            limits: ApiLimits::default(),
        }
    }

    /// Replaces the limits.
    #[must_use]
    pub fn with_limits(mut self, limits: ApiLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Serves `GET /reliability` and `GET /hosts/{address}` (and the score gauges) from
    /// `index`; without it they answer 503.
    #[must_use]
    pub fn with_scores(mut self, index: ScoreIndex) -> Self {
        self.scores = Some(index);
        self
    }

    /// The limits in force.
    pub fn limits(&self) -> &ApiLimits {
        &self.limits
    }
}

/// The API's router: every route, the JSON 404/405 fallbacks, the body limit and the request
/// middleware.
pub fn router(state: ApiState) -> Router {
    let guard = Arc::new(layers::Guard::new(state.limits.clone()));
    routes::add_routes(Router::new(), &state.token)
        .fallback(not_found)
        // After the routes: it applies to the method routers registered so far.
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.limits.max_body_bytes))
        .layer(from_fn_with_state(guard, layers::guard))
        .with_state(state)
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::RouteNotFound {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
}

async fn method_not_allowed(
    method: Method,
    uri: Uri,
    matched: Option<axum::extract::MatchedPath>,
) -> ApiError {
    let allowed: Vec<&str> = routes::table()
        .iter()
        .filter(|r| matched.as_ref().is_some_and(|m| m.as_str() == r.path))
        .map(|r| r.verb.as_upper())
        .collect();
    ApiError::MethodNotAllowed {
        method: method.to_string(),
        path: uri.path().to_owned(),
        allowed: allowed.join(", "),
    }
}

/// Serves the API on `listener` until `shutdown` is cancelled, then stops accepting, lets open
/// requests finish for up to [`ApiLimits::drain_timeout`] and returns.
///
/// Each connection is bounded as [`ApiLimits`] says (`serve.rs`): connections per address and
/// in all, the time to send a request head, its size, and how long a kept-alive connection may
/// sit idle; a refused or timed-out connection is closed, never queued.
pub async fn serve(
    listener: TcpListener,
    state: ApiState,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let addr = listener.local_addr()?;
    let limits = state.limits.clone();
    if !addr.ip().is_loopback() {
        tracing::warn!(
            target: "api",
            %addr,
            "the API listens on a non-loopback address: anyone who can reach it can read the \
             node's status, leases and earnings (POSTs still need the token)"
        );
    }
    tracing::info!(target: "api", %addr, "API listening");
    serve::run(listener, router(state), &limits, shutdown).await;
    Ok(())
}

#[cfg(test)]
mod tests;
