//! The sealed format against stock GnuPG, its packet framing, durability
//! under SIGKILL, the absence of plaintext at rest, and the reader's refusals.

mod common;

use std::fs;
use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use embargo::config::MessageFormat;
use embargo::id::ReportId;
use embargo::keys::IntakeSecrets;
use embargo::report::RawReport;
use embargo::seal::{Channel, RevealError, Role, SignatureCheck};
use embargo::store::Store;
use openpgp::parse::{PacketParser, PacketParserResult, Parse};
use openpgp::serialize::stream::{Encryptor, LiteralWriter, Message, Signer};
use sequoia_openpgp as openpgp;
use sha2::{Digest, Sha256};

fn body_and_reporter(site: &Site) -> (embargo::report::ReportBody, embargo::report::Reporter) {
    RawReport::from_json(&report_json(
        "Heap overflow in parser",
        "Send 4 KiB of 'A'.",
    ))
    .unwrap()
    .validate(&site.config().limits)
    .unwrap()
}

/// Seals a report with the given attachments through the library.
fn seal(
    site: &Site,
    sealer: &embargo::seal::Sealer,
    attachments: &[(&str, &[u8])],
) -> embargo::seal::SealedReport {
    let (body, reporter) = body_and_reporter(site);
    seal_files(
        sealer,
        &site.store(),
        Channel::Api,
        body,
        reporter,
        attachments,
    )
}

#[test]
fn every_part_decrypts_with_stock_gpg_under_rsa_and_curve25519_keys() {
    let rsa = Gpg::new();
    let rsa_fpr = rsa.gen_key(
        "Maintainer RSA <rsa@example.org>",
        GpgKeyType::Rsa4096,
        "",
        "0",
    );
    let cv = Gpg::new();
    let cv_fpr = cv.gen_key(
        "Maintainer Cv <cv@example.org>",
        GpgKeyType::Cv25519,
        "",
        "0",
    );
    let site = Site::new();
    site.add_key("rsa.asc", &rsa.export_public(&rsa_fpr));
    site.add_key("cv.pgp", &cv.export_public(&cv_fpr));

    let intake = site.intake();
    let big = random_bytes(5 * 1024 * 1024, 7);
    let passwd = b"root:x:0:0:root:/root:/bin/bash\n".to_vec();
    let sealed = seal(
        &site,
        &intake.sealer,
        &[("poc.bin", &big), ("../../etc/passwd", &passwd)],
    );
    let dir = site.reports_dir().join(sealed.id.as_str());
    let mut names: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["001.pgp", "002.pgp", "manifest.pgp"],
        "only the parts, named by number"
    );
    assert_eq!(sealed.recipients.len(), 2);

    let signing_fpr = site.signing_cert().fingerprint().to_hex();
    for gpg in [&rsa, &cv] {
        gpg.import(&armored_public(&site.signing_cert()));
        let (json, status) = gpg.decrypt(&dir.join("manifest.pgp"));
        assert!(
            status.contains("GOODSIG"),
            "gpg must report a good signature:\n{status}"
        );
        assert!(
            status.contains(&format!("VALIDSIG {signing_fpr}")),
            "signed by the intake key:\n{status}"
        );
        assert_eq!(
            status.matches("ENC_TO").count(),
            2,
            "encrypted to both maintainers:\n{status}"
        );
        let manifest: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(manifest["schema"], "embargo.report.v1");
        assert_eq!(manifest["id"], sealed.id.as_str());
        assert_eq!(manifest["report"]["title"], "Heap overflow in parser");
        assert_eq!(manifest["attachments"][1]["name"], "../../etc/passwd");
        assert_eq!(
            manifest["attachments"][0]["sha256"],
            hex::encode(Sha256::digest(&big))
        );
        assert_eq!(manifest["attachments"][0]["size"], big.len() as u64);
        let recipients: Vec<&str> = manifest["recipients"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(recipients.contains(&rsa_fpr.as_str()) && recipients.contains(&cv_fpr.as_str()));

        let (one, status) = gpg.decrypt(&dir.join("001.pgp"));
        assert!(one == big, "001.pgp must decrypt to the exact bytes");
        assert_eq!(status.matches("ENC_TO").count(), 2);
        let (two, _) = gpg.decrypt(&dir.join("002.pgp"));
        assert_eq!(two, passwd);

        let packets = gpg.list_packets(&dir.join("002.pgp"));
        assert!(packets.contains(":literal data packet:"), "{packets}");
        assert!(
            packets.contains("name=\"\""),
            "literal packet names nothing:\n{packets}"
        );
        assert!(
            !packets.contains("compressed packet"),
            "no compression:\n{packets}"
        );
        assert!(
            packets.contains("mdc_method: 2"),
            "SEIPDv1 with MDC:\n{packets}"
        );
    }
}

