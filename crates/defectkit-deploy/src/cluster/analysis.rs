//! The `cluster` verb's analysis: per scope (all classes in one space, then each class),
//! standardize and PCA-project the clustered split with statistics fitted on the fit split's
//! good images, embed it in 2-D with t-SNE, run DBSCAN in each configured space (eps from the
//! k-distance knee unless given), and score "noise = anomalous" against the labels, next to
//! a fitted detector's verdicts on the same images when one is given.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use ndarray::{s, Array2, Axis};
use serde::Serialize;

use defectkit_core::config::cluster::{ClusterConfig, ClusterSpace};
use defectkit_core::metrics::Confusion;
use defectkit_core::plot::{self, LineOptions, ScatterGroup, Series};

use super::agreement::{adjusted_rand, normalized_mutual_info};
use super::dbscan::dbscan;
use super::knee::{k_distances, knee};
use super::tsne::{tsne_2d, TsneOptions};
use crate::anomaly::{AnomalyError, Detector};
use crate::detect::{csv_field, write_folder_atomically, write_json, write_text};
use crate::stats::pca::{Pca, Standardizer};
use crate::stats::StatsError;
use crate::store::{EmbeddingStore, SplitRecords};

/// Why a cluster run stopped.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The embeddings (or the detector) could not be read or do not fit.
    #[error(transparent)]
    Anomaly(#[from] AnomalyError),
    /// A statistic failed for one scope.
    #[error("{scope}: {source}")]
    Stats {
        /// `all` or the class.
        scope: String,
        /// What failed.
        source: StatsError,
    },
    /// The options do not fit the data.
    #[error("{0}")]
    Invalid(String),
    /// Stopped by Ctrl-C between two scopes ([`defectkit_core::interrupt`]).
    #[error("interrupted; nothing was written")]
    Interrupted,
}

/// What to analyse.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// The embeddings file.
    pub embeddings: PathBuf,
    /// Output folder (replaced atomically).
    pub out_dir: PathBuf,
    /// The analysis.
    pub config: ClusterConfig,
    /// Only these classes (default: all in the file).
    pub classes: Option<Vec<String>>,
    /// A `detector.json` fitted on the same embeddings, for the comparison columns.
    pub detector: Option<PathBuf>,
    /// Draw the PNGs.
    pub plots: bool,
}

/// One scope × space.
#[derive(Debug, Clone, Serialize)]
pub struct SpaceResult {
    /// `all` or a class.
    pub scope: String,
    /// The space.
    pub space: ClusterSpace,
    /// Images clustered.
    pub n: usize,
    /// The space's dimension.
    pub dims: usize,
    /// The DBSCAN radius used.
    pub eps: f64,
    /// Whether it came from the k-distance knee.
    pub eps_from_knee: bool,
    /// Clusters found.
    pub clusters: usize,
    /// Points labelled noise.
    pub noise: usize,
    /// noise / n.
    pub noise_fraction: f64,
    /// Noise read as "anomalous" against the true labels.
    pub confusion: Confusion,
    /// Precision of noise-as-anomaly.
    pub precision: f64,
    /// Recall of noise-as-anomaly.
    pub recall: f64,
    /// F1 of noise-as-anomaly.
    pub f1: f64,
    /// Accuracy of noise-as-anomaly.
    pub accuracy: f64,
    /// Adjusted Rand index of the clusters (noise one label) against `agreement_with`.
    pub ari: f64,
    /// Normalized mutual information, same labels.
    pub nmi: f64,
    /// `class` (scope `all`) or `defect_type` (one class).
    pub agreement_with: String,
}

/// The detector's verdicts on the same images.
#[derive(Debug, Clone, Serialize)]
pub struct DetectorResult {
    /// `all` or a class.
    pub scope: String,
    /// Confusion at the detector's thresholds.
    pub confusion: Confusion,
    /// Precision.
    pub precision: f64,
    /// Recall.
    pub recall: f64,
    /// F1.
    pub f1: f64,
    /// Accuracy.
    pub accuracy: f64,
}

