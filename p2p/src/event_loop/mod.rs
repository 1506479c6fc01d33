//! The worker: one task that owns the swarm and the offer book, and `select!`s over swarm
//! events, client commands and the expiry timer. Nothing else touches the book, so it needs
//! no lock.

mod gossip;
mod lease;
mod sync;

use std::collections::{HashMap, HashSet};
use std::time::{SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use gpuflow_protocol::offer::{OfferId, VerifiedOffer};
use libp2p::gossipsub::IdentTopic;
use libp2p::multiaddr::Protocol;
use libp2p::request_response::OutboundRequestId;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, identify, kad};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::behaviour::{Behaviour, BehaviourEvent, KAD_PROTOCOL};
use crate::client::Command;
use crate::config::Limits;
use crate::error::P2pError;
use crate::event::{Event, Stats};
use crate::rate::RateLimiter;
use crate::store::Store;

/// Unix seconds now. Offer expiry is in unix seconds, so this is the clock that matters.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The bounded event channel towards the node, which never blocks the swarm.
struct EventSink {
    tx: mpsc::Sender<Event>,
    dropped: u64,
}

impl EventSink {
    fn emit(&mut self, event: Event) {
        match self.tx.try_send(event) {
            Ok(()) => {}
            // The node is behind: drop and count rather than stall gossip for everyone.
            Err(mpsc::error::TrySendError::Full(e)) => {
                self.dropped += 1;
                debug!(target: "p2p", dropped = self.dropped, event = ?e, "event channel full");
            }
            // Nobody listens (e.g. `fetch_book`): nothing to do.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

/// Runs the p2p node; see [`EventLoop::run`].
#[must_use = "the p2p node does nothing until EventLoop::run is awaited or spawned"]
pub struct EventLoop {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    events: EventSink,
    store: Store,
    limits: Limits,
    topic: IdentTopic,
    listen_addrs: Vec<Multiaddr>,
    /// Listeners opened and not closed; with none, `listen_addrs` callers are not kept waiting.
    pub(crate) listeners: usize,
    /// Callers of `listen_addrs` waiting for the first listener.
    listen_waiters: Vec<oneshot::Sender<Result<Vec<Multiaddr>, P2pError>>>,
    /// Callers of `wait_for_peers`: (how many, reply).
    peer_waiters: Vec<(usize, oneshot::Sender<()>)>,
    /// Connected peers subscribed to the offers topic.
    gossip_peers: HashSet<PeerId>,
    pending_dials: HashMap<ConnectionId, (Multiaddr, oneshot::Sender<Result<PeerId, P2pError>>)>,
    pending_syncs: HashMap<OutboundRequestId, sync::SyncState>,
    /// Local messages published while no peer was on the topic, by offer id; sent when one
    /// joins. At most `max_offers_per_host` entries (a node's own offers are bounded by that).
    unsent: HashMap<OfferId, Vec<u8>>,
    gossip_rate: RateLimiter<PeerId>,
    book_rate: RateLimiter<PeerId>,
    rejected_messages: u64,
    rate_limited: u64,
    leases: lease::Leases,
}

impl EventLoop {
    pub(crate) fn new(
        swarm: Swarm<Behaviour>,
        commands: mpsc::Receiver<Command>,
        events: mpsc::Sender<Event>,
        store: Store,
        limits: Limits,
    ) -> Self {
        Self {
            swarm,
            commands,
            events: EventSink {
                tx: events,
                dropped: 0,
            },
            store,
            gossip_rate: RateLimiter::new(limits.gossip_per_sec, limits.gossip_burst),
            book_rate: RateLimiter::new(limits.book_requests_per_sec, limits.book_request_burst),
            limits,
            topic: crate::behaviour::offers_topic(),
            listen_addrs: Vec::new(),
            listeners: 0,
            listen_waiters: Vec::new(),
            peer_waiters: Vec::new(),
            gossip_peers: HashSet::new(),
            pending_dials: HashMap::new(),
            pending_syncs: HashMap::new(),
            unsent: HashMap::new(),
            rejected_messages: 0,
            rate_limited: 0,
            leases: lease::Leases::default(),
        }
    }

    /// Runs until `shutdown` is cancelled. Connections close when the swarm is dropped on
    /// return. Pending client calls then fail with [`P2pError::Stopped`].
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut sweep = tokio::time::interval(self.limits.sweep_interval);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let lease_deadline = self.leases.next_deadline();
            tokio::select! {
                () = shutdown.cancelled() => break,
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                // With every `Client` dropped this branch is disabled; gossip goes on until
                // shutdown.
                Some(cmd) = self.commands.recv() => self.on_command(cmd),
                _ = sweep.tick() => self.sweep(),
                () = tokio::time::sleep_until(lease_deadline.unwrap_or_else(tokio::time::Instant::now)),
                    if lease_deadline.is_some() => self.expire_leases(),
            }
        }
        info!(target: "p2p", peer = %self.swarm.local_peer_id(), "p2p event loop stopped");
    }

    fn sweep(&mut self) {
        for id in self.store.sweep(unix_now()) {
            debug!(target: "p2p", offer = %id, "offer expired");
            self.events.emit(Event::OfferRemoved(id));
        }
    }

    fn stored(&mut self, v: VerifiedOffer) {
        self.events.emit(Event::OfferStored(v));
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::ListenAddrs { reply } => {
                if !self.listen_addrs.is_empty() {
                    let _ = reply.send(Ok(self.listen_addrs.clone()));
                } else if self.listeners == 0 {
                    let _ = reply.send(Err(P2pError::NoListeners));
                } else {
                    self.listen_waiters.retain(|w| !w.is_closed());
                    self.listen_waiters.push(reply);
                }
            }
            Command::Dial { addr, reply } => self.dial(addr, reply),
            Command::ConnectedPeers { reply } => {
                let _ = reply.send(self.swarm.connected_peers().copied().collect());
            }
            Command::Publish { offer, reply } => {
                let _ = reply.send(self.publish_local(offer));
            }
            Command::Withdraw { withdrawal, reply } => {
                let _ = reply.send(self.withdraw_local(withdrawal));
            }
            Command::Book { reply } => {
                let _ = reply.send(self.store.book().iter().cloned().collect());
            }
            Command::Offer { id, reply } => {
                let _ = reply.send(self.store.book().get(&id).cloned());
            }
            Command::SyncBook { peer, reply } => self.start_sync(peer, reply),
            Command::WaitForPeers { n, reply } => {
                if self.gossip_peers.len() >= n {
                    let _ = reply.send(());
                } else {
                    self.peer_waiters.retain(|(_, w)| !w.is_closed());
                    self.peer_waiters.push((n, reply));
                }
            }
            Command::Stats { reply } => {
                let _ = reply.send(Stats {
                    connected_peers: self.swarm.connected_peers().count(),
                    gossip_peers: self.gossip_peers.len(),
                    offers: self.store.book().len(),
                    dropped_events: self.events.dropped,
                    rejected_messages: self.rejected_messages,
                    rate_limited: self.rate_limited,
                });
            }
            Command::ServeLeases { reply } => self.serve_leases(reply),
            Command::RequestLease {
                peer,
                addr,
                request,
                reply,
            } => self.request_lease(peer, addr, request, reply),
            Command::RespondLease {
                token,
                response,
                reply,
            } => {
                let _ = reply.send(self.respond_lease(token, response));
            }
            #[cfg(feature = "test-utils")]
            Command::PublishRaw { data, reply } => {
                let r = self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .publish(self.topic.clone(), data);
                let _ = reply.send(r.map(|_| ()).map_err(P2pError::Publish));
            }
        }
    }

