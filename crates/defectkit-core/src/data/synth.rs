//! The synthetic MVTec-like data set: the embedded default data of the whole project.
//!
//! Real MVTec AD cannot be downloaded everywhere, so `defectkit data synth` procedurally
//! renders a data set with the same layout (`<root>/<class>/train/good/000.png`,
//! `test/<defect>/000.png`, `ground_truth/<defect>/000_mask.png`), ten categories (five
//! textures, five objects, two of them stored as 8-bit grayscale like MVTec's grid and
//! screw) and two to four defect types per category.
//!
//! How an image is made ([`render`]):
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

use std::f32::consts::{PI, TAU};
use std::fs;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use image::{GrayImage, Luma, Rgb, RgbImage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

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

static CATEGORIES: [Category; 10] = [
    Category {
        name: "bottle",
        texture: false,
        grayscale: false,
        defects: &["broken_large", "broken_small", "contamination"],
    },
    Category {
        name: "cable",
        texture: false,
        grayscale: false,
        defects: &["cut_inner_insulation", "missing_wire", "poke_insulation"],
    },
    Category {
        name: "capsule",
        texture: false,
        grayscale: false,
        defects: &["crack", "faulty_imprint", "poke", "squeeze"],
    },
    Category {
        name: "carpet",
        texture: true,
        grayscale: false,
        defects: &["color", "cut", "hole", "thread"],
    },
    Category {
        name: "grid",
        texture: true,
        grayscale: true,
        defects: &["bent", "broken", "glue", "metal_contamination"],
    },
    Category {
        name: "leather",
        texture: true,
        grayscale: false,
        defects: &["color", "cut", "fold", "poke"],
    },
    Category {
        name: "metal_nut",
        texture: false,
        grayscale: false,
        defects: &["bent", "color", "scratch"],
    },
    Category {
        name: "screw",
        texture: false,
        grayscale: true,
        defects: &["manipulated_front", "scratch_head", "thread_side"],
    },
    Category {
        name: "tile",
        texture: true,
        grayscale: false,
        defects: &["crack", "glue_strip", "oil", "rough"],
    },
    Category {
        name: "wood",
        texture: true,
        grayscale: false,
        defects: &["color", "hole", "scratch"],
    },
];

/// The 10 categories, in a fixed (alphabetical) order.
pub fn categories() -> &'static [Category] {
    &CATEGORIES
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

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SynthError + '_ {
    move |source| SynthError::Io {
        path: path.to_path_buf(),
        source,
    }
}

// ---------------------------------------------------------------------------------------
// Stable seeding
// ---------------------------------------------------------------------------------------

/// SplitMix64 finaliser: a stable, well-mixing 64-bit hash step.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

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

/// The seed [`generate`] passes to [`render`] for one split/defect folder: the per-image
/// RNGs are then derived from `(seed, class, split, defect, index)`.
pub fn folder_seed(seed: u64, split: &str, defect: &str) -> u64 {
    mix_seed(&[seed, fnv1a(split), fnv1a(defect)])
}

fn rng_for(parts: &[u64]) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(mix_seed(parts))
}

// ---------------------------------------------------------------------------------------
// Small maths: vectors, frames, shapes, noise
// ---------------------------------------------------------------------------------------

type C3 = [f32; 3];

#[derive(Debug, Clone, Copy, PartialEq)]
struct V2 {
    x: f32,
    y: f32,
}

const fn v2(x: f32, y: f32) -> V2 {
    V2 { x, y }
}

impl std::ops::Add for V2 {
    type Output = V2;
    fn add(self, o: V2) -> V2 {
        v2(self.x + o.x, self.y + o.y)
    }
}
impl std::ops::Sub for V2 {
    type Output = V2;
    fn sub(self, o: V2) -> V2 {
        v2(self.x - o.x, self.y - o.y)
    }
}
impl std::ops::Mul<f32> for V2 {
    type Output = V2;
    fn mul(self, k: f32) -> V2 {
        v2(self.x * k, self.y * k)
    }
}

impl V2 {
    fn len(self) -> f32 {
        (self.x * self.x + self.y * self.y).sqrt()
    }
    fn dot(self, o: V2) -> f32 {
        self.x * o.x + self.y * o.y
    }
    fn angle(self) -> f32 {
        self.y.atan2(self.x)
    }
    fn from_angle(a: f32) -> V2 {
        v2(a.cos(), a.sin())
    }
    fn rot(self, a: f32) -> V2 {
        let (s, c) = a.sin_cos();
        v2(c * self.x - s * self.y, s * self.x + c * self.y)
    }
}

/// A similarity transform: local coordinates = rotate(-angle)(p - centre) / scale.
#[derive(Debug, Clone, Copy)]
struct Frame {
    c: V2,
    cos: f32,
    sin: f32,
    scale: f32,
}

impl Frame {
    fn new(c: V2, angle: f32, scale: f32) -> Frame {
        let (sin, cos) = angle.sin_cos();
        Frame { c, cos, sin, scale }
    }
    fn local(&self, p: V2) -> V2 {
        let d = p - self.c;
        v2(
            self.cos * d.x + self.sin * d.y,
            -self.sin * d.x + self.cos * d.y,
        ) * (1.0 / self.scale)
    }
    fn world(&self, q: V2) -> V2 {
        let q = q * self.scale;
        self.c
            + v2(
                self.cos * q.x - self.sin * q.y,
                self.sin * q.x + self.cos * q.y,
            )
    }
}

fn clamp01(x: f32) -> f32 {
    x.clamp(0.0, 1.0)
}
fn smoothstep(e0: f32, e1: f32, x: f32) -> f32 {
    let t = clamp01((x - e0) / (e1 - e0));
    t * t * (3.0 - 2.0 * t)
}
fn mix(a: f32, b: f32, t: f32) -> f32 {
    a + (b - a) * t
}
fn mix3(a: C3, b: C3, t: f32) -> C3 {
    [mix(a[0], b[0], t), mix(a[1], b[1], t), mix(a[2], b[2], t)]
}
fn mul3(a: C3, k: f32) -> C3 {
    [a[0] * k, a[1] * k, a[2] * k]
}
fn add3(a: C3, k: f32) -> C3 {
    [a[0] + k, a[1] + k, a[2] + k]
}
fn gray(v: f32) -> C3 {
    [v, v, v]
}
fn lum(c: C3) -> f32 {
    0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]
}
fn max_abs_diff(a: C3, b: C3) -> f32 {
    (a[0] - b[0])
        .abs()
        .max((a[1] - b[1]).abs())
        .max((a[2] - b[2]).abs())
}
/// Anti-aliased coverage of a shape with signed distance `d` (negative inside), `px` = one pixel.
fn cover(d: f32, px: f32) -> f32 {
    clamp01(0.5 - d / px)
}

fn dist_segment(p: V2, a: V2, b: V2) -> f32 {
    let ab = b - a;
    let t = clamp01((p - a).dot(ab) / ab.dot(ab).max(1e-12));
    (p - (a + ab * t)).len()
}

fn sd_round_box(p: V2, half: V2, r: f32) -> f32 {
    let q = v2(p.x.abs() - half.x + r, p.y.abs() - half.y + r);
    v2(q.x.max(0.0), q.y.max(0.0)).len() + q.x.max(q.y).min(0.0) - r
}

/// Signed distance to a regular hexagon with apothem `r`, corners at multiples of 60°.
fn sd_hexagon(p: V2, r: f32) -> f32 {
    // Inigo Quilez's hexagon: flat edges at y = ±r, so the corners sit on the x axis.
    let p = v2(p.x.abs(), p.y.abs());
    let k = v2(-0.866_025_4, 0.5);
    let t = 2.0 * k.dot(p).min(0.0);
    let p = p - k * t;
    let kz = 0.577_350_3;
    let p = p - v2(p.x.clamp(-kz * r, kz * r), r);
    p.len() * p.y.signum()
}

#[inline]
fn hash_u32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^= x >> 16;
    x
}
#[inline]
fn hash2(seed: u32, i: i32, j: i32) -> u32 {
    hash_u32(
        seed ^ hash_u32((i as u32).wrapping_mul(0x9E37_79B1) ^ hash_u32(j as u32 ^ 0x85eb_ca6b)),
    )
}
#[inline]
fn unit(h: u32) -> f32 {
    (h >> 8) as f32 * (1.0 / 16_777_216.0)
}

/// Value noise in [0, 1] with smooth interpolation, one lattice cell per unit.
fn vnoise(seed: u32, x: f32, y: f32) -> f32 {
    let (fx, fy) = (x.floor(), y.floor());
    let (i, j) = (fx as i32, fy as i32);
    let (tx, ty) = (x - fx, y - fy);
    let (sx, sy) = (tx * tx * (3.0 - 2.0 * tx), ty * ty * (3.0 - 2.0 * ty));
    let a = unit(hash2(seed, i, j));
    let b = unit(hash2(seed, i + 1, j));
    let c = unit(hash2(seed, i, j + 1));
    let d = unit(hash2(seed, i + 1, j + 1));
    mix(mix(a, b, sx), mix(c, d, sx), sy)
}

/// Fractal value noise in [0, 1].
fn fbm(seed: u32, x: f32, y: f32, octaves: u32) -> f32 {
    let (mut sum, mut amp, mut norm, mut f) = (0.0, 1.0, 0.0, 1.0);
    for o in 0..octaves {
        sum += amp * vnoise(seed.wrapping_add(o * 0x0100_0193), x * f, y * f);
        norm += amp;
        amp *= 0.5;
        f *= 2.03;
    }
    sum / norm
}

/// Cellular (Worley) noise: distance to the nearest and second-nearest feature point and
/// the nearest cell's hash.
fn worley(seed: u32, x: f32, y: f32) -> (f32, f32, u32) {
    let (ix, iy) = (x.floor() as i32, y.floor() as i32);
    let (mut d1, mut d2, mut h1) = (9.0f32, 9.0f32, 0u32);
    for j in -1..=1 {
        for i in -1..=1 {
            let h = hash2(seed, ix + i, iy + j);
            let fx = (ix + i) as f32 + 0.1 + 0.8 * unit(h);
            let fy = (iy + j) as f32 + 0.1 + 0.8 * unit(hash_u32(h));
            let d = ((fx - x) * (fx - x) + (fy - y) * (fy - y)).sqrt();
            if d < d1 {
                d2 = d1;
                d1 = d;
                h1 = h;
            } else if d < d2 {
                d2 = d;
            }
        }
    }
    (d1, d2, h1)
}

// ---------------------------------------------------------------------------------------
// Random helpers
// ---------------------------------------------------------------------------------------

