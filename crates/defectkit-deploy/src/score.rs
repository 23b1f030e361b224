//! `defectkit score`: batch-score folders of images from the line with an exported model and
//! a fitted detector, one row per file (CSV or JSON Lines): path, class, score, threshold,
//! anomalous, and an error for files that cannot be read (counted, never fatal unless
//! `strict`).
//!
//! Files are found recursively and sorted; `shard` takes a stable contiguous 1/N of that
//! order, so N machines split one folder with no coordination and their outputs concatenate
//! (each CSV's header aside) to the unsharded one. Images go through the shared [`crate::pipeline`] (decode in parallel
//! while the previous batch runs); each batch's rows are written as soon as it is scored, so
//! memory stays constant. A file output is written to a temporary sibling and renamed at the
//! end: an interrupted or failed run leaves no partial file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use ndarray::ArrayView2;

use defectkit_core::config::detector::DetectorMethod;

use crate::anomaly::{AnomalyError, Detector, Observations};
use crate::embed::{recon_errors, recon_local_errors};
use crate::pipeline::{run_batches, Batch, PipelineError, PipelineOptions};
use crate::runtime::{OnnxModel, RuntimeError, RuntimeOptions};
use crate::store::MapProvenance;

/// Why a score run stopped.
#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    /// The model could not be loaded or run.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The detector could not be loaded or applied.
    #[error(transparent)]
    Anomaly(#[from] AnomalyError),
    /// An input or the output could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The model, the detector and the options do not fit together.
    #[error("{0}")]
    Mismatch(String),
    /// An unreadable image in strict mode.
    #[error("{0} (strict mode: unreadable images are fatal)")]
    Strict(defectkit_core::data::DataError),
    /// Cancelled (Ctrl-C).
    #[error("interrupted")]
    Interrupted,
}

/// Which class's detector scores an image.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ClassChoice {
    /// The classifier's predicted class for models with logits (A, B, teacher); the nearest
    /// class otherwise (as [`ClassChoice::Nearest`]).
    #[default]
    Auto,
    /// The class whose detector gives the lowest score (recon: the nearest class mean).
    Nearest,
    /// This class, for every image.
    Named(String),
}

impl std::str::FromStr for ClassChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "auto" => ClassChoice::Auto,
            "nearest" => ClassChoice::Nearest,
            "" => return Err("empty class name".into()),
            name => ClassChoice::Named(name.to_string()),
        })
    }
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Comma-separated, with a header row.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

impl Format {
    /// From a file name: `.jsonl`/`.ndjson` → JSON Lines, anything else CSV.
    pub fn for_path(path: &Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some("jsonl") | Some("ndjson") => Format::Jsonl,
            _ => Format::Csv,
        }
    }
}

/// A stable 1/N of the sorted files: the `index`-th of `count` contiguous slices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// 0-based.
    pub index: usize,
    /// N ≥ 1.
    pub count: usize,
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("--shard {s:?}: expected I/N with 0 ≤ I < N, e.g. 0/4");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let index: usize = i.trim().parse().map_err(|_| bad())?;
        let count: usize = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl Shard {
    /// This shard's range of `n` items.
    pub fn range(&self, n: usize) -> std::ops::Range<usize> {
        (n * self.index / self.count)..(n * (self.index + 1) / self.count)
    }
}

/// What to score and how.
#[derive(Debug, Clone)]
pub struct ScoreOptions {
    /// Folders (searched recursively) and files.
    pub inputs: Vec<PathBuf>,
    /// The exported model.
    pub model: PathBuf,
    /// `detector.json` fitted on this model's embeddings.
    pub detector: PathBuf,
    /// Class selection.
    pub class: ClassChoice,
    /// The output file; `None` = stdout.
    pub out: Option<PathBuf>,
    /// Output format.
    pub format: Format,
    /// Only this shard of the sorted files.
    pub shard: Option<Shard>,
    /// Unreadable files are fatal.
    pub strict: bool,
    /// Session options.
    pub runtime: RuntimeOptions,
    /// Images per inference batch.
    pub batch_size: usize,
    /// Show a progress bar on stderr.
    pub progress: bool,
    /// Write each scored image's anomaly map as a heat-map PNG into this folder (patch
    /// detectors only); the row names the file in its `map` column.
    pub maps_dir: Option<PathBuf>,
}

