//! Run metric logging for training (the `logger=` config group).
//!
//! Every run writes `metrics.jsonl` and `metrics.csv` in its run dir ([`MetricsWriter`]);
//! that is the required part, and its failures are errors. `logger=wandb` also streams the
//! same records to Weights & Biases through the official Python SDK run as a sidecar
//! (`scripts/wandb_bridge.py`, see [`find_python`]): online with `WANDB_API_KEY`, offline
//! otherwise. That part is optional: training never fails because it did — a failure is
//! printed once as `warning: …`, the W&B logger is switched off and the run goes on.
//!
//! This module does not depend on Burn; the trainer calls [`RunLogger`].

mod metrics;
mod wandb;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::config::schema::LoggerConfig;

pub use metrics::{MetricRecord, MetricsWriter, METRICS_CSV, METRICS_JSONL};
pub use wandb::{bridge_script, find_python, WandbRunInfo, BRIDGE_SOURCE};

/// Errors of the required metric files (optional loggers only ever warn).
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A metric file could not be created, read or written.
    #[error("cannot write metrics file {path}: {source}")]
    Io {
        /// The file (or run dir).
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An existing `metrics.jsonl` (resume) has a line that is not a metrics record.
    #[error("invalid metrics record in {path} line {line}: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A metric name that cannot be logged.
    #[error("invalid metric name '{name}': {reason}")]
    InvalidName {
        /// The name.
        name: String,
        /// Why it is refused.
        reason: String,
    },
}

impl LogError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        LogError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Knobs of [`RunLogger::start_with`]; `Default` is what [`RunLogger::start`] uses.
#[derive(Debug, Clone)]
pub struct LoggerOptions {
    /// Python interpreter for the W&B sidecar; `None` = [`find_python`]
    /// (`$DEFECTKIT_PYTHON`, the project venv, `python3`).
    pub python: Option<PathBuf>,
    /// The sidecar script; `None` = the embedded one ([`bridge_script`]).
    pub bridge_script: Option<PathBuf>,
    /// Longest wait for the sidecar to finish the W&B run in [`RunLogger::finish`]
    /// (default 120 s); after it the sidecar is stopped with a warning.
    pub finish_timeout: Duration,
    /// Extra environment variables for the sidecar only (e.g. `WANDB_SILENT=true`).
    pub env: Vec<(OsString, OsString)>,
    /// Continue existing metric files ([`MetricsWriter::open_append`]) instead of starting
    /// fresh ones (resume).
    pub resume: bool,
}

impl Default for LoggerOptions {
    fn default() -> Self {
        LoggerOptions {
            python: None,
            bridge_script: None,
            finish_timeout: Duration::from_secs(120),
            env: Vec::new(),
            resume: false,
        }
    }
}

impl LoggerOptions {
    /// Use this Python interpreter for the W&B sidecar.
    pub fn python(mut self, python: impl Into<PathBuf>) -> Self {
        self.python = Some(python.into());
        self
    }

    /// Use this sidecar script.
    pub fn bridge_script(mut self, script: impl Into<PathBuf>) -> Self {
        self.bridge_script = Some(script.into());
        self
    }

    /// Wait at most this long for the W&B run to finish.
    pub fn finish_timeout(mut self, timeout: Duration) -> Self {
        self.finish_timeout = timeout;
        self
    }

    /// Set an environment variable for the sidecar.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Continue existing metric files (resume).
    pub fn resume(mut self, resume: bool) -> Self {
        self.resume = resume;
        self
    }
}

/// What [`RunLogger::finish`] reports.
#[derive(Debug, Clone, Default)]
pub struct FinishReport {
    /// `<run_dir>/metrics.jsonl`.
    pub metrics_jsonl: PathBuf,
    /// `<run_dir>/metrics.csv`.
    pub metrics_csv: PathBuf,
    /// Where W&B wrote its run (mode, run id, local dirs, URL), when the W&B logger lasted
    /// to the end.
    pub wandb: Option<WandbRunInfo>,
    /// Every warning printed during the run (each also went to stderr).
    pub warnings: Vec<String>,
}

