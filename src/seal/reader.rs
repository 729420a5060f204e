//! Opens sealed reports with a maintainer's secret key: decrypts, verifies
//! the intake signature, and checks every attachment against the manifest.

use std::io::{self, Cursor, Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use sequoia_openpgp as openpgp;

use openpgp::crypto::{Password, SessionKey};
use openpgp::packet::{PKESK, SKESK};
use openpgp::parse::Parse;
use openpgp::parse::stream::{
    DecryptionHelper, DecryptorBuilder, MessageLayer, MessageStructure, VerificationHelper,
    VerifierBuilder,
};
use openpgp::types::SymmetricAlgorithm;
use openpgp::{Cert, Fingerprint, KeyHandle};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::manifest::{AttachmentEntry, Manifest, ManifestError};
use super::offload::Offload;
use super::seipd_reader::Seipd1Reader;
use crate::case::event::EventAttachment;
use crate::id::ReportId;
use crate::keys::POLICY;
use crate::store::{FILES_DIR, Store, StoreError, is_file_name};

/// Largest manifest accepted; real ones are a few hundred KiB at most.
pub const MAX_MANIFEST_BYTES: u64 = 16 * 1024 * 1024;
/// How much of an attachment the decryptor holds back before releasing it.
const ATTACHMENT_BUFFER: usize = 1024 * 1024;
/// How much of a part gpg is shown to recover its session key.
const GPG_HEAD_BYTES: u64 = 64 * 1024;

/// Why a report could not be opened. Never carries plaintext.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RevealError {
    #[error(
        "none of the given secret keys can decrypt {part} (it is encrypted to {recipients}): use the key of one of the maintainers it was sealed to"
    )]
    NoMatchingKey { part: String, recipients: String },
    #[error(
        "wrong passphrase for secret key {0}: try again, or give the right file with --passphrase-file"
    )]
    WrongPassphrase(String),
    #[error(
        "secret key {0} is protected by a passphrase, and none was given: run on a terminal to be asked, or use --passphrase-file"
    )]
    NeedPassphrase(String),
    #[error(
        "the key file holds no secret key: export it with `gpg --export-secret-keys --armor FINGERPRINT`, or use --gpg"
    )]
    NoSecretKey,
    #[error(
        "{part} is not signed by the expected intake key{detail}: the report may be forged; check --signer, and do not trust its content"
    )]
    BadSignature { part: String, detail: String },
    #[error(
        "{part} is damaged or was tampered with ({detail}): fetch it again from the server; if it stays so, the store was modified"
    )]
    Tampered { part: String, detail: String },
    #[error(
        "{part} does not match the manifest ({detail}): a part was truncated, replaced or moved from another report"
    )]
    Mismatch { part: String, detail: String },
    #[error("manifest of {id} is unreadable: {source}")]
    Manifest {
        id: String,
        #[source]
        source: ManifestError,
    },
    #[error(
        "the manifest in {dir} belongs to report {found}: a report directory was renamed or swapped"
    )]
    WrongId { dir: String, found: String },
    #[error("gpg could not decrypt {part}: {detail}")]
    Gpg { part: String, detail: String },
    #[error(
        "{part} is not in the local store yet: run `embargo fetch` (or the case command with --intake) to download it"
    )]
    MissingFile { part: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("writing the decrypted data failed: {0}")]
    Output(#[source] io::Error),
}

/// Where secret keys come from.
pub enum SecretSource {
    /// Secret keys loaded from a file, already unlocked.
    Keys(Vec<Cert>),
    /// The user's gpg (and so gpg-agent, smartcards included).
    Gpg {
        /// Overrides `GNUPGHOME` when set.
        homedir: Option<PathBuf>,
    },
}

impl SecretSource {
    /// Loads secret keys from transferable secret key bytes (armored or
    /// binary, one or several), unlocking them with `passphrase` if needed.
    pub fn from_key_bytes(
        bytes: &[u8],
        passphrase: Option<&Password>,
    ) -> Result<SecretSource, RevealError> {
        let mut certs = Vec::new();
        let parser =
            openpgp::cert::CertParser::from_bytes(bytes).map_err(|_| RevealError::NoSecretKey)?;
        for cert in parser.flatten() {
            if !cert.is_tsk() {
                continue;
            }
            let mut unlocked = Vec::new();
            for ka in cert.keys().secret() {
                let primary = ka.key().fingerprint() == cert.fingerprint();
                let key = ka.key().clone();
                if is_stub(key.secret()) {
                    continue;
                }
                if key.secret().is_encrypted() {
                    let Some(pass) = passphrase else {
                        return Err(RevealError::NeedPassphrase(cert.fingerprint().to_hex()));
                    };
                    let key = key
                        .decrypt_secret(pass)
                        .map_err(|_| RevealError::WrongPassphrase(cert.fingerprint().to_hex()))?;
                    // The primary key replaces the primary (it often is the
                    // signing key): as a subkey packet it would be unbound.
                    unlocked.push(if primary {
                        openpgp::Packet::from(key.role_into_primary())
                    } else {
                        openpgp::Packet::from(key.role_into_subordinate())
                    });
                }
            }
            let cert = if unlocked.is_empty() {
                cert
            } else {
                // Replacing keys with their unlocked copies keeps the bindings.
                let (cert, _) = cert
                    .insert_packets(unlocked)
                    .map_err(|_| RevealError::NoSecretKey)?;
                cert
            };
            certs.push(cert);
        }
        if certs.is_empty() {
            return Err(RevealError::NoSecretKey);
        }
        Ok(SecretSource::Keys(certs))
    }

