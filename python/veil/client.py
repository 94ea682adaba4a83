"""``veil.Client``: talk to an attested veil-runtime over KServe v2 REST (docs/spec/runtime-attestation.md).

    client = veil.Client("https://node.example:8443", policy="client-policy.json", sim_keys=["platform.pub"])
    print(client.attestation["claims"]["measurement"], client.pin)
    (probs,) = client.infer("resnet50", {"input": x}).values()

The runtime's certificate is self-signed inside its TEE, so no CA can vouch for it; the attestation does. Before the
constructor returns, it opens one TLS connection (no CA verification), takes the certificate the server presented
on it, asks that same connection for ``/v2/veil/attestation`` with a fresh 32-byte nonce, and has libveil verify
the answer (``veil_runtime_verify``): the nonce, the SHA-256 of the certificate's SubjectPublicKeyInfo, the
evidence against the vendor roots, the claims against the client policy's ``attestation`` member, and every served
model against its minimum version. Then it pins that key: every later connection (reconnects included) is
refused, before a byte of the request leaves, unless the server presents the same key. Nothing but the attestation
request is ever sent before verification passed; a refused runtime raises and no Client exists.

Errors (the ``veil.errors`` tree): verification failures are libveil's (``VerificationError``, ``PolicyError``,
``EvidenceError``, ``ExpiredError``, ``LimitError``); a changed server key on reconnect is a
``VerificationError``; a request for a model the attestation does not list is a ``PolicyError``; transport
failures are ``FileError`` (I/O). An HTTP error answer raises, with ``.http_status`` set and the server's
``{"error": ...}`` text as the message: 400/404/405/422 ``ArgumentError``, 401 ``AuthenticationError``, 403/429
``PolicyError``, 413 ``LimitError``, 501 ``UnsupportedError``, 502/503/504 ``FileError``, other 5xx
``InternalError``; a malformed answer is a ``FormatError``.

``insecure_http=True`` (``http://`` to a loopback address, simulation TEE only) skips the channel binding: the
answer then proves nothing about the connection, anyone on the path can read and change the traffic, and the
client warns about it on every construction.
"""

from __future__ import annotations

import ctypes
import hmac
import http.client
import ipaddress
import json
import os
import ssl
import struct
import threading
import time
import urllib.parse
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Union

import numpy as np

from . import _lib
from .errors import (
    ArgumentError,
    AuthenticationError,
    FileError,
    FormatError,
    InternalError,
    LimitError,
    PolicyError,
    UnsupportedError,
    VeilError,
    VerificationError,
)

__all__ = ["Client", "cert_spki_sha256", "spki_pin"]

PathLike = Union[str, "os.PathLike[str]"]
NONCE_SIZE = 32
DEFAULT_MAX_RESPONSE_SIZE = 256 << 20
ATTESTATION_PATH = "/v2/veil/attestation"
SPKI_SHA256_SIZE = 32


class _VerifyOptions(ctypes.Structure):
    """struct veil_verify_options"""

    _fields_ = [
        ("now", ctypes.c_uint64),
        ("collateral_path", ctypes.c_char_p),
        ("pccs_url", ctypes.c_char_p),
        ("collateral_cache_dir", ctypes.c_char_p),
        ("sim_trusted_keys", ctypes.POINTER(ctypes.c_char_p)),
        ("sim_trusted_key_count", ctypes.c_size_t),
        ("snp_cert_path", ctypes.c_char_p),
    ]


class _RuntimeVerifyOptions(ctypes.Structure):
    """struct veil_runtime_verify_options"""

    _fields_ = [
        ("nonce", ctypes.c_void_p),
        ("nonce_size", ctypes.c_size_t),
        ("tls_spki_sha256", ctypes.c_void_p),
        ("insecure_no_channel_binding", ctypes.c_int),
        ("verify", ctypes.POINTER(_VerifyOptions)),
        ("required_model_ids", ctypes.POINTER(ctypes.c_char_p)),
        ("required_model_count", ctypes.c_size_t),
    ]


