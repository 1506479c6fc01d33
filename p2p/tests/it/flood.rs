//! Idle TCP sockets from one address (review D3, issue 14): they must neither lock renters out
//! nor hold a host's handshake slots for long.
//!
//! The flood comes from 127.0.0.2 (Linux routes all of 127.0.0.0/8 to `lo`); the renters are
//! real libp2p peers dialling from 127.0.0.1. It is this way round because libp2p's TCP
//! transport cannot choose a dial's source address (with port reuse it binds the unspecified
//! address), while a raw socket can bind any loopback address before it connects.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use gpuflow_p2p::{Limits, Multiaddr, P2pError, fetch_book};
use gpuflow_protocol::book::OfferBook;
use gpuflow_protocol::offer::fixture::TestHost;
use gpuflow_protocol::wire::{LeaseRequest, LeaseResponse};
use libp2p::multiaddr::Protocol;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, TcpStream};

use crate::common::*;

/// The flooder's address.
const FLOODER: [u8; 4] = [127, 0, 0, 2];
/// Idle sockets the flooder holds open: twice today's global pending limit (32), well over the
/// per-address one.
const SOCKETS: usize = 64;
/// Added to the handshake timeout before a socket still open counts as held too long.
const SLACK: Duration = Duration::from_secs(4);

/// The host's TCP port in `addr` (`/ip4/127.0.0.1/tcp/<port>/p2p/<id>`).
fn tcp_port(addr: &Multiaddr) -> u16 {
    addr.iter()
        .find_map(|p| match p {
            Protocol::Tcp(port) => Some(port),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{addr} is not a TCP address"))
}

/// A TCP connection from the flooder's address to 127.0.0.1:`port` that never sends a byte.
async fn idle_socket(port: u16) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((FLOODER, 0))).unwrap();
    socket
        .connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .unwrap()
}

/// How long after `opened` the host closed `stream` (EOF or reset), or `None` if it was still
/// open `bound` after `opened`. Reads whatever the host sends; the deadline bounds the loop.
async fn closed_after(mut stream: TcpStream, opened: Instant, bound: Duration) -> Option<Duration> {
    let deadline = tokio::time::Instant::from_std(opened + bound);
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(opened.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// A request on `/gpuflow/lease/1`, the protocol `rent` speaks; which one does not matter to
/// the transport.
fn lease_request() -> LeaseRequest {
    LeaseRequest::Status {
        lease_id: Default::default(),
    }
}

/// The attack of review D3, bounded: one address opens 64 idle sockets to a host (default
/// limits), then a renter searches (the CLI's `fetch_book`) and sends a lease request (another
/// node's `request_lease`, as `rent` does) through that host. Both must go through, and the
/// idle sockets must be gone within the inbound handshake timeout plus slack, those over the
/// per-address cap at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sockets_from_one_address_do_not_lock_renters_out() {
    let limits = Limits::default();
    let handshake = limits.inbound_handshake_timeout;
    let per_ip = usize::try_from(limits.max_pending_incoming_per_ip).unwrap();

    let seller = TestHost::from_seed(950);
    let mut book = OfferBook::new();
    for i in 0..3 {
        book.insert(verified(&offer(&seller, &format!("o{i}"), 1, 600)));
    }
    let host = Setup {
        book,
        ..Setup::server(951)
    }
    .spawn()
    .await;
    // The host answers every lease request with an ack.
    let mut inbound = host.client.serve_leases().await.unwrap();
    let answering = host.client.clone();
    tokio::spawn(async move {
        while let Some(req) = inbound.recv().await {
            let _ = answering.respond_lease(req.token, LeaseResponse::Ack).await;
        }
    });
    // Started before the flood, so its own set-up time does not count; it has not dialled the
    // host yet.
    let renter = Setup::server(952).spawn().await;

    // The flood: every socket is connected (in the host's accept queue) before any renter dials.
    let port = tcp_port(&host.addr);
    let mut watchers = Vec::with_capacity(SOCKETS);
    for _ in 0..SOCKETS {
        let stream = idle_socket(port).await;
        let opened = Instant::now();
        watchers.push(tokio::spawn(closed_after(
            stream,
            opened,
            handshake + SLACK,
        )));
    }

    // (a) Search and lease request through the flooded host.
    let (search, lease) = within("search and lease request while flooded", async {
        tokio::join!(
            fetch_book(std::slice::from_ref(&host.addr), Duration::from_secs(20)),
            renter.client.request_lease(
                host.client.peer_id(),
                Some(host.addr.clone()),
                lease_request()
            ),
        )
    })
    .await;
    let search: Result<Vec<_>, P2pError> = search;
    assert!(
        matches!(&search, Ok(offers) if offers.len() == 3)
            && matches!(&lease, Ok(LeaseResponse::Ack)),
        "with {SOCKETS} idle sockets open from {FLOODER:?}, renters on 127.0.0.1 were locked \
         out: search {:?}, lease request {lease:?}",
        search.as_ref().map(Vec::len),
    );

    // (b) The host closes every idle socket: over the per-address cap at once, the others at
    // the handshake timeout.
    let (mut at_once, mut held, mut open) = (0, 0, 0);
    for w in watchers {
        match w.await.unwrap() {
            // A held socket is closed by the timeout, which starts at accept: never before it.
            Some(after) if after < handshake / 2 => at_once += 1,
            Some(_) => held += 1,
            None => open += 1,
        }
    }
    assert_eq!(
        open,
        0,
        "{open} idle sockets were still open {:?} after they connected (handshake timeout \
         {handshake:?} + {SLACK:?}); {at_once} closed at once, {held} at the timeout",
        handshake + SLACK
    );
    assert!(
        held <= per_ip,
        "{held} idle sockets from one address were held until the handshake timeout; the cap \
         per address is {per_ip} ({at_once} closed at once)"
    );
    assert!(
        held > 0,
        "no idle socket got a handshake slot, so the handshake timeout was not exercised"
    );
    assert_eq!(at_once + held, SOCKETS);
}

/// Established inbound connections from one address are capped: a peer over the cap is refused
/// before its handshake (its dial fails), and a slot comes back when a connection closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn established_connections_from_one_address_are_capped() {
    let mut host = Setup {
        limits: Limits {
            max_connections_per_ip: 2,
            ..test_limits()
        },
        ..Setup::server(960)
    }
    .spawn()
    .await;
    let first = Setup::server(961).spawn().await;
    let second = Setup::server(962).spawn().await;
    let third = Setup::server(963).spawn().await;
    for peer in [&first, &second] {
        within("a dial under the cap", peer.client.dial(host.addr.clone()))
            .await
            .unwrap();
    }
    let refused = within("a dial over the cap", third.client.dial(host.addr.clone())).await;
    assert!(
        matches!(refused, Err(P2pError::Dial { .. })),
        "a third connection from 127.0.0.1 got through: {refused:?}"
    );

    // The first peer goes away: its slot is free again.
    let gone = first.client.peer_id();
    drop(first);
    within(
        "the host to see the first peer leave",
        until(
            &mut host.events,
            |e| matches!(e, gpuflow_p2p::Event::PeerDisconnected(p) if *p == gone),
        ),
    )
    .await;
    let peer = within(
        "a dial after a slot was freed",
        third.client.dial(host.addr.clone()),
    )
    .await
    .unwrap();
    assert_eq!(peer, host.client.peer_id());
}
