#!/usr/bin/env bash
# Per-op benchmark of the CPU training ops: defectkit (Burn, flex) vs PyTorch, in one run.
#
# For each model (A, C) and size, runs the Rust example `bench_train_ops` and then the
# PyTorch peer `bench/peers/torch_ops.py` on the same cases (conv2d forward / input-grad /
# weight-grad, batch norm, ReLU, add, max pool, nearest upsample at the models' layer
# shapes), back to back (interleaved per model and size so a change in machine load hits
# both sides alike), and writes bench/results/train_ops.md (atomically: temp file + mv).
# A benchmark, not a test.
#
#   bash bench/train_ops/run.sh
#
# Environment (all optional):
#   MODELS="A C"          models whose layer shapes to time
#   SIZES="128 224"       square input sizes
#   BATCH=16  WARMUP=2    batch size, untimed calls per case
#   TARGET_SECONDS=1      timed duration of one case (at least MIN_CALLS=3 calls)
#   OPS=""                comma-separated op-name substrings (e.g. conv2d_dgrad,batchnorm);
#                         empty = all
#   CHECK=0               1: both sides compare the direct conv gradients with autograd's
#                         (stderr, and a list in the report)
#   TORCH_THREADS=$(nproc)  PyTorch intra-op threads (Burn's flex uses all cores)
#   PROFILE=0             1: if `perf stat` counts instructions here, add counters for one
#                         defectkit case (PROFILE_OPS, default conv2d_dgrad) to the report
#   BENCH_VENV=.cache/bench-venv   Python venv with torch (created if missing; pip from PyPI)
#   CARGO_TARGET_DIR=$HOME/.cache/defectkit/target
#   OUT=bench/results/train_ops.md
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$(pwd)
CMD="bash bench/train_ops/run.sh${*:+ $*}"
for v in MODELS SIZES BATCH WARMUP TARGET_SECONDS MIN_CALLS OPS CHECK TORCH_THREADS PROFILE \
         PROFILE_OPS BENCH_VENV OUT; do
    if [ -n "${!v:-}" ]; then CMD="$v=\"${!v}\" $CMD"; fi
done

MODELS=${MODELS:-A C}
SIZES=${SIZES:-128 224}
BATCH=${BATCH:-16}
WARMUP=${WARMUP:-2}
TARGET_SECONDS=${TARGET_SECONDS:-1}
MIN_CALLS=${MIN_CALLS:-3}
OPS=${OPS:-}
CHECK=${CHECK:-0}
TORCH_THREADS=${TORCH_THREADS:-$(nproc)}
PROFILE=${PROFILE:-0}
PROFILE_OPS=${PROFILE_OPS:-conv2d_dgrad}
BENCH_VENV=${BENCH_VENV:-$ROOT/.cache/bench-venv}
OUT=${OUT:-$ROOT/bench/results/train_ops.md}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/defectkit/target}

# Model C's widths come from the config and go explicitly to both sides.
conf_value() { awk -F: -v k="$1" '$1 == k { sub(/#.*/, "", $2); gsub(/[ \t]/, "", $2); print $2 }' conf/model/unet_ae.yaml; }
UNET_DEPTH=$(conf_value depth)
UNET_BASE_WIDTH=$(conf_value base_width)
CONF_SKIP=$(conf_value skip_connections)
CONF_SKIP=${CONF_SKIP:-false}

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

# 2. The Rust example (`train` is a default feature).
echo "== building bench_train_ops (release) ==" >&2
cargo build --release --example bench_train_ops >&2
BIN="$CARGO_TARGET_DIR/release/examples/bench_train_ops"
BURN_VERSION=$(awk '/^name = "burn"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' Cargo.lock)

# 3. Both peers, interleaved per model and size.
RAW=$(mktemp)
CHECKS=$(mktemp)
PERF=$(mktemp)
trap 'rm -f "$RAW" "$CHECKS" "$PERF" "$OUT.tmp"' EXIT
COMMON=(--batch "$BATCH" --warmup "$WARMUP" --target-seconds "$TARGET_SECONDS"
        --min-calls "$MIN_CALLS" --unet-depth "$UNET_DEPTH" --unet-base-width "$UNET_BASE_WIDTH")
