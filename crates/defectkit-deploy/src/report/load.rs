//! Reading a study dir (the contract of `defectkit_core::study`) into one [`Study`]: the
//! required records (study.json, manifest.json) are errors when missing or malformed; every
//! other part is optional and its absence is remembered (and said in the report).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use defectkit_core::config::Config;
use defectkit_core::logging::{MetricRecord, METRICS_JSONL};
use defectkit_core::onnx::ModelMetadata;
use defectkit_core::run::RunSummary;
use defectkit_core::study::{
    FinalModel, Manifest, Selection, StudyRecord, MANIFEST_FILE, SELECTION_FILE, STUDY_FILE,
};

use super::ReportError;

/// One training run dir of the study.
#[derive(Debug, Clone)]
pub(crate) struct RunInfo {
    /// Relative to the study dir (`runs/b/set1-seed42`).
    pub rel: PathBuf,
    /// Its setting index and seed (from the folder name).
    pub setting: usize,
    /// The training seed.
    pub seed: u64,
    /// `summary.json` (None when missing).
    pub summary: Option<RunSummary>,
    /// `metrics.jsonl` records.
    pub epochs: Vec<MetricRecord>,
    /// The typed `.hydra/config.yaml` (None when missing or unreadable).
    pub config: Option<Config>,
    /// SHA-256 of `.hydra/config.yaml`'s bytes.
    pub config_hash: Option<String>,
    /// `reconstructions.png` (U-Net runs).
    pub recon_grid: Option<PathBuf>,
    /// The teacher trained inside this run (`teacher/`): its metrics records and loss curve.
    pub teacher: Option<(Vec<MetricRecord>, Option<PathBuf>)>,
}

/// One export of a final model (`models/<label>/`).
#[derive(Debug, Clone)]
pub(crate) struct ExportInfo {
    /// `model.json`.
    pub metadata: Option<ModelMetadata>,
    /// Elements of the ONNX initializers (parameters incl. BN statistics).
    pub onnx_parameters: Option<u64>,
}

/// The mean metrics of a comparison row (lenient: what the report needs).
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct MeanRow {
    /// Mean image AUROC over classes.
    #[serde(default)]
    pub auroc: Option<f64>,
}

/// One row of `compare/comparison.json` (`detect::ComparisonRow`).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct CompRow {
    /// The label (`b_s42`).
    pub model: String,
    /// The model kind.
    #[serde(default)]
    pub kind: String,
    /// The detector method.
    pub method: String,
    /// Means over classes.
    pub mean: MeanRow,
    /// Per-class AUROC.
    #[serde(default)]
    pub class_auroc: BTreeMap<String, Option<f64>>,
    /// Mean pixel AUROC.
    #[serde(default)]
    pub pixel_auroc: Option<f64>,
    /// Mean AUPRO.
    #[serde(default)]
    pub aupro: Option<f64>,
}

/// `bench/quantized.{md,csv}` and its charts.
#[derive(Debug, Clone, Default)]
pub(crate) struct Bench {
    /// CSV rows, by column name.
    pub rows: Vec<BTreeMap<String, String>>,
    /// The md's `## Model selection` section (the top-N ranking), verbatim.
    pub selection_md: Option<String>,
    /// PNG charts under `bench/quantized/`.
    pub charts: Vec<PathBuf>,
}

/// One DBSCAN result row of `cluster.json`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ClusterRow {
    /// `all` or a class.
    pub scope: String,
    /// The space (`raw`, `pca`, `pca2`, `tsne`).
    pub space: String,
    /// Images.
    pub n: usize,
    /// Dimension.
    #[serde(default)]
    pub dims: usize,
    /// DBSCAN radius.
    pub eps: f64,
    /// Clusters.
    pub clusters: usize,
    /// Noise points.
    pub noise: usize,
    /// Precision of noise as anomaly.
    pub precision: f64,
    /// Recall of noise as anomaly.
    pub recall: f64,
    /// F1 of noise as anomaly.
    pub f1: f64,
    /// Adjusted Rand index.
    #[serde(default)]
    pub ari: f64,
    /// NMI.
    #[serde(default)]
    pub nmi: f64,
    /// What the ARI/NMI compare with.
    #[serde(default)]
    pub agreement_with: String,
}

/// The detector's verdicts on the clustered images.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ClusterDetectorRow {
    /// `all` or a class.
    pub scope: String,
    /// Precision.
    pub precision: f64,
    /// Recall.
    pub recall: f64,
    /// F1.
    pub f1: f64,
}

