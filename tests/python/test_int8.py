"""int8 models in ONNX's QDQ format, as onnxruntime's quantize_static writes them (issue 19), against onnxruntime.

QuantizeLinear / DequantizeLinear of constants (weights per output channel, int32 biases) are folded at load; on a
computed tensor they run as one element-wise pass (a QuantizeLinear and its DequantizeLinear fused); a Conv that
reads quantized integers runs on oneDNN's int8 kernels (docs/internals/engine.md, "int8 models"). What is checked:

    * each operator against onnxruntime: Q then DQ (uint8, int8 and int16 zero points), a DQ'd per-channel Conv,
      a Conv whose output is quantized, a Conv that runs on oneDNN's int8 kernels (u8 or s8 source, s8 weights,
      checked in ONEDNN_VERBOSE) only where they are exact on this CPU; per-axis quantization of a computed tensor and blocked quantization are refused by name;
    * a ResNet-18 with random weights quantized by onnxruntime (8-bit weights, and 7-bit with reduce_range), on 200
      random inputs: Veil and onnxruntime's int8 agree on top-1 for at least 99 % of them, and its convolutions run
      on int8 kernels where this CPU's are exact;
    * the pretrained EfficientNet-Lite0 quantized by onnxruntime (calibrated on 50 of the augmented photos of
      test_precision.py), on all 1,000: Veil agrees with onnxruntime's int8 on top-1 within 2 points of how well
      onnxruntime's int8 kernels agree with onnxruntime running the same QDQ graph literally (the 99 % of the issue
      is not reached: onnxruntime does not reach it with itself on this model);
    * for both, Veil's largest logit difference from onnxruntime's int8 is within onnxruntime's own int8 error
      against the float32 model (as a fraction of the largest logit).
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
torch = pytest.importorskip("torch")
quantization = pytest.importorskip("onnxruntime.quantization")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import veil  # noqa: E402

THREADS = 2


# The reference runs the graph as written (each QuantizeLinear, DequantizeLinear and Conv on its own), which is what
# the ONNX operators define. onnxruntime's optimized graph fuses them into QLinearConv, whose u8 x s8 kernel on a CPU
# without VNNI (AVX2 only) sums pairs with int16 saturation: on such a CPU it was 216 quantization steps off the exact
# result in test_dequantized_conv_and_quantized_output, where Veil and the literal graph agree to float32 rounding.
_LITERAL = ort.SessionOptions()
_LITERAL.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL


def _run(nodes, inits, shape=(1, 4, 5, 5), x=None, opset=17):
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)]).SerializeToString()
    x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32) * 3 if x is None else x
    ref = ort.InferenceSession(m, _LITERAL, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    with veil.Engine.from_onnx(m, threads=1) as e:
        got = e.run(x)[0]
    return ref, got.reshape(ref.shape), m


def _scalars(zp: np.ndarray, scale: float = 0.05) -> list:
    return [numpy_helper.from_array(np.array(scale, np.float32), "s"), numpy_helper.from_array(zp, "z")]


@pytest.mark.parametrize("zp", [np.array(128, np.uint8), np.array(-3, np.int8), np.array(100, np.int16)])
def test_quantize_dequantize_computed(zp: np.ndarray) -> None:
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])]
    x = np.random.default_rng(1).standard_normal((1, 4, 5, 5), dtype=np.float32) * 10  # past the range: saturates
    x[0, 0, 0, :3] = [0.025, 0.075, -0.025]  # halfway cases: round half to even
    opset = 21 if zp.dtype == np.int16 else 17  # onnxruntime takes int16 from opset 21
    ref, got, _ = _run(nodes, _scalars(zp), x=x, opset=opset)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)
    q_only = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"])]
    g = helper.make_graph(q_only, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 5, 5])],
                          [helper.make_tensor_value_info("y", helper.np_dtype_to_tensor_dtype(zp.dtype), None)],
                          _scalars(zp))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)]).SerializeToString()
    ref = ort.InferenceSession(m, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    with veil.Engine.from_onnx(m, threads=1) as e:  # the integers come out as float32, exactly
        np.testing.assert_array_equal(e.run(x)[0].reshape(ref.shape), ref.astype(np.float32))


def _conv_inits() -> list:
    gen = np.random.default_rng(2)
    w = gen.integers(-127, 128, (8, 4, 3, 3)).astype(np.int8)
    ws = gen.uniform(0.01, 0.02, 8).astype(np.float32)
    b = gen.integers(-500, 500, 8).astype(np.int32)
    return [*_scalars(np.array(128, np.uint8)), numpy_helper.from_array(w, "w"), numpy_helper.from_array(ws, "ws"),
            numpy_helper.from_array(np.zeros(8, np.int8), "wz"), numpy_helper.from_array(b, "b"),
            numpy_helper.from_array(ws * np.float32(0.05), "bs")]


def test_dequantized_conv_and_quantized_output() -> None:
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["xd"]),
             helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"], axis=0),
             helper.make_node("DequantizeLinear", ["b", "bs"], ["bd"], axis=0),
             helper.make_node("Conv", ["xd", "wd", "bd"], ["c"], pads=[1, 1, 1, 1])]
    ref, got, _ = _run([*nodes, helper.make_node("Relu", ["c"], ["y"])], _conv_inits())
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    quantized = [*nodes, helper.make_node("QuantizeLinear", ["c", "s", "z"], ["cq"]),
                 helper.make_node("DequantizeLinear", ["cq", "s", "z"], ["y"])]
    ref, got, _ = _run(quantized, _conv_inits())
    # the conv's float32 sums may fall on the other side of a rounding boundary: at most one step, rarely
    steps = np.abs(got - ref) / 0.05
    assert steps.max() <= 1.0 + 1e-4 and (steps > 0.5).mean() < 0.01


# Which int8 kernels each CPU takes (veil.engine.int8_support()), per case: (activation type, weights).
_INT8_CASES = {("uint8", "7-bit"): ("7-bit", "all"), ("uint8", "full"): ("all",), ("int8", "7-bit"): ("all",)}


@pytest.mark.parametrize("act,weights", list(_INT8_CASES))
def test_int8_kernels_only_where_exact(tmp_path, act: str, weights: str) -> None:
    """A Conv reading a QuantizeLinear of zero point 0 runs on oneDNN's int8 kernels (src_u8/s8 and wei_s8 in
    ONEDNN_VERBOSE) exactly where they are exact on this CPU (veil.engine.int8_support()), and in float32 elsewhere;
    either way it matches the graph run literally. The "full" weights are +-127 and the uint8 input reaches 255: on
    an AVX2 CPU oneDNN's int8 kernels sum such pairs with int16 saturation (measured: 39.6 off, 2e5 steps of the
    output's scale), so running them there would fail this test."""
    gen = np.random.default_rng(5)
    lim = 64 if weights == "7-bit" else 127
    w = (gen.integers(-lim, lim + 1, (8, 16, 3, 3)) if weights == "7-bit" else
         np.where(gen.random((8, 16, 3, 3)) < 0.5, 127, -127)).astype(np.int8)
    zp = np.array(0, np.uint8 if act == "uint8" else np.int8)
    inits = [*_scalars(zp, 0.02), numpy_helper.from_array(w, "w"),
             numpy_helper.from_array(gen.uniform(0.01, 0.02, 8).astype(np.float32), "ws"),
             numpy_helper.from_array(np.zeros(8, np.int8), "wz"),
             numpy_helper.from_array(gen.uniform(-1, 1, 8).astype(np.float32), "b")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["xd"]),
             helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"], axis=0),
             helper.make_node("Conv", ["xd", "wd", "b"], ["y"], pads=[1, 1, 1, 1])]
    lo, hi = (0.0, 5.2) if act == "uint8" else (-2.6, 2.6)  # the integers reach their bounds (0.02 a step)
    x = gen.uniform(lo, hi, (1, 16, 6, 6)).astype(np.float32)
    ref, got, model = _run(nodes, inits, shape=x.shape, x=x)
    tol = 1e-5 * float(np.abs(ref).max())
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=tol)
    r = _veil_run(tmp_path, model, x, ONEDNN_VERBOSE="1")
    convs = [line for line in r.stdout.splitlines() if line.startswith("onednn_verbose,exec") and "convolution" in line]
    if veil.engine.int8_support() in _INT8_CASES[(act, weights)]:
        src = "src_u8" if act == "uint8" else "src_s8"
        assert convs and all(src in line and "wei_s8" in line and "sa0.5" not in line for line in convs), convs
    else:
        assert convs and all("src_f32" in line and "wei_f32" in line for line in convs), convs
    np.testing.assert_allclose(np.load(tmp_path / "y.npy").reshape(ref.shape), ref, rtol=1e-5, atol=tol)


