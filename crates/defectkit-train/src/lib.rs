//! defectkit-train: the training side, in Burn. The networks ([`models`]: A, the scratch
//! ResNet-18 prefix classifier; B, the same network distilled from a ResNet-18 teacher; C,
//! the U-Net autoencoder), the Lightning-shaped trainer ([`train`]) that turns a typed
//! config into a run dir, and ONNX export ([`export`]) that turns a run dir into an ONNX
//! file with defectkit's metadata: the only two things the deployment side ever sees
//! (ARCHITECTURE.md, seam 1).
//!
//! ```no_run
//! use defectkit_core::config::Loader;
//!
//! let loader = Loader::new(&defectkit_core::paths::config_dir(), "config", "train")?;
//! let mut composed = loader.compose(&["trainer=fast".to_string()])?;
//! let cfg = loader.typed(&composed)?;
//! let run = loader.create_run_dir(&mut composed)?;
//! let summary = defectkit_train::train::train_job(&cfg, &composed.overrides, &run.path)?;
//! println!("best {} = {:?}", summary.monitor, summary.best_metric);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod export;
pub mod models;
pub mod train;

/// Burn itself, re-exported so tools built on this crate use the same version.
pub use burn;
/// burn-onnx, re-exported for the same reason.
pub use burn_onnx;
