#!/usr/bin/env python3
"""Tables and plots of twinfuse runs and sweeps (run by `twinfuse report DIR`; docs/report.md).

  report.py sweep DIR   DIR/results.csv -> DIR/results.md and DIR/map_*.png (+ .json sidecars)
  report.py run DIR     DIR/metrics.jsonl -> DIR/loss.png, DIR/lr.png, and with the monitors'
                        lines DIR/monitor.png (+ .json sidecars)
  report.py map FILE    a `twinfuse predict` map (its --top-label file or its probabilities) ->
                        FILE.png: the S2 scene's RGB beside the most probable class per pixel
                        (+ .json sidecar: the classes drawn, their colours and pixel counts)

Every PNG has a sidecar PNG + ".json": {"title", "xlabel", "ylabel", "xscale", "series":
[{"label", "x", "y"}]} listing exactly the lines drawn. Every file is written to a temporary
name in DIR and renamed. Bad input exits 1 with "report.py: FILE:LINE[:COLUMN]: message" (a file
that is not UTF-8 text too: the line and column of its first bad byte).
"""
import csv
import io
import json
import math
import os
import re
import sys
import tempfile

SOURCES = ("s1", "s2", "s1+s2")
FUSIONS = ("none", "early", "feature")
HEADS = ("concat-linear", "concat-mlp", "gated")
INITS = ("scratch", "weights", "ssl", "ssl-cross")
MODES = ("frozen", "finetune")
SPLITS = ("val", "test", "clouds")  # the order of the tables; other splits follow by name
REQUIRED = ("source", "fusion", "head", "init", "mode", "label_fraction", "seed", "split", "map_macro")
INIT_NAMES = {"scratch": "Scratch", "weights": "Imported", "ssl": "SSL", "ssl-cross": "SSL-cross"}
MODE_NAMES = {"frozen": "TL", "finetune": "FT"}
SPLIT_NAMES = {"val": "validation", "test": "test", "clouds": "clouds"}
GAP_RULE = (
    "Gap: 100 × (mAP − mAP_fusion) / mAP_fusion, from the means over seeds. The fusion model of a "
    "row at a label fraction is the S1+S2 experiment (any fusion and head) with the highest mean mAP "
    "at that fraction in this split among those with the row's initialisation and mode; when no "
    "S1+S2 experiment has them, the S1+S2 experiment with the highest mean mAP at that fraction; "
    "when there is none, the gap is —. mAP is the macro mAP; ± is the sample standard deviation "
    "over seeds (shown when there are several).")


class InputError(Exception):
    """Bad input; the message names the file and line."""


def fail(msg):
    print("report.py: %s" % msg, file=sys.stderr)
    sys.exit(1)


def read_text(path, csv_header=False):
    """The file's text (UTF-8, a leading byte-order mark dropped). A byte that is not UTF-8 is an
    InputError naming the line and column (for a CSV, the field and its header name)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise InputError("%s: %s" % (path, e.strerror))
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        at = e.start
        line_start = data.rfind(b"\n", 0, at) + 1
        line = data.count(b"\n", 0, at) + 1
        what = "not UTF-8 text (byte 0x%02x)" % data[at]
        if csv_header:
            field = data.count(b",", line_start, at) + 1
            header = data[:data.find(b"\n")].decode("utf-8", "replace").split(",")
            name = " (column '%s')" % header[field - 1].strip() if line > 1 and field <= len(header) else ""
            raise InputError("%s:%d:%d%s: %s" % (path, line, field, name, what))
        raise InputError("%s:%d:%d: %s" % (path, line, at - line_start + 1, what))


# ---------------------------------------------------------------- atomic output


def write_atomic(path, data):
    """Writes bytes or str to a temporary file in path's directory, then renames it onto path."""
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=d)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; the report is for everyone who reads DIR
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def json_num(v):
    """A float for JSON; None (null) for NaN and infinities, which JSON cannot hold."""
    return float(v) if math.isfinite(v) else None


