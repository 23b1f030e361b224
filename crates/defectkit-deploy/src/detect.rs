//! `defectkit detect`: fit a detector on an embeddings file, set its thresholds, evaluate it
//! on the test split, and write everything into one folder (replaced atomically):
//!
//! | file | what |
//! | --- | --- |
//! | `detector.json` + `detector.h5` | the fitted detector ([`crate::anomaly::Detector`]) |
//! | `metrics.json`, `metrics.md` | per class, per defect type and the mean over classes |
//! | `test_scores.csv` | every test image's score, threshold and verdict |
//! | `roc.png`, `scores.png` | ROC curves per class; good vs defective score histograms |
//! | `overlays/<class>.png` | patch detectors: test images with their anomaly maps and mask contours |
//! | `model.scored.onnx` | with `bundle`: the model + the detector as ONNX ops ([`crate::anomaly::bundle`]) |
//!
//! [`compare`] runs several files × methods and writes one comparison table.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use defectkit_core::config::detector::DetectorMethod;
use defectkit_core::config::DetectorConfig;
use defectkit_core::metrics::roc_curve;
use defectkit_core::plot::{self, LineOptions, Series};

use crate::anomaly::bundle::write_scored_model;
use crate::anomaly::evaluate::ScoredImage;
use crate::anomaly::pixel::{evaluate_pixels, prepare_mask, MapImage};
use crate::anomaly::{evaluate, AnomalyError, DetectionMetrics, Detector};
use crate::store::{EmbeddingStore, SplitRecords};
use defectkit_core::data::PreprocessSpec;

/// What to fit and where to write it.
#[derive(Debug, Clone)]
pub struct DetectOptions {
    /// The embeddings file (`defectkit embed`).
    pub embeddings: PathBuf,
    /// The output folder (replaced atomically).
    pub out_dir: PathBuf,
    /// The detector.
    pub config: DetectorConfig,
    /// Draw `roc.png` and `scores.png`.
    pub plots: bool,
    /// Also write `model.scored.onnx`: this model (the one embedded) with the detector
    /// appended as ONNX ops.
    pub bundle: Option<PathBuf>,
}

/// What a detect run produced.
#[derive(Debug)]
pub struct DetectReport {
    /// The folder written.
    pub out_dir: PathBuf,
    /// The fitted detector (as saved).
    pub detector: Detector,
    /// Test-split metrics.
    pub metrics: DetectionMetrics,
    /// Warnings (thresholds that had to be the maximum…).
    pub warnings: Vec<String>,
}

/// A fitted detector and its evaluation, before anything is written.
#[derive(Debug)]
pub struct Evaluation {
    /// The detector.
    pub detector: Detector,
    /// Metrics on the test split.
    pub metrics: DetectionMetrics,
    /// Test images with their scores.
    pub test: Vec<ScoredImage>,
    /// Test image paths, in the order of `test`.
    pub test_paths: Vec<String>,
    /// Their mask paths (`""` = none; empty for files without masks).
    pub test_masks: Vec<String>,
    /// Their anomaly maps (patch detectors), side × side each, in the order of `test`.
    pub maps: Option<Vec<Vec<f32>>>,
    /// The model's preprocessing (the geometry maps and masks share).
    pub preprocess: Option<PreprocessSpec>,
    /// Warnings.
    pub warnings: Vec<String>,
}

/// Opens `embeddings`, refusing a file whose val split is not the model's training split.
pub fn open_store(embeddings: &Path) -> Result<EmbeddingStore, AnomalyError> {
    let store = EmbeddingStore::open(embeddings)?;
    if let Some(reason) = store.attributes.split.as_ref().and_then(|s| s.mismatch()) {
        return Err(AnomalyError::Invalid(format!(
            "{}: {reason}",
            embeddings.display()
        )));
    }
    Ok(store)
}

