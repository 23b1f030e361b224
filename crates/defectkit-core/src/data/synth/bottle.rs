//! Bottle (object): a glass bottle seen from above (lip, inner ring, dark opening) on a
//! dark background; defects `broken_large` / `broken_small` (a piece of the lip missing)
//! and `contamination` (a speck with a fibre inside).

use std::f32::consts::{PI, TAU};

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::color::{add3, gray, lum, mix3, mul3, C3};
use super::defects::{blob_rings, defect, Defect};
use super::geometry::{cover, smoothstep, v2, V2};
use super::noise::{coin, fbm, jitter3, rpoint, rr, vnoise};
use super::registry::CategoryScene;
use super::shapes::{curve, Blob, Stroke};
use super::Category;

pub(super) const CATEGORY: Category = Category {
    name: "bottle",
    texture: false,
    grayscale: false,
    defects: &["broken_large", "broken_small", "contamination"],
};

#[derive(Debug, Clone)]
pub(super) struct Bottle {
    c: V2,
    r: f32,
    hl: f32,
    glass: C3,
    bg: C3,
    seed: u32,
    px: f32,
}

impl Bottle {
    fn background(&self, p: V2) -> C3 {
        mul3(
            self.bg,
            0.85 + 0.3 * fbm(self.seed, p.x * 4.0, p.y * 4.0, 3),
        )
    }
}

impl CategoryScene for Bottle {
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
    fn defect(&self, name: &str, ns: u32, _centre: V2, rng: &mut ChaCha8Rng) -> Option<Defect> {
        Some(match name {
            "broken_large" | "broken_small" => {
                let b = self.clone();
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
                // The piece missing from the lip: a fresh edge, then the background below.
                blob_rings(blob, move |p, _, t| {
                    if t > 0.8 {
                        let n = vnoise(ns, p.x * 150.0, p.y * 150.0);
                        [0.80 + 0.15 * n, 0.88 + 0.1 * n, 0.78]
                    } else {
                        b.background(p)
                    }
                })
                .within(move |p| (p - bc).len() < br)
                .refined()
            }
            "contamination" => {
                let a = rr(rng, 0.0, TAU);
                let c = self.c + V2::from_angle(a) * (self.r * rr(rng, 0.2, 0.68));
                let blob = Blob::random(c, (0.04, 0.065), 0.35, rng);
                let fibre = Stroke {
                    pts: curve(c, rr(rng, 0.12, 0.22), rng),
                    hw: rr(rng, 0.005, 0.008),
                };
                let light = coin(rng);
                defect(
                    move |p| blob.inside(p) || fibre.inside(p),
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
            _ => return None,
        })
    }
}