/// At most this many per-message warnings from the sidecar are printed.
const MAX_SIDECAR_WARNINGS: usize = 10;

/// Fan-out to every configured logger: the metric files always, W&B when configured.
/// Failures of the optional W&B logger become one warning (`warning: …` on stderr, also in
/// [`RunLogger::warnings`]) and switch it off; they are never errors.
pub struct RunLogger {
    metrics: MetricsWriter,
    wandb: Option<wandb::WandbBridge>,
    warnings: Vec<String>,
    sidecar_warnings: usize,
}

impl std::fmt::Debug for RunLogger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunLogger")
            .field("metrics", &self.metrics.jsonl_path())
            .field("wandb", &self.wandb.is_some())
            .field("warnings", &self.warnings)
            .finish()
    }
}

impl RunLogger {
    /// Start logging a run into `run_dir` with default [`LoggerOptions`]. `run_name` names
    /// the W&B run; `config_json` (the composed config) is logged as the W&B run config.
    /// Errors only when the metric files cannot be created.
    pub fn start(
        run_dir: &Path,
        cfg: &LoggerConfig,
        run_name: &str,
        config_json: &Value,
    ) -> Result<Self, LogError> {
        Self::start_with(
            run_dir,
            cfg,
            run_name,
            config_json,
            &LoggerOptions::default(),
        )
    }

    /// [`RunLogger::start`] with explicit options (interpreter, script, timeout, sidecar
    /// environment, resume).
    pub fn start_with(
        run_dir: &Path,
        cfg: &LoggerConfig,
        run_name: &str,
        config_json: &Value,
        opts: &LoggerOptions,
    ) -> Result<Self, LogError> {
        let metrics = if opts.resume {
            MetricsWriter::open_append(run_dir)?
        } else {
            MetricsWriter::create(run_dir)?
        };
        let mut logger = RunLogger {
            metrics,
            wandb: None,
            warnings: Vec::new(),
            sidecar_warnings: 0,
        };
        if let LoggerConfig::Wandb {
            project,
            entity,
            mode,
            tags,
            group,
        } = cfg
        {
            let args = wandb::BridgeArgs {
                project,
                entity: entity.as_deref(),
                mode,
                tags,
                group: group.as_deref(),
                name: run_name,
                dir: run_dir,
            };
            match logger.spawn_wandb(&args, opts) {
                Ok(mut bridge) => {
                    let sent = bridge.send(&json!({"type": "config", "config": config_json}));
                    logger.wandb = Some(bridge);
                    if let Err(reason) = sent {
                        logger.disable_wandb(&reason);
                    }
                }
                Err(reason) => logger.disable_wandb(&reason),
            }
        }
        Ok(logger)
    }

    fn spawn_wandb(
        &self,
        args: &wandb::BridgeArgs<'_>,
        opts: &LoggerOptions,
    ) -> Result<wandb::WandbBridge, String> {
        let python = opts.python.clone().unwrap_or_else(|| find_python().0);
        let script = match &opts.bridge_script {
            Some(script) => script.clone(),
            None => bridge_script()
                .map_err(|e| format!("cannot write the W&B sidecar script to a temp file: {e}"))?,
        };
        let dir = std::path::absolute(args.dir).unwrap_or_else(|_| args.dir.to_path_buf());
        let args = wandb::BridgeArgs { dir: &dir, ..*args };
        wandb::WandbBridge::spawn(&python, &script, &args, &opts.env, opts.finish_timeout)
    }

    /// Print and keep one warning.
    fn warn(&mut self, msg: String) {
        eprintln!("warning: {msg}");
        self.warnings.push(msg);
    }

    /// Switch the W&B logger off with one warning.
    fn disable_wandb(&mut self, reason: &str) {
        self.wandb = None; // dropping it closes the sidecar (bounded wait)
        let path = self.metrics.jsonl_path().display().to_string();
        self.warn(format!(
            "W&B logging disabled: {reason}; training goes on and metrics are still written \
             to {path}"
        ));
    }

