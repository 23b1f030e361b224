"""scikit-learn / SciPy / NumPy as the oracle for defectkit_deploy::stats and the embedding
detectors (anomaly::{mahalanobis, euclidean, knn}), run by
crates/defectkit-deploy/tests/stats_peer.rs in the project venv.

  stats_peer.py CASES.json
      CASES.json is a list of {name, fit (N×d rows), queries (M×d rows), fixed (list of δ),
      ks (list of k)}; the rows are the f32 values the Rust side uses, written as f64 and
      read back as float64 here. Prints a JSON list with, per case:
        mean            X.mean(axis=0)
        unbiased        np.cov(X, rowvar=False) (d×d, also for d = 1)
        unbiased_rank   np.linalg.matrix_rank of it (< d: singular, Rust must refuse it)
        fixed           per δ: {delta, covariance: (1−δ)S + δ·(tr S/d)·I of the unbiased S,
                        rank, inverse: inv(covariance) and mahalanobis: per query
                        scipy.spatial.distance.mahalanobis(z, mean, inverse) — both null when
                        rank < d}
        ledoit_wolf     sklearn.covariance.LedoitWolf().fit(X): {covariance (covariance_),
                        shrinkage (shrinkage_), location (location_), inverse, mahalanobis}
        euclidean       np.linalg.norm(Z − mean, axis=1)
        knn             {str(k): NearestNeighbors(n_neighbors=k).fit(X).kneighbors(Z)[0]
                        .mean(axis=1)}
"""
import json
import sys
import warnings

import numpy as np
from scipy.spatial.distance import mahalanobis
from sklearn.covariance import LedoitWolf
from sklearn.neighbors import NearestNeighbors


def with_inverse(cov, mean, z):
    """{rank, inverse, mahalanobis} of a covariance; inverse and distances null if singular."""
    d = cov.shape[0]
    rank = int(np.linalg.matrix_rank(cov))
    if rank < d:
        return {"rank": rank, "inverse": None, "mahalanobis": None}
    vi = np.linalg.inv(cov)
    return {
        "rank": rank,
        "inverse": vi.tolist(),
        "mahalanobis": [float(mahalanobis(row, mean, vi)) for row in z],
    }


def run(case):
    x = np.asarray(case["fit"], dtype=np.float64)
    z = np.asarray(case["queries"], dtype=np.float64)
    n, d = x.shape
    mean = x.mean(axis=0)
    s = np.atleast_2d(np.cov(x, rowvar=False))
    out = {
        "name": case["name"],
        "mean": mean.tolist(),
        "unbiased": s.tolist(),
        "unbiased_rank": int(np.linalg.matrix_rank(s)),
        "fixed": [],
    }
    mu = np.trace(s) / d
    for delta in case["fixed"]:
        cov = (1.0 - delta) * s + delta * mu * np.eye(d)
        entry = {"delta": delta, "covariance": cov.tolist()}
        entry.update(with_inverse(cov, mean, z))
        out["fixed"].append(entry)

    lw = LedoitWolf().fit(x)
    entry = {
        "covariance": lw.covariance_.tolist(),
        "shrinkage": float(lw.shrinkage_),
        "location": lw.location_.tolist(),
    }
    entry.update(with_inverse(lw.covariance_, lw.location_, z))
    out["ledoit_wolf"] = entry

    out["euclidean"] = np.linalg.norm(z - mean, axis=1).tolist()
    out["knn"] = {}
    for k in case["ks"]:
        dist, _ = NearestNeighbors(n_neighbors=k).fit(x).kneighbors(z)
        out["knn"][str(k)] = dist.mean(axis=1).tolist()
    return out


def main():
    with open(sys.argv[1]) as f:
        cases = json.load(f)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a degenerate estimate here is a bug in the cases
        json.dump([run(c) for c in cases], sys.stdout, allow_nan=False)


if __name__ == "__main__":
    main()
