//! How the node finds a lease's workload again: the handle the runtime returns at launch and
//! the lease record keeps. Plain data, here so the lease record needs nothing from the runtime
//! drivers (which depend on the lease spec).

use alloy::primitives::B256;
use serde::{Deserialize, Serialize};

use crate::config::RuntimeKind;

/// A workload port published on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    /// The port the workload listens on (inside the container; for a process, the same as
    /// `host`).
    pub workload: u16,
    /// The port renters connect to on the host.
    pub host: u16,
}

/// How the node finds a running workload again. Persisted in the lease record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadHandle {
    /// The driver that launched it.
    pub kind: RuntimeKind,
    /// The lease it belongs to.
    pub lease: B256,
    /// Process id (process runtime) or container id (Docker).
    pub id: String,
    /// Published ports, in the order of the spec (Docker: SSH first when a key was given).
    pub ports: Vec<PortMapping>,
}
