//! `defectkit study`: the whole experiment, resumable, into one study dir.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;

use defectkit::config::study::StudyConfig;
use defectkit::config::Loader;
use defectkit::study::{run_study, StudyError, StudyOptions, ALL_STAGES};

use super::{outln, stop_work_on_ctrl_c, Interrupted, OverrideArgs};

/// Arguments of `defectkit study`.
#[derive(Debug, Args)]
pub struct StudyArgs {
    /// The study dir (default: the design's `study.dir`, `studies/<name>`).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Run the stages up to and including this one: data, sweep, select, seeds, export,
    /// embed, compare, bench, cluster, report.
    #[arg(long, default_value = "report", value_name = "STAGE")]
    until: String,
    /// Also refresh the results block of each `<DIR>/<model kind>/README.md` from this
    /// study (e.g. crates/defectkit-train/src/models).
    #[arg(long, value_name = "DIR")]
    model_readmes: Option<PathBuf>,
    /// Print the design (models, settings, seeds) and the study dir, and run nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    overrides: OverrideArgs,
}

/// Whether an override configures the study design (`study=…`, `study.…`, `+study.…`,
/// `~study.…`) rather than the verbs it runs.
pub fn is_study_override(o: &str) -> bool {
    let key = o.trim_start_matches(['+', '~']);
    key == "study" || key.starts_with("study=") || key.starts_with("study.")
}

/// Composes the design, runs its stages and prints where the report is.
pub fn run(config_dir: &Path, args: StudyArgs) -> Result<()> {
    if !ALL_STAGES.contains(&args.until.as_str()) {
        return Err(StudyError::UnknownStage(args.until).into());
    }
    let (design, forwarded): (Vec<String>, Vec<String>) = args
        .overrides
        .overrides
        .iter()
        .cloned()
        .partition(|o| is_study_override(o));
    if let Some(flag) = args
        .overrides
        .overrides
        .iter()
        .find(|o| o.starts_with("--"))
    {
        anyhow::bail!(
            "`{flag}` comes after an override: give the flags first \
             (defectkit study --until select --dir D study=tiny data.root=…)"
        );
    }
    let loader = Loader::new(config_dir, "study", "study")?;
    let composed = loader.compose(&design)?;
    let tree = loader.resolve_job(&composed)?;
    let node = tree.get("study").cloned().context(
        "conf/study.yaml composed no `study` node (its defaults need `- study: <name>`)",
    )?;
    let study = StudyConfig::from_tree(node)?;
    let dir = args.dir.clone().unwrap_or_else(|| study.dir.clone());
    if args.dry_run {
        outln!("study {} → {}", study.name, dir.display());
        for m in &study.models {
            outln!("  {} ({}): {}", m.name, m.title, m.overrides.join(" "));
            for (k, s) in StudyConfig::settings(m).iter().enumerate() {
                outln!("    set{k}: {}", s.join(" "));
            }
            outln!("    select: {} ({:?})", m.select.metric, m.select.mode);
        }
        outln!(
            "  seeds: {:?}; detectors: {}",
            study.seeds,
            study.detectors.join(", ")
        );
        outln!("  forwarded to every verb: {}", forwarded.join(" "));
        return Ok(());
    }
    let binary = std::env::current_exe().context("finding this program's own path")?;
    let cancel = stop_work_on_ctrl_c(
        "stopping the running step; completed steps are kept (rerun to continue)",
    );
    eprintln!("study dir: {}", dir.display());
    let opts = StudyOptions {
        study,
        forwarded,
        dir,
        config_dir: config_dir
            .canonicalize()
            .with_context(|| format!("config dir {}", config_dir.display()))?,
        binary,
        until: args.until,
        model_readmes: args.model_readmes,
        cancel,
    };
    let report = match run_study(&opts) {
        Ok(r) => r,
        Err(StudyError::Interrupted(step)) => {
            return Err(Interrupted(format!(
                "interrupted during step {step}: completed steps are kept; rerun the same command to continue"
            ))
            .into())
        }
        Err(e) => return Err(e.into()),
    };
    eprintln!(
        "study: {} steps run, {} skipped (done earlier with the same inputs)",
        report.ran.len(),
        report.skipped.len()
    );
    if let Some(table) = &report.main_table {
        outln!("{table}");
    }
    outln!("study dir: {}", report.dir.display());
    if let Some(html) = &report.report_html {
        outln!("report: {}", html.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::is_study_override;

    #[test]
    fn study_overrides_are_told_apart() {
        for o in [
            "study=mvtec10",
            "study.seeds=[1,2]",
            "+study.x=1",
            "~study.cluster",
        ] {
            assert!(is_study_override(o), "{o}");
        }
        for o in [
            "data.root=/x",
            "studying=1",
            "trainer.lr=1",
            "+data.study=1",
        ] {
            assert!(!is_study_override(o), "{o}");
        }
    }
}
