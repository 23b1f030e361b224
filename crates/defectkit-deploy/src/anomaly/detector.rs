//! The fitted detector as a whole: one [`ClassScorer`] per class, fitted on the good images of
//! the fit split; one [`Threshold`] per class from the threshold split; and where it came
//! from (the model's SHA-256 and preprocessing, the embeddings and their split). Saved as
//! `detector.json` (self-describing, small) beside `detector.h5` (the arrays: means, Cholesky
//! factors, reference embeddings), which `detector.json` names with its SHA-256.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ndarray::{Array2, Array4};
use serde::{Deserialize, Serialize};

use defectkit_core::config::DetectorConfig;

use super::euclidean::Euclidean;
use super::knn::Knn;
use super::mahalanobis::Mahalanobis;
use super::patch::gaussian::PatchGaussian;
use super::patch::memory_bank::PatchMemoryBank;
use super::patch::MapOptions;
use super::recon::Recon;
use super::threshold::{maximum_warning, percentile_threshold, Threshold};
use super::{AnomalyError, ClassScorer, Method, Observations};
use crate::store::{EmbeddingStore, MapProvenance, SplitProvenance, SplitRecords};

/// The `format` value of `detector.json`.
pub const FORMAT: &str = "defectkit-detector/1";

/// One class in `detector.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassEntry {
    /// The class.
    pub name: String,
    /// Its threshold: anomalous when score ≥ `threshold.value`.
    pub threshold: Threshold,
    /// The scorer's small numbers (images fitted on, shrinkage, k…).
    pub fit: serde_json::Value,
}

/// The model the embeddings came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelProvenance {
    /// Its path when embedded.
    pub path: String,
    /// Its SHA-256: `score` refuses another model.
    pub sha256: String,
    /// `cnn_scratch`, `cnn_distilled`, `unet_ae`, `teacher`.
    pub kind: String,
    /// `fp32` or `int8`.
    pub precision: String,
    /// Its preprocessing spec.
    pub preprocess: serde_json::Value,
    /// Its classes, in logit order.
    pub classes: Vec<String>,
}

/// The embeddings the detector was fitted on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataProvenance {
    /// The embeddings file.
    pub embeddings: String,
    /// The split parameters recorded in it.
    pub split: Option<SplitProvenance>,
}

/// `detector.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectorFile {
    /// [`FORMAT`].
    pub format: String,
    /// The method.
    pub method: Method,
    /// Every option it was fitted with (splits, percentile, shrinkage, k, pool).
    pub config: DetectorConfig,
    /// The rule, spelled out for readers of the file.
    pub decision_rule: String,
    /// Per class: threshold and fit summary, sorted by name.
    pub classes: Vec<ClassEntry>,
    /// The arrays' file, relative to `detector.json`.
    pub state_file: String,
    /// Its SHA-256.
    pub state_sha256: String,
    /// The model.
    pub model: ModelProvenance,
    /// The data.
    pub data: DataProvenance,
    /// The feature maps a patch detector was fitted on (shape, kept channels); `score`
    /// takes the same channels from the model's `features` output. None for the others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maps: Option<MapProvenance>,
    /// The side of the model input and of the anomaly maps, in pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map_side: Option<usize>,
    /// The defectkit version that fitted it.
    pub defectkit_version: String,
}

/// A fitted detector.
#[derive(Debug)]
pub struct Detector {
    /// The description (what `detector.json` holds; `state_sha256` set on save/load).
    pub file: DetectorFile,
    /// Per class, in the order of `file.classes`.
    pub scorers: Vec<Box<dyn ClassScorer>>,
}

/// Per-image anomaly maps (side × side, row-major), in row order.
pub type AnomalyMaps = Vec<Vec<f32>>;

/// One class's rows of a split.
#[derive(Debug, Clone)]
pub struct ClassRows {
    /// Row indices into the split.
    pub index: Vec<usize>,
    /// Their embeddings.
    pub embeddings: Array2<f32>,
    /// Their mean reconstruction errors (autoencoders).
    pub recon_error: Option<Vec<f32>>,
    /// Their local reconstruction errors (autoencoders).
    pub recon_local: Option<Vec<f32>>,
    /// Their feature maps, N×C×h×w (files embedded with `--maps`).
    pub maps: Option<Array4<f32>>,
}

