#!/usr/bin/env python3
"""Bad shards: each defect must make the loader fail with a message naming the file and the
dataset or sample, never crash. Starts from a good synthetic split, breaks one copy at a time.

usage: test_shard_bad.py TWINFUSE SHARD_PROBE"""
import os
import shutil
import subprocess
import sys
import tempfile

import h5py
import numpy as np


def rewrite(path, name, data, chunks=True):
    with h5py.File(path, "a") as f:
        del f[name]
        f.create_dataset(name, data=data, chunks=(1,) + data.shape[1:] if chunks else None)


def main():
    twinfuse, probe = sys.argv[1], sys.argv[2]
    tmp = tempfile.mkdtemp(prefix="tw_shard_bad_")
    good = os.path.join(tmp, "good")
    subprocess.run([twinfuse, "synth", "--out", good, "--size", "16", "--train", "8", "--val", "0", "--test", "0",
                    "--clouds", "0", "--shard-size", "4"], check=True, stdout=subprocess.DEVNULL)
    r = subprocess.run([probe, good, "train"], capture_output=True, text=True)
    failures = 0
    if r.returncode != 0:
        print("FAIL good shards do not load:", r.stderr)
        failures += 1

    def s1_nan(p):
        with h5py.File(p, "a") as f:
            x = f["s1"][1]
            x[0, 3, 5] = np.nan
            f["s1"][1] = x

    def truncate(p):
        size = os.path.getsize(p)
        with open(p, "r+b") as fh:
            fh.truncate(size // 2)

    def garbage(p):
        with open(p, "r+b") as fh:
            fh.seek(0)
            fh.write(b"\0" * 64)

    def del_attr(name):
        def f_(p):
            with h5py.File(p, "a") as f:
                del f.attrs[name]
        return f_

    def set_attr(name, value):
        def f_(p):
            with h5py.File(p, "a") as f:
                f.attrs[name] = value
        return f_

    def del_dset(name):
        def f_(p):
            with h5py.File(p, "a") as f:
                del f[name]
        return f_

    def s1_pixel(value, sample):
        def f_(p):
            with h5py.File(p, "a") as f:
                x = f["s1"][sample]
                x[1, 0, 2] = value
                f["s1"][sample] = x
        return f_

    def set_f64(name, index, value):
        def f_(p):
            with h5py.File(p, "a") as f:
                v = np.array(f.attrs[name], np.float64)
                v[index] = value
                f.attrs[name] = v
        return f_

    cases = [
        ("truncated file", truncate, ["train-00001.h5"]),
        ("corrupt header", garbage, ["train-00001.h5"]),
        ("s2 as float32", lambda p: rewrite(p, "s2", np.zeros((4, 12, 16, 16), np.float32)), ["train-00001.h5", "'s2'", "dtype"]),
        ("s2 with 10 bands", lambda p: rewrite(p, "s2", np.zeros((4, 10, 16, 16), np.uint16)), ["train-00001.h5", "s2"]),
        ("labels [N,18]", lambda p: rewrite(p, "labels", np.zeros((4, 18), np.uint8)), ["train-00001.h5", "labels"]),
        ("labels with 3 rows", lambda p: rewrite(p, "labels", np.zeros((3, 19), np.uint8)), ["train-00001.h5", "'labels'", "3 samples"]),
        ("s1 not chunked per sample", lambda p: rewrite(p, "s1", np.zeros((4, 2, 16, 16), np.float32), chunks=False), ["train-00001.h5", "'s1'", "chunk"]),
        ("s1 missing", del_dset("s1"), ["train-00001.h5", "'s1'", "missing"]),
        ("NaN in s1", s1_nan, ["train-00001.h5", "sample 1", "non-finite", "VV"]),
        ("+Inf in s1", s1_pixel(np.inf, 2), ["train-00001.h5", "sample 2", "non-finite", "VH"]),
        ("-Inf in s1", s1_pixel(-np.inf, 0), ["train-00001.h5", "sample 0", "non-finite", "VH"]),
        ("s2 as int16", lambda p: rewrite(p, "s2", np.zeros((4, 12, 16, 16), np.int16)), ["train-00001.h5", "'s2'", "dtype"]),
        ("s1 as float64", lambda p: rewrite(p, "s1", np.zeros((4, 2, 16, 16), np.float64)), ["train-00001.h5", "'s1'", "dtype"]),
        ("s1 as [N,2,16]", lambda p: rewrite(p, "s1", np.zeros((4, 2, 16), np.float32)), ["train-00001.h5", "'s1'", "rank"]),
        ("s1 of 15x16 patches", lambda p: rewrite(p, "s1", np.zeros((4, 2, 15, 16), np.float32)), ["train-00001.h5", "s1 [4,2,15,16]"]),
        ("3 S1 for 4 S2 patches", lambda p: rewrite(p, "s1", np.zeros((3, 2, 16, 16), np.float32)), ["train-00001.h5", "'s1'", "3 samples"]),
        ("5 S2 for 4 S1 patches", lambda p: rewrite(p, "s2", np.zeros((5, 12, 16, 16), np.uint16)), ["train-00001.h5", "samples", "'s2' has 5"]),
        ("labels missing", del_dset("labels"), ["train-00001.h5", "'labels'", "missing"]),
        ("patch names missing", del_dset("name"), ["train-00001.h5", "'name'", "missing"]),
        ("NaN mean", set_f64("s2_mean", 3, np.nan), ["train-00001.h5", "normalisation of band 3"]),
        ("zero std", set_f64("s1_std", 1, 0.0), ["train-00001.h5", "normalisation of band 13"]),
        ("Inf std", set_f64("s2_std", 0, np.inf), ["train-00001.h5", "normalisation of band 0"]),
        ("-Inf mean", set_f64("s1_mean", 0, -np.inf), ["train-00001.h5", "normalisation of band 12"]),
        ("no normalisation", del_attr("s2_mean"), ["train-00001.h5", "normalisation"]),
        ("format version 7", set_attr("format_version", 7), ["train-00001.h5", "version 7"]),
        ("class names", set_attr("classes", ["x"] * 19), ["train-00001.h5", "classes"]),
    ]
    for name, breaker, want in cases:
        d = os.path.join(tmp, "case")
        shutil.rmtree(d, ignore_errors=True)
        shutil.copytree(good, d)
        breaker(os.path.join(d, "train-00001.h5"))
        r = subprocess.run([probe, d, "train"], capture_output=True, text=True)
        missing = [w for w in want if w not in r.stderr]
        if r.returncode != 1 or missing:
            print(f"FAIL {name}: exit {r.returncode}, message {r.stderr.strip()!r} lacks {missing}")
            failures += 1
        else:
            print(f"ok   {name}: {r.stderr.strip()}")
    shutil.rmtree(tmp)
    if failures:
        print(f"test_shard_bad: {failures} failures")
        return 1
    print("test_shard_bad: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
