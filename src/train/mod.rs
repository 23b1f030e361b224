//! Training (design seam 4): Lightning-shaped [`data::DataModule`] and
//! [`task::TaskModule`] traits, one [`trainer::fit`] loop for any task, and [`train_job`],
//! which turns a typed config and a run dir into a trained model, its checkpoints, metric
//! files, figures and `summary.json`.

pub mod data;
pub mod early_stopping;
pub mod summary;
pub mod task;
pub mod trainer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::prelude::*;

use crate::config::schema::{
    Config, Device as DeviceKind, ModelConfig, TeacherConfig, TrainerConfig,
};
use crate::data::mvtec::Split;
use crate::logging::{LogError, RunLogger};
use crate::models::{
    flops, load_torch_weights, Classifier, ClassifierConfig, DistillConfig, ResNet18,
    ResNet18Config, UNet, UNetConfig,
};
use data::{DataModule, ImageDataModule};
use summary::RunSummary;
use task::{AutoencoderTask, ClassifierTask, DistillTask, TeacherTask};
use trainer::{fit, FitOutcome, ResumePoint};

/// Everything that can end a training run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The data set could not be read.
    #[error(transparent)]
    DataSet(#[from] crate::data::DataError),
    /// Something about the data makes training impossible.
    #[error("{0}")]
    Data(String),
    /// The configuration cannot be trained as given.
    #[error("invalid training configuration: {0}")]
    Config(String),
    /// Metric files could not be written.
    #[error(transparent)]
    Log(#[from] LogError),
    /// A checkpoint could not be written or read.
    #[error("checkpoint error: {0}")]
    Checkpoint(String),
    /// `trainer.resume` points at nothing usable.
    #[error("cannot resume: {0}")]
    Resume(String),
    /// Teacher weights could not be loaded.
    #[error("teacher weights: {0}")]
    Weights(#[from] crate::models::WeightsError),
    /// The loss became NaN or infinite.
    #[error(
        "the loss became {value} at epoch {epoch}, step {step}; training stopped. The last good \
         checkpoint is {last_good} (lower trainer.lr or set trainer.gradient_clip)"
    )]
    NonFinite {
        /// Epoch (0-based).
        epoch: usize,
        /// Optimizer step.
        step: usize,
        /// The offending loss value.
        value: f64,
        /// The last checkpoint written before it.
        last_good: PathBuf,
    },
    /// Writing a figure or file failed.
    #[error("{0}")]
    Output(String),
}

/// The compute device for `trainer.device`, with autodiff for training. GPU devices need a
/// binary built with the `gpu-wgpu` / `gpu-cuda` features (`gpu` = both).
pub fn training_device(cfg: &TrainerConfig) -> Result<Device, TrainError> {
    let missing = |feature: &str| {
        TrainError::Config(format!(
            "trainer.device={:?} needs a binary built with `--features {feature}` (this one was \
             not); use trainer.device=cpu or rebuild",
            cfg.device
        ))
    };
    let device = match cfg.device {
        DeviceKind::Cpu => Device::flex(),
        #[cfg(feature = "gpu-wgpu")]
        DeviceKind::Wgpu => Device::wgpu(burn::tensor::DeviceKind::DefaultDevice),
        #[cfg(not(feature = "gpu-wgpu"))]
        DeviceKind::Wgpu => return Err(missing("gpu-wgpu")),
        #[cfg(feature = "gpu-cuda")]
        DeviceKind::Cuda => Device::cuda(0),
        #[cfg(not(feature = "gpu-cuda"))]
        DeviceKind::Cuda => return Err(missing("gpu-cuda")),
    };
    device.seed(cfg.seed);
    Ok(device.autodiff())
}

