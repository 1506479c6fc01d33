//! Token amounts: integers in base units end to end, formatted only at the edge.

use alloy::primitives::U256;
use serde::Serialize;

/// An amount as JSON shows it to people and scripts: the exact integer in base units as a
/// decimal string (a JavaScript number would round above 2^53) and the same amount in token
/// units. The CLI's `--json` and the node's API both use it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Amount {
    /// The integer in base units, as a decimal string.
    pub base_units: String,
    /// The same amount in token units, exact.
    pub formatted: String,
}

impl Amount {
    /// `units` base units of a token with `decimals` decimals.
    pub fn new(units: u128, decimals: u8) -> Self {
        Self::from_u256(U256::from(units), decimals)
    }

    /// [`Amount::new`] for a `U256`.
    pub fn from_u256(units: U256, decimals: u8) -> Self {
        Self {
            base_units: units.to_string(),
            formatted: format_units(units, decimals),
        }
    }
}

/// Formats `amount` base units of a token with `decimals` decimals, exactly (no float), with
/// trailing zeros trimmed but at least two decimals: `format_units(1_234_500, 6)` is `"1.2345"`.
pub fn format_units(amount: U256, decimals: u8) -> String {
    let scale = U256::from(10u64).pow(U256::from(decimals));
    let whole = amount / scale;
    let frac = amount % scale;
    if decimals == 0 {
        return whole.to_string();
    }
    let mut frac = format!("{frac:0>width$}", width = usize::from(decimals));
    while frac.len() > 2 && frac.ends_with('0') {
        frac.pop();
    }
    format!("{whole}.{frac}")
}

/// Parses a decimal string such as `"12.5"` into base units, rejecting more fractional digits
/// than the token has (an amount that cannot be paid exactly is an error, never rounded).
pub fn parse_units(text: &str, decimals: u8) -> Result<U256, ParseAmountError> {
    let bad = || ParseAmountError::Invalid {
        text: text.to_owned(),
    };
    let (whole, frac) = text.trim().split_once('.').unwrap_or((text.trim(), ""));
    if whole.is_empty() && frac.is_empty() {
        return Err(bad());
    }
    if !whole.chars().all(|c| c.is_ascii_digit()) || !frac.chars().all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    if frac.len() > usize::from(decimals) {
        return Err(ParseAmountError::TooPrecise {
            text: text.to_owned(),
            decimals,
        });
    }
    let padded = format!("{whole}{frac:0<width$}", width = usize::from(decimals));
    U256::from_str_radix(if padded.is_empty() { "0" } else { &padded }, 10).map_err(|_| bad())
}

/// Why a decimal amount was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseAmountError {
    /// Not a non-negative decimal number.
    #[error("`{text}` is not an amount; write a plain decimal number such as 12.5")]
    Invalid {
        /// The input.
        text: String,
    },
    /// More fractional digits than the token supports.
    #[error("`{text}` has more than {decimals} decimals, the token's precision; round it")]
    TooPrecise {
        /// The input.
        text: String,
        /// The token's decimals.
        decimals: u8,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_exactly() {
        assert_eq!(format_units(U256::from(1_234_500u64), 6), "1.2345");
        assert_eq!(format_units(U256::from(1u64), 6), "0.000001");
        assert_eq!(format_units(U256::from(5_000_000u64), 6), "5.00");
        assert_eq!(format_units(U256::from(42u64), 0), "42");
    }

    #[test]
    fn parses_exactly_and_refuses_rounding() {
        assert_eq!(parse_units("12.5", 6).unwrap(), U256::from(12_500_000u64));
        assert_eq!(parse_units("0.000001", 6).unwrap(), U256::from(1u64));
        assert_eq!(parse_units("7", 6).unwrap(), U256::from(7_000_000u64));
        assert!(matches!(
            parse_units("0.0000001", 6),
            Err(ParseAmountError::TooPrecise { .. })
        ));
        assert!(matches!(
            parse_units("-1", 6),
            Err(ParseAmountError::Invalid { .. })
        ));
        assert!(matches!(
            parse_units("", 6),
            Err(ParseAmountError::Invalid { .. })
        ));
        assert!(matches!(
            parse_units("1e3", 6),
            Err(ParseAmountError::Invalid { .. })
        ));
    }

    #[test]
    fn round_trips() {
        for v in [0u64, 1, 999_999, 1_000_000, 123_456_789] {
            let s = format_units(U256::from(v), 6);
            assert_eq!(parse_units(&s, 6).unwrap(), U256::from(v), "{s}");
        }
    }
}
