use defectkit::burn::prelude::*;
use defectkit::burn::tensor::Distribution;

/// The CPU backend used everywhere.
pub fn device() -> Device {
    Device::flex()
}

/// Random ImageNet-normalized-like images `[b, 3, size, size]`.
pub fn images(b: usize, size: usize, device: &Device) -> Tensor<4> {
    Tensor::random([b, 3, size, size], Distribution::Normal(0.0, 1.0), device)
}

/// Class targets `0..b` modulo `classes`.
pub fn targets(b: usize, classes: usize, device: &Device) -> Tensor<1, Int> {
    let t: Vec<i64> = (0..b).map(|i| (i % classes) as i64).collect();
    Tensor::from_data(TensorData::new(t, [b]), device)
}

/// Tensor values as `f32`.
pub fn values<const D: usize>(t: &Tensor<D>) -> Vec<f32> {
    t.to_data().try_to_vec::<f32>().unwrap()
}

/// Scalar value of a `[1]` tensor.
pub fn scalar(t: &Tensor<1>) -> f32 {
    t.clone().into_scalar::<f32>()
}

/// Largest absolute difference.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Serializes the tests of this binary that draw random numbers: Burn's CPU backend keeps
/// one process-wide RNG, so a test that seeds it (`device.seed(n)`) gets its seeded sequence
/// only if no test running in parallel draws from it at the same time. Every test here
/// takes this lock first; a panicking test does not poison the others.
pub fn rng_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}