/// What a cluster run produced.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterReport {
    /// Every scope × space.
    pub rows: Vec<SpaceResult>,
    /// The detector's rows (when given).
    pub detector: Vec<DetectorResult>,
    /// PCA components kept for scope `all`, and the variance they explain.
    pub pca_components: usize,
    /// Share of the variance those components explain.
    pub pca_variance: f64,
    /// Warnings (perplexity lowered, spaces skipped…).
    pub warnings: Vec<String>,
    /// The folder written.
    pub out_dir: PathBuf,
    /// The Markdown table.
    pub markdown: String,
}

/// A scope's rows: indices into the clustered split.
struct Scope {
    name: String,
    /// All classes in one space (the aggregate scope).
    all: bool,
    /// Its files' name prefix (unique).
    stem: String,
    fit: Vec<usize>,
    target: Vec<usize>,
}

fn rows_of(records: &SplitRecords, index: &[usize]) -> Array2<f32> {
    let d = records.dim;
    let mut v = Vec::with_capacity(index.len() * d);
    for &i in index {
        v.extend_from_slice(&records.embeddings[i * d..(i + 1) * d]);
    }
    Array2::from_shape_vec((index.len(), d), v).expect("n×d")
}

/// Small integer ids for string labels, in order of first appearance.
fn ids(labels: &[&str]) -> Vec<usize> {
    let mut seen: Vec<&str> = Vec::new();
    labels
        .iter()
        .map(|l| match seen.iter().position(|s| s == l) {
            Some(p) => p,
            None => {
                seen.push(l);
                seen.len() - 1
            }
        })
        .collect()
}