#[test]
fn attachments_of_every_size_around_the_literal_chunk_size_decrypt_with_gpg() {
    // Attachments are framed in 64 KiB partial-body chunks whose first one
    // also holds the 6 header bytes: sizes around each boundary.
    let gpg = Gpg::new();
    let fpr = gpg.gen_key("Maintainer <m@example.org>", GpgKeyType::Cv25519, "", "0");
    let site = Site::new();
    site.add_key("m.asc", &gpg.export_public(&fpr));
    let chunk = 65536;
    let sizes = [
        0,
        1,
        185,
        186,
        8377,
        8378,
        chunk - 7,
        chunk - 6,
        chunk - 5,
        2 * chunk - 6,
        3 * chunk + 5,
    ];
    let files: Vec<(String, Vec<u8>)> = sizes
        .iter()
        .map(|&n| (format!("f{n}"), random_bytes(n, n as u64)))
        .collect();
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    for format in [MessageFormat::Compat, MessageFormat::Rfc9580] {
        let cert = openpgp::Cert::from_bytes(&gpg.export_public(&fpr)).unwrap();
        let sealer = sealer_for(&site, vec![cert], format);
        let sealed = seal(&site, &sealer, &refs);
        let dir = site.reports_dir().join(sealed.id.as_str());
        for (i, (name, bytes)) in files.iter().enumerate() {
            let (out, status) = gpg.decrypt(&dir.join(format!("{:03}.pgp", i + 1)));
            assert!(
                out == *bytes,
                "{format:?} {name}: gpg gave {} bytes\n{status}",
                out.len()
            );
        }
    }
    // SEIPDv2 (which GnuPG 2.2 cannot read) through embargo's reader.
    let alice = sequoia_key("alice <alice@example.org>");
    let sealer = sealer_for(&site, vec![alice.clone()], MessageFormat::Rfc9580);
    let sealed = seal(&site, &sealer, &refs);
    let dir = site.reports_dir().join(sealed.id.as_str());
    assert_eq!(seipd_versions(&dir.join("001.pgp")), vec![2]);
    let open = opener(&alice, Some(site.signing_cert()));
    let manifest = open
        .open_manifest(&site.store(), &sealed.id)
        .unwrap()
        .manifest;
    for (entry, (name, bytes)) in manifest.attachments.iter().zip(&files) {
        let mut out = Vec::new();
        open.decrypt_attachment(&site.store(), &sealed.id, entry, &mut out)
            .unwrap();
        assert!(out == *bytes, "rfc9580 {name}");
    }
}

/// The SEIPD versions found in a message file.
fn seipd_versions(path: &std::path::Path) -> Vec<u8> {
    let mut versions = Vec::new();
    let mut ppr = PacketParser::from_file(path).unwrap();
    while let PacketParserResult::Some(pp) = ppr {
        if let openpgp::Packet::SEIP(seip) = &pp.packet {
            versions.push(seip.version());
        }
        ppr = pp.next().unwrap().1;
    }
    versions
}

#[test]
fn compat_gives_seipdv1_and_rfc9580_gives_seipdv2_only_when_every_recipient_supports_it() {
    let site = Site::new();
    let alice = sequoia_key("alice <alice@example.org>");
    let bob = sequoia_key("bob <bob@example.org>");
    let gpg = Gpg::new();
    let fpr = gpg.gen_key("Carol <carol@example.org>", GpgKeyType::Cv25519, "", "0");
    let carol = openpgp::Cert::from_bytes(&gpg.export_public(&fpr)).unwrap();

    let cases = [
        (MessageFormat::Compat, vec![alice.clone(), bob.clone()], 1),
        (MessageFormat::Rfc9580, vec![alice.clone(), bob.clone()], 2),
        (
            MessageFormat::Rfc9580,
            vec![alice.clone(), carol.clone()],
            1,
        ),
        (MessageFormat::Compat, vec![carol.clone()], 1),
    ];
    for (format, certs, version) in cases {
        let sealer = sealer_for(&site, certs, format);
        let sealed = seal(&site, &sealer, &[("a.txt", b"attachment")]);
        let dir = site.reports_dir().join(sealed.id.as_str());
        for part in ["manifest.pgp", "001.pgp"] {
            assert_eq!(
                seipd_versions(&dir.join(part)),
                vec![version],
                "{format:?} {part}"
            );
        }
        // Whatever the framing, the reader opens it.
        let opened = opener(&alice, Some(site.signing_cert()))
            .open_manifest(&site.store(), &sealed.id)
            .map(|m| m.manifest.attachments.len());
        if sealer_includes(&sealed, &alice) {
            assert_eq!(opened.unwrap(), 1);
        }
    }
}