/// `cluster/<label>/cluster.json`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ClusterFile {
    /// Scope × space rows.
    pub rows: Vec<ClusterRow>,
    /// Detector rows.
    #[serde(default)]
    pub detector: Vec<ClusterDetectorRow>,
    /// PCA components kept (scope `all`).
    #[serde(default)]
    pub pca_components: usize,
    /// Variance they explain.
    #[serde(default)]
    pub pca_variance: f64,
}

/// A cluster result with its figures.
#[derive(Debug, Clone)]
pub(crate) struct ClusterInfo {
    /// `cluster.json`.
    pub file: ClusterFile,
    /// PNGs in its folder, sorted.
    pub figures: Vec<PathBuf>,
}

/// Image counts per split: class → (good, defective).
pub(crate) type SplitCounts = BTreeMap<String, BTreeMap<String, (usize, usize)>>;

/// Everything the report reads.
#[derive(Debug)]
pub(crate) struct Study {
    /// The study dir.
    pub dir: PathBuf,
    /// `study.json`.
    pub record: StudyRecord,
    /// `manifest.json`.
    pub manifest: Manifest,
    /// `selection.json`.
    pub selection: Option<Selection>,
    /// Runs under `runs/`, by model name, sorted by (setting, seed).
    pub runs: BTreeMap<String, Vec<RunInfo>>,
    /// Exports by label.
    pub exports: BTreeMap<String, ExportInfo>,
    /// `compare/comparison.json`.
    pub comparison: Option<Vec<CompRow>>,
    /// `compare/comparison.png`.
    pub comparison_png: Option<PathBuf>,
    /// The bench.
    pub bench: Option<Bench>,
    /// Cluster results by label.
    pub clusters: BTreeMap<String, ClusterInfo>,
    /// Image counts per split and the embeddings file they came from.
    pub counts: Option<(SplitCounts, PathBuf)>,
    /// Problems met while reading (missing optional parts).
    pub warnings: Vec<String>,
}

impl Study {
    /// The final models (empty without a selection).
    pub fn finals(&self) -> &[FinalModel] {
        self.selection
            .as_ref()
            .map(|s| s.finals.as_slice())
            .unwrap_or(&[])
    }

    /// A label's (model, seed): from the selection's finals, else `<model>_s<seed>` parsed.
    pub fn label_of(&self, label: &str) -> (String, Option<u64>) {
        if let Some(f) = self.finals().iter().find(|f| f.label == label) {
            return (f.model.clone(), Some(f.seed));
        }
        if let Some((m, s)) = label.rsplit_once("_s") {
            if let Ok(seed) = s.parse::<u64>() {
                return (m.to_string(), Some(seed));
            }
        }
        (label.to_string(), None)
    }

    /// A path relative to the study dir (itself when it is not inside).
    pub fn rel<'p>(&self, path: &'p Path) -> &'p Path {
        path.strip_prefix(&self.dir).unwrap_or(path)
    }

    /// A run by its relative dir.
    pub fn run(&self, rel: &Path) -> Option<&RunInfo> {
        self.runs.values().flatten().find(|r| r.rel == rel)
    }
}

fn parse_err(path: &Path, reason: impl std::fmt::Display) -> ReportError {
    ReportError::Parse {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Reads a required JSON record: missing is [`ReportError::Missing`], malformed
/// [`ReportError::Parse`].
fn required<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ReportError> {
    if !path.is_file() {
        return Err(ReportError::Missing {
            path: path.to_path_buf(),
        });
    }
    optional_json(path)?.ok_or_else(|| ReportError::Missing {
        path: path.to_path_buf(),
    })
}

/// Reads an optional JSON file: `Ok(None)` when it does not exist, an error naming the file
/// when it does not parse.
fn optional_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, ReportError> {
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| parse_err(path, e))
}

/// `metrics.jsonl` records (bad lines are skipped with a warning).
fn read_metrics(path: &Path, warnings: &mut Vec<String>) -> Vec<MetricRecord> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<serde_json::Value>(line)
            .map_err(|e| e.to_string())
            .and_then(|v| MetricRecord::from_json(&v))
        {
            Ok(r) => out.push(r),
            Err(e) => warnings.push(format!("{} line {}: skipped ({e})", path.display(), i + 1)),
        }
    }
    out
}

/// `set<k>-seed<s>`.
fn parse_run_name(name: &str) -> Option<(usize, u64)> {
    let rest = name.strip_prefix("set")?;
    let (k, s) = rest.split_once("-seed")?;
    Some((k.parse().ok()?, s.parse().ok()?))
}

