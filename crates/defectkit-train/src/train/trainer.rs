//! One small, explicit training loop that drives any [`TaskModule`]: epochs of shuffled
//! batches, validation, early stopping, best + last checkpoints, resume, LR schedule,
//! optional gradient clipping (in the optimizer), a NaN guard, metrics and progress.
//!
//! Chosen over burn-train's `SupervisedTraining`: our steps differ per task (distillation
//! needs a frozen teacher inside the step, the autoencoder scores test images), the run dir
//! layout and metric files are ours, and a loop this size is easier to read than adapting
//! the Learner's callbacks and file loggers.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::data::DataModule;
use super::early_stopping::{EarlyStopping, Verdict};
use super::task::{Metrics, TaskModule};
use super::TrainError;
use defectkit_core::config::schema::{LrSchedule, TrainerConfig};
use defectkit_core::data::mvtec::Split;
use defectkit_core::fsutil::TempGuard;
use defectkit_core::logging::{MetricRecord, RunLogger};

/// Saved beside `last.bpk`: where training stood after the last finished epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Last finished epoch (0-based).
    pub epoch: usize,
    /// Optimizer steps so far.
    pub global_step: usize,
    /// Best monitored value.
    pub best: Option<f64>,
    /// Epoch of the best value.
    pub best_epoch: Option<usize>,
    /// Epochs since the last improvement.
    pub wait: usize,
    /// Task name, to refuse resuming a different model.
    pub task: String,
}

/// What [`fit`] returns.
#[derive(Debug)]
pub struct FitOutcome<M> {
    /// The best model (by the monitored metric), in eval mode.
    pub best: M,
    /// Best monitored value and its epoch.
    pub best_metric: Option<f64>,
    /// Epoch of the best value.
    pub best_epoch: Option<usize>,
    /// Epochs run in total (including those before a resume).
    pub epochs_run: usize,
    /// Whether early stopping ended training.
    pub early_stopped: bool,
    /// One record per epoch.
    pub history: Vec<MetricRecord>,
    /// Test metrics of the best model (`test/...`).
    pub test: std::collections::BTreeMap<String, f64>,
    /// Validation metrics of the best model (`val/...`).
    pub val: std::collections::BTreeMap<String, f64>,
    /// Training wall time in seconds.
    pub seconds: f64,
}

pub use defectkit_core::run::checkpoint_dir;

/// Learning rate of `epoch` under the schedule.
pub fn lr_at(cfg: &TrainerConfig, epoch: usize) -> f64 {
    match cfg.lr_schedule {
        LrSchedule::Constant => cfg.lr,
        LrSchedule::Cosine => {
            let t = epoch as f64 / cfg.max_epochs.max(1) as f64;
            0.5 * cfg.lr * (1.0 + (std::f64::consts::PI * t).cos())
        }
    }
}

/// `name.bpk` is written as `name.tmp-<pid>.bpk` first: the pid lets a later run remove
/// what a killed writer left ([`defectkit_core::fsutil::remove_stale_temps`]); the guard
/// lets a second Ctrl-C remove it before the process ends.
fn temp_checkpoint(path: &Path) -> TempGuard {
    TempGuard::new(path.with_extension(format!("tmp-{}.bpk", std::process::id())))
}

fn save_module<M: Module>(model: &M, path: &Path) -> Result<(), TrainError> {
    let guard = temp_checkpoint(path);
    let tmp = guard.path();
    model.valid().save_file(tmp).map_err(|e| {
        let _ = std::fs::remove_file(tmp);
        TrainError::Checkpoint(format!("{}: {e:?}", tmp.display()))
    })?;
    std::fs::rename(tmp, path)
        .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", path.display())))
}

/// Stops with [`TrainError::NonFiniteMetric`] at the first NaN or infinite value of
/// `values`, so that no metrics file, summary or early-stopping decision rests on one.
fn check_metrics(
    values: &std::collections::BTreeMap<String, f64>,
    epoch: usize,
    ckpt: &Path,
) -> Result<(), TrainError> {
    match values.iter().find(|(_, v)| !v.is_finite()) {
        None => Ok(()),
        Some((metric, value)) => Err(TrainError::NonFiniteMetric {
            epoch,
            metric: metric.clone(),
            value: *value,
            last_good: last_checkpoint(ckpt),
        }),
    }
}