[ -n "$OPS" ] && COMMON+=(--ops "$OPS")
[ "$CHECK" = "1" ] && COMMON+=(--check)
# Runs one side: JSON lines to $RAW, stderr (the --check lines) to $CHECKS, both echoed.
run_side() {
    local err
    err=$(mktemp)
    echo "LOAD $(cut -d' ' -f1 /proc/loadavg)" >>"$RAW"
    if ! "$@" 2>"$err" | tee -a "$RAW" >&2; then
        cat "$err" >&2
        rm -f "$err"
        echo "failed: $*" >&2
        exit 1
    fi
    cat "$err" >&2
    cat "$err" >>"$CHECKS"
    rm -f "$err"
}
for model in $MODELS; do
    for size in $SIZES; do
        args=(--models "$model" --sizes "$size" "${COMMON[@]}")
        echo "== $model $size: defectkit ==" >&2
        run_side "$BIN" "${args[@]}"
        echo "== $model $size: pytorch ==" >&2
        run_side "$PY" -W ignore bench/peers/torch_ops.py "${args[@]}" --threads "$TORCH_THREADS"
    done
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# 4. Optional hardware counters (perf is not required; VMs often lack the counters).
PERF_STATUS="not requested (PROFILE=1 adds \`perf stat\` counters for one defectkit case)"
if [ "$PROFILE" = "1" ]; then
    if command -v perf >/dev/null 2>&1 && perf stat -x, -e instructions true 2>&1 | grep -q '^[0-9]'; then
        first_model=${MODELS%% *}
        first_size=${SIZES%% *}
        pargs=(--models "$first_model" --sizes "$first_size" --batch "$BATCH" --warmup "$WARMUP"
               --target-seconds "$TARGET_SECONDS" --min-calls "$MIN_CALLS" --ops "$PROFILE_OPS"
               --unet-depth "$UNET_DEPTH" --unet-base-width "$UNET_BASE_WIDTH")
        echo "== perf stat: defectkit ${pargs[*]} ==" >&2
        perf stat -e task-clock,cycles,instructions,cache-references,cache-misses \
            "$BIN" "${pargs[@]}" >/dev/null 2>"$PERF" || true
        PERF_STATUS="\`perf stat\` of \`bench_train_ops ${pargs[*]}\`:"
    else
        PERF_STATUS="skipped: \`perf stat -e instructions\` counts nothing on this machine"
    fi
fi

# 5. The results table.
mkdir -p "$(dirname "$OUT")"
RAW="$RAW" CHECKS="$CHECKS" PERF="$PERF" PERF_STATUS="$PERF_STATUS" DATE="$DATE" CMD="$CMD" \
LOAD_START="$LOAD_START" LOAD_END="$LOAD_END" NPROC=$(nproc) \
CPU_MODEL=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') \
BURN_VERSION="$BURN_VERSION" TORCH_VERSION="$TORCH_VERSION" CONF_SKIP="$CONF_SKIP" \
UNET_DEPTH="$UNET_DEPTH" UNET_BASE_WIDTH="$UNET_BASE_WIDTH" TORCH_THREADS="$TORCH_THREADS" \
TARGET_SECONDS="$TARGET_SECONDS" \
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

FW = ("defectkit", "pytorch")
by, order = {}, []
for r in rows:
    k = (r["model"], r["size"], r["op"], r["shape"])
    if k not in by:
        by[k] = {}
        order.append(k)
    by[k][r["framework"]] = r
heads = {(k[0], k[1], k[3]): v for k, v in by.items() if k[2] == "grad_head_fwd_bwd"}


def out_shape(op, shape):
    """Output map of a *_fwd_bwd case, as the head rows name it."""
    dims = shape.split()[0]
    b, c, h, w = (int(v) for v in dims.split("x"))
    if op.startswith("maxpool2d"):
        k, s, p = (int(t[1:]) for t in shape.split()[1:4])
        h = (h + 2 * p - k) // s + 1
    elif op.startswith("upsample"):
        h *= 2
    return f"{b}x{c}x{h}x{h}"


