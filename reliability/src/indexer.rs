//! The incremental indexer of every escrow lease event, for scores anyone can recompute.
//!
//! [`Indexer::sync_once`] scans the next range of at most `max_range` blocks that are
//! `confirmations` deep with one `eth_getLogs` (address = escrow, topic 0 = the five events
//! of [`crate::events::INDEXED`]) and commits the events and the new cursor to SQLite in one
//! transaction. [`Indexer::run`] repeats that forever with exponential backoff (jittered,
//! seeded) on RPC errors; [`Indexer::sync_to_head`] until caught up (the CLI's cache).
//!
//! Reorgs are handled, not only waited out: before a range is scanned, the parent hash of its
//! first block must be the cursor's hash (and, when caught up, the cursor block must still be
//! canonical). If not, the indexer walks back through the `reorg_window` block hashes it
//! remembers to the newest one the chain still has, deletes every event above it and scans
//! again; if none is left (a deeper reorg, or a devnet restarted from scratch) it starts over
//! from the deployment block. The range's last block is read before and after the logs; if it
//! changed meanwhile, the range is dropped and retried. Confirmations (0 on a local devnet, 2
//! elsewhere by default) only make reorgs rarer.
//!
//! The RPC's answers are checked, not trusted: logs from another address, outside the range,
//! removed, unplaced or undecodable are skipped with a warning (see [`crate::events::Skip`]);
//! a missing block is an error that is retried; nothing panics.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use alloy::eips::BlockNumberOrTag;
use alloy::primitives::{Address, B256, Bytes};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::Filter;
use alloy::transports::TransportError;
use gpuflow_protocol::escrow::{GpuFlowEscrow, MockStablecoin};
use tokio_util::sync::CancellationToken;

use crate::events::{self, Event, INDEXED, Place};
use crate::formula::{self, HostReport, HostScore, LeaseRecord};
use crate::params::Params;
use crate::rank;
use crate::store::{BlockRef, Identity, Store, StoreError};

/// Chain id of anvil and hardhat: one local node, blocks only on transactions, no reorgs.
pub const DEVNET_CHAIN_ID: u64 = 31_337;

/// How the indexer follows the chain.
#[derive(Debug, Clone)]
pub struct IndexerConfig {
    /// The escrow contract.
    pub escrow: Address,
    /// First block scanned (the escrow's deployment block; earlier blocks have no events).
    pub deploy_block: u64,
    /// Blocks a range must be buried under before it is scanned; `None`: 0 on a local devnet
    /// (chain id 31337), else 2, decided by the chain id the RPC reports.
    pub confirmations: Option<u64>,
    /// Most blocks per `eth_getLogs` (providers cap ranges, often at 1k–10k).
    pub max_range: u64,
    /// Wait between polls in [`Indexer::run`] once caught up.
    pub poll_interval: Duration,
    /// First retry delay after an error; doubles per failure up to `backoff_max`.
    pub backoff_min: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
    /// Block hashes remembered for finding a fork point.
    pub reorg_window: usize,
    /// Token decimals; `None` asks the chain (escrow `token()`, then `decimals()`).
    pub decimals: Option<u8>,
    /// Seed of the backoff jitter.
    pub jitter_seed: u64,
}

impl IndexerConfig {
    /// Defaults for `escrow` deployed at `deploy_block`: confirmations by chain id (0 on a
    /// local devnet, else 2); 2000-block ranges; 5 s polls; backoff 0.5 s to 60 s; 64
    /// remembered block hashes.
    pub fn new(escrow: Address, deploy_block: u64) -> Self {
        Self {
            escrow,
            deploy_block,
            confirmations: None,
            max_range: 2_000,
            poll_interval: Duration::from_secs(5),
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(60),
            reorg_window: 64,
            decimals: None,
            jitter_seed: 0x5EED,
        }
    }
}