impl ClassRows {
    /// The rows of `class` in `records` (only the good ones when `good_only`); `map_shape`
    /// is the file's `[C, h, w]` when it holds maps.
    pub fn of(
        records: &SplitRecords,
        class: &str,
        good_only: bool,
        map_shape: Option<[usize; 3]>,
    ) -> Self {
        let index: Vec<usize> = (0..records.len())
            .filter(|&i| records.class[i] == class && (!good_only || records.label[i] == 0))
            .collect();
        let d = records.dim;
        let mut values = Vec::with_capacity(index.len() * d);
        for &i in &index {
            values.extend_from_slice(&records.embeddings[i * d..(i + 1) * d]);
        }
        let pick = |v: &Option<Vec<f32>>| v.as_ref().map(|v| index.iter().map(|&i| v[i]).collect());
        let maps = match (&records.maps, map_shape) {
            (Some(all), Some([c, h, w])) => {
                let per = c * h * w;
                let mut values = Vec::with_capacity(index.len() * per);
                for &i in &index {
                    values.extend_from_slice(&all[i * per..(i + 1) * per]);
                }
                Some(Array4::from_shape_vec((index.len(), c, h, w), values).expect("n×c×h×w"))
            }
            _ => None,
        };
        Self {
            maps,
            embeddings: Array2::from_shape_vec((index.len(), d), values).expect("n×d"),
            recon_error: pick(&records.recon_error),
            recon_local: pick(&records.recon_local),
            index,
        }
    }

    /// The rows as a scorer's input.
    pub fn observations(&self) -> Observations<'_> {
        Observations {
            embeddings: self.embeddings.view(),
            recon_error: self.recon_error.as_deref(),
            recon_local: self.recon_local.as_deref(),
            maps: self.maps.as_ref().map(|m| m.view()),
        }
    }
}

fn fit_scorer(
    config: &DetectorConfig,
    fit: &ClassRows,
    side: usize,
    class: &str,
) -> Result<Box<dyn ClassScorer>, AnomalyError> {
    let rows = fit.embeddings.view();
    let map = MapOptions {
        side,
        sigma: config.sigma,
    };
    let stats = |source| AnomalyError::Stats {
        class: class.to_string(),
        source,
    };
    let named = |e: AnomalyError| match e {
        AnomalyError::Invalid(m) => AnomalyError::Invalid(format!("class {class:?}: {m}")),
        other => other,
    };
    Ok(match config.method {
        Method::Mahalanobis => Box::new(Mahalanobis::fit(rows, config.shrinkage).map_err(stats)?),
        Method::Euclidean => Box::new(Euclidean::fit(rows).map_err(named)?),
        Method::Knn => Box::new(Knn::fit(rows, config.k).map_err(named)?),
        Method::Recon => Box::new(Recon::fit(rows, config.score).map_err(named)?),
        Method::Padim => {
            Box::new(PatchGaussian::fit(&fit.observations(), config.shrinkage, map).map_err(named)?)
        }
        Method::Patchcore => Box::new(
            PatchMemoryBank::fit(
                &fit.observations(),
                config.coreset_ratio,
                config.coreset_seed,
                config.reweight,
                map,
            )
            .map_err(named)?,
        ),
    })
}

/// A loaded patch scorer's grid and map options agree with what `detector.json` records
/// (a tampered or mismatched `detector.h5` is refused, never run).
fn check_patch_geometry(
    file: &DetectorFile,
    grid: super::patch::GridShape,
    opts: MapOptions,
) -> Result<(), String> {
    let maps = file.maps.as_ref().expect("checked before loading scorers");
    let [c, h, w] = maps.shape();
    if (grid.channels, grid.h, grid.w) != (c, h, w) {
        return Err(format!(
            "its statistics are for {}×{}×{} maps, detector.json records {c}×{h}×{w}",
            grid.channels, grid.h, grid.w
        ));
    }
    if Some(opts.side) != file.map_side || opts.sigma != file.config.sigma {
        return Err(format!(
            "its maps are {} px with σ {}, detector.json records {:?} px with σ {}",
            opts.side, opts.sigma, file.map_side, file.config.sigma
        ));
    }
    Ok(())
}

