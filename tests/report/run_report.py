#!/usr/bin/env python3
"""`twinfuse report` end to end: a synthetic sweep's tables, gaps and plots (sweep), a run's loss and
lr curves (run), bad inputs named (bad), where the Python and report.py are found (layout), and an
installed twinfuse (install).

usage: run_report.py sweep|run|bad|layout TWINFUSE WORKDIR
       run_report.py install TWINFUSE WORKDIR CMAKE BUILD_DIR   (cmake --install, then report)
Exit 0 pass, 1 fail, 77 skip. The expected numbers are computed here from the formulas that made
the synthetic data, not by report.py's code, and a few are written out by hand.
"""
import json
import math
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from twtest import check, failures  # noqa: E402

def report(twinfuse, d, env_extra=None, drop=("TW_PYTHON", "TW_REPORT_SCRIPT")):
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(env_extra or {})
    p = subprocess.run([twinfuse, "report", d], capture_output=True, text=True, env=env, timeout=120)
    return p.returncode, p.stdout + p.stderr


def fresh(path):
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


def check_png(path):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        check(False, "%s was not written" % path)
        return
    check(data[:8] == b"\x89PNG\r\n\x1a\n", "%s starts with the PNG signature" % path)
    check(len(data) > 5000, "%s has %d bytes (a drawn figure has more than 5000)" % (path, len(data)))
    check(data[12:16] == b"IHDR", "%s has its IHDR chunk first" % path)


def check_series(path, want, title=None):
    """want: [(label, xs, ys)]; the sidecar lists exactly these, in this order."""
    try:
        with open(path + ".json") as f:
            side = json.load(f)
    except (OSError, ValueError) as e:
        check(False, "%s.json: %s" % (path, e))
        return None
    got = side.get("series", [])
    check([s["label"] for s in got] == [w[0] for w in want],
          "%s.json labels %s, want %s" % (path, [s["label"] for s in got], [w[0] for w in want]))
    for s, (label, xs, ys) in zip(got, want):
        check(sorted(s) == ["label", "x", "y"], "%s.json series '%s' keys %s" % (path, label, sorted(s)))
        check(s["x"] == list(xs), "%s.json '%s' x %s, want %s" % (path, label, s["x"], list(xs)))
        ok = len(s["y"]) == len(ys) and all(
            (a is None and b is None) or (a is not None and b is not None and abs(a - b) < 1e-9)
            for a, b in zip(s["y"], ys))
        check(ok, "%s.json '%s' y %s, want %s" % (path, label, s["y"], list(ys)))
    for k in ("title", "xlabel", "ylabel", "xscale"):
        check(isinstance(side.get(k), str) and side[k], "%s.json has a %s" % (path, k))
    if title:
        check(side.get("title") == title, "%s.json title '%s', want '%s'" % (path, side.get("title"), title))
    return side


# ---------------------------------------------------------------- sweep

COLS = ("cell,source,fusion,head,init,mode,label_fraction,seed,split,n_samples,map_macro,map_micro,"
        "f1_macro,f1_micro,steps").split(",")
FRACS = (0.01, 0.1, 1.0)
# (source, fusion, head, init, mode): base mAP on val, on clouds
EXPS = [
    (("s1", "none", "concat-linear", "scratch", "finetune"), 0.40, 0.38),
    (("s1", "none", "concat-linear", "ssl", "finetune"), 0.50, 0.48),
    (("s2", "none", "concat-linear", "scratch", "finetune"), 0.50, 0.20),
    (("s2", "none", "concat-linear", "ssl", "frozen"), 0.55, 0.25),
    (("s2", "none", "concat-linear", "ssl", "finetune"), 0.60, 0.30),
    (("s1+s2", "feature", "gated", "ssl", "finetune"), 0.70, 0.68),
    (("s1+s2", "early", "concat-linear", "ssl", "finetune"), 0.65, 0.50),
    (("s1+s2", "feature", "concat-linear", "scratch", "finetune"), 0.60, 0.55),
]
MISSING = {(3, 0.1)}            # S2 · SSL · TL has no 10 % cell
ONE_SEED = {(1, 1.0)}           # S1 · SSL · FT has one seed at 100 %
TEST_SPLIT = {4, 5}             # only these have test rows


