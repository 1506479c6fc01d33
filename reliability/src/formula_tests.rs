//! The formula on constructed histories (issue #6's list), plus the worked example of
//! `docs/reliability.md`, whose numbers are asserted here.

use super::*;
use crate::params::{DAY_SECS, HOUR_SECS};

const USD: u128 = 1_000_000;
const NOW: u64 = 1_800_000_000;
/// 1.8 tokens per hour.
const PRICE: u128 = 500;

fn addr(n: u64) -> Address {
    Address::left_padding_from(&n.to_be_bytes())
}

/// Builds histories; every lease gets a fresh id.
#[derive(Default)]
struct History {
    records: Vec<LeaseRecord>,
}

impl History {
    fn push(
        &mut self,
        host: Address,
        renter: Address,
        served_secs: u64,
        reason: CloseReason,
        refund: u128,
        closed_at: u64,
    ) {
        let n = self.records.len() as u64;
        let started = matches!(
            reason,
            CloseReason::RenterClosed | CloseReason::HostClosed | CloseReason::Depleted
        );
        self.records.push(LeaseRecord {
            lease_id: B256::left_padding_from(&n.to_be_bytes()),
            host,
            renter,
            price_per_second: PRICE,
            paid: PRICE * u128::from(served_secs),
            opened_at: closed_at - served_secs - 60,
            started_at: started.then_some(closed_at - served_secs),
            end: Some(LeaseEnd {
                closed_at,
                closed_by: if matches!(reason, CloseReason::HostClosed | CloseReason::HostDeclined)
                {
                    host
                } else {
                    renter
                },
                reason,
                refund,
            }),
            receipts: Vec::new(),
        });
    }

    /// A lease the renter ended after `secs` of service.
    fn good(&mut self, host: Address, renter: Address, secs: u64, closed_at: u64) {
        self.push(host, renter, secs, CloseReason::RenterClosed, 0, closed_at);
    }

    /// A lease the host never started.
    fn never(&mut self, host: Address, renter: Address, closed_at: u64) {
        self.push(host, renter, 0, CloseReason::NeverStarted, 0, closed_at);
    }

    /// Makes `renter` credible towards every host but `elsewhere`: 30 tokens paid there.
    fn credible(&mut self, renter: Address, elsewhere: Address) {
        let secs = u64::try_from(30 * USD / PRICE).unwrap();
        self.good(elsewhere, renter, secs, NOW - DAY_SECS);
    }

    fn score(&self, host: Address, now: u64) -> HostScore {
        host_report(&self.records, None, host, now, &Params::default()).score
    }
}

const OTHER: u64 = 999;

#[test]
fn a_new_host_has_the_prior() {
    let s = HostScore::new_host(&Params::default());
    assert_eq!(s.reliability, 0.6);
    assert_eq!((s.alpha, s.beta), (12.0, 8.0));
    assert!(
        (s.rank - 0.458_679_103_324_823_5).abs() < 1e-10,
        "{}",
        s.rank
    );
    let empty = History::default().score(addr(1), NOW);
    assert_eq!(empty.reliability, s.reliability);
    assert_eq!(empty.rank, s.rank);
}

#[test]
fn many_good_paid_leases_outrank_a_new_host() {
    let (good_host, new_host) = (addr(1), addr(2));
    let mut h = History::default();
    for r in 0..8 {
        let renter = addr(100 + r);
        h.credible(renter, addr(OTHER));
        for k in 0..5 {
            h.good(good_host, renter, 4 * HOUR_SECS, NOW - k * DAY_SECS);
        }
    }
    let good = h.score(good_host, NOW);
    let fresh = h.score(new_host, NOW);
    assert_eq!(good.leases, 40);
    assert_eq!(good.outcomes.normal_end, 40);
    assert!(good.reliability > 0.9, "{good:?}");
    assert!(good.rank > fresh.rank + 0.3, "{good:?} vs {fresh:?}");
    // A thin perfect history (one lease) ranks below the long one although both are 100% good.
    let mut thin = History::default();
    thin.credible(addr(100), addr(OTHER));
    thin.good(good_host, addr(100), 4 * HOUR_SECS, NOW);
    let t = thin.score(good_host, NOW);
    assert!(t.rank < good.rank, "{t:?}");
}