/// The PKESK packets of a message file, serialized, and the first bytes
/// of its encrypted body.
fn pkesks_and_body_start(path: &std::path::Path) -> (Vec<Vec<u8>>, Vec<u8>) {
    use openpgp::serialize::SerializeInto;
    let mut pkesks = Vec::new();
    let mut body = Vec::new();
    let mut ppr = PacketParser::from_file(path).unwrap();
    while let PacketParserResult::Some(mut pp) = ppr {
        match &pp.packet {
            openpgp::Packet::PKESK(p) => {
                pkesks.push(openpgp::Packet::from(p.clone()).to_vec().unwrap())
            }
            openpgp::Packet::SEIP(_) => {
                body = vec![0u8; 32];
                std::io::Read::read_exact(&mut pp, &mut body).unwrap();
                break;
            }
            _ => {}
        }
        ppr = pp.next().unwrap().1;
    }
    (pkesks, body)
}

/// The session key of a message, as gpg prints it (`ALGO:HEX`).
fn gpg_session_key(gpg: &Gpg, file: &std::path::Path) -> String {
    let out = gpg.run(
        &[
            "--status-fd",
            "2",
            "--show-session-key",
            "--decrypt",
            file.to_str().unwrap(),
        ],
        None,
    );
    let status = String::from_utf8_lossy(&out.stderr).into_owned();
    status
        .lines()
        .find_map(|l| l.strip_prefix("[GNUPG:] SESSION_KEY "))
        .unwrap_or_else(|| panic!("no session key from gpg:\n{status}"))
        .trim()
        .to_string()
}

#[test]
fn every_part_has_its_own_session_key_so_sharing_one_part_never_opens_the_manifest_with_gpg() {
    let gpg = Gpg::new();
    let fpr = gpg.gen_key("Maintainer <m@example.org>", GpgKeyType::Cv25519, "", "0");
    let site = Site::new();
    site.add_key("m.asc", &gpg.export_public(&fpr));
    let intake = site.intake();
    gpg.import(&armored_public(&site.signing_cert()));
    let sealed = seal(
        &site,
        &intake.sealer,
        &[("poc.py", b"print('poc')"), ("notes.txt", b"more")],
    );
    let dir = site.reports_dir().join(sealed.id.as_str());
    let parts = ["manifest.pgp", "001.pgp", "002.pgp"];
    let keys: Vec<String> = parts
        .iter()
        .map(|p| gpg_session_key(&gpg, &dir.join(p)))
        .collect();
    for (i, a) in keys.iter().enumerate() {
        for b in &keys[i + 1..] {
            assert_ne!(a, b, "two parts share a session key: {keys:?}");
        }
    }
    let with_key = |key: &str, part: &str| {
        gpg.try_run(
            &[
                "--override-session-key",
                key,
                "--decrypt",
                dir.join(part).to_str().unwrap(),
            ],
            None,
        )
    };
    // The key a maintainer would hand a vendor for 001.pgp opens 001.pgp...
    let own = with_key(&keys[1], "001.pgp");
    assert!(own.status.success());
    assert_eq!(own.stdout, b"print('poc')");
    // ...and neither the manifest (titles, reporter, file names) nor 002.pgp.
    // gpg 2.2 skips the quick check for public-key messages, so with a wrong
    // key it may print a little garbage before the MDC fails: what matters
    // is that it fails and that nothing it prints is the other part's text.
    for part in ["manifest.pgp", "002.pgp"] {
        let other = with_key(&keys[1], part);
        assert!(
            !other.status.success(),
            "001.pgp's session key opened {part}"
        );
        for secret in [&b"schema"[..], b"notes.txt", b"more"] {
            assert!(
                !other.stdout.windows(secret.len()).any(|w| w == secret),
                "{part}: plaintext came out"
            );
        }
    }
}

