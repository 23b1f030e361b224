"""Peer checks for defectkit's int8 quantizer (crates/defectkit-deploy/tests/quantize.rs).

Subcommands, each printing one JSON object on stdout:
  check MODEL.onnx INPUT.npy OURS_DIR
      onnx.checker (full_check) on the quantized model, then onnxruntime-Python runs INPUT
      and its outputs are compared with the ones defectkit computed (OURS_DIR/<output>.npy).
  arith MODEL.onnx RANGES.json FOLDED.onnx
      every scale, zero point and pre-quantized weight/bias of the QDQ model recomputed with
      onnxruntime.quantization's own functions (compute_scale_zp, quantize_nparray, the
      int32 bias formula) from the folded FP32 weights and the given activation ranges
      (RANGES.json: {"ranges": {value: [lo, hi]}, "sources": {value: range source},
      "symmetric": bool, "reduce_range": bool}).
  hist BATCHES.npy BINS PERCENTILE
      ONNX Runtime's HistogramCollector (collect_value, merge_histogram) over the batches of
      BATCHES.npy ([n_batches, n]), then its entropy threshold (128 quantized bins) and the
      |x| percentile, for the same histogram.
"""

import json
import sys

import numpy as np
import onnx
from onnx import numpy_helper


def check(model_path, input_path, ours_dir):
    model = onnx.load(model_path)
    onnx.checker.check_model(model, full_check=True)
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model_path, opts, providers=["CPUExecutionProvider"])
    x = np.load(input_path)
    outs = sess.run(None, {sess.get_inputs()[0].name: x})
    result = {"checker": "ok", "outputs": {}}
    for meta, value in zip(sess.get_outputs(), outs):
        ours = np.load(f"{ours_dir}/{meta.name}.npy")
        diff = np.abs(ours.astype(np.float64) - value.astype(np.float64))
        result["outputs"][meta.name] = {
            "max_abs_diff": float(diff.max()),
            "max_abs": float(np.abs(value).max()),
            "shape": list(value.shape),
        }
    ops = {}
    for n in model.graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    result["ops"] = ops
    return result


