//! Stable pseudo-randomness: integer hashes, value noise, fractal noise and cellular
//! (Worley) noise for the procedural textures, and the seeded-RNG helpers (uniform ranges,
//! coins, points, colour jitter, palette picks) through which every random draw is made.

use rand::Rng;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::color::C3;
use super::geometry::{mix, v2, V2};
use super::mix_seed;

#[inline]
pub(super) fn hash_u32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^= x >> 16;
    x
}
#[inline]
pub(super) fn hash2(seed: u32, i: i32, j: i32) -> u32 {
    hash_u32(
        seed ^ hash_u32((i as u32).wrapping_mul(0x9E37_79B1) ^ hash_u32(j as u32 ^ 0x85eb_ca6b)),
    )
}
#[inline]
pub(super) fn unit(h: u32) -> f32 {
    (h >> 8) as f32 * (1.0 / 16_777_216.0)
}

/// Value noise in [0, 1] with smooth interpolation, one lattice cell per unit.
pub(super) fn vnoise(seed: u32, x: f32, y: f32) -> f32 {
    let (fx, fy) = (x.floor(), y.floor());
    let (i, j) = (fx as i32, fy as i32);
    let (tx, ty) = (x - fx, y - fy);
    let (sx, sy) = (tx * tx * (3.0 - 2.0 * tx), ty * ty * (3.0 - 2.0 * ty));
    let a = unit(hash2(seed, i, j));
    let b = unit(hash2(seed, i + 1, j));
    let c = unit(hash2(seed, i, j + 1));
    let d = unit(hash2(seed, i + 1, j + 1));
    mix(mix(a, b, sx), mix(c, d, sx), sy)
}

/// Fractal value noise in [0, 1].
pub(super) fn fbm(seed: u32, x: f32, y: f32, octaves: u32) -> f32 {
    let (mut sum, mut amp, mut norm, mut f) = (0.0, 1.0, 0.0, 1.0);
    for o in 0..octaves {
        sum += amp * vnoise(seed.wrapping_add(o * 0x0100_0193), x * f, y * f);
        norm += amp;
        amp *= 0.5;
        f *= 2.03;
    }
    sum / norm
}

/// Cellular (Worley) noise: distance to the nearest and second-nearest feature point and
/// the nearest cell's hash.
pub(super) fn worley(seed: u32, x: f32, y: f32) -> (f32, f32, u32) {
    let (ix, iy) = (x.floor() as i32, y.floor() as i32);
    let (mut d1, mut d2, mut h1) = (9.0f32, 9.0f32, 0u32);
    for j in -1..=1 {
        for i in -1..=1 {
            let h = hash2(seed, ix + i, iy + j);
            let fx = (ix + i) as f32 + 0.1 + 0.8 * unit(h);
            let fy = (iy + j) as f32 + 0.1 + 0.8 * unit(hash_u32(h));
            let d = ((fx - x) * (fx - x) + (fy - y) * (fy - y)).sqrt();
            if d < d1 {
                d2 = d1;
                d1 = d;
                h1 = h;
            } else if d < d2 {
                d2 = d;
            }
        }
    }
    (d1, d2, h1)
}

/// The RNG for one set of seed parts (see [`mix_seed`]).
pub(super) fn rng_for(parts: &[u64]) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(mix_seed(parts))
}

pub(super) fn rr(rng: &mut ChaCha8Rng, lo: f32, hi: f32) -> f32 {
    rng.random_range(lo..hi)
}
pub(super) fn coin(rng: &mut ChaCha8Rng) -> bool {
    rng.random::<bool>()
}
/// `1.0` or `-1.0` from one [`coin`].
pub(super) fn sign(rng: &mut ChaCha8Rng) -> f32 {
    if coin(rng) {
        1.0
    } else {
        -1.0
    }
}
pub(super) fn rpoint(rng: &mut ChaCha8Rng, lo: f32, hi: f32) -> V2 {
    v2(rr(rng, lo, hi), rr(rng, lo, hi))
}
pub(super) fn jitter3(rng: &mut ChaCha8Rng, c: C3, amt: f32) -> C3 {
    [
        c[0] * (1.0 + rr(rng, -amt, amt)),
        c[1] * (1.0 + rr(rng, -amt, amt)),
        c[2] * (1.0 + rr(rng, -amt, amt)),
    ]
}
/// One colour of `palette`, uniformly (one `usize` draw in `0..palette.len()`).
pub(super) fn pick(rng: &mut ChaCha8Rng, palette: &[C3]) -> C3 {
    palette[rng.random_range(0..palette.len())]
}
