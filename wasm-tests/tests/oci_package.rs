#![cfg(not(target_arch = "wasm32"))]
//! `scripts/package.sh`: the OCI image layout (and its tarball) holding the
//! release filter, in the *oci* variant of the Wasm Image Specification that
//! Istio's `WasmPlugin` pulls (`oci://...`).
//!
//! Needs the shipped filter `target/graylane.wasm` built first
//! (`scripts/test.sh` builds it before the tests); the script runs
//! with `--no-build` and writes into a scratch directory, never `target/oci`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use sha2::{Digest, Sha256};

const CONFIG_MEDIA_TYPE: &str = "application/vnd.module.wasm.config.v1+json";
const WASM_MEDIA_TYPE: &str = "application/vnd.module.wasm.content.layer.v1+wasm";
const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
const REF_NAME: &str = "org.opencontainers.image.ref.name";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("wasm-tests sits in the repository root")
        .to_path_buf()
}

/// The release filter, where the script looks for it by default.
fn built_wasm() -> PathBuf {
    let root = repo_root();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(|dir| root.join(dir))
        .unwrap_or_else(|| root.join("target"));
    let wasm = target.join("graylane.wasm");
    assert!(
        wasm.is_file(),
        "{} is missing: build it first with scripts/package.sh or scripts/test.sh",
        wasm.display()
    );
    wasm
}

/// The version in the root Cargo.toml's [package] table: the default tag.
fn crate_version() -> String {
    let manifest = fs::read_to_string(repo_root().join("Cargo.toml")).expect("read Cargo.toml");
    let mut in_package = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if in_package && line.starts_with("version") {
            let value = line.split_once('=').expect("version = \"...\"").1;
            return value.trim().trim_matches('"').to_string();
        }
    }
    panic!("no version in the [package] table of Cargo.toml");
}

/// A fresh, empty scratch directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("oci_package-{name}-{}", std::process::id()));
    if dir.exists() {
        fs::remove_dir_all(&dir).expect("clear the scratch directory");
    }
    fs::create_dir_all(&dir).expect("create the scratch directory");
    dir
}

/// Removes a test's scratch directory once the test has passed (a failed
/// test leaves it for a look).
fn cleanup(dir: &Path) {
    let _ = fs::remove_dir_all(dir);
}

/// A copy of the built filter in `dir`, for tests that run the script several
/// times and need the same input each time, whatever rebuilds the original.
fn wasm_snapshot(dir: &Path) -> String {
    let copy = dir.join("input.wasm");
    fs::copy(built_wasm(), &copy).expect("copy the built wasm");
    copy.to_str().expect("UTF-8 path").to_string()
}

/// Runs `bash scripts/package.sh --no-build --out OUT ARGS...`.
fn package(out: &Path, args: &[&str]) -> std::process::Output {
    built_wasm();
    Command::new("bash")
        .arg(repo_root().join("scripts/package.sh"))
        .arg("--no-build")
        .arg("--out")
        .arg(out)
        .args(args)
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .expect("run bash scripts/package.sh")
}

/// Like `package`, and requires it to succeed; returns its stdout.
fn package_ok(out: &Path, args: &[&str]) -> String {
    let output = package(out, args);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "package.sh failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("valid JSON")
}

/// The blob a descriptor points at, checked against its digest and size.
fn blob(layout: &Path, descriptor: &Value) -> Vec<u8> {
    let digest = descriptor["digest"].as_str().expect("descriptor digest");
    let hex = digest
        .strip_prefix("sha256:")
        .unwrap_or_else(|| panic!("digest {digest} is not sha256:<hex>"));
    assert!(
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
        "digest {digest} is not 64 lowercase hex digits"
    );
    let path = layout.join("blobs/sha256").join(hex);
    let bytes = fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    assert_eq!(sha256_hex(&bytes), hex, "content of {}", path.display());
    let size = descriptor["size"].as_u64().expect("descriptor size");
    assert_eq!(bytes.len() as u64, size, "size of {digest}");
    bytes
}

/// Every file under `dir`, by its path relative to `dir` ('/'-separated).
fn files_under(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, files: &mut BTreeMap<String, Vec<u8>>) {
        for entry in fs::read_dir(dir).expect("read_dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                walk(base, &path, files);
            } else {
                let rel = path.strip_prefix(base).expect("under base");
                let name = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                files.insert(name, fs::read(&path).expect("read file"));
            }
        }
    }
    let mut files = BTreeMap::new();
    walk(dir, dir, &mut files);
    files
}

struct TarEntry {
    name: String,
    kind: u8,
    uid: u64,
    gid: u64,
    mtime: u64,
    data: Vec<u8>,
}

fn tar_str(field: &[u8]) -> String {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    String::from_utf8(field[..end].to_vec()).expect("UTF-8 tar field")
}

fn tar_octal(field: &[u8]) -> u64 {
    let text = tar_str(field);
    let text = text.trim_matches(|c| c == ' ' || c == '\0');
    if text.is_empty() {
        return 0;
    }
    u64::from_str_radix(text, 8).unwrap_or_else(|e| panic!("octal tar field {text:?}: {e}"))
}

