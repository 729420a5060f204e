//! Maintainers' certificates (`keys_dir`) and the intake's own secrets
//! (`state_dir`); README, "Keys".

use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sequoia_openpgp as openpgp;

use openpgp::cert::CertParser;
use openpgp::cert::prelude::*;
use openpgp::parse::Parse;
use openpgp::policy::StandardPolicy;
use openpgp::serialize::{Serialize, SerializeInto};
use openpgp::types::{KeyFlags, RevocationStatus};
use openpgp::{Cert, Fingerprint, Profile};
use zeroize::Zeroizing;

use crate::clock::{Clock, rfc3339};

/// The policy every certificate is judged by.
pub static POLICY: StandardPolicy<'static> = StandardPolicy::new();

/// Largest key file read from `keys_dir`; certificates are a few KiB.
const MAX_KEY_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// What can go wrong with keys.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    #[error(
        "cannot read keys directory {dir}: {source}; create it and put the maintainers' public certificates (*.asc or *.pgp) in it"
    )]
    Dir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read key file {file}: {source}")]
    File {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{file} holds secret key material: keys_dir must only hold maintainers' public certificates. Remove the file now, export the public part with `gpg --export --armor FINGERPRINT`, and consider the secret key exposed if this server is shared"
    )]
    SecretKey { file: PathBuf },
    #[error(
        "no usable maintainer certificate in {dir}{details}: reports are refused until one is added (run `embargo keys check` for each certificate's status)"
    )]
    NoUsableKey { dir: PathBuf, details: String },
    #[error(
        "cannot use state directory {dir}: {source}; make it writable by the user running embargo"
    )]
    State {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "intake secret {file} is damaged: {reason}; restore it from backup (a new signing key would not match receipts already given)"
    )]
    BadState { file: PathBuf, reason: String },
    #[error(
        "intake secret {file} is readable or writable by other users (mode {mode:04o}): run `chmod 600 {file}` (and make sure it belongs to the user running embargo), then start again; if others could read it, treat it as leaked"
    )]
    InsecureSecret { file: PathBuf, mode: u32 },
    #[error("OpenPGP operation failed: {0}")]
    OpenPgp(#[source] anyhow::Error),
}

/// One certificate found in `keys_dir` and what was found of it.
#[derive(Clone, Debug)]
pub struct CertEntry {
    /// The file it came from.
    pub file: PathBuf,
    pub cert: Cert,
    /// Primary user ID, if any.
    pub user_id: Option<String>,
    /// Why it cannot be used; `None` when it can.
    pub problem: Option<String>,
    /// When it stops being usable for encryption (`None`: never).
    pub expires: Option<SystemTime>,
    /// Fingerprints of the subkeys reports are encrypted to.
    pub encryption_keys: Vec<Fingerprint>,
}

impl CertEntry {
    pub fn fingerprint(&self) -> Fingerprint {
        self.cert.fingerprint()
    }

    pub fn is_usable(&self) -> bool {
        self.problem.is_none()
    }
}

/// When a certificate expires, as `keys check` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    At(SystemTime),
    Never,
    /// No valid self-signature says (an unusable certificate).
    Unknown,
}

/// What `keys check` says of one certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CertStatus {
    /// Usable, with this many encryption subkeys.
    Usable { encryption_keys: usize },
    /// Usable, but it expires within `key_expiry_warning`.
    ExpiresSoon,
    /// Not usable, and why.
    Unusable(String),
}

/// One row of `keys check`.
#[derive(Clone, Debug)]
pub struct CertCheck {
    pub fingerprint: Fingerprint,
    pub user_id: Option<String>,
    pub file: PathBuf,
    pub expires: Expiry,
    pub status: CertStatus,
}

/// A file in `keys_dir` that held no certificate.
#[derive(Clone, Debug)]
pub struct BadFile {
    pub file: PathBuf,
    pub reason: String,
}

/// Everything in `keys_dir`, judged at one instant.
#[derive(Clone, Debug)]
pub struct Keyring {
    pub dir: PathBuf,
    pub entries: Vec<CertEntry>,
    pub bad_files: Vec<BadFile>,
    /// The instant the entries were judged at.
    pub checked_at: SystemTime,
}

/// When a certificate itself expires (its primary key).
fn certificate_expiry(cert: &Cert, at: SystemTime) -> Expiry {
    let policy = StandardPolicy::new();
    match cert.with_policy(&policy, at) {
        Ok(vc) => vc
            .primary_key()
            .key_expiration_time()
            .map_or(Expiry::Never, Expiry::At),
        Err(_) => Expiry::Unknown,
    }
}

