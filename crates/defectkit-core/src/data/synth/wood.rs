//! Wood (texture): warped growth rings with fibre streaks; defects `color` (a stain),
//! `hole` (knot holes) and `scratch` (parallel scratches).

use std::f32::consts::TAU;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::color::{mix3, mul3, C3};
use super::defects::{blobs, dark_or_bright, stain, strokes, Defect};
use super::geometry::{clamp01, Frame, V2};
use super::noise::{fbm, jitter3, rpoint, rr, vnoise};
use super::registry::CategoryScene;
use super::shapes::{walk_through, Blob, Stroke};
use super::Category;

pub(super) const CATEGORY: Category = Category {
    name: "wood",
    texture: true,
    grayscale: false,
    defects: &["color", "hole", "scratch"],
};

#[derive(Debug, Clone)]
pub(super) struct Wood {
    f: Frame,
    freq: f32,
    warp: f32,
    light: C3,
    dark: C3,
    seed: u32,
}

impl CategoryScene for Wood {
    fn new(rng: &mut ChaCha8Rng, _px: f32) -> Wood {
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
    fn defect(&self, name: &str, ns: u32, centre: V2, rng: &mut ChaCha8Rng) -> Option<Defect> {
        Some(match name {
            "color" => {
                let blob = Blob::random(centre, (0.08, 0.12), 0.2, rng);
                let col = dark_or_bright(rng, [0.16, 0.10, 0.06], [0.93, 0.84, 0.68]);
                stain(blob, col, rr(rng, 0.6, 0.8), ns)
            }
            "hole" => {
                let holes = Blob::cluster(centre, 1..=3, 0.08, (0.035, 0.055), 0.1, rng);
                blobs(holes, |_, _, t| {
                    if t < 0.75 {
                        [0.06, 0.04, 0.03]
                    } else {
                        [0.86, 0.72, 0.52]
                    }
                })
            }
            "scratch" => {
                let n: i32 = rng.random_range(1..=3);
                let col = dark_or_bright(rng, [0.18, 0.10, 0.05], [0.96, 0.88, 0.74]);
                let offset = V2::from_angle(rr(rng, 0.0, TAU)) * 0.03;
                let base = walk_through(centre, rr(rng, 0.4, 0.7), 2, 0.15, rng);
                let hw = rr(rng, 0.007, 0.011);
                let scratches: Vec<Stroke> = (0..n)
                    .map(|i| Stroke {
                        pts: base.iter().map(|&q| q + offset * i as f32).collect(),
                        hw,
                    })
                    .collect();
                strokes(scratches, move |p, _| {
                    mul3(col, 0.9 + 0.2 * vnoise(ns, p.x * 100.0, p.y * 100.0))
                })
            }
            _ => return None,
        })
    }
}
