//! `--top N`: which exported models to benchmark, chosen on validation-side evidence only.
//!
//! What is recorded cannot rank the models honestly: the training runs' `summary.json` best
//! validation metric is a different loss per model kind (cross-entropy for A, B and the
//! teacher, reconstruction MSE for C), and the validation split holds good images only, so
//! `detect` records thresholds but no validation AUROC. So the evidence is computed here from
//! each model's `embeddings.h5`, from its **train and val splits only** (the test split is
//! never opened): the configured detector is fitted per class on train good images (as
//! `detect` fits it), and each class's detector scores *all* validation images, those of its
//! own class as normal and those of the other classes as stand-in anomalies.
//!
//! - primary: the mean over classes of that out-of-class validation AUROC (higher first);
//! - tie-break: the mean over classes of median(own-class val score) / median(other-class val
//!   score) (lower first: normal images sit tighter relative to foreign ones). On the
//!   synthetic set every classifier reaches AUROC 1.0 and the ratio decides.
//!
//! It is a proxy (class novelty, not defects) and says so in the report.

use std::path::{Path, PathBuf};

use serde::Serialize;

use defectkit_core::config::DetectorConfig;
use defectkit_core::metrics::{auroc, percentile};

use crate::anomaly::{AnomalyError, Detector};
use crate::detect::open_store;

use super::BenchError;

/// The embeddings file `--top` reads in each model dir.
pub const EVIDENCE_FILE: &str = "embeddings.h5";

/// One candidate's validation-side evidence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopCandidate {
    /// The model dir.
    pub dir: PathBuf,
    /// Mean over classes of the out-of-class validation AUROC.
    pub val_out_of_class_auroc: f64,
    /// Mean over classes of median(own-class val score) / median(other-class val score).
    pub val_median_ratio: f64,
    /// Validation images scored.
    pub val_images: usize,
    /// Its rank (1 = best).
    pub rank: usize,
}

/// The ranking of every candidate that had evidence, and the dirs that had none.
#[derive(Debug, Clone, Serialize)]
pub struct TopSelection {
    /// Candidates, best first.
    pub ranked: Vec<TopCandidate>,
    /// The first `n` of them.
    pub picked: Vec<PathBuf>,
    /// Dirs left out for lack of evidence, with the reason.
    pub excluded: Vec<(PathBuf, String)>,
    /// The detector method the evidence was computed with.
    pub method: String,
}

/// Ranks `dirs` by validation-side evidence ([module docs](self)) and picks the best `n`.
pub fn select_top(
    dirs: &[PathBuf],
    n: usize,
    detector: &DetectorConfig,
) -> Result<TopSelection, BenchError> {
    let mut ranked = Vec::new();
    let mut excluded = Vec::new();
    for dir in dirs {
        let path = dir.join(EVIDENCE_FILE);
        if !path.is_file() {
            excluded.push((
                dir.clone(),
                format!("no {EVIDENCE_FILE} (run `defectkit embed` first)"),
            ));
            continue;
        }
        match evidence(dir, &path, detector) {
            Ok(c) => ranked.push(c),
            Err(e) => excluded.push((dir.clone(), e.to_string())),
        }
    }
    if ranked.is_empty() {
        return Err(BenchError::Selection(format!(
            "--top: no model dir had validation evidence: {}",
            excluded
                .iter()
                .map(|(d, why)| format!("{}: {why}", d.display()))
                .collect::<Vec<_>>()
                .join("; ")
        )));
    }
    ranked.sort_by(|a, b| {
        b.val_out_of_class_auroc
            .total_cmp(&a.val_out_of_class_auroc)
            .then(a.val_median_ratio.total_cmp(&b.val_median_ratio))
    });
    for (i, c) in ranked.iter_mut().enumerate() {
        c.rank = i + 1;
    }
    let picked = ranked.iter().take(n).map(|c| c.dir.clone()).collect();
    Ok(TopSelection {
        ranked,
        picked,
        excluded,
        method: detector.method.as_str().to_string(),
    })
}

fn evidence(
    dir: &Path,
    path: &Path,
    detector: &DetectorConfig,
) -> Result<TopCandidate, AnomalyError> {
    let store = open_store(path)?;
    let (fitted, _) = Detector::fit(&store, path, detector)?;
    let val = store
        .split(&detector.threshold_split)
        .map_err(|e| AnomalyError::Invalid(format!("{}: {e}", path.display())))?;
    let (mut aurocs, mut ratios) = (Vec::new(), Vec::new());
    for class in fitted.classes() {
        let mut as_class = crate::detect::subset_records(val, &(0..val.len()).collect::<Vec<_>>());
        as_class.class = vec![class.to_string(); val.len()];
        let scores = fitted.score_split(&as_class)?;
        let foreign: Vec<bool> = val.class.iter().map(|c| c != class).collect();
        let own: Vec<f64> = scores
            .iter()
            .zip(&foreign)
            .filter(|(_, f)| !**f)
            .map(|(s, _)| *s)
            .collect();
        let other: Vec<f64> = scores
            .iter()
            .zip(&foreign)
            .filter(|(_, f)| **f)
            .map(|(s, _)| *s)
            .collect();
        if let Some(a) = auroc(&scores, &foreign) {
            aurocs.push(a);
        }
        if let (Some(o), Some(f)) = (percentile(&own, 50.0), percentile(&other, 50.0)) {
            if f > 0.0 {
                ratios.push(o / f);
            }
        }
    }
    if aurocs.is_empty() {
        return Err(AnomalyError::Invalid(format!(
            "{}: the {} split needs images of at least two classes",
            path.display(),
            detector.threshold_split
        )));
    }
    let mean = |v: &[f64]| {
        if v.is_empty() {
            f64::NAN
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    };
    Ok(TopCandidate {
        dir: dir.to_path_buf(),
        val_out_of_class_auroc: mean(&aurocs),
        val_median_ratio: mean(&ratios),
        val_images: val.len(),
        rank: 0,
    })
}