impl Keyring {
    /// Reads and judges every certificate in `dir` at `clock.now()`.
    ///
    /// Secret key material anywhere in the directory is an error.
    pub fn load(dir: &Path, clock: Clock) -> Result<Keyring, KeyError> {
        let now = clock.now();
        let mut files: Vec<PathBuf> = fs::read_dir(dir)
            .map_err(|source| KeyError::Dir {
                dir: dir.to_owned(),
                source,
            })?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();

        let mut entries = Vec::new();
        let mut bad_files = Vec::new();
        for file in files {
            let is_key_file = matches!(
                file.extension().and_then(|e| e.to_str()),
                Some("asc" | "pgp" | "gpg")
            );
            let meta = fs::metadata(&file).map_err(|source| KeyError::File {
                file: file.clone(),
                source,
            })?;
            // Every file is scanned for secret keys, whatever its name
            // or size: a key pasted into notes.txt is as exposed as one
            // in alice.asc.
            let secret = file_holds_secret_key(&file).map_err(|source| KeyError::File {
                file: file.clone(),
                source,
            })?;
            if secret {
                return Err(KeyError::SecretKey { file });
            }
            if meta.len() > MAX_KEY_FILE_BYTES {
                if is_key_file {
                    bad_files.push(BadFile {
                        file,
                        reason: "larger than 16 MiB, not a certificate".into(),
                    });
                }
                continue;
            }
            let bytes = Zeroizing::new(fs::read(&file).map_err(|source| KeyError::File {
                file: file.clone(),
                source,
            })?);
            let mut found = 0;
            let mut parse_error = None;
            match CertParser::from_bytes(&bytes[..]) {
                Ok(parser) => {
                    for cert in parser {
                        match cert {
                            Ok(cert) if cert.is_tsk() => return Err(KeyError::SecretKey { file }),
                            Ok(cert) => {
                                found += 1;
                                if is_key_file {
                                    entries.push(judge(&file, cert, now));
                                }
                            }
                            Err(e) => parse_error = Some(e.to_string()),
                        }
                    }
                }
                Err(e) => parse_error = Some(e.to_string()),
            }
            if is_key_file && found == 0 {
                let reason = parse_error.unwrap_or_else(|| "holds no OpenPGP certificate".into());
                bad_files.push(BadFile {
                    file,
                    reason: format!("not an OpenPGP certificate ({reason})"),
                });
            }
        }
        if let Some(file) = secret_in_subdirs(dir, SUBDIR_SCAN_DEPTH) {
            return Err(KeyError::SecretKey { file });
        }
        Ok(Keyring {
            dir: dir.to_owned(),
            entries,
            bad_files,
            checked_at: now,
        })
    }

    /// The usable certificates, or the fail-closed error when there is none.
    pub fn usable(&self) -> Result<Vec<&CertEntry>, KeyError> {
        let usable: Vec<&CertEntry> = self.entries.iter().filter(|e| e.is_usable()).collect();
        if usable.is_empty() {
            return Err(KeyError::NoUsableKey {
                dir: self.dir.clone(),
                details: self.why_none(),
            });
        }
        Ok(usable)
    }

    /// The usable certificates as `Recipients` for the sealer.
    pub fn recipients(&self) -> Result<Recipients, KeyError> {
        let certs = self.usable()?.into_iter().map(|e| e.cert.clone()).collect();
        Ok(Recipients {
            certs,
            dir: self.dir.clone(),
        })
    }

    /// The earliest expiry among usable certificates (for security.txt).
    pub fn earliest_expiry(&self) -> Option<SystemTime> {
        self.entries
            .iter()
            .filter(|e| e.is_usable())
            .filter_map(|e| e.expires)
            .min()
    }

    /// Usable certificates expiring within `within` of the check.
    /// What `keys check` shows of every certificate, in file order.
    pub fn check(&self, warn_within: Duration) -> Vec<CertCheck> {
        let soon = self.expiring_within(warn_within);
        self.entries
            .iter()
            .map(|e| {
                let status = match &e.problem {
                    Some(p) => CertStatus::Unusable(p.clone()),
                    None if soon.iter().any(|s| s.fingerprint() == e.fingerprint()) => {
                        CertStatus::ExpiresSoon
                    }
                    None => CertStatus::Usable {
                        encryption_keys: e.encryption_keys.len(),
                    },
                };
                let expires = match (&e.problem, e.expires) {
                    (_, Some(t)) => Expiry::At(t),
                    (None, None) => Expiry::Never,
                    // Unusable ones (sign-only, revoked, expired) still have a
                    // real expiry: the certificate's own, not "never".
                    (Some(_), None) => certificate_expiry(&e.cert, self.checked_at),
                };
                CertCheck {
                    fingerprint: e.fingerprint(),
                    user_id: e.user_id.clone(),
                    file: e.file.clone(),
                    expires,
                    status,
                }
            })
            .collect()
    }

    pub fn expiring_within(&self, within: Duration) -> Vec<&CertEntry> {
        let limit = self.checked_at + within;
        self.entries
            .iter()
            .filter(|e| e.is_usable() && e.expires.is_some_and(|t| t <= limit))
            .collect()
    }

    /// Logs unreadable files, unusable certificates and those expiring
    /// within `warn_within` (fingerprints and file names only).
    pub fn log_problems(&self, warn_within: Duration) {
        for bad in &self.bad_files {
            tracing::warn!(file = %bad.file.display(), "skipping key file: {}", bad.reason);
        }
        for entry in self.entries.iter().filter(|e| !e.is_usable()) {
            tracing::warn!(fingerprint = %entry.fingerprint(), file = %entry.file.display(), "certificate not used: {}", entry.problem.as_deref().unwrap_or(""));
        }
        for entry in self.expiring_within(warn_within) {
            tracing::warn!(fingerprint = %entry.fingerprint(), expires = %entry.expires.map(rfc3339).unwrap_or_default(), "certificate expires soon: ask its maintainer to extend it");
        }
        if self.usable().is_err() {
            tracing::error!(dir = %self.dir.display(), "no usable maintainer certificate: every report is refused until one is added");
        }
    }