    /// Whether any loaded secret key is still locked by a passphrase.
    pub fn key_needs_passphrase(bytes: &[u8]) -> bool {
        openpgp::cert::CertParser::from_bytes(bytes)
            .map(|p| {
                p.flatten().any(|c| {
                    c.keys()
                        .secret()
                        .any(|ka| ka.key().secret().is_encrypted() && !is_stub(ka.key().secret()))
                })
            })
            .unwrap_or(false)
    }
}

/// Whether secret key material is only a placeholder (GnuPG's
/// `--export-secret-subkeys` primary key, or a key on a smartcard): there is
/// nothing to unlock, and asking for a passphrase would wrongly fail.
fn is_stub(secret: &openpgp::packet::key::SecretKeyMaterial) -> bool {
    matches!(secret, openpgp::packet::key::SecretKeyMaterial::Encrypted(e) if !e.s2k().is_supported())
}

/// Opens reports with one secret source, optionally pinning the signer.
pub struct Opener {
    source: SecretSource,
    signer: Option<Cert>,
}

/// Whether the manifest signature was checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignatureCheck {
    /// Signed by this intake key.
    Verified(Fingerprint),
    /// Not checked: no signer certificate was given.
    NotChecked,
}

/// A decrypted, checked manifest.
#[derive(Debug)]
pub struct OpenedManifest {
    pub manifest: Manifest,
    pub signature: SignatureCheck,
}

impl Opener {
    pub fn new(source: SecretSource, signer: Option<Cert>) -> Opener {
        Opener { source, signer }
    }

    /// Decrypts and checks the manifest of report `id` in `store`.
    pub fn open_manifest(
        &self,
        store: &dyn Store,
        id: &ReportId,
    ) -> Result<OpenedManifest, RevealError> {
        let part = format!("{id}/manifest.pgp");
        let reader = store.open_part(id, "manifest.pgp")?;
        let mut json = Zeroizing::new(Vec::new());
        let outcome = self.open_part(
            &part,
            reader.take(signed_cap(MAX_MANIFEST_BYTES)),
            &mut *json,
            Verify::Signer(self.signer.iter().cloned().collect()),
            MAX_MANIFEST_BYTES,
        )?;
        let manifest = Manifest::from_json(&json).map_err(|source| RevealError::Manifest {
            id: id.to_string(),
            source,
        })?;
        if &manifest.id != id {
            return Err(RevealError::WrongId {
                dir: id.to_string(),
                found: manifest.id.to_string(),
            });
        }
        let signature = match (&self.signer, outcome.signer) {
            (Some(_), Some(fpr)) => SignatureCheck::Verified(fpr),
            (Some(expected), None) => {
                return Err(RevealError::BadSignature {
                    part,
                    detail: format!(" {}", expected.fingerprint()),
                });
            }
            (None, _) => SignatureCheck::NotChecked,
        };
        Ok(OpenedManifest {
            manifest,
            signature,
        })
    }

    /// Decrypts one attachment into `out`, checking it against its entry.
    /// On error, what was written to `out` must be discarded.
    pub fn decrypt_attachment(
        &self,
        store: &dyn Store,
        id: &ReportId,
        entry: &AttachmentEntry,
        out: &mut dyn Write,
    ) -> Result<(), RevealError> {
        let part = format!("{id}/{}", entry.file);
        let reader = store.open_part(id, &entry.file)?;
        let expected = Expected {
            size: entry.size,
            sha256: &entry.sha256,
            by: "the manifest",
        };
        self.decrypt_checked(&part, reader, &expected, out)
    }

