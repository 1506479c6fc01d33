//! A private anvil chain with the GPUFlow contracts deployed.

use std::path::{Path, PathBuf};

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
/// The anvil account whose key host nodes sign with by default.
pub const HOST: usize = 1;
/// The anvil account renters pay from.
pub const RENTER: usize = 2;

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
        Self::deploy(anvil).await
    }

    /// Starts anvil on `port` keeping its state in `state` (see [`anvil_with_state`]) and
    /// deploys the contracts, so the chain can be stopped with [`TestChain::stop`] and started
    /// again with [`TestChain::restart`].
    pub async fn start_with_state(port: u16, state: &Path) -> anyhow::Result<Self> {
        Self::deploy(anvil_with_state(port, state)?).await
    }

    /// Deploys the token and the escrow on `anvil` (account 0 deploys).
    async fn deploy(anvil: AnvilInstance) -> anyhow::Result<Self> {
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

    /// Stops anvil with SIGTERM (an anvil started with a state file writes it) and waits for
    /// it to exit: an RPC outage. Nothing answers until [`TestChain::restart`].
    pub fn stop(&mut self) -> anyhow::Result<()> {
        stop_anvil(&mut self.anvil)
    }

    /// Starts anvil again on `port` from its state file `state` (the chain must have been
    /// started with [`TestChain::start_with_state`] on them): the same chain, same contracts.
    pub fn restart(&mut self, port: u16, state: &Path) -> anyhow::Result<()> {
        self.anvil = anvil_with_state(port, state)?;
        Ok(())
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

    /// Mines `n` empty blocks (e.g. so a watcher's confirmation depth covers what came before).
    pub async fn mine(&self, n: u64) -> anyhow::Result<()> {
        let _: serde_json::Value = self
            .provider(0)
            .raw_request("anvil_mine".into(), (n,))
            .await?;
        Ok(())
    }

    /// Mines one empty block `secs` after the latest one.
    pub async fn advance(&self, secs: u64) -> anyhow::Result<()> {
        let t = self.now().await? + secs;
        self.set_next_timestamp(t).await?;
        self.mine(1).await
    }

    /// The latest block number.
    pub async fn head(&self) -> anyhow::Result<u64> {
        Ok(self.provider(0).get_block_number().await?)
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

/// Anvil on `port` with its state in `state`: loaded if the file exists, written when anvil is
/// stopped with SIGTERM ([`stop_anvil`]).
pub fn anvil_with_state(port: u16, state: &Path) -> anyhow::Result<AnvilInstance> {
    Anvil::at(anvil_path()?)
        .port(port)
        .args(["--state".into(), state.display().to_string()])
        .try_spawn()
        .context("starting anvil with a state file")
}

/// Stops anvil with SIGTERM (so it writes its state file) and waits for it to exit.
pub fn stop_anvil(anvil: &mut AnvilInstance) -> anyhow::Result<()> {
    let pid = i32::try_from(anvil.child().id()).context("anvil pid out of range")?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .context("sending SIGTERM to anvil")?;
    anvil.child_mut().wait().context("waiting for anvil")?;
    Ok(())
}

/// A TCP port nothing listens on right now (the OS picks it; another process could take it
/// before it is used, which a test then reports as a failed start).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn signer_of(anvil: &AnvilInstance, idx: usize) -> PrivateKeySigner {
    PrivateKeySigner::from_signing_key(anvil.keys()[idx].clone().into())
}
