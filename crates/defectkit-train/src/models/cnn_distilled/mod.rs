//! Model B: knowledge distillation of a [`Classifier`] student (model A's network) from a
//! frozen [`ResNet18`] teacher ([`task::DistillTask`]). See README.md beside this file.
//!
//! loss = α·T²·KL(softmax(t/T) ‖ softmax(s/T)) + (1−α)·CE(s, y) + β·MSE(a(s₃), t₃)
//!
//! where `s`/`t` are student/teacher logits, `s₃`/`t₃` their conv3_x maps and `a` a trainable
//! 1×1 convolution when the channel counts differ (identity for a width-64 student).

pub mod task;

use std::path::PathBuf;

use burn::nn::conv::Conv2d;
use burn::nn::loss::{CrossEntropyLossConfig, KLDivLoss, MseLoss, Reduction};
use burn::prelude::*;
use burn::tensor::activation::log_softmax;

use crate::models::blocks::conv1x1;
use crate::models::cnn_scratch::{Classifier, ClassifierOutput};
use crate::models::teacher::ResNet18;

use defectkit_core::config::schema::DistilledConfig;
use defectkit_core::onnx::ModelKind;

use crate::export::{load_checkpoint, ExportError, ExportTarget, Network, RunContext};
use crate::models::{cnn_scratch, teacher, ModelEntry, ResNet18Config};
use crate::train::{JobContext, TaskSetup, TrainError};

/// The student's own checkpoint in the run's `checkpoints/` (what export reads for B).
pub const STUDENT_CHECKPOINT: &str = "student.bpk";

/// Weights of the distillation loss terms.
#[derive(Config, Debug)]
pub struct DistillConfig {
    /// Weight of the soft-target KL term; `1 − alpha` weighs the hard-label cross-entropy.
    #[config(default = 0.5)]
    pub alpha: f64,
    /// Softmax temperature `T` (the KL term is scaled by `T²`).
    #[config(default = 4.0)]
    pub temperature: f64,
    /// Weight of the conv3_x feature-matching MSE.
    #[config(default = 1.0)]
    pub beta: f64,
}

impl DistillConfig {
    /// Wraps `student` and `teacher`; the teacher is frozen (no gradients, batch norm in
    /// inference mode, dropout off), so an optimizer stepping the wrapper only updates the
    /// student and the feature adapter.
    pub fn init(&self, student: Classifier, teacher: ResNet18, device: &Device) -> Distiller {
        let student_channels = student.stem.out_channels();
        let teacher_channels = teacher.stem.out_channels();
        let adapter = (student_channels != teacher_channels)
            .then(|| conv1x1(student_channels, teacher_channels, 1, device));
        Distiller {
            student,
            adapter,
            teacher: teacher.freeze(),
            alpha: self.alpha,
            temperature: self.temperature,
            beta: self.beta,
        }
    }
}

/// The terms of one distillation loss evaluation (each `[1]`).
#[derive(Debug, Clone)]
pub struct DistillLoss {
    /// Weighted sum of the terms: call `backward()` on this.
    pub total: Tensor<1>,
    /// KL(softmax(t/T) ‖ softmax(s/T)), unweighted (batch mean).
    pub kl: Tensor<1>,
    /// Cross-entropy with the hard labels, unweighted.
    pub ce: Tensor<1>,
    /// Feature MSE, unweighted.
    pub feature: Tensor<1>,
}

/// Student + frozen teacher + optional feature adapter.
#[derive(Module, Debug)]
pub struct Distiller {
    /// The model being trained.
    pub student: Classifier,
    /// 1×1 projection of the student's conv3_x to the teacher's channels, if they differ.
    pub adapter: Option<Conv2d>,
    /// Frozen teacher.
    pub teacher: ResNet18,
    /// KL weight α.
    pub alpha: f64,
    /// Temperature T.
    pub temperature: f64,
    /// Feature-MSE weight β.
    pub beta: f64,
}

