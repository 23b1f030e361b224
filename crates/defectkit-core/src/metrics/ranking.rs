//! Threshold-free metrics of a score ranking: AUROC, the ROC curve, average precision.

use super::{check_lengths, cmp_scores, steps};

/// Area under the ROC curve of `scores` for binary `labels` (true = positive/anomalous), ties counted as half (Mann–Whitney U). Returns None when either class is empty.
///
/// Computed from ranks in O(n log n): AUROC = (R₊ − n₊(n₊+1)/2) / (n₊·n₋), where R₊ is the
/// sum of the (tie-averaged) ranks of the positives. It is the probability that a random
/// positive scores higher than a random negative, so 1 = perfect, 0.5 = chance, 0 =
/// perfectly reversed. NaN scores sort above every number (see the [module docs](super)).
///
/// # Panics
/// If `scores` and `labels` have different lengths (a programmer error).
pub fn auroc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    check_lengths("auroc", scores, labels);
    let n_pos = labels.iter().filter(|&&l| l).count();
    let n_neg = labels.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_unstable_by(|&a, &b| cmp_scores(scores[a], scores[b]));
    let mut rank_sum_pos = 0.0f64;
    let mut i = 0;
    while i < order.len() {
        let mut j = i + 1;
        while j < order.len() && cmp_scores(scores[order[j]], scores[order[i]]).is_eq() {
            j += 1;
        }
        // Ranks i+1 ..= j share their average.
        let avg_rank = (i + 1 + j) as f64 / 2.0;
        let pos_in_group = order[i..j].iter().filter(|&&k| labels[k]).count();
        rank_sum_pos += avg_rank * pos_in_group as f64;
        i = j;
    }
    let n_pos_f = n_pos as f64;
    let u = rank_sum_pos - n_pos_f * (n_pos_f + 1.0) / 2.0;
    Some(u / (n_pos_f * n_neg as f64))
}

/// The ROC curve: points (false-positive rate, true-positive rate), one per distinct score
/// taken as the threshold (score ≥ t), thresholds descending, after a leading (0, 0) for
/// t = +∞; the last point is (1, 1). Tied scores are one point. Returns None when either
/// class is empty.
///
/// Equals `sklearn.metrics.roc_curve(labels, scores, drop_intermediate=False)`'s
/// `(fpr, tpr)`. The trapezoidal area under it is [`auroc`].
///
/// # Panics
/// If `scores` and `labels` have different lengths (a programmer error).
pub fn roc_curve(scores: &[f64], labels: &[bool]) -> Option<Vec<(f64, f64)>> {
    check_lengths("roc_curve", scores, labels);
    let s = steps(scores, labels);
    if s.n_pos == 0 || s.n_neg == 0 {
        return None;
    }
    let (n_pos, n_neg) = (s.n_pos as f64, s.n_neg as f64);
    let mut points = Vec::with_capacity(s.steps.len() + 1);
    points.push((0.0, 0.0));
    points.extend(
        s.steps
            .iter()
            .map(|st| (st.fp as f64 / n_neg, st.tp as f64 / n_pos)),
    );
    Some(points)
}

/// Average precision, the area under the precision–recall step function:
/// AP = Σₙ (Rₙ − Rₙ₋₁)·Pₙ over the distinct scores taken as thresholds (score ≥ t) in
/// descending order, with R₀ = 0 (tied scores are one threshold; no interpolation).
/// Returns None when there are no positives; with no negatives it is 1.
///
/// Equals `sklearn.metrics.average_precision_score(labels, scores)`.
///
/// # Panics
/// If `scores` and `labels` have different lengths (a programmer error).
pub fn average_precision(scores: &[f64], labels: &[bool]) -> Option<f64> {
    check_lengths("average_precision", scores, labels);
    let s = steps(scores, labels);
    if s.n_pos == 0 {
        return None;
    }
    let n_pos = s.n_pos as f64;
    let mut ap = 0.0;
    let mut prev_recall = 0.0;
    for st in &s.steps {
        let recall = st.tp as f64 / n_pos;
        let precision = st.tp as f64 / (st.tp + st.fp) as f64;
        ap += (recall - prev_recall) * precision;
        prev_recall = recall;
    }
    Some(ap)
}

/// Ranks 1..=n with ties given their average rank (as `scipy.stats.rankdata`).
pub fn average_ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&i, &j| values[i].total_cmp(&values[j]));
    let mut ranks = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && values[order[end]] == values[order[start]] {
            end += 1;
        }
        let rank = (start + end + 1) as f64 / 2.0;
        for &k in &order[start..end] {
            ranks[k] = rank;
        }
        start = end;
    }
    ranks
}

