//! Activation histograms for the percentile and entropy calibration methods.
//!
//! The histogram is ONNX Runtime's (`HistogramCollector.collect_value`): symmetric around 0,
//! `[-T, T]` with `T = max|x|` of the first batch, widened by whole bins of the same width on
//! both sides when a later batch goes further, so batches merge without re-binning. From it:
//! - [`percentile_threshold`]: the smallest `T'` such that `percentile` % of the |x| values are
//!   at most `T'` (the right edge of the bin where the |x| CDF crosses it);
//! - [`entropy_threshold`]: ONNX Runtime's `get_entropy_threshold` (the TensorRT KL method,
//!   128 quantized bins) step for step.
//!
//! The range used is then `[max(min, −T'), min(max, T')]`: clipped outliers, but never wider
//! than what was seen (a ReLU output keeps its lower end at 0).

/// A histogram of one tensor's values, merged over calibration batches.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    /// Counts per bin, over `[-threshold, threshold]`.
    pub counts: Vec<u64>,
    /// Half-width of the range.
    pub threshold: f64,
    /// Smallest value seen.
    pub min: f32,
    /// Largest value seen.
    pub max: f32,
}

/// NumPy's `np.histogram(values, bins, range=(-t, t))` for finite values (the last bin is
/// closed on the right).
fn bin_into(counts: &mut [u64], values: &[f32], t: f64) {
    let bins = counts.len();
    if t <= 0.0 {
        // NumPy widens a zero range to [-0.5, 0.5]: every value (all 0) lands in the middle.
        counts[bins / 2] += values.len() as u64;
        return;
    }
    let width = 2.0 * t / bins as f64;
    for &v in values {
        let v = v as f64;
        if v < -t || v > t {
            continue;
        }
        let mut k = ((v + t) / width) as usize;
        if k >= bins {
            k = bins - 1;
        }
        counts[k] += 1;
    }
}

impl Histogram {
    /// A histogram of `values` (the first batch) with `bins` bins.
    pub fn new(values: &[f32], bins: usize) -> Self {
        let (min, max) = min_max(values);
        let threshold = (min.abs().max(max.abs())) as f64;
        let mut counts = vec![0u64; bins.max(2)];
        bin_into(&mut counts, values, threshold);
        Self {
            counts,
            threshold,
            min,
            max,
        }
    }

    /// Adds a batch (ONNX Runtime's `merge_histogram`).
    pub fn add(&mut self, values: &[f32]) {
        let (min, max) = min_max(values);
        let new_threshold = (min.abs().max(max.abs())) as f64;
        self.min = self.min.min(min);
        self.max = self.max.max(max);
        let bins = self.counts.len();
        if new_threshold <= self.threshold {
            let mut counts = vec![0u64; bins];
            bin_into(&mut counts, values, self.threshold);
            self.counts
                .iter_mut()
                .zip(counts)
                .for_each(|(a, b)| *a += b);
        } else if self.threshold == 0.0 {
            let mut counts = vec![0u64; bins];
            bin_into(&mut counts, values, new_threshold);
            counts
                .iter_mut()
                .zip(&self.counts)
                .for_each(|(a, b)| *a += b);
            self.counts = counts;
            self.threshold = new_threshold;
        } else {
            let stride = 2.0 * self.threshold / bins as f64;
            let half = ((new_threshold - self.threshold) / stride).floor() as usize + 1;
            let new_bins = bins + 2 * half;
            let widened = half as f64 * stride + self.threshold;
            let mut counts = vec![0u64; new_bins];
            bin_into(&mut counts, values, widened);
            for (i, c) in self.counts.iter().enumerate() {
                counts[half + i] += c;
            }
            self.counts = counts;
            self.threshold = widened;
        }
    }

    /// The bin edges (`counts.len() + 1` values from `-threshold` to `threshold`).
    pub fn edges(&self) -> Vec<f64> {
        let bins = self.counts.len();
        let t = if self.threshold > 0.0 {
            self.threshold
        } else {
            0.5
        };
        (0..=bins)
            .map(|i| -t + 2.0 * t * i as f64 / bins as f64)
            .collect()
    }

    /// `[max(min, −t), min(max, t)]` for a clipping threshold `t`.
    pub fn clipped_range(&self, t: f64) -> (f32, f32) {
        (self.min.max(-t as f32), self.max.min(t as f32))
    }
}

fn min_max(values: &[f32]) -> (f32, f32) {
    if values.is_empty() {
        return (0.0, 0.0);
    }
    values
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        })
}

/// The |x| threshold below which `percentile` % of the values lie: the histogram folded
/// around 0, the right edge of the first |x| bin whose CDF reaches `percentile / 100`.
pub fn percentile_threshold(h: &Histogram, percentile: f64) -> f64 {
    let bins = h.counts.len();
    let total: u64 = h.counts.iter().sum();
    if total == 0 || h.threshold == 0.0 {
        return 0.0;
    }
    // Fold: |x| bin j collects signed bins mid + j and mid − 1 − j (bins is even by
    // construction: the first histogram's and every widening's bins come in pairs, unless
    // the user asked for an odd count, whose middle bin straddles 0 and counts as |x| bin 0).
    let width = 2.0 * h.threshold / bins as f64;
    let half = bins / 2;
    let mut folded: Vec<u64> = Vec::with_capacity(half + 1);
    if bins % 2 == 0 {
        for j in 0..half {
            folded.push(h.counts[half + j] + h.counts[half - 1 - j]);
        }
    } else {
        folded.push(h.counts[half]);
        for j in 1..=half {
            folded.push(h.counts[half + j] + h.counts[half - j]);
        }
    }
    let offset = if bins % 2 == 0 { 0.0 } else { width / 2.0 };
    let target = percentile / 100.0;
    let mut seen = 0u64;
    for (j, c) in folded.iter().enumerate() {
        seen += c;
        // A count that reaches the share exactly counts (no float division at the boundary).
        if seen as f64 >= target * total as f64 * (1.0 - 1e-12) {
            return offset + (j + 1) as f64 * width;
        }
    }
    h.threshold
}

