//! Anomaly detectors on embeddings (ARCHITECTURE.md, "adding a detector"). Each detector is
//! fitted per class on the good images of one split and scores images of that class; the
//! [`Detector`] holds one fitted [`ClassScorer`] per class plus the per-class thresholds,
//! and saves itself as `detector.json` (self-describing) + `detector.h5` (the arrays).
//!
//! | method | score of an embedding z of class c | file |
//! | --- | --- | --- |
//! | `mahalanobis` | sqrt((z−μ_c)ᵀ Σ_c⁻¹ (z−μ_c)), by a Cholesky solve | [`mahalanobis`] |
//! | `euclidean` | ‖z − μ_c‖ | [`euclidean`] |
//! | `knn` | mean distance to the k nearest fit embeddings of c | [`knn`] |
//! | `recon` | the autoencoder's reconstruction error (mean or local) | [`recon`] |
//! | `padim` | max over the smoothed map of per-location Mahalanobis distances | [`patch`] |
//! | `patchcore` | max over the smoothed map of nearest-coreset-patch distances | [`patch`] |
//!
//! The one decision rule everywhere: an image is anomalous when score ≥ threshold.

pub mod bundle;
pub mod detector;
pub mod euclidean;
pub mod evaluate;
pub mod knn;
pub mod mahalanobis;
pub mod patch;
pub mod pixel;
pub mod recon;
pub mod threshold;

use ndarray::{ArrayView2, ArrayView4};

pub(crate) use crate::stats::column_means;

pub use detector::{ClassEntry, Detector, DetectorFile};
pub use evaluate::{evaluate, ClassMetrics, DetectionMetrics};

use crate::stats::StatsError;

/// A detection method (the `detector.method` config key).
pub use defectkit_core::config::detector::DetectorMethod as Method;

/// What a scorer reads for a batch of images of one class: their embeddings and, for
/// autoencoders, their reconstruction errors.
#[derive(Debug, Clone, Copy)]
pub struct Observations<'a> {
    /// N×d embeddings.
    pub embeddings: ArrayView2<'a, f32>,
    /// Per-image mean squared reconstruction error (autoencoders).
    pub recon_error: Option<&'a [f32]>,
    /// Per-image local reconstruction error (max of the pooled error map).
    pub recon_local: Option<&'a [f32]>,
    /// N×C×h×w feature maps (the model's `features` output, `embed --maps`): what the patch
    /// detectors read.
    pub maps: Option<ArrayView4<'a, f32>>,
}

/// A scorer's parameters in the form the scored ONNX graph needs.
#[derive(Debug, Clone, PartialEq)]
pub enum OnnxPart {
    /// score = ‖W (z − mean)‖; `transform` None = identity.
    Whitened {
        /// μ_c.
        mean: Vec<f32>,
        /// W_c = L_c⁻¹ (row-major d×d).
        transform: Option<Vec<f32>>,
    },
    /// k-NN over these reference rows (row-major N×d).
    Knn {
        /// The fit embeddings.
        references: Vec<f32>,
        /// Neighbours averaged.
        k: usize,
    },
    /// The reconstruction error; no per-class parameters.
    Recon,
    /// A detector the scored graph cannot express (the patch detectors); why.
    Unsupported(String),
}

/// Per-image anomaly maps (side × side, row-major) and the images' scores.
pub type MapsAndScores = (Vec<Vec<f32>>, Vec<f64>);

