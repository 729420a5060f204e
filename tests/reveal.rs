//! The maintainer side, through the real binary: `embargo decrypt`, `list`
//! and `token new`, with keys made by stock GnuPG, a real gpg-agent, and
//! stores that were tampered with.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::*;
use embargo::clock::{Clock, rfc3339};
use embargo::config::MessageFormat;
use embargo::id::ReportId;
use embargo::keys::{IntakeSecrets, Recipients};
use embargo::report::{Credit, CvssScore, ReportBody, Reporter, Severity};
use embargo::seal::{Channel, Sealer};
use openpgp::Cert;
use openpgp::parse::Parse;
use sequoia_openpgp as openpgp;

const DAY: u64 = 86_400;

/// A sealer with this site's intake key, to `certs`, with the clock at `at`.
fn sealer(state_dir: &Path, certs: Vec<Cert>, at: SystemTime) -> Sealer {
    let secrets = Arc::new(IntakeSecrets::load_or_create(state_dir, "Test Project").unwrap());
    Sealer::new(
        Recipients::from_certs(certs),
        secrets,
        MessageFormat::Compat,
        Clock::fixed(at),
    )
}

fn body(title: &str, severity: Severity) -> ReportBody {
    let mut b = ReportBody::default();
    b.title = title.into();
    b.severity = severity;
    b.description = format!("Description of {title}.\nSecond line.");
    b.affected_versions = "1.0 to 1.4".into();
    b
}

fn reporter() -> Reporter {
    Reporter {
        name: "R. Searcher".into(),
        email: "r@example.org".into(),
        credit: Credit::Name,
        openpgp_key: String::new(),
        reply_cert: String::new(),
    }
}

/// Seals a report with `files` into `store_root` and returns its ID.
fn seal(sealer: &Sealer, store_root: &Path, body: ReportBody, files: &[(&str, &[u8])]) -> ReportId {
    let store = embargo::store::FsStore::open(store_root).unwrap();
    seal_files(sealer, &store, Channel::Web, body, reporter(), files).id
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, bytes).unwrap();
    path
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Everything below `dir` (relative paths), sorted; empty if it does not exist.
fn tree(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            found.push(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            if p.is_dir() && !p.is_symlink() {
                stack.push(p);
            }
        }
    }
    found.sort();
    found
}

