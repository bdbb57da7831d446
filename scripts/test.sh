#!/usr/bin/env bash
# The test command: installs what it needs into .tools/, then runs every
# check, from formatting to real Envoy end-to-end tests.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
START=$(date +%s)
step() {
    STEP_NOW="$*"
    log "$* (+$(( $(date +%s) - START ))s)"
}
# A failure's last line names the step and the failing tests (lib.sh).
trap report_failure EXIT
# This run's failing tests keep their files here (the harness writes them).
rm -rf "$GRAYLANE_EVIDENCE"

step "toolchain (rust-toolchain.toml) and tools"
ensure_rust
rustc --version
apt_install wasm-opt binaryen
apt_install node nodejs
# The dashboard test (wasm-tests/tests/dashboard.rs) runs a real Prometheus
# (its own process and config; the package's service plays no part).
apt_install prometheus prometheus --no-install-recommends
ensure_envoy
echo "envoy: $("$GRAYLANE_ENVOY" --version 2>/dev/null | tr -s "\n" " ")"
WBG_VERSION="$(grep -A1 '^name = "wasm-bindgen"$' Cargo.lock | sed -n 's/^version = "\(.*\)"/\1/p')"
WBG_HAVE="$(wasm-bindgen-test-runner --version 2>/dev/null || true)"
if [[ "$WBG_HAVE" != *"$WBG_VERSION"* ]]; then
    step "installing wasm-bindgen-cli $WBG_VERSION into .tools/cargo"
    cargo install --quiet wasm-bindgen-cli --version "$WBG_VERSION" --root "$TOOLS/cargo"
fi
# The book (docs/): mdBook, without its server and file watcher.
MDBOOK_VERSION=0.5.4
if [[ "$(mdbook --version 2>/dev/null)" != *"$MDBOOK_VERSION"* ]]; then
    step "installing mdBook $MDBOOK_VERSION into .tools/cargo"
    cargo install --quiet mdbook --version "$MDBOOK_VERSION" --locked --no-default-features --features search --root "$TOOLS/cargo"
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "scripts: syntax, and scripts/bench/cost-spec.json as configs.py writes it"
for f in scripts/*.sh scripts/bench/*.sh; do bash -n "$f"; done
python3 -m py_compile scripts/bench/*.py scripts/*.py
python3 scripts/bench/configs.py check

step "clippy (native, all targets)"
cargo clippy --quiet --workspace --all-targets -- -D warnings
step "clippy (wasm32-wasip1)"
cargo clippy --quiet --lib --target wasm32-wasip1 -- -D warnings
step "clippy (wasm32-wasip1, the stage-timing measurement build)"
cargo clippy --quiet --lib --target wasm32-wasip1 --features stage-timing -- -D warnings

step "native tests"
run_tests native cargo test --quiet -p graylane

step "the book: mdbook build docs (into target/book/; links and citations: tests/references.rs)"
mdbook build docs

step "release filter"
build_wasm
SIZE=$(stat -c %s "$WASM")
if [ "$SIZE" -gt 400000 ]; then
    echo "the shipped filter is $SIZE bytes; the limit is 400000" >&2
    exit 1
fi

step "envoy --mode validate of every Envoy config under envoy/"
# The list, and what it leaves out, is envoy_configs in lib.sh.
while IFS= read -r cfg; do
    "$GRAYLANE_ENVOY" --mode validate -c "$cfg" -l error --disable-hot-restart >/dev/null 2>"$TOOLS/validate.log" \
        || { cat "$TOOLS/validate.log" >&2; echo "invalid: $cfg" >&2; exit 1; }
    echo "valid: $cfg"
done < <(envoy_configs)

step "engine tests compiled to wasm32-unknown-unknown (wasm-bindgen-test under Node)"
CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
    run_tests engine-wasm cargo test -p graylane-wasm-tests --target wasm32-unknown-unknown --test engine_wasm

step "playground: build it, then drive it in headless Chromium and compare with graylane explain"
apt_install chromium chromium
apt_install chromedriver chromium-driver
bash scripts/playground.sh
run_tests playground cargo test --quiet -p graylane-playground -- --nocapture

toolchains="$(rustup toolchain list)"
if [[ "$toolchains" == *nightly* ]]; then
    step "fuzzing smoke: each cargo-fuzz target for 20 s (nightly)"
    bash scripts/fuzz.sh 20
else
    step "fuzzing smoke skipped: no nightly toolchain"
fi

step "end-to-end tests in real Envoy"
# The HTTP/2 and gRPC tests' Python client and server (grpcio, h2).
ensure_grpc
# The rollout tests (wasm-tests/tests/rollout.rs) run the real binary.
cargo build --quiet --bin graylane
# Not --quiet: the log names each test binary, so a failure names its test.
run_tests e2e cargo test -p graylane-wasm-tests -- --test-threads 2

step "the Quick start: scripts/run.sh --config with a config of one's own"
bash scripts/quickstart-check.sh

step "Envoy version matrix: each minor from 1.36 to the pinned one (about 1 min each)"
bash scripts/compat.sh || {
    FAILED_TESTS="$(paste -sd ' ' - <"$TOOLS/compat/failed.txt" 2>/dev/null || true)"
    exit 1
}

step "all checks passed in $(( $(date +%s) - START ))s"
