//! The accept loop and the bounds on each connection, so that a few sockets cannot make the
//! API unreachable (slowloris, idle keep-alive, huge heads).
//!
//! - Connections are capped per IP address ([`ApiLimits::max_connections_per_ip`]) and in all
//!   ([`ApiLimits::max_connections`]). Over a cap the socket is accepted and dropped at once:
//!   the client reads end of stream straight away instead of waiting in the kernel's backlog,
//!   and other addresses are still served.
//! - Every connection is one hyper HTTP/1 connection with a watchdog: it must send a complete
//!   request head within [`ApiLimits::header_read_timeout`] (its first from the accept, a later
//!   one from that request's first byte), and after a response it may stay idle for
//!   [`ApiLimits::idle_timeout`]; otherwise it is dropped (closed, no answer). While a request
//!   is being handled neither applies: the request and body-read timeouts of `layers.rs` do.
//!   hyper's own `header_read_timeout` is off: it would start on every idle keep-alive
//!   connection too and so cut both at the same bound.
//! - hyper answers a head over [`ApiLimits::max_header_bytes`] with `431` and closes.
//! - On shutdown the listener is dropped, every connection is told to close once its current
//!   request is answered (idle ones close at once), and they get
//!   [`ApiLimits::drain_timeout`] to do so.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::Service as _;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::ApiLimits;

/// At most one warning about refused connections per this long (each is logged at debug).
const REFUSAL_WARN_EVERY: Duration = Duration::from_secs(60);

/// Accepts connections on `listener` and serves `router` on them until `shutdown` fires, then
/// drains (module docs).
pub(super) async fn run(
    mut listener: TcpListener,
    router: Router,
    limits: &ApiLimits,
    shutdown: CancellationToken,
) {
    let caps = Arc::new(Caps::new(limits));
    let timeouts = Timeouts {
        header: limits.header_read_timeout,
        idle: limits.idle_timeout,
    };
    let mut http = http1::Builder::new();
    http.keep_alive(true)
        .max_header_size(limits.max_header_bytes)
        // The watchdog below times heads and idle connections (module docs).
        .header_read_timeout(None);
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            Some(done) = conns.join_next(), if !conns.is_empty() => {
                if let Err(e) = done {
                    tracing::error!(target: "api", error = %e, "an API connection task failed");
                }
            }
            // axum's listener retries failed accepts itself (with a pause when out of files).
            (stream, peer) = axum::serve::Listener::accept(&mut listener) => {
                let Some(slot) = caps.admit(peer.ip()) else {
                    // Dropping the socket closes it at once (module docs).
                    continue;
                };
                // Small JSON responses: do not wait for Nagle.
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::trace!(target: "api", error = %e, "TCP_NODELAY failed");
                }
                conns.spawn(connection(
                    http.clone(),
                    stream,
                    peer,
                    slot,
                    router.clone(),
                    timeouts,
                    shutdown.clone(),
                ));
            }
        }
    }
    drop(listener);
    let drain = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(limits.drain_timeout, drain)
        .await
        .is_err()
    {
        // They were told to close; they end when their requests are answered.
        tracing::warn!(target: "api", "connections still open after the drain timeout");
        conns.detach_all();
    }
}

#[derive(Debug, Clone, Copy)]
struct Timeouts {
    header: Duration,
    idle: Duration,
}

/// One connection, from accept to close.
async fn connection(
    http: http1::Builder,
    stream: TcpStream,
    peer: SocketAddr,
    slot: Slot,
    router: Router,
    timeouts: Timeouts,
    shutdown: CancellationToken,
) {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Tracked {
        stream,
        activity: Arc::clone(&activity),
        _slot: slot,
    });
    let tower = TowerToHyperService::new(router);
    let busy = Arc::clone(&activity);
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let request = Busy::start(&busy);
        let answer = tower.call(req);
        async move {
            let resp: Result<Response<Body>, Infallible> = answer.await;
            drop(request);
            resp
        }
    });
    let mut conn = pin!(http.serve_connection(io, service));
    let mut closing = false;
    loop {
        let deadline = activity.deadline(timeouts);
        let expired = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            done = conn.as_mut() => {
                if let Err(e) = done {
                    tracing::debug!(target: "api", %peer, error = %e, "connection ended");
                }
                return;
            }
            () = activity.changed.notified() => {}
            () = expired => {
                if activity.deadline(timeouts).is_some_and(|at| at <= Instant::now()) {
                    tracing::debug!(
                        target: "api",
                        %peer,
                        why = activity.waiting_for(),
                        "closing a connection that overran its timeout"
                    );
                    // Dropping the connection closes the socket.
                    return;
                }
            }
            () = shutdown.cancelled(), if !closing => {
                // Idle: closes at once; busy: after the response.
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    }
}

