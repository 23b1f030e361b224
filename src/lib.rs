//! defectkit: industrial visual anomaly detection — train small models, export them to
//! ONNX, quantize them and deploy them anywhere.
//!
//! This crate is laid out as described in `shared/DESIGN.md`: configuration composition
//! ([`config`]), the data layer ([`data`]), models and training ([`models`], [`train`],
//! feature `train`), ONNX export ([`export`], feature `train`), and the deployment side
//! that never touches Burn: ONNX files ([`onnx`]), ONNX Runtime ([`runtime`]), the HDF5
//! embedding store ([`store`]) and [`embed`].

pub mod config;
pub mod data;
pub mod embed;
#[cfg(feature = "train")]
pub mod export;
pub mod fsutil;
pub mod logging;
pub mod metrics;
#[cfg(feature = "train")]
pub mod models;
pub mod onnx;
pub mod plot;
pub mod runtime;
pub mod store;
#[cfg(feature = "train")]
pub mod train;