/// `last.bpk` in `ckpt` if an epoch has finished and written it.
fn last_checkpoint(ckpt: &Path) -> Option<std::path::PathBuf> {
    Some(ckpt.join("last.bpk")).filter(|p| p.is_file())
}

fn save_last<M: Module>(
    dir: &Path,
    model: &M,
    optim: &burn::optim::ModuleOptimizer,
    state: &TrainState,
) -> Result<(), TrainError> {
    save_module(model, &dir.join("last.bpk"))?;
    let guard = temp_checkpoint(&dir.join("last.optim.bpk"));
    let tmp = guard.path();
    optim.save(tmp).map_err(|e| {
        let _ = std::fs::remove_file(tmp);
        TrainError::Checkpoint(format!("{}: {e:?}", tmp.display()))
    })?;
    std::fs::rename(tmp, dir.join("last.optim.bpk"))
        .map_err(|e| TrainError::Checkpoint(e.to_string()))?;
    let json =
        serde_json::to_string_pretty(state).map_err(|e| TrainError::Checkpoint(e.to_string()))?;
    defectkit_core::fsutil::write_atomic(&dir.join("last.json"), json.as_bytes())
        .map_err(|e| TrainError::Checkpoint(e.to_string()))
}

/// A checkpoint to resume from: its directory and saved state.
#[derive(Debug, Clone)]
pub struct ResumePoint {
    /// Directory holding `last.bpk`, `last.optim.bpk`, `last.json`.
    pub dir: PathBuf,
    /// The saved state.
    pub state: TrainState,
    /// The run dir the checkpoint belongs to (its metrics.jsonl is continued).
    pub run_dir: PathBuf,
}

/// Find the checkpoint named by `trainer.resume`: a run dir, its `checkpoints/` folder, or
/// `last` (the newest run under `search_root` that has one).
pub fn find_resume(spec: &str, search_root: &Path) -> Result<ResumePoint, TrainError> {
    let dir = if spec == "last" {
        let mut found: Vec<(std::time::SystemTime, PathBuf)> = Vec::new();
        collect_checkpoints(search_root, 0, &mut found);
        found.sort();
        found.pop().map(|(_, p)| p).ok_or_else(|| {
            TrainError::Resume(format!(
                "no checkpoints/last.json under {}",
                search_root.display()
            ))
        })?
    } else {
        let p = PathBuf::from(spec);
        if p.join("last.json").is_file() {
            p
        } else if p.join("checkpoints/last.json").is_file() {
            p.join("checkpoints")
        } else {
            return Err(TrainError::Resume(format!(
                "{spec}: no checkpoint there (expected a run dir with checkpoints/last.json)"
            )));
        }
    };
    // Errors name the damaged file itself, with the line and column serde found.
    let state_file = dir.join("last.json");
    let text = std::fs::read_to_string(&state_file)
        .map_err(|e| TrainError::Resume(format!("{}: {e}", state_file.display())))?;
    let state: TrainState = serde_json::from_str(&text).map_err(|e| {
        TrainError::Resume(format!(
            "{}: damaged training state ({e}); resume from another run or start afresh",
            state_file.display()
        ))
    })?;
    let run_dir = dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| dir.clone());
    Ok(ResumePoint {
        dir,
        state,
        run_dir,
    })
}

fn collect_checkpoints(dir: &Path, depth: usize, out: &mut Vec<(std::time::SystemTime, PathBuf)>) {
    if depth > 5 {
        return;
    }
    let marker = dir.join("checkpoints/last.json");
    if let Ok(meta) = std::fs::metadata(&marker) {
        if let Ok(t) = meta.modified() {
            out.push((t, dir.join("checkpoints")));
        }
    }
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir())
                && e.file_name() != ".hydra"
                && e.file_name() != "checkpoints"
            {
                collect_checkpoints(&e.path(), depth + 1, out);
            }
        }
    }
}

fn evaluate<T: TaskModule, D: DataModule>(
    task: &T,
    model: &T::Model,
    data: &D,
    split: Split,
    batch_size: usize,
    device: &Device,
) -> Result<Metrics, TrainError> {
    let mut m = Metrics::default();
    for idx in data.batches(split, batch_size, 0, 0) {
        let batch = data.load(split, &idx, device)?;
        let step = match split {
            Split::Test => task.test_step(model, &batch),
            _ => task.validation_step(model, &batch),
        };
        m.merge(&step);
    }
    Ok(m)
}