fn sorted_pngs(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "png") && p.is_file())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn read_run(
    dir: &Path,
    rel: PathBuf,
    setting: usize,
    seed: u64,
    w: &mut Vec<String>,
) -> Result<RunInfo, ReportError> {
    let run_dir = dir.join(&rel);
    let summary_path = run_dir.join("summary.json");
    let summary: Option<RunSummary> = optional_json(&summary_path)?;
    if summary.is_none() {
        w.push(format!("{}: missing", summary_path.display()));
    }
    let epochs = read_metrics(&run_dir.join(METRICS_JSONL), w);
    let cfg_path = run_dir.join(".hydra/config.yaml");
    let config_hash = std::fs::read(&cfg_path)
        .ok()
        .map(|b| hex(&Sha256::digest(&b)));
    let config = if cfg_path.is_file() {
        match defectkit_core::run::read_run_config(&run_dir) {
            Ok((c, _)) => Some(c),
            Err(e) => {
                w.push(format!("{}: not read ({e})", cfg_path.display()));
                None
            }
        }
    } else {
        None
    };
    let file = |name: &str| Some(run_dir.join(name)).filter(|p| p.is_file());
    let tdir = run_dir.join("teacher");
    let teacher = tdir.join(METRICS_JSONL).is_file().then(|| {
        (
            read_metrics(&tdir.join(METRICS_JSONL), w),
            Some(tdir.join("loss_curve.png")).filter(|p| p.is_file()),
        )
    });
    Ok(RunInfo {
        rel,
        setting,
        seed,
        summary,
        epochs,
        config,
        config_hash,
        recon_grid: file("reconstructions.png"),
        teacher,
    })
}

/// Elements of every initializer of an ONNX file.
fn onnx_parameters(path: &Path) -> Option<u64> {
    let model = defectkit_core::onnx::read_model(path).ok()?;
    let graph = model.graph.as_ref()?;
    Some(
        graph
            .initializer
            .iter()
            .map(|t| t.dims.iter().map(|&d| d.max(0) as u64).product::<u64>())
            .sum(),
    )
}

/// Image counts per split and class from an embeddings file (labels and classes only).
fn read_counts(path: &Path) -> Result<SplitCounts, String> {
    use hdf5::types::VarLenUnicode;
    let file = hdf5::File::open(path).map_err(|e| e.to_string())?;
    let mut out = SplitCounts::new();
    for name in file.member_names().map_err(|e| e.to_string())? {
        let group = file.group(&name).map_err(|e| e.to_string())?;
        let (Ok(labels), Ok(classes)) = (group.dataset("label"), group.dataset("class")) else {
            continue;
        };
        let labels = labels.read_1d::<u8>().map_err(|e| e.to_string())?;
        let classes = classes
            .read_1d::<VarLenUnicode>()
            .map_err(|e| e.to_string())?;
        let split = out.entry(name.clone()).or_default();
        for (l, c) in labels.iter().zip(classes.iter()) {
            let e = split.entry(c.as_str().to_string()).or_default();
            if *l == 0 {
                e.0 += 1;
            } else {
                e.1 += 1;
            }
        }
    }
    Ok(out)
}

/// A minimal CSV reader (quoted fields, doubled quotes); rows as header → value maps.
pub(crate) fn parse_csv(text: &str) -> Vec<BTreeMap<String, String>> {
    let mut records: Vec<Vec<String>> = Vec::new();
    let mut field = String::new();
    let mut row: Vec<String> = Vec::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut row));
            }
            (false, '\r') => {}
            (false, c) => field.push(c),
        }
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        records.push(row);
    }
    let mut it = records.into_iter();
    let Some(header) = it.next() else {
        return Vec::new();
    };
    it.filter(|r| !(r.len() == 1 && r[0].is_empty()))
        .map(|r| {
            header
                .iter()
                .cloned()
                .zip(r.into_iter().chain(std::iter::repeat(String::new())))
                .collect()
        })
        .collect()
}

