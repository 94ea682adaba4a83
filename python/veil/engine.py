"""Veil's inference engine (include/veil/engine.h) over ctypes: load a whole ONNX graph, run it on numpy arrays.

The engine runs the graph on oneDNN in memory libveil owns; weights are folded and reordered once at load,
straight from the bytes given (a plain ONNX buffer, or an opened SealedModel's decrypted tensors): Python
makes no copy of them, and the source may be closed as soon as the engine is built. Inputs are float32 arrays
of the planned shapes (dimension 0 of a symbolic batch takes ``batch``); NaN and infinity are refused.

    with veil.open_model("m.veil", key) as model:
        engine = veil.Engine.from_model(model, threads=2)
    (logits,) = engine.run(x)

A sealed model's key may instead come from a key broker (veil-kbs; docs/kbs.md, "The TEE side"): the TEE attests,
the key is released to it, used to open the model and wiped; it is never a Python ``bytes`` object:

    engine = veil.Engine.from_sealed("m.veil", kbs="https://kbs.example:8443", tee="tdx", cacert="kbs-ca.pem")

An Engine serialises its own runs (one arena of activations); use one Engine per thread for parallelism.
"""

from __future__ import annotations

import ctypes
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Union

import numpy as np

from . import _lib
from .errors import ArgumentError
from .sealed import KeyLike, SealedModel, open_model
from .sealed import inspect as _inspect

__all__ = ["Engine", "EngineIO"]

PathLike = Union[str, "os.PathLike[str]"]
_MAX_RANK = 6  # VEIL_ENGINE_MAX_RANK; checked against veil_engine_max_rank() when the library is bound


class _Options(ctypes.Structure):
    """struct veil_engine_options"""

    _fields_ = [("threads", ctypes.c_uint), ("batch", ctypes.c_uint64), ("lock_memory", ctypes.c_int),
                ("symbolic_size", ctypes.c_uint64), ("precision", ctypes.c_uint32)]


class _IO(ctypes.Structure):
    """struct veil_engine_io"""

    _fields_ = [
        ("name", ctypes.c_char_p),
        ("rank", ctypes.c_uint32),
        ("dims", ctypes.c_int64 * _MAX_RANK),
        ("size", ctypes.c_size_t),
    ]


class _ProviderConfig(ctypes.Structure):
    """struct veil_provider_config"""

    _fields_ = [("sim_dir", ctypes.c_char_p), ("sim_executable", ctypes.c_char_p), ("sim_config", ctypes.c_char_p),
                ("gramine_root", ctypes.c_char_p), ("tsm_root", ctypes.c_char_p), ("sim_svn", ctypes.c_uint32)]


class _FetchOptions(ctypes.Structure):
    """struct veil_kbs_fetch_options"""

    _fields_ = [("url", ctypes.c_char_p), ("cacert", ctypes.c_char_p), ("allow_insecure_http", ctypes.c_int),
                ("tee", ctypes.c_int), ("provider", ctypes.POINTER(_ProviderConfig)), ("timeout_s", ctypes.c_uint),
                ("tls_pinned_pubkey", ctypes.c_char_p), ("broker_pubkey_pem", ctypes.c_char_p),
                ("now", ctypes.c_uint64)]


