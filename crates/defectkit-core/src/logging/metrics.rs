//! The run dir's metric files: `metrics.jsonl` (append-only, one JSON object per line) and
//! `metrics.csv` (rewritten atomically after every record, stable sorted columns).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Map, Number, Value};

use super::LogError;
use crate::fsutil::write_atomic;

/// File name of the JSON-lines metrics log inside a run dir.
pub const METRICS_JSONL: &str = "metrics.jsonl";
/// File name of the CSV metrics table inside a run dir.
pub const METRICS_CSV: &str = "metrics.csv";

/// One metrics record (one epoch, or one step): free-form named values plus epoch/step.
///
/// Names are free-form, by convention `train/loss`, `val/loss`, `val/accuracy`, `lr`,
/// `seconds`. `epoch` and `step` are reserved (they are the record's own columns) and a
/// name may not be empty. Non-finite values are allowed: JSON has no NaN, so they are
/// written as `null` in `metrics.jsonl` (read back as NaN) and as `NaN`/`inf`/`-inf` in the
/// CSV.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricRecord {
    /// Epoch this record belongs to.
    pub epoch: usize,
    /// Global optimizer step at the time of the record.
    pub step: usize,
    /// Metric name → value.
    pub values: BTreeMap<String, f64>,
}

impl MetricRecord {
    /// An empty record for `epoch` / `step`.
    pub fn new(epoch: usize, step: usize) -> Self {
        MetricRecord {
            epoch,
            step,
            values: BTreeMap::new(),
        }
    }

    /// Builder: the record with `name = value` added.
    pub fn with(mut self, name: impl Into<String>, value: f64) -> Self {
        self.values.insert(name.into(), value);
        self
    }

    /// Check the metric names (non-empty, not `epoch`/`step`).
    pub fn validate(&self) -> Result<(), LogError> {
        for name in self.values.keys() {
            let reason = if name.is_empty() {
                "metric names must not be empty"
            } else if name == "epoch" || name == "step" {
                "`epoch` and `step` are the record's own fields"
            } else {
                continue;
            };
            return Err(LogError::InvalidName {
                name: name.clone(),
                reason: reason.to_string(),
            });
        }
        Ok(())
    }

    /// The flat JSON object written as one line of `metrics.jsonl`:
    /// `{"epoch":E,"step":S,"<name>":<value or null>,...}`.
    pub fn to_json(&self) -> Value {
        let mut map = Map::new();
        map.insert("epoch".into(), Value::from(self.epoch as u64));
        map.insert("step".into(), Value::from(self.step as u64));
        for (name, value) in &self.values {
            map.insert(name.clone(), json_number(*value));
        }
        Value::Object(map)
    }

    /// Parse one object written by [`MetricRecord::to_json`] (`null` values become NaN).
    pub fn from_json(value: &Value) -> Result<Self, String> {
        let obj = value
            .as_object()
            .ok_or_else(|| "expected a JSON object".to_string())?;
        let index = |key: &str| -> Result<usize, String> {
            obj.get(key)
                .and_then(Value::as_u64)
                .and_then(|v| usize::try_from(v).ok())
                .ok_or_else(|| format!("missing or invalid `{key}` (a non-negative integer)"))
        };
        let mut rec = MetricRecord::new(index("epoch")?, index("step")?);
        for (name, v) in obj {
            if name == "epoch" || name == "step" {
                continue;
            }
            let value = match v {
                Value::Null => f64::NAN,
                Value::Number(n) => n
                    .as_f64()
                    .ok_or_else(|| format!("`{name}` is not a number"))?,
                other => return Err(format!("`{name}` is not a number: {other}")),
            };
            rec.values.insert(name.clone(), value);
        }
        Ok(rec)
    }
}

