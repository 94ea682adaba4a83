# SPDX-License-Identifier: Apache-2.0
"""deploy/ checked by every means this machine has (docs/deploy.md, "What was checked, and how"):

    * Gramine: both manifest templates rendered for this build by deploy/gramine/render.py (gramine-manifest's
      template functions, stood in for); valid TOML, only manifest keys Gramine v1.9 knows, DCAP, no debug, no host
      argv or environment, a power-of-two enclave, enough threads for the configuration; the trusted files are the
      binary, its measured configuration and exactly the libraries and CA bundle scripts/measure.py lists; nothing
      but the sealed models is an allowed file; every file a mount or setting names exists. veil-runtime, run with
      the simulation TEE under strace, opens no file outside what the manifest lets it (or Gramine provides).
    * Confidential VM: the units and the staged image tree pass `systemd-analyze verify` with no message, their
      `systemd-analyze security` exposure stays at or below 2.5, sysusers/tmpfiles apply, the configurations parse
      in the daemons and name the staged binaries' measurements; MemoryDenyWriteExecute is right for each daemon
      (the kernel's PR_SET_MDWE: oneDNN's JIT fails under it, veil-cache fetches a key under it); the mkosi recipe
      names a package for every library the daemons link.
    * Kubernetes: the kustomize bases rendered (in Python; and with `kubectl kustomize` where kubectl exists, which
      must agree), every core object valid against the pinned Kubernetes version's schemas (kubernetes-validate,
      strict), KServe and Prometheus Operator objects against their CRDs' schemas (deploy/k8s/crd-schemas) with
      unknown fields refused; names, selectors, mounts, users and configuration files consistent; the init data
      annotation carries exactly deploy/k8s/runtime/initdata.toml.

Nothing here runs Gramine, a CVM, Kubernetes or mkosi's build. Build: the directory of $VEIL_BIN.
"""

from __future__ import annotations

import base64
import copy
import ctypes
import gzip
import hashlib
import http.client
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
VEIL = Path(os.environ.get("VEIL_BIN", str(ROOT / "build" / "release" / "veil")))
BUILD = VEIL.resolve().parent
K8S_VERSION = "1.32.0"  # the Kubernetes API the manifests are validated against (kubernetes-validate's schemas)
TIMEOUT = 30.0
MAX_EXPOSURE = 2.5  # systemd-analyze security, overall exposure (0 best .. 10)
RUNBOOK_CONFIGMAPS = {"veil-broker"}  # created by the runbook (docs/deploy.md), not by the manifests
RUNBOOK_SECRETS = {"veil-kbs-secrets", "veil-kbs-tls", "veil-kbs-postgres", "veil-kbs-postgres-tls"}

for binary in ("veil", "veil-kbs", "veil-runtime", "veil-cache"):
    if not (BUILD / binary).exists():
        if os.environ.get("VEIL_BIN"):
            raise RuntimeError(f"{binary} not built in {BUILD}")
        pytest.skip(f"{binary} not built", allow_module_level=True)


