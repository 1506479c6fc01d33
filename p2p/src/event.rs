//! What the event loop tells the node, and what some client calls return.

use gpuflow_protocol::offer::{OfferError, OfferId, VerifiedOffer};
use gpuflow_protocol::wire::{LeaseRequest, WireError};
use libp2p::PeerId;

/// Something the node may want to act on (persist the book, log a misbehaving peer).
///
/// Delivered over a bounded channel of [`crate::Limits::event_capacity`]. When the node does
/// not keep up, new events are dropped and counted in [`Stats::dropped_events`]: the swarm
/// never waits for the node. A node that persists the book from these events should re-read
/// [`crate::Client::book`] when that counter moves.
#[derive(Debug)]
// Nearly every event is an `OfferStored`, so boxing the large variant would save nothing.
#[allow(clippy::large_enum_variant)]
pub enum Event {
    /// An offer was stored: new, or replacing an older sequence number of the same id. Also
    /// sent for offers published through this node's own [`crate::Client::publish`].
    OfferStored(VerifiedOffer),
    /// An offer left the book: withdrawn by its host, or expired.
    OfferRemoved(OfferId),
    /// A connection to a peer opened (first connection to it).
    PeerConnected(PeerId),
    /// The last connection to a peer closed.
    PeerDisconnected(PeerId),
    /// A peer sent something invalid or too much; it was not stored nor forwarded.
    Rejected {
        /// The peer that sent it to us (for gossip: the propagation source, not necessarily
        /// the author).
        peer: PeerId,
        /// What was wrong.
        reason: RejectReason,
    },
}

/// Why a message from a peer was refused.
#[derive(Debug, thiserror::Error)]
pub enum RejectReason {
    /// Not a message of the protocol, or over its size limit.
    #[error("message does not decode: {0}")]
    Malformed(#[source] WireError),
    /// An offer that failed verification (signature, signer, wallet binding, fields).
    #[error("offer refused: {0}")]
    Offer(#[source] OfferError),
    /// A withdrawal that failed verification.
    #[error("withdrawal refused: {0}")]
    Withdrawal(#[source] WireError),
    /// The peer sent gossip faster than [`crate::Limits::gossip_per_sec`] allows.
    #[error("over the per-peer gossip rate limit; message ignored")]
    RateLimited,
}

/// What [`crate::Client::publish`] and [`crate::Client::withdraw`] did with a message after
/// storing it locally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// Handed to gossipsub for at least one peer.
    Gossiped,
    /// No peer on the offers topic yet: kept, and sent as soon as one joins (and on the node's
    /// next re-announce). Not an error: a host may come up before its peers.
    NoPeersYet,
}

/// Result of [`crate::Client::sync_book`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Pages received.
    pub pages: u32,
    /// Offers received.
    pub received: usize,
    /// Offers stored (new, or newer than the one held).
    pub stored: usize,
    /// Offers that failed verification (expired ones included).
    pub rejected: usize,
    /// False when the sync stopped at [`crate::Limits::max_sync_pages`] with pages left.
    pub complete: bool,
}

/// Counters and sizes, for logs and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Peers with at least one connection.
    pub connected_peers: usize,
    /// Connected peers subscribed to the offers topic.
    pub gossip_peers: usize,
    /// Offers in the book.
    pub offers: usize,
    /// Events dropped because the event channel was full.
    pub dropped_events: u64,
    /// Gossip messages rejected as invalid (and penalised).
    pub rejected_messages: u64,
    /// Gossip messages ignored for the per-peer rate limit.
    pub rate_limited: u64,
}

/// Names one inbound lease request until the node answers it with
/// [`crate::Client::respond_lease`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeaseToken(pub(crate) u64);

impl std::fmt::Display for LeaseToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "lease-request-{}", self.0)
    }
}

/// A `/gpuflow/lease/1` request from a peer, handed to the node (see
/// [`crate::Client::serve_leases`]). Answer it with [`crate::Client::respond_lease`] within
/// [`crate::Limits::lease_answer_timeout`]; after that the peer has already been told `timeout`.
#[derive(Debug)]
pub struct InboundLease {
    /// Who asked (already authenticated by the connection's noise handshake).
    pub peer: PeerId,
    /// Pass it back to `respond_lease`.
    pub token: LeaseToken,
    /// What they asked.
    pub request: LeaseRequest,
}