/// ONNX Runtime's `smooth_distribution` (eps 1e-4): zeros become eps, the rest pays for them.
fn smooth(p: &[f64]) -> Option<Vec<f64>> {
    let eps = 1e-4;
    let zeros = p.iter().filter(|&&v| v == 0.0).count();
    let nonzeros = p.len() - zeros;
    if nonzeros == 0 {
        return None;
    }
    let eps1 = eps * zeros as f64 / nonzeros as f64;
    if eps1 >= 1.0 {
        return None;
    }
    let out: Vec<f64> = p
        .iter()
        .map(|&v| if v == 0.0 { eps } else { v - eps1 })
        .collect();
    if out.iter().any(|&v| v <= 0.0) {
        return None;
    }
    Some(out)
}

/// `scipy.stats.entropy(p, q)`: KL divergence of the normalised distributions.
fn kl_divergence(p: &[f64], q: &[f64]) -> f64 {
    let sp: f64 = p.iter().sum();
    let sq: f64 = q.iter().sum();
    p.iter()
        .zip(q)
        .map(|(&a, &b)| {
            let a = a / sp;
            let b = b / sq;
            if a > 0.0 {
                a * (a / b).ln()
            } else {
                0.0
            }
        })
        .sum()
}

/// ONNX Runtime's `get_entropy_threshold` with `quantized_bins` (128) levels: the symmetric
/// clipping `[edge(start), edge(end)]` whose 128-level quantization loses the least
/// information (KL divergence) about the clipped histogram. Returns `(low, high)`.
pub fn entropy_threshold(h: &Histogram, quantized_bins: usize) -> (f64, f64) {
    let hist = &h.counts;
    let edges = h.edges();
    let num_bins = hist.len();
    let zero_bin = num_bins / 2;
    let half_q = quantized_bins / 2;
    if zero_bin < half_q {
        return (edges[0], edges[num_bins]);
    }
    let mut best = (f64::INFINITY, (edges[0], edges[num_bins]));
    let prefix: Vec<u64> = std::iter::once(0)
        .chain(hist.iter().scan(0u64, |acc, &c| {
            *acc += c;
            Some(*acc)
        }))
        .collect();
    for i in half_q..=zero_bin {
        let start = zero_bin - i;
        let end = (zero_bin + i + 1).min(num_bins);
        let thresholds = (edges[start], edges[end]);
        let sliced = &hist[start..end];
        let mut p: Vec<f64> = sliced.iter().map(|&c| c as f64).collect();
        p[0] += prefix[start] as f64;
        let last = p.len() - 1;
        p[last] += (prefix[num_bins] - prefix[end]) as f64;
        let nonzeros: Vec<bool> = p.iter().map(|&v| v != 0.0).collect();
        let merged = sliced.len() / quantized_bins;
        let mut quantized = vec![0u64; quantized_bins];
        for (k, q) in quantized.iter_mut().enumerate() {
            *q = sliced[k * merged..(k + 1) * merged].iter().sum();
        }
        quantized[quantized_bins - 1] += sliced[quantized_bins * merged..].iter().sum::<u64>();
        // ONNX Runtime spreads each level over its bins into an int64 array (truncating).
        let mut q = vec![0.0f64; p.len()];
        for (k, &level) in quantized.iter().enumerate() {
            let (s, e) = (k * merged, (k + 1) * merged);
            let norm = nonzeros[s..e].iter().filter(|&&nz| nz).count();
            if norm != 0 {
                let v = (level as f64 / norm as f64).trunc();
                q[s..e].iter_mut().for_each(|x| *x = v);
            }
        }
        let divergence = match (smooth(&p), smooth(&q)) {
            (Some(p), Some(q)) => kl_divergence(&p, &q),
            _ => f64::INFINITY,
        };
        if divergence < best.0 {
            best = (divergence, thresholds);
        }
    }
    best.1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_merges_by_widening_with_the_same_bin_width() {
        let mut h = Histogram::new(&[-1.0, 0.5, 1.0], 4);
        assert_eq!(h.counts, vec![1, 0, 0, 2]);
        h.add(&[1.9]);
        // stride 0.5: one more bin each side, threshold 1.5 → still short, ORT's formula
        // floor((1.9 − 1) / 0.5) + 1 = 2 bins each side: threshold 2.0.
        assert_eq!(h.threshold, 2.0);
        assert_eq!(h.counts.len(), 8);
        assert_eq!(h.counts.iter().sum::<u64>(), 4);
        assert_eq!(h.max, 1.9);
    }

    #[test]
    fn percentile_of_a_uniform_sample_is_close_to_the_quantile() {
        let values: Vec<f32> = (0..10_000).map(|i| i as f32 / 10_000.0).collect();
        let h = Histogram::new(&values, 2048);
        let t = percentile_threshold(&h, 99.0);
        assert!((t - 0.99).abs() < 2.0 / 2048.0 + 1e-9, "{t}");
        assert_eq!(percentile_threshold(&h, 100.0), h.threshold);
    }
}
