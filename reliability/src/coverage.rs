//! What renter-signed receipts say about a lease's billed time (see `docs/reliability.md`,
//! "Receipts").
//!
//! Each verified receipt says: from `start` to `end` the renter probed the workload `probes`
//! times and reached it `reachable` times. Receipts are clipped to the billed time
//! [`startedAt`, `closedAt`]; where receipts overlap (a prober signs cumulative receipts, so
//! one session's receipts share their start) the one that reaches furthest counts and the
//! others count only beyond it. Within a receipt the probes are taken as evenly spread, so a
//! clipped receipt keeps its share of failures.
//!
//! The result is the time the renter *saw* the workload unreachable. Time nobody observed
//! (the renter was offline) is not held against the host: a renter that proves nothing either
//! way leaves the outcome where the chain puts it.

/// One verified receipt's window and counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observed {
    /// First second of the window (unix seconds).
    pub start: u64,
    /// Last second of the window (unix seconds).
    pub end: u64,
    /// Probes made in the window (≥ 1).
    pub probes: u32,
    /// Probes that reached the workload (≤ `probes`).
    pub reachable: u32,
}

/// What a lease's receipts cover of its billed time.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Coverage {
    /// Verified receipts the lease has (whether or not they fall in the billed time).
    pub receipts: usize,
    /// Billed seconds some receipt observed.
    pub observed_secs: u64,
    /// Of those, seconds the workload was seen unreachable (observed time × share of failed
    /// probes).
    pub unreachable_secs: f64,
    /// Billed seconds (`closedAt − startedAt`), 0 when unknown.
    pub billed_secs: u64,
}

impl Coverage {
    /// The share of billed time *not* shown unreachable: 1 − unreachable / billed, in [0, 1].
    /// 1 without receipts or without billed time.
    pub fn served_share(&self) -> f64 {
        if self.billed_secs == 0 {
            return 1.0;
        }
        (1.0 - self.unreachable_secs / self.billed_secs as f64).clamp(0.0, 1.0)
    }
}

/// The coverage of billed time [`started`, `closed`] by `receipts`.
pub fn coverage(receipts: &[Observed], started: u64, closed: u64) -> Coverage {
    let mut out = Coverage {
        receipts: receipts.len(),
        billed_secs: closed.saturating_sub(started),
        ..Coverage::default()
    };
    let mut windows: Vec<&Observed> = receipts
        .iter()
        .filter(|r| r.end > r.start && r.probes > 0 && r.reachable <= r.probes)
        .collect();
    // Earliest first; of one start, the furthest-reaching first, so a session's earlier
    // (shorter) cumulative receipts add nothing.
    windows.sort_by(|a, b| a.start.cmp(&b.start).then(b.end.cmp(&a.end)));
    let mut covered_to = started;
    for r in windows {
        let from = r.start.max(covered_to);
        let to = r.end.min(closed);
        if to <= from {
            continue;
        }
        let secs = to - from;
        let failed = f64::from(r.probes - r.reachable) / f64::from(r.probes);
        out.observed_secs += secs;
        out.unreachable_secs += secs as f64 * failed;
        covered_to = to;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(start: u64, end: u64, probes: u32, reachable: u32) -> Observed {
        Observed {
            start,
            end,
            probes,
            reachable,
        }
    }

    #[test]
    fn no_receipts_leave_the_whole_share() {
        let c = coverage(&[], 1000, 4600);
        assert_eq!(c.served_share(), 1.0);
        assert_eq!((c.receipts, c.observed_secs, c.billed_secs), (0, 0, 3600));
    }

    #[test]
    fn reachable_receipts_over_all_billed_time_keep_the_whole_share() {
        let c = coverage(&[obs(1000, 4600, 60, 60)], 1000, 4600);
        assert_eq!(c.observed_secs, 3600);
        assert_eq!(c.served_share(), 1.0);
    }

    #[test]
    fn unreachable_half_of_the_billed_time_halves_the_share() {
        // Two sessions: the first hour fine, the second never reached.
        let c = coverage(&[obs(0, 3600, 60, 60), obs(3600, 7200, 60, 0)], 0, 7200);
        assert_eq!(c.observed_secs, 7200);
        assert_eq!(c.unreachable_secs, 3600.0);
        assert_eq!(c.served_share(), 0.5);
    }

    #[test]
    fn cumulative_receipts_of_one_session_count_once() {
        // Every window the prober re-signed from its start; only the newest adds anything.
        let session: Vec<Observed> = (1..=6u32)
            .map(|k| obs(0, 600 * u64::from(k), 10 * k, 9 * k))
            .collect();
        let c = coverage(&session, 0, 3600);
        assert_eq!(c.receipts, 6);
        assert_eq!(c.observed_secs, 3600);
        // 6 of 60 probes failed: a tenth of the hour.
        assert!((c.unreachable_secs - 360.0).abs() < 1e-9);
        assert!((c.served_share() - 0.9).abs() < 1e-12);
    }

    #[test]
    fn time_outside_the_billed_window_and_unobserved_time_count_for_nothing() {
        // Observed 1000 s before the start (not billed) and 1000 s after the close; the billed
        // hour in between was only half observed, all of it unreachable.
        let c = coverage(
            &[obs(0, 1000 + 1800, 10, 0), obs(4600, 5600, 10, 0)],
            1000,
            4600,
        );
        assert_eq!(c.observed_secs, 1800);
        assert_eq!(c.served_share(), 0.5);
    }

    #[test]
    fn overlapping_sessions_do_not_count_the_overlap_twice() {
        // Two probers ran at once (say `rent` and `wait`); the overlap [1800, 3600] counts once,
        // with the counts of the receipt that started first.
        let c = coverage(&[obs(0, 3600, 10, 10), obs(1800, 7200, 10, 0)], 0, 7200);
        assert_eq!(c.observed_secs, 7200);
        assert_eq!(c.unreachable_secs, 3600.0);
    }

    #[test]
    fn nonsense_receipts_are_skipped() {
        let c = coverage(
            &[obs(10, 10, 1, 0), obs(0, 100, 0, 0), obs(0, 100, 1, 2)],
            0,
            100,
        );
        assert_eq!((c.observed_secs, c.served_share()), (0, 1.0));
    }
}
