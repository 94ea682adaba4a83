"""(m) onednn_version: the same layers on Debian's oneDNN 2.6 (what the engine links) and on oneDNN 3.x.

bench/onednn_versions.c is compiled once per library (with the system's cc) and the binaries take turns: ROUNDS rounds,
each binary timing PASSES passes of the model's layers per round, so that load from elsewhere falls on both alike. One
JSON line per model, type and batch: p50 and p99 of a pass (the layers one after the other) on each library, the ratio
candidate / reference (below 1: the candidate is faster), the GFLOP of a pass and the kernels each library chose.

Libraries measured:
- reference: Debian's libdnnl-dev (/usr/include, /usr/lib), the one the engine is built against;
- oneDNN 3.x from PyPI's onednn-cpu-gomp + onednn-devel-cpu-gomp (python/requirements-dev.txt puts them in the venv):
  the newest CPU-only, OpenMP build on PyPI (3.2.0, 2023);
- any further prefix in VEIL_BENCH_ONEDNN=PREFIX[:PREFIX...] (its include/ and lib/), for instance a venv holding
  PyPI's `onednn` 2026.x, which is built for SYCL only: its CPU engine needs the DPC++ and OpenCL CPU runtimes
  (dpcpp-cpp-rt, intel-opencl-rt, ~2 GB installed) and OCL_ICD_FILENAMES=PREFIX/lib/libintelocl.so, which this
  script sets when that file exists.

A type the CPU has no kernels for (bf16 without AVX512-BF16 or AMX, say) is reported as unavailable on that library.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
CASES = [  # model, type, batch, passes per round
    ("resnet50", "f32", 1, 10), ("resnet50", "f32", 8, 2),
    ("resnet50", "bf16", 1, 10), ("resnet50", "bf16", 8, 2),
    ("bert", "f32", 1, 3), ("bert", "f32", 8, 1),
    ("bert", "bf16", 1, 3), ("bert", "bf16", 8, 1),
    ("bert_1x1", "f32", 1, 3), ("bert_1x1", "f32", 8, 1),
]
ROUNDS = int(os.environ.get("VEIL_BENCH_ONEDNN_ROUNDS", "6"))


def build(work: Path, name: str, prefix: Path | None) -> tuple[Path, dict]:
    out = work / f"onednn_versions_{name}"
    cmd = ["cc", "-O2", "-std=c11", "-o", str(out), str(HERE / "onednn_versions.c")]
    env = dict(os.environ)
    if prefix is not None:
        cmd[1:1] = [f"-I{prefix / 'include'}", f"-L{prefix / 'lib'}", f"-Wl,-rpath,{prefix / 'lib'}"]
        ocl = prefix / "lib" / "libintelocl.so"
        if ocl.exists():  # a SYCL build: its runtime's own libraries are found through the library path only
            env["OCL_ICD_FILENAMES"] = str(ocl)
            env["LD_LIBRARY_PATH"] = f"{prefix / 'lib'}:{env.get('LD_LIBRARY_PATH', '')}"
    subprocess.run(cmd + ["-ldnnl"], check=True)
    env["OMP_NUM_THREADS"] = env.get("OMP_NUM_THREADS", "2")
    env.pop("ONEDNN_VERBOSE", None), env.pop("DNNL_VERBOSE", None)
    return out, env


WHY: dict[tuple[str, str, str], str] = {}  # (library, model, type) -> why it did not run


def run(name: str, binary: Path, env: dict, model: str, dtype: str, batch: int, passes: int) -> dict | None:
    proc = subprocess.run([str(binary), model, dtype, str(batch), str(passes)], capture_output=True, text=True,
                          env=env)
    if proc.returncode != 0:
        errors = [line for line in proc.stderr.splitlines() if line.startswith("onednn_versions:")]
        WHY[(name, model, dtype)] = errors[-1] if errors else proc.stderr[-300:]
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def p99(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(0.99 * (len(xs) - 1))))]


def libraries(venv: Path) -> list[tuple[str, Path | None]]:
    libs: list[tuple[str, Path | None]] = [("debian", None)]
    if (venv / "include" / "dnnl.h").exists() and (venv / "lib" / "libdnnl.so.3").exists():
        libs.append(("pypi-cpu-gomp", venv))
    for i, extra in enumerate(p for p in os.environ.get("VEIL_BENCH_ONEDNN", "").split(":") if p):
        libs.append((f"extra{i}", Path(extra)))
    return libs


def main(work: Path, emit) -> None:
    work.mkdir(parents=True, exist_ok=True)
    venv = Path(os.environ.get("VEIL_VENV", Path.home() / ".cache" / "veil" / "venv"))
    libs = [(name, *build(work, name, prefix)) for name, prefix in libraries(venv)]
    if len(libs) < 2:
        print("onednn_bench: no oneDNN 3.x found (pip install onednn-cpu-gomp onednn-devel-cpu-gomp into the venv)",
              file=sys.stderr)
        return
    for model, dtype, batch, passes in CASES:
        times: dict[str, list[float]] = {name: [] for name, _, _ in libs}
        info: dict[str, dict | None] = {}
        for _ in range(ROUNDS):
            for name, binary, env in libs:
                if info.get(name, {}) is None:
                    continue
                rec = run(name, binary, env, model, dtype, batch, passes)
                info[name] = rec
                if rec is not None:
                    times[name] += rec["ms"]
        ref_name = libs[0][0]
        for name, _, _ in libs[1:]:
            ref, cand = info[ref_name], info[name]
            line = {"bench": "onednn_version", "model": model, "dtype": dtype, "batch": batch, "threads":
                    int(libs[0][2]["OMP_NUM_THREADS"]), "rounds": ROUNDS, "passes_per_round": passes}
            if ref is None or cand is None:
                line.update({"reference": ref and f"oneDNN {ref['dnnl']}", "candidate": cand and f"oneDNN "
                             f"{cand['dnnl']}", "unavailable": [n for n, r in ((ref_name, ref), (name, cand))
                                                                if r is None],
                             "why": {n: WHY.get((n, model, dtype)) for n in (ref_name, name)
                                     if WHY.get((n, model, dtype))}})
                emit(line)
                continue
            r50, c50 = statistics.median(times[ref_name]), statistics.median(times[name])
            line.update({"reference": f"oneDNN {ref['dnnl']} ({ref_name})", "candidate": f"oneDNN {cand['dnnl']} "
                         f"({name})", "gflop": ref["gflop"], "layers": ref["layers"], "p50_ms_reference": round(r50, 3),
                         "p50_ms": round(c50, 3), "p99_ms_reference": round(p99(times[ref_name]), 3),
                         "p99_ms": round(p99(times[name]), 3), "ratio": round(c50 / r50, 3),
                         "ratio_p99": round(p99(times[name]) / p99(times[ref_name]), 3),
                         "kernels_reference": ref["kernels"], "kernels": cand["kernels"]})
            emit(line)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parent / "build" / "bench",
         lambda r: print(json.dumps(r), flush=True))
