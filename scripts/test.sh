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

# Design seam 1: the deploy side builds without Burn (`--no-default-features`). Checked in its
# own target dir: other features rebuild many dependencies, which would evict the main build.
CARGO_TARGET_DIR="$CARGO_TARGET_DIR-slim" cargo check --no-default-features --all-targets --quiet
if cargo tree --no-default-features -e normal 2>/dev/null | grep -q "burn"; then
  echo "test.sh: the --no-default-features build depends on Burn (design seam 1)" >&2
  exit 1
fi
