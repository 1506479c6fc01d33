//! What the API asks of the running node: the [`NodeView`] trait and the data it returns.
//!
//! The API does not reach into the node's tasks itself. The node implements [`NodeView`] on top
//! of its handles (p2p client, offer announcer, chain watcher, host wallet) and hands an
//! `Arc<dyn NodeView>` to [`ApiState`](super::ApiState); tests use a fake. Leases are the
//! exception: they are read straight from the [`LeaseRepo`](crate::lease::LeaseRepo), which is
//! already safe to share.
//!
//! Amounts are token base units in `U256`/`u128` and travel as decimal strings in JSON: a
//! JavaScript client would silently round a number above 2^53.

use std::future::Future;
use std::pin::Pin;

use alloy::primitives::{Address, B256, U256};
use gpuflow_protocol::offer::{GpuSource, OfferId};
use serde::Serialize;

/// A boxed future, so that [`NodeView`] can be used as a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The node as the API sees it. Implemented by the node (and by fakes in tests).
///
/// Every method is called from a request handler under the API's request timeout, so an
/// implementation that waits on a busy task gives the client a `503 timeout` instead of hanging.
/// Implementations must not panic; a panic becomes a `500 internal` response.
pub trait NodeView: Send + Sync + 'static {
    /// Identity, GPUs, published offers, p2p and chain progress.
    fn status(&self) -> BoxFuture<'_, Result<NodeStatus, ViewError>>;

    /// What the host earned, withdrew and can still withdraw.
    fn earnings(&self) -> BoxFuture<'_, Result<Earnings, ViewError>>;

    /// Stops (`true`) or resumes (`false`) publishing this host's offers. Pausing withdraws the
    /// published offers so renters stop asking for quotes; running leases are not touched.
    /// Idempotent: pausing paused offers succeeds.
    fn pause_offers(&self, paused: bool) -> BoxFuture<'_, Result<(), ViewError>>;

    /// Withdraws every accrued amount now (one `withdrawMany` transaction), instead of waiting
    /// for the next batch.
    fn withdraw_now(&self) -> BoxFuture<'_, Result<WithdrawReport, ViewError>>;
}

/// Why the node could not answer. The API maps each kind to its own HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    /// The part of the node that answers this is not running yet or any more (start-up,
    /// shutdown, chain not synced). Clients may retry later. HTTP 503.
    #[error("{0}")]
    Unavailable(String),
    /// The request conflicts with the node's state (e.g. a withdrawal is already in flight).
    /// HTTP 409.
    #[error("{0}")]
    Conflict(String),
    /// The operation failed; the cause is kept for the log and the message. HTTP 500.
    #[error("{context}: {source}")]
    Failed {
        /// What the node was doing.
        context: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// `GET /status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeStatus {
    /// The node's libp2p peer id (base58).
    pub peer_id: String,
    /// The host wallet: signs quotes, receives payment.
    pub wallet: Address,
    /// The GPUs this host offers, grouped by model.
    pub gpus: Vec<GpuGroupView>,
    /// This host's offers as currently published (empty while paused).
    pub offers: Vec<OfferStatus>,
    /// Whether an operator paused the offers (`POST /offers/pause`).
    pub offers_paused: bool,
    /// Connected p2p peers.
    pub peers: u64,
    /// Last block the chain watcher processed; `None` before its first poll.
    pub chain_height: Option<u64>,
    /// How many blocks the watcher is behind the chain head; `None` when unknown.
    pub chain_lag_blocks: Option<u64>,
}

/// GPUs of one model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GpuGroupView {
    /// Model, e.g. `RTX_4090`.
    pub model: String,
    /// Number of cards.
    pub count: u32,
    /// Memory per card, MiB.
    pub vram_mib: u64,
    /// Detected (NVML) or only declared in the config.
    pub source: GpuSource,
}

/// One published offer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OfferStatus {
    /// The offer id (32 hex digits).
    pub id: OfferId,
    /// The GPUs offered.
    pub gpu: GpuGroupView,
    /// Price per hour for the whole offer, token base units.
    #[serde(with = "decimal_u128")]
    pub price_per_hour: u128,
    /// When the published copy expires (unix seconds); the node re-announces before that.
    pub expires_at: u64,
}

/// `GET /earnings`. All amounts in token base units, net of the protocol fee (what reaches or
/// would reach the host wallet): `accrued = withdrawn + pending`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Earnings {
    /// Everything leases have earned this host so far: `withdrawn + pending`.
    #[serde(with = "decimal_u256")]
    pub accrued: U256,
    /// What the escrow already paid the host wallet (withdrawals and payouts at close, from
    /// the escrow's events).
    #[serde(with = "decimal_u256")]
    pub withdrawn: U256,
    /// Accrued on running leases and not yet withdrawn: what `POST /withdraw` would collect if
    /// it were mined in block `block`.
    #[serde(with = "decimal_u256")]
    pub pending: U256,
    /// The chain block `pending` was read at; `None` when it was not read from a chain.
    pub block: Option<u64>,
    /// The payment token.
    pub token: Address,
    /// The token's decimals (6 for USDC), for display only.
    pub decimals: u8,
}

/// `POST /withdraw`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum WithdrawReport {
    /// A `withdrawMany` transaction was sent and mined.
    Withdrawn {
        /// Its hash.
        tx_hash: B256,
        /// The leases it withdrew from.
        leases: Vec<B256>,
        /// The total, token base units.
        #[serde(with = "decimal_u256")]
        amount: U256,
    },
    /// No lease had anything to withdraw; no transaction was sent.
    NothingToWithdraw,
}

/// `U256` as a decimal string.
pub(crate) mod decimal_u256 {
    use alloy::primitives::U256;
    use serde::Serializer;

    pub(crate) fn serialize<S: Serializer>(v: &U256, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }
}

/// `u128` as a decimal string.
pub(crate) mod decimal_u128 {
    use serde::Serializer;

    pub(crate) fn serialize<S: Serializer>(v: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }
}