/// One class's fitted detector.
pub trait ClassScorer: std::fmt::Debug + Send + Sync {
    /// Scores each image (row) of `obs`.
    fn score(&self, obs: &Observations<'_>) -> Result<Vec<f64>, AnomalyError>;
    /// The class's mean embedding (assigns classes in `score --class auto`).
    fn centre(&self) -> &[f64];
    /// Writes the arrays into `group` of `detector.h5`.
    fn save(&self, group: &hdf5::Group) -> hdf5::Result<()>;
    /// Small numbers for `detector.json` (e.g. the shrinkage applied).
    fn summary(&self) -> serde_json::Value;
    /// The parameters for the scored ONNX graph.
    fn onnx_part(&self) -> OnnxPart;
    /// Per-image anomaly maps at the model input's resolution (side × side, row-major),
    /// whose maximum is the image's score (PatchCore with `reweight`: the score is that
    /// maximum times the image's reweighting factor); `None` for detectors that score whole
    /// images.
    fn anomaly_maps(&self, _obs: &Observations<'_>) -> Option<Result<Vec<Vec<f32>>, AnomalyError>> {
        None
    }
    /// Both [`ClassScorer::anomaly_maps`] and [`ClassScorer::score`] from one pass (patch
    /// detectors compute the scores from the maps); `None` for image-level detectors.
    fn maps_and_scores(
        &self,
        obs: &Observations<'_>,
    ) -> Option<Result<MapsAndScores, AnomalyError>> {
        self.anomaly_maps(obs).map(|maps| {
            let maps = maps?;
            let scores = self.score(obs)?;
            Ok((maps, scores))
        })
    }
    /// Bytes its statistics take in memory (reported per class).
    fn memory_bytes(&self) -> usize {
        0
    }
}

/// Why fitting, scoring or saving a detector failed.
#[derive(Debug, thiserror::Error)]
pub enum AnomalyError {
    /// A statistic could not be computed for a class.
    #[error("class {class:?}: {source}")]
    Stats {
        /// The class.
        class: String,
        /// What failed.
        source: StatsError,
    },
    /// The embeddings do not support this detector or these options.
    #[error("{0}")]
    Invalid(String),
    /// The embedding store could not be read.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// `detector.json` / `detector.h5` could not be read or written.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A detector scored an image NaN or infinite (its embedding, or the detector's
    /// statistics, are not finite): stopped rather than thresholding or ranking nonsense.
    #[error(
        "the {method} detector scored {path}{} {value}; its embedding or the \
         detector's statistics are not finite, so nothing was written (re-embed with a \
         healthy model, or refit the detector)",
        split.as_ref().map(|s| format!(" (split {s})")).unwrap_or_default()
    )]
    NonFinite {
        /// The detector.
        method: String,
        /// The split the image is in, where known.
        split: Option<String>,
        /// The first image whose score is not finite.
        path: String,
        /// Its score.
        value: f64,
    },
    /// Stopped by Ctrl-C between two classes or two jobs ([`defectkit_core::interrupt`]).
    #[error("interrupted; nothing was written")]
    Interrupted,
}

/// The first non-finite value of `scores` as [`AnomalyError::NonFinite`], naming the image
/// `paths[index[i]]` (`index` maps scores to rows; `None`: the identity).
pub(crate) fn check_finite(
    scores: &[f64],
    paths: &[String],
    index: Option<&[usize]>,
    method: &str,
    split: Option<&str>,
) -> Result<(), AnomalyError> {
    match scores.iter().position(|s| !s.is_finite()) {
        None => Ok(()),
        Some(i) => {
            let row = index.map_or(i, |ix| ix[i]);
            Err(AnomalyError::NonFinite {
                method: method.to_string(),
                split: split.map(str::to_string),
                path: paths
                    .get(row)
                    .cloned()
                    .unwrap_or_else(|| format!("row {row}")),
                value: scores[i],
            })
        }
    }
}

/// Euclidean distance between an embedding `a` and a mean `b`, in f64.
pub fn distance(a: &[f32], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, m)| {
            let d = *x as f64 - m;
            d * d
        })
        .sum::<f64>()
        .sqrt()
}

/// Reads a 1-D f64 dataset `name` of `group`.
pub(crate) fn read_vec(group: &hdf5::Group, name: &str) -> hdf5::Result<Vec<f64>> {
    Ok(group.dataset(name)?.read_1d::<f64>()?.to_vec())
}

/// Writes a class's mean embedding and the number of images it was fitted on.
pub(crate) fn write_mean_and_rows(
    group: &hdf5::Group,
    mean: &[f64],
    rows: usize,
) -> hdf5::Result<()> {
    write_vec(group, "mean", mean)?;
    group
        .new_attr::<u64>()
        .create("rows")?
        .write_scalar(&(rows as u64))
}

/// Reads what [`write_mean_and_rows`] wrote.
pub(crate) fn read_mean_and_rows(group: &hdf5::Group) -> hdf5::Result<(Vec<f64>, usize)> {
    Ok((
        read_vec(group, "mean")?,
        group.attr("rows")?.read_scalar::<u64>()? as usize,
    ))
}

/// Writes a 1-D f64 dataset.
pub(crate) fn write_vec(group: &hdf5::Group, name: &str, values: &[f64]) -> hdf5::Result<()> {
    group
        .new_dataset_builder()
        .with_data(&ndarray::Array1::from(values.to_vec()))
        .create(name)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_non_finite_score_is_named_by_its_image() {
        let paths: Vec<String> = (0..5).map(|i| format!("img{i}.png")).collect();
        assert!(check_finite(&[0.5, 1.0], &paths, Some(&[1, 3]), "knn", None).is_ok());
        // Scores of rows 4 and 2 (in that order): the first bad one is row 2's.
        let err =
            check_finite(&[1.0, f64::NAN], &paths, Some(&[4, 2]), "knn", Some("val")).unwrap_err();
        let AnomalyError::NonFinite {
            path, split, value, ..
        } = &err
        else {
            panic!("{err:?}")
        };
        assert_eq!((path.as_str(), split.as_deref()), ("img2.png", Some("val")));
        assert!(value.is_nan());
        assert!(
            err.to_string().contains("img2.png (split val) NaN"),
            "{err}"
        );
        let err = check_finite(&[f64::INFINITY], &paths, None, "recon", None).unwrap_err();
        assert!(err.to_string().contains("scored img0.png inf"), "{err}");
    }
}
