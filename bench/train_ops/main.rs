//! Per-op cost of the CPU training ops of models A and C in defectkit (Burn, `flex` backend).
//!
//! The layer shapes are those of model A (ResNet-18 conv1..layer2, `--width` 64) and model
//! C (the U-Net autoencoder, `--unet-depth` 4, `--unet-base-width` 16, skip connections
//! off as in conf/model/unet_ae.yaml), for each `--sizes` input at `--batch`, float32; each
//! layer's input size is derived from the image size. A shape that occurs several times in a
//! model is timed once; `count` says how often one forward pass runs it. Per (op, shape):
//!
//! - `conv2d_fwd`, `conv2d_dgrad`, `conv2d_wgrad`: the convolution and its two gradients,
//!   each a direct kernel call on the plain flex device, no autodiff. The weight gradient is
//!   `burn::tensor::module::conv2d_weight_backward`, which dispatches to the backend's
//!   `ModuleOps::conv2d_weight_backward`: the very call Burn's autodiff makes in conv2d's
//!   backward. `ModuleOps::conv2d_x_backward` is not exposed by the tensor API (and the
//!   backend types are not reachable without burn's `extension` feature), but flex does not
//!   override it: burn-backend's default is `conv_transpose2d(output_grad, weight, None,
//!   ConvTransposeOptions::new(stride, padding, padding_out, dilation, groups))` with
//!   `padding_out` from `calculate_padding_out`, and that is what `conv2d_dgrad` calls,
//!   with the same options. `--check` compares both with the gradients autodiff computes.
//!   conv1's input gradient (`needed_in_training: false`) is timed for completeness; training
//!   never needs it, as the images do not require grad.
//! - `batchnorm_fwd`: `burn::nn::BatchNorm` in training mode (autodiff device, batch
//!   statistics, running-stat update) on an input that does not require grad.
//! - `*_fwd_bwd` (BatchNorm, ReLU, add, max pool, nearest ×2 upsample): on the autodiff
//!   device, inputs requiring grad, `loss = (op(x) * g).sum()` with a fixed random `g`, then
//!   `loss.backward()` and the input gradients read. Burn cannot seed a backward with a given
//!   gradient, so both sides use this head; `grad_head_fwd_bwd` times the head alone,
//!   `(x * g).sum()` forward + backward, for each output shape, to be subtracted.
//!
//! Timing: `--warmup` untimed calls, then calls until about `--target-seconds` have passed (at
//! least `--min-calls`); `ms` is the median per call. Each call ends by reading one element
//! of its result (or gradient) back and syncing the device. One JSON line per (op, shape):
//! `{"framework","model","size","batch","op","layer","shape","count","ms","ms_min","calls",
//! "gflops",...}`; `gflops` only for convolutions (2·B·C_out·H_out·W_out·C_in·k², the same
//! for all three).
//!
//! The PyTorch peer is `bench/peers/torch_ops.py` (same cases, same lines);
//! `bench/train_ops/run.sh` runs both and writes `bench/results/train_ops.md`.
//! This is a benchmark, not a test: nothing is asserted.
//!
//! ```text
//! cargo run --release --example bench_train_ops -- --models A,C --sizes 128,224
//! ```

use std::hint::black_box;
use std::time::Instant;

use clap::Parser;
use defectkit::burn::nn::interpolate::{Interpolate2dConfig, InterpolateMode};
use defectkit::burn::nn::pool::MaxPool2dConfig;
use defectkit::burn::nn::{BatchNormConfig, PaddingConfig2d};
use defectkit::burn::prelude::*;
use defectkit::burn::tensor::activation::relu;
use defectkit::burn::tensor::module::{conv2d, conv2d_weight_backward, conv_transpose2d};
use defectkit::burn::tensor::ops::{ConvOptions, ConvTransposeOptions};
use defectkit::burn::tensor::Distribution;

