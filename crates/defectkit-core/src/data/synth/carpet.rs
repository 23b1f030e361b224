//! Carpet (texture): a woven plaid of warp and weft threads with fibre noise; defects
//! `color` (a stain), `cut` (a cut through the pile), `hole` and `thread` (a stray thread).

use std::f32::consts::PI;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::color::{gray, mix3, mul3, C3};
use super::defects::{blob_rings, dark_or_bright, stain, stroke, Defect};
use super::geometry::{Frame, V2};
use super::noise::{fbm, jitter3, pick, rpoint, rr, vnoise};
use super::registry::CategoryScene;
use super::shapes::{curve, Blob, Stroke};
use super::Category;

pub(super) const CATEGORY: Category = Category {
    name: "carpet",
    texture: true,
    grayscale: false,
    defects: &["color", "cut", "hole", "thread"],
};

#[derive(Debug, Clone)]
pub(super) struct Carpet {
    f: Frame,
    period: f32,
    warp: C3,
    weft: C3,
    seed: u32,
}

impl CategoryScene for Carpet {
    fn new(rng: &mut ChaCha8Rng, _px: f32) -> Carpet {
        let hue = rr(rng, -0.04, 0.04);
        Carpet {
            f: Frame::new(rpoint(rng, 0.0, 1.0), rr(rng, -0.12, 0.12), 1.0),
            period: rr(rng, 0.036, 0.044),
            warp: jitter3(rng, [0.50 + hue, 0.40, 0.60 - hue], 0.03),
            weft: jitter3(rng, [0.42, 0.35 + hue, 0.53], 0.03),
            seed: rng.random(),
        }
    }
    fn albedo(&self, p: V2) -> C3 {
        let q = self.f.local(p) * (1.0 / self.period);
        let (fi, fj) = (q.x.floor(), q.y.floor());
        let (fa, fb) = (q.x - fi, q.y - fj);
        let over = ((fi as i32).wrapping_add(fj as i32) & 1) == 0;
        let (across, along, col, fib) = if over {
            (fa, fb, self.warp, vnoise(self.seed, q.x * 6.0, q.y * 1.3))
        } else {
            (
                fb,
                fa,
                self.weft,
                vnoise(self.seed ^ 0x55, q.x * 1.3, q.y * 6.0),
            )
        };
        let shade = 0.45 + 0.55 * (PI * across).sin().sqrt() * (0.8 + 0.2 * (PI * along).sin());
        let low = fbm(self.seed.wrapping_add(11), p.x * 3.0, p.y * 3.0, 3);
        mul3(col, shade * (0.86 + 0.28 * low) * (0.88 + 0.24 * fib))
    }
    fn defect(&self, name: &str, ns: u32, centre: V2, rng: &mut ChaCha8Rng) -> Option<Defect> {
        Some(match name {
            "color" => {
                let blob = Blob::random(centre, (0.09, 0.14), 0.15, rng);
                let col = dark_or_bright(rng, [0.16, 0.11, 0.07], [0.92, 0.85, 0.50]);
                stain(blob, col, rr(rng, 0.7, 0.85), ns)
            }
            "cut" => {
                let s = Stroke::walk(centre, (0.35, 0.55), 3, 0.4, (0.011, 0.016), rng);
                stroke(s, move |p, _, t| {
                    let fib = vnoise(ns, p.x * 300.0, p.y * 300.0);
                    if t < 0.55 {
                        gray(0.07 + 0.06 * fib)
                    } else {
                        [0.86 * (0.8 + 0.2 * fib), 0.8, 0.84]
                    }
                })
            }
            "hole" => {
                let blob = Blob::random(centre, (0.07, 0.1), 0.18, rng);
                blob_rings(blob, move |p, old, t| {
                    let fib = vnoise(ns, p.x * 200.0, p.y * 200.0);
                    if t < 0.72 {
                        [0.06 + 0.05 * fib, 0.05 + 0.04 * fib, 0.05]
                    } else {
                        mix3(old, [0.88, 0.82, 0.88], 0.6 + 0.3 * fib)
                    }
                })
            }
            "thread" => {
                let palette = [
                    [0.95, 0.85, 0.20],
                    [0.15, 0.80, 0.85],
                    [0.95, 0.95, 0.92],
                    [0.08, 0.08, 0.08],
                    [0.85, 0.15, 0.12],
                ];
                let col = pick(rng, &palette);
                let s = Stroke {
                    pts: curve(centre, rr(rng, 0.45, 0.7), rng),
                    hw: rr(rng, 0.008, 0.012),
                };
                stroke(s, move |_, _, t| {
                    mul3(col, 0.65 + 0.35 * (1.0 - t * t).max(0.0).sqrt())
                })
            }
            _ => return None,
        })
    }
}