fn rr(rng: &mut ChaCha8Rng, lo: f32, hi: f32) -> f32 {
    rng.random_range(lo..hi)
}
fn coin(rng: &mut ChaCha8Rng) -> bool {
    rng.random::<bool>()
}
fn rpoint(rng: &mut ChaCha8Rng, lo: f32, hi: f32) -> V2 {
    v2(rr(rng, lo, hi), rr(rng, lo, hi))
}
fn jitter3(rng: &mut ChaCha8Rng, c: C3, amt: f32) -> C3 {
    [
        c[0] * (1.0 + rr(rng, -amt, amt)),
        c[1] * (1.0 + rr(rng, -amt, amt)),
        c[2] * (1.0 + rr(rng, -amt, amt)),
    ]
}

/// An irregular blob: a disc whose radius is modulated by a few angular harmonics.
#[derive(Debug, Clone, Copy)]
struct Blob {
    c: V2,
    r: f32,
    h: [(f32, f32, f32); 3],
}

impl Blob {
    fn new(c: V2, r: f32, wobble: f32, rng: &mut ChaCha8Rng) -> Blob {
        let mut h = [(0.0, 0.0, 0.0); 3];
        for (k, hk) in h.iter_mut().enumerate() {
            *hk = (rr(rng, 0.0, wobble), (k + 2) as f32, rr(rng, 0.0, TAU));
        }
        Blob { c, r, h }
    }
    /// Normalised radius: < 1 inside, 1 on the outline.
    fn t(&self, p: V2) -> f32 {
        let d = p - self.c;
        let l = d.len();
        if l > self.r * 2.0 {
            return 2.0;
        }
        let a = d.angle();
        let mut k = 1.0;
        for &(amp, f, ph) in &self.h {
            k += amp * (f * a + ph).sin();
        }
        l / (self.r * k)
    }
    fn inside(&self, p: V2) -> bool {
        self.t(p) < 1.0
    }
}

/// A thick polyline.
#[derive(Debug, Clone)]
struct Stroke {
    pts: Vec<V2>,
    hw: f32,
}

impl Stroke {
    fn dist(&self, p: V2) -> f32 {
        self.pts
            .windows(2)
            .map(|w| dist_segment(p, w[0], w[1]))
            .fold(f32::MAX, f32::min)
    }
    fn inside(&self, p: V2) -> bool {
        self.dist(p) < self.hw
    }
}

/// A random walk of `n` segments of length `seg`, turning by up to `turn` radians each step.
fn random_walk(
    start: V2,
    angle: f32,
    n: usize,
    seg: (f32, f32),
    turn: f32,
    rng: &mut ChaCha8Rng,
) -> Vec<V2> {
    let mut pts = vec![start];
    let (mut p, mut a) = (start, angle);
    for _ in 0..n {
        a += rr(rng, -turn, turn);
        p = p + V2::from_angle(a) * rr(rng, seg.0, seg.1);
        pts.push(p);
    }
    pts
}

/// A smooth curve (quadratic Bézier, 16 segments) of about `len` through `c`.
fn curve(c: V2, len: f32, rng: &mut ChaCha8Rng) -> Vec<V2> {
    let a = rr(rng, 0.0, TAU);
    let d = V2::from_angle(a) * (len * 0.5);
    let (p0, p2) = (c - d, c + d);
    let p1 = c + V2::from_angle(a + PI / 2.0) * (len * rr(rng, -0.45, 0.45));
    (0..=16)
        .map(|i| {
            let t = i as f32 / 16.0;
            p0 * ((1.0 - t) * (1.0 - t)) + p1 * (2.0 * t * (1.0 - t)) + p2 * (t * t)
        })
        .collect()
}

/// A centred stroke of about `len`: a random walk of `n` segments starting so that its
/// middle lands near `c`.
fn walk_through(c: V2, len: f32, n: usize, turn: f32, rng: &mut ChaCha8Rng) -> Vec<V2> {
    let a = rr(rng, 0.0, TAU);
    let seg = len / n as f32;
    let start = c - V2::from_angle(a) * (len * 0.5);
    random_walk(start, a, n, (seg * 0.8, seg * 1.2), turn, rng)
}

// ---------------------------------------------------------------------------------------
// Scenes: one procedural albedo function per category
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Carpet {
    f: Frame,
    period: f32,
    warp: C3,
    weft: C3,
    seed: u32,
}

impl Carpet {
    fn new(rng: &mut ChaCha8Rng) -> Carpet {
        let hue = rr(rng, -0.04, 0.04);
        Carpet {
            f: Frame::new(rpoint(rng, 0.0, 1.0), rr(rng, -0.12, 0.12), 1.0),
            period: rr(rng, 0.036, 0.044),
            warp: jitter3(rng, [0.50 + hue, 0.40, 0.60 - hue], 0.03),
            weft: jitter3(rng, [0.42, 0.35 + hue, 0.53], 0.03),
            seed: rng.random(),
        }
    }
    fn albedo(&self, p: V2) -> C3 {
        let q = self.f.local(p) * (1.0 / self.period);
        let (fi, fj) = (q.x.floor(), q.y.floor());
        let (fa, fb) = (q.x - fi, q.y - fj);
        let over = ((fi as i32).wrapping_add(fj as i32) & 1) == 0;
        let (across, along, col, fib) = if over {
            (fa, fb, self.warp, vnoise(self.seed, q.x * 6.0, q.y * 1.3))
        } else {
            (
                fb,
                fa,
                self.weft,
                vnoise(self.seed ^ 0x55, q.x * 1.3, q.y * 6.0),
            )
        };
        let shade = 0.45 + 0.55 * (PI * across).sin().sqrt() * (0.8 + 0.2 * (PI * along).sin());
        let low = fbm(self.seed.wrapping_add(11), p.x * 3.0, p.y * 3.0, 3);
        mul3(col, shade * (0.86 + 0.28 * low) * (0.88 + 0.24 * fib))
    }
}

#[derive(Debug, Clone)]
struct Grid {
    f: Frame,
    period: f32,
    hw: f32,
    bg: f32,
    wire: f32,
    seed: u32,
    px: f32,
}

impl Grid {
    fn new(rng: &mut ChaCha8Rng, px: f32) -> Grid {
        Grid {
            f: Frame::new(rpoint(rng, 0.0, 1.0), rr(rng, -0.2, 0.2), 1.0),
            period: rr(rng, 0.09, 0.11),
            hw: rr(rng, 0.13, 0.16),
            bg: rr(rng, 0.72, 0.8),
            wire: rr(rng, 0.16, 0.22),
            seed: rng.random(),
            px,
        }
    }
    fn background(&self, p: V2) -> f32 {
        let q = self.f.local(p);
        self.bg
            + 0.10 * (fbm(self.seed, p.x * 5.0, p.y * 5.0, 3) - 0.5)
            + 0.06 * (vnoise(self.seed.wrapping_add(3), q.x * 4.0, q.y * 90.0) - 0.5)
    }
    fn albedo(&self, p: V2) -> C3 {
        let q = self.f.local(p) * (1.0 / self.period);
        let (kx, ky) = (q.x.round(), q.y.round());
        let (dx, dy) = ((q.x - kx).abs(), (q.y - ky).abs());
        let hw = self.hw;
        let pxl = self.px / self.period;
        let cyl = |d: f32| self.wire + 0.28 * (1.0 - (d / hw).min(1.0).powi(2)).sqrt();
        let (cv, ch) = (cover(dx - hw, pxl), cover(dy - hw, pxl));
        let (sv, sh) = (cyl(dx), cyl(dy));
        let v_top = ((kx as i32).wrapping_add(ky as i32) & 1) == 0;
        let mut g = self.background(p);
        // Soft shadow of the wires on the sheet below.
        let near = (dx.min(dy) - hw).max(0.0);
        g *= 1.0 - 0.2 * (-near * near / 0.004).exp();
        if v_top {
            let shadow = 1.0 - 0.35 * clamp01(1.0 - (dx - hw) / hw);
            g = mix(g, sh * shadow, ch);
            g = mix(g, sv, cv);
        } else {
            let shadow = 1.0 - 0.35 * clamp01(1.0 - (dy - hw) / hw);
            g = mix(g, sv * shadow, cv);
            g = mix(g, sh, ch);
        }
        gray(g)
    }
}

#[derive(Debug, Clone)]
struct Wood {
    f: Frame,
    freq: f32,
    warp: f32,
    light: C3,
    dark: C3,
    seed: u32,
}

impl Wood {
    fn new(rng: &mut ChaCha8Rng) -> Wood {
        Wood {
            f: Frame::new(rpoint(rng, 0.0, 1.0), rr(rng, -0.15, 0.15), 1.0),
            freq: rr(rng, 9.0, 14.0),
            warp: rr(rng, 0.8, 1.6),
            light: jitter3(rng, [0.74, 0.52, 0.31], 0.04),
            dark: jitter3(rng, [0.50, 0.30, 0.16], 0.05),
            seed: rng.random(),
        }
    }
    fn albedo(&self, p: V2) -> C3 {
        let q = self.f.local(p);
        let w = fbm(self.seed, q.x * 2.5, q.y * 0.7, 4);
        let t = q.x * self.freq + self.warp * w * 2.0;
        let ring = 0.5 + 0.5 * (TAU * t).sin();
        let ring = ring * ring * ring;
        let streak = vnoise(self.seed.wrapping_add(3), q.x * 110.0, q.y * 4.0);
        let c = mix3(self.light, self.dark, clamp01(0.6 * ring + 0.35 * streak));
        mul3(
            c,
            0.9 + 0.2 * fbm(self.seed.wrapping_add(5), p.x * 3.0, p.y * 3.0, 2),
        )
    }
}

#[derive(Debug, Clone)]
struct Leather {
    f: Frame,
    cells: f32,
    base: C3,
    seed: u32,
}

impl Leather {
    fn new(rng: &mut ChaCha8Rng) -> Leather {
        Leather {
            f: Frame::new(rpoint(rng, 0.0, 1.0), rr(rng, 0.0, TAU), 1.0),
            cells: rr(rng, 26.0, 34.0),
            base: jitter3(rng, [0.50, 0.25, 0.17], 0.05),
            seed: rng.random(),
        }
    }
    fn albedo(&self, p: V2) -> C3 {
        let q = self.f.local(p) * self.cells;
        let (d1, d2, _) = worley(self.seed, q.x, q.y);
        let ridge = smoothstep(0.0, 0.15, d2 - d1);
        let (e1, _, h2) = worley(self.seed.wrapping_add(1), q.x * 2.3, q.y * 2.3);
        let pore = 1.0 - smoothstep(0.06, 0.12, e1 - 0.05 * unit(h2));
        let low = fbm(self.seed.wrapping_add(2), p.x * 3.0, p.y * 3.0, 3);
        let k = (0.72 + 0.28 * ridge) * (1.0 - 0.3 * pore) * (0.85 + 0.3 * low);
        mul3(self.base, k)
    }
}

