//! The case status the intake may read: case commands given an intake send
//! their events and a signed status at once; the intake stores a status
//! only when a maintainer signed it and it names every event it holds;
//! `/metrics` counts cases by state and overdue obligations from it; and
//! retention deletes a case only once its status says closed.

mod common;
#[path = "common/server.rs"]
mod server;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use embargo::case::status::{CaseStatus, read_stored};
use embargo::case::{Author, Stage};
use embargo::id::ReportId;

use common::{Site, armored_public, armored_secret, seal_report, sequoia_key, wait_until};
use sequoia_openpgp as openpgp;

/// An intake with maintainers A and B, one sealed report, a token, and a
/// running server.
struct Intake {
    site: Site,
    report: ReportId,
    work: tempfile::TempDir,
    token_file: PathBuf,
    token: String,
    server: server::Server,
    a: PathBuf,
    b: PathBuf,
}

fn intake(extra_config: &str) -> Intake {
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
    // The policy is sealed at intake: write it before the report arrives.
    site.write_config(&format!(
        "listen = \"127.0.0.1:0\"\n[maintainers]\ntoken_sha256 = [{entry}]\n{extra_config}"
    ));
    let report = seal_report(&site, &[("poc.txt", b"CANARY-STATUS-REPORT")]);
    let server = server::Server::start(&site);
    let key = |name: &str, cert: &openpgp::Cert| {
        let path = work.path().join(format!("{name}.asc"));
        std::fs::write(&path, armored_secret(cert)).unwrap();
        path
    };
    let token = std::fs::read_to_string(&token_file)
        .unwrap()
        .trim()
        .to_string();
    Intake {
        a: key("a", &a),
        b: key("b", &b),
        site,
        report,
        token_file,
        token,
        server,
        work,
    }
}

impl Intake {
    fn run(&self, args: &[&str], stdin: &[u8]) -> Output {
        use std::io::Write;
        let mut child = self
            .site
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

    fn store(&self, who: &str) -> PathBuf {
        self.work.path().join(who)
    }

    fn key(&self, who: &str) -> &Path {
        if who == "a" { &self.a } else { &self.b }
    }

    fn fetch(&self, who: &str) -> String {
        let (store, token) = (self.store(who), self.token_file.display().to_string());
        let out = self.run(
            &[
                "fetch",
                "--from",
                &self.server.base,
                "--token-file",
                &token,
                "--store",
                &store.display().to_string(),
            ],
            b"",
        );
        let said = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "fetch: {said}");
        said
    }

    /// `embargo case ACTION` by `who`, sent to `intake` when given.
    fn case(&self, who: &str, action: &str, intake: Option<&str>, extra: &[&str]) -> String {
        let store = self.store(who).display().to_string();
        let key = self.key(who).display().to_string();
        let token = self.token_file.display().to_string();
        let id = self.report.to_string();
        let mut args = vec!["case", action, &id, "--store", &store, "--key", &key];
        if let Some(url) = intake {
            args.extend(["--intake", url, "--token-file", &token]);
        }
        args.extend_from_slice(extra);
        let out = self.run(&args, b"CANARY-STATUS-NOTE a private note");
        let said = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "case {action}: {said}");
        said
    }

    fn server_status(&self) -> Option<CaseStatus> {
        let path = self
            .site
            .reports_dir()
            .join(self.report.as_str())
            .join("status.pgp");
        let bytes = std::fs::read(path).ok()?;
        read_stored(&bytes, &self.report)
    }

    fn server_events(&self) -> usize {
        std::fs::read_dir(
            self.site
                .reports_dir()
                .join(self.report.as_str())
                .join("events"),
        )
        .map(|d| d.count())
        .unwrap_or(0)
    }

    fn metrics(&self) -> String {
        server::client()
            .get(self.server.url("/metrics"))
            .bearer_auth(&self.token)
            .send()
            .unwrap()
            .text()
            .unwrap()
    }

    fn put_status(&self, body: Vec<u8>) -> (u16, String) {
        let answer = server::client()
            .put(
                self.server
                    .url(&format!("/api/v1/sealed/{}/status", self.report)),
            )
            .bearer_auth(&self.token)
            .body(body)
            .send()
            .unwrap();
        let status = answer.status().as_u16();
        let json: serde_json::Value = answer.json().unwrap_or_default();
        (
            status,
            json["error"]["code"].as_str().unwrap_or("").to_string(),
        )
    }
}