/// A plottable file name for a scope.
fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Runs the analysis and writes its folder. A Ctrl-C ([`defectkit_core::interrupt`])
/// stops it between scopes (t-SNE runs per scope) before anything is written.
pub fn cluster(opts: &ClusterOptions) -> Result<ClusterReport, ClusterError> {
    let cfg = &opts.config;
    cfg.validate().map_err(ClusterError::Invalid)?;
    let store = EmbeddingStore::open(&opts.embeddings).map_err(AnomalyError::from)?;
    let split = |name: &str| {
        store
            .split(name)
            .map_err(|e| ClusterError::Invalid(format!("{}: {e}", opts.embeddings.display())))
    };
    let target = split(&cfg.split)?;
    let fit = split(&cfg.fit_split)?;
    let mut classes: Vec<String> = target.class.clone();
    classes.sort();
    classes.dedup();
    if let Some(wanted) = &opts.classes {
        for c in wanted {
            if !classes.contains(c) {
                return Err(ClusterError::Invalid(format!(
                    "class {c:?} is not in split {:?} (present: {})",
                    cfg.split,
                    classes.join(", ")
                )));
            }
        }
        classes.retain(|c| wanted.contains(c));
    }
    if classes.is_empty() {
        return Err(ClusterError::Invalid(format!(
            "split {:?} of {} is empty",
            cfg.split,
            opts.embeddings.display()
        )));
    }
    let detector = match &opts.detector {
        Some(path) => {
            let d = Detector::load(path)?;
            if d.file.model.sha256 != store.attributes.model_sha256 {
                return Err(ClusterError::Invalid(format!(
                    "{} was fitted on another model's embeddings than {}",
                    path.display(),
                    opts.embeddings.display()
                )));
            }
            d.check_maps(store.attributes.maps.as_ref())?;
            Some(d)
        }
        None => None,
    };
    let in_scope = |records: &SplitRecords, cls: &[String], good_only: bool| -> Vec<usize> {
        (0..records.len())
            .filter(|&i| cls.contains(&records.class[i]) && (!good_only || records.label[i] == 0))
            .collect()
    };
    let mut scopes = vec![Scope {
        name: "all".into(),
        all: true,
        stem: "all".into(),
        fit: in_scope(fit, &classes, true),
        target: in_scope(target, &classes, false),
    }];
    if cfg.per_class {
        for (i, c) in classes.iter().enumerate() {
            let one = std::slice::from_ref(c);
            scopes.push(Scope {
                name: c.clone(),
                all: false,
                stem: format!("class{i:02}_{}", slug(c)),
                fit: in_scope(fit, one, true),
                target: in_scope(target, one, false),
            });
        }
    }

    let mut rows = Vec::new();
    let mut det_rows = Vec::new();
    let mut warnings = Vec::new();
    let mut figures: Vec<Figure> = Vec::new();
    let mut pca_summary = (0usize, 0.0f64);
    let mut lowered: Vec<String> = Vec::new();
    for scope in &scopes {
        if defectkit_core::interrupt::stop_requested() {
            return Err(ClusterError::Interrupted);
        }
        // A class that cannot be analysed (too few images, degenerate embeddings) is skipped
        // with a warning; the all-classes scope failing ends the run.
        let outcome = (|| -> Result<(), ClusterError> {
            let stats = |source| ClusterError::Stats {
                scope: scope.name.clone(),
                source,
            };
            if scope.fit.len() < 3 {
                return Err(ClusterError::Invalid(format!(
                    "only {} good {} images to fit the projection",
                    scope.fit.len(),
                    cfg.fit_split
                )));
            }
            let fit_rows = rows_of(fit, &scope.fit);
            let target_rows = rows_of(target, &scope.target);
            let standardizer = Standardizer::fit(fit_rows.view()).map_err(stats)?;
            let zf = standardizer.transform(fit_rows.view()).map_err(stats)?;
            let zt = standardizer.transform(target_rows.view()).map_err(stats)?;
            let k_max = cfg
                .pca
                .max_components
                .min(zf.nrows())
                .min(zf.ncols())
                .max(2.min(zf.ncols()));
            let pca = Pca::fit(zf.view(), k_max).map_err(stats)?;
            let mut cumulative = 0.0;
            let mut k = pca.explained_variance_ratio.len();
            for (i, r) in pca.explained_variance_ratio.iter().enumerate() {
                cumulative += r;
                if cumulative >= cfg.pca.variance - 1e-12 {
                    k = i + 1;
                    break;
                }
            }
            let k = k.max(2.min(pca.explained_variance_ratio.len()));
            let explained: f64 = pca.explained_variance_ratio[..k].iter().sum();
            let projected = pca.transform(zt.view());
            let pca_k = projected.slice(s![.., ..k]).to_owned();
            let pca_2 = projected
                .slice(s![.., ..2.min(projected.ncols())])
                .to_owned();
            if scope.all {
                pca_summary = (k, explained);
                if opts.plots {
                    figures.push(Figure::Variance {
                        ratios: pca.all_ratios.clone(),
                        k,
                    });
                }
            }
            // Labels of the clustered images.
            let defective: Vec<bool> = scope.target.iter().map(|&i| target.label[i] != 0).collect();
            let against_classes = scope.all && classes.len() > 1;
            let truth: Vec<&str> = if against_classes {
                scope
                    .target
                    .iter()
                    .map(|&i| target.class[i].as_str())
                    .collect()
            } else {
                scope
                    .target
                    .iter()
                    .map(|&i| target.defect_type[i].as_str())
                    .collect()
            };
            let truth_ids = ids(&truth);
            let n = scope.target.len();
            let mut tsne: Option<Array2<f64>> = None;
            if cfg.spaces.contains(&ClusterSpace::Tsne) {
                let max_perplexity = (n as f64 - 1.0) / 3.0 - 1e-6;
                if max_perplexity < 1.0 {
                    warnings.push(format!(
                        "{}: {n} images are too few for t-SNE: tsne skipped",
                        scope.name
                    ));
                } else {
                    let perplexity = cfg.tsne.perplexity.min(max_perplexity);
                    if perplexity < cfg.tsne.perplexity - 1e-9 {
                        lowered.push(format!("{} ({n} images: {perplexity:.1})", scope.name));
                    }
                    let o = TsneOptions {
                        perplexity,
                        iterations: cfg.tsne.iterations,
                        theta: cfg.tsne.theta,
                        seed: cfg.tsne.seed,
                    };
                    let map = tsne_2d(pca_k.view(), &o).map_err(stats)?;
                    // bhtsne can collapse whole classes onto single points (measured on a 1.7k-row
                    // set, bench/results/cluster.md): say so rather than draw a misleading map.
                    let mut distinct: Vec<(u64, u64)> = map
                        .axis_iter(Axis(0))
                        .map(|r| (r[0].to_bits(), r[1].to_bits()))
                        .collect();
                    distinct.sort_unstable();
                    distinct.dedup();
                    if (distinct.len() as f64) < 0.9 * n as f64 {
                        warnings.push(format!(
                        "{}: t-SNE collapsed: {} distinct points for {n} images; the tsne space \
                         and its plots are unreliable (a known bhtsne problem, see \
                         bench/results/cluster.md)",
                        scope.name,
                        distinct.len()
                    ));
                    }
                    tsne = Some(map);
                }
            }
            for &space in &cfg.spaces {
                let data: Array2<f64> = match space {
                    ClusterSpace::Raw => zt.clone(),
                    ClusterSpace::Pca => pca_k.clone(),
                    ClusterSpace::Pca2 if pca_2.ncols() < 2 => {
                        warnings.push(format!(
                            "{}: embeddings of dimension {}: pca2 skipped",
                            scope.name,
                            zt.ncols()
                        ));
                        continue;
                    }
                    ClusterSpace::Pca2 => pca_2.clone(),
                    ClusterSpace::Tsne => match &tsne {
                        Some(t) => t.clone(),
                        None => continue,
                    },
                };
                let min_samples = cfg.dbscan.min_samples;
                let (eps, from_knee) = match cfg.dbscan.eps {
                    Some(e) => (e, false),
                    None => {
                        let curve = k_distances(data.view(), min_samples).map_err(stats)?;
                        let Some((at, value)) = knee(&curve) else {
                            warnings.push(format!(
                                "{} {}: no k-distance knee: skipped",
                                scope.name,
                                space.as_str()
                            ));
                            continue;
                        };
                        if value <= 0.0 {
                            warnings.push(format!(
                                "{} {}: the k-distance knee is 0 (duplicate points): skipped",
                                scope.name,
                                space.as_str()
                            ));
                            continue;
                        }
                        if opts.plots && scope.all {
                            figures.push(Figure::KDistance {
                                space,
                                curve,
                                at,
                                eps: value,
                                k: min_samples,
                            });
                        }
                        (value, true)
                    }
                };
                if n < min_samples {
                    warnings.push(format!(
                        "{} {}: {n} images, fewer than min_samples = {min_samples}: skipped",
                        scope.name,
                        space.as_str()
                    ));
                    continue;
                }
                let labels = dbscan(data.view(), eps, min_samples).map_err(stats)?;
                let noise = labels.iter().filter(|l| l.is_none()).count();
                let clusters = labels.iter().flatten().max().map_or(0, |m| m + 1);
                let flags: Vec<f64> = labels
                    .iter()
                    .map(|l| f64::from(u8::from(l.is_none())))
                    .collect();
                let confusion = Confusion::at_threshold(&flags, &defective, 0.5);
                rows.push(SpaceResult {
                    scope: scope.name.clone(),
                    space,
                    n,
                    dims: data.ncols(),
                    eps,
                    eps_from_knee: from_knee,
                    clusters,
                    noise,
                    noise_fraction: noise as f64 / n.max(1) as f64,
                    precision: confusion.precision(),
                    recall: confusion.recall(),
                    f1: confusion.f1(),
                    accuracy: confusion.accuracy(),
                    confusion,
                    ari: adjusted_rand(&labels, &truth_ids),
                    nmi: normalized_mutual_info(&labels, &truth_ids),
                    agreement_with: if against_classes {
                        "class"
                    } else {
                        "defect_type"
                    }
                    .into(),
                });
                if opts.plots
                    && matches!(space, ClusterSpace::Pca2 | ClusterSpace::Tsne)
                    && data.ncols() >= 2
                {
                    figures.push(Figure::Scatter {
                        scope: scope.name.clone(),
                        stem: scope.stem.clone(),
                        space,
                        points: data.axis_iter(Axis(0)).map(|r| (r[0], r[1])).collect(),
                        truth: if scope.all {
                            defective
                                .iter()
                                .map(|&d| if d { "defective" } else { "good" }.to_string())
                                .collect()
                        } else {
                            truth.iter().map(|t| t.to_string()).collect()
                        },
                        labels,
                    });
                }
            }
            if let Some(det) = &detector {
                let subset = crate::detect::subset_records(target, &scope.target);
                let scores = det.score_split(&subset)?;
                let thresholds = det.thresholds();
                let flags: Vec<f64> = (0..subset.len())
                    .map(|i| f64::from(u8::from(scores[i] >= thresholds[&subset.class[i]])))
                    .collect();
                let confusion = Confusion::at_threshold(&flags, &defective, 0.5);
                det_rows.push(DetectorResult {
                    scope: scope.name.clone(),
                    precision: confusion.precision(),
                    recall: confusion.recall(),
                    f1: confusion.f1(),
                    accuracy: confusion.accuracy(),
                    confusion,
                });
            }
            Ok(())
        })();
        match outcome {
            Ok(()) => {}
            Err(e) if !scope.all => warnings.push(format!("{}: skipped: {e}", scope.name)),
            Err(e) => return Err(e),
        }
    }
    if defectkit_core::interrupt::stop_requested() {
        return Err(ClusterError::Interrupted);
    }
    if rows.is_empty() {
        return Err(ClusterError::Invalid(format!(
            "nothing could be clustered: {}",
            warnings.join("; ")
        )));
    }
    if !lowered.is_empty() {
        warnings.push(format!(
            "t-SNE needs 3·perplexity < N − 1: perplexity {} lowered for {}",
            cfg.tsne.perplexity,
            lowered.join(", ")
        ));
    }
    let markdown = table_markdown(&rows, &det_rows, detector.as_ref(), &opts.embeddings);
    let csv = table_csv(&rows);
    let report = ClusterReport {
        rows,
        detector: det_rows,
        pca_components: pca_summary.0,
        pca_variance: pca_summary.1,
        warnings,
        out_dir: opts.out_dir.clone(),
        markdown,
    };
    write_folder_atomically(&opts.out_dir, |dir| {
        write_text(&dir.join("cluster.md"), &report.markdown)?;
        write_text(&dir.join("cluster.csv"), &csv)?;
        write_json(&dir.join("cluster.json"), &report)?;
        for f in &figures {
            f.draw(dir)?;
        }
        Ok(())
    })?;
    Ok(report)
}

