//! Tile (texture): terrazzo, coloured chips in a grainy binder; defects `crack` (with a
//! branch), `glue_strip`, `oil` (a dark, glossy patch) and `rough` (a pitted patch).

use std::f32::consts::TAU;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::color::{add3, gray, mix3, mul3, C3};
use super::defects::{blob, dark_or_bright, defect, strokes, Defect};
use super::geometry::{cover, v2, Frame, V2};
use super::noise::{fbm, hash2, hash_u32, jitter3, rpoint, rr, unit, vnoise, worley};
use super::registry::CategoryScene;
use super::shapes::{random_walk, walk_through, Blob, Stroke};
use super::Category;

pub(super) const CATEGORY: Category = Category {
    name: "tile",
    texture: true,
    grayscale: false,
    defects: &["crack", "glue_strip", "oil", "rough"],
};

#[derive(Debug, Clone)]
pub(super) struct Tile {
    f: Frame,
    cells: f32,
    bg: C3,
    palette: [C3; 3],
    seed: u32,
    px: f32,
}

impl CategoryScene for Tile {
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
    fn defect(&self, name: &str, ns: u32, centre: V2, rng: &mut ChaCha8Rng) -> Option<Defect> {
        Some(match name {
            "crack" => {
                let len = rr(rng, 0.4, 0.65);
                let pts = walk_through(centre, len, 9, 0.6, rng);
                let hw = rr(rng, 0.007, 0.01);
                let from = pts[rng.random_range(2..7)];
                let main = Stroke { pts, hw };
                let branch = Stroke {
                    pts: random_walk(from, rr(rng, 0.0, TAU), 3, (0.04, 0.07), 0.6, rng),
                    hw: hw * 0.7,
                };
                strokes(vec![main, branch], move |p, _| {
                    gray(0.08 + 0.06 * vnoise(ns, p.x * 200.0, p.y * 200.0))
                })
            }
            "glue_strip" => {
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
            "oil" => {
                let b = Blob::random(centre, (0.06, 0.1), 0.2, rng);
                blob(b, move |p, old| {
                    let sheen = vnoise(ns, p.x * 25.0, p.y * 25.0);
                    let dark = mix3(old, [0.12, 0.11, 0.09], 0.65);
                    if sheen > 0.62 {
                        add3(dark, 0.45 * (sheen - 0.62) / 0.38 + 0.2)
                    } else {
                        dark
                    }
                })
            }
            "rough" => {
                let b = Blob::random(centre, (0.06, 0.1), 0.2, rng);
                blob(b, move |p, old| {
                    let h = hash2(ns, (p.x * 160.0) as i32, (p.y * 160.0) as i32);
                    let s = if h & 1 == 0 { 1.0 } else { -1.0 };
                    add3(old, s * (0.14 + 0.14 * unit(h)))
                })
            }
            _ => return None,
        })
    }
}
