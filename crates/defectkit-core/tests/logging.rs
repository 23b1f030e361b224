//! Run metric logging: the metric files, the logger fan-out, and W&B through the official
//! Python SDK (offline), read back with W&B's own tools.

#[path = "../../../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use defectkit_core::config::schema::LoggerConfig;
use defectkit_core::logging::{
    LogError, LoggerOptions, MetricRecord, MetricsWriter, RunLogger, METRICS_CSV, METRICS_JSONL,
};
use serde_json::{json, Value};

fn rec(epoch: usize, step: usize, values: &[(&str, f64)]) -> MetricRecord {
    MetricRecord {
        epoch,
        step,
        values: values
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect::<BTreeMap<_, _>>(),
    }
}

fn read_jsonl(path: &Path) -> Vec<MetricRecord> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| MetricRecord::from_json(&serde_json::from_str(l).unwrap()).unwrap())
        .collect()
}

fn dir_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn wandb_cfg(mode: &str) -> LoggerConfig {
    LoggerConfig::Wandb {
        project: "defectkit-test".into(),
        entity: None,
        mode: mode.into(),
        tags: vec!["test".into(), "-dash".into()],
        group: Some("unit".into()),
    }
}

#[test]
fn jsonl_lines_parse_and_equal_the_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = MetricsWriter::create(dir.path()).unwrap();
    let records = vec![
        rec(
            0,
            10,
            &[("train/loss", 0.693), ("lr", 1e-3), ("seconds", 1.5)],
        ),
        // Values whose shortest decimal form needs all 17 digits round-trip exactly.
        rec(
            1,
            20,
            &[
                ("train/loss", 0.1 + 0.2),
                ("val/loss", 0.9 + 0.05),
                ("x", 1e-300),
                ("lr", 3.0),
            ],
        ),
    ];
    for r in &records {
        w.log(r).unwrap();
    }
    assert_eq!(w.records(), &records[..]);
    let text = fs::read_to_string(dir.path().join(METRICS_JSONL)).unwrap();
    assert_eq!(text.lines().count(), 2);
    assert!(text.ends_with('\n'));
    // Flat objects: epoch, step and the metrics side by side.
    let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first["epoch"], json!(0));
    assert_eq!(first["step"], json!(10));
    assert_eq!(first["train/loss"], json!(0.693));
    assert_eq!(read_jsonl(&dir.path().join(METRICS_JSONL)), records);
}

#[test]
fn non_finite_values_and_bad_names() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = MetricsWriter::create(dir.path()).unwrap();
    w.log(&rec(
        0,
        1,
        &[("train/loss", f64::NAN), ("x", f64::INFINITY)],
    ))
    .unwrap();
    let line = fs::read_to_string(w.jsonl_path()).unwrap();
    assert!(line.contains("\"train/loss\":null"), "{line}");
    let back = read_jsonl(w.jsonl_path());
    assert!(back[0].values["train/loss"].is_nan());
    let csv = fs::read_to_string(w.csv_path()).unwrap();
    assert_eq!(csv, "epoch,step,train/loss,x\n0,1,NaN,inf\n");

    for bad in ["epoch", "step", ""] {
        let err = w.log(&rec(0, 2, &[(bad, 1.0)])).unwrap_err();
        assert!(matches!(err, LogError::InvalidName { .. }), "{err}");
    }
    assert_eq!(w.records().len(), 1, "a refused record is not written");
    assert_eq!(
        fs::read_to_string(w.jsonl_path()).unwrap().lines().count(),
        1
    );
}

