#!/usr/bin/env bash
# `cluster` chain benchmark: standardize + PCA + t-SNE + k-distance knee + DBSCAN, stage by
# stage, defectkit (the Cargo example `bench_cluster`) vs scikit-learn
# (bench/peers/sklearn_cluster.py), on the same data in the same run.
#
# MVTec AD is not available here: the data are seeded synthetic embeddings, ROWS rows (1725,
# the size of MVTec AD's test split) in CLASSES Gaussian classes (uneven sizes), each a
# class mean + a 6-D latent factor + isotropic noise, with ~2 % of each class pushed away as
# outliers, written once per dimension as float32 .npy files that both sides read. For each
# of DIMS, both sides run REPEATS times, interleaved (defectkit, sklearn, defectkit,
# sklearn), each under bench/score/measure.py (wall, CPU time, peak RSS); the table reports,
# per side, the run with the smaller total (its own stage times). With CONTROL=1 (default)
# a control set joins them: ROWS rows of one isotropic 20-D Gaussian (no classes, no
# outliers), where no t-SNE map should have points on top of each other. Writes
# bench/results/cluster.md atomically (temp file + mv). A benchmark, not a test: nothing is
# asserted.
#
#   bash bench/cluster/run.sh
#
# Environment (all optional):
#   DIMS="128 512"  ROWS=1725  CLASSES=10  SEED=0  REPEATS=2  CONTROL=1
#   PERPLEXITY=30  ITERATIONS=1000  MIN_SAMPLES=5
#   PYTHON=.venv/bin/python   (with scikit-learn; the project venv)
#   CARGO_TARGET_DIR=$HOME/.cache/defectkit/target   (scripts/env.sh)
#   OUT=bench/results/cluster.md
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$(pwd)
CMD="bash bench/cluster/run.sh${*:+ $*}"
for v in DIMS ROWS CLASSES SEED REPEATS CONTROL PERPLEXITY ITERATIONS MIN_SAMPLES PYTHON OUT; do
    if [ -n "${!v:-}" ]; then CMD="$v=\"${!v}\" $CMD"; fi
done

DIMS=${DIMS:-128 512}
ROWS=${ROWS:-1725}
CLASSES=${CLASSES:-10}
SEED=${SEED:-0}
REPEATS=${REPEATS:-2}
CONTROL=${CONTROL:-1}
PERPLEXITY=${PERPLEXITY:-30}
ITERATIONS=${ITERATIONS:-1000}
MIN_SAMPLES=${MIN_SAMPLES:-5}
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
OUT=${OUT:-$ROOT/bench/results/cluster.md}
source scripts/env.sh

if ! "$PYTHON" -c 'import sklearn, numpy, threadpoolctl' 2>/dev/null; then
    echo "error: $PYTHON cannot import scikit-learn, numpy and threadpoolctl (the project" \
         "venv has them; set PYTHON)" >&2
    exit 1
fi

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
DATE=$(date -u +"%Y-%m-%d %H:%M UTC")
TMP=$(mktemp -d)
trap 'rm -rf "$TMP" "$OUT.tmp"' EXIT

# 1. The example.
echo "== building bench_cluster (release) ==" >&2
cargo build --release --example bench_cluster >&2
EXAMPLE="$CARGO_TARGET_DIR/release/examples/bench_cluster"

# 2. The data: one float32 .npy per dimension (and the class of every row, for the report).
# Set names: d<dims> for the class data, ctl for the control.
SETS=""
for d in $DIMS; do SETS="$SETS d$d"; done
[ "$CONTROL" = 1 ] && SETS="$SETS ctl"
"$PYTHON" - "$TMP" "$ROWS" "$CLASSES" "$SEED" "$CONTROL" $DIMS <<'EOF'
import sys
import numpy as np

tmp, n, classes, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
if sys.argv[5] == "1":  # the control: one isotropic Gaussian
    rng = np.random.default_rng([seed, 0])
    np.save(f"{tmp}/emb_ctl.npy", rng.normal(0.0, 1.0, (n, 20)).astype(np.float32))
    np.save(f"{tmp}/class_ctl.npy", np.zeros(n, dtype=int))
