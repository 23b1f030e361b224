//! The patch-level detectors (`anomaly::patch`) against their peers
//! (tests/peers/patch_peer.py: NumPy / SciPy 1.17 / scikit-learn 1.9 in the project venv):
//! PaDiM's per-location Gaussian against `sklearn.covariance.LedoitWolf` (and fixed
//! shrinkage on `np.cov`), the map arithmetic against a NumPy re-implementation of torch's
//! `align_corners=False` bilinear and `scipy.ndimage.gaussian_filter`, the greedy coreset
//! against a NumPy k-center greedy, PatchCore's patch scores against
//! `sklearn.neighbors.NearestNeighbors` and its reweighting against a NumPy
//! re-implementation of anomalib's formula. Also: save/load round trips bit for bit, tampered
//! groups are refused, a planted local anomaly peaks where it was planted, and bad inputs are
//! errors that name the problem. Python reads exactly the f32 values Rust uses (as f64).

#[path = "../../../tests/common/mod.rs"]
mod common;

use std::process::Command;
use std::time::Instant;

use defectkit_deploy::anomaly::patch::coreset::greedy_coreset;
use defectkit_deploy::anomaly::patch::gaussian::PatchGaussian;
use defectkit_deploy::anomaly::patch::map::{anomaly_map, gaussian_blur, upsample_bilinear};
use defectkit_deploy::anomaly::patch::memory_bank::PatchMemoryBank;
use defectkit_deploy::anomaly::patch::MapOptions;
use defectkit_deploy::anomaly::{AnomalyError, ClassScorer, Observations, OnnxPart};
use defectkit_deploy::stats::Shrinkage;
use ndarray::{Array2, Array4, ArrayView4, Axis};
use serde_json::{json, Value};

/// The workspace's SplitMix64 (the crate has no `rand`).
use defectkit_core::rng::SplitMix64 as Rng;

// Tests that spawn Python or write HDF5 hold `common::one_at_a_time()`.

/// A class of feature maps: at location l, channel c,
/// z = offset[c][l] + scale[l]·(A·g)_c, g ~ N(0, I) per image and location: correlated,
/// with a mean and spread that vary over the grid.
struct Maps {
    c: usize,
    h: usize,
    w: usize,
    offset: Vec<Vec<f64>>,
    scale: Vec<f64>,
    mix: Vec<Vec<f64>>,
}

impl Maps {
    fn new(rng: &mut Rng, c: usize, h: usize, w: usize) -> Self {
        let offset = (0..c)
            .map(|_| (0..h * w).map(|_| 4.0 * rng.uniform() - 2.0).collect())
            .collect();
        let scale = (0..h * w).map(|_| 0.5 + rng.uniform()).collect();
        let mix = (0..c)
            .map(|i| {
                (0..c)
                    .map(|j| {
                        let diag = if i == j { 1.0 } else { 0.0 };
                        diag + 0.6 * rng.gauss() / (c as f64).sqrt()
                    })
                    .collect()
            })
            .collect();
        Self {
            c,
            h,
            w,
            offset,
            scale,
            mix,
        }
    }

    /// `n` images; `spread` scales g (> 1: outliers everywhere).
    fn sample(&self, rng: &mut Rng, n: usize, spread: f64) -> Array4<f32> {
        let (c, h, w) = (self.c, self.h, self.w);
        let mut out = Array4::<f32>::zeros((n, c, h, w));
        for img in 0..n {
            for l in 0..h * w {
                let g: Vec<f64> = (0..c).map(|_| spread * rng.gauss()).collect();
                for ch in 0..c {
                    let z: f64 = self.mix[ch].iter().zip(&g).map(|(a, b)| a * b).sum();
                    out[[img, ch, l / w, l % w]] = (self.offset[ch][l] + self.scale[l] * z) as f32;
                }
            }
        }
        out
    }
}

/// Pooled embeddings: each image's channel means over the grid (N×C).
fn pooled(maps: &Array4<f32>) -> Array2<f32> {
    maps.mean_axis(Axis(3)).unwrap().mean_axis(Axis(2)).unwrap()
}

/// A batch's embeddings and maps, as a scorer reads them.
struct Batch {
    embeddings: Array2<f32>,
    maps: Array4<f32>,
}

impl Batch {
    fn new(maps: Array4<f32>) -> Self {
        Self {
            embeddings: pooled(&maps),
            maps,
        }
    }

    fn obs(&self) -> Observations<'_> {
        Observations {
            embeddings: self.embeddings.view(),
            recon_error: None,
            recon_local: None,
            maps: Some(self.maps.view()),
        }
    }
}

/// {shape, data} of an array, the f32 values as f64.
fn array_json<'a>(shape: &[usize], data: impl IntoIterator<Item = &'a f32>) -> Value {
    let data: Vec<f64> = data.into_iter().map(|&v| v as f64).collect();
    json!({ "shape": shape, "data": data })
}

fn maps_json(m: &Array4<f32>) -> Value {
    array_json(m.shape(), m.iter())
}