/// Session keys of a message for `secret`, found by Sequoia (gpg 2.2 has
/// no SEIPDv2), and whether the message opens with a given session key.
mod session {
    use super::openpgp;
    use openpgp::crypto::SessionKey;
    use openpgp::packet::{PKESK, SKESK};
    use openpgp::parse::Parse;
    use openpgp::parse::stream::*;
    use openpgp::policy::StandardPolicy;
    use openpgp::types::SymmetricAlgorithm;

    struct Helper<'a> {
        secret: &'a openpgp::Cert,
        given: Option<Key>,
        found: Option<Key>,
    }

    impl VerificationHelper for Helper<'_> {
        fn get_certs(&mut self, _: &[openpgp::KeyHandle]) -> openpgp::Result<Vec<openpgp::Cert>> {
            Ok(Vec::new())
        }
        fn check(&mut self, _: MessageStructure) -> openpgp::Result<()> {
            Ok(())
        }
    }

    impl DecryptionHelper for Helper<'_> {
        fn decrypt(
            &mut self,
            pkesks: &[PKESK],
            _: &[SKESK],
            sym_algo: Option<SymmetricAlgorithm>,
            decrypt: &mut dyn FnMut(Option<SymmetricAlgorithm>, &SessionKey) -> bool,
        ) -> openpgp::Result<Option<openpgp::Cert>> {
            if let Some((algo, sk)) = &self.given {
                return if decrypt(*algo, sk) {
                    Ok(None)
                } else {
                    Err(anyhow::anyhow!("wrong session key"))
                };
            }
            let policy = StandardPolicy::new();
            for ka in self
                .secret
                .keys()
                .with_policy(&policy, None)
                .secret()
                .for_transport_encryption()
            {
                let mut pair = ka.key().clone().into_keypair()?;
                for pkesk in pkesks {
                    if let Some((algo, sk)) = pkesk.decrypt(&mut pair, sym_algo)
                        && decrypt(algo, &sk)
                    {
                        self.found = Some((algo, sk));
                        return Ok(None);
                    }
                }
            }
            Err(anyhow::anyhow!("no key"))
        }
    }

    fn open(
        secret: &openpgp::Cert,
        bytes: &[u8],
        given: Option<Key>,
    ) -> openpgp::Result<(Vec<u8>, Option<Key>)> {
        let policy = StandardPolicy::new();
        let helper = Helper {
            secret,
            given,
            found: None,
        };
        let mut d = DecryptorBuilder::from_bytes(bytes)?.with_policy(&policy, None, helper)?;
        let mut out = Vec::new();
        std::io::copy(&mut d, &mut out)?;
        let found = d.into_helper().found;
        Ok((out, found))
    }

    pub type Key = (Option<SymmetricAlgorithm>, SessionKey);

    pub fn of(secret: &openpgp::Cert, bytes: &[u8]) -> Key {
        open(secret, bytes, None).unwrap().1.unwrap()
    }

    pub fn opens(secret: &openpgp::Cert, bytes: &[u8], key: &Key) -> bool {
        open(secret, bytes, Some(key.clone())).is_ok_and(|(out, _)| !out.is_empty())
    }
}