#[derive(Debug, Clone)]
struct Tile {
    f: Frame,
    cells: f32,
    bg: C3,
    palette: [C3; 3],
    seed: u32,
    px: f32,
}

impl Tile {
    fn new(rng: &mut ChaCha8Rng, px: f32) -> Tile {
        Tile {
            f: Frame::new(rpoint(rng, 0.0, 1.0), rr(rng, 0.0, TAU), 1.0),
            cells: rr(rng, 13.0, 17.0),
            bg: jitter3(rng, [0.66, 0.72, 0.72], 0.03),
            palette: [
                jitter3(rng, [0.30, 0.33, 0.36], 0.05),
                jitter3(rng, [0.42, 0.52, 0.64], 0.05),
                jitter3(rng, [0.86, 0.86, 0.80], 0.03),
            ],
            seed: rng.random(),
            px,
        }
    }
    fn albedo(&self, p: V2) -> C3 {
        let grain = 0.92 + 0.16 * fbm(self.seed, p.x * 5.0, p.y * 5.0, 3);
        let fine = 0.06 * (vnoise(self.seed.wrapping_add(1), p.x * 160.0, p.y * 160.0) - 0.5);
        let bg = add3(mul3(self.bg, grain), fine);
        let q = self.f.local(p) * self.cells;
        let (d1, _, h) = worley(self.seed.wrapping_add(2), q.x, q.y);
        let h2 = hash_u32(h ^ 0xabcd);
        if unit(h2) > 0.8 {
            return bg;
        }
        let radius = 0.12 + 0.24 * unit(hash_u32(h2));
        let d = d1 * (0.85 + 0.3 * vnoise(self.seed.wrapping_add(3), q.x * 3.0, q.y * 3.0));
        let cov = cover((d - radius) / self.cells, self.px);
        let chip = mul3(
            self.palette[(h % 3) as usize],
            0.9 + 0.2 * unit(hash_u32(h ^ 7)),
        );
        mix3(bg, chip, cov)
    }
}

#[derive(Debug, Clone)]
struct Bottle {
    c: V2,
    r: f32,
    hl: f32,
    glass: C3,
    bg: C3,
    seed: u32,
    px: f32,
}

impl Bottle {
    fn new(rng: &mut ChaCha8Rng, px: f32) -> Bottle {
        Bottle {
            c: v2(0.5, 0.5) + rpoint(rng, -0.04, 0.04),
            r: rr(rng, 0.36, 0.40),
            hl: rr(rng, 0.0, TAU),
            glass: jitter3(rng, [0.42, 0.55, 0.30], 0.06),
            bg: jitter3(rng, [0.10, 0.10, 0.11], 0.05),
            seed: rng.random(),
            px,
        }
    }
    fn background(&self, p: V2) -> C3 {
        mul3(
            self.bg,
            0.85 + 0.3 * fbm(self.seed, p.x * 4.0, p.y * 4.0, 3),
        )
    }
    fn albedo(&self, p: V2) -> C3 {
        let bg = self.background(p);
        let d = p - self.c;
        let l = d.len();
        let cov = cover(l - self.r, self.px);
        if cov <= 0.0 {
            return bg;
        }
        let t = l / self.r;
        let a = d.angle();
        let da = {
            let x = (a - self.hl).rem_euclid(TAU);
            x.min(TAU - x)
        };
        let spec = (-da * da / 0.25).exp();
        let tex = 0.9 + 0.2 * vnoise(self.seed.wrapping_add(1), a * 8.0, t * 20.0);
        let lip = mul3(
            self.glass,
            (0.55 + 0.45 * (PI * ((t - 0.8) / 0.2).clamp(0.0, 1.0)).sin() + 0.35 * spec) * tex,
        );
        let ring = mul3(
            self.glass,
            (0.35 + 0.25 * (t - 0.48) / 0.32 + 0.15 * spec) * tex,
        );
        let hole = add3(gray(0.04), 0.05 * (1.0 - t / 0.48) * spec);
        let inner = mix3(hole, ring, smoothstep(0.47, 0.50, t));
        let col = mix3(inner, lip, smoothstep(0.79, 0.82, t));
        mix3(bg, col, cov)
    }
}

#[derive(Debug, Clone, Copy)]
struct ThreadBump {
    x: f32,
    side: f32,
    w: f32,
    amp: f32,
}

#[derive(Debug, Clone)]
struct Screw {
    f: Frame,
    len: f32,
    head_len: f32,
    head_h: f32,
    shaft_r: f32,
    depth: f32,
    pitch: f32,
    phase: f32,
    tip_len: f32,
    tip_cut: Option<f32>,
    bump: Option<ThreadBump>,
    bg: f32,
    seed: u32,
    px: f32,
}

impl Screw {
    fn new(rng: &mut ChaCha8Rng, px: f32) -> Screw {
        Screw {
            f: Frame::new(
                v2(0.5, 0.5) + rpoint(rng, -0.06, 0.06),
                rr(rng, 0.0, TAU),
                rr(rng, 0.96, 1.04),
            ),
            len: rr(rng, 0.62, 0.68),
            head_len: rr(rng, 0.13, 0.15),
            head_h: rr(rng, 0.12, 0.13),
            shaft_r: rr(rng, 0.048, 0.054),
            depth: rr(rng, 0.011, 0.014),
            pitch: rr(rng, 0.03, 0.034),
            phase: rr(rng, 0.0, 1.0),
            tip_len: rr(rng, 0.06, 0.08),
            tip_cut: None,
            bump: None,
            bg: rr(rng, 0.74, 0.80),
            seed: rng.random(),
            px,
        }
    }
    fn x0(&self) -> f32 {
        -self.len / 2.0
    }
    fn x1(&self) -> f32 {
        self.tip_cut.unwrap_or(self.len / 2.0)
    }
    fn background(&self, p: V2) -> f32 {
        self.bg + 0.08 * (fbm(self.seed, p.x * 4.0, p.y * 4.0, 3) - 0.5)
    }
    /// Thread profile radius at `x` on `side` (±1); the second value is the thread phase.
    fn radius(&self, x: f32, side: f32) -> (f32, f32) {
        let ph = ((x - self.x0()) / self.pitch + self.phase + side * 0.25).rem_euclid(1.0);
        let saw = 1.0 - (ph - 0.5).abs() * 2.0;
        let mut r = self.shaft_r + self.depth * saw;
        let mut groove = saw;
        if let Some(b) = self.bump {
            if b.side == side {
                let t = (x - b.x) / b.w;
                if t.abs() < 1.0 {
                    let e = 1.0 - t * t;
                    r = mix(r, self.shaft_r + 0.5 * self.depth + b.amp, e);
                    groove = mix(groove, 0.5, e);
                }
            }
        }
        if self.tip_cut.is_none() {
            let from_end = self.x1() - x;
            if from_end < self.tip_len {
                r *= (from_end / self.tip_len).max(0.0).powf(0.8);
            }
        }
        (r, groove)
    }
    /// Coverage and grey level of the screw in local coordinates.
    fn shade_local(&self, q: V2) -> (f32, f32) {
        let pxl = self.px / self.f.scale;
        let hx = self.x0() + self.head_len / 2.0;
        let dh = sd_round_box(q - v2(hx, 0.0), v2(self.head_len / 2.0, self.head_h), 0.025);
        let xs = self.x0() + self.head_len;
        let side = if q.y >= 0.0 { 1.0 } else { -1.0 };
        let (r, groove) = self.radius(q.x, side);
        let ds = (q.y.abs() - r).max(xs - 0.01 - q.x).max(q.x - self.x1());
        let d = dh.min(ds);
        let cov = cover(d, pxl);
        if cov <= 0.0 {
            return (0.0, 0.0);
        }
        let g = if dh < ds {
            let n = q.y / self.head_h;
            let ridge = ((q.x - self.x0()) / self.head_len * PI).sin();
            0.2 + 0.32 * (-(n + 0.3) * (n + 0.3) / 0.05).exp() + 0.08 * ridge
        } else {
            let n = (q.y / r.max(1e-3)).clamp(-1.0, 1.0);
            0.16 + 0.36 * (-(n + 0.35) * (n + 0.35) / 0.06).exp() + 0.12 * groove
        };
        let tex = 0.06 * (vnoise(self.seed.wrapping_add(9), q.x * 150.0, q.y * 20.0) - 0.5);
        (cov, g + tex)
    }
    fn albedo(&self, p: V2) -> C3 {
        let bg = self.background(p);
        let (cov, g) = self.shade_local(self.f.local(p));
        gray(mix(bg, g, cov))
    }
}

#[derive(Debug, Clone, Copy)]
struct Squeeze {
    x: f32,
    side: f32,
    w: f32,
    amp: f32,
}

#[derive(Debug, Clone)]
struct Capsule {
    f: Frame,
    half: f32,
    rad: f32,
    body: C3,
    cap: C3,
    ink: C3,
    bg: C3,
    print: [bool; 3],
    squeeze: Option<Squeeze>,
    seed: u32,
    px: f32,
}

impl Capsule {
    fn new(rng: &mut ChaCha8Rng, px: f32) -> Capsule {
        Capsule {
            f: Frame::new(
                v2(0.5, 0.5) + rpoint(rng, -0.04, 0.04),
                rr(rng, -0.25, 0.25),
                rr(rng, 0.97, 1.03),
            ),
            half: rr(rng, 0.21, 0.23),
            rad: rr(rng, 0.11, 0.12),
            body: jitter3(rng, [0.88, 0.45, 0.12], 0.04),
            cap: jitter3(rng, [0.16, 0.14, 0.14], 0.05),
            ink: [0.92, 0.92, 0.88],
            bg: jitter3(rng, [0.70, 0.72, 0.70], 0.03),
            print: [true; 3],
            squeeze: None,
            seed: rng.random(),
            px,
        }
    }
    fn background(&self, p: V2) -> C3 {
        mul3(
            self.bg,
            0.92 + 0.16 * fbm(self.seed, p.x * 4.0, p.y * 4.0, 3),
        )
    }
    fn radius_at(&self, q: V2) -> f32 {
        let mut r = self.rad;
        if let Some(s) = self.squeeze {
            if q.y * s.side > 0.0 {
                let t = (q.x - s.x) / s.w;
                r -= s.amp * (-t * t).exp();
            }
        }
        r
    }
    /// Signed distance of local point `q` to the outline (negative inside).
    fn sd(&self, q: V2) -> f32 {
        let c = v2(q.x.clamp(-self.half, self.half), 0.0);
        (q - c).len() - self.radius_at(q)
    }
    /// Distance to the printed glyph `i` (a ring), in local coordinates.
    fn glyph_dist(&self, q: V2, i: usize) -> f32 {
        let c = v2(0.06 + 0.07 * i as f32, 0.0);
        ((q - c).len() - 0.027).abs() - 0.0075
    }
    fn albedo(&self, p: V2) -> C3 {
        let bg = self.background(p);
        let q = self.f.local(p);
        let pxl = self.px / self.f.scale;
        let d = self.sd(q);
        let cov = cover(d, pxl);
        if cov <= 0.0 {
            return bg;
        }
        let r = self.radius_at(q);
        let n = (q.y / r).clamp(-1.0, 1.0);
        let xin = q.x.abs() - self.half;
        let end = if xin > 0.0 { xin / r } else { 0.0 };
        let cyl = (1.0 - n * n - end * end).max(0.0).sqrt();
        let spec = (-(n + 0.45) * (n + 0.45) / 0.015).exp() * (1.0 - end);
        let mut col = if q.x < 0.0 { self.body } else { self.cap };
        for (i, &on) in self.print.iter().enumerate() {
            if on {
                let g = cover(self.glyph_dist(q, i), pxl);
                col = mix3(col, self.ink, g * 0.9);
            }
        }
        let seam = 1.0 - 0.4 * (-(q.x * q.x) / 0.00002).exp();
        let col = add3(mul3(col, (0.45 + 0.55 * cyl) * seam), 0.3 * spec);
        mix3(bg, col, cov)
    }
}

