#!/usr/bin/env bash
# The main job on the embedded default (synthetic data): set up, build, generate the
# synthetic MVTec-like set, check it. Later stages (train, export, embed, ...) join here.
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
