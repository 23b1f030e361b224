"""Peer checks for the anomaly-scoring head, run by
crates/defectkit-core/tests/onnx_scoring.rs in the project venv.

  scoring_peer.py CASES.json
      CASES.json: [{"name": ..., "model": PATH, "input": [flat f32], "shape": [B, C, H, W]}].
      Per case: onnx.checker (full_check) and onnxruntime-Python on the batch and on its
      first image alone; prints one JSON list with, per case, the output names, dtypes and
      shapes, the custom metadata, and the values of every output (flat).
"""
import json
import sys

import numpy as np


def run_case(case):
    import onnx
    import onnxruntime as ort

    path = case["model"]
    onnx.checker.check_model(path, full_check=True)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    x = np.asarray(case["input"], dtype=np.float32).reshape(case["shape"])
    inp = sess.get_inputs()[0].name
    names = [o.name for o in sess.get_outputs()]
    outs = dict(zip(names, sess.run(None, {inp: x})))
    single = dict(zip(names, sess.run(None, {inp: x[:1]})))
    return {
        "name": case["name"],
        "outputs": names,
        "dtypes": {n: str(o.dtype) for n, o in outs.items()},
        "shapes": {n: list(o.shape) for n, o in outs.items()},
        "metadata": dict(sess.get_modelmeta().custom_metadata_map),
        "values": {n: np.asarray(o).reshape(-1).tolist() for n, o in outs.items()},
        "single": {n: np.asarray(o).reshape(-1).tolist() for n, o in single.items()},
    }


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        cases = json.load(f)
    print(json.dumps([run_case(c) for c in cases]))
