//! The handle: a cheap, cloneable [`Client`] that sends [`Command`]s to the event loop over a
//! bounded channel and awaits each answer on a oneshot.

use std::time::Duration;

use gpuflow_protocol::offer::{OfferId, SignedOffer, VerifiedOffer};
use gpuflow_protocol::wire::{LeaseRequest, LeaseResponse, SignedWithdrawal};
use libp2p::{Multiaddr, PeerId};
use tokio::sync::{mpsc, oneshot};

use crate::error::P2pError;
use crate::event::{InboundLease, LeaseToken, Published, Stats, SyncReport};

/// A request to the event loop with the channel for its answer.
#[derive(Debug)]
pub(crate) enum Command {
    ListenAddrs {
        reply: oneshot::Sender<Result<Vec<Multiaddr>, P2pError>>,
    },
    Dial {
        addr: Multiaddr,
        reply: oneshot::Sender<Result<PeerId, P2pError>>,
    },
    ConnectedPeers {
        reply: oneshot::Sender<Vec<PeerId>>,
    },
    Publish {
        offer: SignedOffer,
        reply: oneshot::Sender<Result<Published, P2pError>>,
    },
    Withdraw {
        withdrawal: SignedWithdrawal,
        reply: oneshot::Sender<Result<Published, P2pError>>,
    },
    Book {
        reply: oneshot::Sender<Vec<VerifiedOffer>>,
    },
    Offer {
        id: OfferId,
        reply: oneshot::Sender<Option<VerifiedOffer>>,
    },
    SyncBook {
        peer: PeerId,
        reply: oneshot::Sender<Result<SyncReport, P2pError>>,
    },
    WaitForPeers {
        n: usize,
        reply: oneshot::Sender<()>,
    },
    Stats {
        reply: oneshot::Sender<Stats>,
    },
    ServeLeases {
        reply: oneshot::Sender<mpsc::Receiver<InboundLease>>,
    },
    RequestLease {
        peer: PeerId,
        addr: Option<Multiaddr>,
        request: LeaseRequest,
        reply: oneshot::Sender<Result<LeaseResponse, P2pError>>,
    },
    RespondLease {
        token: LeaseToken,
        response: LeaseResponse,
        reply: oneshot::Sender<Result<(), P2pError>>,
    },
    #[cfg(feature = "test-utils")]
    PublishRaw {
        data: Vec<u8>,
        reply: oneshot::Sender<Result<(), P2pError>>,
    },
}

/// Handle to a running p2p node. Clone it freely; every clone talks to the same event loop.
///
/// Calls wait when the command channel ([`crate::Limits::command_capacity`]) is full, and fail
/// with [`P2pError::Stopped`] once the event loop has ended.
#[derive(Clone, Debug)]
pub struct Client {
    peer_id: PeerId,
    commands: mpsc::Sender<Command>,
}

