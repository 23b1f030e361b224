//! Training (ARCHITECTURE.md seam 4): Lightning-shaped [`data::DataModule`] and
//! [`task::TaskModule`] traits, one [`trainer::fit`] loop for any task, and [`train_job`],
//! which turns a typed config and a run dir into a trained model, its checkpoints, metric
//! files, figures and `summary.json`. The models themselves (network, task, setup) live in
//! `models/<m>/`; [`train_job`] finds the right one through [`crate::models::visit`] and runs
//! it with the one generic [`run_task`].

pub mod data;
pub mod early_stopping;
pub mod task;
pub mod trainer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::prelude::*;

use defectkit_core::config::schema::{Config, Device as DeviceKind, TrainerConfig};
use defectkit_core::data::mvtec::Split;
use defectkit_core::logging::{LogError, RunLogger};
use defectkit_core::run::RunSummary;

use crate::models::{ModelEntry, ModelVisitor};
use data::{DataModule, ImageDataModule};
use task::TaskModule;
use trainer::{fit, ResumePoint};

/// Everything that can end a training run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The data set could not be read.
    #[error(transparent)]
    DataSet(#[from] defectkit_core::data::DataError),
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
        "the loss became {value} at epoch {epoch}, step {step}; training stopped. {} \
         (lower trainer.lr or set trainer.gradient_clip)",
        last_good_sentence(.last_good)
    )]
    NonFinite {
        /// Epoch (0-based).
        epoch: usize,
        /// Optimizer step.
        step: usize,
        /// The offending loss value.
        value: f64,
        /// The last checkpoint written before it; `None` when none was written yet.
        last_good: Option<PathBuf>,
    },
    /// A metric of an epoch (or of the final evaluation) became NaN or infinite while the
    /// training loss stayed finite: a broken validation set or a model that diverges on it.
    #[error(
        "{metric} became {value} at epoch {epoch}; training stopped. {} (check the \
         validation images; lower trainer.lr or set trainer.gradient_clip)",
        last_good_sentence(.last_good)
    )]
    NonFiniteMetric {
        /// Epoch (0-based).
        epoch: usize,
        /// The metric (`val/loss`).
        metric: String,
        /// Its value.
        value: f64,
        /// The last checkpoint written before it; `None` when none was written yet.
        last_good: Option<PathBuf>,
    },
    /// Stopped by Ctrl-C at a batch boundary ([`defectkit_core::interrupt`]).
    #[error(
        "interrupted at epoch {epoch}; {} (resume with trainer.resume=<run dir>)",
        kept_sentence(.last_good)
    )]
    Interrupted {
        /// Epoch (0-based) that was running.
        epoch: usize,
        /// The last checkpoint of a finished epoch, if any.
        last_good: Option<PathBuf>,
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

/// A figure or output file could not be written.
pub(crate) fn figure_err(e: impl std::fmt::Display) -> TrainError {
    TrainError::Output(e.to_string())
}

/// Train-vs-val loss per epoch, the best epoch marked: the overfitting picture.
pub fn write_loss_curve(
    run_dir: &Path,
    history: &[defectkit_core::logging::MetricRecord],
    best_epoch: Option<usize>,
) -> Result<PathBuf, TrainError> {
    let series_of = |name: &str| defectkit_core::plot::Series {
        name: name.to_string(),
        points: history
            .iter()
            .filter_map(|r| r.values.get(name).map(|v| ((r.epoch + 1) as f64, *v)))
            .collect(),
    };
    let path = run_dir.join("loss_curve.png");
    let opts = defectkit_core::plot::LineOptions {
        marker_x: best_epoch.map(|e| ((e + 1) as f64, format!("best (epoch {})", e + 1))),
        ..Default::default()
    };
    defectkit_core::plot::line_chart(
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

/// What a model's setup and its end-of-fit hook may use: the job's config, its data, its run
/// dir and the training device.
pub struct JobContext<'a> {
    /// The job's typed config.
    pub cfg: &'a Config,
    /// The data module, set up.
    pub data: &'a ImageDataModule,
    /// The job's run dir.
    pub run_dir: &'a Path,
    /// The training device (autodiff).
    pub device: &'a Device,
}

impl JobContext<'_> {
    /// Categories of the data set (the classifiers' outputs).
    pub fn num_classes(&self) -> usize {
        self.data.class_names().len()
    }

    /// Side of the square network input in pixels.
    pub fn input_side(&self) -> usize {
        self.cfg.data.preprocess.input_size() as usize
    }
}

/// A model ready to train, as its folder's [`ModelEntry::setup`] builds it.
pub struct TaskSetup<T: TaskModule> {
    /// The task module.
    pub task: T,
    /// The untrained network (or, for B, the distiller around it).
    pub model: T::Model,
    /// Trainable parameters of the deployable network (B: the student alone).
    pub parameters: usize,
    /// FLOPs per image at the input size (see `models/flops.rs`).
    pub flops_per_image: u64,
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
    eprintln!(
        "data: {} categories, {} train / {} val / {} test images from {}",
        data.class_names().len(),
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
    let opts = defectkit_core::logging::LoggerOptions::default().resume(resume.is_some());
    if let Some(r) = &resume {
        continue_metrics(r, run_dir)?;
    }
    let logger = RunLogger::start_with(run_dir, &cfg.logger, &run_name, &config_json, &opts)?;
    let job = TrainVisitor {
        ctx: JobContext {
            cfg,
            data: &data,
            run_dir,
            device: &device,
        },
        logger,
        overrides,
        resume: resume.as_ref(),
    };
    crate::models::visit(&cfg.model, job)
}

/// [`train_job`]'s visit of the model registry: set the model up, then [`run_task`].
struct TrainVisitor<'a> {
    ctx: JobContext<'a>,
    logger: RunLogger,
    overrides: &'a [String],
    resume: Option<&'a ResumePoint>,
}

impl ModelVisitor for TrainVisitor<'_> {
    type Output = Result<RunSummary, TrainError>;

    fn visit<M: ModelEntry>(self, schema: &M::Schema) -> Self::Output {
        let setup = M::setup(schema, &self.ctx)?;
        run_task(setup, &self.ctx, self.logger, self.overrides, self.resume)
    }
}