#[test]
fn every_part_has_its_own_session_key_and_pkesks_in_both_formats() {
    let site = Site::new();
    let alice = sequoia_key("alice <alice@example.org>");
    let bob = sequoia_key("bob <bob@example.org>");
    for format in [MessageFormat::Compat, MessageFormat::Rfc9580] {
        let sealer = sealer_for(&site, vec![alice.clone(), bob.clone()], format);
        let files: &[(&str, &[u8])] = &[("a.txt", b"same bytes"), ("b.txt", b"same bytes")];
        let sealed = seal(&site, &sealer, files);
        let path = |part: &str| site.reports_dir().join(sealed.id.as_str()).join(part);
        let parts = ["manifest.pgp", "001.pgp", "002.pgp"];
        let bytes: Vec<Vec<u8>> = parts.iter().map(|p| fs::read(path(p)).unwrap()).collect();
        let mut all_pkesks = Vec::new();
        for part in parts {
            let (pkesks, _) = pkesks_and_body_start(&path(part));
            assert_eq!(
                pkesks.len(),
                2,
                "{format:?} {part}: one PKESK per recipient"
            );
            all_pkesks.extend(pkesks);
        }
        let unique: std::collections::BTreeSet<_> = all_pkesks.iter().collect();
        assert_eq!(
            unique.len(),
            all_pkesks.len(),
            "{format:?}: no PKESK is reused"
        );
        for who in [&alice, &bob] {
            let keys: Vec<session::Key> = bytes.iter().map(|b| session::of(who, b)).collect();
            for (i, (_, a)) in keys.iter().enumerate() {
                for (_, b) in &keys[i + 1..] {
                    assert_ne!(&a[..], &b[..], "{format:?}: two parts share a session key");
                }
            }
            // One part's session key opens that part, and no other.
            assert!(session::opens(who, &bytes[1], &keys[1]), "{format:?}");
            assert!(
                !session::opens(who, &bytes[0], &keys[1]),
                "{format:?}: manifest"
            );
            assert!(
                !session::opens(who, &bytes[2], &keys[1]),
                "{format:?}: 002.pgp"
            );
            // And every part still opens for every recipient.
            let open = opener(who, Some(site.signing_cert()));
            let m = open
                .open_manifest(&site.store(), &sealed.id)
                .unwrap()
                .manifest;
            for entry in &m.attachments {
                let mut out = Vec::new();
                open.decrypt_attachment(&site.store(), &sealed.id, entry, &mut out)
                    .unwrap();
                assert_eq!(out, b"same bytes");
            }
        }
    }
}

fn sealer_includes(sealed: &embargo::seal::SealedReport, cert: &openpgp::Cert) -> bool {
    sealed.recipients.contains(&cert.fingerprint().to_hex())
}

#[test]
fn a_seal_killed_mid_attachment_leaves_no_report_and_the_next_start_cleans_up() {
    let site = Site::new();
    site.add_key(
        "alice.asc",
        &armored_public(&sequoia_key("alice <alice@example.org>")),
    );
    let inputs = tempfile::tempdir().unwrap();
    let report = inputs.path().join("report.json");
    fs::write(&report, report_json("t", "d")).unwrap();
    let fifo = inputs.path().join("poc.bin");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );

    let mut child = site
        .embargo()
        .args(["seal", "-c"])
        .arg(site.config_path())
        .arg("--report")
        .arg(&report)
        .arg(&fifo)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Feed 8 MiB, then stall: the seal is now mid-attachment.
    let mut pipe = fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    pipe.write_all(&random_bytes(8 * 1024 * 1024, 3)).unwrap();
    let staged_bytes = || -> u64 {
        site.staging_entries()
            .iter()
            .filter_map(|e| {
                fs::metadata(site.reports_dir().join(".staging").join(e).join("001.pgp")).ok()
            })
            .map(|m| m.len())
            .sum()
    };
    wait_until("the seal to start writing", Duration::from_secs(30), || {
        staged_bytes() >= 1024 * 1024
    });
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    drop(pipe);

    assert!(
        site.report_ids().is_empty(),
        "a killed seal must leave no visible report"
    );
    assert!(site.store().list().unwrap().is_empty());
    assert_eq!(
        site.staging_entries().len(),
        1,
        "the leftover is in staging only"
    );

    let small = inputs.path().join("small.txt");
    fs::write(&small, b"small").unwrap();
    let out = site
        .embargo()
        .args(["seal", "-c"])
        .arg(site.config_path())
        .arg("--report")
        .arg(&report)
        .arg(&small)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        site.staging_entries().is_empty(),
        "the next start removed the leftover"
    );
    assert_eq!(site.report_ids().len(), 1);
}

const CANARY: &str = "CANARY-d1e5c0ff33";

