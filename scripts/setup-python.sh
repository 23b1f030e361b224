#!/usr/bin/env bash
# Create (or update) the project-local Python venv with the peer tools the tests compare
# defectkit against: hydra-core (the oracle for config composition), later onnx, onnxruntime,
# h5py. Idempotent: does nothing when the requirements have not changed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DEFECTKIT_VENV:-$ROOT/.venv}"
REQ="$ROOT/scripts/requirements-peers.txt"
PY="${PYTHON:-python3}"

if ! command -v "$PY" >/dev/null 2>&1; then
  echo "setup-python: $PY not found; peer checks will be skipped" >&2
  exit 3
fi
mkdir -p "$(dirname "$VENV")"
exec 9>"$VENV.lock"
flock 9
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
want="$(sha256sum "$REQ" | cut -d' ' -f1)"
stamp="$VENV/.requirements.sha256"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  echo "setup-python: installing $(grep -cv '^#' "$REQ") peer package(s) into $VENV" >&2
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQ"
  echo "$want" >"$stamp"
fi
