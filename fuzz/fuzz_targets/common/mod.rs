//! What several fuzz targets share: a private scratch directory on tmpfs
//! (stores fsync every part) that does not outlive the fuzzing process by
//! more than one run, and a throwaway maintainer certificate.

use std::path::{Path, PathBuf};

use sequoia_openpgp::Cert;
use sequoia_openpgp::cert::prelude::*;

const PREFIX: &str = "embargo-fuzz-";

/// `/dev/shm/embargo-fuzz-<pid>` (or the temp dir without /dev/shm).
/// libFuzzer ends with `exit()`, so no destructor removes it; instead
/// every start removes the directories of processes that are gone.
pub fn scratch_dir() -> PathBuf {
    let base: PathBuf = if Path::new("/dev/shm").is_dir() { "/dev/shm".into() } else { std::env::temp_dir() };
    if let Ok(entries) = std::fs::read_dir(&base) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(PREFIX)) else { continue };
            if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    let dir = base.join(format!("{PREFIX}{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    dir
}

/// A new Curve25519 certificate, made for this process only.
pub fn throwaway_cert() -> Cert {
    CertBuilder::new()
        .add_userid("embargo fuzzing, throwaway")
        .set_cipher_suite(CipherSuite::Cv25519)
        .add_transport_encryption_subkey()
        .generate()
        .expect("a certificate")
        .0
}
