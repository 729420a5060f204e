//! `embargo fetch`: copies complete sealed reports (ciphertext only) from an
//! intake's `/api/v1/sealed` routes into a local store.
//!
//! Everything the server says is untrusted: IDs and part names are checked
//! before they touch a path, sizes are enforced byte for byte. Each part is
//! downloaded into a private `ROOT/.fetch-partial/<ID>/` (resumed with
//! `Range` after an interruption), and a report enters the store only whole,
//! through `Store::stage` → `create_part` → `commit`.
//!
//! The local store is not trusted either: every directory fetch uses inside
//! it must be a real directory and every file is opened without following
//! symbolic links, so a link planted there cannot redirect a write outside.
//! A silent server fails the run after `--timeout`, and `--max-bytes` caps
//! what one run downloads. With `delete_after_fetch` on the intake, each
//! report stored here is confirmed (its parts' SHA-256, read back from the
//! local store) so the server may delete its copy.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::blocking::{Client, Response};
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, RANGE};
use sequoia_openpgp::parse::Parse as _;
use serde::Deserialize;
use zeroize::Zeroizing;

use super::{Error, Progress};

mod cases;
mod mail;
use crate::id::ReportId;
use crate::seal::reader::MAX_MANIFEST_BYTES;
use crate::store::{self, PartInfo, Store, StoreError, is_part_name};
pub use cases::{
    CaseSync, Intake, StatusSent, StatusTimes, parse_file_listing, status_times, sync_case,
};
pub use mail::{MailOutcome, mail_reporter};

/// Where partial downloads wait, inside the store root but outside `reports/`.
pub const PARTIAL_DIR: &str = ".fetch-partial";
/// Largest listing accepted from a server.
const MAX_LISTING_BYTES: u64 = 64 * 1024 * 1024;
/// Largest part accepted (a 512 MiB attachment is far below it).
pub const MAX_PART_BYTES: u64 = 64 * 1024 * 1024 * 1024;
/// Most parts in one report (`001.pgp`…`999.pgp` and the manifest).
const MAX_PARTS: usize = 1000;
/// How long to wait for a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const COPY_BUFFER: usize = 256 * 1024;
/// `--timeout` default: the longest wait for the server's next bytes.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// `--max-bytes` default: what one run downloads at most (32 GiB).
pub const DEFAULT_MAX_BYTES: u64 = 32 * 1024 * 1024 * 1024;

/// What `embargo fetch` was asked to do.
#[derive(Clone, Debug)]
pub struct FetchArgs {
    /// The intake's base URL, e.g. `https://security.example.org`.
    pub from: String,
    pub token_file: PathBuf,
    /// The local store root (holding `reports/`).
    pub store: PathBuf,
    /// Fail when the server sends nothing for this long ([`DEFAULT_TIMEOUT`]).
    pub timeout: Duration,
    /// Stop before a report that would take the run past this many bytes
    /// ([`DEFAULT_MAX_BYTES`]).
    pub max_bytes: u64,
}

/// What a fetch run did.
#[derive(Debug, Default)]
pub struct FetchSummary {
    pub fetched: Vec<ReportId>,
    pub already_present: usize,
    pub bytes: u64,
    /// Reports the intake was told are stored here (for `delete_after_fetch`).
    pub confirmed: usize,
    /// Set when `--max-bytes` stopped the run: the first report not fetched.
    pub stopped_before: Option<ReportId>,
    /// The `--max-bytes` in force.
    pub max_bytes: u64,
    /// Case events downloaded from the intake.
    pub events_fetched: usize,
    /// Case events written here and handed to the intake.
    pub events_sent: usize,
    /// Parts, events or files whose added session keys went either way.
    pub shared: usize,
    /// Follow-up files (from reporters, through the intake) downloaded.
    pub files_fetched: usize,
    /// Their ciphertext bytes.
    pub files_bytes: u64,
    /// Case statuses written here and taken by the intake.
    pub statuses_sent: usize,
    /// Reports whose case status here the intake refused as older than
    /// what it holds (`embargo case sync` computes them again).
    pub statuses_stale: Vec<ReportId>,
}

