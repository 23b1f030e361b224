//! The report's paired statistics (`stats::paired`) against SciPy 1.17 in the project venv
//! (tests/peers/paired_peer.py): `scipy.stats.ttest_rel` (t, two-sided p), the Student-t
//! interval from `scipy.stats.t.ppf`, and `t.cdf`, for n = 2 … 200 and confidence 0.9–0.99.

#[path = "../../../tests/common/mod.rs"]
mod common;

use std::io::Write as _;
use std::process::{Command, Stdio};

use defectkit_core::rng::SplitMix64 as Rng;
use defectkit_deploy::stats::paired::{paired_difference, t_cdf, t_quantile};

fn close(ours: f64, peer: f64, what: &str) {
    let tol = 1e-9 * peer.abs().max(1.0);
    assert!(
        (ours - peer).abs() <= tol,
        "{what}: ours {ours} vs SciPy {peer}"
    );
}

#[test]
fn paired_t_matches_scipy() {
    let Some(py) = common::peer_python() else {
        return;
    };
    let mut rng = Rng(7);
    let mut cases = Vec::new();
    for &n in &[2usize, 3, 5, 10, 30, 200] {
        for &conf in &[0.9, 0.95, 0.99] {
            let a: Vec<f64> = (0..n).map(|_| rng.uniform()).collect();
            let b: Vec<f64> = a.iter().map(|x| x - 0.05 + 0.2 * rng.uniform()).collect();
            let t_at = 4.0 * rng.uniform() - 2.0;
            cases.push((a, b, conf, t_at));
        }
    }
    let input: Vec<serde_json::Value> = cases
        .iter()
        .map(|(a, b, c, t)| serde_json::json!({"a": a, "b": b, "confidence": c, "t_at": t}))
        .collect();
    let mut child = Command::new(&py)
        .arg(common::repo_root().join("tests/peers/paired_peer.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run the peer");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(&input).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the peer failed");
    let peer: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    for ((a, b, conf, t_at), p) in cases.iter().zip(&peer) {
        let n = a.len();
        let what = format!("n={n} confidence={conf}");
        let ours = paired_difference(a, b, *conf).unwrap();
        close(
            ours.mean,
            p["mean"].as_f64().unwrap(),
            &format!("{what} mean"),
        );
        close(ours.sd, p["sd"].as_f64().unwrap(), &format!("{what} sd"));
        close(ours.t, p["t"].as_f64().unwrap(), &format!("{what} t"));
        close(ours.p_value, p["p"].as_f64().unwrap(), &format!("{what} p"));
        close(
            ours.ci.0,
            p["low"].as_f64().unwrap(),
            &format!("{what} ci low"),
        );
        close(
            ours.ci.1,
            p["high"].as_f64().unwrap(),
            &format!("{what} ci high"),
        );
        let q = t_quantile(0.5 + conf / 2.0, (n - 1) as f64);
        close(q, p["q"].as_f64().unwrap(), &format!("{what} t quantile"));
        close(
            t_cdf(*t_at, (n - 1) as f64),
            p["cdf"].as_f64().unwrap(),
            &format!("{what} t cdf"),
        );
    }
}

#[test]
fn bad_samples_are_errors() {
    assert!(paired_difference(&[1.0], &[0.0], 0.95).is_err());
    assert!(paired_difference(&[1.0, 2.0], &[0.0], 0.95).is_err());
    assert!(paired_difference(&[1.0, 2.0], &[0.0, 1.0], 1.5).is_err());
    assert!(paired_difference(&[1.0, f64::NAN], &[0.0, 1.0], 0.95).is_err());
}
