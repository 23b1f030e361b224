//! `defectkit export`: a trained run dir → `model.onnx` + `model.json` (the training side's
//! half of ARCHITECTURE.md seam 1).
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

use defectkit_core::config::schema::Config;
use defectkit_core::onnx::{
    self as onnxfile, DataSplit, ModelKind, ModelMetadata, ModelProto, OnnxError, Precision,
};
use defectkit_core::run::{checkpoint_dir, RunSummary};

use crate::models::{ModelEntry, ModelVisitor};

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
        error: defectkit_core::config::ConfigError,
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

/// A network that can be exported: its forward pass as flat outputs (for the parity check)
/// and its trace through burn-onnx. Each model implements it in its folder.
pub trait ExportableNetwork: std::fmt::Debug {
    /// Forward pass in eval mode: (primary output, embedding), flattened.
    fn forward_flat(&self, images: Tensor<4>) -> (Vec<f32>, Vec<f32>);
    /// Traces an eval-mode copy at `sample`'s shape: outputs (primary, embedding).
    fn trace(
        &self,
        exporter: &OnnxExporter,
        sample: Tensor<4>,
    ) -> Result<burn_onnx::export::OnnxModel, burn_onnx::export::ExportError>;
}

/// A tensor's values as `f32`s (the flat form [`ExportableNetwork::forward_flat`] returns).
pub fn tensor_values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("f32 tensor")
}

/// One exportable network and the kind it is exported as.
#[derive(Debug)]
pub struct Network {
    kind: ModelKind,
    model: Box<dyn ExportableNetwork>,
}

impl Network {
    /// Wraps `model` to be exported as `kind`.
    pub fn new(kind: ModelKind, model: impl ExportableNetwork + 'static) -> Self {
        Self {
            kind,
            model: Box::new(model),
        }
    }

    /// The metadata kind.
    pub fn kind(&self) -> ModelKind {
        self.kind
    }

    /// Burn forward pass: (primary output flattened, embedding flattened).
    pub fn forward(&self, images: Tensor<4>) -> (Vec<f32>, Vec<f32>) {
        self.model.forward_flat(images)
    }

    /// Traces the network at batch 1 and returns the raw burn-onnx ModelProto bytes.
    fn trace(&self, side: usize, device: &Device) -> Result<Vec<u8>, ExportError> {
        let sample = Tensor::<4>::zeros([TRACE_BATCH, 3, side, side], device);
        let onnx = self
            .model
            .trace(&OnnxExporter::new(), sample)
            .map_err(|e| ExportError::Trace(e.to_string()))?;
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

/// What a model's [`ModelEntry::load_trained`] may use to find and build its network.
pub struct RunContext<'a> {
    /// The run dir.
    pub run_dir: &'a Path,
    /// The run's resolved configuration.
    pub config: &'a Config,
    /// Class names in logit order.
    pub classes: &'a [String],
    /// The device to load on.
    pub device: &'a Device,
}

impl RunContext<'_> {
    /// A checkpoint file of the run (`checkpoints/<file>`).
    pub fn checkpoint(&self, file: &str) -> PathBuf {
        checkpoint_dir(self.run_dir).join(file)
    }

    /// Side of the square network input in pixels.
    pub fn input_side(&self) -> usize {
        self.config.data.preprocess.input_size() as usize
    }

    /// The error for a `--teacher` export of a model without a teacher.
    pub fn no_teacher(&self) -> ExportError {
        ExportError::RunDir(format!(
            "--teacher needs a model B (cnn_distilled) run; {} is not one",
            self.run_dir.display()
        ))
    }
}

/// [`load_run`]'s visit of the model registry.
struct LoadVisitor<'a> {
    ctx: RunContext<'a>,
    target: ExportTarget,
}

impl ModelVisitor for LoadVisitor<'_> {
    type Output = Result<(Network, PathBuf), ExportError>;

    fn visit<M: ModelEntry>(self, schema: &M::Schema) -> Self::Output {
        M::load_trained(schema, &self.ctx, self.target)
    }
}

/// Loads a `.bpk` checkpoint into `model`, naming the file when it is missing or unreadable.
pub fn load_checkpoint<M: Module>(model: M, path: &Path) -> Result<M, ExportError> {
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
        defectkit_core::run::read_run_config(run_dir).map_err(|error| ExportError::Config {
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
        let opts = defectkit_core::data::mvtec::IndexOptions {
            classes: None,
            val_fraction: config.data.val_fraction,
            seed: config.data.split_seed,
            strict: false,
        };
        defectkit_core::data::mvtec::Index::scan(&config.data.root, &opts)
            .map_err(|e| {
                ExportError::RunDir(format!(
                    "summary.json lists no classes and the data set to recover them from \
                     cannot be read: {e}"
                ))
            })?
            .classes
            .clone()
    };
    let ctx = RunContext {
        run_dir,
        config: &config,
        classes: &classes,
        device,
    };
    let (network, checkpoint) = crate::models::visit(&config.model, LoadVisitor { ctx, target })?;
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
        data_split: Some(DataSplit {
            val_fraction: run.config.data.val_fraction,
            split_seed: run.config.data.split_seed,
        }),
    };
    let (model, metadata) = export_network(&run.network, metadata, device)?;
    let onnx = out_dir.join("model.onnx");
    let json = out_dir.join("model.json");
    onnxfile::write_model(&onnx, &model)?;
    defectkit_core::fsutil::write_atomic(&json, metadata.to_json().as_bytes()).map_err(
        |source| ExportError::Write {
            path: json.clone(),
            source,
        },
    )?;
    let bytes = std::fs::metadata(&onnx).map(|m| m.len()).unwrap_or(0);
    Ok(ExportReport {
        onnx,
        json,
        metadata,
        bytes,
    })
}

/// Burn's (primary output, embedding) on the export policy's seeded probe inputs
/// ([`defectkit_core::onnx::parity::probe_input`]): the reference an exported file is checked
/// against (the CLI runs the same inputs through ONNX Runtime and compares with
/// [`defectkit_core::onnx::Parity`]). Returns the inputs too.
pub fn reference_outputs(
    network: &Network,
    input_shape: [usize; 3],
    batch: usize,
    seed: u64,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let input = defectkit_core::onnx::parity::probe_input(input_shape, batch, seed);
    let [c, h, w] = input_shape;
    let device = Device::flex();
    let tensor = Tensor::<4>::from_data(TensorData::new(input.clone(), [batch, c, h, w]), &device);
    let (primary, embedding) = network.forward(tensor);
    (input, primary, embedding)
}
