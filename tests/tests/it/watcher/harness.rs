//! The watcher tests' harness: a chain with the escrow deployed, quotes, and a watcher task
//! whose events a test reads with a bounded wait.

use std::path::Path;
use std::time::Duration;

use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::TransactionReceipt;
use alloy::signers::local::PrivateKeySigner;
use alloy::transports::http::reqwest::Url;
use gpuflow_node::chain::events::{ChainEvent, LeaseEvent};
use gpuflow_node::chain::tx::{HostTx, host_provider};
use gpuflow_node::chain::watcher::{Watcher, WatcherConfig, WatcherHandle};
use gpuflow_node::lease::record::open_pool;
use gpuflow_node::wallet::HostWallet;
use gpuflow_protocol::escrow::GpuFlowEscrow;
use gpuflow_protocol::escrow::{self, MockStablecoin, Quote};
use gpuflow_tests::chain::{FEE_BPS, TestChain};
use sqlx::SqlitePool;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub(super) const HOST: usize = 1;
pub(super) const RENTER: usize = 2;
pub(super) const OTHER_HOST: usize = 3;
pub(super) const PRICE: u64 = 139;
/// Upper bound for anything a test waits for.
pub(super) const LIMIT: Duration = Duration::from_secs(30);

/// A chain with the contracts deployed: a `TestChain` or an anvil the test controls.
pub(super) struct Env {
    pub(super) url: Url,
    pub(super) chain_id: u64,
    pub(super) escrow: Address,
    pub(super) token: Address,
    pub(super) keys: Vec<PrivateKeySigner>,
}

impl Env {
    pub(super) fn of(chain: &TestChain) -> Self {
        Self {
            url: chain.anvil.endpoint_url(),
            chain_id: chain.chain_id(),
            escrow: chain.escrow,
            token: chain.token,
            keys: (0..4).map(|i| chain.signer(i)).collect(),
        }
    }

    pub(super) fn addr(&self, idx: usize) -> Address {
        self.keys[idx].address()
    }

    pub(super) fn provider(&self, idx: usize) -> DynProvider {
        ProviderBuilder::new()
            .wallet(self.keys[idx].clone())
            .connect_http(self.url.clone())
            .erased()
    }

    pub(super) fn escrow_as(
        &self,
        idx: usize,
    ) -> GpuFlowEscrow::GpuFlowEscrowInstance<DynProvider> {
        GpuFlowEscrow::new(self.escrow, self.provider(idx))
    }

    pub(super) fn host_tx(&self) -> HostTx<DynProvider> {
        let wallet = HostWallet::from_signer(self.keys[HOST].clone());
        HostTx::new(
            host_provider(self.url.clone(), &wallet),
            self.escrow,
            wallet.address(),
            self.chain_id,
        )
    }

    pub(super) async fn now(&self) -> u64 {
        let p = self.provider(0);
        let b = p
            .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
            .await
            .unwrap()
            .unwrap();
        b.header.timestamp
    }

    pub(super) async fn head(&self) -> u64 {
        self.provider(0).get_block_number().await.unwrap()
    }

    /// Mines an empty block at `ts`. Transactions are simulated against the latest block, so
    /// a withdrawal needs a block after the start for anything to show as accrued.
    pub(super) async fn mine_at(&self, ts: u64) {
        self.set_next_timestamp(ts).await;
        let _: serde_json::Value = self
            .provider(0)
            .raw_request("evm_mine".into(), ())
            .await
            .unwrap();
    }

    pub(super) async fn set_next_timestamp(&self, ts: u64) {
        let _: serde_json::Value = self
            .provider(0)
            .raw_request("evm_setNextBlockTimestamp".into(), (ts,))
            .await
            .unwrap();
    }

    /// A quote of `host` for the renter, signed; with its lease id.
    pub(super) async fn quote(&self, host: usize, nonce: u64) -> (Quote, Bytes, B256) {
        let q = Quote {
            host: self.addr(host),
            renter: self.addr(RENTER),
            pricePerSecond: U256::from(PRICE),
            minDuration: U256::ZERO,
            maxDuration: U256::from(10 * 3600u64),
            expiry: U256::from(self.now().await + 3600),
            nonce: U256::from(nonce),
            specHash: B256::repeat_byte(0xab),
        };
        let d = escrow::domain(self.chain_id, self.escrow);
        let sig = escrow::sign_quote(&self.keys[host], &q, &d).unwrap();
        let id = escrow::lease_id(&q, &d);
        (q, sig, id)
    }