def _product(op: str, shape: tuple, w: np.ndarray, per_column: bool, zp: np.ndarray, trans_b: int = 0,
             beta: float = 1.0, c_scalar: bool = False) -> tuple[list, list]:
    """Q/DQ of x, then a MatMul (with a bias Add and a Relu) or a Gemm (beta * C, then a Relu) on DQ'd int8 weights."""
    gen = np.random.default_rng(11)
    n = w.shape[0 if trans_b else 1]
    ws = gen.uniform(0.01, 0.02, n).astype(np.float32) if per_column else np.array(0.015, np.float32)
    inits = [*_scalars(zp, 0.02), numpy_helper.from_array(w, "w"), numpy_helper.from_array(ws, "ws"),
             numpy_helper.from_array(np.zeros(ws.shape, np.int8), "wz"),
             numpy_helper.from_array(gen.uniform(-1, 1, 1 if c_scalar else n).astype(np.float32), "b")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["xd"]),
             helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"], axis=0 if trans_b else 1)]
    if op == "MatMul":
        nodes += [helper.make_node("MatMul", ["xd", "wd"], ["m"]), helper.make_node("Add", ["m", "b"], ["mb"]),
                  helper.make_node("Relu", ["mb"], ["y"])]
    else:
        nodes += [helper.make_node("Gemm", ["xd", "wd", "b"], ["m"], transB=trans_b, beta=beta),
                  helper.make_node("Relu", ["m"], ["y"])]
    return nodes, inits


