//! Batched withdrawals: what the engine worker does on the withdraw timer, on `POST /withdraw`
//! and before a planned shutdown.
//!
//! One `withdrawMany` per batch, holding only this host's leases that have something to
//! withdraw at the block the batch was planned at (`withdrawable(id) > 0`). The transaction is
//! simulated before it is sent ([`HostTx`](crate::chain::HostTx)); what happens after a refusal
//! is the point of this module, because repeating a failing withdrawal every tick is the bug
//! that cost Akash providers their gas:
//! - a lease the escrow refuses on its own (the simulation of a one-lease batch reverts) is left
//!   out for a while ([`Batcher::quarantine`], doubling per strike: 10 min, 20 min, … 24 h) and
//!   the rest of the batch is tried once more;
//! - a batch that fails for another reason (RPC down, a revert no single lease explains, a
//!   receipt that never came) stops scheduled batches for a while (1 min, doubling to 1 h).
//!   An operator's `POST /withdraw` and the shutdown batch still try (a simulation costs no
//!   gas), but never with a quarantined lease.
//!
//! Payouts of a mined batch are recorded from its receipt at once, so `GET /earnings` shows them
//! before the chain watcher (which waits for confirmations) sees the same events.

use std::collections::HashMap;

use alloy::primitives::{B256, U256};
use alloy::providers::Provider;
use gpuflow_protocol::escrow::GpuFlowEscrow::GpuFlowEscrowErrors;
use gpuflow_protocol::escrow::Quote;

use super::{Engine, EngineError, unix_now};
use crate::chain::TxError;
use crate::chain::tx::Mined;
use crate::earnings::{self, Payout};
use crate::lease::{LeaseRecord, State};
use crate::runtime::Runtime;

/// States in which a lease may be running on chain, so may have something to withdraw.
pub const WITHDRAWABLE: [State; 4] = [
    State::Starting,
    State::Launching,
    State::Running,
    State::Ending,
];
/// First quarantine of a lease that makes batches revert; doubles per strike.
const QUARANTINE_SECS: u64 = 600;
/// Longest quarantine.
const QUARANTINE_MAX_SECS: u64 = 86_400;
/// First pause of scheduled batches after a failed one; doubles per failure.
const BACKOFF_SECS: u64 = 60;
/// Longest pause of scheduled batches.
const BACKOFF_MAX_SECS: u64 = 3_600;

/// Why a batch is being withdrawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The `[earnings] withdraw_interval_secs` timer: skipped while backing off.
    Schedule,
    /// An operator (`POST /withdraw`).
    Operator,
    /// The node is stopping.
    Shutdown,
}

/// What a batch did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WithdrawReport {
    /// The `withdrawMany` transaction, or `None` when nothing was sent.
    pub mined: Option<Mined>,
    /// What each lease paid in it (net of the fee).
    pub paid: Vec<Payout>,
    /// Leases left out of the batch, and why.
    pub left_out: Vec<(B256, String)>,
}

impl WithdrawReport {
    fn nothing(left_out: Vec<(B256, String)>) -> Self {
        Self {
            mined: None,
            paid: Vec::new(),
            left_out,
        }
    }

    /// The total paid to the host, net of the fee.
    pub fn amount(&self) -> U256 {
        self.paid.iter().map(|p| p.amount).sum()
    }
}

/// `base * 2^(n-1)` seconds, at most `max` (n ≥ 1).
fn doubling(base: u64, n: u32, max: u64) -> u64 {
    let shift = n.saturating_sub(1).min(32);
    base.saturating_mul(1u64 << shift).min(max)
}

/// A lease left out of batches until `until`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Quarantine {
    until: u64,
    strikes: u32,
}

/// The withdrawal memory the engine worker keeps between batches.
#[derive(Debug, Default)]
pub struct Batcher {
    quarantine: HashMap<B256, Quarantine>,
    failures: u32,
    not_before: u64,
}

impl Batcher {
    /// Whether a batch for `trigger` may run at `now`.
    pub fn may_run(&self, trigger: Trigger, now: u64) -> bool {
        trigger != Trigger::Schedule || now >= self.not_before
    }

