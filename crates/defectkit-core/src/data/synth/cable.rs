//! Cable (object): the cross-section of a three-core cable (coloured insulation around
//! copper strands, in a sheath); defects `cut_inner_insulation`, `missing_wire` and
//! `poke_insulation`.

use std::f32::consts::{PI, TAU};

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::color::{gray, mix3, mul3, C3};
use super::defects::{blob_rings, defect, Defect};
use super::geometry::{cover, smoothstep, v2, Frame, V2};
use super::noise::{coin, fbm, jitter3, rpoint, rr, vnoise, worley};
use super::registry::CategoryScene;
use super::shapes::Blob;
use super::Category;

pub(super) const CATEGORY: Category = Category {
    name: "cable",
    texture: false,
    grayscale: false,
    defects: &["cut_inner_insulation", "missing_wire", "poke_insulation"],
};

#[derive(Debug, Clone)]
pub(super) struct Cable {
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
}

impl CategoryScene for Cable {
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
    fn defect(&self, name: &str, ns: u32, _centre: V2, rng: &mut ChaCha8Rng) -> Option<Defect> {
        Some(match name {
            "missing_wire" => {
                let c = self.clone();
                let k: usize = rng.random_range(0..3);
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
            "cut_inner_insulation" => {
                let c = self.clone();
                let k: usize = rng.random_range(0..3);
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
            "poke_insulation" => {
                let c = self.clone();
                let a = rr(rng, 0.0, TAU);
                let centre_l = V2::from_angle(a) * (c.r * rr(rng, 0.86, 0.93));
                let cw = c.f.world(centre_l);
                let blob = Blob::random(cw, (0.045, 0.06), 0.2, rng);
                let c2 = c.clone();
                // A puncture of the sheath and filler only, never of a wire.
                blob_rings(blob, move |p, _, t| {
                    if t < 0.65 {
                        gray(0.03)
                    } else {
                        mul3(c.sheath, 1.3 + 0.2 * vnoise(ns, p.x * 90.0, p.y * 90.0))
                    }
                })
                .within(move |p| {
                    let q = c2.f.local(p);
                    q.len() < c2.r && (0..3).all(|k| (q - c2.wire_centre(k)).len() > c2.wire_r)
                })
            }
            _ => return None,
        })
    }
}