_PRODUCTS = [("MatMul", (2, 6, 32), {}), ("MatMul", (6, 32), {"per_column": False}),
             ("Gemm", (6, 32), {}), ("Gemm", (6, 32), {"trans_b": 1, "beta": 0.5, "c_scalar": True})]


@pytest.mark.parametrize("op,shape,extra", _PRODUCTS)
@pytest.mark.parametrize("act,weights", list(_INT8_CASES))
def test_int8_products_only_where_exact(tmp_path, op: str, shape: tuple, extra: dict, act: str,
                                        weights: str) -> None:
    """MatMul and Gemm with constant int8 weights (one scale per column, or one) reading a QuantizeLinear run on
    oneDNN's int8 kernels (as a 1x1 convolution: src_u8/s8, wei_s8) where they are exact on this CPU, with the
    source's zero point (37, or -5), the bias (a Gemm's beta * C, scalar or row) and a fused Relu; in float32
    elsewhere; both match the graph run literally."""
    gen = np.random.default_rng(12)
    trans_b, k, n = extra.get("trans_b", 0), shape[-1], 24
    lim = 64 if weights == "7-bit" else 127
    wshape = (n, k) if trans_b else (k, n)
    w = (gen.integers(-lim, lim + 1, wshape) if weights == "7-bit" else
         np.where(gen.random(wshape) < 0.5, 127, -127)).astype(np.int8)
    zp = np.array(37, np.uint8) if act == "uint8" else np.array(-5, np.int8)
    nodes, inits = _product(op, shape, w, extra.get("per_column", True), zp, trans_b, extra.get("beta", 1.0),
                            extra.get("c_scalar", False))
    lo, hi = (-0.74, 4.36) if act == "uint8" else (-2.46, 2.64)  # the integers reach their bounds
    x = gen.uniform(lo, hi, shape).astype(np.float32)
    ref, got, model = _run(nodes, inits, shape=shape, x=x)
    tol = 1e-5 * float(np.abs(ref).max())
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=tol)
    r = _veil_run(tmp_path, model, x, ONEDNN_VERBOSE="1")
    prims = [line for line in r.stdout.splitlines() if line.startswith("onednn_verbose,exec") and
             ("convolution" in line or "matmul" in line)]
    if veil.engine.int8_support() in _INT8_CASES[(act, weights)]:
        src = "src_u8" if act == "uint8" else "src_s8"
        assert len(prims) == 1 and src in prims[0] and "wei_s8" in prims[0] and "sa0.5" not in prims[0], prims
    else:
        assert prims and all("wei_s8" not in line for line in prims), prims
    np.testing.assert_allclose(np.load(tmp_path / "y.npy").reshape(ref.shape), ref, rtol=1e-5, atol=tol)


