//! defectkit: industrial visual anomaly detection — train small models, export them to
//! ONNX, quantize them and deploy them anywhere.
//!
//! This package is the `defectkit` binary and one facade over the workspace
//! (ARCHITECTURE.md): [`defectkit_core`] (configuration, data, the run-dir and ONNX-file
//! contracts), [`defectkit_train`] (the Burn side: models, training, export; feature
//! `train`) and [`defectkit_deploy`] (the ONNX Runtime side, which never touches Burn). The
//! modules are re-exported under their own names, so `defectkit::config`,
//! `defectkit::train` or `defectkit::runtime` work without naming the member crates.

pub use defectkit_core::{
    config, data, fsutil, interrupt, logging, metrics, onnx, paths, plot, run,
};

pub mod study;
pub use defectkit_deploy::{
    anomaly, bench, cluster, detect, embed, pipeline, quantize, report, runtime, score, stats,
    store,
};
#[cfg(feature = "train")]
pub use defectkit_train::{burn, burn_onnx, export, models, train};