fn table_markdown(
    rows: &[SpaceResult],
    det: &[DetectorResult],
    detector: Option<&Detector>,
    embeddings: &Path,
) -> String {
    let mut s = format!(
        "# DBSCAN outliers: {}\n\nNoise points read as anomalies (precision, recall, F1, \
         accuracy against the true good/defective labels); ARI/NMI of the clusters (noise one \
         label) against the classes (scope `all`) or the defect types (one class).\n\n",
        embeddings.display()
    );
    s += "| scope | space | n | dims | eps | clusters | noise | precision | recall | F1 | accuracy | ARI | NMI |";
    if detector.is_some() {
        s += " detector F1 | detector precision | detector recall |";
    }
    s += "\n| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |";
    if detector.is_some() {
        s += " ---: | ---: | ---: |";
    }
    s += "\n";
    let by_scope: BTreeMap<&str, &DetectorResult> =
        det.iter().map(|d| (d.scope.as_str(), d)).collect();
    for r in rows {
        let _ = write!(
            s,
            "| {} | {} | {} | {} | {:.3}{} | {} | {} ({:.0} %) | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
            r.scope,
            r.space.as_str(),
            r.n,
            r.dims,
            r.eps,
            if r.eps_from_knee { " (knee)" } else { "" },
            r.clusters,
            r.noise,
            100.0 * r.noise_fraction,
            r.precision,
            r.recall,
            r.f1,
            r.accuracy,
            r.ari,
            r.nmi
        );
        if detector.is_some() {
            match by_scope.get(r.scope.as_str()) {
                Some(d) => {
                    let _ = write!(s, " {:.3} | {:.3} | {:.3} |", d.f1, d.precision, d.recall);
                }
                None => s += " – | – | – |",
            }
        }
        s += "\n";
    }
    if let Some(d) = detector {
        let _ = write!(
            s,
            "\nDetector columns: `{}` at its deployable thresholds on the same images.\n",
            d.file.method
        );
    }
    s
}

