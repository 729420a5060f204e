//! The OpenAPI document (docs/openapi.json, served at /api/v1/openapi.json)
//! describes every route, and schemathesis (a tool nobody here wrote)
//! finds no 5xx, no answer that breaks the document and no crash when it
//! drives a real `embargo serve` from that document.
//!
//! `EMBARGO_SCHEMATHESIS_EXAMPLES` sets the examples per operation (CI:
//! the default; `bench/schemathesis` runs a long form).

mod common;
#[path = "common/server.rs"]
mod server;

use std::fs;
use std::process::Command;

use common::{Site, armored_public, sequoia_key};
use serde_json::Value;
use server::{Server, client};
use sha2::{Digest, Sha256};

const TOKEN: &str = "embargo_test_token_for_schemathesis";

fn document() -> Value {
    serde_json::from_str(include_str!("../docs/openapi.json")).unwrap()
}

/// Every route the router answers is described, and nothing else.
#[test]
fn the_document_describes_exactly_the_routes_of_the_router() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    let documented: std::collections::BTreeSet<String> =
        doc["paths"].as_object().unwrap().keys().cloned().collect();
    let source =
        fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/intake/mod.rs")).unwrap();
    // Without whitespace, a `.route(` that rustfmt broke over lines reads the same.
    let source: String = source.split_whitespace().collect();
    let routed: std::collections::BTreeSet<String> = source
        .split(".route(\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_owned)
        .collect();
    assert!(!routed.is_empty());
    assert_eq!(
        documented, routed,
        "docs/openapi.json and the router in src/intake/mod.rs disagree"
    );
}

/// docs/openapi.json is what scripts/openapi.py writes.
#[test]
fn the_document_is_the_one_its_script_writes() {
    let out = Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/openapi.py"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let written: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        written,
        document(),
        "docs/openapi.json is stale: run `python3 scripts/openapi.py > docs/openapi.json`"
    );
}

#[test]
fn schemathesis_finds_nothing_against_a_real_server() {
    let examples = std::env::var("EMBARGO_SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| "25".into());
    let st = Command::new("schemathesis").arg("--version").output();
    assert!(
        st.is_ok_and(|o| o.status.success()),
        "schemathesis is missing: `python3 -m pip install schemathesis` (.ci/run installs it)"
    );
    let site = Site::new();
    let cert = sequoia_key("Maintainer <m@example.org>");
    site.add_key("maintainer.asc", &armored_public(&cert));
    site.write_config(&format!(
        "listen = \"127.0.0.1:0\"\npublic_url = \"https://intake.example.org\"\n[maintainers]\ntoken_sha256 = [\"{}\"]\n[limits]\nrate_limit_per_minute = 100000\n",
        hex::encode(Sha256::digest(TOKEN.as_bytes()))
    ));
    // One stored report, so that the part route is reached with a real ID.
    let report = site.path().join("report.json");
    fs::write(
        &report,
        common::report_json("Seed report", "for the part route"),
    )
    .unwrap();
    let poc = site.path().join("poc.txt");
    fs::write(&poc, b"proof").unwrap();
    let out = site
        .embargo()
        .args(["seal", "-c", "embargo.toml", "--report"])
        .arg(&report)
        .arg(&poc)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let id = String::from_utf8(out.stdout).unwrap().trim().to_owned();

    let server = Server::start(&site);
    let served: Value = client()
        .get(server.url("/api/v1/openapi.json"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(served, document(), "the server serves another document");
    let security_txt = client().get(server.url("/security.txt")).send().unwrap();
    assert_eq!(
        security_txt.status(),
        200,
        "the 200 answer is the one to test"
    );

    let work = tempfile::tempdir().unwrap();
    // A schema-violating body may also be too large: refused with the
    // documented 413 (request_too_large), which schemathesis's default list
    // for rejected data leaves out (a generated 5,000-character reply code
    // failed a CI run that way).
    let rejected = "[checks.negative_data_rejection]\nexpected-statuses = [\"400\", \"401\", \"403\", \"404\", \"405\", \"406\", \"409\", \"413\", \"415\", \"422\", \"428\", \"429\"]\n";
    fs::write(
        work.path().join("schemathesis.toml"),
        format!(
            "{rejected}[[operations]]\ninclude-path = \"/api/v1/sealed/{{id}}/{{part}}\"\nparameters = {{ id = \"{id}\", part = \"001.pgp\" }}\n"
        ),
    )
    .unwrap();
    // positive_data_acceptance is left out: a CVSS vector's validity and
    // "credit = name needs a name" are checked by the server but cannot be
    // said in JSON Schema, so schema-valid reports may rightly get 400.
    let out = Command::new("schemathesis")
        .current_dir(work.path())
        .env("NO_COLOR", "1")
        .args(["run", &server.url("/api/v1/openapi.json")])
        .args(["-H", &format!("Authorization: Bearer {TOKEN}")])
        .args([
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
        ])
        .args(["--max-examples", &examples, "--workers", "1", "--no-color"])
        .args(["--request-timeout", "30"])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let summary = text
        .lines()
        .filter(|l| l.contains("generated") || l.contains("Tested:") || l.contains("issues found"))
        .collect::<Vec<_>>()
        .join("\n");
    eprintln!("schemathesis summary:\n{summary}");
    assert!(out.status.success(), "schemathesis found problems:\n{text}");
    // Every documented operation was exercised (schemathesis skips the
    // document's own route, which this test fetched above).
    let operations: usize = document()["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|p| p.as_object().unwrap().len())
        .sum::<usize>()
        - 1;
    assert!(
        text.contains(&format!("Tested: {operations}\n")),
        "not every operation was tested:\n{text}"
    );
    // The closing line counts failures and errors; warnings (such as "this
    // operation mostly refused generated data") are not findings.
    let closing = text
        .lines()
        .rev()
        .find(|l| l.starts_with("===="))
        .unwrap_or_default();
    assert!(
        closing.contains("No issues found")
            || !(closing.contains("failure") || closing.contains("error")),
        "{text}"
    );

    // The server is still up and healthy, and logged no 5xx.
    let health = client().get(server.url("/healthz")).send().unwrap();
    assert_eq!(health.status(), 200);
    let log = server.logs.text();
    assert!(
        !log.lines().any(|l| l.contains("status=5")),
        "the server answered 5xx:\n{log}"
    );
    assert!(log.contains("status=201"), "no report was accepted:\n{log}");
}
