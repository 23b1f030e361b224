//! Configuration composition, overrides, interpolation, sweeps, run dirs, the typed schema and
//! the `config` verb, on the project's real `conf/` tree and on small trees written here.

mod common;

use std::fs;
use std::path::Path;

use defectkit::config::compose::select;
use defectkit::config::schema::{DataKind, LoggerConfig, ModelConfig};
use defectkit::config::{ConfigError, Loader};
use serde_norway::Value;

fn conf() -> std::path::PathBuf {
    common::repo_root().join("conf")
}

fn loader() -> Loader {
    Loader::new(&conf(), "config", "test").unwrap()
}

fn ov(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn compose_err(items: &[&str]) -> String {
    loader().compose(&ov(items)).unwrap_err().to_string()
}

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, text).unwrap();
}

#[test]
fn default_config_is_typed_and_uses_the_synthetic_set() {
    let l = loader();
    let c = l.compose(&[]).unwrap();
    let cfg = l.typed(&c).unwrap();
    assert_eq!(cfg.data.kind, DataKind::Synthetic);
    assert!(cfg.data.root.ends_with("data/synthetic"));
    assert!(matches!(cfg.model, ModelConfig::CnnScratch(_)));
    assert!(matches!(cfg.logger, LoggerConfig::Csv {}));
    assert_eq!(cfg.data.preprocess.resize, 128);
    let synth = cfg.data.synth.expect("synthetic data has a synth block");
    assert_eq!(synth.seed, 0);
    assert_eq!(
        c.choices,
        vec![
            ("data".to_string(), "synthetic".to_string()),
            ("model".to_string(), "cnn_scratch".to_string()),
            ("trainer".to_string(), "default".to_string()),
            ("logger".to_string(), "csv".to_string()),
            ("detector".to_string(), "mahalanobis".to_string()),
            ("cluster".to_string(), "default".to_string()),
            ("quantize".to_string(), "minmax".to_string()),
        ]
    );
    assert_eq!(
        cfg.quantize,
        defectkit::config::QuantizeConfig::default(),
        "conf/quantize/minmax.yaml holds the defaults"
    );
    assert_eq!(
        cfg.detector,
        defectkit::config::DetectorConfig::default(),
        "conf/detector/mahalanobis.yaml holds the defaults"
    );
}

#[test]
fn every_group_option_composes_into_the_schema() {
    let l = loader();
    for data in ["synthetic", "mvtec"] {
        for model in ["cnn_scratch", "cnn_distilled", "unet_ae"] {
            for trainer in ["default", "fast"] {
                for logger in ["csv", "wandb"] {
                    let o = ov(&[
                        &format!("data={data}"),
                        &format!("model={model}"),
                        &format!("trainer={trainer}"),
                        &format!("logger={logger}"),
                    ]);
                    let c = l.compose(&o).unwrap();
                    l.typed(&c).unwrap_or_else(|e| panic!("{o:?}: {e}"));
                }
            }
        }
    }
}

#[test]
fn group_defaults_extend_and_self_wins() {
    let l = loader();
    let c = l.compose(&ov(&["trainer=fast"])).unwrap();
    let cfg = l.typed(&c).unwrap();
    // fast.yaml extends default.yaml and overrides a few keys.
    assert_eq!(cfg.trainer.max_epochs, 3);
    assert_eq!(cfg.trainer.early_stopping.patience, 2);
    assert_eq!(cfg.trainer.early_stopping.monitor, "val/loss");
    assert_eq!(cfg.trainer.lr, 0.001);
}

