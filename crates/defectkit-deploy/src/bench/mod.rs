//! `defectkit bench`: exported models measured side by side — per model dir, per variant
//! (`fp32` = `model.onnx`; with `quantized` also `int8` = `model.int8.onnx` and, when present,
//! `int8-ort` = `model.int8.ort.onnx`, the peer quantizer's graph), per execution provider:
//! file size, session load time, latency percentiles and throughput per batch size, peak
//! resident memory, and (CPU) detection quality with the configured detector refitted on
//! that variant's own embeddings.
//!
//! - Inputs are real images: test-split images of the configured data set, decoded and
//!   preprocessed with the model's own spec through [`crate::pipeline`] (ARCHITECTURE.md
//!   seam 7), never zeros.
//! - An execution provider that cannot be registered gives a skipped row with the reason;
//!   nothing is silently run on the CPU instead.
//! - [`latency`] times, [`memory`] reads `VmHWM`, [`quality`] embeds + refits + compares,
//!   [`top`] picks models for `--top N` on validation evidence, [`report`] writes the
//!   Markdown, CSV and charts.

pub mod latency;
pub mod memory;
pub mod quality;
pub mod report;
pub mod top;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use serde::Serialize;

use defectkit_core::config::schema::DataConfig;
use defectkit_core::config::{DetectorConfig, QuantizeConfig};
use defectkit_core::data::mvtec::{Index, IndexOptions, Sample, Split};
use defectkit_core::onnx::ModelMetadata;

use crate::anomaly::AnomalyError;
use crate::embed::EmbedError;
use crate::pipeline::{run_batches, PipelineError, PipelineOptions};
use crate::quantize::{QuantizeError, QuantizeOptions};
use crate::runtime::{ExecutionProvider, OnnxModel, RuntimeError, RuntimeOptions};

pub use latency::{BatchTiming, LatencyStats, TimingPlan};
pub use quality::Agreement;
pub use report::{Goal, MachineInfo};
pub use top::{select_top, TopSelection};

/// One file of a model dir that the bench runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Variant {
    /// The exported FP32 model, `model.onnx`.
    #[serde(rename = "fp32")]
    Fp32,
    /// Our int8 quantization, `model.int8.onnx` (`defectkit quantize`).
    #[serde(rename = "int8")]
    Int8,
    /// The peer's int8 quantization, `model.int8.ort.onnx` (`bench/peers/ort_quantize.py`).
    #[serde(rename = "int8-ort")]
    Int8Ort,
}

impl Variant {
    /// `fp32`, `int8`, `int8-ort`.
    pub fn as_str(self) -> &'static str {
        match self {
            Variant::Fp32 => "fp32",
            Variant::Int8 => "int8",
            Variant::Int8Ort => "int8-ort",
        }
    }

    /// The file name inside a model dir.
    pub fn file_name(self) -> &'static str {
        match self {
            Variant::Fp32 => "model.onnx",
            Variant::Int8 => "model.int8.onnx",
            Variant::Int8Ort => "model.int8.ort.onnx",
        }
    }

    /// Whether it is an int8 graph.
    pub fn is_int8(self) -> bool {
        self != Variant::Fp32
    }
}

impl std::fmt::Display for Variant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a bench run stopped.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The options do not describe a run.
    #[error("{0}")]
    Options(String),
    /// A model dir lacks a file the run needs.
    #[error("{path}: missing ({hint})")]
    MissingFile {
        /// The file.
        path: PathBuf,
        /// What makes it.
        hint: String,
    },
    /// `model.int8.onnx` was missing and quantizing it failed.
    #[error("{out} is missing and quantizing {model} failed")]
    Quantize {
        /// The FP32 model.
        model: PathBuf,
        /// The int8 file that was to be written.
        out: PathBuf,
        /// Why.
        source: QuantizeError,
    },
    /// A model could not be loaded or run on the CPU.
    #[error("{path}")]
    Runtime {
        /// The model file.
        path: PathBuf,
        /// Why.
        source: RuntimeError,
    },
    /// The benchmark images could not be read or run.
    #[error("preparing benchmark inputs with {path}")]
    Pipeline {
        /// The model file.
        path: PathBuf,
        /// Why.
        source: PipelineError,
    },
    /// The data set could not be read.
    #[error(transparent)]
    Data(#[from] defectkit_core::data::DataError),
    /// Two variants of one model do not take the same input.
    #[error("{path}: {reason}")]
    Mismatch {
        /// The variant's file.
        path: PathBuf,
        /// What differs.
        reason: String,
    },
    /// Embedding the data set with a variant failed.
    #[error("embedding with {model}")]
    Embed {
        /// The model file.
        model: PathBuf,
        /// Why.
        source: EmbedError,
    },
    /// Refitting or evaluating the detector failed.
    #[error("detector on {embeddings}")]
    Detect {
        /// The embeddings file.
        embeddings: PathBuf,
        /// Why.
        source: AnomalyError,
    },
    /// `--top` found nothing to choose from.
    #[error("{0}")]
    Selection(String),
    /// A result file could not be written.
    #[error("{path}: {reason}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Cancelled (Ctrl-C); no result file was written.
    #[error("interrupted; no results were written")]
    Interrupted,
}

