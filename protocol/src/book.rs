//! The offer book: every verified, unexpired offer a node knows, keyed by [`OfferId`].
//!
//! Inserts follow the replacement rule of the gossip protocol: a newer `seq` under the same id
//! replaces the old offer; an equal or older one is refused (a replay). Expired offers are
//! dropped by [`OfferBook::sweep`].

use std::collections::HashMap;

use crate::offer::{OfferId, VerifiedOffer};

/// What [`OfferBook::insert`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertOutcome {
    /// A new offer id.
    Added,
    /// Replaced an older sequence number of the same offer.
    Replaced,
    /// Refused: the book already holds this sequence number or a newer one.
    Stale,
}

/// In-memory offer book.
#[derive(Debug, Default, Clone)]
pub struct OfferBook {
    offers: HashMap<OfferId, VerifiedOffer>,
}

impl OfferBook {
    /// An empty book.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces `offer` by the sequence rule.
    pub fn insert(&mut self, offer: VerifiedOffer) -> InsertOutcome {
        match self.offers.get(&offer.id) {
            Some(held) if held.offer.seq >= offer.offer.seq => InsertOutcome::Stale,
            Some(_) => {
                self.offers.insert(offer.id, offer);
                InsertOutcome::Replaced
            }
            None => {
                self.offers.insert(offer.id, offer);
                InsertOutcome::Added
            }
        }
    }

    /// Removes an offer (withdrawn by its host).
    pub fn remove(&mut self, id: &OfferId) -> Option<VerifiedOffer> {
        self.offers.remove(id)
    }

    /// The offer with this id.
    pub fn get(&self, id: &OfferId) -> Option<&VerifiedOffer> {
        self.offers.get(id)
    }

    /// Drops offers whose expiry is at or before `now`; returns their ids.
    pub fn sweep(&mut self, now: u64) -> Vec<OfferId> {
        let gone: Vec<OfferId> = self
            .offers
            .values()
            .filter(|o| o.offer.expires_at <= now)
            .map(|o| o.id)
            .collect();
        for id in &gone {
            self.offers.remove(id);
        }
        gone
    }

    /// Number of offers held.
    pub fn len(&self) -> usize {
        self.offers.len()
    }

    /// Whether the book is empty.
    pub fn is_empty(&self) -> bool {
        self.offers.is_empty()
    }

    /// Every offer, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &VerifiedOffer> {
        self.offers.values()
    }

    /// One page of the book in id order, for `/gpuflow/book/1`: offers with id > `after`, at
    /// most `limit`.
    pub fn page(&self, after: Option<OfferId>, limit: usize) -> Vec<&VerifiedOffer> {
        let mut ids: Vec<&OfferId> = self
            .offers
            .keys()
            .filter(|id| after.is_none_or(|a| **id > a))
            .collect();
        ids.sort_unstable();
        ids.into_iter()
            .take(limit)
            .filter_map(|id| self.offers.get(id))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offer::fixture::TestHost;

    const NOW: u64 = 1_800_000_000;

    fn verified(h: &TestHost, name: &str, seq: u64) -> VerifiedOffer {
        let mut o = h.offer(name, NOW);
        o.seq = seq;
        h.sign(&o).verify(NOW).unwrap()
    }

    #[test]
    fn newer_sequence_replaces_and_replay_is_stale() {
        let h = TestHost::from_seed(1);
        let mut book = OfferBook::new();
        assert_eq!(book.insert(verified(&h, "a", 1)), InsertOutcome::Added);
        assert_eq!(book.insert(verified(&h, "a", 2)), InsertOutcome::Replaced);
        assert_eq!(book.insert(verified(&h, "a", 2)), InsertOutcome::Stale);
        assert_eq!(book.insert(verified(&h, "a", 1)), InsertOutcome::Stale);
        assert_eq!(book.len(), 1);
        assert_eq!(book.iter().next().unwrap().offer.seq, 2);
    }

    #[test]
    fn sweep_drops_expired_offers() {
        let h = TestHost::from_seed(2);
        let mut book = OfferBook::new();
        book.insert(verified(&h, "a", 1));
        assert!(book.sweep(NOW + 599).is_empty());
        assert_eq!(book.sweep(NOW + 600).len(), 1);
        assert!(book.is_empty());
    }

    #[test]
    fn pages_cover_the_book_once() {
        let h = TestHost::from_seed(3);
        let mut book = OfferBook::new();
        for i in 0..25 {
            book.insert(verified(&h, &format!("o{i}"), 1));
        }
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = book.page(after, 10);
            if page.is_empty() {
                break;
            }
            after = page.last().map(|o| o.id);
            seen.extend(page.iter().map(|o| o.id));
        }
        seen.dedup();
        assert_eq!(seen.len(), 25);
    }
}
