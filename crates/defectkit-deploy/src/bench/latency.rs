//! Latency of one session on one preprocessed batch: warm-up runs, then timed runs until
//! both a minimum count and a minimum duration are reached, summarised as percentiles.
//!
//! Percentiles use linear interpolation between order statistics, exactly
//! `numpy.percentile(samples, p)` (NumPy's default method "linear"), via
//! [`defectkit_core::metrics::percentile`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde::Serialize;

use crate::runtime::{OnnxModel, RuntimeError};

/// How long to time a batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimingPlan {
    /// Untimed runs first (allocations, kernel selection, caches).
    pub warmup: usize,
    /// At least this many timed runs.
    pub min_iterations: usize,
    /// And at least this many seconds of timed runs.
    pub min_seconds: f64,
    /// Never more than this many timed runs (fast models would otherwise run very often).
    pub max_iterations: usize,
}

impl Default for TimingPlan {
    fn default() -> Self {
        Self {
            warmup: 5,
            min_iterations: 50,
            min_seconds: 1.0,
            max_iterations: 20_000,
        }
    }
}

impl TimingPlan {
    /// Whether timing may stop after `n` runs taking `elapsed` seconds in all.
    pub fn done(&self, n: usize, elapsed: f64) -> bool {
        n >= self.max_iterations.max(1)
            || (n >= self.min_iterations.max(1) && elapsed >= self.min_seconds)
    }
}

/// Summary of latency samples, milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencyStats {
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Mean.
    pub mean: f64,
    /// Fastest run.
    pub min: f64,
    /// Slowest run.
    pub max: f64,
}

impl LatencyStats {
    /// The statistics of `samples` (ms); None when empty or any sample is NaN.
    pub fn of(samples: &[f64]) -> Option<Self> {
        use defectkit_core::metrics::percentile;
        let p50 = percentile(samples, 50.0)?;
        let p95 = percentile(samples, 95.0)?;
        let p99 = percentile(samples, 99.0)?;
        let n = samples.len() as f64;
        Some(Self {
            p50,
            p95,
            p99,
            mean: samples.iter().sum::<f64>() / n,
            min: samples.iter().copied().fold(f64::INFINITY, f64::min),
            max: samples.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        })
    }
}

/// One batch size timed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BatchTiming {
    /// Images per run.
    pub batch: usize,
    /// Timed runs.
    pub iterations: usize,
    /// Seconds of timed runs in all.
    pub seconds: f64,
    /// Per-run latency.
    pub stats: LatencyStats,
    /// Images per second at the median latency (`batch / p50`).
    pub throughput: f64,
}

/// Why timing stopped early.
#[derive(Debug, thiserror::Error)]
pub enum TimingError {
    /// A run failed.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// Cancelled between runs.
    #[error("interrupted")]
    Interrupted,
}

/// Times `model.run(input)` (`input` holds `batch` preprocessed images) by `plan`. The time
/// of a run includes what a caller of [`OnnxModel::run`] pays: the input tensor's copy and
/// the outputs' extraction.
pub fn time_batch(
    model: &mut OnnxModel,
    input: &[f32],
    batch: usize,
    plan: &TimingPlan,
    cancel: &AtomicBool,
) -> Result<BatchTiming, TimingError> {
    for _ in 0..plan.warmup {
        if cancel.load(Ordering::SeqCst) {
            return Err(TimingError::Interrupted);
        }
        std::hint::black_box(model.run(input)?);
    }
    let mut samples = Vec::with_capacity(plan.min_iterations.max(1));
    let mut total = 0.0f64;
    while !plan.done(samples.len(), total) {
        if cancel.load(Ordering::SeqCst) {
            return Err(TimingError::Interrupted);
        }
        let t = Instant::now();
        let out = model.run(input)?;
        let s = t.elapsed().as_secs_f64();
        std::hint::black_box(out);
        total += s;
        samples.push(s * 1e3);
    }
    let stats = LatencyStats::of(&samples).expect("at least one finite sample");
    Ok(BatchTiming {
        batch,
        iterations: samples.len(),
        seconds: total,
        throughput: if stats.p50 > 0.0 {
            batch as f64 * 1e3 / stats.p50
        } else {
            f64::INFINITY
        },
        stats,
    })
}

/// `batch` images' worth of input, cycling through `images` (`n × per_sample` values):
/// image `i` of the batch is image `i mod n`.
pub fn batch_input(images: &[f32], per_sample: usize, batch: usize) -> Vec<f32> {
    let n = images.len() / per_sample.max(1);
    let mut out = Vec::with_capacity(batch * per_sample);
    for i in 0..batch {
        let j = i % n.max(1);
        out.extend_from_slice(&images[j * per_sample..(j + 1) * per_sample]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_needs_both_count_and_time() {
        let p = TimingPlan {
            warmup: 0,
            min_iterations: 10,
            min_seconds: 1.0,
            max_iterations: 100,
        };
        assert!(!p.done(9, 5.0));
        assert!(!p.done(10, 0.5));
        assert!(p.done(10, 1.0));
        assert!(p.done(100, 0.1));
    }

    #[test]
    fn batches_cycle_through_the_images() {
        let images = [1.0, 1.0, 2.0, 2.0, 3.0, 3.0];
        assert_eq!(batch_input(&images, 2, 4), [1., 1., 2., 2., 3., 3., 1., 1.]);
        assert_eq!(batch_input(&images, 2, 1), [1., 1.]);
    }

    #[test]
    fn stats_of_a_known_sample() {
        let s = LatencyStats::of(&[4.0, 1.0, 3.0, 2.0, 5.0]).unwrap();
        assert_eq!((s.p50, s.min, s.max, s.mean), (3.0, 1.0, 5.0, 3.0));
        assert!((s.p95 - 4.8).abs() < 1e-12 && (s.p99 - 4.96).abs() < 1e-12);
        assert!(LatencyStats::of(&[]).is_none());
    }
}
