//! Metal nut (object): a hexagonal nut with faceted, brushed faces and a chamfered hole on
//! a dark background; defects `bent` (a folded corner), `color` (paint) and `scratch`.

use std::f32::consts::{PI, TAU};

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::color::{gray, mix3, mul3, C3};
use super::defects::{defect, strokes, Defect};
use super::geometry::{cover, sd_hexagon, v2, Frame, V2};
use super::noise::{coin, fbm, jitter3, pick, rpoint, rr, vnoise};
use super::registry::CategoryScene;
use super::shapes::{random_walk, Blob, Stroke};
use super::Category;

pub(super) const CATEGORY: Category = Category {
    name: "metal_nut",
    texture: false,
    grayscale: false,
    defects: &["bent", "color", "scratch"],
};

#[derive(Debug, Clone)]
pub(super) struct MetalNut {
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
}

impl CategoryScene for MetalNut {
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
    fn albedo(&self, p: V2) -> C3 {
        let bg = self.background(p);
        let (cov, c) = self.shade_local(self.f.local(p));
        mix3(bg, c, cov)
    }
    fn defect(&self, name: &str, ns: u32, _centre: V2, rng: &mut ChaCha8Rng) -> Option<Defect> {
        Some(match name {
            "bent" => {
                let m = self.clone();
                let k: i32 = rng.random_range(0..6);
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
            "color" => {
                let m2 = self.clone();
                let palette = [
                    [0.80, 0.15, 0.10],
                    [0.12, 0.25, 0.80],
                    [0.85, 0.75, 0.10],
                    [0.05, 0.05, 0.05],
                ];
                let col = pick(rng, &palette);
                let a = rr(rng, 0.0, TAU);
                let cl = V2::from_angle(a) * rr(rng, 0.16, 0.24);
                let blob = Blob::random(self.f.world(cl), (0.06, 0.09), 0.25, rng);
                defect(
                    move |p| blob.inside(p) && m2.shade_local(m2.f.local(p)).0 > 0.5,
                    move |p, old| mix3(old, col, 0.65 + 0.2 * vnoise(ns, p.x * 50.0, p.y * 50.0)),
                )
            }
            "scratch" => {
                let m2 = self.clone();
                let a = rr(rng, 0.0, TAU);
                // Mostly tangential, so the scratch stays on the metal rather than crossing
                // the hole.
                let len = rr(rng, 0.25, 0.38);
                let mid = V2::from_angle(a) * rr(rng, 0.19, 0.23);
                let dir = a + PI / 2.0 + rr(rng, -0.3, 0.3);
                let start = mid - V2::from_angle(dir) * (len * 0.5);
                let local = random_walk(start, dir, 3, (len / 4.0, len / 2.5), 0.35, rng);
                let s = Stroke {
                    pts: local.iter().map(|&q| self.f.world(q)).collect(),
                    hw: rr(rng, 0.008, 0.012),
                };
                let col = if coin(rng) { 0.97 } else { 0.12 };
                strokes(vec![s], move |p, _| {
                    gray(col + 0.03 * (vnoise(ns, p.x * 200.0, p.y * 200.0) - 0.5))
                })
                .within(move |p| m2.shade_local(m2.f.local(p)).0 > 0.5)
            }
            _ => return None,
        })
    }
}
