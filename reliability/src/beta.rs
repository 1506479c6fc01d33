//! The Beta distribution's CDF (the regularized incomplete beta function) and its quantile,
//! which ranks hosts. Written out rather than pulled from a statistics crate: it is 100 lines,
//! and the crates that have it bring linear-algebra dependencies along.
//!
//! The CDF is the continued fraction of Numerical Recipes §6.4 (modified Lentz), with
//! `ln Γ` from the Lanczos approximation (g = 7, 9 terms; relative error below 1e-14). The
//! quantile is a bisection on the CDF, which is monotone, so it cannot fail to converge.

/// Continued-fraction terms tried before giving up; it needs about √max(a, b) of them, and
/// callers keep a + b at or below a million.
const MAX_TERMS: u32 = 20_000;
/// Relative accuracy asked of the continued fraction.
const EPS: f64 = 1e-15;
/// Keeps the Lentz recursion away from division by zero.
const TINY: f64 = 1e-300;

/// `ln Γ(x)` for x > 0.
pub fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const COEF: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x)Γ(1−x) = π / sin(πx).
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut sum = COEF[0];
    for (i, c) in COEF.iter().enumerate().skip(1) {
        sum += c / (x + i as f64);
    }
    let t = x + G + 0.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

/// The continued fraction for I_x(a, b) (Numerical Recipes `betacf`).
fn continued_fraction(x: f64, a: f64, b: f64) -> f64 {
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..=MAX_TERMS {
        let m = f64::from(m);
        let m2 = 2.0 * m;
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        h *= d * c;
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        let del = d * c;
        h *= del;
        if (del - 1.0).abs() < EPS {
            break;
        }
    }
    h
}

/// The CDF of Beta(a, b) at x: the regularized incomplete beta function I_x(a, b). a, b > 0.
pub fn cdf(x: f64, a: f64, b: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln();
    let front = ln_front.exp();
    // The fraction converges fast on this side of the mean; use the symmetry on the other.
    if x < (a + 1.0) / (a + b + 2.0) {
        front * continued_fraction(x, a, b) / a
    } else {
        1.0 - front * continued_fraction(1.0 - x, b, a) / b
    }
}

/// The p-quantile of Beta(a, b): the x with `cdf(x, a, b) = p`, to about 1e-13. a, b > 0 and
/// 0 ≤ p ≤ 1; anything else (NaN included) gives NaN.
pub fn quantile(p: f64, a: f64, b: f64) -> f64 {
    if !(0.0..=1.0).contains(&p) || a.is_nan() || b.is_nan() || a <= 0.0 || b <= 0.0 {
        return f64::NAN;
    }
    let (mut lo, mut hi) = (0.0_f64, 1.0_f64);
    // 60 halvings bring the interval under 1e-18, past f64's resolution near 1.
    for _ in 0..60 {
        let mid = 0.5 * (lo + hi);
        if cdf(mid, a, b) < p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(got: f64, want: f64, tol: f64) {
        assert!((got - want).abs() <= tol, "got {got}, want {want}");
    }

    #[test]
    fn ln_gamma_matches_factorials() {
        close(ln_gamma(1.0), 0.0, 1e-14);
        close(ln_gamma(5.0), 24f64.ln(), 1e-13);
        close(ln_gamma(0.5), std::f64::consts::PI.sqrt().ln(), 1e-13);
        // ln(20!) = ln Γ(21).
        close(ln_gamma(21.0), 42.335_616_460_753_485, 1e-11);
    }

    #[test]
    fn quantile_matches_closed_forms() {
        for p in [0.01, 0.1, 0.5, 0.9] {
            // Beta(1,1) is uniform; Beta(a,1) has CDF x^a; Beta(1,b) has CDF 1-(1-x)^b.
            close(quantile(p, 1.0, 1.0), p, 1e-12);
            close(quantile(p, 3.0, 1.0), p.powf(1.0 / 3.0), 1e-12);
            close(quantile(p, 1.0, 4.0), 1.0 - (1.0 - p).powf(0.25), 1e-12);
            // Beta(2,2): CDF 3x² − 2x³.
            let x = quantile(p, 2.0, 2.0);
            close(3.0 * x * x - 2.0 * x * x * x, p, 1e-12);
        }
        close(quantile(0.5, 7.5, 7.5), 0.5, 1e-12);
    }

    #[test]
    fn cdf_matches_the_binomial_identity_for_integer_parameters() {
        // I_x(a, b) = P(Binomial(a+b−1, x) ≥ a) for integer a, b.
        let binom_tail = |n: u32, k0: u32, x: f64| -> f64 {
            (k0..=n)
                .map(|k| {
                    let ln_c = ln_gamma(f64::from(n + 1))
                        - ln_gamma(f64::from(k + 1))
                        - ln_gamma(f64::from(n - k + 1));
                    (ln_c + f64::from(k) * x.ln() + f64::from(n - k) * (1.0 - x).ln()).exp()
                })
                .sum()
        };
        for (a, b) in [(12u32, 8u32), (3, 17), (40, 2), (1, 1)] {
            for x in [0.05, 0.3, 0.6, 0.95] {
                close(
                    cdf(x, f64::from(a), f64::from(b)),
                    binom_tail(a + b - 1, a, x),
                    1e-12,
                );
            }
        }
    }

    #[test]
    fn quantile_matches_reference_values() {
        // Computed with mpmath 1.3 at 50 digits: findroot(betainc(a, b, 0, x, regularized=True) - p).
        close(quantile(0.1, 12.0, 8.0), 0.458_679_103_324_823_5, 1e-10);
        close(quantile(0.1, 112.0, 8.0), 0.903_066_580_578_834, 1e-10);
        close(quantile(0.1, 6_012.0, 8.0), 0.998_045_148_784_823_8, 1e-10);
        // By bisection on the exact binomial sum (mpmath, 40 digits).
        close(
            quantile(0.1, 3_000.0, 2_000.0),
            0.591_112_912_134_268_1,
            1e-9,
        );
    }

    #[test]
    fn bad_input_is_nan_not_a_panic() {
        assert!(quantile(1.5, 1.0, 1.0).is_nan());
        assert!(quantile(0.5, 0.0, 1.0).is_nan());
        assert!(quantile(f64::NAN, 1.0, 1.0).is_nan());
        assert_eq!(cdf(-1.0, 2.0, 2.0), 0.0);
        assert_eq!(cdf(2.0, 2.0, 2.0), 1.0);
    }
}