/// Train `model` with `task` on `data`, writing checkpoints into `run_dir/checkpoints` and
/// metrics through `logger`. `device` must be an autodiff device. With `resume`, the model,
/// optimizer and early-stopping state continue from that checkpoint.
#[allow(clippy::too_many_arguments)]
pub fn fit<T: TaskModule, D: DataModule>(
    task: &T,
    mut model: T::Model,
    data: &D,
    cfg: &TrainerConfig,
    run_dir: &Path,
    logger: &mut RunLogger,
    device: &Device,
    resume: Option<&ResumePoint>,
) -> Result<FitOutcome<T::Model>, TrainError> {
    let ckpt = checkpoint_dir(run_dir);
    std::fs::create_dir_all(&ckpt)
        .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", ckpt.display())))?;
    // A resumed run dir may hold what a killed writer left; a fresh one holds nothing.
    defectkit_core::fsutil::clear_stale_temps(&ckpt);
    if let Some(r) = resume {
        defectkit_core::fsutil::clear_stale_temps(&r.dir);
    }
    let mut optim = task.configure_optimizers(cfg);
    let mut stopper = EarlyStopping::new(cfg.early_stopping.clone());
    let mut start_epoch = 0;
    let mut global_step = 0;
    if let Some(r) = resume {
        if r.state.task != task.kind().as_str() {
            return Err(TrainError::Resume(format!(
                "checkpoint {} is for {}, not {}",
                r.dir.display(),
                r.state.task,
                task.kind().as_str()
            )));
        }
        model = model.try_load_file(r.dir.join("last.bpk")).map_err(|e| {
            TrainError::Resume(format!("{}: {e:?}", r.dir.join("last.bpk").display()))
        })?;
        optim = optim.load(r.dir.join("last.optim.bpk")).map_err(|e| {
            TrainError::Resume(format!("{}: {e:?}", r.dir.join("last.optim.bpk").display()))
        })?;
        if r.dir.join("best.bpk").is_file() && r.dir != ckpt {
            let from = r.dir.join("best.bpk");
            std::fs::copy(&from, ckpt.join("best.bpk"))
                .map_err(|e| TrainError::Resume(format!("copying {}: {e}", from.display())))?;
        }
        stopper = EarlyStopping::restore(
            cfg.early_stopping.clone(),
            r.state.best,
            r.state.best_epoch,
            r.state.wait,
        );
        start_epoch = r.state.epoch + 1;
        global_step = r.state.global_step;
        eprintln!(
            "resuming from {} after epoch {} (best {} = {:?})",
            r.dir.display(),
            r.state.epoch,
            stopper.monitor(),
            r.state.best
        );
    }

    let started = Instant::now();
    let tty = std::io::stderr().is_terminal();
    let mut early_stopped = false;
    let mut epochs_run = start_epoch;
    for epoch in start_epoch..cfg.max_epochs {
        let lr = lr_at(cfg, epoch);
        let epoch_start = Instant::now();
        let batches = data.batches(Split::Train, cfg.batch_size, cfg.seed, epoch);
        let bar = if tty {
            let b = indicatif::ProgressBar::new(batches.len() as u64);
            if let Ok(s) = indicatif::ProgressStyle::with_template(
                "epoch {prefix} {bar:30} {pos}/{len} batches  loss {msg}  {elapsed}<{eta}",
            ) {
                b.set_style(s);
            }
            b.set_prefix(format!("{}/{}", epoch + 1, cfg.max_epochs));
            b
        } else {
            indicatif::ProgressBar::hidden()
        };
        let mut train_metrics = Metrics::default();
        for idx in batches {
            if defectkit_core::interrupt::stop_requested() {
                bar.abandon();
                return Err(TrainError::Interrupted {
                    epoch,
                    last_good: last_checkpoint(&ckpt),
                });
            }
            let batch = data.load(Split::Train, &idx, device)?;
            let (loss, m) = task.training_step(&model, &batch);
            let value = loss.clone().into_scalar::<f32>();
            if !value.is_finite() {
                bar.abandon();
                return Err(TrainError::NonFinite {
                    epoch,
                    step: global_step,
                    value: value as f64,
                    last_good: last_checkpoint(&ckpt),
                });
            }
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(lr, model, grads);
            global_step += 1;
            train_metrics.merge(&m);
            bar.set_message(format!("{value:.4}"));
            bar.inc(1);
        }
        bar.finish_and_clear();
        let val_metrics = evaluate(
            task,
            &model.valid(),
            data,
            Split::Val,
            cfg.batch_size,
            device,
        )?;

        let mut rec = MetricRecord::new(epoch, global_step);
        rec.values.extend(train_metrics.means("train"));
        rec.values.extend(val_metrics.means("val"));
        rec.values.insert("lr".into(), lr);
        rec.values
            .insert("seconds".into(), epoch_start.elapsed().as_secs_f64());
        check_metrics(&rec.values, epoch, &ckpt)?;
        let monitored = rec.values.get(stopper.monitor()).copied().ok_or_else(|| {
            TrainError::Config(format!(
                "trainer.early_stopping.monitor '{}' is not a metric of this task (have: {})",
                stopper.monitor(),
                rec.values.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })?;
        logger.log(&rec)?;
        let verdict = stopper.update(epoch, monitored);
        if verdict == Verdict::Improved {
            save_module(&model, &ckpt.join("best.bpk"))?;
        }
        save_last(
            &ckpt,
            &model,
            &optim,
            &TrainState {
                epoch,
                global_step,
                best: stopper.best(),
                best_epoch: stopper.best_epoch(),
                wait: stopper.wait(),
                task: task.kind().as_str().to_string(),
            },
        )?;
        epochs_run = epoch + 1;
        eprintln!(
            "epoch {:>3}/{}  train/loss {:.4}  {} {:.4}{}  ({:.1} s)",
            epoch + 1,
            cfg.max_epochs,
            rec.values.get("train/loss").copied().unwrap_or(f64::NAN),
            stopper.monitor(),
            monitored,
            if verdict == Verdict::Improved {
                " *"
            } else {
                ""
            },
            epoch_start.elapsed().as_secs_f64()
        );
        if verdict == Verdict::Stop {
            early_stopped = true;
            eprintln!(
                "early stopping: {} did not improve for {} epochs (best {:.4} at epoch {})",
                stopper.monitor(),
                stopper.wait(),
                stopper.best().unwrap_or(f64::NAN),
                stopper.best_epoch().map(|e| e + 1).unwrap_or(0)
            );
            break;
        }
    }
    let seconds = started.elapsed().as_secs_f64();

    let best_path = ckpt.join("best.bpk");
    let best = if best_path.is_file() {
        model
            .valid()
            .try_load_file(&best_path)
            .map_err(|e| TrainError::Checkpoint(format!("{}: {e:?}", best_path.display())))?
    } else {
        model.valid()
    };
    let val = evaluate(task, &best, data, Split::Val, cfg.batch_size, device)?.means("val");
    check_metrics(&val, epochs_run.saturating_sub(1), &ckpt)?;
    let test = if data.len(Split::Test) > 0 {
        evaluate(task, &best, data, Split::Test, cfg.batch_size, device)?.means("test")
    } else {
        Default::default()
    };
    check_metrics(&test, epochs_run.saturating_sub(1), &ckpt)?;
    Ok(FitOutcome {
        best,
        best_metric: stopper.best(),
        best_epoch: stopper.best_epoch(),
        epochs_run,
        early_stopped,
        history: logger.metrics().records().to_vec(),
        test,
        val,
        seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_non_finite_metric_stops_training_naming_it_and_the_last_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let mut values = std::collections::BTreeMap::new();
        values.insert("train/loss".to_string(), 0.5);
        values.insert("val/auroc".to_string(), 0.75);
        assert!(check_metrics(&values, 0, dir.path()).is_ok());
        values.insert("val/loss".to_string(), f64::NAN);
        let err = check_metrics(&values, 2, dir.path()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("val/loss became NaN at epoch 2"), "{msg}");
        assert!(msg.contains("before the first checkpoint"), "{msg}");
        std::fs::write(dir.path().join("last.bpk"), b"x").unwrap();
        let msg = check_metrics(&values, 2, dir.path())
            .unwrap_err()
            .to_string();
        assert!(msg.contains("last.bpk"), "{msg}");
    }
}