/// What a score run did.
#[derive(Debug, Clone, Default)]
pub struct ScoreReport {
    /// Files considered (after sharding).
    pub files: usize,
    /// Images scored.
    pub scored: usize,
    /// Of which anomalous.
    pub anomalous: usize,
    /// Files that could not be scored (unreadable, or a class without a detector).
    pub errors: usize,
    /// The first few of them, with the reason.
    pub first_errors: Vec<(PathBuf, String)>,
    /// Wall time.
    pub seconds: f64,
}

/// One output row.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Row {
    /// The file.
    pub path: String,
    /// The class whose detector scored it.
    pub class: Option<String>,
    /// The score.
    pub score: Option<f64>,
    /// That class's threshold.
    pub threshold: Option<f64>,
    /// score ≥ threshold.
    pub anomalous: Option<bool>,
    /// Why it could not be scored.
    pub error: Option<String>,
    /// Its heat-map PNG (`score --maps`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub map: Option<String>,
}

/// The CSV header.
pub const CSV_HEADER: &str = "path,class,score,threshold,anomalous,error";

/// The CSV header with `--maps`: one more column naming each row's heat-map PNG.
pub const CSV_HEADER_WITH_MAPS: &str = "path,class,score,threshold,anomalous,error,map";

impl Row {
    fn csv(&self, with_maps: bool) -> String {
        let f = crate::detect::csv_field;
        let num = |v: Option<f64>| v.map_or(String::new(), |v| v.to_string());
        let mut line = format!(
            "{},{},{},{},{},{}",
            f(&self.path),
            f(self.class.as_deref().unwrap_or("")),
            num(self.score),
            num(self.threshold),
            self.anomalous
                .map_or(String::new(), |a| u8::from(a).to_string()),
            f(self.error.as_deref().unwrap_or("")),
        );
        if with_maps {
            line.push(',');
            line += &f(self.map.as_deref().unwrap_or(""));
        }
        line
    }
}

