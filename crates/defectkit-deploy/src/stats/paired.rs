//! Paired-difference statistics: the mean and standard deviation of the differences of
//! paired observations, a Student-t confidence interval of the mean difference and the
//! paired t-test's two-sided p-value (what `scipy.stats.ttest_rel` computes).
//!
//! The t distribution is evaluated through the regularized incomplete beta function
//! (continued fraction, modified Lentz), its quantile by safeguarded Newton steps on the
//! upper tail. Both are checked against SciPy (`tests/peers/paired_peer.py`) to ~1e-12.

use super::StatsError;

/// The paired comparison of two samples: `a[i] - b[i]` summarised.
#[derive(Debug, Clone, PartialEq)]
pub struct PairedDifference {
    /// Pairs.
    pub n: usize,
    /// Mean of `a - b`.
    pub mean: f64,
    /// Sample standard deviation of `a - b` (denominator n − 1).
    pub sd: f64,
    /// Standard error of the mean difference, sd / √n.
    pub se: f64,
    /// Degrees of freedom, n − 1.
    pub df: f64,
    /// The t statistic, mean / se (±∞ when sd = 0 and mean ≠ 0, NaN when both are 0).
    pub t: f64,
    /// Two-sided p-value of the paired t-test (NaN when sd = 0 and mean = 0).
    pub p_value: f64,
    /// The confidence level of [`PairedDifference::ci`], e.g. 0.95.
    pub confidence: f64,
    /// The Student-t confidence interval of the mean difference, `(low, high)`.
    pub ci: (f64, f64),
}

/// Summarises the paired differences `a[i] - b[i]` with a `confidence` Student-t interval.
///
/// Errors: fewer than 2 pairs, samples of different lengths or a confidence outside (0, 1)
/// ([`StatsError::Invalid`]), non-finite values ([`StatsError::NonFinite`]).
pub fn paired_difference(
    a: &[f64],
    b: &[f64],
    confidence: f64,
) -> Result<PairedDifference, StatsError> {
    if a.len() != b.len() {
        return Err(StatsError::Invalid(format!(
            "paired samples of different lengths ({} and {})",
            a.len(),
            b.len()
        )));
    }
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    differences(&d, confidence)
}

/// Like [`paired_difference`], given the differences themselves.
pub fn differences(d: &[f64], confidence: f64) -> Result<PairedDifference, StatsError> {
    if !(confidence > 0.0 && confidence < 1.0) {
        return Err(StatsError::Invalid(format!(
            "confidence {confidence} is not in (0, 1)"
        )));
    }
    if d.len() < 2 {
        return Err(StatsError::TooFewRows {
            needed: 2,
            got: d.len(),
        });
    }
    if d.iter().any(|v| !v.is_finite()) {
        return Err(StatsError::NonFinite);
    }
    let n = d.len() as f64;
    let mean = d.iter().sum::<f64>() / n;
    // Two-pass variance with the compensation term (as NumPy's var is accurate).
    let (ss, comp) = d.iter().fold((0.0, 0.0), |(ss, c), v| {
        let e = v - mean;
        (ss + e * e, c + e)
    });
    let var = ((ss - comp * comp / n) / (n - 1.0)).max(0.0);
    let sd = var.sqrt();
    let se = sd / n.sqrt();
    let df = n - 1.0;
    let (t, p_value) = if se > 0.0 {
        let t = mean / se;
        (t, two_sided_p(t, df))
    } else if mean != 0.0 {
        (mean.signum() * f64::INFINITY, 0.0)
    } else {
        (f64::NAN, f64::NAN)
    };
    let q = t_quantile(0.5 + confidence / 2.0, df);
    let half = q * se;
    Ok(PairedDifference {
        n: d.len(),
        mean,
        sd,
        se,
        df,
        t,
        p_value,
        confidence,
        ci: (mean - half, mean + half),
    })
}

