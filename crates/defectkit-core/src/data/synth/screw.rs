//! Screw (object, grayscale): a machine screw with a rounded head and a threaded, pointed
//! shaft on a light background; defects `manipulated_front` (a cut or bent tip),
//! `scratch_head` and `thread_side` (a damaged thread).

use std::f32::consts::{PI, TAU};

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::color::{gray, C3};
use super::defects::{altered, defect, strokes, Defect};
use super::geometry::{cover, mix, sd_round_box, v2, Frame, V2};
use super::noise::{coin, fbm, rpoint, rr, sign, vnoise};
use super::registry::CategoryScene;
use super::shapes::Stroke;
use super::Category;

pub(super) const CATEGORY: Category = Category {
    name: "screw",
    texture: false,
    grayscale: true,
    defects: &["manipulated_front", "scratch_head", "thread_side"],
};

/// A local bulge or dent of the thread on one side (the `thread_side` defect).
#[derive(Debug, Clone, Copy)]
struct ThreadBump {
    x: f32,
    side: f32,
    w: f32,
    amp: f32,
}

#[derive(Debug, Clone)]
pub(super) struct Screw {
    f: Frame,
    len: f32,
    head_len: f32,
    head_h: f32,
    shaft_r: f32,
    depth: f32,
    pitch: f32,
    phase: f32,
    tip_len: f32,
    tip_cut: Option<f32>,
    bump: Option<ThreadBump>,
    bg: f32,
    seed: u32,
    px: f32,
}

impl Screw {
    fn x0(&self) -> f32 {
        -self.len / 2.0
    }
    fn x1(&self) -> f32 {
        self.tip_cut.unwrap_or(self.len / 2.0)
    }
    fn background(&self, p: V2) -> f32 {
        self.bg + 0.08 * (fbm(self.seed, p.x * 4.0, p.y * 4.0, 3) - 0.5)
    }
    /// Thread profile radius at `x` on `side` (±1); the second value is the thread phase.
    fn radius(&self, x: f32, side: f32) -> (f32, f32) {
        let ph = ((x - self.x0()) / self.pitch + self.phase + side * 0.25).rem_euclid(1.0);
        let saw = 1.0 - (ph - 0.5).abs() * 2.0;
        let mut r = self.shaft_r + self.depth * saw;
        let mut groove = saw;
        if let Some(b) = self.bump {
            if b.side == side {
                let t = (x - b.x) / b.w;
                if t.abs() < 1.0 {
                    let e = 1.0 - t * t;
                    r = mix(r, self.shaft_r + 0.5 * self.depth + b.amp, e);
                    groove = mix(groove, 0.5, e);
                }
            }
        }
        if self.tip_cut.is_none() {
            let from_end = self.x1() - x;
            if from_end < self.tip_len {
                r *= (from_end / self.tip_len).max(0.0).powf(0.8);
            }
        }
        (r, groove)
    }
    /// Coverage and grey level of the screw in local coordinates.
    fn shade_local(&self, q: V2) -> (f32, f32) {
        let pxl = self.px / self.f.scale;
        let hx = self.x0() + self.head_len / 2.0;
        let dh = sd_round_box(q - v2(hx, 0.0), v2(self.head_len / 2.0, self.head_h), 0.025);
        let xs = self.x0() + self.head_len;
        let side = if q.y >= 0.0 { 1.0 } else { -1.0 };
        let (r, groove) = self.radius(q.x, side);
        let ds = (q.y.abs() - r).max(xs - 0.01 - q.x).max(q.x - self.x1());
        let d = dh.min(ds);
        let cov = cover(d, pxl);
        if cov <= 0.0 {
            return (0.0, 0.0);
        }
        let g = if dh < ds {
            let n = q.y / self.head_h;
            let ridge = ((q.x - self.x0()) / self.head_len * PI).sin();
            0.2 + 0.32 * (-(n + 0.3) * (n + 0.3) / 0.05).exp() + 0.08 * ridge
        } else {
            let n = (q.y / r.max(1e-3)).clamp(-1.0, 1.0);
            0.16 + 0.36 * (-(n + 0.35) * (n + 0.35) / 0.06).exp() + 0.12 * groove
        };
        let tex = 0.06 * (vnoise(self.seed.wrapping_add(9), q.x * 150.0, q.y * 20.0) - 0.5);
        (cov, g + tex)
    }
}