@pytest.mark.parametrize("gelu", ["erf", "tanh"])
def test_int8_product_beside_a_fused_gelu(gelu: str) -> None:
    """A GELU pattern reads the same dequantized tensor as an int8 MatMul. The fused Gelu node reads it although
    the pattern's first node did not, so it must count as a float reader (the QuantizeLinear writes both the
    integers and the floats): an independent review found it counted as none, and the load failed."""
    gen = np.random.default_rng(13)
    w = gen.integers(-64, 65, (16, 16)).astype(np.int8)
    nodes, inits = _product("MatMul", (2, 8, 16), w, True, np.array(10, np.uint8))
    nodes = [n for n in nodes if n.op_type != "Relu"]
    nodes[-1].output[0] = "y1"
    c = {"r2": np.sqrt(2), "one": 1.0, "half": 0.5, "k": 0.044715, "three": 3.0, "rpi": np.sqrt(2 / np.pi)}
    inits += [numpy_helper.from_array(np.array(v, np.float32), k) for k, v in c.items()]
    if gelu == "erf":  # x * (1 + erf(x / sqrt 2)) * 0.5, the 0.5 last
        nodes += [helper.make_node("Div", ["xd", "r2"], ["d"]), helper.make_node("Erf", ["d"], ["er"]),
                  helper.make_node("Add", ["er", "one"], ["a"]), helper.make_node("Mul", ["a", "xd"], ["mg"]),
                  helper.make_node("Mul", ["mg", "half"], ["y2"])]
    else:  # 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))
        nodes += [helper.make_node("Pow", ["xd", "three"], ["p"]), helper.make_node("Mul", ["p", "k"], ["pk"]),
                  helper.make_node("Add", ["xd", "pk"], ["s1"]), helper.make_node("Mul", ["s1", "rpi"], ["s2"]),
                  helper.make_node("Tanh", ["s2"], ["t"]), helper.make_node("Add", ["t", "one"], ["a"]),
                  helper.make_node("Mul", ["xd", "half"], ["h"]), helper.make_node("Mul", ["h", "a"], ["y2"])]
    nodes.append(helper.make_node("Add", ["y1", "y2"], ["y"]))
    _check(nodes, inits, (2, 8, 16), gen.uniform(-0.2, 4.9, (2, 8, 16)).astype(np.float32))


