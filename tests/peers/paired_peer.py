"""Peer for crates/defectkit-deploy/tests/paired_peer.rs: SciPy's Student t (ppf, cdf) and
paired t-test (ttest_rel) on the cases the Rust test sends as JSON on stdin."""
import json
import sys

import numpy as np
from scipy import stats

cases = json.load(sys.stdin)
out = []
for c in cases:
    a, b, conf = np.array(c["a"]), np.array(c["b"]), c["confidence"]
    d = a - b
    n = len(d)
    res = stats.ttest_rel(a, b)
    se = d.std(ddof=1) / np.sqrt(n)
    q = stats.t.ppf(0.5 + conf / 2, n - 1)
    out.append({
        "mean": float(d.mean()),
        "sd": float(d.std(ddof=1)),
        "t": float(res.statistic),
        "p": float(res.pvalue),
        "low": float(d.mean() - q * se),
        "high": float(d.mean() + q * se),
        "q": float(q),
        "cdf": float(stats.t.cdf(c["t_at"], n - 1)),
    })
json.dump(out, sys.stdout)