#[test]
fn a_canary_in_every_field_and_file_never_reaches_disk_or_logs() {
    let site = Site::new();
    let alice = sequoia_key("alice <alice@example.org>");
    site.add_key("alice.asc", &armored_public(&alice));
    let inputs = tempfile::tempdir().unwrap();
    let text = format!("{CANARY} text");
    let json = serde_json::json!({
        "report": {
            "title": text, "affected_versions": text, "environment": text, "severity": "critical",
            "description": text, "impact": text, "steps_to_reproduce": text, "mitigations": text,
            "cwe": "CWE-78"
        },
        "reporter": {"name": text, "email": format!("{CANARY}@example.org"), "credit": "name"}
    });
    let report = inputs.path().join("report.json");
    fs::write(&report, serde_json::to_vec(&json).unwrap()).unwrap();
    let poc = inputs.path().join(format!("{CANARY}.py"));
    fs::write(&poc, format!("print('{CANARY}')\n").repeat(10_000)).unwrap();

    let out = site
        .embargo()
        .env("EMBARGO_LOG", "trace")
        .args(["seal", "-c"])
        .arg(site.config_path())
        .arg("--report")
        .arg(&report)
        .arg(&poc)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id: ReportId = String::from_utf8(out.stdout.clone())
        .unwrap()
        .trim()
        .parse()
        .unwrap();

    for dir in [
        site.store_dir(),
        site.state_dir(),
        site.tmp_dir(),
        site.keys_dir(),
    ] {
        assert_eq!(
            files_containing(&dir, CANARY.as_bytes()),
            Vec::<std::path::PathBuf>::new(),
            "plaintext in {}",
            dir.display()
        );
    }
    for stream in [&out.stdout, &out.stderr] {
        assert!(
            !String::from_utf8_lossy(stream).contains(CANARY),
            "plaintext in output"
        );
    }
    // The canary is really in there, sealed.
    let opened = opener(&alice, Some(site.signing_cert()))
        .open_manifest(&site.store(), &id)
        .unwrap();
    assert!(opened.manifest.report.title.contains(CANARY));
    assert!(opened.manifest.attachments[0].name.contains(CANARY));
}

/// Builds a manifest.pgp with arbitrary JSON, signed by `signer`.
fn forge_manifest(
    json: &[u8],
    to: &openpgp::Cert,
    signer: impl openpgp::crypto::Signer + Send + Sync,
) -> Vec<u8> {
    let p = embargo::keys::POLICY.clone();
    let recipients: Vec<_> = to
        .keys()
        .with_policy(&p, None)
        .for_storage_encryption()
        .for_transport_encryption()
        .collect();
    let mut out = Vec::new();
    let message = Message::new(&mut out);
    let message = Encryptor::for_recipients(message, recipients)
        .build()
        .unwrap();
    let message = Signer::new(message, signer).unwrap().build().unwrap();
    let mut message = LiteralWriter::new(message).build().unwrap();
    message.write_all(json).unwrap();
    message.finalize().unwrap();
    out
}

