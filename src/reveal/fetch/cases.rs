//! The case side of `embargo fetch`, and of the case commands that talk to
//! an intake: events go both ways, session keys added by `case share` go
//! to the side that lacks them, and the signed case status goes up.
//!
//! The local store is the outbox. An event's name is its identity, storing
//! is idempotent on both sides, and nothing is deleted, so a run cut off
//! anywhere loses and duplicates nothing: the next run finishes.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::RANGE;
use serde::Deserialize;

use super::{Error, FetchSummary, Http, ListedParts, MAX_LISTING_BYTES};
use crate::id::ReportId;
use crate::store::{PartInfo, Store};

/// An intake the case commands send what they write to at once.
#[derive(Clone, Debug)]
pub struct Intake {
    /// The intake's base URL.
    pub from: String,
    pub token_file: PathBuf,
    pub timeout: Duration,
}

/// What happened to the local case status on the intake.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StatusSent {
    /// There is none here, or the intake's is as new.
    #[default]
    Nothing,
    /// The intake took it.
    Sent,
    /// The intake holds events (or a status) newer than it: computing it
    /// again from every event (`embargo case sync`) fixes that.
    Stale,
}

/// What one case's exchange with the intake did.
#[derive(Clone, Debug, Default)]
pub struct CaseSync {
    pub events_fetched: usize,
    pub events_sent: usize,
    pub shared: usize,
    /// Follow-up files (from the reporter, through the intake) downloaded.
    pub files_fetched: usize,
    /// Their ciphertext bytes.
    pub files_bytes: u64,
    pub status: StatusSent,
}

/// Most follow-up files one report's listing may name (each
/// `reporter-message` event lists at most 100).
const MAX_LISTED_FILES: usize = 100_000;

/// When each report's case status on the intake was computed, from its
/// listing (`status_at`); reports without one are absent.
pub type StatusTimes = BTreeMap<ReportId, String>;

/// The `status_at` of every report in a listing (its reports are validated
/// by `parse_listing`); anything malformed counts as no status.
pub fn status_times(listing: &[u8]) -> StatusTimes {
    #[derive(Deserialize)]
    struct Listing {
        reports: Vec<Listed>,
    }
    #[derive(Deserialize)]
    struct Listed {
        id: String,
        #[serde(default)]
        status_at: Option<String>,
    }
    let Ok(listing) = serde_json::from_slice::<Listing>(listing) else {
        return StatusTimes::new();
    };
    listing
        .reports
        .into_iter()
        .filter_map(|r| Some((r.id.parse().ok()?, r.status_at?)))
        .collect()
}

/// Exchanges the events of report `id` with `intake` and sends the local
/// case status: what a case command does before and after it writes.
pub fn sync_case(intake: &Intake, store: &dyn Store, id: &ReportId) -> Result<CaseSync, Error> {
    let http = Http::connect(&intake.from, &intake.token_file, intake.timeout)?;
    let mut done = http.sync_events(store, id)?;
    done.status = http.put_status(store, id)?;
    Ok(done)
}

impl Http {
    /// Every case both sides hold: events both ways, then the session keys
    /// `case share` added (the smaller side of a part gets them), then the
    /// local case status where it is newer than the intake's.
    pub(super) fn sync_cases(
        &self,
        store: &dyn Store,
        listed: &[ListedParts],
        statuses: &StatusTimes,
        summary: &mut FetchSummary,
    ) -> Result<(), Error> {
        for id in store.list()? {
            let done = self.sync_events(store, &id)?;
            summary.events_fetched += done.events_fetched;
            summary.events_sent += done.events_sent;
            summary.shared += done.shared;
            summary.files_fetched += done.files_fetched;
            summary.files_bytes += done.files_bytes;
        }
        for (id, parts) in listed {
            if !store.contains(id)? {
                continue;
            }
            let local = store.parts(id)?;
            for part in parts {
                if let Some(mine) = local.iter().find(|p| p.name == part.name) {
                    summary.shared += self.sync_share(store, id, part, mine.size)?;
                }
            }
            if newer_here(store, id, statuses.get(id)) {
                match self.put_status(store, id)? {
                    StatusSent::Sent => summary.statuses_sent += 1,
                    StatusSent::Stale => summary.statuses_stale.push(id.clone()),
                    StatusSent::Nothing => {}
                }
            }
        }
        Ok(())
    }

