# SPDX-License-Identifier: Apache-2.0
"""Transformers served by veil-runtime over KServe v2 (docs/runtime.md, "Dynamic shapes"): a BERT classifier exported
with dynamic batch and sequence axes, sealed, its key from veil-kbs, called with INT64 token ids and mask:

    * the metadata shows the dynamic dims as -1 and each input's datatype (INT64), outputs FP32;
    * JSON and binary requests of several sequence lengths and batches, each answered with the shape of the plan that
      ran and logits equal to onnxruntime's on the same ONNX model; tritonclient's InferInput with INT64 data too;
    * a plan per input shape, made on demand and bounded (max_plans): the least recently used is evicted;
    * new plans are made at most plan_rate per second after a burst of max_plans: past it 503 with Retry-After,
      while shapes already planned are served;
    * refused with 400 and a message that names no node of the (confidential) graph: inputs whose sequence lengths
      disagree (the engine cannot plan them: remembered, not planned twice), a sequence over max_dim, a token id
      outside +-2^24, FP32 data for an INT64 input, a mask of another datatype; the runtime keeps serving.
"""

from __future__ import annotations

import base64
import json
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from test_kbs import make_broker
from test_runtime import RUNTIME, Runtime, sim_measurement, veil

ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

VOCAB, MAX_DIM, MAX_PLANS = 500, 40, 3


class _Logits(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=ids, attention_mask=mask).logits


def bert_onnx(path: Path) -> None:
    cfg = transformers.BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
                                  vocab_size=VOCAB, max_position_embeddings=128, num_labels=3)
    torch.manual_seed(0)
    model = _Logits(transformers.BertForSequenceClassification(cfg).eval())
    ids, mask = torch.zeros(1, 8, dtype=torch.int64), torch.ones(1, 8, dtype=torch.int64)
    axes = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}, "logits": {0: "batch"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (ids, mask), str(path), dynamo=False, opset_version=17,
                          input_names=["input_ids", "attention_mask"], output_names=["logits"], dynamic_axes=axes)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("serve-transformers")
    sim_dir = base / "sim"
    assert veil("attest", "sim-init", "--dir", sim_dir).returncode == 0
    onnx_path = base / "bert.onnx"
    bert_onnx(onnx_path)
    broker = make_broker(base, "kbs", {"pub": sim_dir / "platform.pub"})
    rt = None
    try:
        policy = {"version": 1, "allow_sim": True, "sim": {"measurements": [sim_measurement(Path(RUNTIME))]}}
        r = broker.admin("POST", "/models", {"model_id": "bert", "policy": policy})
        assert r.status == 201, r.body
        key = base / "bert.key"
        key.write_bytes(base64.b64decode(r.json()["key"]))
        key.chmod(0o600)
        sealed = base / "bert.veil"
        p = veil("seal", onnx_path, "-o", sealed, "--model-id", "bert", "--key", key)
        assert p.returncode == 0, p.stderr
        rt = Runtime(base, ["--tee", "sim", "--sim-dir", str(sim_dir), "--kbs", broker.url, "--model",
                            f"bert:{sealed}", "--set", f"max_dim={MAX_DIM}", "--set", f"max_plans={MAX_PLANS}",
                            "--set", "workers=1", "--set", "plan_rate=0"], False)  # plan_rate: its own test
        rt.start()
        session = ort.InferenceSession(onnx_path.read_bytes(), providers=["CPUExecutionProvider"])
        yield rt, session
    finally:
        if rt is not None and rt.proc is not None and rt.proc.poll() is None:
            assert rt.stop() == 0, rt.log_text()
        assert broker.stop() == 0