def map_of(i, base, frac, seed):
    return base + 0.1 * FRACS.index(frac) + 0.02 * seed


def write_results(path):
    lines = [",".join(COLS)]
    for i, (k, bval, bcl) in enumerate(EXPS):
        for frac in FRACS:
            if (i, frac) in MISSING:
                continue
            for seed in ((0,) if (i, frac) in ONE_SEED else (0, 1)):
                for split, base in (("val", bval), ("clouds", bcl), ("test", bval - 0.05)):
                    if split == "test" and i not in TEST_SPLIT:
                        continue
                    m = map_of(i, base, frac, seed)
                    cell = "%s-%s-%s-%s-%s-f%g-s%d" % (k[0], k[1], k[2], k[3], k[4], frac, seed)
                    lines.append(",".join([cell, k[0], k[1], k[2], k[3], k[4], "%.6f" % frac, str(seed), split, "64",
                                           "%.6f" % m, "%.6f" % (m + 0.01), "0.5", "0.5", "12"]))
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def expected_stats(split):
    """{exp index: {frac: (mean, std, n)}} from the formulas (values rounded as the CSV has them)."""
    out = {}
    for i, (k, bval, bcl) in enumerate(EXPS):
        if split == "test" and i not in TEST_SPLIT:
            continue
        base = {"val": bval, "clouds": bcl, "test": bval - 0.05}[split]
        for frac in FRACS:
            if (i, frac) in MISSING:
                continue
            vs = [float("%.6f" % map_of(i, base, frac, s)) for s in ((0,) if (i, frac) in ONE_SEED else (0, 1))]
            m = sum(vs) / len(vs)
            sd = math.sqrt(sum((v - m) ** 2 for v in vs) / (len(vs) - 1)) if len(vs) > 1 else 0.0
            out.setdefault(i, {})[frac] = (m, sd, len(vs))
    return out


def expected_cell(stats, i, frac):
    if frac not in stats[i]:
        return "—"
    m, sd, n = stats[i][frac]
    fused = [(j, stats[j][frac][0]) for j in stats if EXPS[j][0][0] == "s1+s2" and frac in stats[j]]
    same = [v for j, v in fused if EXPS[j][0][3:] == EXPS[i][0][3:]]
    ref = max(same or [v for _, v in fused])
    txt = "%.4f ± %.4f" % (m, sd) if n > 1 else "%.4f" % m
    return "%s (%+.2f %%)" % (txt, 100 * (m - ref) / ref)


NAMES = ["S1 · Scratch · FT", "S1 · SSL · FT", "S2 · Scratch · FT", "S2 · SSL · TL", "S2 · SSL · FT",
         "S1+S2 feature/gated · SSL · FT", "S1+S2 early · SSL · FT", "S1+S2 feature/concat-linear · Scratch · FT"]
ROW_ORDER = [0, 1, 2, 3, 4, 6, 7, 5]  # sources, then fusion early < feature, heads concat-linear < gated