    fn why_none(&self) -> String {
        let mut reasons: Vec<String> = self
            .entries
            .iter()
            .map(|e| {
                format!(
                    "{} {}: {}",
                    e.file.display(),
                    e.fingerprint(),
                    e.problem.as_deref().unwrap_or("usable")
                )
            })
            .chain(
                self.bad_files
                    .iter()
                    .map(|b| format!("{}: {}", b.file.display(), b.reason)),
            )
            .collect();
        if reasons.is_empty() {
            return " (the directory holds no *.asc or *.pgp certificate)".into();
        }
        reasons.truncate(5);
        format!(" ({})", reasons.join("; "))
    }
}

/// A summary of `keys_dir` (names, sizes, modification times) that changes
/// whenever a file is added, removed or rewritten: polled to reload keys.
pub fn dir_stamp(dir: &Path) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut entries: Vec<(std::ffi::OsString, u64, Option<SystemTime>)> = fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            Some((e.file_name(), meta.len(), meta.modified().ok()))
        })
        .collect();
    entries.sort();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    entries.hash(&mut h);
    Some(h.finish())
}

/// How many levels of subdirectories of `keys_dir` are scanned for
/// secret keys (certificates are only read from `keys_dir` itself).
const SUBDIR_SCAN_DEPTH: usize = 4;

/// The first file holding secret key material in a subdirectory of `dir`,
/// `depth` levels down: certificates are not read from there, but a key
/// kept in `keys/old/` is as exposed on this server as one in `keys/`.
/// Symlinked directories are not followed (they may lead anywhere, or in
/// a loop); what this user cannot read is skipped, since nothing running
/// as this user could leak it either.
fn secret_in_subdirs(dir: &Path, depth: usize) -> Option<PathBuf> {
    if depth == 0 {
        return None;
    }
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    entries.sort();
    entries.into_iter().find_map(|sub| {
        let mut files: Vec<PathBuf> = fs::read_dir(&sub)
            .ok()?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        files
            .into_iter()
            .find(|f| file_holds_secret_key(f).unwrap_or(false))
            .or_else(|| secret_in_subdirs(&sub, depth - 1))
    })
}

/// How deep [`holds_secret_key`] looks into literal data packets that
/// themselves hold OpenPGP data (a key wrapped in a message).
const SECRET_SCAN_NESTING: usize = 4;

/// Whether `bytes` hold secret key material anywhere: a Secret-Key or
/// Secret-Subkey packet (tags 5 and 7) alone or inside a certificate,
/// binary or armored (whatever the armor header claims), after other
/// certificates, inside compressed data or wrapped in a literal data
/// packet, or an armor block announced as a private key even when its body
/// does not parse. Never panics, whatever the input.
pub fn holds_secret_key(bytes: &[u8]) -> bool {
    scan_for_secrets(
        |offset| {
            let start = usize::try_from(offset)
                .unwrap_or(usize::MAX)
                .min(bytes.len());
            Ok(Box::new(&bytes[start..]))
        },
        SECRET_SCAN_NESTING,
    )
    .unwrap_or(false)
}

/// [`holds_secret_key`] for a file, read in a streaming way (any size).
fn file_holds_secret_key(path: &Path) -> std::io::Result<bool> {
    use std::io::{Seek, SeekFrom};
    scan_for_secrets(
        |offset| {
            let mut f = fs::File::open(path)?;
            f.seek(SeekFrom::Start(offset))?;
            Ok(Box::new(std::io::BufReader::new(f)))
        },
        SECRET_SCAN_NESTING,
    )
}

type ScanReader<'a> = Box<dyn std::io::Read + Send + Sync + 'a>;

