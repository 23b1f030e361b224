//! The synthetic MVTec-like data set: the embedded default data of the whole project.
//!
//! Real MVTec AD cannot be downloaded everywhere, so `defectkit data synth` procedurally
//! renders a data set with the same layout (`<root>/<class>/train/good/000.png`,
//! `test/<defect>/000.png`, `ground_truth/<defect>/000_mask.png`), ten categories (five
//! textures, five objects, two of them stored as 8-bit grayscale like MVTec's grid and
//! screw) and two to four defect types per category.
//!
//! How an image is made ([`render`](fn@render)):
//! 1. A *scene* (the category's procedural albedo function over the unit square) is drawn
//!    from a base RNG seeded by `(seed, class, index)`: position, rotation, scale, colours
//!    and small shape changes vary from image to image.
//! 2. A defect, if any, is drawn from its own RNG seeded by `(seed, class, defect, index)`:
//!    a geometric region (blob, stroke, sector, …) and a paint function. Inside the region
//!    the paint replaces the albedo; the mask is exactly the region's pixels whose albedo
//!    the paint changed (by at least [`MASK_THRESHOLD`]), and only those pixels are changed.
//!    So a defective image equals the good image of the same seed and index outside its
//!    mask, which the tests check pixel by pixel.
//! 3. Lighting (gain, contrast, offset, gradient, vignette, white balance) and sensor noise
//!    are applied identically to good and defective images. The lighting variation is
//!    deliberately stronger than any defect's effect on the image mean, so a global
//!    statistic such as the mean pixel value cannot detect defects (AUROC ≤ 0.7); defects are
//!    locally salient (strong contrast against the local texture) and cover ~0.5–8 % of
//!    the image.
//!
//! Everything is seeded by a stable hash ([`mix_seed`]), so the same seed gives
//! byte-identical files whatever the thread count. Images are generated in parallel with
//! rayon into `<out>.partial-<pid>` and renamed into place at the end.
//!
//! The module is split by job:
//! - this file: the public API (options, summary, errors, the category list, seeding) and
//!   the category registry, one line per category;
//! - [`render()`] in `render.rs` (one image and mask), `lighting.rs` (lighting and sensor
//!   noise), [`generate`] and the manifest in `write.rs`;
//! - the maths in `geometry.rs` (vectors, frames, distances), `color.rs`, `noise.rs` (hashes,
//!   procedural noise, the seeded-RNG helpers) and `shapes.rs` (blobs, strokes, paths);
//! - `defects.rs`: the defect type and the shared builders of the recurring defect families;
//! - one file per category (`bottle.rs` … `wood.rs`): its [`Category`] entry, its scene and
//!   its defect recipes. Adding a category is one new file and one line in `registry!`.

mod color;
mod defects;
mod geometry;
mod lighting;
mod noise;
mod registry;
mod render;
mod shapes;
mod write;

pub use defects::MASK_THRESHOLD;
pub use render::render;
pub use write::{generate, is_up_to_date, MANIFEST};

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[cfg(test)]
use {
    geometry::{sd_hexagon, v2},
    noise::rng_for,
    registry::make_defect,
};

// ---------------------------------------------------------------------------------------
// Categories
// ---------------------------------------------------------------------------------------

/// One generated category: its name, whether it's a texture, its defect types.
///
/// `grayscale` categories are written as single-channel 8-bit PNGs (like MVTec's grid and
/// screw), to exercise the grayscale → 3-channel path of the preprocessing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Category {
    /// Folder name, e.g. `"carpet"`.
    pub name: &'static str,
    /// True for textures (the whole image is the surface), false for objects on a background.
    pub texture: bool,
    /// True when the images are saved as 8-bit grayscale PNGs.
    pub grayscale: bool,
    /// Defect type folder names under `test/` and `ground_truth/`, sorted.
    pub defects: &'static [&'static str],
}

// ---------------------------------------------------------------------------------------
// The category registry: one line per category, in `categories()` order (alphabetical).
// `module::SceneType` names the file `module.rs`, which defines the category's `CATEGORY`
// (name, flags, defect types) and its scene type `SceneType` with `impl CategoryScene` (the
// scene's albedo and the category's defect recipes).
// ---------------------------------------------------------------------------------------

registry::registry! {
    bottle::Bottle,
    cable::Cable,
    capsule::Capsule,
    carpet::Carpet,
    grid::Grid,
    leather::Leather,
    metal_nut::MetalNut,
    screw::Screw,
    tile::Tile,
    wood::Wood,
}

/// The 10 categories, in a fixed (alphabetical) order.
pub fn categories() -> &'static [Category] {
    CATEGORIES
}

/// The category called `name`, if there is one.
pub fn category(name: &str) -> Option<&'static Category> {
    CATEGORIES.iter().find(|c| c.name == name)
}

// ---------------------------------------------------------------------------------------
// Options, summary, errors
// ---------------------------------------------------------------------------------------

