//! embargo's own SEIPDv1 writer (`Seipd1Engine::Openssl`) against stock
//! readers: every attachment it seals decrypts byte-exact with gpg, with sq and with embargo's own opener (Sequoia), for sizes at
//! and around the 64 KiB partial-chunk boundaries of both the literal data
//! packet and the SEIPD packet; and envelopes it cannot carry still go
//! through Sequoia.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::*;
use embargo::config::MessageFormat;
use embargo::seal::seipd::padded_size;
use embargo::seal::writer::PAD_FLOOR;
use embargo::seal::{Channel, Seipd1Engine};
use openpgp::Cert;
use openpgp::parse::{PacketParser, PacketParserResult, Parse};
use sequoia_openpgp as openpgp;

const K: usize = 64 * 1024;

/// Plaintext sizes: empty, one byte, a literal packet body (the data and 6
/// header bytes) of one chunk ± 1, a SEIPD body (the literal packet with a
/// 5-byte length, 1 version byte, 18 prefix bytes and the 22-byte MDC) of
/// one chunk ± 1, and several chunks of both.
const SIZES: &[usize] = &[
    0,
    1,
    K - 7,
    K - 6,
    K - 5,
    K - 54,
    K - 53,
    K - 52,
    K - 1,
    K,
    K + 1,
    3 * K + 17,
    1024 * 1024 + 3,
];

fn body() -> (embargo::report::ReportBody, embargo::report::Reporter) {
    let mut body = embargo::report::ReportBody::default();
    body.title = "SEIPDv1 writer".into();
    body.description = "sizes around the chunk boundaries".into();
    (body, embargo::report::Reporter::default())
}

/// Checks the framing of the SEIPD packet of the message in `path`: PKESKs,
/// then version 1 in 64 KiB partial chunks and one definite length ending
/// the file. (Sequoia frames the same way; which writer ran is pinned by
/// the unit tests in `src/seal/writer.rs`.)
fn assert_framed_in_64k_chunks(path: &Path) {
    let bytes = fs::read(path).unwrap();
    // Skip the PKESKs (new-format, definite lengths) to the SEIPD tag.
    let mut at = 0;
    while bytes[at] != 0xC0 | 18 {
        assert_eq!(bytes[at], 0xC0 | 1, "a PKESK before the SEIPD packet");
        let (len, skip) = definite(&bytes[at + 1..]);
        at += 1 + skip + len;
    }
    at += 1;
    assert!(bytes.len() > at, "a SEIPD body");
    let mut first = true;
    loop {
        let octet = bytes[at];
        if (224..255).contains(&octet) {
            assert_eq!(octet, 224 + 16, "partial chunks of 64 KiB");
            if first {
                assert_eq!(bytes[at + 1], 1, "SEIPD version 1");
            }
            first = false;
            at += 1 + K;
            continue;
        }
        let (len, skip) = definite(&bytes[at..]);
        if first {
            assert_eq!(bytes[at + skip], 1, "SEIPD version 1");
        }
        assert_eq!(at + skip + len, bytes.len(), "the last chunk ends the part");
        return;
    }
}

/// A new-format definite length at the start of `b`: (length, octets).
fn definite(b: &[u8]) -> (usize, usize) {
    match b[0] {
        0..=191 => (b[0] as usize, 1),
        192..=223 => ((((b[0] as usize) - 192) << 8) + b[1] as usize + 192, 2),
        255 => (u32::from_be_bytes(b[1..5].try_into().unwrap()) as usize, 5),
        o => panic!("not a definite length: {o:#x}"),
    }
}

/// Decrypts the signed part `path` with gpg, the intake's certificate
/// imported and trusted, and returns gpg's status and messages; fails
/// unless gpg exits 0 without a warning.
fn gpg_decrypt_signed(gpg: &Gpg, site: &Site, path: &Path) -> String {
    let intake = site.signing_cert();
    gpg.import(&armored_public(&intake));
    let trust = format!("{}:6:\n", intake.fingerprint().to_hex());
    gpg.run(&["--import-ownertrust"], Some(trust.as_bytes()));
    let out = gpg.try_run(
        &[
            "--trust-model",
            "pgp",
            "--status-fd",
            "2",
            "--decrypt",
            path.to_str().unwrap(),
        ],
        None,
    );
    let status = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "gpg: {status}");
    assert!(status.contains("[GNUPG:] DECRYPTION_OKAY"), "{status}");
    assert!(!status.contains("WARNING"), "gpg warns:\n{status}");
    status
}

