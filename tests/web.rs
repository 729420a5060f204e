//! The web intake over real HTTP: the `embargo serve` binary on a loopback
//! port, driven with reqwest and with hand-made hostile requests.

mod common;
#[path = "common/server.rs"]
mod server;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{GpgKeyType, Site, files_containing, random_bytes, wait_until, wait_until_with};
use embargo::id::ReportId;
use embargo::seal::Manifest;
use reqwest::blocking::multipart::{Form, Part};
use sequoia_openpgp as openpgp;
use serde_json::Value;
use server::{RawMultipart, Server, client, raw_http};
use sha2::{Digest, Sha256};

/// Limits generous enough for many requests from one test.
const TEST_LIMITS: &str = "rate_limit_per_minute = 1000";

/// A site with one Sequoia maintainer key and `limits` under `[limits]`.
fn site_with_key(top: &str, limits: &str) -> (Site, openpgp::Cert) {
    let site = Site::new();
    let cert = common::sequoia_key("Maintainer <m@example.org>");
    site.add_key("maintainer.asc", &common::armored_public(&cert));
    site.write_config(&format!("listen = \"127.0.0.1:0\"\npolicy_url = \"https://example.org/security\"\n{top}\n[limits]\n{limits}\n"));
    (site, cert)
}

fn manifest_of(site: &Site, secret: &openpgp::Cert, id: &str) -> Manifest {
    let id: ReportId = id.parse().unwrap();
    let opener = common::opener(secret, Some(site.signing_cert()));
    opener.open_manifest(&site.store(), &id).unwrap().manifest
}

