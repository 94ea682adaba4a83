#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Build Veil's OCI images from a build tree, from scratch: no base image, no tool (docs/deploy.md, "Container images").

    deploy/oci/build_image.py BUILD_DIR [OUT_DIR] [--image veil-kbs|veil-runtime ...] [--tag TAG] [--archive]
                              [--add IMAGE:/PATH=FILE ...] [--prefix INSTALL_DIR]

Installs BUILD_DIR (cmake --install, as scripts/measure.py does; or takes the install tree --prefix names) and
writes, for each image, a standard OCI image layout directory OUT_DIR/NAME (default OUT_DIR: BUILD_DIR/oci):
`oci-layout`, `index.json` (one manifest, ref name NAME:TAG, TAG by default the project version) and `blobs/sha256/`
holding one gzip layer, the image configuration and the manifest. With --archive also OUT_DIR/NAME.oci.tar, the same
layout as one tar (an oci-archive: `podman load -i`).

    image          holds                                        entrypoint and default arguments
    veil-kbs       /usr/bin/veil-kbs                            veil-kbs --config /etc/veil/kbs.conf
    veil-runtime   /usr/bin/veil-runtime, /usr/bin/veil-cache   veil-runtime --config /etc/veil/runtime.conf
                                                                (veil-cache: override the entrypoint)

