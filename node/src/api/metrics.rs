//! `GET /metrics`: the node's state in the Prometheus text exposition format (version 0.0.4).
//!
//! Written by hand rather than with a metrics registry: every value is read fresh from the
//! lease database and the [`NodeView`](super::NodeView) at scrape time, so there is no state to
//! keep in step, and amounts stay exact integers (a registry's gauges are `i64`/`f64`; a token
//! with 18 decimals overflows `i64` at 9.2 tokens). Prometheus itself stores samples as `f64`,
//! so very large amounts lose their last digits there; `GET /earnings` has the exact figures.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use alloy::primitives::U256;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use sqlx::Row;
use sqlx::sqlite::SqlitePool;

use super::ApiState;
use super::error::ApiError;
use super::scores;
use super::view::{Earnings, NodeStatus, ViewError};
use crate::lease::{RepoError, State as LeaseState};

/// The content type Prometheus expects for the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub(crate) async fn metrics(State(s): State<ApiState>) -> Result<Response, ApiError> {
    let leases = lease_counts(s.leases.pool()).await?;
    let status = s.node.status().await?;
    // A node without a chain RPC has no earnings to report; its other metrics still count.
    let earnings = match s.node.earnings().await {
        Ok(e) => Some(e),
        Err(ViewError::Unavailable(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let scores = ScoreGauges {
        score: scores::metrics_score(&s).await,
        indexed_block: s.scores.as_ref().and_then(|i| i.progress().block),
    };
    let text = render(&leases, &status, earnings.as_ref(), &scores);
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response())
}

/// Leases per state name: every stored state (zero when there are none) plus any name the
/// database holds that this version does not know, so nothing goes missing from the total.
async fn lease_counts(pool: &SqlitePool) -> Result<BTreeMap<String, u64>, RepoError> {
    let mut counts: BTreeMap<String, u64> = LeaseState::ALL
        .into_iter()
        // `New` is never stored.
        .filter(|s| *s != LeaseState::New)
        .map(|s| (s.as_str().to_owned(), 0))
        .collect();
    let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM leases GROUP BY state")
        .fetch_all(pool)
        .await?;
    for row in rows {
        let state: String = row.try_get("state")?;
        let n: i64 = row.try_get("n")?;
        counts.insert(state, u64::try_from(n).unwrap_or(0));
    }
    Ok(counts)
}

/// The reliability gauges: each is left out while unknown (no chain RPC, index not caught up).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct ScoreGauges {
    /// This host's reliability and rank.
    pub(crate) score: Option<(f64, f64)>,
    /// The last block the reliability index covers.
    pub(crate) indexed_block: Option<u64>,
}

/// The exposition text. Series with an unknown value (chain lag before the first poll,
/// earnings without a chain) are left out rather than reported as 0, which would look like
/// "in sync" or "earned nothing".
pub(crate) fn render(
    leases: &BTreeMap<String, u64>,
    status: &NodeStatus,
    earnings: Option<&Earnings>,
    scores: &ScoreGauges,
) -> String {
    let mut out = String::new();
    family(
        &mut out,
        "gpuflow_leases",
        "Leases recorded by this host, by state.",
        leases
            .iter()
            .map(|(state, n)| (format!("state=\"{}\"", escape(state)), n.to_string())),
    );
    if let Some(earnings) = earnings {
        let amounts: [(&str, U256); 3] = [
            ("accrued", earnings.accrued),
            ("withdrawn", earnings.withdrawn),
            ("pending", earnings.pending),
        ];
        family(
            &mut out,
            "gpuflow_earnings_base_units",
            "Host earnings in payment-token base units, net of the protocol fee (accrued, \
             withdrawn, pending withdrawal).",
            amounts
                .into_iter()
                .map(|(kind, v)| (format!("kind=\"{kind}\""), v.to_string())),
        );
    }
    let plain = |v: u64| std::iter::once((String::new(), v.to_string()));
    let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    family(
        &mut out,
        "gpuflow_offers",
        "Offers this host currently publishes.",
        plain(count(status.offers.len())),
    );
    family(
        &mut out,
        "gpuflow_offers_paused",
        "1 while an operator has paused this host's offers.",
        plain(u64::from(status.offers_paused)),
    );
    family(
        &mut out,
        "gpuflow_peers",
        "Connected p2p peers.",
        plain(status.peers),
    );
    if let Some(h) = status.chain_height {
        family(
            &mut out,
            "gpuflow_chain_height",
            "Last block the chain watcher processed.",
            plain(h),
        );
    }
    if let Some(lag) = status.chain_lag_blocks {
        family(
            &mut out,
            "gpuflow_chain_lag_blocks",
            "Blocks the chain watcher is behind the chain head.",
            plain(lag),
        );
    }
    if let Some((reliability, rank)) = scores.score {
        family(
            &mut out,
            "gpuflow_host_reliability",
            "This host's reliability score (mean of its Beta posterior, 0..1; a new host 0.6).",
            std::iter::once((String::new(), reliability.to_string())),
        );
        family(
            &mut out,
            "gpuflow_host_reliability_rank",
            "This host's rank score (10th percentile of its Beta posterior, 0..1).",
            std::iter::once((String::new(), rank.to_string())),
        );
    }
    if let Some(b) = scores.indexed_block {
        family(
            &mut out,
            "gpuflow_indexer_block",
            "Last block whose escrow events the reliability index holds.",
            plain(b),
        );
    }
    out
}

/// One metric family: `# HELP`, `# TYPE … gauge`, then `name{labels} value` per sample.
fn family(
    out: &mut String,
    name: &str,
    help: &str,
    samples: impl Iterator<Item = (String, String)>,
) {
    // Writing to a String cannot fail.
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} gauge");
    for (labels, value) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {value}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
}

/// Label-value escaping of the text format: backslash, double quote and newline.
fn escape(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

#[cfg(test)]
mod unit {
    use super::escape;

    #[test]
    fn api_metrics_label_escaping() {
        assert_eq!(escape(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape("a\nb"), r"a\nb");
    }
}