/// The side of the model input (and of anomaly maps) recorded in an embeddings file.
fn input_side(store: &EmbeddingStore, embeddings: &Path) -> Result<usize, AnomalyError> {
    serde_json::from_str::<defectkit_core::data::PreprocessSpec>(&store.attributes.preprocess)
        .map(|spec| spec.input_size() as usize)
        .map_err(|e| {
            AnomalyError::Invalid(format!(
                "{}: its preprocess attribute does not parse: {e}",
                embeddings.display()
            ))
        })
}

impl Detector {
    /// Fits `config`'s detector on `store`: per class on the fit split's good images, then
    /// thresholds from the threshold split's good images. Returns the detector and the
    /// warnings to show (classes whose threshold had to be the maximum).
    pub fn fit(
        store: &EmbeddingStore,
        embeddings: &Path,
        config: &DetectorConfig,
    ) -> Result<(Self, Vec<String>), AnomalyError> {
        config.validate().map_err(AnomalyError::Invalid)?;
        let a = &store.attributes;
        let mut warnings = Vec::new();
        let fit_split = store
            .split(&config.fit_split)
            .map_err(|e| AnomalyError::Invalid(format!("{}: {e}", embeddings.display())))?;
        let threshold_split = store
            .split(&config.threshold_split)
            .map_err(|e| AnomalyError::Invalid(format!("{}: {e}", embeddings.display())))?;
        if config.method == Method::Recon {
            if fit_split.recon_local.is_none() && fit_split.recon_error.is_none() {
                return Err(AnomalyError::Invalid(format!(
                    "{}: the recon detector needs an autoencoder's embeddings (model C); these \
                     come from a {} model",
                    embeddings.display(),
                    a.model_kind
                )));
            }
            let pool = a.split.as_ref().and_then(|s| s.recon_pool);
            if config.score == super::recon::ReconScore::Local && pool != Some(config.pool) {
                return Err(AnomalyError::Invalid(format!(
                    "{}: recon_local was computed with {}; detector.pool={} asks for another \
                     window. Re-embed with `defectkit embed --recon-pool {}` or set detector.pool",
                    embeddings.display(),
                    pool.map_or(
                        "an unknown window (an older file)".to_string(),
                        |p| format!("--recon-pool {p}")
                    ),
                    config.pool,
                    config.pool
                )));
            }
        }
        let map_shape = a.maps.as_ref().map(MapProvenance::shape);
        let side = if config.method.is_patch() {
            input_side(store, embeddings)?
        } else {
            0
        };
        if config.method.is_patch() && map_shape.is_none() {
            return Err(AnomalyError::Invalid(format!(
                "{}: the {} detector scores feature maps, and this file has none: re-embed \
                 with `defectkit embed --maps` (and a model exported with a `features` output)",
                embeddings.display(),
                config.method
            )));
        }
        if config.threshold_split == "train" {
            warnings.push(
                "detector.threshold_split = train: the model was trained on these images, so \
                 their scores are optimistic and the thresholds low (expect more false positives)"
                    .to_string(),
            );
        }
        let mut classes: Vec<String> = fit_split.class.clone();
        classes.sort();
        classes.dedup();
        if classes.is_empty() {
            return Err(AnomalyError::Invalid(format!(
                "{}: split {:?} is empty",
                embeddings.display(),
                config.fit_split
            )));
        }
        let mut entries = Vec::new();
        let mut scorers = Vec::new();
        for class in &classes {
            // A safe point between classes (a patch detector's fit can take minutes each).
            if defectkit_core::interrupt::stop_requested() {
                return Err(AnomalyError::Interrupted);
            }
            let fit = ClassRows::of(fit_split, class, true, map_shape);
            if fit.index.is_empty() {
                return Err(AnomalyError::Invalid(format!(
                    "class {class:?} has no good images in split {:?}",
                    config.fit_split
                )));
            }
            let scorer = fit_scorer(config, &fit, side, class)?;
            let held_out = ClassRows::of(threshold_split, class, true, map_shape);
            let scores = scorer.score(&held_out.observations())?;
            super::check_finite(
                &scores,
                &threshold_split.path,
                Some(&held_out.index),
                config.method.as_str(),
                Some(&config.threshold_split),
            )?;
            let threshold = percentile_threshold(&scores, config.percentile, class)?;
            entries.push(ClassEntry {
                name: class.clone(),
                threshold,
                fit: scorer.summary(),
            });
            scorers.push(scorer);
        }
        let pairs: Vec<(&str, &Threshold)> = entries
            .iter()
            .map(|e| (e.name.as_str(), &e.threshold))
            .collect();
        warnings.extend(maximum_warning(&pairs, &config.threshold_split));
        let file = DetectorFile {
            format: FORMAT.into(),
            method: config.method,
            config: config.clone(),
            decision_rule:
                "an image of class c is anomalous when its score >= classes[c].threshold.value"
                    .into(),
            classes: entries,
            state_file: "detector.h5".into(),
            state_sha256: String::new(),
            model: ModelProvenance {
                path: a.model_path.clone(),
                sha256: a.model_sha256.clone(),
                kind: a.model_kind.clone(),
                precision: a.precision.clone(),
                preprocess: serde_json::from_str(&a.preprocess).unwrap_or(serde_json::Value::Null),
                classes: serde_json::from_str(&a.classes).unwrap_or_default(),
            },
            data: DataProvenance {
                embeddings: embeddings.display().to_string(),
                split: a.split.clone(),
            },
            maps: if config.method.is_patch() {
                a.maps.clone()
            } else {
                None
            },
            map_side: config.method.is_patch().then_some(side),
            defectkit_version: env!("CARGO_PKG_VERSION").into(),
        };
        Ok((Self { file, scorers }, warnings))
    }

