#!/usr/bin/env bash
# Runs every libFuzzer harness of a TW_FUZZ build (fuzz_all) for a bounded time under ASan + UBSan,
# from its seed corpus and saved crash inputs; new inputs go to a temporary folder, so the
# committed corpus does not grow. A crash, leak, sanitizer report or time-out fails the run: the
# input is kept in BUILD/fuzz-artifacts/<name>/ (add it to tests/fuzz/regress/<name>/ with the fix).
# Usage: run_fuzzers.sh BUILD_DIR [SECONDS_EACH (25)]
set -uo pipefail
build=$1
secs=${2:-25}
src=$(cd "$(dirname "$0")" && pwd)
fail=0
for h in config safetensors shard labels_v1 meta_v2 manifest; do
  art="$build/fuzz-artifacts/$h"
  work=$(mktemp -d)
  rm -rf "$art"
  mkdir -p "$art"
  inputs=("$src/corpus/$h")
  [ -d "$src/regress/$h" ] && inputs+=("$src/regress/$h")
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "$build/tests/fuzz/fuzz_$h" -max_total_time="$secs" -timeout=20 -rss_limit_mb=2048 -max_len=4096 \
    -print_final_stats=1 -artifact_prefix="$art/" "$work" "${inputs[@]}" >"$work.log" 2>&1
  rc=$?
  runs=$(grep -o 'number_of_executed_units: [0-9]*' "$work.log" | grep -o '[0-9]*$')
  if [ "$rc" -ne 0 ]; then
    fail=1
    echo "# fuzz $h: FAILED (exit $rc); inputs in $art"
    tail -n 60 "$work.log"
  else
    echo "# fuzz $h: ${secs} s, ${runs:-?} inputs, no crash"
    rmdir "$art"
  fi
  rm -rf "$work" "$work.log"
done
exit $fail
