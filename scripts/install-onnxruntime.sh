#!/usr/bin/env bash
# Installs the ONNX Runtime shared library that anemone's `onnxruntime` backend
# loads at run time, into third_party/onnxruntime/lib/ of this repository.
# It comes from the PyPI wheel onnxruntime==1.31.1 (pip download --no-deps;
# nothing else is installed). Idempotent: does nothing if the library is there.
#
#   scripts/install-onnxruntime.sh            # install
#   ORT_VERSION=1.31.1 PYTHON=python3 scripts/install-onnxruntime.sh
set -euo pipefail

VERSION="${ORT_VERSION:-1.31.1}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$ROOT/third_party/onnxruntime/lib"
case "$(uname -s)" in
  Darwin) LIB="libonnxruntime.$VERSION.dylib" ;;
  *) LIB="libonnxruntime.so.$VERSION" ;;
esac

if [ -f "$DEST/$LIB" ]; then
  echo "ONNX Runtime $VERSION is already installed: $DEST/$LIB"
  exit 0
fi

PYTHON="${PYTHON:-}"
if [ -z "$PYTHON" ]; then
  for p in "$ROOT/.venv/bin/python" python3 python; do
    if command -v "$p" >/dev/null 2>&1 && "$p" -m pip --version >/dev/null 2>&1; then PYTHON="$p"; break; fi
  done
fi
[ -n "$PYTHON" ] || { echo "error: need python with pip (set PYTHON=...)" >&2; exit 1; }

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
echo "Downloading the onnxruntime==$VERSION wheel with $PYTHON -m pip ..."
"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --dest "$TMP" "onnxruntime==$VERSION"
WHEEL="$(ls "$TMP"/onnxruntime-"$VERSION"-*.whl | head -n 1)"
[ -f "$WHEEL" ] || { echo "error: no onnxruntime $VERSION wheel for this platform" >&2; exit 1; }

"$PYTHON" - "$WHEEL" "$TMP/x" <<'PY'
import sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    names = [n for n in z.namelist()
             if n.startswith("onnxruntime/capi/libonnxruntime.") and (".so" in n or n.endswith(".dylib"))]
    if not names:
        sys.exit("error: the wheel has no onnxruntime/capi/libonnxruntime.* library")
    for n in names:
        z.extract(n, out)
PY

mkdir -p "$DEST"
cp -f "$TMP"/x/onnxruntime/capi/libonnxruntime.* "$DEST/"
[ -f "$DEST/$LIB" ] || { echo "error: the wheel did not contain $LIB" >&2; ls "$DEST" >&2; exit 1; }
echo "Installed ONNX Runtime $VERSION: $DEST/$LIB"
echo "(anemone finds it there; elsewhere, set ORT_DYLIB_PATH=$DEST/$LIB)"