    /// Sends the local case status of `id`, if there is one.
    fn put_status(&self, store: &dyn Store, id: &ReportId) -> Result<StatusSent, Error> {
        let Some(signed) = store.status(id)? else {
            return Ok(StatusSent::Nothing);
        };
        let url = format!("{}/api/v1/sealed/{id}/status", self.base);
        let response = self.send_bytes(self.client.put(&url), &url, signed)?;
        match response.status() {
            StatusCode::CREATED => Ok(StatusSent::Sent),
            StatusCode::OK | StatusCode::NOT_FOUND => Ok(StatusSent::Nothing),
            StatusCode::CONFLICT => Ok(StatusSent::Stale),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(Error::Unauthorized {
                status: response.status().as_u16(),
            }),
            status => {
                let said = super::refusal_message(response);
                Err(Error::Fetch {
                    url,
                    detail: format!(
                        "the intake did not take the case status of {id} ({status}: {said}); it stays here and is sent again next time"
                    ),
                })
            }
        }
    }

    /// Downloads the follow-up files and then the events of report `id`
    /// the local store lacks, and posts the events the intake lacks. An
    /// event's name is its identity, storing is idempotent on both sides,
    /// and nothing is deleted, so a run cut off anywhere loses and
    /// duplicates nothing: the next run finishes. The intake stores a
    /// follow-up's files before the event naming them, so files listed
    /// after the events include those of every event listed, and they are
    /// stored here before it: a fetched event never names a missing file.
    pub(super) fn sync_events(&self, store: &dyn Store, id: &ReportId) -> Result<CaseSync, Error> {
        let mut done = CaseSync::default();
        let listed = self.get_small(&format!("/api/v1/sealed/{id}/events"), MAX_LISTING_BYTES)?;
        // Not on the intake (any more): nothing to exchange.
        let Some(body) = listed else {
            return Ok(done);
        };
        let remote = parse_event_listing(&body)?;
        self.sync_files(store, id, &mut done)?;
        let local_events = store.events(id)?;
        let mut shared = 0;
        for event in &remote {
            if let Some(mine) = local_events.iter().find(|l| l.name == event.name) {
                shared += self.sync_share(store, id, event, mine.size)?;
            }
        }
        let local: Vec<String> = local_events.into_iter().map(|e| e.name).collect();
        let mut got = 0;
        for event in remote.iter().filter(|e| !local.contains(&e.name)) {
            let bytes = self.event_bytes(id, event)?;
            if store.add_event(id, &event.name, &bytes)? {
                got += 1;
            }
        }
        let mut sent = 0;
        for name in local
            .iter()
            .filter(|n| !remote.iter().any(|e| &e.name == *n))
        {
            let mut bytes = Vec::new();
            store
                .open_event(id, name)?
                .take(crate::case::sealed::MAX_EVENT_CIPHERTEXT as u64)
                .read_to_end(&mut bytes)
                .map_err(|source| Error::Read {
                    path: PathBuf::from(id.as_str()).join("events").join(name),
                    source,
                })?;
            self.post_event(id, name, bytes)?;
            sent += 1;
        }
        done.events_fetched = got;
        done.events_sent = sent;
        done.shared += shared;
        Ok(done)
    }