def plot(path, title, xlabel, ylabel, xscale, series):
    """Draws series [{"label", "x", "y", optional "style": matplotlib keywords}] as lines in one
    figure: path (PNG) and path + ".json" (the sidecar: everything but the styles)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter
    fig, ax = plt.subplots(figsize=(9 if len(series) > 6 else 7, 4.5), dpi=100)
    for s in series:
        ax.plot(s["x"], s["y"], label=s["label"], **s.get("style", {"marker": "o"}))
    ax.set_xscale(xscale)
    if xscale == "log":  # ticks at the label fractions drawn, written as plain numbers
        ticks = sorted({v for s in series for v in s["x"]})
        ax.set_xticks(ticks, ["%g" % v for v in ticks])
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    if series:
        if len(series) > 6:
            ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
        else:
            ax.legend(fontsize="small")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    write_atomic(path, buf.getvalue())
    side = {"title": title, "xlabel": xlabel, "ylabel": ylabel, "xscale": xscale,
            "series": [{"label": s["label"], "x": [json_num(v) for v in s["x"]],
                        "y": [json_num(v) for v in s["y"]]} for s in series]}
    write_atomic(path + ".json", json.dumps(side, indent=1, ensure_ascii=False) + "\n")


# ---------------------------------------------------------------- sweep: results.csv


def read_results(path):
    """Rows of results.csv as dicts with typed values and their line numbers ("line")."""
    f = io.StringIO(read_text(path, csv_header=True), newline="")
    with f:
        rd = csv.reader(f)
        try:
            header = next(rd, None)
        except csv.Error as e:
            raise InputError("%s:1: %s" % (path, e))
        if header is None:
            raise InputError("%s: empty file (want a header line with the columns %s)" % (path, ",".join(REQUIRED)))
        header = [h.strip() for h in header]
        for c in REQUIRED:
            if c not in header:
                raise InputError("%s:1: missing column '%s'" % (path, c))
        col = {c: header.index(c) for c in REQUIRED}
        rows, seen = [], {}
        try:
            for fields in rd:
                line = rd.line_num
                if not fields:
                    continue
                if len(fields) != len(header):
                    raise InputError("%s:%d: %d fields, the header has %d" % (path, line, len(fields), len(header)))
                rows.append(parse_row(path, line, fields, col))
                r = rows[-1]
                key = (experiment_key(r), r["label_fraction"], r["seed"], r["split"])
                if key in seen:
                    raise InputError("%s:%d: the same experiment, label_fraction, seed and split as line %d"
                                     % (path, line, seen[key]))
                seen[key] = line
        except csv.Error as e:
            raise InputError("%s:%d: %s" % (path, rd.line_num, e))
    if not rows:
        raise InputError("%s: no rows after the header" % path)
    return rows


def parse_row(path, line, fields, col):
    def at(c):
        return "%s:%d:%d (column '%s')" % (path, line, col[c] + 1, c)

    def choice(c, allowed):
        v = fields[col[c]].strip()
        if v not in allowed:
            raise InputError("%s: '%s', want one of %s" % (at(c), v, "|".join(allowed)))
        return v

    def number(c, kind):
        v = fields[col[c]].strip()
        try:
            x = kind(v)
        except ValueError:
            raise InputError("%s: '%s' is not a%s" % (at(c), v, "n integer" if kind is int else " number"))
        if kind is float and not math.isfinite(x):
            raise InputError("%s: '%s' is not finite" % (at(c), v))
        return x

    r = {"line": line, "source": choice("source", SOURCES), "fusion": choice("fusion", FUSIONS),
         "init": choice("init", INITS), "mode": choice("mode", MODES)}
    r["head"] = fields[col["head"]].strip()
    if r["fusion"] == "feature":
        r["head"] = choice("head", HEADS)
    if (r["source"] == "s1+s2") != (r["fusion"] != "none"):
        raise InputError("%s: fusion '%s' with source '%s' (s1+s2 takes early|feature, s1 and s2 take none)"
                         % (at("fusion"), r["fusion"], r["source"]))
    r["label_fraction"] = number("label_fraction", float)
    if not 0 < r["label_fraction"] <= 1:
        raise InputError("%s: %s is outside (0, 1]" % (at("label_fraction"), fields[col["label_fraction"]].strip()))
    r["seed"] = number("seed", int)
    r["split"] = fields[col["split"]].strip()
    if not re.fullmatch(r"[A-Za-z0-9_-]+", r["split"]):
        raise InputError("%s: '%s' is not a split name" % (at("split"), r["split"]))
    r["map_macro"] = number("map_macro", float)
    return r


def experiment_key(r):
    """(source, fusion, head, init, mode); head only counts for feature fusion."""
    head = r["head"] if r["fusion"] == "feature" else ""
    return (r["source"], r["fusion"], head, r["init"], r["mode"])


def key_order(k):
    source, fusion, head, init, mode = k
    return (SOURCES.index(source), FUSIONS.index(fusion), HEADS.index(head) if head else -1,
            INITS.index(init), MODES.index(mode))


def source_name(k):
    source, fusion, head = k[0], k[1], k[2]
    if source != "s1+s2":
        return source.upper()
    return "S1+S2 " + fusion + ("/" + head if head else "")


def experiment_name(k):
    """E.g. "S2 · SSL · FT", "S1+S2 feature/gated · SSL-cross · TL"."""
    return "%s · %s · %s" % (source_name(k), INIT_NAMES[k[3]], MODE_NAMES[k[4]])


def split_order(s):
    return (SPLITS.index(s), "") if s in SPLITS else (len(SPLITS), s)


def percent(frac):
    """A label fraction in % as a short number: 0.01 -> 1, 0.005 -> 0.5."""
    return round(frac * 100, 9)


def fmt_percent(frac):
    return "%g %%" % percent(frac)


def mean_std(values):
    n = len(values)
    m = sum(values) / n
    s = math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return m, s


def summarise(rows):
    """{split: {experiment key: {label_fraction: (mean, std, n_seeds)}}} of map_macro."""
    acc = {}
    for r in rows:
        acc.setdefault(r["split"], {}).setdefault(experiment_key(r), {}).setdefault(
            r["label_fraction"], []).append(r["map_macro"])
    return {sp: {k: {f: mean_std(v) + (len(v),) for f, v in fr.items()} for k, fr in ex.items()}
            for sp, ex in acc.items()}


def fusion_reference(table, key, frac):
    """The mean mAP of the fusion model for row key at frac (the rule in GAP_RULE), or None."""
    fused = [(k, fr[frac][0]) for k, fr in table.items() if k[0] == "s1+s2" and frac in fr]
    same = [m for k, m in fused if k[3] == key[3] and k[4] == key[4]]
    pool = same or [m for _, m in fused]
    return max(pool) if pool else None


def sweep_markdown(path, stats):
    out = ["# Sweep results", "",
           "From `%s`: macro mAP per experiment (rows) and label fraction (columns), "
           "with the relative gap to the fusion model in parentheses." % os.path.basename(path), ""]
    for split in sorted(stats, key=split_order):
        table = stats[split]
        fracs = sorted({f for fr in table.values() for f in fr})
        out += ["## %s split" % SPLIT_NAMES.get(split, split).capitalize(), ""]
        out.append("| Experiment | " + " | ".join(fmt_percent(f) for f in fracs) + " |")
        out.append("|---|" + "---:|" * len(fracs))
        for k in sorted(table, key=key_order):
            cells = []
            for f in fracs:
                if f not in table[k]:
                    cells.append("—")
                    continue
                m, s, n = table[k][f]
                cell = "%.4f ± %.4f" % (m, s) if n > 1 else "%.4f" % m
                ref = fusion_reference(table, k, f)
                gap = "—" if ref is None or ref == 0 else "%+.2f %%" % (100 * (m - ref) / ref)
                cells.append("%s (%s)" % (cell, gap))
            out.append("| %s | %s |" % (experiment_name(k), " | ".join(cells)))
        out += ["", GAP_RULE, ""]
    return "\n".join(out)


def sweep_series(table, keys, with_source):
    series = []
    for k in sorted(keys, key=key_order):
        fr = table[k]
        xs = sorted(fr)
        name = experiment_name(k) if with_source else "%s · %s" % (INIT_NAMES[k[3]], MODE_NAMES[k[4]])
        if not with_source and k[0] == "s1+s2":
            name = "%s · %s" % (source_name(k)[len("S1+S2 "):], name)
        style = {"marker": "os^"[SOURCES.index(k[0])], "linestyle": "--" if k[4] == "frozen" else "-"}
        series.append({"label": name, "x": [percent(f) for f in xs], "y": [fr[f][0] for f in xs], "style": style})
    return series


def report_sweep(d):
    path = os.path.join(d, "results.csv")
    stats = summarise(read_results(path))
    write_atomic(os.path.join(d, "results.md"), sweep_markdown(path, stats))
    xlabel, ylabel = "labels used (%)", "mAP (macro, mean over seeds)"
    if "val" in stats:
        table = stats["val"]
        for source, stem in (("s1", "s1"), ("s2", "s2"), ("s1+s2", "s1_s2")):
            keys = [k for k in table if k[0] == source]
            if keys:
                plot(os.path.join(d, "map_val_%s.png" % stem), "%s, validation split" % source.upper(),
                     xlabel, ylabel, "log", sweep_series(table, keys, False))
    if "clouds" in stats:
        table = stats["clouds"]
        plot(os.path.join(d, "map_clouds.png"), "Every experiment, clouds split", xlabel, ylabel, "log",
             sweep_series(table, list(table), True))


# ---------------------------------------------------------------- run: metrics.jsonl

NONFINITE = re.compile(r'(:\s*)(-?)(nan|inf)\b', re.IGNORECASE)


MONITOR_KEYS = ("z_std_mean", "z_std_min", "z_std_low", "f_std_mean", "f_std_min", "f_std_low", "c_diag",
                "c_off", "erank_z", "erank_f", "knn_map_macro", "knn_map_micro")


def read_metrics(path):
    """([(step, loss, lr)], {step: monitor figures}) ordered by step; a step logged again (a resumed
    run) keeps its last line. A line with "monitor" holds the figures of a check (docs/monitor.md)."""
    text = read_text(path)
    by_step, monitors = {}, {}
    for line_no, text in enumerate(text.splitlines(), 1):
        if not text.strip():
            continue
        # C's printf writes nan/inf for a diverged loss; JSON spells them NaN/Infinity.
        text = NONFINITE.sub(lambda m: m.group(1) + m.group(2) + ("NaN" if m.group(3).lower() == "nan"
                                                                  else "Infinity"), text)
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputError("%s:%d:%d: %s" % (path, line_no, e.colno, e.msg))
        except RecursionError:
            raise InputError("%s:%d: nested too deeply" % (path, line_no))
        if not isinstance(obj, dict):
            raise InputError("%s:%d: not a JSON object" % (path, line_no))
        keys = ("step", "monitor") if "monitor" in obj else ("step", "loss", "lr")
        for k in keys:
            if k not in obj:
                raise InputError("%s:%d: missing key '%s'" % (path, line_no, k))
        if not isinstance(obj["step"], int) or isinstance(obj["step"], bool):
            raise InputError("%s:%d: step %r is not an integer" % (path, line_no, obj["step"]))
        if "monitor" in obj:
            mon = obj["monitor"]
            if not isinstance(mon, dict):
                raise InputError("%s:%d: monitor is not a JSON object" % (path, line_no))
            for k, v in mon.items():
                if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool)):
                    raise InputError("%s:%d: monitor.%s %r is not a number" % (path, line_no, k, v))
            monitors[obj["step"]] = {k: float("nan") if v is None else float(v) for k, v in mon.items()}
            continue
        for k in ("loss", "lr"):
            if not isinstance(obj[k], (int, float)) or isinstance(obj[k], bool):
                raise InputError("%s:%d: %s %r is not a number" % (path, line_no, k, obj[k]))
        by_step[obj["step"]] = (float(obj["loss"]), float(obj["lr"]))
    if not by_step:
        raise InputError("%s: empty file (want one JSON line per step)" % path)
    return [(s,) + by_step[s] for s in sorted(by_step)], {s: monitors[s] for s in sorted(monitors)}


def smooth(values):
    """Trailing mean over the last w values, w = min(50, max(1, n // 10)); non-finite values skipped."""
    w = min(50, max(1, len(values) // 10))
    out = []
    for i in range(len(values)):
        win = [v for v in values[max(0, i - w + 1):i + 1] if math.isfinite(v)]
        out.append(sum(win) / len(win) if win else float("nan"))
    return out, w


def plot_panels(path, title, panels):
    """Draws panels [{"title", "ylabel", "series"}] (series as plot's) side by side against the step:
    path (PNG) and path + ".json" {"title", "panels": [{"title", "xlabel", "ylabel", "xscale",
    "series"}]}."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4), dpi=100, squeeze=False, sharex=True)
    for ax, p in zip(axes[0], panels):
        for s in p["series"]:
            ax.plot(s["x"], s["y"], label=s["label"], **s.get("style", {"marker": "o", "markersize": 3}))
        ax.set_title(p["title"], fontsize="medium")
        ax.set_xlabel("step")
        ax.set_ylabel(p["ylabel"])
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="x-small")
    fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    write_atomic(path, buf.getvalue())
    side = {"title": title, "panels": [
        {"title": p["title"], "xlabel": "step", "ylabel": p["ylabel"], "xscale": "linear",
         "series": [{"label": s["label"], "x": [json_num(v) for v in s["x"]], "y": [json_num(v) for v in s["y"]]}
                    for s in p["series"]]} for p in panels]}
    write_atomic(path + ".json", json.dumps(side, indent=1, ensure_ascii=False) + "\n")


def report_monitor(d, name, steps, sm, w, monitors):
    """monitor.png: the loss, the kNN mAP, the normalised stds, the effective ranks and the
    cross-correlation's two terms against the step (docs/monitor.md)."""
    ms = list(monitors)

    def series(pairs):
        out = []
        for key, label in pairs:
            xs = [s for s in ms if key in monitors[s]]
            if xs:
                out.append({"label": label, "x": xs, "y": [monitors[s][key] for s in xs]})
        return out

    panels = [{"title": "loss", "ylabel": "loss",
               "series": [{"label": "loss, mean of the last %d steps" % w, "x": steps, "y": sm, "style": {}}]}]
    knn = series([("knn_map_macro", "kNN mAP macro"), ("knn_map_micro", "kNN mAP micro")])
    if knn:
        panels.append({"title": "online kNN", "ylabel": "mAP", "series": knn})
    panels.append({"title": "normalised std per dimension", "ylabel": "std x sqrt(d)",
                   "series": series([("z_std_mean", "projector, mean"), ("z_std_min", "projector, min"),
                                     ("f_std_mean", "backbone, mean"), ("f_std_min", "backbone, min")])})
    panels.append({"title": "effective rank", "ylabel": "exp(entropy of singular values)",
                   "series": series([("erank_z", "projector"), ("erank_f", "backbone")])})
    panels.append({"title": "cross-correlation", "ylabel": "C",
                   "series": series([("c_diag", "mean diagonal"), ("c_off", "mean |off-diagonal|")])})
    plot_panels(os.path.join(d, "monitor.png"), "Monitors, %s" % name, panels)


def report_run(d):
    rows, monitors = read_metrics(os.path.join(d, "metrics.jsonl"))
    steps = [r[0] for r in rows]
    loss = [r[1] for r in rows]
    sm, w = smooth(loss)
    name = os.path.basename(os.path.normpath(os.path.abspath(d)))
    plot(os.path.join(d, "loss.png"), "Training loss, %s" % name, "step", "loss", "linear",
         [{"label": "loss", "x": steps, "y": loss, "style": {"alpha": 0.35, "linewidth": 0.8}},
          {"label": "loss, mean of the last %d steps" % w, "x": steps, "y": sm, "style": {"linewidth": 2}}])
    plot(os.path.join(d, "lr.png"), "Learning rate, %s" % name, "step", "learning rate", "linear",
         [{"label": "lr", "x": steps, "y": [r[2] for r in rows], "style": {}}])
    if monitors:
        report_monitor(d, name, steps, sm, w, monitors)


# ---------------------------------------------------------------- map: a predicted scene

TAB20 = [(31, 119, 180), (174, 199, 232), (255, 127, 14), (255, 187, 120), (44, 160, 44), (152, 223, 138),
         (214, 39, 40), (255, 152, 150), (148, 103, 189), (197, 176, 213), (140, 86, 75), (196, 156, 148),
         (227, 119, 194), (247, 182, 210), (127, 127, 127), (199, 199, 199), (188, 189, 34), (219, 219, 141),
         (23, 190, 207), (158, 218, 229)]  # predict's colour table (src/predict/predict.c)


def read_rgb(path, shape):
    """The scene's B04, B03, B02 (found by band description, else bands 4, 3, 2 of 12) at shape,
    stretched between the 2nd and 98th percentiles; None when it cannot be read."""
    import numpy as np
    import rasterio
    if not path or "," in path or not os.path.exists(path):
        return None
    with rasterio.open(path) as d:
        names = list(d.descriptions)
        idx = [names.index(b) + 1 if b in names else n for b, n in (("B04", 4), ("B03", 3), ("B02", 2))]
        if max(idx) > d.count:
            return None
        rgb = d.read(idx, out_shape=(3,) + shape).astype("float64")
    valid = rgb.sum(axis=0) > 0
    if not valid.any():
        return None
    lo, hi = np.percentile(rgb[:, valid], 2), np.percentile(rgb[:, valid], 98)
    return np.clip((rgb - lo) / max(hi - lo, 1e-9), 0, 1).transpose(1, 2, 0)


def report_map(path):
    import io
    import numpy as np
    try:
        import rasterio
    except ImportError:
        fail("rasterio is not installed for %s (launch/requirements.txt); it reads the map" % sys.executable)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch
    with rasterio.open(path) as d:
        tags = d.tags()
        scale = max(1, int(math.ceil(max(d.width, d.height) / 1000)))  # at most 1000 pixels a side
        shape = (max(1, d.height // scale), max(1, d.width // scale))
        classes = tags.get("TWINFUSE_CLASSES", "").split(";") if tags.get("TWINFUSE_CLASSES") else list(d.descriptions)
        if d.count == 1 and d.dtypes[0] == "uint8":
            label = d.read(1, out_shape=shape, resampling=rasterio.enums.Resampling.nearest)
            nodata = label == 255
            cmap = d.colormap(1) if d.colorinterp[0].name == "palette" else {}
        else:
            prob = d.read(out_shape=(d.count,) + shape, resampling=rasterio.enums.Resampling.nearest)
            nodata = np.isnan(prob).all(axis=0)
            label = np.where(nodata, 0, np.nanargmax(np.where(np.isnan(prob), -1, prob), axis=0)).astype(np.uint8)
            cmap = {}
    k = len(classes)
    if not classes or any(c is None for c in classes):
        raise InputError("%s: no class names (TWINFUSE_CLASSES or band descriptions); not a twinfuse predict map" % path)
    colours = [tuple(cmap[i][:3]) if i in cmap else TAB20[i % 20] for i in range(k)]
    rgb = read_rgb(tags.get("TWINFUSE_S2"), shape)
    img = np.zeros(shape + (4,))
    for i in range(k):
        img[label == i] = [c / 255 for c in colours[i]] + [1]
    img[nodata] = (0, 0, 0, 0)
    present = [(i, int(((label == i) & ~nodata).sum())) for i in range(k)]
    present = [(i, n) for i, n in present if n > 0]
    panels = 2 if rgb is not None else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels + 3.5, 5.5), dpi=100, squeeze=False)
    if rgb is not None:
        axes[0][0].imshow(rgb)
        axes[0][0].set_title("scene (B04, B03, B02)")
    ax = axes[0][panels - 1]
    ax.imshow(img, cmap=ListedColormap([(0, 0, 0, 0)]), interpolation="nearest")
    ax.set_title("most probable class")
    for a in axes[0]:
        a.set_xticks([])
        a.set_yticks([])
    total = max(1, sum(n for _, n in present))
    import textwrap
    ax.legend(handles=[Patch(color=[c / 255 for c in colours[i]],
                             label=textwrap.fill("%s (%.0f%%)" % (classes[i], 100 * n / total), 42))
                       for i, n in present], fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle(os.path.basename(path))
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    out = os.path.splitext(path)[0] + ".png"
    write_atomic(out, buf.getvalue())
    side = {"title": os.path.basename(path), "scene": tags.get("TWINFUSE_S2"), "scale": scale,
            "nodata_pixels": int(nodata.sum()),
            "classes": [{"index": i, "name": classes[i], "rgb": list(colours[i]), "pixels": n} for i, n in present]}
    write_atomic(out + ".json", json.dumps(side, indent=1, ensure_ascii=False) + "\n")


def main(argv):
    if len(argv) != 3 or argv[1] not in ("sweep", "run", "map"):
        print("usage: report.py sweep|run DIR | report.py map FILE.tif", file=sys.stderr)
        return 2
    d = argv[2]
    if argv[1] == "map" and not os.path.isfile(d):
        fail("%s: no such file" % d)
    if argv[1] != "map" and not os.path.isdir(d):
        fail("%s: not a directory" % d)
    import importlib.util
    if importlib.util.find_spec("matplotlib") is None:  # checked first, without the cost of importing it
        fail("matplotlib is not installed for %s (pip install matplotlib==3.11.2, as in "
             "launch/requirements.txt; or set TW_PYTHON to a Python that has it)" % sys.executable)
    try:
        {"sweep": report_sweep, "run": report_run, "map": report_map}[argv[1]](d)
    except InputError as e:
        fail(str(e))
    except OSError as e:
        fail("%s: %s" % (e.filename or d, e.strerror))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
