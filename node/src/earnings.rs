//! What the host earned: payouts already received (from escrow events, persisted) and what its
//! running leases would pay now (read from the escrow).
//!
//! - [`PayoutRepo`] keeps one row per `Withdrawn` event and per `LeaseClosed` that paid the
//!   host (table `lease_payouts`, migration `node/migrations/20260301000000_payouts.sql`). The
//!   engine writes them from the chain watcher's events and from the receipts of its own
//!   `withdrawMany`; both carry the event's place on chain, so a repeat lands on the same row.
//! - [`pending`] asks the escrow, at one pinned block, what each open lease would pay if
//!   withdrawn now (`withdrawable(id)`, gross) and takes the protocol fee off exactly as the
//!   contract does (per lease, rounded down), so the figure is what would reach the wallet.
//!
//! All amounts are token base units; `withdrawn` and `pending` are net of the protocol fee.

use alloy::eips::BlockId;
use alloy::primitives::{Address, B256, U256};
use alloy::providers::Provider;
use gpuflow_protocol::escrow::GpuFlowEscrow::GpuFlowEscrowInstance;
use sqlx::Row;
use sqlx::sqlite::SqlitePool;

use crate::lease::record::to_i64;

/// Basis points in one whole (the escrow's `BPS`).
const BPS: u64 = 10_000;