#[test]
fn csv_gets_new_columns_when_metric_names_appear_later() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = MetricsWriter::create(dir.path()).unwrap();
    let csv_path = dir.path().join(METRICS_CSV);
    assert_eq!(fs::read_to_string(&csv_path).unwrap(), "epoch,step\n");

    w.log(&rec(0, 5, &[("train/loss", 0.5), ("lr", 0.01)]))
        .unwrap();
    assert_eq!(
        fs::read_to_string(&csv_path).unwrap(),
        "epoch,step,lr,train/loss\n0,5,0.01,0.5\n"
    );
    w.log(&rec(
        1,
        10,
        &[
            ("train/loss", 0.25),
            ("val/loss", 0.3),
            ("val/accuracy", 0.875),
            ("a,b", 2.0),
        ],
    ))
    .unwrap();
    w.log(&rec(2, 15, &[("lr", 1e-7)])).unwrap();
    assert_eq!(
        fs::read_to_string(&csv_path).unwrap(),
        "epoch,step,\"a,b\",lr,train/loss,val/accuracy,val/loss\n\
         0,5,,0.01,0.5,,\n\
         1,10,2.0,,0.25,0.875,0.3\n\
         2,15,,1e-7,,,\n"
    );
    // Atomic rewrites leave nothing behind but the two files.
    assert_eq!(dir_names(dir.path()), vec![METRICS_CSV, METRICS_JSONL]);
}

#[test]
fn open_append_resumes_without_duplicating_lines() {
    let dir = tempfile::tempdir().unwrap();
    let a = rec(0, 4, &[("train/loss", 0.9)]);
    let b = rec(1, 8, &[("train/loss", 0.7), ("val/loss", 0.8)]);
    let c = rec(2, 12, &[("train/loss", 0.5), ("val/accuracy", 0.5)]);
    {
        let mut w = MetricsWriter::create(dir.path()).unwrap();
        w.log(&a).unwrap();
        w.log(&b).unwrap();
    }
    let jsonl = dir.path().join(METRICS_JSONL);
    let mut w = MetricsWriter::open_append(dir.path()).unwrap();
    assert_eq!(w.records(), &[a.clone(), b.clone()]);
    w.log(&c).unwrap();
    drop(w);
    assert_eq!(read_jsonl(&jsonl), vec![a.clone(), b.clone(), c.clone()]);
    let csv = fs::read_to_string(dir.path().join(METRICS_CSV)).unwrap();
    assert_eq!(
        csv,
        "epoch,step,train/loss,val/accuracy,val/loss\n0,4,0.9,,\n1,8,0.7,,0.8\n2,12,0.5,0.5,\n"
    );

    // A crash mid-write leaves a cut-off last line: it is dropped, the rest continues.
    let mut text = fs::read_to_string(&jsonl).unwrap();
    text.push_str("{\"epoch\":3,\"st");
    fs::write(&jsonl, &text).unwrap();
    let mut w = MetricsWriter::open_append(dir.path()).unwrap();
    assert_eq!(w.records().len(), 3);
    let d = rec(3, 16, &[("train/loss", 0.4)]);
    w.log(&d).unwrap();
    assert_eq!(read_jsonl(&jsonl), vec![a.clone(), b.clone(), c.clone(), d]);

    // Resuming from the epoch-1 checkpoint drops the later epochs (no duplicates).
    assert_eq!(w.rewind_to_epoch(1).unwrap(), 2);
    let c2 = rec(2, 12, &[("train/loss", 0.45)]);
    w.log(&c2).unwrap();
    assert_eq!(read_jsonl(&jsonl), vec![a, b, c2]);
    assert_eq!(dir_names(dir.path()), vec![METRICS_CSV, METRICS_JSONL]);

    // A bad line in the middle is an error naming the line, not silently skipped.
    fs::write(
        &jsonl,
        "{\"epoch\":0,\"step\":1}\nnot json\n{\"epoch\":1,\"step\":2}\n",
    )
    .unwrap();
    match MetricsWriter::open_append(dir.path()) {
        Err(LogError::Parse { line, .. }) => assert_eq!(line, 2),
        other => panic!("expected a parse error, got {other:?}"),
    }
}

#[test]
fn create_fails_cleanly_when_the_run_dir_cannot_exist() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    fs::write(&file, "x").unwrap();
    let err = MetricsWriter::create(&file.join("run")).unwrap_err();
    assert!(matches!(err, LogError::Io { .. }), "{err}");
    let err =
        RunLogger::start(&file.join("run"), &LoggerConfig::Csv {}, "r", &json!({})).unwrap_err();
    assert!(err.to_string().contains("a-file"), "{err}");
}

