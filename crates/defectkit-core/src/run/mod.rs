//! The run dir, the first contract between the training side and everything after it: what
//! a training run leaves behind and where. `.hydra/config.yaml` (the composed job config,
//! read back by [`read_run_config`]), `checkpoints/` ([`checkpoint_dir`]), `metrics.jsonl`
//! ([`MetricRecord`] lines), `summary.json` ([`RunSummary`]) and, for a sweep, a table of all
//! its jobs in the sweep dir ([`write_sweep_table`]).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_norway::Value;

use crate::config::interpolate::{resolve_tree, ResolveContext};
use crate::config::{Config, ConfigError};
use crate::fsutil::write_atomic;

pub use crate::logging::MetricRecord;

/// Where checkpoints live inside a run dir (`best.bpk`, `last.bpk`, `student.bpk`, ...).
pub fn checkpoint_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("checkpoints")
}

/// The outcome of one training run (`summary.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// Model kind (`cnn_scratch`, `cnn_distilled`, `unet_ae`).
    pub model: String,
    /// The run's overrides, as typed.
    pub overrides: Vec<String>,
    /// Monitored metric name.
    pub monitor: String,
    /// Best monitored value.
    pub best_metric: Option<f64>,
    /// Epoch of the best value (0-based).
    pub best_epoch: Option<usize>,
    /// Epochs actually run.
    pub epochs_run: usize,
    /// Whether early stopping ended the run before `max_epochs`.
    pub early_stopped: bool,
    /// Trainable parameters.
    pub parameters: usize,
    /// Multiply-accumulates ×2 per image at the training input size.
    pub flops_per_image: u64,
    /// Wall-clock seconds of training.
    pub wall_seconds: f64,
    /// Final metrics of the best checkpoint on the validation and test splits.
    pub metrics: std::collections::BTreeMap<String, f64>,
    /// Best checkpoint, relative to the run dir.
    pub best_checkpoint: PathBuf,
    /// The categories trained on, in logit order (recorded for export; empty in runs made
    /// before it was recorded).
    #[serde(default)]
    pub classes: Vec<String>,
    /// Images left out because they could not be decoded (only with `data.strict=false`;
    /// with `strict=true` they are errors). Empty in runs made before it was recorded.
    #[serde(default)]
    pub skipped_images: Vec<PathBuf>,
}

impl RunSummary {
    /// Write `summary.json` atomically.
    pub fn write(&self, run_dir: &Path) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        write_atomic(
            &run_dir.join("summary.json"),
            format!("{text}\n").as_bytes(),
        )
    }

    /// Read a run's `summary.json`.
    pub fn read(run_dir: &Path) -> std::io::Result<Self> {
        let text = std::fs::read_to_string(run_dir.join("summary.json"))?;
        serde_json::from_str(&text).map_err(std::io::Error::other)
    }
}

/// One row of a sweep table: a job number, its run dir and its summary (or why it failed).
#[derive(Debug, Clone)]
pub struct SweepRow {
    /// Job number.
    pub job: usize,
    /// Run directory.
    pub dir: PathBuf,
    /// The summary, or the error that ended the job.
    pub outcome: Result<RunSummary, String>,
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.4}"))
        .unwrap_or_else(|| "-".to_string())
}

/// Write `sweep.md` and `sweep.csv` in `sweep_dir`: one line per job with its overrides,
/// best metric and epoch, early stopping, parameters, FLOPs and time; the best job marked.
pub fn write_sweep_table(sweep_dir: &Path, rows: &[SweepRow]) -> std::io::Result<()> {
    let best = rows
        .iter()
        .filter_map(|r| {
            r.outcome
                .as_ref()
                .ok()
                .and_then(|s| s.best_metric.map(|m| (r.job, m, s.monitor.clone())))
        })
        .min_by(|a, b| {
            let (x, y) = if a.2.contains("acc") {
                (-a.1, -b.1)
            } else {
                (a.1, b.1)
            };
            x.total_cmp(&y)
        })
        .map(|(job, _, _)| job);
    let mut md = String::from(
        "| job | overrides | monitor | best | best epoch | epochs | early stop | params | MFLOPs/img | seconds |\n\
         |---:|---|---|---:|---:|---:|---|---:|---:|---:|\n",
    );
    let mut csv = String::from(
        "job,dir,overrides,monitor,best_metric,best_epoch,epochs_run,early_stopped,parameters,flops_per_image,wall_seconds,error\n",
    );
    for r in rows {
        match &r.outcome {
            Ok(s) => {
                let mark = if Some(r.job) == best { " **best**" } else { "" };
                md.push_str(&format!(
                    "| {}{mark} | `{}` | {} | {} | {} | {} | {} | {} | {:.1} | {:.1} |\n",
                    r.job,
                    s.overrides.join(" "),
                    s.monitor,
                    fmt_opt(s.best_metric),
                    s.best_epoch
                        .map(|e| e.to_string())
                        .unwrap_or_else(|| "-".into()),
                    s.epochs_run,
                    if s.early_stopped { "yes" } else { "no" },
                    s.parameters,
                    s.flops_per_image as f64 / 1e6,
                    s.wall_seconds
                ));
                csv.push_str(&format!(
                    "{},{},\"{}\",{},{},{},{},{},{},{},{:.3},\n",
                    r.job,
                    r.dir.display(),
                    s.overrides.join(" ").replace('"', "\"\""),
                    s.monitor,
                    s.best_metric.map(|m| m.to_string()).unwrap_or_default(),
                    s.best_epoch.map(|e| e.to_string()).unwrap_or_default(),
                    s.epochs_run,
                    s.early_stopped,
                    s.parameters,
                    s.flops_per_image,
                    s.wall_seconds
                ));
            }
            Err(e) => {
                md.push_str(&format!(
                    "| {} | failed: {} | | | | | | | | |\n",
                    r.job,
                    e.replace('|', "/")
                ));
                csv.push_str(&format!(
                    "{},{},,,,,,,,,,\"{}\"\n",
                    r.job,
                    r.dir.display(),
                    e.replace('"', "\"\"")
                ));
            }
        }
    }
    write_atomic(&sweep_dir.join("sweep.md"), md.as_bytes())?;
    write_atomic(&sweep_dir.join("sweep.csv"), csv.as_bytes())
}

/// A run dir's saved job config (`.hydra/config.yaml`), resolved and typed, with the file's
/// text (what a config hash should cover). Interpolations are resolved now, as when the
/// run was composed (`${oc.env:..}` reads today's environment).
pub fn read_run_config(run_dir: &Path) -> Result<(Config, String), ConfigError> {
    let path = run_dir.join(".hydra/config.yaml");
    let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Io {
        path: path.clone(),
        source,
    })?;
    let tree: Value = serde_norway::from_str(&text).map_err(|e| ConfigError::Invalid {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    // Every error names the damaged file, not only the key.
    let in_file = |e: ConfigError| ConfigError::Invalid {
        path: path.clone(),
        reason: e.to_string(),
    };
    let resolved = resolve_tree(&tree, &ResolveContext::default()).map_err(in_file)?;
    Ok((Config::from_tree(resolved).map_err(in_file)?, text))
}
