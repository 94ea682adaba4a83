#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""An independent pure-Python reference of the Veil sealed format (docs/spec/sealed-format.md, v1.0).

Written from the specification alone; it shares no code with libveil and never calls it, so that the two can
check each other. It is meant to be read next to the spec: every section of the spec has a matching block here.

Public API:
    parse(data) -> SealedFile             every key-less MUST of sections 3-5 and 8 (steps 1-5)
    open_sealed(data, key) -> (graph, [tensor sections])   also unwraps and authenticates every chunk
    seal(graph, tensors, key, model_id, ...) -> bytes      a spec-conformant writer
    build(...) -> bytes                    an unchecked writer (for tests that need authenticated bad files)
    graph_initializers(graph) / check_graph(graph, tensors)   the reader checks of section 9 (tiny protobuf walker)
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

# --- constants (sections 4-7, 10) ----------------------------------------------------------------------------

MAGIC = b"\x89VEIL\r\n\x1a"
MAJOR = 1
MINOR = 0
PREAMBLE_SIZE = 16
KEY_WRAP_SIZE = 64
TAG_SIZE = 16
DATA_KEY_SIZE = 32
FLAG_GRAPH_PUBLIC = 1
KNOWN_REQUIRED_FLAGS = FLAG_GRAPH_PUBLIC

MIN_HEADER_SIZE = 64
MAX_HEADER_SIZE = 16 << 20
MAX_SECTIONS = 1_000_000
MAX_SECTION_SIZE = 1 << 40
MAX_DATA_SIZE = 1 << 42
MIN_CHUNK_SIZE = 1 << 12
MAX_CHUNK_SIZE = 1 << 30
DEFAULT_CHUNK_SIZE = 1 << 20
MODEL_ID_MAX = 128
KEY_WRAP_INFO = b"veil/sealed/v1/key-wrap"

_MODEL_ID_RE = re.compile(rb"[A-Za-z0-9._-]+")


# --- errors: one class per failure kind ----------------------------------------------------------------------


class SealedError(Exception):
    """Base class of every rejection."""


class FormatError(SealedError):
    """A structural rule of the spec is broken (bad magic, field out of range, bad layout, ...)."""


class VersionError(SealedError):
    """The major version is not 1."""


class TruncatedError(SealedError):
    """The file is shorter than its preamble/header/layout says it must be."""


class TrailingDataError(FormatError):
    """The file is longer than data_offset + data_size + tag_table_size."""


class PaddingError(FormatError):
    """A padding byte (before data_offset or between sections) is not zero."""


class UnwrapError(SealedError):
    """The data key did not unwrap: wrong model key, or preamble/header/key wrap modified (the spec forbids
    saying which)."""


KeyError_ = UnwrapError  # the name used in the brief; UnwrapError is the canonical one


class AuthError(SealedError):
    """A chunk tag did not verify, or a public graph does not match graph_digest."""


class GraphMismatchError(SealedError):
    """Section 9: the graph's extracted initializers do not match the tensor sections."""


# --- helpers -------------------------------------------------------------------------------------------------


def align64(x: int) -> int:
    return (x + 63) & ~63


def _is_pow2(x: int) -> bool:
    return x > 0 and (x & (x - 1)) == 0


def valid_model_id(model_id: bytes) -> bool:
    return (
        1 <= len(model_id) <= MODEL_ID_MAX
        and _MODEL_ID_RE.fullmatch(model_id) is not None
        and model_id[:1] not in (b".", b"-")
    )


def kek_from_model_key(model_key: bytes) -> bytes:
    if len(model_key) not in (16, 32):
        raise ValueError(f"a model key is 32 bytes (or 16 for compatibility), got {len(model_key)}")
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=KEY_WRAP_INFO)
    return hkdf.derive(model_key)


def chunk_nonce(section: int, chunk: int) -> bytes:
    return struct.pack("<IQ", section, chunk)


def chunk_aad(header_digest: bytes, section: int, chunk: int, last: bool) -> bytes:
    return header_digest + struct.pack("<IQB", section, chunk, 1 if last else 0)


def key_wrap_aad(header_digest: bytes, key_version: int) -> bytes:
    return header_digest + struct.pack("<I", key_version)


