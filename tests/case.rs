//! Case events: sealed to every maintainer, signed by their author, stored
//! beside the report, and opened with every check (who signed, which
//! report, which name). Stock gpg decrypts and verifies them too.

mod common;
#[path = "common/server.rs"]
mod server;

use std::io::Read;

use embargo::case::event::{Assessment, Kind};
use embargo::case::{Event, Opened, Signers, open_event, seal_event};
use embargo::config::MessageFormat;
use embargo::id::ReportId;
use embargo::keys::Recipients;
use embargo::report::Severity;
use embargo::store::{Store, StoreError};

use common::{Gpg, GpgKeyType, Site, armored_public, opener, seal_report, sequoia_key};
use sequoia_openpgp as openpgp;

/// A site whose reports are sealed to maintainers A and B.
struct Team {
    site: Site,
    a: openpgp::Cert,
    b: openpgp::Cert,
    report: ReportId,
}

fn team() -> Team {
    let site = Site::new();
    let a = sequoia_key("Maintainer A <a@example.org>");
    let b = sequoia_key("Maintainer B <b@example.org>");
    site.add_key("a.asc", &armored_public(&a));
    site.add_key("b.asc", &armored_public(&b));
    let report = seal_report(&site, &[("poc.txt", b"CANARY-REPORT")]);
    Team { site, a, b, report }
}

impl Team {
    fn recipients(&self) -> Recipients {
        Recipients::from_certs(self.maintainers())
    }

    fn maintainers(&self) -> Vec<openpgp::Cert> {
        vec![
            self.a.clone().strip_secret_key_material(),
            self.b.clone().strip_secret_key_material(),
        ]
    }

    fn event(&self, kind: Kind, author: &openpgp::Cert) -> Event {
        let mut e = Event::new(
            self.report.clone(),
            kind,
            author.fingerprint().to_hex(),
            std::time::SystemTime::now(),
        );
        e.message = Some("CANARY-EVENT the fix is in review".into());
        e
    }

    fn seal(&self, event: &Event, author: &openpgp::Cert) -> Vec<u8> {
        let keypair = embargo::case::sealed::signing_keypair(author).unwrap();
        seal_event(event, &self.recipients(), MessageFormat::Compat, keypair).unwrap()
    }

    /// Opens `name` of `report` with B's key, A and B as maintainers.
    fn open(&self, report: &ReportId, name: &str, bytes: &[u8]) -> Opened {
        let intake = self.site.signing_cert();
        let maintainers = self.maintainers();
        open_event(
            &opener(&self.b, None),
            report,
            name,
            bytes,
            &Signers {
                maintainers: &maintainers,
                intake: Some(&intake),
            },
        )
    }
}

fn why(opened: Opened) -> String {
    match opened {
        Opened::Unverifiable { why, .. } => why,
        Opened::Verified(e) => panic!("verified, but should not be: {e:?}"),
    }
}

#[test]
fn an_event_by_one_maintainer_is_verified_by_another_and_stored_once() {
    let t = team();
    let mut event = t.event(Kind::Assessed, &t.a);
    event.assessment = Some(Assessment {
        severity: Severity::High,
        cvss: None,
        cwe: vec!["CWE-78".into()],
    });
    let bytes = t.seal(&event, &t.a);
    let name = event.event.file_name();
    let store = t.site.store();
    assert!(store.add_event(&t.report, &name, &bytes).unwrap());
    // A retried upload of the same bytes is a no-op; other bytes never replace it.
    assert!(!store.add_event(&t.report, &name, &bytes).unwrap());
    let other = t.seal(&t.event(Kind::Note, &t.a), &t.a);
    assert!(matches!(
        store.add_event(&t.report, &name, &other),
        Err(StoreError::EventConflict(_))
    ));
    let listed = store.events(&t.report).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name, name);
    assert_eq!(listed[0].size, bytes.len() as u64);
    let mut stored = Vec::new();
    store
        .open_event(&t.report, &name)
        .unwrap()
        .read_to_end(&mut stored)
        .unwrap();
    assert_eq!(stored, bytes);
    match t.open(&t.report, &name, &stored) {
        Opened::Verified(e) => {
            assert_eq!(*e, event);
            assert_eq!(e.author, t.a.fingerprint().to_hex());
        }
        other => panic!("{other:?}"),
    }
    // Only ciphertext reached the disk.
    assert!(common::files_containing(t.site.path(), b"CANARY-EVENT").is_empty());
}

#[test]
fn events_that_fail_a_check_are_unverifiable_and_say_why() {
    let t = team();
    let event = t.event(Kind::Note, &t.a);
    let bytes = t.seal(&event, &t.a);
    let name = event.event.file_name();

    // Signed by a key that is not a maintainer's.
    let stranger = sequoia_key("Stranger <s@example.org>");
    let forged = t.event(Kind::Note, &stranger);
    let forged_bytes = t.seal(&forged, &stranger);
    assert!(
        why(t.open(&t.report, &forged.event.file_name(), &forged_bytes))
            .contains("not signed by a maintainer"),
    );

    // Moved from another report.
    let other_report = seal_report(&t.site, &[]);
    assert!(why(t.open(&other_report, &name, &bytes)).contains("moved"));

    // Copied under another name (a replay).
    let copy = embargo::case::EventId::random().file_name();
    assert!(why(t.open(&t.report, &copy, &bytes)).contains("copied"));

    // Truncated.
    assert!(!why(t.open(&t.report, &name, &bytes[..bytes.len() / 2])).is_empty());

    // Claims another author than the key that signed it.
    let mut lying = t.event(Kind::Note, &t.a);
    lying.author = t.b.fingerprint().to_hex();
    let lying_bytes = t.seal(&lying, &t.a);
    assert!(
        why(t.open(&t.report, &lying.event.file_name(), &lying_bytes)).contains("claims author")
    );

    // A maintainer may not write what only the intake records.
    let received = t.event(Kind::Received, &t.a);
    let received_bytes = t.seal(&received, &t.a);
    assert!(
        why(t.open(&t.report, &received.event.file_name(), &received_bytes))
            .contains("may not write it")
    );

    // Not an event name at all.
    assert!(why(t.open(&t.report, "manifest.pgp", &bytes)).contains("not an event name"));
}