#[test]
fn self_position_decides_precedence() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "g/a.yaml", "x: from_group\n");
    write(
        dir.path(),
        "last.yaml",
        "defaults:\n  - g: a\n  - _self_\ng:\n  x: from_primary\n",
    );
    write(
        dir.path(),
        "first.yaml",
        "defaults:\n  - _self_\n  - g: a\ng:\n  x: from_primary\n",
    );
    write(
        dir.path(),
        "absent.yaml",
        "defaults:\n  - g: a\ng:\n  x: from_primary\n",
    );
    for (name, want) in [
        ("last", "from_primary"),
        ("first", "from_group"),
        ("absent", "from_primary"),
    ] {
        let l = Loader::new(dir.path(), name, "t").unwrap();
        let c = l.compose(&[]).unwrap();
        assert_eq!(
            select(&c.tree, "g.x").unwrap().as_str(),
            Some(want),
            "{name}"
        );
    }
}

#[test]
fn override_forms_change_add_force_delete() {
    let l = loader();
    let c = l
        .compose(&ov(&[
            "trainer.lr=3e-4",
            "+trainer.extra_note=hello",
            "++trainer.batch_size=8",
            "++paths.new_dir=/tmp/x",
            "~trainer.workers",
            "model.head.dropout=0",
            "data.classes=[a, b]",
            "data.preprocess={resize: 64}",
        ]))
        .unwrap();
    let t = &c.tree;
    assert_eq!(select(t, "trainer.lr").unwrap().as_f64(), Some(3e-4));
    assert_eq!(
        select(t, "trainer.extra_note").unwrap().as_str(),
        Some("hello")
    );
    assert_eq!(select(t, "trainer.batch_size").unwrap().as_i64(), Some(8));
    assert_eq!(select(t, "paths.new_dir").unwrap().as_str(), Some("/tmp/x"));
    assert!(select(t, "trainer.workers").is_none());
    assert_eq!(select(t, "model.head.dropout").unwrap().as_i64(), Some(0));
    assert_eq!(
        select(t, "data.classes")
            .unwrap()
            .as_sequence()
            .unwrap()
            .len(),
        2
    );
    // A dict merges into the existing mapping.
    assert_eq!(
        select(t, "data.preprocess.resize").unwrap().as_i64(),
        Some(64)
    );
    assert!(select(t, "data.preprocess.mean").is_some());
    // Unknown keys added with `+` are rejected by the typed schema, naming the key.
    let e = l.typed(&c).unwrap_err().to_string();
    assert!(e.contains("trainer") && e.contains("extra_note"), "{e}");
}

#[test]
fn group_overrides_add_and_delete() {
    let l = loader();
    let c = l.compose(&ov(&["model=unet_ae", "~logger"])).unwrap();
    assert_eq!(
        select(&c.tree, "model.kind").unwrap().as_str(),
        Some("unet_ae")
    );
    assert!(select(&c.tree, "logger").is_none());
    assert!(!c.choices.iter().any(|(g, _)| g == "logger"));

    let c = l.compose(&ov(&["+experiment=sweep_unet"])).unwrap();
    // The preset's `override /model: unet_ae` and its global keys apply.
    assert_eq!(
        select(&c.tree, "model.kind").unwrap().as_str(),
        Some("unet_ae")
    );
    assert_eq!(
        select(&c.tree, "task_name").unwrap().as_str(),
        Some("sweep_unet")
    );
    let params = select(&c.tree, "hydra.sweeper.params").unwrap();
    assert!(params.get("model.latent_dim").is_some());
    // The command line beats the preset's override.
    let c = l
        .compose(&ov(&["+experiment=sweep_unet", "model=cnn_scratch"]))
        .unwrap();
    assert_eq!(
        select(&c.tree, "model.kind").unwrap().as_str(),
        Some("cnn_scratch")
    );
}