#[test]
fn one_never_started_lease_costs_more_than_one_short_lease_gains() {
    let (host, renter) = (addr(1), addr(100));
    let prior = HostScore::new_host(&Params::default());
    let mut short = History::default();
    short.credible(renter, addr(OTHER));
    short.good(host, renter, 15 * 60, NOW);
    let mut never = History::default();
    never.credible(renter, addr(OTHER));
    never.never(host, renter, NOW);
    let gain = short.score(host, NOW).reliability - prior.reliability;
    let loss = prior.reliability - never.score(host, NOW).reliability;
    assert!(gain > 0.0 && loss > 0.0);
    assert!(loss > gain, "loss {loss} vs gain {gain}");
    // Both together leave the host below a new one.
    let mut both = short;
    both.never(host, renter, NOW);
    assert!(both.score(host, NOW).reliability < prior.reliability);
    assert!(both.score(host, NOW).rank < prior.rank);
}

/// A credible renter's history with `host`: two good leases, then one lease that ended for
/// `reason` (not started: nothing paid) an hour ago.
fn history_ending_with(host: Address, renter: Address, reason: CloseReason) -> History {
    let mut h = History::default();
    h.credible(renter, addr(OTHER));
    h.good(host, renter, 2 * HOUR_SECS, NOW - 2 * DAY_SECS);
    h.good(host, renter, 3 * HOUR_SECS, NOW - DAY_SECS);
    h.push(host, renter, 0, reason, PRICE * 10_000, NOW - HOUR_SECS);
    h
}

#[test]
fn a_host_declined_lease_lowers_the_score_exactly_as_much_as_a_never_started_one() {
    let (host, renter) = (addr(1), addr(100));
    let p = Params::default();
    let never = history_ending_with(host, renter, CloseReason::NeverStarted);
    let declined = history_ending_with(host, renter, CloseReason::HostDeclined);
    let mut without = never.records.clone();
    without.pop();
    let base = host_report(&without, None, host, NOW, &p).score;
    let n = host_report(&never.records, None, host, NOW, &p);
    let d = host_report(&declined.records, None, host, NOW, &p);
    // The same evidence to the last bit: value, outcome, weight, α, β, mean and rank.
    assert_eq!(d.score.alpha, n.score.alpha);
    assert_eq!(d.score.beta, n.score.beta);
    assert_eq!(d.score.evidence, n.score.evidence);
    assert_eq!(d.score.reliability, n.score.reliability);
    assert_eq!(d.score.rank, n.score.rank);
    assert!(d.score.reliability < base.reliability, "{d:?} vs {base:?}");
    assert!(d.score.rank < base.rank);
    let (cn, cd) = (
        n.contributions.last().unwrap(),
        d.contributions.last().unwrap(),
    );
    assert_eq!(
        cd.outcome.value,
        PRICE * u128::from(HOUR_SECS),
        "one hour of the price"
    );
    assert_eq!(cd.outcome.value, cn.outcome.value);
    assert_eq!(cd.outcome.good, Some(0.0));
    assert_eq!(cd.weight, cn.weight);
    assert!(cd.weight > 0.0);
    // Only the name differs, so `gpuflow host` and GET /hosts can tell them apart.
    assert_eq!(cn.outcome.kind, OutcomeKind::NeverStarted);
    assert_eq!(cd.outcome.kind, OutcomeKind::HostDeclined);
    assert_eq!(cd.outcome.kind.name(), "host_declined");
    assert_eq!(
        (
            d.score.outcomes.host_declined,
            d.score.outcomes.never_started
        ),
        (1, 0)
    );
    assert_eq!(
        (
            n.score.outcomes.host_declined,
            n.score.outcomes.never_started
        ),
        (0, 1)
    );
    assert_eq!(d.score.leases, 3);
}

