//! Sealing and opening events. An event is one OpenPGP message encrypted to
//! every usable maintainer certificate and signed inside by its author;
//! stored as `<event ID>.pgp` beside its report.
//!
//! Opening checks more than the signature: the event must name the report
//! it is stored under (an event moved from another report is refused), the
//! ID its file name claims (a copy under another name is refused), and the
//! key that signed it as its author; and only the intake key may sign what
//! the intake records (`received`, `reporter-message`), only a maintainer's
//! key the rest. An event that fails any check is shown as unverifiable and
//! never counted.

use openpgp::Cert;
use openpgp::crypto::KeyPair;
use openpgp::policy::StandardPolicy;
use sequoia_openpgp as openpgp;

use super::event::{Event, EventError, EventId, MAX_EVENT_BYTES};
use crate::config::MessageFormat;
use crate::id::ReportId;
use crate::keys::Recipients;
use std::path::Path;

use crate::seal::writer::{seal_inner, seal_signed};
use crate::seal::{Opener, RevealError, SealError};

/// What can stop an event from being sealed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealEventError {
    #[error(transparent)]
    Event(#[from] EventError),
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error(
        "the key {0} has no usable signing subkey with its secret part: sign events with a key that can sign (gpg --quick-add-key FPR ed25519 sign)"
    )]
    NoSigningKey(String),
    #[error("{0}")]
    Gpg(String),
}

/// The author's signing key: the first usable signing subkey of `cert`
/// whose secret part is at hand (unlocked).
pub fn signing_keypair(cert: &Cert) -> Result<KeyPair, SealEventError> {
    let policy = StandardPolicy::new();
    let no_key = || SealEventError::NoSigningKey(cert.fingerprint().to_hex());
    let vc = cert.with_policy(&policy, None).map_err(|_| no_key())?;
    vc.keys()
        .alive()
        .revoked(false)
        .for_signing()
        .unencrypted_secret()
        .find_map(|ka| ka.key().clone().into_keypair().ok())
        .ok_or_else(no_key)
}

/// Seals `event` to every usable certificate of `recipients`, signed by
/// `author` (whose primary fingerprint must be `event.author`). Returns the
/// ciphertext to store as `event.event.file_name()`.
pub fn seal_event(
    event: &Event,
    recipients: &Recipients,
    format: MessageFormat,
    author: KeyPair,
) -> Result<Vec<u8>, SealEventError> {
    let plaintext = event.to_padded_json()?;
    let at = event.time().unwrap_or_else(std::time::SystemTime::now);
    let (ciphertext, _) = seal_signed(recipients, format, author, at, &plaintext)?;
    Ok(ciphertext)
}

/// The signing key gpg would use: the primary fingerprint of the first
/// secret key in the user's keyring (`homedir`, else `GNUPGHOME`) that can
/// sign. Case events made with `--gpg` name it as their author.
pub fn gpg_signing_key(homedir: Option<&Path>) -> Result<String, SealEventError> {
    let mut cmd = gpg(homedir);
    cmd.args(["--with-colons", "--list-secret-keys"]);
    let out = cmd.output().map_err(|e| {
        SealEventError::Gpg(format!(
            "cannot run gpg ({e}): install GnuPG, or use --key FILE"
        ))
    })?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let fields: Vec<&str> = line.split(':').collect();
        // sec:validity:…:capabilities in field 12 (e.g. "scESC").
        if fields.first() == Some(&"sec")
            && fields.get(11).is_some_and(|c| c.contains('S'))
            && !matches!(fields.get(1), Some(&"r") | Some(&"e") | Some(&"d"))
            && let Some(fpr) = lines
                .next()
                .and_then(|l| l.strip_prefix("fpr:"))
                .and_then(|l| l.split(':').find(|f| f.len() == 40 || f.len() == 64))
        {
            return Ok(fpr.to_owned());
        }
    }
    Err(SealEventError::Gpg(
        "gpg has no secret key that can sign: make one (gpg --quick-gen-key), or use --key FILE"
            .into(),
    ))
}

/// Seals `event` like [`seal_event`], but signed by gpg with the key
/// `event.author` names (so through gpg-agent, smartcards included); the
/// plaintext only ever passes through gpg's pipes.
pub fn seal_event_gpg(
    event: &Event,
    recipients: &Recipients,
    format: MessageFormat,
    homedir: Option<&Path>,
) -> Result<Vec<u8>, SealEventError> {
    let plaintext = event.to_padded_json()?;
    let signed = gpg_sign(homedir, &event.author, &plaintext)?;
    let at = event.time().unwrap_or_else(std::time::SystemTime::now);
    Ok(seal_inner(recipients, format, at, &signed)?)
}

