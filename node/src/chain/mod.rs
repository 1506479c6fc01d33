//! The chain side of the host: following escrow events and sending host transactions.
//!
//! - [`watcher`]: one task per host address that follows `LeaseOpened`/`LeaseStarted`/
//!   `LeaseToppedUp`/`Withdrawn`/`LeaseClosed` from a cursor persisted in SQLite ([`cursor`]),
//!   survives RPC outages and reorgs, and emits typed [`events::ChainEvent`]s.
//! - [`tx`]: `start`, `withdrawMany` and `close` from the host wallet, simulated before they are
//!   sent so a reverting call never costs gas.

pub(crate) use gpuflow_protocol::backoff;
pub mod cursor;
pub mod events;
pub mod payout;
pub mod tx;
pub mod watcher;

pub use events::{ChainEvent, CloseReason, EventMeta, LeaseEvent};
pub use payout::{Payout, PayoutKind};
pub use tx::{HostTx, TxError};
pub use watcher::{Watcher, WatcherConfig, WatcherHandle, WatcherStatus};

/// Seconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
