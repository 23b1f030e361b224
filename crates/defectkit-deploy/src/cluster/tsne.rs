//! 2-D Barnes-Hut t-SNE of embeddings (the bhtsne crate), deterministic for a seed.
//!
//! bhtsne draws randomness in two places, both from an unseeded thread-local RNG: the initial
//! embedding and the vantage points of its nearest-neighbour tree. Here neither runs: the
//! initial embedding is drawn from N(0, 10⁻⁴) (bhtsne's and sklearn's random init) by a
//! SplitMix64 generator seeded with [`TsneOptions::seed`] and handed to bhtsne, and the
//! max(1, ⌊3·perplexity⌋) nearest neighbours of each row are found exactly (brute force,
//! O(N²·d), in parallel per row; ties broken by index) and handed to
//! `barnes_hut_with_neighbors`. bhtsne's parallel sums (P's normalizer,
//! Z, the re-centring) would be reduced in a schedule-dependent order on a multi-threaded
//! pool, so the optimization runs on a private one-thread rayon pool: the same rows and
//! options give the same bits on every run. Its defaults are kept (early exaggeration 12 for
//! the first 250 iterations, momentum 0.5 then 0.8) except the learning rate: 4·max(N/48, 50),
//! scikit-learn's step on bhtsne's gradient, which lacks scikit-learn's factor 4 (with bhtsne's
//! own rate, clustered data collapsed onto a few points).
//!
//! Every input bhtsne would panic on (perplexity too large for N, a neighbour table with k = 0
//! or k ≥ N, theta ≤ 0 or NaN, …) is refused first with [`StatsError`]; theta = 0 (which
//! bhtsne refuses) is run as exact repulsion. Non-finite rows, identical rows and a map that
//! is not finite are errors too.

use bhtsne::{tSNE, Neighbor};
use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;

use crate::stats::StatsError;

/// t-SNE options.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TsneOptions {
    /// Effective number of neighbours (> 0, and 3·perplexity < N − 1); 5–50 is usual. Each
    /// point's affinities span its max(1, ⌊3·perplexity⌋) nearest neighbours.
    pub perplexity: f64,
    /// Gradient-descent iterations (≥ 1; the first 250 use early exaggeration).
    pub iterations: usize,
    /// Barnes-Hut accuracy (≥ 0; smaller is more exact and slower; 0.5 is usual; 0 computes
    /// the repulsion exactly, every pair, O(N²) per iteration).
    pub theta: f64,
    /// Seed of the initial embedding.
    pub seed: u64,
}

impl Default for TsneOptions {
    /// sklearn's `TSNE` defaults: perplexity 30, 1000 iterations, angle 0.5; seed 0.
    fn default() -> Self {
        Self {
            perplexity: 30.0,
            iterations: 1000,
            theta: 0.5,
            seed: 0,
        }
    }
}

use defectkit_core::rng::SplitMix64;

/// Checks the rows and options; returns the neighbour count k = max(1, ⌊3·perplexity⌋).
fn validate(rows: ArrayView2<'_, f64>, opts: &TsneOptions) -> Result<usize, StatsError> {
    let (n, d) = rows.dim();
    let p = opts.perplexity;
    if !(p.is_finite() && p > 0.0) {
        return Err(StatsError::Invalid(format!(
            "t-SNE perplexity {p} must be a finite number > 0"
        )));
    }
    if !(opts.theta.is_finite() && opts.theta >= 0.0) {
        return Err(StatsError::Invalid(format!(
            "t-SNE theta {} must be finite and ≥ 0",
            opts.theta
        )));
    }
    if opts.iterations == 0 {
        return Err(StatsError::Invalid(
            "t-SNE needs at least one iteration".into(),
        ));
    }
    // Also keeps k ≤ N − 2 (bhtsne would panic on k ≥ N) and N ≥ 2.
    if 3.0 * p >= n as f64 - 1.0 {
        return Err(StatsError::Invalid(format!(
            "t-SNE perplexity {p} is too large for {n} rows: 3·perplexity must be < N − 1 \
             (lower the perplexity below {:.2}, or embed more rows)",
            (n as f64 - 1.0) / 3.0
        )));
    }
    if n > u32::MAX as usize {
        return Err(StatsError::Invalid(format!(
            "t-SNE of {n} rows: bhtsne indexes rows with u32"
        )));
    }
    if d == 0 {
        return Err(StatsError::Invalid(
            "t-SNE needs at least one feature".into(),
        ));
    }
    if rows.iter().any(|v| !v.is_finite()) {
        return Err(StatsError::NonFinite);
    }
    let first = rows.row(0);
    if rows.rows().into_iter().all(|r| r == first) {
        return Err(StatsError::Invalid(format!(
            "t-SNE of {n} identical rows: there is no neighbourhood structure to embed"
        )));
    }
    Ok(((3.0 * p) as usize).max(1))
}