    /// Decrypts one follow-up file (`files/<entry.file>`) into `out`,
    /// checking it against its entry in a `reporter-message` event, which
    /// the caller verified (the file itself is unsigned: the intake-signed
    /// event binds it by size and SHA-256). On error, what was written to
    /// `out` must be discarded.
    pub fn decrypt_file(
        &self,
        store: &dyn Store,
        id: &ReportId,
        entry: &EventAttachment,
        out: &mut dyn Write,
    ) -> Result<(), RevealError> {
        let shown: String = entry
            .file
            .chars()
            .filter(|c| !c.is_control())
            .take(40)
            .collect();
        let part = format!("{id}/{FILES_DIR}/{shown}");
        if !is_file_name(&entry.file) {
            return Err(RevealError::Mismatch {
                part,
                detail: "the event names no follow-up file (not 32 hex digits and .pgp)".into(),
            });
        }
        let reader = match store.open_file(id, &entry.file) {
            Ok(reader) => reader,
            Err(StoreError::NotFound(_)) => return Err(RevealError::MissingFile { part }),
            Err(e) => return Err(e.into()),
        };
        let expected = Expected {
            size: entry.size,
            sha256: &entry.sha256,
            by: "the event",
        };
        self.decrypt_checked(&part, reader, &expected, out)
    }

    /// Decrypts the unsigned message `reader` (named `part` in errors) into
    /// `out`, refusing it unless its plaintext has the expected size and
    /// SHA-256.
    fn decrypt_checked(
        &self,
        part: &str,
        reader: impl Read + Send + Sync,
        expected: &Expected<'_>,
        out: &mut dyn Write,
    ) -> Result<(), RevealError> {
        let mut checked = CheckingWriter {
            out,
            hash: Offload::new(Sha256::new()),
            size: 0,
            limit: expected.size,
            by: expected.by,
        };
        self.decrypt_unsigned(part, reader, &mut checked, expected.size)?;
        let CheckingWriter { hash, size, .. } = checked;
        if size != expected.size {
            return Err(RevealError::Mismatch {
                part: part.to_owned(),
                detail: format!("{size} bytes, {} says {}", expected.by, expected.size),
            });
        }
        let hash = hash.finish().map_err(RevealError::Output)?;
        let sha256 = hex::encode(hash.finalize());
        if !sha256.eq_ignore_ascii_case(expected.sha256) {
            return Err(RevealError::Mismatch {
                part: part.to_owned(),
                detail: format!("SHA-256 differs from {}", expected.by),
            });
        }
        Ok(())
    }

    /// Decrypts an unsigned message (an attachment, a follow-up file).
    /// A `compat` part (PKESKs, then a SEIPDv1 packet with AES) is opened
    /// by embargo's own reader ([`Seipd1Reader`]) once Sequoia or gpg gave
    /// the session key; anything else goes through Sequoia's decryptor.
    /// Either way, what reaches `out` is untrusted until this returns Ok.
    fn decrypt_unsigned(
        &self,
        part: &str,
        reader: impl Read + Send + Sync,
        out: &mut dyn Write,
        limit: u64,
    ) -> Result<(), RevealError> {
        self.open_part(part, reader, out, Verify::Nothing, limit)
            .map(|_| ())
    }

    /// Opens any part: a `compat` part (PKESKs, then a SEIPDv1 packet with
    /// AES) through embargo's own reader once Sequoia or gpg gave the
    /// session key, anything else through Sequoia's decryptor. Sequoia
    /// parses the PKESKs and decrypts the session key here too: a panic
    /// in it refuses the part, as one in Sequoia's decryptor does.
    fn open_part(
        &self,
        part: &str,
        reader: impl Read + Send + Sync,
        out: &mut dyn Write,
        verify: Verify,
        limit: u64,
    ) -> Result<Outcome, RevealError> {
        let run =
            std::panic::AssertUnwindSafe(|| self.decrypt_own(part, reader, out, verify, limit));
        std::panic::catch_unwind(run).unwrap_or_else(|_| Err(parser_gave_up(part)))
    }

