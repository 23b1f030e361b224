#!/usr/bin/env bash
# Fetch the ONNX Runtime shared library that defectkit's runtime loads (`ort` with
# load-dynamic) from the official PyPI wheel into the project-local, git-ignored
# .cache/onnxruntime/. The binary looks there by default; ORT_DYLIB_PATH overrides it.
# Idempotent: does nothing when the wanted version is already in place.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VERSION="${DEFECTKIT_ORT_VERSION:-1.31.1}"
DEST="$ROOT/.cache/onnxruntime"
PY="${PYTHON:-python3}"

if [ -f "$DEST/libonnxruntime.so" ] && [ "$(cat "$DEST/VERSION" 2>/dev/null || true)" = "$VERSION" ]; then
  exit 0
fi
echo "setup-ort: fetching onnxruntime $VERSION (the PyPI wheel) into $DEST" >&2
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$PY" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --python-version 3.11 --dest "$tmp" "onnxruntime==$VERSION"
wheel="$(ls "$tmp"/onnxruntime-*.whl | head -n1)"
"$PY" - "$wheel" "$tmp/lib" <<'PY'
import sys, zipfile, os
wheel, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
with zipfile.ZipFile(wheel) as z:
    names = [n for n in z.namelist() if os.path.basename(n).startswith("libonnxruntime.so")]
    if not names:
        sys.exit(f"no libonnxruntime.so in {wheel}")
    for n in names:
        with z.open(n) as src, open(os.path.join(out, os.path.basename(n)), "wb") as dst:
            dst.write(src.read())
PY
mkdir -p "$DEST"
lib="$(ls "$tmp"/lib/libonnxruntime.so* | sort | tail -n1)"
cp "$lib" "$DEST/libonnxruntime.so.tmp"
mv "$DEST/libonnxruntime.so.tmp" "$DEST/libonnxruntime.so"
echo "$VERSION" >"$DEST/VERSION"
echo "setup-ort: $DEST/libonnxruntime.so ($VERSION)" >&2
