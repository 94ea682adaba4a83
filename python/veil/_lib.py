"""Locating and loading libveil, ctypes declarations of its public API, and the status-to-exception boundary.

Search order: ``$VEIL_LIBRARY`` (a path; if set, nothing else is tried), the build tree next to this package
(``python/veil/../../build/release/libveil.so``), then ``ctypes.util.find_library("veil")``.
The library is loaded on first use, so ``import veil`` works without it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .errors import LibraryNotFoundError, error_for_status

ENV_VAR = "VEIL_LIBRARY"
_PACKAGE_LIB = Path(__file__).resolve().parent / "libveil.so.0"  # pip install ./python puts it here
_BUILD_TREE_LIB = Path(__file__).resolve().parent.parent.parent / "build" / "release" / "libveil.so"

_MODEL_ID_MAX = 128  # VEIL_MODEL_ID_MAX, fixed by the ABI of struct veil_sealed_info (checked at load)

PROGRESS_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64)


class SealOptions(ctypes.Structure):
    """struct veil_seal_options"""

    _fields_ = [
        ("model_id", ctypes.c_char_p),
        ("key_version", ctypes.c_uint32),
        ("model_version", ctypes.c_uint64),
        ("chunk_size", ctypes.c_uint32),
        ("public_graph", ctypes.c_int),
        ("threads", ctypes.c_uint),
        ("progress", PROGRESS_FN),
        ("progress_ctx", ctypes.c_void_p),
    ]


class OpenOptions(ctypes.Structure):
    """struct veil_open_options"""

    _fields_ = [
        ("threads", ctypes.c_uint),
        ("lock_memory", ctypes.c_int),
        ("progress", PROGRESS_FN),
        ("progress_ctx", ctypes.c_void_p),
        ("min_model_version", ctypes.c_uint64),
    ]


class ResealOptions(ctypes.Structure):
    """struct veil_reseal_options"""

    _fields_ = [
        ("new_key_version", ctypes.c_uint32),
        ("model_version", ctypes.c_uint64),
        ("threads", ctypes.c_uint),
        ("progress", PROGRESS_FN),
        ("progress_ctx", ctypes.c_void_p),
    ]


class SealedInfoStruct(ctypes.Structure):
    """struct veil_sealed_info"""

    _fields_ = [
        ("model_id", ctypes.c_char * (_MODEL_ID_MAX + 1)),
        ("format_major", ctypes.c_uint16),
        ("format_minor", ctypes.c_uint16),
        ("key_version", ctypes.c_uint32),
        ("model_version", ctypes.c_uint64),
        ("chunk_size", ctypes.c_uint32),
        ("public_graph", ctypes.c_int),
        ("file_id", ctypes.c_uint8 * 16),
        ("graph_size", ctypes.c_uint64),
        ("tensor_count", ctypes.c_uint64),
        ("tensor_data_size", ctypes.c_uint64),
        ("file_size", ctypes.c_uint64),
    ]


class TensorView(ctypes.Structure):
    """struct veil_tensor_view"""

    _fields_ = [
        ("name", ctypes.c_char_p),
        ("dtype", ctypes.c_int32),
        ("rank", ctypes.c_uint32),
        ("dims", ctypes.POINTER(ctypes.c_int64)),
        ("data", ctypes.c_void_p),
        ("size", ctypes.c_size_t),
    ]


_c = ctypes
_P = ctypes.c_void_p  # byte buffers (keys, models) are passed as addresses; see buffer_arg
_STR = ctypes.c_char_p
_STATUS = ctypes.c_int
_SIGNATURES: dict[str, tuple[object, list[object]]] = {
    "veil_status_str": (_STR, [_STATUS]),
    "veil_last_error": (_STR, []),
    "veil_version": (_STR, []),
    "veil_free": (None, [_P]),
    "veil_key_size": (_c.c_size_t, []),
    "veil_model_id_max": (_c.c_size_t, []),
    "veil_default_chunk_size": (_c.c_size_t, []),
    "veil_seal": (_STATUS, [_P, _c.c_size_t, _P, _c.c_size_t, _c.POINTER(SealOptions), _STR]),
    "veil_seal_file": (_STATUS, [_STR, _P, _c.c_size_t, _c.POINTER(SealOptions), _STR]),
    "veil_inspect_file": (_STATUS, [_STR, _c.POINTER(SealedInfoStruct)]),
    "veil_inspect_json": (_STATUS, [_STR, _c.POINTER(_c.c_void_p)]),
    "veil_unseal_file": (_STATUS, [_STR, _P, _c.c_size_t, _c.POINTER(OpenOptions), _STR]),
    "veil_unseal": (
        _STATUS,
        [_STR, _P, _c.c_size_t, _c.POINTER(OpenOptions), _c.POINTER(_c.c_void_p), _c.POINTER(_c.c_size_t)],
    ),
    "veil_rewrap_file": (_STATUS, [_STR, _P, _c.c_size_t, _P, _c.c_size_t, _c.c_uint32, _STR]),
    "veil_reseal_file": (_STATUS, [_STR, _P, _c.c_size_t, _P, _c.c_size_t, _c.POINTER(ResealOptions), _STR]),
    "veil_model_header_sha256": (_c.POINTER(_c.c_uint8 * 32), [_P]),
    "veil_model_open": (_STATUS, [_STR, _P, _c.c_size_t, _c.POINTER(OpenOptions), _c.POINTER(_c.c_void_p)]),
    "veil_model_free": (None, [_P]),
    "veil_model_info": (_c.POINTER(SealedInfoStruct), [_P]),
    "veil_model_graph": (_P, [_P, _c.POINTER(_c.c_size_t)]),
    "veil_model_tensor_count": (_c.c_size_t, [_P]),
    "veil_model_tensor": (_STATUS, [_P, _c.c_size_t, _c.POINTER(TensorView)]),
    "veil_keygen": (_STATUS, [_P, _c.c_size_t]),
}

_lock = threading.Lock()
_handle: ctypes.CDLL | None = None
_path: str | None = None


def _candidates() -> list[str]:
    env = os.environ.get(ENV_VAR)
    if env:
        return [env]
    found = [str(p) for p in (_PACKAGE_LIB, _BUILD_TREE_LIB) if p.is_file()]
    system = ctypes.util.find_library("veil")
    if system:
        found.append(system)
    return found


def _load() -> ctypes.CDLL:
    errors: list[str] = []
    candidates = _candidates()
    for candidate in candidates:
        try:
            cdll = ctypes.CDLL(candidate)
        except OSError as e:
            errors.append(f"{candidate}: {e}")
            continue
        try:
            for name, (restype, argtypes) in _SIGNATURES.items():
                fn = getattr(cdll, name)
                fn.restype = restype
                fn.argtypes = argtypes
        except AttributeError as e:
            errors.append(f"{candidate}: not a compatible libveil ({e})")
            continue
        if cdll.veil_model_id_max() != _MODEL_ID_MAX:
            errors.append(f"{candidate}: incompatible libveil ABI (model id max {cdll.veil_model_id_max()})")
            continue
        global _path
        _path = candidate
        return cdll
    where = "; ".join(errors) if errors else "no candidate found"
    raise LibraryNotFoundError(
        f"cannot load libveil ({where}). Set {ENV_VAR} to the path of libveil.so, build it with "
        "`cmake -S . -B build/release && cmake --build build/release`, or install it where the dynamic loader "
        "finds it."
    )


def lib() -> ctypes.CDLL:
    """The loaded libveil, loading it on first use. Raises LibraryNotFoundError."""
    global _handle
    if _handle is None:
        with _lock:
            if _handle is None:
                _handle = _load()
    return _handle


_bound_tables: set[int] = set()


def bind(signatures: Mapping[str, tuple[Any, list[Any]]],
         compatible: Callable[[ctypes.CDLL], None] | None = None) -> ctypes.CDLL:
    """libveil with a module's signatures declared: each table once, then ``compatible(cdll)`` (which raises on a
    libveil whose sizes the module does not expect)."""
    cdll = lib()
    if id(signatures) not in _bound_tables:
        with _lock:
            if id(signatures) not in _bound_tables:
                for name, (restype, argtypes) in signatures.items():
                    fn = getattr(cdll, name)
                    fn.restype = restype
                    fn.argtypes = argtypes
                if compatible is not None:
                    compatible(cdll)
                _bound_tables.add(id(signatures))
    return cdll


def library_path() -> str:
    """The path libveil was loaded from (loading it if needed)."""
    lib()
    assert _path is not None
    return _path


def check(status: int) -> None:
    """Raises the mapped VeilError for a failed libveil call. Call it right after the call, on the same thread:
    veil_last_error() is per thread and valid only until the next libveil call."""
    if status == 0:
        return
    cdll = lib()
    raw = cdll.veil_last_error()
    detail = raw.decode("utf-8", "replace") if raw else ""
    summary_raw = cdll.veil_status_str(status)
    summary = summary_raw.decode("utf-8", "replace") if summary_raw else ""
    raise error_for_status(status, detail, summary)


class Buffer:
    """A read-only view of caller bytes as (address, size), without copying bytes or writable buffers."""

    __slots__ = ("_keep", "address", "size")

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        if not isinstance(data, bytes):
            view = memoryview(data).cast("B")
            if not view.readonly:
                arr = (ctypes.c_uint8 * view.nbytes).from_buffer(view)
                self._keep: object = (arr, view)
                self.address: int = ctypes.addressof(arr)
                self.size: int = view.nbytes
                return
            data = bytes(view)
        ptr = ctypes.c_char_p(data)  # points into the bytes object itself: no copy
        self._keep = (ptr, data)
        self.address = ctypes.cast(ptr, ctypes.c_void_p).value or 0
        self.size = len(data)


def fspath(path: str | os.PathLike[str]) -> bytes:
    return os.fsencode(os.fspath(path))