/// Fails when sq said anything that is a warning.
fn assert_no_sq_warning(stderr: &str) {
    let lower = stderr.to_lowercase();
    for word in ["warning", "error", "unknown", "ignor", "unexpected"] {
        assert!(!lower.contains(word), "sq says:\n{stderr}");
    }
}

/// Seals one report with an attachment per size in [`SIZES`] to the gpg
/// key `fpr` of `gpg`, with the OpenSSL writer, and checks every part with
/// gpg, sq and embargo's opener.
fn check_with(gpg: &Gpg, fpr: &str) {
    let public = Cert::from_bytes(&gpg.export_public(fpr)).unwrap();
    let secret_bytes = gpg.export_secret(fpr, "");
    let secret = Cert::from_bytes(&secret_bytes).unwrap();
    let site = Site::new();
    let sealer = sealer_for(&site, vec![public], MessageFormat::Compat)
        .with_seipd1_engine(Seipd1Engine::Openssl);
    let inputs: Vec<Vec<u8>> = SIZES
        .iter()
        .map(|&n| random_bytes(n, n as u64 + 1))
        .collect();
    let names: Vec<String> = SIZES.iter().map(|n| format!("{n}.bin")).collect();
    let files: Vec<(&str, &[u8])> = names
        .iter()
        .zip(&inputs)
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    let (body, reporter) = body();
    let sealed = seal_files(&sealer, &site.store(), Channel::Api, body, reporter, &files);
    let dir = site.reports_dir().join(sealed.id.as_str());
    let tsk = site.path().join("maintainer.key");
    fs::write(&tsk, &secret_bytes).unwrap();

    // The manifest (signed, then padded inside the encryption) and the
    // description: on buckets, and read by gpg without a warning.
    let manifest = dir.join("manifest.pgp");
    let stored = fs::metadata(&manifest).unwrap().len();
    assert_eq!(padded_size(stored, PAD_FLOOR), stored, "manifest");
    let status = gpg_decrypt_signed(gpg, &site, &manifest);
    assert!(status.contains("[GNUPG:] GOODSIG"), "{status}");

    let opened = opener(&secret, Some(site.signing_cert()))
        .open_manifest(&site.store(), &sealed.id)
        .unwrap()
        .manifest;
    assert_eq!(opened.attachments.len(), SIZES.len());
    for (i, (size, input)) in SIZES.iter().zip(&inputs).enumerate() {
        let part = dir.join(format!("{:03}.pgp", i + 1));
        assert_framed_in_64k_chunks(&part);

        let stored = fs::metadata(&part).unwrap().len();
        assert_eq!(
            padded_size(stored, PAD_FLOOR),
            stored,
            "{size}: not on a bucket"
        );

        let (out, status) = gpg.decrypt(&part);
        assert!(out == *input, "gpg: {size} bytes differ");
        assert!(status.contains("[GNUPG:] DECRYPTION_OKAY"), "{status}");
        // MDC method 2 (SHA-1), AES-256 (9).
        assert!(status.contains("[GNUPG:] DECRYPTION_INFO 2 9"), "{status}");
        assert!(!status.contains("WARNING"), "gpg warns:\n{status}");
        assert!(!status.contains("integrity"), "gpg warns:\n{status}");

        {
            let out = Command::new("sq")
                .arg("decrypt")
                .arg("--recipient-key")
                .arg(&tsk)
                .arg(&part)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "sq decrypt, {size} bytes: {stderr}");
            assert!(out.stdout == *input, "sq: {size} bytes differ");
            assert_no_sq_warning(&stderr);
        }

        let mut out = Vec::new();
        opener(&secret, None)
            .decrypt_attachment(&site.store(), &sealed.id, &opened.attachments[i], &mut out)
            .unwrap();
        assert!(out == *input, "opener: {size} bytes differ");
    }
}

#[test]
fn openssl_writer_decrypts_with_gpg_sq_and_embargo_under_cv25519() {
    let gpg = Gpg::new();
    let fpr = gpg.gen_key("Cv <cv@example.org>", GpgKeyType::Cv25519, "", "0");
    check_with(&gpg, &fpr);
}

#[test]
fn openssl_writer_decrypts_with_gpg_sq_and_embargo_under_rsa3072() {
    let gpg = Gpg::new();
    let fpr = gpg.gen_key("Rsa <rsa@example.org>", GpgKeyType::Rsa3072, "", "0");
    check_with(&gpg, &fpr);
}