#[test]
fn the_reader_refuses_tampered_truncated_swapped_mismatched_and_forged_parts() {
    let site = Site::new();
    let alice = sequoia_key("alice <alice@example.org>");
    let sealer = sealer_for(&site, vec![alice.clone()], MessageFormat::Compat);
    let store = site.store();
    let signer = site.signing_cert();
    let open = opener(&alice, Some(signer.clone()));
    let poc = random_bytes(300_000, 11);
    let other = random_bytes(300_000, 12);

    // Untouched: verified and exact.
    let good = seal(&site, &sealer, &[("poc", &poc)]);
    let m = open.open_manifest(&store, &good.id).unwrap();
    assert_eq!(m.signature, SignatureCheck::Verified(signer.fingerprint()));
    let mut out = Vec::new();
    open.decrypt_attachment(&store, &good.id, &m.manifest.attachments[0], &mut out)
        .unwrap();
    assert!(out == poc);

    let part = |id: &ReportId, name: &str| site.reports_dir().join(id.as_str()).join(name);
    let attempt = |id: &ReportId| -> Result<(), RevealError> {
        let m = open.open_manifest(&store, id)?;
        let mut sink = Vec::new();
        open.decrypt_attachment(&store, id, &m.manifest.attachments[0], &mut sink)
    };

    // One flipped byte in the middle of the ciphertext.
    let r = seal(&site, &sealer, &[("poc", &poc)]);
    let mut bytes = fs::read(part(&r.id, "001.pgp")).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    fs::write(part(&r.id, "001.pgp"), &bytes).unwrap();
    let e = attempt(&r.id).unwrap_err();
    assert!(
        matches!(
            e,
            RevealError::Tampered { .. } | RevealError::Mismatch { .. }
        ),
        "{e}"
    );

    // Truncated.
    let r = seal(&site, &sealer, &[("poc", &poc)]);
    let bytes = fs::read(part(&r.id, "001.pgp")).unwrap();
    fs::write(part(&r.id, "001.pgp"), &bytes[..bytes.len() - 100]).unwrap();
    let e = attempt(&r.id).unwrap_err();
    assert!(
        matches!(
            e,
            RevealError::Tampered { .. } | RevealError::Mismatch { .. }
        ),
        "{e}"
    );

    // A part swapped in from another report (same size, other bytes).
    let a = seal(&site, &sealer, &[("poc", &poc)]);
    let b = seal(&site, &sealer, &[("poc", &other)]);
    fs::copy(part(&b.id, "001.pgp"), part(&a.id, "001.pgp")).unwrap();
    let e = attempt(&a.id).unwrap_err();
    assert!(matches!(e, RevealError::Mismatch { .. }), "{e}");
    assert!(e.to_string().contains("SHA-256"), "{e}");

    // A manifest moved from another report.
    let a = seal(&site, &sealer, &[("poc", &poc)]);
    let b = seal(&site, &sealer, &[("poc", &poc)]);
    fs::copy(part(&b.id, "manifest.pgp"), part(&a.id, "manifest.pgp")).unwrap();
    let e = attempt(&a.id).unwrap_err();
    assert!(matches!(e, RevealError::WrongId { .. }), "{e}");

    // A validly signed manifest whose hash does not match the part.
    let secrets = IntakeSecrets::load_or_create(&site.state_dir(), "Test Project").unwrap();
    let r = seal(&site, &sealer, &[("poc", &poc)]);
    let mut json: serde_json::Value =
        serde_json::to_value(&open.open_manifest(&store, &r.id).unwrap().manifest).unwrap();
    json["attachments"][0]["sha256"] = hex::encode(Sha256::digest(b"something else")).into();
    let forged = forge_manifest(
        &serde_json::to_vec(&json).unwrap(),
        &alice,
        secrets.signer().unwrap(),
    );
    fs::write(part(&r.id, "manifest.pgp"), forged).unwrap();
    let e = attempt(&r.id).unwrap_err();
    assert!(matches!(e, RevealError::Mismatch { .. }), "{e}");

    // The same manifest signed by another key.
    let mallory = sequoia_key("mallory <m@example.org>");
    let key = mallory
        .primary_key()
        .key()
        .clone()
        .parts_into_secret()
        .unwrap()
        .into_keypair()
        .unwrap();
    let forged = forge_manifest(&serde_json::to_vec(&json).unwrap(), &alice, key);
    fs::write(part(&r.id, "manifest.pgp"), forged).unwrap();
    let e = open.open_manifest(&store, &r.id).unwrap_err();
    assert!(matches!(e, RevealError::BadSignature { .. }), "{e}");

    // A genuine report checked against the wrong signer.
    let e = opener(&alice, Some(mallory.clone()))
        .open_manifest(&store, &good.id)
        .unwrap_err();
    assert!(matches!(e, RevealError::BadSignature { .. }), "{e}");

    // A key that is not a recipient.
    let e = opener(&mallory, Some(signer))
        .open_manifest(&store, &good.id)
        .unwrap_err();
    assert!(matches!(e, RevealError::NoMatchingKey { .. }), "{e}");
    assert!(
        e.to_string().contains("none of the given secret keys"),
        "{e}"
    );
}

#[test]
fn memory_for_sealing_does_not_depend_on_attachment_size() {
    // Streams 64 MiB from a reader that produces it on the fly; the sealer's
    // own buffers are fixed, so this only needs to finish and verify.
    struct Gen(u64, u64);
    impl std::io::Read for Gen {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = (buf.len() as u64).min(self.0 - self.1) as usize;
            buf[..n].fill(0xA5);
            self.1 += n as u64;
            Ok(n)
        }
    }
    let site = Site::new();
    let alice = sequoia_key("alice <alice@example.org>");
    let sealer = sealer_for(&site, vec![alice.clone()], MessageFormat::Rfc9580);
    let store = site.store();
    let mut w = sealer
        .begin(&store, ReportId::random(), Channel::Api)
        .unwrap();
    let size = 64 * 1024 * 1024;
    let entry = w
        .add_attachment(
            "big",
            "application/octet-stream",
            Role::Poc,
            &mut Gen(size, 0),
            size,
        )
        .unwrap();
    assert_eq!(entry.size, size);
    let (body, reporter) = body_and_reporter(&site);
    let sealed = w.finish(body, reporter, None).unwrap();
    // A limit one byte short refuses and leaves nothing.
    let mut w = sealer
        .begin(&store, ReportId::random(), Channel::Api)
        .unwrap();
    let e = w
        .add_attachment("big", "x", Role::Poc, &mut Gen(1000, 0), 999)
        .unwrap_err();
    assert!(e.to_string().contains("999 bytes"), "{e}");
    drop(w);
    assert_eq!(store.list().unwrap(), vec![sealed.id]);
    assert!(site.staging_entries().is_empty());
}