Each layer holds the binaries, exactly the shared libraries the dynamic loader maps for them on this host
(scripts/measure.py's ldd(), the list `make measure` prints; libraries loaded with dlopen() are not included), the
CA bundle (libcurl's default, for a broker or PCCS without a pinned CA), /etc/passwd and /etc/group with the
unprivileged user `nonroot` (65532) — the image's user — and, in veil-runtime, `veil-runtime` (951), `veil-cache`
(952) and group `veil` (950) as deploy/cvm and deploy/k8s use them, /etc/nsswitch.conf, /etc/hosts and /tmp, and
the files given with --add (e.g. the daemon's configuration and the broker's CA, so that the image digest a
Confidential Containers agent policy pins covers them). Nothing else: no shell, no package manager, no busybox.
Libraries sit in merged-/usr places (/lib and /lib64 are links into /usr), so the loader's default search path
finds them without /etc/ld.so.cache.

Deterministic: entries sorted, owners, modes and times fixed (mtime SOURCE_DATE_EPOCH, else 0), gzip without name
or time, JSON with sorted keys: the same binaries and libraries give the same digests, in any directory, at any
time. Prints each image's manifest digest and the sim measurements of its TEE programs (what a policy and
deploy/k8s/runtime/configmap.yaml pin). Standard library only.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib.util
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"

NONROOT = 65532  # the image's user and group (the uid distroless images use)
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
TEE_PROGRAMS = ("veil-runtime", "veil-cache")
# Files whose presence would give an attacker in the container a shell or a toolbox: never in an image.
SHELLS = frozenset({"sh", "bash", "dash", "ash", "zsh", "ksh", "mksh", "csh", "tcsh", "fish", "busybox", "toybox"})


@dataclass(frozen=True)
class ImageSpec:
    name: str
    binaries: tuple[str, ...]
    cmd: tuple[str, ...]
    description: str
    users: tuple[tuple[str, int, int], ...] = ()   # extra (name, uid, gid) besides root and nonroot
    groups: tuple[tuple[str, int], ...] = ()
    dirs: tuple[tuple[str, int, int], ...] = ()    # extra (path, uid, mode), created empty

    @property
    def entrypoint(self) -> list[str]:
        return [f"/usr/bin/{self.binaries[0]}"]


IMAGES = {
    "veil-kbs": ImageSpec(
        "veil-kbs", ("veil-kbs",), ("--config", "/etc/veil/kbs.conf"),
        "Veil key broker (veil-kbs): releases model keys to attested TEEs",
        dirs=(("/var/lib/veil-kbs", NONROOT, 0o700),)),
    "veil-runtime": ImageSpec(
        "veil-runtime", ("veil-runtime", "veil-cache"), ("--config", "/etc/veil/runtime.conf"),
        "Veil runtime (veil-runtime, KServe v2 inside a TEE) and node key cache (veil-cache, entrypoint "
        "/usr/bin/veil-cache)",
        users=(("veil-runtime", 951, 950), ("veil-cache", 952, 950)), groups=(("veil", 950),)),
}


def load_measure():
    """scripts/measure.py: install(), ldd(), sim_measurement(), cmake_cache() -- one implementation of each."""
    spec = importlib.util.spec_from_file_location("veil_measure", ROOT / "scripts" / "measure.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def oci_arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def image_path(host_path: str) -> str:
    """Where a library the host loader maps goes in the image: merged /usr (/lib/x -> /usr/lib/x)."""
    p = PurePosixPath(host_path)
    if p.parts[1] in ("lib", "lib64", "lib32", "libx32"):
        p = PurePosixPath("/usr", *p.parts[1:])
    return str(p)


@dataclass
class Layer:
    """A root file system as tar entries: path -> (TarInfo, contents)."""
    epoch: int
    entries: dict[str, tuple[tarfile.TarInfo, bytes]] = field(default_factory=dict)

    def _info(self, path: str, kind: bytes, mode: int, uid: int = 0, gid: int = 0) -> tarfile.TarInfo:
        ti = tarfile.TarInfo(path.lstrip("/"))
        ti.type, ti.mode, ti.uid, ti.gid, ti.mtime = kind, mode, uid, gid, self.epoch
        ti.uname = ti.gname = ""
        return ti

    def _parents(self, path: str) -> None:
        for parent in reversed(PurePosixPath(path).parents):
            if str(parent) != "/" and str(parent) not in self.entries:
                self.dir(str(parent))

    def dir(self, path: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> None:
        self._parents(path)
        self.entries[path] = (self._info(path, tarfile.DIRTYPE, mode, uid, gid), b"")

    def file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        if path in self.entries:
            raise ValueError(f"{path} twice in the image")
        self._parents(path)
        ti = self._info(path, tarfile.REGTYPE, mode)
        ti.size = len(data)
        self.entries[path] = (ti, data)

    def symlink(self, path: str, target: str) -> None:
        self._parents(path)
        ti = self._info(path, tarfile.SYMTYPE, 0o777)
        ti.linkname = target
        self.entries[path] = (ti, b"")

    def tar(self) -> bytes:
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as t:
            for path in sorted(self.entries):
                ti, data = self.entries[path]
                t.addfile(ti, io.BytesIO(data) if ti.isreg() else None)
        return out.getvalue()


def etc_files(spec: ImageSpec) -> dict[str, str]:
    users = [("root", 0, 0, "/root"), *[(n, u, g, "/nonexistent") for n, u, g in spec.users],
             ("nonroot", NONROOT, NONROOT, "/nonexistent")]
    groups = [("root", 0), *spec.groups, ("nonroot", NONROOT)]
    return {
        "/etc/passwd": "".join(f"{n}:x:{u}:{g}:{n}:{h}:/usr/sbin/nologin\n" for n, u, g, h in users),
        "/etc/group": "".join(f"{n}:x:{g}:\n" for n, g in groups),
        "/etc/nsswitch.conf": "passwd: files\ngroup: files\nhosts: files dns\n",
        "/etc/hosts": "127.0.0.1 localhost\n::1 localhost\n",
    }


def libraries(measure, binaries: list[Path]) -> dict[str, Path]:
    """Image path -> host file of every library the loader maps for the binaries (their ldd closure)."""
    out: dict[str, Path] = {}
    for exe in binaries:
        listing = subprocess.run(["ldd", str(exe)], check=True, capture_output=True, text=True).stdout
        if "not found" in listing:  # measure.ldd() lists what resolves; an image without the rest would not start
            raise FileNotFoundError(f"{exe.name}: the loader cannot find every library on this host:\n{listing}")
        for lib in measure.ldd(exe):
            out[image_path(lib)] = Path(lib).resolve()
    return out


def root_fs(spec: ImageSpec, prefix: Path, measure, epoch: int, added: list[tuple[str, Path]]) -> Layer:
    layer = Layer(epoch)
    for link, target in (("/lib", "usr/lib"), ("/lib64", "usr/lib64")):
        layer.symlink(link, target)
    exes = [prefix / "bin" / b for b in spec.binaries]
    for exe in exes:
        if not exe.is_file():
            raise FileNotFoundError(f"{exe.name} is not built")
        layer.file(f"/usr/bin/{exe.name}", exe.read_bytes(), 0o755)
    for path, host in sorted(libraries(measure, exes).items()):
        layer.file(path, host.read_bytes(), 0o755 if os.access(host, os.X_OK) else 0o644)
    if CA_BUNDLE.is_file():
        layer.file(str(CA_BUNDLE), CA_BUNDLE.read_bytes())
    for path, text in etc_files(spec).items():
        layer.file(path, text.encode())
    layer.dir("/etc/veil")
    layer.dir("/tmp", 0o1777)
    for path, uid, mode in spec.dirs:
        layer.dir(path, mode, uid, uid)
    for path, host in added:  # configuration: root's, readable by the daemon's user, never executable
        layer.file(path, host.read_bytes())
    return layer


@dataclass(frozen=True)
class Built:
    name: str
    layout: Path
    manifest_digest: str
    sim_measurements: dict[str, str]
    files: list[str]


def write_blob(layout: Path, data: bytes) -> dict[str, object]:
    digest = sha256_digest(data)
    path = layout / "blobs" / "sha256" / digest.split(":", 1)[1]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return {"digest": digest, "size": len(data)}


def build_one(spec: ImageSpec, prefix: Path, out: Path, tag: str, version: str, epoch: int, measure,
              added: list[tuple[str, Path]]) -> Built:
    layer = root_fs(spec, prefix, measure, epoch, added)
    tar = layer.tar()
    layer_gz = gzip.compress(tar, compresslevel=6, mtime=0)
    sims = {b: measure.sim_measurement(prefix / "bin" / b, None) for b in spec.binaries if b in TEE_PROGRAMS}
    created = datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    labels = {"org.opencontainers.image.title": spec.name, "org.opencontainers.image.version": version,
              "org.opencontainers.image.description": spec.description,
              "org.opencontainers.image.licenses": "Apache-2.0",
              **{f"dev.veil.sim-measurement.{b}": m for b, m in sims.items()}}
    config = {
        "created": created, "architecture": oci_arch(), "os": "linux",
        "config": {"User": f"{NONROOT}:{NONROOT}", "Entrypoint": spec.entrypoint, "Cmd": list(spec.cmd),
                   "Env": ["PATH=/usr/bin"], "WorkingDir": "/", "StopSignal": "SIGTERM", "Labels": labels},
        "rootfs": {"type": "layers", "diff_ids": [sha256_digest(tar)]},
        "history": [{"created": created, "created_by": "deploy/oci/build_image.py (from scratch)"}],
    }
    layout = out / spec.name
    if layout.exists():
        shutil.rmtree(layout)
    layout.mkdir(parents=True)
    config_desc = {"mediaType": MEDIA_CONFIG, **write_blob(layout, canonical_json(config))}
    layer_desc = {"mediaType": MEDIA_LAYER, **write_blob(layout, layer_gz)}
    manifest = {"schemaVersion": 2, "mediaType": MEDIA_MANIFEST, "config": config_desc, "layers": [layer_desc]}
    manifest_desc = {"mediaType": MEDIA_MANIFEST, **write_blob(layout, canonical_json(manifest)),
                     "platform": {"architecture": oci_arch(), "os": "linux"},
                     "annotations": {REF_NAME: f"{spec.name}:{tag}"}}
    index = {"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": [manifest_desc]}
    (layout / "oci-layout").write_bytes(canonical_json({"imageLayoutVersion": "1.0.0"}))
    (layout / "index.json").write_bytes(canonical_json(index))
    return Built(spec.name, layout, str(manifest_desc["digest"]), sims, sorted(layer.entries))


def archive(layout: Path, epoch: int) -> Path:
    """The layout as one deterministic tar (oci-archive), next to it: NAME.oci.tar."""
    out = layout.parent / f"{layout.name}.oci.tar"
    layer = Layer(epoch)
    for p in sorted(layout.rglob("*")):
        rel = "/" + str(p.relative_to(layout))
        if p.is_dir():
            layer.dir(rel)
        else:
            layer.file(rel, p.read_bytes())
    out.write_bytes(layer.tar())
    return out


def source_date_epoch() -> int:
    value = os.environ.get("SOURCE_DATE_EPOCH", "")
    return int(value) if value.isdigit() else 0


def parse_add(spec: str) -> tuple[str, str, Path]:
    """IMAGE:/PATH=FILE -> (image, path in the image, host file)."""
    image, _, rest = spec.partition(":")
    path, _, host = rest.partition("=")
    if image not in IMAGES or not path.startswith("/") or not host:
        raise ValueError(f"--add {spec!r}: expected IMAGE:/PATH=FILE with IMAGE one of {', '.join(sorted(IMAGES))}")
    if path != os.path.normpath(path) or path.startswith(("/usr/", "/lib", "/tmp/")):
        raise ValueError(f"--add {spec!r}: {path} is not a place for configuration")
    return image, path, Path(host)


def build(build_dir: Path, out: Path, names: list[str], tag: str | None = None, with_archive: bool = False,
          epoch: int | None = None, add: list[str] | None = None, prefix: Path | None = None) -> list[Built]:
    measure = load_measure()
    version = measure.cmake_cache(build_dir).get("CMAKE_PROJECT_VERSION", "") or "0"
    epoch = source_date_epoch() if epoch is None else epoch
    added: dict[str, list[tuple[str, Path]]] = {name: [] for name in IMAGES}
    for spec in add or []:
        image, path, host = parse_add(spec)
        added[image].append((path, host))
    out.mkdir(parents=True, exist_ok=True)
    built = []
    with tempfile.TemporaryDirectory(prefix="veil-oci.") as tmp:
        if prefix is None:
            prefix = Path(tmp)
            measure.install(build_dir, prefix)
        for name in names:
            b = build_one(IMAGES[name], prefix, out, tag or version, version, epoch, measure, added[name])
            if with_archive:
                archive(b.layout, epoch)
            built.append(b)
    return built


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("build", type=Path, help="a built CMake build directory (Release, for a policy)")
    ap.add_argument("out", type=Path, nargs="?", help="where to write the image layouts (default BUILD/oci)")
    ap.add_argument("--image", action="append", choices=sorted(IMAGES), help="build only this image (repeatable)")
    ap.add_argument("--tag", help="the layouts' ref name (default: the project version)")
    ap.add_argument("--archive", action="store_true", help="also write OUT/NAME.oci.tar")
    ap.add_argument("--add", action="append", metavar="IMAGE:/PATH=FILE",
                    help="put FILE into IMAGE at /PATH, mode 0644 (repeatable; e.g. veil-runtime:/etc/veil/kbs-ca.pem="
                         "kbs-ca.pem)")
    ap.add_argument("--prefix", type=Path, help="take the binaries from this install tree of BUILD (cmake --install "
                                                "BUILD --prefix DIR) instead of installing BUILD")
    a = ap.parse_args()
    build_dir = a.build.resolve()
    if not (build_dir / "CMakeCache.txt").is_file():
        print(f"build_image: {a.build} is not a CMake build directory", file=sys.stderr)
        return 2
    out = (a.out or build_dir / "oci").resolve()
    try:
        built = build(build_dir, out, a.image or sorted(IMAGES), a.tag, a.archive, add=a.add,
                      prefix=a.prefix.resolve() if a.prefix else None)
    except (OSError, ValueError, subprocess.CalledProcessError) as e:
        print(f"build_image: {e}", file=sys.stderr)
        return 1
    for b in built:
        print(f"{b.name}: {b.layout} ({len(b.files)} entries)")
        print(f"  manifest {b.manifest_digest}")
        for prog, m in b.sim_measurements.items():
            print(f"  sim measurement of /usr/bin/{prog}: {m}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
