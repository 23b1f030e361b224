//! Training-step recipes on the flex backend with autodiff.

use defectkit::burn::nn::loss::{CrossEntropyLossConfig, MseLoss, Reduction};
use defectkit::burn::optim::{AdamWConfig, GradientsParams};
use defectkit::burn::prelude::*;
use defectkit::models::*;

use crate::common::*;

/// Model A, 32 px, batch 4, 10 classes: forward, cross-entropy, backward, AdamW step.
#[test]
fn classifier_overfits_fixed_batch() {
    let _rng = crate::common::rng_lock();
    let device = device().autodiff();
    device.seed(1);
    let mut model = ClassifierConfig::new(10)
        .with_width(32)
        .with_hidden(Some(64))
        .with_dropout(0.1)
        .init(&device);
    let mut optim = AdamWConfig::new().with_weight_decay(1e-4).init();
    let ce = CrossEntropyLossConfig::new().init(&device);
    let x = images(4, 32, &device);
    let y = targets(4, 10, &device);

    let mut losses = Vec::new();
    for _ in 0..20 {
        let out = model.forward(x.clone());
        let loss = ce.forward(out.logits, y.clone());
        losses.push(scalar(&loss));
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(1e-3, model, grads);
    }
    eprintln!("classifier losses: {losses:?}");
    assert!(losses[19] < 0.5 * losses[0], "{losses:?}");

    // Inference: `valid()` drops autodiff (and dropout/BN training behaviour).
    let eval = model.valid();
    let logits = eval.forward(x.clone().inner()).logits;
    assert!(!logits.is_autodiff());
    assert_eq!(logits.dims(), [4, 10]);
}

/// U-Net, 32 px: MSE reconstruction loss decreases.
#[test]
fn unet_overfits_fixed_batch() {
    let _rng = crate::common::rng_lock();
    let device = device().autodiff();
    device.seed(2);
    let mut model = UNetConfig::new(32)
        .with_base_width(8)
        .with_depth(3)
        .with_latent_dim(32)
        .init(&device);
    let mut optim = AdamWConfig::new().init();
    let x = images(4, 32, &device);
    let mut losses = Vec::new();
    for _ in 0..20 {
        let out = model.forward(x.clone());
        let loss = MseLoss::new().forward(out.reconstruction, x.clone(), Reduction::Mean);
        losses.push(scalar(&loss));
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(3e-3, model, grads);
    }
    eprintln!("unet losses: {losses:?}");
    assert!(losses[19] < 0.8 * losses[0], "{losses:?}");
}

/// Student + frozen teacher: the loss decreases, the teacher does not change and gets no
/// gradients, and the student's update depends on the teacher.
#[test]
fn distillation_step() {
    let _rng = crate::common::rng_lock();
    let device = device().autodiff();
    device.seed(3);
    let student = ClassifierConfig::new(10).with_width(16).init(&device);
    let teacher_a = ResNet18Config::new().with_num_classes(10).init(&device);
    let teacher_b = ResNet18Config::new().with_num_classes(10).init(&device);
    let config = DistillConfig::new()
        .with_alpha(0.7)
        .with_temperature(4.0)
        .with_beta(1.0);
    // `valid()` gives an independent copy (see `checkpoint_round_trip`); `clone()` would share
    // BatchNorm running statistics with `student`.
    let distiller = config.init(student.valid().train(), teacher_a.clone(), &device);
    assert!(
        distiller.adapter.is_some(),
        "a width-16 student has 32 conv3_x channels vs the teacher's 128: adapter expected"
    );
    let x = images(4, 32, &device);
    let y = targets(4, 10, &device);

    let mut model = distiller.clone();
    let teacher_before = values(&model.teacher.layer3[0].conv1.weight.val());
    let teacher_bn_before = values(&model.teacher.stem.bn1.running_mean.value());
    let mut optim = AdamWConfig::new().init();
    let mut losses = Vec::new();
    for step in 0..20 {
        let (_, loss) = model.forward(x.clone(), y.clone());
        losses.push(scalar(&loss.total));
        let grads = loss.total.backward();
        if step == 0 {
            assert!(model.teacher.fc.weight.val().grad(&grads).is_none());
            assert!(model.teacher.stem.conv1.weight.val().grad(&grads).is_none());
            assert!(model.student.stem.conv1.weight.val().grad(&grads).is_some());
            assert!(model
                .adapter
                .as_ref()
                .unwrap()
                .weight
                .val()
                .grad(&grads)
                .is_some());
        }
        let grads = GradientsParams::from_grads(grads, &model);
        model = optim.step(1e-3, model, grads);
    }
    eprintln!("distillation losses: {losses:?}");
    assert!(losses[19] < losses[0], "{losses:?}");
    assert_eq!(
        values(&model.teacher.layer3[0].conv1.weight.val()),
        teacher_before
    );
    assert_eq!(
        values(&model.teacher.stem.bn1.running_mean.value()),
        teacher_bn_before
    );

    // Same student and adapter, same data, two different teachers → different updates.
    let step_once = |teacher: &ResNet18| {
        let mut model = distiller.clone();
        model.teacher = teacher.clone().freeze();
        let (_, loss) = model.forward(x.clone(), y.clone());
        let grads = GradientsParams::from_grads(loss.total.backward(), &model);
        let model = AdamWConfig::new().init().step(1e-3, model, grads);
        values(&model.student.stem.layer2[1].conv2.weight.val())
    };
    let a1 = step_once(&teacher_a);
    let a2 = step_once(&teacher_a);
    let b = step_once(&teacher_b);
    assert_eq!(max_abs_diff(&a1, &a2), 0.0, "same teacher → same update");
    let d = max_abs_diff(&a1, &b);
    eprintln!("student weight difference between teachers: {d}");
    assert!(d > 0.0);
}

