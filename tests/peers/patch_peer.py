"""NumPy / SciPy / scikit-learn as the oracle for defectkit_deploy::anomaly::patch (PaDiM's
patch Gaussian, PatchCore's coreset and memory bank, the anomaly-map arithmetic), run by
crates/defectkit-deploy/tests/patch_peer.rs in the project venv.

  patch_peer.py TASKS.json
      TASKS.json is a list of tasks {kind, ...}; arrays are {shape, data (flat, row-major)}
      holding the f32 values the Rust side uses, written as f64 and read back as float64. Prints a JSON list, one result
      per task:
        upsample   {patch (h×w), side} -> {out (side×side)}: torch's
                   F.interpolate(mode="bilinear", align_corners=False), re-implemented
        blur       {map (side×side), sigma} -> {out}: scipy.ndimage.gaussian_filter(map,
                   sigma, mode="reflect", truncate=4.0)
        anomaly_map {patch, side, sigma} -> {out}: blur(upsample(patch))
        padim      {fit (N×C×h×w), test (M×C×h×w), fixed (list of δ)} -> per location
                   (i, j) the Gaussian of fit[:, :, i, j] and the Mahalanobis distances of
                   test[:, :, i, j]: {ledoit_wolf: {scores (M×h×w), shrinkage (h×w)},
                   fixed: [{delta, scores}]}; Ledoit-Wolf is sklearn.covariance.LedoitWolf,
                   fixed δ shrinks np.cov (1/(N−1)) to (1−δ)S + δ·tr(S)/C·I
        kcenter    {points (P×C), n_select, first} -> {indices}: k-center greedy from the
                   given first pick, squared Euclidean distances, np.argmax (first on ties)
        nn         {bank (M×C), queries (Q×C)} -> {distance, index}: sklearn
                   NearestNeighbors(n_neighbors=1)
        reweight   {bank (M×C), test (N×C×h×w), side, sigma} -> {weight, score} per image:
                   anomalib's PatchcoreModel.compute_anomaly_score weight (num_neighbors 9)
                   and weight × max(anomaly map of the patch scores)
"""
import json
import sys
import warnings

import numpy as np
from scipy.ndimage import gaussian_filter
from scipy.spatial.distance import cdist
from sklearn.covariance import LedoitWolf
from sklearn.neighbors import NearestNeighbors


def arr(v):
    """A {shape, data} array as float64."""
    return np.asarray(v["data"], dtype=np.float64).reshape(v["shape"])


def linear_weights(n_in, n_out):
    """torch's align_corners=False source indices and weights along one axis."""
    scale = n_in / n_out
    x = (np.arange(n_out) + 0.5) * scale - 0.5
    x = np.maximum(x, 0.0)
    i0 = np.minimum(np.floor(x).astype(np.int64), n_in - 1)
    i1 = np.where(i0 < n_in - 1, i0 + 1, i0)
    lam = x - i0
    return i0, i1, 1.0 - lam, lam


def upsample(patch, side):
    h, w = patch.shape
    r0, r1, ra, rb = linear_weights(h, side)
    c0, c1, ca, cb = linear_weights(w, side)
    top = ca[None, :] * patch[r0][:, c0] + cb[None, :] * patch[r0][:, c1]
    bottom = ca[None, :] * patch[r1][:, c0] + cb[None, :] * patch[r1][:, c1]
    return ra[:, None] * top + rb[:, None] * bottom


def blur(m, sigma):
    return gaussian_filter(m, sigma, mode="reflect", truncate=4.0)


def anomaly_map(patch, side, sigma):
    return blur(upsample(patch, side), sigma)


def mahalanobis(z, mean, cov):
    d = z - mean
    return np.sqrt(np.einsum("ij,ij->i", d, np.linalg.solve(cov, d.T).T))