impl CategoryScene for Screw {
    fn new(rng: &mut ChaCha8Rng, px: f32) -> Screw {
        Screw {
            f: Frame::new(
                v2(0.5, 0.5) + rpoint(rng, -0.06, 0.06),
                rr(rng, 0.0, TAU),
                rr(rng, 0.96, 1.04),
            ),
            len: rr(rng, 0.62, 0.68),
            head_len: rr(rng, 0.13, 0.15),
            head_h: rr(rng, 0.12, 0.13),
            shaft_r: rr(rng, 0.048, 0.054),
            depth: rr(rng, 0.011, 0.014),
            pitch: rr(rng, 0.03, 0.034),
            phase: rr(rng, 0.0, 1.0),
            tip_len: rr(rng, 0.06, 0.08),
            tip_cut: None,
            bump: None,
            bg: rr(rng, 0.74, 0.80),
            seed: rng.random(),
            px,
        }
    }
    fn albedo(&self, p: V2) -> C3 {
        let bg = self.background(p);
        let (cov, g) = self.shade_local(self.f.local(p));
        gray(mix(bg, g, cov))
    }
    fn defect(&self, name: &str, ns: u32, _centre: V2, rng: &mut ChaCha8Rng) -> Option<Defect> {
        Some(match name {
            "manipulated_front" => {
                let s = self.clone();
                let x1 = s.x1();
                let cut = rr(rng, 0.09, 0.14);
                let mut m = s.clone();
                let bend = coin(rng);
                let beta = rr(rng, 0.25, 0.45) * sign(rng);
                let xb = x1 - cut - 0.03;
                if !bend {
                    m.tip_cut = Some(x1 - cut);
                }
                let s2 = s.clone();
                defect(
                    move |p| {
                        let q = s2.f.local(p);
                        q.x > xb - 0.01 && q.y.abs() < 0.16
                    },
                    move |p, _| {
                        let q = m.f.local(p);
                        let src = if bend && q.x > xb {
                            (q - v2(xb, 0.0)).rot(-beta) + v2(xb, 0.0)
                        } else {
                            q
                        };
                        let (cov, g) = m.shade_local(src);
                        gray(mix(m.background(p), g, cov))
                    },
                )
                .refined()
            }
            "scratch_head" => {
                let s = self;
                let s2 = s.clone();
                let x0 = s.x0();
                let n: i32 = rng.random_range(1..=3);
                let scratches: Vec<Stroke> = (0..n)
                    .map(|_| {
                        let a = v2(x0 + rr(rng, 0.0, s.head_len), -s.head_h * 1.2);
                        let b = v2(x0 + rr(rng, 0.0, s.head_len), s.head_h * 1.2);
                        Stroke {
                            pts: vec![s.f.world(a), s.f.world(b)],
                            hw: rr(rng, 0.011, 0.016),
                        }
                    })
                    .collect();
                let xs = x0 + s.head_len;
                strokes(scratches, move |p, _| {
                    gray(0.88 + 0.08 * vnoise(ns, p.x * 150.0, p.y * 150.0))
                })
                .within(move |p| {
                    let q = s2.f.local(p);
                    q.x < xs - 0.005 && s2.shade_local(q).0 > 0.5
                })
            }
            "thread_side" => {
                let s = self;
                let mut m = s.clone();
                let side = sign(rng);
                let xs = s.x0() + s.head_len;
                let b = ThreadBump {
                    x: rr(rng, xs + 0.06, s.x1() - s.tip_len - 0.04),
                    side,
                    w: rr(rng, 0.06, 0.09),
                    amp: if coin(rng) {
                        rr(rng, 0.015, 0.025)
                    } else {
                        -rr(rng, 0.02, 0.03)
                    },
                };
                m.bump = Some(b);
                let s2 = s.clone();
                altered(
                    move |p| {
                        let q = s2.f.local(p);
                        (q.x - b.x).abs() < b.w && q.y * side > 0.0
                    },
                    m,
                )
            }
            _ => return None,
        })
    }
}
