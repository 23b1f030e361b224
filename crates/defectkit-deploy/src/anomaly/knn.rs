//! k-nearest-neighbour distance: the mean Euclidean distance from an embedding to the k
//! nearest good embeddings of its class (k = 1: the nearest one). Makes no Gaussian
//! assumption; beware splits that photograph one object several times (ARCHITECTURE.md).

use ndarray::{Array2, ArrayView2};

use super::{column_means, AnomalyError, ClassScorer, Observations, OnnxPart};

/// A class's reference embeddings and k.
#[derive(Debug, Clone, PartialEq)]
pub struct Knn {
    references: Array2<f32>,
    k: usize,
    mean: Vec<f64>,
}

impl Knn {
    /// Keeps the class's good embeddings (N ≥ k ≥ 1).
    pub fn fit(rows: ArrayView2<'_, f32>, k: usize) -> Result<Self, AnomalyError> {
        if k == 0 {
            return Err(AnomalyError::Invalid("knn needs k ≥ 1".into()));
        }
        if rows.nrows() < k {
            return Err(AnomalyError::Invalid(format!(
                "knn with k = {k} needs at least {k} fit images, got {}",
                rows.nrows()
            )));
        }
        Ok(Self {
            references: rows.to_owned(),
            k,
            mean: column_means(rows),
        })
    }

    /// Reads what [`ClassScorer::save`] wrote.
    pub fn load(group: &hdf5::Group) -> Result<Self, AnomalyError> {
        let h5 = |e: hdf5::Error| AnomalyError::Invalid(e.to_string());
        let references = group
            .dataset("references")
            .and_then(|ds| ds.read_2d::<f32>())
            .map_err(h5)?;
        let k = group
            .attr("k")
            .and_then(|a| a.read_scalar::<u64>())
            .map_err(h5)? as usize;
        Self::fit(references.view(), k)
    }

    /// The k of this detector.
    pub fn k(&self) -> usize {
        self.k
    }
}

impl ClassScorer for Knn {
    fn score(&self, obs: &Observations<'_>) -> Result<Vec<f64>, AnomalyError> {
        let d = self.references.ncols();
        if obs.embeddings.ncols() != d {
            return Err(AnomalyError::Invalid(format!(
                "embeddings of dimension {}; the detector was fitted on {d}",
                obs.embeddings.ncols()
            )));
        }
        Ok(obs
            .embeddings
            .rows()
            .into_iter()
            .map(|z| {
                let mut dist: Vec<f64> = self
                    .references
                    .rows()
                    .into_iter()
                    .map(|r| {
                        z.iter()
                            .zip(r)
                            .map(|(a, b)| {
                                let t = *a as f64 - *b as f64;
                                t * t
                            })
                            .sum::<f64>()
                            .sqrt()
                    })
                    .collect();
                dist.select_nth_unstable_by(self.k - 1, f64::total_cmp);
                dist[..self.k].iter().sum::<f64>() / self.k as f64
            })
            .collect())
    }

    fn centre(&self) -> &[f64] {
        &self.mean
    }

    fn save(&self, group: &hdf5::Group) -> hdf5::Result<()> {
        group
            .new_dataset_builder()
            .with_data(&self.references)
            .create("references")?;
        group
            .new_attr::<u64>()
            .create("k")?
            .write_scalar(&(self.k as u64))
    }

    fn summary(&self) -> serde_json::Value {
        serde_json::json!({ "n_fit": self.references.nrows(), "k": self.k })
    }

    fn onnx_part(&self) -> OnnxPart {
        OnnxPart::Knn {
            references: self.references.iter().copied().collect(),
            k: self.k,
        }
    }
}