#[derive(Debug, Clone)]
struct MetalNut {
    f: Frame,
    apothem: f32,
    hole: f32,
    chamfer: f32,
    metal: C3,
    bg: C3,
    light: f32,
    seed: u32,
    px: f32,
}

impl MetalNut {
    fn new(rng: &mut ChaCha8Rng, px: f32) -> MetalNut {
        MetalNut {
            f: Frame::new(
                v2(0.5, 0.5) + rpoint(rng, -0.05, 0.05),
                rr(rng, 0.0, TAU),
                rr(rng, 0.96, 1.04),
            ),
            apothem: rr(rng, 0.27, 0.29),
            hole: rr(rng, 0.11, 0.125),
            chamfer: rr(rng, 0.16, 0.175),
            metal: jitter3(rng, [0.62, 0.65, 0.70], 0.03),
            bg: jitter3(rng, [0.10, 0.12, 0.16], 0.05),
            light: rr(rng, 0.0, TAU),
            seed: rng.random(),
            px,
        }
    }
    fn background(&self, p: V2) -> C3 {
        mul3(
            self.bg,
            0.85 + 0.3 * fbm(self.seed, p.x * 4.0, p.y * 4.0, 3),
        )
    }
    fn corner_radius(&self) -> f32 {
        self.apothem * 2.0 / 3f32.sqrt()
    }
    /// Coverage and colour of the nut in local coordinates.
    fn shade_local(&self, q: V2) -> (f32, C3) {
        let pxl = self.px / self.f.scale;
        let sd = sd_hexagon(q, self.apothem);
        let l = q.len();
        let cov = cover(sd, pxl) * cover(self.hole - l, pxl);
        if cov <= 0.0 {
            return (0.0, [0.0; 3]);
        }
        let a = q.angle();
        // The face a point belongs to: sectors between corners at multiples of 60°.
        let face = ((a / (PI / 3.0)).floor() + 0.5) * (PI / 3.0);
        let facing = (face - self.light).cos();
        let brushed = 0.08 * (vnoise(self.seed.wrapping_add(4), l * 140.0, a * 3.0) - 0.5);
        let k = if l < self.chamfer {
            0.95 - 0.35 * (l - self.hole) / (self.chamfer - self.hole)
        } else if sd > -0.03 {
            0.62 + 0.3 * facing
        } else {
            0.72 + 0.1 * (a - self.light).cos()
        };
        (cov, mul3(self.metal, k + brushed))
    }
    fn albedo(&self, p: V2) -> C3 {
        let bg = self.background(p);
        let (cov, c) = self.shade_local(self.f.local(p));
        mix3(bg, c, cov)
    }
}

#[derive(Debug, Clone)]
struct Cable {
    f: Frame,
    r: f32,
    wire_r: f32,
    colors: [C3; 3],
    sheath: C3,
    copper: C3,
    bg: C3,
    seed: u32,
    px: f32,
}

impl Cable {
    fn new(rng: &mut ChaCha8Rng, px: f32) -> Cable {
        let r = rr(rng, 0.39, 0.42);
        Cable {
            f: Frame::new(
                v2(0.5, 0.5) + rpoint(rng, -0.03, 0.03),
                rr(rng, -0.3, 0.3),
                1.0,
            ),
            r,
            wire_r: r * rr(rng, 0.32, 0.34),
            colors: [
                jitter3(rng, [0.22, 0.58, 0.26], 0.05),
                jitter3(rng, [0.20, 0.33, 0.72], 0.05),
                jitter3(rng, [0.52, 0.32, 0.16], 0.05),
            ],
            sheath: jitter3(rng, [0.60, 0.60, 0.58], 0.03),
            copper: jitter3(rng, [0.80, 0.54, 0.30], 0.04),
            bg: jitter3(rng, [0.06, 0.06, 0.07], 0.05),
            seed: rng.random(),
            px,
        }
    }
    fn background(&self, p: V2) -> C3 {
        mul3(
            self.bg,
            0.85 + 0.3 * fbm(self.seed, p.x * 4.0, p.y * 4.0, 3),
        )
    }
    fn wire_centre(&self, k: usize) -> V2 {
        V2::from_angle(-PI / 2.0 + k as f32 * TAU / 3.0) * (self.r * 0.5)
    }
    /// The sheath/filler colour at local point `q` (what is there without wires).
    fn filler(&self, q: V2) -> C3 {
        let l = q.len();
        let tex = 0.9 + 0.2 * fbm(self.seed.wrapping_add(1), q.x * 30.0, q.y * 30.0, 2);
        if l > self.r * 0.88 {
            let edge = 1.0 - 0.3 * smoothstep(0.94, 1.0, l / self.r);
            mul3(self.sheath, tex * edge)
        } else {
            mul3(self.sheath, 0.72 * tex)
        }
    }
    fn albedo(&self, p: V2) -> C3 {
        let bg = self.background(p);
        let q = self.f.local(p);
        let cov = cover(q.len() - self.r, self.px);
        if cov <= 0.0 {
            return bg;
        }
        let mut col = self.filler(q);
        for k in 0..3 {
            let w = q - self.wire_centre(k);
            let dw = w.len();
            let wc = cover(dw - self.wire_r, self.px);
            if wc <= 0.0 {
                continue;
            }
            let t = dw / self.wire_r;
            let ins = mul3(
                self.colors[k],
                0.8 + 0.35 * (1.0 - t) + 0.1 * w.x / self.wire_r,
            );
            let (d1, _, _) = worley(self.seed.wrapping_add(2 + k as u32), w.x * 90.0, w.y * 90.0);
            let strand = mul3(self.copper, 0.65 + 0.5 * (1.0 - d1).clamp(0.0, 1.0));
            let core = cover(dw - self.wire_r * 0.56, self.px);
            col = mix3(col, mix3(ins, strand, core), wc);
        }
        mix3(bg, col, cov)
    }
}

#[derive(Debug, Clone)]
enum Scene {
    Bottle(Bottle),
    Cable(Cable),
    Capsule(Capsule),
    Carpet(Carpet),
    Grid(Grid),
    Leather(Leather),
    MetalNut(MetalNut),
    Screw(Screw),
    Tile(Tile),
    Wood(Wood),
}