/// Parses the data as OpenPGP packets from its start (binary or armored)
/// and from every armor header line in it, since one armor reader stops at
/// the end of its block and a second block (a TSK pasted after a public
/// certificate) would go unseen.
fn scan_for_secrets<'a>(
    open: impl Fn(u64) -> std::io::Result<ScanReader<'a>>,
    nesting: usize,
) -> std::io::Result<bool> {
    let starts = armor_starts(open(0)?)?;
    if starts.iter().any(|s| s.secret_header) {
        return Ok(true);
    }
    if packets_hold_secret(open(0)?, nesting) || secret_packet_anywhere(open(0)?)? {
        return Ok(true);
    }
    for start in &starts {
        if start.offset != 0 && packets_hold_secret(open(start.offset)?, nesting) {
            return Ok(true);
        }
        let armored = openpgp::armor::Reader::from_reader(
            open(start.offset)?,
            openpgp::armor::ReaderMode::Tolerant(None),
        );
        if secret_packet_anywhere(UntilError(armored))? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Longest secret key packet body [`secret_packet_anywhere`] decodes; real
/// ones are a few KiB, even with post-quantum algorithms.
const MAX_SECRET_PACKET_BYTES: usize = 64 * 1024;

/// Whether a well-formed Secret-Key or Secret-Subkey packet starts at any
/// byte offset of `reader`, whatever comes before it (a public certificate
/// in armor, a packet Sequoia refuses, garbage) and whatever its header
/// form (old or new format, partial or indeterminate length), none of
/// which stop a reader from lifting the key out of the file. A candidate
/// counts only if its body parses as a key with secret material, so
/// random bytes are not mistaken for one.
fn secret_packet_anywhere(mut reader: impl std::io::Read) -> std::io::Result<bool> {
    // A packet with one-byte partial chunks takes twice its body, plus headers.
    const LOOKAHEAD: usize = 2 * MAX_SECRET_PACKET_BYTES + 16;
    let mut window: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut eof = false;
    while !eof {
        let n = match reader.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        eof = n == 0;
        window.extend_from_slice(&chunk[..n]);
        let ready = if eof {
            window.len()
        } else {
            window.len().saturating_sub(LOOKAHEAD)
        };
        if (0..ready).any(|i| secret_packet_at(&window[i..])) {
            return Ok(true);
        }
        window.drain(..ready);
    }
    Ok(false)
}

/// Whether `data` starts with a Secret-Key or Secret-Subkey packet whose
/// body parses as a key with secret material.
fn secret_packet_at(data: &[u8]) -> bool {
    use openpgp::Packet;
    use openpgp::crypto::S2K;
    use openpgp::packet::key::SecretKeyMaterial;
    use openpgp::types::{PublicKeyAlgorithm, SymmetricAlgorithm};
    let Some(&first) = data.first() else {
        return false;
    };
    let tag = if first & 0xC0 == 0xC0 {
        first & 0x3F
    } else if first & 0x80 != 0 {
        (first >> 2) & 0x0F
    } else {
        return false;
    };
    if tag != 5 && tag != 7 {
        return false;
    }
    let Some(body) = packet_body(data) else {
        return false;
    };
    if body.is_empty() {
        return false;
    }
    let mut framed = Zeroizing::new(Vec::with_capacity(body.len() + 6));
    framed.push(0xC0 | tag);
    framed.push(0xFF);
    framed.extend_from_slice(&u32::try_from(body.len()).unwrap_or(0).to_be_bytes());
    framed.extend_from_slice(&body);
    let (algo, secret) = match Packet::from_bytes(&framed[..]) {
        Ok(Packet::SecretKey(k)) => (k.pk_algo(), k.optional_secret().cloned()),
        Ok(Packet::SecretSubkey(k)) => (k.pk_algo(), k.optional_secret().cloned()),
        _ => return false,
    };
    // Random bytes parse as a key now and then (fixed-size algorithms have
    // no structure to check); these are what tells real ones apart: a
    // known algorithm, and secret material either unencrypted (its
    // checksum matched) or encrypted with a known cipher and a salted S2K.
    if matches!(
        algo,
        PublicKeyAlgorithm::Unknown(_) | PublicKeyAlgorithm::Private(_)
    ) {
        return false;
    }
    match secret {
        Some(SecretKeyMaterial::Unencrypted(_)) => true,
        Some(SecretKeyMaterial::Encrypted(e)) => {
            !matches!(
                e.algo(),
                SymmetricAlgorithm::Unknown(_) | SymmetricAlgorithm::Private(_)
            ) && matches!(e.s2k(), S2K::Iterated { .. } | S2K::Argon2 { .. })
        }
        None => false,
    }
}

/// The body of the packet at the start of `data`, partial chunks joined
/// (an indeterminate length runs to the end of `data`), or `None` when the
/// header is cut off or the body is over [`MAX_SECRET_PACKET_BYTES`].
fn packet_body(data: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    let first = *data.first()?;
    let mut at = 1usize;
    let mut body = Zeroizing::new(Vec::new());
    let take = |at: &mut usize, len: usize, body: &mut Vec<u8>| -> Option<()> {
        // Keys are versions 3 to 6: checked before anything is copied.
        if body.is_empty() && len > 0 && !matches!(data.get(*at), Some(3..=6)) {
            return None;
        }
        if body.len().checked_add(len)? > MAX_SECRET_PACKET_BYTES {
            return None;
        }
        let end = at.checked_add(len)?;
        body.extend_from_slice(data.get(*at..end)?);
        *at = end;
        Some(())
    };
    let byte = |i: usize| data.get(i).copied().map(usize::from);
    if first & 0x40 == 0 {
        let len = match first & 0x03 {
            0 => byte(1)?,
            1 => (byte(1)? << 8) | byte(2)?,
            2 => usize::try_from(u32::from_be_bytes(data.get(1..5)?.try_into().ok()?)).ok()?,
            _ => data.len().saturating_sub(1).min(MAX_SECRET_PACKET_BYTES),
        };
        at += [1, 2, 4, 0][usize::from(first & 0x03)];
        take(&mut at, len, &mut body)?;
        return Some(body);
    }
    loop {
        let octet = byte(at)?;
        let (len, header, partial) = match octet {
            0..=191 => (octet, 1, false),
            192..=223 => (((octet - 192) << 8) + byte(at + 1)? + 192, 2, false),
            255 => (
                usize::try_from(u32::from_be_bytes(
                    data.get(at + 1..at + 5)?.try_into().ok()?,
                ))
                .ok()?,
                5,
                false,
            ),
            _ => (1usize << (octet & 0x1F), 1, true),
        };
        at += header;
        take(&mut at, len, &mut body)?;
        if !partial {
            return Some(body);
        }
    }
}

/// A reader that ends at its first error: what an armor block decodes to
/// up to where it stops being valid.
struct UntilError<R>(R);

impl<R: std::io::Read> std::io::Read for UntilError<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            match self.0.read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return Ok(0),
            }
        }
    }
}

