//! The event loop's offer state: the [`OfferBook`] plus what the gossip rules need on top of it —
//! per-host counts (so one host cannot fill the book) and tombstones of withdrawn offers (so a
//! replayed old offer cannot come back after its withdrawal).
//!
//! Pure and synchronous: everything here is unit-tested without a network.

use std::collections::HashMap;

use gpuflow_protocol::book::{InsertOutcome, OfferBook};
use gpuflow_protocol::offer::{MAX_CLOCK_SKEW_SECS, MAX_OFFER_TTL_SECS, OfferId, VerifiedOffer};
use gpuflow_protocol::wire::{BookResponse, MAX_BOOK_RESPONSE_BYTES, VerifiedWithdrawal};

use crate::config::Limits;

/// Why an offer was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The book holds this sequence number or a newer one.
    Stale { held: u64 },
    /// The host withdrew this sequence number or a newer one.
    Withdrawn { seq: u64 },
    /// A book limit is reached.
    Full { limit: usize, scope: &'static str },
}

/// What a withdrawal did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Withdrawn {
    /// Removed a held offer.
    Removed,
    /// Nothing held, but it is news: remembered and worth forwarding.
    NotHeld,
    /// Already known, or older than the held offer: nothing to do or forward.
    Stale,
}

#[derive(Debug, Clone, Copy)]
struct Tombstone {
    seq: u64,
    issued_at: u64,
}

/// Offer book plus per-host counts and tombstones.
#[derive(Debug)]
pub(crate) struct Store {
    book: OfferBook,
    per_host: HashMap<String, usize>,
    tombstones: HashMap<OfferId, Tombstone>,
    max_offers: usize,
    max_per_host: usize,
    max_tombstones: usize,
}

impl Store {
    pub(crate) fn new(book: OfferBook, limits: &Limits) -> Self {
        let mut per_host = HashMap::new();
        for o in book.iter() {
            *per_host.entry(o.offer.host.clone()).or_insert(0) += 1;
        }
        Self {
            book,
            per_host,
            tombstones: HashMap::new(),
            max_offers: limits.max_offers,
            max_per_host: limits.max_offers_per_host,
            max_tombstones: limits.max_tombstones,
        }
    }

    pub(crate) fn book(&self) -> &OfferBook {
        &self.book
    }

    /// Stores a verified offer by the sequence rule, the tombstones and the limits.
    pub(crate) fn insert(&mut self, v: VerifiedOffer) -> Result<InsertOutcome, Refused> {
        if let Some(t) = self.tombstones.get(&v.id)
            && t.seq >= v.offer.seq
        {
            return Err(Refused::Withdrawn { seq: t.seq });
        }
        match self.book.get(&v.id) {
            Some(held) if held.offer.seq >= v.offer.seq => {
                return Err(Refused::Stale {
                    held: held.offer.seq,
                });
            }
            Some(_) => {}
            None => {
                if self.book.len() >= self.max_offers {
                    return Err(Refused::Full {
                        limit: self.max_offers,
                        scope: "in total",
                    });
                }
                if self.per_host.get(&v.offer.host).copied().unwrap_or(0) >= self.max_per_host {
                    return Err(Refused::Full {
                        limit: self.max_per_host,
                        scope: "from this host",
                    });
                }
            }
        }
        let host = v.offer.host.clone();
        let outcome = self.book.insert(v);
        if outcome == InsertOutcome::Added {
            *self.per_host.entry(host).or_insert(0) += 1;
        }
        Ok(outcome)
    }

    /// Applies a verified withdrawal: removes the held offer if its seq is at or below the
    /// withdrawn one, and remembers the withdrawal.
    pub(crate) fn withdraw(&mut self, w: &VerifiedWithdrawal) -> Withdrawn {
        if self.tombstones.get(&w.id).is_some_and(|t| t.seq >= w.seq) {
            return Withdrawn::Stale;
        }
        if self.book.get(&w.id).is_some_and(|h| h.offer.seq > w.seq) {
            return Withdrawn::Stale;
        }
        let tomb = Tombstone {
            seq: w.seq,
            issued_at: w.issued_at,
        };
        if self.tombstones.len() < self.max_tombstones || self.tombstones.contains_key(&w.id) {
            self.tombstones.insert(w.id, tomb);
        }
        if self.remove(&w.id).is_some() {
            Withdrawn::Removed
        } else {
            Withdrawn::NotHeld
        }
    }

    /// Drops expired offers (returning their ids) and tombstones no live offer can be older
    /// than.
    pub(crate) fn sweep(&mut self, now: u64) -> Vec<OfferId> {
        let gone: Vec<OfferId> = self
            .book
            .iter()
            .filter(|o| o.offer.expires_at <= now)
            .map(|o| o.id)
            .collect();
        for id in &gone {
            self.remove(id);
        }
        // An offer issued before the withdrawal expires at most a TTL (plus skew) after it.
        self.tombstones
            .retain(|_, t| t.issued_at + MAX_OFFER_TTL_SECS + MAX_CLOCK_SKEW_SECS > now);
        gone
    }