/// Spearman's rank correlation (`scipy.stats.spearmanr`: Pearson's r of the average
/// ranks). None for fewer than two pairs, unequal lengths, NaNs or a constant side.
pub fn spearman(a: &[f64], b: &[f64]) -> Option<f64> {
    if a.len() != b.len() || a.len() < 2 || a.iter().chain(b).any(|v| v.is_nan()) {
        return None;
    }
    let (ra, rb) = (average_ranks(a), average_ranks(b));
    let n = ra.len() as f64;
    let (ma, mb) = (ra.iter().sum::<f64>() / n, rb.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in ra.iter().zip(&rb) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    (saa > 0.0 && sbb > 0.0).then(|| sab / (saa.sqrt() * sbb.sqrt()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    fn assert_points(got: &[(f64, f64)], want: &[(f64, f64)]) {
        assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
        for (g, w) in got.iter().zip(want) {
            assert!(close(g.0, w.0) && close(g.1, w.1), "{got:?} vs {want:?}");
        }
    }

    #[test]
    fn perfect_separation_is_one() {
        let s = [0.1, 0.2, 0.3, 0.8, 0.9];
        let l = [false, false, false, true, true];
        assert_eq!(auroc(&s, &l), Some(1.0));
    }

    #[test]
    fn reversed_is_zero() {
        let s = [0.9, 0.8, 0.3, 0.2];
        let l = [false, false, true, true];
        assert_eq!(auroc(&s, &l), Some(0.0));
    }

    #[test]
    fn all_ties_is_half() {
        let s = [0.5; 6];
        let l = [true, false, true, false, false, true];
        assert_eq!(auroc(&s, &l), Some(0.5));
    }

    #[test]
    fn hand_computed_case() {
        // Positives 0.4, 0.7, 0.5; negatives 0.1, 0.5, 0.6, 0.8.
        // Pairs (pos > neg): 0.4 beats 0.1 → 1; 0.7 beats 0.1, 0.5, 0.6 → 3;
        // 0.5 beats 0.1 and ties 0.5 → 1.5. Total 5.5 of 12 pairs.
        let s = [0.1, 0.4, 0.5, 0.5, 0.6, 0.7, 0.8];
        let l = [false, true, false, true, false, true, false];
        let a = auroc(&s, &l).unwrap();
        assert!((a - 5.5 / 12.0).abs() < 1e-12, "{a}");
    }

    #[test]
    fn empty_class_is_none() {
        assert_eq!(auroc(&[0.1, 0.2], &[true, true]), None);
        assert_eq!(auroc(&[0.1, 0.2], &[false, false]), None);
        assert_eq!(auroc(&[], &[]), None);
        assert_eq!(roc_curve(&[0.1, 0.2], &[true, true]), None);
        assert_eq!(roc_curve(&[0.1, 0.2], &[false, false]), None);
        assert_eq!(roc_curve(&[], &[]), None);
        assert_eq!(average_precision(&[0.1, 0.2], &[false, false]), None);
        assert_eq!(average_precision(&[], &[]), None);
        // No negatives: every threshold has precision 1.
        assert_eq!(average_precision(&[0.1, 0.2], &[true, true]), Some(1.0));
    }

    /// scikit-learn's docstring example: y = [0, 0, 1, 1], scores [0.1, 0.4, 0.35, 0.8].
    #[test]
    fn sklearn_doc_example() {
        let s = [0.1, 0.4, 0.35, 0.8];
        let l = [false, false, true, true];
        let roc = roc_curve(&s, &l).unwrap();
        assert_points(
            &roc,
            &[(0.0, 0.0), (0.0, 0.5), (0.5, 0.5), (0.5, 1.0), (1.0, 1.0)],
        );
        // t=0.8: R .5, P 1 → .5; t=0.4: ΔR 0; t=0.35: ΔR .5, P 2/3 → 1/3; t=0.1: ΔR 0.
        assert!(close(average_precision(&s, &l).unwrap(), 5.0 / 6.0));
        assert!(close(auroc(&s, &l).unwrap(), 0.75));
    }

    /// Ties: scores 0.9 (neg), 0.5 (pos, neg), 0.2 (pos, neg) — three thresholds.
    #[test]
    fn tied_scores_are_one_threshold() {
        let s = [0.5, 0.5, 0.2, 0.2, 0.9];
        let l = [true, false, true, false, false];
        let roc = roc_curve(&s, &l).unwrap();
        assert_points(
            &roc,
            &[(0.0, 0.0), (1.0 / 3.0, 0.0), (2.0 / 3.0, 0.5), (1.0, 1.0)],
        );
        // t=0.9: ΔR 0; t=0.5: ΔR .5 × P 1/3; t=0.2: ΔR .5 × P 2/5.
        assert!(close(average_precision(&s, &l).unwrap(), 11.0 / 30.0));
        // The trapezoids under the ROC curve are the AUROC: 1/12 + 1/4.
        let area: f64 = roc
            .windows(2)
            .map(|w| (w[1].0 - w[0].0) * (w[1].1 + w[0].1) / 2.0)
            .sum();
        assert!(close(area, 1.0 / 3.0));
        assert!(close(auroc(&s, &l).unwrap(), 1.0 / 3.0));
    }

    #[test]
    fn all_scores_equal() {
        let s = [0.3; 4];
        let l = [true, false, false, true];
        assert_points(&roc_curve(&s, &l).unwrap(), &[(0.0, 0.0), (1.0, 1.0)]);
        // One threshold: recall 1 at precision = prevalence.
        assert_eq!(average_precision(&s, &l), Some(0.5));
    }

    #[test]
    fn nan_ranks_above_every_number_and_zeros_tie() {
        let s = [f64::NAN, f64::INFINITY, 0.0, -0.0, -f64::NAN];
        let l = [true, false, true, false, true];
        // Thresholds: NaN (2 pos), +inf (1 neg), 0 (1 pos, 1 neg).
        assert_points(
            &roc_curve(&s, &l).unwrap(),
            &[(0.0, 0.0), (0.0, 2.0 / 3.0), (0.5, 2.0 / 3.0), (1.0, 1.0)],
        );
        assert!(close(auroc(&s, &l).unwrap(), (2.0 * 2.0 + 0.5) / 6.0));
    }

    #[test]
    #[should_panic(expected = "roc_curve: 2 scores but 1 labels")]
    fn mismatched_lengths_panic() {
        let _ = roc_curve(&[0.1, 0.2], &[true]);
    }
}
