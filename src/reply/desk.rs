//! The reply desk: what the intake keeps to answer "which report is this
//! code for?" and nothing more. It holds the per-intake salt and a
//! directory `state_dir/replies/` with one small file per report, named by
//! the hex lookup key and holding the report ID. Nothing in it opens a
//! reply: the secret half of what Argon2id gives is never written.
//!
//! A derivation at the current cost takes 256 KiB and well under a
//! millisecond; one at the legacy cost (tried for a code the current one
//! does not find, [`super::derive`]) 64 MiB and about a fifth of a second.
//! [`Desk`] lets at most [`MAX_CONCURRENT`] run at
//! once, so a burst of reports or status lookups waits instead of taking
//! the machine's memory.

use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};

use openpgp::Cert;
use openpgp::serialize::SerializeInto;
use sequoia_openpgp as openpgp;

use super::ReplyCode;
use super::cert::reply_cert;
use super::derive::{COSTS, CURRENT, Cost, Derived, Salt, derive_at};
use crate::id::ReportId;

/// The directory of `state_dir` that maps lookup keys to report IDs.
pub const LOOKUP_DIR: &str = "replies";
/// Most Argon2id derivations that run at once (a legacy one takes 64 MiB).
pub const MAX_CONCURRENT: usize = 2;

/// What a new report's code gives: the code (shown once), the lookup key
/// (kept) and the public reply certificate (sealed into the manifest).
pub struct Issued {
    pub code: ReplyCode,
    pub lookup: String,
    /// The public reply certificate, ASCII-armored.
    pub cert_armored: String,
    pub cert: Cert,
}

/// What a typed code opens: the report and the reply certificate with its
/// secret keys (in memory only; Sequoia wipes them when it is dropped).
pub struct Opened {
    pub report: ReportId,
    pub cert: Cert,
}

/// The salt, the lookup directory and the gate on derivations.
pub struct Desk {
    salt: Salt,
    dir: PathBuf,
    running: Mutex<usize>,
    freed: Condvar,
}

impl Desk {
    /// The desk of `state_dir`: the salt (made on first use) and the lookup
    /// directory (made 0700).
    pub fn open(state_dir: &Path) -> io::Result<Desk> {
        std::fs::create_dir_all(state_dir)?;
        let salt = Salt::load_or_create(state_dir)?;
        let dir = state_dir.join(LOOKUP_DIR);
        match std::fs::DirBuilder::new()
            .mode(0o700)
            .recursive(true)
            .create(&dir)
        {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        Ok(Desk {
            salt,
            dir,
            running: Mutex::new(0),
            freed: Condvar::new(),
        })
    }

    /// Argon2id over `code` at `cost`, waiting for a free slot first.
    fn derive(&self, code: &ReplyCode, cost: Cost) -> Derived {
        {
            let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            while *running >= MAX_CONCURRENT {
                running = self.freed.wait(running).unwrap_or_else(|p| p.into_inner());
            }
            *running += 1;
        }
        let derived = derive_at(code, &self.salt, cost);
        *self.running.lock().unwrap_or_else(|p| p.into_inner()) -= 1;
        self.freed.notify_one();
        derived
    }

    /// A new code and what follows from it. Blocks for one derivation.
    pub fn issue(&self) -> openpgp::Result<Issued> {
        let code = ReplyCode::generate();
        let derived = self.derive(&code, CURRENT);
        let cert = reply_cert(&derived.seed)?.strip_secret_key_material();
        let cert_armored = String::from_utf8(cert.armored().to_vec()?)?;
        Ok(Issued {
            code,
            lookup: derived.lookup,
            cert_armored,
            cert,
        })
    }

    /// Records that `lookup` is report `id`'s, durably (temporary file,
    /// fsync, rename, directory fsync) before returning.
    pub fn record(&self, lookup: &str, id: &ReportId) -> io::Result<()> {
        let path = self.path(lookup)?;
        let tmp = self.dir.join(format!(".tmp-{lookup}"));
        {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(id.as_str().as_bytes())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(&self.dir)?.sync_all()
    }

    /// The report `code` belongs to, with its reply certificate's secret
    /// keys; `None` for a code no report has. The code is tried at every
    /// cost codes were issued with ([`COSTS`]), so every wrong or unknown
    /// code costs the same derivations.
    pub fn open_code(&self, code: &ReplyCode) -> Option<Opened> {
        for cost in COSTS {
            let derived = self.derive(code, cost);
            if let Some(report) = self.report_of(&derived.lookup) {
                let cert = reply_cert(&derived.seed).ok()?;
                return Some(Opened { report, cert });
            }
        }
        None
    }

    /// The report a lookup key maps to.
    fn report_of(&self, lookup: &str) -> Option<ReportId> {
        read_report(&self.path(lookup).ok()?)
    }

    /// Forgets the lookup keys of reports `exists` says are gone; returns
    /// how many.
    pub fn forget_missing(&self, exists: &dyn Fn(&ReportId) -> bool) -> io::Result<usize> {
        forget_missing(&self.dir, exists)
    }

    fn path(&self, lookup: &str) -> io::Result<PathBuf> {
        if !is_lookup(lookup) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a lookup key",
            ));
        }
        Ok(self.dir.join(lookup))
    }
}

