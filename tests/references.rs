//! Every reference in the repository leads somewhere inside it: a README
//! section cited by name (`docs/observability.md "Metrics"`) is a heading of README.md, a
//! repository path named in code, comments, scripts or docs exists, and
//! nothing points at documents that are not part of the repository.

// Test helpers outside #[test] functions are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::documents;
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Folders whose files are read (generated and installed ones are not).
const SCANNED: &[&str] = &[
    "src",
    "tests",
    "benches",
    "wasm-tests",
    "scripts",
    "playground",
    "fuzz",
    "envoy",
    ".ci",
    "docs",
];
const SKIPPED_DIRS: &[&str] = &[
    "target",
    "node_modules",
    "corpus",
    "artifacts",
    "regressions",
    "seeds",
];
/// Top-level folders whose paths are checked when a file names them.
const PATH_ROOTS: &str = "src|tests|benches|wasm-tests|scripts|playground|fuzz|envoy|docs|\\.ci";

fn files() -> Vec<PathBuf> {
    let root = Path::new(ROOT);
    let mut out = vec![root.join("README.md"), root.join("Cargo.toml")];
    let mut stack: Vec<PathBuf> = SCANNED.iter().map(|d| root.join(d)).collect();
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                if !SKIPPED_DIRS.contains(&name.as_str()) {
                    stack.push(path);
                }
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The file's text with comment continuations joined, so that a citation
/// wrapped over two comment lines reads as one.
fn joined(text: &str) -> String {
    let continuation =
        regex_lite::Regex::new(r"\n[ \t]*(?://[/!]?|#|\*|--)?[ \t]*").expect("pattern");
    continuation.replace_all(text, " ").into_owned()
}

/// The headings of a Markdown file (outside code blocks).
fn headings(file: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let mut in_code = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            out.push(line.trim_start_matches('#').trim().to_string());
        }
    }
    out
}

