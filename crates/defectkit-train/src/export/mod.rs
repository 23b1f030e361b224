//! `defectkit export`: a trained run dir → `model.onnx` + `model.json` (the training side's
//! half of ARCHITECTURE.md seam 1).
//!
//! burn-onnx traces the Burn model at a static batch of 1 (opset 18). The graph is then
//! edited as a ModelProto: input and outputs get their documented names (`input`;
//! `logits` or `reconstruction`, then `embedding`, then `features`, the patch-level map of
//! [`FeatureLayout`]), per-sample Reshapes copy the batch axis instead of fixing it, axis 0
//! becomes the symbolic `batch`, and defectkit's [`ModelMetadata`] (with the `features`
//! map's [`FeatureMapSpec`]) goes into `metadata_props`. The same batch-1 route serves every model:
//! burn-onnx's own dynamic export cannot resolve the U-Net's latent reshape.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn_onnx::export::OnnxExporter;

use defectkit_core::config::schema::Config;
use defectkit_core::onnx::{
    self as onnxfile, DataSplit, FeatureMapSpec, FeatureSource, ModelKind, ModelMetadata,
    ModelProto, OnnxError, Precision,
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

/// A network that can be exported: its forward pass as flat outputs (for the parity check),
/// what its `features` output is made of, and its trace through burn-onnx. Each model
/// implements it in its folder.
pub trait ExportableNetwork: std::fmt::Debug {
    /// Forward pass in eval mode: primary output, embedding and patch features, flattened.
    fn forward_flat(&self, images: Tensor<4>) -> FlatOutputs;
    /// The layers and stride of the `features` output.
    fn feature_layout(&self) -> FeatureLayout;
    /// Traces an eval-mode copy at `sample`'s shape: outputs (primary, embedding, features).
    fn trace(
        &self,
        exporter: &OnnxExporter,
        sample: Tensor<4>,
    ) -> Result<burn_onnx::export::OnnxModel, burn_onnx::export::ExportError>;
}

/// What a network's `features` output is made of (PaDiM/PatchCore-style patch features):
/// the stride of its map and the layers concatenated, recorded in the exported model's
/// [`FeatureMapSpec`] together with the map's traced size.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureLayout {
    /// Input pixels per map cell along each axis.
    pub stride: usize,
    /// The layers, in channel order.
    pub sources: Vec<FeatureSource>,
}

impl FeatureLayout {
    /// Channels of the map (the sum over `sources`).
    pub fn channels(&self) -> usize {
        self.sources.iter().map(|s| s.channels).sum()
    }
}

/// One forward pass's outputs, flattened in `[batch, …]` row-major order (what
/// [`ExportableNetwork::forward_flat`] returns and the parity check compares).
#[derive(Debug, Clone, PartialEq)]
pub struct FlatOutputs {
    /// The primary output (`logits` or `reconstruction`).
    pub primary: Vec<f32>,
    /// `embedding`, `[batch, embedding_dim]`.
    pub embedding: Vec<f32>,
    /// `features`, `[batch, channels, height, width]`.
    pub features: Vec<f32>,
    /// Shape of `features`.
    pub features_shape: [usize; 4],
}

impl FlatOutputs {
    /// Flattens the three output tensors of one forward pass.
    pub fn new<const D: usize>(
        primary: Tensor<D>,
        embedding: Tensor<2>,
        features: Tensor<4>,
    ) -> Self {
        let features_shape = features.dims();
        Self {
            primary: tensor_values(primary),
            embedding: tensor_values(embedding),
            features: tensor_values(features),
            features_shape,
        }
    }
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

    /// Burn forward pass: all three outputs, flattened.
    pub fn outputs(&self, images: Tensor<4>) -> FlatOutputs {
        self.model.forward_flat(images)
    }

    /// The layers and stride of the `features` output.
    pub fn feature_layout(&self) -> FeatureLayout {
        self.model.feature_layout()
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
        self.probe(side, device).embedding.len()
    }

    /// The outputs of one all-zero image of `side` pixels (their shapes are what matter).
    fn probe(&self, side: usize, device: &Device) -> FlatOutputs {
        self.outputs(Tensor::<4>::zeros([1, 3, side, side], device))
    }

    /// The `features` output's metadata for `side`-pixel inputs, from a probe forward pass
    /// (`probe`, batch 1) checked against [`Network::feature_layout`].
    fn feature_spec(
        &self,
        probe: &FlatOutputs,
        side: usize,
    ) -> Result<FeatureMapSpec, ExportError> {
        let layout = self.feature_layout();
        let [batch, channels, height, width] = probe.features_shape;
        let cells = side.div_ceil(layout.stride);
        if batch != 1 || channels != layout.channels() || [height, width] != [cells, cells] {
            return Err(ExportError::Trace(format!(
                "the features map is {:?} for a {side}-px input; its layout (stride {}, \
                 channels {}) says [1, {}, {cells}, {cells}]",
                probe.features_shape,
                layout.stride,
                layout.channels(),
                layout.channels()
            )));
        }
        Ok(FeatureMapSpec {
            channels,
            height,
            width,
            stride: layout.stride,
            sources: layout.sources,
        })
    }
}