_P = ctypes.c_void_p
_SZ = ctypes.c_size_t
_SIGNATURES: dict[str, tuple[object, list[object]]] = {
    "veil_runtime_nonce_min_size": (_SZ, []),
    "veil_runtime_nonce_max_size": (_SZ, []),
    "veil_runtime_answer_max_size": (_SZ, []),
    "veil_spki_pin_size": (_SZ, []),
    "veil_cert_spki_sha256": (ctypes.c_int, [_P, _SZ, _P]),
    "veil_spki_pin": (ctypes.c_int, [_P, _P]),
    "veil_client_policy_parse": (ctypes.c_int, [_P, _SZ, ctypes.POINTER(_P)]),
    "veil_client_policy_free": (None, [_P]),
    "veil_runtime_verify": (ctypes.c_int, [_P, _SZ, _P, ctypes.POINTER(_RuntimeVerifyOptions), ctypes.POINTER(_P)]),
}
def _compatible(cdll: ctypes.CDLL) -> None:
    if not cdll.veil_runtime_nonce_min_size() <= NONCE_SIZE <= cdll.veil_runtime_nonce_max_size():
        raise ArgumentError("incompatible libveil: the runtime nonce sizes changed")


def _cdll() -> ctypes.CDLL:
    """libveil with the client's signatures declared."""
    return _lib.bind(_SIGNATURES, _compatible)


def cert_spki_sha256(cert: bytes) -> bytes:
    """SHA-256 of the DER SubjectPublicKeyInfo of a certificate (DER, or PEM: its first CERTIFICATE block)."""
    buf = _lib.Buffer(cert)
    out = (ctypes.c_uint8 * SPKI_SHA256_SIZE)()
    _lib.check(_cdll().veil_cert_spki_sha256(buf.address, buf.size, ctypes.addressof(out)))
    return bytes(out)


def spki_pin(spki_sha256: bytes) -> str:
    """The pin ``curl --pinnedpubkey`` takes: ``sha256//`` + base64 of the 32-byte key hash."""
    if len(spki_sha256) != SPKI_SHA256_SIZE:
        raise ArgumentError(f"a key hash is {SPKI_SHA256_SIZE} bytes")
    cdll = _cdll()
    key = (ctypes.c_uint8 * SPKI_SHA256_SIZE).from_buffer_copy(spki_sha256)
    out = ctypes.create_string_buffer(cdll.veil_spki_pin_size())
    _lib.check(cdll.veil_spki_pin(ctypes.addressof(key), ctypes.addressof(out)))
    return out.value.decode("ascii")


# ---- inputs ------------------------------------------------------------------------------------------------------


def _read_bytes(source: PathLike | bytes, what: str) -> bytes:
    if isinstance(source, (bytes, bytearray)):
        return bytes(source)
    try:
        with open(source, "rb") as f:
            return f.read()
    except OSError as e:
        raise FileError(f"cannot read {what} {os.fspath(source)}: {e.strerror}") from e


def _policy_bytes(policy: Mapping[str, Any] | PathLike | bytes) -> bytes:
    if isinstance(policy, Mapping):
        return json.dumps(policy).encode()
    return _read_bytes(policy, "client policy")


def _sim_key(key: PathLike | bytes) -> bytes:
    """A trusted sim platform key: PEM text (str or bytes starting with -----BEGIN), or a path to it."""
    if isinstance(key, str) and key.lstrip().startswith("-----BEGIN"):
        return key.encode()
    if isinstance(key, (bytes, bytearray)) and bytes(key).lstrip().startswith(b"-----BEGIN"):
        return bytes(key)
    return _read_bytes(key, "sim key")


class _Policy:
    """An opaque veil_client_policy, parsed once."""

    def __init__(self, text: bytes) -> None:
        cdll = _cdll()
        buf = _lib.Buffer(text)
        ptr = ctypes.c_void_p()
        _lib.check(cdll.veil_client_policy_parse(buf.address, buf.size, ctypes.byref(ptr)))
        self.ptr: int | None = ptr.value

    def close(self) -> None:
        if self.ptr:
            _cdll().veil_client_policy_free(self.ptr)
            self.ptr = None

    def __del__(self) -> None:
        self.close()


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Target:
    """The runtime's URL: scheme, host, port and path prefix (https://host[:port][/prefix])."""

    def __init__(self, url: str, insecure_http: bool) -> None:
        u = urllib.parse.urlsplit(url)
        if u.scheme not in ("https", "http") or not u.hostname:
            raise ArgumentError(f"the runtime URL must be https://host[:port][/prefix], not {url!r}")
        if u.query or u.fragment or u.username or u.password:
            raise ArgumentError("the runtime URL must have no query, fragment or credentials")
        if u.scheme == "http" and not insecure_http:
            raise ArgumentError("refusing plain http://: the attestation cannot bind a channel without TLS "
                                "(insecure_http=True allows it on loopback, for the simulation TEE only)")
        if u.scheme == "https" and insecure_http:
            raise ArgumentError("insecure_http=True goes with an http:// URL only")
        if insecure_http and not _is_loopback(u.hostname):
            raise ArgumentError(f"insecure_http=True allows loopback addresses only, not {u.hostname}")
        self.url = url
        self.tls = u.scheme == "https"
        self.host = u.hostname
        self.port = u.port or (443 if self.tls else 80)
        self.prefix = u.path.rstrip("/")

    def path(self, path: str) -> str:
        return self.prefix + path


