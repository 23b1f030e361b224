//! `defectkit quantize`: static int8 (QDQ) quantization of an exported FP32 model,
//! calibrated on good training images, with ONNX Runtime's fusion checked.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;

use defectkit::config::Loader;
use defectkit::quantize::accuracy::AccuracyOptions;
use defectkit::quantize::{quantize, QuantizeError, QuantizeOptions};

use super::{outln, RuntimeArgs};

/// Arguments of `defectkit quantize`.
#[derive(Debug, Args)]
pub struct QuantizeArgs {
    /// The int8 model to write (default: `model.int8.onnx` beside the input).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Data set root (default: `data.root` of the config).
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Leave these nodes (names after BatchNorm folding, as listed by a run) in FP32.
    #[arg(long, value_delimiter = ',', value_name = "NODE,NODE")]
    keep_float: Vec<String>,
    /// Also save the preprocessed calibration inputs as a float32 `.npy` (for a peer
    /// quantizer calibrating on exactly the same tensors).
    #[arg(long, value_name = "FILE.npy")]
    save_calibration: Option<PathBuf>,
    /// Accuracy-aware mode: the largest allowed rank drop 1 − ρ (Spearman) of the detector's
    /// validation scores, FP32 vs INT8; the layers that move them most return to FP32 one at a
    /// time until it holds. Needs --detector.
    #[arg(long, value_name = "X", requires = "detector")]
    max_drop: Option<f64>,
    /// Accuracy-aware mode: the largest allowed change of any validation score, as a share of
    /// its class threshold (0.05: no score moves by more than 5 % of the threshold).
    #[arg(long, value_name = "Y", default_value_t = 0.05, requires = "max_drop")]
    max_deviation: f64,
    /// The detector fitted on the FP32 model's embeddings (`detect`'s detector.json), whose
    /// validation scores the accuracy-aware mode compares.
    #[arg(long, value_name = "detector.json")]
    detector: Option<PathBuf>,
    /// Fail (exit 1) when any quantized node stayed float in ONNX Runtime's optimized graph.
    #[arg(long)]
    require_fused: bool,
    #[command(flatten)]
    runtime: RuntimeArgs,
    /// The FP32 model (`model.onnx`) followed by config overrides (`quantize=percentile`).
    #[arg(value_name = "MODEL.onnx OVERRIDES")]
    inputs: Vec<String>,
}

/// `model.int8.onnx` beside `model.onnx` (`x.onnx` → `x.int8.onnx`).
fn default_out(model: &Path) -> PathBuf {
    let stem = model
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    model.with_file_name(format!("{stem}.int8.onnx"))
}

/// Quantizes one model and prints what happened.
pub fn run(loader: &Loader, args: QuantizeArgs) -> Result<()> {
    let (overrides, files): (Vec<String>, Vec<String>) = args
        .inputs
        .iter()
        .cloned()
        .partition(|a| super::detect::is_override(a));
    let [model] = files.as_slice() else {
        bail!(
            "quantize takes one model file ({} given; usage: defectkit quantize MODEL.onnx \
             [overrides…])",
            files.len()
        );
    };
    let model = PathBuf::from(model);
    let composed = loader.compose(&overrides)?;
    let cfg = loader.typed(&composed)?;
    cfg.quantize
        .validate()
        .map_err(anyhow::Error::msg)
        .context("invalid quantize config")?;
    let out = args.out.clone().unwrap_or_else(|| default_out(&model));
    if out == model {
        bail!("--out {} is the input model itself", out.display());
    }
    let accuracy = match (args.max_drop, &args.detector) {
        (Some(max_drop), Some(detector)) => {
            for (name, v) in [
                ("--max-drop", max_drop),
                ("--max-deviation", args.max_deviation),
            ] {
                if !(v.is_finite() && v >= 0.0) {
                    bail!("{name} {v}: expected a non-negative number");
                }
            }
            Some(AccuracyOptions {
                detector: detector.clone(),
                max_drop,
                max_deviation: args.max_deviation,
            })
        }
        (None, Some(_)) => bail!("--detector is used by the accuracy-aware mode: add --max-drop X"),
        _ => None,
    };
    let cancel = super::stop_work_on_ctrl_c("stopping after this batch…");
    let opts = QuantizeOptions {
        model: model.clone(),
        out: out.clone(),
        root: args.root.clone(),
        data: cfg.data.clone(),
        config: cfg.quantize,
        runtime: args.runtime.options(),
        keep_float: args.keep_float.clone(),
        save_calibration: args.save_calibration.clone(),
        progress: super::progress_enabled(),
        accuracy,
    };
    let report = match quantize(&opts, cancel) {
        Ok(r) => r,
        Err(QuantizeError::Interrupted) => {
            return Err(
                super::Interrupted("interrupted: no quantized model was written".into()).into(),
            )
        }
        Err(e) => return Err(e).with_context(|| format!("quantizing {}", model.display())),
    };
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    let kernels: Vec<String> = report
        .fusion
        .int8_kernels
        .iter()
        .map(|(op, n)| format!("{n} {op}"))
        .collect();
    outln!(
        "{}: {} nodes quantized ({} calibration, {} train/good images); {:.2} MB → {:.2} MB ({:.2}×)",
        report.out.display(),
        report.quantized_nodes.len(),
        report.info.method,
        report.info.calibration_images,
        report.fp32_bytes as f64 / 1e6,
        report.int8_bytes as f64 / 1e6,
        report.int8_bytes as f64 / report.fp32_bytes.max(1) as f64
    );
    outln!(
        "ONNX Runtime's optimized graph: {}; {} quantized node(s) left float",
        if kernels.is_empty() {
            "no int8 kernels".to_string()
        } else {
            kernels.join(", ")
        },
        report.fusion.unfused.len()
    );
    let auroc = |a: Option<f64>| a.map_or("–".to_string(), |a| format!("{a:.4}"));
    if let Some(acc) = &report.accuracy {
        let fmt = |d: &defectkit::quantize::accuracy::Drift| {
            format!(
                "1 − ρ = {:.4}, max score change {:.3} × threshold",
                d.rank_drop, d.max_deviation
            )
        };
        outln!(
            "accuracy-aware ({} detector, {} validation images; bounds 1 − ρ ≤ {}, deviation ≤ {}):",
            acc.detector,
            acc.images,
            acc.max_drop,
            acc.max_deviation
        );
        outln!("  all int8: {}", fmt(&acc.all_int8));
        for s in acc.sensitivity.iter().take(5) {
            outln!("  sensitivity {} ({}): {}", s.node, s.op, fmt(&s.drift));
        }
        for (node, d) in &acc.kept_float {
            outln!("  kept {node} in FP32 → {}", fmt(d));
        }
        outln!(
            "  final: {} — {}; test AUROC (after the fact, not used to decide): FP32 {}, all \
             INT8 {}, final {}",
            fmt(&acc.final_drift),
            if acc.met {
                "bounds met"
            } else {
                "bounds NOT met with every layer FP32"
            },
            auroc(acc.test_auroc_fp32),
            auroc(acc.test_auroc_all_int8),
            auroc(acc.test_auroc_int8)
        );
    }
    if args.require_fused && !report.fusion.unfused.is_empty() {
        bail!(
            "--require-fused: {} node(s) stayed float: {}",
            report.fusion.unfused.len(),
            report.fusion.unfused.join(", ")
        );
    }
    Ok(())
}
