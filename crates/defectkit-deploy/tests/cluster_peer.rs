//! The `cluster` stage's DBSCAN, k-distance curve and agreement scores against their peer
//! (tests/peers/cluster_peer.py: scikit-learn 1.9 in the project venv): `cluster::dbscan`
//! labels vs `DBSCAN(eps, min_samples).fit(X).labels_` — exactly, ids and noise (sklearn's
//! numbering is ours) — on seeded blobs with uniform noise points, 2-D and 16-D, N up to
//! ~1000, several eps / min_samples (some with many border points reachable from two
//! clusters, an integer grid where distances tie with eps exactly, identical points, fewer
//! points than min_samples); `cluster::knee::k_distances` vs `NearestNeighbors(k)
//! .kneighbors(X)`; `cluster::agreement` ARI / NMI vs `adjusted_rand_score` /
//! `normalized_mutual_info_score` on random labelings with noise and degenerate ones.

#[path = "../../../tests/common/mod.rs"]
mod common;

use std::process::Command;

use defectkit_deploy::cluster::agreement::{adjusted_rand, normalized_mutual_info};
use defectkit_deploy::cluster::dbscan::dbscan;
use defectkit_deploy::cluster::knee::{k_distances, knee};
use ndarray::Array2;
use serde_json::{json, Value};

/// Relative tolerance of the k-distances and scores.
const REL: f64 = 1e-9;
/// Absolute floor for values near zero.
const ABS: f64 = 1e-12;

/// The workspace's SplitMix64 (the crate has no `rand`).
use defectkit_core::rng::SplitMix64 as Rng;

/// Gaussian blobs `(centre, std, count)` plus `noise` points uniform in [−half, half]^d,
/// shuffled; returns the rows and each row's source (blob index, `blobs.len()` for noise).
fn blobs(
    rng: &mut Rng,
    blobs: &[(Vec<f64>, f64, usize)],
    noise: usize,
    half: f64,
) -> (Array2<f64>, Vec<usize>) {
    let d = blobs[0].0.len();
    let mut rows: Vec<(Vec<f64>, usize)> = Vec::new();
    for (b, (centre, std, count)) in blobs.iter().enumerate() {
        for _ in 0..*count {
            rows.push((centre.iter().map(|c| c + std * rng.gauss()).collect(), b));
        }
    }
    for _ in 0..noise {
        let p = (0..d).map(|_| half * (2.0 * rng.uniform() - 1.0)).collect();
        rows.push((p, blobs.len()));
    }
    shuffle(rng, &mut rows);
    let n = rows.len();
    let truth = rows.iter().map(|r| r.1).collect();
    let flat: Vec<f64> = rows.into_iter().flat_map(|r| r.0).collect();
    (Array2::from_shape_vec((n, d), flat).unwrap(), truth)
}

fn shuffle<T>(rng: &mut Rng, v: &mut [T]) {
    for i in (1..v.len()).rev() {
        v.swap(i, rng.below(i + 1));
    }
}

fn squared(x: &Array2<f64>, i: usize, j: usize) -> f64 {
    x.row(i)
        .iter()
        .zip(x.row(j))
        .map(|(a, b)| (a - b) * (a - b))
        .sum()
}

/// `eps`, nudged up until no pairwise distance lies within 1e-9 (relative) of it, so that
/// rounding (sklearn's brute-force search uses ‖x‖² − 2x·y + ‖y‖²) cannot put a pair on
/// different sides of it here and there.
fn clear_of_ties(x: &Array2<f64>, mut eps: f64) -> f64 {
    let n = x.nrows();
    'again: loop {
        for i in 0..n {
            for j in i + 1..n {
                if (squared(x, i, j).sqrt() - eps).abs() <= 1e-9 * eps {
                    eps *= 1.0 + 1e-6;
                    continue 'again;
                }
            }
        }
        return eps;
    }
}

/// One DBSCAN case; `truth` (blob of origin) also feeds an agreement case.
struct DbCase {
    name: String,
    rows: Array2<f64>,
    eps: f64,
    min_samples: usize,
    truth: Vec<usize>,
}