    pub(super) async fn fund_renter(&self) {
        let token = MockStablecoin::new(self.token, self.provider(RENTER));
        ok(token
            .mint(self.addr(RENTER), U256::from(1_000_000_000u64))
            .send()
            .await)
        .await;
        ok(token.approve(self.escrow, U256::MAX).send().await).await;
    }

    pub(super) async fn open(&self, q: &Quote, sig: &Bytes, deposit: u64) -> TransactionReceipt {
        let e = self.escrow_as(RENTER);
        ok(e.open(q.clone(), sig.clone(), U256::from(deposit))
            .send()
            .await)
        .await
    }
}

pub(super) async fn ok(
    sent: Result<
        alloy::providers::PendingTransactionBuilder<alloy::network::Ethereum>,
        alloy::contract::Error,
    >,
) -> TransactionReceipt {
    let r = sent.unwrap().get_receipt().await.unwrap();
    assert!(r.status(), "transaction reverted: {r:?}");
    r
}

pub(super) fn fee(amount: u64) -> u64 {
    amount * u64::from(FEE_BPS) / 10_000
}

/// A watcher task and what the test reads from it.
pub(super) struct Running {
    pub(super) handle: WatcherHandle,
    pub(super) events: mpsc::Receiver<ChainEvent>,
    pub(super) cancel: CancellationToken,
    pub(super) task: JoinHandle<()>,
}

pub(super) async fn watch(env: &Env, pool: SqlitePool) -> Running {
    let config = WatcherConfig {
        confirmations: 0,
        // Small ranges, so a catch-up spans several `eth_getLogs` calls.
        max_range: 3,
        poll_interval: Duration::from_millis(20),
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_millis(400),
        jitter_seed: 7,
        ..WatcherConfig::new(env.chain_id, env.escrow, env.addr(HOST))
    };
    let provider = ProviderBuilder::new()
        .connect_http(env.url.clone())
        .erased();
    // Small on purpose: the watcher must wait, not drop, when the consumer lags.
    let (tx, events) = mpsc::channel(2);
    let (watcher, handle) = Watcher::new(provider, pool, config, tx);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(watcher.run(cancel.clone()));
    Running {
        handle,
        events,
        cancel,
        task,
    }
}

impl Running {
    pub(super) async fn next(&mut self) -> ChainEvent {
        tokio::time::timeout(LIMIT, self.events.recv())
            .await
            .expect("no chain event in time")
            .expect("watcher ended")
    }

    /// The next `n` events, which must all be lease events.
    pub(super) async fn lease_events(&mut self, n: usize) -> Vec<(u64, LeaseEvent)> {
        let mut out = Vec::new();
        for _ in 0..n {
            match self.next().await {
                ChainEvent::Lease { meta, event } => out.push((meta.block_number, event)),
                other => panic!("expected a lease event, got {other:?}"),
            }
        }
        out
    }

    /// Waits until the watcher has passed block `head`, then checks nothing else was emitted.
    pub(super) async fn quiet_at(&mut self, head: u64) {
        tokio::time::timeout(LIMIT, self.handle.wait_for(|s| s.cursor >= Some(head)))
            .await
            .expect("watcher did not catch up in time")
            .expect("watcher ended");
        if let Ok(ev) = self.events.try_recv() {
            panic!("unexpected extra event {ev:?}");
        }
    }

    pub(super) async fn stop(self) {
        self.cancel.cancel();
        tokio::time::timeout(LIMIT, self.task)
            .await
            .expect("watcher did not stop")
            .unwrap();
    }
}

pub(super) async fn pool(dir: &Path) -> SqlitePool {
    open_pool(&dir.join("node.db")).await.unwrap()
}

pub(super) fn lease_ids(evs: &[(u64, LeaseEvent)]) -> Vec<B256> {
    evs.iter().map(|(_, e)| e.lease()).collect()
}