/// Command-line options.
#[derive(Parser, Debug)]
#[command(about = "Time Burn's CPU training ops at the layer shapes of models A and C")]
struct Args {
    /// Models whose shapes to time: A (ResNet-18 conv1..layer2), C (U-Net autoencoder).
    #[arg(long, value_delimiter = ',', default_value = "A,C")]
    models: Vec<String>,
    /// Square input image sizes in pixels.
    #[arg(long, value_delimiter = ',', default_value = "128,224")]
    sizes: Vec<usize>,
    /// Batch size.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Op filter: a case runs when its op name contains one of these (empty: all). The
    /// gradient heads of the selected `*_fwd_bwd` cases always run.
    #[arg(long, value_delimiter = ',')]
    ops: Vec<String>,
    /// Untimed calls before timing.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Timed duration of one case (at least --min-calls calls).
    #[arg(long, default_value_t = 1.0)]
    target_seconds: f64,
    /// Fewest timed calls per case.
    #[arg(long, default_value_t = 3)]
    min_calls: usize,
    /// Most timed calls per case.
    #[arg(long, default_value_t = 10_000)]
    max_calls: usize,
    /// Model A's stem width.
    #[arg(long, default_value_t = 64)]
    width: usize,
    /// Model C: number of down/up-sampling levels.
    #[arg(long, default_value_t = 4)]
    unet_depth: usize,
    /// Model C: channels of the first level (conf/model/unet_ae.yaml's default).
    #[arg(long, default_value_t = 16)]
    unet_base_width: usize,
    /// Compare the direct conv gradients with autodiff's, per conv shape (to stderr).
    #[arg(long)]
    check: bool,
}

/// A convolution layer shape.
#[derive(Clone, Debug, PartialEq)]
struct Conv {
    c_in: usize,
    c_out: usize,
    kernel: usize,
    stride: usize,
    pad: usize,
    /// Input height = width.
    hw: usize,
    bias: bool,
    /// Whether training needs the input gradient (false for the first layer).
    dgrad_needed: bool,
}

impl Conv {
    fn out_hw(&self) -> usize {
        (self.hw + 2 * self.pad - self.kernel) / self.stride + 1
    }

    fn shape(&self, batch: usize) -> String {
        format!(
            "{batch}x{}x{}x{} -> {} k{} s{} p{}{}",
            self.c_in,
            self.hw,
            self.hw,
            self.c_out,
            self.kernel,
            self.stride,
            self.pad,
            if self.bias { " +bias" } else { "" }
        )
    }

    fn flops(&self, batch: usize) -> f64 {
        let o = self.out_hw();
        2.0 * (batch * self.c_out * o * o * self.c_in * self.kernel * self.kernel) as f64
    }

    fn options(&self) -> ConvOptions<2> {
        ConvOptions::new([self.stride; 2], [self.pad; 2], [1, 1], 1)
    }

    /// What burn-backend's default `conv2d_x_backward` passes to `conv_transpose2d`.
    fn dgrad_options(&self) -> ConvTransposeOptions<2> {
        let padding_out = padding_out(self.kernel, self.stride, self.pad, self.hw, self.out_hw());
        ConvTransposeOptions::new([self.stride; 2], [self.pad; 2], [padding_out; 2], [1, 1], 1)
    }
}

/// burn-backend's `calculate_padding_out` (dilation 1): the input rows a strided forward
/// convolution drops, which the transposed convolution must give back.
fn padding_out(kernel: usize, stride: usize, pad: usize, size_in: usize, size_out: usize) -> usize {
    if stride <= 1 {
        return 0;
    }
    let base = (size_out as i64 - 1) * stride as i64 + kernel as i64 - 2 * pad as i64;
    (size_in as i64 - base).max(0) as usize
}

/// A feature map `[batch, c, hw, hw]`.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Map {
    c: usize,
    hw: usize,
}

impl Map {
    fn dims(&self, batch: usize) -> [usize; 4] {
        [batch, self.c, self.hw, self.hw]
    }

    fn shape(&self, batch: usize) -> String {
        format!("{batch}x{}x{}x{}", self.c, self.hw, self.hw)
    }
}

/// What one case times.
#[derive(Clone, Debug, PartialEq)]
enum Kind {
    Conv(Conv),
    BatchNorm(Map),
    Relu(Map),
    Add(Map),
    /// Max pool `kernel`/`stride`, padding `pad`.
    MaxPool {
        map: Map,
        kernel: usize,
        stride: usize,
        pad: usize,
    },
    /// Nearest ×2 upsample.
    Upsample(Map),
}

