//! Model A's task: cross-entropy over the categories, from random initialization.

use burn::prelude::*;

use defectkit_core::onnx::ModelKind;

use super::Classifier;
use crate::train::data::Batch;
use crate::train::task::{cross_entropy_step, Metrics, TaskModule};

/// Model A: cross-entropy over the categories.
#[derive(Debug, Default)]
pub struct ClassifierTask;

impl TaskModule for ClassifierTask {
    type Model = Classifier;

    fn kind(&self) -> ModelKind {
        ModelKind::CnnScratch
    }

    fn training_step(&self, model: &Classifier, batch: &Batch) -> (Tensor<1>, Metrics) {
        cross_entropy_step(model.forward(batch.images.clone()).logits, batch)
    }
}
