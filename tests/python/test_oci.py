# SPDX-License-Identifier: Apache-2.0
"""The OCI images deploy/oci/build_image.py writes (docs/deploy.md, "Container images"):

    * built from this build with no base image and no container tool, twice: the same digests and the same bytes
      for every blob, the layout archive included;
    * a valid OCI image layout: oci-layout, index.json, every descriptor's digest and size equal to its blob's,
      media types, the configuration's diff_id equal to the uncompressed layer's SHA-256, no unreferenced blob;
    * configuration: a non-root numeric User that /etc/passwd names, an Entrypoint that is an executable of the
      image, os/architecture; the sim measurements in the labels are those of the image's binaries;
    * contents: the installed binaries' exact bytes; every library `ldd` lists for them on this host, same bytes;
      every library resolved by the image's own loader from inside the image alone; no shell and no busybox;
      executables only the daemons and the libraries they load; the Kubernetes manifests run what the images hold;
    * with podman (root, runc): deploy/k8s's pod on one machine -- veil-kbs --dev from the veil-kbs image;
      veil-cache (uid 952, only CAP_SYS_PTRACE) and veil-runtime (uid 951, the cache's PID namespace) from the
      veil-runtime image, sim TEE, read-only roots: the key released by attestation and handed on by local
      attestation, GET /v2/health/ready = 200, one inference, no /bin/sh to exec, SIGTERM exits 0 everywhere.

Build: the directory of $VEIL_BIN.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import importlib.util
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
VEIL = Path(os.environ.get("VEIL_BIN", str(ROOT / "build" / "release" / "veil")))
BUILD = VEIL.resolve().parent
TIMEOUT = 60.0
NAMES = ("veil-kbs", "veil-runtime")

for binary in ("veil", "veil-kbs", "veil-runtime", "veil-cache"):
    if not (BUILD / binary).exists():
        if os.environ.get("VEIL_BIN"):
            raise RuntimeError(f"{binary} not built in {BUILD}")
        pytest.skip(f"{binary} not built", allow_module_level=True)


def load(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve string annotations through the module
    spec.loader.exec_module(module)
    return module


oci = load("veil_oci_build", ROOT / "deploy" / "oci" / "build_image.py")
measure = load("veil_measure", ROOT / "scripts" / "measure.py")


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Image:
    """One OCI layout, read back and checked as a consumer would."""

    def __init__(self, layout: Path) -> None:
        self.layout = layout
        self.index = json.loads((layout / "index.json").read_text())
        (desc,) = self.index["manifests"]
        self.manifest_desc = desc
        self.manifest = json.loads(self.blob(desc))
        self.config = json.loads(self.blob(self.manifest["config"]))
        (layer,) = self.manifest["layers"]
        self.tar = gzip.decompress(self.blob(layer))
        with tarfile.open(fileobj=io.BytesIO(self.tar)) as t:
            self.members = {"/" + m.name.rstrip("/"): m for m in t.getmembers()}
            self.data = {"/" + m.name: t.extractfile(m).read() for m in t.getmembers() if m.isreg()}  # type: ignore

    def blob(self, desc: dict[str, Any]) -> bytes:
        algo, hexdigest = desc["digest"].split(":", 1)
        return (self.layout / "blobs" / algo / hexdigest).read_bytes()

    def resolve(self, path: str, depth: int = 0) -> str:
        """A path inside the image with its symbolic links followed (the image's, not the host's)."""
        assert depth < 16, path
        parts = PurePosixPath(path).parts[1:]
        cur = PurePosixPath("/")
        for i, part in enumerate(parts):
            cur = cur / part
            m = self.members.get(str(cur))
            if m is not None and m.issym():
                target = PurePosixPath(m.linkname)
                base = target if target.is_absolute() else cur.parent / target
                rest = PurePosixPath(*parts[i + 1:]) if i + 1 < len(parts) else PurePosixPath("")
                return self.resolve(os.path.normpath(str(base / rest)), depth + 1)
        return str(cur)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Both images built twice: by the script's command line (with archives), and again by its function."""
    base = tmp_path_factory.mktemp("oci")
    ca = base / "kbs-ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n(the broker's CA)\n-----END CERTIFICATE-----\n")
    add = [f"veil-runtime:/etc/veil/kbs-ca.pem={ca}"]
    prefix = base / "prefix"  # one install tree for both builds: the build directory may be rebuilt meanwhile
    measure.install(BUILD, prefix)
    p = subprocess.run([sys.executable, str(ROOT / "deploy" / "oci" / "build_image.py"), str(BUILD),
                        str(base / "a"), "--archive", "--add", add[0], "--prefix", str(prefix)], capture_output=True,
                       text=True, timeout=TIMEOUT)
    assert p.returncode == 0, p.stderr
    again = oci.build(BUILD, base / "b", list(NAMES), with_archive=True, add=add, prefix=prefix)
    return {"base": base, "stdout": p.stdout, "again": {b.name: b for b in again}, "prefix": prefix, "ca": ca,
            **{name: Image(base / "a" / name) for name in NAMES}}


