//! What operators see of a running `embargo serve`: `/metrics` (values move,
//! labels come from fixed sets, a token is needed on the public listener),
//! one log line per request without addresses or content, one batched
//! notice for a burst of reports, and key-expiry alerts in `/healthz`.

mod common;
#[path = "common/server.rs"]
mod server;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::webhook::Receiver;
use common::*;
use reqwest::blocking::multipart::{Form, Part};
use serde_json::Value;
use server::{Server, client};
use sha2::{Digest, Sha256};

const TOKEN: &str = "embargo_test_token_for_metrics";
const CANARY: &str = "CANARY-0ps-7c1d";

fn token_line() -> String {
    format!(
        "[maintainers]\ntoken_sha256 = [\"{}\"]\n",
        hex::encode(Sha256::digest(TOKEN.as_bytes()))
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn post_report(srv: &Server, title: &str, file_name: &str) -> reqwest::blocking::Response {
    let json = serde_json::json!({
        "report": {"title": title, "description": format!("{CANARY} description")},
        "reporter": {"name": format!("{CANARY} name"), "credit": "name"}
    });
    let form = Form::new()
        .part(
            "report",
            Part::bytes(serde_json::to_vec(&json).unwrap())
                .mime_str("application/json")
                .unwrap(),
        )
        .part(
            "attachment",
            Part::bytes(format!("{CANARY} file").into_bytes()).file_name(file_name.to_string()),
        );
    client()
        .post(srv.url("/api/v1/reports"))
        .header("User-Agent", format!("{CANARY}-agent"))
        .header("Referer", format!("https://{CANARY}.example.org/"))
        .multipart(form)
        .send()
        .unwrap()
}

/// `name{labels} value` lines of a Prometheus text page.
fn samples(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').unwrap();
            (name.to_string(), value.parse::<f64>().unwrap())
        })
        .collect()
}

fn value(text: &str, name: &str) -> f64 {
    samples(text)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("{name} missing in:\n{text}"))
}

#[test]
fn metrics_move_with_reports_use_fixed_labels_and_need_a_token_on_the_public_listener() {
    let site = Site::new();
    site.add_key(
        "alice.asc",
        &armored_public(&sequoia_key("alice <a@example.org>")),
    );
    let metrics_port = free_port();
    site.write_config(&format!(
        "listen = \"127.0.0.1:0\"\nmetrics_listen = \"127.0.0.1:{metrics_port}\"\n{}",
        token_line()
    ));
    let srv = Server::start(&site);
    let http = client();

    assert_eq!(http.get(srv.url("/metrics")).send().unwrap().status(), 401);
    let get = || {
        let r = http
            .get(srv.url("/metrics"))
            .bearer_auth(TOKEN)
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/plain; version=0.0.4")
        );
        r.text().unwrap()
    };
    let before = get();
    assert_eq!(
        value(&before, "embargo_reports_accepted_total{channel=\"api\"}"),
        0.0
    );
    assert_eq!(value(&before, "embargo_usable_keys"), 1.0);
    assert!(
        value(
            &before,
            "embargo_reports_rejected_total{reason=\"unauthorized\"}"
        ) >= 1.0
    );

    assert_eq!(
        post_report(&srv, &format!("{CANARY} title"), &format!("{CANARY}.py")).status(),
        201
    );
    assert_eq!(
        post_report(&srv, "", "x.txt").status(),
        400,
        "a missing title is refused"
    );
    let after = get();
    assert_eq!(
        value(&after, "embargo_reports_accepted_total{channel=\"api\"}"),
        1.0
    );
    assert_eq!(
        value(&after, "embargo_reports_accepted_total{channel=\"web\"}"),
        0.0
    );
    assert_eq!(
        value(&after, "embargo_reports_rejected_total{reason=\"invalid\"}"),
        1.0
    );
    assert!(value(&after, "embargo_sealed_bytes_total") > 0.0);

    // Labels come only from fixed sets: never content, names, sizes or addresses.
    let allowed: BTreeSet<&str> = [
        "channel=\"web\"",
        "channel=\"api\"",
        "channel=\"email\"",
        "reason=\"invalid\"",
        "reason=\"too_large\"",
        "reason=\"unsupported_type\"",
        "reason=\"rate_limited\"",
        "reason=\"busy\"",
        "reason=\"no_key\"",
        "reason=\"store_error\"",
        "reason=\"timeout\"",
        "reason=\"unauthorized\"",
        "reason=\"internal\"",
    ]
    .into();
    for (name, _) in samples(&after) {
        if let Some((_, labels)) = name.split_once('{') {
            let labels = labels.trim_end_matches('}');
            assert!(
                allowed.contains(labels),
                "unexpected label {labels} in {name}"
            );
        }
    }
    assert!(!after.contains(CANARY) && !after.contains("127.0.0.1"));

    // On metrics_listen no token is needed, and the numbers are the same.
    let open = http
        .get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .send()
        .unwrap();
    assert_eq!(open.status(), 200);
    assert_eq!(
        value(
            &open.text().unwrap(),
            "embargo_reports_accepted_total{channel=\"api\"}"
        ),
        1.0
    );
}