def load(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


measure = load("veil_measure", ROOT / "scripts" / "measure.py")
render = load("veil_gramine_render", DEPLOY / "gramine" / "render.py")
stage = load("veil_cvm_stage", DEPLOY / "cvm" / "stage.py")
initdata = load("veil_initdata", DEPLOY / "k8s" / "initdata.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sim_measurement(exe: Path) -> str:
    """SHA-384("VEIL-SIM-MEASUREMENT-V1" 0 || u64le(n) || exe || u64le(0)), written again here (docs/deploy.md)."""
    data = exe.read_bytes()
    return hashlib.sha384(b"VEIL-SIM-MEASUREMENT-V1\0" + len(data).to_bytes(8, "little") + data
                          + (0).to_bytes(8, "little")).hexdigest()


def conf_pairs(text: str) -> list[tuple[str, str]]:
    """`key = value` lines of a Veil daemon configuration (src/daemon/config.c)."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out.append((key.strip(), value.strip()))
    return out


def settings_of(binary: Path) -> set[str]:
    """The configuration keys a daemon accepts, from the table its --help prints."""
    text = subprocess.run([str(binary), "--help"], capture_output=True, text=True, timeout=TIMEOUT).stdout
    table = text.split("settings (config file keys):", 1)[1]
    return set(re.findall(r"^  ([a-z][a-z0-9_]*) ", table, re.M))


def config_parses(binary: Path, conf: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """Start a daemon with a configuration on a machine without a TEE: a malformed setting is a usage error (exit
    2, naming the file and line); a well-formed one gets past the configuration and fails later (exit 1)."""
    p = subprocess.run([str(binary), "--config", str(conf), "--set", f"listen=127.0.0.1:{free_port()}", *extra],
                       capture_output=True, text=True, timeout=TIMEOUT)
    assert p.returncode == 1, f"{conf} (exit {p.returncode}): {p.stderr[-800:]}"
    assert '"event":"start-failed"' in p.stderr
    return p


@pytest.fixture(scope="module")
def prefix(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This build installed as scripts/measure.py installs it."""
    out = tmp_path_factory.mktemp("prefix")
    measure.install(BUILD, out)
    return out


@pytest.fixture(scope="module")
def kbs_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import datetime

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "veil-kbs test CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True).sign(key, hashes.SHA256()))
    path = tmp_path_factory.mktemp("ca") / "kbs-ca.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


# ---- Gramine ----------------------------------------------------------------------------------------------------

GRAMINE_KEYS = {  # the manifest keys of Gramine v1.9 this project may use (its manifest-syntax and schema)
    "loader.entrypoint.uri", "loader.entrypoint.sha256", "loader.argv", "loader.log_level", "loader.uid",
    "loader.gid", "libos.entrypoint", "libos.check_invalid_pointers", "fs.mounts", "fs.start_dir",
    "sys.enable_sigterm_injection", "sys.enable_extra_runtime_domain_names_conf", "sys.stack.size", "sys.fds.limit",
    "sys.disallow_subprocesses", "sys.brk.max_size", "sgx.debug", "sgx.edmm_enable", "sgx.enclave_size",
    "sgx.max_threads", "sgx.remote_attestation", "sgx.isvprodid", "sgx.isvsvn", "sgx.cpu_features.avx",
    "sgx.cpu_features.avx512", "sgx.cpu_features.amx", "sgx.file_check_policy", "sgx.trusted_files",
    "sgx.allowed_files", "sgx.use_exinfo", "sgx.preheat_enclave",
}
PROGRAMS = {"veil-runtime": 1, "veil-cache": 2}  # program -> sgx.isvprodid
SIZE_UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def flatten(node: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in node.items():
        key = f"{prefix}{k}"
        if key == "loader.env":  # variable names are free; their values must be plain strings (no passthrough)
            out.update({f"{key}.{name}": value for name, value in v.items()})
        elif isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def size_bytes(text: str) -> int:
    m = re.fullmatch(r"([0-9]+)([KMG]?)", text)
    assert m, text
    return int(m.group(1)) * SIZE_UNITS.get(m.group(2), 1)


def host_path(uri: str) -> Path:
    assert uri.startswith("file:"), uri
    return Path(uri[len("file:"):])


@pytest.fixture(scope="module")
def gramine(prefix: Path, kbs_ca: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Both templates rendered for this build: the measured configuration directory is deploy/gramine/conf plus the
    operator's kbs-ca.pem; models in an (empty) directory."""
    base = tmp_path_factory.mktemp("gramine")
    conf = base / "conf"
    shutil.copytree(DEPLOY / "gramine" / "conf", conf)
    shutil.copyfile(kbs_ca, conf / "kbs-ca.pem")
    models = base / "models"
    models.mkdir()
    libdir = Path("/nonexistent/gramine")  # Gramine is not installed here: its files are reported, not hashed
    out: dict[str, Any] = {"conf": conf, "models": models, "libdir": libdir, "prefix": prefix}
    for name in PROGRAMS:
        cache = name == "veil-cache"
        variables = {"prefix": str(prefix), "conf_dir": str(conf), "model_dir": str(models),
                     "arch_libdir": "/lib/x86_64-linux-gnu", "log_level": "error",
                     "enclave_size": "512M" if cache else "4G", "max_threads": "32" if cache else "64"}
        text = render.render(DEPLOY / "gramine" / f"{name}.manifest.template", variables, libdir)
        manifest = tomllib.loads(text)
        out[name] = {"text": text, "manifest": manifest, "hashes": render.trusted_hashes(manifest, libdir)}
    return out


@pytest.mark.parametrize("name", list(PROGRAMS))
def test_gramine_manifest_has_the_required_settings(gramine: dict[str, Any], name: str) -> None:
    m = gramine[name]["manifest"]
    flat = flatten(m)
    unknown = set(flat) - GRAMINE_KEYS - {k for k in flat if k.startswith("loader.env.")}
    assert not unknown, f"keys Gramine v1.9 does not know: {unknown}"
    assert not [k for k in flat if "insecure__" in k or k.endswith("_src_file")], "host argv/env or insecure options"
    assert all(isinstance(v, str) for k, v in flat.items() if k.startswith("loader.env.")), "passthrough env"
    libdir = gramine["libdir"]
    assert m["loader"]["entrypoint"]["uri"] == f"file:{libdir / 'libsysdb.so'}"
    assert m["libos"]["entrypoint"] == f"/veil/bin/{name}"
    assert m["loader"]["argv"] == [name, "--config", f"/veil/conf/{name}.conf"]
    assert m["loader"]["log_level"] == "error"
    assert m["loader"]["env"]["OPENSSL_CONF"] == "/veil/conf/openssl.cnf"
    assert m["loader"]["env"]["LD_LIBRARY_PATH"].split(":")[0] == "/lib"
    sgx = m["sgx"]
    assert sgx["remote_attestation"] == "dcap"  # /dev/attestation/quote (and report, target_info ...)
    assert sgx["debug"] is False and sgx["edmm_enable"] is False
    assert sgx["file_check_policy"] == "strict"
    assert sgx["isvprodid"] == PROGRAMS[name] and sgx["isvsvn"] >= 1
    size = size_bytes(sgx["enclave_size"])
    assert size & (size - 1) == 0, "sgx.enclave_size must be a power of two"
    # /dev/attestation is Gramine's pseudo-file system: nothing may be mounted over /dev, and the programs use the
    # default root (no gramine_root in their configuration).
    mounts = {mt.get("path"): mt for mt in m["fs"]["mounts"]}
    assert not [p for p in mounts if p == "/dev" or p.startswith("/dev/")]
    conf = dict(conf_pairs((gramine["conf"] / f"{name}.conf").read_text()))
    assert "gramine_root" not in conf and conf["tee"] == "sgx"
    assert conf["kbs_url"].startswith("https://") and conf["kbs_cacert"] == "/veil/conf/kbs-ca.pem"
    # Threads: what the configuration can start, with Gramine's helpers, fits in sgx.max_threads.
    if name == "veil-runtime":
        t, e = int(conf["threads"]), int(conf["engine_threads"])
        assert t > 0, "threads = 0 is a thread per connection: unbounded in an enclave"
        need = 1 + t + t * (e - 1) + 1 + 1 + 3
        assert m["loader"]["env"]["OMP_NUM_THREADS"] == str(e)
        assert conf.get("key_source", "kbs") == "kbs"  # the shipped choice; cache: tls:// (docs/cache.md, "SGX")
    else:
        need = 1 + 1 + 1 + int(conf["max_connections"]) + 2 + 1 + 3
    assert need <= sgx["max_threads"], (need, sgx["max_threads"])


@pytest.mark.parametrize("name", list(PROGRAMS))
def test_gramine_trusted_files_are_what_measure_lists(gramine: dict[str, Any], name: str) -> None:
    m = gramine[name]["manifest"]
    prefix, conf, libdir = gramine["prefix"], gramine["conf"], gramine["libdir"]
    trusted = [e if isinstance(e, str) else e["uri"] for e in m["sgx"]["trusted_files"]]
    assert len(trusted) == len(set(trusted))
    gramine_own = {f"file:{libdir / 'libsysdb.so'}", f"file:{libdir / 'runtime' / 'glibc'}/"}
    conf_files = {f"file:{conf / f}" for f in (f"{name}.conf", "kbs-ca.pem", "openssl.cnf", "nsswitch.conf", "hosts")}
    exe = prefix / "bin" / name
    # scripts/measure.py's list for this program: the binary, the CA bundle, the ldd closure less Gramine's glibc.
    expected = {f"file:{exe}", f"file:{measure.CA_BUNDLE}"}
    expected |= {f"file:{lib}" for lib in measure.ldd(exe) if Path(lib).name not in measure.GRAMINE_GLIBC}
    assert set(trusted) == gramine_own | conf_files | expected
    # The template's glibc list is measure.py's.
    listed = re.search(r"set gramine_glibc = \[(.*?)\]", (DEPLOY / "gramine" / f"{name}.manifest.template").read_text(),
                       re.S)
    assert listed and set(re.findall(r'"([^"]+)"', listed.group(1))) == measure.GRAMINE_GLIBC
    # Every library the program loads is trusted or Gramine's own glibc.
    for lib in measure.ldd(exe):
        assert f"file:{lib}" in trusted or Path(lib).name in measure.GRAMINE_GLIBC, lib
    # Hashed like gramine-manifest; every file exists (Gramine's are reported when it is not installed).
    hashes = gramine[name]["hashes"]
    assert {u for u, h in hashes.items() if h is None} == gramine_own
    assert hashes[f"file:{exe}"] == sha256(exe) == measure.sha256(exe)
    assert hashes[f"file:{conf / 'kbs-ca.pem'}"] == sha256(conf / "kbs-ca.pem")
    # Nothing unhashed but the sealed models: no key, token, certificate or configuration.
    allowed = m["sgx"]["allowed_files"]
    assert allowed == ([f"file:{gramine['models']}/"] if name == "veil-runtime" else [])
    for uri in allowed:
        assert not uri.startswith((f"file:{conf}", "file:/etc")), uri
        assert not re.search(r"(key|token|pem|conf|secret)", uri.rsplit("/", 2)[-2]), uri


@pytest.mark.parametrize("name", list(PROGRAMS))
def test_gramine_mounts_and_configuration_files_exist(gramine: dict[str, Any], name: str) -> None:
    m = gramine[name]["manifest"]
    mounts = m["fs"]["mounts"]
    for mt in mounts:
        assert set(mt) <= {"path", "uri", "type", "key_name"} and mt.get("type", "chroot") in ("chroot", "tmpfs"), mt
        if "uri" in mt and not host_path(mt["uri"]).is_relative_to(gramine["libdir"]):
            assert host_path(mt["uri"]).exists(), mt
    # Every in-enclave path the program's configuration names resolves, through the mounts, to a trusted file.
    trusted = {e if isinstance(e, str) else e["uri"] for e in m["sgx"]["trusted_files"]}

    def resolve(inner: str) -> Path:
        best = max((mt for mt in mounts if "uri" in mt and (inner == mt["path"] or inner.startswith(mt["path"] + "/"))),
                   key=lambda mt: len(mt["path"]))
        return host_path(best["uri"]) / inner[len(best["path"]):].lstrip("/")

    conf = conf_pairs((gramine["conf"] / f"{name}.conf").read_text())
    named = [v for k, v in conf if k in ("kbs_cacert", "sim_config")] + [m["loader"]["argv"][2],
                                                                         m["loader"]["env"]["OPENSSL_CONF"],
                                                                         "/etc/nsswitch.conf", "/etc/hosts"]
    for inner in named:
        host = resolve(inner).resolve()
        assert host.is_file() and f"file:{host}" in trusted, (inner, host)
    for _, value in conf:
        if value.startswith("/veil/models/") or ":/veil/models/" in value:
            assert f"file:{gramine['models']}/" in m["sgx"]["allowed_files"]
    assert resolve(m["libos"]["entrypoint"]) == gramine["prefix"] / "bin" / name


def test_gramine_configurations_parse_in_the_daemons(gramine: dict[str, Any]) -> None:
    prefix, conf = gramine["prefix"], gramine["conf"]
    for name in PROGRAMS:
        keys = [k for k, _ in conf_pairs((conf / f"{name}.conf").read_text())]
        assert set(keys) <= settings_of(prefix / "bin" / name), name
    # veil-runtime: the configuration is accepted; it stops where SGX is missing (the model, then the TEE).
    p = config_parses(prefix / "bin" / "veil-runtime", conf / "veil-runtime.conf")
    assert '"tee":"sgx"' in p.stderr
    # veil-cache: accepted (TLS on loopback, SGX identities in allow); it stops where SGX is missing (its TARGETINFO).
    p = config_parses(prefix / "bin" / "veil-cache", conf / "veil-cache.conf")
    assert "my_target_info" in p.stderr, p.stderr


def test_render_script_refuses_a_missing_trusted_file(gramine: dict[str, Any], tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    shutil.copytree(gramine["conf"], conf)
    (conf / "kbs-ca.pem").unlink()
    p = subprocess.run([sys.executable, str(DEPLOY / "gramine" / "render.py"),
                        str(DEPLOY / "gramine" / "veil-runtime.manifest.template"), "--prefix", str(gramine["prefix"]),
                        "--conf-dir", str(conf), "-o", str(tmp_path / "m")], capture_output=True, text=True,
                       timeout=TIMEOUT)
    assert p.returncode == 1 and "kbs-ca.pem does not exist" in p.stderr, p.stderr
    p = subprocess.run([sys.executable, str(DEPLOY / "gramine" / "render.py"),
                        str(DEPLOY / "gramine" / "veil-runtime.manifest.template"), "--prefix", str(gramine["prefix"]),
                        "--conf-dir", str(gramine["conf"]), "-o", str(tmp_path / "m"),
                        "--trusted-json", str(tmp_path / "t.json")], capture_output=True, text=True, timeout=TIMEOUT)
    assert p.returncode == 0, p.stderr
    assert tomllib.loads((tmp_path / "m").read_text())["sgx"]["remote_attestation"] == "dcap"
    assert json.loads((tmp_path / "t.json").read_text())[f"file:{gramine['prefix']}/bin/veil-runtime"] == \
        sha256(gramine["prefix"] / "bin" / "veil-runtime")


# ---- a development broker, a sealed model, and the runtime under strace ---------------------------------------------

@pytest.fixture(scope="module")
def devkbs(tmp_path_factory: pytest.TempPathFactory):
    """veil-kbs --dev (model test-0, key 32 zero bytes, policy allow_sim), a sim platform, test-0 sealed."""
    base = tmp_path_factory.mktemp("devkbs")
    subprocess.run([str(VEIL), "attest", "sim-init", "--dir", str(base / "sim")], check=True, capture_output=True,
                   timeout=TIMEOUT)
    key = base / "zero.key"
    key.write_bytes(bytes(32))
    key.chmod(0o600)
    (base / "models").mkdir()
    sealed = base / "models" / "m.veil"
    subprocess.run([str(VEIL), "seal", str(ROOT / "tests/fuzz/corpus/engine/resblock.onnx"), "-o", str(sealed),
                    "--model-id", "test-0", "--key", str(key)], check=True, capture_output=True, timeout=TIMEOUT)
    port = free_port()
    log = open(base / "kbs.log", "wb")
    proc = subprocess.Popen([str(BUILD / "veil-kbs"), "--dev", "--listen", f"127.0.0.1:{port}", "--data",
                             str(base / "kbs"), "--sim-key", str(base / "sim" / "platform.pub")],
                            stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, (base / "kbs.log").read_text()
            time.sleep(0.05)
    yield {"base": base, "url": f"http://127.0.0.1:{port}", "sim": base / "sim", "sealed": sealed}
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=TIMEOUT) == 0


def https_request(port: int, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # self-signed, trusted through the attestation; not what is tested here
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=TIMEOUT, context=ctx)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"} if body else {})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_runtime_opens_only_what_the_manifest_lets_it(gramine: dict[str, Any], devkbs: dict[str, Any]) -> None:
    """Gramine's strict policy refuses every file that is neither trusted nor allowed: veil-runtime (sim TEE, HTTPS,
    a key from the broker, one inference) must open nothing else, apart from what Gramine itself provides or what
    the simulation TEE reads instead of /dev/attestation."""
    base, port = devkbs["base"], free_port()
    trace = base / "strace.txt"
    openssl_cnf = gramine["conf"] / "openssl.cnf"
    env = dict(os.environ, OPENSSL_CONF=str(openssl_cnf))
    rt = subprocess.Popen(["strace", "-f", "-qq", "-e", "trace=open,openat,execve", "-e", "signal=none", "-o",
                           str(trace), str(BUILD / "veil-runtime"), "--tee", "sim", "--sim-dir", str(devkbs["sim"]),
                           "--kbs", devkbs["url"], "--model", f"m:{devkbs['sealed']}", "--listen",
                           f"127.0.0.1:{port}", "--tls", "on", "--set", "threads=2", "--set", "engine_threads=2"],
                          cwd=base, env=env, stdout=subprocess.DEVNULL, stderr=open(base / "rt.log", "wb"))
    try:
        deadline = time.monotonic() + TIMEOUT
        while True:
            assert rt.poll() is None, (base / "rt.log").read_text()
            try:
                if https_request(port, "GET", "/v2/health/ready")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "veil-runtime did not become ready"
            time.sleep(0.1)
        body = json.dumps({"inputs": [{"name": "x", "shape": [1, 2, 5, 5], "datatype": "FP32",
                                       "data": [0.5] * 50}]}).encode()
        status, answer = https_request(port, "POST", "/v2/models/m/infer", body)
        assert status == 200 and json.loads(answer)["outputs"], answer
    finally:
        pid = int(trace.read_text().split(None, 1)[0])  # the traced runtime (strace -f prefixes every line)
        os.kill(pid, signal.SIGTERM)
        rt.wait(timeout=TIMEOUT)
    opened = set()
    for line in trace.read_text().splitlines():
        m = re.search(r'open(?:at)?\((?:AT_FDCWD, )?"([^"]+)".*\) = (\d+)', line)
        if m:
            path = Path(m.group(1))
            opened.add(str(path if path.is_absolute() else base / path))
    manifest = gramine["veil-runtime"]["manifest"]
    trusted = {str(host_path(e if isinstance(e, str) else e["uri"])) for e in manifest["sgx"]["trusted_files"]}
    exe_hash = sha256(BUILD / "veil-runtime")
    assert exe_hash == sha256(gramine["prefix"] / "bin" / "veil-runtime")  # the installed program is these bytes
    gramine_provides = re.compile(r"^(/proc/self/|/proc/\d+/|/sys/devices/system/cpu/|/dev/u?random$|/dev/null$)")
    reasons = {
        "/etc/ld.so.cache": "the host loader's cache: Gramine's loader searches LD_LIBRARY_PATH",
        "/etc/localtime": "the log's timestamps are UTC whatever the zone; refused, glibc uses UTC",
    }
    unexplained = []
    for path in sorted(opened):
        p = Path(path)
        if path in trusted or p.name in measure.GRAMINE_GLIBC or gramine_provides.match(path) or path in reasons:
            continue
        if p.resolve() == (BUILD / "veil-runtime").resolve():
            continue  # the program itself: trusted as installed (same bytes, checked above)
        if p.is_relative_to(devkbs["sim"]):
            continue  # the simulation TEE's platform key; under SGX the provider uses /dev/attestation
        if p.resolve() == devkbs["sealed"].resolve():
            continue  # a sealed model: the allowed directory under SGX
        unexplained.append(path)
    assert not unexplained, f"files the manifest would refuse: {unexplained}"
    assert str(openssl_cnf) in opened and "/usr/lib/ssl/openssl.cnf" not in opened


# ---- confidential VM ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cvm(kbs_ca: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The image tree deploy/cvm/stage.py writes, plus the host's systemd units (for systemd-analyze --root)."""
    root = tmp_path_factory.mktemp("cvm") / "root"
    info = stage.stage(BUILD, root, "https://kbs.example:8443", kbs_ca, [("resnet", "resnet50", "1", "resnet50.veil")])
    units = {p.name: p for p in (root / "usr/lib/systemd/system").glob("veil-*.service")}
    if Path("/lib/systemd/system").is_dir():
        for p in Path("/lib/systemd/system").iterdir():
            dest = root / "usr/lib/systemd/system" / p.name
            if not dest.exists() and not dest.is_symlink():
                if p.is_symlink():
                    dest.symlink_to(os.readlink(p))
                elif p.is_file():
                    shutil.copyfile(p, dest)
    return {"root": root, "info": info, "units": units}


def unit_settings(path: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            k, _, v = line.partition("=")
            out.setdefault(k.strip(), []).append(v.strip())
    return out


def test_cvm_units_pass_systemd_analyze_verify(cvm: dict[str, Any]) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    assert set(cvm["units"]) == {"veil-cache.service", "veil-runtime.service"}
    p = subprocess.run(["systemd-analyze", "verify", f"--root={cvm['root']}", *cvm["units"]], capture_output=True,
                       text=True, timeout=TIMEOUT)
    assert p.returncode == 0 and p.stdout == "" and p.stderr == "", p.stdout + p.stderr
    # verify is not vacuous: a misspelt directive is reported, a missing binary fails.
    bad = cvm["root"] / "etc/systemd/system/veil-typo.service"
    bad.write_text(cvm["units"]["veil-cache.service"].read_text().replace("ProtectSystem=", "ProtectSystm="))
    p = subprocess.run(["systemd-analyze", "verify", f"--root={cvm['root']}", "veil-typo.service"],
                       capture_output=True, text=True, timeout=TIMEOUT)
    bad.unlink()
    assert "Unknown key" in p.stderr and "ProtectSystm" in p.stderr, p.stderr


@pytest.mark.parametrize("unit", ["veil-cache.service", "veil-runtime.service"])
def test_cvm_units_are_hardened(cvm: dict[str, Any], unit: str) -> None:
    s = unit_settings(cvm["units"][unit])
    one = {k: v[-1] for k, v in s.items()}
    for key, value in {"ProtectSystem": "strict", "NoNewPrivileges": "yes", "LimitCORE": "0", "PrivateTmp": "yes",
                       "PrivateDevices": "yes", "ProtectHome": "yes", "ProtectKernelTunables": "yes",
                       "ProtectKernelModules": "yes", "ProtectControlGroups": "yes", "RestrictSUIDSGID": "yes",
                       "LockPersonality": "yes", "RestrictNamespaces": "yes", "SystemCallArchitectures": "native",
                       "UMask": "0077", "Group": "veil", "ReadWritePaths": "/sys/kernel/config/tsm/report"}.items():
        assert one.get(key) == value, (unit, key, one.get(key))
    caps = {"veil-cache.service": {"CAP_SYS_PTRACE", "CAP_DAC_OVERRIDE"},
            "veil-runtime.service": {"CAP_DAC_OVERRIDE"}}[unit]
    assert set(one["CapabilityBoundingSet"].split()) == caps == set(one["AmbientCapabilities"].split())
    assert one["User"] == unit.replace(".service", "")
    # MemoryDenyWriteExecute: yes where no JIT runs (test_memory_deny_write_execute shows both sides).
    assert one["MemoryDenyWriteExecute"] == ("yes" if unit == "veil-cache.service" else "no")
    assert one["ExecStart"].split()[:3] == [f"/usr/bin/{one['User']}", "--config",
                                            f"/etc/veil/{unit.split('-')[1].split('.')[0]}.conf"]
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    p = subprocess.run(["systemd-analyze", "security", "--offline=yes", f"--root={cvm['root']}", unit],
                       capture_output=True, text=True, timeout=TIMEOUT)
    level = re.search(r"Overall exposure level for \S+: ([0-9.]+)", p.stdout)
    assert p.returncode == 0 and level, p.stdout + p.stderr
    assert float(level.group(1)) <= MAX_EXPOSURE, p.stdout


def test_cvm_users_files_and_configuration(cvm: dict[str, Any]) -> None:
    root = cvm["root"]
    for tool, conf in (("systemd-sysusers", "usr/lib/sysusers.d/veil.conf"),
                       ("systemd-tmpfiles", "usr/lib/tmpfiles.d/veil.conf")):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
        args = [tool, f"--root={root}"] + (["--create"] if tool == "systemd-tmpfiles" else []) + [str(root / conf)]
        p = subprocess.run(args, capture_output=True, text=True, timeout=TIMEOUT)
        assert p.returncode == 0, p.stderr
    users = {line.split(":")[0]: line.split(":") for line in (root / "etc/passwd").read_text().splitlines()}
    group = {line.split(":")[0]: line.split(":") for line in (root / "etc/group").read_text().splitlines()}
    assert users["veil-runtime"][3] == users["veil-cache"][3] == group["veil"][2]
    assert (root / "var/lib/veil/models").is_dir()
    cache = conf_pairs((root / "etc/veil/cache.conf").read_text())
    runtime = conf_pairs((root / "etc/veil/runtime.conf").read_text())
    c, r = dict(cache), dict(runtime)
    # The cache admits exactly veil-runtime's uid and executable; the runtime checks the cache's executable.
    assert c["allowed_uids"] == users["veil-runtime"][2]
    rt_m, cache_m = sim_measurement(root / "usr/bin/veil-runtime"), sim_measurement(root / "usr/bin/veil-cache")
    assert cvm["info"]["sim_measurements"] == {"veil-runtime": rt_m, "veil-cache": cache_m}
    assert [v for k, v in cache if k == "allow"] == [f"resnet50:{rt_m}"]
    assert [v for k, v in cache if k == "models"] == ["resnet50@1"]
    assert r["cache_measurement"] == cache_m and r["key_source"] == "cache"
    assert [v for k, v in runtime if k == "models"] == ["resnet:/var/lib/veil/models/resnet50.veil"]
    # The socket: where the cache unit's RuntimeDirectory is, the same path on both sides.
    cache_unit = {k: v[-1] for k, v in unit_settings(cvm["units"]["veil-cache.service"]).items()}
    assert c["socket"] == r["cache_socket"] == f"/run/{cache_unit['RuntimeDirectory']}/cache.sock"
    assert c["kbs_url"].startswith("https://") and (root / c["kbs_cacert"].lstrip("/")).is_file()
    for name, conf in (("veil-cache", cache), ("veil-runtime", runtime)):
        assert {k for k, _ in conf} <= settings_of(root / "usr/bin" / name), name
    assert os.readlink(root / "etc/systemd/system/multi-user.target.wants/veil-runtime.service") == \
        "/usr/lib/systemd/system/veil-runtime.service"
    # Both configurations are accepted by the daemons; with no TEE here, they stop at detection.
    for name in ("veil-cache", "veil-runtime"):
        p = config_parses(root / "usr/bin" / name, root / f"etc/veil/{name.split('-')[1]}.conf")
        assert "no TEE found" in p.stderr, p.stderr


PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1


def mdwe() -> None:
    """In the child before exec: the kernel's MemoryDenyWriteExecute (Linux >= 6.3), inherited across execve."""
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
        os._exit(77)


def test_memory_deny_write_execute(devkbs: dict[str, Any], tmp_path: Path) -> None:
    probe = subprocess.run(["true"], preexec_fn=mdwe)
    if probe.returncode == 77:
        pytest.skip("this kernel has no PR_SET_MDWE")
    x = tmp_path / "x.npy"
    import numpy as np
    np.save(x, np.full((1, 2, 5, 5), 0.5, dtype=np.float32))
    model = ROOT / "tests/fuzz/corpus/engine/resblock.onnx"
    args = [str(VEIL), "run", str(model), "-i", str(x), "-o", str(tmp_path / "y.npy")]
    assert subprocess.run(args, capture_output=True, timeout=TIMEOUT).returncode == 0
    p = subprocess.run(args, capture_output=True, text=True, timeout=TIMEOUT, preexec_fn=mdwe)
    assert p.returncode == 1 and "oneDNN primitive creation failed" in p.stderr, p.stderr  # the JIT is refused
    # veil-cache, under the same restriction, attests to the broker, takes a key and reports ready.
    port = free_port()
    log = tmp_path / "cache.log"
    cache = subprocess.Popen([str(BUILD / "veil-cache"), "--tee", "sim", "--sim-dir", str(devkbs["sim"]), "--kbs",
                              devkbs["url"], "--socket", str(tmp_path / "c.sock"), "--model", "test-0@1", "--allow",
                              "test-0:" + "a" * 96, "--listen", f"127.0.0.1:{port}"],
                             stdout=subprocess.DEVNULL, stderr=open(log, "wb"), preexec_fn=mdwe)
    try:
        deadline = time.monotonic() + TIMEOUT
        while True:
            assert cache.poll() is None, log.read_text()
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/health/ready")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
    finally:
        cache.send_signal(signal.SIGTERM)
        assert cache.wait(timeout=TIMEOUT) == 0
    assert '"event":"key-fetched"' in log.read_text(), log.read_text()


def mkosi_settings() -> dict[str, dict[str, list[str]]]:
    sections: dict[str, dict[str, list[str]]] = {}
    current, key = "", ""
    for line in (DEPLOY / "cvm" / "mkosi.default").read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line.startswith("["):
            current = line.strip("[] ")
            sections[current] = {}
        elif line[0].isspace():
            sections[current][key].append(line.strip())
        else:
            key, _, value = line.partition("=")
            sections[current].setdefault(key, []).append(value.strip())
    return sections


def test_mkosi_recipe_installs_what_the_daemons_link(cvm: dict[str, Any]) -> None:
    s = mkosi_settings()
    assert s["Distribution"]["Distribution"] == ["debian"] and s["Distribution"]["Release"] == ["bookworm"]
    out = {k: v[0] for k, v in s["Output"].items()}
    assert out["Verity"] == "yes" and out["Bootable"] == "yes" and out["Format"] == "gpt_squashfs"
    packages = set(s["Content"]["Packages"])
    assert "linux-image-amd64/bookworm-backports" in packages  # configfs-tsm needs Linux >= 6.7
    if shutil.which("dpkg-query") is None or shutil.which("readelf") is None:
        pytest.skip("dpkg or readelf missing: cannot map libraries to packages")
    dpkg = measure.Dpkg()
    for name in ("veil-runtime", "veil-cache"):
        exe = cvm["root"] / "usr/bin" / name
        needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]",
                            subprocess.run(["readelf", "-d", str(exe)], capture_output=True, text=True).stdout)
        paths = {Path(lib).name: lib for lib in measure.ldd(exe)}
        for lib in needed:
            owner = dpkg.package_of(paths[lib]).split(":")[0]
            assert owner in packages or owner == "libc6", (name, lib, owner)


def test_mkosi_parses_the_recipe() -> None:
    if shutil.which("mkosi") is None:
        pytest.skip("mkosi is not installed (Debian package mkosi)")
    p = subprocess.run(["mkosi", "--default", str(DEPLOY / "cvm" / "mkosi.default"), "--mirror",
                        "http://mirror.invalid/debian", "summary"], capture_output=True, text=True, timeout=TIMEOUT,
                       cwd=DEPLOY / "cvm")
    assert p.returncode == 0, p.stderr
    summary = " ".join((p.stdout + p.stderr).split())  # mkosi 14 prints its summary on stderr
    for line in ("Verity: yes", "Bootable: yes", "Unified Kernel Images: yes", "Output Format: gpt_squashfs",
                 "linux-image-amd64/bookworm-backports"):
        assert line in summary, line


# ---- Kubernetes ---------------------------------------------------------------------------------------------------

CLUSTER_SCOPED = {"Namespace"}
CRD_SCHEMAS = {
    ("serving.kserve.io/v1beta1", "InferenceService"): "serving.kserve.io_inferenceservice_v1beta1.json",
    ("serving.kserve.io/v1alpha1", "ServingRuntime"): "serving.kserve.io_servingruntime_v1alpha1.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com_servicemonitor_v1.json",
}


def pointer_replace(obj: dict, path: str, value: Any) -> None:
    parts = [p.replace("~1", "/").replace("~0", "~") for p in path.lstrip("/").split("/")]
    for p in parts[:-1]:
        obj = obj[int(p)] if isinstance(obj, list) else obj[p]
    assert parts[-1] in obj, path  # replace needs an existing member
    obj[parts[-1]] = value


def kustomize(directory: Path) -> list[dict]:
    """The subset of kustomize deploy/k8s uses: resources (files, directories), namespace, JSON 6902 replaces."""
    k = yaml.safe_load((directory / "kustomization.yaml").read_text())
    assert set(k) <= {"apiVersion", "kind", "namespace", "resources", "patches"}, set(k)
    objs: list[dict] = []
    for r in k["resources"]:
        path = (directory / r).resolve()
        objs += kustomize(path) if path.is_dir() else [d for d in yaml.safe_load_all(path.read_text()) if d]
    if "namespace" in k:
        for o in objs:
            if o["kind"] not in CLUSTER_SCOPED:
                o["metadata"]["namespace"] = k["namespace"]
    for patch in k.get("patches", []):
        t = patch["target"]
        hits = [o for o in objs if o["kind"] == t["kind"] and o["metadata"]["name"] == t["name"]
                and o["apiVersion"] == f"{t['group']}/{t['version']}"]
        assert len(hits) == 1, t
        for op in yaml.safe_load(patch["patch"]):
            assert op["op"] == "replace", op
            pointer_replace(hits[0], op["path"], op["value"])
    return objs


def strict_schema(node: Any, in_properties: bool = False) -> Any:
    """A CRD's structural schema as the API server applies it with strict field validation: unknown fields of an
    object that lists its properties are errors, unless it preserves unknown fields."""
    if isinstance(node, list):
        return [strict_schema(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: strict_schema(v, k in ("properties", "patternProperties") and not in_properties) for k, v in node.items()}
    if (not in_properties and "properties" in node and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


@pytest.fixture(scope="module")
def crd_validators() -> dict[tuple[str, str], Any]:
    import jsonschema
    out = {}
    for key, file in CRD_SCHEMAS.items():
        schema = strict_schema(json.loads((DEPLOY / "k8s" / "crd-schemas" / file).read_text()))
        jsonschema.Draft7Validator.check_schema(schema)
        out[key] = jsonschema.Draft7Validator(schema)
    return out


def validate(obj: dict, crd_validators: dict[tuple[str, str], Any]) -> list[str]:
    import kubernetes_validate
    key = (obj["apiVersion"], obj["kind"])
    if key in crd_validators:
        return [f"{list(e.absolute_path)}: {e.message}" for e in crd_validators[key].iter_errors(obj)]
    try:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        return [str(e).splitlines()[0]]
    return []


@pytest.fixture(scope="module")
def k8s() -> list[dict]:
    return kustomize(DEPLOY / "k8s")


def find(objs: list[dict], kind: str, name: str | None = None) -> dict:
    hits = [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(hits) == 1, (kind, name, len(hits))
    return hits[0]


def test_k8s_objects_validate_against_the_schemas(k8s: list[dict], crd_validators: dict) -> None:
    import kubernetes_validate.utils  # noqa: F401  (the package and its schemas are installed)
    kinds = sorted(o["kind"] for o in k8s)
    assert kinds == sorted(["Namespace", "Namespace", "ConfigMap", "ConfigMap", "Service", "Service", "StatefulSet",
                            "Deployment", "NetworkPolicy", "NetworkPolicy", "NetworkPolicy", "PodDisruptionBudget",
                            "ServiceMonitor", "ServingRuntime", "InferenceService"]), kinds
    for o in k8s + kustomize(DEPLOY / "k8s" / "runtime-snp"):
        assert validate(o, crd_validators) == [], (o["kind"], o["metadata"]["name"])
    # The validators are not vacuous: a misspelt field and a wrong type are refused, for core and CRD objects.
    for kind, edit in (("Deployment", lambda o: o["spec"]["template"]["spec"]["containers"][0]["securityContext"]
                        .update(readOnlyRootFilesytem=True)),
                       ("StatefulSet", lambda o: o["spec"].update(replicas="1")),
                       ("InferenceService", lambda o: o["spec"]["predictor"].update(runtimeClass="kata-qemu-tdx")),
                       ("ServingRuntime", lambda o: o["spec"]["containers"][0].update(arg=["x"])),
                       ("ServiceMonitor", lambda o: o["spec"]["endpoints"][0].update(intervall="30s"))):
        bad = copy.deepcopy(find(k8s, kind))
        edit(bad)
        assert validate(bad, crd_validators), kind


def test_kubectl_kustomize_renders_the_same_objects(k8s: list[dict]) -> None:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed")

    def canon(objs: list[dict]) -> list[str]:
        return sorted(json.dumps(o, sort_keys=True) for o in objs)

    for directory, mine in ((DEPLOY / "k8s", k8s), (DEPLOY / "k8s" / "runtime-snp",
                                                      kustomize(DEPLOY / "k8s" / "runtime-snp"))):
        p = subprocess.run(["kubectl", "kustomize", str(directory)], capture_output=True, text=True, timeout=TIMEOUT)
        assert p.returncode == 0, p.stderr
        assert canon([d for d in yaml.safe_load_all(p.stdout) if d]) == canon(mine), directory
    snp = kustomize(DEPLOY / "k8s" / "runtime-snp")
    assert find(snp, "InferenceService")["spec"]["predictor"]["runtimeClassName"] == "kata-qemu-snp"
    assert find(k8s, "InferenceService")["spec"]["predictor"]["runtimeClassName"] == "kata-qemu-tdx"


def pod_specs(objs: list[dict]) -> dict[str, dict]:
    """Every pod the manifests make, as a PodSpec: workloads' templates, and the KServe predictor (the
    InferenceService's predictor fields merged with its ServingRuntime's containers and volumes, as KServe does)."""
    out = {}
    for o in objs:
        if o["kind"] in ("Deployment", "StatefulSet"):
            spec = copy.deepcopy(o["spec"]["template"]["spec"])
            spec["volumes"] = spec.get("volumes", []) + [{"name": t["metadata"]["name"], "persistentVolumeClaim": {}}
                                                         for t in o["spec"].get("volumeClaimTemplates", [])]
            out[o["metadata"]["name"]] = {"labels": o["spec"]["template"]["metadata"]["labels"],
                                          "namespace": o["metadata"]["namespace"], **spec}
    isvc, sr = find(objs, "InferenceService"), find(objs, "ServingRuntime")
    pred = {k: v for k, v in isvc["spec"]["predictor"].items() if k not in ("model", "minReplicas", "maxReplicas")}
    out["predictor"] = {**pred, "containers": sr["spec"]["containers"], "volumes": sr["spec"]["volumes"],
                        "namespace": isvc["metadata"]["namespace"],
                        "labels": {"serving.kserve.io/inferenceservice": isvc["metadata"]["name"]}}
    return out


def container_file(objs: list[dict], pod: dict, container: dict, path: str) -> tuple[str, str, str] | None:
    """The (volume kind, object name, key) a file path of a container comes from, or None when no mount has it."""
    volumes = {v["name"]: v for v in pod["volumes"]}
    best = None
    for m in container.get("volumeMounts", []):
        mp = m["mountPath"]
        if path == mp or path.startswith(mp.rstrip("/") + "/"):
            if best is None or len(mp) > len(best["mountPath"]):
                best = m
    if best is None:
        return None
    vol = volumes[best["name"]]
    rel = best.get("subPath") or path[len(best["mountPath"]):].lstrip("/")
    for kind, field, ref in (("configMap", "configMap", "name"), ("secret", "secret", "secretName")):
        if field in vol:
            items = vol[field].get("items")
            key = next((i["key"] for i in items if i["path"] == rel), None) if items else rel
            assert key is not None, (path, vol)
            return kind, vol[field][ref], key
    return "emptyDir" if "emptyDir" in vol else "other", best["name"], rel


def test_k8s_names_mounts_and_configuration_files_agree(k8s: list[dict], tmp_path: Path) -> None:
    configmaps = {(o["metadata"]["namespace"], o["metadata"]["name"]): o["data"] for o in k8s
                  if o["kind"] == "ConfigMap"}
    pods = pod_specs(k8s)
    settings = {"veil-kbs": settings_of(BUILD / "veil-kbs"), "veil-runtime": settings_of(BUILD / "veil-runtime"),
                "veil-cache": settings_of(BUILD / "veil-cache")}
    for pod_name, pod in pods.items():
        ns = pod["namespace"]
        names = [v["name"] for v in pod["volumes"]]
        assert len(names) == len(set(names)), pod_name
        for v in pod["volumes"]:
            if "configMap" in v:
                assert (ns, v["configMap"]["name"]) in configmaps or v["configMap"]["name"] in RUNBOOK_CONFIGMAPS
            if "secret" in v:
                assert v["secret"]["secretName"] in RUNBOOK_SECRETS, v
        for c in pod["containers"]:
            for m in c.get("volumeMounts", []):
                assert m["name"] in names, (pod_name, c["name"], m)
            for env in c.get("env", []):
                ref = env.get("valueFrom", {})
                if "secretKeyRef" in ref:
                    assert ref["secretKeyRef"]["name"] in RUNBOOK_SECRETS
                if "configMapKeyRef" in ref:
                    assert ref["configMapKeyRef"]["name"] in RUNBOOK_CONFIGMAPS | {n for _, n in configmaps}
            args = c.get("args", [])
            if "--config" not in args:
                continue
            # The program: the command when one is set (the veil-runtime image also holds veil-cache), else the
            # image's entrypoint, named like the image (deploy/oci/build_image.py).
            daemon = Path(c["command"][0]).name if c.get("command") else c["image"].rsplit("/", 1)[1].split(":")[0]
            source = container_file(k8s, pod, c, args[args.index("--config") + 1])
            assert source is not None and source[0] == "configMap", (pod_name, c["name"], source)
            text = configmaps[(ns, source[1])][source[2]]
            pairs = conf_pairs(text)
            assert {k for k, _ in pairs} <= settings[daemon], (daemon, {k for k, _ in pairs} - settings[daemon])
            # Every file a setting names is mounted into this container, from a key that exists.
            for key, value in pairs:
                files = [value] if key in ("tls_cert", "tls_key", "master_key_file", "signing_key_file",
                                           "admin_token_file", "kbs_cacert") else []
                files += re.findall(r"sslrootcert=(\S+)", value)
                for f in files:
                    src = container_file(k8s, pod, c, f)
                    assert src is not None, (daemon, key, f)
                    if src[0] == "configMap" and src[1] not in RUNBOOK_CONFIGMAPS:
                        assert src[2] in configmaps[(ns, src[1])], (daemon, key, f)
            # The daemon accepts the configuration (it stops at what this machine lacks: a TEE, a certificate).
            conf = tmp_path / f"{pod_name}-{c['name']}.conf"
            conf.write_text(text)
            extra = [a.replace("$(VEIL_KBS_URL)", "https://kbs.example:8443") for a in args[args.index("--config") + 2:]]
            p = config_parses(BUILD / daemon, conf, *extra)
            if daemon == "veil-kbs":
                assert "/etc/veil/tls/tls.crt" in p.stderr, p.stderr
    # KServe: the predictor runs the ServingRuntime's kserve-container, on the model format it declares.
    isvc, sr = find(k8s, "InferenceService"), find(k8s, "ServingRuntime")
    model = isvc["spec"]["predictor"]["model"]
    assert model["runtime"] == sr["metadata"]["name"]
    assert model["modelFormat"]["name"] in [f["name"] for f in sr["spec"]["supportedModelFormats"]]
    containers = {c["name"]: c for c in sr["spec"]["containers"]}
    assert set(containers) == {"kserve-container", "veil-cache"}
    pred = isvc["spec"]["predictor"]
    assert pred["runtimeClassName"] in ("kata-qemu-tdx", "kata-qemu-snp") and pred["shareProcessNamespace"] is True
    rt = containers["kserve-container"]
    assert rt["resources"]["requests"] == rt["resources"]["limits"]  # the VM's shape is measured
    data = find(k8s, "ConfigMap", "veil-config")["data"]
    cache_conf, runtime_conf = dict(conf_pairs(data["cache.conf"])), dict(conf_pairs(data["runtime.conf"]))
    assert cache_conf["allowed_uids"] == str(rt["securityContext"]["runAsUser"])
    assert rt["securityContext"]["runAsGroup"] == containers["veil-cache"]["securityContext"]["runAsGroup"]
    assert cache_conf["socket"] == runtime_conf["cache_socket"]
    assert runtime_conf["models"].split(":", 1)[1].startswith("/mnt/models/")
    assert containers["veil-cache"]["securityContext"]["capabilities"]["add"] == ["SYS_PTRACE"]
    # Selectors: Services, the PDB, the NetworkPolicies and the ServiceMonitor select the pods they mean.
    def selects(selector: dict, labels: dict) -> bool:
        return all(labels.get(k) == v for k, v in selector.items())
    for o in k8s:
        if o["kind"] == "Service":
            assert [n for n, p in pods.items() if selects(o["spec"]["selector"], p["labels"])], o["metadata"]["name"]
        if o["kind"] in ("PodDisruptionBudget", "NetworkPolicy"):
            sel = o["spec"]["selector" if o["kind"] == "PodDisruptionBudget" else "podSelector"]["matchLabels"]
            assert [n for n, p in pods.items() if p["namespace"] == o["metadata"]["namespace"]
                    and selects(sel, p["labels"])], o["metadata"]["name"]
    sm, svc = find(k8s, "ServiceMonitor"), find(k8s, "Service", "veil-kbs")
    assert selects(sm["spec"]["selector"]["matchLabels"], svc["metadata"]["labels"])
    assert sm["spec"]["endpoints"][0]["port"] in [p["name"] for p in svc["spec"]["ports"]]
    kbs_conf = dict(conf_pairs(find(k8s, "ConfigMap", "veil-kbs-config")["data"]["kbs.conf"]))
    assert kbs_conf["store"] == "postgres" and find(k8s, "Deployment", "veil-kbs")["spec"]["replicas"] >= 2
    assert "password" not in kbs_conf["pg_conninfo"]
    # The runbook creates what the manifests expect.
    runbook = (ROOT / "docs" / "deploy.md").read_text()
    for name in sorted(RUNBOOK_CONFIGMAPS | RUNBOOK_SECRETS):
        assert name in runbook, f"docs/deploy.md does not say how to create {name}"


def test_init_data_annotation_carries_the_file() -> None:
    data = (DEPLOY / "k8s" / "runtime" / "initdata.toml").read_bytes()
    text = (DEPLOY / "k8s" / "runtime" / "inferenceservice.yaml").read_text()
    annotation = yaml.safe_load(text)["spec"]["predictor"]["annotations"][initdata.ANNOTATION]
    assert gzip.decompress(base64.b64decode(annotation, validate=True)) == data
    d = initdata.describe(data)
    assert d["annotation"] == annotation  # deterministic (no gzip name or time)
    digest = hashlib.sha384(data).digest()
    assert d["digest"] == d["tdx_mrconfigid"] == digest.hex() and d["snp_host_data"] == digest[:32].hex()
    doc = tomllib.loads(data.decode())
    assert doc["algorithm"] == "sha384" and doc["version"] == "0.1.0"
    # The shipped agent policy fails closed until genpolicy's replaces it.
    policy = doc["data"]["policy.rego"]
    for rule in ("CreateContainerRequest", "ExecProcessRequest", "ReadStreamRequest", "CopyFileRequest"):
        assert f"default {rule} := false" in policy, rule
    p = subprocess.run([sys.executable, str(DEPLOY / "k8s" / "initdata.py"),
                        str(DEPLOY / "k8s" / "runtime" / "initdata.toml"), "--check",
                        str(DEPLOY / "k8s" / "runtime" / "inferenceservice.yaml")], capture_output=True, text=True,
                       timeout=TIMEOUT)
    assert p.returncode == 0 and d["tdx_mrconfigid"] in p.stdout, p.stderr
