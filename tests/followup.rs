//! A reporter's follow-up on the maintainers' side: the files the intake
//! stored beside the report reach a maintainer's store through a real
//! `embargo serve` and `embargo fetch`, `case show` and `list` say that a
//! reply is waiting, `case files` writes exactly the files the reporter
//! sent (and refuses a damaged one without writing anything), and a reply
//! ends the wait.

mod common;
#[path = "common/server.rs"]
mod server;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use embargo::config::MessageFormat;
use embargo::id::ReportId;
use embargo::keys::IntakeSecrets;
use embargo::reply::followup::FollowUp;
use embargo::store::Store;

use common::{Site, armored_public, armored_secret, random_bytes, seal_report, sequoia_key};
use sequoia_openpgp as openpgp;

/// More than the decryptor holds back (1 MiB): its first bytes leave the
/// decryptor before the integrity check at its end can fail.
const LARGE: usize = 3 * 1024 * 1024 + 17;

/// An intake with maintainers, one report and a follow-up on it.
struct Intake {
    site: Site,
    maintainers: Vec<openpgp::Cert>,
    report: ReportId,
    /// What the reporter sent: (name as given, bytes).
    files: Vec<(String, Vec<u8>)>,
    /// The `reporter-message` event, as recorded.
    event: String,
}

/// The intake, with maintainers named `names` (`a` is `Maintainer A <a@example.org>`).
fn intake_with_follow_up(names: &[&str]) -> Intake {
    let site = Site::new();
    let maintainers: Vec<openpgp::Cert> = names
        .iter()
        .map(|n| {
            let cert = sequoia_key(&format!("Maintainer {n} <{n}@example.org>"));
            site.add_key(&format!("{n}.asc"), &armored_public(&cert));
            cert
        })
        .collect();
    let report = seal_report(&site, &[("poc.txt", b"CANARY-REPORT")]);
    let files = vec![
        (
            "exploit\u{202E}txt.py".to_string(),
            b"CANARY-FILE-ONE print('more')\n".to_vec(),
        ),
        ("../../trace.log".to_string(), random_bytes(LARGE, 7)),
    ];
    let secrets = IntakeSecrets::load_or_create(&site.state_dir(), "Test Project").unwrap();
    let recipients = common::keyring(&site).recipients().unwrap();
    let reply_cert = sequoia_key("reply").strip_secret_key_material();
    let store = site.store();
    let mut follow_up = FollowUp::begin(
        &store,
        report.clone(),
        &recipients,
        reply_cert,
        &secrets,
        MessageFormat::Compat,
        std::time::SystemTime::now(),
    );
    for (name, bytes) in &files {
        follow_up.add_file(name, &mut &bytes[..], u64::MAX).unwrap();
    }
    let event = follow_up
        .finish("CANARY-MESSAGE here is the trace you asked for".into())
        .unwrap();
    assert_eq!(store.files(&report).unwrap().len(), 2);
    Intake {
        site,
        maintainers,
        report,
        files,
        event: event.event.to_string(),
    }
}

/// A maintainer's machine: a store, a key, and the token for the intake.
struct Laptop {
    dir: tempfile::TempDir,
}

impl Laptop {
    fn new(maintainer: &openpgp::Cert) -> Laptop {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("key.asc"), armored_secret(maintainer)).unwrap();
        Laptop { dir }
    }

    fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    fn token(&self) -> PathBuf {
        self.dir.path().join("token")
    }

    /// `embargo ARGS --store STORE --key KEY` (the `--key` only where it
    /// applies), with `stdin`.
    fn run(&self, site: &Site, args: &[&str], stdin: &[u8]) -> Output {
        use std::io::Write;
        let mut cmd = site.embargo();
        cmd.args(args).arg("--store").arg(self.store());
        if args[0] != "fetch" {
            cmd.arg("--key").arg(self.dir.path().join("key.asc"));
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        child.wait_with_output().unwrap()
    }

    /// Runs and expects success; returns (stdout, stderr).
    fn ok(&self, site: &Site, args: &[&str]) -> (String, String) {
        let out = self.run(site, args, b"");
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        assert!(
            out.status.success(),
            "embargo {args:?}: {}",
            text(&out.stderr)
        );
        (text(&out.stdout), text(&out.stderr))
    }

    fn report_files(&self, report: &ReportId) -> PathBuf {
        self.store()
            .join("reports")
            .join(report.as_str())
            .join("files")
    }
}

