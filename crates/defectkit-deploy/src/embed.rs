//! `defectkit embed`: run a data set's splits through an exported model with ONNX Runtime
//! and store the embeddings (and, for autoencoders, reconstruction errors) in HDF5.
//!
//! Images go through the shared [`crate::pipeline`] (parallel decoding with the model's own
//! preprocessing spec, batched inference in one session). Nothing is written until every
//! split is done; the store is then written atomically, so an interrupted or failed run
//! leaves no file behind.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use sha2::{Digest, Sha256};

use defectkit_core::config::schema::DataConfig;
use defectkit_core::data::mvtec::{Index, IndexOptions, Sample, Split};

use crate::pipeline::{run_batches, Batch, PipelineError, PipelineOptions};
use crate::runtime::{OnnxModel, RuntimeError, RuntimeOptions};
use crate::store::{
    EmbeddingStore, MapProvenance, SplitProvenance, SplitRecords, StoreAttributes, StoreError,
};
use defectkit_core::rng::SplitMix64;

/// Why an embed run stopped.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// The model could not be loaded or run.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The data set could not be read.
    #[error(transparent)]
    Data(#[from] defectkit_core::data::DataError),
    /// The store could not be written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The model and the data set do not fit together.
    #[error("{0}")]
    Mismatch(String),
    /// Cancelled (Ctrl-C); nothing was written.
    #[error("interrupted; no embeddings file was written")]
    Interrupted,
    /// The model gave NaN or infinite values; nothing was written.
    #[error(
        "the model gave a non-finite {what} for {path} (the first such image); no embeddings \
         file was written. Check the model's weights and preprocessing"
    )]
    NonFinite {
        /// `embedding` or `reconstruction error`.
        what: &'static str,
        /// The first image it happened for.
        path: String,
    },
}

/// The first record of `records` with a NaN or infinite embedding or reconstruction error:
/// what it was and the image's path.
fn first_non_finite(records: &SplitRecords, dim: usize) -> Option<(&'static str, String)> {
    let path = |i: usize| records.path.get(i).cloned().unwrap_or_default();
    if let Some(pos) = records.embeddings.iter().position(|v| !v.is_finite()) {
        return Some(("embedding", path(pos / dim.max(1))));
    }
    let errors = records.recon_error.iter().flatten();
    let local = records.recon_local.iter().flatten();
    errors
        .chain(local)
        .position(|v| !v.is_finite())
        .map(|i| ("reconstruction error", path(i % records.len().max(1))))
}

/// What to embed and where.
#[derive(Debug, Clone)]
pub struct EmbedOptions {
    /// The exported model (`model.onnx` or a quantized variant).
    pub model: PathBuf,
    /// Data set root; `None` = `data.root` from the config.
    pub root: Option<PathBuf>,
    /// The HDF5 file to write.
    pub out: PathBuf,
    /// Session options (execution provider, threads, library).
    pub runtime: RuntimeOptions,
    /// Images per inference batch.
    pub batch_size: usize,
    /// Splits to embed, in order.
    pub splits: Vec<Split>,
    /// Show a progress bar.
    pub progress: bool,
    /// Window side of the local reconstruction error stored for autoencoders
    /// (`recon_local`), in model-input pixels.
    pub recon_pool: usize,
    /// Also store the model's `features` maps (patch-level detection); `None` = no maps.
    pub maps: Option<MapSelection>,
}

/// Which channels of the model's `features` output `embed --maps` stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapSelection {
    /// Keep this many channels, chosen at random with `seed` as PaDiM does (`None` = all).
    pub channels: Option<usize>,
    /// Seed of the channel choice.
    pub seed: u64,
}

impl MapSelection {
    /// The kept channel indices out of `available`, ascending: all of them, or a seeded
    /// random subset (a partial Fisher-Yates shuffle with [`SplitMix64`]). Asking for more
    /// channels than there are is an error.
    pub fn choose(&self, available: usize) -> Result<Vec<usize>, String> {
        match self.channels {
            None => Ok((0..available).collect()),
            Some(0) => Err("--map-channels 0: keep at least one channel".into()),
            Some(n) if n > available => Err(format!(
                "--map-channels {n}: the model's features output has only {available} channels"
            )),
            Some(n) => {
                let mut all: Vec<usize> = (0..available).collect();
                let mut rng = SplitMix64(self.seed);
                for i in 0..n {
                    let j = i + rng.below(available - i);
                    all.swap(i, j);
                }
                let mut kept = all[..n].to_vec();
                kept.sort_unstable();
                Ok(kept)
            }
        }
    }
}

