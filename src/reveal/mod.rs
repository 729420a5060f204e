//! The maintainer side (README: "Commands"): `decrypt`, `list`, `fetch` and fetch tokens.
//!
//! Everything here runs on a maintainer's own machine, the only place where
//! plaintext may exist:
//!
//! - [`keysource`]: secret keys from a file (passphrase from a file or the
//!   terminal) or the user's gpg-agent, and the pinned intake signer.
//! - [`decrypt`]: one report into `OUT/<ID>/`, all or nothing.
//! - [`files`]: the files reporters sent with follow-up messages, checked
//!   against their verified events, into a directory, all or nothing.
//! - [`names`]: safe, unique file names for untrusted attachment names.
//! - [`render`]: the inert `report.md` rendering of a manifest.
//! - [`list`]: the urgency-sorted table (or JSON) of a store's reports.
//! - [`token`]: fetch tokens and the hash the server keeps.
//! - [`fetch`]: downloads sealed reports (ciphertext only) into a local store.
//! - [`profile`]: `maintainer.toml`, the defaults of a maintainer's commands.

pub mod decrypt;
pub mod fetch;
pub mod files;
pub mod keysource;
pub mod list;
pub mod names;
pub mod profile;
pub mod render;
pub mod token;

use std::path::{Path, PathBuf};

pub use decrypt::{DecryptArgs, Decrypted, decrypt};
pub use fetch::{FetchArgs, FetchSummary, fetch};
pub use keysource::{KeyArgs, SignerArgs};
pub use list::{ListArgs, ListRow, list};
pub use token::{NewToken, new_token, token_sha256};

use crate::seal::RevealError;
use crate::store::StoreError;

/// Why a maintainer command failed. Messages say what to do next; none
/// carries plaintext.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The command line is incomplete or contradictory (exit code 2).
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Reveal(#[from] RevealError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Keys(#[from] crate::keys::KeyError),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cannot write {path}: {source}; check that the directory is writable and has space (nothing was left behind)"
    )]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} already exists: decrypt never overwrites; remove it or choose another --out")]
    Exists { path: PathBuf },
    #[error("{0} is not a report ID (like K7Q3M-2XDA9-TF4BC-1ZP0R) nor a report directory")]
    NotAReport(String),
    #[error(
        "the signer certificate {path} is unusable: {reason}; get it with `embargo keys signing` or from the intake's /signing-key.asc"
    )]
    Signer { path: PathBuf, reason: String },
    #[error(
        "the server refused the fetch token ({status}): check --token-file, and ask the intake admin to add its token_sha256 line to [maintainers] (nothing was written)"
    )]
    Unauthorized { status: u16 },
    #[error(
        "{path} is a symbolic link or not what embargo made there: embargo never follows links inside a store; remove it (nothing outside was touched) and run again"
    )]
    Unsafe { path: PathBuf },
    #[error("fetching from {url} failed: {detail}")]
    Fetch { url: String, detail: String },
    #[error("the server sent something embargo does not accept ({0}); nothing from it was stored")]
    BadListing(String),
    #[error(
        "follow-up file files/{file} of report {report} (reporter message {event}) {why}, so nothing was written: remove reports/{report}/files/{file} from the store and run `embargo fetch` to download it again; if it stays so, the intake's copy was modified"
    )]
    FollowUpFile {
        report: crate::id::ReportId,
        event: crate::case::EventId,
        file: String,
        /// What is wrong with it, e.g. "is damaged or was tampered with (…)".
        why: String,
    },
}

impl Error {
    /// The process exit code for this error: 2 for usage, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => 2,
            _ => 1,
        }
    }
}

/// Where `embargo fetch` saves the intake's `/keys.asc`, in a store.
pub const SAVED_KEYS: &str = "intake/keys";
/// Where `embargo fetch` saves the intake's `[policy]` (public: the form
/// shows it), inside the store root.
pub const SAVED_POLICY: &str = "intake/policy.json";

/// The `[policy]` `embargo fetch` saved from the intake into `store_root`,
/// if any (and readable): what deadlines fall back to for reports sealed
/// before the manifest carried its promises.
pub fn saved_policy(store_root: &std::path::Path) -> Option<crate::config::Policy> {
    let bytes = std::fs::read(store_root.join(SAVED_POLICY)).ok()?;
    serde_json::from_slice::<crate::seal::manifest::SealedPolicy>(&bytes)
        .ok()
        .map(|p| p.policy())
}

/// The maintainers' certificates, which case events are sealed to and
/// verified against: the intake's `/keys.asc` that `fetch` saved in the
/// store, else the intake configuration's `keys_dir`; `None` without either.
pub fn maintainer_keyring(
    store_root: &Path,
    keys_dir: Option<&Path>,
    clock: crate::clock::Clock,
) -> Result<Option<crate::keys::Keyring>, Error> {
    let saved = store_root.join(SAVED_KEYS);
    let dir = if saved.is_dir() {
        saved
    } else {
        match keys_dir {
            Some(dir) => dir.to_path_buf(),
            None => return Ok(None),
        }
    };
    Ok(Some(crate::keys::Keyring::load(&dir, clock)?))
}

/// The store root a command works on: `--store`, else the configuration's.
pub fn store_root(store: Option<&Path>, config_store: Option<&Path>) -> Result<PathBuf, Error> {
    store
        .or(config_store)
        .map(Path::to_path_buf)
        .ok_or_else(|| {
            Error::Usage(
                "no store given: use --store DIR (the directory holding reports/) or -c FILE"
                    .into(),
            )
        })
}

/// How far a long decrypt or fetch got. The library only reports; the
/// command line decides whether and how to show it (a bar on a terminal).
pub trait Progress: Sync {
    /// The work is `total` bytes.
    fn start(&self, _total: u64) {}
    /// What is being worked on now (a file or part name).
    fn working_on(&self, _what: &str) {}
    /// `bytes` more are done.
    fn advance(&self, _bytes: u64) {}
    /// `bytes` counted before must be done again (a download restarted).
    fn rewind(&self, _bytes: u64) {}
    /// The work ended, done or not.
    fn finish(&self) {}
}

/// Progress nobody sees.
pub struct Quiet;

impl Progress for Quiet {}