/// Every number of a nested JSON array, row-major.
fn flat(v: &Value) -> Vec<f64> {
    match v {
        Value::Array(items) => items.iter().flat_map(flat).collect(),
        Value::Number(n) => vec![n.as_f64().unwrap()],
        other => panic!("not a number or an array: {other}"),
    }
}

/// Runs the peer on `tasks`; None when Python is unavailable (and peers are not required).
fn peer(tasks: &[Value]) -> Option<Vec<Value>> {
    let py = common::peer_python()?;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tasks.json");
    std::fs::write(&path, serde_json::to_vec(tasks).unwrap()).unwrap();
    let o = Command::new(py)
        .arg(common::repo_root().join("tests/peers/patch_peer.py"))
        .arg(&path)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out: Vec<Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(out.len(), tasks.len());
    Some(out)
}

/// Collects every mismatch, so one run shows them all.
#[derive(Default)]
struct Report(Vec<String>);

impl Report {
    /// |got − want| ≤ rel·max(|got|, |want|) + abs, element by element.
    fn close(&mut self, what: &str, got: &[f64], want: &[f64], rel: f64, abs: f64) {
        if got.len() != want.len() {
            self.0.push(format!(
                "{what}: {} values vs peer {}",
                got.len(),
                want.len()
            ));
            return;
        }
        let bad: Vec<String> = got
            .iter()
            .zip(want)
            .enumerate()
            .filter(|(_, (g, w))| (*g - *w).abs() > rel * g.abs().max(w.abs()) + abs)
            .take(5)
            .map(|(i, (g, w))| format!("[{i}] {g:e} vs {w:e}"))
            .collect();
        if !bad.is_empty() {
            self.0.push(format!("{what}: {}", bad.join(", ")));
        }
    }

    fn check(&mut self, ok: bool, msg: impl FnOnce() -> String) {
        if !ok {
            self.0.push(msg());
        }
    }

    fn finish(self) {
        assert!(
            self.0.is_empty(),
            "{} mismatches:\n{}",
            self.0.len(),
            self.0.join("\n")
        );
    }
}

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

fn opts(side: usize, sigma: f64) -> MapOptions {
    MapOptions { side, sigma }
}

/// (1) PaDiM's per-location Gaussian equals scikit-learn's LedoitWolf (and fixed shrinkage
/// on np.cov) Mahalanobis distances on held-out maps, N > C and N < C.
#[test]
fn patch_gaussian_matches_ledoit_wolf_per_location() {
    let _one = common::one_at_a_time();
    struct Case {
        name: &'static str,
        fit: Batch,
        test: Array4<f32>,
        fixed: Vec<f64>,
    }
    let mut cases = Vec::new();
    for (name, seed, n, c, h, w, fixed) in [
        ("n24_c6_3x4", 1u64, 24, 6, 3, 4, vec![0.0, 0.1, 0.5]),
        ("n10_c12_3x3", 2, 10, 12, 3, 3, vec![0.3, 1.0]),
    ] {
        let mut rng = Rng(seed);
        let g = Maps::new(&mut rng, c, h, w);
        let fit = Batch::new(g.sample(&mut rng, n, 1.0));
        let good = g.sample(&mut rng, 5, 1.0);
        let bad = g.sample(&mut rng, 3, 3.0);
        let test = ndarray::concatenate![Axis(0), good, bad];
        cases.push(Case {
            name,
            fit,
            test,
            fixed,
        });
    }
    let tasks: Vec<Value> = cases
        .iter()
        .map(|c| {
            json!({"kind": "padim", "fit": maps_json(&c.fit.maps), "test": maps_json(&c.test),
                   "fixed": c.fixed})
        })
        .collect();
    let Some(peers) = peer(&tasks) else { return };

    let mut r = Report::default();
    for (c, p) in cases.iter().zip(&peers) {
        let side = 16;
        let lw = PatchGaussian::fit(&c.fit.obs(), Shrinkage::LedoitWolf, opts(side, 1.0)).unwrap();
        let got = lw.patch_scores(c.test.view()).unwrap();
        let (n, _, h, w) = c.test.dim();
        assert_eq!(got.dim(), (n, h, w));
        r.close(
            &format!("{} LedoitWolf scores", c.name),
            &f64s(got.as_slice().unwrap()),
            &flat(&p["ledoit_wolf"]["scores"]),
            2e-6,
            1e-6,
        );
        let want_delta = flat(&p["ledoit_wolf"]["shrinkage"]);
        r.close(
            &format!("{} LedoitWolf shrinkage", c.name),
            lw.shrinkage(),
            &want_delta,
            1e-9,
            1e-12,
        );
        let s = lw.summary();
        let (lo, hi) = want_delta
            .iter()
            .fold((f64::MAX, f64::MIN), |(a, b), &d| (a.min(d), b.max(d)));
        r.close(
            &format!("{} summary shrinkage min/max", c.name),
            &[
                s["shrinkage"]["min"].as_f64().unwrap(),
                s["shrinkage"]["max"].as_f64().unwrap(),
            ],
            &[lo, hi],
            1e-9,
            1e-12,
        );
        r.check(s["locations"] == json!(h * w), || {
            format!("{} summary: {s}", c.name)
        });
        // The image score is the maximum of the map built from these patch scores.
        let test = Batch::new(c.test.clone());
        let scores = lw.score(&test.obs()).unwrap();
        let maps = lw.anomaly_maps(&test.obs()).unwrap().unwrap();
        for (img, (score, map)) in scores.iter().zip(&maps).enumerate() {
            let patch: Vec<f32> = got.index_axis(Axis(0), img).iter().copied().collect();
            let want = anomaly_map(&patch, h, w, &opts(side, 1.0));
            r.check(map == &want, || format!("{} map {img} differs", c.name));
            let max = want.iter().copied().fold(f32::MIN, f32::max) as f64;
            r.check(*score == max, || {
                format!("{} score {img}: {score} vs map max {max}", c.name)
            });
        }
        for (delta, pf) in c.fixed.iter().zip(p["fixed"].as_array().unwrap()) {
            let fixed = PatchGaussian::fit(&c.fit.obs(), Shrinkage::Fixed(*delta), opts(side, 1.0))
                .unwrap();
            r.check(fixed.shrinkage().iter().all(|d| d == delta), || {
                format!(
                    "{} Fixed({delta}): shrinkage {:?}",
                    c.name,
                    fixed.shrinkage()
                )
            });
            r.close(
                &format!("{} Fixed({delta}) scores", c.name),
                &f64s(
                    fixed
                        .patch_scores(c.test.view())
                        .unwrap()
                        .as_slice()
                        .unwrap(),
                ),
                &flat(&pf["scores"]),
                2e-6,
                1e-6,
            );
        }
    }
    r.finish();
}

