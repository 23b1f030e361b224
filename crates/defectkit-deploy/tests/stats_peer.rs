//! The deployment side's statistics and embedding detectors against their peers
//! (tests/peers/stats_peer.py: scikit-learn 1.9 / SciPy 1.17 / NumPy in the project venv):
//! `stats::covariance` (plain, fixed shrinkage, Ledoit-Wolf), `stats::Cholesky` (whitened
//! norms, inverse factor) and the Mahalanobis / Euclidean / k-NN scorers, on seeded correlated
//! data of several shapes (N ≫ d, N = d, N < d, d = 1, N = 2, a constant column). Python
//! reads exactly the f32 values Rust uses (written as f64). Also: the scorers' HDF5
//! save/load round trip keeps scores bit for bit.

#[path = "../../../tests/common/mod.rs"]
mod common;

use std::process::Command;

use defectkit_deploy::anomaly::euclidean::Euclidean;
use defectkit_deploy::anomaly::knn::Knn;
use defectkit_deploy::anomaly::mahalanobis::Mahalanobis;
use defectkit_deploy::anomaly::{ClassScorer, Observations};
use defectkit_deploy::stats::{covariance, Cholesky, Shrinkage, StatsError};
use faer::Mat;
use ndarray::Array2;
use serde_json::{json, Value};

/// Relative tolerance of every comparison with the peer.
const REL: f64 = 1e-6;
/// Absolute floor for entries near zero.
const ABS: f64 = 1e-9;

// Tests that spawn Python or write HDF5 hold `common::one_at_a_time()`.

/// The workspace's SplitMix64 (the crate has no `rand`).
use defectkit_core::rng::SplitMix64 as Rng;

/// A fixed correlated Gaussian: z = offset + A·g, g ~ N(0, I), columns of different scales.
struct Gaussian {
    a: Vec<Vec<f64>>,
    offset: Vec<f64>,
}

impl Gaussian {
    fn new(rng: &mut Rng, d: usize) -> Self {
        let a = (0..d)
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
        let offset = (0..d).map(|_| 6.0 * rng.uniform() - 3.0).collect();
        Self { a, offset }
    }

    /// `n` rows as f32; `spread` scales g (> 1 gives outliers).
    fn sample(&self, rng: &mut Rng, n: usize, spread: f64) -> Array2<f32> {
        let d = self.offset.len();
        let mut out = Array2::<f32>::zeros((n, d));
        for mut row in out.rows_mut() {
            let g: Vec<f64> = (0..d).map(|_| spread * rng.gauss()).collect();
            for (i, v) in row.iter_mut().enumerate() {
                let z: f64 = self.a[i].iter().zip(&g).map(|(a, g)| a * g).sum();
                *v = (self.offset[i] + z) as f32;
            }
        }
        out
    }
}

/// One peer case: fit rows, query rows, the fixed shrinkages and the k's to compare.
struct Case {
    name: &'static str,
    fit: Array2<f32>,
    queries: Array2<f32>,
    fixed: Vec<f64>,
    ks: Vec<usize>,
    /// Whether the plain (unbiased) covariance is singular (N ≤ d, a constant column).
    plain_singular: bool,
    /// Whether Ledoit-Wolf's is (N = 2: the two centred rows are ±v, β̄ = 0, so δ = 0).
    lw_singular: bool,
}

fn case(name: &'static str, seed: u64, n: usize, d: usize, plain_singular: bool) -> Case {
    let mut rng = Rng(seed);
    let g = Gaussian::new(&mut rng, d);
    let fit = g.sample(&mut rng, n, 1.0);
    let inliers = g.sample(&mut rng, 12, 1.0);
    let outliers = g.sample(&mut rng, 8, 3.0);
    let queries = ndarray::concatenate![ndarray::Axis(0), inliers, outliers];
    let ks = if n >= 5 { vec![1, 5] } else { vec![1, n] };
    Case {
        name,
        fit,
        queries,
        fixed: vec![0.0, 0.25, 1.0],
        ks,
        plain_singular,
        lw_singular: n == 2,
    }
}

fn cases() -> Vec<Case> {
    let mut big = case("n400_d8", 1, 400, 8, false);
    // Queries equal to fit rows: k = 1 distance exactly 0.
    big.queries = ndarray::concatenate![
        ndarray::Axis(0),
        big.queries,
        big.fit.slice(ndarray::s![..3, ..])
    ];
    let mut constant = case("n100_d6_constant_column", 6, 100, 6, true);
    // 0.7 is not an f32: its mean in f64 is not exactly the value, the centred column ≈ 0.
    constant.fit.column_mut(2).fill(0.7);
    vec![
        big,
        case("n40_d64", 2, 40, 64, true),
        case("n16_d16", 3, 16, 16, true),
        case("n12_d30", 4, 12, 30, true),
        case("n25_d1", 5, 25, 1, false),
        case("n2_d3", 7, 2, 3, true),
        constant,
    ]
}

