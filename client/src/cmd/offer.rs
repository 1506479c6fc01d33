//! `gpuflow offer <id>`: one offer in full, its signatures checked here.

use anyhow::anyhow;
use gpuflow_protocol::offer::{OfferId, VerifiedOffer};
use gpuflow_protocol::query::EvalCtx;
use serde::Serialize;

use crate::Failure;
use crate::net::{self, NetArgs};
use crate::output::{JsonOffer, short_duration};

/// Show one offer in full: every field, host, wallet, signature check and expiry.
#[derive(Debug, clap::Args)]
#[command(after_help = "Exit status: 0 shown, 1 not found or no peer answered, 2 usage error.")]
pub(crate) struct OfferArgs {
    /// Offer id (32 hex digits, as `gpuflow search` prints it).
    id: String,
    /// Print JSON: the `gpuflow search --json` fields plus `signature`.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    net: NetArgs,
}

#[derive(Serialize)]
struct Signature {
    /// Always true: offers that fail are never shown.
    verified: bool,
    public_key: String,
    signature: String,
    wallet_proof: String,
}

#[derive(Serialize)]
struct Full {
    #[serde(flatten)]
    offer: JsonOffer,
    signature: Signature,
}

impl OfferArgs {
    pub(crate) async fn run(self) -> Result<(), Failure> {
        let id: OfferId = self
            .id
            .parse()
            .map_err(|e| Failure::Usage(anyhow!("{e}")))?;
        let offers = net::fetch(&self.net, self.json).await?;
        let Some(v) = offers.into_iter().find(|o| o.id == id) else {
            return Err(Failure::Runtime(anyhow!(
                "offer {id} is not in the book (withdrawn or expired?); `gpuflow search` lists \
                 the current offers"
            )));
        };
        let ctx = EvalCtx::new(net::unix_now());
        let full = Full {
            offer: JsonOffer::new(&v, &ctx),
            signature: Signature {
                verified: true,
                public_key: alloy::hex::encode(&v.signed.public_key),
                signature: alloy::hex::encode(&v.signed.signature),
                wallet_proof: v.offer.wallet_proof.to_string(),
            },
        };
        if self.json {
            let text =
                serde_json::to_string_pretty(&full).map_err(|e| Failure::Runtime(e.into()))?;
            println!("{text}");
        } else {
            print!("{}", human(&v, &full, ctx.now()));
        }
        Ok(())
    }
}

fn human(v: &VerifiedOffer, f: &Full, now: u64) -> String {
    let o = &f.offer;
    let expires = o.expires_at.saturating_sub(now);
    let rows: [(&str, String); 21] = [
        ("offer", o.id.clone()),
        ("name", v.offer.name.clone()),
        (
            "gpu",
            format!(
                "{} × {} ({} MiB each)",
                o.num_gpus, o.gpu_name, o.gpu_ram_mib
            ),
        ),
        (
            "cuda / driver",
            format!("{} / {}", o.cuda_version, o.driver_version),
        ),
        (
            "gpu source",
            if o.verified {
                "detected (NVML)".into()
            } else {
                "self-declared".into()
            },
        ),
        (
            "price",
            format!(
                "{} per GPU-hour, {} per hour",
                o.price_per_gpu_hour.formatted, o.price_per_hour.formatted
            ),
        ),
        (
            "price (base units)",
            format!(
                "{} per GPU-hour, {} per hour",
                o.price_per_gpu_hour.base_units, o.price_per_hour.base_units
            ),
        ),
        (
            "token",
            format!("{} ({} decimals)", o.token, o.token_decimals),
        ),
        ("chain / escrow", format!("{} / {}", o.chain_id, o.escrow)),
        (
            "cpu / ram / disk",
            format!(
                "{} cores / {} MiB / {} GiB",
                o.cpu_cores, o.ram_mib, o.disk_gib
            ),
        ),
        (
            "bandwidth",
            format!(
                "{} Mbit/s up, {} Mbit/s down",
                o.inet_up_mbps, o.inet_down_mbps
            ),
        ),
        ("region", o.region.clone()),
        (
            "lease duration",
            format!("{}s to {}s", o.min_duration_secs, o.max_duration_secs),
        ),
        ("templates", o.templates.join(", ")),
        ("host", o.host.clone()),
        ("host age", short_duration(o.host_age_secs)),
        ("reliability", format!("{:.2}", o.reliability)),
        ("wallet", o.wallet.to_string()),
        (
            "signature",
            "verified (node key = host peer id; wallet bound to peer id)".into(),
        ),
        ("sequence", o.seq.to_string()),
        (
            "expires",
            format!("in {} (unix {})", short_duration(expires), o.expires_at),
        ),
    ];
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    rows.iter()
        .map(|(k, v)| format!("{:<width$}  {v}\n", format!("{k}:")))
        .collect()
}
