//! Every seed under `fuzz/corpus-seeds/<target>/` through the same library
//! calls as the fuzz target of that name (`fuzz/fuzz_targets/<target>.rs`),
//! so CI re-checks the corpus (and every crash input added to it) without
//! libFuzzer. A panic here is a fuzz finding.

use std::fs;
use std::path::{Path, PathBuf};

use embargo::config::Limits;
use embargo::id::ReportId;
use embargo::report::{self, CvssScore, RawReport};
use embargo::seal::{Manifest, Opener, SecretSource};
use embargo::store::{FsStore, Store};
use sequoia_openpgp::cert::CertParser;
use sequoia_openpgp::cert::prelude::*;
use sequoia_openpgp::parse::Parse;
use sequoia_openpgp::serialize::SerializeInto;

fn seeds(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus-seeds")
        .join(target);
    let mut out: Vec<_> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let bytes = fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no seeds in {}", dir.display());
    out
}

/// fuzz_targets/input_json.rs
#[test]
fn input_json_seeds() {
    let mut valid = 0;
    for (_path, data) in seeds("input_json") {
        if let Ok(raw) = RawReport::from_json(&data)
            && raw.validate(&Limits::default()).is_ok()
        {
            valid += 1;
        }
    }
    assert!(valid >= 2, "the seeds include valid reports ({valid})");
}

