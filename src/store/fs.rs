//! The filesystem store: `ROOT/reports/<ID>/`, built in
//! `ROOT/reports/.staging/<ID>/` and renamed into place.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use super::writeback::Writeback;
use super::{
    EVENTS_DIR, FILES_DIR, MAX_STATUS_BYTES, PartInfo, PartReader, PartSink, STATUS_FILE, Staging,
    Store, StoreError, is_event_name, is_part_name,
};
use crate::id::ReportId;

const STAGING: &str = ".staging";
const TRASH: &str = ".trash";
/// Taken shared while a staging directory is created and locked, and
/// exclusively by the sweep that removes what crashed writers left.
const SWEEP_LOCK: &str = ".sweep.lock";
const WRITE_BUFFER: usize = 256 * 1024;

/// Sealed reports as directories under `ROOT/reports/`.
#[derive(Clone, Debug)]
pub struct FsStore {
    reports: PathBuf,
    renames: Arc<GroupSync>,
    /// Group commit of small parts: one `syncfs` before the renames.
    staged: Arc<GroupSync>,
    /// Serializes case-status replacements (check, then write).
    statuses: Arc<std::sync::Mutex<()>>,
}

/// Group commit for the directory syncs that make renames durable. Every
/// commit renames its report into `reports/` and must then fsync
/// `reports/` and `.staging/` before it may return; one such pair of
/// fsyncs covers every rename made before it began. So a committer that
/// finds a sync already running waits for the next one, which then covers
/// all of the waiting renames at once: under load, a few syncs serve many
/// reports, and no commit returns before its own rename is durable.
#[derive(Debug, Default)]
struct GroupSync {
    state: Mutex<SyncState>,
    done: Condvar,
}

#[derive(Debug, Default)]
struct SyncState {
    /// Renames counted so far; each committer takes the next number.
    renamed: u64,
    /// Every rename numbered up to this one is durable.
    durable: u64,
    /// A sync is running.
    syncing: bool,
}

impl GroupSync {
    /// Returns once a sync of `dirs` that began after this call has
    /// finished (this thread's, or another's), or with the error of this
    /// thread's own attempt.
    fn sync_after_rename(&self, dirs: [&Path; 2]) -> io::Result<()> {
        self.sync_after(|| dirs.iter().try_for_each(|d| sync_dir(d)))
    }

