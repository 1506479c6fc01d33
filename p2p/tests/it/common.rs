//! Test nodes and waiting helpers.

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gpuflow_p2p::{
    Client, Event, Limits, Multiaddr, P2pConfig, PeerId, keypair_from_dalek, loopback_tcp,
};
use gpuflow_protocol::book::OfferBook;
use gpuflow_protocol::offer::fixture::TestHost;
use gpuflow_protocol::offer::{OfferId, SignedOffer, VerifiedOffer};
use libp2p::multiaddr::Protocol;
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, DropGuard};

/// Upper bound for any single wait; generous because CI machines are small and shared.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Awaits `fut`, failing the test with `what` if it takes longer than [`TIMEOUT`].
pub(crate) async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(TIMEOUT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {TIMEOUT:?} waiting for {what}"),
    }
}

/// One running node; its event loop stops when this is dropped.
pub(crate) struct TestNode {
    pub(crate) host: TestHost,
    pub(crate) client: Client,
    pub(crate) events: mpsc::Receiver<Event>,
    /// Its first listen address with `/p2p/<peer id>` appended.
    pub(crate) addr: Multiaddr,
    _stop: DropGuard,
}

/// How a test node is set up.
pub(crate) struct Setup {
    pub(crate) seed: u64,
    pub(crate) listen: Vec<Multiaddr>,
    pub(crate) bootstrap: Vec<Multiaddr>,
    pub(crate) kad_server: bool,
    pub(crate) limits: Limits,
    pub(crate) book: OfferBook,
}

impl Setup {
    /// A DHT server on TCP loopback, test-friendly limits.
    pub(crate) fn server(seed: u64) -> Self {
        Self {
            seed,
            listen: vec![loopback_tcp()],
            bootstrap: Vec::new(),
            kad_server: true,
            limits: test_limits(),
            book: OfferBook::new(),
        }
    }

    /// A DHT client (never in anyone's routing table, so it only knows whom it dials).
    pub(crate) fn client(seed: u64, bootstrap: &TestNode) -> Self {
        Self {
            kad_server: false,
            bootstrap: vec![bootstrap.addr.clone()],
            ..Self::server(seed)
        }
    }

    pub(crate) async fn spawn(self) -> TestNode {
        let host = TestHost::from_seed(self.seed);
        let config = P2pConfig {
            keypair: keypair_from_dalek(&host.key),
            listen: self.listen,
            bootstrap: self.bootstrap,
            kad_server: self.kad_server,
            limits: self.limits,
        };
        let (client, event_loop, events) = gpuflow_p2p::new(config, self.book).unwrap();
        let stop = CancellationToken::new();
        tokio::spawn(event_loop.run(stop.clone()));
        let mut addr = within("a listener", client.listen_addrs()).await.unwrap()[0].clone();
        addr.push(Protocol::P2p(client.peer_id()));
        assert_eq!(
            client.peer_id(),
            host.peer_id(),
            "libp2p identity = node key"
        );
        TestNode {
            host,
            client,
            events,
            addr,
            _stop: stop.drop_guard(),
        }
    }
}

/// Limits for tests: a fast expiry sweep.
pub(crate) fn test_limits() -> Limits {
    Limits {
        sweep_interval: Duration::from_millis(200),
        ..Limits::default()
    }
}

/// A star: node 0 is the hub and DHT server, the others bootstrap from it.
pub(crate) async fn star(n: usize, first_seed: u64) -> Vec<TestNode> {
    let hub = Setup::server(first_seed).spawn().await;
    let mut nodes = vec![hub];
    for i in 1..n {
        let setup = Setup {
            bootstrap: vec![nodes[0].addr.clone()],
            ..Setup::server(first_seed + i as u64)
        };
        nodes.push(setup.spawn().await);
    }
    for node in &nodes {
        within("gossip peers", node.client.wait_for_peers(1, TIMEOUT))
            .await
            .unwrap();
    }
    nodes
}

/// A signed offer `name` from `host` with sequence number `seq`, valid for `ttl` seconds.
pub(crate) fn offer(host: &TestHost, name: &str, seq: u64, ttl: u64) -> SignedOffer {
    let now = now();
    let mut o = host.offer(name, now);
    o.seq = seq;
    o.expires_at = now + ttl;
    host.sign(&o)
}

pub(crate) fn verified(signed: &SignedOffer) -> VerifiedOffer {
    signed.verify(now()).unwrap()
}

/// Reads events until `done` says so; returns every event read, the last included.
pub(crate) async fn until(
    events: &mut mpsc::Receiver<Event>,
    mut done: impl FnMut(&Event) -> bool,
) -> Vec<Event> {
    let mut seen = Vec::new();
    while let Some(e) = events.recv().await {
        let stop = done(&e);
        seen.push(e);
        if stop {
            return seen;
        }
    }
    panic!("event channel closed; events so far: {seen:?}");
}

pub(crate) fn is_stored(e: &Event, id: OfferId, seq: u64) -> bool {
    matches!(e, Event::OfferStored(v) if v.id == id && v.offer.seq == seq)
}

pub(crate) fn is_removed(e: &Event, id: OfferId) -> bool {
    matches!(e, Event::OfferRemoved(r) if *r == id)
}

/// Waits until every node in `nodes` emitted an event matching `pred`.
pub(crate) async fn all_see(
    what: &str,
    nodes: &mut [TestNode],
    pred: impl Fn(&Event) -> bool + Copy,
) {
    let waits = nodes.iter_mut().map(|n| async move {
        until(&mut n.events, pred).await;
    });
    within(what, futures::future::join_all(waits)).await;
}

pub(crate) fn peer_of(addr: &Multiaddr) -> PeerId {
    match addr.iter().last() {
        Some(Protocol::P2p(p)) => p,
        _ => panic!("{addr} has no /p2p/ suffix"),
    }
}