#[test]
fn csv_logger_writes_both_files_and_ignores_images() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let mut logger = RunLogger::start(
        &run_dir,
        &LoggerConfig::Csv {},
        "csv-run",
        &json!({"seed": 1}),
    )
    .unwrap();
    assert!(!logger.wandb_active());
    logger
        .log(&rec(0, 1, &[("train/loss", 1.0), ("seconds", 0.5)]))
        .unwrap();
    logger.log_image("curves/loss", &dir.path().join("missing.png"));
    logger.log(&rec(1, 2, &[("train/loss", 0.5)])).unwrap();
    let report = logger.finish(&json!({"best": 0.5})).unwrap();
    assert!(report.wandb.is_none());
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert_eq!(report.metrics_jsonl, run_dir.join(METRICS_JSONL));
    assert_eq!(read_jsonl(&report.metrics_jsonl).len(), 2);
    assert_eq!(
        fs::read_to_string(&report.metrics_csv).unwrap(),
        "epoch,step,seconds,train/loss\n0,1,0.5,1.0\n1,2,,0.5\n"
    );
    assert_eq!(dir_names(&run_dir), vec![METRICS_CSV, METRICS_JSONL]);
}

#[test]
fn resume_option_continues_the_metric_files() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LoggerConfig::Csv {};
    let mut first = RunLogger::start(dir.path(), &cfg, "r", &json!({})).unwrap();
    first.log(&rec(0, 1, &[("train/loss", 1.0)])).unwrap();
    first.finish(&Value::Null).unwrap();
    let opts = LoggerOptions::default().resume(true);
    let mut again = RunLogger::start_with(dir.path(), &cfg, "r", &json!({}), &opts).unwrap();
    assert_eq!(again.metrics().records().len(), 1);
    again.log(&rec(1, 2, &[("train/loss", 0.5)])).unwrap();
    let report = again.finish(&Value::Null).unwrap();
    assert_eq!(read_jsonl(&report.metrics_jsonl).len(), 2);
}

#[test]
fn wandb_with_a_missing_python_warns_once_and_training_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let opts = LoggerOptions::default().python("/nonexistent/python");
    let mut logger =
        RunLogger::start_with(dir.path(), &wandb_cfg("offline"), "r", &json!({}), &opts).unwrap();
    assert!(!logger.wandb_active());
    assert_eq!(logger.warnings().len(), 1);
    assert!(
        logger.warnings()[0].contains("/nonexistent/python"),
        "{:?}",
        logger.warnings()
    );
    for e in 0..3 {
        logger
            .log(&rec(e, e * 10, &[("train/loss", 1.0 / (e + 1) as f64)]))
            .unwrap();
    }
    logger.log_image("curves/loss", Path::new("nothing.png"));
    let report = logger.finish(&json!({"best": 1})).unwrap();
    assert!(report.wandb.is_none());
    assert_eq!(
        report.warnings.len(),
        1,
        "warned once: {:?}",
        report.warnings
    );
    assert_eq!(read_jsonl(&report.metrics_jsonl).len(), 3);
}

/// A stand-in sidecar written in sh: checks the protocol without Python.
#[cfg(unix)]
fn fake_bridge(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("fake_bridge.sh");
    fs::write(&path, body).unwrap();
    path
}

#[cfg(unix)]
#[test]
fn sidecar_receives_config_metrics_images_summary_and_finish() {
    let dir = tempfile::tempdir().unwrap();
    let got = dir.path().join("received.jsonl");
    let args = dir.path().join("args.txt");
    let script = fake_bridge(
        dir.path(),
        r#"printf '%s\n' "$@" > "$FAKE_ARGS"
echo '{"type":"ready","mode":"offline","run_id":"fake1"}'
while IFS= read -r line; do
  printf '%s\n' "$line" >> "$FAKE_LOG"
  case "$line" in *'"type":"image"'*) echo '{"type":"warning","message":"no pillow"}';; esac
  case "$line" in *'"type":"finish"'*) break;; esac
