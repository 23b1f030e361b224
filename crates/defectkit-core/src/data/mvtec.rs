//! The MVTec AD reader: scans a folder tree into an [`Index`] of samples (no decoding).
//!
//! Layout, per class: `<root>/<class>/train/good/*`, `<root>/<class>/test/good/*`,
//! `<root>/<class>/test/<defect>/*` and `<root>/<class>/ground_truth/<defect>/<name>_mask.png`.
//!
//! Splits:
//! - **train** and **val** come only from `train/good`: the validation split is held out of
//!   it per class, with a seeded shuffle, so a defect image can never reach either of them
//!   (a final guard re-checks this before [`Index::scan`] returns);
//! - **test** is `test/good` (no masks) plus every `test/<defect>` with its masks.
//!
//! Leniency: anything that does not fit the layout but can be worked around (a missing
//! ground-truth folder, a missing or orphan mask, a folder such as `train/broken`, stray
//! files) is recorded in [`Index::warnings`] and skipped. With `strict` every such warning
//! is returned as its [`DataError`] instead. Problems that leave nothing sensible to do (a
//! missing root, no categories, an unknown class, no `train/good` or `test/`) are errors in
//! both modes.

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::image_io::is_image_file;
use super::DataError;

/// Name of the folder that holds defect-free images under `train/` and `test/`.
pub const GOOD: &str = "good";

/// Which split a sample belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Training images (defect-free, from `train/good`).
    Train,
    /// Validation images held out of `train/good` (defect-free).
    Val,
    /// Test images: `test/good` and every `test/<defect>`.
    Test,
}

impl Split {
    /// Lower-case name, as used in file names and JSON (`train`, `val`, `test`).
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One image of the data set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    /// The image file (root joined with the relative path; not canonicalised).
    pub path: PathBuf,
    /// The category name (folder name under the root).
    pub class: String,
    /// Position of `class` in [`Index::classes`].
    pub class_index: usize,
    /// The split.
    pub split: Split,
    /// None = good
    pub defect: Option<String>,
    /// The ground-truth mask of a defect image, when one was found (never for good images).
    pub mask: Option<PathBuf>,
}

impl Sample {
    /// Whether the image is defect-free.
    pub fn is_good(&self) -> bool {
        self.defect.is_none()
    }

    /// The image-level label: 0 good, 1 defective.
    pub fn label(&self) -> u8 {
        u8::from(!self.is_good())
    }
}

/// How to scan a data set.
#[derive(Debug, Clone)]
pub struct IndexOptions {
    /// Classes to read, in this order (which defines `class_index`); `None` = every category
    /// folder found under the root, sorted by name.
    pub classes: Option<Vec<String>>,
    /// Fraction of each class's `train/good` held out as validation, in `[0, 1)`. When it is
    /// > 0 and a class has at least 2 train images, at least 1 and at most n−1 are held out.
    pub val_fraction: f64,
    /// Seed of the validation split (combined with the class name, so classes differ).
    pub seed: u64,
    /// Turn every warning into an error.
    pub strict: bool,
}

impl Default for IndexOptions {
    fn default() -> Self {
        Self {
            classes: None,
            val_fraction: 0.2,
            seed: 0,
            strict: false,
        }
    }
}

/// The scanned data set: every sample, in a deterministic order.
#[derive(Debug, Clone, Serialize)]
pub struct Index {
    /// The dataset root as given.
    pub root: PathBuf,
    /// The classes read; `Sample::class_index` indexes this.
    pub classes: Vec<String>,
    /// Samples ordered by class, split (train, val, test), defect (good first, then defect
    /// names sorted) and file name.
    pub samples: Vec<Sample>,
    /// Problems that were worked around (empty in strict mode, where they are errors).
    pub warnings: Vec<String>,
}

/// Collects warnings, or fails on the first one in strict mode.
struct Warn {
    strict: bool,
    list: Vec<String>,
}

impl Warn {
    fn push(&mut self, err: DataError) -> Result<(), DataError> {
        if self.strict {
            Err(err)
        } else {
            self.list.push(err.to_string());
            Ok(())
        }
    }
}

/// One directory entry (hidden entries and `__MACOSX` are never listed).
struct Entry {
    name: OsString,
    path: PathBuf,
    is_dir: bool,
}