/// Checkpointing: model (burnpack file) and optimizer state round-trip exactly.
#[test]
fn checkpoint_round_trip() {
    let _rng = crate::common::rng_lock();
    let device = device().autodiff();
    device.seed(4);
    let config = ClassifierConfig::new(10).with_width(16);
    let mut model = config.init(&device);
    let mut optim = AdamWConfig::new().init();
    let ce = CrossEntropyLossConfig::new().init(&device);
    let x = images(4, 32, &device);
    let y = targets(4, 10, &device);
    let step = |model: Classifier, optim: &mut defectkit::burn::optim::ModuleOptimizer| {
        let loss = ce.forward(model.forward(x.clone()).logits, y.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        optim.step(1e-3, model, grads)
    };
    for _ in 0..3 {
        model = step(model, &mut optim);
    }

    let dir = tempfile::tempdir().unwrap();
    let model_path = dir.path().join("model.bpk");
    let optim_path = dir.path().join("optim.bpk");
    // Save `valid()`, not `clone()`: BatchNorm running stats are folded in lazily and
    // `into_record` does not sync them, so a record of the training module is one update
    // stale; `valid()` syncs them.
    model.valid().save_file(&model_path).unwrap();
    optim.save(&optim_path).unwrap();

    // Reload into a freshly initialized model and optimizer.
    let mut restored = config.init(&device).try_load_file(&model_path).unwrap();
    let mut restored_optim = AdamWConfig::new().init().load(&optim_path).unwrap();
    let ev = |m: &Classifier| values(&m.valid().forward(x.clone().inner()).logits);
    assert_eq!(
        ev(&model),
        ev(&restored),
        "eval logits (incl. BN running stats)"
    );

    // Resumed training continues identically.
    model = step(model, &mut optim);
    restored = step(restored, &mut restored_optim);
    assert_eq!(
        values(&model.fc.weight.val()),
        values(&restored.fc.weight.val()),
        "one more step after resume"
    );

    // Loading a record into a model of another shape is an error.
    let other = ClassifierConfig::new(10).with_width(8).init(&device);
    assert!(other.try_load_file(&model_path).is_err());
}

/// The distillation terms match a hand computation.
#[test]
fn distillation_loss_values() {
    let _rng = crate::common::rng_lock();
    let device = device();
    let student = ClassifierConfig::new(3).init(&device);
    let teacher = ResNet18Config::new().with_num_classes(3).init(&device);
    let (alpha, t, beta) = (0.6, 2.0, 0.5);
    let distiller = DistillConfig::new()
        .with_alpha(alpha)
        .with_temperature(t)
        .with_beta(beta)
        .init(student, teacher, &device);
    assert!(
        distiller.adapter.is_none(),
        "width 64: 128 channels on both sides"
    );

    let s = [1.0f64, 2.0, 3.0];
    let te = [3.0f64, 2.5, -1.0];
    let out = ClassifierOutput {
        logits: Tensor::from_data([[1.0f32, 2.0, 3.0]], &device),
        embedding: Tensor::zeros([1, 128], &device),
        features: Tensor::ones([1, 128, 1, 1], &device),
    };
    let loss = distiller.loss(
        &out,
        Tensor::from_data([[3.0f32, 2.5, -1.0]], &device),
        Tensor::zeros([1, 128, 1, 1], &device),
        Tensor::from_data([0i64], &device),
    );

    let log_softmax = |x: &[f64], t: f64| {
        let m = x.iter().fold(f64::MIN, |a, &b| a.max(b / t));
        let lse = m + x.iter().map(|v| (v / t - m).exp()).sum::<f64>().ln();
        x.iter().map(|v| v / t - lse).collect::<Vec<_>>()
    };
    let (ls, lt) = (log_softmax(&s, t), log_softmax(&te, t));
    let kl: f64 = (0..3).map(|i| lt[i].exp() * (lt[i] - ls[i])).sum();
    let ce = -log_softmax(&s, 1.0)[0];
    let mse = 1.0;
    let total = alpha * t * t * kl + (1.0 - alpha) * ce + beta * mse;
    let close = |a: f32, b: f64| (a as f64 - b).abs() < 1e-5;
    assert!(
        close(scalar(&loss.kl), kl),
        "kl {} vs {kl}",
        scalar(&loss.kl)
    );
    assert!(
        close(scalar(&loss.ce), ce),
        "ce {} vs {ce}",
        scalar(&loss.ce)
    );
    assert!(close(scalar(&loss.feature), mse));
    assert!(
        close(scalar(&loss.total), total),
        "total {} vs {total}",
        scalar(&loss.total)
    );
}
