//! The accuracy-aware mode (`--max-drop`): quantize everything, measure how far the int8
//! model moves a fitted detector's anomaly scores on *validation* good images, and return the
//! layers that move them most to FP32, one at a time, until the drift is within bounds.
//!
//! No test label is used to decide anything: the drift is measured on the detector's own
//! threshold split (good images, the detector's statistics). The test AUROC of the FP32 and
//! the final int8 model is computed after the fact, for the report only.
//!
//! Scores are measured in units of their class's threshold (`s / t_class`, 1 = on the
//! threshold), so that classes compare and a change reads as "how close to flipping a
//! verdict". Drift between FP32 scores `s` and int8 scores `s'` on the same images:
//! - rank drop `1 − ρ`, Spearman's ρ of `s` and `s'` (does int8 keep the order?);
//! - max deviation `max |s' − s|` (did any score move by more than that share of its
//!   threshold?).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use defectkit_core::data::mvtec::{Sample, Split};
use defectkit_core::onnx::ModelMetadata;

use super::QuantizeError;
use crate::anomaly::detector::Detector;
use crate::pipeline::{run_batches, PipelineError, PipelineOptions};
use crate::runtime::{OnnxModel, RuntimeOptions};
use crate::store::SplitRecords;

/// The bounds the final model must meet.
#[derive(Debug, Clone, PartialEq)]
pub struct AccuracyOptions {
    /// A detector fitted on the FP32 model's embeddings (`detect`'s `detector.json`).
    pub detector: PathBuf,
    /// Largest allowed rank drop `1 − ρ` of validation scores.
    pub max_drop: f64,
    /// Largest allowed change of any validation score, as a share of its class threshold.
    pub max_deviation: f64,
}

/// How far int8 scores are from FP32 scores.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Drift {
    /// `1 − ρ` (Spearman); 1 when ρ is undefined.
    pub rank_drop: f64,
    /// `max |s' − s|` of threshold-normalised scores.
    pub max_deviation: f64,
}

impl Drift {
    /// The drift of `candidate` from `reference` (the same images, in order).
    pub fn between(reference: &[f64], candidate: &[f64]) -> Self {
        let rho = defectkit_core::metrics::spearman(reference, candidate).unwrap_or(0.0);
        let max_deviation = reference
            .iter()
            .zip(candidate)
            .map(|(s, t)| (t - s).abs())
            .fold(0.0, f64::max);
        Self {
            rank_drop: 1.0 - rho,
            max_deviation,
        }
    }

    /// Whether it is within `opts`' bounds.
    pub fn within(&self, opts: &AccuracyOptions) -> bool {
        self.rank_drop <= opts.max_drop && self.max_deviation <= opts.max_deviation
    }
}

/// One layer quantized alone, everything else FP32.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Sensitivity {
    /// The node.
    pub node: String,
    /// Its op.
    pub op: String,
    /// The drift with only this node quantized.
    pub drift: Drift,
}

/// What the accuracy-aware search did.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AccuracyReport {
    /// The detector whose scores were compared.
    pub detector: String,
    /// Validation images scored.
    pub images: usize,
    /// The bounds.
    pub max_drop: f64,
    /// The bounds.
    pub max_deviation: f64,
    /// Drift with every node quantized.
    pub all_int8: Drift,
    /// Per layer, most sensitive first.
    pub sensitivity: Vec<Sensitivity>,
    /// Layers returned to FP32, in order, with the drift after each.
    pub kept_float: Vec<(String, Drift)>,
    /// Drift of the final model.
    pub final_drift: Drift,
    /// Whether the final model meets the bounds.
    pub met: bool,
    /// Mean test image AUROC over classes of the FP32 model (reported after the fact).
    pub test_auroc_fp32: Option<f64>,
    /// The same for the all-int8 model.
    pub test_auroc_all_int8: Option<f64>,
    /// The same for the final int8 model.
    pub test_auroc_int8: Option<f64>,
}

/// Runs images through candidate graphs and scores them with the detector.
pub struct Evaluator<'a> {
    detector: Detector,
    val: Vec<Sample>,
    test: Vec<Sample>,
    meta: &'a ModelMetadata,
    runtime: &'a RuntimeOptions,
    batch_size: usize,
    strict: bool,
    cancel: &'a AtomicBool,
}

impl std::fmt::Debug for Evaluator<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Evaluator")
            .field("val", &self.val.len())
            .field("test", &self.test.len())
            .finish()
    }
}

