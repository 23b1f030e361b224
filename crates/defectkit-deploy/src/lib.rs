//! defectkit-deploy: the deployment side. It runs exported ONNX models with ONNX Runtime
//! ([`runtime`]) through one shared decode → preprocess → run loop ([`pipeline`]), and
//! stores what they produce ([`store`]: embeddings in HDF5; [`embed`](mod@embed): the `embed` verb).
//! [`anomaly`] holds the detectors fitted on embeddings (on [`stats`]), [`detect`] the
//! `detect` verb that fits, thresholds and evaluates them, and [`score`] the `score` verb
//! that batch-scores image folders with a model and a fitted detector.
//!
//! It meets the training side only at the ONNX file and its metadata
//! ([`defectkit_core::onnx`]): this crate has no Burn dependency, so importing Burn here is a
//! compile error (ARCHITECTURE.md, seam 1).
//!
//! ```no_run
//! use defectkit_deploy::runtime::{OnnxModel, RuntimeOptions};
//!
//! let mut model = OnnxModel::load("exports/a/model.onnx".as_ref(), &RuntimeOptions::default())?;
//! let input = vec![0.0f32; model.sample_len()];
//! let out = model.run(&input)?;
//! println!("{} classes, embedding of {}", model.metadata.classes.len(), out.embedding.len());
//! # Ok::<(), defectkit_deploy::runtime::RuntimeError>(())
//! ```

pub mod anomaly;
pub mod bench;
pub mod cluster;
pub mod detect;
pub mod embed;
pub mod pipeline;
pub mod quantize;
pub mod report;
pub mod runtime;
pub mod score;
pub mod stats;
pub mod store;

pub use embed::{embed, EmbedError, EmbedOptions, EmbedReport};
pub use runtime::{ExecutionProvider, OnnxModel, RuntimeError, RuntimeOptions};
pub use store::EmbeddingStore;