/// Appends a batch's `features` (`[B, source_channels, h, w]` flat) to `maps`, keeping the
/// channels `kept`.
pub fn append_maps(maps: &mut Vec<f32>, features: &[f32], source: [usize; 3], kept: &[usize]) {
    let [c, h, w] = source;
    let plane = h * w;
    for image in features.chunks(c * plane) {
        for &k in kept {
            maps.extend_from_slice(&image[k * plane..(k + 1) * plane]);
        }
    }
}

/// What an embed run did.
#[derive(Debug, Clone)]
pub struct EmbedReport {
    /// Rows written per split.
    pub counts: Vec<(Split, usize)>,
    /// Images skipped because they could not be decoded (non-strict mode).
    pub skipped: Vec<(PathBuf, String)>,
    /// Wall time.
    pub seconds: f64,
    /// The file written.
    pub out: PathBuf,
    /// The feature maps stored (`--maps`).
    pub maps: Option<MapProvenance>,
}

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    let mut file = std::fs::File::open(path)?;
    std::io::copy(&mut file, &mut hasher)?;
    Ok(format!("{:x}", hasher.finalize()))
}

/// Per-image mean squared error between `input` and `reconstruction` (`[B, L]` flat each).
pub fn recon_errors(input: &[f32], reconstruction: &[f32], per_sample: usize) -> Vec<f32> {
    input
        .chunks(per_sample)
        .zip(reconstruction.chunks(per_sample))
        .map(|(x, y)| crate::anomaly::recon::mean_error(x, y) as f32)
        .collect()
}

/// Per-image local reconstruction error ([`crate::anomaly::recon::local_error`]) of a batch
/// of `[C, H, W]` images, flat.
pub fn recon_local_errors(
    input: &[f32],
    reconstruction: &[f32],
    shape: [usize; 3],
    pool: usize,
) -> Vec<f32> {
    let per_sample = shape.iter().product::<usize>().max(1);
    input
        .chunks(per_sample)
        .zip(reconstruction.chunks(per_sample))
        .map(|(x, y)| crate::anomaly::recon::local_error(x, y, shape, pool) as f32)
        .collect()
}

/// Appends one pipeline batch to `records`: embeddings, (autoencoders) the mean and local
/// reconstruction errors against the batch's own input, labels, classes, defect types, paths.
/// `shape` is the model's `[C, H, W]`, `pool` the local error's window side.
pub fn append_batch<T: std::borrow::Borrow<Sample>>(
    records: &mut SplitRecords,
    b: &Batch<'_, T>,
    shape: [usize; 3],
    pool: usize,
) {
    let per_sample = shape.iter().product::<usize>().max(1);
    records.embeddings.extend_from_slice(&b.outputs.embedding);
    if let Some(errors) = records.recon_error.as_mut() {
        errors.extend(recon_errors(&b.input, &b.outputs.primary, per_sample));
    }
    if let Some(local) = records.recon_local.as_mut() {
        local.extend(recon_local_errors(
            &b.input,
            &b.outputs.primary,
            shape,
            pool,
        ));
    }
    for item in &b.items {
        let s: &Sample = std::borrow::Borrow::borrow(*item);
        records.label.push(s.label());
        records.class.push(s.class.clone());
        records
            .defect_type
            .push(s.defect.clone().unwrap_or_else(|| "good".into()));
        records.path.push(s.path.display().to_string());
        records.mask.push(
            s.mask
                .as_ref()
                .map(|m| m.display().to_string())
                .unwrap_or_default(),
        );
    }
}