impl<'a> Evaluator<'a> {
    /// Loads the detector; `samples` are the data set's (validation = the detector's threshold
    /// split, good images only).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        detector: &Path,
        samples: &[Sample],
        meta: &'a ModelMetadata,
        runtime: &'a RuntimeOptions,
        batch_size: usize,
        strict: bool,
        cancel: &'a AtomicBool,
    ) -> Result<Self, QuantizeError> {
        let detector = Detector::load(detector)
            .map_err(|e| QuantizeError::Calibration(format!("accuracy-aware mode: {e}")))?;
        if detector.file.method.is_patch() {
            return Err(QuantizeError::Calibration(format!(
                "accuracy-aware mode: --detector is a {} (patch-level) detector; the drift is \
                 measured on embedding scores: fit an image-level detector (mahalanobis, \
                 euclidean, knn or recon) for --max-drop",
                detector.file.method
            )));
        }
        let threshold_split = detector.file.config.threshold_split.clone();
        let known: HashSet<&str> = detector.classes().collect();
        let split_of = |name: &str| match name {
            "train" => Some(Split::Train),
            "val" => Some(Split::Val),
            _ => None,
        };
        let split = split_of(&threshold_split).ok_or_else(|| {
            QuantizeError::Calibration(format!(
                "accuracy-aware mode: the detector thresholds on {threshold_split:?}; drift is \
                 measured on its good validation images, never on test"
            ))
        })?;
        let val: Vec<Sample> = samples
            .iter()
            .filter(|s| s.split == split && s.is_good() && known.contains(s.class.as_str()))
            .cloned()
            .collect();
        let test: Vec<Sample> = samples
            .iter()
            .filter(|s| s.split == Split::Test && known.contains(s.class.as_str()))
            .cloned()
            .collect();
        if val.len() < 3 {
            return Err(QuantizeError::Calibration(format!(
                "accuracy-aware mode: only {} good {threshold_split} images to measure drift on",
                val.len()
            )));
        }
        Ok(Self {
            detector,
            val,
            test,
            meta,
            runtime,
            batch_size,
            strict,
            cancel,
        })
    }

    /// Validation images scored per candidate.
    pub fn images(&self) -> usize {
        self.val.len()
    }

    /// The detector file's path for reports.
    pub fn detector_name(&self) -> String {
        self.detector.file.method.to_string()
    }

    fn records(&self, bytes: &[u8], samples: &[Sample]) -> Result<SplitRecords, QuantizeError> {
        let name = Path::new("<candidate>");
        let mut model = OnnxModel::from_bytes(bytes, name, self.runtime)?;
        let recon = self.meta.kind.is_autoencoder();
        let pool = self.detector.file.config.pool;
        let shape = self.meta.input_shape;
        let mut records = SplitRecords::new(self.meta.embedding_dim, recon);
        let opts = PipelineOptions {
            batch_size: self.batch_size,
            strict: self.strict,
            warn_skipped: false,
        };
        let bar = indicatif::ProgressBar::hidden();
        let result = run_batches(&mut model, samples, opts, self.cancel, &bar, |b| {
            crate::embed::append_batch(&mut records, &b, shape, pool)
        });
        match result {
            Ok(_) => Ok(records),
            Err(PipelineError::Interrupted) => Err(QuantizeError::Interrupted),
            Err(PipelineError::Runtime(e)) => Err(e.into()),
            Err(PipelineError::Data(e)) => Err(e.into()),
        }
    }

    /// The detector's scores of the validation images under the graph `bytes`, each divided
    /// by its class's threshold.
    pub fn val_scores(&self, bytes: &[u8]) -> Result<Vec<f64>, QuantizeError> {
        let records = self.records(bytes, &self.val)?;
        let scores = self
            .detector
            .score_split(&records)
            .map_err(|e| QuantizeError::Calibration(format!("scoring validation images: {e}")))?;
        let thresholds = self.detector.thresholds();
        Ok(scores
            .iter()
            .zip(&records.class)
            .map(|(s, c)| s / thresholds[c].abs().max(1e-12))
            .collect())
    }

    /// Mean test image AUROC over classes under the graph `bytes` (None without test images
    /// of both labels).
    pub fn test_auroc(&self, bytes: &[u8]) -> Result<Option<f64>, QuantizeError> {
        if self.test.is_empty() {
            return Ok(None);
        }
        let records = self.records(bytes, &self.test)?;
        let scores = self
            .detector
            .score_split(&records)
            .map_err(|e| QuantizeError::Calibration(format!("scoring test images: {e}")))?;
        let mut classes: Vec<&String> = records.class.iter().collect();
        classes.sort();
        classes.dedup();
        let mut aurocs = Vec::new();
        for class in classes {
            let (s, l): (Vec<f64>, Vec<bool>) = scores
                .iter()
                .zip(&records.label)
                .zip(&records.class)
                .filter(|(_, c)| *c == class)
                .map(|((s, l), _)| (*s, *l == 1))
                .unzip();
            if let Some(a) = defectkit_core::metrics::auroc(&s, &l) {
                aurocs.push(a);
            }
        }
        Ok((!aurocs.is_empty()).then(|| aurocs.iter().sum::<f64>() / aurocs.len() as f64))
    }
}