/// How many cluster members are border points, and how many of those are within eps of
/// core points of two or more clusters (where the first cluster grown must win).
fn border_stats(c: &DbCase, labels: &[Option<usize>]) -> (usize, usize) {
    let n = c.rows.nrows();
    let eps2 = c.eps * c.eps;
    let neighbours: Vec<Vec<usize>> = (0..n)
        .map(|i| (0..n).filter(|&j| squared(&c.rows, i, j) <= eps2).collect())
        .collect();
    let core: Vec<bool> = neighbours
        .iter()
        .map(|v| v.len() >= c.min_samples)
        .collect();
    let (mut border, mut contested) = (0, 0);
    for i in 0..n {
        if core[i] || labels[i].is_none() {
            continue;
        }
        border += 1;
        let mut ids: Vec<usize> = neighbours[i]
            .iter()
            .filter(|&&j| core[j])
            .filter_map(|&j| labels[j])
            .collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.len() >= 2 {
            contested += 1;
        }
    }
    (border, contested)
}

fn dbscan_cases() -> Vec<DbCase> {
    let mut out = Vec::new();
    let mut push = |name: String, rows: &Array2<f64>, truth: &[usize], eps: f64, ms: usize| {
        out.push(DbCase {
            name,
            rows: rows.clone(),
            eps,
            min_samples: ms,
            truth: truth.to_vec(),
        });
    };

    // 2-D: four blobs of different spread and 60 noise points.
    let mut rng = Rng(11);
    let spec: Vec<_> = [0.4, 0.6, 0.8, 1.0]
        .iter()
        .map(|&s| {
            let c = vec![20.0 * rng.uniform() - 10.0, 20.0 * rng.uniform() - 10.0];
            (c, s, 150)
        })
        .collect();
    let (x, truth) = blobs(&mut rng, &spec, 60, 14.0);
    for eps in [0.3, 0.6, 1.2] {
        for ms in [3, 5, 12] {
            let eps = clear_of_ties(&x, eps);
            push(format!("2d_blobs eps={eps} ms={ms}"), &x, &truth, eps, ms);
        }
    }

    // 2-D: two overlapping blobs and a dense noise field, high min_samples: many border
    // points, many within reach of both clusters.
    let mut rng = Rng(12);
    let spec = vec![(vec![0.0, 0.0], 1.0, 400), (vec![3.0, 0.0], 1.0, 400)];
    let (x, truth) = blobs(&mut rng, &spec, 200, 5.0);
    for (eps, ms) in [(0.35, 15), (0.5, 25), (0.3, 8), (0.25, 6)] {
        let eps = clear_of_ties(&x, eps);
        push(
            format!("2d_touching eps={eps} ms={ms}"),
            &x,
            &truth,
            eps,
            ms,
        );
    }

    // 2-D: two dense uniform slabs (0.6 × 1, 300 points each) 1.8·eps apart, 15 points on
    // the centre line between them: those are not core (few neighbours) but lie within eps
    // of core points on both sides, so whichever cluster is grown first (in row order) must
    // claim them.
    for (seed, eps, ms, gap) in [(15, 0.3, 28, 1.8), (16, 0.3, 28, 1.8), (17, 0.35, 30, 1.9)] {
        let mut rng = Rng(seed);
        let gap = gap * eps;
        let mut pts: Vec<(Vec<f64>, usize)> = Vec::new();
        for (x0, label) in [(0.0, 0), (0.6 + gap, 1)] {
            for _ in 0..300 {
                pts.push((vec![x0 + 0.6 * rng.uniform(), rng.uniform()], label));
            }
        }
        for _ in 0..15 {
            let x = 0.6 + gap / 2.0 + 0.04 * (rng.uniform() - 0.5);
            pts.push((vec![x, rng.uniform()], 2));
        }
        shuffle(&mut rng, &mut pts);
        let truth: Vec<usize> = pts.iter().map(|p| p.1).collect();
        let flat: Vec<f64> = pts.into_iter().flat_map(|p| p.0).collect();
        let x = Array2::from_shape_vec((truth.len(), 2), flat).unwrap();
        let eps = clear_of_ties(&x, eps);
        push(format!("2d_gap eps={eps} ms={ms}"), &x, &truth, eps, ms);
    }

    // 16-D: five blobs and 100 noise points; eps from the knee of the k-distance curve.
    let mut rng = Rng(13);
    let spec: Vec<_> = (0..5)
        .map(|b| {
            let c = (0..16).map(|_| 4.0 * rng.gauss()).collect();
            (c, 1.0 + 0.1 * b as f64, 180)
        })
        .collect();
    let (x, truth) = blobs(&mut rng, &spec, 100, 15.0);
    for ms in [5, 10, 32] {
        let curve = k_distances(x.view(), ms).unwrap();
        let (_, at_knee) = knee(&curve).unwrap();
        for scale in [0.6, 0.8, 1.0] {
            let eps = clear_of_ties(&x, at_knee * scale);
            push(format!("16d_blobs eps={eps} ms={ms}"), &x, &truth, eps, ms);
        }
    }

    // An integer grid with holes and duplicated points: distances equal eps exactly (exact
    // in floating point), so `≤ eps` and counting the point itself both show.
    let mut rng = Rng(14);
    let mut pts: Vec<[f64; 2]> = Vec::new();
    for i in 0..14 {
        for j in 0..14 {
            if rng.uniform() < 0.8 {
                pts.push([i as f64, j as f64]);
            }
            if rng.uniform() < 0.1 {
                pts.push([i as f64, j as f64]);
            }
        }
    }
    shuffle(&mut rng, &mut pts);
    let x = Array2::from_shape_vec((pts.len(), 2), pts.concat()).unwrap();
    let truth = vec![0; x.nrows()];
    for (eps, ms) in [(1.0, 3), (1.0, 5), (1.0, 6), (2.0, 9), (2.0, 13), (3.0, 20)] {
        push(format!("grid eps={eps} ms={ms}"), &x, &truth, eps, ms);
    }

    // Identical points (30 of them) among a few scattered ones.
    let mut rows = vec![[0.5, -1.5, 2.0]; 30];
    rows.extend([
        [3.0, 0.0, 0.0],
        [0.0, 3.0, 0.0],
        [0.5, -1.5, 2.1],
        [9.0, 9.0, 9.0],
    ]);
    let x = Array2::from_shape_vec((rows.len(), 3), rows.concat()).unwrap();
    let truth: Vec<usize> = (0..x.nrows()).map(|i| usize::from(i >= 30)).collect();
    push("identical eps=0.05 ms=30".into(), &x, &truth, 0.05, 30);
    push("identical eps=0.05 ms=31".into(), &x, &truth, 0.05, 31);
    push("identical eps=0.2 ms=31".into(), &x, &truth, 0.2, 31);

    // Fewer points than min_samples: all noise.
    let x = Array2::from_shape_vec((3, 2), vec![0.0, 0.0, 0.1, 0.0, 0.0, 0.1]).unwrap();
    push("three points ms=5".into(), &x, &[0, 0, 0], 1.0, 5);
    out
}