/// The two-sided p-value of a t statistic with `df` degrees of freedom: P(|T| ≥ |t|).
pub fn two_sided_p(t: f64, df: f64) -> f64 {
    if t.is_nan() || df.is_nan() || df <= 0.0 {
        return f64::NAN;
    }
    if t.is_infinite() {
        return 0.0;
    }
    let t2 = t * t;
    // x = df / (df + t²), 1 − x = t² / (df + t²): both formed without cancellation.
    let x = df / (df + t2);
    let y = t2 / (df + t2);
    beta_inc_xy(df / 2.0, 0.5, x, y).min(1.0)
}

/// The cumulative distribution function of Student's t with `df` degrees of freedom.
pub fn t_cdf(t: f64, df: f64) -> f64 {
    if t.is_nan() || df.is_nan() || df <= 0.0 {
        return f64::NAN;
    }
    let upper = 0.5 * two_sided_p(t, df);
    if t >= 0.0 {
        1.0 - upper
    } else {
        upper
    }
}

/// The density of Student's t with `df` degrees of freedom.
pub fn t_pdf(t: f64, df: f64) -> f64 {
    let ln = ln_gamma((df + 1.0) / 2.0)
        - ln_gamma(df / 2.0)
        - 0.5 * (df * std::f64::consts::PI).ln()
        - (df + 1.0) / 2.0 * (t * t / df).ln_1p();
    ln.exp()
}

/// The upper tail P(T ≥ t) for t ≥ 0.
fn upper_tail(t: f64, df: f64) -> f64 {
    0.5 * two_sided_p(t, df)
}

/// The quantile (inverse CDF) of Student's t with `df` degrees of freedom at probability
/// `p` (`scipy.stats.t.ppf`): ±∞ at 1 and 0, NaN outside [0, 1] or for df ≤ 0.
pub fn t_quantile(p: f64, df: f64) -> f64 {
    if p.is_nan() || !(0.0..=1.0).contains(&p) || df.is_nan() || df <= 0.0 {
        return f64::NAN;
    }
    if p == 0.5 {
        return 0.0;
    }
    if p == 1.0 {
        return f64::INFINITY;
    }
    if p == 0.0 {
        return f64::NEG_INFINITY;
    }
    if p < 0.5 {
        return -upper_quantile(p, df);
    }
    upper_quantile(1.0 - p, df)
}

/// The t ≥ 0 with P(T ≥ t) = q, q in (0, 0.5).
fn upper_quantile(q: f64, df: f64) -> f64 {
    // Bracket: upper_tail is decreasing in t.
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    while upper_tail(hi, df) > q {
        lo = hi;
        hi *= 2.0;
        if hi > 1e300 {
            return f64::INFINITY;
        }
    }
    // Start from the normal approximation clamped into the bracket, then Newton steps
    // (f(t) = upper_tail(t) − q, f' = −pdf) that fall back to bisection outside it.
    let mut t = (normal_upper_quantile(q)).clamp(lo, hi);
    if !(t > lo && t < hi) {
        t = 0.5 * (lo + hi);
    }
    for _ in 0..200 {
        let f = upper_tail(t, df) - q;
        if f == 0.0 {
            return t;
        }
        if f > 0.0 {
            lo = t;
        } else {
            hi = t;
        }
        let pdf = t_pdf(t, df);
        let mut next = if pdf > 0.0 { t + f / pdf } else { f64::NAN };
        if !(next > lo && next < hi) {
            next = 0.5 * (lo + hi);
        }
        if (next - t).abs() <= 1e-15 * t.abs().max(1e-300) || hi - lo <= 1e-15 * hi {
            return next;
        }
        t = next;
    }
    t
}