/// What to measure and where to write it.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Model dirs, each holding `model.onnx` (+ the int8 variants).
    pub models: Vec<PathBuf>,
    /// Also run `model.int8.onnx` and, when present, `model.int8.ort.onnx`.
    pub quantized: bool,
    /// With `quantized`: quantize `model.onnx` into `model.int8.onnx` when it is missing
    /// (else a missing file is an error).
    pub quantize_missing: bool,
    /// Execution providers, in order.
    pub eps: Vec<ExecutionProvider>,
    /// Batch sizes timed.
    pub batches: Vec<usize>,
    /// Intra-op threads (None: ONNX Runtime's default, all cores).
    pub threads: Option<usize>,
    /// The ONNX Runtime library (None: the default search).
    pub library: Option<PathBuf>,
    /// How long each batch size is timed.
    pub timing: TimingPlan,
    /// Output base: writes `<out>.md`, `<out>.csv` and the charts in `<out>/`.
    pub out: PathBuf,
    /// The data set (test images for the inputs; all splits for quality).
    pub data: DataConfig,
    /// Data set root; None = `data.root`.
    pub root: Option<PathBuf>,
    /// The detector refitted per variant.
    pub detector: DetectorConfig,
    /// Quantization settings for missing `model.int8.onnx` files.
    pub quantize: QuantizeConfig,
    /// Measure detection quality (embeds the whole data set once per variant).
    pub quality: bool,
    /// Where per-variant embeddings go (kept, and reused when they match); None = a temp
    /// dir removed afterwards.
    pub embeddings_dir: Option<PathBuf>,
    /// Draw the PNG charts.
    pub plots: bool,
    /// Show a progress bar.
    pub progress: bool,
    /// How the models were chosen (`--top`), reported in the Markdown.
    pub selection: Option<TopSelection>,
    /// The command line, recorded in the Markdown.
    pub command: String,
}

/// One model × variant × execution provider.
#[derive(Debug, Clone, Serialize)]
pub struct BenchRow {
    /// The model's label (its dir name).
    pub model: String,
    /// Its kind (`cnn_scratch`, …).
    pub kind: String,
    /// The variant.
    pub variant: Variant,
    /// The execution provider.
    #[serde(serialize_with = "serialize_ep")]
    pub ep: ExecutionProvider,
    /// The file.
    pub file: PathBuf,
    /// Its size, bytes.
    pub file_bytes: u64,
    /// Why it was not measured (an unavailable provider, a failed run on a GPU provider).
    pub skipped: Option<String>,
    /// Session creation, milliseconds.
    pub load_ms: Option<f64>,
    /// Per batch size.
    pub timings: Vec<BatchTiming>,
    /// Peak resident set during load + runs minus the resident set before loading, bytes.
    pub peak_rss_bytes: Option<u64>,
}

impl BenchRow {
    /// The timing at `batch`, if measured.
    pub fn at(&self, batch: usize) -> Option<&BatchTiming> {
        self.timings.iter().find(|t| t.batch == batch)
    }
}

fn serialize_ep<S: serde::Serializer>(ep: &ExecutionProvider, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(ep.as_str())
}

