"""A synthetic model past protobuf's 2 GiB limit, for the external-data test and bench: four wide MatMul/Gemm
layers (x[1, W] -> W x W -> W x W -> W x W/2 -> Gemm W/2 x 1000 + bias, ReLU between), its weights written as ONNX
external data in one file beside the model (each tensor page-aligned), plus an input and numpy's output for it.

    python scripts/wide_model.py DIR [WIDTH]     # WIDTH 16384 (default): 2.72 GB of float32 weights

Nothing is held twice: each weight is drawn, written and kept only for the reference product."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

DATA = "model.onnx.data"


def _external(name: str, array: np.ndarray, f, location: str) -> onnx.TensorProto:
    offset = f.tell()
    pad = (-offset) % 4096
    f.write(b"\0" * pad)
    offset += pad
    array.tofile(f)
    t = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=list(array.shape),
                    data_location=TensorProto.EXTERNAL)
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(array.nbytes))):
        entry = t.external_data.add()
        entry.key, entry.value = key, value
    return t


def build(directory: str | Path, width: int = 16384, classes: int = 1000, seed: int = 0) -> int:
    """Writes model.onnx, model.onnx.data, x.npy and ref.npy into directory; returns the weights' bytes."""
    d = Path(directory)
    rng = np.random.default_rng(seed)
    shapes = (("W1", (width, width)), ("W2", (width, width)), ("W3", (width, width // 2)), ("W4", (width // 2, classes)))
    x = rng.standard_normal((1, width), dtype=np.float32)
    act, inits, total = x, [], 0
    with open(d / DATA, "wb") as f:
        for i, (name, shape) in enumerate(shapes):
            w = rng.standard_normal(shape, dtype=np.float32)
            w *= np.float32(1.0 / np.sqrt(shape[0]))
            inits.append(_external(name, w, f, DATA))
            total += w.nbytes
            act = act @ w
            if i + 1 < len(shapes):
                act = np.maximum(act, 0)
            del w
        bias = rng.standard_normal(classes, dtype=np.float32)
        inits.append(_external("b", bias, f, DATA))
        total += bias.nbytes
    nodes = [helper.make_node("MatMul", ["x", "W1"], ["h1"]), helper.make_node("Relu", ["h1"], ["r1"]),
             helper.make_node("MatMul", ["r1", "W2"], ["h2"]), helper.make_node("Relu", ["h2"], ["r2"]),
             helper.make_node("MatMul", ["r2", "W3"], ["h3"]), helper.make_node("Relu", ["h3"], ["r3"]),
             helper.make_node("Gemm", ["r3", "W4", "b"], ["y"])]
    graph = helper.make_graph(nodes, "wide", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, width])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, classes])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    (d / "model.onnx").write_bytes(model.SerializeToString())
    np.save(d / "x.npy", x)
    np.save(d / "ref.npy", act + bias)
    return total


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    print(build(sys.argv[1], int(sys.argv[2]) if len(sys.argv) == 3 else 16384))