    /// Returns once a `sync` that began after this call has finished
    /// (this thread's or another's), or with the error of this thread's
    /// own attempt.
    fn sync_after(&self, sync: impl Fn() -> io::Result<()>) -> io::Result<()> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.renamed += 1;
        let mine = state.renamed;
        loop {
            if state.durable >= mine {
                return Ok(());
            }
            if !state.syncing {
                state.syncing = true;
                let covers = state.renamed;
                drop(state);
                let result = sync();
                state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                state.syncing = false;
                if result.is_ok() {
                    state.durable = state.durable.max(covers);
                }
                self.done.notify_all();
                // On failure the waiters try for themselves.
                result?;
                continue;
            }
            state = self.done.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn mkdir_private(path: &Path) -> io::Result<()> {
    match fs::DirBuilder::new().mode(0o700).create(path) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        other => other,
    }
}

/// Temporary event files older than this were left by a killed writer.
const STALE_EVENT_TEMP: std::time::Duration = std::time::Duration::from_secs(3600);

/// Removes what killed event writers left in `dir` (never a fresh one,
/// which a writer may be about to link into place).
fn remove_stale_event_temps(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let stale = entry
            .metadata()
            .ok()
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > STALE_EVENT_TEMP);
        if name.starts_with('.') && name.ends_with(".tmp") && stale {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Whether the file at `path` holds exactly `bytes`; `None` when there is
/// no such file (or it cannot be read, which the caller's write reports).
/// A new private (0600) temporary file beside `name` in `dir`, filled by
/// `fill` and fsynced; removed again when anything fails.
fn write_temp(
    dir: &Path,
    name: &str,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<PathBuf> {
    let tmp = dir.join(format!(".{name}.{:08x}.tmp", rand::random::<u32>()));
    let written = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        fill(&mut f)?;
        f.sync_all()
    })();
    match written {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Replaces `dir/name` with what `fill` writes, atomically and durably:
/// a temporary file, fsynced, renamed into place, the directory fsynced.
fn replace_durably(
    dir: &Path,
    name: &str,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> Result<(), StoreError> {
    let path = dir.join(name);
    let tmp = write_temp(dir, name, fill).map_err(io_err(&path))?;
    if let Err(e) = fs::rename(&tmp, &path) {
        let _ = fs::remove_file(&tmp);
        return Err(io_err(&path)(e));
    }
    sync_dir(dir).map_err(io_err(dir))
}

/// Opens a regular file for reading, never through a symbolic link.
fn open_regular(path: &Path) -> io::Result<File> {
    match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
    {
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            Err(io::Error::new(io::ErrorKind::NotFound, "a symbolic link"))
        }
        other => other,
    }
}

fn same_bytes(path: &Path, bytes: &[u8]) -> Option<bool> {
    let meta = fs::symlink_metadata(path).ok()?;
    if !meta.is_file() {
        return Some(false);
    }
    if meta.len() != bytes.len() as u64 {
        return Some(false);
    }
    fs::read(path).ok().map(|have| have == bytes)
}

/// The regular files of `dir` with event-style names (`<32 hex>.pgp`),
/// sorted, with their sizes; none when `dir` does not exist.
fn list_named(dir: &Path) -> Result<Vec<PartInfo>, StoreError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(dir)(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(meta) = fs::symlink_metadata(entry.path()) else {
            continue;
        };
        if is_event_name(&name) && meta.is_file() {
            out.push(PartInfo {
                name,
                size: meta.len(),
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The last component of a path `part_path` made (always a plain name).
fn leaf(path: &Path) -> &str {
    path.file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
}

fn sync_dir(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

impl FsStore {
    /// Opens (creating if needed) the store rooted at `root`.
    pub fn open(root: &Path) -> Result<FsStore, StoreError> {
        let reports = root.join("reports");
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&reports)
            .map_err(io_err(&reports))?;
        for sub in [STAGING, TRASH] {
            mkdir_private(&reports.join(sub)).map_err(io_err(&reports))?;
        }
        Ok(FsStore {
            reports,
            renames: Arc::default(),
            staged: Arc::default(),
            statuses: Arc::default(),
        })
    }

    /// Opens an existing store for reading only (`decrypt`, `list`): creates
    /// nothing, recovers nothing, so a store that is read-only to the
    /// maintainer (or a copy that must stay as fetched) is left exactly as
    /// it is. Writing through it fails where `reports/.staging` is missing.
    pub fn open_read_only(root: &Path) -> Result<FsStore, StoreError> {
        let reports = root.join("reports");
        match fs::metadata(&reports) {
            Ok(meta) if meta.is_dir() => Ok(FsStore {
                reports,
                renames: Arc::default(),
                staged: Arc::default(),
                statuses: Arc::default(),
            }),
            Ok(_) => Err(StoreError::Io {
                path: reports.display().to_string(),
                source: io::Error::other("not a directory"),
            }),
            Err(e) => Err(io_err(&reports)(e)),
        }
    }

    /// Opens the store at start-up and removes what an interrupted run left
    /// in staging (never a report that another process is still writing).
    pub fn open_and_recover(root: &Path) -> Result<FsStore, StoreError> {
        let store = FsStore::open(root)?;
        let removed = store.remove_stale_staging()?;
        if removed > 0 {
            tracing::info!(
                removed,
                "removed incomplete reports left by an interrupted run"
            );
        }
        Ok(store)
    }

    /// The directory of a complete report.
    pub fn report_dir(&self, id: &ReportId) -> PathBuf {
        self.reports.join(id.as_str())
    }

    /// The directory and path of part, event or file (`files/NAME`)
    /// `name` of complete report `id`.
    fn part_path(&self, id: &ReportId, name: &str) -> Result<(PathBuf, PathBuf), StoreError> {
        let dir = self.complete(id)?;
        if is_part_name(name) {
            Ok((dir.clone(), dir.join(name)))
        } else if is_event_name(name) {
            let events = dir.join(EVENTS_DIR);
            Ok((events.clone(), events.join(name)))
        } else if let Some(file) = super::file_of_part(name) {
            let files = dir.join(FILES_DIR);
            Ok((files.clone(), files.join(file)))
        } else {
            Err(StoreError::BadPartName(name.chars().take(40).collect()))
        }
    }

    fn complete(&self, id: &ReportId) -> Result<PathBuf, StoreError> {
        let dir = self.report_dir(id);
        if dir.join("manifest.pgp").is_file() {
            Ok(dir)
        } else {
            Err(StoreError::NotFound(id.clone()))
        }
    }
}

impl Store for FsStore {
    fn stage(&self, id: &ReportId) -> Result<Box<dyn Staging>, StoreError> {
        if self.report_dir(id).exists() {
            return Err(StoreError::Exists(id.clone()));
        }
        let staging_root = self.reports.join(STAGING);
        let dir = staging_root.join(id.as_str());
        // Held shared from mkdir until our own lock is taken, so a sweep
        // (which holds it exclusively) never sees the directory unlocked.
        let sweep = self.sweep_lock()?;
        sweep.lock_shared().map_err(io_err(&staging_root))?;
        let mut created = fs::DirBuilder::new().mode(0o700).create(&dir);
        if matches!(&created, Err(e) if e.kind() == io::ErrorKind::AlreadyExists)
            && !is_locked(&dir)
        {
            // Left by an earlier attempt whose cleanup failed: nobody owns it.
            remove_dir_if_present(&dir).map_err(io_err(&dir))?;
            created = fs::DirBuilder::new().mode(0o700).create(&dir);
        }
        created.map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                StoreError::Exists(id.clone())
            } else {
                StoreError::Io {
                    path: dir.display().to_string(),
                    source: e,
                }
            }
        })?;
        // The directory itself is locked (flock), by the process writing
        // it, until the report is committed or discarded, so cleanup by
        // another process never removes a report still being written. A
        // lock file inside would have to be removed before the rename,
        // which dirties the directory and costs every report one more
        // journal commit when it is synced.
        let lock = File::open(&dir).map_err(io_err(&dir))?;
        lock.lock().map_err(io_err(&dir))?;
        drop(sweep);
        Ok(Box::new(FsStaging {
            id: id.clone(),
            dir,
            target: self.report_dir(id),
            reports: self.reports.clone(),
            renames: self.renames.clone(),
            staged: self.staged.clone(),
            _lock: lock,
            committed: false,
        }))
    }

    fn contains(&self, id: &ReportId) -> Result<bool, StoreError> {
        Ok(self.report_dir(id).join("manifest.pgp").is_file())
    }

    fn list(&self) -> Result<Vec<ReportId>, StoreError> {
        let mut ids: Vec<ReportId> = fs::read_dir(&self.reports)
            .map_err(io_err(&self.reports))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.parse::<ReportId>().ok())
            })
            // A name that parses but is not canonical (lower case) is not ours.
            .filter(|id| self.report_dir(id).join("manifest.pgp").is_file())
            .collect();
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    fn parts(&self, id: &ReportId) -> Result<Vec<PartInfo>, StoreError> {
        let dir = self.complete(id)?;
        let mut parts: Vec<PartInfo> = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let entry = entry.map_err(io_err(&dir))?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if is_part_name(&name) {
                let size = entry.metadata().map_err(io_err(&dir))?.len();
                parts.push(PartInfo { name, size });
            }
        }
        parts.sort_by(|a, b| {
            (a.name != "manifest.pgp", &a.name).cmp(&(b.name != "manifest.pgp", &b.name))
        });
        Ok(parts)
    }

    fn open_part(&self, id: &ReportId, part: &str) -> Result<Box<dyn PartReader>, StoreError> {
        if !is_part_name(part) {
            return Err(StoreError::BadPartName(part.chars().take(40).collect()));
        }
        let path = self.complete(id)?.join(part);
        match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
        {
            Ok(f) => Ok(Box::new(f)),
            // A part that is a link is no part of this report.
            Err(e)
                if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ELOOP) =>
            {
                Err(StoreError::NotFound(id.clone()))
            }
            Err(e) => Err(StoreError::Io {
                path: path.display().to_string(),
                source: e,
            }),
        }
    }

