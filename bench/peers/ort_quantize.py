#!/usr/bin/env python3
"""The peer int8 quantizer for `defectkit bench --quantized`: onnxruntime-Python's own static
QDQ quantization of an exported FP32 defectkit model, calibrated on exactly the tensors our
quantizer used (`defectkit quantize --save-calibration CAL.npy`).

    python bench/peers/ort_quantize.py --model M.onnx --calibration CAL.npy --out M.int8.ort.onnx

Recipe (shared/DESIGN.md, "Static int8 QDQ as ONNX Runtime's own quantizer does it"):
`quant_pre_process` (skip_symbolic_shape=True: the symbolic shape inference needs sympy and
our graphs have fixed C, H, W) then `quantize_static` with QuantFormat.QDQ, per-channel int8
weights, uint8 activations, MinMax calibration, and
`extra_options={"QDQDisableWeightAdjustForInt32Bias": True}` (onnxruntime 1.31 crashes in
`_adjust_weight_scale_for_int32_bias` on our exports without it). The FP32 model's
`metadata_props` are copied onto the result with the `defectkit` JSON's "precision" set to
"int8" (defectkit's runtime refuses a model without that metadata). Prints one JSON line:
the op counts of the result, its size, the calibration size and the versions.

Stand-in calibration (only until `defectkit quantize --save-calibration` writes CAL.npy):
`--calibration-from-embeddings E.h5 [--max-images 256]` first writes CAL.npy from the images
of E.h5's *train* split (the paths `defectkit embed` stored: never val, never test), spread
evenly over them, preprocessed in Python with the model's recorded spec (PIL bilinear resize,
scale, mean/std). PIL's resize is close to, not bit-identical with, defectkit's.
"""

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
import onnx
import onnxruntime
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process


class NpyReader(CalibrationDataReader):
    """Feeds `cal` ([N, C, H, W] float32) in batches to the input `name`."""

    def __init__(self, name, cal, batch):
        self.name = name
        self.cal = cal
        self.batch = max(1, batch)
        self.pos = 0

    def get_next(self):
        if self.pos >= len(self.cal):
            return None
        chunk = self.cal[self.pos : self.pos + self.batch]
        self.pos += self.batch
        return {self.name: np.ascontiguousarray(chunk, dtype=np.float32)}

    def rewind(self):
        self.pos = 0


def make_calibration(model_path, h5_path, out, max_images):
    """Writes `out` from the train split of `h5_path` (see the module docs)."""
    import h5py
    from PIL import Image

    model = onnx.load(model_path, load_external_data=False)
    dk = json.loads({p.key: p.value for p in model.metadata_props}["defectkit"])
    spec = dk["preprocess"]
    with h5py.File(h5_path, "r") as f:
        paths = [p.decode() if isinstance(p, bytes) else str(p) for p in f["train"]["path"][:]]
    if not paths:
        sys.exit(f"{h5_path}: empty train split")
    if len(paths) > max_images:
        paths = [paths[i * len(paths) // max_images] for i in range(max_images)]
    mean = np.array(spec["mean"], dtype=np.float32)[:, None, None]
    std = np.array(spec["std"], dtype=np.float32)[:, None, None]
    size = int(spec["resize"])
    crop = spec.get("center_crop")
    batch = []
    for p in paths:
        img = Image.open(p).convert("RGB").resize((size, size), Image.BILINEAR)
        if crop:
            o = (size - crop) // 2
            img = img.crop((o, o, o + crop, o + crop))
        x = np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / float(spec["scale"])
        batch.append((x - mean) / std)
    np.save(out, np.stack(batch).astype(np.float32))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="the FP32 model.onnx")
    ap.add_argument("--calibration", required=True, help="float32 [N,C,H,W] .npy")
    ap.add_argument("--out", required=True, help="the int8 model to write")
    ap.add_argument("--batch", type=int, default=16, help="calibration batch size")
    ap.add_argument(
        "--calibration-from-embeddings",
        metavar="E.h5",
        help="stand-in: first write --calibration from E.h5's train-split images",
    )
    ap.add_argument("--max-images", type=int, default=256, help="with the stand-in")
    args = ap.parse_args()

    started = time.time()
    if args.calibration_from_embeddings:
        make_calibration(args.model, args.calibration_from_embeddings, args.calibration,
                         args.max_images)
    cal = np.load(args.calibration)
    if cal.dtype != np.float32 or cal.ndim != 4 or len(cal) == 0:
        sys.exit(
            f"{args.calibration}: expected a non-empty float32 [N,C,H,W] array, got "
            f"{cal.dtype} {cal.shape}"
        )
    if not np.isfinite(cal).all():
        sys.exit(f"{args.calibration}: non-finite values")
    fp32 = onnx.load(args.model)
    meta = {p.key: p.value for p in fp32.metadata_props}
    if "defectkit" not in meta:
        sys.exit(f"{args.model}: no `defectkit` metadata (not a defectkit export)")
    dk = json.loads(meta["defectkit"])
    if dk.get("precision") != "fp32":
        sys.exit(f"{args.model}: precision is {dk.get('precision')!r}, expected fp32")
    input_name = fp32.graph.input[0].name
    shape = dk.get("input_shape")
    if shape is not None and list(cal.shape[1:]) != list(shape):
        sys.exit(f"{args.calibration}: shape {cal.shape} but the model takes [N, {shape}]")

    out_dir = os.path.dirname(os.path.abspath(args.out))
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        pre = os.path.join(tmp, "pre.onnx")
        q = os.path.join(tmp, "q.onnx")
        quant_pre_process(args.model, pre, skip_symbolic_shape=True)
        quantize_static(
            pre,
            q,
            NpyReader(input_name, cal, args.batch),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"QDQDisableWeightAdjustForInt32Bias": True},
        )
        model = onnx.load(q)
        dk["precision"] = "int8"
        del model.metadata_props[:]
        for key, value in meta.items():
            p = model.metadata_props.add()
            p.key = key
            p.value = json.dumps(dk, indent=2) if key == "defectkit" else value
        p = model.metadata_props.add()
        p.key = "defectkit.peer"
        p.value = json.dumps(
            {
                "tool": "onnxruntime.quantization.quantize_static",
                "onnxruntime": onnxruntime.__version__,
                "format": "QDQ",
                "activations": "QUInt8",
                "weights": "QInt8 per channel",
                "method": "MinMax",
                "calibration_images": int(len(cal)),
            }
        )
        onnx.checker.check_model(model)
        tmp_out = os.path.join(tmp, "out.onnx")
        onnx.save(model, tmp_out)
        os.replace(tmp_out, args.out)

    ops = {}
    for n in model.graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    print(
        json.dumps(
            {
                "peer": "onnxruntime.quantization",
                "model": args.model,
                "out": args.out,
                "calibration_images": int(len(cal)),
                "fp32_bytes": os.path.getsize(args.model),
                "int8_bytes": os.path.getsize(args.out),
                "ops": dict(sorted(ops.items())),
                "onnxruntime": onnxruntime.__version__,
                "onnx": onnx.__version__,
                "seconds": round(time.time() - started, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