fn assert_refused(out: &Output, expect: &str, out_dir: &Path) {
    let err = stderr(out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected exit 1, stderr:\n{err}"
    );
    assert!(err.contains(expect), "stderr should say {expect:?}:\n{err}");
    assert!(tree(out_dir).is_empty(), "left behind: {:?}", tree(out_dir));
    assert!(stdout(out).is_empty(), "stdout: {}", stdout(out));
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn gpg_key_file_with_passphrase_and_gpg_agent_give_identical_attachments() {
    let site = Site::new();
    let alice = Gpg::new();
    let alice_fpr = alice.gen_key(
        "Alice <alice@example.org>",
        GpgKeyType::Cv25519,
        "correct horse",
        "1y",
    );
    let bob = Gpg::new();
    let bob_fpr = bob.gen_key("Bob <bob@example.org>", GpgKeyType::Cv25519, "", "1y");
    let certs = vec![
        Cert::from_bytes(&alice.export_public(&alice_fpr)).unwrap(),
        Cert::from_bytes(&bob.export_public(&bob_fpr)).unwrap(),
    ];
    let big = random_bytes(3 * 1024 * 1024 + 17, 7);
    let files: [(&str, &[u8]); 3] = [
        ("poc.py", b"print('pwned')\n"),
        ("capture.bin", &big),
        ("empty.txt", b""),
    ];
    let id = seal(
        &sealer(&site.state_dir(), certs, SystemTime::now()),
        &site.store_dir(),
        body("RCE in parser", Severity::High),
        &files,
    );

    let work = site.path();
    let key = write(
        work,
        "alice-secret.asc",
        &alice.export_secret(&alice_fpr, "correct horse"),
    );
    assert!(String::from_utf8_lossy(&fs::read(&key).unwrap()).contains("PRIVATE KEY"));
    let pass = write(work, "pass.txt", b"correct horse\n");
    let wrong = write(work, "wrong.txt", b"battery staple\n");
    let signer = write(work, "signer.asc", &armored_public(&site.signing_cert()));
    let store = site.store_dir();

    // Wrong passphrase first: refused, nothing written.
    let out1 = work.join("out1");
    let run = Decrypt::target(&site, id.as_str())
        .store(&store)
        .key(&key)
        .passphrase_file(&wrong)
        .out(&out1)
        .run();
    assert_refused(&run, "wrong passphrase", &out1);

    // A locked key without a passphrase and without a terminal: a clear error, no prompt.
    let run = Decrypt::target(&site, id.as_str())
        .store(&store)
        .key(&key)
        .out(&out1)
        .run();
    assert_refused(&run, "protected by a passphrase", &out1);

    // The exported, passphrase-protected key file.
    let run = Decrypt::target(&site, id.as_str())
        .store(&store)
        .key(&key)
        .passphrase_file(&pass)
        .signer(&signer)
        .out(&out1)
        .run();
    assert!(run.status.success(), "{}", stderr(&run));
    let dir1 = out1.join(id.as_str());
    assert_eq!(stdout(&run).trim(), dir1.display().to_string());
    assert!(!stderr(&run).contains("NOT checked"), "{}", stderr(&run));

    // Bob's key, through a real gpg-agent in his GNUPGHOME; the report is
    // named by its directory this time.
    let out2 = work.join("out2");
    let run = Decrypt::target(&site, site.reports_dir().join(id.as_str()))
        .gpg()
        .signer(&signer)
        .out(&out2)
        .env("GNUPGHOME", bob.home.path())
        .run();
    assert!(run.status.success(), "{}", stderr(&run));
    let dir2 = out2.join(id.as_str());

    for dir in [&dir1, &dir2] {
        assert_eq!(
            tree(dir),
            vec![
                "capture.bin",
                "empty.txt",
                "manifest.json",
                "poc.py",
                "report.md"
            ]
        );
        assert_eq!(mode(dir), 0o700);
        for (name, bytes) in files {
            assert_eq!(
                fs::read(dir.join(name)).unwrap(),
                bytes,
                "{name} in {}",
                dir.display()
            );
            assert_eq!(mode(&dir.join(name)), 0o600);
        }
        assert_eq!(mode(&dir.join("report.md")), 0o600);
        assert_eq!(mode(&dir.join("manifest.json")), 0o600);
        let manifest: serde_json::Value =
            serde_json::from_slice(&fs::read(dir.join("manifest.json")).unwrap()).unwrap();
        assert_eq!(manifest["id"], id.as_str());
        assert_eq!(manifest["attachments"][1]["size"], big.len());
        let md = fs::read_to_string(dir.join("report.md")).unwrap();
        assert!(
            md.contains("RCE in parser") && md.contains("verified: signed by the intake key"),
            "{md}"
        );
        assert!(md.contains(&site.signing_cert().fingerprint().to_hex()));
    }
    // Nothing else appeared next to the report (no temporary directory).
    let mut want: Vec<String> = [
        "",
        "/manifest.json",
        "/report.md",
        "/capture.bin",
        "/empty.txt",
        "/poc.py",
    ]
    .iter()
    .map(|f| format!("{id}{f}"))
    .collect();
    want.sort();
    assert_eq!(tree(&out1), want);

    // `list --gpg` opens the manifest through the agent as well.
    let run = List::bare(&site)
        .gpg()
        .json()
        .store(&store)
        .signer(&signer)
        .env("GNUPGHOME", bob.home.path())
        .run();
    assert!(run.status.success(), "{}", stderr(&run));
    let rows: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(rows[0]["id"], id.as_str());
    assert_eq!(rows[0]["title"], "RCE in parser");
    assert_eq!(rows[0]["signature_checked"], true);
    assert_eq!(
        rows[0]["attachments_bytes"].as_u64(),
        Some(big.len() as u64 + 15)
    );

    // A gpg home without a matching secret key fails cleanly.
    let stranger = Gpg::new();
    stranger.gen_key("Mallory <m@example.org>", GpgKeyType::Cv25519, "", "1y");
    let out3 = work.join("out3");
    let run = Decrypt::target(&site, id.as_str())
        .gpg()
        .store(&store)
        .out(&out3)
        .env("GNUPGHOME", stranger.home.path())
        .run();
    assert_refused(&run, "gpg could not decrypt", &out3);
}

#[test]
fn tampered_foreign_or_forged_reports_exit_1_and_leave_nothing() {
    let site = Site::new();
    let maintainer = sequoia_key("Maint <maint@example.org>");
    let other = sequoia_key("Other <other@example.org>");
    let s = sealer(
        &site.state_dir(),
        vec![maintainer.clone()],
        SystemTime::now(),
    );
    let store = site.store_dir();
    // Same-sized attachments, so a swapped part differs only in content.
    let a = seal(
        &s,
        &store,
        body("A", Severity::High),
        &[("a.bin", &random_bytes(3 << 20, 1)), ("b.txt", b"bee")],
    );
    let b = seal(
        &s,
        &store,
        body("B", Severity::Low),
        &[("a.bin", &random_bytes(3 << 20, 2)), ("b.txt", b"bee")],
    );
    // Signed by an intake key that is not the pinned one.
    let rogue_state = site.path().join("rogue-state");
    let forged = seal(
        &sealer(&rogue_state, vec![maintainer.clone()], SystemTime::now()),
        &store,
        body("F", Severity::Low),
        &[],
    );

    let work = site.path();
    let key = write(work, "maint.asc", &armored_secret(&maintainer));
    let other_key = write(work, "other.asc", &armored_secret(&other));
    let signer = write(work, "signer.asc", &armored_public(&site.signing_cert()));
    let out = work.join("out");
    let decrypt = |id: &ReportId, key: &Path| {
        Decrypt::target(&site, id.as_str())
            .store(&store)
            .key(key)
            .signer(&signer)
            .out(&out)
            .run()
    };

    assert_refused(
        &decrypt(&a, &other_key),
        "none of the given secret keys can decrypt",
        &out,
    );
    assert_refused(
        &decrypt(&forged, &key),
        "not signed by the expected intake key",
        &out,
    );

    let part = site.reports_dir().join(a.as_str()).join("001.pgp");
    let original = fs::read(&part).unwrap();

    let mut flipped = original.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x01;
    fs::write(&part, &flipped).unwrap();
    assert_refused(&decrypt(&a, &key), "damaged or was tampered with", &out);

    fs::write(&part, &original[..original.len() / 2]).unwrap();
    let run = decrypt(&a, &key);
    assert_refused(&run, &format!("{a}/001.pgp"), &out);
    assert!(
        stderr(&run).contains("damaged") || stderr(&run).contains("truncated"),
        "{}",
        stderr(&run)
    );

    fs::copy(site.reports_dir().join(b.as_str()).join("001.pgp"), &part).unwrap();
    assert_refused(&decrypt(&a, &key), "does not match the manifest", &out);
    fs::write(&part, &original).unwrap();

    let manifest = site.reports_dir().join(a.as_str()).join("manifest.pgp");
    let original_manifest = fs::read(&manifest).unwrap();
    fs::copy(
        site.reports_dir().join(b.as_str()).join("manifest.pgp"),
        &manifest,
    )
    .unwrap();
    assert_refused(&decrypt(&a, &key), &format!("belongs to report {b}"), &out);
    fs::write(&manifest, &original_manifest).unwrap();

    // Restored: it decrypts; a second time it refuses to overwrite.
    let run = decrypt(&a, &key);
    assert!(run.status.success(), "{}", stderr(&run));
    let before = tree(&out);
    let report_md = fs::read(out.join(a.as_str()).join("report.md")).unwrap();
    let run = decrypt(&a, &key);
    assert_eq!(run.status.code(), Some(1));
    assert!(stderr(&run).contains("already exists"), "{}", stderr(&run));
    assert_eq!(tree(&out), before);
    assert_eq!(
        fs::read(out.join(a.as_str()).join("report.md")).unwrap(),
        report_md
    );

    // A locked key with the wrong passphrase.
    let (locked, _) = openpgp::cert::CertBuilder::general_purpose(Some("Locked <l@example.org>"))
        .set_password(Some("right".into()))
        .generate()
        .unwrap();
    let locked_id = seal(&s, &store, body("L", Severity::Low), &[]);
    let locked_key = write(work, "locked.asc", &armored_secret(&locked));
    let wrong = write(work, "wrong-pass", b"wrong\n");
    let out_l = work.join("out-locked");
    let run = Decrypt::target(&site, locked_id.as_str())
        .store(&store)
        .key(&locked_key)
        .passphrase_file(&wrong)
        .out(&out_l)
        .run();
    assert_refused(&run, "wrong passphrase", &out_l);

    // Without a pinned signer it decrypts, but says loudly that it did not check.
    let out_u = work.join("out-unchecked");
    let run = Decrypt::target(&site, b.as_str())
        .store(&store)
        .key(&key)
        .out(&out_u)
        .run();
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(
        stderr(&run).contains("signature was NOT checked"),
        "{}",
        stderr(&run)
    );
    let md = fs::read_to_string(out_u.join(b.as_str()).join("report.md")).unwrap();
    assert!(md.contains("NOT CHECKED"));

    // With -c, the configured intake's own key is the signer: the forged one is refused.
    let run = Decrypt::target(&site, forged.as_str())
        .config(site.config_path())
        .key(&key)
        .out(work.join("out-c"))
        .run();
    assert_refused(
        &run,
        "not signed by the expected intake key",
        &work.join("out-c"),
    );
}

#[test]
fn hostile_names_and_markup_are_extracted_safely_and_rendered_inert() {
    let site = Site::new();
    let maintainer = sequoia_key("Maint <maint@example.org>");
    let s = sealer(
        &site.state_dir(),
        vec![maintainer.clone()],
        SystemTime::now(),
    );
    let hostile = "[click me](https://evil.example/x) <img src=x onerror=alert(1)> ![pix](http://evil.example/p.png) <script>alert(1)</script> `code` ~~~ www.evil.example";
    let mut b = body(hostile, Severity::Critical);
    b.description = format!(
        "{hostile}\n~~~~\n```\n</pre><iframe src=//evil.example>\n# Heading\n[ref]: http://evil.example\n"
    );
    b.impact = "<a href=\"javascript:alert(1)\">x</a>".into();
    b.cwe = vec!["CWE-79".into()];
    b.cvss = Some(CvssScore::parse("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H").unwrap());
    let mut names: Vec<(String, Vec<u8>)> = vec![
        ("../../../etc/passwd".into(), b"traversal".to_vec()),
        ("/etc/shadow".into(), b"absolute".to_vec()),
        ("nul\0byte.txt".into(), b"nul".to_vec()),
        ("invoice\u{202E}fdp.exe".into(), b"rtlo".to_vec()),
        ("\u{2066}\u{200F}".into(), b"only bidi".to_vec()),
        (".bashrc".into(), b"dotfile".to_vec()),
        ("..".into(), b"dotdot".to_vec()),
        ("report.md".into(), b"not the report".to_vec()),
        ("x".repeat(1000), b"long".to_vec()),
        ("a\nb\tc\x1b[31m.txt".into(), b"controls".to_vec()),
    ];
    for i in 0..300 {
        names.push(("dup.txt".into(), format!("copy {i}").into_bytes()));
    }
    let files: Vec<(&str, &[u8])> = names
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    let id = seal(&s, &site.store_dir(), b, &files);

    let key = write(site.path(), "maint.asc", &armored_secret(&maintainer));
    let out = site.path().join("out");
    let run = Decrypt::new(&site, id.as_str()).key(&key).out(&out).run();
    assert!(run.status.success(), "{}", stderr(&run));

    // Only OUT/<ID>/ exists, and it holds only plain, regular files.
    let dir = out.join(id.as_str());
    assert_eq!(fs::read_dir(&out).unwrap().count(), 1);
    let entries: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(entries.len(), names.len() + 2);
    let mut lower = std::collections::HashSet::new();
    for name in &entries {
        let meta = fs::symlink_metadata(dir.join(name)).unwrap();
        assert!(meta.is_file(), "{name:?}");
        assert!(!name.is_empty() && name.len() <= 120, "{name:?}");
        assert!(
            !name.starts_with('.')
                && !name.starts_with('-')
                && !name.contains('/')
                && !name.contains(".."),
            "{name:?}"
        );
        assert!(!name.chars().any(|c| c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')), "{name:?}");
        assert!(lower.insert(name.to_lowercase()), "duplicate {name:?}");
    }
    // Every attachment's bytes are there under its sanitized name.
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(
        manifest["attachments"].as_array().unwrap().len(),
        names.len()
    );
    for (want, got) in [
        ("etc_passwd", "traversal"),
        ("etc_shadow", "absolute"),
        ("nulbyte.txt", "nul"),
        ("invoicefdp.exe", "rtlo"),
        ("bashrc", "dotfile"),
        ("report-2.md", "not the report"),
        ("abc[31m.txt", "controls"),
        ("dup.txt", "copy 0"),
        ("dup-300.txt", "copy 299"),
    ] {
        assert_eq!(fs::read_to_string(dir.join(want)).unwrap(), got, "{want}");
    }
    assert!(
        fs::read_to_string(dir.join("report.md"))
            .unwrap()
            .starts_with("# Vulnerability report")
    );

    // report.md: every reporter-controlled character is inside a code span
    // or a fenced block; outside them nothing could form a link, an image
    // or HTML.
    let md = fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(
        md.contains(hostile),
        "the title is shown verbatim (in code)"
    );
    assert!(
        md.contains("invoice<U+202E>fdp.exe"),
        "bidi characters are made visible"
    );
    assert!(!md.contains('\u{202E}') && !md.contains('\0') && !md.contains('\x1b'));
    let outside = outside_code(&md);
    for bad in ["<", ">", "](", "![", "http", "www.", "javascript:", "[ref]"] {
        assert!(
            !outside.contains(bad),
            "{bad:?} outside code in report.md:\n{outside}\n----\n{md}"
        );
    }
    assert!(
        md.contains("**CVSS `3.1`:** 9.8 (` critical `)") || md.contains("9.8"),
        "{md}"
    );
    assert!(md.contains("CWE-79") && md.contains("R. Searcher") && md.contains("credit by name"));
    assert!(md.contains("Fix by:"), "{md}");
}

/// The text of a Markdown document outside fenced blocks and code spans
/// (CommonMark rules for the fences and spans `render` emits).
fn outside_code(md: &str) -> String {
    let mut out = String::new();
    let mut fence: Option<String> = None;
    for line in md.lines() {
        if let Some(f) = &fence {
            if line.trim_end() == f {
                fence = None;
            }
            continue;
        }
        let tildes = line.chars().take_while(|&c| c == '~').count();
        if tildes >= 3 {
            fence = Some("~".repeat(tildes));
            continue;
        }
        // Remove code spans: a run of n backticks up to the next run of exactly n.
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            if chars[i] == '`' {
                let n = chars[i..].iter().take_while(|&&c| c == '`').count();
                let mut j = i + n;
                let mut closed = None;
                while j < chars.len() {
                    if chars[j] == '`' {
                        let m = chars[j..].iter().take_while(|&&c| c == '`').count();
                        if m == n {
                            closed = Some(j + m);
                            break;
                        }
                        j += m;
                    } else {
                        j += 1;
                    }
                }
                match closed {
                    Some(end) => i = end,
                    None => panic!("unclosed code span in line {line:?}"),
                }
            } else {
                out.push(chars[i]);
                i += 1;
            }
        }
        out.push('\n');
    }
    assert!(fence.is_none(), "unclosed fence");
    out
}

#[test]
fn list_sorts_by_urgency_with_policy_deadlines_and_overdue_marks() {
    let site = Site::new();
    let maintainer = sequoia_key("Maint <maint@example.org>");
    let stranger = sequoia_key("Stranger <s@example.org>");
    let store = site.store_dir();
    // Sealed "in the future" so that the keys made now are valid; --now
    // then looks back from later still.
    let t0 = SystemTime::now() + Duration::from_secs(DAY);
    let at = |days: u64| t0 + Duration::from_secs(days * DAY);
    let now = at(20);
    let mut crit = body("Critical one", Severity::Critical);
    crit.cvss = Some(CvssScore::parse("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H").unwrap());
    let critical = seal(
        &sealer(&site.state_dir(), vec![maintainer.clone()], at(10)),
        &store,
        crit,
        &[("a", b"12345")],
    );
    let high = seal(
        &sealer(&site.state_dir(), vec![maintainer.clone()], at(19)),
        &store,
        body("High one\u{202E}\x1b[2J", Severity::High),
        &[],
    );
    let low = seal(
        &sealer(&site.state_dir(), vec![maintainer.clone()], at(17)),
        &store,
        body("Low one", Severity::Low),
        &[("x", b"1"), ("y", b"22")],
    );
    let unknown = seal(
        &sealer(&site.state_dir(), vec![maintainer.clone()], at(20)),
        &store,
        body("Unknown one", Severity::Unknown),
        &[],
    );
    let foreign = seal(
        &sealer(&site.state_dir(), vec![stranger], at(5)),
        &store,
        body("Not for us", Severity::Critical),
        &[],
    );

    let key = write(site.path(), "maint.asc", &armored_secret(&maintainer));
    let list = |extra: &[&str]| {
        let mut list = List::bare(&site)
            .arg("--now")
            .arg(rfc3339(now))
            .store(&store)
            .key(&key);
        for arg in extra {
            list = list.arg(arg);
        }
        list.run()
    };

    let run = list(&[]);
    assert!(run.status.success(), "{}", stderr(&run));
    let table = stdout(&run);
    assert!(
        !table.contains('\x1b') && !table.contains('\u{202E}'),
        "no colour or controls off a terminal:\n{table}"
    );
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("ACK DUE") && lines[0].contains("FIX DUE"),
        "{table}"
    );
    let order: Vec<&str> = lines[1..6]
        .iter()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    // Missed obligations first, the more severe first among them: critical
    // (fix and ack overdue), then low (ack overdue since day 19); then those
    // with nothing missed, by severity: high, unknown; the foreign one last.
    assert_eq!(
        order,
        [
            critical.as_str(),
            low.as_str(),
            high.as_str(),
            unknown.as_str(),
            foreign.as_str()
        ],
        "{table}"
    );
    let row = |id: &ReportId| {
        lines
            .iter()
            .find(|l| l.starts_with(id.as_str()))
            .unwrap()
            .to_string()
    };
    let short = |t: SystemTime| rfc3339(t)[..16].replace('T', " ");
    assert!(
        row(&critical).contains(&format!("{} OVERDUE", short(at(17)))),
        "{table}"
    );
    assert!(
        row(&critical).contains(&format!("{} OVERDUE", short(at(12)))),
        "ack overdue too:\n{table}"
    );
    assert!(
        row(&critical).contains("critical 9.8") && row(&critical).contains("10d 0h"),
        "{table}"
    );
    assert!(
        row(&low).contains(&format!("{} OVERDUE", short(at(19))))
            && !row(&low).contains(&format!("{} OVERDUE", short(at(197)))),
        "{table}"
    );
    assert!(
        row(&low).contains(" 2 ") && row(&low).contains("3 bytes"),
        "{table}"
    );
    assert!(
        !row(&high).contains("OVERDUE") && row(&high).contains(&short(at(49))),
        "{table}"
    );
    assert!(
        row(&high).contains("High one[2J"),
        "title stripped of controls:\n{table}"
    );
    assert!(
        row(&foreign).contains("CANNOT OPEN: not encrypted to this key"),
        "{table}"
    );
    assert!(
        table.contains("5 reports, 2 overdue, 1 cannot be opened"),
        "{table}"
    );

    // On a terminal (script(1) gives one), overdue dates are red as well.
    if Command::new("script").arg("--version").output().is_ok() {
        let cmd = format!(
            "{} list --now {} --store {} --key {}",
            embargo_bin().display(),
            rfc3339(now),
            store.display(),
            key.display()
        );
        let run = Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .env_remove("NO_COLOR")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let shown = stdout(&run);
        assert!(run.status.success(), "{shown}");
        assert!(
            shown.contains(&format!("\x1b[1;31m{} OVERDUE\x1b[0m", short(at(17)))),
            "{shown:?}"
        );
    }

    // --json: the same data for scripts, with a [policy] from -c.
    let conf_dir = site.path().join("maintainer");
    fs::create_dir(&conf_dir).unwrap();
    let conf = write(&conf_dir, "embargo.toml", b"state_dir = \"no-intake-here\"\n[policy]\nacknowledge_within = \"1d\"\nfix_within = { critical = \"3d\", high = \"30d\", medium = \"90d\", low = \"180d\" }\n");
    let run = list(&["--json", "-c", conf.to_str().unwrap()]);
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(stderr(&run).contains("signature was NOT checked"));
    let rows: serde_json::Value = serde_json::from_str(&stdout(&run)).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 5);
    let get = |id: &ReportId| {
        rows.iter()
            .find(|r| r["id"] == id.as_str())
            .unwrap()
            .clone()
    };
    let c = get(&critical);
    assert_eq!(c["fix_by"], rfc3339(at(13)));
    assert_eq!(c["acknowledge_by"], rfc3339(at(11)));
    assert_eq!(
        (
            c["fix_overdue"].as_bool(),
            c["acknowledge_overdue"].as_bool()
        ),
        (Some(true), Some(true))
    );
    assert_eq!(
        (c["severity"].as_str(), c["cvss_score"].as_f64()),
        (Some("critical"), Some(9.8))
    );
    assert_eq!(
        (c["attachments"].as_u64(), c["attachments_bytes"].as_u64()),
        (Some(1), Some(5))
    );
    assert_eq!(c["age_seconds"].as_u64(), Some(10 * DAY));
    assert_eq!(c["received_at"], rfc3339(at(10)));
    let h = get(&high);
    assert_eq!(h["acknowledge_by"], rfc3339(at(20)));
    assert_eq!(
        h["acknowledge_overdue"], false,
        "due exactly now is not overdue yet"
    );
    assert_eq!(get(&unknown)["fix_by"], serde_json::Value::Null);
    let f = get(&foreign);
    assert_eq!(
        (f["status"].as_str(), f["error"].as_str()),
        (Some("unreadable"), Some("not encrypted to this key"))
    );
    assert_eq!(rows[0]["id"], critical.as_str());
    assert_eq!(rows[4]["id"], foreign.as_str());
}