/// (2) Upsampling equals torch's `align_corners=False` bilinear (re-implemented in NumPy),
/// blurring equals `scipy.ndimage.gaussian_filter(mode="reflect", truncate=4)`, and the
/// anomaly map is their composition; σ = 0 is the identity.
#[test]
fn map_arithmetic_matches_torch_bilinear_and_scipy_gaussian_filter() {
    let _one = common::one_at_a_time();
    let mut rng = Rng(3);
    let mut random =
        |len: usize| -> Vec<f32> { (0..len).map(|_| (3.0 * rng.gauss() + 1.0) as f32).collect() };
    // (h, w, side): integer ratios, non-integer ones, 1×1, downsampling, non-square grids.
    let ups: Vec<(usize, usize, usize, Vec<f32>)> = [
        (3, 3, 16),
        (4, 6, 17),
        (5, 3, 48),
        (1, 1, 16),
        (6, 6, 4),
        (2, 5, 23),
        (16, 16, 128),
    ]
    .into_iter()
    .map(|(h, w, side)| (h, w, side, random(h * w)))
    .collect();
    // (side, σ): short kernels, a radius of the map's side, radii beyond twice it.
    let blurs: Vec<(usize, f64, Vec<f32>)> = [
        (16, 0.7),
        (16, 2.0),
        (16, 4.0),
        (16, 9.0),
        (23, 1.3),
        (5, 30.0),
    ]
    .into_iter()
    .map(|(side, sigma)| (side, sigma, random(side * side)))
    .collect();
    let chains: Vec<(usize, usize, usize, f64, Vec<f32>)> =
        [(4, 4, 32, 4.0), (3, 5, 19, 1.5), (6, 6, 48, 0.0)]
            .into_iter()
            .map(|(h, w, side, sigma)| (h, w, side, sigma, random(h * w)))
            .collect();

    let mut tasks = Vec::new();
    for (h, w, side, p) in &ups {
        tasks.push(json!({"kind": "upsample", "patch": array_json(&[*h, *w], p), "side": side}));
    }
    for (side, sigma, m) in &blurs {
        tasks.push(json!({"kind": "blur", "map": array_json(&[*side, *side], m), "sigma": sigma}));
    }
    for (h, w, side, sigma, p) in &chains {
        tasks.push(
            json!({"kind": "anomaly_map", "patch": array_json(&[*h, *w], p),
                          "side": side, "sigma": sigma}),
        );
    }
    let Some(peers) = peer(&tasks) else { return };
    let mut peers = peers.iter();

    let mut r = Report::default();
    // f32 results of f64 arithmetic: one rounding, relative to the map's scale.
    let tol = |want: &[f64]| 1e-6 * want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    for (h, w, side, p) in &ups {
        let got = upsample_bilinear(p, *h, *w, *side);
        let want = flat(&peers.next().unwrap()["out"]);
        r.close(
            &format!("upsample {h}×{w}→{side}"),
            &f64s(&got),
            &want,
            1e-7,
            tol(&want),
        );
    }
    for (side, sigma, m) in &blurs {
        let got = gaussian_blur(m, *side, *sigma);
        let want = flat(&peers.next().unwrap()["out"]);
        r.close(
            &format!("blur {side}² σ={sigma}"),
            &f64s(&got),
            &want,
            1e-7,
            tol(&want),
        );
        r.check(gaussian_blur(m, *side, 0.0) == *m, || {
            format!("blur {side}² σ=0 changed the map")
        });
    }
    for (h, w, side, sigma, p) in &chains {
        let got = anomaly_map(p, *h, *w, &opts(*side, *sigma));
        let want = flat(&peers.next().unwrap()["out"]);
        r.close(
            &format!("anomaly_map {h}×{w}→{side} σ={sigma}"),
            &f64s(&got),
            &want,
            1e-7,
            tol(&want),
        );
    }
    r.finish();
}

