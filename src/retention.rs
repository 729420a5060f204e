//! `[retention]`: how long sealed reports stay on the server. Reports are
//! deleted whole with [`Store::remove`] (renamed out of `reports/`, then
//! deleted), and logged by ID only.
//!
//! **Age.** The manifest inside a report holds `received_at`, but it is
//! encrypted and the server cannot read it. A report's age is therefore the
//! modification time of its `manifest.pgp`: the manifest is written last,
//! when the report is sealed, and never rewritten. Copies that do not keep
//! modification times (a restore with plain `cp`) make reports look newer,
//! so they are kept longer, never deleted early. `rsync -a`, `cp -a` and
//! `tar` keep them.
//!
//! **Fetched.** Serving bytes proves nothing: a `Range` request, a client
//! that stops reading or a proxy that buffers all receive "the last byte".
//! So a report counts as fetched only when a maintainer's `embargo fetch`
//! confirms, after storing and fsyncing its local copy, the SHA-256 of every
//! part's ciphertext (`POST /api/v1/sealed/<ID>/fetched`, see
//! [`parse_confirmation`]) and [`confirm_fetched`] finds the same hashes in
//! the store. Only then, with `delete_after_fetch`, is every part marked
//! ([`mark_fetched`], an empty file `state_dir/fetch-confirmed/<ID>/<part>`); a
//! report is deleted once every one of its parts is marked.
//!
//! **Open cases.** A report is a case, and retention never deletes a case
//! that is not closed: with `max_age` or `delete_after_fetch`, only a
//! report whose signed case status (`status.pgp`, sent by a maintainer's
//! `embargo case close`, see [`crate::case::status`]) says `closed` is
//! deleted, whole with its events. `max_age` counts from the later of its
//! arrival and its closing. A report nobody has closed stays, however old.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::Retention;
use crate::id::ReportId;
use crate::metrics::Metrics;
use crate::store::{Store, StoreError, is_part_name};

/// The directory under `state_dir` holding fetched-markers (written only
/// for confirmed fetches).
pub const FETCHED_DIR: &str = "fetch-confirmed";
/// Where earlier versions kept markers for parts merely served, which
/// proved nothing: never read, removed by the next pass.
const LEGACY_FETCHED_DIR: &str = "fetched";
/// The directory of a report that holds its case's events.
pub use crate::store::EVENTS_DIR;
/// Largest fetch confirmation accepted: derived from the format, not a
/// tunable (at most 1000 parts, each entry `"NNN.pgp":"<64 hex>",` well
/// under 128 bytes).
pub const MAX_CONFIRMATION_BYTES: usize = 1000 * 128;