#[test]
fn command_line_usage_errors_exit_2_and_operational_errors_exit_1() {
    let site = Site::new();
    let run = |args: &[&str]| site.embargo().args(args).output().unwrap();
    for args in [
        &["decrypt", "K7Q3M-2XDA9-TF4BC-1ZP0R", "--store", "data"][..],
        &[
            "decrypt",
            "K7Q3M-2XDA9-TF4BC-1ZP0R",
            "--store",
            "data",
            "--key",
            "k",
            "--gpg",
        ],
        &[
            "decrypt",
            "K7Q3M-2XDA9-TF4BC-1ZP0R",
            "--store",
            "data",
            "--gpg",
            "--passphrase-file",
            "p",
        ],
        &[
            "decrypt",
            "K7Q3M-2XDA9-TF4BC-1ZP0R",
            "--key",
            "k",
            "--passphrase",
            "secret",
        ],
        &["list", "--store", "data"],
        &["fetch", "--from", "http://127.0.0.1:1", "--store", "data"],
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
    }
    site.store();
    // No store at all: a usage error that says how to give one.
    let key = write(
        site.path(),
        "k.asc",
        &armored_secret(&sequoia_key("K <k@example.org>")),
    );
    let out = Decrypt::target(&site, "K7Q3M-2XDA9-TF4BC-1ZP0R")
        .key(&key)
        .run();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--store"), "{}", stderr(&out));
    // Plain http to another host would leak the token.
    let token = write(site.path(), "token", b"embargo_x\n");
    let out = site
        .embargo()
        .args(["fetch", "--from", "http://example.org", "--token-file"])
        .arg(&token)
        .args(["--store", "data"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("https://"), "{}", stderr(&out));

    let out = Decrypt::target(&site, "not-an-id")
        .store("data")
        .key(&key)
        .run();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not a report ID"), "{}", stderr(&out));
    let out = site
        .embargo()
        .args([
            "decrypt",
            "K7Q3M-2XDA9-TF4BC-1ZP0R",
            "--store",
            "data",
            "--key",
        ])
        .arg(&key)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("is not in the store"),
        "{}",
        stderr(&out)
    );
    let public = write(
        site.path(),
        "pub.asc",
        &armored_public(&sequoia_key("P <p@example.org>")),
    );
    let out = List::bare(&site).store("data").key(&public).run();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("holds no secret key"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn token_new_prints_only_the_token_on_stdout_and_a_paste_safe_hash_on_stderr() {
    let out = embargo().args(["token", "new"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    // `embargo token new > token.txt` makes a file holding just the token.
    let token = text.strip_suffix('\n').unwrap();
    assert!(!token.contains('\n'), "{text:?}");
    let hex_part = token.strip_prefix("embargo_").unwrap();
    assert!(
        hex_part.len() == 64 && hex_part.bytes().all(|b| b.is_ascii_hexdigit()),
        "{token}"
    );
    use sha2::Digest;
    let hash = hex::encode(sha2::Sha256::digest(token.as_bytes()));
    assert_eq!(
        stderr(&out),
        format!(
            "embargo: the new fetch token is on stdout: the maintainer keeps it in a file only they can read (chmod 600) for `embargo fetch --token-file`\n\
             embargo: on the intake, add this entry to the token_sha256 list in [maintainers] of embargo.toml, keeping the entries already there:\n\
             \"{hash}\",\n"
        )
    );
    // The entry pastes into a list that already holds another maintainer's.
    let other = "a".repeat(64);
    let entry = stderr(&out).lines().last().unwrap().to_string();
    let config = embargo::config::Config::parse(&format!(
        "[maintainers]\ntoken_sha256 = [\n  \"{other}\",\n  {entry}\n]\n"
    ))
    .unwrap();
    assert_eq!(config.maintainers.token_sha256, vec![other, hash]);
    let again = embargo().args(["token", "new"]).output().unwrap();
    assert_ne!(String::from_utf8(again.stdout).unwrap(), text);
}

#[test]
fn token_new_out_creates_a_0600_file_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token.txt");
    let out = embargo()
        .args(["token", "new", "--out"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(out.stdout.is_empty(), "{}", stdout(&out));
    assert_eq!(mode(&file), 0o600);
    let written = fs::read_to_string(&file).unwrap();
    let token = written.strip_suffix('\n').unwrap();
    assert!(token.starts_with("embargo_") && !token.contains('\n'));
    use sha2::Digest;
    let hash = hex::encode(sha2::Sha256::digest(token.as_bytes()));
    assert_eq!(
        stderr(&out),
        format!(
            "embargo: wrote the new fetch token to {} (mode 0600): the maintainer uses it with `embargo fetch --token-file`\n\
             embargo: on the intake, add this entry to the token_sha256 list in [maintainers] of embargo.toml, keeping the entries already there:\n\
             \"{hash}\",\n",
            file.display()
        )
    );
    // A second run to the same file is refused and the first token kept.
    let again = embargo()
        .args(["token", "new", "--out"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert!(again.stdout.is_empty());
    assert_eq!(
        stderr(&again),
        format!(
            "embargo: error: {} already exists: `token new` never overwrites a file; choose another --out or remove it first\n",
            file.display()
        )
    );
    assert_eq!(fs::read_to_string(&file).unwrap(), written);
    // Nor through a symbolic link planted where the file would go.
    let victim = dir.path().join("victim");
    fs::write(&victim, b"keep").unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let run = embargo()
        .args(["token", "new", "--out"])
        .arg(&link)
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    assert_eq!(fs::read(&victim).unwrap(), b"keep");
}

/// Waits until `out` holds a temporary directory with some plaintext in it.
fn wait_for_partial(out: &Path, child: &mut std::process::Child) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        let started = fs::read_dir(out).into_iter().flatten().flatten().any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".embargo-partial-")
                && fs::read_dir(e.path())
                    .into_iter()
                    .flatten()
                    .flatten()
                    .any(|f| f.metadata().map(|m| m.len() > 0).unwrap_or(false))
        });
        if started {
            return true;
        }
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        // Not wait_until: the signal must land while the file is partial,
        // which a 50 ms step can miss.
        std::thread::sleep(Duration::from_millis(1));
    }
    false
}

#[test]
fn interrupted_decrypt_leaves_nothing_and_a_killed_ones_leftovers_are_removed() {
    let site = Site::new();
    let maintainer = sequoia_key("Maint <maint@example.org>");
    let s = sealer(
        &site.state_dir(),
        vec![maintainer.clone()],
        SystemTime::now(),
    );
    let big = random_bytes(96 << 20, 9);
    let id = seal(
        &s,
        &site.store_dir(),
        body("Big", Severity::Medium),
        &[("one.bin", &big), ("two.bin", &big)],
    );
    let key = write(site.path(), "maint.asc", &armored_secret(&maintainer));
    let out = site.path().join("out");
    let spawn = || {
        Decrypt::new(&site, id.as_str())
            .key(&key)
            .out(&out)
            .command()
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };

    // Ctrl-C (SIGINT) or SIGTERM in the middle: the plaintext goes.
    for sig in ["-INT", "-TERM"] {
        let mut child = spawn();
        assert!(
            wait_for_partial(&out, &mut child),
            "the decryption finished before it could be interrupted"
        );
        let status = Command::new("kill")
            .args([sig, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let done = child.wait_with_output().unwrap();
        assert_eq!(done.status.code(), Some(130), "{sig}: {}", stderr(&done));
        assert!(stderr(&done).contains("interrupted; nothing was kept"));
        assert!(tree(&out).is_empty(), "{sig} left behind: {:?}", tree(&out));
    }

    // SIGKILL cannot be caught: the next run removes what it left.
    let mut child = spawn();
    assert!(wait_for_partial(&out, &mut child));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!tree(&out).is_empty());
    let done = spawn().wait_with_output().unwrap();
    assert!(done.status.success(), "{}", stderr(&done));
    assert!(
        !stderr(&done).contains('\r') && !stderr(&done).contains("eta"),
        "no progress bar off a terminal: {}",
        stderr(&done)
    );
    let mut want: Vec<String> = ["", "/manifest.json", "/one.bin", "/report.md", "/two.bin"]
        .iter()
        .map(|f| format!("{id}{f}"))
        .collect();
    want.sort();
    assert_eq!(tree(&out), want);
    assert!(fs::read(out.join(id.as_str()).join("two.bin")).unwrap() == big);
}

/// Whether the terminal of `script`'s child (the command it runs on its
/// pseudo-terminal) has echo off, as a password prompt sets it.
fn echo_off_under(script: u32) -> bool {
    child_pids(script).into_iter().any(|pid| {
        let Ok(tty) = fs::read_link(format!("/proc/{pid}/fd/0")) else {
            return false;
        };
        tty.starts_with("/dev/pts/")
            && Command::new("stty")
                .arg("-a")
                .arg("-F")
                .arg(&tty)
                .output()
                .is_ok_and(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .split_whitespace()
                        .any(|flag| flag == "-echo")
                })
    })
}

#[test]
fn a_locked_key_asks_for_its_passphrase_on_the_terminal_without_echo() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: script(1) from util-linux is needed for a terminal");
        return;
    }
    let site = Site::new();
    let (locked, _) = openpgp::cert::CertBuilder::general_purpose(Some("Locked <l@example.org>"))
        .set_password(Some("Tr0ub4dor-and-3".into()))
        .generate()
        .unwrap();
    let s = sealer(&site.state_dir(), vec![locked.clone()], SystemTime::now());
    let big = random_bytes(9 << 20, 5);
    let id = seal(
        &s,
        &site.store_dir(),
        body("Prompted", Severity::Low),
        &[("big.bin", &big)],
    );
    let key = write(site.path(), "locked.asc", &armored_secret(&locked));
    let out = site.path().join("out");
    let cmd = format!(
        "{} decrypt {id} --store {} --key {} --out {}",
        embargo_bin().display(),
        site.store_dir().display(),
        key.display(),
        out.display()
    );
    let mut child = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env_remove("EMBARGO_CONFIG")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let mut output = child.stdout.take().unwrap();
    let mut transcript = String::new();
    let mut answered = 0;
    let mut buf = [0u8; 4096];
    loop {
        use std::io::{Read, Write};
        let n = output.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        transcript.push_str(&String::from_utf8_lossy(&buf[..n]));
        let prompts = transcript.matches("Passphrase for the secret key").count();
        if prompts > answered {
            // A wrong answer first, then the right one, typed once the
            // prompt has turned echo off (just after showing itself).
            wait_until(
                "the prompt to turn echo off",
                Duration::from_secs(10),
                || echo_off_under(child.id()),
            );
            let answer = if answered == 0 {
                "battery-staple-9\n"
            } else {
                "Tr0ub4dor-and-3\n"
            };
            input.write_all(answer.as_bytes()).unwrap();
            input.flush().unwrap();
            answered += 1;
        }
    }
    drop(input);
    let status = child.wait().unwrap();
    assert!(status.success(), "{transcript}");
    assert_eq!(answered, 2, "{transcript}");
    assert!(
        transcript.contains("wrong passphrase, try again"),
        "{transcript}"
    );
    assert!(
        !transcript.contains("Tr0ub4dor") && !transcript.contains("battery-staple"),
        "the passphrase was echoed:\n{transcript}"
    );
    assert!(fs::read(out.join(id.as_str()).join("big.bin")).unwrap() == big);
}