/// The k nearest neighbours of every row (Euclidean, exact), ascending by (distance, index).
fn neighbours(rows: ArrayView2<'_, f64>, k: usize) -> Result<Vec<Vec<Neighbor<f64>>>, StatsError> {
    let n = rows.nrows();
    let table: Vec<Vec<Neighbor<f64>>> = (0..n)
        .into_par_iter()
        .map(|i| {
            let a = rows.row(i);
            let mut all: Vec<(f64, usize)> = (0..n)
                .filter(|&j| j != i)
                .map(|j| {
                    let sq: f64 = a
                        .iter()
                        .zip(rows.row(j))
                        .map(|(x, y)| (x - y) * (x - y))
                        .sum();
                    (sq, j)
                })
                .collect();
            let order =
                |a: &(f64, usize), b: &(f64, usize)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
            all.select_nth_unstable_by(k - 1, order);
            all.truncate(k);
            all.sort_unstable_by(order);
            all.into_iter()
                .map(|(sq, index)| Neighbor {
                    index,
                    distance: sq.sqrt(),
                })
                .collect()
        })
        .collect();
    if table.iter().flatten().any(|nb| !nb.distance.is_finite()) {
        // Finite rows whose squared distances overflow f64.
        return Err(StatsError::NonFinite);
    }
    Ok(table)
}