    /// The classes, in order.
    pub fn classes(&self) -> impl Iterator<Item = &str> {
        self.file.classes.iter().map(|c| c.name.as_str())
    }

    /// Position of `class`, if the detector knows it.
    pub fn class_position(&self, class: &str) -> Option<usize> {
        self.file.classes.iter().position(|c| c.name == class)
    }

    /// Per-class thresholds.
    pub fn thresholds(&self) -> BTreeMap<String, f64> {
        self.file
            .classes
            .iter()
            .map(|c| (c.name.clone(), c.threshold.value))
            .collect()
    }

    /// Scores every row of `records` with its own class's scorer (rows of classes the
    /// detector does not know are an error).
    pub fn score_split(&self, records: &SplitRecords) -> Result<Vec<f64>, AnomalyError> {
        Ok(self.score_split_with_maps(records, false)?.0)
    }

    /// [`Detector::score_split`], plus each row's anomaly map (side × side, row-major) when
    /// `with_maps` and the detector is a patch detector.
    pub fn score_split_with_maps(
        &self,
        records: &SplitRecords,
        with_maps: bool,
    ) -> Result<(Vec<f64>, Option<AnomalyMaps>), AnomalyError> {
        let map_shape = self.file.maps.as_ref().map(MapProvenance::shape);
        if self.file.method.is_patch() {
            let per = self.file.maps.as_ref().map_or(0, MapProvenance::per_image);
            match &records.maps {
                None => {
                    return Err(AnomalyError::Invalid(format!(
                        "the {} detector needs feature maps and these records have none \
                         (embed with --maps)",
                        self.file.method
                    )))
                }
                Some(m) if m.len() != records.len() * per => {
                    return Err(AnomalyError::Invalid(format!(
                        "{} map values for {} images; the detector's maps have {per} values \
                         per image (embedded with other --map-channels?)",
                        m.len(),
                        records.len()
                    )))
                }
                Some(_) => {}
            }
        }
        let mut maps: Option<AnomalyMaps> =
            (with_maps && self.file.method.is_patch()).then(|| vec![Vec::new(); records.len()]);
        let mut out = vec![f64::NAN; records.len()];
        let mut classes: Vec<&String> = records.class.iter().collect();
        classes.sort();
        classes.dedup();
        for class in classes {
            let pos = self.class_position(class).ok_or_else(|| {
                AnomalyError::Invalid(format!(
                    "class {class:?} is not one the detector was fitted on ({})",
                    self.classes().collect::<Vec<_>>().join(", ")
                ))
            })?;
            let rows = ClassRows::of(records, class, false, map_shape);
            let obs = rows.observations();
            let both = if maps.is_some() {
                self.scorers[pos].maps_and_scores(&obs).transpose()?
            } else {
                None
            };
            let (class_maps, scores) = match both {
                Some((m, s)) => (Some(m), s),
                None => (None, self.scorers[pos].score(&obs)?),
            };
            super::check_finite(
                &scores,
                &records.path,
                Some(&rows.index),
                self.file.method.as_str(),
                None,
            )?;
            for (i, s) in rows.index.iter().zip(scores) {
                out[*i] = s;
            }
            if let (Some(all), Some(class_maps)) = (maps.as_mut(), class_maps) {
                for (i, m) in rows.index.iter().zip(class_maps) {
                    all[*i] = m;
                }
            }
        }
        Ok((out, maps))
    }