/// Random points in `clusters` blobs.
fn blobs(rng: &mut Rng, n: usize, c: usize, clusters: usize) -> Array2<f32> {
    let centres: Vec<Vec<f64>> = (0..clusters)
        .map(|_| (0..c).map(|_| 5.0 * rng.gauss()).collect())
        .collect();
    Array2::from_shape_fn((n, c), |(i, j)| {
        (centres[i % clusters][j] + rng.gauss()) as f32
    })
}

/// The largest distance of any point to its nearest selected point (plain f64 sums).
fn brute_force_radius(points: &Array2<f32>, selected: &[usize]) -> f64 {
    points
        .rows()
        .into_iter()
        .map(|x| {
            selected
                .iter()
                .map(|&s| {
                    x.iter()
                        .zip(points.row(s))
                        .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
                        .sum::<f64>()
                        .sqrt()
                })
                .fold(f64::INFINITY, f64::min)
        })
        .fold(0.0, f64::max)
}

/// (3) The greedy coreset is deterministic per seed, differs for another seed, covers every
/// point within `radius` (brute force), and without projection picks what a NumPy k-center
/// greedy picks from the same first point.
#[test]
fn coreset_is_seeded_covers_every_point_and_matches_numpy_k_center() {
    let _one = common::one_at_a_time();
    let mut rng = Rng(4);
    let points = blobs(&mut rng, 150, 10, 4);
    let mut r = Report::default();
    for projection in [None, Some(4)] {
        let a = greedy_coreset(points.view(), 15, 7, projection);
        let again = greedy_coreset(points.view(), 15, 7, projection);
        let other = greedy_coreset(points.view(), 15, 8, projection);
        r.check(a == again, || format!("{projection:?}: not deterministic"));
        r.check(a.indices != other.indices, || {
            format!("{projection:?}: seeds 7 and 8 picked the same points")
        });
        for c in [&a, &other] {
            let mut distinct = c.indices.clone();
            distinct.sort();
            distinct.dedup();
            r.check(distinct.len() == 15 && c.indices.len() == 15, || {
                format!("{projection:?}: {:?} are not 15 distinct points", c.indices)
            });
            let worst = brute_force_radius(&points, &c.indices);
            r.check(worst <= c.radius as f64, || {
                format!(
                    "{projection:?}: a point lies {worst} from the set, radius {}",
                    c.radius
                )
            });
            r.check(c.radius as f64 <= worst * (1.0 + 1e-6), || {
                format!("{projection:?}: radius {} is not tight ({worst})", c.radius)
            });
        }
    }
    // A projection to ≥ C dimensions is no projection.
    r.check(
        greedy_coreset(points.view(), 15, 7, Some(10))
            == greedy_coreset(points.view(), 15, 7, None),
        || "Some(C) differs from None".into(),
    );
    // Selecting every point covers them at distance 0.
    let all = greedy_coreset(points.view(), 150, 1, Some(3));
    r.check(all.radius == 0.0 && all.indices.len() == 150, || {
        format!(
            "all points: radius {}, {} picked",
            all.radius,
            all.indices.len()
        )
    });

    let plain: Vec<_> = [7u64, 8, 9]
        .into_iter()
        .map(|seed| greedy_coreset(points.view(), 15, seed, None))
        .collect();
    let points_json = array_json(&[150, 10], points.iter());
    let tasks: Vec<Value> = plain
        .iter()
        .map(|c| {
            json!({"kind": "kcenter", "points": points_json, "n_select": 15,
                   "first": c.indices[0]})
        })
        .collect();
    let Some(peers) = peer(&tasks) else {
        return r.finish();
    };
    for (c, p) in plain.iter().zip(&peers) {
        let want: Vec<usize> = flat(&p["indices"]).iter().map(|&i| i as usize).collect();
        r.check(c.indices == want, || {
            format!(
                "k-center from {}: {:?} vs NumPy {want:?}",
                c.indices[0], c.indices
            )
        });
    }
    r.finish();
}

/// All patch rows of `maps`: row (n·h + i)·w + j = maps[n, :, i, j].
fn patches(maps: &Array4<f32>) -> Array2<f32> {
    let (n, c, h, w) = maps.dim();
    Array2::from_shape_fn((n * h * w, c), |(r, ch)| {
        maps[[r / (h * w), ch, (r / w) % h, r % w]]
    })
}

