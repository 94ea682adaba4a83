"""The engine's benchmarks, driven by bench/run.py (`make bench`); each measurement runs in a fresh process so
the three OpenMP/thread pools (libgomp under oneDNN, PyTorch's, onnxruntime's) never compete for the cores.

    engine_bench.py prepare MODEL                 export MODEL to build/bench/MODEL.onnx (random, seeded weights)
    engine_bench.py latency FRAMEWORK MODEL BATCH RUNS WARMUP THREADS
                                                  one JSON line: load_s, p50_s, max_s, mean_s, and p99_s when
                                                  RUNS >= 200 (in-process timing)
    engine_bench.py serve FRAMEWORK MODEL BATCH THREADS
                                                  loads, prints {"load_s": ...} (model creation only: imports
                                                  and the file read are not timed), then for each line "N" read from
                                                  stdin runs N times and prints {"times": [...]}; "W N" warms up
                                                  (bench/run.py alternates the three frameworks' servers in rounds
                                                  so that load from other processes hits them alike)
    engine_bench.py torch_rss MODEL_STATE THREADS  peak RSS (VmHWM) of a process running ResNet-50 in PyTorch, and
                                                  its VmRSS and VmHWM after the imports, before the model
    engine_bench.py model_rss FRAMEWORK MODEL THREADS [SEALED KEY]
                                                  the same for MODEL (bert_base: batch 1, sequence 128): veil opens
                                                  the sealed file with the key and plans it (only veil and numpy
                                                  imported); torch builds the module (its weights made in place)

FRAMEWORK: veil (veil.Engine over ctypes: the timed call is veil_engine_run plus the ctypes call and the
allocation of the output array), torch (eager, torch.inference_mode, torch.set_num_threads), ort
(onnxruntime, intra_op_num_threads, inter_op_num_threads 1, sequential execution).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "build" / "bench"
MODELS = ("resnet50", "resnet18", "mobilenet_v2", "efficientnet_lite0", "vit_b_16", "bert_base", "gpt2")
SEQ = {"bert_base": 128, "gpt2": 64}  # the sequence lengths issue 12 names


class _Logits:  # noqa: D101 - wraps transformers' models so that they take and give plain tensors
    @staticmethod
    def wrap(inner, names: list[str]):  # noqa: ANN001, ANN205
        import torch

        class Logits(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.m = inner

            def forward(self, *args):  # noqa: ANN002, ANN202
                return self.m(**dict(zip(names, args))).logits

        return Logits().eval()


def feeds(name: str, batch: int) -> dict[str, np.ndarray]:
    """The model's inputs at this batch, seeded: an image batch, or token ids (and a mask) of SEQ[name] tokens."""
    gen = np.random.default_rng(0)
    if name == "bert_base":
        return {"input_ids": gen.integers(0, 30522, (batch, SEQ[name])).astype(np.int64),
                "attention_mask": np.ones((batch, SEQ[name]), np.int64)}
    if name == "gpt2":
        return {"input_ids": gen.integers(0, 50257, (batch, SEQ[name])).astype(np.int64)}
    return {"input": gen.standard_normal((batch, 3, 224, 224)).astype(np.float32)}


def module(name: str):  # noqa: ANN201 - torch is imported lazily
    import torch
    import torchvision

    torch.manual_seed(0)
    if name == "efficientnet_lite0":
        from efficientnet_lite_pytorch import EfficientNet

        return EfficientNet.from_name("efficientnet-lite0").eval()
    if name == "bert_base":
        import transformers

        return _Logits.wrap(transformers.BertForSequenceClassification(transformers.BertConfig(num_labels=3)).eval(),
                            ["input_ids", "attention_mask"])
    if name == "gpt2":
        import transformers

        cfg = transformers.GPT2Config(bos_token_id=0, eos_token_id=0)
        return _Logits.wrap(transformers.GPT2LMHeadModel(cfg).eval(), ["input_ids"])
    return getattr(torchvision.models, name)(weights=None).eval()


def onnx_path(name: str) -> Path:
    return WORK / f"{name}.onnx"


def prepare(name: str) -> None:
    import warnings

    import torch

    from veil.torch import export_onnx

    path = onnx_path(name)
    if path.exists():
        return
    WORK.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if name in SEQ:  # a dynamic batch, the sequence fixed at SEQ[name]
            import io

            f = feeds(name, 1)
            axes = {k: {0: "batch"} for k in f} | {"output": {0: "batch"}}
            buf = io.BytesIO()
            torch.onnx.export(module(name), tuple(torch.from_numpy(v) for v in f.values()), buf, dynamo=False,
                              opset_version=17, input_names=list(f), output_names=["output"], dynamic_axes=axes)
            data = buf.getvalue()
        else:
            data = export_onnx(module(name), torch.randn(1, 3, 224, 224))
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.rename(path)


