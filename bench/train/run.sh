#!/usr/bin/env bash
# Training-step benchmark: defectkit (Burn, flex) vs PyTorch CPU, in the same run.
#
# For each model (A, C) and size, runs the Rust example `bench_train` and then the PyTorch
# peer `bench/peers/torch_train.py` on the same case, back to back (interleaved per case so
# a change in machine load hits both sides alike), and writes
# bench/results/train_step.md (atomically: temp file + mv). A benchmark, not a test.
#
#   bash bench/train/run.sh
#
# Environment (all optional):
#   MODELS="A C"          models to time
#   SIZES="128 224"       square input sizes
#   BATCH=16  WARMUP=2    batch size, untimed warm-up steps
#   STEPS=0               timed steps per case; 0 = as many as fit in TARGET_SECONDS (>= 2)
#   TARGET_SECONDS=15     target duration of one timed case
#   TORCH_THREADS=$(nproc)  PyTorch intra-op threads (Burn's flex uses all cores)
#   UNET_SKIPS="false <conf>"  U-Net skip-connection variants to time for model C; the
#                         default is skip off plus the value in conf/model/unet_ae.yaml
#   BENCH_VENV=.cache/bench-venv   Python venv with torch (created if missing; pip from PyPI)
#   CARGO_TARGET_DIR=$HOME/.cache/defectkit/target
#   OUT=bench/results/train_step.md
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$(pwd)
CMD="bash bench/train/run.sh${*:+ $*}"
for v in MODELS SIZES BATCH WARMUP STEPS TARGET_SECONDS TORCH_THREADS UNET_SKIPS BENCH_VENV OUT; do
    if [ -n "${!v:-}" ]; then CMD="$v=\"${!v}\" $CMD"; fi
done

MODELS=${MODELS:-A C}
SIZES=${SIZES:-128 224}
BATCH=${BATCH:-16}
WARMUP=${WARMUP:-2}
STEPS=${STEPS:-0}
TARGET_SECONDS=${TARGET_SECONDS:-15}
TORCH_THREADS=${TORCH_THREADS:-$(nproc)}
BENCH_VENV=${BENCH_VENV:-$ROOT/.cache/bench-venv}
OUT=${OUT:-$ROOT/bench/results/train_step.md}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/defectkit/target}

CONF_SKIP=$(awk -F: '/^skip_connections:/ { sub(/#.*/, "", $2); gsub(/[ \t]/, "", $2); print $2 }' conf/model/unet_ae.yaml)
CONF_SKIP=${CONF_SKIP:-false}
# Model C's widths come from the config and go explicitly to both sides, so the two
# frameworks always time the same network.
conf_value() { awk -F: -v k="$1" '$1 == k { sub(/#.*/, "", $2); gsub(/[ \t]/, "", $2); print $2 }' conf/model/unet_ae.yaml; }
UNET_DEPTH=$(conf_value depth)
UNET_BASE_WIDTH=$(conf_value base_width)
UNET_LATENT=$(conf_value latent_dim)
if [ -z "${UNET_SKIPS:-}" ]; then
    UNET_SKIPS="false"
    [ "$CONF_SKIP" = "true" ] && UNET_SKIPS="false true"
fi

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
DATE=$(date -u +"%Y-%m-%d %H:%M UTC")

# 1. Python venv with torch (CPU use; the PyPI wheel also pulls CUDA libraries).
PY="$BENCH_VENV/bin/python"
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
    echo "== creating $BENCH_VENV and installing torch from PyPI (several GB) ==" >&2
    python3 -m venv "$BENCH_VENV"
    "$BENCH_VENV/bin/pip" install --quiet torch numpy
fi
TORCH_VERSION=$("$PY" -c "import torch; print(torch.__version__)" 2>/dev/null)

# 2. The Rust example.
echo "== building bench_train (release) ==" >&2
cargo build --release --example bench_train >&2
BIN="$CARGO_TARGET_DIR/release/examples/bench_train"
BURN_VERSION=$(awk '/^name = "burn"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' Cargo.lock)

# 3. Both peers, interleaved per case.
RAW=$(mktemp)
trap 'rm -f "$RAW" "$OUT.tmp"' EXIT
COMMON=(--batch "$BATCH" --warmup "$WARMUP" --steps "$STEPS" --target-seconds "$TARGET_SECONDS"
        --unet-depth "$UNET_DEPTH" --unet-base-width "$UNET_BASE_WIDTH" --unet-latent-dim "$UNET_LATENT")
