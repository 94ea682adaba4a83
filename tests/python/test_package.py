# SPDX-License-Identifier: Apache-2.0
"""The Python package installs like any other: `pip install ./python` in a fresh virtual environment builds libveil and
the programs with the project's CMake (scikit-build-core) and ships them in the wheel. Then, from a directory outside
the source tree and with no VEIL_LIBRARY or PYTHONPATH, `import veil` finds its own libveil, and the installed
`veil`, `veil-kbs`, `veil-cache` and `veil-runtime` programs run: a model is sealed, inspected and run, and the
answer is the model's.

This builds the whole library once (about half a minute on 2 cores); pip fetches numpy and scikit-build-core from the
package index (or its cache) into the new environment.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 900.0


def tiny_model(d: Path) -> np.ndarray:
    """y = x @ w, and the expected y for x = ones."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.arange(12, dtype=np.float32).reshape(4, 3)
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "tiny",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
                              [numpy_helper.from_array(w, "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(d / "model.onnx"))
    x = np.ones((1, 4), np.float32)
    np.save(d / "x.npy", x)
    return x @ w


def clean_env(venv: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VEIL_") and k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}:/usr/bin:/bin"
    env.setdefault("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 2))
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("pkg") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=TIMEOUT)
    p = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", str(ROOT / "python")],
                       capture_output=True, text=True, timeout=TIMEOUT, env=clean_env(venv), cwd=venv.parent)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return venv


def test_the_package_ships_libveil_and_the_programs(installed: Path) -> None:
    site = next((installed / "lib").glob("python3*/site-packages/veil"))
    assert (site / "libveil.so.0").is_file()
    for program in ("veil", "veil-kbs", "veil-cache", "veil-runtime"):
        p = subprocess.run([str(installed / "bin" / program), "--version"], capture_output=True, text=True,
                           timeout=60, env=clean_env(installed))
        assert p.returncode == 0 and p.stdout.startswith(program + " "), (program, p.stdout, p.stderr)


def test_seal_and_run_outside_the_source_tree(installed: Path, tmp_path: Path) -> None:
    work = tmp_path / "elsewhere"
    work.mkdir()
    want = tiny_model(work)
    script = """
import numpy as np, veil
assert veil.library_path().endswith("site-packages/veil/libveil.so.0"), veil.library_path()
key = veil.keygen()
veil.seal_onnx(open("model.onnx", "rb").read(), "m.veil", model_id="tiny", key=key)
assert veil.inspect("m.veil").model_id == "tiny"
with veil.open_model("m.veil", key) as m:
    y = veil.Engine.from_model(m).run(np.ones((1, 4), np.float32))
print(" ".join(repr(float(v)) for v in np.asarray(y).ravel()))
"""
    env = clean_env(installed)
    p = subprocess.run([str(installed / "bin" / "python"), "-c", script], capture_output=True, text=True,
                       timeout=120, cwd=work, env=env)
    assert p.returncode == 0, p.stderr
    np.testing.assert_allclose([float(v) for v in p.stdout.split()], want.ravel(), rtol=1e-6)
    cli = "veil keygen -o k && veil seal model.onnx -o c.veil --model-id tiny --key k && " \
          "veil run c.veil --key k -i x.npy -o y.npy"
    p = subprocess.run(["bash", "-c", cli], capture_output=True, text=True, timeout=120, cwd=work, env=env)
    assert p.returncode == 0, p.stderr
    np.testing.assert_allclose(np.load(work / "y.npy"), want, rtol=1e-6)
