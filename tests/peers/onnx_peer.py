"""Peer checks for the deployment side, run by tests/deploy.rs in the project venv.

  onnx_peer.py model MODEL.onnx INPUT.f32 B,C,H,W OUT_PREFIX
      onnx.checker (full_check) + onnxruntime-Python on the raw little-endian f32 input;
      writes OUT_PREFIX.<output>.f32 and prints a JSON summary.
  onnx_peer.py h5 FILE.h5
      h5py's view of an embedding store, as JSON.
"""
import json
import sys

import numpy as np


def model(path, input_path, shape, out_prefix):
    import onnx
    import onnxruntime as ort

    m = onnx.load(path)
    onnx.checker.check_model(m, full_check=True)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    x = np.fromfile(input_path, dtype="<f4").reshape([int(v) for v in shape.split(",")])
    inp = sess.get_inputs()[0]
    outs = sess.run(None, {inp.name: x})
    names = [o.name for o in sess.get_outputs()]
    for n, o in zip(names, outs):
        np.ascontiguousarray(o, dtype="<f4").tofile(f"{out_prefix}.{n}.f32")
    print(json.dumps({
        "checker": "ok",
        "inputs": [i.name for i in sess.get_inputs()],
        "input_shape": [d if isinstance(d, int) else str(d) for d in inp.shape],
        "outputs": names,
        "output_shapes": {n: list(o.shape) for n, o in zip(names, outs)},
        "metadata": dict(sess.get_modelmeta().custom_metadata_map),
        "opset": max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")),
        "producer": m.producer_name,
    }))


def h5(path):
    import h5py

    def value(v):
        if isinstance(v, bytes):
            return v.decode()
        if hasattr(v, "item"):
            return v.item()
        return v

    with h5py.File(path, "r") as f:
        out = {"attrs": {k: value(v) for k, v in f.attrs.items()}, "splits": {}}
        for name, group in f.items():
            split = {}
            for key, ds in group.items():
                d = {"shape": list(ds.shape), "dtype": str(ds.dtype),
                     "compression": ds.compression, "chunks": ds.chunks}
                if ds.dtype.kind == "O":
                    d["values"] = list(ds.asstr()[...])
                else:
                    arr = np.asarray(ds[...], dtype=np.float64)
                    d["sum"] = float(arr.sum())
                    d["first"] = arr.reshape(arr.shape[0], -1)[0].tolist() if arr.shape[0] else []
                split[key] = d
            out["splits"][name] = split
    print(json.dumps(out))


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "model":
        model(*sys.argv[2:6])
    elif cmd == "h5":
        h5(sys.argv[2])
    else:
        sys.exit(f"unknown command {cmd}")