#[test]
fn a_renter_cancellation_before_the_start_still_does_not_count() {
    let (host, renter) = (addr(1), addr(100));
    let p = Params::default();
    let cancelled = history_ending_with(host, renter, CloseReason::CancelledBeforeStart);
    let mut without = cancelled.records.clone();
    without.pop();
    let base = host_report(&without, None, host, NOW, &p).score;
    let c = host_report(&cancelled.records, None, host, NOW, &p);
    assert_eq!(c.score.alpha, base.alpha);
    assert_eq!(c.score.beta, base.beta);
    assert_eq!(c.score.reliability, base.reliability);
    assert_eq!(c.score.rank, base.rank);
    let last = c.contributions.last().unwrap();
    assert_eq!(last.outcome.kind, OutcomeKind::Cancelled);
    assert_eq!((last.outcome.value, last.outcome.good), (0, None));
    assert_eq!(last.weight, 0.0);
    assert_eq!(c.score.outcomes.cancelled, 1);
    // The declined lease of the same history does lower it.
    let declined = history_ending_with(host, renter, CloseReason::HostDeclined);
    assert!(
        host_report(&declined.records, None, host, NOW, &p)
            .score
            .reliability
            < base.reliability
    );
}

#[test]
fn self_renting_from_fresh_wallets_gains_nothing() {
    let host = addr(1);
    let mut h = History::default();
    // 50 wallets that never paid anyone else, 100 hours each.
    for r in 0..50 {
        h.good(host, addr(1000 + r), 100 * HOUR_SECS, NOW - r * HOUR_SECS);
    }
    let s = h.score(host, NOW);
    let prior = HostScore::new_host(&Params::default());
    assert_eq!(s.leases, 50);
    assert_eq!(s.reliability, prior.reliability);
    assert_eq!(s.rank, prior.rank);
    assert_eq!(s.evidence, 0.0);
    // The volume is still shown: it is a fact, just not evidence.
    assert_eq!(s.volume, 50 * PRICE * u128::from(100 * HOUR_SECS));
    // Renting from each other does not help either: each wallet's spending at the host
    // being scored does not count towards its credibility there.
    let mut ring = History::default();
    for r in 0..10 {
        ring.good(host, addr(2000 + r), 100 * HOUR_SECS, NOW);
    }
    assert_eq!(ring.score(host, NOW).reliability, prior.reliability);
}

#[test]
fn one_renter_cannot_move_a_score_by_more_than_its_cap() {
    let host = addr(1);
    let mut base = History::default();
    // Ten small credible renters, a mixed record.
    for r in 0..10 {
        let renter = addr(100 + r);
        base.credible(renter, addr(OTHER));
        base.good(host, renter, HOUR_SECS, NOW);
        if r % 3 == 0 {
            base.never(host, renter, NOW);
        }
    }
    let without = base.score(host, NOW);
    let whale = addr(7);
    for bad in [false, true] {
        let mut h = History {
            records: base.records.clone(),
        };
        h.credible(whale, addr(OTHER));
        for _ in 0..200 {
            if bad {
                h.never(host, whale, NOW);
            } else {
                h.good(host, whale, 24 * HOUR_SECS, NOW);
            }
        }
        let with = h.score(host, NOW);
        let moved = (with.reliability - without.reliability).abs();
        assert!(moved <= RENTER_CAP_BOUND, "bad={bad}: moved {moved}");
        // The bound is reached: the whale supplies exactly a quarter of all evidence.
        let report = host_report(&h.records, None, host, NOW, &Params::default());
        let whale_weight: f64 = report
            .contributions
            .iter()
            .filter(|c| c.renter == whale)
            .map(|c| c.weight)
            .sum();
        let share = whale_weight / (with.alpha + with.beta);
        assert!((share - 0.25).abs() < 1e-12, "share {share}");
        let target = if bad { 0.0 } else { 1.0 };
        let expected = 0.75 * without.reliability + 0.25 * target;
        assert!((with.reliability - expected).abs() < 1e-9);
    }
}

/// |Δ reliability| ≤ cap · |o − mean| ≤ cap.
const RENTER_CAP_BOUND: f64 = 0.25 + 1e-12;

