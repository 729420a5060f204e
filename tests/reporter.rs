//! The reporter channel (DESIGN §11) through the real server and CLI: a
//! reply code from the API, replies read with it, a follow-up with a file
//! sent with it, and everything a wrong, malformed, oversized or orphaned
//! code gets. The code must never reach the disk, the log (at trace
//! level), the receipt or the manifest; the server's own state must not
//! open a reply; and an internal note never reaches the reporter.

mod common;
#[path = "common/server.rs"]
mod server;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{Site, armored_public, armored_secret, sequoia_key};
use sequoia_openpgp as openpgp;

struct Intake {
    site: Site,
    work: tempfile::TempDir,
    token_file: PathBuf,
    server: server::Server,
    a: PathBuf,
    b: PathBuf,
}

fn intake() -> Intake {
    let site = Site::new();
    let work = tempfile::tempdir().unwrap();
    let (a, b) = (
        sequoia_key("Maintainer A <a@example.org>"),
        sequoia_key("Maintainer B <b@example.org>"),
    );
    site.add_key("a.asc", &armored_public(&a));
    site.add_key("b.asc", &armored_public(&b));
    let token_file = work.path().join("token");
    let entry = site.maintainer_token(&token_file);
    site.write_config(&format!(
        "listen = \"127.0.0.1:0\"\n[maintainers]\ntoken_sha256 = [{entry}]\n"
    ));
    let server = server::Server::start_with_env(&site, &[("EMBARGO_LOG", "trace")]);
    let key = |name: &str, cert: &openpgp::Cert| {
        let path = work.path().join(format!("{name}.asc"));
        std::fs::write(&path, armored_secret(cert)).unwrap();
        path
    };
    Intake {
        a: key("a", &a),
        b: key("b", &b),
        site,
        work,
        token_file,
        server,
    }
}

impl Intake {
    fn run(&self, args: &[&str], stdin: &[u8]) -> Output {
        run_embargo(&self.site, args, stdin)
    }

    fn store(&self, who: &str) -> String {
        self.work.path().join(who).display().to_string()
    }

    fn key(&self, who: &str) -> String {
        if who == "a" { &self.a } else { &self.b }
            .display()
            .to_string()
    }

