#!/usr/bin/env bash
# Install everything defectkit needs on a fresh Debian machine, idempotently:
# system packages (when missing), the Rust toolchain check, ONNX Runtime's library
# (scripts/setup-ort.sh), and the project-local Python
# venv with the peer tools the tests compare against (scripts/setup-python.sh).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# System packages: build tools for crates with C parts; HDF5 for the embedding store.
APT_PACKAGES=(pkg-config build-essential libhdf5-dev)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found. Install Rust (https://rustup.rs) and run this again." >&2
  exit 1
fi

# The ONNX Runtime shared library (the runtime loads it at run time).
bash "$ROOT/scripts/setup-ort.sh"

# Python peers (hydra-core, ...): optional for running, required by the tests.
if ! bash "$ROOT/scripts/setup-python.sh"; then
  echo "setup: Python peer tools could not be installed; the tests that compare against them will fail under scripts/test.sh" >&2
fi
echo "setup: ok" >&2