impl FetchSummary {
    /// Why the run stopped early, when `--max-bytes` stopped it.
    pub fn cap_message(&self) -> Option<String> {
        self.stopped_before.as_ref().map(|id| {
            format!(
                "stopped before report {id}: fetching it would take this run past --max-bytes {} ({} bytes fetched); the reports fetched are complete in the store: run again to fetch the rest, or raise --max-bytes",
                self.max_bytes, self.bytes
            )
        })
    }
}

/// One report of a checked listing: its ID and its parts.
type ListedParts = (ReportId, Vec<PartInfo>);

#[derive(Deserialize)]
struct Listing {
    reports: Vec<ListedReport>,
}

/// The part of a listing that is not about reports.
#[derive(Deserialize)]
struct ListingFlags {
    /// The intake deletes reports once confirmed (`delete_after_fetch`).
    #[serde(default)]
    confirm_fetched: bool,
}

#[derive(Deserialize)]
struct ListedReport {
    id: String,
    parts: Vec<PartInfo>,
}

/// Downloads every complete report missing from the local store.
pub fn fetch(args: &FetchArgs, progress: &dyn Progress) -> Result<FetchSummary, Error> {
    let http = Http::connect(&args.from, &args.token_file, args.timeout)?;
    // The listing comes first: a refused token writes nothing at all.
    let (reports, confirm, statuses) = http.listing()?;

    let (store, partial_root, _lock) = open_local_store(&args.store, &http.base)?;

    let mut summary = FetchSummary {
        max_bytes: args.max_bytes,
        ..FetchSummary::default()
    };
    let missing: u64 = reports
        .iter()
        .filter(|(id, _)| !store.contains(id).unwrap_or(false))
        .map(|(_, parts)| total_size(parts))
        .fold(0, u64::saturating_add);
    progress.start(missing.min(args.max_bytes));
    let listed = reports.clone();
    for (id, parts) in reports {
        let dir = partial_root.join(id.as_str());
        if store.contains(&id)? {
            // A run killed right after committing may have left its downloads.
            remove_partial(&dir)?;
            summary.already_present += 1;
            if confirm {
                http.confirm(store.as_ref(), &args.store, &id)?;
                summary.confirmed += 1;
            }
            continue;
        }
        if summary.bytes.saturating_add(total_size(&parts)) > args.max_bytes {
            summary.stopped_before = Some(id);
            break;
        }
        private_dir(&dir)?;
        for part in &parts {
            progress.working_on(&format!("{id}/{}", part.name));
            summary.bytes += http.download(&id, part, &dir.join(&part.name), progress)?;
        }
        if commit(store.as_ref(), &id, &parts, &dir)? {
            summary.fetched.push(id.clone());
        } else {
            summary.already_present += 1;
        }
        remove_partial(&dir)?;
        if confirm {
            http.confirm(store.as_ref(), &args.store, &id)?;
            summary.confirmed += 1;
        }
    }
    progress.finish();
    http.sync_cases(store.as_ref(), &listed, &statuses, &mut summary)?;
    http.save_public(&args.store)?;
    Ok(summary)
}

/// Opens the local store for fetching: its directories must be real ones
/// (checked before opening, which creates what is missing, and after),
/// `.fetch-partial/` private, and no other fetch running (the returned lock
/// is held until dropped). Stale staging is swept only under that lock.
fn open_local_store(root: &Path, base: &str) -> Result<(Arc<dyn Store>, PathBuf, File), Error> {
    let reports_dir = root.join("reports");
    let store_dirs = [
        reports_dir.clone(),
        reports_dir.join(".staging"),
        reports_dir.join(".trash"),
    ];
    // Checked before opening (which creates what is missing) and after.
    for dir in &store_dirs {
        if fs::symlink_metadata(dir).is_ok() {
            real_dir(dir)?;
        }
    }
    let store = store::open(root)?;
    for dir in &store_dirs {
        real_dir(dir)?;
    }
    let partial_root = root.join(PARTIAL_DIR);
    private_dir(&partial_root)?;
    let lock = open_no_follow(
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600),
        &partial_root.join(".lock"),
    )?;
    if lock.try_lock().is_err() {
        return Err(Error::Fetch {
            url: base.to_string(),
            detail: format!(
                "another `embargo fetch` is writing to {}: wait for it to finish",
                root.display()
            ),
        });
    }
    // Only under the lock: another fetch's staging is its own business.
    store.remove_stale_staging()?;
    Ok((store, partial_root, lock))
}