/// What a connection is doing, for its watchdog.
struct Activity {
    phase: Mutex<Phase>,
    /// Woken when a request starts or ends, and on the first byte after a response.
    changed: Notify,
}

struct Phase {
    /// Requests being handled (HTTP/1: at most one).
    in_flight: u32,
    /// Whether a request has been answered: the first head is timed from the accept.
    served: bool,
    /// The accept, or the end of the last request.
    since: Instant,
    /// The first byte read since the last request ended.
    first_byte: Option<Instant>,
}

impl Activity {
    fn new() -> Self {
        Self {
            phase: Mutex::new(Phase {
                in_flight: 0,
                served: false,
                since: Instant::now(),
                first_byte: None,
            }),
            changed: Notify::new(),
        }
    }

    fn phase(&self) -> MutexGuard<'_, Phase> {
        // The lock guards plain data: a panic elsewhere cannot leave it inconsistent.
        self.phase
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// When the connection is to be closed unless something happens first; `None` while a
    /// request is being handled.
    fn deadline(&self, t: Timeouts) -> Option<Instant> {
        let p = self.phase();
        if p.in_flight > 0 {
            None
        } else if !p.served {
            Some(p.since + t.header)
        } else if let Some(first) = p.first_byte {
            Some(first + t.header)
        } else {
            Some(p.since + t.idle)
        }
    }

    /// For the log: which timeout applies now.
    fn waiting_for(&self) -> &'static str {
        let p = self.phase();
        if !p.served || p.first_byte.is_some() {
            "request head"
        } else {
            "next request (idle)"
        }
    }

    fn on_read(&self) {
        let mut p = self.phase();
        if p.in_flight == 0 && p.served && p.first_byte.is_none() {
            p.first_byte = Some(Instant::now());
            drop(p);
            self.changed.notify_one();
        }
    }
}

/// A request being handled; its drop (answered or abandoned) starts the idle clock.
struct Busy(Arc<Activity>);

impl Busy {
    fn start(activity: &Arc<Activity>) -> Self {
        {
            let mut p = activity.phase();
            p.in_flight += 1;
            p.first_byte = None;
        }
        activity.changed.notify_one();
        Self(Arc::clone(activity))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        {
            let mut p = self.0.phase();
            p.in_flight = p.in_flight.saturating_sub(1);
            if p.in_flight == 0 {
                p.served = true;
                p.since = Instant::now();
                p.first_byte = None;
            }
        }
        self.0.changed.notify_one();
    }
}

/// The connection caps: per address and in all.
struct Caps {
    per_ip: usize,
    total: usize,
    open: Mutex<Open>,
}

struct Open {
    total: usize,
    by_ip: HashMap<IpAddr, usize>,
    last_warning: Option<Instant>,
}

impl Caps {
    fn new(limits: &ApiLimits) -> Self {
        Self {
            per_ip: limits.max_connections_per_ip.max(1),
            total: limits.max_connections.max(1),
            open: Mutex::new(Open {
                total: 0,
                by_ip: HashMap::new(),
                last_warning: None,
            }),
        }
    }

    fn open(&self) -> MutexGuard<'_, Open> {
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A slot for a new connection from `ip`, or `None` (logged) when a cap is reached.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        let ip = ip.to_canonical();
        let mut open = self.open();
        let from_ip = open.by_ip.get(&ip).copied().unwrap_or(0);
        let full = if open.total >= self.total {
            Some("all connections are taken")
        } else if from_ip >= self.per_ip {
            Some("this address has all the connections one address may have")
        } else {
            None
        };
        if let Some(why) = full {
            tracing::debug!(target: "api", %ip, why, "connection refused");
            let now = Instant::now();
            if open
                .last_warning
                .is_none_or(|at| now.duration_since(at) >= REFUSAL_WARN_EVERY)
            {
                open.last_warning = Some(now);
                tracing::warn!(
                    target: "api",
                    %ip,
                    why,
                    open = open.total,
                    max = self.total,
                    max_per_ip = self.per_ip,
                    "refusing API connections (closed at once); more are logged at debug"
                );
            }
            return None;
        }
        open.total += 1;
        *open.by_ip.entry(ip).or_insert(0) += 1;
        Some(Slot {
            caps: Arc::clone(self),
            ip,
        })
    }
}

/// One admitted connection; released when the connection is dropped.
struct Slot {
    caps: Arc<Caps>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.caps.open();
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.by_ip.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.by_ip.remove(&self.ip);
            }
        }
    }
}

/// The socket, telling the watchdog about reads and holding its slot.
struct Tracked {
    stream: TcpStream,
    activity: Arc<Activity>,
    _slot: Slot,
}

impl AsyncRead for Tracked {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let res = Pin::new(&mut this.stream).poll_read(cx, buf);
        if matches!(res, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.on_read();
        }
        res
    }
}

impl AsyncWrite for Tracked {
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
