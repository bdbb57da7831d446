#!/usr/bin/env bash
# Packages the release filter as an OCI image layout that Istio can pull with
# `WasmPlugin.spec.url: oci://REGISTRY/graylane:TAG` once it has been pushed
# (oras, crane or skopeo; the commands are printed at the end).
#
#   scripts/package.sh [--no-build] [--tag TAG] [--out DIR] [--wasm FILE]
#
#   --no-build   do not build the filter (scripts/lib.sh build_wasm: release
#                build, unused exports stripped, wasm-opt)
#   --tag TAG    the tag in the layout (default: the version in Cargo.toml)
#   --out DIR    where to write (default: target/oci); writes DIR/graylane/
#                (the layout directory) and DIR/graylane.tar (the same layout
#                as a tarball, as `oci-archive:` and `oras --from-oci-layout`
#                read it)
#   --wasm FILE  package FILE instead of target/graylane.wasm (what Envoy loads)
#
# The output is deterministic: the same .wasm and tag give the same bytes and
# digests. SOURCE_DATE_EPOCH, when set, becomes the manifest's
# org.opencontainers.image.created annotation and the tarball's mtime (0
# otherwise). Needs only bash, coreutils, grep and GNU tar.
#
# Image format: the *oci* variant of the Wasm Image Specification
# (github.com/solo-io/wasm, spec/spec.md), laid out exactly as that spec's
# reference tool `wasme push` writes it (tools/wasme/pkg/push/push.go):
#   - manifest config: the runtime config JSON,
#     mediaType application/vnd.module.wasm.config.v1+json, holding
#     {"type","abiVersions","config":{"rootIds"}} (spec.md; no created/author/
#     platform: those belong to the OCI *container* config, not to this one);
#   - layers, exactly two: the same runtime config blob (same media type),
#     then the .wasm itself, mediaType
#     application/vnd.module.wasm.content.layer.v1+wasm, stored RAW: the layer
#     bytes are the .wasm file, not a tar and not compressed.
# Why two layers and not one: Istio's fetcher (istio/istio
# pkg/wasm/imagefetcher.go, extractOCIArtifactImage) rejects an oci-variant
# image unless it has exactly 2 layers ("number of layers must be 2 but got
# 1"), finds the layer whose media type is ...content.layer.v1+wasm and reads
# its bytes as-is (layer.Compressed(), no gunzip, no untar). The tar
# (plugin.wasm inside a tar+gzip layer) is the other, *compat* variant, which
# this script does not produce.
set -euo pipefail

readonly CONFIG_MEDIA_TYPE='application/vnd.module.wasm.config.v1+json'
readonly WASM_MEDIA_TYPE='application/vnd.module.wasm.content.layer.v1+wasm'
readonly MANIFEST_MEDIA_TYPE='application/vnd.oci.image.manifest.v1+json'
readonly INDEX_MEDIA_TYPE='application/vnd.oci.image.index.v1+json'
readonly NAME='graylane'
# The root_id the filter is configured with (envoy/demo.yaml). The Rust SDK
# serves every root_id with the same root context, so this is metadata only.
readonly ROOT_ID='graylane'

die() {
    printf 'package.sh: %s\n' "$*" >&2
    exit 1
}

usage() {
    sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

build=1
tag=''
out=''
wasm=''
while (($# > 0)); do
    case "$1" in
    --no-build) build=0 ;;
    --tag)
        (($# >= 2)) || die '--tag needs a value'
        tag="$2"
        shift
        ;;
    --tag=*) tag="${1#--tag=}" ;;
    --out)
        (($# >= 2)) || die '--out needs a value'
        out="$2"
        shift
        ;;
    --out=*) out="${1#--out=}" ;;
    --wasm)
        (($# >= 2)) || die '--wasm needs a value'
        wasm="$2"
        shift
        ;;
    --wasm=*) wasm="${1#--wasm=}" ;;
    -h | --help)
        usage
        exit 0
        ;;
    *) die "unknown argument: $1 (see --help)" ;;
    esac
    shift
done

