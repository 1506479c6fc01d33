//! The offer query language of `gpuflow search`, compatible with Vast.ai's where it makes sense:
//!
//! ```text
//! gpu_name=RTX_4090 num_gpus>=2 gpu_ram>=24 reliability>0.98 dph<=0.6 geolocation in [DE,NL]
//! ```
//!
//! A query is space-separated clauses `field OP value`, all of which must hold. Operators are
//! `< <= = == != >= > in notin`; `in`/`notin` take a list `[A,B,...]`; `field=any` (or
//! `field any`) removes every clause on that field, including a default one (see
//! [`Query::with_defaults`]). Values are numbers, bare words, quoted strings or `true`/`false`;
//! [`fields`] lists the fields and what each takes. Anything the parser does not understand is a
//! [`QueryError`] that names it: a clause is never dropped silently.
//!
//! Sorting ([`SortSpec`]) is `-o 'num_gpus-,dph+'`: keys with `+` (ascending, the default) or
//! `-` (descending), ties broken by offer id so results are deterministic. The default order is
//! `dph+`.
//!
//! [`Query::matches`] is the reference evaluator: one offer, every clause, no index. The
//! indexed search in [`crate::book::OfferBook::search`] must return exactly what filtering all
//! offers with it and sorting with [`SortSpec::compare`] returns (a property test checks this).

mod error;
mod fields;
mod lexer;
mod parser;
mod sort;
mod value;

use std::cmp::Ordering;
use std::collections::HashMap;

pub use error::QueryError;
pub use fields::{Field, FieldInfo, FieldKind, fields};
pub(crate) use fields::{Scalar, folded};
pub use sort::{SortField, SortKey, SortSpec};
pub use value::{Num, Version};

use crate::offer::Offer;

/// Reliability of a host without a score yet: the prior of DESIGN.md §7 (as on Vast.ai).
pub const NEW_HOST_RELIABILITY: f64 = 0.6;

/// A comparison operator (`==` is the same as `=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CmpOp {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `=` or `==`
    Eq,
    /// `!=`
    Ne,
    /// `>=`
    Ge,
    /// `>`
    Gt,
}

impl CmpOp {
    /// Whether `field_value.cmp(query_value) == ord` satisfies the operator.
    fn holds(self, ord: Ordering) -> bool {
        match self {
            Self::Lt => ord.is_lt(),
            Self::Le => ord.is_le(),
            Self::Eq => ord.is_eq(),
            Self::Ne => ord.is_ne(),
            Self::Ge => ord.is_ge(),
            Self::Gt => ord.is_gt(),
        }
    }
}

/// A value written in a query, already checked against its field's kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// For [`FieldKind::Number`] fields.
    Num(Num),
    /// For [`FieldKind::Version`] fields.
    Version(Version),
    /// For [`FieldKind::Text`] fields, as written (folded when compared where the field folds).
    Text(String),
    /// For [`FieldKind::Bool`] fields.
    Bool(bool),
}

impl Value {
    pub(crate) fn scalar(&self) -> Scalar<'_> {
        match self {
            Self::Num(n) => Scalar::Num(*n),
            Self::Version(v) => Scalar::Version(*v),
            Self::Text(t) => Scalar::Text(t),
            Self::Bool(b) => Scalar::Bool(*b),
        }
    }
}

/// What a clause checks its field's value against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Test {
    /// `field OP value`.
    Cmp(CmpOp, Value),
    /// `field in [..]`: equal to one of them (never empty).
    In(Vec<Value>),
    /// `field notin [..]`: equal to none of them (never empty).
    NotIn(Vec<Value>),
}

/// One `field OP value` condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Clause {
    /// The field it reads.
    pub field: Field,
    /// What the field's value must satisfy.
    pub test: Test,
}

impl Clause {
    /// Whether `offer` satisfies this clause. An offer whose field has no value (a version
    /// string that does not parse) satisfies no clause on that field, `!=` and `notin`
    /// included: a filter never lets through what it cannot judge.
    pub fn matches(&self, offer: &Offer, ctx: &EvalCtx<'_>) -> bool {
        self.holds_for(self.field.value(offer, ctx))
    }

    /// Whether the clause holds for its field's value `v` (`None`: the offer has none). The
    /// book's indexes call this with values they stored, computed by the same code.
    pub(crate) fn holds_for(&self, v: Option<Scalar<'_>>) -> bool {
        let Some(v) = v else {
            return false;
        };
        let eq = |w: &Value| v.compare(&w.scalar(), self.field) == Some(Ordering::Equal);
        match &self.test {
            Test::Cmp(op, w) => v
                .compare(&w.scalar(), self.field)
                .is_some_and(|o| op.holds(o)),
            Test::In(list) => list.iter().any(eq),
            Test::NotIn(list) => !list.iter().any(eq),
        }
    }
}

