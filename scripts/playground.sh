#!/usr/bin/env bash
# Builds the playground (a static page running the engine in the browser)
# into target/playground/. With --serve, then serves it on
# http://127.0.0.1:${PORT:-8765}/ until interrupted.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
OUT="$ROOT/target/playground"

ensure_rust
WBG_VERSION="$(grep -A1 '^name = "wasm-bindgen"$' Cargo.lock | sed -n 's/^version = "\(.*\)"/\1/p')"
if [[ "$(wasm-bindgen --version 2>/dev/null || true)" != *"$WBG_VERSION"* ]]; then
    log "installing wasm-bindgen-cli $WBG_VERSION into .tools/cargo"
    cargo install --quiet wasm-bindgen-cli --version "$WBG_VERSION" --root "$TOOLS/cargo"
fi

log "building the playground engine (wasm32-unknown-unknown)"
# wasm-bindgen reads the target_features section that `strip` would remove;
# it drops the names itself (below).
CARGO_PROFILE_RELEASE_STRIP=false cargo build --quiet --release --target wasm32-unknown-unknown -p graylane-playground
rm -rf "$OUT"
mkdir -p "$OUT"
wasm-bindgen --target web --no-typescript --remove-name-section --remove-producers-section --out-dir "$OUT" \
    "${CARGO_TARGET_DIR:-$ROOT/target}/wasm32-unknown-unknown/release/graylane_playground.wasm"
BG="$OUT/graylane_playground_bg.wasm"
# No wasm-opt here: Debian's binaryen (108) rewrites wasm-bindgen's externref
# table as anyref, and browsers then refuse the module. The release profile
# (opt-level "z", LTO) already keeps it small.
cp playground/index.html playground/app.js playground/style.css "$OUT/"
log "playground: $OUT ($(stat -c %s "$BG") bytes of wasm)"

if [ "${1:-}" = "--serve" ]; then
    PORT="${PORT:-8765}"
    log "serving http://127.0.0.1:$PORT/ (Ctrl-C stops)"
    exec python3 -m http.server --bind 127.0.0.1 --directory "$OUT" "$PORT"
fi
