//! The chain watcher: follows the escrow's lease events for one host.
//!
//! One task ([`Watcher::run`]) owns the cursor; the rest of the node reads its progress through
//! a [`WatcherHandle`] and receives [`ChainEvent`]s on a bounded channel.
//!
//! Each step reads the head, and scans the next range of at most `max_range` blocks that are
//! `confirmations` deep: one `eth_getLogs` for `LeaseOpened`/`LeaseStarted`/`Withdrawn`/
//! `LeaseClosed` with `host` as topic 2, one for `LeaseToppedUp` (which does not name the host;
//! matched against the leases this host has open). The range is committed to SQLite (cursor,
//! block hashes, lease set) in one transaction after its events were sent.
//!
//! Confirmations are 2 by default, and 0 on a devnet chain ([`DEVNET_CHAIN_IDS`]): an anvil
//! that mines only per transaction may add no block for minutes, so a lease opened without the
//! renter's hint would wait for unrelated transactions, past the accept timeout on an idle
//! chain. Acting at the head is safe there: the engine re-reads every lease from the chain
//! before it acts, and the reorg rollback below still applies.
//!
//! Reorgs: before scanning, the watcher checks that the next block's parent is the cursor's
//! hash (and, when idle, that the cursor block is still canonical). If not, it walks back
//! through the ~64 block hashes it remembers to the last one the chain still has, emits
//! [`ChainEvent::Reorg`], rolls the cursor back to that fork point and scans again from there,
//! so the new chain's events are emitted. The range's last block is read before everything
//! else and again after the logs; if it changed meanwhile, the range is dropped and scanned
//! again.
//!
//! Delivery is at least once: events are sent before their range is committed, so a crash (or
//! a cancel while a send waits) between the two re-sends that range on restart. A clean restart
//! neither repeats nor misses anything. [`EventMeta`](super::events::EventMeta) lets a consumer
//! drop repeats.
//!
//! RPC failures never end the task: it retries with exponential backoff and jitter (never a
//! tight loop), and reports the error in its status.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use alloy::eips::BlockNumberOrTag;
use alloy::primitives::{Address, B256};
use alloy::providers::Provider;
use alloy::rpc::types::{Filter, Log};
use alloy::transports::TransportError;
use sqlx::SqlitePool;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::backoff::Backoff;
use super::cursor::{BlockRef, CursorError, CursorStore, RangeCommit};
use super::events::{BY_HOST, ChainEvent, DecodeError, LeaseEvent, TOPPED_UP, decode};
use super::unix_now;

/// Most lease ids sent as one `eth_getLogs` topic filter.
const MAX_TOPIC_FILTER: usize = 100;

/// Chain ids of local development chains (anvil's and Hardhat's 31337), where events are acted
/// on at the head: see [`default_confirmations`].
pub const DEVNET_CHAIN_IDS: &[u64] = &[31_337];

/// Confirmations an event waits for by default on `chain_id`: none on a devnet chain (blocks
/// come only with transactions, and nobody reorganises it but a test), 2 elsewhere.
pub fn default_confirmations(chain_id: u64) -> u64 {
    if DEVNET_CHAIN_IDS.contains(&chain_id) {
        0
    } else {
        2
    }
}

/// How the watcher follows the chain.
#[derive(Debug, Clone)]
pub struct WatcherConfig {
    /// Chain id the RPC must report (checked at start; guards against a wrong `--rpc-url`).
    pub chain_id: u64,
    /// The escrow contract.
    pub escrow: Address,
    /// The host wallet whose leases are followed.
    pub host: Address,
    /// First block to scan when there is no cursor yet (the escrow's deployment block).
    pub start_block: u64,
    /// Blocks an event must be buried under before it is emitted (0: at the head).
    pub confirmations: u64,
    /// Most blocks per `eth_getLogs` (providers cap ranges, often at 1k–10k).
    pub max_range: u64,
    /// Wait between polls when caught up.
    pub poll_interval: Duration,
    /// First retry delay after an RPC error; doubles per failure up to `backoff_max`.
    pub backoff_min: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
    /// Block hashes remembered for finding a fork point.
    pub reorg_window: usize,
    /// Seed of the backoff jitter (tests pass a fixed one).
    pub jitter_seed: u64,
}

