//! defectkit-core: what both sides of defectkit share and nothing else — configuration
//! composition ([`config`]), the data layer ([`data`]), the two contracts between training
//! and deployment ([`run`]: the run dir; [`onnx`]: the ONNX file and its metadata), and the
//! small services every stage uses ([`metrics`], [`plot`], [`logging`], [`fsutil`],
//! [`paths`]). It depends on neither Burn nor ONNX Runtime (ARCHITECTURE.md, seam 1).
//!
//! ```no_run
//! use defectkit_core::config::Loader;
//!
//! let loader = Loader::new(&defectkit_core::paths::config_dir(), "config", "app")?;
//! let composed = loader.compose(&["model=unet_ae".to_string()])?;
//! let cfg = loader.typed(&composed)?;
//! println!("training {:?} on {}", cfg.model, cfg.data.root.display());
//! # Ok::<(), defectkit_core::config::ConfigError>(())
//! ```

pub mod config;
pub mod data;
pub mod fsutil;
pub mod interrupt;
pub mod logging;
pub mod metrics;
pub mod onnx;
pub mod paths;
pub mod plot;
pub mod rng;
pub mod run;
pub mod study;

pub use config::{Config, ConfigError, Loader};
pub use data::{DataError, PreprocessSpec};
pub use onnx::{ModelKind, ModelMetadata};
pub use run::RunSummary;