fn rows_json(x: &Array2<f64>) -> Value {
    x.rows()
        .into_iter()
        .map(|r| r.to_vec())
        .collect::<Vec<_>>()
        .into()
}

fn sk_labels(labels: &[Option<usize>]) -> Vec<i64> {
    labels.iter().map(|l| l.map_or(-1, |v| v as i64)).collect()
}

/// Collects every mismatch, so one run shows them all.
#[derive(Default)]
struct Report(Vec<String>);

impl Report {
    /// Distances compared through their squares, with an absolute floor `floor2` on the
    /// square (sklearn's brute-force search in > 15 dimensions computes ‖x‖² − 2x·y + ‖y‖²,
    /// whose cancellation leaves a self-distance of ~1e-7 instead of 0).
    fn close_distance(&mut self, what: &str, got: f64, want: f64, floor2: f64) {
        let (g2, w2) = (got * got, want * want);
        if (g2 - w2).abs() > 2.0 * REL * g2.max(w2) + floor2 {
            self.0.push(format!("{what}: {got:e} vs peer {want:e}"));
        }
    }

    fn close(&mut self, what: &str, got: f64, want: f64) {
        let ok = (got - want).abs() <= REL * got.abs().max(want.abs()) + ABS;
        if !ok {
            self.0.push(format!("{what}: {got:e} vs peer {want:e}"));
        }
    }
}

/// Whether two labelings are the same partition with the same noise (up to relabelling).
fn same_up_to_relabelling(a: &[i64], b: &[i64]) -> bool {
    let mut ab = std::collections::HashMap::new();
    let mut ba = std::collections::HashMap::new();
    a.iter().zip(b).all(|(&x, &y)| {
        (x == -1) == (y == -1) && *ab.entry(x).or_insert(y) == y && *ba.entry(y).or_insert(x) == x
    })
}

