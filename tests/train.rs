//! Training A, B and C end to end at tiny sizes on generated data: the loss falls, early
//! stopping fires on a plateau, resume continues from the checkpoint, the run dir holds what
//! it promises, a diverging run stops with a clear error, and the CLI runs a sweep.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use defectkit::config::Loader;
use defectkit::data::synth::{generate, SynthOptions};
use defectkit::train::{train_job, TrainError};

/// A small synthetic set (3 categories, 32 px) shared by the tests of this file.
fn dataset() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("defectkit-train-test-{}", std::process::id()));
        let opts = SynthOptions {
            seed: 7,
            image_size: 32,
            train_good: 10,
            test_good: 3,
            test_defect_per_type: 1,
            classes: Some(vec!["bottle".into(), "carpet".into(), "screw".into()]),
            force: true,
        };
        generate(&opts, &dir, false).expect("generate data");
        dir
    })
}

fn tiny(model: &str, run_dir: &Path, extra: &[&str]) -> Vec<String> {
    let mut o = vec![
        format!("model={model}"),
        format!("data.root={}", dataset().display()),
        "data.preprocess.resize=32".into(),
        "data.val_fraction=0.3".into(),
        "trainer.max_epochs=3".into(),
        "trainer.batch_size=8".into(),
        "trainer.lr=0.003".into(),
        "trainer.early_stopping.patience=10".into(),
        format!("paths.root_dir={}", run_dir.parent().unwrap().display()),
        format!("hydra.run.dir={}", run_dir.display()),
    ];
    match model {
        "cnn_scratch" | "cnn_distilled" => o.push("model.width=8".into()),
        _ => o.extend([
            "model.depth=2".to_string(),
            "model.base_width=8".into(),
            "model.latent_dim=16".into(),
        ]),
    }
    if model == "cnn_distilled" {
        o.push("model.teacher.train_epochs=1".into());
    }
    o.extend(extra.iter().map(|s| s.to_string()));
    o
}

fn train(overrides: &[String]) -> Result<(defectkit::run::RunSummary, PathBuf), TrainError> {
    let loader = Loader::new(&common::repo_root().join("conf"), "config", "train").unwrap();
    let mut composed = loader.compose(overrides).unwrap();
    let cfg = loader.typed(&composed).unwrap();
    let run = loader.create_run_dir(&mut composed).unwrap();
    train_job(&cfg, &composed.overrides, &run.path).map(|s| (s, run.path))
}

fn epoch_losses(run_dir: &Path, key: &str) -> Vec<f64> {
    std::fs::read_to_string(run_dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()[key]
                .as_f64()
                .unwrap()
        })
        .collect()
}

fn assert_run_dir(dir: &Path) {
    for f in [
        ".hydra/config.yaml",
        "metrics.jsonl",
        "metrics.csv",
        "loss_curve.png",
        "summary.json",
        "checkpoints/best.bpk",
        "checkpoints/last.bpk",
        "checkpoints/last.json",
    ] {
        assert!(dir.join(f).is_file(), "{} missing", dir.join(f).display());
    }
}

#[test]
fn model_a_trains_and_its_loss_falls() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("a");
    let (s, dir) = train(&tiny("cnn_scratch", &run, &["trainer.max_epochs=4"])).unwrap();
    assert_run_dir(&dir);
    let losses = epoch_losses(&dir, "train/loss");
    assert_eq!(losses.len(), 4);
    assert!(losses[3] < losses[0], "train loss did not fall: {losses:?}");
    assert_eq!(s.model, "cnn_scratch");
    assert!(s.parameters > 1000 && s.flops_per_image > 0);
    assert!(
        s.metrics.contains_key("val/accuracy") && s.metrics.contains_key("test/accuracy"),
        "{:?}",
        s.metrics
    );
    let csv = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    assert!(
        csv.starts_with("epoch,step,") && csv.contains("val/loss"),
        "{csv}"
    );
}

#[test]
fn early_stopping_fires_on_a_plateau() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("plateau");
    // lr = 0: nothing changes, so val/loss never improves after the first epoch.
    let (s, _) = train(&tiny(
        "cnn_scratch",
        &run,
        &[
            "trainer.lr=0.0",
            "trainer.max_epochs=6",
            "trainer.early_stopping.patience=2",
            "model.head.dropout=0.0",
        ],
    ))
    .unwrap();
    assert!(s.early_stopped, "{s:?}");
    assert_eq!(
        s.epochs_run, 3,
        "best at epoch 1, then 2 epochs of patience"
    );
    assert_eq!(s.best_epoch, Some(0));
}

