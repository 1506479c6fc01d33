//! What a node is told at start: its key, where to listen, whom to ask first, and the bounds
//! on every resource a peer can make it spend.

use std::time::Duration;

use ed25519_dalek::SigningKey;
use gpuflow_protocol::wire::{MAX_BOOK_PAGE, MAX_GOSSIP_BYTES};
use libp2p::{Multiaddr, identity::Keypair};

/// Configuration of one p2p node.
#[derive(Clone, Debug)]
pub struct P2pConfig {
    /// Node identity. Hosts pass [`keypair_from_dalek`] of their node key so that the peer id
    /// and the key that signs offers are the same.
    pub keypair: Keypair,
    /// Addresses to listen on, e.g. `/ip4/0.0.0.0/tcp/4001` and `/ip4/0.0.0.0/udp/4001/quic-v1`.
    /// Empty for a client that only dials out (the renter CLI).
    pub listen: Vec<Multiaddr>,
    /// Peers dialled at start and used to seed the Kademlia routing table. Each address must end
    /// in `/p2p/<peer id>` to seed the routing table; ones without it are only dialled.
    pub bootstrap: Vec<Multiaddr>,
    /// Answer Kademlia queries (hosts, public nodes). Clients leave it off so they never enter
    /// other peers' routing tables.
    pub kad_server: bool,
    /// Bounds on connections, queues and rates.
    pub limits: Limits,
}

impl P2pConfig {
    /// A client-mode node with no listeners, no bootstrap peers and default limits.
    pub fn new(keypair: Keypair) -> Self {
        Self {
            keypair,
            listen: Vec::new(),
            bootstrap: Vec::new(),
            kad_server: false,
            limits: Limits::default(),
        }
    }

    /// A server-mode node listening on TCP and QUIC on 127.0.0.1 with OS-assigned ports, for
    /// tests and local development.
    pub fn loopback(keypair: Keypair) -> Self {
        Self {
            listen: vec![loopback_tcp(), loopback_quic()],
            kad_server: true,
            ..Self::new(keypair)
        }
    }
}

/// `/ip4/127.0.0.1/tcp/0`.
pub fn loopback_tcp() -> Multiaddr {
    "/ip4/127.0.0.1/tcp/0"
        .parse()
        .unwrap_or_else(|_| Multiaddr::empty())
}

/// `/ip4/127.0.0.1/udp/0/quic-v1`.
pub fn loopback_quic() -> Multiaddr {
    "/ip4/127.0.0.1/udp/0/quic-v1"
        .parse()
        .unwrap_or_else(|_| Multiaddr::empty())
}

