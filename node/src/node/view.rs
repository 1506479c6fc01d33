//! The running node as the API sees it: [`LiveNodeView`] implements [`NodeView`] over the node's
//! handles (p2p client, offer control, lease engine, chain watcher, lease and payout tables).
//! It owns no state of its own; every answer is read fresh.

use alloy::primitives::{Address, B256, U256};
use alloy::providers::DynProvider;
use gpuflow_p2p::Client;
use gpuflow_protocol::escrow::GpuFlowEscrow::GpuFlowEscrowInstance;
use tokio::sync::OnceCell;

use crate::api::{
    BoxFuture, Earnings, GpuGroupView, NodeStatus, NodeView, OfferStatus, ViewError, WithdrawReport,
};
use crate::earnings::{self, PayoutRepo};
use crate::engine::withdraw::WITHDRAWABLE;
use crate::engine::{EngineError, EngineHandle, EngineParts, Trigger};
use crate::gpu::Inventory;
use crate::lease::LeaseRepo;
use crate::offers::{ControlError, OfferControl, PublishedOffer};

/// The chain side, present when the node runs the lease engine.
#[derive(Debug)]
pub(super) struct ChainSide {
    engine: EngineHandle,
    watcher: crate::chain::WatcherHandle,
    escrow: GpuFlowEscrowInstance<DynProvider>,
    payouts: PayoutRepo,
    fee_bps: OnceCell<u16>,
}

impl ChainSide {
    pub(super) fn new(parts: &EngineParts) -> Self {
        Self {
            engine: parts.handle.clone(),
            watcher: parts.watcher.clone(),
            escrow: parts.escrow.clone(),
            payouts: parts.payouts.clone(),
            fee_bps: OnceCell::new(),
        }
    }
}

/// [`NodeView`] of the running node.
#[derive(Debug)]
pub(super) struct LiveNodeView {
    pub(super) peer_id: String,
    pub(super) wallet: Address,
    pub(super) gpus: Vec<GpuGroupView>,
    pub(super) offers: OfferControl,
    pub(super) p2p: Client,
    pub(super) leases: LeaseRepo,
    pub(super) chain: Option<ChainSide>,
    pub(super) token: Address,
    pub(super) decimals: u8,
}

/// The GPU groups of `inventory` as the API shows them.
pub(super) fn gpu_groups(inventory: &Inventory) -> Vec<GpuGroupView> {
    inventory
        .groups
        .iter()
        .map(|g| GpuGroupView {
            model: g.spec.model.clone(),
            count: g.spec.count,
            vram_mib: g.spec.vram_mib,
            source: inventory.source,
        })
        .collect()
}

fn offer_status(o: &PublishedOffer) -> OfferStatus {
    OfferStatus {
        id: o.id,
        gpu: GpuGroupView {
            model: o.gpu.model.clone(),
            count: o.gpu.count,
            vram_mib: o.gpu.vram_mib,
            source: o.gpu_source,
        },
        price_per_hour: o.price_per_hour(),
        expires_at: o.expires_at,
    }
}

fn failed(context: &str, e: impl std::error::Error + Send + Sync + 'static) -> ViewError {
    ViewError::Failed {
        context: context.to_owned(),
        source: Box::new(e),
    }
}

fn no_chain() -> ViewError {
    ViewError::Unavailable(
        "this node runs without a chain RPC, so it has no lease engine; start it with --rpc-url"
            .into(),
    )
}

impl LiveNodeView {
    async fn read_status(&self) -> Result<NodeStatus, ViewError> {
        let peers =
            self.p2p.connected_peers().await.map_err(|e| {
                ViewError::Unavailable(format!("the p2p layer did not answer: {e}"))
            })?;
        let published = self.offers.published();
        let (chain_height, chain_lag_blocks) = match &self.chain {
            Some(c) => {
                let s = c.watcher.status();
                (s.cursor, s.cursor.and(s.lag))
            }
            None => (None, None),
        };
        Ok(NodeStatus {
            peer_id: self.peer_id.clone(),
            wallet: self.wallet,
            gpus: self.gpus.clone(),
            offers: published.offers.iter().map(offer_status).collect(),
            offers_paused: published.paused,
            peers: u64::try_from(peers.len()).unwrap_or(u64::MAX),
            chain_height,
            chain_lag_blocks,
        })
    }

    async fn read_earnings(&self) -> Result<Earnings, ViewError> {
        let chain = self.chain.as_ref().ok_or_else(no_chain)?;
        let unreachable = |e: alloy::contract::Error| {
            ViewError::Unavailable(format!(
                "cannot read the escrow: {e}; is the chain node reachable?"
            ))
        };
        let fee_bps = chain
            .fee_bps
            .get_or_try_init(|| async { chain.escrow.feeBps().call().await })
            .await
            .map_err(unreachable)?;
        let ids: Vec<B256> = self
            .leases
            .in_states(&WITHDRAWABLE)
            .await
            .map_err(|e| failed("reading leases", e))?
            .iter()
            .filter(|r| r.quote.host == self.wallet)
            .map(|r| r.id)
            .collect();
        let pending = earnings::pending(&chain.escrow, &ids, *fee_bps, None)
            .await
            .map_err(unreachable)?;
        let (withdrawn, _fees) = chain
            .payouts
            .totals()
            .await
            .map_err(|e| failed("reading payouts", e))?;
        Ok(Earnings {
            accrued: withdrawn + pending.net,
            withdrawn,
            pending: pending.net,
            block: Some(pending.block),
            token: self.token,
            decimals: self.decimals,
        })
    }

    async fn withdraw(&self) -> Result<WithdrawReport, ViewError> {
        let chain = self.chain.as_ref().ok_or_else(no_chain)?;
        let report = match chain.engine.withdraw(Trigger::Operator).await {
            Ok(r) => r,
            Err(EngineError::Stopped) => {
                return Err(ViewError::Unavailable(
                    "the lease engine is stopping; no withdrawal was sent".into(),
                ));
            }
            Err(e) => return Err(failed("withdrawing", e)),
        };
        Ok(match report.mined {
            Some(m) => WithdrawReport::Withdrawn {
                tx_hash: m.tx_hash,
                leases: report.paid.iter().map(|p| p.lease).collect(),
                amount: report.paid.iter().map(|p| p.amount).sum::<U256>(),
            },
            None => WithdrawReport::NothingToWithdraw,
        })
    }
}

impl NodeView for LiveNodeView {
    fn status(&self) -> BoxFuture<'_, Result<NodeStatus, ViewError>> {
        Box::pin(self.read_status())
    }

    fn earnings(&self) -> BoxFuture<'_, Result<Earnings, ViewError>> {
        Box::pin(self.read_earnings())
    }

    fn pause_offers(&self, paused: bool) -> BoxFuture<'_, Result<(), ViewError>> {
        Box::pin(async move {
            match self.offers.set_paused(paused).await {
                Ok(()) => Ok(()),
                Err(ControlError::Stopped) => {
                    Err(ViewError::Unavailable(ControlError::Stopped.to_string()))
                }
                Err(e) => Err(failed(
                    if paused {
                        "pausing offers (they stay paused)"
                    } else {
                        "resuming offers (they stay resumed)"
                    },
                    e,
                )),
            }
        })
    }

    fn withdraw_now(&self) -> BoxFuture<'_, Result<WithdrawReport, ViewError>> {
        Box::pin(self.withdraw())
    }
}
