//! Writes sealed reports: every part encrypted to every usable maintainer
//! subkey, the manifest signed by the intake key and written last, the whole
//! report committed at once (docs/format.md).

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::SystemTime;

use sequoia_openpgp as openpgp;

use openpgp::cert::Preferences;
use openpgp::crypto::SessionKey;
use openpgp::packet::key::{PublicParts, UnspecifiedRole};
use openpgp::packet::pkesk::{PKESK3, PKESK6};
use openpgp::packet::{Key, Packet};
use openpgp::serialize::Serialize;
use openpgp::serialize::stream::padding::Padder;
use openpgp::serialize::stream::{Encryptor, LiteralWriter, Message, Signer};
use openpgp::types::{AEADAlgorithm, DataFormat, Features, KeyFlags, SymmetricAlgorithm};
use openpgp::{Cert, Fingerprint, KeyHandle};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::manifest::{AttachmentEntry, Channel, EmailMeta, Manifest, Role, SCHEMA, SealedPolicy};
use super::offload::{Consumer, Offload};
use super::seipd::{Seipd1Writer, definite_length, padded_size};
use crate::clock::{Clock, rfc3339};
use crate::config::{MessageFormat, Policy};
use crate::id::ReportId;
use crate::keys::{IntakeSecrets, KeyError, Recipients};
use crate::report::{ReportBody, Reporter};
use crate::store::{PartSink, Staging, Store, StoreError, attachment_part_name};

/// Plaintext is moved through the encryptor in pieces of this size.
const CHUNK: usize = 64 * 1024;

/// Most attachments one report can hold (part names run to 999).
pub const MAX_PARTS: usize = 999;

