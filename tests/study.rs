//! `defectkit study` end to end at the tiny size (`study=tiny`): it runs every stage, a rerun
//! skips every step, a study killed mid-step and rerun ends with the same detection table as
//! an uninterrupted one, and the report holds every section with numbers from the study's
//! own files.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::defectkit_bin;

/// The tiny generated data set and the tiny design, as command-line overrides.
fn tiny_args(data: &Path) -> Vec<String> {
    [
        "study=tiny".to_string(),
        format!("data.root={}", data.display()),
        "data.synth.train_good=6".into(),
        "data.synth.test_good=2".into(),
        "data.synth.test_defect_per_type=1".into(),
        "data.synth.image_size=64".into(),
    ]
    .to_vec()
}

fn study_cmd(cwd: &Path, data: &Path, dir: &Path) -> Command {
    let mut cmd = Command::new(defectkit_bin());
    cmd.arg("--config-dir")
        .arg(common::repo_root().join("conf"))
        .arg("study")
        .arg("--dir")
        .arg(dir)
        .args(tiny_args(data))
        .current_dir(cwd)
        .env("DEFECTKIT_ROOT", cwd);
    cmd
}

fn run_ok(mut cmd: Command) -> (String, String) {
    let out = cmd.output().expect("run defectkit study");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(
        out.status.success(),
        "study failed ({:?})\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    (stdout, stderr)
}

fn manifest(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("manifest.json")).expect("manifest.json");
    serde_json::from_str(&text).expect("manifest is JSON")
}

/// The comparison rows, without anything that may differ between two identical runs.
fn detection_table(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("compare/comparison.json")).expect("comparison");
    serde_json::from_str(&text).unwrap()
}

