//! DBSCAN (Ester et al. 1996) on Euclidean rows, exactly as scikit-learn's
//! `DBSCAN(eps, min_samples).fit(X).labels_` defines it: a point is *core* when at least
//! `min_samples` points (itself included) lie within `eps` of it (`‖x − y‖ ≤ eps`); a
//! cluster is a connected component of core points (linked when within `eps` of each other)
//! together with the non-core points within `eps` of one of its core points; everything else
//! is noise.
//!
//! Clusters are grown in the order of their first (lowest-index) core point, and that order is
//! their id, as sklearn's `dbscan_inner` numbers them; a border point within `eps` of core
//! points of two clusters belongs to the one grown first (the lower id), as in sklearn. So the
//! labels equal sklearn's exactly, not only up to relabelling (given the same neighbourhoods:
//! a distance within rounding of `eps` may fall on either side in either implementation).
//!
//! This is a direct implementation rather than petal-clustering's `Dbscan` (0.14), which
//! differs from sklearn in two ways: its ball tree keeps a leaf's points at `distance < eps`
//! but whole subtrees whose bound is `≤ eps` (so points at exactly `eps` are in or out
//! depending on the tree), and it drops a cluster with fewer than `min_samples` points (a core
//! point whose other neighbours were already claimed as border points of an earlier cluster),
//! turning that core point into noise where sklearn keeps the cluster. The neighbour search is
//! brute force, O(N²·d) time and O(N) memory (neighbourhoods are recomputed while growing a
//! cluster rather than stored), which is fine for the few thousand embeddings the `cluster`
//! stage reads; the counting pass runs in parallel (rayon).

use ndarray::ArrayView2;
use rayon::prelude::*;

use crate::stats::StatsError;

/// DBSCAN labels: `Some(cluster id)` or `None` for noise. Ids are 0-based and numbered in the
/// order of each cluster's first core point (sklearn's `labels_`, with −1 as `None`).
///
/// Distances are Euclidean, compared as `‖x − y‖² ≤ eps²`, and a point counts among its own
/// neighbours. With fewer rows than `min_samples` no point can be core, so every point is
/// noise (not an error).
///
/// # Errors
/// [`StatsError::Invalid`] for no rows, no columns, `eps` not finite or ≤ 0, or
/// `min_samples = 0`; [`StatsError::NonFinite`] for a NaN or infinite entry.
pub fn dbscan(
    rows: ArrayView2<f64>,
    eps: f64,
    min_samples: usize,
) -> Result<Vec<Option<usize>>, StatsError> {
    if !eps.is_finite() || eps <= 0.0 {
        return Err(StatsError::Invalid(format!(
            "DBSCAN eps must be finite and > 0, got {eps}"
        )));
    }
    if min_samples == 0 {
        return Err(StatsError::Invalid("DBSCAN min_samples must be ≥ 1".into()));
    }
    check_rows(rows, "DBSCAN")?;
    let n = rows.nrows();
    if n < min_samples {
        return Ok(vec![None; n]);
    }
    let eps2 = eps * eps;
    let rows = rows.as_standard_layout();
    let points: Vec<&[f64]> = rows
        .outer_iter()
        .map(|r| r.to_slice().expect("standard layout"))
        .collect();

    // Pass 1: core flags from neighbour counts (the point itself included).
    let core: Vec<bool> = (0..n)
        .into_par_iter()
        .map(|i| {
            let p = points[i];
            let mut count = 0usize;
            for q in &points {
                if squared_distance(p, q) <= eps2 {
                    count += 1;
                    if count >= min_samples {
                        return true;
                    }
                }
            }
            false
        })
        .collect();

    // Pass 2: grow each cluster from its lowest-index unlabelled core point (sklearn's
    // dbscan_inner). Only core points are expanded; each is expanded once.
    let mut labels: Vec<Option<usize>> = vec![None; n];
    let mut next_id = 0usize;
    let mut stack = Vec::new();
    for seed in 0..n {
        if labels[seed].is_some() || !core[seed] {
            continue;
        }
        labels[seed] = Some(next_id);
        stack.push(seed);
        while let Some(i) = stack.pop() {
            // Only core points are pushed.
            let p = points[i];
            for (j, q) in points.iter().enumerate() {
                if labels[j].is_none() && squared_distance(p, q) <= eps2 {
                    labels[j] = Some(next_id);
                    if core[j] {
                        stack.push(j);
                    }
                }
            }
        }
        next_id += 1;
    }
    Ok(labels)
}

