"""veil.Engine (python/veil/engine.py): loading from ONNX bytes, a path or an opened SealedModel, running numpy
float32 inputs, the refusals at the boundary (dtype, shape, NaN, closed engine), and the load-time folding of
shape arithmetic and of zero Pads into convolutions, checked against onnxruntime on small graphs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import veil  # noqa: E402

pytestmark = pytest.mark.usefixtures("libveil")


def _model(nodes: list, inputs: list, outputs: list, inits: list | None = None, opset: int = 17) -> bytes:
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=inits or [])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]).SerializeToString()


def _conv_model(pad_op: bool, pads: list[int], value: float = 0.0) -> bytes:
    """x -> [Pad] -> Conv(3x3, stride 2) -> Relu -> Shape/Gather/Unsqueeze/Concat/Reshape -> y (batch, -1)."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b")
    consts = [
        helper.make_node("Constant", [], ["pads"], value=numpy_helper.from_array(np.array(pads, np.int64))),
        helper.make_node("Constant", [], ["pv"], value=numpy_helper.from_array(np.array(value, np.float32))),
        helper.make_node("Constant", [], ["zero"], value=numpy_helper.from_array(np.array(0, np.int64))),
        helper.make_node("Constant", [], ["ax"], value=numpy_helper.from_array(np.array([0], np.int64))),
        helper.make_node("Constant", [], ["minus1"], value=numpy_helper.from_array(np.array([-1], np.int64))),
    ]
    conv_in = "x"
    nodes = list(consts)
    if pad_op:
        nodes.append(helper.make_node("Pad", ["x", "pads", "pv"], ["xp"], mode="constant"))
        conv_in = "xp"
    nodes += [
        helper.make_node("Conv", [conv_in, "w", "b"], ["c"], strides=[2, 2]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "ax"], ["n1"]),
        helper.make_node("Concat", ["n1", "minus1"], ["shape"], axis=0),
        helper.make_node("Reshape", ["r", "shape"], ["y"]),
    ]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 9, 9])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w, b])


def _reference(model: bytes, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(model).run(None, {"x": x})[0]


@pytest.mark.parametrize("pads", [[0, 0, 0, 0, 0, 0, 1, 1], [0, 0, 1, 0, 0, 0, 2, 1], [0, 0, 0, 0, 0, 0, 0, 0]])
def test_pad_folded_into_conv_and_shape_arithmetic(pads: list[int]) -> None:
    model = _conv_model(True, pads)
    x = np.random.default_rng(1).standard_normal((2, 3, 9, 9)).astype(np.float32)
    with veil.Engine.from_onnx(model, threads=1, batch=2) as engine:
        assert engine.inputs == (veil.EngineIO("x", (2, 3, 9, 9)),)
        want = _reference(model, x)
        assert engine.outputs[0].shape == want.shape
        (got,) = engine.run(x)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_tensorflow_same_pads_as_exported() -> None:
    # The fuzz seed computes pads the way torch exports ZeroPad2d: ConstantOfShape, Concat, Reshape, Slice with a
    # negative step, Transpose, Reshape, Cast; then Pad -> grouped Conv, and a flatten via Shape/Gather/Unsqueeze.
    model = (Path(__file__).resolve().parents[1] / "fuzz" / "corpus" / "engine" / "samepad.onnx").read_bytes()
    x = np.random.default_rng(4).standard_normal((3, 2, 5, 5)).astype(np.float32)
    with veil.Engine.from_onnx(model, batch=3) as engine:
        (got,) = engine.run(x)
    np.testing.assert_allclose(got, _reference(model, x), rtol=1e-5, atol=1e-5)


def test_unfoldable_pads_run_on_their_own() -> None:
    # a Pad of 1.0 before a Conv is not the Conv's zero padding: it runs on the engine's kernel
    valued_conv = _conv_model(True, [0, 0, 1, 1, 0, 0, 1, 1], value=1.0)
    xc = np.random.default_rng(5).standard_normal((1, 3, 9, 9)).astype(np.float32)
    with veil.Engine.from_onnx(valued_conv) as engine:
        np.testing.assert_allclose(engine.run(xc)[0], _reference(valued_conv, xc), rtol=1e-5, atol=1e-5)
    # a zero Pad that no Conv reads runs on its own (the engine's kernel), and so does one of another value
    pads = helper.make_node("Constant", [], ["p"], value=numpy_helper.from_array(np.array([1, 1, 1, 1], np.int64)))
    alone = _model([pads, helper.make_node("Pad", ["x", "p"], ["y"])],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 5])])
    x = np.arange(6, dtype=np.float32).reshape(2, 3) + 1
    with veil.Engine.from_onnx(alone) as engine:
        np.testing.assert_array_equal(engine.run(x)[0], np.pad(x, 1))
    one = helper.make_node("Constant", [], ["v"], value=numpy_helper.from_array(np.array(1.0, np.float32)))
    valued = _model([pads, one, helper.make_node("Pad", ["x", "p", "v"], ["y"])],
                    [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                    [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 5])])
    with veil.Engine.from_onnx(valued) as engine:
        np.testing.assert_array_equal(engine.run(x)[0], np.pad(x, 1, constant_values=1.0))
    reflect = _model([pads, helper.make_node("Pad", ["x", "p"], ["y"], mode="reflect")],
                     [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                     [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 5])])
    with veil.Engine.from_onnx(reflect) as engine:  # reflect (and edge, wrap) run on the same kernel
        np.testing.assert_array_equal(engine.run(x)[0], np.pad(x, 1, mode="reflect"))