#[test]
fn a_locked_key_whose_primary_key_encrypts_opens_with_its_passphrase() {
    use openpgp::cert::{CertBuilder, CipherSuite};
    use openpgp::types::KeyFlags;
    let site = Site::new();
    // Old-style single-key certificate: the primary key itself encrypts.
    let (cert, _) = CertBuilder::new()
        .set_cipher_suite(CipherSuite::RSA2k)
        .add_userid("Old <old@example.org>")
        .set_primary_key_flags(
            KeyFlags::empty()
                .set_certification()
                .set_storage_encryption()
                .set_transport_encryption(),
        )
        .set_password(Some("pw-old".into()))
        .generate()
        .unwrap();
    let s = sealer(&site.state_dir(), vec![cert.clone()], SystemTime::now());
    let id = seal(
        &s,
        &site.store_dir(),
        body("Old key", Severity::Low),
        &[("f.txt", b"old school")],
    );
    let key = write(site.path(), "old.asc", &armored_secret(&cert));
    let pass = write(site.path(), "old-pass", b"pw-old\n");
    let out = site.path().join("out");
    let run = Decrypt::new(&site, id.as_str())
        .key(&key)
        .passphrase_file(&pass)
        .out(&out)
        .run();
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(
        fs::read(out.join(id.as_str()).join("f.txt")).unwrap(),
        b"old school"
    );
}

