//! Every seed under `fuzz/corpus-seeds/<target>/` through the same library
//! calls as the fuzz target of that name (`fuzz/fuzz_targets/<target>.rs`),
//! so CI re-checks the corpus (and every crash input added to it) without
//! libFuzzer. A panic here is a fuzz finding.

use std::fs;
use std::path::{Path, PathBuf};

use embargo::config::Limits;
use embargo::id::ReportId;
use embargo::report::{self, CvssScore, RawReport};
use embargo::seal::{Manifest, Opener, SecretSource};
use embargo::store::{FsStore, Store};
use sequoia_openpgp::cert::CertParser;
use sequoia_openpgp::cert::prelude::*;
use sequoia_openpgp::parse::Parse;
use sequoia_openpgp::serialize::SerializeInto;

fn seeds(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus-seeds")
        .join(target);
    let mut out: Vec<_> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let bytes = fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no seeds in {}", dir.display());
    out
}

/// fuzz_targets/input_json.rs
#[test]
fn input_json_seeds() {
    let mut valid = 0;
    for (_path, data) in seeds("input_json") {
        if let Ok(raw) = RawReport::from_json(&data)
            && raw.validate(&Limits::default()).is_ok()
        {
            valid += 1;
        }
    }
    assert!(valid >= 2, "the seeds include valid reports ({valid})");
}

/// fuzz_targets/fields.rs
#[test]
fn fields_seeds() {
    for (_path, data) in seeds("fields") {
        let Ok(s) = std::str::from_utf8(&data) else {
            continue;
        };
        let _ = s.parse::<ReportId>();
        let _ = CvssScore::parse(s);
        let _ = report::parse_cwe(s);
        let _ = report::is_plausible_email(s);
        let mut raw = RawReport::default();
        for name in report::FIELDS {
            raw.set(name, s.to_string());
        }
        let _ = raw.validate(&Limits::default());
    }
    let read = |name: &str| {
        fs::read_to_string(format!(
            "{}/fuzz/corpus-seeds/fields/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    };
    assert!(read("report-id").parse::<ReportId>().is_ok());
    assert!(CvssScore::parse(&read("cvss40")).is_ok());
    assert!(CvssScore::parse(&read("cvss31")).is_ok());
}

/// fuzz_targets/manifest.rs
#[test]
fn manifest_seeds() {
    let mut parsed = 0;
    for (path, data) in seeds("manifest") {
        if let Ok(m) = Manifest::from_json(&data) {
            let json = m.to_json();
            Manifest::from_json(&json).unwrap_or_else(|e| {
                panic!("{}: reserialized manifest unreadable: {e}", path.display())
            });
            parsed += 1;
        }
    }
    assert!(parsed >= 1, "the real manifest parses");
}

/// fuzz_targets/keyring.rs
#[test]
fn keyring_seeds() {
    let mut certs = 0;
    for (_path, data) in seeds("keyring") {
        if let Ok(parser) = CertParser::from_bytes(&data) {
            for cert in parser.flatten().take(8) {
                let _ =
                    embargo::keys::judge(Path::new("fuzz.asc"), cert, std::time::SystemTime::now());
                certs += 1;
            }
        }
    }
    assert!(certs >= 2);
}

/// fuzz_targets/sealed_reader.rs: the first byte says where the manifest
/// part ends, the rest is 001.pgp; opened with a real (unrelated) key.
#[test]
fn sealed_reader_seeds() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(dir.path()).unwrap();
    let (cert, _) = CertBuilder::general_purpose(Some("fuzz"))
        .generate()
        .unwrap();
    let tsk = cert.as_tsk().to_vec().unwrap();
    let opener = Opener::new(
        SecretSource::from_key_bytes(&tsk, None).unwrap(),
        Some(cert),
    );
    for (_path, data) in seeds("sealed_reader") {
        let id = ReportId::random();
        let mut staging = store.stage(&id).unwrap();
        let split = data.first().map_or(0, |b| *b as usize).min(data.len());
        for (name, bytes) in [
            ("manifest.pgp", &data[..split]),
            ("001.pgp", &data[split..]),
        ] {
            let mut sink = staging.create_part(name).unwrap();
            std::io::Write::write_all(&mut sink, bytes).unwrap();
            sink.finish().unwrap();
        }
        staging.commit().unwrap();
        if let Ok(m) = opener.open_manifest(&store, &id) {
            for entry in &m.manifest.attachments {
                let _ = opener.decrypt_attachment(&store, &id, entry, &mut std::io::sink());
            }
        }
        store.remove(&id).unwrap();
    }
}