    /// Downloads the follow-up files of report `id` that the local store
    /// lacks, each streamed into the store (never held whole) and exactly
    /// as large as listed. Files only come from the intake: maintainers
    /// never make them.
    fn sync_files(
        &self,
        store: &dyn Store,
        id: &ReportId,
        done: &mut CaseSync,
    ) -> Result<(), Error> {
        let Some(body) =
            self.get_small(&format!("/api/v1/sealed/{id}/files"), MAX_LISTING_BYTES)?
        else {
            // An intake from before follow-ups: it has none.
            return Ok(());
        };
        let remote = parse_file_listing(&body)?;
        let local = store.files(id)?;
        for file in &remote {
            match local.iter().find(|l| l.name == file.name) {
                Some(mine) => done.shared += self.sync_file_share(store, id, file, mine.size)?,
                None => {
                    if self.download_file(store, id, file)? {
                        done.files_fetched += 1;
                        done.files_bytes += file.size;
                    }
                }
            }
        }
        Ok(())
    }

    /// Streams follow-up file `file` of `id` into the store; `false` when
    /// another run stored it meanwhile.
    fn download_file(
        &self,
        store: &dyn Store,
        id: &ReportId,
        file: &PartInfo,
    ) -> Result<bool, Error> {
        use std::io::Write;
        let url = format!("{}/api/v1/sealed/{id}/files/{}", self.base, file.name);
        let mut response = self.get(&url, 0)?;
        if response.status() != StatusCode::OK {
            return Err(Error::Fetch {
                url,
                detail: format!("the server answered {}", response.status()),
            });
        }
        if let Some(length) = response.content_length()
            && length != file.size
        {
            return Err(Error::BadListing(format!(
                "follow-up file {id}/files/{} is sent as {length} bytes, {} listed",
                file.name, file.size
            )));
        }
        // Dropped unfinished (on any error below), the store removes it.
        let mut sink = store.create_file(id, &file.name)?;
        let mut buf = vec![0u8; super::COPY_BUFFER];
        let mut got = 0u64;
        loop {
            let n = match response.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.read_err(&url, e, got)),
            };
            got += n as u64;
            if got > file.size {
                return Err(Error::BadListing(format!(
                    "follow-up file {id}/files/{} is longer than the {} bytes listed",
                    file.name, file.size
                )));
            }
            sink.write_all(&buf[..n]).map_err(|source| Error::Write {
                path: PathBuf::from(id.as_str()).join("files").join(&file.name),
                source,
            })?;
        }
        if got != file.size {
            return Err(Error::Fetch {
                url,
                detail: format!(
                    "the connection ended after {got} of {} bytes; run again to fetch it",
                    file.size
                ),
            });
        }
        match sink.finish() {
            Ok(_) => Ok(true),
            // Another fetch or case command of this store was quicker.
            Err(_) if store.files(id)?.iter().any(|l| l.name == file.name) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Brings part `remote` (as the intake lists it) and the local copy
    /// of `local_size` bytes to the same session keys: the intake gets the
    /// ones added here, or the local store those added there. Only added
    /// session keys ever move; anything else is refused by both sides.
    pub(super) fn sync_share(
        &self,
        store: &dyn Store,
        id: &ReportId,
        remote: &PartInfo,
        local_size: u64,
    ) -> Result<usize, Error> {
        use crate::seal::share::{added_keys, only_headers_added};
        if remote.size == local_size {
            return Ok(0);
        }
        let name = &remote.name;
        let read_local = || -> Result<Vec<u8>, Error> {
            let mut reader = if crate::store::is_event_name(name) {
                store.open_event(id, name)?
            } else {
                store.open_part(id, name)?
            };
            let mut bytes = Vec::new();
            reader
                .read_to_end(&mut bytes)
                .map_err(|source| Error::Read {
                    path: PathBuf::from(id.as_str()).join(name),
                    source,
                })?;
            Ok(bytes)
        };
        if local_size > remote.size {
            let local = read_local()?;
            let Some(added) = added_keys(remote.size, &local) else {
                return Err(Error::BadListing(format!(
                    "{id}/{name} differs from the intake's copy by more than session keys"
                )));
            };
            self.post_session_keys(id, name, added)?;
            return Ok(1);
        }
        let path = if crate::store::is_event_name(name) {
            format!("events/{name}")
        } else {
            name.clone()
        };
        let url = format!("{}/api/v1/sealed/{id}/{path}", self.base);
        let response = self.get(&url, 0)?;
        if !response.status().is_success() {
            return Err(Error::Fetch {
                url,
                detail: format!("the server answered {}", response.status()),
            });
        }
        let mut theirs = Vec::new();
        response
            .take(remote.size + 1)
            .read_to_end(&mut theirs)
            .map_err(|e| self.read_err(&url, e, 0))?;
        if theirs.len() as u64 != remote.size {
            return Err(Error::BadListing(format!(
                "{id}/{name} is not the size listed"
            )));
        }
        store.replace_part(id, name, &theirs, &only_headers_added)?;
        Ok(1)
    }

    /// Sends `request` (to `url`) with the token and `body` as
    /// `application/octet-stream`: a case status, an event, session keys.
    fn send_bytes(
        &self,
        request: reqwest::blocking::RequestBuilder,
        url: &str,
        body: Vec<u8>,
    ) -> Result<reqwest::blocking::Response, Error> {
        request
            .bearer_auth(self.token.as_str())
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(body)
            .send()
            .map_err(|e| self.send_err(url, e))
    }

    /// Sends session keys added here to part, event or file (`files/NAME`)
    /// `name` of `id` to the intake.
    fn post_session_keys(&self, id: &ReportId, name: &str, added: Vec<u8>) -> Result<(), Error> {
        let url = format!("{}/api/v1/sealed/{id}/session-keys", self.base);
        let request = self.client.post(&url).query(&[("part", name)]);
        let response = self.send_bytes(request, &url, added)?;
        if !response.status().is_success() {
            return Err(Error::Fetch {
                url,
                detail: format!(
                    "the intake did not take the shared session keys of {name} ({}); they stay here and are sent again next time",
                    response.status()
                ),
            });
        }
        Ok(())
    }

    /// [`Http::sync_share`] for follow-up file `remote` of `id`, which may
    /// be large: only the heads of both copies are read (the session keys
    /// and the start of the encrypted data, at most
    /// [`MAX_HEAD_BYTES`](crate::seal::share::MAX_HEAD_BYTES)), and the
    /// added session keys are inserted in front of the encrypted data,
    /// which the store copies unchanged.
    fn sync_file_share(
        &self,
        store: &dyn Store,
        id: &ReportId,
        remote: &PartInfo,
        local_size: u64,
    ) -> Result<usize, Error> {
        use crate::seal::share::{added_keys_in_head, check_added, read_head};
        if remote.size == local_size {
            return Ok(0);
        }
        let part = crate::store::file_part(&remote.name);
        let differs = || {
            Error::BadListing(format!(
                "{id}/{part} differs from the intake's copy by more than session keys"
            ))
        };
        let mut reader = store.open_file(id, &remote.name)?;
        let local = read_head(&mut reader).map_err(|_| differs())?;
        drop(reader);
        if local_size > remote.size {
            let added = added_keys_in_head(remote.size, local_size, &local).ok_or_else(differs)?;
            self.post_session_keys(id, &part, added)?;
            return Ok(1);
        }
        let theirs = self.file_head(id, remote)?;
        let (offset, added) =
            keys_added_there(&local, local_size, &theirs, remote.size).ok_or_else(differs)?;
        check_added(added).map_err(|_| differs())?;
        store.insert_into_part(id, &part, local_size, offset, added)?;
        Ok(1)
    }

    /// The first bytes of the intake's copy of follow-up file `file` (as
    /// many as a head may have), through `Range`.
    fn file_head(&self, id: &ReportId, file: &PartInfo) -> Result<Vec<u8>, Error> {
        use crate::seal::share::MAX_HEAD_BYTES;
        let url = format!("{}/api/v1/sealed/{id}/files/{}", self.base, file.name);
        let want = file.size.min(MAX_HEAD_BYTES as u64);
        let response = self
            .client
            .get(&url)
            .bearer_auth(self.token.as_str())
            .header(RANGE, format!("bytes=0-{}", want.saturating_sub(1)))
            .send()
            .map_err(|e| self.send_err(&url, e))?;
        if !matches!(
            response.status(),
            StatusCode::OK | StatusCode::PARTIAL_CONTENT
        ) {
            return Err(Error::Fetch {
                url,
                detail: format!("the server answered {}", response.status()),
            });
        }
        let mut head = Vec::new();
        response
            .take(want)
            .read_to_end(&mut head)
            .map_err(|e| self.read_err(&url, e, 0))?;
        Ok(head)
    }

    /// One event's ciphertext, exactly as large as listed.
    fn event_bytes(&self, id: &ReportId, event: &PartInfo) -> Result<Vec<u8>, Error> {
        let url = format!("{}/api/v1/sealed/{id}/events/{}", self.base, event.name);
        let response = self.get(&url, 0)?;
        if !response.status().is_success() {
            return Err(Error::Fetch {
                url,
                detail: format!("the server answered {}", response.status()),
            });
        }
        let mut bytes = Vec::new();
        response
            .take(event.size + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| self.read_err(&url, e, 0))?;
        if bytes.len() as u64 != event.size {
            return Err(Error::BadListing(format!(
                "event {} of {id} has {} bytes, the listing said {}",
                event.name,
                bytes.len(),
                event.size
            )));
        }
        Ok(bytes)
    }

    fn post_event(&self, id: &ReportId, name: &str, bytes: Vec<u8>) -> Result<(), Error> {
        let url = format!("{}/api/v1/sealed/{id}/events", self.base);
        let request = self.client.post(&url).query(&[("name", name)]);
        let response = self.send_bytes(request, &url, bytes)?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            return Err(Error::Unauthorized {
                status: status.as_u16(),
            });
        }
        Err(Error::Fetch {
            url,
            detail: format!(
                "the intake did not take event {name} of {id} ({status}); it stays here and is sent again next time"
            ),
        })
    }
}

