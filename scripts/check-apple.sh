#!/usr/bin/env bash
# Type-checks anemone's Apple-only code (the `coreml` backend on objc2-core-ml,
# the `tract-metal` backend, ONNX Runtime's CoreML provider) against the real
# crates, on any system: `cargo check` of anemone-backends with the features
# coreml, metal, onnxruntime and cuda, as if the target were an Apple one,
# then again without onnxruntime (its default feature, which anemone-server's
# library leaves off). Warnings in anemone-backends fail either check.
#
# How, since Apple crates do not build elsewhere:
# - a copy of the workspace (our sources only) is made in a temporary folder,
#   with anemone-backends' `cfg(target_vendor = "apple")` dependencies made
#   unconditional;
# - the Apple crates that link a framework unconditionally (objc2-core-ml,
#   ...) are copied from cargo's registry into the temporary folder, the
#   `kind = "framework"` of their `#[link]` dropped (a check links nothing;
#   rustc refuses framework links on non-Apple targets), and patched in with
#   `[patch.crates-io]` in the copy's Cargo.toml;
# - a rustc wrapper passes `--cfg docsrs` to the objc2 family (objc2 then skips
#   its "only works on Apple platforms" compile_error!, as on docs.rs) and
#   `--cfg target_vendor="apple"` (and `-D warnings`) to anemone-backends
#   alone, so exactly the code a Mac compiles is checked.
# Nothing is written to the repository except build output in the
# workspace's target folder (CARGO_TARGET_DIR, else target/; override with
# ANEMONE_APPLE_CHECK_TARGET), and the copies, in its apple-check-src/
# (removed on exit). Sharing the target folder is what makes it cheap: the
# dependencies checked by `cargo clippy` (scripts/test.sh runs it first) are
# reused, where a folder of its own checked them all again (63 s against
# 222 s on the 2-core CI machine, 2026-12-06). The copies sit at the same
# path on every run, so a second run checks only what changed. One run at a
# time per target folder. Fails when the Apple code does not compile.
# ANEMONE_APPLE_CHECK_CMD=clippy runs clippy instead of check.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET="${ANEMONE_APPLE_CHECK_TARGET:-${CARGO_TARGET_DIR:-$REPO/target}}"
# A relative folder is the caller's, as cargo reads CARGO_TARGET_DIR (the
# checks below run from the copy's folder).
[[ "$TARGET" == /* ]] || TARGET="$PWD/$TARGET"
TMP="$TARGET/apple-check-src"
rm -rf "$TMP"
mkdir -p "$TMP"
trap 'rm -rf "$TMP"' EXIT

# 1. Our workspace, with the Apple dependencies unconditional.
WS="$TMP/ws"
mkdir -p "$WS"
cp -r "$REPO/Cargo.toml" "$REPO/Cargo.lock" "$REPO/proto" "$WS/"
mkdir -p "$WS/crates"
for c in "$REPO"/crates/*/; do
    name="$(basename "$c")"
    mkdir -p "$WS/crates/$name"
    (cd "$c" && tar cf - --exclude=./target .) | (cd "$WS/crates/$name" && tar xf -)
done
BACKENDS_TOML="$WS/crates/anemone-backends/Cargo.toml"
grep -q "^\[target.'cfg(target_vendor = \"apple\")'.dependencies\]" "$BACKENDS_TOML" || {
    echo "check-apple: anemone-backends has no [target.'cfg(target_vendor = \"apple\")'.dependencies] table" >&2
    exit 1
}
sed -i.bak "s/^\[target.'cfg(target_vendor = \"apple\")'.dependencies\]/[target.'cfg(all())'.dependencies]/" "$BACKENDS_TOML"
# ONNX Runtime's crate turns on smallvec's `const_generics`; turned on here in
# both checks (3 and 4), so the one without ONNX Runtime reuses the other's
# dependency builds instead of checking the whole tract stack again (smallvec
# sits under it). anemone-backends does not use smallvec itself.
printf '\n[target.%s.dependencies]\nsmallvec = { version = "1", features = ["const_generics"] }\n' \
    "'cfg(not(any()))'" >>"$BACKENDS_TOML"

# 2. Apple crates with unconditional framework links: patched copies.
cargo fetch --locked --manifest-path "$REPO/Cargo.toml" >/dev/null
PATCHED="$TMP/patched"
mkdir -p "$PATCHED"
# Not --locked: the copy's lock file gains the smallvec line above (the
# versions stay as locked; --offline resolves nothing new).
cargo metadata --offline --format-version 1 --all-features --manifest-path "$WS/Cargo.toml" >"$TMP/metadata.json"
python3 - "$TMP/metadata.json" "$PATCHED" "$WS/Cargo.toml" <<'PY'
import json, pathlib, re, shutil, sys
meta, patched, ws_toml = json.load(open(sys.argv[1])), pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3])
framework = re.compile(r'(link\(\s*name\s*=\s*"[^"]+")\s*,\s*kind\s*=\s*"framework"')
patches = []
for p in meta["packages"]:
    if not (p.get("source") or "").startswith("registry+"):
        continue
    root = pathlib.Path(p["manifest_path"]).parent
    sources = [f for f in root.rglob("*.rs") if framework.search(f.read_text(errors="ignore"))]
    if not sources:
        continue
    dest = patched / f'{p["name"]}-{p["version"]}'
    shutil.copytree(root, dest)
    for f in dest.rglob("*.rs"):
        text = f.read_text(errors="ignore")
        if framework.search(text):
            f.write_text(framework.sub(r"\1", text))
    patches.append(f'{p["name"]} = {{ path = "{dest}" }}')
