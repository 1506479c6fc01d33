//! `/gpuflow/lease/1`: inbound requests are handed to the node and answered later through
//! `Client::respond_lease`; outbound requests (renters) wait for the host's answer.
//!
//! The event loop never waits for the node: an inbound request goes to the node's bounded
//! channel with `try_send` and its response channel is parked under a [`LeaseToken`]. The peer
//! gets `busy` at once when the channel or the parked set is full, `unsupported` when no node
//! serves leases, and `timeout` when the node has not answered within
//! [`crate::Limits::lease_answer_timeout`].

use std::collections::{HashMap, VecDeque};

use gpuflow_protocol::wire::{LeaseRequest, LeaseResponse, code};
use libp2p::request_response::{self, Message, OutboundRequestId, ResponseChannel};
use libp2p::{Multiaddr, PeerId};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::debug;

use super::EventLoop;
use crate::error::P2pError;
use crate::event::{InboundLease, LeaseToken};

/// Lease-protocol state of the event loop. Every map is bounded by a limit in
/// [`crate::Limits`].
#[derive(Debug, Default)]
pub(super) struct Leases {
    /// Where inbound requests go; `None` until the node calls `Client::serve_leases`.
    tx: Option<mpsc::Sender<InboundLease>>,
    /// Inbound requests handed to the node and not answered yet.
    waiting: HashMap<LeaseToken, (PeerId, ResponseChannel<LeaseResponse>)>,
    /// When each handed-over request times out, oldest first (all share one timeout, so this is
    /// also deadline order). Entries already answered are skipped when they come due.
    deadlines: VecDeque<(Instant, LeaseToken)>,
    next_token: u64,
    /// Our own requests to hosts, awaiting their answers.
    outbound: HashMap<OutboundRequestId, oneshot::Sender<Result<LeaseResponse, P2pError>>>,
}

impl Leases {
    /// The earliest time a waiting request times out, if any.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.front().map(|(at, _)| *at)
    }
}

impl EventLoop {
    pub(super) fn serve_leases(&mut self, reply: oneshot::Sender<mpsc::Receiver<InboundLease>>) {
        let (tx, rx) = mpsc::channel(self.limits.max_pending_leases.max(1));
        // A new server takes over; requests handed to the old one can still be answered.
        self.leases.tx = Some(tx);
        let _ = reply.send(rx);
    }

    pub(super) fn request_lease(
        &mut self,
        peer: PeerId,
        addr: Option<Multiaddr>,
        request: LeaseRequest,
        reply: oneshot::Sender<Result<LeaseResponse, P2pError>>,
    ) {
        let max = self.limits.max_pending_requests;
        self.leases.outbound.retain(|_, r| !r.is_closed());
        if self.leases.outbound.len() >= max {
            let _ = reply.send(Err(P2pError::Busy { max }));
            return;
        }
        let id = self
            .swarm
            .behaviour_mut()
            .lease
            .send_request_with_addresses(&peer, request, addr.into_iter().collect());
        self.leases.outbound.insert(id, reply);
    }

    pub(super) fn respond_lease(
        &mut self,
        token: LeaseToken,
        response: LeaseResponse,
    ) -> Result<(), P2pError> {
        let (_, channel) = self
            .leases
            .waiting
            .remove(&token)
            .ok_or(P2pError::LeaseNotWaiting { token })?;
        self.swarm
            .behaviour_mut()
            .lease
            .send_response(channel, response)
            .map_err(|_| P2pError::LeaseNotWaiting { token })
    }

    /// Answers `timeout` to every handed-over request whose deadline has passed.
    pub(super) fn expire_leases(&mut self) {
        let now = Instant::now();
        while let Some(&(at, token)) = self.leases.deadlines.front() {
            if at > now {
                break;
            }
            self.leases.deadlines.pop_front();
            if let Some((_, channel)) = self.leases.waiting.remove(&token) {
                debug!(target: "p2p", %token, "lease request not answered in time");
                let message = format!(
                    "the host node did not answer within {:?}; try again",
                    self.limits.lease_answer_timeout
                );
                // Fails only if the peer hung up meanwhile.
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .lease
                    .send_response(channel, LeaseResponse::error(code::TIMEOUT, message));
            }
        }
    }

    fn on_inbound_lease(
        &mut self,
        peer: PeerId,
        request: LeaseRequest,
        channel: ResponseChannel<LeaseResponse>,
    ) {
        let refuse = |this: &mut Self, channel, code: &str, message: &str| {
            let _ = this
                .swarm
                .behaviour_mut()
                .lease
                .send_response(channel, LeaseResponse::error(code, message));
        };
        let Some(tx) = &self.leases.tx else {
            return refuse(
                self,
                channel,
                code::UNSUPPORTED,
                "this node does not serve leases",
            );
        };
        let from_peer = self
            .leases
            .waiting
            .values()
            .filter(|(p, _)| *p == peer)
            .count();
        if self.leases.waiting.len() >= self.limits.max_pending_leases
            || from_peer >= self.limits.max_pending_leases_per_peer
        {
            return refuse(
                self,
                channel,
                code::BUSY,
                "too many lease requests waiting; try again in a few seconds",
            );
        }
        let token = LeaseToken(self.leases.next_token);
        match tx.try_send(InboundLease {
            peer,
            token,
            request,
        }) {
            Ok(()) => {
                self.leases.next_token += 1;
                self.leases.waiting.insert(token, (peer, channel));
                let at = Instant::now() + self.limits.lease_answer_timeout;
                self.leases.deadlines.push_back((at, token));
                // Answered entries stay queued until due; drop them once they pile up, so the
                // queue stays within a few times the waiting bound.
                if self.leases.deadlines.len() > 4 * self.limits.max_pending_leases.max(1) {
                    let waiting = &self.leases.waiting;
                    self.leases
                        .deadlines
                        .retain(|(_, t)| waiting.contains_key(t));
                }
            }
            // The node is behind: refuse now rather than park a request it will not reach.
            Err(mpsc::error::TrySendError::Full(_)) => refuse(
                self,
                channel,
                code::BUSY,
                "the host is busy with other lease requests; try again in a few seconds",
            ),
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.leases.tx = None;
                refuse(
                    self,
                    channel,
                    code::UNSUPPORTED,
                    "this node no longer serves leases",
                );
            }
        }
    }

    pub(super) fn on_lease_event(
        &mut self,
        event: request_response::Event<LeaseRequest, LeaseResponse>,
    ) {
        match event {
            request_response::Event::Message {
                peer,
                message:
                    Message::Request {
                        request, channel, ..
                    },
                ..
            } => self.on_inbound_lease(peer, request, channel),
            request_response::Event::Message {
                message:
                    Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                if let Some(reply) = self.leases.outbound.remove(&request_id) {
                    let _ = reply.send(Ok(response));
                }
            }
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if let Some(reply) = self.leases.outbound.remove(&request_id) {
                    let _ = reply.send(Err(P2pError::LeaseRequest {
                        peer,
                        source: error,
                    }));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                debug!(target: "p2p", %peer, %error, "lease request from peer failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }
}
