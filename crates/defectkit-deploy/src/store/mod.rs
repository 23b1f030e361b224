//! The HDF5 embedding store (`embeddings.h5`): what `defectkit embed` writes and the anomaly
//! and clustering stages read.
//!
//! Layout: one group per split (`/train`, `/val`, `/test`) with datasets
//! - `embeddings` N×d f32 (chunked, deflate-compressed),
//! - `label` N u8 (0 good, 1 defective),
//! - `class`, `defect_type`, `path` N variable-length UTF-8 strings,
//! - `mask` N strings: the ground-truth mask of a defective image, `""` for none (files from
//!   before it was stored have no `mask` dataset: pixel metrics are then unavailable),
//! - `recon_error` N f32 (autoencoders only: mean squared error per image, normalized space);
//! - `recon_local` N f32 (autoencoders only: the max of the `recon_pool`×`recon_pool`
//!   average-pooled per-pixel squared error);
//! - `maps` N×C×h×w f32 (with `embed --maps` only: the model's `features` output, or the
//!   recorded channel subset of it; one chunk per image, deflate-compressed);
//!
//! and file attributes `model_path`, `model_sha256`, `model_kind`, `precision`,
//! `preprocess` (JSON), `classes` (JSON), `embedding_dim`, `defectkit_version`, and — in files
//! from this version on — `split` (JSON: the `val_fraction` and `split_seed` the data set was
//! split with, the model's training run's values, and `recon_pool`) and, with `--maps`,
//! `maps` (JSON [`MapProvenance`]: the map's shape and stride, which of the model's feature
//! channels were kept, and the seed that chose them).
//! Files are written to a temporary sibling and renamed, so a reader never sees half a file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use hdf5::types::VarLenUnicode;
use ndarray::{Array1, Array2};

/// Store errors (HDF5 messages carry their own detail).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// HDF5 refused an operation.
    #[error("{path}: HDF5 error: {source}")]
    Hdf5 {
        /// The file.
        path: PathBuf,
        /// HDF5's error.
        source: hdf5::Error,
    },
    /// The file exists but is not an embedding store (or is from an incompatible version).
    #[error("{path}: not a defectkit embedding store: {reason}")]
    Schema {
        /// The file.
        path: PathBuf,
        /// What is missing or wrong.
        reason: String,
    },
    /// Records handed to the writer are inconsistent.
    #[error("invalid records for split {split}: {reason}")]
    Records {
        /// The split.
        split: String,
        /// What is wrong.
        reason: String,
    },
    /// A field of the file holds what defectkit never writes (a tampered or damaged file):
    /// a preprocessing spec the config layer would reject, a NaN embedding.
    #[error("{path}: {field} is invalid: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The attribute or dataset (`attribute "preprocess"`, `split "test" embeddings`).
        field: String,
        /// What is wrong, and what is allowed.
        reason: String,
    },
    /// The file could not be moved into place.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// One split's rows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SplitRecords {
    /// Row-major N×`dim` embeddings.
    pub embeddings: Vec<f32>,
    /// Embedding length d.
    pub dim: usize,
    /// 0 good, 1 defective.
    pub label: Vec<u8>,
    /// Category of each image.
    pub class: Vec<String>,
    /// Defect type (`good` for good images).
    pub defect_type: Vec<String>,
    /// Image path as scanned.
    pub path: Vec<String>,
    /// Ground-truth mask path per image (`""` = none); empty for files that did not store
    /// masks.
    pub mask: Vec<String>,
    /// Per-image reconstruction error (autoencoders only).
    pub recon_error: Option<Vec<f32>>,
    /// Per-image local reconstruction error (autoencoders only).
    pub recon_local: Option<Vec<f32>>,
    /// Row-major N×C×h×w feature maps (`embed --maps` only; shape in
    /// [`StoreAttributes::maps`]).
    pub maps: Option<Vec<f32>>,
}

impl SplitRecords {
    /// Empty records of embedding length `dim`.
    pub fn new(dim: usize, with_recon_error: bool) -> Self {
        Self {
            dim,
            recon_error: with_recon_error.then(Vec::new),
            recon_local: with_recon_error.then(Vec::new),
            ..Default::default()
        }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.label.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.label.is_empty()
    }

    /// The embeddings as an N×d array.
    pub fn embeddings_array(&self) -> Array2<f32> {
        Array2::from_shape_vec((self.len(), self.dim), self.embeddings.clone())
            .expect("validated on write and read")
    }

