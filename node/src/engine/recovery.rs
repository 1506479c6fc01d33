//! Restart recovery: what the engine does once, before it handles any event.
//!
//! A node can die at any point (`kill -9`, power loss). Its workloads outlive it (the runtime
//! starts them detached), its lease records say what it last wrote, and the chain says what
//! really happened to the money. Recovery lines the three up, one lease at a time:
//!
//! | record | chain | workload | decision |
//! | --- | --- | --- | --- |
//! | Running | Running | alive | re-adopt it (same process, same port) |
//! | Running | Running, deposit used up | gone | leave it; the normal step ends the lease |
//! | Running | Running | gone | end the lease as the host's fault (→ Ending; the normal step closes it), as when it dies with the node up |
//! | Launching | Running | alive and listening | re-adopt it → Running |
//! | any | Closed | any | stop the workload; the normal step closes the record |
//! | Starting | Pending | – | no `start` of ours waiting in the mempool → back to Opened, so `start` is sent once (if the accept timeout allows); otherwise wait |
//! | none or terminal | – | any | stop it (no orphans) |
//!
//! Everything else (a quote opened while the node was down, a start mined just before the
//! crash, an accept timeout that passed) is what the normal step does anyway; the first tick
//! after recovery runs it.
//!
//! A workload that died while the node was down is never relaunched: a fresh one would have
//! lost the renter's state and moved to new ports, and the renter would have paid for the
//! downtime. The lease ends exactly as if the node had seen the workload die (`WorkloadDied`,
//! then the host's `close`: the renter pays until then and gets the rest back, and the
//! escrow logs `HostClosed`, which counts against the host's reliability).

use std::collections::HashMap;

use alloy::primitives::{B256, U256};
use alloy::providers::Provider;
use gpuflow_protocol::escrow::GpuFlowEscrow::Lease;

use super::{CHAIN_CLOSED, CHAIN_PENDING, CHAIN_RUNNING, Engine, EngineError, unix_now};
use crate::lease::{Event, LeaseRecord, State};
use crate::runtime::{Runtime, WorkloadHandle, WorkloadStatus};

