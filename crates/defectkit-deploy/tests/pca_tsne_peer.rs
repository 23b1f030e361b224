//! The cluster stage's dimensionality reduction against its peer (tests/peers/pca_peer.py:
//! scikit-learn 1.9 in the project venv): `stats::pca::Standardizer` = `StandardScaler`
//! (mean_, scale_, transform), `stats::pca::Pca` = `PCA(svd_solver="full")` (components with
//! sklearn's exact signs, explained_variance(_ratio_), transform, the component count chosen
//! by a variance ratio) on seeded correlated data of several shapes (N ≫ d, N < d, a constant
//! column, N = 2), and `cluster::tsne::tsne_2d`: bitwise the same map for a seed, and on five
//! well separated 16-D Gaussian blobs a map that sklearn's `trustworthiness` rates ≥ 0.9 (and
//! not worse than sklearn's own TSNE) whose 1-NN keeps blob labels for ≥ 95 % of points.

#[path = "../../../tests/common/mod.rs"]
mod common;

use std::process::Command;

use defectkit_deploy::cluster::tsne::{tsne_2d, TsneOptions};
use defectkit_deploy::stats::pca::{Pca, Standardizer};
use ndarray::{Array2, ArrayView2};
use serde_json::{json, Value};

/// Relative tolerance of the PCA comparisons.
const REL: f64 = 1e-5;
/// Relative tolerance of the standardizer (the same f64 sums in another order).
const REL_SCALER: f64 = 1e-9;

/// The workspace's SplitMix64 (the crate has no `rand`).
use defectkit_core::rng::SplitMix64 as Rng;

/// `n` rows of a fixed correlated Gaussian in `d` dimensions (columns of different scales
/// and offsets), as f32.
fn correlated(rng: &mut Rng, n: usize, d: usize) -> Array2<f32> {
    let a: Vec<Vec<f64>> = (0..d)
        .map(|i| {
            let scale = 0.5 + 3.5 * rng.uniform();
            (0..d)
                .map(|j| {
                    let diag = if i == j { 1.0 } else { 0.0 };
                    scale * (diag + rng.gauss() / (d as f64).sqrt())
                })
                .collect()
        })
        .collect();
    let offset: Vec<f64> = (0..d).map(|_| 6.0 * rng.uniform() - 3.0).collect();
    let mut out = Array2::<f32>::zeros((n, d));
    for mut row in out.rows_mut() {
        let g: Vec<f64> = (0..d).map(|_| rng.gauss()).collect();
        for (i, v) in row.iter_mut().enumerate() {
            let z: f64 = a[i].iter().zip(&g).map(|(a, g)| a * g).sum();
            *v = (offset[i] + z) as f32;
        }
    }
    out
}

struct PcaCase {
    name: &'static str,
    fit: Array2<f32>,
    queries: Array2<f32>,
}

fn pca_case(name: &'static str, seed: u64, n: usize, d: usize) -> PcaCase {
    let mut rng = Rng(seed);
    let all = correlated(&mut rng, n + 10, d);
    PcaCase {
        name,
        fit: all.slice(ndarray::s![..n, ..]).to_owned(),
        queries: all.slice(ndarray::s![n.., ..]).to_owned(),
    }
}

fn pca_cases() -> Vec<PcaCase> {
    let mut constant = pca_case("n60_d6_constant_column", 4, 60, 6);
    // 0.7 is not an f32, and its f64 mean is not exactly the value: variance ≈ 0, not 0.
    constant.fit.column_mut(3).fill(0.7);
    vec![
        pca_case("n300_d8", 1, 300, 8),
        pca_case("n40_d64", 2, 40, 64),
        pca_case("n25_d25", 3, 25, 25),
        constant,
        pca_case("n2_d3", 5, 2, 3),
        pca_case("n50_d1", 6, 50, 1),
    ]
}

const RATIOS: [f64; 4] = [0.3, 0.5, 0.8, 0.95];

fn rows_json<T: Copy + Into<f64>>(rows: ArrayView2<'_, T>) -> Value {
    rows.rows()
        .into_iter()
        .map(|r| r.iter().map(|&v| v.into()).collect::<Vec<f64>>())
        .collect::<Vec<_>>()
        .into()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn matrix(v: &Value) -> Vec<Vec<f64>> {
    v.as_array().unwrap().iter().map(floats).collect()
}

/// Collects every mismatch, so one run shows them all.
#[derive(Default)]
struct Report(Vec<String>);

impl Report {
    fn close(&mut self, what: &str, got: f64, want: f64, rel: f64, floor: f64) {
        let ok = (got - want).abs() <= rel * got.abs().max(want.abs()) + floor;
        if !ok {
            self.0.push(format!("{what}: {got:e} vs peer {want:e}"));
        }
    }

    fn vec(&mut self, what: &str, got: &[f64], want: &[f64], rel: f64, floor: f64) {
        if got.len() != want.len() {
            self.0.push(format!(
                "{what}: {} values vs peer {}",
                got.len(),
                want.len()
            ));
            return;
        }
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            self.close(&format!("{what}[{i}]"), *g, *w, rel, floor);
        }
    }

    fn fail(&mut self, msg: String) {
        self.0.push(msg);
    }
}

