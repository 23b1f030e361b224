//! Evaluation metrics shared by the data tests and the anomaly stages.

/// Area under the ROC curve of `scores` for binary `labels` (true = positive/anomalous), ties counted as half (Mann–Whitney U). Returns None when either class is empty.
///
/// Computed from ranks in O(n log n): AUROC = (R₊ − n₊(n₊+1)/2) / (n₊·n₋), where R₊ is the
/// sum of the (tie-averaged) ranks of the positives. It is the probability that a random
/// positive scores higher than a random negative, so 1 = perfect, 0.5 = chance, 0 =
/// perfectly reversed. NaN scores sort above every number (`f64::total_cmp`).
///
/// # Panics
/// If `scores` and `labels` have different lengths (a programmer error).
pub fn auroc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    assert_eq!(
        scores.len(),
        labels.len(),
        "auroc: {} scores but {} labels",
        scores.len(),
        labels.len()
    );
    let n_pos = labels.iter().filter(|&&l| l).count();
    let n_neg = labels.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut rank_sum_pos = 0.0f64;
    let mut i = 0;
    while i < order.len() {
        let mut j = i + 1;
        while j < order.len() && scores[order[j]].total_cmp(&scores[order[i]]).is_eq() {
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

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
