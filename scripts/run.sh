#!/usr/bin/env bash
# The main job on the embedded default (synthetic data): set up, build, generate the
# synthetic MVTec-like set, check it, train A, C and B briefly, export each to ONNX, embed
# the data set's splits with ONNX Runtime into HDF5, fit and evaluate the anomaly detectors
# on each model's embeddings (image level, and patch level with anomaly maps and pixel
# metrics), compare them in one table, batch-score the test images and
# look for outliers with DBSCAN on PCA/t-SNE-reduced embeddings, quantize every model to
# int8 and benchmark FP32 against INT8.
# Later stages join here.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/env.sh
bash scripts/setup.sh
cargo build --release --quiet
dk() { "$DEFECTKIT_BIN" "$@"; }

echo "== data synth"
dk data synth --if-changed
echo "== data check"
dk data check
# Short training runs of the three models (trainer=fast: 3 epochs), in a fresh folder per
# invocation (a run dir is never overwritten; exports below read exactly these runs).
RUNS="outputs/main/$(date +%Y-%m-%d_%H-%M-%S)"
echo "== train A (cnn_scratch)"
dk train trainer=fast hydra.run.dir="$RUNS/a"
echo "== train C (unet_ae)"
dk train model=unet_ae trainer=fast hydra.run.dir="$RUNS/c"
echo "== train B (cnn_distilled; teacher trained here: no pretrained weights on this machine)"
dk train model=cnn_distilled trainer=fast model.teacher.train_epochs=3 hydra.run.dir="$RUNS/b"

# Export each model (and B's teacher) to ONNX; each export checks ONNX Runtime against Burn.
for m in a b c; do
  echo "== export $m"
  dk export "$RUNS/$m" --out "exports/main/$m"
done
echo "== export b --teacher"
dk export "$RUNS/b" --teacher --out exports/main/teacher
# Embeddings of train/val/test for the anomaly and clustering stages, with the feature
# maps of 100 of the 192 channels (seeded, as PaDiM does) for the patch detectors.
for m in a b c teacher; do
  echo "== embed $m"
  dk embed --model "exports/main/$m/model.onnx" --out "exports/main/$m/embeddings.h5" \
    --maps --map-channels 100
done

# Anomaly detection: the default detector (Mahalanobis, Ledoit-Wolf shrinkage, threshold =
# 95th percentile of val good) per model, with its scored ONNX bundle; C also with its
# reconstruction error.
for m in a b c teacher; do
  echo "== detect $m"
  dk detect "exports/main/$m/embeddings.h5" --bundle
done
echo "== detect c (local reconstruction error)"
dk detect exports/main/c/embeddings.h5 detector=recon
# Patch level: PaDiM and PatchCore on B's feature maps (anomaly maps, pixel AUROC, AUPRO,
# overlays); the comparison below runs them for every model.
echo "== detect b (padim, patchcore)"
dk detect exports/main/b/embeddings.h5 detector=padim
dk detect exports/main/b/embeddings.h5 detector=patchcore
echo "== compare A, B, C and the teacher (every detector)"
dk detect --compare exports/main/{a,b,c,teacher}/embeddings.h5 --out exports/main/comparison
echo "== score the synthetic test images with B and its detector"
dk score data/synthetic/*/test --model exports/main/b/model.onnx \
  --detector exports/main/b/detect/mahalanobis/detector.json --out exports/main/b/scores.csv
echo "== score with B's PaDiM detector, writing a heat map per image"
dk score data/synthetic/bottle/test --model exports/main/b/model.onnx \
  --detector exports/main/b/detect/padim/detector.json --class bottle --maps exports/main/b/heatmaps \
  --out exports/main/b/scores_padim.csv
# Outlier analysis on B's embeddings (the distilled model the experiment is about; "best" is
# not picked from the comparison above, which is measured on test labels).
echo "== cluster b (PCA, t-SNE, DBSCAN; noise = candidate anomalies)"
dk cluster exports/main/b/embeddings.h5 --detector exports/main/b/detect/mahalanobis/detector.json
# Static int8 quantization (calibrated on train/good; the fusion check must find every
# quantized node fused into an int8 kernel) and FP32 vs INT8 side by side.
for m in a b c teacher; do
  echo "== quantize $m"
  dk quantize "exports/main/$m/model.onnx" --require-fused
done
echo "== bench --quantized (size, latency, memory, AUROC: FP32 vs INT8)"
dk bench --quantized --models exports/main/{a,b,c,teacher} --iterations 20 \
  --out exports/main/bench/quantized
echo "== done: exports/main/comparison/comparison.md, exports/main/b/cluster/cluster.md,"
echo "   exports/main/bench/quantized.md"
