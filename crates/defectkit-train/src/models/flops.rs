//! Analytic FLOPs per image (2 × multiply-accumulates of convolutions and linear layers),
//! reported in run summaries to compare model cost. Batch norm, activations and pooling
//! are ignored (a few percent at most). The arithmetic shared by the models lives here;
//! each model's `flops_per_image` (in its folder) adds up its own layers.

/// MACs of a k×k convolution producing an `out_side`² map.
pub fn conv(k: usize, c_in: usize, c_out: usize, out_side: usize) -> u64 {
    (k * k * c_in * c_out * out_side * out_side) as u64
}

/// MACs of ResNet's conv1 + conv2_x + conv3_x at `width` for a `side`×`side` input.
pub fn stem_macs(width: usize, side: usize) -> u64 {
    let w = width;
    let s2 = side.div_ceil(2);
    let s4 = s2.div_ceil(2);
    let s8 = s4.div_ceil(2);
    conv(7, 3, w, s2)
        + 4 * conv(3, w, w, s4)
        + conv(3, w, 2 * w, s8)
        + 3 * conv(3, 2 * w, 2 * w, s8)
        + conv(1, w, 2 * w, s8)
}
