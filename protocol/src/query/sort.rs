//! Sort orders: `-o 'num_gpus-,dph+'`.

use std::cmp::Ordering;

use super::error::suggest;
use super::{EvalCtx, Field, Num, QueryError, Scalar};
use crate::offer::VerifiedOffer;

/// What a sort key reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SortField {
    /// A query field.
    Field(Field),
    /// The rank key: the host's rank from [`EvalCtx::rank`] (the 10th percentile of its
    /// Beta(α, β), DESIGN.md §7, so thin histories do not outrank long good ones), or its
    /// reliability where no rank is known.
    Score,
}

impl SortField {
    /// The field whose type this key compares like.
    pub fn field(self) -> Field {
        match self {
            Self::Field(f) => f,
            Self::Score => Field::Reliability,
        }
    }

    /// The value this key sorts `offer` by.
    fn value<'a>(self, offer: &'a VerifiedOffer, ctx: &EvalCtx<'_>) -> Option<Scalar<'a>> {
        match self {
            Self::Field(f) => f.value(&offer.offer, ctx),
            Self::Score => Some(Scalar::Num(Num::from_score(ctx.rank(&offer.offer.host)))),
        }
    }
}

/// One key of a sort order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SortKey {
    /// What it sorts by.
    pub field: SortField,
    /// `-`: largest first. `+` (or nothing): smallest first.
    pub descending: bool,
}

/// A sort order: keys in priority order, then offer id ascending.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SortSpec {
    keys: Vec<SortKey>,
}

impl Default for SortSpec {
    /// `dph+`: cheapest first.
    fn default() -> Self {
        Self {
            keys: vec![SortKey {
                field: SortField::Field(Field::Dph),
                descending: false,
            }],
        }
    }
}

impl SortSpec {
    /// Parses keys separated by commas or spaces, each a field name or `score` with an
    /// optional `+` (ascending, the default) or `-` (descending): `num_gpus-,dph+`.
    pub fn parse(text: &str) -> Result<Self, QueryError> {
        let bad = |why: &str| QueryError::BadSort {
            text: text.to_owned(),
            why: why.to_owned(),
        };
        let mut keys = Vec::new();
        let mut pos = 0;
        for piece in text.split(',') {
            let piece_pos = pos;
            pos += piece.len() + 1;
            if piece.trim().is_empty() {
                return Err(bad("a sort key is empty"));
            }
            for word in piece.split_whitespace() {
                let word_pos = piece_pos + piece.find(word).unwrap_or(0);
                let (name, descending) = match word.as_bytes().last() {
                    Some(b'+') => (&word[..word.len() - 1], false),
                    Some(b'-') => (&word[..word.len() - 1], true),
                    _ => (word, false),
                };
                if name.ends_with(['+', '-']) || name.is_empty() {
                    return Err(bad(&format!(
                        "`{word}` is not a key; give one field and one + or -"
                    )));
                }
                let field = if name.eq_ignore_ascii_case("score") {
                    SortField::Score
                } else {
                    SortField::Field(Field::from_name(name).ok_or_else(|| {
                        QueryError::UnknownSortField {
                            field: name.to_owned(),
                            pos: word_pos,
                            suggestion: suggest(name, &["score"]),
                        }
                    })?)
                };
                keys.push(SortKey { field, descending });
            }
        }
        Ok(Self { keys })
    }

    /// The keys in priority order (never empty).
    pub fn keys(&self) -> &[SortKey] {
        &self.keys
    }

    /// Orders two offers: by each key in turn (offers without a value for a key, such as an
    /// unparseable version, come last in either direction), then by id ascending. A total
    /// order, so sorting is deterministic.
    pub fn compare(&self, a: &VerifiedOffer, b: &VerifiedOffer, ctx: &EvalCtx<'_>) -> Ordering {
        self.compare_from(0, a, b, ctx)
    }

    /// The value of the first key for `offer`: sorting many offers by [`SortSpec::compare_headed`]
    /// with it computed once each reads each offer once instead of at every comparison.
    pub(crate) fn head<'a>(
        &self,
        offer: &'a VerifiedOffer,
        ctx: &EvalCtx<'_>,
    ) -> Option<Scalar<'a>> {
        self.keys[0].field.value(offer, ctx)
    }

    /// [`SortSpec::compare`] given each offer's [`SortSpec::head`]; the same order.
    pub(crate) fn compare_headed(
        &self,
        (ha, a): (Option<Scalar<'_>>, &VerifiedOffer),
        (hb, b): (Option<Scalar<'_>>, &VerifiedOffer),
        ctx: &EvalCtx<'_>,
    ) -> Ordering {
        let k = self.keys[0];
        compare_values(ha, hb, k.field.field(), k.descending)
            .then_with(|| self.compare_from(1, a, b, ctx))
    }

    fn compare_from(
        &self,
        first: usize,
        a: &VerifiedOffer,
        b: &VerifiedOffer,
        ctx: &EvalCtx<'_>,
    ) -> Ordering {
        for key in &self.keys[first..] {
            let ord = compare_values(
                key.field.value(a, ctx),
                key.field.value(b, ctx),
                key.field.field(),
                key.descending,
            );
            if ord.is_ne() {
                return ord;
            }
        }
        a.id.cmp(&b.id)
    }
}

fn compare_values(
    a: Option<Scalar<'_>>,
    b: Option<Scalar<'_>>,
    field: Field,
    descending: bool,
) -> Ordering {
    match (a, b) {
        (Some(a), Some(b)) => {
            let ord = a.compare(&b, field).unwrap_or(Ordering::Equal);
            if descending { ord.reverse() } else { ord }
        }
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}
