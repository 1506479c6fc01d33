//! # gpuflow-tests
//!
//! End-to-end test support: real processes, no mocks of the chain. [`chain::TestChain`] spawns
//! the pinned anvil binary on a free port and deploys the mock stablecoin and `GpuFlowEscrow`
//! from the committed artifact, so every test gets its own fresh chain and can run in parallel.
//!
//! - [`procs`] runs the real `gpuflow-node` and `gpuflow` binaries as child processes (nodes on
//!   127.0.0.1 with OS-assigned ports, clean environments).
//! - [`host`]: a host node against a test chain (start, restart, SIGTERM, SIGKILL) and its
//!   workloads.
//! - [`renter`]: the renter's p2p node (quotes, lease status, the `Opened` hint).
//! - [`rental`]: the renter's money on chain (fund, open, close) and the checks of every unit.
//! - [`market`]: chain + host + funded renter in one, and a lease through it.
//! - [`cli`]: the real `gpuflow` CLI with its own home and the renter's key.
//! - [`poll`]: bounded waiting for what sends no notification.
//! - [`engine`]: the Docker engine and test images `scripts/with-docker.sh` provides.
//! - [`openssh`]: the renter's `ssh` and `scp` (key pair, forwards, bounded runs).
//!
//! The tests themselves live in `tests/it/` (one integration-test binary).

pub mod chain;
pub mod cli;
pub mod engine;
pub mod host;
pub mod market;
pub mod openssh;
pub mod poll;
pub mod procs;
pub mod rental;
pub mod renter;