#[test]
fn every_event_decrypts_with_stock_gpg_under_each_maintainer_key_alone_and_verifies() {
    let site = Site::new();
    let (gpg_a, gpg_b) = (Gpg::new(), Gpg::new());
    let fa = gpg_a.gen_key("A <a@example.org>", GpgKeyType::Cv25519, "", "0");
    let fb = gpg_b.gen_key("B <b@example.org>", GpgKeyType::Rsa4096, "", "0");
    let (pub_a, pub_b) = (gpg_a.export_public(&fa), gpg_b.export_public(&fb));
    site.add_key("a.asc", &pub_a);
    site.add_key("b.asc", &pub_b);
    let report = seal_report(&site, &[]);
    let author = sequoia_key("Author <author@example.org>");
    let certs: Vec<openpgp::Cert> = [&pub_a, &pub_b]
        .iter()
        .map(|b| {
            use openpgp::parse::Parse;
            openpgp::Cert::from_bytes(b).unwrap()
        })
        .collect();
    let mut event = Event::new(
        report,
        Kind::Reply,
        author.fingerprint().to_hex(),
        std::time::SystemTime::now(),
    );
    event.message = Some("CANARY-REPLY thank you".into());
    let keypair = embargo::case::sealed::signing_keypair(&author).unwrap();
    let bytes = seal_event(
        &event,
        &Recipients::from_certs(certs),
        MessageFormat::Compat,
        keypair,
    )
    .unwrap();
    let file = site.path().join("event.pgp");
    std::fs::write(&file, &bytes).unwrap();
    for gpg in [&gpg_a, &gpg_b] {
        gpg.import(&armored_public(&author));
        let (plaintext, status) = gpg.decrypt(&file);
        let text = String::from_utf8_lossy(&plaintext);
        assert!(text.contains("CANARY-REPLY thank you"), "{status}");
        assert!(
            status.contains("GOODSIG") || status.contains("Good signature"),
            "{status}"
        );
        assert_eq!(Event::from_json(&plaintext).unwrap(), event);
    }
}

/// A team of two with secret key files and the intake configuration they
/// use for keys_dir and the intake signer.
struct Desk {
    team: Team,
    key_a: std::path::PathBuf,
    key_b: std::path::PathBuf,
}

fn desk() -> Desk {
    let team = team();
    team.site.write_config("");
    let key_a = team.site.path().join("a-secret.asc");
    let key_b = team.site.path().join("b-secret.asc");
    std::fs::write(&key_a, common::armored_secret(&team.a)).unwrap();
    std::fs::write(&key_b, common::armored_secret(&team.b)).unwrap();
    Desk { team, key_a, key_b }
}

impl Desk {
    /// `embargo case ACTION ID -c CONFIG --key KEY ARGS…` with `stdin`.
    fn case(
        &self,
        action: &str,
        key: &std::path::Path,
        args: &[&str],
        stdin: &[u8],
    ) -> std::process::Output {
        use std::io::Write;
        let mut cmd = self.team.site.embargo();
        cmd.arg("case")
            .arg(action)
            .arg(self.team.report.as_str())
            .arg("-c")
            .arg(self.team.site.config_path())
            .arg("--key")
            .arg(key)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        child.wait_with_output().unwrap()
    }

