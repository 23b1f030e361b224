#!/usr/bin/env bash
# The test suite: set up (system packages, Python peers), then every Rust test in release
# mode (the same build the main job uses). Peer checks are required here, never skipped.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/env.sh
bash scripts/setup.sh
export DEFECTKIT_REQUIRE_PEERS=1
cargo test --release "$@"
