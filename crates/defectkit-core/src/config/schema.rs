//! The typed configuration: what the composed YAML tree must look like once resolved.
//!
//! Every struct rejects unknown keys, so a typo such as `trainer.lerning_rate` in a config
//! file fails loudly, naming the key, instead of being silently ignored.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_norway::Value;

pub use super::cluster::ClusterConfig;
pub use super::detector::DetectorConfig;
use super::error::ConfigError;
pub use super::quantize::QuantizeConfig;
use crate::data::synth::SynthOptions;
use crate::data::PreprocessSpec;
use crate::onnx::ModelKind;

/// The whole job configuration (`conf/config.yaml` and its groups).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Free-form name of the task, recorded in run summaries.
    pub task_name: String,
    /// Where things live.
    pub paths: PathsConfig,
    /// The data set (`data=` group).
    pub data: DataConfig,
    /// The model and its hyperparameters (`model=` group).
    pub model: ModelConfig,
    /// Optimisation, early stopping, device (`trainer=` group).
    pub trainer: TrainerConfig,
    /// Where metrics go (`logger=` group).
    pub logger: LoggerConfig,
    /// The anomaly detector `defectkit detect` fits (`detector=` group); absent from the
    /// saved configs of runs made before it existed.
    #[serde(default)]
    pub detector: DetectorConfig,
    /// The outlier analysis `defectkit cluster` runs (`cluster=` group); absent from older
    /// runs' saved configs.
    #[serde(default)]
    pub cluster: ClusterConfig,
    /// How `defectkit quantize` calibrates and quantizes (`quantize=` group); absent from
    /// older runs' saved configs.
    #[serde(default)]
    pub quantize: QuantizeConfig,
}

/// Project folders.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathsConfig {
    /// Project root (defaults to the working directory, or `$DEFECTKIT_ROOT`).
    pub root_dir: PathBuf,
    /// Where data set roots live.
    pub data_dir: PathBuf,
    /// Where exported models go.
    pub export_dir: PathBuf,
}

/// Which reader a data set needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataKind {
    /// Real MVTec AD.
    Mvtec,
    /// The generated MVTec-like set (same layout).
    Synthetic,
}

/// A data set in the MVTec layout and how it is split and preprocessed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Reader kind.
    pub kind: DataKind,
    /// Data set root (`<root>/<class>/train/good`, ...).
    pub root: PathBuf,
    /// Categories to use; `null` = every category found.
    pub classes: Option<Vec<String>>,
    /// Fraction of each class's train/good images held out for validation.
    pub val_fraction: f64,
    /// Seed of the validation split (independent of the training seed).
    pub split_seed: u64,
    /// Treat corrupt images and missing masks as errors instead of warnings.
    pub strict: bool,
    /// The one preprocessing spec, also written into exported models.
    pub preprocess: PreprocessSpec,
    /// Keep decoded, resized images in memory across epochs.
    pub cache: bool,
    /// How the synthetic set is generated (`data synth`); absent for real data sets.
    #[serde(default)]
    pub synth: Option<SynthOptions>,
}

/// Model hyperparameters, one variant per model of the experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ModelConfig {
    /// Model A: ResNet-18's conv1..conv3_x + FC head, from scratch.
    CnnScratch(CnnConfig),
    /// Model B: the same network distilled from a ResNet-18 teacher.
    CnnDistilled(DistilledConfig),
    /// Model C: U-Net autoencoder with a latent vector.
    UnetAe(UnetConfig),
}

impl ModelConfig {
    /// Which model this is: [`ModelKind`] is the one spelling of the model names (the
    /// `kind:` tag here, `conf/model/<kind>.yaml`, run summaries, ONNX metadata).
    pub fn kind(&self) -> ModelKind {
        match self {
            ModelConfig::CnnScratch(_) => ModelKind::CnnScratch,
            ModelConfig::CnnDistilled(_) => ModelKind::CnnDistilled,
            ModelConfig::UnetAe(_) => ModelKind::UnetAe,
        }
    }
}

/// The small CNN (ResNet-18 stem: conv1, conv2_x, conv3_x) and its classifier head.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CnnConfig {
    /// Channels of conv1 and conv2_x; conv3_x has twice as many (ResNet-18: 64).
    pub width: usize,
    /// The classifier head.
    pub head: HeadConfig,
}

/// Fully connected classifier head over the pooled conv3_x features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadConfig {
    /// Hidden units of an optional hidden layer; 0 = a single linear layer.
    pub hidden: usize,
    /// Dropout before the last layer.
    pub dropout: f64,
}

/// Model B: the CNN plus distillation settings and its teacher.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistilledConfig {
    /// Channels of conv1 and conv2_x (conv3_x twice as many).
    pub width: usize,
    /// The classifier head.
    pub head: HeadConfig,
    /// Loss weights.
    pub distill: DistillConfig,
    /// The teacher network.
    pub teacher: TeacherConfig,
}

