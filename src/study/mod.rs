//! `defectkit study`: the whole experiment as one resumable run.
//!
//! The design ([`StudyConfig`], `conf/study/<name>.yaml`) becomes a sequence of steps, stage
//! by stage ([`ALL_STAGES`]): `data` (synthesize), `sweep` (every setting of every model at the
//! first seed), `select` (the best setting by a validation metric), `seeds` (the selected
//! setting at the other seeds), `export`, `embed`, `compare` (every detector on every
//! model × seed), `bench` (quantize the top N, FP32 vs INT8), `cluster`, `report`.
//!
//! Each step but `select` and `report` runs one verb of this same binary as a child process
//! (a fresh process per step: Burn's global RNG starts from the step's own seed, so a step
//! gives the same result whether it runs in a long study or alone). A step is recorded in
//! `manifest.json` ([`records::Manifest`]) with the SHA-256 of its command and inputs; a rerun skips a
//! step whose record is `done` with the same hash and whose outputs exist, and redoes any
//! other after deleting its outputs, so an interrupted step is never half-used. The child
//! dies with the study (`PR_SET_PDEATHSIG`), a first Ctrl-C stops the running child and
//! exits 130, and one lock file keeps two studies out of one dir.

mod steps;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use defectkit_core::config::schema::DataKind;
use defectkit_core::config::study::{SelectMode, StudyConfig};
use defectkit_core::config::{Config, ConfigError, Loader};
pub use defectkit_core::study as records;
use defectkit_core::study::{
    write_json, FinalModel, ModelSelection, Selection, SettingResult, StepRecord, StepStatus,
    StudyFileError, StudyRecord, SELECTION_FILE, STUDY_FILE,
};
use defectkit_core::RunSummary;

pub use steps::StepOutcome;

/// The stages, in order (`--until` takes one).
pub use defectkit_core::study::STAGES as ALL_STAGES;

/// What to run.
#[derive(Debug, Clone)]
pub struct StudyOptions {
    /// The design.
    pub study: StudyConfig,
    /// Command-line overrides that are not `study…`: passed to every verb after the study's.
    pub forwarded: Vec<String>,
    /// The study dir.
    pub dir: PathBuf,
    /// The config dir the verbs compose from.
    pub config_dir: PathBuf,
    /// The `defectkit` binary the steps run.
    pub binary: PathBuf,
    /// Run the stages up to and including this one.
    pub until: String,
    /// The report stage also refreshes `<dir>/<kind>/README.md` (`report --model-readmes`).
    pub model_readmes: Option<PathBuf>,
    /// Set by Ctrl-C: stop the running step and return [`StudyError::Interrupted`].
    pub cancel: &'static AtomicBool,
}

/// What a study run did.
#[derive(Debug, Clone)]
pub struct StudyReport {
    /// The study dir.
    pub dir: PathBuf,
    /// Steps run now.
    pub ran: Vec<String>,
    /// Steps skipped (done earlier with the same inputs).
    pub skipped: Vec<String>,
    /// The report's HTML, when the `report` stage ran.
    pub report_html: Option<PathBuf>,
    /// The report's main table (Markdown).
    pub main_table: Option<String>,
}

