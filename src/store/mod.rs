//! Where sealed reports live: a `Store` trait with the filesystem behind it
//! (docs/format.md). Only ciphertext passes through here.

mod fs;
pub mod writeback;

/// The directory of a report that holds its case's events.
pub const EVENTS_DIR: &str = "events";
/// The directory of a report that holds the files reporters sent with
/// follow-up messages, each `<file ID>.pgp` (32 hex digits).
pub const FILES_DIR: &str = "files";
/// Where a report's signed case status is kept, beside its parts.
pub const STATUS_FILE: &str = "status.pgp";
/// Largest signed case status a store keeps (and an intake accepts).
pub const MAX_STATUS_BYTES: usize = 64 * 1024;

use std::io::{Read, Seek, Write};
use std::path::Path;
use std::sync::Arc;

pub use fs::FsStore;

use crate::id::ReportId;

/// What can go wrong in a store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error(
        "store {path} is not usable: {source}; check that it exists and is writable by the user running embargo"
    )]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("report {0} already exists in the store")]
    Exists(ReportId),
    #[error("report {0} is not in the store (or is incomplete)")]
    NotFound(ReportId),
    #[error("{0:?} is not a part name (expected manifest.pgp or NNN.pgp)")]
    BadPartName(String),
    #[error("{0:?} is not an event name (expected 32 hex digits and .pgp)")]
    BadEventName(String),
    #[error("an event named {0} exists already with other contents; events are never replaced")]
    EventConflict(String),
    #[error("the new {0} changes more than its session keys: refused, the stored one is kept")]
    NotOnlyHeaders(String),
    #[error(
        "{0} changed while session keys were being added to it (another fetch or share?): nothing was changed; run the command again"
    )]
    PartChanged(String),
}

/// One ciphertext file of a report.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PartInfo {
    pub name: String,
    pub size: u64,
}

/// A readable, seekable ciphertext part.
pub trait PartReader: Read + Seek + Send + Sync {}
impl<T: Read + Seek + Send + Sync> PartReader for T {}