/// Every file under `inputs` (folders recursively, hidden entries and links to folders
/// skipped), sorted and deduplicated. A missing input is an error; unreadable files come later, as error rows.
pub fn collect_files(inputs: &[PathBuf]) -> Result<Vec<PathBuf>, ScoreError> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), ScoreError> {
        let io = |source| ScoreError::Io {
            path: dir.to_path_buf(),
            source,
        };
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let path = entry.path();
            let kind = entry.file_type().map_err(io)?;
            if kind.is_dir() {
                walk(&path, out)?;
            } else if kind.is_symlink() && path.is_dir() {
                // Linked folders are not followed (a link to a parent would never end);
                // name them on the command line to score them.
                continue;
            } else {
                out.push(path);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    for input in inputs {
        if input.is_dir() {
            walk(input, &mut out)?;
        } else if input.exists() {
            out.push(input.clone());
        } else {
            return Err(ScoreError::Io {
                path: input.clone(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or folder"),
            });
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// The model and detector, checked against each other, and the class rule.
struct Scorer {
    detector: Detector,
    model_classes: Vec<String>,
    has_logits: bool,
    input_shape: [usize; 3],
    choice: Option<usize>,
    nearest: bool,
    /// Patch detectors: the stored maps' provenance (which `features` channels to keep).
    maps: Option<MapProvenance>,
    /// Where heat maps go (`--maps`): (the folder written now, the folder rows name).
    maps_dir: Option<(PathBuf, PathBuf)>,
}

impl Scorer {
    fn new(
        model: &mut OnnxModel,
        detector: Detector,
        class: &ClassChoice,
        maps_dir: Option<(PathBuf, PathBuf)>,
    ) -> Result<Self, ScoreError> {
        let maps = if detector.file.method.is_patch() {
            let spec = model.request_features()?;
            let stored = detector.file.maps.clone().expect("checked on load");
            if stored.source_channels != spec.channels
                || stored.height != spec.height
                || stored.width != spec.width
                || stored.channels.iter().any(|&c| c >= spec.channels)
            {
                return Err(ScoreError::Mismatch(format!(
                    "the detector was fitted on {}×{}×{} feature maps, the model's features are \
                     {}×{}×{}",
                    stored.source_channels,
                    stored.height,
                    stored.width,
                    spec.channels,
                    spec.height,
                    spec.width
                )));
            }
            Some(stored)
        } else if maps_dir.is_some() {
            return Err(ScoreError::Mismatch(format!(
                "--maps draws anomaly maps, which the {} detector does not make: fit a patch \
                 detector (detector=padim or detector=patchcore on embeddings from `embed --maps`)",
                detector.file.method
            )));
        } else {
            None
        };
        let meta = &model.metadata;
        let sha = crate::embed::sha256_file(&model.path).map_err(|source| ScoreError::Io {
            path: model.path.clone(),
            source,
        })?;
        if sha != detector.file.model.sha256 {
            return Err(ScoreError::Mismatch(format!(
                "the detector was fitted on embeddings of another model ({}, SHA-256 {}…), not \
                 {} (SHA-256 {}…): embed with this model and run `defectkit detect` again",
                detector.file.model.path,
                &detector.file.model.sha256[..12.min(detector.file.model.sha256.len())],
                model.path.display(),
                &sha[..12]
            )));
        }
        let choice = match class {
            ClassChoice::Named(name) => Some(detector.class_position(name).ok_or_else(|| {
                ScoreError::Mismatch(format!(
                    "--class {name:?}: the detector knows {}",
                    detector.classes().collect::<Vec<_>>().join(", ")
                ))
            })?),
            _ => None,
        };
        let has_logits = !meta.kind.is_autoencoder();
        Ok(Self {
            nearest: *class == ClassChoice::Nearest || (*class == ClassChoice::Auto && !has_logits),
            detector,
            model_classes: meta.classes.clone(),
            has_logits,
            input_shape: meta.input_shape,
            choice,
            maps,
            maps_dir,
        })
    }

    /// The heat-map file for `path`: (where it is written now, the name its row gives). The
    /// name is the path's components joined with `__` (so images of different folders do not
    /// collide), ending in `.png` (an image that is not a PNG keeps its extension before it:
    /// `a.jpg` → `a.jpg.png`, so `a.png` and `a.jpg` get two files).
    fn map_file(&self, path: &Path) -> Option<(PathBuf, PathBuf)> {
        let (write_dir, final_dir) = self.maps_dir.as_ref()?;
        let is_png = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("png"));
        let stem = if is_png {
            path.with_extension("")
        } else {
            path.to_path_buf()
        };
        let parts: Vec<String> = stem
            .components()
            .filter_map(|c| match c {
                std::path::Component::Normal(p) => Some(p.to_string_lossy().into_owned()),
                _ => None,
            })
            .collect();
        let name = format!("{}.png", parts.join("__"));
        Some((write_dir.join(&name), final_dir.join(name)))
    }

    /// The batch's outputs have the shapes the metadata and the detector promise.
    fn check_outputs(&self, b: &Batch<'_, PathBuf>, d: usize) -> Result<(), ScoreError> {
        let n = b.items.len();
        let want_d = self.detector.scorers[0].centre().len();
        let primary = if self.has_logits {
            n * self.model_classes.len()
        } else {
            n * self.input_shape.iter().product::<usize>()
        };
        if d != want_d || b.outputs.embedding.len() != n * d || b.outputs.primary.len() != primary {
            return Err(ScoreError::Mismatch(format!(
                "the model's outputs ({} embedding values, {} primary values for {n} images) do \
                 not match its metadata and the detector (embeddings of {want_d}, {primary} \
                 primary values)",
                b.outputs.embedding.len(),
                b.outputs.primary.len()
            )));
        }
        Ok(())
    }

    /// Rows for one batch (decoded images and skipped files merged in path order).
    fn rows(&self, b: &Batch<'_, PathBuf>) -> Result<Vec<Row>, ScoreError> {
        let n = b.items.len();
        let mut rows: Vec<Row> = Vec::with_capacity(n + b.skipped.len());
        // Empty when every file of the batch was unreadable.
        if let Some(d) = b.outputs.embedding.len().checked_div(n) {
            self.check_outputs(b, d)?;
            let emb = ArrayView2::from_shape((n, d), &b.outputs.embedding)
                .map_err(|e| ScoreError::Mismatch(format!("embedding output: {e}")))?;
            let per_sample: usize = self.input_shape.iter().product();
            let recon = self.detector.file.method == DetectorMethod::Recon;
            // The same per-image errors `embed` stores, so the detector sees what it was fitted on.
            let (recon_error, recon_local): (Option<Vec<f32>>, Option<Vec<f32>>) = if recon {
                let pool = self.detector.file.config.pool;
                (
                    Some(recon_errors(&b.input, &b.outputs.primary, per_sample)),
                    Some(recon_local_errors(
                        &b.input,
                        &b.outputs.primary,
                        self.input_shape,
                        pool,
                    )),
                )
            } else {
                (None, None)
            };
            // Patch detectors: the batch's maps with the detector's channels, N×C×h×w.
            let maps: Option<ndarray::Array4<f32>> = match (&self.maps, &b.outputs.features) {
                (Some(m), Some(features)) => {
                    let mut kept = Vec::with_capacity(n * m.per_image());
                    let source = [m.source_channels, m.height, m.width];
                    crate::embed::append_maps(&mut kept, features, source, &m.channels);
                    let [c, h, w] = m.shape();
                    Some(
                        ndarray::Array4::from_shape_vec((n, c, h, w), kept)
                            .map_err(|e| ScoreError::Mismatch(format!("features output: {e}")))?,
                    )
                }
                (Some(_), None) => {
                    return Err(ScoreError::Mismatch(
                        "the model returned no features for a patch detector".into(),
                    ))
                }
                _ => None,
            };
            type Picked = (
                ndarray::Array2<f32>,
                Option<Vec<f32>>,
                Option<Vec<f32>>,
                Option<ndarray::Array4<f32>>,
            );
            let obs = |rows: &[usize]| -> Picked {
                let sub = emb.select(ndarray::Axis(0), rows);
                let pick =
                    |v: &Option<Vec<f32>>| v.as_ref().map(|v| rows.iter().map(|&i| v[i]).collect());
                let m = maps.as_ref().map(|m| m.select(ndarray::Axis(0), rows));
                (sub, pick(&recon_error), pick(&recon_local), m)
            };
            let mut map_files: Vec<Option<String>> = vec![None; n];
            let all: Vec<usize> = (0..n).collect();
            // Each image's class position (or an error) and score.
            let mut assigned: Vec<Result<(usize, f64), String>> = vec![Err(String::new()); n];
            if self.nearest && self.choice.is_none() {
                if recon {
                    for (i, z) in emb.rows().into_iter().enumerate() {
                        let z = z.to_vec();
                        let distances: Vec<f64> = self
                            .detector
                            .scorers
                            .iter()
                            .map(|s| crate::anomaly::distance(&z, s.centre()))
                            .collect();
                        let best = (0..distances.len())
                            .min_by(|&a, &b| distances[a].total_cmp(&distances[b]))
                            .expect("a detector has classes");
                        assigned[i] = Ok((best, 0.0));
                    }
                } else {
                    let (sub, re, rl, m) = obs(&all);
                    let o = Observations {
                        embeddings: sub.view(),
                        recon_error: re.as_deref(),
                        recon_local: rl.as_deref(),
                        maps: m.as_ref().map(|m| m.view()),
                    };
                    let per_class: Vec<Vec<f64>> = self
                        .detector
                        .scorers
                        .iter()
                        .map(|s| s.score(&o))
                        .collect::<Result<_, _>>()?;
                    for (i, slot) in assigned.iter_mut().enumerate() {
                        let best = (0..per_class.len())
                            .min_by(|&a, &b| per_class[a][i].total_cmp(&per_class[b][i]))
                            .expect("a detector has classes");
                        *slot = Ok((best, per_class[best][i]));
                    }
                }
            } else if let Some(pos) = self.choice {
                assigned.iter_mut().for_each(|a| *a = Ok((pos, 0.0)));
            } else if self.has_logits {
                let k = self.model_classes.len();
                for (i, logits) in b.outputs.primary.chunks(k).enumerate().take(n) {
                    let best = (0..k)
                        .max_by(|&a, &b| logits[a].total_cmp(&logits[b]).then(b.cmp(&a)))
                        .expect("classes");
                    let name = &self.model_classes[best];
                    assigned[i] = self.detector.class_position(name).map(|p| (p, 0.0)).ok_or_else(|| {
                        format!("the model predicts class {name:?}, which the detector was not fitted on")
                    });
                }
            }
            // Score by the assigned class (the nearest rule already has its scores, except
            // recon); heat maps are drawn by the assigned class's detector.
            let draw = self.maps_dir.is_some();
            if !(self.nearest && self.choice.is_none() && !recon) || draw {
                for pos in 0..self.detector.scorers.len() {
                    let idx: Vec<usize> = (0..n)
                        .filter(|&i| matches!(assigned[i], Ok((p, _)) if p == pos))
                        .collect();
                    if idx.is_empty() {
                        continue;
                    }
                    let (sub, re, rl, m) = obs(&idx);
                    let o = Observations {
                        embeddings: sub.view(),
                        recon_error: re.as_deref(),
                        recon_local: rl.as_deref(),
                        maps: m.as_ref().map(|m| m.view()),
                    };
                    let scorer = &self.detector.scorers[pos];
                    let (drawn, scores) = if draw {
                        scorer.maps_and_scores(&o).transpose()?.unwrap_or_default()
                    } else {
                        (Vec::new(), scorer.score(&o)?)
                    };
                    if draw {
                        let side = self.input_shape[1];
                        let t = self.detector.file.classes[pos].threshold.value as f32;
                        for (&i, map) in idx.iter().zip(&drawn) {
                            let Some((file, named)) = self.map_file(b.items[i]) else {
                                continue;
                            };
                            // Bright = at or above the class's image threshold.
                            defectkit_core::plot::heatmap_png(
                                &file,
                                map,
                                side as u32,
                                (0.5 * t, t),
                            )
                            .map_err(|e| ScoreError::Io {
                                path: file.clone(),
                                source: std::io::Error::other(e.to_string()),
                            })?;
                            map_files[i] = Some(named.display().to_string());
                        }
                    }
                    for (i, s) in idx.into_iter().zip(scores) {
                        assigned[i] = Ok((pos, s));
                    }
                }
            }
            for ((item, a), map) in b.items.iter().zip(assigned).zip(map_files) {
                let path = item.display().to_string();
                rows.push(match a {
                    Ok((_, score)) if !score.is_finite() => Row {
                        path,
                        class: None,
                        score: None,
                        threshold: None,
                        anomalous: None,
                        error: Some(format!(
                            "non-finite score ({score}): the model's outputs are not finite"
                        )),
                        map: None,
                    },
                    Ok((pos, score)) => {
                        let entry = &self.detector.file.classes[pos];
                        let t = entry.threshold.value;
                        Row {
                            path,
                            class: Some(entry.name.clone()),
                            score: Some(score),
                            threshold: Some(t),
                            anomalous: Some(score >= t),
                            error: None,
                            map,
                        }
                    }
                    Err(reason) => Row {
                        path,
                        class: None,
                        score: None,
                        threshold: None,
                        anomalous: None,
                        error: Some(reason),
                        map: None,
                    },
                });
            }
        }
        for (item, reason) in &b.skipped {
            rows.push(Row {
                path: item.display().to_string(),
                class: None,
                score: None,
                threshold: None,
                anomalous: None,
                error: Some(reason.clone()),
                map: None,
            });
        }
        // Decoded and skipped files back in input order (the files are sorted as paths).
        rows.sort_by(|a, b| Path::new(&a.path).cmp(Path::new(&b.path)));
        Ok(rows)
    }
}

/// Where rows go: a temporary sibling of the output file (renamed at the end) or stdout.
struct Sink {
    out: Box<dyn Write>,
    tmp: Option<(defectkit_core::fsutil::TempGuard, PathBuf)>,
    format: Format,
    with_maps: bool,
}

impl Sink {
    fn open(out: Option<&Path>, format: Format, with_maps: bool) -> Result<Self, ScoreError> {
        let (out, tmp): (Box<dyn Write>, _) = match out {
            Some(path) => {
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent).map_err(|source| ScoreError::Io {
                        path: parent.to_path_buf(),
                        source,
                    })?;
                    defectkit_core::fsutil::clear_stale_temps(parent);
                }
                let tmp = defectkit_core::fsutil::TempGuard::sibling(path);
                let file = std::fs::File::create(tmp.path()).map_err(|source| ScoreError::Io {
                    path: tmp.path().to_path_buf(),
                    source,
                })?;
                (
                    Box::new(std::io::BufWriter::new(file)),
                    Some((tmp, path.to_path_buf())),
                )
            }
            None => (Box::new(std::io::BufWriter::new(std::io::stdout())), None),
        };
        let mut sink = Self {
            out,
            tmp,
            format,
            with_maps,
        };
        if format == Format::Csv {
            sink.line(if with_maps {
                CSV_HEADER_WITH_MAPS
            } else {
                CSV_HEADER
            })?;
        }
        Ok(sink)
    }

    fn line(&mut self, s: &str) -> Result<(), ScoreError> {
        let path = self
            .tmp
            .as_ref()
            .map_or(PathBuf::from("<stdout>"), |(_, p)| p.clone());
        writeln!(self.out, "{s}").map_err(|source| ScoreError::Io { path, source })
    }

    fn row(&mut self, row: &Row) -> Result<(), ScoreError> {
        match self.format {
            Format::Csv => self.line(&row.csv(self.with_maps)),
            Format::Jsonl => self.line(&serde_json::to_string(row).expect("row serializes")),
        }
    }

    fn finish(mut self) -> Result<(), ScoreError> {
        let path = self
            .tmp
            .as_ref()
            .map_or(PathBuf::from("<stdout>"), |(_, p)| p.clone());
        self.out
            .flush()
            .map_err(|source| ScoreError::Io { path, source })?;
        // Close the file before renaming it.
        self.out = Box::new(std::io::sink());
        if let Some((tmp, path)) = self.tmp.take() {
            std::fs::rename(tmp.path(), &path).map_err(|source| ScoreError::Io { path, source })?;
        }
        Ok(())
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        if let Some((tmp, _)) = &self.tmp {
            let _ = std::fs::remove_file(tmp.path());
        }
    }
}

/// Scores every file of `opts.inputs`; `cancel` is polled between batches (and set by the
/// run itself when the output cannot be written, to stop the pipeline). With `maps_dir` the
/// heat maps are written into a temporary sibling folder that replaces `maps_dir` only when
/// the run succeeds (a failed or interrupted run leaves the old folder, or none); files under
/// `maps_dir` itself are never scored.
pub fn score(opts: &ScoreOptions, cancel: &AtomicBool) -> Result<ScoreReport, ScoreError> {
    let Some(dir) = &opts.maps_dir else {
        return score_into(opts, cancel, None);
    };
    let mut result = None;
    let written = crate::detect::write_folder_atomically(dir, |tmp| {
        let r = score_into(opts, cancel, Some((tmp.to_path_buf(), dir.clone())));
        let failed = r.is_err();
        result = Some(r);
        if failed {
            Err(AnomalyError::Invalid("scoring failed".into()))
        } else {
            Ok(())
        }
    });
    match result {
        Some(Err(e)) => Err(e),
        Some(Ok(report)) => written.map(|()| report).map_err(ScoreError::from),
        None => Err(written
            .expect_err("the closure ran unless the folder failed")
            .into()),
    }
}

/// [`score`] with the heat maps (if any) written into `maps.0` and named as in `maps.1`.
fn score_into(
    opts: &ScoreOptions,
    cancel: &AtomicBool,
    maps: Option<(PathBuf, PathBuf)>,
) -> Result<ScoreReport, ScoreError> {
    let started = Instant::now();
    let detector = Detector::load(&opts.detector)?;
    let mut model = OnnxModel::load(&opts.model, &opts.runtime)?;
    let scorer = Scorer::new(&mut model, detector, &opts.class, maps)?;
    let mut files = collect_files(&opts.inputs)?;
    if let Some(dir) = &opts.maps_dir {
        // Heat maps of an earlier run inside an input folder are not images of the line.
        if let Ok(dir) = dir.canonicalize() {
            files.retain(|f| f.canonicalize().map_or(true, |f| !f.starts_with(&dir)));
        }
    }
    if let Some(shard) = opts.shard {
        files = files[shard.range(files.len())].to_vec();
    }
    let bar = if opts.progress {
        let b = indicatif::ProgressBar::new(files.len() as u64);
        if let Ok(s) = indicatif::ProgressStyle::with_template(
            "score {bar:30} {pos}/{len} files  {per_sec}  {elapsed}<{eta}",
        ) {
            b.set_style(s);
        }
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut sink = Sink::open(opts.out.as_deref(), opts.format, opts.maps_dir.is_some())?;
    let mut report = ScoreReport {
        files: files.len(),
        ..Default::default()
    };
    let mut failure: Option<ScoreError> = None;
    let result = run_batches(
        &mut model,
        &files,
        PipelineOptions {
            batch_size: opts.batch_size,
            strict: opts.strict,
            warn_skipped: false,
        },
        cancel,
        &bar,
        |b| {
            if failure.is_some() {
                return;
            }
            let written = scorer.rows(&b).and_then(|rows| {
                for row in &rows {
                    sink.row(row)?;
                    match (&row.error, row.anomalous) {
                        (Some(e), _) => {
                            report.errors += 1;
                            if report.first_errors.len() < 20 {
                                report
                                    .first_errors
                                    .push((PathBuf::from(&row.path), e.clone()));
                            }
                        }
                        (None, a) => {
                            report.scored += 1;
                            report.anomalous += usize::from(a == Some(true));
                        }
                    }
                }
                Ok(())
            });
            if let Err(e) = written {
                failure = Some(e);
                // Stop decoding and inference: nothing more can be written.
                cancel.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        },
    );
    bar.finish_and_clear();
    if let Some(e) = failure {
        return Err(e);
    }
    match result {
        Ok(_) => {}
        Err(PipelineError::Interrupted) => return Err(ScoreError::Interrupted),
        Err(PipelineError::Runtime(e)) => return Err(e.into()),
        Err(PipelineError::Data(e)) => return Err(ScoreError::Strict(e)),
    }
    sink.finish()?;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}