fn gauge(metrics: &str, series: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{metrics}"))
}

#[test]
fn case_commands_send_their_status_at_once_and_only_a_closed_case_is_deleted() {
    let t = intake(
        "[policy]\nacknowledge_within = \"1s\"\n[retention]\ndelete_after_fetch = true\ninterval = \"1s\"\n",
    );
    let base = t.server.base.clone();
    // A fetches (and confirms every part); the open case stays all the same.
    t.fetch("a");
    // The intake's promises are saved beside the store for `list` and `case`.
    let saved = embargo::reveal::saved_policy(&t.store("a")).expect("a saved policy");
    assert_eq!(saved.acknowledge_within.0, Duration::from_secs(1));
    std::thread::sleep(Duration::from_millis(2500));
    assert!(t.site.reports_dir().join(t.report.as_str()).is_dir());
    let m = t.metrics();
    assert_eq!(gauge(&m, "embargo_cases{state=\"new\"}"), 1);
    assert_eq!(
        gauge(
            &m,
            "embargo_obligations_overdue{obligation=\"acknowledge\"}"
        ),
        1,
        "the 1 s acknowledgement promise is missed"
    );
    assert!(!m.contains(t.report.as_str()), "no IDs in metrics");

    // With --intake, the event and the status reach the intake at once.
    t.case("a", "ack", Some(&base), &[]);
    assert_eq!(t.server_events(), 1);
    let status = t.server_status().expect("a status on the intake");
    assert_eq!(status.state, Stage::Acknowledged);
    assert!(status.due.acknowledge.is_none());
    let m = t.metrics();
    assert_eq!(gauge(&m, "embargo_cases{state=\"acknowledged\"}"), 1);
    assert_eq!(gauge(&m, "embargo_cases{state=\"new\"}"), 0);
    assert_eq!(
        gauge(
            &m,
            "embargo_obligations_overdue{obligation=\"acknowledge\"}"
        ),
        0
    );
    let acknowledged = std::fs::read(
        t.site
            .reports_dir()
            .join(t.report.as_str())
            .join("status.pgp"),
    )
    .unwrap();

    // A status signed by someone who is not a maintainer is refused.
    let stranger = sequoia_key("Not A Maintainer <x@example.org>");
    let mut forged = status.clone();
    forged.state = Stage::Closed;
    forged.at = embargo::clock::rfc3339_micros(std::time::SystemTime::now());
    let forged = forged.sign(&Author::Key(Box::new(stranger))).unwrap();
    assert_eq!(t.put_status(forged), (400, "invalid_status".into()));
    assert_eq!(t.put_status(b"garbage".to_vec()).0, 400);
    assert_eq!(
        t.put_status(vec![0xa3; 65 * 1024]),
        (413, "status_too_large".into())
    );

    // A note later, the acknowledged status replayed is stale.
    t.case("a", "note", Some(&base), &["--message", "-"]);
    assert_eq!(t.server_events(), 2);
    assert_eq!(t.put_status(acknowledged), (409, "stale_status".into()));
    assert_eq!(t.server_status().unwrap().events.len(), 2);
    assert!(t.site.reports_dir().join(t.report.as_str()).is_dir());

    // Closed: retention (delete_after_fetch, fetched earlier) deletes it whole.
    t.case("a", "close", Some(&base), &["--as", "fixed"]);
    assert_eq!(t.server_status().unwrap().state, Stage::Closed);
    wait_until(
        "retention deletes the closed case",
        Duration::from_secs(20),
        || !t.site.reports_dir().join(t.report.as_str()).exists(),
    );
    // The maintainer's copy stays, and nothing anywhere holds plaintext.
    assert!(
        t.store("a")
            .join("reports")
            .join(t.report.as_str())
            .is_dir()
    );
    for root in [t.site.path(), t.work.path()] {
        assert!(common::files_containing(root, b"CANARY-STATUS").is_empty());
    }
}

