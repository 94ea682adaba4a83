#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Stage Veil's part of the confidential-VM image: the tree mkosi copies on top of Debian (docs/deploy.md).

    deploy/cvm/stage.py BUILD_DIR STAGE_DIR --kbs-url URL --kbs-ca PEM --model NAME=MODEL_ID@VERSION:FILE.veil ...

Installs BUILD_DIR (cmake --install, as scripts/measure.py does) and writes into STAGE_DIR:
  usr/bin/veil-runtime, usr/bin/veil-cache                       the installed binaries (libveil linked statically)
  usr/lib/systemd/system/veil-{cache,runtime}.service            from deploy/cvm/mkosi.extra
  usr/lib/sysusers.d/veil.conf, usr/lib/tmpfiles.d/veil.conf     from deploy/cvm/mkosi.extra
  etc/systemd/system/multi-user.target.wants/veil-*.service      enabled
  etc/veil/cache.conf, etc/veil/runtime.conf                     from deploy/cvm/conf/*.conf.in
  etc/veil/kbs-ca.pem                                            the broker's CA (pinned by both daemons)
The models: NAME is what clients use (/v2/models/NAME), MODEL_ID@VERSION the broker's model and key version the
cache fetches at start, FILE the sealed file's name under /var/lib/veil/models. veil-cache admits the runtime by
the sim measurement of /usr/bin/veil-runtime (allow = MODEL_ID:MEASUREMENT), and the runtime checks the cache's
(cache_measurement): both computed here from the staged binaries, the values `make measure` prints.
Prints the staged files' SHA-256 and the two measurements. Standard library only.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import re
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
MODEL_SPEC = re.compile(r"^([A-Za-z0-9_.-]{1,64})=([A-Za-z0-9_.-]{1,128})@([0-9]{1,10}):([A-Za-z0-9_.-]{1,128}\.veil)$")
MODEL_DIR = "/var/lib/veil/models"


def load_measure():
    spec = importlib.util.spec_from_file_location("veil_measure", ROOT / "scripts" / "measure.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fill(template: Path, values: dict[str, str]) -> str:
    text = template.read_text()
    for k, v in values.items():
        text = text.replace(f"@{k}@", v)
    left = re.findall(r"@[A-Z_]+@", text)
    if left:
        raise ValueError(f"{template.name}: unfilled {', '.join(left)}")
    return text


def stage(build: Path, out: Path, kbs_url: str, kbs_ca: Path, models: list[tuple[str, str, str, str]]) -> dict:
    measure = load_measure()
    out.mkdir(parents=True, exist_ok=True)
    shutil.copytree(HERE / "mkosi.extra", out, dirs_exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="veil-stage.") as tmp:
        measure.install(build, Path(tmp))
        (out / "usr/bin").mkdir(parents=True, exist_ok=True)
        for name in ("veil-runtime", "veil-cache"):
            src = Path(tmp) / "bin" / name
            if not src.is_file():
                raise FileNotFoundError(f"{name} is not built in {build}")
            shutil.copy2(src, out / "usr/bin" / name)
            (out / "usr/bin" / name).chmod(0o755)
    runtime_m = measure.sim_measurement(out / "usr/bin/veil-runtime", None)
    cache_m = measure.sim_measurement(out / "usr/bin/veil-cache", None)
    cache_models = []
    for _, model_id, version, _ in models:
        cache_models += [f"models = {model_id}@{version}", f"allow = {model_id}:{runtime_m}"]
    runtime_models = [f"models = {name}:{MODEL_DIR}/{file}" for name, _, _, file in models]
    etc = out / "etc/veil"
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "cache.conf").write_text(fill(HERE / "conf/cache.conf.in",
                                         {"KBS_URL": kbs_url, "MODELS": "\n".join(cache_models)}))
    (etc / "runtime.conf").write_text(fill(HERE / "conf/runtime.conf.in",
                                           {"CACHE_MEASUREMENT": cache_m, "MODELS": "\n".join(runtime_models)}))
    shutil.copyfile(kbs_ca, etc / "kbs-ca.pem")
    for f in ("cache.conf", "runtime.conf", "kbs-ca.pem"):
        (etc / f).chmod(0o644)
    wants = out / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    for unit in ("veil-cache.service", "veil-runtime.service"):
        link = wants / unit
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(f"/usr/lib/systemd/system/{unit}")
    files = {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in sorted(out.rglob("*")) if p.is_file() and not p.is_symlink()}
    return {"sim_measurements": {"veil-runtime": runtime_m, "veil-cache": cache_m}, "files": files}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("build", type=Path, help="a built CMake build directory (Release, for a policy)")
    ap.add_argument("stage", type=Path, help="the directory to write (mkosi --extra-tree)")
    ap.add_argument("--kbs-url", required=True, help="https://HOST:PORT of the owner's broker")
    ap.add_argument("--kbs-ca", type=Path, required=True, help="PEM CA bundle that verifies the broker")
    ap.add_argument("--model", action="append", required=True, metavar="NAME=MODEL_ID@VERSION:FILE.veil")
    a = ap.parse_args()
    if not a.kbs_url.startswith("https://"):
        print("stage: --kbs-url must be https:// (docs/kbs.md, 'The TEE side')", file=sys.stderr)
        return 2
    models = []
    for spec in a.model:
        m = MODEL_SPEC.match(spec)
        if m is None:
            print(f"stage: --model {spec!r}: expected NAME=MODEL_ID@VERSION:FILE.veil", file=sys.stderr)
            return 2
        models.append(m.groups())
    try:
        result = stage(a.build.resolve(), a.stage, a.kbs_url, a.kbs_ca, models)
    except (OSError, ValueError) as e:
        print(f"stage: {e}", file=sys.stderr)
        return 1
    for name, value in result["sim_measurements"].items():
        print(f"sim measurement of {name}: {value}")
    for f, digest in result["files"].items():
        print(f"  {digest}  {f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
