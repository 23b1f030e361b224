//! Detection quality on the test split, per class (MVTec AD is evaluated per category) and
//! as the mean over classes that papers report: image AUROC, average precision, and at the
//! deployable threshold F1, precision, recall, accuracy, the confusion and the false-positive
//! rate on test good images; recall per defect type; and, labelled as an oracle because it
//! looks at the test labels, the F1-maximising threshold.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use defectkit_core::metrics::{auroc, average_precision, f1_max, Confusion, F1Max};

/// One test image's score, with what is known about it.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredImage {
    /// Its class.
    pub class: String,
    /// `good` or the defect type.
    pub defect_type: String,
    /// Defective (true) or good.
    pub defective: bool,
    /// The detector's score.
    pub score: f64,
}

/// Recall on one defect type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DefectRecall {
    /// Images of this type flagged anomalous.
    pub detected: usize,
    /// Images of this type.
    pub total: usize,
    /// detected / total.
    pub recall: f64,
}

/// One class's numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassMetrics {
    /// The class.
    pub class: String,
    /// Test good images.
    pub n_good: usize,
    /// Test defective images.
    pub n_defective: usize,
    /// Image AUROC (None when the class lacks good or defective test images).
    pub auroc: Option<f64>,
    /// Average precision (None without defective test images).
    pub average_precision: Option<f64>,
    /// The deployable threshold used.
    pub threshold: f64,
    /// Confusion at that threshold.
    pub confusion: Confusion,
    /// Precision at the threshold.
    pub precision: f64,
    /// Recall at the threshold.
    pub recall: f64,
    /// F1 at the threshold.
    pub f1: f64,
    /// Accuracy at the threshold.
    pub accuracy: f64,
    /// False-positive rate on test good images at the threshold.
    pub fpr_test_good: f64,
    /// ORACLE: the F1-maximising threshold on the test labels (not deployable).
    pub oracle_f1_max: Option<F1Max>,
    /// Recall per defect type.
    pub defect_recall: BTreeMap<String, DefectRecall>,
}

/// The mean over classes (each class weighs the same, as MVTec papers report).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeanMetrics {
    /// Mean image AUROC over classes that have one.
    pub auroc: Option<f64>,
    /// Mean average precision.
    pub average_precision: Option<f64>,
    /// Mean F1 at the deployable thresholds.
    pub f1: f64,
    /// Mean precision.
    pub precision: f64,
    /// Mean recall.
    pub recall: f64,
    /// Mean accuracy.
    pub accuracy: f64,
    /// Mean false-positive rate on test good images.
    pub fpr_test_good: f64,
    /// ORACLE: mean of the per-class F1-max.
    pub oracle_f1_max: Option<f64>,
}

/// Everything `metrics.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectionMetrics {
    /// Per class, sorted by name.
    pub per_class: Vec<ClassMetrics>,
    /// Mean over classes.
    pub mean: MeanMetrics,
    /// All test images pooled at their classes' thresholds.
    pub pooled_confusion: Confusion,
    /// Pixel AUROC and AUPRO against the masks (patch detectors only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pixel: Option<super::pixel::PixelMetrics>,
}

fn mean_of(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (mut sum, mut n) = (0.0, 0usize);
    for v in values {
        sum += v;
        n += 1;
    }
    (n > 0).then(|| sum / n as f64)
}