/// `plaintext` signed by gpg with the key `fingerprint` (through
/// gpg-agent, smartcards included), uncompressed: a signed OpenPGP message.
/// The plaintext only passes through gpg's pipes.
pub fn gpg_sign(
    homedir: Option<&Path>,
    fingerprint: &str,
    plaintext: &[u8],
) -> Result<Vec<u8>, SealEventError> {
    use std::io::Write;
    let mut cmd = gpg(homedir);
    cmd.args(["--compress-algo", "none", "--local-user"])
        .arg(format!("{fingerprint}!"))
        .args(["--output", "-", "--sign"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| {
        SealEventError::Gpg(format!(
            "cannot run gpg ({e}): install GnuPG, or use --key FILE"
        ))
    })?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| SealEventError::Gpg("gpg has no stdin".into()))?;
    let input = zeroize::Zeroizing::new(plaintext.to_vec());
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let output = child
        .wait_with_output()
        .map_err(|e| SealEventError::Gpg(format!("gpg failed: {e}")))?;
    let _ = writer.join();
    if !output.status.success() || output.stdout.is_empty() {
        let said: String = String::from_utf8_lossy(&output.stderr)
            .lines()
            .rfind(|l| l.starts_with("gpg: "))
            .unwrap_or("no reason given")
            .chars()
            .take(200)
            .collect();
        return Err(SealEventError::Gpg(format!(
            "gpg could not sign ({said}); check that gpg-agent runs and the key (or smartcard) is there"
        )));
    }
    Ok(output.stdout)
}

/// gpg in batch mode, asking its agent where a terminal is.
fn gpg(homedir: Option<&Path>) -> std::process::Command {
    let mut cmd = std::process::Command::new("gpg");
    if let Some(home) = homedir {
        cmd.arg("--homedir").arg(home);
    }
    if std::env::var_os("GPG_TTY").is_none()
        && let Ok(tty) = std::fs::read_link("/proc/self/fd/0")
        && tty.starts_with("/dev/pts")
    {
        cmd.env("GPG_TTY", tty);
    }
    cmd.args(["--batch", "--no-tty", "--quiet", "--yes"]);
    cmd
}

/// One stored event as a reader sees it.
#[derive(Debug)]
pub enum Opened {
    /// Signed by its author, who may write it, and bound to this report
    /// and file name: it counts.
    Verified(Box<Event>),
    /// Shown as such, never counted; `why` says which check failed.
    Unverifiable { name: String, why: String },
}

/// Who may sign events: the maintainers, and the intake for what it records.
pub struct Signers<'a> {
    pub maintainers: &'a [Cert],
    pub intake: Option<&'a Cert>,
}

/// Opens the event stored as `name` under `report`, with every check of the
/// module documentation. Never fails: what cannot be verified says why.
pub fn open_event(
    opener: &Opener,
    report: &ReportId,
    name: &str,
    ciphertext: &[u8],
    signers: &Signers<'_>,
) -> Opened {
    let unverifiable = |why: String| Opened::Unverifiable {
        name: name.chars().take(40).collect(),
        why,
    };
    let Some(claimed) = EventId::from_file_name(name) else {
        return unverifiable("the file name is not an event name".into());
    };
    let mut certs: Vec<Cert> = signers.maintainers.to_vec();
    certs.extend(signers.intake.cloned());
    let part = format!("{report}/events/{name}");
    let (plaintext, signer) =
        match opener.open_signed(&part, ciphertext, MAX_EVENT_BYTES as u64, &certs) {
            Ok(opened) => opened,
            Err(e) => return unverifiable(reason(&e)),
        };
    let event = match Event::from_json(&plaintext) {
        Ok(e) => e,
        Err(e) => return unverifiable(e.to_string()),
    };
    if &event.report != report {
        return unverifiable(format!(
            "it belongs to report {}, not to this one (moved)",
            event.report
        ));
    }
    if event.event != claimed {
        return unverifiable("its ID is not the one its file name claims (copied)".into());
    }
    if !event.author.eq_ignore_ascii_case(&signer.to_hex()) {
        return unverifiable(format!(
            "it claims author {} but {} signed it",
            event.author, signer
        ));
    }
    let by_intake = signers.intake.is_some_and(|c| c.fingerprint() == signer);
    if event.kind.signed_by_intake() != by_intake {
        return unverifiable(format!(
            "a {} event signed by {}, which may not write it",
            event.kind.as_str(),
            if by_intake {
                "the intake key"
            } else {
                "a maintainer"
            }
        ));
    }
    Opened::Verified(Box::new(event))
}

