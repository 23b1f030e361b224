//! U-Net-shaped convolutional autoencoder with a vector latent.
//!
//! Encoder: `depth` levels of [`ConvBlock`] (conv3×3-BN-ReLU ×2) at `base_width · 2^i`
//! channels, each followed by a 2×2 max pool; a bottleneck block at `base_width · 2^depth`
//! channels and `image_size / 2^depth` pixels; then global average pooling or flattening and
//! a Linear to the latent `z` (`latent_dim`). Decoder: Linear back to the bottleneck map
//! (+ ReLU, reshape), then per level: ×2 resize (nearest or bilinear) + conv3×3-BN-ReLU, an
//! optional concatenation with the encoder's skip features, and a [`ConvBlock`]; a final 1×1
//! conv maps to the input channels.
//!
//! Upsampling is resize + conv, not transposed convolution: ONNX Runtime does not quantize
//! ConvTranspose and burn-onnx does not export it. Exports as Resize + Conv.
//!
//! Output: [`OutputActivation::Identity`] (default) suits ImageNet-normalized inputs with an
//! MSE loss in normalized space; [`OutputActivation::Sigmoid`] suits inputs in `[0, 1]`.
//!
//! Skip connections let the decoder bypass the latent, so with them on the reconstruction
//! error says little about anomalies (the net can learn the identity); they are off by
//! default and meant for experiments. Model C of the experiment ([`task::AutoencoderTask`]);
//! see README.md beside this file.

pub mod task;

use std::path::PathBuf;

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::interpolate::{Interpolate2d, Interpolate2dConfig, InterpolateMode};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::{relu, sigmoid};

use burn_onnx::export::OnnxExporter;
use defectkit_core::config::schema::UnetConfig;
use defectkit_core::onnx::ModelKind;

use crate::export::{
    load_checkpoint, ExportError, ExportTarget, ExportableNetwork, FeatureLayout, FlatOutputs,
    Network, RunContext,
};
use crate::models::blocks::{conv3x3, global_avg_pool, patch_features, AVG_POOL_2X2};
use crate::models::flops::conv;
use crate::models::ModelEntry;
use crate::train::{JobContext, TaskSetup, TrainError};
use defectkit_core::onnx::FeatureSource;

/// How the decoder resizes feature maps by ×2.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum UpsampleMode {
    /// Nearest neighbour (ONNX Resize mode `nearest`).
    Nearest,
    /// Bilinear without corner alignment, like PyTorch's default (ONNX Resize mode `linear`).
    Bilinear,
}

/// How the bottleneck map becomes a vector before the latent Linear.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum LatentPooling {
    /// Flatten `[C, h, w]`: keeps spatial layout; the Linear has `C·h·w` inputs.
    Flatten,
    /// Global average pool to `[C]`: translation-invariant, far fewer parameters.
    GlobalAverage,
}

/// Activation applied to the reconstruction.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum OutputActivation {
    /// No activation: for normalized inputs (use MSE in normalized space).
    Identity,
    /// Sigmoid: for inputs scaled to `[0, 1]`.
    Sigmoid,
}

/// Configuration of [`UNet`].
#[derive(Config, Debug)]
pub struct UNetConfig {
    /// Input height = width in pixels; must be divisible by `2^depth`.
    pub image_size: usize,
    /// Input (and output) channels.
    #[config(default = 3)]
    pub in_channels: usize,
    /// Channels of the first encoder level; level `i` has `base_width · 2^i`.
    #[config(default = 32)]
    pub base_width: usize,
    /// Number of ×2 down/up-sampling levels (1..=6).
    #[config(default = 4)]
    pub depth: usize,
    /// Concatenate encoder features into the decoder (see the module docs).
    #[config(default = false)]
    pub skip_connections: bool,
    /// Size of the latent vector `z`.
    #[config(default = 128)]
    pub latent_dim: usize,
    /// Bottleneck map → vector.
    #[config(default = "LatentPooling::Flatten")]
    pub latent_pooling: LatentPooling,
    /// Decoder resize mode.
    #[config(default = "UpsampleMode::Nearest")]
    pub upsample: UpsampleMode,
    /// Activation of the reconstruction.
    #[config(default = "OutputActivation::Identity")]
    pub output: OutputActivation,
}

