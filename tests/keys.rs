//! `embargo keys` and `embargo seal` from the command line: key problems,
//! fail-closed sealing, and input errors, each with its message and exit code.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Output;

use common::*;

fn run(site: &Site, args: &[&str]) -> Output {
    let mut cmd = site.embargo();
    cmd.args(args);
    if !args.contains(&"-c") {
        cmd.arg("-c").arg(site.config_path());
    }
    cmd.output().unwrap()
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// An RFC 3339 instant `days` from now.
fn days_from_now(days: i64) -> String {
    let t = std::time::SystemTime::now() + std::time::Duration::from_secs((days * 86_400) as u64);
    embargo::clock::rfc3339(t)
}

#[test]
fn keys_check_names_each_problem_and_fails_when_none_is_usable() {
    let gpg = Gpg::new();
    let site = Site::new();
    let expiring = gpg.gen_key("Expiring <exp@example.org>", GpgKeyType::Cv25519, "", "1d");
    let revoked = gpg.gen_key("Revoked <rev@example.org>", GpgKeyType::Cv25519, "", "0");
    gpg.revoke(&revoked);
    let sign_only = gpg.gen_key("Signer <sig@example.org>", GpgKeyType::SignOnly, "", "0");
    site.add_key("expiring.asc", &gpg.export_public(&expiring));
    site.add_key("revoked.asc", &gpg.export_public(&revoked));
    site.add_key("signonly.asc", &gpg.export_public(&sign_only));
    site.add_key("garbage.asc", b"this is not a key");
    fs::write(site.keys_dir().join("README.md"), "not a key file, ignored").unwrap();

    // Today the expiring key is usable, and flagged as expiring soon.
    let out = run(&site, &["keys", "check"]);
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains(&expiring) && stdout.contains("usable (expires soon)"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&revoked) && stdout.contains("NOT USABLE: revoked"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&sign_only) && stdout.contains("no alive, non-revoked encryption subkey"),
        "{stdout}"
    );
    assert!(
        stdout.contains("garbage.asc") && stdout.contains("not an OpenPGP certificate"),
        "{stdout}"
    );
    assert!(!stdout.contains("README"), "{stdout}");
    assert!(stdout.contains("1 of 3 certificates usable"), "{stdout}");

    // Three days on it has expired: nothing is usable, exit 1 with the reasons.
    let later = days_from_now(3);
    let out = run(&site, &["--now", &later, "keys", "check"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("NOT USABLE: expired"), "{stdout}");
    assert!(
        stderr.contains("no usable maintainer certificate"),
        "{stderr}"
    );
    assert!(
        stderr.contains("embargo keys check"),
        "the error says what to run: {stderr}"
    );

    // Sealing at that time fails closed and stores nothing.
    let inputs = tempfile::tempdir().unwrap();
    let report = inputs.path().join("r.json");
    fs::write(&report, report_json("t", "d")).unwrap();
    let out = run(
        &site,
        &[
            "--now",
            &later,
            "seal",
            "--report",
            report.to_str().unwrap(),
        ],
    );
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("no usable maintainer certificate") && stderr.contains("expired"),
        "{stderr}"
    );
    assert!(site.report_ids().is_empty());
}