done
echo 'not a protocol line'
echo '{"type":"finished","mode":"offline","run_id":"fake1","sync_dir":"/tmp/x","aborted":false}'
"#,
    );
    let opts = LoggerOptions::default()
        .python("/bin/sh")
        .bridge_script(&script)
        .env("FAKE_LOG", &got)
        .env("FAKE_ARGS", &args)
        .finish_timeout(Duration::from_secs(20));
    let run_dir = dir.path().join("run");
    let config = json!({"model": {"name": "cnn_a"}, "seed": 7});
    let mut logger =
        RunLogger::start_with(&run_dir, &wandb_cfg("online"), "run-7", &config, &opts).unwrap();
    assert!(logger.wandb_active());
    logger
        .log(&rec(0, 3, &[("train/loss", 0.5), ("val/loss", f64::NAN)]))
        .unwrap();
    logger.log_image("curves/loss", Path::new("loss.png"));
    let report = logger.finish(&json!({"best/val_loss": 0.25})).unwrap();
    let info = report.wandb.expect("wandb info");
    assert_eq!(info.run_id.as_deref(), Some("fake1"));
    assert_eq!(info.sync_dir, Some(PathBuf::from("/tmp/x")));
    assert_eq!(report.warnings, vec!["W&B: no pillow".to_string()]);

    let lines: Vec<Value> = fs::read_to_string(&got)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let abs_png = std::env::current_dir().unwrap().join("loss.png");
    assert_eq!(
        lines,
        vec![
            json!({"type": "config", "config": config}),
            json!({"type": "log", "step": 3,
                   "data": {"epoch": 0, "train/loss": 0.5, "val/loss": null}}),
            json!({"type": "image", "key": "curves/loss", "path": abs_png}),
            json!({"type": "summary", "data": {"best/val_loss": 0.25}}),
            json!({"type": "finish"}),
        ]
    );
    let args = fs::read_to_string(&args).unwrap();
    let abs_run = std::path::absolute(&run_dir).unwrap();
    let expected = format!(
        "--project\ndefectkit-test\n--mode\nonline\n--dir\n{}\n--name\nrun-7\n--group\nunit\n\
         --tags=test\n--tags=-dash\n--stats-pid={}\n",
        abs_run.display(),
        std::process::id()
    );
    assert_eq!(args, expected);
}

#[cfg(unix)]
#[test]
fn a_failing_sidecar_is_a_warning_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let script = fake_bridge(
        dir.path(),
        "echo 'Traceback: ModuleNotFoundError: wandb' >&2\n\
         echo '{\"type\":\"error\",\"message\":\"cannot import wandb\"}'\nexit 1\n",
    );
    let opts = LoggerOptions::default()
        .python("/bin/sh")
        .bridge_script(&script);
    let mut logger =
        RunLogger::start_with(dir.path(), &wandb_cfg("offline"), "r", &json!({}), &opts).unwrap();
    logger.log(&rec(0, 1, &[("train/loss", 1.0)])).unwrap();
    let t0 = Instant::now();
    // The failure shows up at a later call (the sidecar starts asynchronously).
    while logger.wandb_active() && t0.elapsed() < Duration::from_secs(20) {
        logger.log(&rec(0, 1, &[("train/loss", 1.0)])).unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!logger.wandb_active());
    logger.log(&rec(1, 2, &[("train/loss", 0.5)])).unwrap();
    let report = logger.finish(&json!({})).unwrap();
    assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
    let w = &report.warnings[0];
    assert!(w.contains("cannot import wandb"), "{w}");
    assert!(
        w.contains("ModuleNotFoundError"),
        "stderr tail in the warning: {w}"
    );
    assert!(read_jsonl(&report.metrics_jsonl).len() >= 2);
}

#[cfg(unix)]
#[test]
fn a_hanging_sidecar_is_stopped_after_the_finish_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let script = fake_bridge(dir.path(), "exec sleep 60\n");
    let opts = LoggerOptions::default()
        .python("/bin/sh")
        .bridge_script(&script)
        .finish_timeout(Duration::from_secs(1));
    let mut logger =
        RunLogger::start_with(dir.path(), &wandb_cfg("offline"), "r", &json!({}), &opts).unwrap();
    logger.log(&rec(0, 1, &[("train/loss", 1.0)])).unwrap();
    let t0 = Instant::now();
    let report = logger.finish(&json!({})).unwrap();
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    assert!(report.wandb.is_none());
    assert!(
        report.warnings.iter().any(|w| w.contains("did not finish")),
        "{:?}",
        report.warnings
    );
}