/// Model C's input side must be a multiple of 2^depth.
fn check_unet_size(side: usize, depth: usize) -> Result<(), TrainError> {
    if !(1..=6).contains(&depth) {
        return Err(TrainError::Config(format!(
            "model.depth must be 1..=6, got {depth}"
        )));
    }
    let f = 1usize << depth;
    if side < f || side % f != 0 {
        return Err(TrainError::Config(format!(
            "the U-Net needs an input size that is a multiple of 2^depth = {f}; got {side} \
             (set data.preprocess.resize/center_crop or model.depth)"
        )));
    }
    Ok(())
}

fn figure_err(e: impl std::fmt::Display) -> TrainError {
    TrainError::Output(e.to_string())
}

/// Train-vs-val loss per epoch, the best epoch marked: the overfitting picture.
pub fn write_loss_curve(
    run_dir: &Path,
    history: &[crate::logging::MetricRecord],
    best_epoch: Option<usize>,
) -> Result<PathBuf, TrainError> {
    let series_of = |name: &str| crate::plot::Series {
        name: name.to_string(),
        points: history
            .iter()
            .filter_map(|r| r.values.get(name).map(|v| ((r.epoch + 1) as f64, *v)))
            .collect(),
    };
    let path = run_dir.join("loss_curve.png");
    let opts = crate::plot::LineOptions {
        marker_x: best_epoch.map(|e| ((e + 1) as f64, format!("best (epoch {})", e + 1))),
        ..Default::default()
    };
    crate::plot::line_chart(
        &path,
        "Training vs validation loss",
        "epoch",
        "loss",
        &[series_of("train/loss"), series_of("val/loss")],
        &opts,
    )
    .map_err(figure_err)?;
    Ok(path)
}

/// Inputs, reconstructions and error maps of a few good and defective test images.
/// Test images for the reconstruction grid: a good and a defective image from each of up to
/// `max_classes` categories spread over the class list, so the figure shows more than one
/// kind of object or texture.
fn recon_grid_picks(test: &[crate::data::mvtec::Sample], max_classes: usize) -> Vec<usize> {
    let mut classes: Vec<usize> = test.iter().map(|s| s.class_index).collect();
    classes.sort_unstable();
    classes.dedup();
    let n = classes.len();
    let chosen: Vec<usize> = if n <= max_classes {
        classes
    } else {
        (0..max_classes)
            .map(|i| classes[i * n / max_classes])
            .collect()
    };
    let mut picks = Vec::new();
    for class in chosen {
        for good in [true, false] {
            if let Some(i) = test
                .iter()
                .position(|s| s.class_index == class && s.is_good() == good)
            {
                picks.push(i);
            }
        }
    }
    picks
}

fn write_recon_grid(
    run_dir: &Path,
    model: &UNet,
    data: &ImageDataModule,
    device: &Device,
) -> Result<PathBuf, TrainError> {
    let test = data.samples(Split::Test);
    let mut picks = recon_grid_picks(test, 4);
    if picks.is_empty() {
        picks = (0..data.len(Split::Val).min(4)).collect();
    }
    let split = if test.is_empty() {
        Split::Val
    } else {
        Split::Test
    };
    let batch = data.load(split, &picks, device)?;
    let out = model.forward(batch.images.clone());
    let spec = data.preprocess();
    let side = spec.input_size();
    let per = (3 * side * side) as usize;
    let inputs: Vec<f32> = batch
        .images
        .clone()
        .into_data()
        .convert::<f32>()
        .try_to_vec()
        .map_err(|e| figure_err(format!("{e:?}")))?;
    let recons: Vec<f32> = out
        .reconstruction
        .into_data()
        .convert::<f32>()
        .try_to_vec()
        .map_err(|e| figure_err(format!("{e:?}")))?;
    let mut maps = Vec::new();
    let mut max_err = 0f32;
    for i in 0..batch.len() {
        let plane = (side * side) as usize;
        let mut err = vec![0f32; plane];
        for c in 0..3 {
            for p in 0..plane {
                let d = inputs[i * per + c * plane + p] - recons[i * per + c * plane + p];
                err[p] += d * d / 3.0;
            }
        }
        max_err = err.iter().copied().fold(max_err, f32::max);
        maps.push(err);
    }
    let rows: Vec<crate::plot::GridRow> = (0..batch.len())
        .map(|i| {
            let s = &data.samples(split)[picks[i]];
            crate::plot::GridRow {
                label: format!("{} {}", s.class, s.defect.as_deref().unwrap_or("good")),
                images: vec![
                    crate::plot::chw_to_rgb(
                        &inputs[i * per..(i + 1) * per],
                        side,
                        side,
                        spec.mean,
                        spec.std,
                    ),
                    crate::plot::chw_to_rgb(
                        &recons[i * per..(i + 1) * per],
                        side,
                        side,
                        spec.mean,
                        spec.std,
                    ),
                    crate::plot::heatmap(&maps[i], side, side, max_err.max(1e-6)),
                ],
            }
        })
        .collect();
    let path = run_dir.join("reconstructions.png");
    crate::plot::image_grid(
        &path,
        "U-Net reconstructions (test images)",
        &[
            "input".into(),
            "reconstruction".into(),
            "squared error".into(),
        ],
        &rows,
        (side * 2).clamp(96, 192),
    )
    .map_err(figure_err)?;
    Ok(path)
}