# ---- connections -------------------------------------------------------------------------------------------------


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """An HTTPS connection that records the key of the certificate each new TLS session presents and, once a key
    is pinned, closes the connection before anything is sent unless it is the pinned one. http.client opens
    connections through connect() in every case (first use, reconnect after close), so no path skips the check."""

    def __init__(self, host: str, port: int, timeout: float, pinned: bytes | None) -> None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.check_hostname = False       # self-signed inside the TEE: the attestation binds the key instead
        ctx.verify_mode = ssl.CERT_NONE
        super().__init__(host, port, timeout=timeout, context=ctx)
        self.pinned = pinned
        self.peer_spki: bytes | None = None

    def connect(self) -> None:
        self.peer_spki = None
        super().connect()
        try:
            der = self.sock.getpeercert(binary_form=True)
            if not der:
                raise VerificationError("the runtime presented no TLS certificate")
            spki = cert_spki_sha256(der)
            if self.pinned is not None and not hmac.compare_digest(spki, self.pinned):
                raise VerificationError(
                    "the runtime's TLS key is not the attested one (another server, a TLS-terminating proxy, or a "
                    f"restarted runtime): key sha256 {spki.hex()}, attested {self.pinned.hex()}; nothing was sent; "
                    "create a new Client to attest again")
            self.peer_spki = spki
        except BaseException:
            self.close()
            raise


class _PlainHTTPConnection(http.client.HTTPConnection):
    """insecure_http: no TLS, nothing to pin."""

    peer_spki: bytes | None = None


# What a kept-alive connection the server has closed meanwhile raises: the request is retried once, on a new
# connection (whose key is checked against the pin before anything is sent).
_CLOSED_BY_PEER = (http.client.RemoteDisconnected, ConnectionError, ssl.SSLEOFError, ssl.SSLZeroReturnError)


# ---- HTTP errors -------------------------------------------------------------------------------------------------

_HTTP_ERRORS: dict[int, type[VeilError]] = {
    400: ArgumentError, 404: ArgumentError, 405: ArgumentError, 422: ArgumentError, 401: AuthenticationError,
    403: PolicyError, 429: PolicyError, 413: LimitError, 501: UnsupportedError, 502: FileError, 503: FileError,
    504: FileError,
}


def _server_message(body: bytes) -> str:
    try:
        text = json.loads(body.decode("utf-8"))["error"]
        if isinstance(text, str):
            return text[:1000]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        pass
    return body[:200].decode("utf-8", "replace") or "(no error message)"


def _http_error(status: int, body: bytes, what: str) -> VeilError:
    cls = _HTTP_ERRORS.get(status) or (InternalError if status >= 500 else ArgumentError)
    message = _server_message(body)
    err = cls(f"[{status}] {message}", detail=f"{what}: {message}")
    err.http_status = status  # type: ignore[attr-defined]
    return err


# ---- KServe v2 tensors (serving.md section 3 and 4) --------------------------------------------------------------

_DATATYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype("bool"), "UINT8": np.dtype("u1"), "UINT16": np.dtype("<u2"), "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"), "INT8": np.dtype("i1"), "INT16": np.dtype("<i2"), "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"), "FP16": np.dtype("<f2"), "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"),
}


def _datatype(a: np.ndarray) -> str:
    if a.dtype == object or a.dtype.kind in ("S", "U"):
        return "BYTES"
    for name, dt in _DATATYPES.items():
        if a.dtype.kind == dt.kind and a.dtype.itemsize == dt.itemsize:
            return name
    raise ArgumentError(f"numpy dtype {a.dtype} has no KServe v2 datatype")


def _encode(a: np.ndarray) -> tuple[str, bytes]:
    dt = _datatype(a)
    if dt != "BYTES":
        return dt, np.ascontiguousarray(a, dtype=_DATATYPES[dt]).tobytes()
    parts = []
    for x in a.reshape(-1):
        b = x.encode() if isinstance(x, str) else bytes(x)
        parts.append(struct.pack("<I", len(b)) + b)
    return dt, b"".join(parts)