    fn dial(&mut self, addr: Multiaddr, reply: oneshot::Sender<Result<PeerId, P2pError>>) {
        let opts = match peer_of(&addr) {
            Some(peer) if self.swarm.is_connected(&peer) => {
                let _ = reply.send(Ok(peer));
                return;
            }
            Some(peer) => DialOpts::peer_id(peer)
                .addresses(vec![addr.clone()])
                .condition(PeerCondition::Always)
                .build(),
            None => DialOpts::unknown_peer_id().address(addr.clone()).build(),
        };
        let id = opts.connection_id();
        match self.swarm.dial(opts) {
            Ok(()) => {
                self.pending_dials.insert(id, (addr, reply));
            }
            Err(source) => {
                let _ = reply.send(Err(P2pError::Dial {
                    addr: addr.to_string(),
                    source: Box::new(source),
                }));
            }
        }
    }

    /// Dials the configured bootstrap peers and starts a Kademlia bootstrap through them.
    pub(crate) fn bootstrap(&mut self, peers: &[Multiaddr]) {
        for addr in peers {
            if let Some(peer) = peer_of(addr) {
                let mut bare = addr.clone();
                bare.pop();
                self.swarm.behaviour_mut().kad.add_address(&peer, bare);
            }
            if let Err(e) = self.swarm.dial(addr.clone()) {
                warn!(target: "p2p", %addr, error = %e, "cannot dial bootstrap peer");
            }
        }
        // Fails only with no known peer (no bootstrap address carried a peer id): nothing to do.
        let _ = self.swarm.behaviour_mut().kad.bootstrap();
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(ev) => self.on_behaviour_event(ev),
            SwarmEvent::NewListenAddr { address, .. } => {
                info!(target: "p2p", %address, "listening");
                self.listen_addrs.push(address);
                for w in self.listen_waiters.drain(..) {
                    let _ = w.send(Ok(self.listen_addrs.clone()));
                }
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.listen_addrs.retain(|a| *a != address);
            }
            SwarmEvent::ListenerClosed {
                addresses, reason, ..
            } => {
                warn!(target: "p2p", ?addresses, ?reason, "listener closed");
                self.listeners = self.listeners.saturating_sub(1);
                self.listen_addrs.retain(|a| !addresses.contains(a));
                if self.listeners == 0 {
                    for w in self.listen_waiters.drain(..) {
                        let _ = w.send(Err(P2pError::NoListeners));
                    }
                }
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                num_established,
                ..
            } => {
                if let Some((_, reply)) = self.pending_dials.remove(&connection_id) {
                    let _ = reply.send(Ok(peer_id));
                }
                if num_established.get() == 1 {
                    debug!(target: "p2p", peer = %peer_id, "peer connected");
                    self.events.emit(Event::PeerConnected(peer_id));
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                debug!(target: "p2p", peer = %peer_id, "peer disconnected");
                self.gossip_peers.remove(&peer_id);
                self.gossip_rate.remove(&peer_id);
                self.book_rate.remove(&peer_id);
                self.events.emit(Event::PeerDisconnected(peer_id));
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                error,
                peer_id,
            } => {
                if let Some((addr, reply)) = self.pending_dials.remove(&connection_id) {
                    let _ = reply.send(Err(P2pError::Dial {
                        addr: addr.to_string(),
                        source: Box::new(error),
                    }));
                } else {
                    debug!(target: "p2p", peer = ?peer_id, %error, "outgoing connection failed");
                }
            }
            _ => {}
        }
    }