/// The listed size of a report, saturating (a listing is untrusted).
fn total_size(parts: &[PartInfo]) -> u64 {
    parts.iter().map(|p| p.size).fold(0, u64::saturating_add)
}

/// Refuses a symbolic link (or anything but a directory) at `path`.
fn real_dir(path: &Path) -> Result<(), Error> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(Error::Unsafe {
            path: path.to_path_buf(),
        }),
        Err(source) => Err(Error::Write {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Makes `path` a private (0700) directory of its own, refusing a symbolic
/// link in its place: the mode is set on the directory opened without
/// following links, never on what a link points to.
fn private_dir(path: &Path) -> Result<(), Error> {
    match DirBuilder::new().mode(0o700).create(path) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(write_err(path)(e)),
        _ => {}
    }
    real_dir(path)?;
    let dir = open_no_follow(
        OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY),
        path,
    )?;
    dir.set_permissions(fs::Permissions::from_mode(0o700))
        .map_err(write_err(path))
}

/// Removes a report's partial downloads; a link in their place is removed
/// itself (never followed).
fn remove_partial(dir: &Path) -> Result<(), Error> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other.map_err(write_err(dir)),
    }
}

/// Opens `path` with `options`, never through a symbolic link.
fn open_no_follow(options: &mut OpenOptions, path: &Path) -> Result<File, Error> {
    options
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP)
                || fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
            {
                Error::Unsafe {
                    path: path.to_path_buf(),
                }
            } else {
                write_err(path)(e)
            }
        })
}

