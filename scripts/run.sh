#!/usr/bin/env bash
# The main job on the embedded default (synthetic data): set up, build, and run the whole
# experiment as one resumable study (`defectkit study study=synthetic_quick`): generate and
# check the synthetic MVTec-like set, sweep A, B and C (3 settings each), select each model's
# setting on validation data, train it at 3 seeds, export every run (and B's teacher) to ONNX,
# embed the data set's splits with ONNX Runtime into HDF5 (with feature maps), compare every
# detector (Mahalanobis, Euclidean, k-NN, reconstruction error, PaDiM, PatchCore) on every
# model x seed, quantize the top 3 models to int8 and benchmark FP32 against INT8, cluster
# B's and the teacher's embeddings with DBSCAN, and write the report (report.md, report.html).
# Then the deployment verbs on the study's distilled model B: a detector with its scored ONNX
# bundle, batch scoring of the test folders, and heat maps from PaDiM.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/env.sh
bash scripts/setup.sh
cargo build --release --quiet
dk() { "$DEFECTKIT_BIN" "$@"; }

echo "== data synth + check"
dk data synth --if-changed
dk data check
S=studies/synthetic_quick
B="$S/models/b_s42"
echo "== the study's models in use: B's detector (+ its scored ONNX bundle), batch scoring, heat maps"
# (the study's own stages come last below; these reuse its finished steps when it ran before)
dk study study=synthetic_quick --until embed
dk detect "$B/embeddings.h5" --bundle
dk detect "$B/embeddings.h5" detector=padim
dk score data/synthetic/*/test --model "$B/model.onnx" \
  --detector "$B/detect/mahalanobis/detector.json" --out "$B/scores.csv"
dk score data/synthetic/bottle/test --model "$B/model.onnx" \
  --detector "$B/detect/padim/detector.json" --class bottle --maps "$B/heatmaps" \
  --out "$B/scores_padim.csv"
echo "== study synthetic_quick (sweeps -> selection -> seeds -> export -> embed -> compare -> bench -> cluster -> report)"
dk study study=synthetic_quick --model-readmes crates/defectkit-train/src/models
