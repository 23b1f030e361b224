//! The one decode → preprocess → batch → run loop of the deployment side, shared by every
//! verb that runs images through an exported model (`embed`, `score`; `bench` and
//! quantization's calibration next).
//!
//! A decoding thread decodes and preprocesses each batch in parallel (rayon) with the spec
//! recorded in the model (ARCHITECTURE.md seam 2) and hands it over a bounded channel to the
//! caller's thread, which runs it through the model's one session: decoding the next batch
//! overlaps inference of this one, and at most [`PREFETCH`] decoded batches wait, so memory
//! stays constant however many images there are. `cancel` is polled between batches; an
//! image that cannot be decoded is skipped (reported in its batch and in the returned list),
//! or ends the run when `strict`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::sync_channel;

use rayon::prelude::*;

use defectkit_core::data::image_io::load_rgb8;
use defectkit_core::data::{DataError, PreprocessSpec};

use crate::runtime::{ModelOutputs, OnnxModel, RuntimeError};

/// Why a pipeline run stopped.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The model could not be run.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// An image could not be decoded (strict mode).
    #[error(transparent)]
    Data(#[from] DataError),
    /// Cancelled between batches.
    #[error("interrupted")]
    Interrupted,
}

/// How to batch.
#[derive(Debug, Clone, Copy)]
pub struct PipelineOptions {
    /// Images per inference batch (at least 1).
    pub batch_size: usize,
    /// An undecodable image is an error instead of a warning and a skip.
    pub strict: bool,
    /// Print a warning on stderr for each skipped image (verbs that report skips
    /// themselves, like `score`'s error column, turn it off).
    pub warn_skipped: bool,
}

/// Decoded batches that may wait for inference (besides the one being decoded).
pub const PREFETCH: usize = 2;

/// One batch that went through the model.
#[derive(Debug)]
pub struct Batch<'a, T> {
    /// The items whose images were decoded, in order (skipped ones left out).
    pub items: Vec<&'a T>,
    /// The preprocessed input, `[items.len(), C, H, W]` flattened.
    pub input: Vec<f32>,
    /// The model's outputs for `input` (empty when every image of the batch was skipped).
    pub outputs: ModelOutputs,
    /// This batch's images that could not be decoded, in order, with the reason.
    pub skipped: Vec<(&'a T, String)>,
}

/// An image that was skipped, and why.
pub type Skipped = (PathBuf, String);

/// Something the pipeline can run: anything that names an image file.
pub trait ImageItem {
    /// The image file.
    fn image_path(&self) -> &Path;
}

impl ImageItem for defectkit_core::data::mvtec::Sample {
    fn image_path(&self) -> &Path {
        &self.path
    }
}

impl ImageItem for PathBuf {
    fn image_path(&self) -> &Path {
        self
    }
}

impl<T: ImageItem + ?Sized> ImageItem for &T {
    fn image_path(&self) -> &Path {
        (**self).image_path()
    }
}

/// A batch as the decoding thread hands it over.
struct Decoded<'a, T> {
    items: Vec<&'a T>,
    input: Vec<f32>,
    skipped: Vec<(&'a T, String)>,
    /// Items in the chunk (decoded or not), for the progress bar.
    len: usize,
}

/// Runs `items` through `model` in batches, calling `on_batch` for each (also for a batch
/// whose images were all skipped, so callers see every item in order). `progress` is
/// advanced by every item, decoded or skipped. Returns all skipped images.
pub fn run_batches<'a, T: ImageItem + Sync>(
    model: &mut OnnxModel,
    items: &'a [T],
    opts: PipelineOptions,
    cancel: &AtomicBool,
    progress: &indicatif::ProgressBar,
    mut on_batch: impl FnMut(Batch<'a, T>),
) -> Result<Vec<Skipped>, PipelineError> {
    let spec = model.metadata.preprocess.clone();
    let per_sample = model.sample_len();
    decode_batches(&spec, per_sample, items, opts, cancel, progress, |batch| {
        let outputs = if batch.items.is_empty() {
            ModelOutputs {
                primary: Vec::new(),
                primary_shape: Vec::new(),
                embedding: Vec::new(),
                features: None,
            }
        } else {
            model.run(&batch.input)?
        };
        on_batch(Batch {
            items: batch.items,
            input: batch.input,
            outputs,
            skipped: batch.skipped,
        });
        Ok(())
    })
}

