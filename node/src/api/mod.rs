//! The node's local HTTP API (axum): status, leases, earnings and metrics to read; pausing
//! offers and withdrawing to act.
//!
//! - [`router`] builds the routes (one table in `routes.rs`) with the middleware of `layers.rs`
//!   (tracing span per request under target `api`, `Host` check, timeout, concurrency limit,
//!   panic guard) and a body size limit; [`serve`] runs it on an injected listener until a
//!   cancellation token fires, so tests bind `127.0.0.1:0`.
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
//! handlers), `auth.rs`, `layers.rs`, `error.rs`, `metrics.rs`, `openapi.rs`, `scores.rs`,
//! `tests/`.

mod auth;
mod error;
mod layers;
mod metrics;
mod openapi;
mod routes;
mod scores;
mod view;

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{Method, Uri};
use axum::middleware::from_fn_with_state;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::lease::LeaseRepo;
use crate::scores::ScoreIndex;

pub use auth::{ApiToken, TOKEN_FILE, TokenError, load_or_create_token};
pub use error::ApiError;
pub use metrics::CONTENT_TYPE as METRICS_CONTENT_TYPE;
pub use routes::{DEFAULT_LEASE_LIMIT, MAX_LEASE_LIMIT};
pub use view::{
    BoxFuture, Earnings, GpuGroup, NodeError, NodeStatus, NodeView, OfferStatus, WithdrawOutcome,
};

/// Where the API listens unless configured otherwise: loopback only. Binding elsewhere is a
/// deliberate choice (see the module docs).
pub const DEFAULT_API_ADDR: &str = "127.0.0.1:8686";

/// Bounds on what the API takes on. The defaults suit a local operator and a Prometheus scraper.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiLimits {
    /// A request (including its wait for a free slot) that takes longer gets `503 timeout`.
    /// Dropping the handler drops only its wait on the node: the [`NodeView`] should hand
    /// long work (a withdrawal transaction) to a task so it completes anyway.
    pub request_timeout: Duration,
    /// Requests handled at once; more wait for a slot (within `request_timeout`).
    pub max_concurrent_requests: usize,
    /// Open connections; when all are taken the server stops accepting and further clients wait
    /// in the kernel's listen backlog.
    pub max_connections: usize,
    /// Largest request body; larger ones get `413`.
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
            max_connections: 64,
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
    let listener = LimitedListener {
        inner: listener,
        slots: Arc::new(Semaphore::new(limits.max_connections.max(1))),
    };
    let server = axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .into_future();
    let drained = async {
        shutdown.cancelled().await;
        tokio::time::sleep(limits.drain_timeout).await;
    };
    tokio::select! {
        done = server => done,
        () = drained => {
            // The connection tasks were told to close; they end when their clients let go.
            tracing::warn!(target: "api", "connections still open after the drain timeout");
            Ok(())
        }
    }
}

/// A listener that accepts a connection only when one of `slots` is free; the connection
/// holds its slot until it closes.
struct LimitedListener {
    inner: TcpListener,
    slots: Arc<Semaphore>,
}

impl axum::serve::Listener for LimitedListener {
    type Io = Limited;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Limited, SocketAddr) {
        // Never closed, so `None` (no limit) cannot happen in practice.
        let permit = Arc::clone(&self.slots).acquire_owned().await.ok();
        let (stream, addr) = axum::serve::Listener::accept(&mut self.inner).await;
        // Small JSON responses: do not wait for Nagle.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::trace!(target: "api", error = %e, "TCP_NODELAY failed");
        }
        (
            Limited {
                stream,
                _permit: permit,
            },
            addr,
        )
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// A connection with its slot.
struct Limited {
    stream: TcpStream,
    _permit: Option<OwnedSemaphorePermit>,
}

impl AsyncRead for Limited {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Limited {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests;