#[test]
fn no_renter_exceeds_its_share_on_random_histories() {
    // SplitMix64, fixed seed.
    let mut state = 0x5EED_u64;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let host = addr(1);
    for _ in 0..200 {
        let mut h = History::default();
        let renters = 1 + next() % 8;
        for r in 0..renters {
            let renter = addr(100 + r);
            if next() % 4 != 0 {
                h.credible(renter, addr(OTHER));
            }
            for _ in 0..(1 + next() % 6) {
                let closed = NOW - next() % (120 * DAY_SECS);
                match next() % 3 {
                    0 => h.good(host, renter, 60 + next() % (48 * HOUR_SECS), closed),
                    1 => h.never(host, renter, closed),
                    _ => h.push(
                        host,
                        renter,
                        next() % (10 * HOUR_SECS),
                        CloseReason::HostClosed,
                        u128::from(next() % 10) * USD,
                        closed,
                    ),
                }
            }
        }
        let rep = host_report(&h.records, None, host, NOW, &Params::default());
        let total = rep.score.alpha + rep.score.beta;
        let mut per: HashMap<Address, f64> = HashMap::new();
        for c in &rep.contributions {
            *per.entry(c.renter).or_default() += c.weight;
        }
        for (r, w) in per {
            assert!(w <= 0.25 * total + 1e-9, "renter {r}: {w} of {total}");
        }
        assert!((0.0..=1.0).contains(&rep.score.reliability));
        assert!(rep.score.rank <= rep.score.reliability);
    }
}

#[test]
fn old_outcomes_decay() {
    let (host, renter) = (addr(1), addr(100));
    let mut h = History::default();
    h.credible(renter, addr(OTHER));
    h.never(host, renter, NOW);
    let p = Params::default();
    let fresh = h.score(host, NOW);
    // One half-life later the same lease weighs exactly half (credibility aside: the
    // renter's spending elsewhere left the window, so pin the check on the decay factor).
    let later = host_report(&h.records, None, host, NOW + p.half_life_secs, &p);
    let c = &later.contributions[0];
    assert!((c.decay - 0.5).abs() < 1e-15, "{c:?}");
    // A year on, the bad lease barely matters: the score is back near the prior.
    let mut old = History::default();
    old.credible(renter, addr(OTHER));
    old.never(host, renter, NOW - 365 * DAY_SECS);
    let aged = old.score(host, NOW);
    let prior = HostScore::new_host(&p).reliability;
    assert!(prior - fresh.reliability > 0.01);
    assert!(prior - aged.reliability < (prior - fresh.reliability) / 1000.0);
}

#[test]
fn host_close_counts_served_time_against_at_most_an_hour_lost() {
    let p = Params::default();
    let (host, renter) = (addr(1), addr(2));
    let mut h = History::default();
    // Served 3 h; 10 h of money left, of which 1 h counts as lost.
    h.push(
        host,
        renter,
        3 * HOUR_SECS,
        CloseReason::HostClosed,
        PRICE * u128::from(10 * HOUR_SECS),
        NOW,
    );
    let o = outcome(&h.records[0], &p);
    assert_eq!(o.kind, OutcomeKind::HostClosed);
    assert_eq!(o.value, PRICE * u128::from(4 * HOUR_SECS));
    assert!((o.good.unwrap() - 0.75).abs() < 1e-15);
    // Closed right after start: nothing served, an hour lost, like never starting.
    h.push(
        host,
        renter,
        0,
        CloseReason::HostClosed,
        PRICE * u128::from(10 * HOUR_SECS),
        NOW,
    );
    let o = outcome(&h.records[1], &p);
    assert_eq!(
        (o.value, o.good),
        (PRICE * u128::from(HOUR_SECS), Some(0.0))
    );
    // Cancelled and running leases are not scored.
    h.push(host, renter, 0, CloseReason::CancelledBeforeStart, 0, NOW);
    assert_eq!(outcome(&h.records[2], &p).good, None);
    let mut running = h.records[0].clone();
    running.end = None;
    assert_eq!(outcome(&running, &p).kind, OutcomeKind::Running);
}

#[test]
fn cap_factors_water_fill() {
    let w = HashMap::from([(addr(1), 12.0), (addr(2), 4.8), (addr(3), 0.0)]);
    let f = cap_factors(&w, 20.0, 0.25);
    // L = 0.25 · (20 + 4.8) / 0.75.
    let level = 0.25 * 24.8 / 0.75;
    assert!((f[&addr(1)] - level / 12.0).abs() < 1e-15);
    assert_eq!(f[&addr(2)], 1.0);
    assert_eq!(f[&addr(3)], 1.0);
    // Nobody above the cap: nothing changes.
    let small = HashMap::from([(addr(1), 1.0), (addr(2), 1.0)]);
    assert!(cap_factors(&small, 20.0, 0.25).values().all(|f| *f == 1.0));
}

