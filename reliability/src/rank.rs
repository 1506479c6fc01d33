//! Ranking offers for `gpuflow rent --query`: by the expected cost of getting the requested
//! hours done, given each host's score, skipping hosts that already failed this renter.
//!
//! The model: a host whose rank score is s runs a lease of `interruption_reference_secs`
//! (24 h) without interruption with probability s, and interruptions come at a constant rate,
//! so a lease of H seconds completes with probability P = s^(H / 24 h). A renter whose job is
//! interrupted starts again elsewhere, so on average it pays the nominal cost price × H about
//! 1 / P times: expected cost = price × H / P. The rank (a low quantile) is used rather than
//! the mean so that a host with a thin history is not trusted on luck.

use std::collections::{HashMap, HashSet};

use alloy::primitives::Address;

use crate::formula::{HostScore, LeaseRecord, OutcomeKind, outcome};
use crate::params::{HOUR_SECS, Params};

/// Parts per million: the fixed-point scale of completion probabilities in money arithmetic.
const PPM: u128 = 1_000_000;

/// What renting from one host for the requested time is expected to cost.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExpectedCost {
    /// price per hour × duration, base units, rounded up.
    pub nominal: u128,
    /// P(the lease runs to the end without interruption), 0..1.
    pub completion: f64,
    /// nominal / completion, base units, rounded up. Only for ranking.
    pub expected: u128,
}

/// The expected cost of `duration_secs` at `price_per_hour` (base units) from a host whose
/// rank score is `rank_score` (see the module docs).
pub fn expected_cost(
    price_per_hour: u128,
    duration_secs: u64,
    rank_score: f64,
    p: &Params,
) -> ExpectedCost {
    let nominal = price_per_hour
        .saturating_mul(u128::from(duration_secs))
        .div_ceil(u128::from(HOUR_SECS));
    let s = if rank_score.is_nan() {
        0.0
    } else {
        rank_score.clamp(0.0, 1.0)
    };
    let completion = s.powf(duration_secs as f64 / p.interruption_reference_secs.max(1) as f64);
    // Clamped to 1..=1e6 first, so the cast cannot truncate; a probability below one in a
    // million is treated as one in a million (the host ranks last either way).
    #[allow(clippy::cast_possible_truncation)]
    let ppm = (completion * PPM as f64).round().clamp(1.0, PPM as f64) as u128;
    ExpectedCost {
        nominal,
        completion,
        expected: nominal.saturating_mul(PPM).div_ceil(ppm),
    }
}

/// An offer to rank: anything (an offer, its id) with its host wallet and hourly price.
#[derive(Debug, Clone)]
pub struct Candidate<T> {
    /// What the caller wants back, in ranked order.
    pub item: T,
    /// The host wallet the offer is bound to.
    pub host: Address,
    /// Price of the whole offer per hour, base units.
    pub price_per_hour: u128,
}

/// A ranked offer.
#[derive(Debug, Clone)]
pub struct Ranked<T> {
    /// The caller's item.
    pub item: T,
    /// Host wallet.
    pub host: Address,
    /// The host's rank score used (the prior's for an unknown host).
    pub rank_score: f64,
    /// Its expected cost.
    pub cost: ExpectedCost,
}

/// Ranks `candidates` for a lease of `duration_secs`: cheapest expected cost first (ties: the
/// higher score, then the lower nominal price, then the input order). Hosts in `skip` (see
/// [`hosts_that_failed`]) are left out. Hosts missing from `scores` get the new-host prior.
pub fn rank_for_rent<T>(
    candidates: impl IntoIterator<Item = Candidate<T>>,
    scores: &HashMap<Address, HostScore>,
    skip: &HashSet<Address>,
    duration_secs: u64,
    p: &Params,
) -> Vec<Ranked<T>> {
    let prior = HostScore::new_host(p).rank;
    let mut out: Vec<Ranked<T>> = candidates
        .into_iter()
        .filter(|c| !skip.contains(&c.host))
        .map(|c| {
            let rank_score = scores.get(&c.host).map_or(prior, |s| s.rank);
            Ranked {
                cost: expected_cost(c.price_per_hour, duration_secs, rank_score, p),
                item: c.item,
                host: c.host,
                rank_score,
            }
        })
        .collect();
    out.sort_by(|a, b| {
        a.cost
            .expected
            .cmp(&b.cost.expected)
            .then(b.rank_score.total_cmp(&a.rank_score))
            .then(a.cost.nominal.cmp(&b.cost.nominal))
    });
    out
}