/// The names of the entries of `dir`, sorted (none when it is missing).
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn follow_up_files_reach_the_maintainer_whole_checked_and_never_over_a_file() {
    let t = intake_with_follow_up(&["a"]);
    let laptop = Laptop::new(&t.maintainers[0]);
    let entry = t.site.maintainer_token(&laptop.token());
    t.site.write_config(&format!(
        "listen = \"127.0.0.1:0\"\n[maintainers]\ntoken_sha256 = [{entry}]\n"
    ));
    let server = server::Server::start(&t.site);
    let token = laptop.token().display().to_string();
    let fetch = ["fetch", "--from", &server.base, "--token-file", &token];

    let (_, said) = laptop.ok(&t.site, &fetch);
    assert!(
        said.contains("follow-up files: 2 from reporters fetched from the intake"),
        "{said}"
    );
    // The same ciphertext, byte for byte; a second run fetches nothing more.
    let on_intake = t.site.reports_dir().join(t.report.as_str()).join("files");
    assert_eq!(
        entries(&laptop.report_files(&t.report)),
        entries(&on_intake)
    );
    for name in entries(&on_intake) {
        assert_eq!(
            std::fs::read(laptop.report_files(&t.report).join(&name)).unwrap(),
            std::fs::read(on_intake.join(&name)).unwrap()
        );
    }
    let (_, said) = laptop.ok(&t.site, &fetch);
    assert!(!said.contains("follow-up files"), "{said}");

    let id = t.report.as_str();
    let (shown, _) = laptop.ok(&t.site, &["case", "show", id]);
    assert!(
        shown.contains(
            "reporter-message  by the reporter, through the intake  (reporter sees it)\n"
        ),
        "{shown}"
    );
    assert!(
        shown.contains("CANARY-MESSAGE here is the trace you asked for"),
        "{shown}"
    );
    assert!(
        shown.contains("      file: exploittxt.py (30 bytes)\n"),
        "{shown}"
    );
    assert!(shown.contains("      file: trace.log (3 MiB)\n"), "{shown}");
    let waiting = shown
        .lines()
        .find(|l| l.starts_with("REPLY WAITING: "))
        .unwrap_or_else(|| panic!("{shown}"));
    assert_eq!(
        waiting,
        format!(
            "REPLY WAITING: the reporter wrote on {} and no maintainer has answered yet (`embargo case reply {id}`)",
            shown_time(&shown)
        )
    );
    let (listed, _) = laptop.ok(&t.site, &["list"]);
    let row = listed.lines().find(|l| l.starts_with(id)).unwrap();
    assert!(row.contains("new REPLY WAITING"), "{listed}");
    assert!(listed.contains("1 waiting for a reply"), "{listed}");
    let (json, _) = laptop.ok(&t.site, &["list", "--json"]);
    let rows: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(rows[0]["reply_waiting"], true);

    // Exactly what the reporter sent, under safe names.
    let out = laptop.dir.path().join("out");
    let out_arg = out.display().to_string();
    let (written, said) = laptop.ok(&t.site, &["case", "files", id, "--out", &out_arg]);
    assert_eq!(
        written,
        format!(
            "{}\n{}\n",
            out.join("exploittxt.py").display(),
            out.join("trace.log").display()
        )
    );
    assert!(
        said.contains(&format!(
            "2 follow-up file(s) of report {id} written to {out_arg}: each matched the size and SHA-256"
        )),
        "{said}"
    );
    assert_eq!(entries(&out), ["exploittxt.py", "trace.log"]);
    assert_eq!(
        std::fs::read(out.join("exploittxt.py")).unwrap(),
        t.files[0].1
    );
    assert_eq!(std::fs::read(out.join("trace.log")).unwrap(), t.files[1].1);
    // Again into the same directory: nothing is replaced.
    std::fs::write(out.join("exploittxt.py"), b"the maintainer's notes").unwrap();
    let (written, _) = laptop.ok(&t.site, &["case", "files", id, "--out", &out_arg]);
    assert_eq!(
        written,
        format!(
            "{}\n{}\n",
            out.join("exploittxt-2.py").display(),
            out.join("trace-2.log").display()
        )
    );
    assert_eq!(
        std::fs::read(out.join("exploittxt.py")).unwrap(),
        b"the maintainer's notes"
    );
    assert_eq!(
        std::fs::read(out.join("trace-2.log")).unwrap(),
        t.files[1].1
    );

    // One byte flipped in the large file's ciphertext: refused, and
    // nothing at all is written (not the intact file either).
    let damaged = entries(&laptop.report_files(&t.report))
        .into_iter()
        .map(|n| laptop.report_files(&t.report).join(n))
        .find(|p| std::fs::metadata(p).unwrap().len() > LARGE as u64)
        .unwrap();
    let mut bytes = std::fs::read(&damaged).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&damaged, &bytes).unwrap();
    let name = damaged.file_name().unwrap().to_string_lossy().into_owned();
    let refused_dir = laptop.dir.path().join("refused");
    let refused_arg = refused_dir.display().to_string();
    let out = laptop.run(&t.site, &["case", "files", id, "--out", &refused_arg], b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .find(|l| l.starts_with("embargo: error: "))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert_eq!(
        line,
        format!(
            "embargo: error: follow-up file files/{name} of report {id} (reporter message {}) is damaged or was tampered with (the modification detection code does not match: the data was tampered with), so nothing was written: remove reports/{id}/files/{name} from the store and run `embargo fetch` to download it again; if it stays so, the intake's copy was modified",
            t.event
        )
    );
    assert!(
        entries(&refused_dir).is_empty(),
        "{:?}",
        entries(&refused_dir)
    );
    for text in [stderr.as_ref(), &server.logs.text()] {
        assert!(!text.contains("CANARY"), "{text}");
    }
    // Nothing but the output directories holds plaintext.
    for root in [t.site.path(), &laptop.store()] {
        assert!(common::files_containing(root, b"CANARY-FILE-ONE").is_empty());
        assert!(common::files_containing(root, b"CANARY-MESSAGE").is_empty());
    }

    // A reply answers the message: nothing waits any more.
    let out = laptop.run(
        &t.site,
        &["case", "reply", id, "--message", "-"],
        b"thanks, we will look at the trace",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (listed, _) = laptop.ok(&t.site, &["list"]);
    let row = listed.lines().find(|l| l.starts_with(id)).unwrap();
    assert!(!row.contains("REPLY WAITING"), "{listed}");
    assert!(!listed.contains("waiting for a reply"), "{listed}");
    let (shown, _) = laptop.ok(&t.site, &["case", "show", id]);
    assert!(!shown.contains("REPLY WAITING"), "{shown}");
}

/// The `at` of the reporter-message line of a `case show` timeline.
fn shown_time(shown: &str) -> String {
    let line = shown
        .lines()
        .find(|l| l.contains("reporter-message"))
        .unwrap();
    // Shown to the microsecond; the waiting line says it to the second.
    let at = line.split_whitespace().next().unwrap();
    format!("{}Z", at.split('.').next().unwrap())
}

#[test]
fn the_files_routes_need_the_token_stream_ciphertext_and_know_only_file_names() {
    let t = intake_with_follow_up(&["a"]);
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
    let client = server::client();
    let get = |path: &str, range: Option<&str>| {
        let mut request = client.get(server.url(path)).bearer_auth(&token);
        if let Some(r) = range {
            request = request.header("Range", r);
        }
        request.send().unwrap()
    };
    let id = t.report.as_str();
    let listed: serde_json::Value = get(&format!("/api/v1/sealed/{id}/files"), None)
        .json()
        .unwrap();
    let on_disk = t.site.reports_dir().join(id).join("files");
    let mut names: Vec<(String, u64)> = listed["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap().to_owned(),
                f["size"].as_u64().unwrap(),
            )
        })
        .collect();
    names.sort();
    let expected: Vec<(String, u64)> = entries(&on_disk)
        .into_iter()
        .map(|n| {
            let size = std::fs::metadata(on_disk.join(&n)).unwrap().len();
            (n, size)
        })
        .collect();
    assert_eq!(names, expected);

    let (name, size) = &names[0];
    let whole = get(&format!("/api/v1/sealed/{id}/files/{name}"), None);
    assert_eq!(whole.status(), 200);
    assert_eq!(whole.headers()["content-type"], "application/pgp-encrypted");
    assert_eq!(
        whole.bytes().unwrap().to_vec(),
        std::fs::read(on_disk.join(name)).unwrap()
    );
    let tail = get(
        &format!("/api/v1/sealed/{id}/files/{name}"),
        Some("bytes=10-"),
    );
    assert_eq!(tail.status(), 206);
    assert_eq!(
        tail.headers()["content-range"],
        format!("bytes 10-{}/{size}", size - 1).as_str()
    );
    assert_eq!(
        tail.bytes().unwrap().to_vec(),
        std::fs::read(on_disk.join(name)).unwrap()[10..]
    );

    // Unknown files, names that are none, other reports: 404.
    let missing = format!("{}.pgp", "0".repeat(32));
    for path in [
        format!("/api/v1/sealed/{id}/files/{missing}"),
        format!("/api/v1/sealed/{id}/files/..%2Fmanifest.pgp"),
        format!("/api/v1/sealed/{id}/files/001.pgp"),
        format!("/api/v1/sealed/{}/files", ReportId::random()),
        format!("/api/v1/sealed/{}/files/{name}", ReportId::random()),
    ] {
        let answer = get(&path, None);
        assert_eq!(answer.status(), 404, "{path}");
        let body: serde_json::Value = answer.json().unwrap();
        assert_eq!(body["error"]["code"], "not_found", "{path}");
    }
    // Without the token, nothing.
    for path in [
        format!("/api/v1/sealed/{id}/files"),
        format!("/api/v1/sealed/{id}/files/{name}"),
    ] {
        let answer = client.get(server.url(&path)).send().unwrap();
        assert_eq!(answer.status(), 401, "{path}");
    }
}

