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
//! **Fetched.** With `delete_after_fetch`, the fetch route records every
//! part it served completely with [`mark_fetched`] as an empty file
//! `state_dir/fetched/<ID>/<part>`; a report is deleted once every one of
//! its parts is marked, so an interrupted download never loses a report.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::Retention;
use crate::id::ReportId;
use crate::metrics::Metrics;
use crate::store::{FsStore, Store, StoreError, is_part_name};

/// The directory under `state_dir` holding fetched-markers.
pub const FETCHED_DIR: &str = "fetched";

/// What can go wrong while applying retention.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RetentionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "cannot record or read fetched reports in {path}: {source}; check that state_dir is writable by the user running embargo"
    )]
    Marks {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// When a report arrived, as far as the server can tell without decrypting.
pub trait ArrivalTimes {
    /// The arrival time of complete report `id`; `None` when unknown (such
    /// a report is never deleted for its age).
    fn arrived_at(&self, id: &ReportId) -> Option<SystemTime>;
}

impl ArrivalTimes for FsStore {
    fn arrived_at(&self, id: &ReportId) -> Option<SystemTime> {
        fs::metadata(self.report_dir(id).join("manifest.pgp"))
            .ok()?
            .modified()
            .ok()
    }
}

/// Records that `part` of report `id` was served completely to a
/// maintainer (call it from the fetch route after the last byte of a part
/// was sent). Cheap and idempotent; the part name must be a valid one.
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
/// served completely.
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
/// fetched. Returns the IDs deleted. A report that disappears meanwhile is
/// skipped; any other store error stops the pass (it runs again later).
pub fn apply<S>(
    store: &S,
    state_dir: &Path,
    rules: &Retention,
    now: SystemTime,
) -> Result<Vec<ReportId>, RetentionError>
where
    S: Store + ArrivalTimes + ?Sized,
{
    let mut deleted = Vec::new();
    if rules.max_age.is_none() && !rules.delete_after_fetch {
        return Ok(deleted);
    }
    for id in store.list()? {
        let too_old = rules.max_age.is_some_and(|max| {
            store
                .arrived_at(&id)
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
    Ok(deleted)
}

/// Removes fetched-markers of reports no longer in the store.
fn forget_marks<S: Store + ?Sized>(store: &S, state_dir: &Path) -> Result<(), RetentionError> {
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
    store: Arc<FsStore>,
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
