"""`make bench`: one JSON line per measurement, each a ratio against a reference measured in the same run.

(a) decrypt_throughput: the sealed format's chunk engine on ~100 MB, all cores, vs single-core memcpy of the
    same bytes (both on pre-faulted memory; bench/bench_decrypt.c). Goal >= 0.75.
(b) open_vs_torch_load: veil_model_open of a sealed ResNet-50 (read + unwrap + authenticate + decrypt into the
    final aligned buffers + tensor table; bench/bench_open.c, a C process) vs torch.load of the same model's
    state_dict from a file, materialized (no mmap). Warm page cache for both; medians. Goal <= 1.00.
(c) open_peak_rss: peak RSS growth of (b)'s process over its RSS before the first open, vs the plaintext size
    (graph + tensors). Goal <= 1.15.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build" / "release"
WORK = ROOT / "build" / "bench"


def emit(record: dict) -> None:
    print(json.dumps(record), flush=True)


def run_json(cmd: list[str]) -> dict:
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def bench_decrypt() -> None:
    threads = os.cpu_count() or 1
    for t in sorted({1, threads}):
        rec = run_json([str(BUILD / "bench_decrypt"), "100", str(t), "10"])
        rec["cores"] = threads
        emit(rec)


def prepare_resnet50(key_path: Path) -> tuple[Path, Path]:
    import torch
    import torchvision

    import veil
    import veil.torch

    sealed, state = WORK / "resnet50.veil", WORK / "resnet50.pt"
    if not sealed.exists() or not state.exists():
        torch.manual_seed(0)
        model = torchvision.models.resnet50(weights=None).eval()
        veil.torch.seal(model, (torch.randn(1, 3, 224, 224),), sealed, model_id="bench-resnet50",
                        key=key_path.read_bytes())
        torch.save(model.state_dict(), state)
    return sealed, state


def time_torch_load(state: Path, repeats: int) -> tuple[float, int]:
    import torch

    times, size = [], 0
    for _ in range(repeats + 2):
        t0 = time.perf_counter()
        sd = torch.load(state, weights_only=True, mmap=False)
        times.append(time.perf_counter() - t0)
        size = sum(t.numel() * t.element_size() for t in sd.values())
        del sd
    return statistics.median(times[2:]), size


def bench_open() -> None:
    import veil

    WORK.mkdir(parents=True, exist_ok=True)
    key_path = WORK / "bench.key"
    if not key_path.exists():
        key_path.write_bytes(veil.keygen())
        key_path.chmod(0o600)
    sealed, state = prepare_resnet50(key_path)
    repeats = 15
    subprocess.run([str(BUILD / "bench_open"), str(sealed), str(key_path), "2"], check=True, capture_output=True)
    veil_rec = run_json([str(BUILD / "bench_open"), str(sealed), str(key_path), str(repeats)])
    torch_s, torch_bytes = time_torch_load(state, repeats)
    common = {"model": "torchvision resnet50 (random weights)", "sealed_file": str(sealed.relative_to(ROOT)),
              "repeats": repeats, "cores": os.cpu_count()}
    emit({"bench": "open_vs_torch_load", **common, "veil_open_s": veil_rec["median_s"],
          "veil_plaintext_bytes": veil_rec["plaintext_bytes"], "torch_load_s": torch_s,
          "torch_state_dict_bytes": torch_bytes, "ratio": veil_rec["median_s"] / torch_s, "goal": 1.00})
    grown = (veil_rec["peak_rss_kib"] - veil_rec["base_rss_kib"]) * 1024
    emit({"bench": "open_peak_rss", **common, "peak_rss_bytes": veil_rec["peak_rss_kib"] * 1024,
          "base_rss_bytes": veil_rec["base_rss_kib"] * 1024, "rss_growth_bytes": grown,
          "plaintext_bytes": veil_rec["plaintext_bytes"], "ratio": grown / veil_rec["plaintext_bytes"],
          "goal": 1.15})


def main() -> int:
    bench_decrypt()
    bench_open()
    return 0


if __name__ == "__main__":
    sys.exit(main())