#[test]
fn resume_continues_from_the_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let first = tmp.path().join("first");
    let (s1, dir1) = train(&tiny("cnn_scratch", &first, &["trainer.max_epochs=2"])).unwrap();
    assert_eq!(s1.epochs_run, 2);
    let second = tmp.path().join("second");
    let (s2, dir2) = train(&tiny(
        "cnn_scratch",
        &second,
        &[
            "trainer.max_epochs=4",
            &format!("trainer.resume={}", dir1.display()),
        ],
    ))
    .unwrap();
    assert_eq!(s2.epochs_run, 4);
    let epochs: Vec<f64> = epoch_losses(&dir2, "epoch");
    assert_eq!(
        epochs,
        vec![0.0, 1.0, 2.0, 3.0],
        "history continues across the resume"
    );
    // The first two epochs are the first run's, carried over unchanged.
    assert_eq!(
        epoch_losses(&dir2, "train/loss")[..2],
        epoch_losses(&dir1, "train/loss")[..]
    );
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir2.join("checkpoints/last.json")).unwrap())
            .unwrap();
    assert_eq!(state["epoch"], 3);
    // `last` finds the newest run under paths.root_dir/outputs; there is none there.
    let err = train(&tiny(
        "cnn_scratch",
        &tmp.path().join("third"),
        &["trainer.resume=last"],
    ))
    .unwrap_err();
    assert!(err.to_string().contains("no checkpoints"), "{err}");
}

#[test]
fn model_b_distils_from_a_teacher_trained_here() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("b");
    let (s, dir) = train(&tiny("cnn_distilled", &run, &["trainer.max_epochs=2"])).unwrap();
    assert_run_dir(&dir);
    assert!(dir.join("teacher/checkpoints/best.bpk").is_file());
    assert!(dir.join("checkpoints/student.bpk").is_file());
    for k in ["val/kl", "val/ce", "val/feature_mse", "val/accuracy"] {
        assert!(s.metrics.contains_key(k), "{k} missing: {:?}", s.metrics);
    }
    // The teacher is cached and reused by the next run on the same data.
    let cached: Vec<_> = std::fs::read_dir(tmp.path().join("outputs/teachers"))
        .unwrap()
        .collect();
    assert_eq!(cached.len(), 1);
    let (_, dir2) = train(&tiny(
        "cnn_distilled",
        &tmp.path().join("b2"),
        &["trainer.max_epochs=1"],
    ))
    .unwrap();
    assert!(
        !dir2.join("teacher").exists(),
        "the cached teacher should have been reused"
    );
}

#[test]
fn model_c_reconstructs_and_scores_test_images() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("c");
    let (s, dir) = train(&tiny(
        "unet_ae",
        &run,
        &["trainer.max_epochs=4", "trainer.lr=0.01"],
    ))
    .unwrap();
    assert_run_dir(&dir);
    assert!(dir.join("reconstructions.png").is_file());
    let img = image::open(dir.join("reconstructions.png")).unwrap();
    assert!(img.width() > 200 && img.height() > 200);
    let losses = epoch_losses(&dir, "train/loss");
    assert!(losses[3] < losses[0], "{losses:?}");
    for k in [
        "test/recon_error_good",
        "test/recon_error_defective",
        "test/auroc",
    ] {
        assert!(s.metrics.contains_key(k), "{k} missing: {:?}", s.metrics);
    }
}

#[test]
fn model_c_with_an_ssim_term() {
    let tmp = tempfile::tempdir().unwrap();
    let (s, dir) = train(&tiny(
        "unet_ae",
        &tmp.path().join("ssim"),
        &["model.ssim_weight=0.5", "trainer.lr=0.01"],
    ))
    .unwrap();
    assert!(
        s.metrics.contains_key("val/ssim") && s.metrics.contains_key("val/mse"),
        "{:?}",
        s.metrics
    );
    let ssim = s.metrics["val/ssim"];
    assert!(ssim > -1.0 && ssim <= 1.0, "SSIM out of range: {ssim}");
    // loss = mse + 0.5 (1 - ssim)
    let want = s.metrics["val/mse"] + 0.5 * (1.0 - ssim);
    assert!(
        (s.metrics["val/loss"] - want).abs() < 1e-3,
        "{:?}",
        s.metrics
    );
    let losses = epoch_losses(&dir, "train/loss");
    assert!(losses[2] < losses[0], "{losses:?}");
}