def _veil_run(tmp_path, model: bytes, x: np.ndarray, **env: str) -> subprocess.CompletedProcess:
    """`veil run` of model on x into tmp_path/y.npy, with env added; asserts it succeeded."""
    cli = os.environ.get("VEIL_BIN", str(Path(__file__).resolve().parents[2] / "build" / "release" / "veil"))
    (tmp_path / "m.onnx").write_bytes(model)
    np.save(tmp_path / "x.npy", x)
    r = subprocess.run([cli, "run", str(tmp_path / "m.onnx"), "-i", str(tmp_path / "x.npy"), "-o",
                        str(tmp_path / "y.npy")], capture_output=True, text=True, env={**os.environ, **env})
    assert r.returncode == 0, r.stderr
    return r


def _check(nodes, inits, shape, x) -> None:
    ref, got, _ = _run(nodes, inits, shape=shape, x=x)
    assert not np.isnan(got).any()
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * max(1.0, float(np.abs(ref).max())))


def test_review_cases() -> None:
    """What an independent review found wrong in the first int8 version, each now matching onnxruntime."""
    gen = np.random.default_rng(5)
    w = gen.integers(-127, 128, (8, 8, 3, 3)).astype(np.int8)
    x = gen.standard_normal((1, 8, 6, 6), dtype=np.float32) * 3
    conv = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
            helper.make_node("DequantizeLinear", ["q", "s2", "z2"], ["xd"]),
            helper.make_node("DequantizeLinear", ["w", "ws"], ["wd"], axis=0),
            helper.make_node("Conv", ["xd", "wd", "b"], ["y"])]
    for ws in (np.full(8, 0.01, np.float32), np.array([0.01, 0.02, 0, 0.01, 1e-30, 0.01, 0.01, 0.01], np.float32)):
        # the DequantizeLinear's scale and zero point differ from the QuantizeLinear's: the Conv reads the
        # integers as its DequantizeLinear says; a zero or subnormal weight scale keeps the Conv in float32
        inits = [*_scalars(np.array(0, np.uint8)), numpy_helper.from_array(np.array(0.1, np.float32), "s2"),
                 numpy_helper.from_array(np.array(3, np.uint8), "z2"), numpy_helper.from_array(w, "w"),
                 numpy_helper.from_array(ws, "ws"), numpy_helper.from_array(gen.standard_normal(8).astype(np.float32),
                                                                            "b")]
        _check(conv, inits, (1, 8, 6, 6), x)
    # a residual Add fused into a float Conv reads the same dequantized tensor as an int8 Conv
    c = 16
    inits = [*_scalars(np.array(0, np.uint8)), numpy_helper.from_array(gen.integers(-127, 127, (c, c, 1, 1))
                                                                       .astype(np.int8), "w1"),
             numpy_helper.from_array(np.full(c, 0.01, np.float32), "ws1"),
             numpy_helper.from_array((gen.standard_normal((c, c, 1, 1)) * 0.1).astype(np.float32), "wk")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["x1"]),
             helper.make_node("DequantizeLinear", ["w1", "ws1"], ["wd1"], axis=0),
             helper.make_node("Conv", ["x1", "wd1"], ["y1"]), helper.make_node("Conv", ["y1", "wk"], ["yk"]),
             helper.make_node("Add", ["yk", "x1"], ["y"])]
    _check(nodes, inits, (1, c, 6, 6), gen.standard_normal((1, c, 6, 6), dtype=np.float32) * 3)
    # a QuantizeLinear behind an activation: round(x / s) + zp, ties to even, not round(x / s + zp)
    ties = np.array([[0.25, 0.75, 1.25, 1.75, 2.25, 0.1, 3.0, 0.0]], np.float32)
    for zp in (1, 3):
        nodes = [helper.make_node("Relu", ["x"], ["h"]), helper.make_node("QuantizeLinear", ["h", "s", "z"], ["q"]),
                 helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])]
        _check(nodes, _scalars(np.array(zp, np.uint8), 0.5), (1, 8), ties)