/// Fits `config` on `store` and evaluates it on its test split.
pub fn fit_and_evaluate(
    store: &EmbeddingStore,
    embeddings: &Path,
    config: &DetectorConfig,
) -> Result<Evaluation, AnomalyError> {
    let (detector, mut warnings) = Detector::fit(store, embeddings, config)?;
    let test = store.split("test").map_err(|e| {
        AnomalyError::Invalid(format!(
            "{}: {e}; embed it with --splits train,val,test",
            embeddings.display()
        ))
    })?;
    let known: Vec<&str> = detector.classes().collect();
    let unknown: BTreeMap<&str, usize> = test
        .class
        .iter()
        .filter(|c| !known.contains(&c.as_str()))
        .fold(BTreeMap::new(), |mut m, c| {
            *m.entry(c.as_str()).or_default() += 1;
            m
        });
    if !unknown.is_empty() {
        warnings.push(format!(
            "test images of classes without fit images are not evaluated: {}",
            unknown
                .iter()
                .map(|(c, n)| format!("{c} ({n})"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let keep: Vec<usize> = (0..test.len())
        .filter(|&i| known.contains(&test.class[i].as_str()))
        .collect();
    let subset = subset_records(test, &keep);
    let (scores, maps) = detector.score_split_with_maps(&subset, true)?;
    let images: Vec<ScoredImage> = (0..subset.len())
        .map(|i| ScoredImage {
            class: subset.class[i].clone(),
            defect_type: subset.defect_type[i].clone(),
            defective: subset.label[i] != 0,
            score: scores[i],
        })
        .collect();
    let mut metrics = evaluate(&images, &detector.thresholds());
    // EmbeddingStore::open has validated the spec.
    let preprocess: Option<PreprocessSpec> =
        serde_json::from_str(&store.attributes.preprocess).ok();
    if let (Some(maps), Some(spec)) = (&maps, &preprocess) {
        if subset.mask.is_empty() {
            warnings.push(format!(
                "{} stores no mask paths (written by an older defectkit): pixel metrics are \
                 skipped; re-embed it for pixel AUROC and AUPRO",
                embeddings.display()
            ));
        } else {
            let rows: Vec<MapImage<'_>> = (0..subset.len())
                .map(|i| MapImage {
                    class: &subset.class[i],
                    defect_type: &subset.defect_type[i],
                    map: &maps[i],
                    mask: &subset.mask[i],
                })
                .collect();
            let pixel = evaluate_pixels(&rows, spec)?;
            if pixel.missing_masks > 0 {
                warnings.push(format!(
                    "{} defective test images have no ground-truth mask and are left out of \
                     the pixel metrics",
                    pixel.missing_masks
                ));
            }
            if let Some((_, why)) = pixel.unreadable_masks.first() {
                warnings.push(format!(
                    "{} ground-truth masks could not be read and are left out of the pixel \
                     metrics (moved since `embed`?), e.g. {why}",
                    pixel.unreadable_masks.len()
                ));
            }
            metrics.pixel = Some(pixel);
        }
    }
    Ok(Evaluation {
        detector,
        metrics,
        test: images,
        test_paths: subset.path,
        test_masks: subset.mask,
        maps,
        preprocess,
        warnings,
    })
}

/// The rows `keep` (indices) of `records`, in that order.
pub fn subset_records(records: &SplitRecords, keep: &[usize]) -> SplitRecords {
    let d = records.dim;
    let pick = |v: &Option<Vec<f32>>| v.as_ref().map(|v| keep.iter().map(|&i| v[i]).collect());
    SplitRecords {
        embeddings: keep
            .iter()
            .flat_map(|&i| records.embeddings[i * d..(i + 1) * d].iter().copied())
            .collect(),
        dim: d,
        label: keep.iter().map(|&i| records.label[i]).collect(),
        class: keep.iter().map(|&i| records.class[i].clone()).collect(),
        defect_type: keep
            .iter()
            .map(|&i| records.defect_type[i].clone())
            .collect(),
        path: keep.iter().map(|&i| records.path[i].clone()).collect(),
        mask: if records.mask.is_empty() {
            Vec::new()
        } else {
            keep.iter().map(|&i| records.mask[i].clone()).collect()
        },
        recon_error: pick(&records.recon_error),
        recon_local: pick(&records.recon_local),
        maps: records.maps.as_ref().map(|m| {
            let per = m.len() / records.len().max(1);
            keep.iter()
                .flat_map(|&i| m[i * per..(i + 1) * per].iter().copied())
                .collect()
        }),
    }
}

/// Writes `fill`'s files into a fresh temporary sibling of `dir`, then swaps it into place
/// (two renames: for an instant there is no folder): a reader never sees half a folder, and a
/// failed or interrupted run leaves the old one.
pub fn write_folder_atomically(
    dir: &Path,
    fill: impl FnOnce(&Path) -> Result<(), AnomalyError>,
) -> Result<(), AnomalyError> {
    let io = |path: &Path, e: std::io::Error| AnomalyError::File {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
    defectkit_core::fsutil::clear_stale_temps(parent);
    let guard = defectkit_core::fsutil::TempGuard::sibling(dir);
    let tmp = guard.path().to_path_buf();
    // A crashed earlier run with the same PID may have left one: never publish its files.
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir(&tmp).map_err(|e| io(&tmp, e))?;
    if let Err(e) = fill(&tmp) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    // Named `x.old-<pid>`, so that if this process dies between the two renames a later
    // run puts the previous output back (fsutil::remove_stale_temps).
    let old = dir.with_file_name(format!(
        "{}.old-{}",
        dir.file_name()
            .map_or("out".into(), |n| n.to_string_lossy()),
        std::process::id()
    ));
    let had_old = dir.exists();
    if had_old {
        let _ = std::fs::remove_dir_all(&old);
        if let Err(e) = std::fs::rename(dir, &old) {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(io(dir, e));
        }
    }
    if let Err(e) = std::fs::rename(&tmp, dir) {
        if had_old {
            let _ = std::fs::rename(&old, dir);
        }
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(io(dir, e));
    }
    if had_old {
        let _ = std::fs::remove_dir_all(&old);
    }
    Ok(())
}

/// `defectkit detect`: fit, threshold, evaluate, write the folder. A Ctrl-C
/// ([`defectkit_core::interrupt`]) stops it between classes with
/// [`AnomalyError::Interrupted`], before anything is written.
pub fn detect(opts: &DetectOptions) -> Result<DetectReport, AnomalyError> {
    let store = open_store(&opts.embeddings)?;
    let mut eval = fit_and_evaluate(&store, &opts.embeddings, &opts.config)?;
    if defectkit_core::interrupt::stop_requested() {
        return Err(AnomalyError::Interrupted);
    }
    let title = format!(
        "{} · {}",
        store.attributes.model_kind,
        opts.config.method.as_str()
    );
    let mut overlays_skipped: Vec<String> = Vec::new();
    write_folder_atomically(&opts.out_dir, |dir| {
        eval.detector.save(dir)?;
        write_json(&dir.join("metrics.json"), &eval.metrics)?;
        write_text(&dir.join("metrics.md"), &metrics_markdown(&title, &eval))?;
        write_text(&dir.join("test_scores.csv"), &scores_csv(&eval))?;
        if opts.plots {
            plot_roc(&dir.join("roc.png"), &title, &eval)?;
            plot_histograms(&dir.join("scores.png"), &title, &eval)?;
            if eval.maps.is_some() {
                overlays_skipped =
                    write_overlays(&dir.join("overlays"), &title, &eval, OVERLAYS_PER_DEFECT)?;
            }
        }
        if let Some(model) = &opts.bundle {
            write_scored_model(&eval.detector, model, &dir.join("model.scored.onnx"))?;
        }
        Ok(())
    })?;
    if let Some(first) = overlays_skipped.first() {
        eval.warnings.push(format!(
            "{} test images could not be read for the overlays and were left out (moved \
             since `embed`?), e.g. {first}",
            overlays_skipped.len()
        ));
    }
    Ok(DetectReport {
        out_dir: opts.out_dir.clone(),
        detector: eval.detector,
        metrics: eval.metrics,
        warnings: eval.warnings,
    })
}

pub(crate) fn write_text(path: &Path, text: &str) -> Result<(), AnomalyError> {
    defectkit_core::fsutil::write_atomic(path, text.as_bytes()).map_err(|e| AnomalyError::File {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

pub(crate) fn write_json(path: &Path, value: &impl Serialize) -> Result<(), AnomalyError> {
    write_text(
        path,
        &(serde_json::to_string_pretty(value).expect("serializes") + "\n"),
    )
}

fn plot_err(path: &Path, e: impl std::fmt::Display) -> AnomalyError {
    AnomalyError::File {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// `0.912` or `–`.
pub fn fmt_opt(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{v:.3}"))
}

fn metrics_markdown(title: &str, eval: &Evaluation) -> String {
    let m = &eval.metrics;
    let cfg = &eval.detector.file.config;
    let mut s = format!(
        "# Detection: {title}\n\nThreshold: the {}th percentile of the `{}` good images' \
         scores, per class (fitted on `{}` good images). Anomalous when score ≥ threshold.\n\
         F1-max is an **oracle**: its threshold was chosen on the test labels and is not \
         deployable.\n\n",
        cfg.percentile, cfg.threshold_split, cfg.fit_split
    );
    s += "| class | good | defective | AUROC | AP | F1 | precision | recall | FPR (test good) | threshold | F1-max (oracle) |\n";
    s += "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n";
    for c in &m.per_class {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.4} | {} |",
            c.class,
            c.n_good,
            c.n_defective,
            fmt_opt(c.auroc),
            fmt_opt(c.average_precision),
            c.f1,
            c.precision,
            c.recall,
            c.fpr_test_good,
            c.threshold,
            fmt_opt(c.oracle_f1_max.map(|f| f.f1)),
        );
    }
    let mm = &m.mean;
    let _ = writeln!(
        s,
        "| **mean** | | | **{}** | {} | {:.3} | {:.3} | {:.3} | {:.3} | | {} |",
        fmt_opt(mm.auroc),
        fmt_opt(mm.average_precision),
        mm.f1,
        mm.precision,
        mm.recall,
        mm.fpr_test_good,
        fmt_opt(mm.oracle_f1_max),
    );
    s += "\n## Recall per defect type (at the deployable threshold)\n\n| class | defect | detected | recall |\n| --- | --- | ---: | ---: |\n";
    for c in &m.per_class {
        for (defect, r) in &c.defect_recall {
            let _ = writeln!(
                s,
                "| {} | {defect} | {}/{} | {:.3} |",
                c.class, r.detected, r.total, r.recall
            );
        }
    }
    if let Some(p) = &m.pixel {
        let _ = write!(
            s,
            "\n## Pixel level (anomaly maps at {side}×{side} vs the ground-truth masks)\n\n\
             AUPRO: the per-region-overlap curve integrated to FPR {lim} and divided by {lim}. \
             Per defect type: its images plus the class's good test images.\n\n\
             | class | defect | images | pixel AUROC | AUPRO |\n| --- | --- | ---: | ---: | ---: |\n",
            side = p.side,
            lim = p.aupro_fpr_limit
        );
        for c in &p.per_class {
            let _ = writeln!(
                s,
                "| {} | **all** | {} | {} | {} |",
                c.class,
                c.all.images,
                fmt_opt(c.all.pixel_auroc),
                fmt_opt(c.all.aupro)
            );
            for (d, v) in &c.per_defect {
                let _ = writeln!(
                    s,
                    "| {} | {d} | {} | {} | {} |",
                    c.class,
                    v.images,
                    fmt_opt(v.pixel_auroc),
                    fmt_opt(v.aupro)
                );
            }
        }
        let _ = writeln!(
            s,
            "| **mean** | | | **{}** | **{}** |",
            fmt_opt(p.mean_pixel_auroc),
            fmt_opt(p.mean_aupro)
        );
    }
    let memory: Vec<(String, usize)> = eval.detector.memory_per_class();
    if memory.iter().any(|(_, b)| *b > 0) {
        s += "\n## Detector size in memory, per class\n\n| class | MiB |\n| --- | ---: |\n";
        for (class, bytes) in &memory {
            let _ = writeln!(s, "| {class} | {:.2} |", *bytes as f64 / (1024.0 * 1024.0));
        }
    }
    if !eval.warnings.is_empty() {
        s += "\n## Warnings\n\n";
        for w in &eval.warnings {
            let _ = writeln!(s, "- {w}");
        }
    }
    s
}

/// CSV field quoting (RFC 4180).
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn scores_csv(eval: &Evaluation) -> String {
    let thresholds = eval.detector.thresholds();
    let mut s = String::from("path,class,defect_type,defective,score,threshold,anomalous\n");
    for (img, path) in eval.test.iter().zip(&eval.test_paths) {
        let t = thresholds[&img.class];
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{}",
            csv_field(path),
            csv_field(&img.class),
            csv_field(&img.defect_type),
            u8::from(img.defective),
            img.score,
            t,
            u8::from(img.score >= t)
        );
    }
    s
}

fn plot_roc(path: &Path, title: &str, eval: &Evaluation) -> Result<(), AnomalyError> {
    let mut series = Vec::new();
    for c in &eval.metrics.per_class {
        let rows: Vec<&ScoredImage> = eval.test.iter().filter(|i| i.class == c.class).collect();
        let scores: Vec<f64> = rows.iter().map(|r| r.score).collect();
        let labels: Vec<bool> = rows.iter().map(|r| r.defective).collect();
        if let Some(points) = roc_curve(&scores, &labels) {
            series.push(Series::new(
                format!("{} ({})", c.class, fmt_opt(c.auroc)),
                points,
            ));
        }
    }
    series.push(Series::new("chance", vec![(0.0, 0.0), (1.0, 1.0)]));
    plot::line_chart(
        path,
        &format!(
            "ROC per class: {title} (mean AUROC {})",
            fmt_opt(eval.metrics.mean.auroc)
        ),
        "false-positive rate",
        "true-positive rate",
        &series,
        &LineOptions::default(),
    )
    .map_err(|e| plot_err(path, e))
}

/// Step outline of a histogram of `values` over `[lo, hi]` in `bins` bins, as fractions.
fn histogram(values: &[f64], lo: f64, hi: f64, bins: usize) -> Vec<(f64, f64)> {
    let mut counts = vec![0usize; bins];
    let width = (hi - lo) / bins as f64;
    for &v in values {
        let b = (((v - lo) / width).floor().max(0.0) as usize).min(bins - 1);
        counts[b] += 1;
    }
    let n = values.len().max(1) as f64;
    let mut points = vec![(lo, 0.0)];
    for (b, &c) in counts.iter().enumerate() {
        let x0 = lo + b as f64 * width;
        let y = c as f64 / n;
        points.push((x0, y));
        points.push((x0 + width, y));
    }
    points.push((hi, 0.0));
    points
}

fn plot_histograms(path: &Path, title: &str, eval: &Evaluation) -> Result<(), AnomalyError> {
    // Scores relative to their class's threshold, so every class's threshold sits at 1.
    let thresholds = eval.detector.thresholds();
    let rel = |good: bool| -> Vec<f64> {
        eval.test
            .iter()
            .filter(|i| i.defective != good)
            .map(|i| {
                let t = thresholds[&i.class];
                if t.abs() > 0.0 {
                    i.score / t
                } else {
                    i.score
                }
            })
            .filter(|v| v.is_finite())
            .collect()
    };
    let (good, bad) = (rel(true), rel(false));
    let all: Vec<f64> = good.iter().chain(&bad).copied().collect();
    if all.is_empty() {
        return Ok(());
    }
    let lo = all.iter().cloned().fold(f64::INFINITY, f64::min).min(1.0);
    let hi = all
        .iter()
        .cloned()
        .fold(f64::NEG_INFINITY, f64::max)
        .max(1.0);
    let hi = if hi > lo { hi } else { lo + 1.0 };
    let series = vec![
        Series::new(
            format!("good ({})", good.len()),
            histogram(&good, lo, hi, 30),
        ),
        Series::new(
            format!("defective ({})", bad.len()),
            histogram(&bad, lo, hi, 30),
        ),
    ];
    plot::line_chart(
        path,
        &format!("Test scores / class threshold: {title}"),
        "score ÷ its class's threshold (anomalous at ≥ 1)",
        "fraction of images",
        &series,
        &LineOptions {
            marker_x: Some((1.0, "threshold".into())),
            ..LineOptions::default()
        },
    )
    .map_err(|e| plot_err(path, e))
}

/// Test images per defect type (and good images per class) drawn in `overlays/<class>.png`.
pub const OVERLAYS_PER_DEFECT: usize = 2;

/// Writes `overlays/<class>.png`: per class, the first `per_defect` test images (by path) of
/// each defect type and of the good ones, each as image | heat map | overlay with the mask
/// contour, on one colour scale per class. Images (or masks) that cannot be read any more
/// are left out; returns why, one entry each.
fn write_overlays(
    dir: &Path,
    title: &str,
    eval: &Evaluation,
    per_defect: usize,
) -> Result<Vec<String>, AnomalyError> {
    let mut skipped = Vec::new();
    let (Some(maps), Some(spec)) = (&eval.maps, &eval.preprocess) else {
        return Ok(skipped);
    };
    std::fs::create_dir_all(dir).map_err(|e| plot_err(dir, e))?;
    let thresholds = eval.detector.thresholds();
    let mut by_class: BTreeMap<&str, BTreeMap<&str, Vec<usize>>> = BTreeMap::new();
    for (i, img) in eval.test.iter().enumerate() {
        by_class
            .entry(img.class.as_str())
            .or_default()
            .entry(img.defect_type.as_str())
            .or_default()
            .push(i);
    }
    for (class, types) in by_class {
        let mut rows = Vec::new();
        for picked in types.values() {
            let mut picked = picked.clone();
            picked.sort_by(|&a, &b| eval.test_paths[a].cmp(&eval.test_paths[b]));
            for &i in picked.iter().take(per_defect) {
                let img = &eval.test[i];
                let path = Path::new(&eval.test_paths[i]);
                let decoded = match defectkit_core::data::image_io::load_rgb8(path) {
                    Ok(img) => img,
                    Err(e) => {
                        skipped.push(e.to_string());
                        continue;
                    }
                };
                let mask = match eval.test_masks.get(i).map(String::as_str) {
                    Some(m) if !m.is_empty() => match prepare_mask(Path::new(m), spec) {
                        Ok(mask) => Some(mask),
                        Err(e) => {
                            skipped.push(e.to_string());
                            continue;
                        }
                    },
                    _ => None,
                };
                let t = thresholds[&img.class];
                let name = path
                    .file_stem()
                    .map(|s| s.to_string_lossy())
                    .unwrap_or_default();
                rows.push(plot::OverlayRow {
                    image: spec.prepare(&decoded),
                    map: maps[i].clone(),
                    mask,
                    label: format!(
                        "{}/{} {name}: score {:.3} {} threshold {:.3}",
                        img.class,
                        img.defect_type,
                        img.score,
                        if img.score >= t { "≥" } else { "<" },
                        t
                    ),
                });
            }
        }
        if rows.is_empty() {
            continue;
        }
        let file = dir.join(format!("{}.png", sanitize_file_name(class)));
        plot::overlay_grid(&file, &format!("{class} · {title}"), &rows)
            .map_err(|e| plot_err(&file, e))?;
    }
    Ok(skipped)
}

/// A class name as a file name (path separators and odd characters replaced).
fn sanitize_file_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// One row of a comparison.
#[derive(Debug, Clone, Serialize)]
pub struct ComparisonRow {
    /// The model's label (its folder name, e.g. `a`).
    pub model: String,
    /// Its kind.
    pub kind: String,
    /// The method.
    pub method: DetectorMethod,
    /// Mean metrics over classes.
    pub mean: crate::anomaly::evaluate::MeanMetrics,
    /// Per-class AUROC.
    pub class_auroc: BTreeMap<String, Option<f64>>,
    /// Mean pixel AUROC (patch detectors).
    pub pixel_auroc: Option<f64>,
    /// Mean AUPRO (patch detectors).
    pub aupro: Option<f64>,
}

/// A bar label's method: `maha`, `eucl`, `knn`, `recon`.
fn short_method(m: DetectorMethod) -> &'static str {
    match m {
        DetectorMethod::Mahalanobis => "maha",
        DetectorMethod::Euclidean => "eucl",
        DetectorMethod::Knn => "knn",
        DetectorMethod::Recon => "recon",
        DetectorMethod::Padim => "padim",
        DetectorMethod::Patchcore => "pcore",
    }
}

/// What [`compare`] wrote.
#[derive(Debug)]
pub struct CompareReport {
    /// Rows, in the order run.
    pub rows: Vec<ComparisonRow>,
    /// `(file, method, why)` for combinations that could not run (e.g. recon on a classifier).
    pub skipped: Vec<(PathBuf, DetectorMethod, String)>,
    /// The Markdown table.
    pub markdown: String,
    /// Files written.
    pub files: Vec<PathBuf>,
}

/// The label of an embeddings file: its folder's name (`exports/main/b/embeddings.h5` → `b`).
pub fn model_label(path: &Path) -> String {
    path.parent()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// Fits and evaluates every `methods` × `files` pair (each with `base`'s options, its method
/// replaced) and writes `comparison.md`, `comparison.csv`, `comparison.json` and
/// `comparison.png` into `out_dir`. A pair that cannot run (recon on a classifier, a class
/// too small for its method) is reported in [`CompareReport::skipped`], not fatal; a Ctrl-C
/// stops it between pairs with [`AnomalyError::Interrupted`], before anything is written.
pub fn compare(
    files: &[PathBuf],
    methods: &[DetectorMethod],
    base: &DetectorConfig,
    out_dir: &Path,
) -> Result<CompareReport, AnomalyError> {
    let mut rows = Vec::new();
    let mut skipped = Vec::new();
    for file in files {
        let store = open_store(file)?;
        let is_ae = store
            .split(&base.fit_split)
            .map(|s| s.recon_error.is_some())
            .unwrap_or(false);
        for &method in methods {
            if method == DetectorMethod::Recon && !is_ae {
                skipped.push((
                    file.clone(),
                    method,
                    format!("{} is not an autoencoder", store.attributes.model_kind),
                ));
                continue;
            }
            let config = DetectorConfig {
                method,
                ..base.clone()
            };
            let eval = match fit_and_evaluate(&store, file, &config) {
                Ok(eval) => eval,
                Err(AnomalyError::Interrupted) => return Err(AnomalyError::Interrupted),
                Err(e) => {
                    skipped.push((file.clone(), method, e.to_string()));
                    continue;
                }
            };
            rows.push(ComparisonRow {
                model: model_label(file),
                kind: store.attributes.model_kind.clone(),
                method,
                mean: eval.metrics.mean.clone(),
                class_auroc: eval
                    .metrics
                    .per_class
                    .iter()
                    .map(|c| (c.class.clone(), c.auroc))
                    .collect(),
                pixel_auroc: eval.metrics.pixel.as_ref().and_then(|p| p.mean_pixel_auroc),
                aupro: eval.metrics.pixel.as_ref().and_then(|p| p.mean_aupro),
            });
        }
    }
    let classes: Vec<String> = {
        let mut c: Vec<String> = rows
            .iter()
            .flat_map(|r| r.class_auroc.keys().cloned())
            .collect();
        c.sort();
        c.dedup();
        c
    };
    let mut md = String::from(
        "| model | kind | method | mean AUROC | AP | F1 | FPR (test good) | F1-max (oracle) | pixel AUROC | AUPRO |",
    );
    let mut csv = String::from(
        "model,kind,method,mean_auroc,mean_ap,mean_f1,mean_fpr_test_good,mean_f1_max_oracle,mean_pixel_auroc,mean_aupro",
    );
    for c in &classes {
        md += &format!(" {c} |");
        csv += &format!(",auroc_{}", csv_field(c));
    }
    md += "\n| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |";
    md += &" ---: |".repeat(classes.len());
    md += "\n";
    csv += "\n";
    let num = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.6}"));
    for r in &rows {
        let _ = write!(
            md,
            "| {} | {} | {} | {} | {} | {:.3} | {:.3} | {} | {} | {} |",
            r.model,
            r.kind,
            r.method,
            fmt_opt(r.mean.auroc),
            fmt_opt(r.mean.average_precision),
            r.mean.f1,
            r.mean.fpr_test_good,
            fmt_opt(r.mean.oracle_f1_max),
            fmt_opt(r.pixel_auroc),
            fmt_opt(r.aupro),
        );
        let _ = write!(
            csv,
            "{},{},{},{},{},{:.6},{:.6},{},{},{}",
            csv_field(&r.model),
            r.kind,
            r.method,
            num(r.mean.auroc),
            num(r.mean.average_precision),
            r.mean.f1,
            r.mean.fpr_test_good,
            num(r.mean.oracle_f1_max),
            num(r.pixel_auroc),
            num(r.aupro),
        );
        for c in &classes {
            let v = r.class_auroc.get(c).copied().flatten();
            let _ = write!(md, " {} |", fmt_opt(v));
            let _ = write!(csv, ",{}", num(v));
        }
        md += "\n";
        csv += "\n";
    }
    std::fs::create_dir_all(out_dir).map_err(|e| plot_err(out_dir, e))?;
    let md_path = out_dir.join("comparison.md");
    let csv_path = out_dir.join("comparison.csv");
    let png_path = out_dir.join("comparison.png");
    write_text(&md_path, &md)?;
    write_text(&csv_path, &csv)?;
    let bars: Vec<(String, f64)> = rows
        .iter()
        .map(|r| {
            (
                format!("{} {}", r.model, short_method(r.method)),
                r.mean.auroc.unwrap_or(f64::NAN),
            )
        })
        .collect();
    plot::bar_chart(
        &png_path,
        "Mean image AUROC over classes (test split)",
        "mean AUROC",
        &bars,
        ((110 * bars.len() as u32).max(1000), 540),
    )
    .map_err(|e| plot_err(&png_path, e))?;
    write_json(&out_dir.join("comparison.json"), &rows)?;
    Ok(CompareReport {
        rows,
        skipped,
        markdown: md,
        files: vec![md_path, csv_path, png_path],
    })
}
