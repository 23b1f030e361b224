//! Choosing DBSCAN's `eps`: the k-distance curve ([`k_distances`]) and its knee ([`knee`]).
//!
//! Sort every point's distance to its k-th nearest neighbour (k = `min_samples`); the curve is
//! flat through the dense regions and rises steeply through the sparse points. The knee, where
//! it turns, is the usual `eps`: points below it are core points (their `min_samples`-th
//! neighbour, themselves included, is within `eps`), points above are border or noise.

use ndarray::ArrayView2;
use rayon::prelude::*;

use super::dbscan::{check_rows, squared_distance};
use crate::stats::StatsError;

/// Normalized chord distances at or below this count as a straight line (no knee).
const STRAIGHT: f64 = 1e-9;

/// The sorted distance of every point to its k-th nearest neighbour, ascending: the
/// k-distance curve. The point itself counts as its first neighbour (distance 0), as
/// scikit-learn's `NearestNeighbors(n_neighbors=k).fit(X).kneighbors(X)[0][:, k - 1]` does
/// when queried with the training rows, so this is the distance to the (k−1)-th *other*
/// point and matches DBSCAN's core-point rule for `min_samples = k`: a point is core exactly
/// when its k-distance is ≤ `eps` (up to rounding:
/// DBSCAN compares squared distances). `k = 1` gives all zeros. Euclidean, brute force
/// (O(N²·d)).
///
/// # Errors
/// [`StatsError::Invalid`] for `k = 0` or an empty matrix, [`StatsError::TooFewRows`] for
/// `k` > rows (sklearn refuses it too), [`StatsError::NonFinite`] for NaN or ±∞.
pub fn k_distances(rows: ArrayView2<f64>, k: usize) -> Result<Vec<f64>, StatsError> {
    if k == 0 {
        return Err(StatsError::Invalid("k-distances need k ≥ 1".into()));
    }
    check_rows(rows, "k-distances")?;
    let n = rows.nrows();
    if k > n {
        return Err(StatsError::TooFewRows { needed: k, got: n });
    }
    let rows = rows.as_standard_layout();
    let points: Vec<&[f64]> = rows
        .outer_iter()
        .map(|r| r.to_slice().expect("standard layout"))
        .collect();
    let mut out: Vec<f64> = points
        .par_iter()
        .map_init(
            || Vec::with_capacity(n),
            |d2, p| {
                d2.clear();
                // The point itself gives exactly 0.
                d2.extend(points.iter().map(|q| squared_distance(p, q)));
                let (_, kth, _) = d2.select_nth_unstable_by(k - 1, f64::total_cmp);
                kth.sqrt()
            },
        )
        .collect();
    out.sort_unstable_by(f64::total_cmp);
    Ok(out)
}