/// The components whose axis is determined by the data: variance clearly above zero and
/// apart from its neighbours' (a repeated or zero singular value leaves the axis arbitrary).
fn determined(ev: &[f64]) -> Vec<bool> {
    let top = ev[0];
    (0..ev.len())
        .map(|c| {
            let gap = |o: usize| (ev[c] - ev[o]).abs() > 1e-6 * top;
            ev[c] > 1e-9 * top && (c == 0 || gap(c - 1)) && (c + 1 == ev.len() || gap(c + 1))
        })
        .collect()
}

fn check_pca(r: &mut Report, c: &PcaCase, p: &Value) {
    let name = c.name;
    let (n, d) = c.fit.dim();
    let m = n.min(d);

    // StandardScaler.
    let s = Standardizer::fit(c.fit.view()).unwrap();
    let ps = &p["scaler"];
    r.vec(
        &format!("{name} scaler mean"),
        &s.mean,
        &floats(&ps["mean"]),
        REL_SCALER,
        1e-12,
    );
    r.vec(
        &format!("{name} scaler scale"),
        &s.scale,
        &floats(&ps["scale"]),
        REL_SCALER,
        0.0,
    );
    let z = s.transform(c.queries.view()).unwrap();
    for (i, want) in matrix(&ps["transform"]).iter().enumerate() {
        r.vec(
            &format!("{name} scaler transform row {i}"),
            &z.row(i).to_vec(),
            want,
            REL_SCALER,
            1e-9,
        );
    }

    // PCA with all components.
    let x = c.fit.mapv(f64::from);
    let q = c.queries.mapv(f64::from);
    let pp = &p["pca"];
    let pca = Pca::fit(x.view(), m).unwrap();
    let want_ev = floats(&pp["explained_variance"]);
    let want_ratio = floats(&pp["explained_variance_ratio"]);
    r.vec(
        &format!("{name} pca mean"),
        &pca.mean,
        &floats(&pp["mean"]),
        1e-12,
        1e-12,
    );
    r.vec(
        &format!("{name} explained_variance"),
        &pca.explained_variance,
        &want_ev,
        REL,
        1e-9 * want_ev[0],
    );
    r.vec(
        &format!("{name} explained_variance_ratio"),
        &pca.explained_variance_ratio,
        &want_ratio,
        REL,
        1e-9,
    );
    r.vec(
        &format!("{name} all_ratios"),
        &pca.all_ratios,
        &want_ratio,
        REL,
        1e-9,
    );
    let keep = determined(&want_ev);
    if !keep[0] {
        r.fail(format!(
            "{name}: the first axis is not determined: {want_ev:?}"
        ));
    }
    // Components with sklearn's own signs (not up to sign).
    let want_comp = matrix(&pp["components"]);
    for (k, want) in want_comp.iter().enumerate() {
        if keep[k] {
            r.vec(
                &format!("{name} component {k}"),
                &pca.components.row(k).to_vec(),
                want,
                REL,
                1e-7,
            );
        }
    }
    // Projection on the determined axes.
    let y = pca.transform(q.view());
    let want_y = matrix(&pp["transform"]);
    let scale = want_y
        .iter()
        .flatten()
        .fold(0.0f64, |acc, v| acc.max(v.abs()));
    for (i, want) in want_y.iter().enumerate() {
        for (k, w) in want.iter().enumerate() {
            if keep[k] {
                r.close(
                    &format!("{name} transform[{i},{k}]"),
                    y[[i, k]],
                    *w,
                    REL,
                    1e-7 * scale,
                );
            }
        }
    }

    // Truncation: the first k of the full fit.
    if m > 1 {
        let two = Pca::fit(x.view(), m - 1).unwrap();
        assert_eq!(two.components.nrows(), m - 1);
        assert_eq!(
            two.components,
            pca.components.slice(ndarray::s![..m - 1, ..])
        );
    }

    // Component count by variance ratio, as sklearn's PCA(n_components=r).
    for ratio in RATIOS {
        let want = p["by_ratio"][ratio.to_string()].as_u64().unwrap() as usize;
        let got = Pca::fit_variance(x.view(), ratio, m).unwrap();
        if got.n_components() != want {
            r.fail(format!(
                "{name} fit_variance({ratio}): {} components vs sklearn's {want}",
                got.n_components()
            ));
        }
        if got.all_ratios != pca.all_ratios {
            r.fail(format!("{name} fit_variance({ratio}): all_ratios differ"));
        }
        let capped = Pca::fit_variance(x.view(), ratio, 1).unwrap();
        assert_eq!(capped.n_components(), 1);
    }
}