impl UNetConfig {
    /// Builds the autoencoder on `device`.
    ///
    /// # Panics
    /// If `depth` is outside `1..=6` or `image_size` is not a positive multiple of `2^depth`.
    pub fn init(&self, device: &Device) -> UNet {
        assert!(
            (1..=6).contains(&self.depth),
            "U-Net depth must be in 1..=6, got {}",
            self.depth
        );
        let factor = 1usize << self.depth;
        assert!(
            self.image_size >= factor && self.image_size % factor == 0,
            "U-Net image_size {} must be a positive multiple of 2^depth = {factor}",
            self.image_size
        );
        let channels: Vec<usize> = (0..=self.depth).map(|i| self.base_width << i).collect();
        let bottleneck_channels = channels[self.depth];
        let bottleneck_size = self.image_size / factor;

        let encoder = (0..self.depth)
            .map(|i| {
                let c_in = if i == 0 {
                    self.in_channels
                } else {
                    channels[i - 1]
                };
                ConvBlock::new(c_in, channels[i], device)
            })
            .collect();
        let bottleneck = ConvBlock::new(channels[self.depth - 1], bottleneck_channels, device);

        let pooled = match self.latent_pooling {
            LatentPooling::Flatten => bottleneck_channels * bottleneck_size * bottleneck_size,
            LatentPooling::GlobalAverage => bottleneck_channels,
        };
        let unflattened = bottleneck_channels * bottleneck_size * bottleneck_size;

        let decoder = (0..self.depth)
            .rev()
            .map(|i| {
                UpBlock::new(
                    channels[i + 1],
                    channels[i],
                    self.skip_connections,
                    self.upsample,
                    device,
                )
            })
            .collect();

        UNet {
            encoder,
            pool: MaxPool2dConfig::new([2, 2]).init(),
            bottleneck,
            to_latent: LinearConfig::new(pooled, self.latent_dim).init(device),
            from_latent: LinearConfig::new(self.latent_dim, unflattened).init(device),
            decoder,
            head: Conv2dConfig::new([channels[0], self.in_channels], [1, 1]).init(device),
            bottleneck_shape: [bottleneck_channels, bottleneck_size, bottleneck_size],
            skip_connections: self.skip_connections,
            latent_pooling: self.latent_pooling,
            output: self.output,
        }
    }
}

/// conv3×3-BN-ReLU ×2 at constant resolution.
#[derive(Module, Debug)]
pub struct ConvBlock {
    /// First convolution (`in` → `out` channels).
    pub conv1: Conv2d,
    /// Batch norm after `conv1`.
    pub bn1: BatchNorm,
    /// Second convolution (`out` → `out`).
    pub conv2: Conv2d,
    /// Batch norm after `conv2`.
    pub bn2: BatchNorm,
}

impl ConvBlock {
    /// Creates a block mapping `in_channels` to `out_channels`.
    pub fn new(in_channels: usize, out_channels: usize, device: &Device) -> Self {
        Self {
            conv1: conv3x3(in_channels, out_channels, 1, device),
            bn1: BatchNormConfig::new(out_channels).init(device),
            conv2: conv3x3(out_channels, out_channels, 1, device),
            bn2: BatchNormConfig::new(out_channels).init(device),
        }
    }

    /// `[B, C_in, H, W]` → `[B, C_out, H, W]`.
    pub fn forward(&self, input: Tensor<4>) -> Tensor<4> {
        let x = relu(self.bn1.forward(self.conv1.forward(input)));
        relu(self.bn2.forward(self.conv2.forward(x)))
    }

    /// Output channels.
    pub fn out_channels(&self) -> usize {
        let [channels] = self.bn2.gamma.shape().dims();
        channels
    }
}

/// Decoder level: ×2 resize + conv3×3-BN-ReLU, optional skip concatenation, [`ConvBlock`].
#[derive(Module, Debug)]
pub struct UpBlock {
    /// ×2 resize.
    pub upsample: Interpolate2d,
    /// Convolution after the resize (`in` → `out` channels).
    pub conv: Conv2d,
    /// Batch norm after `conv`.
    pub bn: BatchNorm,
    /// Block after the (optional) skip concatenation.
    pub block: ConvBlock,
}

