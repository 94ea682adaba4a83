#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Init data of a Confidential Containers pod: its digests, its annotation, and a check of a manifest.

    deploy/k8s/initdata.py INITDATA.toml                   print the digest, MRCONFIGID, HOST_DATA and annotation
    deploy/k8s/initdata.py INITDATA.toml --check FILE.yaml  the annotation in FILE.yaml carries exactly INITDATA.toml
    deploy/k8s/initdata.py INITDATA.toml --write FILE.yaml  replace the annotation's value in FILE.yaml

The digest is the `algorithm` hash (sha256, sha384 or sha512) of the file's exact bytes; the host puts it into
TDX MRCONFIGID (48 bytes: truncated or zero-padded) or SEV-SNP HOST_DATA (32 bytes), and the guest refuses to
start when the annotation's document does not hash to it (shared/reference/deployment.md, 2.3). The annotation is
base64(gzip(file)); gzip is written without a name or time so that the same file gives the same annotation.
A policy pins MRCONFIGID in its tdx section (docs/spec/policy.md, `mrconfigid`). Standard library only.
"""
from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import re
import sys
import tomllib
from pathlib import Path

ANNOTATION = "io.katacontainers.config.hypervisor.cc_init_data"
ALGORITHMS = {"sha256": hashlib.sha256, "sha384": hashlib.sha384, "sha512": hashlib.sha512}
TDX_MRCONFIGID_SIZE = 48
SNP_HOST_DATA_SIZE = 32
LINE = re.compile(rf"^(\s*{re.escape(ANNOTATION)}:\s*)\"?([A-Za-z0-9+/=]*)\"?\s*$", re.M)


def fit(digest: bytes, size: int) -> bytes:
    return digest[:size] if len(digest) >= size else digest + bytes(size - len(digest))


def describe(data: bytes) -> dict[str, str]:
    doc = tomllib.loads(data.decode())
    if doc.get("version") != "0.1.0" or doc.get("algorithm") not in ALGORITHMS or not isinstance(doc.get("data"), dict):
        raise ValueError('init data needs version = "0.1.0", algorithm = sha256|sha384|sha512 and a [data] table')
    digest = ALGORITHMS[doc["algorithm"]](data).digest()
    return {"algorithm": doc["algorithm"], "digest": digest.hex(),
            "tdx_mrconfigid": fit(digest, TDX_MRCONFIGID_SIZE).hex(),
            "snp_host_data": fit(digest, SNP_HOST_DATA_SIZE).hex(),
            "annotation": base64.b64encode(gzip.compress(data, compresslevel=9, mtime=0)).decode()}


def annotation_in(manifest: str) -> str:
    found = LINE.findall(manifest)
    if len(found) != 1:
        raise ValueError(f"expected one {ANNOTATION} annotation, found {len(found)}")
    return found[0][1]


def carried(annotation: str) -> bytes:
    return gzip.decompress(base64.b64decode(annotation, validate=True))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("initdata", type=Path)
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--check", type=Path, metavar="MANIFEST")
    g.add_argument("--write", type=Path, metavar="MANIFEST")
    a = ap.parse_args()
    data = a.initdata.read_bytes()
    try:
        d = describe(data)
        if a.check is not None:
            if carried(annotation_in(a.check.read_text())) != data:
                print(f"initdata: {a.check}'s {ANNOTATION} does not carry {a.initdata} (run --write)", file=sys.stderr)
                return 1
        if a.write is not None:
            text = a.write.read_text()
            annotation_in(text)
            a.write.write_text(LINE.sub(lambda m: f'{m.group(1)}"{d["annotation"]}"', text))
    except (ValueError, OSError, tomllib.TOMLDecodeError) as e:
        print(f"initdata: {e}", file=sys.stderr)
        return 1
    print(f"{d['algorithm']}:        {d['digest']}")
    print(f"TDX MRCONFIGID: {d['tdx_mrconfigid']}")
    print(f"SNP HOST_DATA:  {d['snp_host_data']}")
    print(f"annotation {ANNOTATION}: {d['annotation']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
