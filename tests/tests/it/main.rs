//! End-to-end tests: one binary, one module per area (see `gpuflow_tests` for the harness).

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod api;
mod booking;
mod escrow;
mod expiry;
mod extend;
mod hardening;
mod lease;
mod node_scores;
mod outage;
mod packaging;
mod receipts;
mod recovery;
mod reliability;
mod rent;
mod rent_failures;
mod search;
mod ssh;
mod wallet;
mod watcher;
mod withdraw;
