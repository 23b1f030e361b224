//! Lighting and sensor: the global photometric variation of good images (gain, contrast,
//! offset, gradient, vignette, white balance) and the per-pixel sensor noise, applied
//! identically to good and defective images when an albedo is turned into 8-bit pixels.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::color::C3;
use super::geometry::V2;
use super::noise::{hash2, jitter3, rr};

/// Global photometric variation of good images: it dominates any defect's effect on the
/// image mean, so global statistics cannot detect defects.
#[derive(Debug, Clone)]
pub(super) struct Lighting {
    gain: f32,
    contrast: f32,
    offset: f32,
    gx: f32,
    gy: f32,
    vignette: f32,
    wb: C3,
    sigma: f32,
    noise_seed: u32,
    gray: bool,
}

impl Lighting {
    pub(super) fn new(rng: &mut ChaCha8Rng, gray: bool) -> Lighting {
        Lighting {
            gain: rr(rng, 0.78, 1.18),
            contrast: rr(rng, 0.85, 1.15),
            offset: rr(rng, -0.035, 0.035),
            gx: rr(rng, -0.12, 0.12),
            gy: rr(rng, -0.12, 0.12),
            vignette: rr(rng, 0.0, 0.15),
            wb: if gray {
                [1.0; 3]
            } else {
                jitter3(rng, [1.0; 3], 0.03)
            },
            sigma: rr(rng, 0.006, 0.016),
            noise_seed: rng.random(),
            gray,
        }
    }
    pub(super) fn apply(&self, a: C3, p: V2, x: u32, y: u32) -> [u8; 3] {
        let (u, v) = (p.x - 0.5, p.y - 0.5);
        let field =
            self.gain * (1.0 + self.gx * u + self.gy * v - self.vignette * (u * u + v * v) * 2.0);
        let mut out = [0u8; 3];
        for (c, o) in out.iter_mut().enumerate() {
            let ch = if self.gray { 0 } else { c as u32 };
            let h = hash2(
                self.noise_seed ^ ch.wrapping_mul(0x2545_F491),
                x as i32,
                y as i32,
            );
            let s = (h & 0xff) + ((h >> 8) & 0xff) + ((h >> 16) & 0xff) + (h >> 24);
            let n = (s as f32 - 510.0) * (1.0 / 147.8);
            let val = ((a[c] - 0.5) * self.contrast + 0.5) * field * self.wb[c]
                + self.offset
                + self.sigma * n;
            *o = (val * 255.0).round().clamp(0.0, 255.0) as u8;
        }
        out
    }
}
