//! Where the maintainer's secret key comes from, and which intake key the
//! manifests must be signed by.

use std::path::{Path, PathBuf};

use sequoia_openpgp as openpgp;

use openpgp::Cert;
use openpgp::crypto::Password;
use openpgp::parse::Parse;
use zeroize::Zeroizing;

use super::Error;
use crate::seal::{RevealError, SecretSource};

/// How many times a passphrase is asked on the terminal before giving up.
const PROMPT_ATTEMPTS: usize = 3;
/// The file in an intake's `state_dir` holding its signing key.
const SIGNING_KEY_FILE: &str = "signing-key.pgp";

/// The secret key options of `decrypt` and `list`.
#[derive(Clone, Debug, Default)]
pub struct KeyArgs {
    /// A transferable secret key file (armored or binary).
    pub key: Option<PathBuf>,
    /// The file holding the passphrase of `key` (first line).
    pub passphrase_file: Option<PathBuf>,
    /// Use the user's gpg and gpg-agent (respecting `GNUPGHOME`).
    pub gpg: bool,
    /// Asks a person for the passphrase of a locked `key`, when one is there
    /// to answer (the command line supplies it for a terminal); without it a
    /// locked key fails with a clear error.
    pub ask: Option<AskPassphrase>,
}

/// Asks for the passphrase of the key in the file given, `again` after a
/// wrong one.
pub type AskPassphrase = fn(key_file: &Path, again: bool) -> std::io::Result<Zeroizing<String>>;

/// How the intake's signing certificate is found.
#[derive(Clone, Debug, Default)]
pub struct SignerArgs {
    /// `--signer FILE`: an armored or binary certificate.
    pub signer: Option<PathBuf>,
    /// The `state_dir` of a configuration given with `-c`.
    pub state_dir: Option<PathBuf>,
    /// The store root: `embargo fetch` pins the intake's signing
    /// certificate there (`intake/signing-key.asc`).
    pub store: Option<PathBuf>,
}

/// Where `embargo fetch` pins the intake's signing certificate, in a store.
pub const PINNED_SIGNER: &str = "intake/signing-key.asc";

impl KeyArgs {
    /// Loads the secret source, asking for a passphrase on the terminal
    /// when the key is locked and no `--passphrase-file` was given.
    pub fn open(&self) -> Result<SecretSource, Error> {
        let path = match (&self.key, self.gpg) {
            (None, true) if self.passphrase_file.is_some() => {
                return Err(Error::Usage(
                    "--passphrase-file goes with --key; with --gpg, gpg-agent asks for it".into(),
                ));
            }
            (None, true) => return Ok(SecretSource::Gpg { homedir: None }),
            (Some(path), false) => path,
            _ => {
                return Err(Error::Usage(
                    "give exactly one of --key FILE and --gpg".into(),
                ));
            }
        };
        let bytes = Zeroizing::new(std::fs::read(path).map_err(|source| Error::Read {
            path: path.clone(),
            source,
        })?);
        if let Some(file) = &self.passphrase_file {
            let pass = read_passphrase_file(file)?;
            return Ok(SecretSource::from_key_bytes(&bytes, Some(&pass))?);
        }
        if !SecretSource::key_needs_passphrase(&bytes) {
            return Ok(SecretSource::from_key_bytes(&bytes, None)?);
        }
        // Only ask when a person is there to answer: scripts get a clear error.
        let Some(ask) = self.ask else {
            return Ok(SecretSource::from_key_bytes(&bytes, None)?);
        };
        let mut last = None;
        for attempt in 0..PROMPT_ATTEMPTS {
            let typed = ask(path, attempt > 0).map_err(|source| Error::Read {
                path: PathBuf::from("/dev/tty"),
                source,
            })?;
            let pass = Password::from(typed.as_bytes());
            match SecretSource::from_key_bytes(&bytes, Some(&pass)) {
                Ok(source) => return Ok(source),
                Err(e @ RevealError::WrongPassphrase(_)) => last = Some(e),
                Err(e) => return Err(e.into()),
            }
        }
        Err(last
            .map(Error::from)
            .unwrap_or_else(|| Error::Usage("no passphrase given".into())))
    }
}

/// Reads a passphrase file: its first line, without the line ending.
fn read_passphrase_file(path: &PathBuf) -> Result<Password, Error> {
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|source| Error::Read {
        path: path.clone(),
        source,
    })?);
    let line = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    Ok(Password::from(line))
}

impl SignerArgs {
    /// The pinned signing certificate: `--signer`, else the configured
    /// intake's own key, else the one `fetch` pinned in the store; `None`
    /// when there is none (the caller warns).
    pub fn resolve(&self) -> Result<Option<Cert>, Error> {
        let pinned = self
            .store
            .as_ref()
            .map(|s| s.join(PINNED_SIGNER))
            .filter(|p| self.signer.is_none() && self.state_dir.is_none() && p.is_file());
        if let Some(path) = self.signer.as_ref().or(pinned.as_ref()) {
            let bytes = std::fs::read(path).map_err(|source| Error::Read {
                path: path.clone(),
                source,
            })?;
            let cert = Cert::from_bytes(&bytes).map_err(|e| Error::Signer {
                path: path.clone(),
                reason: format!("not an OpenPGP certificate ({e})"),
            })?;
            return Ok(Some(cert.strip_secret_key_material()));
        }
        let Some(state_dir) = &self.state_dir else {
            return Ok(None);
        };
        // Only an existing intake key counts: a maintainer's config must not
        // make one up (that would "verify" against the wrong key).
        if !state_dir.join(SIGNING_KEY_FILE).is_file() {
            return Ok(None);
        }
        // Read only: verifying must not create, tighten or refuse the
        // intake's other state files (that is `embargo serve`'s business).
        let path = state_dir.join(SIGNING_KEY_FILE);
        let bytes = Zeroizing::new(std::fs::read(&path).map_err(|source| Error::Read {
            path: path.clone(),
            source,
        })?);
        let cert = Cert::from_bytes(&bytes[..]).map_err(|e| Error::Signer {
            path: path.clone(),
            reason: format!("not an OpenPGP key ({e})"),
        })?;
        Ok(Some(cert.strip_secret_key_material()))
    }
}