/// Whether the local case status of `id` is newer than the intake's
/// (`theirs`, its `status_at`), or the intake has none.
fn newer_here(store: &dyn Store, id: &ReportId, theirs: Option<&String>) -> bool {
    use crate::case::status::read_stored;
    use crate::clock::parse_rfc3339;
    let Some(mine) = store
        .status(id)
        .ok()
        .flatten()
        .and_then(|s| read_stored(&s, id))
        .and_then(|s| s.time())
    else {
        return false;
    };
    theirs
        .and_then(|t| parse_rfc3339(t))
        .is_none_or(|t| mine > t)
}

/// Where the session keys the intake's copy (`theirs_head`, of
/// `theirs_len` bytes) has beyond the local one (`mine_head`, of
/// `mine_len` bytes) go in the local copy, and what they are: both heads
/// must agree on everything but session keys inserted right before the
/// encrypted data (as far as both heads reach into it).
fn keys_added_there<'a>(
    mine_head: &[u8],
    mine_len: u64,
    theirs_head: &'a [u8],
    theirs_len: u64,
) -> Option<(u64, &'a [u8])> {
    use crate::seal::share::body_offset;
    let grown = usize::try_from(theirs_len.checked_sub(mine_len)?).ok()?;
    let mine_body = body_offset(mine_head).ok()?;
    let theirs_body = body_offset(theirs_head).ok()?;
    if theirs_body.checked_sub(grown)? != mine_body
        || mine_head[..mine_body] != theirs_head[..mine_body]
    {
        return None;
    }
    let (ours, their) = (&mine_head[mine_body..], &theirs_head[theirs_body..]);
    let common = ours.len().min(their.len());
    (ours[..common] == their[..common])
        .then_some((mine_body as u64, &theirs_head[mine_body..theirs_body]))
}

