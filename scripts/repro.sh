#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Reproducible-build check (docs/deploy.md): builds this source tree twice, in two temporary directories of different
# paths, with different time zones, locales and umasks and at different times, then compares the SHA-256 of every
# output. Exits 1 and names the files that differ if any byte does.
#
#   scripts/repro.sh            the daemons and the library: libveil.so, libveil.a, veil-kbs, veil-runtime and
#                               veil-cache when the tree has it (about 40 s on 2 idle cores)
#   scripts/repro.sh --full     everything `cmake --install` installs (adds the CLI, headers, veil.pc), and the
#                               build manifests (scripts/measure.py) of the two builds: what `make test-repro`, part
#                               of `make test`, runs (about 1 min on 2 idle cores)
#   options: --rev REV (build that commit, through git archive, instead of the working tree), --jobs N (default 2),
#            --build-type T (default Release), --keep (leave the two trees in $TMPDIR, for diffoscope)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
full=0 jobs=2 keep=0 rev= type=Release
while [ $# -gt 0 ]; do
  case "$1" in
    --full) full=1 ;;
    --jobs) jobs=$2; shift ;;
    --keep) keep=1 ;;
    --rev) rev=$2; shift ;;
    --build-type) type=$2; shift ;;
    *) echo "usage: scripts/repro.sh [--full] [--rev REV] [--jobs N] [--build-type T] [--keep]" >&2; exit 2 ;;
  esac
  shift
done

work=$(mktemp -d "${TMPDIR:-/tmp}/veil-repro.XXXXXX")
cleanup() { if [ "$keep" = 1 ]; then echo "repro: trees kept in $work"; else rm -rf "$work"; fi; }
trap cleanup EXIT

# Source: with --rev, that commit; otherwise the files git knows plus new files not ignored (the working tree as a
# developer builds it; in a clean clone, exactly the commit). Copied once, then the copy copied, so both builds read
# the same bytes even while someone edits the tree. SOURCE_DATE_EPOCH: the commit's date unless set.
epoch=${SOURCE_DATE_EPOCH:-$(git -C "$root" log -1 --format=%ct "${rev:-HEAD}" 2>/dev/null || echo 1)}
export SOURCE_DATE_EPOCH=$epoch
a="$work/a/src"
b="$work/second-build-dir/nested/veil-source"
mkdir -p "$a" "$b" "$work/second-build-dir/out"
if [ -n "$rev" ]; then
  git -C "$root" archive --format=tar "$rev" | tar -xf - -C "$a"
else
  (cd "$root" && git ls-files -z --cached --others --exclude-standard |
    while IFS= read -r -d '' f; do [ -f "$f" ] && printf '%s\0' "$f"; done |
    tar --null --no-recursion -T - -cf -) | tar -xf - -C "$a"
fi
(cd "$a" && tar -cf - .) | tar -xf - -C "$b"

# The daemon targets the tree defines (veil-cache appears with src/cache).
targets() {
  local t list="veil veil_kbs veil_runtime" help
  help=$(cmake --build "$1" --target help)
  for t in veil_cache; do
    if grep -qx "\.\.\. $t" <<<"$help"; then list="$list $t"; fi
  done
  echo "$list"
}

# build SRC BUILD TZ LOCALE UMASK: configure, build, and list "sha256  relative-path" of every output in BUILD.sums.
# (Each step checks its own status: set -e does not apply inside a subshell whose status is tested.)
build() {
  local src=$1 bld=$2
  if ! (
    umask "$5"
    export TZ=$3 LC_ALL=$4
    cmake -S "$src" -B "$bld" -DCMAKE_BUILD_TYPE="$type" -DVEIL_TESTS=OFF >"$bld.log" 2>&1 || exit 1
    if [ "$full" = 1 ]; then
      cmake --build "$bld" -j"$jobs" >>"$bld.log" 2>&1 || exit 1
      "${PYTHON:-python3}" "$src/scripts/measure.py" "$bld" --prefix "$bld-install" \
        --manifest "$bld-install/share/veil/veil-build.cdx.json" >>"$bld.log" 2>&1 || exit 1
      cd "$bld-install" || exit 1
    else
      # shellcheck disable=SC2046
      cmake --build "$bld" -j"$jobs" --target $(targets "$bld") >>"$bld.log" 2>&1 || exit 1
      cd "$bld" || exit 1
    fi
    find . -path ./CMakeFiles -prune -o -type f -print |
      grep -E '\.so(\.[0-9]+)*$|\.a$|\.h$|\.pc$|\.json$|/veil(-[a-z]+)?$' | LC_ALL=C sort | xargs -r sha256sum
  ) >"$bld.sums"; then
    echo "repro: the build in $bld failed; the end of its log:" >&2
    tail -n 40 "$bld.log" >&2
    return 1
  fi
}

start=$(date +%s)
build "$a" "$work/a/build" UTC C 022 || exit 1
build "$b" "$work/second-build-dir/out/b" Pacific/Kiritimati C.UTF-8 002 || exit 1
echo "repro: $type, SOURCE_DATE_EPOCH=$epoch; built twice in $(( $(date +%s) - start ))s" \
  "($work/a, $work/second-build-dir)"
cat "$work/a/build.sums"
if [ ! -s "$work/a/build.sums" ]; then echo "repro: FAILED: no outputs found" >&2; exit 1; fi
if diff -u "$work/a/build.sums" "$work/second-build-dir/out/b.sums" >"$work/diff"; then
  echo "repro: OK: $(wc -l <"$work/a/build.sums") outputs are bit-for-bit identical across the two builds"
else
  echo "repro: FAILED: the two builds differ (first build -, second +):" >&2
  grep -E '^[-+][0-9a-f]{64}' "$work/diff" >&2
  echo "repro: rerun with --keep and compare the files with diffoscope" >&2
  exit 1
fi
