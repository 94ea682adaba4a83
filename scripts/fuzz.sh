#!/usr/bin/env bash
# Runs every libFuzzer harness in build/fuzz for SECONDS each (default 20) from its seed corpus.
# Crashes are written to tests/fuzz/artifacts/ and fail the run. Longer runs: make fuzz FUZZ_SECONDS=600
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:-20}
artifacts="$root/tests/fuzz/artifacts"
mkdir -p "$artifacts"
status=0
for fuzzer in "$root"/build/fuzz/tests/fuzz/fuzz_*; do
  name=$(basename "$fuzzer"); name=${name#fuzz_}
  seeds="$root/tests/fuzz/corpus/$name"
  work=$(mktemp -d)   # new inputs found in this run stay out of the repository
  echo "fuzz: $name for ${seconds}s"
  if ! "$fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=0 \
       -artifact_prefix="$artifacts/${name}-" "$work" "$seeds" >"$work.log" 2>&1; then
    echo "fuzz: $name FAILED; last lines of its log:"; tail -n 40 "$work.log"; status=1
  else
    grep -E "^Done [0-9]+ runs" "$work.log" | tail -n 1 || true
  fi
  rm -rf "$work" "$work.log"
done
exit $status