    /// Checks that embeddings whose maps are described by `maps` hold the feature maps this
    /// (patch) detector was fitted on: the same shape and the same kept channels. Image-level
    /// detectors accept anything.
    pub fn check_maps(&self, maps: Option<&MapProvenance>) -> Result<(), AnomalyError> {
        let Some(fitted) = &self.file.maps else {
            return Ok(());
        };
        match maps {
            None => Err(AnomalyError::Invalid(format!(
                "the {} detector scores feature maps and these embeddings have none (embed \
                 with --maps)",
                self.file.method
            ))),
            Some(m) if m.shape() != fitted.shape() || m.channels != fitted.channels => {
                Err(AnomalyError::Invalid(format!(
                    "the detector was fitted on {:?} maps of channels {:?}…; these embeddings \
                     hold {:?} maps of channels {:?}…: embed with the same --map-channels and \
                     --map-seed",
                    fitted.shape(),
                    &fitted.channels[..fitted.channels.len().min(5)],
                    m.shape(),
                    &m.channels[..m.channels.len().min(5)]
                )))
            }
            Some(_) => Ok(()),
        }
    }

    /// Bytes the fitted statistics take in memory, per class (patch detectors).
    pub fn memory_per_class(&self) -> Vec<(String, usize)> {
        self.file
            .classes
            .iter()
            .zip(&self.scorers)
            .map(|(c, s)| (c.name.clone(), s.memory_bytes()))
            .collect()
    }

    /// Writes `detector.h5` and `detector.json` into `dir` (which must exist; callers make
    /// the folder atomic).
    pub fn save(&mut self, dir: &Path) -> Result<PathBuf, AnomalyError> {
        let h5_path = dir.join(&self.file.state_file);
        let file_err = |path: &Path, reason: String| AnomalyError::File {
            path: path.to_path_buf(),
            reason,
        };
        {
            let h5 = hdf5::File::create(&h5_path).map_err(|e| file_err(&h5_path, e.to_string()))?;
            for (i, (entry, scorer)) in self.file.classes.iter().zip(&self.scorers).enumerate() {
                let group = h5
                    .create_group(&format!("class_{i:03}"))
                    .map_err(|e| file_err(&h5_path, e.to_string()))?;
                group
                    .new_attr::<hdf5::types::VarLenUnicode>()
                    .create("name")
                    .and_then(|a| {
                        a.write_scalar(
                            &entry
                                .name
                                .parse::<hdf5::types::VarLenUnicode>()
                                .expect("no NUL"),
                        )
                    })
                    .and_then(|()| scorer.save(&group))
                    .map_err(|e| file_err(&h5_path, e.to_string()))?;
            }
            h5.close().map_err(|e| file_err(&h5_path, e.to_string()))?;
        }
        self.file.state_sha256 =
            crate::embed::sha256_file(&h5_path).map_err(|e| file_err(&h5_path, e.to_string()))?;
        let json_path = dir.join("detector.json");
        let json = serde_json::to_string_pretty(&self.file).expect("detector serializes");
        defectkit_core::fsutil::write_atomic(&json_path, json.as_bytes())
            .map_err(|e| file_err(&json_path, e.to_string()))?;
        Ok(json_path)
    }

