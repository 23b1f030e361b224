//! ResNet building blocks shared by the student classifier and the ResNet-18 teacher.
//!
//! Field names mirror torchvision's `torchvision.models.resnet` so that a module's parameter
//! paths are torchvision's state-dict keys: `conv1.weight`, `bn1.running_mean`,
//! `layer1.0.conv1.weight`, `layer2.0.downsample.0.weight`, `layer2.0.downsample.1.bias`…
//! `Vec<BasicBlock>` gives the `layerN.<index>` segment, and the downsample branch is a
//! `(Conv2d, BatchNorm)` tuple, whose elements Burn names `0` and `1`, exactly like
//! torchvision's `nn.Sequential`. BatchNorm `weight`/`bias` ↔ `gamma`/`beta` and the Linear
//! transpose are handled by `PyTorchToBurnAdapter` when loading.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Initializer, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::relu;
use defectkit_core::onnx::FeatureSource;

use crate::export::FeatureLayout;

/// Torchvision's convolution initializer: Kaiming normal, fan-out, ReLU gain.
fn conv_initializer() -> Initializer {
    Initializer::KaimingNormal {
        gain: std::f64::consts::SQRT_2,
        fan_out_only: true,
    }
}

/// 3×3 convolution with padding 1 and no bias (torchvision's `conv3x3`).
pub fn conv3x3(in_channels: usize, out_channels: usize, stride: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([in_channels, out_channels], [3, 3])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .with_bias(false)
        .with_initializer(conv_initializer())
        .init(device)
}

/// 1×1 convolution without bias (torchvision's `conv1x1`).
pub fn conv1x1(in_channels: usize, out_channels: usize, stride: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([in_channels, out_channels], [1, 1])
        .with_stride([stride, stride])
        .with_bias(false)
        .with_initializer(conv_initializer())
        .init(device)
}

/// ResNet basic block: conv3×3-BN-ReLU-conv3×3-BN, plus the identity or a 1×1-conv+BN
/// projection, then ReLU.
#[derive(Module, Debug)]
pub struct BasicBlock {
    /// First 3×3 convolution (carries the block's stride).
    pub conv1: Conv2d,
    /// Batch norm after `conv1`.
    pub bn1: BatchNorm,
    /// Second 3×3 convolution.
    pub conv2: Conv2d,
    /// Batch norm after `conv2`.
    pub bn2: BatchNorm,
    /// Projection shortcut, present when the stride or the channel count changes.
    /// A tuple so the parameter paths are `downsample.0.*` (conv) and `downsample.1.*` (BN).
    pub downsample: Option<(Conv2d, BatchNorm)>,
}

impl BasicBlock {
    /// Creates a block mapping `in_channels` to `out_channels`; a projection shortcut is
    /// added when `stride != 1` or the channel counts differ.
    pub fn new(in_channels: usize, out_channels: usize, stride: usize, device: &Device) -> Self {
        let downsample = (stride != 1 || in_channels != out_channels).then(|| {
            (
                conv1x1(in_channels, out_channels, stride, device),
                BatchNormConfig::new(out_channels).init(device),
            )
        });
        Self {
            conv1: conv3x3(in_channels, out_channels, stride, device),
            bn1: BatchNormConfig::new(out_channels).init(device),
            conv2: conv3x3(out_channels, out_channels, 1, device),
            bn2: BatchNormConfig::new(out_channels).init(device),
            downsample,
        }
    }

    /// `[B, C_in, H, W]` → `[B, C_out, H / stride, W / stride]`.
    pub fn forward(&self, input: Tensor<4>) -> Tensor<4> {
        let identity = match &self.downsample {
            Some((conv, bn)) => bn.forward(conv.forward(input.clone())),
            None => input.clone(),
        };
        let x = relu(self.bn1.forward(self.conv1.forward(input)));
        let x = self.bn2.forward(self.conv2.forward(x));
        relu(x + identity)
    }
}

/// A ResNet stage (`layerN`): `blocks` basic blocks, the first one with `stride`.
pub fn make_layer(
    in_channels: usize,
    out_channels: usize,
    blocks: usize,
    stride: usize,
    device: &Device,
) -> Vec<BasicBlock> {
    (0..blocks)
        .map(|i| {
            if i == 0 {
                BasicBlock::new(in_channels, out_channels, stride, device)
            } else {
                BasicBlock::new(out_channels, out_channels, 1, device)
            }
        })
        .collect()
}

/// Runs the blocks of a stage in order.
pub fn forward_layer(layer: &[BasicBlock], input: Tensor<4>) -> Tensor<4> {
    layer.iter().fold(input, |x, block| block.forward(x))
}