def _decode_bytes(raw: bytes, count: int) -> np.ndarray:
    out, off = [], 0
    for _ in range(count):
        if off + 4 > len(raw):
            raise FormatError("malformed BYTES tensor in the inference answer")
        (n,) = struct.unpack_from("<I", raw, off)
        if off + 4 + n > len(raw):
            raise FormatError("malformed BYTES tensor in the inference answer")
        out.append(raw[off + 4 : off + 4 + n])
        off += 4 + n
    if off != len(raw):
        raise FormatError("trailing bytes in a BYTES tensor of the inference answer")
    arr = np.empty(count, dtype=object)
    arr[:] = out
    return arr


def _decode_output(out: Mapping[str, Any], tail: bytes, off: int) -> tuple[np.ndarray, int]:
    dt, shape = out["datatype"], [int(d) for d in out["shape"]]
    count = int(np.prod(shape, dtype=np.int64))
    params = out.get("parameters") or {}
    if "binary_data_size" in params:
        size = int(params["binary_data_size"])
        if size < 0 or off + size > len(tail):
            raise FormatError(f"output {out['name']!r}: binary_data_size runs past the answer")
        raw = tail[off : off + size]
        if dt == "BYTES":
            return _decode_bytes(raw, count).reshape(shape), off + size
        if dt not in _DATATYPES:
            raise FormatError(f"output {out['name']!r}: unknown datatype {dt!r}")
        if size != count * _DATATYPES[dt].itemsize:
            raise FormatError(f"output {out['name']!r}: {size} bytes for shape {shape} of {dt}")
        return np.frombuffer(raw, dtype=_DATATYPES[dt]).astype(_DATATYPES[dt].newbyteorder("="), copy=True).reshape(
            shape), off + size
    dtype = object if dt == "BYTES" else _DATATYPES.get(dt)
    if dtype is None:
        raise FormatError(f"output {out['name']!r}: unknown datatype {dt!r}")
    return np.array(out["data"], dtype=dtype).reshape(shape), off


def _decode_answer(headers: Mapping[str, str], body: bytes) -> dict[str, np.ndarray]:
    try:
        n = int(headers.get("inference-header-content-length", len(body)))
        if not 0 <= n <= len(body):
            raise FormatError("Inference-Header-Content-Length is larger than the answer")
        head = json.loads(body[:n].decode("utf-8"))
        tail, off, result = body[n:], 0, {}
        for out in head["outputs"]:
            result[out["name"]], off = _decode_output(out, tail, off)
        if off != len(tail):
            raise FormatError("the inference answer has bytes no output claims")
        return result
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise FormatError(f"malformed inference answer: {e}") from e


# ---- the client --------------------------------------------------------------------------------------------------


