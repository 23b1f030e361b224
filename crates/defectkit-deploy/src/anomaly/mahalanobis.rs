//! Mahalanobis distance to the class Gaussian, as the experiment's spec writes it:
//! d(z) = sqrt((z − μ)ᵀ Σ⁻¹ (z − μ)), μ the mean and Σ the covariance of the class's good
//! embeddings. Σ is shrunk (Ledoit-Wolf by default, see [`crate::stats::covariance`](mod@crate::stats::covariance)) because
//! with d = 128–512 and tens to hundreds of images per class the plain Σ is singular. Scores
//! are computed by a triangular solve with Σ's Cholesky factor, never an explicit inverse.

use faer::Mat;
use ndarray::ArrayView2;

use super::{read_vec, write_vec, AnomalyError, ClassScorer, Observations, OnnxPart};
use crate::stats::{covariance, Cholesky, Shrinkage, StatsError};

/// A class's Gaussian: mean and the Cholesky factor of its (shrunk) covariance.
#[derive(Debug, Clone, PartialEq)]
pub struct Mahalanobis {
    mean: Vec<f64>,
    cholesky: Cholesky,
    shrinkage: f64,
    rows: usize,
}

impl Mahalanobis {
    /// Fits on the class's good embeddings (N ≥ 2).
    pub fn fit(rows: ArrayView2<'_, f32>, shrinkage: Shrinkage) -> Result<Self, StatsError> {
        let est = covariance(rows, shrinkage)?;
        let cholesky = Cholesky::new(&est.covariance, est.rows)?;
        Ok(Self {
            mean: est.mean,
            cholesky,
            shrinkage: est.shrinkage,
            rows: est.rows,
        })
    }

    /// The shrinkage δ that was applied.
    pub fn shrinkage(&self) -> f64 {
        self.shrinkage
    }

    /// The covariance's Cholesky factor.
    pub fn cholesky(&self) -> &Cholesky {
        &self.cholesky
    }

    /// Reads what [`ClassScorer::save`] wrote.
    pub fn load(group: &hdf5::Group) -> Result<Self, AnomalyError> {
        let h5 = |e: hdf5::Error| AnomalyError::Invalid(e.to_string());
        let mean = read_vec(group, "mean").map_err(h5)?;
        let factor = group
            .dataset("cholesky")
            .and_then(|ds| ds.read_2d::<f64>())
            .map_err(h5)?;
        let d = mean.len();
        if factor.dim() != (d, d) {
            return Err(AnomalyError::Invalid(format!(
                "cholesky is {:?}, mean has {d} values",
                factor.dim()
            )));
        }
        let l = Mat::from_fn(d, d, |i, j| factor[[i, j]]);
        let cholesky =
            Cholesky::from_factor(l).map_err(|e| AnomalyError::Invalid(e.to_string()))?;
        Ok(Self {
            mean,
            cholesky,
            shrinkage: group
                .attr("shrinkage")
                .and_then(|a| a.read_scalar::<f64>())
                .map_err(h5)?,
            rows: group
                .attr("rows")
                .and_then(|a| a.read_scalar::<u64>())
                .map_err(h5)? as usize,
        })
    }
}

impl ClassScorer for Mahalanobis {
    fn score(&self, obs: &Observations<'_>) -> Result<Vec<f64>, AnomalyError> {
        let e = obs.embeddings;
        let (n, d) = e.dim();
        if d != self.mean.len() {
            return Err(AnomalyError::Invalid(format!(
                "embeddings of dimension {d}; the detector was fitted on {}",
                self.mean.len()
            )));
        }
        let centred = Mat::from_fn(n, d, |i, j| e[[i, j]] as f64 - self.mean[j]);
        Ok(self.cholesky.whitened_norms(&centred))
    }

    fn centre(&self) -> &[f64] {
        &self.mean
    }

    fn save(&self, group: &hdf5::Group) -> hdf5::Result<()> {
        write_vec(group, "mean", &self.mean)?;
        let l = self.cholesky.factor();
        let d = l.nrows();
        let factor = ndarray::Array2::from_shape_fn((d, d), |(i, j)| l[(i, j)]);
        group
            .new_dataset_builder()
            .with_data(&factor)
            .create("cholesky")?;
        group
            .new_attr::<f64>()
            .create("shrinkage")?
            .write_scalar(&self.shrinkage)?;
        group
            .new_attr::<u64>()
            .create("rows")?
            .write_scalar(&(self.rows as u64))
    }

    fn summary(&self) -> serde_json::Value {
        serde_json::json!({ "n_fit": self.rows, "shrinkage": self.shrinkage })
    }

    fn onnx_part(&self) -> OnnxPart {
        let w = self.cholesky.inverse_factor();
        let d = w.nrows();
        let transform = (0..d)
            .flat_map(|i| (0..d).map(move |j| (i, j)))
            .map(|(i, j)| w[(i, j)] as f32)
            .collect();
        OnnxPart::Whitened {
            mean: self.mean.iter().map(|&v| v as f32).collect(),
            transform: Some(transform),
        }
    }
}
