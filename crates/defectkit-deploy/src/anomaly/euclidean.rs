//! Euclidean distance to the class mean: the simplest embedding detector, and the baseline
//! Mahalanobis has to beat.

use ndarray::ArrayView2;

use super::{
    column_means, distance, read_mean_and_rows, write_mean_and_rows, AnomalyError, ClassScorer,
};
use super::{Observations, OnnxPart};

/// A class's mean embedding.
#[derive(Debug, Clone, PartialEq)]
pub struct Euclidean {
    mean: Vec<f64>,
    rows: usize,
}

impl Euclidean {
    /// Fits on the class's good embeddings (N ≥ 1).
    pub fn fit(rows: ArrayView2<'_, f32>) -> Result<Self, AnomalyError> {
        if rows.nrows() == 0 {
            return Err(AnomalyError::Invalid("no embeddings to fit".into()));
        }
        Ok(Self {
            mean: column_means(rows),
            rows: rows.nrows(),
        })
    }

    /// Reads what [`ClassScorer::save`] wrote.
    pub fn load(group: &hdf5::Group) -> hdf5::Result<Self> {
        let (mean, rows) = read_mean_and_rows(group)?;
        Ok(Self { mean, rows })
    }
}

impl ClassScorer for Euclidean {
    fn score(&self, obs: &Observations<'_>) -> Result<Vec<f64>, AnomalyError> {
        if obs.embeddings.ncols() != self.mean.len() {
            return Err(AnomalyError::Invalid(format!(
                "embeddings of dimension {}; the detector was fitted on {}",
                obs.embeddings.ncols(),
                self.mean.len()
            )));
        }
        Ok(obs
            .embeddings
            .rows()
            .into_iter()
            .map(|z| distance(&z.to_vec(), &self.mean))
            .collect())
    }

    fn centre(&self) -> &[f64] {
        &self.mean
    }

    fn save(&self, group: &hdf5::Group) -> hdf5::Result<()> {
        write_mean_and_rows(group, &self.mean, self.rows)
    }

    fn summary(&self) -> serde_json::Value {
        serde_json::json!({ "n_fit": self.rows })
    }

    fn onnx_part(&self) -> OnnxPart {
        OnnxPart::Whitened {
            mean: self.mean.iter().map(|&v| v as f32).collect(),
            transform: None,
        }
    }
}