/// Moves the downloaded parts of one report into the store, manifest last.
/// Returns false when the report appeared meanwhile.
fn commit(store: &dyn Store, id: &ReportId, parts: &[PartInfo], dir: &Path) -> Result<bool, Error> {
    let mut staging = match store.stage(id) {
        Ok(s) => s,
        // Committed meanwhile by another writer: nothing to do. A directory
        // without a manifest (copied by hand?) is reported, not replaced.
        Err(StoreError::Exists(_)) if store.contains(id)? => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    let mut ordered: Vec<&PartInfo> = parts.iter().filter(|p| p.name != "manifest.pgp").collect();
    ordered.extend(parts.iter().filter(|p| p.name == "manifest.pgp"));
    for part in ordered {
        let path = dir.join(&part.name);
        let mut file = open_no_follow(OpenOptions::new().read(true), &path)?;
        let mut sink = staging.create_part(&part.name)?;
        let copied =
            io::copy(&mut (&mut file).take(part.size + 1), &mut sink).map_err(write_err(&path))?;
        if copied != part.size {
            return Err(Error::BadListing(format!(
                "{id}/{} is {copied} bytes on disk, the listing says {}",
                part.name, part.size
            )));
        }
        sink.finish()?;
    }
    staging.commit()?;
    Ok(true)
}

struct Http {
    client: Client,
    token: Zeroizing<String>,
    base: String,
    timeout: Duration,
}

impl Http {
    /// A client for the intake at `from`, with the maintainer token read
    /// from `token_file`. `timeout` bounds the wait for an answer's headers
    /// and then each read of its body: a silent server fails, a slow one
    /// does not.
    fn connect(from: &str, token_file: &Path, timeout: Duration) -> Result<Http, Error> {
        let base = base_url(from)?;
        if timeout.is_zero() {
            return Err(Error::Usage(
                "--timeout 0s would fail every request: give e.g. 60s or 5m".into(),
            ));
        }
        let token = read_token(token_file)?;
        let client = Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(timeout)
            .user_agent(concat!("embargo/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| fetch_err(&base, e))?;
        Ok(Http {
            client,
            token,
            base,
            timeout,
        })
    }

    fn get(&self, url: &str, range_from: u64) -> Result<Response, Error> {
        let mut request = self.client.get(url).bearer_auth(self.token.as_str());
        if range_from > 0 {
            request = request.header(RANGE, format!("bytes={range_from}-"));
        }
        let response = request.send().map_err(|e| self.send_err(url, e))?;
        match response.status() {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(Error::Unauthorized {
                status: response.status().as_u16(),
            }),
            _ => Ok(response),
        }
    }

    /// What a failed request says: a timeout names `--timeout`.
    fn send_err(&self, url: &str, e: reqwest::Error) -> Error {
        if e.is_timeout() {
            return self.timeout_err(url, "before answering");
        }
        fetch_err(url, e)
    }

    fn timeout_err(&self, url: &str, when: &str) -> Error {
        Error::Fetch {
            url: url.to_string(),
            detail: format!(
                "the server sent nothing for {} s {when} (--timeout); run again later, or raise --timeout",
                self.timeout.as_secs()
            ),
        }
    }

    /// Tells the intake that report `id` is stored here, with the SHA-256 of
    /// each part read back from the local store (after its commit fsynced
    /// it), so that `delete_after_fetch` may remove the server's copy.
    fn confirm(&self, store: &dyn Store, root: &Path, id: &ReportId) -> Result<(), Error> {
        // What is hashed must be this store's own copy, not what a link
        // planted in its place points to (the store opens no part that is
        // a link, and the report directory must be a real one).
        real_dir(&root.join("reports").join(id.as_str()))?;
        let mut parts = serde_json::Map::new();
        for part in store.parts(id)? {
            let mut reader = store.open_part(id, &part.name)?;
            let mut hash = sha2::Sha256::default();
            io::copy(&mut reader, &mut hash).map_err(|source| Error::Read {
                path: PathBuf::from(id.as_str()).join(&part.name),
                source,
            })?;
            let digest = hex::encode(sha2::Digest::finalize(hash));
            parts.insert(part.name, serde_json::Value::String(digest));
        }
        let url = format!("{}/api/v1/sealed/{id}/fetched", self.base);
        let response = self
            .client
            .post(&url)
            .bearer_auth(self.token.as_str())
            .json(&serde_json::json!({ "parts": parts }))
            .send()
            .map_err(|e| self.send_err(&url, e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            return Err(Error::Unauthorized {
                status: status.as_u16(),
            });
        }
        let said = refusal_message(response);
        Err(Error::Fetch {
            url,
            detail: format!(
                "the intake did not accept that {id} is stored here ({status}: {said}); the local copy is kept, and the server keeps its copy"
            ),
        })
    }

    /// Saves what the intake publishes and the maintainer's tools need
    /// beside the store: the maintainers' certificates (`/keys.asc`, into
    /// `intake/keys/`, replaced each run) and the intake signing
    /// certificate (`intake/signing-key.asc`, pinned: a different one
    /// later is refused, never written over).
    fn save_public(&self, root: &Path) -> Result<(), Error> {
        let dir = root.join("intake");
        private_dir(&dir)?;
        private_dir(&dir.join("keys"))?;
        // An intake that publishes neither (an older one) leaves what is saved.
        let Some(signing) = self.public_file("/signing-key.asc")? else {
            return Ok(());
        };
        let pinned = dir.join("signing-key.asc");
        match fs::read(&pinned) {
            Ok(have) if certs_equal(&have, &signing) => {}
            Ok(_) => {
                return Err(Error::Signer {
                    path: pinned,
                    reason: "the intake now presents another signing certificate than the one saved at the first fetch; if the intake's key was really replaced, check the new one with its operator, then remove the saved file".into(),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                write_atomically(&pinned, &signing)?;
            }
            Err(source) => {
                return Err(Error::Read {
                    path: pinned,
                    source,
                });
            }
        }
        if let Some(keys) = self.public_file("/keys.asc")? {
            write_atomically(&dir.join("keys").join("intake-keys.asc"), &keys)?;
        }
        match self.policy()? {
            Some(policy) => write_atomically(&root.join(super::SAVED_POLICY), &policy),
            None => Ok(()),
        }
    }

    /// The intake's `[policy]` as JSON, checked; `None` from an intake that
    /// does not publish it.
    fn policy(&self) -> Result<Option<Vec<u8>>, Error> {
        let Some(body) = self.public_bytes("/api/v1/policy")? else {
            return Ok(None);
        };
        let parsed = serde_json::from_slice::<crate::seal::manifest::SealedPolicy>(&body);
        if body.len() as u64 > MAX_PUBLIC_BYTES || parsed.is_err() {
            return Err(Error::BadListing("/api/v1/policy is not a policy".into()));
        }
        Ok(Some(body))
    }

    /// A small public file of the intake, read up to one byte past
    /// [`MAX_PUBLIC_BYTES`]; `None` when the intake does not publish it.
    fn public_bytes(&self, path: &str) -> Result<Option<Vec<u8>>, Error> {
        self.get_small(path, MAX_PUBLIC_BYTES)
    }

    /// The answer to `GET path` (below the intake's base URL), read up to
    /// one byte past `max` (the caller refuses what is longer); `None`
    /// when the intake answers 404.
    fn get_small(&self, path: &str, max: u64) -> Result<Option<Vec<u8>>, Error> {
        let url = format!("{}{path}", self.base);
        let response = self.get(&url, 0)?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !response.status().is_success() {
            return Err(Error::Fetch {
                url,
                detail: format!("the server answered {}", response.status()),
            });
        }
        let mut body = Vec::new();
        response
            .take(max + 1)
            .read_to_end(&mut body)
            .map_err(|e| self.read_err(&url, e, 0))?;
        Ok(Some(body))
    }

    /// A public, armored certificate file of the intake (small); `None`
    /// when the intake does not publish it.
    fn public_file(&self, path: &str) -> Result<Option<Vec<u8>>, Error> {
        let Some(body) = self.public_bytes(path)? else {
            return Ok(None);
        };
        let certs = sequoia_openpgp::cert::CertParser::from_bytes(&body)
            .map(|p| p.collect::<Result<Vec<_>, _>>())
            .ok()
            .and_then(Result::ok);
        if body.len() as u64 > MAX_PUBLIC_BYTES || certs.is_none_or(|c| c.is_empty()) {
            return Err(Error::BadListing(format!(
                "{path} is not a certificate file"
            )));
        }
        Ok(Some(body))
    }

    /// The server's listing, fully validated before anything is written,
    /// and whether the intake wants stored reports confirmed.
    fn listing(&self) -> Result<(Vec<ListedParts>, bool, cases::StatusTimes), Error> {
        let url = format!("{}/api/v1/sealed", self.base);
        let response = self.get(&url, 0)?;
        if !response.status().is_success() {
            return Err(Error::Fetch {
                url,
                detail: format!("the server answered {}", response.status()),
            });
        }
        let mut body = Vec::new();
        response
            .take(MAX_LISTING_BYTES + 1)
            .read_to_end(&mut body)
            .map_err(|e| self.read_err(&url, e, 0))?;
        if body.len() as u64 > MAX_LISTING_BYTES {
            return Err(Error::BadListing(format!(
                "a listing larger than {MAX_LISTING_BYTES} bytes"
            )));
        }
        let reports = parse_listing(&body)?;
        let flags: ListingFlags = serde_json::from_slice(&body)
            .map_err(|e| Error::BadListing(format!("listing is not the expected JSON: {e}")))?;
        let statuses = cases::status_times(&body);
        Ok((reports, flags.confirm_fetched, statuses))
    }

    /// What a failed read of an answer's body says.
    fn read_err(&self, url: &str, e: io::Error, got: u64) -> Error {
        let timed_out = e.kind() == io::ErrorKind::TimedOut
            || e.get_ref()
                .and_then(|inner| inner.downcast_ref::<reqwest::Error>())
                .is_some_and(reqwest::Error::is_timeout);
        if timed_out {
            return self.timeout_err(url, &format!("after {got} bytes of the answer"));
        }
        Error::Fetch {
            url: url.to_string(),
            detail: format!("{e} after {got} bytes; run again to resume"),
        }
    }

    /// Makes `path` hold exactly `part.size` bytes of the part, resuming a
    /// partial file with `Range`. Returns the bytes transferred.
    fn download(
        &self,
        id: &ReportId,
        part: &PartInfo,
        path: &Path,
        progress: &dyn Progress,
    ) -> Result<u64, Error> {
        let url = format!("{}/api/v1/sealed/{id}/{}", self.base, part.name);
        let mut file = open_no_follow(
            OpenOptions::new()
                .create(true)
                .truncate(false)
                .read(true)
                .write(true)
                .mode(0o600),
            path,
        )?;
        if !file.metadata().map_err(write_err(path))?.is_file() {
            return Err(Error::Unsafe {
                path: path.to_path_buf(),
            });
        }
        let mut have = file.metadata().map_err(write_err(path))?.len();
        if have > part.size {
            have = 0;
        }
        progress.advance(have);
        if have == part.size {
            return Ok(0);
        }
        let mut response = self.get(&url, have)?;
        let resumed = response.status() == StatusCode::PARTIAL_CONTENT
            && have > 0
            && response
                .headers()
                .get(CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with(&format!("bytes {have}-")));
        if !resumed {
            if response.status() == StatusCode::RANGE_NOT_SATISFIABLE {
                response = self.get(&url, 0)?;
            }
            if response.status() != StatusCode::OK {
                return Err(Error::Fetch {
                    url,
                    detail: format!("the server answered {}", response.status()),
                });
            }
            progress.rewind(have);
            have = 0;
        }
        let expected = part.size - have;
        if let Some(length) = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            && length != expected
        {
            return Err(Error::BadListing(format!(
                "{id}/{} is sent as {length} bytes, {expected} expected from the listing",
                part.name
            )));
        }
        file.set_len(have).map_err(write_err(path))?;
        file.seek(SeekFrom::Start(have)).map_err(write_err(path))?;
        let mut buf = vec![0u8; COPY_BUFFER];
        let mut got = 0u64;
        loop {
            let n = match response.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.read_err(&url, e, got)),
            };
            got += n as u64;
            if got > expected {
                return Err(Error::BadListing(format!(
                    "{id}/{} is longer than the {} bytes listed",
                    part.name, part.size
                )));
            }
            file.write_all(&buf[..n]).map_err(write_err(path))?;
            progress.advance(n as u64);
        }
        if got != expected {
            return Err(Error::Fetch {
                url,
                detail: format!(
                    "the connection ended after {got} of {expected} bytes; run again to resume"
                ),
            });
        }
        file.sync_data().map_err(write_err(path))?;
        Ok(got)
    }
}

/// Parses and checks a `GET /api/v1/sealed` listing from the server (which
/// is not trusted to be well-formed): every report with a canonical ID,
/// listed once, with a manifest and attachments numbered without gaps.
pub fn parse_listing(body: &[u8]) -> Result<Vec<(ReportId, Vec<PartInfo>)>, Error> {
    let listing: Listing = serde_json::from_slice(body)
        .map_err(|e| Error::BadListing(format!("listing is not the expected JSON: {e}")))?;
    let mut out = Vec::with_capacity(listing.reports.len());
    let mut seen = std::collections::HashSet::new();
    for report in listing.reports {
        out.push(validate(report, &mut seen)?);
    }
    Ok(out)
}

/// Checks one listed report: a canonical ID, known part names each once,
/// a manifest, plausible sizes.
fn validate(
    report: ListedReport,
    seen: &mut std::collections::HashSet<String>,
) -> Result<(ReportId, Vec<PartInfo>), Error> {
    let shown: String = report
        .id
        .chars()
        .filter(|c| !c.is_control())
        .take(40)
        .collect();
    let id: ReportId = report
        .id
        .parse()
        .map_err(|_| Error::BadListing(format!("{shown:?} is not a report ID")))?;
    if id.as_str() != report.id || !seen.insert(report.id.clone()) {
        return Err(Error::BadListing(format!(
            "report ID {shown:?} is not canonical or listed twice"
        )));
    }
    if report.parts.len() > MAX_PARTS {
        return Err(Error::BadListing(format!(
            "{id} has {} parts",
            report.parts.len()
        )));
    }
    let mut names = std::collections::HashSet::new();
    for p in &report.parts {
        let limit = if p.name == "manifest.pgp" {
            MAX_MANIFEST_BYTES + 1024 * 1024
        } else {
            MAX_PART_BYTES
        };
        if !is_part_name(&p.name) || !names.insert(p.name.clone()) || p.size > limit {
            let name: String = p
                .name
                .chars()
                .filter(|c| !c.is_control())
                .take(40)
                .collect();
            return Err(Error::BadListing(format!(
                "{id} lists part {name:?} ({} bytes)",
                p.size
            )));
        }
    }
    if !names.contains("manifest.pgp") {
        return Err(Error::BadListing(format!("{id} has no manifest.pgp")));
    }
    // Attachments are numbered from 001 without gaps (docs/format.md): a listing
    // that leaves one out would make an incomplete local copy.
    for n in 1..names.len() {
        if !names.contains(&crate::store::attachment_part_name(n)) {
            return Err(Error::BadListing(format!(
                "{id} lists {} parts but not {}",
                names.len(),
                crate::store::attachment_part_name(n)
            )));
        }
    }
    Ok((id, report.parts))
}

/// The base URL without a trailing slash; plain HTTP only to this machine.
fn base_url(from: &str) -> Result<String, Error> {
    let url = reqwest::Url::parse(from).map_err(|e| {
        Error::Usage(format!(
            "--from {from:?} is not a URL ({e}): give e.g. https://security.example.org"
        ))
    })?;
    let host = url.host_str().unwrap_or_default();
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => {
            return Err(Error::Usage(format!(
                "refusing to send the fetch token over plain http to {from}: use https://"
            )));
        }
        other => {
            return Err(Error::Usage(format!(
                "--from must be an https:// URL, not {other}:"
            )));
        }
    }
    if url.query().is_some() || !url.username().is_empty() {
        return Err(Error::Usage(
            "--from must be a plain base URL, without query or user name".into(),
        ));
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

/// Reads the token: the first line of the file, without surrounding white
/// space (what `embargo token new` prints or writes with `--out`).
fn read_token(path: &Path) -> Result<Zeroizing<String>, Error> {
    let bytes = Zeroizing::new(fs::read(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?);
    let token = Zeroizing::new(token_from_file(&bytes).map_err(|why| {
        Error::Usage(format!(
            "{} does not hold a fetch token: {why}; put only the token printed by `embargo token new` on its first line",
            path.display()
        ))
    })?);
    if let Ok(meta) = fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            "{} is readable by other users: chmod 600 it",
            path.display()
        );
    }
    Ok(token)
}

/// The token on the first non-empty line of a token file's bytes, or why
/// there is none (never quoting the file, which may hold a secret).
fn token_from_file(bytes: &[u8]) -> Result<String, &'static str> {
    let text = std::str::from_utf8(bytes).map_err(|_| "it is not UTF-8 text")?;
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .ok_or("it is empty")?;
    if line.starts_with("token_sha256") {
        return Err("its first line is the server's token_sha256 setting, not the token");
    }
    if line.len() == 64 && line.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(
            "its first line looks like the token's SHA-256 (what the server keeps), not the token",
        );
    }
    if !line.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("its first line holds spaces or characters a token never has");
    }
    Ok(line.to_string())
}

/// Largest `/keys.asc` or `/signing-key.asc` accepted.
const MAX_PUBLIC_BYTES: u64 = 4 * 1024 * 1024;

/// Parses `{"events": [{"name", "size"}]}`, refusing names that are not
/// event names and sizes over the event limit.
/// The message of an intake's JSON refusal (cleaned, at most 300
/// characters), or "no explanation".
fn refusal_message(response: Response) -> String {
    let mut body = Vec::new();
    let _ = response.take(64 * 1024).read_to_end(&mut body);
    serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .map(|m| m.chars().filter(|c| !c.is_control()).take(300).collect())
        .unwrap_or_else(|| "no explanation".to_string())
}

/// Whether two certificate files hold the same certificates.
fn certs_equal(a: &[u8], b: &[u8]) -> bool {
    use sequoia_openpgp::Cert;
    match (Cert::from_bytes(a), Cert::from_bytes(b)) {
        (Ok(x), Ok(y)) => x.fingerprint() == y.fingerprint(),
        _ => false,
    }
}

/// Writes `bytes` to `path` through a temporary file, fsynced, renamed.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let tmp = path.with_extension(format!("tmp{:08x}", rand::random::<u32>()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(write_err(path))
}