/// The worked example of docs/reliability.md. Change both together.
#[test]
fn worked_example_of_the_docs() {
    let p = Params::default();
    let (host, other) = (addr(0xA), addr(0xB));
    let (r1, r2, r4) = (addr(1), addr(2), addr(4));
    // 2 tokens per hour = 2_000_000 / 3600 base units per second is not whole; the example
    // uses 555 base units per second (1.998 tokens per hour) and whole-second durations.
    let price = 555u128;
    let rec = |id: u8, renter, paid: u128, reason, refund: u128, closed_at: u64| LeaseRecord {
        lease_id: B256::with_last_byte(id),
        host,
        renter,
        price_per_second: price,
        paid,
        opened_at: closed_at - 40 * HOUR_SECS,
        started_at: None,
        end: Some(LeaseEnd {
            closed_at,
            closed_by: renter,
            reason,
            refund,
        }),
        receipts: Vec::new(),
    };
    let records = vec![
        // R1 paid 100 tokens elsewhere; R2 paid 10 tokens elsewhere; R4 is a fresh wallet.
        rec(
            1,
            r1,
            100 * USD,
            CloseReason::RenterClosed,
            0,
            NOW - DAY_SECS,
        ),
        rec(
            2,
            r2,
            10 * USD,
            CloseReason::RenterClosed,
            0,
            NOW - DAY_SECS,
        ),
        // At the host: R1's 20-token job that ended normally 30 days ago.
        rec(
            3,
            r1,
            20 * USD,
            CloseReason::RenterClosed,
            0,
            NOW - 30 * DAY_SECS,
        ),
        // R1's lease the host never started, today.
        rec(4, r1, 0, CloseReason::NeverStarted, 0, NOW),
        // R2's lease the host closed after 10 tokens of service, 6 tokens still deposited.
        rec(5, r2, 10 * USD, CloseReason::HostClosed, 6 * USD, NOW),
        // R4's 50-token lease: a fresh wallet, so no weight.
        rec(6, r4, 50 * USD, CloseReason::RenterClosed, 0, NOW),
    ];
    let mut records = records;
    records[0].host = other;
    records[1].host = other;
    let rep = host_report(&records, None, host, NOW, &p);
    let c: HashMap<u8, &Contribution> = rep
        .contributions
        .iter()
        .map(|c| (c.lease_id[31], c))
        .collect();
    let near = |a: f64, b: f64| (a - b).abs() < 1e-9;
    // Lease 3: value 20, decay 0.5, credibility 1 → 10 before the cap.
    assert!(near(c[&3].decay, 0.5) && near(c[&3].credibility, 1.0));
    // Lease 4: one hour at 555/s = 1.998 tokens, outcome 0.
    assert_eq!(c[&4].outcome.value, 1_998_000);
    // Lease 5: value 10 + min(6, 1.998) = 11.998, outcome 10/11.998, credibility 0.4.
    assert_eq!(c[&5].outcome.value, 11_998_000);
    assert!(near(c[&5].credibility, 0.4));
    assert!(near(c[&5].weight, 11.998 * 0.4));
    // Lease 6: credibility 0.
    assert_eq!(c[&6].weight, 0.0);
    // R1 totals 10 + 1.998 = 11.998 > a quarter of everything, so R1 is capped at
    // L = 0.25 · (20 + 4.7992) / 0.75 = 8.266_4.
    let level = 0.25 * (20.0 + 11.998 * 0.4) / 0.75;
    assert!(near(level, 8.266_4));
    assert!(near(c[&3].cap_factor, level / 11.998));
    let s = &rep.score;
    assert!(near(s.alpha, 12.0 + 10.0 * level / 11.998 + 4.0), "{s:?}");
    assert!(near(s.beta, 8.0 + 1.998 * level / 11.998 + 0.7992), "{s:?}");
    assert!(near(s.alpha, 22.889_814_969_161_527), "{}", s.alpha);
    assert!(near(s.beta, 10.175_785_030_838_473), "{}", s.beta);
    assert!(
        near(s.reliability, 0.692_254_638_329_911_7),
        "{}",
        s.reliability
    );
    assert!(near(s.rank, RANK_OF_EXAMPLE), "{}", s.rank);
    assert_eq!(s.leases, 4);
    assert_eq!(s.volume, 80 * USD);
    assert_eq!(
        (
            s.outcomes.normal_end,
            s.outcomes.never_started,
            s.outcomes.host_closed
        ),
        (2, 1, 1)
    );
}

