//! Model A: a small classifier made of ResNet-18's first stages plus a pooled head.

use std::path::Path;

use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::store::ApplyResult;
use burn::tensor::activation::relu;

use super::resnet::{global_avg_pool, Stem, StemConfig};
use super::teacher::TORCHVISION_RESNET18_REMAP;
use super::weights::{load_torch_weights, WeightsError};

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
        let features = self.stem.forward(images);
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
