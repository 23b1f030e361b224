//! `defectkit score`: batch-score folders or files with an exported model and a fitted
//! detector into CSV / JSON Lines.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;

use defectkit::score::{score, ClassChoice, Format, ScoreError, ScoreOptions, Shard};

use super::{outln, progress_enabled, stop_work_on_ctrl_c, Interrupted, RuntimeArgs};

/// Arguments of `defectkit score`.
#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// Folders (searched recursively; hidden entries skipped) and image files.
    #[arg(required = true, value_name = "FOLDER|FILE")]
    inputs: Vec<PathBuf>,
    /// The exported model (the one the detector was fitted on).
    #[arg(long, value_name = "MODEL.onnx")]
    model: PathBuf,
    /// The detector (`defectkit detect` writes detector.json).
    #[arg(long, value_name = "detector.json")]
    detector: PathBuf,
    /// The class whose detector scores each image: auto (the classifier's prediction for
    /// A, B and the teacher; the nearest class for the autoencoder), nearest, or a name.
    #[arg(long, default_value = "auto", value_name = "NAME|auto|nearest")]
    class: ClassChoice,
    /// Output: a .csv or .jsonl file (written atomically), or - for stdout (CSV).
    #[arg(long, default_value = "-", value_name = "FILE")]
    out: String,
    /// Output format (default: from the file name; CSV for stdout).
    #[arg(long, value_name = "csv|jsonl")]
    format: Option<String>,
    /// Score only shard I of N (a stable, contiguous 1/N of the sorted files; the shards'
    /// outputs, headers aside, concatenate to the whole).
    #[arg(long, value_name = "I/N")]
    shard: Option<Shard>,
    /// Unreadable files are fatal (default: an error row each, counted at the end).
    #[arg(long)]
    strict: bool,
    /// Write each scored image's anomaly map as a heat-map PNG into DIR (patch detectors:
    /// padim, patchcore); the output gains a `map` column naming each file. Bright = at or
    /// above the class's threshold.
    #[arg(long, value_name = "DIR")]
    maps: Option<PathBuf>,
    /// Images per inference batch.
    #[arg(long, default_value_t = 32, value_name = "N")]
    batch_size: usize,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

/// Scores; Ctrl-C stops between batches and leaves no output file (exit 130).
pub fn run(args: ScoreArgs) -> Result<()> {
    let out = (args.out != "-").then(|| PathBuf::from(&args.out));
    let format = match args.format.as_deref() {
        None => out.as_deref().map_or(Format::Csv, Format::for_path),
        Some("csv") => Format::Csv,
        Some("jsonl") => Format::Jsonl,
        Some(other) => bail!("--format {other:?}: expected csv or jsonl"),
    };
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let cancel = stop_work_on_ctrl_c("stopping after this batch; no output file will be left");
    let opts = ScoreOptions {
        inputs: args.inputs,
        model: args.model.clone(),
        detector: args.detector.clone(),
        class: args.class,
        out: out.clone(),
        format,
        shard: args.shard,
        strict: args.strict,
        runtime: args.runtime.options(),
        batch_size: args.batch_size,
        progress: progress_enabled(),
        maps_dir: args.maps,
    };
    match score(&opts, cancel) {
        Ok(report) => {
            for (path, why) in &report.first_errors {
                eprintln!("warning: not scored: {}: {why}", path.display());
            }
            if report.errors > report.first_errors.len() {
                eprintln!(
                    "warning: … and {} more (see the error column)",
                    report.errors - report.first_errors.len()
                );
            }
            let summary = format!(
                "scored {} of {} files in {:.1} s: {} anomalous, {} not scored{}",
                report.scored,
                report.files,
                report.seconds,
                report.anomalous,
                report.errors,
                out.as_ref()
                    .map_or(String::new(), |p| format!(" → {}", p.display()))
            );
            if out.is_some() {
                outln!("{summary}");
            } else {
                eprintln!("{summary}");
            }
            Ok(())
        }
        Err(ScoreError::Interrupted) => {
            Err(Interrupted("score: interrupted; no output file was written".into()).into())
        }
        Err(e) => Err(e).with_context(|| format!("scoring with {}", args.model.display())),
    }
}
