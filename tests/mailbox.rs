//! The mailbox poller (README: "Reports by e-mail") against a real Dovecot, a real
//! SMTP server (aiosmtpd) and stock GnuPG: exactly once, crash safe, fail
//! closed, with acknowledgements that never quote the report.

mod common;
#[path = "common/server.rs"]
mod server;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, SystemTime};

use common::dovecot::Dovecot;
use common::smtp::SmtpSink;
use common::{Gpg, GpgKeyType, Site, Spawned, wait_until, wait_until_async, wait_until_with};
use embargo::id::ReportId;
use embargo::keys::IntakeSecrets;

/// A site with one gpg-made maintainer key (expiring in a year).
struct Env {
    site: Site,
    gpg: Gpg,
    fpr: String,
}

fn env() -> Env {
    let site = Site::new();
    let gpg = Gpg::new();
    let fpr = gpg.gen_key("Maintainer <m@example.org>", GpgKeyType::Cv25519, "", "1y");
    site.add_key("maintainer.asc", &gpg.export_public(&fpr));
    Env { site, gpg, fpr }
}

impl Env {
    /// `embargo` run from the site, with plain (uncoloured) log lines.
    fn embargo(&self) -> std::process::Command {
        let mut cmd = self.site.embargo();
        cmd.env("NO_COLOR", "1");
        cmd
    }

    fn poll_once(&self) -> Output {
        self.embargo()
            .args(["poll", "-c", "embargo.toml", "--once"])
            .output()
            .unwrap()
    }

    /// The report ID the poller must give `raw`.
    fn id_for(&self, raw: &[u8]) -> String {
        let secrets =
            IntakeSecrets::load_or_create(&self.site.state_dir(), "Test Project").unwrap();
        ReportId::for_message(secrets.hmac_secret(), raw).to_string()
    }

    /// Every message sealed exactly once: one report per message, no
    /// other, and its 001.pgp decrypts with gpg to the exact bytes.
    fn assert_sealed_exactly(&self, raws: &[Vec<u8>], decrypt_every: usize) {
        let ids: BTreeSet<String> = self.site.report_ids().into_iter().collect();
        let expected: BTreeSet<String> = raws.iter().map(|r| self.id_for(r)).collect();
        assert_eq!(expected.len(), raws.len(), "test messages must differ");
        assert_eq!(
            ids, expected,
            "reports in the store are not exactly the messages"
        );
        for (i, raw) in raws.iter().enumerate() {
            if i % decrypt_every != 0 {
                continue;
            }
            let dir = self.site.reports_dir().join(self.id_for(raw));
            let (plain, _) = self.gpg.decrypt(&dir.join("001.pgp"));
            assert!(
                plain == *raw,
                "message {i}: 001.pgp does not decrypt to the original bytes"
            );
        }
        assert!(
            self.site.staging_entries().is_empty(),
            "{:?}",
            self.site.staging_entries()
        );
    }

    /// The decrypted manifest of the report for `raw`.
    fn manifest(&self, raw: &[u8]) -> serde_json::Value {
        let path = self
            .site
            .reports_dir()
            .join(self.id_for(raw))
            .join("manifest.pgp");
        // The manifest is signed by the intake key: gpg checks it.
        self.gpg
            .import(&common::armored_public(&self.site.signing_cert()));
        let (json, status) = self.gpg.decrypt(&path);
        assert!(status.contains("GOODSIG"), "{status}");
        serde_json::from_slice(&json).unwrap()
    }
}

