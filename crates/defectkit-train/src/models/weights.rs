//! Loading PyTorch-convention weights (`.pth`/`.pt` pickles, `.safetensors`) into modules.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::store::{
    ApplyResult, ModuleSnapshot, PyTorchToBurnAdapter, PytorchStore, PytorchStoreError,
    SafetensorsStore, SafetensorsStoreError,
};

/// Errors from [`load_torch_weights`] and the model loaders built on it.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    /// The file extension is neither `.pth`/`.pt` nor `.safetensors`.
    #[error("unsupported weights file {0}: expected .pth, .pt or .safetensors")]
    UnsupportedFormat(PathBuf),
    /// The file does not exist.
    #[error("weights file {0} does not exist")]
    NotFound(PathBuf),
    /// Reading or applying a PyTorch pickle failed (corrupt file, shape mismatch…).
    #[error("cannot load PyTorch weights from {path}: {source}")]
    Pytorch {
        /// The file.
        path: PathBuf,
        /// The store error.
        source: PytorchStoreError,
    },
    /// Reading or applying a SafeTensors file failed (corrupt file, shape mismatch…).
    #[error("cannot load SafeTensors weights from {path}: {source}")]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// The store error.
        source: SafetensorsStoreError,
    },
    /// Tensors the module needs were not in the file.
    #[error("weights file lacks tensors: {}", .0.join(", "))]
    Missing(Vec<String>),
}

/// Loads a PyTorch-convention checkpoint into `module`, in place.
///
/// `.pth`/`.pt` go through `PytorchStore`, `.safetensors` through `SafetensorsStore` with
/// `PyTorchToBurnAdapter` (BatchNorm `weight`/`bias` → `gamma`/`beta`, Linear weight
/// transposed). `remaps` are `(regex, replacement)` pairs applied to the file's keys before
/// matching (`$1` refers to capture groups). `only`, a regex on the module's (remapped) paths,
/// restricts loading to the matching tensors; the others are listed in
/// [`ApplyResult::skipped`]. With `allow_partial`, module tensors absent from the file keep
/// their values and are listed in [`ApplyResult::missing`]; file tensors the module lacks (e.g.
/// `num_batches_tracked`) are always ignored and listed in `unused`. Shape mismatches and
/// unreadable or truncated files are errors, never panics.
pub fn load_torch_weights<M: Module>(
    module: &mut M,
    path: &Path,
    remaps: &[(&str, &str)],
    only: Option<&str>,
    allow_partial: bool,
) -> Result<ApplyResult, WeightsError> {
    if !path.is_file() {
        return Err(WeightsError::NotFound(path.to_path_buf()));
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("pth" | "pt") => {
            let mut store = PytorchStore::from_file(path).allow_partial(allow_partial);
            for (from, to) in remaps {
                store = store.with_key_remapping(from, *to);
            }
            if let Some(pattern) = only {
                store = store.with_regex(pattern);
            }
            module
                .load_from(&mut store)
                .map_err(|source| WeightsError::Pytorch {
                    path: path.to_path_buf(),
                    source,
                })
        }
        Some("safetensors") => {
            let mut store = SafetensorsStore::from_file(path)
                .with_from_adapter(PyTorchToBurnAdapter)
                .allow_partial(allow_partial);
            for (from, to) in remaps {
                store = store.with_key_remapping(from, *to);
            }
            if let Some(pattern) = only {
                store = store.with_regex(pattern);
            }
            module
                .load_from(&mut store)
                .map_err(|source| WeightsError::Safetensors {
                    path: path.to_path_buf(),
                    source,
                })
        }
        _ => Err(WeightsError::UnsupportedFormat(path.to_path_buf())),
    }
}
