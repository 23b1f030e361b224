//! `defectkit export`: a run dir → `model.onnx` + `model.json`, then the export policy's
//! check that ONNX Runtime reproduces Burn's three outputs (primary, `embedding`,
//! `features`; [`defectkit::onnx::parity`]). The one verb that uses both sides: Burn
//! computes the reference, ONNX Runtime runs the file.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;

use defectkit::burn::prelude::Device;
use defectkit::export::{export_run, load_run, reference_outputs, ExportTarget, LoadedRun};
use defectkit::onnx::{Parity, PARITY_TOLERANCE};
use defectkit::runtime::{OnnxModel, RuntimeError, RuntimeOptions, INSTALL_HINT};

use super::outln;

/// Probe images per check, and their seed.
const CHECK_BATCH: usize = 2;
const CHECK_SEED: u64 = 0;

/// Arguments of `defectkit export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The training run dir (holds .hydra/, checkpoints/, summary.json).
    #[arg(value_name = "RUN_DIR")]
    run_dir: PathBuf,
    /// Output folder (default: exports/<run dir name>, or exports/<name>-teacher).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Export model B's ResNet-18 teacher instead of the student.
    #[arg(long)]
    teacher: bool,
    /// Skip the check that ONNX Runtime reproduces Burn's outputs.
    #[arg(long)]
    no_check: bool,
    /// The ONNX Runtime library for the check (default: ORT_DYLIB_PATH or .cache/onnxruntime).
    #[arg(long, value_name = "FILE")]
    ort_lib: Option<PathBuf>,
}

/// Loads the run once, exports it, and checks the file unless `--no-check`.
pub fn run(args: ExportArgs) -> Result<()> {
    let target = if args.teacher {
        ExportTarget::Teacher
    } else {
        ExportTarget::Model
    };
    let device = Device::flex();
    let context = || format!("exporting {}", args.run_dir.display());
    let run = load_run(&args.run_dir, target, &device).with_context(context)?;
    let out = args.out.unwrap_or_else(|| {
        let suffix = if args.teacher { "-teacher" } else { "" };
        PathBuf::from("exports").join(format!("{}{suffix}", run.run_id))
    });
    let report = export_run(&run, &out, &device).with_context(context)?;
    let m = &report.metadata;
    let features = m
        .features
        .as_ref()
        .map(|f| {
            format!(
                ", features [batch, {}, {}, {}] (stride {})",
                f.channels, f.height, f.width, f.stride
            )
        })
        .unwrap_or_default();
    outln!(
        "exported {} ({} classes, input [batch, {}, {}, {}], embedding {}{features}, opset {}): {} ({:.2} MB)",
        m.kind.as_str(),
        m.classes.len(),
        m.input_shape[0],
        m.input_shape[1],
        m.input_shape[2],
        m.embedding_dim,
        m.opset,
        report.onnx.display(),
        report.bytes as f64 / 1e6
    );
    outln!("metadata: {}", report.json.display());
    if args.no_check {
        return Ok(());
    }
    let opts = RuntimeOptions {
        library: args.ort_lib,
        ..Default::default()
    };
    match check_with_runtime(&run, &report.onnx, &opts) {
        Ok(check) => {
            outln!(
                "check: ONNX Runtime vs Burn on {CHECK_BATCH} random inputs: max |diff| {} {:.2e} (values up to {:.1}), embedding {:.2e} (values up to {:.1}), features {:.2e} (values up to {:.1})",
                m.kind.primary_output(),
                check.primary.max_abs_diff,
                check.primary.max_abs_value,
                check.embedding.max_abs_diff,
                check.embedding.max_abs_value,
                check.features.max_abs_diff,
                check.features.max_abs_value
            );
            if ![check.primary, check.embedding, check.features]
                .iter()
                .all(Parity::is_faithful)
            {
                bail!(
                    "ONNX Runtime's outputs differ from Burn's by more than {PARITY_TOLERANCE:e} \
                     (relative to their magnitude); the export is not faithful (please report \
                     this with the run dir)"
                );
            }
        }
        Err(RuntimeError::LibraryMissing { .. }) => eprintln!(
            "warning: skipped the ONNX Runtime check: its library is not installed (run `{INSTALL_HINT}`)"
        ),
        Err(e) => return Err(e).context("checking the export with ONNX Runtime"),
    }
    Ok(())
}

/// How far ONNX Runtime's outputs are from Burn's, output by output.
struct Check {
    primary: Parity,
    embedding: Parity,
    features: Parity,
}

/// Burn vs ONNX Runtime (primary output, embedding, features) on the policy's probe inputs,
/// at batch [`CHECK_BATCH`] (so the symbolic batch axis is exercised). ONNX Runtime's
/// `features` must also have the shape the metadata documents (checked by
/// [`OnnxModel::run`]), and Burn's the same.
fn check_with_runtime(
    run: &LoadedRun,
    onnx: &std::path::Path,
    opts: &RuntimeOptions,
) -> Result<Check, RuntimeError> {
    let mut model = OnnxModel::load(onnx, opts)?;
    let spec = model.request_features()?;
    let shape = model.metadata.input_shape;
    let (input, reference) = reference_outputs(&run.network, shape, CHECK_BATCH, CHECK_SEED);
    let documented = [CHECK_BATCH, spec.channels, spec.height, spec.width];
    if reference.features_shape != documented {
        return Err(RuntimeError::Metadata {
            path: onnx.to_path_buf(),
            reason: format!(
                "Burn's features are {:?}, the metadata documents {documented:?}",
                reference.features_shape
            ),
        });
    }
    let out = model.run(&input)?;
    let features = out.features.unwrap_or_default();
    Ok(Check {
        primary: Parity::of(&reference.primary, &out.primary),
        embedding: Parity::of(&reference.embedding, &out.embedding),
        features: Parity::of(&reference.features, &features),
    })
}
