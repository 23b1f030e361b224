//! Errors of the data layer.

use std::path::PathBuf;

/// Everything that can go wrong reading a data set.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// An I/O error on a named path.
    #[error("{path}: {source}")]
    Io {
        /// The path that failed.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}