fn table_csv(rows: &[SpaceResult]) -> String {
    let mut s = String::from(
        "scope,space,n,dims,eps,eps_from_knee,clusters,noise,noise_fraction,precision,recall,f1,accuracy,ari,nmi,agreement_with\n",
    );
    for r in rows {
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            csv_field(&r.scope),
            r.space.as_str(),
            r.n,
            r.dims,
            r.eps,
            r.eps_from_knee,
            r.clusters,
            r.noise,
            r.noise_fraction,
            r.precision,
            r.recall,
            r.f1,
            r.accuracy,
            r.ari,
            r.nmi,
            r.agreement_with
        );
    }
    s
}

/// A PNG to draw once the numbers are in.
enum Figure {
    Variance {
        ratios: Vec<f64>,
        k: usize,
    },
    KDistance {
        space: ClusterSpace,
        curve: Vec<f64>,
        at: usize,
        eps: f64,
        k: usize,
    },
    Scatter {
        scope: String,
        stem: String,
        space: ClusterSpace,
        points: Vec<(f64, f64)>,
        truth: Vec<String>,
        labels: Vec<Option<usize>>,
    },
}

fn plot_err(path: &Path, e: impl std::fmt::Display) -> AnomalyError {
    AnomalyError::File {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

impl Figure {
    fn draw(&self, dir: &Path) -> Result<(), AnomalyError> {
        match self {
            Figure::Variance { ratios, k } => {
                let path = dir.join("pca_variance.png");
                let mut cum = 0.0;
                let points: Vec<(f64, f64)> = ratios
                    .iter()
                    .enumerate()
                    .map(|(i, r)| {
                        cum += r;
                        ((i + 1) as f64, cum)
                    })
                    .collect();
                plot::line_chart(
                    &path,
                    "PCA: cumulative explained variance (all classes)",
                    "components",
                    "explained variance",
                    &[Series::new("cumulative", points)],
                    &LineOptions {
                        marker_x: Some((*k as f64, format!("kept: {k}"))),
                        ..LineOptions::default()
                    },
                )
                .map_err(|e| plot_err(&path, e))
            }
            Figure::KDistance {
                space,
                curve,
                at,
                eps,
                k,
            } => {
                let path = dir.join(format!("kdistance_{}.png", space.as_str()));
                let points = curve
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (i as f64, *v))
                    .collect();
                plot::line_chart(
                    &path,
                    &format!("{k}-distance curve, {} (all classes)", space.as_str()),
                    "points, sorted",
                    &format!("distance to the {k}-th nearest point"),
                    &[Series::new("k-distance", points)],
                    &LineOptions {
                        marker_x: Some((*at as f64, format!("knee: eps = {eps:.3}"))),
                        ..LineOptions::default()
                    },
                )
                .map_err(|e| plot_err(&path, e))
            }
            Figure::Scatter {
                scope,
                stem,
                space,
                points,
                truth,
                labels,
            } => {
                let axes = match space {
                    ClusterSpace::Tsne => ("t-SNE 1", "t-SNE 2"),
                    _ => ("PC 1", "PC 2"),
                };
                let mut by_truth: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
                for (p, t) in points.iter().zip(truth) {
                    by_truth.entry(t.as_str()).or_default().push(*p);
                }
                // Good first, so its colour is the same in every figure.
                let mut groups: Vec<ScatterGroup> = Vec::new();
                if let Some(g) = by_truth.remove("good") {
                    groups.push(ScatterGroup::new("good", g));
                }
                groups.extend(by_truth.into_iter().map(|(t, p)| ScatterGroup::new(t, p)));
                let path = dir.join(format!("{stem}_{}_truth.png", space.as_str()));
                plot::scatter(
                    &path,
                    &format!("{} · {}: truth", scope, space.as_str()),
                    axes.0,
                    axes.1,
                    &groups,
                    (900, 640),
                )
                .map_err(|e| plot_err(&path, e))?;
                let mut by_cluster: BTreeMap<Option<usize>, Vec<(f64, f64)>> = BTreeMap::new();
                for (p, l) in points.iter().zip(labels) {
                    by_cluster.entry(*l).or_default().push(*p);
                }
                let groups: Vec<ScatterGroup> = by_cluster
                    .into_iter()
                    .map(|(l, p)| {
                        let name = l.map_or("noise".to_string(), |c| format!("cluster {c}"));
                        ScatterGroup::new(name, p)
                    })
                    .collect();
                let path = dir.join(format!("{stem}_{}_dbscan.png", space.as_str()));
                plot::scatter(
                    &path,
                    &format!(
                        "{} · {}: DBSCAN (noise = candidate anomalies)",
                        scope,
                        space.as_str()
                    ),
                    axes.0,
                    axes.1,
                    &groups,
                    (900, 640),
                )
                .map_err(|e| plot_err(&path, e))
            }
        }
    }
}