/// Why a study stopped.
#[derive(Debug, thiserror::Error)]
pub enum StudyError {
    /// The composed config (with the study's and the forwarded overrides) is invalid.
    #[error("the study's config")]
    Config(#[from] ConfigError),
    /// A study file.
    #[error(transparent)]
    File(#[from] StudyFileError),
    /// Another study holds the dir.
    #[error("{dir} is in use by another study (pid {pid}); wait for it or stop it")]
    Locked {
        /// The study dir.
        dir: PathBuf,
        /// The holder.
        pid: u32,
    },
    /// A file system error on a named path.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A step's verb failed.
    #[error("step {id} failed ({status}); its log: {log}\n{tail}")]
    StepFailed {
        /// The step.
        id: String,
        /// Exit status.
        status: String,
        /// The step's log file.
        log: PathBuf,
        /// The log's last lines.
        tail: String,
    },
    /// The selection found no usable metric.
    #[error("selecting {model}: {reason}")]
    Selection {
        /// The model.
        model: String,
        /// Why.
        reason: String,
    },
    /// The report stage failed.
    #[error("report: {0}")]
    Report(#[from] defectkit_deploy::report::ReportError),
    /// Stopped by Ctrl-C.
    #[error("interrupted during step {0}: completed steps are kept, the interrupted one is redone on the next run")]
    Interrupted(String),
    /// `--until` names no stage.
    #[error("unknown stage `{0}` (stages: {stages})", stages = ALL_STAGES.join(", "))]
    UnknownStage(String),
}

/// The data a study runs on, from the composed config.
struct DataFacts {
    kind: String,
    root: PathBuf,
    classes: Vec<String>,
}

/// Runs the study's stages up to `opts.until`.
pub fn run_study(opts: &StudyOptions) -> Result<StudyReport, StudyError> {
    let until = ALL_STAGES
        .iter()
        .position(|s| *s == opts.until)
        .ok_or_else(|| StudyError::UnknownStage(opts.until.clone()))?;
    let wants = |stage: &str| ALL_STAGES.iter().position(|s| *s == stage).unwrap() <= until;
    let cfg = compose_verb_config(opts)?;
    std::fs::create_dir_all(&opts.dir).map_err(|source| StudyError::Io {
        path: opts.dir.clone(),
        source,
    })?;
    let dir = opts.dir.canonicalize().map_err(|source| StudyError::Io {
        path: opts.dir.clone(),
        source,
    })?;
    let _lock = steps::DirLock::take(&dir)?;
    // A study killed while writing its own files (study.json, steps) left pid-tagged temps.
    defectkit_core::fsutil::clear_stale_temps(&dir);
    let facts = DataFacts {
        kind: match cfg.data.kind {
            DataKind::Mvtec => "mvtec",
            DataKind::Synthetic => "synthetic",
        }
        .to_string(),
        root: defectkit_core::fsutil::absolute(&cfg.data.root),
        classes: cfg.data.classes.clone().unwrap_or_default(),
    };
    let record = StudyRecord {
        study: opts.study.clone(),
        forwarded_overrides: opts.forwarded.clone(),
        settings: opts
            .study
            .models
            .iter()
            .map(|m| (m.name.clone(), StudyConfig::settings(m)))
            .collect(),
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        data_kind: facts.kind.clone(),
        data_root: facts.root.clone(),
        classes: facts.classes.clone(),
    };
    let mut record = record;
    write_json(&dir.join(STUDY_FILE), &record)?;
    let mut runner = steps::Runner::new(opts, &dir)?;
    let study = &opts.study;
    let seed0 = study.seeds[0];

    // data
    if wants("data") && study.synthesize {
        let mut argv = vec!["data".into(), "synth".into(), "--if-changed".into()];
        argv.extend(runner.common_overrides());
        runner.step(
            "data/synth",
            "data",
            argv,
            vec![],
            vec![facts.root.clone()],
            false,
        )?;
    }
    if record.classes.is_empty() {
        // `data.classes: null` = every category under the root, known once it exists.
        record.classes = categories_under(&facts.root);
        write_json(&dir.join(STUDY_FILE), &record)?;
    }
    if !wants("sweep") {
        return Ok(runner.finish(None));
    }
    let data_input = vec![facts.root.clone()];

    // sweep
    for model in &study.models {
        for (k, setting) in record.settings[&model.name].iter().enumerate() {
            let id = format!("sweep/{}/set{k}-seed{seed0}", model.name);
            let run_dir = run_dir_of(&dir, &model.name, k, seed0);
            let argv = runner.train_argv(model, setting, seed0, &run_dir);
            runner.step(&id, "sweep", argv, data_input.clone(), vec![run_dir], true)?;
        }
    }
    if !wants("select") {
        return Ok(runner.finish(None));
    }

    // select
    let summaries: Vec<PathBuf> = study
        .models
        .iter()
        .flat_map(|m| {
            (0..record.settings[&m.name].len())
                .map(|k| run_dir_of(&dir, &m.name, k, seed0).join("summary.json"))
                .collect::<Vec<_>>()
        })
        .collect();
    let selection_file = dir.join(SELECTION_FILE);
    let design = serde_json::to_string(study).unwrap_or_default();
    runner.in_process(
        "select",
        "select",
        &summaries,
        &design,
        std::slice::from_ref(&selection_file),
        || {
            let selection = select(study, &record, &dir)?;
            write_json(&selection_file, &selection)?;
            Ok(((), vec![selection_file.clone()]))
        },
    )?;
    let selection = Selection::read(&dir)?;
    if !wants("seeds") {
        return Ok(runner.finish(None));
    }

    // seeds
    for (model, chosen) in study.models.iter().zip(&selection.models) {
        let setting = &record.settings[&model.name][chosen.selected];
        for &seed in &study.seeds[1..] {
            let id = format!("seeds/{}/set{}-seed{seed}", model.name, chosen.selected);
            let run_dir = run_dir_of(&dir, &model.name, chosen.selected, seed);
            let argv = runner.train_argv(model, setting, seed, &run_dir);
            runner.step(&id, "seeds", argv, data_input.clone(), vec![run_dir], true)?;
        }
    }
    if !wants("export") {
        return Ok(runner.finish(None));
    }

    // export
    for f in &selection.finals {
        let run_dir = dir.join(&f.run_dir);
        let out = dir.join(&f.export_dir);
        let mut argv = vec![
            "export".into(),
            path_arg(&run_dir),
            "--out".into(),
            path_arg(&out),
        ];
        if f.model == "teacher" {
            argv.push("--teacher".into());
        }
        let id = format!("export/{}", f.label);
        runner.step(
            &id,
            "export",
            argv,
            vec![run_dir.join("summary.json")],
            vec![out],
            true,
        )?;
    }
    if !wants("embed") {
        return Ok(runner.finish(None));
    }

    // embed
    for f in &selection.finals {
        let out = dir.join(&f.export_dir);
        let model = out.join("model.onnx");
        let h5 = out.join("embeddings.h5");
        let mut argv = vec![
            "embed".into(),
            "--model".into(),
            path_arg(&model),
            "--out".into(),
            path_arg(&h5),
        ];
        if study.embed.maps {
            argv.push("--maps".into());
            if let Some(n) = study.embed.map_channels {
                argv.extend(["--map-channels".into(), n.to_string()]);
            }
        }
        argv.extend(runner.common_overrides());
        let mut inputs = vec![model];
        inputs.extend(data_input.clone());
        runner.step(
            &format!("embed/{}", f.label),
            "embed",
            argv,
            inputs,
            vec![h5],
            true,
        )?;
    }
    if !wants("compare") {
        return Ok(runner.finish(None));
    }

    // compare
    let h5s: Vec<PathBuf> = selection
        .finals
        .iter()
        .map(|f| dir.join(&f.export_dir).join("embeddings.h5"))
        .collect();
    let compare_dir = dir.join("compare");
    let mut argv = vec!["detect".into(), "--compare".into()];
    argv.extend(h5s.iter().map(|p| path_arg(p)));
    argv.extend([
        "--methods".into(),
        study.detectors.join(","),
        "--out".into(),
        path_arg(&compare_dir),
    ]);
    argv.extend(runner.common_overrides());
    runner.step("compare", "compare", argv, h5s, vec![compare_dir], true)?;
    if !wants("bench") {
        return Ok(runner.finish(None));
    }

    // bench: the first seed of every model (and the teacher); --top picks on validation data.
    let candidates: Vec<&FinalModel> = selection
        .finals
        .iter()
        .filter(|f| f.seed == seed0)
        .collect();
    let bench_dir = dir.join("bench");
    let mut argv = vec!["bench".into(), "--quantized".into(), "--top".into()];
    argv.push(study.bench.top.min(candidates.len()).to_string());
    argv.push("--models".into());
    argv.extend(
        candidates
            .iter()
            .map(|f| path_arg(&dir.join(&f.export_dir))),
    );
    argv.extend([
        "--iterations".into(),
        study.bench.iterations.to_string(),
        "--batch".into(),
        study
            .bench
            .batch
            .iter()
            .map(|b| b.to_string())
            .collect::<Vec<_>>()
            .join(","),
        "--out".into(),
        path_arg(&bench_dir.join("quantized")),
    ]);
    if let Some(t) = study.bench.threads {
        argv.extend(["--threads".into(), t.to_string()]);
    }
    argv.extend(runner.common_overrides());
    let mut inputs = Vec::new();
    let mut int8 = Vec::new();
    for f in &candidates {
        let d = dir.join(&f.export_dir);
        inputs.push(d.join("model.onnx"));
        inputs.push(d.join("embeddings.h5"));
        // Quantized afresh by the bench (on the fly), so a redone bench never reuses an int8
        // file of an interrupted attempt.
        int8.push(d.join("model.int8.onnx"));
    }
    runner.step_with("bench", "bench", argv, inputs, vec![bench_dir], true, &int8)?;
    if !wants("cluster") {
        return Ok(runner.finish(None));
    }

    // cluster
    for name in &study.cluster.models {
        let Some(f) = selection
            .finals
            .iter()
            .find(|f| &f.model == name && f.seed == seed0)
        else {
            continue;
        };
        let h5 = dir.join(&f.export_dir).join("embeddings.h5");
        let out = dir.join("cluster").join(&f.label);
        let mut argv = vec![
            "cluster".into(),
            path_arg(&h5),
            "--out".into(),
            path_arg(&out),
        ];
        argv.extend(runner.common_overrides());
        runner.step(
            &format!("cluster/{}", f.label),
            "cluster",
            argv,
            vec![h5],
            vec![out],
            true,
        )?;
    }
    if !wants("report") {
        return Ok(runner.finish(None));
    }

    // report
    let (md, html) = (dir.join("report.md"), dir.join("report.html"));
    let mut upstream = runner.upstream_hashes("report");
    if let Some(d) = &opts.model_readmes {
        upstream.push_str(&format!("\nreadmes={}", d.display()));
    }
    // The report is cheap and its text is this binary's: a rebuilt binary writes it anew.
    let summary = runner.in_process(
        "report",
        "report",
        std::slice::from_ref(&opts.binary),
        &upstream,
        &[md.clone(), html.clone()],
        || {
            let summary =
                defectkit_deploy::report::write_report(&defectkit_deploy::report::ReportOptions {
                    study_dir: dir.clone(),
                    model_readmes: opts.model_readmes.clone(),
                })?;
            let outputs = vec![summary.markdown.clone(), summary.html.clone()];
            Ok((summary, outputs))
        },
    )?;
    let mut report = runner.finish(Some(html));
    report.main_table = summary.map(|s| s.main_table);
    Ok(report)
}

/// Composes the verbs' config once (the study's overrides, then the forwarded ones) so a bad
/// override fails before anything runs, and reads the data facts from it.
fn compose_verb_config(opts: &StudyOptions) -> Result<Config, StudyError> {
    let loader = Loader::new(&opts.config_dir, "config", "study")?;
    let mut overrides = opts.study.overrides.clone();
    overrides.extend(opts.forwarded.iter().cloned());
    let composed = loader.compose(&overrides)?;
    let cfg = loader.typed(&composed)?;
    // Every model's overrides and settings must compose too.
    for model in &opts.study.models {
        for setting in StudyConfig::settings(model) {
            let mut all = opts.study.overrides.clone();
            all.extend(model.overrides.iter().cloned());
            all.extend(setting.iter().cloned());
            all.extend(opts.forwarded.iter().cloned());
            let composed = loader.compose(&all).map_err(|e| {
                ConfigError::Composition(format!("model {} setting {setting:?}: {e}", model.name))
            })?;
            loader.typed(&composed).map_err(|e| {
                ConfigError::Composition(format!("model {} setting {setting:?}: {e}", model.name))
            })?;
        }
    }
    Ok(cfg)
}

/// The folders of `root` that hold a `train` folder (the MVTec layout's categories), sorted.
fn categories_under(root: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("train").is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

/// `runs/<model>/set<k>-seed<seed>` under the study dir.
fn run_dir_of(dir: &Path, model: &str, setting: usize, seed: u64) -> PathBuf {
    dir.join("runs")
        .join(model)
        .join(format!("set{setting}-seed{seed}"))
}

/// Relative to the study dir (for the records).
fn rel(dir: &Path, p: &Path) -> PathBuf {
    p.strip_prefix(dir)
        .map(Path::to_path_buf)
        .unwrap_or_else(|_| p.to_path_buf())
}

fn path_arg(p: &Path) -> String {
    p.display().to_string()
}

/// Reads the sweep runs' summaries and picks each model's best setting on its validation
/// metric (ties: the earlier setting; a missing or non-finite value never wins), and lists
/// the final (model, seed) runs.
pub fn select(
    study: &StudyConfig,
    record: &StudyRecord,
    dir: &Path,
) -> Result<Selection, StudyError> {
    let seed0 = study.seeds[0];
    let mut models = Vec::new();
    let mut finals = Vec::new();
    for model in &study.models {
        let mut settings = Vec::new();
        for (k, overrides) in record.settings[&model.name].iter().enumerate() {
            let run_dir = run_dir_of(dir, &model.name, k, seed0);
            let summary: RunSummary = records::read_json(&run_dir.join("summary.json"))?;
            let value = summary
                .metrics
                .get(&model.select.metric)
                .copied()
                .filter(|v| v.is_finite());
            settings.push(SettingResult {
                index: k,
                overrides: overrides.clone(),
                run_dir: rel(dir, &run_dir),
                value,
                best_epoch: summary.best_epoch,
                epochs_run: summary.epochs_run,
                early_stopped: summary.early_stopped,
            });
            if k == 0 && !summary.metrics.contains_key(&model.select.metric) {
                let known: Vec<&str> = summary
                    .metrics
                    .keys()
                    .map(String::as_str)
                    .filter(|k| k.starts_with("val/"))
                    .collect();
                return Err(StudyError::Selection {
                    model: model.name.clone(),
                    reason: format!(
                        "{} has no `{}` (its validation metrics: {})",
                        run_dir.join("summary.json").display(),
                        model.select.metric,
                        known.join(", ")
                    ),
                });
            }
        }
        let better = |a: f64, b: f64| match model.select.mode {
            SelectMode::Min => a < b,
            SelectMode::Max => a > b,
        };
        let mut selected: Option<usize> = None;
        for s in &settings {
            if let Some(v) = s.value {
                if selected.is_none_or(|i| better(v, settings[i].value.unwrap())) {
                    selected = Some(s.index);
                }
            }
        }
        let selected = selected.ok_or_else(|| StudyError::Selection {
            model: model.name.clone(),
            reason: format!("no setting has a finite `{}`", model.select.metric),
        })?;
        for &seed in &study.seeds {
            let label = format!("{}_s{seed}", model.name);
            finals.push(FinalModel {
                label: label.clone(),
                model: model.name.clone(),
                seed,
                run_dir: rel(dir, &run_dir_of(dir, &model.name, selected, seed)),
                export_dir: PathBuf::from("models").join(&label),
            });
        }
        models.push(ModelSelection {
            model: model.name.clone(),
            metric: model.select.metric.clone(),
            mode: model.select.mode,
            settings,
            selected,
        });
    }
    if let Some(of) = &study.teacher_of {
        let student: Vec<FinalModel> = finals.iter().filter(|f| &f.model == of).cloned().collect();
        for f in student {
            let label = format!("teacher_s{}", f.seed);
            finals.push(FinalModel {
                label: label.clone(),
                model: "teacher".into(),
                seed: f.seed,
                run_dir: f.run_dir.clone(),
                export_dir: PathBuf::from("models").join(&label),
            });
        }
    }
    Ok(Selection { models, finals })
}

/// A step that has finished (for the records of in-process steps).
fn done_record(id: &str, stage: &str, outputs: Vec<PathBuf>, wall: f64) -> StepRecord {
    StepRecord {
        id: id.into(),
        stage: stage.into(),
        command: vec![],
        inputs_hash: String::new(),
        inputs: vec![],
        outputs,
        status: StepStatus::Done,
        started: chrono::Utc::now().to_rfc3339(),
        wall_seconds: wall,
        error: None,
    }
}
