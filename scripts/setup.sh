#!/usr/bin/env bash
# Installs everything Veil needs to build, test, demo and benchmark, and nothing that is already there:
# Debian packages with apt-get, Python packages with pip into a virtual environment (default
# ~/.cache/veil/venv, override with VEIL_VENV). Idempotent; safe to run on every `make`.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
venv=${VEIL_VENV:-$HOME/.cache/veil/venv}
debs=(gcc make cmake pkg-config libssl-dev libjansson-dev libcmocka-dev libcurl4-openssl-dev libdnnl-dev libmicrohttpd-dev libgnutls28-dev libsqlite3-dev clang
      libclang-rt-14-dev python3-venv
      postgresql libpq-dev   # the broker's PostgreSQL store (libpq) and the server its tests start (scripts/pg.sh)
      mkosi strace           # deploy/: the CVM image recipe parsed, the Gramine manifest's file list traced (test_deploy.py)
      podman runc)           # deploy/oci: the images run (test_oci.py); runc because crun 1.8 refuses hybrid cgroups

missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

req="$root/python/requirements-dev.txt"
stamp="$venv/.veil-requirements.sha256"
want=$(sha256sum "$req" | cut -d' ' -f1)
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: preparing the Python environment in $venv (first run takes a few minutes)"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$req"
  echo "$want" > "$stamp"
fi