/// Five Gaussian blobs of 40 points in 16-D (unit spread, centres ~ N(0, 4²)), with labels.
fn five_blobs(seed: u64) -> (Array2<f64>, Vec<usize>) {
    let (blobs, per, d) = (5, 40, 16);
    let mut rng = Rng(seed);
    let centres: Vec<Vec<f64>> = (0..blobs)
        .map(|_| (0..d).map(|_| 4.0 * rng.gauss()).collect())
        .collect();
    let mut x = Array2::zeros((blobs * per, d));
    let mut labels = Vec::with_capacity(blobs * per);
    // Interleaved, so row order says nothing about the blob.
    for i in 0..blobs * per {
        let b = i % blobs;
        labels.push(b);
        for j in 0..d {
            x[[i, j]] = centres[b][j] + rng.gauss();
        }
    }
    (x, labels)
}

/// Share of points whose nearest other point in `y` has their label.
fn one_nn_agreement(y: &Array2<f64>, labels: &[usize]) -> f64 {
    let n = y.nrows();
    let d2 = |a: usize, b: usize| {
        let (p, q) = (y.row(a), y.row(b));
        (p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2)
    };
    let same = (0..n)
        .filter(|&i| {
            let nearest = (0..n)
                .filter(|&j| j != i)
                .min_by(|&a, &b| d2(i, a).total_cmp(&d2(i, b)))
                .unwrap();
            labels[nearest] == labels[i]
        })
        .count();
    same as f64 / n as f64
}

/// How many coordinates of two maps differ in any bit.
fn differing(a: &Array2<f64>, b: &Array2<f64>) -> usize {
    assert_eq!(a.dim(), b.dim());
    a.iter()
        .zip(b)
        .filter(|(x, y)| x.to_bits() != y.to_bits())
        .count()
}

#[test]
fn pca_standardizer_and_tsne_match_sklearn() {
    let _one = common::one_at_a_time();
    let Some(py) = common::peer_python() else {
        return;
    };
    let pca_cases = pca_cases();

    let (x, labels) = five_blobs(11);
    let opts = TsneOptions {
        perplexity: 20.0,
        iterations: 1000,
        theta: 0.5,
        seed: 42,
    };
    let seeds = [42u64, 7];
    let mut maps = Vec::new();
    for seed in seeds {
        let o = TsneOptions { seed, ..opts };
        let a = tsne_2d(x.view(), &o).unwrap();
        let b = tsne_2d(x.view(), &o).unwrap();
        let diff = differing(&a, &b);
        assert_eq!(
            diff, 0,
            "seed {seed}: two runs differ in {diff} coordinates"
        );
        assert_eq!(a.dim(), (200, 2));
        maps.push(a);
    }
    assert!(
        differing(&maps[0], &maps[1]) > 0,
        "the seed changes nothing"
    );

    let input = json!({
        "pca": pca_cases.iter().map(|c| json!({
            "name": c.name,
            "fit": rows_json(c.fit.view()),
            "queries": rows_json(c.queries.view()),
            "ratios": RATIOS,
        })).collect::<Vec<_>>(),
        "tsne": seeds.iter().zip(&maps).map(|(seed, y)| json!({
            "name": format!("five_blobs seed {seed}"),
            "x": rows_json(x.view()),
            "embedding": rows_json(y.view()),
            "n_neighbors": 5,
            "perplexity": opts.perplexity,
            "seed": seed,
        })).collect::<Vec<_>>(),
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cases.json");
    std::fs::write(&path, serde_json::to_vec(&input).unwrap()).unwrap();
    let o = Command::new(py)
        .arg(common::repo_root().join("tests/peers/pca_peer.py"))
        .arg(&path)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let peer: Value = serde_json::from_slice(&o.stdout).unwrap();

    let mut r = Report::default();
    let peer_pca = peer["pca"].as_array().unwrap();
    assert_eq!(peer_pca.len(), pca_cases.len());
    for (c, p) in pca_cases.iter().zip(peer_pca) {
        assert_eq!(p["name"], c.name);
        check_pca(&mut r, c, p);
    }

    let peer_tsne = peer["tsne"].as_array().unwrap();
    assert_eq!(peer_tsne.len(), maps.len());
    for ((seed, y), p) in seeds.iter().zip(&maps).zip(peer_tsne) {
        let ours = p["trustworthiness"].as_f64().unwrap();
        let theirs = p["sklearn_trustworthiness"].as_f64().unwrap();
        let nn = one_nn_agreement(y, &labels);
        eprintln!(
            "t-SNE seed {seed}: trustworthiness {ours:.4} (sklearn's TSNE {theirs:.4}), \
             1-NN label agreement {nn:.3}"
        );
        if ours < 0.9 {
            r.fail(format!("t-SNE seed {seed}: trustworthiness {ours} < 0.9"));
        }
        if ours < theirs - 0.03 {
            r.fail(format!(
                "t-SNE seed {seed}: trustworthiness {ours} well below sklearn's {theirs}"
            ));
        }
        if nn < 0.95 {
            r.fail(format!(
                "t-SNE seed {seed}: 1-NN label agreement {nn} < 0.95"
            ));
        }
    }
    assert!(
        r.0.is_empty(),
        "{} mismatches with the peer:\n{}",
        r.0.len(),
        r.0.join("\n")
    );
}