/// What can go wrong while sealing. No variant ever carries plaintext.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("reading the attachment failed before it was complete: {0}")]
    Input(#[source] io::Error),
    #[error("an attachment is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("a report may have at most {limit} attachments")]
    TooManyAttachments { limit: usize },
    #[error("encryption failed: {0}")]
    OpenPgp(#[source] anyhow::Error),
    #[error("writing the sealed part failed: {0}")]
    Output(#[source] io::Error),
    /// The manifest would be larger than any reader accepts
    /// ([`super::reader::MAX_MANIFEST_BYTES`]); nothing is committed.
    #[error("the report's manifest would be larger than the {limit} bytes readers accept")]
    ManifestTooLarge { limit: u64 },
    /// The event the sealed parts belong to cannot be written as it is:
    /// what it was given is outside the event format's bounds.
    #[error("the event cannot be stored: {0}")]
    Event(#[source] crate::case::event::EventError),
}

/// Seals reports to a fixed set of recipients. Cheap to clone.
#[derive(Clone)]
pub struct Sealer {
    inner: Arc<SealerInner>,
}

struct SealerInner {
    recipients: Recipients,
    secrets: Arc<IntakeSecrets>,
    format: MessageFormat,
    clock: Clock,
    /// The promises sealed into each manifest.
    policy: Option<SealedPolicy>,
    /// Which SEIPDv1 writer seals the attachments.
    seipd1: Seipd1Engine,
}

/// Which writer makes the SEIPDv1 packet of a part (the `compat` format).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Seipd1Engine {
    /// embargo's own writer over OpenSSL EVP ([`super::seipd`]), padding
    /// every part to a size bucket; used for an envelope of AES-256
    /// without AEAD, and any other envelope goes through Sequoia.
    #[default]
    Openssl,
    /// Sequoia's encryptor, which computes the MDC with collision-detecting
    /// SHA-1 and does not pad SEIPDv1: kept as the reference the own
    /// writer is measured and tested against (`benches/seipd.rs`,
    /// `tests/seipd.rs`).
    Sequoia,
}

/// One sealed part as stored, for receipts and listings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedPart {
    pub name: String,
    /// Ciphertext size.
    pub size: u64,
    /// Hex SHA-256 of the ciphertext as stored.
    pub sha256: String,
}

/// What the reporter is told about one attachment (name, size, plaintext hash).
#[derive(Clone, Debug)]
pub struct AttachmentSummary {
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

/// Size and plaintext SHA-256 of the report text (the description).
#[derive(Clone, Debug)]
pub struct TextSummary {
    pub size: u64,
    pub sha256: String,
}

/// A committed report.
#[derive(Clone, Debug)]
pub struct SealedReport {
    pub id: ReportId,
    pub received_at: SystemTime,
    pub parts: Vec<SealedPart>,
    /// The report text as received.
    pub text: TextSummary,
    pub attachments: Vec<AttachmentSummary>,
    pub recipients: Vec<String>,
    pub signing_key: String,
}

impl Sealer {
    pub fn new(
        recipients: Recipients,
        secrets: Arc<IntakeSecrets>,
        format: MessageFormat,
        clock: Clock,
    ) -> Sealer {
        Sealer {
            inner: Arc::new(SealerInner {
                recipients,
                secrets,
                format,
                clock,
                policy: None,
                seipd1: Seipd1Engine::default(),
            }),
        }
    }

    /// The same sealer, recording `policy` in every manifest it writes.
    pub fn with_policy(self, policy: &Policy) -> Sealer {
        let inner = SealerInner {
            recipients: self.inner.recipients.clone(),
            secrets: self.inner.secrets.clone(),
            format: self.inner.format,
            clock: self.inner.clock,
            policy: Some(SealedPolicy::from(policy)),
            seipd1: self.inner.seipd1,
        };
        Sealer {
            inner: Arc::new(inner),
        }
    }

    /// The same sealer, writing the SEIPDv1 packets of attachments with
    /// `engine` (the manifest, signed, always goes through Sequoia).
    pub fn with_seipd1_engine(self, engine: Seipd1Engine) -> Sealer {
        let inner = SealerInner {
            recipients: self.inner.recipients.clone(),
            secrets: self.inner.secrets.clone(),
            format: self.inner.format,
            clock: self.inner.clock,
            policy: self.inner.policy.clone(),
            seipd1: engine,
        };
        Sealer {
            inner: Arc::new(inner),
        }
    }

    pub fn secrets(&self) -> &Arc<IntakeSecrets> {
        &self.inner.secrets
    }

    pub fn clock(&self) -> Clock {
        self.inner.clock
    }

    /// Starts report `id` in `store`. The recipients are judged now: a
    /// certificate that expired since it was loaded is not used, and if none
    /// is left the report is refused before anything is written.
    pub fn begin(
        &self,
        store: &dyn Store,
        id: ReportId,
        channel: Channel,
    ) -> Result<ReportWriter, SealError> {
        let now = self.inner.clock.now();
        let (keys, recipients) = encryption_keys(&self.inner.recipients, self.inner.format, now)?;
        let staging = store.stage(&id)?;
        Ok(ReportWriter {
            sealer: self.clone(),
            staging,
            id,
            received_at: now,
            channel,
            keys,
            recipients,
            attachments: Vec::new(),
            parts: Vec::new(),
        })
    }

    /// Signs `text` as a cleartext-signed message with the intake key.
    pub fn sign_cleartext(&self, text: &str) -> Result<String, SealError> {
        sign_cleartext(&self.inner.secrets, text)
    }
}

/// The encryption subkeys of every certificate in `recipients` usable at
/// `now`, and the certificates' fingerprints; refused when there is none.
fn encryption_keys(
    recipients: &Recipients,
    format: MessageFormat,
    now: SystemTime,
) -> Result<(Vec<EncryptionKey>, Vec<String>), SealError> {
    let mut keys = Vec::new();
    let mut fingerprints = Vec::new();
    for vc in recipients.at(now)? {
        let features = match format {
            MessageFormat::Compat => Features::empty().set_seipdv1(),
            MessageFormat::Rfc9580 => vc
                .features()
                .unwrap_or_else(|| Features::empty().set_seipdv1()),
        };
        for ka in vc.keys().supported().alive().revoked(false).key_flags(
            KeyFlags::empty()
                .set_storage_encryption()
                .set_transport_encryption(),
        ) {
            keys.push(EncryptionKey {
                features: features.clone(),
                handle: ka.key().key_handle(),
                key: ka.key().clone().role_into_unspecified(),
            });
        }
        fingerprints.push(vc.fingerprint().to_hex());
    }
    if keys.is_empty() {
        // Never a message nobody can open.
        return Err(SealError::OpenPgp(anyhow::anyhow!(
            "no usable encryption subkey among the maintainer certificates"
        )));
    }
    Ok((keys, fingerprints))
}

/// One signed, encrypted message: `plaintext` in a literal packet, signed
/// by `signer` (a one-pass signature inside the encryption) at `at`, and
/// encrypted to every usable subkey of `recipients` with a session key of
/// its own. Case events are sealed this way.
pub fn seal_signed(
    recipients: &Recipients,
    format: MessageFormat,
    signer: impl openpgp::crypto::Signer + Send + Sync,
    at: SystemTime,
    plaintext: &[u8],
) -> Result<(Vec<u8>, Vec<String>), SealError> {
    let (keys, fingerprints) = encryption_keys(recipients, format, at)?;
    Ok((encrypt_signed(&keys, signer, at, plaintext)?, fingerprints))
}

/// `plaintext` in a literal packet, signed by `signer` at `at` (a one-pass
/// signature inside the encryption), encrypted to `keys` with a session
/// key of its own.
fn encrypt_signed(
    keys: &[EncryptionKey],
    signer: impl openpgp::crypto::Signer + Send + Sync,
    at: SystemTime,
    plaintext: &[u8],
) -> Result<Vec<u8>, SealError> {
    let envelope = Envelope::new(keys).map_err(SealError::OpenPgp)?;
    let mut out = Vec::new();
    envelope.seal_signed(Seipd1Engine::default(), &mut out, signer, at, plaintext)?;
    Ok(out)
}

/// Encrypts `inner`, an already signed OpenPGP message (what `gpg --sign`
/// makes with the user's gpg-agent or smartcard), as the content of one
/// encrypted message to every usable subkey of `recipients`.
pub fn seal_inner(
    recipients: &Recipients,
    format: MessageFormat,
    at: SystemTime,
    inner: &[u8],
) -> Result<Vec<u8>, SealError> {
    let (keys, _) = encryption_keys(recipients, format, at)?;
    let envelope = Envelope::new(&keys).map_err(SealError::OpenPgp)?;
    let mut out = Vec::new();
    envelope.seal_packets(Seipd1Engine::default(), &mut out, |message| {
        message
            .write_all(inner)
            .map_err(|e| SealError::OpenPgp(e.into()))
    })?;
    Ok(out)
}

/// Signs `text` as a cleartext-signed message (RFC 9580 §7) with the intake
/// signing key: receipts, and security.txt (RFC 9116 §2.3).
pub fn sign_cleartext(secrets: &IntakeSecrets, text: &str) -> Result<String, SealError> {
    let keypair = secrets.signer()?;
    let mut out = Vec::new();
    {
        let message = Message::new(&mut out);
        let mut signer = Signer::new(message, keypair)
            .map_err(SealError::OpenPgp)?
            .cleartext()
            .build()
            .map_err(SealError::OpenPgp)?;
        signer
            .write_all(text.as_bytes())
            .map_err(|e| SealError::OpenPgp(e.into()))?;
        signer.finalize().map_err(SealError::OpenPgp)?;
    }
    String::from_utf8(out).map_err(|e| SealError::OpenPgp(e.into()))
}

#[derive(Clone)]
struct EncryptionKey {
    features: Features,
    handle: KeyHandle,
    key: Key<PublicParts, UnspecifiedRole>,
}

/// How one part is encrypted: a fresh session key of its own, wrapped to
/// each recipient subkey. Parts never share a session key, so a maintainer
/// who hands one part's session key to a vendor (`gpg --show-session-key`
/// on `001.pgp`) discloses that part only, not the manifest or the other
/// attachments. The cost is one public-key operation per part and
/// recipient subkey; the signing key is still imported once per process
/// ([`crate::keys::IntakeSigner`]).
struct Envelope {
    sym: SymmetricAlgorithm,
    /// SEIPDv2 with this mode when every recipient supports it.
    aead: Option<AEADAlgorithm>,
    session_key: SessionKey,
    /// The serialized PKESK packets, written at the start of the part.
    pkesks: Vec<u8>,
}

impl Envelope {
    fn new(keys: &[EncryptionKey]) -> openpgp::Result<Envelope> {
        if keys.is_empty() {
            // Never a message nobody can open.
            return Err(anyhow::anyhow!(
                "no usable encryption subkey among the maintainer certificates"
            ));
        }
        let sym = SymmetricAlgorithm::default();
        let aead = keys
            .iter()
            .all(|k| k.features.supports_seipdv2())
            .then(AEADAlgorithm::default);
        let session_key = SessionKey::new(sym.key_size()?)?;
        let mut pkesks = Vec::new();
        for k in keys {
            if aead.is_some() {
                let mut pkesk = PKESK6::for_recipient(&session_key, &k.key)?;
                pkesk.set_recipient(Some(Fingerprint::try_from(k.handle.clone())?));
                Packet::from(pkesk).serialize(&mut pkesks)?;
            } else {
                let mut pkesk = PKESK3::for_recipient(sym, &session_key, &k.key)?;
                pkesk.set_recipient(Some(k.handle.clone().into()));
                Packet::PKESK(pkesk.into()).serialize(&mut pkesks)?;
            }
        }
        Ok(Envelope {
            sym,
            aead,
            session_key,
            pkesks,
        })
    }

    /// Starts one encrypted part on `message`, through Sequoia's
    /// encryptor; a SEIPDv2 part is padded by Sequoia's `Padder` (which
    /// pads only RFC 9580 messages), a SEIPDv1 part not at all.
    fn encrypt<'a>(&self, mut message: Message<'a>) -> openpgp::Result<Message<'a>> {
        message.write_all(&self.pkesks)?;
        let mut encryptor =
            Encryptor::with_session_key(message, self.sym, self.session_key.clone())?;
        if let Some(aead) = self.aead {
            encryptor = encryptor.aead_algo(aead);
        }
        let message = encryptor.build()?;
        if self.aead.is_some() {
            return Padder::new(message)
                .with_policy(|inner| padded_size(inner, PAD_FLOOR))
                .build();
        }
        Ok(message)
    }

    /// The writer that makes this envelope's packet when `wanted` is asked
    /// for: embargo's own only carries AES-256 without AEAD.
    fn seipd1_engine(&self, wanted: Seipd1Engine) -> Seipd1Engine {
        match wanted {
            Seipd1Engine::Openssl
                if self.aead.is_none() && self.sym == SymmetricAlgorithm::AES256 =>
            {
                Seipd1Engine::Openssl
            }
            _ => Seipd1Engine::Sequoia,
        }
    }

    /// Encrypts the inner packet stream that `body` writes into `sink`:
    /// the PKESKs, then the encrypted packet, written by `engine` when it
    /// can carry this envelope (padded so that the part ends on a bucket)
    /// and by Sequoia otherwise.
    fn seal_packets<W: Write + Send + Sync, R>(
        &self,
        engine: Seipd1Engine,
        mut sink: W,
        body: impl FnOnce(&mut dyn Write) -> Result<R, SealError>,
    ) -> Result<R, SealError> {
        let pgp = SealError::OpenPgp;
        let io = |e: io::Error| SealError::OpenPgp(e.into());
        if self.seipd1_engine(engine) == Seipd1Engine::Openssl {
            sink.write_all(&self.pkesks).map_err(io)?;
            let mut seipd = Seipd1Writer::new(sink, &self.session_key).map_err(io)?;
            let out = body(&mut seipd)?;
            seipd
                .finish_padded(self.pkesks.len() as u64, PAD_FLOOR)
                .map_err(io)?;
            Ok(out)
        } else {
            let mut message = self.encrypt(Message::new(sink)).map_err(pgp)?;
            let out = body(&mut message)?;
            message.finalize().map_err(pgp)?;
            Ok(out)
        }
    }

    /// Seals what `body` writes, unsigned, as one literal data packet into
    /// `sink` ([`Envelope::seal_packets`]).
    fn seal_unsigned<W: Write + Send + Sync, R>(
        &self,
        engine: Seipd1Engine,
        sink: W,
        body: impl FnOnce(&mut dyn Write) -> Result<R, SealError>,
    ) -> Result<R, SealError> {
        self.seal_packets(engine, sink, |inner| {
            let mut literal = LiteralChunks::new(inner);
            let out = body(&mut literal)?;
            literal.finish().map_err(|e| SealError::OpenPgp(e.into()))?;
            Ok(out)
        })
    }

    /// Seals `plaintext` signed by `signer` at `at` (a one-pass signature,
    /// the literal packet, the signature) into `sink`. The signed packets
    /// are made by Sequoia in memory, wiped afterwards: only small parts
    /// (manifests, events) are signed.
    fn seal_signed<W: Write + Send + Sync>(
        &self,
        engine: Seipd1Engine,
        sink: W,
        signer: impl openpgp::crypto::Signer + Send + Sync,
        at: SystemTime,
        plaintext: &[u8],
    ) -> Result<(), SealError> {
        let signed = signed_message(signer, at, plaintext).map_err(SealError::OpenPgp)?;
        self.seal_packets(engine, sink, |inner| {
            inner
                .write_all(&signed)
                .map_err(|e| SealError::OpenPgp(e.into()))
        })
    }
}