fn rows_json(rows: &Array2<f32>) -> Value {
    rows.rows()
        .into_iter()
        .map(|r| r.iter().map(|&v| v as f64).collect::<Vec<f64>>())
        .collect::<Vec<_>>()
        .into()
}

/// Collects every mismatch, so one run shows them all.
#[derive(Default)]
struct Report(Vec<String>);

impl Report {
    fn close(&mut self, what: &str, got: f64, want: f64, floor: f64) {
        let ok = (got - want).abs() <= REL * got.abs().max(want.abs()) + floor;
        if !ok {
            self.0.push(format!("{what}: {got:e} vs peer {want:e}"));
        }
    }

    fn vec(&mut self, what: &str, got: &[f64], want: &Value) {
        let want = floats(want);
        if got.len() != want.len() {
            self.0.push(format!(
                "{what}: {} values vs peer {}",
                got.len(),
                want.len()
            ));
            return;
        }
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            self.close(&format!("{what}[{i}]"), *g, *w, ABS);
        }
    }

    /// `floor` = None: ABS; Some(f): f·max|peer entry| (for inverses, whose small entries
    /// carry the rounding of their large ones).
    fn mat(&mut self, what: &str, got: &Mat<f64>, want: &Value, scaled_floor: Option<f64>) {
        let want: Vec<Vec<f64>> = want.as_array().unwrap().iter().map(floats).collect();
        if want.len() != got.nrows() || want.iter().any(|r| r.len() != got.ncols()) {
            self.0
                .push(format!("{what}: shape differs from the peer's"));
            return;
        }
        let max = want.iter().flatten().fold(0.0f64, |m, v| m.max(v.abs()));
        let floor = scaled_floor.map_or(ABS, |f| f * max);
        for (i, row) in want.iter().enumerate() {
            for (j, w) in row.iter().enumerate() {
                self.close(&format!("{what}[{i},{j}]"), got[(i, j)], *w, floor);
            }
        }
    }

    fn fail(&mut self, msg: String) {
        self.0.push(msg);
    }
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn obs(rows: &Array2<f32>) -> Observations<'_> {
    Observations {
        embeddings: rows.view(),
        recon_error: None,
        recon_local: None,
        maps: None,
    }
}

/// Compares one covariance estimate's Cholesky, inverse and Mahalanobis distances with the
/// peer's `{rank, inverse, mahalanobis}`; a singular peer covariance must be refused.
fn check_gaussian(r: &mut Report, what: &str, c: &Case, shrinkage: Shrinkage, peer: &Value) {
    let (n, d) = c.fit.dim();
    let est = covariance(c.fit.view(), shrinkage).unwrap();
    let singular = peer["rank"].as_u64().unwrap() < d as u64;
    let chol = Cholesky::new(&est.covariance, est.rows);
    let fitted = Mahalanobis::fit(c.fit.view(), shrinkage);
    if singular {
        let refused = StatsError::NotPositiveDefinite { rows: n, dim: d };
        if chol.as_ref().err() != Some(&refused) {
            r.fail(format!(
                "{what}: peer rank {} < {d}, but Cholesky::new gave {chol:?}",
                peer["rank"]
            ));
        }
        if fitted.as_ref().err() != Some(&refused) {
            r.fail(format!(
                "{what}: peer rank {} < {d}, but Mahalanobis::fit gave {:?}",
                peer["rank"],
                fitted.map(|m| m.shrinkage())
            ));
        }
        return;
    }
    let (Ok(chol), Ok(fitted)) = (chol, fitted) else {
        r.fail(format!(
            "{what}: refused, but the peer's covariance has full rank"
        ));
        return;
    };
    // Lᵀ⁻¹·L⁻¹ = Σ⁻¹.
    let w = chol.inverse_factor();
    let inverse = w.transpose() * &w;
    r.mat(
        &format!("{what} inverse"),
        &inverse,
        &peer["inverse"],
        Some(ABS),
    );
    let q = &c.queries;
    let centred = Mat::from_fn(q.nrows(), d, |i, j| q[[i, j]] as f64 - est.mean[j]);
    let norms = chol.whitened_norms(&centred);
    r.vec(
        &format!("{what} whitened_norms"),
        &norms,
        &peer["mahalanobis"],
    );
    match fitted.score(&obs(q)) {
        Ok(s) => r.vec(&format!("{what} Mahalanobis"), &s, &peer["mahalanobis"]),
        Err(e) => r.fail(format!("{what} Mahalanobis: {e}")),
    }
}