#[test]
fn a_secret_key_in_keys_dir_is_refused_by_name() {
    let gpg = Gpg::new();
    let site = Site::new();
    let fpr = gpg.gen_key("Careless <c@example.org>", GpgKeyType::Cv25519, "", "0");
    site.add_key("good.asc", &gpg.export_public(&fpr));
    site.add_key("oops.asc", &gpg.export_secret(&fpr, ""));
    let report = site.tmp_dir().join("r.json");
    fs::write(&report, report_json("t", "d")).unwrap();
    for args in [
        &["keys", "check"][..],
        &["seal", "--report", report.to_str().unwrap()][..],
    ] {
        let out = run(&site, args);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("oops.asc") && stderr.contains("secret key material"),
            "{stderr}"
        );
    }
    // Binary secret keys with another extension are found too.
    fs::remove_file(site.keys_dir().join("oops.asc")).unwrap();
    let bin = gpg.run(&["--export-secret-keys", &fpr], None).stdout;
    fs::write(site.keys_dir().join("backup.key"), bin).unwrap();
    let out = run(&site, &["keys", "check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("backup.key"), "{}", text(&out).1);
}

#[test]
fn an_empty_keys_dir_fails_closed() {
    let site = Site::new();
    let out = run(&site, &["keys", "check"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout.contains("(none: put the maintainers' public certificates here"),
        "{stdout}"
    );
    assert!(
        stderr.contains("holds no *.asc or *.pgp certificate"),
        "{stderr}"
    );
    fs::remove_dir(site.keys_dir()).unwrap();
    let out = run(&site, &["keys", "check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).1.contains("cannot read keys directory"),
        "{}",
        text(&out).1
    );
}

#[test]
fn keys_signing_prints_the_intake_certificate_and_keeps_its_secret_private() {
    let site = Site::new();
    let out = run(&site, &["keys", "signing"]);
    let (stdout, _) = text(&out);
    assert!(out.status.success());
    assert!(
        stdout.starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----"),
        "{stdout}"
    );
    assert!(!stdout.contains("PRIVATE"));
    let mode = |p: &str| {
        fs::metadata(site.state_dir().join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("signing-key.pgp"), 0o600);
    assert_eq!(mode("hmac.key"), 0o600);
    assert_eq!(
        fs::metadata(site.state_dir()).unwrap().permissions().mode() & 0o777,
        0o700
    );
    // Stable across runs: the same key is printed again.
    assert_eq!(text(&run(&site, &["keys", "signing"])).0, stdout);
}

#[test]
fn seal_prints_an_id_and_refuses_bad_input_without_storing_anything() {
    let site = Site::new();
    site.add_key(
        "alice.asc",
        &armored_public(&sequoia_key("alice <a@example.org>")),
    );
    let inputs = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let p = inputs.path().join(name);
        fs::write(&p, bytes).unwrap();
        p.to_str().unwrap().to_string()
    };
    let good = write("good.json", &report_json("t", "d"));
    let poc = write("poc.txt", b"proof");

    let out = run(&site, &["seal", "--report", &good, &poc]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let id = stdout.trim();
    assert!(id.parse::<embargo::id::ReportId>().is_ok(), "{id}");
    assert_eq!(site.report_ids(), vec![id.to_string()]);

    let cases: [(&str, Vec<u8>, &str); 4] = [
        ("bad.json", b"{not json".to_vec(), "not valid input JSON"),
        (
            "notitle.json",
            br#"{"report":{"description":"d"}}"#.to_vec(),
            "title is required",
        ),
        (
            "typo.json",
            br#"{"report":{"title":"t","description":"d","severty":"high"}}"#.to_vec(),
            "severty",
        ),
        (
            "cvss.json",
            br#"{"report":{"title":"t","description":"d","cvss_vector":"CVSS:3.1/AV:Q"}}"#.to_vec(),
            "cvss_vector",
        ),
    ];
    for (name, bytes, expected) in cases {
        let path = write(name, &bytes);
        let out = run(&site, &["seal", "--report", &path, &poc]);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
        assert!(stderr.contains(expected), "{name}: {stderr}");
        assert!(stderr.contains("nothing was stored"), "{name}: {stderr}");
    }
    let out = run(&site, &["seal", "--report", &good, "/nonexistent/poc"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("/nonexistent/poc"));
    assert_eq!(site.report_ids().len(), 1, "no failed seal stored anything");
    assert!(site.staging_entries().is_empty());

    // Usage errors exit 2.
    let out = run(&site, &["seal"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn config_errors_name_the_key() {
    let site = Site::new();
    site.write_config("[limits]\nmax_attachmnets = 3");
    let out = run(&site, &["keys", "check"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("max_attachmnets"), "{stderr}");
    let out = site
        .embargo()
        .args(["keys", "check"])
        .env("EMBARGO_CONFIG", site.path().join("missing.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("missing.toml"), "{}", text(&out).1);
}

/// Secret key material in every shape it was found to slip through in:
/// (file name, bytes). Names rotate through extensions the loader does
/// not treat as certificates, since the scan covers every file.
fn secret_key_files() -> Vec<(String, Vec<u8>)> {
    use openpgp::armor::{Kind, Writer};
    use openpgp::serialize::SerializeInto;
    use openpgp::serialize::stream::{Compressor, LiteralWriter, Message};
    use sequoia_openpgp as openpgp;
    let cert = sequoia_key("leaked <leak@example.org>");
    let other = sequoia_key("other <other@example.org>");
    let subkey =
        openpgp::Packet::from(cert.keys().subkeys().secret().next().unwrap().key().clone())
            .to_vec()
            .unwrap();
    let primary = openpgp::Packet::from(
        cert.primary_key()
            .key()
            .clone()
            .parts_into_secret()
            .unwrap(),
    )
    .to_vec()
    .unwrap();
    let tsk = cert.as_tsk().to_vec().unwrap();
    let armor = |kind: Kind, bytes: &[u8]| {
        let mut w = Writer::new(Vec::new(), kind).unwrap();
        std::io::Write::write_all(&mut w, bytes).unwrap();
        w.finalize().unwrap()
    };
    let wrapped = |compress: bool| {
        let mut out = Vec::new();
        let message = Message::new(&mut out);
        let mut w = if compress {
            let mut c = Compressor::new(message).build().unwrap();
            std::io::Write::write_all(&mut c, &tsk).unwrap();
            c
        } else {
            let mut l = LiteralWriter::new(message).build().unwrap();
            std::io::Write::write_all(&mut l, &tsk).unwrap();
            l
        };
        std::io::Write::flush(&mut w).unwrap();
        w.finalize().unwrap();
        out
    };
    let cat = |a: &[u8], b: &[u8]| [a, b].concat();
    let public_bin = other.to_vec().unwrap();
    // The same secret packet under headers Sequoia's parser refuses.
    let body = packet_body(&primary);
    let partial = {
        let mut out = vec![0xC5];
        let mut rest = &body[..];
        while rest.len() > 16 {
            out.push(0xE4); // a partial chunk of 16 bytes
            out.extend_from_slice(&rest[..16]);
            rest = &rest[16..];
        }
        out.push(rest.len() as u8);
        out.extend_from_slice(rest);
        out
    };
    let indeterminate = cat(&[0x97], &body);
    let v6 = openpgp::cert::CertBuilder::general_purpose(Some("v6 <v6@example.org>"))
        .set_profile(openpgp::Profile::RFC9580)
        .unwrap()
        .generate()
        .unwrap()
        .0;
    let protected = openpgp::cert::CertBuilder::general_purpose(Some("pw <pw@example.org>"))
        .set_password(Some("correct horse".into()))
        .generate()
        .unwrap()
        .0;
    let garbage = pseudo_random(1 << 20, 7);
    // An old-format signature packet too short to parse.
    let broken_packet = [0x88, 3, 0x99, 0x99, 0x99];
    let variants: Vec<(&str, Vec<u8>)> = vec![
        ("lone secret subkey, binary", subkey.clone()),
        ("lone secret subkey, armored", armor(Kind::SecretKey, &subkey)),
        (
            "lone secret subkey, armored as a public key",
            armor(Kind::PublicKey, &subkey),
        ),
        ("lone secret primary key", primary.clone()),
        (
            "lone secret primary key, armored",
            armor(Kind::PublicKey, &primary),
        ),
        ("full TSK, binary", tsk.clone()),
        ("full TSK, armored", armored_secret(&cert)),
        (
            "TSK armored after a public certificate",
            cat(&armored_public(&other), &armored_secret(&cert)),
        ),
        ("TSK binary after a public certificate", cat(&public_bin, &tsk)),
        ("TSK with garbage after", cat(&tsk, b"\x00\xfftrailing garbage")),
        (
            "TSK after notes",
            cat(b"backup of my key, do not share\n\n", &armored_secret(&cert)),
        ),
        ("TSK in compressed data", wrapped(true)),
        ("TSK in a literal data packet", wrapped(false)),
        (
            "binary TSK after an armored public certificate",
            cat(&armored_public(&other), &tsk),
        ),
        ("secret key with partial body lengths", partial),
        ("secret key with an indeterminate length", indeterminate),
        ("TSK after 1 MiB of garbage", cat(&garbage, &tsk)),
        ("TSK after a broken packet", cat(&broken_packet, &tsk)),
        (
            "TSK after a broken packet, armored as a public key",
            armor(Kind::PublicKey, &cat(&broken_packet, &tsk)),
        ),
        ("v6 TSK, binary", v6.as_tsk().to_vec().unwrap()),
        ("v6 TSK, armored with CRLF", crlf(&armored_secret(&v6))),
        (
            "passphrase-protected TSK after garbage",
            cat(&garbage, &protected.as_tsk().to_vec().unwrap()),
        ),
        (
            "private key armor with a body that does not parse",
            b"-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nnot base64 at all!\n-----END PGP PRIVATE KEY BLOCK-----\n".to_vec(),
        ),
    ];
    let names = ["k.asc", "k.pgp", "k.txt", "k.key", "k"];
    variants
        .into_iter()
        .enumerate()
        .map(|(i, (what, bytes))| {
            let name = names[i % names.len()];
            (format!("{}-{name}", what.replace([' ', ','], "_")), bytes)
        })
        .collect()
}

/// The body of the one new-format packet `packet` holds (as Sequoia
/// writes them: one-, two- or five-octet lengths).
fn packet_body(packet: &[u8]) -> Vec<u8> {
    assert_eq!(packet[0] & 0xC0, 0xC0, "a new-format packet");
    let (len, at) = match packet[1] {
        l @ 0..=191 => (l as usize, 2),
        l @ 192..=223 => ((((l as usize) - 192) << 8) + packet[2] as usize + 192, 3),
        255 => (
            u32::from_be_bytes(packet[2..6].try_into().unwrap()) as usize,
            6,
        ),
        _ => panic!("partial length"),
    };
    packet[at..at + len].to_vec()
}

/// `n` bytes that look random, the same for the same `seed` (xorshift).
fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// `text` with CRLF line ends and a byte-order mark before it.
fn crlf(text: &[u8]) -> Vec<u8> {
    let text = String::from_utf8(text.to_vec()).unwrap();
    format!("\u{feff}{}", text.replace('\n', "\r\n")).into_bytes()
}

#[test]
fn a_secret_key_in_a_subdirectory_or_behind_a_symlink_in_keys_dir_is_refused_by_name() {
    let tsk = armored_secret(&sequoia_key("old <old@example.org>"));
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("backup.asc"), &tsk).unwrap();
    // (what, path under keys/, whether it is a symlink to the key outside)
    let shapes = [
        ("subdirectory", "old/alice-2019.asc", false),
        ("three levels down, no extension", "a/b/c/notes", false),
        ("symlink to a file outside", "bob.asc", true),
    ];
    for (what, path, link) in shapes {
        let site = Site::new();
        site.add_key(
            "good.asc",
            &armored_public(&sequoia_key("good <g@example.org>")),
        );
        let file = site.keys_dir().join(path);
        fs::create_dir_all(file.parent().unwrap()).unwrap();
        if link {
            std::os::unix::fs::symlink(outside.path().join("backup.asc"), &file).unwrap();
        } else {
            fs::write(&file, &tsk).unwrap();
        }
        let out = run(&site, &["keys", "check"]);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{what}: {stderr}");
        assert!(
            stderr.contains(&format!("{} holds secret key material", file.display())),
            "{what}: {stderr}"
        );
    }
}

#[test]
fn every_shape_of_secret_key_in_keys_dir_stops_keys_check_and_serve_naming_the_file() {
    for (file, bytes) in secret_key_files() {
        let site = Site::new();
        site.write_config("listen = \"127.0.0.1:0\"");
        site.add_key(
            "good.asc",
            &armored_public(&sequoia_key("good <g@example.org>")),
        );
        site.add_key(&file, &bytes);

        let out = run(&site, &["keys", "check"]);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{file}: {stderr}");
        assert!(
            stderr.contains(&format!("{file} holds secret key material")),
            "{file}: {stderr}"
        );

        let (code, log) = serve_until_exit(&site, &[], std::time::Duration::from_secs(60));
        assert_eq!(code, Some(1), "{file}: serve must refuse to start:\n{log}");
        assert!(
            log.contains(&format!("{file} holds secret key material")),
            "{file}: {log}"
        );
        assert!(!log.contains("listening"), "{file}: {log}");
    }
}

#[test]
fn public_certificates_in_any_shape_are_not_mistaken_for_secret_keys() {
    use sequoia_openpgp::serialize::SerializeInto;
    let a = sequoia_key("a <a@example.org>");
    let b = sequoia_key("b <b@example.org>");
    let site = Site::new();
    site.add_key("a.pgp", &a.to_vec().unwrap());
    site.add_key(
        "two.asc",
        &[armored_public(&a), armored_public(&b)].concat(),
    );
    site.add_key(
        "notes.txt",
        b"Our keys: -----BEGIN PGP PUBLIC KEY BLOCK----- (see two.asc)\n",
    );
    let out = run(&site, &["keys", "check"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(!stderr.contains("secret key material"), "{stderr}");
    assert!(stdout.contains(&a.fingerprint().to_hex()), "{stdout}");
    for (_, bytes) in secret_key_files() {
        assert!(embargo::keys::holds_secret_key(&bytes));
    }
    assert!(!embargo::keys::holds_secret_key(&armored_public(&a)));
    assert!(!embargo::keys::holds_secret_key(&a.to_vec().unwrap()));
    // The scan looks for secret key packets at every offset: bytes that
    // happen to parse as one (they do, every few MiB) are not mistaken.
    for seed in 1..=4 {
        let noise = pseudo_random(8 << 20, seed);
        assert!(!embargo::keys::holds_secret_key(&noise), "seed {seed}");
    }
}

#[test]
fn keys_check_shows_the_real_expiry_of_an_unusable_sign_only_certificate() {
    let gpg = Gpg::new();
    let site = Site::new();
    let sign_only = gpg.gen_key("Signer <sig@example.org>", GpgKeyType::SignOnly, "", "20d");
    let public = gpg.export_public(&sign_only);
    site.add_key("signonly.asc", &public);
    use sequoia_openpgp::parse::Parse;
    let cert = sequoia_openpgp::Cert::from_bytes(&public).unwrap();
    let policy = sequoia_openpgp::policy::StandardPolicy::new();
    let expiry = cert
        .with_policy(&policy, None)
        .unwrap()
        .primary_key()
        .key_expiration_time()
        .expect("gpg made the key expire");
    let out = run(&site, &["keys", "check"]);
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with(&sign_only))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert_eq!(
        line,
        format!(
            "{sign_only}  expires {}  Signer <sig@example.org>  [{}]",
            embargo::clock::rfc3339(expiry),
            site.keys_dir().join("signonly.asc").display()
        )
    );
}

#[test]
fn intake_secrets_readable_by_others_are_refused_by_name_with_the_chmod_to_run() {
    let site = Site::new();
    assert!(run(&site, &["keys", "signing"]).status.success());
    for name in ["signing-key.pgp", "hmac.key"] {
        let file = site.state_dir().join(name);
        for mode in [0o644, 0o640, 0o602] {
            fs::set_permissions(&file, fs::Permissions::from_mode(mode)).unwrap();
            for args in [&["keys", "signing"][..], &["serve"][..]] {
                let out = run(&site, args);
                let (stdout, stderr) = text(&out);
                assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
                assert!(stdout.is_empty(), "{stdout}");
                assert_eq!(
                    stderr,
                    format!(
                        "embargo: error: intake secret {} is readable or writable by other users (mode {mode:04o}): run `chmod 600 {}` (and make sure it belongs to the user running embargo), then start again; if others could read it, treat it as leaked\n",
                        file.display(),
                        file.display()
                    ),
                    "{args:?}"
                );
                // Refused, not changed behind the admin's back.
                assert_eq!(
                    fs::metadata(&file).unwrap().permissions().mode() & 0o777,
                    mode
                );
            }
        }
        fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(run(&site, &["keys", "signing"]).status.success());
    }
}
