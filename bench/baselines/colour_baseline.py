#!/usr/bin/env python3
"""A trivial baseline for the patch detectors: a model whose `features` output is the 8×8
local mean colour (stride 8, 3 channels: what PaDiM/PatchCore see without any learned
network), with B's metadata otherwise (classes, preprocessing, split), so
`defectkit embed --maps` and `defectkit detect` treat it like an export. If a detector on
learned features does not beat this, the network adds nothing at the patch level.

    .venv/bin/python bench/baselines/colour_baseline.py   # -> exports/main/baseline/model.onnx
    defectkit embed --model exports/main/baseline/model.onnx \
        --out exports/main/baseline/embeddings.h5 --maps
    defectkit detect --compare exports/main/baseline/embeddings.h5 \
        --methods mahalanobis,padim,patchcore --out exports/main/baseline/comparison

Needs exports/main/b/model.json (scripts/run.sh) and the peer venv's onnx + numpy.
"""
import json
import os
import numpy as np
import onnx
from onnx import helper, TensorProto, numpy_helper
meta = json.load(open("exports/main/b/model.json"))
n = len(meta["classes"])
nodes = [
    helper.make_node("AveragePool", ["input"], ["features"], kernel_shape=[8, 8], strides=[8, 8]),
    helper.make_node("ReduceMean", ["input", "axes"], ["embedding"], keepdims=0),
    helper.make_node("MatMul", ["embedding", "W"], ["logits"]),
]
init = [numpy_helper.from_array(np.array([2, 3], dtype=np.int64), "axes"),
        numpy_helper.from_array(np.zeros((3, n), dtype=np.float32), "W")]
g = helper.make_graph(nodes, "colour_baseline",
    [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 128, 128])],
    [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", n]),
     helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", 3]),
     helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 3, 16, 16])], init)
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
m.ir_version = 9
meta.update(embedding_dim=3, run_id="colour-baseline", checkpoint="none",
            features={"channels": 3, "height": 16, "width": 16, "stride": 8,
                      "sources": [{"layer": "input", "channels": 3, "resample": "avg_pool 8x8"}]})
m.metadata_props.add(key="defectkit", value=json.dumps(meta))
onnx.checker.check_model(m)
os.makedirs("exports/main/baseline", exist_ok=True)
onnx.save(m, "exports/main/baseline/model.onnx")
print("wrote exports/main/baseline/model.onnx")
