//! The score of DESIGN.md §7 as pure functions over lease outcome records: no I/O, no clock
//! (the caller passes `now`), so any node can recompute any host's score from chain data.
//!
//! For host h and each of its closed leases i, rented by j:
//! - value v_i (base units) and outcome o_i ∈ [0, 1] from [`outcome`];
//! - weight w_i = 2^(−age_i / half-life) · v_i · c_j, in whole tokens, where the renter's
//!   credibility c_j = min(1, P_j / K) and P_j is what j paid to *other* hosts in the window;
//! - each renter's total weight is capped at a share of the host's total evidence, prior
//!   included ([`cap_factors`]);
//! - α = m·n0 + Σ w·o, β = (1 − m)·n0 + Σ w·(1 − o); reliability = α / (α + β) and the rank is
//!   the `rank_quantile` of Beta(α, β).

use std::collections::HashMap;

use alloy::primitives::{Address, B256};

use crate::beta;
use crate::coverage::{Coverage, Observed, coverage};
use crate::params::Params;

/// Why a lease ended, as the escrow's `LeaseClosed` event records it; leases closed for an
/// [`CloseReason::Unknown`] reason (a newer contract) are not scored.
pub use gpuflow_protocol::escrow_events::CloseReason;

/// How a closed lease ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseEnd {
    /// Chain time of the close (unix seconds).
    pub closed_at: u64,
    /// Who called `close`.
    pub closed_by: Address,
    /// Why, per the contract.
    pub reason: CloseReason,
    /// Base units returned to the renter.
    pub refund: u128,
}

/// One lease as the escrow's events describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRecord {
    /// Lease id (`gpuflow_protocol::escrow::lease_id`).
    pub lease_id: B256,
    /// Host wallet.
    pub host: Address,
    /// Renter wallet.
    pub renter: Address,
    /// Quoted price, base units per second.
    pub price_per_second: u128,
    /// Base units the renter paid for service (host share plus protocol fee), over every
    /// withdrawal and the close.
    pub paid: u128,
    /// Chain time of `open` (unix seconds).
    pub opened_at: u64,
    /// Chain time of `start`, if the host started it.
    pub started_at: Option<u64>,
    /// `None` while the lease is open.
    pub end: Option<LeaseEnd>,
    /// Verified renter-signed receipts of this lease ([`crate::coverage`]); empty for most.
    pub receipts: Vec<Observed>,
}

/// What a lease's outcome is, for counting and display.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeKind {
    /// The renter closed it, or its money ran out: the host served what was paid for.
    NormalEnd,
    /// The host closed it while it was still funded.
    HostClosed,
    /// The host never started it within the accept timeout.
    NeverStarted,
    /// The host closed it before starting it, within the accept timeout: it refused the
    /// renter's `open`. Scored exactly like [`OutcomeKind::NeverStarted`].
    HostDeclined,
    /// The renter cancelled before the timeout; not the host's doing, so not scored.
    Cancelled,
    /// Still open; scored once it closes.
    Running,
    /// Closed for a reason this code does not know; not scored.
    Unknown,
}

impl OutcomeKind {
    /// The name JSON and tables show (`normal_end`, `host_closed`, …).
    pub fn name(self) -> &'static str {
        match self {
            Self::NormalEnd => "normal_end",
            Self::HostClosed => "host_closed",
            Self::NeverStarted => "never_started",
            Self::HostDeclined => "host_declined",
            Self::Cancelled => "cancelled",
            Self::Running => "running",
            Self::Unknown => "unknown",
        }
    }
}

/// A lease's value and outcome.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    /// What happened.
    pub kind: OutcomeKind,
    /// v_i in base units: what the renter paid, plus the lost service for a host close; one
    /// hour of the quoted price for a never-started or host-declined lease; 0 when not scored.
    pub value: u128,
    /// o_i in [0, 1]; `None` when the lease is not scored.
    pub good: Option<f64>,
    /// What the lease's receipts cover of its billed time (all zero without receipts).
    pub coverage: Coverage,
}