    fn remove(&self, id: &ReportId) -> Result<(), StoreError> {
        let dir = self.complete(id)?;
        // Renaming out of reports/ first makes the removal atomic for readers.
        let trash =
            self.reports
                .join(TRASH)
                .join(format!("{}-{}", id.as_str(), rand::random::<u32>()));
        fs::rename(&dir, &trash).map_err(io_err(&dir))?;
        sync_dir(&self.reports).map_err(io_err(&self.reports))?;
        remove_dir_if_present(&trash).map_err(io_err(&trash))
    }

    fn check_writable(&self) -> Result<(), StoreError> {
        let staging = self.reports.join(STAGING);
        let probe = staging.join(format!(
            ".probe-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        let result = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&probe)
            .and_then(|mut f| f.write_all(b"probe").and_then(|_| f.sync_all()));
        let _ = fs::remove_file(&probe);
        result.map_err(io_err(&staging))
    }

    fn arrived_at(&self, id: &ReportId) -> Option<std::time::SystemTime> {
        fs::metadata(self.report_dir(id).join("manifest.pgp"))
            .ok()?
            .modified()
            .ok()
    }

    fn status(&self, id: &ReportId) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.complete(id)?.join(STATUS_FILE);
        let file = match open_regular(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path)(e)),
        };
        let mut bytes = Vec::new();
        file.take(MAX_STATUS_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(io_err(&path))?;
        Ok(Some(bytes))
    }