/// Parses `{"files": [{"name", "size"}]}`, refusing names that are not
/// follow-up file names, names listed twice, sizes over the part limit
/// and more than [`MAX_LISTED_FILES`] files.
pub fn parse_file_listing(body: &[u8]) -> Result<Vec<PartInfo>, Error> {
    #[derive(Deserialize)]
    struct Listing {
        files: Vec<PartInfo>,
    }
    let listing: Listing = serde_json::from_slice(body)
        .map_err(|e| Error::BadListing(format!("file listing is not the expected JSON: {e}")))?;
    if listing.files.len() > MAX_LISTED_FILES {
        return Err(Error::BadListing(format!(
            "a file listing of {} files (at most {MAX_LISTED_FILES})",
            listing.files.len()
        )));
    }
    let mut seen = std::collections::HashSet::new();
    for f in &listing.files {
        if !crate::store::is_file_name(&f.name)
            || f.size > super::MAX_PART_BYTES
            || !seen.insert(f.name.as_str())
        {
            return Err(Error::BadListing(format!(
                "a follow-up file listed as {:?} of {} bytes (or listed twice)",
                f.name
                    .chars()
                    .filter(|c| !c.is_control())
                    .take(40)
                    .collect::<String>(),
                f.size
            )));
        }
    }
    Ok(listing.files)
}

