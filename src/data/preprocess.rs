//! The one preprocessing spec (design seam 2).
//!
//! Resize, optional center crop, scaling and mean/std normalisation, in that order. The
//! data module uses it for training, the exporter writes it into the ONNX metadata and the
//! runtime reads it back, so a scored folder is preprocessed exactly as training saw it.

use serde::{Deserialize, Serialize};

/// How an 8-bit RGB image becomes the model's input tensor (CHW, f32).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreprocessSpec {
    /// Side length the image is resized to (square), before any crop.
    pub resize: u32,
    /// Optional square center crop taken after resizing; `None` keeps the resized image.
    #[serde(default)]
    pub center_crop: Option<u32>,
    /// Pixel values are divided by this (255.0 maps 8-bit values to [0, 1]).
    #[serde(default = "default_scale")]
    pub scale: f32,
    /// Per-channel mean subtracted after scaling (RGB order).
    #[serde(default = "default_mean")]
    pub mean: [f32; 3],
    /// Per-channel standard deviation divided by after the mean (RGB order).
    #[serde(default = "default_std")]
    pub std: [f32; 3],
}

fn default_scale() -> f32 {
    255.0
}

fn default_mean() -> [f32; 3] {
    [0.485, 0.456, 0.406]
}

fn default_std() -> [f32; 3] {
    [0.229, 0.224, 0.225]
}

impl PreprocessSpec {
    /// ImageNet normalisation at `size`×`size`, no crop.
    pub fn imagenet(size: u32) -> Self {
        Self {
            resize: size,
            center_crop: None,
            scale: default_scale(),
            mean: default_mean(),
            std: default_std(),
        }
    }

    /// Side length of the tensor the model sees.
    pub fn input_size(&self) -> u32 {
        self.center_crop.unwrap_or(self.resize)
    }
}