    /// [`Self::open_part`] inside its panic guard.
    fn decrypt_own(
        &self,
        part: &str,
        mut reader: impl Read + Send + Sync,
        out: &mut dyn Write,
        verify: Verify,
        limit: u64,
    ) -> Result<Outcome, RevealError> {
        let mut head = Vec::new();
        (&mut reader)
            .take(GPG_HEAD_BYTES)
            .read_to_end(&mut head)
            .map_err(|e| tampered(part, e.to_string()))?;
        let Some((pkesks, at)) = leading_pkesks(&head) else {
            return self.decrypt_stream(part, head, reader, out, verify, limit);
        };
        let mut helper = Helper::new(self, part, head.clone(), Vec::new(), false);
        // A session key is taken only if it passes the quick check on the
        // start of the packet, as Sequoia's decryptor does.
        let mut found = None;
        let seipd = &head[at..];
        let mut try_key = |algo: Option<SymmetricAlgorithm>, sk: &SessionKey| match algo {
            Some(algo) if Seipd1Reader::new(seipd, algo, sk).is_ok() => {
                found = Some((algo, sk.clone()));
                true
            }
            _ => false,
        };
        if let Err(e) = helper.decrypt(&pkesks, &[], None, &mut try_key) {
            return Err(classify(part, e, Some(helper)));
        }
        let Some((algo, session_key)) = found else {
            let recipients = helper.recipients.join(", ");
            return Err(RevealError::NoMatchingKey {
                part: part.into(),
                recipients,
            });
        };
        let input = Cursor::new(&head[at..]).chain(reader);
        let mut plain = Seipd1Reader::new(input, algo, &session_key)
            .map_err(|e| tampered(part, e.to_string()))?;
        let certs = match verify {
            Verify::Nothing => {
                copy_out(part, &mut plain, limit, out)
                    .map_err(|e| e.or_else(|e| tampered(part, e.to_string())))?;
                plain.finish().map_err(|e| tampered(part, e.to_string()))?;
                return Ok(Outcome { signer: None });
            }
            Verify::Signer(certs) => certs,
        };
        // A signed part (the manifest, an event) is small: all of it is
        // decrypted and its MDC checked before Sequoia's verifier reads
        // the signed message inside, so nothing unchecked is parsed.
        let mut plain = plain.packets();
        let inner = Chunks::read_all(&mut plain, signed_cap(limit))
            .map_err(|e| tampered(part, e.to_string()))?;
        plain.finish().map_err(|e| tampered(part, e.to_string()))?;
        self.verify_inner(part, inner, out, certs, limit)
    }

    /// Verifies the signed message `inner` (decrypted by the own reader)
    /// and writes its literal data to `out`.
    fn verify_inner(
        &self,
        part: &str,
        inner: Chunks,
        out: &mut dyn Write,
        certs: Vec<Cert>,
        limit: u64,
    ) -> Result<Outcome, RevealError> {
        let mut helper = Helper::new(self, part, Vec::new(), certs, true);
        helper.decrypted = true;
        let builder =
            VerifierBuilder::from_reader(inner).map_err(|e| tampered(part, e.to_string()))?;
        let mut verifier = match builder.with_policy(&POLICY, None, helper) {
            Ok(v) => v,
            Err(e) => return Err(classify(part, e, None)),
        };
        let helper = match copy_out(part, &mut verifier, limit, out) {
            Ok(()) if verifier.message_processed() => verifier.into_helper(),
            Ok(()) => return Err(tampered(part, "the message ended early".into())),
            Err(Copy::Out(e)) => return Err(e),
            Err(Copy::Read(e)) => {
                return Err(classify(part, e.into(), Some(verifier.into_helper())));
            }
        };
        Ok(Outcome {
            signer: helper.signer,
        })
    }

    /// Decrypts a signed message of at most `limit` bytes of plaintext
    /// (a case event) and checks that one of `signers` signed it; returns
    /// the plaintext and the signing certificate's fingerprint. `part`
    /// names it in errors.
    pub fn open_signed(
        &self,
        part: &str,
        reader: impl Read + Send + Sync,
        limit: u64,
        signers: &[Cert],
    ) -> Result<(Zeroizing<Vec<u8>>, Fingerprint), RevealError> {
        let mut plaintext = Zeroizing::new(Vec::new());
        let outcome = self.open_part(
            part,
            reader.take(signed_cap(limit)),
            &mut *plaintext,
            Verify::Signer(signers.to_vec()),
            limit,
        )?;
        match outcome.signer {
            Some(fpr) => Ok((plaintext, fpr)),
            None => Err(RevealError::BadSignature {
                part: part.to_owned(),
                detail: " (no maintainer certificate signed it)".into(),
            }),
        }
    }

    /// Sequoia's decryptor, for what the own reader does not take: the
    /// part is `head` (its first bytes, which gpg needs to find the
    /// session key) followed by `rest`. Sequoia 2.3's parser panics on
    /// some malformed encrypted packets (an encrypted packet cut short
    /// inside its first chunk; see tests/seal.rs): this runs inside
    /// [`Self::open_part`]'s panic guard, so a tampered store gives an
    /// error and never takes a maintainer's command down.
    fn decrypt_stream(
        &self,
        part: &str,
        head: Vec<u8>,
        rest: impl Read + Send + Sync,
        out: &mut dyn Write,
        verify: Verify,
        limit: u64,
    ) -> Result<Outcome, RevealError> {
        let (signed, certs) = match verify {
            Verify::Signer(certs) => (true, certs),
            Verify::Nothing => (false, Vec::new()),
        };
        let reader = Cursor::new(head.clone()).chain(rest);
        let helper = Helper::new(self, part, head, certs, signed);
        let builder =
            DecryptorBuilder::from_reader(reader).map_err(|e| tampered(part, e.to_string()))?;
        let builder = if signed {
            builder
        } else {
            builder.buffer_size(ATTACHMENT_BUFFER)
        };
        let mut decryptor = match builder.with_policy(&POLICY, None, helper) {
            Ok(d) => d,
            Err(e) => return Err(classify(part, e, None)),
        };
        match copy_out(part, &mut decryptor, limit, out) {
            Ok(()) => {}
            Err(Copy::Out(e)) => return Err(e),
            Err(Copy::Read(e)) => {
                return Err(classify(part, e.into(), Some(decryptor.into_helper())));
            }
        }
        if !decryptor.message_processed() {
            return Err(tampered(part, "the message ended early".into()));
        }
        let helper = decryptor.into_helper();
        Ok(Outcome {
            signer: helper.signer,
        })
    }
}