/// The knee of an ascending curve: the index of the point farthest from the chord joining
/// its first and last points, both axes first scaled to [0, 1] (index i ↦ i/(n−1), value
/// v ↦ (v − v₀)/(v_last − v₀)); returns `(index, value)`. Ties go to the lower index. Works
/// for both bends (convex, as k-distance curves are: flat then steep; and concave).
///
/// Fallback, when there is no bend to find — fewer than 3 points, a constant curve, or a
/// straight line (every point within 1e-9 of the chord in the scaled units) — the lower
/// median: index `(n − 1) / 2` and its value.
///
/// `None` for an empty curve, a NaN or infinite value, or a curve that is not ascending
/// (non-decreasing).
pub fn knee(curve: &[f64]) -> Option<(usize, f64)> {
    let n = curve.len();
    if n == 0 || curve.iter().any(|v| !v.is_finite()) || curve.windows(2).any(|w| w[1] < w[0]) {
        return None;
    }
    let fallback = Some(((n - 1) / 2, curve[(n - 1) / 2]));
    let (first, last) = (curve[0], curve[n - 1]);
    let rise = last - first;
    if n < 3 || rise <= 0.0 {
        return fallback;
    }
    let run = (n - 1) as f64;
    // The chord is y = x in the scaled units; the distance to it is |x − y|/√2, and √2 does
    // not change the argmax.
    let mut best = (0usize, 0.0f64);
    for (i, v) in curve.iter().enumerate() {
        let gap = (i as f64 / run - (v - first) / rise).abs();
        if gap > best.1 {
            best = (i, gap);
        }
    }
    if best.1 <= STRAIGHT {
        return fallback;
    }
    Some((best.0, curve[best.0]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{array, Array2};

    #[test]
    fn k_distances_count_the_point_itself() {
        // A line of points at 0, 1, 3, 7.
        let x = array![[0.0], [1.0], [3.0], [7.0]];
        assert_eq!(k_distances(x.view(), 1).unwrap(), vec![0.0; 4]);
        // Nearest other point: 1, 1, 2, 4.
        assert_eq!(k_distances(x.view(), 2).unwrap(), vec![1.0, 1.0, 2.0, 4.0]);
        // Second nearest other: 0→3, 1→2, 3→3, 7→6.
        assert_eq!(k_distances(x.view(), 3).unwrap(), vec![2.0, 3.0, 3.0, 6.0]);
        // The farthest: 0→7, 1→6, 3→4, 7→7.
        assert_eq!(k_distances(x.view(), 4).unwrap(), vec![4.0, 6.0, 7.0, 7.0]);
        assert_eq!(
            k_distances(x.view(), 5),
            Err(StatsError::TooFewRows { needed: 5, got: 4 })
        );
    }

    #[test]
    fn k_distances_match_dbscan_cores() {
        // A point is core for min_samples = k exactly when its k-distance ≤ eps.
        let x = array![
            [0.0, 0.0],
            [3.0, 4.0],
            [30.0, 40.0],
            [0.0, 5.0],
            [90.0, 90.0]
        ];
        let d = k_distances(x.view(), 3).unwrap();
        assert_eq!(&d[..3], &[5.0; 3]);
        let labels = super::super::dbscan::dbscan(x.view(), 5.0, 3).unwrap();
        assert_eq!(labels, vec![Some(0), Some(0), None, Some(0), None]);
    }

    #[test]
    fn identical_points_have_zero_k_distance() {
        let x = Array2::from_elem((5, 4), -2.5);
        assert_eq!(k_distances(x.view(), 5).unwrap(), vec![0.0; 5]);
        assert_eq!(knee(&[0.0; 5]), Some((2, 0.0)), "flat curve: the median");
    }

    #[test]
    fn k_distances_reject_bad_input() {
        let mut x = array![[0.0, 1.0], [2.0, 3.0]];
        assert!(matches!(
            k_distances(x.view(), 0),
            Err(StatsError::Invalid(_))
        ));
        x[[1, 0]] = f64::NAN;
        assert_eq!(k_distances(x.view(), 1), Err(StatsError::NonFinite));
        let empty = Array2::<f64>::zeros((0, 3));
        assert!(matches!(
            k_distances(empty.view(), 1),
            Err(StatsError::Invalid(_))
        ));
    }

    #[test]
    fn knee_of_flat_then_steep() {
        // Flat 1.0 for 0..=79, then rising by 1 per step up to 21 at 99: the bend is at 79.
        let curve: Vec<f64> = (0..100)
            .map(|i| if i < 80 { 1.0 } else { 1.0 + (i - 79) as f64 })
            .collect();
        assert_eq!(knee(&curve), Some((79, 1.0)));
        // A smooth bend (a gentle slope, then a parabola from 60): the knee is past 60.
        let curve: Vec<f64> = (0..100)
            .map(|i| {
                let i = i as f64;
                0.01 * i + if i > 60.0 { (i - 60.0).powi(2) } else { 0.0 }
            })
            .collect();
        // argmax of i/99 − y(i)/y(99): 1/99 = (0.01 + 2(i − 60))/1521.99 near i ≈ 67.7.
        assert_eq!(knee(&curve).unwrap().0, 68, "{:?}", knee(&curve));
    }

    #[test]
    fn knee_of_concave_curve() {
        // Steep then flat: the bend is at 5.
        let curve: Vec<f64> = (0..21).map(|i| (i.min(5) * 4) as f64).collect();
        assert_eq!(knee(&curve), Some((5, 20.0)));
    }

    #[test]
    fn knee_fallbacks() {
        assert_eq!(knee(&[]), None);
        assert_eq!(knee(&[3.0]), Some((0, 3.0)));
        assert_eq!(knee(&[1.0, 4.0]), Some((0, 1.0)));
        let line: Vec<f64> = (0..11).map(|i| 0.5 + 0.1 * i as f64).collect();
        assert_eq!(knee(&line), Some((5, line[5])), "straight line: the median");
        assert_eq!(knee(&[1.0, f64::NAN, 2.0]), None);
        assert_eq!(knee(&[1.0, 3.0, 2.0]), None, "not ascending");
    }
}
