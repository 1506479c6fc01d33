//! The indexer's sync loop: one range per step, reorg rollback, and the follow-forever task
//! with backoff (the module docs of [`super`] describe the protocol).

use std::collections::HashMap;
use std::time::Duration;

use alloy::primitives::{Address, B256};
use alloy::providers::Provider;
use alloy::rpc::types::Filter;
use tokio_util::sync::CancellationToken;

use super::{Indexer, IndexerError, SyncProgress, rpc};
use crate::backoff::Backoff;
use crate::events::{self, Event, INDEXED, Place};
use crate::store::{BlockRef, Identity};

impl Indexer {
    /// Scans one range (or rolls back one reorg). Call until `caught_up`.
    #[tracing::instrument(target = "reliability", skip_all)]
    pub async fn sync_once(&mut self) -> Result<SyncProgress, IndexerError> {
        if !self.initialised {
            self.init().await?;
        }
        let store = self.reader.store.clone();
        let head = self
            .provider
            .get_block_number()
            .await
            .map_err(rpc("eth_blockNumber"))?;
        let target = head.saturating_sub(self.confirmations);
        let cursor = store.cursor().await?;
        let mut progress = SyncProgress {
            head,
            target,
            cursor: cursor.map(|c| c.number),
            ..Default::default()
        };
        let from = cursor.map_or(self.config.deploy_block, |c| c.number + 1);
        if from > target {
            if let Some(c) = cursor
                && self.block(c.number).await?.map(|b| b.0) != Some(c.hash)
            {
                return self.reorg(progress).await;
            }
            progress.caught_up = true;
            return Ok(progress);
        }
        let to = target.min(from.saturating_add(self.config.max_range.max(1) - 1));
        // `to` is read before and after the logs: if it did not change, neither did any of
        // its ancestors, so the parent check, the logs and the hashes describe one chain.
        let to_first = if to == from {
            None
        } else {
            Some(
                self.block(to)
                    .await?
                    .ok_or(IndexerError::MissingBlock(to))?
                    .0,
            )
        };
        let (from_hash, parent, from_ts) = self
            .block(from)
            .await?
            .ok_or(IndexerError::MissingBlock(from))?;
        if let Some(c) = cursor
            && parent != c.hash
        {
            return self.reorg(progress).await;
        }
        let to_hash = to_first.unwrap_or(from_hash);
        let filter = Filter::new()
            .address(self.config.escrow)
            .from_block(from)
            .to_block(to)
            .event_signature(INDEXED.to_vec());
        let logs = self
            .provider
            .get_logs(&filter)
            .await
            .map_err(rpc("eth_getLogs"))?;
        if self.block(to).await?.map(|b| b.0) != Some(to_hash) {
            return Err(IndexerError::ChainMoved { from, to });
        }
        let mut events: Vec<(Place, Event)> = Vec::with_capacity(logs.len());
        for log in &logs {
            match events::decode(log, self.config.escrow, from, to) {
                Ok(e) => events.push(e),
                Err(why) => {
                    progress.skipped += 1;
                    tracing::warn!(target: "reliability", block = ?log.block_number, tx = ?log.transaction_hash, %why, "skipping an escrow log the RPC returned");
                }
            }
        }
        // Opening times come from the block; most RPCs send them with the log.
        let mut timestamps: HashMap<u64, u64> = HashMap::from([(from, from_ts)]);
        for (place, event) in &mut events {
            if !matches!(event, Event::Opened { .. }) || place.timestamp.is_some() {
                continue;
            }
            let ts = match timestamps.get(&place.block) {
                Some(ts) => *ts,
                None => {
                    let ts = self
                        .block(place.block)
                        .await?
                        .ok_or(IndexerError::MissingBlock(place.block))?
                        .2;
                    timestamps.insert(place.block, ts);
                    ts
                }
            };
            place.timestamp = Some(ts);
        }
        events.sort_by_key(|(p, _)| (p.block, p.log_index));
        let blocks = [
            BlockRef {
                number: from,
                hash: from_hash,
            },
            BlockRef {
                number: to,
                hash: to_hash,
            },
        ];
        store
            .commit(&events, &blocks, blocks[1], self.config.reorg_window)
            .await?;
        progress.events = events.len();
        progress.cursor = Some(to);
        progress.caught_up = to >= target;
        tracing::debug!(target: "reliability", from, to, events = events.len(), "range indexed");
        Ok(progress)
    }

    /// Rolls back to the newest remembered block the chain still has, or starts over.
    async fn reorg(&mut self, mut progress: SyncProgress) -> Result<SyncProgress, IndexerError> {
        let store = self.reader.store.clone();
        let mut fork = None;
        for (&n, &h) in store.recent().await?.iter().rev() {
            if self.block(n).await?.map(|b| b.0) == Some(h) {
                fork = Some(BlockRef { number: n, hash: h });
                break;
            }
        }
        match fork {
            Some(f) => {
                tracing::warn!(target: "reliability", fork = f.number, "chain reorganised; rolling the reliability index back");
                store.rollback(f).await?;
                progress.reorg = Some(f.number);
                progress.cursor = Some(f.number);
            }
            None => {
                tracing::warn!(target: "reliability", "chain replaced beyond the remembered blocks; re-indexing from the deployment block");
                // Forget the identity so `init` starts over (and re-reads the decimals).
                store
                    .reset(&Identity {
                        chain_id: 0,
                        escrow: Address::ZERO,
                        genesis: B256::ZERO,
                        deploy_block: 0,
                    })
                    .await?;
                self.initialised = false;
                progress.reorg = Some(self.config.deploy_block.saturating_sub(1));
                progress.cursor = None;
            }
        }
        Ok(progress)
    }

    /// Syncs until caught up with the target, calling `on_progress` after each step.
    pub async fn sync_to_head(
        &mut self,
        mut on_progress: impl FnMut(&SyncProgress),
    ) -> Result<SyncProgress, IndexerError> {
        loop {
            let p = self.sync_once().await?;
            on_progress(&p);
            if p.caught_up {
                return Ok(p);
            }
        }
    }

    /// Follows the chain until `cancel` fires: syncs, sleeps `poll_interval` when caught up,
    /// and retries failures with exponential backoff and jitter (never a tight loop).
    #[tracing::instrument(name = "reliability_indexer", skip_all, fields(escrow = %self.config.escrow))]
    pub async fn run(mut self, cancel: CancellationToken) {
        let mut backoff = Backoff::new(
            self.config.backoff_min,
            self.config.backoff_max,
            self.config.jitter_seed,
        );
        loop {
            let wait = match self.sync_once().await {
                Ok(p) if p.caught_up => {
                    backoff.reset();
                    self.config.poll_interval
                }
                Ok(_) => {
                    backoff.reset();
                    Duration::ZERO
                }
                Err(e) => {
                    let d = backoff.next_delay();
                    tracing::warn!(target: "reliability", error = %e, retry_in_ms = d.as_millis(), "reliability indexer step failed");
                    d
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(wait) => {}
            }
        }
        tracing::info!(target: "reliability", "reliability indexer stopped");
    }
}
