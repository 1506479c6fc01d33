//! The offer book: every verified, unexpired offer a node knows, keyed by [`OfferId`], with
//! indexes for the common filters so a search does not scan the whole book.
//!
//! Inserts follow the replacement rule of the gossip protocol: a newer `seq` under the same id
//! replaces the old offer; an equal or older one is refused (a replay). Expired offers are
//! dropped by [`OfferBook::sweep`].
//!
//! Indexes (in `book/index.rs`): ordered sets keyed by the exact value ([`Num`]) of `dph`,
//! `num_gpus` and `gpu_ram`, and buckets keyed by the folded text of `gpu_name` and
//! `geolocation`, each bucket ordered by `dph` (so "this model, cheapest first" reads a few
//! entries of one bucket). Each index entry also carries the offer's `dph`, `num_gpus` and
//! `gpu_ram`, so clauses on those are checked without reading the offer. Every mutation (insert,
//! replace, remove, sweep) goes through `Indexes::add` / `Indexes::remove`, which compute their
//! keys with the same code the query evaluator uses, so an index can only hold what the
//! evaluator would see. [`OfferBook::search`] uses them to pick candidates and then runs the
//! full [`Query::matches`] on each; [`OfferBook::scan`] is the plain filter-and-sort it must
//! agree with.

use std::collections::HashMap;
use std::ops::Bound;

use crate::offer::{OfferId, VerifiedOffer};
use crate::query::{CmpOp, EvalCtx, Field, Num, Query, SortField, SortSpec, Test, Value, folded};

mod index;

use index::{
    DPH, FULL, Hot, Indexes, Key, MAX_ID, MIN_ID, Part, Prefilter, RANGE_FIELDS, Source,
    TEXT_FIELDS, bounds_on, num_of, rank,
};

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
    idx: Indexes,
}

impl OfferBook {
    /// An empty book.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces `offer` by the sequence rule.
    pub fn insert(&mut self, offer: VerifiedOffer) -> InsertOutcome {
        let outcome = match self.offers.get(&offer.id) {
            Some(held) if held.offer.seq >= offer.offer.seq => return InsertOutcome::Stale,
            Some(held) => {
                self.idx.remove(held);
                InsertOutcome::Replaced
            }
            None => InsertOutcome::Added,
        };
        self.idx.add(&offer);
        self.offers.insert(offer.id, offer);
        outcome
    }

