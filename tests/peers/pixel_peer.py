"""The MVTec AD official pixel-level evaluation as the oracle for
defectkit_core::metrics::{label_regions, pixel_auroc, pro_curve, aupro}, run by
crates/defectkit-core/tests/pixel_metrics.rs in the project venv.

  pixel_peer.py CASES.json
      CASES.json is a list of {name, width, height, maps, masks, fpr_limits}: maps a list of
      flat row-major float lists, masks flat bool lists of the same shape. Prints a JSON list
      with, per case:
        labels, counts   scipy.ndimage.label(mask, structure=np.ones((3, 3))) per image;
        pixel_auroc      sklearn.metrics.roc_auc_score over all pixels (null with one class);
        curve {fpr, pro} compute_pro's curve without the (0, 0) and (1, 1) it adds;
        aupro            trapezoid(fpr, pro, x_max=limit) / limit per limit;
        aupro_f32        the same with the official float32 FPRs;
      curve, aupro and aupro_f32 are null without a defect region or a good pixel.

compute_pro and trapezoid below follow the MVTec AD evaluation code
(mvtec_ad_evaluation: pro_curve_util.py, generic_util.py, evaluate_experiment.py) line for
line. Two deliberate differences, both switchable: the cumulative false-positive counts are
uint64 (the official uint32 asserts against overflow) and, unless fpr_dtype=np.float32, the
FPRs stay float64 (the official code casts them to float32, which limits the curve to ~1e-7
and would make a 1e-9 comparison meaningless).
"""
import json
import sys
import warnings
from bisect import bisect

import numpy as np
from scipy.ndimage import label
from sklearn.metrics import roc_auc_score


def compute_pro(anomaly_maps, ground_truth_maps, fpr_dtype=np.float64):
    """The official compute_pro: the PRO curve (fprs, pros) of a set of anomaly maps."""
    structure = np.ones((3, 3), dtype=int)

    num_ok_pixels = 0
    num_gt_regions = 0

    shape = (len(anomaly_maps), anomaly_maps[0].shape[0], anomaly_maps[0].shape[1])
    fp_changes = np.zeros(shape, dtype=np.uint64)
    pro_changes = np.zeros(shape, dtype=np.float64)

    for gt_ind, gt_map in enumerate(ground_truth_maps):
        labeled, n_components = label(gt_map, structure)
        num_gt_regions += n_components

        ok_mask = labeled == 0
        num_ok_pixels_in_map = np.sum(ok_mask)
        num_ok_pixels += num_ok_pixels_in_map

        fp_change = np.zeros_like(gt_map, dtype=fp_changes.dtype)
        fp_change[ok_mask] = 1

        pro_change = np.zeros_like(gt_map, dtype=np.float64)
        for k in range(n_components):
            region_mask = labeled == (k + 1)
            region_size = np.sum(region_mask)
            pro_change[region_mask] = 1.0 / region_size

        fp_changes[gt_ind, :, :] = fp_change
        pro_changes[gt_ind, :, :] = pro_change

    if num_gt_regions == 0 or num_ok_pixels == 0:
        return None  # the official code would divide by zero here

    anomaly_scores_flat = np.array(anomaly_maps).ravel()
    fp_changes_flat = fp_changes.ravel()
    pro_changes_flat = pro_changes.ravel()

    sort_idxs = np.argsort(anomaly_scores_flat).astype(np.uint32)[::-1]

    np.take(anomaly_scores_flat, sort_idxs, out=anomaly_scores_flat)
    anomaly_scores_sorted = anomaly_scores_flat
    np.take(fp_changes_flat, sort_idxs, out=fp_changes_flat)
    fp_changes_sorted = fp_changes_flat
    np.take(pro_changes_flat, sort_idxs, out=pro_changes_flat)
    pro_changes_sorted = pro_changes_flat

    del sort_idxs

    np.cumsum(fp_changes_sorted, out=fp_changes_sorted)
    fp_changes_sorted = fp_changes_sorted.astype(fpr_dtype, copy=False)
    np.divide(fp_changes_sorted, num_ok_pixels, out=fp_changes_sorted)
    fprs = fp_changes_sorted

    np.cumsum(pro_changes_sorted, out=pro_changes_sorted)
    np.divide(pro_changes_sorted, num_gt_regions, out=pro_changes_sorted)
    pros = pro_changes_sorted

    # Merge (FPR, PRO) points of one threshold: keep the last of each run of equal scores.
    keep_mask = np.append(np.diff(anomaly_scores_sorted) != 0, np.True_)
    del anomaly_scores_sorted

    fprs = fprs[keep_mask]
    pros = pros[keep_mask]
    del keep_mask

    np.clip(fprs, a_min=None, a_max=1.0, out=fprs)
    np.clip(pros, a_min=None, a_max=1.0, out=pros)

    zero = np.array([0.0])
    one = np.array([1.0])

    return np.concatenate((zero, fprs, one)), np.concatenate((zero, pros, one))