#[test]
fn subkeys_exported_without_the_primary_secret_open_with_the_passphrase() {
    // `gpg --export-secret-subkeys` (offline primary key): the primary is a
    // stub without secret material, the encryption subkey is protected.
    let site = Site::new();
    let gpg = Gpg::new();
    let fpr = gpg.gen_key(
        "Sub <sub@example.org>",
        GpgKeyType::Cv25519,
        "sub-pass",
        "1y",
    );
    let open_fpr = gpg.gen_key("Open <open@example.org>", GpgKeyType::Cv25519, "", "1y");
    let certs = [&fpr, &open_fpr].map(|f| Cert::from_bytes(&gpg.export_public(f)).unwrap());
    let s = sealer(&site.state_dir(), certs.to_vec(), SystemTime::now());
    let id = seal(
        &s,
        &site.store_dir(),
        body("Subkeys", Severity::Low),
        &[("f.txt", b"subkey only")],
    );
    let exported = gpg
        .run(
            &[
                "--passphrase",
                "sub-pass",
                "--armor",
                "--export-secret-subkeys",
                &fpr,
            ],
            None,
        )
        .stdout;
    let key = write(site.path(), "subkeys.asc", &exported);
    let pass = write(site.path(), "pass", b"sub-pass\n");
    let out = site.path().join("out");
    let run = Decrypt::new(&site, id.as_str())
        .key(&key)
        .passphrase_file(&pass)
        .out(&out)
        .run();
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(
        fs::read(out.join(id.as_str()).join("f.txt")).unwrap(),
        b"subkey only"
    );

    // An unprotected subkey behind a stub primary needs no passphrase at all.
    let open_key = write(
        site.path(),
        "open-subkeys.asc",
        &gpg.run(
            &[
                "--passphrase",
                "",
                "--armor",
                "--export-secret-subkeys",
                &open_fpr,
            ],
            None,
        )
        .stdout,
    );
    let out2 = site.path().join("out2");
    let run = Decrypt::new(&site, id.as_str())
        .key(&open_key)
        .out(&out2)
        .run();
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(
        fs::read(out2.join(id.as_str()).join("f.txt")).unwrap(),
        b"subkey only"
    );
}

