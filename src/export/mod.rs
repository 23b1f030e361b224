//! `defectkit export`: a trained run dir → `model.onnx` + `model.json` (the training side's
//! half of design seam 1).
//!
//! burn-onnx traces the Burn model at a static batch of 1 (opset 18). The graph is then
//! edited as a ModelProto: input and outputs get their documented names (`input`;
//! `logits` or `reconstruction`, then `embedding`), per-sample Reshapes copy the batch
//! axis instead of fixing it, axis 0 becomes the symbolic `batch`, and defectkit's
//! [`ModelMetadata`] goes into `metadata_props`. The same batch-1 route serves every model:
//! burn-onnx's own dynamic export cannot resolve the U-Net's latent reshape.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn_onnx::export::OnnxExporter;

use crate::config::schema::{Config, HeadConfig, ModelConfig};
use crate::models::{Classifier, ResNet18, ResNet18Config, UNet, UNetConfig};
use crate::onnx::{self as onnxfile, ModelKind, ModelMetadata, ModelProto, OnnxError, Precision};
use crate::train::summary::RunSummary;
use crate::train::trainer::checkpoint_dir;

/// The batch size the graph is traced at (rewritten to a symbolic axis afterwards).
const TRACE_BATCH: usize = 1;

/// Everything that can stop an export.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The run dir is missing something export needs.
    #[error("{0}")]
    RunDir(String),
    /// The run's configuration could not be read.
    #[error("cannot use the configuration of run {run_dir}: {error}")]
    Config {
        /// The run dir.
        run_dir: PathBuf,
        /// Why (shown in the message, so not chained as a source too).
        error: crate::config::ConfigError,
    },
    /// A checkpoint could not be loaded.
    #[error("cannot load checkpoint {path}: {reason}")]
    Checkpoint {
        /// The `.bpk` file.
        path: PathBuf,
        /// Burn's message.
        reason: String,
    },
    /// burn-onnx could not trace or lower the model.
    #[error("burn-onnx export failed: {0}")]
    Trace(String),
    /// Editing or writing the ONNX file failed.
    #[error(transparent)]
    Onnx(#[from] OnnxError),
    /// `model.json` could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Which network of a run to export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExportTarget {
    /// The run's model (A, B's student, or C), from its best checkpoint.
    #[default]
    Model,
    /// Model B's ResNet-18 teacher.
    Teacher,
}

/// A trained run, loaded and ready to export.
pub struct LoadedRun {
    /// The run's resolved configuration.
    pub config: Config,
    /// Class names in logit order.
    pub classes: Vec<String>,
    /// The network.
    pub network: Network,
    /// Checkpoint path relative to the run dir (or absolute, for a cached teacher).
    pub checkpoint: PathBuf,
    /// SHA-256 of `.hydra/config.yaml`.
    pub config_hash: String,
    /// The run dir's name.
    pub run_id: String,
}

/// One of the exportable networks, in eval mode.
#[derive(Debug)]
pub enum Network {
    /// Model A or B's student.
    Classifier(ModelKind, Box<Classifier>),
    /// Model C.
    UNet(Box<UNet>),
    /// The ResNet-18 teacher.
    Teacher(Box<ResNet18>),
}

impl Network {
    /// The metadata kind.
    pub fn kind(&self) -> ModelKind {
        match self {
            Network::Classifier(kind, _) => *kind,
            Network::UNet(_) => ModelKind::UnetAe,
            Network::Teacher(_) => ModelKind::Teacher,
        }
    }

    /// Burn forward pass: (primary output flattened, embedding flattened).
    pub fn forward(&self, images: Tensor<4>) -> (Vec<f32>, Vec<f32>) {
        let to_vec = |data: burn::tensor::TensorData| {
            data.convert::<f32>()
                .try_to_vec::<f32>()
                .expect("f32 tensor")
        };
        match self {
            Network::Classifier(_, m) => {
                let o = m.forward(images);
                (
                    to_vec(o.logits.into_data()),
                    to_vec(o.embedding.into_data()),
                )
            }
            Network::UNet(m) => {
                let o = m.forward(images);
                (
                    to_vec(o.reconstruction.into_data()),
                    to_vec(o.embedding.into_data()),
                )
            }
            Network::Teacher(m) => {
                let o = m.forward(images);
                (
                    to_vec(o.logits.into_data()),
                    to_vec(o.embedding.into_data()),
                )
            }
        }
    }