    fn validate(&self, split: &str) -> Result<(), StoreError> {
        let n = self.len();
        let bad = |reason: String| StoreError::Records {
            split: split.to_string(),
            reason,
        };
        if self.dim == 0 {
            return Err(bad("embedding dimension is 0".into()));
        }
        if self.embeddings.len() != n * self.dim {
            return Err(bad(format!(
                "{} embedding values for {n} rows of {}",
                self.embeddings.len(),
                self.dim
            )));
        }
        for (name, len) in [
            ("class", self.class.len()),
            ("defect_type", self.defect_type.len()),
            ("path", self.path.len()),
        ] {
            if len != n {
                return Err(bad(format!("{name} has {len} rows, label has {n}")));
            }
        }
        if !self.mask.is_empty() && self.mask.len() != n {
            return Err(bad(format!(
                "mask has {} rows, label has {n}",
                self.mask.len()
            )));
        }
        for (name, values) in [
            ("recon_error", &self.recon_error),
            ("recon_local", &self.recon_local),
        ] {
            if let Some(r) = values {
                if r.len() != n {
                    return Err(bad(format!("{name} has {} rows, label has {n}", r.len())));
                }
            }
        }
        Ok(())
    }

    /// Checks `maps` against the file's map shape (`None` = the file has no maps).
    fn validate_maps(&self, split: &str, maps: Option<&MapProvenance>) -> Result<(), StoreError> {
        let bad = |reason: String| StoreError::Records {
            split: split.to_string(),
            reason,
        };
        match (&self.maps, maps) {
            (None, None) => Ok(()),
            (Some(_), None) => Err(bad("maps given but the file records no map shape".into())),
            (None, Some(_)) => Err(bad("the file records maps but this split has none".into())),
            (Some(v), Some(m)) => {
                if v.len() != self.len() * m.per_image() {
                    return Err(bad(format!(
                        "{} map values for {} images of {:?}",
                        v.len(),
                        self.len(),
                        m.shape()
                    )));
                }
                Ok(())
            }
        }
    }

    /// The maps as an N×C×h×w array view (None without maps).
    pub fn maps_view(&self, shape: [usize; 3]) -> Option<ndarray::ArrayView4<'_, f32>> {
        let [c, h, w] = shape;
        self.maps.as_ref().map(|v| {
            ndarray::ArrayView4::from_shape((self.len(), c, h, w), v).expect("validated on read")
        })
    }
}

/// File-level attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreAttributes {
    /// The ONNX model that produced the embeddings.
    pub model_path: String,
    /// Its SHA-256 (hex).
    pub model_sha256: String,
    /// `cnn_scratch`, `cnn_distilled`, `unet_ae`, `teacher`.
    pub model_kind: String,
    /// `fp32` or `int8`.
    pub precision: String,
    /// The preprocessing spec, as JSON.
    pub preprocess: String,
    /// The model's class names, as a JSON array.
    pub classes: String,
    /// Embedding length.
    pub embedding_dim: usize,
    /// The defectkit version that wrote the file.
    pub defectkit_version: String,
    /// How the data set was split and what the model was trained with (None in files
    /// written before it was recorded).
    pub split: Option<SplitProvenance>,
    /// The feature maps' shape and channel selection (None without `embed --maps`).
    pub maps: Option<MapProvenance>,
}

/// What the `maps` datasets hold: `[C, h, w]` per image, taken from the model's `features`
/// output (`source_channels` channels at `stride` input pixels per cell), keeping the
/// channels `channels` (all of them, or a random subset chosen with `seed`, as PaDiM does).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MapProvenance {
    /// The kept channel indices into the model's `features` output, ascending.
    pub channels: Vec<usize>,
    /// Channels of the model's `features` output.
    pub source_channels: usize,
    /// Rows of a map.
    pub height: usize,
    /// Columns of a map.
    pub width: usize,
    /// Input pixels per map cell.
    pub stride: usize,
    /// Seed of the random channel subset (None = every channel kept).
    pub seed: Option<u64>,
}

impl MapProvenance {
    /// Values per image (C·h·w).
    pub fn per_image(&self) -> usize {
        self.channels.len() * self.height * self.width
    }

    /// The `[C, h, w]` of one image's map.
    pub fn shape(&self) -> [usize; 3] {
        [self.channels.len(), self.height, self.width]
    }
}

/// The data split an embeddings file was made with, next to the model's training run's: a
/// detector thresholded on `val` images that the model trained on would be optimistic.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SplitProvenance {
    /// `data.val_fraction` used by `embed`.
    pub val_fraction: f64,
    /// `data.split_seed` used by `embed`.
    pub split_seed: u64,
    /// The model's training run's `data.val_fraction` (None for models exported before it
    /// was recorded).
    pub model_val_fraction: Option<f64>,
    /// The model's training run's `data.split_seed`.
    pub model_split_seed: Option<u64>,
    /// Window side of `recon_local` (autoencoders), in model-input pixels.
    pub recon_pool: Option<usize>,
}