/// Detection quality of one variant (CPU).
#[derive(Debug, Clone, Serialize)]
pub struct QualityRow {
    /// The model's label.
    pub model: String,
    /// The variant.
    pub variant: Variant,
    /// Mean image AUROC over classes.
    pub auroc: Option<f64>,
    /// Mean F1 at the deployable thresholds.
    pub f1: f64,
    /// Against the same model's FP32 variant (int8 variants).
    pub vs_fp32: Option<Agreement>,
    /// Against our int8 variant (`int8-ort` only).
    pub vs_int8: Option<Agreement>,
    /// The embeddings file it was computed from.
    pub embeddings: PathBuf,
}

/// What a bench run measured and wrote.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// The machine and runtime.
    pub machine: MachineInfo,
    /// Every model × variant × provider.
    pub rows: Vec<BenchRow>,
    /// Quality per model × variant.
    pub quality: Vec<QualityRow>,
    /// The goals, per model.
    pub goals: Vec<Goal>,
    /// The Markdown written.
    pub markdown: String,
    /// Files written.
    pub files: Vec<PathBuf>,
    /// Things to know (quantized on the fly, detector warnings, …).
    pub warnings: Vec<String>,
}

/// One model dir's files, checked before anything is timed.
#[derive(Debug)]
struct ModelPlan {
    label: String,
    variants: Vec<(Variant, PathBuf)>,
}

/// The model label of a dir: its name (`exports/main/b` → `b`).
pub fn dir_label(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| dir.display().to_string())
}

/// Runs the benchmark and writes `<out>.md`, `<out>.csv` and `<out>/*.png` (each
/// atomically, only once everything was measured). `cancel` is polled between runs.
pub fn bench(opts: &BenchOptions, cancel: &AtomicBool) -> Result<BenchReport, BenchError> {
    validate(opts)?;
    let mut warnings = Vec::new();
    let plans = plan_models(opts, cancel, &mut warnings)?;
    let max_batch = opts.batches.iter().copied().max().unwrap_or(1);
    let cpu = RuntimeOptions {
        ep: ExecutionProvider::Cpu,
        threads: opts.threads,
        library: opts.library.clone(),
    };

    let timing_steps: usize = plans
        .iter()
        .map(|p| p.variants.len() * opts.eps.len())
        .sum();
    let quality_steps: usize = if opts.quality {
        plans.iter().map(|p| p.variants.len()).sum()
    } else {
        0
    };
    let bar = progress_bar(opts.progress, (timing_steps + quality_steps) as u64);

    let mut rows = Vec::new();
    let mut quality_rows = Vec::new();
    let mut detector_warnings: Vec<(String, String)> = Vec::new();
    let temp = TempDir::new(opts.embeddings_dir.as_deref())?;
    for plan in &plans {
        let fp32_path = &plan.variants[0].1;
        bar.set_message(format!("{}: decoding inputs", plan.label));
        let (meta, images) = bench_inputs(fp32_path, opts, &cpu, max_batch, cancel)?;
        let per_sample: usize = meta.input_shape.iter().product();
        for (variant, path) in &plan.variants {
            for &ep in &opts.eps {
                bar.set_message(format!("{} {variant} {ep}: timing", plan.label));
                let row = measure_variant(
                    plan, *variant, path, ep, &meta, &images, per_sample, opts, cancel,
                )?;
                rows.push(row);
                bar.inc(1);
            }
        }
        if opts.quality {
            let mut measured: Vec<(Variant, quality::VariantQuality)> = Vec::new();
            for (variant, path) in &plan.variants {
                // The peer's graph is optional: one ONNX Runtime cannot run is reported in
                // its rows and left out of the quality table, not fatal.
                let unusable = rows.iter().any(|r: &BenchRow| {
                    r.model == plan.label
                        && r.variant == *variant
                        && r.ep == ExecutionProvider::Cpu
                        && r.skipped.is_some()
                });
                if unusable {
                    warnings.push(format!(
                        "{} {variant}: no quality (the graph did not run on the CPU)",
                        plan.label
                    ));
                    bar.inc(1);
                    continue;
                }
                bar.set_message(format!("{} {variant}: embedding + detector", plan.label));
                let store = temp
                    .path()
                    .join(format!("{}.{}.h5", plan.label, variant.as_str()));
                let vq = match quality::variant_quality(
                    path,
                    &store,
                    &opts.data,
                    opts.root.as_deref(),
                    &opts.detector,
                    &cpu,
                    false,
                    cancel,
                ) {
                    Ok(vq) => vq,
                    Err(e)
                        if *variant == Variant::Int8Ort
                            && !matches!(e, BenchError::Interrupted) =>
                    {
                        warnings.push(format!(
                            "{} {variant}: no quality: {}",
                            plan.label,
                            error_chain(&e)
                        ));
                        bar.inc(1);
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                for w in &vq.warnings {
                    detector_warnings.push((format!("{} {variant}", plan.label), w.clone()));
                }
                measured.push((*variant, vq));
                bar.inc(1);
            }
            let find = |v: Variant| measured.iter().find(|(x, _)| *x == v).map(|(_, q)| q);
            for (variant, vq) in &measured {
                quality_rows.push(QualityRow {
                    model: plan.label.clone(),
                    variant: *variant,
                    auroc: vq.auroc,
                    f1: vq.f1,
                    vs_fp32: variant
                        .is_int8()
                        .then(|| find(Variant::Fp32).map(|r| quality::agreement(r, vq)))
                        .flatten(),
                    vs_int8: (*variant == Variant::Int8Ort)
                        .then(|| find(Variant::Int8).map(|r| quality::agreement(r, vq)))
                        .flatten(),
                    embeddings: vq.store.clone(),
                });
            }
        }
    }
    bar.finish_and_clear();
    drop(temp);
    // One line per distinct detector warning, naming every variant that gave it.
    let mut grouped: Vec<(Vec<String>, String)> = Vec::new();
    for (who, w) in detector_warnings {
        match grouped.iter_mut().find(|(_, x)| *x == w) {
            Some((names, _)) => names.push(who),
            None => grouped.push((vec![who], w)),
        }
    }
    warnings.extend(
        grouped
            .into_iter()
            .map(|(names, w)| format!("{}: {w}", names.join(", "))),
    );

    let machine = MachineInfo::collect(opts);
    let goals = report::goals(&rows, &quality_rows, &opts.batches);
    let mut report = BenchReport {
        machine,
        rows,
        quality: quality_rows,
        goals,
        markdown: String::new(),
        files: Vec::new(),
        warnings,
    };
    report::write(&mut report, opts)?;
    Ok(report)
}

/// `e: cause: cause…` on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s += &format!(": {c}");
        cur = c.source();
    }
    s
}