    /// Relay the sidecar's per-message warnings (a few, then silence).
    fn relay_sidecar_warnings(&mut self) {
        let Some(bridge) = self.wandb.as_mut() else {
            return;
        };
        let msgs = bridge.take_warnings();
        self.relay(msgs);
    }

    fn relay(&mut self, msgs: Vec<String>) {
        for msg in msgs {
            self.sidecar_warnings += 1;
            if self.sidecar_warnings <= MAX_SIDECAR_WARNINGS {
                self.warn(format!("W&B: {msg}"));
            } else if self.sidecar_warnings == MAX_SIDECAR_WARNINGS + 1 {
                self.warn("W&B: further sidecar warnings are not shown".into());
            }
        }
    }

    /// Send one message to the sidecar, switching it off on failure.
    fn forward(&mut self, msg: Value) {
        let Some(bridge) = self.wandb.as_mut() else {
            return;
        };
        let sent = bridge.send(&msg);
        self.relay_sidecar_warnings();
        if let Err(reason) = sent {
            self.disable_wandb(&reason);
        }
    }

    /// Log one record: written to the metric files (an error if that fails) and forwarded
    /// to W&B as `run.log({..values, epoch}, step=rec.step)` (a warning if that fails).
    pub fn log(&mut self, rec: &MetricRecord) -> Result<(), LogError> {
        self.metrics.log(rec)?;
        if self.wandb.is_some() {
            let mut data = Map::new();
            data.insert("epoch".into(), Value::from(rec.epoch as u64));
            for (name, value) in &rec.values {
                data.insert(name.clone(), metrics::json_number(*value));
            }
            self.forward(json!({"type": "log", "step": rec.step, "data": data}));
        }
        Ok(())
    }

    /// Log an image file (PNG or JPEG: a loss curve, a reconstruction grid) under `key` at
    /// the last logged step. Goes to W&B only; a no-op for the `csv` logger. The file is
    /// read by the sidecar later, so write a new file rather than overwrite this one.
    pub fn log_image(&mut self, key: &str, png: &Path) {
        if self.wandb.is_none() {
            return;
        }
        let path = std::path::absolute(png).unwrap_or_else(|_| png.to_path_buf());
        self.forward(json!({"type": "image", "key": key, "path": path}));
    }

    /// Whether records currently also go to W&B.
    pub fn wandb_active(&self) -> bool {
        self.wandb.is_some()
    }

    /// The metric files' writer (records so far, paths).
    pub fn metrics(&self) -> &MetricsWriter {
        &self.metrics
    }

    /// Mutable access to the metric files' writer (e.g. [`MetricsWriter::rewind_to_epoch`]
    /// on resume).
    pub fn metrics_mut(&mut self) -> &mut MetricsWriter {
        &mut self.metrics
    }

    /// Warnings printed so far.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// End the run: `summary` (a JSON object; anything else is logged under `summary`) goes
    /// to the W&B run summary, the sidecar is closed and waited for (at most
    /// [`LoggerOptions::finish_timeout`]) and the metric files are synced to disk.
    pub fn finish(mut self, summary: &Value) -> Result<FinishReport, LogError> {
        let summary = match summary {
            Value::Object(_) => summary.clone(),
            Value::Null => Value::Object(Map::new()),
            other => json!({ "summary": other }),
        };
        let mut wandb_info = None;
        if let Some(bridge) = self.wandb.take() {
            let (result, sidecar_warnings) = bridge.finish(Some(&summary));
            self.relay(sidecar_warnings);
            match result {
                Ok(info) => {
                    if info.aborted {
                        self.warn("W&B: the sidecar reported the run as aborted".into());
                    }
                    wandb_info = Some(info);
                }
                Err(reason) => self.warn(format!("W&B run may be incomplete: {reason}")),
            }
        }
        self.metrics.sync()?;
        Ok(FinishReport {
            metrics_jsonl: self.metrics.jsonl_path().to_path_buf(),
            metrics_csv: self.metrics.csv_path().to_path_buf(),
            wandb: wandb_info,
            warnings: std::mem::take(&mut self.warnings),
        })
    }
}