impl SplitProvenance {
    /// An explanation when the file's val split is not the model's training split.
    pub fn mismatch(&self) -> Option<String> {
        let (Some(vf), Some(seed)) = (self.model_val_fraction, self.model_split_seed) else {
            return None;
        };
        (vf != self.val_fraction || seed != self.split_seed).then(|| {
            format!(
                "the embeddings were split with data.val_fraction={} data.split_seed={}, but \
                 the model was trained with data.val_fraction={vf} data.split_seed={seed}: its \
                 val images may be images the model trained on. Re-run `defectkit embed` with \
                 data.val_fraction={vf} data.split_seed={seed}",
                self.val_fraction, self.split_seed
            )
        })
    }
}

/// A whole store: attributes plus the splits present.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingStore {
    /// File attributes.
    pub attributes: StoreAttributes,
    /// Split name (`train`, `val`, `test`) → rows.
    pub splits: BTreeMap<String, SplitRecords>,
}

fn vlu(s: &str) -> VarLenUnicode {
    // Only fails on interior NULs, which paths and names here cannot contain; replace them.
    VarLenUnicode::from_str(&s.replace('\0', "\u{FFFD}")).expect("no NUL")
}

impl EmbeddingStore {
    /// Writes the store to `path` atomically (temporary sibling, then rename).
    pub fn write(&self, path: &Path) -> Result<(), StoreError> {
        for (name, records) in &self.splits {
            records.validate(name)?;
            records.validate_maps(name, self.attributes.maps.as_ref())?;
            if records.dim != self.attributes.embedding_dim {
                return Err(StoreError::Records {
                    split: name.clone(),
                    reason: format!(
                        "dim {} differs from the file's embedding_dim {}",
                        records.dim, self.attributes.embedding_dim
                    ),
                });
            }
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| StoreError::Io {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        defectkit_core::fsutil::clear_stale_temps(
            path.parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new(".")),
        );
        let guard = defectkit_core::fsutil::TempGuard::sibling(path);
        let tmp = guard.path();
        let result = self.write_to(tmp).and_then(|()| {
            std::fs::rename(tmp, path).map_err(|source| StoreError::Io {
                path: path.to_path_buf(),
                source,
            })
        });
        if result.is_err() {
            let _ = std::fs::remove_file(tmp);
        }
        result
    }

    fn write_to(&self, path: &Path) -> Result<(), StoreError> {
        let h5 = |source| StoreError::Hdf5 {
            path: path.to_path_buf(),
            source,
        };
        let file = hdf5::File::create(path).map_err(h5)?;
        let a = &self.attributes;
        for (key, value) in [
            ("model_path", a.model_path.as_str()),
            ("model_sha256", a.model_sha256.as_str()),
            ("model_kind", a.model_kind.as_str()),
            ("precision", a.precision.as_str()),
            ("preprocess", a.preprocess.as_str()),
            ("classes", a.classes.as_str()),
            ("defectkit_version", a.defectkit_version.as_str()),
        ] {
            file.new_attr::<VarLenUnicode>()
                .create(key)
                .and_then(|attr| attr.write_scalar(&vlu(value)))
                .map_err(h5)?;
        }
        if let Some(split) = &a.split {
            let json = serde_json::to_string(split).expect("provenance serializes");
            file.new_attr::<VarLenUnicode>()
                .create("split")
                .and_then(|attr| attr.write_scalar(&vlu(&json)))
                .map_err(h5)?;
        }
        if let Some(maps) = &a.maps {
            let json = serde_json::to_string(maps).expect("provenance serializes");
            file.new_attr::<VarLenUnicode>()
                .create("maps")
                .and_then(|attr| attr.write_scalar(&vlu(&json)))
                .map_err(h5)?;
        }
        file.new_attr::<u64>()
            .create("embedding_dim")
            .and_then(|attr| attr.write_scalar(&(a.embedding_dim as u64)))
            .map_err(h5)?;

        for (name, r) in &self.splits {
            let group = file.create_group(name).map_err(h5)?;
            let n = r.len();
            let emb =
                Array2::from_shape_vec((n, r.dim), r.embeddings.clone()).expect("validated above");
            let builder = group.new_dataset_builder().with_data(&emb);
            if n > 0 {
                builder
                    .chunk((n.clamp(1, 1024), r.dim))
                    .deflate(4)
                    .create("embeddings")
                    .map_err(h5)?;
            } else {
                builder.create("embeddings").map_err(h5)?;
            }
            group
                .new_dataset_builder()
                .with_data(&Array1::from(r.label.clone()))
                .create("label")
                .map_err(h5)?;
            for (key, values) in [
                ("class", &r.class),
                ("defect_type", &r.defect_type),
                ("path", &r.path),
                ("mask", &r.mask),
            ] {
                if key == "mask" && values.is_empty() && n > 0 {
                    continue;
                }
                let strings: Array1<VarLenUnicode> = values.iter().map(|s| vlu(s)).collect();
                group
                    .new_dataset_builder()
                    .with_data(&strings)
                    .create(key)
                    .map_err(h5)?;
            }
            for (key, values) in [
                ("recon_error", &r.recon_error),
                ("recon_local", &r.recon_local),
            ] {
                if let Some(values) = values {
                    group
                        .new_dataset_builder()
                        .with_data(&Array1::from(values.clone()))
                        .create(key)
                        .map_err(h5)?;
                }
            }
            if let (Some(values), Some(m)) = (&r.maps, &a.maps) {
                let [c, h, w] = m.shape();
                let view =
                    ndarray::ArrayView4::from_shape((n, c, h, w), values).expect("validated above");
                let builder = group.new_dataset_builder().with_data(&view);
                if n > 0 && m.per_image() > 0 {
                    builder
                        .chunk((1, c, h, w))
                        .deflate(1)
                        .create("maps")
                        .map_err(h5)?;
                } else {
                    builder.create("maps").map_err(h5)?;
                }
            }
        }
        file.flush().map_err(h5)?;
        file.close().map_err(h5)
    }

    /// Reads a whole store.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let h5 = |source| StoreError::Hdf5 {
            path: path.to_path_buf(),
            source,
        };
        let schema = |reason: String| StoreError::Schema {
            path: path.to_path_buf(),
            reason,
        };
        if !path.is_file() {
            return Err(StoreError::Io {
                path: path.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
            });
        }
        let file = hdf5::File::open(path).map_err(h5)?;
        let text_attr = |key: &str| -> Result<String, StoreError> {
            let attr = file
                .attr(key)
                .map_err(|_| schema(format!("missing attribute {key:?}")))?;
            let v: VarLenUnicode = attr.read_scalar().map_err(h5)?;
            Ok(v.as_str().to_string())
        };
        let embedding_dim = file
            .attr("embedding_dim")
            .map_err(|_| schema("missing attribute \"embedding_dim\"".into()))?
            .read_scalar::<u64>()
            .map_err(h5)? as usize;
        let attributes = StoreAttributes {
            model_path: text_attr("model_path")?,
            model_sha256: text_attr("model_sha256")?,
            model_kind: text_attr("model_kind")?,
            precision: text_attr("precision")?,
            preprocess: text_attr("preprocess")?,
            classes: text_attr("classes")?,
            embedding_dim,
            defectkit_version: text_attr("defectkit_version")?,
            split: match file.attr("split") {
                Ok(attr) => {
                    let v: VarLenUnicode = attr.read_scalar().map_err(h5)?;
                    Some(
                        serde_json::from_str(v.as_str())
                            .map_err(|e| schema(format!("attribute \"split\": {e}")))?,
                    )
                }
                Err(_) => None,
            },
            maps: match file.attr("maps") {
                Ok(attr) => {
                    let v: VarLenUnicode = attr.read_scalar().map_err(h5)?;
                    Some(
                        serde_json::from_str(v.as_str())
                            .map_err(|e| schema(format!("attribute \"maps\": {e}")))?,
                    )
                }
                Err(_) => None,
            },
        };
        check_attributes(path, &attributes)?;
        let mut splits = BTreeMap::new();
        for name in file.member_names().map_err(h5)? {
            let group = file.group(&name).map_err(h5)?;
            let dataset = |key: &str| {
                group
                    .dataset(key)
                    .map_err(|_| schema(format!("split {name:?} has no dataset {key:?}")))
            };
            let emb = dataset("embeddings")?.read_2d::<f32>().map_err(h5)?;
            let (n, dim) = emb.dim();
            let strings = |key: &str| -> Result<Vec<String>, StoreError> {
                Ok(dataset(key)?
                    .read_1d::<VarLenUnicode>()
                    .map_err(h5)?
                    .iter()
                    .map(|s| s.as_str().to_string())
                    .collect())
            };
            let optional = |key: &str| -> Result<Option<Vec<f32>>, StoreError> {
                match group.dataset(key) {
                    Ok(ds) => Ok(Some(ds.read_1d::<f32>().map_err(h5)?.to_vec())),
                    Err(_) => Ok(None),
                }
            };
            let recon_error = optional("recon_error")?;
            let recon_local = optional("recon_local")?;
            let maps = match (group.dataset("maps"), &attributes.maps) {
                (Ok(ds), Some(m)) => {
                    let values = ds.read::<f32, ndarray::Ix4>().map_err(h5)?;
                    let [c, h, w] = m.shape();
                    if values.dim() != (n, c, h, w) {
                        return Err(schema(format!(
                            "split {name:?}: maps are {:?}, the file's maps attribute says \
                             {n}×{c}×{h}×{w}",
                            values.dim()
                        )));
                    }
                    Some(values.iter().copied().collect())
                }
                (Ok(_), None) => {
                    return Err(schema(format!(
                        "split {name:?} has maps but the file has no \"maps\" attribute"
                    )))
                }
                (Err(_), _) => None,
            };
            let records = SplitRecords {
                embeddings: emb.iter().copied().collect(),
                dim: if n == 0 { embedding_dim } else { dim },
                label: dataset("label")?.read_1d::<u8>().map_err(h5)?.to_vec(),
                class: strings("class")?,
                defect_type: strings("defect_type")?,
                path: strings("path")?,
                mask: match group.dataset("mask") {
                    Ok(_) => strings("mask")?,
                    Err(_) => Vec::new(),
                },
                recon_error,
                recon_local,
                maps,
            };
            records.validate(&name).map_err(|e| schema(e.to_string()))?;
            records
                .validate_maps(&name, attributes.maps.as_ref())
                .map_err(|e| schema(e.to_string()))?;
            check_finite_rows(path, &name, &records)?;
            splits.insert(name, records);
        }
        Ok(Self { attributes, splits })
    }

    /// One split's rows, or a schema error naming the splits present.
    pub fn split(&self, name: &str) -> Result<&SplitRecords, String> {
        self.splits.get(name).ok_or_else(|| {
            format!(
                "no split {name:?} (present: {})",
                self.splits.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        })
    }
}

