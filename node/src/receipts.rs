//! Renter-signed receipts on the host: accepted over `/gpuflow/lease/1`, kept in `node.db`,
//! published with the host's offers.
//!
//! - [`ReceiptDesk`] checks a [`SignedReceipt`] (shape, not from the future, the lease is one
//!   of this host's leases that the chain saw opened, and the signature recovers to the lease's
//!   renter, which the lease id binds: it is the digest of the quote naming that renter) and
//!   stores it, at most [`MAX_SESSIONS_PER_LEASE`] prober sessions per lease.
//! - [`intercept`] sits between the p2p event loop and [`crate::quote::serve`]: it answers
//!   `Receipt` requests itself and passes every other request on unchanged.
//! - [`ReceiptSink`] wraps the announcer's sink and re-signs each offer with the newest receipt
//!   of the host's [`PUBLISHED_LEASES`] most recent leases attached (fewer when the offer would
//!   pass its size limit).
//!
//! The host cannot forge receipts (they are the renter's signatures), but it chooses which to
//! keep and publish; `docs/reliability.md` says what that means for the score.

use std::path::Path;

use alloy::primitives::{Address, B256, Bytes};
use alloy::sol_types::Eip712Domain;
use ed25519_dalek::SigningKey;
use gpuflow_p2p::{Client, InboundLease};
use gpuflow_protocol::escrow;
use gpuflow_protocol::offer::{MAX_CLOCK_SKEW_SECS, Offer, SignedOffer};
use gpuflow_protocol::receipt::{MAX_OFFER_RECEIPTS, SignedReceipt};
use gpuflow_protocol::wire::{LeaseRequest, LeaseResponse, SignedWithdrawal, code};
use sqlx::Row;
use sqlx::sqlite::SqlitePool;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::lease::record::{LeaseRepo, RepoError, to_i64, to_u64};
use crate::offers::OfferSink;

/// Most prober sessions kept per lease; a renter that restarts its prober more often than this
/// gets its newer sessions refused.
pub const MAX_SESSIONS_PER_LEASE: i64 = 64;
/// How many recent leases' newest receipts go into each offer (the offer's own bound,
/// [`MAX_OFFER_RECEIPTS`], and its size limit may cut further).
pub const PUBLISHED_LEASES: usize = MAX_OFFER_RECEIPTS;
/// Lease requests waiting between [`intercept`] and the quote desk; when full, the intercept
/// waits, and the p2p loop's own bounded queue pushes back on peers as before.
const FORWARD_QUEUE: usize = 64;

/// Checks and keeps receipts. Cheap to clone (pool handles).
#[derive(Debug, Clone)]
pub struct ReceiptDesk {
    leases: LeaseRepo,
    domain: Eip712Domain,
}

impl ReceiptDesk {
    /// Opens `node.db` at `db_path` (migrating it) for receipts of leases through `escrow` on
    /// `chain_id`.
    pub async fn open(db_path: &Path, chain_id: u64, escrow: Address) -> Result<Self, RepoError> {
        Ok(Self {
            leases: LeaseRepo::open(db_path).await?,
            domain: escrow::domain(chain_id, escrow),
        })
    }

    fn pool(&self) -> &SqlitePool {
        self.leases.pool()
    }

    /// Checks `r` and stores it: [`LeaseResponse::Ack`], or an error saying why not.
    pub async fn accept(&self, r: &SignedReceipt, now: u64) -> LeaseResponse {
        let refuse = |m: String| LeaseResponse::error(code::INVALID_REQUEST, m);
        if let Err(e) = r.check_shape() {
            return refuse(e.to_string());
        }
        if r.window_end > now + MAX_CLOCK_SKEW_SECS {
            return refuse("receipt window ends in the future; check the renter's clock".into());
        }
        let rec = match self.leases.get(r.lease_id).await {
            Ok(Some(rec)) => rec,
            Ok(None) => {
                return refuse(format!("lease {} is not a lease of this host", r.lease_id));
            }
            Err(e) => return LeaseResponse::error(code::INTERNAL, e.to_string()),
        };
        if rec.opened_at.is_none() {
            return refuse(format!(
                "lease {} was not opened on chain (as this host sees it); send receipts once it runs",
                r.lease_id
            ));
        }
        if let Err(e) = r.verify(&self.domain, rec.quote.renter) {
            return refuse(e.to_string());
        }
        match self.store(r, now).await {
            Ok(true) => LeaseResponse::Ack,
            Ok(false) => refuse(format!(
                "lease {} has {MAX_SESSIONS_PER_LEASE} receipt sessions already; keep one prober running",
                r.lease_id
            )),
            Err(e) => LeaseResponse::error(code::INTERNAL, format!("receipt not stored: {e}")),
        }
    }