/// One decoded, preprocessed batch, before any model saw it.
#[derive(Debug)]
pub struct DecodedBatch<'a, T> {
    /// The items whose images were decoded, in order (skipped ones left out).
    pub items: Vec<&'a T>,
    /// The preprocessed input, `[items.len(), C, H, W]` flattened.
    pub input: Vec<f32>,
    /// This batch's images that could not be decoded, in order, with the reason.
    pub skipped: Vec<(&'a T, String)>,
}

/// The loop under [`run_batches`] for callers that run their own session (quantization's
/// calibration runs a graph with extra outputs): decodes `items` with `spec` into batches
/// of `per_sample` values per image and hands each to `on_batch` (also a batch whose images
/// were all skipped). An error from `on_batch` ends the run.
pub fn decode_batches<'a, T: ImageItem + Sync>(
    spec: &PreprocessSpec,
    per_sample: usize,
    items: &'a [T],
    opts: PipelineOptions,
    cancel: &AtomicBool,
    progress: &indicatif::ProgressBar,
    mut on_batch: impl FnMut(DecodedBatch<'a, T>) -> Result<(), RuntimeError>,
) -> Result<Vec<Skipped>, PipelineError> {
    let batch_size = opts.batch_size.max(1);
    std::thread::scope(|scope| {
        let (tx, rx) = sync_channel::<Result<Decoded<'a, T>, DataError>>(PREFETCH);
        scope.spawn(move || {
            for chunk in items.chunks(batch_size) {
                if cancel.load(Ordering::SeqCst) {
                    return;
                }
                let decoded: Vec<Result<Vec<f32>, DataError>> = chunk
                    .par_iter()
                    .map(|item| {
                        let img = load_rgb8(item.image_path())?;
                        let mut out = vec![0.0f32; per_sample];
                        spec.normalize_into(&spec.prepare(&img), &mut out)?;
                        Ok(out)
                    })
                    .collect();
                let mut batch = Decoded {
                    items: Vec::with_capacity(chunk.len()),
                    input: Vec::with_capacity(chunk.len() * per_sample),
                    skipped: Vec::new(),
                    len: chunk.len(),
                };
                for (item, result) in chunk.iter().zip(decoded) {
                    match result {
                        Ok(values) => {
                            batch.input.extend_from_slice(&values);
                            batch.items.push(item);
                        }
                        Err(e) if !opts.strict => batch.skipped.push((item, e.to_string())),
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    }
                }
                // The receiver is gone when the caller stopped (error or cancel).
                if tx.send(Ok(batch)).is_err() {
                    return;
                }
            }
        });
        let mut skipped = Vec::new();
        let mut seen = 0usize;
        for decoded in rx {
            if cancel.load(Ordering::SeqCst) {
                return Err(PipelineError::Interrupted);
            }
            let batch = decoded?;
            for (item, reason) in &batch.skipped {
                let path = item.image_path();
                if opts.warn_skipped {
                    progress
                        .suspend(|| eprintln!("warning: skipping {}: {reason}", path.display()));
                }
                skipped.push((path.to_path_buf(), reason.clone()));
            }
            progress.inc(batch.len as u64);
            seen += batch.len;
            on_batch(DecodedBatch {
                items: batch.items,
                input: batch.input,
                skipped: batch.skipped,
            })?;
        }
        // The decoding thread stops before the end only when cancelled.
        if seen < items.len() {
            return Err(PipelineError::Interrupted);
        }
        Ok(skipped)
    })
}
