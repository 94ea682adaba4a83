"""A torchvision classifier past protobuf's 2 GiB limit (default regnet_y_128gf, 2.58 GB of float32 convolution
weights, random weights) through the owner's path: exported with ONNX external data, `veil seal`, `veil run` of the
sealed file. Prints one JSON line: seal and run time, their peak RSS (scripts/peak_rss.py) and the run's against the
weights' bytes (the consuming load holds them about once), and the output against PyTorch's.

    VEIL_BIN=build/release/veil PYTHONPATH=python python bench/large_cnn.py [MODEL] [WORKDIR]

Not part of `make bench` (about 2 minutes and 8 GB of disk for regnet_y_128gf on this 2-core machine)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import peak_rss  # noqa: E402


def main(name: str, work: Path) -> dict:
    import torch
    import torchvision

    work.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None).eval()
    weights = sum(p.numel() * p.element_size() for p in model.state_dict().values())
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224), dtype=np.float32)
    with torch.inference_mode():
        ref = model(torch.from_numpy(x)).numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.from_numpy(x),), str(work / "model.onnx"), dynamo=False, opset_version=17,
                          input_names=["input"], output_names=["logits"])
    del model
    np.save(work / "x.npy", x)
    veil = os.environ.get("VEIL_BIN", "veil")
    # the workdir is scratch, sealed again on every run: its key may be replaced
    subprocess.run([veil, "keygen", "--force", "-o", str(work / "k.key")], check=True)
    seal_s, seal_rss, code = peak_rss.measured([veil, "seal", str(work / "model.onnx"), "-o", str(work / "m.veil"),
                                                "--key", str(work / "k.key"), "--model-id", name])
    if code != 0:
        raise SystemExit("veil seal failed")
    run_s, run_rss, code = peak_rss.measured([veil, "run", str(work / "m.veil"), "-k", str(work / "k.key"), "-i",
                                              str(work / "x.npy"), "-o", str(work / "y.npy")])
    if code != 0:
        raise SystemExit("veil run failed")
    y = np.load(work / "y.npy")
    return {"model": name, "input": "one [1, 3, 224, 224] float32 batch, numpy seed 0; random weights, torch seed 0",
            "threads": "veil's default (every core)", "reference": "the weights' bytes (a size, not a timing); "
            "PyTorch's output for the same input, for the error only",
            "weights_bytes": weights, "seal_s": round(seal_s, 1), "seal_peak_rss_bytes": seal_rss,
            "run_s": round(run_s, 1), "run_peak_rss_bytes": run_rss, "run_peak_vs_weights": round(run_rss / weights, 3),
            "max_rel_err_vs_torch": float(np.abs(y - ref).max() / np.abs(ref).max()),
            "top1_same": bool((y.argmax(-1) == ref.argmax(-1)).all())}


if __name__ == "__main__":
    model_name = sys.argv[1] if len(sys.argv) > 1 else "regnet_y_128gf"
    workdir = Path(sys.argv[2]) if len(sys.argv) > 2 else Path("build/bench/large_cnn")
    print(json.dumps(main(model_name, workdir)))
