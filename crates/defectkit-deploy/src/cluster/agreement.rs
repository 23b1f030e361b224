//! How well two labelings of the same points agree: the adjusted Rand index
//! ([`adjusted_rand`]) and normalized mutual information ([`normalized_mutual_info`]), as
//! scikit-learn 1.9's `adjusted_rand_score` and `normalized_mutual_info_score`
//! (`average_method="arithmetic"`) compute them, special cases included. The first labeling is
//! DBSCAN's (`None`, noise, is one label of its own, as sklearn sees −1), the second any other
//! (e.g. the ground-truth defect types). Label values only name groups: any relabelling of
//! either side gives the same score.

use std::cmp::Ordering;

/// The contingency table of two labelings, by sorted distinct labels of each side.
struct Contingency {
    /// Points.
    n: usize,
    /// Row sums: the size of each label of the first labeling.
    rows: Vec<u64>,
    /// Column sums: the size of each label of the second.
    cols: Vec<u64>,
    /// The non-zero cells (row, column, count), row-major.
    cells: Vec<(usize, usize, u64)>,
}

/// Dense codes 0.. of `labels` in the order of their sorted distinct values.
fn codes<T: Ord + Copy>(labels: &[T]) -> (Vec<usize>, usize) {
    let mut distinct: Vec<T> = labels.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    let codes = labels
        .iter()
        .map(|l| distinct.binary_search(l).expect("a label of its own list"))
        .collect();
    (codes, distinct.len())
}

impl Contingency {
    fn new(a: &[Option<usize>], b: &[usize]) -> Self {
        assert_eq!(
            a.len(),
            b.len(),
            "two labelings of the same points must have the same length"
        );
        // `None < Some(_)`: noise sorts first, as −1 does in sklearn.
        let (ca, ka) = codes(a);
        let (cb, kb) = codes(b);
        let mut rows = vec![0u64; ka];
        let mut cols = vec![0u64; kb];
        let mut pairs: Vec<(usize, usize)> = ca.into_iter().zip(cb).collect();
        pairs.sort_unstable();
        let mut cells: Vec<(usize, usize, u64)> = Vec::new();
        for (i, j) in pairs {
            rows[i] += 1;
            cols[j] += 1;
            match cells.last_mut() {
                Some((li, lj, c)) if (*li, *lj) == (i, j) => *c += 1,
                _ => cells.push((i, j, 1)),
            }
        }
        Self {
            n: a.len(),
            rows,
            cols,
            cells,
        }
    }
}

/// Adjusted Rand index of two labelings of the same points, as
/// `sklearn.metrics.adjusted_rand_score(a, b)` with noise (`None`) as one label of its own.
/// From the pair confusion matrix (exact integer counts; i128 does not overflow below ~10⁹
/// points): 1.0 when no pair is split by one labeling and joined by the other (identical
/// partitions, both a single cluster, both all singletons, fewer than 2 points, no points),
/// else `2(tp·tn − fn·fp) / ((tp + fn)(fn + tn) + (tp + fp)(fp + tn))`, in [−0.5, 1]; about 0
/// for independent labelings.
///
/// # Panics
/// If the two labelings differ in length (sklearn raises).
pub fn adjusted_rand(a: &[Option<usize>], b: &[usize]) -> f64 {
    let t = Contingency::new(a, b);
    let n = t.n as i128;
    let sum_squares: i128 = t.cells.iter().map(|&(_, _, c)| (c as i128).pow(2)).sum();
    let by_cols: i128 = t
        .cells
        .iter()
        .map(|&(_, j, c)| c as i128 * t.cols[j] as i128)
        .sum();
    let by_rows: i128 = t
        .cells
        .iter()
        .map(|&(i, _, c)| c as i128 * t.rows[i] as i128)
        .sum();
    // sklearn.metrics.cluster.pair_confusion_matrix: [[tn, fp], [fn, tp]] (ordered pairs).
    let tp = sum_squares - n;
    let fp = by_cols - sum_squares;
    let fn_ = by_rows - sum_squares;
    let tn = n * n - fp - fn_ - sum_squares;
    if fn_ == 0 && fp == 0 {
        return 1.0;
    }
    let num = tp * tn - fn_ * fp;
    let den = (tp + fn_) * (fn_ + tn) + (tp + fp) * (fp + tn);
    2.0 * (num as f64) / (den as f64)
}