/// Kills an `embargo` child by PID if a test fails while it runs.
impl Env {
    /// Runs `embargo poll --once` until a run ends by itself with `left()`
    /// at zero. Each run is SIGKILLed once a random 1 to 12 more reports are
    /// committed, plus a random 0 to 4 ms, so that kills land mid-batch (in a
    /// seal, between commit and delete, …) however fast the machine is.
    /// Returns (kills, runs).
    fn drain_with_random_kills(&self, mut left: impl FnMut() -> usize) -> (u32, u32) {
        use std::os::unix::process::ExitStatusExt;
        let mut seed = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            | 1;
        eprintln!("random seed {seed}");
        let (mut kills, mut runs) = (0, 0);
        loop {
            runs += 1;
            assert!(runs < 400, "the poller never finished");
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let target = self.site.report_ids().len() + 1 + (seed % 12) as usize;
            let extra = Duration::from_millis((seed >> 8) % 5);
            let mut child = Proc(
                self.embargo()
                    .args(["poll", "-c", "embargo.toml", "--once"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap(),
            );
            let started = std::time::Instant::now();
            let status = loop {
                if let Some(status) = child.0.try_wait().unwrap() {
                    break status;
                }
                if self.site.report_ids().len() >= target {
                    // The random delay is the point: it moves the kill
                    // within the batch.
                    std::thread::sleep(extra);
                    let _ = child.0.kill();
                    break child.0.wait().unwrap();
                }
                assert!(
                    started.elapsed() < Duration::from_secs(120),
                    "a poller run hung"
                );
                // Not wait_until: its 50 ms step is too coarse to land
                // the kill within a few commits of the target.
                std::thread::sleep(Duration::from_millis(2));
            };
            if status.signal() == Some(9) {
                kills += 1;
                continue;
            }
            assert!(status.success(), "poll --once failed: {status}");
            if left() == 0 {
                return (kills, runs);
            }
        }
    }
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn plain_mail(n: usize, body_len: usize) -> Vec<u8> {
    let body: String = (0..body_len)
        .map(|i| char::from(b'a' + ((i * 7 + n) % 26) as u8))
        .collect::<String>();
    let body = body
        .as_bytes()
        .chunks(72)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("\r\n");
    format!(
        "From: Reporter {n} <r{n}@example.org>\r\nTo: security@example.org\r\nSubject: Overflow number {n}\r\nMessage-ID: <m{n}@example.org>\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out.as_bytes()
        .chunks(76)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("\r\n")
}

/// The round-trip corpus: (label, raw message).
fn corpus(gpg: &Gpg, fpr: &str) -> Vec<(&'static str, Vec<u8>)> {
    let mut v: Vec<(&'static str, Vec<u8>)> = Vec::new();
    v.push(("plain", plain_mail(1, 300)));
    let bin = common::random_bytes(20_000, 7);
    let mut multipart = b"From: Multi <multi@example.org>\r\nSubject: PoC attached\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"BOUND\"\r\n\r\n--BOUND\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSee the attached PoC.\r\n--BOUND\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"poc.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n".to_vec();
    multipart.extend_from_slice(base64(&bin).as_bytes());
    multipart.extend_from_slice(b"\r\n--BOUND\r\nContent-Type: application/x-raw; name=\"raw8bit.dat\"\r\nContent-Transfer-Encoding: 8bit\r\n\r\n");
    multipart.extend(common::random_bytes(3000, 9).into_iter().map(|b| {
        if b == 0 || b == b'\r' || b == b'\n' {
            0x80
        } else {
            b
        }
    }));
    multipart.extend_from_slice(b"\r\n--BOUND--\r\n");
    v.push(("multipart", multipart));
    let armored = String::from_utf8(
        gpg.run(
            &["--armor", "--encrypt", "-r", fpr],
            Some(b"the real report"),
        )
        .stdout,
    )
    .unwrap()
    .replace('\n', "\r\n");
    v.push((
        "pgp-mime",
        format!("From: Careful <careful@example.org>\r\nSubject: encrypted\r\nMIME-Version: 1.0\r\nContent-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=\"ENC\"\r\n\r\n--ENC\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n\r\n--ENC\r\nContent-Type: application/octet-stream; name=\"encrypted.asc\"\r\n\r\n{armored}\r\n--ENC--\r\n").into_bytes(),
    ));
    v.push((
        "inline-pgp",
        format!("From: Inline <inline@example.org>\r\nSubject: inline\r\n\r\n{armored}\r\n")
            .into_bytes(),
    ));
    v.push(("unterminated multipart", b"From: a@example.org\r\nSubject: broken\r\nContent-Type: multipart/mixed; boundary=\"zz\"\r\n\r\n--zz\r\nContent-Type: text/plain\r\n\r\nunterminated\r\n--zz\r\nContent-Type: text/plain\r\n".to_vec()));
    v.push(("bad base64", b"From: b@example.org\r\nSubject: bad b64\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!@@@###not base64***\r\n".to_vec()));
    v.push(("bad charset and qp", b"From: c@example.org\r\nSubject: qp\r\nContent-Type: text/plain; charset=x-no-such-charset\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=ZZ=\r\n=\r\n".to_vec()));
    v.push(("bad encoded word", b"From: =?utf-8?B?////?= <d@example.org>\r\nSubject: =?x-unknown?Q?=FF=FE?= =?utf-8?B?****?=\r\n\r\nbody\r\n".to_vec()));
    v.push((
        "no headers",
        b"just a line of text without any header\r\n".to_vec(),
    ));
    v.push(("8-bit junk", b"Subject: \xff\xfe\x80 junk\r\nFrom: \xc3\x28 <\xff@bad>\r\nX-\xf0\x28\x8c\x28: \x80\r\n\r\nbody \xff\xfe\r\n".to_vec()));
    v.push((
        "no boundary",
        b"From: e@example.org\r\nContent-Type: multipart/alternative\r\n\r\n--x\r\n\r\ntext\r\n"
            .to_vec(),
    ));
    v.push((
        "huge header",
        format!(
            "From: f@example.org\r\nSubject: {}\r\nX-Long: {}\r\n\r\nbody\r\n",
            "S".repeat(5000),
            "x".repeat(20_000)
        )
        .into_bytes(),
    ));
    let mut nested = String::from("From: g@example.org\r\nSubject: nested\r\n");
    for i in 0..60 {
        nested.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n--b{i}\r\n"
        ));
    }
    nested.push_str("Content-Type: text/plain\r\n\r\ndeep\r\n");
    v.push(("deep nesting", nested.into_bytes()));
    v.push((
        "nul bytes",
        b"From: h@example.org\r\nSubject: nul\x00byte\r\n\r\nbefore\x00after\r\n".to_vec(),
    ));
    v
}

#[test]
fn imap_round_trip_of_plain_multipart_pgp_and_malformed_mail() {
    let e = env();
    let dovecot = Dovecot::start();
    e.site
        .write_config(&dovecot.mailbox_config(e.site.path(), ""));
    let mut imap = dovecot.client();
    let corpus = corpus(&e.gpg, &e.fpr);
    let mut served = Vec::new();
    for (label, raw) in &corpus {
        let uid = imap.append(raw);
        let bytes = imap.body(uid);
        // Dovecot serves what was appended (NUL bytes are its one exception).
        if !raw.contains(&0) {
            assert!(bytes == *raw, "{label}: Dovecot changed the message");
        }
        served.push(bytes);
    }
    let out = e.poll_once();
    let log = text(&out);
    assert!(out.status.success(), "{log}\n{}", dovecot.log());
    e.assert_sealed_exactly(&served, 1);
    assert!(imap.uids().is_empty(), "mailbox not empty");

    let m = e.manifest(&served[0]);
    assert_eq!(m["channel"], "email");
    assert_eq!(m["report"]["title"], "Overflow number 1");
    assert!(
        m["report"]["description"]
            .as_str()
            .unwrap()
            .starts_with("bipwdk"),
        "{m}"
    );
    assert_eq!(m["reporter"]["email"], "r1@example.org");
    assert_eq!(m["email"]["message_id"], "<m1@example.org>");
    assert_eq!(m["email"]["encryption"], "none");
    assert_eq!(m["attachments"][0]["role"], "original-message");
    assert_eq!(m["attachments"][0]["media_type"], "message/rfc822");
    assert_eq!(m["attachments"][0]["size"], served[0].len());
    let m = e.manifest(&served[1]);
    assert_eq!(
        m["email"]["attachments"],
        serde_json::json!(["poc.bin", "raw8bit.dat"])
    );
    assert_eq!(m["report"]["description"], "See the attached PoC.");
    assert_eq!(e.manifest(&served[2])["email"]["encryption"], "pgp-mime");
    assert_eq!(e.manifest(&served[3])["email"]["encryption"], "inline-pgp");
    // A message without a header block does not parse (docs/format.md).
    assert_eq!(
        e.manifest(&served[8])["report"]["title"],
        "(unparseable message)"
    );
    // Logs carry UIDs and IDs, never subjects or senders.
    assert!(log.contains(&e.id_for(&served[0])), "{log}");
    for secret in [
        "Overflow number",
        "r1@example.org",
        "Reporter 1",
        "PoC attached",
        "multi@example.org",
    ] {
        assert!(!log.contains(secret), "log leaks {secret:?}:\n{log}");
    }
    assert!(common::files_containing(e.site.path(), b"See the attached PoC").is_empty());
}

#[test]
fn imap_poller_killed_at_random_moments_seals_every_message_exactly_once() {
    let e = env();
    let dovecot = Dovecot::start();
    e.site
        .write_config(&dovecot.mailbox_config(e.site.path(), ""));
    let mut imap = dovecot.client();
    let raws: Vec<Vec<u8>> = (0..300)
        .map(|i| plain_mail(i, 500 + (i * 37) % 3000))
        .collect();
    for raw in &raws {
        imap.append(raw);
    }
    let (kills, rounds) = e.drain_with_random_kills(|| imap.uids().len());
    eprintln!("{kills} kills in {rounds} runs");
    assert!(
        kills >= 3,
        "the poller was not killed often enough to prove anything ({kills})"
    );
    // A last run finds nothing to do and changes nothing.
    let before = e.site.report_ids();
    assert!(e.poll_once().status.success());
    assert_eq!(e.site.report_ids(), before);
    e.assert_sealed_exactly(&raws, 15);
    assert!(imap.uids().is_empty());
}

#[test]
fn committed_but_not_deleted_mail_and_uidvalidity_reset_give_no_duplicates() {
    let e = env();
    let mut dovecot = Dovecot::start();
    e.site
        .write_config(&dovecot.mailbox_config(e.site.path(), ""));
    let raws: Vec<Vec<u8>> = (0..6).map(|i| plain_mail(i, 200)).collect();
    {
        let mut imap = dovecot.client();
        for raw in &raws {
            imap.append(raw);
        }
    }
    // As if a poller crashed after committing three reports, before deleting.
    let intake = e.site.intake();
    for raw in &raws[..3] {
        let (outcome, _) = embargo::mailbox::seal_message(&intake, raw).unwrap();
        assert!(matches!(outcome, embargo::mailbox::Outcome::Sealed(_)));
    }
    let (again, _) = embargo::mailbox::seal_message(&intake, &raws[0]).unwrap();
    assert_eq!(
        again,
        embargo::mailbox::Outcome::AlreadySealed(e.id_for(&raws[0]).parse().unwrap())
    );
    drop(intake);
    let before = dovecot.client().uidvalidity();
    // Dovecot's UIDVALIDITY is the creation time in seconds: the reset
    // only changes it once the clock has moved past `before`.
    wait_until(
        "the clock to pass UIDVALIDITY",
        Duration::from_secs(5),
        || {
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_secs()
                > u64::from(before)
        },
    );
    dovecot.reset_uidvalidity();
    let mut imap = dovecot.client();
    assert_ne!(imap.uidvalidity(), before, "UIDVALIDITY did not change");
    assert_eq!(imap.uids().len(), 6);
    let out = e.poll_once();
    assert!(out.status.success(), "{}", text(&out));
    e.assert_sealed_exactly(&raws, 1);
    assert!(imap.uids().is_empty());
    assert!(text(&out).contains("already sealed"), "{}", text(&out));
}

#[test]
fn expired_key_seals_nothing_and_leaves_mail_unseen() {
    let e = env();
    let dovecot = Dovecot::start();
    e.site
        .write_config(&dovecot.mailbox_config(e.site.path(), ""));
    let mut imap = dovecot.client();
    let raws: Vec<Vec<u8>> = (0..3).map(|i| plain_mail(i, 100)).collect();
    let uids: Vec<u32> = raws.iter().map(|r| imap.append(r)).collect();
    // Two years on, the maintainer key (valid for one) has expired.
    let later = embargo::clock::rfc3339(SystemTime::now() + Duration::from_secs(2 * 366 * 86_400));
    let out = e
        .embargo()
        .args(["--now", &later, "poll", "-c", "embargo.toml", "--once"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("no usable maintainer certificate"),
        "{}",
        text(&out)
    );
    assert!(e.site.report_ids().is_empty());
    assert_eq!(imap.uids(), uids);
    for (uid, raw) in uids.iter().zip(&raws) {
        let flags = imap.flags(*uid);
        assert!(
            !flags.contains("\\Seen") && !flags.contains("\\Deleted"),
            "{flags}"
        );
        assert!(imap.body(*uid) == *raw);
    }
    // With the key valid again, the same messages are sealed.
    assert!(e.poll_once().status.success());
    e.assert_sealed_exactly(&raws, 1);
}

#[test]
fn another_clients_deleted_message_is_not_expunged() {
    let e = env();
    let dovecot = Dovecot::start();
    e.site
        .write_config(&dovecot.mailbox_config(e.site.path(), ""));
    let mut imap = dovecot.client();
    let raws: Vec<Vec<u8>> = (0..3).map(|i| plain_mail(i, 100)).collect();
    let uids: Vec<u32> = raws.iter().map(|r| imap.append(r)).collect();
    imap.ok(&format!("UID STORE {} +FLAGS (\\Deleted)", uids[1]));
    let out = e.poll_once();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        imap.uids(),
        vec![uids[1]],
        "only the other client's message may remain"
    );
    assert!(imap.flags(uids[1]).contains("\\Deleted"));
    e.assert_sealed_exactly(&[raws[0].clone(), raws[2].clone()], 1);
}

#[test]
fn oversized_mail_stays_and_is_logged_by_uid_only() {
    let e = env();
    let dovecot = Dovecot::start();
    e.site.write_config(&format!(
        "[limits]\nmax_attachment_bytes = 4000\n{}",
        dovecot.mailbox_config(e.site.path(), "")
    ));
    let mut imap = dovecot.client();
    let small = plain_mail(1, 500);
    let big = plain_mail(2, 10_000);
    imap.append(&small);
    let big_uid = imap.append(&big);
    let out = e.poll_once();
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    assert_eq!(imap.uids(), vec![big_uid]);
    assert!(
        log.contains(&format!("uid={big_uid}")) && log.contains("max_attachment_bytes"),
        "{log}"
    );
    assert!(!log.contains("Overflow number 2"), "{log}");
    e.assert_sealed_exactly(&[small], 1);
}

#[test]
fn after_sealing_move_puts_mail_in_another_folder() {
    let e = env();
    let dovecot = Dovecot::start();
    e.site
        .write_config(&dovecot.mailbox_config(e.site.path(), "after_sealing = \"move:Sealed\""));
    let mut imap = dovecot.client();
    imap.ok("CREATE Sealed");
    let raws: Vec<Vec<u8>> = (0..2).map(|i| plain_mail(i, 100)).collect();
    for raw in &raws {
        imap.append(raw);
    }
    let out = e.poll_once();
    assert!(out.status.success(), "{}", text(&out));
    assert!(imap.uids().is_empty());
    let status = imap.ok("STATUS Sealed (MESSAGES)");
    assert!(String::from_utf8_lossy(&status[0]).contains("MESSAGES 2"));
    e.assert_sealed_exactly(&raws, 1);
}

#[test]
fn acknowledgements_carry_the_id_and_no_report_content() {
    let e = env();
    let dovecot = Dovecot::start();
    let smtp = SmtpSink::start();
    e.site.write_config(&format!(
        "policy_url = \"https://example.org/security\"\n[maintainers]\nnotify = [\"mailto:team@example.org\"]\n{}\n{}",
        smtp.smtp_config(),
        dovecot.mailbox_config(e.site.path(), "")
    ));
    let mut imap = dovecot.client();
    let human = b"Authentication-Results: mx.example.org; spf=pass smtp.mailfrom=rita@example.org; dmarc=pass header.from=example.org\r\nFrom: Rita Reporter <rita@example.org>\r\nTo: security@example.org\r\nSubject: CANARY-SUBJ-7731 remote crash\r\nMessage-ID: <ack1@example.org>\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n\r\nCANARY-BODY-7731: send 4 KiB of A.\r\n".to_vec();
    let robot = b"From: Vacation Bot <bot@example.org>\r\nSubject: Re: CANARY-SUBJ-7731\r\nAuto-Submitted: auto-replied\r\nMessage-ID: <ack2@example.org>\r\n\r\nCANARY-BODY-7731 I am away.\r\n".to_vec();
    imap.append(&human);
    imap.append(&robot);
    let out = e.poll_once();
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    e.assert_sealed_exactly(&[human.clone(), robot.clone()], 1);
    let (human_id, robot_id) = (e.id_for(&human), e.id_for(&robot));

    wait_until(
        "an acknowledgement and a notice",
        Duration::from_secs(10),
        || smtp.received().len() >= 2,
    );
    let mails = smtp.received();
    let to_rita: Vec<_> = mails
        .iter()
        .filter(|m| m.rcpt_to.contains("rita@example.org"))
        .collect();
    assert_eq!(
        to_rita.len(),
        1,
        "exactly one acknowledgement to the human sender"
    );
    let ack = &to_rita[0].text;
    assert!(ack.contains(&human_id), "{ack}");
    assert!(ack.contains("In-Reply-To: <ack1@example.org>"), "{ack}");
    assert!(ack.contains("Auto-Submitted: auto-replied"), "{ack}");
    assert!(ack.contains("https://example.org/security"), "{ack}");
    assert!(
        !mails.iter().any(|m| m.rcpt_to.contains("bot@example.org")),
        "an auto-reply was answered"
    );
    let notices: Vec<_> = mails
        .iter()
        .filter(|m| m.rcpt_to.contains("team@example.org"))
        .collect();
    // Batched by crate::notify: "N new reports", never an ID or content.
    let announced: u64 = notices
        .iter()
        .map(|m| {
            let subject = m
                .text
                .lines()
                .find(|l| l.starts_with("Subject: "))
                .unwrap_or_default();
            subject
                .split_whitespace()
                .find_map(|w| w.parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum();
    assert_eq!(
        announced, 2,
        "both new reports announced to the maintainers"
    );
    assert!(
        notices
            .iter()
            .all(|m| !m.text.contains(&human_id) && !m.text.contains(&robot_id))
    );
    for m in &mails {
        assert!(
            !m.text.contains("CANARY"),
            "report content in a sent mail:\n{}",
            m.text
        );
    }
    assert!(!log.contains("CANARY") && !log.contains("rita@"), "{log}");
}

#[test]
fn long_running_poller_uses_idle_holds_the_lock_and_stops_on_sigterm() {
    let e = env();
    let dovecot = Dovecot::start();
    // A long poll interval: only IDLE can make new mail show up quickly.
    e.site.write_config(
        &dovecot
            .mailbox_config(e.site.path(), "poll_interval = \"10m\"")
            .replace("poll_interval = \"1s\"\n", ""),
    );
    let mut imap = dovecot.client();
    let mut child = Spawned::start(e.embargo().args(["poll", "-c", "embargo.toml"]));
    let logs = child.logs.clone();
    wait_until_with(
        "the poller to start",
        Duration::from_secs(20),
        || logs.contains("idle=true"),
        || logs.text(),
    );
    // Mail appended now must arrive through IDLE, so wait until the
    // poller's session is idling at the server.
    wait_until_with(
        "the poller's IMAP session to enter IDLE",
        Duration::from_secs(20),
        || dovecot.idle_sessions() > 0,
        || logs.text(),
    );
    let raws: Vec<Vec<u8>> = (0..3).map(|i| plain_mail(i, 100)).collect();
    for raw in &raws {
        imap.append(raw);
    }
    wait_until_with(
        "IDLE to pick up new mail",
        Duration::from_secs(20),
        || imap.uids().is_empty(),
        || logs.text(),
    );
    e.assert_sealed_exactly(&raws, 1);

    // A maintainer key added while the poller runs is used for the next report.
    let gpg2 = Gpg::new();
    let fpr2 = gpg2.gen_key("Second <second@example.org>", GpgKeyType::Cv25519, "", "1y");
    e.site.add_key("second.asc", &gpg2.export_public(&fpr2));
    let late = plain_mail(99, 100);
    imap.append(&late);
    wait_until_with(
        "the late mail to be sealed",
        Duration::from_secs(20),
        || imap.uids().is_empty(),
        || logs.text(),
    );
    let part = e.site.reports_dir().join(e.id_for(&late)).join("001.pgp");
    assert!(gpg2.decrypt(&part).0 == late, "not sealed to the new key");
    assert!(e.gpg.decrypt(&part).0 == late, "not sealed to the old key");

    let second = e.poll_once();
    assert_eq!(second.status.code(), Some(1));
    assert!(
        text(&second).contains("another poller holds"),
        "{}",
        text(&second)
    );

    // SIGHUP reloads keys; it must not stop the poller.
    let reloads = || logs.count("maintainer certificates reloaded");
    let before = reloads();
    child.signal("HUP");
    let late2 = plain_mail(98, 100);
    imap.append(&late2);
    wait_until_with(
        "the poller to seal mail after SIGHUP",
        Duration::from_secs(20),
        || imap.uids().is_empty(),
        || logs.text(),
    );
    assert!(child.running(), "SIGHUP stopped the poller");
    assert_eq!(reloads(), before + 1, "SIGHUP did not reload the keys");

    child.signal("TERM");
    let status = child.exit_within("the poller on SIGTERM", Duration::from_secs(10));
    assert!(status.success(), "{status}: {}", logs.text());
}

fn maildir_site(e: &Env) -> std::path::PathBuf {
    let md = e.site.path().join("Maildir");
    for sub in ["new", "cur", "tmp"] {
        fs::create_dir_all(md.join(sub)).unwrap();
    }
    e.site.write_config(
        "[mailbox]\nkind = \"maildir\"\nfolder = \"Maildir\"\npoll_interval = \"1s\"\n",
    );
    md
}

fn deliver(md: &Path, n: usize, raw: &[u8]) {
    let name = format!("{}.M{n}P1.test", 1_700_000_000 + n);
    fs::write(md.join("tmp").join(&name), raw).unwrap();
    fs::rename(md.join("tmp").join(&name), md.join("new").join(&name)).unwrap();
}

fn maildir_left(md: &Path) -> usize {
    fs::read_dir(md.join("new")).unwrap().count() + fs::read_dir(md.join("cur")).unwrap().count()
}

#[test]
fn maildir_round_trip_keeps_exact_bytes() {
    let e = env();
    let md = maildir_site(&e);
    // Maildir keeps every byte: bare LF, NUL and 8-bit junk included.
    let mut raws: Vec<Vec<u8>> = corpus(&e.gpg, &e.fpr).into_iter().map(|(_, r)| r).collect();
    raws.push(b"Subject: lf only\n\nbody\x00\xff\n".to_vec());
    raws.push(Vec::new());
    for (n, raw) in raws.iter().enumerate() {
        deliver(&md, n, raw);
    }
    let out = e.poll_once();
    assert!(out.status.success(), "{}", text(&out));
    e.assert_sealed_exactly(&raws, 1);
    assert_eq!(maildir_left(&md), 0);
    assert_eq!(e.manifest(&raws[0])["report"]["title"], "Overflow number 1");
}

#[test]
fn maildir_poller_killed_at_random_moments_seals_every_message_exactly_once() {
    let e = env();
    let md = maildir_site(&e);
    let raws: Vec<Vec<u8>> = (0..200)
        .map(|i| plain_mail(i, 500 + (i * 53) % 3000))
        .collect();
    for (n, raw) in raws.iter().enumerate() {
        deliver(&md, n, raw);
    }
    let (kills, rounds) = e.drain_with_random_kills(|| maildir_left(&md));
    eprintln!("{kills} kills in {rounds} runs");
    assert!(
        kills >= 3,
        "the poller was not killed often enough to prove anything ({kills})"
    );
    e.assert_sealed_exactly(&raws, 10);
}

#[test]
fn plain_imap_to_a_remote_host_is_refused() {
    let e = env();
    fs::write(e.site.path().join("pw"), "x\n").unwrap();
    e.site.write_config("[mailbox]\nhost = \"imap.example.org\"\ntls = \"none\"\nusername = \"u\"\npassword_file = \"pw\"\n");
    let out = e.poll_once();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("only allowed for a loopback host"),
        "{}",
        text(&out)
    );
}

#[test]
fn without_a_usable_key_the_poller_retries_and_health_says_why() {
    let e = env();
    let md = maildir_site(&e);
    let key = fs::read(e.site.keys_dir().join("maintainer.asc")).unwrap();
    fs::remove_file(e.site.keys_dir().join("maintainer.asc")).unwrap();
    let raw = plain_mail(1, 100);
    deliver(&md, 1, &raw);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let shutdown = tokio_util::sync::CancellationToken::new();
        let (health, task) = embargo::mailbox::spawn(
            e.site.config(),
            embargo::clock::Clock::system(),
            shutdown.clone(),
            embargo::mailbox::Links::default(),
        )
        .unwrap();
        wait_until_async(
            "health to report the missing key",
            Duration::from_secs(10),
            || health.check().is_err(),
        )
        .await;
        let problem = health.check().unwrap_err();
        assert!(
            problem.contains("no usable maintainer certificate"),
            "{problem}"
        );
        assert_eq!(
            maildir_left(&md),
            1,
            "the message must stay while no key is usable"
        );
        assert!(e.site.report_ids().is_empty());
        // The key comes back: the next retry seals the message and health recovers.
        e.site.add_key("maintainer.asc", &key);
        wait_until_async(
            "the poller to recover and seal the message",
            Duration::from_secs(20),
            || health.check().is_ok() && maildir_left(&md) == 0,
        )
        .await;
        assert_eq!(health.snapshot().sealed, 1);
        shutdown.cancel();
        let summary = task.await.unwrap().unwrap();
        assert_eq!(summary.sealed, 1);
    });
    e.assert_sealed_exactly(&[raw], 1);
}

#[test]
fn store_failure_leaves_fetched_mail_unseen_and_undeleted_until_it_is_fixed() {
    let e = env();
    let dovecot = Dovecot::start();
    e.site
        .write_config(&dovecot.mailbox_config(e.site.path(), ""));
    let mut imap = dovecot.client();
    let poller = Spawned::start(e.embargo().args(["poll", "-c", "embargo.toml"]));
    let logs = &poller.logs;
    logs.wait_for("mailbox selected", Duration::from_secs(20));
    // The store breaks while the poller runs: staging cannot be created.
    let staging = e.site.reports_dir().join(".staging");
    fs::rename(&staging, e.site.reports_dir().join(".staging-away")).unwrap();
    fs::write(&staging, b"not a directory").unwrap();
    let raw = plain_mail(1, 100);
    let uid = imap.append(&raw);
    logs.wait_for("sealing failed", Duration::from_secs(20));
    assert_eq!(imap.uids(), vec![uid]);
    let flags = imap.flags(uid);
    assert!(
        !flags.contains("\\Seen") && !flags.contains("\\Deleted"),
        "{flags}"
    );
    assert!(e.site.report_ids().is_empty());
    // Repaired: the retry (with backoff) seals and removes it.
    fs::remove_file(&staging).unwrap();
    fs::rename(e.site.reports_dir().join(".staging-away"), &staging).unwrap();
    wait_until_with(
        "the retry to seal and remove the mail",
        Duration::from_secs(30),
        || imap.uids().is_empty(),
        || logs.text(),
    );
    e.assert_sealed_exactly(&[raw], 1);
}

#[test]
fn serve_runs_the_poller_and_healthz_reports_its_failures() {
    let e = env();
    let md = maildir_site(&e);
    let config = fs::read_to_string(e.site.config_path()).unwrap();
    fs::write(
        e.site.config_path(),
        format!("listen = \"127.0.0.1:0\"\n{config}"),
    )
    .unwrap();
    let mut server = server::Server::start(&e.site);
    let logs = server.logs.clone();
    let log = || logs.text();
    let healthz = || {
        let r = reqwest::blocking::get(server.url("/healthz")).unwrap();
        (r.status().as_u16(), r.text().unwrap())
    };
    let raw = plain_mail(1, 100);
    deliver(&md, 1, &raw);
    wait_until_with(
        "serve to poll the Maildir",
        Duration::from_secs(20),
        || maildir_left(&md) == 0,
        log,
    );
    e.assert_sealed_exactly(&[raw], 1);
    assert_eq!(healthz().0, 200, "{}", healthz().1);

    // The Maildir disappears: /healthz says the poller cannot deliver.
    fs::rename(&md, e.site.path().join("Maildir-away")).unwrap();
    let last = std::cell::RefCell::new((0, String::new()));
    wait_until_with(
        "healthz to answer 503",
        Duration::from_secs(20),
        || {
            *last.borrow_mut() = healthz();
            last.borrow().0 == 503
        },
        || {
            let (status, body) = &*last.borrow();
            format!("healthz stayed {status}: {body}\n{}", log())
        },
    );
    let body = last.borrow().1.clone();
    assert!(body.contains("mailbox poller"), "{body}");
    assert!(
        !body.contains(e.site.path().to_str().unwrap()),
        "a path leaked: {body}"
    );
    fs::rename(e.site.path().join("Maildir-away"), &md).unwrap();
    wait_until_with(
        "healthz to recover",
        Duration::from_secs(30),
        || healthz().0 == 200,
        log,
    );

    server.signal("TERM");
    let status = server
        .wait_exit(Duration::from_secs(15))
        .unwrap_or_else(|| panic!("serve did not stop on SIGTERM: {}", log()));
    assert!(status.success(), "{status}: {}", log());
}

#[test]
fn untrusted_certificates_are_refused_for_implicit_tls_and_starttls() {
    let e = env();
    let dovecot = Dovecot::start_tls();
    let mut imap = dovecot.client();
    let raw = plain_mail(1, 100);
    let uid = imap.append(&raw);
    let base = dovecot.mailbox_config(e.site.path(), "");
    let implicit = base
        .replace("tls = \"none\"", "tls = \"implicit\"")
        .replace(
            &format!("port = {}", dovecot.port),
            &format!("port = {}", dovecot.tls_port.unwrap()),
        );
    let starttls = base.replace("tls = \"none\"", "tls = \"starttls\"");
    for config in [implicit, starttls] {
        e.site.write_config(&config);
        let out = e.poll_once();
        let log = text(&out);
        assert_eq!(out.status.code(), Some(1), "{log}");
        assert!(log.contains("invalid peer certificate"), "{log}");
    }
    assert!(e.site.report_ids().is_empty());
    assert_eq!(imap.uids(), vec![uid]);
    assert!(!imap.flags(uid).contains("\\Seen"));
}

#[test]
fn without_uidplus_the_poller_refuses_to_delete_and_says_why() {
    let e = env();
    let dovecot = Dovecot::start_with("imap_capability = IMAP4rev1 IDLE", false);
    e.site
        .write_config(&dovecot.mailbox_config(e.site.path(), ""));
    let mut imap = dovecot.client();
    let raw = plain_mail(1, 100);
    let uid = imap.append(&raw);
    let out = e.poll_once();
    let log = text(&out);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(
        log.contains("does not offer UIDPLUS") && log.contains("another client"),
        "{log}"
    );
    assert!(e.site.report_ids().is_empty());
    assert_eq!(imap.uids(), vec![uid]);
}

/// Nesting levels of the hostile messages below: far more than any
/// recursive parser survives on a thread's stack.
const DEEP: usize = 8_000;

/// `levels` nested multipart/mixed parts around a text part (~60 bytes a level).
fn deep_multipart(levels: usize, subject: &str) -> Vec<u8> {
    let mut m =
        format!("From: Deep <deep@example.org>\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\n");
    for i in 0..levels {
        m.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n--b{i}\r\n"
        ));
    }
    m.push_str("Content-Type: text/plain\r\n\r\nthe innermost text\r\n");
    for i in (0..levels).rev() {
        m.push_str(&format!("--b{i}--\r\n"));
    }
    m.into_bytes()
}

/// `levels` message/rfc822 parts, each holding the next.
fn deep_rfc822(levels: usize, subject: &str) -> Vec<u8> {
    let mut m = format!("From: Deep <deep@example.org>\r\nSubject: {subject}\r\n");
    for i in 0..levels {
        m.push_str(&format!(
            "Content-Type: message/rfc822\r\n\r\nSubject: forwarded {i}\r\n"
        ));
    }
    m.push_str("\r\nthe innermost text\r\n");
    m.into_bytes()
}

/// Multipart and message/rfc822 levels taking turns.
fn deep_mixed(levels: usize, subject: &str) -> Vec<u8> {
    let mut m = format!("From: Deep <deep@example.org>\r\nSubject: {subject}\r\n");
    for i in 0..levels {
        if i % 2 == 0 {
            m.push_str(&format!(
                "Content-Type: multipart/mixed; boundary=\"m{i}\"\r\n\r\n--m{i}\r\n"
            ));
        } else {
            m.push_str("Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n");
        }
    }
    m.push_str("\r\nthe innermost text\r\n");
    m.into_bytes()
}

/// The manifest of a deep message: bounded metadata from the top, nothing
/// from below the depth limit, and the raw message as the one attachment.
fn assert_bounded_metadata(m: &serde_json::Value, subject: &str, raw: &[u8]) {
    assert_eq!(m["report"]["title"], subject, "{m}");
    assert_eq!(m["report"]["description"], "", "{m}");
    assert_eq!(m["email"]["attachments"], serde_json::json!([]), "{m}");
    assert_eq!(m["reporter"]["email"], "deep@example.org", "{m}");
    assert_eq!(m["attachments"][0]["role"], "original-message");
    assert_eq!(m["attachments"][0]["size"], raw.len());
}

#[test]
fn deep_mime_nesting_through_maildir_is_sealed_whole_and_removed_once() {
    let e = env();
    let md = maildir_site(&e);
    let raws = vec![
        deep_multipart(DEEP, "Deep multipart"),
        deep_rfc822(DEEP, "Deep rfc822"),
        deep_mixed(2 * DEEP, "Deep mixed"),
        // A header block that does not parse, above deep nesting.
        [
            b"not a header line\r\n".as_slice(),
            &deep_multipart(DEEP, "x"),
        ]
        .concat(),
        plain_mail(1, 100),
    ];
    for (n, raw) in raws.iter().enumerate() {
        deliver(&md, n, raw);
    }
    // The real binary: a stack overflow would abort it (SIGSEGV/SIGABRT).
    let out = e.poll_once();
    let log = text(&out);
    assert!(out.status.success(), "{:?}\n{log}", out.status);
    assert!(log.contains("sealed=5") && log.contains("left=0"), "{log}");
    assert_eq!(maildir_left(&md), 0);
    e.assert_sealed_exactly(&raws, 1);
    assert_bounded_metadata(&e.manifest(&raws[0]), "Deep multipart", &raws[0]);
    assert_bounded_metadata(&e.manifest(&raws[1]), "Deep rfc822", &raws[1]);
    assert_bounded_metadata(&e.manifest(&raws[2]), "Deep mixed", &raws[2]);
    assert_eq!(
        e.manifest(&raws[3])["report"]["title"],
        "(unparseable message)"
    );
    assert_eq!(e.manifest(&raws[4])["report"]["title"], "Overflow number 1");
    // Nothing is sealed twice.
    let before = e.site.report_ids();
    assert!(e.poll_once().status.success());
    assert_eq!(e.site.report_ids(), before);
}

#[test]
fn deep_mime_nesting_through_imap_is_sealed_and_expunged_once() {
    let e = env();
    let dovecot = Dovecot::start();
    e.site
        .write_config(&dovecot.mailbox_config(e.site.path(), ""));
    let mut imap = dovecot.client();
    let raws = vec![
        deep_multipart(DEEP, "Deep multipart"),
        deep_rfc822(DEEP, "Deep rfc822"),
    ];
    let uids: Vec<u32> = raws.iter().map(|r| imap.append(r)).collect();
    let served: Vec<Vec<u8>> = uids.iter().map(|u| imap.body(*u)).collect();
    assert!(served == raws, "Dovecot changed a message");
    let out = e.poll_once();
    let log = text(&out);
    assert!(
        out.status.success(),
        "{:?}\n{log}\n{}",
        out.status,
        dovecot.log()
    );
    assert!(imap.uids().is_empty(), "mailbox not empty");
    e.assert_sealed_exactly(&raws, 1);
    for uid in &uids {
        let removed = log
            .lines()
            .filter(|l| {
                l.contains("removed from the mailbox") && l.contains(&format!("uid={uid} "))
            })
            .count();
        assert_eq!(removed, 1, "uid {uid} not expunged exactly once:\n{log}");
    }
    assert_bounded_metadata(&e.manifest(&raws[0]), "Deep multipart", &raws[0]);
    assert_bounded_metadata(&e.manifest(&raws[1]), "Deep rfc822", &raws[1]);
}

#[test]
fn serve_keeps_the_web_intake_up_while_the_poller_reads_hostile_mail() {
    let e = env();
    let md = maildir_site(&e);
    let config = fs::read_to_string(e.site.config_path()).unwrap();
    fs::write(
        e.site.config_path(),
        format!(
            "listen = \"127.0.0.1:0\"\nmetrics_listen = \"{}\"\n{config}max_mail_bytes = 1000000\n",
            common::METRICS_ANY_PORT
        ),
    )
    .unwrap();
    let mut srv = server::Server::start(&e.site);
    let metrics_addr = srv.bound_address("metrics listening on http://");
    let raws = vec![
        deep_multipart(DEEP, "Deep multipart"),
        deep_rfc822(DEEP, "Deep rfc822"),
        [b"\xff\xfe garbage\r\n".as_slice(), &deep_mixed(DEEP, "x")].concat(),
    ];
    let too_big = plain_mail(7, 1_200_000);
    for (n, raw) in raws.iter().enumerate() {
        deliver(&md, n, raw);
    }
    deliver(&md, 9, &too_big);
    wait_until_with(
        "serve to drain the Maildir",
        Duration::from_secs(60),
        || maildir_left(&md) <= 1,
        || srv.logs.text(),
    );
    // The web intake still answers and still seals.
    let http = server::client();
    let health = http.get(srv.url("/healthz")).send().unwrap();
    assert_eq!(health.status(), 200, "{}", srv.logs.text());
    let form = reqwest::blocking::multipart::Form::new().part(
        "report",
        reqwest::blocking::multipart::Part::bytes(common::report_json(
            "After the deep mail",
            "The intake survived.",
        )),
    );
    let r = http
        .post(srv.url("/api/v1/reports"))
        .multipart(form)
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "{}", srv.logs.text());
    let api_id = r.json::<serde_json::Value>().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut expected: BTreeSet<String> = raws.iter().map(|r| e.id_for(r)).collect();
    expected.insert(api_id);
    let ids: BTreeSet<String> = e.site.report_ids().into_iter().collect();
    assert_eq!(ids, expected);
    for raw in &raws {
        let part = e.site.reports_dir().join(e.id_for(raw)).join("001.pgp");
        assert!(e.gpg.decrypt(&part).0 == *raw, "not sealed whole");
    }
    assert_bounded_metadata(&e.manifest(&raws[0]), "Deep multipart", &raws[0]);
    assert_eq!(
        e.manifest(&raws[2])["report"]["title"],
        "(unparseable message)"
    );
    // The oversized message stays, warned about and counted once although
    // the poller looks again every second.
    let warned = || {
        srv.logs
            .text()
            .matches("message larger than [mailbox] max_mail_bytes")
            .count()
    };
    let metric = || {
        let text = http
            .get(format!("http://{metrics_addr}/metrics"))
            .send()
            .unwrap()
            .text()
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("embargo_poller_oversized_total "))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    wait_until_with(
        "the oversized mail to be counted",
        Duration::from_secs(20),
        || metric() == "1",
        || format!("metric {:?}: {}", metric(), srv.logs.text()),
    );
    // Later passes, which see it again, do not warn or count again: one
    // more message sealed proves the poller looked at the Maildir anew.
    let late = plain_mail(8, 100);
    deliver(&md, 10, &late);
    let late_dir = e.site.reports_dir().join(e.id_for(&late));
    wait_until_with(
        "the late mail to be sealed",
        Duration::from_secs(20),
        || late_dir.join("manifest.pgp").exists() && maildir_left(&md) <= 1,
        || srv.logs.text(),
    );
    assert_eq!(warned(), 1, "{}", srv.logs.text());
    assert_eq!(metric(), "1");
    assert_eq!(maildir_left(&md), 1);
    assert!(!srv.logs.text().contains("Overflow number 7"));
}

