//! Retry delays for chain followers (the node's watcher, the reliability indexer):
//! exponential, jittered, seedable. Pure arithmetic, no clock and no I/O.

use std::time::Duration;

/// Exponential backoff with "equal jitter": each delay is uniform in [d/2, d] where d doubles
/// from `min` up to `max`. Never below `min / 2`, so never a tight loop.
#[derive(Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
    rng: u64,
}

impl Backoff {
    /// Delays from `min` doubling up to `max`; `seed` makes the jitter reproducible.
    pub fn new(min: Duration, max: Duration, seed: u64) -> Self {
        Self {
            min: min.max(Duration::from_millis(1)),
            max: max.max(min),
            attempt: 0,
            rng: seed,
        }
    }

    /// Back to `min` (after a success).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// SplitMix64: tiny, seedable, good enough for jitter.
    fn next_u64(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// The next delay to wait before retrying.
    pub fn next_delay(&mut self) -> Duration {
        let factor = 1u32 << self.attempt.min(20);
        let d = self.min.saturating_mul(factor).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let half = d / 2;
        let span = u64::try_from((d - half).as_nanos()).unwrap_or(u64::MAX);
        let jitter = if span == 0 {
            0
        } else {
            self.next_u64() % (span + 1)
        };
        half + Duration::from_nanos(jitter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_caps_and_resets() {
        let min = Duration::from_millis(100);
        let max = Duration::from_secs(2);
        let mut b = Backoff::new(min, max, 42);
        let mut ceilings = vec![];
        for i in 0..10u32 {
            let ceiling = (min * 2u32.pow(i)).min(max);
            let d = b.next_delay();
            assert!(
                d >= ceiling / 2 && d <= ceiling,
                "attempt {i}: {d:?} vs {ceiling:?}"
            );
            ceilings.push(ceiling);
        }
        assert_eq!(*ceilings.last().unwrap(), max);
        b.reset();
        assert!(b.next_delay() <= min);
        // Same seed, same delays; another seed, other delays.
        let run = |seed| {
            let mut b = Backoff::new(min, max, seed);
            (0..5).map(|_| b.next_delay()).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }
}
