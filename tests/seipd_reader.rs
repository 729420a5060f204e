//! embargo's own SEIPDv1 reader (`seal::seipd_reader`) against what gpg
//! and both of embargo's writers make, and against Sequoia's reader on
//! mutated and hand-built packets: the two must agree, never one accepting
//! what the other refuses, never different plaintext.

mod common;

use std::fs;

use common::*;
use embargo::config::MessageFormat;
use embargo::seal::seipd::Seipd1Writer;
use embargo::seal::seipd_reader::{SeipdError, differential, open_to_vec, open_with_sequoia};
use embargo::seal::{Channel, Seipd1Engine};
use openpgp::Cert;
use openpgp::crypto::SessionKey;
use openpgp::packet::PKESK;
use openpgp::parse::Parse;
use openpgp::types::SymmetricAlgorithm;
use sequoia_openpgp as openpgp;
use std::io::Write;

const K: usize = 64 * 1024;
const AES256: SymmetricAlgorithm = SymmetricAlgorithm::AES256;

/// The length of the packet header at the start of `b`: (header, body).
fn header(b: &[u8]) -> (usize, usize) {
    if b[0] & 0x40 != 0 {
        match b[1] {
            0..=191 => (2, b[1] as usize),
            192..=223 => (3, (((b[1] as usize) - 192) << 8) + b[2] as usize + 192),
            255 => (6, u32::from_be_bytes(b[2..6].try_into().unwrap()) as usize),
            o => panic!("a partial length {o:#x} on a PKESK"),
        }
    } else {
        match b[0] & 3 {
            0 => (2, b[1] as usize),
            1 => (3, u16::from_be_bytes(b[1..3].try_into().unwrap()) as usize),
            2 => (5, u32::from_be_bytes(b[1..5].try_into().unwrap()) as usize),
            _ => panic!("an indeterminate PKESK"),
        }
    }
}

fn tag(ctb: u8) -> u8 {
    if ctb & 0x40 != 0 {
        ctb & 0x3F
    } else {
        (ctb >> 2) & 0x0F
    }
}

/// Splits a message into its PKESKs and the rest (the SEIPD packet on).
fn split(bytes: &[u8]) -> (Vec<PKESK>, &[u8]) {
    let mut pkesks = Vec::new();
    let mut at = 0;
    while tag(bytes[at]) == 1 {
        let (h, len) = header(&bytes[at..]);
        match openpgp::Packet::from_bytes(&bytes[at..at + h + len]).unwrap() {
            openpgp::Packet::PKESK(p) => pkesks.push(p),
            p => panic!("not a PKESK: {p:?}"),
        }
        at += h + len;
    }
    (pkesks, &bytes[at..])
}

/// The session key of a message, the way embargo's opener gets it: a
/// PKESK decrypted by Sequoia with the secret key.
fn session_key(secret: &Cert, pkesks: &[PKESK]) -> (SymmetricAlgorithm, SessionKey) {
    let policy = openpgp::policy::StandardPolicy::new();
    for pkesk in pkesks {
        for ka in secret
            .keys()
            .with_policy(&policy, None)
            .unencrypted_secret()
        {
            let mut pair = ka.key().clone().into_keypair().unwrap();
            if let Some((algo, sk)) = pkesk.decrypt(&mut pair, None) {
                return (algo.unwrap_or(AES256), sk);
            }
        }
    }
    panic!("no PKESK for this key");
}

/// Opens a whole message (PKESKs, SEIPD) with the new reader, checking
/// that Sequoia's agrees.
fn open_message(secret: &Cert, bytes: &[u8]) -> Vec<u8> {
    let (pkesks, seipd) = split(bytes);
    let (algo, sk) = session_key(secret, &pkesks);
    assert_eq!(algo, AES256);
    let ours = open_to_vec(seipd, algo, &sk).unwrap();
    let theirs = open_with_sequoia(seipd, algo, &sk).unwrap();
    assert!(ours == theirs, "the readers differ");
    ours.to_vec()
}

const SIZES: &[usize] = &[0, 1, 200, 511, 512, 8383, 8384, K - 1, K, K + 1, 3 * K + 17];

