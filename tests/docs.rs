//! The commands the README and the book show are the CLI's: every
//! `$ graylane ...` line in a code block of `README.md` or `docs/` is run
//! (through `sh`, in a scratch folder where `envoy/` is the repository's),
//! and what it prints (stdout and stderr, as a terminal shows them) must be the lines shown under
//! it, up to the next `$ ` line or the block's end; a `(exit N)` line there
//! is its exit status (0 when absent). Files come from `$ cat NAME` and its
//! lines, or from the code block after a `<!-- file: NAME -->` line
//! (docs/development.md "Citations").

// Test helpers outside #[test] functions are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::documents;
use std::path::Path;
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// One shown command: where, what, what it printed, its status.
struct Shown {
    at: String,
    command: String,
    output: Vec<String>,
    exit: i32,
}

/// The files a page defines and the commands it shows, in order.
fn read_page(doc: &Path) -> (Vec<(String, String)>, Vec<Shown>) {
    let text = std::fs::read_to_string(doc).unwrap();
    let name = doc.strip_prefix(ROOT).unwrap().display().to_string();
    let mut files = Vec::new();
    let mut shown: Vec<Shown> = Vec::new();
    let mut next_file: Option<String> = None;
    let mut block: Option<Vec<(usize, &str)>> = None;
    for (n, line) in text.lines().enumerate() {
        if let Some(lines) = block.as_mut() {
            if line.trim_start().starts_with("```") {
                let lines = block.take().unwrap();
                if let Some(file) = next_file.take() {
                    let body: Vec<&str> = lines.iter().map(|(_, l)| *l).collect();
                    files.push((file, body.join("\n") + "\n"));
                } else {
                    commands(&name, &lines, &mut files, &mut shown);
                }
            } else {
                lines.push((n + 1, line));
            }
        } else if line.trim_start().starts_with("```") {
            block = Some(Vec::new());
        } else if let Some(file) = line
            .strip_prefix("<!-- file: ")
            .and_then(|l| l.strip_suffix(" -->"))
        {
            next_file = Some(file.to_string());
        }
    }
    (files, shown)
}

fn commands(
    page: &str,
    lines: &[(usize, &str)],
    files: &mut Vec<(String, String)>,
    shown: &mut Vec<Shown>,
) {
    let mut lines = lines.iter().peekable();
    while let Some(&(n, line)) = lines.next() {
        let Some(command) = line.strip_prefix("$ ") else {
            continue;
        };
        let mut output = Vec::new();
        while let Some((_, l)) = lines.next_if(|(_, l)| !l.starts_with("$ ")) {
            output.push(l.to_string());
        }
        while output.last().is_some_and(|l| l.trim().is_empty()) {
            output.pop();
        }
        if let Some(file) = command.strip_prefix("cat ") {
            files.push((file.to_string(), output.join("\n") + "\n"));
            continue;
        }
        if !command.starts_with("graylane ") {
            continue;
        }
        let mut exit = 0;
        if let Some(status) = output
            .last()
            .and_then(|l| l.strip_prefix("(exit "))
            .and_then(|l| l.strip_suffix(')'))
        {
            exit = status.parse().unwrap();
            output.pop();
        }
        shown.push(Shown {
            at: format!("{page}:{n}"),
            command: command.to_string(),
            output,
            exit,
        });
    }
}

#[test]
fn the_commands_shown_print_what_they_show() {
    let bin = Path::new(env!("CARGO_BIN_EXE_graylane")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut ran = 0;
    let mut wrong = Vec::new();
    for doc in documents() {
        let (files, shown) = read_page(&doc);
        if shown.is_empty() {
            continue;
        }
        let dir = std::env::temp_dir().join(format!(
            "graylane-docs-{}-{}",
            std::process::id(),
            doc.file_stem().unwrap().to_string_lossy()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::symlink(Path::new(ROOT).join("envoy"), dir.join("envoy")).unwrap();
        for (name, body) in &files {
            std::fs::write(dir.join(name), body).unwrap();
        }
        for s in shown {
            ran += 1;
            let out = Command::new("sh")
                .arg("-c")
                .arg(format!("exec 2>&1; {}", s.command))
                .current_dir(&dir)
                .env("PATH", &path)
                .env("NO_COLOR", "1")
                .output()
                .unwrap();
            let printed = String::from_utf8_lossy(&out.stdout);
            let printed: Vec<&str> = printed.trim_end().lines().map(str::trim_end).collect();
            let want: Vec<&str> = s.output.iter().map(|l| l.trim_end()).collect();
            let code = out.status.code().unwrap_or(-1);
            if printed != want || code != s.exit {
                wrong.push(format!(
                    "{} `{}`: exit {code} (shown {}), printed:\n{}\nshown:\n{}",
                    s.at,
                    s.command,
                    s.exit,
                    printed.join("\n"),
                    want.join("\n")
                ));
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    assert!(ran >= 8, "only {ran} commands found: is the pattern right?");
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}
