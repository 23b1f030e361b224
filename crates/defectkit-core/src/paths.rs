//! Where defectkit looks for its project files (`conf/`, `.venv/`, `.cache/onnxruntime/`):
//! one ordered list of candidate roots, used by every verb, so a copied binary, a run from
//! another folder and a run from the checkout all find the same things.

use std::path::{Path, PathBuf};

/// The environment variable naming the project root explicitly.
pub const ROOT_ENV: &str = "DEFECTKIT_ROOT";

/// The source tree this binary was built from (the workspace root): the last fallback, so a
/// binary run straight from `target/` finds the checkout's `conf/` and `.cache/`.
pub fn source_root() -> PathBuf {
    // This crate lives at `<root>/crates/defectkit-core`.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// Candidate project roots, in order: `$DEFECTKIT_ROOT` (when set and non-empty), the current
/// directory, the source tree.
pub fn search_roots() -> Vec<PathBuf> {
    let mut roots = Vec::new();
    if let Some(root) = std::env::var_os(ROOT_ENV).filter(|r| !r.is_empty()) {
        roots.push(PathBuf::from(root));
    }
    if let Ok(cwd) = std::env::current_dir() {
        roots.push(cwd);
    }
    roots.push(source_root());
    roots
}

/// `rel` under each of [`search_roots`], in order (existing or not: callers that report
/// where they looked need the full list).
pub fn candidates(rel: impl AsRef<Path>) -> Vec<PathBuf> {
    search_roots()
        .into_iter()
        .map(|root| root.join(rel.as_ref()))
        .collect()
}

/// The first of [`candidates`] that exists.
pub fn find(rel: impl AsRef<Path>) -> Option<PathBuf> {
    candidates(rel).into_iter().find(|p| p.exists())
}

/// The config directory: the first `conf/` folder among the [`search_roots`], else `./conf`
/// (whose absence the config loader then reports).
pub fn config_dir() -> PathBuf {
    candidates("conf")
        .into_iter()
        .find(|p| p.is_dir())
        .unwrap_or_else(|| PathBuf::from("conf"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_source_root_holds_the_workspace_manifest_and_conf() {
        let root = source_root();
        assert!(root.join("Cargo.toml").is_file(), "{}", root.display());
        assert!(
            root.join("conf/config.yaml").is_file(),
            "{}",
            root.display()
        );
        assert_eq!(search_roots().last(), Some(&root));
    }
}
