"""veil.torch: export in memory, seal, and get every tensor back bit for bit."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

torch = pytest.importorskip("torch")
nn = torch.nn

import veil  # noqa: E402
import veil.torch as vt  # noqa: E402

_TORCH_TO_ONNX = {
    torch.float32: TensorProto.FLOAT, torch.float16: TensorProto.FLOAT16, torch.bfloat16: TensorProto.BFLOAT16,
    torch.float64: TensorProto.DOUBLE, torch.int64: TensorProto.INT64, torch.int32: TensorProto.INT32,
    torch.int8: TensorProto.INT8, torch.uint8: TensorProto.UINT8, torch.bool: TensorProto.BOOL,
}


def bits(t: torch.Tensor) -> bytes:
    """The tensor's bytes in its own layout (0-d and empty included)."""
    return t.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def assert_identical(a: torch.Tensor, b: torch.Tensor, name: str) -> None:
    assert a.dtype == b.dtype, name
    assert tuple(a.shape) == tuple(b.shape), name
    assert bits(a) == bits(b), name


class Mixed(nn.Module):
    """Tied weights, BatchNorm buffers, fp16 and bf16 parameters, int64, 0-d and empty buffers, all used."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Linear(4, 4)
        self.dec = nn.Linear(4, 4)
        self.dec.weight = self.enc.weight  # tied
        self.bn = nn.BatchNorm1d(4)
        self.w16 = nn.Parameter(torch.randn(4, 4).half())
        self.wbf = nn.Parameter(torch.randn(4, 4).to(torch.bfloat16))
        self.register_buffer("idx", torch.tensor([3, 1, 0, 2], dtype=torch.int64))
        self.register_buffer("scale", torch.tensor(0.5))
        self.register_buffer("empty", torch.zeros(4, 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.bn(self.enc(x))
        h = h + (h.half() @ self.w16).float() + (h.to(torch.bfloat16) @ self.wbf).float()
        h = h.index_select(1, self.idx) * self.scale
        h = torch.cat([h, x @ self.empty], 1)
        return self.dec(h)


def trained_mixed() -> Mixed:
    torch.manual_seed(0)
    m = Mixed()
    m.train()
    for _ in range(3):  # non-trivial running stats and num_batches_tracked, distinct values everywhere
        m(torch.randn(8, 4))
    with torch.no_grad():
        m.bn.weight.add_(torch.randn(4))
        m.bn.bias.add_(torch.randn(4))
    return m.eval()


def onnx_initializers(model: onnx.ModelProto) -> dict[str, torch.Tensor]:
    out = {}
    for init in model.graph.initializer:
        array = numpy_helper.to_array(init)
        if init.data_type == TensorProto.BFLOAT16:
            out[init.name] = torch.from_numpy(array.view(np.uint16).copy()).view(torch.bfloat16)
        else:
            out[init.name] = torch.from_numpy(np.array(array, copy=True))
    return out


def check_sealed_against(path: Path, key: bytes, original: onnx.ModelProto, module: nn.Module,
                         assert_same_model) -> set[str]:
    """Unseals path and checks every initializer against the original ONNX and against module.state_dict()."""
    restored = onnx.load_from_string(veil.unseal(path, key))
    assert_same_model(original, restored)
    got = vt.state_dict_from_sealed(path, key)
    expected = onnx_initializers(original)
    assert list(got) == list(expected)
    for name, tensor in got.items():
        assert_identical(tensor, expected[name], name)
    state = module.state_dict()
    matched = set(got) & set(state)
    for name in matched:
        assert_identical(got[name], state[name], name)
    with veil.open_model(path, key) as m:
        for name, tensor in expected.items():
            assert m.array(name).tobytes() == bits(tensor), name
    return matched


@pytest.mark.slow
def test_resnet18(tmp_path: Path, key: bytes, assert_same_model, monkeypatch: pytest.MonkeyPatch) -> None:
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    module = torchvision.models.resnet18(weights=None)
    module.train()
    with torch.no_grad():  # make BN parameters and buffers distinct, as in a trained model
        module(torch.randn(2, 3, 64, 64))
        for p in module.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    x = torch.randn(1, 3, 224, 224)
    monkeypatch.chdir(tmp_path)
    info = vt.seal(module, x, tmp_path / "resnet18.veil", model_id="resnet18", key=key, model_version=3)
    assert module.training  # mode restored
    assert sorted(p.name for p in tmp_path.iterdir()) == ["resnet18.veil"]  # no plaintext ONNX on disk
    assert (info.model_id, info.model_version, info.public_graph) == ("resnet18", 3, False)
    original = onnx.load_from_string(vt.export_onnx(module, x))
    assert info.tensor_count == len(original.graph.initializer)
    matched = check_sealed_against(tmp_path / "resnet18.veil", key, original, module, assert_same_model)
    learned = {n for n, _ in module.named_parameters()} | {n for n in module.state_dict() if "running_" in n}
    assert learned <= matched  # BN not folded: every parameter and running stat keeps its state_dict name
    graph = original.graph
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    data = (tmp_path / "resnet18.veil").read_bytes()
    fc = bits(module.fc.weight)
    assert fc[:256] not in data and b"layer4" not in data


def test_mixed_module(tmp_path: Path, key: bytes, assert_same_model) -> None:
    module = trained_mixed()
    x = torch.randn(2, 4)
    vt.seal(module, x, tmp_path / "mixed.veil", model_id="mixed", key=key)
    original = onnx.load_from_string(vt.export_onnx(module, x))
    matched = check_sealed_against(tmp_path / "mixed.veil", key, original, module, assert_same_model)
    assert {"w16", "wbf", "idx", "scale", "empty", "enc.weight", "bn.running_mean", "bn.running_var"} <= matched
    dtypes = {i.name: i.data_type for i in original.graph.initializer}
    assert (dtypes["w16"], dtypes["wbf"], dtypes["idx"]) == (TensorProto.FLOAT16, TensorProto.BFLOAT16,
                                                             TensorProto.INT64)
    assert "dec.weight" not in dtypes  # tied to enc.weight: stored once


def test_full_state_dict_via_onnx_helper(tmp_path: Path, key: bytes, assert_same_model) -> None:
    """Every state_dict entry, including what an exporter drops (num_batches_tracked, unused buffers)."""
    module = trained_mixed()
    module.register_buffer("empty3", torch.zeros(3, 0, dtype=torch.float16))
    module.register_buffer("flags", torch.tensor([True, False]))
    module.register_buffer("step", torch.tensor(41, dtype=torch.int64))
    state = module.state_dict()
    inits = [helper.make_tensor(name, _TORCH_TO_ONNX[t.dtype], list(t.shape), vals=bits(t), raw=True)
             for name, t in state.items()]
    outputs = [helper.make_tensor_value_info(f"out_{i}", init.data_type, list(init.dims))
               for i, init in enumerate(inits)]
    nodes = [helper.make_node("Identity", [init.name], [f"out_{i}"]) for i, init in enumerate(inits)]
    model = helper.make_model(helper.make_graph(nodes, "state", [], outputs, initializer=inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    assert state["bn.num_batches_tracked"].dtype == torch.int64 and state["bn.num_batches_tracked"].dim() == 0
    info = veil.seal_onnx(model.SerializeToString(), tmp_path / "state.veil", model_id="state", key=key,
                          chunk_size=4096)
    assert info.tensor_count == len(state)
    matched = check_sealed_against(tmp_path / "state.veil", key, model, module, assert_same_model)
    assert matched == set(state)


def test_dynamo_exporter_embeds_weights(tmp_path: Path, key: bytes, assert_same_model) -> None:
    module = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2)).eval()
    x = torch.randn(3, 8)
    blob = vt.export_onnx(module, x, exporter="dynamo")
    original = onnx.load_from_string(blob)
    assert all(i.data_location != TensorProto.EXTERNAL for i in original.graph.initializer)
    vt.seal(module, x, tmp_path / "d.veil", model_id="d", key=key, exporter="dynamo")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.veil"]
    restored = onnx.load_from_string(veil.unseal(tmp_path / "d.veil", key))
    got, expected = onnx_initializers(restored), onnx_initializers(original)
    assert list(got) == list(expected)
    for name in got:
        assert_identical(got[name], expected[name], name)
    assert {n for n, _ in module.named_parameters()} <= set(got)


def test_public_graph_and_names(tmp_path: Path, key: bytes) -> None:
    module = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(2))
    x = torch.randn(1, 3, 8, 8)
    module(x)
    info = vt.seal(module, (x,), tmp_path / "p.veil", model_id="p", key=key, public_graph=True,
                   input_names=["image"], output_names=["logits"], dynamic_batch=False, opset=17)
    assert info.public_graph
    restored = onnx.load_from_string(veil.unseal(tmp_path / "p.veil", key))
    assert [i.name for i in restored.graph.input] == ["image"]
    assert [o.name for o in restored.graph.output] == ["logits"]
    assert restored.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 1
    assert any(o.domain in ("", "ai.onnx") and o.version == 17 for o in restored.opset_import)


def test_to_secure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = nn.Sequential(nn.Linear(4, 2)).eval()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="example_inputs"):
        vt.to_secure(module, os.urandom(32), "seedmodel")
    key16 = os.urandom(16)  # the seed's key size
    path = vt.to_secure(module, key16, "seedmodel", torch.randn(1, 4))
    assert path == "seedmodel.veil" and (tmp_path / path).is_file()
    assert veil.inspect(path).model_id == "seedmodel"
    sd = vt.state_dict_from_sealed(path, key16)
    assert_identical(sd["0.weight"], module.state_dict()["0.weight"], "0.weight")
    key32 = os.urandom(32)
    other = vt.to_secure(module, key32, "seedmodel", torch.randn(1, 4), path=tmp_path / "x.veil")
    assert other == str(tmp_path / "x.veil") and veil.inspect(other).tensor_count == 2
    with pytest.raises(veil.ArgumentError):
        vt.to_secure(module, os.urandom(24), "seedmodel", torch.randn(1, 4))


def test_wrong_key_and_corruption(tmp_path: Path, key: bytes, other_key: bytes) -> None:
    module = nn.Linear(64, 64)
    path = tmp_path / "l.veil"
    vt.seal(module, torch.randn(1, 64), path, model_id="l", key=key)
    with pytest.raises(veil.KeyUnwrapError):
        vt.state_dict_from_sealed(path, other_key)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x80
    path.write_bytes(bytes(data))
    with pytest.raises(veil.AuthenticationError):
        vt.state_dict_from_sealed(path, key)


def test_only_veil_torch_imports_torch() -> None:
    import subprocess
    import sys

    code = "import sys, veil, veil.sealed, veil.errors; assert 'torch' not in sys.modules and 'onnx' not in sys.modules"
    env = {**os.environ, "PYTHONPATH": str(Path(veil.__file__).resolve().parents[1])}
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
