//! `defectkit train`: one run, or with `-m` a sweep with its table.

use std::path::Path;

use anyhow::{bail, Context, Result};
use clap::Args;

use defectkit::config::Loader;
use defectkit::run::{write_sweep_table, RunSummary, SweepRow};
use defectkit::train::{train_job, TrainError};

use super::{outln, OverrideArgs};

/// Arguments of `defectkit train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    #[command(flatten)]
    overrides: OverrideArgs,
}

/// Trains one job, or every job of a sweep (all validated before the first one trains).
pub fn run(loader: &Loader, multirun: bool, args: TrainArgs) -> Result<()> {
    let overrides = &args.overrides.overrides;
    if !multirun {
        let mut composed = loader.compose(overrides)?;
        let cfg = loader.typed(&composed)?;
        let run = loader.create_run_dir(&mut composed)?;
        eprintln!("run dir: {}", run.path.display());
        super::stop_work_on_ctrl_c(
            "stopping after this batch; checkpoints of finished epochs are kept",
        );
        let summary = match train_job(&cfg, &composed.overrides, &run.path) {
            Err(e @ TrainError::Interrupted { .. }) => {
                return Err(super::Interrupted(format!("train: {e}")).into())
            }
            other => other
                .with_context(|| format!("training failed (run dir {})", run.path.display()))?,
        };
        print_summary(&summary, &run.path)?;
        return Ok(());
    }
    let (base, mut jobs) = loader.compose_sweep(overrides)?;
    // Validate every job before training any, so a typo fails in seconds, not hours.
    let mut configs = Vec::with_capacity(jobs.len());
    for job in &jobs {
        configs.push(
            loader.typed(&job.composed).with_context(|| {
                format!("job {} ({})", job.num, job.composed.overrides.join(" "))
            })?,
        );
    }
    let sweep_dir = loader.create_sweep_dir(&base)?;
    eprintln!("sweep: {} jobs in {}", jobs.len(), sweep_dir.display());
    super::stop_work_on_ctrl_c(
        "stopping after this batch; finished jobs and checkpoints are kept, no new job starts",
    );
    let mut rows = Vec::new();
    for (job, cfg) in jobs.iter_mut().zip(&configs) {
        let run = loader.create_job_dir(job, &sweep_dir)?;
        eprintln!("[job {}] {}", job.num, job.composed.overrides.join(" "));
        let outcome = train_job(cfg, &job.composed.overrides, &run.path);
        if let Err(e @ TrainError::Interrupted { .. }) = &outcome {
            write_sweep_table(&sweep_dir, &rows).context("writing the sweep table")?;
            return Err(super::Interrupted(format!(
                "train: job {}: {e}; the sweep table lists the finished jobs",
                job.num
            ))
            .into());
        }
        let outcome = outcome.map_err(|e| e.to_string());
        match &outcome {
            Ok(s) => print_summary(s, &run.path)?,
            Err(e) => eprintln!("[job {}] failed: {e}", job.num),
        }
        rows.push(SweepRow {
            job: job.num,
            dir: run.path.clone(),
            outcome,
        });
        write_sweep_table(&sweep_dir, &rows).context("writing the sweep table")?;
    }
    outln!("sweep table: {}", sweep_dir.join("sweep.md").display());
    let failed = rows.iter().filter(|r| r.outcome.is_err()).count();
    if failed > 0 {
        bail!(
            "{failed} of {} jobs failed (see {})",
            rows.len(),
            sweep_dir.join("sweep.md").display()
        );
    }
    Ok(())
}

fn print_summary(s: &RunSummary, dir: &Path) -> Result<()> {
    outln!(
        "{}: best {} = {} at epoch {} ({} epochs{}), {} parameters, {:.1} MFLOPs/image, {:.0} s",
        s.model,
        s.monitor,
        s.best_metric
            .map(|v| format!("{v:.4}"))
            .unwrap_or_else(|| "-".into()),
        s.best_epoch
            .map(|e| (e + 1).to_string())
            .unwrap_or_else(|| "-".into()),
        s.epochs_run,
        if s.early_stopped {
            ", early-stopped"
        } else {
            ""
        },
        s.parameters,
        s.flops_per_image as f64 / 1e6,
        s.wall_seconds
    );
    for (k, v) in &s.metrics {
        outln!("  {k:<28} {v:.4}");
    }
    outln!("run dir: {}", dir.display());
    Ok(())
}