def test_int8_conv_when_values_grow(tmp_path) -> None:
    """Unused initializers put the value table at a size where the int8 Conv's input reorder grows it (a moved
    table was read after the move); run by the CLI under a perturbing allocator."""
    gen = np.random.default_rng(6)
    inits = [*_scalars(np.array(0, np.uint8)), numpy_helper.from_array(gen.integers(-127, 128, (8, 4, 3, 3))
                                                                       .astype(np.int8), "w"),
             numpy_helper.from_array(np.full(8, 0.01, np.float32), "ws")]
    inits += [numpy_helper.from_array(np.zeros(1, np.float32), f"unused{i}") for i in range(54)]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["xd"]),
             helper.make_node("DequantizeLinear", ["w", "ws"], ["wd"], axis=0),
             helper.make_node("Conv", ["xd", "wd"], ["y"], pads=[1, 1, 1, 1])]
    x = np.abs(gen.standard_normal((1, 4, 5, 5), dtype=np.float32))
    ref, got, model = _run(nodes, inits, x=x)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-4)
    _veil_run(tmp_path, model, x, MALLOC_PERTURB_="165")
    np.testing.assert_allclose(np.load(tmp_path / "y.npy").reshape(ref.shape), ref, rtol=1e-5, atol=1e-4)


def test_infinite_scale_refused() -> None:
    """A QuantizeLinear of scale inf (what onnxruntime's calibration writes for an attention mask reaching float32's
    minimum) dequantizes everything to NaN; it is refused at load with the reason and what to do."""
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])]
    inits = [numpy_helper.from_array(np.array(np.inf, np.float32), "s"),
             numpy_helper.from_array(np.array(0, np.uint8), "z")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    with pytest.raises(veil.OnnxError, match="the scale is infinite, so every value would dequantize to NaN"):
        veil.Engine.from_onnx(m)


def test_refusals_by_name() -> None:
    per_axis = [numpy_helper.from_array(np.full(4, 0.05, np.float32), "s"),
                numpy_helper.from_array(np.zeros(4, np.uint8), "z")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], axis=1),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], axis=1)]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 5, 5])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], per_axis)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    with pytest.raises(veil.UnsupportedError, match="QuantizeLinear .*one float32 constant scale only"):
        veil.Engine.from_onnx(m)
    blocked = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"], block_size=2)]
    g = helper.make_graph(blocked, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 5, 5])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          _scalars(np.array(0, np.uint8)))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)]).SerializeToString()
    with pytest.raises(veil.UnsupportedError, match="blocked quantization"):
        veil.Engine.from_onnx(m)


class _Reader(quantization.CalibrationDataReader):
    """batches: arrays of the one input called name, or (name None) dicts of every input."""

    def __init__(self, name: str | None, batches: list) -> None:
        self.items = iter([b if name is None else {name: b} for b in batches])

    def get_next(self):
        return next(self.items, None)


def _quantize(tmp_path, data: bytes, name: str | None, calibration: list,
              reduce_range: bool = False) -> tuple[bytes, bytes]:
    src, pre, out = tmp_path / "m.onnx", tmp_path / "p.onnx", tmp_path / "q.onnx"
    src.write_bytes(data)
    quantization.shape_inference.quant_pre_process(str(src), str(pre))
    quantization.quantize_static(str(pre), str(out), _Reader(name, calibration),
                                 quant_format=quantization.QuantFormat.QDQ, per_channel=True,
                                 activation_type=quantization.QuantType.QUInt8,
                                 weight_type=quantization.QuantType.QInt8, reduce_range=reduce_range)
    return pre.read_bytes(), out.read_bytes()