/// Where a teacher trained here is cached, keyed by everything that shapes it.
pub(crate) fn teacher_cache_path(
    cfg: &Config,
    classes: &[String],
    teacher: &TeacherConfig,
) -> PathBuf {
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
    let hash = crate::data::synth::fnv1a(&key);
    cfg.paths
        .root_dir
        .join("outputs/teachers")
        .join(format!("resnet18-{hash:016x}.bpk"))
}

/// The ResNet-18 teacher for model B: torchvision weights fine-tuned on our categories,
/// or trained here from scratch (said loudly), cached and reused.
fn prepare_teacher(
    cfg: &Config,
    teacher: &TeacherConfig,
    data: &ImageDataModule,
    run_dir: &Path,
    device: &Device,
) -> Result<ResNet18, TrainError> {
    let classes = data.class_names().to_vec();
    let teacher_cfg = ResNet18Config::new().with_num_classes(classes.len());
    let cache = teacher_cache_path(cfg, &classes, teacher);
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
                crate::models::teacher::TORCHVISION_RESNET18_REMAP,
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
        &crate::config::schema::LoggerConfig::Csv {},
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
        std::fs::copy(
            trainer::checkpoint_dir(&teacher_dir).join("best.bpk"),
            &cache,
        )
        .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", cache.display())))?;
    }
    Ok(outcome.best)
}

/// Finish a run: figures, logger, summary.
#[allow(clippy::too_many_arguments)]
fn finish_run<M>(
    run_dir: &Path,
    mut logger: RunLogger,
    outcome: &FitOutcome<M>,
    model: &str,
    overrides: &[String],
    monitor: &str,
    parameters: usize,
    flops_per_image: u64,
    extra_figure: Option<PathBuf>,
    classes: &[String],
) -> Result<RunSummary, TrainError> {
    let curve = write_loss_curve(run_dir, &outcome.history, outcome.best_epoch)?;
    logger.log_image("curves/loss", &curve);
    if let Some(fig) = &extra_figure {
        logger.log_image("reconstructions", fig);
    }
    let mut metrics: BTreeMap<String, f64> = outcome.val.clone();
    metrics.extend(outcome.test.clone());
    let summary = RunSummary {
        model: model.to_string(),
        overrides: overrides.to_vec(),
        monitor: monitor.to_string(),
        best_metric: outcome.best_metric,
        best_epoch: outcome.best_epoch,
        epochs_run: outcome.epochs_run,
        early_stopped: outcome.early_stopped,
        parameters,
        flops_per_image,
        wall_seconds: outcome.seconds,
        metrics,
        best_checkpoint: PathBuf::from("checkpoints/best.bpk"),
        classes: classes.to_vec(),
    };
    summary
        .write(run_dir)
        .map_err(|e| TrainError::Output(format!("summary.json: {e}")))?;
    let json = serde_json::to_value(&summary).unwrap_or(serde_json::Value::Null);
    let report = logger.finish(&json)?;
    for w in report.warnings {
        eprintln!("warning: {w}");
    }
    Ok(summary)
}