/// List `dir`, sorted by name, skipping hidden entries and macOS archive debris.
fn list_dir(dir: &Path) -> Result<Vec<Entry>, DataError> {
    let rd = fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?;
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| DataError::io(dir, e))?;
        let name = entry.file_name();
        let s = name.to_string_lossy();
        if s.starts_with('.') || s == "__MACOSX" {
            continue;
        }
        let path = entry.path();
        // `Path::is_dir` follows symlinks, so linked folders work.
        let is_dir = path.is_dir();
        out.push(Entry { name, path, is_dir });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Image files directly in `dir` (sorted by name); sub-folders are reported as ignored.
fn list_images(dir: &Path, warn: &mut Warn) -> Result<Vec<PathBuf>, DataError> {
    let mut images = Vec::new();
    for e in list_dir(dir)? {
        if e.is_dir {
            let n = count_images_deep(&e.path);
            if n > 0 {
                warn.push(DataError::Ignored {
                    path: e.path,
                    reason: format!(
                        "sub-folder with {n} image(s) is ignored (images must sit directly in {})",
                        dir.display()
                    ),
                })?;
            }
        } else if is_image_file(&e.path) {
            if e.name.to_str().is_none() {
                // Read it, but say that reports (CSV, HDF5, HTML) show it by its lossy name.
                warn.list.push(format!(
                    "{}: file name is not valid UTF-8; the image is used, and reports show it \
                     as {}",
                    e.path.to_string_lossy(),
                    e.name.to_string_lossy()
                ));
            }
            images.push(e.path);
        }
    }
    Ok(images)
}

/// Number of image files below `dir`, at most 8 levels deep (best effort: unreadable
/// folders count 0; the depth limit keeps a symlink loop from recursing forever).
fn count_images_deep(dir: &Path) -> usize {
    fn walk(dir: &Path, depth: u32) -> usize {
        let Ok(entries) = list_dir(dir) else { return 0 };
        entries
            .iter()
            .map(|e| {
                if !e.is_dir {
                    usize::from(is_image_file(&e.path))
                } else if depth < 8 {
                    walk(&e.path, depth + 1)
                } else {
                    0
                }
            })
            .sum()
    }
    walk(dir, 0)
}

/// Whether `dir` looks like one category (has `train/`, or `test/` with `ground_truth/`).
fn looks_like_category(dir: &Path) -> bool {
    dir.join("train").is_dir() || (dir.join("test").is_dir() && dir.join("ground_truth").is_dir())
}

/// Whether `dir` is a category folder candidate (has any of train/, test/, ground_truth/).
fn is_category_dir(dir: &Path) -> bool {
    ["train", "test", "ground_truth"]
        .iter()
        .any(|s| dir.join(s).is_dir())
}

/// Explain an empty root: what it looks like instead and what to do.
fn no_classes_hint(root: &Path, entries: &[Entry]) -> String {
    let dirs: Vec<&Entry> = entries.iter().filter(|e| e.is_dir).collect();
    if dirs.iter().any(|e| e.name == GOOD) {
        let up = root
            .parent()
            .and_then(Path::parent)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "the dataset root".into());
        return format!(
            "it holds good/, so it looks like a category's train/ or test/ folder; point --root \
             at the dataset root ({up})"
        );
    }
    for d in &dirs {
        if let Ok(sub) = list_dir(&d.path) {
            if sub.iter().any(|s| s.is_dir && is_category_dir(&s.path)) {
                return format!(
                    "it looks like the folder above a dataset root; did you mean --root {}?",
                    d.path.display()
                );
            }
        }
    }
    if entries.is_empty() {
        "the folder is empty: download and extract MVTec AD into it, or generate the synthetic set"
            .into()
    } else {
        "a category folder holds train/good, test/ and ground_truth/; check that --root is the \
         folder that holds bottle/, cable/, …"
            .into()
    }
}

/// A stable 64-bit FNV-1a hash, so a class's split does not depend on the std hasher.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Fisher–Yates shuffle driven by ChaCha8 (seeded from `seed` and the class name). Uses
/// only `next_u64`, whose stream rand_chacha keeps stable, so a split does not change with
/// a `rand` upgrade.
fn shuffle_for_class<T>(items: &mut [T], seed: u64, class: &str) {
    let mixed = seed ^ fnv1a(class.as_bytes()).rotate_left(17);
    let mut rng = ChaCha8Rng::seed_from_u64(mixed);
    for i in (1..items.len()).rev() {
        // Multiply-shift maps a u64 onto 0..=i; the bias is below 2^-40 for any real n.
        let j = ((u128::from(rng.next_u64()) * (i as u128 + 1)) >> 64) as usize;
        items.swap(i, j);
    }
}