/// Hosts that failed `renter` before: closed one of its funded leases, never started one, or
/// declined one (closed it before starting it). `rent --query` skips them (a renter's request
/// on Golem, yapapi #456).
pub fn hosts_that_failed(records: &[LeaseRecord], renter: Address, p: &Params) -> HashSet<Address> {
    records
        .iter()
        .filter(|r| r.renter == renter)
        .filter(|r| {
            let o = outcome(r, p);
            matches!(
                o.kind,
                OutcomeKind::HostClosed | OutcomeKind::NeverStarted | OutcomeKind::HostDeclined
            ) && o.good.is_some_and(|g| g < 1.0)
        })
        .map(|r| r.host)
        .collect()
}

#[cfg(test)]
mod tests {
    use alloy::primitives::B256;

    use super::*;
    use crate::formula::{CloseReason, LeaseEnd};

    fn addr(n: u8) -> Address {
        Address::with_last_byte(n)
    }

    #[test]
    fn expected_cost_follows_the_interruption_model() {
        let p = Params::default();
        // A perfect host costs the nominal price.
        let c = expected_cost(2_000_000, 12 * 3600, 1.0, &p);
        assert_eq!((c.nominal, c.expected), (24_000_000, 24_000_000));
        // s = 0.81 over 24 h: 12 h completes with probability 0.9, so 1/0.9 more.
        let c = expected_cost(2_000_000, 12 * 3600, 0.81, &p);
        assert!((c.completion - 0.9).abs() < 1e-12);
        assert_eq!(c.expected, 26_666_667);
        // Longer jobs are penalised more.
        let long = expected_cost(2_000_000, 48 * 3600, 0.81, &p);
        assert!(long.expected * 12 > c.expected * 48);
        // Nonsense scores do not panic.
        assert_eq!(expected_cost(1, 3600, f64::NAN, &p).expected, 1_000_000);
    }

    #[test]
    fn a_reliable_host_beats_a_slightly_cheaper_unreliable_one() {
        let p = Params::default();
        let good = HostScore {
            rank: 0.98,
            ..HostScore::new_host(&p)
        };
        let bad = HostScore {
            rank: 0.5,
            ..HostScore::new_host(&p)
        };
        let scores = HashMap::from([(addr(1), good), (addr(2), bad)]);
        let cands = vec![
            Candidate {
                item: "bad-cheap",
                host: addr(2),
                price_per_hour: 900_000,
            },
            Candidate {
                item: "good",
                host: addr(1),
                price_per_hour: 1_000_000,
            },
            Candidate {
                item: "unknown",
                host: addr(3),
                price_per_hour: 1_000_000,
            },
        ];
        let ranked = rank_for_rent(cands.clone(), &scores, &HashSet::new(), 24 * 3600, &p);
        let order: Vec<&str> = ranked.iter().map(|r| r.item).collect();
        assert_eq!(order, ["good", "bad-cheap", "unknown"]);
        // For a one-hour job the cheap one wins: little time to be interrupted.
        let short = rank_for_rent(cands.clone(), &scores, &HashSet::new(), 3600, &p);
        assert_eq!(short[0].item, "bad-cheap");
        // Skipped hosts are gone.
        let skip = HashSet::from([addr(1)]);
        let ranked = rank_for_rent(cands, &scores, &skip, 24 * 3600, &p);
        assert!(ranked.iter().all(|r| r.host != addr(1)));
    }

    #[test]
    fn hosts_that_failed_this_renter_only() {
        let p = Params::default();
        let me = addr(9);
        let rec = |host, renter, reason, refund| LeaseRecord {
            lease_id: B256::ZERO,
            host,
            renter,
            price_per_second: 100,
            paid: 1000,
            opened_at: 1,
            started_at: Some(2),
            end: Some(LeaseEnd {
                closed_at: 100,
                closed_by: host,
                reason,
                refund,
            }),
            receipts: Vec::new(),
        };
        let records = vec![
            rec(addr(1), me, CloseReason::HostClosed, 50_000),
            rec(addr(2), me, CloseReason::NeverStarted, 0),
            rec(addr(3), me, CloseReason::RenterClosed, 0),
            rec(addr(4), addr(8), CloseReason::NeverStarted, 0),
            rec(addr(5), me, CloseReason::CancelledBeforeStart, 0),
            rec(addr(6), me, CloseReason::HostDeclined, 0),
            rec(addr(7), addr(8), CloseReason::HostDeclined, 0),
            rec(addr(10), me, CloseReason::Unknown(9), 0),
        ];
        assert_eq!(
            hosts_that_failed(&records, me, &p),
            HashSet::from([addr(1), addr(2), addr(6)])
        );
    }
}
