//! PatchCore's greedy k-center coreset: pick a subset of the points such that every point
//! is close to a picked one, so that nearest-neighbour distances to the subset approximate
//! those to all points at a fraction of the memory and time.
//!
//! As PatchCore (Roth et al. 2022, `ApproximateGreedyCoresetSampler`) and anomalib's
//! `KCenterGreedy` do it: the points are (optionally) mapped by a seeded Gaussian random
//! projection to fewer dimensions (PatchCore: 128, only when C > 128) for the selection; a
//! seeded random first pick; then repeatedly the point farthest from the picked set
//! (ties: the lowest index). The reported `radius` is measured again in the full dimension
//! and exactly, so "every point lies within `radius` of a picked one" holds by
//! construction whatever the projection did.

use ndarray::ArrayView2;
use rayon::prelude::*;

use defectkit_core::rng::SplitMix64;

use super::{nearest_rows, squared_distance};

/// The dimension PatchCore projects patches to for the selection.
pub const PATCHCORE_PROJECTION: usize = 128;

/// Points per parallel task of the selection's update.
const CHUNK: usize = 1024;

/// The result of [`greedy_coreset`].
#[derive(Debug, Clone, PartialEq)]
pub struct Coreset {
    /// Indices of the picked points, in the order picked (the first is the seeded pick).
    pub indices: Vec<usize>,
    /// The largest full-dimension distance of any point to its nearest picked point
    /// (rounded up to f32): the coverage radius.
    pub radius: f32,
}

/// Greedy k-center selection of `n_select` of the rows of `points` (P×C), deterministic per
/// `seed`. With `projection_dim = Some(k)` and k < C the selection runs on the points
/// mapped by a seeded k×C Gaussian matrix (entries N(0, 1/k)); otherwise on the points
/// themselves. Distances are computed in f64.
///
/// `n_select` is clamped to [1, P]; the selection stops early (fewer indices) only when
/// every remaining point coincides with a picked one. P = 0 gives no indices and radius 0.
/// The points should be finite (the memory bank checks its maps first).
pub fn greedy_coreset(
    points: ArrayView2<'_, f32>,
    n_select: usize,
    seed: u64,
    projection_dim: Option<usize>,
) -> Coreset {
    let (p, c) = points.dim();
    if p == 0 {
        return Coreset {
            indices: Vec::new(),
            radius: 0.0,
        };
    }
    let k = n_select.clamp(1, p);
    let mut rng = SplitMix64(seed);
    let first = rng.below(p);
    let rows: Vec<f32> = points.iter().copied().collect(); // standard layout P×C
    let projected = match projection_dim {
        Some(dim) if dim > 0 && dim < c => Some(project(&rows, p, c, dim, &mut rng)),
        _ => None,
    };
    let (features, dim) = match &projected {
        Some(f) => (f.as_slice(), projection_dim.expect("projected")),
        None => (rows.as_slice(), c),
    };
    let row = |i: usize| &features[i * dim..(i + 1) * dim];

    let mut min_d = vec![f64::INFINITY; p];
    let mut indices = vec![first];
    let mut next = update(&mut min_d, row(first), features, dim);
    while indices.len() < k {
        let (best, value) = next;
        if value.total_cmp(&0.0).is_le() {
            break; // every point coincides with a picked one
        }
        indices.push(best);
        next = update(&mut min_d, row(best), features, dim);
    }

    let worst = if projected.is_none() {
        // The selection's distances are the full-dimension ones already.
        min_d.iter().copied().fold(0.0f64, f64::max)
    } else {
        coverage(&rows, c, &indices)
    };
    Coreset {
        indices,
        radius: round_up(worst.sqrt()),
    }
}

