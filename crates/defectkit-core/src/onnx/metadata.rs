//! defectkit's metadata for an exported model: everything the deployment side needs to
//! feed the model exactly as training did (ARCHITECTURE.md seam 2) and to interpret its outputs.
//! Stored as JSON under [`METADATA_KEY`] in the ONNX `metadata_props` and as `model.json`
//! beside the file.

use serde::{Deserialize, Serialize};

use crate::data::PreprocessSpec;

/// The `metadata_props` key that holds [`ModelMetadata`] as JSON.
pub const METADATA_KEY: &str = "defectkit";

/// What kind of network an ONNX file holds; decides the primary output's meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// Model A: ResNet-18 stem + FC, from scratch. Outputs `logits`, `embedding`.
    CnnScratch,
    /// Model B: the same network distilled from ResNet-18. Outputs `logits`, `embedding`.
    CnnDistilled,
    /// Model C: U-Net autoencoder. Outputs `reconstruction`, `embedding` (z).
    UnetAe,
    /// The full ResNet-18 teacher. Outputs `logits`, `embedding` (pooled conv5_x).
    Teacher,
}

impl ModelKind {
    /// Name of the primary (non-embedding) output.
    pub fn primary_output(self) -> &'static str {
        match self {
            ModelKind::UnetAe => "reconstruction",
            _ => "logits",
        }
    }

    /// Whether the model reconstructs its input (reconstruction error is meaningful).
    pub fn is_autoencoder(self) -> bool {
        self == ModelKind::UnetAe
    }

    /// The config / CLI spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::CnnScratch => "cnn_scratch",
            ModelKind::CnnDistilled => "cnn_distilled",
            ModelKind::UnetAe => "unet_ae",
            ModelKind::Teacher => "teacher",
        }
    }
}

/// Numeric precision of a model file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// 32-bit float weights and activations.
    Fp32,
    /// Statically quantized to int8 (QDQ).
    Int8,
}

impl Precision {
    /// `fp32` / `int8`.
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Int8 => "int8",
        }
    }
}

/// Everything recorded about an exported model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelMetadata {
    /// The network.
    pub kind: ModelKind,
    /// fp32 or int8.
    pub precision: Precision,
    /// How images become the `input` tensor.
    pub preprocess: PreprocessSpec,
    /// Class names, in logit order (the categories trained on).
    pub classes: Vec<String>,
    /// Input channels, height and width (`input` is `[batch, C, H, W]`).
    pub input_shape: [usize; 3],
    /// Length of the `embedding` output.
    pub embedding_dim: usize,
    /// Output names in graph order: the primary output, then `embedding`.
    pub outputs: Vec<String>,
    /// The training run's directory name.
    pub run_id: String,
    /// SHA-256 of the run's resolved `.hydra/config.yaml`.
    pub config_hash: String,
    /// The defectkit version that exported the model.
    pub defectkit_version: String,
    /// The checkpoint exported (relative to the run dir).
    pub checkpoint: String,
    /// ONNX opset of the graph.
    pub opset: i64,
    /// How the training run split its data (`None` in files exported before it was
    /// recorded). `detect` refuses embeddings whose val split differs: their val images
    /// could be images the model trained on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_split: Option<DataSplit>,
    /// The `features` output (patch-level detection), when the graph has one (`None` in
    /// files exported before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<FeatureMapSpec>,
}

/// The `features` output: `[batch, channels, height, width]`, the network's two chosen
/// conv maps brought to the coarser one's resolution and concatenated along channels (what
/// patch detectors score location by location).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureMapSpec {
    /// Channels (the sum over `sources`).
    pub channels: usize,
    /// Rows of the map.
    pub height: usize,
    /// Columns of the map.
    pub width: usize,
    /// Input pixels per map cell along each axis (8: a 128-px input gives 16×16).
    pub stride: usize,
    /// What was concatenated, in channel order, e.g. `layer1 (conv2_x), 2×2 average pool`.
    pub sources: Vec<FeatureSource>,
}

/// One block of channels of the `features` output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureSource {
    /// The layer, in the network's own parameter names (`stem.layer1`, `encoder.2`).
    pub layer: String,
    /// Its channels.
    pub channels: usize,
    /// How it was brought to the map's resolution (`none`, `avg_pool 2x2`).
    pub resample: String,
}

/// The training run's train/val split (`data.val_fraction`, `data.split_seed`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSplit {
    /// Fraction of each class's train/good held out as val.
    pub val_fraction: f64,
    /// Seed of the split.
    pub split_seed: u64,
}

impl ModelMetadata {
    /// The JSON stored in the ONNX file and `model.json`.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("metadata serializes")
    }

    /// Parses the JSON written by [`ModelMetadata::to_json`] and checks it as the config
    /// layer checks its own values: a tampered or hand-written file with, say, `std: 0` in
    /// its preprocessing spec is refused here, naming the field, instead of producing NaN
    /// embeddings later.
    pub fn from_json(s: &str) -> Result<Self, serde_json::Error> {
        let meta: Self = serde_json::from_str(s)?;
        meta.validate()
            .map_err(<serde_json::Error as serde::de::Error>::custom)?;
        Ok(meta)
    }

    /// The checks serde cannot make: a valid preprocessing spec, an input shape that is
    /// what that spec produces, a non-empty embedding and class list.
    pub fn validate(&self) -> Result<(), String> {
        self.preprocess
            .validate()
            .map_err(|e| format!("field preprocess: {e}"))?;
        let side = self.preprocess.input_size() as usize;
        if self.input_shape != [3, side, side] {
            return Err(format!(
                "field input_shape: is {:?}, but the preprocessing spec gives [3, {side}, {side}]",
                self.input_shape
            ));
        }
        if self.embedding_dim == 0 {
            return Err("field embedding_dim: is 0; allowed: >= 1".to_string());
        }
        if self.classes.is_empty() {
            return Err("field classes: is empty; a model knows at least one class".to_string());
        }
        if self.outputs.is_empty() {
            return Err("field outputs: is empty".to_string());
        }
        Ok(())
    }
}
