//! `GET /reliability` (this host's score) and `GET /hosts/{address}` (any host's history), read
//! from the node's reliability index ([`crate::scores`]).
//!
//! `/hosts/{address}` has the shape of `gpuflow host --json`, so a script can ask either. Both
//! answer 503 until the index has caught up with the chain once (before, every host would look
//! new), and 503 on a node without a chain RPC; an unknown host is a 404, a malformed address a
//! 400. Amounts are `{"base_units": "…", "formatted": "…"}` as in the CLI's JSON.

use std::collections::HashMap;

use alloy::primitives::{Address, U256};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::response::Json;
use gpuflow_protocol::money::format_units;
use gpuflow_reliability::{HostHistory, IndexerError, OutcomeCounts, OutcomeKind};
use libp2p::PeerId;
use serde::Serialize;

use super::ApiState;
use super::error::ApiError;
use super::view::NodeError;
use crate::scores::{IndexProgress, ScoreIndex};

/// An amount in token base units, exact and formatted (as the CLI's `--json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Amount {
    base_units: String,
    formatted: String,
}

impl Amount {
    fn new(units: u128, decimals: u8) -> Self {
        Self {
            base_units: units.to_string(),
            formatted: format_units(U256::from(units), decimals),
        }
    }
}

/// Lease counts by outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Outcomes {
    normal_end: u64,
    host_closed: u64,
    never_started: u64,
    cancelled: u64,
    running: u64,
    unknown: u64,
}

impl From<&OutcomeCounts> for Outcomes {
    fn from(o: &OutcomeCounts) -> Self {
        Self {
            normal_end: o.normal_end,
            host_closed: o.host_closed,
            never_started: o.never_started,
            cancelled: o.cancelled,
            running: o.running,
            unknown: o.unknown,
        }
    }
}

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
    outcomes: Outcomes,
    volume: Amount,
    first_seen: Option<u64>,
    registered_at: Option<u64>,
    index: IndexProgress,
}

/// `GET /hosts/{address}`: `gpuflow host --json` plus `at`.
#[derive(Debug, Serialize)]
pub(crate) struct HostView {
    host: String,
    peer_id: Option<String>,
    registered_at: Option<u64>,
    first_seen: Option<u64>,
    leases: u64,
    outcomes: Outcomes,
    volume: Amount,
    score: ScoreView,
    history: Vec<LeaseView>,
    index: IndexProgress,
    ignored_receipts: u64,
    at: u64,
}

#[derive(Debug, Serialize)]
struct ScoreView {
    reliability: f64,
    rank: f64,
    alpha: f64,
    beta: f64,
    evidence: f64,
    prior_mean: f64,
    prior_strength: Amount,
    rank_quantile: f64,
}

#[derive(Debug, Serialize)]
struct LeaseView {
    lease_id: String,
    renter: String,
    outcome: &'static str,
    paid: Amount,
    value: Amount,
    good: Option<f64>,
    decay: f64,
    credibility: f64,
    cap_factor: f64,
    weight: f64,
    opened_at: u64,
    started_at: Option<u64>,
    closed_at: Option<u64>,
    receipts: usize,
}

fn outcome_name(k: OutcomeKind) -> &'static str {
    match k {
        OutcomeKind::NormalEnd => "normal_end",
        OutcomeKind::HostClosed => "host_closed",
        OutcomeKind::NeverStarted => "never_started",
        OutcomeKind::Cancelled => "cancelled",
        OutcomeKind::Running => "running",
        OutcomeKind::Unknown => "unknown",
    }
}

fn host_view(h: &HostHistory, index: IndexProgress, at: u64) -> HostView {
    let s = &h.report.score;
    let d = h.params.decimals;
    let by_id: HashMap<_, _> = h.leases.iter().map(|r| (r.lease_id, r)).collect();
    HostView {
        host: h.report.host.to_string(),
        peer_id: h
            .peer_id
            .as_ref()
            .and_then(|p| PeerId::from_bytes(p).ok())
            .map(|p| p.to_string()),
        registered_at: h.registered_at,
        first_seen: s.first_seen,
        leases: s.leases,
        outcomes: Outcomes::from(&s.outcomes),
        volume: Amount::new(s.volume, d),
        score: ScoreView {
            reliability: s.reliability,
            rank: s.rank,
            alpha: s.alpha,
            beta: s.beta,
            evidence: s.evidence,
            prior_mean: h.params.prior_mean,
            prior_strength: Amount::new(h.params.prior_strength, d),
            rank_quantile: h.params.rank_quantile,
        },
        history: h
            .report
            .contributions
            .iter()
            .map(|c| {
                let r = by_id.get(&c.lease_id);
                LeaseView {
                    lease_id: c.lease_id.to_string(),
                    renter: c.renter.to_string(),
                    outcome: outcome_name(c.outcome.kind),
                    paid: Amount::new(r.map_or(0, |r| r.paid), d),
                    value: Amount::new(c.outcome.value, d),
                    good: c.outcome.good,
                    decay: c.decay,
                    credibility: c.credibility,
                    cap_factor: c.cap_factor,
                    weight: c.weight,
                    opened_at: r.map_or(0, |r| r.opened_at),
                    started_at: r.and_then(|r| r.started_at),
                    closed_at: c.closed_at,
                    receipts: c.outcome.coverage.receipts,
                }
            })
            .collect(),
        index,
        ignored_receipts: h.ignored_receipts,
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
        outcomes: Outcomes::from(&s.outcomes),
        volume: Amount::new(s.volume, h.params.decimals),
        first_seen: s.first_seen,
        registered_at: h.registered_at,
        index,
    }
}

fn no_rpc() -> ApiError {
    ApiError::Node(NodeError::Unavailable(
        "this node runs without a chain RPC, so it keeps no reliability index; start it with \
         --rpc-url"
            .into(),
    ))
}

pub(crate) fn read_failed(e: IndexerError) -> ApiError {
    ApiError::Node(NodeError::Failed {
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
) -> Result<Json<HostView>, ApiError> {
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
