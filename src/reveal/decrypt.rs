//! `embargo decrypt`: verifies and decrypts one report into `OUT/<ID>/`,
//! all or nothing.
//!
//! Everything is written into a private temporary directory inside `OUT`
//! and renamed to `OUT/<ID>` only after the manifest signature, every part's
//! size and SHA-256 checked out. On any failure, and on Ctrl-C or SIGTERM,
//! the temporary directory is removed; one left by a killed run is removed
//! by the next run in the same `OUT`.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::keysource::{KeyArgs, SignerArgs};
use super::names::UniqueNames;
use super::render::{Extracted, report_markdown};
use super::{Error, Progress, store_root};
use crate::config::Policy;
use crate::id::ReportId;
use crate::seal::{Opener, SignatureCheck};
use crate::store;
use crate::store::writeback::Writeback;

/// Prefix of the temporary directories inside `OUT`.
const PARTIAL_PREFIX: &str = ".embargo-partial-";

/// What `embargo decrypt` was asked to do.
#[derive(Clone, Debug)]
pub struct DecryptArgs {
    /// A report ID (looked up in the store) or a report directory.
    pub target: String,
    /// The store root (`--store`, or the configuration's).
    pub store: Option<PathBuf>,
    /// Where `<ID>/` is created.
    pub out: PathBuf,
    pub keys: KeyArgs,
    pub signer: SignerArgs,
    /// Deadlines shown in `report.md`.
    pub policy: Policy,
    /// Called when Ctrl-C or SIGTERM arrives mid-way, after the partial
    /// directory was removed; it must end the process (the caller says
    /// why, and exits 130).
    pub on_interrupt: fn() -> !,
}

/// A report decrypted into `dir`.
#[derive(Debug)]
pub struct Decrypted {
    pub id: ReportId,
    pub dir: PathBuf,
    /// Saved file names with their sizes.
    pub files: Vec<(String, u64)>,
    pub signature: SignatureCheck,
}

/// Finds the store and ID a `decrypt` target names.
fn resolve_target(target: &str, store: Option<&Path>) -> Result<(PathBuf, ReportId), Error> {
    let path = Path::new(target);
    if !target.contains('/') && !path.is_dir() {
        let id: ReportId = target
            .parse()
            .map_err(|_| Error::NotAReport(target.chars().take(60).collect()))?;
        return Ok((store_root(store, None)?, id));
    }
    let dir = path.canonicalize().map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let id = dir
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.parse::<ReportId>().ok())
        .ok_or_else(|| Error::NotAReport(target.chars().take(200).collect()))?;
    let reports = dir
        .parent()
        .filter(|p| p.file_name().is_some_and(|n| n == "reports"));
    let root = reports
        .and_then(Path::parent)
        .ok_or_else(|| Error::Usage(format!("{target} is not inside a store's reports/ directory: give --store DIR and the ID instead")))?;
    Ok((root.to_path_buf(), id))
}

/// Decrypts one report into `OUT/<ID>/`; nothing is left behind on failure.
pub fn decrypt(args: &DecryptArgs, progress: &dyn Progress) -> Result<Decrypted, Error> {
    let (root, id) = resolve_target(&args.target, args.store.as_deref())?;
    if !root.join("reports").is_dir() {
        return Err(Error::Read {
            path: root.join("reports"),
            source: io::Error::new(
                io::ErrorKind::NotFound,
                "no store here (give the directory that holds reports/)",
            ),
        });
    }
    let store = store::open_read_only(&root)?;
    let signer = args.signer.resolve()?;
    let opener = Opener::new(args.keys.open()?, signer);
    let opened = opener.open_manifest(store.as_ref(), &id)?;

    let target = args.out.join(id.as_str());
    if target.symlink_metadata().is_ok() {
        return Err(Error::Exists { path: target });
    }
    let (partial, guard) = make_partial(&args.out, id.as_str(), args.on_interrupt)?;
    fs::set_permissions(&partial, fs::Permissions::from_mode(0o700))
        .map_err(write_err(&partial))?;

    let manifest = &opened.manifest;
    let total = super::list::attachments_bytes(manifest);
    progress.start(total);
    let mut names = UniqueNames::default();
    let mut files = Vec::new();
    let mut extracted = Vec::new();
    for (index, entry) in manifest.attachments.iter().enumerate() {
        let fallback = format!("attachment-{:03}", index + 1);
        let name = names.name_for(&entry.name, &fallback);
        let path = partial.join(&name);
        let file = new_private_file(&path).map_err(write_err(&path))?;
        progress.working_on(&format!("decrypting {}", entry.file));
        let mut out = Counted::new(file, progress);
        opener.decrypt_attachment(store.as_ref(), &id, entry, &mut out)?;
        out.sync().map_err(write_err(&path))?;
        files.push((name.clone(), entry.size));
        extracted.push(Extracted {
            index,
            saved_as: name,
        });
    }
    progress.finish();

    let json = manifest.to_json();
    write_private(&partial.join("manifest.json"), &json).map_err(write_err(&partial))?;
    let md = report_markdown(manifest, &opened.signature, &args.policy, &extracted);
    write_private(&partial.join("report.md"), md.as_bytes()).map_err(write_err(&partial))?;
    File::open(&partial)
        .and_then(|d| d.sync_all())
        .map_err(write_err(&partial))?;

    // rename(2) would replace an empty directory made meanwhile: look again.
    if target.symlink_metadata().is_ok() {
        return Err(Error::Exists { path: target });
    }
    fs::rename(&partial, &target).map_err(write_err(&target))?;
    guard.disarm();
    let _ = File::open(&args.out).and_then(|d| d.sync_all());
    Ok(Decrypted {
        id,
        dir: target,
        files,
        signature: opened.signature,
    })
}

