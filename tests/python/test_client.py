# SPDX-License-Identifier: Apache-2.0
"""veil.Client, `veil client verify` and veil.torch.SecureModel against a runtime that attests over TLS
(docs/spec/runtime-attestation.md).

The runtime is one swappable fixture, `runtime`: anything with `.url`, `.sim_pub` (the trusted sim platform key,
a path), `.measurement` (hex), `.models` (the served models as the binding lists them) and `.requests` (the
(method, path) of every request it received, or None when it cannot tell) works for the tests that need only
those. Until veil-runtime exists it is `FakeRuntime`: a threaded TLS server in this process (ssl, and a
self-signed certificate made with `cryptography`) that answers /v2/veil/attestation by calling libveil's
veil_runtime_attestation_answer (ctypes) with sim evidence and serves one fake KServe v2 model, "double"
(y = 2x + 1, binary tensors). Tests that need the fake's extra powers (replaying an old answer, rotating its
certificate, dropping connections, plain HTTP, an API key) use it directly.

Shown: the client accepts the runtime and pins its key (checked against `cryptography`'s own SPKI hash); it
refuses a TLS-terminating proxy (another certificate in front of the real runtime, forwarding the real answer
byte for byte), a replayed answer (another nonce), another measurement, a model below its minimum version, a
changed key on reconnect; and in every refusal no request but the attestation reaches the server. The CLI
accepts and refuses the same way, and its pin works with `curl --pinnedpubkey`. SecureModel runs on a tensor.
"""

from __future__ import annotations

import base64
import ctypes
import datetime
import hashlib
import http.client
import http.server
import ipaddress
import json
import os
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import threading
import urllib.parse
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
VEIL = os.environ.get("VEIL_BIN", str(ROOT / "build" / "release" / "veil"))
TIMEOUT = 60.0
ERROR = "veil: error: "

crypto_x509 = pytest.importorskip("cryptography.x509")
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from refusal import assert_refused  # noqa: E402

IMAGE = b"pretend veil-runtime image\n"


# ---- a self-signed certificate, as the runtime makes one inside its TEE -------------------------------------------


class Cert:
    def __init__(self, directory: Path, name: str) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = crypto_x509.Name([crypto_x509.NameAttribute(NameOID.COMMON_NAME, "veil-runtime")])
        now = datetime.datetime.now(datetime.timezone.utc)
        san = crypto_x509.SubjectAlternativeName([crypto_x509.DNSName("localhost"),
                                                  crypto_x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
        cert = (crypto_x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                .public_key(key.public_key()).serial_number(crypto_x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=1)).add_extension(san, critical=False)
                .sign(key, hashes.SHA256()))
        self.cert_path, self.key_path = directory / f"{name}.crt", directory / f"{name}.key"
        self.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()))
        self.der = cert.public_bytes(serialization.Encoding.DER)
        spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)
        self.spki_sha256 = hashlib.sha256(spki).digest()  # computed by cryptography, not by libveil

    @property
    def pin(self) -> str:
        return "sha256//" + base64.b64encode(self.spki_sha256).decode()

    def context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert_path, self.key_path)
        return ctx


# ---- libveil's runtime half, over ctypes -----------------------------------------------------------------------


class _BindingModel(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("model_id", ctypes.c_char_p), ("model_version", ctypes.c_uint64),
                ("key_version", ctypes.c_uint32), ("header_sha256", ctypes.c_uint8 * 32)]


class _ProviderConfig(ctypes.Structure):
    _fields_ = [("sim_dir", ctypes.c_char_p), ("sim_executable", ctypes.c_char_p), ("sim_config", ctypes.c_char_p),
                ("gramine_root", ctypes.c_char_p), ("tsm_root", ctypes.c_char_p), ("sim_svn", ctypes.c_uint32)]


def _cdll() -> ctypes.CDLL:
    import veil._lib

    lib = veil._lib.lib()
    lib.veil_runtime_attestation_answer.restype = ctypes.c_int
    lib.veil_runtime_attestation_answer.argtypes = [
        ctypes.c_int, ctypes.POINTER(_ProviderConfig), ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p,
        ctypes.POINTER(_BindingModel), ctypes.c_size_t, ctypes.POINTER(ctypes.c_void_p)]
    lib.veil_sim_init.restype = ctypes.c_int
    lib.veil_sim_init.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p)]
    return lib