rank = 6  # latent factors per class
for d in map(int, sys.argv[6:]):
    rng = np.random.default_rng([seed, d])
    w = np.linspace(0.6, 1.4, classes)  # uneven class sizes, as MVTec's
    sizes = np.floor(n * w / w.sum()).astype(int)
    sizes[: n - sizes.sum()] += 1
    xs, ys = [], []
    for c, m in enumerate(sizes):
        mean = rng.normal(0.0, 1.0, d)
        factors = rng.normal(0.0, 0.6 / np.sqrt(rank), (d, rank))
        x = mean + rng.normal(0.0, 1.0, (m, rank)) @ factors.T + rng.normal(0.0, 0.15, (m, d))
        out = rng.choice(m, max(1, round(0.02 * m)), replace=False)  # ~2 % outliers
        x[out] += rng.normal(0.0, 0.8, (len(out), d))
        xs.append(x)
        ys.append(np.full(m, c))
    order = rng.permutation(n)
    np.save(f"{tmp}/emb_d{d}.npy", np.concatenate(xs).astype(np.float32)[order])
    np.save(f"{tmp}/class_d{d}.npy", np.concatenate(ys)[order])
EOF

# 3. Both sides, interleaved.
RAW="$TMP/raw.jsonl"
ARGS=(--perplexity "$PERPLEXITY" --iterations "$ITERATIONS" --min-samples "$MIN_SAMPLES"
      --seed "$SEED")
STAT_START=$(head -1 /proc/stat)
T_START=$(date +%s.%N)
for set in $SETS; do
    for r in $(seq 1 "$REPEATS"); do
        for side in defectkit sklearn; do
            echo "== $set run $r: $side ==" >&2
            echo "{\"load1\": $(cut -d' ' -f1 /proc/loadavg), \"set\": \"$set\", \"side\": \"$side\"}" >>"$RAW"
            if [ "$side" = defectkit ]; then
                run=("$EXAMPLE")
            else
                run=("$PYTHON" bench/peers/sklearn_cluster.py)
            fi
            python3 bench/score/measure.py --label "$side $set r$r" -- "${run[@]}" \
                --input "$TMP/emb_$set.npy" "${ARGS[@]}" \
                --labels-out "$TMP/labels_${side}_${set}_r$r.txt" >>"$RAW"
        done
    done
done
STAT_END=$(head -1 /proc/stat)
T_END=$(date +%s.%N)
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# 4. The results.
mkdir -p "$(dirname "$OUT")"
RAW="$RAW" TMP="$TMP" DATE="$DATE" CMD="$CMD" LOAD_START="$LOAD_START" LOAD_END="$LOAD_END" \
NPROC=$(nproc) CPU_MODEL=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') \
ROWS="$ROWS" CLASSES="$CLASSES" SEED="$SEED" REPEATS="$REPEATS" CLK_TCK=$(getconf CLK_TCK) \
STAT_START="$STAT_START" STAT_END="$STAT_END" T_START="$T_START" T_END="$T_END" \
RUSTC="$(rustc --version)" \
"$PYTHON" - >"$OUT.tmp" <<'EOF'
import json, os
import numpy as np
from sklearn.metrics import adjusted_rand_score

env = os.environ
nproc = int(env["NPROC"])
lines = [json.loads(l) for l in open(env["RAW"]) if l.strip()]
runs = []
load = None
for l in lines:
    if "load1" in l:
        load = l["load1"]
        continue
    if l["rc"] != 0:
        raise SystemExit(f"{l['label']} failed (exit {l['rc']}): {' '.join(l['argv'])}")
    side, name, r = l["label"].split()
    j = json.loads(l["stdout"].splitlines()[-1])
    labels = np.loadtxt(f"{env['TMP']}/labels_{side}_{name}_{r}.txt", dtype=int)
    truth = np.load(f"{env['TMP']}/class_{name}.npy")
    runs.append(dict(side=side, set=name, rep=int(r[1:]), j=j, m=l, load1=load,
                     ari=adjusted_rand_score(truth, labels) if name != "ctl" else None,
                     cpu=l["user_s"] + l["sys_s"]))