#[test]
fn events_written_away_from_the_intake_reach_it_later_and_case_sync_catches_up() {
    let t = intake("");
    let base = t.server.base.clone();
    t.fetch("a");
    t.fetch("b");
    // An unknown ID is refused before anything is sent, whatever the intake.
    let (store, key) = (
        t.store("a").display().to_string(),
        t.a.display().to_string(),
    );
    let token = t.token_file.display().to_string();
    let unknown = ReportId::random().to_string();
    let out = t.run(
        &[
            "case",
            "ack",
            &unknown,
            "--store",
            &store,
            "--key",
            &key,
            "--intake",
            "http://127.0.0.1:9",
            "--token-file",
            &token,
        ],
        b"",
    );
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(!said.contains("could not exchange"), "{said}");
    // The intake cannot be reached: the event is recorded locally all the same.
    let said = t.case("a", "ack", Some("http://127.0.0.1:9"), &[]);
    assert!(said.contains("could not exchange"), "{said}");
    assert!(said.contains("recorded acknowledged"), "{said}");
    assert_eq!(t.server_events(), 0);
    let said = t.fetch("a");
    assert!(said.contains("1 sent to it"), "{said}");
    assert!(said.contains("case statuses: 1 sent"), "{said}");
    assert_eq!(t.server_status().unwrap().state, Stage::Acknowledged);

    // B, offline, assessed before seeing A's event: B's status misses it.
    t.case("b", "assess", None, &["--severity", "high"]);
    let said = t.fetch("b");
    assert!(said.contains("embargo case sync"), "{said}");
    assert_eq!(t.server_status().unwrap().events.len(), 1);
    // `case sync` computes it again from both events and sends it.
    let token = t.token_file.display().to_string();
    let store = t.store("b").display().to_string();
    let key = t.b.display().to_string();
    let out = t.run(
        &[
            "case",
            "sync",
            "--store",
            &store,
            "--key",
            &key,
            "--intake",
            &base,
            "--token-file",
            &token,
        ],
        b"",
    );
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("1 case status(es) computed again and sent"),
        "{said}"
    );
    let status = t.server_status().unwrap();
    assert_eq!(status.state, Stage::Assessed);
    assert_eq!(status.events.len(), 2);
    // Nothing left to do: a second sync changes nothing.
    let again = t.run(
        &[
            "case",
            "sync",
            "--store",
            &store,
            "--key",
            &key,
            "--intake",
            &base,
            "--token-file",
            &token,
        ],
        b"",
    );
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("0 case status(es)"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let m = t.metrics();
    assert_eq!(gauge(&m, "embargo_cases{state=\"assessed\"}"), 1);
}

#[test]
fn case_events_are_announced_content_free_only_when_configured() {
    for announce in [true, false] {
        let hook = common::webhook::Receiver::start(0);
        let t = intake(&format!(
            "notify = [\"{}\"]\nnotify_window = \"1s\"\nnotify_case_events = {announce}\n",
            hook.url("/hook")
        ));
        let base = t.server.base.clone();
        t.fetch("a");
        t.case("a", "note", Some(&base), &["--message", "-"]);
        t.case("a", "ack", Some(&base), &[]);
        let events = || {
            hook.hits()
                .into_iter()
                .filter(|h| h.body.contains("case-events"))
                .collect::<Vec<_>>()
        };
        if announce {
            // Both events are announced (in one notice, or two when the
            // window closed between them), by count only.
            let counted = || {
                events()
                    .iter()
                    .map(|h| {
                        let body: serde_json::Value = serde_json::from_str(&h.body).unwrap();
                        body["count"].as_u64().unwrap()
                    })
                    .sum::<u64>()
            };
            wait_until(
                "both case events announced",
                Duration::from_secs(20),
                || counted() == 2,
            );
            for hit in events() {
                assert!(!hit.body.contains(t.report.as_str()), "no ID: {}", hit.body);
                assert!(!hit.body.contains("CANARY"), "no content: {}", hit.body);
            }
        } else {
            // Longer than the window: nothing about events arrives.
            std::thread::sleep(Duration::from_secs(3));
            assert!(events().is_empty(), "off by default");
        }
    }
}