impl Kind {
    fn shape(&self, batch: usize) -> String {
        match self {
            Kind::Conv(conv) => conv.shape(batch),
            Kind::BatchNorm(m) | Kind::Relu(m) | Kind::Add(m) => m.shape(batch),
            Kind::MaxPool {
                map,
                kernel,
                stride,
                pad,
            } => format!("{} k{kernel} s{stride} p{pad}", map.shape(batch)),
            Kind::Upsample(m) => format!("{} x2", m.shape(batch)),
        }
    }

    /// The output map of a `*_fwd_bwd` op (the gradient head's shape).
    fn output(&self) -> Option<Map> {
        match self {
            Kind::Conv(_) => None,
            Kind::BatchNorm(m) | Kind::Relu(m) | Kind::Add(m) => Some(*m),
            Kind::MaxPool {
                map,
                kernel,
                stride,
                pad,
            } => Some(Map {
                c: map.c,
                hw: (map.hw + 2 * pad - kernel) / stride + 1,
            }),
            Kind::Upsample(m) => Some(Map {
                c: m.c,
                hw: 2 * m.hw,
            }),
        }
    }
}

/// One distinct layer shape of a model: its first layer's name and how often it occurs.
#[derive(Debug)]
struct Layer {
    name: String,
    kind: Kind,
    count: usize,
}

/// Collects a model's layers, merging repeated shapes into the first occurrence.
#[derive(Default)]
struct Layers(Vec<Layer>);

impl Layers {
    fn push(&mut self, name: impl Into<String>, kind: Kind) {
        match self.0.iter_mut().find(|l| l.kind == kind) {
            Some(layer) => layer.count += 1,
            None => self.0.push(Layer {
                name: name.into(),
                kind,
                count: 1,
            }),
        }
    }

    fn conv(&mut self, name: &str, c_in: usize, c_out: usize, k: usize, s: usize, hw: usize) {
        let conv = Conv {
            c_in,
            c_out,
            kernel: k,
            stride: s,
            pad: k / 2,
            hw,
            bias: false,
            dgrad_needed: true,
        };
        self.push(name, Kind::Conv(conv));
    }

    /// BatchNorm + ReLU on the same map.
    fn bn_relu(&mut self, bn: &str, map: Map) {
        self.push(bn, Kind::BatchNorm(map));
        self.push(format!("{bn}+relu"), Kind::Relu(map));
    }
}

/// Model A's layers: ResNet-18 conv1, bn1, relu, max pool, layer1 (2 blocks), layer2 (2
/// blocks, the first strided with a 1×1 projection), as in `models::blocks::Stem`.
fn model_a(size: usize, w: usize) -> Layers {
    let mut l = Layers::default();
    let conv1 = Conv {
        c_in: 3,
        c_out: w,
        kernel: 7,
        stride: 2,
        pad: 3,
        hw: size,
        bias: false,
        dgrad_needed: false,
    };
    let h1 = conv1.out_hw();
    l.push("conv1", Kind::Conv(conv1));
    l.bn_relu("bn1", Map { c: w, hw: h1 });
    let pool = Kind::MaxPool {
        map: Map { c: w, hw: h1 },
        kernel: 3,
        stride: 2,
        pad: 1,
    };
    let h2 = pool.output().expect("a pool has an output").hw;
    l.push("maxpool", pool);
    let mut c = w;
    let mut hw = h2;
    for (stage, c_out, stride) in [(1, w, 1), (2, 2 * w, 2)] {
        for block in 0..2 {
            let s = if block == 0 { stride } else { 1 };
            let p = format!("layer{stage}.{block}");
            let out_hw = (hw + 2 - 3) / s + 1;
            if s != 1 || c != c_out {
                l.conv(&format!("{p}.downsample.0"), c, c_out, 1, s, hw);
                l.push(
                    format!("{p}.downsample.1"),
                    Kind::BatchNorm(Map {
                        c: c_out,
                        hw: out_hw,
                    }),
                );
            }
            let out = Map {
                c: c_out,
                hw: out_hw,
            };
            l.conv(&format!("{p}.conv1"), c, c_out, 3, s, hw);
            l.bn_relu(&format!("{p}.bn1"), out);
            l.conv(&format!("{p}.conv2"), c_out, c_out, 3, 1, out_hw);
            l.push(format!("{p}.bn2"), Kind::BatchNorm(out));
            l.push(format!("{p}.add"), Kind::Add(out));
            l.push(format!("{p}.relu"), Kind::Relu(out));
            c = c_out;
            hw = out_hw;
        }
    }
    l
}

