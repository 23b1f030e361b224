#!/usr/bin/env bash
# `defectkit score` benchmark: end-to-end img/s vs pure ONNX Runtime inference of the same
# model, and peak RSS on 1k vs 10k images, in the same run.
#
# Builds folders of SIZES images (symlinks to the synthetic data set's test images, cycling,
# nested in subfolders of 500) under a temp dir, then times `defectkit score DIR --model M
# --detector D --batch-size BATCH` on each under bench/score/measure.py (wall seconds and
# the child's peak RSS), interleaved with the Cargo example `bench_score` (the same model's
# `model.run` on one preloaded batch of the same images, same batch size and threads): one
# inference run before the first score run and one after each, so every score run sits
# between two. Writes bench/results/score.md (atomically: temp file + mv). A benchmark, not
# a test: nothing is asserted.
#
#   bash bench/score/run.sh
#
# Needs an export and its detector (scripts/run.sh makes both). Environment (all optional):
#   MODEL=exports/main/b/model.onnx
#   DETECTOR=exports/main/b/detect/mahalanobis/detector.json
#   SIZES="1000 10000"    images per scored folder
#   BATCH=32              images per inference batch (both sides)
#   THREADS=              ONNX Runtime intra-op threads (both sides); empty = ORT's default
#                         (all cores)
#   TARGET_SECONDS=10     duration of each pure-inference run
#   CARGO_TARGET_DIR=$HOME/.cache/defectkit/target   (scripts/env.sh)
#   OUT=bench/results/score.md
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$(pwd)
CMD="bash bench/score/run.sh${*:+ $*}"
for v in MODEL DETECTOR SIZES BATCH THREADS TARGET_SECONDS OUT; do
    if [ -n "${!v:-}" ]; then CMD="$v=\"${!v}\" $CMD"; fi
done

MODEL=${MODEL:-exports/main/b/model.onnx}
DETECTOR=${DETECTOR:-exports/main/b/detect/mahalanobis/detector.json}
SIZES=${SIZES:-1000 10000}
BATCH=${BATCH:-32}
THREADS=${THREADS:-}
TARGET_SECONDS=${TARGET_SECONDS:-10}
OUT=${OUT:-$ROOT/bench/results/score.md}
source scripts/env.sh

for f in "$MODEL" "$DETECTOR"; do
    if [ ! -f "$f" ]; then
        echo "error: $f not found: run scripts/run.sh first (it exports the models and fits" \
             "their detectors), or set MODEL and DETECTOR" >&2
        exit 1
    fi
done
mapfile -t SOURCES < <(find data/synthetic -path '*/test/*' -type f -name '*.png' | sort)
if [ "${#SOURCES[@]}" -eq 0 ]; then
    echo "error: no data/synthetic/*/test/**.png: run \`defectkit data synth\` (scripts/run.sh)" >&2
    exit 1
fi

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
DATE=$(date -u +"%Y-%m-%d %H:%M UTC")
TMP=$(mktemp -d)
trap 'rm -rf "$TMP" "$OUT.tmp"' EXIT

# 1. The binary and the example.
echo "== building defectkit and bench_score (release) ==" >&2
cargo build --release --bin defectkit --example bench_score >&2
EXAMPLE="$CARGO_TARGET_DIR/release/examples/bench_score"

# 2. The scored folders: symlinks to the source images, cycling, 500 per subfolder.
python3 - "$TMP" "$SIZES" "${SOURCES[@]}" <<'EOF'
import os, sys

tmp, sizes, sources = sys.argv[1], sys.argv[2].split(), [os.path.abspath(s) for s in sys.argv[3:]]
for n in map(int, sizes):
    for i in range(n):
        sub = os.path.join(tmp, f"n{n}", f"{i // 500:03d}")
        os.makedirs(sub, exist_ok=True)
        os.symlink(sources[i % len(sources)], os.path.join(sub, f"{i:05d}.png"))
EOF
# The source images in the page cache before anything is timed.
cat "${SOURCES[@]}" >/dev/null