impl WatcherConfig {
    /// Defaults for following `host` at `escrow` on `chain_id`: [`default_confirmations`] (2;
    /// 0 on a devnet), 2000-block ranges, 2 s polls, backoff 0.5 s to 60 s, 64 remembered
    /// blocks.
    pub fn new(chain_id: u64, escrow: Address, host: Address) -> Self {
        Self {
            chain_id,
            escrow,
            host,
            start_block: 0,
            confirmations: default_confirmations(chain_id),
            max_range: 2_000,
            poll_interval: Duration::from_secs(2),
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(60),
            reorg_window: 64,
            jitter_seed: unix_now(),
        }
    }
}

/// The watcher's progress, as seen through the [`WatcherHandle`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatcherStatus {
    /// Latest head read from the RPC.
    pub head: Option<u64>,
    /// Last block whose events were all emitted.
    pub cursor: Option<u64>,
    /// `head - cursor` (blocks not yet processed, confirmations included).
    pub lag: Option<u64>,
    /// RPC or database failures in a row (0 when healthy).
    pub consecutive_errors: u32,
    /// The last failure, for the API and logs.
    pub last_error: Option<String>,
    /// Reorgs handled since start.
    pub reorgs: u64,
}

/// Reads the watcher's progress. Cheap to clone.
#[derive(Debug, Clone)]
pub struct WatcherHandle {
    status: watch::Receiver<WatcherStatus>,
}

impl WatcherHandle {
    /// The current status.
    pub fn status(&self) -> WatcherStatus {
        self.status.borrow().clone()
    }

    /// Waits until `pred` holds for the status; `None` if the watcher has ended first.
    pub async fn wait_for(
        &mut self,
        mut pred: impl FnMut(&WatcherStatus) -> bool,
    ) -> Option<WatcherStatus> {
        self.status
            .wait_for(|s| pred(s))
            .await
            .ok()
            .map(|s| s.clone())
    }
}

/// Why a watcher step failed. Every one is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// An RPC call failed.
    #[error("RPC {call} failed: {source}; is the chain node reachable? (retrying)")]
    Rpc {
        /// The call.
        call: &'static str,
        /// The cause.
        #[source]
        source: TransportError,
    },
    /// The RPC is on another chain than configured.
    #[error(
        "the RPC serves chain {got}, the node is configured for chain {expected}; fix rpc_url or chain_id"
    )]
    WrongChain {
        /// Configured.
        expected: u64,
        /// Reported.
        got: u64,
    },
    /// The RPC does not have a block it reported (a lagging load-balanced backend).
    #[error("the RPC has no block {0} although it reported it; retrying")]
    MissingBlock(u64),
    /// A log did not decode.
    #[error("escrow log in block {block:?}: {source}")]
    Decode {
        /// Where.
        block: Option<u64>,
        /// The cause.
        #[source]
        source: DecodeError,
    },
    /// The cursor database failed.
    #[error(transparent)]
    Store(#[from] CursorError),
}

/// What a step did.
enum Step {
    /// Scanned or rolled back something; go on at once.
    Progressed,
    /// Nothing to do until a new block.
    Idle,
    /// The event receiver is gone or the task was cancelled.
    Stop,
}

/// The watcher task. Create with [`Watcher::new`], run with [`Watcher::run`].
#[must_use = "the watcher does nothing until `run` is awaited"]
pub struct Watcher<P> {
    provider: P,
    store: CursorStore,
    config: WatcherConfig,
    events: mpsc::Sender<ChainEvent>,
    status: watch::Sender<WatcherStatus>,
    cursor: Option<BlockRef>,
    recent: BTreeMap<u64, B256>,
    leases: HashSet<B256>,
    backoff: Backoff,
}