fn fetch_err(url: &str, e: impl std::fmt::Display) -> Error {
    Error::Fetch {
        url: url.to_string(),
        detail: format!("{e}; check --from and that the intake is reachable"),
    }
}

fn write_err(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Write {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(id: &str, parts: &[(&str, u64)]) -> ListedReport {
        ListedReport {
            id: id.into(),
            parts: parts
                .iter()
                .map(|(n, s)| PartInfo {
                    name: n.to_string(),
                    size: *s,
                })
                .collect(),
        }
    }

    #[test]
    fn hostile_listings_are_refused() {
        let id = ReportId::random().to_string();
        let mut seen = std::collections::HashSet::new();
        assert!(
            validate(
                listed(&id, &[("manifest.pgp", 10), ("001.pgp", 5)]),
                &mut seen
            )
            .is_ok()
        );
        for bad in [
            listed(&id, &[("manifest.pgp", 10)]),         // listed twice
            listed("../../etc", &[("manifest.pgp", 10)]), // not an ID
            listed(
                &ReportId::random().to_string().to_lowercase(),
                &[("manifest.pgp", 1)],
            ), // not canonical
            listed(&ReportId::random().to_string(), &[("001.pgp", 1)]), // no manifest
            listed(
                &ReportId::random().to_string(),
                &[("manifest.pgp", 1), ("../x", 1)],
            ),
            listed(
                &ReportId::random().to_string(),
                &[("manifest.pgp", 1), ("001.pgp", 1), ("001.pgp", 1)],
            ),
            listed(
                &ReportId::random().to_string(),
                &[("manifest.pgp", MAX_MANIFEST_BYTES * 4)],
            ),
            listed(
                &ReportId::random().to_string(),
                &[("manifest.pgp", 1), ("001.pgp", u64::MAX)],
            ),
        ] {
            let shown = format!(
                "{:?}",
                bad.parts.iter().map(|p| &p.name).collect::<Vec<_>>()
            );
            assert!(
                matches!(validate(bad, &mut seen), Err(Error::BadListing(_))),
                "{shown}"
            );
        }
    }

    #[test]
    fn token_files_give_their_first_line_or_say_why_not() {
        let t = "embargo_0123abcd";
        for ok in [
            t.to_string(),
            format!("{t}\n"),
            format!("\n  {t}  \r\n"),
            format!("{t}\ntoken_sha256 = [\"00\"]\n"),
        ] {
            assert_eq!(token_from_file(ok.as_bytes()).as_deref(), Ok(t), "{ok:?}");
        }
        for (bad, why) in [
            ("", "it is empty"),
            ("\n \n", "it is empty"),
            (
                "token_sha256 = [\"ab\"]\nembargo_x",
                "its first line is the server's token_sha256 setting, not the token",
            ),
            (
                &"a".repeat(64)[..],
                "its first line looks like the token's SHA-256 (what the server keeps), not the token",
            ),
            (
                "embargo_x y",
                "its first line holds spaces or characters a token never has",
            ),
        ] {
            assert_eq!(token_from_file(bad.as_bytes()), Err(why), "{bad:?}");
        }
        assert_eq!(token_from_file(b"\xff\xfe"), Err("it is not UTF-8 text"));
    }

    #[test]
    fn tokens_only_travel_over_https_or_to_this_machine() {
        assert_eq!(
            base_url("https://example.org/intake/").unwrap(),
            "https://example.org/intake"
        );
        assert!(base_url("http://127.0.0.1:8080").is_ok());
        assert!(base_url("http://[::1]:8080/").is_ok());
        assert!(base_url("http://localhost:1/").is_ok());
        for bad in [
            "http://example.org",
            "ftp://127.0.0.1",
            "https://u:p@example.org",
            "https://example.org/?a=b",
            "nonsense",
        ] {
            assert!(matches!(base_url(bad), Err(Error::Usage(_))), "{bad}");
        }
    }
}