def attestation_answer(sim_dir: Path, image: Path, nonce: bytes, spki: bytes, models: list[dict[str, Any]]) -> bytes:
    lib = _cdll()
    arr = (_BindingModel * max(len(models), 1))()
    for i, m in enumerate(models):
        arr[i] = _BindingModel(m["name"].encode(), m["model_id"].encode(), m["model_version"], m["key_version"],
                               (ctypes.c_uint8 * 32)(*bytes.fromhex(m["header_sha256"])))
    pc = _ProviderConfig(sim_dir=str(sim_dir).encode(), sim_executable=str(image).encode())
    nb = ctypes.create_string_buffer(nonce, len(nonce))
    sb = ctypes.create_string_buffer(spki, 32)
    out = ctypes.c_void_p()
    st = lib.veil_runtime_attestation_answer(1, ctypes.byref(pc), ctypes.addressof(nb), len(nonce),
                                             ctypes.addressof(sb), arr, len(models), ctypes.byref(out))
    if st != 0:
        raise RuntimeError(f"veil_runtime_attestation_answer: {st} {lib.veil_last_error()}")
    try:
        return ctypes.string_at(out.value)
    finally:
        lib.veil_free(out.value)


def sim_measurement(image: bytes) -> str:
    """docs/spec/evidence.md: SHA-384("VEIL-SIM-MEASUREMENT-V1" 0x00 || u64le(n) || exe || u64le(0))."""
    return hashlib.sha384(b"VEIL-SIM-MEASUREMENT-V1\0" + struct.pack("<Q", len(image)) + image +
                          struct.pack("<Q", 0)).hexdigest()


# ---- the fake runtime ------------------------------------------------------------------------------------------


MODELS = [
    {"name": "double", "model_id": "acme.double", "model_version": 3, "key_version": 1,
     "header_sha256": hashlib.sha256(b"sealed header of acme.double").hexdigest()},
    {"name": "other", "model_id": "acme.other", "model_version": 9, "key_version": 2,
     "header_sha256": hashlib.sha256(b"sealed header of acme.other").hexdigest()},
]
METADATA = {"name": "double", "versions": ["3"], "platform": "veil",
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}],
            "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 3]}]}


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection)

    def log_message(self, fmt: str, *args: Any) -> None:
        pass

    def send(self, status: int, body: bytes, ctype: str = "application/json",
             headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def error(self, status: int, message: str) -> None:
        self.send(status, json.dumps({"error": message}).encode())

    def body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def do_GET(self) -> None:
        self.server.record(self)
        self.server.app.get(self)

    def do_POST(self) -> None:
        data = self.body()
        self.server.record(self)
        self.server.app.post(self, data)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, app: Any, context: ssl.SSLContext | None) -> None:
        self.app = app
        self.context = context
        self.requests: list[tuple[str, str]] = []
        self.sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = super().get_request()
        if self.context is not None:
            sock = self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr

    def track(self, sock: socket.socket) -> None:
        if isinstance(sock, ssl.SSLSocket):
            sock.settimeout(TIMEOUT)
            sock.do_handshake()
        with self._lock:
            self.sockets.append(sock)

    def record(self, h: _Handler) -> None:
        with self._lock:
            self.requests.append((h.command, h.path))

    def drop_connections(self) -> None:
        with self._lock:
            socks, self.sockets = self.sockets, []
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    @property
    def url_port(self) -> int:
        return self.server_address[1]


def _serve(server: _Server) -> threading.Thread:
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    return t