/// A stored part whose encrypted packet is cut short, at every length
/// around where Sequoia's parser frames the first chunk, or padded with
/// junk, is refused as damaged by every reader path: never a panic (a
/// maintainer's decrypt, list or case must survive a tampered store).
#[test]
fn a_part_whose_encrypted_packet_is_cut_short_is_refused_and_never_panics() {
    let site = Site::new();
    let alice = sequoia_key("alice <alice@example.org>");
    let sealer = sealer_for(&site, vec![alice.clone()], MessageFormat::Compat);
    let sealed = seal(&site, &sealer, &[("poc.bin", &[7u8; 100])]);
    let dir = site.reports_dir().join(sealed.id.as_str());
    let part = dir.join("001.pgp");
    let (pkesks, _) = pkesks_and_body_start(&part);
    let original = fs::read(&part).unwrap();
    let open = opener(&alice, Some(site.signing_cert()));
    let manifest = open
        .open_manifest(&site.store(), &sealed.id)
        .unwrap()
        .manifest;
    let entry = &manifest.attachments[0];
    // The stored SEIPD body (after the PKESKs and the packet header).
    let head: usize = pkesks.iter().map(Vec::len).sum();
    let mut cases: Vec<Vec<u8>> = Vec::new();
    for n in 0..64 {
        // A definite-length SEIPD packet of version 1 with n body bytes.
        let mut bytes: Vec<u8> = pkesks.concat();
        let body: Vec<u8> = original[head..].iter().copied().cycle().take(n).collect();
        bytes.push(0xC0 | 18);
        bytes.push((n + 1) as u8);
        bytes.push(1);
        bytes.extend_from_slice(&body);
        cases.push(bytes);
    }
    for cut in head..original.len() {
        cases.push(original[..cut].to_vec());
    }
    let mut junk = original.clone();
    junk.extend_from_slice(&[0xD2, 5, 1, 2, 3, 4, 5]);
    cases.push(junk);
    for bytes in cases {
        fs::write(&part, &bytes).unwrap();
        let mut out = Vec::new();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            open.decrypt_attachment(&site.store(), &sealed.id, entry, &mut out)
        }));
        let result =
            result.unwrap_or_else(|_| panic!("the reader panicked on a {}-byte part", bytes.len()));
        assert!(result.is_err(), "a {}-byte part opened", bytes.len());
    }
}

#[test]
fn a_report_whose_manifest_no_reader_would_open_is_refused_and_leaves_nothing() {
    // Within no configurable limit (max_field_bytes stops at 160 KiB), but
    // the writer checks the size itself: 3 MiB of control characters is
    // 18 MiB of escaped JSON, more than the 16 MiB a reader takes.
    let site = Site::new();
    let alice = sequoia_key("alice <alice@example.org>");
    let sealer = sealer_for(&site, vec![alice], MessageFormat::Compat);
    let store = site.store();
    let id = ReportId::random();
    let mut writer = sealer.begin(&store, id.clone(), Channel::Api).unwrap();
    writer
        .add_attachment(
            "poc.txt",
            "text/plain",
            Role::Poc,
            &mut &b"CANARY-POC"[..],
            u64::MAX,
        )
        .unwrap();
    let (mut body, reporter) = body_and_reporter(&site);
    body.description = "\u{1}".repeat(3 * 1024 * 1024);
    match writer.finish(body, reporter, None) {
        Err(embargo::seal::SealError::ManifestTooLarge { limit }) => {
            assert_eq!(limit, 16 * 1024 * 1024)
        }
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("an unreadable manifest was committed"),
    }
    assert!(!store.contains(&id).unwrap());
    assert!(store.list().unwrap().is_empty());
}