/// Normalized mutual information of two labelings of the same points, as
/// `sklearn.metrics.normalized_mutual_info_score(a, b)` (`average_method="arithmetic"`:
/// MI / ((H(a) + H(b)) / 2), natural logarithms), noise (`None`) one label of its own.
/// sklearn's special cases: 1.0 when both are a single cluster or there are no points; 0.0
/// when the mutual information is 0 (also when exactly one side is a single cluster). Each
/// term of the MI sum is computed as sklearn does and zeroed when below machine epsilon in
/// magnitude, and the MI is clipped at 0.
///
/// # Panics
/// If the two labelings differ in length (sklearn raises).
pub fn normalized_mutual_info(a: &[Option<usize>], b: &[usize]) -> f64 {
    let t = Contingency::new(a, b);
    let (ka, kb) = (t.rows.len(), t.cols.len());
    if (ka == 1 && kb == 1) || (ka == 0 && kb == 0) {
        return 1.0;
    }
    let mi = mutual_info(&t);
    if mi == 0.0 {
        return 0.0;
    }
    let normalizer = (entropy(&t.rows) + entropy(&t.cols)) / 2.0;
    mi / normalizer
}

/// sklearn's `mutual_info_score` on a contingency table, term by term in its order.
fn mutual_info(t: &Contingency) -> f64 {
    if t.rows.len() == 1 || t.cols.len() == 1 {
        return 0.0;
    }
    let total = t.n as f64;
    let log_total = total.ln();
    let terms: Vec<f64> = t
        .cells
        .iter()
        .map(|&(i, j, c)| {
            let c = c as f64;
            let p = c / total;
            let outer = t.rows[i] as i64 * t.cols[j] as i64;
            let log_outer = -(outer as f64).ln() + log_total + log_total;
            let term = p * (c.ln() - log_total) + p * log_outer;
            if term.abs() < f64::EPSILON {
                0.0
            } else {
                term
            }
        })
        .collect();
    pairwise_sum(&terms).max(0.0)
}

/// Shannon entropy (nats) of a labeling from its label sizes, as sklearn's `_entropy`.
fn entropy(sizes: &[u64]) -> f64 {
    if sizes.len() <= 1 {
        return 0.0;
    }
    let sizes: Vec<f64> = sizes.iter().map(|&s| s as f64).collect();
    let total = pairwise_sum(&sizes);
    let log_total = total.ln();
    let terms: Vec<f64> = sizes
        .iter()
        .map(|&s| (s / total) * (s.ln() - log_total))
        .collect();
    -pairwise_sum(&terms)
}

