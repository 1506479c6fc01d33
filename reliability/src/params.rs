//! Every parameter of the score, in one place, with its meaning, its unit and why it has its
//! value. `docs/reliability.md` explains the same table for people; change both together.

/// Seconds in a day.
pub const DAY_SECS: u64 = 86_400;
/// Seconds in an hour.
pub const HOUR_SECS: u64 = 3_600;

/// Reliability of a host with no evidence: the prior mean (as on Vast.ai, where new machines
/// start at 60%). Unitless, 0..1.
pub const PRIOR_MEAN: f64 = 0.6;
/// Strength of the prior, in whole tokens (≈ USD for a stablecoin): evidence worth this much
/// moves the score half-way from the prior to what the evidence says.
pub const PRIOR_STRENGTH_TOKENS: u128 = 20;
/// Renter credibility saturates once the renter paid this much to *other* hosts, in whole
/// tokens: a wallet must have spent real money elsewhere before its leases count fully.
pub const CREDIBILITY_FULL_TOKENS: u128 = 25;
/// Only spending in this window counts towards credibility, in seconds (90 days).
pub const CREDIBILITY_WINDOW_SECS: u64 = 90 * DAY_SECS;
/// An outcome's weight halves every this many seconds after the lease closed (30 days).
pub const HALF_LIFE_SECS: u64 = 30 * DAY_SECS;
/// Largest share of a host's total evidence (prior included) one renter may supply.
pub const RENTER_CAP: f64 = 0.25;
/// Hosts are ranked by this quantile of Beta(α, β), so a thin history cannot outrank a long
/// good one by luck.
pub const RANK_QUANTILE: f64 = 0.10;
/// A lease the host never started is valued at this many seconds of its quoted price.
pub const NEVER_STARTED_SECS: u64 = HOUR_SECS;
/// When the host closes a funded lease, at most this many seconds of the money left count as
/// lost service.
pub const HOST_CLOSED_REMAINING_CAP_SECS: u64 = HOUR_SECS;
/// Evidence beyond this many tokens adds nothing to the rank's confidence (it only keeps the
/// Beta quantile cheap to compute; the mean is not capped).
pub const MAX_RANK_EVIDENCE_TOKENS: f64 = 1_000_000.0;
/// For `rent --query`: a host whose score is s keeps a lease of this many seconds running
/// without interruption with probability s (24 hours).
pub const INTERRUPTION_REFERENCE_SECS: u64 = 24 * HOUR_SECS;

/// The score's parameters for one token. Money is in token base units; build with
/// [`Params::for_decimals`] so "20 tokens" means the same thing for every token.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    /// Decimals of the escrow's token (6 for USDC and the devnet stablecoin).
    pub decimals: u8,
    /// Base units in one unit of evidence (one whole token): α and β count whole tokens, so
    /// the Beta's spread, and the rank, do not depend on the token's decimals.
    pub evidence_unit: u128,
    /// See [`PRIOR_MEAN`].
    pub prior_mean: f64,
    /// n0 of DESIGN.md §7, in base units; see [`PRIOR_STRENGTH_TOKENS`].
    pub prior_strength: u128,
    /// K of DESIGN.md §7, in base units; see [`CREDIBILITY_FULL_TOKENS`].
    pub credibility_full: u128,
    /// See [`CREDIBILITY_WINDOW_SECS`].
    pub credibility_window_secs: u64,
    /// See [`HALF_LIFE_SECS`].
    pub half_life_secs: u64,
    /// See [`RENTER_CAP`]; must be in (0, 1).
    pub renter_cap: f64,
    /// See [`RANK_QUANTILE`].
    pub rank_quantile: f64,
    /// See [`NEVER_STARTED_SECS`].
    pub never_started_secs: u64,
    /// See [`HOST_CLOSED_REMAINING_CAP_SECS`].
    pub host_closed_remaining_cap_secs: u64,
    /// See [`MAX_RANK_EVIDENCE_TOKENS`].
    pub max_rank_evidence: f64,
    /// See [`INTERRUPTION_REFERENCE_SECS`].
    pub interruption_reference_secs: u64,
}

impl Params {
    /// The published defaults for a token with `decimals` decimals.
    pub fn for_decimals(decimals: u8) -> Self {
        let unit = 10u128.checked_pow(u32::from(decimals)).unwrap_or(u128::MAX);
        Self {
            decimals,
            evidence_unit: unit,
            prior_mean: PRIOR_MEAN,
            prior_strength: PRIOR_STRENGTH_TOKENS.saturating_mul(unit),
            credibility_full: CREDIBILITY_FULL_TOKENS.saturating_mul(unit),
            credibility_window_secs: CREDIBILITY_WINDOW_SECS,
            half_life_secs: HALF_LIFE_SECS,
            renter_cap: RENTER_CAP,
            rank_quantile: RANK_QUANTILE,
            never_started_secs: NEVER_STARTED_SECS,
            host_closed_remaining_cap_secs: HOST_CLOSED_REMAINING_CAP_SECS,
            max_rank_evidence: MAX_RANK_EVIDENCE_TOKENS,
            interruption_reference_secs: INTERRUPTION_REFERENCE_SECS,
        }
    }

    /// `base_units` as evidence (whole tokens, fractional).
    pub fn evidence(&self, base_units: u128) -> f64 {
        base_units as f64 / self.evidence_unit.max(1) as f64
    }

    /// n0 in evidence units.
    pub fn prior_evidence(&self) -> f64 {
        self.evidence(self.prior_strength)
    }
}

impl Default for Params {
    /// The defaults for a 6-decimal stablecoin (USDC, the devnet token).
    fn default() -> Self {
        Self::for_decimals(6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_parameters_scale_with_decimals() {
        let p6 = Params::for_decimals(6);
        assert_eq!(p6.prior_strength, 20_000_000);
        assert_eq!(p6.credibility_full, 25_000_000);
        assert_eq!(p6.prior_evidence(), 20.0);
        let p18 = Params::for_decimals(18);
        assert_eq!(p18.prior_strength, 20 * 10u128.pow(18));
        assert_eq!(p18.prior_evidence(), 20.0);
        assert_eq!(p18.evidence(5 * 10u128.pow(17)), 0.5);
    }
}
