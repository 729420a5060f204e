//! Sharing a sealed part with a new maintainer: the part's session key,
//! recovered from the part's head with a current maintainer's key (a key
//! file, or gpg), is wrapped to the new certificate as one more PKESK in
//! front of the part. Nothing after the session keys changes: the
//! encrypted data stays byte-identical, so what was signed and hashed
//! stays what it was, and anyone can check that only headers were added.

use std::io::Read;

use openpgp::Cert;
use openpgp::crypto::SessionKey;
use openpgp::packet::key::{PublicParts, UnspecifiedRole};
use openpgp::packet::pkesk::{PKESK3, PKESK6};
use openpgp::packet::{Key, PKESK, Packet};
use openpgp::parse::{PacketParserResult, Parse};
use openpgp::policy::StandardPolicy;
use openpgp::serialize::Serialize;
use openpgp::types::SymmetricAlgorithm;
use sequoia_openpgp as openpgp;

use super::reader::{self, SecretSource};

/// Why a part could not be shared.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShareError {
    #[error("the part is not a public-key encrypted message this embargo wrote: {0}")]
    Shape(String),
    #[error("none of the given secret keys opens the part's session key")]
    NoKey,
    #[error("the new certificate {0} has no usable encryption subkey")]
    NoEncryptionKey(String),
    #[error("wrapping the session key failed: {0}")]
    OpenPgp(#[source] anyhow::Error),
    #[error("gpg could not open the part's session key: {0}")]
    Gpg(String),
    #[error("reading the part failed: {0}")]
    Read(#[source] std::io::Error),
}

/// The session-key packets of a part and where its encrypted data starts.
struct Split {
    pkesks: Vec<PKESK>,
    /// Byte offset of the encrypted data packet.
    body_at: usize,
}

fn split(ciphertext: &[u8]) -> Result<Split, ShareError> {
    let shape = |why: &str| ShareError::Shape(why.into());
    let mut ppr = openpgp::parse::PacketParser::from_bytes(ciphertext)
        .map_err(|_| shape("not OpenPGP data"))?;
    let mut pkesks = Vec::new();
    while let PacketParserResult::Some(pp) = ppr {
        match &pp.packet {
            Packet::PKESK(p) => pkesks.push(p.clone()),
            Packet::SEIP(_) => break,
            _ => return Err(shape("an unexpected packet before the encrypted data")),
        }
        ppr = pp.next().map_err(|_| shape("damaged framing"))?.1;
    }
    if pkesks.is_empty() {
        return Err(shape("no public-key encrypted session key"));
    }
    // The headers as they are serialized must be exactly the bytes in front
    // of the encrypted data: then that data is kept verbatim.
    let mut head = Vec::new();
    for p in &pkesks {
        Packet::PKESK(p.clone())
            .serialize(&mut head)
            .map_err(ShareError::OpenPgp)?;
    }
    if !ciphertext.starts_with(&head) || head.len() >= ciphertext.len() {
        return Err(shape("session keys that do not serialize as stored"));
    }
    Ok(Split {
        pkesks,
        body_at: head.len(),
    })
}

/// The session key of a part whose head is `head` (split as `pkesks`,
/// its encrypted data at `body_at`), from `source`.
fn session_key(
    head: &[u8],
    pkesks: &[PKESK],
    body_at: usize,
    source: &SecretSource,
) -> Result<(Option<SymmetricAlgorithm>, SessionKey), ShareError> {
    match source {
        SecretSource::Keys(secrets) => secret_session_key(pkesks, secrets),
        SecretSource::Gpg { homedir } => {
            // gpg reads the session keys and the start of the encrypted data
            // (it never sees a password-encrypted part: `split` refuses
            // anything but PKESKs before the data).
            let shown = &head[..head.len().min(body_at + GPG_BODY_BYTES)];
            reader::gpg_session_key(homedir.as_ref(), shown).map_err(ShareError::Gpg)
        }
    }
}

fn secret_session_key(
    pkesks: &[PKESK],
    secrets: &[Cert],
) -> Result<(Option<SymmetricAlgorithm>, SessionKey), ShareError> {
    for pkesk in pkesks {
        for cert in secrets {
            for ka in cert.keys().unencrypted_secret() {
                let Ok(mut keypair) = ka.key().clone().into_keypair() else {
                    continue;
                };
                if let Some(found) = pkesk.decrypt(&mut keypair, None) {
                    return Ok(found);
                }
            }
        }
    }
    Err(ShareError::NoKey)
}

fn encryption_keys(cert: &Cert) -> Result<Vec<Key<PublicParts, UnspecifiedRole>>, ShareError> {
    let policy = StandardPolicy::new();
    let none = || ShareError::NoEncryptionKey(cert.fingerprint().to_hex());
    let vc = cert.with_policy(&policy, None).map_err(|_| none())?;
    let keys: Vec<_> = vc
        .keys()
        .supported()
        .alive()
        .revoked(false)
        .for_storage_encryption()
        .for_transport_encryption()
        .map(|ka| ka.key().clone().role_into_unspecified())
        .collect();
    if keys.is_empty() {
        return Err(none());
    }
    Ok(keys)
}

/// Session keys to insert into a part: [`keys_to_add`] makes them, and they
/// go right before the encrypted data, which is not needed to make them.
pub struct Addition {
    /// Byte offset of the part's encrypted data packet, where `keys` go.
    pub offset: u64,
    /// The new public-key encrypted session key packets, serialized.
    pub keys: Vec<u8>,
}

/// The session keys that share the part starting with `head` with every
/// encryption subkey of `new`, the session key opened through `source`.
/// `head` needs only the part's session keys and the start of its
/// encrypted data ([`read_head`]). A certificate whose subkeys already
/// have a PKESK is left alone, so sharing twice changes nothing: `None`
/// when nothing has to be added.
pub fn keys_to_add(
    head: &[u8],
    source: &SecretSource,
    new: &Cert,
) -> Result<Option<Addition>, ShareError> {
    let Split { pkesks, body_at } = split(head)?;
    let wanted = encryption_keys(new)?;
    // A v3 session key names its recipient by key ID, a v6 one by fingerprint.
    let present: Vec<openpgp::KeyHandle> = pkesks.iter().filter_map(|p| p.recipient()).collect();
    let missing: Vec<_> = wanted
        .iter()
        .filter(|k| !present.iter().any(|r| r.aliases(k.key_handle())))
        .collect();
    if missing.is_empty() {
        return Ok(None);
    }
    let (algo, sk) = session_key(head, &pkesks, body_at, source)?;
    let v6 = matches!(pkesks[0], PKESK::V6(_));
    let mut keys = Vec::new();
    for key in missing {
        let packet = if v6 {
            let mut p = PKESK6::for_recipient(&sk, key).map_err(ShareError::OpenPgp)?;
            p.set_recipient(Some(key.fingerprint()));
            Packet::from(p)
        } else {
            let algo = algo.ok_or_else(|| ShareError::Shape("no cipher for a v3 PKESK".into()))?;
            let mut p = PKESK3::for_recipient(algo, &sk, key).map_err(ShareError::OpenPgp)?;
            p.set_recipient(Some(key.key_handle().into()));
            Packet::PKESK(p.into())
        };
        packet.serialize(&mut keys).map_err(ShareError::OpenPgp)?;
    }
    Ok(Some(Addition {
        offset: body_at as u64,
        keys,
    }))
}

/// `ciphertext` with the session key also wrapped to every encryption
/// subkey of `new` ([`keys_to_add`] on a whole part in memory). Returns
/// `None` when nothing had to be added.
pub fn add_recipient(
    ciphertext: &[u8],
    source: &SecretSource,
    new: &Cert,
) -> Result<Option<Vec<u8>>, ShareError> {
    let Some(Addition { offset, keys }) = keys_to_add(ciphertext, source, new)? else {
        return Ok(None);
    };
    let (front, body) = ciphertext.split_at(offset as usize);
    let mut out = Vec::with_capacity(ciphertext.len() + keys.len());
    out.extend_from_slice(front);
    out.extend_from_slice(&keys);
    out.extend_from_slice(body);
    Ok(Some(out))
}

/// How much of a part [`read_head`] reads first: the session keys of
/// dozens of maintainers, and the start of the encrypted data after them.
pub const FIRST_HEAD_BYTES: usize = 64 * 1024;
/// Most of the encrypted data gpg is shown with the session keys. It needs
/// only the first bytes of the data (gpg 2.2 prints the session key once
/// it has checked the first cipher block); the rest it decrypts to
/// /dev/null before it finds the data cut short.
const GPG_BODY_BYTES: usize = 64 * 1024;

/// Reads the start of a part from `reader`: at least its session keys and
/// the start of its encrypted data ([`body_offset`] succeeds on it), and
/// never more than [`MAX_HEAD_BYTES`], so the rest of a large attachment
/// is never read. Reads [`FIRST_HEAD_BYTES`] first, and more only when the
/// session keys go on beyond them.
pub fn read_head(reader: &mut dyn Read) -> Result<Vec<u8>, ShareError> {
    let mut head = Vec::new();
    let mut want = FIRST_HEAD_BYTES;
    loop {
        let missing = (want - head.len()) as u64;
        reader
            .take(missing)
            .read_to_end(&mut head)
            .map_err(ShareError::Read)?;
        match split(&head) {
            Ok(_) => return Ok(head),
            // The whole part, or as much as a part's head may be.
            Err(e) if head.len() < want || want >= MAX_HEAD_BYTES => return Err(e),
            Err(_) => want = (want * 2).min(MAX_HEAD_BYTES),
        }
    }
}

/// Whether `after` is `before` with session-key packets added and the
/// encrypted data byte-identical (what an intake checks before it accepts
/// a shared part).
pub fn only_headers_added(before: &[u8], after: &[u8]) -> bool {
    let (Ok(b), Ok(a)) = (split(before), split(after)) else {
        return false;
    };
    before[b.body_at..] == after[a.body_at..]
        && after.starts_with(&before[..b.body_at])
        && a.pkesks.len() > b.pkesks.len()
}

/// Most bytes of session keys one request may add.
pub const MAX_ADDED_SESSION_KEYS: usize = 64 * 1024;
/// Most bytes of a part read to find where its encrypted data starts.
pub const MAX_HEAD_BYTES: usize = 1024 * 1024;

/// Checks that `added` is nothing but public-key encrypted session keys,
/// within [`MAX_ADDED_SESSION_KEYS`].
pub fn check_added(added: &[u8]) -> Result<(), ShareError> {
    let shape = |why: &str| ShareError::Shape(why.into());
    if added.is_empty() || added.len() > MAX_ADDED_SESSION_KEYS {
        return Err(shape("no session keys, or too many bytes of them"));
    }
    let mut ppr =
        openpgp::parse::PacketParser::from_bytes(added).map_err(|_| shape("not OpenPGP data"))?;
    while let PacketParserResult::Some(pp) = ppr {
        if !matches!(pp.packet, Packet::PKESK(_)) {
            return Err(shape("something else than session keys"));
        }
        ppr = pp.next().map_err(|_| shape("damaged framing"))?.1;
    }
    let mut round_trip = Vec::new();
    let mut ppr =
        openpgp::parse::PacketParser::from_bytes(added).map_err(|_| shape("not OpenPGP data"))?;
    while let PacketParserResult::Some(pp) = ppr {
        let (packet, next) = pp.next().map_err(|_| shape("damaged framing"))?;
        packet
            .serialize(&mut round_trip)
            .map_err(ShareError::OpenPgp)?;
        ppr = next;
    }
    if round_trip != added {
        return Err(shape("session keys that do not serialize as sent"));
    }
    Ok(())
}

/// Where the encrypted data of a part starts, from its first bytes.
pub fn body_offset(head: &[u8]) -> Result<usize, ShareError> {
    split(head).map(|s| s.body_at)
}

/// The session keys `shared` has in front of `stored`'s: `shared` must be
/// `stored` with session keys inserted before the encrypted data (what
/// [`add_recipient`] makes). `None` when it is not.
pub fn added_keys(stored_len: u64, shared: &[u8]) -> Option<Vec<u8>> {
    added_keys_in_head(stored_len, shared.len() as u64, shared)
}

/// [`added_keys`] from only the head of the shared part ([`read_head`]):
/// `shared_len` is the whole part's length.
pub fn added_keys_in_head(stored_len: u64, shared_len: u64, head: &[u8]) -> Option<Vec<u8>> {
    let grown = usize::try_from(shared_len.checked_sub(stored_len)?).ok()?;
    let body_at = body_offset(head).ok()?;
    let start = body_at.checked_sub(grown)?;
    Some(head[start..body_at].to_vec())
}