/// Runs `embargo poll --once` as a child stopped by PID if the test fails,
/// failing if it does not end within `limit`.
fn poll_once_within(e: &Env, limit: Duration) -> (std::process::ExitStatus, String) {
    let mut child = Spawned::start(e.embargo().args(["poll", "-c", "embargo.toml", "--once"]));
    let status = child.exit_within("poll --once", limit);
    (status, child.logs.text())
}

#[test]
fn huge_encoded_word_headers_are_cut_before_decoding() {
    let e = env();
    let md = maildir_site(&e);
    // 25 MB of encoded words on one line in the Subject and 5 MB in the
    // From: decoded whole (quadratically, in mailparse: 100k words took
    // 35 s) this would take hours. The From is folded, the other shape.
    let words = |n: usize, sep: &str| -> String {
        (0..n)
            .map(|i| format!("=?utf-8?q?caf=C3=A9{i}_?={sep}"))
            .collect()
    };
    let raw = format!(
        "From: Reporter {}<r@example.org>\r\nSubject: {}\r\nContent-Type: text/plain\r\n\r\nbody\r\n",
        words(200_000, "\r\n "),
        words(1_000_000, " ")
    )
    .into_bytes();
    assert!(raw.len() > 25_000_000);
    deliver(&md, 1, &raw);
    let (status, log) = poll_once_within(&e, Duration::from_secs(300));
    assert!(status.success(), "{status}\n{log}");
    assert_eq!(maildir_left(&md), 0);
    e.assert_sealed_exactly(std::slice::from_ref(&raw), 1);
    let m = e.manifest(&raw);
    let expected: String = (0..100)
        .map(|i| format!("café{i}"))
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(300)
        .collect();
    assert_eq!(m["report"]["title"], expected);
    let subject = m["email"]["subject"].as_str().unwrap();
    assert!(
        subject.starts_with("café0 café1 café2"),
        "{}",
        &subject[..50]
    );
    assert!(subject.len() <= 16 * 1024, "{}", subject.len());
    let from = m["email"]["from"].as_str().unwrap();
    assert!(from.starts_with("Reporter café0 café1"), "{}", &from[..50]);
    assert!(from.len() <= 16 * 1024, "{}", from.len());
    assert_eq!(m["report"]["description"], "body\r\n");
}