/// `plaintext` as a signed OpenPGP message, unencrypted: a one-pass
/// signature by `signer` made at `at`, the literal data packet (binary, no
/// name) and the signature; wiped when dropped.
pub fn signed_message(
    signer: impl openpgp::crypto::Signer + Send + Sync,
    at: SystemTime,
    plaintext: &[u8],
) -> openpgp::Result<Zeroizing<Vec<u8>>> {
    let mut signed = Zeroizing::new(Vec::with_capacity(plaintext.len() + 512));
    let message = Signer::new(Message::new(&mut *signed), signer)?
        .creation_time(at)
        .build()?;
    let mut literal = LiteralWriter::new(message)
        .format(DataFormat::Binary)
        .build()?;
    literal.write_all(plaintext)?;
    literal.finalize()?;
    Ok(signed)
}

/// The smallest size any sealed part is padded to: every short report
/// text, small attachment and case event looks the same from its size.
pub const PAD_FLOOR: u64 = 4096;

/// A report being sealed. Dropping it without `finish` discards everything.
pub struct ReportWriter {
    sealer: Sealer,
    staging: Box<dyn Staging>,
    id: ReportId,
    received_at: SystemTime,
    channel: Channel,
    /// The recipient subkeys, judged once when the report began.
    keys: Vec<EncryptionKey>,
    recipients: Vec<String>,
    attachments: Vec<AttachmentEntry>,
    parts: Vec<SealedPart>,
}

