//! `defectkit report STUDY_DIR`: the scientific report of a study dir (report.md and a
//! self-contained report.html), every number read from the study's own files.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use defectkit::report::{write_report, ReportOptions};

use super::outln;

/// Arguments of `defectkit report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The study dir (`defectkit study`'s output).
    study_dir: PathBuf,
    /// Also refresh the results block of each `<DIR>/<model kind>/README.md` (e.g.
    /// crates/defectkit-train/src/models).
    #[arg(long, value_name = "DIR")]
    model_readmes: Option<PathBuf>,
}

/// Writes the report; prints the main table and where it went.
pub fn run(args: ReportArgs) -> Result<()> {
    let summary = write_report(&ReportOptions {
        study_dir: args.study_dir.clone(),
        model_readmes: args.model_readmes.clone(),
    })
    .with_context(|| format!("writing the report of {}", args.study_dir.display()))?;
    for w in &summary.warnings {
        eprintln!("warning: {w}");
    }
    outln!("{}", summary.main_table);
    for f in &summary.findings {
        outln!("- {f}");
    }
    for r in &summary.readmes_updated {
        outln!("refreshed: {}", r.display());
    }
    outln!("report: {}", summary.markdown.display());
    outln!("report: {}", summary.html.display());
    Ok(())
}
