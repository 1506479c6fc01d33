//! A [`NodeView`] that answers fixed data, records the calls that change the node, and can be
//! told to fail, hang, panic or wait at a gate.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use alloy::primitives::{Address, B256, U256};
use gpuflow_protocol::offer::{GpuSource, OfferId};
use tokio::sync::{Semaphore, watch};

use super::super::{
    BoxFuture, Earnings, GpuGroupView, NodeStatus, NodeView, OfferStatus, ViewError, WithdrawReport,
};

/// A call that changes the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Call {
    Pause(bool),
    Withdraw,
}

/// How every method behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Behaviour {
    Normal,
    Unavailable,
    Conflict,
    /// Never answers.
    Hang,
    Panic,
    /// Waits for a permit of `gate` (consumed), counting how many calls wait at once.
    Gated,
}

pub(super) struct FakeNode {
    pub(super) status: NodeStatus,
    behaviour: Mutex<Behaviour>,
    calls: Mutex<Vec<Call>>,
    pub(super) gate: Semaphore,
    /// Calls inside the node right now (Gated).
    pub(super) in_flight: watch::Sender<usize>,
    pub(super) max_in_flight: AtomicUsize,
}

pub(super) fn status() -> NodeStatus {
    let gpu = GpuGroupView {
        model: "RTX_4090".into(),
        count: 2,
        vram_mib: 24_564,
        source: GpuSource::Nvml,
    };
    NodeStatus {
        peer_id: "12D3KooWGpuflowFakePeer".into(),
        wallet: Address::repeat_byte(0x11),
        gpus: vec![gpu.clone()],
        offers: vec![OfferStatus {
            id: OfferId([7; 16]),
            gpu,
            price_per_hour: 1_500_000,
            expires_at: 1_900_000_000,
        }],
        offers_paused: false,
        peers: 3,
        chain_height: Some(120),
        chain_lag_blocks: Some(2),
    }
}

impl FakeNode {
    pub(super) fn new() -> Self {
        Self {
            status: status(),
            behaviour: Mutex::new(Behaviour::Normal),
            calls: Mutex::new(Vec::new()),
            gate: Semaphore::new(0),
            in_flight: watch::Sender::new(0),
            max_in_flight: AtomicUsize::new(0),
        }
    }

    pub(super) fn set(&self, b: Behaviour) {
        *self.behaviour.lock().unwrap() = b;
    }

    pub(super) fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// Runs the configured behaviour; `Ok` means "answer normally".
    async fn act(&self) -> Result<(), ViewError> {
        let b = *self.behaviour.lock().unwrap();
        match b {
            Behaviour::Normal => Ok(()),
            Behaviour::Unavailable => Err(ViewError::Unavailable(
                "chain watcher not started yet".into(),
            )),
            Behaviour::Conflict => Err(ViewError::Conflict(
                "a withdrawal is already in flight".into(),
            )),
            Behaviour::Hang => std::future::pending().await,
            Behaviour::Panic => panic!("fake node panicked"),
            Behaviour::Gated => {
                self.in_flight.send_modify(|n| *n += 1);
                self.max_in_flight
                    .fetch_max(*self.in_flight.borrow(), Ordering::SeqCst);
                self.gate.acquire().await.unwrap().forget();
                self.in_flight.send_modify(|n| *n -= 1);
                Ok(())
            }
        }
    }
}

impl NodeView for FakeNode {
    fn status(&self) -> BoxFuture<'_, Result<NodeStatus, ViewError>> {
        Box::pin(async move {
            self.act().await?;
            Ok(self.status.clone())
        })
    }

    fn earnings(&self) -> BoxFuture<'_, Result<Earnings, ViewError>> {
        Box::pin(async move {
            self.act().await?;
            let accrued: U256 = "123456789012345678901234567890".parse().unwrap();
            let withdrawn = U256::from(100u64);
            Ok(Earnings {
                accrued,
                withdrawn,
                pending: accrued - withdrawn,
                block: Some(120),
                token: Address::repeat_byte(0x22),
                decimals: 6,
            })
        })
    }

    fn pause_offers(&self, paused: bool) -> BoxFuture<'_, Result<(), ViewError>> {
        Box::pin(async move {
            self.act().await?;
            self.calls.lock().unwrap().push(Call::Pause(paused));
            Ok(())
        })
    }

    fn withdraw_now(&self) -> BoxFuture<'_, Result<WithdrawReport, ViewError>> {
        Box::pin(async move {
            self.act().await?;
            self.calls.lock().unwrap().push(Call::Withdraw);
            Ok(WithdrawReport::Withdrawn {
                tx_hash: B256::repeat_byte(0xab),
                leases: vec![B256::repeat_byte(1)],
                amount: U256::from(5_000u64),
            })
        })
    }
}
