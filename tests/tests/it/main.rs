//! End-to-end tests: one binary, one module per area (see `gpuflow_tests` for the harness).

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod escrow;
mod lease;
mod recovery;
mod search;
mod watcher;