/// A candidate graph builder: the QDQ model's bytes with the named nodes left in FP32.
pub type Build<'b> = dyn Fn(&HashSet<String>) -> Result<Vec<u8>, QuantizeError> + 'b;

/// The search: all-int8 first; if its drift is out of bounds, rank `layers` (`(name, op)`)
/// by the drift each causes quantized alone (every other node of `all_nodes` FP32), then
/// return the most sensitive to FP32 one at a time until the drift is within bounds (or
/// every layer is FP32). Returns the nodes to keep in FP32 and the report.
pub fn search(
    eval: &Evaluator<'_>,
    opts: &AccuracyOptions,
    build: &Build<'_>,
    fp32: &[u8],
    layers: &[(String, String)],
    all_nodes: &[String],
    progress: &indicatif::ProgressBar,
) -> Result<(HashSet<String>, AccuracyReport), QuantizeError> {
    let reference = eval.val_scores(fp32)?;
    let all_bytes = build(&HashSet::new())?;
    let all_int8 = Drift::between(&reference, &eval.val_scores(&all_bytes)?);
    let mut report = AccuracyReport {
        detector: eval.detector_name(),
        images: eval.images(),
        max_drop: opts.max_drop,
        max_deviation: opts.max_deviation,
        all_int8,
        sensitivity: Vec::new(),
        kept_float: Vec::new(),
        final_drift: all_int8,
        met: all_int8.within(opts),
        test_auroc_fp32: None,
        test_auroc_all_int8: None,
        test_auroc_int8: None,
    };
    let mut keep = HashSet::new();
    let mut final_bytes = None;
    if !report.met {
        progress.set_length(layers.len() as u64);
        progress.set_message("layer sensitivity");
        for (node, op) in layers {
            let others: HashSet<String> =
                all_nodes.iter().filter(|n| *n != node).cloned().collect();
            let drift = Drift::between(&reference, &eval.val_scores(&build(&others)?)?);
            report.sensitivity.push(Sensitivity {
                node: node.clone(),
                op: op.clone(),
                drift,
            });
            progress.inc(1);
        }
        report.sensitivity.sort_by(|a, b| {
            (b.drift.rank_drop, b.drift.max_deviation)
                .partial_cmp(&(a.drift.rank_drop, a.drift.max_deviation))
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        progress.set_message("returning layers to FP32");
        for s in report.sensitivity.clone() {
            keep.insert(s.node.clone());
            let bytes = build(&keep)?;
            let drift = Drift::between(&reference, &eval.val_scores(&bytes)?);
            report.kept_float.push((s.node.clone(), drift));
            report.final_drift = drift;
            final_bytes = Some(bytes);
            if drift.within(opts) {
                report.met = true;
                break;
            }
        }
    }
    report.test_auroc_fp32 = eval.test_auroc(fp32)?;
    report.test_auroc_all_int8 = eval.test_auroc(&all_bytes)?;
    let final_bytes = final_bytes.unwrap_or(all_bytes);
    report.test_auroc_int8 = eval.test_auroc(&final_bytes)?;
    Ok((keep, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_is_zero_for_equal_scores_and_grows_with_reordering() {
        let s = [1.0, 2.0, 3.0, 4.0];
        let d = Drift::between(&s, &s);
        assert!(d.rank_drop.abs() < 1e-12 && d.max_deviation == 0.0, "{d:?}");
        let d = Drift::between(&s, &[1.0, 2.0, 4.4, 3.0]);
        assert!((d.rank_drop - 0.2).abs() < 1e-12, "{d:?}");
        assert!((d.max_deviation - 1.4).abs() < 1e-12);
        let opts = AccuracyOptions {
            detector: PathBuf::new(),
            max_drop: 0.5,
            max_deviation: 1.5,
        };
        assert!(d.within(&opts));
    }
}