#[test]
fn errors_help() {
    // Unknown option lists the available ones.
    let e = compose_err(&["model=resnet50"]);
    assert!(e.contains("model/resnet50"), "{e}");
    for opt in ["cnn_scratch", "cnn_distilled", "unet_ae"] {
        assert!(e.contains(opt), "{e}");
    }
    // Unknown key suggests `+key` and a close spelling.
    let e = compose_err(&["trainer.lrr=0.1"]);
    assert!(e.contains("+trainer.lrr=0.1"), "{e}");
    assert!(e.contains("Did you mean: lr"), "{e}");
    // Adding an existing key suggests `++`.
    let e = compose_err(&["+trainer.lr=0.1"]);
    assert!(e.contains("++trainer.lr=0.1"), "{e}");
    // A group missing from the defaults needs `+`.
    let e = compose_err(&["experiment=sweep_scratch"]);
    assert!(e.contains("+experiment=sweep_scratch"), "{e}");
    // A group already present cannot be appended again.
    let e = compose_err(&["+model=unet_ae"]);
    assert!(e.contains("model") && e.contains("more than once"), "{e}");
    // Parse errors point at the override.
    let e = compose_err(&["trainer.lr=[1,2"]);
    assert!(e.contains("trainer.lr=[1,2"), "{e}");
    let e = compose_err(&["trainer.lr"]);
    assert!(e.contains("'trainer.lr'") && e.contains("KEY=VALUE"), "{e}");
    // Sweeps need --multirun.
    let e = compose_err(&["trainer.lr=1,2"]);
    assert!(e.contains("--multirun"), "{e}");
    // Deleting what is not there.
    let e = compose_err(&["~trainer.nope"]);
    assert!(e.contains("does not exist"), "{e}");
    // Missing config dir / primary config.
    assert!(matches!(
        Loader::new(Path::new("/nonexistent/conf"), "config", "t"),
        Err(ConfigError::MissingConfigDir(_))
    ));
    let e = Loader::new(&conf(), "nope", "t")
        .unwrap()
        .compose(&[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("primary config 'nope'"), "{e}");
}

#[test]
fn schema_rejects_unknown_and_mistyped_keys_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&conf(), dir.path());
    // A typo inside a group file.
    let p = dir.path().join("trainer/default.yaml");
    let text = fs::read_to_string(&p)
        .unwrap()
        .replace("weight_decay:", "weight_decay_typo:");
    fs::write(&p, text).unwrap();
    let l = Loader::new(dir.path(), "config", "t").unwrap();
    let e = l.typed(&l.compose(&[]).unwrap()).unwrap_err().to_string();
    assert!(e.contains("weight_decay_typo"), "{e}");
    // A wrong type.
    let l = loader();
    let c = l.compose(&ov(&["trainer.max_epochs=many"])).unwrap();
    let e = l.typed(&c).unwrap_err().to_string();
    assert!(e.contains("trainer.max_epochs"), "{e}");
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            fs::create_dir_all(&dest).unwrap();
            copy_dir(&entry.path(), &dest);
        } else {
            fs::copy(entry.path(), dest).unwrap();
        }
    }
}

#[test]
fn interpolation_env_and_now() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "config.yaml",
        "a: 2\nb: ${a}\nc: 'a is ${a}'\nd: ${oc.env:DEFECTKIT_CFG_TEST_VAR,dflt}\ne: ${now:%Y}\n",
    );
    std::env::remove_var("DEFECTKIT_CFG_TEST_VAR");
    let l = Loader::new(dir.path(), "config", "t").unwrap();
    let c = l.compose(&ov(&["a=5"])).unwrap();
    let r = l.resolve_job(&c).unwrap();
    assert_eq!(r["b"], Value::Number(5.into()));
    assert_eq!(r["c"], Value::String("a is 5".into()));
    assert_eq!(r["d"], Value::String("dflt".into()));
    assert_eq!(r["e"].as_str().unwrap(), l.ctx.now.format("%Y").to_string());
    // Raw output keeps interpolations as written.
    assert_eq!(c.job_tree()["b"], Value::String("${a}".into()));
}