/// What to generate. Deserialized from config (unknown keys rejected) or built by the CLI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SynthOptions {
    /// Master seed; the same seed gives byte-identical files.
    pub seed: u64,
    /// Width and height of every image, in pixels (16..=4096).
    pub image_size: u32,
    /// Defect-free training images per class (`train/good`).
    pub train_good: usize,
    /// Defect-free test images per class (`test/good`).
    pub test_good: usize,
    /// Test images per defect type per class (`test/<defect>`), each with a mask.
    pub test_defect_per_type: usize,
    /// Subset of category names; None = all 10. Unknown names are an error listing the valid ones.
    #[serde(default)]
    pub classes: Option<Vec<String>>,
    /// Replace an existing non-empty output directory (only after the new one is complete).
    #[serde(default)]
    pub force: bool,
}

impl Default for SynthOptions {
    /// 256 px, 60 train/good, 15 test/good and 6 images per defect type for all 10 classes
    /// (about 930 images): generates in seconds on two cores in a release build.
    fn default() -> Self {
        SynthOptions {
            seed: 0,
            image_size: 256,
            train_good: 60,
            test_good: 15,
            test_defect_per_type: 6,
            classes: None,
            force: false,
        }
    }
}

/// What [`generate`] wrote.
#[derive(Debug, Clone)]
pub struct SynthSummary {
    /// The data set root (the `out` that was asked for).
    pub root: PathBuf,
    /// The generated classes, in [`categories`] order.
    pub classes: Vec<String>,
    /// Number of images written (train + test).
    pub images: usize,
    /// Number of ground-truth masks written (one per defective test image).
    pub masks: usize,
    /// Wall time of the whole generation, in seconds.
    pub seconds: f64,
}

/// Everything that can go wrong generating the synthetic set.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    /// Stopped by Ctrl-C ([`crate::interrupt`]); the partial set was removed.
    #[error("interrupted; the partial data set was removed and nothing else was changed")]
    Interrupted,
    /// The output directory exists and is not empty, and `force` was not given.
    #[error("output {path} already exists and is not empty; pass --force to replace it (the old one is removed only after the new set is complete)")]
    OutputExists {
        /// The output directory.
        path: PathBuf,
    },
    /// A requested class is not one of the generated categories.
    #[error("unknown class {name:?}; valid classes: {}", .valid.join(", "))]
    UnknownClass {
        /// The name that was asked for.
        name: String,
        /// All valid names, in order.
        valid: Vec<String>,
    },
    /// The options make no sense (e.g. image size 0, more than 1000 images per folder).
    #[error("invalid synth options: {0}")]
    InvalidOptions(String),
    /// An I/O error on a named path.
    #[error("{path}: {source}")]
    Io {
        /// The path that failed.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// PNG encoding failed.
    #[error("could not encode {path}: {source}")]
    Encode {
        /// The file being written.
        path: PathBuf,
        /// The underlying error.
        source: image::ImageError,
    },
}

// ---------------------------------------------------------------------------------------
// Stable seeding
// ---------------------------------------------------------------------------------------

use crate::rng::splitmix64;

/// FNV-1a 64 of a string: a stable way to turn names into seed parts.
pub fn fnv1a(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    h
}

/// Combine seed parts into one seed with SplitMix64. Stable across platforms, Rust versions
/// and thread counts (unlike `std`'s `DefaultHasher`, whose algorithm is unspecified).
pub fn mix_seed(parts: &[u64]) -> u64 {
    let mut h: u64 = 0x243F_6A88_85A3_08D3;
    for &p in parts {
        h = splitmix64(h ^ p);
    }
    h
}

/// The seed [`generate`] passes to [`render`](fn@render) for one split/defect folder: the
/// per-image RNGs are then derived from `(seed, class, split, defect, index)`.
pub fn folder_seed(seed: u64, split: &str, defect: &str) -> u64 {
    mix_seed(&[seed, fnv1a(split), fnv1a(defect)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_defect_is_implemented() {
        for c in categories() {
            let mut rng = rng_for(&[1]);
            let scene = Scene::new(c.name, &mut rng, 1.0 / 64.0);
            for d in c.defects {
                assert!(
                    make_defect(&scene, d, &mut rng).is_some(),
                    "{} / {d}",
                    c.name
                );
            }
        }
    }

    #[test]
    fn seed_mixing_is_stable() {
        assert_eq!(fnv1a(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a("a"), 0xaf63_dc4c_8601_ec8c);
        assert_ne!(mix_seed(&[1, 2]), mix_seed(&[2, 1]));
    }

    #[test]
    fn hexagon_sdf_has_corners_on_axes() {
        let r = 0.3;
        let rc = r * 2.0 / 3f32.sqrt();
        assert!(sd_hexagon(v2(rc - 0.01, 0.0), r) < 0.0);
        assert!(sd_hexagon(v2(rc + 0.01, 0.0), r) > 0.0);
        assert!((sd_hexagon(v2(0.0, r), r)).abs() < 1e-5);
    }

    #[test]
    fn registry_lists_categories_and_defects_sorted() {
        let names: Vec<&str> = categories().iter().map(|c| c.name).collect();
        assert!(names.windows(2).all(|w| w[0] < w[1]), "{names:?}");
        for c in categories() {
            assert!(c.defects.windows(2).all(|w| w[0] < w[1]), "{c:?}");
            assert_eq!(category(c.name), Some(c));
        }
    }
}