sets = list(dict.fromkeys(r["set"] for r in runs))  # run order: d128, d512, ctl
main = [s for s in sets if s != "ctl"]
best = {}
for r in runs:
    key = (r["side"], r["set"])
    if key not in best or r["j"]["total_s"] < best[key]["j"]["total_s"]:
        best[key] = r
J = lambda side, s: best[(side, s)]["j"]


def title(s):
    return "20 (control)" if s == "ctl" else s[1:]


def busy_jiffies(line):
    v = [int(x) for x in line.split()[1:]]
    return sum(v[:8]) - v[3] - v[4]  # user nice system idle iowait irq softirq steal


span = float(env["T_END"]) - float(env["T_START"])
machine_cpu = (busy_jiffies(env["STAT_END"]) - busy_jiffies(env["STAT_START"])) / int(env["CLK_TCK"])
own_cpu = sum(r["cpu"] for r in runs)
other_share = max(0.0, machine_cpu - own_cpu) / (span * nproc)

stages = [("standardize", "standardize (fit + transform)"),
          ("pca", "PCA (95 % variance, ≤ 50 components)"),
          ("tsne", "t-SNE (Barnes-Hut, 1000 iterations)"),
          ("dbscan", "k-distance + knee + DBSCAN")]
n_rows = J("defectkit", sets[0])["rows"]

print("# `cluster` chain: defectkit vs scikit-learn\n")
print(
    "Standardize → PCA → 2-D t-SNE → eps from the k-distance knee → DBSCAN, the chain of\n"
    "`defectkit cluster` (`crates/defectkit-deploy/src/cluster/analysis.rs`), timed stage by\n"
    "stage in defectkit (the Cargo example `bench_cluster`) and in scikit-learn\n"
    "(`bench/peers/sklearn_cluster.py`) on the same rows in the same run\n"
    "(`bench/cluster/run.sh`). Both fit the standardizer and the PCA on all the clustered rows.\n"
)
print(
    f"**Data: synthetic, not MVTec AD** (not available here): {n_rows} rows (the size of\n"
    f"MVTec AD's test split) in {env['CLASSES']} classes of uneven size, each a Gaussian class\n"
    "mean + a 6-D latent factor + isotropic noise, about 2 % of each class pushed away as\n"
    f"outliers; numpy `default_rng([{env['SEED']}, d])`, one float32 .npy per dimension d, read\n"
    "by both sides."
    + (f" The control (dims \"20 (control)\"): {n_rows} rows of one isotropic 20-D Gaussian, no\n"
       "classes and no outliers." if "ctl" in sets else "") + "\n"
)
print(f"Seconds: per side and data set, the better (smaller total) of {env['REPEATS']} runs,"
      " with that run's own stage times. Ratio = sklearn / defectkit (> 1: defectkit faster).\n")
print("| dims | stage | defectkit s | sklearn s | sklearn / defectkit |")
print("| --- | --- | --- | --- | --- |")
for s in sets:
    a, b = J("defectkit", s), J("sklearn", s)
    for key, name in stages:
        x, y = a["seconds"][key], b["seconds"][key]
        print(f"| {title(s)} | {name} | {x:.3f} | {y:.3f} | {y / x:.1f}× |")
    print(f"| {title(s)} | **total** | **{a['total_s']:.3f}** | **{b['total_s']:.3f}** |"
          f" **{b['total_s'] / a['total_s']:.1f}×** |")
print()
print("Every run's total (s): " + "; ".join(
    f"{title(s)} {side} " + ", ".join(f"{r['j']['total_s']:.2f}" for r in runs
                                     if r["set"] == s and r["side"] == side)
    for s in sets for side in ("defectkit", "sklearn")) + ".\n")