/// The standard normal's upper quantile (Acklam's rational approximation, ~1e-9): only the
/// Newton start of [`upper_quantile`].
fn normal_upper_quantile(q: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.383_577_518_672_69e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e1,
        1.615858368580409e2,
        -1.556989798598866e2,
        6.680131188771972e1,
        -1.328068155288572e1,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-3,
        3.224671290700398e-1,
        2.445134137142996,
        3.754408661907416,
    ];
    let p = q; // lower-tail probability of −z
    let z = if p < 0.02425 {
        let r = (-2.0 * p.ln()).sqrt();
        (((((C[0] * r + C[1]) * r + C[2]) * r + C[3]) * r + C[4]) * r + C[5])
            / ((((D[0] * r + D[1]) * r + D[2]) * r + D[3]) * r + 1.0)
    } else {
        let r0 = p - 0.5;
        let r = r0 * r0;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * r0
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    };
    -z
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7, 9 terms; reflection below 0.5), ~1e-15 relative.
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
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = COEF[0];
    let t = x + G + 0.5;
    for (i, c) in COEF.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// ln B(a, b).
fn ln_beta(a: f64, b: f64) -> f64 {
    ln_gamma(a) + ln_gamma(b) - ln_gamma(a + b)
}

/// The regularized incomplete beta function I_x(a, b) for a, b > 0, x in [0, 1].
pub fn regularized_incomplete_beta(a: f64, b: f64, x: f64) -> f64 {
    if x.is_nan() || !(0.0..=1.0).contains(&x) || a.is_nan() || a <= 0.0 || b.is_nan() || b <= 0.0 {
        return f64::NAN;
    }
    beta_inc_xy(a, b, x, 1.0 - x)
}

/// I_x(a, b) given both x and y = 1 − x (so a caller can pass a y formed without
/// cancellation).
fn beta_inc_xy(a: f64, b: f64, x: f64, y: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if y <= 0.0 {
        return 1.0;
    }
    let ln_front = a * x.ln() + b * y.ln() - ln_beta(a, b);
    if x < (a + 1.0) / (a + b + 2.0) {
        (ln_front.exp() * beta_cf(a, b, x, y) / a).clamp(0.0, 1.0)
    } else {
        (1.0 - ln_front.exp() * beta_cf(b, a, y, x) / b).clamp(0.0, 1.0)
    }
}

/// The continued fraction of the incomplete beta (Numerical Recipes' `betacf`, modified
/// Lentz), converging fast for x < (a + 1) / (a + b + 2).
fn beta_cf(a: f64, b: f64, x: f64, _y: f64) -> f64 {
    const TINY: f64 = 1e-300;
    const EPS: f64 = 1e-16;
    let qab = a + b;
    let qap = a + 1.0;
    let qam = a - 1.0;
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..=100_000 {
        let m = m as f64;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_quantiles() {
        // Textbook t table values (two-sided 95 %).
        assert!((t_quantile(0.975, 1.0) - 12.706204736174698).abs() < 1e-9);
        assert!((t_quantile(0.975, 10.0) - 2.2281388519649385).abs() < 1e-9);
        assert_eq!(t_quantile(0.5, 3.0), 0.0);
        assert!((t_quantile(0.025, 10.0) + t_quantile(0.975, 10.0)).abs() < 1e-14);
    }

    #[test]
    fn cdf_inverts_quantile() {
        for df in [1.0, 2.0, 4.0, 29.0, 199.0] {
            for p in [0.9, 0.95, 0.975, 0.995, 0.999] {
                let t = t_quantile(p, df);
                assert!((t_cdf(t, df) - p).abs() < 1e-13, "df {df} p {p}");
            }
        }
    }

    #[test]
    fn bad_inputs_are_errors_not_panics() {
        assert!(paired_difference(&[1.0], &[2.0], 0.95).is_err());
        assert!(paired_difference(&[1.0, 2.0], &[2.0], 0.95).is_err());
        assert!(paired_difference(&[1.0, 2.0], &[2.0, 1.0], 1.5).is_err());
        assert!(paired_difference(&[1.0, f64::NAN], &[2.0, 1.0], 0.95).is_err());
        let same = paired_difference(&[1.0, 2.0], &[1.0, 2.0], 0.95).unwrap();
        assert!(same.p_value.is_nan());
        assert_eq!(same.ci, (0.0, 0.0));
    }
}