/// How many of `n` train images go to validation.
pub fn val_count(n: usize, val_fraction: f64) -> usize {
    if val_fraction <= 0.0 || n < 2 {
        return 0;
    }
    let k = (n as f64 * val_fraction).round() as usize;
    k.clamp(1, n - 1)
}

/// Key a mask file is matched by: its stem without a trailing `_mask`.
fn mask_key(path: &Path) -> Option<String> {
    let stem = path.file_stem()?.to_str()?;
    Some(stem.strip_suffix("_mask").unwrap_or(stem).to_string())
}

fn file_stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

impl Index {
    /// Scan the folder tree (no image decoding). Deterministic order: class, split, defect, file name.
    ///
    /// Errors (both modes): root missing or not a folder, a root that is a single category
    /// or holds no categories, an unknown class, a class without `train/good` (or with no
    /// images in it) or without `test/`, invalid options, unreadable folders. Warnings
    /// (errors with `strict`): see the module docs.
    pub fn scan(root: &Path, opts: &IndexOptions) -> Result<Index, DataError> {
        if !(opts.val_fraction.is_finite() && (0.0..1.0).contains(&opts.val_fraction)) {
            return Err(DataError::InvalidOptions {
                reason: format!("val_fraction must be in [0, 1), got {}", opts.val_fraction),
            });
        }
        if !root.exists() {
            return Err(DataError::RootMissing {
                path: root.to_path_buf(),
            });
        }
        if !root.is_dir() {
            return Err(DataError::RootNotDir {
                path: root.to_path_buf(),
            });
        }
        if looks_like_category(root) {
            let parent = match root.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from(".."),
            };
            return Err(DataError::RootIsCategory {
                path: root.to_path_buf(),
                parent,
            });
        }
        let mut warn = Warn {
            strict: opts.strict,
            list: Vec::new(),
        };
        let entries = list_dir(root)?;
        let mut available = Vec::new();
        let mut non_category = Vec::new();
        for e in entries.iter().filter(|e| e.is_dir) {
            match e.name.to_str() {
                Some(name) if is_category_dir(&e.path) => available.push(name.to_string()),
                Some(_) => non_category.push(e.path.clone()),
                None => warn.push(DataError::Ignored {
                    path: e.path.clone(),
                    reason: "folder name is not valid UTF-8; rename it to use it as a class".into(),
                })?,
            }
        }

        let classes: Vec<String> = match &opts.classes {
            None => {
                if available.is_empty() {
                    return Err(DataError::NoClasses {
                        path: root.to_path_buf(),
                        hint: no_classes_hint(root, &entries),
                    });
                }
                for path in non_category {
                    warn.push(DataError::Ignored {
                        path,
                        reason: "not a category (no train/, test/ or ground_truth/ inside); \
                                 ignored"
                            .into(),
                    })?;
                }
                available.clone()
            }
            Some(list) => {
                if list.is_empty() {
                    return Err(DataError::InvalidOptions {
                        reason: "the class selection is empty; select at least one class, or \
                                 none to use every class"
                            .into(),
                    });
                }
                let mut seen = HashSet::new();
                let mut out = Vec::new();
                for class in list {
                    let dir = root.join(class);
                    let plain = !class.is_empty()
                        && !class.starts_with('.')
                        && Path::new(class).components().count() == 1;
                    if !(plain && dir.is_dir()) {
                        return Err(DataError::UnknownClass {
                            class: class.clone(),
                            root: root.to_path_buf(),
                            available: available.clone(),
                        });
                    }
                    if seen.insert(class.clone()) {
                        out.push(class.clone());
                    } else {
                        warn.push(DataError::InvalidOptions {
                            reason: format!("class {class:?} is selected twice; using it once"),
                        })?;
                    }
                }
                out
            }
        };

        let mut samples = Vec::new();
        for (class_index, class) in classes.iter().enumerate() {
            scan_class(root, class, class_index, opts, &mut warn, &mut samples)?;
        }

        // Guard: train/val samples must be files directly in <root>/<class>/train/good.
        for s in &samples {
            if s.split != Split::Test {
                let expected = root.join(&s.class).join("train").join(GOOD);
                if s.defect.is_some() || s.mask.is_some() || s.path.parent() != Some(&expected) {
                    return Err(DataError::DefectInTrain {
                        path: s.path.clone(),
                        split: s.split.to_string(),
                    });
                }
            }
        }