def padim(task):
    fit = arr(task["fit"])
    test = arr(task["test"])
    n, c, h, w = fit.shape
    m = test.shape[0]
    lw_scores = np.zeros((m, h, w))
    lw_shrink = np.zeros((h, w))
    fixed = [{"delta": d, "scores": np.zeros((m, h, w))} for d in task["fixed"]]
    for i in range(h):
        for j in range(w):
            x = fit[:, :, i, j]
            z = test[:, :, i, j]
            lw = LedoitWolf().fit(x)
            lw_scores[:, i, j] = mahalanobis(z, lw.location_, lw.covariance_)
            lw_shrink[i, j] = lw.shrinkage_
            s = np.atleast_2d(np.cov(x, rowvar=False))
            mu = np.trace(s) / c
            for f in fixed:
                cov = (1.0 - f["delta"]) * s + f["delta"] * mu * np.eye(c)
                f["scores"][:, i, j] = mahalanobis(z, x.mean(axis=0), cov)
    return {
        "ledoit_wolf": {"scores": lw_scores.tolist(), "shrinkage": lw_shrink.tolist()},
        "fixed": [{"delta": f["delta"], "scores": f["scores"].tolist()} for f in fixed],
    }


def kcenter(task):
    x = arr(task["points"])
    selected = [int(task["first"])]
    min_d = np.full(x.shape[0], np.inf)
    while len(selected) < task["n_select"]:
        d = ((x - x[selected[-1]]) ** 2).sum(axis=1)
        min_d = np.minimum(min_d, d)
        selected.append(int(np.argmax(min_d)))
    return {"indices": selected}


def nn(task):
    bank = arr(task["bank"])
    q = arr(task["queries"])
    dist, idx = NearestNeighbors(n_neighbors=1).fit(bank).kneighbors(q)
    return {"distance": dist[:, 0].tolist(), "index": idx[:, 0].tolist()}


def patches_of(maps):
    """N×C×h×w -> (N, h·w, C), location l = i·w + j."""
    n, c, h, w = maps.shape
    return maps.transpose(0, 2, 3, 1).reshape(n, h * w, c)


def reweight(task):
    """anomalib's compute_anomaly_score, num_neighbors = 9, in NumPy."""
    bank = arr(task["bank"])
    test = arr(task["test"])
    n, c, h, w = test.shape
    emb = patches_of(test)
    weights, scores = [], []
    for img in range(n):
        dist = cdist(emb[img], bank)  # (h·w, M)
        patch_scores = dist.min(axis=1)
        locations = dist.argmin(axis=1)
        max_patch = int(np.argmax(patch_scores))
        nn_index = locations[max_patch]
        nn_sample = bank[nn_index]
        b = min(9, bank.shape[0])
        support = np.argsort(cdist(nn_sample[None, :], bank)[0], kind="stable")[:b]
        d = cdist(emb[img][max_patch][None, :], bank[support])[0]
        e = np.exp(d - d.max())
        weight = 1.0 - (e / e.sum())[0]
        amap = anomaly_map(patch_scores.reshape(h, w), task["side"], task["sigma"])
        weights.append(float(weight))
        scores.append(float(weight * amap.max()))
    return {"weight": weights, "score": scores}


def run(task):
    kind = task["kind"]
    if kind == "upsample":
        return {"out": upsample(arr(task["patch"]), task["side"]).tolist()}
    if kind == "blur":
        return {"out": blur(arr(task["map"]), task["sigma"]).tolist()}
    if kind == "anomaly_map":
        return {"out": anomaly_map(arr(task["patch"]), task["side"], task["sigma"]).tolist()}
    if kind == "padim":
        return padim(task)
    if kind == "kcenter":
        return kcenter(task)
    if kind == "nn":
        return nn(task)
    if kind == "reweight":
        return reweight(task)
    raise ValueError(f"unknown task kind {kind!r}")


def main():
    with open(sys.argv[1]) as f:
        tasks = json.load(f)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a degenerate estimate here is a bug in the tasks
        json.dump([run(t) for t in tasks], sys.stdout, allow_nan=False)


if __name__ == "__main__":
    main()
