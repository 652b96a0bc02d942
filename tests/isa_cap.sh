#!/usr/bin/env bash
# Runs a test with oneDNN capped at a lower ISA, so that every developer's machine also checks the
# kernels the slower CPU kinds of this machine type get: AVX2 is a Zen 3's (no AVX-512), and
# AVX512_CORE a Zen 4's or a Xeon's without its bf16 kernels. Skips (77) where the cap would change
# nothing (the CPU has no more than the cap: the uncapped run already covers it).
# usage: isa_cap.sh AVX2|AVX512_CORE COMMAND [ARG ...]
set -euo pipefail
cap=$1; shift
flags=$(grep -m1 '^flags' /proc/cpuinfo || true)
has() { [[ " $flags " == *" $1 "* ]]; }
case "$cap" in
  AVX2) has avx512f || { echo "SKIP: no AVX-512 here: the uncapped run is the AVX2 one"; exit 77; } ;;
  AVX512_CORE) { has avx512_bf16 || has amx_bf16; } ||
      { echo "SKIP: no AVX512_BF16 or AMX here: the uncapped run is the AVX512_CORE one"; exit 77; } ;;
  *) echo "isa_cap.sh: unknown cap '$cap' (AVX2 or AVX512_CORE)" >&2; exit 2 ;;
esac
export ONEDNN_MAX_CPU_ISA=$cap
exec "$@"
