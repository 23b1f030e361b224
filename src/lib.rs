//! defectkit: industrial visual anomaly detection — train small models, export them to
//! ONNX, quantize them and deploy them anywhere.
//!
//! This crate is laid out as described in `shared/DESIGN.md`: configuration composition
//! ([`config`]), the data layer ([`data`]), and small shared utilities.

pub mod config;
pub mod data;
pub mod fsutil;
pub mod logging;
pub mod metrics;
#[cfg(feature = "train")]
pub mod models;
pub mod plot;
#[cfg(feature = "train")]
pub mod train;