def test_added_configuration_is_in_its_image_only(images: dict[str, Any], tmp_path: Path) -> None:
    m = images["veil-runtime"].members["/etc/veil/kbs-ca.pem"]
    assert m.isreg() and m.mode == 0o644 and (m.uid, m.gid) == (0, 0)
    assert images["veil-runtime"].data["/etc/veil/kbs-ca.pem"] == images["ca"].read_bytes()
    assert "/etc/veil/kbs-ca.pem" not in images["veil-kbs"].members
    for bad, why in ((f"veil-runtime:/usr/bin/sh={images['ca']}", "not a place for configuration"),
                     (f"bogus:/etc/x={images['ca']}", "expected IMAGE:/PATH=FILE"),
                     (f"veil-runtime:/etc/passwd={images['ca']}", "/etc/passwd twice")):
        p = subprocess.run([sys.executable, str(ROOT / "deploy" / "oci" / "build_image.py"), str(BUILD),
                            str(tmp_path), "--add", bad], capture_output=True, text=True, timeout=TIMEOUT)
        assert p.returncode == 1 and why in p.stderr, (bad, p.stderr)


def test_rebuild_gives_the_same_digests_and_bytes(images: dict[str, Any]) -> None:
    base = images["base"]
    for name in NAMES:
        digest = images[name].manifest_desc["digest"]
        assert images["again"][name].manifest_digest == digest
        assert f"{name}: " in images["stdout"] and f"manifest {digest}" in images["stdout"]
        a, b = base / "a" / name, base / "b" / name
        files_a = sorted(str(p.relative_to(a)) for p in a.rglob("*"))
        assert files_a == sorted(str(p.relative_to(b)) for p in b.rglob("*"))
        for f in files_a:
            assert (a / f).is_dir() or (a / f).read_bytes() == (b / f).read_bytes(), f
        assert (base / "a" / f"{name}.oci.tar").read_bytes() == (base / "b" / f"{name}.oci.tar").read_bytes()