#[test]
fn request_logs_are_json_lines_with_route_status_and_duration_and_nothing_about_the_reporter() {
    let site = Site::new();
    site.add_key(
        "alice.asc",
        &armored_public(&sequoia_key("alice <a@example.org>")),
    );
    site.write_config(&format!("listen = \"127.0.0.1:0\"\n{}", token_line()));
    let srv = Server::start_with_env(
        &site,
        &[("EMBARGO_LOG_FORMAT", "json"), ("EMBARGO_LOG", "info")],
    );
    let http = client();
    assert_eq!(http.get(srv.url("/")).send().unwrap().status(), 200);
    assert_eq!(
        post_report(
            &srv,
            &format!("{CANARY} title"),
            &format!("{CANARY}-poc.py")
        )
        .status(),
        201
    );
    assert_eq!(
        http.get(srv.url("/no/such/page")).send().unwrap().status(),
        404
    );
    let list = http
        .get(srv.url("/api/v1/sealed"))
        .bearer_auth(TOKEN)
        .send()
        .unwrap();
    assert_eq!(list.status(), 200);

    let deadline = Instant::now() + Duration::from_secs(10);
    let log = loop {
        let log = srv.log_text();
        if log.matches("\"request\"").count() >= 4 || Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut requests = Vec::new();
    // The server's own listen address is configuration, not a peer's.
    for line in log.lines().filter(|l| !l.contains("listening")) {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        if v["fields"]["message"] == "request" {
            requests.push((
                v["fields"]["route"].as_str().unwrap().to_string(),
                v["fields"]["status"].as_u64().unwrap(),
                v["fields"]["duration_ms"].is_u64(),
            ));
        }
        assert!(
            !line.contains("127.0.0.1"),
            "a peer address was logged: {line}"
        );
        assert!(
            !line.contains(CANARY),
            "report content, a file name or a user agent was logged: {line}"
        );
    }
    for expected in [
        ("/", 200),
        ("/api/v1/reports", 201),
        ("(unmatched)", 404),
        ("/api/v1/sealed", 200),
    ] {
        assert!(
            requests.iter().any(
                |(r, s, d)| (r.as_str(), *s) == (expected.0, expected.1 as u64)
                    && (*d || r == "(unmatched)")
            ),
            "no log line for {expected:?} in {requests:?}"
        );
    }
}

#[test]
fn a_burst_of_reports_through_the_server_gives_one_content_free_notice() {
    let receiver = Receiver::start(0);
    let site = Site::new();
    site.add_key(
        "alice.asc",
        &armored_public(&sequoia_key("alice <a@example.org>")),
    );
    site.write_config(&format!(
        "listen = \"127.0.0.1:0\"\n[maintainers]\nnotify = [\"{}\"]\nnotify_window = \"3s\"\n",
        receiver.url("/hook")
    ));
    let srv = Server::start(&site);
    let mut ids = Vec::new();
    for i in 0..5 {
        let r = post_report(&srv, &format!("{CANARY} burst {i}"), "poc.txt");
        assert_eq!(r.status(), 201);
        ids.push(
            r.json::<Value>().unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while receiver.hits().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    // Another full window passes without a second notice.
    std::thread::sleep(Duration::from_secs(4));
    let hits = receiver.hits();
    assert_eq!(hits.len(), 1, "one notice for the burst: {hits:?}");
    let body: Value = serde_json::from_str(&hits[0].body).unwrap();
    assert_eq!(body["count"], 5, "{body}");
    for secret in ids.iter().map(String::as_str).chain([CANARY, "poc.txt"]) {
        assert!(
            !hits[0].body.contains(secret),
            "the notice names {secret}: {}",
            hits[0].body
        );
    }
}

#[test]
fn healthz_lists_key_expiry_alerts_and_security_txt_expires_with_the_key() {
    use sequoia_openpgp::cert::prelude::*;
    let (cert, _) = CertBuilder::general_purpose(Some("soon <s@example.org>"))
        .set_cipher_suite(CipherSuite::Cv25519)
        .set_validity_period(Duration::from_secs(10 * 86_400))
        .generate()
        .unwrap();
    let site = Site::new();
    site.add_key("soon.asc", &armored_public(&cert));
    site.write_config("listen = \"127.0.0.1:0\"\n");
    let srv = Server::start(&site);
    let r = client().get(srv.url("/healthz")).send().unwrap();
    assert_eq!(r.status(), 200, "still usable");
    let body: Value = r.json().unwrap();
    let alerts = body["key_alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 1, "{body}");
    assert_eq!(alerts[0]["level"], "days30");
    assert_eq!(alerts[0]["fingerprint"], cert.fingerprint().to_hex());
    assert!(
        !body
            .to_string()
            .contains(&site.keys_dir().display().to_string()),
        "no paths: {body}"
    );
    // RFC 9116 Expires must not outlive the only key researchers can use.
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
    let key_expiry = cert.primary_key().key().creation_time() + Duration::from_secs(10 * 86_400);
    assert!(
        expires <= key_expiry,
        "security.txt outlives the key:\n{txt}"
    );
    assert!(
        expires > std::time::SystemTime::now() + Duration::from_secs(9 * 86_400),
        "{txt}"
    );
}

#[test]
fn with_delete_after_fetch_a_report_confirmed_by_hash_disappears_and_others_stay() {
    let site = Site::new();
    site.add_key(
        "alice.asc",
        &armored_public(&sequoia_key("alice <a@example.org>")),
    );
    site.write_config(&format!(
        "listen = \"127.0.0.1:0\"\n[retention]\ndelete_after_fetch = true\ninterval = \"1s\"\n{}",
        token_line()
    ));
    let srv = Server::start(&site);
    let http = client();
    let fetched = post_report(&srv, "fetched", "a.txt")
        .json::<Value>()
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let kept = post_report(&srv, "kept", "b.txt").json::<Value>().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let listing: Value = http
        .get(srv.url("/api/v1/sealed"))
        .bearer_auth(TOKEN)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let report = listing["reports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == fetched.as_str())
        .unwrap()
        .clone();
    let parts = report["parts"].as_array().unwrap();
    // Downloading is not enough (tests/fetch.rs checks that no download
    // counts): the maintainer confirms the SHA-256 of what it stored.
    let mut hashes = serde_json::Map::new();
    for part in parts {
        let name = part["name"].as_str().unwrap();
        let r = http
            .get(srv.url(&format!("/api/v1/sealed/{fetched}/{name}")))
            .bearer_auth(TOKEN)
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        let bytes = r.bytes().unwrap();
        assert_eq!(bytes.len() as u64, part["size"].as_u64().unwrap());
        hashes.insert(name.to_string(), hex::encode(Sha256::digest(&bytes)).into());
    }
    let r = http
        .post(srv.url(&format!("/api/v1/sealed/{fetched}/fetched")))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({ "parts": hashes }))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().unwrap();
    assert_eq!(answer["delete_after_fetch"], true, "{answer}");
    let deadline = Instant::now() + Duration::from_secs(15);
    while site.report_ids().contains(&fetched) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        site.report_ids(),
        vec![kept],
        "the fetched report went whole; the other stays"
    );
    assert!(
        srv.log_text().contains(&fetched),
        "the deletion is logged by ID"
    );
}
