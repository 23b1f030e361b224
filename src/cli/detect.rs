//! `defectkit detect`: fit an anomaly detector on an embeddings file, threshold it, evaluate
//! it on the test split; or `--compare` several files × methods in one table.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;

use defectkit::anomaly::AnomalyError;
use defectkit::config::detector::DetectorMethod;
use defectkit::config::Loader;
use defectkit::detect::{compare, detect, fmt_opt, DetectOptions};

use super::outln;

/// Arguments of `defectkit detect`.
#[derive(Debug, Args)]
pub struct DetectArgs {
    /// Compare: fit every `--methods` detector on every embeddings file and write one table.
    #[arg(long)]
    compare: bool,
    /// Methods for `--compare` (recon only applies to autoencoders; padim and patchcore to
    /// files embedded with `--maps`; the others are listed as skipped).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "mahalanobis,euclidean,knn,recon,padim,patchcore",
        value_name = "M,M"
    )]
    methods: Vec<String>,
    /// Output folder (default: `<embeddings dir>/detect/<method>`, or for `--compare`
    /// `<first file's parent's parent>/comparison`).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Skip the PNG plots.
    #[arg(long)]
    no_plots: bool,
    /// Also write model.scored.onnx: the model with the detector as ONNX ops (outputs
    /// score, class_index, threshold, anomalous), runnable by any ONNX runtime.
    #[arg(long)]
    bundle: bool,
    /// The model to bundle (default: the one recorded in the embeddings file).
    #[arg(long, value_name = "MODEL.onnx", requires = "bundle")]
    model: Option<PathBuf>,
    /// Embeddings files (`*.h5`) followed by config overrides (`detector=knn detector.k=3`).
    #[arg(value_name = "EMBEDDINGS.h5… OVERRIDES")]
    inputs: Vec<String>,
}

/// The error of a detect stopped by Ctrl-C (exit 130).
fn interrupted(out: &Path) -> anyhow::Error {
    super::Interrupted(format!(
        "detect: interrupted; {} is unchanged",
        out.display()
    ))
    .into()
}

/// Whether a positional argument is an override rather than a file.
pub(crate) fn is_override(arg: &str) -> bool {
    arg.starts_with('~') || arg.starts_with('+') || (arg.contains('=') && !Path::new(arg).exists())
}

/// Fits and evaluates (or compares); prints the table.
pub fn run(loader: &Loader, args: DetectArgs) -> Result<()> {
    let (overrides, files): (Vec<String>, Vec<String>) =
        args.inputs.iter().cloned().partition(|a| is_override(a));
    let files: Vec<PathBuf> = files.into_iter().map(PathBuf::from).collect();
    let composed = loader.compose(&overrides)?;
    let cfg = loader.typed(&composed)?;
    cfg.detector
        .validate()
        .map_err(anyhow::Error::msg)
        .context("invalid detector config")?;
    if files.is_empty() {
        bail!("no embeddings file given (usage: defectkit detect EMBEDDINGS.h5 [overrides…])");
    }
    if args.bundle && cfg.detector.method.is_patch() {
        bail!(
            "--bundle: the {} detector cannot be bundled into one ONNX graph (its statistics \
             are per feature-map location); score with `defectkit score --detector \
             detector.json` instead",
            cfg.detector.method
        );
    }
    if args.compare && args.bundle {
        bail!("--bundle writes one detector's model; it does not combine with --compare");
    }
    if args.compare {
        let methods = args
            .methods
            .iter()
            .map(|m| m.parse::<DetectorMethod>().map_err(anyhow::Error::msg))
            .collect::<Result<Vec<_>>>()?;
        let out = args.out.clone().unwrap_or_else(|| {
            files[0]
                .parent()
                .and_then(Path::parent)
                .unwrap_or(Path::new("."))
                .join("comparison")
        });
        super::stop_work_on_ctrl_c("stopping after this fit; nothing will be written");
        let report = match compare(&files, &methods, &cfg.detector, &out) {
            Err(AnomalyError::Interrupted) => return Err(interrupted(&out)),
            r => r.context("comparing detectors")?,
        };
        for (file, method, why) in &report.skipped {
            eprintln!("note: skipped {method} on {}: {why}", file.display());
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
        return Ok(());
    }
    if files.len() > 1 {
        bail!(
            "{} embeddings files given; detect fits one (use --compare for several)",
            files.len()
        );
    }
    let embeddings = files[0].clone();
    let out = args.out.clone().unwrap_or_else(|| {
        embeddings
            .parent()
            .unwrap_or(Path::new("."))
            .join("detect")
            .join(cfg.detector.method.as_str())
    });
    let bundle = if args.bundle {
        Some(match &args.model {
            Some(m) => m.clone(),
            None => {
                let store = defectkit::store::EmbeddingStore::open(&embeddings)
                    .with_context(|| format!("reading {}", embeddings.display()))?;
                PathBuf::from(store.attributes.model_path)
            }
        })
    } else {
        None
    };
    super::stop_work_on_ctrl_c("stopping after this class; nothing will be written");
    let report = match detect(&DetectOptions {
        embeddings: embeddings.clone(),
        out_dir: out.clone(),
        config: cfg.detector.clone(),
        plots: !args.no_plots,
        bundle,
    }) {
        Err(AnomalyError::Interrupted) => return Err(interrupted(&out)),
        r => r.with_context(|| {
            format!(
                "fitting {} on {}",
                cfg.detector.method,
                embeddings.display()
            )
        })?,
    };
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    let m = &report.metrics;
    outln!(
        "{} on {}: mean image AUROC {} · AP {} · F1 {:.3} at the {}th-percentile threshold \
         (FPR on test good {:.3}) · F1-max {} (oracle)",
        cfg.detector.method,
        embeddings.display(),
        fmt_opt(m.mean.auroc),
        fmt_opt(m.mean.average_precision),
        m.mean.f1,
        cfg.detector.percentile,
        m.mean.fpr_test_good,
        fmt_opt(m.mean.oracle_f1_max),
    );
    for c in &m.per_class {
        outln!(
            "  {:<12} AUROC {}  F1 {:.3}  recall {:.3}  FPR {:.3}  threshold {:.4}",
            c.class,
            fmt_opt(c.auroc),
            c.f1,
            c.recall,
            c.fpr_test_good,
            c.threshold
        );
    }
    if let Some(p) = &m.pixel {
        outln!(
            "  pixel level ({}×{} maps): mean pixel AUROC {} · AUPRO (FPR ≤ {}) {}",
            p.side,
            p.side,
            fmt_opt(p.mean_pixel_auroc),
            p.aupro_fpr_limit,
            fmt_opt(p.mean_aupro)
        );
        for c in &p.per_class {
            outln!(
                "  {:<12} pixel AUROC {}  AUPRO {}",
                c.class,
                fmt_opt(c.all.pixel_auroc),
                fmt_opt(c.all.aupro)
            );
        }
    }
    let memory = report.detector.memory_per_class();
    if memory.iter().any(|(_, b)| *b > 0) {
        let total: usize = memory.iter().map(|(_, b)| b).sum();
        let disk = std::fs::metadata(out.join(&report.detector.file.state_file))
            .map(|m| m.len())
            .unwrap_or(0);
        outln!(
            "  statistics: {:.2} MiB in memory for {} classes ({:.2} MiB per class), {:.2} MiB on disk",
            total as f64 / 1048576.0,
            memory.len(),
            total as f64 / 1048576.0 / memory.len() as f64,
            disk as f64 / 1048576.0
        );
    }
    outln!("wrote {}", out.display());
    Ok(())
}