#[test]
fn sweeps_expand_presets_and_command_line() {
    let l = loader();
    let (_, jobs) = l
        .compose_sweep(&ov(&[
            "model=cnn_scratch,unet_ae",
            "trainer.lr=0.1,0.01,0.001",
        ]))
        .unwrap();
    assert_eq!(jobs.len(), 6);
    assert_eq!(
        jobs[0].composed.overrides,
        ["model=cnn_scratch", "trainer.lr=0.1"]
    );
    assert_eq!(
        jobs[5].composed.overrides,
        ["model=unet_ae", "trainer.lr=0.001"]
    );
    assert!(jobs.iter().enumerate().all(|(i, j)| j.num == i));

    for preset in ["sweep_scratch", "sweep_distilled", "sweep_unet"] {
        let (_, jobs) = l
            .compose_sweep(&ov(&[&format!("+experiment={preset}")]))
            .unwrap();
        assert!(jobs.len() >= 3, "{preset}: {} jobs", jobs.len());
        let distinct: std::collections::HashSet<String> = jobs
            .iter()
            .map(|j| serde_norway::to_string(&l.resolve_job(&j.composed).unwrap()).unwrap())
            .collect();
        assert_eq!(distinct.len(), jobs.len(), "{preset}: settings must differ");
        for j in &jobs {
            l.typed(&j.composed).unwrap();
        }
    }
}

#[test]
fn run_dirs_hold_the_hydra_record() {
    let out = tempfile::tempdir().unwrap();
    let l = loader();
    let run_dir = out.path().join("run");
    let mut c = l
        .compose(&ov(&[
            "model=unet_ae",
            &format!("hydra.run.dir={}", run_dir.display()),
        ]))
        .unwrap();
    let rd = l.create_run_dir(&mut c).unwrap();
    assert_eq!(rd.path, run_dir);
    let cfg: Value =
        serde_norway::from_str(&fs::read_to_string(run_dir.join(".hydra/config.yaml")).unwrap())
            .unwrap();
    assert_eq!(cfg["model"]["kind"], Value::String("unet_ae".into()));
    assert!(cfg.get("hydra").is_none());
    // Interpolations are kept in config.yaml, as Hydra does.
    assert_eq!(
        cfg["data"]["root"],
        Value::String("${paths.data_dir}/synthetic".into())
    );
    let ovs: Vec<String> =
        serde_norway::from_str(&fs::read_to_string(run_dir.join(".hydra/overrides.yaml")).unwrap())
            .unwrap();
    assert_eq!(ovs, ["model=unet_ae"]);
    let hydra: Value =
        serde_norway::from_str(&fs::read_to_string(run_dir.join(".hydra/hydra.yaml")).unwrap())
            .unwrap();
    assert_eq!(
        hydra["hydra"]["runtime"]["choices"]["model"],
        Value::String("unet_ae".into())
    );
    assert_eq!(
        hydra["hydra"]["runtime"]["output_dir"],
        Value::String(run_dir.display().to_string())
    );
    assert_eq!(hydra["hydra"]["mode"], Value::String("RUN".into()));

    // A second run into the same dir does not overwrite the first.
    let mut c2 = l
        .compose(&ov(&[&format!("hydra.run.dir={}", run_dir.display())]))
        .unwrap();
    let rd2 = l.create_run_dir(&mut c2).unwrap();
    assert_eq!(rd2.path, out.path().join("run_1"));
    let first: Vec<String> =
        serde_norway::from_str(&fs::read_to_string(run_dir.join(".hydra/overrides.yaml")).unwrap())
            .unwrap();
    assert_eq!(first, ["model=unet_ae"]);
}

#[test]
fn default_run_dir_is_dated() {
    let l = loader();
    let c = l.compose(&[]).unwrap();
    let dir = defectkit::config::rundir::job_dir(&c, defectkit::config::RunMode::Run, None, &l.ctx)
        .unwrap();
    let want = format!(
        "outputs/{}/{}",
        l.ctx.now.format("%Y-%m-%d"),
        l.ctx.now.format("%H-%M-%S")
    );
    assert!(dir.ends_with(&want), "{} !~ {want}", dir.display());
}

