//! `defectkit quantize`: static int8 quantization of an exported FP32 model, in Rust, as a
//! QDQ graph that ONNX Runtime fuses into int8 kernels (the recipe in ARCHITECTURE.md).
//!
//! The steps, one module each: [`fold`] simplifies the graph (BatchNormalization folded into
//! the preceding Conv, constant Reshapes of weights folded, MatMul + bias Add fused into
//! Gemm); [`calibrate`] runs good *training* images through ONNX Runtime with every
//! intermediate tensor exposed and turns what it saw into ranges ([`histogram`] for the
//! percentile and entropy methods); [`qdq`] places QuantizeLinear/DequantizeLinear pairs and
//! stores weights pre-quantized; [`fusion`] asks ONNX Runtime for its optimized graph and
//! names every quantized node that stayed float.

pub mod accuracy;
pub mod calibrate;
pub mod fold;
pub mod fusion;
pub mod graph;
pub mod histogram;
pub mod qdq;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use sha2::{Digest, Sha256};

use defectkit_core::config::quantize::CalibrationMethod;
use defectkit_core::config::schema::DataConfig;
use defectkit_core::config::QuantizeConfig;
use defectkit_core::data::mvtec::{Index, IndexOptions};
use defectkit_core::onnx::{
    decode_model, metadata_prop, opset_version, set_metadata_prop, GraphProto, Message,
    ModelMetadata, OnnxError, Precision, METADATA_KEY,
};

use crate::runtime::{RuntimeError, RuntimeOptions};

/// The `metadata_props` key holding [`QuantizationInfo`] as JSON in a quantized model.
pub const QUANTIZATION_KEY: &str = "defectkit.quantization";