    fn fetch(&self, who: &str) {
        let token = self.token_file.display().to_string();
        let out = self.run(
            &[
                "fetch",
                "--from",
                &self.server.base,
                "--token-file",
                &token,
                "--store",
                &self.store(who),
            ],
            b"",
        );
        assert!(
            out.status.success(),
            "fetch: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `embargo case ACTION ID` by `who` through the intake; stdin is the message.
    fn case(&self, who: &str, action: &str, id: &str, stdin: &[u8]) -> String {
        let (store, key) = (self.store(who), self.key(who));
        let token = self.token_file.display().to_string();
        let args = [
            "case",
            action,
            id,
            "--store",
            &store,
            "--key",
            &key,
            "--intake",
            &self.server.base,
            "--token-file",
            &token,
        ];
        let out = self.run(&args, stdin);
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "case {action}: {said}");
        said
    }

    fn submit(&self, file: &[u8]) -> serde_json::Value {
        let form = reqwest::blocking::multipart::Form::new()
            .text(
                "report",
                r#"{"report":{"title":"Heap overflow in the parser","description":"CANARY-REPORT-TEXT overflow"}}"#,
            )
            .part(
                "attachment",
                reqwest::blocking::multipart::Part::bytes(file.to_vec()).file_name("poc.bin"),
            );
        let answer = server::client()
            .post(self.server.url("/api/v1/reports"))
            .multipart(form)
            .send()
            .unwrap();
        assert_eq!(answer.status().as_u16(), 201);
        answer.json().unwrap()
    }

    fn status(&self, body: &str) -> (u16, String) {
        let answer = server::client()
            .post(self.server.url("/api/v1/status"))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .unwrap();
        (answer.status().as_u16(), answer.text().unwrap())
    }

    fn status_of(&self, code: &str) -> serde_json::Value {
        let (status, body) = self.status(&serde_json::json!({ "code": code }).to_string());
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }
}

/// `embargo ARGS` for `site`, with `stdin`, its output collected.
fn run_embargo(site: &Site, args: &[&str], stdin: &[u8]) -> Output {
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

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                todo.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_reporter_and_two_maintainers_hold_a_conversation_through_the_api() {
    let t = intake();
    let poc = b"CANARY-POC-BYTES \x00\x01\x02 exploit".to_vec();
    let accepted = t.submit(&poc);
    let id = accepted["id"].as_str().unwrap().to_owned();
    let code = accepted["reply_code"]
        .as_str()
        .expect("a reply code")
        .to_owned();
    assert_eq!(code.len(), 34, "seven groups of four: {code}");
    let receipt = accepted["receipt"].as_str().unwrap();
    // The receipt proves what was delivered: the plaintext hashes.
    use sha2::Digest;
    assert!(
        receipt.contains(&hex::encode(sha2::Sha256::digest(&poc))),
        "{receipt}"
    );
    assert!(receipt.contains(&hex::encode(sha2::Sha256::digest(
        b"CANARY-REPORT-TEXT overflow"
    ))));
    assert!(!receipt.contains(&code) && !receipt.contains(&code.replace('-', "")));

    // The reporter sees the intake's record and the open promises.
    let first = t.status_of(&code);
    assert_eq!(first["report"], id.as_str());
    let kinds: Vec<&str> = first["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["received"]);
    assert_eq!(first["receipt"].as_str().unwrap(), receipt);
    let open: Vec<&str> = first["open"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["what"].as_str().unwrap())
        .collect();
    assert!(open.contains(&"acknowledge"), "{open:?}");
    // Typed by a person: case, spaces and look-alikes do not matter.
    let sloppy = code.to_lowercase().replace('-', " ").replace('0', "o");
    assert_eq!(t.status_of(&sloppy)["report"], id.as_str());

    // Maintainer A replies and writes an internal note.
    t.fetch("a");
    t.case(
        "a",
        "reply",
        &id,
        b"CANARY-REPLY-FROM-A: which version did you test?",
    );
    t.case(
        "a",
        "note",
        &id,
        b"CANARY-INTERNAL-NOTE do not tell the reporter",
    );
    let seen = t.status_of(&code);
    let text = seen.to_string();
    assert!(text.contains("CANARY-REPLY-FROM-A"), "{text}");
    assert!(
        !text.contains("CANARY-INTERNAL-NOTE"),
        "a note reached the reporter"
    );
    assert!(
        !seen["open"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["what"] == "acknowledge"),
        "a reply acknowledges"
    );

    // The reporter answers with a message and a file.
    let answer_file = b"CANARY-FOLLOWUP-FILE second stage".to_vec();
    let form = reqwest::blocking::multipart::Form::new()
        .text(
            "followup",
            serde_json::json!({"code": code, "message": "CANARY-ANSWER version 2.1"}).to_string(),
        )
        .part(
            "attachment",
            reqwest::blocking::multipart::Part::bytes(answer_file.clone()).file_name("stage2.py"),
        );
    let sent = server::client()
        .post(t.server.url("/api/v1/status/messages"))
        .multipart(form)
        .send()
        .unwrap();
    assert_eq!(sent.status().as_u16(), 201);
    let sent: serde_json::Value = sent.json().unwrap();
    assert_eq!(sent["files"][0]["size"], answer_file.len());
    assert!(t.status_of(&code).to_string().contains("CANARY-ANSWER"));

    // Maintainer B sees the answer after fetching, and replies too.
    t.fetch("b");
    let shown = t.case("b", "show", &id, b"");
    assert!(shown.contains("CANARY-ANSWER version 2.1"), "{shown}");
    assert!(shown.contains("stage2.py"), "{shown}");
    t.case("b", "reply", &id, b"CANARY-REPLY-FROM-B: thanks, confirmed");
    let last = t.status_of(&code).to_string();
    assert!(last.contains("CANARY-REPLY-FROM-B") && last.contains("CANARY-REPLY-FROM-A"));
    // The advisory and the resolution reach the reporter too.
    let (store, key, token) = (t.store("b"), t.key("b"), t.token_file.display().to_string());
    let intake = [
        "--intake",
        t.server.base.as_str(),
        "--token-file",
        token.as_str(),
    ];
    let mut args = vec![
        "case",
        "advisory",
        &id,
        "--store",
        &store,
        "--key",
        &key,
        "--ghsa",
        "GHSA-abcd-efgh-ijkl",
        "--url",
        "https://example.org/advisory/1",
    ];
    args.extend(intake);
    assert!(t.run(&args, b"").status.success());
    let mut args = vec![
        "case", "close", &id, "--store", &store, "--key", &key, "--as", "fixed",
    ];
    args.extend(intake);
    let closed = t.run(&args, b"");
    assert!(
        closed.status.success(),
        "{}",
        String::from_utf8_lossy(&closed.stderr)
    );
    let end = t.status_of(&code);
    assert_eq!(end["stage"], "closed");
    assert_eq!(end["resolution"], "fixed");
    assert!(end.to_string().contains("https://example.org/advisory/1"));
    assert!(
        end["open"].as_array().unwrap().is_empty(),
        "a closed case owes nothing"
    );

    // The code is nowhere on disk (state, store, config) nor in the log at
    // trace level; nor in the manifest, which the maintainers can read.
    let needles = [code.clone(), code.replace('-', "")];
    for path in files_under(t.site.path()) {
        let bytes = std::fs::read(&path).unwrap();
        for n in &needles {
            assert!(
                !contains(&bytes, n.as_bytes()),
                "the code is in {}",
                path.display()
            );
        }
    }
    let log = t.server.logs.bytes();
    assert!(String::from_utf8_lossy(&log).contains("TRACE") || !log.is_empty());
    for n in &needles {
        assert!(
            !contains(&log, n.as_bytes()),
            "the code is in the server log"
        );
    }
    let source =
        embargo::seal::SecretSource::from_key_bytes(&std::fs::read(&t.a).unwrap(), None).unwrap();
    let opened = embargo::seal::Opener::new(source, None)
        .open_manifest(&t.site.store(), &id.parse().unwrap())
        .unwrap();
    assert!(
        opened
            .manifest
            .reporter
            .reply_cert
            .contains("BEGIN PGP PUBLIC KEY BLOCK")
    );
    let manifest = opened.manifest.to_json();
    assert!(!needles.iter().any(|n| contains(&manifest, n.as_bytes())));

    // With the whole server directory and no code, no reply opens: the only
    // secret key the server holds is its signing key.
    let store = t.site.store();
    let events = embargo::store::Store::events(&store, &id.parse().unwrap()).unwrap();
    let mut secret_keys = 0;
    for path in files_under(t.site.path()) {
        let bytes = std::fs::read(&path).unwrap();
        let Ok(source) = embargo::seal::SecretSource::from_key_bytes(&bytes, None) else {
            continue;
        };
        secret_keys += 1;
        let opener = embargo::seal::Opener::new(source, None);
        for e in &events {
            let mut ciphertext = Vec::new();
            std::io::Read::read_to_end(
                &mut embargo::store::Store::open_event(&store, &id.parse().unwrap(), &e.name)
                    .unwrap(),
                &mut ciphertext,
            )
            .unwrap();
            assert!(
                opener
                    .open_signed("event", &ciphertext[..], 1 << 20, &[])
                    .is_err(),
                "{} opens an event",
                path.display()
            );
        }
    }
    assert_eq!(secret_keys, 1, "only the intake signing key is secret");
}

#[test]
fn wrong_malformed_huge_and_orphaned_codes_each_get_a_clear_answer_and_store_nothing() {
    let t = intake();
    let accepted = t.submit(b"poc");
    let id = accepted["id"].as_str().unwrap().to_owned();
    let code = accepted["reply_code"].as_str().unwrap().to_owned();
    let events_before = embargo::store::Store::events(&t.site.store(), &id.parse().unwrap())
        .unwrap()
        .len();

    // A well-formed code no report has, twice: the same answer each time.
    let wrong = embargo::reply::ReplyCode::generate().display().to_string();
    let (s1, b1) = t.status(&serde_json::json!({ "code": wrong }).to_string());
    let other = embargo::reply::ReplyCode::generate().display().to_string();
    let (s2, b2) = t.status(&serde_json::json!({ "code": other }).to_string());
    assert_eq!((s1, &b1), (s2, &b2));
    assert_eq!(s1, 404);
    assert!(b1.contains("unknown_code"), "{b1}");

    // A typo is caught by the check character, before any lookup.
    let mut typo: Vec<char> = code.chars().collect();
    typo[0] = if typo[0] == 'A' { 'B' } else { 'A' };
    let (s, b) =
        t.status(&serde_json::json!({ "code": typo.iter().collect::<String>() }).to_string());
    assert_eq!(s, 400, "{b}");
    assert!(b.contains("invalid_code") && b.contains("typo"), "{b}");
    let (s, b) = t.status(r#"{"code": "not a code at all"}"#);
    assert_eq!(s, 400, "{b}");
    let (s, _) = t.status(r#"{"code": 5}"#);
    assert_eq!(s, 400);
    let (s, _) = t.status(&format!("{{\"code\": \"{}\"}}", "A".repeat(10_000)));
    assert_eq!(s, 413);

    // A follow-up with a wrong code stores nothing, even with a file; nor
    // does a file sent before the code, or a follow-up without a message.
    let follow_up = |code: &str, message: &str, file_first: bool| -> u16 {
        use reqwest::blocking::multipart::{Form, Part};
        let json = serde_json::json!({ "code": code, "message": message }).to_string();
        let file = Part::bytes(vec![7; 1000]).file_name("x");
        let form = if file_first {
            Form::new().part("attachment", file).text("followup", json)
        } else {
            Form::new().text("followup", json).part("attachment", file)
        };
        server::client()
            .post(t.server.url("/api/v1/status/messages"))
            .multipart(form)
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(follow_up(&wrong, "hi", false), 404);
    assert_eq!(follow_up(&code, "hi", true), 400);
    assert_eq!(follow_up(&code, "  ", false), 400);
    // A message no event can hold is refused before any file is sealed,
    // with the reason and none of the text: a NUL byte (through either
    // route), or control characters that would outgrow the event once
    // escaped, within the byte limit (the page's, as the API's JSON part
    // is too short for that).
    assert_eq!(follow_up(&code, "CANARY\0MESSAGE", false), 400);
    let controls = "\u{1}".repeat(30_000);
    for message in ["CANARY\0MESSAGE", controls.as_str()] {
        use reqwest::blocking::multipart::{Form, Part};
        let form = Form::new()
            .text("code", code.clone())
            .text("message", message.to_owned())
            .part("attachment", Part::bytes(vec![7; 1000]).file_name("x"));
        let page = server::client()
            .post(t.server.url("/status/messages"))
            .multipart(form)
            .send()
            .unwrap();
        assert_eq!(page.status().as_u16(), 400);
        let text = page.text().unwrap();
        assert!(text.contains("send such text as a file"), "{text}");
        assert!(!text.contains("CANARY") && !text.contains('\u{1}'));
    }
    let store = t.site.store();
    let rid = id.parse().unwrap();
    assert_eq!(
        embargo::store::Store::events(&store, &rid).unwrap().len(),
        events_before
    );
    assert!(
        embargo::store::Store::files(&store, &rid)
            .unwrap()
            .is_empty()
    );

    // The code of a deleted report looks exactly like a wrong one.
    embargo::store::Store::remove(&store, &rid).unwrap();
    let (s, b) = t.status(&serde_json::json!({ "code": code }).to_string());
    assert_eq!((s, b), (s1, b1));
}

#[test]
fn code_attempts_are_limited_per_peer() {
    let t = intake();
    let mut last = 0;
    for _ in 0..embargo::intake::state::CODE_ATTEMPTS + 1 {
        let wrong = embargo::reply::ReplyCode::generate().display().to_string();
        last = t
            .status(&serde_json::json!({ "code": wrong }).to_string())
            .0;
    }
    assert_eq!(last, 429);
}

/// The reply code from an acknowledgement mail's text.
fn code_in(mail: &str) -> String {
    // Mail bodies may be quoted-printable or wrapped: take the line after
    // the announcement.
    let mut lines = mail.lines().skip_while(|l| !l.contains("Your reply code"));
    lines.next();
    lines
        .map(str::trim)
        .find(|l| !l.is_empty())
        .expect("a code line")
        .to_owned()
}

#[test]
fn an_email_reporter_and_a_web_reporter_get_their_code_by_mail_and_are_told_of_replies() {
    use common::dovecot::Dovecot;
    use common::smtp::SmtpSink;
    use std::time::Duration;
    let site = Site::new();
    let work = tempfile::tempdir().unwrap();
    let a = sequoia_key("Maintainer A <a@example.org>");
    site.add_key("a.asc", &armored_public(&a));
    let key_file = work.path().join("a.asc");
    std::fs::write(&key_file, armored_secret(&a)).unwrap();
    let token_file = work.path().join("token");
    let entry = site.maintainer_token(&token_file);
    let dovecot = Dovecot::start();
    let smtp = SmtpSink::start();
    site.write_config(&format!(
        "listen = \"127.0.0.1:0\"\npublic_url = \"https://security.example.org\"\n[maintainers]\ntoken_sha256 = [{entry}]\nnotify = [\"mailto:team@example.org\"]\nnotify_window = \"1s\"\n{}\n{}",
        smtp.smtp_config(),
        dovecot.mailbox_config(site.path(), "")
    ));
    let server = server::Server::start(&site);
    let mut imap = dovecot.client();
    imap.append(b"Authentication-Results: mx.example.org; spf=pass smtp.mailfrom=rita@example.org; dmarc=pass header.from=example.org\r\nFrom: Rita Reporter <rita@example.org>\r\nTo: security@example.org\r\nSubject: remote crash\r\nMessage-ID: <mail1@example.org>\r\n\r\nCANARY-MAIL-REPORT send 4 KiB of A.\r\n");
    let to = |addr: &str| -> Vec<String> {
        smtp.received()
            .into_iter()
            .filter(|m| m.rcpt_to.contains(addr))
            .map(|m| m.text)
            .collect()
    };
    common::wait_until("the acknowledgement", Duration::from_secs(30), || {
        !to("rita@example.org").is_empty()
    });
    let ack = to("rita@example.org").remove(0);
    assert!(ack.contains("https://security.example.org/status"), "{ack}");
    let code = code_in(&ack);
    let status = |code: &str| -> serde_json::Value {
        let answer = server::client()
            .post(server.url("/api/v1/status"))
            .json(&serde_json::json!({ "code": code }))
            .send()
            .unwrap();
        assert_eq!(
            answer.status().as_u16(),
            200,
            "the code from the mail works"
        );
        answer.json().unwrap()
    };
    let id = status(&code)["report"].as_str().unwrap().to_owned();

    // A maintainer replies: the reporter is told, without the reply's text.
    let store = work.path().join("a-store").display().to_string();
    let token = token_file.display().to_string();
    let run = |args: &[&str], stdin: &[u8]| {
        let out = run_embargo(&site, args, stdin);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    run(
        &[
            "fetch",
            "--from",
            &server.base,
            "--token-file",
            &token,
            "--store",
            &store,
        ],
        b"",
    );
    let key = key_file.display().to_string();
    let said = run(
        &[
            "case",
            "reply",
            &id,
            "--store",
            &store,
            "--key",
            &key,
            "--intake",
            &server.base,
            "--token-file",
            &token,
        ],
        b"CANARY-MAIL-REPLY please send the crash log",
    );
    assert!(said.contains("was mailed"), "{said}");
    common::wait_until("the new-reply notice", Duration::from_secs(30), || {
        to("rita@example.org").len() >= 2
    });
    let notice = to("rita@example.org")
        .into_iter()
        .find(|m| m.contains("There is a new reply"))
        .expect("a new-reply notice");
    assert!(
        !notice.contains("CANARY-MAIL-REPLY") && !notice.contains(&code),
        "{notice}"
    );
    assert!(status(&code).to_string().contains("CANARY-MAIL-REPLY"));
    // The reporter answers; the maintainers are told, without the text.
    let form = reqwest::blocking::multipart::Form::new().text(
        "followup",
        serde_json::json!({"code": code, "message": "CANARY-MAIL-ANSWER the log"}).to_string(),
    );
    let sent = server::client()
        .post(server.url("/api/v1/status/messages"))
        .multipart(form)
        .send()
        .unwrap();
    assert_eq!(sent.status().as_u16(), 201);
    common::wait_until("the maintainers' notice", Duration::from_secs(30), || {
        to("team@example.org")
            .iter()
            .any(|m| m.contains("new message from reporters"))
    });
    for notice in to("team@example.org") {
        assert!(
            !notice.contains("CANARY-MAIL") && !notice.contains(&id),
            "{notice}"
        );
    }
    // A note is not a reason to mail the reporter.
    let said = run(
        &[
            "case",
            "note",
            &id,
            "--store",
            &store,
            "--key",
            &key,
            "--intake",
            &server.base,
            "--token-file",
            &token,
        ],
        b"internal",
    );
    assert!(!said.contains("mailed"), "{said}");

    // A web reporter who left an address gets the acknowledgement with the
    // code too.
    let form = reqwest::blocking::multipart::Form::new().text(
        "report",
        r#"{"report":{"title":"XSS in search","description":"d"},"reporter":{"email":"wanda@example.org"}}"#,
    );
    let accepted: serde_json::Value = server::client()
        .post(server.url("/api/v1/reports"))
        .multipart(form)
        .send()
        .unwrap()
        .json()
        .unwrap();
    common::wait_until("the web acknowledgement", Duration::from_secs(30), || {
        !to("wanda@example.org").is_empty()
    });
    let web_ack = to("wanda@example.org").remove(0);
    assert_eq!(code_in(&web_ack), accepted["reply_code"].as_str().unwrap());
    assert!(web_ack.contains(accepted["id"].as_str().unwrap()));
    assert!(
        !web_ack.contains("XSS in search"),
        "the acknowledgement quotes the report"
    );
}

#[test]
fn embargo_seal_prints_a_working_code_once_and_other_sites_cannot_use_the_status_page() {
    let t = intake();
    let report = t.work.path().join("report.json");
    std::fs::write(
        &report,
        br#"{"report":{"title":"Sealed by hand","description":"forwarded from a phone call"}}"#,
    )
    .unwrap();
    let config = t.site.config_path().display().to_string();
    let out = t.run(
        &[
            "seal",
            "-c",
            &config,
            "--report",
            &report.display().to_string(),
        ],
        b"",
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "{stderr}");
    let id = stdout.trim();
    assert!(
        !stdout.contains("reply code"),
        "stdout stays the ID alone: {stdout}"
    );
    let code = stderr
        .rsplit(": ")
        .next()
        .map(str::trim)
        .expect("the code on stderr");
    assert_eq!(code.len(), 34, "{stderr}");
    assert_eq!(t.status_of(code)["report"], id);

    // The page carries the form's security headers, and a post from
    // another site is refused before anything is derived.
    let page = server::client()
        .get(t.server.url("/status"))
        .send()
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("script-src"),
        "{csp}"
    );
    assert_eq!(page.headers()["cache-control"], "no-store");
    let cross = server::client()
        .post(t.server.url("/status"))
        .header("sec-fetch-site", "cross-site")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("code={code}"))
        .send()
        .unwrap();
    assert_eq!(cross.status().as_u16(), 403);
    let same = server::client()
        .post(t.server.url("/status"))
        .header("sec-fetch-site", "same-origin")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("code={code}"))
        .send()
        .unwrap();
    assert_eq!(same.status().as_u16(), 200);
    assert_eq!(same.headers()["cache-control"], "no-store");
    assert!(same.text().unwrap().contains(id));
}