    /// Which of `candidates` (with their `withdrawable` amounts) go in a batch at `now`: those
    /// of `host` with something to withdraw that are not quarantined.
    pub fn select<'a>(
        &self,
        candidates: &'a [(LeaseRecord, U256)],
        host: alloy::primitives::Address,
        now: u64,
    ) -> Vec<&'a LeaseRecord> {
        candidates
            .iter()
            .filter(|(rec, amount)| {
                rec.quote.host == host
                    && !amount.is_zero()
                    && self.quarantine.get(&rec.id).is_none_or(|q| now >= q.until)
            })
            .map(|(rec, _)| rec)
            .collect()
    }

    /// Leaves `lease` out of batches for a while (longer each time); returns until when.
    pub fn quarantine(&mut self, lease: B256, now: u64) -> u64 {
        let strikes = self
            .quarantine
            .get(&lease)
            .map_or(1, |q| q.strikes.saturating_add(1));
        let until = now + doubling(QUARANTINE_SECS, strikes, QUARANTINE_MAX_SECS);
        self.quarantine.insert(lease, Quarantine { until, strikes });
        until
    }

    /// A batch failed: scheduled batches pause (longer each time); returns until when.
    pub fn failed(&mut self, now: u64) -> u64 {
        self.failures = self.failures.saturating_add(1);
        self.not_before = now + doubling(BACKOFF_SECS, self.failures, BACKOFF_MAX_SECS);
        self.not_before
    }

    /// A batch went through (or there was nothing to do): scheduled batches resume, and the
    /// leases it paid are forgiven.
    pub fn succeeded(&mut self, paid: impl IntoIterator<Item = B256>) {
        self.failures = 0;
        self.not_before = 0;
        for lease in paid {
            self.quarantine.remove(&lease);
        }
    }
}

/// Whether a revert means "nothing to do" rather than a problem with the batch.
fn is_nothing(e: &TxError) -> bool {
    matches!(
        e.escrow_error(),
        Some(GpuFlowEscrowErrors::NothingToWithdraw(_))
    )
}

impl<P: Provider, R: Runtime> Engine<P, R> {
    /// The escrow's protocol fee (immutable in the contract), read on first use.
    pub(super) async fn fee_bps(&self) -> Result<u16, EngineError> {
        self.fee_bps
            .get_or_try_init(|| async {
                self.escrow
                    .feeBps()
                    .call()
                    .await
                    .map_err(|source| EngineError::Escrow {
                        what: "feeBps",
                        source,
                    })
            })
            .await
            .copied()
    }

