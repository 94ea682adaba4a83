#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Extract the OpenAPI v3 schema of one version of a CustomResourceDefinition, without its descriptions.

    deploy/k8s/crd-schemas/extract.py CRD.yaml VERSION OUT.json

The schemas in this directory were made with it from the CRDs named in README.md: `spec.versions[VERSION].schema.
openAPIV3Schema`, every `description` keyword removed (property names are kept, even one called "description"),
written as compact JSON with sorted keys. Nothing else is changed.
"""
import json
import sys

import yaml


def strip(node, under_properties=False):
    if isinstance(node, dict):
        return {k: strip(v, k in ("properties", "patternProperties") and not under_properties)
                for k, v in node.items() if under_properties or k != "description"}
    if isinstance(node, list):
        return [strip(v) for v in node]
    return node


def main() -> int:
    crd_path, version, out = sys.argv[1:4]
    with open(crd_path) as f:
        crd = yaml.safe_load(f)
    schema = next(v["schema"]["openAPIV3Schema"] for v in crd["spec"]["versions"] if v["name"] == version)
    with open(out, "w") as f:
        json.dump(strip(schema), f, sort_keys=True, separators=(",", ":"))
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
