//! The `detector=` config group (`conf/detector/<method>.yaml`): which anomaly detector
//! `defectkit detect` fits on an embeddings file, on which split's good images, and how
//! its threshold is set. Typed here because config is data (ARCHITECTURE.md seam 3); the
//! detectors themselves live in `defectkit-deploy`'s `anomaly/`.

use serde::{Deserialize, Serialize};

/// A detection method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DetectorMethod {
    /// Mahalanobis distance to the class Gaussian.
    #[default]
    Mahalanobis,
    /// Euclidean distance to the class mean.
    Euclidean,
    /// Mean distance to the k nearest fit embeddings.
    Knn,
    /// Reconstruction error (autoencoders).
    Recon,
    /// Patch Gaussian (PaDiM): one Gaussian per feature-map location and class; the image
    /// score is the maximum of the smoothed Mahalanobis map.
    Padim,
    /// Patch memory bank (PatchCore): distance of each patch to the nearest patch of a
    /// coreset of the class's good patches; the image score is the maximum of the map.
    Patchcore,
}

impl DetectorMethod {
    /// Every method, in table order.
    pub const ALL: [DetectorMethod; 6] = [
        DetectorMethod::Mahalanobis,
        DetectorMethod::Euclidean,
        DetectorMethod::Knn,
        DetectorMethod::Recon,
        DetectorMethod::Padim,
        DetectorMethod::Patchcore,
    ];

    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            DetectorMethod::Mahalanobis => "mahalanobis",
            DetectorMethod::Euclidean => "euclidean",
            DetectorMethod::Knn => "knn",
            DetectorMethod::Recon => "recon",
            DetectorMethod::Padim => "padim",
            DetectorMethod::Patchcore => "patchcore",
        }
    }

    /// Whether the method scores feature-map locations (needs `embed --maps`).
    pub fn is_patch(self) -> bool {
        matches!(self, DetectorMethod::Padim | DetectorMethod::Patchcore)
    }
}

impl std::str::FromStr for DetectorMethod {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        DetectorMethod::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| {
                format!("unknown detector {s:?} (expected mahalanobis, euclidean, knn, recon, padim or \
                     patchcore)")
            })
    }
}

impl std::fmt::Display for DetectorMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a covariance is regularised (`detector.shrinkage`).
///
/// - `ledoit_wolf`: scikit-learn's `LedoitWolf` exactly — the maximum-likelihood covariance
///   S = XᵀX/N of the centred rows, shrunk to (1−δ)·S + δ·(tr S/d)·I with Ledoit-Wolf's δ.
/// - a number δ in [0, 1]: the *unbiased* covariance S = XᵀX/(N−1) (the spec's Σ) shrunk by
///   that δ; `0` is the plain unbiased covariance, singular when N ≤ d.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Shrinkage {
    /// A fixed δ applied to the unbiased covariance.
    Fixed(f64),
    /// Ledoit-Wolf's δ on the maximum-likelihood covariance.
    #[default]
    #[serde(with = "ledoit_wolf_name")]
    LedoitWolf,
}

impl std::fmt::Display for Shrinkage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Shrinkage::Fixed(d) => write!(f, "{d}"),
            Shrinkage::LedoitWolf => f.write_str("ledoit_wolf"),
        }
    }
}

/// (De)serializes the unit variant as the string `ledoit_wolf`.
mod ledoit_wolf_name {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("ledoit_wolf")
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<(), D::Error> {
        let s = String::deserialize(d)?;
        if s == "ledoit_wolf" {
            Ok(())
        } else {
            Err(D::Error::custom(format!(
                "expected ledoit_wolf or a number in [0, 1], got {s:?}"
            )))
        }
    }
}

/// Which reconstruction error scores an image (`detector.score` of `recon`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReconScore {
    /// Mean squared error over all pixels and channels.
    Mean,
    /// Max over the image of the k×k average-pooled squared error (`detector.pool` = k).
    #[default]
    Local,
}

impl ReconScore {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ReconScore::Mean => "mean",
            ReconScore::Local => "local",
        }
    }
}

/// The `detector` config node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorConfig {
    /// The method.
    pub method: DetectorMethod,
    /// The split whose good images fit the per-class statistics (`train`).
    pub fit_split: String,
    /// The split whose good images set the threshold (`val`); never the fit split.
    pub threshold_split: String,
    /// The threshold is this percentile of the threshold split's scores (0–100).
    pub percentile: f64,
    /// Covariance shrinkage (mahalanobis).
    #[serde(default)]
    pub shrinkage: Shrinkage,
    /// Neighbours averaged (knn).
    #[serde(default = "default_k")]
    pub k: usize,
    /// Mean or local reconstruction error (recon).
    #[serde(default)]
    pub score: ReconScore,
    /// Window side of the local reconstruction error, in model-input pixels (recon).
    #[serde(default = "default_pool")]
    pub pool: usize,
    /// Fraction of the class's good patches kept in the memory bank by greedy coreset
    /// subsampling, in (0, 1] (patchcore; 1 keeps every patch).
    #[serde(default = "default_coreset_ratio")]
    pub coreset_ratio: f64,
    /// Seed of the coreset's random projection and first pick (patchcore).
    #[serde(default)]
    pub coreset_seed: u64,
    /// PatchCore's reweighting of the image score by how isolated its nearest bank patch
    /// is among that patch's own neighbours (patchcore).
    #[serde(default)]
    pub reweight: bool,
    /// σ in model-input pixels of the Gaussian smoothing of the upsampled anomaly map
    /// (padim, patchcore; 0 = none).
    #[serde(default = "default_sigma")]
    pub sigma: f64,
}