/// GitHub's anchor for a heading: lower case, spaces to '-', punctuation
/// other than '-' and '_' dropped.
fn anchor(heading: &str) -> String {
    heading
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn relative(path: &Path) -> String {
    path.strip_prefix(ROOT)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

#[test]
fn nothing_points_outside_the_repository() {
    let outside =
        regex_lite::Regex::new(r"§|\bSPEC\b|MEASUREMENTS\.md|FACTS\.md|STYLE\.md|\.\./shared")
            .expect("pattern");
    let mut found = Vec::new();
    for file in files() {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue; // not text
        };
        if file.ends_with("tests/references.rs") {
            continue; // the patterns themselves
        }
        for (n, line) in text.lines().enumerate() {
            if outside.is_match(line) {
                found.push(format!("{}:{}: {}", relative(&file), n + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "references to documents outside the repository (cite a README section or a docs/ page instead):\n{}",
        found.join("\n")
    );
}

#[test]
fn cited_sections_exist() {
    let citation = regex_lite::Regex::new(
        r#"(README(?:\.md)?|docs/[A-Za-z0-9_/-]+\.md),? ((?:"[^"\n]+"(?:, )?)+)"#,
    )
    .expect("pattern");
    let quoted = regex_lite::Regex::new(r#""([^"\n]+)""#).expect("pattern");
    let mut cited = 0;
    let mut missing = Vec::new();
    for file in files() {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        for m in citation.captures_iter(&joined(&text)) {
            let target =
                Path::new(ROOT).join(m[1].replace("README", "README.md").replace(".md.md", ".md"));
            let headings = headings(&target);
            for name in quoted.captures_iter(&m[2]) {
                cited += 1;
                if !headings.iter().any(|h| h == &name[1]) {
                    missing.push(format!("{}: {} \"{}\"", relative(&file), &m[1], &name[1]));
                }
            }
        }
    }
    assert!(
        cited > 100,
        "only {cited} citations found: is the pattern right?"
    );
    assert!(
        missing.is_empty(),
        "cited sections that are not headings of the file named:\n{}",
        missing.join("\n")
    );
}

#[test]
fn links_in_the_readme_and_the_book_resolve() {
    // `[text](target)`, and `![alt](target)`; a URL is not checked here.
    let link = regex_lite::Regex::new(r"\]\(([^)\s]+)\)").expect("pattern");
    let mut links = 0;
    let mut broken = Vec::new();
    for doc in documents() {
        let text = std::fs::read_to_string(&doc).unwrap();
        let mut in_code = false;
        for line in text.lines() {
            if line.trim_start().starts_with("```") {
                in_code = !in_code;
            }
            if in_code {
                continue;
            }
            for m in link.captures_iter(line) {
                let target = &m[1];
                if target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                links += 1;
                let (path, anchor_part) = target.split_once('#').unwrap_or((target, ""));
                let file = if path.is_empty() {
                    doc.clone()
                } else {
                    doc.parent().unwrap().join(path)
                };
                let ok = file.exists()
                    && (anchor_part.is_empty()
                        || headings(&file).iter().any(|h| anchor(h) == anchor_part));
                if !ok {
                    broken.push(format!("{}: {target}", relative(&doc)));
                }
            }
        }
    }
    assert!(
        links > 30,
        "only {links} links found: is the pattern right?"
    );
    assert!(
        broken.is_empty(),
        "links to no file or heading:\n{}",
        broken.join("\n")
    );
}

#[test]
fn the_book_lists_every_page() {
    let docs = Path::new(ROOT).join("docs");
    let summary = std::fs::read_to_string(docs.join("SUMMARY.md")).unwrap();
    let listed: Vec<PathBuf> = regex_lite::Regex::new(r"\]\(([^)]+\.md)\)")
        .expect("pattern")
        .captures_iter(&summary)
        .map(|m| docs.join(&m[1]))
        .collect();
    let pages: Vec<PathBuf> = documents()
        .into_iter()
        .filter(|p| p.starts_with(&docs) && !p.ends_with("SUMMARY.md"))
        .collect();
    assert!(pages.len() >= 15, "{pages:?}");
    let unlisted: Vec<_> = pages.iter().filter(|p| !listed.contains(p)).collect();
    let absent: Vec<_> = listed.iter().filter(|p| !p.exists()).collect();
    assert!(
        unlisted.is_empty(),
        "pages SUMMARY.md does not list: {unlisted:?}"
    );
    assert!(
        absent.is_empty(),
        "SUMMARY.md lists missing pages: {absent:?}"
    );
}

#[test]
fn named_repository_paths_exist() {
    let root = Path::new(ROOT);
    // A path starts a word (not inside a URL or another path) and may end
    // in a wildcard or a placeholder, which stops the check there.
    let path = regex_lite::Regex::new(&format!(
        r"(?:^|[\s`'(\[<=:,])((?:{PATH_ROOTS})/[A-Za-z0-9_./+-]*)"
    ))
    .expect("pattern");
    // Folders that runs create (git-ignored, like `/fuzz/corpus`): named
    // in docs, absent from a fresh clone.
    let gitignore = std::fs::read_to_string(root.join(".gitignore")).unwrap();
    let generated: Vec<String> = gitignore
        .lines()
        .filter_map(|l| l.strip_prefix('/'))
        .map(str::to_string)
        .collect();
    let mut named = 0;
    let mut missing = Vec::new();
    for file in files() {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        // Paths in a crate's files may be relative to the crate.
        let crate_dir = file
            .ancestors()
            .skip(1)
            .find(|d| d.join("Cargo.toml").is_file())
            .unwrap_or(root)
            .to_path_buf();
        let dir = file.parent().unwrap_or(root).to_path_buf();
        for m in path.captures_iter(&text) {
            let p = m[1].trim_end_matches(['.', ',']);
            if p.contains("...") || p.contains("/.") {
                continue; // elided, or a file written at run time (`.x.new`)
            }
            named += 1;
            let exists = generated.iter().any(|g| p.starts_with(g.as_str()))
                || [root, crate_dir.as_path(), dir.as_path()]
                    .iter()
                    .any(|base| base.join(p).exists());
            if !exists {
                missing.push(format!("{}: {p}", relative(&file)));
            }
        }
    }
    missing.sort();
    missing.dedup();
    assert!(
        named > 100,
        "only {named} paths found: is the pattern right?"
    );
    assert!(
        missing.is_empty(),
        "paths named that do not exist in the repository:\n{}",
        missing.join("\n")
    );
}
