//! `gpuflow extend <id> --hours H`: add to the lease's deposit (approve + `topUp`), after
//! showing what it costs.

use anyhow::anyhow;
use gpuflow_protocol::money::format_units;

use super::leases::{ChainView, target};
use super::rent_check::{Cost, hours_to_secs};
use super::rent_pay::{self, Authorization, Funding, TOPUP_GAS};
use crate::Failure;
use crate::chain::status;
use crate::net::{self, PeerArgs};
use crate::output::{Amount, short_duration};
use crate::wallet::{self, WalletArgs};

/// Add hours to a lease: pays price × seconds more into its deposit.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "The quote caps the whole deposit at price × its maximum duration (the \
offer's longest lease); extending past that needs a new lease.

Exit status: 0 extended; 1 failed (nothing was sent unless the message says so); 2 usage error \
(also: no terminal and no --yes); 4 the lease is already closed (nothing was sent)."
)]
pub(crate) struct ExtendArgs {
    /// Lease id, or a unique prefix of it.
    id: String,
    /// Hours to add (decimals allowed).
    #[arg(long)]
    hours: f64,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    yes: bool,
    /// Print JSON: lease_id, added, deposit (amounts in base units and formatted), tx.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    peers: PeerArgs,
    #[command(flatten)]
    wallet: WalletArgs,
}

impl ExtendArgs {
    pub(crate) async fn run(self) -> Result<(), Failure> {
        let secs = hours_to_secs(self.hours).map_err(|e| Failure::Usage(anyhow!(e)))?;
        let signer = wallet::load(&self.wallet, &net::env)?;
        let (rec, chain) = target(&self.id, &self.peers, Some(signer)).await?;
        let view = ChainView::read(&chain, &rec).await?;
        match view.status {
            status::CLOSED => {
                return Err(Failure::AlreadyClosed(anyhow!(
                    "lease {} is already closed; nothing was sent. Rent again instead",
                    rec.lease_id
                )));
            }
            status::NONE => {
                return Err(Failure::Runtime(anyhow!(
                    "lease {} was never opened; nothing to extend",
                    rec.lease_id
                )));
            }
            _ if view.status == status::RUNNING && view.remaining().is_zero() => {
                return Err(Failure::Runtime(anyhow!(
                    "lease {}'s deposit is used up and the host stopped it; rent again instead",
                    rec.lease_id
                )));
            }
            _ => {}
        }
        let facts = rent_pay::escrow_facts(&chain, rec.escrow, rec.token).await?;
        let cost = Cost::new(rec.quote.price_per_second, secs, facts.fee_bps);
        let cap = rec.quote.price_per_second * rec.quote.max_duration;
        let d = rec.token_decimals;
        if view.deposit + cost.deposit > cap {
            let room = cap.saturating_sub(view.deposit);
            let secs_room = (room / rec.quote.price_per_second).saturating_to::<u64>();
            return Err(Failure::Usage(anyhow!(
                "the quote caps this lease's deposit at {} ({}); at most {} ({} s) can be added",
                format_units(cap, d),
                short_duration(rec.quote.max_duration.saturating_to()),
                format_units(room, d),
                secs_room
            )));
        }
        let funding = Funding {
            chain: &chain,
            token: rec.token,
            escrow: rec.escrow,
            symbol: &facts.symbol,
            decimals: d,
        };
        funding.check(cost.deposit, TOPUP_GAS).await?;
        eprintln!(
            "Extending lease {} by {} s:\n{}",
            rec.lease_id,
            secs,
            cost.describe(d, &facts.symbol)
        );
        if !self.yes {
            rent_pay::confirm("Add this to the deposit?")?;
        }
        let auth = funding.authorize(cost.deposit, facts.block_time).await?;
        let escrow = chain.escrow(rec.escrow);
        let top_up = match &auth {
            Authorization::Allowance => escrow
                .topUp(rec.quote(), cost.deposit)
                .into_transaction_request(),
            Authorization::Permit(p) => escrow
                .topUpWithPermit(rec.quote(), cost.deposit, p.deadline, p.v, p.r, p.s)
                .into_transaction_request(),
        };
        let receipt = chain.send(top_up, "topUp").await?;
        let deposit = view.deposit + cost.deposit;
        if self.json {
            let out = serde_json::json!({
                "lease_id": rec.lease_id.to_string(),
                "added": Amount::from_u256(cost.deposit, d),
                "deposit": Amount::from_u256(deposit, d),
                "seconds_added": secs,
                "tx": receipt.transaction_hash.to_string(),
                "payment": auth.name(),
            });
            let text =
                serde_json::to_string_pretty(&out).map_err(|e| Failure::Runtime(e.into()))?;
            println!("{text}");
        } else {
            let left = (deposit.saturating_sub(view.accrued) / rec.quote.price_per_second)
                .saturating_to::<u64>();
            println!(
                "extended lease {}: added {} ({} base units), deposit now {}, about {} of \
                 running time left",
                rec.lease_id,
                format_units(cost.deposit, d),
                cost.deposit,
                format_units(deposit, d),
                short_duration(left)
            );
        }
        Ok(())
    }
}
