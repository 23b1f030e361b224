//! Full ResNet-18 (torchvision layout), used as the distillation teacher of model B and
//! exported with `defectkit export --teacher` to compare against its student. Training it
//! (and caching it) is [`task::prepare`]. See README.md beside this file.

pub mod task;

use std::path::Path;

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;

use crate::export::{ExportableNetwork, FeatureLayout, FlatOutputs};
use crate::models::blocks::{
    forward_layer, global_avg_pool, make_layer, BasicBlock, Stem, StemConfig,
};
use crate::models::flops::{conv, stem_macs};
use crate::models::weights::{load_torch_weights, WeightsError};
use burn_onnx::export::OnnxExporter;

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
        self.after_conv3(self.stem.forward(images))
    }

    /// [`ResNet18::forward`] plus the patch features of the exported `features` output:
    /// `layer1` average-pooled 2×2 concatenated with `layer2`, `[B, 192, H / 8, W / 8]`
    /// ([`crate::models::blocks::patch_features`]). Only export and its parity check use it.
    pub fn forward_with_patches(&self, images: Tensor<4>) -> (TeacherOutput, Tensor<4>) {
        let maps = self.stem.forward_maps(images);
        let output = self.after_conv3(maps.conv3.clone());
        (output, maps.patch_features())
    }

    /// layer3, layer4, pooling and `fc` over the conv3_x (`layer2`) map.
    fn after_conv3(&self, features: Tensor<4>) -> TeacherOutput {
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

/// FLOPs per image of the full ResNet-18.
pub fn flops_per_image(num_classes: usize, side: usize) -> u64 {
    let s8 = side.div_ceil(2).div_ceil(2).div_ceil(2);
    let s16 = s8.div_ceil(2);
    let s32 = s16.div_ceil(2);
    let l3 = conv(3, 128, 256, s16) + 3 * conv(3, 256, 256, s16) + conv(1, 128, 256, s16);
    let l4 = conv(3, 256, 512, s32) + 3 * conv(3, 512, 512, s32) + conv(1, 256, 512, s32);
    2 * (stem_macs(64, side) + l3 + l4 + (512 * num_classes) as u64)
}

impl ExportableNetwork for ResNet18 {
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
        exporter.export(&self.valid(), sample, |m: &ResNet18, x: Tensor<4>| {
            let (o, patches) = m.forward_with_patches(x);
            (o.logits, o.embedding, patches)
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn resnet18_matches_the_published_count() {
        // torchvision: 1.82 GFLOPs (MACs) at 224² → 3.64 GFLOPs.
        let f = super::flops_per_image(1000, 224) as f64 / 1e9;
        assert!((f - 3.64).abs() < 0.05, "{f}");
    }
}