class Client:
    """A verified connection to one veil-runtime. See the module docstring; thread-safe (requests serialise on
    one connection). ``policy``: a client policy as a dict, JSON bytes or a file path. ``sim_keys``: trusted
    simulation platform keys (PEM text or paths). ``collateral`` (DCAP) and ``snp_cert`` (SNP): paths.
    ``require_models``: model ids the runtime must serve. ``now``: judge certificates at this Unix time (default:
    the clock). ``api_key`` travels as ``Authorization: Bearer`` on inference requests, never in errors."""

    def __init__(self, url: str, *, policy: Mapping[str, Any] | PathLike | bytes,
                 sim_keys: Iterable[PathLike | bytes] = (), collateral: PathLike | None = None,
                 snp_cert: PathLike | None = None, insecure_http: bool = False, timeout: float = 30.0,
                 api_key: str | None = None, require_models: Sequence[str] = (), now: int | None = None,
                 max_response_size: int = DEFAULT_MAX_RESPONSE_SIZE) -> None:
        self._target = _Target(url, insecure_http)
        self._insecure = insecure_http
        self._timeout = float(timeout)
        self._api_key = api_key
        self._max_response = int(max_response_size)
        self._lock = threading.RLock()
        self._conn: http.client.HTTPConnection | None = None
        self._reused = False
        self._verified = False
        self._closed = False
        self._pinned: bytes | None = None
        self._report: dict[str, Any] = {}
        if insecure_http:
            warnings.warn(f"veil.Client({url!r}, insecure_http=True): plain HTTP, NO channel binding: anyone on the "
                          "path can read and change requests and answers; simulation TEE only", RuntimeWarning,
                          stacklevel=2)
        policy_obj = _Policy(_policy_bytes(policy))
        try:
            self._attest(policy_obj, [_sim_key(k) for k in sim_keys], collateral, snp_cert, list(require_models),
                         now)
        except BaseException:
            self.close()
            raise
        finally:
            policy_obj.close()
        for w in self._report.get("warnings", []):
            warnings.warn(f"veil.Client({url!r}): {w}", RuntimeWarning, stacklevel=2)

    # -- attestation --

    def _attest(self, policy: _Policy, sim_keys: list[bytes], collateral: PathLike | None,
                snp_cert: PathLike | None, require_models: list[str], now: int | None) -> None:
        nonce = os.urandom(NONCE_SIZE)
        path = self._target.path(f"{ATTESTATION_PATH}?nonce={nonce.hex()}")
        with self._lock:
            conn = self._connection()
            conn.connect()  # the TLS session whose certificate the answer must bind
            status, _, body = self._exchange(conn, "GET", path, None, {"Accept": "application/json"},
                                             _cdll().veil_runtime_answer_max_size())
            spki = conn.peer_spki
        if status != 200:
            raise _http_error(status, body, "attestation")
        if not self._insecure and spki is None:
            raise VerificationError("the attestation answer arrived on no TLS session")
        self._report = _verify(body, nonce, spki, policy, sim_keys, collateral, snp_cert, require_models, now)
        self._pinned = spki
        if isinstance(conn, _PinnedHTTPSConnection):
            conn.pinned = spki
        self._verified = True

    # -- transport --

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            t = self._target
            if t.tls:
                self._conn = _PinnedHTTPSConnection(t.host, t.port, self._timeout, self._pinned)
            else:
                self._conn = _PlainHTTPConnection(t.host, t.port, timeout=self._timeout)
            self._reused = False
        return self._conn

    def _exchange(self, conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None,
                  headers: Mapping[str, str], limit: int) -> tuple[int, dict[str, str], bytes]:
        try:
            conn.request(method, path, body=body, headers=dict(headers))
            resp = conn.getresponse()
            data = resp.read(limit + 1)
            if len(data) > limit:
                conn.close()
                raise LimitError(f"the runtime's answer to {method} {path.split('?')[0]} exceeds {limit} bytes")
            if resp.will_close:
                conn.close()
            self._reused = not resp.will_close
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
        except VeilError:
            raise
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            raise FileError(f"cannot talk to the runtime at {self._target.url}: {e or type(e).__name__}") from e

    def _request(self, method: str, path: str, body: bytes | None = None,
                 headers: Mapping[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        """One request on the verified, pinned connection; retried once on a fresh connection when a kept-alive
        one turns out to be closed by the server."""
        hdrs = dict(headers or {})
        if self._api_key is not None:
            hdrs["Authorization"] = f"Bearer {self._api_key}"
        with self._lock:
            if self._closed:
                raise ArgumentError("the client is closed")
            if not self._verified:  # unreachable: a Client exists only once verified; kept as a second lock
                raise VerificationError("no request leaves before the runtime's attestation verified")
            conn = self._connection()
            stale = self._reused and conn.sock is not None
            try:
                return self._exchange(conn, method, path, body, hdrs, self._max_response)
            except FileError as e:
                if not stale or not isinstance(e.__cause__, _CLOSED_BY_PEER):
                    raise
            return self._exchange(conn, method, path, body, hdrs, self._max_response)

    # -- public --

    @property
    def attestation(self) -> dict[str, Any]:
        """The verified report: {"verified", "tee", "claims", "channel", "nonce", "models", "warnings"}."""
        return json.loads(json.dumps(self._report))

    @property
    def spki_sha256(self) -> bytes | None:
        """SHA-256 of the pinned TLS certificate's SubjectPublicKeyInfo (None with insecure_http)."""
        return self._pinned

    @property
    def pin(self) -> str | None:
        """The pinned key as ``curl --pinnedpubkey`` takes it (None with insecure_http)."""
        return spki_pin(self._pinned) if self._pinned is not None else None

    @property
    def models(self) -> tuple[str, ...]:
        """The names of the models the attestation binds: the only ones this client sends requests for."""
        return tuple(m["name"] for m in self._report["models"])

    def _model_path(self, model: str, suffix: str = "") -> str:
        if model not in self.models:
            raise PolicyError(f"model {model!r} is not among the models the runtime's attestation binds "
                              f"({', '.join(self.models) or 'none'}); nothing was sent")
        return self._target.path(f"/v2/models/{urllib.parse.quote(model, safe='')}{suffix}")

    def ready(self) -> bool:
        """GET /v2/health/ready: True on 200."""
        status, _, _ = self._request("GET", self._target.path("/v2/health/ready"))
        return status == 200

    def model_metadata(self, model: str) -> dict[str, Any]:
        """GET /v2/models/<model>: {"name", "versions", "platform", "inputs", "outputs"}."""
        status, _, body = self._request("GET", self._model_path(model))
        if status != 200:
            raise _http_error(status, body, f"metadata of {model}")
        try:
            meta = json.loads(body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise FormatError(f"malformed model metadata: {e}") from e
        if not isinstance(meta, dict):
            raise FormatError("malformed model metadata: not a JSON object")
        return meta

    def infer(self, model: str, inputs: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None,
              class_count: int = 0) -> dict[str, np.ndarray]:
        """POST /v2/models/<model>/infer with every input and output as binary tensor data (serving.md section
        4). ``outputs``: the names to return (default: all); ``class_count`` > 0 asks for the top-k
        classification of each (BYTES "value:index" strings). Returns {name: array}."""
        path = self._model_path(model, "/infer")
        if class_count < 0:
            raise ArgumentError("class_count must be >= 0")
        head_inputs, blobs = [], []
        for name, value in inputs.items():
            dt, raw = _encode(np.asarray(value))
            head_inputs.append({"name": name, "shape": list(np.shape(value)), "datatype": dt,
                                "parameters": {"binary_data_size": len(raw)}})
            blobs.append(raw)
        request: dict[str, Any] = {"inputs": head_inputs}
        if outputs is None and class_count == 0:
            request["parameters"] = {"binary_data_output": True}
        else:
            names = list(outputs) if outputs is not None else [o["name"] for o in
                                                               self.model_metadata(model)["outputs"]]
            params: dict[str, Any] = {"classification": class_count} if class_count else {}
            request["outputs"] = [{"name": n, "parameters": {**params, "binary_data": True}} for n in names]
        head = json.dumps(request, separators=(",", ":")).encode()
        headers = {"Inference-Header-Content-Length": str(len(head)), "Content-Type": "application/octet-stream"}
        status, hdrs, body = self._request("POST", path, head + b"".join(blobs), headers)
        if status != 200:
            raise _http_error(status, body, f"inference on {model}")
        return _decode_answer(hdrs, body)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        if not self._verified:
            return f"<veil.Client {self._target.url} unverified>"
        return f"<veil.Client {self._target.url} tee={self._report.get('tee')} models={self.models}>"


def _verify(answer: bytes, nonce: bytes, spki: bytes | None, policy: _Policy, sim_keys: list[bytes],
            collateral: PathLike | None, snp_cert: PathLike | None, require_models: list[str],
            now: int | None) -> dict[str, Any]:
    """veil_runtime_verify; returns the parsed report."""
    cdll = _cdll()
    keys = (ctypes.c_char_p * max(len(sim_keys), 1))(*sim_keys)
    required = [m.encode() for m in require_models]
    req = (ctypes.c_char_p * max(len(required), 1))(*required)
    vo = _VerifyOptions(now=int(now if now is not None else time.time()),
                        collateral_path=_lib.fspath(collateral) if collateral is not None else None,
                        snp_cert_path=_lib.fspath(snp_cert) if snp_cert is not None else None,
                        sim_trusted_keys=keys, sim_trusted_key_count=len(sim_keys))
    nonce_buf = (ctypes.c_uint8 * len(nonce)).from_buffer_copy(nonce)
    spki_buf = (ctypes.c_uint8 * SPKI_SHA256_SIZE).from_buffer_copy(spki) if spki is not None else None
    opts = _RuntimeVerifyOptions(nonce=ctypes.addressof(nonce_buf), nonce_size=len(nonce),
                                 tls_spki_sha256=ctypes.addressof(spki_buf) if spki_buf is not None else None,
                                 insecure_no_channel_binding=1 if spki is None else 0, verify=ctypes.pointer(vo),
                                 required_model_ids=req, required_model_count=len(required))
    body = _lib.Buffer(answer)
    out = ctypes.c_void_p()
    _lib.check(cdll.veil_runtime_verify(body.address, body.size, policy.ptr, ctypes.byref(opts), ctypes.byref(out)))
    try:
        return json.loads(ctypes.string_at(out.value).decode("utf-8"))
    finally:
        _lib.lib().veil_free(out.value)
