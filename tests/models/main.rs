//! Integration tests of the models module: shapes, parameter paths, weight loading,
//! training steps, checkpointing, ONNX export and (ignored) throughput.

mod bench;
mod common;
mod export;
mod fixtures;
mod shapes;
mod training;
mod weights;