#[test]
fn oversized_mail_is_left_with_one_warning_per_run() {
    let e = env();
    let md = maildir_site(&e);
    let config = fs::read_to_string(e.site.config_path()).unwrap();
    fs::write(
        e.site.config_path(),
        format!("{config}max_mail_bytes = 20000\n"),
    )
    .unwrap();
    let big = plain_mail(1, 30_000);
    let small: Vec<Vec<u8>> = (2..5).map(|i| plain_mail(i, 100)).collect();
    deliver(&md, 1, &big);
    for (n, raw) in small.iter().enumerate() {
        deliver(&md, n + 2, raw);
    }
    let out = e.poll_once();
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    // Sealing the small ones made the drain look again: still one warning.
    assert_eq!(
        log.matches("message larger than [mailbox] max_mail_bytes: left in the Maildir")
            .count(),
        1,
        "{log}"
    );
    assert!(log.contains("sealed=3") && log.contains("left=1"), "{log}");
    assert!(log.contains("raise the limit"), "{log}");
    e.assert_sealed_exactly(&small, 1);
    let left: Vec<_> = fs::read_dir(md.join("new")).unwrap().collect();
    assert_eq!(left.len(), 1, "the big message stays unclaimed in new/");
    assert!(fs::read(left[0].as_ref().unwrap().path()).unwrap() == big);
    assert!(!log.contains("Overflow number 1"), "{log}");
}