    /// Reads `detector.json` and the arrays it names, checking their SHA-256.
    pub fn load(json_path: &Path) -> Result<Self, AnomalyError> {
        let file_err = |path: &Path, reason: String| AnomalyError::File {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(json_path)
            .map_err(|e| file_err(json_path, format!("cannot read: {e}")))?;
        let file: DetectorFile = serde_json::from_str(&text)
            .map_err(|e| file_err(json_path, format!("not a defectkit detector.json: {e}")))?;
        if file.format != FORMAT {
            return Err(file_err(
                json_path,
                format!("format {:?}; this version reads {FORMAT:?}", file.format),
            ));
        }
        if file.method != file.config.method {
            return Err(file_err(
                json_path,
                format!(
                    "method {} differs from config.method {}: the file was edited",
                    file.method, file.config.method
                ),
            ));
        }
        if file.classes.is_empty() {
            return Err(file_err(json_path, "no classes".into()));
        }
        file.config
            .validate()
            .map_err(|e| file_err(json_path, format!("its config is invalid: {e}")))?;
        if file.method.is_patch() && (file.maps.is_none() || file.map_side.is_none()) {
            return Err(file_err(
                json_path,
                format!(
                    "a {} detector without its `maps` / `map_side` record: the file was edited \
                     or is damaged",
                    file.method
                ),
            ));
        }
        let mut names: Vec<&str> = file.classes.iter().map(|c| c.name.as_str()).collect();
        names.sort();
        if names.windows(2).any(|w| w[0] == w[1]) {
            return Err(file_err(json_path, "a class is listed twice".into()));
        }
        let dir = json_path.parent().unwrap_or(Path::new("."));
        let h5_path = dir.join(&file.state_file);
        let sha = crate::embed::sha256_file(&h5_path)
            .map_err(|e| file_err(&h5_path, format!("cannot read the detector's arrays: {e}")))?;
        if sha != file.state_sha256 {
            return Err(file_err(
                &h5_path,
                format!(
                    "SHA-256 {sha} differs from the {} recorded in {}: the two files do not \
                     belong together",
                    file.state_sha256,
                    json_path.display()
                ),
            ));
        }
        let h5 = hdf5::File::open(&h5_path).map_err(|e| file_err(&h5_path, e.to_string()))?;
        let groups = h5
            .member_names()
            .map_err(|e| file_err(&h5_path, e.to_string()))?
            .len();
        if groups != file.classes.len() {
            return Err(file_err(
                json_path,
                format!(
                    "{} classes listed, {} stored in {}: the files were edited",
                    file.classes.len(),
                    groups,
                    h5_path.display()
                ),
            ));
        }
        let mut scorers: Vec<Box<dyn ClassScorer>> = Vec::new();
        for (i, entry) in file.classes.iter().enumerate() {
            let group = h5
                .group(&format!("class_{i:03}"))
                .map_err(|e| file_err(&h5_path, format!("class {:?}: {e}", entry.name)))?;
            let bad = |e: String| file_err(&h5_path, format!("class {:?}: {e}", entry.name));
            let stored: String = group
                .attr("name")
                .and_then(|a| a.read_scalar::<hdf5::types::VarLenUnicode>())
                .map(|v| v.as_str().to_string())
                .map_err(|e| bad(e.to_string()))?;
            if stored != entry.name {
                return Err(bad(format!(
                    "its arrays are stored for class {stored:?}: detector.json and detector.h5 \
                     disagree (was detector.json edited?)"
                )));
            }
            let scorer: Box<dyn ClassScorer> = match file.method {
                Method::Mahalanobis => {
                    Box::new(Mahalanobis::load(&group).map_err(|e| bad(e.to_string()))?)
                }
                Method::Euclidean => {
                    Box::new(Euclidean::load(&group).map_err(|e| bad(e.to_string()))?)
                }
                Method::Knn => {
                    let knn = Knn::load(&group).map_err(|e| bad(e.to_string()))?;
                    if knn.k() != file.config.k {
                        return Err(bad(format!(
                            "k = {} stored, config.k = {}",
                            knn.k(),
                            file.config.k
                        )));
                    }
                    Box::new(knn)
                }
                Method::Recon => Box::new(
                    Recon::load(&group, file.config.score).map_err(|e| bad(e.to_string()))?,
                ),
                Method::Padim => {
                    let g = PatchGaussian::load(&group).map_err(|e| bad(e.to_string()))?;
                    check_patch_geometry(&file, g.grid(), g.map_options()).map_err(bad)?;
                    Box::new(g)
                }
                Method::Patchcore => {
                    let b = PatchMemoryBank::load(&group).map_err(|e| bad(e.to_string()))?;
                    check_patch_geometry(&file, b.grid(), b.map_options()).map_err(bad)?;
                    Box::new(b)
                }
            };
            scorers.push(scorer);
        }
        Ok(Self { file, scorers })
    }
}