#[test]
fn gpg_agent_asks_for_a_locked_keys_passphrase_with_its_pinentry_on_the_terminal() {
    if Command::new("script").arg("--version").output().is_err()
        || !Path::new("/usr/bin/pinentry-curses").exists()
    {
        eprintln!("skipped: needs script(1) and pinentry-curses");
        return;
    }
    let site = Site::new();
    let gpg = Gpg::new();
    fs::write(
        gpg.home.path().join("gpg-agent.conf"),
        "pinentry-program /usr/bin/pinentry-curses\n",
    )
    .unwrap();
    let fpr = gpg.gen_key(
        "Pin <pin@example.org>",
        GpgKeyType::Cv25519,
        "pin-pass-42",
        "1y",
    );
    // The key was made with loopback; forget the cached passphrase.
    let _ = Command::new("gpgconf")
        .env("GNUPGHOME", gpg.home.path())
        .args(["--kill", "gpg-agent"])
        .status();
    let cert = Cert::from_bytes(&gpg.export_public(&fpr)).unwrap();
    let s = sealer(&site.state_dir(), vec![cert], SystemTime::now());
    let id = seal(
        &s,
        &site.store_dir(),
        body("Pinentry", Severity::Low),
        &[("f.txt", b"via pinentry")],
    );
    let out = site.path().join("out");
    let cmd = format!(
        "{} decrypt {id} --gpg --store {} --out {}",
        embargo_bin().display(),
        site.store_dir().display(),
        out.display()
    );
    let mut child = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("GNUPGHOME", gpg.home.path())
        .env_remove("GPG_TTY")
        .env_remove("DISPLAY")
        .env("TERM", "xterm")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let mut output = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        use std::io::Read;
        let mut buf = [0u8; 4096];
        while let Ok(n) = output.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut transcript = String::new();
    let mut answered = false;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(chunk) => transcript.push_str(&String::from_utf8_lossy(&chunk)),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if !answered && transcript.contains("Passphrase") {
            use std::io::Write;
            wait_until("pinentry to turn echo off", Duration::from_secs(10), || {
                echo_off_under(child.id())
            });
            input.write_all(b"pin-pass-42\r").unwrap();
            input.flush().unwrap();
            answered = true;
        }
    }
    drop(input);
    let status = child.wait().unwrap();
    assert!(answered, "no pinentry prompt:\n{transcript}");
    assert!(status.success(), "{transcript}");
    assert_eq!(
        fs::read(out.join(id.as_str()).join("f.txt")).unwrap(),
        b"via pinentry"
    );
}