def test_load_time_only_ops_on_computed_tensors_are_refused() -> None:
    model = _model([helper.make_node("Range", ["x", "x", "x"], ["y"])],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, [])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])])
    with pytest.raises(veil.UnsupportedError, match="only on constants"):
        veil.Engine.from_onnx(model)
    # Transpose, once load-time only, now runs on computed tensors (a oneDNN reorder)
    model = _model([helper.make_node("Transpose", ["x"], ["y"], perm=[1, 0])],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 2])])
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    with veil.Engine.from_onnx(model) as engine:
        np.testing.assert_array_equal(engine.run(x)[0], x.T)


def test_run_positional_feeds_and_refusals(tmp_path: Path) -> None:
    model = _conv_model(False, [0] * 8)
    path = tmp_path / "m.onnx"
    path.write_bytes(model)
    engine = veil.Engine.from_onnx(path, threads=2)  # from a path; batch defaults to 1
    x = np.random.default_rng(2).standard_normal((1, 3, 9, 9)).astype(np.float32)
    (a,) = engine.run(x)
    (b,) = engine.run(feeds={"x": x})
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a, _reference(model, x), rtol=1e-5, atol=1e-5)
    with pytest.raises(veil.ArgumentError, match="float32"):
        engine.run(x.astype(np.float64))
    with pytest.raises(veil.ArgumentError, match="shape"):
        engine.run(np.zeros((2, 3, 9, 9), np.float32))
    with pytest.raises(veil.ArgumentError, match="takes 1 inputs"):
        engine.run(x, x)
    with pytest.raises(veil.ArgumentError, match="unknown"):
        engine.run(feeds={"x": x, "z": x})
    bad = x.copy()
    bad[0, 1, 2, 3] = np.nan
    with pytest.raises(veil.ArgumentError, match="NaN"):
        engine.run(bad)
    np.testing.assert_array_equal(engine.run(x[:, :, :, :])[0], a)  # still usable after a refusal
    engine.close()
    engine.close()
    assert engine.closed
    with pytest.raises(ValueError, match="closed"):
        engine.run(x)