    fn set_status(
        &self,
        id: &ReportId,
        signed: &[u8],
        replaces: &dyn Fn(Option<&[u8]>) -> bool,
    ) -> Result<bool, StoreError> {
        let _one_writer = self
            .statuses
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let current = self.status(id)?;
        if current.as_deref() == Some(signed) || !replaces(current.as_deref()) {
            return Ok(false);
        }
        replace_durably(&self.complete(id)?, STATUS_FILE, |f| f.write_all(signed))?;
        Ok(true)
    }

    fn add_event(&self, id: &ReportId, name: &str, ciphertext: &[u8]) -> Result<bool, StoreError> {
        if !is_event_name(name) {
            return Err(StoreError::BadEventName(name.chars().take(40).collect()));
        }
        let dir = self.complete(id)?.join(EVENTS_DIR);
        mkdir_private(&dir).map_err(io_err(&dir))?;
        remove_stale_event_temps(&dir);
        let target = dir.join(name);
        if let Some(same) = same_bytes(&target, ciphertext) {
            return if same {
                Ok(false)
            } else {
                Err(StoreError::EventConflict(name.to_owned()))
            };
        }
        let tmp = write_temp(&dir, name, |f| f.write_all(ciphertext)).map_err(io_err(&dir))?;
        // A hard link never replaces: two writers of one name cannot both win.
        let linked = fs::hard_link(&tmp, &target);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return match same_bytes(&target, ciphertext) {
                    Some(true) => Ok(false),
                    _ => Err(StoreError::EventConflict(name.to_owned())),
                };
            }
            Err(e) => return Err(io_err(&target)(e)),
        }
        sync_dir(&dir).map_err(io_err(&dir))?;
        Ok(true)
    }

    fn events(&self, id: &ReportId) -> Result<Vec<PartInfo>, StoreError> {
        list_named(&self.complete(id)?.join(EVENTS_DIR))
    }

    fn open_event(&self, id: &ReportId, name: &str) -> Result<Box<dyn PartReader>, StoreError> {
        if !is_event_name(name) {
            return Err(StoreError::BadEventName(name.chars().take(40).collect()));
        }
        let path = self.complete(id)?.join(EVENTS_DIR).join(name);
        match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
        {
            Ok(f) => Ok(Box::new(f)),
            Err(e)
                if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ELOOP) =>
            {
                Err(StoreError::NotFound(id.clone()))
            }
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    fn create_file(&self, id: &ReportId, name: &str) -> Result<Box<dyn PartSink>, StoreError> {
        if !is_event_name(name) {
            return Err(StoreError::BadPartName(name.chars().take(40).collect()));
        }
        let dir = self.complete(id)?.join(FILES_DIR);
        mkdir_private(&dir).map_err(io_err(&dir))?;
        remove_stale_event_temps(&dir);
        let tmp = dir.join(format!(".{name}.{:08x}.tmp", rand::random::<u32>()));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_err(&tmp))?;
        Ok(Box::new(FsFile {
            part: Some(FsPart {
                out: BufWriter::with_capacity(WRITE_BUFFER, file),
                path: tmp.clone(),
                written: 0,
                writeback: Writeback::new(),
                committed_by_staging: false,
            }),
            tmp,
            target: dir.join(name),
            dir,
        }))
    }

    fn files(&self, id: &ReportId) -> Result<Vec<PartInfo>, StoreError> {
        list_named(&self.complete(id)?.join(FILES_DIR))
    }

    fn open_file(&self, id: &ReportId, name: &str) -> Result<Box<dyn PartReader>, StoreError> {
        if !is_event_name(name) {
            return Err(StoreError::BadPartName(name.chars().take(40).collect()));
        }
        let path = self.complete(id)?.join(FILES_DIR).join(name);
        match open_regular(&path) {
            Ok(f) => Ok(Box::new(f)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StoreError::NotFound(id.clone())),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    fn replace_part(
        &self,
        id: &ReportId,
        name: &str,
        ciphertext: &[u8],
        keep: &dyn Fn(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        let (dir, path) = self.part_path(id, name)?;
        let old = match fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() => fs::read(&path).map_err(io_err(&path))?,
            _ => return Err(StoreError::NotFound(id.clone())),
        };
        if old == ciphertext {
            return Ok(());
        }
        if !keep(&old, ciphertext) {
            return Err(StoreError::NotOnlyHeaders(name.to_owned()));
        }
        replace_durably(&dir, leaf(&path), |f| f.write_all(ciphertext))
    }

    fn insert_into_part(
        &self,
        id: &ReportId,
        name: &str,
        expected_len: u64,
        offset: u64,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        use std::io::{Read, Seek, SeekFrom};
        let (dir, path) = self.part_path(id, name)?;
        let mut old = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(io_err(&path))?;
        let len = old.metadata().map_err(io_err(&path))?.len();
        if len != expected_len {
            return Err(StoreError::PartChanged(name.to_owned()));
        }
        if offset > len {
            return Err(StoreError::NotOnlyHeaders(name.to_owned()));
        }
        replace_durably(&dir, leaf(&path), |f| {
            io::copy(&mut (&mut old).take(offset), f)?;
            f.write_all(bytes)?;
            old.seek(SeekFrom::Start(offset))?;
            io::copy(&mut old, f)?;
            Ok(())
        })
    }

    fn remove_stale_staging(&self) -> Result<usize, StoreError> {
        let sweep = self.sweep_lock()?;
        sweep.lock().map_err(io_err(&self.reports))?;
        let mut removed = 0;
        for root in [STAGING, TRASH] {
            let root = self.reports.join(root);
            for entry in fs::read_dir(&root).map_err(io_err(&root))? {
                let path = entry.map_err(io_err(&root))?.path();
                if path.is_dir() && !is_locked(&path) {
                    remove_dir_if_present(&path).map_err(io_err(&path))?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }
}

impl FsStore {
    /// The store-wide lock that keeps sweeps out of staging being created.
    fn sweep_lock(&self) -> Result<File, StoreError> {
        open_sweep_lock(&self.reports)
    }
}

fn open_sweep_lock(reports: &Path) -> Result<File, StoreError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(reports.join(SWEEP_LOCK))
        .map_err(io_err(reports))
}

/// Removes a directory tree; one that is already gone is fine (a sweep in
/// another process may have got there first).
fn remove_dir_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Whether a live process holds the lock of staging directory `dir`.
fn is_locked(dir: &Path) -> bool {
    match File::open(dir) {
        Ok(f) => match f.try_lock() {
            Ok(()) => false,
            Err(fs::TryLockError::WouldBlock) => true,
            Err(fs::TryLockError::Error(_)) => false,
        },
        Err(_) => false,
    }
}

struct FsStaging {
    id: ReportId,
    dir: PathBuf,
    target: PathBuf,
    reports: PathBuf,
    renames: Arc<GroupSync>,
    staged: Arc<GroupSync>,
    _lock: File,
    committed: bool,
}

impl Staging for FsStaging {
    fn id(&self) -> &ReportId {
        &self.id
    }

    fn create_part(&mut self, name: &str) -> Result<Box<dyn PartSink>, StoreError> {
        if !is_part_name(name) {
            return Err(StoreError::BadPartName(name.chars().take(40).collect()));
        }
        let path = self.dir.join(name);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_err(&path))?;
        Ok(Box::new(FsPart {
            out: BufWriter::with_capacity(WRITE_BUFFER, file),
            path,
            written: 0,
            writeback: Writeback::new(),
            committed_by_staging: true,
        }))
    }

    fn add_event(&mut self, name: &str, ciphertext: &[u8]) -> Result<(), StoreError> {
        if !is_event_name(name) {
            return Err(StoreError::BadEventName(name.chars().take(40).collect()));
        }
        let dir = self.dir.join(EVENTS_DIR);
        mkdir_private(&dir).map_err(io_err(&dir))?;
        let path = dir.join(name);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_err(&path))?;
        file.write_all(ciphertext).map_err(io_err(&path))?;
        file.sync_all().map_err(io_err(&path))?;
        sync_dir(&dir).map_err(io_err(&dir))
    }

    fn commit(mut self: Box<Self>) -> Result<(), StoreError> {
        if !self.dir.join("manifest.pgp").is_file() {
            return Err(StoreError::Io {
                path: self.dir.display().to_string(),
                source: io::Error::other("refusing to commit a report without manifest.pgp"),
            });
        }
        let sweep = open_sweep_lock(&self.reports)?;
        sweep.lock_shared().map_err(io_err(&self.reports))?;
        // Every small part, and the staging directory's entries, durable
        // before the rename: one syncfs that began after this report's
        // parts were written, shared with the reports committing now.
        let dir = File::open(&self.dir).map_err(io_err(&self.dir))?;
        self.staged
            .sync_after(|| rustix::fs::syncfs(&dir).map_err(io::Error::from))
            .map_err(io_err(&self.dir))?;
        fs::rename(&self.dir, &self.target).map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists || e.raw_os_error() == Some(39) {
                StoreError::Exists(self.id.clone())
            } else {
                StoreError::Io {
                    path: self.target.display().to_string(),
                    source: e,
                }
            }
        })?;
        self.committed = true;
        drop(sweep);
        self.renames
            .sync_after_rename([&self.reports, &self.reports.join(STAGING)])
            .map_err(io_err(&self.reports))?;
        Ok(())
    }
}

