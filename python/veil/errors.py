"""Veil's exceptions, mapped one-to-one from libveil's status codes (include/veil/status.h).

Every failure inside libveil surfaces as exactly one of these; the message is libveil's own
``veil_last_error()`` text, which names what failed at the format level and never holds a secret::

    VeilError                         .status (Status | None), .detail (str)
    ├── LibraryNotFoundError          libveil.so could not be found or loaded (also an ImportError)
    ├── InputError                    1xx  the bytes given to Veil are not acceptable
    │   ├── FileError                 100  reading or writing a file failed
    │   ├── FormatError               101  not a well-formed sealed file
    │   │   ├── VersionError          102  unsupported format version or required flag
    │   │   └── TruncatedError        103  the input ends early or has trailing bytes
    │   ├── OnnxError                 104  not a valid ONNX model
    │   ├── UnsupportedError          105  valid, but uses something Veil does not support
    │   ├── LimitError                106  exceeds a named limit
    │   └── EvidenceError             107  malformed attestation evidence, quote, report, certificate or collateral
    ├── AuthenticationError           2xx  a key or a tag did not verify
    │   ├── KeyUnwrapError            200  wrong model key, or the header or key wrap was modified
    │   ├── DataAuthenticationError   201  modified, reordered, dropped or spliced chunks
    │   ├── VerificationError         202  evidence did not verify (signature, chain, CRL, binding, TCB)
    │   ├── PolicyError               203  evidence verified but the policy refuses it
    │   └── ExpiredError              204  a certificate or collateral is outside its validity window
    ├── ArgumentError                 300  invalid argument (also a ValueError)
    └── InternalError                 4xx
        ├── OutOfMemoryError          400  out of memory (or memory could not be locked)
        └── CryptoError               401  the crypto library failed
                                      402  a bug in Veil: InternalError itself
"""

from __future__ import annotations

import enum

__all__ = [
    "ArgumentError",
    "AuthenticationError",
    "CryptoError",
    "DataAuthenticationError",
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
    "Status",
    "TruncatedError",
    "UnsupportedError",
    "VeilError",
    "VerificationError",
    "VersionError",
    "error_for_status",
]


class Status(enum.IntEnum):
    """libveil's ``veil_status`` values."""

    OK = 0
    ERR_IO = 100
    ERR_FORMAT = 101
    ERR_VERSION = 102
    ERR_TRUNCATED = 103
    ERR_ONNX = 104
    ERR_UNSUPPORTED = 105
    ERR_LIMIT = 106
    ERR_EVIDENCE = 107
    ERR_KEY = 200
    ERR_AUTH = 201
    ERR_VERIFY = 202
    ERR_POLICY = 203
    ERR_EXPIRED = 204
    ERR_ARG = 300
    ERR_NOMEM = 400
    ERR_CRYPTO = 401
    ERR_INTERNAL = 402


class VeilError(Exception):
    """Base of every Veil error. ``status`` is the libveil status (None when no libveil call failed)."""

    def __init__(self, message: str, *, status: Status | int | None = None, detail: str = "") -> None:
        super().__init__(message)
        self.status: Status | int | None = status
        self.detail: str = detail


class LibraryNotFoundError(VeilError, ImportError):
    """libveil.so could not be located or loaded."""


class InputError(VeilError):
    """1xx: the bytes given to Veil are not acceptable."""


class FileError(InputError):
    """100: reading or writing a file failed."""


class FormatError(InputError):
    """101: not a well-formed sealed file."""


class VersionError(FormatError):
    """102: unsupported format version or required flag."""


class TruncatedError(FormatError):
    """103: the input ends early or has trailing bytes."""


class OnnxError(InputError):
    """104: not a valid ONNX model."""


class UnsupportedError(InputError):
    """105: a valid model that uses something Veil does not support (sparse initializers, external data given as bytes...)."""


class LimitError(InputError):
    """106: exceeds a named limit."""


class EvidenceError(InputError):
    """107: malformed attestation evidence, quote, report, certificate or collateral."""


class AuthenticationError(VeilError):
    """2xx: a key or a tag did not verify."""


class KeyUnwrapError(AuthenticationError):
    """200: the data key could not be unwrapped: wrong model key, or the header or key wrap was modified."""


class DataAuthenticationError(AuthenticationError):
    """201: a data chunk failed authentication (modified, reordered, dropped or spliced)."""


class VerificationError(AuthenticationError):
    """202: evidence did not verify: signature, certificate chain, CRL, binding or TCB."""


class PolicyError(AuthenticationError):
    """203: the evidence verified, but the policy refuses it (the message names the failed check)."""


class ExpiredError(AuthenticationError):
    """204: a certificate or collateral is outside its validity window at the given time."""


class ArgumentError(VeilError, ValueError):
    """300: an invalid argument."""


class InternalError(VeilError):
    """4xx: memory, the crypto library, or a bug in Veil (402)."""


class OutOfMemoryError(InternalError):
    """400: out of memory, or memory could not be locked."""


class CryptoError(InternalError):
    """401: the crypto library failed."""


_BY_STATUS: dict[int, type[VeilError]] = {
    Status.ERR_IO: FileError,
    Status.ERR_FORMAT: FormatError,
    Status.ERR_VERSION: VersionError,
    Status.ERR_TRUNCATED: TruncatedError,
    Status.ERR_ONNX: OnnxError,
    Status.ERR_UNSUPPORTED: UnsupportedError,
    Status.ERR_LIMIT: LimitError,
    Status.ERR_EVIDENCE: EvidenceError,
    Status.ERR_KEY: KeyUnwrapError,
    Status.ERR_AUTH: DataAuthenticationError,
    Status.ERR_VERIFY: VerificationError,
    Status.ERR_POLICY: PolicyError,
    Status.ERR_EXPIRED: ExpiredError,
    Status.ERR_ARG: ArgumentError,
    Status.ERR_NOMEM: OutOfMemoryError,
    Status.ERR_CRYPTO: CryptoError,
    Status.ERR_INTERNAL: InternalError,
}

_BY_CATEGORY: dict[int, type[VeilError]] = {1: InputError, 2: AuthenticationError, 3: ArgumentError, 4: InternalError}


def error_for_status(status: int, detail: str, summary: str = "") -> VeilError:
    """The exception for a failed libveil call; unknown codes fall back to their category, then VeilError."""
    code: Status | int
    try:
        code = Status(status)
    except ValueError:
        code = status
    cls = _BY_STATUS.get(status) or _BY_CATEGORY.get(status // 100, VeilError)
    message = detail or summary or f"libveil status {status}"
    return cls(message, status=code, detail=detail)
