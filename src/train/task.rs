//! Task modules (Lightning's `LightningModule` shape): what a training, validation and test
//! step compute for each model of the experiment, and which optimizer trains it.
//!
//! - A ([`ClassifierTask`]): cross-entropy over the categories, from random init.
//! - B ([`DistillTask`]): α·T²·KL + (1−α)·CE + β·MSE(conv3_x) against a frozen teacher.
//! - C ([`AutoencoderTask`]): MSE reconstruction in normalized space.

use std::collections::BTreeMap;

use burn::grad_clipping::GradientClippingConfig;
use burn::module::Module;
use burn::nn::loss::{CrossEntropyLossConfig, MseLoss, Reduction};
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, AdamWConfig, ModuleOptimizer, SgdConfig};
use burn::prelude::*;

use super::data::Batch;
use crate::config::schema::{OptimizerKind, TrainerConfig};
use crate::models::{Classifier, Distiller, ResNet18, UNet};

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
        if let Some(a) = crate::metrics::auroc(&scores, &labels) {
            out.insert(format!("{prefix}/auroc"), a);
        }
        out
    }
}

/// Lightning-shaped task: steps and optimizer for one model type.
pub trait TaskModule {
    /// The trainable module.
    type Model: Module + std::fmt::Debug;
    /// Short name for logs (`cnn_scratch`, …).
    fn name(&self) -> &'static str;
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

fn scalar(t: &Tensor<1>) -> f64 {
    t.clone().into_scalar::<f32>() as f64
}

fn accuracy(logits: &Tensor<2>, targets: &Tensor<1, Int>) -> f64 {
    let pred = logits.clone().argmax(1).flatten::<1>(0, 1);
    let n = targets.dims()[0].max(1);
    let correct = pred.equal(targets.clone()).int().sum().into_scalar::<i64>();
    correct as f64 / n as f64
}

/// Cross-entropy loss and accuracy of `logits` against the batch's category targets.
fn cross_entropy_step(logits: Tensor<2>, batch: &Batch) -> (Tensor<1>, Metrics) {
    let loss = CrossEntropyLossConfig::new()
        .init(&logits.device())
        .forward(logits.clone(), batch.targets.clone());
    let mut m = Metrics::default();
    m.add("loss", scalar(&loss), batch.len());
    m.add("accuracy", accuracy(&logits, &batch.targets), batch.len());
    (loss, m)
}

/// Model A: cross-entropy over the categories.
#[derive(Debug, Default)]
pub struct ClassifierTask;

impl TaskModule for ClassifierTask {
    type Model = Classifier;

    fn name(&self) -> &'static str {
        "cnn_scratch"
    }

    fn training_step(&self, model: &Classifier, batch: &Batch) -> (Tensor<1>, Metrics) {
        cross_entropy_step(model.forward(batch.images.clone()).logits, batch)
    }
}

/// The ResNet-18 teacher, trained (or fine-tuned) as a plain classifier before distilling.
#[derive(Debug, Default)]
pub struct TeacherTask;

impl TaskModule for TeacherTask {
    type Model = ResNet18;

    fn name(&self) -> &'static str {
        "teacher_resnet18"
    }

    fn training_step(&self, model: &ResNet18, batch: &Batch) -> (Tensor<1>, Metrics) {
        cross_entropy_step(model.forward(batch.images.clone()).logits, batch)
    }
}

/// Model B: the student distilled from a frozen teacher.
#[derive(Debug, Default)]
pub struct DistillTask;

impl TaskModule for DistillTask {
    type Model = Distiller;

    fn name(&self) -> &'static str {
        "cnn_distilled"
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
}

/// Model C: reconstruction loss, MSE in normalized space plus an optional SSIM term:
/// `loss = mse + ssim_weight · (1 − SSIM)`.
#[derive(Debug, Clone)]
pub struct AutoencoderTask {
    /// Weight of the `1 − SSIM` term (0 = MSE only).
    pub ssim_weight: f64,
    /// Dynamic range of the normalized pixels (1/std for [0, 1] images), for SSIM's constants.
    pub data_range: f64,
}

impl Default for AutoencoderTask {
    fn default() -> Self {
        Self {
            ssim_weight: 0.0,
            data_range: 1.0 / 0.226,
        }
    }
}

/// `1 − mean SSIM` over 7×7 box windows (stride 1, no padding), with the usual constants
/// `C1 = (0.01·range)²`, `C2 = (0.03·range)²`. Images must be at least 7 px.
pub fn ssim_loss(x: Tensor<4>, y: Tensor<4>, data_range: f64) -> Tensor<1> {
    use burn::tensor::module::avg_pool2d;
    use burn::tensor::ops::AvgPoolOptions;
    let pool = |t: Tensor<4>| avg_pool2d(t, AvgPoolOptions::new([7, 7]).with_stride([1, 1]));
    let c1 = (0.01 * data_range).powi(2);
    let c2 = (0.03 * data_range).powi(2);
    let mx = pool(x.clone());
    let my = pool(y.clone());
    let sxx = pool(x.clone() * x.clone()) - mx.clone() * mx.clone();
    let syy = pool(y.clone() * y.clone()) - my.clone() * my.clone();
    let sxy = pool(x * y) - mx.clone() * my.clone();
    let num = (mx.clone() * my.clone()).mul_scalar(2.0).add_scalar(c1)
        * sxy.mul_scalar(2.0).add_scalar(c2);
    let den = (mx.clone() * mx + my.clone() * my).add_scalar(c1) * (sxx + syy).add_scalar(c2);
    (num / den).mean().neg().add_scalar(1.0)
}

/// Per-image mean squared reconstruction error `[B]`.
pub fn per_image_error(reconstruction: Tensor<4>, input: Tensor<4>) -> Vec<f64> {
    let [b, _, _, _] = input.dims();
    let err = (reconstruction - input)
        .powf_scalar(2.0)
        .reshape([b as i32, -1])
        .mean_dim(1);
    err.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map(|v| v.into_iter().map(f64::from).collect())
        .unwrap_or_default()
}

impl TaskModule for AutoencoderTask {
    type Model = UNet;

    fn name(&self) -> &'static str {
        "unet_ae"
    }

    fn training_step(&self, model: &UNet, batch: &Batch) -> (Tensor<1>, Metrics) {
        let out = model.forward(batch.images.clone());
        let mse = MseLoss::new().forward(
            out.reconstruction.clone(),
            batch.images.clone(),
            Reduction::Mean,
        );
        let mut m = Metrics::default();
        m.add("mse", scalar(&mse), batch.len());
        let loss = if self.ssim_weight > 0.0 {
            let ssim = ssim_loss(out.reconstruction, batch.images.clone(), self.data_range);
            m.add("ssim", 1.0 - scalar(&ssim), batch.len());
            mse + ssim.mul_scalar(self.ssim_weight)
        } else {
            mse
        };
        m.add("loss", scalar(&loss), batch.len());
        (loss, m)
    }

    fn test_step(&self, model: &UNet, batch: &Batch) -> Metrics {
        let out = model.forward(batch.images.clone());
        let errors = per_image_error(out.reconstruction, batch.images.clone());
        let mut m = Metrics::default();
        for (e, a) in errors.iter().zip(&batch.anomaly) {
            m.add("loss", *e, 1);
            m.add(
                if *a == 0 {
                    "recon_error_good"
                } else {
                    "recon_error_defective"
                },
                *e,
                1,
            );
            m.add_score(*e, *a == 1);
        }
        m
    }
}
