"""check_predictions.py PRED.csv REPORT.json SPLIT: recomputes, with scikit-learn, the metrics of
the predictions file `twinfuse evaluate --predictions` wrote (train/metrics.h format) and checks
them against the split's entry of the JSON report (--json): n_samples, mAP macro and micro, F1
macro and micro at 0.5 (logit >= 0), per-class AP by class name, to 1e-9. Patch names must be
unique. Exit 0 when all agree, 1 on any mismatch (each printed)."""
import csv
import json
import sys
import warnings

import numpy as np
from sklearn.metrics import average_precision_score, f1_score

TOL = 1e-9


def main():
    if len(sys.argv) != 4:
        print(__doc__)
        return 1
    pred_path, report_path, split = sys.argv[1:]
    with open(pred_path, newline="") as f:
        rows = list(csv.reader(f))
    head, body = rows[0], rows[1:]
    k = (len(head) - 1) // 2
    bad = []
    if head[0] != "patch" or len(head) != 2 * k + 1 or k < 1:
        print(f"{pred_path}: header {head[:3]}... is not patch,score:*,label:*")
        return 1
    classes = [h[len("score:"):] for h in head[1:k + 1]]
    if head[1:k + 1] != ["score:" + c for c in classes] or head[k + 1:] != ["label:" + c for c in classes]:
        bad.append("header: score and label columns do not name the same classes")
    names = [r[0] for r in body]
    if len(set(names)) != len(names):
        bad.append(f"{len(names) - len(set(names))} duplicate patch names")
    if any(len(r) != 2 * k + 1 for r in body):
        bad.append("rows with a wrong number of fields")
        print("\n".join(bad))
        return 1
    s = np.array([[np.float32(v) for v in r[1:k + 1]] for r in body], np.float32).reshape(-1, k)
    y = np.array([[int(v) for v in r[k + 1:]] for r in body], int).reshape(-1, k)
    with open(report_path) as f:
        rep = json.load(f)
    entry = [e for e in rep.get("splits", []) if e.get("split") == split]
    if len(entry) != 1:
        print(f"{report_path}: {len(entry)} entries for split {split}")
        return 1
    e = entry[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = {"map_macro": average_precision_score(y, s, average="macro"),
                "map_micro": average_precision_score(y, s, average="micro"),
                "f1_macro": f1_score(y, s >= 0, average="macro"),
                "f1_micro": f1_score(y, s >= 0, average="micro")}
        ap = average_precision_score(y, s, average=None)
    if e.get("n_samples") != len(body):
        bad.append(f"n_samples {e.get('n_samples')}, the predictions have {len(body)} rows")
    for key, v in want.items():
        if not abs(e.get(key, float("nan")) - v) <= TOL:
            bad.append(f"{key}: report {e.get(key)}, scikit-learn {v:.17g}")
    per = e.get("per_class_ap", {})
    if list(per.keys()) != classes:
        bad.append(f"per_class_ap names {list(per.keys())[:3]}... differ from the predictions' classes")
    for c, v in zip(classes, ap):
        if not abs(per.get(c, float("nan")) - v) <= TOL:
            bad.append(f"AP {c}: report {per.get(c)}, scikit-learn {v:.17g}")
    for b in bad:
        print(f"MISMATCH {split}: {b}")
    print(f"{'FAIL' if bad else 'ok'}: {split}, {len(body)} patches, {k} classes, mAP macro {want['map_macro']:.6f} "
          f"micro {want['map_micro']:.6f}, F1 macro {want['f1_macro']:.6f} micro {want['f1_micro']:.6f}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
