//! Model A: a small classifier made of ResNet-18's first stages (conv1, conv2_x, conv3_x)
//! plus a pooled head, trained from scratch ([`task::ClassifierTask`]). Model B's student is
//! the same network. See README.md beside this file.

pub mod task;

use std::path::{Path, PathBuf};

use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::store::ApplyResult;
use burn::tensor::activation::relu;

use burn_onnx::export::OnnxExporter;
use defectkit_core::config::schema::{CnnConfig, HeadConfig};
use defectkit_core::onnx::ModelKind;

use crate::export::{
    load_checkpoint, ExportError, ExportTarget, ExportableNetwork, FeatureLayout, FlatOutputs,
    Network, RunContext,
};
use crate::models::blocks::{global_avg_pool, Stem, StemConfig};
use crate::models::flops;
use crate::models::teacher::TORCHVISION_RESNET18_REMAP;
use crate::models::weights::{load_torch_weights, WeightsError};
use crate::models::ModelEntry;
use crate::train::{JobContext, TaskSetup, TrainError};

/// Configuration of [`Classifier`].
#[derive(Config, Debug)]
pub struct ClassifierConfig {
    /// Number of output classes.
    pub num_classes: usize,
    /// Stem width: conv1/conv2_x channels; the embedding has `2 * width` channels.
    #[config(default = 64)]
    pub width: usize,
    /// Optional hidden Linear + ReLU between the pooled embedding and the output layer.
    #[config(default = "None")]
    pub hidden: Option<usize>,
    /// Dropout probability before the output layer (0 disables it).
    #[config(default = 0.0)]
    pub dropout: f64,
}

impl ClassifierConfig {
    /// Builds the classifier on `device` (use an autodiff device to train it).
    pub fn init(&self, device: &Device) -> Classifier {
        let stem = StemConfig::new().with_width(self.width).init(device);
        let embed_dim = 2 * self.width;
        let hidden = self
            .hidden
            .map(|h| LinearConfig::new(embed_dim, h).init(device));
        let fc_in = self.hidden.unwrap_or(embed_dim);
        Classifier {
            stem,
            hidden,
            dropout: DropoutConfig::new(self.dropout).init(),
            fc: LinearConfig::new(fc_in, self.num_classes).init(device),
        }
    }
}

/// What [`Classifier::forward`] returns.
#[derive(Debug, Clone)]
pub struct ClassifierOutput {
    /// Class scores before softmax, `[B, num_classes]`.
    pub logits: Tensor<2>,
    /// Globally average-pooled conv3_x features, `[B, 2 * width]`.
    pub embedding: Tensor<2>,
    /// The conv3_x feature map, `[B, 2 * width, H / 8, W / 8]`.
    pub features: Tensor<4>,
}

/// Stem (ResNet-18 conv1…conv3_x) + global average pool + head
/// (optional hidden Linear+ReLU, dropout, Linear to `num_classes`).
///
/// Parameter paths: `stem.conv1.weight`, `stem.layer2.0.downsample.0.weight`, …,
/// `hidden.weight`, `fc.weight`.
#[derive(Module, Debug)]
pub struct Classifier {
    /// ResNet-18 conv1…conv3_x.
    pub stem: Stem,
    /// Optional hidden layer of the head.
    pub hidden: Option<Linear>,
    /// Dropout before the output layer (inactive in `valid()` and on non-autodiff devices).
    pub dropout: Dropout,
    /// Output layer.
    pub fc: Linear,
}

impl Classifier {
    /// `[B, C, H, W]` (ImageNet-normalized) → logits, embedding and conv3_x map.
    pub fn forward(&self, images: Tensor<4>) -> ClassifierOutput {
        self.head(self.stem.forward(images))
    }

    /// [`Classifier::forward`] plus the patch features of the exported `features` output:
    /// conv2_x average-pooled 2×2 concatenated with conv3_x, `[B, 3 * width, H / 8, W / 8]`
    /// ([`crate::models::blocks::patch_features`]). Only export and its parity check use it;
    /// training calls [`Classifier::forward`], which does not compute them.
    pub fn forward_with_patches(&self, images: Tensor<4>) -> (ClassifierOutput, Tensor<4>) {
        let maps = self.stem.forward_maps(images);
        let output = self.head(maps.conv3.clone());
        (output, maps.patch_features())
    }

    /// Pooling and head over the conv3_x map.
    fn head(&self, features: Tensor<4>) -> ClassifierOutput {
        let embedding = global_avg_pool(features.clone());
        let mut x = embedding.clone();
        if let Some(hidden) = &self.hidden {
            x = relu(hidden.forward(x));
        }
        let logits = self.fc.forward(self.dropout.forward(x));
        ClassifierOutput {
            logits,
            embedding,
            features,
        }
    }

