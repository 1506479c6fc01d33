//! A private anvil chain with the GPUFlow contracts deployed.

use std::path::PathBuf;

use alloy::node_bindings::{Anvil, AnvilInstance};
use alloy::primitives::{Address, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use anyhow::{Context, bail};
use gpuflow_protocol::escrow::{GpuFlowEscrow, MockStablecoin};

/// Protocol fee the test deployment uses, in basis points (the production default).
pub const FEE_BPS: u16 = 100;
/// Seconds a host has to `start` an opened lease in the test deployment.
pub const ACCEPT_TIMEOUT: u64 = 600;

/// Where the pinned anvil lives: `GPUFLOW_ANVIL`, else the npm-installed one in `contracts/`.
pub fn anvil_path() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("GPUFLOW_ANVIL") {
        return Ok(PathBuf::from(p));
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../contracts/bin/anvil");
    if !p.exists() {
        bail!(
            "anvil not found at {}; run `make tools` (or set GPUFLOW_ANVIL)",
            p.display()
        );
    }
    Ok(p)
}

/// A running anvil with the token and escrow deployed by account 0 (also treasury and guardian
/// stay separate accounts so fee payouts are visible on their own).
pub struct TestChain {
    /// The anvil process; dropped (killed) with the chain.
    pub anvil: AnvilInstance,
    /// The deployed `GpuFlowEscrow`.
    pub escrow: Address,
    /// The deployed `MockStablecoin` (6 decimals).
    pub token: Address,
    /// Where protocol fees go (anvil account 9).
    pub treasury: Address,
    /// Who may pause `open` (anvil account 8).
    pub guardian: Address,
}

impl TestChain {
    /// Starts anvil and deploys the contracts. Each call is an independent chain.
    pub async fn start() -> anyhow::Result<Self> {
        let anvil = Anvil::at(anvil_path()?)
            .try_spawn()
            .context("starting anvil")?;
        let deployer = ProviderBuilder::new()
            .wallet(signer_of(&anvil, 0))
            .connect_http(anvil.endpoint_url())
            .erased();
        let treasury = anvil.addresses()[9];
        let guardian = anvil.addresses()[8];
        let token = MockStablecoin::deploy(&deployer)
            .await
            .context("deploying token")?;
        let escrow = GpuFlowEscrow::deploy(
            &deployer,
            *token.address(),
            treasury,
            FEE_BPS,
            ACCEPT_TIMEOUT,
            guardian,
        )
        .await
        .context("deploying escrow")?;
        Ok(Self {
            escrow: *escrow.address(),
            token: *token.address(),
            treasury,
            guardian,
            anvil,
        })
    }

    /// The chain id anvil reports (31337).
    pub fn chain_id(&self) -> u64 {
        self.anvil.chain_id()
    }

    /// Anvil's well-known test key number `idx`.
    pub fn signer(&self, idx: usize) -> PrivateKeySigner {
        signer_of(&self.anvil, idx)
    }

    /// A provider that signs with anvil account `idx`.
    pub fn provider(&self, idx: usize) -> DynProvider {
        ProviderBuilder::new()
            .wallet(self.signer(idx))
            .connect_http(self.anvil.endpoint_url())
            .erased()
    }

    /// The escrow bound to the wallet of anvil account `idx`.
    pub fn escrow_as(&self, idx: usize) -> GpuFlowEscrow::GpuFlowEscrowInstance<DynProvider> {
        GpuFlowEscrow::new(self.escrow, self.provider(idx))
    }

    /// The token bound to the wallet of anvil account `idx`.
    pub fn token_as(&self, idx: usize) -> MockStablecoin::MockStablecoinInstance<DynProvider> {
        MockStablecoin::new(self.token, self.provider(idx))
    }

    /// Token balance of `who`, in base units.
    pub async fn balance(&self, who: Address) -> anyhow::Result<U256> {
        Ok(self.token_as(0).balanceOf(who).call().await?)
    }

    /// Makes the next block's timestamp exactly `ts`, so billing can be checked to the second.
    pub async fn set_next_timestamp(&self, ts: u64) -> anyhow::Result<()> {
        let p = self.provider(0);
        let _: serde_json::Value = p
            .raw_request("evm_setNextBlockTimestamp".into(), (ts,))
            .await?;
        Ok(())
    }

    /// Timestamp of the latest block.
    pub async fn now(&self) -> anyhow::Result<u64> {
        let p = self.provider(0);
        let block = p
            .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
            .await?
            .context("anvil returned no latest block")?;
        Ok(block.header.timestamp)
    }
}

fn signer_of(anvil: &AnvilInstance, idx: usize) -> PrivateKeySigner {
    PrivateKeySigner::from_signing_key(anvil.keys()[idx].clone().into())
}