/// Model C's layers: the U-Net autoencoder of `models::unet_ae` without skip connections
/// (encoder ConvBlocks + 2×2 max pools, bottleneck ConvBlock, decoder nearest ×2 upsample +
/// conv-BN-ReLU + ConvBlock, 1×1 head with bias). The Linear latent layers are not timed.
fn model_c(size: usize, depth: usize, base: usize) -> Layers {
    let mut l = Layers::default();
    let ch: Vec<usize> = (0..=depth).map(|i| base << i).collect();
    let mut hw = size;
    let mut c = 3;
    for (i, &ci) in ch.iter().enumerate().take(depth) {
        let p = format!("encoder.{i}");
        l.conv(&format!("{p}.conv1"), c, ci, 3, 1, hw);
        l.bn_relu(&format!("{p}.bn1"), Map { c: ci, hw });
        l.conv(&format!("{p}.conv2"), ci, ci, 3, 1, hw);
        l.bn_relu(&format!("{p}.bn2"), Map { c: ci, hw });
        l.push(
            format!("pool@encoder.{i}"),
            Kind::MaxPool {
                map: Map { c: ci, hw },
                kernel: 2,
                stride: 2,
                pad: 0,
            },
        );
        hw /= 2;
        c = ci;
    }
    let cb = ch[depth];
    l.conv("bottleneck.conv1", c, cb, 3, 1, hw);
    l.bn_relu("bottleneck.bn1", Map { c: cb, hw });
    l.conv("bottleneck.conv2", cb, cb, 3, 1, hw);
    l.bn_relu("bottleneck.bn2", Map { c: cb, hw });
    for (j, i) in (0..depth).rev().enumerate() {
        let p = format!("decoder.{j}");
        l.push(
            format!("{p}.upsample"),
            Kind::Upsample(Map { c: ch[i + 1], hw }),
        );
        hw *= 2;
        l.conv(&format!("{p}.conv"), ch[i + 1], ch[i], 3, 1, hw);
        l.bn_relu(&format!("{p}.bn"), Map { c: ch[i], hw });
        l.conv(&format!("{p}.block.conv1"), ch[i], ch[i], 3, 1, hw);
        l.bn_relu(&format!("{p}.block.bn1"), Map { c: ch[i], hw });
        l.conv(&format!("{p}.block.conv2"), ch[i], ch[i], 3, 1, hw);
        l.bn_relu(&format!("{p}.block.bn2"), Map { c: ch[i], hw });
    }
    let head = Conv {
        c_in: ch[0],
        c_out: 3,
        kernel: 1,
        stride: 1,
        pad: 0,
        hw,
        bias: true,
        dgrad_needed: true,
    };
    l.push("head", Kind::Conv(head));
    l
}

/// Median, minimum and count of the timed calls, in seconds.
struct Timing {
    median: f64,
    min: f64,
    calls: usize,
    seconds: f64,
}

/// Runs `f` `warmup` times, then until `target` seconds have passed (within the call-count
/// bounds); `f` must force its work (read a value back) before returning.
fn time(args: &Args, mut f: impl FnMut() -> f32) -> Timing {
    for _ in 0..args.warmup {
        black_box(f());
    }
    let mut times = Vec::new();
    let start = Instant::now();
    while times.len() < args.min_calls.max(1)
        || (times.len() < args.max_calls && start.elapsed().as_secs_f64() < args.target_seconds)
    {
        let t = Instant::now();
        black_box(f());
        times.push(t.elapsed().as_secs_f64());
    }
    let seconds = start.elapsed().as_secs_f64();
    let calls = times.len();
    times.sort_by(f64::total_cmp);
    let median = if calls % 2 == 1 {
        times[calls / 2]
    } else {
        (times[calls / 2 - 1] + times[calls / 2]) / 2.0
    };
    Timing {
        median,
        min: times[0],
        calls,
        seconds,
    }
}