/// Exports `network` to a finished ModelProto: documented names (`input` → primary,
/// `embedding`, `features`), symbolic batch, metadata. `metadata.outputs`, `opset`,
/// `embedding_dim` and `features` are filled in here, from a probe forward pass at the
/// input side (checked against the traced graph's output shapes).
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
    if inputs.len() != 1 || outputs.len() != 3 {
        return Err(ExportError::Trace(format!(
            "expected 1 input and 3 outputs (primary, embedding, features), got {inputs:?} → \
             {outputs:?}"
        )));
    }
    let primary = network.kind().primary_output();
    onnxfile::rename_value(&mut model, &inputs[0], "input")?;
    onnxfile::rename_value(&mut model, &outputs[0], primary)?;
    onnxfile::rename_value(&mut model, &outputs[1], "embedding")?;
    onnxfile::rename_value(&mut model, &outputs[2], "features")?;
    onnxfile::batch_reshapes_to_copy(&mut model, TRACE_BATCH as i64)?;
    onnxfile::set_symbolic_batch(&mut model, "batch")?;

    let probe = network.probe(side, device);
    let features = network.feature_spec(&probe, side)?;
    check_traced_features(&model, &features)?;
    metadata.outputs = vec![
        primary.to_string(),
        "embedding".to_string(),
        "features".to_string(),
    ];
    metadata.opset = onnxfile::opset_version(&model).unwrap_or_default();
    metadata.embedding_dim = probe.embedding.len();
    model.producer_name = "defectkit".into();
    model.producer_version = env!("CARGO_PKG_VERSION").into();
    let sources: Vec<String> = features
        .sources
        .iter()
        .map(|s| format!("{} ({} ch, {})", s.layer, s.channels, s.resample))
        .collect();
    model.doc_string = format!(
        "defectkit {} model; input `input` [batch, 3, {side}, {side}] preprocessed as in the \
         `{}` metadata; outputs {primary}, embedding [batch, {}], features [batch, {}, {}, {}] \
         (patch features at stride {}: {}, concatenated along channels)",
        network.kind().as_str(),
        onnxfile::METADATA_KEY,
        metadata.embedding_dim,
        features.channels,
        features.height,
        features.width,
        features.stride,
        sources.join(" + ")
    );
    metadata.features = Some(features);
    onnxfile::set_metadata_prop(&mut model, onnxfile::METADATA_KEY, &metadata.to_json());
    onnxfile::set_metadata_prop(&mut model, "model_kind", network.kind().as_str());
    onnxfile::set_metadata_prop(&mut model, "classes", &metadata.classes.join(","));
    Ok((model, metadata))
}

/// The traced graph's `features` output must be `[batch, channels, height, width]` as the
/// probe forward pass measured (when burn-onnx recorded its dims).
fn check_traced_features(model: &ModelProto, spec: &FeatureMapSpec) -> Result<(), ExportError> {
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| ExportError::Trace("the traced model has no graph".into()))?;
    let Some(output) = graph.output.iter().find(|v| v.name == "features") else {
        return Err(ExportError::Trace(
            "the traced graph has no `features` output".into(),
        ));
    };
    let dims = onnxfile::value_dims(output);
    let want = [spec.channels, spec.height, spec.width].map(|d| Some(d as i64));
    if !dims.is_empty() && (dims.len() != 4 || dims[0].is_some() || dims[1..] != want) {
        return Err(ExportError::Trace(format!(
            "the traced `features` output has dims {dims:?}; the Burn forward pass gives \
             [batch, {}, {}, {}]",
            spec.channels, spec.height, spec.width
        )));
    }
    Ok(())
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
        features: None,
    };
    let (model, metadata) = export_network(&run.network, metadata, device)?;
    let onnx = out_dir.join("model.onnx");
    let json = out_dir.join("model.json");
    defectkit_core::fsutil::clear_stale_temps(out_dir);
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

/// Burn's outputs (primary, embedding, features) on the export policy's seeded probe inputs
/// ([`defectkit_core::onnx::parity::probe_input`]): the reference an exported file is checked
/// against (the CLI runs the same inputs through ONNX Runtime and compares with
/// [`defectkit_core::onnx::Parity`]). Returns the inputs (flat `[batch, C, H, W]`) too.
pub fn reference_outputs(
    network: &Network,
    input_shape: [usize; 3],
    batch: usize,
    seed: u64,
) -> (Vec<f32>, FlatOutputs) {
    let input = defectkit_core::onnx::parity::probe_input(input_shape, batch, seed);
    let [c, h, w] = input_shape;
    let device = Device::flex();
    let tensor = Tensor::<4>::from_data(TensorData::new(input.clone(), [batch, c, h, w]), &device);
    let outputs = network.outputs(tensor);
    (input, outputs)
}
