#!/usr/bin/env bash
# The main job on the embedded default (synthetic data): set up, build, generate the
# synthetic MVTec-like set, check it, train A, C and B briefly. Later stages (export,
# embed, ...) join here.
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
# Short training runs of the three models (trainer=fast: 3 epochs).
echo "== train A (cnn_scratch)"
dk train trainer=fast hydra.run.dir=outputs/main/a
echo "== train C (unet_ae)"
dk train model=unet_ae trainer=fast hydra.run.dir=outputs/main/c
echo "== train B (cnn_distilled; teacher trained here: no pretrained weights on this machine)"
dk train model=cnn_distilled trainer=fast model.teacher.train_epochs=3 hydra.run.dir=outputs/main/b
