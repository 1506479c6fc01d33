//! The node's reliability index: [`gpuflow_reliability::Indexer`] over the whole escrow (every
//! host's lease events, not only this host's), kept in `<data_dir>/reliability.db` and followed
//! by a background task while the node runs with a chain RPC. The API reads it
//! (`GET /reliability`, `GET /hosts/{address}`, the `gpuflow_host_reliability*` and
//! `gpuflow_indexer_block` gauges) through a [`ScoreIndex`].
//!
//! The task calls [`Indexer::sync_once`] in a loop rather than [`Indexer::run`] so that it can
//! publish its progress (indexed block, chain head, caught up once) on a `watch` channel; like
//! `run`, it retries every failure with jittered exponential backoff and only logs it, and it
//! stops as soon as the node's shutdown token fires, even in the middle of an RPC call (an
//! interrupted range is never committed: the store writes each range in one transaction).

use std::time::Duration;

use alloy::primitives::Address;
use gpuflow_reliability::{Indexer, IndexerConfig, IndexerError, ScoreReader};
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::chain::backoff::Backoff;
use crate::config::Config;

/// The reliability crate, for code that reads a [`ScoreIndex`] (and the end-to-end tests,
/// which recompute the node's answers with the same formula).
pub use gpuflow_reliability as reliability;

/// File name of the index under the data directory.
pub const DB_FILE: &str = "reliability.db";
/// Wait between polls once the index has caught up (each poll is one `eth_blockNumber` and one
/// block header when nothing happened).
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);
/// First retry delay after a failed step; doubles per failure.
const BACKOFF_MIN: Duration = Duration::from_millis(500);
/// Longest retry delay.
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// Where the index stands, as the API shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IndexProgress {
    /// Every escrow event up to this block is indexed; `None` before the first range.
    pub block: Option<u64>,
    /// The chain head the RPC last reported; `None` before the first answer.
    pub head: Option<u64>,
    /// The index caught up with the chain at least once since the node started. Scores are
    /// served only from then on: before, a host would look new because its leases are not
    /// indexed yet.
    pub synced: bool,
    /// The last step's error, cleared by the next successful step.
    pub error: Option<String>,
}

/// The index as the API reads it: scores, progress, and which host this node is. Cheap to
/// clone; reads while the task writes (SQLite WAL).
#[derive(Debug, Clone)]
pub struct ScoreIndex {
    reader: ScoreReader,
    progress: watch::Receiver<IndexProgress>,
    host: Address,
}

impl ScoreIndex {
    /// An index read through `reader`, whose progress comes from `progress`, for the node whose
    /// host wallet is `host`.
    pub fn new(
        reader: ScoreReader,
        progress: watch::Receiver<IndexProgress>,
        host: Address,
    ) -> Self {
        Self {
            reader,
            progress,
            host,
        }
    }

    /// The scores.
    pub fn reader(&self) -> &ScoreReader {
        &self.reader
    }

    /// The latest progress.
    pub fn progress(&self) -> IndexProgress {
        self.progress.borrow().clone()
    }

    /// This node's host wallet.
    pub fn host(&self) -> Address {
        self.host
    }
}

/// Opens `<data_dir>/reliability.db` for the escrow of `config` (from its `deploy_block`) and
/// spawns the task that follows `rpc_url` into `tasks` until `stop` fires. No RPC call is made
/// here: an unreachable chain is retried by the task, never a start-up failure.
pub async fn start(
    config: &Config,
    host: Address,
    rpc_url: &str,
    tasks: &mut JoinSet<()>,
    stop: CancellationToken,
) -> Result<ScoreIndex, IndexerError> {
    let cfg = IndexerConfig {
        poll_interval: POLL_INTERVAL,
        ..IndexerConfig::new(config.chain.escrow, config.chain.deploy_block)
    };
    let url = rpc_url
        .parse::<alloy::transports::http::reqwest::Url>()
        .map_err(|e| IndexerError::BadUrl {
            url: rpc_url.to_owned(),
            why: e.to_string(),
        })?;
    // Every request bounded, like the engine's: a frozen RPC fails calls, which are retried.
    let provider = crate::chain::tx::read_provider(url);
    let db = config.data_dir.join(DB_FILE);
    // Owner-only like node.db, whatever existed (the reliability store sets its own 5 s busy
    // timeout); a failure here is only worth a warning, the data is public chain history.
    let private = || {
        if let Err(e) = crate::store::make_private(&db) {
            tracing::warn!(target: "reliability", path = %db.display(), error = %e, "cannot make the reliability index owner-only");
        }
    };
    private();
    let indexer = Indexer::open(&db, provider, cfg).await?;
    private();
    let (tx, rx) = watch::channel(IndexProgress::default());
    let index = ScoreIndex::new(indexer.reader(), rx, host);
    // Nodes started together should not retry in step.
    let seed = u64::from_be_bytes(host.0[12..20].try_into().unwrap_or_default());
    tasks.spawn(follow(indexer, tx, POLL_INTERVAL, seed, stop));
    Ok(index)
}

/// Syncs `indexer` until `stop` fires, publishing progress on `progress` after every step and
/// sleeping `poll` once caught up. Failures are logged and retried with backoff.
pub(crate) async fn follow(
    mut indexer: Indexer,
    progress: watch::Sender<IndexProgress>,
    poll: Duration,
    seed: u64,
    stop: CancellationToken,
) {
    let mut backoff = Backoff::new(BACKOFF_MIN, BACKOFF_MAX, seed);
    let mut failing = false;
    loop {
        let step = tokio::select! {
            () = stop.cancelled() => break,
            r = indexer.sync_once() => r,
        };
        let wait = match step {
            Ok(p) => {
                backoff.reset();
                if failing {
                    tracing::info!(target: "reliability", block = ?p.cursor, "reliability index reaches the chain again");
                    failing = false;
                }
                let first = p.caught_up && !progress.borrow().synced;
                progress.send_modify(|s| {
                    s.block = p.cursor;
                    s.head = Some(p.head);
                    s.synced |= p.caught_up;
                    s.error = None;
                });
                if first {
                    tracing::info!(target: "reliability", block = ?p.cursor, head = p.head, "reliability index caught up with the chain");
                }
                if p.caught_up { poll } else { Duration::ZERO }
            }
            Err(e) => {
                let d = backoff.next_delay();
                tracing::warn!(target: "reliability", error = %e, retry_in_ms = d.as_millis(), "reliability index step failed");
                failing = true;
                progress.send_modify(|s| s.error = Some(e.to_string()));
                d
            }
        };
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(wait) => {}
        }
    }
    tracing::info!(target: "reliability", "reliability index stopped");
}

#[cfg(test)]
#[path = "scores_mock.rs"]
pub(crate) mod mock;

#[cfg(test)]
#[path = "scores_tests.rs"]
mod tests;