/// The end of a part's pipeline: the ciphertext written to the store and
/// hashed for the receipt, on the second core once the part is large.
struct CipherSink(Offload<CipherTail>);

struct CipherTail {
    sink: Box<dyn PartSink>,
    hash: Sha256,
}

impl Consumer for CipherTail {
    fn update(&mut self, data: &[u8]) -> io::Result<()> {
        self.sink.write_all(data)?;
        Consumer::update(&mut self.hash, data)
    }
}

impl Write for CipherSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf)?;
        Ok(buf.len())
    }

    /// The part is flushed and made durable by [`PartSink::finish`].
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ReportWriter {
    pub fn id(&self) -> &ReportId {
        &self.id
    }

    pub fn received_at(&self) -> SystemTime {
        self.received_at
    }

    pub fn attachment_count(&self) -> usize {
        self.attachments.len()
    }

    /// Seals one attachment read from `plaintext`, at most `limit` bytes.
    ///
    /// Size and SHA-256 are computed while streaming; memory use does not
    /// depend on the attachment's size.
    pub fn add_attachment(
        &mut self,
        name: &str,
        media_type: &str,
        role: Role,
        plaintext: &mut dyn Read,
        limit: u64,
    ) -> Result<&AttachmentEntry, SealError> {
        if self.attachments.len() >= MAX_PARTS {
            return Err(SealError::TooManyAttachments { limit: MAX_PARTS });
        }
        let file = attachment_part_name(self.attachments.len() + 1);
        let mut hash = Offload::new(Sha256::new());
        let mut size = 0u64;
        let engine = self.sealer.inner.seipd1;
        let part = self.write_part(&file, |envelope, sink| {
            envelope.seal_unsigned(engine, sink, |w| {
                size = copy_limited(plaintext, limit, &mut hash, w)?;
                Ok(())
            })
        })?;
        self.parts.push(part);
        self.attachments.push(AttachmentEntry {
            file,
            name: name.to_string(),
            size,
            sha256: hex::encode(hash.finish().map_err(SealError::Input)?.finalize()),
            media_type: media_type.to_string(),
            role,
        });
        Ok(self
            .attachments
            .last()
            .unwrap_or_else(|| unreachable!("just pushed")))
    }

    /// Writes the signed manifest last and commits the report: only after
    /// this returns is the report durable and visible.
    pub fn finish(
        self,
        report: ReportBody,
        reporter: Reporter,
        email: Option<EmailMeta>,
    ) -> Result<SealedReport, SealError> {
        self.seal_manifest(report, reporter, email)?.commit()
    }

    /// Writes the signed manifest; the report is complete but not yet
    /// visible: events may still be added before [`PendingReport::commit`].
    pub fn seal_manifest(
        mut self,
        report: ReportBody,
        reporter: Reporter,
        email: Option<EmailMeta>,
    ) -> Result<PendingReport, SealError> {
        let manifest = Manifest {
            schema: SCHEMA.into(),
            id: self.id.clone(),
            received_at: rfc3339(self.received_at),
            channel: self.channel,
            report,
            reporter,
            attachments: self.attachments.clone(),
            email,
            recipients: self.recipients.clone(),
            signing_key: self.sealer.inner.secrets.signing_fingerprint().to_hex(),
            policy: self.sealer.inner.policy.clone(),
        };
        let json = manifest.to_json();
        // A manifest no reader opens would be a report nobody can read.
        let limit = super::reader::MAX_MANIFEST_BYTES;
        if json.len() as u64 > limit {
            return Err(SealError::ManifestTooLarge { limit });
        }
        let (engine, at) = (self.sealer.inner.seipd1, self.received_at);
        let keypair = self.sealer.inner.secrets.signer()?;
        let part = self.write_part("manifest.pgp", |envelope, sink| {
            envelope.seal_signed(engine, sink, keypair, at, &json)
        })?;
        self.parts.insert(0, part);
        let text = summary_of(&manifest.report.description);
        let ReportWriter {
            staging,
            id,
            received_at,
            parts,
            recipients,
            attachments,
            sealer,
            keys,
            ..
        } = self;
        let sealed = SealedReport {
            id,
            received_at,
            parts,
            text,
            attachments: attachments
                .iter()
                .map(|a| AttachmentSummary {
                    name: a.name.clone(),
                    size: a.size,
                    sha256: a.sha256.clone(),
                })
                .collect(),
            recipients,
            signing_key: sealer.inner.secrets.signing_fingerprint().to_hex(),
        };
        Ok(PendingReport {
            staging,
            sealed,
            keys,
            sealer,
        })
    }

    /// Creates part `name`, with an envelope of its own, and runs `seal`
    /// with the envelope and the part's ciphertext sink.
    fn write_part(
        &mut self,
        name: &str,
        seal: impl FnOnce(&Envelope, &mut CipherSink) -> Result<(), SealError>,
    ) -> Result<SealedPart, SealError> {
        let mut sink = CipherSink(Offload::new(CipherTail {
            sink: self.staging.create_part(name)?,
            hash: Sha256::new(),
        }));
        let envelope = Envelope::new(&self.keys).map_err(SealError::OpenPgp)?;
        seal(&envelope, &mut sink)?;
        let CipherTail { sink, hash } = sink.0.finish().map_err(SealError::Output)?;
        let size = sink.finish()?;
        Ok(SealedPart {
            name: name.to_string(),
            size,
            sha256: hex::encode(hash.finalize()),
        })
    }
}