def feeds(batch: int, seq: int, seed: int) -> dict[str, np.ndarray]:
    gen = np.random.default_rng(seed)
    mask = np.ones((batch, seq), np.int64)
    mask[-1, seq // 2:] = 0  # padding: the mask path runs
    return {"input_ids": gen.integers(0, VOCAB, (batch, seq)).astype(np.int64), "attention_mask": mask}


def infer_json(rt: Runtime, f: dict[str, np.ndarray], types: dict[str, str] | None = None) -> tuple[int, Any]:
    body = {"inputs": [{"name": k, "datatype": (types or {}).get(k, "INT64"), "shape": list(v.shape),
                        "data": v.flatten().tolist()} for k, v in f.items()]}
    r = rt.request("POST", "/v2/models/bert/infer", json.dumps(body).encode(), {"Content-Type": "application/json"})
    return r.status, json.loads(r.body)


def infer_binary(rt: Runtime, f: dict[str, np.ndarray]) -> tuple[int, dict, bytes]:
    head = json.dumps({"inputs": [{"name": k, "datatype": "INT64", "shape": list(v.shape),
                                   "parameters": {"binary_data_size": v.nbytes}} for k, v in f.items()],
                       "parameters": {"binary_data_output": True}}).encode()
    tail = b"".join(v.astype("<i8").tobytes() for v in f.values())
    r = rt.request("POST", "/v2/models/bert/infer", head + tail, {"Inference-Header-Content-Length": str(len(head))})
    if r.status != 200:
        return r.status, json.loads(r.body), b""
    n = int(r.headers["inference-header-content-length"])
    return r.status, json.loads(r.body[:n]), r.body[n:]


def close(got: np.ndarray, ref: np.ndarray) -> None:
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() <= 1e-4 * max(1.0, float(np.abs(ref).max()))
    assert (got.argmax(-1) == ref.argmax(-1)).all()


def test_metadata_shows_dynamic_dims_and_datatypes(served) -> None:
    rt, _ = served
    meta = json.loads(rt.request("GET", "/v2/models/bert").body)
    assert meta["inputs"] == [{"name": "input_ids", "datatype": "INT64", "shape": [-1, -1]},
                              {"name": "attention_mask", "datatype": "INT64", "shape": [-1, -1]}]
    assert meta["outputs"] == [{"name": "logits", "datatype": "FP32", "shape": [-1, 3]}]


@pytest.mark.parametrize("batch, seq", [(1, 8), (1, 13), (2, 5), (3, 40)])
def test_sequences_and_batches_match_onnxruntime(served, batch: int, seq: int) -> None:
    rt, session = served
    f = feeds(batch, seq, seq)
    ref = session.run(None, f)[0]
    status, body = infer_json(rt, f)
    assert status == 200, body
    out = body["outputs"][0]
    assert out["name"] == "logits" and out["datatype"] == "FP32" and out["shape"] == [batch, 3]
    close(np.array(out["data"], np.float32).reshape(batch, 3), ref)
    status, head, tail = infer_binary(rt, f)
    assert status == 200, head
    assert head["outputs"][0]["shape"] == [batch, 3]
    close(np.frombuffer(tail, "<f4").reshape(batch, 3), ref)


def test_tritonclient_int64(served) -> None:
    tc = pytest.importorskip("tritonclient.http")
    rt, session = served
    f = feeds(2, 11, 3)
    client = tc.InferenceServerClient(f"127.0.0.1:{rt.port}")
    inputs = []
    for name, value in f.items():
        i = tc.InferInput(name, list(value.shape), "INT64")
        i.set_data_from_numpy(value, binary_data=True)
        inputs.append(i)
    result = client.infer("bert", inputs, outputs=[tc.InferRequestedOutput("logits", binary_data=True)])
    close(result.as_numpy("logits"), session.run(None, f)[0])


def test_plans_are_bounded_and_evicted(served) -> None:
    rt, session = served
    for seq in (6, 7, 9, 10, 6):  # more shapes than max_plans: the least recently used idle plan goes
        f = feeds(1, seq, seq)
        status, body = infer_json(rt, f)
        assert status == 200, body
        close(np.array(body["outputs"][0]["data"], np.float32).reshape(1, 3), session.run(None, f)[0])
    assert rt.log_text().count('"event":"plan-evicted"') >= 2


def test_refusals_name_no_node_and_serving_goes_on(served) -> None:
    rt, session = served
    f = feeds(1, 8, 1)
    # sequence lengths that disagree: no plan takes them (the engine's checks); refused, and not planned again
    bad = {"input_ids": f["input_ids"], "attention_mask": np.ones((1, 9), np.int64)}
    for _ in range(2):
        status, body = infer_json(rt, bad)
        assert status == 400 and body == {"error": "model 'bert' cannot run inputs of these shapes"}, body
    assert rt.log_text().count('"event":"plan-failed"') == 1
    status, body = infer_json(rt, feeds(1, MAX_DIM + 1, 2))
    assert status == 400 and f"takes at most {MAX_DIM} there" in body["error"], body
    big = dict(f)
    big["input_ids"] = f["input_ids"].copy()
    big["input_ids"][0, 0] = 1 << 24 + 1
    status, body = infer_json(rt, big)
    assert status == 400 and "outside +-16777216" in body["error"], body
    status, body = infer_json(rt, f, {"input_ids": "FP32"})
    assert status == 400 and body["error"] == "input 'input_ids' takes INT64, not FP32", body
    status, body = infer_json(rt, f, {"attention_mask": "BOOL"})
    assert status == 400 and "takes INT64, not BOOL" in body["error"], body
    status, body = infer_json(rt, f)  # still serving
    assert status == 200, body
    close(np.array(body["outputs"][0]["data"], np.float32).reshape(1, 3), session.run(None, f)[0])


def test_plan_rate_bounds_new_shapes(served) -> None:
    """A client sending a new sequence length on every request makes the runtime plan on every request: new plans
    are limited to plan_rate per second after a burst of max_plans (503, Retry-After: 1); planned shapes still run."""
    import time

    rt, session = served
    args = [a for a in rt.args]
    for i, a in enumerate(args):
        if a.startswith("plan_rate="):
            args[i] = "plan_rate=1"
        elif a.startswith("max_plans="):
            args[i] = "max_plans=2"
    limited = Runtime(rt.base, args, False)
    limited.start()
    try:
        start, made, refused = time.monotonic(), 0, None
        for seq in range(2, MAX_DIM + 1):  # the load's plan (seq 8) is skipped: it takes no token
            if seq == 8:
                continue
            f = feeds(1, seq, seq)
            body = {"inputs": [{"name": k, "datatype": "INT64", "shape": list(v.shape), "data": v.flatten().tolist()}
                               for k, v in f.items()]}
            r = limited.request("POST", "/v2/models/bert/infer", json.dumps(body).encode(),
                                {"Content-Type": "application/json"})
            if r.status == 503:
                refused = (seq, r)
                break
            assert r.status == 200, r.body
            made += 1
        elapsed = time.monotonic() - start
        assert refused is not None, f"{made} new shapes in {elapsed:.1f} s were all planned"
        assert made <= 2 + elapsed * 1 + 1, f"{made} plans in {elapsed:.1f} s past a burst of 2 at 1/s"
        seq, r = refused
        assert r.headers.get("retry-after") == "1"
        assert json.loads(r.body)["error"].startswith("model 'bert' is planning new input shapes faster than")
        status, body = infer_json(limited, feeds(1, seq - 1, 0))  # planned just before: no token needed
        assert status == 200, body
        time.sleep(1.2)
        status, body = infer_json(limited, feeds(1, seq, 3))
        assert status == 200, body
        close(np.array(body["outputs"][0]["data"], np.float32).reshape(1, 3), session.run(None, feeds(1, seq, 3))[0])
        metrics = limited.request("GET", "/metrics").body.decode()
        assert re.search(r'veil_runtime_refusals_total\{reason="plan-rate"\} [1-9]', metrics), metrics
    finally:
        assert limited.stop() == 0, limited.log_text()
