//! Colours: the linear RGB albedo type [`C3`] and the few channel-wise blends, scalings and
//! comparisons that the scenes, the defects and the mask test use.

use super::geometry::mix;

/// An RGB albedo, each channel nominally in [0, 1].
pub(super) type C3 = [f32; 3];

pub(super) fn mix3(a: C3, b: C3, t: f32) -> C3 {
    [mix(a[0], b[0], t), mix(a[1], b[1], t), mix(a[2], b[2], t)]
}
pub(super) fn mul3(a: C3, k: f32) -> C3 {
    [a[0] * k, a[1] * k, a[2] * k]
}
pub(super) fn add3(a: C3, k: f32) -> C3 {
    [a[0] + k, a[1] + k, a[2] + k]
}
pub(super) fn gray(v: f32) -> C3 {
    [v, v, v]
}
pub(super) fn lum(c: C3) -> f32 {
    0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]
}
pub(super) fn max_abs_diff(a: C3, b: C3) -> f32 {
    (a[0] - b[0])
        .abs()
        .max((a[1] - b[1]).abs())
        .max((a[2] - b[2]).abs())
}
