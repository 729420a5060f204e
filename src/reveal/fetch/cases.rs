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
    pub status: StatusSent,
}

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
    let (events_fetched, events_sent, shared) = http.sync_events(store, id)?;
    let status = http.put_status(store, id)?;
    Ok(CaseSync {
        events_fetched,
        events_sent,
        shared,
        status,
    })
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
            let (got, sent, shared) = self.sync_events(store, &id)?;
            summary.events_fetched += got;
            summary.events_sent += sent;
            summary.shared += shared;
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
        let response = self
            .client
            .put(&url)
            .bearer_auth(self.token.as_str())
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(signed)
            .send()
            .map_err(|e| self.send_err(&url, e))?;
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

    /// Downloads the events of report `id` the local store lacks and posts
    /// the ones the intake lacks. An event's name is its identity, storing
    /// is idempotent on both sides, and nothing is deleted, so a run cut
    /// off anywhere loses and duplicates nothing: the next run finishes.
    pub(super) fn sync_events(
        &self,
        store: &dyn Store,
        id: &ReportId,
    ) -> Result<(usize, usize, usize), Error> {
        let listed = self.get_small(&format!("/api/v1/sealed/{id}/events"), MAX_LISTING_BYTES)?;
        // Not on the intake (any more): nothing to exchange.
        let Some(body) = listed else {
            return Ok((0, 0, 0));
        };
        let remote = parse_event_listing(&body)?;
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
        Ok((got, sent, shared))
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
            let url = format!("{}/api/v1/sealed/{id}/session-keys", self.base);
            let response = self
                .client
                .post(&url)
                .query(&[("part", name.as_str())])
                .bearer_auth(self.token.as_str())
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .body(added)
                .send()
                .map_err(|e| self.send_err(&url, e))?;
            if !response.status().is_success() {
                return Err(Error::Fetch {
                    url,
                    detail: format!(
                        "the intake did not take the shared session keys of {name} ({}); they stay here and are sent again next time",
                        response.status()
                    ),
                });
            }
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
        let response = self
            .client
            .post(&url)
            .query(&[("name", name)])
            .bearer_auth(self.token.as_str())
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(bytes)
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
