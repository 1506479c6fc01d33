//! # gpuflow-reliability
//!
//! Reliability scores for GPUFlow hosts, computed from evidence nobody can forge cheaply: the
//! escrow contract's lease events. Any node or CLI can recompute any host's score; nothing
//! here takes a host's word about itself.
//!
//! - [`params`]: every parameter of the score with its meaning, unit and reason.
//! - [`formula`]: the published formula (DESIGN.md §7) as pure functions from lease records to
//!   per-host scores: value-weighted Beta with a prior, renter credibility, a per-renter cap,
//!   time decay, and ranking by a low quantile ([`beta`]).
//! - [`coverage`] and [`receipts`]: renter-signed receipts of service, verified against the
//!   chain's renter of each lease, and the share of billed time they show the workload
//!   unreachable, which lowers a lease's outcome.
//! - [`rank`]: the renter side: expected cost of a rental given a host's score, and the hosts
//!   that failed a renter before (`gpuflow rent --query`).
//! - [`indexer`]: an incremental indexer of every host's escrow events into SQLite (cursor,
//!   ranged `eth_getLogs`, reorg rollback, backoff), decoded defensively by [`events`]; the
//!   node runs it as a task, the CLI syncs it as a local cache before `search` and `host`.
//!
//! `docs/reliability.md` explains the formula with a worked example.

use gpuflow_protocol::backoff;
pub mod beta;
pub mod coverage;
pub mod events;
pub mod formula;
pub mod indexer;
pub mod params;
pub mod rank;
pub mod receipts;
mod store;
pub mod view;

pub use formula::{
    CloseReason, Contribution, HostReport, HostScore, LeaseEnd, LeaseRecord, Outcome,
    OutcomeCounts, OutcomeKind,
};
pub use indexer::{
    DEVNET_CHAIN_ID, HostHistory, Indexer, IndexerConfig, IndexerError, ScoreReader, SyncProgress,
};
pub use params::Params;
pub use receipts::IngestReport;
pub use store::{BlockRef, StoreError};
