//! Calibration: good *training* images through ONNX Runtime, with every value the quantizer
//! needs a range for exposed as an extra graph output, streamed in batches through the
//! shared decode pipeline; per value a min/max or a histogram ([`super::histogram`]).
//!
//! Validation images set thresholds and test images measure; neither ever calibrates. The
//! images are chosen here from the index's train split only, and every one is checked to be a
//! good training image before it is read.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use ort::value::Tensor;
use sha2::{Digest, Sha256};

use defectkit_core::config::quantize::{CalibrationConfig, CalibrationMethod, QuantizeConfig};
use defectkit_core::data::mvtec::{Index, Sample, Split};
use defectkit_core::data::PreprocessSpec;
use defectkit_core::onnx::{
    tensor_proto::DataType, type_proto, Message, MessageField, ModelProto, TypeProto,
    ValueInfoProto,
};
use defectkit_core::rng::SplitMix64;

use super::histogram::{entropy_threshold, percentile_threshold, Histogram};
use super::QuantizeError;
use crate::pipeline::{decode_batches, PipelineError, PipelineOptions};
use crate::runtime::{session_from_bytes, RuntimeError, RuntimeOptions};

/// The calibration images: good images of the train split, each class shuffled with `seed`,
/// taken round-robin over the classes (so a cap keeps every class represented) up to
/// `max_images`.
pub fn select_images(index: &Index, cfg: &CalibrationConfig) -> Vec<Sample> {
    let mut per_class: Vec<Vec<Sample>> = Vec::new();
    for class in &index.classes {
        let mut samples: Vec<Sample> = index
            .split(Split::Train)
            .filter(|s| &s.class == class && s.is_good())
            .cloned()
            .collect();
        let mut rng =
            SplitMix64(cfg.seed ^ (per_class.len() as u64).wrapping_mul(0xA076_1D64_78BD_642F));
        for i in (1..samples.len()).rev() {
            let j = (rng.next_u64() % (i as u64 + 1)) as usize;
            samples.swap(i, j);
        }
        per_class.push(samples);
    }
    let cap = cfg.max_images.unwrap_or(usize::MAX);
    let mut out = Vec::new();
    let longest = per_class.iter().map(Vec::len).max().unwrap_or(0);
    'outer: for k in 0..longest {
        for class in &per_class {
            if let Some(s) = class.get(k) {
                if out.len() == cap {
                    break 'outer;
                }
                out.push(s.clone());
            }
        }
    }
    out
}

/// A FLOAT value of unknown shape, for an extra graph output.
fn float_output(name: &str) -> ValueInfoProto {
    let tensor = type_proto::Tensor {
        elem_type: DataType::FLOAT as i32,
        ..Default::default()
    };
    let mut ty = TypeProto::default();
    ty.set_tensor_type(tensor);
    ValueInfoProto {
        name: name.into(),
        type_: MessageField::some(ty),
        ..Default::default()
    }
}

/// `model` with every value in `values` that is not a graph input or output already made a
/// graph output.
pub fn augment(model: &ModelProto, values: &[String]) -> ModelProto {
    let mut out = model.clone();
    let g = out.graph.as_mut().expect("a decoded model has a graph");
    for v in values {
        let exists = g.output.iter().any(|o| &o.name == v) || g.input.iter().any(|i| &i.name == v);
        if !exists {
            g.output.push(float_output(v));
        }
    }
    out
}

/// What one value's calibration collects.
#[derive(Debug, Clone)]
enum Collector {
    MinMax(f32, f32),
    Hist(Histogram),
}