/// Random labels: `k` labels (values `offset + 0..k`), a fraction `noise` of them noise.
fn random_labels(
    rng: &mut Rng,
    n: usize,
    k: usize,
    noise: f64,
    offset: usize,
) -> Vec<Option<usize>> {
    (0..n)
        .map(|_| (rng.uniform() >= noise).then(|| offset + rng.below(k)))
        .collect()
}

fn agreement_cases(
    db: &[DbCase],
    db_labels: &[Vec<Option<usize>>],
) -> Vec<(String, Vec<Option<usize>>, Vec<usize>)> {
    let mut out: Vec<(String, Vec<Option<usize>>, Vec<usize>)> = Vec::new();
    // DBSCAN's labels against the blobs they came from (the real use).
    for (c, l) in db.iter().zip(db_labels) {
        out.push((format!("{} vs truth", c.name), l.clone(), c.truth.clone()));
    }
    let mut rng = Rng(21);
    let some = |v: Vec<Option<usize>>| v.into_iter().map(|l| l.unwrap()).collect::<Vec<_>>();
    for (n, ka, kb, noise) in [
        (1000, 6, 4, 0.2),
        (5000, 20, 30, 0.05),
        (50, 3, 50, 0.5),
        (200, 2, 2, 0.0),
        (7, 3, 2, 0.3),
        (300, 1, 3, 0.9),
    ] {
        let a = random_labels(&mut rng, n, ka, noise, 0);
        let b = some(random_labels(&mut rng, n, kb, 0.0, 1_000_000));
        out.push((format!("random n={n} ka={ka} kb={kb} noise={noise}"), a, b));
    }
    // Correlated: b mostly agrees with a.
    let a = random_labels(&mut rng, 2000, 8, 0.1, 0);
    let b = a
        .iter()
        .map(|l| {
            if rng.uniform() < 0.8 {
                l.map_or(99, |v| 7 - v)
            } else {
                rng.below(9)
            }
        })
        .collect();
    out.push(("correlated n=2000".into(), a, b));
    // Degenerate ones.
    let n = 12;
    let all = |v: Option<usize>| vec![v; n];
    let distinct_a: Vec<_> = (0..n).map(Some).collect();
    let distinct_b: Vec<usize> = (0..n).map(|i| 3 * i + 1).collect();
    let halves: Vec<usize> = (0..n).map(|i| i / 6).collect();
    out.extend([
        ("empty".into(), vec![], vec![]),
        ("one point, noise".into(), vec![None], vec![0]),
        ("one point".into(), vec![Some(5)], vec![2]),
        (
            "two points, same".into(),
            vec![Some(0), Some(0)],
            vec![1, 1],
        ),
        (
            "two points, split".into(),
            vec![Some(0), Some(1)],
            vec![1, 1],
        ),
        (
            "two points, noise and cluster".into(),
            vec![None, Some(0)],
            vec![1, 2],
        ),
        ("all noise vs one label".into(), all(None), vec![0; n]),
        ("one cluster vs one label".into(), all(Some(4)), vec![9; n]),
        (
            "all noise vs all distinct".into(),
            all(None),
            distinct_b.clone(),
        ),
        ("one cluster vs halves".into(), all(Some(0)), halves.clone()),
        (
            "all distinct vs all distinct".into(),
            distinct_a.clone(),
            distinct_b.clone(),
        ),
        (
            "all distinct vs one label".into(),
            distinct_a.clone(),
            vec![0; n],
        ),
        ("all distinct vs halves".into(), distinct_a, halves.clone()),
        (
            "relabelled halves with noise".into(),
            (0..n).map(|i| (i >= 6).then_some(3)).collect(),
            halves,
        ),
    ]);
    // Independent by construction (every cell of the table equal): MI is exactly 0.
    let a = (0..400)
        .map(|i| if i % 4 == 0 { None } else { Some(i % 4) })
        .collect();
    let b = (0..400).map(|i| (i / 4) % 5).collect();
    out.push(("independent product".into(), a, b));
    out
}