impl<P: Provider> Watcher<P> {
    /// A watcher reading `provider`, keeping its cursor in `pool` (a migrated node database),
    /// sending on `events`.
    ///
    /// `events` is bounded; when it is full the watcher waits (back-pressure). Chain events are
    /// never dropped: a missed `LeaseClosed` would keep a workload running unpaid.
    pub fn new(
        provider: P,
        pool: SqlitePool,
        config: WatcherConfig,
        events: mpsc::Sender<ChainEvent>,
    ) -> (Self, WatcherHandle) {
        let (status, rx) = watch::channel(WatcherStatus::default());
        let store = CursorStore::new(pool, config.chain_id, config.escrow, config.host);
        let backoff = Backoff::new(config.backoff_min, config.backoff_max, config.jitter_seed);
        let watcher = Self {
            provider,
            store,
            config,
            events,
            status,
            cursor: None,
            recent: BTreeMap::new(),
            leases: HashSet::new(),
            backoff,
        };
        (watcher, WatcherHandle { status: rx })
    }

    /// Follows the chain until `cancel` fires or the event receiver is dropped.
    #[tracing::instrument(name = "chain_watcher", skip_all, fields(host = %self.config.host))]
    pub async fn run(mut self, cancel: CancellationToken) {
        // Load the persisted position and check the chain before the first scan.
        loop {
            let res = self.init().await;
            match res {
                Ok(()) => break,
                Err(e) => {
                    if !self.pause_after(&e, &cancel).await {
                        return;
                    }
                }
            }
        }
        tracing::info!(target: "chain", cursor = ?self.cursor.map(|c| c.number), leases = self.leases.len(), "chain watcher started");
        loop {
            if cancel.is_cancelled() {
                break;
            }
            match self.step(&cancel).await {
                Ok(Step::Progressed) => self.healthy(),
                Ok(Step::Idle) => {
                    self.healthy();
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tokio::time::sleep(self.config.poll_interval) => {}
                    }
                }
                Ok(Step::Stop) => break,
                Err(e) => {
                    if !self.pause_after(&e, &cancel).await {
                        break;
                    }
                }
            }
        }
        tracing::info!(target: "chain", "chain watcher stopped");
    }

    async fn init(&mut self) -> Result<(), WatchError> {
        let got = self
            .provider
            .get_chain_id()
            .await
            .map_err(|source| WatchError::Rpc {
                call: "eth_chainId",
                source,
            })?;
        if got != self.config.chain_id {
            return Err(WatchError::WrongChain {
                expected: self.config.chain_id,
                got,
            });
        }
        self.cursor = self.store.cursor().await?;
        self.recent = self.store.recent().await?;
        self.leases = self.store.open_leases().await?;
        self.status
            .send_modify(|s| s.cursor = self.cursor.map(|c| c.number));
        Ok(())
    }

    fn healthy(&mut self) {
        self.backoff.reset();
        self.status.send_if_modified(|s| {
            let changed = s.consecutive_errors != 0;
            s.consecutive_errors = 0;
            changed
        });
    }

    /// Logs `e`, records it, and sleeps the backoff delay. False if cancelled meanwhile.
    async fn pause_after(&mut self, e: &WatchError, cancel: &CancellationToken) -> bool {
        let delay = self.backoff.next_delay();
        tracing::warn!(target: "chain", error = %e, retry_in_ms = delay.as_millis(), "chain watcher step failed");
        self.status.send_modify(|s| {
            s.consecutive_errors = s.consecutive_errors.saturating_add(1);
            s.last_error = Some(e.to_string());
        });
        tokio::select! {
            _ = cancel.cancelled() => false,
            _ = tokio::time::sleep(delay) => true,
        }
    }

    fn rpc(call: &'static str) -> impl FnOnce(TransportError) -> WatchError {
        move |source| WatchError::Rpc { call, source }
    }

    /// The canonical block `n`, or `None` if the chain does not (or no longer) reach it.
    async fn block(&self, n: u64) -> Result<Option<(B256, B256)>, WatchError> {
        let block = self
            .provider
            .get_block_by_number(BlockNumberOrTag::Number(n))
            .await
            .map_err(Self::rpc("eth_getBlockByNumber"))?;
        Ok(block.map(|b| (b.header.hash, b.header.parent_hash)))
    }

    async fn step(&mut self, cancel: &CancellationToken) -> Result<Step, WatchError> {
        let head = self
            .provider
            .get_block_number()
            .await
            .map_err(Self::rpc("eth_blockNumber"))?;
        let cursor_no = self.cursor.map(|c| c.number);
        self.status.send_modify(|s| {
            s.head = Some(head);
            s.lag = Some(head.saturating_sub(cursor_no.unwrap_or(0)));
        });
        let safe = head.saturating_sub(self.config.confirmations);
        let from = self
            .cursor
            .map_or(self.config.start_block, |c| c.number + 1);
        if from > safe {
            // Caught up. Make sure the cursor block is still canonical (the chain can also
            // shrink below it).
            if let Some(c) = self.cursor
                && self.block(c.number).await?.map(|(h, _)| h) != Some(c.hash)
            {
                return self.reorg(cancel).await;
            }
            return Ok(Step::Idle);
        }
        let to = safe.min(from.saturating_add(self.config.max_range.max(1) - 1));

        // `to` is read first and again after the logs: if it did not change, neither did any of
        // its ancestors, so the parent check, the logs and the hashes all describe one chain.
        let to_first = if to == from {
            None
        } else {
            Some(self.block(to).await?.ok_or(WatchError::MissingBlock(to))?.0)
        };
        let (from_hash, parent) = self
            .block(from)
            .await?
            .ok_or(WatchError::MissingBlock(from))?;
        if let Some(c) = self.cursor
            && parent != c.hash
        {
            return self.reorg(cancel).await;
        }
        let to_hash = to_first.unwrap_or(from_hash);

        let mut logs = self
            .provider
            .get_logs(
                &self
                    .filter(from, to)
                    .event_signature(BY_HOST.to_vec())
                    .topic2(self.config.host),
            )
            .await
            .map_err(Self::rpc("eth_getLogs"))?;
        // Leases a top-up in this range can be for: those open before it and those opened in it.
        let mut candidates: Vec<B256> = self.leases.iter().copied().collect();
        candidates.extend(
            logs.iter()
                .filter(|l| l.topic0() == Some(&BY_HOST[0]))
                .filter_map(|l| l.topics().get(1).copied()),
        );
        if !candidates.is_empty() {
            let mut filter = self.filter(from, to).event_signature(TOPPED_UP);
            // A short list goes to the RPC as a topic filter; a long one would be refused by
            // some providers, so then every top-up is fetched and matched here.
            if candidates.len() <= MAX_TOPIC_FILTER {
                filter = filter.topic1(candidates);
            }
            let topups = self
                .provider
                .get_logs(&filter)
                .await
                .map_err(Self::rpc("eth_getLogs"))?;
            logs.extend(topups);
        }
        // If the range's last block changed while the logs were read, they may mix two chains.
        if self.block(to).await?.map(|(h, _)| h) != Some(to_hash) {
            // Wait a poll interval rather than retry at once: a load-balanced RPC whose backends
            // disagree would otherwise keep this loop spinning.
            tracing::info!(target: "chain", from, to, "chain changed during the scan; scanning again");
            return Ok(Step::Idle);
        }
        logs.sort_by_key(|l| (l.block_number, l.log_index));

        let mut commit = RangeCommit {
            cursor: Some(BlockRef {
                number: to,
                hash: to_hash,
            }),
            blocks: vec![
                BlockRef {
                    number: from,
                    hash: from_hash,
                },
                BlockRef {
                    number: to,
                    hash: to_hash,
                },
            ],
            ..Default::default()
        };
        let mut leases = self.leases.clone();
        let mut out = Vec::new();
        for log in &logs {
            let Some((meta, event)) = self.decode(log)? else {
                continue;
            };
            match &event {
                LeaseEvent::Opened { lease, .. } => {
                    leases.insert(*lease);
                    commit.opened.push((*lease, meta.block_number));
                }
                LeaseEvent::ToppedUp { lease, .. } if !leases.contains(lease) => continue,
                LeaseEvent::Closed { lease, .. } => {
                    leases.remove(lease);
                    commit.closed.push((*lease, meta.block_number));
                }
                _ => {}
            }
            commit.blocks.push(BlockRef {
                number: meta.block_number,
                hash: meta.block_hash,
            });
            out.push(ChainEvent::Lease { meta, event });
        }
        for ev in out {
            if !self.send(ev, cancel).await {
                return Ok(Step::Stop);
            }
        }
        self.store
            .commit(&commit, self.config.reorg_window, unix_now())
            .await?;
        for b in &commit.blocks {
            self.recent.insert(b.number, b.hash);
        }
        while self.recent.len() > self.config.reorg_window {
            self.recent.pop_first();
        }
        self.leases = leases;
        self.cursor = commit.cursor;
        self.status.send_modify(|s| {
            s.cursor = Some(to);
            s.lag = Some(head.saturating_sub(to));
        });
        tracing::debug!(target: "chain", from, to, events = logs.len(), "range scanned");
        Ok(Step::Progressed)
    }

    fn filter(&self, from: u64, to: u64) -> Filter {
        Filter::new()
            .address(self.config.escrow)
            .from_block(from)
            .to_block(to)
    }

    fn decode(
        &self,
        log: &Log,
    ) -> Result<Option<(super::events::EventMeta, LeaseEvent)>, WatchError> {
        // The RPC filtered by address, but a misbehaving one must not inject events.
        if log.address() != self.config.escrow {
            return Ok(None);
        }
        decode(log).map_err(|source| WatchError::Decode {
            block: log.block_number,
            source,
        })
    }

    /// Sends with back-pressure. False if the receiver is gone or the task is cancelled.
    async fn send(&self, ev: ChainEvent, cancel: &CancellationToken) -> bool {
        tokio::select! {
            res = self.events.send(ev) => res.is_ok(),
            _ = cancel.cancelled() => false,
        }
    }

    /// Finds the fork point, tells the consumer, and rolls the cursor back to it.
    async fn reorg(&mut self, cancel: &CancellationToken) -> Result<Step, WatchError> {
        let orphaned_to = self.cursor.map_or(0, |c| c.number);
        let mut fork = None;
        for (&n, &h) in self.recent.iter().rev() {
            if self.block(n).await?.map(|(hash, _)| hash) == Some(h) {
                fork = Some(BlockRef { number: n, hash: h });
                break;
            }
        }
        match fork {
            Some(f) => {
                tracing::warn!(target: "chain", fork_block = f.number, orphaned_to, "chain reorganised; rolling back")
            }
            None => {
                tracing::error!(target: "chain", orphaned_to, window = self.config.reorg_window, "reorg deeper than the remembered blocks; rescanning from the start block")
            }
        }
        let fork_block = fork.map_or(self.config.start_block.saturating_sub(1), |f| f.number);
        // Emitted before the rollback is stored: after a crash in between, the reorg is found
        // and reported again.
        if !self
            .send(
                ChainEvent::Reorg {
                    fork_block,
                    orphaned_to,
                },
                cancel,
            )
            .await
        {
            return Ok(Step::Stop);
        }
        self.store.rollback(fork, unix_now()).await?;
        self.cursor = fork;
        self.recent = self.store.recent().await?;
        self.leases = self.store.open_leases().await?;
        self.status.send_modify(|s| {
            s.cursor = fork.map(|f| f.number);
            s.reorgs += 1;
        });
        Ok(Step::Progressed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devnet_events_are_acted_on_at_the_head_and_others_wait_two_blocks() {
        let (escrow, host) = (Address::repeat_byte(1), Address::repeat_byte(2));
        assert_eq!(WatcherConfig::new(31_337, escrow, host).confirmations, 0);
        assert_eq!(WatcherConfig::new(1, escrow, host).confirmations, 2);
        assert_eq!(WatcherConfig::new(8453, escrow, host).confirmations, 2);
    }
}
