//! Offer gossip: validation of every message before gossipsub may forward it, and local
//! publishing.
//!
//! Validation verdicts: `Accept` (stored or applied; gossipsub forwards it), `Reject` (invalid:
//! bad encoding, signature, signer, binding or fields; penalises the propagation source through
//! peer scoring), `Ignore` (valid but not news — stale, duplicate, expired, over the book or
//! rate limits; dropped without penalty, since honest peers send these too).

use gpuflow_protocol::offer::{OfferError, OfferId, SignedOffer};
use gpuflow_protocol::wire::{GossipMessage, SignedWithdrawal, WireError};
use libp2p::PeerId;
use libp2p::gossipsub::{self, MessageAcceptance, PublishError};
use tracing::{debug, warn};

use super::{EventLoop, unix_now};
use crate::error::P2pError;
use crate::event::{Event, Published, RejectReason};
use crate::store::{Refused, Withdrawn};

/// Clock trouble rather than malice: an honest forwarder may pass these on.
fn is_clock_issue(e: &OfferError) -> bool {
    matches!(
        e,
        OfferError::Expired { .. }
            | OfferError::Field {
                field: "issued_at",
                ..
            }
    )
}

impl EventLoop {
    pub(super) fn on_gossip_event(&mut self, event: gossipsub::Event) {
        match event {
            gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            } => {
                let verdict = if self
                    .gossip_rate
                    .try_take(propagation_source, tokio::time::Instant::now())
                {
                    self.validate(propagation_source, &message.data)
                } else {
                    self.rate_limited += 1;
                    self.reject_event(propagation_source, RejectReason::RateLimited);
                    MessageAcceptance::Ignore
                };
                if matches!(verdict, MessageAcceptance::Reject) {
                    self.rejected_messages += 1;
                }
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&message_id, &propagation_source, verdict);
            }
            gossipsub::Event::Subscribed { peer_id, topic } if topic == self.topic.hash() => {
                self.gossip_peers.insert(peer_id);
                self.wake_peer_waiters();
                self.flush_unsent();
            }
            gossipsub::Event::Unsubscribed { peer_id, topic } if topic == self.topic.hash() => {
                self.gossip_peers.remove(&peer_id);
            }
            _ => {}
        }
    }

    fn reject_event(&mut self, peer: PeerId, reason: RejectReason) {
        debug!(target: "p2p", %peer, %reason, "gossip message refused");
        self.events.emit(Event::Rejected { peer, reason });
    }

    fn validate(&mut self, source: PeerId, data: &[u8]) -> MessageAcceptance {
        let now = unix_now();
        let msg = match GossipMessage::decode(data) {
            Ok(m) => m,
            Err(e) => {
                self.reject_event(source, RejectReason::Malformed(e));
                return MessageAcceptance::Reject;
            }
        };
        match msg {
            GossipMessage::Offer(signed) => match signed.verify(now) {
                Err(e) if is_clock_issue(&e) => MessageAcceptance::Ignore,
                Err(e) => {
                    self.reject_event(source, RejectReason::Offer(e));
                    MessageAcceptance::Reject
                }
                Ok(v) => match self.store.insert(v.clone()) {
                    Ok(_) => {
                        self.stored(v);
                        MessageAcceptance::Accept
                    }
                    Err(refused) => {
                        debug!(target: "p2p", offer = %v.id, ?refused, "offer not stored");
                        MessageAcceptance::Ignore
                    }
                },
            },
            GossipMessage::Withdraw(signed) => match signed.verify(now) {
                Err(WireError::StaleWithdrawal { .. }) => MessageAcceptance::Ignore,
                Err(WireError::Offer(ref e)) if is_clock_issue(e) => MessageAcceptance::Ignore,
                Err(e) => {
                    self.reject_event(source, RejectReason::Withdrawal(e));
                    MessageAcceptance::Reject
                }
                Ok(w) => match self.store.withdraw(&w) {
                    Withdrawn::Removed => {
                        self.events.emit(Event::OfferRemoved(w.id));
                        MessageAcceptance::Accept
                    }
                    Withdrawn::NotHeld => MessageAcceptance::Accept,
                    Withdrawn::Stale => MessageAcceptance::Ignore,
                },
            },
        }
    }

    /// `Client::publish`: verify, store, gossip.
    pub(super) fn publish_local(&mut self, signed: SignedOffer) -> Result<Published, P2pError> {
        let v = signed.verify(unix_now())?;
        let id = v.id;
        let bytes = GossipMessage::Offer(signed).encode();
        if bytes.len() > self.limits.gossip_message_bytes {
            return Err(P2pError::Wire(WireError::TooLarge {
                len: bytes.len(),
                max: self.limits.gossip_message_bytes,
            }));
        }
        let seq = v.offer.seq;
        match self.store.insert(v.clone()) {
            Ok(_) => self.stored(v),
            Err(Refused::Stale { held } | Refused::Withdrawn { seq: held }) => {
                return Err(P2pError::Stale { id, seq, held });
            }
            Err(Refused::Full { limit, scope }) => {
                return Err(P2pError::BookFull { id, limit, scope });
            }
        }
        self.gossip_local(id, bytes)
    }

    /// `Client::withdraw`: verify, remove locally, gossip.
    pub(super) fn withdraw_local(
        &mut self,
        signed: SignedWithdrawal,
    ) -> Result<Published, P2pError> {
        let w = signed.verify(unix_now())?;
        if let Some(held) = self.store.book().get(&w.id)
            && held.offer.seq > w.seq
        {
            return Err(P2pError::Stale {
                id: w.id,
                seq: w.seq,
                held: held.offer.seq,
            });
        }
        if self.store.withdraw(&w) == Withdrawn::Removed {
            self.events.emit(Event::OfferRemoved(w.id));
        }
        self.gossip_local(w.id, GossipMessage::Withdraw(signed).encode())
    }

    fn gossip_local(&mut self, id: OfferId, msg: Vec<u8>) -> Result<Published, P2pError> {
        let topic = self.topic.clone();
        match self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(topic, msg.clone())
        {
            // `Duplicate`: these very bytes went out already (a re-announce of the same seq).
            Ok(_) | Err(PublishError::Duplicate) => {
                // A newer message for this offer supersedes whatever was waiting.
                self.unsent.remove(&id);
                Ok(Published::Gossiped)
            }
            Err(PublishError::NoPeersSubscribedToTopic | PublishError::AllQueuesFull(_)) => {
                if self.unsent.len() < self.limits.max_offers_per_host
                    || self.unsent.contains_key(&id)
                {
                    self.unsent.insert(id, msg);
                }
                Ok(Published::NoPeersYet)
            }
            Err(e) => Err(P2pError::Publish(e)),
        }
    }

    /// Sends what was published while no peer was on the topic.
    fn flush_unsent(&mut self) {
        if self.unsent.is_empty() {
            return;
        }
        let topic = self.topic.clone();
        let unsent = std::mem::take(&mut self.unsent);
        for (id, msg) in unsent {
            match self
                .swarm
                .behaviour_mut()
                .gossipsub
                .publish(topic.clone(), msg.clone())
            {
                Ok(_) => debug!(target: "p2p", offer = %id, "sent offer kept while alone"),
                Err(PublishError::NoPeersSubscribedToTopic | PublishError::AllQueuesFull(_)) => {
                    self.unsent.insert(id, msg);
                }
                Err(e) => warn!(target: "p2p", offer = %id, error = %e, "cannot send kept offer"),
            }
        }
    }
}
