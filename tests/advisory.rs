//! `embargo advisory`: drafts from cases built through the real binary
//! validate against the official OSV and CVE JSON 5.1.1 schemas (with
//! Python's `jsonschema`; the CVE schema comes from the PyPI package
//! `cvelib`), carry the case's facts, credit only with consent, keep
//! reporter text inert, and name what is missing.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

use common::{Site, armored_public, armored_secret, sequoia_key};

const CNA: &str = "8254265b-2729-46b6-b9e3-3dfca2d5bfca";

struct Desk {
    site: Site,
    key: PathBuf,
    profile: PathBuf,
}

fn desk() -> Desk {
    let site = Site::new();
    let maintainer = sequoia_key("Maintainer <m@example.org>");
    site.add_key("m.asc", &armored_public(&maintainer));
    site.write_config("policy_url = \"https://example.org/security-policy\"\n");
    let key = site.path().join("m-secret.asc");
    std::fs::write(&key, armored_secret(&maintainer)).unwrap();
    let profile = site.path().join("maintainer.toml");
    std::fs::write(
        &profile,
        format!(
            "[advisory]\necosystem = \"crates.io\"\npackage = \"widget\"\npurl = \"pkg:cargo/widget\"\nrepository = \"https://github.com/example/widget\"\ncna_org_id = \"{CNA}\"\n"
        ),
    )
    .unwrap();
    Desk { site, key, profile }
}

