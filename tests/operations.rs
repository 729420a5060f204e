//! What operators see of a running `embargo serve`: `/metrics` (values move,
//! labels come from fixed sets, a token is needed on the public listener),
//! one log line per request without addresses or content, one batched
//! notice for a burst of reports, and key-expiry alerts in `/healthz`.

mod common;
#[path = "common/server.rs"]
mod server;

use std::collections::BTreeSet;
use std::time::Duration;

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
    site.write_config(&format!(
        "listen = \"127.0.0.1:0\"\nmetrics_listen = \"{METRICS_ANY_PORT}\"\n{}",
        token_line()
    ));
    let mut srv = Server::start(&site);
    let metrics_addr = srv.bound_address("metrics listening on http://");
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
        "state=\"new\"",
        "state=\"acknowledged\"",
        "state=\"assessed\"",
        "state=\"fixing\"",
        "state=\"fixed\"",
        "state=\"closed\"",
        "obligation=\"acknowledge\"",
        "obligation=\"assess\"",
        "obligation=\"status_update\"",
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
        .get(format!("http://{metrics_addr}/metrics"))
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

    wait_until_with(
        "four request log lines",
        Duration::from_secs(10),
        || srv.logs.count("\"request\"") >= 4,
        || srv.logs.text(),
    );
    let log = srv.logs.text();
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
    wait_until("the notice", Duration::from_secs(20), || {
        !receiver.hits().is_empty()
    });
    // Another full window passes without a second notice: the wait is the
    // point ("nothing more happens"), so it is a fixed sleep.
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
    site.write_config("listen = \"127.0.0.1:0\"\npublic_url = \"https://security.example.org\"\n");
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
    let signed = signed_text(&txt);
    let expires = field(&signed, "Expires");
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
    let alice = sequoia_key("alice <a@example.org>");
    site.add_key("alice.asc", &armored_public(&alice));
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
    // Fetched is not enough either: only a closed case goes. Alice closes
    // it (a signed case status, what `embargo case close` sends).
    std::thread::sleep(Duration::from_millis(1500));
    assert!(site.report_ids().contains(&fetched), "an open case stays");
    let id: embargo::id::ReportId = fetched.parse().unwrap();
    // A status names every event the intake holds: here, its own
    // `received` event.
    let events: Vec<String> = embargo::store::Store::events(&site.store(), &id)
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(events.len(), 1, "the intake's received event");
    let closed = embargo::case::status::CaseStatus {
        schema: embargo::case::status::SCHEMA.into(),
        report: id,
        at: embargo::clock::rfc3339_micros(std::time::SystemTime::now()),
        state: embargo::case::Stage::Closed,
        events,
        due: Default::default(),
    }
    .sign(&embargo::case::Author::Key(Box::new(alice)))
    .unwrap();
    let r = http
        .put(srv.url(&format!("/api/v1/sealed/{fetched}/status")))
        .bearer_auth(TOKEN)
        .body(closed)
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    wait_until(
        "the fetched report to be deleted",
        Duration::from_secs(15),
        || !site.report_ids().contains(&fetched),
    );
    assert_eq!(
        site.report_ids(),
        vec![kept],
        "the fetched report went whole; the other stays"
    );
    assert!(
        srv.logs.text().contains(&fetched),
        "the deletion is logged by ID"
    );
}

