//! Model B's task: the student distilled from a frozen teacher,
//! α·T²·KL + (1−α)·CE + β·MSE(conv3_x).

use std::path::PathBuf;

use burn::prelude::*;

use defectkit_core::onnx::ModelKind;
use defectkit_core::run::checkpoint_dir;

use super::{Distiller, STUDENT_CHECKPOINT};
use crate::train::data::Batch;
use crate::train::task::{accuracy, scalar, Metrics, TaskModule};
use crate::train::{JobContext, TrainError};

/// Model B: the student distilled from a frozen teacher.
#[derive(Debug, Default)]
pub struct DistillTask;

impl TaskModule for DistillTask {
    type Model = Distiller;

    fn kind(&self) -> ModelKind {
        ModelKind::CnnDistilled
    }

    fn training_step(&self, model: &Distiller, batch: &Batch) -> (Tensor<1>, Metrics) {
        let (out, loss) = model.forward(batch.images.clone(), batch.targets.clone());
        let n = batch.len();
        let mut m = Metrics::default();
        m.add("loss", scalar(&loss.total), n);
        m.add("kl", scalar(&loss.kl), n);
        m.add("ce", scalar(&loss.ce), n);
        m.add("feature_mse", scalar(&loss.feature), n);
        m.add("accuracy", accuracy(&out.logits, &batch.targets), n);
        (loss.total, m)
    }

    /// The deployable model is the student alone: saved apart from the distiller as
    /// `checkpoints/student.bpk`, which export reads.
    fn on_fit_end(
        &self,
        best: &Distiller,
        ctx: &JobContext<'_>,
    ) -> Result<Vec<(String, PathBuf)>, TrainError> {
        let path = checkpoint_dir(ctx.run_dir).join(STUDENT_CHECKPOINT);
        best.student
            .valid()
            .save_file(&path)
            .map_err(|e| TrainError::Checkpoint(format!("{}: {e:?}", path.display())))?;
        Ok(Vec::new())
    }
}
