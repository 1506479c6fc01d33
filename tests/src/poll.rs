//! Bounded polling. Most of what an end-to-end test waits for sends no notification (a lease
//! state over p2p, a log line, a port that stops answering), so the tests ask again every
//! [`PAUSE`] until it holds, and fail once a limit has passed.

use std::time::Duration;

/// Pause between two tries of [`poll`].
pub const PAUSE: Duration = Duration::from_millis(100);

/// Runs `f` every [`PAUSE`] until it returns `Some`, for at most `limit`; `None` if it never
/// did.
pub async fn poll<T>(limit: Duration, f: impl AsyncFnMut() -> Option<T>) -> Option<T> {
    poll_every(limit, PAUSE, f).await
}

/// [`poll`] with another pause (for tries that are expensive, such as a CLI run).
pub async fn poll_every<T>(
    limit: Duration,
    every: Duration,
    mut f: impl AsyncFnMut() -> Option<T>,
) -> Option<T> {
    tokio::time::timeout(limit, async {
        loop {
            if let Some(v) = f().await {
                return v;
            }
            tokio::time::sleep(every).await;
        }
    })
    .await
    .ok()
}

/// Waits until `log()` holds `what` at least `n` times; fails with the log after `limit`.
pub async fn wait_log_count(log: impl Fn() -> String, what: &str, n: usize, limit: Duration) {
    let found = poll(limit, async || {
        (log().matches(what).count() >= n).then_some(())
    })
    .await;
    assert!(
        found.is_some(),
        "fewer than {n} {what:?} in the log:\n{}",
        log()
    );
}

/// Waits until `log()` contains `what`; fails with the log after `limit`.
pub async fn wait_log(log: impl Fn() -> String, what: &str, limit: Duration) {
    wait_log_count(log, what, 1, limit).await;
}

/// Seconds since the Unix epoch on the wall clock (the node's clock for quotes and billing).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Waits until the wall clock is past `ts` (a Unix time in seconds), for at most `limit`.
pub async fn wait_wall_clock_past(ts: u64, limit: Duration) {
    let passed = poll(limit, async || (unix_now() > ts).then_some(())).await;
    assert!(
        passed.is_some(),
        "the wall clock did not pass {ts} within {limit:?} (now {})",
        unix_now()
    );
}
