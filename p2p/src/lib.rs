//! # gpuflow-p2p
//!
//! The GPUFlow libp2p network: hosts gossip signed offers, every node keeps a verified offer
//! book, late joiners and renters pull the book page by page.
//!
//! ## Bird's-eye view
//!
//! ```text
//!  node / CLI ──Client (clone)──► bounded mpsc<Command> ──► EventLoop::run (one task)
//!      ▲                                                     │ owns Swarm + OfferBook
//!      └──────────── bounded mpsc<Event> (drop + count when full) ◄┘
//! ```
//!
//! - [`new`] builds the swarm (TCP + QUIC, noise, yamux; identify, ping, Kademlia, gossipsub,
//!   request-response `/gpuflow/book/1`, connection limits per source address, per peer and in
//!   total, a short inbound handshake timeout) and returns the [`Client`] handle,
//!   the [`EventLoop`] worker and the [`Event`] receiver. Spawn `event_loop.run(token)`.
//! - Gossip on `gpuflow/offers/1` is validated by hand before anything is stored or forwarded:
//!   size limit, decode, signature and fields ([`SignedOffer::verify`]), sequence newer than
//!   held, per-peer rate limit. Invalid messages are rejected and count against the sender's
//!   peer score.
//! - [`fetch_book`] is the renter CLI's short-lived peer: dial, sync, shut down.
//! - `/gpuflow/lease/1`: renters ask hosts with [`Client::request_lease`]; a host takes the
//!   inbound requests from [`Client::serve_leases`] and answers each with
//!   [`Client::respond_lease`] (late or missing answers become `timeout`, overflow `busy`).
//!
//! Invariants: only the event loop touches the book; every channel, queue and per-peer map is
//! bounded (see [`Limits`]); nothing from the network is stored before it verifies.
//!
//! [`SignedOffer::verify`]: gpuflow_protocol::offer::SignedOffer::verify

mod behaviour;
mod client;
mod codec;
mod config;
mod error;
mod event;
mod event_loop;
mod fetch;
mod ip_limits;
mod rate;
mod store;

use gpuflow_protocol::book::OfferBook;
use tokio::sync::mpsc;

pub use client::Client;
pub use config::{Limits, P2pConfig, keypair_from_dalek, loopback_quic, loopback_tcp};
pub use error::P2pError;
pub use event::{Event, InboundLease, LeaseToken, Published, RejectReason, Stats, SyncReport};
pub use event_loop::EventLoop;
pub use fetch::fetch_book;
pub use libp2p::{Multiaddr, PeerId, identity::Keypair};

/// Builds a node from `config`, starting with the offers in `book` (e.g. loaded from the
/// node's database). Must be called inside a tokio runtime (listeners bind at once).
///
/// Returns the handle, the worker — which does nothing until `run` is awaited or spawned — and
/// the receiver of [`Event`]s.
pub fn new(
    config: P2pConfig,
    book: OfferBook,
) -> Result<(Client, EventLoop, mpsc::Receiver<Event>), P2pError> {
    let mut swarm = behaviour::build_swarm(&config)?;
    let P2pConfig {
        listen,
        bootstrap,
        limits,
        ..
    } = config;
    for addr in &listen {
        swarm
            .listen_on(addr.clone())
            .map_err(|source| P2pError::Listen {
                addr: addr.clone(),
                source: Box::new(source),
            })?;
    }
    swarm
        .behaviour_mut()
        .gossipsub
        .subscribe(&behaviour::offers_topic())
        .map_err(|e| P2pError::Setup {
            what: "offers topic subscription",
            source: e.to_string().into(),
        })?;

    let (cmd_tx, cmd_rx) = mpsc::channel(limits.command_capacity.max(1));
    let (ev_tx, ev_rx) = mpsc::channel(limits.event_capacity.max(1));
    let peer_id = *swarm.local_peer_id();
    let store = store::Store::new(book, &limits);
    let mut event_loop = EventLoop::new(swarm, cmd_rx, ev_tx, store, limits);
    event_loop.listeners = listen.len();
    event_loop.bootstrap(&bootstrap);
    Ok((Client::new(peer_id, cmd_tx), event_loop, ev_rx))
}
