//! `gpuflow stop <id>`: close the lease on the escrow; the host is paid what accrued, the
//! protocol fee is taken from that, the rest of the deposit comes back.

use anyhow::anyhow;
use serde::Serialize;

use super::leases::{ChainView, closed_event, target};
use crate::Failure;
use crate::chain::{self, status};
use crate::net::{self, PeerArgs};
use crate::output::Amount;
use crate::wallet::{self, WalletArgs};

/// End a lease: the host is paid what accrued, the rest of the deposit is refunded to you.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit status: 0 closed (the payout is printed to the unit); 1 failed \
(nothing was sent unless the message says so); 2 usage error; 4 the lease was already closed \
(nothing was sent; what it paid is printed)."
)]
pub(crate) struct StopArgs {
    /// Lease id, or a unique prefix of it.
    id: String,
    /// Print JSON: lease_id, host_amount, fee, refund (amounts in base units and formatted),
    /// reason (its name, e.g. renter_closed) and reason_code, tx.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    peers: PeerArgs,
    #[command(flatten)]
    wallet: WalletArgs,
}

#[derive(Serialize)]
struct Out {
    lease_id: String,
    host_amount: Amount,
    fee: Amount,
    refund: Amount,
    /// The `LeaseClosed` reason's name (`renter_closed`, …), as `gpuflow lease --json`.
    reason: &'static str,
    /// Its number in the contract.
    reason_code: u8,
    started_at: u64,
    closed_at: u64,
    tx: Option<String>,
}

impl StopArgs {
    pub(crate) async fn run(self) -> Result<(), Failure> {
        let signer = wallet::load(&self.wallet, &net::env)?;
        let (rec, chain) = target(&self.id, &self.peers, Some(signer)).await?;
        let view = ChainView::read(&chain, &rec).await?;
        let d = rec.token_decimals;
        match view.status {
            status::NONE => {
                return Err(Failure::Runtime(anyhow!(
                    "lease {} was never opened on chain (only its quote was saved); there is \
                     nothing to stop and nothing was paid",
                    rec.lease_id
                )));
            }
            status::CLOSED => {
                let what = match closed_event(&chain, &rec).await {
                    Ok(Some(e)) => format!(
                        ": the host was paid {}, fee {}, refunded {}",
                        Amount::from_u256(e.hostAmount, d).formatted,
                        Amount::from_u256(e.fee, d).formatted,
                        Amount::from_u256(e.refund, d).formatted
                    ),
                    _ => String::new(),
                };
                return Err(Failure::AlreadyClosed(anyhow!(
                    "lease {} is already closed{what}; nothing was sent",
                    rec.lease_id
                )));
            }
            _ => {}
        }
        if chain.me != rec.renter && chain.me != rec.quote.host {
            return Err(Failure::Usage(anyhow!(
                "wallet {} is not the renter ({}) of lease {}; pick the renter's wallet with --wallet",
                chain.me,
                rec.renter,
                rec.lease_id
            )));
        }
        let receipt = chain
            .send(
                chain
                    .escrow(rec.escrow)
                    .close(rec.quote())
                    .into_transaction_request(),
                "close",
            )
            .await?;
        let e = chain::lease_closed(&receipt).ok_or_else(|| {
            Failure::Runtime(anyhow!("close succeeded but logged no LeaseClosed"))
        })?;
        let out = Out {
            lease_id: rec.lease_id.to_string(),
            host_amount: Amount::from_u256(e.hostAmount, d),
            fee: Amount::from_u256(e.fee, d),
            refund: Amount::from_u256(e.refund, d),
            reason: chain::reason_name(e.reason),
            reason_code: e.reason,
            started_at: e.startedAt.saturating_to(),
            closed_at: e.closedAt.saturating_to(),
            tx: Some(receipt.transaction_hash.to_string()),
        };
        if self.json {
            let text =
                serde_json::to_string_pretty(&out).map_err(|e| Failure::Runtime(e.into()))?;
            println!("{text}");
        } else {
            let billed = if out.started_at == 0 {
                "never started: the whole deposit is refunded".to_owned()
            } else {
                format!("billed {} s", out.closed_at.saturating_sub(out.started_at))
            };
            println!("closed lease {} ({billed})", out.lease_id);
            println!(
                "  paid to the host  {} ({} base units)",
                out.host_amount.formatted, out.host_amount.base_units
            );
            println!(
                "  protocol fee      {} ({} base units)",
                out.fee.formatted, out.fee.base_units
            );
            println!(
                "  refunded to you   {} ({} base units)",
                out.refund.formatted, out.refund.base_units
            );
        }
        Ok(())
    }
}
