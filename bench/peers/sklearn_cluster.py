#!/usr/bin/env python3
"""The scikit-learn peer of the `bench_cluster` example: the `cluster` chain, stage by stage.

    .venv/bin/python bench/peers/sklearn_cluster.py --input emb_d128.npy

Reads an N×d float32 .npy file and times, with time.perf_counter, on all of its rows:

1. standardize: StandardScaler().fit_transform of the rows as float64 (defectkit
   standardizes f32 rows into f64; the cast is timed here as it is there);
2. pca: PCA(n_components=--variance, svd_solver="full").fit, kept components capped at
   --max-components (at least 2), the rows projected onto them;
3. tsne: TSNE(n_components=2, perplexity, max_iter, angle=--theta, init="random",
   method="barnes_hut", random_state=--seed, n_jobs=None), default learning rate ("auto":
   max(N / 48, 50), as bhtsne's);
4. dbscan: the k-distance curve (NearestNeighbors(n_neighbors=k).kneighbors of the rows
   themselves, column k − 1, sorted; k = --min-samples), eps at its knee by the rule of
   crates/defectkit-deploy/src/cluster/knee.rs (farthest point from the chord after scaling
   both axes to [0, 1], the lower median when there is no bend), then
   DBSCAN(eps, min_samples=k) (also split into kdistance_knee and dbscan_only).

Prints one JSON line with the fields of bench_cluster's (framework "sklearn"), plus the
versions and the thread pools (threadpoolctl: OpenMP for TSNE's gradient, OpenBLAS for the
SVD) and OMP_NUM_THREADS. `--labels-out FILE` writes the DBSCAN labels, one per line (-1 =
noise). A benchmark helper: nothing is asserted.
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import sklearn
from sklearn.cluster import DBSCAN
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from sklearn.neighbors import NearestNeighbors
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_info

STRAIGHT = 1e-9  # knee.rs: normalized chord distances at or below this are a straight line


def knee(curve):
    """knee.rs's `knee`: (index, value) of an ascending curve, or None."""
    n = len(curve)
    if n == 0 or not np.all(np.isfinite(curve)) or np.any(np.diff(curve) < 0):
        return None
    fallback = ((n - 1) // 2, float(curve[(n - 1) // 2]))
    first, last = float(curve[0]), float(curve[-1])
    rise = last - first
    if n < 3 or rise <= 0.0:
        return fallback
    gap = np.abs(np.arange(n) / (n - 1) - (curve - first) / rise)
    i = int(np.argmax(gap))  # the first of equal maxima, as knee.rs's strict `>`
    if gap[i] <= STRAIGHT:
        return fallback
    return i, float(curve[i])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--input", required=True)
    p.add_argument("--perplexity", type=float, default=30.0)
    p.add_argument("--iterations", type=int, default=1000)
    p.add_argument("--theta", type=float, default=0.5)
    p.add_argument("--min-samples", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--variance", type=float, default=0.95)
    p.add_argument("--max-components", type=int, default=50)
    p.add_argument("--labels-out")
    a = p.parse_args()

    x = np.load(a.input)
    if x.ndim != 2 or x.dtype != np.float32:
        sys.exit(f"error: {a.input}: want a 2-D float32 array, got {x.dtype} {x.shape}")
    n, d = x.shape

    total = time.perf_counter()

    t = time.perf_counter()
    z = StandardScaler().fit_transform(x.astype(np.float64))
    standardize_s = time.perf_counter() - t

    t = time.perf_counter()
    pca = PCA(n_components=a.variance, svd_solver="full").fit(z)
    k = max(min(pca.n_components_, a.max_components), min(2, d))
    pca_k = pca.transform(z)[:, :k] if k <= pca.n_components_ else None
    if pca_k is None:  # the ratio kept fewer than 2: refit with 2, as defectkit's floor
        pca = PCA(n_components=k, svd_solver="full").fit(z)
        pca_k = pca.transform(z)
    explained = float(pca.explained_variance_ratio_[:k].sum())
    pca_s = time.perf_counter() - t

    t = time.perf_counter()
    tsne = TSNE(
        n_components=2,
        perplexity=a.perplexity,
        max_iter=a.iterations,
        angle=a.theta,
        init="random",
        method="barnes_hut",
        random_state=a.seed,
        n_jobs=None,
    )
    y = tsne.fit_transform(pca_k)
    tsne_s = time.perf_counter() - t

    t = time.perf_counter()
    dist = NearestNeighbors(n_neighbors=a.min_samples).fit(y).kneighbors(y)[0]
    curve = np.sort(dist[:, a.min_samples - 1])
    found = knee(curve)
    if found is None:
        sys.exit("error: no k-distance knee")
    knee_index, knee_eps = found
    eps = knee_eps
    if eps <= 0.0:  # as bench_cluster: first positive k-distance past the knee
        positive = curve[knee_index:][curve[knee_index:] > 0]
        eps = float(positive[0]) if len(positive) else 1e-12
    kdistance_s = time.perf_counter() - t
    t = time.perf_counter()
    labels = DBSCAN(eps=eps, min_samples=a.min_samples).fit(y).labels_
    dbscan_only_s = time.perf_counter() - t

    total_s = time.perf_counter() - total
    if a.labels_out:
        np.savetxt(a.labels_out, labels, fmt="%d")

    line = {
        "framework": "sklearn",
        "version": sklearn.__version__,
        "numpy": np.__version__,
        "input": a.input,
        "rows": n,
        "dims": d,
        "pca_components": int(k),
        "pca_variance": explained,
        "perplexity": a.perplexity,
        "iterations": a.iterations,
        "theta": a.theta,
        "min_samples": a.min_samples,
        "knee_index": knee_index,
        "knee_eps": knee_eps,
        "eps": eps,
        "eps_rule": "knee" if knee_eps > 0 else "knee was 0: first positive k-distance past it (1e-12 if none)",
        "tsne_distinct_points": int(len(np.unique(y, axis=0))),
        "tsne_max_abs": float(np.abs(y).max()),
        "tsne_kl_divergence": float(tsne.kl_divergence_),
        "clusters": int(labels.max() + 1) if labels.size else 0,
        "noise": int((labels < 0).sum()),
        "seconds": {
            "standardize": standardize_s,
            "pca": pca_s,
            "tsne": tsne_s,
            "dbscan": kdistance_s + dbscan_only_s,
            "kdistance_knee": kdistance_s,
            "dbscan_only": dbscan_only_s,
        },
        "total_s": total_s,
        "threads": {
            "cores": os.cpu_count(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "pools": [
                {k: i.get(k) for k in ("user_api", "internal_api", "prefix", "num_threads")}
                for i in threadpool_info()
            ],
        },
    }
    print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
