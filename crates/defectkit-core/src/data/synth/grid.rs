//! Grid (texture, grayscale): a woven wire mesh with shadows over a noisy sheet; defects
//! `bent` (wires pushed aside), `broken` (missing wire pieces), `glue` and
//! `metal_contamination` (metal specks).

use std::f32::consts::TAU;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::color::{gray, lum, C3};
use super::defects::{blob, blobs, defect, Defect};
use super::geometry::{clamp01, cover, mix, Frame, V2};
use super::noise::{coin, fbm, rpoint, rr, vnoise};
use super::registry::CategoryScene;
use super::shapes::Blob;
use super::Category;

pub(super) const CATEGORY: Category = Category {
    name: "grid",
    texture: true,
    grayscale: true,
    defects: &["bent", "broken", "glue", "metal_contamination"],
};

#[derive(Debug, Clone)]
pub(super) struct Grid {
    f: Frame,
    period: f32,
    hw: f32,
    bg: f32,
    wire: f32,
    seed: u32,
    px: f32,
}

impl Grid {
    fn background(&self, p: V2) -> f32 {
        let q = self.f.local(p);
        self.bg
            + 0.10 * (fbm(self.seed, p.x * 5.0, p.y * 5.0, 3) - 0.5)
            + 0.06 * (vnoise(self.seed.wrapping_add(3), q.x * 4.0, q.y * 90.0) - 0.5)
    }
}

impl CategoryScene for Grid {
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
    fn defect(&self, name: &str, ns: u32, centre: V2, rng: &mut ChaCha8Rng) -> Option<Defect> {
        Some(match name {
            "bent" => {
                let g = self.clone();
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
            "broken" => {
                let g = self.clone();
                let q0 = g.f.local(centre) * (1.0 / g.period);
                let vertical = coin(rng);
                let n: i32 = rng.random_range(2..=3);
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
            "glue" => {
                let b = Blob::random(centre, (0.08, 0.12), 0.2, rng);
                let col = if coin(rng) { 0.96 } else { 0.06 };
                blob(b, move |p, old| {
                    let sheen = vnoise(ns, p.x * 30.0, p.y * 30.0);
                    gray(mix(lum(old), col, 0.6 + 0.25 * sheen))
                })
            }
            "metal_contamination" => {
                let specks = Blob::cluster(centre, 4..=7, 0.07, (0.02, 0.035), 0.3, rng);
                blobs(specks, move |p, _, t| {
                    if t > 0.7 {
                        gray(0.04)
                    } else {
                        gray(0.9 + 0.08 * vnoise(ns, p.x * 200.0, p.y * 200.0))
                    }
                })
            }
            _ => return None,
        })
    }
}
