//! `defectkit data synth` then `defectkit data check`, through the real binary.

mod common;

use std::fs;

use common::run_cli;

#[test]
fn synth_then_check_prints_the_table_and_names_corrupt_files() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = common::repo_root();
    let out = dir.path().join("syn");
    let out_s = out.to_str().unwrap();
    let small = [
        "--out",
        out_s,
        "--seed",
        "3",
        "--size",
        "48",
        "--train-good",
        "5",
        "--test-good",
        "2",
        "--defects-per-type",
        "2",
    ];
    let mut args = vec!["data", "synth"];
    args.extend(small);
    let (ok, stdout, stderr) = run_cli(&cwd, &args);
    assert!(ok, "synth failed: {stderr}");
    assert!(stdout.contains("10 categories"), "{stdout}");

    // Same settings again: without --force it refuses, with --if-changed it skips.
    let (ok, _, stderr) = run_cli(&cwd, &args);
    assert!(!ok && stderr.contains("--force"), "{stderr}");
    let mut again = args.clone();
    again.push("--if-changed");
    let (ok, stdout, _) = run_cli(&cwd, &again);
    assert!(ok && stdout.contains("up to date"), "{stdout}");

    let (ok, table, stderr) = run_cli(&cwd, &["data", "check", "--root", out_s]);
    assert!(ok, "check failed: {stderr}");
    for class in ["bottle", "carpet", "grid", "screw", "wood"] {
        assert!(table.contains(class), "{table}");
    }
    assert!(table.contains("48x48"), "{table}");
    assert!(table.contains("no warnings"), "{table}");

    let (ok, json, _) = run_cli(&cwd, &["data", "check", "--root", out_s, "--json"]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["classes"].as_array().unwrap().len(), 10);

    // A corrupt image is named and skipped, and fatal with --strict.
    let victim = out.join("wood/train/good/001.png");
    fs::write(&victim, b"not a png").unwrap();
    let (ok, table, _) = run_cli(&cwd, &["data", "check", "--root", out_s]);
    assert!(ok);
    assert!(table.contains("wood/train/good/001.png"), "{table}");
    let (ok, _, stderr) = run_cli(&cwd, &["data", "check", "--root", out_s, "--strict"]);
    assert!(!ok);
    assert!(stderr.contains("001.png"), "{stderr}");

    // Class selection through the config.
    let (ok, table, _) = run_cli(
        &cwd,
        &[
            "data",
            "check",
            "--root",
            out_s,
            "data.classes=[grid,screw]",
        ],
    );
    assert!(ok);
    assert!(
        table.contains("grid") && !table.contains("bottle"),
        "{table}"
    );
}

#[test]
fn check_errors_are_clear() {
    let cwd = common::repo_root();
    let (ok, _, stderr) = run_cli(&cwd, &["data", "check", "--root", "/nonexistent/mvtec"]);
    assert!(!ok);
    assert!(stderr.contains("/nonexistent/mvtec"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let (ok, _, stderr) = run_cli(&cwd, &["data", "check", "data.nope=1"]);
    assert!(!ok && stderr.contains("+data.nope=1"), "{stderr}");
    let (ok, _, stderr) = run_cli(&cwd, &["-m", "data", "check"]);
    assert!(!ok && stderr.contains("multirun"), "{stderr}");
}
