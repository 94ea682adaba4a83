"""Veil: seal ONNX models into ``.veil`` files readable only by a holder of the model key.

A thin ctypes front over libveil (include/veil/sealed.h, include/veil/engine.h): ``Engine`` runs a whole ONNX
graph, plain or from an opened sealed model, in memory libveil owns. ``Client`` talks KServe v2 to an attested
veil-runtime, after verifying its attestation and pinning its TLS key. ``veil.torch`` (the only module that
imports torch) exports PyTorch modules and seals them in memory. Errors: see ``veil.errors`` for the exception tree.
"""

from __future__ import annotations

from ._lib import library_path
from .client import Client, cert_spki_sha256, spki_pin
from .engine import Engine, EngineIO
from .errors import (
    ArgumentError,
    AuthenticationError,
    CryptoError,
    DataAuthenticationError,
    EvidenceError,
    ExpiredError,
    FileError,
    FormatError,
    InputError,
    InternalError,
    KeyUnwrapError,
    LibraryNotFoundError,
    LimitError,
    OnnxError,
    OutOfMemoryError,
    PolicyError,
    Status,
    TruncatedError,
    UnsupportedError,
    VeilError,
    VerificationError,
    VersionError,
)
from .sealed import (
    DEFAULT_CHUNK_SIZE,
    KEY_SIZE,
    SealedInfo,
    SealedModel,
    TensorInfo,
    inspect,
    keygen,
    open_model,
    reseal,
    rewrap,
    seal_onnx,
    unseal,
    unseal_file,
)

__version__ = "0.1.0"


def library_version() -> str:
    """libveil's version string (loads the library)."""
    from . import _lib

    raw = _lib.lib().veil_version()
    return raw.decode("ascii", "replace") if raw else ""


__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "KEY_SIZE",
    "ArgumentError",
    "AuthenticationError",
    "Client",
    "CryptoError",
    "DataAuthenticationError",
    "Engine",
    "EngineIO",
    "EvidenceError",
    "ExpiredError",
    "FileError",
    "FormatError",
    "InputError",
    "InternalError",
    "KeyUnwrapError",
    "LibraryNotFoundError",
    "LimitError",
    "OnnxError",
    "OutOfMemoryError",
    "PolicyError",
    "SealedInfo",
    "SealedModel",
    "Status",
    "TensorInfo",
    "TruncatedError",
    "UnsupportedError",
    "VeilError",
    "VerificationError",
    "VersionError",
    "cert_spki_sha256",
    "inspect",
    "keygen",
    "library_path",
    "library_version",
    "open_model",
    "reseal",
    "rewrap",
    "seal_onnx",
    "spki_pin",
    "unseal",
    "unseal_file",
]