impl Desk {
    fn run(&self, args: &[&str]) -> Output {
        self.site
            .embargo()
            .args(args)
            .arg("-c")
            .arg(self.site.config_path())
            .arg("--key")
            .arg(&self.key)
            .env("EMBARGO_MAINTAINER", &self.profile)
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> Vec<u8> {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// Seals `report` (input JSON) with `embargo seal`; returns its ID.
    fn seal(&self, report: &Value) -> String {
        let file = self.site.path().join("report.json");
        std::fs::write(&file, report.to_string()).unwrap();
        let out = self
            .site
            .embargo()
            .args(["seal", "-c"])
            .arg(self.site.config_path())
            .arg("--report")
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::remove_file(&file).unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn draft(&self, id: &str, format: &str) -> String {
        String::from_utf8(self.ok(&["advisory", id, "--format", format])).unwrap()
    }
}

/// Validates `doc` with Python's jsonschema against `schema` (a path).
fn validate(doc: &str, schema: &Path) {
    let script = r#"
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
doc = json.loads(sys.stdin.read())
cls = jsonschema.validators.validator_for(schema)
errors = sorted(cls(schema, format_checker=cls.FORMAT_CHECKER).iter_errors(doc), key=str)
for e in errors:
    print(e.json_path, e.message[:300])
sys.exit(1 if errors else 0)
"#;
    let mut child = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(schema)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 with jsonschema (bash .ci/run installs it)");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), doc.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "not valid against {}:\n{}{}\n{doc}",
        schema.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn osv_schema() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schemas/osv-schema.json")
}

fn cve_schema() -> PathBuf {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import cvelib, os; print(os.path.join(os.path.dirname(cvelib.__file__), 'schemas', 'CVE_JSON_cnaPublishedContainer_5.1.1.json'))",
        ])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "the PyPI package cvelib is needed (bash .ci/run installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// Markdown rendered the way GitHub renders it (cmark-gfm).
fn render_gfm(markdown: &str) -> String {
    let mut child = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, cmarkgfm; from cmarkgfm.cmark import Options as o; print(cmarkgfm.github_flavored_markdown_to_html(sys.stdin.read(), options=o.CMARK_OPT_UNSAFE))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 with cmarkgfm (bash .ci/run installs it)");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), markdown.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn drafts_from_real_cases_validate_and_carry_the_case() {
    let d = desk();
    let named = d.seal(&serde_json::json!({
        "report": { "title": "Command injection in widget's export", "severity": "medium",
                    "cvss_vector": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", "cwe": ["CWE-78"],
                    "description": "The export path is passed to a shell.", "impact": "Remote code execution.",
                    "steps_to_reproduce": "STEPS-CANARY run the PoC", "mitigations": "Disable exports." },
        "reporter": { "name": "Ada Researcher", "email": "EMAIL-CANARY@example.org", "credit": "name" } }));
    let anonymous = d.seal(&serde_json::json!({
        "report": { "title": "Heap overflow in widget's parser",
                    "cvss_vector": "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N",
                    "cwe": "CWE-787", "description": "A length is trusted." },
        "reporter": { "name": "Someone", "email": "ANON-CANARY@example.org", "credit": "anonymous" } }));
    for id in [&named, &anonymous] {
        d.ok(&["case", "ack", id]);
        d.ok(&[
            "case",
            "fix",
            id,
            "--version",
            "1.4.2",
            "--commit",
            "0123456789abcdef0123456789abcdef01234567",
            "--released",
        ]);
    }
    d.ok(&[
        "case",
        "assess",
        &named,
        "--severity",
        "high",
        "--cvss",
        "CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H",
        "--cwe",
        "CWE-78,CWE-88",
    ]);
    d.ok(&[
        "case",
        "advisory",
        &named,
        "--ghsa",
        "GHSA-4x5q-2h3v-8m9p",
        "--cve",
        "CVE-2026-12345",
        "--url",
        "https://github.com/example/widget/security/advisories/GHSA-4x5q-2h3v-8m9p",
    ]);

    // OSV: valid, and the case's facts.
    let osv: Value = serde_json::from_str(&d.draft(&named, "osv")).unwrap();
    validate(&osv.to_string(), &osv_schema());
    assert_eq!(osv["id"], "GHSA-4x5q-2h3v-8m9p");
    assert_eq!(osv["aliases"], serde_json::json!(["CVE-2026-12345"]));
    assert_eq!(osv["summary"], "Command injection in widget's export");
    assert_eq!(osv["severity"][0]["type"], "CVSS_V3");
    assert_eq!(
        osv["severity"][0]["score"], "CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H",
        "the assessment wins"
    );
    assert_eq!(
        osv["database_specific"]["cwe_ids"],
        serde_json::json!(["CWE-78", "CWE-88"])
    );
    assert_eq!(osv["affected"][0]["package"]["name"], "widget");
    assert_eq!(osv["affected"][0]["package"]["ecosystem"], "crates.io");
    assert_eq!(
        osv["affected"][0]["ranges"][0]["events"][1]["fixed"],
        "1.4.2"
    );
    assert_eq!(osv["credits"][0]["name"], "Ada Researcher");
    let refs = osv["references"].to_string();
    assert!(
        refs.contains(
            "https://github.com/example/widget/commit/0123456789abcdef0123456789abcdef01234567"
        ),
        "{refs}"
    );
    assert!(
        refs.contains("https://example.org/security-policy"),
        "{refs}"
    );
    let details = osv["details"].as_str().unwrap();
    assert!(details.contains("Remote code execution"), "{details}");
    assert!(
        !details.contains("STEPS-CANARY"),
        "steps only with --include-steps"
    );
    let with_steps =
        String::from_utf8(d.ok(&["advisory", &named, "--format", "osv", "--include-steps"]))
            .unwrap();
    assert!(with_steps.contains("STEPS\\\\-CANARY"), "{with_steps}");

    // CVE: a valid CNA container.
    let cve_text = d.draft(&named, "cve");
    validate(&cve_text, &cve_schema());
    let cve: Value = serde_json::from_str(&cve_text).unwrap();
    assert_eq!(cve["providerMetadata"]["orgId"], CNA);
    assert_eq!(cve["metrics"][0]["cvssV3_1"]["baseScore"], 8.8);
    assert_eq!(cve["metrics"][0]["cvssV3_1"]["baseSeverity"], "HIGH");
    assert_eq!(cve["affected"][0]["versions"][0]["lessThan"], "1.4.2");
    assert_eq!(cve["problemTypes"][0]["descriptions"][0]["cweId"], "CWE-78");
    assert_eq!(cve["credits"][0]["value"], "Ada Researcher");

    // The CVSS 4.0 report: the reporter's vector, its version, no credit.
    let osv4: Value = serde_json::from_str(&d.draft(&anonymous, "osv")).unwrap();
    validate(&osv4.to_string(), &osv_schema());
    assert_eq!(osv4["severity"][0]["type"], "CVSS_V4");
    assert!(osv4["id"].as_str().unwrap().starts_with("x_embargo-"));
    let cve4_text = d.draft(&anonymous, "cve");
    validate(&cve4_text, &cve_schema());
    let cve4: Value = serde_json::from_str(&cve4_text).unwrap();
    assert_eq!(cve4["metrics"][0]["cvssV4_0"]["version"], "4.0");
    assert_eq!(
        cve4["problemTypes"][0]["descriptions"][0]["cweId"],
        "CWE-787"
    );

    // GHSA: the API body and the gh command.
    let out = d.run(&["advisory", &named, "--format", "ghsa"]);
    assert!(out.status.success());
    let ghsa: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ghsa["summary"], "Command injection in widget's export");
    assert_eq!(
        ghsa["cvss_vector_string"],
        "CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H"
    );
    assert!(
        ghsa.get("severity").is_none(),
        "a vector or a severity, not both"
    );
    assert_eq!(ghsa["cwe_ids"], serde_json::json!(["CWE-78", "CWE-88"]));
    assert_eq!(ghsa["vulnerabilities"][0]["package"]["ecosystem"], "rust");
    assert_eq!(ghsa["vulnerabilities"][0]["patched_versions"], "1.4.2");
    assert_eq!(ghsa["cve_id"], "CVE-2026-12345");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("gh api --method POST"), "{said}");
    assert!(
        said.contains("/repos/example/widget/security-advisories"),
        "{said}"
    );

    // Markdown, and credit only with consent, never an email.
    let md = d.draft(&named, "markdown");
    assert!(md.contains("Reported by Ada Researcher"), "{md}");
    assert!(md.contains("Fixed in:** 1\\.4\\.2"), "{md}");
    for format in ["osv", "cve", "ghsa", "markdown"] {
        let named_draft = d.draft(&named, format);
        let anon_draft = d.draft(&anonymous, format);
        assert!(!named_draft.contains("EMAIL-CANARY") && !anon_draft.contains("ANON-CANARY"));
        assert!(
            !anon_draft.contains("Someone"),
            "anonymous reporters are not credited ({format})"
        );
    }
}