impl Distiller {
    /// Student forward pass and distillation loss for `images` with class `targets`.
    pub fn forward(
        &self,
        images: Tensor<4>,
        targets: Tensor<1, Int>,
    ) -> (ClassifierOutput, DistillLoss) {
        let teacher = self.teacher.forward(images.clone().detach());
        let student = self.student.forward(images);
        let loss = self.loss(
            &student,
            teacher.logits.detach(),
            teacher.features.detach(),
            targets,
        );
        (student, loss)
    }

    /// The distillation loss given precomputed (e.g. cached) teacher outputs.
    pub fn loss(
        &self,
        student: &ClassifierOutput,
        teacher_logits: Tensor<2>,
        teacher_features: Tensor<4>,
        targets: Tensor<1, Int>,
    ) -> DistillLoss {
        let t = self.temperature;
        let log_p_student = log_softmax(student.logits.clone().div_scalar(t), 1);
        let log_p_teacher = log_softmax(teacher_logits.div_scalar(t), 1);
        let kl = KLDivLoss { log_target: true }.forward(
            log_p_student,
            log_p_teacher,
            Reduction::BatchMean,
        );

        let ce = CrossEntropyLossConfig::new()
            .init(&student.logits.device())
            .forward(student.logits.clone(), targets);

        let features = match &self.adapter {
            Some(adapter) => adapter.forward(student.features.clone()),
            None => student.features.clone(),
        };
        let feature = MseLoss::new().forward(features, teacher_features, Reduction::Mean);

        let total = kl.clone().mul_scalar(self.alpha * t * t)
            + ce.clone().mul_scalar(1.0 - self.alpha)
            + feature.clone().mul_scalar(self.beta);
        DistillLoss {
            total,
            kl,
            ce,
            feature,
        }
    }
}

/// Model B's entry in the registry ([`crate::models::visit`]).
pub struct CnnDistilled;

impl ModelEntry for CnnDistilled {
    type Schema = DistilledConfig;
    type Task = task::DistillTask;

    fn setup(
        m: &DistilledConfig,
        ctx: &JobContext<'_>,
    ) -> Result<TaskSetup<Self::Task>, TrainError> {
        let teacher = teacher::task::prepare(&m.teacher, ctx)?;
        // Burn's RNG is process-wide: training the teacher here draws from it, loading a
        // cached one does not. Re-seed so the student starts the same either way (a study's
        // B runs must not depend on which of them trained the shared teacher).
        ctx.device.seed(ctx.cfg.trainer.seed);
        let n = ctx.num_classes();
        let student = cnn_scratch::from_schema(n, m.width, &m.head).init(ctx.device);
        let parameters = student.num_params();
        let model = DistillConfig::new()
            .with_alpha(m.distill.alpha)
            .with_temperature(m.distill.temperature)
            .with_beta(m.distill.beta)
            .init(student, teacher, ctx.device);
        Ok(TaskSetup {
            task: task::DistillTask,
            model,
            parameters,
            flops_per_image: cnn_scratch::flops_per_image(m.width, &m.head, n, ctx.input_side()),
        })
    }

    fn load_trained(
        m: &DistilledConfig,
        run: &RunContext<'_>,
        target: ExportTarget,
    ) -> Result<(Network, PathBuf), ExportError> {
        match target {
            ExportTarget::Model => cnn_scratch::load_classifier(
                run,
                ModelKind::CnnDistilled,
                m.width,
                &m.head,
                STUDENT_CHECKPOINT,
            ),
            ExportTarget::Teacher => {
                // Trained in this run, or reused from the teacher cache.
                let here = checkpoint_dir_of_teacher(run);
                let path = if here.is_file() {
                    here
                } else {
                    teacher::task::cache_path(run.config, run.classes, &m.teacher)
                };
                let model = ResNet18Config::new()
                    .with_num_classes(run.classes.len())
                    .init(run.device);
                let loaded = load_checkpoint(model, &path)?;
                Ok((Network::new(ModelKind::Teacher, loaded), path))
            }
        }
    }
}

/// The teacher's best checkpoint when it was trained inside the run (`teacher/`).
fn checkpoint_dir_of_teacher(run: &RunContext<'_>) -> PathBuf {
    defectkit_core::run::checkpoint_dir(&run.run_dir.join("teacher")).join("best.bpk")
}
