//! One host's history as JSON: the shape of `gpuflow host --json` and of the node's
//! `GET /hosts/{address}`, built in one place so the two cannot drift apart. Each adds its own
//! fields next to it (how fresh the index is, the time it was computed at).

use std::collections::HashMap;

use gpuflow_protocol::money::Amount;
use libp2p_identity::PeerId;
use serde::Serialize;

use crate::formula::{OutcomeCounts, OutcomeKind};
use crate::indexer::HostHistory;

/// A host's leases, outcomes, volume and score with its inputs.
#[derive(Debug, Clone, Serialize)]
pub struct HostView {
    /// Host wallet.
    pub host: String,
    /// The peer id it registered, if it did.
    pub peer_id: Option<String>,
    /// Unix seconds of its first registration.
    pub registered_at: Option<u64>,
    /// Unix seconds of its first lease event.
    pub first_seen: Option<u64>,
    /// Leases, all outcomes.
    pub leases: u64,
    /// Leases by outcome.
    pub outcomes: OutcomeCounts,
    /// What renters paid it for service.
    pub volume: Amount,
    /// The score and its inputs.
    pub score: ScoreView,
    /// Every lease's contribution, oldest first.
    pub history: Vec<LeaseView>,
    /// Receipts this host published that did not verify (not its renter's, unpaid lease).
    pub ignored_receipts: u64,
}

/// The score and the prior it starts from.
#[derive(Debug, Clone, Serialize)]
pub struct ScoreView {
    /// α / (α + β).
    pub reliability: f64,
    /// The rank quantile of Beta(α, β).
    pub rank: f64,
    /// Beta α.
    pub alpha: f64,
    /// Beta β.
    pub beta: f64,
    /// Evidence beyond the prior, whole tokens.
    pub evidence: f64,
    /// The prior's mean.
    pub prior_mean: f64,
    /// The prior's weight.
    pub prior_strength: Amount,
    /// The quantile `rank` is.
    pub rank_quantile: f64,
}

/// One lease's contribution to the score.
#[derive(Debug, Clone, Serialize)]
pub struct LeaseView {
    /// Lease id.
    pub lease_id: String,
    /// Renter wallet.
    pub renter: String,
    /// How it ended.
    pub outcome: OutcomeKind,
    /// What the renter paid.
    pub paid: Amount,
    /// Its value in the formula.
    pub value: Amount,
    /// Its outcome in 0..1 (none when not scored).
    pub good: Option<f64>,
    /// Time decay factor.
    pub decay: f64,
    /// The renter's credibility.
    pub credibility: f64,
    /// The per-renter cap's factor.
    pub cap_factor: f64,
    /// Its weight after all factors.
    pub weight: f64,
    /// Unix seconds of `open`.
    pub opened_at: u64,
    /// Unix seconds of `start`.
    pub started_at: Option<u64>,
    /// Unix seconds of the close.
    pub closed_at: Option<u64>,
    /// Verified renter-signed receipts counted in `good`.
    pub receipts: usize,
}

impl HostView {
    /// The view of `h`.
    pub fn of(h: &HostHistory) -> Self {
        let s = &h.report.score;
        let d = h.params.decimals;
        let by_id: HashMap<_, _> = h.leases.iter().map(|r| (r.lease_id, r)).collect();
        Self {
            host: h.report.host.to_string(),
            peer_id: h
                .peer_id
                .as_ref()
                .and_then(|p| PeerId::from_bytes(p).ok())
                .map(|p| p.to_string()),
            registered_at: h.registered_at,
            first_seen: s.first_seen,
            leases: s.leases,
            outcomes: s.outcomes,
            volume: Amount::new(s.volume, d),
            score: ScoreView {
                reliability: s.reliability,
                rank: s.rank,
                alpha: s.alpha,
                beta: s.beta,
                evidence: s.evidence,
                prior_mean: h.params.prior_mean,
                prior_strength: Amount::new(h.params.prior_strength, d),
                rank_quantile: h.params.rank_quantile,
            },
            history: h
                .report
                .contributions
                .iter()
                .map(|c| {
                    let r = by_id.get(&c.lease_id);
                    LeaseView {
                        lease_id: c.lease_id.to_string(),
                        renter: c.renter.to_string(),
                        outcome: c.outcome.kind,
                        paid: Amount::new(r.map_or(0, |r| r.paid), d),
                        value: Amount::new(c.outcome.value, d),
                        good: c.outcome.good,
                        decay: c.decay,
                        credibility: c.credibility,
                        cap_factor: c.cap_factor,
                        weight: c.weight,
                        opened_at: r.map_or(0, |r| r.opened_at),
                        started_at: r.and_then(|r| r.started_at),
                        closed_at: c.closed_at,
                        receipts: c.outcome.coverage.receipts,
                    }
                })
                .collect(),
            ignored_receipts: h.ignored_receipts,
        }
    }
}