_P = ctypes.c_void_p
_SZ = ctypes.c_size_t
_SIGNATURES: dict[str, tuple[object, list[object]]] = {
    "veil_engine_max_rank": (_SZ, []),
    "veil_engine_load_onnx": (ctypes.c_int, [_P, _SZ, ctypes.POINTER(_Options), ctypes.POINTER(_P)]),
    "veil_engine_load_model": (ctypes.c_int, [_P, ctypes.POINTER(_Options), ctypes.POINTER(_P)]),
    "veil_engine_load_model_releasing": (ctypes.c_int, [_P, ctypes.POINTER(_Options), _P, ctypes.c_size_t,
                                                        ctypes.POINTER(_P)]),
    "veil_engine_load_onnx_file": (ctypes.c_int, [ctypes.c_char_p, ctypes.POINTER(_Options), _P, _SZ,
                                                  ctypes.POINTER(_P)]),
    "veil_engine_input_count": (_SZ, [_P]),
    "veil_engine_output_count": (_SZ, [_P]),
    "veil_engine_input": (ctypes.c_int, [_P, _SZ, ctypes.POINTER(_IO)]),
    "veil_engine_output": (ctypes.c_int, [_P, _SZ, ctypes.POINTER(_IO)]),
    "veil_engine_run": (ctypes.c_int, [_P, ctypes.POINTER(_P), ctypes.POINTER(_SZ), _SZ, ctypes.POINTER(_P),
                                       ctypes.POINTER(_SZ), _SZ]),
    "veil_engine_input_dtype": (ctypes.c_int32, [_P, _SZ]),
    "veil_engine_int8_nodes": (_SZ, [_P]),
    "veil_engine_free": (None, [_P]),
    "veil_engine_bf16_available": (ctypes.c_int, []),
    "veil_engine_int8_available": (ctypes.c_int, []),
    "veil_engine_int8_support": (ctypes.c_int, []),
    "veil_engine_cpu_isa": (ctypes.c_char_p, []),
    "veil_tee_from_name": (ctypes.c_int, [ctypes.c_char_p, ctypes.POINTER(ctypes.c_int)]),
    "veil_kbs_fetch_release": (ctypes.c_int, [ctypes.POINTER(_FetchOptions), ctypes.c_char_p, ctypes.c_uint32, _P,
                                              _SZ, ctypes.POINTER(_SZ), ctypes.POINTER(ctypes.c_uint64)]),
}
# ONNX data types of graph inputs (veil_engine_input_dtype) -> numpy; outputs are always float32.
_DTYPES: dict[int, type] = {1: np.float32, 6: np.int32, 7: np.int64, 9: np.bool_}


def _compatible(cdll: ctypes.CDLL) -> None:
    if cdll.veil_engine_max_rank() != _MAX_RANK:
        raise ArgumentError(f"incompatible libveil: engine max rank {cdll.veil_engine_max_rank()}")


def _cdll() -> ctypes.CDLL:
    """libveil with the engine's signatures declared."""
    return _lib.bind(_SIGNATURES, _compatible)


@dataclass(frozen=True)
class EngineIO:
    """One graph input or output: its name and planned shape (float32, C order)."""

    name: str
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        """Bytes of float32 data."""
        return 4 * int(np.prod(self.shape, dtype=np.int64))


PRECISIONS = {"fp32": 0, "bf16": 1}


def _options(threads: int | None, batch: int | None, lock_memory: bool, precision: str = "fp32") -> _Options:
    if threads is not None and threads < 1:
        raise ArgumentError("threads must be >= 1 (or None for every online CPU)")
    if batch is not None and batch < 1:
        raise ArgumentError("batch must be >= 1 (or None for 1)")
    if precision not in PRECISIONS:
        raise ArgumentError(f"precision must be 'fp32' or 'bf16', not {precision!r}")
    return _Options(threads or 0, batch or 0, 1 if lock_memory else 0, 0, PRECISIONS[precision])


def bf16_available() -> bool:
    """True when this CPU runs bfloat16 natively (AVX512-BF16 or AMX), so that precision="bf16" can be used."""
    return bool(_cdll().veil_engine_bf16_available())


def int8_available() -> bool:
    """True when some QDQ convolutions and matrix products run on oneDNN's int8 kernels here (int8_support() is not
    "none"); the others compute the same quantized arithmetic in float32."""
    return bool(_cdll().veil_engine_int8_available())


def int8_support() -> str:
    """Which QDQ convolutions and matrix products run on oneDNN's int8 kernels here, each exactly: "all" (VNNI or
    AMX), "7-bit" (AVX2, or AVX-512 without VNNI: uint8 activations and weights within [-64, 64], as onnxruntime's
    quantize_static writes them with reduce_range=True) or "none"."""
    return ("none", "7-bit", "all")[_cdll().veil_engine_int8_support()]


def cpu_isa() -> str:
    """The instruction set oneDNN uses on this CPU ("avx2", "avx512_core_amx", ...)."""
    return _cdll().veil_engine_cpu_isa().decode()


@dataclass(frozen=True)
class _Pins:
    """How the TEE side authenticates the broker (include/veil/kbs_client.h, "Transport rule")."""

    cacert: PathLike | None = None
    tls_pinned_pubkey: str | None = None
    broker_pubkey_pem: str | None = None


