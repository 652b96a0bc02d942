"""What the end-to-end test scripts (tests/*/run_*.py) share: the ok/FAIL check that collects
failures, and a reader of safetensors files that needs nothing beyond the standard library (the
scripts compare twinfuse's checkpoints bit for bit). A script imports it after putting tests/ on
sys.path."""
import json
import struct

failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


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