def _agreement(fp32: bytes, int8: bytes, inputs: dict[str, np.ndarray], batch: int, gate: float | None) -> None:
    """gate: the top-1 agreement Veil must reach with onnxruntime's int8; None: as high as onnxruntime's own int8
    kernels reach with onnxruntime running the same QDQ graph literally (optimizations off), less 2 points."""
    f = ort.InferenceSession(fp32, providers=["CPUExecutionProvider"])
    q = ort.InferenceSession(int8, providers=["CPUExecutionProvider"])
    literal = ort.SessionOptions()
    literal.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    ql = ort.InferenceSession(int8, literal, providers=["CPUExecutionProvider"])
    ref, qref, qlit, got = [], [], [], []
    count = len(next(iter(inputs.values())))
    with veil.Engine.from_onnx(int8, threads=THREADS, batch=batch) as e:
        for i in range(0, count, batch):
            feeds = {k: v[i:i + batch] for k, v in inputs.items()}
            got.append(e.run(feeds=feeds)[0])
            qref.append(q.run(None, feeds)[0])
            qlit.append(ql.run(None, feeds)[0])
            ref.append(f.run(None, feeds)[0])
    got, qref, qlit, ref = (np.concatenate(a).reshape(count, -1) for a in (got, qref, qlit, ref))
    top1 = float((got.argmax(1) == qref.argmax(1)).mean())
    ort_self = float((qlit.argmax(1) == qref.argmax(1)).mean())
    err = float((np.abs(got - qref).max(1) / np.abs(qref).max(1)).max())
    ort_err = float((np.abs(qref - ref).max(1) / np.abs(ref).max(1)).max())
    print(f"top-1 agreement with onnxruntime int8 {top1:.4f} (onnxruntime's int8 kernels with its literal QDQ run: "
          f"{ort_self:.4f}; int8 with float32: {float((qref.argmax(1) == ref.argmax(1)).mean()):.4f}); largest "
          f"logit difference {err:.4f}, onnxruntime int8 vs float32 {ort_err:.4f} (of the largest logit)")
    assert top1 >= (gate if gate is not None else ort_self - 0.02)
    assert err <= ort_err


@pytest.mark.parametrize("reduce_range", [False, True])
def test_resnet18_quantized_by_onnxruntime(tmp_path, reduce_range: bool) -> None:
    """reduce_range=True: 7-bit weights, which an AVX2 CPU's int8 kernels run exactly (veil.engine.int8_support()
    "7-bit"); without it the per-channel weights reach +-127, and only VNNI or AMX take them."""
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    gen = np.random.default_rng(7)
    x = gen.standard_normal((200, 3, 224, 224), dtype=np.float32)
    import io

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.from_numpy(x[:1]),), buf, dynamo=False, opset_version=17,
                          input_names=["input"], output_names=["logits"], dynamic_axes={"input": {0: "b"}})
    fp32, int8 = _quantize(tmp_path, buf.getvalue(), "input", [x[i:i + 1] for i in range(8)], reduce_range)
    _agreement(fp32, int8, {"input": x if not reduce_range else x[:96]}, 8, 0.99)  # the 7-bit variant: 96 (time)
    r = _veil_run(tmp_path, int8, x[:1], ONEDNN_VERBOSE="1")
    convs = [line for line in r.stdout.splitlines() if line.startswith("onednn_verbose,exec") and "convolution" in line]
    on_int8 = sum("wei_s8" in line for line in convs)
    print(f"{on_int8} of {len(convs)} convolutions on int8 kernels ({veil.engine.cpu_isa()})")
    # of ResNet-18's 20 Convs (21 primitives: the classifier's Gemm runs as a 1x1 convolution), the first (its
    # input's zero point is not 0, and it pads) stays float32: 19 of 21 on the AVX2 machine with 7-bit weights
    takes = veil.engine.int8_support() == "all" or (veil.engine.int8_support() == "7-bit" and reduce_range)
    assert len(convs) >= 20 and (on_int8 >= 12 if takes else on_int8 == 0), convs


def test_efficientnet_lite0_quantized_by_onnxruntime(tmp_path) -> None:
    from test_precision import augmented_inputs, effnet_module, export

    x = augmented_inputs()
    data = export(effnet_module(), (torch.zeros(1, 3, 224, 224),), ["image"])
    fp32, int8 = _quantize(tmp_path, data, "image", [x[i:i + 1] for i in range(0, 1000, 20)])
    # Quantized with uint8 activations this model's top-1 is noisy (onnxruntime's int8 agrees with float32 on about
    # 86 % of these inputs), and onnxruntime's own two executions of it agree on about 98 %: the gate is theirs.
    _agreement(fp32, int8, {"image": x}, 8, None)


