//! Training the ResNet-18 teacher before B distils from it: a plain classifier task,
//! fine-tuned from torchvision weights or trained here from scratch, cached between runs.

use std::path::PathBuf;

use burn::prelude::*;

use defectkit_core::config::schema::{Config, LoggerConfig, TeacherConfig};
use defectkit_core::logging::RunLogger;
use defectkit_core::onnx::ModelKind;
use defectkit_core::run::checkpoint_dir;

use super::{ResNet18, ResNet18Config};
use crate::models::load_torch_weights;
use crate::train::data::{Batch, DataModule};
use crate::train::task::{cross_entropy_step, Metrics, TaskModule};
use crate::train::trainer::fit;
use crate::train::{write_loss_curve, JobContext, TrainError};

/// The ResNet-18 teacher, trained (or fine-tuned) as a plain classifier before distilling.
#[derive(Debug, Default)]
pub struct TeacherTask;

impl TaskModule for TeacherTask {
    type Model = ResNet18;

    fn kind(&self) -> ModelKind {
        ModelKind::Teacher
    }

    fn training_step(&self, model: &ResNet18, batch: &Batch) -> (Tensor<1>, Metrics) {
        cross_entropy_step(model.forward(batch.images.clone()).logits, batch)
    }
}

/// Where a teacher trained here is cached, keyed by everything that shapes it.
pub fn cache_path(cfg: &Config, classes: &[String], teacher: &TeacherConfig) -> PathBuf {
    let key = format!(
        "{}|{:?}|{:?}|{}|{}|{}|{}|{}",
        cfg.data.root.display(),
        classes,
        cfg.data.preprocess,
        cfg.data.val_fraction,
        cfg.data.split_seed,
        teacher.train_epochs,
        cfg.trainer.seed,
        cfg.trainer.lr
    );
    let hash = defectkit_core::data::synth::fnv1a(&key);
    cfg.paths
        .root_dir
        .join("outputs/teachers")
        .join(format!("resnet18-{hash:016x}.bpk"))
}

/// The ResNet-18 teacher for model B: torchvision weights fine-tuned on our categories,
/// or trained here from scratch (said loudly), cached and reused.
pub fn prepare(teacher: &TeacherConfig, ctx: &JobContext<'_>) -> Result<ResNet18, TrainError> {
    let (cfg, data, run_dir, device) = (ctx.cfg, ctx.data, ctx.run_dir, ctx.device);
    let classes = data.class_names().to_vec();
    let teacher_cfg = ResNet18Config::new().with_num_classes(classes.len());
    let cache = cache_path(cfg, &classes, teacher);
    if teacher.weights.is_none() && cache.is_file() {
        eprintln!(
            "teacher: reusing the ResNet-18 trained earlier on this data: {}",
            cache.display()
        );
        return teacher_cfg
            .init(device)
            .try_load_file(&cache)
            .map_err(|e| TrainError::Checkpoint(format!("{}: {e:?}", cache.display())));
    }
    let mut model = teacher_cfg.init(device);
    match &teacher.weights {
        Some(path) => {
            // The ImageNet head has 1000 outputs: load everything but `fc`, then fine-tune.
            load_torch_weights(
                &mut model,
                path,
                super::TORCHVISION_RESNET18_REMAP,
                Some(r"^(stem|layer3|layer4)\."),
                false,
            )?;
            eprintln!(
                "teacher: loaded torchvision ResNet-18 weights from {}; fine-tuning on {} categories for {} epochs",
                path.display(),
                classes.len(),
                teacher.train_epochs
            );
        }
        None => eprintln!(
            "\n*** teacher: no model.teacher.weights given: TRAINING A RESNET-18 TEACHER FROM SCRATCH \
             on this data ({} epochs) before distilling. Pretrained torchvision weights \
             (model.teacher.weights=resnet18.pth) make a far better teacher. ***\n",
            teacher.train_epochs
        ),
    }
    let teacher_dir = run_dir.join("teacher");
    let mut tcfg = cfg.trainer.clone();
    tcfg.max_epochs = teacher.train_epochs;
    tcfg.resume = None;
    let mut logger = RunLogger::start(
        &teacher_dir,
        &LoggerConfig::Csv {},
        "teacher",
        &serde_json::Value::Null,
    )?;
    let outcome = fit(
        &TeacherTask,
        model,
        data,
        &tcfg,
        &teacher_dir,
        &mut logger,
        device,
        None,
    )?;
    logger.finish(&serde_json::Value::Null)?;
    write_loss_curve(&teacher_dir, &outcome.history, outcome.best_epoch)?;
    eprintln!(
        "teacher: done, val accuracy {:.3}",
        outcome.val.get("val/accuracy").copied().unwrap_or(f64::NAN)
    );
    if teacher.weights.is_none() {
        if let Some(parent) = cache.parent() {
            std::fs::create_dir_all(parent).map_err(|e| TrainError::Checkpoint(e.to_string()))?;
        }
        // Through a temp file + rename: a run killed mid-copy must not leave a truncated
        // cache that the next run (a study's redone step) would load.
        let best = checkpoint_dir(&teacher_dir).join("best.bpk");
        std::fs::read(&best)
            .and_then(|bytes| defectkit_core::fsutil::write_atomic(&cache, &bytes))
            .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", cache.display())))?;
    }
    Ok(outcome.best)
}