    fn ok(&self, action: &str, key: &std::path::Path, args: &[&str], stdin: &[u8]) {
        let out = self.case(action, key, args, stdin);
        assert!(
            out.status.success(),
            "case {action}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn show(&self, key: &std::path::Path, now: &str) -> serde_json::Value {
        let out = self.case("show", key, &["--json", "--now", now], b"");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

#[test]
fn two_maintainers_carry_a_case_from_acknowledgement_to_close() {
    let d = desk();
    let (a, b) = (&d.key_a, &d.key_b);
    let fa = d.team.a.fingerprint().to_hex();
    let fb = d.team.b.fingerprint().to_hex();
    d.ok("ack", a, &[], b"");
    d.ok("assess", a, &["--severity", "high", "--cwe", "CWE-78"], b"");
    d.ok(
        "reply",
        b,
        &["--message", "-"],
        b"CANARY-REPLY confirmed, fix soon",
    );
    d.ok("fix", b, &["--version", "1.4.2", "--released"], b"");
    d.ok("close", a, &["--as", "fixed"], b"");

    // Closed: nothing more but a reopen, and the refusal leaves nothing.
    let before = d.team.site.store().events(&d.team.report).unwrap().len();
    let refused = d.case("note", a, &["--message", "-"], b"late note");
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("is closed"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert_eq!(
        d.team.site.store().events(&d.team.report).unwrap().len(),
        before
    );

    // Both maintainers see the same timeline, in order, with the right authors.
    let now = "2030-01-01T00:00:00Z";
    let seen_a = d.show(a, now);
    let seen_b = d.show(b, now);
    assert_eq!(seen_a, seen_b);
    assert_eq!(seen_a["state"], "closed");
    assert_eq!(seen_a["due"], serde_json::json!([]));
    let events = seen_a["events"].as_array().unwrap();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"]["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["acknowledged", "assessed", "reply", "fix", "closed"]
    );
    let authors: Vec<&str> = events
        .iter()
        .map(|e| e["event"]["author"].as_str().unwrap())
        .collect();
    assert_eq!(authors, [&fa, &fa, &fb, &fb, &fa]);
    assert_eq!(
        events[2]["event"]["message"],
        "CANARY-REPLY confirmed, fix soon"
    );
    assert!(events.iter().all(|e| e["verified"] == true));
    // The store holds ciphertext only.
    assert!(common::files_containing(&d.team.site.store_dir(), b"CANARY-REPLY").is_empty());

    d.ok("reopen", b, &[], b"");
    assert_eq!(d.show(a, now)["state"], "fixed");
}

#[test]
fn unknown_ids_and_unverified_reports_are_refused_and_leave_nothing() {
    let d = desk();
    let mut cmd = d.team.site.embargo();
    let out = cmd
        .args(["case", "ack", "K7Q3M-2XDA9-TF4BC-1ZP0R", "-c"])
        .arg(d.team.site.config_path())
        .arg("--key")
        .arg(&d.key_a)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not in the store"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Without the intake's signing certificate the report is not verified:
    // no event is added to what might be a forged report.
    let mut cmd = d.team.site.embargo();
    let keys = d.team.site.keys_dir();
    let _ = keys;
    let out = cmd
        .args(["case", "ack", d.team.report.as_str(), "--store"])
        .arg(d.team.site.store_dir())
        .arg("--key")
        .arg(&d.key_a)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        d.team
            .site
            .store()
            .events(&d.team.report)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn deadlines_follow_the_promises_sealed_at_intake() {
    let d = desk();
    let show = |now: &str| d.show(&d.key_a, now);
    let received = d.team.site.store();
    let _ = received;
    let first = show("2000-01-01T00:00:00Z");
    let due: Vec<&str> = first["due"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["what"].as_str().unwrap())
        .collect();
    assert!(
        due.contains(&"acknowledge") && due.contains(&"assess"),
        "{first}"
    );
    assert!(
        first["due"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["overdue"] == false)
    );
    let later = show("2099-01-01T00:00:00Z");
    let ack = later["due"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["what"] == "acknowledge")
        .unwrap()
        .clone();
    assert_eq!(ack["overdue"], true);
    d.ok("ack", &d.key_a, &[], b"");
    let after = show("2099-01-01T00:00:00Z");
    assert!(
        after["due"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["what"] != "acknowledge"),
        "{after}"
    );
}

/// A maintainer's own machine: a local store filled by `embargo fetch`.
struct Laptop {
    store: std::path::PathBuf,
    key: std::path::PathBuf,
}

impl Laptop {
    fn run(&self, site: &Site, args: &[&str], stdin: &[u8]) -> std::process::Output {
        use std::io::Write;
        let mut child = site
            .embargo()
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        child.wait_with_output().unwrap()
    }

    fn case(&self, site: &Site, action: &str, id: &ReportId, extra: &[&str], stdin: &[u8]) {
        let store = self.store.display().to_string();
        let key = self.key.display().to_string();
        let mut args = vec![
            "case",
            action,
            id.as_str(),
            "--store",
            &store,
            "--key",
            &key,
        ];
        args.extend_from_slice(extra);
        let out = self.run(site, &args, stdin);
        assert!(
            out.status.success(),
            "case {action}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn fetch(&self, site: &Site, base: &str, token: &std::path::Path) -> String {
        let store = self.store.display().to_string();
        let token = token.display().to_string();
        let out = self.run(
            site,
            &[
                "fetch",
                "--from",
                base,
                "--token-file",
                &token,
                "--store",
                &store,
            ],
            b"",
        );
        let text = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "fetch: {text}");
        text
    }

    fn timeline(&self, site: &Site, id: &ReportId) -> serde_json::Value {
        let store = self.store.display().to_string();
        let key = self.key.display().to_string();
        let out = self.run(
            site,
            &[
                "case",
                "show",
                id.as_str(),
                "--store",
                &store,
                "--key",
                &key,
                "--json",
            ],
            b"",
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

#[test]
fn two_maintainers_work_offline_and_fetch_brings_every_event_to_both_once() {
    let t = team();
    let work = tempfile::tempdir().unwrap();
    let token = work.path().join("token");
    let entry = t.site.maintainer_token(&token);
    t.site.write_config(&format!(
        "listen = \"127.0.0.1:0\"\n[maintainers]\ntoken_sha256 = [{entry}]\n"
    ));
    let server = server::Server::start(&t.site);
    let laptop = |name: &str, cert: &openpgp::Cert| {
        let key = work.path().join(format!("{name}.asc"));
        std::fs::write(&key, common::armored_secret(cert)).unwrap();
        Laptop {
            store: work.path().join(name),
            key,
        }
    };
    let (a, b) = (laptop("a", &t.a), laptop("b", &t.b));
    a.fetch(&t.site, &server.base, &token);
    b.fetch(&t.site, &server.base, &token);
    // The intake's signing certificate and keys were saved: --store is enough.
    a.case(&t.site, "ack", &t.report, &[], b"");
    a.case(
        &t.site,
        "assess",
        &t.report,
        &["--severity", "critical"],
        b"",
    );
    b.case(
        &t.site,
        "reply",
        &t.report,
        &["--message", "-"],
        b"CANARY-SYNC thanks",
    );
    let said = a.fetch(&t.site, &server.base, &token);
    assert!(
        said.contains("0 from other maintainers fetched from the intake, 2 sent to it"),
        "{said}"
    );
    let said = b.fetch(&t.site, &server.base, &token);
    assert!(
        said.contains("2 from other maintainers fetched from the intake, 1 sent to it"),
        "{said}"
    );
    b.case(
        &t.site,
        "fix",
        &t.report,
        &["--version", "2.0.1", "--released"],
        b"",
    );
    b.fetch(&t.site, &server.base, &token);
    a.fetch(&t.site, &server.base, &token);
    // Again: nothing more moves.
    let said = a.fetch(&t.site, &server.base, &token);
    assert!(!said.contains("case events"), "{said}");
    a.case(&t.site, "close", &t.report, &["--as", "fixed"], b"");
    a.fetch(&t.site, &server.base, &token);
    b.fetch(&t.site, &server.base, &token);

    let (seen_a, seen_b) = (
        a.timeline(&t.site, &t.report),
        b.timeline(&t.site, &t.report),
    );
    assert_eq!(seen_a, seen_b);
    let kinds: Vec<&str> = seen_a["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"]["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["acknowledged", "assessed", "reply", "fix", "closed"]
    );
    assert_eq!(seen_a["state"], "closed");
    // Every side holds each event exactly once, as ciphertext.
    let names = |root: &std::path::Path| {
        let mut n: Vec<String> =
            std::fs::read_dir(root.join("reports").join(t.report.as_str()).join("events"))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
        n.sort();
        n
    };
    let on_server = names(&t.site.store_dir());
    assert_eq!(on_server.len(), 5);
    assert_eq!(names(&a.store), on_server);
    assert_eq!(names(&b.store), on_server);
    for root in [t.site.path(), work.path()] {
        assert!(common::files_containing(root, b"CANARY-SYNC").is_empty());
    }
}

#[test]
fn the_intake_stores_events_it_cannot_read_and_refuses_what_is_not_one() {
    let t = team();
    let work = tempfile::tempdir().unwrap();
    let token_file = work.path().join("token");
    let entry = t.site.maintainer_token(&token_file);
    let token = std::fs::read_to_string(&token_file)
        .unwrap()
        .trim()
        .to_string();
    t.site.write_config(&format!(
        "listen = \"127.0.0.1:0\"\n[maintainers]\ntoken_sha256 = [{entry}]\n"
    ));
    let server = server::Server::start(&t.site);
    let client = reqwest::blocking::Client::new();
    let event = t.event(Kind::Note, &t.a);
    let bytes = t.seal(&event, &t.a);
    let name = event.event.file_name();
    let post = |id: &str, name: &str, body: Vec<u8>, token: Option<&str>| {
        let mut r = client
            .post(format!("{}/api/v1/sealed/{id}/events", server.base))
            .query(&[("name", name)])
            .body(body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        let answer = r.send().unwrap();
        let status = answer.status().as_u16();
        let json: serde_json::Value = answer.json().unwrap_or_default();
        (
            status,
            json["error"]["code"].as_str().unwrap_or("").to_string(),
        )
    };
    let id = t.report.as_str();
    assert_eq!(post(id, &name, bytes.clone(), None).0, 401);
    assert_eq!(
        post(id, &name, b"not pgp".to_vec(), Some(&token)),
        (400, "invalid_event".into())
    );
    assert_eq!(
        post(id, "../x.pgp", bytes.clone(), Some(&token)),
        (400, "invalid_event".into())
    );
    // Too large: refused on the announced length, before the body is sent.
    {
        use std::io::{Read, Write};
        let mut raw = std::net::TcpStream::connect(&server.addr).unwrap();
        write!(
            raw,
            "POST /api/v1/sealed/{id}/events?name={name} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\n\r\nxx",
            2 << 20
        )
        .unwrap();
        let mut answer = String::new();
        let _ = raw.read_to_string(&mut answer);
        assert_eq!(server::status_of(&answer), 413, "{answer}");
        assert!(answer.contains("event_too_large"), "{answer}");
    }
    assert_eq!(
        post(
            "K7Q3M-2XDA9-TF4BC-1ZP0R",
            &name,
            bytes.clone(),
            Some(&token)
        ),
        (404, "not_found".into())
    );
    assert_eq!(post(id, &name, bytes.clone(), Some(&token)).0, 201);
    assert_eq!(post(id, &name, bytes.clone(), Some(&token)).0, 200);
    let other = t.seal(&t.event(Kind::Note, &t.a), &t.a);
    assert_eq!(
        post(id, &name, other, Some(&token)),
        (409, "event_conflict".into())
    );
    let listed: serde_json::Value = client
        .get(format!("{}/api/v1/sealed/{id}/events", server.base))
        .bearer_auth(&token)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(listed["events"][0]["name"], name.as_str());
    assert_eq!(listed["events"][0]["size"], bytes.len());
    let served = client
        .get(format!("{}/api/v1/sealed/{id}/events/{name}", server.base))
        .bearer_auth(&token)
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    assert_eq!(served.as_ref(), bytes.as_slice());

    // Shared session keys: only session-key packets are taken, never a body.
    let share = |part: &str, body: Vec<u8>| {
        let answer = client
            .post(format!("{}/api/v1/sealed/{id}/session-keys", server.base))
            .query(&[("part", part)])
            .bearer_auth(&token)
            .body(body)
            .send()
            .unwrap();
        let status = answer.status().as_u16();
        let json: serde_json::Value = answer.json().unwrap_or_default();
        (
            status,
            json["error"]["code"].as_str().unwrap_or("").to_string(),
        )
    };
    let before = std::fs::read(t.site.reports_dir().join(id).join("001.pgp")).unwrap();
    assert_eq!(
        share("001.pgp", b"garbage".to_vec()),
        (400, "invalid_session_keys".into())
    );
    // A whole encrypted message is more than session keys.
    assert_eq!(
        share("001.pgp", bytes.clone()),
        (400, "invalid_session_keys".into())
    );
    assert_eq!(
        share("../x", b"x".to_vec()),
        (400, "invalid_session_keys".into())
    );
    assert_eq!(
        std::fs::read(t.site.reports_dir().join(id).join("001.pgp")).unwrap(),
        before,
        "the stored part is unchanged"
    );
}

#[test]
fn list_shows_the_state_only_open_obligations_and_hides_closed_cases() {
    let d = desk();
    let list = |extra: &[&str]| {
        let out = d
            .team
            .site
            .embargo()
            .args(["list", "--json", "-c"])
            .arg(d.team.site.config_path())
            .arg("--key")
            .arg(&d.key_a)
            .args(["--now", "2099-01-01T00:00:00Z"])
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let rows = list(&[]);
    assert_eq!(rows[0]["state"], "new");
    assert_eq!(rows[0]["acknowledge_overdue"], true);
    assert_eq!(rows[0]["assess_overdue"], true);
    d.ok("ack", &d.key_a, &[], b"");
    d.ok("assess", &d.key_b, &["--severity", "low"], b"");
    let rows = list(&[]);
    assert_eq!(rows[0]["state"], "assessed");
    assert_eq!(rows[0]["acknowledge_by"], serde_json::Value::Null);
    assert_eq!(rows[0]["assess_by"], serde_json::Value::Null);
    assert_eq!(rows[0]["severity"], "low");
    d.ok("close", &d.key_b, &["--as", "wontfix"], b"");
    assert_eq!(list(&[]), serde_json::json!([]));
    let all = list(&["--all"]);
    assert_eq!(all[0]["state"], "closed");
    assert_eq!(all[0]["acknowledge_overdue"], false);
    assert_eq!(all[0]["fix_by"], serde_json::Value::Null);
}

#[test]
fn a_maintainer_signs_through_a_real_gpg_agent_and_the_other_verifies_it() {
    let site = Site::new();
    site.write_config("");
    let a = sequoia_key("Maintainer A <a@example.org>");
    let gpg = Gpg::new();
    let fb = gpg.gen_key("Maintainer B <b@example.org>", GpgKeyType::Cv25519, "", "0");
    site.add_key("a.asc", &armored_public(&a));
    site.add_key("b.asc", &gpg.export_public(&fb));
    let report = seal_report(&site, &[("poc.txt", b"CANARY")]);
    let key_a = site.path().join("a-secret.asc");
    std::fs::write(&key_a, common::armored_secret(&a)).unwrap();
    let run = |args: &[&str], with_gpg: bool, stdin: &[u8]| {
        use std::io::Write;
        let mut cmd = site.embargo();
        cmd.args(args)
            .arg(report.as_str())
            .arg("-c")
            .arg(site.config_path())
            .env("GNUPGHOME", gpg.home.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        if with_gpg {
            cmd.arg("--gpg");
        } else {
            cmd.arg("--key").arg(&key_a);
        }
        let mut child = cmd.spawn().unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    run(&["case", "ack"], false, b"");
    run(
        &["case", "reply", "--message", "-"],
        true,
        b"CANARY-GPG we confirm it",
    );
    for with_gpg in [false, true] {
        let shown: serde_json::Value =
            serde_json::from_slice(&run(&["case", "show", "--json"], with_gpg, b"")).unwrap();
        let events = shown["events"].as_array().unwrap();
        assert_eq!(events.len(), 2, "{shown}");
        assert!(events.iter().all(|e| e["verified"] == true), "{shown}");
        assert_eq!(events[1]["event"]["author"], fb.as_str());
        assert_eq!(events[1]["event"]["message"], "CANARY-GPG we confirm it");
    }
    assert!(common::files_containing(site.path(), b"CANARY-GPG").is_empty());
}

#[test]
fn a_maintainer_profile_replaces_the_repeated_flags_and_names_unknown_keys() {
    let t = team();
    let work = tempfile::tempdir().unwrap();
    let token = work.path().join("token");
    let entry = t.site.maintainer_token(&token);
    t.site.write_config(&format!(
        "listen = \"127.0.0.1:0\"\n[maintainers]\ntoken_sha256 = [{entry}]\n"
    ));
    let server = server::Server::start(&t.site);
    std::fs::write(work.path().join("me.asc"), common::armored_secret(&t.a)).unwrap();
    let profile = work.path().join("maintainer.toml");
    std::fs::write(
        &profile,
        format!(
            "store = \"store\"\nkey = \"me.asc\"\nintake_url = \"{}\"\ntoken_file = \"token\"\nout = \"revealed\"\n",
            server.base
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        t.site
            .embargo()
            .env("EMBARGO_MAINTAINER", &profile)
            .args(args)
            .output()
            .unwrap()
    };
    let ok = |args: &[&str]| {
        let out = run(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    ok(&["fetch"]);
    ok(&["case", "ack", t.report.as_str()]);
    ok(&["fetch"]);
    let listed: serde_json::Value =
        serde_json::from_slice(&ok(&["list", "--json"]).stdout).unwrap();
    assert_eq!(listed[0]["state"], "acknowledged");
    ok(&["decrypt", t.report.as_str()]);
    assert!(
        work.path()
            .join("revealed")
            .join(t.report.as_str())
            .join("report.md")
            .is_file()
    );
    assert_eq!(
        t.site.store().events(&t.report).unwrap().len(),
        1,
        "the acknowledgement reached the intake"
    );

    std::fs::write(&profile, "stor = \"x\"\n").unwrap();
    let out = run(&["list"]);
    assert_eq!(out.status.code(), Some(2));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("maintainer profile") && said.contains("stor"),
        "{said}"
    );
}

#[test]
fn a_fetch_killed_at_random_moments_loses_and_duplicates_no_event() {
    use rand::Rng;
    let t = team();
    let work = tempfile::tempdir().unwrap();
    let token = work.path().join("token");
    let entry = t.site.maintainer_token(&token);
    t.site.write_config(&format!(
        "listen = \"127.0.0.1:0\"\n[maintainers]\ntoken_sha256 = [{entry}]\n"
    ));
    let server = server::Server::start(&t.site);
    let key = work.path().join("a.asc");
    std::fs::write(&key, common::armored_secret(&t.a)).unwrap();
    let laptop = Laptop {
        store: work.path().join("a"),
        key,
    };
    laptop.fetch(&t.site, &server.base, &token);
    // Events waiting on both sides: three on the intake (by B), three here.
    for _ in 0..3 {
        let event = t.event(Kind::Note, &t.b);
        let bytes = t.seal(&event, &t.b);
        t.site
            .store()
            .add_event(&t.report, &event.event.file_name(), &bytes)
            .unwrap();
        laptop.case(
            &t.site,
            "note",
            &t.report,
            &["--message", "-"],
            b"offline note",
        );
    }
    let mut rng = rand::thread_rng();
    for _ in 0..12 {
        let mut child = t
            .site
            .embargo()
            .args(["fetch", "--from", &server.base, "--token-file"])
            .arg(&token)
            .arg("--store")
            .arg(&laptop.store)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // The kill timing is the point: a random moment of the exchange.
        std::thread::sleep(std::time::Duration::from_millis(rng.gen_range(0..120)));
        let _ = child.kill();
        let _ = child.wait();
    }
    laptop.fetch(&t.site, &server.base, &token);
    let names = |root: &std::path::Path| {
        let dir = root.join("reports").join(t.report.as_str()).join("events");
        let mut n: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect();
        n.sort();
        n
    };
    let here = names(&laptop.store);
    assert_eq!(here.len(), 6, "{here:?}");
    assert_eq!(names(&t.site.store_dir()), here);
    let shown = laptop.timeline(&t.site, &t.report);
    let events = shown["events"].as_array().unwrap();
    assert_eq!(events.len(), 6);
    assert!(events.iter().all(|e| e["verified"] == true), "{shown}");
}

#[test]
fn sharing_a_part_adds_only_session_keys_and_the_new_key_alone_opens_it() {
    use embargo::seal::share::{add_recipient, only_headers_added};
    let site = Site::new();
    let a = sequoia_key("Maintainer A <a@example.org>");
    site.add_key("a.asc", &armored_public(&a));
    let report = seal_report(&site, &[("poc.txt", b"CANARY-SHARED poc")]);
    let event = {
        let mut e = Event::new(
            report.clone(),
            Kind::Note,
            a.fingerprint().to_hex(),
            std::time::SystemTime::now(),
        );
        e.message = Some("CANARY-SHARED note".into());
        let bytes = seal_event(
            &e,
            &Recipients::from_certs(vec![a.clone().strip_secret_key_material()]),
            MessageFormat::Compat,
            embargo::case::sealed::signing_keypair(&a).unwrap(),
        )
        .unwrap();
        site.store()
            .add_event(&report, &e.event.file_name(), &bytes)
            .unwrap();
        e
    };
    // The newcomer's key lives in gpg only.
    let gpg = Gpg::new();
    let fnew = gpg.gen_key("Newcomer <n@example.org>", GpgKeyType::Cv25519, "", "0");
    // The signers gpg checks: the intake (manifest) and A (the event).
    gpg.import(&armored_public(&site.signing_cert()));
    gpg.import(&armored_public(&a));
    let newcomer: openpgp::Cert = {
        use openpgp::parse::Parse;
        openpgp::Cert::from_bytes(&gpg.export_public(&fnew)).unwrap()
    };
    let secrets = embargo::seal::SecretSource::Keys(vec![a.clone()]);
    let dir = site.reports_dir().join(report.as_str());
    let mut files = vec![dir.join("manifest.pgp"), dir.join("001.pgp")];
    files.push(dir.join("events").join(event.event.file_name()));
    for file in &files {
        let before = std::fs::read(file).unwrap();
        let after = add_recipient(&before, &secrets, &newcomer)
            .unwrap()
            .expect("a session key was added");
        assert!(only_headers_added(&before, &after));
        assert!(after.len() > before.len());
        // Sharing again adds nothing.
        assert!(
            add_recipient(&after, &secrets, &newcomer)
                .unwrap()
                .is_none()
        );
        // Tampering with the body is not "only headers".
        let mut tampered = after.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(!only_headers_added(&before, &tampered));
        std::fs::write(file, &after).unwrap();
        // Stock gpg with the newcomer's key alone decrypts the shared part.
        let (plaintext, _) = gpg.decrypt(file);
        assert!(!plaintext.is_empty());
    }
    let (poc, _) = gpg.decrypt(&files[1]);
    assert_eq!(poc, b"CANARY-SHARED poc");
    let (note, _) = gpg.decrypt(&files[2]);
    assert!(String::from_utf8_lossy(&note).contains("CANARY-SHARED note"));
}

#[test]
fn case_share_lets_a_new_maintainer_decrypt_old_reports_and_events() {
    let d = desk();
    d.ok("note", &d.key_a, &["--message", "-"], b"CANARY-OLD note");
    let gpg = Gpg::new();
    let fnew = gpg.gen_key("Newcomer <n@example.org>", GpgKeyType::Cv25519, "", "0");
    let cert = d.team.site.path().join("newcomer.asc");
    std::fs::write(&cert, gpg.export_public(&fnew)).unwrap();
    let site = &d.team.site;
    let parts_before: Vec<u64> = site
        .store()
        .parts(&d.team.report)
        .unwrap()
        .iter()
        .map(|p| p.size)
        .collect();
    let out = site
        .embargo()
        .args(["case", "share", "--all", "--cert"])
        .arg(&cert)
        .arg("-c")
        .arg(site.config_path())
        .arg("--key")
        .arg(&d.key_a)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("shared 3 part(s) of 1 report(s)"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parts_after: Vec<u64> = site
        .store()
        .parts(&d.team.report)
        .unwrap()
        .iter()
        .map(|p| p.size)
        .collect();
    assert!(parts_after.iter().zip(&parts_before).all(|(a, b)| a > b));
    // The newcomer, with gpg-agent only, decrypts the old report and reads its case.
    let revealed = site.path().join("revealed");
    std::fs::create_dir(&revealed).unwrap();
    let run = |args: &[&str]| {
        site.embargo()
            .args(args)
            .arg("-c")
            .arg(site.config_path())
            .arg("--gpg")
            .env("GNUPGHOME", gpg.home.path())
            .output()
            .unwrap()
    };
    let out = run(&[
        "decrypt",
        d.team.report.as_str(),
        "--out",
        revealed.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(revealed.join(d.team.report.as_str()).join("poc.txt")).unwrap(),
        b"CANARY-REPORT"
    );
    let out = run(&["case", "show", d.team.report.as_str(), "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["events"][0]["verified"], true, "{shown}");
    assert_eq!(shown["events"][0]["event"]["message"], "CANARY-OLD note");
    // Sharing again changes nothing.
    let again = site
        .embargo()
        .args(["case", "share", d.team.report.as_str(), "--cert"])
        .arg(&cert)
        .arg("-c")
        .arg(site.config_path())
        .arg("--key")
        .arg(&d.key_a)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&again.stderr).contains("shared 0 part(s)"));
}

#[test]
fn shared_session_keys_reach_the_intake_and_every_other_store_through_fetch() {
    let t = team();
    let work = tempfile::tempdir().unwrap();
    let token = work.path().join("token");
    let entry = t.site.maintainer_token(&token);
    t.site.write_config(&format!(
        "listen = \"127.0.0.1:0\"\n[maintainers]\ntoken_sha256 = [{entry}]\n"
    ));
    let server = server::Server::start(&t.site);
    let laptop = |name: &str, cert: &openpgp::Cert| {
        let key = work.path().join(format!("{name}.asc"));
        std::fs::write(&key, common::armored_secret(cert)).unwrap();
        Laptop {
            store: work.path().join(name),
            key,
        }
    };
    let (a, b) = (laptop("a", &t.a), laptop("b", &t.b));
    a.fetch(&t.site, &server.base, &token);
    a.case(
        &t.site,
        "note",
        &t.report,
        &["--message", "-"],
        b"before the newcomer",
    );
    a.fetch(&t.site, &server.base, &token);
    b.fetch(&t.site, &server.base, &token);
    let newcomer = sequoia_key("Newcomer <n@example.org>");
    let cert = work.path().join("newcomer.asc");
    std::fs::write(&cert, armored_public(&newcomer)).unwrap();
    let out = a.run(
        &t.site,
        &[
            "case",
            "share",
            "--all",
            "--cert",
            cert.to_str().unwrap(),
            "--store",
            a.store.to_str().unwrap(),
            "--key",
            a.key.to_str().unwrap(),
        ],
        b"",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = a.fetch(&t.site, &server.base, &token);
    assert!(said.contains("3 part(s) brought in line"), "{said}");
    let said = b.fetch(&t.site, &server.base, &token);
    assert!(said.contains("3 part(s) brought in line"), "{said}");
    // All three stores now hold the same bytes, and the newcomer's key opens them.
    let dir = |root: &std::path::Path| root.join("reports").join(t.report.as_str());
    for part in ["manifest.pgp", "001.pgp"] {
        let server_copy = std::fs::read(dir(&t.site.store_dir()).join(part)).unwrap();
        assert_eq!(
            std::fs::read(dir(&a.store).join(part)).unwrap(),
            server_copy
        );
        assert_eq!(
            std::fs::read(dir(&b.store).join(part)).unwrap(),
            server_copy
        );
    }
    let n = laptop("n", &newcomer);
    n.fetch(&t.site, &server.base, &token);
    let shown = n.timeline(&t.site, &t.report);
    assert_eq!(shown["events"][0]["verified"], true, "{shown}");
    assert_eq!(
        shown["events"][0]["event"]["message"],
        "before the newcomer"
    );
    // Nothing more to move.
    let said = a.fetch(&t.site, &server.base, &token);
    assert!(!said.contains("brought in line"), "{said}");
}

#[test]
fn reply_without_message_opens_the_editor_in_a_private_runtime_dir_and_leaves_nothing() {
    use std::os::unix::fs::PermissionsExt;
    let d = desk();
    let site = &d.team.site;
    let runtime = tempfile::tempdir().unwrap();
    std::fs::set_permissions(runtime.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    // The editor (which holds the canary itself) lives outside the site.
    let tools = tempfile::tempdir().unwrap();
    let editor = tools.path().join("editor.sh");
    std::fs::write(
        &editor,
        "#!/bin/sh\nprintf 'CANARY-EDITED thanks, confirmed' > \"$1\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&editor, std::fs::Permissions::from_mode(0o700)).unwrap();
    // A terminal on stdin (the editor needs one), through script(1).
    let command = format!(
        "{} case reply {} -c {} --key {}",
        common::embargo_bin().display(),
        d.team.report,
        site.config_path().display(),
        d.key_a.display()
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .current_dir(site.path())
        .env("EDITOR", &editor)
        .env_remove("VISUAL")
        .env("XDG_RUNTIME_DIR", runtime.path())
        .env("XDG_CONFIG_HOME", "/nonexistent/embargo-tests")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let shown = d.show(&d.key_a, "2030-01-01T00:00:00Z");
    assert_eq!(
        shown["events"][0]["event"]["message"],
        "CANARY-EDITED thanks, confirmed"
    );
    assert_eq!(std::fs::read_dir(runtime.path()).unwrap().count(), 0);
    assert!(common::files_containing(site.path(), b"CANARY-EDITED").is_empty());
}

/// Every part and event file of `report` in `site`'s store, manifest first.
fn part_files(site: &Site, report: &ReportId) -> Vec<std::path::PathBuf> {
    let store = site.store();
    let dir = site.reports_dir().join(report.as_str());
    let parts = store
        .parts(report)
        .unwrap()
        .into_iter()
        .map(|p| dir.join(p.name));
    let events = store.events(report).unwrap().into_iter();
    parts
        .chain(events.map(|e| dir.join("events").join(e.name)))
        .collect()
}

/// Asserts that `after` is `before` with session keys added in front of
/// byte-identical encrypted data.
fn assert_only_session_keys_added(file: &std::path::Path, before: &[u8], after: &[u8]) {
    use embargo::seal::share::{body_offset, only_headers_added};
    let (was, is) = (body_offset(before).unwrap(), body_offset(after).unwrap());
    assert!(is > was, "{}: no session key added", file.display());
    assert_eq!(&after[..was], &before[..was], "{}", file.display());
    assert!(
        before[was..] == after[is..],
        "{}: the encrypted data changed",
        file.display()
    );
    assert!(only_headers_added(before, after), "{}", file.display());
}

#[test]
fn case_share_through_gpg_agent_gives_the_newcomer_every_part_and_event_unchanged() {
    let site = Site::new();
    // Maintainer A's key lives in gpg-agent only; the newcomer's in another gpg.
    let (gpg_a, gpg_n) = (Gpg::new(), Gpg::new());
    let fa = gpg_a.gen_key("Maintainer A <a@example.org>", GpgKeyType::Cv25519, "", "0");
    let fnew = gpg_n.gen_key("Newcomer <n@example.org>", GpgKeyType::Cv25519, "", "0");
    site.add_key("a.asc", &gpg_a.export_public(&fa));
    // Big enough that the encrypted data goes on far beyond what is read.
    let big = common::random_bytes(3 << 20, 21);
    let report = seal_report(
        &site,
        &[("poc.txt", b"CANARY-GPG-SHARE"), ("big.bin", &big)],
    );
    let embargo = |gpg: &Gpg, args: &[&str]| {
        let out = site
            .embargo()
            .args(args)
            .arg("-c")
            .arg(site.config_path())
            .arg("--gpg")
            .env("GNUPGHOME", gpg.home.path())
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{args:?}: {said}");
        (out.stdout, said)
    };
    let note = site.path().join("note.txt");
    std::fs::write(&note, "CANARY-GPG-NOTE").unwrap();
    let note = note.to_str().unwrap();
    embargo(
        &gpg_a,
        &["case", "note", report.as_str(), "--message", note],
    );
    let files = part_files(&site, &report);
    assert_eq!(files.len(), 4, "{files:?}");
    let before: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    let cert = site.path().join("newcomer.asc");
    std::fs::write(&cert, gpg_n.export_public(&fnew)).unwrap();
    let cert = cert.to_str().unwrap();
    let (printed, said) = embargo(&gpg_a, &["case", "share", "--all", "--cert", cert]);
    assert!(said.contains("shared 4 part(s) of 1 report(s)"), "{said}");
    for (file, before) in files.iter().zip(&before) {
        assert_only_session_keys_added(file, before, &std::fs::read(file).unwrap());
    }
    // Stock gpg with the newcomer's key alone opens every part and event,
    // and verifies the intake's and A's signatures.
    gpg_n.import(&armored_public(&site.signing_cert()));
    gpg_n.import(&gpg_a.export_public(&fa));
    let opened: Vec<(Vec<u8>, String)> = files.iter().map(|f| gpg_n.decrypt(f)).collect();
    for (file, (_, status)) in files.iter().zip(&opened).step_by(3) {
        assert!(status.contains("GOODSIG"), "{}: {status}", file.display());
    }
    assert_eq!(opened[1].0, b"CANARY-GPG-SHARE");
    assert!(opened[2].0 == big, "the big attachment changed");
    assert!(String::from_utf8_lossy(&opened[3].0).contains("CANARY-GPG-NOTE"));
    // gpg never showed the session key to anything share prints.
    let shown = gpg_n.try_run(
        &[
            "--show-session-key",
            "--decrypt",
            files[2].to_str().unwrap(),
        ],
        None,
    );
    let shown = String::from_utf8_lossy(&shown.stderr);
    let key = shown
        .lines()
        .find_map(|l| l.strip_prefix("gpg: session key: '"))
        .and_then(|l| l.split(['\'', ':']).nth(1))
        .expect("gpg shows the session key");
    assert!(key.len() >= 32 && !said.contains(key), "{said}");
    assert!(printed.is_empty());
    // So does embargo, with the newcomer's gpg.
    let revealed = site.path().join("revealed");
    std::fs::create_dir(&revealed).unwrap();
    let out = revealed.to_str().unwrap();
    embargo(&gpg_n, &["decrypt", report.as_str(), "--out", out]);
    let dir = revealed.join(report.as_str());
    assert_eq!(
        std::fs::read(dir.join("poc.txt")).unwrap(),
        b"CANARY-GPG-SHARE"
    );
    assert!(std::fs::read(dir.join("big.bin")).unwrap() == big);
    let (shown, _) = embargo(&gpg_n, &["case", "show", report.as_str(), "--json"]);
    let shown: serde_json::Value = serde_json::from_slice(&shown).unwrap();
    assert_eq!(shown["events"][0]["verified"], true, "{shown}");
    assert_eq!(shown["events"][0]["event"]["message"], "CANARY-GPG-NOTE");
    // Sharing again changes nothing, and needs no key: a gpg without one will do.
    let (_, said) = embargo(&Gpg::new(), &["case", "share", "--all", "--cert", cert]);
    assert!(said.contains("shared 0 part(s)"), "{said}");
}

/// A reader that counts what is read from it.
struct Counting<R> {
    inner: R,
    read: usize,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n;
        Ok(n)
    }
}

#[test]
fn case_share_reads_only_the_head_of_a_large_attachment_and_adds_only_session_keys() {
    use embargo::seal::share::{FIRST_HEAD_BYTES, keys_to_add, read_head};
    let d = desk();
    let site = &d.team.site;
    // Larger than all the memory `case share` needs.
    let big = common::random_bytes(32 << 20, 33);
    let report = seal_report(site, &[("big.bin", &big)]);
    let file = site.reports_dir().join(report.as_str()).join("001.pgp");
    let before = std::fs::read(&file).unwrap();
    assert!(before.len() > big.len());
    let newcomer = sequoia_key("Newcomer <n@example.org>");
    // What the command does with each part: its head is enough.
    let mut reader = Counting {
        inner: std::fs::File::open(&file).unwrap(),
        read: 0,
    };
    let head = read_head(&mut reader).unwrap();
    assert!(
        reader.read <= FIRST_HEAD_BYTES,
        "read {} bytes",
        reader.read
    );
    let secrets = embargo::seal::SecretSource::Keys(vec![d.team.a.clone()]);
    let public = newcomer.clone().strip_secret_key_material();
    let added = keys_to_add(&head, &secrets, &public).unwrap().unwrap();
    let mut shared = before.clone();
    shared.splice(added.offset as usize..added.offset as usize, added.keys);
    assert_only_session_keys_added(&file, &before, &shared);
    // The command, through the store, never holding the attachment.
    let cert = site.path().join("newcomer.asc");
    std::fs::write(&cert, armored_public(&newcomer)).unwrap();
    let mut share = site.embargo();
    share
        .args(["case", "share", report.as_str(), "--cert"])
        .arg(&cert)
        .arg("-c")
        .arg(site.config_path())
        .arg("--key")
        .arg(&d.key_a);
    let (out, peak) = run_measured(&share);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("shared 2 part(s) of 1 report(s)"), "{said}");
    assert!(
        peak * 1024 < big.len() as i64,
        "case share held {peak} KiB: it loaded the attachment"
    );
    let after = std::fs::read(&file).unwrap();
    assert_only_session_keys_added(&file, &before, &after);
    let leftovers: Vec<_> = std::fs::read_dir(file.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // The newcomer's key alone opens it, every byte checked against the manifest.
    let key = site.path().join("newcomer-secret.asc");
    std::fs::write(&key, common::armored_secret(&newcomer)).unwrap();
    let revealed = site.path().join("revealed");
    std::fs::create_dir(&revealed).unwrap();
    let out = site
        .embargo()
        .args(["decrypt", report.as_str(), "--out"])
        .arg(&revealed)
        .arg("-c")
        .arg(site.config_path())
        .arg("--key")
        .arg(&key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let opened = std::fs::read(revealed.join(report.as_str()).join("big.bin")).unwrap();
    assert!(opened == big, "the attachment changed");
}

#[test]
fn session_keys_longer_than_the_first_read_are_read_on_up_to_a_bound() {
    use embargo::seal::share::{
        FIRST_HEAD_BYTES, MAX_HEAD_BYTES, ShareError, body_offset, keys_to_add, read_head,
    };
    let t = team();
    let file = t.site.reports_dir().join(t.report.as_str()).join("001.pgp");
    let part = std::fs::read(file).unwrap();
    let at = body_offset(&part).unwrap();
    // The part with its session keys repeated until they fill `len` bytes.
    let padded = |len: usize| {
        let mut out = part[..at].repeat(len / at + 1);
        out.extend_from_slice(&part[at..]);
        out
    };
    let secrets = embargo::seal::SecretSource::Keys(vec![t.a.clone()]);
    let newcomer = sequoia_key("Newcomer <n@example.org>").strip_secret_key_material();
    let long = padded(FIRST_HEAD_BYTES * 3);
    let mut reader = Counting {
        inner: std::io::Cursor::new(&long),
        read: 0,
    };
    let head = read_head(&mut reader).unwrap();
    assert!(head.len() > FIRST_HEAD_BYTES * 3 && reader.read <= MAX_HEAD_BYTES);
    let added = keys_to_add(&head, &secrets, &newcomer).unwrap().unwrap();
    assert_eq!(added.offset as usize, body_offset(&long).unwrap());
    // Beyond the bound, the part is refused after reading the bound only.
    let too_long = padded(MAX_HEAD_BYTES);
    let mut reader = Counting {
        inner: std::io::Cursor::new(&too_long),
        read: 0,
    };
    assert!(matches!(read_head(&mut reader), Err(ShareError::Shape(_))));
    assert_eq!(reader.read, MAX_HEAD_BYTES);
}

/// Runs `cmd` to its end from a small python3 process: its output, and
/// the peak resident set size of `cmd`'s process, in KiB. (Measured from
/// this test process, the peak would include this process's own memory,
/// which a child shares until it execs.)
fn run_measured(cmd: &std::process::Command) -> (std::process::Output, i64) {
    const WRAPPER: &str = "import resource, subprocess, sys\n\
        code = subprocess.run(sys.argv[1:]).returncode\n\
        print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n\
        sys.exit(code)\n";
    let mut wrapped = std::process::Command::new("python3");
    wrapped
        .args(["-c", WRAPPER])
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .current_dir(cmd.get_current_dir().unwrap_or(std::path::Path::new(".")))
        .stdin(std::process::Stdio::null());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => wrapped.env(k, v),
            None => wrapped.env_remove(k),
        };
    }
    let out = wrapped.output().expect("python3 must be installed");
    let peak = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    (out, peak)
}
