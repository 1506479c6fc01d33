//! Renter-signed receipts in the index: verified against the chain's renter of each lease
//! before they are kept, and counted when they are not.
//!
//! Receipts reach the index from hosts' offers (`gpuflow search` and `gpuflow host` read the
//! book) and from the renter's own CLI (`gpuflow wait` keeps what it signs). A receipt is kept
//! only if its lease has a `LeaseOpened` in the index (somebody paid a deposit), the lease's
//! renter signed it, and, when it came in a host's offer, the lease is that host's. Everything
//! else is counted as ignored against the host that published it, and carries no weight.
//!
//! Bounds: at most [`MAX_SESSIONS_PER_LEASE`] receipts per lease (one per prober session: a
//! newer cumulative receipt of a session replaces the older) and [`MAX_IGNORED_PER_HOST`]
//! ignored receipts per host; beyond them new ones are dropped (and counted as ignored).

use std::collections::HashMap;

use alloy::primitives::{Address, B256};
use alloy::sol_types::Eip712Domain;
use gpuflow_protocol::escrow::domain;
use gpuflow_protocol::receipt::SignedReceipt;
use sqlx::Row;

use crate::coverage::Observed;
use crate::indexer::{IndexerError, ScoreReader};
use crate::store::{Store, StoreError, addr, b256, i64_of, u64_of};

/// Most prober sessions (receipt rows) kept per lease.
pub const MAX_SESSIONS_PER_LEASE: i64 = 64;
/// Most ignored receipts remembered per host.
pub const MAX_IGNORED_PER_HOST: i64 = 1024;

/// What [`ScoreReader::ingest_receipts`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IngestReport {
    /// Verified and stored (or already known).
    pub kept: usize,
    /// Refused: counted against the host that published them.
    pub ignored: usize,
    /// Not looked at: the index was never synced, so there is no chain to check them against.
    pub unchecked: usize,
}

impl Store {
    /// Every kept receipt, by lease.
    pub(crate) async fn observed_by_lease(
        &self,
    ) -> Result<HashMap<B256, Vec<Observed>>, StoreError> {
        let rows = sqlx::query(
            "SELECT lease_id, window_start, window_end, probes, reachable FROM receipts",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out: HashMap<B256, Vec<Observed>> = HashMap::new();
        for r in rows {
            out.entry(b256(&r.try_get::<Vec<u8>, _>("lease_id")?))
                .or_default()
                .push(Observed {
                    start: u64_of(r.try_get("window_start")?),
                    end: u64_of(r.try_get("window_end")?),
                    probes: u32::try_from(r.try_get::<i64, _>("probes")?).unwrap_or(0),
                    reachable: u32::try_from(r.try_get::<i64, _>("reachable")?).unwrap_or(0),
                });
        }
        Ok(out)
    }

    /// The host and renter of `lease` as its `LeaseOpened` says, if indexed.
    async fn parties(&self, lease: B256) -> Result<Option<(Address, Address)>, StoreError> {
        let row = sqlx::query("SELECT host, renter FROM lease_opened WHERE lease_id = ?")
            .bind(lease.as_slice())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok((
                addr(&r.try_get::<Vec<u8>, _>("host")?),
                addr(&r.try_get::<Vec<u8>, _>("renter")?),
            ))
        })
        .transpose()
    }

    /// Stores a verified receipt; false when the lease already has its maximum of sessions.
    async fn keep(&self, r: &SignedReceipt, digest: B256, now: u64) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let sessions: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM receipts WHERE lease_id = ? AND window_start != ?",
        )
        .bind(r.lease_id.as_slice())
        .bind(i64_of(r.window_start))
        .fetch_one(&mut *tx)
        .await?;
        if sessions >= MAX_SESSIONS_PER_LEASE {
            return Ok(false);
        }
        // A session's newer receipt (further end) replaces the older; an older one changes
        // nothing.
        sqlx::query(
            "INSERT INTO receipts \
               (lease_id, window_start, window_end, renter, probes, reachable, signature, seen_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (lease_id, window_start) DO UPDATE SET \
               window_end = excluded.window_end, renter = excluded.renter, \
               probes = excluded.probes, reachable = excluded.reachable, \
               signature = excluded.signature, seen_at = excluded.seen_at \
             WHERE excluded.window_end > receipts.window_end",
        )
        .bind(r.lease_id.as_slice())
        .bind(i64_of(r.window_start))
        .bind(i64_of(r.window_end))
        .bind(r.renter.as_slice())
        .bind(i64::from(r.probes))
        .bind(i64::from(r.reachable))
        .bind(r.signature.as_ref())
        .bind(i64_of(now))
        .execute(&mut *tx)
        .await?;
        // It may have been ignored before its lease was indexed.
        sqlx::query("DELETE FROM receipts_ignored WHERE digest = ?")
            .bind(digest.as_slice())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn ignore(
        &self,
        host: Address,
        r: &SignedReceipt,
        digest: B256,
        reason: &str,
        now: u64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT OR IGNORE INTO receipts_ignored (digest, host, lease_id, reason, seen_at) \
             SELECT ?, ?, ?, ?, ? \
             WHERE (SELECT COUNT(*) FROM receipts_ignored WHERE host = ?) < ?",
        )
        .bind(digest.as_slice())
        .bind(host.as_slice())
        .bind(r.lease_id.as_slice())
        .bind(reason)
        .bind(i64_of(now))
        .bind(host.as_slice())
        .bind(MAX_IGNORED_PER_HOST)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// How many receipts `host` published that were ignored.
    pub(crate) async fn ignored_count(&self, host: Address) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM receipts_ignored WHERE host = ?")
            .bind(host.as_slice())
            .fetch_one(&self.pool)
            .await?;
        Ok(u64_of(n))
    }
}

impl ScoreReader {
    /// The EIP-712 domain receipts of the indexed deployment are signed under, once synced.
    pub async fn receipt_domain(&self) -> Result<Option<Eip712Domain>, IndexerError> {
        Ok(self.indexed().await?.map(|(c, e)| domain(c, e)))
    }

    /// Verifies `receipts` against the index and keeps those that pass (see the module docs).
    /// `published_by`: the host wallet whose offer carried them (each lease must be its own;
    /// refusals are counted against it), or `None` for receipts the renter's CLI signed itself.
    /// Sync the index first: a receipt for a lease not indexed yet is ignored.
    pub async fn ingest_receipts(
        &self,
        published_by: Option<Address>,
        receipts: &[SignedReceipt],
        now: u64,
    ) -> Result<IngestReport, IndexerError> {
        let mut report = IngestReport::default();
        let Some(domain) = self.receipt_domain().await? else {
            report.unchecked = receipts.len();
            return Ok(report);
        };
        for r in receipts {
            let digest = r.digest(&domain);
            let verdict = match self.store.parties(r.lease_id).await? {
                None => Err("no LeaseOpened for this lease: nobody paid for it".to_owned()),
                Some((host, _)) if published_by.is_some_and(|p| p != host) => {
                    Err(format!("lease of another host ({host})"))
                }
                Some((_, renter)) => r.verify(&domain, renter).map_err(|e| e.to_string()),
            };
            let kept = match verdict {
                Ok(()) => self.store.keep(r, digest, now).await?,
                Err(why) => {
                    tracing::debug!(lease = %r.lease_id, renter = %r.renter, %why, "receipt ignored");
                    if let Some(host) = published_by {
                        self.store.ignore(host, r, digest, &why, now).await?;
                    }
                    false
                }
            };
            if kept {
                report.kept += 1;
            } else {
                report.ignored += 1;
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
#[path = "receipts_tests.rs"]
mod tests;