        Ok(Index {
            root: root.to_path_buf(),
            classes,
            samples,
            warnings: warn.list,
        })
    }

    /// The samples of one split, in index order.
    pub fn split(&self, split: Split) -> impl Iterator<Item = &Sample> {
        self.samples.iter().filter(move |s| s.split == split)
    }

    /// Number of samples in one split.
    pub fn count(&self, split: Split) -> usize {
        self.split(split).count()
    }

    /// The samples of one class (by name), in index order.
    pub fn class_samples<'a>(&'a self, class: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| s.class == class)
    }

    /// Drop samples whose image is in `paths` and clear masks that are in `paths` (e.g. the
    /// corrupt files found by [`crate::data::check::check`]). Returns how many samples
    /// were removed.
    pub fn exclude(&mut self, paths: &[PathBuf]) -> usize {
        let bad: HashSet<&Path> = paths.iter().map(PathBuf::as_path).collect();
        let before = self.samples.len();
        self.samples.retain(|s| !bad.contains(s.path.as_path()));
        for s in &mut self.samples {
            if s.mask.as_deref().is_some_and(|m| bad.contains(m)) {
                s.mask = None;
            }
        }
        before - self.samples.len()
    }
}

/// Scan one class and append its samples in order (train, val, test).
fn scan_class(
    root: &Path,
    class: &str,
    class_index: usize,
    opts: &IndexOptions,
    warn: &mut Warn,
    samples: &mut Vec<Sample>,
) -> Result<(), DataError> {
    let class_dir = root.join(class);
    let train_dir = class_dir.join("train");
    let train_good = train_dir.join(GOOD);
    let test_dir = class_dir.join("test");
    let gt_dir = class_dir.join("ground_truth");
    if !train_good.is_dir() {
        return Err(DataError::MissingTrainGood {
            class: class.into(),
            path: train_good,
        });
    }
    if !test_dir.is_dir() {
        return Err(DataError::MissingTest {
            class: class.into(),
            path: test_dir,
        });
    }
    let sample =
        |path: PathBuf, split: Split, defect: Option<String>, mask: Option<PathBuf>| Sample {
            path,
            class: class.to_string(),
            class_index,
            split,
            defect,
            mask,
        };

    // --- train/: only train/good is ever used; anything else is reported.
    let mut loose = 0;
    for e in list_dir(&train_dir)? {
        if e.is_dir {
            if e.name != GOOD {
                warn.push(DataError::NonGoodTrainDir {
                    images: count_images_deep(&e.path),
                    path: e.path,
                })?;
            }
        } else if is_image_file(&e.path) {
            loose += 1;
        }
    }
    if loose > 0 {
        warn.push(DataError::NonGoodTrainDir {
            path: train_dir.clone(),
            images: loose,
        })?;
    }
    let mut train = list_images(&train_good, warn)?;
    if train.is_empty() {
        return Err(DataError::EmptyTrainGood {
            class: class.into(),
            path: train_good,
        });
    }
    if opts.val_fraction > 0.0 && train.len() < 2 {
        warn.push(DataError::Ignored {
            path: train_good.clone(),
            reason: "only 1 training image: no validation image is held out for this class".into(),
        })?;
    }
    let n_val = val_count(train.len(), opts.val_fraction);
    shuffle_for_class(&mut train, opts.seed, class);
    let mut val = train.split_off(train.len() - n_val);
    train.sort();
    val.sort();
    samples.extend(
        train
            .into_iter()
            .map(|p| sample(p, Split::Train, None, None)),
    );
    samples.extend(val.into_iter().map(|p| sample(p, Split::Val, None, None)));

    // --- test/: good first, then defects by name.
    let mut defect_dirs: Vec<(String, PathBuf)> = Vec::new();
    let mut test_good = Vec::new();
    let mut loose = 0;
    for e in list_dir(&test_dir)? {
        if !e.is_dir {
            loose += usize::from(is_image_file(&e.path));
        } else if e.name == GOOD {
            test_good = list_images(&e.path, warn)?;
        } else if let Some(name) = e.name.to_str() {
            defect_dirs.push((name.to_string(), e.path));
        } else {
            warn.push(DataError::Ignored {
                path: e.path,
                reason: "folder name is not valid UTF-8; rename it to use it as a defect type"
                    .into(),
            })?;
        }
    }
    if loose > 0 {
        warn.push(DataError::Ignored {
            path: test_dir.clone(),
            reason: format!(
                "{loose} image file(s) directly under test/ are ignored (their label is \
                 unknown); move them to test/good or test/<defect>"
            ),
        })?;
    }
    samples.extend(
        test_good
            .into_iter()
            .map(|p| sample(p, Split::Test, None, None)),
    );

    let gt_exists = gt_dir.is_dir();
    let mut defect_images: Vec<(String, PathBuf, Vec<PathBuf>)> = Vec::new();
    for (defect, dir) in defect_dirs {
        let images = list_images(&dir, warn)?;
        defect_images.push((defect, dir, images));
    }
    let total_defect: usize = defect_images.iter().map(|d| d.2.len()).sum();
    if !gt_exists && total_defect > 0 {
        warn.push(DataError::MissingGroundTruth {
            class: class.into(),
            path: gt_dir.clone(),
            images: total_defect,
        })?;
    }

    let mut matched_gt_dirs = HashSet::new();
    for (defect, dir, images) in defect_images {
        let gt = gt_dir.join(&defect);
        let masks: Option<BTreeMap<String, PathBuf>> = if gt.is_dir() {
            matched_gt_dirs.insert(defect.clone());
            let mut map = BTreeMap::new();
            for m in list_images(&gt, warn)? {
                match mask_key(&m) {
                    Some(key) if !map.contains_key(&key) => {
                        map.insert(key, m);
                    }
                    _ => warn.push(DataError::Ignored {
                        path: m,
                        reason: "second mask for the same image (or unreadable name); ignored"
                            .into(),
                    })?,
                }
            }
            Some(map)
        } else {
            if gt_exists && !images.is_empty() {
                warn.push(DataError::MissingGroundTruth {
                    class: class.into(),
                    path: gt.clone(),
                    images: images.len(),
                })?;
            }
            None
        };
        let mut used = HashSet::new();
        for img in images {
            let key = file_stem(&img);
            let mask = match &masks {
                Some(map) => match map.get(&key) {
                    Some(m) => {
                        used.insert(key);
                        Some(m.clone())
                    }
                    None => {
                        warn.push(DataError::MissingMask {
                            expected: gt.join(format!("{key}_mask.png")),
                            image: img.clone(),
                        })?;
                        None
                    }
                },
                None => None,
            };
            samples.push(sample(img, Split::Test, Some(defect.clone()), mask));
        }
        if let Some(map) = masks {
            for (key, m) in map {
                if !used.contains(&key) {
                    let ext = m
                        .extension()
                        .map(|e| e.to_string_lossy().into_owned())
                        .unwrap_or_else(|| "png".into());
                    warn.push(DataError::OrphanMask {
                        expected: dir.join(format!("{key}.{ext}")),
                        path: m,
                    })?;
                }
            }
        }
    }

    // Ground-truth folders without a matching test/<defect>.
    if gt_exists {
        for e in list_dir(&gt_dir)? {
            let matched = e.name.to_str().is_some_and(|n| matched_gt_dirs.contains(n));
            if e.is_dir && !matched {
                let n = count_images_deep(&e.path);
                if n > 0 {
                    warn.push(DataError::Ignored {
                        path: e.path,
                        reason: format!(
                            "{n} mask(s) with no matching test/<defect> folder are ignored"
                        ),
                    })?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn val_count_rules() {
        assert_eq!(val_count(10, 0.0), 0);
        assert_eq!(val_count(1, 0.5), 0);
        assert_eq!(val_count(2, 0.01), 1);
        assert_eq!(val_count(10, 0.2), 2);
        assert_eq!(val_count(10, 0.99), 9);
    }

    #[test]
    fn shuffle_is_stable_and_seeded() {
        let base: Vec<u32> = (0..50).collect();
        let mut a = base.clone();
        let mut b = base.clone();
        let mut c = base.clone();
        let mut d = base.clone();
        shuffle_for_class(&mut a, 1, "bottle");
        shuffle_for_class(&mut b, 1, "bottle");
        shuffle_for_class(&mut c, 2, "bottle");
        shuffle_for_class(&mut d, 1, "cable");
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
        a.sort();
        assert_eq!(a, base);
    }

    #[test]
    fn labels() {
        let mut s = Sample {
            path: "x.png".into(),
            class: "c".into(),
            class_index: 0,
            split: Split::Test,
            defect: None,
            mask: None,
        };
        assert!(s.is_good());
        assert_eq!(s.label(), 0);
        s.defect = Some("crack".into());
        assert_eq!(s.label(), 1);
        assert_eq!(serde_json::to_string(&Split::Val).unwrap(), "\"val\"");
    }
}