class FakeRuntime:
    """veil-runtime's HTTP surface as far as clients see it: the attestation answer (libveil), health, metadata and
    the binary-tensor inference of model "double". `replay` serves the first answer it ever made, whatever the
    nonce; `rotate_certificate` serves new connections with a new key; `api_key` demands a bearer token."""

    def __init__(self, base: Path, sim_dir: Path, tls: bool = True, models: list[dict[str, Any]] | None = None,
                 api_key: str | None = None) -> None:
        self.base, self.sim_dir = base, sim_dir
        self.image = base / "veil-runtime.img"
        self.image.write_bytes(IMAGE)
        self.measurement = sim_measurement(IMAGE)
        self.sim_pub = sim_dir / "platform.pub"
        self.models = models if models is not None else MODELS
        self.api_key = api_key
        self.replay = False
        self.first_answer: bytes | None = None
        self.cert = Cert(base, "runtime") if tls else None
        self.server = _Server(self, self.cert.context() if self.cert else None)
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.server.url_port}"
        self._thread = _serve(self.server)

    @property
    def requests(self) -> list[tuple[str, str]]:
        return list(self.server.requests)

    def paths(self) -> list[str]:
        return [p.split("?")[0] for _, p in self.requests]

    def rotate_certificate(self) -> None:
        self.cert = Cert(self.base, "rotated")
        self.server.context = self.cert.context()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.server.drop_connections()

    # -- routes --

    def get(self, h: _Handler) -> None:
        u = urllib.parse.urlsplit(h.path)
        if u.path == "/v2/veil/attestation":
            return self.attestation(h, urllib.parse.parse_qs(u.query).get("nonce", [""])[0])
        if u.path == "/v2/health/ready":
            return h.send(200, b'{"ready":true}')
        if u.path == "/v2/models/double":
            return h.send(200, json.dumps(METADATA).encode())
        return h.error(404, "Not Found")

    def attestation(self, h: _Handler, nonce_hex: str) -> None:
        if self.replay and self.first_answer is not None:
            return h.send(200, self.first_answer)
        try:
            nonce = bytes.fromhex(nonce_hex)
        except ValueError:
            return h.error(400, "nonce must be hex")
        spki = self.cert.spki_sha256 if self.cert is not None else bytes(32)  # plain HTTP: no key, all zero
        answer = attestation_answer(self.sim_dir, self.image, nonce, spki, self.models)
        self.first_answer = self.first_answer or answer
        h.send(200, answer)

    def post(self, h: _Handler, body: bytes) -> None:
        if h.path != "/v2/models/double/infer":
            return h.error(404, "Not Found")
        if self.api_key is not None and h.headers.get("Authorization") != f"Bearer {self.api_key}":
            return h.error(401, "missing or wrong API key")
        n = int(h.headers.get("Inference-Header-Content-Length", len(body)))
        req = json.loads(body[:n])
        (inp,) = req["inputs"]
        if inp["name"] != "x" or inp["datatype"] != "FP32":
            return h.error(400, f"unexpected inference input '{inp['name']}' for model 'double'")
        x = np.frombuffer(body[n:], dtype="<f4").reshape(inp["shape"])
        y = (2 * x + 1).astype("<f4").tobytes()
        head = json.dumps({"model_name": "double", "model_version": "3", "outputs": [
            {"name": "y", "datatype": "FP32", "shape": inp["shape"], "parameters": {"binary_data_size": len(y)}}]},
            separators=(",", ":")).encode()
        h.send(200, head + y, "application/octet-stream", {"Inference-Header-Content-Length": str(len(head))})


class TlsProxy:
    """A TLS-terminating proxy with its own certificate in front of a runtime: it forwards every request and the
    runtime's answer byte for byte, so the answer is genuine and fresh, but bound to the runtime's key, not the
    proxy's. It records what it received."""

    def __init__(self, base: Path, target: str) -> None:
        self.target = urllib.parse.urlsplit(target)
        self.cert = Cert(base, "proxy")
        self.server = _Server(self, self.cert.context())
        self.url = f"https://127.0.0.1:{self.server.url_port}"
        _serve(self.server)

    @property
    def requests(self) -> list[tuple[str, str]]:
        return list(self.server.requests)

    def forward(self, h: _Handler, body: bytes | None) -> None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        c = http.client.HTTPSConnection(self.target.hostname, self.target.port, context=ctx, timeout=TIMEOUT)
        headers = {k: v for k, v in h.headers.items() if k.lower() not in ("host", "connection")}
        c.request(h.command, h.path, body=body, headers=headers)
        r = c.getresponse()
        data = r.read()
        extra = {k: v for k, v in r.getheaders() if k.lower() == "inference-header-content-length"}
        h.send(r.status, data, r.getheader("Content-Type", "application/json"), extra)
        c.close()

    def get(self, h: _Handler) -> None:
        self.forward(h, None)

    def post(self, h: _Handler, body: bytes) -> None:
        self.forward(h, body)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# ---- fixtures ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sim_dir(tmp_path_factory: pytest.TempPathFactory, libveil: str) -> Path:
    d = tmp_path_factory.mktemp("client-sim") / "platform"
    pub = ctypes.c_void_p()
    lib = _cdll()
    assert lib.veil_sim_init(str(d).encode(), ctypes.byref(pub)) == 0, lib.veil_last_error()
    lib.veil_free(pub.value)
    return d