struct Outcome {
    signer: Option<Fingerprint>,
}

/// What an unsigned part's plaintext must be, and who says so (`the
/// manifest`, `the event`), for errors.
struct Expected<'a> {
    size: u64,
    sha256: &'a str,
    by: &'static str,
}

/// Which signature a message must carry.
enum Verify {
    /// One by any of these certificates (none given: not checked).
    Signer(Vec<Cert>),
    /// None: attachments are bound by the manifest instead.
    Nothing,
}

/// Why [`copy_out`] stopped.
enum Copy {
    /// Reading the plaintext failed: the reader's verdict on the part.
    Read(io::Error),
    /// Writing it out failed, or it is longer than expected.
    Out(RevealError),
}

impl Copy {
    /// The error, with a read failure mapped by `read`.
    fn or_else(self, read: impl FnOnce(io::Error) -> RevealError) -> RevealError {
        match self {
            Copy::Read(e) => read(e),
            Copy::Out(e) => e,
        }
    }
}

/// Copies the (still untrusted) plaintext of `part` from `from` to `out`
/// in 64 KiB pieces through a wiped buffer, at most `limit` bytes.
fn copy_out(part: &str, from: &mut dyn Read, limit: u64, out: &mut dyn Write) -> Result<(), Copy> {
    let mut buf = Zeroizing::new(vec![0u8; 64 * 1024]);
    let mut total = 0u64;
    loop {
        let n = match from.read(&mut buf[..]) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Copy::Read(e)),
        };
        deliver(part, &buf[..n], &mut total, limit, out).map_err(Copy::Out)?;
    }
}

/// Most bytes a signed part with `limit` bytes of literal data takes,
/// encrypted or not: the data, the one-pass signature, the literal header
/// and the signatures (64 KiB covers them many times over), and the
/// padding markers, which fill at most an eighth of a Padmé bucket.
fn signed_cap(limit: u64) -> u64 {
    limit.saturating_add(limit / 8).saturating_add(64 * 1024)
}

/// A decrypted signed message, held in pieces of at most 64 KiB that are
/// wiped when dropped (one growing buffer would leave copies behind).
struct Chunks {
    pieces: Vec<Zeroizing<Vec<u8>>>,
    /// The piece being read, and where in it.
    at: (usize, usize),
}

impl Chunks {
    /// All of `from`, refusing more than `cap` bytes.
    fn read_all(from: &mut dyn Read, cap: u64) -> io::Result<Chunks> {
        let mut pieces = Vec::new();
        let mut total = 0u64;
        loop {
            let mut piece = Zeroizing::new(vec![0u8; 64 * 1024]);
            let mut filled = 0;
            while filled < piece.len() {
                match from.read(&mut piece[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            total += filled as u64;
            if total > cap {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("the signed message is larger than {cap} bytes"),
                ));
            }
            if filled == 0 {
                return Ok(Chunks { pieces, at: (0, 0) });
            }
            piece.truncate(filled);
            pieces.push(piece);
        }
    }
}

impl Read for Chunks {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while let Some(piece) = self.pieces.get(self.at.0) {
            let rest = &piece[self.at.1..];
            if rest.is_empty() {
                self.at = (self.at.0 + 1, 0);
                continue;
            }
            let n = rest.len().min(buf.len());
            buf[..n].copy_from_slice(&rest[..n]);
            self.at.1 += n;
            return Ok(n);
        }
        Ok(0)
    }
}

/// Writes one piece of (still untrusted) plaintext of `part` to `out`,
/// refusing it once more than `limit` bytes came out in all.
fn deliver(
    part: &str,
    piece: &[u8],
    total: &mut u64,
    limit: u64,
    out: &mut dyn Write,
) -> Result<(), RevealError> {
    *total += piece.len() as u64;
    if *total > limit {
        return Err(RevealError::Mismatch {
            part: part.into(),
            detail: format!("longer than the {limit} bytes expected"),
        });
    }
    out.write_all(piece).map_err(|e| output_error(part, e))
}