/// Size and SHA-256 of the report text as received.
fn summary_of(text: &str) -> TextSummary {
    TextSummary {
        size: text.len() as u64,
        sha256: hex::encode(Sha256::digest(text.as_bytes())),
    }
}

/// A report whose parts and manifest are written but not yet committed.
pub struct PendingReport {
    staging: Box<dyn Staging>,
    sealed: SealedReport,
    keys: Vec<EncryptionKey>,
    sealer: Sealer,
}

impl PendingReport {
    /// What the committed report will be.
    pub fn report(&self) -> &SealedReport {
        &self.sealed
    }

    /// The promises sealed into the manifest.
    pub fn policy(&self) -> Option<&SealedPolicy> {
        self.sealer.inner.policy.as_ref()
    }

    /// `text` cleartext-signed by the intake key (the receipt).
    pub fn sealer_sign_cleartext(&self, text: &str) -> Result<String, SealError> {
        self.sealer.sign_cleartext(text)
    }

    /// The intake key's primary fingerprint, which events it signs name.
    pub fn intake_fingerprint(&self) -> String {
        self.sealer.inner.secrets.signing_fingerprint().to_hex()
    }

    /// Seals `plaintext` signed by the intake key, to the report's
    /// recipients and to `also_to` (the reply certificate), and adds it as
    /// event `name`, visible with the report.
    pub fn add_intake_event(
        &mut self,
        name: &str,
        plaintext: &[u8],
        also_to: Option<&Cert>,
    ) -> Result<(), SealError> {
        let at = self.sealed.received_at;
        let mut keys: Vec<EncryptionKey> = self.keys.clone();
        if let Some(cert) = also_to {
            let (extra, _) = encryption_keys(
                &Recipients::from_certs(vec![cert.clone()]),
                self.sealer.inner.format,
                at,
            )?;
            keys.extend(extra);
        }
        let out = encrypt_signed(&keys, self.sealer.inner.secrets.signer()?, at, plaintext)?;
        self.staging.add_event(name, &out)?;
        Ok(())
    }