@pytest.fixture
def fake(tmp_path: Path, sim_dir: Path):
    rt = FakeRuntime(tmp_path, sim_dir)
    yield rt
    rt.stop()


@pytest.fixture
def runtime(fake: FakeRuntime) -> FakeRuntime:
    """The runtime under test. Swap in the real veil-runtime here: start it with a sealed model whose sim
    measurement and models are known, and return an object with .url, .sim_pub, .measurement, .models and
    .requests (None when the daemon cannot report what it received)."""
    return fake


def policy_for(rt: Any, measurement: str | None = None, models: dict[str, int] | None = None,
               require_all: bool = False) -> dict[str, Any]:
    return {"version": 1,
            "attestation": {"version": 1, "allow_sim": True, "sim": {"measurements": [measurement or rt.measurement]}},
            "models": {mid: {"min_model_version": v} for mid, v in (models or {}).items()},
            "require_all_models_listed": require_all}


def client(rt: Any, **kwargs: Any):
    import veil

    kwargs.setdefault("policy", policy_for(rt))
    kwargs.setdefault("sim_keys", [rt.sim_pub])
    kwargs.setdefault("timeout", TIMEOUT)
    with pytest.warns(RuntimeWarning, match="SIMULATION TEE"):
        return veil.Client(rt.url, **kwargs)


def only_attestation(rt: Any) -> None:
    """No request but attestation requests reached the runtime."""
    if rt.requests is not None:
        assert all(p.startswith("/v2/veil/attestation?nonce=") for _, p in rt.requests), rt.requests


# ---- the client accepts an attested runtime ------------------------------------------------------------------------


def test_accepts_and_pins(runtime: Any) -> None:
    import veil

    c = client(runtime, policy=policy_for(runtime, models={"acme.double": 3}), require_models=["acme.double"])
    with c:
        a = c.attestation
        assert a["verified"] is True and a["tee"] == "sim"
        assert a["claims"]["measurement"] == runtime.measurement
        assert [m["name"] for m in a["models"]] == sorted(m["name"] for m in runtime.models)
        assert a["channel"]["binding"] == "tls-spki-sha256" and a["channel"]["checked"] is True
        if isinstance(runtime, FakeRuntime):
            # The pinned key is the one cryptography computes from the server's certificate.
            assert c.spki_sha256 == runtime.cert.spki_sha256
            assert veil.cert_spki_sha256(runtime.cert.der) == runtime.cert.spki_sha256
            assert veil.cert_spki_sha256(runtime.cert.cert_path.read_bytes()) == runtime.cert.spki_sha256
            assert c.pin == runtime.cert.pin == a["channel"]["curl_pin"]
        assert c.ready()
        x = np.arange(6, dtype=np.float32).reshape(2, 3)
        out = c.infer("double", {"x": x})
        np.testing.assert_array_equal(out["y"], 2 * x + 1)
        out = c.infer("double", {"x": x}, outputs=["y"])
        np.testing.assert_array_equal(out["y"], 2 * x + 1)
        assert c.model_metadata("double")["inputs"][0]["name"] == "x"
    if runtime.requests is not None:
        paths = [p.split("?")[0] for _, p in runtime.requests]
        assert paths[0] == "/v2/veil/attestation"  # nothing before the attestation
        assert paths[1:] == ["/v2/health/ready", "/v2/models/double/infer", "/v2/models/double/infer",
                             "/v2/models/double"]


