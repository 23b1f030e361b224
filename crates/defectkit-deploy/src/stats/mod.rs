//! Shared statistics of the deployment side: the mean and covariance of a class's
//! embeddings (plain or Ledoit-Wolf shrunk, [`covariance`](mod@covariance)) and its Cholesky factor
//! ([`cholesky`]), which the Mahalanobis detector, the scored ONNX bundle and (later) PCA
//! use. Dense linear algebra is faer's; nothing here inverts a covariance explicitly.

pub mod cholesky;
pub mod covariance;
pub mod paired;
pub mod pca;

use ndarray::ArrayView2;

pub use cholesky::Cholesky;
pub use covariance::{covariance, ledoit_wolf_shrinkage, CovarianceEstimate, Shrinkage};

/// The mean of each column of `rows`.
pub(crate) fn column_means(rows: ArrayView2<'_, f32>) -> Vec<f64> {
    let (n, d) = rows.dim();
    let mut mean = vec![0.0f64; d];
    for row in rows.rows() {
        for (m, v) in mean.iter_mut().zip(row) {
            *m += *v as f64;
        }
    }
    mean.iter_mut().for_each(|m| *m /= n.max(1) as f64);
    mean
}

/// Why a statistic could not be computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StatsError {
    /// Too few rows for the statistic.
    #[error("{needed} rows needed, {got} given")]
    TooFewRows {
        /// Rows required.
        needed: usize,
        /// Rows given.
        got: usize,
    },
    /// The matrix is not (numerically) positive definite: Cholesky failed.
    #[error(
        "the covariance of {rows} rows of dimension {dim} is singular (not positive definite): \
         fit on more images, or set detector.shrinkage to a fixed value in (0, 1] (Ledoit-Wolf \
         estimates no shrinkage from 2 rows, and 0 leaves a covariance of N ≤ d rows singular)"
    )]
    NotPositiveDefinite {
        /// Rows it was estimated from.
        rows: usize,
        /// Its dimension.
        dim: usize,
    },
    /// A value was NaN or infinite.
    #[error("non-finite value in the input")]
    NonFinite,
    /// An option is out of range.
    #[error("{0}")]
    Invalid(String),
}