@pytest.mark.parametrize("reduce_range", [False, True])
def test_bert_quantized_by_onnxruntime(tmp_path, key: bytes, reduce_range: bool) -> None:
    """A small BERT (transformers, random weights: 2 layers, hidden 128) quantized by onnxruntime: its Linear layers
    (MatMul, and Gemm where onnxruntime's pre-processing made them so) run on int8 kernels where this CPU's are exact;
    on 200 sequences of 32 tokens Veil agrees with onnxruntime's int8 on top-1 within 2 points of onnxruntime's own
    two executions, and its largest logit difference is within onnxruntime's int8 error against float32; sealed and
    opened by the consuming load, it computes the same bits."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=1000, hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=512, num_labels=5)
    inner = transformers.BertForSequenceClassification(cfg).eval()

    class Logits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.m = inner

        def forward(self, ids, mask):  # noqa: ANN001, ANN202
            return self.m(input_ids=ids, attention_mask=mask).logits

    gen = np.random.default_rng(9)
    ids = gen.integers(0, 1000, (200, 32)).astype(np.int64)
    mask = np.ones((200, 32), np.int64)
    mask[::3, 24:] = 0  # padded sequences too
    from test_precision import export

    data = export(Logits(), (torch.from_numpy(ids[:1]), torch.from_numpy(mask[:1])), ["ids", "mask"])
    # calibrated without padding: a padded mask's float32 minimum would give its QuantizeLinear an infinite scale
    # (test_infinite_scale_refused)
    calibration = [{"ids": ids[i:i + 1], "mask": np.ones((1, 32), np.int64)} for i in range(0, 200, 25)]
    fp32, int8 = _quantize(tmp_path, data, None, calibration, reduce_range)
    _agreement(fp32, int8, {"ids": ids, "mask": mask}, 4, None)
    (tmp_path / "m.onnx").write_bytes(int8)
    np.savez(tmp_path / "feeds.npz", ids=ids[:1], mask=mask[:1])
    script = ("import sys, numpy as np, veil; f = dict(np.load(sys.argv[2]))\n"
              "with veil.Engine.from_onnx(open(sys.argv[1], 'rb').read(), threads=1) as e: e.run(feeds=f)")
    r = subprocess.run([sys.executable, "-c", script, str(tmp_path / "m.onnx"), str(tmp_path / "feeds.npz")],
                       capture_output=True, text=True,
                       env={**os.environ, "ONEDNN_VERBOSE": "1",
                            "PYTHONPATH": str(Path(veil.__file__).resolve().parent.parent)})
    assert r.returncode == 0, r.stderr
    on_int8 = sum(line.startswith("onednn_verbose,exec") and "wei_s8" in line for line in r.stdout.splitlines())
    print(f"{on_int8} products on int8 kernels ({veil.engine.cpu_isa()})")
    takes = veil.engine.int8_support() == "all" or (veil.engine.int8_support() == "7-bit" and reduce_range)
    assert on_int8 >= 12 if takes else on_int8 == 0  # 6 Linear layers a layer; the pooler and classifier may not
    # sealed, and loaded by the consuming load (each weight released once the last product reading it is built)
    veil.seal_onnx(int8, tmp_path / "m.veil", model_id="bert-int8", key=key)
    feeds = {"ids": ids[:4], "mask": mask[:4]}
    with veil.Engine.from_onnx(int8, threads=THREADS, batch=4) as e:
        want = e.run(feeds=feeds)[0]
    with veil.Engine.from_sealed(tmp_path / "m.veil", key=key, threads=THREADS, batch=4) as e:
        np.testing.assert_array_equal(e.run(feeds=feeds)[0], want)
