"""scikit-learn as the oracle for defectkit_deploy::cluster::{dbscan, knee, agreement}, run by
crates/defectkit-deploy/tests/cluster_peer.rs in the project venv.

  cluster_peer.py CASES.json
      CASES.json is {dbscan, kdist, agreement}:
        dbscan     list of {name, rows (N×d), eps, min_samples}
        kdist      list of {name, rows (N×d), ks (list of k)}
        agreement  list of {name, a, b} (integer labels; −1 in a is DBSCAN's noise)
      Prints a JSON object with, in the same order:
        dbscan     per case {name, labels: DBSCAN(eps=, min_samples=).fit(X).labels_}
                   (defaults otherwise: Euclidean, algorithm="auto")
        kdist      per case {name, k_distances: {str(k): sorted(NearestNeighbors(
                   n_neighbors=k).fit(X).kneighbors(X)[0][:, k - 1])}} (queried with X
                   itself, so each point is its own first neighbour)
        agreement  per case {name, ari: adjusted_rand_score(a, b),
                   nmi: normalized_mutual_info_score(a, b)} (average_method="arithmetic")
"""
import json
import sys
import warnings

import numpy as np
from sklearn.cluster import DBSCAN
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.neighbors import NearestNeighbors


def rows(case):
    x = np.asarray(case["rows"], dtype=np.float64)
    assert x.ndim == 2, case["name"]
    return x


def dbscan(case):
    x = rows(case)
    labels = DBSCAN(eps=case["eps"], min_samples=case["min_samples"]).fit(x).labels_
    return {"name": case["name"], "labels": [int(v) for v in labels]}


def kdist(case):
    x = rows(case)
    out = {}
    for k in case["ks"]:
        dist, _ = NearestNeighbors(n_neighbors=k).fit(x).kneighbors(x)
        out[str(k)] = np.sort(dist[:, k - 1]).tolist()
    return {"name": case["name"], "k_distances": out}


def agreement(case):
    a = np.asarray(case["a"], dtype=np.int64)
    b = np.asarray(case["b"], dtype=np.int64)
    return {
        "name": case["name"],
        "ari": float(adjusted_rand_score(a, b)),
        "nmi": float(normalized_mutual_info_score(a, b, average_method="arithmetic")),
    }


def main():
    with open(sys.argv[1]) as f:
        cases = json.load(f)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning here is a bug in the cases
        out = {
            "dbscan": [dbscan(c) for c in cases["dbscan"]],
            "kdist": [kdist(c) for c in cases["kdist"]],
            "agreement": [agreement(c) for c in cases["agreement"]],
        }
    json.dump(out, sys.stdout, allow_nan=False)


if __name__ == "__main__":
    main()