/// What can go wrong while applying retention.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RetentionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the fetch confirmation does not match the stored report: {0}")]
    Mismatch(String),
    #[error(
        "cannot record or read fetched reports in {path}: {source}; check that state_dir is writable by the user running embargo"
    )]
    Marks {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// What a maintainer's `embargo fetch` says it stored: the SHA-256 of each
/// part's ciphertext, by part name.
#[derive(Debug, PartialEq, Eq)]
pub struct Confirmation {
    pub parts: BTreeMap<String, [u8; 32]>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfirmation {
    parts: BTreeMap<String, String>,
}

/// Parses the body of `POST /api/v1/sealed/<ID>/fetched`:
/// `{"parts": {"manifest.pgp": "<sha256 hex>", "001.pgp": "…"}}`. The
/// error says what is wrong without echoing more than a short, cleaned name.
pub fn parse_confirmation(body: &[u8]) -> Result<Confirmation, String> {
    if body.len() > MAX_CONFIRMATION_BYTES {
        return Err(format!(
            "the confirmation is larger than {MAX_CONFIRMATION_BYTES} bytes"
        ));
    }
    let raw: RawConfirmation = serde_json::from_slice(body).map_err(|e| {
        format!(
            "the body is not {{\"parts\": {{\"<part>\": \"<sha256 hex>\"}}}} (line {}, column {})",
            e.line(),
            e.column()
        )
    })?;
    let mut parts = BTreeMap::new();
    for (name, hash) in raw.parts {
        let shown: String = name.chars().filter(|c| !c.is_control()).take(40).collect();
        if !is_part_name(&name) {
            return Err(format!("{shown:?} is not a part name"));
        }
        let mut digest = [0u8; 32];
        if hash.len() != 64 || hex::decode_to_slice(&hash, &mut digest).is_err() {
            return Err(format!("the SHA-256 of {shown} is not 64 hex digits"));
        }
        parts.insert(name, digest);
    }
    if parts.is_empty() {
        return Err("the confirmation names no part".into());
    }
    Ok(Confirmation { parts })
}

/// Checks a maintainer's confirmation against the ciphertext in the store
/// (every part, no other, each with the same SHA-256) and, when `record`,
/// marks every part fetched. Nothing is marked unless all of it matches.
pub fn confirm_fetched<S: Store + ?Sized>(
    store: &S,
    state_dir: &Path,
    id: &ReportId,
    confirmation: &Confirmation,
    record: bool,
) -> Result<(), RetentionError> {
    let parts = store.parts(id)?;
    let stored: Vec<&str> = parts.iter().map(|p| p.name.as_str()).collect();
    let confirmed: Vec<&str> = confirmation.parts.keys().map(String::as_str).collect();
    let mut sorted = stored.clone();
    sorted.sort_unstable();
    if sorted != confirmed {
        return Err(RetentionError::Mismatch(format!(
            "the report has parts {}, the confirmation names {}",
            sorted.join(", "),
            confirmed.join(", ")
        )));
    }
    for part in &parts {
        let mut reader = store.open_part(id, &part.name)?;
        let mut hash = sha2::Sha256::default();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = reader.read(&mut buf).map_err(|source| StoreError::Io {
                path: format!("{id}/{}", part.name),
                source,
            })?;
            if n == 0 {
                break;
            }
            sha2::Digest::update(&mut hash, &buf[..n]);
        }
        let digest: [u8; 32] = sha2::Digest::finalize(hash).into();
        if confirmation.parts.get(&part.name) != Some(&digest) {
            return Err(RetentionError::Mismatch(format!(
                "the SHA-256 of {} differs from the stored ciphertext",
                part.name
            )));
        }
    }
    if record {
        for part in &parts {
            mark_fetched(state_dir, id, &part.name)?;
        }
    }
    Ok(())
}

/// Records that `part` of report `id` was fetched and confirmed by a
/// maintainer (called by [`confirm_fetched`] once the hashes matched).
/// Cheap and idempotent; the part name must be a valid one.
pub fn mark_fetched(state_dir: &Path, id: &ReportId, part: &str) -> Result<(), RetentionError> {
    let dir = state_dir.join(FETCHED_DIR).join(id.as_str());
    let err = |source| RetentionError::Marks {
        path: dir.clone(),
        source,
    };
    if !is_part_name(part) {
        return Err(err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a part name",
        )));
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(err)?;
    match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dir.join(part))
    {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(err(e)),
        _ => Ok(()),
    }
}

/// Whether every part of report `id` (as the store lists them now) was
/// confirmed fetched.
pub fn is_fetched<S: Store + ?Sized>(
    store: &S,
    state_dir: &Path,
    id: &ReportId,
) -> Result<bool, RetentionError> {
    let dir = state_dir.join(FETCHED_DIR).join(id.as_str());
    if !dir.is_dir() {
        return Ok(false);
    }
    let parts = store.parts(id)?;
    Ok(!parts.is_empty() && parts.iter().all(|p| dir.join(&p.name).is_file()))
}