/// Why payouts could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("payout records in the node database: {0}")]
pub struct PayoutError(#[from] sqlx::Error);

pub use crate::chain::{Payout, PayoutKind};

/// The payout table of one stream (chain id, escrow, host). Cheap to clone.
#[derive(Debug, Clone)]
pub struct PayoutRepo {
    pool: SqlitePool,
    stream: String,
}

impl PayoutRepo {
    /// Payouts to `host` by `escrow` on `chain_id`, in a migrated node database.
    pub fn new(pool: SqlitePool, chain_id: u64, escrow: Address, host: Address) -> Self {
        Self {
            pool,
            stream: format!("{chain_id}:{escrow}:{host}"),
        }
    }

    /// Records `p`; a payout already recorded (same block and log index) is left as it is.
    pub async fn record(&self, p: &Payout) -> Result<(), PayoutError> {
        sqlx::query(
            "INSERT OR IGNORE INTO lease_payouts \
             (stream, block_number, log_index, lease_id, tx_hash, kind, amount, fee) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&self.stream)
        .bind(to_i64(p.meta.block_number))
        .bind(to_i64(p.meta.log_index))
        .bind(p.lease.as_slice())
        .bind(p.meta.tx_hash.as_slice())
        .bind(p.kind.as_str())
        .bind(p.amount.to_string())
        .bind(p.fee.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Forgets payouts in blocks after `fork_block` (a reorg replaced them).
    pub async fn rollback_after(&self, fork_block: u64) -> Result<u64, PayoutError> {
        let done = sqlx::query("DELETE FROM lease_payouts WHERE stream = ? AND block_number > ?")
            .bind(&self.stream)
            .bind(to_i64(fork_block))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Everything paid to the host, net of fees, and the fees, over all leases.
    pub async fn totals(&self) -> Result<(U256, U256), PayoutError> {
        let rows = sqlx::query("SELECT amount, fee FROM lease_payouts WHERE stream = ?")
            .bind(&self.stream)
            .fetch_all(&self.pool)
            .await?;
        let mut amount = U256::ZERO;
        let mut fee = U256::ZERO;
        for r in rows {
            // Written by `record` from a U256; an unreadable value is a corrupt row, counted 0.
            amount += parse(&r.try_get::<String, _>("amount")?);
            fee += parse(&r.try_get::<String, _>("fee")?);
        }
        Ok((amount, fee))
    }

    /// Net payouts of one lease, in chain order.
    pub async fn of_lease(&self, lease: B256) -> Result<Vec<U256>, PayoutError> {
        let rows = sqlx::query(
            "SELECT amount FROM lease_payouts WHERE stream = ? AND lease_id = ? \
             ORDER BY block_number, log_index",
        )
        .bind(&self.stream)
        .bind(lease.as_slice())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok(parse(&r.try_get::<String, _>("amount")?)))
            .collect()
    }
}

fn parse(text: &str) -> U256 {
    text.parse().unwrap_or_default()
}

/// The protocol fee on `gross`, rounded down, as the escrow's `_fee` computes it.
pub fn fee_of(gross: U256, fee_bps: u16) -> U256 {
    gross * U256::from(fee_bps) / U256::from(BPS)
}

/// What withdrawing `leases` at block `at` would pay: per lease the gross `withdrawable(id)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// The block the escrow was read at.
    pub block: u64,
    /// Each lease with something to withdraw, and its gross amount.
    pub leases: Vec<(B256, U256)>,
    /// Their sum net of the protocol fee (fee taken per lease, as the escrow does).
    pub net: U256,
}

/// Reads `withdrawable(id)` for every id at block `at` (the latest when `None`).
pub async fn pending<P: Provider>(
    escrow: &GpuFlowEscrowInstance<P>,
    ids: &[B256],
    fee_bps: u16,
    at: Option<u64>,
) -> Result<Pending, alloy::contract::Error> {
    let block = match at {
        Some(b) => b,
        None => escrow
            .provider()
            .get_block_number()
            .await
            .map_err(alloy::contract::Error::TransportError)?,
    };
    let mut leases = Vec::new();
    let mut net = U256::ZERO;
    for &id in ids {
        let gross = escrow
            .withdrawable(id)
            .block(BlockId::number(block))
            .call()
            .await?;
        if !gross.is_zero() {
            net += gross - fee_of(gross, fee_bps);
            leases.push((id, gross));
        }
    }
    Ok(Pending { block, leases, net })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::{CloseReason, EventMeta, LeaseEvent};
    use crate::lease::record::open_pool;

    fn meta(block: u64, log: u64) -> EventMeta {
        EventMeta {
            block_number: block,
            block_hash: B256::repeat_byte(1),
            tx_hash: B256::repeat_byte(2),
            log_index: log,
        }
    }

    #[test]
    fn fee_rounds_down_like_the_escrow() {
        assert_eq!(fee_of(U256::from(99u64), 100), U256::ZERO);
        assert_eq!(fee_of(U256::from(100u64), 100), U256::from(1u64));
        assert_eq!(fee_of(U256::from(12_345u64), 100), U256::from(123u64));
        assert_eq!(fee_of(U256::from(12_345u64), 0), U256::ZERO);
    }

    #[test]
    fn only_paying_events_are_payouts() {
        let lease = B256::repeat_byte(9);
        let w = LeaseEvent::Withdrawn {
            lease,
            amount: U256::from(99u64),
            fee: U256::from(1u64),
        };
        let p = Payout::from_event(meta(5, 0), &w).unwrap();
        assert_eq!(
            (p.kind, p.amount, p.fee),
            (PayoutKind::Withdrawn, U256::from(99u64), U256::from(1u64))
        );
        let closed = |host_amount: u64| LeaseEvent::Closed {
            lease,
            renter: Address::ZERO,
            closed_by: Address::ZERO,
            reason: CloseReason::RenterClosed,
            host_amount: U256::from(host_amount),
            fee: U256::ZERO,
            refund: U256::from(7u64),
            started_at: 1,
            closed_at: 2,
        };
        assert_eq!(
            Payout::from_event(meta(6, 0), &closed(0)),
            None,
            "nothing paid"
        );
        assert_eq!(
            Payout::from_event(meta(6, 0), &closed(3)).map(|p| p.kind),
            Some(PayoutKind::Closed)
        );
        let started = LeaseEvent::Started {
            lease,
            renter: Address::ZERO,
            started_at: 1,
        };
        assert_eq!(Payout::from_event(meta(7, 0), &started), None);
    }

    #[tokio::test]
    async fn payouts_are_recorded_once_summed_and_rolled_back() {
        let tmp = tempfile::tempdir().unwrap();
        let pool = open_pool(&tmp.path().join("db")).await.unwrap();
        let repo = PayoutRepo::new(pool.clone(), 1, Address::ZERO, Address::repeat_byte(1));
        let other = PayoutRepo::new(pool, 1, Address::ZERO, Address::repeat_byte(2));
        let (a, b) = (B256::repeat_byte(0xa), B256::repeat_byte(0xb));
        let p = |block, log, lease, amount: u64| Payout {
            meta: meta(block, log),
            lease,
            kind: PayoutKind::Withdrawn,
            amount: U256::from(amount),
            fee: U256::from(amount / 99),
        };
        repo.record(&p(10, 0, a, 990)).await.unwrap();
        repo.record(&p(10, 1, b, 198)).await.unwrap();
        // At-least-once delivery: the same event again changes nothing.
        repo.record(&p(10, 0, a, 990)).await.unwrap();
        repo.record(&p(12, 0, a, 99)).await.unwrap();
        assert_eq!(
            repo.totals().await.unwrap(),
            (U256::from(1287u64), U256::from(13u64))
        );
        assert_eq!(
            repo.of_lease(a).await.unwrap(),
            vec![U256::from(990u64), U256::from(99u64)]
        );
        assert_eq!(other.totals().await.unwrap(), (U256::ZERO, U256::ZERO));

        assert_eq!(repo.rollback_after(10).await.unwrap(), 1);
        assert_eq!(repo.of_lease(a).await.unwrap(), vec![U256::from(990u64)]);
        assert_eq!(repo.totals().await.unwrap().0, U256::from(1188u64));
    }
}
