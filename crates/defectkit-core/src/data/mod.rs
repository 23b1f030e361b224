//! The data layer: the MVTec AD reader, the synthetic MVTec-like generator, the one
//! preprocessing spec, image decoding and the decoded-image cache.

pub mod cache;
pub mod check;
pub mod error;
pub mod image_io;
pub mod mvtec;
pub mod preprocess;
pub mod synth;

pub use error::DataError;
pub use preprocess::PreprocessSpec;