print("## What each side produced (the runs above)\n")
print("| dims | side | PCA k (variance) | t-SNE distinct points | map max \\|y\\| | eps (rule) |"
      " clusters | noise | ARI vs class | CPU util. |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for s in sets:
    for side in ("defectkit", "sklearn"):
        r = best[(side, s)]
        j = r["j"]
        rule = "knee" if j["eps_rule"] == "knee" else "fallback: knee was 0"
        util = r["cpu"] / r["m"]["wall_s"] / nproc
        ari = "–" if r["ari"] is None else f"{r['ari']:.3f}"
        print(f"| {title(s)} | {side} | {j['pca_components']} ({j['pca_variance']:.3f}) |"
              f" {j['tsne_distinct_points']} of {j['rows']} | {j['tsne_max_abs']:.1f} |"
              f" {j['eps']:.3g} ({rule}) | {j['clusters']} | {j['noise']} | {ari} |"
              f" {100 * util:.0f} % of {nproc} cores |")
print()
print("ARI: adjusted Rand index of the DBSCAN labels (noise one label) against the generating"
      " class (it scores class agreement, not whether the outliers came out as noise). CPU"
      " util.: the process's user + sys time / wall time / cores (whole process, including"
      " start-up and reading the file).\n")

# The reading, from the numbers.
parts = []
ratio = lambda s, key=None: (J("sklearn", s)["total_s"] / J("defectkit", s)["total_s"] if key is None
                             else J("sklearn", s)["seconds"][key] / J("defectkit", s)["seconds"][key])
parts.append("On the class data the defectkit chain ran " + ", ".join(
    f"{ratio(s):.1f}× {'faster' if ratio(s) >= 1 else 'slower'} than scikit-learn's at d = {s[1:]}"
    f" ({J('defectkit', s)['total_s']:.2f} s vs {J('sklearn', s)['total_s']:.2f} s)"
    for s in main) + "; t-SNE is " + ", ".join(
    f"{100 * J(side, s)['seconds']['tsne'] / J(side, s)['total_s']:.0f} %"
    for s in main for side in ("defectkit", "sklearn")) + " of the totals (" + ", ".join(
    f"d = {s[1:]} defectkit, sklearn" for s in main) + ").")
collapsed = [s for s in main if J("defectkit", s)["tsne_distinct_points"] < J("defectkit", s)["rows"]]
if collapsed:
    parts.append(
        "**But the t-SNE numbers are not like for like: defectkit's maps collapse.** At " + "; at ".join(
            f"d = {s[1:]} its map has {J('defectkit', s)['tsne_distinct_points']} distinct"
            f" points for {J('defectkit', s)['rows']} rows (sklearn's:"
            f" {J('sklearn', s)['tsne_distinct_points']}), within ±{J('defectkit', s)['tsne_max_abs']:.0f}"
            f" against sklearn's ±{J('sklearn', s)['tsne_max_abs']:.0f}" for s in collapsed) +
        ": whole classes land bit for bit on one spot, and DBSCAN's noise, which `cluster`"
        " reads as candidate anomalies, stops meaning what it should (" + ", ".join(
            f"d = {s[1:]}: noise {J('defectkit', s)['noise']} vs sklearn's {J('sklearn', s)['noise']}"
            for s in collapsed) + "; the data have about 2 % outliers, "
        f"{round(0.02 * n_rows)})."
        " bhtsne 0.7.13 does this on its own: called directly (its `barnes_hut` with its own"
        " neighbour search and random init) on the same PCA output it gave the same"
        " distinct-point counts, theta 0 (exact repulsion) collapses the same way, and the"
        " classes have already collapsed after the 250 early-exaggeration iterations (checked"
        " when this benchmark was written, not in this run); coincident points get identical"
        " gradients (the Barnes-Hut tree skips zero-distance leaves), so they never separate."
        " The k-distance knee is then 0, where `defectkit cluster` skips the t-SNE space with a"
        " warning; here eps falls back to the first positive k-distance past the knee (1e-12"
        " if none) so that DBSCAN is still timed, on the collapsed map."
    )
    if "ctl" in sets:
        c = "ctl"
        dk, sk = J("defectkit", c), J("sklearn", c)
        parts.append(
            f"The control, where nothing collapses ({dk['tsne_distinct_points']} distinct points"
            f" of {dk['rows']}), gives the fairer t-SNE ratio: {ratio(c, 'tsne'):.1f}×"
            f" ({dk['seconds']['tsne']:.2f} s vs {sk['seconds']['tsne']:.2f} s), so about"
            f" {ratio(collapsed[0], 'tsne') / ratio(c, 'tsne'):.1f}× of the class-data t-SNE"
            " ratio comes from the collapsed maps being cheap to optimise. Even there defectkit's"
            f" map spans ±{dk['tsne_max_abs']:.0f} against sklearn's ±{sk['tsne_max_abs']:.0f}:"
            " its optimisation does not spread the points the way sklearn's does."
        )
parts.append(
    "Threads: defectkit's t-SNE optimisation runs on a one-thread rayon pool (a choice made"
    " for bit-for-bit determinism: bhtsne's parallel sums would otherwise be reduced in"
    " schedule order); its exact neighbour search, the k-distances and DBSCAN's core counts use"
    f" rayon's global pool (all {nproc} cores). sklearn's Barnes-Hut gradient uses OpenMP"
    f" threads (libgomp, {nproc} here; `n_jobs=None` only affects its neighbour search) and its"
    " SVD OpenBLAS threads, hence its higher CPU use. Both DBSCANs are cheap at this size:"
    " defectkit's is brute force (O(N²) distance evaluations, recomputed while growing"
    " clusters), sklearn's uses a tree for the radius queries; neither matters next to t-SNE at"
    " 1.7k rows, but defectkit's grows quadratically with N. PCA is one full SVD on both sides"
    " (faer vs LAPACK); the standardize stage includes the f32 → f64 cast on both."
)
if other_share > 0.10:
    parts.append(
        f"**Busy machine**: other processes used {100 * other_share:.0f} % of the {nproc} cores"
        " during the run, so absolute numbers are depressed and noisy; sklearn's OpenMP threads"
        " suffer more from that than a single-threaded optimisation. Re-run on an idle machine."
    )
print("## Reading\n")
print(" ".join(parts))
print()

sk = J("sklearn", sets[0])
dk = J("defectkit", sets[0])
pools = ", ".join(f"{p['internal_api']} ({p['prefix']}) {p['num_threads']} threads"
                  for p in sk["threads"]["pools"])
print("## Machine and run\n")
print(f"- command: `{env['CMD']}`")
print(f"- date: {env['DATE']}")
print(f"- CPU: {env['CPU_MODEL']}, nproc {nproc}")
print(f"- load average (1/5/15 min) at start: {env['LOAD_START']}; at end: {env['LOAD_END']};"
      " 1-min load before each run: " + ", ".join(f"{r['m']['label']} {r['load1']}" for r in runs))
print(f"- CPU time of other processes during the timed part: {max(0.0, machine_cpu - own_cpu):.1f} s"
      f" of {span * nproc:.0f} core-seconds ({100 * other_share:.1f} %)")
print(f"- defectkit {dk['version']} (release build, {env['RUSTC']}); t-SNE: bhtsne 0.7.13,"
      f" theta {dk['theta']}, perplexity {dk['perplexity']}, {dk['iterations']} iterations, seed 0;"
      f" DBSCAN min_samples {dk['min_samples']}")
print(f"- scikit-learn {sk['version']}, numpy {sk['numpy']}; TSNE(perplexity={sk['perplexity']:g},"
      f" max_iter={sk['iterations']}, angle={sk['theta']}, init=\"random\", method=\"barnes_hut\","
      " random_state=0, n_jobs=None, learning_rate=\"auto\"); PCA(n_components=0.95,"
      " svd_solver=\"full\") capped at 50; NearestNeighbors k-distances; DBSCAN(eps,"
      f" min_samples={sk['min_samples']}); OMP_NUM_THREADS={sk['threads']['OMP_NUM_THREADS']};"
      f" thread pools: {pools}")
print("\n<details><summary>raw JSON lines</summary>\n\n```json")
for l in lines:
    print(json.dumps(l, ensure_ascii=False))
print("```\n</details>")
EOF
mv "$OUT.tmp" "$OUT"
echo "wrote $OUT" >&2
cat "$OUT"
