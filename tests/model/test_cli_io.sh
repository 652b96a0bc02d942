#!/usr/bin/env bash
# `twinfuse import` and `twinfuse export`: torchvision weights (C=12) -> twinfuse backbone file ->
# back to torchvision names, bit-equal and loadable by torchvision with only fc.* missing; export
# of a checkpoint that also holds a projector and optimizer state; and the errors (missing file,
# missing tensor, wrong prefix, bad usage) exit non-zero with the file and tensor named.
# usage: test_cli_io.sh TWINFUSE PYTHON REF_DIR WORK_DIR ST_CHECK_PY; exit 0 pass, 1 fail.
set -u
tw=$1 py=$2 ref=$3 work=$4 check=$5
mkdir -p "$work"
fails=0
ok() { echo "  ok   $*"; }
bad() { echo "  FAIL $*"; fails=$((fails + 1)); }
# expect CODE PATTERN -- command...: the exit code and a pattern in stderr.
expect() {
    local code=$1 pat=$2; shift 3
    "$@" >"$work/out" 2>"$work/err"
    local rc=$?
    if [ "$rc" = "$code" ] && grep -q -- "$pat" "$work/err" "$work/out"; then ok "exit $rc: $(head -c 200 "$work/err")"
    else bad "$* -> exit $rc (want $code, '$pat'): $(cat "$work/err")"; fi
}

w12="$ref/weights_c12.safetensors"
expect 0 "imported" -- "$tw" import "$w12" "$work/bb.safetensors"
expect 0 "exported" -- "$tw" export "$work/bb.safetensors" "$work/tv.safetensors"
if "$py" "$check" export "$w12" "$work/tv.safetensors"; then ok "round trip bit-equal, torchvision takes it"
else bad "round trip"; fi

# A checkpoint-like file: the backbone under "backbone." next to a projector and optimizer state.
"$py" - "$work/bb.safetensors" "$work/ckpt.safetensors" "$w12" "$work/missing.safetensors" <<'PY'
import sys, torch
from safetensors.torch import load_file, save_file
sd = load_file(sys.argv[1])
sd["projector.0.weight"] = torch.randn(16, 512)
sd["optim.m.0"] = torch.zeros(8)
save_file(sd, sys.argv[2], metadata={"format": "twinfuse-pretrain/1", "step": "12"})
tv = load_file(sys.argv[3])
del tv["layer2.0.bn1.bias"]
save_file(tv, sys.argv[4])
PY
expect 0 "exported" -- "$tw" export "$work/ckpt.safetensors" "$work/tv2.safetensors"
if "$py" "$check" export "$w12" "$work/tv2.safetensors"; then ok "checkpoint export bit-equal"
else bad "checkpoint export"; fi

expect 1 "no_such.safetensors" -- "$tw" import "$work/no_such.safetensors" "$work/x.safetensors"
expect 1 "layer2.0.bn1.bias" -- "$tw" import "$work/missing.safetensors" "$work/x.safetensors"
expect 1 "s1.conv1.weight" -- "$tw" export "$work/ckpt.safetensors" "$work/x.safetensors" prefix=s1.
expect 1 "unexpected tensor 'fc.weight'\|unexpected tensor 'fc.bias'" -- \
    "$tw" export "$w12" "$work/x.safetensors" prefix=
expect 2 "usage" -- "$tw" export "$work/ckpt.safetensors"
[ -e "$work/x.safetensors" ] && bad "a failed command left $work/x.safetensors"
[ "$fails" = 0 ] && echo PASS && exit 0
echo "FAIL ($fails)"
exit 1