impl UpBlock {
    /// Creates a level mapping `in_channels` at `H` to `out_channels` at `2H`.
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        skip: bool,
        mode: UpsampleMode,
        device: &Device,
    ) -> Self {
        let mode = match mode {
            UpsampleMode::Nearest => InterpolateMode::Nearest,
            UpsampleMode::Bilinear => InterpolateMode::Linear,
        };
        let block_in = if skip { 2 * out_channels } else { out_channels };
        Self {
            upsample: Interpolate2dConfig::new()
                .with_scale_factor(Some([2.0, 2.0]))
                .with_mode(mode)
                .with_align_corners(false)
                .init(),
            conv: conv3x3(in_channels, out_channels, 1, device),
            bn: BatchNormConfig::new(out_channels).init(device),
            block: ConvBlock::new(block_in, out_channels, device),
        }
    }

    /// `[B, C_in, H, W]` (+ skip `[B, C_out, 2H, 2W]`) → `[B, C_out, 2H, 2W]`.
    pub fn forward(&self, input: Tensor<4>, skip: Option<Tensor<4>>) -> Tensor<4> {
        let x = relu(
            self.bn
                .forward(self.conv.forward(self.upsample.forward(input))),
        );
        let x = match skip {
            Some(skip) => Tensor::cat(vec![x, skip], 1),
            None => x,
        };
        self.block.forward(x)
    }
}

/// What [`UNet::forward`] returns.
#[derive(Debug, Clone)]
pub struct UNetOutput {
    /// Reconstruction, same shape as the input.
    pub reconstruction: Tensor<4>,
    /// Latent vector `z`, `[B, latent_dim]`.
    pub embedding: Tensor<2>,
}

/// U-Net autoencoder (see the module docs).
#[derive(Module, Debug)]
pub struct UNet {
    /// Encoder levels, shallowest first.
    pub encoder: Vec<ConvBlock>,
    /// 2×2 max pool after each encoder level.
    pub pool: MaxPool2d,
    /// Block at the lowest resolution.
    pub bottleneck: ConvBlock,
    /// Pooled/flattened bottleneck → `z`.
    pub to_latent: Linear,
    /// `z` → flattened bottleneck map.
    pub from_latent: Linear,
    /// Decoder levels, deepest first.
    pub decoder: Vec<UpBlock>,
    /// Final 1×1 convolution to the input channels.
    pub head: Conv2d,
    /// `[C, h, w]` of the bottleneck map.
    pub bottleneck_shape: [usize; 3],
    /// Whether the decoder concatenates encoder features.
    pub skip_connections: bool,
    /// Bottleneck map → vector.
    #[module(skip)]
    pub latent_pooling: LatentPooling,
    /// Activation of the reconstruction.
    #[module(skip)]
    pub output: OutputActivation,
}

impl UNet {
    /// `[B, C, S, S]` with `S` = the configured `image_size` → reconstruction and `z`.
    pub fn forward(&self, images: Tensor<4>) -> UNetOutput {
        self.forward_inner(images, false).0
    }

    /// [`UNet::forward`] plus the patch features of the exported `features` output: the
    /// last two encoder levels' block outputs (before their max pool), level `depth − 2`
    /// average-pooled 2×2 and concatenated with level `depth − 1`,
    /// `[B, 3 · base_width · 2^(depth−2), S / 2^(depth−1), S / 2^(depth−1)]`; with depth 1,
    /// level 0's output alone ([`UNet::feature_layout`] names them). Only export and its
    /// parity check use it; training calls [`UNet::forward`], which does not compute them.
    pub fn forward_with_patches(&self, images: Tensor<4>) -> (UNetOutput, Tensor<4>) {
        let (output, patches) = self.forward_inner(images, true);
        (output, patches.expect("patch features were requested"))
    }