impl Drop for FsStaging {
    fn drop(&mut self) {
        if !self.committed {
            // Best effort; what remains is removed at the next start.
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

struct FsPart {
    out: BufWriter<File>,
    path: PathBuf,
    written: u64,
    /// A large part is written back while it grows, so that the fsync in
    /// `finish` (and the answer that waits for it) comes soon after the
    /// last byte.
    writeback: Writeback,
    /// A part of a staged report: when small, its fsync is left to the
    /// report's commit, which makes every small part durable with one
    /// `syncfs` shared by the reports committing at the same time.
    committed_by_staging: bool,
}

/// Parts up to this size are made durable by their report's commit.
const SMALL_PART: u64 = 1 << 20;

impl Write for FsPart {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        self.written += n as u64;
        self.writeback.wrote(self.out.get_ref(), n)?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

impl PartSink for FsPart {
    fn finish(self: Box<Self>) -> Result<u64, StoreError> {
        let FsPart {
            out,
            path,
            written,
            writeback,
            committed_by_staging,
        } = *self;
        let file = out.into_inner().map_err(|e| StoreError::Io {
            path: path.display().to_string(),
            source: e.into_error(),
        })?;
        writeback.finish().map_err(io_err(&path))?;
        if !(committed_by_staging && written <= SMALL_PART) {
            file.sync_all().map_err(io_err(&path))?;
        }
        Ok(written)
    }
}

/// A follow-up file being written: a temporary file, linked into place
/// only when finished (never over an existing file), removed if dropped.
struct FsFile {
    part: Option<FsPart>,
    tmp: PathBuf,
    target: PathBuf,
    dir: PathBuf,
}

impl Write for FsFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.part {
            Some(p) => p.write(buf),
            None => Err(io::Error::other("the file is finished")),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.part {
            Some(p) => p.flush(),
            None => Ok(()),
        }
    }
}

impl PartSink for FsFile {
    fn finish(mut self: Box<Self>) -> Result<u64, StoreError> {
        let Some(part) = self.part.take() else {
            return Err(io_err(&self.tmp)(io::Error::other("finished twice")));
        };
        let written = Box::new(part).finish()?;
        fs::hard_link(&self.tmp, &self.target).map_err(io_err(&self.target))?;
        sync_dir(&self.dir).map_err(io_err(&self.dir))?;
        Ok(written)
    }
}

impl Drop for FsFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_report(store: &FsStore, id: &ReportId, parts: &[(&str, &[u8])]) -> Box<dyn Staging> {
        let mut staging = store.stage(id).unwrap();
        for (name, bytes) in parts {
            let mut sink = staging.create_part(name).unwrap();
            sink.write_all(bytes).unwrap();
            assert_eq!(sink.finish().unwrap(), bytes.len() as u64);
        }
        staging
    }

    #[test]
    fn staged_reports_appear_only_on_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(dir.path()).unwrap();
        let id = ReportId::random();
        let staging = write_report(&store, &id, &[("001.pgp", b"one"), ("manifest.pgp", b"m")]);
        assert!(store.list().unwrap().is_empty());
        assert!(!store.contains(&id).unwrap());
        staging.commit().unwrap();
        assert_eq!(store.list().unwrap(), vec![id.clone()]);
        let parts = store.parts(&id).unwrap();
        assert_eq!(
            parts[0],
            PartInfo {
                name: "manifest.pgp".into(),
                size: 1
            }
        );
        assert_eq!(
            parts[1],
            PartInfo {
                name: "001.pgp".into(),
                size: 3
            }
        );
        assert!(matches!(store.stage(&id), Err(StoreError::Exists(_))));
        assert!(matches!(
            store.open_part(&id, "../x"),
            Err(StoreError::BadPartName(_))
        ));
        store.remove(&id).unwrap();
        assert!(store.list().unwrap().is_empty());
    }

    #[test]
    fn dropped_staging_leaves_nothing_and_commit_needs_a_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(dir.path()).unwrap();
        let id = ReportId::random();
        drop(write_report(&store, &id, &[("001.pgp", b"one")]));
        assert_eq!(
            fs::read_dir(dir.path().join("reports/.staging"))
                .unwrap()
                .count(),
            0
        );
        let staging = write_report(&store, &id, &[("001.pgp", b"one")]);
        assert!(staging.commit().is_err());
        assert!(store.list().unwrap().is_empty());
    }