class _Cursor:
    """A bounded reader over the header bytes; reading past the end is a FormatError."""

    def __init__(self, data: bytes, base: int) -> None:
        self.data = data
        self.pos = 0
        self.base = base  # absolute file offset of data[0], for the field map

    def take(self, n: int, what: str) -> bytes:
        if n > len(self.data) - self.pos:
            raise FormatError(f"header ends inside {what}")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]

    def u32(self, what: str) -> int:
        return int(struct.unpack("<I", self.take(4, what))[0])

    def u64(self, what: str) -> int:
        return int(struct.unpack("<Q", self.take(8, what))[0])

    @property
    def abs(self) -> int:
        return self.base + self.pos

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos


# --- data model ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Chunk:
    section: int
    index: int
    last: bool
    offset: int  # absolute file offset of the ciphertext
    size: int
    tag_offset: int  # absolute file offset of its 16-byte tag


@dataclass(frozen=True)
class Section:
    index: int
    offset: int  # relative to data_offset, as in the header
    size: int
    abs_offset: int  # absolute file offset
    encrypted: bool
    chunks: tuple[Chunk, ...]


@dataclass(frozen=True)
class Header:
    required_flags: int
    optional_flags: int
    model_version: int
    chunk_size: int
    file_id: bytes
    graph_digest: bytes
    model_id: bytes
    sections: tuple[tuple[int, int], ...]  # (offset, size)

    @property
    def public_graph(self) -> bool:
        return bool(self.required_flags & FLAG_GRAPH_PUBLIC)

    def encode(self, trailer: bytes = b"") -> bytes:
        """Serialises the header (no validation). `trailer` appends bytes after the section table."""
        out = bytearray()
        out += struct.pack("<IIQI", self.required_flags, self.optional_flags, self.model_version, self.chunk_size)
        out += self.file_id
        out += self.graph_digest
        out += bytes([len(self.model_id) & 0xFF]) + self.model_id
        out += struct.pack("<I", len(self.sections))
        for off, size in self.sections:
            out += struct.pack("<QQ", off, size)
        return bytes(out) + trailer


@dataclass(frozen=True)
class KeyWrap:
    key_version: int
    nonce: bytes
    wrapped_key: bytes
    tag: bytes

    def encode(self) -> bytes:
        return struct.pack("<I", self.key_version) + self.nonce + self.wrapped_key + self.tag


@dataclass
class SealedFile:
    major: int
    minor: int
    header_size: int
    header: Header
    key_wrap: KeyWrap
    header_digest: bytes
    data_offset: int
    data_size: int
    tag_table_offset: int
    tag_table_size: int
    sections: list[Section]
    # name -> (absolute offset, length) of every field and region, in file order (used by the tamper tool)
    fields: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def file_size(self) -> int:
        return self.tag_table_offset + self.tag_table_size

    @property
    def key_wrap_offset(self) -> int:
        return PREAMBLE_SIZE + self.header_size

    @property
    def chunks(self) -> list[Chunk]:
        return [c for s in self.sections for c in s.chunks]


