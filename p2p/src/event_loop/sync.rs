//! `/gpuflow/book/1`: answering page requests from the local book, and pulling a peer's book
//! page by page for `Client::sync_book`.

use gpuflow_protocol::offer::{OfferError, OfferId};
use gpuflow_protocol::wire::{BookRequest, BookResponse, MAX_BOOK_PAGE};
use libp2p::PeerId;
use libp2p::request_response::{self, Message};
use tokio::sync::oneshot;
use tracing::debug;

use super::{EventLoop, unix_now};
use crate::error::P2pError;
use crate::event::{Event, RejectReason, SyncReport};

/// One `sync_book` in flight: whom we ask, where we are, what to answer.
#[derive(Debug)]
pub(super) struct SyncState {
    peer: PeerId,
    after: Option<OfferId>,
    limit: u32,
    report: SyncReport,
    reply: oneshot::Sender<Result<SyncReport, P2pError>>,
}

impl EventLoop {
    pub(super) fn start_sync(
        &mut self,
        peer: PeerId,
        reply: oneshot::Sender<Result<SyncReport, P2pError>>,
    ) {
        let max = self.limits.max_pending_requests;
        if self.pending_syncs.len() >= max {
            let _ = reply.send(Err(P2pError::Busy { max }));
            return;
        }
        let state = SyncState {
            peer,
            after: None,
            limit: self.limits.page_size(),
            report: SyncReport::default(),
            reply,
        };
        self.request_page(state);
    }

    fn request_page(&mut self, state: SyncState) {
        let req = BookRequest {
            after: state.after,
            limit: state.limit,
        };
        let id = self
            .swarm
            .behaviour_mut()
            .book
            .send_request(&state.peer, req);
        self.pending_syncs.insert(id, state);
    }

    pub(super) fn on_book_event(
        &mut self,
        event: request_response::Event<BookRequest, BookResponse>,
    ) {
        match event {
            request_response::Event::Message {
                peer,
                message:
                    Message::Request {
                        request, channel, ..
                    },
                ..
            } => {
                if !self.book_rate.try_take(peer, tokio::time::Instant::now()) {
                    // Dropping the channel closes the stream: the peer fails fast.
                    debug!(target: "p2p", %peer, "book request over the rate limit");
                    return;
                }
                let limit = request
                    .limit
                    .min(self.limits.page_size())
                    .min(MAX_BOOK_PAGE);
                let page = self.store.page(request.after, limit);
                // Fails only if the peer hung up meanwhile.
                let _ = self.swarm.behaviour_mut().book.send_response(channel, page);
            }
            request_response::Event::Message {
                message:
                    Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                if let Some(state) = self.pending_syncs.remove(&request_id) {
                    self.on_page(state, response);
                }
            }
            request_response::Event::OutboundFailure {
                request_id, error, ..
            } => {
                if let Some(state) = self.pending_syncs.remove(&request_id) {
                    let _ = state.reply.send(Err(P2pError::Request {
                        peer: state.peer,
                        source: error,
                    }));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                debug!(target: "p2p", %peer, %error, "book request from peer failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn on_page(&mut self, mut state: SyncState, page: BookResponse) {
        let peer = state.peer;
        let bad = |why| Err(P2pError::BadPage { peer, why });
        if page.offers.len() > usize::try_from(state.limit).unwrap_or(usize::MAX) {
            let _ = state.reply.send(bad("more offers than asked for"));
            return;
        }
        if let (Some(next), Some(after)) = (page.next, state.after)
            && next <= after
        {
            let _ = state.reply.send(bad("the next page does not move forward"));
            return;
        }
        let now = unix_now();
        state.report.pages += 1;
        state.report.received += page.offers.len();
        for signed in page.offers {
            match signed.verify(now) {
                Ok(v) => {
                    if self.store.insert(v.clone()).is_ok() {
                        state.report.stored += 1;
                        self.events.emit(Event::OfferStored(v));
                    }
                }
                Err(e) => {
                    state.report.rejected += 1;
                    // Expiry in transit is normal; anything else is worth telling.
                    if !matches!(e, OfferError::Expired { .. }) {
                        self.events.emit(Event::Rejected {
                            peer,
                            reason: RejectReason::Offer(e),
                        });
                    }
                }
            }
        }
        match page.next {
            Some(next) if state.report.pages < self.limits.max_sync_pages => {
                state.after = Some(next);
                self.request_page(state);
            }
            next => {
                state.report.complete = next.is_none();
                debug!(target: "p2p", %peer, report = ?state.report, "book sync done");
                let _ = state.reply.send(Ok(state.report));
            }
        }
    }
}