/// A mail from `from` whose headers start with `auth` (already CRLF-ended).
fn mail_with_auth(n: usize, from: &str, auth: &str) -> Vec<u8> {
    format!(
        "{auth}From: Sender {n} <{from}>\r\nSubject: report {n}\r\nMessage-ID: <auth{n}@example.org>\r\n\r\nbody {n}\r\n"
    )
    .into_bytes()
}

fn acks_to(smtp: &SmtpSink, addr: &str) -> usize {
    smtp.received()
        .iter()
        .filter(|m| m.rcpt_to.contains(addr))
        .count()
}

#[test]
fn forged_senders_get_no_acknowledgement_and_the_hourly_cap_holds() {
    let e = env();
    let md = maildir_site(&e);
    let smtp = SmtpSink::start();
    let config = fs::read_to_string(e.site.config_path()).unwrap();
    fs::write(
        e.site.config_path(),
        format!("{config}max_acks_per_hour = 2\n{}", smtp.smtp_config()),
    )
    .unwrap();
    let ar = "Authentication-Results: ";
    let forged = [
        // No verdict from the receiving server at all.
        mail_with_auth(1, "victim1@example.org", ""),
        // The sender's own "pass" sits below the server's "fail".
        mail_with_auth(
            2,
            "victim2@example.org",
            &format!(
                "{ar}mx.example.net; dmarc=fail header.from=example.org\r\n{ar}mx.example.net; dmarc=pass header.from=example.org\r\n"
            ),
        ),
        // SPF passed, but for another domain than the From.
        mail_with_auth(
            3,
            "victim3@example.org",
            &format!("{ar}mx.example.net; spf=pass smtp.mailfrom=bounce@evil.example\r\n"),
        ),
        // DMARC passed for another From domain.
        mail_with_auth(
            4,
            "victim4@example.org",
            &format!("{ar}mx.example.net; dmarc=pass header.from=evil.example\r\n"),
        ),
        // A pass only inside a comment.
        mail_with_auth(
            5,
            "victim5@example.org",
            &format!("{ar}mx.example.net; dmarc=none (dmarc=pass header.from=example.org)\r\n"),
        ),
    ];
    let passing = |n: usize, addr: &str| {
        let domain = addr.rsplit_once('@').unwrap().1;
        mail_with_auth(
            n,
            addr,
            &format!(
                "{ar}mx.example.net;\r\n spf=pass (ok) smtp.mailfrom={addr};\r\n dmarc=pass header.from={domain}\r\n"
            ),
        )
    };
    let rita = passing(6, "rita@example.org");
    for (n, raw) in forged.iter().chain([&rita]).enumerate() {
        deliver(&md, n, raw);
    }
    let out = e.poll_once();
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("sealed=6"), "{log}");
    for n in 1..=5 {
        assert_eq!(
            acks_to(&smtp, &format!("victim{n}@example.org")),
            0,
            "forged sender {n} was answered"
        );
    }
    assert_eq!(
        log.matches("the sender is not authenticated").count(),
        5,
        "{log}"
    );
    assert_eq!(acks_to(&smtp, "rita@example.org"), 1);
    let ack = smtp
        .received()
        .into_iter()
        .find(|m| m.rcpt_to.contains("rita@example.org"))
        .unwrap();
    assert!(ack.text.contains(&e.id_for(&rita)), "{}", ack.text);

    // A flood of authenticated senders: the hourly cap (2) counts Rita's
    // acknowledgement from the run before, so one more is sent.
    let flood: Vec<Vec<u8>> = (0..4)
        .map(|i| passing(10 + i, &format!("p{i}@example.org")))
        .collect();
    for (n, raw) in flood.iter().enumerate() {
        deliver(&md, 10 + n, raw);
    }
    let out = e.poll_once();
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("sealed=4"), "{log}");
    let sent: usize = (0..4)
        .map(|i| acks_to(&smtp, &format!("p{i}@example.org")))
        .sum();
    assert_eq!(sent, 1, "the hourly cap did not hold");
    assert_eq!(smtp.received().len(), 2);
    assert_eq!(log.matches("max_acks_per_hour").count(), 3, "{log}");
    let times = fs::read_to_string(e.site.state_dir().join("ack-times")).unwrap();
    assert_eq!(times.lines().count(), 2, "{times}");
    assert!(!times.contains('@'), "{times}");
}