/// The cleartext-signed body's signed text (between the header and the
/// signature), without dash-escaping.
fn signed_text(body: &str) -> String {
    let start = body.find("\n\n").expect("armor header ends") + 2;
    let end = body.find("-----BEGIN PGP SIGNATURE-----").unwrap();
    body[start..end]
        .lines()
        .map(|l| l.strip_prefix("- ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

fn field<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

/// GET `path` with `Host: host` exactly as given; (status, body).
fn get_with_host(srv: &Server, path: &str, host: &str) -> (u16, String) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    let (status, text) = server::raw_http(&srv.addr, request.as_bytes(), false);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string());
    (status, body.unwrap_or_default())
}

#[test]
fn security_txt_takes_urls_from_public_url_never_host_is_signed_and_never_rolls_expires_forward() {
    use sequoia_openpgp::cert::prelude::*;
    let site = Site::new();
    // A key that never expires: Expires then follows the key files' age.
    site.add_key("a.asc", &armored_public(&sequoia_key("a <a@example.org>")));
    let changed = std::time::SystemTime::now() - Duration::from_secs(40 * 86_400);
    std::fs::File::options()
        .write(true)
        .open(site.keys_dir().join("a.asc"))
        .unwrap()
        .set_modified(changed)
        .unwrap();
    site.write_config(
        "listen = \"127.0.0.1:0\"\npublic_url = \"https://security.example.org/\"\npolicy_url = \"https://example.org/security\"\n",
    );
    let srv = Server::start(&site);
    let (status, body) = get_with_host(&srv, "/.well-known/security.txt", "evil.example");
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains("evil"), "the Host header leaks in:\n{body}");
    assert!(
        body.starts_with("-----BEGIN PGP SIGNED MESSAGE-----"),
        "{body}"
    );
    let text = signed_text(&body);
    assert_eq!(field(&text, "Contact"), "https://security.example.org/");
    assert_eq!(
        field(&text, "Encryption"),
        "https://security.example.org/keys.asc"
    );
    assert_eq!(field(&text, "Policy"), "https://example.org/security");
    assert_eq!(
        field(&text, "Canonical"),
        "https://security.example.org/.well-known/security.txt"
    );
    let expires = embargo::clock::parse_rfc3339(field(&text, "Expires")).unwrap();
    let year = Duration::from_secs(365 * 86_400);
    assert_eq!(
        embargo::clock::rfc3339(expires),
        embargo::clock::rfc3339(changed + year),
        "a year after the keys last changed, not after this request"
    );
    // The legacy location serves the same file; a later request the same Expires.
    let (status, again) = get_with_host(&srv, "/security.txt", "other.example");
    assert_eq!(status, 200);
    assert_eq!(signed_text(&again), text);

    // The signature verifies with stock gpg against the intake signing key.
    let gpg = Gpg::new();
    let signing = client()
        .get(srv.url("/signing-key.asc"))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    gpg.import(&signing);
    let file = site.tmp_dir().join("security.txt");
    std::fs::write(&file, &body).unwrap();
    let out = gpg.run(
        &["--status-fd", "2", "--verify", file.to_str().unwrap()],
        None,
    );
    let status = String::from_utf8_lossy(&out.stderr);
    let fpr = site.signing_cert().fingerprint().to_hex();
    assert!(status.contains(&format!("VALIDSIG {fpr}")), "{status}");
    let mut forged = body.replace(
        "https://security.example.org/keys.asc",
        "https://evil.example/keys.asc",
    );
    forged.push('\n');
    std::fs::write(&file, forged).unwrap();
    assert!(
        !gpg.try_run(&["--verify", file.to_str().unwrap()], None)
            .status
            .success()
    );
    drop(srv);

    // A configured date, and a key expiring before it: the earlier wins.
    let (soon, _) = CertBuilder::general_purpose(Some("soon <s@example.org>"))
        .set_cipher_suite(CipherSuite::Cv25519)
        .set_validity_period(Duration::from_secs(100 * 86_400))
        .generate()
        .unwrap();
    let key_expiry = soon.primary_key().key().creation_time() + Duration::from_secs(100 * 86_400);
    let in_200_days =
        embargo::clock::rfc3339(std::time::SystemTime::now() + Duration::from_secs(200 * 86_400));
    let in_50_days = std::time::SystemTime::now() + Duration::from_secs(50 * 86_400);
    let date = |t: std::time::SystemTime| embargo::clock::rfc3339(t)[..10].to_string();
    site.add_key("soon.asc", &armored_public(&soon));
    for (configured, expected) in [
        (in_200_days.clone(), embargo::clock::rfc3339(key_expiry)),
        (date(in_50_days), format!("{}T00:00:00Z", date(in_50_days))),
    ] {
        site.write_config(&format!(
            "listen = \"127.0.0.1:0\"\npublic_url = \"http://abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrstuv.onion\"\nsecurity_txt_expires = \"{configured}\"\n"
        ));
        let srv = Server::start(&site);
        let (status, body) = get_with_host(&srv, "/.well-known/security.txt", "x");
        assert_eq!(status, 200, "{body}");
        let text = signed_text(&body);
        assert_eq!(field(&text, "Expires"), expected, "{configured}");
        // An onion service served over http keeps http.
        assert_eq!(
            field(&text, "Contact"),
            "http://abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrstuv.onion/"
        );
    }

    // Without public_url there is no security.txt, and the log says why.
    site.write_config("listen = \"127.0.0.1:0\"\n");
    let srv = Server::start(&site);
    let (status, body) = get_with_host(&srv, "/.well-known/security.txt", "evil.example");
    assert_eq!(status, 404, "{body}");
    assert!(
        body.contains("public_url") && !body.contains("evil"),
        "{body}"
    );
    assert!(
        srv.logs.text().contains("public_url is not set"),
        "{}",
        srv.logs.text()
    );
}

