#!/usr/bin/env python3
"""PyTorch CPU peer of bench/train_ops/main.rs: per-op cost of the training ops of A and C.

The cases are the Rust side's, built by the same rules (one case per distinct layer shape,
`count` = occurrences in one forward pass; model A = ResNet-18 conv1..layer2 at --width,
model C = the U-Net autoencoder at --unet-depth / --unet-base-width without skip
connections), at each --sizes input and --batch, float32:

* conv2d_fwd, conv2d_dgrad, conv2d_wgrad: under torch.no_grad(), F.conv2d and the direct
  gradient kernels torch.nn.grad.conv2d_input / conv2d_weight (each one
  aten.convolution_backward call with output_mask (True, False, False), respectively
  (False, True, False)), as the Rust side calls the backend's kernels directly.
* batchnorm_fwd: nn.BatchNorm2d in train mode (batch statistics, running-stat update) on an
  input that does not require grad (its weight and bias do, as in training).
* *_fwd_bwd (batch norm, ReLU, add, max pool, nearest x2 upsample): inputs requiring grad,
  loss = (op(x) * g).sum() with a fixed random g, loss.backward(), the input gradients read
  (and reset to None before the next call). grad_head_fwd_bwd times the head alone,
  (x * g).sum() forward + backward, per output shape. The Rust side cannot seed a backward
  with a gradient, so both use this head (y.backward(g) would skip it here only).

Timing: --warmup untimed calls, then calls until about --target-seconds (at least
--min-calls); "ms" is the median per call. One JSON line per case with the Rust side's keys.

This is a benchmark, not a test: nothing is asserted.

    python bench/peers/torch_ops.py --models A,C --sizes 128,224 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass

import torch
from torch import nn
import torch.nn.functional as F


@dataclass(frozen=True)
class Conv:
    c_in: int
    c_out: int
    kernel: int
    stride: int
    pad: int
    hw: int
    bias: bool = False
    dgrad_needed: bool = True

    def out_hw(self) -> int:
        return (self.hw + 2 * self.pad - self.kernel) // self.stride + 1

    def shape(self, b: int) -> str:
        bias = " +bias" if self.bias else ""
        return (
            f"{b}x{self.c_in}x{self.hw}x{self.hw} -> {self.c_out} "
            f"k{self.kernel} s{self.stride} p{self.pad}{bias}"
        )

    def flops(self, b: int) -> float:
        o = self.out_hw()
        return 2.0 * b * self.c_out * o * o * self.c_in * self.kernel * self.kernel


@dataclass(frozen=True)
class Map:
    c: int
    hw: int

    def dims(self, b: int) -> tuple[int, int, int, int]:
        return (b, self.c, self.hw, self.hw)

    def shape(self, b: int) -> str:
        return f"{b}x{self.c}x{self.hw}x{self.hw}"


@dataclass(frozen=True)
class Kind:
    """kind: conv | batchnorm | relu | add | maxpool | upsample."""

    kind: str
    conv: Conv | None = None
    map: Map | None = None
    kernel: int = 0
    stride: int = 0
    pad: int = 0

    def shape(self, b: int) -> str:
        if self.kind == "conv":
            return self.conv.shape(b)
        if self.kind == "maxpool":
            return f"{self.map.shape(b)} k{self.kernel} s{self.stride} p{self.pad}"
        if self.kind == "upsample":
            return f"{self.map.shape(b)} x2"
        return self.map.shape(b)

    def output(self) -> Map:
        m = self.map
        if self.kind == "maxpool":
            return Map(m.c, (m.hw + 2 * self.pad - self.kernel) // self.stride + 1)
        if self.kind == "upsample":
            return Map(m.c, 2 * m.hw)
        return m


OPS = {
    "conv": ["conv2d_fwd", "conv2d_dgrad", "conv2d_wgrad"],
    "batchnorm": ["batchnorm_fwd", "batchnorm_fwd_bwd"],
    "relu": ["relu_fwd_bwd"],
    "add": ["add_fwd_bwd"],
    "maxpool": ["maxpool2d_fwd_bwd"],
    "upsample": ["upsample_nearest2x_fwd_bwd"],
}


class Layers:
    """A model's distinct layer shapes: [name, kind, count], first occurrence's name."""

    def __init__(self) -> None:
        self.items: list[list] = []

    def push(self, name: str, kind: Kind) -> None:
        for item in self.items:
            if item[1] == kind:
                item[2] += 1
                return
        self.items.append([name, kind, 1])

    def conv(self, name: str, c_in: int, c_out: int, k: int, s: int, hw: int) -> None:
        self.push(name, Kind("conv", conv=Conv(c_in, c_out, k, s, k // 2, hw)))

    def bn_relu(self, bn: str, m: Map) -> None:
        self.push(bn, Kind("batchnorm", map=m))
        self.push(f"{bn}+relu", Kind("relu", map=m))


def model_a(size: int, w: int) -> Layers:
    """ResNet-18 conv1, bn1, relu, max pool, layer1, layer2 (models::blocks::Stem)."""
    l = Layers()
    conv1 = Conv(3, w, 7, 2, 3, size, dgrad_needed=False)
    h1 = conv1.out_hw()
    l.push("conv1", Kind("conv", conv=conv1))
    l.bn_relu("bn1", Map(w, h1))
    pool = Kind("maxpool", map=Map(w, h1), kernel=3, stride=2, pad=1)
    l.push("maxpool", pool)
    c, hw = w, pool.output().hw
    for stage, c_out, stride in [(1, w, 1), (2, 2 * w, 2)]:
        for block in range(2):
            s = stride if block == 0 else 1
            p = f"layer{stage}.{block}"
            out_hw = (hw + 2 - 3) // s + 1
            if s != 1 or c != c_out:
                l.conv(f"{p}.downsample.0", c, c_out, 1, s, hw)
                l.push(f"{p}.downsample.1", Kind("batchnorm", map=Map(c_out, out_hw)))
            out = Map(c_out, out_hw)
            l.conv(f"{p}.conv1", c, c_out, 3, s, hw)
            l.bn_relu(f"{p}.bn1", out)
            l.conv(f"{p}.conv2", c_out, c_out, 3, 1, out_hw)
            l.push(f"{p}.bn2", Kind("batchnorm", map=out))
            l.push(f"{p}.add", Kind("add", map=out))
            l.push(f"{p}.relu", Kind("relu", map=out))
            c, hw = c_out, out_hw
    return l


def model_c(size: int, depth: int, base: int) -> Layers:
    """U-Net autoencoder without skips (models::unet_ae); the Linear layers are not timed."""
    l = Layers()
    ch = [base << i for i in range(depth + 1)]
    hw, c = size, 3
    for i in range(depth):
        p = f"encoder.{i}"
        l.conv(f"{p}.conv1", c, ch[i], 3, 1, hw)
        l.bn_relu(f"{p}.bn1", Map(ch[i], hw))
        l.conv(f"{p}.conv2", ch[i], ch[i], 3, 1, hw)
        l.bn_relu(f"{p}.bn2", Map(ch[i], hw))
        l.push(f"pool@encoder.{i}", Kind("maxpool", map=Map(ch[i], hw), kernel=2, stride=2, pad=0))
        hw //= 2
        c = ch[i]
    cb = ch[depth]
    l.conv("bottleneck.conv1", c, cb, 3, 1, hw)
    l.bn_relu("bottleneck.bn1", Map(cb, hw))
    l.conv("bottleneck.conv2", cb, cb, 3, 1, hw)
    l.bn_relu("bottleneck.bn2", Map(cb, hw))
    for j, i in enumerate(reversed(range(depth))):
        p = f"decoder.{j}"
        l.push(f"{p}.upsample", Kind("upsample", map=Map(ch[i + 1], hw)))
        hw *= 2
        l.conv(f"{p}.conv", ch[i + 1], ch[i], 3, 1, hw)
        l.bn_relu(f"{p}.bn", Map(ch[i], hw))
        l.conv(f"{p}.block.conv1", ch[i], ch[i], 3, 1, hw)
        l.bn_relu(f"{p}.block.bn1", Map(ch[i], hw))
        l.conv(f"{p}.block.conv2", ch[i], ch[i], 3, 1, hw)
        l.bn_relu(f"{p}.block.bn2", Map(ch[i], hw))
    l.push("head", Kind("conv", conv=Conv(ch[0], 3, 1, 1, 0, hw, bias=True)))
    return l


def timed(args, f):
    """Median / min / calls / seconds of f after warm-up; f reads a value back."""
    for _ in range(args.warmup):
        f()
    times = []
    start = time.perf_counter()
    while len(times) < max(args.min_calls, 1) or (
        len(times) < args.max_calls and time.perf_counter() - start < args.target_seconds
    ):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    seconds = time.perf_counter() - start
    return statistics.median(times), min(times), len(times), seconds


def first(t: torch.Tensor) -> float:
    """Reads one element back (CPU ops are synchronous anyway)."""
    return t.reshape(-1)[0].item()


class Ctx:
    def __init__(self, args, model: str, size: int) -> None:
        self.args, self.model, self.size = args, model, size
        mkldnn = torch.backends.mkldnn.is_available()
        self.backend = f"cpu, {torch.get_num_threads()} threads, mkldnn {mkldnn}"

    def selected(self, op: str) -> bool:
        return not self.args.ops or any(f and f in op for f in self.args.ops)

    def emit(self, op, layer, shape, count, t, flops=None, **extra) -> None:
        median, tmin, calls, seconds = t
        line = {
            "framework": "pytorch",
            "model": self.model,
            "size": self.size,
            "batch": self.args.batch,
            "op": op,
            "layer": layer,
            "shape": shape,
            "count": count,
            "ms": median * 1e3,
            "ms_min": tmin * 1e3,
            "calls": calls,
            "seconds": seconds,
            "gflops": flops / median / 1e9 if flops is not None else None,
            "backend": self.backend,
            "version": f"torch {torch.__version__}",
        }
        line.update(extra)
        print(json.dumps(line), flush=True)

    def conv(self, name: str, cv: Conv, count: int) -> None:
        b = self.args.batch
        x = torch.randn(b, cv.c_in, cv.hw, cv.hw)
        std = (2.0 / (cv.c_out * cv.kernel * cv.kernel)) ** 0.5
        w = torch.randn(cv.c_out, cv.c_in, cv.kernel, cv.kernel) * std
        bias = torch.randn(cv.c_out) * 0.1 if cv.bias else None
        o = cv.out_hw()
        gy = torch.randn(b, cv.c_out, o, o)
        shape, flops = cv.shape(b), cv.flops(b)
        s, p = cv.stride, cv.pad
        if self.args.check:
            self.check_conv(cv, x, w, bias, gy, shape)
        with torch.no_grad():
            if self.selected("conv2d_fwd"):
                t = timed(self.args, lambda: first(F.conv2d(x, w, bias, s, p)))
                self.emit("conv2d_fwd", name, shape, count, t, flops)
            if self.selected("conv2d_dgrad"):
                t = timed(
                    self.args, lambda: first(torch.nn.grad.conv2d_input(x.shape, w, gy, s, p))
                )
                self.emit(
                    "conv2d_dgrad", name, shape, count, t, flops,
                    method="torch.nn.grad.conv2d_input (aten.convolution_backward, input only)",
                    needed_in_training=cv.dgrad_needed,
                )
            if self.selected("conv2d_wgrad"):
                t = timed(
                    self.args, lambda: first(torch.nn.grad.conv2d_weight(x, w.shape, gy, s, p))
                )
                self.emit(
                    "conv2d_wgrad", name, shape, count, t, flops,
                    method="torch.nn.grad.conv2d_weight (aten.convolution_backward, weight only)",
                )

    def check_conv(self, cv, x, w, bias, gy, shape) -> None:
        xa, wa = x.clone().requires_grad_(), w.clone().requires_grad_()
        (F.conv2d(xa, wa, bias, cv.stride, cv.pad) * gy).sum().backward()
        with torch.no_grad():
            gx = torch.nn.grad.conv2d_input(x.shape, w, gy, cv.stride, cv.pad)
            gw = torch.nn.grad.conv2d_weight(x, w.shape, gy, cv.stride, cv.pad)
            def rel(a, r):
                return ((a - r).abs().max() / r.abs().max().clamp_min(1e-30)).item()

            print(
                f"check pytorch {self.model} {self.size} {shape}: dgrad rel. max diff "
                f"{rel(gx, xa.grad):.2e}, wgrad {rel(gw, wa.grad):.2e}",
                file=sys.stderr,
            )

    def backward(self, y, g, inputs, params=()) -> float:
        for t in (*inputs, *params):
            t.grad = None
        (y * g).sum().backward()
        return sum(first(x.grad) for x in inputs)

    def fwd_bwd(self, name: str, kind: Kind, count: int) -> None:
        b, m = self.args.batch, kind.map
        shape = kind.shape(b)
        g = torch.randn(*kind.output().dims(b))
        if kind.kind == "batchnorm":
            bn = nn.BatchNorm2d(m.c).train()
            if self.selected("batchnorm_fwd"):
                x = torch.randn(*m.dims(b))
                t = timed(self.args, lambda: first(bn(x)))
                self.emit("batchnorm_fwd", name, shape, count, t)
            if self.selected("batchnorm_fwd_bwd"):
                x = torch.randn(*m.dims(b), requires_grad=True)
                params = tuple(bn.parameters())
                t = timed(self.args, lambda: self.backward(bn(x), g, (x,), params))
                self.emit("batchnorm_fwd_bwd", name, shape, count, t)
        elif kind.kind == "relu":
            x = torch.randn(*m.dims(b), requires_grad=True)
            t = timed(self.args, lambda: self.backward(F.relu(x), g, (x,)))
            self.emit("relu_fwd_bwd", name, shape, count, t)
        elif kind.kind == "add":
            x = torch.randn(*m.dims(b), requires_grad=True)
            z = torch.randn(*m.dims(b), requires_grad=True)
            t = timed(self.args, lambda: self.backward(x + z, g, (x, z)))
            self.emit("add_fwd_bwd", name, shape, count, t)
        elif kind.kind == "maxpool":
            x = torch.randn(*m.dims(b), requires_grad=True)
            k, s, p = kind.kernel, kind.stride, kind.pad
            t = timed(self.args, lambda: self.backward(F.max_pool2d(x, k, s, p), g, (x,)))
            self.emit("maxpool2d_fwd_bwd", name, shape, count, t)
        elif kind.kind == "upsample":
            x = torch.randn(*m.dims(b), requires_grad=True)
            up = nn.Upsample(scale_factor=2, mode="nearest")
            t = timed(self.args, lambda: self.backward(up(x), g, (x,)))
            self.emit("upsample_nearest2x_fwd_bwd", name, shape, count, t)

    def head(self, m: Map, used_by: str) -> None:
        b = self.args.batch
        x = torch.randn(*m.dims(b), requires_grad=True)
        g = torch.randn(*m.dims(b))
        t = timed(self.args, lambda: self.backward(x, g, (x,)))
        self.emit("grad_head_fwd_bwd", f"head of {used_by}", m.shape(b), None, t)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="A,C", help="comma-separated: A, C")
    p.add_argument("--sizes", default="128,224", help="comma-separated square sizes")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--ops", default="", help="comma-separated substrings of op names")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--target-seconds", type=float, default=1.0)
    p.add_argument("--min-calls", type=int, default=3)
    p.add_argument("--max-calls", type=int, default=10_000)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--unet-depth", type=int, default=4)
    p.add_argument("--unet-base-width", type=int, default=16)
    p.add_argument("--check", action="store_true")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    args = p.parse_args()
    args.ops = [o.strip() for o in args.ops.split(",") if o.strip()]

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    for model in [m.strip().upper() for m in args.models.split(",") if m.strip()]:
        for size in [int(s) for s in args.sizes.split(",") if s.strip()]:
            if model == "A":
                layers = model_a(size, args.width)
            elif model == "C":
                if size % (1 << args.unet_depth):
                    raise SystemExit(f"model C needs a size divisible by 2^{args.unet_depth}")
                layers = model_c(size, args.unet_depth, args.unet_base_width)
            else:
                raise SystemExit(f"unknown model {model!r} (expected A or C)")
            ctx = Ctx(args, model, size)
            heads: list[tuple[Map, str]] = []
            for name, kind, count in layers.items:
                ops = OPS[kind.kind]
                if not any(ctx.selected(op) for op in ops):
                    continue
                if kind.kind == "conv":
                    ctx.conv(name, kind.conv, count)
                    continue
                ctx.fwd_bwd(name, kind, count)
                out = kind.output()
                uses_head = any(op.endswith("_fwd_bwd") and ctx.selected(op) for op in ops)
                if uses_head and all(m != out for m, _ in heads):
                    heads.append((out, name))
            for m, used_by in heads:
                ctx.head(m, used_by)


if __name__ == "__main__":
    main()
