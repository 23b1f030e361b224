//! Random defect geometry: irregular blobs ([`Blob`], single or in clusters), thick
//! polylines ([`Stroke`]) and the random paths they follow (walks, Bézier curves).

use std::f32::consts::{PI, TAU};
use std::ops::RangeInclusive;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::geometry::{dist_segment, V2};
use super::noise::{rpoint, rr};

/// An irregular blob: a disc whose radius is modulated by a few angular harmonics.
#[derive(Debug, Clone, Copy)]
pub(super) struct Blob {
    c: V2,
    r: f32,
    h: [(f32, f32, f32); 3],
}

impl Blob {
    pub(super) fn new(c: V2, r: f32, wobble: f32, rng: &mut ChaCha8Rng) -> Blob {
        let mut h = [(0.0, 0.0, 0.0); 3];
        for (k, hk) in h.iter_mut().enumerate() {
            *hk = (rr(rng, 0.0, wobble), (k + 2) as f32, rr(rng, 0.0, TAU));
        }
        Blob { c, r, h }
    }
    /// A blob at `c` whose radius is drawn from `r` (the radius first, then the shape:
    /// the same draws as `Blob::new(c, rr(rng, r.0, r.1), wobble, rng)`).
    pub(super) fn random(c: V2, r: (f32, f32), wobble: f32, rng: &mut ChaCha8Rng) -> Blob {
        let r = rr(rng, r.0, r.1);
        Blob::new(c, r, wobble, rng)
    }
    /// A cluster of `count` (drawn as an `i32`) blobs, each offset from `centre` by up to
    /// `spread` per axis, with a radius drawn from `r`.
    pub(super) fn cluster(
        centre: V2,
        count: RangeInclusive<i32>,
        spread: f32,
        r: (f32, f32),
        wobble: f32,
        rng: &mut ChaCha8Rng,
    ) -> Vec<Blob> {
        let n: i32 = rng.random_range(count);
        (0..n)
            .map(|_| {
                let c = centre + rpoint(rng, -spread, spread);
                let r = rr(rng, r.0, r.1);
                Blob::new(c, r, wobble, rng)
            })
            .collect()
    }
    /// Normalised radius: < 1 inside, 1 on the outline.
    pub(super) fn t(&self, p: V2) -> f32 {
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
    pub(super) fn inside(&self, p: V2) -> bool {
        self.t(p) < 1.0
    }
}

/// A thick polyline.
#[derive(Debug, Clone)]
pub(super) struct Stroke {
    pub(super) pts: Vec<V2>,
    pub(super) hw: f32,
}

impl Stroke {
    /// A stroke along [`walk_through`]`(centre, len, n, turn)` with a length drawn from
    /// `len` and a half width drawn from `hw` (in that order, after the walk).
    pub(super) fn walk(
        centre: V2,
        len: (f32, f32),
        n: usize,
        turn: f32,
        hw: (f32, f32),
        rng: &mut ChaCha8Rng,
    ) -> Stroke {
        let len = rr(rng, len.0, len.1);
        let pts = walk_through(centre, len, n, turn, rng);
        let hw = rr(rng, hw.0, hw.1);
        Stroke { pts, hw }
    }
    pub(super) fn dist(&self, p: V2) -> f32 {
        self.pts
            .windows(2)
            .map(|w| dist_segment(p, w[0], w[1]))
            .fold(f32::MAX, f32::min)
    }
    pub(super) fn inside(&self, p: V2) -> bool {
        self.dist(p) < self.hw
    }
}

/// A random walk of `n` segments of length `seg`, turning by up to `turn` radians each step.
pub(super) fn random_walk(
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
pub(super) fn curve(c: V2, len: f32, rng: &mut ChaCha8Rng) -> Vec<V2> {
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
pub(super) fn walk_through(c: V2, len: f32, n: usize, turn: f32, rng: &mut ChaCha8Rng) -> Vec<V2> {
    let a = rr(rng, 0.0, TAU);
    let seg = len / n as f32;
    let start = c - V2::from_angle(a) * (len * 0.5);
    random_walk(start, a, n, (seg * 0.8, seg * 1.2), turn, rng)
}
