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
        .and_then(|cfg: Config| cfg.validate().map(|()| cfg))
    }

    /// The checks serde cannot make: every numeric range, the preprocessing spec, and the
    /// detector, cluster and quantize groups' own rules. Run on every composed config (so
    /// every verb refuses `trainer.batch_size=0` before any work starts) and on every config
    /// read back from a run dir. The error names the key, its value and what is allowed.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut rules = Rules::default();
        let d = &self.data;
        rules.range("data.val_fraction", d.val_fraction, 0.0, false, 1.0, false);
        if let Err(e) = d.preprocess.validate() {
            rules.fail("data.preprocess", format!("{e}"));
        }
        match &self.model {
            ModelConfig::CnnScratch(m) => {
                rules.positive("model.width", m.width);
                rules.head(&m.head);
            }
            ModelConfig::CnnDistilled(m) => {
                rules.positive("model.width", m.width);
                rules.head(&m.head);
                rules.range("model.distill.alpha", m.distill.alpha, 0.0, true, 1.0, true);
                rules.range(
                    "model.distill.temperature",
                    m.distill.temperature,
                    0.0,
                    false,
                    f64::INFINITY,
                    false,
                );
                rules.non_negative("model.distill.beta", m.distill.beta);
                if m.teacher.arch != "resnet18" {
                    rules.fail(
                        "model.teacher.arch",
                        format!("is {:?}; allowed: \"resnet18\"", m.teacher.arch),
                    );
                }
                rules.positive("model.teacher.train_epochs", m.teacher.train_epochs);
            }
            ModelConfig::UnetAe(m) => {
                rules.positive("model.depth", m.depth);
                if m.depth > 8 {
                    rules.fail("model.depth", format!("is {}; allowed: 1 to 8", m.depth));
                }
                rules.positive("model.base_width", m.base_width);
                rules.positive("model.latent_dim", m.latent_dim);
                rules.range("model.ssim_weight", m.ssim_weight, 0.0, true, 1.0, true);
            }
        }
        let t = &self.trainer;
        rules.positive("trainer.max_epochs", t.max_epochs);
        rules.positive("trainer.batch_size", t.batch_size);
        // 0 is allowed: a frozen model is a legitimate plateau check.
        rules.non_negative("trainer.lr", t.lr);
        rules.non_negative("trainer.weight_decay", t.weight_decay);
        if let Some(clip) = t.gradient_clip {
            rules.range(
                "trainer.gradient_clip",
                clip,
                0.0,
                false,
                f64::INFINITY,
                false,
            );
        }
        if t.early_stopping.monitor.trim().is_empty() {
            rules.fail(
                "trainer.early_stopping.monitor",
                "is empty; allowed: a metric name such as val/loss".into(),
            );
        }
        rules.non_negative(
            "trainer.early_stopping.min_delta",
            t.early_stopping.min_delta,
        );
        if let LoggerConfig::Wandb { mode, .. } = &self.logger {
            if !["online", "offline", "disabled"].contains(&mode.as_str()) {
                rules.fail(
                    "logger.mode",
                    format!("is {mode:?}; allowed: online, offline or disabled"),
                );
            }
        }
        for (group, result) in [
            ("detector", self.detector.validate()),
            ("cluster", self.cluster.validate()),
            ("quantize", self.quantize.validate()),
        ] {
            if let Err(e) = result {
                rules.fail(group, e);
            }
        }
        rules.finish()
    }
}

/// Collects every broken rule, so that one run names them all.
#[derive(Default)]
struct Rules {
    broken: Vec<(String, String)>,
}

impl Rules {
    fn fail(&mut self, path: &str, reason: String) {
        self.broken.push((path.to_string(), reason));
    }

    fn positive(&mut self, path: &str, v: usize) {
        if v == 0 {
            self.fail(path, "is 0; allowed: an integer >= 1".into());
        }
    }

    fn non_negative(&mut self, path: &str, v: f64) {
        self.range(path, v, 0.0, true, f64::INFINITY, false);
    }

    /// `v` finite and within (or at, where inclusive) the bounds.
    fn range(&mut self, path: &str, v: f64, lo: f64, lo_inc: bool, hi: f64, hi_inc: bool) {
        let above = if lo_inc { v >= lo } else { v > lo };
        let below = if hi_inc { v <= hi } else { v < hi };
        if !(v.is_finite() && above && below) {
            let lo_s = format!("{}{lo}", if lo_inc { ">= " } else { "> " });
            let allowed = if hi.is_infinite() {
                format!("a finite number {lo_s}")
            } else {
                format!(
                    "a number {lo_s} and {}{hi}",
                    if hi_inc { "<= " } else { "< " }
                )
            };
            self.fail(path, format!("is {v}; allowed: {allowed}"));
        }
    }

    fn head(&mut self, head: &HeadConfig) {
        self.range("model.head.dropout", head.dropout, 0.0, true, 1.0, false);
    }

    fn finish(self) -> Result<(), ConfigError> {
        let mut broken = self.broken.into_iter();
        let Some((path, reason)) = broken.next() else {
            return Ok(());
        };
        let more: Vec<String> = broken.map(|(p, r)| format!("\n  also {p}: {r}")).collect();
        Err(ConfigError::Schema {
            path,
            reason: format!("{reason}{}", more.concat()),
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