def tables(md):
    """{heading: {row name: [cells]}} of results.md."""
    out, cur = {}, None
    for line in md.splitlines():
        if line.startswith("## "):
            cur = out.setdefault(line[3:], {"_order": []})
        elif cur is not None and line.startswith("| ") and not line.startswith("| Experiment"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            cur[cells[0]] = cells[1:]
            cur["_order"].append(cells[0])
        elif cur is not None and line.startswith("| Experiment"):
            cur["_header"] = [c.strip() for c in line.strip("|").split("|")][1:]
    return out


def test_sweep(twinfuse, work):
    d = fresh(os.path.join(work, "sweep"))
    write_results(os.path.join(d, "results.csv"))
    rc, out = report(twinfuse, d)
    check(rc == 0, "twinfuse report on a sweep exits 0 (got %d: %s)" % (rc, out))
    if rc != 0:
        return
    with open(os.path.join(d, "results.md")) as f:
        md = f.read()
    t = tables(md)
    check(list(k for k in t) == ["Validation split", "Test split", "Clouds split"],
          "results.md tables %s, want validation, test, clouds" % list(t))
    for heading, split in (("Validation split", "val"), ("Test split", "test"), ("Clouds split", "clouds")):
        if heading not in t:
            continue
        st = expected_stats(split)
        tab = t[heading]
        check(tab.get("_header") == ["1 %", "10 %", "100 %"], "%s header %s" % (heading, tab.get("_header")))
        want_rows = [NAMES[i] for i in ROW_ORDER if i in st]
        check(tab["_order"] == want_rows, "%s rows %s, want %s" % (heading, tab["_order"], want_rows))
        for i in st:
            got = tab.get(NAMES[i])
            want = [expected_cell(st, i, f) for f in FRACS]
            check(got == want, "%s row '%s': %s, want %s" % (heading, NAMES[i], got, want))
    # A few cells by hand: the means, the sample std of two seeds 0.02 apart, the gap's rule.
    val, clouds = t.get("Validation split", {}), t.get("Clouds split", {})
    by_hand = [
        (val, "S2 · SSL · FT", 0, "0.6100 ± 0.0141 (-14.08 %)"),       # ref: gated 0.71 (same init/mode)
        (val, "S2 · SSL · TL", 0, "0.5600 ± 0.0141 (-21.13 %)"),       # no s1+s2 TL: best s1+s2 0.71
        (val, "S2 · SSL · TL", 1, "—"),
        (val, "S1 · Scratch · FT", 0, "0.4100 ± 0.0141 (-32.79 %)"),   # ref: feature/concat-linear scratch 0.61
        (val, "S1 · SSL · FT", 2, "0.7000 (-23.08 %)"),                # one seed; ref gated 0.91
        (val, "S1+S2 early · SSL · FT", 2, "0.8600 ± 0.0141 (-5.49 %)"),
        (val, "S1+S2 feature/gated · SSL · FT", 1, "0.8100 ± 0.0141 (+0.00 %)"),
        (clouds, "S2 · SSL · FT", 2, "0.5100 ± 0.0141 (-42.70 %)"),    # ref gated 0.89
    ]
    for tab, row, col, want in by_hand:
        got = tab.get(row, [None] * 3)[col]
        check(got == want, "by hand: %s at %s: '%s', want '%s'" % (row, ["1 %", "10 %", "100 %"][col], got, want))
    check("highest mean mAP" in md and "with the row's initialisation and mode" in md,
          "results.md states the fusion-model rule")

    # Plots: exactly these files, each a PNG with a sidecar of the expected series.
    names = sorted(os.listdir(d))
    want_files = sorted(["results.csv", "results.md"] + [p + e for p in ("map_val_s1.png", "map_val_s2.png",
                         "map_val_s1_s2.png", "map_clouds.png") for e in ("", ".json")])
    check(names == want_files, "sweep dir holds %s, want %s (no temporary files)" % (names, want_files))

    def series(split, idxs, label):
        st = expected_stats(split)
        out = []
        for i in idxs:
            xs = sorted(st[i])
            out.append((label(i), [round(f * 100, 9) for f in xs], [st[i][f][0] for f in xs]))
        return out

    short = lambda i: NAMES[i].split(" · ", 1)[1]  # noqa: E731
    fusion = lambda i: NAMES[i][len("S1+S2 "):]  # noqa: E731
    for png, idxs, lab, title in (("map_val_s1.png", [0, 1], short, "S1, validation split"),
                                  ("map_val_s2.png", [2, 3, 4], short, "S2, validation split"),
                                  ("map_val_s1_s2.png", [6, 7, 5], fusion, "S1+S2, validation split")):
        check_png(os.path.join(d, png))
        side = check_series(os.path.join(d, png), series("val", idxs, lab), title)
        if side:
            check(side["xscale"] == "log", "%s: log x" % png)
    check_png(os.path.join(d, "map_clouds.png"))
    check_series(os.path.join(d, "map_clouds.png"), series("clouds", ROW_ORDER, lambda i: NAMES[i]))
    # The sidecar says S2 · SSL · TL has no 10 % point.
    with open(os.path.join(d, "map_val_s2.png.json")) as f:
        s2 = json.load(f)["series"]
    check(s2[1]["x"] == [1.0, 100.0], "S2 · SSL · TL drawn at 1 and 100 %% only (%s)" % s2[1]["x"])


# ---------------------------------------------------------------- run


def test_run(twinfuse, work):
    d = fresh(os.path.join(work, "run"))
    lines, want = [], {}
    for s in range(1, 31):
        loss, lr = 3.0 - 0.05 * s, 1e-3 * min(1.0, s / 5)
        lines.append('{"step": %d, "epoch": %d, "loss": %.9g, "lr": %.9g, "step_s": 0.010000, "images_per_s": 640.000}'
                     % (s, (s - 1) // 10, loss, lr))
        want[s] = (loss, lr)
    # A resumed run logs steps 21..25 again (from the step-20 checkpoint); the later lines win.
    for s in range(21, 26):
        loss = 1.0 + 0.01 * s
        lines.append('{"step": %d, "epoch": 2, "loss": %.9g, "lr": %.9g, "step_s": 0.01, "pairs_per_s": 12.5}'
                     % (s, loss, want[s][1]))
        want[s] = (loss, want[s][1])
    lines[6] = lines[6].replace('"loss": %.9g' % want[7][0], '"loss": nan')  # C's printf of a NaN loss
    want[7] = (float("nan"), want[7][1])
    with open(os.path.join(d, "metrics.jsonl"), "w") as f:
        f.write("\n".join(lines) + "\n")
    rc, out = report(twinfuse, d)
    check(rc == 0, "twinfuse report on a run exits 0 (got %d: %s)" % (rc, out))
    if rc != 0:
        return
    steps = list(range(1, 31))
    loss = [want[s][0] for s in steps]
    w = 3  # min(50, max(1, 30 // 10))
    sm = []
    for i in range(len(loss)):
        win = [v for v in loss[max(0, i - w + 1):i + 1] if math.isfinite(v)]
        sm.append(sum(win) / len(win))
    for png in ("loss.png", "lr.png"):
        check_png(os.path.join(d, png))
    check_series(os.path.join(d, "loss.png"),
                 [("loss", steps, [None if not math.isfinite(v) else v for v in loss]),
                  ("loss, mean of the last 3 steps", steps, sm)])
    side = check_series(os.path.join(d, "lr.png"), [("lr", steps, [want[s][1] for s in steps])])
    if side:
        check(side["xlabel"] == "step", "lr.png x axis is the step")
    names = sorted(os.listdir(d))
    check(names == ["loss.png", "loss.png.json", "lr.png", "lr.png.json", "metrics.jsonl"],
          "run dir holds %s" % names)

    # With the monitors' lines (docs/monitor.md): monitor.png, its panels' series as logged.
    d = fresh(os.path.join(work, "run_monitor"))
    lines, mon = [], {}
    for s in range(1, 21):
        lines.append('{"step": %d, "epoch": 0, "loss": %.9g, "lr": 0.001}' % (s, 10.0 - 0.1 * s))
        if s % 5 == 0:
            mon[s] = {"z_std_mean": 1 - 0.01 * s, "z_std_min": 0.5, "z_std_low": 0.0, "f_std_mean": 0.9,
                      "f_std_min": 0.2, "f_std_low": 0.1, "c_diag": 0.5 + 0.01 * s, "c_off": 0.1, "erank_z": 30.0 + s,
                      "erank_f": 20.0, "knn_map_macro": 0.3 + 0.01 * s, "knn_map_micro": 0.25}
            lines.append(json.dumps({"step": s, "monitor": mon[s]}))
    with open(os.path.join(d, "metrics.jsonl"), "w") as f:
        f.write("\n".join(lines) + "\n")
    rc, out = report(twinfuse, d)
    check(rc == 0, "twinfuse report on a run with monitors exits 0 (got %d: %s)" % (rc, out))
    if rc != 0:
        return
    check_png(os.path.join(d, "monitor.png"))
    with open(os.path.join(d, "monitor.png.json")) as f:
        side = json.load(f)
    panels = {p["title"]: {x["label"]: (x["x"], x["y"]) for x in p["series"]} for p in side["panels"]}
    steps = sorted(mon)
    check(list(panels) == ["loss", "online kNN", "normalised std per dimension", "effective rank", "cross-correlation"],
          "monitor.png panels: %s" % list(panels))
    check(panels["online kNN"]["kNN mAP macro"] == (steps, [mon[s]["knn_map_macro"] for s in steps]),
          "monitor.png: the kNN mAP macro as logged")
    check(panels["effective rank"]["projector"] == (steps, [mon[s]["erank_z"] for s in steps]),
          "monitor.png: the projector's effective rank as logged")
    check(panels["cross-correlation"]["mean diagonal"] == (steps, [mon[s]["c_diag"] for s in steps]),
          "monitor.png: C's mean diagonal as logged")


# ---------------------------------------------------------------- bad inputs

HEADER = ",".join(COLS)
GOOD = "c,s2,none,concat-linear,ssl,finetune,0.010000,0,val,64,0.5,0.5,0.5,0.5,12"


def test_bad(twinfuse, work):
    cases = [
        ("results.csv", "", "results.csv: empty file"),
        ("results.csv", HEADER + "\n", "results.csv: no rows after the header"),
        ("results.csv", HEADER.replace(",map_macro", "") + "\n" + GOOD.replace(",0.5", "", 1) + "\n",
         "results.csv:1: missing column 'map_macro'"),
        ("results.csv", HEADER + "\n" + GOOD + ",extra\n", "results.csv:2: 16 fields, the header has 15"),
        ("results.csv", HEADER + "\n" + GOOD + "\n" + GOOD.replace("0.010000", "one") + "\n",
         "results.csv:3:7 (column 'label_fraction'): 'one' is not a number"),
        ("results.csv", HEADER + "\n" + GOOD.replace("0.010000", "0") + "\n",
         "results.csv:2:7 (column 'label_fraction'): 0 is outside (0, 1]"),
        ("results.csv", HEADER + "\n" + GOOD.replace(",s2,", ",s3,") + "\n",
         "results.csv:2:2 (column 'source'): 's3', want one of s1|s2|s1+s2"),
        ("results.csv", HEADER + "\n" + GOOD.replace(",none,", ",feature,").replace("concat-linear", "wide") + "\n",
         "results.csv:2:4 (column 'head')"),
        ("results.csv", HEADER + "\n" + GOOD + "\n" + GOOD + "\n",
         "results.csv:3: the same experiment, label_fraction, seed and split as line 2"),
        ("results.csv", HEADER + "\n" + GOOD.replace(",0.5,0.5,0.5", ",nan,0.5,0.5", 1) + "\n",
         "results.csv:2:11 (column 'map_macro'): 'nan' is not finite"),
        ("metrics.jsonl", "", "metrics.jsonl: empty file"),
        ("metrics.jsonl", '{"step": 1, "loss": 1.0, "lr": 0.1}\n{"step": 2, "loss": 1.0, "lr"\n',
         "metrics.jsonl:2:"),
        ("metrics.jsonl", '{"step": 1, "loss": 1.0}\n', "metrics.jsonl:1: missing key 'lr'"),
        ("metrics.jsonl", '{"step": 1.5, "loss": 1.0, "lr": 0.1}\n', "metrics.jsonl:1: step 1.5 is not an integer"),
        # Not UTF-8, not a sweep's CSV, not a run's JSON lines: one line naming file, line, column.
        ("results.csv", (HEADER + "\n" + GOOD.replace(",val,", ",v\xe9l,") + "\n").encode("latin-1"),
         "results.csv:2:9 (column 'split'): not UTF-8 text (byte 0xe9)"),
        ("results.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "results.csv:1:1: not UTF-8 text (byte 0x89)"),
        ("results.csv", b"\x00\x01\x02,\x03\n", "results.csv:1: "),
        ("results.csv", "patch,score:Urban,label:Urban\nS2A_1,0.5,1\n", "results.csv:1: missing column 'source'"),
        ("results.csv", '{"format": "twinfuse-metrics/1"}\n', "results.csv:1: missing column 'source'"),
        ("metrics.jsonl", b'{"step": 1, "loss": 1.0, "lr": 0.1}\n{"step": 2, "loss": \xff}\n',
         "metrics.jsonl:2:21: not UTF-8 text (byte 0xff)"),
        ("metrics.jsonl", "source,fusion\ns1,none\n", "metrics.jsonl:1:1: Expecting value"),
        ("metrics.jsonl", '[1, 2]\n', "metrics.jsonl:1: not a JSON object"),
        ("metrics.jsonl", '{"step": 1, "loss": 1.0, "lr": 0.1}\n{"step": 1, "monitor": {"c_diag": "x"}}\n',
         "metrics.jsonl:2: monitor.c_diag 'x' is not a number"),
        ("metrics.jsonl", "[" * 100000 + "\n", "metrics.jsonl:1"),
    ]
    for n, (name, text, want) in enumerate(cases):
        d = fresh(os.path.join(work, "bad%d" % n))
        with open(os.path.join(d, name), "wb") as f:
            f.write(text if isinstance(text, bytes) else text.encode())
        rc, out = report(twinfuse, d)
        check(len(out.strip().splitlines()) == 1, "bad %d: one line: %s" % (n, out.strip()[:300]))
        check(rc == 1, "bad %d (%s): exit 1, got %d" % (n, want, rc))
        check(os.path.join(d, want) in out, "bad %d: message names '%s/%s': %s" % (n, d, want, out.strip()))
        check("Traceback" not in out, "bad %d: no traceback" % n)
        check(sorted(os.listdir(d)) == [name], "bad %d: nothing else written (%s)" % (n, os.listdir(d)))
    d = fresh(os.path.join(work, "bad_empty_dir"))
    rc, out = report(twinfuse, d)
    check(rc == 1 and "neither results.csv (a sweep) nor metrics.jsonl (a run)" in out and d in out,
          "an empty dir: exit 1 naming it (%d: %s)" % (rc, out.strip()))
    rc, out = report(twinfuse, os.path.join(work, "no_such_dir"))
    check(rc == 1 and "no_such_dir: not a directory" in out, "a missing dir: exit 1 (%d: %s)" % (rc, out.strip()))
    p = subprocess.run([twinfuse, "report"], capture_output=True, text=True)
    check(p.returncode == 2 and "usage: twinfuse report DIR" in p.stderr, "no DIR: usage, exit 2")


# ---------------------------------------------------------------- where Python and report.py are found

STUB = """import sys
open(sys.argv[2] + "/used-" + sys.argv[1] + "-by-%s", "w").write(" ".join(sys.argv[1:]))
"""


def test_layout(twinfuse, work):
    d = fresh(os.path.join(work, "layout_dir"))
    with open(os.path.join(d, "metrics.jsonl"), "w") as f:
        f.write('{"step": 1, "loss": 1.0, "lr": 0.1}\n')
    with open(os.path.join(d, "results.csv"), "w") as f:
        f.write(HEADER + "\n" + GOOD + "\n")
    # TW_REPORT_SCRIPT wins; a dir with both files gets both reports.
    stub = os.path.join(work, "stub_env.py")
    with open(stub, "w") as f:
        f.write(STUB % "env")
    rc, out = report(twinfuse, d, {"TW_REPORT_SCRIPT": stub})
    check(rc == 0, "TW_REPORT_SCRIPT stub exits 0 (%d: %s)" % (rc, out))
    check(sorted(x for x in os.listdir(d) if x.startswith("used-")) == ["used-run-by-env", "used-sweep-by-env"],
          "TW_REPORT_SCRIPT ran for run and sweep: %s" % os.listdir(d))
    # An installed layout: PREFIX/bin/twinfuse finds PREFIX/share/twinfuse/report.py before the source tree's.
    prefix = fresh(os.path.join(work, "prefix"))
    os.makedirs(os.path.join(prefix, "bin"))
    os.makedirs(os.path.join(prefix, "share", "twinfuse"))
    shutil.copy2(twinfuse, os.path.join(prefix, "bin", "twinfuse"))
    with open(os.path.join(prefix, "share", "twinfuse", "report.py"), "w") as f:
        f.write(STUB % "installed")
    rc, out = report(os.path.join(prefix, "bin", "twinfuse"), d)
    check(rc == 0, "installed twinfuse report exits 0 (%d: %s)" % (rc, out))
    check(os.path.exists(os.path.join(d, "used-sweep-by-installed")), "the installed report.py was used")
    # The build tree's twinfuse uses the source tree's report.py (the real one: it draws).
    rc, out = report(twinfuse, d)
    check(rc == 0 and os.path.exists(os.path.join(d, "results.md")) and os.path.exists(os.path.join(d, "loss.png")),
          "build-tree twinfuse uses tools/report.py (%d: %s)" % (rc, out))
    # Clear errors: a missing script, a missing interpreter, an interpreter without matplotlib.
    rc, out = report(twinfuse, d, {"TW_REPORT_SCRIPT": os.path.join(work, "nope.py")})
    check(rc == 1 and "TW_REPORT_SCRIPT=%s: no such file" % os.path.join(work, "nope.py") in out,
          "missing TW_REPORT_SCRIPT named (%d: %s)" % (rc, out.strip()))
    rc, out = report(twinfuse, d, {"TW_PYTHON": os.path.join(work, "no-python")})
    check(rc == 1 and "cannot run the Python interpreter '%s'" % os.path.join(work, "no-python") in out,
          "missing TW_PYTHON named (%d: %s)" % (rc, out.strip()))
    bare = os.path.join(work, "python-without-site")
    with open(bare, "w") as f:
        f.write("#!/bin/sh\nexec %s -S \"$@\"\n" % sys.executable)  # -S: no site-packages, no matplotlib
    os.chmod(bare, 0o755)
    rc, out = report(twinfuse, d, {"TW_PYTHON": bare})
    check(rc == 1 and "matplotlib is not installed" in out and "Traceback" not in out,
          "a Python without matplotlib: a clear message (%d: %s)" % (rc, out.strip()))


def test_install(twinfuse, work, cmake, build_dir):
    """cmake --install into a fresh prefix; that twinfuse runs its own share/twinfuse/report.py."""
    prefix = fresh(os.path.join(work, "install"))
    p = subprocess.run([cmake, "--install", build_dir, "--prefix", prefix], capture_output=True, text=True)
    check(p.returncode == 0, "cmake --install exits 0: %s" % (p.stdout + p.stderr))
    script = os.path.join(prefix, "share", "twinfuse", "report.py")
    check(os.path.isfile(script), "report.py installed at %s" % script)
    d = fresh(os.path.join(work, "install_sweep"))
    write_results(os.path.join(d, "results.csv"))
    rc, out = report(os.path.join(prefix, "bin", "twinfuse"), d)
    check(rc == 0 and os.path.isfile(os.path.join(d, "map_clouds.png.json")),
          "the installed twinfuse reports a sweep (%d: %s)" % (rc, out))


def main():
    if len(sys.argv) == 6 and sys.argv[1] == "install":
        test_install(os.path.abspath(sys.argv[2]), os.path.abspath(sys.argv[3]), sys.argv[4], sys.argv[5])
        print("install: %s" % ("FAIL (%d)" % len(failures) if failures else "ok"))
        return 1 if failures else 0
    if len(sys.argv) != 4 or sys.argv[1] not in ("sweep", "run", "bad", "layout"):
        print(__doc__, file=sys.stderr)
        return 2
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("skip: matplotlib is not installed for %s" % sys.executable)
        return 77
    what, twinfuse, work = sys.argv[1:]
    os.makedirs(work, exist_ok=True)
    {"sweep": test_sweep, "run": test_run, "bad": test_bad, "layout": test_layout}[what](
        os.path.abspath(twinfuse), os.path.abspath(work))
    print("%s: %s" % (what, "FAIL (%d)" % len(failures) if failures else "ok"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