/// Where an armor header line (`-----BEGIN PGP …`) starts.
#[derive(Debug)]
struct ArmorStart {
    offset: u64,
    /// The header names a private or secret key block.
    secret_header: bool,
}

/// Every armor header in `reader`, found case-insensitively in a
/// streaming pass (overlapping windows, so a header split across reads is
/// found once).
fn armor_starts(mut reader: ScanReader<'_>) -> std::io::Result<Vec<ArmorStart>> {
    const NEEDLE: &[u8] = b"BEGIN PGP ";
    /// Bytes after the needle needed to tell the block's kind.
    const KIND: usize = 24;
    let mut starts = Vec::new();
    let mut window: Vec<u8> = Vec::new();
    // Absolute offset of window[0], and the first offset not yet examined.
    let mut base = 0u64;
    let mut next = 0u64;
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let eof = n == 0;
        window.extend_from_slice(&chunk[..n]);
        let mut i = usize::try_from(next.saturating_sub(base)).unwrap_or(usize::MAX);
        while i + NEEDLE.len() <= window.len() {
            if !window[i..i + NEEDLE.len()].eq_ignore_ascii_case(NEEDLE) {
                i += 1;
                continue;
            }
            let after = i + NEEDLE.len();
            if !eof && after + KIND > window.len() {
                break; // Decide once the kind is in the window.
            }
            let kind = window[after..window.len().min(after + KIND)].to_ascii_uppercase();
            let secret_header = kind.starts_with(b"PRIVATE KEY") || kind.starts_with(b"SECRET KEY");
            let dashes = window[..i].iter().rev().take_while(|b| **b == b'-').count();
            starts.push(ArmorStart {
                offset: base + (i - dashes) as u64,
                secret_header,
            });
            i = after;
        }
        next = base + i as u64;
        if eof {
            return Ok(starts);
        }
        // Keep only what a header starting later could still need.
        let keep = window.len().min(NEEDLE.len() + KIND + 8);
        let drop = (window.len() - keep).min(i);
        window.drain(..drop);
        base += drop as u64;
    }
}

/// Whether the packets read from `reader` hold a secret key packet,
/// descending into containers (compressed data) and, `nesting` levels
/// deep, into literal data. Parse errors end the scan with what was seen.
fn packets_hold_secret(reader: ScanReader<'_>, nesting: usize) -> bool {
    // Sequoia's parser is not expected to panic, but one input found by
    // fuzzing did (see below); a key file must never take the intake down.
    // The byte-offset scan still looks at every file either way.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        packet_walk_holds_secret(reader, nesting)
    }))
    .unwrap_or(false)
}

fn packet_walk_holds_secret(reader: ScanReader<'_>, nesting: usize) -> bool {
    use openpgp::packet::Tag;
    use openpgp::parse::{PacketParser, PacketParserResult};
    let Ok(mut ppr) = PacketParser::from_reader(reader) else {
        return false;
    };
    while let PacketParserResult::Some(mut pp) = ppr {
        // By tag, so a secret key packet Sequoia cannot parse (an unknown
        // algorithm, a damaged body) still counts.
        if matches!(pp.packet.tag(), Tag::SecretKey | Tag::SecretSubkey) {
            return true;
        }
        if nesting > 0 && matches!(pp.packet, openpgp::Packet::Literal(_)) {
            let mut body = Zeroizing::new(Vec::new());
            let limit = MAX_KEY_FILE_BYTES;
            // A failed read leaves Sequoia's parser unusable: moving on
            // from it panicked ("body_hash is None"), so the walk ends here.
            if std::io::Read::read_to_end(&mut std::io::Read::take(&mut pp, limit), &mut body)
                .is_err()
            {
                return false;
            }
            if scan_for_secrets(
                |offset| {
                    let start = usize::try_from(offset)
                        .unwrap_or(usize::MAX)
                        .min(body.len());
                    Ok(Box::new(&body[start..]))
                },
                nesting - 1,
            )
            .unwrap_or(false)
            {
                return true;
            }
        }
        ppr = match pp.recurse() {
            Ok((_, next)) => next,
            Err(_) => return false,
        };
    }
    false
}

