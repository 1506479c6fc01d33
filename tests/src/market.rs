//! A whole market in one test: a fresh anvil chain, one host node with the lease engine, and a
//! funded renter with its own p2p node; and the renter's way through a lease on it.

use alloy::eips::BlockId;
use alloy::primitives::{Address, U256};
use gpuflow_protocol::escrow::GpuFlowEscrow;
use gpuflow_protocol::wire::{LeaseStatus, SignedQuote};

use crate::chain::{HOST, RENTER, TestChain};
use crate::host::{HostNode, HostOpts, WorkloadGuard};
use crate::rental::{
    Balances, Lease, assert_settled, closed_on_chain, fee, fund_renter, open, renter_close,
};
use crate::renter::Renter;

/// What the renter is funded with: far more than any lease here costs.
pub const FUNDS: u64 = 1_000_000_000_000;

/// A host node on its own anvil chain, and a funded renter (escrow approved) with its own p2p
/// node. Dropping it kills the host, its workloads and the chain.
pub struct Market {
    /// The chain.
    pub chain: TestChain,
    /// The host node.
    pub host: HostNode,
    /// The renter.
    pub renter: Renter,
    /// What the renter held before its first lease.
    pub funds: U256,
    _workloads: WorkloadGuard,
    _dir: tempfile::TempDir,
}

impl Market {
    /// Starts anvil, the host with `opts`, and the renter.
    pub async fn start(opts: &HostOpts) -> Self {
        let chain = TestChain::start().await.expect("starting anvil");
        let dir = tempfile::tempdir().expect("temporary directory");
        Self::start_on(chain, dir, opts).await
    }

    /// Like [`Market::start`] on an existing chain and directory (e.g. a keystore made there);
    /// the host's data directory is `dir/host`.
    pub async fn start_on(chain: TestChain, dir: tempfile::TempDir, opts: &HostOpts) -> Self {
        let host = HostNode::start(&chain, &dir.path().join("host"), opts)
            .await
            .unwrap_or_else(|e| panic!("starting the host: {e:#}"));
        let workloads = host.guard_workloads();
        let renter = Renter::start(&chain);
        let funds = U256::from(FUNDS);
        fund_renter(&chain, funds).await;
        Self {
            chain,
            host,
            renter,
            funds,
            _workloads: workloads,
            _dir: dir,
        }
    }

    /// A market with the default host and a lease opened with `deposit_secs` of rent, of which
    /// the host was told.
    pub async fn rent(deposit_secs: u64) -> (Self, Lease) {
        let m = Self::start(&HostOpts::default()).await;
        let lease = m.open_lease(deposit_secs).await;
        (m, lease)
    }

    /// Like [`Market::rent`], but the host is killed right after it quotes, so the renter opens
    /// the lease (and does not tell the host) while it is down.
    pub async fn rent_while_host_down(deposit_secs: u64) -> (Self, Lease) {
        let mut m = Self::start(&HostOpts::default()).await;
        let q = m.quote().await;
        m.host.kill9().await;
        let lease = m.open(&q, deposit_secs).await;
        (m, lease)
    }

    /// A signed quote for one GPU from the host.
    pub async fn quote(&self) -> SignedQuote {
        self.renter.expect_quote(&self.host).await
    }

    /// Opens `q` with `deposit_secs` of rent, without telling the host.
    pub async fn open(&self, q: &SignedQuote, deposit_secs: u64) -> Lease {
        let deposit = q.quote.price_per_second * U256::from(deposit_secs);
        let lease = open(&self.chain, q, deposit).await;
        assert_eq!(
            lease.quote.host, self.host.wallet,
            "signed by the host's wallet"
        );
        lease
    }

    /// Gets a quote, opens it with `deposit_secs` of rent and tells the host.
    pub async fn open_lease(&self, deposit_secs: u64) -> Lease {
        let q = self.quote().await;
        let lease = self.open(&q, deposit_secs).await;
        self.renter
            .opened(&self.host, lease.id, lease.tx_hash)
            .await;
        lease
    }

    /// The host's status of `lease`.
    pub async fn status(&self, lease: &Lease) -> LeaseStatus {
        self.renter.status(&self.host, lease.id).await
    }

    /// Polls the host until it runs `lease`; returns the workload's port.
    pub async fn wait_running(&self, lease: &Lease) -> u16 {
        self.renter.wait_running(&self.host, lease.id).await
    }

    /// Waits until the workload on `port` is stopped and the host reports `lease` closed.
    pub async fn wait_stopped(&self, lease: &Lease, port: u16) {
        self.renter.wait_stopped(&self.host, lease.id, port).await;
    }

    /// The renter closes `lease`; returns its `LeaseClosed`.
    pub async fn renter_close(&self, lease: &Lease) -> GpuFlowEscrow::LeaseClosed {
        renter_close(&self.chain, &lease.quote).await
    }

    /// Checks a close of the market's only lease to the unit (see [`assert_settled`]) and every
    /// balance against it: the renter paid what was billed, the host got its share, and only
    /// the fee stays in the escrow.
    pub async fn check_payout(&self, lease: &Lease, closed: &GpuFlowEscrow::LeaseClosed) {
        let billed = assert_settled(closed, lease.price(), lease.deposit);
        assert_eq!(
            Balances::of(&self.chain).await,
            Balances {
                renter: self.funds - billed,
                host: billed - fee(billed),
                escrow: fee(billed),
            },
            "renter pays what was billed, the host gets it less the fee, the escrow keeps the fee"
        );
    }

    /// The host's own close of the market's only lease, found on chain: the deposit ran out
    /// (`Depleted`), so nothing is refunded.
    pub async fn closed_depleted(&self) -> GpuFlowEscrow::LeaseClosed {
        let closed = closed_on_chain(&self.chain)
            .await
            .expect("LeaseClosed on chain");
        assert_eq!(closed.closedBy, self.host_wallet());
        assert_eq!(closed.reason, 2, "Depleted");
        assert_eq!(closed.refund, U256::ZERO);
        closed
    }

    /// Mines an empty block `secs` after the latest one, so running leases have accrued at the
    /// chain head without waiting for the wall clock.
    pub async fn advance(&self, secs: u64) {
        self.chain.advance(secs).await.expect("mining a block");
    }

    /// The host's wallet.
    pub fn host_wallet(&self) -> Address {
        self.chain.signer(HOST).address()
    }

    /// The renter's wallet.
    pub fn renter_wallet(&self) -> Address {
        self.chain.signer(RENTER).address()
    }

    /// `withdrawable(id)` at `block`, net of the fee: what a withdrawal mined there would pay.
    pub async fn net_withdrawable(&self, leases: &[&Lease], block: u64) -> U256 {
        let escrow = self.chain.escrow_as(0);
        let mut total = U256::ZERO;
        for l in leases {
            let gross = escrow
                .withdrawable(l.id)
                .block(BlockId::number(block))
                .call()
                .await
                .expect("withdrawable");
            total += gross - fee(gross);
        }
        total
    }
}