if not any(line.startswith("objc2-core-ml ") for line in patches):
    sys.exit("check-apple: objc2-core-ml was not found among the dependencies")
with open(ws_toml, "a") as out:
    out.write("\n[patch.crates-io]\n" + "\n".join(patches) + "\n")
print("check-apple: patched framework links in " + ", ".join(l.split()[0] for l in patches))
PY

# 3. A rustc wrapper: docsrs for the objc2 family, an Apple target_vendor for us.
WRAPPER="$TMP/rustc-wrapper"
cat >"$WRAPPER" <<'SH'
#!/usr/bin/env bash
crate=""
prev=""
for a in "$@"; do
    [[ "$prev" == "--crate-name" ]] && crate="$a"
    prev="$a"
done
case "$crate" in
    objc2|objc2_*|block2|dispatch2)
        RUSTC_BOOTSTRAP=1 exec "$@" --cfg docsrs ;;
    anemone_backends)
        exec "$@" --cfg 'target_vendor="apple"' -A explicit_builtin_cfgs_in_flags -D warnings ;;
    *)
        exec "$@" ;;
esac
SH
chmod +x "$WRAPPER"

CMD="${ANEMONE_APPLE_CHECK_CMD:-check}"
cd "$WS"
# --tests: the Apple-only tests (coreml/apple/tests.rs, tract/metal.rs) too,
# which a Mac runs with `cargo test -p anemone-backends --features coreml,metal --lib`.
# The `cuda` feature rides along: its code is `target_os = "linux"`, which
# the wrapper leaves as it is, so the CUDA backend is checked here as well.
echo "check-apple: cargo $CMD -p anemone-backends --features coreml,metal,onnxruntime,cuda --lib --tests (as an Apple target)"
RUSTC_WRAPPER="$WRAPPER" CARGO_TARGET_DIR="$TARGET" \
    cargo "$CMD" --offline -p anemone-backends --features coreml,metal,onnxruntime,cuda --lib --tests
echo "check-apple: the Apple code and its tests compile"
# 4. Without ONNX Runtime, anemone-backends' default feature: what a user of
# anemone-server's library builds (the workspace build unifies features with
# anemone-cli's, which turns it on, and once hid a helper outside its feature
# gate). The dependencies were checked by step 3 with the same features, so
# this checks anemone-backends alone, again (a few seconds, against about
# two minutes for a clippy of its own in the workspace's target).
echo "check-apple: cargo $CMD -p anemone-backends --no-default-features --features coreml,metal,cuda --lib (without ONNX Runtime)"
RUSTC_WRAPPER="$WRAPPER" CARGO_TARGET_DIR="$TARGET" \
    cargo "$CMD" --offline -p anemone-backends --no-default-features --features coreml,metal,cuda --lib
echo "check-apple: anemone-backends compiles without ONNX Runtime"