fn attachment_bytes(site: &Site, secret: &openpgp::Cert, id: &str, n: usize) -> Vec<u8> {
    let rid: ReportId = id.parse().unwrap();
    let manifest = manifest_of(site, secret, id);
    let opener = common::opener(secret, Some(site.signing_cert()));
    let mut out = Vec::new();
    opener
        .decrypt_attachment(&site.store(), &rid, &manifest.attachments[n], &mut out)
        .unwrap();
    out
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn api_json(title: &str) -> Vec<u8> {
    common::report_json(title, "The export endpoint joins user input into a path.")
}

/// Submits a report titled `title` with one file through the API; expects
/// 201 and returns the report ID.
fn submit_with_file(srv: &Server, title: &str, file: &[u8]) -> String {
    let form = Form::new()
        .part("report", Part::bytes(api_json(title)))
        .part(
            "attachment",
            Part::bytes(file.to_vec()).file_name("poc.bin"),
        );
    let r = client()
        .post(srv.url("/api/v1/reports"))
        .multipart(form)
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    r.json::<Value>().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Reports being staged (the store's own dot files, such as locks, aside).
fn staged_reports(site: &Site) -> Vec<String> {
    site.staging_entries()
        .into_iter()
        .filter(|e| !e.starts_with('.'))
        .collect()
}

/// Asserts nothing but complete reports are in the store: no staging leftovers.
fn assert_store_clean(site: &Site, reports: usize) {
    // Discarding happens when the sealing thread sees the request end.
    wait_until_with(
        "staging to empty",
        Duration::from_secs(10),
        || staged_reports(site).is_empty(),
        || format!("{:?}", staged_reports(site)),
    );
    assert_eq!(
        staged_reports(site),
        Vec::<String>::new(),
        "staging must be empty"
    );
    let ids = site.report_ids();
    assert_eq!(ids.len(), reports, "reports in the store: {ids:?}");
    for id in ids {
        assert!(
            site.reports_dir().join(&id).join("manifest.pgp").is_file(),
            "{id} is incomplete"
        );
    }
}

fn assert_healthy(srv: &Server) {
    let r = client().get(srv.url("/healthz")).send().unwrap();
    assert_eq!(r.status(), 200, "server must stay up and healthy");
}

#[test]
fn api_round_trip_every_part_decrypts_with_stock_gpg() {
    let gpg = common::Gpg::new();
    let fpr = gpg.gen_key("Alice <alice@example.org>", GpgKeyType::Cv25519, "", "0");
    let site = Site::new();
    site.add_key("alice.asc", &gpg.export_public(&fpr));
    site.write_config(&format!(
        "listen = \"127.0.0.1:0\"\n[limits]\n{TEST_LIMITS}\n"
    ));
    let srv = Server::start(&site);

    let big = random_bytes(3 * 1024 * 1024 + 17, 1);
    let small = b"#!/usr/bin/env python3\nprint('poc')\n".to_vec();
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("poc.py", small.clone()),
        ("capture.bin", big.clone()),
        ("empty.txt", Vec::new()),
    ];
    let mut form = Form::new().part(
        "report",
        Part::bytes(api_json("Path traversal in export"))
            .mime_str("application/json")
            .unwrap(),
    );
    for (name, bytes) in &files {
        form = form.part(
            "attachment",
            Part::bytes(bytes.clone()).file_name(name.to_string()),
        );
    }
    let r = client()
        .post(srv.url("/api/v1/reports"))
        .multipart(form)
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let body: Value = r.json().unwrap();
    let id = body["id"].as_str().unwrap().to_string();
    id.parse::<ReportId>().unwrap();
    assert!(body["received_at"].as_str().unwrap().ends_with('Z'));
    let listed = body["attachments"].as_array().unwrap();
    assert_eq!(listed.len(), 3);
    for ((name, bytes), entry) in files.iter().zip(listed) {
        assert_eq!(entry["name"], *name);
        assert_eq!(entry["size"], bytes.len() as u64);
        assert_eq!(entry["sha256"], sha256_hex(bytes));
    }

    // The receipt is cleartext-signed by the intake key and names the ID.
    let receipt = body["receipt"].as_str().unwrap();
    assert!(
        receipt.starts_with("-----BEGIN PGP SIGNED MESSAGE-----"),
        "{receipt}"
    );
    assert!(receipt.contains(&id));
    let signing = client()
        .get(srv.url("/signing-key.asc"))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    gpg.import(&signing);
    let receipt_file = site.tmp_dir().join("receipt.asc");
    std::fs::write(&receipt_file, receipt).unwrap();
    let verify = gpg.try_run(
        &[
            "--status-fd",
            "1",
            "--verify",
            receipt_file.to_str().unwrap(),
        ],
        None,
    );
    assert!(
        String::from_utf8_lossy(&verify.stdout).contains("GOODSIG"),
        "receipt must verify with gpg"
    );

    // Every part decrypts with stock gpg to the exact bytes.
    let dir = site.reports_dir().join(&id);
    let (json, _) = gpg.decrypt(&dir.join("manifest.pgp"));
    let manifest: Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(manifest["id"], id.as_str());
    assert_eq!(manifest["channel"], "api");
    assert_eq!(manifest["report"]["title"], "Path traversal in export");
    assert_eq!(manifest["reporter"]["email"], "r@example.org");
    for (i, (name, bytes)) in files.iter().enumerate() {
        let entry = &manifest["attachments"][i];
        assert_eq!(entry["name"], *name);
        assert_eq!(entry["file"], format!("{:03}.pgp", i + 1));
        let (plain, _) = gpg.decrypt(&dir.join(format!("{:03}.pgp", i + 1)));
        assert!(plain == *bytes, "{name} must decrypt to the bytes sent");
    }
    assert_eq!(manifest["attachments"][0]["media_type"], "text/x-python");
    assert_store_clean(&site, 1);
}

const ALL_FIELDS: &[(&str, &str)] = &[
    ("title", "Stored XSS in comments"),
    ("affected_versions", "1.2.0 to 1.4.1"),
    ("environment", "Debian 12, Firefox 128"),
    ("severity", "high"),
    (
        "cvss_vector",
        "CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N",
    ),
    ("cwe", "CWE-79"),
    (
        "description",
        "Comment bodies are rendered without escaping.",
    ),
    ("impact", "Session theft of any reader."),
    ("steps_to_reproduce", "1. Post a comment\n2. Open it"),
    ("mitigations", "Escape on output."),
    ("reporter_name", "R. Searcher"),
    ("reporter_email", "r@example.org"),
    ("credit", "name"),
];

#[test]
fn form_post_answers_with_a_receipt_page_and_seals_every_field() {
    let (site, secret) = site_with_key("", TEST_LIMITS);
    let srv = Server::start(&site);
    let mut form = Form::new();
    for (name, value) in ALL_FIELDS {
        form = form.text(*name, *value);
    }
    let poc = random_bytes(70_000, 2);
    form = form.part("attachment", Part::bytes(poc.clone()).file_name("poc.html"));
    // What a browser sends for a second, empty file input: skipped.
    form = form.part("attachment", Part::bytes(Vec::new()).file_name(""));
    // A file name is shown on the receipt page: escaped.
    form = form.part(
        "attachment",
        Part::bytes(b"x".to_vec()).file_name("<img src=x onerror=alert(1)>.txt"),
    );
    let r = client()
        .post(srv.url("/report"))
        .multipart(form)
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let page = r.text().unwrap();
    let id = page
        .split("id=\"report-id\">")
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap()
        .to_string();
    id.parse::<ReportId>().unwrap();
    assert!(page.contains("BEGIN PGP SIGNED MESSAGE"));
    assert!(page.contains("48 hours"), "policy promise on the receipt");
    assert!(
        !page.contains("<img src=x"),
        "file names are escaped on the receipt"
    );

    let manifest = manifest_of(&site, &secret, &id);
    assert_eq!(manifest.channel, embargo::seal::Channel::Web);
    let report = serde_json::to_value(&manifest.report).unwrap();
    for (name, value) in &ALL_FIELDS[..10] {
        match *name {
            "cvss_vector" => assert_eq!(report["cvss"]["vector"], *value),
            "cwe" => assert_eq!(report["cwe"][0], *value),
            _ => assert_eq!(report[name], *value, "{name}"),
        }
    }
    assert_eq!(report["cvss"]["version"], "3.1");
    assert_eq!(manifest.reporter.name, "R. Searcher");
    assert_eq!(manifest.reporter.email, "r@example.org");
    assert_eq!(manifest.reporter.credit, embargo::report::Credit::Name);
    assert_eq!(manifest.attachments.len(), 2);
    assert_eq!(
        manifest.attachments[1].name,
        "<img src=x onerror=alert(1)>.txt"
    );
    assert_eq!(manifest.attachments[0].name, "poc.html");
    assert!(attachment_bytes(&site, &secret, &id, 0) == poc);
}

/// Undoes HTML escaping: named and numeric character references.
fn html_unescape(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let Some(end) = rest.find(';').filter(|&e| e < 10) else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let entity = &rest[1..end];
        let c = match entity {
            "lt" => Some('<'),
            "gt" => Some('>'),
            "amp" => Some('&'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix('#')
                .and_then(|n| n.parse::<u32>().ok())
                .and_then(char::from_u32),
        };
        match c {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[test]
fn invalid_form_is_shown_again_with_escaped_values_and_nothing_stored() {
    let (site, _secret) = site_with_key("", TEST_LIMITS);
    let srv = Server::start(&site);
    let xss = "\"'><script>alert(1)</script><img src=x onerror=alert(2)>&amp;";
    let mut form = Form::new();
    for name in embargo::report::FIELDS {
        form = form.text(*name, format!("{name}{xss}"));
    }
    form = form.part(
        "attachment",
        Part::bytes(b"poc bytes".to_vec()).file_name("poc.txt"),
    );
    let r = client()
        .post(srv.url("/report"))
        .multipart(form)
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    let page = r.text().unwrap();
    assert!(!page.contains("<script>alert"), "payload must be escaped");
    assert!(!page.contains("<img src=x"), "payload must be escaped");
    let shown = html_unescape(&page);
    for name in embargo::report::FIELDS {
        // Every typed value comes back, escaped (selects cannot show free text).
        if !["severity", "credit"].contains(name) {
            assert!(
                shown.contains(&format!("{name}{xss}")),
                "{name} not re-shown"
            );
        }
    }
    // Errors sit beside their fields, and the page says files must be chosen again.
    for field in ["severity", "cvss_vector", "cwe", "reporter_email", "credit"] {
        assert!(
            page.contains(&format!("id=\"{field}-error\"")),
            "no error beside {field}"
        );
    }
    assert!(page.contains("Choose your files again") || page.contains("choose them again"));
    assert_store_clean(&site, 0);
}

/// Hostile and broken requests: each its documented status, the server
/// stays up, and nothing is stored.
#[test]
fn hostile_multipart_gets_clear_errors_and_stores_nothing() {
    let (site, _secret) = site_with_key("", &format!("{TEST_LIMITS}\nupload_timeout = \"20s\""));
    let srv = Server::start(&site);
    let a = srv.addr.as_str();
    let good = || RawMultipart::new().text("report", &api_json("t"));

    // Content type without a boundary, and not multipart at all.
    let req = format!(
        "POST /api/v1/reports HTTP/1.1\r\nHost: {a}\r\nContent-Type: multipart/form-data\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    );
    let (status, text) = raw_http(a, req.as_bytes(), false);
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("\"no_boundary\""), "{text}");
    let req = format!(
        "POST /api/v1/reports HTTP/1.1\r\nHost: {a}\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    );
    assert_eq!(raw_http(a, req.as_bytes(), false).0, 415);
    let req = format!(
        "POST /report HTTP/1.1\r\nHost: {a}\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi"
    );
    assert_eq!(raw_http(a, req.as_bytes(), false).0, 415);

    // Truncated body: Content-Length promises more than arrives.
    let mp = good().file(b"poc.bin", &random_bytes(200_000, 3)).end();
    let mut req = mp.request(a, "/api/v1/reports");
    req.truncate(req.len() - 100_000);
    let (status, text) = raw_http(a, &req, true);
    assert_eq!(status, 400, "{text}");
    assert_store_clean(&site, 0);

    // No final boundary.
    let mp = good().file(b"poc.bin", b"data");
    let (status, text) = raw_http(a, &mp.request(a, "/api/v1/reports"), false);
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("incomplete_multipart"), "{text}");

    // Duplicate parts: API `report` twice; a form field twice.
    let mp = good().text("report", &api_json("again")).end();
    let (status, text) = raw_http(a, &mp.request(a, "/api/v1/reports"), false);
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("duplicate_part"), "{text}");
    let mp = RawMultipart::new()
        .text("title", b"one")
        .text("title", b"two")
        .text("description", b"d")
        .end();
    let (status, text) = raw_http(a, &mp.request(a, "/report"), false);
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("was sent more than once"), "{text}");

    // A part header line of 2 MiB.
    let mut huge = format!(
        "--{}\r\nContent-Disposition: form-data; name=\"report\"\r\nX-Junk: ",
        RawMultipart::new().boundary
    )
    .into_bytes();
    huge.extend(std::iter::repeat_n(b'a', 2 * 1024 * 1024));
    huge.extend_from_slice(b"\r\n\r\n{}\r\n");
    let mp = RawMultipart::new().raw(&huge).end();
    let (status, text) = raw_http(a, &mp.request(a, "/api/v1/reports"), false);
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("headers_too_long"), "{text}");

    // NUL bytes and invalid UTF-8 in form fields: the form again, with the error.
    let mp = RawMultipart::new()
        .text("title", b"nul\0byte")
        .text("description", b"bad \xff\xfe utf-8")
        .end();
    let (status, text) = raw_http(a, &mp.request(a, "/report"), false);
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("contains a NUL byte"), "{text}");
    assert!(text.contains("is not valid UTF-8"), "{text}");
    // Invalid UTF-8 and NUL inside the API's JSON.
    let mp = RawMultipart::new()
        .text("report", b"{\"report\":{\"title\":\"\xff\"}}")
        .end();
    assert_eq!(raw_http(a, &mp.request(a, "/api/v1/reports"), false).0, 400);
    let mp = RawMultipart::new()
        .text(
            "report",
            b"{\"report\":{\"title\":\"a\\u0000b\",\"description\":\"d\"}}",
        )
        .end();
    assert_eq!(raw_http(a, &mp.request(a, "/api/v1/reports"), false).0, 400);
    // JSON errors name the problem, never the content: not a string value
    // sent where an object belongs, nor a 600 KB unknown key (it came back
    // twice, a 1.2 MB answer).
    let canary = "CANARY-7f3a";
    let long_key = format!(r#"{{"report":{{"{}":1}}}}"#, canary.repeat(50_000));
    for json in [
        format!(r#"{{"report":"{canary} the whole report"}}"#),
        format!(r#"{{"report":{{"title":"t","description":"d","cwe":{{"{canary}":1}}}}}}"#),
        format!(r#"{{"report":{{"{canary} a key":"v"}}}}"#),
        long_key,
    ] {
        let mp = RawMultipart::new().text("report", json.as_bytes()).end();
        let (status, text) = raw_http(a, &mp.request(a, "/api/v1/reports"), false);
        assert_eq!(status, 400, "{text}");
        assert!(text.contains("is not valid input JSON"), "{text}");
        assert!(!text.contains(canary), "{}", &text[..text.len().min(500)]);
        assert!(text.len() < 4096, "{} bytes", text.len());
    }
    // A NUL byte in a part header, and an unknown part.
    let mp = RawMultipart::new()
        .raw(
            format!(
                "--{}\r\nContent-Disposition: form-data; name=\"rep\0ort\"\r\n\r\nx\r\n",
                RawMultipart::new().boundary
            )
            .as_bytes(),
        )
        .end();
    assert_eq!(raw_http(a, &mp.request(a, "/api/v1/reports"), false).0, 400);
    let mp = good().text("extra", b"x").end();
    assert_eq!(raw_http(a, &mp.request(a, "/api/v1/reports"), false).0, 400);
    // Raw control characters in a part header are malformed (RFC 9110 field values).
    let mp = good().file(b"ctl\x01\x1b[31mred\x7f.txt", b"content").end();
    let (status, text) = raw_http(a, &mp.request(a, "/api/v1/reports"), false);
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("malformed_multipart"), "{text}");
    // The report part missing.
    let mp = RawMultipart::new().file(b"poc.bin", b"data").end();
    let (status, text) = raw_http(a, &mp.request(a, "/api/v1/reports"), false);
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("missing_report"), "{text}");
    assert_store_clean(&site, 0);
    assert_healthy(&srv);

    // Hostile file names are accepted but tamed: no separators, no control
    // characters, at most 255 characters.
    let long = "n".repeat(4096);
    let names: Vec<&[u8]> = vec![
        b"../../etc/passwd",
        b"/abs/path.txt",
        b"tab\there.txt",
        long.as_bytes(),
        b"..",
        b"inv\xffalid.bin",
    ];
    let mut mp = good();
    for name in &names {
        mp = mp.file(name, b"content");
    }
    let (status, text) = raw_http(a, &mp.end().request(a, "/api/v1/reports"), false);
    assert_eq!(status, 201, "{text}");
    let json: Value = serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    let stored: Vec<String> = json["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(stored[0], "passwd");
    assert_eq!(stored[1], "path.txt");
    assert_eq!(stored[2], "tabhere.txt");
    assert_eq!(stored[3], "n".repeat(255));
    assert_eq!(stored[4], "attachment");
    assert_eq!(
        stored[5], "attachment",
        "a name that is not UTF-8 is replaced"
    );
    for name in &stored {
        assert!(
            !name.contains('/') && !name.contains('\\') && !name.chars().any(char::is_control),
            "{name:?}"
        );
        assert!(
            name.chars().count() <= 255 && !name.starts_with('.'),
            "{name:?}"
        );
    }
    assert_store_clean(&site, 1);
    assert_healthy(&srv);
}

#[test]
fn size_and_count_limits_answer_413_and_store_nothing() {
    let (site, secret) = site_with_key(
        "",
        &format!(
            "{TEST_LIMITS}\nmax_attachment_bytes = 1024\nmax_attachments = 2\nmax_field_bytes = 100"
        ),
    );
    let srv = Server::start(&site);
    let post = |files: &[Vec<u8>]| {
        let mut form = Form::new().part("report", Part::bytes(api_json("t")));
        for (i, f) in files.iter().enumerate() {
            form = form.part(
                "attachment",
                Part::bytes(f.clone()).file_name(format!("f{i}.bin")),
            );
        }
        let r = client()
            .post(srv.url("/api/v1/reports"))
            .multipart(form)
            .send()
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json::<Value>().unwrap())
    };
    let (status, body) = post(&[random_bytes(1025, 4)]);
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "file_too_large");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("1024 bytes"),
        "the limit is named"
    );
    // The second file is one byte over: the first, already sealed, goes too.
    let (status, _) = post(&[random_bytes(10, 5), random_bytes(1025, 6)]);
    assert_eq!(status, 413);
    let (status, body) = post(&[random_bytes(1, 7), random_bytes(1, 8), random_bytes(1, 9)]);
    assert_eq!(status, 413);
    assert_eq!(body["error"]["code"], "too_many_attachments");
    assert_store_clean(&site, 0);

    // Exactly at the limits is fine.
    let exact = random_bytes(1024, 10);
    let (status, body) = post(&[exact.clone(), random_bytes(3, 11)]);
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap();
    assert!(attachment_bytes(&site, &secret, id, 0) == exact);

    // A text field over max_field_bytes: 400 naming the limit.
    let form = Form::new()
        .text("title", "t")
        .text("description", "x".repeat(101));
    let r = client()
        .post(srv.url("/report"))
        .multipart(form)
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(
        r.text()
            .unwrap()
            .contains("longer than the limit of 100 bytes")
    );
    assert_store_clean(&site, 1);
    assert_healthy(&srv);
}

#[test]
fn a_client_that_stops_mid_file_leaves_no_trace() {
    let (site, _secret) = site_with_key("", &format!("{TEST_LIMITS}\nupload_timeout = \"3s\""));
    let srv = Server::start(&site);
    let a = srv.addr.as_str();
    let mp = RawMultipart::new()
        .text("report", &api_json("t"))
        .file(b"poc.bin", &random_bytes(400_000, 12))
        .end();
    let req = mp.request(a, "/api/v1/reports");
    let half = &req[..req.len() / 2];

    // Stalls: the upload deadline answers 408.
    let started = Instant::now();
    let (status, text) = {
        let mut s = TcpStream::connect(a).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(half).unwrap();
        let mut out = Vec::new();
        let _ = std::io::Read::read_to_end(&mut s, &mut out);
        let text = String::from_utf8_lossy(&out).into_owned();
        (server::status_of(&text), text)
    };
    assert_eq!(status, 408, "{text}");
    assert!(text.contains("\"timeout\""), "{text}");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_store_clean(&site, 0);

    // Disconnects mid-file, once the upload is being staged.
    {
        let mut s = TcpStream::connect(a).unwrap();
        s.write_all(half).unwrap();
        wait_until("the upload to be staged", Duration::from_secs(10), || {
            !staged_reports(&site).is_empty()
        });
    }
    assert_store_clean(&site, 0);
    assert_healthy(&srv);
}

/// Reads what the server sends on `stream` until it closes (or 10 s).
fn read_answer(stream: &mut TcpStream) -> String {
    use std::io::Read;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn a_connection_flood_is_shed_with_503_within_the_open_file_limit() {
    // 300 descriptors, 4 uploads: room for 156 connections, not 512.
    let (site, secret) = site_with_key(
        &format!("metrics_listen = \"{}\"", common::METRICS_ANY_PORT),
        // One peer floods: its own cap is lifted to reach the server's.
        "rate_limit_per_minute = 1000\nmax_concurrent_uploads = 4\nmax_connections_per_peer = 1000",
    );
    let mut srv = Server::start_wrapped(&site, &["prlimit", "--nofile=300:300"]);
    let metrics_addr = srv.bound_address("metrics listening on http://");
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", srv.pid())).unwrap();
    assert!(
        limits
            .lines()
            .any(|l| l.starts_with("Max open files") && l.contains(" 300 ")),
        "{limits}"
    );
    // Logged as the listener starts, which may be just after "listening".
    srv.logs
        .wait_for("leaves room for 156 connections", Duration::from_secs(10));

    // Idle connections take every slot; each one over gets 503 or, past
    // the answers sent at once, is closed: never a hang, never a crash.
    let baseline = srv.open_fds();
    let idle: Vec<TcpStream> = (0..156)
        .map(|_| TcpStream::connect(&srv.addr).unwrap())
        .collect();
    wait_until(
        "the server to accept the idle connections",
        Duration::from_secs(10),
        || srv.open_fds() >= baseline + 156,
    );
    let mut over: Vec<TcpStream> = (0..250)
        .map(|_| TcpStream::connect(&srv.addr).unwrap())
        .collect();
    let answers: Vec<String> = over.iter_mut().map(read_answer).collect();
    let busy = answers
        .iter()
        .filter(|a| a.starts_with("HTTP/1.1 503 ") && a.contains("Retry-After: 10"))
        .count();
    assert!(
        busy >= 60,
        "{busy} of 250 over-limit connections were answered 503"
    );
    assert!(
        answers
            .iter()
            .all(|a| a.is_empty() || a.starts_with("HTTP/1.1 503 ")),
        "over the limit, only 503 or a close"
    );
    // A request over the limit also gets the 503, once the answers to
    // the flood are done.
    drop(over);
    wait_until(
        "the server to close the flood",
        Duration::from_secs(10),
        || srv.open_fds() <= baseline + 156,
    );
    let mut late = TcpStream::connect(&srv.addr).unwrap();
    late.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert!(read_answer(&mut late).starts_with("HTTP/1.1 503 "));

    // The slots come back when the idle connections go, and a report with
    // a file is taken, sealed and stored as usual.
    drop(idle);
    wait_until(
        "the server to let the idle connections go",
        Duration::from_secs(10),
        || srv.open_fds() <= baseline,
    );
    let poc = random_bytes(300_000, 77);
    let id = submit_with_file(&srv, "after the flood", &poc);
    assert_eq!(attachment_bytes(&site, &secret, &id, 0), poc);
    let metrics = client()
        .get(format!("http://{metrics_addr}/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let shed: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("embargo_connections_shed_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        shed > busy as u64,
        "{shed} connections counted as shed, {busy} answered 503 and one late"
    );
    let fds = std::fs::read_dir(format!("/proc/{}/fd", srv.pid()))
        .unwrap()
        .count();
    assert!(fds < 100, "{fds} descriptors still open after the flood");
}

#[test]
fn concurrency_and_rate_limits_answer_503_and_429() {
    let (site, _secret) = site_with_key(
        "",
        "rate_limit_per_minute = 4\nmax_concurrent_uploads = 1\nupload_timeout = \"5s\"",
    );
    let srv = Server::start(&site);
    let a = srv.addr.as_str();
    // One upload holds the only slot, stalled mid-file.
    let mp = RawMultipart::new()
        .text("report", &api_json("t"))
        .file(b"poc.bin", &random_bytes(100_000, 13))
        .end();
    let req = mp.request(a, "/api/v1/reports");
    let baseline = srv.open_fds();
    let mut holder = TcpStream::connect(a).unwrap();
    holder.write_all(&req[..req.len() / 2]).unwrap();
    wait_until(
        "the upload to hold the slot",
        Duration::from_secs(10),
        || !staged_reports(&site).is_empty(),
    );
    let form = Form::new().part("report", Part::bytes(api_json("t")));
    let r = client()
        .post(srv.url("/api/v1/reports"))
        .multipart(form)
        .send()
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(r.json::<Value>().unwrap()["error"]["code"], "busy");
    drop(holder);
    // The slot is free once the server has let every connection go.
    wait_until(
        "the server to end the stalled upload",
        Duration::from_secs(10),
        || srv.open_fds() <= baseline && staged_reports(&site).is_empty(),
    );

    // Only accepted reports count against the limit (the two refusals
    // above do not): four pass, the fifth in the minute is refused.
    for _ in 0..4 {
        let form = Form::new().part("report", Part::bytes(api_json("t")));
        assert_eq!(
            client()
                .post(srv.url("/api/v1/reports"))
                .multipart(form)
                .send()
                .unwrap()
                .status(),
            201
        );
    }
    let form = Form::new().part("report", Part::bytes(api_json("t")));
    let r = client()
        .post(srv.url("/api/v1/reports"))
        .multipart(form)
        .send()
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    assert!(
        r.json::<Value>().unwrap()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 4 reports a minute")
    );
    // The form gets a page.
    let r = client()
        .post(srv.url("/report"))
        .multipart(Form::new().text("title", "t"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.text().unwrap().contains("at most 4 reports a minute"));
    assert_store_clean(&site, 4);
    let log = srv.logs.text();
    assert!(
        !log.contains("127.0.0.1:")
            || log
                .lines()
                .all(|l| !l.contains("127.0.0.1:") || l.contains("listening")),
        "no peer addresses in the log:\n{log}"
    );
}

#[test]
fn canary_in_every_field_and_file_never_rests_in_plaintext() {
    let (site, secret) = site_with_key("", TEST_LIMITS);
    let srv = Server::start(&site);
    let canary = "CANARY-7f3a9c1e-do-not-store";
    // Form, with an invalid e-mail first (refused), then valid.
    for email in [format!("{canary}@"), format!("{canary}@example.org")] {
        let mut form = Form::new();
        for name in embargo::report::FIELDS {
            let value = match *name {
                "severity" => "high".to_string(),
                "credit" => "name".to_string(),
                "cvss_vector" => String::new(),
                "cwe" => "CWE-1".to_string(),
                "reporter_email" => email.clone(),
                // The reporter's own key, with the canary in its user ID.
                "reporter_openpgp_key" => String::from_utf8(common::armored_public(
                    &common::sequoia_key(&format!("{canary} <key@example.org>")),
                ))
                .unwrap(),
                _ => format!("{name} {canary}"),
            };
            form = form.text(*name, value);
        }
        let mut file = random_bytes(200_000, 14);
        file.extend_from_slice(canary.as_bytes());
        form = form.part(
            "attachment",
            Part::bytes(file).file_name(format!("{canary}.bin")),
        );
        let r = client()
            .post(srv.url("/report"))
            .header("user-agent", format!("UA-{canary}"))
            .header("referer", format!("http://127.0.0.1/{canary}"))
            .multipart(form)
            .send()
            .unwrap();
        let expect = if email.ends_with('@') { 400 } else { 201 };
        assert_eq!(r.status(), expect);
    }
    // API.
    let json = serde_json::json!({
        "report": {"title": canary, "description": canary, "impact": canary, "environment": canary},
        "reporter": {"name": canary, "email": format!("{canary}@example.org"), "credit": "name"}
    });
    let form = Form::new()
        .part("report", Part::bytes(serde_json::to_vec(&json).unwrap()))
        .part(
            "attachment",
            Part::bytes(format!("file {canary}").into_bytes()).file_name(canary.to_string()),
        );
    assert_eq!(
        client()
            .post(srv.url("/api/v1/reports"))
            .multipart(form)
            .send()
            .unwrap()
            .status(),
        201
    );

    assert_store_clean(&site, 2);
    for dir in [site.store_dir(), site.state_dir(), site.tmp_dir()] {
        assert_eq!(
            files_containing(&dir, canary.as_bytes()),
            Vec::<std::path::PathBuf>::new(),
            "canary in {}",
            dir.display()
        );
    }
    let log = srv.logs.bytes();
    assert!(
        !log.windows(canary.len()).any(|w| w == canary.as_bytes()),
        "canary in the log:\n{}",
        srv.logs.text()
    );
    assert!(
        srv.logs.text().contains("report sealed and stored"),
        "the log does say what happened"
    );
    // The canary is in the ciphertext, for the maintainers.
    let id = &site.report_ids()[0];
    assert!(
        serde_json::to_string(&manifest_of(&site, &secret, id).report)
            .unwrap()
            .contains(canary)
    );
}

#[test]
fn without_a_usable_key_reports_are_refused_until_keys_reload() {
    let site = Site::new();
    // A key that expired: unusable. (Created 3 days ago, valid for one.)
    let created = std::time::SystemTime::now() - Duration::from_secs(3 * 86_400);
    let (expired, _) = openpgp::cert::CertBuilder::general_purpose(Some("Old <old@example.org>"))
        .set_cipher_suite(openpgp::cert::CipherSuite::Cv25519)
        .set_creation_time(created)
        .set_validity_period(Duration::from_secs(86_400))
        .generate()
        .unwrap();
    site.add_key("old.asc", &common::armored_public(&expired));
    site.write_config(&format!(
        "listen = \"127.0.0.1:0\"\n[limits]\n{TEST_LIMITS}\n"
    ));
    let srv = Server::start(&site);

    let r = client().get(srv.url("/healthz")).send().unwrap();
    assert_eq!(r.status(), 503);
    let health: Value = r.json().unwrap();
    let why = health["problems"][0].as_str().unwrap();
    assert!(
        why.contains("no usable maintainer certificate") && why.contains("expired"),
        "{why}"
    );
    assert!(
        !why.contains(site.path().to_str().unwrap()),
        "no server paths in public answers"
    );

    let form = Form::new()
        .part("report", Part::bytes(api_json("t")))
        .part("attachment", Part::bytes(b"x".to_vec()).file_name("x"));
    let r = client()
        .post(srv.url("/api/v1/reports"))
        .multipart(form)
        .send()
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.json::<Value>().unwrap()["error"]["code"], "no_usable_key");
    let form = Form::new().text("title", "t").text("description", "d");
    let r = client()
        .post(srv.url("/report"))
        .multipart(form)
        .send()
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(
        r.text()
            .unwrap()
            .contains("no maintainer encryption key is usable")
    );
    let page = client().get(srv.url("/")).send().unwrap().text().unwrap();
    assert!(page.contains("Reports cannot be accepted right now"));
    assert_store_clean(&site, 0);

    // A maintainer adds a fresh key; SIGHUP reloads it.
    let fresh = common::sequoia_key("New <new@example.org>");
    site.add_key("new.asc", &common::armored_public(&fresh));
    srv.signal("HUP");
    srv.logs
        .wait_for("SIGHUP: reloading certificates", Duration::from_secs(20));
    wait_until_with(
        "the keys to reload",
        Duration::from_secs(20),
        || client().get(srv.url("/healthz")).send().unwrap().status() == 200,
        || srv.logs.text(),
    );
    let form = Form::new().part("report", Part::bytes(api_json("t")));
    assert_eq!(
        client()
            .post(srv.url("/api/v1/reports"))
            .multipart(form)
            .send()
            .unwrap()
            .status(),
        201
    );
    assert_store_clean(&site, 1);
}

#[test]
fn keys_reload_when_the_keys_directory_changes() {
    let site = Site::new();
    site.write_config(&format!(
        "listen = \"127.0.0.1:0\"\n[limits]\n{TEST_LIMITS}\n"
    ));
    let srv = Server::start(&site);
    assert_eq!(
        client().get(srv.url("/healthz")).send().unwrap().status(),
        503
    );
    let cert = common::sequoia_key("New <new@example.org>");
    site.add_key("new.asc", &common::armored_public(&cert));
    wait_until_with(
        "the keys to reload",
        Duration::from_secs(30),
        || client().get(srv.url("/healthz")).send().unwrap().status() == 200,
        || srv.logs.text(),
    );
    // Removing it again stops its use.
    std::fs::remove_file(site.keys_dir().join("new.asc")).unwrap();
    wait_until_with(
        "the removed key to go out of use",
        Duration::from_secs(30),
        || client().get(srv.url("/healthz")).send().unwrap().status() == 503,
        || srv.logs.text(),
    );
    let form = Form::new().part("report", Part::bytes(api_json("t")));
    assert_eq!(
        client()
            .post(srv.url("/api/v1/reports"))
            .multipart(form)
            .send()
            .unwrap()
            .status(),
        503
    );
    assert_store_clean(&site, 0);
}

#[test]
fn a_key_that_expires_while_serving_stops_being_used() {
    let site = Site::new();
    let now = std::time::SystemTime::now();
    let (short, _) = openpgp::cert::CertBuilder::general_purpose(Some("Short <short@example.org>"))
        .set_cipher_suite(openpgp::cert::CipherSuite::Cv25519)
        .set_creation_time(now - Duration::from_secs(60))
        .set_validity_period(Duration::from_secs(60 + 15))
        .generate()
        .unwrap();
    site.add_key("short.asc", &common::armored_public(&short));
    site.write_config(&format!(
        "listen = \"127.0.0.1:0\"\npublic_url = \"https://security.example.org\"\n[limits]\n{TEST_LIMITS}\n"
    ));
    let srv = Server::start(&site);
    let post = || {
        let form = Form::new().part("report", Part::bytes(api_json("t")));
        client()
            .post(srv.url("/api/v1/reports"))
            .multipart(form)
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(post(), 201);
    let txt = client()
        .get(srv.url("/.well-known/security.txt"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let expires = txt
        .lines()
        .find_map(|l| l.strip_prefix("Expires: "))
        .unwrap();
    let expires = embargo::clock::parse_rfc3339(expires).unwrap();
    assert!(
        expires <= now + Duration::from_secs(16),
        "security.txt Expires must not outlive the key"
    );
    wait_until("the key to expire", Duration::from_secs(30), || {
        std::time::SystemTime::now() >= now + Duration::from_secs(16)
    });
    assert_eq!(post(), 503);
    assert_eq!(
        client().get(srv.url("/healthz")).send().unwrap().status(),
        503
    );
    assert_eq!(
        client().get(srv.url("/keys.asc")).send().unwrap().status(),
        503
    );
    assert_store_clean(&site, 1);
}

#[test]
fn maintainer_routes_need_the_token_and_serve_ranges() {
    let token = "test-token-0123456789";
    let hash = sha256_hex(token.as_bytes());
    let (site, _secret) = site_with_key(
        &format!("[maintainers]\ntoken_sha256 = [\"{hash}\"]"),
        TEST_LIMITS,
    );
    let srv = Server::start(&site);
    let id = submit_with_file(&srv, "t", &random_bytes(100_000, 15));
    let missing = ReportId::random().to_string();

    let c = client();
    for path in [
        "/api/v1/sealed".to_string(),
        format!("/api/v1/sealed/{id}/001.pgp"),
        format!("/api/v1/sealed/{missing}/001.pgp"),
        "/api/v1/sealed/not-an-id/x".into(),
    ] {
        for auth in [
            None,
            Some("Bearer wrong"),
            Some("Bearer "),
            Some("Basic dGVzdA=="),
            Some(&*format!("Bearer {token}x")),
        ] {
            let mut req = c.get(srv.url(&path));
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            let r = req.send().unwrap();
            assert_eq!(r.status(), 401, "{path} {auth:?}");
            assert_eq!(r.headers()["www-authenticate"], "Bearer");
            let body: Value = r.json().unwrap();
            assert_eq!(
                body["error"]["code"], "unauthorized",
                "the same answer whether or not the report exists"
            );
        }
    }
    let bearer = format!("Bearer {token}");
    let list: Value = c
        .get(srv.url("/api/v1/sealed"))
        .header("authorization", &bearer)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let reports = list["reports"].as_array().unwrap();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0]["id"], id.as_str());
    let parts = reports[0]["parts"].as_array().unwrap();
    assert_eq!(parts[0]["name"], "manifest.pgp");
    assert_eq!(parts[1]["name"], "001.pgp");
    let on_disk = std::fs::read(site.reports_dir().join(&id).join("001.pgp")).unwrap();
    assert_eq!(parts[1]["size"], on_disk.len() as u64);
    assert_eq!(
        reports[0].as_object().unwrap().len(),
        2,
        "no other metadata"
    );

    let part_url = srv.url(&format!("/api/v1/sealed/{id}/001.pgp"));
    let r = c
        .get(&part_url)
        .header("authorization", &bearer)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-length"],
        on_disk.len().to_string().as_str()
    );
    assert_eq!(r.headers()["accept-ranges"], "bytes");
    assert!(r.bytes().unwrap() == on_disk);
    let r = c
        .get(&part_url)
        .header("authorization", &bearer)
        .header("range", "bytes=10-19")
        .send()
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes 10-19/{}", on_disk.len()).as_str()
    );
    assert_eq!(r.headers()["content-length"], "10");
    assert!(r.bytes().unwrap() == on_disk[10..20]);
    let r = c
        .get(&part_url)
        .header("authorization", &bearer)
        .header("range", "bytes=50000-")
        .send()
        .unwrap();
    assert_eq!(r.status(), 206);
    assert!(r.bytes().unwrap() == on_disk[50_000..]);
    let r = c
        .get(&part_url)
        .header("authorization", &bearer)
        .header("range", "bytes=-7")
        .send()
        .unwrap();
    assert!(r.bytes().unwrap() == on_disk[on_disk.len() - 7..]);
    let r = c
        .get(&part_url)
        .header("authorization", &bearer)
        .header("range", format!("bytes={}-", on_disk.len()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 416);
    for path in [
        format!("/api/v1/sealed/{missing}/001.pgp"),
        format!("/api/v1/sealed/{id}/002.pgp"),
        format!("/api/v1/sealed/{id}/..%2F..%2Fstate"),
    ] {
        assert_eq!(
            c.get(srv.url(&path))
                .header("authorization", &bearer)
                .send()
                .unwrap()
                .status(),
            404,
            "{path}"
        );
    }
}

#[test]
fn every_response_carries_the_security_headers() {
    let (site, _secret) = site_with_key("", TEST_LIMITS);
    let srv = Server::start(&site);
    let c = client();
    let responses = vec![
        c.get(srv.url("/")).send().unwrap(),
        c.get(srv.url("/healthz")).send().unwrap(),
        c.get(srv.url("/keys.asc")).send().unwrap(),
        c.get(srv.url("/nope")).send().unwrap(),
        c.get(srv.url("/static/style.css")).send().unwrap(),
        c.post(srv.url("/report")).body("x").send().unwrap(),
        c.get(srv.url("/api/v1/sealed")).send().unwrap(),
    ];
    for r in responses {
        let h = r.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("default-src 'none'")
                && csp.contains("frame-ancestors 'none'")
                && !csp.contains("unsafe-inline"),
            "{csp}"
        );
        assert!(!csp.contains("http"), "no third-party origin: {csp}");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["referrer-policy"], "no-referrer");
        assert_eq!(h["cache-control"], "no-store");
    }
    let page = c.get(srv.url("/")).send().unwrap().text().unwrap();
    assert!(!page.contains("<script"), "the form has no script");
    assert!(!page.contains("style=\""), "no inline styles (CSP)");
    assert!(
        !page.contains("https://") || page.contains("href=\"https://example.org/security\""),
        "no third-party resources"
    );
}

#[test]
fn the_form_shows_fields_policy_and_key_fingerprints() {
    let (site, cert) = site_with_key("", TEST_LIMITS);
    let srv = Server::start(&site);
    let page = client().get(srv.url("/")).send().unwrap().text().unwrap();
    for name in embargo::report::FIELDS {
        assert!(
            page.contains(&format!("name=\"{name}\"")),
            "field {name} missing"
        );
        assert!(
            page.contains(&format!("<label for=\"f-{name}\"")),
            "label for {name} missing"
        );
    }
    assert!(page.contains("name=\"attachment\""));
    // Text fields come before the file input (they arrive first).
    assert!(page.find("name=\"credit\"").unwrap() < page.find("name=\"attachment\"").unwrap());
    assert!(page.contains("enctype=\"multipart/form-data\""));
    assert!(
        page.contains("48 hours") && page.contains("7 days") && page.contains("5 business days"),
        "policy promises"
    );
    let fpr = cert.fingerprint().to_hex();
    assert!(
        page.contains(&fpr[..4]) && page.replace(' ', "").contains(&fpr),
        "fingerprint shown"
    );
    assert!(page.contains("href=\"/keys.asc\""));
    assert!(page.contains("https://example.org/security"));
    assert!(page.contains("Do not include secrets"));
    assert!(page.contains("name=\"viewport\""));
}

#[test]
fn keys_security_txt_and_signing_key() {
    let (site, cert) = site_with_key("public_url = \"https://intake.example.org\"", TEST_LIMITS);
    let srv = Server::start(&site);
    let c = client();
    let r = c.get(srv.url("/keys.asc")).send().unwrap();
    assert_eq!(r.headers()["content-type"], "application/pgp-keys");
    use openpgp::parse::Parse;
    let served = openpgp::Cert::from_bytes(&r.bytes().unwrap()).unwrap();
    assert_eq!(served.fingerprint(), cert.fingerprint());
    assert!(!served.is_tsk());
    let signing = openpgp::Cert::from_bytes(
        &c.get(srv.url("/signing-key.asc"))
            .send()
            .unwrap()
            .bytes()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(signing.fingerprint(), site.signing_cert().fingerprint());
    assert!(!signing.is_tsk());

    let txt = c
        .get(srv.url("/.well-known/security.txt"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    // URLs come from public_url, never from the address the request used.
    let base = "https://intake.example.org";
    assert!(!txt.contains(&srv.addr), "{txt}");
    assert!(txt.contains(&format!("Contact: {base}/\n")), "{txt}");
    assert!(
        txt.contains(&format!("Encryption: {base}/keys.asc\n")),
        "{txt}"
    );
    assert!(
        txt.contains("Policy: https://example.org/security\n"),
        "{txt}"
    );
    assert!(txt.contains("Preferred-Languages: en\n"), "{txt}");
    assert!(
        txt.contains(&format!("Canonical: {base}/.well-known/security.txt\n")),
        "{txt}"
    );
    let expires = txt
        .lines()
        .find_map(|l| l.strip_prefix("Expires: "))
        .unwrap();
    let expires = embargo::clock::parse_rfc3339(expires).unwrap();
    let now = std::time::SystemTime::now();
    assert!(
        expires > now && expires <= now + Duration::from_secs(366 * 86_400),
        "{txt}"
    );

    let health: Value = c.get(srv.url("/healthz")).send().unwrap().json().unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["usable_keys"], 1);
}

#[test]
fn cross_site_form_posts_are_refused() {
    let (site, _secret) = site_with_key("", TEST_LIMITS);
    let srv = Server::start(&site);
    let form = || Form::new().text("title", "t").text("description", "d");
    let c = client();
    let r = c
        .post(srv.url("/report"))
        .header("sec-fetch-site", "cross-site")
        .multipart(form())
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = c
        .post(srv.url("/report"))
        .header("origin", "https://evil.example")
        .multipart(form())
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = c
        .post(srv.url("/api/v1/reports"))
        .header("sec-fetch-site", "same-site")
        .multipart(Form::new().part("report", Part::bytes(api_json("t"))))
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_store_clean(&site, 0);
    let r = c
        .post(srv.url("/report"))
        .header("sec-fetch-site", "same-origin")
        .header("origin", srv.base.clone())
        .multipart(form())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
}

#[test]
fn sigterm_lets_an_upload_in_flight_finish() {
    let (site, secret) = site_with_key("", TEST_LIMITS);
    let mut srv = Server::start(&site);
    let a = srv.addr.clone();
    let file = random_bytes(300_000, 16);
    let mp = RawMultipart::new()
        .text("report", &api_json("t"))
        .file(b"poc.bin", &file)
        .end();
    let req = mp.request(&a, "/api/v1/reports");
    let mut s = TcpStream::connect(&a).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(&req[..req.len() / 2]).unwrap();
    // The upload is being sealed once its staging directory exists.
    wait_until("the upload to start", Duration::from_secs(20), || {
        !staged_reports(&site).is_empty()
    });
    srv.signal("TERM");
    srv.logs.wait_for(
        "shutting down: finishing uploads in flight",
        Duration::from_secs(20),
    );
    s.write_all(&req[req.len() / 2..]).unwrap();
    let mut out = Vec::new();
    let _ = std::io::Read::read_to_end(&mut s, &mut out);
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 201"), "{text}");
    let status = srv
        .wait_exit(Duration::from_secs(20))
        .expect("the server exits after SIGTERM");
    assert!(status.success(), "{status:?}:\n{}", srv.logs.text());
    assert_store_clean(&site, 1);
    let id = &site.report_ids()[0];
    assert!(attachment_bytes(&site, &secret, id, 0) == file);
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let (site, _secret) = site_with_key("", TEST_LIMITS);
    let mut srv = Server::start(&site);
    assert_healthy(&srv);
    srv.signal("TERM");
    let status = srv
        .wait_exit(Duration::from_secs(20))
        .expect("the server exits after SIGTERM");
    assert!(
        status.success(),
        "exit status {status:?}:\n{}",
        srv.logs.text()
    );
    assert_store_clean(&site, 0);
}

#[test]
fn demo_makes_a_clearly_marked_throwaway_key_and_its_command_decrypts() {
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("demo");
    let config = embargo::server::prepare_demo(&demo).unwrap();
    assert_eq!(config.listen, "127.0.0.1:8080");
    let secret = demo.join("maintainer-secret.asc");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let keyring =
        embargo::keys::Keyring::load(&config.keys_dir, embargo::clock::Clock::system()).unwrap();
    let usable = keyring.usable().unwrap();
    assert_eq!(usable.len(), 1);
    assert!(usable[0].user_id.as_deref().unwrap().starts_with("DEMO"));
    // Run again: the same key is reused.
    let before = std::fs::read(&secret).unwrap();
    embargo::server::prepare_demo(&demo).unwrap();
    assert_eq!(std::fs::read(&secret).unwrap(), before);

    // The demo layout is a site: serve it (on a free port), submit, and run
    // exactly the decrypt command the demo prints.
    let site = Site::new();
    embargo::server::prepare_demo(site.path()).unwrap();
    site.write_config(&format!(
        "listen = \"127.0.0.1:0\"\n[limits]\n{TEST_LIMITS}\n"
    ));
    let srv = Server::start(&site);
    let form = Form::new()
        .text("title", "Demo report")
        .text("description", "Works end to end.")
        .part(
            "attachment",
            Part::bytes(b"demo poc".to_vec()).file_name("poc.txt"),
        );
    let r = client()
        .post(srv.url("/report"))
        .multipart(form)
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let page = r.text().unwrap();
    let id = page
        .split("id=\"report-id\">")
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap()
        .to_string();
    let command = embargo::server::demo_decrypt_command(site.path()).replace("ID", &id);
    let args: Vec<&str> = command.split_whitespace().collect();
    let out = site.embargo().args(&args).output().unwrap();
    assert!(
        out.status.success(),
        "{command}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let revealed = site.path().join("revealed").join(&id);
    let files: Vec<String> = std::fs::read_dir(&revealed)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(files.iter().any(|f| f == "report.md"), "{files:?}");
    let poc = files
        .iter()
        .find(|f| f.contains("poc"))
        .unwrap_or_else(|| panic!("{files:?}"));
    assert_eq!(std::fs::read(revealed.join(poc)).unwrap(), b"demo poc");
}

/// Sends a chunked multipart POST whose parts come from `parts` (written
/// by a thread while the answer is read, so an early answer is seen) and
/// returns (status, whole answer). The writer stops when the server closes.
fn post_streamed_parts(
    addr: &str,
    path: &str,
    parts: impl Iterator<Item = Vec<u8>> + Send + 'static,
) -> (u16, String) {
    use std::io::Read;
    let boundary = RawMultipart::new().boundary;
    let mut stream = TcpStream::connect(addr).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let feeder = std::thread::spawn(move || {
        let mut send = |bytes: &[u8]| -> std::io::Result<()> {
            if !bytes.is_empty() {
                writer.write_all(format!("{:x}\r\n", bytes.len()).as_bytes())?;
                writer.write_all(bytes)?;
                writer.write_all(b"\r\n")?;
            }
            Ok(())
        };
        let mut batch = Vec::new();
        for part in parts {
            batch.extend_from_slice(&part);
            if batch.len() >= 64 * 1024 {
                if send(&batch).is_err() {
                    return;
                }
                batch.clear();
            }
        }
        batch.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        let _ = send(&batch);
        let _ = writer.write_all(b"0\r\n\r\n");
    });
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
    feeder.join().unwrap();
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = server::status_of(&text);
    (status, text)
}

/// One text part of a hand-made multipart body, with extra header lines.
fn text_part(name: &str, extra_headers: &str, value: &[u8]) -> Vec<u8> {
    let mut part = format!(
        "--{}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n{extra_headers}\r\n",
        RawMultipart::new().boundary
    )
    .into_bytes();
    part.extend_from_slice(value);
    part.extend_from_slice(b"\r\n");
    part
}

/// A file input with no file chosen, as a browser sends it.
fn empty_file_part(extra_headers: &str) -> Vec<u8> {
    format!(
        "--{}\r\nContent-Disposition: form-data; name=\"attachment\"; filename=\"\"\r\nContent-Type: application/octet-stream\r\n{extra_headers}\r\n\r\n",
        RawMultipart::new().boundary
    )
    .into_bytes()
}

#[test]
fn floods_of_repeated_unknown_empty_or_long_parts_are_refused_at_once_in_bounded_memory() {
    let (site, secret) = site_with_key("", TEST_LIMITS);
    let srv = Server::start(&site);
    let a = srv.addr.clone();
    assert_healthy(&srv);
    let before = srv.peak_rss_kib();
    const N: usize = 300_000;
    let junk_header = format!("X-Junk: {}\r\n", "j".repeat(8 * 1024));
    let report_json = api_json("t");
    type Parts = Box<dyn Iterator<Item = Vec<u8>> + Send>;
    let cases: Vec<(&str, &str, u16, &str, Parts)> = vec![
        (
            "duplicate titles",
            "/report",
            400,
            "was sent more than once",
            Box::new(
                [
                    text_part("title", "", b"one"),
                    text_part("description", "", b"d"),
                ]
                .into_iter()
                .chain(std::iter::repeat_with(|| text_part("title", "", b"again")).take(N)),
            ),
        ),
        (
            "duplicate descriptions after a valid form",
            "/report",
            400,
            "&#34;description&#34; was sent more than once",
            Box::new(
                [text_part("title", "", b"one")]
                    .into_iter()
                    .chain(std::iter::repeat_with(|| text_part("description", "", b"")).take(N)),
            ),
        ),
        (
            "unknown field names",
            "/report",
            400,
            "a part this intake does not know",
            Box::new(std::iter::repeat_with(|| text_part("titel", "", b"x")).take(N)),
        ),
        (
            "empty parts without a name",
            "/report",
            400,
            "a part this intake does not know",
            Box::new(
                std::iter::repeat_with(|| {
                    format!(
                        "--{}\r\nContent-Disposition: form-data\r\n\r\n\r\n",
                        RawMultipart::new().boundary
                    )
                    .into_bytes()
                })
                .take(N),
            ),
        ),
        (
            "empty file inputs",
            "/report",
            413,
            "more than 25 multipart parts",
            Box::new(
                [
                    text_part("title", "", b"t"),
                    text_part("description", "", b"d"),
                ]
                .into_iter()
                .chain(std::iter::repeat_with(|| empty_file_part("")).take(N)),
            ),
        ),
        (
            "empty file inputs with 8 KiB headers",
            "/report",
            413,
            "more than 25 multipart parts",
            Box::new(std::iter::repeat_with(move || empty_file_part(&junk_header)).take(20_000)),
        ),
        (
            "one description of 200 MiB",
            "/report",
            413,
            "the text fields together are larger than",
            Box::new(
                [text_part("title", "", b"t")]
                    .into_iter()
                    .chain([format!(
                        "--{}\r\nContent-Disposition: form-data; name=\"description\"\r\n\r\n",
                        RawMultipart::new().boundary
                    )
                    .into_bytes()])
                    .chain(std::iter::repeat_n(vec![b'x'; 1024 * 1024], 200)),
            ),
        ),
        (
            "the API's report part repeated",
            "/api/v1/reports",
            400,
            "duplicate_part",
            Box::new(std::iter::repeat_with(move || text_part("report", "", &report_json)).take(N)),
        ),
        (
            "empty attachments on the API",
            "/api/v1/reports",
            413,
            "too_many_parts",
            Box::new(
                [text_part("report", "", &api_json("t"))]
                    .into_iter()
                    .chain(std::iter::repeat_with(|| empty_file_part("")).take(N)),
            ),
        ),
    ];
    for (what, path, status, needle, parts) in cases {
        let started = Instant::now();
        let (got, answer) = post_streamed_parts(&a, path, parts);
        assert_eq!(got, status, "{what}: {answer}");
        assert!(answer.contains(needle), "{what}: {answer}");
        assert!(
            answer.len() < 16 * 1024,
            "{what}: the answer is {} bytes",
            answer.len()
        );
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{what}: refused only after {:?}",
            started.elapsed()
        );
        let growth_kib = srv.peak_rss_kib().saturating_sub(before);
        eprintln!(
            "{what}: answered {got} in {:?}, {} bytes; peak RSS growth so far {growth_kib} KiB",
            started.elapsed(),
            answer.len()
        );
        assert!(
            growth_kib < 64 * 1024,
            "{what}: the server's peak memory grew by {growth_kib} KiB"
        );
    }
    assert_store_clean(&site, 0);
    // Still serving, and a real report goes through.
    let poc = random_bytes(50_000, 91);
    let id = submit_with_file(&srv, "after the floods", &poc);
    assert_eq!(attachment_bytes(&site, &secret, &id, 0), poc);
    assert_store_clean(&site, 1);
}

#[test]
fn a_cwe_list_as_long_as_the_text_limit_allows_parses_in_bounded_memory() {
    let (site, _secret) = site_with_key("", TEST_LIMITS);
    let srv = Server::start(&site);
    let a = srv.addr.clone();
    assert_healthy(&srv);
    // Warm up: the first refusal builds what every later one reuses.
    let mp = RawMultipart::new().text("report", b"{}").end();
    assert_eq!(
        raw_http(&a, &mp.request(&a, "/api/v1/reports"), false).0,
        400
    );
    let before = srv.peak_rss_kib();
    // `""` items fill the 868 KB the text limit allows for the report part;
    // an untagged enum buffered each as its own value (22 MB here).
    let items = (13 * 65_536 + 16_384 - 64) / 3;
    let json = format!(
        r#"{{"report":{{"title":"t","description":"d","cwe":[{}]}}}}"#,
        vec![r#""""#; items].join(",")
    );
    let mp = RawMultipart::new().text("report", json.as_bytes()).end();
    let (status, text) = raw_http(&a, &mp.request(&a, "/api/v1/reports"), false);
    assert_eq!(status, 400, "{}", &text[..text.len().min(500)]);
    assert!(
        text.contains("cwe is longer than the limit of 65536 bytes"),
        "{text}"
    );
    let growth_kib = srv.peak_rss_kib().saturating_sub(before);
    eprintln!("cwe list of {items} items: peak RSS growth {growth_kib} KiB");
    assert!(
        growth_kib < 12 * 1024,
        "the server's peak memory grew by {growth_kib} KiB for a {} byte request",
        json.len()
    );
    assert_store_clean(&site, 0);
}

/// A client whose requests come from `source` (any 127.0.0.0/8 address is
/// this host on Linux): another peer, as far as the server can tell.
fn client_from(source: &str) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .local_address(source.parse::<std::net::IpAddr>().unwrap())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

#[test]
fn refused_attempts_count_against_their_own_higher_limit_not_the_report_limit() {
    let (site, _secret) = site_with_key(
        "",
        "rate_limit_per_minute = 2\nrefusal_limit_per_minute = 6",
    );
    let srv = Server::start(&site);
    let c = client();
    let valid = |c: &reqwest::blocking::Client| {
        c.post(srv.url("/api/v1/reports"))
            .multipart(Form::new().part("report", Part::bytes(api_json("t"))))
            .send()
            .unwrap()
    };
    let wrong_type = |c: &reqwest::blocking::Client| {
        c.post(srv.url("/api/v1/reports"))
            .header("content-type", "application/json")
            .body(api_json("t"))
            .send()
            .unwrap()
    };
    // A researcher fixing a script: three 415s and two invalid reports.
    for _ in 0..3 {
        let r = wrong_type(&c);
        assert_eq!(r.status(), 415);
        assert_eq!(
            r.json::<Value>().unwrap()["error"]["code"],
            "unsupported_media_type"
        );
    }
    for _ in 0..2 {
        let r = c
            .post(srv.url("/api/v1/reports"))
            .multipart(Form::new().part(
                "report",
                Part::bytes(br#"{"report":{"title":"t"}}"#.to_vec()),
            ))
            .send()
            .unwrap();
        assert_eq!(r.status(), 400);
        assert_eq!(
            r.json::<Value>().unwrap()["error"]["code"],
            "invalid_report"
        );
    }
    // ... then gets both reports of the minute accepted.
    for _ in 0..2 {
        let r = valid(&c);
        assert_eq!(r.status(), 201, "{}", r.text().unwrap());
    }
    let r = valid(&c);
    assert_eq!(r.status(), 429);
    assert!(
        r.json::<Value>().unwrap()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 2 reports a minute")
    );
    // The content type is still checked first: 415, the sixth refusal.
    assert_eq!(wrong_type(&c).status(), 415);
    // Past refusal_limit_per_minute, everything from this peer gets 429.
    let r = wrong_type(&c);
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    let message = r.json::<Value>().unwrap()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains("at most 6 refused submissions a minute"),
        "{message}"
    );
    assert_eq!(valid(&c).status(), 429);
    // The form gets the same as a page.
    let r = c
        .post(srv.url("/report"))
        .multipart(Form::new().text("title", "t"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.text().unwrap().contains("refused submissions"));
    // Another peer is not affected.
    let other = client_from("127.0.0.2");
    assert_eq!(valid(&other).status(), 201);
    assert_store_clean(&site, 3);
}

/// A TCP connection to `addr` from the loopback address `source`.
fn connect_from(source: &str, addr: &str) -> TcpStream {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let stream = runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
        socket.connect(addr.parse().unwrap()).await.unwrap()
    });
    let stream = stream.into_std().unwrap();
    stream.set_nonblocking(false).unwrap();
    stream
}

/// A connection that sent `head` and then trickles one byte every
/// `every` from a thread until the server closes it (or `stop` is set).
struct Trickle {
    stream: TcpStream,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Trickle {
    fn start(source: &str, addr: &str, head: &[u8], every: Duration) -> Trickle {
        let mut stream = connect_from(source, addr);
        stream.write_all(head).unwrap();
        let mut writer = stream.try_clone().unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let writer = std::thread::spawn(move || {
            while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                if writer.write_all(b"x").is_err() {
                    return;
                }
                // The slow pace is the point: a client trickling its headers.
                std::thread::sleep(every);
            }
        });
        Trickle {
            stream,
            stop,
            writer: Some(writer),
        }
    }

    /// What the server answers before it closes (read for at most `limit`).
    fn answer(&mut self, limit: Duration) -> String {
        use std::io::Read;
        self.stream.set_read_timeout(Some(limit)).unwrap();
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8_lossy(&answer).into_owned()
    }
}

impl Drop for Trickle {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

#[test]
fn slow_uploads_from_one_peer_cannot_take_every_slot_and_are_cut_below_the_minimum_rate() {
    let (site, secret) = site_with_key(
        "",
        "rate_limit_per_minute = 1000\nrefusal_limit_per_minute = 1000\nmax_concurrent_uploads = 4\nmax_uploads_per_peer = 2\nmin_upload_bytes_per_second = 1000\nupload_rate_window = \"2s\"\nupload_timeout = \"10m\"",
    );
    let srv = Server::start(&site);
    let a = srv.addr.as_str();
    // Uploads that send their headers and a first part, then 5 bytes a second.
    let head = {
        let mp = RawMultipart::new()
            .text("report", &api_json("slow"))
            .raw(
                format!(
                    "--{}\r\nContent-Disposition: form-data; name=\"attachment\"; filename=\"slow.bin\"\r\n\r\n",
                    RawMultipart::new().boundary
                )
                .as_bytes(),
            );
        let mut head = format!(
            "POST /api/v1/reports HTTP/1.1\r\nHost: {a}\r\nContent-Type: multipart/form-data; boundary={}\r\nContent-Length: 10000000\r\n\r\n",
            mp.boundary
        )
        .into_bytes();
        head.extend_from_slice(&mp.body);
        head
    };
    let started = Instant::now();
    let mut slow: Vec<Trickle> = (0..4)
        .map(|_| Trickle::start("127.0.0.3", a, &head, Duration::from_millis(200)))
        .collect();
    // A reporter at another address is served meanwhile.
    let form = Form::new()
        .part("report", Part::bytes(api_json("real")))
        .part(
            "attachment",
            Part::bytes(b"poc".to_vec()).file_name("poc.txt"),
        );
    let r = client_from("127.0.0.2")
        .post(srv.url("/api/v1/reports"))
        .multipart(form)
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(attachment_bytes(&site, &secret, &id, 0), b"poc");
    // Two of the peer's four were refused at once; the two that took a
    // slot are cut about one window after they slowed down.
    let answers: Vec<String> = slow
        .iter_mut()
        .map(|t| t.answer(Duration::from_secs(20)))
        .collect();
    let refused: Vec<&String> = answers
        .iter()
        .filter(|a| a.starts_with("HTTP/1.1 429 "))
        .collect();
    assert_eq!(refused.len(), 2, "{answers:#?}");
    for answer in refused {
        assert!(answer.contains("\"too_many_uploads\""), "{answer}");
        assert!(answer.contains("2 uploads from your address"), "{answer}");
    }
    let cut: Vec<&String> = answers
        .iter()
        .filter(|a| a.starts_with("HTTP/1.1 408 "))
        .collect();
    assert_eq!(cut.len(), 2, "{answers:#?}");
    for answer in cut {
        assert!(answer.contains("\"upload_too_slow\""), "{answer}");
        assert!(
            answer.contains("less than 1000 bytes a second over 2s"),
            "{answer}"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "cut after {:?}",
        started.elapsed()
    );
    drop(slow);
    assert_store_clean(&site, 1);
    // Their slots are free again.
    let id = submit_with_file(&srv, "after the trickles", b"again");
    assert_eq!(attachment_bytes(&site, &secret, &id, 0), b"again");
}

#[test]
fn header_trickling_connections_are_closed_after_the_header_timeout_and_health_stays_up() {
    let (site, _secret) = site_with_key(
        "",
        "max_connections = 40\nmax_connections_per_peer = 8\nheader_read_timeout = \"2s\"",
    );
    let srv = Server::start(&site);
    let a = srv.addr.as_str();
    let started = Instant::now();
    // Each sends a request line, then one header byte every 300 ms.
    let mut trickles: Vec<Trickle> = ["127.0.0.4", "127.0.0.5", "127.0.0.6"]
        .iter()
        .flat_map(|source| {
            (0..10).map(move |_| {
                Trickle::start(
                    source,
                    a,
                    b"GET /healthz HTTP/1.1\r\nX-Slow: ",
                    Duration::from_millis(300),
                )
            })
        })
        .collect();
    // Health answers throughout, from yet another address.
    let health = client_from("127.0.0.1");
    while started.elapsed() < Duration::from_secs(3) {
        let r = health.get(srv.url("/healthz")).send().unwrap();
        assert_eq!(r.status(), 200, "/healthz while headers trickle");
        // Checked again and again for the whole span: no condition to wait on.
        std::thread::sleep(Duration::from_millis(200));
    }
    // Past 8 a peer is answered 503 at once; the others are closed once
    // the header timeout passes, whatever they still send.
    let mut over = 0;
    for t in &mut trickles {
        let answer = t.answer(Duration::from_secs(15));
        if answer.starts_with("HTTP/1.1 503 ") {
            assert!(
                answer.contains("Your address has too many connections"),
                "{answer}"
            );
            over += 1;
        } else {
            assert!(
                !answer.contains("200 OK"),
                "a trickled request was answered: {answer}"
            );
        }
    }
    assert_eq!(
        over,
        3 * 2,
        "each peer's two connections over 8 are refused"
    );
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "trickling connections were closed only after {:?}",
        started.elapsed()
    );
    drop(trickles);
    assert_healthy(&srv);
}

#[test]
fn a_proxy_in_proxy_peers_is_not_limited_per_peer_but_other_peers_are() {
    // As deployed behind nginx: every reporter arrives from 127.0.0.1.
    let (site, _secret) = site_with_key(
        "",
        "rate_limit_per_minute = 1\nrefusal_limit_per_minute = 1\nmax_connections_per_peer = 2\nproxy_peers = [\"127.0.0.1\"]",
    );
    let srv = Server::start(&site);
    let report = |c: &reqwest::blocking::Client| {
        c.post(srv.url("/api/v1/reports"))
            .multipart(Form::new().part("report", Part::bytes(api_json("t"))))
            .send()
            .unwrap()
            .status()
    };
    let proxy = client_from("127.0.0.1");
    for _ in 0..3 {
        assert_eq!(report(&proxy), 201, "the proxy's reporters share no limit");
    }
    let idle: Vec<TcpStream> = (0..4)
        .map(|_| connect_from("127.0.0.1", &srv.addr))
        .collect();
    assert_healthy(&srv);
    drop(idle);
    // A peer that is not a proxy keeps its limits.
    let other = client_from("127.0.0.2");
    assert_eq!(report(&other), 201);
    assert_eq!(report(&other), 429);
    assert_store_clean(&site, 4);
}