    /// The encoder levels the `features` output is made of, in channel order: the last
    /// two (`encoder.{depth−2}` pooled 2×2, `encoder.{depth−1}`), or `encoder.0` alone for
    /// depth 1, at stride `2^(depth−1)`.
    pub fn feature_layout(&self) -> FeatureLayout {
        let depth = self.encoder.len();
        let first = depth.saturating_sub(2);
        let sources = (first..depth)
            .map(|i| FeatureSource {
                layer: format!("encoder.{i}"),
                channels: self.encoder[i].out_channels(),
                resample: if i + 1 < depth {
                    AVG_POOL_2X2.into()
                } else {
                    "none".into()
                },
            })
            .collect();
        FeatureLayout {
            stride: 1 << (depth - 1),
            sources,
        }
    }

    /// The forward pass; with `patches`, also the patch features.
    fn forward_inner(&self, images: Tensor<4>, patches: bool) -> (UNetOutput, Option<Tensor<4>>) {
        let depth = self.encoder.len();
        let mut skips = Vec::with_capacity(depth);
        let mut levels = Vec::with_capacity(2);
        let mut x = images;
        for (i, block) in self.encoder.iter().enumerate() {
            let features = block.forward(x);
            x = self.pool.forward(features.clone());
            if patches && i + 2 >= depth {
                levels.push(features.clone());
            }
            if self.skip_connections {
                skips.push(features);
            }
        }
        let patch_map = patches.then(|| {
            let coarse = levels.pop().expect("the encoder has at least one level");
            match levels.pop() {
                Some(fine) => patch_features(fine, coarse),
                None => coarse,
            }
        });
        let x = self.bottleneck.forward(x);
        let pooled = match self.latent_pooling {
            LatentPooling::Flatten => x.flatten(1, 3),
            LatentPooling::GlobalAverage => global_avg_pool(x),
        };
        let embedding = self.to_latent.forward(pooled);

        let [c, h, w] = self.bottleneck_shape;
        let x = relu(self.from_latent.forward(embedding.clone()));
        let mut x: Tensor<4> = x.reshape([-1, c as i64, h as i64, w as i64]);
        for up in &self.decoder {
            x = up.forward(x, skips.pop());
        }
        let x = self.head.forward(x);
        let reconstruction = match self.output {
            OutputActivation::Identity => x,
            OutputActivation::Sigmoid => sigmoid(x),
        };
        let output = UNetOutput {
            reconstruction,
            embedding,
        };
        (output, patch_map)
    }
}

/// The Burn config of the U-Net a model config describes, for `side`-pixel inputs.
pub fn from_schema(m: &UnetConfig, side: usize) -> UNetConfig {
    UNetConfig::new(side)
        .with_depth(m.depth)
        .with_base_width(m.base_width)
        .with_skip_connections(m.skip_connections)
        .with_latent_dim(m.latent_dim)
}

/// Refuses a config the U-Net cannot be built for: the input side must be a multiple of
/// 2^depth, and SSIM needs at least 7 px.
pub fn check_schema(m: &UnetConfig, side: usize) -> Result<(), TrainError> {
    let depth = m.depth;
    if !(1..=6).contains(&depth) {
        return Err(TrainError::Config(format!(
            "model.depth must be 1..=6, got {depth}"
        )));
    }
    let f = 1usize << depth;
    if side < f || side % f != 0 {
        return Err(TrainError::Config(format!(
            "the U-Net needs an input size that is a multiple of 2^depth = {f}; got {side} \
             (set data.preprocess.resize/center_crop or model.depth)"
        )));
    }
    if m.ssim_weight > 0.0 && side < 7 {
        return Err(TrainError::Config(
            "model.ssim_weight needs images of at least 7 px".into(),
        ));
    }
    Ok(())
}