    /// Commits the report: only after this returns is it durable and
    /// visible, with every event added.
    pub fn commit(self) -> Result<SealedReport, SealError> {
        self.staging.commit()?;
        Ok(self.sealed)
    }
}

/// Copies `plaintext` into `out` through a wiped buffer, hashing it, and
/// refuses it once it passes `limit` bytes; returns how many it copied.
fn copy_limited(
    plaintext: &mut dyn Read,
    limit: u64,
    hash: &mut Offload<Sha256>,
    out: &mut dyn Write,
) -> Result<u64, SealError> {
    let mut buf = Zeroizing::new(vec![0u8; CHUNK]);
    let mut size = 0u64;
    loop {
        let n = match plaintext.read(&mut buf[..]) {
            Ok(0) => return Ok(size),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(SealError::Input(e)),
        };
        size += n as u64;
        if size > limit {
            return Err(SealError::TooLarge { limit });
        }
        hash.update(&buf[..n])
            .map_err(|e| SealError::OpenPgp(e.into()))?;
        out.write_all(&buf[..n])
            .map_err(|e| SealError::OpenPgp(e.into()))?;
    }
}

/// Seals what `plaintext` yields (at most `limit` bytes), unsigned, to
/// every usable subkey of `recipients`, into `sink`, streaming: a file a
/// reporter sent with a follow-up. Returns the plaintext's size and hex
/// SHA-256 (for the event that lists it) and the ciphertext's size.
pub fn seal_stream(
    recipients: &Recipients,
    format: MessageFormat,
    at: SystemTime,
    plaintext: &mut dyn Read,
    limit: u64,
    sink: Box<dyn PartSink>,
) -> Result<(u64, String, u64), SealError> {
    seal_stream_with(
        Seipd1Engine::default(),
        recipients,
        format,
        at,
        plaintext,
        limit,
        sink,
    )
}