def _fetch_key(url: str, tee: str, sim_dir: PathLike | None, pins: _Pins, allow_insecure_http: bool,
               timeout_s: int, model_id: str, key_version: int, out: bytearray) -> int:
    """veil_kbs_fetch_release into out (a bytearray of the key size: nothing else holds the key); returns the
    minimum model version the broker sent with the key (0: none)."""
    cdll = _cdll()
    tee_id = ctypes.c_int()
    if cdll.veil_tee_from_name(tee.encode(), ctypes.byref(tee_id)) != 0:
        raise ArgumentError(f"tee must be sim, sample, sgx, tdx, snp or auto, not {tee!r}")
    if (tee == "sim") != (sim_dir is not None):
        raise ArgumentError("tee='sim' needs sim_dir= (veil attest sim-init), and sim_dir= goes with tee='sim' only")
    provider = _ProviderConfig(sim_dir=_lib.fspath(sim_dir) if sim_dir is not None else None)
    opts = _FetchOptions(url=url.encode(), cacert=_lib.fspath(pins.cacert) if pins.cacert is not None else None,
                         allow_insecure_http=1 if allow_insecure_http else 0, tee=tee_id.value,
                         provider=ctypes.pointer(provider), timeout_s=max(int(timeout_s), 0),
                         tls_pinned_pubkey=pins.tls_pinned_pubkey.encode() if pins.tls_pinned_pubkey else None,
                         broker_pubkey_pem=pins.broker_pubkey_pem.encode() if pins.broker_pubkey_pem else None,
                         now=int(time.time()))
    buf = (ctypes.c_uint8 * len(out)).from_buffer(out)
    size = _SZ()
    min_version = ctypes.c_uint64()
    _lib.check(cdll.veil_kbs_fetch_release(ctypes.byref(opts), model_id.encode(), key_version, ctypes.addressof(buf),
                                           len(out), ctypes.byref(size), ctypes.byref(min_version)))
    if size.value != len(out):
        raise ArgumentError(f"the broker released a {size.value}-byte key; a model key is {len(out)} bytes")
    return int(min_version.value)