/// The checks serde cannot make on a store's attributes, the same the config layer and
/// `embed` apply: a valid preprocessing spec and a class list.
fn check_attributes(path: &Path, a: &StoreAttributes) -> Result<(), StoreError> {
    let invalid = |field: &str, reason: String| StoreError::Invalid {
        path: path.to_path_buf(),
        field: format!("attribute {field:?}"),
        reason,
    };
    let spec: defectkit_core::data::PreprocessSpec = serde_json::from_str(&a.preprocess)
        .map_err(|e| invalid("preprocess", format!("not a preprocessing spec: {e}")))?;
    spec.validate()
        .map_err(|e| invalid("preprocess", e.to_string()))?;
    serde_json::from_str::<Vec<String>>(&a.classes)
        .map_err(|e| invalid("classes", format!("not a JSON list of names: {e}")))?;
    if a.embedding_dim == 0 {
        return Err(invalid("embedding_dim", "is 0; allowed: >= 1".into()));
    }
    Ok(())
}

/// Refuses a split with a NaN or infinite embedding or reconstruction error (`embed` never
/// writes one), naming the first such image.
fn check_finite_rows(path: &Path, split: &str, r: &SplitRecords) -> Result<(), StoreError> {
    let bad = |what: &str, row: usize| StoreError::Invalid {
        path: path.to_path_buf(),
        field: format!("split {split:?} {what}"),
        reason: format!(
            "row {row} ({}) is NaN or infinite; defectkit never writes one",
            r.path.get(row).map_or("?", String::as_str)
        ),
    };
    if let Some(i) = r.embeddings.iter().position(|v| !v.is_finite()) {
        return Err(bad("embeddings", i.checked_div(r.dim).unwrap_or(0)));
    }
    for (what, values) in [
        ("recon_error", &r.recon_error),
        ("recon_local", &r.recon_local),
    ] {
        if let Some(i) = values
            .as_ref()
            .and_then(|v| v.iter().position(|x| !x.is_finite()))
        {
            return Err(bad(what, i));
        }
    }
    if let (Some(maps), n) = (&r.maps, r.len()) {
        if let Some(i) = maps.iter().position(|v| !v.is_finite()) {
            return Err(bad("maps", i / (maps.len() / n.max(1)).max(1)));
        }
    }
    Ok(())
}