    fn remove(&mut self, id: &OfferId) -> Option<VerifiedOffer> {
        let v = self.book.remove(id)?;
        if let Some(n) = self.per_host.get_mut(&v.offer.host) {
            *n -= 1;
            if *n == 0 {
                self.per_host.remove(&v.offer.host);
            }
        }
        Some(v)
    }

    /// One `/gpuflow/book/1` page: at most `limit` offers after `after`, cut short so the
    /// encoded response stays under [`MAX_BOOK_RESPONSE_BYTES`].
    pub(crate) fn page(&self, after: Option<OfferId>, limit: u32) -> BookResponse {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let page = self.book.page(after, limit);
        let mut budget = MAX_BOOK_RESPONSE_BYTES - 1024;
        let mut offers = Vec::with_capacity(page.len());
        let mut last = None;
        let mut cut = false;
        for o in &page {
            // JSON escaping at most doubles the payload; keys and signature are short hex.
            let size = 2 * o.signed.payload.len()
                + 2 * (o.signed.public_key.len() + o.signed.signature.len())
                + 64;
            if size > budget {
                cut = true;
                break;
            }
            budget -= size;
            offers.push(o.signed.clone());
            last = Some(o.id);
        }
        let more = cut || page.len() == limit;
        BookResponse {
            offers,
            next: if more { last } else { None },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpuflow_protocol::offer::fixture::TestHost;
    use gpuflow_protocol::wire::SignedWithdrawal;

    const NOW: u64 = 1_800_000_000;

    fn verified(h: &TestHost, name: &str, seq: u64) -> VerifiedOffer {
        let mut o = h.offer(name, NOW);
        o.seq = seq;
        h.sign(&o).verify(NOW).unwrap()
    }

    fn withdrawal(h: &TestHost, name: &str, seq: u64) -> VerifiedWithdrawal {
        SignedWithdrawal::sign(&h.key, name, seq, NOW)
            .unwrap()
            .verify(NOW)
            .unwrap()
    }

    fn store(limits: Limits) -> Store {
        Store::new(OfferBook::new(), &limits)
    }

    #[test]
    fn withdrawal_removes_and_blocks_replay_of_older_seq() {
        let h = TestHost::from_seed(1);
        let mut s = store(Limits::default());
        s.insert(verified(&h, "a", 3)).unwrap();
        assert_eq!(s.withdraw(&withdrawal(&h, "a", 2)), Withdrawn::Stale);
        assert_eq!(s.withdraw(&withdrawal(&h, "a", 3)), Withdrawn::Removed);
        assert_eq!(s.withdraw(&withdrawal(&h, "a", 3)), Withdrawn::Stale);
        assert_eq!(
            s.insert(verified(&h, "a", 3)),
            Err(Refused::Withdrawn { seq: 3 })
        );
        assert_eq!(s.insert(verified(&h, "a", 4)), Ok(InsertOutcome::Added));
        // A withdrawal for something never held is news worth forwarding once.
        assert_eq!(s.withdraw(&withdrawal(&h, "b", 1)), Withdrawn::NotHeld);
    }

    #[test]
    fn one_host_cannot_fill_the_book() {
        let (h, other) = (TestHost::from_seed(2), TestHost::from_seed(3));
        let mut s = store(Limits {
            max_offers_per_host: 2,
            max_offers: 3,
            ..Limits::default()
        });
        s.insert(verified(&h, "a", 1)).unwrap();
        s.insert(verified(&h, "b", 1)).unwrap();
        assert!(matches!(
            s.insert(verified(&h, "c", 1)),
            Err(Refused::Full {
                scope: "from this host",
                ..
            })
        ));
        // Replacing a held offer is always allowed.
        assert_eq!(s.insert(verified(&h, "a", 2)), Ok(InsertOutcome::Replaced));
        s.insert(verified(&other, "a", 1)).unwrap();
        assert!(matches!(
            s.insert(verified(&other, "b", 1)),
            Err(Refused::Full {
                scope: "in total",
                ..
            })
        ));
        // Expiry frees the host's slots again.
        assert_eq!(s.sweep(NOW + 600).len(), 3);
        assert!(s.per_host.is_empty());
        assert_eq!(s.insert(verified(&h, "c", 1)), Ok(InsertOutcome::Added));
    }

    #[test]
    fn pages_chain_through_the_book_and_tombstones_expire() {
        let h = TestHost::from_seed(4);
        let mut s = store(Limits::default());
        for i in 0..5 {
            s.insert(verified(&h, &format!("o{i}"), 1)).unwrap();
        }
        let first = s.page(None, 2);
        assert_eq!(first.offers.len(), 2);
        let second = s.page(first.next, 2);
        let third = s.page(second.next, 2);
        assert_eq!(third.offers.len(), 1);
        assert_eq!(third.next, None);

        s.withdraw(&withdrawal(&h, "o0", 1));
        assert_eq!(s.tombstones.len(), 1);
        s.sweep(NOW + MAX_OFFER_TTL_SECS + MAX_CLOCK_SKEW_SECS);
        assert!(s.tombstones.is_empty());
    }
}