#[cfg(unix)]
#[test]
fn dropping_the_logger_without_finish_closes_the_sidecar() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("eof.txt");
    let script = fake_bridge(
        dir.path(),
        "while IFS= read -r line; do :; done\necho eof > \"$FAKE_MARKER\"\n",
    );
    let opts = LoggerOptions::default()
        .python("/bin/sh")
        .bridge_script(&script)
        .env("FAKE_MARKER", &marker)
        .finish_timeout(Duration::from_secs(20));
    let mut logger =
        RunLogger::start_with(dir.path(), &wandb_cfg("offline"), "r", &json!({}), &opts).unwrap();
    logger.log(&rec(0, 1, &[("train/loss", 1.0)])).unwrap();
    drop(logger); // training failed: no finish
    assert!(
        marker.is_file(),
        "the sidecar saw end of input and exited before drop returned"
    );
}

/// Run `cmd` with stdout to a file, killed after `limit`; returns (success, stdout).
fn output_with_timeout(mut cmd: Command, out_file: &Path, limit: Duration) -> (bool, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(fs::File::create(out_file).unwrap())
        .spawn()
        .expect("start command");
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = fs::read_to_string(out_file).unwrap_or_default();
    (status.is_some_and(|s| s.success()), out)
}

#[test]
fn wandb_offline_end_to_end_read_back_with_wandb_tools() {
    let Some(python) = common::peer_python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("wandb-home");
    let run_dir = dir.path().join("run");
    let png = dir.path().join("loss_curve.png");
    image::RgbImage::from_fn(32, 24, |x, y| {
        image::Rgb([(x * 8) as u8, (y * 10) as u8, 90])
    })
    .save(&png)
    .unwrap();
    let wandb_env: Vec<(&str, PathBuf)> = vec![
        ("WANDB_SILENT", "true".into()),
        ("WANDB_DISABLE_CODE", "true".into()),
        ("WANDB_MODE", "offline".into()),
        ("WANDB_API_KEY", "".into()), // `online` below must fall back to offline
        ("WANDB_ERROR_REPORTING", "false".into()),
        ("WANDB_CONFIG_DIR", home.join("config")),
        ("WANDB_CACHE_DIR", home.join("cache")),
        ("WANDB_DATA_DIR", home.join("data")),
        ("WANDB_ARTIFACT_DIR", home.join("artifacts")),
    ];
    let mut opts = LoggerOptions::default()
        .python(&python)
        .finish_timeout(Duration::from_secs(90));
    for (k, v) in &wandb_env {
        opts = opts.env(k, v);
    }
    let config = json!({"model": {"name": "cnn_a", "width": 16}, "seed": 42, "lr": 0.001});
    let t0 = Instant::now();
    let mut logger =
        RunLogger::start_with(&run_dir, &wandb_cfg("online"), "e2e-run", &config, &opts).unwrap();
    assert!(logger.wandb_active(), "{:?}", logger.warnings());
    let losses = [0.9, 0.55, 0.3125];
    for (e, loss) in losses.iter().enumerate() {
        logger
            .log(&rec(
                e,
                (e + 1) * 10,
                &[
                    ("train/loss", *loss),
                    ("val/loss", loss + 0.05),
                    ("val/accuracy", 0.5 + 0.1 * e as f64),
                    ("lr", 1e-3),
                    ("seconds", 1.25),
                ],
            ))
            .unwrap();
    }
    logger.log_image("curves/loss", &png);
    let report = logger
        .finish(&json!({"best/val_loss": 0.3625, "best/epoch": 2}))
        .unwrap();
    let run_secs = t0.elapsed().as_secs_f64();
    let info = report.wandb.clone().unwrap_or_else(|| {
        panic!("W&B run missing; warnings: {:?}", report.warnings);
    });
    assert_eq!(
        info.mode, "offline",
        "online without WANDB_API_KEY → offline"
    );
    assert!(!info.aborted);
    let sync_dir = info.sync_dir.clone().expect("sync dir");
    assert!(sync_dir.starts_with(run_dir.join("wandb")), "{sync_dir:?}");
    assert!(
        sync_dir
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("offline-run-"),
        "{sync_dir:?}"
    );
    assert!(
        info.sync_file.as_ref().is_some_and(|f| f.is_file()),
        "{info:?}"
    );
    assert_eq!(read_jsonl(&report.metrics_jsonl).len(), 3);

    // Read the offline run back with W&B's own reader of its transaction log.
    let mut cmd = Command::new(&python);
    cmd.args(["-m", "wandb", "leet", "inspect", "--json"])
        .arg(&sync_dir);
    for (k, v) in &wandb_env {
        cmd.env(k, v);
    }
    let t1 = Instant::now();
    let (ok, out) = output_with_timeout(
        cmd,
        &dir.path().join("inspect.jsonl"),
        Duration::from_secs(60),
    );
    eprintln!(
        "W&B offline run: {run_secs:.1} s (start → finish), read back in {:.1} s",
        t1.elapsed().as_secs_f64()
    );
    assert!(ok, "wandb leet inspect failed: {out}");
    let records: Vec<Value> = out
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let of_type = |t: &str| -> Vec<&Value> {
        records
            .iter()
            .filter(|r| r["type"] == t)
            .map(|r| &r[t])
            .collect()
    };

    let run = of_type("run");
    assert_eq!(run[0]["display_name"], "e2e-run");
    assert_eq!(run[0]["project"], "defectkit-test");
    assert_eq!(run[0]["run_group"], "unit", "{}", run[0]);
    assert_eq!(run[0]["tags"], json!(["test", "-dash"]));

    let config_updates: Vec<&Value> = of_type("config")
        .into_iter()
        .map(|c| &c["update"])
        .collect();
    assert!(
        config_updates
            .iter()
            .any(|u| u["model"] == config["model"] && u["seed"] == 42 && u["lr"] == 0.001),
        "{config_updates:?}"
    );

    let history: Vec<&Value> = of_type("history").into_iter().map(|h| &h["item"]).collect();
    for (e, loss) in losses.iter().enumerate() {
        let row = history
            .iter()
            .find(|h| h["_step"] == json!((e + 1) * 10) && h.get("train/loss").is_some())
            .unwrap_or_else(|| panic!("no history row for step {}: {history:?}", (e + 1) * 10));
        assert_eq!(row["train/loss"].as_f64(), Some(*loss));
        assert_eq!(row["val/loss"].as_f64(), Some(loss + 0.05));
        assert_eq!(row["epoch"], json!(e));
        assert_eq!(row["lr"].as_f64(), Some(1e-3));
    }

    let summary_updates: Vec<&Value> = of_type("summary")
        .into_iter()
        .map(|s| &s["update"])
        .collect();
    assert!(
        summary_updates
            .iter()
            .any(|u| u["best/val_loss"] == 0.3625 && u["best/epoch"] == 2),
        "{summary_updates:?}"
    );

    // The image: an image panel when Pillow is installed next to wandb, else a run file.
    let as_panel = history.iter().any(|h| {
        h["curves/loss"]["_type"] == "image-file" || h["curves/loss._type"] == "image-file"
    });
    let as_file = of_type("files").iter().any(|f| {
        f["files"].as_array().is_some_and(|fs| {
            fs.iter().any(|x| {
                x["path"]
                    .as_str()
                    .is_some_and(|p| p.contains("curves_loss"))
            })
        })
    });
    assert!(as_panel || as_file, "image not in the run: {records:?}");

    let exit = of_type("exit");
    assert_eq!(exit.len(), 1, "{exit:?}");
    assert!(exit[0].get("exit_code").is_none_or(|c| c == 0), "{exit:?}");
}

#[test]
fn the_logger_can_move_to_a_training_thread() {
    fn assert_send<T: Send>() {}
    assert_send::<RunLogger>();
    assert_send::<MetricsWriter>();
}