/// NumPy's pairwise summation (`np.sum` of a contiguous float64 array): blocks of 8
/// accumulators up to 128 elements, halved recursively above.
fn pairwise_sum(a: &[f64]) -> f64 {
    let n = a.len();
    match n.cmp(&8) {
        Ordering::Less => a.iter().fold(0.0, |s, v| s + v),
        _ if n <= 128 => {
            let mut r = [0.0f64; 8];
            r.copy_from_slice(&a[..8]);
            let whole = n - n % 8;
            for block in a[8..whole].chunks_exact(8) {
                for (acc, v) in r.iter_mut().zip(block) {
                    *acc += v;
                }
            }
            let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
            for v in &a[whole..] {
                res += v;
            }
            res
        }
        _ => {
            let mut half = n / 2;
            half -= half % 8;
            pairwise_sum(&a[..half]) + pairwise_sum(&a[half..])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * b.abs().max(1.0)
    }

    #[test]
    fn sklearn_docstring_examples() {
        let s = |v: &[usize]| v.iter().map(|&l| Some(l)).collect::<Vec<_>>();
        // adjusted_rand_score docstring.
        assert_eq!(adjusted_rand(&s(&[0, 0, 1, 1]), &[0, 0, 1, 1]), 1.0);
        assert_eq!(adjusted_rand(&s(&[0, 0, 1, 1]), &[1, 1, 0, 0]), 1.0);
        assert!(close(
            adjusted_rand(&s(&[0, 0, 1, 2]), &[0, 0, 1, 1]),
            0.571_428_571_428_571_4
        ));
        assert!(close(
            adjusted_rand(&s(&[0, 0, 1, 1]), &[0, 0, 1, 2]),
            0.571_428_571_428_571_4
        ));
        assert_eq!(adjusted_rand(&s(&[0, 0, 0, 0]), &[0, 1, 2, 3]), 0.0);
        assert_eq!(adjusted_rand(&s(&[0, 0, 1, 1]), &[0, 1, 0, 1]), -0.5);
        // normalized_mutual_info_score docstring.
        assert_eq!(
            normalized_mutual_info(&s(&[0, 0, 1, 1]), &[0, 0, 1, 1]),
            1.0
        );
        assert_eq!(
            normalized_mutual_info(&s(&[0, 0, 1, 1]), &[1, 1, 0, 0]),
            1.0
        );
        assert_eq!(
            normalized_mutual_info(&s(&[0, 0, 0, 0]), &[0, 1, 2, 3]),
            0.0
        );
    }

    #[test]
    fn degenerate_labelings() {
        // Both a single cluster (also: all noise against one label): 1.0 for both scores.
        assert_eq!(adjusted_rand(&[Some(3); 5], &[7; 5]), 1.0);
        assert_eq!(normalized_mutual_info(&[Some(3); 5], &[7; 5]), 1.0);
        assert_eq!(adjusted_rand(&[None; 5], &[0; 5]), 1.0);
        assert_eq!(normalized_mutual_info(&[None; 5], &[0; 5]), 1.0);
        // No points, one point.
        assert_eq!(adjusted_rand(&[], &[]), 1.0);
        assert_eq!(normalized_mutual_info(&[], &[]), 1.0);
        assert_eq!(adjusted_rand(&[None], &[4]), 1.0);
        assert_eq!(normalized_mutual_info(&[None], &[4]), 1.0);
        // Both all singletons: ARI 1 (no pair joined anywhere), NMI 1.
        let a: Vec<_> = (0..6).map(Some).collect();
        let b: Vec<usize> = (10..16).collect();
        assert_eq!(adjusted_rand(&a, &b), 1.0);
        assert!(close(normalized_mutual_info(&a, &b), 1.0));
        // One side a single cluster, the other not: NMI 0.
        assert_eq!(normalized_mutual_info(&[None; 4], &[0, 0, 1, 1]), 0.0);
    }

    #[test]
    fn noise_is_one_label() {
        // Noise is a group of its own: [noise, noise, 0, 0] is the partition {01}{23}.
        let a = [None, None, Some(0), Some(0)];
        assert_eq!(adjusted_rand(&a, &[5, 5, 2, 2]), 1.0);
        assert_eq!(normalized_mutual_info(&a, &[5, 5, 2, 2]), 1.0);
        assert_eq!(adjusted_rand(&a, &[0, 1, 0, 1]), -0.5);
    }

    #[test]
    fn independent_halves_give_zero_nmi() {
        // The cells are equal, so every MI term cancels (to below epsilon): exactly 0.
        let a = [Some(0), Some(0), Some(1), Some(1)];
        assert_eq!(normalized_mutual_info(&a, &[0, 1, 0, 1]), 0.0);
    }

    #[test]
    fn pairwise_sum_matches_plain_sum_on_integers() {
        for n in [0usize, 1, 7, 8, 9, 16, 127, 128, 129, 1000, 4097] {
            let v: Vec<f64> = (0..n).map(|i| i as f64).collect();
            assert_eq!(
                pairwise_sum(&v),
                (n * n.saturating_sub(1) / 2) as f64,
                "{n}"
            );
        }
    }

    #[test]
    #[should_panic(expected = "same length")]
    fn lengths_must_match() {
        adjusted_rand(&[None, Some(0)], &[0]);
    }
}