/// The value and outcome of one lease (DESIGN.md §7).
///
/// A host close counts the money served (`paid`) as good and at most one hour of the money
/// left (`refund`, capped) as lost, so o = paid / (paid + lost) and v = paid + lost. DESIGN.md
/// sets v to what was paid; adding the lost hour means a host that starts a lease and closes it
/// at once (paid ≈ 0) is penalised like one that never starts, rather than not at all.
///
/// Receipts refine the served part of a started lease: with s = the share of billed time the
/// receipts do not show unreachable ([`Coverage::served_share`], 1 without receipts), a normal
/// end scores o = s and a host close o = s · paid / (paid + lost).
pub fn outcome(r: &LeaseRecord, p: &Params) -> Outcome {
    let Some(end) = r.end else {
        return Outcome {
            kind: OutcomeKind::Running,
            value: 0,
            good: None,
            coverage: Coverage {
                receipts: r.receipts.len(),
                ..Coverage::default()
            },
        };
    };
    let coverage = match r.started_at {
        Some(at) => coverage(&r.receipts, at, end.closed_at),
        None => Coverage {
            receipts: r.receipts.len(),
            ..Coverage::default()
        },
    };
    let served = coverage.served_share();
    let (kind, value, good) = match end.reason {
        CloseReason::RenterClosed | CloseReason::Depleted => {
            (OutcomeKind::NormalEnd, r.paid, Some(served))
        }
        CloseReason::HostClosed => {
            let cap = r
                .price_per_second
                .saturating_mul(u128::from(p.host_closed_remaining_cap_secs));
            let lost = end.refund.min(cap);
            let value = r.paid.saturating_add(lost);
            let good = if value == 0 {
                served
            } else {
                served * r.paid as f64 / value as f64
            };
            (OutcomeKind::HostClosed, value, Some(good))
        }
        // A host that refuses a renter's `open` wasted the renter's time as much as one that
        // lets the accept timeout pass: same value, same outcome, only the name differs.
        CloseReason::NeverStarted | CloseReason::HostDeclined => (
            if end.reason == CloseReason::HostDeclined {
                OutcomeKind::HostDeclined
            } else {
                OutcomeKind::NeverStarted
            },
            r.price_per_second
                .saturating_mul(u128::from(p.never_started_secs)),
            Some(0.0),
        ),
        CloseReason::CancelledBeforeStart => (OutcomeKind::Cancelled, 0, None),
        CloseReason::Unknown(_) => (OutcomeKind::Unknown, 0, None),
    };
    Outcome {
        kind,
        value,
        good,
        coverage,
    }
}

/// Leases of one host by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct OutcomeCounts {
    /// See [`OutcomeKind::NormalEnd`].
    pub normal_end: u64,
    /// See [`OutcomeKind::HostClosed`].
    pub host_closed: u64,
    /// See [`OutcomeKind::NeverStarted`].
    pub never_started: u64,
    /// See [`OutcomeKind::HostDeclined`].
    pub host_declined: u64,
    /// See [`OutcomeKind::Cancelled`].
    pub cancelled: u64,
    /// See [`OutcomeKind::Running`].
    pub running: u64,
    /// See [`OutcomeKind::Unknown`].
    pub unknown: u64,
}

impl OutcomeCounts {
    fn add(&mut self, kind: OutcomeKind) {
        let n = match kind {
            OutcomeKind::NormalEnd => &mut self.normal_end,
            OutcomeKind::HostClosed => &mut self.host_closed,
            OutcomeKind::NeverStarted => &mut self.never_started,
            OutcomeKind::HostDeclined => &mut self.host_declined,
            OutcomeKind::Cancelled => &mut self.cancelled,
            OutcomeKind::Running => &mut self.running,
            OutcomeKind::Unknown => &mut self.unknown,
        };
        *n += 1;
    }
}

/// A host's score and the numbers behind it.
#[derive(Debug, Clone, PartialEq)]
pub struct HostScore {
    /// α / (α + β): the expected share of value served well. New hosts: the prior mean.
    pub reliability: f64,
    /// The `rank_quantile` of Beta(α, β): what search ranks by (`-o score-`).
    pub rank: f64,
    /// α, in whole tokens (prior included).
    pub alpha: f64,
    /// β, in whole tokens (prior included).
    pub beta: f64,
    /// Σ of the leases' weights after decay, credibility and caps (α + β − n0), whole tokens.
    pub evidence: f64,
    /// Every lease ever opened with this host, open or closed.
    pub leases: u64,
    /// The same leases by outcome.
    pub outcomes: OutcomeCounts,
    /// Base units renters paid this host for service, all time.
    pub volume: u128,
    /// Earliest chain time the host appears (first lease opened or registration).
    pub first_seen: Option<u64>,
}

