"""scikit-learn / NumPy as the oracle for defectkit_core::metrics, run by
crates/defectkit-core/tests/metrics.rs in the project venv.

  metrics_peer.py CASES.json
      CASES.json is a list of {name, scores, labels, thresholds, percentiles}; prints a JSON
      list with, per case, what sklearn 1.9 / numpy compute (null where a metric is undefined:
      AUROC and the ROC curve need both classes, AP and F1-max need a positive):
      auroc, roc {fpr, tpr} (drop_intermediate=False), ap, f1_max {f1, threshold, precision,
      recall} (from precision_recall_curve; ties to the highest threshold), confusion (one per
      threshold, y_pred = score >= t, zero_division=0) and percentiles (numpy.percentile).
"""
import json
import sys
import warnings

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    confusion_matrix,
    f1_score,
    precision_recall_curve,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)


def f1_max(y, s):
    precision, recall, thresholds = precision_recall_curve(y, s)
    p, r = precision[:-1], recall[:-1]  # the last point (1, 0) has no threshold
    denom = p + r
    f1 = np.divide(2 * p * r, denom, out=np.zeros_like(denom), where=denom > 0)
    best = f1.max()
    # Thresholds ascend; ties (equal up to rounding) go to the highest threshold.
    i = int(np.nonzero(f1 >= best * (1 - 1e-12))[0].max())
    return {
        "f1": float(f1[i]),
        "threshold": float(thresholds[i]),
        "precision": float(p[i]),
        "recall": float(r[i]),
    }


def confusion(y, s, t):
    pred = s >= t
    tn, fp, fn, tp = (int(v) for v in confusion_matrix(y, pred, labels=[False, True]).ravel())
    return {
        "threshold": t,
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "precision": float(precision_score(y, pred, zero_division=0)),
        "recall": float(recall_score(y, pred, zero_division=0)),
        "f1": float(f1_score(y, pred, zero_division=0)),
        "accuracy": float(accuracy_score(y, pred)),
        "fpr": fp / (fp + tn) if fp + tn else 0.0,
    }


def run(case):
    s = np.asarray(case["scores"], dtype=np.float64)
    y = np.asarray(case["labels"], dtype=bool)
    both = 0 < y.sum() < len(y)
    out = {"name": case["name"], "auroc": None, "roc": None, "ap": None, "f1_max": None}
    if both:
        out["auroc"] = float(roc_auc_score(y, s))
        fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
        out["roc"] = {"fpr": fpr.tolist(), "tpr": tpr.tolist()}
    if y.any():
        out["ap"] = float(average_precision_score(y, s))
        out["f1_max"] = f1_max(y, s)
    out["confusion"] = [confusion(y, s, t) for t in case["thresholds"]]
    out["percentiles"] = [float(np.percentile(s, p)) for p in case["percentiles"]]
    return out


def main():
    with open(sys.argv[1]) as f:
        cases = json.load(f)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an undefined metric here is a bug in this script
        json.dump([run(c) for c in cases], sys.stdout)


if __name__ == "__main__":
    main()
