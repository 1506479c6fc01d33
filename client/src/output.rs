//! What the CLI prints: tables for people, JSON for scripts. Amounts are formatted here and
//! only here, exactly, from base units and the token's decimals.
//!
//! The JSON shape is a stable interface: fields are only ever added. Amounts are objects with
//! `base_units` (a decimal string of the integer, so no JSON reader loses digits) and
//! `formatted` (the same amount in token units, exact).

use alloy::primitives::U256;
use gpuflow_protocol::money::format_units;
use gpuflow_protocol::offer::{GpuSource, VerifiedOffer};
use gpuflow_protocol::query::EvalCtx;
use serde::Serialize;

/// Text for `--help`: the JSON fields of one offer.
pub(crate) const JSON_FIELDS_HELP: &str = "\
JSON output (--json) is an object {\"book_size\": N, \"offers\": [...]}; each offer has:
  id, host (peer id), wallet (checksummed address), gpu_name, num_gpus, gpu_ram_mib,
  cuda_version, driver_version, verified (GPUs detected by NVML),
  gpu_source (\"nvml\" | \"declared\" | \"simulated\"),
  price_per_gpu_hour and price_per_hour ({\"base_units\": \"400000\", \"formatted\": \"0.40\"}),
  token, token_decimals, chain_id, escrow, reliability (0..1), region, host_since,
  host_age_secs, cpu_cores, ram_mib, disk_gib, disk_limited (the host enforces disk_gib with
  a storage quota; false: not a hard limit), inet_up_mbps, inet_down_mbps,
  min_duration_secs, max_duration_secs, templates, seq, issued_at, expires_at.
Fields are only ever added, never renamed or removed.";

pub(crate) use gpuflow_protocol::money::Amount;

/// One offer in `--json` output (see [`JSON_FIELDS_HELP`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct JsonOffer {
    pub(crate) id: String,
    pub(crate) host: String,
    pub(crate) wallet: String,
    pub(crate) gpu_name: String,
    pub(crate) num_gpus: u32,
    pub(crate) gpu_ram_mib: u64,
    pub(crate) cuda_version: String,
    pub(crate) driver_version: String,
    pub(crate) verified: bool,
    pub(crate) gpu_source: GpuSource,
    pub(crate) price_per_gpu_hour: Amount,
    pub(crate) price_per_hour: Amount,
    pub(crate) token: String,
    pub(crate) token_decimals: u8,
    pub(crate) chain_id: u64,
    pub(crate) escrow: String,
    pub(crate) reliability: f64,
    pub(crate) region: String,
    pub(crate) host_since: u64,
    pub(crate) host_age_secs: u64,
    pub(crate) cpu_cores: u32,
    pub(crate) ram_mib: u64,
    pub(crate) disk_gib: u64,
    pub(crate) disk_limited: bool,
    pub(crate) inet_up_mbps: u32,
    pub(crate) inet_down_mbps: u32,
    pub(crate) min_duration_secs: u64,
    pub(crate) max_duration_secs: u64,
    pub(crate) templates: Vec<String>,
    pub(crate) seq: u64,
    pub(crate) issued_at: u64,
    pub(crate) expires_at: u64,
}

impl JsonOffer {
    pub(crate) fn new(v: &VerifiedOffer, ctx: &EvalCtx<'_>) -> Self {
        let o = &v.offer;
        Self {
            id: v.id.to_string(),
            host: o.host.clone(),
            wallet: o.wallet.to_string(),
            gpu_name: o.gpu.model.clone(),
            num_gpus: o.gpu.count,
            gpu_ram_mib: o.gpu.vram_mib,
            cuda_version: o.gpu.cuda_version.clone(),
            driver_version: o.gpu.driver_version.clone(),
            verified: o.gpu_source == GpuSource::Nvml,
            gpu_source: o.gpu_source,
            price_per_gpu_hour: Amount::new(o.price_per_gpu_hour, o.token_decimals),
            price_per_hour: Amount::new(o.price_per_hour(), o.token_decimals),
            token: o.token.to_string(),
            token_decimals: o.token_decimals,
            chain_id: o.chain_id,
            escrow: o.escrow.to_string(),
            reliability: ctx.reliability(&o.host),
            region: o.region.clone(),
            host_since: o.host_since,
            host_age_secs: ctx.now().saturating_sub(o.host_since),
            cpu_cores: o.cpu_cores,
            ram_mib: o.ram_mib,
            disk_gib: o.disk_gib,
            disk_limited: o.disk_limited,
            inet_up_mbps: o.inet_up_mbps,
            inet_down_mbps: o.inet_down_mbps,
            min_duration_secs: o.min_duration_secs,
            max_duration_secs: o.max_duration_secs,
            templates: o.templates.clone(),
            seq: o.seq,
            issued_at: o.issued_at,
            expires_at: o.expires_at,
        }
    }
}

/// `3d`, `5h`, `12m`, `<1m`: a duration at a glance.
pub(crate) fn short_duration(secs: u64) -> String {
    match secs {
        0..60 => "<1m".into(),
        60..3600 => format!("{}m", secs / 60),
        3600..86_400 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

/// GiB from MiB for display, rounded to the nearest GiB.
pub(crate) fn gib(mib: u64) -> String {
    format!("{} GB", (mib + 512) / 1024)
}

/// Left-aligned columns separated by two spaces; the last column is not padded.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.zip(&widths).enumerate() {
            if i + 1 == widths.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.trim_end().to_owned() + "\n"
    };
    let mut out = line(&mut header.iter().copied());
    for r in rows {
        out.push_str(&line(&mut r.iter().map(String::as_str)));
    }
    out
}

/// What the search table shows about an offer's host, from the reliability index.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct HostCols {
    /// Reliability mean, 0..1.
    pub(crate) reliability: f64,
    /// Leases ever opened with the host on chain.
    pub(crate) leases: u64,
    /// Seconds since the host first appeared on chain (its offer's `host_since` when the
    /// chain has nothing on it).
    pub(crate) age_secs: u64,
    /// False when no scores could be read: the prior is shown, marked `*`.
    pub(crate) scored: bool,
}

/// The search result table; `host` gives each offer's host columns.
pub(crate) fn offers_table(
    offers: &[&VerifiedOffer],
    host: &dyn Fn(&VerifiedOffer) -> HostCols,
) -> String {
    let header = [
        "GPU", "N", "VRAM", "$/GPU/H", "$/H", "MIN", "RELIAB", "LEASES", "AGE", "REGION",
        "VERIFIED", "OFFER ID",
    ];
    let rows: Vec<Vec<String>> = offers
        .iter()
        .map(|v| {
            let o = &v.offer;
            let h = host(v);
            vec![
                o.gpu.model.clone(),
                o.gpu.count.to_string(),
                gib(o.gpu.vram_mib),
                format_units(U256::from(o.price_per_gpu_hour), o.token_decimals),
                format_units(U256::from(o.price_per_hour()), o.token_decimals),
                short_duration(o.min_duration_secs),
                format!("{:.2}{}", h.reliability, if h.scored { "" } else { "*" }),
                h.leases.to_string(),
                short_duration(h.age_secs),
                o.region.clone(),
                match o.gpu_source {
                    GpuSource::Nvml => "yes",
                    GpuSource::Declared => "no (declared)",
                    GpuSource::Simulated => "no (simulated)",
                }
                .into(),
                v.id.to_string(),
            ]
        })
        .collect();
    table(&header, &rows)
}

#[cfg(test)]
mod tests {
    use gpuflow_protocol::offer::fixture::TestHost;

    use super::*;

    const NOW: u64 = 1_800_000_000;

    #[test]
    fn table_shows_exact_prices_and_the_full_id() {
        let h = TestHost::from_seed(1);
        let mut o = h.offer("a", NOW);
        o.gpu.count = 2;
        o.price_per_gpu_hour = 400_001;
        let v = h.sign(&o).verify(NOW).unwrap();
        let ctx = EvalCtx::new(NOW);
        let t = offers_table(&[&v], &|v| HostCols {
            reliability: ctx.reliability(&v.offer.host),
            leases: 3,
            age_secs: ctx.now().saturating_sub(v.offer.host_since),
            scored: false,
        });
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("GPU"), "{t}");
        assert!(lines[0].contains("  MIN  "), "{t}");
        for want in [
            "RTX_4090",
            "24 GB",
            "0.400001",
            "0.800002",
            "  1m  ",
            "0.60*",
            "  3  ",
            "DE",
            "1d",
            "no (declared)",
        ] {
            assert!(lines[1].contains(want), "{want} missing in {t}");
        }
        assert!(lines[1].ends_with(&v.id.to_string()), "{t}");
    }

    #[test]
    fn json_amounts_are_exact_strings() {
        let h = TestHost::from_seed(2);
        let v = h.sign(&h.offer("a", NOW)).verify(NOW).unwrap();
        let j = serde_json::to_value(JsonOffer::new(&v, &EvalCtx::new(NOW))).unwrap();
        assert_eq!(j["price_per_gpu_hour"]["base_units"], "400000");
        assert_eq!(j["price_per_gpu_hour"]["formatted"], "0.40");
        assert_eq!(j["gpu_source"], "declared");
        assert_eq!(j["verified"], false);
        assert_eq!(j["host_age_secs"], 86_400);
    }

    #[test]
    fn durations_are_short() {
        assert_eq!(short_duration(5), "<1m");
        assert_eq!(short_duration(125), "2m");
        assert_eq!(short_duration(7200), "2h");
        assert_eq!(short_duration(3 * 86_400 + 5), "3d");
    }
}