/// [`seal_stream`] with the SEIPDv1 packet written by `engine`.
pub fn seal_stream_with(
    engine: Seipd1Engine,
    recipients: &Recipients,
    format: MessageFormat,
    at: SystemTime,
    plaintext: &mut dyn Read,
    limit: u64,
    sink: Box<dyn PartSink>,
) -> Result<(u64, String, u64), SealError> {
    let (keys, _) = encryption_keys(recipients, format, at)?;
    let mut sink = sink;
    let mut hash = Offload::new(Sha256::new());
    let envelope = Envelope::new(&keys).map_err(SealError::OpenPgp)?;
    let size = envelope.seal_unsigned(engine, &mut sink, |literal| {
        copy_limited(plaintext, limit, &mut hash, literal)
    })?;
    let stored = sink.finish()?;
    let hash = hash.finish().map_err(|e| SealError::OpenPgp(e.into()))?;
    Ok((size, hex::encode(hash.finalize()), stored))
}

/// Size of the partial-body chunks of an attachment's literal data packet.
const LITERAL_CHUNK: usize = 64 * 1024;

/// Writes one Literal Data packet (RFC 9580 §5.9: binary, no file name,
/// date 0, the same packet Sequoia's `LiteralWriter` makes) into the
/// encryption layer, framed as 64 KiB partial-body chunks. Sequoia's own
/// literal writer buffers 4 MiB before it frames anything, which for 32
/// concurrent uploads alone is 128 MiB of plaintext held in memory; here
/// at most one chunk is, and it is wiped when dropped.
struct LiteralChunks<W: Write> {
    inner: W,
    /// Packet body not yet framed; the first chunk starts with the header
    /// fields. Framed only once more than a chunk is pending, because the
    /// last chunk must carry a definite length.
    pending: Zeroizing<Vec<u8>>,
    /// Whether a partial chunk (and so the packet tag) was written.
    started: bool,
}

impl<W: Write> LiteralChunks<W> {
    fn new(inner: W) -> LiteralChunks<W> {
        let mut pending = Zeroizing::new(Vec::with_capacity(LITERAL_CHUNK));
        // Format 'b', file name length 0, date 0.
        pending.extend_from_slice(&[b'b', 0, 0, 0, 0, 0]);
        LiteralChunks {
            inner,
            pending,
            started: false,
        }
    }

    /// Writes one full chunk as a partial body of 2^16 bytes.
    fn emit_chunk(&mut self) -> io::Result<()> {
        if !self.started {
            self.inner.write_all(&[LITERAL_TAG])?;
            self.started = true;
        }
        self.inner.write_all(&[224 + 16])?; // partial length 1 << 16
        self.inner.write_all(&self.pending[..LITERAL_CHUNK])?;
        self.pending.clear();
        Ok(())
    }

    /// Writes what is pending with a definite length; returns the layer
    /// below, for the caller to close (encryption, MDC or AEAD tag).
    fn finish(mut self) -> io::Result<W> {
        if !self.started {
            self.inner.write_all(&[LITERAL_TAG])?;
        }
        self.inner.write_all(&definite_length(self.pending.len()))?;
        self.inner.write_all(&self.pending)?;
        self.pending.clear();
        // The pending buffer is wiped when `self` drops, here.
        let LiteralChunks { inner, .. } = self;
        Ok(inner)
    }
}

/// New-format packet tag of a Literal Data packet (tag 11).
const LITERAL_TAG: u8 = 0xC0 | 11;

