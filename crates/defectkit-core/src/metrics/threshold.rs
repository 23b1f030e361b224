//! The decision at a threshold: the confusion counts, the F1-maximising (oracle) threshold and
//! percentiles (for thresholds set from good samples).

use serde::{Deserialize, Serialize};

use super::{check_lengths, cmp_scores, steps};

/// Binary confusion counts under the project's one decision rule:
/// anomalous (positive) ⇔ score ≥ threshold. Serializes as `{"tp", "fp", "tn", "fn"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Confusion {
    /// Anomalous samples flagged anomalous.
    pub tp: usize,
    /// Good samples flagged anomalous.
    pub fp: usize,
    /// Good samples passed as good.
    pub tn: usize,
    /// Anomalous samples passed as good (`"fn"` in JSON).
    #[serde(rename = "fn")]
    pub fn_: usize,
}

/// `num / den`, 0 when `den` is 0 (scikit-learn's `zero_division=0`).
fn ratio(num: usize, den: usize) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

impl Confusion {
    /// Count the decisions `score >= threshold` against `labels` (true = anomalous).
    ///
    /// Compared in the metrics' total order (see the [module docs](super)): for numbers this
    /// is exactly `score >= threshold` (`-0.0` equals `0.0`); a NaN score is flagged at every
    /// threshold, and a NaN threshold flags only NaN scores — consistent with [`f1_max`]
    /// and the curves, which rank NaN above every number.
    ///
    /// # Panics
    /// If `scores` and `labels` have different lengths (a programmer error).
    pub fn at_threshold(scores: &[f64], labels: &[bool], threshold: f64) -> Self {
        check_lengths("Confusion::at_threshold", scores, labels);
        let mut c = Confusion::default();
        for (&s, &l) in scores.iter().zip(labels) {
            let flagged = cmp_scores(s, threshold).is_ge();
            match (flagged, l) {
                (true, true) => c.tp += 1,
                (true, false) => c.fp += 1,
                (false, false) => c.tn += 1,
                (false, true) => c.fn_ += 1,
            }
        }
        c
    }

    /// tp / (tp + fp); 0 when nothing is flagged.
    pub fn precision(&self) -> f64 {
        ratio(self.tp, self.tp + self.fp)
    }

    /// tp / (tp + fn) (the true-positive rate); 0 when there are no positives.
    pub fn recall(&self) -> f64 {
        ratio(self.tp, self.tp + self.fn_)
    }

    /// The harmonic mean of precision and recall, computed as 2·tp / (2·tp + fp + fn) like
    /// scikit-learn's `f1_score`; 0 when precision + recall is 0 (tp = 0).
    pub fn f1(&self) -> f64 {
        ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn_)
    }

    /// (tp + tn) / total; 0 when empty.
    pub fn accuracy(&self) -> f64 {
        ratio(self.tp + self.tn, self.total())
    }

    /// fp / (fp + tn); 0 when there are no negatives.
    pub fn false_positive_rate(&self) -> f64 {
        ratio(self.fp, self.fp + self.tn)
    }

    /// The number of samples counted.
    pub fn total(&self) -> usize {
        self.tp + self.fp + self.tn + self.fn_
    }
}

/// The best F1 over all thresholds, from [`f1_max`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct F1Max {
    /// The maximal F1.
    pub f1: f64,
    /// The threshold giving it (one of the scores; rule score ≥ threshold).
    pub threshold: f64,
    /// The precision at that threshold.
    pub precision: f64,
    /// The recall at that threshold.
    pub recall: f64,
}

/// The F1-maximising threshold — an *oracle*: it looks at the labels, so it measures how
/// separable the scores are, not a deployable threshold.
///
/// Candidates are the distinct scores with the rule score ≥ t, as in
/// `sklearn.metrics.precision_recall_curve`; F1 is 2·tp / (2·tp + fp + fn). Ties between
/// thresholds go to the highest threshold. Returns None when there are no positives.
///
/// # Panics
/// If `scores` and `labels` have different lengths (a programmer error).
pub fn f1_max(scores: &[f64], labels: &[bool]) -> Option<F1Max> {
    check_lengths("f1_max", scores, labels);
    let s = steps(scores, labels);
    if s.n_pos == 0 {
        return None;
    }
    let mut best: Option<F1Max> = None;
    // Thresholds descending: only a strictly better F1 replaces, so ties keep the highest.
    for st in &s.steps {
        let c = Confusion {
            tp: st.tp,
            fp: st.fp,
            tn: s.n_neg - st.fp,
            fn_: s.n_pos - st.tp,
        };
        let f1 = c.f1();
        if best.is_none_or(|b| f1 > b.f1) {
            best = Some(F1Max {
                f1,
                threshold: st.threshold,
                precision: c.precision(),
                recall: c.recall(),
            });
        }
    }
    best
}