    /// Traces the network at batch 1 and returns the raw burn-onnx ModelProto bytes.
    fn trace(&self, side: usize, device: &Device) -> Result<Vec<u8>, ExportError> {
        let sample = Tensor::<4>::zeros([TRACE_BATCH, 3, side, side], device);
        let exporter = OnnxExporter::new();
        let trace_err = |e: burn_onnx::export::ExportError| ExportError::Trace(e.to_string());
        // Export a `valid()` copy: the exporter moves the module to its capture device and
        // BatchNorm running stats are shared between clones.
        let onnx = match self {
            Network::Classifier(_, m) => exporter
                .export(
                    &m.as_ref().valid(),
                    sample,
                    |m: &Classifier, x: Tensor<4>| {
                        let o = m.forward(x);
                        (o.logits, o.embedding)
                    },
                )
                .map_err(trace_err)?,
            Network::UNet(m) => exporter
                .export(&m.as_ref().valid(), sample, |m: &UNet, x: Tensor<4>| {
                    let o = m.forward(x);
                    (o.reconstruction, o.embedding)
                })
                .map_err(trace_err)?,
            Network::Teacher(m) => exporter
                .export(&m.as_ref().valid(), sample, |m: &ResNet18, x: Tensor<4>| {
                    let o = m.forward(x);
                    (o.logits, o.embedding)
                })
                .map_err(trace_err)?,
        };
        Ok(onnx.into_bytes())
    }

    /// Length of the embedding output.
    pub fn embedding_dim(&self, side: usize, device: &Device) -> usize {
        let x = Tensor::<4>::zeros([1, 3, side, side], device);
        self.forward(x).1.len()
    }
}

/// Exports `network` to a finished ModelProto: documented names, symbolic batch, metadata.
/// `metadata.outputs`, `opset` and `embedding_dim` are filled in here.
pub fn export_network(
    network: &Network,
    mut metadata: ModelMetadata,
    device: &Device,
) -> Result<(ModelProto, ModelMetadata), ExportError> {
    let side = metadata.preprocess.input_size() as usize;
    let bytes = network.trace(side, device)?;
    let mut model = onnxfile::decode_model(&bytes, Path::new("<burn-onnx output>"))?;

    let inputs = onnxfile::input_names(&model);
    let outputs = onnxfile::output_names(&model);
    if inputs.len() != 1 || outputs.len() != 2 {
        return Err(ExportError::Trace(format!(
            "expected 1 input and 2 outputs, got {inputs:?} → {outputs:?}"
        )));
    }
    let primary = network.kind().primary_output();
    onnxfile::rename_value(&mut model, &inputs[0], "input")?;
    onnxfile::rename_value(&mut model, &outputs[0], primary)?;
    onnxfile::rename_value(&mut model, &outputs[1], "embedding")?;
    onnxfile::batch_reshapes_to_copy(&mut model, TRACE_BATCH as i64)?;
    onnxfile::set_symbolic_batch(&mut model, "batch")?;

    metadata.outputs = vec![primary.to_string(), "embedding".to_string()];
    metadata.opset = onnxfile::opset_version(&model).unwrap_or_default();
    metadata.embedding_dim = network.embedding_dim(side, device);
    model.producer_name = "defectkit".into();
    model.producer_version = env!("CARGO_PKG_VERSION").into();
    model.doc_string = format!(
        "defectkit {} model; input `input` [batch, 3, {side}, {side}] preprocessed as in the \
         `{}` metadata; outputs {primary}, embedding [batch, {}]",
        network.kind().as_str(),
        onnxfile::METADATA_KEY,
        metadata.embedding_dim
    );
    onnxfile::set_metadata_prop(&mut model, onnxfile::METADATA_KEY, &metadata.to_json());
    onnxfile::set_metadata_prop(&mut model, "model_kind", network.kind().as_str());
    onnxfile::set_metadata_prop(&mut model, "classes", &metadata.classes.join(","));
    Ok((model, metadata))
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    format!("{:x}", Sha256::digest(bytes))
}

fn load_checkpoint<M: Module>(model: M, path: &Path) -> Result<M, ExportError> {
    if !path.is_file() {
        return Err(ExportError::Checkpoint {
            path: path.to_path_buf(),
            reason: "no such file (did training finish an epoch?)".into(),
        });
    }
    model
        .try_load_file(path)
        .map_err(|e| ExportError::Checkpoint {
            path: path.to_path_buf(),
            reason: format!("{e:?}"),
        })
}