#[test]
fn a_certificate_expiring_while_serving_makes_healthz_degraded_alerts_at_once_and_receipts_name_who_can_read()
 {
    use sequoia_openpgp::cert::prelude::*;
    let now = std::time::SystemTime::now();
    let lasting = sequoia_key("lasting <l@example.org>");
    // Expires a few seconds into the test, while the server runs.
    let (expiring, _) = CertBuilder::general_purpose(Some("expiring <e@example.org>"))
        .set_cipher_suite(CipherSuite::Cv25519)
        .set_creation_time(now - Duration::from_secs(86_400))
        .set_validity_period(Duration::from_secs(86_400 + 20))
        .generate()
        .unwrap();
    let (a, b) = (
        lasting.fingerprint().to_hex(),
        expiring.fingerprint().to_hex(),
    );
    let receiver = Receiver::start(0);
    let site = Site::new();
    site.add_key("lasting.asc", &armored_public(&lasting));
    site.add_key("expiring.asc", &armored_public(&expiring));
    site.write_config(&format!(
        "listen = \"127.0.0.1:0\"\n[maintainers]\nnotify = [\"{}\"]\n",
        receiver.url("/hook")
    ));
    let srv = Server::start(&site);
    let recipients = |v: &Value| -> Vec<String> {
        v["recipients"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap().to_string())
            .collect()
    };

    let r = post_report(&srv, "before", "poc.txt");
    assert_eq!(r.status(), 201);
    let first: Value = r.json().unwrap();
    let mut both = recipients(&first);
    both.sort();
    let mut expected = vec![a.clone(), b.clone()];
    expected.sort();
    assert_eq!(both, expected, "sealed to both while both are usable");
    let health: Value = client()
        .get(srv.url("/healthz"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(health["status"], "ok", "{health}");

    // The certificate expires: healthz says so (200, reports are still
    // accepted), naming the certificate and why.
    let mut health = Value::Null;
    wait_until("healthz to say degraded", Duration::from_secs(90), || {
        let r = client().get(srv.url("/healthz")).send().unwrap();
        let status = r.status();
        health = r.json().unwrap();
        if health["status"] == "degraded" {
            assert_eq!(status, 200, "{health}");
            return true;
        }
        assert_eq!(health["status"], "ok", "{health}");
        false
    });
    assert_eq!(health["usable_keys"], 1, "{health}");
    assert_eq!(health["maintainer_keys"], 2, "{health}");
    assert_eq!(
        health["unusable_keys"][0]["fingerprint"],
        b.as_str(),
        "{health}"
    );
    assert!(
        health["unusable_keys"][0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("expired "),
        "{health}"
    );
    assert!(
        health["degraded"][0]
            .as_str()
            .unwrap()
            .starts_with("1 of 2 maintainer certificates unusable"),
        "{health}"
    );
    assert!(
        !health.to_string().contains("expiring.asc"),
        "no paths: {health}"
    );

    // The alert goes out at once, through the notice targets.
    let alert = || {
        receiver
            .hits()
            .into_iter()
            .find(|h| h.body.contains("1 of 2 maintainer certificates unusable"))
    };
    wait_until_with(
        "the key alert",
        Duration::from_secs(30),
        || alert().is_some(),
        || {
            format!(
                "{:?}",
                receiver
                    .hits()
                    .iter()
                    .map(|h| h.body.clone())
                    .collect::<Vec<_>>()
            )
        },
    );
    let alert = alert().unwrap();
    let body: Value = serde_json::from_str(&alert.body).unwrap();
    assert_eq!(body["kind"], "keys");
    assert!(body["text"].as_str().unwrap().contains(&b), "{body}");
    assert!(!alert.body.contains(CANARY), "{body}");

    // Reports still arrive, sealed to the usable certificate only, and
    // every receipt says so: API answer, signed text and receipt page.
    let r = post_report(&srv, "after", "poc.txt");
    assert_eq!(r.status(), 201);
    let second: Value = r.json().unwrap();
    assert_eq!(recipients(&second), vec![a.clone()]);
    let receipt = second["receipt"].as_str().unwrap();
    assert!(receipt.contains(&a) && !receipt.contains(&b), "{receipt}");
    let form = Form::new()
        .text("title", "after, by the form")
        .text("description", "d");
    let r = client()
        .post(srv.url("/report"))
        .multipart(form)
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let page = r.text().unwrap();
    let listed = page
        .split("id=\"recipients\">")
        .nth(1)
        .unwrap()
        .split("</ul>")
        .next()
        .unwrap();
    assert!(listed.contains(&a) && !listed.contains(&b), "{listed}");
}

#[test]
fn the_shipped_example_config_starts_as_is_and_answers_healthz() {
    let site = Site::new();
    let shipped = include_str!("../deploy/embargo.toml");
    assert!(shipped.contains("listen = \"127.0.0.1:8080\""));
    // Only the port changes, so that tests running in parallel never collide.
    std::fs::write(
        site.config_path(),
        shipped.replace("listen = \"127.0.0.1:8080\"", "listen = \"127.0.0.1:0\""),
    )
    .unwrap();
    std::fs::remove_dir(site.state_dir()).unwrap();
    std::fs::remove_dir(site.store_dir()).unwrap();
    site.add_key("m.asc", &armored_public(&sequoia_key("m <m@example.org>")));
    let srv = Server::start(&site);
    let r = client().get(srv.url("/healthz")).send().unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().unwrap();
    assert_eq!(body["status"], "ok", "{body}");
    assert!(site.state_dir().join("signing-key.pgp").exists());
}

#[test]
fn a_config_that_cannot_work_stops_serve_before_it_binds_with_a_clear_message() {
    let site = Site::new();
    site.add_key("m.asc", &armored_public(&sequoia_key("m <m@example.org>")));
    // The port stays held by the test: a serve that bound before checking
    // its configuration would fail with "Address already in use" instead.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let listen = format!("listen = \"127.0.0.1:{port}\"\n");
    let config = site.config_path().display().to_string();
    let in_two_years =
        embargo::clock::rfc3339(std::time::SystemTime::now() + Duration::from_secs(730 * 86_400));
    let cases = [
        (
            format!("{listen}[maintainers]\nnotify = [\"mailto:team@example.org\"]\n"),
            format!(
                "embargo: error: invalid config file {config}: invalid config value for maintainers.notify: \"mailto:team@example.org\": mailto: notices are sent through [smtp], which is not configured: add an [smtp] section or remove the mailto: entry\n"
            ),
        ),
        (
            // Only found by reading the file: checked before binding too.
            format!(
                "{listen}[maintainers]\nnotify = [\"mailto:team@example.org\"]\n[smtp]\nhost = \"127.0.0.1\"\nfrom = \"i@example.org\"\nusername = \"u\"\npassword_file = \"missing-password\"\n"
            ),
            format!(
                "embargo: error: invalid config value for smtp.password_file: cannot read {}: No such file or directory (os error 2); create it (mode 0600, the password on its first line) or fix the path\n",
                site.path().join("missing-password").display()
            ),
        ),
        (
            format!("{listen}security_txt_expires = \"{in_two_years}\"\n"),
            format!(
                "embargo: error: invalid config value for security_txt_expires: {in_two_years} is more than a year ahead: RFC 9116 asks for less, so that an abandoned security.txt goes stale; set a date within the next year\n"
            ),
        ),
        (
            format!(
                "{listen}[mailbox]\nhost = \"127.0.0.1\"\ntls = \"none\"\nusername = \"u\"\npassword_file = \"no-imap-password\"\n"
            ),
            format!(
                "embargo: error: invalid config value for mailbox.password_file: cannot read {}: No such file or directory (os error 2); create it (mode 0600, the password on its first line) or fix the path\n",
                site.path().join("no-imap-password").display()
            ),
        ),
        (
            // URL parsing drops the line break; security.txt would not.
            format!(
                "{listen}public_url = \"https://security.example.org/\\nContact: mailto:evil@example.org\"\n"
            ),
            format!(
                "embargo: error: invalid config file {config}: invalid config value for public_url: \"https://security.example.org/\\nContact: mailto:evil@example.org\" contains a space, line break or control character: write the URL alone, percent-encoding any space\n"
            ),
        ),
        (
            format!(
                "{listen}public_url = \"https://security.example.org\"\npolicy_url = \"https://example.org/p\\nContact: mailto:evil@example.org\"\n"
            ),
            format!(
                "embargo: error: invalid config file {config}: invalid config value for policy_url: \"https://example.org/p\\nContact: mailto:evil@example.org\" contains a space, line break or control character: write the URL alone, percent-encoding any space\n"
            ),
        ),
        (
            format!("{listen}[limits]\nmax_field_bytes = 0\n"),
            format!(
                "embargo: error: invalid config file {config}: invalid config value for limits.max_field_bytes: must be at least 1: title and description are required, so with 0 every report is refused (the default is 65536)\n"
            ),
        ),
        (
            format!("{listen}policy_url = \"javascript:alert(1)\"\n"),
            format!(
                "embargo: error: invalid config file {config}: invalid config value for policy_url: \"javascript:alert(1)\" has no host: write it like \"https://security.example.org\"\n"
            ),
        ),
        (
            format!("{listen}metrics_listen = \"127.0.0.1:{port}\"\n"),
            format!(
                "embargo: error: invalid config file {config}: invalid config value for metrics_listen: is the same address as listen (127.0.0.1:{port}): use another port, e.g. 127.0.0.1:9180\n"
            ),
        ),
    ];
    for (text, expected) in cases {
        site.write_config(&text);
        let (code, log) = serve_until_exit(&site, &[], Duration::from_secs(60));
        assert_eq!(code, Some(1), "{text}\n{log}");
        assert!(!log.contains("listening"), "{text}\n{log}");
        let last = format!("{}\n", log.lines().last().unwrap_or_default());
        assert_eq!(last, expected, "{text}\n{log}");
        // It never tried the port.
        assert!(!log.contains("already in use"), "{text}\n{log}");
    }
}