impl Collector {
    fn add(slot: &mut Option<Collector>, values: &[f32], cfg: &QuantizeConfig) {
        match slot {
            None => {
                *slot = Some(match cfg.method {
                    CalibrationMethod::Minmax => {
                        let (lo, hi) = values
                            .iter()
                            .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
                                (a.min(v), b.max(v))
                            });
                        Collector::MinMax(lo, hi)
                    }
                    _ => Collector::Hist(Histogram::new(values, cfg.bins)),
                })
            }
            Some(Collector::MinMax(lo, hi)) => {
                for &v in values {
                    *lo = lo.min(v);
                    *hi = hi.max(v);
                }
            }
            Some(Collector::Hist(h)) => h.add(values),
        }
    }

    fn range(&self, cfg: &QuantizeConfig) -> (f32, f32) {
        match self {
            Collector::MinMax(lo, hi) => (*lo, *hi),
            Collector::Hist(h) => match cfg.method {
                CalibrationMethod::Entropy => {
                    let (lo, hi) = entropy_threshold(h, 128);
                    (h.min.max(lo as f32), h.max.min(hi as f32))
                }
                _ => h.clipped_range(percentile_threshold(h, cfg.percentile)),
            },
        }
    }
}

/// The result of a calibration run.
#[derive(Debug, Clone)]
pub struct Calibration {
    /// `[min, max]` per value.
    pub ranges: HashMap<String, (f32, f32)>,
    /// The images used, in order.
    pub paths: Vec<PathBuf>,
    /// Images that could not be decoded (non-strict data sets), with the reason.
    pub skipped: Vec<(PathBuf, String)>,
    /// SHA-256 over each used image's path and bytes, in order.
    pub sha256: String,
    /// Each measured value's shape in the first batch (the batch axis included).
    pub shapes: HashMap<String, Vec<usize>>,
}

/// Everything a calibration run needs besides the images.
#[derive(Debug)]
pub struct CalibrationRun<'a> {
    /// The (folded) FP32 model.
    pub model: &'a ModelProto,
    /// The values to measure.
    pub values: &'a [String],
    /// The model's preprocessing.
    pub spec: &'a PreprocessSpec,
    /// `[C, H, W]`.
    pub input_shape: [usize; 3],
    /// Method, bins, batch size.
    pub config: &'a QuantizeConfig,
    /// Session options.
    pub runtime: &'a RuntimeOptions,
    /// Stop on undecodable images instead of skipping them.
    pub strict: bool,
    /// Write the preprocessed inputs here as `.npy`.
    pub save_inputs: Option<&'a Path>,
}