# 3. Pure inference and score, interleaved.
RAW="$TMP/raw.jsonl"
THREAD_ARGS=()
[ -n "$THREADS" ] && THREAD_ARGS=(--threads "$THREADS")
inference() {
    echo "== inference (preloaded batch of $BATCH) ==" >&2
    python3 bench/score/measure.py --label inference -- "$EXAMPLE" --model "$MODEL" \
        --batch-size "$BATCH" --target-seconds "$TARGET_SECONDS" "${THREAD_ARGS[@]}" \
        "${SOURCES[@]}" >>"$RAW"
}
# CPU time of the whole machine over the timed part (/proc/stat), to tell how much of it
# went to other processes.
STAT_START=$(head -1 /proc/stat)
T_START=$(date +%s.%N)
inference
for n in $SIZES; do
    echo "== score $n images ==" >&2
    echo "{\"load1\": $(cut -d' ' -f1 /proc/loadavg)}" >>"$RAW"
    python3 bench/score/measure.py --label "score-$n" -- "$DEFECTKIT_BIN" score "$TMP/n$n" \
        --model "$MODEL" --detector "$DETECTOR" --out "$TMP/scores.csv" \
        --batch-size "$BATCH" "${THREAD_ARGS[@]}" >>"$RAW"
    echo "{\"csv_rows\": $(($(wc -l <"$TMP/scores.csv") - 1)), \"images\": $n}" >>"$RAW"
    inference
done
STAT_END=$(head -1 /proc/stat)
T_END=$(date +%s.%N)
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# 4. The results table.
mkdir -p "$(dirname "$OUT")"
RAW="$RAW" DATE="$DATE" CMD="$CMD" LOAD_START="$LOAD_START" LOAD_END="$LOAD_END" \
NPROC=$(nproc) CPU_MODEL=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') \
MODEL="$MODEL" DETECTOR="$DETECTOR" BATCH="$BATCH" THREADS="$THREADS" \
SOURCES_N="${#SOURCES[@]}" TARGET_SECONDS="$TARGET_SECONDS" CLK_TCK=$(getconf CLK_TCK) \
STAT_START="$STAT_START" STAT_END="$STAT_END" T_START="$T_START" T_END="$T_END" \
python3 - >"$OUT.tmp" <<'EOF'
import json, os, re

env = os.environ
nproc = int(env["NPROC"])
lines = [json.loads(l) for l in open(env["RAW"]) if l.strip()]
runs = [l for l in lines if "label" in l]
for r in runs:
    if r["rc"] != 0:
        raise SystemExit(f"{r['label']} failed (exit {r['rc']}): {' '.join(r['argv'])}")
csv_rows = {l["images"]: l["csv_rows"] for l in lines if "csv_rows" in l}

# Rows in run order; each score run is bracketed by the inference runs before and after it.
rows, last_inf, pending = [], None, []
for r in runs:
    cpu = r["user_s"] + r["sys_s"]
    if r["label"] == "inference":
        j = json.loads(r["stdout"].splitlines()[-1])
        row = dict(case="inference (preloaded batch)", images=j["batches"] * j["batch"],
                   seconds=j["seconds"], ips=j["img_per_s"], rss=r["max_rss_kib"] / 1024,
                   cpu=cpu, wall=r["wall_s"], j=j)
        for s in pending:
            s["inf_after"] = row
        pending = []
        last_inf = row
    else:
        n = int(r["label"].split("-", 1)[1])
        m = re.search(r"scored (\d+) of (\d+) files in ([0-9.]+) s", r["stdout"])
        row = dict(case="score", images=n, seconds=r["wall_s"], ips=n / r["wall_s"],
                   rss=r["max_rss_kib"] / 1024, cpu=cpu, wall=r["wall_s"],
                   scored=int(m.group(1)) if m else None,
                   own_seconds=float(m.group(3)) if m else None,
                   csv_rows=csv_rows.get(n), inf_before=last_inf)
        pending.append(row)
    rows.append(row)

inf = [r for r in rows if r["case"] != "score"]
scores = [r for r in rows if r["case"] == "score"]
j0 = inf[0]["j"]
decode_ms = sum(r["j"]["decode_ms_per_img"] for r in inf) / len(inf)


def bracket(s):
    b = [x for x in (s.get("inf_before"), s.get("inf_after")) if x]
    return sum(x["ips"] for x in b) / len(b)


# Busy = the CPU time of the machine over the timed part beyond what the benchmark's own
# processes used (the load average alone cannot tell: score runs more threads than cores).
def busy_jiffies(line):
    v = [int(x) for x in line.split()[1:]]
    return sum(v[:8]) - v[3] - v[4]  # user nice system idle iowait irq softirq steal


