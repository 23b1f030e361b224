# Sourced by the scripts: one Cargo target dir outside the clone, shared by builds, tests and
# CI, so a fresh clone reuses an earlier build.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/defectkit/target}"
DEFECTKIT_BIN="$CARGO_TARGET_DIR/release/defectkit"
export DEFECTKIT_BIN