/// FLOPs per image of the U-Net autoencoder (flattened latent unless `global_pool`).
pub fn flops_per_image(
    side: usize,
    depth: usize,
    base_width: usize,
    latent_dim: usize,
    skip: bool,
    global_pool: bool,
) -> u64 {
    let ch: Vec<usize> = (0..=depth).map(|i| base_width << i).collect();
    let mut macs = 0u64;
    for i in 0..depth {
        let c_in = if i == 0 { 3 } else { ch[i - 1] };
        let s = side >> i;
        macs += conv(3, c_in, ch[i], s) + conv(3, ch[i], ch[i], s);
    }
    let sb = side >> depth;
    macs += conv(3, ch[depth - 1], ch[depth], sb) + conv(3, ch[depth], ch[depth], sb);
    let unflat = ch[depth] * sb * sb;
    let pooled = if global_pool { ch[depth] } else { unflat };
    macs += (pooled * latent_dim + latent_dim * unflat) as u64;
    for i in (0..depth).rev() {
        let s = side >> i;
        let block_in = if skip { 2 * ch[i] } else { ch[i] };
        macs +=
            conv(3, ch[i + 1], ch[i], s) + conv(3, block_in, ch[i], s) + conv(3, ch[i], ch[i], s);
    }
    macs += conv(1, ch[0], 3, side);
    2 * macs
}

/// Model C's entry in the registry ([`crate::models::visit`]).
pub struct UnetAe;

impl ModelEntry for UnetAe {
    type Schema = UnetConfig;
    type Task = task::AutoencoderTask;

    fn setup(m: &UnetConfig, ctx: &JobContext<'_>) -> Result<TaskSetup<Self::Task>, TrainError> {
        let side = ctx.input_side();
        check_schema(m, side)?;
        let model = from_schema(m, side).init(ctx.device);
        let std = ctx.cfg.data.preprocess.std;
        Ok(TaskSetup {
            task: task::AutoencoderTask {
                ssim_weight: m.ssim_weight,
                data_range: 3.0 / (std[0] + std[1] + std[2]) as f64,
            },
            parameters: model.num_params(),
            flops_per_image: flops_per_image(
                side,
                m.depth,
                m.base_width,
                m.latent_dim,
                m.skip_connections,
                false,
            ),
            model,
        })
    }

    fn load_trained(
        m: &UnetConfig,
        run: &RunContext<'_>,
        target: ExportTarget,
    ) -> Result<(Network, PathBuf), ExportError> {
        if target == ExportTarget::Teacher {
            return Err(run.no_teacher());
        }
        let model = from_schema(m, run.input_side()).init(run.device);
        let path = run.checkpoint("best.bpk");
        let loaded = load_checkpoint(model, &path)?;
        Ok((Network::new(ModelKind::UnetAe, loaded), path))
    }
}

impl ExportableNetwork for UNet {
    fn forward_flat(&self, images: Tensor<4>) -> FlatOutputs {
        let (o, patches) = self.forward_with_patches(images);
        FlatOutputs::new(o.reconstruction, o.embedding, patches)
    }

    fn feature_layout(&self) -> FeatureLayout {
        UNet::feature_layout(self)
    }

    fn trace(
        &self,
        exporter: &OnnxExporter,
        sample: Tensor<4>,
    ) -> Result<burn_onnx::export::OnnxModel, burn_onnx::export::ExportError> {
        exporter.export(&self.valid(), sample, |m: &UNet, x: Tensor<4>| {
            let (o, patches) = m.forward_with_patches(x);
            (o.reconstruction, o.embedding, patches)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_features_are_the_last_two_encoder_levels() {
        let device = Device::flex();
        let x = Tensor::<4>::random(
            [2, 3, 32, 32],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        for depth in 1..=4 {
            let net = UNetConfig::new(32)
                .with_depth(depth)
                .with_base_width(4)
                .with_latent_dim(8)
                .init(&device);
            let layout = net.feature_layout();
            let (out, patches) = net.forward_with_patches(x.clone());
            let stride = 1usize << (depth - 1);
            let channels = if depth == 1 {
                4
            } else {
                3 * (4 << (depth - 2))
            };
            assert_eq!(layout.stride, stride, "depth {depth}");
            assert_eq!(layout.channels(), channels, "depth {depth}");
            assert_eq!(
                layout.sources.last().unwrap().layer,
                format!("encoder.{}", depth - 1)
            );
            assert_eq!(
                patches.dims(),
                [2, channels, 32 / stride, 32 / stride],
                "depth {depth}"
            );
            let plain = net.forward(x.clone());
            assert_eq!(
                crate::export::tensor_values(out.embedding),
                crate::export::tensor_values(plain.embedding)
            );
        }
    }
}