    /// Stores a checked receipt; false when the lease has its maximum of sessions.
    async fn store(&self, r: &SignedReceipt, now: u64) -> Result<bool, sqlx::Error> {
        let mut tx = self.pool().begin().await?;
        let others: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM lease_receipts WHERE lease_id = ? AND window_start != ?",
        )
        .bind(r.lease_id.as_slice())
        .bind(to_i64(r.window_start))
        .fetch_one(&mut *tx)
        .await?;
        if others >= MAX_SESSIONS_PER_LEASE {
            return Ok(false);
        }
        // A session's newer receipt replaces its older one; a late older one changes nothing.
        sqlx::query(
            "INSERT INTO lease_receipts (lease_id, window_start, window_end, renter, probes, \
               reachable, signature, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (lease_id, window_start) DO UPDATE SET window_end = excluded.window_end, \
               renter = excluded.renter, probes = excluded.probes, reachable = excluded.reachable, \
               signature = excluded.signature, received_at = excluded.received_at \
             WHERE excluded.window_end > lease_receipts.window_end",
        )
        .bind(r.lease_id.as_slice())
        .bind(to_i64(r.window_start))
        .bind(to_i64(r.window_end))
        .bind(r.renter.as_slice())
        .bind(i64::from(r.probes))
        .bind(i64::from(r.reachable))
        .bind(r.signature.as_ref())
        .bind(to_i64(now))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The newest receipt of each of the `leases` leases with the most recent receipts, newest
    /// first.
    pub async fn latest(&self, leases: usize) -> Result<Vec<SignedReceipt>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT lease_id, window_start, window_end, renter, probes, reachable, signature \
             FROM lease_receipts r WHERE window_end = \
               (SELECT MAX(window_end) FROM lease_receipts WHERE lease_id = r.lease_id) \
             ORDER BY window_end DESC, lease_id LIMIT ?",
        )
        .bind(i64::try_from(leases).unwrap_or(i64::MAX))
        .fetch_all(self.pool())
        .await?;
        let mut out: Vec<SignedReceipt> = Vec::with_capacity(rows.len());
        for row in rows {
            let r = SignedReceipt {
                lease_id: B256::try_from(row.try_get::<Vec<u8>, _>("lease_id")?.as_slice())
                    .unwrap_or_default(),
                window_start: to_u64(row.try_get("window_start")?),
                window_end: to_u64(row.try_get("window_end")?),
                renter: Address::try_from(row.try_get::<Vec<u8>, _>("renter")?.as_slice())
                    .unwrap_or_default(),
                probes: u32::try_from(row.try_get::<i64, _>("probes")?).unwrap_or(0),
                reachable: u32::try_from(row.try_get::<i64, _>("reachable")?).unwrap_or(0),
                signature: Bytes::from(row.try_get::<Vec<u8>, _>("signature")?),
            };
            // Two sessions of one lease ending in the same second: publish one.
            if !out.iter().any(|o| o.lease_id == r.lease_id) {
                out.push(r);
            }
        }
        Ok(out)
    }
}

/// Answers `Receipt` requests from `inbound` with `desk` in a task in `tasks`, and returns the
/// channel every other request goes on to (for [`crate::quote::serve`]). The task ends when
/// `inbound` closes (the p2p loop stopped) or the returned receiver is dropped.
pub fn intercept(
    mut inbound: mpsc::Receiver<InboundLease>,
    desk: ReceiptDesk,
    client: Client,
    tasks: &mut JoinSet<()>,
) -> mpsc::Receiver<InboundLease> {
    let (tx, rx) = mpsc::channel(FORWARD_QUEUE);
    tasks.spawn(async move {
        while let Some(req) = inbound.recv().await {
            let InboundLease {
                peer,
                token,
                request: LeaseRequest::Receipt(r),
            } = req
            else {
                if tx.send(req).await.is_err() {
                    return;
                }
                continue;
            };
            let response = desk.accept(&r, crate::offers::unix_now()).await;
            match &response {
                LeaseResponse::Ack => tracing::info!(target: "lease", %peer, lease = %r.lease_id,
                    window_end = r.window_end, probes = r.probes, reachable = r.reachable, "receipt kept"),
                other => tracing::info!(target: "lease", %peer, lease = %r.lease_id,
                    answer = ?other, "receipt refused"),
            }
            if let Err(e) = client.respond_lease(token, response).await {
                tracing::debug!(target: "lease", %peer, error = %e, "receipt answer not delivered");
            }
        }
    });
    rx
}

/// An [`OfferSink`] that attaches the host's newest receipts to every offer it publishes,
/// re-signing it with the node key. Without a desk (no lease engine) offers pass unchanged.
#[derive(Debug)]
pub struct ReceiptSink<S> {
    inner: S,
    desk: Option<ReceiptDesk>,
    key: SigningKey,
}

impl<S> ReceiptSink<S> {
    /// Wraps `inner`; `key` must be the node key the announcer signs with.
    pub fn new(inner: S, desk: Option<ReceiptDesk>, key: SigningKey) -> Self {
        Self { inner, desk, key }
    }

    /// `offer` with receipts attached, or `offer` itself when there are none or anything fails
    /// (receipts are optional; an offer must never be held back for them).
    async fn with_receipts(&self, offer: SignedOffer) -> SignedOffer {
        let Some(desk) = &self.desk else {
            return offer;
        };
        let receipts = match desk.latest(PUBLISHED_LEASES).await {
            Ok(r) if !r.is_empty() => r,
            Ok(_) => return offer,
            Err(e) => {
                tracing::warn!(target: "offers", error = %e, "cannot read receipts; offer published without them");
                return offer;
            }
        };
        let attached = serde_json::from_str::<Offer>(&offer.payload)
            .map_err(|e| e.to_string())
            .and_then(|o| {
                SignedOffer::sign_with_receipts(&o, &receipts, &self.key).map_err(|e| e.to_string())
            });
        match attached {
            Ok(signed) => signed,
            Err(e) => {
                tracing::warn!(target: "offers", error = %e, "cannot attach receipts; offer published without them");
                offer
            }
        }
    }
}

impl<S: OfferSink> OfferSink for ReceiptSink<S> {
    type Error = S::Error;

    async fn publish(&self, offer: SignedOffer) -> Result<(), Self::Error> {
        let offer = self.with_receipts(offer).await;
        self.inner.publish(offer).await
    }

    async fn withdraw(&self, w: SignedWithdrawal) -> Result<(), Self::Error> {
        self.inner.withdraw(w).await
    }
}

#[cfg(test)]
#[path = "receipts_tests.rs"]
mod tests;