#[test]
fn case_share_gives_a_new_maintainer_the_follow_up_files_through_the_intake() {
    let t = intake_with_follow_up(&["a", "b"]);
    let (a, b) = (
        Laptop::new(&t.maintainers[0]),
        Laptop::new(&t.maintainers[1]),
    );
    let newcomer = sequoia_key("Maintainer C <c@example.org>");
    let c = Laptop::new(&newcomer);
    let entry = t.site.maintainer_token(&a.token());
    for other in [&b, &c] {
        std::fs::copy(a.token(), other.token()).unwrap();
    }
    t.site.write_config(&format!(
        "listen = \"127.0.0.1:0\"\n[maintainers]\ntoken_sha256 = [{entry}]\n"
    ));
    let server = server::Server::start(&t.site);
    let fetch = |laptop: &Laptop| {
        let token = laptop.token().display().to_string();
        laptop
            .ok(
                &t.site,
                &["fetch", "--from", &server.base, "--token-file", &token],
            )
            .1
    };
    fetch(&a);
    fetch(&b);
    let on_intake = t.site.reports_dir().join(t.report.as_str()).join("files");
    let sizes = |dir: &Path| -> Vec<u64> {
        entries(dir)
            .iter()
            .map(|n| std::fs::metadata(dir.join(n)).unwrap().len())
            .collect()
    };
    let before = sizes(&on_intake);

    let cert = c.dir.path().join("c.asc");
    std::fs::write(&cert, armored_public(&newcomer)).unwrap();
    let cert = cert.display().to_string();
    let (_, said) = a.ok(
        &t.site,
        &["case", "share", t.report.as_str(), "--cert", &cert],
    );
    // The manifest, the attachment, the reporter's event and its two files.
    assert!(said.contains("shared 5 part(s) of 1 report(s)"), "{said}");
    let grown = sizes(&a.report_files(&t.report));
    assert!(grown.iter().zip(&before).all(|(g, b)| g > b), "{grown:?}");

    // Up to the intake, and from there down to B's copy: only heads move.
    let said = fetch(&a);
    assert!(said.contains("shared session keys: 5 part(s)"), "{said}");
    assert_eq!(sizes(&on_intake), grown);
    let said = fetch(&b);
    assert!(said.contains("shared session keys: 5 part(s)"), "{said}");
    for name in entries(&on_intake) {
        let theirs = std::fs::read(on_intake.join(&name)).unwrap();
        assert_eq!(
            std::fs::read(b.report_files(&t.report).join(&name)).unwrap(),
            theirs
        );
        assert_eq!(
            std::fs::read(a.report_files(&t.report).join(&name)).unwrap(),
            theirs
        );
    }
    let said = fetch(&b);
    assert!(!said.contains("shared session keys"), "{said}");

    // The newcomer fetches and opens the reporter's files with their own key.
    fetch(&c);
    let out = c.dir.path().join("out");
    let out_arg = out.display().to_string();
    let (written, _) = c.ok(
        &t.site,
        &["case", "files", t.report.as_str(), "--out", &out_arg],
    );
    assert_eq!(written.lines().count(), 2, "{written}");
    assert_eq!(
        std::fs::read(out.join("exploittxt.py")).unwrap(),
        t.files[0].1
    );
    assert_eq!(std::fs::read(out.join("trace.log")).unwrap(), t.files[1].1);
}