#[test]
fn multirun_dirs_are_numbered_from_zero() {
    let out = tempfile::tempdir().unwrap();
    let l = loader();
    let sweep = out.path().join("sweep");
    let (base, mut jobs) = l
        .compose_sweep(&ov(&[
            "trainer.lr=0.1,0.01",
            &format!("hydra.sweep.dir={}", sweep.display()),
        ]))
        .unwrap();
    let sweep_dir = l.create_sweep_dir(&base).unwrap();
    assert_eq!(sweep_dir, sweep);
    assert!(sweep.join("multirun.yaml").exists());
    for job in &mut jobs {
        let rd = l.create_job_dir(job, &sweep_dir).unwrap();
        assert_eq!(rd.path, sweep.join(job.num.to_string()));
        let hydra: Value =
            serde_norway::from_str(&fs::read_to_string(rd.path.join(".hydra/hydra.yaml")).unwrap())
                .unwrap();
        assert_eq!(hydra["hydra"]["mode"], Value::String("MULTIRUN".into()));
        assert_eq!(hydra["hydra"]["job"]["num"], Value::Number(job.num.into()));
    }
    let ovs: Vec<String> =
        serde_norway::from_str(&fs::read_to_string(sweep.join("1/.hydra/overrides.yaml")).unwrap())
            .unwrap();
    assert_eq!(ovs[0], "trainer.lr=0.01");
}

#[test]
fn cli_config_verb_prints_raw_resolved_and_fails_clearly() {
    let cwd = common::repo_root();
    let (ok, out, err) = common::run_cli(&cwd, &["config", "model=unet_ae"]);
    assert!(ok, "{err}");
    assert!(out.contains("kind: unet_ae"), "{out}");
    assert!(
        out.contains("${paths.data_dir}/synthetic"),
        "raw keeps interpolations: {out}"
    );
    assert!(!out.contains("hydra:"), "{out}");

    let (ok, out, err) = common::run_cli(&cwd, &["config", "--resolve", "trainer.lr=0.5"]);
    assert!(ok, "{err}");
    assert!(out.contains("lr: 0.5"), "{out}");
    assert!(!out.contains("${"), "{out}");

    let (ok, out, _) = common::run_cli(&cwd, &["config", "--hydra", "+experiment=sweep_scratch"]);
    assert!(ok);
    assert!(out.contains("trainer.lr: 0.003,0.001,0.0003"), "{out}");

    let (ok, out, _) = common::run_cli(&cwd, &["-m", "config", "model=cnn_scratch,unet_ae"]);
    assert!(ok);
    assert!(
        out.contains("# job 0: model=cnn_scratch") && out.contains("# job 1: model=unet_ae"),
        "{out}"
    );

    let (ok, _, err) = common::run_cli(&cwd, &["config", "model=nope"]);
    assert!(!ok);
    assert!(err.contains("Available options in 'model'"), "{err}");

    let (ok, _, err) = common::run_cli(&cwd, &["config", "++trainer.typo=1"]);
    assert!(!ok, "unknown keys must be rejected after composition");
    assert!(err.contains("typo"), "{err}");

    let (ok, out, _) = common::run_cli(&cwd, &["config", "--help"]);
    assert!(ok && out.contains("Examples"), "{out}");

    // --no-validate shows a tree that does not fit the schema, then names what is wrong.
    let (ok, out, err) = common::run_cli(
        &cwd,
        &[
            "config",
            "--no-validate",
            "++trainer.typo=1",
            "trainer.batch_size=0",
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("typo: 1"), "{out}");
    assert!(
        err.contains("schema errors") && err.contains("typo"),
        "{err}"
    );
    let (ok, out, err) =
        common::run_cli(&cwd, &["config", "--no-validate", "trainer.batch_size=0"]);
    assert!(ok && out.contains("batch_size: 0"), "{out}");
    assert!(
        err.contains("trainer.batch_size") && err.contains(">= 1"),
        "{err}"
    );
    // Without it, every numeric rule is checked before anything runs.
    let (ok, _, err) = common::run_cli(&cwd, &["config", "trainer.lr=-1", "trainer.batch_size=0"]);
    assert!(!ok);
    assert!(
        err.contains("trainer.batch_size") && err.contains("trainer.lr"),
        "{err}"
    );
}