impl Scene {
    fn new(name: &str, rng: &mut ChaCha8Rng, px: f32) -> Scene {
        match name {
            "bottle" => Scene::Bottle(Bottle::new(rng, px)),
            "cable" => Scene::Cable(Cable::new(rng, px)),
            "capsule" => Scene::Capsule(Capsule::new(rng, px)),
            "carpet" => Scene::Carpet(Carpet::new(rng)),
            "grid" => Scene::Grid(Grid::new(rng, px)),
            "leather" => Scene::Leather(Leather::new(rng)),
            "metal_nut" => Scene::MetalNut(MetalNut::new(rng, px)),
            "screw" => Scene::Screw(Screw::new(rng, px)),
            "tile" => Scene::Tile(Tile::new(rng, px)),
            "wood" => Scene::Wood(Wood::new(rng)),
            other => panic!("synth: no scene for category {other:?}"),
        }
    }
    fn albedo(&self, p: V2) -> C3 {
        match self {
            Scene::Bottle(s) => s.albedo(p),
            Scene::Cable(s) => s.albedo(p),
            Scene::Capsule(s) => s.albedo(p),
            Scene::Carpet(s) => s.albedo(p),
            Scene::Grid(s) => s.albedo(p),
            Scene::Leather(s) => s.albedo(p),
            Scene::MetalNut(s) => s.albedo(p),
            Scene::Screw(s) => s.albedo(p),
            Scene::Tile(s) => s.albedo(p),
            Scene::Wood(s) => s.albedo(p),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Defects
// ---------------------------------------------------------------------------------------

/// Minimum albedo change (any channel) for a pixel to count as defective. Pixels of the
/// region that the paint changes less than this keep their good value, so the mask is
/// exactly the set of changed pixels.
pub const MASK_THRESHOLD: f32 = 0.03;

type RegionFn = Box<dyn Fn(V2) -> bool + Send + Sync>;
type PaintFn = Box<dyn Fn(V2, C3) -> C3 + Send + Sync>;

/// A defect: where it may change pixels and what it paints there (given the good albedo).
///
/// A *solid* defect's region is its geometry (a stain, a scratch, a hole): every region
/// pixel is changed by at least [`MASK_THRESHOLD`] (a pixel the paint happens to leave
/// almost as it was is nudged), so its mask is the whole region, without pinholes. A
/// *refined* defect's region is only a bounding area (a deformation, a missing part): its
/// mask is the subset of region pixels that the paint actually changed.
struct Defect {
    region: RegionFn,
    paint: PaintFn,
    solid: bool,
}

/// A solid defect (see [`Defect`]).
fn defect(
    region: impl Fn(V2) -> bool + Send + Sync + 'static,
    paint: impl Fn(V2, C3) -> C3 + Send + Sync + 'static,
) -> Defect {
    Defect {
        region: Box::new(region),
        paint: Box::new(paint),
        solid: true,
    }
}

impl Defect {
    /// Mark the region as a bounding area only: the mask is what the paint changed.
    fn refined(mut self) -> Defect {
        self.solid = false;
        self
    }
}

/// Make sure `new` differs from `old` by at least [`MASK_THRESHOLD`] in some channel, moving
/// it further in the direction it already moved (or away from mid-grey if it did not).
fn ensure_changed(old: C3, new: C3) -> C3 {
    if max_abs_diff(new, old) >= MASK_THRESHOLD {
        return new;
    }
    let dl = lum(new) - lum(old);
    let s = if dl.abs() > 1e-6 {
        dl.signum()
    } else if lum(old) > 0.5 {
        -1.0
    } else {
        1.0
    };
    add3(new, s * MASK_THRESHOLD * 1.5)
}

/// A stain: blend towards `col` with a slightly mottled strength.
fn stain(blob: Blob, col: C3, alpha: f32, ns: u32) -> Defect {
    defect(
        move |p| blob.inside(p),
        move |p, old| {
            let a = alpha * (0.8 + 0.2 * vnoise(ns, p.x * 50.0, p.y * 50.0));
            mix3(old, col, a)
        },
    )
}

/// A colour far from typical texture colours: dark or bright (random sign keeps the image
/// mean neutral over the data set).
fn dark_or_bright(rng: &mut ChaCha8Rng, dark: C3, bright: C3) -> C3 {
    if coin(rng) {
        dark
    } else {
        bright
    }
}

fn make_defect(scene: &Scene, name: &str, rng: &mut ChaCha8Rng) -> Option<Defect> {
    let ns: u32 = rng.random();
    let centre = rpoint(rng, 0.22, 0.78);
    Some(match (scene, name) {
        // ---------------------------------------------------------------- carpet
        (Scene::Carpet(_), "color") => {
            let blob = Blob::new(centre, rr(rng, 0.09, 0.14), 0.15, rng);
            let col = dark_or_bright(rng, [0.16, 0.11, 0.07], [0.92, 0.85, 0.50]);
            stain(blob, col, rr(rng, 0.7, 0.85), ns)
        }
        (Scene::Carpet(_), "cut") => {
            let s = Stroke {
                pts: walk_through(centre, rr(rng, 0.35, 0.55), 3, 0.4, rng),
                hw: rr(rng, 0.011, 0.016),
            };
            let r = s.clone();
            defect(
                move |p| r.inside(p),
                move |p, _| {
                    let t = s.dist(p) / s.hw;
                    let fib = vnoise(ns, p.x * 300.0, p.y * 300.0);
                    if t < 0.55 {
                        gray(0.07 + 0.06 * fib)
                    } else {
                        [0.86 * (0.8 + 0.2 * fib), 0.8, 0.84]
                    }
                },
            )
        }
        (Scene::Carpet(_), "hole") => {
            let blob = Blob::new(centre, rr(rng, 0.07, 0.1), 0.18, rng);
            defect(
                move |p| blob.inside(p),
                move |p, old| {
                    let t = blob.t(p);
                    let fib = vnoise(ns, p.x * 200.0, p.y * 200.0);
                    if t < 0.72 {
                        [0.06 + 0.05 * fib, 0.05 + 0.04 * fib, 0.05]
                    } else {
                        mix3(old, [0.88, 0.82, 0.88], 0.6 + 0.3 * fib)
                    }
                },
            )
        }
        (Scene::Carpet(_), "thread") => {
            let palette = [
                [0.95, 0.85, 0.20],
                [0.15, 0.80, 0.85],
                [0.95, 0.95, 0.92],
                [0.08, 0.08, 0.08],
                [0.85, 0.15, 0.12],
            ];
            let col = palette[rng.random_range(0..palette.len())];
            let s = Stroke {
                pts: curve(centre, rr(rng, 0.45, 0.7), rng),
                hw: rr(rng, 0.008, 0.012),
            };
            let r = s.clone();
            defect(
                move |p| r.inside(p),
                move |p, _| {
                    let t = s.dist(p) / s.hw;
                    mul3(col, 0.65 + 0.35 * (1.0 - t * t).max(0.0).sqrt())
                },
            )
        }
        // ---------------------------------------------------------------- grid
        (Scene::Grid(g), "bent") => {
            let g = g.clone();
            let r = rr(rng, 0.11, 0.15);
            let dir = V2::from_angle(rr(rng, 0.0, TAU));
            let amp = g.period * rr(rng, 0.4, 0.6);
            defect(
                move |p| (p - centre).len() < r,
                move |p, _| {
                    let t = (p - centre).len() / r;
                    let w = (1.0 - t * t).max(0.0).powi(2);
                    g.albedo(p - dir * (amp * w))
                },
            )
            .refined()
        }
        (Scene::Grid(g), "broken") => {
            let g = g.clone();
            let q0 = g.f.local(centre) * (1.0 / g.period);
            let vertical = coin(rng);
            let n = rng.random_range(2..=3);
            let half = rr(rng, 0.28, 0.33);
            let (k0, j0) = if vertical {
                (q0.x.round(), q0.y.floor())
            } else {
                (q0.y.round(), q0.x.floor())
            };
            let hw = g.hw * 1.6;
            let g2 = g.clone();
            defect(
                move |p| {
                    let q = g2.f.local(p) * (1.0 / g2.period);
                    let (a, b) = if vertical { (q.x, q.y) } else { (q.y, q.x) };
                    let k = a.round();
                    k >= k0
                        && k < k0 + n as f32
                        && (a - k).abs() < hw
                        && (b - (j0 + 0.5)).abs() < half
                },
                move |p, _| gray(g.background(p)),
            )
            .refined()
        }
        (Scene::Grid(_), "glue") => {
            let blob = Blob::new(centre, rr(rng, 0.08, 0.12), 0.2, rng);
            let col = if coin(rng) { 0.96 } else { 0.06 };
            defect(
                move |p| blob.inside(p),
                move |p, old| {
                    let sheen = vnoise(ns, p.x * 30.0, p.y * 30.0);
                    gray(mix(lum(old), col, 0.6 + 0.25 * sheen))
                },
            )
        }
        (Scene::Grid(_), "metal_contamination") => {
            let n = rng.random_range(4..=7);
            let blobs: Vec<Blob> = (0..n)
                .map(|_| {
                    let c = centre + rpoint(rng, -0.07, 0.07);
                    let r = rr(rng, 0.02, 0.035);
                    Blob::new(c, r, 0.3, rng)
                })
                .collect();
            let b2 = blobs.clone();
            defect(
                move |p| b2.iter().any(|b| b.inside(p)),
                move |p, _| {
                    let t = blobs.iter().map(|b| b.t(p)).fold(9.0, f32::min);
                    if t > 0.7 {
                        gray(0.04)
                    } else {
                        gray(0.9 + 0.08 * vnoise(ns, p.x * 200.0, p.y * 200.0))
                    }
                },
            )
        }
        // ---------------------------------------------------------------- leather
        (Scene::Leather(_), "color") => {
            let palette = [
                [0.05, 0.04, 0.04],
                [0.85, 0.80, 0.70],
                [0.20, 0.30, 0.70],
                [0.80, 0.60, 0.35],
            ];
            let col = palette[rng.random_range(0..palette.len())];
            let blob = Blob::new(centre, rr(rng, 0.08, 0.12), 0.2, rng);
            stain(blob, col, rr(rng, 0.6, 0.8), ns)
        }
        (Scene::Leather(_), "cut") => {
            let s = Stroke {
                pts: walk_through(centre, rr(rng, 0.3, 0.5), 3, 0.5, rng),
                hw: rr(rng, 0.01, 0.014),
            };
            let r = s.clone();
            defect(
                move |p| r.inside(p),
                move |p, _| {
                    let t = s.dist(p) / s.hw;
                    if t < 0.5 {
                        [0.04, 0.03, 0.03]
                    } else {
                        [0.78, 0.62, 0.50]
                    }
                },
            )
        }
        (Scene::Leather(l), "fold") => {
            let l = l.clone();
            let dir = V2::from_angle(rr(rng, 0.0, TAU));
            let nrm = v2(-dir.y, dir.x);
            let half = rr(rng, 0.18, 0.28);
            let w = rr(rng, 0.035, 0.05);
            defect(
                move |p| {
                    let d = p - centre;
                    let (a, b) = (d.dot(dir) / half, d.dot(nrm) / w);
                    b * b + a.powi(4) < 1.0
                },
                move |p, _| {
                    let d = p - centre;
                    let (a, b) = (d.dot(dir) / half, d.dot(nrm) / w);
                    let env = 1.0 - a.powi(4);
                    // Texture compressed towards the crease, one side lit, the other shaded.
                    let src = p - nrm * (b * w * 0.4 * env);
                    let shade = 1.0 + b.signum() * 0.45 * (0.6 + 0.4 * (PI * b / 2.0).cos()) * env;
                    mul3(l.albedo(src), shade)
                },
            )
        }
        (Scene::Leather(_), "poke") => {
            let n = rng.random_range(3..=6);
            let blobs: Vec<Blob> = (0..n)
                .map(|_| {
                    let c = centre + rpoint(rng, -0.06, 0.06);
                    let r = rr(rng, 0.02, 0.032);
                    Blob::new(c, r, 0.12, rng)
                })
                .collect();
            let b2 = blobs.clone();
            defect(
                move |p| b2.iter().any(|b| b.inside(p)),
                move |p, old| {
                    let t = blobs.iter().map(|b| b.t(p)).fold(9.0, f32::min);
                    if t < 0.6 {
                        [0.04, 0.03, 0.03]
                    } else {
                        mix3(old, [0.85, 0.7, 0.6], 0.7)
                    }
                },
            )
        }
        // ---------------------------------------------------------------- tile
        (Scene::Tile(_), "crack") => {
            let len = rr(rng, 0.4, 0.65);
            let pts = walk_through(centre, len, 9, 0.6, rng);
            let hw = rr(rng, 0.007, 0.01);
            let from = pts[rng.random_range(2..7)];
            let main = Stroke { pts, hw };
            let branch = Stroke {
                pts: random_walk(from, rr(rng, 0.0, TAU), 3, (0.04, 0.07), 0.6, rng),
                hw: hw * 0.7,
            };
            let (m2, b2) = (main.clone(), branch.clone());
            defect(
                move |p| m2.inside(p) || b2.inside(p),
                move |p, _| gray(0.08 + 0.06 * vnoise(ns, p.x * 200.0, p.y * 200.0)),
            )
        }
        (Scene::Tile(_), "glue_strip") => {
            let dir = V2::from_angle(rr(rng, 0.0, TAU));
            let nrm = v2(-dir.y, dir.x);
            let half_len = rr(rng, 0.14, 0.25);
            let half_w = rr(rng, 0.025, 0.04);
            let col = dark_or_bright(rng, [0.32, 0.24, 0.10], [0.97, 0.93, 0.75]);
            defect(
                move |p| {
                    let d = p - centre;
                    d.dot(dir).abs() < half_len && d.dot(nrm).abs() < half_w
                },
                move |p, old| {
                    let d = p - centre;
                    let streak = vnoise(ns, d.dot(dir) * 8.0, d.dot(nrm) * 120.0);
                    mix3(old, col, 0.55 + 0.3 * streak)
                },
            )
        }
        (Scene::Tile(_), "oil") => {
            let blob = Blob::new(centre, rr(rng, 0.06, 0.1), 0.2, rng);
            defect(
                move |p| blob.inside(p),
                move |p, old| {
                    let sheen = vnoise(ns, p.x * 25.0, p.y * 25.0);
                    let dark = mix3(old, [0.12, 0.11, 0.09], 0.65);
                    if sheen > 0.62 {
                        add3(dark, 0.45 * (sheen - 0.62) / 0.38 + 0.2)
                    } else {
                        dark
                    }
                },
            )
        }
        (Scene::Tile(_), "rough") => {
            let blob = Blob::new(centre, rr(rng, 0.06, 0.1), 0.2, rng);
            defect(
                move |p| blob.inside(p),
                move |p, old| {
                    let h = hash2(ns, (p.x * 160.0) as i32, (p.y * 160.0) as i32);
                    let s = if h & 1 == 0 { 1.0 } else { -1.0 };
                    add3(old, s * (0.14 + 0.14 * unit(h)))
                },
            )
        }
        // ---------------------------------------------------------------- wood
        (Scene::Wood(_), "color") => {
            let blob = Blob::new(centre, rr(rng, 0.08, 0.12), 0.2, rng);
            let col = dark_or_bright(rng, [0.16, 0.10, 0.06], [0.93, 0.84, 0.68]);
            stain(blob, col, rr(rng, 0.6, 0.8), ns)
        }
        (Scene::Wood(_), "hole") => {
            let n = rng.random_range(1..=3);
            let blobs: Vec<Blob> = (0..n)
                .map(|_| {
                    let c = centre + rpoint(rng, -0.08, 0.08);
                    let r = rr(rng, 0.035, 0.055);
                    Blob::new(c, r, 0.1, rng)
                })
                .collect();
            let b2 = blobs.clone();
            defect(
                move |p| b2.iter().any(|b| b.inside(p)),
                move |p, _| {
                    let t = blobs.iter().map(|b| b.t(p)).fold(9.0, f32::min);
                    if t < 0.75 {
                        [0.06, 0.04, 0.03]
                    } else {
                        [0.86, 0.72, 0.52]
                    }
                },
            )
        }
        (Scene::Wood(_), "scratch") => {
            let n = rng.random_range(1..=3);
            let col = dark_or_bright(rng, [0.18, 0.10, 0.05], [0.96, 0.88, 0.74]);
            let offset = V2::from_angle(rr(rng, 0.0, TAU)) * 0.03;
            let base = walk_through(centre, rr(rng, 0.4, 0.7), 2, 0.15, rng);
            let hw = rr(rng, 0.007, 0.011);
            let strokes: Vec<Stroke> = (0..n)
                .map(|i| Stroke {
                    pts: base.iter().map(|&q| q + offset * i as f32).collect(),
                    hw,
                })
                .collect();
            defect(
                move |p| strokes.iter().any(|s| s.inside(p)),
                move |p, _| mul3(col, 0.9 + 0.2 * vnoise(ns, p.x * 100.0, p.y * 100.0)),
            )
        }
        // ---------------------------------------------------------------- bottle
        (Scene::Bottle(b), "broken_large" | "broken_small") => {
            let b = b.clone();
            let large = name == "broken_large";
            let a = rr(rng, 0.0, TAU);
            let c = b.c + V2::from_angle(a) * (b.r * 0.97);
            let r = b.r
                * if large {
                    rr(rng, 0.28, 0.36)
                } else {
                    rr(rng, 0.16, 0.21)
                };
            let blob = Blob::new(c, r, 0.2, rng);
            let (bc, br) = (b.c, b.r);
            defect(
                move |p| blob.inside(p) && (p - bc).len() < br,
                move |p, _| {
                    let t = blob.t(p);
                    if t > 0.8 {
                        let n = vnoise(ns, p.x * 150.0, p.y * 150.0);
                        [0.80 + 0.15 * n, 0.88 + 0.1 * n, 0.78]
                    } else {
                        b.background(p)
                    }
                },
            )
            .refined()
        }
        (Scene::Bottle(b), "contamination") => {
            let a = rr(rng, 0.0, TAU);
            let c = b.c + V2::from_angle(a) * (b.r * rr(rng, 0.2, 0.68));
            let blob = Blob::new(c, rr(rng, 0.04, 0.065), 0.35, rng);
            let fibre = Stroke {
                pts: curve(c, rr(rng, 0.12, 0.22), rng),
                hw: rr(rng, 0.005, 0.008),
            };
            let light = coin(rng);
            let f2 = fibre.clone();
            defect(
                move |p| blob.inside(p) || f2.inside(p),
                move |p, old| {
                    let n = vnoise(ns, p.x * 120.0, p.y * 120.0);
                    if light || lum(old) < 0.15 {
                        [0.80 + 0.1 * n, 0.72 + 0.1 * n, 0.55]
                    } else {
                        [0.02, 0.02 + 0.02 * n, 0.02]
                    }
                },
            )
        }
        // ---------------------------------------------------------------- cable
        (Scene::Cable(c), "missing_wire") => {
            let c = c.clone();
            let k = rng.random_range(0..3);
            let hole = coin(rng);
            let wc = c.f.world(c.wire_centre(k));
            let wr = c.wire_r + c.px;
            defect(
                move |p| (p - wc).len() < wr,
                move |p, _| {
                    let q = c.f.local(p);
                    let t = (q - c.wire_centre(k)).len() / c.wire_r;
                    if hole {
                        if t > 0.85 {
                            mul3(c.sheath, 0.95)
                        } else {
                            gray(0.03)
                        }
                    } else {
                        mul3(c.filler(q), 0.8 + 0.25 * vnoise(ns, q.x * 60.0, q.y * 60.0))
                    }
                },
            )
        }
        (Scene::Cable(c), "cut_inner_insulation") => {
            let c = c.clone();
            let k = rng.random_range(0..3);
            let a0 = rr(rng, 0.0, TAU);
            let span = rr(rng, 1.0, 2.0);
            let copper = coin(rng);
            let c2 = c.clone();
            let in_cut = move |p: V2| {
                let w = c2.f.local(p) - c2.wire_centre(k);
                let t = w.len() / c2.wire_r;
                let da = (w.angle() - a0).rem_euclid(TAU);
                (0.45..1.0).contains(&t) && da < span
            };
            defect(in_cut, move |p, _| {
                let n = vnoise(ns, p.x * 150.0, p.y * 150.0);
                if copper {
                    mul3(c.copper, 0.75 + 0.4 * n)
                } else {
                    gray(0.03 + 0.04 * n)
                }
            })
        }
        (Scene::Cable(c), "poke_insulation") => {
            let c = c.clone();
            let a = rr(rng, 0.0, TAU);
            let centre_l = V2::from_angle(a) * (c.r * rr(rng, 0.86, 0.93));
            let cw = c.f.world(centre_l);
            let blob = Blob::new(cw, rr(rng, 0.045, 0.06), 0.2, rng);
            let c2 = c.clone();
            defect(
                move |p| {
                    let q = c2.f.local(p);
                    blob.inside(p)
                        && q.len() < c2.r
                        && (0..3).all(|k| (q - c2.wire_centre(k)).len() > c2.wire_r)
                },
                move |p, _| {
                    let t = blob.t(p);
                    if t < 0.65 {
                        gray(0.03)
                    } else {
                        mul3(c.sheath, 1.3 + 0.2 * vnoise(ns, p.x * 90.0, p.y * 90.0))
                    }
                },
            )
        }
        // ---------------------------------------------------------------- capsule
        (Scene::Capsule(c), "crack") => {
            let c = c.clone();
            // A crack runs roughly along the capsule (in local coordinates), then is mapped
            // to the image, so most of it lies on the body.
            let len = rr(rng, 0.25, 0.35);
            let a = rr(rng, -0.5, 0.5) + if coin(rng) { 0.0 } else { PI };
            let mid = v2(rr(rng, -0.12, 0.12), rr(rng, -0.04, 0.04));
            let start = mid - V2::from_angle(a) * (len * 0.5);
            let local = random_walk(start, a, 6, (len / 7.0, len / 5.0), 0.6, rng);
            let s = Stroke {
                pts: local.iter().map(|&q| c.f.world(q)).collect(),
                hw: rr(rng, 0.01, 0.014),
            };
            let (s2, c2) = (s.clone(), c.clone());
            defect(
                move |p| s2.inside(p) && c2.sd(c2.f.local(p)) < -0.01,
                move |_, old| {
                    if lum(old) > 0.3 {
                        gray(0.03)
                    } else {
                        gray(0.75)
                    }
                },
            )
        }
        (Scene::Capsule(c), "faulty_imprint") => {
            let mut broken = c.clone();
            let mut print = [true; 3];
            match rng.random_range(0..4) {
                0 => print = [false; 3],
                k => print[k - 1] = false,
            }
            broken.print = print;
            let sc = c.f.world(v2(rr(rng, 0.06, 0.2), rr(rng, -0.05, 0.05)));
            let smear = Blob::new(sc, rr(rng, 0.035, 0.05), 0.3, rng);
            let c2 = c.clone();
            let ink = c.ink;
            defect(
                move |p| {
                    let q = c2.f.local(p);
                    q.x > 0.0 && q.x < 0.3 && q.y.abs() < 0.08 && c2.sd(q) < 0.0
                },
                move |p, _| {
                    let a = broken.albedo(p);
                    if smear.inside(p) {
                        mix3(a, mul3(ink, 0.9), 0.55)
                    } else {
                        a
                    }
                },
            )
            .refined()
        }
        (Scene::Capsule(c), "poke") => {
            let c2 = c.clone();
            let q = v2(rr(rng, -0.22, 0.22), rr(rng, -0.05, 0.05));
            let cw = c.f.world(q);
            let r = rr(rng, 0.04, 0.055);
            let light = V2::from_angle(rr(rng, 0.0, TAU));
            defect(
                move |p| (p - cw).len() < r && c2.sd(c2.f.local(p)) < -0.005,
                move |p, old| {
                    let d = (p - cw) * (1.0 / r);
                    let t = d.len();
                    if t < 0.45 {
                        mul3(old, 0.25)
                    } else {
                        let k = d.dot(light) / t;
                        add3(mul3(old, 0.6), 0.35 * k + 0.05)
                    }
                },
            )
        }
        (Scene::Capsule(c), "squeeze") => {
            let mut s = c.clone();
            let side = if coin(rng) { 1.0 } else { -1.0 };
            let sq = Squeeze {
                x: rr(rng, -0.2, 0.2),
                side,
                w: rr(rng, 0.05, 0.08),
                amp: rr(rng, 0.035, 0.05),
            };
            s.squeeze = Some(sq);
            let c2 = c.clone();
            defect(
                move |p| {
                    let q = c2.f.local(p);
                    q.y * side > 0.0 && (q.x - sq.x).abs() < sq.w * 2.5
                },
                move |p, _| s.albedo(p),
            )
            .refined()
        }
        // ---------------------------------------------------------------- metal nut
        (Scene::MetalNut(m), "bent") => {
            let m = m.clone();
            let k = rng.random_range(0..6);
            let u = V2::from_angle(k as f32 * PI / 3.0);
            let rc = m.corner_radius();
            let dc = rc * rr(rng, 0.62, 0.72);
            let fold = rr(rng, 0.45, 0.6);
            let m2 = m.clone();
            defect(
                move |p| {
                    let q = m2.f.local(p);
                    q.dot(u) > dc && (q - u * rc).len() < rc - dc + 0.05
                },
                move |p, _| {
                    let q = m.f.local(p);
                    let s = q.dot(u) - dc;
                    let src = q + u * (s * (1.0 / fold - 1.0));
                    let (cov, col) = m.shade_local(src);
                    mix3(m.background(p), mul3(col, 0.5), cov)
                },
            )
            .refined()
        }
        (Scene::MetalNut(m), "color") => {
            let m2 = m.clone();
            let palette = [
                [0.80, 0.15, 0.10],
                [0.12, 0.25, 0.80],
                [0.85, 0.75, 0.10],
                [0.05, 0.05, 0.05],
            ];
            let col = palette[rng.random_range(0..palette.len())];
            let a = rr(rng, 0.0, TAU);
            let cl = V2::from_angle(a) * rr(rng, 0.16, 0.24);
            let blob = Blob::new(m.f.world(cl), rr(rng, 0.06, 0.09), 0.25, rng);
            defect(
                move |p| blob.inside(p) && m2.shade_local(m2.f.local(p)).0 > 0.5,
                move |p, old| mix3(old, col, 0.65 + 0.2 * vnoise(ns, p.x * 50.0, p.y * 50.0)),
            )
        }
        (Scene::MetalNut(m), "scratch") => {
            let m2 = m.clone();
            let a = rr(rng, 0.0, TAU);
            // Mostly tangential, so the scratch stays on the metal rather than crossing the hole.
            let len = rr(rng, 0.25, 0.38);
            let mid = V2::from_angle(a) * rr(rng, 0.19, 0.23);
            let dir = a + PI / 2.0 + rr(rng, -0.3, 0.3);
            let start = mid - V2::from_angle(dir) * (len * 0.5);
            let local = random_walk(start, dir, 3, (len / 4.0, len / 2.5), 0.35, rng);
            let s = Stroke {
                pts: local.iter().map(|&q| m.f.world(q)).collect(),
                hw: rr(rng, 0.008, 0.012),
            };
            let col = if coin(rng) { 0.97 } else { 0.12 };
            let s2 = s.clone();
            defect(
                move |p| s2.inside(p) && m2.shade_local(m2.f.local(p)).0 > 0.5,
                move |p, _| gray(col + 0.03 * (vnoise(ns, p.x * 200.0, p.y * 200.0) - 0.5)),
            )
        }
        // ---------------------------------------------------------------- screw
        (Scene::Screw(s), "manipulated_front") => {
            let s = s.clone();
            let x1 = s.x1();
            let cut = rr(rng, 0.09, 0.14);
            let mut m = s.clone();
            let bend = coin(rng);
            let beta = rr(rng, 0.25, 0.45) * if coin(rng) { 1.0 } else { -1.0 };
            let xb = x1 - cut - 0.03;
            if !bend {
                m.tip_cut = Some(x1 - cut);
            }
            let s2 = s.clone();
            defect(
                move |p| {
                    let q = s2.f.local(p);
                    q.x > xb - 0.01 && q.y.abs() < 0.16
                },
                move |p, _| {
                    let q = m.f.local(p);
                    let src = if bend && q.x > xb {
                        (q - v2(xb, 0.0)).rot(-beta) + v2(xb, 0.0)
                    } else {
                        q
                    };
                    let (cov, g) = m.shade_local(src);
                    gray(mix(m.background(p), g, cov))
                },
            )
            .refined()
        }
        (Scene::Screw(s), "scratch_head") => {
            let s2 = s.clone();
            let x0 = s.x0();
            let n = rng.random_range(1..=3);
            let strokes: Vec<Stroke> = (0..n)
                .map(|_| {
                    let a = v2(x0 + rr(rng, 0.0, s.head_len), -s.head_h * 1.2);
                    let b = v2(x0 + rr(rng, 0.0, s.head_len), s.head_h * 1.2);
                    Stroke {
                        pts: vec![s.f.world(a), s.f.world(b)],
                        hw: rr(rng, 0.011, 0.016),
                    }
                })
                .collect();
            let xs = x0 + s.head_len;
            defect(
                move |p| {
                    let q = s2.f.local(p);
                    q.x < xs - 0.005
                        && s2.shade_local(q).0 > 0.5
                        && strokes.iter().any(|st| st.inside(p))
                },
                move |p, _| gray(0.88 + 0.08 * vnoise(ns, p.x * 150.0, p.y * 150.0)),
            )
        }
        (Scene::Screw(s), "thread_side") => {
            let mut m = s.clone();
            let side = if coin(rng) { 1.0 } else { -1.0 };
            let xs = s.x0() + s.head_len;
            let b = ThreadBump {
                x: rr(rng, xs + 0.06, s.x1() - s.tip_len - 0.04),
                side,
                w: rr(rng, 0.06, 0.09),
                amp: if coin(rng) {
                    rr(rng, 0.015, 0.025)
                } else {
                    -rr(rng, 0.02, 0.03)
                },
            };
            m.bump = Some(b);
            let s2 = s.clone();
            defect(
                move |p| {
                    let q = s2.f.local(p);
                    (q.x - b.x).abs() < b.w && q.y * side > 0.0
                },
                move |p, _| m.albedo(p),
            )
            .refined()
        }
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------------
// Lighting and sensor
// ---------------------------------------------------------------------------------------

/// Global photometric variation of good images: it dominates any defect's effect on the
/// image mean, so global statistics cannot detect defects.
#[derive(Debug, Clone)]
struct Lighting {
    gain: f32,
    contrast: f32,
    offset: f32,
    gx: f32,
    gy: f32,
    vignette: f32,
    wb: C3,
    sigma: f32,
    noise_seed: u32,
    gray: bool,
}

impl Lighting {
    fn new(rng: &mut ChaCha8Rng, gray: bool) -> Lighting {
        Lighting {
            gain: rr(rng, 0.78, 1.18),
            contrast: rr(rng, 0.85, 1.15),
            offset: rr(rng, -0.035, 0.035),
            gx: rr(rng, -0.12, 0.12),
            gy: rr(rng, -0.12, 0.12),
            vignette: rr(rng, 0.0, 0.15),
            wb: if gray {
                [1.0; 3]
            } else {
                jitter3(rng, [1.0; 3], 0.03)
            },
            sigma: rr(rng, 0.006, 0.016),
            noise_seed: rng.random(),
            gray,
        }
    }
    fn apply(&self, a: C3, p: V2, x: u32, y: u32) -> [u8; 3] {
        let (u, v) = (p.x - 0.5, p.y - 0.5);
        let field =
            self.gain * (1.0 + self.gx * u + self.gy * v - self.vignette * (u * u + v * v) * 2.0);
        let mut out = [0u8; 3];
        for (c, o) in out.iter_mut().enumerate() {
            let ch = if self.gray { 0 } else { c as u32 };
            let h = hash2(
                self.noise_seed ^ ch.wrapping_mul(0x2545_F491),
                x as i32,
                y as i32,
            );
            let s = (h & 0xff) + ((h >> 8) & 0xff) + ((h >> 16) & 0xff) + (h >> 24);
            let n = (s as f32 - 510.0) * (1.0 / 147.8);
            let val = ((a[c] - 0.5) * self.contrast + 0.5) * field * self.wb[c]
                + self.offset
                + self.sigma * n;
            *o = (val * 255.0).round().clamp(0.0, 255.0) as u8;
        }
        out
    }
}

// ---------------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------------

/// Generate one image (and its mask, all-zero for good images) in memory; used by tests and by generate.
///
/// The good content (scene, lighting, noise) depends only on `(seed, category, index)`; the
/// defect only on `(seed, category, defect, index)`. So `render(c, Some(d), s, i, n)` equals
/// `render(c, None, s, i, n)` outside its mask, and the mask is exactly the pixels the
/// defect changed. Grayscale categories come back with three equal channels.
///
/// # Panics
/// If `category` is not one of [`categories`] or `defect` is not one of its defect types
/// (both are programmer errors: [`generate`] validates names first), or `size` is 0.
pub fn render(
    category: &Category,
    defect: Option<&str>,
    seed: u64,
    index: usize,
    size: u32,
) -> (RgbImage, GrayImage) {
    assert!(size > 0, "synth: image size must be positive");
    let n = size as usize;
    let px = 1.0 / size as f32;
    let class_h = fnv1a(category.name);
    let mut base = rng_for(&[seed, class_h, fnv1a("base"), index as u64]);
    let scene = Scene::new(category.name, &mut base, px);
    let light = Lighting::new(&mut base, category.grayscale);

    let pos = |i: usize| (i as f32 + 0.5) * px;
    let mut albedo: Vec<C3> = Vec::with_capacity(n * n);
    for y in 0..n {
        for x in 0..n {
            albedo.push(scene.albedo(v2(pos(x), pos(y))));
        }
    }

    let mut mask = GrayImage::new(size, size);
    if let Some(name) = defect {
        assert!(
            category.defects.contains(&name),
            "synth: category {:?} has no defect type {name:?} (it has {:?})",
            category.name,
            category.defects
        );
        let mut drng = rng_for(&[seed, class_h, fnv1a(name), index as u64]);
        let d = make_defect(&scene, name, &mut drng).unwrap_or_else(|| {
            panic!(
                "synth: defect {name:?} not implemented for {}",
                category.name
            )
        });
        for y in 0..n {
            for x in 0..n {
                let p = v2(pos(x), pos(y));
                if !(d.region)(p) {
                    continue;
                }
                let old = albedo[y * n + x];
                let mut new = (d.paint)(p, old);
                if d.solid {
                    new = ensure_changed(old, new);
                }
                if max_abs_diff(new, old) >= MASK_THRESHOLD {
                    albedo[y * n + x] = new;
                    mask.put_pixel(x as u32, y as u32, Luma([255]));
                }
            }
        }
    }

    let mut img = RgbImage::new(size, size);
    for y in 0..n {
        for x in 0..n {
            let p = v2(pos(x), pos(y));
            let c = light.apply(albedo[y * n + x], p, x as u32, y as u32);
            img.put_pixel(x as u32, y as u32, Rgb(c));
        }
    }
    (img, mask)
}

// ---------------------------------------------------------------------------------------
// Writing the data set
// ---------------------------------------------------------------------------------------

/// One image to generate.
struct Job {
    cat: &'static Category,
    split: &'static str,
    defect: Option<&'static str>,
    index: usize,
}

impl Job {
    fn folder(&self) -> &'static str {
        self.defect.unwrap_or("good")
    }
}

/// Written next to the class folders as `synth.json`, so a data set says how it was made.
#[derive(Serialize)]
struct Manifest<'a> {
    generator: &'static str,
    version: u32,
    seed: u64,
    image_size: u32,
    train_good: usize,
    test_good: usize,
    test_defect_per_type: usize,
    classes: &'a [String],
}

/// The name of the manifest file [`generate`] writes at the data set root.
pub const MANIFEST: &str = "synth.json";

/// True when `out` already holds a complete set generated with exactly these options (its
/// `synth.json` matches), so that scripts can skip regenerating it.
pub fn is_up_to_date(opts: &SynthOptions, out: &Path) -> bool {
    let Ok(cats) = resolve_classes(opts) else {
        return false;
    };
    let classes: Vec<String> = cats.iter().map(|c| c.name.to_string()).collect();
    let want = Manifest {
        generator: "defectkit synth",
        version: 1,
        seed: opts.seed,
        image_size: opts.image_size,
        train_good: opts.train_good,
        test_good: opts.test_good,
        test_defect_per_type: opts.test_defect_per_type,
        classes: &classes,
    };
    let Ok(text) = fs::read_to_string(out.join(MANIFEST)) else {
        return false;
    };
    match (
        serde_json::from_str::<serde_json::Value>(&text),
        serde_json::to_value(&want),
    ) {
        (Ok(have), Ok(want)) => have == want,
        _ => false,
    }
}

fn resolve_classes(opts: &SynthOptions) -> Result<Vec<&'static Category>, SynthError> {
    let Some(names) = &opts.classes else {
        return Ok(categories().iter().collect());
    };
    for name in names {
        if category(name).is_none() {
            return Err(SynthError::UnknownClass {
                name: name.clone(),
                valid: categories().iter().map(|c| c.name.to_string()).collect(),
            });
        }
    }
    let chosen: Vec<_> = categories()
        .iter()
        .filter(|c| names.iter().any(|n| n == c.name))
        .collect();
    if chosen.is_empty() {
        return Err(SynthError::InvalidOptions("the class list is empty".into()));
    }
    Ok(chosen)
}

fn validate(opts: &SynthOptions) -> Result<(), SynthError> {
    if !(16..=4096).contains(&opts.image_size) {
        return Err(SynthError::InvalidOptions(format!(
            "image_size must be between 16 and 4096 pixels, got {}",
            opts.image_size
        )));
    }
    for (what, n) in [
        ("train_good", opts.train_good),
        ("test_good", opts.test_good),
        ("test_defect_per_type", opts.test_defect_per_type),
    ] {
        if n > 1000 {
            return Err(SynthError::InvalidOptions(format!(
                "{what} must be at most 1000 (file names have three digits), got {n}"
            )));
        }
    }
    if opts.train_good == 0 {
        return Err(SynthError::InvalidOptions(
            "train_good must be at least 1 (every category needs train/good)".into(),
        ));
    }
    Ok(())
}

fn encode_png(
    path: &Path,
    bytes: &[u8],
    size: u32,
    color: image::ExtendedColorType,
) -> Result<(), SynthError> {
    use image::codecs::png::{CompressionType, FilterType, PngEncoder};
    use image::ImageEncoder;
    let mut buf = Vec::with_capacity(bytes.len() / 2);
    PngEncoder::new_with_quality(&mut buf, CompressionType::Fast, FilterType::Adaptive)
        .write_image(bytes, size, size, color)
        .map_err(|source| SynthError::Encode {
            path: path.to_path_buf(),
            source,
        })?;
    fs::write(path, &buf).map_err(io_err(path))
}

fn write_job(root: &Path, job: &Job, opts: &SynthOptions) -> Result<(), SynthError> {
    let class_dir = root.join(job.cat.name);
    let img_dir = class_dir.join(job.split).join(job.folder());
    let seed = folder_seed(opts.seed, job.split, job.folder());
    let (img, mask) = render(job.cat, job.defect, seed, job.index, opts.image_size);
    let path = img_dir.join(format!("{:03}.png", job.index));
    if job.cat.grayscale {
        let g: Vec<u8> = img.pixels().map(|p| p.0[0]).collect();
        encode_png(&path, &g, opts.image_size, image::ExtendedColorType::L8)?;
    } else {
        encode_png(
            &path,
            img.as_raw(),
            opts.image_size,
            image::ExtendedColorType::Rgb8,
        )?;
    }
    if let Some(d) = job.defect {
        let mpath = class_dir
            .join("ground_truth")
            .join(d)
            .join(format!("{:03}_mask.png", job.index));
        encode_png(
            &mpath,
            mask.as_raw(),
            opts.image_size,
            image::ExtendedColorType::L8,
        )?;
    }
    Ok(())
}

fn sibling(out: &Path, suffix: &str) -> Result<PathBuf, SynthError> {
    let name = out.file_name().ok_or_else(|| {
        SynthError::InvalidOptions(format!(
            "output path {} must name a directory",
            out.display()
        ))
    })?;
    Ok(out.with_file_name(format!(
        "{}.{suffix}-{}",
        name.to_string_lossy(),
        std::process::id()
    )))
}

/// Generate the data set under `out` (MVTec layout) and return what was written.
///
/// The set is written into `<out>.partial-<pid>` and renamed into place only when complete,
/// so a failure never leaves a half-written data set (the partial folder is removed). An
/// existing non-empty `out` is an error unless `opts.force`; then it is replaced only after
/// the new set is complete. `progress` shows a bar on stderr when stderr is a terminal.
pub fn generate(
    opts: &SynthOptions,
    out: &Path,
    progress: bool,
) -> Result<SynthSummary, SynthError> {
    let start = Instant::now();
    validate(opts)?;
    let cats = resolve_classes(opts)?;

    let exists = fs::symlink_metadata(out).is_ok();
    let non_empty = exists
        && match fs::read_dir(out) {
            Ok(mut it) => it.next().is_some(),
            Err(_) => true, // a file (or unreadable): never overwrite silently
        };
    if non_empty && !opts.force {
        return Err(SynthError::OutputExists {
            path: out.to_path_buf(),
        });
    }

    let partial = sibling(out, "partial")?;
    if fs::symlink_metadata(&partial).is_ok() {
        fs::remove_dir_all(&partial).map_err(io_err(&partial))?;
    }

    let mut jobs = Vec::new();
    for &cat in &cats {
        jobs.extend((0..opts.train_good).map(|index| Job {
            cat,
            split: "train",
            defect: None,
            index,
        }));
        jobs.extend((0..opts.test_good).map(|index| Job {
            cat,
            split: "test",
            defect: None,
            index,
        }));
        for &d in cat.defects {
            jobs.extend((0..opts.test_defect_per_type).map(|index| Job {
                cat,
                split: "test",
                defect: Some(d),
                index,
            }));
        }
    }

    let result = (|| {
        for &cat in &cats {
            let cd = partial.join(cat.name);
            let mut dirs = vec![cd.join("train/good"), cd.join("test/good")];
            for d in cat.defects {
                dirs.push(cd.join("test").join(d));
                dirs.push(cd.join("ground_truth").join(d));
            }
            for d in dirs {
                fs::create_dir_all(&d).map_err(io_err(&d))?;
            }
        }
        let bar = if progress && std::io::stderr().is_terminal() {
            let b = indicatif::ProgressBar::new(jobs.len() as u64);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "synth {bar:40} {pos}/{len} images  {elapsed_precise} (eta {eta})",
            ) {
                b.set_style(style);
            }
            b
        } else {
            indicatif::ProgressBar::hidden()
        };
        jobs.par_iter().try_for_each(|job| {
            write_job(&partial, job, opts)?;
            bar.inc(1);
            Ok::<(), SynthError>(())
        })?;
        bar.finish_and_clear();
        let classes: Vec<String> = cats.iter().map(|c| c.name.to_string()).collect();
        let manifest = Manifest {
            generator: "defectkit synth",
            version: 1,
            seed: opts.seed,
            image_size: opts.image_size,
            train_good: opts.train_good,
            test_good: opts.test_good,
            test_defect_per_type: opts.test_defect_per_type,
            classes: &classes,
        };
        let mpath = partial.join(MANIFEST);
        let mut text = serde_json::to_string_pretty(&manifest).expect("manifest serializes");
        text.push('\n');
        fs::write(&mpath, text).map_err(io_err(&mpath))?;
        Ok::<(), SynthError>(())
    })();
    if let Err(e) = result {
        let _ = fs::remove_dir_all(&partial);
        return Err(e);
    }

    // Swap into place: move the old set aside, rename the new one, then delete the old.
    let old = if exists {
        let old = sibling(out, "old")?;
        if let Err(source) = fs::rename(out, &old) {
            let _ = fs::remove_dir_all(&partial);
            return Err(SynthError::Io {
                path: out.to_path_buf(),
                source,
            });
        }
        Some(old)
    } else {
        None
    };
    if let Err(source) = fs::rename(&partial, out) {
        if let Some(old) = &old {
            let _ = fs::rename(old, out);
        }
        let _ = fs::remove_dir_all(&partial);
        return Err(SynthError::Io {
            path: out.to_path_buf(),
            source,
        });
    }
    if let Some(old) = old {
        let res = if old.is_dir() {
            fs::remove_dir_all(&old)
        } else {
            fs::remove_file(&old)
        };
        res.map_err(io_err(&old))?;
    }

    let masks: usize = cats
        .iter()
        .map(|c| c.defects.len() * opts.test_defect_per_type)
        .sum();
    Ok(SynthSummary {
        root: out.to_path_buf(),
        classes: cats.iter().map(|c| c.name.to_string()).collect(),
        images: jobs.len(),
        masks,
        seconds: start.elapsed().as_secs_f64(),
    })
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
    #[ignore]
    fn zz_extra_digest() {
        use sha2::{Digest, Sha256};
        let mut all = String::new();
        for c in categories() {
            let mut h = Sha256::new();
            for &size in &[40u32, 97] {
                for seed in [3u64, 11] {
                    for index in 0..12 {
                        let (img, mask) = render(c, None, seed, index, size);
                        h.update(img.as_raw());
                        h.update(mask.as_raw());
                        for d in c.defects {
                            let (img, mask) = render(c, Some(d), seed, index, size);
                            h.update(img.as_raw());
                            h.update(mask.as_raw());
                        }
                    }
                }
            }
            all.push_str(&format!("{} {:x}\n", c.name, h.finalize()));
        }
        std::fs::write("/tmp/synthwork/digest.txt", &all).unwrap();
        println!("{all}");
    }
}