/// A store of sealed reports. Writers stage a report and commit it whole;
/// readers only ever see committed reports.
pub trait Store: Send + Sync {
    /// Starts writing report `id`; nothing is visible until `commit`.
    fn stage(&self, id: &ReportId) -> Result<Box<dyn Staging>, StoreError>;
    /// Whether a complete report `id` exists.
    fn contains(&self, id: &ReportId) -> Result<bool, StoreError>;
    /// Every complete report, sorted by ID.
    fn list(&self) -> Result<Vec<ReportId>, StoreError>;
    /// The parts of a complete report, manifest first.
    fn parts(&self, id: &ReportId) -> Result<Vec<PartInfo>, StoreError>;
    /// Opens one part of a complete report.
    fn open_part(&self, id: &ReportId, part: &str) -> Result<Box<dyn PartReader>, StoreError>;
    /// Deletes a whole report atomically (it disappears at once, never half).
    fn remove(&self, id: &ReportId) -> Result<(), StoreError>;
    /// Checks that a report could be written now.
    fn check_writable(&self) -> Result<(), StoreError>;
    /// Removes what crashed writers left behind; returns how many.
    fn remove_stale_staging(&self) -> Result<usize, StoreError>;
    /// When complete report `id` arrived, as far as the store can tell
    /// without decrypting; `None` when unknown (retention then keeps it).
    fn arrived_at(&self, id: &ReportId) -> Option<std::time::SystemTime>;
    /// The signed case status (`status.pgp`, see [`crate::case::status`])
    /// kept beside complete report `id`, if any.
    fn status(&self, id: &ReportId) -> Result<Option<Vec<u8>>, StoreError>;
    /// Replaces the case status of complete report `id` with `signed`,
    /// atomically and durably, when `replaces(current)` says it should;
    /// returns whether it was written. Writers of one store are serialized,
    /// so the check and the write are one step.
    fn set_status(
        &self,
        id: &ReportId,
        signed: &[u8],
        replaces: &dyn Fn(Option<&[u8]>) -> bool,
    ) -> Result<bool, StoreError>;
    /// Stores event `name` (`<event ID>.pgp`) of complete report `id`,
    /// durably (temporary file, fsync, link into place, directory fsync)
    /// before returning. `Ok(false)` when an event of that name exists
    /// already with the same bytes (a retried upload); an existing event is
    /// never replaced, and one with other bytes is [`StoreError::EventConflict`].
    fn add_event(&self, id: &ReportId, name: &str, ciphertext: &[u8]) -> Result<bool, StoreError>;
    /// The events of complete report `id`, by name, with their sizes.
    fn events(&self, id: &ReportId) -> Result<Vec<PartInfo>, StoreError>;
    /// Opens one event of complete report `id`.
    fn open_event(&self, id: &ReportId, name: &str) -> Result<Box<dyn PartReader>, StoreError>;
    /// Starts follow-up file `name` (`<32 hex>.pgp`) of complete report
    /// `id`. It becomes visible, durably, when the sink is finished, and
    /// never replaces a file of that name; dropped unfinished, it is gone.
    fn create_file(&self, id: &ReportId, name: &str) -> Result<Box<dyn PartSink>, StoreError>;
    /// The follow-up files of complete report `id`, by name, with sizes.
    fn files(&self, id: &ReportId) -> Result<Vec<PartInfo>, StoreError>;
    /// Opens one follow-up file of complete report `id`.
    fn open_file(&self, id: &ReportId, name: &str) -> Result<Box<dyn PartReader>, StoreError>;
    /// Replaces part, event or file `name` (`manifest.pgp`, `NNN.pgp`, an
    /// event name or `files/NAME`) of complete report `id` with `ciphertext`, atomically
    /// and durably, only when `keep(old, new)` says the change keeps what
    /// matters (sharing adds session keys and changes nothing else).
    fn replace_part(
        &self,
        id: &ReportId,
        name: &str,
        ciphertext: &[u8],
        keep: &dyn Fn(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError>;
    /// Inserts `bytes` at byte `offset` of part, event or file `name` of report
    /// `id`, atomically and durably, when the part still has `expected_len`
    /// bytes (the caller checked what it inserts, and where: session keys
    /// before the encrypted data). The rest is copied unchanged.
    fn insert_into_part(
        &self,
        id: &ReportId,
        name: &str,
        expected_len: u64,
        offset: u64,
        bytes: &[u8],
    ) -> Result<(), StoreError>;
}

/// Whether `name` is an event name: 32 lower-case hex digits and `.pgp`.
pub fn is_event_name(name: &str) -> bool {
    name.len() == 36
        && name.ends_with(".pgp")
        && name[..32]
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Whether `name` is a follow-up file name: like an event's, 32
/// lower-case hex digits and `.pgp` (the file ID is random).
pub fn is_file_name(name: &str) -> bool {
    is_event_name(name)
}

/// How follow-up file `name` is addressed where parts, events and files
/// share one name space (`replace_part`, `insert_into_part`, the intake's
/// session-keys route): `files/NAME`.
pub fn file_part(name: &str) -> String {
    format!("{FILES_DIR}/{name}")
}

/// The follow-up file a `files/NAME` address names, if it is one.
pub fn file_of_part(part: &str) -> Option<&str> {
    part.strip_prefix(FILES_DIR)
        .and_then(|rest| rest.strip_prefix('/'))
        .filter(|name| is_file_name(name))
}

/// A report being written.
pub trait Staging: Send {
    fn id(&self) -> &ReportId;
    /// Creates part `name` (`manifest.pgp` or `NNN.pgp`).
    fn create_part(&mut self, name: &str) -> Result<Box<dyn PartSink>, StoreError>;
    /// Adds event `name` (`<event ID>.pgp`), visible with the report (the
    /// intake's `received` event).
    fn add_event(&mut self, name: &str, ciphertext: &[u8]) -> Result<(), StoreError>;
    /// Makes the report durable and visible, all at once.
    fn commit(self: Box<Self>) -> Result<(), StoreError>;
}

/// The ciphertext of one part being written.
pub trait PartSink: Write + Send + Sync {
    /// Flushes and makes the part durable; returns its size.
    fn finish(self: Box<Self>) -> Result<u64, StoreError>;
}

/// Whether `name` is a valid part name: `manifest.pgp` or `001.pgp`…`999.pgp`.
pub fn is_part_name(name: &str) -> bool {
    name == "manifest.pgp"
        || (name.len() == 7
            && name.ends_with(".pgp")
            && name[..3].bytes().all(|b| b.is_ascii_digit())
            && &name[..3] != "000")
}

/// The file name of attachment number `n` (1-based).
pub fn attachment_part_name(n: usize) -> String {
    format!("{n:03}.pgp")
}

/// Opens (creating if needed) the store a configuration names.
pub fn open(location: &Path) -> Result<Arc<dyn Store>, StoreError> {
    Ok(Arc::new(FsStore::open(location)?))
}

/// Opens the store at start-up and removes what an interrupted writer left
/// in staging (only when no other writer can be busy in it).
pub fn open_and_recover(location: &Path) -> Result<Arc<dyn Store>, StoreError> {
    Ok(Arc::new(FsStore::open_and_recover(location)?))
}

/// Opens an existing store for reading only: creates and recovers nothing.
pub fn open_read_only(location: &Path) -> Result<Arc<dyn Store>, StoreError> {
    Ok(Arc::new(FsStore::open_read_only(location)?))
}