    fn on_behaviour_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Gossipsub(ev) => self.on_gossip_event(ev),
            BehaviourEvent::Book(ev) => self.on_book_event(ev),
            BehaviourEvent::Lease(ev) => self.on_lease_event(ev),
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                self.on_identified(peer_id, info);
            }
            BehaviourEvent::Kad(kad::Event::RoutingUpdated { peer, .. }) => {
                self.on_discovered(peer)
            }
            _ => {}
        }
    }

    fn on_identified(&mut self, peer: PeerId, info: identify::Info) {
        // Only GPUFlow DHT servers go into the routing table.
        if info.protocols.contains(&KAD_PROTOCOL) {
            for addr in info.listen_addrs {
                self.swarm.behaviour_mut().kad.add_address(&peer, addr);
            }
        }
    }

    /// Discovery: connect to newly found peers until there are enough for a healthy gossip
    /// mesh; the connection limits cap the rest.
    fn on_discovered(&mut self, peer: PeerId) {
        if self.swarm.is_connected(&peer)
            || self.swarm.connected_peers().count() >= self.limits.target_peers
        {
            return;
        }
        let opts = DialOpts::peer_id(peer)
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .build();
        if let Err(e) = self.swarm.dial(opts) {
            debug!(target: "p2p", %peer, error = %e, "cannot dial discovered peer");
        }
    }

    fn wake_peer_waiters(&mut self) {
        let have = self.gossip_peers.len();
        let (ready, waiting): (Vec<_>, Vec<_>) =
            self.peer_waiters.drain(..).partition(|(n, _)| have >= *n);
        self.peer_waiters = waiting;
        for (_, w) in ready {
            let _ = w.send(());
        }
    }
}

/// The peer id at the end of an address (`…/p2p/<id>`), if any.
pub(crate) fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    match addr.iter().last() {
        Some(Protocol::P2p(peer)) => Some(peer),
        _ => None,
    }
}
