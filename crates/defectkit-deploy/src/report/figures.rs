//! The figures the report draws itself, into `<study>/report/`: each model's training and
//! validation loss per epoch for every setting, the teacher's, and the main AUROC table as
//! bars. (The study's own figures — loss curves, reconstructions, comparison, bench and
//! cluster plots — are linked where they are.)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use defectkit_core::logging::MetricRecord;
use defectkit_core::plot::{self, LineOptions, Series};

use super::aggregate::Aggregates;
use super::load::RunInfo;

/// The last value of `name` in each epoch, as (epoch counted from 1, value).
pub(crate) fn per_epoch(records: &[MetricRecord], name: &str) -> Vec<(f64, f64)> {
    let mut by: BTreeMap<usize, f64> = BTreeMap::new();
    for r in records {
        if let Some(v) = r.values.get(name) {
            by.insert(r.epoch, *v);
        }
    }
    by.into_iter().map(|(e, v)| ((e + 1) as f64, v)).collect()
}

/// `report/curves_<model>.png`: train/loss and val/loss of every setting (its first seed),
/// the selected setting's best epoch marked. None when no run has metrics.
pub(crate) fn curves(
    out_dir: &Path,
    model: &str,
    runs: &[&RunInfo],
    selected: Option<(usize, Option<usize>)>,
    warnings: &mut Vec<String>,
) -> Option<PathBuf> {
    let mut series = Vec::new();
    for r in runs {
        if r.epochs.is_empty() {
            continue;
        }
        let mark = if selected.map(|s| s.0) == Some(r.setting) {
            "*"
        } else {
            ""
        };
        series.push(Series::new(
            format!("set{}{mark} train", r.setting),
            per_epoch(&r.epochs, "train/loss"),
        ));
        series.push(Series::new(
            format!("set{}{mark} val", r.setting),
            per_epoch(&r.epochs, "val/loss"),
        ));
    }
    if series.is_empty() {
        return None;
    }
    let path = out_dir.join(format!("curves_{model}.png"));
    let opts = LineOptions {
        marker_x: selected.and_then(|(k, e)| {
            e.map(|e| ((e + 1) as f64, format!("set{k} best (epoch {})", e + 1)))
        }),
        ..Default::default()
    };
    match plot::line_chart(
        &path,
        &format!("Model {model}: training vs validation loss per setting"),
        "epoch",
        "loss",
        &series,
        &opts,
    ) {
        Ok(()) => Some(path),
        Err(e) => {
            warnings.push(format!("{}: {e}", path.display()));
            None
        }
    }
}

/// `report/curves_teacher.png` from the teacher's own metrics.
pub(crate) fn teacher_curves(
    out_dir: &Path,
    records: &[MetricRecord],
    warnings: &mut Vec<String>,
) -> Option<PathBuf> {
    let series = vec![
        Series::new("train/loss", per_epoch(records, "train/loss")),
        Series::new("val/loss", per_epoch(records, "val/loss")),
    ];
    if series.iter().all(|s| s.points.is_empty()) {
        return None;
    }
    let path = out_dir.join("curves_teacher.png");
    match plot::line_chart(
        &path,
        "Teacher: training vs validation loss",
        "epoch",
        "loss",
        &series,
        &LineOptions::default(),
    ) {
        Ok(()) => Some(path),
        Err(e) => {
            warnings.push(format!("{}: {e}", path.display()));
            None
        }
    }
}

/// `report/auroc.png`: the mean over seeds of each model × method's mean image AUROC.
pub(crate) fn auroc_bars(
    out_dir: &Path,
    agg: &Aggregates,
    warnings: &mut Vec<String>,
) -> Option<PathBuf> {
    let mut bars = Vec::new();
    for m in &agg.models {
        for me in &agg.methods {
            if let Some(a) = agg.cell(m, me).and_then(|c| c.auroc) {
                bars.push((format!("{m} {me}"), a.mean));
            }
        }
    }
    if bars.is_empty() {
        return None;
    }
    let path = out_dir.join("auroc.png");
    let width = (90 * bars.len() as u32).clamp(900, 8000);
    match plot::bar_chart(
        &path,
        "Mean image AUROC over classes, mean over seeds (test split)",
        "AUROC",
        &bars,
        (width, 540),
    ) {
        Ok(()) => Some(path),
        Err(e) => {
            warnings.push(format!("{}: {e}", path.display()));
            None
        }
    }
}