impl<W: Write> Write for LiteralChunks<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut rest = buf;
        while !rest.is_empty() {
            if self.pending.len() == LITERAL_CHUNK {
                self.emit_chunk()?;
            }
            let n = rest.len().min(LITERAL_CHUNK - self.pending.len());
            self.pending.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl SealedReport {
    /// The receipt text (before signing): what was delivered, and when.
    pub fn receipt_text(&self, project_name: &str) -> String {
        let mut text = format!(
            "Receipt for a vulnerability report to {project_name}\n\nReport ID: {}\nReceived:  {}\n\nSealed parts (SHA-256 of the stored ciphertext):\n",
            self.id,
            rfc3339(self.received_at)
        );
        for part in &self.parts {
            text.push_str(&format!(
                "  {}  {:>12} bytes  {}\n",
                part.name, part.size, part.sha256
            ));
        }
        text.push_str("\nWhat was delivered (size and SHA-256 of the plaintext as received):\n");
        text.push_str(&format!(
            "  report text (description)  {:>12} bytes  {}\n",
            self.text.size, self.text.sha256
        ));
        for (n, a) in self.attachments.iter().enumerate() {
            text.push_str(&format!(
                "  attachment {}: {}  {:>12} bytes  {}\n",
                n + 1,
                a.name
                    .chars()
                    .filter(|c| !c.is_control())
                    .take(120)
                    .collect::<String>(),
                a.size,
                a.sha256
            ));
        }
        text.push_str("\nEncrypted to the maintainer certificates:\n");
        for r in &self.recipients {
            text.push_str(&format!("  {r}\n"));
        }
        text.push_str(&format!(
            "\nSigned by the intake key {}.\n",
            self.signing_key
        ));
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(sym: SymmetricAlgorithm, aead: Option<AEADAlgorithm>) -> Envelope {
        Envelope {
            sym,
            aead,
            session_key: SessionKey::new(sym.key_size().unwrap()).unwrap(),
            pkesks: Vec::new(),
        }
    }

    #[test]
    fn only_aes256_without_aead_goes_through_the_openssl_writer() {
        let openssl = Seipd1Engine::Openssl;
        let aes256 = envelope(SymmetricAlgorithm::AES256, None);
        assert_eq!(aes256.seipd1_engine(openssl), Seipd1Engine::Openssl);
        assert_eq!(
            aes256.seipd1_engine(Seipd1Engine::Sequoia),
            Seipd1Engine::Sequoia
        );
        let aes128 = envelope(SymmetricAlgorithm::AES128, None);
        assert_eq!(aes128.seipd1_engine(openssl), Seipd1Engine::Sequoia);
        let aead = envelope(SymmetricAlgorithm::AES256, Some(AEADAlgorithm::default()));
        assert_eq!(aead.seipd1_engine(openssl), Seipd1Engine::Sequoia);
    }

    #[test]
    fn both_writers_seal_the_same_inner_stream() {
        // The same literal packet through either writer, opened by Sequoia
        // with the envelope's session key.
        use openpgp::parse::stream::{DecryptionHelper, DecryptorBuilder, MessageStructure};
        use openpgp::parse::{Parse, stream::VerificationHelper};
        struct Key(SessionKey);
        impl VerificationHelper for Key {
            fn get_certs(&mut self, _: &[KeyHandle]) -> openpgp::Result<Vec<Cert>> {
                Ok(Vec::new())
            }
            fn check(&mut self, _: MessageStructure) -> openpgp::Result<()> {
                Ok(())
            }
        }
        impl DecryptionHelper for Key {
            fn decrypt(
                &mut self,
                _: &[openpgp::packet::PKESK],
                _: &[openpgp::packet::SKESK],
                sym: Option<SymmetricAlgorithm>,
                decrypt: &mut dyn FnMut(Option<SymmetricAlgorithm>, &SessionKey) -> bool,
            ) -> openpgp::Result<Option<Cert>> {
                assert!(decrypt(sym.or(Some(SymmetricAlgorithm::AES256)), &self.0));
                Ok(None)
            }
        }
        let plaintext: Vec<u8> = (0..3 * CHUNK + 17).map(|i| (i % 253) as u8).collect();
        let env = envelope(SymmetricAlgorithm::AES256, None);
        for engine in [Seipd1Engine::Sequoia, Seipd1Engine::Openssl] {
            let mut sealed = Vec::new();
            env.seal_unsigned(engine, &mut sealed, |w| {
                w.write_all(&plaintext)
                    .map_err(|e| SealError::OpenPgp(e.into()))
            })
            .unwrap();
            let policy = openpgp::policy::StandardPolicy::new();
            let mut decryptor = DecryptorBuilder::from_bytes(&sealed)
                .unwrap()
                .with_policy(&policy, None, Key(env.session_key.clone()))
                .unwrap();
            let mut out = Vec::new();
            io::copy(&mut decryptor, &mut out).unwrap();
            assert!(out == plaintext, "{engine:?}");
        }
    }
}