fn gpg_parts_decrypt_byte_exact(kind: GpgKeyType) {
    let gpg = Gpg::new();
    let fpr = gpg.gen_key("R <r@example.org>", kind, "", "0");
    let secret = Cert::from_bytes(&gpg.export_secret(&fpr, "")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for &size in SIZES {
        let input = random_bytes(size, size as u64 + 7);
        let plain = dir.path().join(format!("{size}.bin"));
        fs::write(&plain, &input).unwrap();
        let args = [
            "--encrypt",
            "--compress-algo",
            "none",
            "--cipher-algo",
            "AES256",
            "--recipient",
            &fpr,
            "--output",
            "-",
        ];
        // From a file gpg knows the size (definite lengths, a file name);
        // from a pipe it writes partial lengths.
        let mut from_file = args.to_vec();
        from_file.push(plain.to_str().unwrap());
        let file_part = gpg.run(&from_file, None).stdout;
        let pipe_part = gpg.run(&args, Some(&input)).stdout;
        for (how, part) in [("file", file_part), ("pipe", pipe_part)] {
            let out = open_message(&secret, &part);
            assert!(out == input, "gpg from a {how}, {size} bytes differ");
        }
    }
}

#[test]
fn gpg_parts_decrypt_byte_exact_under_rsa3072() {
    gpg_parts_decrypt_byte_exact(GpgKeyType::Rsa3072);
}

#[test]
fn gpg_parts_decrypt_byte_exact_under_cv25519() {
    gpg_parts_decrypt_byte_exact(GpgKeyType::Cv25519);
}

#[test]
fn parts_of_both_writers_decrypt_byte_exact() {
    let secret = sequoia_key("Seq <seq@example.org>");
    let site = Site::new();
    let inputs: Vec<Vec<u8>> = SIZES
        .iter()
        .map(|&n| random_bytes(n, n as u64 + 3))
        .collect();
    let names: Vec<String> = SIZES.iter().map(|n| format!("{n}.bin")).collect();
    let files: Vec<(&str, &[u8])> = names
        .iter()
        .zip(&inputs)
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    for engine in [Seipd1Engine::Sequoia, Seipd1Engine::Openssl] {
        let sealer = sealer_for(&site, vec![secret.clone()], MessageFormat::Compat)
            .with_seipd1_engine(engine);
        let mut body = embargo::report::ReportBody::default();
        body.title = "reader".into();
        body.description = "d".into();
        let sealed = seal_files(
            &sealer,
            &site.store(),
            Channel::Api,
            body,
            embargo::report::Reporter::default(),
            &files,
        );
        let dir = site.reports_dir().join(sealed.id.as_str());
        for (i, input) in inputs.iter().enumerate() {
            let part = fs::read(dir.join(format!("{:03}.pgp", i + 1))).unwrap();
            let out = open_message(&secret, &part);
            assert!(out == *input, "{engine:?}: {} bytes differ", input.len());
        }
    }
}

/// A SEIPD packet around `inner` (any bytes: the MDC is made valid).
fn seal_inner(inner: &[u8], key: &[u8]) -> Vec<u8> {
    let mut w = Seipd1Writer::new(Vec::new(), key).unwrap();
    w.write_all(inner).unwrap();
    w.finish().unwrap()
}

/// A new-format literal data packet with a definite length.
fn literal(data: &[u8]) -> Vec<u8> {
    let mut body = vec![b'b', 1, b'x', 0, 0, 0, 0];
    body.extend_from_slice(data);
    let mut p = vec![0xC0 | 11];
    p.extend_from_slice(&new_len(body.len()));
    p.extend_from_slice(&body);
    p
}

fn new_len(len: usize) -> Vec<u8> {
    match len {
        0..=191 => vec![len as u8],
        192..=8383 => vec![((len - 192) >> 8) as u8 + 192, (len - 192) as u8],
        _ => {
            let mut v = vec![0xFF];
            v.extend_from_slice(&(len as u32).to_be_bytes());
            v
        }
    }
}

/// The new reader's verdict on `packet`; panics when Sequoia's disagrees
/// (see `seipd_reader::differential`).
fn agree(packet: &[u8], key: &SessionKey, what: &str) -> Option<Vec<u8>> {
    match differential(packet, AES256, key) {
        Ok(verdict) => verdict.map(|p| p.to_vec()),
        Err(e) => panic!("{what}: {e}"),
    }
}

#[test]
fn hand_built_inner_streams_get_the_same_verdict_from_both_readers() {
    let key = [9u8; 32];
    let sk = SessionKey::from(&key[..]);
    let data = random_bytes(3000, 1);
    let lit = literal(&data);
    let padding = [0xC0 | 21, 3, 1, 2, 3];
    let marker = [0xC0 | 10, 3, b'P', b'G', b'P'];
    let noncritical = [0xC0 | 40, 1, 0];
    // Old format: tag 11, 2-byte length; and indeterminate.
    let mut old = vec![0x80 | (11 << 2) | 1];
    old.extend_from_slice(&((lit.len() - 3) as u16).to_be_bytes());
    old.extend_from_slice(&lit[3..]);
    let mut old_indeterminate = vec![0x80 | (11 << 2) | 3];
    old_indeterminate.extend_from_slice(&lit[3..]);
    // Partial lengths: 1024, then 512, then the rest definite.
    let lit_body = &lit[3..];
    let partial = |first: u8| {
        let n = 1usize << (first & 0x1F);
        let mut p = vec![0xC0 | 11, first];
        p.extend_from_slice(&lit_body[..n]);
        p.push(224 + 9);
        p.extend_from_slice(&lit_body[n..n + 512]);
        p.extend_from_slice(&new_len(lit_body.len() - n - 512));
        p.extend_from_slice(&lit_body[n + 512..]);
        p
    };
    let cat = |parts: &[&[u8]]| parts.concat();
    let compressed = {
        let mut p = vec![0xC0 | 8];
        p.extend_from_slice(&new_len(1 + lit.len()));
        p.push(0); // uncompressed
        p.extend_from_slice(&lit);
        p
    };
    let mdc_inside = cat(&[&lit, &[0xD3, 0x14], &[0u8; 20]]);
    let accepted: Vec<(&str, Vec<u8>)> = vec![
        ("one literal", lit.clone()),
        ("old format", old.clone()),
        ("old format, indeterminate", old_indeterminate.clone()),
        ("partial lengths", partial(224 + 10)),
        ("padding around", cat(&[&padding, &lit, &padding])),
        ("a marker first", cat(&[&marker, &lit])),
        ("a non-critical packet", cat(&[&lit, &noncritical])),
        // Sequoia ignores these whatever their length encoding.
        (
            "a partial padding",
            cat(&[&lit, &[0xC0 | 21, 224 + 9], &[0; 512], &[0]]),
        ),
        (
            "a marker of 5 bytes",
            cat(&[&[0xC0 | 10, 5, 1, 2, 3, 4, 5], &lit]),
        ),
    ];
    for (what, inner) in accepted {
        let out = agree(&seal_inner(&inner, &key), &sk, what);
        assert_eq!(out.as_deref(), Some(&data[..]), "{what}");
    }
    let refused: Vec<(&str, Vec<u8>)> = vec![
        ("nothing", Vec::new()),
        ("only padding", padding.to_vec()),
        ("two literals", cat(&[&lit, &lit])),
        ("compressed", compressed),
        ("a first partial chunk of 256", partial(224 + 8)),
        ("a truncated literal", lit[..lit.len() - 1].to_vec()),
        ("a byte after the literal", cat(&[&lit, &[0]])),
        ("an MDC inside", mdc_inside),
        ("a critical unknown packet", cat(&[&lit, &[0xC0 | 30, 0]])),
        (
            "a literal under 6 bytes",
            vec![0xC0 | 11, 5, b'b', 0, 0, 0, 0],
        ),
    ];
    for (what, inner) in refused {
        assert!(
            agree(&seal_inner(&inner, &key), &sk, what).is_none(),
            "{what}"
        );
    }
}

/// Bytes to try at a position: flips of one bit, of all bits, and values
/// that make length octets change meaning.
const XORS: &[u8] = &[0x01, 0x80, 0xFF, 0x20, 0x40];

fn mutations_agree(packet: &[u8], key: &SessionKey, plain: &[u8]) {
    assert_eq!(agree(packet, key, "unmodified").as_deref(), Some(plain));
    let n = packet.len();
    let mut positions: Vec<usize> = (0..n.min(80)).collect();
    positions.extend(n.saturating_sub(80)..n);
    for boundary in (K..n).step_by(K + 1) {
        positions.extend(boundary.saturating_sub(4)..(boundary + 4).min(n));
    }
    positions.extend((0..n).step_by(997));
    positions.sort_unstable();
    positions.dedup();
    let mut tried = 0;
    for &at in &positions {
        for &x in XORS {
            let mut m = packet.to_vec();
            m[at] ^= x;
            assert!(
                agree(&m, key, &format!("xor {x:#x} at {at}")).is_none(),
                "a modified byte at {at} was accepted"
            );
            tried += 1;
        }
        let truncated = &packet[..at];
        assert!(agree(truncated, key, &format!("cut at {at}")).is_none());
        let mut inserted = packet.to_vec();
        inserted.insert(at, 0);
        assert!(agree(&inserted, key, &format!("insert at {at}")).is_none());
        let mut removed = packet.to_vec();
        removed.remove(at);
        assert!(agree(&removed, key, &format!("remove at {at}")).is_none());
        tried += 3;
    }
    for tail in [
        &[0u8][..],
        &[0xFF],
        &[0xC0 | 18, 0],
        &[0xC0 | 11, 0],
        b"junk",
    ] {
        let appended = [packet, tail].concat();
        assert!(agree(&appended, key, &format!("append {tail:?}")).is_none());
        tried += 1;
    }
    // Packets to be ignored after the SEIPD packet: both accept.
    for tail in [&[0xC0 | 21, 2, 0, 0][..], &[0xC0 | 10, 3, b'P', b'G', b'P']] {
        let appended = [packet, tail].concat();
        assert_eq!(
            agree(&appended, key, &format!("append {tail:?}")).as_deref(),
            Some(plain)
        );
    }
    assert!(tried > 100);
    // A wrong key fails the quick check (or, 1 in 65536, the MDC).
    let wrong = SessionKey::from(&[0x55u8; 32][..]);
    assert!(agree(packet, &wrong, "wrong key").is_none());
}

#[test]
fn mutated_packets_of_the_openssl_writer_get_the_same_verdict_from_both_readers() {
    let key = [3u8; 32];
    let sk = SessionKey::from(&key[..]);
    for size in [0, 40, 2 * K + 100] {
        let data = random_bytes(size, 11);
        mutations_agree(&seal_inner(&literal(&data), &key), &sk, &data);
    }
}

#[test]
fn mutated_gpg_parts_get_the_same_verdict_from_both_readers() {
    let gpg = Gpg::new();
    let fpr = gpg.gen_key("C <c@example.org>", GpgKeyType::Cv25519, "", "0");
    let secret = Cert::from_bytes(&gpg.export_secret(&fpr, "")).unwrap();
    for size in [10, K + 100] {
        let input = random_bytes(size, 5);
        let args = [
            "--encrypt",
            "--compress-algo",
            "none",
            "--cipher-algo",
            "AES256",
            "--recipient",
            &fpr,
            "--output",
            "-",
        ];
        let part = gpg.run(&args, Some(&input)).stdout;
        let (pkesks, seipd) = split(&part);
        let (_, sk) = session_key(&secret, &pkesks);
        mutations_agree(seipd, &sk, &input);
    }
}

#[test]
fn a_wrong_quick_check_and_a_bad_mdc_say_so() {
    let key = [1u8; 32];
    let sk = SessionKey::from(&key[..]);
    let packet = seal_inner(&literal(b"hello"), &key);
    let wrong = SessionKey::from(&[2u8; 32][..]);
    assert!(matches!(
        open_to_vec(&packet, AES256, &wrong),
        Err(SeipdError::QuickCheck)
    ));
    let mut flipped = packet.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    assert!(matches!(
        open_to_vec(&flipped, AES256, &sk),
        Err(SeipdError::BadMdc)
    ));
    assert!(matches!(
        open_to_vec(&packet, SymmetricAlgorithm::AES128, &sk),
        Err(SeipdError::Unsupported(_))
    ));
}

/// Files under `dir`, recursively (what `decrypt` left in OUT).
fn left_in(dir: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            found.push(e.path().display().to_string());
            found.extend(left_in(&e.path()));
        }
    }
    found
}

