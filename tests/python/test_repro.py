# SPDX-License-Identifier: Apache-2.0
"""Reproducible builds and `make measure` (docs/deploy.md):

    * scripts/measure.py's sim measurement of the installed veil-runtime (and veil-cache when built), with and
      without a sim_config, equals the one the C provider puts into evidence (`veil attest collect`);
    * it hashes every installed file, the installed daemons are the build tree's bytes, and the build manifest is
      CycloneDX 1.5 naming the toolchain and the Debian packages with dpkg's versions, dated by SOURCE_DATE_EPOCH,
      free of build paths, and byte-identical when generated twice;
    * no binary or library of the build carries the source or build directory (the -ffile-prefix-map flags).

The two-build comparison itself is scripts/repro.sh (`make test-repro`). Build: the directory of $VEIL_BIN.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VEIL = Path(os.environ.get("VEIL_BIN", str(ROOT / "build" / "release" / "veil")))
BUILD = VEIL.resolve().parent
MEASURE = ROOT / "scripts" / "measure.py"
EPOCH = 1700000000
RD = "ab" * 64
TIMEOUT = 120

if not (BUILD / "CMakeCache.txt").is_file() or not (BUILD / "veil-runtime").is_file():
    if os.environ.get("VEIL_BIN"):
        raise RuntimeError(f"{BUILD} is not a CMake build directory with veil and veil-runtime built")
    pytest.skip("no release build", allow_module_level=True)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def measure(tmp: Path, *args: str) -> tuple[dict, Path]:
    manifest = tmp / "veil-build.cdx.json"
    env = dict(os.environ, SOURCE_DATE_EPOCH=str(EPOCH))
    p = subprocess.run([sys.executable, str(MEASURE), str(BUILD), "--prefix", str(tmp / "prefix"), "--manifest",
                        str(manifest), "--json", *args], capture_output=True, text=True, env=env, timeout=TIMEOUT)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout), manifest


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path, Path]:
    tmp = tmp_path_factory.mktemp("measure")
    result, manifest = measure(tmp)
    return result, manifest, tmp / "prefix"


def provider_measurement(tmp: Path, exe: Path, config: Path | None) -> str:
    """The measurement lib/attest/tees/sim.c puts into sim evidence for EXE (and CONFIG)."""
    plat, out = tmp / "platform", tmp / "ev.json"
    if not plat.exists():
        p = subprocess.run([str(VEIL), "attest", "sim-init", "--dir", str(plat)], capture_output=True,
                           timeout=TIMEOUT)
        assert p.returncode == 0, p.stderr
    cmd = [str(VEIL), "attest", "collect", "--provider", "sim", "--report-data", RD, "--sim-dir", str(plat),
           "--sim-executable", str(exe), "-o", str(out)]
    if config is not None:
        cmd += ["--sim-config", str(config)]
    p = subprocess.run(cmd, capture_output=True, timeout=TIMEOUT)
    assert p.returncode == 0, p.stderr
    return json.loads(out.read_text())["measurement"]


def test_sim_measurements_equal_the_providers(measured: tuple[dict, Path, Path], tmp_path: Path) -> None:
    result, _, prefix = measured
    cfg = tmp_path / "runtime.conf"
    cfg.write_text("tee = sim\nlisten = 127.0.0.1:8080\n")
    with_cfg, _ = measure(tmp_path / "with-config", "--runtime-config", str(cfg), "--cache-config", str(cfg))
    programs = [n for n in ("veil-runtime", "veil-cache") if (prefix / "bin" / n).is_file()]
    assert "veil-runtime" in programs
    for name in ("veil-runtime", "veil-cache"):
        if name not in programs:
            assert result["sim"][name] is None and not (BUILD / name).exists()
            continue
        exe = prefix / "bin" / name
        plain, configured = result["sim"][name], with_cfg["sim"][name]
        assert plain["config"] is None and configured["config"]["sha256"] == sha256(cfg)
        assert plain["measurement"] == provider_measurement(tmp_path, exe, None)
        assert configured["measurement"] == provider_measurement(tmp_path, exe, cfg)
        assert plain["measurement"] != configured["measurement"]
        # What a policy pins for the installed program is what the build tree's program measures.
        assert sha256(exe) == sha256(BUILD / name)


def test_every_installed_file_is_hashed(measured: tuple[dict, Path, Path]) -> None:
    result, _, prefix = measured
    installed = {str(p.relative_to(prefix)): sha256(p) for p in prefix.rglob("*") if p.is_file()
                 and not p.is_symlink()}
    assert result["files"] == installed
    for expected in ("bin/veil", "bin/veil-kbs", "bin/veil-runtime", "lib/libveil.a", "lib/pkgconfig/veil.pc"):
        assert expected in installed
    assert any(f.startswith("lib/libveil.so.") for f in installed)
    trusted = result["trusted_files"]["veil-runtime"]
    assert trusted["bin/veil-runtime"] == installed["bin/veil-runtime"]
    assert not any(Path(f).name == "libc.so.6" for f in trusted)  # Gramine brings its own glibc
    assert any(Path(f).name.startswith("libcrypto.so") for f in trusted)
    assert any("MRENCLAVE" in n for n in result["not_computed"])


def dpkg_version(pkg: str) -> str:
    return subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True, text=True,
                          check=True).stdout


def test_manifest_is_cyclonedx_and_names_the_inputs(measured: tuple[dict, Path, Path]) -> None:
    result, manifest, _ = measured
    text = manifest.read_text()
    bom = json.loads(text)
    assert (bom["bomFormat"], bom["specVersion"]) == ("CycloneDX", "1.5")
    assert bom["serialNumber"].startswith("urn:uuid:")
    assert bom["metadata"]["timestamp"] == "2023-11-14T22:13:20Z"  # SOURCE_DATE_EPOCH, not the clock
    props = {p["name"]: p["value"] for p in bom["metadata"]["component"]["properties"]}
    assert len(props["veil:source:digest"]) == 64 and int(props["veil:source:files"]) > 100
    assert props["veil:toolchain:compiler"].split()[0] in ("GNU", "Clang")
    assert "-ffile-prefix-map=${SOURCE_DIR}=." in props["veil:flags:veil_obj"]
    files = {c["name"]: c for c in bom["components"] if c["type"] == "file"}
    assert {n: c["hashes"][0]["content"] for n, c in files.items()} == result["files"]
    runtime_props = {p["name"]: p["value"] for p in files["bin/veil-runtime"]["properties"]}
    assert runtime_props["veil:sim:measurement"] == result["sim"]["veil-runtime"]["measurement"]
    libs = {c["name"]: c for c in bom["components"] if c["type"] == "library"}
    if shutil.which("dpkg-query"):
        for pkg, role in (("libssl3", "runtime:linked"), ("libssl-dev", "build:headers"),
                          ("libjansson4", "runtime:linked"), ("libc6-dev", "build:headers")):
            assert libs[pkg]["version"] == dpkg_version(pkg), pkg
            assert role in {p["value"] for p in libs[pkg]["properties"]}, pkg
            assert libs[pkg]["purl"].startswith(f"pkg:deb/debian/{pkg}@")
        assert any("toolchain:compiler" in {p["value"] for p in c["properties"]} for c in libs.values())
    refs = {c["bom-ref"] for c in bom["components"]}
    for dep in bom["dependencies"]:
        assert dep["ref"] in refs and set(dep["dependsOn"]) <= refs
    assert str(BUILD) not in text and str(ROOT) not in text


def test_manifest_is_the_same_when_generated_again(measured: tuple[dict, Path, Path], tmp_path: Path) -> None:
    _, manifest, _ = measured
    _, again = measure(tmp_path / "elsewhere")
    assert again.read_bytes() == manifest.read_bytes()


def test_outputs_carry_no_build_path() -> None:
    outputs = [BUILD / "veil", BUILD / "veil-runtime", BUILD / "libveil.a", *BUILD.glob("libveil.so.*.*")]
    outputs += [p for p in (BUILD / "veil-kbs", BUILD / "veil-cache") if p.is_file()]
    for out in outputs:
        data = out.read_bytes()
        for path in {str(ROOT), str(BUILD), str(ROOT.resolve())}:
            assert path.encode() not in data, f"{out.name} embeds {path}"
