//! Leather (texture): a cellular grain with ridges and pores; defects `color` (a stain),
//! `cut`, `fold` (a crease that compresses and shades the grain) and `poke` (punctures).

use std::f32::consts::{PI, TAU};

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::color::{mix3, mul3, C3};
use super::defects::{blobs, defect, stain, stroke, Defect};
use super::geometry::{smoothstep, v2, Frame, V2};
use super::noise::{fbm, jitter3, pick, rpoint, rr, unit, worley};
use super::registry::CategoryScene;
use super::shapes::{Blob, Stroke};
use super::Category;

pub(super) const CATEGORY: Category = Category {
    name: "leather",
    texture: true,
    grayscale: false,
    defects: &["color", "cut", "fold", "poke"],
};

#[derive(Debug, Clone)]
pub(super) struct Leather {
    f: Frame,
    cells: f32,
    base: C3,
    seed: u32,
}

impl CategoryScene for Leather {
    fn new(rng: &mut ChaCha8Rng, _px: f32) -> Leather {
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
    fn defect(&self, name: &str, ns: u32, centre: V2, rng: &mut ChaCha8Rng) -> Option<Defect> {
        Some(match name {
            "color" => {
                let palette = [
                    [0.05, 0.04, 0.04],
                    [0.85, 0.80, 0.70],
                    [0.20, 0.30, 0.70],
                    [0.80, 0.60, 0.35],
                ];
                let col = pick(rng, &palette);
                let blob = Blob::random(centre, (0.08, 0.12), 0.2, rng);
                stain(blob, col, rr(rng, 0.6, 0.8), ns)
            }
            "cut" => {
                let s = Stroke::walk(centre, (0.3, 0.5), 3, 0.5, (0.01, 0.014), rng);
                stroke(s, |_, _, t| {
                    if t < 0.5 {
                        [0.04, 0.03, 0.03]
                    } else {
                        [0.78, 0.62, 0.50]
                    }
                })
            }
            "fold" => {
                let l = self.clone();
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
                        let shade =
                            1.0 + b.signum() * 0.45 * (0.6 + 0.4 * (PI * b / 2.0).cos()) * env;
                        mul3(l.albedo(src), shade)
                    },
                )
            }
            "poke" => {
                let holes = Blob::cluster(centre, 3..=6, 0.06, (0.02, 0.032), 0.12, rng);
                blobs(holes, |_, old, t| {
                    if t < 0.6 {
                        [0.04, 0.03, 0.03]
                    } else {
                        mix3(old, [0.85, 0.7, 0.6], 0.7)
                    }
                })
            }
            _ => return None,
        })
    }
}