fn default_k() -> usize {
    5
}

fn default_coreset_ratio() -> f64 {
    0.1
}

fn default_sigma() -> f64 {
    4.0
}

fn default_pool() -> usize {
    8
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            method: DetectorMethod::Mahalanobis,
            fit_split: "train".into(),
            threshold_split: "val".into(),
            percentile: 95.0,
            shrinkage: Shrinkage::LedoitWolf,
            k: default_k(),
            score: ReconScore::Local,
            pool: default_pool(),
            coreset_ratio: default_coreset_ratio(),
            coreset_seed: 0,
            reweight: false,
            sigma: default_sigma(),
        }
    }
}

impl DetectorConfig {
    /// The defaults of `method` (what its yaml holds).
    pub fn for_method(method: DetectorMethod) -> Self {
        Self {
            method,
            ..Self::default()
        }
    }

    /// Checks the values that serde cannot: splits, percentile, k, pool, shrinkage range.
    pub fn validate(&self) -> Result<(), String> {
        for (key, split) in [
            ("fit_split", &self.fit_split),
            ("threshold_split", &self.threshold_split),
        ] {
            if !["train", "val", "test"].contains(&split.as_str()) {
                return Err(format!(
                    "detector.{key} = {split:?}: expected train, val or test"
                ));
            }
        }
        if self.fit_split == self.threshold_split {
            return Err(format!(
                "detector.threshold_split = detector.fit_split = {:?}: the threshold must come \
                 from images the detector was not fitted on",
                self.fit_split
            ));
        }
        if self.threshold_split == "test" {
            return Err(
                "detector.threshold_split = \"test\": the threshold is set without test \
                        images (val by default), so the test metrics stay honest"
                    .into(),
            );
        }
        if self.fit_split == "test" {
            return Err(
                "detector.fit_split = \"test\": detectors are fitted on training \
                        images, never on the test split"
                    .into(),
            );
        }
        if !(0.0..=100.0).contains(&self.percentile) {
            return Err(format!(
                "detector.percentile = {}: expected a value in [0, 100]",
                self.percentile
            ));
        }
        if self.k == 0 {
            return Err("detector.k = 0: knn needs k ≥ 1".into());
        }
        if self.pool == 0 {
            return Err("detector.pool = 0: the local window needs a side ≥ 1".into());
        }
        if !(self.coreset_ratio > 0.0 && self.coreset_ratio <= 1.0) {
            return Err(format!(
                "detector.coreset_ratio = {}: expected a fraction in (0, 1]",
                self.coreset_ratio
            ));
        }
        if !(self.sigma.is_finite() && (0.0..=256.0).contains(&self.sigma)) {
            return Err(format!(
                "detector.sigma = {}: expected a smoothing width in [0, 256] pixels (0 = none)",
                self.sigma
            ));
        }
        if let Shrinkage::Fixed(d) = self.shrinkage {
            if !(0.0..=1.0).contains(&d) {
                return Err(format!(
                    "detector.shrinkage = {d}: expected ledoit_wolf or a value in [0, 1]"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_detector_yaml_parses_and_is_named_by_its_method() {
        let dir = crate::paths::source_root().join("conf/detector");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let cfg: DetectorConfig =
                serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            cfg.validate().unwrap();
            assert_eq!(
                cfg.method.as_str(),
                path.file_stem().unwrap().to_str().unwrap()
            );
            seen += 1;
        }
        assert_eq!(seen, DetectorMethod::ALL.len());
    }

    #[test]
    fn shrinkage_parses_from_config_values() {
        let lw: Shrinkage = serde_norway::from_str("ledoit_wolf").unwrap();
        assert_eq!(lw, Shrinkage::LedoitWolf);
        let fixed: Shrinkage = serde_norway::from_str("0.25").unwrap();
        assert_eq!(fixed, Shrinkage::Fixed(0.25));
        assert!(serde_norway::from_str::<Shrinkage>("oas").is_err());
        assert_eq!(serde_json::to_string(&lw).unwrap(), "\"ledoit_wolf\"");
    }

    #[test]
    fn leaky_or_out_of_range_settings_are_refused() {
        let base = DetectorConfig::default;
        let leaky = DetectorConfig {
            threshold_split: "train".into(),
            ..base()
        };
        assert!(leaky.validate().unwrap_err().contains("not fitted on"));
        let high = DetectorConfig {
            percentile: 101.0,
            ..base()
        };
        assert!(high.validate().is_err());
        let negative = DetectorConfig {
            shrinkage: Shrinkage::Fixed(-0.1),
            ..base()
        };
        assert!(negative.validate().is_err());
        let on_test = DetectorConfig {
            fit_split: "test".into(),
            ..base()
        };
        assert!(on_test.validate().is_err());
    }
}
