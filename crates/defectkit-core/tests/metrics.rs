//! defectkit's evaluation metrics against scikit-learn 1.9 and NumPy themselves
//! (tests/peers/metrics_peer.py): AUROC, the ROC curve, average precision, F1-max, the
//! confusion at thresholds and percentiles, on seeded data sets with continuous, heavily tied
//! and all-tied scores, balanced and imbalanced labels, n from 5 to 2000.

#[path = "../../../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::Command;

use defectkit_core::metrics::{auroc, average_precision, f1_max, percentile, roc_curve, Confusion};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value as Json};

const PERCENTILES: [f64; 12] = [
    0.0, 0.1, 1.0, 5.0, 25.0, 50.0, 62.5, 75.0, 90.0, 95.0, 99.0, 100.0,
];

struct Case {
    name: String,
    scores: Vec<f64>,
    labels: Vec<bool>,
    thresholds: Vec<f64>,
}

/// `n` samples, positives with probability `prevalence`; scores are a sum of uniforms shifted
/// up by `shift` for positives, then passed through `shape` (rounding makes ties).
fn make_case(
    name: &str,
    seed: u64,
    n: usize,
    prevalence: f64,
    shift: f64,
    shape: impl Fn(f64) -> f64,
) -> Case {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let labels: Vec<bool> = (0..n).map(|_| rng.random_bool(prevalence)).collect();
    let scores: Vec<f64> = labels
        .iter()
        .map(|&l| {
            let noise: f64 = (0..3).map(|_| rng.random::<f64>()).sum::<f64>() / 3.0;
            shape(noise + if l { shift } else { 0.0 })
        })
        .collect();
    fixed_case(name, scores, labels)
}

/// A case from given scores and labels, with thresholds at and between the scores.
fn fixed_case(name: &str, scores: Vec<f64>, labels: Vec<bool>) -> Case {
    let n = scores.len();
    let mut sorted = scores.clone();
    sorted.sort_by(f64::total_cmp);
    let (lo, hi) = (sorted[0], sorted[n - 1]);
    let thresholds = vec![
        lo - 1.0,
        lo,
        sorted[n / 4],
        sorted[n / 2],
        (lo + hi) / 2.0,
        sorted[3 * n / 4],
        hi,
        hi + 1.0,
        0.5,
    ];
    Case {
        name: name.to_string(),
        scores,
        labels,
        thresholds,
    }
}

fn cases() -> Vec<Case> {
    let id = |x: f64| x;
    let round1 = |x: f64| (x * 10.0).round() / 10.0;
    let mut cases = Vec::new();
    for (i, &n) in [5usize, 12, 37, 100, 500, 2000].iter().enumerate() {
        let seed = 100 + i as u64;
        cases.push(make_case(
            &format!("continuous n={n}"),
            seed,
            n,
            0.4,
            0.3,
            id,
        ));
        cases.push(make_case(&format!("tied n={n}"), seed, n, 0.4, 0.3, round1));
    }
    cases.push(make_case("all tied", 7, 50, 0.3, 0.3, |_| 0.5));
    cases.push(make_case("all tied n=5", 8, 5, 0.5, 0.0, |_| -2.0));
    cases.push(make_case("rare positives", 9, 2000, 0.01, 0.4, id));
    cases.push(make_case(
        "rare positives tied",
        10,
        2000,
        0.01,
        0.4,
        round1,
    ));
    cases.push(make_case("mostly positive", 11, 500, 0.95, 0.2, id));
    cases.push(make_case("separable", 12, 200, 0.3, 2.0, id));
    cases.push(make_case("reversed", 13, 200, 0.3, -0.5, id));
    cases.push(make_case("integer scores", 14, 1000, 0.2, 0.5, |x| {
        (x * 5.0).floor()
    }));
    cases.push(make_case("wide range", 15, 300, 0.3, 0.4, |x| {
        (x - 0.6) * 1e6
    }));
    cases.push(make_case("no positives", 16, 20, 0.0, 0.0, id));
    cases.push(make_case("no negatives", 17, 20, 1.0, 0.0, round1));
    // Small tied sets, where several thresholds often share the best F1 (the highest wins).
    for seed in 0..40 {
        let n = 4 + seed as usize % 7;
        cases.push(make_case(
            &format!("small #{seed}"),
            1000 + seed,
            n,
            0.5,
            0.2,
            round1,
        ));
    }
    cases.push(fixed_case(
        "F1 tie",
        vec![0.9, 0.8, 0.7, 0.6],
        vec![true, false, false, true],
    ));
    cases
}

fn sklearn(py: &Path, cases: &[Case]) -> Vec<Json> {
    let input: Vec<Json> = cases
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "scores": c.scores,
                "labels": c.labels,
                "thresholds": c.thresholds,
                "percentiles": PERCENTILES,
            })
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cases.json");
    std::fs::write(&path, serde_json::to_vec(&input).unwrap()).unwrap();
    let out = Command::new(py)
        .arg(common::repo_root().join("tests/peers/metrics_peer.py"))
        .arg(&path)
        .output()
        .expect("run the metrics peer");
    assert!(
        out.status.success(),
        "metrics peer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<Json> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(results.len(), cases.len());
    results
}

