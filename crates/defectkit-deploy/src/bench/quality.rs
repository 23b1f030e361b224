//! Detection quality of one variant (CPU): embed the data set's splits with it, refit the
//! configured detector on those embeddings, evaluate on the test split; and how far an int8
//! variant's scores and embeddings are from the FP32 one's.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use serde::Serialize;

use defectkit_core::config::schema::DataConfig;
use defectkit_core::config::DetectorConfig;
use defectkit_core::data::mvtec::Split;

use crate::detect::{fit_and_evaluate, open_store};
use crate::embed::{embed, sha256_file, EmbedError, EmbedOptions};
use crate::runtime::RuntimeOptions;
use crate::store::{EmbeddingStore, SplitRecords};

use super::BenchError;

/// A variant's quality and what the comparison needs.
#[derive(Debug, Clone)]
pub struct VariantQuality {
    /// Mean image AUROC over classes.
    pub auroc: Option<f64>,
    /// Mean F1 at the deployable (validation-percentile) thresholds.
    pub f1: f64,
    /// Test image path → anomaly score.
    pub scores: HashMap<String, f64>,
    /// Test split embeddings, in path order of `paths`.
    pub embeddings: Vec<f32>,
    /// Embedding length.
    pub dim: usize,
    /// Test image paths.
    pub paths: Vec<String>,
    /// The embeddings file.
    pub store: PathBuf,
    /// The detector's warnings.
    pub warnings: Vec<String>,
}

/// How one variant's outputs compare with a reference variant's on the test split.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Agreement {
    /// Spearman rank correlation of the test anomaly scores.
    pub spearman: Option<f64>,
    /// Largest |Δ| of any embedding value.
    pub max_abs_diff: f64,
    /// Mean cosine similarity of the embeddings, row by row.
    pub mean_cosine: f64,
    /// Images compared.
    pub images: usize,
}

/// Embeds with `model` into `store_path` (reused when it already holds this model's
/// embeddings with the same split), refits `detector` and evaluates it.
#[allow(clippy::too_many_arguments)]
pub fn variant_quality(
    model: &Path,
    store_path: &Path,
    data: &DataConfig,
    root: Option<&Path>,
    detector: &DetectorConfig,
    runtime: &RuntimeOptions,
    progress: bool,
    cancel: &AtomicBool,
) -> Result<VariantQuality, BenchError> {
    if !reusable(store_path, model, data) {
        let opts = EmbedOptions {
            model: model.to_path_buf(),
            root: root.map(Path::to_path_buf),
            out: store_path.to_path_buf(),
            runtime: RuntimeOptions {
                ep: crate::runtime::ExecutionProvider::Cpu,
                ..runtime.clone()
            },
            batch_size: 32,
            splits: vec![Split::Train, Split::Val, Split::Test],
            progress,
            recon_pool: detector.pool,
            maps: None,
        };
        embed(data, &opts, cancel).map_err(|e| match e {
            EmbedError::Interrupted => BenchError::Interrupted,
            e => BenchError::Embed {
                model: model.to_path_buf(),
                source: e,
            },
        })?;
    }
    let detect_err = |e| BenchError::Detect {
        embeddings: store_path.to_path_buf(),
        source: e,
    };
    let store = open_store(store_path).map_err(detect_err)?;
    let eval = fit_and_evaluate(&store, store_path, detector).map_err(detect_err)?;
    let test = store
        .split("test")
        .map_err(|e| detect_err(crate::anomaly::AnomalyError::Invalid(e)))?;
    let scores = eval
        .test_paths
        .iter()
        .cloned()
        .zip(eval.test.iter().map(|t| t.score))
        .collect();
    Ok(VariantQuality {
        auroc: eval.metrics.mean.auroc,
        f1: eval.metrics.mean.f1,
        scores,
        embeddings: test.embeddings.clone(),
        dim: test.dim,
        paths: test.path.clone(),
        store: store_path.to_path_buf(),
        warnings: eval.warnings,
    })
}

