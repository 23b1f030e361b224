"""scikit-learn as the oracle for defectkit_deploy::stats::pca (Standardizer, Pca) and
cluster::tsne, run by crates/defectkit-deploy/tests/pca_tsne_peer.rs in the project venv.

  pca_peer.py CASES.json
      CASES.json is {pca: [...], tsne: [...]}; rows are the exact values the Rust side used
      (f32 rows written as f64), read back as float64. Prints JSON {pca: [...], tsne: [...]}:
      per pca case {name, fit (N×d), queries (M×d), ratios (list of r in (0, 1))}:
        scaler      StandardScaler().fit(fit): {mean (mean_), scale (scale_),
                    transform (of queries)}
        pca         PCA(svd_solver="full").fit(fit) (all min(N, d) components):
                    {mean, components, explained_variance, explained_variance_ratio,
                    singular_values, transform (of queries)}
        by_ratio    {str(r): PCA(n_components=r, svd_solver="full").fit(fit).n_components_}
      per tsne case {name, x (N×d), embedding (N×2, ours), n_neighbors, perplexity, seed}:
        trustworthiness          sklearn.manifold.trustworthiness(x, embedding, n_neighbors)
        sklearn_trustworthiness  the same for sklearn's own TSNE(perplexity, random_state=seed,
                                 method="barnes_hut", init="random") of x, for reference
"""
import json
import sys
import warnings

import numpy as np
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE, trustworthiness
from sklearn.preprocessing import StandardScaler


def run_pca(case):
    x = np.asarray(case["fit"], dtype=np.float64)
    z = np.asarray(case["queries"], dtype=np.float64)
    scaler = StandardScaler().fit(x)
    pca = PCA(svd_solver="full").fit(x)
    return {
        "name": case["name"],
        "scaler": {
            "mean": scaler.mean_.tolist(),
            "scale": scaler.scale_.tolist(),
            "transform": scaler.transform(z).tolist(),
        },
        "pca": {
            "mean": pca.mean_.tolist(),
            "components": pca.components_.tolist(),
            "explained_variance": pca.explained_variance_.tolist(),
            "explained_variance_ratio": pca.explained_variance_ratio_.tolist(),
            "singular_values": pca.singular_values_.tolist(),
            "transform": pca.transform(z).tolist(),
        },
        "by_ratio": {
            str(r): int(PCA(n_components=r, svd_solver="full").fit(x).n_components_)
            for r in case["ratios"]
        },
    }


def run_tsne(case):
    x = np.asarray(case["x"], dtype=np.float64)
    y = np.asarray(case["embedding"], dtype=np.float64)
    k = case["n_neighbors"]
    theirs = TSNE(
        n_components=2,
        perplexity=case["perplexity"],
        method="barnes_hut",
        init="random",
        random_state=case["seed"],
    ).fit_transform(x)
    return {
        "name": case["name"],
        "trustworthiness": float(trustworthiness(x, y, n_neighbors=k)),
        "sklearn_trustworthiness": float(trustworthiness(x, theirs, n_neighbors=k)),
    }


def main():
    with open(sys.argv[1]) as f:
        cases = json.load(f)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a degenerate estimate here is a bug in the cases
        out = {
            "pca": [run_pca(c) for c in cases["pca"]],
            "tsne": [run_tsne(c) for c in cases["tsne"]],
        }
        json.dump(out, sys.stdout, allow_nan=False)


if __name__ == "__main__":
    main()