#[test]
fn a_diverging_run_stops_with_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("nan");
    let err = train(&tiny(
        "unet_ae",
        &run,
        &[
            "trainer.lr=1e30",
            "trainer.optimizer=sgd",
            "trainer.max_epochs=3",
        ],
    ))
    .unwrap_err();
    let TrainError::NonFinite { last_good, .. } = &err else {
        panic!("not a divergence error: {err}");
    };
    // It names a checkpoint only if one exists; otherwise it says there is none.
    match last_good {
        Some(p) => {
            assert!(p.is_file(), "{err}");
            assert!(err.to_string().contains("last good checkpoint"), "{err}");
        }
        None => assert!(
            err.to_string()
                .contains("before the first checkpoint was written"),
            "{err}"
        ),
    }
}

#[test]
fn nonsense_trainer_values_are_refused_naming_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    for (i, (ov, key)) in [
        ("trainer.batch_size=0", "trainer.batch_size"),
        ("trainer.lr=-0.1", "trainer.lr"),
        ("trainer.max_epochs=0", "trainer.max_epochs"),
        ("data.val_fraction=1.5", "data.val_fraction"),
        ("trainer.weight_decay=nan", "trainer.weight_decay"),
    ]
    .into_iter()
    .enumerate()
    {
        let run = tmp.path().join(format!("r{i}"));
        let mut args = vec!["train".to_string()];
        args.extend(tiny("cnn_scratch", &run, &[ov]));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, _, err) = common::run_cli(tmp.path(), &args);
        assert!(!ok, "{ov} trained");
        assert!(err.contains(key), "{ov}: {err}");
        assert!(err.contains("allowed"), "{ov}: {err}");
        assert!(
            !run.exists(),
            "{ov}: a run dir was made before the config was checked"
        );
    }
}

#[test]
fn bad_configs_fail_before_training() {
    let tmp = tempfile::tempdir().unwrap();
    let err = train(&tiny("unet_ae", &tmp.path().join("x"), &["model.depth=6"])).unwrap_err();
    assert!(err.to_string().contains("multiple of 2^depth"), "{err}");
    let err = train(&tiny(
        "cnn_scratch",
        &tmp.path().join("y"),
        &["trainer.device=cuda"],
    ))
    .unwrap_err();
    assert!(err.to_string().contains("gpu"), "{err}");
    let err = train(&tiny(
        "cnn_scratch",
        &tmp.path().join("z"),
        &["trainer.early_stopping.monitor=val/nope"],
    ))
    .unwrap_err();
    assert!(err.to_string().contains("val/nope"), "{err}");
}