#[test]
fn statistics_and_detectors_match_sklearn_and_scipy() {
    let _one = common::one_at_a_time();
    let Some(py) = common::peer_python() else {
        return;
    };
    let cases = cases();
    let input: Vec<Value> = cases
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "fit": rows_json(&c.fit),
                "queries": rows_json(&c.queries),
                "fixed": c.fixed,
                "ks": c.ks,
            })
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cases.json");
    std::fs::write(&path, serde_json::to_vec(&input).unwrap()).unwrap();
    let o = Command::new(py)
        .arg(common::repo_root().join("tests/peers/stats_peer.py"))
        .arg(&path)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let peers: Vec<Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(peers.len(), cases.len());

    let mut r = Report::default();
    for (c, p) in cases.iter().zip(&peers) {
        let name = c.name;
        assert_eq!(p["name"], name);
        let (n, d) = c.fit.dim();

        // The data is what the case says it is: the peer agrees the plain Σ is (not) singular.
        let rank = p["unbiased_rank"].as_u64().unwrap();
        if (rank < d as u64) != c.plain_singular {
            r.fail(format!("{name}: peer rank of np.cov {rank} (d = {d})"));
        }

        // Fixed(δ) on the unbiased covariance; Fixed(0) = np.cov.
        for (delta, pf) in c.fixed.iter().zip(p["fixed"].as_array().unwrap()) {
            let what = format!("{name} Fixed({delta})");
            let est = covariance(c.fit.view(), Shrinkage::Fixed(*delta)).unwrap();
            assert_eq!(est.rows, n);
            assert_eq!(est.shrinkage, *delta);
            r.vec(&format!("{what} mean"), &est.mean, &p["mean"]);
            r.mat(
                &format!("{what} covariance"),
                &est.covariance,
                &pf["covariance"],
                None,
            );
            if *delta == 0.0 {
                r.mat(
                    &format!("{what} vs np.cov"),
                    &est.covariance,
                    &p["unbiased"],
                    None,
                );
            }
            check_gaussian(&mut r, &what, c, Shrinkage::Fixed(*delta), pf);
        }

        // Ledoit-Wolf = sklearn's LedoitWolf (covariance_, shrinkage_, location_).
        let what = format!("{name} LedoitWolf");
        let lw = &p["ledoit_wolf"];
        let est = covariance(c.fit.view(), Shrinkage::LedoitWolf).unwrap();
        r.vec(&format!("{what} location"), &est.mean, &lw["location"]);
        r.mat(
            &format!("{what} covariance"),
            &est.covariance,
            &lw["covariance"],
            None,
        );
        r.close(
            &format!("{what} shrinkage"),
            est.shrinkage,
            lw["shrinkage"].as_f64().unwrap(),
            ABS,
        );
        if (lw["rank"].as_u64().unwrap() < d as u64) != c.lw_singular {
            r.fail(format!(
                "{what}: peer rank of covariance_ {} (d = {d})",
                lw["rank"]
            ));
        }
        check_gaussian(&mut r, &what, c, Shrinkage::LedoitWolf, lw);

        // Euclidean and k-NN.
        let e = Euclidean::fit(c.fit.view()).unwrap();
        r.vec(
            &format!("{name} Euclidean"),
            &e.score(&obs(&c.queries)).unwrap(),
            &p["euclidean"],
        );
        for k in &c.ks {
            let knn = Knn::fit(c.fit.view(), *k).unwrap();
            r.vec(
                &format!("{name} Knn(k={k})"),
                &knn.score(&obs(&c.queries)).unwrap(),
                &p["knn"][k.to_string()],
            );
        }
    }
    assert!(
        r.0.is_empty(),
        "{} mismatches with the peer:\n{}",
        r.0.len(),
        r.0.join("\n")
    );
}

fn bits(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn saved_detectors_score_identically_after_loading() {
    let _one = common::one_at_a_time();
    let c = case("roundtrip", 11, 60, 5, false);
    let q = obs(&c.queries);
    let maha = Mahalanobis::fit(c.fit.view(), Shrinkage::LedoitWolf).unwrap();
    let eucl = Euclidean::fit(c.fit.view()).unwrap();
    let knn = Knn::fit(c.fit.view(), 3).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("detector.h5");
    {
        let file = hdf5::File::create(&path).unwrap();
        maha.save(&file.create_group("m").unwrap()).unwrap();
        eucl.save(&file.create_group("e").unwrap()).unwrap();
        knn.save(&file.create_group("k").unwrap()).unwrap();
    }
    let file = hdf5::File::open(&path).unwrap();
    let maha2 = Mahalanobis::load(&file.group("m").unwrap()).unwrap();
    let eucl2 = Euclidean::load(&file.group("e").unwrap()).unwrap();
    let knn2 = Knn::load(&file.group("k").unwrap()).unwrap();

    assert_eq!(maha2, maha);
    assert_eq!(eucl2, eucl);
    assert_eq!(knn2, knn);
    assert_eq!(knn2.k(), 3);
    assert_eq!(maha2.shrinkage().to_bits(), maha.shrinkage().to_bits());
    let pairs: [(&dyn ClassScorer, &dyn ClassScorer); 3] =
        [(&maha, &maha2), (&eucl, &eucl2), (&knn, &knn2)];
    for (before, after) in pairs {
        let (s1, s2) = (before.score(&q).unwrap(), after.score(&q).unwrap());
        assert_eq!(bits(&s1), bits(&s2), "{before:?}");
        assert_eq!(before.summary(), after.summary());
        assert_eq!(before.onnx_part(), after.onnx_part());
    }
}
