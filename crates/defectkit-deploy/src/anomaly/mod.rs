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
