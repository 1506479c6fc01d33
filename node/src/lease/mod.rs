//! Leases as this host sees them: the state machine ([`state`]), what the renter asked to run
//! ([`spec`]) and the persisted record with its SQLite repository ([`record`]).
//!
//! The engine that drives leases (quotes over p2p, `start`, launching, ending) is built on these;
//! the chain stays the source of truth for money and the chain-side state of each lease.

pub mod record;
pub mod spec;
pub mod state;
pub mod workload;

pub use record::{LeaseRecord, LeaseRepo, RepoError};
pub use spec::LeaseSpec;
pub use state::{Event, State, TransitionError, next};
