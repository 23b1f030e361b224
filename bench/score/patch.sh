#!/usr/bin/env bash
# Patch-level vs pooled-embedding scoring on the same model: `defectkit score` img/s and
# peak RSS with the pooled Mahalanobis detector, PaDiM and PatchCore (every class's detector
# loaded: the ten synthetic categories), interleaved in one run (pooled, padim, patchcore,
# repeated ROUNDS times), plus each detector's size on disk and in memory. Writes
# bench/results/score_patch.md (atomically). A benchmark, not a test: nothing is asserted.
#
#   bash bench/score/patch.sh
#
# Needs scripts/run.sh's exports (embeddings with --maps). Environment (all optional):
#   MODEL_DIR=exports/main/b   (model.onnx + embeddings.h5 embedded with --maps)
#   IMAGES=1000                images per scored folder (symlinks to the test images, cycling)
#   ROUNDS=2                   interleaved rounds
#   BATCH=32                   images per inference batch
#   THREADS=                   ONNX Runtime intra-op threads; empty = ORT's default
#   OUT=bench/results/score_patch.md
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
CMD="bash bench/score/patch.sh"
for v in MODEL_DIR IMAGES ROUNDS BATCH THREADS OUT; do
    if [ -n "${!v:-}" ]; then CMD="$v=\"${!v}\" $CMD"; fi
done
MODEL_DIR=${MODEL_DIR:-exports/main/b}
IMAGES=${IMAGES:-1000}
ROUNDS=${ROUNDS:-2}
BATCH=${BATCH:-32}
THREADS=${THREADS:-}
OUT=${OUT:-$ROOT/bench/results/score_patch.md}
source scripts/env.sh
BIN=$DEFECTKIT_BIN
[ -x "$BIN" ] || { echo "error: no binary at $BIN: cargo build --release" >&2; exit 1; }
for f in "$MODEL_DIR/model.onnx" "$MODEL_DIR/embeddings.h5"; do
    [ -f "$f" ] || { echo "error: $f not found: run scripts/run.sh first" >&2; exit 1; }
done

TMP=$(mktemp -d)
trap 'rm -rf "$TMP" "$OUT.tmp"' EXIT
DATE=$(date -u +"%Y-%m-%d %H:%M UTC")
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# 1. The three detectors, fitted on the same embeddings file.
for m in mahalanobis padim patchcore; do
    echo "== detect $m ==" >&2
    "$BIN" detect "$MODEL_DIR/embeddings.h5" detector=$m --no-plots --out "$TMP/det/$m" \
        >"$TMP/detect-$m.txt"
done

# 2. The scored folder.
mapfile -t SOURCES < <(find data/synthetic -path '*/test/*' -type f -name '*.png' | sort)
[ "${#SOURCES[@]}" -gt 0 ] || { echo "error: no data/synthetic/*/test images" >&2; exit 1; }
python3 - "$TMP/images" "$IMAGES" "${SOURCES[@]}" <<'EOF'
import os, sys
out, n, sources = sys.argv[1], int(sys.argv[2]), [os.path.abspath(s) for s in sys.argv[3:]]
for i in range(n):
    sub = os.path.join(out, f"{i // 500:03d}")
    os.makedirs(sub, exist_ok=True)
    os.symlink(sources[i % len(sources)], os.path.join(sub, f"{i:05d}.png"))
EOF
cat "${SOURCES[@]}" >/dev/null

# 3. Interleaved score runs.
THREAD_ARGS=()
[ -n "$THREADS" ] && THREAD_ARGS=(--threads "$THREADS")
RAW="$TMP/raw.jsonl"
for r in $(seq 1 "$ROUNDS"); do
    for m in mahalanobis padim patchcore; do
        echo "== round $r: score with $m ==" >&2
        python3 bench/score/measure.py --label "$m" -- "$BIN" score "$TMP/images" \
            --model "$MODEL_DIR/model.onnx" --detector "$TMP/det/$m/detector.json" \
            --out "$TMP/scores-$m.csv" --batch-size "$BATCH" "${THREAD_ARGS[@]}" >>"$RAW"
    done
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
for m in mahalanobis padim patchcore; do
    echo "{\"sizes\": \"$m\", \"h5\": $(stat -c %s "$TMP/det/$m/detector.h5"), \"rows\": $(($(wc -l <"$TMP/scores-$m.csv") - 1))}" >>"$RAW"
