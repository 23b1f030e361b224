//! Full ResNet-18 (torchvision layout), used as the distillation teacher.

use std::path::Path;

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;

use super::resnet::{forward_layer, global_avg_pool, make_layer, BasicBlock, Stem, StemConfig};
use super::weights::{load_torch_weights, WeightsError};

/// Key remapping from torchvision's ResNet state dict to [`ResNet18`]'s paths: the first
/// stages live under `stem.`; `layer3`, `layer4` and `fc` keep their names.
pub const TORCHVISION_RESNET18_REMAP: &[(&str, &str)] =
    &[(r"^(conv1|bn1|layer1|layer2)\.", "stem.$1.")];

/// Configuration of [`ResNet18`].
#[derive(Config, Debug)]
pub struct ResNet18Config {
    /// Output classes of `fc` (1000 for ImageNet checkpoints).
    #[config(default = 1000)]
    pub num_classes: usize,
}

impl ResNet18Config {
    /// Builds a randomly initialized ResNet-18 on `device`.
    pub fn init(&self, device: &Device) -> ResNet18 {
        ResNet18 {
            stem: StemConfig::new().with_width(64).init(device),
            layer3: make_layer(128, 256, 2, 2, device),
            layer4: make_layer(256, 512, 2, 2, device),
            fc: LinearConfig::new(512, self.num_classes).init(device),
        }
    }
}

/// What [`ResNet18::forward`] returns.
#[derive(Debug, Clone)]
pub struct TeacherOutput {
    /// Class scores before softmax, `[B, num_classes]`.
    pub logits: Tensor<2>,
    /// Globally average-pooled layer4 features, `[B, 512]`.
    pub embedding: Tensor<2>,
    /// The conv3_x map (torchvision `layer2` output), `[B, 128, H / 8, W / 8]`: what a
    /// student's conv3_x is matched against.
    pub features: Tensor<4>,
}

/// torchvision's `resnet18`: [`Stem`] (conv1…layer2) + layer3 (256) + layer4 (512) +
/// global average pool + `fc`.
///
/// Parameter paths equal torchvision's keys with `stem.` prefixed to `conv1`, `bn1`,
/// `layer1` and `layer2` (see [`TORCHVISION_RESNET18_REMAP`]).
#[derive(Module, Debug)]
pub struct ResNet18 {
    /// conv1, bn1, maxpool, layer1, layer2.
    pub stem: Stem,
    /// conv4_x: two blocks at 256 channels, stride 2.
    pub layer3: Vec<BasicBlock>,
    /// conv5_x: two blocks at 512 channels, stride 2.
    pub layer4: Vec<BasicBlock>,
    /// Classifier.
    pub fc: Linear,
}

impl ResNet18 {
    /// `[B, 3, H, W]` (ImageNet-normalized) → logits, pooled layer4 embedding, layer2 map.
    pub fn forward(&self, images: Tensor<4>) -> TeacherOutput {
        let features = self.stem.forward(images);
        let x = forward_layer(&self.layer3, features.clone());
        let x = forward_layer(&self.layer4, x);
        let embedding = global_avg_pool(x);
        TeacherOutput {
            logits: self.fc.forward(embedding.clone()),
            embedding,
            features,
        }
    }

    /// Loads a torchvision ResNet-18 state dict (`.pth`/`.pt` or `.safetensors` with
    /// torchvision key names) into this model. Every parameter must be present; the file's
    /// `fc` must have this model's class count. `num_batches_tracked` keys are ignored.
    pub fn load_torchvision(mut self, path: impl AsRef<Path>) -> Result<Self, WeightsError> {
        let result = load_torch_weights(
            &mut self,
            path.as_ref(),
            TORCHVISION_RESNET18_REMAP,
            None,
            false,
        )?;
        if !result.missing.is_empty() {
            return Err(WeightsError::Missing(
                result.missing.into_iter().map(|(path, _)| path).collect(),
            ));
        }
        Ok(self)
    }
}

/// Builds a ResNet-18 with `num_classes` outputs on `device` and loads torchvision weights
/// from `path` (see [`ResNet18::load_torchvision`]).
pub fn load_torchvision(
    path: impl AsRef<Path>,
    num_classes: usize,
    device: &Device,
) -> Result<ResNet18, WeightsError> {
    ResNet18Config::new()
        .with_num_classes(num_classes)
        .init(device)
        .load_torchvision(path)
}