impl HostScore {
    /// The score of a host with no history: the prior.
    pub fn new_host(p: &Params) -> Self {
        let n0 = p.prior_evidence();
        let (alpha, beta) = (p.prior_mean * n0, (1.0 - p.prior_mean) * n0);
        Self {
            reliability: p.prior_mean,
            rank: rank(alpha, beta, p),
            alpha,
            beta,
            evidence: 0.0,
            leases: 0,
            outcomes: OutcomeCounts::default(),
            volume: 0,
            first_seen: None,
        }
    }
}

/// The `rank_quantile` of Beta(α, β), with evidence above `max_rank_evidence` scaled down to
/// it (the mean is kept; only the rank's confidence stops growing).
pub fn rank(alpha: f64, beta: f64, p: &Params) -> f64 {
    let total = alpha + beta;
    // Also catches NaN.
    if total.is_nan() || total <= 0.0 {
        return 0.0;
    }
    let k = if total > p.max_rank_evidence {
        p.max_rank_evidence / total
    } else {
        1.0
    };
    beta::quantile(p.rank_quantile, alpha * k, beta * k)
}

/// How one lease entered its host's score.
#[derive(Debug, Clone, PartialEq)]
pub struct Contribution {
    /// Lease id.
    pub lease_id: B256,
    /// Renter wallet.
    pub renter: Address,
    /// Its outcome (value in base units).
    pub outcome: Outcome,
    /// Close time, if closed.
    pub closed_at: Option<u64>,
    /// 2^(−age / half-life); 0 when not scored.
    pub decay: f64,
    /// The renter's credibility c_j towards this host.
    pub credibility: f64,
    /// The renter's cap factor (1 = not capped).
    pub cap_factor: f64,
    /// Final weight in whole tokens: value · decay · credibility · cap factor.
    pub weight: f64,
}

/// A host's score with every lease's contribution, for `gpuflow host`.
#[derive(Debug, Clone, PartialEq)]
pub struct HostReport {
    /// Host wallet.
    pub host: Address,
    /// The score.
    pub score: HostScore,
    /// One entry per lease, oldest first.
    pub contributions: Vec<Contribution>,
}

/// What each renter paid each host in the credibility window.
struct Spending {
    by_renter: HashMap<Address, (u128, HashMap<Address, u128>)>,
}

impl Spending {
    fn new(records: &[LeaseRecord], now: u64, p: &Params) -> Self {
        let since = now.saturating_sub(p.credibility_window_secs);
        let mut by_renter: HashMap<Address, (u128, HashMap<Address, u128>)> = HashMap::new();
        for r in records {
            let Some(end) = r.end else { continue };
            // A close after `now` (the chain's clock ahead of this machine's) still counts.
            if end.closed_at < since || r.paid == 0 {
                continue;
            }
            let e = by_renter.entry(r.renter).or_default();
            e.0 = e.0.saturating_add(r.paid);
            let h = e.1.entry(r.host).or_default();
            *h = h.saturating_add(r.paid);
        }
        Self { by_renter }
    }

    /// c_j = min(1, P_j / K) where P_j is what `renter` paid hosts other than `host`.
    fn credibility(&self, renter: Address, host: Address, p: &Params) -> f64 {
        if p.credibility_full == 0 {
            return 1.0;
        }
        let elsewhere = self.by_renter.get(&renter).map_or(0, |(total, hosts)| {
            total.saturating_sub(hosts.get(&host).copied().unwrap_or(0))
        });
        (elsewhere as f64 / p.credibility_full as f64).min(1.0)
    }
}

/// Scales each renter's total weight so none exceeds `cap` of the host's total evidence
/// (prior `prior` included), by water-filling: renters above the level L keep L, the rest keep
/// theirs, and L = cap · (prior + Σ min(W_j, L)). Returns the factor per renter (1 = uncapped).
///
/// With a positive prior the level always exists below ⌈1/cap⌉ capped renters.
pub fn cap_factors(weights: &HashMap<Address, f64>, prior: f64, cap: f64) -> HashMap<Address, f64> {
    let mut sorted: Vec<(Address, f64)> = weights.iter().map(|(a, w)| (*a, *w)).collect();
    // Largest first; ties by address so the result does not depend on hash order.
    sorted.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut factors: HashMap<Address, f64> = sorted.iter().map(|(a, _)| (*a, 1.0)).collect();
    let mut rest: f64 = sorted.iter().map(|(_, w)| w).sum();
    // Try m = 0, 1, … capped renters (the m largest); the first m whose next renter fits
    // under the level is the answer. m may reach every renter (one heavy renter alone).
    for m in 0..=sorted.len() {
        let denom = 1.0 - cap * m as f64;
        if denom <= 0.0 {
            break;
        }
        let level = cap * (prior + rest) / denom;
        let next = sorted.get(m).map_or(0.0, |(_, w)| *w);
        if next <= level {
            for (a, w) in &sorted[..m] {
                factors.insert(*a, level / w);
            }
            return factors;
        }
        rest -= next;
    }
    factors
}