/// fuzz_targets/fields.rs
#[test]
fn fields_seeds() {
    for (_path, data) in seeds("fields") {
        let Ok(s) = std::str::from_utf8(&data) else {
            continue;
        };
        let _ = s.parse::<ReportId>();
        let _ = CvssScore::parse(s);
        let _ = report::parse_cwe(s);
        let _ = report::is_plausible_email(s);
        let mut raw = RawReport::default();
        for name in report::FIELDS {
            raw.set(name, s.to_string());
        }
        let _ = raw.validate(&Limits::default());
    }
    let read = |name: &str| {
        fs::read_to_string(format!(
            "{}/fuzz/corpus-seeds/fields/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    };
    assert!(read("report-id").parse::<ReportId>().is_ok());
    assert!(CvssScore::parse(&read("cvss40")).is_ok());
    assert!(CvssScore::parse(&read("cvss31")).is_ok());
}

/// fuzz_targets/manifest.rs
#[test]
fn manifest_seeds() {
    let mut parsed = 0;
    for (path, data) in seeds("manifest") {
        if let Ok(m) = Manifest::from_json(&data) {
            let json = m.to_json();
            Manifest::from_json(&json).unwrap_or_else(|e| {
                panic!("{}: reserialized manifest unreadable: {e}", path.display())
            });
            parsed += 1;
        }
    }
    assert!(parsed >= 1, "the real manifest parses");
}

/// fuzz_targets/event.rs
#[test]
fn event_seeds() {
    let mut parsed = 0;
    for (path, data) in seeds("event") {
        if let Ok(e) = embargo::case::Event::from_json(&data) {
            let padded = e.to_padded_json().unwrap();
            let again = embargo::case::Event::from_json(&padded).unwrap_or_else(|err| {
                panic!("{}: reserialized event unreadable: {err}", path.display())
            });
            assert!(again == e, "{}", path.display());
            parsed += 1;
        }
    }
    assert!(parsed >= 7, "every well-formed seed parses ({parsed})");
}

/// fuzz_targets/case_status.rs
#[test]
fn case_status_seeds() {
    use embargo::case::status::{CaseStatus, read_stored, verify};
    let id: ReportId = "K7Q3M-2XDA9-TF4BC-1ZP0R".parse().unwrap();
    let (cert, _) = CertBuilder::general_purpose(Some("fuzz@example.org"))
        .generate()
        .unwrap();
    let cert = cert.strip_secret_key_material();
    let (mut parsed, mut read) = (0, 0);
    for (path, data) in seeds("case_status") {
        // Signed by a key that is not the fixture's: never verified.
        assert!(
            verify(&data, std::slice::from_ref(&cert), &id).is_err(),
            "{}",
            path.display()
        );
        if read_stored(&data, &id).is_some() {
            read += 1;
        }
        if let Ok(status) = CaseStatus::from_json(&data, &id) {
            let again = CaseStatus::from_json(&status.to_json(), &id).unwrap();
            assert!(again == status, "{}", path.display());
            parsed += 1;
        }
    }
    assert_eq!(parsed, 2, "the acknowledged and the closed seed parse");
    assert_eq!(read, 1, "the signed seed is read as stored");
}

/// fuzz_targets/advisory.rs
#[test]
fn advisory_seeds() {
    use embargo::advisory::{Facts, Format, draft, inert};
    use embargo::config::AdvisoryTarget;
    let mut drafted = 0;
    for (path, data) in seeds("advisory") {
        let text = String::from_utf8_lossy(&data).into_owned();
        let shown = inert(&text);
        assert!(all_escaped(&shown), "{}", path.display());
        let parts: Vec<&str> = text.splitn(4, '\u{1}').collect();
        let part = |i: usize| parts.get(i).copied().unwrap_or("").to_string();
        let facts = Facts {
            id: "K7Q3M-2XDA9-TF4BC-1ZP0R".into(),
            title: part(0),
            description: part(1),
            impact: part(2),
            steps: Some(part(3)),
            mitigations: part(1),
            severity: embargo::report::Severity::High,
            cvss: None,
            cwe: vec!["CWE-78".into()],
            introduced: Some(part(2)).filter(|s| !s.is_empty()),
            fixed: Some(part(3)).filter(|s| !s.is_empty()),
            commit: None,
            ghsa: None,
            cve: None,
            advisory_url: None,
            credit: Some(part(0)).filter(|s| !s.is_empty()),
            now: "2026-12-01T00:00:00Z".into(),
            target: AdvisoryTarget {
                ecosystem: Some("crates.io".into()),
                package: Some(part(2)).filter(|s| !s.is_empty()),
                cna_org_id: Some("8254265b-2729-46b6-b9e3-3dfca2d5bfca".into()),
                ..AdvisoryTarget::default()
            },
            policy_url: None,
        };
        for format in [Format::Osv, Format::Cve, Format::Ghsa, Format::Markdown] {
            if let Ok(d) = draft(&facts, format) {
                if format != Format::Markdown {
                    serde_json::from_str::<serde_json::Value>(&d.text).unwrap();
                }
                drafted += 1;
            }
        }
    }
    assert!(
        drafted >= 4,
        "the field seed drafts in every format ({drafted})"
    );
}

/// fuzz_targets/keyring.rs
#[test]
fn keyring_seeds() {
    let mut certs = 0;
    for (_path, data) in seeds("keyring") {
        if let Ok(parser) = CertParser::from_bytes(&data) {
            for cert in parser.flatten().take(8) {
                let _ =
                    embargo::keys::judge(Path::new("fuzz.asc"), cert, std::time::SystemTime::now());
                certs += 1;
            }
        }
    }
    assert!(certs >= 2);
}

/// fuzz_targets/secret_scan.rs
#[test]
fn secret_scan_seeds() {
    let mut secret = 0;
    for (path, data) in seeds("secret_scan") {
        let found = embargo::keys::holds_secret_key(&data);
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(found, name.starts_with("secret"), "{name}");
        secret += usize::from(found);
    }
    assert!(secret >= 3, "the seeds include secret keys ({secret})");
}

/// fuzz_targets/sealed_reader.rs: the first byte says where the manifest
/// part ends, the rest is 001.pgp; opened with a real (unrelated) key.
#[test]
fn sealed_reader_seeds() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(dir.path()).unwrap();
    let (cert, _) = CertBuilder::general_purpose(Some("fuzz"))
        .generate()
        .unwrap();
    let tsk = cert.as_tsk().to_vec().unwrap();
    let opener = Opener::new(
        SecretSource::from_key_bytes(&tsk, None).unwrap(),
        Some(cert),
    );
    for (_path, data) in seeds("sealed_reader") {
        let id = ReportId::random();
        let mut staging = store.stage(&id).unwrap();
        let split = data.first().map_or(0, |b| *b as usize).min(data.len());
        for (name, bytes) in [
            ("manifest.pgp", &data[..split]),
            ("001.pgp", &data[split..]),
        ] {
            let mut sink = staging.create_part(name).unwrap();
            std::io::Write::write_all(&mut sink, bytes).unwrap();
            sink.finish().unwrap();
        }
        staging.commit().unwrap();
        if let Ok(m) = opener.open_manifest(&store, &id) {
            for entry in &m.manifest.attachments {
                let _ = opener.decrypt_attachment(&store, &id, entry, &mut std::io::sink());
            }
        }
        store.remove(&id).unwrap();
    }
}

/// fuzz_targets/mail.rs: the one-line fields stay one line, and an
/// acknowledgement built from any seed has one recipient and only our
/// headers.
#[test]
fn mail_seeds() {
    use embargo::mailbox::ack::{Sender, compose};
    use embargo::mailbox::message;

    let from = "security@project.example".parse().unwrap();
    let policy = embargo::config::Policy::default();
    let sender = Sender {
        from: &from,
        project: "fuzz",
        policy: &policy,
        policy_url: None,
        status_url: "https://intake.example/status",
    };
    let mut answered = 0;
    let limits = message::ParseLimits {
        max_field_bytes: 4096,
        max_header_bytes: 1024,
        max_mime_depth: 8,
        max_mime_parts: 64,
    };
    for (path, data) in seeds("mail") {
        let facts = message::parse(&data, &limits);
        for line in [
            &facts.email.subject,
            &facts.email.from,
            &facts.email.message_id,
        ] {
            assert!(
                line.len() <= 4 * 1024,
                "{}: a header was not cut",
                path.display()
            );
        }
        let _ = message::sender_authenticated(&facts.reply, None);
        let _ = message::sender_authenticated(&facts.reply, Some("mx.example.org"));
        for line in [&facts.body.title, &facts.email.subject, &facts.email.from] {
            assert!(!line.contains(['\r', '\n', '\0']), "{}", path.display());
        }
        if facts.reply.no_reply_reason.is_some() {
            continue;
        }
        let Ok(reply) = compose(&sender, &ReportId::random(), &facts.reply) else {
            continue;
        };
        let bytes = reply.formatted();
        let parsed = mailparse::parse_mail(&bytes).unwrap();
        for h in &parsed.headers {
            assert!(
                !h.get_key().eq_ignore_ascii_case("bcc") && !h.get_key().eq_ignore_ascii_case("cc"),
                "{}: {} in the acknowledgement",
                path.display(),
                h.get_key()
            );
        }
        let to = parsed
            .headers
            .iter()
            .filter(|h| h.get_key().eq_ignore_ascii_case("to"))
            .collect::<Vec<_>>();
        assert_eq!(to.len(), 1, "{}", path.display());
        assert_eq!(mailparse::addrparse_header(to[0]).unwrap().len(), 1);
        answered += 1;
    }
    assert!(answered >= 2, "some seeds are answerable ({answered})");
    let seed = |name: &str| {
        fs::read(format!(
            "{}/fuzz/corpus-seeds/mail/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    };
    let deep = message::parse(&seed("deep-nesting.eml"), &limits);
    assert_eq!(deep.body.title, "deep nesting");
    let auth = message::parse(&seed("auth-results.eml"), &limits);
    assert_eq!(
        message::sender_authenticated(&auth.reply, Some("mx.example.org")),
        Ok("spf")
    );
}

/// fuzz_targets/multipart.rs: each seed through the real router, in-process.
#[test]
fn multipart_seeds() {
    use axum::body::Body;
    use axum::http::{Request, StatusCode, header};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("keys")).unwrap();
    let (cert, _) = CertBuilder::new()
        .set_cipher_suite(CipherSuite::Cv25519)
        .add_transport_encryption_subkey()
        .generate()
        .unwrap();
    std::fs::write(
        dir.path().join("keys/maintainer.asc"),
        cert.armored().to_vec().unwrap(),
    )
    .unwrap();
    let mut config = embargo::config::Config::defaults_in(dir.path());
    config.limits.max_attachment_bytes = 64 * 1024;
    let staging = config.store.join("reports/.staging");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let state = embargo::intake::AppState::open(config, embargo::clock::Clock::system()).unwrap();
    let router = runtime.block_on(async { embargo::intake::router(state.clone()) });
    let mut statuses = std::collections::BTreeMap::new();
    for (path, data) in seeds("multipart") {
        let (route, body) = data.split_first().unwrap();
        let uri = if route % 2 == 0 {
            "/api/v1/reports"
        } else {
            "/report"
        };
        let request = Request::post(uri)
            .header(
                header::CONTENT_TYPE,
                "multipart/form-data; boundary=fuzzboundary",
            )
            .header(header::HOST, "127.0.0.1")
            .body(Body::from(body.to_vec()))
            .unwrap();
        let (status, answer) = runtime.block_on(async {
            let response = router.clone().oneshot(request).await.unwrap();
            let status = response.status();
            (
                status,
                response.into_body().collect().await.unwrap().to_bytes(),
            )
        });
        assert_ne!(
            status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "{}",
            path.display()
        );
        let lower = answer.to_ascii_lowercase();
        assert!(
            !lower.windows(3).any(|w| w == b"<fz"),
            "{}: unescaped markup",
            path.display()
        );
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        statuses.insert(name, status.as_u16());
        for id in state.store().list().unwrap() {
            state.store().remove(&id).unwrap();
        }
        assert_eq!(
            std::fs::read_dir(&staging).unwrap().count(),
            0,
            "{}",
            path.display()
        );
    }
    assert_eq!(statuses["api-minimal"], 201, "{statuses:?}");
    assert_eq!(statuses["api-attachments"], 201, "{statuses:?}");
    assert_eq!(statuses["form-full"], 201, "{statuses:?}");
    assert_eq!(statuses["form-invalid"], 400, "{statuses:?}");
    assert_eq!(statuses["truncated"], 400, "{statuses:?}");
    // Refused at the first repetition, and at the first part over the count.
    assert_eq!(statuses["form-duplicate"], 400, "{statuses:?}");
    assert_eq!(statuses["api-duplicate"], 400, "{statuses:?}");
    assert_eq!(statuses["form-empty-attachments"], 413, "{statuses:?}");
}

/// fuzz_targets/fetch_listing.rs
#[test]
fn fetch_listing_seeds() {
    use embargo::reveal::fetch::parse_listing;
    let mut verdicts = std::collections::BTreeMap::new();
    for (path, data) in seeds("fetch_listing") {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        verdicts.insert(name, parse_listing(&data).map(|r| r.len()).ok());
    }
    assert_eq!(verdicts["empty.json"], Some(0));
    assert_eq!(verdicts["two-files.json"], Some(1));
    for refused in ["gap.json", "duplicate.json", "hostile.json"] {
        assert_eq!(verdicts[refused], None, "{refused}");
    }
    // The follow-up files of one report.
    use embargo::reveal::fetch::parse_file_listing;
    let files: std::collections::BTreeMap<String, Option<usize>> = seeds("fetch_listing")
        .into_iter()
        .map(|(path, data)| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, parse_file_listing(&data).map(|f| f.len()).ok())
        })
        .collect();
    assert_eq!(files["files-two.json"], Some(2));
    assert_eq!(files["files-hostile.json"], None);
    assert_eq!(
        files["two-files.json"], None,
        "a report listing is no file listing"
    );
}

/// fuzz_targets/fetch_confirmation.rs
#[test]
fn fetch_confirmation_seeds() {
    use embargo::retention::parse_confirmation;
    let mut verdicts = std::collections::BTreeMap::new();
    for (path, data) in seeds("fetch_confirmation") {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        verdicts.insert(name, parse_confirmation(&data).map(|c| c.parts.len()).ok());
    }
    assert_eq!(verdicts["two-parts.json"], Some(2));
    for refused in [
        "traversal.json",
        "short-hash.json",
        "empty.json",
        "unknown-field.json",
    ] {
        assert_eq!(verdicts[refused], None, "{refused}");
    }
}

/// Every ASCII punctuation character in `shown` is backslash-escaped (the
/// `+` of a `U+XXXX` shown for a control character, and `@`, aside).
fn all_escaped(shown: &str) -> bool {
    // `@` is followed by a word joiner instead (GitHub links escaped ones).
    let shown = shown.replace("@\u{2060}", "");
    let mut chars = shown.chars();
    let mut prev = ' ';
    while let Some(c) = chars.next() {
        if c == '\\' {
            chars.next();
            prev = ' ';
            continue;
        }
        if c.is_ascii_punctuation() && !(c == '+' && prev == 'U') {
            return false;
        }
        prev = c;
    }
    true
}

/// fuzz_targets/reply_code.rs
#[test]
fn reply_code_seeds() {
    use embargo::reply::ReplyCode;
    let mut parsed = 0;
    for (path, data) in seeds("reply_code") {
        let Ok(text) = std::str::from_utf8(&data) else {
            continue;
        };
        if let Ok(code) = ReplyCode::parse(text) {
            let shown = code.display();
            assert_eq!(shown.len(), 34, "{}", path.display());
            assert!(ReplyCode::parse(&shown).ok() == Some(code));
            parsed += 1;
        }
    }
    assert_eq!(parsed, 2, "the valid seed, neat and sloppy, parses");
}

/// fuzz_targets/status_form.rs
#[test]
fn status_form_seeds() {
    use axum::body::Body;
    use axum::http::{Request, StatusCode, header};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("keys")).unwrap();
    let (cert, _) = CertBuilder::new()
        .set_cipher_suite(CipherSuite::Cv25519)
        .add_transport_encryption_subkey()
        .generate()
        .unwrap();
    std::fs::write(
        dir.path().join("keys/maintainer.asc"),
        cert.armored().to_vec().unwrap(),
    )
    .unwrap();
    let config = embargo::config::Config::defaults_in(dir.path());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let state = embargo::intake::AppState::open(config, embargo::clock::Clock::system()).unwrap();
    let sealer = state.keys().sealer.clone().unwrap();
    let writer = sealer
        .begin(
            state.store().as_ref(),
            ReportId::random(),
            embargo::seal::Channel::Api,
        )
        .unwrap();
    let mut body = embargo::report::ReportBody::default();
    body.title = "seeded".into();
    body.description = "d".into();
    let finished = embargo::reply::intake::finish(
        writer,
        Some(state.replies()),
        "fuzz",
        body,
        embargo::report::Reporter::default(),
        None,
    )
    .unwrap();
    let code = finished.reply_code.unwrap().display().to_string();
    let report = finished.sealed.id;
    let router = runtime.block_on(async { embargo::intake::router(state.clone()) });
    let mut statuses = std::collections::BTreeMap::new();
    for (path, data) in seeds("status_form") {
        let (route, body) = data.split_first().unwrap();
        let (uri, content_type) = match route % 4 {
            0 => ("/status", "application/x-www-form-urlencoded"),
            1 => ("/api/v1/status", "application/json"),
            2 => (
                "/status/messages",
                "multipart/form-data; boundary=fuzzboundary",
            ),
            _ => (
                "/api/v1/status/messages",
                "multipart/form-data; boundary=fuzzboundary",
            ),
        };
        let body = String::from_utf8_lossy(body).replace("CODEHERE", &code);
        let events_before = state.store().events(&report).unwrap().len();
        let request = Request::post(uri)
            .header(header::CONTENT_TYPE, content_type)
            .header(header::HOST, "127.0.0.1")
            .body(Body::from(body))
            .unwrap();
        let (status, html, answer) = runtime.block_on(async {
            let response = router.clone().oneshot(request).await.unwrap();
            let status = response.status();
            let html = response
                .headers()
                .get(header::CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"text/html"));
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            (status, html, bytes)
        });
        assert_ne!(
            status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "{}",
            path.display()
        );
        let text = String::from_utf8_lossy(&answer);
        assert!(
            !text.to_ascii_lowercase().contains("<fz"),
            "{}",
            path.display()
        );
        if !(html && status.is_success()) {
            assert!(!text.contains(&code), "{}", path.display());
        }
        if status != StatusCode::CREATED {
            assert_eq!(state.store().events(&report).unwrap().len(), events_before);
        }
        statuses.insert(
            path.file_name().unwrap().to_string_lossy().into_owned(),
            status.as_u16(),
        );
    }
    let expected = [
        ("api-followup", 201),
        ("api-message-escapes", 201),
        ("api-message-nul", 400),
        ("api-no-message", 400),
        ("form-code", 200),
        ("form-wrong", 404),
        ("json-code", 200),
        ("json-extra", 400),
        ("page-file-first", 400),
        ("page-followup", 201),
        ("page-message-controls", 400),
        ("page-message-nul", 400),
        ("page-nul-after-bad-disposition", 400),
    ];
    for (seed, status) in expected {
        assert_eq!(statuses[seed], status, "{seed}: {statuses:?}");
    }
}

/// fuzz_targets/seipd_reader.rs: embargo's SEIPDv1 reader and Sequoia's
/// agree on every seed; the valid seeds open.
#[test]
fn seipd_reader_seeds() {
    use embargo::seal::seipd_reader::{FUZZ_KEY, differential, fuzz_packet};
    use sequoia_openpgp::crypto::SessionKey;
    use sequoia_openpgp::types::SymmetricAlgorithm;

    let key = SessionKey::from(&FUZZ_KEY[..]);
    let mut opened = 0;
    for (path, data) in seeds("seipd_reader") {
        let Some(packet) = fuzz_packet(&data) else {
            continue;
        };
        match differential(&packet, SymmetricAlgorithm::AES256, &key) {
            Ok(Some(_)) => opened += 1,
            Ok(None) => {}
            Err(e) => panic!("{}: {e}", path.display()),
        }
    }
    assert!(opened >= 5, "only {opened} seeds open");
}