def trapezoid(x, y, x_max=None):
    """The official trapezoid: the integral of y dx, optionally up to x_max (interpolated)."""
    x = np.array(x)
    y = np.array(y)
    finite_mask = np.logical_and(np.isfinite(x), np.isfinite(y))
    if not finite_mask.all():
        raise ValueError("non-finite curve points")  # the official code warns and drops them
    x = x[finite_mask]
    y = y[finite_mask]

    correction = 0.0
    if x_max is not None:
        if x_max not in x:
            ins = bisect(x, x_max)
            assert 0 < ins < len(x)
            y_interp = y[ins - 1] + (
                (y[ins] - y[ins - 1]) * (x_max - x[ins - 1]) / (x[ins] - x[ins - 1])
            )
            correction = 0.5 * (y_interp + y[ins - 1]) * (x_max - x[ins - 1])

        mask = x <= x_max
        x = x[mask]
        y = y[mask]

    return np.sum(0.5 * (y[1:] + y[:-1]) * (x[1:] - x[:-1])) + correction


def au_pro(maps, masks, limit, fpr_dtype):
    """evaluate_experiment.py's calculate_au_pro_au_roc, the AUPRO part."""
    curve = compute_pro(maps, masks, fpr_dtype)
    if curve is None:
        return None
    return float(trapezoid(curve[0], curve[1], x_max=limit) / limit)


def run(case):
    w, h = case["width"], case["height"]
    # The maps are float32 values (sent exactly as float64), as the official loader gives.
    maps = [np.asarray(m, dtype=np.float32).reshape(h, w) for m in case["maps"]]
    masks = [np.asarray(m, dtype=bool).reshape(h, w) for m in case["masks"]]
    out = {"name": case["name"], "labels": [], "counts": []}
    for m in masks:
        labeled, n = label(m, structure=np.ones((3, 3), dtype=int))
        out["labels"].append(labeled.ravel().tolist())
        out["counts"].append(int(n))

    y = np.concatenate([m.ravel() for m in masks])
    s = np.concatenate([m.ravel() for m in maps]).astype(np.float64)
    out["pixel_auroc"] = float(roc_auc_score(y, s)) if 0 < y.sum() < len(y) else None

    curve = compute_pro(maps, masks)
    if curve is None:
        out["curve"] = out["aupro"] = out["aupro_f32"] = None
    else:
        out["curve"] = {"fpr": curve[0][1:-1].tolist(), "pro": curve[1][1:-1].tolist()}
        out["aupro"] = [au_pro(maps, masks, t, np.float64) for t in case["fpr_limits"]]
        out["aupro_f32"] = [au_pro(maps, masks, t, np.float32) for t in case["fpr_limits"]]
    return out


def main():
    with open(sys.argv[1]) as f:
        cases = json.load(f)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an undefined metric here is a bug in this script
        json.dump([run(c) for c in cases], sys.stdout)


if __name__ == "__main__":
    main()
