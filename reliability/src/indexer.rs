//! The incremental indexer of every escrow lease event, for scores anyone can recompute.
//!
//! [`Indexer::sync_once`] scans the next range of at most `max_range` blocks that are
//! `confirmations` deep with one `eth_getLogs` (address = escrow, topic 0 = the six events
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

mod sync;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use alloy::eips::BlockNumberOrTag;
use alloy::primitives::{Address, B256, Bytes};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::transports::TransportError;
use gpuflow_protocol::escrow::{GpuFlowEscrow, MockStablecoin};

use crate::formula::{self, HostReport, HostScore, LeaseRecord};
use crate::params::Params;
use crate::rank;
use crate::store::{Identity, Store, StoreError};

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
    /// The peer id it is registered with now: the one of its latest `HostRegistered`, `None`
    /// if it never registered or unregistered since. The contract takes any peer id bytes, so
    /// this is the wallet's claim, not proof that it runs that peer.
    pub peer_id: Option<Bytes>,
    /// Its first registration time (kept after it unregisters).
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
            .map(|(h, r)| (h, r.first_registered_at))
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
        let registered_at = reg.as_ref().map(|r| r.first_registered_at);
        let params = self.params().await?;
        let report = formula::host_report(&records, registered_at, host, now, &params);
        let mut leases: Vec<LeaseRecord> = records.into_iter().filter(|r| r.host == host).collect();
        leases.sort_by_key(|r| (r.opened_at, r.lease_id));
        Ok(HostHistory {
            report,
            leases,
            registered_at,
            peer_id: reg.and_then(|r| r.peer_id),
            params,
            ignored_receipts: self.store.ignored_count(host).await?,
        })
    }

    /// The wallets registered with `peer_id` (libp2p peer id bytes) now, longest-standing
    /// registration first (see [`ScoreReader::host_of_peer`]). A wallet that unregistered, or
    /// registered another peer id since, is not among them.
    pub async fn registrants_of_peer(&self, peer_id: &[u8]) -> Result<Vec<Address>, IndexerError> {
        Ok(self.store.registrants_of(peer_id).await?)
    }

    /// The wallet the registry maps `peer_id` to: of the wallets registered with it now, the
    /// one whose registration with it is the oldest (its first `HostRegistered` naming this
    /// peer id since it last unregistered or named another, by block and log index; bond
    /// top-ups do not renew it). `None` if no wallet is registered with it.
    ///
    /// **Unverified**: `registerHost` takes any bytes, so anyone can register anyone's peer id.
    /// The oldest registration wins because a squatter can only copy a peer id once it is
    /// public, usually after its owner registered it, and re-registering cannot move a squatter
    /// ahead. The peer's own signed offer (its wallet binding) is the proof; use this only
    /// when there is none, and say so.
    pub async fn host_of_peer(&self, peer_id: &[u8]) -> Result<Option<Address>, IndexerError> {
        Ok(self.registrants_of_peer(peer_id).await?.into_iter().next())
    }

    /// Hosts that closed a funded lease of `renter`, or never started or declined one (see
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