/// A plain ustar reader: enough for the archive package.sh writes.
fn read_ustar(bytes: &[u8]) -> Vec<TarEntry> {
    let mut entries = Vec::new();
    let mut pos = 0;
    loop {
        let header = bytes
            .get(pos..pos + 512)
            .expect("tar archive ends with two zero blocks");
        if header.iter().all(|&b| b == 0) {
            break;
        }
        assert_eq!(&header[257..263], b"ustar\0", "ustar magic at offset {pos}");
        let checksum: u64 = header
            .iter()
            .enumerate()
            .map(|(i, &b)| {
                if (148..156).contains(&i) {
                    32
                } else {
                    u64::from(b)
                }
            })
            .sum();
        assert_eq!(
            checksum,
            tar_octal(&header[148..156]),
            "header checksum at {pos}"
        );
        let name = tar_str(&header[0..100]);
        let prefix = tar_str(&header[345..500]);
        let name = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let size = usize::try_from(tar_octal(&header[124..136])).expect("size fits");
        let data = bytes
            .get(pos + 512..pos + 512 + size)
            .unwrap_or_else(|| panic!("{name}: data past the end of the archive"))
            .to_vec();
        entries.push(TarEntry {
            name,
            kind: header[156],
            uid: tar_octal(&header[108..116]),
            gid: tar_octal(&header[116..124]),
            mtime: tar_octal(&header[136..148]),
            data,
        });
        pos += 512 + size.div_ceil(512) * 512;
    }
    entries
}

#[test]
fn layout_is_a_wasm_image_istio_accepts() {
    let wasm = fs::read(built_wasm()).expect("read the built wasm");
    let out = scratch("layout");
    let stdout = package_ok(&out, &[]);
    let layout = out.join("graylane");
    let version = crate_version();

    // oci-layout and index.json (OCI image-layout spec).
    let oci_layout = json(&fs::read(layout.join("oci-layout")).expect("read oci-layout"));
    assert_eq!(
        oci_layout,
        serde_json::json!({"imageLayoutVersion": "1.0.0"})
    );
    let index = json(&fs::read(layout.join("index.json")).expect("read index.json"));
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(index["mediaType"], INDEX_MEDIA_TYPE);
    let manifests = index["manifests"].as_array().expect("index manifests");
    assert_eq!(manifests.len(), 1, "one image in the layout: {index}");
    let manifest_descriptor = &manifests[0];
    assert_eq!(manifest_descriptor["mediaType"], MANIFEST_MEDIA_TYPE);
    assert_eq!(
        manifest_descriptor["annotations"][REF_NAME],
        version.as_str(),
        "default tag"
    );

    // The image manifest.
    let manifest_bytes = blob(&layout, manifest_descriptor);
    let manifest = json(&manifest_bytes);
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(manifest["mediaType"], MANIFEST_MEDIA_TYPE);
    assert_eq!(manifest["config"]["mediaType"], CONFIG_MEDIA_TYPE);
    let config = json(&blob(&layout, &manifest["config"]));
    assert_eq!(config["type"], "envoy_proxy", "runtime config: {config}");
    let abi_versions = config["abiVersions"].as_array().expect("abiVersions");
    assert!(!abi_versions.is_empty(), "runtime config: {config}");
    for abi in abi_versions {
        // "v0.2.1" is the module's proxy_abi_version_0_2_1 export.
        let abi = abi.as_str().expect("ABI version string");
        let export = format!(
            "proxy_abi_version_{}",
            abi.trim_start_matches('v').replace('.', "_")
        );
        assert!(
            wasm.windows(export.len()).any(|w| w == export.as_bytes()),
            "the module does not export {export} (abiVersions {abi_versions:?})"
        );
    }
    assert!(
        config["config"]["rootIds"].is_array(),
        "runtime config: {config}"
    );
    assert_eq!(
        manifest["annotations"]["module.wasm.runtime/type"],
        "envoy_proxy"
    );

    // Istio's extractOCIArtifactImage wants exactly two layers and reads the
    // one with the Wasm content media type as the raw module.
    let layers = manifest["layers"].as_array().expect("manifest layers");
    assert_eq!(
        layers.len(),
        2,
        "Istio requires exactly two layers: {manifest}"
    );
    let wasm_layers: Vec<&Value> = layers
        .iter()
        .filter(|l| l["mediaType"] == WASM_MEDIA_TYPE)
        .collect();
    assert_eq!(wasm_layers.len(), 1, "one Wasm content layer: {manifest}");
    let layer = blob(&layout, wasm_layers[0]);
    assert!(
        layer == wasm,
        "the Wasm layer is not the built .wasm byte for byte"
    );
    let config_layer = layers
        .iter()
        .find(|l| l["mediaType"] != WASM_MEDIA_TYPE)
        .expect("the runtime config layer");
    assert_eq!(config_layer["mediaType"], CONFIG_MEDIA_TYPE);
    assert_eq!(config_layer["digest"], manifest["config"]["digest"]);
    blob(&layout, config_layer);

    // Nothing else in the layout.
    let mut expected: Vec<String> = vec!["index.json".into(), "oci-layout".into()];
    for descriptor in [manifest_descriptor, &manifest["config"], wasm_layers[0]] {
        let digest = descriptor["digest"].as_str().expect("digest");
        expected.push(format!("blobs/sha256/{}", &digest["sha256:".len()..]));
    }
    expected.sort();
    let found: Vec<String> = files_under(&layout).into_keys().collect();
    assert_eq!(found, expected, "files in the layout");

    // What it printed: the manifest digest and the push commands.
    let manifest_hex = sha256_hex(&manifest_bytes);
    assert!(
        stdout.contains(&format!("sha256: {manifest_hex}")),
        "{stdout}"
    );
    // The script shows paths under the repository root relative to it.
    let layout_path = out.join("graylane");
    let shown = layout_path
        .strip_prefix(repo_root())
        .unwrap_or(&layout_path)
        .display();
    assert!(
        stdout.contains(&format!(
            "oras cp --from-oci-layout {shown}:{version} REGISTRY/graylane:{version}"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("skopeo copy --preserve-digests oci:{shown}:{version} docker://REGISTRY/graylane:{version}")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("crane push {shown} REGISTRY/graylane:{version}")),
        "{stdout}"
    );
    cleanup(&out);
}

#[test]
fn tarball_holds_the_same_layout() {
    let out = scratch("tarball");
    let wasm = wasm_snapshot(&out);
    package_ok(&out, &["--wasm", &wasm]);
    let files = files_under(&out.join("graylane"));
    let archive = fs::read(out.join("graylane.tar")).expect("read graylane.tar");
    let entries = read_ustar(&archive);

    let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted, "entries in name order");

    let mut from_tar = BTreeMap::new();
    for entry in &entries {
        assert_eq!(
            (entry.uid, entry.gid),
            (0, 0),
            "{} is owned by 0:0",
            entry.name
        );
        assert_eq!(entry.mtime, 0, "{} has the fixed mtime", entry.name);
        match entry.kind {
            b'5' => assert!(
                entry.name.ends_with('/') && entry.data.is_empty(),
                "directory {}",
                entry.name
            ),
            b'0' | 0 => {
                from_tar.insert(entry.name.clone(), entry.data.clone());
            }
            other => panic!(
                "{}: unexpected tar entry type {:?}",
                entry.name, other as char
            ),
        }
    }
    assert_eq!(
        from_tar.keys().collect::<Vec<_>>(),
        files.keys().collect::<Vec<_>>(),
        "files in the tarball vs the layout directory"
    );
    for (name, data) in &files {
        assert!(
            from_tar[name] == *data,
            "{name} differs between the tarball and the layout"
        );
    }
    cleanup(&out);
}