/// Reads a run dir (its `.hydra/config.yaml`, `summary.json`, checkpoints) and loads the
/// chosen network on `device`.
pub fn load_run(
    run_dir: &Path,
    target: ExportTarget,
    device: &Device,
) -> Result<LoadedRun, ExportError> {
    if !run_dir.is_dir() {
        return Err(ExportError::RunDir(format!(
            "run dir {} does not exist",
            run_dir.display()
        )));
    }
    let (config, text) =
        crate::config::rundir::read_run_config(run_dir).map_err(|error| ExportError::Config {
            run_dir: run_dir.to_path_buf(),
            error,
        })?;
    let summary = RunSummary::read(run_dir).map_err(|e| {
        ExportError::RunDir(format!(
            "{}: no readable summary.json ({e}); export needs a finished training run",
            run_dir.display()
        ))
    })?;
    let classes = if !summary.classes.is_empty() {
        summary.classes.clone()
    } else if let Some(classes) = config.data.classes.clone() {
        classes
    } else {
        // Runs from before classes were recorded: scan the data set as training did.
        let opts = crate::data::mvtec::IndexOptions {
            classes: None,
            val_fraction: config.data.val_fraction,
            seed: config.data.split_seed,
            strict: false,
        };
        crate::data::mvtec::Index::scan(&config.data.root, &opts)
            .map_err(|e| {
                ExportError::RunDir(format!(
                    "summary.json lists no classes and the data set to recover them from \
                     cannot be read: {e}"
                ))
            })?
            .classes
            .clone()
    };
    let n = classes.len();
    let side = config.data.preprocess.input_size() as usize;
    let ckpt = checkpoint_dir(run_dir);
    let classifier = |kind: ModelKind, width: usize, head: &HeadConfig, file: &str| {
        let hidden = (head.hidden > 0).then_some(head.hidden);
        let model = crate::train::classifier_config(n, width, hidden, head.dropout).init(device);
        let path = ckpt.join(file);
        let loaded = load_checkpoint(model, &path)?;
        Ok::<_, ExportError>((Network::Classifier(kind, Box::new(loaded)), path))
    };
    let (network, checkpoint) = match (&config.model, target) {
        (ModelConfig::CnnScratch(m), ExportTarget::Model) => {
            classifier(ModelKind::CnnScratch, m.width, &m.head, "best.bpk")?
        }
        // B's deployable model is the student alone (saved apart from the distiller).
        (ModelConfig::CnnDistilled(m), ExportTarget::Model) => {
            classifier(ModelKind::CnnDistilled, m.width, &m.head, "student.bpk")?
        }
        (ModelConfig::CnnDistilled(m), ExportTarget::Teacher) => {
            let here = checkpoint_dir(&run_dir.join("teacher")).join("best.bpk");
            let path = if here.is_file() {
                here
            } else {
                crate::train::teacher_cache_path(&config, &classes, &m.teacher)
            };
            let model = ResNet18Config::new().with_num_classes(n).init(device);
            (
                Network::Teacher(Box::new(load_checkpoint(model, &path)?)),
                path,
            )
        }
        (ModelConfig::UnetAe(m), ExportTarget::Model) => {
            let model = UNetConfig::new(side)
                .with_depth(m.depth)
                .with_base_width(m.base_width)
                .with_skip_connections(m.skip_connections)
                .with_latent_dim(m.latent_dim)
                .init(device);
            let path = ckpt.join("best.bpk");
            (
                Network::UNet(Box::new(load_checkpoint(model, &path)?)),
                path,
            )
        }
        (_, ExportTarget::Teacher) => {
            return Err(ExportError::RunDir(format!(
                "--teacher needs a model B (cnn_distilled) run; {} is not one",
                run_dir.display()
            )))
        }
    };
    let checkpoint = checkpoint
        .strip_prefix(run_dir)
        .map(Path::to_path_buf)
        .unwrap_or(checkpoint);
    Ok(LoadedRun {
        config,
        classes,
        network,
        checkpoint,
        config_hash: sha256_hex(text.as_bytes()),
        run_id: run_dir
            .canonicalize()
            .unwrap_or_else(|_| run_dir.to_path_buf())
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    })
}

