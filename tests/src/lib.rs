//! # gpuflow-tests
//!
//! End-to-end test support: real processes, no mocks of the chain. [`chain::TestChain`] spawns
//! the pinned anvil binary on a free port and deploys the mock stablecoin and `GpuFlowEscrow`
//! from the committed artifact, so every test gets its own fresh chain and can run in parallel.
//!
//! The tests themselves live in `tests/it/` (one integration-test binary).

pub mod chain;