/// Why quantization stopped.
#[derive(Debug, thiserror::Error)]
pub enum QuantizeError {
    /// The model file could not be read, decoded or written.
    #[error(transparent)]
    Onnx(#[from] OnnxError),
    /// ONNX Runtime failed (calibration or the fusion check).
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The data set could not be read.
    #[error(transparent)]
    Data(#[from] defectkit_core::data::DataError),
    /// The model cannot be quantized as it is (already quantized, an unsupported graph).
    #[error("{path}: {reason}")]
    Model {
        /// The model file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The calibration images do not allow a calibration (none, or a non-finite tensor).
    #[error("calibration: {0}")]
    Calibration(String),
    /// Cancelled (Ctrl-C); nothing was written.
    #[error("interrupted; no quantized model was written")]
    Interrupted,
}

/// What to quantize, with which images, and where to write it.
#[derive(Debug, Clone)]
pub struct QuantizeOptions {
    /// The FP32 model (`model.onnx`, exported by `defectkit export`).
    pub model: PathBuf,
    /// The int8 model to write (`model.int8.onnx`).
    pub out: PathBuf,
    /// Data set root; `None` = `data.root` from the config.
    pub root: Option<PathBuf>,
    /// The data set (its train split's good images calibrate).
    pub data: DataConfig,
    /// The method and its settings.
    pub config: QuantizeConfig,
    /// Session options for calibration and the fusion check.
    pub runtime: RuntimeOptions,
    /// Names of Conv/Gemm/MatMul/Add/… nodes (after folding) to leave in FP32.
    pub keep_float: Vec<String>,
    /// Also write the preprocessed calibration inputs as a `.npy` file (float32
    /// `[N, C, H, W]`), so that a peer quantizer can calibrate on exactly the same tensors.
    pub save_calibration: Option<PathBuf>,
    /// Show a progress bar.
    pub progress: bool,
    /// The accuracy-aware mode: return the layers that move a detector's validation scores
    /// most to FP32 until the drift is within bounds.
    pub accuracy: Option<accuracy::AccuracyOptions>,
}

/// What the calibration used, recorded in the quantized model's metadata.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct QuantizationInfo {
    /// How ranges were chosen (`minmax`, `percentile`, `entropy`).
    pub method: String,
    /// The percentile (percentile method only).
    pub percentile: Option<f64>,
    /// Histogram bins (histogram methods only).
    pub bins: Option<usize>,
    /// Activations int8 with zero point 0 (true) or uint8 asymmetric (false).
    pub symmetric_activations: bool,
    /// Weights 7-bit ([−64, 64]) for CPUs without VNNI (true) or 8-bit ([−127, 127]).
    pub reduce_range: bool,
    /// Calibration images used.
    pub calibration_images: usize,
    /// SHA-256 over the calibration images' paths and bytes, in order.
    pub calibration_sha256: String,
    /// SHA-256 of the FP32 model quantized.
    pub source_sha256: String,
    /// Nodes left in FP32 on purpose (accuracy-aware mode, `keep_float`).
    pub kept_float: Vec<String>,
    /// The defectkit version that quantized it.
    pub defectkit_version: String,
}

/// What ONNX Runtime made of the quantized graph.
#[derive(Debug, Clone, Default)]
pub struct FusionReport {
    /// int8 kernels in ONNX Runtime's optimized graph, by op type (QLinearConv, QGemm, …).
    pub int8_kernels: Vec<(String, usize)>,
    /// Quantized nodes that stayed float after optimization: `name (op)`.
    pub unfused: Vec<String>,
}

/// What a quantize run did.
#[derive(Debug, Clone)]
pub struct QuantizeReport {
    /// The file written.
    pub out: PathBuf,
    /// Size of the FP32 file, bytes.
    pub fp32_bytes: u64,
    /// Size of the int8 file, bytes.
    pub int8_bytes: u64,
    /// The metadata written into the file.
    pub info: QuantizationInfo,
    /// The images that calibrated (all from the train split, good).
    pub calibration_paths: Vec<PathBuf>,
    /// Nodes quantized (after folding), in graph order.
    pub quantized_nodes: Vec<String>,
    /// The fusion check.
    pub fusion: FusionReport,
    /// Things the user should know (unfused nodes, skipped images, …).
    pub warnings: Vec<String>,
    /// What the accuracy-aware mode did (when asked for).
    pub accuracy: Option<accuracy::AccuracyReport>,
    /// Wall time.
    pub seconds: f64,
}

/// Ops whose presence means a graph is already quantized.
fn is_quantized_op(op: &str) -> bool {
    matches!(
        op,
        "QuantizeLinear" | "DequantizeLinear" | "DynamicQuantizeLinear"
    ) || fusion::is_int8_kernel(op)
}

/// Quantizes `opts.model` into `opts.out` (written atomically, only when everything
/// succeeded). `cancel` is polled between calibration batches.
pub fn quantize(
    opts: &QuantizeOptions,
    cancel: &AtomicBool,
) -> Result<QuantizeReport, QuantizeError> {
    let started = Instant::now();
    let path = &opts.model;
    let refuse = |reason: String| QuantizeError::Model {
        path: path.clone(),
        reason,
    };
    opts.config
        .validate()
        .map_err(|e| QuantizeError::Calibration(format!("invalid quantize config: {e}")))?;
    let bytes = std::fs::read(path).map_err(|source| OnnxError::Read {
        path: path.clone(),
        source,
    })?;
    let fp32_bytes = bytes.len() as u64;
    let source_sha256 = format!("{:x}", Sha256::digest(&bytes));
    let mut model = decode_model(&bytes, path)?;
    // The accuracy-aware mode runs the FP32 model as its reference: keep its bytes.
    let fp32 = opts.accuracy.is_some().then_some(bytes);
    let mut meta = match metadata_prop(&model, METADATA_KEY) {
        Some(json) => ModelMetadata::from_json(json)
            .map_err(|e| refuse(format!("its `{METADATA_KEY}` metadata is invalid: {e}")))?,
        None => {
            return Err(refuse(format!(
                "no `{METADATA_KEY}` metadata: not a model exported by `defectkit export`"
            )))
        }
    };
    if meta.precision == Precision::Int8 || metadata_prop(&model, QUANTIZATION_KEY).is_some() {
        return Err(refuse(
            "already quantized (its metadata says int8); quantize the FP32 model.onnx".into(),
        ));
    }
    if let Some(n) = model
        .graph
        .node
        .iter()
        .find(|n| is_quantized_op(&n.op_type))
    {
        return Err(refuse(format!(
            "already quantized: it contains a {} node ({}); quantize the FP32 model",
            n.op_type, n.name
        )));
    }
    match opset_version(&model) {
        Some(v) if v >= 13 => {}
        other => {
            return Err(refuse(format!(
                "opset {}: per-channel QDQ needs opset 13 or newer (re-export the model)",
                other.map_or("unknown".to_string(), |v| v.to_string())
            )))
        }
    }

    // 1. Simplify (BN folding, MatMul + Add → Gemm), 2. plan where Q/DQ pairs go.
    let graph = model.graph.mut_or_insert_default();
    fold::simplify(graph).map_err(&refuse)?;
    let symmetric = opts.config.symmetric_activations;
    let reduce_range = opts.config.resolved_reduce_range();
    let keep: HashSet<String> = opts.keep_float.iter().cloned().collect();
    let known: HashSet<&str> = graph.node.iter().map(|n| n.name.as_str()).collect();
    let unknown: Vec<&String> = opts
        .keep_float
        .iter()
        .filter(|k| !known.contains(k.as_str()))
        .collect();
    if !unknown.is_empty() {
        return Err(refuse(format!(
            "keep-float names nodes the (folded) graph lacks: {unknown:?}; its quantizable \
             nodes are {:?}",
            qdq::plan(graph, &HashSet::new(), symmetric).quantized_nodes
        )));
    }
    let plan = qdq::plan(graph, &keep, symmetric);
    if plan.quantized_nodes.is_empty() {
        return Err(refuse(
            "nothing to quantize: no Conv, Gemm, MatMul, Add or pooling node".into(),
        ));
    }

    // 3. Calibrate on good training images.
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
            // The model's own train/val split (recorded at export), so that its validation
            // images never calibrate even when the config says otherwise.
            val_fraction: meta
                .data_split
                .map_or(opts.data.val_fraction, |s| s.val_fraction),
            seed: meta
                .data_split
                .map_or(opts.data.split_seed, |s| s.split_seed),
            strict: opts.data.strict,
        },
    )?;
    let samples = calibrate::select_images(&index, &opts.config.calibration);
    let bar = if opts.progress {
        let b = indicatif::ProgressBar::new(samples.len() as u64);
        if let Ok(s) = indicatif::ProgressStyle::with_template(
            "calibrate {bar:30} {pos}/{len} images  {per_sec}  {elapsed}<{eta}",
        ) {
            b.set_style(s);
        }
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    // The accuracy-aware mode builds graphs with some nodes left float, whose Relus then stay
    // and need their inputs' ranges too: measure every value once.
    let sources = if opts.accuracy.is_some() {
        qdq::every_value(graph)
    } else {
        plan.range_sources()
    };
    let calibration = calibrate::calibrate(
        &calibrate::CalibrationRun {
            model: &model,
            values: &sources,
            spec: &meta.preprocess,
            input_shape: meta.input_shape,
            config: &opts.config,
            runtime: &opts.runtime,
            strict: opts.data.strict,
            save_inputs: opts.save_calibration.as_deref(),
        },
        &samples,
        cancel,
        &bar,
    )?;
    bar.finish_and_clear();

    // 4. Rewrite (in the accuracy-aware mode, search which layers stay FP32 first).
    let folded_graph = model
        .graph
        .as_ref()
        .expect("a decoded model has a graph")
        .clone();
    meta.precision = Precision::Int8;
    set_metadata_prop(&mut model, METADATA_KEY, &meta.to_json());
    let build_graph = |keep: &HashSet<String>| -> Result<(qdq::Plan, GraphProto), QuantizeError> {
        let mut plan = qdq::plan(&folded_graph, keep, symmetric);
        fold::resize_sizes_to_scales(&mut plan.graph, &calibration.shapes);
        let g = qdq::apply(&plan, &calibration.ranges, symmetric, reduce_range).map_err(&refuse)?;
        Ok((plan, g))
    };
    let encode = |g: GraphProto| -> Result<Vec<u8>, QuantizeError> {
        let mut m = model.clone();
        m.graph = defectkit_core::onnx::MessageField::some(g);
        Ok(m.write_to_bytes()
            .map_err(|e| OnnxError::Edit(format!("protobuf encoding failed: {e}")))?)
    };
    let mut accuracy_report = None;
    let mut keep = keep;
    if let Some(acc) = &opts.accuracy {
        let all_samples: Vec<_> = index.samples.clone();
        let eval = accuracy::Evaluator::new(
            &acc.detector,
            &all_samples,
            &meta,
            &opts.runtime,
            opts.config.calibration.batch_size,
            opts.data.strict,
            cancel,
        )?;
        let fp32 = fp32.as_deref().expect("kept for the accuracy-aware mode");
        let layers: Vec<(String, String)> = folded_graph
            .node
            .iter()
            .filter(|n| plan.quantized_nodes.contains(&n.name))
            .map(|n| (n.name.clone(), n.op_type.clone()))
            .collect();
        // The user's keep-float nodes stay float in every candidate.
        let build = |k: &HashSet<String>| -> Result<Vec<u8>, QuantizeError> {
            let both: HashSet<String> = k.union(&keep).cloned().collect();
            let (_, g) = build_graph(&both)?;
            encode(g)
        };
        let search_bar = if opts.progress {
            let b = indicatif::ProgressBar::new(0);
            if let Ok(s) = indicatif::ProgressStyle::with_template(
                "{msg} {bar:30} {pos}/{len} layers  {elapsed}",
            ) {
                b.set_style(s);
            }
            b
        } else {
            indicatif::ProgressBar::hidden()
        };
        let (kept, report) = accuracy::search(
            &eval,
            acc,
            &build,
            fp32,
            &layers,
            &plan.quantized_nodes,
            &search_bar,
        )?;
        search_bar.finish_and_clear();
        keep.extend(kept);
        accuracy_report = Some(report);
    }
    let (plan, quantized_graph) = build_graph(&keep)?;
    model.graph = defectkit_core::onnx::MessageField::some(quantized_graph);
    let mut kept_float: Vec<String> = keep.iter().cloned().collect();
    kept_float.sort();
    let info = QuantizationInfo {
        method: opts.config.method.as_str().to_string(),
        percentile: (opts.config.method == CalibrationMethod::Percentile)
            .then_some(opts.config.percentile),
        bins: (opts.config.method != CalibrationMethod::Minmax).then_some(opts.config.bins),
        symmetric_activations: symmetric,
        reduce_range,
        calibration_images: calibration.paths.len(),
        calibration_sha256: calibration.sha256.clone(),
        source_sha256,
        kept_float,
        defectkit_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    set_metadata_prop(
        &mut model,
        QUANTIZATION_KEY,
        &serde_json::to_string(&info).expect("info serializes"),
    );
    let bytes = model
        .write_to_bytes()
        .map_err(|e| OnnxError::Edit(format!("protobuf encoding failed: {e}")))?;
    let scratch = tempfile_dir(&opts.out)?;
    let (float_nodes, kept_outputs) = plan.float_nodes();
    let fusion = fusion::check(
        &bytes,
        &float_nodes,
        &kept_outputs,
        &opts.runtime,
        scratch.path(),
    )?;
    drop(scratch);
    let mut warnings: Vec<String> = calibration
        .skipped
        .iter()
        .map(|(p, why)| format!("calibration skipped {}: {why}", p.display()))
        .collect();
    if !fusion.unfused.is_empty() {
        warnings.push(format!(
            "{} quantized node(s) stayed float in ONNX Runtime's optimized graph (they run in \
             FP32 between a dequantize and a quantize, slower than plain FP32): {}",
            fusion.unfused.len(),
            fusion.unfused.join(", ")
        ));
    }
    if let Some(parent) = opts.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        defectkit_core::fsutil::clear_stale_temps(parent);
    }
    defectkit_core::fsutil::write_atomic(&opts.out, &bytes).map_err(|source| OnnxError::Write {
        path: opts.out.clone(),
        source,
    })?;
    Ok(QuantizeReport {
        out: opts.out.clone(),
        fp32_bytes,
        int8_bytes: bytes.len() as u64,
        info,
        calibration_paths: calibration.paths,
        quantized_nodes: plan.quantized_nodes,
        fusion,
        warnings,
        accuracy: accuracy_report,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// A scratch folder beside `out` (same file system; removed when dropped).
fn tempfile_dir(out: &Path) -> Result<ScratchDir, QuantizeError> {
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let dir = parent.join(format!(".defectkit-quantize-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|source| OnnxError::Write {
        path: dir.clone(),
        source,
    })?;
    Ok(ScratchDir(dir))
}

/// A folder removed on drop.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
