//! The `quantize=` config group (`conf/quantize/<method>.yaml`): how `defectkit quantize`
//! calibrates an exported FP32 model and turns it into a static int8 (QDQ) graph. Typed here
//! because config is data (ARCHITECTURE.md seam 3); the quantizer lives in
//! `defectkit-deploy`'s `quantize/`.

use serde::{Deserialize, Serialize};

/// How an activation's range is chosen from the calibration images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CalibrationMethod {
    /// The smallest and largest value seen.
    #[default]
    Minmax,
    /// A percentile of the |x| histogram (outliers clipped).
    Percentile,
    /// The clipping threshold that minimises the KL divergence between the histogram and its
    /// 128-level quantized version (TensorRT's entropy calibration).
    Entropy,
}

impl CalibrationMethod {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            CalibrationMethod::Minmax => "minmax",
            CalibrationMethod::Percentile => "percentile",
            CalibrationMethod::Entropy => "entropy",
        }
    }
}

impl std::fmt::Display for CalibrationMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which images calibrate: always good images of the training split (never validation, which
/// sets thresholds, and never test).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalibrationConfig {
    /// At most this many images, taken round-robin over the classes in a seeded order;
    /// `null` = every training image.
    pub max_images: Option<usize>,
    /// Images per calibration batch (memory grows with it: every intermediate tensor of the
    /// batch is held at once).
    pub batch_size: usize,
    /// Seed of the image order.
    pub seed: u64,
}

/// The `quantize` config node.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuantizeConfig {
    /// How activation ranges are chosen.
    pub method: CalibrationMethod,
    /// `percentile` method: the share of |x| kept, in percent (0, 100].
    pub percentile: f64,
    /// Histogram bins (`percentile` and `entropy`); entropy needs at least 256.
    pub bins: usize,
    /// int8 activations with zero point 0 instead of uint8 asymmetric: what TensorRT wants.
    /// ONNX Runtime's CPU kernels are fastest with the default (false).
    pub symmetric_activations: bool,
    /// 7-bit weights ([−64, 64]), as ONNX Runtime's `reduce_range`: x86 CPUs without VNNI
    /// multiply uint8 × int8 pairs into saturating 16-bit sums (AVX2 `vpmaddubsw`), which
    /// full 8-bit weights overflow. `null` = decide from the CPU that quantizes (7-bit when it
    /// lacks AVX-512 VNNI and AVX-VNNI); the choice is recorded in the model.
    pub reduce_range: Option<bool>,
    /// The calibration images.
    pub calibration: CalibrationConfig,
}

impl Default for QuantizeConfig {
    fn default() -> Self {
        Self {
            method: CalibrationMethod::Minmax,
            percentile: 99.999,
            bins: 2048,
            symmetric_activations: false,
            reduce_range: None,
            calibration: CalibrationConfig {
                max_images: Some(256),
                batch_size: 16,
                seed: 0,
            },
        }
    }
}

impl QuantizeConfig {
    /// `reduce_range` resolved for this machine: the setting, or 7-bit weights on an x86 CPU
    /// without VNNI.
    pub fn resolved_reduce_range(&self) -> bool {
        self.reduce_range.unwrap_or_else(|| !cpu_has_vnni())
    }

    /// Checks what serde cannot: ranges.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.percentile > 0.0 && self.percentile <= 100.0) {
            return Err(format!(
                "quantize.percentile = {}: expected a percentage in (0, 100]",
                self.percentile
            ));
        }
        let min_bins = match self.method {
            CalibrationMethod::Entropy => 256,
            _ => 2,
        };
        if self.bins < min_bins {
            return Err(format!(
                "quantize.bins = {}: the {} method needs at least {min_bins}",
                self.bins, self.method
            ));
        }
        if self.bins > 1 << 20 {
            return Err(format!(
                "quantize.bins = {}: at most {} (memory per tensor)",
                self.bins,
                1 << 20
            ));
        }
        if self.calibration.batch_size == 0 {
            return Err("quantize.calibration.batch_size must be at least 1".into());
        }
        if self.calibration.max_images == Some(0) {
            return Err(
                "quantize.calibration.max_images = 0: at least one image (or null for all)".into(),
            );
        }
        Ok(())
    }
}

/// Whether this CPU has an int8 dot-product instruction that does not saturate (x86 AVX-512
/// VNNI or AVX-VNNI); non-x86 CPUs count as having one (their kernels do not use `vpmaddubsw`).
pub fn cpu_has_vnni() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512vnni")
            || std::arch::is_x86_feature_detected!("avxvnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_file(name: &str) -> QuantizeConfig {
        let path = crate::paths::source_root().join(format!("conf/quantize/{name}.yaml"));
        let text = std::fs::read_to_string(&path).unwrap();
        serde_norway::from_str(&text).unwrap()
    }

    #[test]
    fn minmax_yaml_is_the_default_and_every_option_is_valid() {
        assert_eq!(from_file("minmax"), QuantizeConfig::default());
        for (name, method) in [
            ("minmax", CalibrationMethod::Minmax),
            ("percentile", CalibrationMethod::Percentile),
            ("entropy", CalibrationMethod::Entropy),
        ] {
            let cfg = from_file(name);
            assert_eq!(cfg.method, method, "{name}");
            cfg.validate().unwrap();
        }
    }

    #[test]
    fn nonsense_is_refused() {
        let bad = |f: fn(&mut QuantizeConfig)| {
            let mut c = QuantizeConfig::default();
            f(&mut c);
            c.validate().unwrap_err()
        };
        assert!(bad(|c| c.percentile = 0.0).contains("percentile"));
        assert!(bad(|c| c.percentile = f64::NAN).contains("percentile"));
        assert!(bad(|c| c.percentile = 100.5).contains("percentile"));
        assert!(bad(|c| {
            c.method = CalibrationMethod::Entropy;
            c.bins = 128
        })
        .contains("256"));
        assert!(bad(|c| c.calibration.batch_size = 0).contains("batch_size"));
        assert!(bad(|c| c.calibration.max_images = Some(0)).contains("max_images"));
    }
}