def _chunk_layout(
    sections: list[tuple[int, int]], chunk_size: int, public_graph: bool, data_offset: int, tag_table_offset: int
) -> tuple[list[Section], int]:
    """Returns the sections with their chunks, and the tag table size."""
    out: list[Section] = []
    tag = tag_table_offset
    for s, (off, size) in enumerate(sections):
        encrypted = not (s == 0 and public_graph)
        chunks: list[Chunk] = []
        if encrypted:
            n = -(-size // chunk_size)
            for c in range(n):
                start = c * chunk_size
                length = min(chunk_size, size - start)
                chunks.append(Chunk(s, c, c == n - 1, data_offset + off + start, length, tag))
                tag += TAG_SIZE
        out.append(Section(s, off, size, data_offset + off, encrypted, tuple(chunks)))
    return out, tag - tag_table_offset


# --- parsing (section 8, steps 1-5) --------------------------------------------------------------------------


def parse(data: bytes) -> SealedFile:
    """Checks everything that needs no key. Raises a SealedError subclass on the first broken rule."""
    fields: dict[str, tuple[int, int]] = {}
    n = len(data)

    # (1) preamble
    if n < PREAMBLE_SIZE:
        raise TruncatedError(f"file of {n} bytes is shorter than the 16-byte preamble")
    if data[:8] != MAGIC:
        raise FormatError("bad magic")
    major, minor, header_size = struct.unpack_from("<HHI", data, 8)
    fields.update(magic=(0, 8), major=(8, 2), minor=(10, 2), header_size=(12, 4))
    if major != MAJOR:
        raise VersionError(f"unsupported major version {major}")
    # any minor version is accepted

    # (2) header_size against the cap and the file size, before reading the header
    if header_size < MIN_HEADER_SIZE or header_size > MAX_HEADER_SIZE:
        raise FormatError(f"header_size {header_size} out of range [{MIN_HEADER_SIZE}, {MAX_HEADER_SIZE}]")
    if n < PREAMBLE_SIZE + header_size + KEY_WRAP_SIZE:
        raise TruncatedError("file ends before the end of the header and key wrap")

    # (3) header, with a bounded cursor
    hdr_bytes = data[PREAMBLE_SIZE : PREAMBLE_SIZE + header_size]
    cur = _Cursor(hdr_bytes, PREAMBLE_SIZE)

    def mark(name: str, start: int) -> None:
        fields[name] = (start, cur.abs - start)

    p = cur.abs
    required_flags = cur.u32("required_flags")
    mark("required_flags", p)
    if required_flags & ~KNOWN_REQUIRED_FLAGS:
        raise FormatError(f"unknown required flags 0x{required_flags:08x}")
    public_graph = bool(required_flags & FLAG_GRAPH_PUBLIC)
    p = cur.abs
    optional_flags = cur.u32("optional_flags")  # unknown bits are ignored
    mark("optional_flags", p)
    p = cur.abs
    model_version = cur.u64("model_version")
    mark("model_version", p)
    p = cur.abs
    chunk_size = cur.u32("chunk_size")
    mark("chunk_size", p)
    if not _is_pow2(chunk_size) or not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise FormatError(f"bad chunk_size {chunk_size}")
    p = cur.abs
    file_id = cur.take(16, "file_id")
    mark("file_id", p)
    p = cur.abs
    graph_digest = cur.take(32, "graph_digest")
    mark("graph_digest", p)
    if not public_graph and graph_digest != bytes(32):
        raise FormatError("graph_digest must be zero when the graph is encrypted")
    p = cur.abs
    model_id_size = cur.u8("model_id_size")
    mark("model_id_size", p)
    if not 1 <= model_id_size <= MODEL_ID_MAX:
        raise FormatError(f"bad model_id_size {model_id_size}")
    p = cur.abs
    model_id = cur.take(model_id_size, "model_id")
    mark("model_id", p)
    if not valid_model_id(model_id):
        raise FormatError(f"bad model_id {model_id!r}")
    p = cur.abs
    section_count = cur.u32("section_count")
    mark("section_count", p)
    if not 1 <= section_count <= MAX_SECTIONS:
        raise FormatError(f"bad section_count {section_count}")
    if cur.remaining < 16 * section_count:
        raise FormatError("header ends inside the section table")
    sections: list[tuple[int, int]] = []
    expected_offset = 0
    for i in range(section_count):
        p = cur.abs
        off = cur.u64(f"sections[{i}].offset")
        mark(f"section[{i}].offset", p)
        p = cur.abs
        size = cur.u64(f"sections[{i}].size")
        mark(f"section[{i}].size", p)
        if off != expected_offset:
            raise FormatError(f"section {i} offset {off}, expected {expected_offset}")
        if size > MAX_SECTION_SIZE:
            raise FormatError(f"section {i} size {size} over the cap")
        end = off + size  # Python ints cannot overflow; the caps below bound what a C reader must hold
        if end > MAX_DATA_SIZE:
            raise FormatError("data_size over the cap")
        expected_offset = align64(end)
        sections.append((off, size))
    if sections[0][1] == 0:
        raise FormatError("the graph section is empty")
    if cur.remaining != 0:
        raise FormatError(f"{cur.remaining} trailing bytes in the header")
    data_size = sections[-1][0] + sections[-1][1]

    header = Header(
        required_flags, optional_flags, model_version, chunk_size, file_id, graph_digest, model_id, tuple(sections)
    )
    header_digest = hashlib.sha256(data[: PREAMBLE_SIZE + header_size]).digest()

    kw_off = PREAMBLE_SIZE + header_size
    key_version, = struct.unpack_from("<I", data, kw_off)
    key_wrap = KeyWrap(
        key_version, data[kw_off + 4 : kw_off + 16], data[kw_off + 16 : kw_off + 48], data[kw_off + 48 : kw_off + 64]
    )
    fields.update(
        {
            "key_version": (kw_off, 4),
            "wrap_nonce": (kw_off + 4, 12),
            "wrapped_key": (kw_off + 16, 32),
            "wrap_tag": (kw_off + 48, 16),
        }
    )
    if key_version < 1:
        raise FormatError("key_version must be >= 1")

    # (4) the file size
    data_offset = align64(kw_off + KEY_WRAP_SIZE)
    tag_table_offset = data_offset + data_size
    chunk_count = sum(-(-size // chunk_size) for i, (_, size) in enumerate(sections) if i > 0 or not public_graph)
    tag_table_size = TAG_SIZE * chunk_count
    expected = tag_table_offset + tag_table_size
    if n < expected:
        raise TruncatedError(f"file of {n} bytes, layout needs {expected}")
    if n > expected:
        raise TrailingDataError(f"{n - expected} trailing bytes after the tag table")
    # only now, with every chunk known to be in the file, enumerate them
    secs, listed_tag_size = _chunk_layout(sections, chunk_size, public_graph, data_offset, tag_table_offset)
    assert listed_tag_size == tag_table_size

    # (5) padding
    pad_start = kw_off + KEY_WRAP_SIZE
    fields["wrap_padding"] = (pad_start, data_offset - pad_start)
    if any(data[pad_start:data_offset]):
        raise PaddingError("nonzero padding before data_offset")
    for s in secs:
        fields[f"section[{s.index}].data"] = (s.abs_offset, s.size)
        if s.index + 1 < len(secs):
            gap_start = s.abs_offset + s.size
            gap_end = secs[s.index + 1].abs_offset
            fields[f"section[{s.index}].padding"] = (gap_start, gap_end - gap_start)
            if any(data[gap_start:gap_end]):
                raise PaddingError(f"nonzero padding after section {s.index}")
    fields["tag_table"] = (tag_table_offset, tag_table_size)

    return SealedFile(
        major=major,
        minor=minor,
        header_size=header_size,
        header=header,
        key_wrap=key_wrap,
        header_digest=header_digest,
        data_offset=data_offset,
        data_size=data_size,
        tag_table_offset=tag_table_offset,
        tag_table_size=tag_table_size,
        sections=secs,
        fields=fields,
    )


# --- opening (section 8, steps 6-8) --------------------------------------------------------------------------


def unwrap_data_key(sf: SealedFile, model_key: bytes) -> bytes:
    kw = sf.key_wrap
    try:
        data_key = AESGCM(kek_from_model_key(model_key)).decrypt(
            kw.nonce, kw.wrapped_key + kw.tag, key_wrap_aad(sf.header_digest, kw.key_version)
        )
    except InvalidTag:
        raise UnwrapError("the data key did not unwrap") from None
    if len(data_key) != DATA_KEY_SIZE:  # cannot happen: ciphertext is 32 bytes by layout
        raise UnwrapError("bad data key size")
    return data_key


def decrypt_sections(data: bytes, sf: SealedFile, data_key: bytes) -> list[bytes]:
    aead = AESGCM(data_key)
    out: list[bytes] = []
    for s in sf.sections:
        if not s.encrypted:
            plain = data[s.abs_offset : s.abs_offset + s.size]
            if hashlib.sha256(plain).digest() != sf.header.graph_digest:
                raise AuthError("public graph does not match graph_digest")
            out.append(plain)
            continue
        parts: list[bytes] = []
        for c in s.chunks:
            ct = data[c.offset : c.offset + c.size]
            tag = data[c.tag_offset : c.tag_offset + TAG_SIZE]
            try:
                aad = chunk_aad(sf.header_digest, c.section, c.index, c.last)
                parts.append(aead.decrypt(chunk_nonce(c.section, c.index), ct + tag, aad))
            except InvalidTag:
                raise AuthError(f"chunk {c.index} of section {c.section} did not authenticate") from None
        out.append(b"".join(parts))
    return out


def open_sealed(data: bytes, key: bytes) -> tuple[bytes, list[bytes]]:
    """Parses, unwraps and authenticates every chunk; returns (graph, [tensor sections])."""
    sf = parse(data)
    data_key = unwrap_data_key(sf, key)
    plains = decrypt_sections(data, sf, data_key)
    return plains[0], plains[1:]


# --- writing -------------------------------------------------------------------------------------------------


def section_table(sizes: list[int]) -> tuple[tuple[int, int], ...]:
    out: list[tuple[int, int]] = []
    off = 0
    for size in sizes:
        out.append((off, size))
        off = align64(off + size)
    return tuple(out)


def build(
    header: Header,
    plains: list[bytes],
    model_key: bytes,
    *,
    key_version: int = 1,
    data_key: bytes | None = None,
    wrap_nonce: bytes | None = None,
    major: int = MAJOR,
    minor: int = MINOR,
    header_trailer: bytes = b"",
) -> bytes:
    """An UNCHECKED writer: lays `plains` out at the offsets of `header.sections`, encrypts and authenticates them
    exactly as the spec says, whatever the header contains. Tests use it to make authenticated files that break
    a rule a reader must check explicitly. `seal` is the checked writer."""
    assert len(plains) == len(header.sections)
    for (_, size), p in zip(header.sections, plains):
        assert size == len(p), "plaintext size must equal the declared section size"
    data_key = os.urandom(DATA_KEY_SIZE) if data_key is None else data_key
    wrap_nonce = os.urandom(12) if wrap_nonce is None else wrap_nonce
    hdr = header.encode(header_trailer)
    preamble = MAGIC + struct.pack("<HHI", major, minor, len(hdr))
    header_digest = hashlib.sha256(preamble + hdr).digest()

    kek = kek_from_model_key(model_key)
    wrapped = AESGCM(kek).encrypt(wrap_nonce, data_key, key_wrap_aad(header_digest, key_version))
    key_wrap = KeyWrap(key_version, wrap_nonce, wrapped[:32], wrapped[32:]).encode()

    data_offset = align64(len(preamble) + len(hdr) + KEY_WRAP_SIZE)
    data_size = max((off + size for off, size in header.sections), default=0)
    region = bytearray(data_size)
    tags = bytearray()
    aead = AESGCM(data_key)
    public = header.public_graph
    for s, ((off, size), plain) in enumerate(zip(header.sections, plains)):
        if s == 0 and public:
            region[off : off + size] = plain
            continue
        n = -(-size // header.chunk_size)
        for c in range(n):
            pt = plain[c * header.chunk_size : (c + 1) * header.chunk_size]
            ct = aead.encrypt(chunk_nonce(s, c), pt, chunk_aad(header_digest, s, c, c == n - 1))
            start = off + c * header.chunk_size
            region[start : start + len(pt)] = ct[:-TAG_SIZE]
            tags += ct[-TAG_SIZE:]
    head = preamble + hdr + key_wrap
    return head + bytes(data_offset - len(head)) + bytes(region) + bytes(tags)


def seal(
    graph_bytes: bytes,
    tensor_sections: list[bytes],
    key: bytes,
    model_id: str | bytes,
    key_version: int = 1,
    model_version: int = 1,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    public_graph: bool = False,
    file_id: bytes | None = None,
    data_key: bytes | None = None,
    wrap_nonce: bytes | None = None,
) -> bytes:
    """Writes a spec-conformant file. graph_bytes is the already stripped ModelProto."""
    mid = model_id.encode() if isinstance(model_id, str) else bytes(model_id)
    if not valid_model_id(mid):
        raise ValueError(f"invalid model id {mid!r}")
    if not _is_pow2(chunk_size) or not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise ValueError(f"invalid chunk size {chunk_size}")
    if not graph_bytes:
        raise ValueError("the graph must not be empty")
    if not 1 <= key_version <= 0xFFFFFFFF or not 0 <= model_version < 1 << 64:
        raise ValueError("version out of range")
    if len(tensor_sections) + 1 > MAX_SECTIONS:
        raise ValueError("too many sections")
    file_id = os.urandom(16) if file_id is None else file_id
    if len(file_id) != 16:
        raise ValueError("file_id is 16 bytes")
    plains = [bytes(graph_bytes)] + [bytes(t) for t in tensor_sections]
    header = Header(
        required_flags=FLAG_GRAPH_PUBLIC if public_graph else 0,
        optional_flags=0,
        model_version=model_version,
        chunk_size=chunk_size,
        file_id=file_id,
        graph_digest=hashlib.sha256(graph_bytes).digest() if public_graph else bytes(32),
        model_id=mid,
        sections=section_table([len(p) for p in plains]),
    )
    return build(header, plains, key, key_version=key_version, data_key=data_key, wrap_nonce=wrap_nonce)


# --- section 9: the graph (a minimal protobuf walker, no onnx dependency) ------------------------------------

# bytes per element for ONNX data types 1-7 and 9-20 (8 is STRING, which is never extracted)
ELEMENT_SIZE: dict[int, int] = {
    1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 14: 8, 15: 16, 16: 2,
    17: 1, 18: 1, 19: 1, 20: 1,
}
ONNX_STRING = 8


class _PbError(GraphMismatchError):
    pass


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = 0
    for shift in range(0, 70, 7):
        if pos >= len(buf):
            raise _PbError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result & ((1 << 64) - 1), pos
    raise _PbError("varint too long")


def _fields(buf: bytes) -> list[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) of every field of a message, in order."""
    out: list[tuple[int, int, int | bytes]] = []
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        num, wt = key >> 3, key & 7
        if num == 0:
            raise _PbError("field number 0")
        if wt == 0:
            val, pos = _varint(buf, pos)
            out.append((num, wt, val))
        elif wt == 1:
            if pos + 8 > len(buf):
                raise _PbError("truncated fixed64")
            out.append((num, wt, buf[pos : pos + 8]))
            pos += 8
        elif wt == 2:
            length, pos = _varint(buf, pos)
            if length > len(buf) - pos:
                raise _PbError("truncated length-delimited field")
            out.append((num, wt, buf[pos : pos + length]))
            pos += length
        elif wt == 5:
            if pos + 4 > len(buf):
                raise _PbError("truncated fixed32")
            out.append((num, wt, buf[pos : pos + 4]))
            pos += 4
        else:
            raise _PbError(f"unsupported wire type {wt}")
    return out


def _signed64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


@dataclass(frozen=True)
class Initializer:
    name: str
    data_type: int
    dims: tuple[int, ...]
    has_data: bool  # any of the data fields 4, 5, 7, 9, 10, 11 present
    external: bool
    segment: bool

    @property
    def extracted(self) -> bool:
        return self.data_type != ONNX_STRING

    @property
    def byte_size(self) -> int:
        n = 1
        for d in self.dims:
            n *= d
        return n * ELEMENT_SIZE[self.data_type]


def graph_initializers(graph: bytes) -> list[Initializer]:
    """The top-level graph's initializers, in order (ModelProto.graph=7, GraphProto.initializer=5)."""
    inits: list[Initializer] = []
    for num, wt, val in _fields(graph):
        if num != 7:
            continue
        if wt != 2:
            raise _PbError("ModelProto.graph is not a message")
        assert isinstance(val, bytes)
        for gnum, gwt, gval in _fields(val):
            if gnum == 15:
                raise GraphMismatchError("sparse initializers are not allowed")
            if gnum != 5:
                continue
            if gwt != 2:
                raise _PbError("GraphProto.initializer is not a message")
            assert isinstance(gval, bytes)
            inits.append(_tensor(gval))
    return inits


def _tensor(buf: bytes) -> Initializer:
    dims: list[int] = []
    data_type = 0
    name = ""
    has_data = external = segment = False
    for num, wt, val in _fields(buf):
        if num == 1:  # dims: repeated int64, packed or not
            if wt == 0:
                assert isinstance(val, int)
                dims.append(_signed64(val))
            elif wt == 2:
                assert isinstance(val, bytes)
                p = 0
                while p < len(val):
                    v, p = _varint(val, p)
                    dims.append(_signed64(v))
            else:
                raise _PbError("bad dims encoding")
        elif num == 2 and wt == 0:
            assert isinstance(val, int)
            data_type = val
        elif num == 3:
            segment = True
        elif num in (4, 5, 7, 9, 10, 11):
            has_data = True
        elif num == 8 and wt == 2:
            assert isinstance(val, bytes)
            name = val.decode("utf-8", "replace")
        elif num == 13:  # external_data entries
            external = True
        elif num == 14 and wt == 0:
            external = external or val == 1
    return Initializer(name, data_type, tuple(dims), has_data, external, segment)


def check_graph(graph: bytes, tensors: list[bytes]) -> list[Initializer]:
    """The reader checks of section 9. Returns the extracted initializers."""
    extracted: list[Initializer] = []
    for init in graph_initializers(graph):
        if init.external or init.segment:
            raise GraphMismatchError(f"initializer {init.name!r} has external data or a segment")
        if init.data_type == ONNX_STRING:
            continue
        if init.data_type not in ELEMENT_SIZE:
            raise GraphMismatchError(f"initializer {init.name!r} has unsupported data type {init.data_type}")
        if any(d < 0 for d in init.dims):
            raise GraphMismatchError(f"initializer {init.name!r} has a negative dim")
        extracted.append(init)
    if len(extracted) != len(tensors):
        raise GraphMismatchError(f"{len(extracted)} extracted initializers but {len(tensors)} tensor sections")
    for k, (init, t) in enumerate(zip(extracted, tensors)):
        if init.byte_size != len(t):
            raise GraphMismatchError(
                f"section {k + 1} holds {len(t)} bytes but initializer {init.name!r} needs {init.byte_size}"
            )
    return extracted