/// Loss = α·T²·KL(teacher/T ‖ student/T) + (1−α)·CE + β·MSE(conv3_x features).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistillConfig {
    /// Weight of the soft-target term.
    pub alpha: f64,
    /// Softmax temperature T.
    pub temperature: f64,
    /// Weight of the feature-matching term.
    pub beta: f64,
}

/// The ResNet-18 teacher.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeacherConfig {
    /// Architecture (only `resnet18`).
    pub arch: String,
    /// torchvision `resnet18` state dict (`.pth` or `.safetensors`); `null` trains a
    /// teacher here first.
    pub weights: Option<PathBuf>,
    /// Epochs for training the teacher when no weights are given.
    pub train_epochs: usize,
}

/// Model C: the U-Net autoencoder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnetConfig {
    /// Number of down/up levels.
    pub depth: usize,
    /// Channels at the first level (doubling per level).
    pub base_width: usize,
    /// Encoder-decoder skip connections.
    pub skip_connections: bool,
    /// Size of the latent vector z (the embedding).
    pub latent_dim: usize,
    /// Weight of an SSIM term added to the MSE reconstruction loss (0 = MSE only).
    pub ssim_weight: f64,
}

/// Optimiser choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    /// Adam.
    Adam,
    /// Adam with decoupled weight decay.
    Adamw,
    /// SGD with momentum.
    Sgd,
}

/// Learning-rate schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LrSchedule {
    /// Constant learning rate.
    Constant,
    /// Cosine decay to zero over `max_epochs`.
    Cosine,
}

/// Whether the monitored metric should go down or up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MonitorMode {
    /// Lower is better (losses).
    Min,
    /// Higher is better (accuracy).
    Max,
}

/// Early stopping on a validation metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EarlyStoppingConfig {
    /// Metric name, e.g. `val/loss`.
    pub monitor: String,
    /// Direction of improvement.
    pub mode: MonitorMode,
    /// Epochs without improvement before stopping.
    pub patience: usize,
    /// Smallest change that counts as improvement.
    pub min_delta: f64,
}

/// Compute device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Device {
    /// CPU (Burn's flex backend).
    Cpu,
    /// GPU through wgpu (feature `gpu`).
    Wgpu,
    /// GPU through CUDA (feature `gpu`).
    Cuda,
}

/// Optimisation settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainerConfig {
    /// Upper bound on epochs (early stopping may end sooner).
    pub max_epochs: usize,
    /// Images per step.
    pub batch_size: usize,
    /// Learning rate.
    pub lr: f64,
    /// Weight decay.
    pub weight_decay: f64,
    /// Optimiser.
    pub optimizer: OptimizerKind,
    /// Learning-rate schedule.
    pub lr_schedule: LrSchedule,
    /// Clip gradients to this global norm; `null` = no clipping.
    pub gradient_clip: Option<f64>,
    /// Seed for initialisation and shuffling.
    pub seed: u64,
    /// Early stopping.
    pub early_stopping: EarlyStoppingConfig,
    /// Compute device.
    pub device: Device,
    /// Image-decoding threads (0 = all cores).
    pub workers: usize,
    /// Resume from a checkpoint path or `last`; `null` starts fresh.
    pub resume: Option<String>,
}

/// Metric logging; metrics.jsonl/csv are always written in the run dir.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum LoggerConfig {
    /// Only the run dir's metric files.
    Csv {},
    /// Also Weights & Biases, through the official Python SDK as a sidecar.
    Wandb {
        /// W&B project.
        project: String,
        /// W&B entity (team or user); `null` = the default.
        entity: Option<String>,
        /// `online` or `offline` (offline runs can be synced later with `wandb sync`).
        mode: String,
        /// Run tags.
        tags: Vec<String>,
        /// Run group (e.g. the sweep).
        group: Option<String>,
    },
}

impl Config {
    /// Deserialize a resolved tree, naming the offending key on failure.
    pub fn from_tree(tree: Value) -> Result<Self, ConfigError> {
        serde_path_to_error::deserialize(tree).map_err(|e| {
            let path = e.path().to_string();
            let reason = e.inner().to_string();
            let reason = if reason.contains("unknown field") {
                format!(
                    "{reason}\n(this key is not part of defectkit's configuration; check its spelling \
                     or remove it)"
                )
            } else {
                reason
            };
            ConfigError::Schema {
                path: if path == "." { "<root>".to_string() } else { path },
                reason,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_model_yaml_is_named_by_its_kind() {
        let dir = crate::paths::source_root().join("conf/model");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let model: ModelConfig =
                serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let stem = path.file_stem().unwrap().to_str().unwrap();
            assert_eq!(model.kind().as_str(), stem, "{}", path.display());
            seen += 1;
        }
        assert!(seen >= 3, "A, B and C each have a yaml; found {seen}");
    }
}
