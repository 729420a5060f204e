//! A real browser (Debian's headless Chromium, JavaScript disabled) fills
//! the report form, attaches a file, submits it and gets the receipt; the
//! sealed report then holds every field and the file's bytes.

#[path = "common/browser.rs"]
mod browser;
mod common;
#[path = "common/server.rs"]
mod server;

use std::path::PathBuf;

use browser::Browser;
use common::{Site, random_bytes};
use embargo::id::ReportId;
use server::Server;

/// Where screenshots are kept for people to look at.
fn artifacts() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts")
}

#[test]
fn chromium_without_javascript_submits_the_form_with_a_file() {
    assert!(
        browser::available(),
        "this test needs Debian's chromium and chromium-driver: apt-get install -y chromium chromium-driver"
    );
    let site = Site::new();
    let secret = common::sequoia_key("Maintainer <m@example.org>");
    site.add_key("maintainer.asc", &common::armored_public(&secret));
    site.write_config("listen = \"127.0.0.1:0\"\npolicy_url = \"https://example.org/security\"\n[limits]\nrate_limit_per_minute = 1000\n");
    let srv = Server::start(&site);

    let mut poc = b"<!-- proof of concept -->\n".to_vec();
    poc.extend(random_bytes(300_000, 42));
    let poc_path = site.tmp_dir().join("poc-exploit.html");
    std::fs::write(&poc_path, &poc).unwrap();

    let b = Browser::start();
    // JavaScript is really off: a page's own script does not run, and
    // <noscript> content is parsed as elements.
    b.goto("data:text/html,<p id=js>off</p><noscript><p id=ns>no script</p></noscript><script>document.getElementById('js').textContent='on'</script>");
    assert_eq!(b.text_of("#js"), "off", "JavaScript must be disabled");
    assert_eq!(b.text_of("#ns"), "no script");

    b.goto(&srv.url("/"));
    assert!(
        b.title().contains("Report a vulnerability"),
        "{}",
        b.title()
    );

    let text_fields = [
        ("title", "Path traversal in the export endpoint"),
        ("affected_versions", "2.0.0 - 2.3.1"),
        ("environment", "Debian 12, default configuration"),
        (
            "cvss_vector",
            "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N",
        ),
        ("cwe", "CWE-22"),
        (
            "description",
            "GET /export?file=../../etc/passwd returns the file. Ünïcödé ✓",
        ),
        ("impact", "Read any file the service can read."),
        (
            "steps_to_reproduce",
            "1. Start the server\n2. Request the URL above",
        ),
        ("mitigations", "Canonicalise and check the path."),
        ("reporter_name", "Browser Tester"),
        ("reporter_email", "tester@example.org"),
    ];
    for (name, value) in text_fields {
        b.type_into(&format!("#f-{name}"), value);
    }
    b.click("#f-severity option[value=\"high\"]");
    b.click("#f-credit option[value=\"name\"]");
    b.type_into("#f-attachment", poc_path.to_str().unwrap());
    b.screenshot(&artifacts().join("browser-form.png"));
    b.click("button[type=submit]");

    let id = b.text_of("#report-id");
    id.parse::<ReportId>()
        .unwrap_or_else(|_| panic!("the receipt shows a report ID, got {id:?}"));
    assert!(b.title().contains("Report received"));
    let source = b.source();
    assert!(source.contains("BEGIN PGP SIGNED MESSAGE") && source.contains("poc-exploit.html"));
    b.screenshot(&artifacts().join("browser-receipt.png"));
    // The form on a phone-sized window: no horizontal scrolling needed.
    b.resize(390, 1400);
    b.goto(&srv.url("/"));
    b.screenshot(&artifacts().join("browser-form-phone.png"));
    drop(b);

    let opener = common::opener(&secret, Some(site.signing_cert()));
    let rid: ReportId = id.parse().unwrap();
    let manifest = opener.open_manifest(&site.store(), &rid).unwrap().manifest;
    assert_eq!(manifest.channel, embargo::seal::Channel::Web);
    let report = serde_json::to_value(&manifest.report).unwrap();
    for (name, value) in text_fields.iter().take(9) {
        match *name {
            "cvss_vector" => assert_eq!(report["cvss"]["vector"], *value),
            "cwe" => assert_eq!(report["cwe"][0], *value),
            // Browsers send textarea line breaks as CRLF.
            _ => assert_eq!(
                report[name].as_str().unwrap().replace("\r\n", "\n"),
                *value,
                "{name}"
            ),
        }
    }
    assert_eq!(report["severity"], "high");
    assert_eq!(manifest.reporter.name, "Browser Tester");
    assert_eq!(manifest.reporter.email, "tester@example.org");
    assert_eq!(manifest.reporter.credit, embargo::report::Credit::Name);
    assert_eq!(manifest.attachments.len(), 1);
    assert_eq!(manifest.attachments[0].name, "poc-exploit.html");
    assert_eq!(manifest.attachments[0].media_type, "text/html");
    let mut bytes = Vec::new();
    opener
        .decrypt_attachment(&site.store(), &rid, &manifest.attachments[0], &mut bytes)
        .unwrap();
    assert!(
        bytes == poc,
        "the attachment decrypts to the file's exact bytes"
    );
}