/// Judges one certificate under the standard policy at `now`.
pub fn judge(file: &Path, cert: Cert, now: SystemTime) -> CertEntry {
    let mut entry = CertEntry {
        file: file.to_owned(),
        user_id: cert
            .userids()
            .next()
            .map(|u| String::from_utf8_lossy(u.userid().value()).into_owned()),
        cert,
        problem: None,
        expires: None,
        encryption_keys: Vec::new(),
    };
    let vc = match entry.cert.with_policy(&POLICY, now) {
        Ok(vc) => vc,
        Err(e) => {
            entry.problem = Some(format!(
                "not valid under the standard policy ({e}): renew or replace the certificate"
            ));
            return entry;
        }
    };
    if let Ok(uid) = vc.primary_userid() {
        entry.user_id = Some(String::from_utf8_lossy(uid.userid().value()).into_owned());
    }
    let primary_expiry = vc.primary_key().key_expiration_time();
    if let RevocationStatus::Revoked(_) = vc.revocation_status() {
        entry.problem = Some(
            "revoked: remove the file and ask the maintainer for their current certificate".into(),
        );
        return entry;
    }
    if vc.alive().is_err() {
        entry.problem = Some(match primary_expiry {
            Some(t) if t <= now => format!(
                "expired {}: ask the maintainer to extend it, or remove the file",
                rfc3339(t)
            ),
            _ => "not yet valid (created in the future?): check the clock".into(),
        });
        return entry;
    }
    let subkeys: Vec<_> = vc
        .keys()
        .supported()
        .alive()
        .revoked(false)
        .key_flags(
            KeyFlags::empty()
                .set_storage_encryption()
                .set_transport_encryption(),
        )
        .collect();
    if subkeys.is_empty() {
        entry.problem = Some(
            "no alive, non-revoked encryption subkey: add or extend an encryption subkey, or remove the file".into(),
        );
        return entry;
    }
    let subkey_expiry = subkeys
        .iter()
        .map(|ka| ka.key_expiration_time())
        .try_fold(SystemTime::UNIX_EPOCH, |latest, t| t.map(|t| latest.max(t)));
    entry.expires = match (primary_expiry, subkey_expiry) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    entry.encryption_keys = subkeys.iter().map(|ka| ka.key().fingerprint()).collect();
    entry
}

/// The certificates a report is sealed to.
#[derive(Clone, Debug)]
pub struct Recipients {
    pub certs: Vec<Cert>,
    dir: PathBuf,
}

impl Recipients {
    /// Builds recipients from certificates directly (used by tests and tools).
    pub fn from_certs(certs: Vec<Cert>) -> Recipients {
        Recipients {
            certs,
            dir: PathBuf::from("(given certificates)"),
        }
    }

    /// These recipients and `extra` (a reporter's reply certificate).
    pub fn with(&self, extra: Cert) -> Recipients {
        let mut certs = self.certs.clone();
        certs.push(extra);
        Recipients {
            certs,
            dir: self.dir.clone(),
        }
    }

    /// The certificates still usable at `now`, with their encryption subkeys.
    ///
    /// A certificate that stopped being usable since the keyring was read
    /// (it expired) is left out with a warning; if none is left, sealing is
    /// refused.
    pub fn at(&self, now: SystemTime) -> Result<Vec<ValidCert<'_>>, KeyError> {
        let mut valid = Vec::new();
        let mut reasons = Vec::new();
        for cert in &self.certs {
            let entry = judge(&self.dir, cert.clone(), now);
            match &entry.problem {
                None => {
                    if let Ok(vc) = cert.with_policy(&POLICY, now) {
                        valid.push(vc);
                    }
                }
                Some(problem) => {
                    tracing::warn!(fingerprint = %cert.fingerprint(), "certificate no longer usable: {problem}");
                    reasons.push(format!("{}: {problem}", cert.fingerprint()));
                }
            }
        }
        if valid.is_empty() {
            return Err(KeyError::NoUsableKey {
                dir: self.dir.clone(),
                details: format!(" ({})", reasons.join("; ")),
            });
        }
        Ok(valid)
    }
}

/// The intake's own secrets, kept in `state_dir`: the Ed25519 key that signs
/// manifests and receipts, and the HMAC secret that names mailed reports.
pub struct IntakeSecrets {
    signing: Cert,
    signer: IntakeSigner,
    hmac: Zeroizing<Vec<u8>>,
}

/// The intake signing key, ready to sign. Its Ed25519 secret is imported
/// into OpenSSL once, when the secrets are loaded: Sequoia's OpenSSL
/// backend imports it again for every signature, which costs OpenSSL 3
/// about four times the signature itself, and every report is signed twice
/// (manifest and receipt). OpenSSL clears the key when the last clone is
/// dropped.
#[derive(Clone)]
pub struct IntakeSigner {
    public: openpgp::packet::Key<
        openpgp::packet::key::PublicParts,
        openpgp::packet::key::UnspecifiedRole,
    >,
    secret: openssl::pkey::PKey<openssl::pkey::Private>,
    /// Version 4 `EdDSA` (signature as r and s) rather than RFC 9580 `Ed25519`.
    legacy: bool,
}

impl fmt::Debug for IntakeSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IntakeSigner({})", self.public.fingerprint())
    }
}