/// `‖a − b‖²`, summed in column order.
pub(crate) fn squared_distance(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// Rejects an empty matrix (no rows or no columns) and non-finite entries.
pub(crate) fn check_rows(rows: ArrayView2<f64>, what: &str) -> Result<(), StatsError> {
    if rows.nrows() == 0 || rows.ncols() == 0 {
        return Err(StatsError::Invalid(format!(
            "{what} needs at least one row and one column, got {}×{}",
            rows.nrows(),
            rows.ncols()
        )));
    }
    if rows.iter().any(|v| !v.is_finite()) {
        return Err(StatsError::NonFinite);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{array, Array2};

    /// Two tight blobs of 5 around (0, 0) and (10, 10), and an outlier at (5, −5).
    fn blobs() -> Array2<f64> {
        array![
            [0.0, 0.0],
            [10.0, 10.0],
            [0.1, 0.0],
            [10.1, 10.0],
            [0.0, 0.1],
            [5.0, -5.0],
            [10.0, 10.1],
            [-0.1, 0.0],
            [9.9, 10.0],
            [0.0, -0.1],
            [10.0, 9.9],
        ]
    }

    #[test]
    fn two_blobs_and_an_outlier() {
        let labels = dbscan(blobs().view(), 0.5, 3).unwrap();
        let (a, b) = (Some(0), Some(1));
        assert_eq!(
            labels,
            vec![a, b, a, b, a, None, b, a, b, a, b],
            "ids follow each cluster's first core point"
        );
    }

    #[test]
    fn eps_is_inclusive_and_self_counts() {
        // Points 1 apart on a line: with eps = 1 each inner point has 3 neighbours (itself
        // and both sides), the ends 2.
        let x = array![[0.0], [1.0], [2.0], [3.0]];
        assert_eq!(dbscan(x.view(), 1.0, 3).unwrap(), vec![Some(0); 4]);
        // min_samples = 1: every point is core; isolated points are singleton clusters.
        let y = array![[0.0], [5.0], [5.5], [20.0]];
        assert_eq!(
            dbscan(y.view(), 1.0, 1).unwrap(),
            vec![Some(0), Some(1), Some(1), Some(2)]
        );
        // min_samples = 2 makes the isolated ones noise.
        assert_eq!(
            dbscan(y.view(), 1.0, 2).unwrap(),
            vec![None, Some(0), Some(0), None]
        );
    }

    #[test]
    fn border_point_goes_to_the_first_cluster() {
        // A border point at 2.0, exactly eps = 1.5 from a core point of each of two dense
        // groups (3.5 … 4.2 and −0.2 … 0.5), with only 3 neighbours itself (< min_samples 4).
        // The right group's first core point comes first, so it is cluster 0 and claims it.
        let x = array![
            [2.0],
            [3.5],
            [3.8],
            [4.0],
            [4.2],
            [0.5],
            [0.2],
            [0.0],
            [-0.2]
        ];
        let labels = dbscan(x.view(), 1.5, 4).unwrap();
        let (a, b) = (Some(0), Some(1));
        assert_eq!(labels, vec![a, a, a, a, a, b, b, b, b]);
    }

    #[test]
    fn a_small_cluster_of_a_core_point_is_kept() {
        // eps = 1, min_samples = 4. 0.0 is core (−0.6, −0.3, 0.0, 1.0); 1.0 is its border
        // (3 neighbours). 2.0 is core (1.0, 2.0, 2.8, 3.0), but 1.0 is already taken, so its
        // cluster is {2.0, 2.8, 3.0}: fewer than min_samples points, which sklearn keeps (and
        // petal-clustering 0.14 would drop, making the core point 2.0 noise).
        let x = array![[-0.6], [-0.3], [0.0], [1.0], [2.0], [2.8], [3.0]];
        let labels = dbscan(x.view(), 1.0, 4).unwrap();
        let (a, b) = (Some(0), Some(1));
        assert_eq!(labels, vec![a, a, a, a, b, b, b]);
    }

    #[test]
    fn identical_points_form_one_cluster() {
        let x = Array2::from_elem((6, 3), 1.25);
        assert_eq!(dbscan(x.view(), 1e-9, 6).unwrap(), vec![Some(0); 6]);
        assert_eq!(dbscan(x.view(), 1e-9, 7).unwrap(), vec![None; 6]);
    }

    #[test]
    fn fewer_points_than_min_samples_is_all_noise() {
        let x = array![[0.0, 0.0], [0.0, 0.0]];
        assert_eq!(dbscan(x.view(), 10.0, 3).unwrap(), vec![None, None]);
    }

    #[test]
    fn bad_input_is_an_error() {
        let x = blobs();
        let mut nan = x.clone();
        nan[[3, 1]] = f64::NAN;
        assert_eq!(dbscan(nan.view(), 0.5, 3), Err(StatsError::NonFinite));
        let mut inf = x.clone();
        inf[[0, 0]] = f64::INFINITY;
        assert_eq!(dbscan(inf.view(), 0.5, 3), Err(StatsError::NonFinite));
        for eps in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(matches!(
                dbscan(x.view(), eps, 3),
                Err(StatsError::Invalid(_))
            ));
        }
        assert!(matches!(
            dbscan(x.view(), 0.5, 0),
            Err(StatsError::Invalid(_))
        ));
        let empty = Array2::<f64>::zeros((0, 2));
        assert!(matches!(
            dbscan(empty.view(), 0.5, 3),
            Err(StatsError::Invalid(_))
        ));
        let no_cols = Array2::<f64>::zeros((4, 0));
        assert!(matches!(
            dbscan(no_cols.view(), 0.5, 3),
            Err(StatsError::Invalid(_))
        ));
    }

    #[test]
    fn column_major_input() {
        let x = blobs();
        let f = x.t().to_owned();
        let labels = dbscan(f.t(), 0.5, 3).unwrap();
        assert_eq!(labels, dbscan(x.view(), 0.5, 3).unwrap());
    }
}