def test_reconnect_checks_the_pin(fake: FakeRuntime) -> None:
    import veil

    c = client(fake)
    x = np.ones((1, 3), np.float32)
    fake.server.drop_connections()  # the server closes the kept-alive connection: the client reconnects
    np.testing.assert_array_equal(c.infer("double", {"x": x})["y"], 3 * x)
    before = len(fake.requests)
    fake.rotate_certificate()  # another key on the next connection: a restarted runtime, or an attacker
    fake.server.drop_connections()
    with pytest.raises(veil.VerificationError, match="not the attested one"):
        c.infer("double", {"x": x})
    assert len(fake.requests) == before  # the request never reached the server
    c.close()


# ---- refusals: nothing but the attestation request reaches the server -------------------------------------------


def test_refuses_tls_terminating_proxy(runtime: Any, tmp_path: Path) -> None:
    import veil

    proxy = TlsProxy(tmp_path, runtime.url)
    try:
        with pytest.raises(veil.VerificationError, match="tls_spki_sha256 is not the key of the certificate"):
            veil.Client(proxy.url, policy=policy_for(runtime), sim_keys=[runtime.sim_pub], timeout=TIMEOUT)
        assert [p.split("?")[0] for _, p in proxy.requests] == ["/v2/veil/attestation"]
        only_attestation(runtime)
    finally:
        proxy.stop()


def test_refuses_replayed_answer(fake: FakeRuntime) -> None:
    import veil

    client(fake).close()
    fake.replay = True  # the server answers every nonce with its first answer
    with pytest.raises(veil.VerificationError, match="binding.nonce is not the nonce this client sent"):
        veil.Client(fake.url, policy=policy_for(fake), sim_keys=[fake.sim_pub], timeout=TIMEOUT)
    only_attestation(fake)


def test_refuses_other_measurement(runtime: Any) -> None:
    import veil

    other = sim_measurement(b"another image")
    with pytest.raises(veil.PolicyError, match="measurement"):
        veil.Client(runtime.url, policy=policy_for(runtime, measurement=other), sim_keys=[runtime.sim_pub],
                    timeout=TIMEOUT)
    only_attestation(runtime)


def test_refuses_model_below_minimum(runtime: Any) -> None:
    import veil

    served = {m["model_id"]: m["model_version"] for m in runtime.models}
    mid, version = next(iter(served.items()))
    with pytest.raises(veil.PolicyError, match=f"model_version {version}, below the policy's minimum {version + 1}"):
        veil.Client(runtime.url, policy=policy_for(runtime, models={mid: version + 1}), sim_keys=[runtime.sim_pub],
                    timeout=TIMEOUT)
    with pytest.raises(veil.PolicyError, match="served but not listed"):
        veil.Client(runtime.url, policy=policy_for(runtime, models={mid: version}, require_all=True),
                    sim_keys=[runtime.sim_pub], timeout=TIMEOUT)
    with pytest.raises(veil.PolicyError, match="required model id acme.absent"):
        veil.Client(runtime.url, policy=policy_for(runtime), sim_keys=[runtime.sim_pub],
                    require_models=["acme.absent"], timeout=TIMEOUT)
    only_attestation(runtime)


def test_refuses_untrusted_platform(runtime: Any, tmp_path: Path) -> None:
    import veil

    lib, pub = _cdll(), ctypes.c_void_p()
    assert lib.veil_sim_init(str(tmp_path / "other-platform").encode(), ctypes.byref(pub)) == 0
    other = ctypes.string_at(pub.value)
    lib.veil_free(pub.value)
    with pytest.raises(veil.VerificationError, match="evidence"):
        veil.Client(runtime.url, policy=policy_for(runtime), sim_keys=[other], timeout=TIMEOUT)
    only_attestation(runtime)


def test_secure_model_refused_sends_nothing(runtime: Any) -> None:
    vtorch = pytest.importorskip("veil.torch")
    import veil

    with pytest.raises(veil.PolicyError):
        vtorch.SecureModel(runtime.url, "double", policy=policy_for(runtime, measurement="00" * 48),
                           sim_keys=[runtime.sim_pub], timeout=TIMEOUT)
    only_attestation(runtime)