/// What failing to write `path` is reported as.
pub(super) fn write_err(path: &Path) -> impl FnOnce(io::Error) -> Error + use<> {
    let path = path.to_path_buf();
    move |source| Error::Write { path, source }
}

/// Creates `out` (private when new), removes the temporary directories
/// killed runs left in it, and makes a private temporary directory there,
/// named for `stem`, which the returned guard removes when dropped, and
/// on Ctrl-C or SIGTERM (then calling `on_interrupt`).
pub(super) fn make_partial(
    out: &Path,
    stem: &str,
    on_interrupt: fn() -> !,
) -> Result<(PathBuf, PartialDir), Error> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(out)
        .map_err(write_err(out))?;
    remove_abandoned(out);
    // `<stem>-<pid>-<random>`, as `remove_abandoned` reads it.
    let partial = out.join(format!(
        "{PARTIAL_PREFIX}{stem}-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    DirBuilder::new()
        .mode(0o700)
        .create(&partial)
        .map_err(write_err(&partial))?;
    let guard = PartialDir::new(partial.clone(), on_interrupt);
    Ok((partial, guard))
}

pub(super) fn new_private_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = new_private_file(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// The output file, reporting progress as bytes go through, and written
/// back to disk while it grows ([`Writeback`]) so its fsync is short.
pub(super) struct Counted<'a> {
    file: File,
    progress: &'a dyn Progress,
    writeback: Writeback,
}

impl<'a> Counted<'a> {
    pub(super) fn new(file: File, progress: &'a dyn Progress) -> Counted<'a> {
        Counted {
            file,
            progress,
            writeback: Writeback::new(),
        }
    }

    /// Makes the file durable.
    pub(super) fn sync(self) -> io::Result<()> {
        self.writeback.finish()?;
        self.file.sync_all()
    }
}

impl Write for Counted<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.writeback.wrote(&self.file, n)?;
        self.progress.advance(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// The temporary directory; removed unless disarmed, also on Ctrl-C/SIGTERM.
pub(super) struct PartialDir {
    path: PathBuf,
    armed: bool,
}

impl PartialDir {
    fn new(path: PathBuf, on_interrupt: fn() -> !) -> PartialDir {
        remove_on_signal(path.clone(), on_interrupt);
        PartialDir { path, armed: true }
    }

    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for PartialDir {
    fn drop(&mut self) {
        if self.armed {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// Removes `dir`, then calls `on_interrupt` (which ends the process), when
/// the user interrupts: plaintext must not stay in a half-written directory.
fn remove_on_signal(dir: PathBuf, on_interrupt: fn() -> !) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    // Registered here, before any plaintext is written, not in the thread.
    let signals = {
        let _context = rt.enter();
        (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        )
    };
    let (Ok(mut interrupt), Ok(mut terminate)) = signals else {
        return;
    };
    std::thread::spawn(move || {
        rt.block_on(async {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        });
        for _ in 0..5 {
            if fs::remove_dir_all(&dir).is_ok() || !dir.exists() {
                break;
            }
        }
        on_interrupt();
    });
}

/// Removes temporary directories of runs that were killed (their process is gone).
fn remove_abandoned(out: &Path) {
    let Ok(entries) = fs::read_dir(out) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(PARTIAL_PREFIX)) else {
            continue;
        };
        // `<ID>-<pid>-<random>`; the ID itself holds dashes.
        let mut fields = rest.rsplitn(3, '-');
        let (_, pid) = (
            fields.next(),
            fields.next().and_then(|p| p.parse::<u32>().ok()),
        );
        if let Some(pid) = pid
            && pid != std::process::id()
            && !Path::new("/proc").join(pid.to_string()).exists()
        {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}