/// (4) Memory-bank patch scores equal sklearn's NearestNeighbors distances (also with the
/// 128-dim projection, C > 128), the bank is the NumPy k-center greedy's pick of the
/// patches, and reweighted scores equal a NumPy re-implementation of anomalib's formula
/// (also for a bank smaller than 9).
#[test]
fn memory_bank_matches_nearest_neighbors_and_anomalib_reweighting() {
    let _one = common::one_at_a_time();
    struct Case {
        name: &'static str,
        bank: PatchMemoryBank,
        fit: Batch,
        test: Batch,
        opts: MapOptions,
        ratio: f64,
    }
    let mut cases = Vec::new();
    for (name, seed, n, c, hw, ratio, side, sigma) in [
        ("n12_c8_4x4", 5u64, 12, 8, 4, 0.25, 24, 2.0),
        ("n12_c132_3x3_projected", 6, 12, 132, 3, 0.2, 18, 1.0),
        ("n6_c5_3x3_bank4", 7, 6, 5, 3, 0.07, 16, 0.0),
    ] {
        let mut rng = Rng(seed);
        let g = Maps::new(&mut rng, c, hw, hw);
        let fit = Batch::new(g.sample(&mut rng, n, 1.0));
        let good = g.sample(&mut rng, 4, 1.0);
        let bad = g.sample(&mut rng, 2, 2.5);
        let test = Batch::new(ndarray::concatenate![Axis(0), good, bad]);
        let o = opts(side, sigma);
        let bank = PatchMemoryBank::fit(&fit.obs(), ratio, seed, true, o).unwrap();
        cases.push(Case {
            name,
            bank,
            fit,
            test,
            opts: o,
            ratio,
        });
    }
    let mut tasks = Vec::new();
    for c in &cases {
        let bank = c.bank.bank();
        let bank_json = array_json(bank.shape(), bank.iter());
        let q = patches(&c.test.maps);
        tasks.push(
            json!({"kind": "nn", "bank": bank_json, "queries": array_json(q.shape(), q.iter())}),
        );
        tasks.push(
            json!({"kind": "reweight", "bank": bank_json, "test": maps_json(&c.test.maps),
                          "side": c.opts.side, "sigma": c.opts.sigma}),
        );
        let p = patches(&c.fit.maps);
        tasks.push(
            json!({"kind": "kcenter", "points": array_json(p.shape(), p.iter()),
                          "n_select": c.bank.bank().nrows(), "first": c.bank.bank_indices()[0]}),
        );
    }
    let Some(peers) = peer(&tasks) else { return };

    let mut r = Report::default();
    for (c, p) in cases.iter().zip(peers.chunks(3)) {
        let name = c.name;
        let fit_patches = patches(&c.fit.maps);
        let m = c.bank.bank().nrows();
        let want_m = (c.ratio * fit_patches.nrows() as f64).ceil() as usize;
        r.check(m == want_m, || {
            format!("{name}: bank of {m}, want {want_m}")
        });
        let rows_match = c
            .bank
            .bank_indices()
            .iter()
            .zip(c.bank.bank().rows())
            .all(|(&i, row)| fit_patches.row(i) == row);
        r.check(rows_match, || {
            format!("{name}: bank rows are not the fit patches they index")
        });
        let worst = brute_force_radius(&fit_patches, c.bank.bank_indices());
        r.check(
            worst <= c.bank.radius() as f64 && c.bank.radius() as f64 <= worst * (1.0 + 1e-6),
            || format!("{name}: radius {} vs brute force {worst}", c.bank.radius()),
        );
        if c.fit.maps.dim().1 <= 128 {
            let want: Vec<usize> = flat(&p[2]["indices"]).iter().map(|&i| i as usize).collect();
            r.check(c.bank.bank_indices() == want.as_slice(), || {
                format!(
                    "{name}: bank {:?} vs NumPy k-center {want:?}",
                    c.bank.bank_indices()
                )
            });
        }

        let nearest = c.bank.nearest(c.test.maps.view()).unwrap();
        r.close(
            &format!("{name} patch scores"),
            &f64s(nearest.distance.as_slice().unwrap()),
            &flat(&p[0]["distance"]),
            1e-6,
            1e-9,
        );
        let idx: Vec<f64> = nearest.index.iter().map(|&i| i as f64).collect();
        r.close(
            &format!("{name} nearest rows"),
            &idx,
            &flat(&p[0]["index"]),
            0.0,
            0.0,
        );
        r.check(
            c.bank.patch_scores(c.test.maps.view()).unwrap() == nearest.distance,
            || format!("{name}: patch_scores differ from nearest"),
        );

        let factors = c.bank.reweight_factors(c.test.maps.view()).unwrap();
        r.close(
            &format!("{name} reweight factors"),
            &factors,
            &flat(&p[1]["weight"]),
            1e-9,
            1e-12,
        );
        let scores = c.bank.score(&c.test.obs()).unwrap();
        r.close(
            &format!("{name} reweighted scores"),
            &scores,
            &flat(&p[1]["score"]),
            2e-6,
            1e-9,
        );
        // The maps are those of the raw patch scores; the unweighted score is their maximum.
        let maps = c.bank.anomaly_maps(&c.test.obs()).unwrap().unwrap();
        for (img, (map, s)) in maps.iter().zip(&scores).enumerate() {
            let max = map.iter().copied().fold(f32::MIN, f32::max) as f64;
            r.check((s - factors[img] * max).abs() <= 1e-12 * max.abs(), || {
                format!("{name} image {img}: score {s} vs {} × {max}", factors[img])
            });
        }
    }
    r.finish();
}