/// The `p`-th percentile (`p` in 0..=100) of `values` with linear interpolation, exactly
/// `numpy.percentile(values, p)` (method "linear", C = 1): the value at index
/// (n − 1)·p/100 of the sorted values, interpolated between its neighbours as NumPy does.
/// Returns None for empty `values`, `p` outside [0, 100] (or NaN), or any NaN value.
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() || !(0.0..=100.0).contains(&p) || values.iter().any(|v| v.is_nan()) {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable_by(f64::total_cmp);
    let n = sorted.len();
    // numpy: q = p / 100, virtual index (n - 1) * q, neighbours floor and floor + 1, both the
    // last index at or beyond it, and `_lerp`'s two-sided form for accuracy.
    let q = p / 100.0;
    let index = (n - 1) as f64 * q;
    if index >= (n - 1) as f64 {
        return Some(sorted[n - 1]);
    }
    let below = index.floor();
    let (a, b) = (sorted[below as usize], sorted[below as usize + 1]);
    let t = index - below;
    let diff = b - a;
    Some(if t >= 0.5 {
        b - diff * (1.0 - t)
    } else {
        a + diff * t
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn confusion_counts_and_rates() {
        let s = [0.1, 0.4, 0.35, 0.8];
        let l = [false, false, true, true];
        // Flagged at 0.4: 0.4 (good), 0.8 (anomalous) — the threshold itself counts.
        let c = Confusion::at_threshold(&s, &l, 0.4);
        assert_eq!(
            c,
            Confusion {
                tp: 1,
                fp: 1,
                tn: 1,
                fn_: 1
            }
        );
        assert_eq!(
            (c.precision(), c.recall(), c.f1(), c.accuracy()),
            (0.5, 0.5, 0.5, 0.5)
        );
        assert_eq!((c.false_positive_rate(), c.total()), (0.5, 4));
        let c = Confusion::at_threshold(&s, &l, 0.35);
        assert_eq!((c.tp, c.fp, c.tn, c.fn_), (2, 1, 1, 0));
        assert!(close(c.precision(), 2.0 / 3.0) && close(c.f1(), 0.8));
        assert!(close(c.accuracy(), 0.75));
        // Above every score: nothing flagged, precision and F1 fall back to 0.
        let c = Confusion::at_threshold(&s, &l, 0.9);
        assert_eq!((c.tp, c.fp, c.tn, c.fn_), (0, 0, 2, 2));
        assert_eq!(
            (c.precision(), c.recall(), c.f1(), c.accuracy()),
            (0.0, 0.0, 0.0, 0.5)
        );
    }

    #[test]
    fn confusion_edge_cases() {
        let empty = Confusion::at_threshold(&[], &[], 0.5);
        assert_eq!(empty, Confusion::default());
        assert_eq!(
            (
                empty.precision(),
                empty.recall(),
                empty.f1(),
                empty.accuracy(),
                empty.false_positive_rate()
            ),
            (0.0, 0.0, 0.0, 0.0, 0.0)
        );
        // All scores equal: at the tie everything is flagged, just above nothing is.
        let s = [0.3; 4];
        let l = [true, false, false, true];
        let c = Confusion::at_threshold(&s, &l, 0.3);
        assert_eq!((c.tp, c.fp, c.tn, c.fn_), (2, 2, 0, 0));
        let c = Confusion::at_threshold(&s, &l, 0.30001);
        assert_eq!((c.tp, c.fp, c.tn, c.fn_), (0, 0, 2, 2));
        // -0.0 ≥ 0.0; NaN is flagged at every threshold; a NaN threshold flags only NaN.
        let s = [-0.0, f64::NAN, 1.0];
        let l = [false, true, false];
        assert_eq!(
            Confusion::at_threshold(&s, &l, 0.0),
            Confusion {
                tp: 1,
                fp: 2,
                tn: 0,
                fn_: 0
            }
        );
        assert_eq!(
            Confusion::at_threshold(&s, &l, f64::NAN),
            Confusion {
                tp: 1,
                fp: 0,
                tn: 2,
                fn_: 0
            }
        );
    }

    #[test]
    fn confusion_serializes_fn_as_fn() {
        let c = Confusion {
            tp: 1,
            fp: 2,
            tn: 3,
            fn_: 4,
        };
        let j = serde_json::to_string(&c).unwrap();
        assert_eq!(j, r#"{"tp":1,"fp":2,"tn":3,"fn":4}"#);
        assert_eq!(serde_json::from_str::<Confusion>(&j).unwrap(), c);
    }

    #[test]
    fn f1_max_hand_computed() {
        // F1 at 0.8: 2/3; 0.4: 1/2; 0.35: 4/5; 0.1: 2/3.
        let s = [0.1, 0.4, 0.35, 0.8];
        let l = [false, false, true, true];
        let m = f1_max(&s, &l).unwrap();
        assert!(close(m.f1, 0.8) && close(m.precision, 2.0 / 3.0), "{m:?}");
        assert_eq!((m.threshold, m.recall), (0.35, 1.0));
        // The returned threshold reproduces the F1 under the decision rule.
        let c = Confusion::at_threshold(&s, &l, m.threshold);
        assert_eq!(
            (c.f1(), c.precision(), c.recall()),
            (m.f1, m.precision, m.recall)
        );
    }

    #[test]
    fn f1_max_with_ties() {
        // Thresholds 0.9 (neg): F1 0; 0.5 (pos, neg): 2/5; 0.2 (pos, neg): 4/7.
        let s = [0.5, 0.5, 0.2, 0.2, 0.9];
        let l = [true, false, true, false, false];
        let m = f1_max(&s, &l).unwrap();
        assert!(close(m.f1, 4.0 / 7.0) && close(m.precision, 0.4), "{m:?}");
        assert_eq!((m.threshold, m.recall), (0.2, 1.0));
        // All equal: one threshold.
        let m = f1_max(&[0.3; 4], &[true, false, false, true]).unwrap();
        assert!(close(m.f1, 2.0 / 3.0));
        assert_eq!((m.threshold, m.precision, m.recall), (0.3, 0.5, 1.0));
    }

    #[test]
    fn f1_max_ties_between_thresholds_take_the_highest() {
        // F1 at 0.9: 2/3; 0.8: 1/2; 0.7: 2/5; 0.6: 2/3 — a tie, 0.9 wins.
        let s = [0.9, 0.8, 0.7, 0.6];
        let l = [true, false, false, true];
        let m = f1_max(&s, &l).unwrap();
        assert!(close(m.f1, 2.0 / 3.0));
        assert_eq!((m.threshold, m.precision, m.recall), (0.9, 1.0, 0.5));
    }

    #[test]
    fn f1_max_none_without_positives() {
        assert_eq!(f1_max(&[0.1, 0.2], &[false, false]), None);
        assert_eq!(f1_max(&[], &[]), None);
        // Only positives: the lowest score flags them all.
        let m = f1_max(&[0.1, 0.2], &[true, true]).unwrap();
        assert_eq!((m.f1, m.threshold), (1.0, 0.1));
    }

    #[test]
    #[should_panic(expected = "f1_max: 1 scores but 2 labels")]
    fn f1_max_mismatched_lengths_panic() {
        let _ = f1_max(&[0.1], &[true, false]);
    }

    #[test]
    #[should_panic(expected = "Confusion::at_threshold: 1 scores but 0 labels")]
    fn confusion_mismatched_lengths_panic() {
        let _ = Confusion::at_threshold(&[0.1], &[], 0.0);
    }

    #[test]
    fn percentile_hand_computed() {
        let v = [4.0, 1.0, 3.0, 2.0];
        // Index 3 · 0.95 = 2.85: 3 + 0.85 · (4 − 3).
        assert!(close(percentile(&v, 95.0).unwrap(), 3.85));
        assert_eq!(percentile(&v, 50.0), Some(2.5));
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        assert_eq!(percentile(&v, 100.0), Some(4.0));
        // Index 3 · 0.25 = 0.75: 1 + 0.75.
        assert_eq!(percentile(&v, 25.0), Some(1.75));
        for p in [0.0, 37.5, 100.0] {
            assert_eq!(percentile(&[7.0], p), Some(7.0));
        }
    }

    #[test]
    fn percentile_none_cases() {
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[1.0], -0.1), None);
        assert_eq!(percentile(&[1.0], 100.1), None);
        assert_eq!(percentile(&[1.0], f64::NAN), None);
        assert_eq!(percentile(&[1.0, f64::NAN], 50.0), None);
    }
}
