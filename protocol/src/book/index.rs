//! The book's indexes and the pieces of the search planner: candidate sources, range
//! bounds, the prefilter on values stored in the index, and the top-`limit` selection.

use std::cmp::Ordering;
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use crate::offer::{OfferId, VerifiedOffer};
use crate::query::{
    Clause, CmpOp, EvalCtx, Field, Num, Query, Scalar, SortSpec, Test, Value, folded,
};

/// Fields with an ordered index (all of kind number and independent of the [`EvalCtx`]).
pub(super) const RANGE_FIELDS: [Field; 3] = [Field::Dph, Field::NumGpus, Field::GpuRam];
/// Fields with buckets by folded text.
pub(super) const TEXT_FIELDS: [Field; 2] = [Field::GpuName, Field::Geolocation];

/// Position of `dph` in [`RANGE_FIELDS`]; text buckets are ordered by it too.
pub(super) const DPH: usize = 0;

/// The smallest and largest ids, to turn value bounds into key bounds: `>= v` is
/// `>= (v, MIN_ID)` and `> v` is `> (v, MAX_ID)`.
pub(super) const MIN_ID: OfferId = OfferId([0; 16]);
pub(super) const MAX_ID: OfferId = OfferId([0xff; 16]);

/// An index key: the field's value, then the offer id (unique, and the tie-break order).
pub(super) type Key = (Num, OfferId);
/// An offer's values of [`RANGE_FIELDS`], stored with each index entry so that clauses on
/// them are checked from the index, without touching the offer (a cache miss on a large
/// book): most candidates a walk meets are turned down this way.
pub(super) type Hot = [Num; RANGE_FIELDS.len()];
type Range = (Bound<Key>, Bound<Key>);
/// The whole index.
pub(super) const FULL: Range = (Bound::Unbounded, Bound::Unbounded);

/// Where search candidates come from: disjoint parts, each a range of a set ordered by the
/// value of `order` (then id), and the estimated number of candidates.
pub(super) struct Source<'b> {
    pub(super) parts: Vec<Part<'b>>,
    pub(super) order: Field,
    pub(super) est: usize,
}

impl<'b> Source<'b> {
    pub(super) fn new(parts: Vec<Part<'b>>, order: Field) -> Self {
        let est = parts.iter().map(Part::estimate).sum();
        Self { parts, order, est }
    }
}

/// A range of one ordered set.
pub(super) struct Part<'b> {
    pub(super) set: &'b BTreeMap<Key, Hot>,
    /// Multiplicity of each value in `set`, where kept.
    pub(super) values: Option<&'b BTreeMap<Num, usize>>,
    pub(super) range: Range,
}

/// Ranges are counted entry by entry up to this many; a larger one is estimated as its whole
/// set, so planning stays cheap.
const COUNT_CAP: usize = 512;

impl Part<'_> {
    /// The number of entries in the range: exact for a whole set, for a set with few distinct
    /// values, or for a range of at most [`COUNT_CAP`] entries; otherwise the set's size.
    pub(super) fn estimate(&self) -> usize {
        if self.range == FULL {
            return self.set.len();
        }
        if let Some(values) = self.values
            && values.len() <= COUNT_CAP
        {
            let (lo, hi) = self.range;
            let by_value = (lo.map(|k| k.0), hi.map(|k| k.0));
            return values.range(by_value).map(|(_, n)| n).sum();
        }
        match self.set.range(self.range).take(COUNT_CAP + 1).count() {
            n if n > COUNT_CAP => self.set.len(),
            n => n,
        }
    }
}

/// The clauses of a query on [`RANGE_FIELDS`], checked against an index entry's [`Hot`]
/// values before the offer is read. The same [`Clause::holds_for`] as the full evaluation, on
/// the same values, so it turns down exactly the offers those clauses would.
pub(super) struct Prefilter<'q> {
    pub(super) checks: Vec<(&'q Clause, usize)>,
}

impl<'q> Prefilter<'q> {
    pub(super) fn new(q: &'q Query) -> Self {
        let checks = q
            .clauses()
            .iter()
            .filter_map(|c| {
                RANGE_FIELDS
                    .iter()
                    .position(|f| *f == c.field)
                    .map(|i| (c, i))
            })
            .collect();
        Self { checks }
    }

    pub(super) fn passes(&self, hot: &Hot) -> bool {
        self.checks
            .iter()
            .all(|(c, i)| c.holds_for(Some(Scalar::Num(hot[*i]))))
    }
}

pub(super) fn num_of(v: &Value) -> Option<Num> {
    match v {
        Value::Num(n) => Some(*n),
        _ => None,
    }
}

/// The intersection of every `<`, `<=`, `=`, `>=`, `>` clause on `field` as one index range:
/// `None` if there is no such clause, `Some(None)` if they exclude each other.
pub(super) fn bounds_on(q: &Query, field: Field) -> Option<Option<Range>> {
    let mut lo: Bound<Key> = Bound::Unbounded;
    let mut hi: Bound<Key> = Bound::Unbounded;
    let mut any = false;
    for c in q.clauses().iter().filter(|c| c.field == field) {
        let Test::Cmp(op, v) = &c.test else { continue };
        let Some(v) = num_of(v) else { continue };
        let (l, h) = match op {
            CmpOp::Ne => continue,
            CmpOp::Lt => (Bound::Unbounded, Bound::Excluded((v, MIN_ID))),
            CmpOp::Le => (Bound::Unbounded, Bound::Included((v, MAX_ID))),
            CmpOp::Eq => (Bound::Included((v, MIN_ID)), Bound::Included((v, MAX_ID))),
            CmpOp::Ge => (Bound::Included((v, MIN_ID)), Bound::Unbounded),
            CmpOp::Gt => (Bound::Excluded((v, MAX_ID)), Bound::Unbounded),
        };
        any = true;
        lo = tighter(lo, l, Ordering::Greater);
        hi = tighter(hi, h, Ordering::Less);
    }
    if !any {
        return None;
    }
    if let (Some(l), Some(h)) = (key(&lo), key(&hi)) {
        let excluded = matches!(lo, Bound::Excluded(_)) || matches!(hi, Bound::Excluded(_));
        if l > h || (l == h && excluded) {
            return Some(None);
        }
    }
    Some(Some((lo, hi)))
}