def test_inputs_read_in_place_are_left_untouched() -> None:
    # An input the graph also returns (Identity) is copied; one only read is bound in place: both are left as is.
    ident = _model([helper.make_node("Identity", ["x"], ["y"]), helper.make_node("Relu", ["x"], ["z"])],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3]),
                    helper.make_tensor_value_info("z", TensorProto.FLOAT, [2, 3])])
    relu = _model([helper.make_node("Relu", ["x"], ["y"])],
                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])])
    x = np.array([[-1, 2, -3], [4, -5, 6]], np.float32)
    keep = x.copy()
    with veil.Engine.from_onnx(ident) as a, veil.Engine.from_onnx(relu) as b:
        for _ in range(2):
            y, z = a.run(x)
            np.testing.assert_array_equal(y, keep)
            np.testing.assert_array_equal(z, np.maximum(keep, 0))
            np.testing.assert_array_equal(b.run(x)[0], np.maximum(keep, 0))
            np.testing.assert_array_equal(b.run(-x)[0], np.maximum(-keep, 0))  # a new buffer each run
    np.testing.assert_array_equal(x, keep)


def test_from_sealed_model_outlives_the_model(tmp_path: Path, key: bytes) -> None:
    model = _conv_model(True, [0, 0, 0, 0, 0, 0, 1, 1])
    sealed = tmp_path / "m.veil"
    veil.seal_onnx(model, sealed, model_id="engine-api", key=key)
    with veil.open_model(sealed, key) as opened:
        engine = veil.Engine.from_model(opened, threads=1, batch=3)
    x = np.random.default_rng(3).standard_normal((3, 3, 9, 9)).astype(np.float32)
    (got,) = engine(x)  # the sealed model is closed: the engine owns its weights
    np.testing.assert_allclose(got, _reference(model, x), rtol=1e-5, atol=1e-5)
    engine.close()


