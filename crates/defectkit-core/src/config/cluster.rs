//! The `cluster=` config group (`conf/cluster/default.yaml`): how `defectkit cluster` reduces
//! an embeddings file's images (PCA, t-SNE) and where DBSCAN looks for outliers.

use serde::{Deserialize, Serialize};

/// A space DBSCAN runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClusterSpace {
    /// The standardized embeddings themselves.
    Raw,
    /// PCA with enough components for `pca.variance` of the variance.
    Pca,
    /// The first two principal components.
    Pca2,
    /// 2-D t-SNE of the PCA space.
    Tsne,
}

impl ClusterSpace {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ClusterSpace::Raw => "raw",
            ClusterSpace::Pca => "pca",
            ClusterSpace::Pca2 => "pca2",
            ClusterSpace::Tsne => "tsne",
        }
    }
}

/// PCA options.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PcaConfig {
    /// Keep the fewest components explaining this share of the variance (0, 1], and at
    /// least 2.
    pub variance: f64,
    /// … but at most this many.
    pub max_components: usize,
}

/// t-SNE options.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TsneConfig {
    /// Perplexity (effective neighbours); needs 3·perplexity < N − 1.
    pub perplexity: f64,
    /// Gradient-descent iterations.
    pub iterations: usize,
    /// Barnes-Hut accuracy (0 = exact, 0.5 usual).
    pub theta: f64,
    /// Seed: the same input and seed give the same picture.
    pub seed: u64,
}

/// DBSCAN options.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DbscanConfig {
    /// Points (the point itself included) within `eps` that make a core point.
    pub min_samples: usize,
    /// Neighbourhood radius; `null` = the knee of the sorted k-distance curve (k =
    /// `min_samples`), chosen per space and scope. A fixed value is used in every space, whose
    /// scales differ (t-SNE coordinates vs PCA): fix it together with a single space.
    pub eps: Option<f64>,
}

/// The `cluster` config node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The split whose images are clustered.
    pub split: String,
    /// Good images of this split fit the standardization and the PCA (never the clustered
    /// split itself, so the projection does not look at test images).
    pub fit_split: String,
    /// Spaces DBSCAN runs in.
    pub spaces: Vec<ClusterSpace>,
    /// Also analyse each class on its own (besides all classes in one space).
    pub per_class: bool,
    /// PCA.
    pub pca: PcaConfig,
    /// t-SNE.
    pub tsne: TsneConfig,
    /// DBSCAN.
    pub dbscan: DbscanConfig,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            split: "test".into(),
            fit_split: "train".into(),
            spaces: vec![ClusterSpace::Pca, ClusterSpace::Pca2, ClusterSpace::Tsne],
            per_class: true,
            pca: PcaConfig {
                variance: 0.95,
                max_components: 50,
            },
            tsne: TsneConfig {
                perplexity: 30.0,
                iterations: 1000,
                theta: 0.5,
                seed: 0,
            },
            dbscan: DbscanConfig {
                min_samples: 5,
                eps: None,
            },
        }
    }
}

impl ClusterConfig {
    /// Checks what serde cannot: splits, ranges.
    pub fn validate(&self) -> Result<(), String> {
        for (key, split) in [("split", &self.split), ("fit_split", &self.fit_split)] {
            if !["train", "val", "test"].contains(&split.as_str()) {
                return Err(format!(
                    "cluster.{key} = {split:?}: expected train, val or test"
                ));
            }
        }
        if self.fit_split == "test" {
            return Err(
                "cluster.fit_split = \"test\": the projection is fitted on good \
                        training images, never on test images"
                    .into(),
            );
        }
        if self.split == self.fit_split {
            return Err(format!(
                "cluster.split = cluster.fit_split = {:?}: the projection is fitted on other \
                 images than the ones clustered",
                self.split
            ));
        }
        if self.dbscan.min_samples < 2 && self.dbscan.eps.is_none() {
            return Err(
                "cluster.dbscan.min_samples must be at least 2 when eps is chosen from \
                        the k-distance knee (with 1 every k-distance is 0)"
                    .into(),
            );
        }
        if self.spaces.is_empty() {
            return Err(
                "cluster.spaces is empty: name at least one of raw, pca, pca2, tsne".into(),
            );
        }
        if self.pca.variance.is_nan() || self.pca.variance <= 0.0 || self.pca.variance > 1.0 {
            return Err(format!(
                "cluster.pca.variance = {}: expected a share in (0, 1]",
                self.pca.variance
            ));
        }
        if self.pca.max_components < 2 {
            return Err("cluster.pca.max_components must be at least 2".into());
        }
        if self.tsne.perplexity.is_nan() || self.tsne.perplexity <= 0.0 || self.tsne.iterations == 0
        {
            return Err("cluster.tsne: perplexity must be > 0 and iterations ≥ 1".into());
        }
        if !(0.0..=1.0).contains(&self.tsne.theta) {
            return Err(format!(
                "cluster.tsne.theta = {}: expected [0, 1]",
                self.tsne.theta
            ));
        }
        if self.dbscan.min_samples == 0 {
            return Err("cluster.dbscan.min_samples must be at least 1".into());
        }
        if let Some(eps) = self.dbscan.eps {
            if !eps.is_finite() || eps <= 0.0 {
                return Err(format!(
                    "cluster.dbscan.eps = {eps}: expected a positive number or null"
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
    fn the_default_yaml_is_the_default_and_valid() {
        let path = crate::paths::source_root().join("conf/cluster/default.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        let cfg: ClusterConfig = serde_norway::from_str(&text).unwrap();
        assert_eq!(cfg, ClusterConfig::default());
        cfg.validate().unwrap();
    }

    #[test]
    fn nonsense_is_refused() {
        let bad = |f: fn(&mut ClusterConfig)| {
            let mut c = ClusterConfig::default();
            f(&mut c);
            c.validate().unwrap_err()
        };
        assert!(bad(|c| c.fit_split = "test".into()).contains("never on test"));
        assert!(bad(|c| c.pca.variance = 0.0).contains("variance"));
        assert!(bad(|c| c.dbscan.eps = Some(-1.0)).contains("eps"));
        assert!(bad(|c| c.spaces.clear()).contains("empty"));
        assert!(bad(|c| c.dbscan.min_samples = 0).contains("min_samples"));
    }
}