/// Of two lower bounds (`wins` = Greater) or two upper bounds (`wins` = Less), the tighter.
/// Keys carry MIN_ID/MAX_ID (`>= v` is `>= (v, MIN)`, `> v` is `> (v, MAX)`), so the larger
/// lower key is the tighter whether included or excluded, and likewise for upper bounds.
fn tighter(a: Bound<Key>, b: Bound<Key>, wins: Ordering) -> Bound<Key> {
    match (key(&a), key(&b)) {
        (None, _) => b,
        (_, None) => a,
        (Some(x), Some(y)) if y.cmp(x) == wins => b,
        _ => a,
    }
}

fn key(b: &Bound<Key>) -> Option<&Key> {
    match b {
        Bound::Included(k) | Bound::Excluded(k) => Some(k),
        Bound::Unbounded => None,
    }
}

/// The first `limit` of `hits` in `sort` order. Each offer's first sort key is read once up
/// front, so the selection compares values in one array instead of reading two scattered
/// offers per comparison.
pub(super) fn rank<'a>(
    hits: Vec<&'a VerifiedOffer>,
    sort: &SortSpec,
    limit: usize,
    ctx: &EvalCtx<'_>,
) -> Vec<&'a VerifiedOffer> {
    let mut headed: Vec<_> = hits.into_iter().map(|o| (sort.head(o, ctx), o)).collect();
    top_k(&mut headed, limit, |a, b| sort.compare_headed(*a, *b, ctx));
    headed.into_iter().map(|(_, o)| o).collect()
}

/// Leaves the `limit` smallest of `v` under `cmp` (a total order), sorted.
fn top_k<T>(v: &mut Vec<T>, limit: usize, mut cmp: impl FnMut(&T, &T) -> Ordering) {
    if v.len() > limit {
        if limit == 0 {
            v.clear();
            return;
        }
        v.select_nth_unstable_by(limit - 1, &mut cmp);
        v.truncate(limit);
    }
    v.sort_unstable_by(cmp);
}

/// The book's secondary indexes. Keys come from [`Field::offer_value`], the evaluator's own
/// code, so an offer is always filed under the value a query would see.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Indexes {
    pub(super) ranges: [RangeIndex; RANGE_FIELDS.len()],
    /// Buckets by folded text, each ordered by `dph` so that the most common search (a model,
    /// cheapest first) walks one bucket from its cheap end.
    pub(super) texts: [HashMap<String, BTreeMap<Key, Hot>>; TEXT_FIELDS.len()],
}

impl Indexes {
    pub(super) fn hot(o: &VerifiedOffer) -> Hot {
        // Every range field is a number that depends on the offer alone (unit-tested).
        RANGE_FIELDS.map(|f| match f.offer_value(&o.offer) {
            Some(Scalar::Num(n)) => n,
            _ => Num::int(0),
        })
    }

    pub(super) fn text_key(field: Field, o: &VerifiedOffer) -> String {
        match field.offer_value(&o.offer) {
            Some(Scalar::Text(t)) => folded(t),
            _ => String::new(),
        }
    }

    pub(super) fn add(&mut self, o: &VerifiedOffer) {
        let hot = Self::hot(o);
        for (i, index) in self.ranges.iter_mut().enumerate() {
            index.insert((hot[i], o.id), hot);
        }
        for (map, f) in self.texts.iter_mut().zip(TEXT_FIELDS) {
            map.entry(Self::text_key(f, o))
                .or_default()
                .insert((hot[DPH], o.id), hot);
        }
    }

    pub(super) fn remove(&mut self, o: &VerifiedOffer) {
        let hot = Self::hot(o);
        for (i, index) in self.ranges.iter_mut().enumerate() {
            index.remove(&(hot[i], o.id));
        }
        for (map, f) in self.texts.iter_mut().zip(TEXT_FIELDS) {
            let k = Self::text_key(f, o);
            if let Some(bucket) = map.get_mut(&k) {
                bucket.remove(&(hot[DPH], o.id));
                if bucket.is_empty() {
                    map.remove(&k);
                }
            }
        }
    }
}

/// An ordered index on one numeric field.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct RangeIndex {
    pub(super) keys: BTreeMap<Key, Hot>,
    /// How many offers hold each distinct value: exact range sizes in O(distinct values) for
    /// fields with few of them (`num_gpus`, `gpu_ram`).
    pub(super) values: BTreeMap<Num, usize>,
}

impl RangeIndex {
    pub(super) fn part(&self, range: Range) -> Part<'_> {
        Part {
            set: &self.keys,
            values: Some(&self.values),
            range,
        }
    }

    pub(super) fn insert(&mut self, key: Key, hot: Hot) {
        if self.keys.insert(key, hot).is_none() {
            *self.values.entry(key.0).or_default() += 1;
        }
    }

    pub(super) fn remove(&mut self, key: &Key) {
        if self.keys.remove(key).is_some()
            && let Entry::Occupied(mut e) = self.values.entry(key.0)
        {
            *e.get_mut() -= 1;
            if *e.get() == 0 {
                e.remove();
            }
        }
    }
}