#[test]
fn a_follow_up_file_with_the_longest_non_ascii_name_is_stored_under_a_name_an_event_takes() {
    // 255 four-byte characters: 1,020 bytes, twice what an event's name
    // field takes. The follow-up is stored, under the name cut to 512
    // bytes, and the event reads back.
    let site = Site::new();
    let cert = sequoia_key("Maintainer A <a@example.org>");
    site.add_key("a.asc", &armored_public(&cert));
    let report = seal_report(&site, &[]);
    let secrets = IntakeSecrets::load_or_create(&site.state_dir(), "Test Project").unwrap();
    let recipients = common::keyring(&site).recipients().unwrap();
    let store = site.store();
    let mut follow_up = FollowUp::begin(
        &store,
        report.clone(),
        &recipients,
        sequoia_key("reply").strip_secret_key_material(),
        &secrets,
        MessageFormat::Compat,
        std::time::SystemTime::now(),
    );
    let before = store.events(&report).unwrap().len();
    let name = "\u{1d11e}".repeat(255);
    follow_up
        .add_file(&name, &mut &b"bytes"[..], u64::MAX)
        .unwrap();
    let event = follow_up.finish("here it is".into()).unwrap();
    let kept = &event.attachments[0].name;
    assert_eq!(kept.len(), 512);
    assert!(name.starts_with(kept.as_str()));
    let json = event.to_padded_json().unwrap();
    assert_eq!(embargo::case::Event::from_json(&json).unwrap(), event);
    assert_eq!(store.events(&report).unwrap().len(), before + 1);
}