/// Lowers `min_d` to the squared distance to `centre` and returns the (index, value) of the
/// largest entry (the lowest index on ties).
fn update(min_d: &mut [f64], centre: &[f32], features: &[f32], dim: usize) -> (usize, f64) {
    min_d
        .par_chunks_mut(CHUNK)
        .enumerate()
        .map(|(chunk, part)| {
            let mut best = (usize::MAX, f64::NEG_INFINITY);
            for (k, m) in part.iter_mut().enumerate() {
                let i = chunk * CHUNK + k;
                let d = squared_distance(&features[i * dim..(i + 1) * dim], centre);
                if d < *m {
                    *m = d;
                }
                if m.total_cmp(&best.1).is_gt() {
                    best = (i, *m);
                }
            }
            best
        })
        .reduce(
            || (usize::MAX, f64::NEG_INFINITY),
            |a, b| match a.1.total_cmp(&b.1) {
                std::cmp::Ordering::Greater => a,
                std::cmp::Ordering::Less => b,
                std::cmp::Ordering::Equal => {
                    if a.0 <= b.0 {
                        a
                    } else {
                        b
                    }
                }
            },
        )
}

/// The largest over all points of the squared distance to the nearest picked point, in the
/// full dimension (exact: [`nearest_rows`]).
fn coverage(rows: &[f32], c: usize, picked: &[usize]) -> f64 {
    let centres: Vec<f32> = picked
        .iter()
        .flat_map(|&s| rows[s * c..(s + 1) * c].iter().copied())
        .collect();
    nearest_rows(rows, &centres, c)
        .into_iter()
        .map(|(d, _)| d)
        .fold(0.0, f64::max)
}

/// The rows (P×C) times a seeded Gaussian k×C matrix (entries N(0, 1/k)), as P×k f32.
fn project(rows: &[f32], p: usize, c: usize, k: usize, rng: &mut SplitMix64) -> Vec<f32> {
    let scale = 1.0 / (k as f64).sqrt();
    let matrix: Vec<f64> = (0..k * c).map(|_| rng.gauss() * scale).collect();
    let mut out = vec![0.0f32; p * k];
    out.par_chunks_mut(k).enumerate().for_each(|(i, y)| {
        let x = &rows[i * c..(i + 1) * c];
        for (r, v) in y.iter_mut().enumerate() {
            let m = &matrix[r * c..(r + 1) * c];
            *v = x.iter().zip(m).map(|(a, b)| *a as f64 * b).sum::<f64>() as f32;
        }
    });
    out
}

/// The smallest f32 ≥ `v` (v ≥ 0 finite; NaN stays NaN).
fn round_up(v: f64) -> f32 {
    let r = v as f32;
    if (r as f64) < v {
        f32::from_bits(r.to_bits() + 1) // the next f32 up (r ≥ 0 here)
    } else {
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    #[test]
    fn picks_the_farthest_points_on_a_line() {
        // Points 0, 1, 2, 10 on a line; the seeded first pick, then the farthest each time.
        let pts = Array2::from_shape_vec((4, 1), vec![0.0f32, 1.0, 2.0, 10.0]).unwrap();
        let all = greedy_coreset(pts.view(), 4, 3, None);
        assert_eq!(all.indices.len(), 4);
        assert_eq!(all.radius, 0.0);
        let two = greedy_coreset(pts.view(), 2, 3, None);
        let first = two.indices[0];
        let farthest = if first == 3 { 0 } else { 3 };
        assert_eq!(two.indices[1], farthest);
        let picked: Vec<f32> = two.indices.iter().map(|&i| pts[[i, 0]]).collect();
        let want = pts
            .column(0)
            .iter()
            .map(|x| {
                picked
                    .iter()
                    .map(|p| (x - p).abs())
                    .fold(f32::MAX, f32::min)
            })
            .fold(0.0f32, f32::max);
        assert_eq!(two.radius, want);
    }

    #[test]
    fn duplicates_stop_the_selection_and_sizes_are_clamped() {
        let pts = Array2::from_elem((5, 3), 1.25f32);
        let c = greedy_coreset(pts.view(), 4, 0, None);
        assert_eq!(c.indices.len(), 1);
        assert_eq!(c.radius, 0.0);
        assert_eq!(greedy_coreset(pts.view(), 0, 0, None).indices.len(), 1);
        let empty = Array2::<f32>::zeros((0, 3));
        assert!(greedy_coreset(empty.view(), 3, 0, Some(2))
            .indices
            .is_empty());
    }

    #[test]
    fn round_up_never_rounds_down() {
        for v in [0.1f64, 1.0 / 3.0, 2.0f64.sqrt(), 1e-30, 7.0] {
            assert!(round_up(v) as f64 >= v);
            assert!((round_up(v) as f64 - v) <= v * 1.2e-7);
        }
    }
}