#[test]
fn hostile_report_text_stays_data_and_missing_facts_are_named() {
    let d = desk();
    let hostile = "Quote \" back\\slash\nnew line <script>alert(1)</script> <img src=x onerror=y> \
                   ![i](https://evil.example/i.png) [click](javascript:alert(1)) https://evil.example \
                   www.evil.example mail@evil.example mailto:x@evil.example xmpp:a@evil.example ftp://evil.example \
                   <https://evil.example/auto> &lt;b&gt; &#60;i&#62; [ref]: https://evil.example/r [ref] \
                   ＜script＞ trailing backslash\\\n# Heading\nSetext\n===\n> quote\n- item\n1. item\n---\n| a | b |\n|---|---|\n```\nfence\n\u{202E}reversed\u{202C}";
    let id = d.seal(&serde_json::json!({
        "report": { "title": "Title with <b>html</b> and [a](b) \u{202E}", "severity": "high",
                    "description": hostile, "impact": hostile, "mitigations": hostile },
        "reporter": { "name": "[Evil](https://evil.example) <i>", "credit": "name" } }));
    d.ok(&["case", "ack", &id]);

    // Without a fixed version, the machine formats refuse and say how.
    for format in ["osv", "cve", "ghsa"] {
        let out = d.run(&["advisory", &id, "--format", format]);
        assert_eq!(out.status.code(), Some(1), "{format}");
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(
            said.contains("no fixed version: record one with `embargo case fix")
                && said.contains("or pass --fixed"),
            "{format}: {said}"
        );
        assert!(out.stdout.is_empty());
    }
    let md = d.draft(&id, "markdown");
    assert!(md.contains("> TODO: no fixed version"), "{md}");

    // With one, the JSON parses, round-trips and carries the text exactly.
    let cve_text =
        String::from_utf8(d.ok(&["advisory", &id, "--format", "cve", "--fixed", "2.0.0"])).unwrap();
    let cve: Value = serde_json::from_str(&cve_text).unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&cve.to_string()).unwrap(),
        cve
    );
    validate(&cve_text, &cve_schema());
    assert!(
        cve["descriptions"][0]["value"]
            .as_str()
            .unwrap()
            .starts_with(hostile)
    );
    let osv_text =
        String::from_utf8(d.ok(&["advisory", &id, "--format", "osv", "--fixed", "2.0.0"])).unwrap();
    validate(&osv_text, &osv_schema());

    // Markdown (the draft, OSV details, the GHSA description) renders inert.
    let ghsa: Value =
        serde_json::from_slice(&d.ok(&["advisory", &id, "--format", "ghsa", "--fixed", "2.0.0"]))
            .unwrap();
    let osv: Value = serde_json::from_str(&osv_text).unwrap();
    for markdown in [
        md.clone(),
        osv["details"].as_str().unwrap().to_string(),
        ghsa["description"].as_str().unwrap().to_string(),
    ] {
        let html = render_gfm(&markdown);
        // The only link is the draft's own reference to the policy.
        for link in html.split("<a ").skip(1) {
            assert!(
                link.starts_with("href=\"https://example.org/security-policy\""),
                "a link from the report: {link}"
            );
        }
        // The only code is the draft's own commands (in TODO lines).
        for code in html.split("<code>").skip(1) {
            assert!(code.starts_with("embargo "), "code from the report: {code}");
        }
        for forbidden in [
            "<img", "<script", "<b>", "<i>", "<table", "<hr", "<pre", "\u{202E}",
        ] {
            assert!(!html.contains(forbidden), "{forbidden} in\n{html}");
        }
        // Only the draft's own headings, none from the report.
        assert!(!html.contains("<h1>Heading"), "{html}");
        assert!(!html.contains("<h1>Setext"), "{html}");
        assert!(!html.contains("<li>item"), "{html}");
        assert!(!html.contains("<p>quote"), "{html}");
    }
}

#[test]
fn out_files_are_private_and_never_replaced_without_force() {
    let d = desk();
    let id = d.seal(&serde_json::json!({
        "report": { "title": "t", "description": "d", "severity": "low" } }));
    let file = d.site.path().join("draft.md");
    let path = file.display().to_string();
    d.ok(&["advisory", &id, "--format", "markdown", "--out", &path]);
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    std::fs::write(&file, "mine").unwrap();
    let out = d.run(&["advisory", &id, "--format", "markdown", "--out", &path]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "mine");
    d.ok(&[
        "advisory", &id, "--format", "markdown", "--out", &path, "--force",
    ]);
    assert!(std::fs::read_to_string(&file).unwrap().starts_with("# t"));
    // An unknown format is a usage error.
    assert_eq!(
        d.run(&["advisory", &id, "--format", "pdf"]).status.code(),
        Some(2)
    );
}