/// A failure to write plaintext out: the checking writer's refusal (it
/// reports a mismatch as `InvalidData`) or the output's own error.
fn output_error(part: &str, e: io::Error) -> RevealError {
    match e.kind() {
        io::ErrorKind::InvalidData => RevealError::Mismatch {
            part: part.into(),
            detail: e.to_string(),
        },
        _ => RevealError::Output(e),
    }
}

/// The PKESK packets at the start of `head` and where the packet after
/// them starts, when that packet is a SEIPDv1 one: the messages embargo's
/// own reader takes. None for anything else (no PKESK, a password
/// packet, SEIPDv2, a header that does not fit), which Sequoia opens or
/// refuses.
fn leading_pkesks(head: &[u8]) -> Option<(Vec<PKESK>, usize)> {
    let mut pkesks = Vec::new();
    let mut at = 0;
    loop {
        let (tag, header, body) = definite_header(&head[at..])?;
        if tag == 18 {
            // The version byte follows the (partial or definite) length.
            let version = head.get(at + header)?;
            return (*version == 1 && !pkesks.is_empty()).then_some((pkesks, at));
        }
        if tag != 1 {
            return None;
        }
        let end = at.checked_add(header)?.checked_add(body?)?;
        let packet = openpgp::Packet::from_bytes(head.get(at..end)?).ok()?;
        let openpgp::Packet::PKESK(pkesk) = packet else {
            return None;
        };
        pkesks.push(pkesk);
        at = end;
    }
}

/// The tag, header length and (definite) body length of the packet at the
/// start of `b`; the body length is None for a partial length.
fn definite_header(b: &[u8]) -> Option<(u8, usize, Option<usize>)> {
    let ctb = *b.first()?;
    if ctb & 0x80 == 0 {
        return None;
    }
    if ctb & 0x40 == 0 {
        // Old format: the tag in bits 5-2, the length type in bits 1-0.
        let tag = (ctb >> 2) & 0x0F;
        let n = match ctb & 3 {
            0 => 1,
            1 => 2,
            2 => 4,
            _ => return None,
        };
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | *b.get(1 + i)? as usize;
        }
        return Some((tag, 1 + n, Some(len)));
    }
    let tag = ctb & 0x3F;
    let first = *b.get(1)? as usize;
    Some(match first {
        0..=191 => (tag, 2, Some(first)),
        192..=223 => (
            tag,
            3,
            Some(((first - 192) << 8) + *b.get(2)? as usize + 192),
        ),
        224..=254 => (tag, 2, None),
        _ => {
            let len = u32::from_be_bytes(b.get(2..6)?.try_into().ok()?);
            (tag, 6, Some(len as usize))
        }
    })
}

/// What a panic inside Sequoia's parser becomes: the part is refused.
fn parser_gave_up(part: &str) -> RevealError {
    tampered(
        part,
        "its encrypted packet is malformed (the OpenPGP parser gave up on it)".into(),
    )
}

fn tampered(part: &str, detail: String) -> RevealError {
    RevealError::Tampered {
        part: part.into(),
        detail,
    }
}

/// Turns a sequoia failure into the error a maintainer can act on.
fn classify(part: &str, e: anyhow::Error, helper: Option<Helper<'_>>) -> RevealError {
    if let Some(failure) = helper.as_ref().and_then(|h| h.failure.clone()) {
        return failure.into_error();
    }
    // Errors raised by our helper come back through sequoia wrapped.
    if let Some(f) = e.downcast_ref::<HelperFailure>() {
        return f.clone().into_error();
    }
    if let Some(f) = e
        .downcast_ref::<io::Error>()
        .and_then(|io| io.get_ref())
        .and_then(|inner| inner.downcast_ref::<HelperFailure>())
    {
        return f.clone().into_error();
    }
    tampered(part, format!("{e:#}").chars().take(300).collect())
}

/// A failure decided by the helper, carried through sequoia's error type.
#[derive(Clone, Debug, thiserror::Error)]
#[error("decryption refused")]
enum HelperFailure {
    NoKey { part: String, recipients: String },
    Signature { part: String, detail: String },
    Gpg { part: String, detail: String },
    NotEncrypted { part: String },
    Password { part: String },
}

impl HelperFailure {
    fn into_error(self) -> RevealError {
        match self {
            HelperFailure::NoKey { part, recipients } => {
                RevealError::NoMatchingKey { part, recipients }
            }
            HelperFailure::Signature { part, detail } => RevealError::BadSignature { part, detail },
            HelperFailure::Gpg { part, detail } => RevealError::Gpg { part, detail },
            HelperFailure::NotEncrypted { part } => RevealError::Tampered {
                part,
                detail: "it is not encrypted, so it was not written by embargo".into(),
            },
            HelperFailure::Password { part } => RevealError::Tampered {
                part,
                detail: "it can be opened with a password, which embargo never does, so it was not written by embargo (gpg was not asked)".into(),
            },
        }
    }
}

