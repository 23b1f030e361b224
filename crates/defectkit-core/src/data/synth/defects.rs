//! What a defect is ([`Defect`]: a region and a paint function, solid or refined), how a
//! pixel is guaranteed to count as changed ([`ensure_changed`], [`MASK_THRESHOLD`]), and the
//! shared builders for the recurring defect families that the category files call: stains
//! and other blob paints, clusters of holes or pokes, strokes (cuts, threads, scratches,
//! cracks) and altered copies of the scene (deformations, missing parts).
//!
//! The builders only assemble closures: they draw nothing from the RNG, so a recipe's draw
//! order is exactly the order in which it draws its shapes and colours before calling them.

use rand_chacha::ChaCha8Rng;

use super::color::{add3, lum, max_abs_diff, mix3, C3};
use super::geometry::V2;
use super::noise::{coin, vnoise};
use super::registry::CategoryScene;
use super::shapes::{Blob, Stroke};

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
pub(super) struct Defect {
    pub(super) region: RegionFn,
    pub(super) paint: PaintFn,
    pub(super) solid: bool,
}

/// A solid defect (see [`Defect`]).
pub(super) fn defect(
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
    pub(super) fn refined(mut self) -> Defect {
        self.solid = false;
        self
    }
    /// Restrict the region to the points where `keep` also holds (e.g. on the object).
    pub(super) fn within(self, keep: impl Fn(V2) -> bool + Send + Sync + 'static) -> Defect {
        let region = self.region;
        Defect {
            region: Box::new(move |p| region(p) && keep(p)),
            ..self
        }
    }
}

/// Make sure `new` differs from `old` by at least [`MASK_THRESHOLD`] in some channel, moving
/// it further in the direction it already moved (or away from mid-grey if it did not).
pub(super) fn ensure_changed(old: C3, new: C3) -> C3 {
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

/// A colour far from typical texture colours: dark or bright (random sign keeps the image
/// mean neutral over the data set).
pub(super) fn dark_or_bright(rng: &mut ChaCha8Rng, dark: C3, bright: C3) -> C3 {
    if coin(rng) {
        dark
    } else {
        bright
    }
}

/// A solid blob painted by `paint(p, old)`.
pub(super) fn blob(blob: Blob, paint: impl Fn(V2, C3) -> C3 + Send + Sync + 'static) -> Defect {
    defect(move |p| blob.inside(p), paint)
}

/// A solid blob painted by `paint(p, old, t)`, `t` being the blob's normalised radius at
/// `p` (< 1 inside): for defects with a core and a rim (holes, pokes, broken edges).
pub(super) fn blob_rings(
    blob: Blob,
    paint: impl Fn(V2, C3, f32) -> C3 + Send + Sync + 'static,
) -> Defect {
    defect(
        move |p| blob.inside(p),
        move |p, old| paint(p, old, blob.t(p)),
    )
}

/// A stain: blend towards `col` with a slightly mottled strength.
pub(super) fn stain(b: Blob, col: C3, alpha: f32, ns: u32) -> Defect {
    blob(b, move |p, old| {
        let a = alpha * (0.8 + 0.2 * vnoise(ns, p.x * 50.0, p.y * 50.0));
        mix3(old, col, a)
    })
}

/// A solid cluster of blobs (holes, pokes, specks) painted by `paint(p, old, t)`, `t` being
/// the smallest normalised radius of any blob at `p`.
pub(super) fn blobs(
    blobs: Vec<Blob>,
    paint: impl Fn(V2, C3, f32) -> C3 + Send + Sync + 'static,
) -> Defect {
    let b2 = blobs.clone();
    defect(
        move |p| b2.iter().any(|b| b.inside(p)),
        move |p, old| {
            let t = blobs.iter().map(|b| b.t(p)).fold(9.0, f32::min);
            paint(p, old, t)
        },
    )
}

/// A solid stroke (a cut, a thread) painted by `paint(p, old, t)`, `t` being the distance
/// to the stroke's centre line in half widths (< 1 inside).
pub(super) fn stroke(
    s: Stroke,
    paint: impl Fn(V2, C3, f32) -> C3 + Send + Sync + 'static,
) -> Defect {
    let r = s.clone();
    defect(
        move |p| r.inside(p),
        move |p, old| {
            let t = s.dist(p) / s.hw;
            paint(p, old, t)
        },
    )
}

/// Solid strokes (scratches, a crack and its branch) painted by `paint(p, old)`.
pub(super) fn strokes(
    strokes: Vec<Stroke>,
    paint: impl Fn(V2, C3) -> C3 + Send + Sync + 'static,
) -> Defect {
    defect(move |p| strokes.iter().any(|s| s.inside(p)), paint)
}

/// A refined defect that shows an altered copy of the scene (a squeezed capsule, a bumped
/// thread) inside the bounding `region`: the mask is where the copy differs.
pub(super) fn altered<S: CategoryScene + Send + Sync + 'static>(
    region: impl Fn(V2) -> bool + Send + Sync + 'static,
    scene: S,
) -> Defect {
    defect(region, move |p, _| scene.albedo(p)).refined()
}
