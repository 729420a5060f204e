//! `embargo fetch`: copies complete sealed reports (ciphertext only) from an
//! intake's `/api/v1/sealed` routes into a local store.
//!
//! Everything the server says is untrusted: IDs and part names are checked
//! before they touch a path, sizes are enforced byte for byte. Each part is
//! downloaded into a private `ROOT/.fetch-partial/<ID>/` (resumed with
//! `Range` after an interruption), and a report enters the store only whole,
//! through `Store::stage` → `create_part` → `commit`.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::ProgressBar;
use reqwest::StatusCode;
use reqwest::blocking::{Client, Response};
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, RANGE};
use serde::Deserialize;
use zeroize::Zeroizing;

use super::Error;
use crate::id::ReportId;
use crate::seal::reader::MAX_MANIFEST_BYTES;
use crate::store::{FsStore, PartInfo, Store, StoreError, is_part_name};

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

/// What `embargo fetch` was asked to do.
#[derive(Clone, Debug)]
pub struct FetchArgs {
    /// The intake's base URL, e.g. `https://security.example.org`.
    pub from: String,
    pub token_file: PathBuf,
    /// The local store root (holding `reports/`).
    pub store: PathBuf,
}

/// What a fetch run did.
#[derive(Debug, Default)]
pub struct FetchSummary {
    pub fetched: Vec<ReportId>,
    pub already_present: usize,
    pub bytes: u64,
}

#[derive(Deserialize)]
struct Listing {
    reports: Vec<ListedReport>,
}

#[derive(Deserialize)]
struct ListedReport {
    id: String,
    parts: Vec<PartInfo>,
}

/// Downloads every complete report missing from the local store.
pub fn fetch(args: &FetchArgs) -> Result<FetchSummary, Error> {
    let base = base_url(&args.from)?;
    let token = read_token(&args.token_file)?;
    let client = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(None)
        .user_agent(concat!("embargo/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| fetch_err(&base, e))?;
    let http = Http {
        client,
        token,
        base,
    };

    // The listing comes first: a refused token writes nothing at all.
    let reports = http.listing()?;

    let store = FsStore::open(&args.store)?;
    store.remove_stale_staging()?;
    let partial_root = args.store.join(PARTIAL_DIR);
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&partial_root)
        .map_err(write_err(&partial_root))?;
    fs::set_permissions(&partial_root, fs::Permissions::from_mode(0o700))
        .map_err(write_err(&partial_root))?;
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(partial_root.join(".lock"))
        .map_err(write_err(&partial_root))?;
    if lock.try_lock().is_err() {
        return Err(Error::Fetch {
            url: http.base.clone(),
            detail: format!(
                "another `embargo fetch` is writing to {}: wait for it to finish",
                args.store.display()
            ),
        });
    }

    let mut summary = FetchSummary::default();
    let missing: u64 = reports
        .iter()
        .filter(|(id, _)| !store.contains(id).unwrap_or(false))
        .flat_map(|(_, parts)| parts.iter().map(|p| p.size))
        .sum();
    let bar = super::progress_bar(missing);
    for (id, parts) in reports {
        let dir = partial_root.join(id.as_str());
        if store.contains(&id)? {
            // A run killed right after committing may have left its downloads.
            let _ = fs::remove_dir_all(&dir);
            summary.already_present += 1;
            continue;
        }
        DirBuilder::new()
            .mode(0o700)
            .recursive(true)
            .create(&dir)
            .map_err(write_err(&dir))?;
        for part in &parts {
            bar.set_message(format!("{id}/{}", part.name));
            summary.bytes += http.download(&id, part, &dir.join(&part.name), &bar)?;
        }
        if commit(&store, &id, &parts, &dir)? {
            summary.fetched.push(id);
        } else {
            summary.already_present += 1;
        }
        fs::remove_dir_all(&dir).map_err(write_err(&dir))?;
    }
    bar.finish_and_clear();
    Ok(summary)
}

/// Moves the downloaded parts of one report into the store, manifest last.
/// Returns false when the report appeared meanwhile.
fn commit(store: &FsStore, id: &ReportId, parts: &[PartInfo], dir: &Path) -> Result<bool, Error> {
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
        let mut file = File::open(&path).map_err(|source| Error::Read {
            path: path.clone(),
            source,
        })?;
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
}

impl Http {
    fn get(&self, url: &str, range_from: u64) -> Result<Response, Error> {
        let mut request = self.client.get(url).bearer_auth(self.token.as_str());
        if range_from > 0 {
            request = request.header(RANGE, format!("bytes={range_from}-"));
        }
        let response = request.send().map_err(|e| fetch_err(url, e))?;
        match response.status() {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(Error::Unauthorized {
                status: response.status().as_u16(),
            }),
            _ => Ok(response),
        }
    }

    /// The server's listing, fully validated before anything is written.
    fn listing(&self) -> Result<Vec<(ReportId, Vec<PartInfo>)>, Error> {
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
            .map_err(|e| fetch_err(&url, e))?;
        if body.len() as u64 > MAX_LISTING_BYTES {
            return Err(Error::BadListing(format!(
                "a listing larger than {MAX_LISTING_BYTES} bytes"
            )));
        }
        parse_listing(&body)
    }

    /// Makes `path` hold exactly `part.size` bytes of the part, resuming a
    /// partial file with `Range`. Returns the bytes transferred.
    fn download(
        &self,
        id: &ReportId,
        part: &PartInfo,
        path: &Path,
        bar: &ProgressBar,
    ) -> Result<u64, Error> {
        let url = format!("{}/api/v1/sealed/{id}/{}", self.base, part.name);
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(0o600)
            .open(path)
            .map_err(write_err(path))?;
        let mut have = file.metadata().map_err(write_err(path))?.len();
        if have > part.size {
            have = 0;
        }
        bar.inc(have);
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
            bar.set_position(bar.position().saturating_sub(have));
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
                Err(e) => {
                    return Err(Error::Fetch {
                        url,
                        detail: format!("{e} after {got} bytes; run again to resume"),
                    });
                }
            };
            got += n as u64;
            if got > expected {
                return Err(Error::BadListing(format!(
                    "{id}/{} is longer than the {} bytes listed",
                    part.name, part.size
                )));
            }
            file.write_all(&buf[..n]).map_err(write_err(path))?;
            bar.inc(n as u64);
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
    // Attachments are numbered from 001 without gaps (DESIGN §3): a listing
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

/// Reads the token: the file's content without surrounding white space.
fn read_token(path: &Path) -> Result<Zeroizing<String>, Error> {
    let bytes = Zeroizing::new(fs::read(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?);
    let text = std::str::from_utf8(&bytes).map_err(|_| {
        Error::Usage(format!(
            "{} does not hold a token (not UTF-8)",
            path.display()
        ))
    })?;
    let token = Zeroizing::new(text.trim().to_string());
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::Usage(format!(
            "{} does not hold a token (make one with `embargo token new`)",
            path.display()
        )));
    }
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