/// A JSON number, or `null` for NaN and ±infinity.
pub(crate) fn json_number(v: f64) -> Value {
    Number::from_f64(v)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

/// Appends records to `<run_dir>/metrics.jsonl` (one JSON object per line, flushed each
/// write) and rewrites `<run_dir>/metrics.csv` atomically (via [`crate::fsutil::write_atomic`])
/// with a stable column set: `epoch`, `step`, then every metric name seen so far, sorted
/// (a metric missing from a record is an empty cell).
#[derive(Debug)]
pub struct MetricsWriter {
    jsonl_path: PathBuf,
    csv_path: PathBuf,
    jsonl: File,
    /// Length of `metrics.jsonl` after the last complete line (a failed write is cut back).
    jsonl_len: u64,
    records: Vec<MetricRecord>,
    names: BTreeSet<String>,
}

impl MetricsWriter {
    /// Start fresh metric files in `run_dir` (created if needed). An existing
    /// `metrics.jsonl` is truncated; use [`MetricsWriter::open_append`] to resume.
    pub fn create(run_dir: &Path) -> Result<Self, LogError> {
        fs::create_dir_all(run_dir).map_err(|e| LogError::io(run_dir, e))?;
        let jsonl_path = run_dir.join(METRICS_JSONL);
        let jsonl = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&jsonl_path)
            .map_err(|e| LogError::io(&jsonl_path, e))?;
        let writer = MetricsWriter {
            csv_path: run_dir.join(METRICS_CSV),
            jsonl_path,
            jsonl,
            jsonl_len: 0,
            records: Vec::new(),
            names: BTreeSet::new(),
        };
        writer.write_csv()?;
        Ok(writer)
    }

    /// Continue the metric files of `run_dir` (resume): existing `metrics.jsonl` records are
    /// read back (a last line cut short by a crash is dropped from the file), new records
    /// are appended after them and `metrics.csv` is rebuilt from all of them. Without an
    /// existing `metrics.jsonl` this is [`MetricsWriter::create`].
    pub fn open_append(run_dir: &Path) -> Result<Self, LogError> {
        let jsonl_path = run_dir.join(METRICS_JSONL);
        if !jsonl_path.exists() {
            return Self::create(run_dir);
        }
        let text = fs::read(&jsonl_path).map_err(|e| LogError::io(&jsonl_path, e))?;
        let mut records = Vec::new();
        let mut good_len = 0usize; // bytes of complete, valid lines
        let mut needs_newline = false; // the last record parsed but lacks its '\n'
        let mut pos = 0usize;
        let mut line_no = 0usize;
        while pos < text.len() {
            line_no += 1;
            let end = text[pos..]
                .iter()
                .position(|&b| b == b'\n')
                .map(|i| pos + i);
            let (line, next, complete) = match end {
                Some(e) => (&text[pos..e], e + 1, true),
                None => (&text[pos..], text.len(), false),
            };
            let parsed = std::str::from_utf8(line)
                .map_err(|e| e.to_string())
                .and_then(|s| {
                    if s.trim().is_empty() {
                        Ok(None)
                    } else {
                        serde_json::from_str::<Value>(s)
                            .map_err(|e| e.to_string())
                            .and_then(|v| MetricRecord::from_json(&v))
                            .map(Some)
                    }
                });
            match parsed {
                Ok(Some(rec)) => {
                    records.push(rec);
                    good_len = next;
                    needs_newline = !complete;
                }
                Ok(None) if complete => good_len = next,
                Ok(None) => {}
                // A last line without its newline is a write cut short: drop it.
                Err(_) if !complete => {}
                Err(reason) => {
                    return Err(LogError::Parse {
                        path: jsonl_path,
                        line: line_no,
                        reason,
                    })
                }
            }
            pos = next;
        }
        let mut jsonl = OpenOptions::new()
            .append(true)
            .open(&jsonl_path)
            .map_err(|e| LogError::io(&jsonl_path, e))?;
        jsonl
            .set_len(good_len as u64)
            .map_err(|e| LogError::io(&jsonl_path, e))?;
        if needs_newline {
            jsonl
                .write_all(b"\n")
                .map_err(|e| LogError::io(&jsonl_path, e))?;
            good_len += 1;
        }
        let names = records
            .iter()
            .flat_map(|r| r.values.keys().cloned())
            .collect();
        let writer = MetricsWriter {
            csv_path: run_dir.join(METRICS_CSV),
            jsonl_path,
            jsonl,
            jsonl_len: good_len as u64,
            records,
            names,
        };
        writer.write_csv()?;
        Ok(writer)
    }

    /// Append `rec` to `metrics.jsonl` (flushed) and rewrite `metrics.csv`.
    pub fn log(&mut self, rec: &MetricRecord) -> Result<(), LogError> {
        rec.validate()?;
        let mut line = rec.to_json().to_string();
        line.push('\n');
        let written = self
            .jsonl
            .write_all(line.as_bytes())
            .and_then(|_| self.jsonl.flush());
        if let Err(e) = written {
            // Cut a partial line back so the file stays valid JSON lines.
            let _ = self.jsonl.set_len(self.jsonl_len);
            return Err(LogError::io(&self.jsonl_path, e));
        }
        self.jsonl_len += line.len() as u64;
        self.names.extend(rec.values.keys().cloned());
        self.records.push(rec.clone());
        self.write_csv()
    }

    /// Drop every record of an epoch after `epoch` (resuming from a checkpoint of that
    /// epoch re-runs the later ones); both files are rewritten atomically. Returns how many
    /// records were dropped.
    pub fn rewind_to_epoch(&mut self, epoch: usize) -> Result<usize, LogError> {
        let before = self.records.len();
        self.records.retain(|r| r.epoch <= epoch);
        let dropped = before - self.records.len();
        if dropped == 0 {
            return Ok(0);
        }
        let mut text = String::new();
        for rec in &self.records {
            text.push_str(&rec.to_json().to_string());
            text.push('\n');
        }
        write_atomic(&self.jsonl_path, text.as_bytes())
            .map_err(|e| LogError::io(&self.jsonl_path, e))?;
        self.jsonl = OpenOptions::new()
            .append(true)
            .open(&self.jsonl_path)
            .map_err(|e| LogError::io(&self.jsonl_path, e))?;
        self.jsonl_len = text.len() as u64;
        self.names = self
            .records
            .iter()
            .flat_map(|r| r.values.keys().cloned())
            .collect();
        self.write_csv()?;
        Ok(dropped)
    }

    /// Every record logged so far, including those read back by
    /// [`MetricsWriter::open_append`].
    pub fn records(&self) -> &[MetricRecord] {
        &self.records
    }

    /// Path of `metrics.jsonl`.
    pub fn jsonl_path(&self) -> &Path {
        &self.jsonl_path
    }

    /// Path of `metrics.csv`.
    pub fn csv_path(&self) -> &Path {
        &self.csv_path
    }

    /// Flush `metrics.jsonl` to disk (fsync); called when a run finishes.
    pub fn sync(&self) -> Result<(), LogError> {
        self.jsonl
            .sync_data()
            .map_err(|e| LogError::io(&self.jsonl_path, e))
    }

    /// The CSV text for the current records.
    pub fn csv_text(&self) -> String {
        let mut out = String::from("epoch,step");
        for name in &self.names {
            out.push(',');
            out.push_str(&csv_field(name));
        }
        out.push('\n');
        for rec in &self.records {
            out.push_str(&format!("{},{}", rec.epoch, rec.step));
            for name in &self.names {
                out.push(',');
                if let Some(v) = rec.values.get(name) {
                    // Debug: shortest round-trip digits, exponent for tiny/huge values,
                    // NaN / inf / -inf for non-finite ones (pandas reads all of these).
                    out.push_str(&format!("{v:?}"));
                }
            }
            out.push('\n');
        }
        out
    }

    fn write_csv(&self) -> Result<(), LogError> {
        write_atomic(&self.csv_path, self.csv_text().as_bytes())
            .map_err(|e| LogError::io(&self.csv_path, e))
    }
}

/// Quote a CSV field when it needs it (RFC 4180).
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}