/// Evaluates test `images` at the per-class `thresholds`; images of a class without a
/// threshold are left out (callers only pass classes they fitted).
pub fn evaluate(images: &[ScoredImage], thresholds: &BTreeMap<String, f64>) -> DetectionMetrics {
    let mut by_class: BTreeMap<&str, Vec<&ScoredImage>> = BTreeMap::new();
    for img in images {
        by_class.entry(img.class.as_str()).or_default().push(img);
    }
    let mut pooled = Confusion::default();
    let mut per_class = Vec::new();
    for (class, rows) in by_class {
        let Some(&threshold) = thresholds.get(class) else {
            continue;
        };
        let scores: Vec<f64> = rows.iter().map(|r| r.score).collect();
        let labels: Vec<bool> = rows.iter().map(|r| r.defective).collect();
        let confusion = Confusion::at_threshold(&scores, &labels, threshold);
        pooled.tp += confusion.tp;
        pooled.fp += confusion.fp;
        pooled.tn += confusion.tn;
        pooled.fn_ += confusion.fn_;
        let mut defect_recall: BTreeMap<String, DefectRecall> = BTreeMap::new();
        for r in rows.iter().filter(|r| r.defective) {
            let e = defect_recall
                .entry(r.defect_type.clone())
                .or_insert(DefectRecall {
                    detected: 0,
                    total: 0,
                    recall: 0.0,
                });
            e.total += 1;
            e.detected += usize::from(r.score >= threshold);
        }
        for e in defect_recall.values_mut() {
            e.recall = e.detected as f64 / e.total as f64;
        }
        per_class.push(ClassMetrics {
            class: class.to_string(),
            n_good: labels.iter().filter(|l| !**l).count(),
            n_defective: labels.iter().filter(|l| **l).count(),
            auroc: auroc(&scores, &labels),
            average_precision: average_precision(&scores, &labels),
            threshold,
            precision: confusion.precision(),
            recall: confusion.recall(),
            f1: confusion.f1(),
            accuracy: confusion.accuracy(),
            fpr_test_good: confusion.false_positive_rate(),
            confusion,
            oracle_f1_max: f1_max(&scores, &labels),
            defect_recall,
        });
    }
    let mean = MeanMetrics {
        auroc: mean_of(per_class.iter().filter_map(|c| c.auroc)),
        average_precision: mean_of(per_class.iter().filter_map(|c| c.average_precision)),
        f1: mean_of(per_class.iter().map(|c| c.f1)).unwrap_or(0.0),
        precision: mean_of(per_class.iter().map(|c| c.precision)).unwrap_or(0.0),
        recall: mean_of(per_class.iter().map(|c| c.recall)).unwrap_or(0.0),
        accuracy: mean_of(per_class.iter().map(|c| c.accuracy)).unwrap_or(0.0),
        fpr_test_good: mean_of(per_class.iter().map(|c| c.fpr_test_good)).unwrap_or(0.0),
        oracle_f1_max: mean_of(
            per_class
                .iter()
                .filter_map(|c| c.oracle_f1_max.map(|f| f.f1)),
        ),
    };
    DetectionMetrics {
        per_class,
        mean,
        pooled_confusion: pooled,
        pixel: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(class: &str, defect: &str, score: f64) -> ScoredImage {
        ScoredImage {
            class: class.into(),
            defect_type: defect.into(),
            defective: defect != "good",
            score,
        }
    }

    #[test]
    fn per_class_and_mean_by_hand() {
        let images = vec![
            img("a", "good", 0.1),
            img("a", "good", 0.4),
            img("a", "crack", 0.5),
            img("a", "hole", 0.3),
            img("b", "good", 1.0),
            img("b", "cut", 3.0),
        ];
        let thresholds = BTreeMap::from([("a".to_string(), 0.45), ("b".to_string(), 2.0)]);
        let m = evaluate(&images, &thresholds);
        let a = &m.per_class[0];
        assert_eq!((a.n_good, a.n_defective), (2, 2));
        // Pairs (defect > good): 0.5 beats both, 0.3 beats 0.1 → 3 of 4.
        assert_eq!(a.auroc, Some(0.75));
        assert_eq!(
            a.confusion,
            Confusion {
                tp: 1,
                fp: 0,
                tn: 2,
                fn_: 1
            }
        );
        assert_eq!(a.defect_recall["crack"].recall, 1.0);
        assert_eq!(a.defect_recall["hole"].recall, 0.0);
        assert_eq!(m.per_class[1].auroc, Some(1.0));
        assert_eq!(m.mean.auroc, Some(0.875));
        assert_eq!(m.pooled_confusion.tp, 2);
        assert_eq!(m.mean.fpr_test_good, 0.0);
    }
}