@pytest.mark.parametrize("name", NAMES)
def test_layout_is_valid_oci(images: dict[str, Any], name: str) -> None:
    img: Image = images[name]
    assert json.loads((img.layout / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    assert img.index["schemaVersion"] == 2 and img.index["mediaType"] == oci.MEDIA_INDEX
    assert img.manifest_desc["mediaType"] == oci.MEDIA_MANIFEST
    assert img.manifest_desc["annotations"][oci.REF_NAME] == f"{name}:0.1.0"
    assert img.manifest_desc["platform"] == {"architecture": img.config["architecture"], "os": "linux"}
    assert img.manifest["schemaVersion"] == 2 and img.manifest["mediaType"] == oci.MEDIA_MANIFEST
    assert img.manifest["config"]["mediaType"] == oci.MEDIA_CONFIG
    assert [layer["mediaType"] for layer in img.manifest["layers"]] == [oci.MEDIA_LAYER]
    referenced = set()
    for desc in (img.manifest_desc, img.manifest["config"], *img.manifest["layers"]):
        data = img.blob(desc)
        assert sha256(data) == desc["digest"] and len(data) == desc["size"], desc
        referenced.add(desc["digest"].split(":", 1)[1])
    assert {p.name for p in (img.layout / "blobs" / "sha256").iterdir()} == referenced
    assert set(os.listdir(img.layout)) == {"oci-layout", "index.json", "blobs"}
    assert img.config["rootfs"] == {"type": "layers", "diff_ids": [sha256(img.tar)]}
    assert img.config["os"] == "linux" and img.config["architecture"] == oci.oci_arch()
    # Deterministic layer: sorted names, one owner and time, no user or group names.
    names = [m.name for m in tarfile.open(fileobj=io.BytesIO(img.tar)).getmembers()]
    assert names == sorted(names)
    assert {m.mtime for m in img.members.values()} == {oci.source_date_epoch()}
    assert {(m.uname, m.gname) for m in img.members.values()} == {("", "")}


@pytest.mark.parametrize("name", NAMES)
def test_configuration_runs_a_daemon_as_non_root(images: dict[str, Any], name: str) -> None:
    img: Image = images[name]
    c = img.config["config"]
    user, group = c["User"].split(":")
    assert int(user) != 0 and int(group) != 0
    passwd = [line.split(":") for line in img.data["/etc/passwd"].decode().splitlines()]
    assert [u for u in passwd if u[2] == user and u[3] == group] and all(u[6] == "/usr/sbin/nologin" for u in passwd)
    assert [g for g in img.data["/etc/group"].decode().splitlines() if g.split(":")[2] == group]
    spec = oci.IMAGES[name]
    assert c["Entrypoint"] == [f"/usr/bin/{spec.binaries[0]}"] and c["Cmd"][0] == "--config"
    for b in spec.binaries:
        m = img.members[f"/usr/bin/{b}"]
        assert m.isreg() and m.mode == 0o755 and m.uid == 0
        assert img.data[f"/usr/bin/{b}"] == (images["prefix"] / "bin" / b).read_bytes()  # the installed bytes
        if b in oci.TEE_PROGRAMS:
            assert c["Labels"][f"dev.veil.sim-measurement.{b}"] == \
                measure.sim_measurement(images["prefix"] / "bin" / b, None)
    assert img.members["/tmp"].mode == 0o1777


@pytest.mark.parametrize("name", NAMES)
def test_no_shell_and_only_the_daemons_execute(images: dict[str, Any], name: str) -> None:
    img: Image = images[name]
    spec = oci.IMAGES[name]
    libs = {oci.image_path(lib) for b in spec.binaries for lib in measure.ldd(images["prefix"] / "bin" / b)}
    for path, m in img.members.items():
        assert PurePosixPath(path).name not in oci.SHELLS, path
        if m.isreg() and m.mode & 0o111:
            assert path in {f"/usr/bin/{b}" for b in spec.binaries} | libs, path
    assert sorted(p for p in img.members if p.startswith("/usr/bin/")) == sorted(f"/usr/bin/{b}"
                                                                                 for b in spec.binaries)
    for d in ("/bin", "/sbin", "/usr/sbin", "/usr/local"):
        assert d not in img.members, d
    assert not [m for m in img.members.values() if m.issym() and m.name not in ("lib", "lib64")]


@pytest.mark.parametrize("name", NAMES)
def test_every_library_the_binaries_load_is_in_the_image(images: dict[str, Any], name: str,
                                                         tmp_path: Path) -> None:
    img: Image = images[name]
    spec = oci.IMAGES[name]
    # 1. What ldd lists on this host for the installed binaries: present, same bytes, found through /lib links.
    for b in spec.binaries:
        libs = measure.ldd(images["prefix"] / "bin" / b)
        assert len(libs) > 10, libs
        for lib in libs:
            inside = img.resolve(lib)
            assert inside in img.data, (b, lib)
            assert img.data[inside] == Path(lib).resolve().read_bytes(), (b, lib)
    # 2. The image's own loader, given only the image's library directory, resolves everything inside the image.
    with tarfile.open(fileobj=io.BytesIO(img.tar)) as t:
        t.extractall(tmp_path, filter="tar")
    loader = tmp_path / img.resolve("/lib64/ld-linux-x86-64.so.2").lstrip("/")
    libdir = tmp_path / "usr/lib/x86_64-linux-gnu"
    for b in spec.binaries:
        interp = subprocess.run(["readelf", "-l", str(tmp_path / "usr/bin" / b)], capture_output=True, text=True,
                                timeout=TIMEOUT).stdout
        m = re.search(r"Requesting program interpreter: (\S+)\]", interp)
        assert m is not None and img.resolve(m.group(1)) in img.data, interp
        p = subprocess.run([str(loader), "--inhibit-cache", "--library-path", str(libdir), "--list",
                            str(tmp_path / "usr/bin" / b)], capture_output=True, text=True, timeout=TIMEOUT)
        assert p.returncode == 0 and "not found" not in p.stdout, p.stdout + p.stderr
        resolved = re.findall(r"=> (/\S+) \(0x", p.stdout)
        assert resolved and all(r.startswith(str(tmp_path) + "/") for r in resolved), p.stdout


def test_kubernetes_runs_what_the_images_hold(images: dict[str, Any]) -> None:
    docs = []
    for f in sorted((ROOT / "deploy" / "k8s").rglob("*.yaml")):
        if "crd-schemas" not in f.parts:
            docs += [d for d in yaml.safe_load_all(f.read_text()) if d]
    containers = []
    for d in docs:
        spec = d.get("spec", {})
        pod = spec.get("template", {}).get("spec", spec) if d["kind"] != "ServingRuntime" else spec
        containers += [c for c in pod.get("containers", []) if "image" in c]
    veil = [c for c in containers if "/veil/" in c["image"]]
    assert len(veil) == 3, [c["image"] for c in containers]
    for c in veil:
        name, tag = c["image"].rsplit("/", 1)[1].split(":")
        assert name in NAMES and tag == "0.1.0", c["image"]
        img: Image = images[name]
        exe = c.get("command", img.config["config"]["Entrypoint"])[0]
        assert exe in img.data and img.members[exe].mode & 0o111, (c["name"], exe)
        uid = c.get("securityContext", {}).get("runAsUser")
        if uid:  # a uid the manifests set has a name in the image (logs, ls -n are readable)
            assert [u for u in img.data["/etc/passwd"].decode().splitlines() if u.split(":")[2] == str(uid)], uid


# ---- podman: the images run ---------------------------------------------------------------------------------------

def podman_base(root: Path, runroot: Path) -> list[str]:
    """podman with its own storage under the test's directory. runc, not crun: Debian 12's crun 1.8.1 refuses a
    cgroup v1 host whose cgroup2 hierarchy has controllers ("cgroups in hybrid mode not supported") -- this one."""
    cmd = ["podman", "--root", str(root), "--runroot", str(runroot), "--storage-driver", "vfs",
           "--cgroup-manager", "cgroupfs", "--events-backend", "file"]
    return cmd + (["--runtime", "runc"] if shutil.which("runc") else [])


# The default RLIMIT_NOFILE/NPROC podman asks for exceed this sandbox's hard limits, which a process without
# CAP_SYS_RESOURCE cannot raise ("setrlimit `RLIMIT_NOFILE`: Operation not permitted").
RUN = ["run", "-d", "--network", "host", "--pull", "never", "--ulimit", "nofile=4096:4096",
       "--ulimit", "nproc=4096:4096", "--read-only", "--cap-drop", "all", "--security-opt", "no-new-privileges"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port: int, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        conn.request("POST" if body else "GET", path, body=body,
                     headers={"Content-Type": "application/json"} if body else {})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


@pytest.mark.skipif(shutil.which("podman") is None, reason="podman is not installed (scripts/setup.sh installs it)")
@pytest.mark.skipif(os.geteuid() != 0, reason="the podman test runs rootful podman (rootless needs /etc/subuid)")
def test_podman_runs_the_images(images: dict[str, Any], tmp_path: Path) -> None:
    runroot = Path(tempfile.mkdtemp(prefix="veil-podman."))  # podman refuses a runroot over 50 characters
    pm = podman_base(tmp_path / "storage", runroot)

    def podman(*args: str, check: bool = True) -> str:
        p = subprocess.run([*pm, *args], capture_output=True, text=True, timeout=TIMEOUT)
        assert p.returncode == 0 or not check, f"podman {' '.join(args)}: {p.stderr}"
        return p.stdout.strip()

    def logs(container: str) -> str:
        p = subprocess.run([*pm, "logs", container], capture_output=True, text=True, timeout=TIMEOUT)
        return p.stdout + p.stderr

    for name in NAMES:
        assert f"localhost/{name}:0.1.0" in podman("load", "-i", str(images["base"] / "a" / f"{name}.oci.tar"))
    labels = images["veil-runtime"].config["config"]["Labels"]
    # As in deploy/k8s: veil-runtime (uid 951) and veil-cache (uid 952, group veil 950, CAP_SYS_PTRACE) from the
    # veil-runtime image in one PID namespace, sharing the cache's socket directory; veil-kbs --dev from its image.
    sim, models, sock, data = (tmp_path / d for d in ("sim", "models", "sock", "kbs-data"))
    subprocess.run([str(VEIL), "attest", "sim-init", "--dir", str(sim)], check=True, capture_output=True,
                   timeout=TIMEOUT)
    key = tmp_path / "zero.key"  # the dev broker's test-0 key: 32 zero bytes
    key.write_bytes(bytes(32))
    key.chmod(0o600)
    models.mkdir()
    subprocess.run([str(VEIL), "seal", str(ROOT / "tests/fuzz/corpus/engine/resblock.onnx"), "-o",
                    str(models / "m.veil"), "--model-id", "test-0", "--key", str(key)], check=True,
                   capture_output=True, timeout=TIMEOUT)
    sim.chmod(0o750)  # both daemons of the node sign with the sim platform's key: group veil reads it
    (sim / "platform.key").chmod(0o640)
    for p in (sim, *sim.iterdir(), models, *models.iterdir()):
        os.chown(p, 951, 950)
    sock.mkdir(mode=0o750)
    os.chown(sock, 952, 950)
    data.mkdir(mode=0o700)  # the broker's data directory: a volume, as in deploy/k8s (the root is read-only)
    os.chown(data, oci.NONROOT, oci.NONROOT)
    kbs_port, cache_port, rt_port = free_port(), free_port(), free_port()

    def ready(container: str, port: int, path: str) -> None:
        deadline = time.monotonic() + TIMEOUT
        while True:
            state = podman("inspect", "--format", "{{.State.Status}}", container)
            assert state == "running", "\n".join(logs(c) for c in ("kbs", "cache", "rt"))
            try:
                if http_get(port, path)[0] == 200:
                    return
            except OSError:
                pass
            assert time.monotonic() < deadline, logs(container)
            time.sleep(0.1)

    try:
        podman(*RUN, "--name", "kbs", "-v", f"{sim / 'platform.pub'}:/sim/platform.pub:ro", "-v",
               f"{data}:/var/lib/veil-kbs", "localhost/veil-kbs:0.1.0", "--dev", "--listen", f"127.0.0.1:{kbs_port}",
               "--data", "/var/lib/veil-kbs/dev", "--sim-key", "/sim/platform.pub")
        podman(*RUN, "--name", "cache", "--user", "952:950", "--cap-add", "SYS_PTRACE", "-v", f"{sim}:/sim:ro",
               "-v", f"{sock}:/run/veil-cache", "--entrypoint", "/usr/bin/veil-cache", "localhost/veil-runtime:0.1.0",
               "--tee", "sim", "--sim-dir", "/sim", "--kbs", f"http://127.0.0.1:{kbs_port}", "--socket",
               "/run/veil-cache/cache.sock", "--model", "test-0@1", "--allow",
               f"test-0:{labels['dev.veil.sim-measurement.veil-runtime']}", "--set", "allowed_uids=951",
               "--listen", f"127.0.0.1:{cache_port}")
        ready("cache", cache_port, "/health/ready")
        podman(*RUN, "--name", "rt", "--user", "951:950", "--pid", "container:cache", "-v", f"{sim}:/sim:ro",
               "-v", f"{models}:/models:ro", "-v", f"{sock}:/run/veil-cache", "localhost/veil-runtime:0.1.0",
               "--tee", "sim", "--sim-dir", "/sim", "--cache", "/run/veil-cache/cache.sock", "--set",
               f"cache_measurement={labels['dev.veil.sim-measurement.veil-cache']}", "--model", "m:/models/m.veil",
               "--listen", f"127.0.0.1:{rt_port}", "--tls", "off", "--set", "threads=2", "--set", "engine_threads=2")
        ready("rt", rt_port, "/v2/health/ready")
        body = json.dumps({"inputs": [{"name": "x", "shape": [1, 2, 5, 5], "datatype": "FP32",
                                       "data": [0.5] * 50}]}).encode()
        status, answer = http_get(rt_port, "/v2/models/m/infer", body)
        assert status == 200 and json.loads(answer)["outputs"][0]["shape"] == [1, 3], answer
        # Users and capabilities: the image's user for the broker, the manifests' for the node's daemons.
        for c, uid, caps in (("kbs", oci.NONROOT, 0), ("cache", 952, 1 << 19), ("rt", 951, 0)):  # 19: SYS_PTRACE
            status = Path(f"/proc/{podman('inspect', '--format', '{{.State.Pid}}', c)}/status").read_text()
            uids = re.search(r"^Uid:\s+(.*)$", status, re.M)
            assert uids is not None and set(uids.group(1).split()) == {str(uid)}, (c, uids)
            eff = re.search(r"^CapEff:\s+([0-9a-f]+)$", status, re.M)
            assert eff is not None and int(eff.group(1), 16) == caps, (c, status)
        # No shell to exec into.
        p = subprocess.run([*pm, "exec", "rt", "/bin/sh", "-c", "id"], capture_output=True, text=True,
                           timeout=TIMEOUT)
        assert p.returncode != 0 and "no such file or directory" in p.stderr.lower(), p.stderr
        # One at a time, the runtime first: the cache is PID 1 of the namespace they share, and when it ends the
        # kernel kills what is left there (in the pod of deploy/k8s the pause container holds PID 1).
        for c in ("rt", "cache", "kbs"):
            podman("stop", "-t", "20", c)
        for c in ("rt", "cache", "kbs"):
            assert podman("inspect", "--format", "{{.State.ExitCode}}", c) == "0", logs(c)
        assert '"event":"release"' in logs("kbs") and '"event":"key-served"' in logs("cache")
        assert '"event":"ready"' in logs("rt")
    finally:
        podman("rm", "-f", "-a", check=False)
        podman("rmi", "-f", "-a", check=False)
        shutil.rmtree(runroot, ignore_errors=True)