def proc_status_kib(field: str) -> int:
    """One "Field: N kB" line of /proc/self/status (VmHWM: the peak resident set of this process image, which
    ru_maxrss would inherit across exec; VmRSS: resident now); -1 when absent."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return -1


def vm_hwm_kib() -> int:
    return proc_status_kib("VmHWM")


def runner(framework: str, name: str, batch: int, threads: int):  # noqa: ANN201
    """(run, load_s): imports and the file read happen first and are not timed; load_s is the creation of the
    runnable model alone: veil.Engine.from_onnx on the ONNX bytes in memory (parse, fold, fuse, create primitives,
    reorder weights), onnxruntime's InferenceSession on the same bytes, PyTorch's module construction."""
    data = onnx_path(name).read_bytes()
    if framework == "veil":
        import veil

        t0 = time.perf_counter()
        engine = veil.Engine.from_onnx(data, threads=threads, batch=batch)
        return (lambda x: engine.run(feeds=x)[0]), time.perf_counter() - t0
    if framework == "ort":
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        t0 = time.perf_counter()
        session = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
        return (lambda x: session.run(None, x)[0]), time.perf_counter() - t0
    if framework == "torch":
        import torch
        import torchvision  # noqa: F401 - imported before the clock starts

        if name == "efficientnet_lite0":
            import efficientnet_lite_pytorch  # noqa: F401
        torch.set_num_threads(threads)
        t0 = time.perf_counter()
        model = module(name)
        load = time.perf_counter() - t0

        def run(x: dict[str, np.ndarray]) -> np.ndarray:
            with torch.inference_mode():
                return model(*(torch.from_numpy(v) for v in x.values())).numpy()

        return run, load
    raise SystemExit(f"unknown framework {framework}")


def percentile(times: list[float], q: float) -> float:
    s = sorted(times)
    return s[min(len(s) - 1, max(0, int(np.ceil(q * len(s))) - 1))]


def latency(framework: str, name: str, batch: int, runs: int, warmup: int, threads: int) -> dict:
    """p99 only from 200 runs or more; below that the slowest run is reported as max_s (p99 would be the max)."""
    x = feeds(name, batch)
    run, load = runner(framework, name, batch, threads)
    for _ in range(warmup):
        run(x)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        run(x)
        times.append(time.perf_counter() - t)
    times.sort()
    out = {"load_s": load, "p50_s": statistics.median(times), "mean_s": statistics.fmean(times), "min_s": times[0],
           "max_s": times[-1], "runs": runs, "warmup": warmup, "peak_rss_kib": vm_hwm_kib()}
    if runs >= 200:
        out["p99_s"] = percentile(times, 0.99)
    return out


def serve(framework: str, name: str, batch: int, threads: int) -> None:
    x = feeds(name, batch)
    run, load = runner(framework, name, batch, threads)
    print(json.dumps({"load_s": load}), flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words:
            break
        times = []
        for _ in range(int(words[-1])):
            t = time.perf_counter()
            run(x)
            times.append(time.perf_counter() - t)
        time.sleep(0.25)  # let this process's worker threads stop spinning before another framework is timed
        print(json.dumps({"times": [] if words[0] == "W" else times}), flush=True)


def torch_rss(state: Path, threads: int) -> dict:
    import torch
    import torchvision

    torch.set_num_threads(threads)
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32))
    base_rss, base_hwm = proc_status_kib("VmRSS"), vm_hwm_kib()  # after the imports, before the model
    model = torchvision.models.resnet50(weights=None).eval()
    model.load_state_dict(torch.load(state, weights_only=True, mmap=False))
    with torch.inference_mode():
        for _ in range(3):
            model(x)
    return {"peak_rss_kib": vm_hwm_kib(), "base_rss_kib": base_rss, "base_hwm_kib": base_hwm}


def model_rss(framework: str, name: str, threads: int, sealed: str = "", key: str = "") -> dict:
    x = feeds(name, 1)
    if framework == "veil":
        import veil

        base_rss, base_hwm = proc_status_kib("VmRSS"), vm_hwm_kib()
        with veil.Engine.from_sealed(sealed, key=Path(key).read_bytes(), threads=threads) as e:
            for _ in range(3):
                e.run(feeds=x)
            peak = vm_hwm_kib()
    else:
        import torch
        import transformers  # noqa: F401 - imported before the baseline, like veil above

        torch.set_num_threads(threads)
        args = [torch.from_numpy(v) for v in x.values()]
        base_rss, base_hwm = proc_status_kib("VmRSS"), vm_hwm_kib()
        net = module(name)
        with torch.inference_mode():
            for _ in range(3):
                net(*args)
        peak = vm_hwm_kib()
    return {"peak_rss_kib": peak, "base_rss_kib": base_rss, "base_hwm_kib": base_hwm}


def main(argv: list[str]) -> int:
    if argv[1] == "prepare":
        prepare(argv[2])
        return 0
    if argv[1] == "latency":
        framework, name = argv[2], argv[3]
        batch, runs, warmup, threads = map(int, argv[4:8])
        print(json.dumps(latency(framework, name, batch, runs, warmup, threads)), flush=True)
        return 0
    if argv[1] == "serve":
        serve(argv[2], argv[3], int(argv[4]), int(argv[5]))
        return 0
    if argv[1] == "torch_rss":
        print(json.dumps(torch_rss(Path(argv[2]), int(argv[3]))), flush=True)
        return 0
    if argv[1] == "model_rss":
        print(json.dumps(model_rss(argv[2], argv[3], int(argv[4]), *argv[5:7])), flush=True)
        return 0
    raise SystemExit(__doc__)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