def test_unlisted_model_and_http_errors(fake: FakeRuntime) -> None:
    import veil

    c = client(fake)
    before = len(fake.requests)
    with pytest.raises(veil.PolicyError, match="not among the models the runtime's attestation binds"):
        c.infer("nope", {"x": np.zeros((1, 3), np.float32)})
    assert len(fake.requests) == before
    with pytest.raises(veil.ArgumentError, match=r"\[400\] unexpected inference input 'q'") as e:
        c.infer("double", {"q": np.zeros((1, 3), np.float32)})
    assert e.value.http_status == 400
    with pytest.raises(veil.ArgumentError, match=r"\[404\] Not Found"):
        c.infer("other", {"x": np.zeros((1, 3), np.float32)})
    c.close()


def test_api_key(tmp_path: Path, sim_dir: Path) -> None:
    import veil

    rt = FakeRuntime(tmp_path, sim_dir, api_key="s3cret-token")
    try:
        x = np.ones((1, 3), np.float32)
        np.testing.assert_array_equal(client(rt, api_key="s3cret-token").infer("double", {"x": x})["y"], 3 * x)
        with pytest.raises(veil.AuthenticationError, match="wrong API key") as e:
            client(rt, api_key="wrong-token").infer("double", {"x": x})
        assert e.value.http_status == 401 and "wrong-token" not in str(e.value)
    finally:
        rt.stop()


def test_insecure_http(tmp_path: Path, sim_dir: Path) -> None:
    import veil

    rt = FakeRuntime(tmp_path, sim_dir, tls=False)
    try:
        with pytest.raises(veil.ArgumentError, match="refusing plain http"):
            veil.Client(rt.url, policy=policy_for(rt), sim_keys=[rt.sim_pub])
        assert rt.requests == []
        with pytest.raises(veil.ArgumentError, match="loopback"):
            veil.Client("http://192.0.2.1:8080", policy=policy_for(rt), sim_keys=[rt.sim_pub], insecure_http=True)
        with pytest.warns(RuntimeWarning) as record:
            c = veil.Client(rt.url, policy=policy_for(rt), sim_keys=[rt.sim_pub], insecure_http=True)
        messages = [str(w.message) for w in record]
        assert any("NO channel binding" in m for m in messages)  # before the request
        assert any("NO CHANNEL BINDING" in m for m in messages) and any("SIMULATION TEE" in m for m in messages)
        assert c.spki_sha256 is None and c.pin is None
        assert c.attestation["channel"] == {"tls_spki_sha256": "00" * 32, "binding": "none", "checked": False}
        assert any("NO CHANNEL BINDING" in w for w in c.attestation["warnings"])
        x = np.ones((2, 3), np.float32)
        np.testing.assert_array_equal(c.infer("double", {"x": x})["y"], 3 * x)
        c.close()
    finally:
        rt.stop()


# ---- the CLI ----------------------------------------------------------------------------------------------------


def veil_cli(*args: Any) -> subprocess.CompletedProcess[str]:
    if not Path(VEIL).exists():
        if os.environ.get("VEIL_BIN"):
            pytest.fail(f"VEIL_BIN={VEIL} does not exist")
        pytest.skip("veil CLI not built")
    return subprocess.run([VEIL, *map(str, args)], capture_output=True, text=True, timeout=TIMEOUT)


