//! Analytic FLOPs per image (2 × multiply-accumulates of convolutions and linear layers),
//! reported in run summaries to compare model cost. Batch norm, activations and pooling
//! are ignored (a few percent at most).

fn conv(k: usize, c_in: usize, c_out: usize, out_side: usize) -> u64 {
    (k * k * c_in * c_out * out_side * out_side) as u64
}

/// MACs of ResNet's conv1 + conv2_x + conv3_x at `width` for a `side`×`side` input.
fn stem_macs(width: usize, side: usize) -> u64 {
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

/// Model A/B: stem + head (optional hidden layer).
pub fn classifier(width: usize, hidden: Option<usize>, num_classes: usize, side: usize) -> u64 {
    let feat = 2 * width;
    let head = match hidden {
        Some(h) => feat * h + h * num_classes,
        None => feat * num_classes,
    } as u64;
    2 * (stem_macs(width, side) + head)
}

/// The full ResNet-18 teacher.
pub fn resnet18(num_classes: usize, side: usize) -> u64 {
    let s8 = side.div_ceil(2).div_ceil(2).div_ceil(2);
    let s16 = s8.div_ceil(2);
    let s32 = s16.div_ceil(2);
    let l3 = conv(3, 128, 256, s16) + 3 * conv(3, 256, 256, s16) + conv(1, 128, 256, s16);
    let l4 = conv(3, 256, 512, s32) + 3 * conv(3, 512, 512, s32) + conv(1, 256, 512, s32);
    2 * (stem_macs(64, side) + l3 + l4 + (512 * num_classes) as u64)
}

/// The U-Net autoencoder (flattened latent unless `global_pool`).
pub fn unet(
    side: usize,
    depth: usize,
    base_width: usize,
    latent_dim: usize,
    skip: bool,
    global_pool: bool,
) -> u64 {
    let ch: Vec<usize> = (0..=depth).map(|i| base_width << i).collect();
    let mut macs = 0u64;
    for i in 0..depth {
        let c_in = if i == 0 { 3 } else { ch[i - 1] };
        let s = side >> i;
        macs += conv(3, c_in, ch[i], s) + conv(3, ch[i], ch[i], s);
    }
    let sb = side >> depth;
    macs += conv(3, ch[depth - 1], ch[depth], sb) + conv(3, ch[depth], ch[depth], sb);
    let unflat = ch[depth] * sb * sb;
    let pooled = if global_pool { ch[depth] } else { unflat };
    macs += (pooled * latent_dim + latent_dim * unflat) as u64;
    for i in (0..depth).rev() {
        let s = side >> i;
        let block_in = if skip { 2 * ch[i] } else { ch[i] };
        macs +=
            conv(3, ch[i + 1], ch[i], s) + conv(3, block_in, ch[i], s) + conv(3, ch[i], ch[i], s);
    }
    macs += conv(1, ch[0], 3, side);
    2 * macs
}

#[cfg(test)]
mod tests {
    #[test]
    fn resnet18_matches_the_published_count() {
        // torchvision: 1.82 GFLOPs (MACs) at 224² → 3.64 GFLOPs.
        let f = super::resnet18(1000, 224) as f64 / 1e9;
        assert!((f - 3.64).abs() < 0.05, "{f}");
    }

    #[test]
    fn the_stem_costs_about_half_the_teacher() {
        // ResNet-18 spends its FLOPs evenly across stages: conv1..conv3_x is ~55 % of them
        // (while holding only ~6 % of the parameters).
        let a = super::classifier(64, None, 10, 128) as f64;
        let t = super::resnet18(10, 128) as f64;
        assert!((0.45..0.65).contains(&(a / t)), "{a} vs {t}");
    }
}
