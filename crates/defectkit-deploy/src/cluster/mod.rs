//! `defectkit cluster`: outlier analysis of embeddings with DBSCAN on PCA- and t-SNE-reduced
//! spaces; the points DBSCAN leaves as noise are read as candidate anomalies. DBSCAN,
//! the k-distance knee and the cluster-agreement scores are written here (checked against
//! scikit-learn label for label); t-SNE wraps bhtsne, seeded; PCA lives in `stats`.

pub mod agreement;
pub mod analysis;
pub mod dbscan;
pub mod knee;
pub mod tsne;

pub use analysis::{cluster, ClusterError, ClusterOptions, ClusterReport};