/// Bounds on every resource a peer (or a burst of local calls) can make a node spend. What
/// happens at each bound is said on its field.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Established connections in total, inbound and outbound; a connection over it is closed
    /// as soon as its handshake completes (`connection_limits`).
    pub max_connections: u32,
    /// Established connections to one peer; more are closed after the handshake.
    pub max_connections_per_peer: u32,
    /// Inbound connections from one IPv4 address or IPv6 /64, in their handshake and
    /// established together; a new connection from an address at the cap is closed at accept,
    /// before any handshake. Outbound connections, which this node chose to open, do not count.
    pub max_connections_per_ip: u32,
    /// Incoming connections still in their handshake, in total; more are closed at accept,
    /// before any byte is read. Each is held at most [`Self::inbound_handshake_timeout`].
    pub max_pending_incoming: u32,
    /// Of those, how many may come from one IPv4 address or IPv6 /64; more from that address
    /// are closed at accept, so one address cannot fill [`Self::max_pending_incoming`].
    pub max_pending_incoming_per_ip: u32,
    /// How long an inbound TCP connection may take from accept to an authenticated,
    /// multiplexed connection (multistream-select, noise, yamux); then it is closed and its
    /// pending slot freed. QUIC has its own handshake timeout (5 s). Dials keep the longer
    /// outbound timeout (10 s).
    pub inbound_handshake_timeout: Duration,
    /// Peers found through Kademlia are dialled until this many are connected.
    pub target_peers: usize,
    /// `Client` commands waiting for the event loop; callers wait (`send().await`) when full.
    pub command_capacity: usize,
    /// [`crate::Event`]s waiting for the node; when full, new events are dropped and counted in
    /// [`crate::Stats::dropped_events`] so the swarm never blocks on a slow consumer.
    pub event_capacity: usize,
    /// Outbound book syncs in flight; further `sync_book` calls fail with
    /// [`crate::P2pError::Busy`]. Also the number of concurrent inbound request streams per
    /// connection.
    pub max_pending_requests: usize,
    /// Offers per `/gpuflow/book/1` page, both asked for and answered (capped at
    /// [`MAX_BOOK_PAGE`]).
    pub book_page_size: u32,
    /// Pages one `sync_book` pulls at most; a peer that pages forever is cut off there.
    pub max_sync_pages: u32,
    /// Largest message on the offers topic; bigger ones are dropped by gossipsub and count
    /// against the sender's score.
    pub gossip_message_bytes: usize,
    /// Gossip messages per second accepted from one propagation source, on average; messages
    /// over the rate are ignored (not forwarded, not stored, no score penalty).
    pub gossip_per_sec: u32,
    /// Gossip messages one source may send in a burst above [`Self::gossip_per_sec`].
    pub gossip_burst: u32,
    /// Book pages per second answered for one peer; requests over the rate get no answer.
    pub book_requests_per_sec: u32,
    /// Book pages one peer may ask for in a burst.
    pub book_request_burst: u32,
    /// Offers held in total; new offer ids beyond it are ignored until some expire.
    pub max_offers: usize,
    /// Offers held from one host; its further new offer ids are ignored.
    pub max_offers_per_host: usize,
    /// Withdrawals remembered (so a replayed old offer cannot come back); beyond it a
    /// withdrawal still removes the offer but is not remembered.
    pub max_tombstones: usize,
    /// Inbound lease requests handed to the node and not answered yet; more are answered
    /// `busy` at once. Also the capacity of the channel `Client::serve_leases` returns.
    pub max_pending_leases: usize,
    /// Of those, how many one peer may have; its further requests are answered `busy`, so one
    /// peer cannot lock everyone else out.
    pub max_pending_leases_per_peer: usize,
    /// How long the node has to answer an inbound lease request; then the peer is answered
    /// `timeout` and a late `respond_lease` fails.
    pub lease_answer_timeout: Duration,
    /// How often expired offers are swept from the book.
    pub sweep_interval: Duration,
    /// How long one book page request may take.
    pub request_timeout: Duration,
    /// A connection no protocol uses is closed after this long.
    pub idle_connection_timeout: Duration,
    /// Gossipsub heartbeat (mesh maintenance and lazy gossip).
    pub gossip_heartbeat: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_connections_per_peer: 2,
            max_connections_per_ip: 16,
            max_pending_incoming: 256,
            max_pending_incoming_per_ip: 8,
            inbound_handshake_timeout: Duration::from_secs(4),
            target_peers: 8,
            command_capacity: 64,
            event_capacity: 1024,
            max_pending_requests: 16,
            book_page_size: 128,
            max_sync_pages: 2000,
            gossip_message_bytes: MAX_GOSSIP_BYTES,
            gossip_per_sec: 50,
            gossip_burst: 500,
            book_requests_per_sec: 20,
            book_request_burst: 200,
            max_offers: 200_000,
            max_offers_per_host: 256,
            max_tombstones: 100_000,
            max_pending_leases: 64,
            max_pending_leases_per_peer: 8,
            lease_answer_timeout: Duration::from_secs(10),
            sweep_interval: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            idle_connection_timeout: Duration::from_secs(60),
            gossip_heartbeat: Duration::from_millis(700),
        }
    }
}

impl Limits {
    /// The page size actually used: [`Self::book_page_size`] capped to the protocol maximum,
    /// at least one.
    pub fn page_size(&self) -> u32 {
        self.book_page_size.clamp(1, MAX_BOOK_PAGE)
    }
}

/// The libp2p identity of an ed25519-dalek node key: the same secret, so the peer id is the one
/// [`gpuflow_protocol::offer::peer_id_of`] gives for its verifying key.
pub fn keypair_from_dalek(key: &SigningKey) -> Keypair {
    // Any 32 bytes are a valid ed25519 secret, and the type fixes the length.
    Keypair::ed25519_from_bytes(key.to_bytes()).expect("32 bytes are a valid ed25519 secret")
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpuflow_protocol::offer::fixture::TestHost;

    #[test]
    fn dalek_key_and_libp2p_identity_share_the_peer_id() {
        let host = TestHost::from_seed(9);
        let kp = keypair_from_dalek(&host.key);
        assert_eq!(kp.public().to_peer_id(), host.peer_id());
    }

    #[test]
    fn page_size_is_capped_by_the_protocol() {
        let l = Limits {
            book_page_size: 10_000,
            ..Limits::default()
        };
        assert_eq!(l.page_size(), MAX_BOOK_PAGE);
    }
}
