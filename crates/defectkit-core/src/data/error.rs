//! Errors of the data layer.
//!
//! Every variant names the path it is about and, where there is one, says what to do. The
//! same variants serve as *warnings*: in lenient mode the data layer records
//! `err.to_string()` in a warnings list and carries on; in strict mode (`--strict`) it
//! returns the very same error. So a warning's text and its strict-mode error read alike.

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

    /// The dataset root does not exist.
    #[error(
        "dataset root {path} does not exist; download and extract MVTec AD there (the layout \
         is <root>/<class>/train/good/…), generate the synthetic set, or pass --root with the \
         right folder"
    )]
    RootMissing {
        /// The root that was asked for.
        path: PathBuf,
    },

    /// The dataset root is a file, not a directory.
    #[error("dataset root {path} is not a directory; pass --root with the folder that holds the category folders")]
    RootNotDir {
        /// The root that was asked for.
        path: PathBuf,
    },

    /// The root is itself one category (it holds `train/`): the user pointed one level too deep.
    #[error(
        "{path} looks like a single category (it holds train/ or test/ + ground_truth/); point \
         --root at its parent {parent} (and select this class with data.classes)"
    )]
    RootIsCategory {
        /// The root that was asked for.
        path: PathBuf,
        /// Its parent, which is probably the dataset root.
        parent: PathBuf,
    },

    /// The root exists but holds no category folders.
    #[error("{path} holds no category folders (expected <root>/<class>/train/good/…); {hint}")]
    NoClasses {
        /// The root that was asked for.
        path: PathBuf,
        /// What the folder looks like instead and what to do.
        hint: String,
    },

    /// A requested class has no folder under the root.
    #[error("class {class:?} not found under {root}; available classes: {}", list_or_none(.available))]
    UnknownClass {
        /// The class that was asked for.
        class: String,
        /// The dataset root.
        root: PathBuf,
        /// The category folders that do exist (sorted).
        available: Vec<String>,
    },

    /// A class folder has no `train/good`.
    #[error("class {class:?} has no {path} folder; every category needs train/good with defect-free images")]
    MissingTrainGood {
        /// The class.
        class: String,
        /// The expected `<root>/<class>/train/good`.
        path: PathBuf,
    },

    /// `train/good` exists but holds no image files.
    #[error(
        "{path} holds no image files (accepted: png, jpg, jpeg, bmp, tif, tiff); class {class:?} \
         cannot be trained: add images or drop the class from the selection"
    )]
    EmptyTrainGood {
        /// The class.
        class: String,
        /// The `<root>/<class>/train/good` folder.
        path: PathBuf,
    },

    /// A class folder has no `test/`.
    #[error("class {class:?} has no {path} folder; every category needs test/good and test/<defect> folders")]
    MissingTest {
        /// The class.
        class: String,
        /// The expected `<root>/<class>/test`.
        path: PathBuf,
    },

    /// The options are invalid (e.g. `val_fraction` outside `[0, 1)`).
    #[error("invalid data options: {reason}")]
    InvalidOptions {
        /// What is wrong.
        reason: String,
    },

    /// A `train/` sub-folder other than `good` (or loose files in `train/`). Its images are
    /// never used: defect images must not reach the train or validation splits.
    #[error(
        "{path}: {images} image(s) under train/ outside train/good are ignored (only train/good \
         is used for training and validation, so defect images never reach them); move them to \
         test/<defect> or delete them"
    )]
    NonGoodTrainDir {
        /// The offending folder (or `train/` itself for loose files).
        path: PathBuf,
        /// How many image files it holds.
        images: usize,
    },

    /// A defect folder `test/<defect>` (or a whole class) has no ground-truth folder.
    #[error(
        "{path} is missing: the {images} defect image(s) it should annotate have no masks \
         (pixel-level metrics skip them; fatal with --strict); add the masks there"
    )]
    MissingGroundTruth {
        /// The class.
        class: String,
        /// The expected `<root>/<class>/ground_truth/<defect>` (or `ground_truth`).
        path: PathBuf,
        /// How many defect images are left without masks.
        images: usize,
    },

    /// A defect image has no mask in its ground-truth folder.
    #[error("{image} has no mask (expected {expected}); its pixel-level metrics are skipped")]
    MissingMask {
        /// The defect image.
        image: PathBuf,
        /// The mask path that was expected.
        expected: PathBuf,
    },

    /// A mask has no matching defect image.
    #[error("mask {path} has no matching image (expected {expected}); it is ignored")]
    OrphanMask {
        /// The mask.
        path: PathBuf,
        /// The image path that was expected.
        expected: PathBuf,
    },

    /// Something in the tree that does not fit the layout and is ignored.
    #[error("{path}: {reason}")]
    Ignored {
        /// The ignored entry.
        path: PathBuf,
        /// Why it is ignored and what to do.
        reason: String,
    },

    /// A file could not be decoded as an image.
    #[error("{path} is not a readable image ({reason}); replace or delete the file")]
    CorruptImage {
        /// The file.
        path: PathBuf,
        /// The decoder's message.
        reason: String,
    },

    /// A mask's size differs from its image's size.
    #[error(
        "mask {mask} is {}x{} but its image {image} is {}x{}; a mask must have its image's size",
        .mask_size.0, .mask_size.1, .image_size.0, .image_size.1
    )]
    MaskSizeMismatch {
        /// The image.
        image: PathBuf,
        /// The mask.
        mask: PathBuf,
        /// The image's (width, height).
        image_size: (u32, u32),
        /// The mask's (width, height).
        mask_size: (u32, u32),
    },

    /// A preprocessing spec that cannot be applied.
    #[error("invalid preprocessing spec: {reason}")]
    InvalidSpec {
        /// What is wrong.
        reason: String,
    },

    /// `normalize_into` was given an image or buffer of the wrong size.
    #[error(
        "cannot normalise a {width}x{height} image into {len} floats: expected a {side}x{side} \
         image (call prepare first) and a buffer of {expected} floats"
    )]
    TensorShape {
        /// The image's width.
        width: u32,
        /// The image's height.
        height: u32,
        /// The buffer's length.
        len: usize,
        /// The side the spec produces.
        side: u32,
        /// The buffer length the spec needs (3·side·side).
        expected: usize,
    },

    /// An internal guard tripped: a sample outside `train/good` was about to enter the
    /// train or validation split. This is a bug, never a user error.
    #[error("internal error: {path} would enter the {split} split but is not under train/good; please report this bug")]
    DefectInTrain {
        /// The sample.
        path: PathBuf,
        /// The split it was headed for.
        split: String,
    },
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "(none)".to_string()
    } else {
        items.join(", ")
    }
}

impl DataError {
    /// Shorthand for [`DataError::Io`].
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            source,
        }
    }
}