# --out and --wasm are relative to where the script was started; everything
# else to the repository root.
absolute() {
    case "$1" in
    /*) printf '%s' "$1" ;;
    *) printf '%s/%s' "$PWD" "$1" ;;
    esac
}
[[ -z "$out" ]] || out="$(absolute "$out")"
[[ -z "$wasm" ]] || wasm="$(absolute "$wasm")"
cd "$root"

# The crate version: the first `version = "..."` in the [package] table.
version="$(awk '
    /^\[/ { in_pkg = ($0 == "[package]"); next }
    in_pkg && /^version[ \t]*=/ {
        sub(/^version[ \t]*=[ \t]*"/, ""); sub(/".*$/, ""); print; exit
    }' Cargo.toml)"
[[ -n "$version" ]] || die 'could not read the package version from Cargo.toml'
[[ -n "$tag" ]] || tag="$version"
# An OCI distribution-spec tag; also keeps the JSON below free of escapes.
[[ "$tag" =~ ^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$ ]] ||
    die "invalid tag '$tag' (allowed: [A-Za-z0-9_][A-Za-z0-9._-]{0,127})"
[[ "$version" =~ ^[A-Za-z0-9._+-]+$ ]] || die "unexpected version '$version' in Cargo.toml"

target_dir="${CARGO_TARGET_DIR:-target}"
[[ -n "$out" ]] || out="$target_dir/oci"
[[ -n "$wasm" ]] || wasm="$target_dir/$NAME.wasm"

if ((build)); then
    # The same artifact the tests and the demo load.
    (source scripts/lib.sh && build_wasm)
fi
[[ -f "$wasm" ]] || die "$wasm not found: build it with scripts/package.sh (without --no-build) or scripts/test.sh"
[[ "$(head -c 4 "$wasm" | od -An -tx1 | tr -d ' \n')" == '0061736d' ]] ||
    die "$wasm is not a WebAssembly module"

# The Proxy-Wasm ABI the module exports (proxy_abi_version_0_2_1 -> v0.2.1).
abi_export="$(LC_ALL=C grep -aoE 'proxy_abi_version_[0-9]+_[0-9]+_[0-9]+' "$wasm" | LC_ALL=C sort -u | head -n 1 || true)"
[[ -n "$abi_export" ]] || die "$wasm exports no proxy_abi_version_* function: not a Proxy-Wasm module"
abi_version="v$(printf '%s' "${abi_export#proxy_abi_version_}" | tr '_' '.')"

created_annotation=''
mtime=0
if [[ -n "${SOURCE_DATE_EPOCH:-}" ]]; then
    [[ "$SOURCE_DATE_EPOCH" =~ ^[0-9]+$ ]] || die "SOURCE_DATE_EPOCH must be whole seconds: '$SOURCE_DATE_EPOCH'"
    mtime="$SOURCE_DATE_EPOCH"
    created_annotation="\"org.opencontainers.image.created\":\"$(date -u -d "@$mtime" '+%Y-%m-%dT%H:%M:%SZ')\","
fi

mkdir -p "$out"
out="$(cd "$out" && pwd)"
layout="$out/$NAME"
tarball="$out/$NAME.tar"
stage="$(mktemp -d "$out/.$NAME.XXXXXX")"
trap 'rm -rf -- "$stage"' EXIT
mkdir -p "$stage/layout/blobs/sha256"

sha256() { sha256sum "$1" | cut -d ' ' -f 1; }
size() { stat -c %s "$1"; }

# Writes the blob at $1 into the layout, sets blob_digest and blob_size.
add_blob() {
    blob_digest="$(sha256 "$1")"
    blob_size="$(size "$1")"
    cp -- "$1" "$stage/layout/blobs/sha256/$blob_digest"
}

# Runtime config (spec.md, "Envoy WASM Filter Specification").
printf '{"type":"envoy_proxy","abiVersions":["%s"],"config":{"rootIds":["%s"]}}' \
    "$abi_version" "$ROOT_ID" >"$stage/runtime-config.json"
add_blob "$stage/runtime-config.json"
config_digest="$blob_digest" config_size="$blob_size"

add_blob "$wasm"
wasm_digest="$blob_digest" wasm_size="$blob_size"

config_descriptor="\"mediaType\":\"$CONFIG_MEDIA_TYPE\",\"digest\":\"sha256:$config_digest\",\"size\":$config_size"
printf '%s' \
    '{"schemaVersion":2,' \
    "\"mediaType\":\"$MANIFEST_MEDIA_TYPE\"," \
    "\"config\":{$config_descriptor}," \
    '"layers":[' \
    "{$config_descriptor,\"annotations\":{\"org.opencontainers.image.title\":\"runtime-config.json\"}}," \
    "{\"mediaType\":\"$WASM_MEDIA_TYPE\",\"digest\":\"sha256:$wasm_digest\",\"size\":$wasm_size," \
    "\"annotations\":{\"org.opencontainers.image.title\":\"$NAME.wasm\"}}" \
    '],"annotations":{' \
    "\"module.wasm.runtime/type\":\"envoy_proxy\"," \
    "\"module.wasm.runtime/abi_version\":\"$abi_version\"," \
    "$created_annotation" \
    "\"org.opencontainers.image.title\":\"$NAME\"," \
    "\"org.opencontainers.image.version\":\"$version\"" \
    '}}' >"$stage/manifest.json"
add_blob "$stage/manifest.json"
manifest_digest="$blob_digest" manifest_size="$blob_size"

# image-layout.md: the oci-layout marker and index.json, whose descriptor
# carries the tag as org.opencontainers.image.ref.name.
printf '{"imageLayoutVersion":"1.0.0"}' >"$stage/layout/oci-layout"
printf '%s' \
    "{\"schemaVersion\":2,\"mediaType\":\"$INDEX_MEDIA_TYPE\",\"manifests\":[" \
    "{\"mediaType\":\"$MANIFEST_MEDIA_TYPE\",\"digest\":\"sha256:$manifest_digest\",\"size\":$manifest_size," \
    "\"annotations\":{\"org.opencontainers.image.ref.name\":\"$tag\"}}]}" >"$stage/layout/index.json"

find "$stage/layout" -type d -exec chmod 0755 {} +
find "$stage/layout" -type f -exec chmod 0644 {} +

# The layout as a tarball, files at its root, byte-for-byte reproducible.
LC_ALL=C tar --create --file="$stage/layout.tar" --directory="$stage/layout" \
    --format=ustar --sort=name --mtime="@$mtime" \
    --owner=0 --group=0 --numeric-owner --mode='u=rwX,go=rX' \
    blobs index.json oci-layout

rm -rf -- "$layout"
mv -- "$stage/layout" "$layout"
mv -f -- "$stage/layout.tar" "$tarball"

# Paths as the user would type them from the repository root.
show() {
    case "$1" in
    "$root"/*) printf '%s' "${1#"$root"/}" ;;
    *) printf '%s' "$1" ;;
    esac
}
l="$(show "$layout")"
t="$(show "$tarball")"

cat <<EOF
Wrote the OCI image layout $l (Wasm Image Specification, oci variant)
  tag       $tag
  manifest  sha256:$manifest_digest ($manifest_size bytes)
  config    sha256:$config_digest ($config_size bytes, $CONFIG_MEDIA_TYPE)
  layer 1   sha256:$config_digest ($config_size bytes, $CONFIG_MEDIA_TYPE)
  layer 2   sha256:$wasm_digest ($wasm_size bytes, $WASM_MEDIA_TYPE, raw $(show "$wasm"))
  abi       $abi_version
Wrote the same layout as a tarball: $t ($(size "$tarball") bytes, sha256:$(sha256 "$tarball"))

Push it (REGISTRY is e.g. ghcr.io/you); each keeps the manifest digest above:
  oras cp --from-oci-layout $l:$tag REGISTRY/$NAME:$tag
  oras cp --from-oci-layout $t:$tag REGISTRY/$NAME:$tag
  skopeo copy --preserve-digests oci:$l:$tag docker://REGISTRY/$NAME:$tag
  skopeo copy --preserve-digests oci-archive:$t:$tag docker://REGISTRY/$NAME:$tag
  crane push $l REGISTRY/$NAME:$tag
(crane push takes the layout directory: given a file it expects a docker-save tarball.)

Then in the WasmPlugin:
  url: oci://REGISTRY/$NAME:$tag
  sha256: $manifest_digest
EOF