/// 2-D Barnes-Hut t-SNE of `rows` (N×d, f64): an N×2 embedding, centred at 0 —
/// deterministic for a seed (same rows and options, same bits).
pub fn tsne_2d(rows: ArrayView2<'_, f64>, opts: &TsneOptions) -> Result<Array2<f64>, StatsError> {
    let k = validate(rows, opts)?;
    let n = rows.nrows();
    let table = neighbours(rows, k)?;
    let mut rng = SplitMix64(opts.seed);
    let init: Vec<f64> = (0..n * 2).map(|_| 1e-4 * rng.gauss()).collect();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .map_err(|e| StatsError::Invalid(format!("t-SNE: no thread pool: {e}")))?;
    // bhtsne asserts theta > 0; the smallest positive one squares to 0, so every cell is
    // opened down to its leaves: the exact repulsion that theta = 0 asks for.
    let theta = if opts.theta == 0.0 {
        f64::MIN_POSITIVE
    } else {
        opts.theta
    };
    let ids: Vec<usize> = (0..n).collect();
    let y = pool.install(|| {
        let mut t: tSNE<f64, usize, 2> = tSNE::new(&ids);
        // scikit-learn's learning rate ("auto": max(N / early_exaggeration / 4, 50)) applies to
        // a gradient carrying the factor 4 = 2(ν+1)/ν of the Student-t kernel; bhtsne's gradient
        // omits it (as van der Maaten's C++ does), so the same step needs 4× the rate. With
        // bhtsne's own default the maps of clustered data collapsed whole classes onto single
        // points (bench/results/cluster.md, 2026-12-02: 10 distinct points for 1725 rows).
        let lr = (n as f64 / 12.0 / 4.0).max(50.0) * 4.0;
        t.perplexity(opts.perplexity)
            .learning_rate(lr)
            .epochs(opts.iterations)
            .initial_embedding(init)
            .barnes_hut_with_neighbors(theta, &table);
        t.embedding()
    });
    if y.len() != n * 2 || y.iter().any(|v| !v.is_finite()) {
        return Err(StatsError::Invalid(
            "t-SNE diverged: the embedding is not finite".into(),
        ));
    }
    Array2::from_shape_vec((n, 2), y).map_err(|e| StatsError::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tight classes (a mean + a 6-D latent factor + small noise, in 48-D; MVTec's test size) as trained
    /// embeddings look: with bhtsne's own learning rate whole classes collapsed onto single
    /// points; every image must keep its own point.
    #[test]
    fn tight_classes_do_not_collapse() {
        let mut rng = SplitMix64(11);
        let (classes, per, d, rank) = (10, 172, 48, 6);
        let mut rows = Array2::<f64>::zeros((classes * per, d));
        for c in 0..classes {
            let mean: Vec<f64> = (0..d).map(|_| rng.gauss()).collect();
            let factors: Vec<f64> = (0..d * rank).map(|_| 0.245 * rng.gauss()).collect();
            for i in 0..per {
                let z: Vec<f64> = (0..rank).map(|_| rng.gauss()).collect();
                for j in 0..d {
                    let f: f64 = (0..rank).map(|r| factors[j * rank + r] * z[r]).sum();
                    rows[[c * per + i, j]] = mean[j] + f + 0.15 * rng.gauss();
                }
            }
        }
        let opts = TsneOptions {
            perplexity: 30.0,
            iterations: 1000,
            theta: 0.5,
            seed: 0,
        };
        let y = tsne_2d(rows.view(), &opts).unwrap();
        let mut spots: Vec<(u64, u64)> = y
            .axis_iter(ndarray::Axis(0))
            .map(|r| (r[0].to_bits(), r[1].to_bits()))
            .collect();
        spots.sort_unstable();
        spots.dedup();
        assert_eq!(
            spots.len(),
            classes * per,
            "t-SNE collapsed points together"
        );
    }

    /// `n` points around `centres` (cycled), spread `spread`, in `d` dimensions.
    fn blobs(n: usize, d: usize, centres: usize, spread: f64, seed: u64) -> Array2<f64> {
        let mut rng = SplitMix64(seed);
        let mut x = Array2::zeros((n, d));
        for i in 0..n {
            let c = i % centres;
            for j in 0..d {
                let centre = if j % centres == c { 10.0 } else { 0.0 };
                x[[i, j]] = centre + spread * rng.gauss();
            }
        }
        x
    }

    fn opts(perplexity: f64) -> TsneOptions {
        TsneOptions {
            perplexity,
            iterations: 300,
            theta: 0.5,
            seed: 7,
        }
    }

    fn invalid(r: Result<Array2<f64>, StatsError>) -> bool {
        matches!(r, Err(StatsError::Invalid(_)))
    }

    #[test]
    fn refuses_what_bhtsne_would_panic_on() {
        let x = blobs(10, 3, 2, 1.0, 1);
        // 3·3 = 9 ≥ N − 1 = 9: bhtsne would ask for more neighbours than there are.
        assert!(invalid(tsne_2d(x.view(), &opts(3.0))));
        assert!(tsne_2d(x.view(), &opts(2.9)).is_ok());
        for p in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(invalid(tsne_2d(x.view(), &opts(p))), "perplexity {p}");
        }
        // A perplexity under 1/3 still gets one neighbour (bhtsne panics on none).
        assert!(tsne_2d(x.view(), &opts(0.2)).is_ok());
        for theta in [-0.5, f64::NAN, f64::INFINITY] {
            let o = TsneOptions { theta, ..opts(2.0) };
            assert!(invalid(tsne_2d(x.view(), &o)), "theta {theta}");
        }
        // theta = 0 (bhtsne panics on it): run as exact repulsion.
        let exact = tsne_2d(
            x.view(),
            &TsneOptions {
                theta: 0.0,
                ..opts(2.0)
            },
        )
        .unwrap();
        assert!(exact.iter().all(|v| v.is_finite()));
        let o = TsneOptions {
            iterations: 0,
            ..opts(2.0)
        };
        assert!(invalid(tsne_2d(x.view(), &o)));
        // Tiny N: 0, 1, 2, 4 rows (perplexity 1 needs N ≥ 5).
        for n in [0, 1, 2, 4] {
            let x = blobs(n, 3, 2, 1.0, 2);
            assert!(invalid(tsne_2d(x.view(), &opts(1.0))), "N = {n}");
        }
        assert!(tsne_2d(blobs(5, 3, 2, 1.0, 2).view(), &opts(1.0)).is_ok());
        let mut nan = blobs(20, 3, 2, 1.0, 3);
        nan[[4, 1]] = f64::NAN;
        assert_eq!(tsne_2d(nan.view(), &opts(2.0)), Err(StatsError::NonFinite));
        nan[[4, 1]] = f64::INFINITY;
        assert_eq!(tsne_2d(nan.view(), &opts(2.0)), Err(StatsError::NonFinite));
        let mut huge = blobs(20, 3, 2, 1.0, 3);
        huge[[0, 0]] = 1e200;
        assert_eq!(tsne_2d(huge.view(), &opts(2.0)), Err(StatsError::NonFinite));
        let same = Array2::from_elem((20, 3), 1.5);
        assert!(invalid(tsne_2d(same.view(), &opts(2.0))));
        let no_features = Array2::<f64>::zeros((20, 0));
        assert!(invalid(tsne_2d(no_features.view(), &opts(2.0))));
    }

    #[test]
    fn duplicated_rows_embed_without_trouble() {
        // Half the rows are copies of one point: zero distances, tied neighbours.
        let mut x = blobs(30, 4, 3, 1.0, 4);
        for i in 0..15 {
            let r = x.row(0).to_owned();
            x.row_mut(i).assign(&r);
        }
        let y = tsne_2d(x.view(), &opts(3.0)).unwrap();
        assert_eq!(y.dim(), (30, 2));
        assert!(y.iter().all(|v| v.is_finite()));
        assert_eq!(y, tsne_2d(x.view(), &opts(3.0)).unwrap());
    }

    #[test]
    fn same_seed_same_bits_other_seed_other_map() {
        let x = blobs(60, 5, 3, 1.0, 5);
        let a = tsne_2d(x.view(), &opts(5.0)).unwrap();
        let b = tsne_2d(x.view(), &opts(5.0)).unwrap();
        let bits = |y: &Array2<f64>| y.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&a), bits(&b));
        let c = tsne_2d(
            x.view(),
            &TsneOptions {
                seed: 8,
                ..opts(5.0)
            },
        )
        .unwrap();
        assert_ne!(bits(&a), bits(&c));
        // Centred, like bhtsne leaves it.
        for col in a.columns() {
            assert!(col.mean().unwrap().abs() < 1e-9);
        }
    }

    #[test]
    fn separates_blobs() {
        let x = blobs(90, 6, 3, 0.5, 6);
        let o = TsneOptions {
            iterations: 500,
            ..opts(10.0)
        };
        let y = tsne_2d(x.view(), &o).unwrap();
        // Each point's nearest 2-D neighbour is from its own blob.
        let n = y.nrows();
        let mut same = 0;
        for i in 0..n {
            let nearest = (0..n)
                .filter(|&j| j != i)
                .min_by(|&a, &b| {
                    let da = (&y.row(i) - &y.row(a)).mapv(|v| v * v).sum();
                    let db = (&y.row(i) - &y.row(b)).mapv(|v| v * v).sum();
                    da.total_cmp(&db)
                })
                .unwrap();
            same += usize::from(nearest % 3 == i % 3);
        }
        assert_eq!(same, n);
    }
}