fn validate(opts: &BenchOptions) -> Result<(), BenchError> {
    let bad = |s: &str| Err(BenchError::Options(s.to_string()));
    if opts.models.is_empty() {
        return bad("no model dirs given");
    }
    if opts.eps.is_empty() {
        return bad("no execution providers given");
    }
    if opts.batches.is_empty() || opts.batches.contains(&0) {
        return bad("batch sizes must be at least 1");
    }
    if opts.timing.min_iterations == 0 {
        return bad("iterations must be at least 1");
    }
    if !(opts.timing.min_seconds.is_finite() && opts.timing.min_seconds >= 0.0) {
        return bad("the minimum timing duration must be a non-negative number of seconds");
    }
    if opts.threads == Some(0) {
        return bad("threads must be at least 1");
    }
    Ok(())
}

/// Checks every dir's files (quantizing a missing `model.int8.onnx` when asked) before
/// anything is timed, so a missing file fails in seconds, not after an hour.
fn plan_models(
    opts: &BenchOptions,
    cancel: &AtomicBool,
    warnings: &mut Vec<String>,
) -> Result<Vec<ModelPlan>, BenchError> {
    let mut plans: Vec<ModelPlan> = Vec::new();
    for dir in &opts.models {
        let mut label = dir_label(dir);
        if plans.iter().any(|p| p.label == label) {
            let n = plans.iter().filter(|p| p.label.starts_with(&label)).count() + 1;
            label = format!("{label}-{n}");
        }
        let fp32 = dir.join(Variant::Fp32.file_name());
        if !fp32.is_file() {
            return Err(BenchError::MissingFile {
                path: fp32,
                hint: "each model dir needs the FP32 model.onnx written by `defectkit export`"
                    .into(),
            });
        }
        let mut variants = vec![(Variant::Fp32, fp32.clone())];
        if opts.quantized {
            let int8 = dir.join(Variant::Int8.file_name());
            if !int8.is_file() {
                if !opts.quantize_missing {
                    return Err(BenchError::MissingFile {
                        path: int8,
                        hint: format!(
                            "--quantized needs it: run `defectkit quantize {}`",
                            fp32.display()
                        ),
                    });
                }
                let q = QuantizeOptions {
                    model: fp32.clone(),
                    out: int8.clone(),
                    root: opts.root.clone(),
                    data: opts.data.clone(),
                    config: opts.quantize,
                    runtime: RuntimeOptions {
                        ep: ExecutionProvider::Cpu,
                        threads: opts.threads,
                        library: opts.library.clone(),
                    },
                    keep_float: Vec::new(),
                    save_calibration: None,
                    accuracy: None,
                    progress: opts.progress,
                };
                match crate::quantize::quantize(&q, cancel) {
                    Ok(r) => {
                        warnings.push(format!(
                            "{}: quantized on the fly ({} calibration images, {})",
                            int8.display(),
                            r.info.calibration_images,
                            r.info.method
                        ));
                        warnings.extend(r.warnings.iter().map(|w| format!("{label}: {w}")));
                    }
                    Err(QuantizeError::Interrupted) => return Err(BenchError::Interrupted),
                    Err(source) => {
                        return Err(BenchError::Quantize {
                            model: fp32,
                            out: int8,
                            source,
                        })
                    }
                }
            }
            variants.push((Variant::Int8, int8));
            let peer = dir.join(Variant::Int8Ort.file_name());
            if peer.is_file() {
                variants.push((Variant::Int8Ort, peer));
            } else {
                warnings.push(format!(
                    "{label}: no {} (the peer's int8 graph; bench/peers/ort_quantize.py makes \
                     it): no ours-vs-peer comparison",
                    Variant::Int8Ort.file_name()
                ));
            }
        }
        plans.push(ModelPlan { label, variants });
    }
    Ok(plans)
}

