//! The task module (Lightning's `LightningModule` shape): what a training, validation and
//! test step compute, which optimizer trains the model and what is left to do once the fit
//! ends. Each model implements it in its own folder (`models/<m>/task.rs`); this file holds
//! the trait and the pieces the tasks share (metric sums, the optimizer, cross-entropy).

use std::collections::BTreeMap;

use burn::grad_clipping::GradientClippingConfig;
use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, AdamWConfig, ModuleOptimizer, SgdConfig};
use burn::prelude::*;

use std::path::PathBuf;

use defectkit_core::config::schema::{OptimizerKind, TrainerConfig};
use defectkit_core::onnx::ModelKind;

use super::data::Batch;
use super::{JobContext, TrainError};

/// Sums of per-image metric values, averaged at the end of an epoch.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    sums: BTreeMap<String, (f64, usize)>,
    /// Per-image anomaly scores with their labels (1 = defective), for AUROC.
    scores: Vec<(f64, bool)>,
}

impl Metrics {
    /// Add `value` averaged over `count` images.
    pub fn add(&mut self, name: &str, value: f64, count: usize) {
        let e = self.sums.entry(name.to_string()).or_insert((0.0, 0));
        e.0 += value * count as f64;
        e.1 += count;
    }

    /// Record one image's anomaly score (higher = more anomalous).
    pub fn add_score(&mut self, score: f64, defective: bool) {
        self.scores.push((score, defective));
    }

    /// Merge another batch's metrics.
    pub fn merge(&mut self, other: &Metrics) {
        self.scores.extend_from_slice(&other.scores);
        for (k, (s, n)) in &other.sums {
            let e = self.sums.entry(k.clone()).or_insert((0.0, 0));
            e.0 += s;
            e.1 += n;
        }
    }

    /// Means, each name prefixed (`val/loss`).
    pub fn means(&self, prefix: &str) -> BTreeMap<String, f64> {
        let mut out: BTreeMap<String, f64> = self
            .sums
            .iter()
            .filter(|(_, (_, n))| *n > 0)
            .map(|(k, (s, n))| (format!("{prefix}/{k}"), s / *n as f64))
            .collect();
        let (scores, labels): (Vec<f64>, Vec<bool>) = self.scores.iter().copied().unzip();
        if let Some(a) = defectkit_core::metrics::auroc(&scores, &labels) {
            out.insert(format!("{prefix}/auroc"), a);
        }
        out
    }
}

/// Lightning-shaped task: steps and optimizer for one model type.
pub trait TaskModule {
    /// The trainable module.
    type Model: Module + std::fmt::Debug;
    /// Which model this task trains (its one spelling in logs, run dirs and metadata).
    fn kind(&self) -> ModelKind;
    /// Loss (to backpropagate) and metrics of one training batch.
    fn training_step(&self, model: &Self::Model, batch: &Batch) -> (Tensor<1>, Metrics);
    /// Metrics of one validation batch (model in eval mode, no autodiff); by default the
    /// training step's metrics.
    fn validation_step(&self, model: &Self::Model, batch: &Batch) -> Metrics {
        self.training_step(model, batch).1
    }
    /// Metrics of one test batch (good and defective images); by default the training
    /// step's metrics.
    fn test_step(&self, model: &Self::Model, batch: &Batch) -> Metrics {
        self.training_step(model, batch).1
    }
    /// The optimizer for this task.
    fn configure_optimizers(&self, cfg: &TrainerConfig) -> ModuleOptimizer {
        build_optimizer(cfg)
    }
    /// Called with the best model once the fit ends, before the summary is written: extra
    /// files for the run dir (B's student, C's reconstruction grid). Returns the figures to
    /// log, as (logger key, PNG path).
    fn on_fit_end(
        &self,
        best: &Self::Model,
        ctx: &JobContext<'_>,
    ) -> Result<Vec<(String, PathBuf)>, TrainError> {
        let _ = (best, ctx);
        Ok(Vec::new())
    }
}

/// Adam / AdamW / SGD with the configured weight decay and optional gradient clipping.
pub fn build_optimizer(cfg: &TrainerConfig) -> ModuleOptimizer {
    let clip = cfg
        .gradient_clip
        .map(|c| GradientClippingConfig::Norm(c as f32));
    match cfg.optimizer {
        OptimizerKind::Adamw => AdamWConfig::new()
            .with_weight_decay(cfg.weight_decay as f32)
            .with_grad_clipping(clip)
            .init(),
        OptimizerKind::Adam => AdamConfig::new()
            .with_weight_decay(
                (cfg.weight_decay > 0.0)
                    .then(|| burn::optim::decay::WeightDecayConfig::new(cfg.weight_decay as f32)),
            )
            .with_grad_clipping(clip)
            .init(),
        OptimizerKind::Sgd => SgdConfig::new()
            .with_momentum(Some(MomentumConfig::new().with_momentum(0.9)))
            .with_weight_decay(
                (cfg.weight_decay > 0.0)
                    .then(|| burn::optim::decay::WeightDecayConfig::new(cfg.weight_decay as f32)),
            )
            .with_gradient_clipping(clip)
            .init(),
    }
}

/// A one-element tensor as `f64`.
pub(crate) fn scalar(t: &Tensor<1>) -> f64 {
    t.clone().into_scalar::<f32>() as f64
}

/// Top-1 accuracy of `logits` against `targets`.
pub(crate) fn accuracy(logits: &Tensor<2>, targets: &Tensor<1, Int>) -> f64 {
    let pred = logits.clone().argmax(1).flatten::<1>(0, 1);
    let n = targets.dims()[0].max(1);
    let correct = pred.equal(targets.clone()).int().sum().into_scalar::<i64>();
    correct as f64 / n as f64
}

/// Cross-entropy loss and accuracy of `logits` against the batch's category targets.
pub(crate) fn cross_entropy_step(logits: Tensor<2>, batch: &Batch) -> (Tensor<1>, Metrics) {
    let loss = CrossEntropyLossConfig::new()
        .init(&logits.device())
        .forward(logits.clone(), batch.targets.clone());
    let mut m = Metrics::default();
    m.add("loss", scalar(&loss), batch.len());
    m.add("accuracy", accuracy(&logits, &batch.targets), batch.len());
    (loss, m)
}