/// Equal within a relative 1e-9.
fn assert_close(ours: f64, theirs: &Json, what: &str) {
    let theirs = theirs
        .as_f64()
        .unwrap_or_else(|| panic!("{what}: peer gave {theirs}"));
    assert!(
        (ours - theirs).abs() <= 1e-9 * ours.abs().max(theirs.abs()),
        "{what}: ours {ours:e}, sklearn {theirs:e}"
    );
}

fn f64s(v: &Json) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn check(c: &Case, r: &Json) {
    let name = &c.name;
    let (s, l) = (&c.scores[..], &c.labels[..]);
    assert_eq!(r["name"], json!(name));

    match auroc(s, l) {
        None => assert!(
            r["auroc"].is_null(),
            "{name}: auroc None, sklearn {}",
            r["auroc"]
        ),
        Some(a) => assert_close(a, &r["auroc"], &format!("{name}: auroc")),
    }

    match roc_curve(s, l) {
        None => assert!(r["roc"].is_null(), "{name}: roc None, sklearn has one"),
        Some(points) => {
            let (fpr, tpr) = (f64s(&r["roc"]["fpr"]), f64s(&r["roc"]["tpr"]));
            assert_eq!(points.len(), fpr.len(), "{name}: ROC points");
            for (k, &(f, t)) in points.iter().enumerate() {
                assert_close(f, &json!(fpr[k]), &format!("{name}: fpr[{k}]"));
                assert_close(t, &json!(tpr[k]), &format!("{name}: tpr[{k}]"));
            }
        }
    }

    match average_precision(s, l) {
        None => assert!(r["ap"].is_null(), "{name}: AP None, sklearn {}", r["ap"]),
        Some(ap) => assert_close(ap, &r["ap"], &format!("{name}: AP")),
    }

    match f1_max(s, l) {
        None => assert!(r["f1_max"].is_null(), "{name}: F1-max None"),
        Some(m) => {
            let t = &r["f1_max"];
            assert_close(m.f1, &t["f1"], &format!("{name}: F1-max"));
            assert_close(
                m.threshold,
                &t["threshold"],
                &format!("{name}: F1-max threshold"),
            );
            assert_close(
                m.precision,
                &t["precision"],
                &format!("{name}: F1-max precision"),
            );
            assert_close(m.recall, &t["recall"], &format!("{name}: F1-max recall"));
        }
    }

    let theirs = r["confusion"].as_array().unwrap();
    assert_eq!(theirs.len(), c.thresholds.len());
    for (&t, their) in c.thresholds.iter().zip(theirs) {
        let what = format!("{name}: at {t}");
        assert_eq!(their["threshold"].as_f64(), Some(t), "{what}");
        let ours = Confusion::at_threshold(s, l, t);
        let counts = |c: Confusion| (c.tp, c.fp, c.tn, c.fn_);
        let theirs_counts = (
            their["tp"].as_u64().unwrap() as usize,
            their["fp"].as_u64().unwrap() as usize,
            their["tn"].as_u64().unwrap() as usize,
            their["fn"].as_u64().unwrap() as usize,
        );
        assert_eq!(counts(ours), theirs_counts, "{what}: (tp, fp, tn, fn)");
        assert_eq!(ours.total(), s.len());
        assert_close(
            ours.precision(),
            &their["precision"],
            &format!("{what}: precision"),
        );
        assert_close(ours.recall(), &their["recall"], &format!("{what}: recall"));
        assert_close(ours.f1(), &their["f1"], &format!("{what}: F1"));
        assert_close(
            ours.accuracy(),
            &their["accuracy"],
            &format!("{what}: accuracy"),
        );
        assert_close(
            ours.false_positive_rate(),
            &their["fpr"],
            &format!("{what}: FPR"),
        );
    }

    let theirs = r["percentiles"].as_array().unwrap();
    for (&p, their) in PERCENTILES.iter().zip(theirs) {
        let ours = percentile(s, p).expect("a percentile of a non-empty set");
        assert_close(ours, their, &format!("{name}: percentile {p}"));
    }
}

#[test]
fn metrics_match_scikit_learn() {
    let Some(py) = common::peer_python() else {
        return;
    };
    let cases = cases();
    // The data sets cover what they claim to.
    assert!(cases.iter().any(|c| c.scores.len() == 5));
    assert!(cases.iter().any(|c| c.labels.iter().all(|&l| !l)));
    assert!(cases.iter().any(|c| c.labels.iter().all(|&l| l)));
    let results = sklearn(&py, &cases);
    for (c, r) in cases.iter().zip(&results) {
        check(c, r);
    }
}
