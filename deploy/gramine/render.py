#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Render a Veil Gramine manifest template for this build, the way gramine-manifest does, without Gramine.

    deploy/gramine/render.py TEMPLATE --prefix DIR --conf-dir DIR [--model-dir DIR] [--arch-libdir DIR]
                             [--log-level error] [--enclave-size 4G] [--max-threads 64] [--gramine-libdir DIR]
                             [-o MANIFEST] [--trusted-json FILE]

Gramine is packaged neither in Debian 12 nor on PyPI, so this is the offline stand-in used by the tests and by a
reviewer who wants the trusted-file list of a build: the same Jinja2 template, with the globals gramine-manifest
provides (`gramine.libos`, `gramine.runtimedir()`, `ldd()`, `env`), StrictUndefined, then every trusted file
expanded (directories recursively) and hashed with SHA-256 as gramine-manifest's expand_all_trusted_files does.
Files of Gramine itself (libsysdb.so, the runtime glibc) are hashed when Gramine is installed and otherwise
reported as "not installed here". A trusted file that does not exist is an error.

The real pipeline stays gramine-manifest + gramine-sgx-sign (docs/deploy.md): only they produce the
.manifest.sgx and MRENCLAVE. `--prefix` is an install tree (cmake --install BUILD --prefix DIR, or the one
scripts/measure.py --prefix keeps).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import jinja2

DEFAULT_GRAMINE_LIBDIR = Path("/usr/lib/x86_64-linux-gnu/gramine")  # Gramine's Debian/Ubuntu packages


def ldd(*binaries: object) -> list[str]:
    """Absolute paths of the libraries the dynamic loader maps for the binaries (gramine-manifest's ldd())."""
    out = subprocess.run(["ldd", *map(os.fspath, binaries)], check=True, capture_output=True, text=True).stdout
    found = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1] == "=>" and parts[2].startswith("/"):
            found.add(parts[2])
        elif len(parts) >= 2 and parts[0].startswith("/") and parts[1].startswith("(0x"):
            found.add(parts[0])
    return sorted(found)


class Runtimedir:
    """`gramine.runtimedir()` and `{{ gramine.runtimedir() }}`: Gramine's glibc build."""

    def __init__(self, libdir: Path) -> None:
        self.libdir = libdir

    def __call__(self, libc: str = "glibc") -> Path:
        return self.libdir / "runtime" / libc

    def __str__(self) -> str:
        return str(self())


def gramine_libdir(arg: Path | None) -> Path:
    if arg is not None:
        return arg
    try:  # an installed Gramine knows its own package directory
        from graminelibos import _CONFIG_PKGLIBDIR  # type: ignore[import-not-found]
        return Path(_CONFIG_PKGLIBDIR)
    except ImportError:
        return DEFAULT_GRAMINE_LIBDIR


def render(template: Path, variables: dict[str, str], libdir: Path) -> str:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.globals["gramine"] = {"libos": libdir / "libsysdb.so", "pkglibdir": libdir, "runtimedir": Runtimedir(libdir)}
    env.globals["ldd"] = ldd
    env.globals["env"] = os.environ
    return env.from_string(template.read_text()).render(**variables)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def expand(uri: str) -> list[Path]:
    """The files one sgx.trusted_files entry stands for ('file:DIR/' recursively, as Gramine does)."""
    if not uri.startswith("file:"):
        raise ValueError(f"unsupported trusted file URI {uri!r}")
    path = Path(uri[len("file:"):])
    if uri.endswith("/"):
        if not path.is_dir():
            raise FileNotFoundError(f"trusted directory {uri} does not exist")
        return sorted(p for p in path.rglob("*") if p.is_file() and os.access(p, os.R_OK))
    if not path.is_file():
        raise FileNotFoundError(f"trusted file {uri} does not exist")
    return [path]


def trusted_hashes(manifest: dict, libdir: Path) -> dict[str, str | None]:
    """URI -> SHA-256 of every trusted file; None for Gramine's own files when Gramine is not installed."""
    out: dict[str, str | None] = {}
    for entry in manifest.get("sgx", {}).get("trusted_files", []):
        uri = entry if isinstance(entry, str) else entry["uri"]
        path = Path(uri[len("file:"):]) if uri.startswith("file:") else None
        if path is not None and path.is_relative_to(libdir) and not libdir.is_dir():
            out[uri] = None
            continue
        for f in expand(uri):
            out[f"file:{f}"] = sha256(f)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("template", type=Path)
    ap.add_argument("--prefix", type=Path, required=True, help="install tree holding bin/veil-runtime, bin/veil-cache")
    ap.add_argument("--conf-dir", type=Path, required=True, help="the measured configuration directory")
    ap.add_argument("--model-dir", type=Path, default=Path("/var/lib/veil/models"), help="sealed models (host)")
    ap.add_argument("--arch-libdir", default="/lib/x86_64-linux-gnu")
    ap.add_argument("--log-level", default="error")
    ap.add_argument("--enclave-size", default=None, help="default: 4G (veil-runtime), 512M (veil-cache)")
    ap.add_argument("--max-threads", type=int, default=None, help="default: 64 (veil-runtime), 32 (veil-cache)")
    ap.add_argument("--gramine-libdir", type=Path, default=None, help=f"default: {DEFAULT_GRAMINE_LIBDIR}")
    ap.add_argument("-o", "--output", type=Path, help="write the rendered manifest here (default: stdout)")
    ap.add_argument("--trusted-json", type=Path, help="write {uri: sha256} of every expanded trusted file here")
    a = ap.parse_args()
    cache = "cache" in a.template.name
    libdir = gramine_libdir(a.gramine_libdir)
    variables = {"prefix": str(a.prefix.resolve()), "conf_dir": str(a.conf_dir.resolve()),
                 "model_dir": str(a.model_dir), "arch_libdir": a.arch_libdir, "log_level": a.log_level,
                 "enclave_size": a.enclave_size or ("512M" if cache else "4G"),
                 "max_threads": str(a.max_threads or (32 if cache else 64))}
    try:
        text = render(a.template, variables, libdir)
        manifest = tomllib.loads(text)
        hashes = trusted_hashes(manifest, libdir)
    except (jinja2.TemplateError, tomllib.TOMLDecodeError, OSError, ValueError, subprocess.CalledProcessError) as e:
        print(f"render: {a.template}: {e}", file=sys.stderr)
        return 1
    if a.output is None:
        sys.stdout.write(text)
    else:
        a.output.write_text(text)
    if a.trusted_json is not None:
        a.trusted_json.write_text(json.dumps(hashes, indent=2) + "\n")
    missing = [u for u, h in hashes.items() if h is None]
    if missing:
        print(f"render: Gramine is not installed here ({libdir}): {', '.join(missing)} not hashed; gramine-manifest "
              "hashes them", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
