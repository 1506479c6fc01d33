//! The engine's work on workloads: getting one ready before `start` (billing from ready),
//! launching and waiting for its port, stopping it, noticing a runtime that stopped answering,
//! sweeping up workloads of ended leases, and declining a lease whose workload cannot run.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use alloy::primitives::B256;
use alloy::providers::Provider;

use super::{Engine, EngineError, SWEEP_EVERY, runnable_spec, unix_now};
use crate::lease::LeaseRecord;
use crate::runtime::{Runtime, WorkloadHandle, WorkloadStatus};

impl<P: Provider, R: Runtime> Engine<P, R> {
    pub(super) fn runtime_answered(&self, lease: B256) {
        self.runtime_down
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&lease);
    }

    /// Seconds the runtime has been failing for `lease` as of `now`.
    pub(super) fn runtime_failing(&self, lease: B256, now: u64) -> u64 {
        let mut down = self
            .runtime_down
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        now.saturating_sub(*down.entry(lease).or_insert(now))
    }

    /// Stops workloads whose lease is over (or unknown), at most every [`SWEEP_EVERY`].
    pub(super) async fn sweep_orphans(&self) {
        {
            let mut last = self
                .last_sweep
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let now = tokio::time::Instant::now();
            if last.is_some_and(|t| now.duration_since(t) < SWEEP_EVERY) {
                return;
            }
            *last = Some(now);
        }
        let Ok(managed) = self.runtime.list_managed().await else {
            return;
        };
        for handle in managed {
            let live = match self.repo.get(handle.lease).await {
                Ok(Some(rec)) => !rec.state.is_terminal(),
                Ok(None) => false,
                Err(_) => true,
            };
            if live {
                continue;
            }
            match self.runtime.stop(&handle).await {
                Ok(()) => {
                    tracing::info!(target: "lease", lease = %handle.lease, workload = %handle.id, "stopped the workload of an ended lease");
                    let _ = self.repo.set_workload(handle.lease, None, unix_now()).await;
                }
                Err(e) => {
                    tracing::debug!(target: "lease", lease = %handle.lease, error = %e, "sweep: cannot stop the workload yet");
                }
            }
        }
    }

    /// Launches the workload of an opened lease before `start` (unless a live one is there
    /// from before a restart), within `budget`; the error says why it did not come up.
    pub(super) async fn prepare(&self, rec: &LeaseRecord, budget: Duration) -> Result<(), String> {
        if let Some(w) = &rec.workload {
            match self.runtime.status(w).await {
                Ok(WorkloadStatus::Running) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        match tokio::time::timeout(budget, self.launch(rec)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "the workload was not ready within the {} s left of the accept timeout (image pull \
                 or start too slow)",
                budget.as_secs()
            )),
        }
    }

    /// Launches the workload and waits until its first port accepts connections.
    pub(super) async fn launch(&self, rec: &LeaseRecord) -> Result<(), EngineError> {
        let id = rec.id;
        // A workload from an interrupted launch is replaced, never doubled.
        self.stop_workload(rec).await?;
        let spec = runnable_spec(&rec.spec, self.kind);
        let handle = self.runtime.launch(id, &spec).await?;
        self.repo
            .set_workload(id, Some(&handle), unix_now())
            .await?;
        self.wait_ready(&handle).await
    }

    /// Waits until the workload's first port accepts connections.
    pub(super) async fn wait_ready(&self, handle: &WorkloadHandle) -> Result<(), EngineError> {
        let id = handle.lease;
        let port = handle.ports.first().map_or(0, |p| p.host);
        let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
        let deadline = tokio::time::Instant::now() + self.ready_timeout;
        loop {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                tracing::info!(target: "lease", lease = %id, port, "workload up");
                return Ok(());
            }
            if let WorkloadStatus::Exited { code } = self.runtime.status(handle).await? {
                return Err(EngineError::NotReady {
                    lease: id,
                    why: format!("exited with {code:?} before listening on port {port}"),
                });
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(EngineError::NotReady {
                    lease: id,
                    why: format!(
                        "did not listen on port {port} within {:?}",
                        self.ready_timeout
                    ),
                });
            }
            // The workload gives no readiness signal but the open port: poll it.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(super) async fn stop_workload(&self, rec: &LeaseRecord) -> Result<(), EngineError> {
        if let Some(w) = &rec.workload {
            self.runtime.stop(w).await?;
            self.repo.set_workload(rec.id, None, unix_now()).await?;
        }
        Ok(())
    }

    /// Closes an opened lease before `start`: the renter gets the whole deposit back at once
    /// (logged on chain as `HostDeclined`).
    pub(super) async fn decline(&self, rec: &LeaseRecord) -> Result<(), EngineError> {
        let m = self.tx.close(&rec.quote).await?;
        tracing::info!(target: "lease", lease = %rec.id, tx = %m.tx_hash, "lease declined on chain");
        Ok(())
    }
}
