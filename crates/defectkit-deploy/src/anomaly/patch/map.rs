//! From h×w patch scores to a side × side anomaly map, as the original PaDiM and PatchCore
//! code does it: PyTorch's `F.interpolate(mode="bilinear", align_corners=False)` to the
//! input's size, then `scipy.ndimage.gaussian_filter(mode="reflect", truncate=4.0)`
//! smoothing. (anomalib differs slightly: nearest upsampling for PatchCore and "mirror"
//! padding in its blur.) Both are computed in f64 and rounded to f32 once at the end. When
//! the side is not a multiple of the stride, the ⌈side/stride⌉ grid is stretched over the
//! side, shifting the map by up to half a stride at the far edge.

use super::MapOptions;

/// For each output index along one axis (`out` long, from an axis `input` long): the two
/// source indices and their weights, by PyTorch's `align_corners=False` rule: source
/// coordinate x = (o + ½)·input/out − ½, clamped below at 0; i₀ = ⌊x⌋, i₁ = min(i₀ + 1,
/// input − 1), weights (1 − λ, λ) with λ = x − i₀.
fn linear_taps(input: usize, out: usize) -> Vec<(usize, usize, f64, f64)> {
    let scale = input as f64 / out as f64;
    (0..out)
        .map(|o| {
            let x = ((o as f64 + 0.5) * scale - 0.5).max(0.0);
            let i0 = (x as usize).min(input - 1);
            let i1 = if i0 + 1 < input { i0 + 1 } else { i0 };
            let lambda = x - i0 as f64;
            (i0, i1, 1.0 - lambda, lambda)
        })
        .collect()
}

/// Bilinear upsampling in f64 (see [`upsample_bilinear`]).
fn upsample_f64(patch: &[f32], h: usize, w: usize, side: usize) -> Vec<f64> {
    let cols = linear_taps(w, side);
    let rows = linear_taps(h, side);
    // Along the width first: h × side.
    let mut wide = vec![0.0f64; h * side];
    for i in 0..h {
        let src = &patch[i * w..(i + 1) * w];
        for (o, &(j0, j1, a, b)) in cols.iter().enumerate() {
            wide[i * side + o] = a * src[j0] as f64 + b * src[j1] as f64;
        }
    }
    // Then along the height: PyTorch's h0λ·(w0λ·x₀₀ + w1λ·x₀₁) + h1λ·(w0λ·x₁₀ + w1λ·x₁₁).
    let mut out = vec![0.0f64; side * side];
    for (o, &(i0, i1, a, b)) in rows.iter().enumerate() {
        let (r0, r1) = (&wide[i0 * side..][..side], &wide[i1 * side..][..side]);
        for (v, (x0, x1)) in out[o * side..][..side].iter_mut().zip(r0.iter().zip(r1)) {
            *v = a * x0 + b * x1;
        }
    }
    out
}

/// Upsamples an h×w map (row-major) to side × side with exactly the arithmetic of PyTorch's
/// `F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)` (also for
/// non-integer ratios and for side < h, w), computed in f64.
///
/// # Panics
/// When `patch.len() != h·w` or a dimension is 0 (callers validate the maps first).
pub fn upsample_bilinear(patch: &[f32], h: usize, w: usize, side: usize) -> Vec<f32> {
    assert!(h > 0 && w > 0 && side > 0, "upsample of an empty map");
    assert_eq!(patch.len(), h * w, "patch scores must be h·w long");
    upsample_f64(patch, h, w, side)
        .into_iter()
        .map(|v| v as f32)
        .collect()
}

/// SciPy's 1-D Gaussian kernel: radius r = ⌊4σ + ½⌋, weights exp(−x²/(2σ²)) for x in
/// −r..=r, normalised to sum 1 (`scipy.ndimage._filters._gaussian_kernel1d`).
fn gaussian_kernel(sigma: f64) -> Vec<f64> {
    let radius = (4.0 * sigma + 0.5) as usize;
    let mut k: Vec<f64> = (0..=2 * radius)
        .map(|i| {
            let x = i as f64 - radius as f64;
            (-0.5 / (sigma * sigma) * x * x).exp()
        })
        .collect();
    let sum: f64 = k.iter().sum();
    k.iter_mut().for_each(|v| *v /= sum);
    k
}

/// SciPy's `mode="reflect"` (half-sample symmetric, d c b a | a b c d | d c b a): the
/// index read for position `i` of a line `n` long, also far outside it (period 2n).
fn reflect(i: isize, n: usize) -> usize {
    let period = 2 * n as isize;
    let m = i.rem_euclid(period) as usize;
    if m >= n {
        2 * n - 1 - m
    } else {
        m
    }
}