    /// Withdraws one batch (see the module docs).
    pub(super) async fn withdraw(
        &self,
        batcher: &mut Batcher,
        trigger: Trigger,
    ) -> Result<WithdrawReport, EngineError> {
        let now = unix_now();
        if !batcher.may_run(trigger, now) {
            tracing::debug!(target: "chain", "scheduled withdrawal skipped: backing off after a failure");
            return Ok(WithdrawReport::nothing(Vec::new()));
        }
        let records = self.repo.in_states(&WITHDRAWABLE).await?;
        let ids: Vec<B256> = records.iter().map(|r| r.id).collect();
        let fee_bps = self.fee_bps().await?;
        let pending = earnings::pending(&self.escrow, &ids, fee_bps, None)
            .await
            .map_err(|source| EngineError::Escrow {
                what: "withdrawable",
                source,
            })?;
        let candidates: Vec<(LeaseRecord, U256)> = records
            .into_iter()
            .map(|r| {
                let amount = pending
                    .leases
                    .iter()
                    .find(|(id, _)| *id == r.id)
                    .map_or(U256::ZERO, |(_, a)| *a);
                (r, amount)
            })
            .collect();
        let batch: Vec<(B256, Quote)> = batcher
            .select(&candidates, self.host, now)
            .into_iter()
            .map(|r| (r.id, r.quote.clone()))
            .collect();
        if batch.is_empty() {
            batcher.succeeded([]);
            return Ok(WithdrawReport::nothing(Vec::new()));
        }
        tracing::info!(target: "chain", leases = batch.len(), block = pending.block, ?trigger, "withdrawing accrued earnings");
        let mut left_out = Vec::new();
        let quotes: Vec<Quote> = batch.iter().map(|(_, q)| q.clone()).collect();
        let first = self.tx.withdraw_many(&quotes).await;
        let outcome = match first {
            Ok(o) => o,
            Err(e) if e.escrow_error().is_some() && !is_nothing(&e) => {
                // One lease may sink the batch: find it by simulating each alone, leave it out,
                // and try the rest once.
                let mut rest = Vec::new();
                for (id, q) in batch {
                    match self
                        .tx
                        .simulate_withdraw_many(std::slice::from_ref(&q))
                        .await
                    {
                        Err(e1) if e1.escrow_error().is_some() && !is_nothing(&e1) => {
                            let until = batcher.quarantine(id, now);
                            tracing::warn!(target: "chain", lease = %id, error = %e1, until, "lease makes withdrawMany revert; left out of batches for now");
                            left_out.push((id, e1.to_string()));
                        }
                        _ => rest.push(q),
                    }
                }
                if left_out.is_empty() || rest.is_empty() {
                    let until = batcher.failed(now);
                    tracing::warn!(target: "chain", error = %e, until, "withdrawMany refused; scheduled batches paused");
                    return Err(e.into());
                }
                match self.tx.withdraw_many(&rest).await {
                    Ok(o) => o,
                    Err(e2) => {
                        let until = batcher.failed(now);
                        tracing::warn!(target: "chain", error = %e2, until, "withdrawMany refused again without the failing leases; scheduled batches paused");
                        return Err(e2.into());
                    }
                }
            }
            Err(e) => {
                let until = batcher.failed(now);
                tracing::warn!(target: "chain", error = %e, until, "withdrawMany failed; scheduled batches paused");
                return Err(e.into());
            }
        };
        for (id, revert) in &outcome.dropped {
            let until = batcher.quarantine(*id, now);
            tracing::warn!(target: "chain", lease = %id, %revert, until, "lease left out of withdrawMany");
            left_out.push((*id, revert.to_string()));
        }
        for p in &outcome.paid {
            if let Err(e) = self.payouts.record(p).await {
                // The watcher delivers the same event later and records it then.
                tracing::warn!(target: "chain", lease = %p.lease, error = %e, "could not record a payout");
            }
        }
        batcher.succeeded(outcome.paid.iter().map(|p| p.lease));
        let report = WithdrawReport {
            mined: outcome.mined,
            paid: outcome.paid,
            left_out,
        };
        if let Some(m) = &report.mined {
            tracing::info!(target: "chain", tx = %m.tx_hash, leases = report.paid.len(), amount = %report.amount(), "earnings withdrawn");
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use alloy::primitives::{Address, Bytes};
    use alloy::sol_types::Eip712Domain;

    use super::*;
    use crate::lease::LeaseSpec;

    fn rec(n: u8, host: Address) -> LeaseRecord {
        let quote = Quote {
            host,
            renter: Address::repeat_byte(2),
            pricePerSecond: U256::from(10u64),
            minDuration: U256::ZERO,
            maxDuration: U256::from(3600u64),
            expiry: U256::from(2_000_000_000u64),
            nonce: U256::from(n),
            specHash: B256::repeat_byte(n),
        };
        LeaseRecord::quoted(
            quote,
            Bytes::new(),
            LeaseSpec::default(),
            &Eip712Domain::default(),
            0,
        )
    }

    #[test]
    fn batch_holds_only_own_leases_with_something_accrued_and_not_quarantined() {
        let host = Address::repeat_byte(1);
        let c = vec![
            (rec(1, host), U256::from(5u64)),
            (rec(2, host), U256::ZERO),
            (rec(3, Address::repeat_byte(9)), U256::from(5u64)),
            (rec(4, host), U256::from(1u64)),
        ];
        let mut b = Batcher::default();
        let ids = |v: Vec<&LeaseRecord>| v.iter().map(|r| r.id).collect::<Vec<_>>();
        assert_eq!(ids(b.select(&c, host, 100)), vec![c[0].0.id, c[3].0.id]);

        let until = b.quarantine(c[0].0.id, 100);
        assert_eq!(until, 100 + QUARANTINE_SECS);
        assert_eq!(ids(b.select(&c, host, 100)), vec![c[3].0.id]);
        assert_eq!(
            ids(b.select(&c, host, until)),
            vec![c[0].0.id, c[3].0.id],
            "back in once the quarantine ends"
        );
        assert_eq!(
            b.quarantine(c[0].0.id, until),
            until + 2 * QUARANTINE_SECS,
            "a second strike doubles it"
        );
        b.succeeded([c[0].0.id]);
        assert_eq!(ids(b.select(&c, host, until)).len(), 2, "paid: forgiven");
    }

    #[test]
    fn failed_batches_pause_the_schedule_only() {
        let mut b = Batcher::default();
        assert!(b.may_run(Trigger::Schedule, 0));
        assert_eq!(b.failed(1000), 1000 + BACKOFF_SECS);
        assert!(!b.may_run(Trigger::Schedule, 1000));
        assert!(b.may_run(Trigger::Operator, 1000));
        assert!(b.may_run(Trigger::Shutdown, 1000));
        assert!(b.may_run(Trigger::Schedule, 1000 + BACKOFF_SECS));
        assert_eq!(b.failed(1000), 1000 + 2 * BACKOFF_SECS);
        for _ in 0..20 {
            b.failed(1000);
        }
        assert_eq!(b.not_before, 1000 + BACKOFF_MAX_SECS, "capped");
        b.succeeded([]);
        assert!(b.may_run(Trigger::Schedule, 1000));
    }

    #[test]
    fn doubling_is_capped_and_never_overflows() {
        assert_eq!(doubling(10, 1, 100), 10);
        assert_eq!(doubling(10, 3, 100), 40);
        assert_eq!(doubling(10, 4, 100), 80);
        assert_eq!(doubling(10, 5, 100), 100);
        assert_eq!(doubling(10, u32::MAX, u64::MAX), 10 << 32);
    }
}