/// Everything below `dir` with its mode and size, to compare before and after.
fn snapshot(dir: &Path) -> Vec<(String, u32, u64)> {
    tree(dir)
        .into_iter()
        .map(|p| {
            let meta = fs::symlink_metadata(dir.join(&p)).unwrap();
            (p, meta.permissions().mode(), meta.len())
        })
        .collect()
}

#[test]
fn decrypt_and_list_leave_the_store_exactly_as_they_found_it() {
    let site = Site::new();
    let maintainer = sequoia_key("Maint <maint@example.org>");
    let id = seal(
        &sealer(
            &site.state_dir(),
            vec![maintainer.clone()],
            SystemTime::now(),
        ),
        &site.store_dir(),
        body("read only", Severity::Low),
        &[("poc.txt", b"proof")],
    );
    // A store as rsync copies it: only the reports, no staging, trash or lock.
    for extra in [".staging", ".trash"] {
        let _ = fs::remove_dir_all(site.reports_dir().join(extra));
    }
    let _ = fs::remove_file(site.reports_dir().join(".sweep.lock"));
    let before = snapshot(&site.store_dir());
    assert!(before.iter().all(|(p, _, _)| !p.contains(".staging")));
    let key = write(site.path(), "maint.asc", &armored_secret(&maintainer));
    let out = site.path().join("out");

    let run = List::new(&site).json().key(&key).run();
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(stdout(&run).contains(id.as_str()));
    let run = Decrypt::new(&site, id.as_str()).key(&key).out(&out).run();
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(
        fs::read(out.join(id.as_str()).join("poc.txt")).unwrap(),
        b"proof"
    );
    // Also when named by its directory.
    let run = Decrypt::target(&site, site.reports_dir().join(id.as_str()))
        .key(&key)
        .out(site.path().join("out2"))
        .run();
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(snapshot(&site.store_dir()), before);

    // With -c, the intake's state_dir gives the signer: read, never
    // created in, tightened or refused for its other files.
    fs::remove_file(site.state_dir().join("hmac.key")).unwrap();
    fs::set_permissions(site.state_dir(), fs::Permissions::from_mode(0o750)).unwrap();
    let state_before = snapshot(&site.state_dir());
    let run = Decrypt::target(&site, id.as_str())
        .config(site.config_path())
        .key(&key)
        .out(site.path().join("out3"))
        .run();
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(
        stderr(&run).contains("manifest signed by the intake key"),
        "{}",
        stderr(&run)
    );
    assert_eq!(snapshot(&site.state_dir()), state_before);
    assert_eq!(mode(&site.state_dir()), 0o750);
    assert_eq!(snapshot(&site.store_dir()), before);
}