#[test]
fn output_is_deterministic_and_the_tag_is_only_in_the_index() {
    let first = scratch("determinism-1");
    let second = scratch("determinism-2");
    let tagged = scratch("determinism-tag");
    let wasm = wasm_snapshot(&first);
    package_ok(&first, &["--wasm", &wasm]);
    package_ok(&second, &["--wasm", &wasm]);
    package_ok(&tagged, &["--wasm", &wasm, "--tag", "canary_1.2-rc.3"]);

    let tar_1 = fs::read(first.join("graylane.tar")).expect("read first tarball");
    let tar_2 = fs::read(second.join("graylane.tar")).expect("read second tarball");
    assert!(tar_1 == tar_2, "two runs wrote different tarballs");
    assert_eq!(
        files_under(&first.join("graylane")),
        files_under(&second.join("graylane")),
        "two runs wrote different layouts"
    );

    // Running again over an existing output replaces it with the same bytes.
    package_ok(&first, &["--wasm", &wasm]);
    let tar_3 = fs::read(first.join("graylane.tar")).expect("read rewritten tarball");
    assert!(
        tar_1 == tar_3,
        "a rerun over the same directory changed the tarball"
    );

    let index_of =
        |dir: &Path| json(&fs::read(dir.join("graylane/index.json")).expect("index.json"));
    let default_index = index_of(&first);
    let tagged_index = index_of(&tagged);
    assert_eq!(
        tagged_index["manifests"][0]["annotations"][REF_NAME],
        "canary_1.2-rc.3"
    );
    assert_eq!(
        tagged_index["manifests"][0]["digest"], default_index["manifests"][0]["digest"],
        "the tag must not change the manifest digest"
    );
    for dir in [first, second, tagged] {
        cleanup(&dir);
    }
}

#[test]
fn rejects_a_tag_that_is_not_an_oci_tag() {
    let out = scratch("bad-tag");
    for bad in ["has space", "-leading-dash", "a/b", "quote\"d"] {
        let output = package(&out, &["--tag", bad]);
        assert!(!output.status.success(), "--tag {bad:?} was accepted");
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("invalid tag"),
            "--tag {bad:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    cleanup(&out);
}
