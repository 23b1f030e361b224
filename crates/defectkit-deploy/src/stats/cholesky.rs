//! The Cholesky factor of a covariance, Σ = L·Lᵀ, and what it is used for: Mahalanobis
//! distances by triangular solves, ‖L⁻¹(z − μ)‖ = sqrt((z − μ)ᵀ Σ⁻¹ (z − μ)), and L⁻¹ itself
//! for the scored ONNX graph (a MatMul there). Σ⁻¹ is never formed.

use faer::linalg::triangular_solve::solve_lower_triangular_in_place;
use faer::{Mat, Par, Side};

use super::StatsError;

/// The lower-triangular Cholesky factor L of a symmetric positive-definite matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct Cholesky {
    l: Mat<f64>,
}

impl Cholesky {
    /// Factors `matrix` (d×d, symmetric); `rows` (what it was estimated from) only names the
    /// cause when it is singular.
    pub fn new(matrix: &Mat<f64>, rows: usize) -> Result<Self, StatsError> {
        let dim = matrix.nrows();
        let llt = matrix
            .llt(Side::Lower)
            .map_err(|_| StatsError::NotPositiveDefinite { rows, dim })?;
        let l = llt.L().to_owned();
        // faer accepts tiny positive pivots; a factor this ill-conditioned gives meaningless
        // distances, so treat it as singular. The scale is the matrix's largest diagonal
        // entry (≥ every Lᵢᵢ², ≤ λ_max), not L's largest pivot, which can be far smaller
        // (a rank-1 Σ with a small first variance passed that test). Every Lᵢᵢ² ≥ λ_min, so
        // a pivot Lᵢᵢ² ≤ 1e-14·max aⱼⱼ is refused only when cond(Σ) > 1e14.
        let max = (0..dim).map(|i| matrix[(i, i)]).fold(0.0f64, f64::max);
        let pivot = |i: usize| l[(i, i)] * l[(i, i)];
        if (0..dim).any(|i| pivot(i).is_nan() || pivot(i) <= max * 1e-14) {
            return Err(StatsError::NotPositiveDefinite { rows, dim });
        }
        Ok(Self { l })
    }

    /// Wraps a factor read back from a file (must be lower triangular with a positive diagonal).
    pub fn from_factor(l: Mat<f64>) -> Result<Self, StatsError> {
        let d = l.nrows();
        if l.ncols() != d {
            return Err(StatsError::Invalid(format!(
                "a Cholesky factor must be square, got {}×{}",
                d,
                l.ncols()
            )));
        }
        for j in 0..d {
            if l[(j, j)].is_nan() || l[(j, j)] <= 0.0 {
                return Err(StatsError::Invalid(
                    "a Cholesky factor needs a positive diagonal".into(),
                ));
            }
            for i in 0..j {
                if l[(i, j)] != 0.0 {
                    return Err(StatsError::Invalid(
                        "a Cholesky factor must be lower triangular".into(),
                    ));
                }
            }
        }
        Ok(Self { l })
    }

    /// The factor L.
    pub fn factor(&self) -> &Mat<f64> {
        &self.l
    }

    /// Dimension d.
    pub fn dim(&self) -> usize {
        self.l.nrows()
    }

    /// ‖L⁻¹ rᵢ‖ for every row rᵢ of `centred` (N×d): one triangular solve for all rows.
    pub fn whitened_norms(&self, centred: &Mat<f64>) -> Vec<f64> {
        let mut rhs = centred.transpose().to_owned();
        solve_lower_triangular_in_place(self.l.as_ref(), rhs.as_mut(), Par::Seq);
        (0..rhs.ncols())
            .map(|c| {
                (0..rhs.nrows())
                    .map(|r| rhs[(r, c)] * rhs[(r, c)])
                    .sum::<f64>()
                    .sqrt()
            })
            .collect()
    }

    /// L⁻¹, by solving L·X = I (lower triangular, like L).
    pub fn inverse_factor(&self) -> Mat<f64> {
        let mut x = Mat::<f64>::identity(self.dim(), self.dim());
        solve_lower_triangular_in_place(self.l.as_ref(), x.as_mut(), Par::Seq);
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spd() -> Mat<f64> {
        // A = B·Bᵀ + I for a fixed B.
        let b = Mat::from_fn(3, 3, |i, j| ((i * 3 + j) as f64 * 0.7).sin());
        let mut a = &b * b.transpose();
        for i in 0..3 {
            a[(i, i)] += 1.0;
        }
        a
    }

    #[test]
    fn whitened_norm_is_the_quadratic_form() {
        let a = spd();
        let chol = Cholesky::new(&a, 10).unwrap();
        let r = Mat::from_fn(2, 3, |i, j| (i as f64 + 1.0) * (j as f64 - 0.5));
        let norms = chol.whitened_norms(&r);
        // Reference: solve A·y = r by the explicit inverse of a 3×3 (test only) and take rᵀy.
        let inv = inverse3(&a);
        for (i, norm) in norms.iter().enumerate() {
            let mut q = 0.0;
            for p in 0..3 {
                for s in 0..3 {
                    q += r[(i, p)] * inv[p][s] * r[(i, s)];
                }
            }
            assert!((norm - q.sqrt()).abs() < 1e-12, "{norm} vs {}", q.sqrt());
        }
        // L·L⁻¹ = I.
        let prod = chol.factor() * chol.inverse_factor();
        for i in 0..3 {
            for j in 0..3 {
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((prod[(i, j)] - want).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn singular_matrices_are_refused() {
        let a = Mat::from_fn(3, 3, |i, j| ((i + 1) * (j + 1)) as f64); // rank 1
        assert_eq!(
            Cholesky::new(&a, 2).unwrap_err(),
            StatsError::NotPositiveDefinite { rows: 2, dim: 3 }
        );
        let upper = Mat::from_fn(2, 2, |i, j| if i <= j { 1.0 } else { 0.0 });
        assert!(Cholesky::from_factor(upper).is_err());
    }

    fn inverse3(a: &Mat<f64>) -> [[f64; 3]; 3] {
        let m = |i: usize, j: usize| a[(i, j)];
        let det = m(0, 0) * (m(1, 1) * m(2, 2) - m(1, 2) * m(2, 1))
            - m(0, 1) * (m(1, 0) * m(2, 2) - m(1, 2) * m(2, 0))
            + m(0, 2) * (m(1, 0) * m(2, 1) - m(1, 1) * m(2, 0));
        let mut out = [[0.0; 3]; 3];
        for (i, row) in out.iter_mut().enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                // inv[i][j] = cofactor(j, i) / det: drop row j and column i.
                let r: Vec<usize> = (0..3).filter(|&r| r != j).collect();
                let c: Vec<usize> = (0..3).filter(|&c| c != i).collect();
                let minor = m(r[0], c[0]) * m(r[1], c[1]) - m(r[0], c[1]) * m(r[1], c[0]);
                let sign = if (i + j) % 2 == 0 { 1.0 } else { -1.0 };
                *v = sign * minor / det;
            }
        }
        out
    }
}
