//! # gpuflow-tests
//!
//! End-to-end test support: real processes, no mocks of the chain. [`chain::TestChain`] spawns
//! the pinned anvil binary on a free port and deploys the mock stablecoin and `GpuFlowEscrow`
//! from the committed artifact, so every test gets its own fresh chain and can run in parallel.
//!
//! [`procs`] runs the real `gpuflow-node` and `gpuflow` binaries as child processes (nodes on
//! 127.0.0.1 with OS-assigned ports, the CLI in an empty directory), for the search tests.
//!
//! The tests themselves live in `tests/it/` (one integration-test binary).

pub mod chain;
pub mod procs;