fn bits(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn map_bits(maps: &[Vec<f32>]) -> Vec<Vec<u32>> {
    maps.iter()
        .map(|m| m.iter().map(|v| v.to_bits()).collect())
        .collect()
}

/// (5) Both detectors give bit-identical maps and scores after a save/load round trip, and
/// refuse tampered groups.
#[test]
fn saved_patch_detectors_score_identically_and_tampering_is_refused() {
    let _one = common::one_at_a_time();
    let mut rng = Rng(8);
    let g = Maps::new(&mut rng, 6, 4, 5);
    let fit = Batch::new(g.sample(&mut rng, 14, 1.0));
    let test = Batch::new(g.sample(&mut rng, 5, 1.5));
    let o = opts(20, 1.5);
    let padim = PatchGaussian::fit(&fit.obs(), Shrinkage::LedoitWolf, o).unwrap();
    let core = PatchMemoryBank::fit(&fit.obs(), 0.3, 11, true, o).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("detector.h5");
    {
        let file = hdf5::File::create(&path).unwrap();
        padim.save(&file.create_group("padim").unwrap()).unwrap();
        core.save(&file.create_group("patchcore").unwrap()).unwrap();
    }
    let (padim2, core2) = {
        let file = hdf5::File::open(&path).unwrap();
        (
            PatchGaussian::load(&file.group("padim").unwrap()).unwrap(),
            PatchMemoryBank::load(&file.group("patchcore").unwrap()).unwrap(),
        )
    };
    assert_eq!(padim2, padim);
    assert_eq!(core2, core);
    let scorers: [(&dyn ClassScorer, &dyn ClassScorer); 2] = [(&padim, &padim2), (&core, &core2)];
    for (a, b) in scorers {
        assert_eq!(
            bits(&a.score(&test.obs()).unwrap()),
            bits(&b.score(&test.obs()).unwrap())
        );
        assert_eq!(
            map_bits(&a.anomaly_maps(&test.obs()).unwrap().unwrap()),
            map_bits(&b.anomaly_maps(&test.obs()).unwrap().unwrap())
        );
        assert_eq!(bits(a.centre()), bits(b.centre()));
        assert_eq!(a.summary(), b.summary());
        assert_eq!(a.memory_bytes(), b.memory_bytes());
        assert!(matches!(a.onnx_part(), OnnxPart::Unsupported(why) if !why.is_empty()));
    }
    assert_eq!(padim.memory_bytes(), 20 * 6 * 6 * 4 + 20 * 6 * 8 + 20 * 8);
    assert_eq!(core.memory_bytes(), core.bank().len() * 4);
    // The centre is the pooled embeddings' mean.
    let want: Vec<f64> = (0..6)
        .map(|j| {
            fit.embeddings
                .column(j)
                .iter()
                .map(|&v| v as f64)
                .sum::<f64>()
                / 14.0
        })
        .collect();
    for (got, want) in padim.centre().iter().zip(&want) {
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
    }

    // Tampering: each edit of a fresh copy must make `load` fail with Invalid.
    type Edit = fn(&hdf5::Group);
    let edits: Vec<(&str, &str, Edit)> = vec![
        ("padim", "channels attribute", |g| {
            g.delete_attr("channels").unwrap();
            g.new_attr::<u64>()
                .create("channels")
                .unwrap()
                .write_scalar(&7u64)
                .unwrap();
        }),
        ("padim", "missing whitening", |g| {
            g.unlink("whitening").unwrap()
        }),
        ("padim", "upper triangle", |g| {
            let mut w = g
                .dataset("whitening")
                .unwrap()
                .read::<f32, ndarray::Ix3>()
                .unwrap();
            w[[3, 0, 2]] = 0.5;
            g.unlink("whitening").unwrap();
            g.new_dataset_builder()
                .with_data(&w)
                .create("whitening")
                .unwrap();
        }),
        ("padim", "NaN mean", |g| {
            let mut m = g.dataset("patch_means").unwrap().read_2d::<f64>().unwrap();
            m[[1, 1]] = f64::NAN;
            g.unlink("patch_means").unwrap();
            g.new_dataset_builder()
                .with_data(&m)
                .create("patch_means")
                .unwrap();
        }),
        ("patchcore", "bank columns", |g| {
            let b = g.dataset("bank").unwrap().read_2d::<f32>().unwrap();
            let cut = b.slice(ndarray::s![.., ..5]).to_owned();
            g.unlink("bank").unwrap();
            g.new_dataset_builder()
                .with_data(&cut)
                .create("bank")
                .unwrap();
        }),
        ("patchcore", "side 0", |g| {
            g.delete_attr("side").unwrap();
            g.new_attr::<u64>()
                .create("side")
                .unwrap()
                .write_scalar(&0u64)
                .unwrap();
        }),
        ("patchcore", "ratio 2", |g| {
            g.delete_attr("ratio").unwrap();
            g.new_attr::<f64>()
                .create("ratio")
                .unwrap()
                .write_scalar(&2.0)
                .unwrap();
        }),
        ("patchcore", "missing bank indices", |g| {
            g.unlink("bank_indices").unwrap()
        }),
    ];
    for (i, (which, what, edit)) in edits.into_iter().enumerate() {
        let copy = dir.path().join(format!("tampered_{i}.h5"));
        std::fs::copy(&path, &copy).unwrap();
        {
            let file = hdf5::File::open_rw(&copy).unwrap();
            edit(&file.group(which).unwrap());
        }
        let file = hdf5::File::open(&copy).unwrap();
        let group = file.group(which).unwrap();
        let err = if which == "padim" {
            PatchGaussian::load(&group).err()
        } else {
            PatchMemoryBank::load(&group).err()
        };
        assert!(
            matches!(err, Some(AnomalyError::Invalid(_))),
            "{which}, {what}: load gave {err:?}"
        );
    }
}

/// argmax of a map as (row, column).
fn argmax(map: &[f32], side: usize) -> (usize, usize) {
    let (i, _) = map.iter().enumerate().fold(
        (0, f32::MIN),
        |(bi, bv), (i, &v)| if v > bv { (i, v) } else { (bi, bv) },
    );
    (i / side, i % side)
}

/// (6) A few locations of one test image shifted strongly: its map peaks inside the
/// upsampled cells of those locations and its score beats every good image's.
#[test]
fn a_planted_local_anomaly_peaks_where_it_was_planted() {
    let (c, hw, side) = (6, 5, 40);
    let cell = side / hw;
    let mut rng = Rng(9);
    let g = Maps::new(&mut rng, c, hw, hw);
    let fit = Batch::new(g.sample(&mut rng, 30, 1.0));
    let mut test = g.sample(&mut rng, 9, 1.0);
    let planted = [(1usize, 2usize), (1, 3)];
    let target = 8;
    for &(i, j) in &planted {
        for ch in 0..c {
            test[[target, ch, i, j]] += 6.0;
        }
    }
    let test = Batch::new(test);
    let o = opts(side, 2.0);
    let scorers: Vec<(&str, Box<dyn ClassScorer>)> = vec![
        (
            "padim",
            Box::new(PatchGaussian::fit(&fit.obs(), Shrinkage::LedoitWolf, o).unwrap()),
        ),
        (
            "patchcore",
            Box::new(PatchMemoryBank::fit(&fit.obs(), 0.1, 0, false, o).unwrap()),
        ),
        (
            "patchcore reweighted",
            Box::new(PatchMemoryBank::fit(&fit.obs(), 0.1, 0, true, o).unwrap()),
        ),
    ];
    for (name, s) in &scorers {
        let maps = s.anomaly_maps(&test.obs()).unwrap().unwrap();
        assert_eq!(maps.len(), 9);
        assert!(maps.iter().all(|m| m.len() == side * side));
        let (row, col) = argmax(&maps[target], side);
        let inside = planted
            .iter()
            .any(|&(i, j)| row / cell == i && col / cell == j);
        assert!(
            inside,
            "{name}: the map peaks at ({row}, {col}), not in {planted:?}"
        );
        let scores = s.score(&test.obs()).unwrap();
        let good = scores[..target].iter().copied().fold(f64::MIN, f64::max);
        assert!(
            scores[target] > good,
            "{name}: planted image scores {} ≤ a good one's {good}",
            scores[target]
        );
    }
}

/// Bad inputs are errors naming the problem, never panics.
#[test]
fn bad_inputs_are_errors_that_name_the_problem() {
    let mut rng = Rng(10);
    let g = Maps::new(&mut rng, 5, 3, 3);
    let fit = Batch::new(g.sample(&mut rng, 8, 1.0));
    let o = opts(12, 1.0);
    let msg = |e: AnomalyError| match e {
        AnomalyError::Invalid(m) => m,
        other => panic!("not Invalid: {other}"),
    };
    let no_maps = Observations {
        maps: None,
        ..fit.obs()
    };
    for e in [
        PatchGaussian::fit(&no_maps, Shrinkage::LedoitWolf, o).unwrap_err(),
        PatchMemoryBank::fit(&no_maps, 0.5, 0, false, o).unwrap_err(),
    ] {
        let m = msg(e);
        assert!(
            m.contains("no feature maps") && m.contains("re-embed with `defectkit embed --maps`"),
            "{m}"
        );
    }
    let padim = PatchGaussian::fit(&fit.obs(), Shrinkage::LedoitWolf, o).unwrap();
    let core = PatchMemoryBank::fit(&fit.obs(), 0.5, 0, true, o).unwrap();
    assert!(padim.score(&no_maps).is_err() && core.score(&no_maps).is_err());
    assert!(matches!(padim.anomaly_maps(&no_maps), Some(Err(_))));

    let other = Maps::new(&mut rng, 4, 3, 2).sample(&mut rng, 2, 1.0);
    let check = |m: ArrayView4<'_, f32>| {
        let a = msg(padim.patch_scores(m).unwrap_err());
        let b = msg(core.patch_scores(m).unwrap_err());
        (a, b)
    };
    let (a, b) = check(other.view());
    for m in [a, b] {
        assert!(
            m.contains("4×3×2") && m.contains("fitted on C×h×w = 5×3×3"),
            "{m}"
        );
    }
    let mut nan = g.sample(&mut rng, 2, 1.0);
    nan[[1, 3, 2, 0]] = f32::NAN;
    let (a, b) = check(nan.view());
    for m in [a, b] {
        assert!(
            m.contains("not finite") && m.contains("image 1, channel 3"),
            "{m}"
        );
    }
    let bad_fit = Batch::new(nan.clone());
    assert!(
        msg(PatchGaussian::fit(&bad_fit.obs(), Shrinkage::LedoitWolf, o).unwrap_err())
            .contains("not finite")
    );
    assert!(
        msg(PatchMemoryBank::fit(&bad_fit.obs(), 0.5, 0, false, o).unwrap_err())
            .contains("not finite")
    );

    // A singular covariance names its location; too few images, bad options are refused.
    let few = Batch::new(g.sample(&mut rng, 4, 1.0));
    let m = msg(PatchGaussian::fit(&few.obs(), Shrinkage::Fixed(0.0), o).unwrap_err());
    assert!(
        m.contains("location (0, 0)") && m.contains("singular"),
        "{m}"
    );
    let one = Batch::new(g.sample(&mut rng, 1, 1.0));
    assert!(
        msg(PatchGaussian::fit(&one.obs(), Shrinkage::LedoitWolf, o).unwrap_err())
            .contains("at least 2")
    );
    for ratio in [0.0, 1.5, f64::NAN] {
        assert!(
            msg(PatchMemoryBank::fit(&fit.obs(), ratio, 0, false, o).unwrap_err())
                .contains("ratio")
        );
    }
    for bad in [opts(0, 1.0), opts(12, -1.0), opts(12, f64::NAN)] {
        assert!(PatchGaussian::fit(&fit.obs(), Shrinkage::LedoitWolf, bad).is_err());
        assert!(PatchMemoryBank::fit(&fit.obs(), 0.5, 0, false, bad).is_err());
    }
    let mismatched = Observations {
        embeddings: few.embeddings.view(),
        ..fit.obs()
    };
    assert!(
        msg(PatchGaussian::fit(&mismatched, Shrinkage::LedoitWolf, o).unwrap_err())
            .contains("4 embeddings")
    );
}