/// Why an event could not be opened, in a few words.
fn reason(e: &RevealError) -> String {
    match e {
        RevealError::BadSignature { .. } => {
            "not signed by a maintainer certificate (or the intake key)".into()
        }
        RevealError::NoMatchingKey { .. } => "not encrypted to this key".into(),
        other => other.to_string().chars().take(200).collect(),
    }
}

/// Most ciphertext bytes one stored event may have (the padded plaintext,
/// one PKESK per maintainer subkey, and the framing).
pub const MAX_EVENT_CIPHERTEXT: usize = super::event::MAX_EVENT_BYTES + 64 * 1024;

/// What the intake checks of an event it cannot read: one or more
/// public-key encrypted session keys, then one encrypted, integrity
/// protected data packet, and nothing else (no password-encrypted session
/// key, no plaintext packet, nothing after the encrypted data).
pub fn check_shape(ciphertext: &[u8]) -> Result<(), String> {
    use openpgp::Packet;
    use openpgp::parse::{PacketParserResult, Parse};
    if ciphertext.len() > MAX_EVENT_CIPHERTEXT {
        return Err(format!(
            "the event is larger than {MAX_EVENT_CIPHERTEXT} bytes"
        ));
    }
    let not_event = |why: &str| Err(format!("the body is not an encrypted event: {why}"));
    let mut ppr = match openpgp::parse::PacketParser::from_bytes(ciphertext) {
        Ok(p) => p,
        Err(_) => return not_event("not OpenPGP data"),
    };
    let (mut pkesks, mut sealed) = (0usize, false);
    while let PacketParserResult::Some(pp) = ppr {
        if pp.recursion_depth() > 0 {
            return not_event("packets outside the encryption");
        }
        match &pp.packet {
            Packet::PKESK(_) if !sealed => pkesks += 1,
            Packet::SEIP(_) if pkesks > 0 && !sealed => sealed = true,
            Packet::SKESK(_) => return not_event("a password-encrypted session key"),
            _ => return not_event("an unexpected packet"),
        }
        ppr = match pp.next() {
            Ok((_, next)) => next,
            Err(_) => return not_event("damaged packet framing"),
        };
    }
    if let PacketParserResult::EOF(eof) = &ppr
        && eof.is_message().is_err()
    {
        return not_event("not an OpenPGP message");
    }
    if !sealed {
        return not_event("no encrypted data");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use openpgp::cert::prelude::*;
    use openpgp::serialize::stream::{Encryptor, LiteralWriter, Message};
    use std::io::Write;

    fn encrypted(to_password: bool) -> Vec<u8> {
        let (cert, _) = CertBuilder::general_purpose(Some("m"))
            .set_cipher_suite(CipherSuite::Cv25519)
            .generate()
            .unwrap();
        let policy = StandardPolicy::new();
        let mut out = Vec::new();
        {
            let message = Message::new(&mut out);
            let encryptor = if to_password {
                Encryptor::with_passwords(message, Some("pw"))
            } else {
                let keys: Vec<_> = cert
                    .keys()
                    .with_policy(&policy, None)
                    .for_storage_encryption()
                    .collect();
                Encryptor::for_recipients(message, keys)
            };
            let message = encryptor.build().unwrap();
            let mut w = LiteralWriter::new(message).build().unwrap();
            w.write_all(b"event").unwrap();
            w.finalize().unwrap();
        }
        out
    }

    #[test]
    fn only_public_key_encrypted_messages_pass_as_events() {
        let good = encrypted(false);
        assert_eq!(check_shape(&good), Ok(()));
        let password = encrypted(true);
        assert!(check_shape(&password).unwrap_err().contains("password"));
        let mut trailing = good.clone();
        trailing.extend_from_slice(&good);
        assert!(check_shape(&trailing).is_err());
        assert!(check_shape(b"not openpgp at all").is_err());
        assert!(check_shape(&good[..good.len() / 2]).is_err(), "truncated");
        // A plaintext message (a literal packet) is not an encrypted event.
        let mut plain = Vec::new();
        {
            let mut w = LiteralWriter::new(Message::new(&mut plain))
                .build()
                .unwrap();
            w.write_all(b"CANARY").unwrap();
            w.finalize().unwrap();
        }
        assert!(check_shape(&plain).is_err());
        assert!(check_shape(&vec![0u8; MAX_EVENT_CIPHERTEXT + 1]).is_err());
    }
}
