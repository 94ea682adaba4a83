#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Checks a .veil file against the spec with the independent reference (sealed_ref), never with libveil.

    check_sealed.py FILE --key KEYFILE [--expect-graph-sha256 HEX] [--check-graph]

Prints a JSON summary on stdout and exits 0 when the file is valid; prints one line on stderr and exits 1
otherwise (2 for usage errors).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import sealed_ref  # noqa: E402


def summarize(data: bytes, key: bytes, check_graph: bool = False) -> dict[str, object]:
    sf = sealed_ref.parse(data)
    data_key = sealed_ref.unwrap_data_key(sf, key)
    plains = sealed_ref.decrypt_sections(data, sf, data_key)
    graph, tensors = plains[0], plains[1:]
    if check_graph:
        sealed_ref.check_graph(graph, tensors)
    h = sf.header
    return {
        "model_id": h.model_id.decode("ascii"),
        "format_major": sf.major,
        "format_minor": sf.minor,
        "key_version": sf.key_wrap.key_version,
        "model_version": h.model_version,
        "chunk_size": h.chunk_size,
        "public_graph": h.public_graph,
        "required_flags": h.required_flags,
        "optional_flags": h.optional_flags,
        "file_id": h.file_id.hex(),
        "header_size": sf.header_size,
        "data_offset": sf.data_offset,
        "data_size": sf.data_size,
        "tag_table_size": sf.tag_table_size,
        "file_size": sf.file_size,
        "section_count": len(sf.sections),
        "graph_size": len(graph),
        "graph_sha256": hashlib.sha256(graph).hexdigest(),
        "tensor_sizes": [len(t) for t in tensors],
        "tensor_sha256": [hashlib.sha256(t).hexdigest() for t in tensors],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("file", type=Path)
    ap.add_argument("--key", type=Path, required=True, help="32 raw bytes")
    ap.add_argument("--expect-graph-sha256", metavar="HEX")
    ap.add_argument("--check-graph", action="store_true", help="also apply the section 9 checks to the graph")
    args = ap.parse_args(argv)
    try:
        data = args.file.read_bytes()
        key = args.key.read_bytes()
        summary = summarize(data, key, args.check_graph)
        if args.expect_graph_sha256 is not None and summary["graph_sha256"] != args.expect_graph_sha256.lower():
            raise sealed_ref.SealedError(
                f"graph sha256 {summary['graph_sha256']} != expected {args.expect_graph_sha256.lower()}"
            )
    except (sealed_ref.SealedError, OSError, ValueError) as e:
        print(f"check_sealed: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    json.dump(summary, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