/// 10th percentile of Beta(22.889_815…, 10.175_785…), by bisection with mpmath at 30 digits.
const RANK_OF_EXAMPLE: f64 = 0.587_628_525_893_415_5;

/// Gives the last lease of `h` receipts, as (from, to) offsets from its start, probes, reachable.
fn with_receipts(h: &mut History, receipts: &[(u64, u64, u32, u32)]) {
    let r = h.records.last_mut().unwrap();
    let start = r.started_at.unwrap();
    r.receipts = receipts
        .iter()
        .map(|&(from, to, probes, reachable)| crate::coverage::Observed {
            start: start + from,
            end: start + to,
            probes,
            reachable,
        })
        .collect();
}

#[test]
fn receipts_showing_the_workload_unreachable_lower_a_normal_end_and_reachable_ones_do_not() {
    let (renter, host) = (addr(1), addr(2));
    let base = |receipts: &[(u64, u64, u32, u32)]| {
        let mut h = History::default();
        h.credible(renter, addr(OTHER));
        h.good(host, renter, 10 * HOUR_SECS, NOW);
        with_receipts(&mut h, receipts);
        h
    };
    let none = base(&[]).score(host, NOW);
    let reachable = base(&[(0, 10 * HOUR_SECS, 600, 600)]).score(host, NOW);
    let unreachable = base(&[(0, 10 * HOUR_SECS, 600, 0)]).score(host, NOW);
    let half_seen = base(&[(0, 5 * HOUR_SECS, 300, 150)]).score(host, NOW);
    assert_eq!(none, reachable);
    assert!(unreachable.reliability < half_seen.reliability);
    assert!(half_seen.reliability < none.reliability);
    // Entirely unreachable: the lease counts like a failure of its full value.
    let r = &base(&[(0, 10 * HOUR_SECS, 600, 0)]).records;
    assert_eq!(
        outcome(r.last().unwrap(), &Params::default()).good,
        Some(0.0)
    );
}

#[test]
fn receipts_refine_the_served_part_of_a_host_close() {
    let (renter, host) = (addr(1), addr(2));
    let mut h = History::default();
    // Served 2 h, then closed by the host with 5 h of money left: o = 2 / 3 without receipts.
    h.push(
        host,
        renter,
        2 * HOUR_SECS,
        CloseReason::HostClosed,
        PRICE * u128::from(5 * HOUR_SECS),
        NOW,
    );
    let p = Params::default();
    let before = outcome(h.records.last().unwrap(), &p).good.unwrap();
    assert!((before - 2.0 / 3.0).abs() < 1e-12);
    // The renter saw the first of the two hours unreachable: the served share halves.
    with_receipts(
        &mut h,
        &[(0, HOUR_SECS, 60, 0), (HOUR_SECS, 2 * HOUR_SECS, 60, 60)],
    );
    let after = outcome(h.records.last().unwrap(), &p).good.unwrap();
    assert!((after - 1.0 / 3.0).abs() < 1e-12);
}

#[test]
fn receipts_example_of_the_docs() {
    // docs/reliability.md, "Receipts": 4 billed hours; session 1 saw hours 0–2 all reachable
    // (120 of 120 probes), session 2 saw hour 2–3 with 15 of 60 probes reachable, hour 3–4 was
    // not observed. Unreachable = 3600 · 45/60 = 2700 s; o = 1 − 2700 / 14400 = 0.8125.
    let (renter, host) = (addr(1), addr(2));
    let mut h = History::default();
    h.good(host, renter, 4 * HOUR_SECS, NOW);
    with_receipts(
        &mut h,
        &[
            (0, 3600, 60, 60),
            (0, 2 * HOUR_SECS, 120, 120),
            (2 * HOUR_SECS, 3 * HOUR_SECS, 60, 15),
        ],
    );
    let o = outcome(h.records.last().unwrap(), &Params::default());
    assert_eq!(o.coverage.receipts, 3);
    assert_eq!(o.coverage.observed_secs, 3 * HOUR_SECS);
    assert_eq!(o.coverage.unreachable_secs, 2700.0);
    assert_eq!(o.good, Some(0.8125));
}