/// Reads one element back (forces the computation) and waits for the device.
fn first(t: Tensor<4>, device: &Device) -> f32 {
    let v = t.slice([0..1, 0..1, 0..1, 0..1]).into_scalar::<f32>();
    device.sync().expect("device sync failed");
    v
}

/// Random normal tensor.
fn randn(dims: [usize; 4], device: &Device) -> Tensor<4> {
    Tensor::random(dims, Distribution::Normal(0.0, 1.0), device)
}

/// Largest absolute difference of `a` and `b`, relative to `b`'s largest magnitude.
fn rel_diff(a: Tensor<4>, b: Tensor<4>) -> f32 {
    let scale = b
        .clone()
        .abs()
        .max()
        .into_scalar::<f32>()
        .max(f32::MIN_POSITIVE);
    (a - b).abs().max().into_scalar::<f32>() / scale
}

/// Context of one model/size for the JSON lines.
struct Ctx<'a> {
    args: &'a Args,
    model: &'a str,
    size: usize,
    /// Plain flex device (direct kernel calls).
    inner: Device,
    /// Autodiff over flex.
    ad: Device,
}

impl Ctx<'_> {
    fn selected(&self, op: &str) -> bool {
        self.args.ops.is_empty()
            || self
                .args
                .ops
                .iter()
                .any(|f| !f.is_empty() && op.contains(f.as_str()))
    }

    #[allow(clippy::too_many_arguments)]
    fn emit(
        &self,
        op: &str,
        layer: &str,
        shape: &str,
        count: Option<usize>,
        t: &Timing,
        flops: Option<f64>,
        extra: serde_json::Value,
    ) {
        let mut line = serde_json::json!({
            "framework": "defectkit",
            "model": self.model,
            "size": self.size,
            "batch": self.args.batch,
            "op": op,
            "layer": layer,
            "shape": shape,
            "count": count,
            "ms": t.median * 1e3,
            "ms_min": t.min * 1e3,
            "calls": t.calls,
            "seconds": t.seconds,
            "gflops": flops.map(|f| f / t.median / 1e9),
            "backend": "flex",
            "version": "burn 0.22.1",
        });
        if let (Some(line), serde_json::Value::Object(extra)) = (line.as_object_mut(), extra) {
            line.extend(extra);
        }
        println!("{line}");
    }

    fn conv(&self, layer: &Layer, conv: &Conv) {
        let b = self.args.batch;
        let dev = &self.inner;
        let x = randn([b, conv.c_in, conv.hw, conv.hw], dev);
        // Kaiming-normal scale, as the models initialize (keeps values normal-sized).
        let std = (2.0 / (conv.c_out * conv.kernel * conv.kernel) as f64).sqrt();
        let w: Tensor<4> = Tensor::random(
            [conv.c_out, conv.c_in, conv.kernel, conv.kernel],
            Distribution::Normal(0.0, std),
            dev,
        );
        let bias: Option<Tensor<1>> = conv
            .bias
            .then(|| Tensor::random([conv.c_out], Distribution::Normal(0.0, 0.1), dev));
        let o = conv.out_hw();
        let gy = randn([b, conv.c_out, o, o], dev);
        let shape = conv.shape(b);
        let flops = Some(conv.flops(b));
        let count = Some(layer.count);

        if self.args.check {
            self.check_conv(conv, &x, &w, &bias, &gy, &shape);
        }
        if self.selected("conv2d_fwd") {
            let t = time(self.args, || {
                let y = conv2d(x.clone(), w.clone(), bias.clone(), conv.options());
                first(y, dev)
            });
            self.emit(
                "conv2d_fwd",
                &layer.name,
                &shape,
                count,
                &t,
                flops,
                ().into(),
            );
        }
        if self.selected("conv2d_dgrad") {
            let t = time(self.args, || {
                let gx = conv_transpose2d(gy.clone(), w.clone(), None, conv.dgrad_options());
                first(gx, dev)
            });
            let extra = serde_json::json!({
                "method": "conv_transpose2d (flex's conv2d_x_backward, the burn-backend default)",
                "needed_in_training": conv.dgrad_needed,
            });
            self.emit("conv2d_dgrad", &layer.name, &shape, count, &t, flops, extra);
        }
        if self.selected("conv2d_wgrad") {
            let t = time(self.args, || {
                let gw = conv2d_weight_backward(x.clone(), w.clone(), gy.clone(), conv.options());
                first(gw, dev)
            });
            let extra = serde_json::json!({
                "method": "burn::tensor::module::conv2d_weight_backward (ModuleOps)",
            });
            self.emit("conv2d_wgrad", &layer.name, &shape, count, &t, flops, extra);
        }
    }

    /// Autodiff's conv gradients for the upstream gradient `gy` (via `(y · gy).sum()`)
    /// against the direct calls timed above.
    fn check_conv(
        &self,
        conv: &Conv,
        x: &Tensor<4>,
        w: &Tensor<4>,
        bias: &Option<Tensor<1>>,
        gy: &Tensor<4>,
        shape: &str,
    ) {
        let xa = x.clone().autodiff().require_grad();
        let wa = w.clone().autodiff().require_grad();
        let ba = bias.clone().map(|b| b.autodiff());
        let y = conv2d(xa.clone(), wa.clone(), ba, conv.options());
        let grads = (y * gy.clone().autodiff()).sum().backward();
        let gx_ad = xa.grad(&grads).expect("x has a gradient");
        let gw_ad = wa.grad(&grads).expect("w has a gradient");
        let gx = conv_transpose2d(gy.clone(), w.clone(), None, conv.dgrad_options());
        let gw = conv2d_weight_backward(x.clone(), w.clone(), gy.clone(), conv.options());
        eprintln!(
            "check defectkit {} {} {shape}: dgrad rel. max diff {:.2e}, wgrad {:.2e}",
            self.model,
            self.size,
            rel_diff(gx, gx_ad),
            rel_diff(gw, gw_ad)
        );
    }

    /// `(y * g).sum()` backward; returns one element of each input gradient, summed.
    fn backward(&self, y: Tensor<4>, g: &Tensor<4>, inputs: &[&Tensor<4>]) -> f32 {
        let grads = (y * g.clone()).sum().backward();
        inputs
            .iter()
            .map(|x| first(x.grad(&grads).expect("input has a gradient"), &self.inner))
            .sum()
    }

    fn fwd_bwd(&self, layer: &Layer) {
        let b = self.args.batch;
        let ad = &self.ad;
        let shape = layer.kind.shape(b);
        let count = Some(layer.count);
        let out = layer.kind.output().expect("not a convolution");
        let g = randn(out.dims(b), ad);
        match &layer.kind {
            Kind::BatchNorm(m) => {
                let bn = BatchNormConfig::new(m.c).init(ad);
                if self.selected("batchnorm_fwd") {
                    let x = randn(m.dims(b), ad);
                    let t = time(self.args, || first(bn.forward(x.clone()), ad));
                    self.emit(
                        "batchnorm_fwd",
                        &layer.name,
                        &shape,
                        count,
                        &t,
                        None,
                        ().into(),
                    );
                }
                if self.selected("batchnorm_fwd_bwd") {
                    let x = randn(m.dims(b), ad).require_grad();
                    let t = time(self.args, || {
                        self.backward(bn.forward(x.clone()), &g, &[&x])
                    });
                    self.emit(
                        "batchnorm_fwd_bwd",
                        &layer.name,
                        &shape,
                        count,
                        &t,
                        None,
                        ().into(),
                    );
                }
            }
            Kind::Relu(m) => {
                let x = randn(m.dims(b), ad).require_grad();
                let t = time(self.args, || self.backward(relu(x.clone()), &g, &[&x]));
                self.emit(
                    "relu_fwd_bwd",
                    &layer.name,
                    &shape,
                    count,
                    &t,
                    None,
                    ().into(),
                );
            }
            Kind::Add(m) => {
                let x = randn(m.dims(b), ad).require_grad();
                let z = randn(m.dims(b), ad).require_grad();
                let t = time(self.args, || {
                    self.backward(x.clone() + z.clone(), &g, &[&x, &z])
                });
                self.emit(
                    "add_fwd_bwd",
                    &layer.name,
                    &shape,
                    count,
                    &t,
                    None,
                    ().into(),
                );
            }
            Kind::MaxPool {
                map,
                kernel,
                stride,
                pad,
            } => {
                let pool = MaxPool2dConfig::new([*kernel; 2])
                    .with_strides([*stride; 2])
                    .with_padding(PaddingConfig2d::Explicit(*pad, *pad, *pad, *pad))
                    .init();
                let x = randn(map.dims(b), ad).require_grad();
                let t = time(self.args, || {
                    self.backward(pool.forward(x.clone()), &g, &[&x])
                });
                self.emit(
                    "maxpool2d_fwd_bwd",
                    &layer.name,
                    &shape,
                    count,
                    &t,
                    None,
                    ().into(),
                );
            }
            Kind::Upsample(m) => {
                let up = Interpolate2dConfig::new()
                    .with_scale_factor(Some([2.0, 2.0]))
                    .with_mode(InterpolateMode::Nearest)
                    .with_align_corners(false)
                    .init();
                let x = randn(m.dims(b), ad).require_grad();
                let t = time(self.args, || {
                    self.backward(up.forward(x.clone()), &g, &[&x])
                });
                self.emit(
                    "upsample_nearest2x_fwd_bwd",
                    &layer.name,
                    &shape,
                    count,
                    &t,
                    None,
                    ().into(),
                );
            }
            Kind::Conv(_) => unreachable!("convolutions are timed by Ctx::conv"),
        }
    }

    /// The gradient head alone on `map`: `(x * g).sum()` forward + backward.
    fn head(&self, map: Map, used_by: &str) {
        let b = self.args.batch;
        let x = randn(map.dims(b), &self.ad).require_grad();
        let g = randn(map.dims(b), &self.ad);
        let t = time(self.args, || self.backward(x.clone(), &g, &[&x]));
        let layer = format!("head of {used_by}");
        let shape = map.shape(b);
        self.emit(
            "grad_head_fwd_bwd",
            &layer,
            &shape,
            None,
            &t,
            None,
            ().into(),
        );
    }
}

