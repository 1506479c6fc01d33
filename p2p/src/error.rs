//! Errors of the p2p layer. Each message says what went wrong and what to do about it.

use std::time::Duration;

use gpuflow_protocol::offer::{OfferError, OfferId};
use gpuflow_protocol::wire::WireError;
use libp2p::{Multiaddr, PeerId, TransportError, gossipsub, request_response, swarm::DialError};

use crate::event::LeaseToken;

/// Why a p2p operation failed.
#[derive(Debug, thiserror::Error)]
pub enum P2pError {
    /// Building the swarm failed (transport, security or behaviour setup).
    #[error("cannot set up the p2p {what}: {source}")]
    Setup {
        /// The part that failed.
        what: &'static str,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A listen address was refused.
    #[error("cannot listen on {addr}: {source}; is the port in use? pick another listen address")]
    Listen {
        /// The address.
        addr: Multiaddr,
        /// The cause.
        #[source]
        source: Box<TransportError<std::io::Error>>,
    },
    /// This node was configured without listen addresses.
    #[error("this node listens on no address; configure at least one listen address")]
    NoListeners,
    /// Dialling a peer failed.
    #[error("could not dial {addr}: {source}; is a node running there?")]
    Dial {
        /// The address dialled.
        addr: String,
        /// The cause (boxed: it is large and errors are rare).
        #[source]
        source: Box<DialError>,
    },
    /// The event loop is gone (shut down or panicked); the handle is useless now.
    #[error("the p2p event loop has stopped; restart the node")]
    Stopped,
    /// Waited too long.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: &'static str,
        /// How long.
        after: Duration,
    },
    /// A local offer did not verify.
    #[error("offer refused: {0}")]
    Offer(#[from] OfferError),
    /// A local withdrawal did not verify, or a peer's message did not decode.
    #[error("message refused: {0}")]
    Wire(#[from] WireError),
    /// A local offer is not newer than the one held.
    #[error(
        "offer {id} has seq {seq} but seq {held} is already held (or withdrawn); publish it with a higher seq"
    )]
    Stale {
        /// The offer.
        id: OfferId,
        /// Its sequence number.
        seq: u64,
        /// The sequence number held or withdrawn.
        held: u64,
    },
    /// The book is at one of its limits.
    #[error(
        "offer {id} not stored: the book already holds {limit} offers {scope}; withdraw some first"
    )]
    BookFull {
        /// The offer.
        id: OfferId,
        /// The limit reached.
        limit: usize,
        /// "in total" or "from this host".
        scope: &'static str,
    },
    /// Gossipsub refused to publish.
    #[error("gossip publish failed: {0}")]
    Publish(#[source] gossipsub::PublishError),
    /// Too many book syncs in flight.
    #[error("{max} book syncs are already running; wait for one to finish")]
    Busy {
        /// The limit.
        max: usize,
    },
    /// A book page request to a peer failed.
    #[error("book request to {peer} failed: {source}")]
    Request {
        /// The peer asked.
        peer: PeerId,
        /// The cause.
        #[source]
        source: request_response::OutboundFailure,
    },
    /// A peer answered a book request with nonsense.
    #[error("peer {peer} sent a bad book page: {why}")]
    BadPage {
        /// The peer.
        peer: PeerId,
        /// What is wrong.
        why: &'static str,
    },
    /// A lease request to a host failed (unreachable, protocol unsupported, timed out).
    #[error("lease request to {peer} failed: {source}; is the host online?")]
    LeaseRequest {
        /// The host asked.
        peer: PeerId,
        /// The cause.
        #[source]
        source: request_response::OutboundFailure,
    },
    /// `respond_lease` came too late: the request timed out or the peer hung up.
    #[error(
        "{token} is no longer waiting for an answer (timed out or the peer hung up); \
         answer within Limits::lease_answer_timeout"
    )]
    LeaseNotWaiting {
        /// The request's token.
        token: LeaseToken,
    },
    /// `fetch_book` was given no bootstrap peers.
    #[error("no bootstrap peers given; pass --bootstrap /ip4/<ip>/tcp/<port>/p2p/<peer id>")]
    NoBootstrap,
    /// No bootstrap peer answered `fetch_book`.
    #[error(
        "no bootstrap peer answered at {}; is a node running? pass --bootstrap",
        join(.addrs)
    )]
    NoBootstrapAnswered {
        /// The addresses tried.
        addrs: Vec<Multiaddr>,
    },
}

fn join(addrs: &[Multiaddr]) -> String {
    addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