struct Helper<'a> {
    opener: &'a Opener,
    /// The certificates a signature must come from.
    certs: Vec<Cert>,
    part: String,
    head: Vec<u8>,
    signed: bool,
    key_used: bool,
    recipients: Vec<String>,
    signer: Option<Fingerprint>,
    failure: Option<HelperFailure>,
    /// The message was decrypted (and its MDC checked) by the own reader
    /// before Sequoia's verifier saw what it held.
    decrypted: bool,
}

impl<'a> Helper<'a> {
    fn new(
        opener: &'a Opener,
        part: &str,
        head: Vec<u8>,
        certs: Vec<Cert>,
        signed: bool,
    ) -> Helper<'a> {
        Helper {
            opener,
            certs,
            part: part.to_string(),
            head,
            signed,
            key_used: false,
            recipients: Vec::new(),
            signer: None,
            failure: None,
            decrypted: false,
        }
    }

    fn fail(&mut self, f: HelperFailure) -> anyhow::Error {
        self.failure = Some(f.clone());
        f.into()
    }
}

impl VerificationHelper for Helper<'_> {
    fn get_certs(&mut self, _ids: &[KeyHandle]) -> openpgp::Result<Vec<Cert>> {
        Ok(self.certs.clone())
    }

    fn check(&mut self, structure: MessageStructure) -> openpgp::Result<()> {
        let mut encrypted = self.decrypted;
        for layer in structure.into_iter() {
            match layer {
                MessageLayer::Encryption { .. } => encrypted = true,
                MessageLayer::Compression { .. } => {}
                MessageLayer::SignatureGroup { results } => {
                    if !self.signed || self.certs.is_empty() {
                        continue;
                    }
                    for good in results.iter().flatten() {
                        self.signer = Some(good.ka.cert().fingerprint());
                    }
                    if self.signer.is_none() {
                        let detail = results
                            .iter()
                            .filter_map(|r| r.as_ref().err())
                            .map(|e| format!(" ({e})"))
                            .next()
                            .unwrap_or_default();
                        let part = self.part.clone();
                        return Err(self.fail(HelperFailure::Signature { part, detail }));
                    }
                }
            }
        }
        if !encrypted {
            let part = self.part.clone();
            return Err(self.fail(HelperFailure::NotEncrypted { part }));
        }
        if self.signed && !self.certs.is_empty() && self.signer.is_none() {
            let part = self.part.clone();
            return Err(self.fail(HelperFailure::Signature {
                part,
                detail: " (it carries no signature)".into(),
            }));
        }
        Ok(())
    }
}

impl DecryptionHelper for Helper<'_> {
    fn decrypt(
        &mut self,
        pkesks: &[PKESK],
        skesks: &[SKESK],
        sym_algo: Option<SymmetricAlgorithm>,
        decrypt: &mut dyn FnMut(Option<SymmetricAlgorithm>, &SessionKey) -> bool,
    ) -> openpgp::Result<Option<Cert>> {
        self.recipients = pkesks
            .iter()
            .map(|p| {
                p.recipient()
                    .map(|r| r.to_hex())
                    .unwrap_or_else(|| "an anonymous recipient".into())
            })
            .collect();
        match &self.opener.source {
            SecretSource::Keys(certs) => {
                for pkesk in pkesks {
                    for cert in certs {
                        for ka in cert.keys().unencrypted_secret() {
                            let matches = match pkesk.recipient() {
                                Some(r) => r.aliases(ka.key().key_handle()),
                                None => true,
                            };
                            if !matches {
                                continue;
                            }
                            let Ok(mut keypair) = ka.key().clone().into_keypair() else {
                                continue;
                            };
                            if let Some((algo, sk)) = pkesk.decrypt(&mut keypair, sym_algo)
                                && decrypt(algo, &sk)
                            {
                                self.key_used = true;
                                return Ok(None);
                            }
                        }
                    }
                }
            }
            SecretSource::Gpg { homedir } => {
                // gpg would try a password (SKESK) when no secret key
                // matches, and the user's gpg.conf (pinentry-mode loopback,
                // passphrase-file) may answer it unseen: such a part is
                // never ours, so gpg never sees it.
                if !skesks.is_empty() {
                    let part = self.part.clone();
                    return Err(self.fail(HelperFailure::Password { part }));
                }
                if pkesks.is_empty() {
                    let part = self.part.clone();
                    return Err(self.fail(HelperFailure::NoKey {
                        part,
                        recipients: "nobody".into(),
                    }));
                }
                let (algo, sk) = match gpg_session_key(homedir.as_ref(), &self.head) {
                    Ok(found) => found,
                    Err(detail) => {
                        let part = self.part.clone();
                        return Err(self.fail(HelperFailure::Gpg { part, detail }));
                    }
                };
                if decrypt(algo, &sk) {
                    self.key_used = true;
                    return Ok(None);
                }
            }
        }
        let part = self.part.clone();
        let recipients = self.recipients.join(", ");
        Err(self.fail(HelperFailure::NoKey { part, recipients }))
    }
}

