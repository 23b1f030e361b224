//! `defectkit bench`: exported models measured side by side (FP32 vs INT8 with
//! `--quantized`): size, load time, latency percentiles, throughput, peak RSS, detection
//! quality; `bench/results/quantized.md` + `.csv` + charts.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;

use defectkit::bench::{bench, select_top, BenchError, BenchOptions, TimingPlan};
use defectkit::config::Loader;
use defectkit::runtime::ExecutionProvider;

use super::{outln, progress_enabled, stop_work_on_ctrl_c, Interrupted};

/// Arguments of `defectkit bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Also run each dir's INT8 variants: `model.int8.onnx` (quantized on the fly when
    /// missing, unless --no-quantize) and, when present, the peer's `model.int8.ort.onnx`.
    #[arg(long)]
    quantized: bool,
    /// Model dirs, each holding `model.onnx` (`defectkit export`'s output).
    #[arg(long, num_args = 1.., value_name = "DIR")]
    models: Vec<PathBuf>,
    /// Benchmark the N best models by validation-side evidence only (see the report),
    /// chosen among --models (default: every dir of `<paths.export_dir>/main` with a
    /// model.onnx).
    #[arg(long, value_name = "N")]
    top: Option<usize>,
    /// Execution providers; one that cannot load is reported as skipped, never run on the CPU.
    #[arg(long, value_delimiter = ',', default_value = "cpu", value_name = "A,B")]
    ep: Vec<ExecutionProvider>,
    /// Batch sizes.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1,16",
        value_name = "A,B"
    )]
    batch: Vec<usize>,
    /// Intra-op threads (default: ONNX Runtime's choice, all cores).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// At least this many timed runs per batch size (after the warm-up).
    #[arg(long, default_value_t = 50, value_name = "N")]
    iterations: usize,
    /// And at least this many seconds of timed runs per batch size.
    #[arg(long, default_value_t = 1.0, value_name = "S")]
    min_seconds: f64,
    /// Untimed warm-up runs per batch size.
    #[arg(long, default_value_t = 5, value_name = "N")]
    warmup: usize,
    /// Output base: writes OUT.md, OUT.csv and the charts in OUT/.
    #[arg(long, default_value = "bench/results/quantized", value_name = "OUT")]
    out: PathBuf,
    /// Data set root (default: data.root of the config).
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Skip detection quality (no embedding of the data set per variant).
    #[arg(long)]
    no_quality: bool,
    /// Skip the PNG charts.
    #[arg(long)]
    no_plots: bool,
    /// A missing model.int8.onnx is an error instead of being quantized on the fly.
    #[arg(long)]
    no_quantize: bool,
    /// Keep the per-variant embeddings here (and reuse those that match on a rerun).
    #[arg(long, value_name = "DIR")]
    keep_embeddings: Option<PathBuf>,
    /// The ONNX Runtime library (default: ORT_DYLIB_PATH, else .cache/onnxruntime/).
    #[arg(long, value_name = "FILE")]
    ort_lib: Option<PathBuf>,
    /// Config overrides (`data=mvtec`, `detector=knn`, `quantize=percentile`); a
    /// non-override here is taken as one more model dir.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "OVERRIDES"
    )]
    inputs: Vec<String>,
}

/// Benchmarks; Ctrl-C stops between runs and writes nothing (exit 130).
pub fn run(loader: &Loader, args: BenchArgs) -> Result<()> {
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let mut overrides = Vec::new();
    let mut models = Vec::new();
    for value in args
        .models
        .iter()
        .map(|p| p.display().to_string())
        .chain(args.inputs.iter().cloned())
    {
        if super::detect::is_override(&value) {
            overrides.push(value);
        } else {
            models.push(PathBuf::from(value));
        }
    }
    let composed = loader.compose(&overrides)?;
    let cfg = loader.typed(&composed)?;
    cfg.detector
        .validate()
        .map_err(anyhow::Error::msg)
        .context("invalid detector config")?;
    if args.batch.is_empty() || args.batch.contains(&0) {
        bail!("--batch takes sizes of at least 1 (e.g. --batch 1,16)");
    }
    if args.iterations == 0 {
        bail!("--iterations must be at least 1");
    }
    if !(args.min_seconds.is_finite() && args.min_seconds >= 0.0) {
        bail!("--min-seconds must be a non-negative number");
    }
    if args.threads == Some(0) {
        bail!("--threads must be at least 1");
    }
    let mut selection = None;
    if let Some(n) = args.top {
        if n == 0 {
            bail!("--top must be at least 1");
        }
        let candidates = if models.is_empty() {
            let dir = cfg.paths.export_dir.join("main");
            model_dirs(&dir)?
        } else {
            models.clone()
        };
        let sel = select_top(&candidates, n, &cfg.detector).context("--top")?;
        eprintln!(
            "--top {n}: {} (validation evidence; see the report)",
            sel.picked
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        for (d, why) in &sel.excluded {
            eprintln!("warning: --top left out {}: {why}", d.display());
        }
        models = sel.picked.clone();
        selection = Some(sel);
    }
    if models.is_empty() {
        bail!(
            "no models to benchmark: give --models DIR… (each with a model.onnx) or --top N \
             (usage: defectkit bench [--quantized] --models exports/main/a exports/main/b)"
        );
    }
    let cancel = stop_work_on_ctrl_c("stopping after this run; no results will be written");
    let opts = BenchOptions {
        models,
        quantized: args.quantized,
        quantize_missing: !args.no_quantize,
        eps: args.ep.clone(),
        batches: args.batch.clone(),
        threads: args.threads,
        library: args.ort_lib.clone(),
        timing: TimingPlan {
            warmup: args.warmup,
            min_iterations: args.iterations,
            min_seconds: args.min_seconds,
            ..TimingPlan::default()
        },
        out: args.out.clone(),
        data: cfg.data.clone(),
        root: args.root.clone(),
        detector: cfg.detector.clone(),
        quantize: cfg.quantize,
        quality: !args.no_quality,
        embeddings_dir: args.keep_embeddings.clone(),
        plots: !args.no_plots,
        progress: progress_enabled(),
        selection,
        command,
    };
    let report = match bench(&opts, cancel) {
        Ok(r) => r,
        Err(BenchError::Interrupted) => {
            return Err(Interrupted(format!(
                "bench: interrupted; {}.md was not written",
                args.out.display()
            ))
            .into())
        }
        Err(e) => return Err(e).context("benchmarking"),
    };
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    outln!("{}", report.markdown.trim_end());
    outln!(
        "wrote {}",
        report
            .files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

/// The dirs directly under `dir` that hold a `model.onnx`, sorted.
fn model_dirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("listing {} for --top", dir.display()))?;
    let mut out: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("model.onnx").is_file())
        .collect();
    out.sort();
    if out.is_empty() {
        bail!(
            "--top: no dir under {} holds a model.onnx; give the candidates with --models",
            dir.display()
        );
    }
    Ok(out)
}