fn parse_event_listing(body: &[u8]) -> Result<Vec<PartInfo>, Error> {
    #[derive(Deserialize)]
    struct Listing {
        events: Vec<PartInfo>,
    }
    let listing: Listing = serde_json::from_slice(body)
        .map_err(|e| Error::BadListing(format!("event listing is not the expected JSON: {e}")))?;
    for e in &listing.events {
        if !crate::store::is_event_name(&e.name)
            || e.size > crate::case::sealed::MAX_EVENT_CIPHERTEXT as u64
        {
            return Err(Error::BadListing(format!(
                "an event listed as {:?} of {} bytes",
                e.name.chars().take(40).collect::<String>(),
                e.size
            )));
        }
    }
    Ok(listing.events)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(files: &[(&str, u64)]) -> Vec<u8> {
        let files: Vec<serde_json::Value> = files
            .iter()
            .map(|(name, size)| serde_json::json!({ "name": name, "size": size }))
            .collect();
        serde_json::to_vec(&serde_json::json!({ "files": files })).unwrap()
    }

    #[test]
    fn hostile_file_listings_are_refused() {
        let good = format!("{}.pgp", "a1".repeat(16));
        assert_eq!(
            parse_file_listing(&listing(&[(&good, 10)])).unwrap(),
            vec![PartInfo {
                name: good.clone(),
                size: 10
            }]
        );
        assert!(parse_file_listing(&listing(&[])).unwrap().is_empty());
        let upper = format!("{}.pgp", "A1".repeat(16));
        for bad in [
            listing(&[("../../etc/passwd", 1)]),
            listing(&[(&upper, 1)]),
            listing(&[("001.pgp", 1)]),
            listing(&[(&format!("files/{good}"), 1)]),
            listing(&[(&good, super::super::MAX_PART_BYTES + 1)]),
            listing(&[(&good, 1), (&good, 1)]),
            b"{\"files\": 3}".to_vec(),
            b"not json".to_vec(),
        ] {
            assert!(
                matches!(parse_file_listing(&bad), Err(Error::BadListing(_))),
                "{}",
                String::from_utf8_lossy(&bad)
            );
        }
        let many: Vec<(String, u64)> = (0..=MAX_LISTED_FILES)
            .map(|n| (format!("{n:032x}.pgp"), 1))
            .collect();
        let many: Vec<(&str, u64)> = many.iter().map(|(n, s)| (n.as_str(), *s)).collect();
        assert!(parse_file_listing(&listing(&many)).is_err());
    }
}