impl IntakeSigner {
    /// Imports `cert`'s primary secret key, which must be Ed25519.
    fn new(cert: &Cert) -> Result<IntakeSigner, String> {
        use openpgp::crypto::mpi::{PublicKey, SecretKeyMaterial};
        use openpgp::packet::key::SecretKeyMaterial as Secret;
        let key = cert.primary_key().key();
        let Some(Secret::Unencrypted(secret)) = key.optional_secret() else {
            return Err("the signing key is missing or protected by a passphrase".into());
        };
        let (raw, public, legacy) = secret.map(|mpis| match (mpis, key.mpis()) {
            (SecretKeyMaterial::EdDSA { scalar }, PublicKey::EdDSA { q, .. }) => {
                let public = q
                    .decode_point(&openpgp::types::Curve::Ed25519)
                    .map(|(x, _)| x.to_vec())
                    .map_err(|e| e.to_string())?;
                Ok((scalar.value_padded(32), public, true))
            }
            (SecretKeyMaterial::Ed25519 { x }, PublicKey::Ed25519 { a }) => {
                Ok((x.clone(), a.to_vec(), false))
            }
            _ => Err(format!("the signing key is {}, not Ed25519", key.pk_algo())),
        })?;
        let secret =
            openssl::pkey::PKey::private_key_from_raw_bytes(&raw, openssl::pkey::Id::ED25519)
                .map_err(|e| e.to_string())?;
        if secret.raw_public_key().map_err(|e| e.to_string())? != public {
            return Err("the signing key's secret and public parts do not match".into());
        }
        Ok(IntakeSigner {
            public: key.clone().parts_into_public().role_into_unspecified(),
            secret,
            legacy,
        })
    }
}

impl openpgp::crypto::Signer for IntakeSigner {
    fn public(
        &self,
    ) -> &openpgp::packet::Key<
        openpgp::packet::key::PublicParts,
        openpgp::packet::key::UnspecifiedRole,
    > {
        &self.public
    }

    fn sign(
        &mut self,
        _hash_algo: openpgp::types::HashAlgorithm,
        digest: &[u8],
    ) -> openpgp::Result<openpgp::crypto::mpi::Signature> {
        use openpgp::crypto::mpi::{MPI, Signature};
        let sig =
            openssl::sign::Signer::new_without_digest(&self.secret)?.sign_oneshot_to_vec(digest)?;
        let sig: [u8; 64] = sig
            .as_slice()
            .try_into()
            .map_err(|_| anyhow::anyhow!("Ed25519 signature of {} bytes", sig.len()))?;
        Ok(if self.legacy {
            Signature::EdDSA {
                r: MPI::new(&sig[..32]),
                s: MPI::new(&sig[32..]),
            }
        } else {
            Signature::Ed25519 { s: Box::new(sig) }
        })
    }
}

impl fmt::Debug for IntakeSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntakeSecrets")
            .field("signing", &self.signing.fingerprint())
            .finish_non_exhaustive()
    }
}

const SIGNING_FILE: &str = "signing-key.pgp";
const HMAC_FILE: &str = "hmac.key";

impl IntakeSecrets {
    /// Loads the intake secrets from `state_dir`, creating them on first use.
    pub fn load_or_create(state_dir: &Path, project_name: &str) -> Result<IntakeSecrets, KeyError> {
        let state_err = |source| KeyError::State {
            dir: state_dir.to_owned(),
            source,
        };
        fs::create_dir_all(state_dir).map_err(state_err)?;
        let mode = fs::metadata(state_dir)
            .map_err(state_err)?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            fs::set_permissions(state_dir, fs::Permissions::from_mode(0o700)).map_err(state_err)?;
        }

        let signing_path = state_dir.join(SIGNING_FILE);
        if !signing_path.exists() {
            let (cert, _) = CertBuilder::new()
                .set_profile(Profile::RFC4880)
                .map_err(KeyError::OpenPgp)?
                .set_cipher_suite(CipherSuite::Cv25519)
                .set_primary_key_flags(KeyFlags::empty().set_certification().set_signing())
                .add_userid(format!("{project_name} report intake (embargo)"))
                .generate()
                .map_err(KeyError::OpenPgp)?;
            let bytes = Zeroizing::new(cert.as_tsk().to_vec().map_err(KeyError::OpenPgp)?);
            create_secret_file(&signing_path, &bytes).map_err(state_err)?;
        }
        let hmac_path = state_dir.join(HMAC_FILE);
        if !hmac_path.exists() {
            let mut secret = Zeroizing::new(vec![0u8; 32]);
            openpgp::crypto::random(&mut secret[..]).map_err(KeyError::OpenPgp)?;
            create_secret_file(&hmac_path, &secret).map_err(state_err)?;
        }

