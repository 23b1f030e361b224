//! Euclidean distance to the class mean: the simplest embedding detector, and the baseline
//! Mahalanobis has to beat.

use ndarray::ArrayView2;

use super::{column_means, distance, read_vec, write_vec, AnomalyError, ClassScorer};
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
        Ok(Self {
            mean: read_vec(group, "mean")?,
            rows: group.attr("rows")?.read_scalar::<u64>()? as usize,
        })
    }
}

impl ClassScorer for Euclidean {
    fn score(&self, obs: &Observations<'_>) -> Result<Vec<f64>, AnomalyError> {
        Ok(obs
            .embeddings
            .rows()
            .into_iter()
            .map(|z| distance(z.as_slice().expect("standard layout"), &self.mean))
            .collect())
    }

    fn centre(&self) -> &[f64] {
        &self.mean
    }

    fn save(&self, group: &hdf5::Group) -> hdf5::Result<()> {
        write_vec(group, "mean", &self.mean)?;
        group
            .new_attr::<u64>()
            .create("rows")?
            .write_scalar(&(self.rows as u64))
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
