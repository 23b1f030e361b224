//! The one preprocessing spec (ARCHITECTURE.md seam 2).
//!
//! Resize, optional center crop, scaling and mean/std normalisation, in that order. The
//! data module uses it for training, the exporter writes it into the ONNX metadata and the
//! runtime reads it back, so a scored folder is preprocessed exactly as training saw it.

use image::imageops::{self, FilterType};
use image::RgbImage;
use serde::{Deserialize, Serialize};

use super::DataError;

/// The resampling filter of [`PreprocessSpec::prepare`]: a triangle (bilinear) kernel whose
/// support widens with the downscale factor, i.e. antialiased bilinear — the same as PIL's
/// `Image.resize(..., BILINEAR)` and torchvision's `Resize` on PIL images, which is what the
/// Python peers and anomalib use. (CatmullRom is slightly sharper but costs more and
/// over/undershoots at edges; for 700–1024 px → 128–256 px both are fine.)
pub const RESIZE_FILTER: FilterType = FilterType::Triangle;

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

    /// Number of floats in one CHW tensor: `3 · side · side`, side = [`Self::input_size`].
    pub fn tensor_len(&self) -> usize {
        let s = self.input_size() as usize;
        3 * s * s
    }

    /// Check that the spec can be applied: `resize > 0`, `0 < center_crop ≤ resize`,
    /// `scale > 0` and every `std > 0` (all finite). Call it once when a spec is loaded
    /// (config, ONNX metadata) so that a bad value is reported where it came from.
    pub fn validate(&self) -> Result<(), DataError> {
        let bad = |reason: String| Err(DataError::InvalidSpec { reason });
        if self.resize == 0 {
            return bad("resize must be > 0".into());
        }
        if let Some(c) = self.center_crop {
            if c == 0 {
                return bad("center_crop must be > 0 (or absent)".into());
            }
            if c > self.resize {
                return bad(format!(
                    "center_crop {c} is larger than resize {}; crop must be <= resize",
                    self.resize
                ));
            }
        }
        if !(self.scale.is_finite() && self.scale > 0.0) {
            return bad(format!(
                "scale must be a finite number > 0, got {}",
                self.scale
            ));
        }
        for (i, (&s, &m)) in self.std.iter().zip(&self.mean).enumerate() {
            if !(s.is_finite() && s > 0.0) {
                return bad(format!("std[{i}] must be a finite number > 0, got {s}"));
            }
            if !m.is_finite() {
                return bad(format!("mean[{i}] must be finite, got {m}"));
            }
        }
        Ok(())
    }

    /// The geometric half of the spec: resize to `resize`×`resize` with [`RESIZE_FILTER`]
    /// (aspect ratio not kept, as MVTec pipelines do), then take the centered
    /// `center_crop`×`center_crop` square (offset `(resize − crop) / 2`, rounded down).
    /// The result is `input_size`×`input_size` u8 RGB; it is what the decoded-image cache
    /// stores. An image already at the target size is copied, not resampled.
    ///
    /// Never panics: for a spec that fails [`Self::validate`], a crop larger than the
    /// resize is treated as resizing to the crop, and a zero side as 1; an empty input
    /// image gives a black image.
    pub fn prepare(&self, img: &RgbImage) -> RgbImage {
        let side = self.input_size().max(1);
        let resize = self.resize.max(side);
        if img.width() == 0 || img.height() == 0 {
            return RgbImage::new(side, side);
        }
        let resized = if img.dimensions() == (resize, resize) {
            img.clone()
        } else {
            imageops::resize(img, resize, resize, RESIZE_FILTER)
        };
        if resize == side {
            resized
        } else {
            let off = (resize - side) / 2;
            imageops::crop_imm(&resized, off, off, side, side).to_image()
        }
    }

    /// The photometric half of the spec: write `img` into `out` as CHW f32 (R plane, then G,
    /// then B; row-major within a plane), each value `(v / scale − mean[c]) / std[c]`.
    ///
    /// Precondition: `img` is `side`×`side` (the output of [`Self::prepare`]) and
    /// `out.len() == 3·side·side` ([`Self::tensor_len`]); otherwise
    /// [`DataError::TensorShape`] is returned and `out` is left untouched.
    pub fn normalize_into(&self, img: &RgbImage, out: &mut [f32]) -> Result<(), DataError> {
        let side = self.input_size();
        let expected = self.tensor_len();
        if img.dimensions() != (side, side) || out.len() != expected {
            return Err(DataError::TensorShape {
                width: img.width(),
                height: img.height(),
                len: out.len(),
                side,
                expected,
            });
        }
        self.write_chw(img, out);
        Ok(())
    }

    /// [`Self::prepare`] then normalise: the model's input for one image, CHW f32 of
    /// length [`Self::tensor_len`] (for a valid spec).
    pub fn to_tensor(&self, img: &RgbImage) -> Vec<f32> {
        let prepared = self.prepare(img);
        let mut out = vec![0.0; 3 * prepared.width() as usize * prepared.height() as usize];
        self.write_chw(&prepared, &mut out);
        out
    }

    /// Per-channel lookup tables: 256 possible u8 values → normalised f32. Computed with the
    /// exact formula `(v / scale − mean) / std` so results match a NumPy/PyTorch peer.
    fn luts(&self) -> [[f32; 256]; 3] {
        let mut lut = [[0.0f32; 256]; 3];
        for (c, table) in lut.iter_mut().enumerate() {
            for (v, slot) in table.iter_mut().enumerate() {
                *slot = (v as f32 / self.scale - self.mean[c]) / self.std[c];
            }
        }
        lut
    }

    /// CHW write; `out.len()` must equal `3·w·h` of `img` (checked by the callers).
    fn write_chw(&self, img: &RgbImage, out: &mut [f32]) {
        let lut = self.luts();
        let plane = img.width() as usize * img.height() as usize;
        let (r, rest) = out.split_at_mut(plane);
        let (g, b) = rest.split_at_mut(plane);
        for (i, p) in img.pixels().enumerate().take(plane) {
            r[i] = lut[0][p.0[0] as usize];
            g[i] = lut[1][p.0[1] as usize];
            b[i] = lut[2][p.0[2] as usize];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    fn spec(resize: u32, crop: Option<u32>) -> PreprocessSpec {
        PreprocessSpec {
            center_crop: crop,
            ..PreprocessSpec::imagenet(resize)
        }
    }

    #[test]
    fn validate_accepts_good_and_rejects_bad() {
        assert!(spec(256, Some(224)).validate().is_ok());
        assert!(spec(224, None).validate().is_ok());
        assert!(spec(224, Some(224)).validate().is_ok());
        assert!(spec(0, None).validate().is_err());
        assert!(spec(224, Some(256)).validate().is_err());
        assert!(spec(224, Some(0)).validate().is_err());
        let mut s = spec(224, None);
        s.std[1] = 0.0;
        assert!(s.validate().is_err());
        let mut s = spec(224, None);
        s.scale = 0.0;
        assert!(s.validate().is_err());
        let mut s = spec(224, None);
        s.scale = f32::NAN;
        let msg = s.validate().unwrap_err().to_string();
        assert!(msg.contains("scale"), "{msg}");
    }

    #[test]
    fn prepare_resizes_and_center_crops() {
        // 40x20 image: left half red, right half blue.
        let img = RgbImage::from_fn(40, 20, |x, _| {
            if x < 20 {
                Rgb([255, 0, 0])
            } else {
                Rgb([0, 0, 255])
            }
        });
        let out = spec(32, None).prepare(&img);
        assert_eq!(out.dimensions(), (32, 32));
        assert_eq!(*out.get_pixel(0, 16), Rgb([255, 0, 0]));
        assert_eq!(*out.get_pixel(31, 16), Rgb([0, 0, 255]));

        let out = spec(32, Some(16)).prepare(&img);
        assert_eq!(out.dimensions(), (16, 16));
        // The crop is centered: columns 8..24 of the resized image; left half still red.
        assert_eq!(*out.get_pixel(0, 0), Rgb([255, 0, 0]));
        assert_eq!(*out.get_pixel(15, 15), Rgb([0, 0, 255]));
    }

    #[test]
    fn prepare_same_size_is_identity_and_never_panics() {
        let img = RgbImage::from_fn(8, 8, |x, y| Rgb([x as u8, y as u8, 7]));
        assert_eq!(spec(8, None).prepare(&img), img);
        // Invalid specs and empty images: no panic, square output of the input size.
        assert_eq!(spec(8, Some(12)).prepare(&img).dimensions(), (12, 12));
        assert_eq!(spec(0, None).prepare(&img).dimensions(), (1, 1));
        assert_eq!(
            spec(4, None).prepare(&RgbImage::new(0, 0)).dimensions(),
            (4, 4)
        );
    }

    #[test]
    fn normalize_is_chw_with_the_formula() {
        let s = PreprocessSpec {
            resize: 2,
            center_crop: None,
            scale: 255.0,
            mean: [0.5, 0.25, 0.0],
            std: [0.5, 0.25, 2.0],
        };
        let img = RgbImage::from_fn(2, 2, |x, y| {
            if (x, y) == (1, 0) {
                Rgb([255, 0, 51])
            } else {
                Rgb([0, 255, 0])
            }
        });
        let mut out = vec![0.0; s.tensor_len()];
        s.normalize_into(&img, &mut out).unwrap();
        assert_eq!(out.len(), 12);
        // R plane: pixel (1,0) is index 1.
        assert_eq!(out[0], -1.0);
        assert_eq!(out[1], 1.0);
        // G plane starts at 4.
        assert_eq!(out[4], 3.0);
        assert_eq!(out[5], -1.0);
        // B plane starts at 8.
        assert!((out[9] - 0.1).abs() < 1e-6);
        assert_eq!(s.to_tensor(&img), out);
    }

    #[test]
    fn normalize_rejects_wrong_shapes() {
        let s = spec(4, None);
        let img = RgbImage::new(4, 4);
        let mut short = vec![0.0; 10];
        assert!(matches!(
            s.normalize_into(&img, &mut short),
            Err(DataError::TensorShape { .. })
        ));
        let mut ok = vec![0.0; s.tensor_len()];
        assert!(s.normalize_into(&RgbImage::new(5, 4), &mut ok).is_err());
        assert!(s.normalize_into(&img, &mut ok).is_ok());
    }

    #[test]
    fn to_tensor_has_input_size() {
        let s = spec(24, Some(20));
        let img = RgbImage::from_pixel(37, 51, Rgb([1, 2, 3]));
        assert_eq!(s.to_tensor(&img).len(), 3 * 20 * 20);
    }
}