def test_load_refusals() -> None:
    with pytest.raises(veil.OnnxError):
        veil.Engine.from_onnx(b"\x0a\xff\xff")
    with pytest.raises(veil.ArgumentError):
        veil.Engine.from_onnx(_conv_model(False, [0] * 8), threads=0)
    hardmax = _model([helper.make_node("Hardmax", ["x"], ["y"])],
                     [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                     [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    with pytest.raises(veil.UnsupportedError, match="unsupported operator Hardmax"):
        veil.Engine.from_onnx(hardmax)
    with pytest.raises(TypeError):
        veil.Engine.from_model(b"not a model")  # type: ignore[arg-type]


def test_cpu_capabilities_are_detected() -> None:
    """bf16 and int8 availability follow the ISA oneDNN detects: bf16 needs AVX512-BF16 or AMX; int8 kernels take
    every QDQ Conv with VNNI or AMX, and only 7-bit weights on uint8 activations on AVX2 or AVX-512 without VNNI."""
    isa = veil.engine.cpu_isa()
    assert isa and isa != "another ISA"
    assert veil.engine.bf16_available() == (isa in ("avx512_core_bf16", "avx512_core_amx"))
    vnni = isa in ("avx512_core_vnni", "avx512_core_bf16", "avx512_core_amx", "avx2_vnni")
    assert veil.engine.int8_support() == ("all" if vnni else "7-bit" if isa in ("avx2", "avx512_core") else "none")
    assert veil.engine.int8_available() == (veil.engine.int8_support() != "none")


@pytest.mark.skipif(veil.engine.bf16_available(), reason="this CPU runs bf16: test_precision.py covers the mode")
def test_bf16_refused_clearly_without_the_isa(tmp_path: Path) -> None:
    """On a CPU without AVX512-BF16 or AMX (an AVX2-only one, say), precision="bf16" is refused with the reason and
    the ISA found, from Python and from the CLI; fp32 still runs."""
    model = _conv_model(False, [0] * 8)
    isa = veil.engine.cpu_isa()
    with pytest.raises(veil.UnsupportedError, match=f"bf16 needs a CPU with AVX512-BF16 or AMX; this one runs {isa}"):
        veil.Engine.from_onnx(model, precision="bf16")
    with veil.Engine.from_onnx(model) as e:
        assert e.run(np.ones((1, 3, 9, 9), np.float32))[0].size
    import os
    import subprocess
    (tmp_path / "m.onnx").write_bytes(model)
    np.save(tmp_path / "x.npy", np.ones((1, 3, 9, 9), np.float32))
    cli = os.environ.get("VEIL_BIN", str(Path(__file__).resolve().parents[2] / "build" / "release" / "veil"))
    r = subprocess.run([cli, "run", str(tmp_path / "m.onnx"), "-i", str(tmp_path / "x.npy"), "-o",
                        str(tmp_path / "y.npy"), "--precision", "bf16"], capture_output=True, text=True)
    assert r.returncode != 0 and "AVX512-BF16 or AMX" in r.stderr and not (tmp_path / "y.npy").exists(), r.stderr


@pytest.mark.parametrize("act", ["Relu", "Gelu", "GeluTanh", None])
def test_linear_layers_and_their_activations(act: str | None) -> None:
    """A transformer's Linear layer (MatMul of a [batch, seq, K] input by a constant [K, N], + bias, then an
    activation) and a classifier's Gemm (+ Relu) match onnxruntime: the bias and the activation are fused into the
    product (a 1x1 convolution on AVX2, a matmul on AVX-512), including a layer whose output is a graph output."""
    rng = np.random.default_rng(11)
    k, n = 48, 80
    w = numpy_helper.from_array(rng.standard_normal((k, n)).astype(np.float32) / 7, "w")
    b = numpy_helper.from_array(rng.standard_normal(n).astype(np.float32), "b")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["mm"]), helper.make_node("Add", ["mm", "b"], ["h"])]
    last = "h"
    if act is not None:
        attrs = {"approximate": "tanh"} if act == "GeluTanh" else {}
        nodes.append(helper.make_node("Gelu" if act.startswith("Gelu") else act, ["h"], ["a"], **attrs))
        last = "a"
    nodes += [helper.make_node("Flatten", [last], ["f"], axis=1),
              helper.make_node("Gemm", ["f", "w2", "c2"], ["g"], transB=0),
              helper.make_node("Relu", ["g"], ["y"])]
    x = rng.standard_normal((2, 7, k)).astype(np.float32)
    w2 = numpy_helper.from_array(rng.standard_normal((7 * n, 30)).astype(np.float32) / 9, "w2")
    c2 = numpy_helper.from_array(rng.standard_normal(30).astype(np.float32), "c2")
    model = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 7, k])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 30]),
                    helper.make_tensor_value_info(last, TensorProto.FLOAT, [2, 7, n])], [w, b, w2, c2], opset=20)
    ref = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x})
    with veil.Engine.from_onnx(model, threads=2) as e:
        got = e.run(x)
    for r, g in zip(ref, got):
        np.testing.assert_allclose(g.reshape(r.shape), r, rtol=1e-4, atol=1e-4)



@pytest.mark.parametrize("also_read", [False, True])
def test_activation_after_a_reshaped_product(also_read: bool) -> None:
    """GPT-2's Conv1D: a Gemm on the flattened [batch * seq, K] input, the product reshaped back to [batch, seq, N],
    then gelu (the tanh form, as exporters write it: Pow, Mul, Add, Tanh...). The activation runs as the Gemm's
    post-op before the reshape; when the reshaped product has another reader too, it must not (that reader needs the
    product without the activation). Both against onnxruntime."""
    rng = np.random.default_rng(12)
    k, n = 40, 64
    w = numpy_helper.from_array(rng.standard_normal((k, n)).astype(np.float32) / 6, "w")
    b = numpy_helper.from_array(rng.standard_normal(n).astype(np.float32), "b")
    consts = {"flat": np.array([-1, k], np.int64), "back": np.array([2, 7, n], np.int64),
              "c3": np.array(3.0, np.float32), "c044": np.array(0.044715, np.float32),
              "csq": np.array(np.sqrt(2 / np.pi), np.float32), "one": np.array(1.0, np.float32),
              "half": np.array(0.5, np.float32)}
    inits = [w, b] + [numpy_helper.from_array(v, name) for name, v in consts.items()]
    nodes = [helper.make_node("Reshape", ["x", "flat"], ["x2"]), helper.make_node("Gemm", ["x2", "w", "b"], ["g"]),
             helper.make_node("Reshape", ["g", "back"], ["h"]),
             helper.make_node("Pow", ["h", "c3"], ["p"]), helper.make_node("Mul", ["p", "c044"], ["p2"]),
             helper.make_node("Add", ["h", "p2"], ["s"]), helper.make_node("Mul", ["s", "csq"], ["s2"]),
             helper.make_node("Tanh", ["s2"], ["t"]), helper.make_node("Add", ["t", "one"], ["t1"]),
             helper.make_node("Mul", ["h", "half"], ["hh"]), helper.make_node("Mul", ["hh", "t1"], ["y"])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 7, n])]
    if also_read:
        nodes.append(helper.make_node("Add", ["h", "h"], ["z"]))
        outputs.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, [2, 7, n]))
    x = rng.standard_normal((2, 7, k)).astype(np.float32)
    model = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 7, k])], outputs, inits)
    ref = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x})
    with veil.Engine.from_onnx(model, threads=2) as e:
        got = e.run(x)
    assert len(got) == len(ref)
    for r, g in zip(ref, got):
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4)