        // Refused, not silently tightened: a secret that was exposed may
        // have been copied, and the admin has to know.
        for path in [&signing_path, &hmac_path] {
            let mode = fs::metadata(path).map_err(state_err)?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(KeyError::InsecureSecret {
                    file: path.clone(),
                    mode,
                });
            }
        }
        let bytes = Zeroizing::new(fs::read(&signing_path).map_err(state_err)?);
        let signing = Cert::from_bytes(&bytes[..]).map_err(|e| KeyError::BadState {
            file: signing_path.clone(),
            reason: e.to_string(),
        })?;
        if !signing.is_tsk() {
            return Err(KeyError::BadState {
                file: signing_path,
                reason: "holds no secret key".into(),
            });
        }
        let signer = IntakeSigner::new(&signing).map_err(|reason| KeyError::BadState {
            file: signing_path.clone(),
            reason,
        })?;
        let hmac = Zeroizing::new(fs::read(&hmac_path).map_err(state_err)?);
        if hmac.len() < 32 {
            return Err(KeyError::BadState {
                file: hmac_path,
                reason: "shorter than 32 bytes".into(),
            });
        }
        Ok(IntakeSecrets {
            signing,
            signer,
            hmac,
        })
    }

    /// The signing key, for the sealer and receipts.
    pub fn signer(&self) -> Result<IntakeSigner, KeyError> {
        Ok(self.signer.clone())
    }

    /// The public signing certificate.
    pub fn signing_cert(&self) -> Cert {
        self.signing.clone().strip_secret_key_material()
    }

    /// The public signing certificate, ASCII-armored.
    pub fn signing_cert_armored(&self) -> Result<String, KeyError> {
        let bytes = self
            .signing_cert()
            .armored()
            .to_vec()
            .map_err(KeyError::OpenPgp)?;
        String::from_utf8(bytes).map_err(|e| KeyError::OpenPgp(e.into()))
    }

    pub fn signing_fingerprint(&self) -> Fingerprint {
        self.signing.fingerprint()
    }

    /// The secret that keys mailed-report IDs.
    pub fn hmac_secret(&self) -> &[u8] {
        &self.hmac
    }
}

/// Writes a new 0600 file, so that two first starts racing cannot leave a
/// half-written secret: the file is written under a temporary name, synced,
/// then linked into place (which fails if the other process won).
fn create_secret_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        rand::random::<u64>()
    ));
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        match fs::hard_link(&tmp, path) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            other => other?,
        }
        fs::File::open(dir)?.sync_all()
    })();
    let _ = fs::remove_file(&tmp);
    result
}

/// Armors certificates for `/keys.asc`.
pub fn armor_certs<'a>(certs: impl IntoIterator<Item = &'a Cert>) -> Result<String, KeyError> {
    let mut out = Vec::new();
    {
        let mut w = openpgp::armor::Writer::new(&mut out, openpgp::armor::Kind::PublicKey)
            .map_err(|e| KeyError::OpenPgp(e.into()))?;
        for cert in certs {
            cert.serialize(&mut w).map_err(KeyError::OpenPgp)?;
        }
        w.finalize().map_err(|e| KeyError::OpenPgp(e.into()))?;
    }
    String::from_utf8(out).map_err(|e| KeyError::OpenPgp(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cached_signer_makes_signatures_that_verify_for_v4_and_v6_keys() {
        use openpgp::crypto::Signer as _;
        use openpgp::packet::signature::SignatureBuilder;
        use openpgp::types::SignatureType;
        for profile in [Profile::RFC4880, Profile::RFC9580] {
            let (cert, _) = CertBuilder::new()
                .set_profile(profile)
                .unwrap()
                .set_cipher_suite(CipherSuite::Cv25519)
                .set_primary_key_flags(KeyFlags::empty().set_signing())
                .generate()
                .unwrap();
            let mut signer = IntakeSigner::new(&cert).unwrap();
            assert_eq!(signer.legacy, profile == Profile::RFC4880);
            for message in [&b""[..], b"a report", &[0u8; 5000][..]] {
                let sig = SignatureBuilder::new(SignatureType::Binary)
                    .sign_message(&mut signer, message)
                    .unwrap();
                let public = signer.public().clone();
                sig.verify_message(&public, message).unwrap();
                assert!(sig.verify_message(&public, b"something else").is_err());
            }
        }
        // Not Ed25519, or without its secret: refused with the reason.
        let (rsa, _) = CertBuilder::new()
            .set_cipher_suite(CipherSuite::RSA2k)
            .generate()
            .unwrap();
        assert!(IntakeSigner::new(&rsa).unwrap_err().contains("not Ed25519"));
        let public_only = rsa.strip_secret_key_material();
        assert!(IntakeSigner::new(&public_only).is_err());
    }

    #[test]
    fn dir_stamp_changes_when_a_key_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir_stamp(dir.path()).unwrap();
        fs::write(dir.path().join("a.asc"), b"one").unwrap();
        let one = dir_stamp(dir.path()).unwrap();
        assert_ne!(empty, one);
        assert_eq!(
            one,
            dir_stamp(dir.path()).unwrap(),
            "stable while nothing changes"
        );
        fs::write(dir.path().join("a.asc"), b"longer").unwrap();
        assert_ne!(one, dir_stamp(dir.path()).unwrap());
        assert!(dir_stamp(&dir.path().join("missing")).is_none());
    }

    #[test]
    fn intake_secrets_are_created_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let a = IntakeSecrets::load_or_create(&state, "P").unwrap();
        let b = IntakeSecrets::load_or_create(&state, "P").unwrap();
        assert_eq!(a.signing_fingerprint(), b.signing_fingerprint());
        assert_eq!(a.hmac_secret(), b.hmac_secret());
        assert!(a.signer().is_ok());
        fs::write(state.join(HMAC_FILE), b"short").unwrap();
        assert!(matches!(
            IntakeSecrets::load_or_create(&state, "P"),
            Err(KeyError::BadState { .. })
        ));
    }
}
