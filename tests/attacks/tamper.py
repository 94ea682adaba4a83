#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Writes damaged variants of a valid .veil file, one file per mutation, for checking that a reader rejects
each of them.

    tamper.py VALID.veil OTHER.veil KEYFILE OUTDIR

OTHER is a second valid file of the same model sealed under the same key (for splicing). OUTDIR receives
<kind>.veil for every mutation, wrong.key, and manifest.json: a list of
    {"file", "kind", "description", "layer", ["key"]}
where layer says which check of the independent reference catches it:
    "format" - rejected by sealed_ref.open_sealed (layout, padding, version, unwrap, chunk tags),
    "key"    - the file is intact but opened with the key named in "key" (wrong key),
    "graph"  - authenticates under the key but lies about the model: rejected only by the section 9 checks
               (sealed_ref.check_graph), i.e. when a reader matches sections to the graph's initializers.
Every variant must be rejected by a conforming reader. Mutations that do not apply to VALID (e.g. a chunk swap
when no section has two chunks) are skipped and listed on stderr.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import sys
from dataclasses import dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "vectors"))

import sealed_ref as ref  # noqa: E402
from sealed_ref import Chunk, SealedFile  # noqa: E402


def write_key(path: Path, key: bytes) -> None:
    """Key files are private (mode 0600), as `veil keygen` makes them."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    os.chmod(path, 0o600)


@dataclass
class Variant:
    kind: str
    description: str
    data: bytes
    layer: str = "format"
    key: str | None = None


class Tamperer:
    def __init__(self, valid: bytes, other: bytes, key: bytes) -> None:
        self.valid = valid
        self.other = other
        self.key = key
        self.sf = ref.parse(valid)
        self.so = ref.parse(other)
        self.graph, self.tensors = ref.open_sealed(valid, key)
        ref.open_sealed(other, key)  # OTHER must be valid under the same key
        self.variants: list[Variant] = []
        self.skipped: list[str] = []

    # -- plumbing -------------------------------------------------------------------------------------------

    def add(self, kind: str, description: str, data: bytes, layer: str = "format", key: str | None = None) -> None:
        assert all(v.kind != kind for v in self.variants), f"duplicate kind {kind}"
        if key is None:
            assert data != self.valid, f"mutation {kind} does not change the file"
        self.variants.append(Variant(kind, description, data, layer, key))

    def skip(self, kind: str, why: str) -> None:
        self.skipped.append(f"{kind}: {why}")

    def field(self, name: str) -> tuple[int, int]:
        return self.sf.fields[name]

    def flipped(self, pos: int, bit: int = 0) -> bytes:
        b = bytearray(self.valid)
        b[pos] ^= 1 << bit
        return bytes(b)

    def patched(self, pos: int, new: bytes, base: bytes | None = None) -> bytes:
        b = bytearray(self.valid if base is None else base)
        b[pos : pos + len(new)] = new
        return bytes(b)

    def flip_field(self, kind: str, name: str, byte: int = 0, bit: int = 0, what: str = "") -> None:
        if name not in self.sf.fields:
            self.skip(kind, f"no field {name}")
            return
        off, length = self.field(name)
        if length == 0:
            self.skip(kind, f"field {name} is empty")
            return
        byte = byte % length
        self.add(kind, f"flip bit {bit} of byte {byte} of {name}{what}", self.flipped(off + byte, bit))

    def encrypted_sections(self) -> list[ref.Section]:
        return [s for s in self.sf.sections if s.encrypted]

    def tag(self, c: Chunk, data: bytes | None = None) -> bytes:
        d = self.valid if data is None else data
        return d[c.tag_offset : c.tag_offset + ref.TAG_SIZE]

    def ct(self, c: Chunk, data: bytes | None = None) -> bytes:
        d = self.valid if data is None else data
        return d[c.offset : c.offset + c.size]

    # -- mutations ------------------------------------------------------------------------------------------

    def truncations(self) -> None:
        sf = self.sf
        n = len(self.valid)
        points: list[tuple[str, int]] = [("empty", 0)]
        for name, (off, _) in sf.fields.items():
            if off < sf.data_offset:
                points.append((f"at_{name}", off))
            if name in ("magic", "header_size", "model_id", "file_id", "graph_digest"):
                points.append((f"inside_{name}", off + 3))
        points.append(("at_data_offset", sf.data_offset))
        points.append(("inside_data", sf.data_offset + sf.data_size // 2))
        for s in sf.sections[1:]:
            points.append((f"at_section_{s.index}", s.abs_offset))
        points.append(("at_tag_table", sf.tag_table_offset))
        if sf.tag_table_size:
            points.append(("inside_tag_table", sf.tag_table_offset + sf.tag_table_size // 2))
            points.append(("inside_last_tag", n - 8))
        points.append(("one_byte_short", n - 1))
        seen: set[int] = set()
        for name, length in points:
            if length in seen or length >= n:
                continue
            seen.add(length)
            kind = "truncate_" + name.replace("[", "_").replace("]", "").replace(".", "_")
            self.add(kind, f"file truncated to {length} bytes ({name})", self.valid[:length])
        self.add("trailing_byte", "one zero byte appended", self.valid + b"\x00")
        self.add("trailing_tag", "16 extra bytes (a fake tag) appended", self.valid + self.valid[-16:])

    def bit_flips(self) -> None:
        sf = self.sf
        self.flip_field("flip_magic_first", "magic", 0)
        self.flip_field("flip_magic_last", "magic", 7, 7)
        self.flip_field("flip_major", "major", 0, 1, " (major 1 -> 3)")
        self.add("major_0", "major version set to 0", self.patched(8, struct.pack("<H", 0)))
        self.add("major_2", "major version set to 2", self.patched(8, struct.pack("<H", 2)))
        self.flip_field("flip_minor", "minor", 0, 0, " (a reader accepts any minor, but the header digest changes)")
        self.flip_field("flip_header_size_low", "header_size", 0, 0)
        self.flip_field("flip_header_size_high", "header_size", 3, 7, " (header_size over the cap)")
        self.add("header_size_63", "header_size set to 63 (< 64)", self.patched(12, struct.pack("<I", 63)))
        self.add(
            "header_size_cap_plus_1",
            "header_size set to 16 MiB + 1",
            self.patched(12, struct.pack("<I", ref.MAX_HEADER_SIZE + 1)),
        )
        self.add(
            "header_size_grow_64",
            "header_size 64 bytes larger (header would swallow the key wrap)",
            self.patched(12, struct.pack("<I", sf.header_size + 64)),
        )
        self.flip_field("flip_required_flags_public", "required_flags", 0, 0, " (toggles GRAPH_PUBLIC)")
        self.flip_field("flip_required_flags_unknown", "required_flags", 0, 1, " (unknown required flag)")
        self.flip_field("flip_required_flags_high", "required_flags", 3, 7, " (unknown required flag)")
        self.flip_field("flip_optional_flags", "optional_flags", 0, 0, " (ignored bit, but header digest changes)")
        self.flip_field("flip_model_version", "model_version", 0, 0)
        self.flip_field("flip_model_version_high", "model_version", 7, 7)
        self.flip_field("flip_chunk_size", "chunk_size", 0, 0, " (not a power of two)")
        off, _ = self.field("chunk_size")
        cs = sf.header.chunk_size
        self.add("chunk_size_double", f"chunk_size {cs} -> {cs * 2}", self.patched(off, struct.pack("<I", cs * 2)))
        if cs > ref.MIN_CHUNK_SIZE:
            self.add("chunk_size_half", f"chunk_size {cs} -> {cs // 2}", self.patched(off, struct.pack("<I", cs // 2)))
        self.add("chunk_size_2k", "chunk_size 2048 (< 4096)", self.patched(off, struct.pack("<I", 2048)))
        self.add("chunk_size_2g", "chunk_size 2^31 (> 2^30)", self.patched(off, struct.pack("<I", 1 << 31)))
        self.flip_field("flip_file_id", "file_id", 5, 3)
        self.flip_field("flip_graph_digest", "graph_digest", 31, 0)
        self.flip_field("flip_model_id_size_low", "model_id_size", 0, 0)
        self.flip_field("flip_model_id_size_high", "model_id_size", 0, 7, " (> 128)")
        mid_off, _ = self.field("model_id")
        self.add("model_id_size_0", "model_id_size set to 0", self.patched(mid_off - 1, b"\x00"))
        self.flip_field("flip_model_id", "model_id", 0, 0, " (still a valid id character)")
        self.add("model_id_bad_char", "first model_id byte set to '/'", self.patched(mid_off, b"/"))
        self.add("model_id_leading_dot", "first model_id byte set to '.'", self.patched(mid_off, b"."))
        self.add("model_id_leading_dash", "first model_id byte set to '-'", self.patched(mid_off, b"-"))
        self.add("model_id_nul", "last model_id byte set to NUL",
                 self.patched(mid_off + len(sf.header.model_id) - 1, b"\x00"))
        self.flip_field("flip_section_count_low", "section_count", 0, 0)
        self.flip_field("flip_section_count_high", "section_count", 3, 7, " (huge section count)")
        sc_off, _ = self.field("section_count")
        self.add("section_count_0", "section_count set to 0", self.patched(sc_off, struct.pack("<I", 0)))
        self.add(
            "section_count_cap_plus_1",
            "section_count set to 1,000,001",
            self.patched(sc_off, struct.pack("<I", ref.MAX_SECTIONS + 1)),
        )
        last = len(sf.sections) - 1
        self.flip_field("flip_section0_offset", "section[0].offset", 0, 6, " (graph not at offset 0)")
        self.flip_field("flip_section0_size", "section[0].size", 0, 0)
        if last >= 1:
            self.flip_field("flip_section1_offset", "section[1].offset", 0, 6, " (offset moved by 64)")
            self.flip_field("flip_section1_offset_low", "section[1].offset", 0, 0, " (unaligned offset)")
            self.flip_field("flip_section1_size", "section[1].size", 0, 0)
            self.flip_field("flip_last_section_size_high", f"section[{last}].size", 5, 2, " (> 2^40)")
            self.flip_field("flip_section1_offset_top", "section[1].offset", 7, 7, " (offset wraps 64 bits)")
            # a size so large that offset + size overflows u64 in a careless reader
            so, _ = self.field("section[1].size")
            self.add("section1_size_max", "section[1].size = 2^64 - 1", self.patched(so, b"\xff" * 8))
            self.add("section1_size_cap_plus_1", "section[1].size = 2^40 + 1",
                     self.patched(so, struct.pack("<Q", (1 << 40) + 1)))
            if last >= 5:
                # every section within its own cap, consistent offsets, but data_size over 2^42
                big = list(sf.header.sections)
                for i in range(1, last + 1):
                    big[i] = (0, 1 << 40)
                table = ref.section_table([size for _, size in big])
                out = self.valid
                for i, (o, size) in enumerate(table):
                    fo, _ = self.field(f"section[{i}].offset")
                    out = self.patched(fo, struct.pack("<QQ", o, size), out)
                self.add("data_size_over_cap", f"sections 1..{last} of 2^40 bytes each: data_size over 2^42", out)
        self.flip_field("flip_key_version_to_0", "key_version", 0, 0, " (1 -> 0 when key_version is 1)")
        self.flip_field("flip_key_version", "key_version", 0, 1)
        self.flip_field("flip_wrap_nonce", "wrap_nonce", 6, 4)
        self.flip_field("flip_wrapped_key_first", "wrapped_key", 0, 0)
        self.flip_field("flip_wrapped_key_last", "wrapped_key", 31, 7)
        self.flip_field("flip_wrap_tag", "wrap_tag", 15, 0)

        # padding: not covered by any tag, so only an explicit zero check catches it
        self.flip_field("padding_after_key_wrap", "wrap_padding", 0, 0)
        self.flip_field("padding_before_data_offset", "wrap_padding", -1, 7)
        gaps = [s for s in sf.sections if sf.fields.get(f"section[{s.index}].padding", (0, 0))[1] > 0]
        if gaps:
            self.flip_field("padding_after_graph" if gaps[0].index == 0 else "padding_between_sections",
                            f"section[{gaps[0].index}].padding", 0, 0)
            if len(gaps) > 1:
                self.flip_field("padding_between_tensors", f"section[{gaps[-1].index}].padding", -1, 7)
        else:
            self.skip("padding_between_sections", "no gap between sections")

        # the data region
        s0 = sf.sections[0]
        self.flip_field("flip_graph_first", "section[0].data", 0, 0, " (graph)")
        self.flip_field("flip_graph_middle", "section[0].data", s0.size // 2, 3, " (graph)")
        self.flip_field("flip_graph_last", "section[0].data", s0.size - 1, 7, " (graph)")
        tensors = [s for s in sf.sections[1:] if s.chunks]
        if tensors:
            big = max(tensors, key=lambda s: (len(s.chunks), s.size))
            first, mid, lastc = big.chunks[0], big.chunks[len(big.chunks) // 2], big.chunks[-1]
            self.add("flip_tensor_first_chunk", f"flip in chunk 0 of section {big.index}", self.flipped(first.offset))
            if len(big.chunks) >= 3:
                self.add("flip_tensor_middle_chunk", f"flip in chunk {mid.index} of section {big.index}",
                         self.flipped(mid.offset + mid.size // 2, 5))
            else:
                self.skip("flip_tensor_middle_chunk", "no tensor section with 3 chunks")
            if len(big.chunks) >= 2:
                self.add("flip_tensor_last_chunk", f"flip in last chunk ({lastc.index}) of section {big.index}",
                         self.flipped(lastc.offset + lastc.size - 1, 7))
            else:
                self.skip("flip_tensor_last_chunk", "no tensor section with 2 chunks")
            lt = tensors[-1]
            self.add("flip_last_tensor", f"flip in the last byte of section {lt.index}",
                     self.flipped(lt.abs_offset + lt.size - 1, 0))
        else:
            self.skip("flip_tensor_*", "no non-empty tensor section")

        # the tag table
        chunks = sf.chunks
        if chunks:
            self.add("flip_tag_first", "flip in the first tag of the tag table", self.flipped(chunks[0].tag_offset))
            m = chunks[len(chunks) // 2]
            self.add("flip_tag_middle", f"flip in the tag of chunk {m.index} of section {m.section}",
                     self.flipped(m.tag_offset + 7, 4))
            self.add("flip_tag_last", "flip in the last byte of the file (last tag)", self.flipped(len(self.valid) - 1, 7))
            if s0.encrypted and len(sf.sections) > 1 and sf.sections[1].chunks:
                self.add("flip_tag_first_tensor", "flip in the tag of chunk 0 of section 1",
                         self.flipped(sf.sections[1].chunks[0].tag_offset + 15, 0))
            self.add("zero_tag_table", "every tag set to zero",
                     self.patched(sf.tag_table_offset, bytes(sf.tag_table_size)))

    def swap_chunks(self, a: Chunk, b: Chunk, with_tags: bool = True, base: bytes | None = None) -> bytes:
        assert a.size == b.size
        d = self.valid if base is None else base
        out = self.patched(a.offset, self.ct(b, d), d)
        out = self.patched(b.offset, self.ct(a, d), out)
        if with_tags:
            out = self.patched(a.tag_offset, self.tag(b, d), out)
            out = self.patched(b.tag_offset, self.tag(a, d), out)
        return out

    def chunk_moves(self) -> None:
        sf = self.sf
        inner = next((s for s in self.encrypted_sections() if len(s.chunks) >= 2
                      and s.chunks[0].size == s.chunks[1].size), None)
        if inner is not None:
            a, b = inner.chunks[0], inner.chunks[1]
            self.add("swap_chunks_in_section", f"chunks 0 and 1 of section {inner.index} swapped with their tags",
                     self.swap_chunks(a, b))
            self.add("swap_chunks_in_section_data_only", f"chunks 0 and 1 of section {inner.index} swapped, tags kept",
                     self.swap_chunks(a, b, with_tags=False))
            self.add("swap_tags_in_section", f"tags of chunks 0 and 1 of section {inner.index} swapped",
                     self.patched(b.tag_offset, self.tag(a), self.patched(a.tag_offset, self.tag(b))))
            dup = self.patched(b.offset, self.ct(a))
            dup = self.patched(b.tag_offset, self.tag(a), dup)
            self.add("duplicate_chunk", f"chunk 0 of section {inner.index} (with tag) copied over chunk 1", dup)
            lastc = inner.chunks[-1]
            if lastc.size == a.size and lastc.index != a.index and lastc.index != b.index:
                self.add("swap_first_and_last_chunk", f"chunk 0 and last chunk of section {inner.index} swapped",
                         self.swap_chunks(a, lastc))
        else:
            self.skip("swap_chunks_in_section", "no section with two equal-size chunks")
        pair = None
        chunks = sf.chunks
        for i, a in enumerate(chunks):
            for b in chunks[i + 1 :]:
                if a.section != b.section and a.size == b.size and self.ct(a) != self.ct(b):
                    pair = (a, b)
                    break
            if pair:
                break
        if pair:
            a, b = pair
            self.add("swap_chunks_between_sections",
                     f"chunk {a.index} of section {a.section} <-> chunk {b.index} of section {b.section}, with tags",
                     self.swap_chunks(a, b))
        else:
            self.skip("swap_chunks_between_sections", "no two equal-size chunks in different sections")

        # whole sections of equal size swapped in place (data and tag runs)
        tens = [s for s in sf.sections[1:] if s.encrypted and s.size]
        same = next(((x, y) for i, x in enumerate(tens) for y in tens[i + 1 :]
                     if x.size == y.size and self.valid[x.abs_offset:x.abs_offset + x.size]
                     != self.valid[y.abs_offset:y.abs_offset + y.size]), None)
        if same:
            x, y = same
            out = self.valid
            for ca, cb in zip(x.chunks, y.chunks):
                out = self.swap_chunks(ca, cb, base=out)
            self.add("swap_sections_same_size", f"sections {x.index} and {y.index} (same size) swapped in place", out)
        else:
            self.skip("swap_sections_same_size", "no two equal-size tensor sections")
        if len(sf.sections) >= 3:
            self.add("reorder_sections", "sections 1 and 2 swapped in the section table, data and tags moved",
                     self.reordered([0, 2, 1] + list(range(3, len(sf.sections)))))
        else:
            self.skip("reorder_sections", "fewer than two tensor sections")

    def reordered(self, perm: list[int]) -> bytes:
        """The file with its sections in the order perm (ciphertext and tags moved, header rewritten)."""
        sf, d = self.sf, self.valid
        secs = [sf.sections[i] for i in perm]
        table = ref.section_table([s.size for s in secs])
        hdr = replace(sf.header, sections=table).encode()
        assert len(hdr) == sf.header_size
        head = d[: ref.PREAMBLE_SIZE] + hdr + d[sf.key_wrap_offset : sf.data_offset]
        region = bytearray(sf.data_size)
        tags = bytearray()
        for (off, size), s in zip(table, secs):
            region[off : off + size] = d[s.abs_offset : s.abs_offset + s.size]
            for c in s.chunks:
                tags += self.tag(c)
        return head + bytes(region) + bytes(tags)

    def splices(self) -> None:
        sf, so, d, o = self.sf, self.so, self.valid, self.other
        same_layout = sf.header.sections == so.header.sections and sf.header_size == so.header_size \
            and sf.header.chunk_size == so.header.chunk_size
        if same_layout:
            tens = [s for s in sf.sections[1:] if s.chunks]
            if tens:
                c = tens[0].chunks[0]
                out = self.patched(c.offset, self.ct(c, o))
                out = self.patched(c.tag_offset, self.tag(c, o), out)
                self.add("splice_chunk_from_other", f"chunk 0 of section {c.section} and its tag taken from OTHER", out)
                c = tens[-1].chunks[-1]
                out = self.patched(c.offset, self.ct(c, o))
                out = self.patched(c.tag_offset, self.tag(c, o), out)
                self.add("splice_last_chunk_from_other",
                         f"last chunk of section {c.section} and its tag taken from OTHER", out)
            s0 = sf.sections[0]
            if s0.encrypted:
                out = self.patched(s0.abs_offset, o[s0.abs_offset : s0.abs_offset + s0.size])
                for c in s0.chunks:
                    out = self.patched(c.tag_offset, self.tag(c, o), out)
                self.add("splice_graph_from_other", "graph section (and its tags) taken from OTHER", out)
            else:
                self.skip("splice_graph_from_other", "a public graph is the same plaintext in both files")
            self.add("splice_tag_table_from_other", "the whole tag table taken from OTHER",
                     self.patched(sf.tag_table_offset, o[so.tag_table_offset :]))
            self.add("splice_header_from_other", "preamble and header of OTHER with this key wrap and data",
                     o[: sf.key_wrap_offset] + d[sf.key_wrap_offset :])
        else:
            self.skip("splice_*_from_other", "OTHER does not have the same layout")
        self.add("splice_key_wrap_from_other", "the 64-byte key wrap of OTHER",
                 d[: sf.key_wrap_offset] + o[so.key_wrap_offset : so.key_wrap_offset + 64] + d[sf.key_wrap_offset + 64 :])
        self.add("splice_data_from_other", "this preamble, header and key wrap with the data region and tags of OTHER",
                 d[: sf.data_offset] + o[so.data_offset :])
        self.add("splice_data_region_from_other", "the data region of OTHER, this file's tag table",
                 d[: sf.data_offset] + o[so.data_offset : so.data_offset + so.data_size] + d[sf.tag_table_offset :])

    # -- authenticated files (re-sealed with the key) -------------------------------------------------------

    def reseal(self, graph: bytes, tensors: list[bytes], public: bool | None = None) -> bytes:
        h = self.sf.header
        return ref.seal(graph, tensors, self.key, h.model_id, key_version=self.sf.key_wrap.key_version,
                        model_version=h.model_version, chunk_size=h.chunk_size,
                        public_graph=h.public_graph if public is None else public)

    def lies(self) -> None:
        g, t = self.graph, self.tensors
        if t:
            self.add("lie_drop_last_tensor", "re-sealed with the key, last tensor section dropped",
                     self.reseal(g, t[:-1]), "graph")
            self.add("lie_drop_first_tensor", "re-sealed with the key, first tensor section dropped",
                     self.reseal(g, t[1:]), "graph")
            self.add("lie_extra_tensor", "re-sealed with the key, last tensor section duplicated at the end",
                     self.reseal(g, t + [t[-1]]), "graph")
            self.add("lie_graph_only", "re-sealed with the key, no tensor section at all", self.reseal(g, []), "graph")
            self.add("lie_public_drop_last_tensor", "re-sealed with the key and a public graph, last tensor dropped",
                     self.reseal(g, t[:-1], public=True), "graph")
            big = max(range(len(t)), key=lambda i: len(t[i]))
            short = list(t)
            short[big] = t[big][:-1]
            self.add("lie_tensor_one_byte_short", f"re-sealed with the key, tensor {big} one byte short",
                     self.reseal(g, short), "graph")
            long_ = list(t)
            long_[big] = t[big] + b"\x00"
            self.add("lie_tensor_one_byte_long", f"re-sealed with the key, tensor {big} one byte long",
                     self.reseal(g, long_), "graph")
            pair = next(((i, j) for i in range(len(t)) for j in range(i + 1, len(t)) if len(t[i]) != len(t[j])), None)
            if pair:
                i, j = pair
                sw = list(t)
                sw[i], sw[j] = t[j], t[i]
                self.add("lie_swap_tensors_diff_size",
                         f"re-sealed with the key, tensors {i} and {j} (sizes {len(t[i])}, {len(t[j])}) swapped",
                         self.reseal(g, sw), "graph")
            else:
                self.skip("lie_swap_tensors_diff_size", "no two tensors of different sizes")
        else:
            self.skip("lie_*", "VALID has no tensor section")
        self.add("lie_garbage_graph", "re-sealed with the key, graph section is not a protobuf message",
                 self.reseal(b"\xff\xff\xff\xff\xff\xff\xff\xff", t), "graph")
        self.add("lie_truncated_graph", "re-sealed with the key, graph section cut in half",
                 self.reseal(g[: len(g) // 2 + 1], t), "graph")

    def authenticated_rule_breaks(self) -> None:
        """Files whose every tag verifies under the key but that break a rule of section 5 a reader must check."""
        sf, h = self.sf, self.sf.header
        plains = [self.graph] + self.tensors
        table = ref.section_table([len(p) for p in plains])
        kv = sf.key_wrap.key_version

        def b(header: ref.Header, ps: list[bytes] | None = None, *, key_version: int = kv, major: int = ref.MAJOR,
              header_trailer: bytes = b"") -> bytes:
            return ref.build(header, plains if ps is None else ps, self.key, key_version=key_version, major=major,
                             header_trailer=header_trailer)

        base = replace(h, sections=table)
        self.add("auth_unknown_required_flag", "authenticated file with required flag bit 1 set",
                 b(replace(base, required_flags=h.required_flags | 2)))
        self.add("auth_graph_digest_set_while_encrypted", "authenticated file, encrypted graph, nonzero graph_digest",
                 b(replace(base, required_flags=0, graph_digest=hashlib.sha256(self.graph).digest())))
        self.add("auth_public_graph_wrong_digest", "authenticated file, public graph whose digest does not match",
                 b(replace(base, required_flags=1, graph_digest=hashlib.sha256(b"not the graph").digest())))
        self.add("auth_public_graph_zero_digest", "authenticated file, public graph with an all-zero digest",
                 b(replace(base, required_flags=1, graph_digest=bytes(32))))
        self.add("auth_chunk_size_not_pow2", "authenticated file with chunk_size 5000", b(replace(base, chunk_size=5000)))
        self.add("auth_chunk_size_2k", "authenticated file with chunk_size 2048", b(replace(base, chunk_size=2048)))
        for kind, mid in (("auth_model_id_slash", b"bad/id"), ("auth_model_id_leading_dot", b".model"),
                          ("auth_model_id_leading_dash", b"-model"), ("auth_model_id_empty", b""),
                          ("auth_model_id_129", b"m" * 129), ("auth_model_id_space", b"my model"),
                          ("auth_model_id_utf8", "modèle".encode())):
            self.add(kind, f"authenticated file with model id {mid[:20]!r}", b(replace(base, model_id=mid)))
        self.add("auth_header_trailing_bytes", "authenticated file, 4 bytes after the section table inside the header",
                 b(base, header_trailer=b"\x00" * 4))
        self.add("auth_major_2", "authenticated file with major version 2", b(base, major=2))
        self.add("auth_key_version_0", "authenticated file with key_version 0", b(base, key_version=0))
        self.add("auth_empty_graph", "authenticated file whose graph section is empty",
                 b(replace(base, sections=ref.section_table([0] + [len(x) for x in self.tensors])),
                   [b""] + self.tensors))
        self.add("auth_zero_sections", "authenticated file with section_count 0", b(replace(base, sections=()), []))
        packed: list[tuple[int, int]] = []
        off = 0
        for p in plains:
            packed.append((off, len(p)))
            off += len(p)
        if tuple(packed) != table:
            self.add("auth_unaligned_sections", "authenticated file, sections packed without 64-byte alignment",
                     b(replace(base, sections=tuple(packed))))
        else:
            self.skip("auth_unaligned_sections", "every section size is a multiple of 64")
        if len(plains) >= 2:
            holed = list(table)
            for i in range(1, len(holed)):
                holed[i] = (holed[i][0] + 64, holed[i][1])
            self.add("auth_section_hole", "authenticated file, 64 zero bytes of hole before section 1",
                     b(replace(base, sections=tuple(holed))))
            # the last section's offset one alignment step early: it overlaps the previous section
            if len(plains) >= 3 and table[-1][0] >= 64 and table[-2][1] >= 64:
                ov = list(table)
                ov[-1] = (ov[-1][0] - 64, ov[-1][1])
                self.add("auth_sections_overlap", "authenticated file, last section 64 bytes early (overlap)",
                         b(replace(base, sections=tuple(ov))))
            else:
                self.skip("auth_sections_overlap", "sections too small")

    def wrong_key(self, outdir: Path) -> None:
        wrong = os.urandom(32)
        while wrong == self.key:
            wrong = os.urandom(32)
        write_key(outdir / "wrong.key", wrong)
        self.add("wrong_key", "the intact file opened with another 32-byte key", self.valid, "key", key="wrong.key")
        flipped = bytearray(self.key)
        flipped[0] ^= 1
        write_key(outdir / "wrong_bit.key", bytes(flipped))
        self.add("wrong_key_one_bit", "the intact file opened with the key with one bit flipped", self.valid, "key",
                 key="wrong_bit.key")

    def run(self, outdir: Path) -> list[Variant]:
        self.truncations()
        self.bit_flips()
        self.chunk_moves()
        self.splices()
        self.lies()
        self.authenticated_rule_breaks()
        self.wrong_key(outdir)
        return self.variants


def write(valid: bytes, other: bytes, key: bytes, outdir: Path) -> list[dict[str, str]]:
    outdir.mkdir(parents=True, exist_ok=True)
    t = Tamperer(valid, other, key)
    manifest: list[dict[str, str]] = []
    for v in t.run(outdir):
        name = f"{v.kind}.veil"
        (outdir / name).write_bytes(v.data)
        entry = {"file": name, "kind": v.kind, "description": v.description, "layer": v.layer}
        if v.key is not None:
            entry["key"] = v.key
        manifest.append(entry)
    (outdir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    for s in t.skipped:
        print(f"tamper: skipped {s}", file=sys.stderr)
    return manifest


def main(argv: list[str]) -> int:
    if len(argv) != 5:
        print("usage: tamper.py VALID.veil OTHER.veil KEYFILE OUTDIR", file=sys.stderr)
        return 2
    valid, other, key = (Path(a).read_bytes() for a in argv[1:4])
    manifest = write(valid, other, key, Path(argv[4]))
    print(f"tamper: wrote {len(manifest)} variants to {argv[4]}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