/// Every host's score from all lease records.
///
/// `registered` holds each registered host's first registration time (for host age). Hosts
/// that only registered get the prior.
pub fn scores(
    records: &[LeaseRecord],
    registered: &HashMap<Address, u64>,
    now: u64,
    p: &Params,
) -> HashMap<Address, HostScore> {
    let spending = Spending::new(records, now, p);
    let mut by_host: HashMap<Address, Vec<&LeaseRecord>> = HashMap::new();
    for r in records {
        by_host.entry(r.host).or_default().push(r);
    }
    let mut out: HashMap<Address, HostScore> = by_host
        .into_iter()
        .map(|(host, leases)| {
            let report = report_for(
                host,
                &leases,
                registered.get(&host).copied(),
                &spending,
                now,
                p,
            );
            (host, report.score)
        })
        .collect();
    for (host, at) in registered {
        out.entry(*host).or_insert_with(|| HostScore {
            first_seen: Some(*at),
            ..HostScore::new_host(p)
        });
    }
    out
}

/// One host's score with every lease's contribution.
pub fn host_report(
    records: &[LeaseRecord],
    registered_at: Option<u64>,
    host: Address,
    now: u64,
    p: &Params,
) -> HostReport {
    let spending = Spending::new(records, now, p);
    let mut leases: Vec<&LeaseRecord> = records.iter().filter(|r| r.host == host).collect();
    leases.sort_by_key(|r| (r.opened_at, r.lease_id));
    report_for(host, &leases, registered_at, &spending, now, p)
}

fn report_for(
    host: Address,
    leases: &[&LeaseRecord],
    registered_at: Option<u64>,
    spending: &Spending,
    now: u64,
    p: &Params,
) -> HostReport {
    let mut score = HostScore::new_host(p);
    score.first_seen = registered_at;
    let mut contributions = Vec::with_capacity(leases.len());
    let mut per_renter: HashMap<Address, f64> = HashMap::new();
    for r in leases {
        let o = outcome(r, p);
        score.leases += 1;
        score.outcomes.add(o.kind);
        score.volume = score.volume.saturating_add(r.paid);
        score.first_seen = Some(score.first_seen.map_or(r.opened_at, |f| f.min(r.opened_at)));
        let closed_at = r.end.map(|e| e.closed_at);
        let credibility = spending.credibility(r.renter, host, p);
        let (decay, weight) = match (o.good, closed_at) {
            (Some(_), Some(at)) => {
                let age = now.saturating_sub(at) as f64;
                let decay = (-age / p.half_life_secs.max(1) as f64).exp2();
                (decay, p.evidence(o.value) * decay * credibility)
            }
            _ => (0.0, 0.0),
        };
        *per_renter.entry(r.renter).or_default() += weight;
        contributions.push(Contribution {
            lease_id: r.lease_id,
            renter: r.renter,
            outcome: o,
            closed_at,
            decay,
            credibility,
            cap_factor: 1.0,
            weight,
        });
    }
    let factors = cap_factors(&per_renter, p.prior_evidence(), p.renter_cap);
    for c in &mut contributions {
        c.cap_factor = factors.get(&c.renter).copied().unwrap_or(1.0);
        c.weight *= c.cap_factor;
        if let Some(good) = c.outcome.good {
            score.alpha += c.weight * good;
            score.beta += c.weight * (1.0 - good);
            score.evidence += c.weight;
        }
    }
    let total = score.alpha + score.beta;
    score.reliability = if total > 0.0 {
        score.alpha / total
    } else {
        p.prior_mean
    };
    score.rank = rank(score.alpha, score.beta, p);
    HostReport {
        host,
        score,
        contributions,
    }
}

#[cfg(test)]
#[path = "formula_tests.rs"]
mod tests;