_LOAD_PEAK = """
import json, sys
import numpy as np
import veil

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise SystemExit("no " + field)

path, key, how, out = sys.argv[1], bytes.fromhex(sys.argv[2]), sys.argv[3], sys.argv[4]
x = np.random.default_rng(1).standard_normal((1, 512, 4, 4), dtype=np.float32)
base = status("VmHWM")
if how == "from_sealed":
    engine = veil.Engine.from_sealed(path, key=key, threads=2)
else:
    model = veil.open_model(path, key)
    engine = veil.Engine.from_model(model, threads=2)
np.save(out, engine.run(x)[0])
print(json.dumps({"growth": status("VmHWM") - base}))
"""


def test_from_sealed_holds_the_weights_once(tmp_path: Path, key: bytes) -> None:
    """Engine.from_sealed consumes the model it opened (veil_engine_load_model_releasing): each convolution's weights
    leave the model's plaintext once the engine has packed its own copy, so the load's peak holds the weights about
    once. Engine.from_model leaves the model whole (the caller may use it again), so its peak holds them twice. Both
    compute the same; each is measured in a fresh process (peak RSS growth over the process after its imports)."""
    import json
    import subprocess
    import sys

    rng = np.random.default_rng(0)
    layers, c = 12, 512
    inits, nodes, x = [], [], "x"
    for i in range(layers):
        w = (rng.standard_normal((c, c, 3, 3), dtype=np.float32) / np.float32(48.0))
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        nodes += [helper.make_node("Conv", [x, f"w{i}"], [f"c{i}"], pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"])]
        x = f"r{i}"
    nodes.append(helper.make_node("Identity", [x], ["y"]))
    weights = layers * c * c * 9 * 4
    onnx_bytes = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, 4, 4])],
                        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, c, 4, 4])], inits)
    sealed = tmp_path / "m.veil"
    veil.seal_onnx(onnx_bytes, sealed, model_id="convs", key=key)
    del onnx_bytes, inits
    import os

    env = {**os.environ, "PYTHONPATH": str(Path(veil.__file__).resolve().parent.parent)}
    growth, outputs = {}, {}
    for how in ("from_sealed", "from_model"):
        out = tmp_path / f"{how}.npy"
        done = subprocess.run([sys.executable, "-c", _LOAD_PEAK, str(sealed), key.hex(), how, str(out)],
                              capture_output=True, text=True, check=False, env=env)
        assert done.returncode == 0, done.stderr
        growth[how] = json.loads(done.stdout)["growth"]
        outputs[how] = np.load(out)
    print({k: f"{v / weights:.2f}x of {weights} weight bytes" for k, v in growth.items()})
    np.testing.assert_array_equal(outputs["from_sealed"], outputs["from_model"])
    assert growth["from_model"] - growth["from_sealed"] >= 0.75 * weights, growth
    assert growth["from_sealed"] <= 1.5 * weights, growth  # 1.27x here: the library and oneDNN load too