/// Train the model of `cfg` into `run_dir` (already holding `.hydra/`). Returns the summary
/// that is also written to `run_dir/summary.json`.
pub fn train_job(
    cfg: &Config,
    overrides: &[String],
    run_dir: &Path,
) -> Result<RunSummary, TrainError> {
    let device = training_device(&cfg.trainer)?;
    let mut data = ImageDataModule::new(cfg.data.clone())?;
    data.setup()?;
    for w in data.warnings() {
        eprintln!("warning: {w}");
    }
    let n_classes = data.class_names().len();
    eprintln!(
        "data: {} categories, {} train / {} val / {} test images from {}",
        n_classes,
        data.len(Split::Train),
        data.len(Split::Val),
        data.len(Split::Test),
        cfg.data.root.display()
    );
    if data.len(Split::Val) == 0 {
        return Err(TrainError::Data(
            "the validation split is empty: early stopping needs data.val_fraction > 0 and at least 2 train/good images per class".into(),
        ));
    }
    let side = cfg.data.preprocess.input_size() as usize;
    let resume = match &cfg.trainer.resume {
        Some(spec) => Some(trainer::find_resume(
            spec,
            &cfg.paths.root_dir.join("outputs"),
        )?),
        None => None,
    };
    let config_json = serde_json::to_value(cfg).unwrap_or(serde_json::Value::Null);
    let run_name = run_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let opts = crate::logging::LoggerOptions::default().resume(resume.is_some());
    if let Some(r) = &resume {
        continue_metrics(r, run_dir)?;
    }
    let mut logger = RunLogger::start_with(run_dir, &cfg.logger, &run_name, &config_json, &opts)?;
    let monitor = cfg.trainer.early_stopping.monitor.clone();
    let resume = resume.as_ref();

    match &cfg.model {
        ModelConfig::CnnScratch(m) => {
            let hidden = (m.head.hidden > 0).then_some(m.head.hidden);
            let model = classifier_config(n_classes, m.width, hidden, m.head.dropout).init(&device);
            let params = model.num_params();
            let outcome = fit(
                &ClassifierTask,
                model,
                &data,
                &cfg.trainer,
                run_dir,
                &mut logger,
                &device,
                resume,
            )?;
            finish_run(
                run_dir,
                logger,
                &outcome,
                "cnn_scratch",
                overrides,
                &monitor,
                params,
                flops::classifier(m.width, hidden, n_classes, side),
                None,
                data.class_names(),
            )
        }
        ModelConfig::CnnDistilled(m) => {
            let teacher = prepare_teacher(cfg, &m.teacher, &data, run_dir, &device)?;
            let hidden = (m.head.hidden > 0).then_some(m.head.hidden);
            let student =
                classifier_config(n_classes, m.width, hidden, m.head.dropout).init(&device);
            let params = student.num_params();
            let distiller = DistillConfig::new()
                .with_alpha(m.distill.alpha)
                .with_temperature(m.distill.temperature)
                .with_beta(m.distill.beta)
                .init(student, teacher, &device);
            let outcome = fit(
                &DistillTask,
                distiller,
                &data,
                &cfg.trainer,
                run_dir,
                &mut logger,
                &device,
                resume,
            )?;
            // The deployable model is the student alone.
            save_student(&outcome.best.student, run_dir)?;
            finish_run(
                run_dir,
                logger,
                &outcome,
                "cnn_distilled",
                overrides,
                &monitor,
                params,
                flops::classifier(m.width, hidden, n_classes, side),
                None,
                data.class_names(),
            )
        }
        ModelConfig::UnetAe(m) => {
            check_unet_size(side, m.depth)?;
            if m.ssim_weight > 0.0 && side < 7 {
                return Err(TrainError::Config(
                    "model.ssim_weight needs images of at least 7 px".into(),
                ));
            }
            let model: UNet = UNetConfig::new(side)
                .with_depth(m.depth)
                .with_base_width(m.base_width)
                .with_skip_connections(m.skip_connections)
                .with_latent_dim(m.latent_dim)
                .init(&device);
            let params = model.num_params();
            let std = cfg.data.preprocess.std;
            let task = AutoencoderTask {
                ssim_weight: m.ssim_weight,
                data_range: 3.0 / (std[0] + std[1] + std[2]) as f64,
            };
            let outcome = fit(
                &task,
                model,
                &data,
                &cfg.trainer,
                run_dir,
                &mut logger,
                &device,
                resume,
            )?;
            let grid = write_recon_grid(run_dir, &outcome.best, &data, &device)?;
            finish_run(
                run_dir,
                logger,
                &outcome,
                "unet_ae",
                overrides,
                &monitor,
                params,
                flops::unet(
                    side,
                    m.depth,
                    m.base_width,
                    m.latent_dim,
                    m.skip_connections,
                    false,
                ),
                Some(grid),
                data.class_names(),
            )
        }
    }
}