/// A parsed query: clauses that must all hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Query {
    clauses: Vec<Clause>,
    /// Fields the user set to `any`: no clause on them, and defaults do not apply.
    cleared: Vec<Field>,
}

impl Query {
    /// Parses a query such as `gpu_name=RTX_4090 num_gpus>=2 geolocation in [DE,NL]`. The
    /// empty query matches every offer.
    pub fn parse(src: &str) -> Result<Self, QueryError> {
        parser::parse_query(src)
    }

    /// The query's clauses in evaluation order: cheap numeric checks first, then text,
    /// versions and reliability (the order never changes what matches).
    pub fn clauses(&self) -> &[Clause] {
        &self.clauses
    }

    /// Fields set to `any`.
    pub fn cleared(&self) -> &[Field] {
        &self.cleared
    }

    /// Whether the query has no clause (matches everything).
    pub fn is_empty(&self) -> bool {
        self.clauses.is_empty()
    }

    /// Whether the query says anything about `field`: a clause or `any`.
    pub fn mentions(&self, field: Field) -> bool {
        self.cleared.contains(&field) || self.clauses.iter().any(|c| c.field == field)
    }

    /// This query plus the clauses of `defaults` on fields it does not mention. A user's
    /// `verified=any` or `verified=false` thus replaces a default `verified=true`.
    pub fn with_defaults(mut self, defaults: &Query) -> Query {
        let add: Vec<Clause> = defaults
            .clauses
            .iter()
            .filter(|c| !self.mentions(c.field))
            .cloned()
            .collect();
        self.clauses.extend(add);
        self.order_by_cost();
        self
    }

    /// Whether `offer` satisfies every clause. This is the plain evaluator the indexed search
    /// is checked against.
    pub fn matches(&self, offer: &Offer, ctx: &EvalCtx<'_>) -> bool {
        self.clauses.iter().all(|c| c.matches(offer, ctx))
    }

    fn new(clauses: Vec<Clause>, cleared: Vec<Field>) -> Self {
        let mut q = Self { clauses, cleared };
        q.order_by_cost();
        q
    }

    /// Puts cheap checks first so most offers are turned down before a string is read or a
    /// score looked up. A stable sort: equal-cost clauses keep the written order.
    fn order_by_cost(&mut self) {
        self.clauses.sort_by_key(|c| match c.field {
            Field::GpuName | Field::Geolocation | Field::Host => 1,
            Field::CudaVers | Field::DriverVersion => 2,
            Field::Reliability => 3,
            _ => 0,
        });
    }
}

/// What evaluating a query needs besides the offer: the clock (for `host_age`) and the hosts'
/// reliability scores.
///
/// Scores live here rather than in the book because they come from chain events, not from
/// offers: the node recomputes them on its own schedule and hands the current map to each
/// search. A host missing from the map has [`NEW_HOST_RELIABILITY`].
#[derive(Clone, Copy, Debug)]
pub struct EvalCtx<'a> {
    now: u64,
    scores: Option<&'a HashMap<String, f64>>,
    ranks: Option<&'a HashMap<String, f64>>,
}

impl<'a> EvalCtx<'a> {
    /// A context at unix time `now` in which every host has the new-host score.
    pub fn new(now: u64) -> Self {
        Self {
            now,
            scores: None,
            ranks: None,
        }
    }

    /// A context at unix time `now` with reliability scores keyed by host peer id (base58).
    pub fn with_scores(now: u64, scores: &'a HashMap<String, f64>) -> Self {
        Self {
            now,
            scores: Some(scores),
            ranks: None,
        }
    }

    /// Adds rank keys by host peer id: what the `score` sort orders by (the 10th percentile of
    /// the host's Beta, DESIGN.md §7). Without them `score` sorts by reliability.
    #[must_use]
    pub fn with_ranks(mut self, ranks: &'a HashMap<String, f64>) -> Self {
        self.ranks = Some(ranks);
        self
    }

    /// The rank key of `host` (a peer id): its rank when known, else its reliability.
    pub fn rank(&self, host: &str) -> f64 {
        self.ranks
            .and_then(|r| r.get(host))
            .copied()
            .unwrap_or_else(|| self.reliability(host))
    }

    /// Unix seconds.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// The reliability score of `host` (a peer id).
    pub fn reliability(&self, host: &str) -> f64 {
        self.scores
            .and_then(|s| s.get(host))
            .copied()
            .unwrap_or(NEW_HOST_RELIABILITY)
    }
}

#[cfg(test)]
mod tests;