/// Fit and per-image score times at a realistic size (N = 48, C = 192, 16×16, side 128):
/// `cargo test --release -p defectkit-deploy --test patch_peer -- --ignored --nocapture`.
#[test]
#[ignore]
fn timing_at_a_realistic_size() {
    let (n, c, hw, side) = (48, 192, 16, 128);
    let mut rng = Rng(12);
    let g = Maps::new(&mut rng, c, hw, hw);
    let fit = Batch::new(g.sample(&mut rng, n, 1.0));
    let test = Batch::new(g.sample(&mut rng, 8, 1.2));
    let o = opts(side, 4.0);
    let per_image = |s: &dyn ClassScorer| {
        let t = Instant::now();
        let scores = s.score(&test.obs()).unwrap();
        assert_eq!(scores.len(), 8);
        t.elapsed().as_secs_f64() * 1e3 / 8.0
    };
    let t = Instant::now();
    let padim = PatchGaussian::fit(&fit.obs(), Shrinkage::LedoitWolf, o).unwrap();
    let fit_s = t.elapsed().as_secs_f64();
    eprintln!(
        "padim: fit {fit_s:.2} s, score {:.1} ms/image, {:.1} MB",
        per_image(&padim),
        padim.memory_bytes() as f64 / 1e6
    );
    for reweight in [false, true] {
        let t = Instant::now();
        let core = PatchMemoryBank::fit(&fit.obs(), 0.1, 0, reweight, o).unwrap();
        let fit_s = t.elapsed().as_secs_f64();
        eprintln!(
            "patchcore (reweight {reweight}): fit {fit_s:.2} s, score {:.1} ms/image, bank {} × {c}, \
             radius {}",
            per_image(&core),
            core.bank().nrows(),
            core.radius()
        );
    }
}