impl<P: Provider, R: Runtime> Engine<P, R> {
    /// Reconciles lease records, the chain and the runtime after a (re)start. Failures are
    /// logged and left to the normal steps; recovery never stops the engine.
    pub(super) async fn recover(&self) {
        let records = match self.repo.active().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(target: "lease", error = %e, "recovery: cannot list leases; skipped");
                return;
            }
        };
        let mut managed: HashMap<B256, WorkloadHandle> = match self.runtime.list_managed().await {
            Ok(list) => list.into_iter().map(|h| (h.lease, h)).collect(),
            Err(e) => {
                tracing::warn!(target: "lease", error = %e, "recovery: cannot list workloads");
                HashMap::new()
            }
        };
        tracing::info!(target: "lease", leases = records.len(), workloads = managed.len(), "recovery: reconciling leases, chain and workloads");
        for rec in &records {
            let found = managed.remove(&rec.id);
            if let Err(e) = self.recover_one(rec, found).await {
                tracing::warn!(target: "lease", lease = %rec.id, error = %e, "recovery failed; the next tick retries the lease");
                let _ = self
                    .repo
                    .set_error(rec.id, Some(&e.to_string()), unix_now())
                    .await;
            }
        }
        // What is left belongs to no live lease: a closed lease, or no record at all.
        for (lease, handle) in managed {
            match self.runtime.stop(&handle).await {
                Ok(()) => {
                    tracing::info!(target: "lease", %lease, workload = %handle.id, decision = "stop_orphan", "recovery: workload of no live lease stopped");
                }
                Err(e) => {
                    tracing::warn!(target: "lease", %lease, workload = %handle.id, error = %e, "recovery: cannot stop an orphan workload");
                }
            }
        }
    }

    async fn recover_one(
        &self,
        rec: &LeaseRecord,
        found: Option<WorkloadHandle>,
    ) -> Result<(), EngineError> {
        let id = rec.id;
        let mut rec = rec.clone();
        // The runtime's pid file is newer than the record when the node died between
        // launching a workload and recording it: the runtime is right.
        if let Some(h) = found
            && rec.workload.as_ref() != Some(&h)
        {
            self.repo.set_workload(id, Some(&h), unix_now()).await?;
            rec.workload = Some(h);
        }
        if rec.state == State::Quoted {
            return Ok(());
        }
        let view = self
            .escrow
            .lease(id)
            .call()
            .await
            .map_err(|source| EngineError::View { lease: id, source })?;
        // Gone as the running node's step judges it: ended or unknown to the runtime (a
        // workload still starting is not gone).
        let alive = match &rec.workload {
            Some(w) => !matches!(
                self.runtime.status(w).await?,
                WorkloadStatus::Exited { .. } | WorkloadStatus::Missing
            ),
            None => false,
        };
        // A live workload of a lease still open on chain is ours again (its SSH gate back).
        if alive
            && view.status != CHAIN_CLOSED
            && let Some(w) = &rec.workload
        {
            self.runtime.adopt(w).await;
        }
        let now = unix_now();
        match (rec.state, view.status) {
            (State::Running, CHAIN_RUNNING) if alive => {
                let port = rec
                    .workload
                    .as_ref()
                    .and_then(|w| w.ports.first())
                    .map(|p| p.host);
                tracing::info!(target: "lease", lease = %id, ?port, decision = "readopt", "recovery: workload re-adopted");
            }
            (State::Running, CHAIN_RUNNING) if deposit_used_up(&view, now) => {
                // The deposit is earned in full: the normal step ends the lease as depleted.
                tracing::info!(target: "lease", lease = %id, decision = "end_depleted", "recovery: workload gone and the deposit used up while the node was down; not relaunching it");
            }
            (State::Running, CHAIN_RUNNING) => {
                // What the running node does when a workload dies (see the module docs).
                tracing::warn!(target: "lease", lease = %id, decision = "end_died", "recovery: workload died while the node was down; ending the lease");
                self.repo.apply(id, Event::WorkloadDied, now).await?;
            }
            (State::Launching, CHAIN_RUNNING) if alive => {
                if let Some(w) = &rec.workload
                    && self.wait_ready(w).await.is_ok()
                {
                    self.repo.apply(id, Event::WorkloadUp, now).await?;
                    tracing::info!(target: "lease", lease = %id, decision = "readopt", "recovery: workload of an interrupted launch re-adopted");
                }
                // Otherwise the normal step replaces it.
            }
            (_, CHAIN_CLOSED) => {
                self.stop_workload(&rec).await?;
                tracing::info!(target: "lease", lease = %id, state = %rec.state, decision = "stop_closed", "recovery: lease closed on chain while the node was down");
            }
            (State::Starting, CHAIN_PENDING) => {
                // Pending on chain: the `start` sent before the crash (if any) is not mined. It
                // may still wait in the mempool; only when none of ours does is a resend safe.
                let provider = self.escrow.provider();
                let chain = |what| move |source| EngineError::Chain { what, source };
                let pending = provider
                    .get_transaction_count(self.host)
                    .pending()
                    .await
                    .map_err(chain("the host's pending nonce"))?;
                let mined = provider
                    .get_transaction_count(self.host)
                    .latest()
                    .await
                    .map_err(chain("the host's nonce"))?;
                if pending > mined {
                    tracing::info!(target: "lease", lease = %id, pending, mined, decision = "wait_start", "recovery: a host transaction is still pending; not resending start");
                } else {
                    self.repo.apply(id, Event::StartTxLost, now).await?;
                    tracing::info!(target: "lease", lease = %id, decision = "resend_start", "recovery: start was not mined before the restart; it is sent once if the accept timeout allows");
                }
            }
            (state, status) => {
                tracing::info!(target: "lease", lease = %id, %state, chain_status = status, decision = "resume", "recovery: resumed by the normal steps");
            }
        }
        Ok(())
    }
}

/// Whether the running lease's deposit is used up at `now` (unix seconds): the same test the
/// normal step ends a lease on.
fn deposit_used_up(view: &Lease, now: u64) -> bool {
    let since = u64::try_from(view.since).unwrap_or(u64::MAX);
    let owed = U256::from(view.pricePerSecond) * U256::from(now.saturating_sub(since));
    owed >= U256::from(view.deposit)
}
