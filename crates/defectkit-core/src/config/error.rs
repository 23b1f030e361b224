//! Errors of configuration composition, override parsing, interpolation and validation.

use std::path::PathBuf;

/// Everything that can go wrong turning `conf/` plus overrides into a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// An override on the command line could not be parsed.
    #[error("error parsing override '{input}': {reason}")]
    OverrideParse {
        /// The override as typed.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A config file is not valid YAML or has a malformed defaults list.
    #[error("invalid config file {path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The config directory does not exist.
    #[error("config directory not found: {0} (use --config-dir to point at one)")]
    MissingConfigDir(PathBuf),
    /// Composition failed (unknown option, bad override target, duplicate group…).
    #[error("{0}")]
    Composition(String),
    /// An interpolation could not be resolved.
    #[error("error resolving '{value}' at '{key}': {reason}")]
    Interpolation {
        /// Dotted key of the node holding the interpolation.
        key: String,
        /// The raw value.
        value: String,
        /// What went wrong.
        reason: String,
    },
    /// The composed tree does not match the typed schema (unknown or missing keys, wrong types).
    #[error("invalid configuration at '{path}': {reason}")]
    Schema {
        /// Dotted path of the offending key.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// Writing a run directory failed.
    #[error("cannot write run directory {path}: {source}")]
    RunDir {
        /// The path that failed.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Shorthand for composition errors.
pub(crate) fn composition(msg: impl Into<String>) -> ConfigError {
    ConfigError::Composition(msg.into())
}