def net(k, fw):
    """ms minus the gradient head of the same output shape (None without both)."""
    r = by[k].get(fw)
    if r is None or not k[2].endswith("_fwd_bwd") or k[2] == "grad_head_fwd_bwd":
        return None
    h = heads.get((k[0], k[1], out_shape(k[2], k[3])), {}).get(fw)
    return None if h is None else r["ms"] - h["ms"]


def fmt(v, digits=2):
    return "n/a" if v is None else f"{v:.{digits}f}"


def ratio(p, d):
    return f"{p / d:.2f}" if p is not None and d is not None and d > 0 and p > 0 else "n/a"


print("# Training ops: defectkit (Burn flex) vs PyTorch CPU, per op and layer shape\n")
print(
    "Median ms per call of each op at the layer shapes of models A and C (float32), after\n"
    "warm-up calls, about "
    f"{env['TARGET_SECONDS']} s of calls per case; both frameworks run the same cases back to\n"
    "back per model and size in the same run (`bench/train_ops/run.sh`).\n"
    "**ratio = PyTorch ms / defectkit ms: above 1 means defectkit is faster, below 1 slower.**\n"
)
print(
    "- `conv2d_fwd` / `conv2d_dgrad` (input gradient) / `conv2d_wgrad` (weight gradient):\n"
    "  direct kernel calls, no autodiff. defectkit: `module::conv2d`, `conv_transpose2d` with\n"
    "  the options of burn-backend's default `conv2d_x_backward` (flex does not override it),\n"
    "  `module::conv2d_weight_backward`; PyTorch (no_grad): `F.conv2d`,\n"
    "  `torch.nn.grad.conv2d_input`, `torch.nn.grad.conv2d_weight`. GFLOP/s = 2·B·C_out·H_out·\n"
    "  W_out·C_in·k² / time, for all three. conv1's dgrad is not needed in training (marked ¹).\n"
    "- `batchnorm_fwd`: BatchNorm in training mode (batch statistics + running-stat update),\n"
    "  input not requiring grad.\n"
    "- `*_fwd_bwd`: `loss = (op(x) · g).sum()`, backward, input gradient(s) read; the same\n"
    "  head on both sides (Burn cannot seed a backward with a gradient). `grad_head_fwd_bwd`\n"
    "  times the head alone per output shape; \"net\" = fwd_bwd ms − head ms of its output shape.\n"
    "- `layer (×n)`: the first layer with this shape and how often one forward pass runs it.\n"
)
print(
    "| model | size | op | layer (×n) | shape | defectkit ms | PyTorch ms | ratio PT/dk"
    " | GFLOP/s dk / PT | net ms dk / PT (ratio) |"
)
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for k in order:
    d, p = by[k].get("defectkit"), by[k].get("pytorch")
    r = d or p
    layer = r["layer"] + (f" (×{r['count']})" if r.get("count") else "")
    if k[2] == "conv2d_dgrad" and r.get("needed_in_training") is False:
        layer += " ¹"
    dm, pm = (d or {}).get("ms"), (p or {}).get("ms")
    gf = "—"
    if r.get("gflops") is not None:
        gf = f"{fmt((d or {}).get('gflops'), 1)} / {fmt((p or {}).get('gflops'), 1)}"
    nd, np_ = net(k, "defectkit"), net(k, "pytorch")
    nt = "—" if nd is None and np_ is None else f"{fmt(nd)} / {fmt(np_)} ({ratio(np_, nd)})"
    print(
        f"| {k[0]} | {k[1]}² | {k[2]} | {layer} | `{k[3]}` | {fmt(dm, 3)} | {fmt(pm, 3)}"
        f" | {ratio(pm, dm)} | {gf} | {nt} |"
    )