for model in $MODELS; do
    skips="false"
    [ "$model" = "C" ] && skips="$UNET_SKIPS"
    for skip in $skips; do
        for size in $SIZES; do
            args=(--models "$model" --sizes "$size" --unet-skip "$skip" "${COMMON[@]}")
            echo "== $model $size skip=$skip: defectkit ==" >&2
            echo "LOAD $(cut -d' ' -f1 /proc/loadavg)" >>"$RAW"
            "$BIN" "${args[@]}" | tee -a "$RAW" >&2
            echo "== $model $size skip=$skip: pytorch ==" >&2
            echo "LOAD $(cut -d' ' -f1 /proc/loadavg)" >>"$RAW"
            "$PY" -W ignore bench/peers/torch_train.py "${args[@]}" --threads "$TORCH_THREADS" \
                | tee -a "$RAW" >&2
        done
    done
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# 4. The results table.
mkdir -p "$(dirname "$OUT")"
RAW="$RAW" DATE="$DATE" CMD="$CMD" LOAD_START="$LOAD_START" LOAD_END="$LOAD_END" \
NPROC=$(nproc) CPU_MODEL=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') \
BURN_VERSION="$BURN_VERSION" TORCH_VERSION="$TORCH_VERSION" CONF_SKIP="$CONF_SKIP" \
UNET_DEPTH="$UNET_DEPTH" UNET_BASE_WIDTH="$UNET_BASE_WIDTH" UNET_LATENT="$UNET_LATENT" \
TORCH_THREADS="$TORCH_THREADS" \
"$PY" - >"$OUT.tmp" <<'EOF'
import json, os

env = os.environ
rows, load = [], None
for line in open(env["RAW"]):
    if line.startswith("LOAD "):
        load = float(line.split()[1])
    elif line.startswith("{"):
        r = json.loads(line)
        r["load1_at_start"] = load
        rows.append(r)
nproc = int(env["NPROC"])
loads = [float(env["LOAD_START"].split()[0]), float(env["LOAD_END"].split()[0])]
loads += [r["load1_at_start"] for r in rows if r["load1_at_start"] is not None]
busy = max(loads) > max(2.5, nproc)


def key(r):
    return (r["model"], r.get("unet_skip"), r["size"])


by = {}
for r in rows:
    by.setdefault(key(r), {})[r["framework"]] = r

print("# Training step: defectkit (Burn flex) vs PyTorch CPU\n")
print(
    "One step = forward + loss (A: cross-entropy, C: MSE reconstruction) + backward + AdamW,\n"
    "random normal inputs, after warm-up steps; both frameworks run back to back per case in\n"
    "the same run (`bench/train/run.sh`). Higher img/s is better; ratio = defectkit / PyTorch.\n"
)
print(
    "| model | size | batch | defectkit img/s | PyTorch img/s | ratio defectkit/PyTorch"
    " | steps (dk / pt) | 1-min load at case start (dk / pt) |"
)
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for k in sorted(by, key=lambda k: (k[0], k[1] is True, k[2])):
    d, p = by[k].get("defectkit"), by[k].get("pytorch")
    model = k[0]
    if k[1] is not None:
        model += " (skip on)" if k[1] else " (skip off)"
    b = (d or p)["batch"]
    di = f"{d['img_per_s']:.2f}" if d else "n/a"
    pi = f"{p['img_per_s']:.2f}" if p else "n/a"
    ratio = f"{d['img_per_s'] / p['img_per_s']:.2f}" if d and p else "n/a"
    steps = f"{d['steps'] if d else '-'} / {p['steps'] if p else '-'}"
    ld = f"{d['load1_at_start'] if d else '-'} / {p['load1_at_start'] if p else '-'}"
    print(f"| {model} | {k[2]}² | {b} | {di} | {pi} | {ratio} | {steps} | {ld} |")

print("\nModels: A = ResNet-18 conv1..layer2 + global average pool + Linear(10), width 64")
print(f"(`ClassifierConfig::new(10).with_width(64)`); C = U-Net autoencoder, depth {env['UNET_DEPTH']}, base width {env['UNET_BASE_WIDTH']},")
print(f"latent {env['UNET_LATENT']}, flattened bottleneck, nearest ×2 upsample + conv, identity output")
print(f"(`UNetConfig`; conf/model/unet_ae.yaml has skip_connections: {env['CONF_SKIP']}, the")
print("`UNetConfig` default is off). AdamW: lr 1e-3, betas 0.9/0.999, eps 1e-5, weight decay 1e-4")
print("(Burn's defaults, matched in PyTorch).\n")

print("## Machine and run\n")
print(f"- date: {env['DATE']}")
print(f"- CPU: {env['CPU_MODEL']}, nproc {nproc}")
print(f"- load average (1/5/15 min) at start: {env['LOAD_START']}; at end: {env['LOAD_END']}")
if busy:
    print(
        f"- **busy machine**: the 1-min load average reached {max(loads)} on {nproc} cores"
        " (other work running). Absolute img/s are depressed and noisy, and the ratio is"
        " biased towards defectkit: PyTorch's OpenMP threads (static split, spin-waits)"
        " lose more to competing processes than Burn's work-stealing rayon pool. Re-run on"
        " an idle machine for a fair ratio."
    )
print(
    f"- versions: burn {env['BURN_VERSION']} (flex backend, default features),"
    f" torch {env['TORCH_VERSION']} (PyPI wheel, CPU, {env['TORCH_THREADS']} threads)"
)
print(f"- command: `{env['CMD']}`")

print("\n<details><summary>raw JSON lines</summary>\n\n```json")
for r in rows:
    print(json.dumps(r))
print("```\n</details>")
EOF
mv "$OUT.tmp" "$OUT"
echo "wrote $OUT" >&2
cat "$OUT"