    /// Initializes the stem from a torchvision ResNet-18 checkpoint (`.pth`/`.pt` or
    /// `.safetensors`, torchvision key names), e.g. ImageNet weights. Needs `width == 64`
    /// (otherwise a shape-mismatch error). Only `stem.*` is loaded: the head keeps its
    /// initialization (listed in `skipped`) and the file's `layer3`, `layer4` and `fc` are
    /// ignored (listed in `unused`).
    pub fn load_torchvision_stem(
        mut self,
        path: impl AsRef<Path>,
    ) -> Result<(Self, ApplyResult), WeightsError> {
        let result = load_torch_weights(
            &mut self,
            path.as_ref(),
            TORCHVISION_RESNET18_REMAP,
            Some(r"^stem\."),
            false,
        )?;
        if !result.missing.is_empty() {
            return Err(WeightsError::Missing(
                result.missing.into_iter().map(|(path, _)| path).collect(),
            ));
        }
        Ok((self, result))
    }
}

/// The Burn config of the classifier a model config describes (A, or B's student).
pub fn from_schema(num_classes: usize, width: usize, head: &HeadConfig) -> ClassifierConfig {
    ClassifierConfig::new(num_classes)
        .with_width(width)
        .with_hidden((head.hidden > 0).then_some(head.hidden))
        .with_dropout(head.dropout)
}

/// FLOPs per image of the classifier: stem + head (optional hidden layer).
pub fn flops_per_image(width: usize, head: &HeadConfig, num_classes: usize, side: usize) -> u64 {
    let feat = 2 * width;
    let head = match head.hidden {
        0 => feat * num_classes,
        h => feat * h + h * num_classes,
    } as u64;
    2 * (flops::stem_macs(width, side) + head)
}

/// Model A's entry in the registry ([`crate::models::visit`]).
pub struct CnnScratch;

impl ModelEntry for CnnScratch {
    type Schema = CnnConfig;
    type Task = task::ClassifierTask;

    fn setup(m: &CnnConfig, ctx: &JobContext<'_>) -> Result<TaskSetup<Self::Task>, TrainError> {
        let n = ctx.num_classes();
        let model = from_schema(n, m.width, &m.head).init(ctx.device);
        Ok(TaskSetup {
            task: task::ClassifierTask,
            parameters: model.num_params(),
            flops_per_image: flops_per_image(m.width, &m.head, n, ctx.input_side()),
            model,
        })
    }

    fn load_trained(
        m: &CnnConfig,
        run: &RunContext<'_>,
        target: ExportTarget,
    ) -> Result<(Network, PathBuf), ExportError> {
        if target == ExportTarget::Teacher {
            return Err(run.no_teacher());
        }
        load_classifier(run, ModelKind::CnnScratch, m.width, &m.head, "best.bpk")
    }
}

/// Loads a trained classifier (A, or B's student) from checkpoint `file` of a run.
pub fn load_classifier(
    run: &RunContext<'_>,
    kind: ModelKind,
    width: usize,
    head: &HeadConfig,
    file: &str,
) -> Result<(Network, PathBuf), ExportError> {
    let model = from_schema(run.classes.len(), width, head).init(run.device);
    let path = run.checkpoint(file);
    let loaded = load_checkpoint(model, &path)?;
    Ok((Network::new(kind, loaded), path))
}

impl ExportableNetwork for Classifier {
    fn forward_flat(&self, images: Tensor<4>) -> FlatOutputs {
        let (o, patches) = self.forward_with_patches(images);
        FlatOutputs::new(o.logits, o.embedding, patches)
    }

    fn feature_layout(&self) -> FeatureLayout {
        self.stem.feature_layout()
    }

    fn trace(
        &self,
        exporter: &OnnxExporter,
        sample: Tensor<4>,
    ) -> Result<burn_onnx::export::OnnxModel, burn_onnx::export::ExportError> {
        // Export a `valid()` copy: the exporter moves the module to its capture device and
        // BatchNorm running stats are shared between clones.
        exporter.export(&self.valid(), sample, |m: &Classifier, x: Tensor<4>| {
            let (o, patches) = m.forward_with_patches(x);
            (o.logits, o.embedding, patches)
        })
    }
}

#[cfg(test)]
mod tests {
    use defectkit_core::config::schema::HeadConfig;

    #[test]
    fn the_stem_costs_about_half_the_teacher() {
        // ResNet-18 spends its FLOPs evenly across stages: conv1..conv3_x is ~55 % of them
        // (while holding only ~6 % of the parameters).
        let head = HeadConfig {
            hidden: 0,
            dropout: 0.0,
        };
        let a = super::flops_per_image(64, &head, 10, 128) as f64;
        let t = crate::models::teacher::flops_per_image(10, 128) as f64;
        assert!((0.45..0.65).contains(&(a / t)), "{a} vs {t}");
    }
}