/// Asks gpg for the session key of the message starting with `head`.
/// gpg asks gpg-agent, which may ask a smartcard or a pinentry; the
/// plaintext gpg produces goes to /dev/null. Also how `case share` opens
/// a part's session key with `--gpg`.
pub(crate) fn gpg_session_key(
    homedir: Option<&PathBuf>,
    head: &[u8],
) -> Result<(Option<SymmetricAlgorithm>, SessionKey), String> {
    let mut cmd = Command::new("gpg");
    if let Some(home) = homedir {
        cmd.arg("--homedir").arg(home);
    }
    // gpg's stdin is a pipe here, so gpg-agent would not know where to show
    // its pinentry (passphrase, smartcard PIN): tell it our terminal, as
    // GPG_TTY=$(tty) in a shell profile would.
    if std::env::var_os("GPG_TTY").is_none()
        && let Some(tty) = terminal_name()
    {
        cmd.env("GPG_TTY", tty);
    }
    cmd.args([
        "--batch",
        "--no-tty",
        "--no-symkey-cache",
        "--quiet",
        "--status-fd",
        "1",
        "--show-session-key",
        "--yes",
        "--output",
        "/dev/null",
        "--decrypt",
    ])
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    // Without a terminal, a pinentry needs to know where to ask; gpg-agent's
    // own configuration decides, as it does for gpg itself.
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run gpg ({e}): install GnuPG, or use --key FILE"))?;
    let mut stdin = child.stdin.take().ok_or("gpg has no stdin")?;
    let head = head.to_vec();
    let writer = std::thread::spawn(move || {
        // gpg stops reading once the data fails; a broken pipe is expected.
        let _ = stdin.write_all(&head);
    });
    let output = child
        .wait_with_output()
        .map_err(|e| format!("gpg failed: {e}"))?;
    let _ = writer.join();
    let stdout = Zeroizing::new(output.stdout);
    // gpg logs the session key on stderr too (`gpg: session key: '…'`).
    let stderr = Zeroizing::new(output.stderr);
    for line in stdout.split(|&b| b == b'\n') {
        let Some(rest) = line.strip_prefix(b"[GNUPG:] SESSION_KEY ") else {
            continue;
        };
        let rest =
            std::str::from_utf8(rest).map_err(|_| "gpg printed an unreadable session key")?;
        let (algo, hex_key) = rest
            .trim()
            .split_once(':')
            .ok_or("gpg printed an unreadable session key")?;
        let algo: u8 = algo
            .parse()
            .map_err(|_| "gpg printed an unreadable session key")?;
        let bytes = Zeroizing::new(
            hex::decode(hex_key).map_err(|_| "gpg printed an unreadable session key")?,
        );
        return Ok((
            Some(SymmetricAlgorithm::from(algo)),
            SessionKey::from(&bytes[..]),
        ));
    }
    let stderr = Zeroizing::new(String::from_utf8_lossy(&stderr).into_owned());
    let reason = stderr
        .lines()
        .filter(|l| l.starts_with("gpg: "))
        .map(|l| l.trim_start_matches("gpg: "))
        .find(|l| {
            l.contains("secret key")
                || l.contains("decrypt")
                || l.contains("agent")
                || l.contains("card")
        })
        .unwrap_or("no secret key for any recipient in the gpg keyring")
        .to_string();
    Err(format!(
        "{reason}; check that the maintainer key is in this GNUPGHOME and gpg-agent is running"
    ))
}

/// The terminal this process runs on, if any (`/dev/pts/N`).
fn terminal_name() -> Option<PathBuf> {
    use std::io::IsTerminal;
    let fds = [
        (0, io::stdin().is_terminal()),
        (2, io::stderr().is_terminal()),
        (1, io::stdout().is_terminal()),
    ];
    fds.into_iter()
        .filter(|(_, tty)| *tty)
        .filter_map(|(fd, _)| std::fs::read_link(format!("/proc/self/fd/{fd}")).ok())
        .find(|p| p.starts_with("/dev/"))
}

/// Counts and hashes decrypted bytes on their way out, stopping at `limit`
/// (what `by` says the size is).
struct CheckingWriter<'a> {
    out: &'a mut dyn Write,
    /// On the second core once the part is large.
    hash: Offload<Sha256>,
    size: u64,
    limit: u64,
    by: &'static str,
}

impl Write for CheckingWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.size + buf.len() as u64 > self.limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("longer than the {} bytes {} says", self.limit, self.by),
            ));
        }
        let n = self.out.write(buf)?;
        self.hash.update(&buf[..n])?;
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}
