#!/usr/bin/env python3
"""PyTorch CPU peer of bench/train/main.rs: training-step throughput of models A and C.

The architectures mirror defectkit's (src/models/resnet.rs, classifier.rs, unet.rs):

* A: ResNet-18 conv1 (7x7/2, no bias) + BN + ReLU + 3x3/2 max-pool, layer1 (2 basic
  blocks, `width` channels), layer2 (2 basic blocks, 2*width, stride 2 with a 1x1-conv+BN
  projection), global average pool, Linear to 10 classes (no hidden layer, dropout 0).
* C: U-Net autoencoder with a vector latent: `depth` encoder ConvBlocks
  (conv3x3-BN-ReLU x2, convs without bias) at base_width*2^i channels each followed by a
  2x2 max-pool, a bottleneck ConvBlock, flatten -> Linear(latent) -> Linear back + ReLU ->
  reshape, then per level: nearest x2 upsample + conv3x3-BN-ReLU, optional concatenation
  with the encoder features (skip connections), ConvBlock; a final 1x1 conv (with bias),
  identity output.

One step = forward + loss (cross-entropy for A, MSE reconstruction for C, both mean) +
backward + AdamW (Burn's defaults: betas 0.9/0.999, eps 1e-5, weight decay 1e-4; lr 1e-3)
on random normal inputs. After --warmup steps, each case runs --steps steps (or, with
--steps 0, as many as fit in about --target-seconds, estimated from the warm-up) and prints
one JSON line with the same keys as the Rust side.

This is a benchmark, not a test: nothing is asserted.

    python bench/peers/torch_train.py --models A,C --sizes 128,224
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch
from torch import nn
import torch.nn.functional as F

LR = 1e-3
NUM_CLASSES = 10


def conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution, padding 1, no bias (torchvision's conv3x3)."""
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """ResNet basic block with an optional 1x1-conv+BN projection shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = conv3x3(c_in, c_out, stride)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = conv3x3(c_out, c_out)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + identity)


class Classifier(nn.Module):
    """Model A: ResNet-18 conv1..layer2 + global average pool + Linear."""

    def __init__(self, num_classes: int = NUM_CLASSES, width: int = 64) -> None:
        super().__init__()
        w = width
        self.conv1 = nn.Conv2d(3, w, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = nn.Sequential(BasicBlock(w, w, 1), BasicBlock(w, w, 1))
        self.layer2 = nn.Sequential(BasicBlock(w, 2 * w, 2), BasicBlock(2 * w, 2 * w, 1))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * w, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class ConvBlock(nn.Module):
    """conv3x3-BN-ReLU x2 at constant resolution."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv1 = conv3x3(c_in, c_out)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = conv3x3(c_out, c_out)
        self.bn2 = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(x)))


class UpBlock(nn.Module):
    """Nearest x2 upsample + conv3x3-BN-ReLU, optional skip concatenation, ConvBlock."""

    def __init__(self, c_in: int, c_out: int, skip: bool) -> None:
        super().__init__()
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.conv = conv3x3(c_in, c_out)
        self.bn = nn.BatchNorm2d(c_out)
        self.block = ConvBlock(2 * c_out if skip else c_out, c_out)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        x = F.relu(self.bn(self.conv(self.upsample(x))))
        if skip is not None:
            x = torch.cat([x, skip], 1)
        return self.block(x)


