#!/usr/bin/env bash
# model.resnet18_*: test_resnet18 (features, statistics, the accumulate and ready contracts, and in
# fp32 its gradients and decisions written to OUT_DIR), then in fp32 check_masked.py (the gradients
# against float64 under those decisions). Exit 77 when test_resnet18 skips.
# usage: run_resnet18.sh TEST_BIN PYTHON REF_DIR OUT_DIR fp32|bf16[+sync] C [C ...]
set -uo pipefail
bin=$1 py=$2 ref=$3 out=$4 mode=$5; shift 5
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
rm -f "$out"/got_c*.safetensors
"$bin" "$ref" "$out" "$mode" "$@"
rc=$?
[ $rc -eq 0 ] || exit $rc
case "$mode" in
  fp32*)
    cases=()
    for c in "$@"; do
      f="got_c$c$([[ $mode == *+sync ]] && echo _sync).safetensors"
      [ -f "$out/$f" ] && cases+=("${f#got_c}") 
    done
    cases=("${cases[@]/%.safetensors/}")
    [ ${#cases[@]} -gt 0 ] || { echo "run_resnet18.sh: no gradients written"; exit 1; }
    exec "$py" "$here/check_masked.py" "$ref" "$out" "${cases[@]}" ;;
esac
