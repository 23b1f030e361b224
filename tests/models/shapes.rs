use defectkit::burn::prelude::*;
use defectkit::burn::store::{BurnToPyTorchAdapter, ModuleSnapshot, ModuleStore, SafetensorsStore};
use defectkit::models::*;

use crate::common::*;
use crate::fixtures::resnet18_keys;

#[test]
fn classifier_shapes() {
    let _rng = crate::common::rng_lock();
    let device = device();
    for (width, hidden, size) in [(64, None, 32), (32, Some(48), 128), (16, None, 224)] {
        let model = ClassifierConfig::new(10)
            .with_width(width)
            .with_hidden(hidden)
            .with_dropout(0.2)
            .init(&device);
        let out = model.forward(images(2, size, &device));
        assert_eq!(out.logits.dims(), [2, 10]);
        assert_eq!(out.embedding.dims(), [2, 2 * width]);
        let s = size.div_ceil(8);
        assert_eq!(out.features.dims(), [2, 2 * width, s, s]);
    }
}

#[test]
fn teacher_shapes() {
    let _rng = crate::common::rng_lock();
    let device = device();
    let teacher = ResNet18Config::new().init(&device);
    let out = teacher.forward(images(2, 64, &device));
    assert_eq!(out.logits.dims(), [2, 1000]);
    assert_eq!(out.embedding.dims(), [2, 512]);
    assert_eq!(out.features.dims(), [2, 128, 8, 8]);
    // torchvision counts 11,689,512 parameters; Burn's num_params also counts the BatchNorm
    // running means and variances (2 × 4,800).
    assert_eq!(teacher.num_params(), 11_689_512 + 9_600);
}

#[test]
fn unet_shapes_all_sizes_and_depths() {
    let _rng = crate::common::rng_lock();
    let device = device();
    for size in [32, 64, 128] {
        for depth in 1..=4 {
            for skip in [false, true] {
                let pooling = if depth % 2 == 0 {
                    LatentPooling::Flatten
                } else {
                    LatentPooling::GlobalAverage
                };
                let upsample = if skip {
                    UpsampleMode::Bilinear
                } else {
                    UpsampleMode::Nearest
                };
                let model = UNetConfig::new(size)
                    .with_base_width(8)
                    .with_depth(depth)
                    .with_skip_connections(skip)
                    .with_latent_dim(16)
                    .with_latent_pooling(pooling)
                    .with_upsample(upsample)
                    .init(&device);
                let out = model.forward(images(2, size, &device));
                assert_eq!(
                    out.reconstruction.dims(),
                    [2, 3, size, size],
                    "size {size} depth {depth} skip {skip}"
                );
                assert_eq!(out.embedding.dims(), [2, 16]);
            }
        }
    }
}

#[test]
fn unet_sigmoid_output_in_unit_interval() {
    let _rng = crate::common::rng_lock();
    let device = device();
    let model = UNetConfig::new(32)
        .with_base_width(8)
        .with_depth(2)
        .with_output(OutputActivation::Sigmoid)
        .init(&device);
    let v = values(&model.forward(images(1, 32, &device)).reconstruction);
    assert!(v.iter().all(|x| (0.0..=1.0).contains(x)));
}

#[test]
#[should_panic(expected = "multiple of 2^depth")]
fn unet_rejects_indivisible_size() {
    let _rng = crate::common::rng_lock();
    UNetConfig::new(48).with_depth(5).init(&device());
}

/// Saving the teacher through `BurnToPyTorchAdapter` with `stem.` stripped yields exactly
/// torchvision's state-dict keys (minus `num_batches_tracked`) and shapes.
#[test]
fn teacher_paths_are_torchvision_keys() {
    let _rng = crate::common::rng_lock();
    let device = device();
    let teacher = ResNet18Config::new().init(&device);
    let mut store = SafetensorsStore::from_bytes(None)
        .with_to_adapter(BurnToPyTorchAdapter)
        .with_key_remapping(r"^stem\.", "");
    teacher.save_into(&mut store).unwrap();
    let bytes = store.get_bytes().unwrap();
    let mut reread = SafetensorsStore::from_bytes(Some(bytes));
    let mut got: Vec<(String, Vec<usize>)> = reread
        .get_all_tensors()
        .unwrap()
        .iter()
        .map(|(k, t)| (k.clone(), t.shape.to_vec()))
        .collect();
    let mut want: Vec<(String, Vec<usize>)> = resnet18_keys(1000)
        .into_iter()
        .filter(|(k, _)| !k.ends_with("num_batches_tracked"))
        .collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn model_sizes() {
    let _rng = crate::common::rng_lock();
    let device = device();
    for width in [16, 32, 64] {
        let model = ClassifierConfig::new(10).with_width(width).init(&device);
        eprintln!("classifier width {width}: {} params", model.num_params());
    }
    for size in [32, 64, 128] {
        for pooling in [LatentPooling::Flatten, LatentPooling::GlobalAverage] {
            let model = UNetConfig::new(size)
                .with_latent_pooling(pooling)
                .init(&device);
            eprintln!(
                "unet {size}px base 32 depth 4 latent 128 {pooling:?}: {} params",
                model.num_params()
            );
        }
    }
}