class UNet(nn.Module):
    """Model C: U-Net autoencoder with a flattened bottleneck -> latent vector."""

    def __init__(
        self,
        image_size: int,
        in_channels: int = 3,
        base_width: int = 32,
        depth: int = 4,
        skip_connections: bool = False,
        latent_dim: int = 128,
    ) -> None:
        super().__init__()
        factor = 2**depth
        assert image_size % factor == 0, "image_size must be a multiple of 2^depth"
        ch = [base_width << i for i in range(depth + 1)]
        hw = image_size // factor
        self.skip = skip_connections
        self.bottleneck_shape = (ch[depth], hw, hw)
        self.encoder = nn.ModuleList(
            ConvBlock(in_channels if i == 0 else ch[i - 1], ch[i]) for i in range(depth)
        )
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = ConvBlock(ch[depth - 1], ch[depth])
        flat = ch[depth] * hw * hw
        self.to_latent = nn.Linear(flat, latent_dim)
        self.from_latent = nn.Linear(latent_dim, flat)
        self.decoder = nn.ModuleList(
            UpBlock(ch[i + 1], ch[i], skip_connections) for i in reversed(range(depth))
        )
        self.head = nn.Conv2d(ch[0], in_channels, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d) and m is not self.head:
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.encoder:
            feats = block(x)
            x = self.pool(feats)
            if self.skip:
                skips.append(feats)
        x = self.bottleneck(x)
        z = self.to_latent(torch.flatten(x, 1))
        x = F.relu(self.from_latent(z)).reshape(-1, *self.bottleneck_shape)
        for up in self.decoder:
            x = up(x, skips.pop() if skips else None)
        return self.head(x)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="A,C", help="comma-separated: A, C")
    p.add_argument("--sizes", default="128,224", help="comma-separated square sizes")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=0, help="0: pick from --target-seconds (>= 2)")
    p.add_argument("--target-seconds", type=float, default=15.0)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--unet-depth", type=int, default=4)
    p.add_argument("--unet-base-width", type=int, default=16)
    p.add_argument("--unet-latent-dim", type=int, default=128)
    p.add_argument("--unet-skip", choices=["true", "false"], default="false")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    unet_skip = args.unet_skip == "true"

    for name in [m.strip().upper() for m in args.models.split(",") if m.strip()]:
        for size in [int(s) for s in args.sizes.split(",") if s.strip()]:
            if name == "A":
                model = Classifier(NUM_CLASSES, args.width)
                targets = torch.arange(args.batch) % NUM_CLASSES
            elif name == "C":
                model = UNet(
                    size,
                    base_width=args.unet_base_width,
                    depth=args.unet_depth,
                    skip_connections=unet_skip,
                    latent_dim=args.unet_latent_dim,
                )
            else:
                raise SystemExit(f"unknown model {name!r} (expected A or C)")
            model.train()
            # Counted as Burn counts them: parameters + BatchNorm running mean/var.
            stats = ("running_mean", "running_var")
            params = sum(p.numel() for p in model.parameters()) + sum(
                b.numel() for n, b in model.named_buffers() if n.endswith(stats)
            )
            optim = torch.optim.AdamW(
                model.parameters(), lr=LR, betas=(0.9, 0.999), eps=1e-5, weight_decay=1e-4
            )
            x = torch.randn(args.batch, 3, size, size)

            def step() -> float:
                optim.zero_grad(set_to_none=True)
                out = model(x)
                if name == "A":
                    loss = F.cross_entropy(out, targets)
                else:
                    loss = F.mse_loss(out, x)
                loss.backward()
                optim.step()
                return loss.item()  # synchronizes (CPU ops are synchronous anyway)

            warm = []
            for _ in range(args.warmup):
                t = time.perf_counter()
                step()
                warm.append(time.perf_counter() - t)
            if args.steps > 0:
                steps = args.steps
            else:
                per_step = max(warm[-1] if warm else 1.0, 1e-3)
                steps = max(2, round(args.target_seconds / per_step))

            start = time.perf_counter()
            loss = float("nan")
            for _ in range(steps):
                loss = step()
            seconds = time.perf_counter() - start

            line = {
                "framework": "pytorch",
                "model": name,
                "size": size,
                "batch": args.batch,
                "steps": steps,
                "seconds": seconds,
                "img_per_s": steps * args.batch / seconds,
                "warmup_seconds": warm,
                "params": params,
                "final_loss": loss,
                "backend": f"cpu, {torch.get_num_threads()} threads",
                "version": f"torch {torch.__version__}",
            }
            if name == "C":
                line["unet_skip"] = unet_skip
            print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
