//! The repository explains itself: its documents and `--help` never send a
//! reader to a document outside it, the format and the API are described
//! here, and the dependency tree carries no crate flagged as unmaintained.

mod common;

use std::fs;
use std::path::Path;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Text files a reader is sent to: README, policies, docs/, deploy/, keys/.
fn documents() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for name in ["README.md", "SECURITY.md"] {
        out.push((name.to_owned(), read(name)));
    }
    for dir in ["docs", "deploy", "keys", "bench", "scripts", ".ci"] {
        let Ok(entries) = fs::read_dir(Path::new(ROOT).join(dir)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if let Ok(text) = fs::read_to_string(&path) {
                out.push((path.display().to_string(), text));
            }
        }
    }
    // The library's own documentation (rustdoc) counts too.
    let mut stack = vec![Path::new(ROOT).join("src")];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(text) = fs::read_to_string(&path) {
                out.push((path.display().to_string(), text));
            }
        }
    }
    out
}

fn read(relative: &str) -> String {
    fs::read_to_string(Path::new(ROOT).join(relative)).unwrap()
}

/// The shared contract outside the repository is named `DESIGN.md` and
/// cited as "DESIGN §n"; neither may appear where a user reads.
fn cites_outside(text: &str) -> bool {
    text.contains("DESIGN") || text.contains("../shared")
}

#[test]
fn documents_and_help_never_cite_a_document_outside_the_repository() {
    for (name, text) in documents() {
        assert!(
            !cites_outside(&text),
            "{name} cites a document outside the repository"
        );
    }
    let mut commands: Vec<Vec<&str>> = vec![vec![]];
    for sub in [
        "demo", "serve", "poll", "seal", "keys", "list", "decrypt", "token", "fetch",
    ] {
        commands.push(vec![sub]);
    }
    commands.push(vec!["keys", "check"]);
    commands.push(vec!["keys", "signing"]);
    commands.push(vec!["token", "new"]);
    for args in commands {
        let out = common::embargo()
            .args(&args)
            .arg("--help")
            .output()
            .unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "embargo {args:?} --help failed");
        assert!(!help.is_empty());
        assert!(!cites_outside(&help), "embargo {args:?} --help: {help}");
    }
}

#[test]
fn the_readme_names_the_api_route_and_its_parts_and_the_format_is_specified() {
    let readme = read("README.md");
    assert!(readme.contains("POST /api/v1/reports"));
    assert!(readme.contains("part `report`"));
    assert!(readme.contains("parts `attachment`"));
    assert!(readme.contains("docs/format.md"));
    assert!(readme.contains("docs/openapi.json"));
    let format = read("docs/format.md");
    for needle in [
        "embargo.report.v1",
        "manifest.pgp",
        "001.pgp",
        "SEIPDv1",
        "SEIPDv2",
        "reports/.staging/<ID>/",
        "original-message",
        "(unparseable message)",
        "own session key",
    ] {
        assert!(
            format.contains(needle),
            "docs/format.md says nothing of {needle}"
        );
    }
}

#[test]
fn no_dependency_is_one_rustsec_flags_as_unmaintained() {
    // number_prefix came with indicatif 0.17; RustSec flags it unmaintained.
    for lock in ["Cargo.lock", "fuzz/Cargo.lock"] {
        let text = read(lock);
        assert!(
            !text.contains("name = \"number_prefix\""),
            "{lock} still pulls number_prefix"
        );
    }
}
