//! `GET /reliability` (this host's score) and `GET /hosts/{address}` (any host's history), read
//! from the node's reliability index ([`crate::scores`]).
//!
//! `/hosts/{address}` has the shape of `gpuflow host --json`, so a script can ask either. Both
//! answer 503 until the index has caught up with the chain once (before, every host would look
//! new), and 503 on a node without a chain RPC; an unknown host is a 404, a malformed address a
//! 400. Amounts are `{"base_units": "…", "formatted": "…"}` as in the CLI's JSON.

use alloy::primitives::Address;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::response::Json;
use gpuflow_protocol::money::Amount;
use gpuflow_reliability::{self as reliability, HostHistory, IndexerError, OutcomeCounts};
use serde::Serialize;

use super::ApiState;
use super::error::ApiError;
use super::view::ViewError;
use crate::scores::{IndexProgress, ScoreIndex};

/// `GET /reliability`.
#[derive(Debug, Serialize)]
pub(crate) struct OwnScore {
    /// This node's host wallet.
    host: String,
    /// Unix seconds the score was computed at (the decay depends on it).
    at: u64,
    reliability: f64,
    rank: f64,
    alpha: f64,
    beta: f64,
    evidence: f64,
    leases: u64,
    outcomes: OutcomeCounts,
    volume: Amount,
    first_seen: Option<u64>,
    registered_at: Option<u64>,
    index: IndexProgress,
}

/// `GET /hosts/{address}`: `gpuflow host --json` (the same [`reliability::view::HostView`]),
/// with the index's progress and the time the score was computed at.
#[derive(Debug, Serialize)]
pub(crate) struct HostScoreView {
    #[serde(flatten)]
    view: reliability::view::HostView,
    index: IndexProgress,
    at: u64,
}

fn host_view(h: &HostHistory, index: IndexProgress, at: u64) -> HostScoreView {
    HostScoreView {
        view: reliability::view::HostView::of(h),
        index,
        at,
    }
}

fn own_score(h: &HostHistory, index: IndexProgress, at: u64) -> OwnScore {
    let s = &h.report.score;
    OwnScore {
        host: h.report.host.to_string(),
        at,
        reliability: s.reliability,
        rank: s.rank,
        alpha: s.alpha,
        beta: s.beta,
        evidence: s.evidence,
        leases: s.leases,
        outcomes: s.outcomes,
        volume: Amount::new(s.volume, h.params.decimals),
        first_seen: s.first_seen,
        registered_at: h.registered_at,
        index,
    }
}

fn no_rpc() -> ApiError {
    ApiError::Node(ViewError::Unavailable(
        "this node runs without a chain RPC, so it keeps no reliability index; start it with \
         --rpc-url"
            .into(),
    ))
}

pub(crate) fn read_failed(e: IndexerError) -> ApiError {
    ApiError::Node(ViewError::Failed {
        context: "reading the reliability index".into(),
        source: Box::new(e),
    })
}

/// The index and its progress, once it has caught up with the chain.
fn synced(s: &ApiState) -> Result<(&ScoreIndex, IndexProgress), ApiError> {
    let index = s.scores.as_ref().ok_or_else(no_rpc)?;
    let p = index.progress();
    if !p.synced {
        return Err(ApiError::IndexSyncing {
            block: p.block,
            head: p.head,
            error: p.error,
        });
    }
    Ok((index, p))
}

/// `host`'s history at `now` from a synced index (the same read for both routes).
async fn history(index: &ScoreIndex, host: Address, now: u64) -> Result<HostHistory, ApiError> {
    index
        .reader()
        .host_history(host, now)
        .await
        .map_err(read_failed)
}

pub(crate) async fn reliability(State(s): State<ApiState>) -> Result<Json<OwnScore>, ApiError> {
    let (index, progress) = synced(&s)?;
    let now = crate::chain::unix_now();
    let h = history(index, index.host(), now).await?;
    Ok(Json(own_score(&h, progress, now)))
}

pub(crate) async fn host(
    State(s): State<ApiState>,
    address: Result<Path<String>, PathRejection>,
) -> Result<Json<HostScoreView>, ApiError> {
    let Path(text) = address.map_err(|e| ApiError::InvalidAddress(e.body_text()))?;
    let host = parse_address(&text).ok_or(ApiError::InvalidAddress(text))?;
    let (index, progress) = synced(&s)?;
    let now = crate::chain::unix_now();
    let h = history(index, host, now).await?;
    if h.leases.is_empty() && h.registered_at.is_none() {
        return Err(ApiError::HostNotFound(host));
    }
    Ok(Json(host_view(&h, progress, now)))
}

/// `0x` + 40 hex digits, any case (the checksum is not required: scripts often lower-case).
fn parse_address(text: &str) -> Option<Address> {
    let hex = text.strip_prefix("0x")?;
    if hex.len() != 40 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    text.parse().ok()
}

/// This host's score for `/metrics`: `None` without an index or before it caught up;
/// a failed read is logged and left out, so the other metrics still answer.
pub(crate) async fn metrics_score(s: &ApiState) -> Option<(f64, f64)> {
    let (index, _) = synced(s).ok()?;
    match history(index, index.host(), crate::chain::unix_now()).await {
        Ok(h) => Some((h.report.score.reliability, h.report.score.rank)),
        Err(e) => {
            tracing::warn!(target: "api", error = %e, "reading this host's score for /metrics failed");
            None
        }
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn api_host_address_format() {
        let good = format!("0x{}", "ab".repeat(20));
        assert_eq!(parse_address(&good), Some(Address::repeat_byte(0xab)));
        let mixed = Address::repeat_byte(0xab).to_string();
        assert_eq!(parse_address(&mixed), Some(Address::repeat_byte(0xab)));
        for bad in [
            "ab".repeat(20),
            format!("0x{}", "ab".repeat(19)),
            format!("0x{}", "ab".repeat(21)),
            format!("0x{}zz", "ab".repeat(19)),
            format!("0X{}", "ab".repeat(20)),
            String::new(),
            "0x".into(),
        ] {
            assert_eq!(parse_address(&bad), None, "{bad}");
        }
    }
}
