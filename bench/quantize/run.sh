#!/usr/bin/env bash
# FP32 vs INT8 for A, B, C and the teacher: our quantizer, the peer (onnxruntime-Python's
# quantize_static on the same calibration tensors), then `defectkit bench --quantized`
# into bench/results/quantized.{md,csv} + bench/results/quantized/*.png.
#
#   bash bench/quantize/run.sh                      # every exports/main model
#   MODELS="exports/main/a exports/main/b" THREADS=1 bash bench/quantize/run.sh
#
# Environment: MODELS (dirs with model.onnx), THREADS (intra-op threads; default ONNX
# Runtime's), BATCH (default 1,16), ITERATIONS (default 50), OUT (default
# bench/results/quantized), PY (default .venv/bin/python), extra `defectkit bench`
# arguments in BENCH_ARGS.
#
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=/dev/null
source scripts/env.sh
BIN=${DEFECTKIT_BIN}
PY=${PY:-.venv/bin/python}
MODELS=${MODELS:-"exports/main/a exports/main/b exports/main/c exports/main/teacher"}
BATCH=${BATCH:-1,16}
ITERATIONS=${ITERATIONS:-50}
OUT=${OUT:-bench/results/quantized}
THREAD_ARGS=()
if [[ -n "${THREADS:-}" ]]; then THREAD_ARGS=(--threads "$THREADS"); fi

[[ -x "$BIN" ]] || { echo "no defectkit binary at $BIN: run cargo build --release" >&2; exit 1; }
[[ -x "$PY" ]] || { echo "no Python at $PY: run bash scripts/setup-python.sh" >&2; exit 1; }

bench_dirs=()
failed=()
for dir in $MODELS; do
  [[ -f "$dir/model.onnx" ]] || { echo "$dir/model.onnx: missing (defectkit export)" >&2; exit 1; }
  cal="$dir/calibration.npy"
  echo "== $dir" >&2
  # ---- step 1: OUR quantizer (writes model.int8.onnx and the calibration tensors) ----
  if ! "$BIN" quantize "$dir/model.onnx" --out "$dir/model.int8.onnx" \
        --save-calibration "$cal" "${THREAD_ARGS[@]}"; then
    echo "warning: defectkit quantize failed for $dir; left out" >&2
    failed+=("$dir")
    continue
  fi
  # ---- step 2: the PEER on the same calibration tensors ----
  "$PY" bench/peers/ort_quantize.py --model "$dir/model.onnx" --calibration "$cal" \
    --out "$dir/model.int8.ort.onnx"
  bench_dirs+=("$dir")
done

[[ ${#bench_dirs[@]} -gt 0 ]] || { echo "nothing to benchmark: every quantization failed" >&2; exit 1; }
# ---- step 3: the bench (both int8 graphs on the same session options) ----
# shellcheck disable=SC2086
"$BIN" bench --quantized --no-quantize --models "${bench_dirs[@]}" --batch "$BATCH" \
  --iterations "$ITERATIONS" "${THREAD_ARGS[@]}" --out "$OUT" ${BENCH_ARGS:-}
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "our quantizer failed for: ${failed[*]} (left out of $OUT.md)" >&2
  exit 1
fi