/// The `## Model selection` section of the bench md, up to the next `## `.
fn selection_section(md: &str) -> Option<String> {
    let start = md.find("## Model selection")?;
    let body = &md[start..];
    let after_heading = body.find('\n').map(|i| i + 1).unwrap_or(body.len());
    let end = body[after_heading..]
        .find("\n## ")
        .map(|i| after_heading + i)
        .unwrap_or(body.len());
    Some(body[after_heading..end].trim().to_string())
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads the study dir.
pub(crate) fn load(dir: &Path) -> Result<Study, ReportError> {
    if !dir.is_dir() {
        return Err(ReportError::Missing {
            path: dir.to_path_buf(),
        });
    }
    let record: StudyRecord = required(&dir.join(STUDY_FILE))?;
    let manifest: Manifest = required(&dir.join(MANIFEST_FILE))?;
    let mut warnings = Vec::new();
    let selection: Option<Selection> = optional_json(&dir.join(SELECTION_FILE))?;
    if selection.is_none() {
        warnings.push(format!("{}: missing", dir.join(SELECTION_FILE).display()));
    }

    // Runs: every runs/<model>/set<k>-seed<s> dir.
    let mut runs: BTreeMap<String, Vec<RunInfo>> = BTreeMap::new();
    if let Ok(rd) = std::fs::read_dir(dir.join("runs")) {
        let mut models: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        models.sort();
        for mdir in models.into_iter().filter(|p| p.is_dir()) {
            let model = mdir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let mut list = Vec::new();
            let mut entries: Vec<PathBuf> = std::fs::read_dir(&mdir)
                .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
                .unwrap_or_default();
            entries.sort();
            for rdir in entries.into_iter().filter(|p| p.is_dir()) {
                let name = rdir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let Some((k, s)) = parse_run_name(&name) else {
                    continue;
                };
                let rel = PathBuf::from("runs").join(&model).join(&name);
                list.push(read_run(dir, rel, k, s, &mut warnings)?);
            }
            list.sort_by_key(|r| (r.setting, r.seed));
            runs.insert(model, list);
        }
    } else {
        warnings.push(format!("{}: missing", dir.join("runs").display()));
    }

    // Exports.
    let mut exports = BTreeMap::new();
    let mut counts = None;
    if let Some(sel) = &selection {
        for f in &sel.finals {
            let edir = dir.join(&f.export_dir);
            let meta_path = edir.join("model.json");
            let metadata: Option<ModelMetadata> = optional_json(&meta_path)?;
            if metadata.is_none() {
                warnings.push(format!("{}: missing", meta_path.display()));
            }
            let onnx = edir.join("model.onnx");
            let onnx_parameters = if f.model == "teacher" && onnx.is_file() {
                onnx_parameters(&onnx)
            } else {
                None
            };
            let h5 = edir.join("embeddings.h5");
            if counts.is_none() && h5.is_file() {
                match read_counts(&h5) {
                    Ok(c) => counts = Some((c, h5.clone())),
                    Err(e) => warnings.push(format!("{}: not read ({e})", h5.display())),
                }
            }
            exports.insert(
                f.label.clone(),
                ExportInfo {
                    metadata,
                    onnx_parameters,
                },
            );
        }
    }

    let comparison: Option<Vec<CompRow>> =
        optional_json(&dir.join("compare").join("comparison.json"))?;
    let comparison_png = Some(dir.join("compare").join("comparison.png")).filter(|p| p.is_file());

    let bench = {
        let csv = dir.join("bench").join("quantized.csv");
        let md = dir.join("bench").join("quantized.md");
        if csv.is_file() || md.is_file() {
            let rows = std::fs::read_to_string(&csv)
                .map(|t| parse_csv(&t))
                .unwrap_or_default();
            let selection_md = std::fs::read_to_string(&md)
                .ok()
                .and_then(|t| selection_section(&t));
            Some(Bench {
                rows,
                selection_md,
                charts: sorted_pngs(&dir.join("bench").join("quantized")),
            })
        } else {
            None
        }
    };

    let mut clusters = BTreeMap::new();
    if let Ok(rd) = std::fs::read_dir(dir.join("cluster")) {
        let mut dirs: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        dirs.sort();
        for cdir in dirs.into_iter().filter(|p| p.is_dir()) {
            let label = cdir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if let Some(file) = optional_json::<ClusterFile>(&cdir.join("cluster.json"))? {
                clusters.insert(
                    label,
                    ClusterInfo {
                        file,
                        figures: sorted_pngs(&cdir),
                    },
                );
            }
        }
    }

    Ok(Study {
        dir: dir.to_path_buf(),
        record,
        manifest,
        selection,
        runs,
        exports,
        comparison,
        comparison_png,
        bench,
        clusters,
        counts,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_with_quotes() {
        let rows = parse_csv("a,b,c\n1,\"x, \"\"y\"\"\",3\n4,,\n");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["b"], "x, \"y\"");
        assert_eq!(rows[1]["c"], "");
    }

    #[test]
    fn run_names() {
        assert_eq!(parse_run_name("set2-seed43"), Some((2, 43)));
        assert_eq!(parse_run_name("teacher"), None);
    }
}
