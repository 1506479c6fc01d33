//! Per-peer token buckets: how much gossip and how many book pages one peer may make us handle.

use std::collections::HashMap;
use std::hash::Hash;

use tokio::time::Instant;

/// A token bucket in thousandths of a token, so refills need no floating point.
#[derive(Debug, Clone)]
struct Bucket {
    milli_tokens: u64,
    last: Instant,
}

/// One bucket per key (peer). Callers remove a key when the peer disconnects, so the map is
/// bounded by the connection limit.
#[derive(Debug)]
pub(crate) struct RateLimiter<K> {
    per_sec: u64,
    burst_milli: u64,
    buckets: HashMap<K, Bucket>,
}

impl<K: Hash + Eq> RateLimiter<K> {
    /// `per_sec` tokens per second on average, `burst` at most at once.
    pub(crate) fn new(per_sec: u32, burst: u32) -> Self {
        Self {
            per_sec: u64::from(per_sec),
            burst_milli: u64::from(burst.max(1)) * 1000,
            buckets: HashMap::new(),
        }
    }

    /// Takes one token for `key` at `now`; false when the bucket is empty.
    pub(crate) fn try_take(&mut self, key: K, now: Instant) -> bool {
        let (per_sec, burst) = (self.per_sec, self.burst_milli);
        let b = self.buckets.entry(key).or_insert(Bucket {
            milli_tokens: burst,
            last: now,
        });
        // `per_sec` tokens per second = `per_sec` milli-tokens per millisecond.
        let elapsed_ms =
            u64::try_from(now.saturating_duration_since(b.last).as_millis()).unwrap_or(u64::MAX);
        b.milli_tokens = b
            .milli_tokens
            .saturating_add(elapsed_ms.saturating_mul(per_sec))
            .min(burst);
        b.last = now;
        if b.milli_tokens >= 1000 {
            b.milli_tokens -= 1000;
            true
        } else {
            false
        }
    }

    /// Forgets `key` (its peer disconnected).
    pub(crate) fn remove(&mut self, key: &K) {
        self.buckets.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_refill_at_the_rate() {
        let mut r = RateLimiter::new(10, 3);
        let t0 = Instant::now();
        assert!((0..3).all(|_| r.try_take("a", t0)));
        assert!(!r.try_take("a", t0));
        // Another key has its own bucket.
        assert!(r.try_take("b", t0));
        // 10 per second: one token after 100 ms, not before.
        assert!(!r.try_take("a", t0 + Duration::from_millis(99)));
        assert!(r.try_take("a", t0 + Duration::from_millis(200)));
        // Refill never exceeds the burst.
        let later = t0 + Duration::from_secs(60);
        assert!((0..3).all(|_| r.try_take("a", later)));
        assert!(!r.try_take("a", later));
    }
}