    /// Removes an offer (withdrawn by its host).
    pub fn remove(&mut self, id: &OfferId) -> Option<VerifiedOffer> {
        let gone = self.offers.remove(id)?;
        self.idx.remove(&gone);
        Some(gone)
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
            self.remove(id);
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

    /// The first `limit` offers matching `q` in `sort` order, using the indexes.
    ///
    /// Returns exactly what [`OfferBook::scan`] returns. Every plan draws candidates from
    /// index ranges, checks each with the full [`Query::matches`], and keeps the best `limit`:
    /// - filter first: the candidate source with the fewest offers by estimate, then a
    ///   top-`limit` selection;
    /// - order first, when the first sort key is the order of some source (an ordered index,
    ///   or `dph` for the `gpu_name`/`geolocation` buckets, which are kept in price order): walk
    ///   it in sort order and stop once `limit` offers match and the boundary value is
    ///   exhausted. Unless it is itself the smallest source, the walk gives up after as many
    ///   steps as the filter-first plan would take, so the worst case is twice the better plan.
    pub fn search<'a>(
        &'a self,
        q: &Query,
        sort: &SortSpec,
        limit: usize,
        ctx: &EvalCtx<'_>,
    ) -> Vec<&'a VerifiedOffer> {
        if limit == 0 || self.offers.is_empty() {
            return Vec::new();
        }
        let Some(sources) = self.sources(q) else {
            return Vec::new(); // contradictory bounds: nothing can match
        };
        let Some(best) = sources.iter().min_by_key(|s| s.est) else {
            return Vec::new();
        };
        let pre = Prefilter::new(q);
        let mut hits = Vec::new();
        if let Some(first) = sort.keys().first()
            && let SortField::Field(f) = first.field
            && let Some(walk) = sources
                .iter()
                .filter(|s| s.order == f)
                .min_by_key(|s| s.est)
        {
            let budget = if walk.est <= best.est {
                usize::MAX
            } else {
                best.est
            };
            if self.walk_in_order(
                walk,
                first.descending,
                (q, &pre),
                limit,
                ctx,
                budget,
                &mut hits,
            ) {
                return rank(hits, sort, limit, ctx);
            }
            hits.clear();
        }
        for part in &best.parts {
            for ((_, id), hot) in part.set.range(part.range) {
                if pre.passes(hot)
                    && let Some(o) = self.offers.get(id)
                    && q.matches(&o.offer, ctx)
                {
                    hits.push(o);
                }
            }
        }
        rank(hits, sort, limit, ctx)
    }

    /// The first `limit` offers matching `q` in `sort` order, by filtering every offer with
    /// [`Query::matches`] and sorting: no index, linear in the book. The reference that
    /// [`OfferBook::search`] is tested against.
    pub fn scan(
        &self,
        q: &Query,
        sort: &SortSpec,
        limit: usize,
        ctx: &EvalCtx<'_>,
    ) -> Vec<&VerifiedOffer> {
        let mut hits: Vec<&VerifiedOffer> = self
            .offers
            .values()
            .filter(|o| q.matches(&o.offer, ctx))
            .collect();
        hits.sort_by(|a, b| sort.compare(a, b, ctx));
        hits.truncate(limit);
        hits
    }

    /// Every way the indexes can narrow `q`, the whole book (the `dph` index) first; `None`
    /// when the clauses on an indexed field contradict each other. All comparisons on one
    /// ordered field merge into one range; `gpu_name`/`geolocation` buckets are narrowed by
    /// the `dph` bounds, since they are ordered by price.
    fn sources(&self, q: &Query) -> Option<Vec<Source<'_>>> {
        let dph = match bounds_on(q, Field::Dph) {
            Some(None) => return None,
            Some(Some(r)) => r,
            None => FULL,
        };
        let mut out = vec![Source::new(
            vec![self.idx.ranges[DPH].part(dph)],
            Field::Dph,
        )];
        for (i, &field) in RANGE_FIELDS.iter().enumerate() {
            let index = &self.idx.ranges[i];
            match bounds_on(q, field) {
                Some(None) => return None,
                Some(Some(range)) if i != DPH => {
                    out.push(Source::new(vec![index.part(range)], field));
                }
                _ => {}
            }
            for c in q.clauses().iter().filter(|c| c.field == field) {
                if let Test::In(list) = &c.test {
                    let mut points: Vec<Num> = list.iter().filter_map(num_of).collect();
                    points.sort();
                    points.dedup();
                    let parts = points
                        .into_iter()
                        .map(|v| {
                            index.part((Bound::Included((v, MIN_ID)), Bound::Included((v, MAX_ID))))
                        })
                        .collect();
                    out.push(Source::new(parts, field));
                }
            }
        }
        for (j, &field) in TEXT_FIELDS.iter().enumerate() {
            for c in q.clauses().iter().filter(|c| c.field == field) {
                let values: &[Value] = match &c.test {
                    Test::Cmp(CmpOp::Eq, v) => std::slice::from_ref(v),
                    Test::In(list) => list,
                    _ => continue,
                };
                let mut keys: Vec<String> = values
                    .iter()
                    .filter_map(|v| match v {
                        Value::Text(t) => Some(folded(t)),
                        _ => None,
                    })
                    .collect();
                keys.sort();
                keys.dedup();
                let parts = keys
                    .iter()
                    .filter_map(|k| self.idx.texts[j].get(k))
                    .map(|bucket| Part {
                        set: bucket,
                        values: None,
                        range: dph,
                    })
                    .collect();
                out.push(Source::new(parts, Field::Dph));
            }
        }
        Some(out)
    }

    /// The order-first plan: walks each part of `source` in sort order, pushing matches to
    /// `hits`. `false` when it would take more than `budget` steps.
    #[allow(clippy::too_many_arguments)] // one private call site; a struct would only rename them
    fn walk_in_order<'a>(
        &'a self,
        source: &Source<'_>,
        descending: bool,
        (q, pre): (&Query, &Prefilter<'_>),
        limit: usize,
        ctx: &EvalCtx<'_>,
        mut budget: usize,
        hits: &mut Vec<&'a VerifiedOffer>,
    ) -> bool {
        for part in &source.parts {
            let keys = part.set.range(part.range);
            let keys: Box<dyn Iterator<Item = (&Key, &Hot)>> = if descending {
                Box::new(keys.rev())
            } else {
                Box::new(keys)
            };
            // Once `limit` offers of this part match, only offers tied with the last one on
            // the sort key can still rank above it (through later keys or the id): collect
            // those and stop. Parts are disjoint, so the best `limit` overall are among the
            // best `limit` (plus ties) of each part.
            let mut found = 0;
            let mut boundary: Option<Num> = None;
            for ((value, id), hot) in keys {
                if boundary.is_some_and(|b| b != *value) {
                    break;
                }
                if budget == 0 {
                    return false;
                }
                budget -= 1;
                if pre.passes(hot)
                    && let Some(o) = self.offers.get(id)
                    && q.matches(&o.offer, ctx)
                {
                    hits.push(o);
                    found += 1;
                    if found == limit {
                        boundary = Some(*value);
                    }
                }
            }
        }
        true
    }
}

#[cfg(test)]
mod tests;
