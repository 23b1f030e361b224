//! Throughput of model A on flex (run with `--ignored --nocapture`).

use std::time::Instant;

use defectkit::burn::module::Module;
use defectkit::burn::nn::loss::CrossEntropyLossConfig;
use defectkit::burn::optim::{AdamWConfig, GradientsParams};
use defectkit::models::*;

use crate::common::*;

#[test]
#[ignore = "benchmark"]
fn bench_classifier_train_step_128px_batch16() {
    let _rng = crate::common::rng_lock();
    let batch = 16;
    let device = device().autodiff();
    let mut model = ClassifierConfig::new(10).init(&device);
    let mut optim = AdamWConfig::new().init();
    let ce = CrossEntropyLossConfig::new().init(&device);
    let x = images(batch, 128, &device);
    let y = targets(batch, 10, &device);
    let mut times = Vec::new();
    for i in 0..7 {
        let t = Instant::now();
        let loss = ce.forward(model.forward(x.clone()).logits, y.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(1e-3, model, grads);
        let _ = scalar(&loss); // sync
        let dt = t.elapsed().as_secs_f64();
        if i >= 2 {
            times.push(dt);
        }
    }
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    eprintln!(
        "train step 128px b{batch}: {:.3} s/step, {:.1} img/s (steps {:?})",
        mean,
        batch as f64 / mean,
        times
    );

    let eval = model.valid();
    let x = x.inner();
    let mut times = Vec::new();
    for i in 0..5 {
        let t = Instant::now();
        let _ = values(&eval.forward(x.clone()).logits);
        if i >= 1 {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    eprintln!("inference 128px b{batch}: {:.1} img/s", batch as f64 / mean);
}