/// Up to `count` test-split images (evenly spread over the split, so every class and defect
/// type shows up), decoded and preprocessed with the FP32 model's spec through the shared
/// pipeline: `[n, C, H, W]` flat. Falls back to the val, then train split when the test
/// split is empty.
fn bench_inputs(
    fp32: &Path,
    opts: &BenchOptions,
    cpu: &RuntimeOptions,
    count: usize,
    cancel: &AtomicBool,
) -> Result<(ModelMetadata, Vec<f32>), BenchError> {
    let runtime_err = |source| BenchError::Runtime {
        path: fp32.to_path_buf(),
        source,
    };
    let mut model = OnnxModel::load(fp32, cpu).map_err(runtime_err)?;
    let meta = model.metadata.clone();
    let root = opts.root.clone().unwrap_or_else(|| opts.data.root.clone());
    let index = Index::scan(
        &root,
        &IndexOptions {
            classes: Some(
                opts.data
                    .classes
                    .clone()
                    .unwrap_or_else(|| meta.classes.clone()),
            ),
            val_fraction: opts.data.val_fraction,
            seed: opts.data.split_seed,
            strict: opts.data.strict,
        },
    )?;
    let pool: Vec<&Sample> = [Split::Test, Split::Val, Split::Train]
        .into_iter()
        .map(|s| index.split(s).collect::<Vec<_>>())
        .find(|v| !v.is_empty())
        .unwrap_or_default();
    if pool.is_empty() {
        return Err(BenchError::Options(format!(
            "{}: no images to benchmark with",
            root.display()
        )));
    }
    let picked: Vec<&Sample> = spread(&pool, count);
    let mut images = Vec::with_capacity(picked.len() * model.sample_len());
    run_batches(
        &mut model,
        &picked,
        PipelineOptions {
            batch_size: 16,
            strict: false,
            warn_skipped: true,
        },
        cancel,
        &indicatif::ProgressBar::hidden(),
        |b| images.extend_from_slice(&b.input),
    )
    .map_err(|e| match e {
        PipelineError::Interrupted => BenchError::Interrupted,
        source => BenchError::Pipeline {
            path: fp32.to_path_buf(),
            source,
        },
    })?;
    if images.is_empty() {
        return Err(BenchError::Options(format!(
            "{}: none of the {} benchmark images could be decoded",
            root.display(),
            picked.len()
        )));
    }
    Ok((meta, images))
}

/// `count` items evenly spaced over `items` (all of them, cycling, when there are fewer).
fn spread<'a, T>(items: &[&'a T], count: usize) -> Vec<&'a T> {
    let n = items.len();
    if n <= count {
        return items.to_vec();
    }
    (0..count).map(|i| items[i * n / count]).collect()
}

