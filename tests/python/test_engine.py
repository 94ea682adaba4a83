"""The engine end to end through `veil run`: torchvision models and EfficientNet-Lite0 (efficientnet_lite_pytorch)
with random (seeded) weights, exported the way veil.torch exports them (BatchNormalization kept), run on the
plain ONNX file and on the sealed .veil file, and compared with PyTorch eager and onnxruntime:
max|diff| <= 1e-4 * max|logit| and the same top-5, batch 1 and 8.
Plus the CLI's refusals: wrong input shape, NaN input, unsupported operator, sealed model without its key."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from refusal import assert_refused  # noqa: E402

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

ROOT = Path(__file__).resolve().parents[2]
VEIL = os.environ.get("VEIL_BIN", str(ROOT / "build" / "release" / "veil"))
TOLERANCE = 1e-4  # relative to max|logit|
THREADS = "2"


@pytest.fixture(scope="module", autouse=True)
def _binary() -> None:
    if not Path(VEIL).exists():
        if os.environ.get("VEIL_BIN"):
            pytest.fail(f"VEIL_BIN={VEIL} does not exist")
        pytest.skip("veil CLI not built (make build)")


def veil(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([VEIL, *map(str, args)], capture_output=True, text=True, timeout=300)


@dataclass(frozen=True)
class Exported:
    module: torch.nn.Module
    onnx_path: Path
    sealed_path: Path
    key_path: Path
    session: ort.InferenceSession


def _module(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if name == "efficientnet_lite0":
        lite = pytest.importorskip("efficientnet_lite_pytorch")
        return lite.EfficientNet.from_name("efficientnet-lite0").eval()  # random weights: nothing is downloaded
    return getattr(torchvision.models, name)(weights=None).eval()


def _export(name: str, tmp: Path) -> Exported:
    from veil.torch import export_onnx

    module = _module(name)
    data = export_onnx(module, torch.randn(1, 3, 224, 224))
    assert any(n.op_type == "BatchNormalization" for n in onnx.load_from_string(data).graph.node)
    onnx_path, sealed_path, key_path = tmp / f"{name}.onnx", tmp / f"{name}.veil", tmp / "model.key"
    onnx_path.write_bytes(data)
    if not key_path.exists():
        assert veil("keygen", "-o", key_path).returncode == 0
    p = veil("seal", onnx_path, "-o", sealed_path, "--model-id", name, "--key", key_path)
    assert p.returncode == 0, p.stderr
    return Exported(module, onnx_path, sealed_path, key_path, ort.InferenceSession(data))


_CACHE: dict[str, Exported] = {}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("engine")


def exported(name: str, workdir: Path) -> Exported:
    if name not in _CACHE:
        _CACHE[name] = _export(name, workdir)
    return _CACHE[name]


def run_veil(model: Path, x: np.ndarray, tmp: Path, *extra: str | Path) -> np.ndarray:
    xin, yout = tmp / "x.npy", tmp / "y.npy"
    np.save(xin, x)
    p = veil("run", model, "--input", xin, "-o", yout, "--threads", THREADS, *extra)
    assert p.returncode == 0, p.stderr
    return np.load(yout)


def assert_matches(got: np.ndarray, want: np.ndarray, what: str) -> float:
    assert got.shape == want.shape and got.dtype == np.float32, what
    scale = float(np.abs(want).max())
    err = float(np.abs(got - want).max())
    assert err <= TOLERANCE * scale, f"{what}: max|diff| = {err:.3g} > {TOLERANCE} * {scale:.3g}"
    top_got = np.argsort(-got, axis=1)[:, :5]
    top_want = np.argsort(-want, axis=1)[:, :5]
    assert (top_got == top_want).all(), f"{what}: top-5 differs"
    return err / scale


def check_model(name: str, batch: int, workdir: Path, tmp_path: Path, sealed: bool) -> None:
    e = exported(name, workdir)
    x = np.random.default_rng(batch).standard_normal((batch, 3, 224, 224)).astype(np.float32)
    with torch.no_grad():
        eager = e.module(torch.from_numpy(x)).numpy()
    reference = e.session.run(None, {"input": x})[0]
    got = run_veil(e.onnx_path, x, tmp_path)
    assert_matches(got, eager, f"{name} b{batch} vs PyTorch")
    assert_matches(got, reference, f"{name} b{batch} vs onnxruntime")
    if sealed:
        got_sealed = run_veil(e.sealed_path, x, tmp_path, "--key", e.key_path)
        np.testing.assert_array_equal(got_sealed, got)  # same graph, same weights, same plan


@pytest.mark.parametrize("batch", [1, 8])
def test_resnet18(batch: int, workdir: Path, tmp_path: Path) -> None:
    check_model("resnet18", batch, workdir, tmp_path, sealed=True)


@pytest.mark.parametrize("batch", [1, 8])
def test_mobilenet_v2(batch: int, workdir: Path, tmp_path: Path) -> None:
    check_model("mobilenet_v2", batch, workdir, tmp_path, sealed=batch == 1)


@pytest.mark.slow
@pytest.mark.parametrize("batch", [1, 8])
def test_resnet50(batch: int, workdir: Path, tmp_path: Path) -> None:
    check_model("resnet50", batch, workdir, tmp_path, sealed=batch == 1)


@pytest.mark.filterwarnings("ignore:Constant folding")  # the exporter leaves the pads' Slice unfolded
@pytest.mark.parametrize("batch", [1, 8])
def test_efficientnet_lite0(batch: int, workdir: Path, tmp_path: Path) -> None:
    # Its export keeps TensorFlow-style "same" padding as Pad nodes fed by shape arithmetic (ConstantOfShape,
    # Concat, Reshape, Slice, Transpose, Cast) and flattens with Shape/Gather/Unsqueeze/Concat/Reshape: the
    # engine folds the arithmetic at load and the pads into the convolutions.
    graph = onnx.load_from_string(exported("efficientnet_lite0", workdir).onnx_path.read_bytes()).graph
    assert {"Pad", "Slice", "Shape", "Gather"} <= {n.op_type for n in graph.node}
    check_model("efficientnet_lite0", batch, workdir, tmp_path, sealed=batch == 1)


@pytest.mark.slow
def test_mobilenet_v3_small(workdir: Path, tmp_path: Path) -> None:
    check_model("mobilenet_v3_small", 2, workdir, tmp_path, sealed=False)


# ---- refusals ------------------------------------------------------------------------------------------------


def assert_failed(p: subprocess.CompletedProcess[str], needle: str) -> None:
    assert_refused(p, needle)


def _tiny(tmp: Path, op: str = "Relu") -> Path:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node(op, ["x"], ["y"])], "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp / f"{op}.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def test_tiny_model_and_batch_planning(tmp_path: Path) -> None:
    x = np.array([[-1, 0, 2], [3, -4, 5]], dtype=np.float32)
    np.testing.assert_array_equal(run_veil(_tiny(tmp_path), x, tmp_path), np.maximum(x, 0))


def test_refuses_wrong_shape_nan_and_unsupported(tmp_path: Path) -> None:
    model = _tiny(tmp_path)
    np.save(tmp_path / "bad.npy", np.zeros((2, 4), np.float32))
    assert_failed(veil("run", model, "--input", tmp_path / "bad.npy", "-o", tmp_path / "y.npy"), "shape")
    np.save(tmp_path / "nan.npy", np.array([[1, np.nan, 2]], np.float32))
    assert_failed(veil("run", model, "--input", tmp_path / "nan.npy", "-o", tmp_path / "y.npy"), "NaN")
    np.save(tmp_path / "f64.npy", np.zeros((1, 3), np.float64))
    assert_failed(veil("run", model, "--input", tmp_path / "f64.npy", "-o", tmp_path / "y.npy"), "float32")
    np.save(tmp_path / "ok.npy", np.zeros((1, 3), np.float32))
    p = veil("run", _tiny(tmp_path, "Hardmax"), "--input", tmp_path / "ok.npy", "-o", tmp_path / "y.npy")
    assert_failed(p, "unsupported operator Hardmax")
    assert not (tmp_path / "y.npy").exists()


def test_sealed_model_needs_its_key(tmp_path: Path) -> None:
    model = _tiny(tmp_path)
    key, other = tmp_path / "k", tmp_path / "other"
    assert veil("keygen", "-o", key).returncode == 0
    assert veil("keygen", "-o", other).returncode == 0
    sealed = tmp_path / "tiny.veil"
    assert veil("seal", model, "-o", sealed, "--model-id", "tiny", "--key", key).returncode == 0
    np.save(tmp_path / "x.npy", np.ones((1, 3), np.float32))
    p = veil("run", sealed, "--input", tmp_path / "x.npy", "-o", tmp_path / "y.npy")
    assert p.returncode == 2 and "--key" in p.stderr
    assert_failed(veil("run", sealed, "--input", tmp_path / "x.npy", "-o", tmp_path / "y.npy", "--key", other),
                  "key unwrap failed")
    assert not (tmp_path / "y.npy").exists()
    np.testing.assert_array_equal(run_veil(sealed, np.ones((1, 3), np.float32), tmp_path, "--key", key),
                                  np.ones((1, 3), np.float32))
