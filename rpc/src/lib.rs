//! # gpuflow-rpc
//!
//! One JSON-RPC transport for every GPUFlow program that talks to a chain: alloy's reqwest HTTP
//! transport with a deadline on every request. A chain RPC that accepts the connection and then
//! never answers would otherwise hang the caller forever (the CLI's `leases`, the node's lease
//! engine); with it the request fails after the deadline with [`RpcTimeout`], which names the
//! RPC.
//!
//! Callers add what differs between them: the CLI an `advice` sentence telling the user what
//! to do, the node an [`Observer`] that logs one warning per outage.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use alloy::rpc::client::RpcClient;
use alloy::transports::http::Http;
use alloy::transports::http::reqwest::{self, Url};
use alloy::transports::{RpcError, TransportError, TransportErrorKind, TransportFut};
use tower_service::Service;

/// A JSON-RPC request that got no answer within the deadline.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the chain RPC at {url} did not answer within {secs} s{advice}")]
pub struct RpcTimeout {
    /// The RPC's URL.
    pub url: Arc<str>,
    /// The deadline, seconds.
    pub secs: u64,
    /// What the caller's user should do, as "; …" (empty for none).
    advice: &'static str,
}

/// Sees every request's outcome: told when a request got no answer (the deadline passed or
/// no connection could be made) and when one was answered. Used by the node to log outages.
pub trait Observer: Send + Sync + 'static {
    /// A request was answered (an HTTP or JSON-RPC error is an answer too).
    fn answered(&self, url: &str);
    /// A request got no answer.
    fn no_answer(&self, url: &str, timeout: Duration, error: &TransportError);
}

/// How to build a [`client`].
#[derive(Clone)]
pub struct Options {
    /// The deadline of every request.
    pub timeout: Duration,
    /// Longest a TCP connect may take (capped at `timeout`).
    pub connect_timeout: Duration,
    /// Appended to the [`RpcTimeout`] message, e.g. "; set --rpc-url to another RPC".
    pub advice: &'static str,
    /// Told of every request's outcome.
    pub observer: Option<Arc<dyn Observer>>,
}

impl Options {
    /// A deadline of `timeout`, connects within 10 s, no advice, no observer.
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            connect_timeout: Duration::from_secs(10),
            advice: "",
            observer: None,
        }
    }
}

/// An RPC client for `url` whose every request fails with [`RpcTimeout`] after
/// `opts.timeout`. Fails only when no HTTP client can be built (no TLS back-end).
pub fn client(url: Url, opts: Options) -> Result<RpcClient, reqwest::Error> {
    let http_client = reqwest::Client::builder()
        // The backstop; the deadline in `TimedHttp` fires first.
        .timeout(opts.timeout + Duration::from_secs(1))
        .connect_timeout(opts.connect_timeout.min(opts.timeout))
        .build()?;
    let name: Arc<str> = Arc::from(url.as_str());
    let http = Http::with_client(http_client, url);
    let is_local = http.guess_local();
    Ok(RpcClient::new(
        TimedHttp {
            inner: http,
            url: name,
            opts,
        },
        is_local,
    ))
}

/// The [`RpcTimeout`] in `e`'s chain of causes, if the failure was one.
pub fn timeout_in<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a RpcTimeout> {
    let mut cur = Some(e);
    while let Some(c) = cur {
        if let Some(t) = c.downcast_ref::<RpcTimeout>() {
            return Some(t);
        }
        cur = c.source();
    }
    None
}

/// Whether `e` means the RPC did not answer at all: the deadline, reqwest's request or connect
/// timeout, or no connection. An HTTP error status or a JSON-RPC error is an answer.
pub fn no_answer(e: &TransportError) -> bool {
    matches!(e, RpcError::Transport(TransportErrorKind::Custom(c))
        if c.downcast_ref::<reqwest::Error>().is_some_and(|r| r.is_timeout() || r.is_connect())
            || c.is::<RpcTimeout>())
}

/// The reqwest transport with a deadline on every request.
#[derive(Clone)]
struct TimedHttp {
    inner: Http<reqwest::Client>,
    url: Arc<str>,
    opts: Options,
}

impl TimedHttp {
    fn elapsed(&self) -> TransportError {
        TransportErrorKind::custom(RpcTimeout {
            url: self.url.clone(),
            secs: self.opts.timeout.as_secs(),
            advice: self.opts.advice,
        })
    }

    fn observe<T>(&self, r: Result<T, TransportError>) -> Result<T, TransportError> {
        if let Some(o) = &self.opts.observer {
            match &r {
                Err(e) if no_answer(e) => o.no_answer(&self.url, self.opts.timeout, e),
                _ => o.answered(&self.url),
            }
        }
        r
    }
}

/// Whether `e` is reqwest giving up (its request or connect timeout).
fn is_reqwest_timeout(e: &TransportError) -> bool {
    matches!(e, RpcError::Transport(TransportErrorKind::Custom(c))
        if c.downcast_ref::<reqwest::Error>().is_some_and(reqwest::Error::is_timeout))
}

// Generic over the request only because alloy's `RequestPacket` is not re-exported with the
// features this workspace enables; alloy uses it with `RequestPacket`.
impl<R> Service<R> for TimedHttp
where
    Http<reqwest::Client>: Service<R, Error = TransportError>,
    <Http<reqwest::Client> as Service<R>>::Future: Send + 'static,
{
    type Response = <Http<reqwest::Client> as Service<R>>::Response;
    type Error = TransportError;
    type Future = TransportFut<'static, Self::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        let call = self.inner.call(req);
        let this = self.clone();
        Box::pin(async move {
            let r = match tokio::time::timeout(this.opts.timeout, call).await {
                Ok(Err(e)) if is_reqwest_timeout(&e) => Err(this.elapsed()),
                Ok(answer) => answer,
                Err(_) => Err(this.elapsed()),
            };
            this.observe(r)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use alloy::providers::{Provider, ProviderBuilder};

    use super::*;

    #[derive(Default)]
    struct Count {
        answered: AtomicUsize,
        silent: AtomicUsize,
    }

    impl Observer for Count {
        fn answered(&self, _: &str) {
            self.answered.fetch_add(1, Ordering::Relaxed);
        }
        fn no_answer(&self, _: &str, _: Duration, _: &TransportError) {
            self.silent.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A listener that accepts and never answers fails the request at the deadline, naming the
    /// RPC, with the caller's advice; the observer hears of it.
    #[tokio::test]
    async fn a_frozen_rpc_fails_at_the_deadline_and_the_observer_hears_it() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url: Url = format!("http://{}", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        let hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((sock, _)) = listener.accept().await {
                held.push(sock);
            }
        });
        let count = Arc::new(Count::default());
        let opts = Options {
            advice: "; try another",
            observer: Some(count.clone()),
            ..Options::new(Duration::from_secs(1))
        };
        let provider = ProviderBuilder::new()
            .connect_client(client(url.clone(), opts).unwrap())
            .erased();
        let t0 = std::time::Instant::now();
        let err = tokio::time::timeout(Duration::from_secs(10), provider.get_chain_id())
            .await
            .expect("still waiting after 10 s")
            .unwrap_err();
        assert!(t0.elapsed() >= Duration::from_secs(1), "{err}");
        assert!(timeout_in(&err).is_some(), "{err:?}");
        assert!(
            err.to_string().contains(&format!(
                "the chain RPC at {url} did not answer within 1 s; try another"
            )),
            "{err}"
        );
        assert_eq!(count.silent.load(Ordering::Relaxed), 1);
        assert_eq!(count.answered.load(Ordering::Relaxed), 0);
        hold.abort();
    }
}
