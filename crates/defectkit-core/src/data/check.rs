//! `defectkit data check`: scan a data set, decode every image and mask, and report.
//!
//! [`check`] runs [`Index::scan`] (so the layout rules and strictness are the reader's),
//! then decodes every image and every mask in parallel (rayon) to find corrupt files and
//! to collect the image sizes and channel layouts present, and checks that each mask has
//! its image's size. Corrupt files and size mismatches are warnings (the corrupt samples
//! are left out of the counts and of [`CheckReport::index`]); with `strict` they are
//! errors. [`CheckReport::render_table`] prints a per-class table, then the warnings, then
//! totals; the report also serialises to JSON for `--json`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rayon::prelude::*;
use serde::Serialize;

use super::image_io::{decode, layout_name};
use super::mvtec::{Index, IndexOptions, Split};
use super::DataError;

/// What one category holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ClassReport {
    /// The category name.
    pub class: String,
    /// Readable training images (train/good minus validation).
    pub train: usize,
    /// Readable validation images (held out of train/good).
    pub val: usize,
    /// Readable defect-free test images.
    pub test_good: usize,
    /// Readable defective test images per defect type (sorted by name).
    pub defects: BTreeMap<String, usize>,
    /// Defect images whose mask was found and decodes.
    pub masks_found: usize,
    /// Defect images that should have a mask (readable defective test images).
    pub masks_expected: usize,
    /// Image sizes seen, `WxH`, sorted by width then height.
    pub sizes: Vec<String>,
    /// Channel layouts seen (`L8`, `RGB8`, `RGBA8`, `L16`, …), sorted.
    pub layouts: Vec<String>,
    /// Corrupt images and masks of this class.
    pub corrupt: usize,
}

impl ClassReport {
    /// Number of readable defective test images.
    pub fn test_defective(&self) -> usize {
        self.defects.values().sum()
    }
}

/// Totals over all classes.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Totals {
    /// Number of classes.
    pub classes: usize,
    /// Training images.
    pub train: usize,
    /// Validation images.
    pub val: usize,
    /// Defect-free test images.
    pub test_good: usize,
    /// Defective test images.
    pub test_defective: usize,
    /// Masks found.
    pub masks_found: usize,
    /// Masks expected.
    pub masks_expected: usize,
    /// Corrupt files (images and masks).
    pub corrupt: usize,
    /// Warnings.
    pub warnings: usize,
}

/// The result of [`check`].
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// The dataset root.
    pub root: PathBuf,
    /// Whether the check ran in strict mode.
    pub strict: bool,
    /// One row per class, in index order.
    pub classes: Vec<ClassReport>,
    /// Totals over all classes.
    pub totals: Totals,
    warnings: Vec<String>,
    corrupt: Vec<PathBuf>,
    #[serde(skip)]
    index: Index,
}

/// What decoding one file found.
struct Decoded {
    size: (u32, u32),
    layout: String,
}

/// Scan `root`, decode every image and mask in parallel, and report. With `progress`, a
/// progress bar is drawn on stderr when stderr is a terminal. In strict mode, the first
/// scan warning, corrupt file (in index order) or mask size mismatch is returned as an
/// error.
pub fn check(root: &Path, opts: &IndexOptions, progress: bool) -> Result<CheckReport, DataError> {
    let mut index = Index::scan(root, opts)?;
    let mut warnings = index.warnings.clone();

    // Every file to decode, in index order: each sample's image, then its mask.
    let mut files: Vec<&Path> = Vec::new();
    for s in &index.samples {
        files.push(&s.path);
        if let Some(m) = &s.mask {
            files.push(m);
        }
    }
    let bar = if progress && std::io::stderr().is_terminal() {
        let bar =
            ProgressBar::with_draw_target(Some(files.len() as u64), ProgressDrawTarget::stderr());
        if let Ok(style) =
            ProgressStyle::with_template("checking {bar:40} {pos}/{len} files ({eta} left)")
        {
            bar.set_style(style);
        }
        bar
    } else {
        ProgressBar::hidden()
    };
    let results: Vec<Result<Decoded, DataError>> = files
        .par_iter()
        .map(|p| {
            let r = decode(p).map(|img| Decoded {
                size: (img.width(), img.height()),
                layout: layout_name(img.color()),
            });
            bar.inc(1);
            r
        })
        .collect();
    bar.finish_and_clear();

    let mut corrupt: Vec<PathBuf> = Vec::new();
    for (path, r) in files.iter().zip(&results) {
        if let Err(e) = r {
            if corrupt.iter().any(|c| c == path) {
                continue;
            }
            if opts.strict {
                // Rebuild the error: `DataError` is not Clone.
                return Err(DataError::CorruptImage {
                    path: path.to_path_buf(),
                    reason: error_reason(e),
                });
            }
            warnings.push(format!("{e} (skipped)"));
            corrupt.push(path.to_path_buf());
        }
    }
    let decoded: HashMap<&Path, Result<Decoded, DataError>> =
        files.iter().copied().zip(results).collect();

    let mut classes: Vec<ClassReport> = index
        .classes
        .iter()
        .map(|c| ClassReport {
            class: c.clone(),
            ..ClassReport::default()
        })
        .collect();
    let mut sizes: Vec<BTreeSet<(u32, u32)>> = vec![BTreeSet::new(); classes.len()];
    let mut layouts: Vec<BTreeSet<String>> = vec![BTreeSet::new(); classes.len()];
    for s in &index.samples {
        let row = &mut classes[s.class_index];
        let Some(Ok(img)) = decoded.get(s.path.as_path()) else {
            row.corrupt += 1;
            continue;
        };
        sizes[s.class_index].insert(img.size);
        layouts[s.class_index].insert(img.layout.clone());
        match (&s.split, &s.defect) {
            (Split::Train, _) => row.train += 1,
            (Split::Val, _) => row.val += 1,
            (Split::Test, None) => row.test_good += 1,
            (Split::Test, Some(d)) => {
                *row.defects.entry(d.clone()).or_default() += 1;
                row.masks_expected += 1;
            }
        }
        if let Some(m) = &s.mask {
            match decoded.get(m.as_path()) {
                Some(Ok(mask)) => {
                    row.masks_found += 1;
                    if mask.size != img.size {
                        let err = DataError::MaskSizeMismatch {
                            image: s.path.clone(),
                            mask: m.clone(),
                            image_size: img.size,
                            mask_size: mask.size,
                        };
                        if opts.strict {
                            return Err(err);
                        }
                        warnings.push(err.to_string());
                    }
                }
                _ => row.corrupt += 1,
            }
        }
    }
    for (i, row) in classes.iter_mut().enumerate() {
        row.sizes = sizes[i].iter().map(|(w, h)| format!("{w}x{h}")).collect();
        row.layouts = layouts[i].iter().cloned().collect();
    }
    index.exclude(&corrupt);
    index.warnings = warnings.clone();

    let totals = Totals {
        classes: classes.len(),
        train: classes.iter().map(|c| c.train).sum(),
        val: classes.iter().map(|c| c.val).sum(),
        test_good: classes.iter().map(|c| c.test_good).sum(),
        test_defective: classes.iter().map(ClassReport::test_defective).sum(),
        masks_found: classes.iter().map(|c| c.masks_found).sum(),
        masks_expected: classes.iter().map(|c| c.masks_expected).sum(),
        corrupt: corrupt.len(),
        warnings: warnings.len(),
    };
    Ok(CheckReport {
        root: root.to_path_buf(),
        strict: opts.strict,
        classes,
        totals,
        warnings,
        corrupt,
        index,
    })
}

