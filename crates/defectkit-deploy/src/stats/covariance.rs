//! Mean and covariance of a set of rows, with optional shrinkage towards a scaled identity.
//!
//! Two estimators, named for what they equal:
//! - [`Shrinkage::LedoitWolf`] is scikit-learn's `LedoitWolf` exactly: the maximum-likelihood
//!   covariance S = XᵀX/N of the centred rows, shrunk to Σ = (1−δ)·S + δ·(tr S/d)·I with δ from
//!   Ledoit and Wolf's closed form ([`ledoit_wolf_shrinkage`]).
//! - [`Shrinkage::Fixed`]`(δ)` shrinks the *unbiased* covariance S = XᵀX/(N−1) (the spec's Σ)
//!   by a fixed δ; `Fixed(0.0)` is the plain unbiased covariance, singular when N ≤ d.

pub use defectkit_core::config::detector::Shrinkage;
use faer::Mat;
use ndarray::ArrayView2;

use super::StatsError;

/// A class's mean and (shrunk) covariance.
#[derive(Debug, Clone)]
pub struct CovarianceEstimate {
    /// Mean of the rows (length d).
    pub mean: Vec<f64>,
    /// The d×d covariance, symmetric.
    pub covariance: Mat<f64>,
    /// The δ applied (Ledoit-Wolf's estimate, or the fixed value).
    pub shrinkage: f64,
    /// Rows it was estimated from.
    pub rows: usize,
}

/// Centred rows as an N×d faer matrix and their mean.
fn centred(rows: ArrayView2<'_, f32>) -> Result<(Mat<f64>, Vec<f64>), StatsError> {
    let (n, d) = rows.dim();
    if rows.iter().any(|v| !v.is_finite()) {
        return Err(StatsError::NonFinite);
    }
    let mean = super::column_means(rows);
    let x = Mat::from_fn(n, d, |i, j| rows[[i, j]] as f64 - mean[j]);
    Ok((x, mean))
}

/// Ledoit-Wolf's shrinkage δ for centred rows `x` (N×d), as scikit-learn's
/// `ledoit_wolf_shrinkage(X, assume_centered=True)` computes it: with S = XᵀX/N,
/// μ = tr S/d, β̄ = (Σₙ‖xₙ‖⁴/N − ‖S‖²_F)/(N·d), δ̄ = (‖S‖²_F − 2μ·tr S + d·μ²)/d,
/// δ = min(β̄, δ̄)/δ̄ (0 when β̄ = 0; 0 for d = 1).
pub fn ledoit_wolf_shrinkage(x: &Mat<f64>) -> f64 {
    let (n, d) = (x.nrows(), x.ncols());
    if d == 1 || n == 0 {
        return 0.0;
    }
    let s = x.transpose() * x;
    let nf = n as f64;
    let mut frob2 = 0.0f64; // Σ (XᵀX)² / N² = ‖S‖²_F
    let mut trace = 0.0f64;
    for j in 0..d {
        for i in 0..d {
            let v = s[(i, j)] / nf;
            frob2 += v * v;
        }
        trace += s[(j, j)] / nf;
    }
    let mut fourth = 0.0f64; // Σₙ ‖xₙ‖⁴
    for i in 0..n {
        let sq: f64 = (0..d).map(|j| x[(i, j)] * x[(i, j)]).sum();
        fourth += sq * sq;
    }
    let df = d as f64;
    let mu = trace / df;
    let beta = (fourth / nf - frob2) / (df * nf);
    let delta = (frob2 - 2.0 * mu * trace + df * mu * mu) / df;
    let beta = beta.min(delta);
    if beta == 0.0 {
        0.0
    } else {
        beta / delta
    }
}

/// Mean and covariance of `rows` (N×d) with the given shrinkage. Needs N ≥ 2.
pub fn covariance(
    rows: ArrayView2<'_, f32>,
    shrinkage: Shrinkage,
) -> Result<CovarianceEstimate, StatsError> {
    let (n, d) = rows.dim();
    if n < 2 {
        return Err(StatsError::TooFewRows { needed: 2, got: n });
    }
    if d == 0 {
        return Err(StatsError::Invalid("embeddings of dimension 0".into()));
    }
    let (x, mean) = centred(rows)?;
    let (delta, denominator) = match shrinkage {
        Shrinkage::LedoitWolf => (ledoit_wolf_shrinkage(&x), n as f64),
        Shrinkage::Fixed(delta) => {
            if !(0.0..=1.0).contains(&delta) {
                return Err(StatsError::Invalid(format!(
                    "shrinkage must be in [0, 1], got {delta}"
                )));
            }
            (delta, (n - 1) as f64)
        }
    };
    let mut cov = x.transpose() * &x;
    let mut trace = 0.0;
    for j in 0..d {
        for i in 0..d {
            cov[(i, j)] /= denominator;
        }
        trace += cov[(j, j)];
    }
    let target = trace / d as f64;
    for j in 0..d {
        for i in 0..d {
            cov[(i, j)] *= 1.0 - delta;
        }
        cov[(j, j)] += delta * target;
    }
    Ok(CovarianceEstimate {
        mean,
        covariance: cov,
        shrinkage: delta,
        rows: n,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn unbiased_covariance_by_hand() {
        // x = [1, 2, 3], y = [2, 4, 7]: var x = 1, var y = 6.333…, cov = 2.5 (1/(N−1)).
        let rows = array![[1.0f32, 2.0], [2.0, 4.0], [3.0, 7.0]];
        let est = covariance(rows.view(), Shrinkage::Fixed(0.0)).unwrap();
        assert_eq!(est.mean, vec![2.0, 13.0 / 3.0]);
        assert!((est.covariance[(0, 0)] - 1.0).abs() < 1e-12);
        assert!((est.covariance[(1, 1)] - 19.0 / 3.0).abs() < 1e-12);
        assert!((est.covariance[(0, 1)] - 2.5).abs() < 1e-12);
        assert_eq!(est.covariance[(0, 1)], est.covariance[(1, 0)]);
    }

    #[test]
    fn fixed_shrinkage_moves_towards_the_scaled_identity() {
        let rows = array![[1.0f32, 2.0], [2.0, 4.0], [3.0, 7.0]];
        let est = covariance(rows.view(), Shrinkage::Fixed(1.0)).unwrap();
        let mu = (1.0 + 19.0 / 3.0) / 2.0;
        assert!((est.covariance[(0, 0)] - mu).abs() < 1e-12);
        assert!((est.covariance[(1, 1)] - mu).abs() < 1e-12);
        assert_eq!(est.covariance[(0, 1)], 0.0);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let one = array![[1.0f32, 2.0]];
        assert_eq!(
            covariance(one.view(), Shrinkage::LedoitWolf).unwrap_err(),
            StatsError::TooFewRows { needed: 2, got: 1 }
        );
        let nan = array![[1.0f32, f32::NAN], [0.0, 1.0]];
        assert_eq!(
            covariance(nan.view(), Shrinkage::LedoitWolf).unwrap_err(),
            StatsError::NonFinite
        );
        let rows = array![[1.0f32, 2.0], [2.0, 4.0]];
        assert!(matches!(
            covariance(rows.view(), Shrinkage::Fixed(1.5)),
            Err(StatsError::Invalid(_))
        ));
    }
}