/// Configuration of [`Stem`].
#[derive(Config, Debug)]
pub struct StemConfig {
    /// Channels of conv1 and conv2_x; conv3_x has twice as many. ResNet-18 = 64.
    #[config(default = 64)]
    pub width: usize,
    /// Input channels (3 for RGB).
    #[config(default = 3)]
    pub in_channels: usize,
}

impl StemConfig {
    /// Builds the stem on `device`.
    pub fn init(&self, device: &Device) -> Stem {
        let w = self.width;
        Stem {
            conv1: Conv2dConfig::new([self.in_channels, w], [7, 7])
                .with_stride([2, 2])
                .with_padding(PaddingConfig2d::Explicit(3, 3, 3, 3))
                .with_bias(false)
                .with_initializer(conv_initializer())
                .init(device),
            bn1: BatchNormConfig::new(w).init(device),
            maxpool: MaxPool2dConfig::new([3, 3])
                .with_strides([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(),
            layer1: make_layer(w, w, 2, 1, device),
            layer2: make_layer(w, 2 * w, 2, 2, device),
        }
    }
}

/// ResNet-18's first stages: conv1 (7×7/2, no bias) + BN + ReLU + 3×3/2 max-pool,
/// conv2_x (`layer1`, 2 blocks, `width` channels) and conv3_x (`layer2`, 2 blocks,
/// `2 * width` channels, first block strided with a projection). Output stride 8.
#[derive(Module, Debug)]
pub struct Stem {
    /// 7×7 stride-2 input convolution.
    pub conv1: Conv2d,
    /// Batch norm after `conv1`.
    pub bn1: BatchNorm,
    /// 3×3 stride-2 max pool.
    pub maxpool: MaxPool2d,
    /// conv2_x: two blocks at `width` channels, stride 1.
    pub layer1: Vec<BasicBlock>,
    /// conv3_x: two blocks at `2 * width` channels, stride 2.
    pub layer2: Vec<BasicBlock>,
}

/// The two feature maps of a [`Stem`] pass ([`Stem::forward_maps`]).
#[derive(Debug, Clone)]
pub struct StemMaps {
    /// conv2_x (`layer1`) output, `[B, width, H / 4, W / 4]`.
    pub conv2: Tensor<4>,
    /// conv3_x (`layer2`) output, `[B, 2 * width, H / 8, W / 8]`.
    pub conv3: Tensor<4>,
}

impl StemMaps {
    /// The patch features of the `features` output: conv2_x average-pooled 2×2 and conv3_x,
    /// concatenated along channels, `[B, 3 * width, H / 8, W / 8]` ([`patch_features`]).
    pub fn patch_features(self) -> Tensor<4> {
        patch_features(self.conv2, self.conv3)
    }
}

impl Stem {
    /// `[B, C, H, W]` → conv3_x feature map `[B, 2 * width, H / 8, W / 8]`
    /// (sizes rounded as in torchvision: 32 → 4, 128 → 16, 224 → 28).
    pub fn forward(&self, input: Tensor<4>) -> Tensor<4> {
        forward_layer(&self.layer2, self.forward_conv2(input))
    }

    /// `[B, C, H, W]` → the conv2_x and conv3_x maps (the same pass as [`Stem::forward`],
    /// keeping the intermediate map alive for [`StemMaps::patch_features`]).
    pub fn forward_maps(&self, input: Tensor<4>) -> StemMaps {
        let conv2 = self.forward_conv2(input);
        let conv3 = forward_layer(&self.layer2, conv2.clone());
        StemMaps { conv2, conv3 }
    }

    /// conv1, BN, ReLU, max pool and conv2_x.
    fn forward_conv2(&self, input: Tensor<4>) -> Tensor<4> {
        let x = relu(self.bn1.forward(self.conv1.forward(input)));
        let x = self.maxpool.forward(x);
        forward_layer(&self.layer1, x)
    }

    /// Channels of the conv2_x output.
    pub fn conv2_channels(&self) -> usize {
        let block = self.layer1.last().expect("conv2_x has at least one block");
        let [channels] = block.bn2.gamma.shape().dims();
        channels
    }

    /// What the `features` output of a network built on this stem is made of
    /// ([`StemMaps::patch_features`]): `stem.layer1` pooled 2×2 and `stem.layer2`, stride 8.
    pub fn feature_layout(&self) -> FeatureLayout {
        FeatureLayout {
            stride: 8,
            sources: vec![
                FeatureSource {
                    layer: "stem.layer1".into(),
                    channels: self.conv2_channels(),
                    resample: AVG_POOL_2X2.into(),
                },
                FeatureSource {
                    layer: "stem.layer2".into(),
                    channels: self.out_channels(),
                    resample: "none".into(),
                },
            ],
        }
    }

    /// Channels of the conv3_x output.
    pub fn out_channels(&self) -> usize {
        let block = self.layer2.last().expect("conv3_x has at least one block");
        let [channels] = block.bn2.gamma.shape().dims();
        channels
    }
}

/// How [`patch_features`] resamples the finer map, as recorded in [`FeatureSource::resample`].
pub const AVG_POOL_2X2: &str = "avg_pool 2x2";

/// The patch features of two maps one ×2 level apart (PaDiM/PatchCore style): `fine`
/// `[B, C1, H, W]` average-pooled 2×2 with stride 2 to `coarse`'s `[B, C2, ⌈H/2⌉, ⌈W/2⌉]`
/// and concatenated after it along channels → `[B, C1 + C2, ⌈H/2⌉, ⌈W/2⌉]`, `fine`'s
/// channels first. An odd side pools its last row/column alone (ceil mode, padding not
/// counted), matching a stride-2 convolution's rounding. Exports as ONNX AveragePool +
/// Concat.
///
/// # Panics
/// If the pooled `fine` and `coarse` differ in batch or spatial size.
pub fn patch_features(fine: Tensor<4>, coarse: Tensor<4>) -> Tensor<4> {
    let [_, _, h, w] = fine.dims();
    let options = burn::tensor::ops::AvgPoolOptions::new([2, 2])
        .with_stride([2, 2])
        .with_count_include_pad(false)
        .with_ceil_mode(h % 2 == 1 || w % 2 == 1);
    let pooled = burn::tensor::module::avg_pool2d(fine, options);
    let [b1, _, h1, w1] = pooled.dims();
    let [b2, _, h2, w2] = coarse.dims();
    assert_eq!(
        [b1, h1, w1],
        [b2, h2, w2],
        "patch features: the pooled fine map and the coarse map differ in size"
    );
    Tensor::cat(vec![pooled, coarse], 1)
}

/// Global average pooling: `[B, C, H, W]` → `[B, C]` (exports as ONNX GlobalAveragePool +
/// Reshape).
pub fn global_avg_pool(input: Tensor<4>) -> Tensor<2> {
    burn::tensor::module::adaptive_avg_pool2d(input, [1, 1]).flatten(1, 3)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(values: Vec<f32>, shape: [usize; 4]) -> Tensor<4> {
        Tensor::from_data(TensorData::new(values, shape), &Device::flex())
    }

    fn values(t: Tensor<4>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
    }

    #[test]
    fn patch_features_pool_the_fine_map_and_put_it_first() {
        // fine: 1 channel 4×4 = 0..16; coarse: 1 channel 2×2 of 100s.
        let fine = tensor((0..16).map(|v| v as f32).collect(), [1, 1, 4, 4]);
        let coarse = tensor(vec![100.0, 101.0, 102.0, 103.0], [1, 1, 2, 2]);
        let out = patch_features(fine, coarse);
        assert_eq!(out.dims(), [1, 2, 2, 2]);
        // Means of [0 1 4 5], [2 3 6 7], [8 9 12 13], [10 11 14 15].
        assert_eq!(
            values(out),
            [2.5, 4.5, 10.5, 12.5, 100.0, 101.0, 102.0, 103.0]
        );
    }

    #[test]
    fn an_odd_fine_map_pools_its_last_row_and_column_alone() {
        // 3×3 = 0..9 → 2×2: means of [0 1 3 4], [2 5], [6 7], [8].
        let fine = tensor((0..9).map(|v| v as f32).collect(), [1, 1, 3, 3]);
        let coarse = Tensor::<4>::zeros([1, 1, 2, 2], &Device::flex());
        let out = patch_features(fine, coarse);
        assert_eq!(out.dims(), [1, 2, 2, 2]);
        assert_eq!(&values(out)[..4], [2.0, 3.5, 6.5, 8.0]);
    }

    #[test]
    fn the_stem_maps_are_the_forward_pass() {
        let device = Device::flex();
        let stem = StemConfig::new().with_width(4).init(&device);
        let x = Tensor::<4>::random(
            [2, 3, 36, 36],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        let maps = stem.forward_maps(x.clone());
        assert_eq!(maps.conv2.dims(), [2, 4, 9, 9]);
        assert_eq!(maps.conv3.dims(), [2, 8, 5, 5]);
        assert_eq!(values(maps.conv3.clone()), values(stem.forward(x)));
        let layout = stem.feature_layout();
        assert_eq!(layout.channels(), 12);
        assert_eq!(layout.stride, 8);
        assert_eq!(maps.patch_features().dims(), [2, 12, 5, 5]);
    }
}