/// Fits any task, then its end-of-fit hook, the figures, the logger's finish and
/// `summary.json`: the one way every model of the experiment is trained.
pub fn run_task<T: TaskModule>(
    setup: TaskSetup<T>,
    ctx: &JobContext<'_>,
    mut logger: RunLogger,
    overrides: &[String],
    resume: Option<&ResumePoint>,
) -> Result<RunSummary, TrainError> {
    let outcome = fit(
        &setup.task,
        setup.model,
        ctx.data,
        &ctx.cfg.trainer,
        ctx.run_dir,
        &mut logger,
        ctx.device,
        resume,
    )?;
    let figures = setup.task.on_fit_end(&outcome.best, ctx)?;
    let curve = write_loss_curve(ctx.run_dir, &outcome.history, outcome.best_epoch)?;
    logger.log_image("curves/loss", &curve);
    for (key, path) in &figures {
        logger.log_image(key, path);
    }
    let mut metrics: BTreeMap<String, f64> = outcome.val.clone();
    metrics.extend(outcome.test.clone());
    let summary = RunSummary {
        model: setup.task.kind().as_str().to_string(),
        overrides: overrides.to_vec(),
        monitor: ctx.cfg.trainer.early_stopping.monitor.clone(),
        best_metric: outcome.best_metric,
        best_epoch: outcome.best_epoch,
        epochs_run: outcome.epochs_run,
        early_stopped: outcome.early_stopped,
        parameters: setup.parameters,
        flops_per_image: setup.flops_per_image,
        wall_seconds: outcome.seconds,
        metrics,
        best_checkpoint: PathBuf::from("checkpoints/best.bpk"),
        classes: ctx.data.class_names().to_vec(),
        skipped_images: ctx.data.skipped().to_vec(),
    };
    summary
        .write(ctx.run_dir)
        .map_err(|e| TrainError::Output(format!("summary.json: {e}")))?;
    let json = serde_json::to_value(&summary).unwrap_or(serde_json::Value::Null);
    let report = logger.finish(&json)?;
    for w in report.warnings {
        eprintln!("warning: {w}");
    }
    Ok(summary)
}

/// When resuming into a new run dir, carry the earlier run's metric history over so that the
/// curves and the metric files are continuous.
fn continue_metrics(r: &ResumePoint, run_dir: &Path) -> Result<(), TrainError> {
    let src = r.run_dir.join("metrics.jsonl");
    if src.is_file() && r.run_dir != run_dir {
        std::fs::copy(&src, run_dir.join("metrics.jsonl"))
            .map_err(|e| TrainError::Resume(format!("{}: {e}", src.display())))?;
        // A damaged metrics file is named where it was damaged, not by the copy.
        let named = |e: defectkit_core::logging::LogError| {
            TrainError::Resume(format!("{} (continuing its metrics): {e}", src.display()))
        };
        let mut w = defectkit_core::logging::MetricsWriter::open_append(run_dir).map_err(named)?;
        w.rewind_to_epoch(r.state.epoch).map_err(named)?;
    }
    Ok(())
}

/// How a divergence error points at what is left: the last checkpoint, or that there is none.
fn last_good_sentence(last_good: &Option<PathBuf>) -> String {
    match last_good {
        Some(p) => format!("The last good checkpoint is {}", p.display()),
        None => "It diverged before the first checkpoint was written, so there is nothing to \
                 resume from"
            .to_string(),
    }
}

/// What an interrupted run keeps.
fn kept_sentence(last_good: &Option<PathBuf>) -> String {
    match last_good {
        Some(p) => format!(
            "the checkpoint of the last finished epoch is kept: {}",
            p.display()
        ),
        None => "no epoch had finished, so there is no checkpoint".to_string(),
    }
}
