//! The sealed-report reader on arbitrary bytes: a store whose manifest and
//! first part are the fuzz input, opened with a real secret key.
#![no_main]

mod common;

use std::sync::OnceLock;

use embargo::id::ReportId;
use embargo::seal::{Opener, SecretSource};
use embargo::store::{FsStore, Store};
use libfuzzer_sys::fuzz_target;
use sequoia_openpgp::serialize::SerializeInto;

struct Fixture {
    _dir: std::path::PathBuf,
    store: FsStore,
    opener: Opener,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = common::scratch_dir();
        let store = FsStore::open(&dir).unwrap();
        let cert = common::throwaway_cert();
        let tsk = cert.as_tsk().to_vec().unwrap();
        let opener = Opener::new(SecretSource::from_key_bytes(&tsk, None).unwrap(), Some(cert));
        Fixture { _dir: dir, store, opener }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let id = ReportId::random();
    let mut staging = f.store.stage(&id).unwrap();
    let split = data.first().map_or(0, |b| *b as usize).min(data.len());
    for (name, bytes) in [("manifest.pgp", &data[..split]), ("001.pgp", &data[split..])] {
        let mut sink = staging.create_part(name).unwrap();
        std::io::Write::write_all(&mut sink, bytes).unwrap();
        sink.finish().unwrap();
    }
    staging.commit().unwrap();
    if let Ok(m) = f.opener.open_manifest(&f.store, &id) {
        for entry in &m.manifest.attachments {
            let _ = f.opener.decrypt_attachment(&f.store, &id, entry, &mut std::io::sink());
        }
    }
    f.store.remove(&id).unwrap();
});