span = float(env["T_END"]) - float(env["T_START"])
machine_cpu = (busy_jiffies(env["STAT_END"]) - busy_jiffies(env["STAT_START"])) / int(env["CLK_TCK"])
own_cpu = sum(r["user_s"] + r["sys_s"] for r in runs)
other_share = max(0.0, machine_cpu - own_cpu) / (span * nproc)
busy = other_share > 0.10
threads = env["THREADS"] or f"ONNX Runtime default (all {nproc} cores)"

print("# `defectkit score`: end-to-end throughput and memory\n")
print(
    "`defectkit score FOLDER` (decoding thread + bounded channel + batched ONNX Runtime, the\n"
    "shared pipeline) on folders of symlinked test images, against the same model's pure\n"
    "inference (`model.run` on one preloaded, preprocessed batch; the Cargo example\n"
    "`bench_score`), same batch size and threads, interleaved in one run\n"
    "(`bench/score/run.sh`). img/s = images / seconds; score's seconds are the wall time of\n"
    "the whole process (start, model load + SHA-256, detector, file walk, CSV), inference's\n"
    "the timed loop only. Peak RSS = the process's `ru_maxrss`.\n"
)
print("| case | images | seconds | img/s | peak RSS MiB | CPU s (user+sys) | CPU util. |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for r in rows:
    util = r["cpu"] / r["wall"] / nproc
    print(f"| {r['case']} | {r['images']} | {r['seconds']:.2f} | {r['ips']:.1f} | {r['rss']:.1f}"
          f" | {r['cpu']:.1f} | {100 * util:.0f} % of {nproc} cores |")
print()
print("## Ratios\n")
print("| ratio | value | goal | met |")
print("| --- | --- | --- | --- |")
for s in scores:
    ratio = s["ips"] / bracket(s)
    s["ratio"] = ratio
    print(f"| score / inference img/s, {s['images']} images (inference = mean of the runs"
          f" before and after) | {ratio:.2f} | ≥ 0.90 | {'yes' if ratio >= 0.9 else 'no'} |")
if len(scores) >= 2:
    lo, hi = scores[0], scores[-1]
    rss_ratio = hi["rss"] / lo["rss"]
    print(f"| peak RSS {hi['images']} / {lo['images']} images | {rss_ratio:.3f} | ≤ 1.10 |"
          f" {'yes' if rss_ratio <= 1.10 else 'no'} |")
print()

# The reading, from the numbers.
inf_mean = sum(r["ips"] for r in inf) / len(inf)
spread = (max(r["ips"] for r in inf) - min(r["ips"] for r in inf)) / inf_mean
big = scores[-1]
parts = []
parts.append(
    f"Pure inference ran at {inf_mean:.1f} img/s (spread {100 * spread:.0f} % across its"
    f" {len(inf)} runs) and `score` at {big['ips']:.1f} img/s on {big['images']} images, i.e."
    f" {big['ratio']:.2f}× inference ({'meets' if big['ratio'] >= 0.9 else 'misses'} the 0.9 goal)."
)
if len(scores) >= 2:
    lo = scores[0]
    # t = fixed + n / marginal: the fixed cost (start, load, hash) and the steady-state rate.
    slope = (big["seconds"] - lo["seconds"]) / (big["images"] - lo["images"])
    fixed = big["seconds"] - slope * big["images"]
    if slope > 0:
        marginal = 1 / slope
        parts.append(
            f"A line through the two score runs gives a fixed cost of {fixed:.1f} s per process"
            f" (start, model load and SHA-256, detector, file walk) and a steady-state rate of"
            f" {marginal:.1f} img/s ({marginal / inf_mean:.2f}× inference)"
            + (f"; the fixed cost is {100 * fixed / lo['seconds']:.0f} % of the {lo['images']}-image"
               f" run, {100 * fixed / big['seconds']:.0f} % of the {big['images']}-image one."
               if fixed > 0 else ".")
        )
# CPU budget per image: decoding takes decode_ms of one core, inference ms_inf on t cores;
# on nproc cores score cannot beat nproc / (t·ms_inf + decode_ms), nor inference alone.
t = min(int(env["THREADS"]) if env["THREADS"] else nproc, nproc)
ms_inf = 1000 / inf_mean
bound = min(inf_mean, 1000 * nproc / (t * ms_inf + decode_ms))
cores = f"all {nproc} cores" if t == nproc else f"{t} of the {nproc} cores"
parts.append(
    f"Decoding and preprocessing one test PNG takes {decode_ms:.1f} ms of one core"
    f" (measured single-threaded in `bench_score`) against {ms_inf:.1f} ms of {cores} for"
    f" its inference. Both need the same {nproc} cores, so the most `score` can do is about"
    f" {bound:.1f} img/s ({bound / inf_mean:.2f}× inference); measured {big['ips']:.1f}."
)
util = big["cpu"] / big["wall"] / nproc
if big["ips"] < 0.85 * bound:
    parts.append(
        f"That is well below the bound (CPU {100 * util:.0f} % busy): time goes somewhere other"
        f" than the work itself (the thread pools getting in each other's way — ONNX Runtime's"
        f" intra-op threads spin-wait while rayon's decoders want the same cores — or serial"
        f" work between batches)."
    )
elif bound / inf_mean < 0.9:
    parts.append(
        f"The measurement is at that bound, so the gap to pure inference is the decoding work"
        f" itself competing for the same {nproc} cores, not pipeline overhead: with inference"
        f" on {cores}, 0.9× is out of reach on this machine. Fewer ORT threads leave a core to"
        f" the decoders and raise the ratio, but lower the absolute rate; more cores than"
        f" inference can use would meet it."
    )
elif big["ips"] < 0.9 * inf_mean:
    parts.append(
        f"The cores have room for decoding, so the remaining gap ({100 * (1 - big['ratio']):.0f} %)"
        f" lies outside decoding and inference: scoring and CSV rows on the inference thread"
        f" between batches, the hand-off, process start (not profiled here)."
    )
if len(scores) >= 2:
    lo = scores[0]
    parts.append(
        f"Peak RSS went from {lo['rss']:.1f} MiB ({lo['images']} images) to {big['rss']:.1f} MiB"
        f" ({big['images']}), {'flat' if rss_ratio <= 1.10 else 'not flat'} ({rss_ratio:.3f}×):"
        f" {'memory does not grow with the number of images beyond the file list' if rss_ratio <= 1.10 else 'something grows with the number of images'};"
        f" the inference-only process peaks at {inf[0]['rss']:.1f} MiB."
    )
if busy:
    parts.append(
        f"**Busy machine**: other processes used {100 * other_share:.0f} % of the {nproc} cores"
        f" during the run, so absolute numbers are depressed and noisy; re-run on an idle machine."
    )
print("## Reading\n")
print(" ".join(parts))
print()
checks = []
for s in scores:
    if s.get("scored") != s["images"] or s.get("csv_rows") != s["images"]:
        checks.append(f"{s['images']} images: scored {s.get('scored')}, CSV rows {s.get('csv_rows')}")
if checks:
    print("**Check**: " + "; ".join(checks) + "\n")

print("## Machine and run\n")
print(f"- command: `{env['CMD']}`")
print(f"- date: {env['DATE']}")
print(f"- CPU: {env['CPU_MODEL']}, nproc {nproc}")
print(f"- load average (1/5/15 min) at start: {env['LOAD_START']}; at end: {env['LOAD_END']}"
      f" (the benchmark itself runs more threads than cores)")
print(f"- CPU time of other processes during the timed part: {max(0.0, machine_cpu - own_cpu):.1f} s"
      f" of {span * nproc:.0f} core-seconds ({100 * other_share:.1f} %)")
print(f"- model: `{env['MODEL']}` ({j0['kind']}, input {'×'.join(map(str, j0['input_shape']))});"
      f" detector: `{env['DETECTOR']}`")
print(f"- batch size {env['BATCH']}; ONNX Runtime intra-op threads: {threads}; score's decoders:"
      f" rayon's global pool (all {nproc} cores)")
print(f"- images: symlinks to the {env['SOURCES_N']} PNGs of data/synthetic/*/test, cycling,"
      f" 500 per subfolder; inference: {env['TARGET_SECONDS']} s per run on one preloaded batch"
      f" of the first {env['BATCH']}")
print("\n<details><summary>raw JSON lines</summary>\n\n```json")
for l in lines:
    if "argv" in l and len(l["argv"]) > 12:
        l = dict(l, argv=l["argv"][:10] + [f"… ({len(l['argv']) - 10} more)"])
    print(json.dumps(l, ensure_ascii=False))
print("```\n</details>")
EOF
mv "$OUT.tmp" "$OUT"
echo "wrote $OUT" >&2
cat "$OUT"