/// Why an indexer step failed. [`Indexer::run`] retries every one with backoff.
#[derive(Debug, thiserror::Error)]
pub enum IndexerError {
    /// The RPC URL does not parse.
    #[error("`{url}` is not an RPC URL ({why}); pass e.g. --rpc-url http://127.0.0.1:8545")]
    BadUrl {
        /// What was given.
        url: String,
        /// The parser's complaint.
        why: String,
    },
    /// An RPC call failed.
    #[error("RPC {call} failed: {source}; is the chain node reachable? (check --rpc-url)")]
    Rpc {
        /// The call.
        call: &'static str,
        /// The cause.
        #[source]
        source: TransportError,
    },
    /// Reading the token's decimals failed.
    #[error("reading the escrow's token decimals failed: {0}; is the escrow address right?")]
    Decimals(#[source] alloy::contract::Error),
    /// The RPC does not have a block it reported (a lagging load-balanced backend).
    #[error("the RPC has no block {0} although it reported a later head; retrying")]
    MissingBlock(u64),
    /// The range's last block changed while its logs were read.
    #[error("the chain changed during the scan of blocks {from}..={to}; retrying")]
    ChainMoved {
        /// First block.
        from: u64,
        /// Last block.
        to: u64,
    },
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a step did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncProgress {
    /// The head the RPC reported.
    pub head: u64,
    /// The highest block that will be scanned now (head − confirmations).
    pub target: u64,
    /// Every event up to this block is indexed.
    pub cursor: Option<u64>,
    /// Events stored by this step.
    pub events: usize,
    /// Logs skipped by this step (hostile or broken RPC answers).
    pub skipped: usize,
    /// `Some(fork)`: a reorg was found and everything after `fork` was rolled back.
    pub reorg: Option<u64>,
    /// The cursor reached the target.
    pub caught_up: bool,
}

/// A host's history from the index, for `gpuflow host`.
#[derive(Debug, Clone)]
pub struct HostHistory {
    /// The score and every lease's contribution.
    pub report: HostReport,
    /// This host's leases, oldest first.
    pub leases: Vec<LeaseRecord>,
    /// The peer id it last registered, if it registered.
    pub peer_id: Option<Bytes>,
    /// Its first registration time.
    pub registered_at: Option<u64>,
    /// The parameters used (they depend on the token's decimals).
    pub params: Params,
    /// Receipts this host published that did not verify (see [`crate::receipts`]).
    pub ignored_receipts: u64,
}

/// Reads scores from an index database; cheap to clone, usable while an [`Indexer`] writes
/// (SQLite WAL).
#[derive(Debug, Clone)]
pub struct ScoreReader {
    pub(crate) store: Store,
    pub(crate) decimals: Option<u8>,
}

impl ScoreReader {
    /// The parameters for the indexed token (6 decimals until the chain was asked).
    pub async fn params(&self) -> Result<Params, IndexerError> {
        let d = match self.decimals {
            Some(d) => Some(d),
            None => self.store.decimals().await?,
        };
        Ok(Params::for_decimals(d.unwrap_or(6)))
    }

    /// Every lease record indexed so far.
    pub async fn records(&self) -> Result<Vec<LeaseRecord>, IndexerError> {
        Ok(self.store.records().await?)
    }

    /// Every known host's score at `now` (unix seconds), keyed by host wallet.
    pub async fn scores(&self, now: u64) -> Result<HashMap<Address, HostScore>, IndexerError> {
        let registered = self
            .store
            .registrations()
            .await?
            .into_iter()
            .map(|(h, (at, _))| (h, at))
            .collect();
        let params = self.params().await?;
        Ok(formula::scores(
            &self.records().await?,
            &registered,
            now,
            &params,
        ))
    }

    /// One host's leases, outcomes and score with its inputs.
    pub async fn host_history(&self, host: Address, now: u64) -> Result<HostHistory, IndexerError> {
        let records = self.records().await?;
        let reg = self.store.registrations().await?.remove(&host);
        let params = self.params().await?;
        let report = formula::host_report(&records, reg.as_ref().map(|r| r.0), host, now, &params);
        let mut leases: Vec<LeaseRecord> = records.into_iter().filter(|r| r.host == host).collect();
        leases.sort_by_key(|r| (r.opened_at, r.lease_id));
        Ok(HostHistory {
            report,
            leases,
            registered_at: reg.as_ref().map(|r| r.0),
            peer_id: reg.map(|r| r.1),
            params,
            ignored_receipts: self.store.ignored_count(host).await?,
        })
    }

    /// The host wallet that last registered `peer_id` (libp2p peer id bytes), if any.
    pub async fn host_of_peer(&self, peer_id: &[u8]) -> Result<Option<Address>, IndexerError> {
        Ok(self
            .store
            .registrations()
            .await?
            .into_iter()
            .find(|(_, (_, p))| p.as_ref() == peer_id)
            .map(|(h, _)| h))
    }

    /// Hosts that closed a funded lease of `renter` or never started one (see
    /// [`rank::hosts_that_failed`]).
    pub async fn hosts_that_failed(
        &self,
        renter: Address,
    ) -> Result<std::collections::HashSet<Address>, IndexerError> {
        let params = self.params().await?;
        Ok(rank::hosts_that_failed(
            &self.records().await?,
            renter,
            &params,
        ))
    }

    /// The chain id and escrow the database holds, if it was ever synced.
    pub async fn indexed(&self) -> Result<Option<(u64, Address)>, IndexerError> {
        Ok(self.store.identity().await?.map(|i| (i.chain_id, i.escrow)))
    }

    /// The last block whose events are all indexed.
    pub async fn cursor(&self) -> Result<Option<u64>, IndexerError> {
        Ok(self.store.cursor().await?.map(|c| c.number))
    }
}

/// The indexer. Create with [`Indexer::open`] (or [`Indexer::connect`] from a URL), then call
/// [`Indexer::sync_once`] / [`Indexer::sync_to_head`], or hand it to a task with
/// [`Indexer::run`]; read scores through [`Indexer::reader`].
#[must_use = "the indexer does nothing until it is synced or run"]
pub struct Indexer {
    provider: DynProvider,
    reader: ScoreReader,
    config: IndexerConfig,
    /// The chain was checked against the database (chain id, genesis, escrow).
    initialised: bool,
    /// Confirmations in force (set by `init` from the config or the chain id).
    confirmations: u64,
}

fn rpc(call: &'static str) -> impl FnOnce(TransportError) -> IndexerError {
    move |source| IndexerError::Rpc { call, source }
}

impl Indexer {
    /// Opens (creating if needed) the database at `db_path` and follows `config.escrow`
    /// through `provider`. No RPC call is made until the first sync.
    pub async fn open(
        db_path: &Path,
        provider: DynProvider,
        config: IndexerConfig,
    ) -> Result<Self, IndexerError> {
        let store = Store::open(db_path).await?;
        Ok(Self {
            provider,
            reader: ScoreReader {
                store,
                decimals: config.decimals,
            },
            confirmations: config.confirmations.unwrap_or(2),
            config,
            initialised: false,
        })
    }

    /// [`Indexer::open`] with an HTTP provider for `rpc_url`.
    pub async fn connect(
        db_path: &Path,
        rpc_url: &str,
        config: IndexerConfig,
    ) -> Result<Self, IndexerError> {
        let url = rpc_url
            .parse::<alloy::transports::http::reqwest::Url>()
            .map_err(|e| IndexerError::BadUrl {
                url: rpc_url.to_owned(),
                why: e.to_string(),
            })?;
        let provider = ProviderBuilder::new().connect_http(url).erased();
        Self::open(db_path, provider, config).await
    }

    /// A reader of this index's scores.
    pub fn reader(&self) -> ScoreReader {
        self.reader.clone()
    }

    /// Every known host's score at `now` (see [`ScoreReader::scores`]).
    pub async fn scores(&self, now: u64) -> Result<HashMap<Address, HostScore>, IndexerError> {
        self.reader.scores(now).await
    }

    /// One host's history (see [`ScoreReader::host_history`]).
    pub async fn host_history(&self, host: Address, now: u64) -> Result<HostHistory, IndexerError> {
        self.reader.host_history(host, now).await
    }

    async fn block(&self, n: u64) -> Result<Option<(B256, B256, u64)>, IndexerError> {
        let b = self
            .provider
            .get_block_by_number(BlockNumberOrTag::Number(n))
            .await
            .map_err(rpc("eth_getBlockByNumber"))?;
        Ok(b.map(|b| (b.header.hash, b.header.parent_hash, b.header.timestamp)))
    }

    /// Checks the chain against the database; starts over if it holds another chain or
    /// deployment (a restarted devnet has another genesis hash), and learns the decimals.
    async fn init(&mut self) -> Result<(), IndexerError> {
        let chain_id = self
            .provider
            .get_chain_id()
            .await
            .map_err(rpc("eth_chainId"))?;
        self.confirmations = self
            .config
            .confirmations
            .unwrap_or(if chain_id == DEVNET_CHAIN_ID { 0 } else { 2 });
        let genesis = self.block(0).await?.ok_or(IndexerError::MissingBlock(0))?.0;
        let id = Identity {
            chain_id,
            escrow: self.config.escrow,
            genesis,
            deploy_block: self.config.deploy_block,
        };
        let store = &self.reader.store;
        if store.identity().await?.as_ref() != Some(&id) {
            tracing::info!(target: "reliability", chain_id, escrow = %id.escrow, "reliability index starts from the deployment block");
            store.reset(&id).await?;
        }
        if store.decimals().await?.is_none() {
            let decimals = match self.config.decimals {
                Some(d) => d,
                None => {
                    let escrow = GpuFlowEscrow::new(self.config.escrow, &self.provider);
                    let token = escrow
                        .token()
                        .call()
                        .await
                        .map_err(IndexerError::Decimals)?;
                    MockStablecoin::new(token, &self.provider)
                        .decimals()
                        .call()
                        .await
                        .map_err(IndexerError::Decimals)?
                }
            };
            store.set_decimals(decimals).await?;
        }
        self.initialised = true;
        Ok(())
    }

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

/// Exponential backoff with equal jitter: each delay is uniform in [d/2, d], d doubling from
/// `min` to `max`.
#[derive(Debug)]
struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
    rng: u64,
}

impl Backoff {
    fn new(min: Duration, max: Duration, seed: u64) -> Self {
        Self {
            min: min.max(Duration::from_millis(1)),
            max: max.max(min),
            attempt: 0,
            rng: seed,
        }
    }

    fn reset(&mut self) {
        self.attempt = 0;
    }

    fn next_delay(&mut self) -> Duration {
        // SplitMix64: tiny, seedable.
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let d = self
            .min
            .saturating_mul(1u32 << self.attempt.min(20))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let half = d / 2;
        let span = u64::try_from((d - half).as_nanos()).unwrap_or(u64::MAX);
        half + Duration::from_nanos(if span == 0 { 0 } else { z % (span + 1) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_jitter_and_resets() {
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(2));
        let mut b = Backoff::new(min, max, 42);
        for i in 0..8u32 {
            let ceiling = (min * 2u32.pow(i)).min(max);
            let d = b.next_delay();
            assert!(d >= ceiling / 2 && d <= ceiling, "{i}: {d:?}");
        }
        b.reset();
        assert!(b.next_delay() <= min);
    }

    #[tokio::test]
    async fn bad_url_is_a_named_error_and_an_offline_cache_reads_empty() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("sub/reliability.db");
        let cfg = IndexerConfig::new(Address::repeat_byte(1), 0);
        let err = Indexer::connect(&db, "not a url", cfg.clone())
            .await
            .err()
            .unwrap();
        assert!(err.to_string().contains("--rpc-url"), "{err}");
        // A port nothing listens on: sync fails with an RPC error, scores still read.
        let mut ix = Indexer::connect(&db, "http://127.0.0.1:9", cfg)
            .await
            .unwrap();
        let err = ix.sync_once().await.unwrap_err();
        assert!(matches!(err, IndexerError::Rpc { .. }), "{err}");
        assert!(ix.scores(0).await.unwrap().is_empty());
    }
}
