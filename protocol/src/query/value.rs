//! The exact value types of numeric and version fields.

use std::cmp::Ordering;

use alloy::primitives::U256;

/// An exact non-negative rational `num / den`, the value type of numeric fields. Equal values
/// written differently (`2`, `2.0`, `4/2`) compare equal.
#[derive(Clone, Copy, Debug)]
pub struct Num {
    num: u128,
    den: u128,
}

impl Num {
    /// Largest number of fractional digits a query number may have (10^38 fits a u128).
    pub const MAX_SCALE: usize = 38;

    /// Resolution of reliability scores: they are floats, compared after rounding to 10^-12.
    const SCORE_DEN: u128 = 1_000_000_000_000;

    /// The integer `n`.
    pub fn int(n: u128) -> Self {
        Self { num: n, den: 1 }
    }

    /// `num / den`; `den` is a positive constant at every call site.
    pub(crate) fn ratio(num: u128, den: u128) -> Self {
        Self {
            num,
            den: den.max(1),
        }
    }

    /// `base` token base units of a token with `decimals` decimals, in whole tokens. Tokens with
    /// more than 38 decimals (none exist) lose the digits beyond the 38th.
    pub(crate) fn tokens(base: u128, decimals: u8) -> Self {
        let d = u32::from(decimals);
        match 10u128.checked_pow(d) {
            Some(den) => Self { num: base, den },
            // Past 10^77 the divisor overflows too; any u128 amount is then 0 at this scale.
            None => Self {
                num: 10u128.checked_pow(d - 38).map_or(0, |shrink| base / shrink),
                den: 10u128.pow(38),
            },
        }
    }

    /// A reliability score, clamped to 0..=1 (NaN counts as 0) and rounded to 10^-12.
    pub(crate) fn from_score(score: f64) -> Self {
        let s = if score.is_nan() {
            0.0
        } else {
            score.clamp(0.0, 1.0)
        };
        // In 0..=1e12 after the clamp, so the cast is exact for the integer part.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let num = (s * 1e12).round() as u128;
        Self::ratio(num, Self::SCORE_DEN)
    }

    /// Parses a plain non-negative decimal (`2`, `0.45`, `.5`, `3.`), exactly.
    pub fn parse_decimal(text: &str) -> Option<Self> {
        let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
        if whole.is_empty() && frac.is_empty() {
            return None;
        }
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if !digits(whole) || !digits(frac) || frac.len() > Self::MAX_SCALE {
            return None;
        }
        let mut num: u128 = 0;
        for b in whole.bytes().chain(frac.bytes()) {
            num = num.checked_mul(10)?.checked_add(u128::from(b - b'0'))?;
        }
        let scale = u32::try_from(frac.len()).ok()?;
        Some(Self::ratio(num, 10u128.pow(scale)))
    }
}

impl Ord for Num {
    fn cmp(&self, other: &Self) -> Ordering {
        // a/b vs c/d  <=>  a*d vs c*b (denominators are positive). u128 products almost
        // always fit; the U256 fallback is exact for any two u128 factors.
        match (
            self.num.checked_mul(other.den),
            other.num.checked_mul(self.den),
        ) {
            (Some(l), Some(r)) => l.cmp(&r),
            _ => (U256::from(self.num) * U256::from(other.den))
                .cmp(&(U256::from(other.num) * U256::from(self.den))),
        }
    }
}

impl PartialOrd for Num {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Num {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Num {}

/// A dotted version of up to four numeric parts; missing parts are 0, so `12.4` = `12.4.0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version([u32; 4]);

impl Version {
    /// Parses `12.4`, `550.54.14`, `535.129.03`; `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = [0u32; 4];
        for (n, part) in text.split('.').enumerate() {
            if n == parts.len() || part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            parts[n] = part.parse().ok()?;
        }
        Some(Self(parts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_compare_exactly() {
        let p = |s| Num::parse_decimal(s).unwrap();
        assert_eq!(p("2"), p("2.000"));
        assert_eq!(p(".5"), Num::ratio(512, 1024));
        assert!(Num::ratio(24_564, 1024) < p("24"));
        assert!(Num::ratio(24_576, 1024) == p("24"));
        assert!(p("0.1") < p("0.10000000000000000000000000000000000001"));
        // Forces the U256 path.
        assert!(Num::ratio(u128::MAX, 3) > Num::ratio(u128::MAX - 1, 3));
        assert_eq!(Num::tokens(3_000_000, 6), p("3"));
        assert_eq!(Num::tokens(5, 40), Num::int(0));
        assert_eq!(
            Num::tokens(10u128.pow(30), 60),
            Num::ratio(10u128.pow(8), 10u128.pow(38))
        );
        assert_eq!(Num::tokens(u128::MAX, 255), Num::int(0)); // no overflow panic
        for bad in [
            "",
            ".",
            "-1",
            "1e3",
            "1.2.3",
            "two",
            "99999999999999999999999999999999999999999",
        ] {
            assert!(Num::parse_decimal(bad).is_none(), "{bad}");
        }
        assert_eq!(Num::from_score(f64::NAN), Num::int(0));
        assert_eq!(Num::from_score(2.0), Num::int(1));
    }

    #[test]
    fn versions_compare_by_number() {
        let v = |s| Version::parse(s).unwrap();
        assert!(v("12.10") > v("12.4"));
        assert_eq!(v("12.4"), v("12.4.0"));
        assert!(v("535.129.03") < v("550.54.14"));
        for bad in ["", "12.", "a.b", "1.2.3.4.5", "12.-1"] {
            assert!(Version::parse(bad).is_none(), "{bad}");
        }
    }
}