#[allow(clippy::too_many_arguments)]
fn measure_variant(
    plan: &ModelPlan,
    variant: Variant,
    path: &Path,
    ep: ExecutionProvider,
    fp32_meta: &ModelMetadata,
    images: &[f32],
    per_sample: usize,
    opts: &BenchOptions,
    cancel: &AtomicBool,
) -> Result<BenchRow, BenchError> {
    let file_bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let mut row = BenchRow {
        model: plan.label.clone(),
        kind: fp32_meta.kind.as_str().to_string(),
        variant,
        ep,
        file: path.to_path_buf(),
        file_bytes,
        skipped: None,
        load_ms: None,
        timings: Vec::new(),
        peak_rss_bytes: None,
    };
    let runtime = RuntimeOptions {
        ep,
        threads: opts.threads,
        library: opts.library.clone(),
    };
    let (result, growth) = memory::peak_growth(|| -> Result<_, BenchError> {
        let t = Instant::now();
        let mut model = match OnnxModel::load(path, &runtime) {
            Ok(m) => m,
            Err(RuntimeError::ProviderUnavailable { reason, .. }) => {
                return Ok(Err(format!("{ep} unavailable: {reason}")))
            }
            Err(e) if ep != ExecutionProvider::Cpu || variant == Variant::Int8Ort => {
                return Ok(Err(format!("{ep}: the session could not be created: {e}")))
            }
            Err(source) => {
                return Err(BenchError::Runtime {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        let load_ms = t.elapsed().as_secs_f64() * 1e3;
        if model.metadata.input_shape != fp32_meta.input_shape
            || model.metadata.preprocess != fp32_meta.preprocess
        {
            return Err(BenchError::Mismatch {
                path: path.to_path_buf(),
                reason: format!(
                    "its input ({:?}, {:?}) differs from model.onnx's ({:?}, {:?})",
                    model.metadata.input_shape,
                    model.metadata.preprocess,
                    fp32_meta.input_shape,
                    fp32_meta.preprocess
                ),
            });
        }
        let mut timings = Vec::new();
        for &batch in &opts.batches {
            let input = latency::batch_input(images, per_sample, batch);
            match latency::time_batch(&mut model, &input, batch, &opts.timing, cancel) {
                Ok(t) => timings.push(t),
                Err(latency::TimingError::Interrupted) => return Err(BenchError::Interrupted),
                Err(latency::TimingError::Runtime(e))
                    if ep != ExecutionProvider::Cpu || variant == Variant::Int8Ort =>
                {
                    return Ok(Err(format!("{ep}: a run failed at batch {batch}: {e}")))
                }
                Err(latency::TimingError::Runtime(source)) => {
                    return Err(BenchError::Runtime {
                        path: path.to_path_buf(),
                        source,
                    })
                }
            }
        }
        Ok(Ok((load_ms, timings)))
    });
    match result? {
        Ok((load_ms, timings)) => {
            row.load_ms = Some(load_ms);
            row.timings = timings;
            row.peak_rss_bytes = growth;
        }
        Err(reason) => row.skipped = Some(reason),
    }
    Ok(row)
}

fn progress_bar(enabled: bool, len: u64) -> indicatif::ProgressBar {
    if !enabled {
        return indicatif::ProgressBar::hidden();
    }
    let b = indicatif::ProgressBar::new(len);
    if let Ok(s) =
        indicatif::ProgressStyle::with_template("bench {bar:30} {pos}/{len}  {msg}  {elapsed}")
    {
        b.set_style(s);
    }
    b.enable_steady_tick(std::time::Duration::from_millis(200));
    b
}

/// The per-variant embeddings' folder: the one asked for, or a temp dir removed on drop.
struct TempDir {
    path: PathBuf,
    remove: bool,
}

impl TempDir {
    fn new(keep: Option<&Path>) -> Result<Self, BenchError> {
        let (path, remove) = match keep {
            Some(p) => (p.to_path_buf(), false),
            None => {
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.subsec_nanos())
                    .unwrap_or(0);
                (
                    std::env::temp_dir()
                        .join(format!("defectkit-bench-{}-{nanos}", std::process::id())),
                    true,
                )
            }
        };
        std::fs::create_dir_all(&path).map_err(|e| BenchError::Write {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        Ok(Self { path, remove })
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if self.remove {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