done

# 4. The table.
mkdir -p "$(dirname "$OUT")"
RAW="$RAW" TMP="$TMP" DATE="$DATE" CMD="$CMD" IMAGES="$IMAGES" BATCH="$BATCH" THREADS="$THREADS" \
MODEL_DIR="$MODEL_DIR" LOAD_START="$LOAD_START" LOAD_END="$LOAD_END" NPROC=$(nproc) \
CPU_MODEL=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') \
python3 - >"$OUT.tmp" <<'EOF'
import json, os, statistics

env = os.environ
lines = [json.loads(l) for l in open(env["RAW"]) if l.strip()]
runs = [l for l in lines if "label" in l]
for r in runs:
    if r["rc"] != 0:
        raise SystemExit(f"{r['label']} failed (exit {r['rc']}): {' '.join(r['argv'])}")
sizes = {l["sizes"]: l for l in lines if "sizes" in l}
n = int(env["IMAGES"])
methods = ["mahalanobis", "padim", "patchcore"]
ips = {m: [n / r["wall_s"] for r in runs if r["label"] == m] for m in methods}
rss = {m: max(r["max_rss_kib"] for r in runs if r["label"] == m) / 1024 for m in methods}
cpu = {m: statistics.mean(r["user_s"] + r["sys_s"] for r in runs if r["label"] == m) for m in methods}
memory = {}
for m in methods:
    det = json.load(open(os.path.join(env["TMP"], "det", m, "detector.json")))
    memory[m] = len(det["classes"])
base = statistics.mean(ips["mahalanobis"])
print("# `defectkit score`: patch detectors vs the pooled-embedding detector\n")
print(f"`defectkit score` on {n} images (symlinks to the synthetic test images, cycling) with "
      f"the same model (`{env['MODEL_DIR']}/model.onnx`) and three detectors fitted on its "
      "embeddings: pooled Mahalanobis (image level), PaDiM and PatchCore (patch level: the "
      "model's `features` map, the anomaly map upsampled and smoothed, its maximum the score). "
      "img/s = images / wall seconds of the whole process (model and detector load included); "
      "the runs are interleaved. Peak RSS = the process's `ru_maxrss`, with every class's "
      f"detector loaded ({memory['mahalanobis']} classes).\n")
print("| detector | runs | img/s (mean) | spread | vs pooled | CPU s | peak RSS MiB | detector.h5 MiB | scored rows |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for m in methods:
    v = ips[m]
    mean = statistics.mean(v)
    spread = (max(v) - min(v)) / mean * 100 if len(v) > 1 else 0.0
    print(f"| {m} | {len(v)} | {mean:.1f} | {spread:.0f} % | {mean / base:.2f}× | {cpu[m]:.1f} | "
          f"{rss[m]:.1f} | {sizes[m]['h5'] / 2**20:.2f} | {sizes[m]['rows']} |")
print("\n## Ratios\n")
print("| ratio | value |\n| --- | --- |")
for m in ["padim", "patchcore"]:
    print(f"| {m} img/s / pooled img/s | {statistics.mean(ips[m]) / base:.2f} |")
    print(f"| {m} peak RSS / pooled peak RSS | {rss[m] / rss['mahalanobis']:.2f} |")
print("\n## Detector fits (from `defectkit detect`)\n")
for m in methods:
    text = open(os.path.join(env["TMP"], f"detect-{m}.txt")).read().strip().splitlines()
    keep = [l for l in text if "AUROC" in l and "  " not in l[:2]] + [l for l in text if "statistics:" in l or "pixel level" in l]
    for l in keep:
        print(f"- {l.strip()}")
print("\n## Machine and run\n")
print(f"- command: `{env['CMD']}`")
print(f"- date: {env['DATE']}")
print(f"- CPU: {env['CPU_MODEL']}, nproc {env['NPROC']}")
print(f"- load average at start: {env['LOAD_START']}; at end: {env['LOAD_END']}")
print(f"- batch size {env['BATCH']}; ONNX Runtime threads: {env['THREADS'] or 'default (all cores)'}")
EOF
mv "$OUT.tmp" "$OUT"
echo "wrote $OUT" >&2