/// Applies `rules` once at `now`: deletes every report older than `max_age`
/// and, with `delete_after_fetch`, every report whose parts were all
/// confirmed fetched; only closed cases, never an open one. Returns the IDs deleted. A report that disappears meanwhile is
/// skipped; any other store error stops the pass (it runs again later).
pub fn apply<S>(
    store: &S,
    state_dir: &Path,
    rules: &Retention,
    now: SystemTime,
) -> Result<Vec<ReportId>, RetentionError>
where
    S: Store + ?Sized,
{
    let mut deleted = Vec::new();
    if rules.max_age.is_none() && !rules.delete_after_fetch {
        return Ok(deleted);
    }
    for id in store.list()? {
        let Some(closed_at) = closed_since(store, &id) else {
            continue;
        };
        let too_old = rules.max_age.is_some_and(|max| {
            store
                .arrived_at(&id)
                .map(|arrived| arrived.max(closed_at))
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age > max.0)
        });
        let fetched = rules.delete_after_fetch
            && match is_fetched(store, state_dir, &id) {
                Ok(f) => f,
                Err(RetentionError::Store(StoreError::NotFound(_))) => continue,
                Err(e) => return Err(e),
            };
        if !(too_old || fetched) {
            continue;
        }
        match store.remove(&id) {
            Ok(()) => {
                let reason = if too_old {
                    "max_age"
                } else {
                    "delete_after_fetch"
                };
                tracing::info!(id = %id, reason, "report deleted by retention");
                deleted.push(id);
            }
            Err(StoreError::NotFound(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    forget_marks(store, state_dir)?;
    if !deleted.is_empty() {
        let exists = |id: &ReportId| store.contains(id).unwrap_or(true);
        if let Err(e) = crate::reply::desk::forget_missing_in(state_dir, &exists) {
            tracing::warn!("cannot forget the reply codes of deleted reports: {e}");
        }
    }
    Ok(deleted)
}

/// When the case of report `id` was closed, if its stored status says it
/// is; `None` (keep it) for an open case, a case without a status, or a
/// status that cannot be read.
pub fn closed_since<S: Store + ?Sized>(store: &S, id: &ReportId) -> Option<SystemTime> {
    let signed = store.status(id).ok()??;
    let status = crate::case::status::read_stored(&signed, id)?;
    (status.state == crate::case::Stage::Closed)
        .then(|| status.time())
        .flatten()
}

/// Removes fetched-markers of reports no longer in the store, and the
/// markers of earlier versions.
fn forget_marks<S: Store + ?Sized>(store: &S, state_dir: &Path) -> Result<(), RetentionError> {
    let legacy = state_dir.join(LEGACY_FETCHED_DIR);
    match fs::remove_dir_all(&legacy) {
        Ok(()) => tracing::info!(
            "removed {}: served parts no longer count as fetched, only confirmed ones",
            legacy.display()
        ),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(RetentionError::Marks {
                path: legacy,
                source,
            });
        }
    }
    let root = state_dir.join(FETCHED_DIR);
    let entries = match fs::read_dir(&root) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(RetentionError::Marks { path: root, source }),
    };
    for entry in entries.flatten() {
        let known = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<ReportId>().ok())
            .map(|id| store.contains(&id))
            .transpose()?
            .unwrap_or(false);
        if !known {
            let path = entry.path();
            fs::remove_dir_all(&path).map_err(|source| RetentionError::Marks { path, source })?;
        }
    }
    Ok(())
}

/// The periodic task for `embargo serve`: applies `rules` now and every
/// `rules.interval` until `shutdown` is cancelled. `None` when `[retention]`
/// keeps everything (the default).
pub fn spawn(
    store: Arc<dyn Store>,
    state_dir: PathBuf,
    rules: Retention,
    clock: Clock,
    metrics: Option<Arc<Metrics>>,
    shutdown: CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    if rules.max_age.is_none() && !rules.delete_after_fetch {
        return None;
    }
    Some(tokio::spawn(async move {
        loop {
            let (store, state_dir, rules2) = (store.clone(), state_dir.clone(), rules.clone());
            let now = clock.now();
            match tokio::task::spawn_blocking(move || apply(&*store, &state_dir, &rules2, now))
                .await
            {
                Ok(Ok(deleted)) => {
                    if let Some(m) = &metrics {
                        m.retention_deleted(deleted.len() as u64);
                    }
                }
                Ok(Err(e)) => {
                    tracing::error!("retention pass failed, retrying at the next interval: {e}")
                }
                Err(e) => tracing::error!("retention pass failed: {e}"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(rules.interval.0) => {}
            }
        }
    }))
}