/// The decoder's reason inside a decode error (or the whole message for I/O errors).
fn error_reason(e: &DataError) -> String {
    match e {
        DataError::CorruptImage { reason, .. } => reason.clone(),
        DataError::Io { source, .. } => source.to_string(),
        other => other.to_string(),
    }
}

impl CheckReport {
    /// The per-class table, then the warnings, then the totals, as printed by
    /// `defectkit data check`.
    pub fn render_table(&self) -> String {
        let header = [
            "class",
            "train",
            "val",
            "test good",
            "test defect",
            "masks",
            "corrupt",
            "sizes",
            "layouts",
            "defect types",
        ];
        let mut rows: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
        for c in &self.classes {
            rows.push(vec![
                c.class.clone(),
                c.train.to_string(),
                c.val.to_string(),
                c.test_good.to_string(),
                c.test_defective().to_string(),
                format!("{}/{}", c.masks_found, c.masks_expected),
                c.corrupt.to_string(),
                join_or_dash(&c.sizes),
                join_or_dash(&c.layouts),
                if c.defects.is_empty() {
                    "-".to_string()
                } else {
                    c.defects
                        .iter()
                        .map(|(d, n)| format!("{d} {n}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            ]);
        }
        let t = &self.totals;
        rows.push(vec![
            "total".into(),
            t.train.to_string(),
            t.val.to_string(),
            t.test_good.to_string(),
            t.test_defective.to_string(),
            format!("{}/{}", t.masks_found, t.masks_expected),
            t.corrupt.to_string(),
            String::new(),
            String::new(),
            String::new(),
        ]);
        let ncol = header.len();
        let widths: Vec<usize> = (0..ncol)
            .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
            .collect();
        let mut out = format!("dataset root: {}\n\n", self.root.display());
        for (ri, r) in rows.iter().enumerate() {
            let mut line = String::new();
            for (i, cell) in r.iter().enumerate() {
                let pad = widths[i].saturating_sub(cell.chars().count());
                // Text columns left-aligned, counts right-aligned.
                if i == 0 || i >= 7 {
                    line.push_str(cell);
                    if i + 1 < ncol {
                        line.push_str(&" ".repeat(pad));
                    }
                } else {
                    line.push_str(&" ".repeat(pad));
                    line.push_str(cell);
                }
                if i + 1 < ncol {
                    line.push_str("  ");
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
            if ri == 0 || ri + 2 == rows.len() {
                let total: usize = widths.iter().sum::<usize>() + 2 * (ncol - 1);
                out.push_str(&"-".repeat(total.min(120)));
                out.push('\n');
            }
        }
        if self.warnings.is_empty() {
            out.push_str("\nno warnings\n");
        } else {
            let _ = writeln!(out, "\nwarnings ({}):", self.warnings.len());
            for w in &self.warnings {
                let _ = writeln!(out, "  - {w}");
            }
        }
        let _ = writeln!(
            out,
            "\ntotals: {} classes, {} train, {} val, {} test good, {} test defective, masks \
             {}/{}, {} corrupt, {} warnings",
            t.classes,
            t.train,
            t.val,
            t.test_good,
            t.test_defective,
            t.masks_found,
            t.masks_expected,
            t.corrupt,
            t.warnings
        );
        out
    }

    /// Every warning: the scan's, then corrupt files, then mask size mismatches.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Corrupt images and masks, in index order (they were skipped).
    pub fn corrupt(&self) -> &[PathBuf] {
        &self.corrupt
    }

    /// The scanned index without the samples whose image is corrupt (and without masks
    /// that are corrupt): safe to train and evaluate on.
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// Take the cleaned index (see [`Self::index`]).
    pub fn into_index(self) -> Index {
        self.index
    }
}

fn join_or_dash(items: &[String]) -> String {
    if items.is_empty() {
        "-".into()
    } else {
        items.join(",")
    }
}
