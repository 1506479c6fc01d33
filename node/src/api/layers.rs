//! The middleware every request goes through, outermost first: a tracing span, the `Host`
//! check, the body-read timeout, the request timeout, the concurrency limit and a panic guard.
//!
//! The body-read timeout wraps the request body ([`TimedBody`]): once
//! [`ApiLimits::body_read_timeout`] has passed since the head, reading it fails, and whatever
//! the handler made of that becomes `408 body_timeout` with `Connection: close` (the rest of
//! the body may still be on its way, so the connection cannot be reused).
//!
//! One hand-written middleware instead of a stack of tower layers, so that every refusal is the
//! API's JSON error (tower-http's timeout answers with an empty 408) and the order is visible
//! in one place.

use std::any::Any;
use std::net::Ipv4Addr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt;
use http_body::{Frame, SizeHint};
use tokio::sync::Semaphore;
use tokio::time::Sleep;
use tracing::Instrument;

use super::ApiLimits;
use super::error::ApiError;

/// What the middleware needs; one per router.
#[derive(Debug)]
pub(crate) struct Guard {
    limits: ApiLimits,
    /// Requests being handled. When all permits are taken, new requests wait for one (inside
    /// the timeout, so a wait never outlasts `request_timeout`).
    slots: Semaphore,
    next_id: AtomicU64,
}

impl Guard {
    pub(crate) fn new(limits: ApiLimits) -> Self {
        Self {
            slots: Semaphore::new(limits.max_concurrent_requests.max(1)),
            limits,
            next_id: AtomicU64::new(1),
        }
    }
}

/// The middleware itself (see the module docs for the order).
pub(crate) async fn guard(State(g): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    let id = g.next_id.fetch_add(1, Ordering::Relaxed);
    let span = tracing::info_span!(
        target: "api",
        "request",
        id,
        method = %req.method(),
        path = %req.uri().path(),
        status = tracing::field::Empty,
    );
    async move {
        let started = Instant::now();
        let resp = handle(&g, req, next).await;
        let status = resp.status().as_u16();
        tracing::Span::current().record("status", status);
        tracing::debug!(
            target: "api",
            status,
            elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "request done"
        );
        resp
    }
    .instrument(span)
    .await
}

async fn handle(g: &Guard, req: Request, next: Next) -> Response {
    if !g.limits.allow_any_host
        && let Some(host) = foreign_host(&req)
    {
        return ApiError::ForbiddenHost(host).into_response();
    }
    let (req, body_expired) = time_body(req, g.limits.body_read_timeout);
    let work = async {
        // The semaphore is never closed, so acquiring only fails if that changes.
        let Ok(_permit) = g.slots.acquire().await else {
            return ApiError::Internal("request limiter closed".into()).into_response();
        };
        match AssertUnwindSafe(next.run(req)).catch_unwind().await {
            Ok(resp) => resp,
            Err(panic) => {
                let what = panic_message(panic.as_ref());
                tracing::error!(target: "api", panic = %what, "request handler panicked");
                ApiError::Internal(what).into_response()
            }
        }
    };
    let resp = match tokio::time::timeout(g.limits.request_timeout, work).await {
        Ok(resp) => resp,
        Err(_) => ApiError::Timeout(g.limits.request_timeout).into_response(),
    };
    if body_expired.load(Ordering::Acquire) {
        let mut resp = ApiError::BodyTimeout(g.limits.body_read_timeout).into_response();
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return resp;
    }
    resp
}

/// Puts a deadline of `limit` from now on reading `req`'s body; the flag says whether it hit.
/// A request without a body is left as it is.
fn time_body(req: Request, limit: Duration) -> (Request, Arc<AtomicBool>) {
    let expired = Arc::new(AtomicBool::new(false));
    if req.body().is_end_stream() {
        return (req, expired);
    }
    let flag = Arc::clone(&expired);
    let req = req.map(|inner| {
        Body::new(TimedBody {
            inner,
            deadline: Box::pin(tokio::time::sleep(limit)),
            limit,
            expired: flag,
        })
    });
    (req, expired)
}

/// A request body that fails with [`BodyTimedOut`] once its deadline has passed.
struct TimedBody {
    inner: Body,
    deadline: Pin<Box<Sleep>>,
    limit: Duration,
    expired: Arc<AtomicBool>,
}

/// Why [`TimedBody`] failed.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?}")]
struct BodyTimedOut(Duration);

impl HttpBody for TimedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            this.expired.store(true, Ordering::Release);
            return Poll::Ready(Some(Err(axum::Error::new(BodyTimedOut(this.limit)))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The request's `Host` if it is set and not a loopback name. A browser always sends the name
/// it resolved, so a page that rebinds its own domain to 127.0.0.1 is caught here; clients
/// that send no `Host` at all are not browsers and pass.
fn foreign_host(req: &Request) -> Option<String> {
    let host = match req.headers().get(header::HOST) {
        Some(v) => v.to_str().map(str::to_owned).unwrap_or_default(),
        None => req.uri().host()?.to_owned(),
    };
    (!is_loopback_host(&host)).then_some(host)
}

/// Whether `host` (`name[:port]`) names this machine's loopback interface.
pub(crate) fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((inside, _)) => inside,
            None => return false,
        }
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    name.eq_ignore_ascii_case("localhost")
        || name == "::1"
        || name.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".to_owned())
}

#[cfg(test)]
mod tests {
    use super::is_loopback_host;

    #[test]
    fn api_loopback_host_names() {
        for ok in [
            "127.0.0.1",
            "127.0.0.1:8686",
            "127.1.2.3:1",
            "localhost",
            "LOCALHOST:8686",
            "[::1]:8686",
            "[::1]",
        ] {
            assert!(is_loopback_host(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8686",
            "10.0.0.1:8686",
            "localhost.evil.example",
            "[::2]:8686",
            "[::1",
            "",
        ] {
            assert!(!is_loopback_host(bad), "{bad}");
        }
    }
}
