#!/bin/sh
# Runs a command that must fail: it passes when the command ends non-zero before the time limit
# and its output matches the pattern (grep -E; e.g. the rank that died). A hang is a failure.
# Usage: expect_fail.sh SECONDS PATTERN COMMAND...
limit=$1; pattern=$2; shift 2
# SIGTERM on time-out (mpirun passes it on to its ranks); timeout then exits 124.
out=$(timeout "$limit" "$@" 2>&1); rc=$?
printf '%s\n' "$out"
if [ "$rc" -eq 124 ]; then echo "FAIL: still running after ${limit}s: a hang"; exit 1; fi
if [ "$rc" -eq 0 ]; then echo "FAIL: exited 0"; exit 1; fi
if ! printf '%s\n' "$out" | grep -Eq -- "$pattern"; then echo "FAIL: output lacks '$pattern'"; exit 1; fi
echo "PASS: exit code $rc, output names '$pattern'"