class Engine:
    """A loaded, planned model. Build one with Engine.from_onnx or Engine.from_model; close() (or use it as a
    context manager) wipes its weights and activations now rather than when it is garbage collected."""

    def __init__(self, ptr: int) -> None:
        self._ptr: int | None = ptr
        self._lock = threading.Lock()
        cdll = _cdll()
        self.inputs: tuple[EngineIO, ...] = self._describe(cdll.veil_engine_input_count(ptr), cdll.veil_engine_input)
        self.outputs: tuple[EngineIO, ...] = self._describe(cdll.veil_engine_output_count(ptr),
                                                            cdll.veil_engine_output)
        # The argument arrays of veil_engine_run, built once: a run only fills in the data pointers.
        n_in, n_out = max(len(self.inputs), 1), max(len(self.outputs), 1)
        self._in_ptrs, self._out_ptrs = (_P * n_in)(), (_P * n_out)()
        self._in_dtypes = [_DTYPES.get(int(cdll.veil_engine_input_dtype(ptr, i)), np.float32)
                           for i in range(len(self.inputs))]
        self._in_sizes = (_SZ * n_in)(*[io.size // 4 * np.dtype(t).itemsize
                                        for io, t in zip(self.inputs, self._in_dtypes)])
        self._out_sizes = (_SZ * n_out)(*[io.size for io in self.outputs])

    def _describe(self, count: int, fn: object) -> tuple[EngineIO, ...]:
        out = []
        for i in range(count):
            io = _IO()
            _lib.check(fn(self._ptr, i, ctypes.byref(io)))  # type: ignore[operator]
            name = io.name.decode("utf-8", "replace") if io.name else ""
            out.append(EngineIO(name, tuple(int(io.dims[d]) for d in range(io.rank))))
        return tuple(out)

    @classmethod
    def from_onnx(cls, onnx: bytes | bytearray | memoryview | PathLike, *, threads: int | None = None,
                  batch: int | None = None, lock_memory: bool = False, precision: str = "fp32") -> Engine:
        """Loads a plain ONNX model (bytes, or the path of an .onnx file, whose ONNX external data is read from
        the model's directory). Raises OnnxError for a malformed graph, UnsupportedError (naming the operator or
        attribute) for what the engine does not run. ``precision="bf16"`` runs convolutions and matrix products on
        bfloat16 (AMX), accumulating in float32 (include/veil/engine.h); UnsupportedError on a CPU without bf16
        (``bf16_available()``)."""
        opts = _options(threads, batch, lock_memory, precision)
        out = ctypes.c_void_p()
        if not isinstance(onnx, (bytes, bytearray, memoryview)):
            _lib.check(_cdll().veil_engine_load_onnx_file(_lib.fspath(onnx), ctypes.byref(opts), None, 0,
                                                          ctypes.byref(out)))
            return cls(int(out.value or 0))
        buf = _lib.Buffer(onnx)
        _lib.check(_cdll().veil_engine_load_onnx(buf.address, buf.size, ctypes.byref(opts), ctypes.byref(out)))
        return cls(int(out.value or 0))

    @classmethod
    def from_model(cls, model: SealedModel, *, threads: int | None = None, batch: int | None = None,
                   lock_memory: bool = False, precision: str = "fp32") -> Engine:
        """Loads an opened sealed model straight from its decrypted buffers; the model may be closed after."""
        if not isinstance(model, SealedModel):
            raise TypeError(f"model must be a SealedModel, not {type(model).__name__}")
        return cls._load_model(model, _options(threads, batch, lock_memory, precision), consume=False)

    @classmethod
    def _load_model(cls, model: SealedModel, opts: _Options, consume: bool) -> Engine:
        """consume (from_sealed, whose model is opened for this engine alone): each weight's plaintext is wiped and
        given back once the engine holds its own copy (veil_engine_load_model_releasing), so the load's peak holds
        the weights about once; the model can load nothing else afterwards."""
        out = ctypes.c_void_p()
        if consume:
            status = _cdll().veil_engine_load_model_releasing(model._ptr(), ctypes.byref(opts), None, 0,
                                                              ctypes.byref(out))
        else:
            status = _cdll().veil_engine_load_model(model._ptr(), ctypes.byref(opts), ctypes.byref(out))
        _lib.check(status)  # same thread, right after the call: veil_last_error is per thread
        return cls(int(out.value or 0))

    @classmethod
    def from_sealed(cls, path: PathLike, *, key: KeyLike | None = None, kbs: str | None = None,
                    tee: str | None = None, sim_dir: PathLike | None = None, cacert: PathLike | None = None,
                    key_version: int = 0, allow_insecure_http: bool = False, timeout_s: int = 0,
                    threads: int | None = None, batch: int | None = None, lock_memory: bool = False,
                    tls_pinned_pubkey: str | None = None, broker_pubkey_pem: str | None = None,
                    min_model_version: int = 0, precision: str = "fp32") -> Engine:
        """Opens a sealed model and loads it, with exactly one of ``key`` and ``kbs``.

        With ``kbs=URL`` and ``tee`` ("sgx", "tdx", "snp", "auto", or for development "sim" with ``sim_dir`` and
        "sample"), the model key of the model id in the file's header is fetched from that key broker over RCAR
        (libveil's veil_kbs_fetch_release: every TEE but sim needs https:// and a pinned broker, ``cacert`` or
        ``tls_pinned_pubkey``; http:// only with tee "sim" to a loopback host, or anywhere with
        ``allow_insecure_http``; ``broker_pubkey_pem`` makes the broker's attestation token verify with that key;
        ``key_version`` 0 asks for the newest non-revoked version). ``min_model_version`` (and the broker's own
        minimum, when it sends one) refuses an older sealed file with VersionError. The key lives in a buffer that
        is wiped once the model is open. A refusal raises PolicyError (the model's policy, a revoked or unknown version),
        VerificationError (the attestation), FileError (the broker cannot be reached) or ArgumentError."""
        if (key is None) == (kbs is None):
            raise ArgumentError("give exactly one of key= and kbs=")
        if kbs is None:
            with open_model(path, key, threads=threads, lock_memory=lock_memory,  # type: ignore[arg-type]
                            min_model_version=min_model_version) as model:
                return cls._load_model(model, _options(threads, batch, lock_memory, precision), consume=True)
        if tee is None:
            raise ArgumentError("kbs= needs tee= (sgx, tdx, snp, auto; sim or sample for development)")
        if not 0 <= key_version < 2**32:
            raise ArgumentError("key_version must be 0 (the newest) .. 2**32 - 1")
        model_id = _inspect(path).model_id
        secret = bytearray(_lib.lib().veil_key_size())
        try:
            pins = _Pins(cacert, tls_pinned_pubkey, broker_pubkey_pem)
            broker_min = _fetch_key(kbs, tee, sim_dir, pins, allow_insecure_http, timeout_s, model_id, key_version,
                                    secret)
            with open_model(path, secret, threads=threads, lock_memory=lock_memory,
                            min_model_version=max(broker_min, min_model_version)) as model:
                return cls._load_model(model, _options(threads, batch, lock_memory, precision), consume=True)
        finally:
            ctypes.memset((ctypes.c_char * len(secret)).from_buffer(secret), 0, len(secret))

    def _arrays(self, args: Sequence[np.ndarray] | Mapping[str, np.ndarray]) -> list[np.ndarray]:
        if isinstance(args, Mapping):
            missing = [io.name for io in self.inputs if io.name not in args]
            extra = sorted(set(args) - {io.name for io in self.inputs})
            if missing or extra:
                raise ArgumentError(f"inputs missing: {missing}, unknown: {extra}")
            args = [args[io.name] for io in self.inputs]
        if len(args) != len(self.inputs):
            raise ArgumentError(f"the model takes {len(self.inputs)} inputs, {len(args)} were given")
        arrays = []
        for io, x, want in zip(self.inputs, args, self._in_dtypes):
            if not isinstance(x, np.ndarray) or x.dtype != want:
                kind = x.dtype if isinstance(x, np.ndarray) else type(x).__name__
                raise ArgumentError(f"input {io.name!r} must be a {np.dtype(want).name} numpy array, got {kind}")
            if x.shape != io.shape:
                raise ArgumentError(f"input {io.name!r} has shape {x.shape}; the plan needs {io.shape}")
            arrays.append(np.ascontiguousarray(x))
        return arrays

    def run(self, *inputs: np.ndarray, feeds: Mapping[str, np.ndarray] | None = None) -> list[np.ndarray]:
        """Runs the graph once: inputs positionally (graph order) or by name in ``feeds``. Returns a new float32
        array per graph output. Raises ArgumentError for a wrong count, dtype or shape, or a NaN/inf input."""
        if feeds is not None and inputs:
            raise ArgumentError("give inputs positionally or as feeds, not both")
        arrays = self._arrays(feeds if feeds is not None else inputs)
        outs = [np.empty(io.shape, dtype=np.float32) for io in self.outputs]
        with self._lock:
            ptr = self._handle()
            for i, a in enumerate(arrays):
                self._in_ptrs[i] = a.ctypes.data
            for i, o in enumerate(outs):
                self._out_ptrs[i] = o.ctypes.data
            status = _cdll().veil_engine_run(ptr, self._in_ptrs, self._in_sizes, len(arrays), self._out_ptrs,
                                             self._out_sizes, len(outs))
            _lib.check(status)  # same thread, right after the call: veil_last_error is per thread
        return outs

    __call__ = run

    def _handle(self) -> int:
        if self._ptr is None:
            raise ValueError("the engine is closed")
        return self._ptr

    @property
    def closed(self) -> bool:
        return self._ptr is None

    @property
    def int8_nodes(self) -> int:
        """How many convolutions and matrix products run on oneDNN's int8 kernels (an int8 QDQ model's, where this
        CPU's kernels are exact: int8_support()); 0 for a float model."""
        return int(_cdll().veil_engine_int8_nodes(self._handle()))

    def close(self) -> None:
        """Wipes the weights and activations and frees the engine. Idempotent."""
        with self._lock:
            ptr, self._ptr = self._ptr, None
        if ptr:
            _cdll().veil_engine_free(ptr)

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    def __repr__(self) -> str:
        if self.closed:
            return "<Engine (closed)>"
        ins = ", ".join(f"{io.name}{list(io.shape)}" for io in self.inputs)
        outs = ", ".join(f"{io.name}{list(io.shape)}" for io in self.outputs)
        return f"<Engine {ins} -> {outs}>"
