#!/usr/bin/env bash
# The test suite: set up (system packages, Python peers), lint, then every Rust test of the
# workspace in release mode (the same build the main job uses). Peer checks are required
# here, never skipped.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/env.sh
bash scripts/setup.sh
export DEFECTKIT_REQUIRE_PEERS=1

# Lint first: it fails in seconds where the tests take minutes.
cargo fmt --all -- --check
cargo clippy --release --workspace --all-targets --quiet -- -D warnings

cargo test --release --workspace "$@"

# Design seam 1: the deployment side never depends on Burn. The crate graph enforces it (an
# import of Burn in defectkit-deploy or defectkit-core does not compile); this keeps anyone
# from adding the dependency back. The slim binary (--no-default-features) must build too.
for crate in defectkit-core defectkit-deploy; do
  if cargo tree -p "$crate" -e normal --prefix none | grep -q "^burn"; then
    echo "test.sh: $crate depends on Burn (design seam 1, ARCHITECTURE.md)" >&2
    exit 1
  fi
done
# In its own target dir: other features rebuild many dependencies and would replace the main
# build's binary.
CARGO_TARGET_DIR="$CARGO_TARGET_DIR-slim" cargo check --no-default-features --bin defectkit --quiet