/// A store already at `path` made by this exact model file with the configured split.
fn reusable(path: &Path, model: &Path, data: &DataConfig) -> bool {
    let Ok(store) = EmbeddingStore::open(path) else {
        return false;
    };
    let Ok(sha) = sha256_file(model) else {
        return false;
    };
    let split_ok =
        store.attributes.split.as_ref().is_some_and(|s| {
            s.val_fraction == data.val_fraction && s.split_seed == data.split_seed
        });
    let all: Vec<&SplitRecords> = ["train", "val", "test"]
        .iter()
        .filter_map(|s| store.split(s).ok())
        .collect();
    store.attributes.model_sha256 == sha && split_ok && all.len() == 3
}

/// How `other` agrees with `reference` on the test images both embedded (matched by path).
pub fn agreement(reference: &VariantQuality, other: &VariantQuality) -> Agreement {
    let index: HashMap<&str, usize> = other
        .paths
        .iter()
        .enumerate()
        .map(|(i, p)| (p.as_str(), i))
        .collect();
    let (mut max_abs, mut cos_sum, mut n) = (0.0f64, 0.0f64, 0usize);
    let (mut a_scores, mut b_scores) = (Vec::new(), Vec::new());
    let d = reference.dim;
    for (i, path) in reference.paths.iter().enumerate() {
        let Some(&j) = index.get(path.as_str()) else {
            continue;
        };
        if other.dim != d {
            break;
        }
        let a = &reference.embeddings[i * d..(i + 1) * d];
        let b = &other.embeddings[j * d..(j + 1) * d];
        for (x, y) in a.iter().zip(b) {
            max_abs = max_abs.max((*x as f64 - *y as f64).abs());
        }
        cos_sum += cosine(a, b);
        n += 1;
        if let (Some(sa), Some(sb)) = (reference.scores.get(path), other.scores.get(path)) {
            a_scores.push(*sa);
            b_scores.push(*sb);
        }
    }
    Agreement {
        spearman: spearman(&a_scores, &b_scores),
        max_abs_diff: max_abs,
        mean_cosine: if n > 0 { cos_sum / n as f64 } else { f64::NAN },
        images: n,
    }
}

/// Cosine similarity (1 when both are zero, 0 when one is).
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (*x as f64, *y as f64);
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    match (aa > 0.0, bb > 0.0) {
        (true, true) => ab / (aa.sqrt() * bb.sqrt()),
        (false, false) => 1.0,
        _ => 0.0,
    }
}

pub use defectkit_core::metrics::{average_ranks, spearman};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_average_ties() {
        assert_eq!(
            average_ranks(&[10.0, 20.0, 10.0, 5.0]),
            [2.5, 4.0, 2.5, 1.0]
        );
    }

    #[test]
    fn spearman_matches_known_values() {
        let a = [1.0, 2.0, 3.0, 4.0, 5.0];
        // scipy.stats.spearmanr([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]).statistic
        let r = spearman(&a, &[5.0, 6.0, 7.0, 8.0, 7.0]).unwrap();
        assert!((r - 0.8207826816681233).abs() < 1e-12, "{r}");
        let r = spearman(&a, &[5.0, 4.0, 3.0, 2.0, 1.0]).unwrap();
        assert!((r + 1.0).abs() < 1e-12);
        assert_eq!(spearman(&a, &[1.0; 5]), None);
        assert_eq!(spearman(&a[..1], &a[..1]), None);
    }

    #[test]
    fn cosine_edges() {
        assert!((cosine(&[1.0, 0.0], &[2.0, 0.0]) - 1.0).abs() < 1e-12);
        assert_eq!(cosine(&[0.0], &[0.0]), 1.0);
        assert_eq!(cosine(&[0.0], &[1.0]), 0.0);
    }
}