impl Client {
    pub(crate) fn new(peer_id: PeerId, commands: mpsc::Sender<Command>) -> Self {
        Self { peer_id, commands }
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, P2pError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| P2pError::Stopped)?;
        rx.await.map_err(|_| P2pError::Stopped)
    }

    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The addresses this node listens on, once at least one listener is up. Fails with
    /// [`P2pError::NoListeners`] for a node configured without listen addresses.
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>, P2pError> {
        self.ask(|reply| Command::ListenAddrs { reply }).await?
    }

    /// Dials `addr` and waits until the connection is up; returns the remote peer id. An
    /// address ending in `/p2p/<id>` of a peer already connected returns at once.
    pub async fn dial(&self, addr: Multiaddr) -> Result<PeerId, P2pError> {
        self.ask(|reply| Command::Dial { addr, reply }).await?
    }

    /// Peers with at least one open connection.
    pub async fn connected_peers(&self) -> Result<Vec<PeerId>, P2pError> {
        self.ask(|reply| Command::ConnectedPeers { reply }).await
    }

    /// Verifies `offer`, stores it locally and gossips it. Fails if it does not verify or is
    /// not newer than the held sequence number. With no peers yet it is kept and sent when one
    /// joins ([`Published::NoPeersYet`], not an error).
    pub async fn publish(&self, offer: SignedOffer) -> Result<Published, P2pError> {
        self.ask(|reply| Command::Publish { offer, reply }).await?
    }

    /// Verifies `withdrawal`, removes the offer locally and gossips the withdrawal.
    pub async fn withdraw(&self, withdrawal: SignedWithdrawal) -> Result<Published, P2pError> {
        self.ask(|reply| Command::Withdraw { withdrawal, reply })
            .await?
    }

    /// A snapshot of every offer in the book, in no particular order.
    pub async fn book(&self) -> Result<Vec<VerifiedOffer>, P2pError> {
        self.ask(|reply| Command::Book { reply }).await
    }

    /// The offer with this id, if held.
    pub async fn offer(&self, id: OfferId) -> Result<Option<VerifiedOffer>, P2pError> {
        self.ask(|reply| Command::Offer { id, reply }).await
    }

    /// Pulls `peer`'s whole book over `/gpuflow/book/1`, page by page, verifying and storing
    /// every offer (each stored one also comes out as [`crate::Event::OfferStored`]).
    pub async fn sync_book(&self, peer: PeerId) -> Result<SyncReport, P2pError> {
        self.ask(|reply| Command::SyncBook { peer, reply }).await?
    }

    /// Waits until at least `n` connected peers have joined the offers topic (so a publish
    /// reaches them), or fails with [`P2pError::Timeout`].
    pub async fn wait_for_peers(&self, n: usize, timeout: Duration) -> Result<(), P2pError> {
        let wait = self.ask(|reply| Command::WaitForPeers { n, reply });
        match tokio::time::timeout(timeout, wait).await {
            Ok(r) => r,
            Err(_) => Err(P2pError::Timeout {
                what: "peers on the offers topic",
                after: timeout,
            }),
        }
    }

    /// Starts handing inbound `/gpuflow/lease/1` requests to the caller, through a channel of
    /// [`crate::Limits::max_pending_leases`]; when it is full, peers are answered `busy`. Until
    /// this is called, peers are answered `unsupported`. A second call takes over from the first.
    pub async fn serve_leases(&self) -> Result<mpsc::Receiver<InboundLease>, P2pError> {
        self.ask(|reply| Command::ServeLeases { reply }).await
    }

    /// Answers the inbound lease request `token`. Fails with [`P2pError::LeaseNotWaiting`]
    /// when it already timed out (the peer was told `timeout`) or the peer hung up.
    pub async fn respond_lease(
        &self,
        token: LeaseToken,
        response: LeaseResponse,
    ) -> Result<(), P2pError> {
        self.ask(|reply| Command::RespondLease {
            token,
            response,
            reply,
        })
        .await?
    }

    /// Sends `request` to the host `peer` over `/gpuflow/lease/1` and waits for its answer,
    /// dialling it first if needed (through `addr` when given, else known addresses). Fails
    /// with [`P2pError::Busy`] when [`crate::Limits::max_pending_requests`] requests are in
    /// flight, and [`P2pError::LeaseRequest`] when the host cannot be reached or does not answer
    /// within [`crate::Limits::lease_answer_timeout`] plus [`crate::Limits::request_timeout`].
    /// Refusals by the host come back as `Ok(LeaseResponse::Error { .. })`.
    pub async fn request_lease(
        &self,
        peer: PeerId,
        addr: Option<Multiaddr>,
        request: LeaseRequest,
    ) -> Result<LeaseResponse, P2pError> {
        self.ask(|reply| Command::RequestLease {
            peer,
            addr,
            request,
            reply,
        })
        .await?
    }

    /// Counters and sizes.
    pub async fn stats(&self) -> Result<Stats, P2pError> {
        self.ask(|reply| Command::Stats { reply }).await
    }

    /// Publishes raw bytes on the offers topic without any check: tests use it to play a
    /// misbehaving peer.
    #[cfg(feature = "test-utils")]
    pub async fn publish_raw(&self, data: Vec<u8>) -> Result<(), P2pError> {
        self.ask(|reply| Command::PublishRaw { data, reply })
            .await?
    }
}