/// Encrypts `plaintext` to `cert` with Sequoia (no signature, no padding):
/// what someone holding a maintainer key, not the intake's, could write.
fn encrypt_to(cert: &Cert, plaintext: &[u8]) -> Vec<u8> {
    use openpgp::serialize::stream::{Encryptor, LiteralWriter, Message};
    use std::io::Write;
    let policy = openpgp::policy::StandardPolicy::new();
    let recipients = cert
        .keys()
        .with_policy(&policy, None)
        .supported()
        .alive()
        .revoked(false)
        .for_transport_encryption();
    let mut sink = Vec::new();
    let message = Message::new(&mut sink);
    let message = Encryptor::for_recipients(message, recipients)
        .build()
        .unwrap();
    let mut literal = LiteralWriter::new(message).build().unwrap();
    literal.write_all(plaintext).unwrap();
    literal.finalize().unwrap();
    sink
}

#[test]
fn list_totals_saturate_instead_of_wrapping_on_a_crafted_manifest() {
    let site = Site::new();
    let maintainer = sequoia_key("Maint <maint@example.org>");
    let id = seal(
        &sealer(
            &site.state_dir(),
            vec![maintainer.clone()],
            SystemTime::now(),
        ),
        &site.store_dir(),
        body("sizes", Severity::Low),
        &[("a.bin", b"aaaa"), ("b.bin", b"bbbbb")],
    );
    let opened = opener(&maintainer, None)
        .open_manifest(&site.store(), &id)
        .unwrap();
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&opened.manifest.to_json()).unwrap();
    // 2^64 - 1 + 5 wraps to 4.
    manifest["attachments"][0]["size"] = serde_json::json!(u64::MAX);
    manifest["attachments"][1]["size"] = serde_json::json!(5);
    fs::write(
        site.reports_dir().join(id.as_str()).join("manifest.pgp"),
        encrypt_to(&maintainer, manifest.to_string().as_bytes()),
    )
    .unwrap();
    let key = write(site.path(), "maint.asc", &armored_secret(&maintainer));
    let list = |json: bool| {
        let mut list = List::new(&site).key(&key);
        if json {
            list = list.json();
        }
        let run = list.run();
        assert!(run.status.success(), "{}", stderr(&run));
        stdout(&run)
    };
    let rows: serde_json::Value = serde_json::from_str(&list(true)).unwrap();
    let row = rows
        .as_array()
        .or_else(|| rows["reports"].as_array())
        .unwrap()
        .iter()
        .find(|r| r["id"] == id.as_str())
        .unwrap()
        .clone();
    assert_eq!(row["status"], "ok", "{row}");
    assert_eq!(
        row["attachments_bytes"],
        serde_json::json!(u64::MAX),
        "{row}"
    );
    let table = list(false);
    let line = table.lines().find(|l| l.contains(id.as_str())).unwrap();
    assert!(line.contains("16777216 TiB"), "{table}");
    assert!(!line.contains(" 4 bytes "), "{table}");
}

#[test]
fn gpg_is_never_handed_a_password_encrypted_part_whatever_gpg_conf_says() {
    let site = Site::new();
    let bob = Gpg::new();
    let bob_fpr = bob.gen_key("Bob <bob@example.org>", GpgKeyType::Cv25519, "", "1y");
    let cert = Cert::from_bytes(&bob.export_public(&bob_fpr)).unwrap();
    let id = seal(
        &sealer(&site.state_dir(), vec![cert], SystemTime::now()),
        &site.store_dir(),
        body("password only", Severity::Low),
        &[],
    );
    let manifest_path = site.reports_dir().join(id.as_str()).join("manifest.pgp");
    let bob_secret = Cert::from_bytes(&bob.export_secret(&bob_fpr, "")).unwrap();
    let json = opener(&bob_secret, None)
        .open_manifest(&site.store(), &id)
        .unwrap()
        .manifest
        .to_json();
    // The user's gpg.conf answers passphrase prompts from a file, unseen.
    let pw = write(site.path(), "pw.txt", b"hunter2\n");
    let conf = bob.home.path().join("gpg.conf");
    let mut text = fs::read_to_string(&conf).unwrap();
    text.push_str(&format!(
        "pinentry-mode loopback\npassphrase-file {}\n",
        pw.display()
    ));
    fs::write(&conf, text).unwrap();
    let plain = write(site.path(), "manifest.json", &json);
    for (name, extra) in [
        ("symmetric only", &[][..]),
        (
            "symmetric and Bob",
            &["--encrypt", "--recipient", bob_fpr.as_str()][..],
        ),
    ] {
        let crafted = site.path().join("crafted.pgp");
        let _ = fs::remove_file(&crafted);
        let mut args = vec![
            "--passphrase",
            "hunter2",
            "--compress-algo",
            "none",
            "--symmetric",
        ];
        args.extend_from_slice(extra);
        let crafted_s = crafted.to_str().unwrap().to_string();
        let plain_s = plain.to_str().unwrap().to_string();
        args.extend_from_slice(&["--output", &crafted_s, &plain_s]);
        bob.run(&args, None);
        // gpg alone, with this gpg.conf, opens it without asking anyone.
        let direct = bob.try_run(&["--decrypt", &crafted_s], None);
        assert!(
            direct.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&direct.stderr)
        );
        fs::copy(&crafted, &manifest_path).unwrap();

        let out = site.path().join("out");
        let run = Decrypt::new(&site, id.as_str())
            .gpg()
            .out(&out)
            .env("GNUPGHOME", bob.home.path())
            .run();
        assert_refused(
            &run,
            "it can be opened with a password, which embargo never does, so it was not written by embargo (gpg was not asked)",
            &out,
        );
        let run = List::new(&site)
            .gpg()
            .json()
            .env("GNUPGHOME", bob.home.path())
            .run();
        assert!(run.status.success(), "{name}: {}", stderr(&run));
        assert!(
            !stdout(&run).contains("password only"),
            "{name}: {}",
            stdout(&run)
        );
        assert!(
            stdout(&run).contains("unreadable"),
            "{name}: {}",
            stdout(&run)
        );
    }
}
