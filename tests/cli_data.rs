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

/// Every file under `dir` whose name marks it as a temporary or partial write.
fn leftovers(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.contains(".tmp") || name.contains(".partial-") || name.contains(".old-") {
            out.push(p.clone());
        }
        if p.is_dir() {
            out.extend(leftovers(&p));
        }
    }
    out
}

/// Ctrl-C during `data synth` stops it, removes the partial set, leaves the old set as it
/// was and exits 130; a later run removes what a killed (not interrupted) run left.
#[test]
fn interrupted_synth_leaves_nothing_and_stale_leftovers_are_cleared() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("set");
    // A killed writer's leftovers (a pid that cannot exist).
    let stale = tmp.path().join("set.partial-99999999");
    fs::create_dir_all(stale.join("bottle")).unwrap();
    fs::write(tmp.path().join(".x.json.tmp-99999999"), b"x").unwrap();
    let child = std::process::Command::new(common::defectkit_bin())
        .args([
            "data",
            "synth",
            "--out",
            &out.display().to_string(),
            "data.synth.image_size=512",
            "data.synth.train_good=400",
        ])
        .current_dir(tmp.path())
        .env("DEFECTKIT_ROOT", tmp.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the partial set is being written, then press Ctrl-C.
    let started = tmp.path().join(format!("set.partial-{}", child.id()));
    common::wait_for(60, "synth never started", || {
        started.join("bottle/train/good").is_dir()
    });
    std::thread::sleep(std::time::Duration::from_millis(200));
    let (code, err) = common::interrupt_and_wait(child);
    assert_eq!(code, Some(130), "{err}");
    assert!(err.contains("interrupted"), "{err}");
    assert!(!out.exists(), "a half set was left at {}", out.display());
    assert!(
        leftovers(tmp.path()).is_empty(),
        "{:?}",
        leftovers(tmp.path())
    );
    assert!(
        err.contains("no longer exists"),
        "stale leftovers not reported: {err}"
    );
}

/// An image whose file name is not valid UTF-8 is counted and used, with a warning that
/// names it by its lossy name; it used to vanish without a word.
#[test]
fn non_utf8_image_names_are_read_and_warned_about() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let cwd = common::repo_root();
    let out = dir.path().join("syn");
    let out_s = out.to_str().unwrap();
    let synth = [
        "data",
        "synth",
        "--out",
        out_s,
        "--size",
        "32",
        "--train-good",
        "4",
        "--test-good",
        "1",
        "--defects-per-type",
        "1",
        "--classes",
        "bottle",
    ];
    let (ok, _, err) = run_cli(&cwd, &synth);
    assert!(ok, "{err}");
    let root = format!("data.root={out_s}");
    let check = [
        "data",
        "check",
        "--json",
        root.as_str(),
        "data.classes=[bottle]",
    ];
    let (ok, before, err) = run_cli(&cwd, &check);
    assert!(ok, "{err}");
    let good = out.join("bottle/train/good");
    let first = fs::read_dir(&good).unwrap().next().unwrap().unwrap().path();
    let odd = good.join(std::ffi::OsStr::from_bytes(b"caf\xe9.png"));
    fs::rename(&first, &odd).unwrap();
    let (ok, after, err) = run_cli(&cwd, &check);
    assert!(ok, "{err}");
    let count = |json: &str| -> serde_json::Value {
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        v["classes"].clone()
    };
    assert_eq!(count(&before), count(&after), "the image was dropped");
    assert!(
        after.contains("not valid UTF-8") && after.contains("caf\u{FFFD}.png"),
        "{after}"
    );
}