#[test]
fn an_envelope_the_openssl_writer_cannot_carry_goes_through_sequoia() {
    // A Sequoia key advertises SEIPDv2: in the rfc9580 format the part is
    // AEAD, which only Sequoia writes.
    let maintainer = sequoia_key("Seq <seq@example.org>");
    let site = Site::new();
    let sealer = sealer_for(&site, vec![maintainer.clone()], MessageFormat::Rfc9580)
        .with_seipd1_engine(Seipd1Engine::Openssl);
    let input = random_bytes(3 * K + 17, 5);
    let (body, reporter) = body();
    let sealed = seal_files(
        &sealer,
        &site.store(),
        Channel::Api,
        body,
        reporter,
        &[("a.bin", &input)],
    );
    let part = site.reports_dir().join(sealed.id.as_str()).join("001.pgp");
    let mut versions = Vec::new();
    let mut ppr = PacketParser::from_file(&part).unwrap();
    while let PacketParserResult::Some(pp) = ppr {
        if let openpgp::Packet::SEIP(seip) = &pp.packet {
            versions.push(seip.version());
        }
        ppr = pp.recurse().unwrap().1;
    }
    assert_eq!(versions, [2], "SEIPDv2, from Sequoia");
    let opener = opener(&maintainer, Some(site.signing_cert()));
    let manifest = opener
        .open_manifest(&site.store(), &sealed.id)
        .unwrap()
        .manifest;
    let mut out = Vec::new();
    opener
        .decrypt_attachment(
            &site.store(),
            &sealed.id,
            &manifest.attachments[0],
            &mut out,
        )
        .unwrap();
    assert!(out == input);
}

/// The sizes of a 1-byte and a 1,000-byte attachment, and of a short and a
/// 1,000-byte report text, are equal in both formats; gpg and sq open the
/// padded compat parts with exit 0 and no warning, and sizes just past the
/// floor land on the next bucket.
#[test]
fn small_parts_of_different_lengths_have_equal_sizes() {
    let gpg = Gpg::new();
    let fpr = gpg.gen_key("Pad <pad@example.org>", GpgKeyType::Cv25519, "", "0");
    let public = Cert::from_bytes(&gpg.export_public(fpr.as_str())).unwrap();
    let secret_bytes = gpg.export_secret(&fpr, "");
    let sequoia = sequoia_key("Seq <seq@example.org>");
    for (format, certs) in [
        (MessageFormat::Compat, vec![public.clone()]),
        (MessageFormat::Rfc9580, vec![sequoia.clone()]),
    ] {
        let site = Site::new();
        let sealer = sealer_for(&site, certs, format);
        let mut sizes = Vec::new();
        for (text_len, file_len) in [(1usize, 1usize), (1000, 1000), (1, 1000)] {
            let mut body = embargo::report::ReportBody::default();
            body.title = "padding".into();
            body.description = "x".repeat(text_len);
            let file = random_bytes(file_len, 9);
            let sealed = seal_files(
                &sealer,
                &site.store(),
                Channel::Api,
                body,
                embargo::report::Reporter::default(),
                &[("a.bin", &file)],
            );
            let dir = site.reports_dir().join(sealed.id.as_str());
            let size = |name: &str| fs::metadata(dir.join(name)).unwrap().len();
            sizes.push((size("manifest.pgp"), size("001.pgp")));
            if format == MessageFormat::Compat {
                let tsk = site.path().join("pad.key");
                fs::write(&tsk, &secret_bytes).unwrap();
                let intake = site.path().join("intake.pgp");
                fs::write(&intake, armored_public(&site.signing_cert())).unwrap();
                gpg_decrypt_signed(&gpg, &site, &dir.join("manifest.pgp"));
                for name in ["manifest.pgp", "001.pgp"] {
                    {
                        let mut sq = Command::new("sq");
                        sq.arg("decrypt").arg("--recipient-key").arg(&tsk);
                        if name == "manifest.pgp" {
                            sq.arg("--signer-cert").arg(&intake);
                        }
                        let out = sq.arg(dir.join(name)).output().unwrap();
                        let stderr = String::from_utf8_lossy(&out.stderr);
                        assert!(out.status.success(), "sq: {stderr}");
                        assert_no_sq_warning(&stderr);
                    }
                }
            }
        }
        assert!(
            sizes.iter().all(|s| *s == sizes[0]),
            "{format:?}: sizes differ: {sizes:?}"
        );
        if format == MessageFormat::Compat {
            assert_eq!(sizes[0].1, PAD_FLOOR);
        }
    }
}
