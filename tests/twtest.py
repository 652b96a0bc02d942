"""What the Python test scripts (tests/*/run_*.py, tests/data/test_*.py, ...) share: the ok/FAIL
check that collects failures, the runner of a twinfuse command that must succeed or must fail, and
a reader of safetensors files that needs nothing beyond the standard library (the scripts compare
twinfuse's checkpoints bit for bit). A script imports it after putting tests/ on sys.path."""
import json
import struct
import subprocess
import sys

failures = []


def check(cond, what):
    """Says ok or FAIL with what; a failure is collected in failures. Returns cond."""
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)
    return cond


def require(cond, failure):
    """The same, silent when cond holds: for a message written as the failure it reports."""
    if not cond:
        print("FAIL " + failure, flush=True)
        failures.append(failure)
    return cond


def runner(exe=None, env=None, mpirun=None):
    """A function run(*args, expect=0, ranks=1) that runs `exe args` (exe None: args[0] is the
    program; under `mpirun --oversubscribe -np ranks`, one OpenMP thread per rank, when ranks > 1)
    and returns the CompletedProcess (text, output captured). expect 0: the command must succeed; expect 1: it must refuse, with an error
    exit (>= 1; a signal is a crash, not a refusal), and the caller then checks that the message
    names the cause. Any other outcome prints the output's tail and ends the script as a failure."""
    def run(*args, expect=0, ranks=1):
        cmd = [str(a) for a in ([exe] if exe else []) + list(args)]
        if ranks > 1:
            if not mpirun:
                sys.exit(f"FAIL: {ranks} ranks asked for, but no mpirun was given")
            cmd = [mpirun, "--oversubscribe", "-np", str(ranks), "-x", "OMP_NUM_THREADS=1", *cmd]
        p = subprocess.run(cmd, capture_output=True, text=True, env=env)
        ok = p.returncode == 0 if expect == 0 else p.returncode >= 1
        if ok:
            return p
        print(p.stdout[-4000:], p.stderr[-4000:])
        sys.exit(f"FAIL: {' '.join(cmd)} exited {p.returncode}, want "
                 f"{'0' if expect == 0 else 'an error exit (>= 1)'}")
    return run


def read_safetensors(path):
    """(header, body): the JSON header (with "__metadata__") and the bytes after it."""
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8:8 + n]), data[8 + n:]


def write_safetensors(path, header, body):
    """The inverse of read_safetensors (the header padded to 8 bytes, as the format asks)."""
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + body)


def tensors(path):
    """name -> (dtype, shape, raw bytes) of every tensor of a safetensors file."""
    hdr, body = read_safetensors(path)
    return {k: (v["dtype"], v["shape"], body[v["data_offsets"][0]:v["data_offsets"][1]])
            for k, v in hdr.items() if k != "__metadata__"}


def same_state(a, b):
    """Whether two checkpoints hold the same tensors bit for bit (parameters, BN buffers, counters,
    optimizer moments); names the first that differs."""
    ta, tb = tensors(a), tensors(b)
    if ta.keys() != tb.keys():
        return False, f"tensor names differ: {sorted(ta.keys() ^ tb.keys())[:5]}"
    diff = [k for k in sorted(ta) if ta[k] != tb[k]]
    return not diff, f"{len(diff)} of {len(ta)} tensors differ" + (f", first {diff[0]}" if diff else "")
