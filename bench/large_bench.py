"""(l) large_model: a model past protobuf's 2 GiB limit (scripts/wide_model.py: four wide MatMul/Gemm layers,
2.72 GB of float32 weights as ONNX external data), each step a fresh process, wall time and peak RSS (scripts/peak_rss.py):

- large_seal: `veil seal` (read the external data, encrypt, write, fsync) vs copying the same bytes into a new
  file with fsync (cp's work: the I/O floor of any sealer). Ratio of times; throughput in GB/s.
- large_run: `veil run` of the sealed model (open + authenticate + decrypt + plan + one batch-1 inference) vs
  onnxruntime loading the plain model with its external data and running the same input (no decryption: a floor).
  Ratios of times and of peak RSS; and peak RSS against the plaintext size (ratio_plaintext, goal <= 1.15: the
  engine must not hold two plaintext copies).
- large_unseal: `veil unseal` (writes external data again) vs the same copy.

Warm page cache for all (each input is read once before). VEIL_LARGE_MODEL_WIDTH sets the width (default 16384).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import peak_rss  # noqa: E402
import wide_model  # noqa: E402

ORT_RUN = """
import sys, time, numpy as np, onnxruntime as ort
opts = ort.SessionOptions(); opts.intra_op_num_threads = 2
s = ort.InferenceSession(sys.argv[1], opts, providers=["CPUExecutionProvider"])
np.save(sys.argv[3], s.run(None, {"x": np.load(sys.argv[2])})[0])
"""


def measured(cmd: list[str]) -> tuple[float, int]:
    """Wall time and the process's own peak RSS (bytes), through scripts/peak_rss.py (wait4 on a direct child
    would report this process's peak instead whenever that is larger: Linux keeps the peak across vfork + exec)."""
    with tempfile.TemporaryFile("w+") as err:
        elapsed, peak, code = peak_rss.measured(cmd, stdout=subprocess.DEVNULL, stderr=err)
        err.seek(0)
        text = err.read()
    if code != 0:
        raise SystemExit(f"{cmd[0]} failed: {text}")
    return elapsed, peak


def copy_floor(src: Path, dst: Path) -> float:
    t0 = time.perf_counter()
    with open(src, "rb") as f, open(dst, "wb") as g:
        shutil.copyfileobj(f, g, 1 << 24)
        g.flush()
        os.fsync(g.fileno())
    elapsed = time.perf_counter() - t0
    dst.unlink()
    return elapsed


def warm(path: Path) -> None:
    with open(path, "rb") as f:
        while f.read(1 << 26):
            pass


def main(build: Path, work: Path, emit) -> None:
    width = int(os.environ.get("VEIL_LARGE_MODEL_WIDTH", "16384"))
    d = work / "large"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    try:
        run(build, d, width, emit)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def run(build: Path, d: Path, width: int, emit) -> None:
    veil = str(build / "veil")
    plain = wide_model.build(d, width)
    data, sealed, key = d / wide_model.DATA, d / "m.veil", d / "k.key"
    subprocess.run([veil, "keygen", "-o", str(key)], check=True)
    common = {"model": f"scripts/wide_model.py width {width}", "plaintext_bytes": plain, "threads": 2}
    warm(data)
    copy_s = copy_floor(data, d / "copy")
    seal_s, seal_rss = measured([veil, "seal", str(d / "model.onnx"), "-o", str(sealed), "--key", str(key),
                                 "--model-id", "wide", "--threads", "2"])
    emit({"bench": "large_seal", **common, "veil_seal_s": seal_s, "copy_fsync_s": copy_s,
          "veil_seal_gb_s": plain / seal_s / 1e9, "peak_rss_bytes": seal_rss, "ratio_plaintext": seal_rss / plain,
          "ratio": seal_s / copy_s})
    warm(sealed)
    run_s, run_rss = measured([veil, "run", str(sealed), "-k", str(key), "-i", str(d / "x.npy"), "-o",
                               str(d / "y.npy"), "--threads", "2"])
    ort_s, ort_rss = measured([sys.executable, "-c", ORT_RUN, str(d / "model.onnx"), str(d / "x.npy"),
                               str(d / "ort.npy")])
    import numpy as np

    ref = np.load(d / "ref.npy")
    err = float(abs(np.load(d / "y.npy") - ref).max() / abs(ref).max())
    emit({"bench": "large_run", **common, "veil_run_s": run_s, "onnxruntime_s": ort_s,
          "veil_open_gb_s": plain / run_s / 1e9, "veil_peak_rss_bytes": run_rss, "onnxruntime_peak_rss_bytes": ort_rss,
          "max_rel_error_vs_numpy": err, "ratio": run_s / ort_s, "ratio_rss": run_rss / ort_rss,
          "ratio_plaintext": run_rss / plain, "goal_plaintext": 1.15})
    unseal_s, unseal_rss = measured([veil, "unseal", str(sealed), "-k", str(key), "-o", str(d / "back.onnx"),
                                     "--threads", "2"])
    emit({"bench": "large_unseal", **common, "veil_unseal_s": unseal_s, "copy_fsync_s": copy_s,
          "veil_unseal_gb_s": plain / unseal_s / 1e9, "peak_rss_bytes": unseal_rss,
          "ratio_plaintext": unseal_rss / plain, "ratio": unseal_s / copy_s})


if __name__ == "__main__":
    main(ROOT / "build" / "release", ROOT / "build" / "bench", lambda r: print(json.dumps(r), flush=True))
