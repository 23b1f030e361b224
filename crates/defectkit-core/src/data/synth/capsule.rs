//! Capsule (object): a two-tone pill with a printed imprint on a light background; defects
//! `crack`, `faulty_imprint` (missing glyphs, smeared ink), `poke` (a dent) and `squeeze`
//! (a pinched outline).

use std::f32::consts::{PI, TAU};

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::color::{add3, gray, lum, mix3, mul3, C3};
use super::defects::{altered, defect, strokes, Defect};
use super::geometry::{cover, v2, Frame, V2};
use super::noise::{coin, fbm, jitter3, rpoint, rr, sign};
use super::registry::CategoryScene;
use super::shapes::{random_walk, Blob, Stroke};
use super::Category;

pub(super) const CATEGORY: Category = Category {
    name: "capsule",
    texture: false,
    grayscale: false,
    defects: &["crack", "faulty_imprint", "poke", "squeeze"],
};

/// A pinch of the outline on one side (the `squeeze` defect).
#[derive(Debug, Clone, Copy)]
struct Squeeze {
    x: f32,
    side: f32,
    w: f32,
    amp: f32,
}

#[derive(Debug, Clone)]
pub(super) struct Capsule {
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
}

impl CategoryScene for Capsule {
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
    fn defect(&self, name: &str, _ns: u32, _centre: V2, rng: &mut ChaCha8Rng) -> Option<Defect> {
        Some(match name {
            "crack" => {
                let c = self.clone();
                // A crack runs roughly along the capsule (in local coordinates), then is
                // mapped to the image, so most of it lies on the body.
                let len = rr(rng, 0.25, 0.35);
                let a = rr(rng, -0.5, 0.5) + if coin(rng) { 0.0 } else { PI };
                let mid = v2(rr(rng, -0.12, 0.12), rr(rng, -0.04, 0.04));
                let start = mid - V2::from_angle(a) * (len * 0.5);
                let local = random_walk(start, a, 6, (len / 7.0, len / 5.0), 0.6, rng);
                let s = Stroke {
                    pts: local.iter().map(|&q| c.f.world(q)).collect(),
                    hw: rr(rng, 0.01, 0.014),
                };
                strokes(vec![s], |_, old| {
                    if lum(old) > 0.3 {
                        gray(0.03)
                    } else {
                        gray(0.75)
                    }
                })
                .within(move |p| c.sd(c.f.local(p)) < -0.01)
            }
            "faulty_imprint" => {
                let mut broken = self.clone();
                let mut print = [true; 3];
                match rng.random_range(0..4) {
                    0 => print = [false; 3],
                    k => print[k - 1] = false,
                }
                broken.print = print;
                let sc = self.f.world(v2(rr(rng, 0.06, 0.2), rr(rng, -0.05, 0.05)));
                let smear = Blob::random(sc, (0.035, 0.05), 0.3, rng);
                let c2 = self.clone();
                let ink = self.ink;
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
            "poke" => {
                let c2 = self.clone();
                let q = v2(rr(rng, -0.22, 0.22), rr(rng, -0.05, 0.05));
                let cw = self.f.world(q);
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
            "squeeze" => {
                let mut s = self.clone();
                let side = sign(rng);
                let sq = Squeeze {
                    x: rr(rng, -0.2, 0.2),
                    side,
                    w: rr(rng, 0.05, 0.08),
                    amp: rr(rng, 0.035, 0.05),
                };
                s.squeeze = Some(sq);
                let c2 = self.clone();
                altered(
                    move |p| {
                        let q = c2.f.local(p);
                        q.y * side > 0.0 && (q.x - sq.x).abs() < sq.w * 2.5
                    },
                    s,
                )
            }
            _ => return None,
        })
    }
}