/// The op names a layer's cases have.
fn op_names(kind: &Kind) -> &'static [&'static str] {
    match kind {
        Kind::Conv(_) => &["conv2d_fwd", "conv2d_dgrad", "conv2d_wgrad"],
        Kind::BatchNorm(_) => &["batchnorm_fwd", "batchnorm_fwd_bwd"],
        Kind::Relu(_) => &["relu_fwd_bwd"],
        Kind::Add(_) => &["add_fwd_bwd"],
        Kind::MaxPool { .. } => &["maxpool2d_fwd_bwd"],
        Kind::Upsample(_) => &["upsample_nearest2x_fwd_bwd"],
    }
}

fn main() {
    let args = Args::parse();
    let inner = Device::flex();
    let ad = inner.clone().autodiff();

    for name in &args.models {
        let model = name.to_uppercase();
        for &size in &args.sizes {
            let layers = match model.as_str() {
                "A" => model_a(size, args.width),
                "C" => {
                    let factor = 1usize << args.unet_depth;
                    if size % factor != 0 {
                        eprintln!("model C needs a size divisible by 2^depth = {factor}");
                        std::process::exit(2);
                    }
                    model_c(size, args.unet_depth, args.unet_base_width)
                }
                other => {
                    eprintln!("unknown model {other:?} (expected A or C)");
                    std::process::exit(2);
                }
            };
            let ctx = Ctx {
                args: &args,
                model: &model,
                size,
                inner: inner.clone(),
                ad: ad.clone(),
            };
            let mut heads: Vec<(Map, String)> = Vec::new();
            for layer in &layers.0 {
                let ops = op_names(&layer.kind);
                if !ops.iter().any(|op| ctx.selected(op)) {
                    continue;
                }
                match &layer.kind {
                    Kind::Conv(conv) => ctx.conv(layer, conv),
                    kind => {
                        ctx.fwd_bwd(layer);
                        let out = kind.output().expect("not a convolution");
                        let uses_head = ops
                            .iter()
                            .any(|op| op.ends_with("_fwd_bwd") && ctx.selected(op));
                        if uses_head && !heads.iter().any(|(m, _)| *m == out) {
                            heads.push((out, layer.name.clone()));
                        }
                    }
                }
            }
            for (map, used_by) in &heads {
                ctx.head(*map, used_by);
            }
        }
    }
}