/// Removes the lookup keys in `state_dir` whose reports `exists` says are
/// gone (retention deleted them), and any that cannot be read; returns how
/// many. A code of a deleted report then finds nothing, as a wrong one.
pub fn forget_missing_in(
    state_dir: &Path,
    exists: &dyn Fn(&ReportId) -> bool,
) -> io::Result<usize> {
    match forget_missing(&state_dir.join(LOOKUP_DIR), exists) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        other => other,
    }
}

fn forget_missing(dir: &Path, exists: &dyn Fn(&ReportId) -> bool) -> io::Result<usize> {
    let mut removed = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !is_lookup(&name) {
            continue;
        }
        match read_report(&entry.path()) {
            Some(id) if exists(&id) => {}
            _ => {
                std::fs::remove_file(entry.path())?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}

/// The report ID a lookup file holds.
fn read_report(path: &Path) -> Option<ReportId> {
    let mut text = String::new();
    std::fs::File::open(path)
        .ok()?
        .take(64)
        .read_to_string(&mut text)
        .ok()?;
    text.trim().parse().ok()
}

/// 64 lower-case hex digits.
fn is_lookup(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_issued_code_opens_its_report_and_nothing_else_does() {
        let dir = tempfile::tempdir().unwrap();
        let desk = Desk::open(dir.path()).unwrap();
        let issued = desk.issue().unwrap();
        assert!(!issued.cert.is_tsk());
        let id = ReportId::random();
        desk.record(&issued.lookup, &id).unwrap();
        let opened = desk.open_code(&issued.code).unwrap();
        assert_eq!(opened.report, id);
        assert!(opened.cert.is_tsk());
        assert_eq!(opened.cert.fingerprint(), issued.cert.fingerprint());
        assert!(desk.open_code(&ReplyCode::generate()).is_none());
        // What the desk keeps is the lookup and the ID, nothing secret.
        let kept = std::fs::read(dir.path().join(LOOKUP_DIR).join(&issued.lookup)).unwrap();
        assert_eq!(kept, id.as_str().as_bytes());
        assert_eq!(desk.forget_missing(&|_| true).unwrap(), 0);
        assert_eq!(desk.forget_missing(&|_| false).unwrap(), 1);
        assert!(desk.open_code(&issued.code).is_none());
    }

    #[test]
    fn a_code_issued_at_the_legacy_cost_still_opens_its_report() {
        let dir = tempfile::tempdir().unwrap();
        let desk = Desk::open(dir.path()).unwrap();
        let code = ReplyCode::generate();
        let legacy = derive_at(&code, &desk.salt, super::super::LEGACY);
        let id = ReportId::random();
        desk.record(&legacy.lookup, &id).unwrap();
        let opened = desk.open_code(&code).unwrap();
        assert_eq!(opened.report, id);
        let made = reply_cert(&legacy.seed).unwrap();
        assert_eq!(opened.cert.fingerprint(), made.fingerprint());
        // A new code is issued at the current cost, not the legacy one.
        let issued = desk.issue().unwrap();
        assert_eq!(
            issued.lookup,
            derive_at(&issued.code, &desk.salt, CURRENT).lookup
        );
    }
}