#[test]
fn cluster_stage_matches_sklearn() {
    let Some(py) = common::peer_python() else {
        return;
    };
    let db = dbscan_cases();
    let ours: Vec<Vec<Option<usize>>> = db
        .iter()
        .map(|c| dbscan(c.rows.view(), c.eps, c.min_samples).unwrap())
        .collect();
    // k-distances on each data set once (its first case), k from 1 to N.
    let mut seen = std::collections::HashSet::new();
    let kd: Vec<(&DbCase, Vec<usize>)> = db
        .iter()
        .filter(|c| seen.insert(c.name.split(' ').next().unwrap().to_owned()))
        .map(|c| {
            let n = c.rows.nrows();
            let ks = [1, 2, 5, 10, 31, n]
                .into_iter()
                .filter(|&k| k <= n)
                .collect();
            (c, ks)
        })
        .collect();
    assert_eq!(kd.len(), 7);
    let agree = agreement_cases(&db, &ours);

    let input = json!({
        "dbscan": db.iter().map(|c| json!({
            "name": c.name, "rows": rows_json(&c.rows), "eps": c.eps, "min_samples": c.min_samples,
        })).collect::<Vec<_>>(),
        "kdist": kd.iter().map(|(c, ks)| json!({
            "name": c.name, "rows": rows_json(&c.rows), "ks": ks,
        })).collect::<Vec<_>>(),
        "agreement": agree.iter().map(|(name, a, b)| json!({
            "name": name, "a": sk_labels(a), "b": b,
        })).collect::<Vec<_>>(),
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cases.json");
    std::fs::write(&path, serde_json::to_vec(&input).unwrap()).unwrap();
    let o = Command::new(py)
        .arg(common::repo_root().join("tests/peers/cluster_peer.py"))
        .arg(&path)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let peer: Value = serde_json::from_slice(&o.stdout).unwrap();

    let mut r = Report::default();
    let (mut borders, mut contested, mut contested_random) = (0, 0, 0);
    for ((c, l), p) in db.iter().zip(&ours).zip(peer["dbscan"].as_array().unwrap()) {
        assert_eq!(p["name"], c.name.as_str());
        let want: Vec<i64> = p["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        let got = sk_labels(l);
        let (b, t) = border_stats(c, l);
        borders += b;
        contested += t;
        if !c.name.starts_with("grid") {
            contested_random += t;
        }
        let clusters = l.iter().flatten().max().map_or(0, |m| m + 1);
        let noise = l.iter().filter(|v| v.is_none()).count();
        eprintln!(
            "{}: {clusters} clusters, {noise} noise, {b} border ({t} contested) of {}",
            c.name,
            l.len()
        );
        if got != want {
            let differ = got.iter().zip(&want).filter(|(g, w)| g != w).count();
            r.0.push(format!(
                "{}: DBSCAN labels differ at {differ} of {} points (same partition up to \
                 relabelling: {})",
                c.name,
                got.len(),
                same_up_to_relabelling(&got, &want)
            ));
        }
    }
    // The cases exercise what they are meant to.
    assert!(contested >= 40, "only {contested} contested border points");
    assert!(
        contested_random >= 20,
        "only {contested_random} contested border points off the grid"
    );
    assert!(borders >= 500, "only {borders} border points");
    let total_clusters: usize = ours
        .iter()
        .map(|l| l.iter().flatten().max().map_or(0, |m| m + 1))
        .sum();
    assert!(total_clusters >= 40, "{total_clusters} clusters in all");

    for ((c, ks), p) in kd.iter().zip(peer["kdist"].as_array().unwrap()) {
        assert_eq!(p["name"], c.name.as_str());
        let max_norm2 = c
            .rows
            .rows()
            .into_iter()
            .map(|r| r.dot(&r))
            .fold(0.0, f64::max);
        let floor2 = 1e-13 * max_norm2 + ABS * ABS;
        for &k in ks {
            let got = k_distances(c.rows.view(), k).unwrap();
            let want = p["k_distances"][k.to_string()].as_array().unwrap();
            assert_eq!(got.len(), want.len());
            for (i, (g, w)) in got.iter().zip(want).enumerate() {
                r.close_distance(
                    &format!("{} k={k} [{i}]", c.name),
                    *g,
                    w.as_f64().unwrap(),
                    floor2,
                );
            }
        }
    }

    for ((name, a, b), p) in agree.iter().zip(peer["agreement"].as_array().unwrap()) {
        assert_eq!(p["name"], name.as_str());
        r.close(
            &format!("{name} ARI"),
            adjusted_rand(a, b),
            p["ari"].as_f64().unwrap(),
        );
        r.close(
            &format!("{name} NMI"),
            normalized_mutual_info(a, b),
            p["nmi"].as_f64().unwrap(),
        );
    }

    assert!(
        r.0.is_empty(),
        "{} mismatches:\n{}",
        r.0.len(),
        r.0.join("\n")
    );
}
