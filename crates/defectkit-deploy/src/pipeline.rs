//! The one decode → preprocess → batch → run loop of the deployment side, shared by every
//! verb that runs images through an exported model (`embed` today; `score`, `bench` and
//! quantization's calibration next).
//!
//! Images are decoded and preprocessed in parallel (rayon) with the spec recorded in the
//! model (ARCHITECTURE.md seam 2), then run in batches through the model's one session. `cancel` is
//! polled between batches; an image that cannot be decoded is skipped with a warning, or
//! ends the run when `strict`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;

use defectkit_core::data::image_io::load_rgb8;
use defectkit_core::data::DataError;

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
}

/// One batch that went through the model.
#[derive(Debug)]
pub struct Batch<'a, T> {
    /// The items whose images were decoded, in order (skipped ones left out).
    pub items: Vec<&'a T>,
    /// The preprocessed input, `[items.len(), C, H, W]` flattened.
    pub input: Vec<f32>,
    /// The model's outputs for `input`.
    pub outputs: ModelOutputs,
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

/// Runs `items` through `model` in batches, calling `on_batch` for each. `progress` is
/// advanced by every item, decoded or skipped. Returns the skipped images.
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
    let mut skipped = Vec::new();
    for chunk in items.chunks(opts.batch_size.max(1)) {
        if cancel.load(Ordering::SeqCst) {
            return Err(PipelineError::Interrupted);
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
        let mut input = Vec::with_capacity(chunk.len() * per_sample);
        let mut kept = Vec::with_capacity(chunk.len());
        for (item, result) in chunk.iter().zip(decoded) {
            match result {
                Ok(values) => {
                    input.extend_from_slice(&values);
                    kept.push(item);
                }
                Err(e) if !opts.strict => {
                    let path = item.image_path();
                    eprintln!("warning: skipping {}: {e}", path.display());
                    skipped.push((path.to_path_buf(), e.to_string()));
                }
                Err(e) => return Err(e.into()),
            }
        }
        progress.inc(chunk.len() as u64);
        if kept.is_empty() {
            continue;
        }
        let outputs = model.run(&input)?;
        on_batch(Batch {
            items: kept,
            input,
            outputs,
        });
    }
    Ok(skipped)
}