/// Runs `samples` through the augmented model and returns each value's range.
pub fn calibrate(
    run: &CalibrationRun<'_>,
    samples: &[Sample],
    cancel: &AtomicBool,
    progress: &indicatif::ProgressBar,
) -> Result<Calibration, QuantizeError> {
    for s in samples {
        // The one rule of calibration, checked where it matters.
        if s.split != Split::Train || !s.is_good() {
            return Err(QuantizeError::Calibration(format!(
                "{} is not a good training image; calibration reads train/good only",
                s.path.display()
            )));
        }
    }
    if samples.is_empty() {
        return Err(QuantizeError::Calibration(
            "no good training images to calibrate on (check data.root and data.classes)".into(),
        ));
    }
    let augmented = augment(run.model, run.values);
    let bytes = augmented
        .write_to_bytes()
        .map_err(|e| QuantizeError::Calibration(format!("encoding the calibration graph: {e}")))?;
    let mut session = session_from_bytes(&bytes, run.runtime, None)?;
    drop(bytes);
    let input_name = session
        .inputs()
        .first()
        .map(|i| i.name().to_string())
        .ok_or_else(|| QuantizeError::Calibration("the model has no inputs".into()))?;
    let graph_inputs: Vec<String> = run
        .model
        .graph
        .input
        .iter()
        .map(|v| v.name.clone())
        .collect();
    let per_sample: usize = run.input_shape.iter().product();
    let mut collectors: HashMap<String, Option<Collector>> =
        run.values.iter().map(|v| (v.clone(), None)).collect();
    let mut paths: Vec<PathBuf> = Vec::new();
    let mut shapes: HashMap<String, Vec<usize>> = HashMap::new();
    let mut saved: Vec<f32> = Vec::new();
    let mut failure: Option<QuantizeError> = None;
    let [c, h, w] = run.input_shape;
    let opts = PipelineOptions {
        batch_size: run.config.calibration.batch_size,
        strict: run.strict,
        warn_skipped: true,
    };
    let skipped = decode_batches(
        run.spec,
        per_sample,
        samples,
        opts,
        cancel,
        progress,
        |batch| {
            if batch.items.is_empty() {
                return Ok(());
            }
            let n = batch.items.len();
            let tensor = Tensor::from_array(([n, c, h, w], batch.input.clone()))
                .map_err(|e| RuntimeError::Ort(e.to_string()))?;
            let outputs = session
                .run(ort::inputs![input_name.as_str() => tensor])
                .map_err(|e| RuntimeError::Ort(e.to_string()))?;
            for (name, slot) in collectors.iter_mut() {
                let values: &[f32] = if graph_inputs.contains(name) {
                    shapes
                        .entry(name.clone())
                        .or_insert_with(|| vec![n, c, h, w]);
                    &batch.input
                } else {
                    let value = outputs
                        .get(name.as_str())
                        .ok_or_else(|| RuntimeError::Ort(format!("no output named {name:?}")))?;
                    let (shape, data) = value
                        .try_extract_tensor::<f32>()
                        .map_err(|e| RuntimeError::Ort(e.to_string()))?;
                    shapes
                        .entry(name.clone())
                        .or_insert_with(|| shape.iter().map(|&d| d.max(0) as usize).collect());
                    data
                };
                if let Some(bad) = values.iter().position(|v| !v.is_finite()) {
                    failure.get_or_insert(QuantizeError::Calibration(format!(
                        "value {name:?} is not finite ({}) for one of {} (batch starting at {})",
                        values[bad],
                        n,
                        batch.items[0].path.display()
                    )));
                    return Err(RuntimeError::Ort("non-finite activation".into()));
                }
                Collector::add(slot, values, run.config);
            }
            paths.extend(batch.items.iter().map(|s| s.path.clone()));
            if run.save_inputs.is_some() {
                saved.extend_from_slice(&batch.input);
            }
            Ok(())
        },
    );
    let skipped = match skipped {
        Ok(s) => s,
        Err(PipelineError::Interrupted) => return Err(QuantizeError::Interrupted),
        Err(PipelineError::Data(e)) => return Err(e.into()),
        Err(PipelineError::Runtime(e)) => return Err(failure.unwrap_or(e.into())),
    };
    if paths.is_empty() {
        return Err(QuantizeError::Calibration(
            "every calibration image was skipped (none could be decoded)".into(),
        ));
    }
    let mut ranges = HashMap::new();
    for (name, slot) in collectors {
        let collector = slot.expect("every value saw every batch");
        ranges.insert(name, collector.range(run.config));
    }
    let mut hasher = Sha256::new();
    for p in &paths {
        hasher.update(p.display().to_string().as_bytes());
        hasher.update([0u8]);
        let bytes = std::fs::read(p).map_err(|e| {
            QuantizeError::Calibration(format!("cannot re-read {} for its hash: {e}", p.display()))
        })?;
        hasher.update(&bytes);
    }
    if let Some(path) = run.save_inputs {
        write_npy(path, &saved, &[paths.len(), c, h, w]).map_err(|e| {
            QuantizeError::Calibration(format!("cannot write {}: {e}", path.display()))
        })?;
    }
    Ok(Calibration {
        ranges,
        paths,
        skipped,
        sha256: format!("{:x}", hasher.finalize()),
        shapes,
    })
}

/// Writes a float32 C-order array as a NumPy `.npy` file (format 1.0), atomically.
pub fn write_npy(path: &Path, values: &[f32], shape: &[usize]) -> std::io::Result<()> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_text = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_text}, }}");
    // magic (6) + version (2) + length (2) + header + '\n' is a multiple of 64.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = Vec::with_capacity(10 + header.len() + 4 * values.len());
    bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for v in values {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    defectkit_core::fsutil::write_atomic(path, &bytes)
}