#[test]
fn cli_sweep_writes_a_table() {
    let tmp = tempfile::tempdir().unwrap();
    let sweep = tmp.path().join("sweep");
    let mut args: Vec<String> = vec!["-m".into(), "train".into()];
    args.extend(tiny(
        "cnn_scratch",
        &tmp.path().join("unused"),
        &["trainer.max_epochs=1", "model.width=4,8"],
    ));
    args.push(format!("hydra.sweep.dir={}", sweep.display()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, out, err) = common::run_cli(&common::repo_root(), &args);
    assert!(ok, "{err}");
    assert!(out.contains("sweep table"), "{out}");
    let table = std::fs::read_to_string(sweep.join("sweep.md")).unwrap();
    assert!(
        table.contains("model.width=4") && table.contains("model.width=8"),
        "{table}"
    );
    assert!(sweep.join("0/summary.json").is_file() && sweep.join("1/summary.json").is_file());
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

/// `data.strict=false` means warn and skip for training too: a corrupt training image is
/// named in a warning, left out and listed in summary.json; `strict=true` refuses it.
#[test]
fn lenient_data_skips_a_corrupt_training_image_and_strict_refuses_it() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    copy_tree(dataset(), &data);
    let class_dir = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("train/good").is_dir())
        .min()
        .unwrap();
    let victim = std::fs::read_dir(class_dir.join("train/good"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .min()
        .unwrap();
    let bytes = std::fs::read(&victim).unwrap();
    // A valid header, then garbage: the scan accepts it, decoding fails.
    let mut broken = bytes[..bytes.len().min(64)].to_vec();
    broken.extend(std::iter::repeat_n(0x5a, 256));
    std::fs::write(&victim, broken).unwrap();

    for (strict, run_name) in [(false, "lenient"), (true, "strict")] {
        let run = tmp.path().join(run_name);
        let mut args = vec!["train".to_string()];
        args.extend(tiny(
            "cnn_scratch",
            &run,
            &[&format!("data.strict={strict}"), "trainer.max_epochs=1"],
        ));
        args.push(format!("data.root={}", data.display()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, _, err) = common::run_cli(tmp.path(), &args);
        let name = victim.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            err.contains(&name),
            "strict={strict}: the file is not named: {err}"
        );
        if strict {
            assert!(!ok, "strict=true trained over a corrupt image");
        } else {
            assert!(ok, "strict=false failed: {err}");
            let summary: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap())
                    .unwrap();
            let skipped = summary["skipped_images"].as_array().unwrap();
            assert_eq!(skipped.len(), 1, "{summary}");
            assert!(skipped[0].as_str().unwrap().ends_with(&name), "{summary}");
        }
    }
}

/// Ctrl-C during `train` stops after the running batch with exit 130: no temporary file is
/// left, the finished epochs' checkpoints are intact (and resumable), no summary is written.
#[test]
fn interrupted_training_keeps_finished_epochs_and_leaves_no_temp_files() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let mut args = vec!["train".to_string()];
    args.extend(tiny(
        "cnn_scratch",
        &run,
        &[
            "trainer.max_epochs=100000",
            "trainer.batch_size=2",
            "trainer.early_stopping.patience=100000",
        ],
    ));
    let child = std::process::Command::new(common::defectkit_bin())
        .args(&args)
        .current_dir(tmp.path())
        .env("DEFECTKIT_ROOT", tmp.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let last = run.join("checkpoints/last.json");
    common::wait_for(120, "no epoch finished", || last.is_file());
    let (code, err) = common::interrupt_and_wait(child);
    assert_eq!(code, Some(130), "{err}");
    assert!(err.contains("interrupted at epoch"), "{err}");
    assert!(!run.join("summary.json").exists());
    let mut stack = vec![run.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            assert!(
                !name.contains(".tmp"),
                "left behind: {}",
                e.path().display()
            );
            if e.path().is_dir() {
                stack.push(e.path());
            }
        }
    }
    for f in ["last.bpk", "last.optim.bpk", "last.json"] {
        assert!(
            run.join("checkpoints").join(f).is_file(),
            "{f} missing: {err}"
        );
    }
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&last).unwrap()).unwrap();
    assert!(state["epoch"].as_u64().is_some(), "{state}");
}

/// Resuming from a damaged run names the damaged file (not its folder, not the copy made).
#[test]
fn resuming_from_a_damaged_run_names_the_damaged_file() {
    let tmp = tempfile::tempdir().unwrap();
    let first = tmp.path().join("first");
    let cli = |run: &Path, extra: &[&str]| {
        let mut args = vec!["train".to_string()];
        args.extend(tiny("cnn_scratch", run, extra));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        common::run_cli(tmp.path(), &args)
    };
    let (ok, _, err) = cli(&first, &["trainer.max_epochs=2"]);
    assert!(ok, "{err}");
    let resume = format!("trainer.resume={}", first.display());

    let metrics = first.join("metrics.jsonl");
    let good_metrics = std::fs::read(&metrics).unwrap();
    std::fs::write(&metrics, b"{not json\n").unwrap();
    let (ok, _, err) = cli(
        &tmp.path().join("second"),
        &[&resume, "trainer.max_epochs=3"],
    );
    assert!(!ok, "resumed over damaged metrics");
    assert!(err.contains(&metrics.display().to_string()), "{err}");
    std::fs::write(&metrics, good_metrics).unwrap();

    let state = first.join("checkpoints/last.json");
    std::fs::write(&state, b"{\"epoch\": ").unwrap();
    let (ok, _, err) = cli(
        &tmp.path().join("third"),
        &[&resume, "trainer.max_epochs=3"],
    );
    assert!(!ok, "resumed from a damaged state");
    assert!(err.contains(&state.display().to_string()), "{err}");
}