/// Correlates every line of `data` (`lines` lines `len` long, element k of line l at
/// `l·line_stride + k·stride`) with `kernel`, reflecting at the ends.
fn filter_lines(
    data: &mut [f64],
    kernel: &[f64],
    lines: usize,
    len: usize,
    line_stride: usize,
    stride: usize,
) {
    let radius = kernel.len() / 2;
    let mut padded = vec![0.0f64; len + 2 * radius];
    for l in 0..lines {
        let base = l * line_stride;
        for (p, v) in padded.iter_mut().enumerate() {
            *v = data[base + reflect(p as isize - radius as isize, len) * stride];
        }
        for k in 0..len {
            let window = &padded[k..k + kernel.len()];
            data[base + k * stride] = window.iter().zip(kernel).map(|(x, w)| x * w).sum();
        }
    }
}

/// Gaussian blur in f64 (see [`gaussian_blur`]).
fn blur_f64(map: &mut [f64], side: usize, sigma: f64) {
    if sigma <= 1e-15 {
        return; // SciPy skips an axis whose σ is (numerically) 0.
    }
    let kernel = gaussian_kernel(sigma);
    // SciPy filters axis 0 (down the columns), then axis 1 (along the rows).
    filter_lines(map, &kernel, side, side, 1, side);
    filter_lines(map, &kernel, side, side, side, 1);
}

/// Smooths a side × side map (row-major) by a Gaussian of σ pixels exactly as
/// `scipy.ndimage.gaussian_filter(x, sigma, mode="reflect", truncate=4.0)` does (separable,
/// radius ⌊4σ + ½⌋, reflection repeated when the kernel is longer than the map), computed
/// in f64. σ = 0 returns the input unchanged.
///
/// # Panics
/// When `map.len() != side²`.
pub fn gaussian_blur(map: &[f32], side: usize, sigma: f64) -> Vec<f32> {
    assert_eq!(map.len(), side * side, "a side × side map");
    let mut m: Vec<f64> = map.iter().map(|&v| v as f64).collect();
    blur_f64(&mut m, side, sigma);
    m.into_iter().map(|v| v as f32).collect()
}

/// The anomaly map of one image: its h×w patch scores upsampled to `opts.side` ×
/// `opts.side` ([`upsample_bilinear`]) and smoothed by σ = `opts.sigma`
/// ([`gaussian_blur`]), both in f64 with one rounding to f32 at the end.
///
/// # Panics
/// When `patch_scores.len() != h·w` or a dimension is 0.
pub fn anomaly_map(patch_scores: &[f32], h: usize, w: usize, opts: &MapOptions) -> Vec<f32> {
    assert!(
        h > 0 && w > 0 && opts.side > 0,
        "anomaly map of an empty grid"
    );
    assert_eq!(patch_scores.len(), h * w, "patch scores must be h·w long");
    let mut m = upsample_f64(patch_scores, h, w, opts.side);
    blur_f64(&mut m, opts.side, opts.sigma);
    m.into_iter().map(|v| v as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflect_is_half_sample_symmetric() {
        let got: Vec<usize> = (-5..9).map(|i| reflect(i, 3)).collect();
        // … b c | c b a | a b c | c b a | a b …
        assert_eq!(got, vec![1, 2, 2, 1, 0, 0, 1, 2, 2, 1, 0, 0, 1, 2]);
        assert_eq!(reflect(-7, 1), 0);
    }

    #[test]
    fn upsampling_keeps_constants_and_doubles_by_hand() {
        let up = upsample_bilinear(&[2.5; 6], 2, 3, 7);
        assert!(up.iter().all(|&v| v == 2.5));
        // 1×2 → 1×4 (align_corners=False): x = (o + ½)/2 − ½ = −¼ (→ 0), ¼, ¾, 1¼.
        let up = upsample_bilinear(&[0.0, 4.0], 1, 2, 4);
        assert_eq!(&up[..4], &[0.0, 1.0, 3.0, 4.0]);
    }

    #[test]
    fn blur_keeps_the_sum_of_constants_and_zero_sigma_is_identity() {
        let map: Vec<f32> = (0..25).map(|i| (i as f32 * 0.3).sin()).collect();
        assert_eq!(gaussian_blur(&map, 5, 0.0), map);
        let flat = gaussian_blur(&[1.5; 16], 4, 3.0);
        assert!(flat.iter().all(|&v| (v - 1.5).abs() < 1e-6));
        let k = gaussian_kernel(1.0);
        assert_eq!(k.len(), 9);
        assert!((k.iter().sum::<f64>() - 1.0).abs() < 1e-15);
    }
}
