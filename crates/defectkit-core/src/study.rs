//! The study dir contract: what `defectkit study` writes and `defectkit report` reads.
//!
//! ```text
//! <study dir>/
//!   study.json          StudyRecord: the design as run (resolved study config, settings,
//!                       forwarded overrides, the tool's version)
//!   manifest.json       Manifest: every step with its command, inputs' hash, outputs,
//!                       status and wall time (written atomically after each change)
//!   selection.json      Selection: each model's sweep table, the chosen setting, the final
//!                       (model, seed) runs and their export dirs
//!   runs/<model>/set<k>-seed<s>/   training run dirs (summary.json, metrics.jsonl,
//!                       loss_curve.png, U-Net: reconstructions.png …)
//!   models/<model>_s<seed>/        model.onnx, model.json, embeddings.h5 (+ model.int8.onnx)
//!   compare/            detect --compare: comparison.{md,csv,json,png}
//!   bench/              bench --quantized --top N: quantized.{md,csv} + quantized/ charts
//!   cluster/<model>_s<seed>/       cluster.{md,csv,json} + plots
//!   report.md, report.html        defectkit report
//! ```
//! Paths inside the records are relative to the study dir.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::study::StudyConfig;
use crate::fsutil::write_atomic;

/// `study.json`.
pub const STUDY_FILE: &str = "study.json";
/// `manifest.json`.
pub const MANIFEST_FILE: &str = "manifest.json";
/// `selection.json`.
pub const SELECTION_FILE: &str = "selection.json";

/// The stages, in the order they run.
pub const STAGES: [&str; 10] = [
    "data", "sweep", "select", "seeds", "export", "embed", "compare", "bench", "cluster", "report",
];

/// `study.json`: the design as it ran.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StudyRecord {
    /// The resolved study config.
    pub study: StudyConfig,
    /// Overrides from the command line, passed to every verb after the study's own.
    pub forwarded_overrides: Vec<String>,
    /// Each model's settings (override lists), by model name, in sweep order.
    pub settings: std::collections::BTreeMap<String, Vec<Vec<String>>>,
    /// `defectkit --version` of the binary that ran it.
    pub tool_version: String,
    /// The data the study ran on: `synthetic` or `mvtec` (data.kind), and its root.
    pub data_kind: String,
    /// The data root.
    pub data_root: PathBuf,
    /// The data set's classes.
    pub classes: Vec<String>,
}

/// A step's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Started and not finished (a killed study leaves this; its outputs are redone).
    Running,
    /// Finished; its outputs are complete.
    Done,
    /// Failed (the error is recorded).
    Failed,
    /// Stopped by Ctrl-C.
    Interrupted,
}

/// One step of `manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepRecord {
    /// Unique id, e.g. `sweep/a/set1-seed42`, `embed/b_s43`.
    pub id: String,
    /// One of [`STAGES`].
    pub stage: String,
    /// The command run (`defectkit` subcommand and arguments; empty for in-process steps).
    pub command: Vec<String>,
    /// SHA-256 (hex) of the command and the contents of its inputs.
    pub inputs_hash: String,
    /// The input files hashed (relative to the study dir where inside it).
    pub inputs: Vec<PathBuf>,
    /// The outputs (relative to the study dir where inside it).
    pub outputs: Vec<PathBuf>,
    /// Its state.
    pub status: StepStatus,
    /// When it started (RFC 3339, UTC).
    pub started: String,
    /// Wall-clock seconds (of the last attempt).
    pub wall_seconds: f64,
    /// The error of a failed step.
    #[serde(default)]
    pub error: Option<String>,
}

/// `manifest.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Manifest {
    /// The study's name.
    pub study: String,
    /// Steps, in the order first run.
    pub steps: Vec<StepRecord>,
}

impl Manifest {
    /// Reads `dir/manifest.json` (an empty manifest when there is none).
    pub fn read(dir: &Path) -> Result<Self, StudyFileError> {
        let path = dir.join(MANIFEST_FILE);
        if !path.exists() {
            return Ok(Self::default());
        }
        read_json(&path)
    }

    /// Writes `dir/manifest.json` atomically.
    pub fn write(&self, dir: &Path) -> Result<(), StudyFileError> {
        write_json(&dir.join(MANIFEST_FILE), self)
    }

    /// The step with this id.
    pub fn step(&self, id: &str) -> Option<&StepRecord> {
        self.steps.iter().find(|s| s.id == id)
    }

    /// Replaces (or appends) the step with `record.id`.
    pub fn upsert(&mut self, record: StepRecord) {
        match self.steps.iter_mut().find(|s| s.id == record.id) {
            Some(s) => *s = record,
            None => self.steps.push(record),
        }
    }
}

/// One setting of a model's sweep, with its validation result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SettingResult {
    /// Its index in the sweep.
    pub index: usize,
    /// Its overrides.
    pub overrides: Vec<String>,
    /// The run dir (at the first seed).
    pub run_dir: PathBuf,
    /// The selection metric's value (None when the run has no such metric).
    pub value: Option<f64>,
    /// The run's best epoch (0-based), epochs run and whether it stopped early.
    pub best_epoch: Option<usize>,
    /// Epochs run.
    pub epochs_run: usize,
    /// Stopped early.
    pub early_stopped: bool,
}

/// One model's sweep and choice.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelSelection {
    /// The model's name.
    pub model: String,
    /// The metric and mode it was chosen on.
    pub metric: String,
    /// `min` or `max`.
    pub mode: crate::config::study::SelectMode,
    /// Every setting, in sweep order.
    pub settings: Vec<SettingResult>,
    /// The index of the chosen setting.
    pub selected: usize,
}

/// A final (model, seed) run that goes on to export, embed and compare.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FinalModel {
    /// `<model>_s<seed>` (the folder name under `models/`, the label in the comparison).
    pub label: String,
    /// The model's name (`a`, `b`, `c`, `teacher`).
    pub model: String,
    /// The training seed.
    pub seed: u64,
    /// The training run dir (for the teacher: the distilled model's run).
    pub run_dir: PathBuf,
    /// The export dir (`models/<label>`).
    pub export_dir: PathBuf,
}

/// `selection.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Selection {
    /// Per model, in the study's order.
    pub models: Vec<ModelSelection>,
    /// The final runs, model by model, seed by seed.
    pub finals: Vec<FinalModel>,
}

impl Selection {
    /// Reads `dir/selection.json`.
    pub fn read(dir: &Path) -> Result<Self, StudyFileError> {
        read_json(&dir.join(SELECTION_FILE))
    }
}

impl StudyRecord {
    /// Reads `dir/study.json`.
    pub fn read(dir: &Path) -> Result<Self, StudyFileError> {
        read_json(&dir.join(STUDY_FILE))
    }
}

/// A study file that cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StudyFileError {
    /// Cannot read or write the file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not the expected JSON.
    #[error("{path}: not a study record: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// Reads a JSON record.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, StudyFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| StudyFileError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| StudyFileError::Parse {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Writes a JSON record atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), StudyFileError> {
    let text = serde_json::to_string_pretty(value).expect("study records serialize");
    write_atomic(path, format!("{text}\n").as_bytes()).map_err(|source| StudyFileError::Io {
        path: path.to_path_buf(),
        source,
    })
}