/// Embeds the configured data set with `opts.model` and writes `opts.out`. `cancel` is
/// polled between batches.
pub fn embed(
    data: &DataConfig,
    opts: &EmbedOptions,
    cancel: &AtomicBool,
) -> Result<EmbedReport, EmbedError> {
    let started = Instant::now();
    let mut model = OnnxModel::load(&opts.model, &opts.runtime)?;
    let meta = model.metadata.clone();
    let spec = meta.preprocess.clone();
    let [channels, height, width] = meta.input_shape;
    let side = spec.input_size() as usize;
    if channels != 3 || height != side || width != side {
        return Err(EmbedError::Mismatch(format!(
            "the model's input is {:?} but its preprocessing makes 3×{side}×{side} images",
            meta.input_shape
        )));
    }
    let maps = match opts.maps {
        None => None,
        Some(selection) => {
            let spec = model.request_features()?;
            let channels = selection
                .choose(spec.channels)
                .map_err(EmbedError::Mismatch)?;
            Some(MapProvenance {
                seed: selection.channels.map(|_| selection.seed),
                source_channels: spec.channels,
                height: spec.height,
                width: spec.width,
                stride: spec.stride,
                channels,
            })
        }
    };
    let root = opts.root.clone().unwrap_or_else(|| data.root.clone());
    let index = Index::scan(
        &root,
        &IndexOptions {
            classes: Some(data.classes.clone().unwrap_or_else(|| meta.classes.clone())),
            val_fraction: data.val_fraction,
            seed: data.split_seed,
            strict: data.strict,
        },
    )?;
    let total: usize = opts.splits.iter().map(|s| index.count(*s)).sum();
    let bar = if opts.progress {
        let b = indicatif::ProgressBar::new(total as u64);
        if let Ok(s) = indicatif::ProgressStyle::with_template(
            "embed {prefix:5} {bar:30} {pos}/{len} images  {per_sec}  {elapsed}<{eta}",
        ) {
            b.set_style(s);
        }
        b
    } else {
        indicatif::ProgressBar::hidden()
    };

    let mut store = EmbeddingStore {
        attributes: StoreAttributes {
            model_path: opts.model.display().to_string(),
            model_sha256: sha256_file(&opts.model).map_err(|e| {
                EmbedError::Mismatch(format!("cannot hash {}: {e}", opts.model.display()))
            })?,
            model_kind: meta.kind.as_str().to_string(),
            precision: meta.precision.as_str().to_string(),
            preprocess: serde_json::to_string(&spec).expect("spec serializes"),
            classes: serde_json::to_string(&meta.classes).expect("names serialize"),
            embedding_dim: meta.embedding_dim,
            defectkit_version: env!("CARGO_PKG_VERSION").to_string(),
            split: Some(SplitProvenance {
                val_fraction: data.val_fraction,
                split_seed: data.split_seed,
                model_val_fraction: meta.data_split.map(|s| s.val_fraction),
                model_split_seed: meta.data_split.map(|s| s.split_seed),
                recon_pool: meta.kind.is_autoencoder().then_some(opts.recon_pool),
            }),
            maps: maps.clone(),
        },
        splits: Default::default(),
    };
    let mut skipped = Vec::new();
    let mut counts = Vec::new();
    for &split in &opts.splits {
        bar.set_prefix(split.as_str());
        let samples: Vec<&Sample> = index.split(split).collect();
        let mut records = SplitRecords::new(meta.embedding_dim, meta.kind.is_autoencoder());
        records.maps = maps.as_ref().map(|_| Vec::new());
        let pipeline = PipelineOptions {
            batch_size: opts.batch_size,
            strict: data.strict,
            warn_skipped: true,
        };
        let result = run_batches(&mut model, &samples, pipeline, cancel, &bar, |b| {
            if let (Some(m), Some(kept)) = (records.maps.as_mut(), maps.as_ref()) {
                if let Some(features) = &b.outputs.features {
                    let source = [kept.source_channels, kept.height, kept.width];
                    append_maps(m, features, source, &kept.channels);
                }
            }
            append_batch(&mut records, &b, meta.input_shape, opts.recon_pool)
        });
        match result {
            Ok(mut skipped_here) => skipped.append(&mut skipped_here),
            Err(PipelineError::Interrupted) => {
                bar.abandon();
                return Err(EmbedError::Interrupted);
            }
            Err(PipelineError::Runtime(e)) => return Err(e.into()),
            Err(PipelineError::Data(e)) => return Err(e.into()),
        }
        if let Some((what, path)) = first_non_finite(&records, meta.embedding_dim) {
            bar.abandon();
            return Err(EmbedError::NonFinite { what, path });
        }
        counts.push((split, records.len()));
        store.splits.insert(split.as_str().to_string(), records);
    }
    bar.finish_and_clear();
    if cancel.load(Ordering::SeqCst) {
        return Err(EmbedError::Interrupted);
    }
    store.write(&opts.out)?;
    Ok(EmbedReport {
        counts,
        skipped,
        seconds: started.elapsed().as_secs_f64(),
        out: opts.out.clone(),
        maps,
    })
}
