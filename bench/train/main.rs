//! Training-step throughput of models A and C in defectkit (Burn, CPU `flex` backend).
//!
//! One step = forward + loss (cross-entropy for A, MSE reconstruction for C) + backward +
//! AdamW update, on random normal inputs. After `--warmup` steps, each case runs `--steps`
//! steps (or, with `--steps 0`, as many as fit in about `--target-seconds`, estimated from
//! the warm-up) and prints one JSON line:
//! `{"framework","model","size","batch","steps","seconds","img_per_s",...}`.
//!
//! The PyTorch peer is `bench/peers/torch_train.py` (same architectures, same lines);
//! `bench/train/run.sh` runs both and writes `bench/results/train_step.md`.
//! This is a benchmark, not a test: nothing is asserted.
//!
//! ```text
//! cargo run --release --example bench_train -- --models A,C --sizes 128,224
//! ```

use std::time::Instant;

use clap::Parser;
use defectkit::burn::module::Module;
use defectkit::burn::nn::loss::{CrossEntropyLossConfig, MseLoss, Reduction};
use defectkit::burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use defectkit::burn::prelude::*;
use defectkit::burn::tensor::Distribution;
use defectkit::models::{Classifier, ClassifierConfig, UNet, UNetConfig};

/// Learning rate of every step (the value does not change the cost).
const LR: f64 = 1e-3;
/// Classes of model A's head.
const NUM_CLASSES: usize = 10;

/// Command-line options.
#[derive(Parser, Debug)]
#[command(about = "Time one training step of models A and C on Burn's flex backend")]
struct Args {
    /// Models to time: A (ResNet-18 conv1..layer2 classifier), C (U-Net autoencoder).
    #[arg(long, value_delimiter = ',', default_value = "A,C")]
    models: Vec<String>,
    /// Square input sizes in pixels.
    #[arg(long, value_delimiter = ',', default_value = "128,224")]
    sizes: Vec<usize>,
    /// Batch size.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Untimed steps before timing.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Timed steps per case; 0 picks them from the warm-up to last about --target-seconds
    /// (at least 2).
    #[arg(long, default_value_t = 0)]
    steps: usize,
    /// Target duration of one timed case when --steps is 0.
    #[arg(long, default_value_t = 15.0)]
    target_seconds: f64,
    /// Model A's stem width.
    #[arg(long, default_value_t = 64)]
    width: usize,
    /// Model C: number of down/up-sampling levels.
    #[arg(long, default_value_t = 4)]
    unet_depth: usize,
    /// Model C: channels of the first level (conf/model/unet_ae.yaml's default).
    #[arg(long, default_value_t = 16)]
    unet_base_width: usize,
    /// Model C: latent size.
    #[arg(long, default_value_t = 128)]
    unet_latent_dim: usize,
    /// Model C: skip connections (true/false).
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    unet_skip: bool,
}

/// A model and its optimizer, able to run one synchronized training step.
#[allow(clippy::large_enum_variant)]
enum Case {
    /// Model A with cross-entropy.
    A {
        model: Classifier,
        targets: Tensor<1, Int>,
    },
    /// Model C with MSE reconstruction.
    C { model: UNet },
}

/// Runs one step (forward, loss, backward, AdamW) and waits for it; returns the loss.
fn step(case: &mut Case, optim: &mut ModuleOptimizer, x: &Tensor<4>, device: &Device) -> f32 {
    let loss = match case {
        Case::A { model, targets } => {
            let logits = model.forward(x.clone()).logits;
            let loss = CrossEntropyLossConfig::new()
                .init(device)
                .forward(logits, targets.clone());
            let grads = GradientsParams::from_grads(loss.backward(), &*model);
            *model = optim.step(LR, model.clone(), grads);
            loss
        }
        Case::C { model } => {
            let recon = model.forward(x.clone()).reconstruction;
            let loss = MseLoss::new().forward(recon, x.clone(), Reduction::Mean);
            let grads = GradientsParams::from_grads(loss.backward(), &*model);
            *model = optim.step(LR, model.clone(), grads);
            loss
        }
    };
    // Reading the loss waits for the forward pass; `sync` waits for the update too.
    let value = loss.into_scalar::<f32>();
    device.sync().expect("device sync failed");
    value
}

fn main() {
    let args = Args::parse();
    let device = Device::flex().autodiff();

    for name in &args.models {
        for &size in &args.sizes {
            let mut case = match name.as_str() {
                "A" | "a" => Case::A {
                    model: ClassifierConfig::new(NUM_CLASSES)
                        .with_width(args.width)
                        .init(&device),
                    targets: Tensor::from_data(
                        TensorData::new(
                            (0..args.batch)
                                .map(|i| (i % NUM_CLASSES) as i64)
                                .collect::<Vec<_>>(),
                            [args.batch],
                        ),
                        &device,
                    ),
                },
                "C" | "c" => Case::C {
                    model: UNetConfig::new(size)
                        .with_depth(args.unet_depth)
                        .with_base_width(args.unet_base_width)
                        .with_latent_dim(args.unet_latent_dim)
                        .with_skip_connections(args.unet_skip)
                        .init(&device),
                },
                other => {
                    eprintln!("unknown model {other:?} (expected A or C)");
                    std::process::exit(2);
                }
            };
            let params = match &case {
                Case::A { model, .. } => model.num_params(),
                Case::C { model } => model.num_params(),
            };
            let mut optim = AdamWConfig::new().init();
            let x: Tensor<4> = Tensor::random(
                [args.batch, 3, size, size],
                Distribution::Normal(0.0, 1.0),
                &device,
            );

            let mut warm = Vec::with_capacity(args.warmup);
            for _ in 0..args.warmup {
                let t = Instant::now();
                step(&mut case, &mut optim, &x, &device);
                warm.push(t.elapsed().as_secs_f64());
            }
            let steps = if args.steps > 0 {
                args.steps
            } else {
                // The last warm-up step is the better estimate (the first one allocates).
                let per_step = warm.last().copied().unwrap_or(1.0).max(1e-3);
                ((args.target_seconds / per_step).round() as usize).max(2)
            };

            let start = Instant::now();
            let mut loss = f32::NAN;
            for _ in 0..steps {
                loss = step(&mut case, &mut optim, &x, &device);
            }
            let seconds = start.elapsed().as_secs_f64();

            let mut line = serde_json::json!({
                "framework": "defectkit",
                "model": name.to_uppercase(),
                "size": size,
                "batch": args.batch,
                "steps": steps,
                "seconds": seconds,
                "img_per_s": (steps * args.batch) as f64 / seconds,
                "warmup_seconds": warm,
                "params": params,
                "final_loss": loss,
                "backend": "flex",
                "version": "burn 0.22.1",
            });
            if matches!(case, Case::C { .. }) {
                line["unet_skip"] = args.unet_skip.into();
            }
            println!("{line}");
        }
    }
}
