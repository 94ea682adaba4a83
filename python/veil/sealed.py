"""Sealed models (docs/spec/sealed-format.md): keygen, seal, inspect, unseal, rewrap, reseal and open, over libveil."""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Union

import numpy as np

from . import _lib
from .errors import ArgumentError, VeilError

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "KEY_SIZE",
    "SealedInfo",
    "SealedModel",
    "TensorInfo",
    "inspect",
    "keygen",
    "open_model",
    "reseal",
    "rewrap",
    "seal_onnx",
    "unseal",
    "unseal_file",
]

KEY_SIZE = 32  # VEIL_KEY_SIZE; veil_key_size() is the authority and is used at run time
DEFAULT_CHUNK_SIZE = 1 << 20  # VEIL_DEFAULT_CHUNK_SIZE

PathLike = Union[str, "os.PathLike[str]"]
KeyLike = Union[bytes, bytearray, memoryview]
Progress = Callable[[int, int], None]
"""Called with (bytes done, bytes total), on the calling thread."""


@dataclass(frozen=True)
class SealedInfo:
    """The public header of a sealed file; reading it needs no key."""

    model_id: str
    format_major: int
    format_minor: int
    key_version: int
    model_version: int
    chunk_size: int
    public_graph: bool
    file_id: bytes
    graph_size: int
    tensor_count: int
    tensor_data_size: int
    file_size: int

    @property
    def format_version(self) -> str:
        return f"{self.format_major}.{self.format_minor}"

    @classmethod
    def _from_struct(cls, s: _lib.SealedInfoStruct) -> SealedInfo:
        return cls(
            model_id=s.model_id.decode("ascii", "replace"),
            format_major=int(s.format_major),
            format_minor=int(s.format_minor),
            key_version=int(s.key_version),
            model_version=int(s.model_version),
            chunk_size=int(s.chunk_size),
            public_graph=bool(s.public_graph),
            file_id=bytes(s.file_id),
            graph_size=int(s.graph_size),
            tensor_count=int(s.tensor_count),
            tensor_data_size=int(s.tensor_data_size),
            file_size=int(s.file_size),
        )


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of an opened model: ONNX name, ONNX TensorProto data type, shape and size in bytes."""

    index: int
    name: str
    dtype: int
    shape: tuple[int, ...]
    size: int


def _key(key: KeyLike) -> _lib.Buffer:
    if not isinstance(key, (bytes, bytearray, memoryview)):
        raise TypeError(f"key must be bytes, not {type(key).__name__}")
    buf = _lib.Buffer(key)
    if buf.size not in (_lib.lib().veil_key_size(), 16):
        raise ArgumentError(f"a model key is {_lib.lib().veil_key_size()} bytes (16 only for the seed's API), "
                            f"got {buf.size}")
    return buf


class _ProgressHook:
    """Adapts a Python progress callback; an exception it raises is re-raised after the libveil call."""

    def __init__(self, progress: Progress | None) -> None:
        self.error: BaseException | None = None
        self._progress = progress
        self.fn = _lib.PROGRESS_FN(self._call) if progress is not None else _lib.PROGRESS_FN()

    def _call(self, _ctx: int | None, done: int, total: int) -> None:
        if self._progress is None or self.error is not None:
            return
        try:
            self._progress(int(done), int(total))
        except BaseException as e:  # noqa: BLE001 - cannot unwind through C; re-raised by reraise()
            self.error = e

    def reraise(self) -> None:
        if self.error is not None:
            raise self.error


def _threads(threads: int | None) -> int:
    if threads is None:
        return 0
    if threads < 1:
        raise ArgumentError("threads must be >= 1 (or None for every online CPU)")
    return threads


def _open_options(threads: int | None, lock_memory: bool, hook: _ProgressHook) -> _lib.OpenOptions:
    opts = _lib.OpenOptions()
    opts.threads = _threads(threads)
    opts.lock_memory = 1 if lock_memory else 0
    opts.progress = hook.fn
    return opts


def keygen() -> bytes:
    """A fresh random model key (32 bytes from OpenSSL's CSPRNG)."""
    cdll = _lib.lib()
    size = cdll.veil_key_size()
    out = (ctypes.c_uint8 * size)()
    try:
        _lib.check(cdll.veil_keygen(ctypes.addressof(out), size))
        return bytes(out)
    finally:
        ctypes.memset(out, 0, size)


def seal_onnx(
    onnx: bytes | bytearray | memoryview | PathLike,
    path: PathLike,
    *,
    model_id: str,
    key: KeyLike,
    key_version: int = 1,
    model_version: int = 1,
    public_graph: bool = False,
    chunk_size: int | None = None,
    threads: int | None = None,
    progress: Progress | None = None,
) -> SealedInfo:
    """Seals an ONNX model (bytes, or the path of an .onnx file) into a new sealed file at ``path``.

    The file is written under a temporary name and renamed only on success: on failure nothing is left behind
    and an existing ``path`` is untouched. A model with ONNX external data (weights in files beside it, as
    exporters write models past 2 GiB) must be given by path: its data files are read from its directory, never
    from outside it. Raises OnnxError for a malformed model or bad external data, FileError for a data file that
    cannot be read there, UnsupportedError for external data given as bytes, sparse or segmented initializers,
    ArgumentError for a bad model id, key or chunk size.
    """
    if not isinstance(model_id, str):
        raise TypeError("model_id must be a str")
    try:
        model_id_bytes = model_id.encode("ascii")
    except UnicodeEncodeError:
        raise ArgumentError(f"model id {model_id!r} must be ASCII [A-Za-z0-9._-]") from None
    for name, value, top in (("key_version", key_version, 0xFFFFFFFF), ("model_version", model_version, 2**64 - 1)):
        if not 1 <= value <= top:
            raise ArgumentError(f"{name} must be in [1, {top}], got {value}")
    if chunk_size is not None and not 0 < chunk_size <= 0xFFFFFFFF:
        raise ArgumentError(f"chunk_size {chunk_size} is out of range")
    cdll = _lib.lib()
    key_buf = _key(key)
    hook = _ProgressHook(progress)
    opts = _lib.SealOptions()
    opts.model_id = model_id_bytes
    opts.key_version = key_version
    opts.model_version = model_version
    opts.chunk_size = chunk_size or 0
    opts.public_graph = 1 if public_graph else 0
    opts.threads = _threads(threads)
    opts.progress = hook.fn
    out = _lib.fspath(path)
    if isinstance(onnx, (bytes, bytearray, memoryview)):
        model = _lib.Buffer(onnx)
        status = cdll.veil_seal(model.address, model.size, key_buf.address, key_buf.size, ctypes.byref(opts), out)
    else:
        status = cdll.veil_seal_file(_lib.fspath(onnx), key_buf.address, key_buf.size, ctypes.byref(opts), out)
    _lib.check(status)
    hook.reraise()
    return inspect(path)


def inspect(path: PathLike) -> SealedInfo:
    """Reads and checks the public header and layout of a sealed file. Needs no key."""
    info = _lib.SealedInfoStruct()
    _lib.check(_lib.lib().veil_inspect_file(_lib.fspath(path), ctypes.byref(info)))
    return SealedInfo._from_struct(info)


def unseal(
    path: PathLike, key: KeyLike, *, threads: int | None = None, progress: Progress | None = None
) -> bytes:
    """Owner-side recovery: authenticates and decrypts a sealed file and returns the original ONNX model bytes.
    A model past protobuf's 2 GiB limit cannot be one message: LimitError (use unseal_file)."""
    cdll = _lib.lib()
    key_buf = _key(key)
    hook = _ProgressHook(progress)
    opts = _open_options(threads, False, hook)
    data = ctypes.c_void_p()
    size = ctypes.c_size_t()
    _lib.check(cdll.veil_unseal(_lib.fspath(path), key_buf.address, key_buf.size, ctypes.byref(opts),
                                ctypes.byref(data), ctypes.byref(size)))
    try:
        result = ctypes.string_at(data, size.value) if size.value else b""
    finally:
        if data.value:
            ctypes.memset(data.value, 0, size.value)
        cdll.veil_free(data.value)
    hook.reraise()
    return result


def unseal_file(
    path: PathLike, key: KeyLike, out_path: PathLike, *, threads: int | None = None,
    progress: Progress | None = None,
) -> None:
    """Like unseal, writing the ONNX model to ``out_path`` (temporary name, renamed once every chunk verified).
    A model past protobuf's 2 GiB limit is written with ONNX external data: ``out_path`` plus ``out_path.ID.data``
    (ID: 16 hex digits of the sealed file's id)."""
    cdll = _lib.lib()
    key_buf = _key(key)
    hook = _ProgressHook(progress)
    opts = _open_options(threads, False, hook)
    _lib.check(cdll.veil_unseal_file(_lib.fspath(path), key_buf.address, key_buf.size, ctypes.byref(opts),
                                     _lib.fspath(out_path)))
    hook.reraise()


def rewrap(
    path: PathLike, old_key: KeyLike, new_key: KeyLike, *, new_key_version: int, out_path: PathLike | None = None
) -> SealedInfo:
    """Re-wraps the data key of a sealed file under ``new_key`` (key rotation). Writes ``out_path``, or replaces
    ``path`` when it is None; the tensor data is copied, not re-encrypted. Rotation, not compromise recovery: the
    data key is kept, so the old key plus an old copy of the file still decrypt the new one (use reseal)."""
    if not 1 <= new_key_version <= 0xFFFFFFFF:
        raise ArgumentError(f"new_key_version must be in [1, 2^32 - 1], got {new_key_version}")
    cdll = _lib.lib()
    old_buf, new_buf = _key(old_key), _key(new_key)
    target = path if out_path is None else out_path
    _lib.check(cdll.veil_rewrap_file(_lib.fspath(path), old_buf.address, old_buf.size, new_buf.address,
                                     new_buf.size, new_key_version, _lib.fspath(target)))
    return inspect(target)


def reseal(
    path: PathLike, key: KeyLike, *, new_key: KeyLike | None = None, new_key_version: int | None = None,
    model_version: int | None = None, out_path: PathLike | None = None, threads: int | None = None,
    progress: Progress | None = None,
) -> SealedInfo:
    """Compromise recovery: decrypts a sealed file (every chunk authenticated) and seals the same model again under
    a fresh data key and file id, re-encrypting every tensor, under ``new_key`` (with ``new_key_version``) or
    ``key`` again. Unlike rewrap (rotation: the data key is kept), the old key plus an old copy of the file reveal
    nothing about the new one. ``model_version`` may raise the model version (never lower it). Writes
    ``out_path``, or replaces ``path`` when it is None."""
    if (new_key is None) != (new_key_version is None):
        raise ArgumentError("new_key and new_key_version go together")
    if new_key_version is not None and not 1 <= new_key_version <= 0xFFFFFFFF:
        raise ArgumentError(f"new_key_version must be in [1, 2^32 - 1], got {new_key_version}")
    if model_version is not None and not 1 <= model_version < 1 << 64:
        raise ArgumentError(f"model_version must be in [1, 2^64 - 1], got {model_version}")
    cdll = _lib.lib()
    old_buf = _key(key)
    new_buf = _key(new_key) if new_key is not None else None
    hook = _ProgressHook(progress)
    opts = _lib.ResealOptions()
    opts.new_key_version = new_key_version or 0
    opts.model_version = model_version or 0
    opts.threads = _threads(threads)
    opts.progress = hook.fn
    target = path if out_path is None else out_path
    _lib.check(cdll.veil_reseal_file(_lib.fspath(path), old_buf.address, old_buf.size,
                                     new_buf.address if new_buf is not None else None,
                                     new_buf.size if new_buf is not None else 0, ctypes.byref(opts),
                                     _lib.fspath(target)))
    hook.reraise()
    return inspect(target)


# ONNX TensorProto.DataType -> little-endian numpy dtype. bfloat16 and float8 need ml_dtypes (installed with
# onnx); without it their raw bits come back as unsigned integers of the same width.
_NUMPY_DTYPES: dict[int, str] = {
    1: "<f4", 2: "u1", 3: "i1", 4: "<u2", 5: "<i2", 6: "<i4", 7: "<i8", 9: "?", 10: "<f2", 11: "<f8",
    12: "<u4", 13: "<u8", 14: "<c8", 15: "<c16",
}
_ML_DTYPES: dict[int, tuple[str, str]] = {
    16: ("bfloat16", "<u2"), 17: ("float8_e4m3fn", "u1"), 18: ("float8_e4m3fnuz", "u1"),
    19: ("float8_e5m2", "u1"), 20: ("float8_e5m2fnuz", "u1"),
}


def numpy_dtype(onnx_dtype: int) -> np.dtype:
    """The numpy dtype holding an ONNX data type's raw little-endian layout."""
    if onnx_dtype in _NUMPY_DTYPES:
        return np.dtype(_NUMPY_DTYPES[onnx_dtype])
    if onnx_dtype in _ML_DTYPES:
        name, fallback = _ML_DTYPES[onnx_dtype]
        try:
            import ml_dtypes

            return np.dtype(getattr(ml_dtypes, name))
        except (ImportError, AttributeError):
            return np.dtype(fallback)
    raise VeilError(f"ONNX data type {onnx_dtype} has no numpy equivalent")


class _Handle:
    """Owns a veil_model*. Numpy views reference it, so the plaintext is wiped and freed only when the model has
    been closed and the last view is gone."""

    def __init__(self, ptr: int) -> None:
        self.ptr: int | None = ptr
        self._lock = threading.Lock()

    def free(self) -> None:
        with self._lock:
            ptr, self.ptr = self.ptr, None
        if ptr:
            _lib.lib().veil_model_free(ptr)

    def __del__(self) -> None:
        try:
            self.free()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


class SealedModel:
    """A sealed model opened in memory: its graph and tensors, authenticated and decrypted by libveil.

    Use as a context manager (or call close()). ``array(name)`` returns a copy; ``array(name, copy=False)`` a
    read-only view into libveil's 64-byte aligned buffer that keeps that buffer alive: the plaintext is wiped
    when the model is closed and no view remains.
    """

    def __init__(self, handle: _Handle) -> None:
        self._handle: _Handle | None = handle
        cdll = _lib.lib()
        self.info: SealedInfo = SealedInfo._from_struct(cdll.veil_model_info(handle.ptr).contents)
        infos: list[TensorInfo] = []
        for i in range(cdll.veil_model_tensor_count(handle.ptr)):
            view = self._view(i)
            shape = tuple(int(view.dims[d]) for d in range(view.rank))
            infos.append(TensorInfo(i, view.name.decode("utf-8", "replace"), int(view.dtype), shape, int(view.size)))
        self.tensors: tuple[TensorInfo, ...] = tuple(infos)
        self._by_name: dict[str, TensorInfo] = {t.name: t for t in infos}

    def _ptr(self) -> int:
        if self._handle is None or self._handle.ptr is None:
            raise ValueError("the sealed model is closed")
        return self._handle.ptr

    def _view(self, index: int) -> _lib.TensorView:
        out = _lib.TensorView()
        _lib.check(_lib.lib().veil_model_tensor(self._ptr(), index, ctypes.byref(out)))
        return out

    @property
    def closed(self) -> bool:
        return self._handle is None

    @property
    def header_sha256(self) -> bytes:
        """SHA-256 of the sealed header the open authenticated (preamble || header, spec section 5): names the
        model id, model version, file id and section table; unchanged by rewrap, changed by reseal."""
        return bytes(_lib.lib().veil_model_header_sha256(self._ptr()).contents)

    @property
    def graph(self) -> bytes:
        """The stripped ONNX ModelProto (initializer data removed; spec section 9)."""
        size = ctypes.c_size_t()
        ptr = _lib.lib().veil_model_graph(self._ptr(), ctypes.byref(size))
        return ctypes.string_at(ptr, size.value) if size.value else b""

    def names(self) -> list[str]:
        return [t.name for t in self.tensors]

    def __len__(self) -> int:
        return len(self.tensors)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __getitem__(self, name: str) -> np.ndarray:
        return self.array(name)

    def tensor_info(self, key: str | int) -> TensorInfo:
        if isinstance(key, int):
            return self.tensors[key]
        try:
            return self._by_name[key]
        except KeyError:
            raise KeyError(f"no tensor named {key!r}") from None

    def array(self, key: str | int, *, copy: bool = True) -> np.ndarray:
        """A tensor as a numpy array: a copy, or (copy=False) a read-only view tied to this model's memory."""
        info = self.tensor_info(key)
        view = self._view(info.index)
        dtype = numpy_dtype(info.dtype)
        if info.size == 0:
            return np.zeros(info.shape, dtype=dtype)
        raw = (ctypes.c_uint8 * info.size).from_address(view.data)
        raw._veil_owner = self._handle  # type: ignore[attr-defined] # keeps the plaintext alive for views
        arr = np.frombuffer(memoryview(raw), dtype=dtype).reshape(info.shape)
        if copy:
            return arr.copy()
        arr.flags.writeable = False
        return arr

    def arrays(self, *, copy: bool = True) -> dict[str, np.ndarray]:
        """Every tensor, by name, in section order."""
        return {t.name: self.array(t.index, copy=copy) for t in self.tensors}

    def close(self) -> None:
        """Releases the model; its plaintext is wiped now, or when the last view returned by array() is gone, or when
        the last Engine made from it that runs on its weights in place (Engine.from_model) is closed."""
        self._handle = None  # views may still hold the handle; _Handle.__del__ frees with the last reference

    def __enter__(self) -> SealedModel:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{len(self.tensors)} tensors"
        return f"<SealedModel {self.info.model_id!r} v{self.info.model_version} ({state})>"


def open_model(
    path: PathLike, key: KeyLike, *, threads: int | None = None, lock_memory: bool = False,
    progress: Progress | None = None, min_model_version: int = 0,
) -> SealedModel:
    """Opens, authenticates and decrypts a sealed model. Every chunk is verified before anything is returned.
    ``min_model_version`` (anti-rollback): a file whose authenticated model version is lower raises VersionError."""
    cdll = _lib.lib()
    key_buf = _key(key)
    hook = _ProgressHook(progress)
    opts = _open_options(threads, lock_memory, hook)
    if not 0 <= min_model_version < 1 << 64:
        raise ArgumentError(f"min_model_version must be in [0, 2^64 - 1], got {min_model_version}")
    opts.min_model_version = min_model_version
    out = ctypes.c_void_p()
    _lib.check(cdll.veil_model_open(_lib.fspath(path), key_buf.address, key_buf.size, ctypes.byref(opts),
                                    ctypes.byref(out)))
    handle = _Handle(int(out.value or 0))
    hook.reraise()
    return SealedModel(handle)