pub(crate) fn classifier_config(
    n_classes: usize,
    width: usize,
    hidden: Option<usize>,
    dropout: f64,
) -> ClassifierConfig {
    ClassifierConfig::new(n_classes)
        .with_width(width)
        .with_hidden(hidden)
        .with_dropout(dropout)
}

fn save_student(student: &Classifier, run_dir: &Path) -> Result<(), TrainError> {
    let path = trainer::checkpoint_dir(run_dir).join("student.bpk");
    student
        .valid()
        .save_file(&path)
        .map_err(|e| TrainError::Checkpoint(format!("{}: {e:?}", path.display())))
}

/// When resuming into a new run dir, carry the earlier run's metric history over so that the
/// curves and the metric files are continuous.
fn continue_metrics(r: &ResumePoint, run_dir: &Path) -> Result<(), TrainError> {
    let src = r.run_dir.join("metrics.jsonl");
    if src.is_file() && r.run_dir != run_dir {
        std::fs::copy(&src, run_dir.join("metrics.jsonl"))
            .map_err(|e| TrainError::Resume(format!("{}: {e}", src.display())))?;
        let mut w = crate::logging::MetricsWriter::open_append(run_dir)?;
        w.rewind_to_epoch(r.state.epoch)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::mvtec::Sample;

    fn sample(class_index: usize, good: bool) -> Sample {
        Sample {
            path: PathBuf::from(format!("{class_index}-{good}.png")),
            class: format!("c{class_index}"),
            class_index,
            split: Split::Test,
            defect: (!good).then(|| "crack".to_string()),
            mask: None,
        }
    }

    #[test]
    fn the_recon_grid_shows_good_and_defective_images_of_several_classes() {
        let test: Vec<Sample> = (0..10)
            .flat_map(|c| [sample(c, true), sample(c, false), sample(c, true)])
            .collect();
        let picks = recon_grid_picks(&test, 4);
        let shown: Vec<(usize, bool)> = picks
            .iter()
            .map(|&i| (test[i].class_index, test[i].is_good()))
            .collect();
        assert_eq!(
            shown,
            [
                (0, true),
                (0, false),
                (2, true),
                (2, false),
                (5, true),
                (5, false),
                (7, true),
                (7, false)
            ]
        );
        // Fewer classes than asked: all of them; a class without defects gives one row.
        let few = vec![sample(0, true), sample(1, true), sample(1, false)];
        assert_eq!(recon_grid_picks(&few, 4), [0, 1, 2]);
    }
}
