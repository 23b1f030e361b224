//! Evaluation metrics shared by the data tests and the anomaly stages.
//!
//! - threshold-free metrics of a score ranking (`ranking.rs`): [`auroc`], [`roc_curve`],
//!   [`average_precision`], and the rank correlation [`spearman`] (on [`average_ranks`]);
//! - the decision at a threshold (`threshold.rs`): [`Confusion`], the oracle [`f1_max`], and
//!   [`percentile`] (for thresholds taken from good samples);
//! - pixel-level metrics of anomaly maps against defect masks (`pixel.rs`): [`pixel_auroc`],
//!   the per-region-overlap curve [`pro_curve`] and [`aupro`] as MVTec AD's official
//!   evaluation defines them (8-connected regions by [`label_regions`], integrated to FPR 0.3
//!   and divided by the limit, not by the last FPR reached).
//!
//! Conventions, everywhere: `true` labels are positives (anomalous); the one decision rule is
//! *anomalous ⇔ score ≥ threshold*; results match scikit-learn / NumPy (checked by
//! `tests/metrics.rs` against scikit-learn itself). Everything is O(n log n) (one sort).
//!
//! NaN scores: scores are ordered with [`f64::total_cmp`] after mapping every NaN to one
//! positive NaN and `-0.0` to `0.0`, so all NaNs form one tie group ranked above every number
//! (+∞ included), and `-0.0`/`0.0` are one score. [`Confusion::at_threshold`] uses the same
//! order, so a NaN score counts as anomalous at every threshold (fail-safe), consistent with
//! the curves. Mismatched `scores`/`labels` lengths panic (a programmer error).

mod pixel;
mod ranking;
mod threshold;

pub use pixel::{
    aupro, label_regions, pixel_auroc, pixel_metrics, pro_curve, PixelMetrics, AUPRO_FPR_LIMIT,
};
pub use ranking::{auroc, average_precision, average_ranks, roc_curve, spearman};
pub use threshold::{f1_max, percentile, Confusion, F1Max};

use std::cmp::Ordering;

/// The sort key of a score: NaNs collapse to one positive NaN (above +∞ under `total_cmp`)
/// and `-0.0` becomes `0.0`.
fn score_key(x: f64) -> f64 {
    if x.is_nan() {
        f64::NAN
    } else {
        x + 0.0
    }
}

/// Compare two scores in the metrics' total order (see the module docs).
fn cmp_scores(a: f64, b: f64) -> Ordering {
    score_key(a).total_cmp(&score_key(b))
}

/// Panic unless `scores` and `labels` have the same length.
fn check_lengths(what: &str, scores: &[f64], labels: &[bool]) {
    assert_eq!(
        scores.len(),
        labels.len(),
        "{what}: {} scores but {} labels",
        scores.len(),
        labels.len()
    );
}

/// The cumulative counts at one distinct threshold: flagging every sample with
/// score ≥ `threshold` gives `tp` true and `fp` false positives.
#[derive(Debug, Clone, Copy)]
struct Step {
    threshold: f64,
    tp: usize,
    fp: usize,
}

/// One [`Step`] per distinct score, thresholds descending (tied scores are one step), and the
/// class sizes: sklearn's `_binary_clf_curve` / `confusion_matrix_at_thresholds`.
struct Steps {
    steps: Vec<Step>,
    n_pos: usize,
    n_neg: usize,
}

fn steps(scores: &[f64], labels: &[bool]) -> Steps {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_unstable_by(|&a, &b| cmp_scores(scores[b], scores[a]));
    let mut steps = Vec::new();
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut i = 0;
    while i < order.len() {
        let threshold = score_key(scores[order[i]]);
        while i < order.len() && cmp_scores(scores[order[i]], threshold).is_eq() {
            if labels[order[i]] {
                tp += 1;
            } else {
                fp += 1;
            }
            i += 1;
        }
        steps.push(Step { threshold, tp, fp });
    }
    Steps {
        steps,
        n_pos: tp,
        n_neg: fp,
    }
}