/// The whole case as the issue tells it: maintainer A with a gpg-made key
/// file (`--key`), maintainer B through a real gpg-agent (`--gpg`), one real
/// `embargo serve`; every action sent at once with `--intake`.
#[test]
fn a_whole_case_by_a_key_file_and_a_gpg_agent_through_one_real_intake() {
    use common::{Gpg, GpgKeyType};
    let site = Site::new();
    let work = tempfile::tempdir().unwrap();
    let (gpg_a, gpg_b) = (Gpg::new(), Gpg::new());
    let fa = gpg_a.gen_key(
        "Maintainer A <a@example.org>",
        GpgKeyType::Cv25519,
        "pass-a",
        "0",
    );
    let fb = gpg_b.gen_key("Maintainer B <b@example.org>", GpgKeyType::Rsa4096, "", "0");
    site.add_key("a.asc", &gpg_a.export_public(&fa));
    site.add_key("b.asc", &gpg_b.export_public(&fb));
    let key_a = work.path().join("a-secret.asc");
    std::fs::write(&key_a, gpg_a.export_secret(&fa, "pass-a")).unwrap();
    let pass_a = work.path().join("a-pass");
    std::fs::write(&pass_a, "pass-a\n").unwrap();
    let token_file = work.path().join("token");
    let entry = site.maintainer_token(&token_file);
    site.write_config(&format!(
        "listen = \"127.0.0.1:0\"\n[maintainers]\ntoken_sha256 = [{entry}]\n"
    ));
    let report = seal_report(&site, &[("poc.txt", b"CANARY-FLOW exploit")]);
    let server = server::Server::start(&site);
    let id = report.to_string();
    let token = token_file.display().to_string();
    let stores = [work.path().join("a"), work.path().join("b")];
    // Who runs it: A (0) with the key file, B (1) with gpg-agent.
    let run = |who: usize, args: &[&str], stdin: &[u8]| -> Vec<u8> {
        use std::io::Write;
        let mut cmd = site.embargo();
        cmd.args(args).arg("--store").arg(&stores[who]);
        if args[0] == "case" {
            cmd.args(["--intake", &server.base, "--token-file", &token]);
            if who == 0 {
                cmd.arg("--key")
                    .arg(&key_a)
                    .arg("--passphrase-file")
                    .arg(&pass_a);
            } else {
                cmd.arg("--gpg").env("GNUPGHOME", gpg_b.home.path());
            }
        } else {
            cmd.args(["--from", &server.base, "--token-file", &token]);
        }
        let mut child = cmd
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{who} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    run(0, &["fetch"], b"");
    run(1, &["fetch"], b"");
    run(0, &["case", "ack", &id], b"");
    run(
        0,
        &[
            "case",
            "assess",
            &id,
            "--severity",
            "high",
            "--cwe",
            "CWE-78",
        ],
        b"",
    );
    run(
        1,
        &["case", "reply", &id, "--message", "-"],
        b"CANARY-FLOW thanks, confirmed",
    );
    run(
        1,
        &["case", "fix", &id, "--version", "1.4.2", "--released"],
        b"",
    );
    run(0, &["case", "close", &id, "--as", "fixed"], b"");
    run(0, &["fetch"], b"");
    run(1, &["fetch"], b"");
    let timeline = |who: usize| -> serde_json::Value {
        let mut shown: serde_json::Value =
            serde_json::from_slice(&run(who, &["case", "show", &id, "--json"], b"")).unwrap();
        shown.as_object_mut().unwrap().remove("due");
        shown
    };
    let (seen_a, seen_b) = (timeline(0), timeline(1));
    assert_eq!(seen_a, seen_b, "both see the same case");
    let events = seen_a["events"].as_array().unwrap();
    let who_did: Vec<(&str, &str)> = events
        .iter()
        .map(|e| {
            assert_eq!(e["verified"], true, "{e}");
            (
                e["event"]["kind"].as_str().unwrap(),
                e["event"]["author"].as_str().unwrap(),
            )
        })
        .collect();
    let (fa, fb) = (fa.as_str(), fb.as_str());
    assert_eq!(
        who_did,
        [
            ("acknowledged", fa),
            ("assessed", fa),
            ("reply", fb),
            ("fix", fb),
            ("closed", fa)
        ]
    );
    assert_eq!(seen_a["state"], "closed");
    // The intake holds the five events and the closed status, as ciphertext
    // and a signed statement; no message or report text anywhere.
    let dir = site.reports_dir().join(report.as_str());
    assert_eq!(std::fs::read_dir(dir.join("events")).unwrap().count(), 5);
    let status = read_stored(&std::fs::read(dir.join("status.pgp")).unwrap(), &report).unwrap();
    assert_eq!(status.state, Stage::Closed);
    for root in [site.path(), work.path()] {
        assert!(common::files_containing(root, b"CANARY-FLOW").is_empty());
    }
}