def test_cli_verify(runtime: Any, tmp_path: Path) -> None:
    pol = tmp_path / "policy.json"
    pol.write_text(json.dumps(policy_for(runtime, models={"acme.double": 3})))
    cert = tmp_path / "runtime.pem"
    p = veil_cli("client", "verify", runtime.url, "--policy", pol, "--sim-key", runtime.sim_pub, "--json",
                 "--save-cert", cert, "--require-model", "acme.double")
    assert p.returncode == 0, p.stderr
    assert "SIMULATION TEE" in p.stderr
    report = json.loads(p.stdout)
    assert report["verified"] is True and report["claims"]["measurement"] == runtime.measurement
    import veil

    spki = veil.cert_spki_sha256(cert.read_bytes())  # the saved certificate is the pinned one
    assert report["channel"]["tls_spki_sha256"] == spki.hex()
    assert report["channel"]["curl_pin"] == veil.spki_pin(spki)
    if isinstance(runtime, FakeRuntime):
        assert spki == runtime.cert.spki_sha256
    p = veil_cli("client", "verify", runtime.url, "--policy", pol, "--sim-key", runtime.sim_pub)
    assert p.returncode == 0, p.stderr
    assert f"curl pin:         {veil.spki_pin(spki)}" in p.stdout
    assert "models:           double (model id acme.double, version 3, key version 1)" in p.stdout

    # The saved certificate works as a CA file, as tritonclient's ssl_options={"ca_certs": FILE} uses it
    # (the runtime's certificate names localhost and 127.0.0.1).
    ctx = ssl.create_default_context(cafile=str(cert))
    u = urllib.parse.urlsplit(runtime.url)
    conn = http.client.HTTPSConnection(u.hostname, u.port, context=ctx, timeout=TIMEOUT)
    conn.request("GET", "/v2/health/ready")
    assert conn.getresponse().status == 200
    conn.close()

    # An unchanged client pinned to the printed key talks to this runtime, and to no other.
    curl = shutil.which("curl")
    if curl is not None:
        env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}  # a sanitizer preload hangs curl
        ok = subprocess.run([curl, "-sS", "-k", "--pinnedpubkey", veil.spki_pin(spki), runtime.url +
                             "/v2/health/ready"], capture_output=True, text=True, timeout=TIMEOUT, env=env)
        assert ok.returncode == 0 and '"ready":true' in ok.stdout, ok.stderr
        bad = subprocess.run([curl, "-sS", "-k", "--pinnedpubkey", veil.spki_pin(bytes(32)), runtime.url +
                              "/v2/health/ready"], capture_output=True, text=True, timeout=TIMEOUT, env=env)
        assert bad.returncode != 0


def test_cli_refuses(runtime: Any, tmp_path: Path) -> None:
    pol = tmp_path / "policy.json"
    pol.write_text(json.dumps(policy_for(runtime)))
    proxy = TlsProxy(tmp_path, runtime.url)
    try:
        p = veil_cli("client", "verify", proxy.url, "--policy", pol, "--sim-key", runtime.sim_pub)
    finally:
        proxy.stop()
    assert p.returncode == 1, p
    errors = [line for line in p.stderr.splitlines() if line.startswith(ERROR)]
    assert len(errors) == 1 and "tls_spki_sha256 is not the key of the certificate" in errors[0], p.stderr
    assert p.stdout == ""
    other = tmp_path / "other.json"
    other.write_text(json.dumps(policy_for(runtime, models={runtime.models[0]["model_id"]: 10**6})))
    p = veil_cli("client", "verify", runtime.url, "--policy", other, "--sim-key", runtime.sim_pub)
    assert p.returncode == 1 and "below the policy's minimum 1000000" in p.stderr, p.stderr
    only_attestation(runtime)
    # Usage errors: plain http without --insecure-http, no policy.
    assert_refused(veil_cli("client", "verify", runtime.url.replace("https", "http"), "--policy", pol),
                   "the URL must be https://", exit_code=2)
    assert_refused(veil_cli("client", "verify", runtime.url), "--policy FILE is required", exit_code=2)
    assert veil_cli("client", "verify", "--help").returncode == 0


# ---- veil.torch.SecureModel --------------------------------------------------------------------------------------


def test_secure_model(runtime: Any) -> None:
    torch = pytest.importorskip("torch")
    vtorch = pytest.importorskip("veil.torch")

    with pytest.warns(RuntimeWarning, match="SIMULATION TEE"):
        m = vtorch.SecureModel(runtime.url, "double", policy=policy_for(runtime), sim_keys=[runtime.sim_pub],
                               timeout=TIMEOUT)
    x = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    with torch.no_grad():
        y = m(x)
    assert isinstance(y, torch.Tensor) and y.dtype == torch.float32
    torch.testing.assert_close(y, 2 * x + 1)
    assert m.input_names == ["x"] and m.output_names == ["y"]
    m.close()