/// `embargo decrypt`, with a key file and with `--gpg`, opens a compat
/// attachment through embargo's own reader and refuses every mutation
/// class of it (a flipped bit in the data, in the quick check and in the
/// MDC; truncation in the packet header, the data and the MDC; data after
/// the packet; a part from another report) with exit 1, leaving nothing in
/// OUT. Data appended after a packet in partial chunks is one thing
/// Sequoia 2.3's reader accepts and the own reader refuses, so that case
/// also shows which reader ran.
#[test]
fn decrypt_opens_compat_attachments_with_the_own_reader_and_refuses_every_mutation() {
    refuses_every_mutation_of("001.pgp", "opened by embargo decrypt".into());
}

/// The same for the signed manifest, which the own reader decrypts and
/// Sequoia's verifier then checks: text of 100 KiB puts it in partial
/// chunks, so trailing data again shows which reader ran; `list` opens
/// only the manifest, so it must refuse that too.
#[test]
fn decrypt_and_list_open_compat_manifests_with_the_own_reader_and_refuse_every_mutation() {
    let text: String = random_bytes(100 * 1024, 5)
        .iter()
        .map(|b| char::from(b'a' + b % 26))
        .collect();
    refuses_every_mutation_of("manifest.pgp", text);
}

/// Seals a report (a 3-chunk attachment, `description` as its text) to a
/// gpg-made key, checks that `decrypt` opens it with `--key` and `--gpg`,
/// then replaces `part` by each mutation in turn: every run must exit 1
/// and leave nothing in OUT (and `list` must refuse a bad manifest).
fn refuses_every_mutation_of(part_name: &str, description: String) {
    let gpg = Gpg::new();
    let fpr = gpg.gen_key("Own <own@example.org>", GpgKeyType::Cv25519, "", "0");
    let public = Cert::from_bytes(&gpg.export_public(&fpr)).unwrap();
    let secret_bytes = gpg.export_secret(&fpr, "");
    let site = Site::new();
    let sealer = sealer_for(&site, vec![public], MessageFormat::Compat);
    let big = random_bytes(3 * K + 17, 77);
    let (mut body, reporter) = report_body();
    body.description = description;
    let sealed = seal_files(
        &sealer,
        &site.store(),
        Channel::Api,
        body,
        reporter,
        &[("big.bin", &big)],
    );
    let other = seal_files(
        &sealer,
        &site.store(),
        Channel::Api,
        report_body().0,
        report_body().1,
        &[("big.bin", &random_bytes(3 * K + 17, 78))],
    );
    let key = site.path().join("own.key");
    fs::write(&key, &secret_bytes).unwrap();
    let out = site.path().join("out");
    let part = site.reports_dir().join(sealed.id.as_str()).join(part_name);
    let original = fs::read(&part).unwrap();
    let decrypt = |gpg_mode: bool| {
        let d = Decrypt::new(&site, sealed.id.as_str()).out(&out);
        let d = if gpg_mode {
            d.gpg().env("GNUPGHOME", gpg.home.path())
        } else {
            d.key(&key)
        };
        d.run()
    };
    let list = || {
        site.embargo()
            .arg("list")
            .arg("--store")
            .arg(site.store_dir())
            .arg("--key")
            .arg(&key)
            .output()
            .unwrap()
    };
    for gpg_mode in [false, true] {
        let run = decrypt(gpg_mode);
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        let opened = fs::read(out.join(sealed.id.as_str()).join("big.bin")).unwrap();
        assert!(opened == big, "decrypted bytes differ");
        fs::remove_dir_all(&out).unwrap();
    }
    let listed = list();
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );

    // Where the SEIPD packet starts, after the PKESK.
    let seipd = {
        let (h, b) = header(&original);
        h + b
    };
    assert_eq!(original[seipd], 0xC0 | 18);
    let n = original.len();
    let flip = |at: usize| {
        let mut m = original.clone();
        m[at] ^= 0x01;
        m
    };
    let mutations: Vec<(&str, Vec<u8>)> = vec![
        ("a bit in the data", flip(seipd + 2 + K / 2)),
        ("a bit in the quick check", flip(seipd + 2 + 1 + 15)),
        ("a bit in the MDC", flip(n - 3)),
        ("cut in the packet header", original[..seipd + 1].to_vec()),
        ("cut in the data", original[..seipd + K].to_vec()),
        ("cut in the MDC", original[..n - 10].to_vec()),
        (
            "data after the packet",
            [&original[..], b"trailing"].concat(),
        ),
        (
            "another report's part",
            fs::read(site.reports_dir().join(other.id.as_str()).join(part_name)).unwrap(),
        ),
    ];
    for (what, bytes) in &mutations {
        fs::write(&part, bytes).unwrap();
        for gpg_mode in [false, true] {
            let run = decrypt(gpg_mode);
            let err = String::from_utf8_lossy(&run.stderr);
            assert_eq!(run.status.code(), Some(1), "{what} (gpg {gpg_mode}): {err}");
            assert!(
                err.contains(part_name) || err.contains("belongs to report"),
                "{what}: {err}"
            );
            assert!(left_in(&out).is_empty(), "{what}: left {:?}", left_in(&out));
        }
        if part_name == "manifest.pgp" {
            let run = list();
            let said = String::from_utf8_lossy(&run.stderr).into_owned()
                + &String::from_utf8_lossy(&run.stdout);
            assert!(
                !run.status.success()
                    || said.contains("manifest.pgp")
                    || said.contains("CANNOT OPEN"),
                "{what}: list said {said}"
            );
        }
    }
    fs::write(&part, &original).unwrap();
}

fn report_body() -> (embargo::report::ReportBody, embargo::report::Reporter) {
    let mut body = embargo::report::ReportBody::default();
    body.title = "own reader".into();
    body.description = "opened by embargo decrypt".into();
    (body, embargo::report::Reporter::default())
}