# Per-step estimate: Σ count × ms per op group (dgrad only where training needs it, the
# fwd_bwd ops net of their head, clamped at 0; heads themselves not counted).
GROUPS = [
    ("conv2d forward", ("conv2d_fwd",)),
    ("conv2d input grad", ("conv2d_dgrad",)),
    ("conv2d weight grad", ("conv2d_wgrad",)),
    ("batch norm fwd+bwd (net)", ("batchnorm_fwd_bwd",)),
    ("ReLU fwd+bwd (net)", ("relu_fwd_bwd",)),
    ("add fwd+bwd (net)", ("add_fwd_bwd",)),
    ("max pool fwd+bwd (net)", ("maxpool2d_fwd_bwd",)),
    ("upsample fwd+bwd (net)", ("upsample_nearest2x_fwd_bwd",)),
]
cases = sorted({(k[0], k[1]) for k in order})
print("\n## Estimated op time per training step\n")
print(
    "Σ over the cases of `count × ms` (input grad only where training needs it; the fwd+bwd\n"
    "ops net of their gradient head, clamped at 0). It leaves out the Linear layers, the loss,\n"
    "the optimizer and autodiff's own bookkeeping, so it is a lower bound of a step; compare\n"
    "with bench/results/train_step.md (one step = batch / img_per_s). Missing cases count 0.\n"
)
print("| model | size | op group | defectkit ms | PyTorch ms | ratio PT/dk |")
print("| --- | --- | --- | --- | --- | --- |")
for model, size in cases:
    total = {fw: 0.0 for fw in FW}
    for label, ops in GROUPS:
        sums = {fw: 0.0 for fw in FW}
        seen = False
        for k in order:
            if k[0] != model or k[1] != size or k[2] not in ops:
                continue
            for fw in FW:
                r = by[k].get(fw)
                if r is None or (k[2] == "conv2d_dgrad" and r.get("needed_in_training") is False):
                    continue
                ms = net(k, fw) if k[2].endswith("_fwd_bwd") else r["ms"]
                if ms is None:
                    continue
                sums[fw] += r["count"] * max(ms, 0.0)
                seen = True
        if not seen:
            continue
        for fw in FW:
            total[fw] += sums[fw]
        print(
            f"| {model} | {size}² | {label} | {sums['defectkit']:.1f} | {sums['pytorch']:.1f}"
            f" | {ratio(sums['pytorch'], sums['defectkit'])} |"
        )
    print(
        f"| {model} | {size}² | **total** | **{total['defectkit']:.1f}** |"
        f" **{total['pytorch']:.1f}** | **{ratio(total['pytorch'], total['defectkit'])}** |"
    )

unmatched = [k for k in order if len(by[k]) != 2]
if unmatched:
    print(f"\n{len(unmatched)} case(s) ran on one side only (n/a above).")

print(
    f"\nModels: A = ResNet-18 conv1..layer2, width 64; C = U-Net autoencoder, depth"
    f" {env['UNET_DEPTH']}, base width {env['UNET_BASE_WIDTH']}, without skip connections"
    f" (conf/model/unet_ae.yaml: skip_connections: {env['CONF_SKIP']}), nearest ×2 upsample;"
    " C's Linear latent layers are not timed."
)

checks = [l.strip() for l in open(env["CHECKS"]) if l.startswith("check ")]
if checks:
    print("\n## Gradient check (direct calls vs autograd, relative max abs diff)\n")
    print("```text")
    print("\n".join(checks))
    print("```")

print("\n## Profile\n")
print(env["PERF_STATUS"])
perf = open(env["PERF"]).read().strip()
if perf:
    print("\n```text\n" + perf + "\n```")

print("\n## Machine and run\n")
print(f"- date: {env['DATE']}")
print(f"- CPU: {env['CPU_MODEL']}, nproc {nproc}")
print(f"- load average (1/5/15 min) at start: {env['LOAD_START']}; at end: {env['LOAD_END']}")
if busy:
    print(
        f"- **busy machine**: the 1-min load average reached {max(loads)} on {nproc} cores"
        " (other work running). Absolute times are inflated and noisy and the ratios biased"
        " (PyTorch's OpenMP threads lose more to competing processes than Burn's rayon pool)."
        " Re-run on an idle machine for a fair comparison."
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
