#!/usr/bin/env bash
# Installs the ONNX Runtime shared library that anemone's `onnxruntime` backend
# loads at run time, into third_party/onnxruntime/lib/ of this repository.
# It comes from the PyPI wheel onnxruntime==1.31.1 (pip download --no-deps;
# nothing else is installed). Idempotent: does nothing if the library is there.
#
# The library does not depend on Python, so any CPython's wheel will do: the
# wheel for the Python at hand is tried first, then (with pip download
# --python-version) the wheels for CPython 3.13, 3.12 and 3.11 on this platform.
# onnxruntime 1.31.1 has no wheels for Python 3.10 or older.
#
# It fails soft: when no wheel can be had (no pip, no network, no wheel for
# this platform), it says why and exits 0, and anemone serves every model on
# tract, its pure-Rust engine. With --required it exits 1 instead.
#
#   scripts/install-onnxruntime.sh             # install, or warn and carry on
#   scripts/install-onnxruntime.sh --required  # install, or fail (the test setup)
#   ORT_VERSION=1.31.1 PYTHON=python3 scripts/install-onnxruntime.sh
set -euo pipefail

REQUIRED=0
[ "${1:-}" = "--required" ] && REQUIRED=1
VERSION="${ORT_VERSION:-1.31.1}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$ROOT/third_party/onnxruntime/lib"
case "$(uname -s)" in
  Darwin) LIB="libonnxruntime.$VERSION.dylib" ;;
  *) LIB="libonnxruntime.so.$VERSION" ;;
esac

# Says why ONNX Runtime is not installed, then exits: 0 (anemone runs on
# tract) or, with --required, 1.
give_up() {
  echo "warning: ONNX Runtime $VERSION not installed: $1" >&2
  echo "  anemone still serves every model on tract (pure Rust). To add ONNX Runtime later," >&2
  echo "  run this script again with pip and network access, or set ORT_DYLIB_PATH to a" >&2
  echo "  libonnxruntime $VERSION (from any onnxruntime==$VERSION wheel)." >&2
  [ "$REQUIRED" = 1 ] && exit 1
  exit 0
}

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
[ -n "$PYTHON" ] || give_up "no python with pip found (set PYTHON=...)"
"$PYTHON" -m pip --version >/dev/null 2>&1 || give_up "$PYTHON cannot run pip (set PYTHON=... to a python with pip)"

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
echo "Downloading the onnxruntime==$VERSION wheel with $PYTHON -m pip ..."
download() {
  "$PYTHON" -m pip download --quiet --disable-pip-version-check --no-deps \
    --only-binary=:all: --dest "$TMP" "$@" "onnxruntime==$VERSION" 2>"$TMP/pip.log"
}
if ! download; then
  found=0
  for v in 3.13 3.12 3.11; do
    abi="cp${v/./}"
    if download --python-version "$v" --implementation cp --abi "$abi"; then
      echo "(no wheel for $("$PYTHON" -V 2>&1); took the CPython $v wheel, whose library is the same)"
      found=1
      break
    fi
  done
  [ "$found" = 1 ] || give_up "pip found no onnxruntime==$VERSION wheel for this platform: $(tail -n 1 "$TMP/pip.log")"
fi
WHEEL="$(ls "$TMP"/onnxruntime-"$VERSION"-*.whl 2>/dev/null | head -n 1)"
[ -f "$WHEEL" ] || give_up "no onnxruntime $VERSION wheel for this platform"

"$PYTHON" - "$WHEEL" "$TMP/x" <<'PY' || give_up "cannot unpack $(basename "$WHEEL")"
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
[ -f "$DEST/$LIB" ] || give_up "the wheel did not contain $LIB"
echo "Installed ONNX Runtime $VERSION: $DEST/$LIB"
echo "(anemone finds it there; elsewhere, set ORT_DYLIB_PATH=$DEST/$LIB)"
