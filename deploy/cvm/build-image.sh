#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Build the confidential-VM image with Debian 12's mkosi (apt-get install mkosi; run as root).
#   deploy/cvm/build-image.sh BUILD_DIR OUTPUT_DIR --mirror DEBIAN_MIRROR_URL --kbs-url https://HOST:PORT \
#                             --kbs-ca kbs-ca.pem --model NAME=MODEL_ID@VERSION:FILE.veil [--model ...]
# Writes OUTPUT_DIR/veil-cvm.raw (GPT: ESP with the unified kernel image, squashfs root, verity), the split
# artifacts (veil-cvm.efi, .root, .verity, .roothash), and prints the staged files' hashes and sim measurements.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 2 ] || { sed -n '3,6p' "$0" >&2; exit 2; }
build=$1 out=$2
shift 2
mirror="" stage_args=()
while [ $# -gt 0 ]; do
  case $1 in
    --mirror) mirror=$2; shift 2 ;;
    *) stage_args+=("$1"); shift ;;
  esac
done
[ -n "$mirror" ] || { echo "build-image: --mirror URL of a Debian mirror is required" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 "$here/stage.py" "$build" "$work/extra" "${stage_args[@]}"
# bookworm-backports, for the kernel (configfs-tsm): visible to apt before packages are installed.
mkdir -p "$work/skeleton/etc/apt/sources.list.d"
echo "deb $mirror bookworm-backports main" > "$work/skeleton/etc/apt/sources.list.d/bookworm-backports.list"
mkdir -p "$out"
mkosi --default "$here/mkosi.default" --mirror "$mirror" --skeleton-tree "$work/skeleton" \
      --extra-tree "$work/extra" --output-dir "$out" --force build