/// What [`export_run`] wrote.
#[derive(Debug, Clone)]
pub struct ExportReport {
    /// `model.onnx`.
    pub onnx: PathBuf,
    /// `model.json`.
    pub json: PathBuf,
    /// The metadata written into both.
    pub metadata: ModelMetadata,
    /// Size of `model.onnx` in bytes.
    pub bytes: u64,
}

/// Exports a loaded run's model into `out_dir` (`model.onnx` + `model.json`, written
/// atomically). `device` is the one the run was loaded on.
pub fn export_run(
    run: &LoadedRun,
    out_dir: &Path,
    device: &Device,
) -> Result<ExportReport, ExportError> {
    let metadata = ModelMetadata {
        kind: run.network.kind(),
        precision: Precision::Fp32,
        preprocess: run.config.data.preprocess.clone(),
        classes: run.classes.clone(),
        input_shape: {
            let s = run.config.data.preprocess.input_size() as usize;
            [3, s, s]
        },
        embedding_dim: 0,
        outputs: Vec::new(),
        run_id: run.run_id.clone(),
        config_hash: run.config_hash.clone(),
        defectkit_version: env!("CARGO_PKG_VERSION").to_string(),
        checkpoint: run.checkpoint.display().to_string(),
        opset: 0,
    };
    let (model, metadata) = export_network(&run.network, metadata, device)?;
    let onnx = out_dir.join("model.onnx");
    let json = out_dir.join("model.json");
    onnxfile::write_model(&onnx, &model)?;
    crate::fsutil::write_atomic(&json, metadata.to_json().as_bytes()).map_err(|source| {
        ExportError::Write {
            path: json.clone(),
            source,
        }
    })?;
    let bytes = std::fs::metadata(&onnx).map(|m| m.len()).unwrap_or(0);
    Ok(ExportReport {
        onnx,
        json,
        metadata,
        bytes,
    })
}

/// How far ONNX Runtime's outputs are from Burn's for one output.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Parity {
    /// Largest absolute difference.
    pub max_abs_diff: f32,
    /// Largest absolute value of Burn's output (the scale the difference is relative to).
    pub max_abs_value: f32,
}

impl Parity {
    /// Compares two flat outputs; different lengths compare as infinitely far apart.
    pub fn of(reference: &[f32], other: &[f32]) -> Self {
        let max_abs_value = reference.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let max_abs_diff = if reference.len() != other.len() {
            f32::INFINITY
        } else {
            reference
                .iter()
                .zip(other)
                .map(|(x, y)| (x - y).abs())
                .fold(
                    0.0f32,
                    |m, d| if d.is_nan() { f32::INFINITY } else { m.max(d) },
                )
        };
        Self {
            max_abs_diff,
            max_abs_value,
        }
    }

    /// Whether the difference is within `tol` in absolute terms for outputs of magnitude
    /// ≤ 1, and within `tol` relative to the output's magnitude beyond that (float32
    /// summation order alone moves large activations by more than a fixed 1e-4).
    pub fn within(&self, tol: f32) -> bool {
        self.max_abs_diff <= tol * self.max_abs_value.max(1.0)
    }
}

/// Burn vs ONNX Runtime (primary output, embedding) on `batch` seeded random images in
/// `[-2, 2]`: the export's self-check.
pub fn parity_with_runtime(
    network: &Network,
    onnx: &Path,
    batch: usize,
    seed: u64,
    runtime: &crate::runtime::RuntimeOptions,
) -> Result<(Parity, Parity), crate::runtime::RuntimeError> {
    use rand::{Rng, SeedableRng};
    let mut ort_model = crate::runtime::OnnxModel::load(onnx, runtime)?;
    let [c, h, w] = ort_model.metadata.input_shape;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let input: Vec<f32> = (0..batch * c * h * w)
        .map(|_| rng.random_range(-2.0f32..2.0))
        .collect();
    let device = Device::flex();
    let tensor = Tensor::<4>::from_data(TensorData::new(input.clone(), [batch, c, h, w]), &device);
    let (burn_primary, burn_embedding) = network.forward(tensor);
    let out = ort_model.run(&input)?;
    Ok((
        Parity::of(&burn_primary, &out.primary),
        Parity::of(&burn_embedding, &out.embedding),
    ))
}
