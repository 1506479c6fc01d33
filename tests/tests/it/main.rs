//! End-to-end tests: one binary, one module per area (see `gpuflow_tests` for the harness).

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod api;
mod booking;
mod docker;
mod escrow;
mod expiry;
mod extend;
mod hardening;
mod idle_chain;
mod lease;
mod node_scores;
mod outage;
mod packaging;
mod quote_abuse;
mod receipts;
mod recovery;
mod reliability;
mod rent;
mod rent_failures;
mod rpc_timeouts;
mod search;
mod ssh;
mod wallet;
mod watcher;
mod withdraw;
