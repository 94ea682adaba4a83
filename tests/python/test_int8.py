"""int8 models in ONNX's QDQ format, as onnxruntime's quantize_static writes them (issue 19), against onnxruntime.

QuantizeLinear / DequantizeLinear of constants (weights per output channel, int32 biases) are folded at load; on a
computed tensor they run as one element-wise pass (a QuantizeLinear and its DequantizeLinear fused); a Conv that
reads quantized integers runs on oneDNN's int8 kernels (docs/internals/engine.md, "int8 models"). What is checked:

    * each operator against onnxruntime: Q then DQ (uint8, int8 and int16 zero points), a DQ'd per-channel Conv,
      a Conv whose output is quantized, a Conv that runs on oneDNN's int8 kernels (u8 source, s8 weights, checked in
      ONEDNN_VERBOSE); per-axis quantization of a computed tensor and blocked quantization are refused by name;
    * a ResNet-18 with random weights quantized by onnxruntime, on 200 random inputs: Veil and onnxruntime's int8
      agree on top-1 for at least 99 % of them;
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


def test_int8_kernels_run_the_convolution(tmp_path) -> None:
    """A Conv reading a QuantizeLinear of zero point 0 runs on oneDNN's int8 kernels (u8 source, s8 weights; seen in
    ONEDNN_VERBOSE), with its float32 bias, and matches onnxruntime. On a CPU without VNNI or AMX
    (veil.engine.int8_available() false, as on an AVX2-only CPU) the same Conv runs in float32 and still matches."""
    inits = _conv_inits()
    inits[1] = numpy_helper.from_array(np.array(0, np.uint8), "z")
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["xd"]),
             helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"], axis=0),
             helper.make_node("DequantizeLinear", ["b", "bs"], ["bd"], axis=0),
             helper.make_node("Conv", ["xd", "wd", "bd"], ["y"], pads=[1, 1, 1, 1])]
    x = np.abs(np.random.default_rng(3).standard_normal((1, 4, 5, 5), dtype=np.float32)) * 3
    ref, got, model = _run(nodes, inits, x=x)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-4)
    r = _veil_run(tmp_path, model, x, ONEDNN_VERBOSE="1")
    convs = [line for line in r.stdout.splitlines() if line.startswith("onednn_verbose,exec") and "convolution" in line]
    if veil.engine.int8_available():
        assert convs and all("src_u8" in line and "wei_s8" in line for line in convs), convs
    else:
        assert convs and all("src_f32" in line and "wei_f32" in line for line in convs), convs
    np.testing.assert_allclose(np.load(tmp_path / "y.npy").reshape(ref.shape), ref, rtol=1e-5, atol=1e-4)


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
    def __init__(self, name: str, batches: list[np.ndarray]) -> None:
        self.items = iter([{name: b} for b in batches])

    def get_next(self):
        return next(self.items, None)


def _quantize(tmp_path, data: bytes, name: str, calibration: list[np.ndarray]) -> tuple[bytes, bytes]:
    src, pre, out = tmp_path / "m.onnx", tmp_path / "p.onnx", tmp_path / "q.onnx"
    src.write_bytes(data)
    quantization.shape_inference.quant_pre_process(str(src), str(pre))
    quantization.quantize_static(str(pre), str(out), _Reader(name, calibration),
                                 quant_format=quantization.QuantFormat.QDQ, per_channel=True,
                                 activation_type=quantization.QuantType.QUInt8,
                                 weight_type=quantization.QuantType.QInt8)
    return pre.read_bytes(), out.read_bytes()


def _agreement(fp32: bytes, int8: bytes, name: str, x: np.ndarray, batch: int, gate: float | None) -> None:
    """gate: the top-1 agreement Veil must reach with onnxruntime's int8; None: as high as onnxruntime's own int8
    kernels reach with onnxruntime running the same QDQ graph literally (optimizations off), less 2 points."""
    f = ort.InferenceSession(fp32, providers=["CPUExecutionProvider"])
    q = ort.InferenceSession(int8, providers=["CPUExecutionProvider"])
    literal = ort.SessionOptions()
    literal.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    ql = ort.InferenceSession(int8, literal, providers=["CPUExecutionProvider"])
    ref, qref, qlit, got = [], [], [], []
    with veil.Engine.from_onnx(int8, threads=THREADS, batch=batch) as e:
        for i in range(0, len(x), batch):
            feeds = {name: x[i:i + batch]}
            got.append(e.run(feeds=feeds)[0])
            qref.append(q.run(None, feeds)[0])
            qlit.append(ql.run(None, feeds)[0])
            ref.append(f.run(None, feeds)[0])
    got, qref, qlit, ref = (np.concatenate(a).reshape(len(x), -1) for a in (got, qref, qlit, ref))
    top1 = float((got.argmax(1) == qref.argmax(1)).mean())
    ort_self = float((qlit.argmax(1) == qref.argmax(1)).mean())
    err = float((np.abs(got - qref).max(1) / np.abs(qref).max(1)).max())
    ort_err = float((np.abs(qref - ref).max(1) / np.abs(ref).max(1)).max())
    print(f"top-1 agreement with onnxruntime int8 {top1:.4f} (onnxruntime's int8 kernels with its literal QDQ run: "
          f"{ort_self:.4f}; int8 with float32: {float((qref.argmax(1) == ref.argmax(1)).mean()):.4f}); largest "
          f"logit difference {err:.4f}, onnxruntime int8 vs float32 {ort_err:.4f} (of the largest logit)")
    assert top1 >= (gate if gate is not None else ort_self - 0.02)
    assert err <= ort_err


def test_resnet18_quantized_by_onnxruntime(tmp_path) -> None:
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
    fp32, int8 = _quantize(tmp_path, buf.getvalue(), "input", [x[i:i + 1] for i in range(8)])
    _agreement(fp32, int8, "input", x, 8, 0.99)


def test_efficientnet_lite0_quantized_by_onnxruntime(tmp_path) -> None:
    from test_precision import augmented_inputs, effnet_module, export

    x = augmented_inputs()
    data = export(effnet_module(), (torch.zeros(1, 3, 224, 224),), ["image"])
    fp32, int8 = _quantize(tmp_path, data, "image", [x[i:i + 1] for i in range(0, 1000, 20)])
    # Quantized with uint8 activations this model's top-1 is noisy (onnxruntime's int8 agrees with float32 on about
    # 86 % of these inputs), and onnxruntime's own two executions of it agree on about 98 %: the gate is theirs.
    _agreement(fp32, int8, "image", x, 8, None)