    #[test]
    fn stale_staging_is_removed_but_live_staging_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(dir.path()).unwrap();
        let stale = dir.path().join("reports/.staging/STALE");
        fs::create_dir(&stale).unwrap();
        fs::write(stale.join("001.pgp"), b"x").unwrap();
        let live = write_report(&store, &ReportId::random(), &[("001.pgp", b"y")]);
        assert_eq!(store.remove_stale_staging().unwrap(), 1);
        assert!(!stale.exists());
        assert_eq!(
            fs::read_dir(dir.path().join("reports/.staging"))
                .unwrap()
                .count(),
            1
        );
        drop(live);
    }

    #[test]
    fn sweeps_running_alongside_writers_never_break_a_report() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(dir.path()).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sweeper = {
            let (store, stop) = (store.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut sweeps = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    store.remove_stale_staging().unwrap();
                    sweeps += 1;
                }
                sweeps
            })
        };
        for _ in 0..300 {
            let id = ReportId::random();
            write_report(&store, &id, &[("001.pgp", b"one"), ("manifest.pgp", b"m")])
                .commit()
                .unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(sweeper.join().unwrap() > 0);
        assert_eq!(store.list().unwrap().len(), 300);
    }

    #[test]
    fn an_unowned_staging_directory_for_the_same_id_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(dir.path()).unwrap();
        let id = ReportId::random();
        fs::create_dir(dir.path().join("reports/.staging").join(id.as_str())).unwrap();
        write_report(&store, &id, &[("manifest.pgp", b"m")])
            .commit()
            .unwrap();
        assert!(store.contains(&id).unwrap());
        // While a live writer holds it, the same ID is refused.
        let other = ReportId::random();
        let live = store.stage(&other).unwrap();
        assert!(matches!(store.stage(&other), Err(StoreError::Exists(_))));
        drop(live);
    }

    #[test]
    fn group_sync_returns_only_after_a_sync_that_began_after_the_call() {
        let dir = tempfile::tempdir().unwrap();
        let group = Arc::new(GroupSync::default());
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let group = group.clone();
                let path = dir.path().to_owned();
                std::thread::spawn(move || {
                    for _ in 0..8 {
                        group.sync_after_rename([&path, &path]).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let state = group.state.lock().unwrap();
        assert_eq!((state.renamed, state.durable), (128, 128));
        drop(state);
        // A failing sync fails every commit waiting on it: none returns Ok.
        let missing = dir.path().join("missing");
        for _ in 0..3 {
            assert!(group.sync_after_rename([&missing, &missing]).is_err());
        }
        let state = group.state.lock().unwrap();
        assert_eq!(state.durable, 128);
        assert!(!state.syncing);
    }

    #[test]
    fn a_read_only_open_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        assert!(FsStore::open_read_only(dir.path()).is_err());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
        fs::create_dir(dir.path().join("reports")).unwrap();
        let store = FsStore::open_read_only(dir.path()).unwrap();
        assert!(store.list().unwrap().is_empty());
        assert_eq!(
            fs::read_dir(dir.path().join("reports")).unwrap().count(),
            0,
            "no .staging, .trash or lock was made"
        );
    }

    #[test]
    fn follow_up_files_are_addressed_as_files_slash_name_where_parts_are() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(dir.path()).unwrap();
        let id = ReportId::random();
        write_report(&store, &id, &[("manifest.pgp", b"m")])
            .commit()
            .unwrap();
        let name = format!("{}.pgp", "ab".repeat(16));
        let mut sink = store.create_file(&id, &name).unwrap();
        sink.write_all(b"headbody").unwrap();
        sink.finish().unwrap();
        let part = super::super::file_part(&name);
        store.insert_into_part(&id, &part, 8, 4, b"KEYS").unwrap();
        let mut read = Vec::new();
        store
            .open_file(&id, &name)
            .unwrap()
            .read_to_end(&mut read)
            .unwrap();
        assert_eq!(read, b"headKEYSbody");
        assert_eq!(
            store.files(&id).unwrap().len(),
            1,
            "no temporary file is listed"
        );
        // Only a file name after `files/`; an event of that name is another thing.
        for bad in [
            "files/../manifest.pgp",
            "files/001.pgp",
            "files/",
            "events/x",
        ] {
            assert!(
                matches!(
                    store.insert_into_part(&id, bad, 1, 0, b"k"),
                    Err(StoreError::BadPartName(_))
                ),
                "{bad}"
            );
        }
        assert!(store.insert_into_part(&id, &name, 12, 0, b"k").is_err());
    }

    #[test]
    fn part_names() {
        for good in ["manifest.pgp", "001.pgp", "999.pgp"] {
            assert!(is_part_name(good), "{good}");
        }
        for bad in [
            "000.pgp",
            "1.pgp",
            "0001.pgp",
            "../001.pgp",
            "001.pgp/",
            "abc.pgp",
            "",
        ] {
            assert!(!is_part_name(bad), "{bad}");
        }
    }
}