#[test]
fn study_runs_resumes_after_a_kill_and_reports() {
    let _one = common::one_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let data = cwd.join("data");
    let first = cwd.join("first");

    // 1. End to end.
    let started = Instant::now();
    let (stdout, _) = run_ok(study_cmd(cwd, &data, &first));
    let first_secs = started.elapsed().as_secs_f64();
    assert!(stdout.contains("report: "), "{stdout}");
    assert!(first.join("report.html").is_file() && first.join("report.md").is_file());
    let m = manifest(&first);
    let steps = m["steps"].as_array().unwrap();
    let stages: Vec<&str> = steps.iter().map(|s| s["stage"].as_str().unwrap()).collect();
    for stage in defectkit::study::ALL_STAGES {
        assert!(stages.contains(&stage), "no {stage} step in {stages:?}");
    }
    assert!(
        steps.iter().all(|s| s["status"] == "done"),
        "{}",
        serde_json::to_string_pretty(&m).unwrap()
    );
    // 2 settings × 3 models + 1 more seed × 3 models = 9 trainings.
    let trainings = steps
        .iter()
        .filter(|s| s["stage"] == "sweep" || s["stage"] == "seeds")
        .count();
    assert_eq!(trainings, 9);

    // 2. A rerun skips every step.
    let (_, stderr) = run_ok(study_cmd(cwd, &data, &first));
    assert!(
        stderr.contains(&format!("0 steps run, {} skipped", steps.len())),
        "{stderr}"
    );

    // 3. Killed mid-step (the whole process group, as a closed terminal or an OOM kill
    // would), then rerun: the same detection table as the uninterrupted study.
    let second = cwd.join("second");
    let mut cmd = study_cmd(cwd, &data, &second);
    {
        use std::os::unix::process::CommandExt as _;
        cmd.process_group(0);
    }
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs_f64(first_secs * 3.0 + 120.0);
    let killed_in = loop {
        assert!(
            Instant::now() < deadline,
            "the study never reached its seeds stage"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the study ended before it was killed"
        );
        let running = std::fs::read_to_string(second.join("manifest.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|m| {
                m["steps"].as_array().and_then(|s| {
                    s.iter()
                        .find(|s| s["status"] == "running" && s["stage"] == "seeds")
                        .map(|s| s["id"].as_str().unwrap().to_string())
                })
            });
        if let Some(id) = running {
            break id;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // SAFETY: kill(2) of the study's own process group.
    unsafe {
        libc::kill(-(child.id() as i32), libc::SIGKILL);
    }
    let _ = child.wait();
    assert!(!second.join("report.md").exists(), "killed before the end");
    let m = manifest(&second);
    let state = m["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == killed_in.as_str())
        .unwrap()["status"]
        .clone();
    let (_, stderr) = run_ok(study_cmd(cwd, &data, &second));
    // The tiny steps take under a second, so the kill may land just after the step ended;
    // when it landed inside, the step must be redone, not skipped.
    if state == "running" {
        assert!(
            stderr.contains(&format!("{killed_in}: train")),
            "the killed step {killed_in} is redone: {stderr}"
        );
    }
    assert!(
        stderr.contains("skipped"),
        "the steps finished before the kill are not redone: {stderr}"
    );
    let (a, b) = (detection_table(&first), detection_table(&second));
    let differing: Vec<String> = a
        .as_array()
        .unwrap()
        .iter()
        .zip(b.as_array().unwrap())
        .filter(|(x, y)| x != y)
        .map(|(x, _)| format!("{} {}", x["model"], x["method"]))
        .collect();
    assert!(
        a == b,
        "the resumed study's detection table differs from the uninterrupted one: {differing:?}"
    );

    // 3b. Ctrl-C (a SIGINT to the study alone): the running step is stopped and recorded as
    // interrupted, the study exits 130 and leaves no lock behind.
    let third = cwd.join("third");
    let child = study_cmd(cwd, &data, &third)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs_f64(first_secs * 3.0 + 120.0);
    let interrupted = loop {
        assert!(
            Instant::now() < deadline,
            "the study never started a sweep step"
        );
        let running = std::fs::read_to_string(third.join("manifest.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|m| {
                m["steps"].as_array().and_then(|s| {
                    s.iter()
                        .find(|s| s["status"] == "running" && s["stage"] == "sweep")
                        .map(|s| s["id"].as_str().unwrap().to_string())
                })
            });
        if let Some(id) = running {
            break id;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // SAFETY: kill(2) of our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(!third.join(".lock").exists(), "the lock is left behind");
    let m = manifest(&third);
    let step = m["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == interrupted.as_str())
        .unwrap()
        .clone();
    assert!(
        step["status"] == "interrupted" || step["status"] == "done",
        "{step}"
    );

    // 4. The report: every section, and numbers from the study's own files.
    let report = std::fs::read_to_string(first.join("report.md")).unwrap();
    for heading in [
        "Abstract",
        "Hypothesis",
        "Data",
        "Methods",
        "Experimental design",
        "Results",
        "Discussion",
        "Threats to validity",
        "Conclusion",
        "Reproduce",
    ] {
        assert!(
            report
                .lines()
                .any(|l| l.starts_with('#') && l.contains(heading)),
            "report.md has no `{heading}` section"
        );
    }
    let rows = detection_table(&first);
    let mean_over_seeds = |model: &str, method: &str| -> f64 {
        let v: Vec<f64> = rows
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| {
                r["method"] == method
                    && r["model"].as_str().unwrap().rsplit_once("_s").unwrap().0 == model
            })
            .map(|r| r["mean"]["auroc"].as_f64().unwrap())
            .collect();
        assert_eq!(v.len(), 2, "{model} {method}: one row per seed");
        v.iter().sum::<f64>() / v.len() as f64
    };
    for (model, method) in [
        ("a", "mahalanobis"),
        ("b", "padim"),
        ("teacher", "mahalanobis"),
    ] {
        let expect = format!("{:.4}", mean_over_seeds(model, method));
        assert!(
            report.contains(&expect),
            "report.md lacks {model}/{method}'s mean AUROC {expect}"
        );
    }
    let html = std::fs::read_to_string(first.join("report.html")).unwrap();
    assert!(
        html.contains("data:image/png;base64,"),
        "figures are embedded"
    );
    // `defectkit report` again, refreshing a copy of the model READMEs.
    let readmes = cwd.join("readmes");
    for kind in ["cnn_scratch", "cnn_distilled", "unet_ae", "teacher"] {
        std::fs::create_dir_all(readmes.join(kind)).unwrap();
        std::fs::write(readmes.join(kind).join("README.md"), "# model\n").unwrap();
    }
    let out = Command::new(defectkit_bin())
        .arg("report")
        .arg(&first)
        .arg("--model-readmes")
        .arg(&readmes)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let readme = std::fs::read_to_string(readmes.join("cnn_distilled/README.md")).unwrap();
    assert!(readme.starts_with("# model\n") && readme.contains("<!-- study-results:begin -->"));
    let expect = format!("{:.4}", mean_over_seeds("b", "padim"));
    assert!(
        readme.contains(&expect),
        "B's README lacks {expect}:\n{readme}"
    );
    let out = Command::new(defectkit_bin())
        .arg("report")
        .arg(cwd.join("no-such-study"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-study"));
    let selection: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(first.join("selection.json")).unwrap())
            .unwrap();
    for m in selection["models"].as_array().unwrap() {
        let sel = m["selected"].as_u64().unwrap() as usize;
        let chosen = m["settings"][sel]["value"].as_f64().unwrap();
        for s in m["settings"].as_array().unwrap() {
            let v = s["value"].as_f64().unwrap();
            assert!(chosen <= v, "selected the lowest {} ", m["metric"]);
        }
    }
}

#[test]
fn a_bad_design_is_refused_before_anything_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let dir: PathBuf = cwd.join("s");
    for (bad, says) in [
        ("study.seeds=[]", "seeds"),
        ("study.bench.iterations=0", "iterations"),
        ("trainer.no_such_key=1", "no_such_key"),
    ] {
        let out = study_cmd(cwd, &cwd.join("data"), &dir)
            .arg(bad)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{bad} was accepted");
        assert!(stderr.contains(says), "{bad}: {stderr}");
        assert!(!dir.join("runs").exists(), "{bad}: a step ran");
    }
}