def arith(model_path, ranges_path, fp32_path):
    from onnxruntime.quantization.quant_utils import compute_scale_zp, quantize_nparray

    with open(ranges_path) as f:
        spec = json.load(f)
    ranges = spec["ranges"]
    symmetric = spec["symmetric"]
    # ONNX Runtime's reduce_range for int8 weights: [-64, 64].
    w_lo, w_hi = (-64, 64) if spec.get("reduce_range") else (-127, 127)
    model = onnx.load(model_path)
    fp32 = onnx.load(fp32_path)
    init = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    fp32_init = {t.name: numpy_helper.to_array(t) for t in fp32.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    mismatches = []
    checked = {"activations": 0, "weights": 0, "biases": 0}

    def expect(what, ours, ref):
        if ours.dtype != ref.dtype or ours.shape != ref.shape or not np.array_equal(ours, ref):
            mismatches.append(
                {
                    "what": what,
                    "ours": ours.tolist() if ours.size < 16 else str(ours.dtype),
                    "ref": ref.tolist() if ref.size < 16 else str(ref.dtype),
                    "max_diff": float(np.max(np.abs(ours.astype(np.float64) - ref.astype(np.float64))))
                    if ours.shape == ref.shape
                    else None,
                }
            )

    # Activations: every QuantizeLinear's parameters from the range of the value it reads.
    for n in model.graph.node:
        if n.op_type != "QuantizeLinear":
            continue
        read = n.input[0][: -len("_float")] if n.input[0].endswith("_float") else n.input[0]
        name = spec["sources"].get(read, read)
        lo, hi = ranges[name]
        if symmetric:
            qmin, qmax = np.array(-127, dtype=np.int8), np.array(127, dtype=np.int8)
        else:
            qmin, qmax = np.array(0, dtype=np.uint8), np.array(255, dtype=np.uint8)
        zp, scale = compute_scale_zp(np.float32(lo), np.float32(hi), qmin, qmax, symmetric=symmetric)
        expect(f"{n.input[0]} scale", init[n.input[1]], np.asarray(scale, dtype=np.float32))
        expect(f"{n.input[0]} zero point", init[n.input[2]], np.asarray(zp))
        checked["activations"] += 1

    # Weights and biases: the DequantizeLinear nodes that read int8/int32 initializers; the
    # float originals are the folded FP32 model's initializers of the same name without the
    # `_quantized` suffix.
    consumers = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    for n in model.graph.node:
        if n.op_type != "DequantizeLinear" or n.input[0] not in init:
            continue
        q = init[n.input[0]]
        original = n.input[0][: -len("_quantized")]
        axis = next((a.i for a in n.attribute if a.name == "axis"), 1)
        if q.dtype == np.int8:
            w = fp32_init[original].astype(np.float32)
            channels = w.shape[axis]
            wm = np.moveaxis(w, axis, 0).reshape(channels, -1)
            scales, quantized = [], []
            for c in range(channels):
                rmin, rmax = np.float32(wm[c].min()), np.float32(wm[c].max())
                zp, s = compute_scale_zp(
                    rmin, rmax, np.array(w_lo, dtype=np.int8), np.array(w_hi, dtype=np.int8), symmetric=True
                )
                scales.append(np.float32(s))
                quantized.append(quantize_nparray(onnx.TensorProto.INT8, wm[c], np.float32(s), zp, low=w_lo, high=w_hi))
            moved = np.moveaxis(w, axis, 0).shape
            ref_q = np.moveaxis(np.stack(quantized).reshape(moved), 0, axis)
            expect(f"{original} values", q, ref_q.astype(np.int8))
            expect(f"{original} scales", init[n.input[1]], np.asarray(scales, dtype=np.float32))
            checked["weights"] += 1
        elif q.dtype == np.int32:
            b = fp32_init[original].astype(np.float32)
            op = consumers[n.output[0]][0]
            w_dq = producers[op.input[1]]
            x_dq = producers[op.input[0]]
            w_scales = init[w_dq.input[1]]
            x_scale = init[x_dq.input[1]]
            bias_scale = x_scale * w_scales
            ref = np.asarray(b, dtype=np.float64) / np.asarray(bias_scale, dtype=np.float64)
            ref = np.clip(ref.round(), np.iinfo(np.int32).min, np.iinfo(np.int32).max).astype(np.int32)
            expect(f"{original} values", q, ref)
            expect(f"{original} scales", init[n.input[1]], bias_scale.astype(np.float32))
            checked["biases"] += 1
    return {"mismatches": mismatches, "checked": checked}


def hist(batches_path, bins, percentile):
    from onnxruntime.quantization.calibrate import HistogramCollector

    batches = np.load(batches_path)
    collector = HistogramCollector("entropy", False, int(bins), 128, float(percentile), "same")
    for b in batches:
        collector.collect_value({"t": b})
    h = collector.histogram_dict["t"]
    counts, edges, lo, hi, threshold = h
    entropy_low, entropy_high = collector.get_entropy_threshold(h, 128)
    # |x| percentile on the same histogram, folded around 0 (defectkit's definition).
    return {
        "counts": [int(c) for c in counts],
        "threshold": float(threshold),
        "min": float(lo),
        "max": float(hi),
        "entropy": [float(entropy_low), float(entropy_high)],
        "abs_percentile": float(np.percentile(np.abs(batches.ravel()), float(percentile))),
        "bin_width": float(edges[1] - edges[0]),
        "folded_percentile": folded_percentile(counts, edges, float(percentile)),
    }


def folded_percentile(counts, edges, percentile):
    """The |x| percentile read from a histogram symmetric around 0 (defectkit's rule: the right
    edge of the first |x| bin whose CDF reaches the percentile)."""
    half = len(counts) // 2
    folded = counts[half:] + counts[:half][::-1]
    cdf = np.cumsum(folded) / folded.sum()
    # The same tolerance as defectkit: a count that reaches the share exactly counts.
    j = int(np.searchsorted(cdf, percentile / 100.0 * (1 - 1e-12)))
    return float(edges[half + j + 1])


def main():
    cmd = sys.argv[1]
    if cmd == "check":
        out = check(*sys.argv[2:5])
    elif cmd == "arith":
        out = arith(*sys.argv[2:5])
    elif cmd == "hist":
        out = hist(*sys.argv[2:5])
    else:
        raise SystemExit(f"unknown subcommand {cmd}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