/// A message of exactly `size` bytes (CRLF lines, so Dovecot keeps it as is).
fn mail_of_size(n: usize, size: usize) -> Vec<u8> {
    let mut m = format!("From: r{n}@example.org\r\nSubject: sized {n}\r\n\r\n").into_bytes();
    let mut i = 0;
    while m.len() < size {
        let left = size - m.len();
        if left >= 74 {
            m.extend(std::iter::repeat_n(b'a' + (i % 26) as u8, 72));
            m.extend_from_slice(b"\r\n");
        } else if left >= 2 {
            m.extend(std::iter::repeat_n(b'z', left - 2));
            m.extend_from_slice(b"\r\n");
        } else {
            m.push(b'.');
        }
        i += 1;
    }
    assert_eq!(m.len(), size);
    m
}

#[test]
fn imap_fetches_big_messages_in_pieces_byte_exact() {
    let e = env();
    let dovecot = Dovecot::start();
    e.site
        .write_config(&dovecot.mailbox_config(e.site.path(), ""));
    let mut imap = dovecot.client();
    // Around the 1 MiB piece size the poller asks for, and several pieces.
    let mib = 1024 * 1024;
    let raws: Vec<Vec<u8>> = [mib - 1, mib, mib + 1, 3 * mib + 5]
        .iter()
        .enumerate()
        .map(|(n, size)| mail_of_size(n, *size))
        .collect();
    for raw in &raws {
        let uid = imap.append(raw);
        assert!(imap.body(uid) == *raw, "Dovecot changed the message");
    }
    let out = e.poll_once();
    assert!(out.status.success(), "{}", text(&out));
    assert!(imap.uids().is_empty());
    e.assert_sealed_exactly(&raws, 1);
}
