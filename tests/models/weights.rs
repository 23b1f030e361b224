use std::path::Path;

use defectkit::burn::prelude::*;
use defectkit::models::*;

use crate::common::*;
use crate::fixtures::*;

/// The file's tensor `key` (as written) and the index torchvision gives it.
fn expected(num_classes: usize, key: &str) -> (Vec<usize>, Vec<f32>) {
    let dict = resnet18_state_dict(num_classes);
    let e = dict.iter().find(|e| e.key == key).unwrap();
    match &e.values {
        Values::F32(v) => (e.shape.clone(), v.clone()),
        Values::I64(_) => unreachable!(),
    }
}

fn check_teacher(teacher: &ResNet18) {
    let checks: Vec<(&str, Tensor<1>)> = vec![
        (
            "conv1.weight",
            teacher.stem.conv1.weight.val().flatten(0, 3),
        ),
        ("bn1.weight", teacher.stem.bn1.gamma.val()),
        ("bn1.bias", teacher.stem.bn1.beta.val()),
        ("bn1.running_mean", teacher.stem.bn1.running_mean.value()),
        ("bn1.running_var", teacher.stem.bn1.running_var.value()),
        (
            "layer1.1.conv2.weight",
            teacher.stem.layer1[1].conv2.weight.val().flatten(0, 3),
        ),
        (
            "layer2.0.downsample.0.weight",
            teacher.stem.layer2[0]
                .downsample
                .as_ref()
                .unwrap()
                .0
                .weight
                .val()
                .flatten(0, 3),
        ),
        (
            "layer2.0.downsample.1.running_var",
            teacher.stem.layer2[0]
                .downsample
                .as_ref()
                .unwrap()
                .1
                .running_var
                .value(),
        ),
        (
            "layer3.0.downsample.1.weight",
            teacher.layer3[0].downsample.as_ref().unwrap().1.gamma.val(),
        ),
        ("layer4.1.bn2.bias", teacher.layer4[1].bn2.beta.val()),
        ("fc.bias", teacher.fc.bias.as_ref().unwrap().val()),
    ];
    for (key, got) in checks {
        let (_, want) = expected(1000, key);
        assert_eq!(max_abs_diff(&values(&got), &want), 0.0, "{key}");
    }
    // Linear: torch [out, in] → burn [in, out].
    let (shape, want) = expected(1000, "fc.weight");
    assert_eq!(shape, vec![1000, 512]);
    let got = teacher.fc.weight.val();
    assert_eq!(got.dims(), [512, 1000]);
    assert_eq!(
        max_abs_diff(&values(&got.transpose().flatten::<1>(0, 1)), &want),
        0.0
    );
}

fn fixture(dir: &Path, name: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    let dict = resnet18_state_dict(1000);
    if name.ends_with(".pth") {
        write_pth(&path, &dict);
    } else {
        write_safetensors(&path, &dict);
    }
    path
}

#[test]
fn load_torchvision_safetensors_and_pth() {
    let _rng = crate::common::rng_lock();
    let dir = tempfile::tempdir().unwrap();
    let device = device();
    for name in ["resnet18.safetensors", "resnet18.pth"] {
        let path = fixture(dir.path(), name);
        let teacher = load_torchvision(&path, 1000, &device).unwrap();
        check_teacher(&teacher);
        let out = teacher.valid().forward(images(1, 64, &device));
        assert!(values(&out.logits).iter().all(|v| v.is_finite()), "{name}");
    }
}

#[test]
fn load_errors_are_errors() {
    let _rng = crate::common::rng_lock();
    let dir = tempfile::tempdir().unwrap();
    let device = device();
    for name in ["resnet18.safetensors", "resnet18.pth"] {
        let path = fixture(dir.path(), name);
        let len = std::fs::metadata(&path).unwrap().len() as usize;
        for cut in [len / 2, len - 4, 100, 4] {
            let truncated = dir.path().join(format!("cut{cut}_{name}"));
            truncate_copy(&path, &truncated, cut);
            let err = load_torchvision(&truncated, 1000, &device).unwrap_err();
            eprintln!("{name} cut at {cut}: {err}");
        }
        // Wrong class count → shape mismatch.
        let err = load_torchvision(&path, 10, &device).unwrap_err();
        eprintln!("{name} with 10 classes: {err}");
    }
    assert!(matches!(
        load_torchvision(dir.path().join("nope.pth"), 1000, &device),
        Err(WeightsError::NotFound(_))
    ));
    let other = dir.path().join("weights.bin");
    std::fs::write(&other, b"x").unwrap();
    assert!(matches!(
        load_torchvision(&other, 1000, &device),
        Err(WeightsError::UnsupportedFormat(_))
    ));
    // A file missing a tensor the model needs.
    let mut dict = resnet18_state_dict(1000);
    dict.retain(|e| e.key != "layer3.1.bn1.running_mean");
    let partial = dir.path().join("partial.safetensors");
    write_safetensors(&partial, &dict);
    let err = load_torchvision(&partial, 1000, &device).unwrap_err();
    eprintln!("partial: {err}");
}

#[test]
fn classifier_stem_from_torchvision() {
    let _rng = crate::common::rng_lock();
    let dir = tempfile::tempdir().unwrap();
    let device = device();
    let path = fixture(dir.path(), "resnet18.safetensors");
    let model = ClassifierConfig::new(10).init(&device);
    let fc_before = values(&model.fc.weight.val());
    let (model, result) = model.load_torchvision_stem(&path).unwrap();
    let (_, want) = expected(1000, "layer2.1.conv2.weight");
    let got: Tensor<1> = model.stem.layer2[1].conv2.weight.val().flatten(0, 3);
    assert_eq!(max_abs_diff(&values(&got), &want), 0.0);
    // The head is untouched (skipped by the filter); layer3/layer4 are unused.
    assert_eq!(values(&model.fc.weight.val()), fc_before);
    eprintln!("stem load: skipped {:?}", result.skipped);
    assert!(result.missing.is_empty());
    assert!(result.skipped.iter().any(|p| p.starts_with("fc.")));
    assert!(result.unused.iter().any(|p| p.starts_with("layer4.")));
    // A narrower stem does not fit the file.
    let narrow = ClassifierConfig::new(10).with_width(32).init(&device);
    assert!(narrow.load_torchvision_stem(&path).is_err());
}
