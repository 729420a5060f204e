//! `embargo case files`: the files reporters sent with follow-up messages,
//! decrypted into a directory, all or nothing.
//!
//! Only files that a verified `reporter-message` event names are decrypted
//! (the intake signs the event; the files themselves are unsigned), each
//! checked against the event's size and SHA-256. They are written into a
//! private temporary directory inside `OUT` first, removed on any failure
//! and on Ctrl-C or SIGTERM; once every file checked out, each is linked
//! into `OUT` under a safe name ([`super::names`]) that nothing there has
//! yet: an existing file is never replaced, a taken name gets `-2`, `-3`…

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use super::decrypt::{Counted, make_partial, new_private_file, write_err};
use super::names::UniqueNames;
use super::{Error, Progress};
use crate::case::event::{EventAttachment, EventId, Kind};
use crate::case::{Case, Event};
use crate::seal::{Opener, RevealError};
use crate::store::{FILES_DIR, Store};

/// One follow-up file written.
#[derive(Debug)]
pub struct SavedFile {
    /// The `reporter-message` event that names it.
    pub event: EventId,
    /// When the reporter sent it (the event's `at`).
    pub at: String,
    /// Where it was written.
    pub path: PathBuf,
    /// Its plaintext size, as checked.
    pub size: u64,
}

/// Every file of the verified `reporter-message` events of `case`, in
/// time order, with the event that names it.
pub fn follow_up_files(case: &Case) -> Vec<(&Event, &EventAttachment)> {
    case.verified()
        .into_iter()
        .filter(|e| e.kind == Kind::ReporterMessage)
        .flat_map(|e| e.attachments.iter().map(move |a| (e, a)))
        .collect()
}

/// Decrypts every follow-up file of `case` (read from `store`) into `out`,
/// created if needed; nothing is written when any file fails its checks.
/// `on_interrupt` is called when Ctrl-C or SIGTERM arrives mid-way, after
/// the temporary directory was removed; it must end the process.
pub fn save_files(
    store: &dyn Store,
    opener: &Opener,
    case: &Case,
    out: &Path,
    on_interrupt: fn() -> !,
    progress: &dyn Progress,
) -> Result<Vec<SavedFile>, Error> {
    let files = follow_up_files(case);
    if files.is_empty() {
        return Ok(Vec::new());
    }
    let id = &case.manifest.id;
    // The guard removes the directory (and what was decrypted into it) when dropped.
    let (partial, _guard) = make_partial(out, &format!("{id}-files"), on_interrupt)?;

    progress.start(
        files
            .iter()
            .map(|(_, a)| a.size)
            .fold(0, u64::saturating_add),
    );
    let mut decrypted = Vec::with_capacity(files.len());
    for (n, (event, entry)) in files.iter().enumerate() {
        let path = partial.join(format!("{n:04}"));
        let file = new_private_file(&path).map_err(write_err(&path))?;
        progress.working_on(&format!("decrypting {FILES_DIR}/{}", entry.file));
        let mut sink = Counted::new(file, progress);
        opener
            .decrypt_file(store, id, entry, &mut sink)
            .map_err(|e| refused(case, event, entry, out, e))?;
        sink.sync().map_err(write_err(&path))?;
        decrypted.push(path);
    }
    progress.finish();

    let mut names = UniqueNames::default();
    let mut saved = Vec::with_capacity(files.len());
    for (n, ((event, entry), from)) in files.iter().zip(&decrypted).enumerate() {
        let fallback = format!("file-{:03}", n + 1);
        let path = link_new(from, out, || names.name_for(&entry.name, &fallback))?;
        saved.push(SavedFile {
            event: event.event.clone(),
            at: event.at.clone(),
            path,
            size: entry.size,
        });
    }
    let _ = File::open(out).and_then(|d| d.sync_all());
    Ok(saved)
}

/// Links `from` into `dir` under the first name `next` gives that nothing
/// in `dir` has (a link never replaces what is there).
fn link_new(from: &Path, dir: &Path, mut next: impl FnMut() -> String) -> Result<PathBuf, Error> {
    loop {
        let path = dir.join(next());
        match fs::hard_link(from, &path) {
            Ok(()) => return Ok(path),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(source) => return Err(Error::Write { path, source }),
        }
    }
}

/// What a file that failed its checks is reported as: which file of
/// which event (never the reporter's name for it), and what to do.
fn refused(
    case: &Case,
    event: &Event,
    entry: &EventAttachment,
    out: &Path,
    e: RevealError,
) -> Error {
    let refused = |why: String| Error::FollowUpFile {
        report: case.manifest.id.clone(),
        event: event.event.clone(),
        file: entry.file.chars().take(40).collect(),
        why,
    };
    match e {
        RevealError::Tampered { detail, .. } => {
            refused(format!("is damaged or was tampered with ({detail})"))
        }
        RevealError::Mismatch { detail, .. } => {
            refused(format!("does not match its reporter message ({detail})"))
        }
        RevealError::Output(source) => Error::Write {
            path: out.to_path_buf(),
            source,
        },
        other => Error::Reveal(other),
    }
}
