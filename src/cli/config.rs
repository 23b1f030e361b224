//! `defectkit config`: print the composed configuration (Hydra's `--cfg job`).

use anyhow::{Context, Result};
use clap::Args;

use defectkit::config::{Composed, Loader};

use super::{outln, OverrideArgs};

/// Arguments of `defectkit config`.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// Resolve interpolations (${..}) before printing.
    #[arg(long)]
    resolve: bool,
    /// Print the `hydra` node (run dirs, sweeper params, chosen options) instead of the job's
    /// config.
    #[arg(long)]
    hydra: bool,
    /// Print the final defaults list (which config was merged at which package) instead.
    #[arg(long)]
    defaults: bool,
    /// Print the tree even when it does not match defectkit's schema (handy while writing a
    /// new conf group), then list the schema errors on stderr and exit 0.
    #[arg(long)]
    no_validate: bool,
    #[command(flatten)]
    overrides: OverrideArgs,
}

/// Composes (one job, or every job of a sweep) and prints.
pub fn run(loader: &Loader, multirun: bool, args: ConfigArgs) -> Result<()> {
    let overrides = &args.overrides.overrides;
    if multirun {
        let (_, jobs) = loader.compose_sweep(overrides)?;
        for job in &jobs {
            outln!("# job {}: {}", job.num, job.composed.overrides.join(" "));
            print_composed(loader, &job.composed, &args)?;
        }
        return Ok(());
    }
    let composed = loader.compose(overrides)?;
    print_composed(loader, &composed, &args)?;
    if !args.hydra && !args.defaults {
        // Validate so that typos surface here too, after the tree was shown.
        let typed = loader.typed(&composed);
        match typed {
            Err(e) if args.no_validate => {
                eprintln!("schema errors (not fatal with --no-validate):\n  {e}");
            }
            other => {
                other.context("the composed configuration does not match defectkit's schema")?;
            }
        }
    }
    Ok(())
}

fn print_composed(loader: &Loader, c: &Composed, args: &ConfigArgs) -> Result<()> {
    if args.defaults {
        for d in &c.defaults {
            let choice = d
                .choice
                .as_ref()
                .map(|(g, o)| format!("  ({g}={o})"))
                .unwrap_or_default();
            let pkg = if d.package.is_empty() {
                "<root>"
            } else {
                &d.package
            };
            outln!("{:<32} @ {pkg}{choice}", d.config_path);
        }
        return Ok(());
    }
    let tree = match (args.hydra, args.resolve) {
        (true, false) => c.hydra_tree(),
        (true, true) => defectkit::config::interpolate::resolve_key(&c.tree, "hydra", &loader.ctx)?,
        (false, false) => c.job_tree(),
        (false, true) => loader.resolve_job(c)?,
    };
    let yaml = serde_norway::to_string(&tree).context("cannot render YAML")?;
    use std::io::Write as _;
    write!(std::io::stdout().lock(), "{yaml}")?;
    Ok(())
}
