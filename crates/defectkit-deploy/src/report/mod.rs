//! `defectkit report STUDY_DIR`: the scientific report of a study dir
//! (`defectkit_core::study`), as `report.md` (figures linked relatively) and a
//! self-contained `report.html` (figures embedded as base64 PNGs), with the figures the
//! report draws itself in `report/`.
//!
//! Sections: Abstract, Hypothesis, Data, Methods, Experimental design, Results (curves,
//! overfitting, reconstructions, the detection comparison with paired B-vs-teacher and
//! B-vs-A intervals, FP32 vs INT8, DBSCAN), Discussion, Threats to validity, Conclusion,
//! Reproduce. Every number is read from the study's files; parts that are missing, and steps
//! of the manifest that did not finish, are said where they matter instead of failing.
//! Only `study.json` and `manifest.json` are required.
//!
//! ```no_run
//! use defectkit_deploy::report::{write_report, ReportOptions};
//!
//! let summary = write_report(&ReportOptions {
//!     study_dir: "studies/synthetic_quick".into(),
//!     model_readmes: None,
//! })?;
//! println!("{}\n{}", summary.html.display(), summary.main_table);
//! # Ok::<(), defectkit_deploy::report::ReportError>(())
//! ```

mod aggregate;
mod figures;
mod html;
mod load;
mod markdown;
mod readme;
mod sections;

use std::path::PathBuf;

pub use readme::{replace_block, BEGIN as README_BEGIN, END as README_END};
pub use sections::SECTIONS;

/// What to report on.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// The study dir (`defectkit study`'s output).
    pub study_dir: PathBuf,
    /// Refresh the study-results block of `DIR/<kind>/README.md` for each model.
    pub model_readmes: Option<PathBuf>,
}

/// What [`write_report`] wrote.
#[derive(Debug, Clone)]
pub struct ReportSummary {
    /// `<study>/report.md`.
    pub markdown: PathBuf,
    /// `<study>/report.html`.
    pub html: PathBuf,
    /// The main table (model × method, mean ± sd over seeds), Markdown; empty without a
    /// comparison.
    pub main_table: String,
    /// The discussion's generated findings.
    pub findings: Vec<String>,
    /// Model READMEs refreshed (`--model-readmes`).
    pub readmes_updated: Vec<PathBuf>,
    /// Missing or unreadable optional parts.
    pub warnings: Vec<String>,
}

/// Why no report was written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A required file (study.json, manifest.json) or the study dir does not exist.
    #[error("{path}: missing (is this a study dir written by `defectkit study`?)")]
    Missing {
        /// The file.
        path: PathBuf,
    },
    /// A file is not the JSON the study contract says.
    #[error("{path}: malformed: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        reason: String,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Reads the study dir and writes `report.md`, `report.html` and `report/*.png` into it
/// (atomically); with `model_readmes`, refreshes the models' README blocks.
pub fn write_report(opts: &ReportOptions) -> Result<ReportSummary, ReportError> {
    let study = load::load(&opts.study_dir)?;
    let agg = aggregate::aggregate(&study);
    let mut warnings = study.warnings.clone();
    let fig_dir = study.dir.join("report");

    let mut drawn = sections::Drawn::default();
    for m in &study.record.study.models {
        let runs: Vec<&load::RunInfo> = study
            .runs
            .get(&m.name)
            .map(|v| {
                let seed0 = study.record.study.seeds.first().copied();
                v.iter().filter(|r| Some(r.seed) == seed0).collect()
            })
            .unwrap_or_default();
        let selected = study
            .selection
            .as_ref()
            .and_then(|s| s.models.iter().find(|x| x.model == m.name))
            .map(|s| {
                let best = s
                    .settings
                    .iter()
                    .find(|x| x.index == s.selected)
                    .and_then(|x| x.best_epoch);
                (s.selected, best)
            });
        if let Some(p) = figures::curves(&fig_dir, &m.name, &runs, selected, &mut warnings) {
            drawn.curves.insert(m.name.clone(), p);
        }
    }
    if let Some(b) = &study.record.study.teacher_of {
        let teacher = sections::selected_run(&study, b)
            .and_then(|r| r.teacher.as_ref())
            .or_else(|| {
                study
                    .runs
                    .get(b)
                    .and_then(|v| v.iter().find_map(|r| r.teacher.as_ref()))
            });
        if let Some((records, _)) = teacher {
            drawn.teacher_curves = figures::teacher_curves(&fig_dir, records, &mut warnings);
        }
    }
    drawn.auroc = figures::auroc_bars(&fig_dir, &agg, &mut warnings);

    let built = sections::build(&study, &agg, &drawn);
    let md_path = study.dir.join("report.md");
    let html_path = study.dir.join("report.html");
    let md = markdown::render(&built.doc, &study.dir);
    let page = html::render(
        &built.doc,
        &format!("Study {}: report", study.record.study.name),
    );
    let write = |path: &PathBuf, bytes: &[u8]| {
        defectkit_core::fsutil::write_atomic(path, bytes).map_err(|source| ReportError::Io {
            path: path.clone(),
            source,
        })
    };
    write(&md_path, md.as_bytes())?;
    write(&html_path, page.as_bytes())?;

    let readmes_updated = match &opts.model_readmes {
        Some(dir) => readme::update(&study, &agg, dir, &mut warnings)?,
        None => Vec::new(),
    };
    Ok(ReportSummary {
        markdown: md_path,
        html: html_path,
        main_table: built.main_table,
        findings: built.findings,
        readmes_updated,
        warnings,
    })
}
