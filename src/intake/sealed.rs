//! The maintainers' fetch routes: list complete reports, download their
//! ciphertext parts (with `Range`), and confirm a report was stored safely
//! (the only thing that lets `delete_after_fetch` remove it), behind a
//! bearer token.

use std::io::{Read, Seek, SeekFrom};

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::json;
use tokio::sync::mpsc;

use super::error::Refusal;
use super::state::AppState;
use crate::id::ReportId;
use crate::store::{PartInfo, PartReader, Store, StoreError, is_part_name};

/// Bytes read from a part per chunk sent.
const READ_CHUNK: usize = 64 * 1024;

/// Checks the maintainer's bearer token; a refusal is counted.
pub(crate) fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), Refusal> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match token {
        Some(t) if !t.is_empty() && state.token_ok(t) => Ok(()),
        _ => {
            let refusal = Refusal::Unauthorized;
            if let Some(label) = refusal.metric() {
                state.metrics().rejected(label);
            }
            Err(refusal)
        }
    }
}

/// The whole body of a small maintainer upload (an event, a case status,
/// a fetch confirmation), at most `limit` bytes: `too_large` when the
/// announced length is over it, before a byte is read, or when the body
/// grows past it.
pub(super) async fn small_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    too_large: Refusal,
) -> Result<Bytes, Refusal> {
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > limit as u64) {
        return Err(too_large);
    }
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| too_large)
}

/// The report a maintainer request names: the bearer token is checked
/// first, then the ID (one that is not an ID is not found).
pub(super) fn authorized_report(
    state: &AppState,
    headers: &HeaderMap,
    id: &str,
) -> Result<ReportId, Refusal> {
    authorize(state, headers)?;
    id.parse().map_err(|_| Refusal::NotFound)
}

/// [`authorized_report`] for a request about one item of the report,
/// `name`, which must be a name `is_name` accepts (else it is not found).
fn authorized_item(
    state: &AppState,
    headers: &HeaderMap,
    id: &str,
    name: &str,
    is_name: fn(&str) -> bool,
) -> Result<ReportId, Refusal> {
    let id = authorized_report(state, headers, id)?;
    if !is_name(name) {
        return Err(Refusal::NotFound);
    }
    Ok(id)
}

/// Runs `work` with the store on a blocking thread.
pub(super) async fn on_store<T: Send + 'static>(
    state: &AppState,
    work: impl FnOnce(&dyn Store) -> T + Send + 'static,
) -> Result<T, Refusal> {
    let store = state.store().clone();
    tokio::task::spawn_blocking(move || work(store.as_ref()))
        .await
        .map_err(|_| Refusal::Internal)
}

/// [`on_store`] for a read whose store errors are answered as
/// [`store_error`] says.
pub(super) async fn from_store<T: Send + 'static>(
    state: &AppState,
    read: impl FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, Refusal> {
    on_store(state, read).await?.map_err(store_error)
}

/// The answer `{"<key>": [...]}` to a maintainer's request for the names
/// and sizes `list` finds for report `id` (its events, its follow-up files).
async fn listing(
    state: &AppState,
    headers: &HeaderMap,
    id: &str,
    key: &str,
    list: impl FnOnce(&dyn Store, &ReportId) -> Result<Vec<PartInfo>, StoreError> + Send + 'static,
) -> Result<Response, Refusal> {
    let id = authorized_report(state, headers, id)?;
    let listed = from_store(state, move |store| list(store, &id)).await?;
    let mut answer = serde_json::Map::new();
    answer.insert(key.to_owned(), json!(listed));
    Ok(Json(answer).into_response())
}

pub(super) fn store_error(e: StoreError) -> Refusal {
    match e {
        StoreError::NotFound(_) | StoreError::BadPartName(_) | StoreError::BadEventName(_) => {
            Refusal::NotFound
        }
        other => {
            tracing::error!("reading the store failed: {other}");
            Refusal::StoreUnavailable
        }
    }
}

/// `GET /api/v1/sealed`: every complete report with its parts and sizes.
pub async fn list(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, Refusal> {
    authorize(&state, &headers)?;
    let listing = from_store(
        &state,
        |store| -> Result<Vec<serde_json::Value>, StoreError> {
            let mut out = Vec::new();
            for id in store.list()? {
                match store.parts(&id) {
                    Ok(parts) => {
                        // When the case status was computed, so `embargo fetch`
                        // knows whether its own is newer.
                        let status_at = store
                            .status(&id)
                            .ok()
                            .flatten()
                            .and_then(|s| crate::case::status::read_stored(&s, &id))
                            .map(|s| s.at);
                        let mut listed = json!({ "id": id.to_string(), "parts": parts });
                        if let Some(at) = status_at {
                            listed["status_at"] = json!(at);
                        }
                        out.push(listed);
                    }
                    // Removed between listing and reading: not a complete report any more.
                    Err(StoreError::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(out)
        },
    )
    .await?;
    // `confirm_fetched` tells `embargo fetch` that confirmations matter here.
    let confirm = state.config().retention.delete_after_fetch;
    Ok(Json(json!({ "reports": listing, "confirm_fetched": confirm })).into_response())
}

/// `POST /api/v1/sealed/{id}/fetched`: a maintainer's `embargo fetch`
/// confirms that it stored report `id`, giving every part's ciphertext
/// SHA-256. The hashes are checked against the store; only a complete,
/// matching confirmation marks the report fetched for `delete_after_fetch`.
pub async fn fetched(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Refusal> {
    let id = authorized_report(&state, &headers, &id)?;
    let limit = crate::retention::MAX_CONFIRMATION_BYTES;
    let body = small_body(
        &headers,
        body,
        limit,
        Refusal::ConfirmationTooLarge { limit },
    )
    .await?;
    let confirmation =
        crate::retention::parse_confirmation(&body).map_err(Refusal::InvalidConfirmation)?;
    let record = state.config().retention.delete_after_fetch;
    let state_dir = state.config().state_dir.clone();
    let checked_id = id.clone();
    let result = on_store(&state, move |store| {
        crate::retention::confirm_fetched(store, &state_dir, &checked_id, &confirmation, record)
    })
    .await?;
    match result {
        Ok(()) => {
            tracing::info!(id = %id, recorded = record, "fetch confirmed");
            Ok(Json(json!({
                "id": id.to_string(),
                "confirmed": true,
                "delete_after_fetch": record,
            }))
            .into_response())
        }
        Err(crate::retention::RetentionError::Mismatch(why)) => {
            tracing::warn!(id = %id, "fetch confirmation refused: {why}");
            Err(Refusal::ConfirmationMismatch(why))
        }
        Err(crate::retention::RetentionError::Store(e)) => Err(store_error(e)),
        Err(e) => {
            tracing::error!("cannot record that {id} was fetched: {e}");
            Err(Refusal::StateUnavailable)
        }
    }
}

/// A single byte range, resolved against the part's size.
#[derive(Debug, PartialEq, Eq)]
enum Range {
    Whole,
    Part { start: u64, end: u64 },
    Unsatisfiable,
}

/// Parses `bytes=a-b`, `bytes=a-` or `bytes=-n`. Several ranges, or a
/// header that is not understood, mean the whole part (RFC 9110 allows it).
fn parse_range(value: Option<&HeaderValue>, size: u64) -> Range {
    let Some(spec) = value
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("bytes="))
    else {
        return Range::Whole;
    };
    if spec.contains(',') {
        return Range::Whole;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return Range::Whole;
    };
    let (a, b) = (a.trim(), b.trim());
    let parsed = match (a.is_empty(), b.is_empty()) {
        (true, false) => match b.parse::<u64>() {
            Ok(0) => return Range::Unsatisfiable,
            Ok(n) => (size.saturating_sub(n), size.saturating_sub(1)),
            Err(_) => return Range::Whole,
        },
        (false, _) => {
            let Ok(start) = a.parse::<u64>() else {
                return Range::Whole;
            };
            let end = if b.is_empty() {
                size.saturating_sub(1)
            } else {
                match b.parse::<u64>() {
                    Ok(end) if end >= start => end.min(size.saturating_sub(1)),
                    _ => return Range::Whole,
                }
            };
            (start, end)
        }
        (true, true) => return Range::Whole,
    };
    if size == 0 || parsed.0 >= size {
        return Range::Unsatisfiable;
    }
    Range::Part {
        start: parsed.0,
        end: parsed.1,
    }
}

/// `GET /api/v1/sealed/{id}/{part}`: one ciphertext part.
pub async fn part(
    State(state): State<AppState>,
    Path((id, part)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    let id = authorized_item(&state, &headers, &id, &part, is_part_name)?;
    let opened = from_store(&state, move |store| {
        let reader = store.open_part(&id, &part)?;
        with_size(reader, &format!("{id}/{part}"))
    })
    .await?;
    // Serving a part, even all of it, never counts as fetched: only a
    // confirmation of the stored copy's hashes does (see `fetched`).
    ciphertext(opened, &headers)
}

/// `GET /api/v1/sealed/{id}/files`: the names and sizes of the files
/// reporters sent with follow-up messages (ciphertext the intake cannot
/// read; the `reporter-message` event that lists them says what they are).
pub async fn files(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    listing(&state, &headers, &id, "files", |store, id| store.files(id)).await
}

/// `GET /api/v1/sealed/{id}/files/{name}`: one follow-up file's
/// ciphertext, streamed (with `Range`, as parts are).
pub async fn file(
    State(state): State<AppState>,
    Path((id, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    let id = authorized_item(&state, &headers, &id, &name, crate::store::is_file_name)?;
    let opened = from_store(&state, move |store| {
        let reader = store.open_file(&id, &name)?;
        with_size(reader, &format!("{id}/files/{name}"))
    })
    .await?;
    ciphertext(opened, &headers)
}

/// A reader with its size (found by seeking to its end); `what` names it
/// in errors.
fn with_size(
    mut reader: Box<dyn PartReader>,
    what: &str,
) -> Result<(Box<dyn PartReader>, u64), StoreError> {
    let size = reader
        .seek(SeekFrom::End(0))
        .map_err(|source| StoreError::Io {
            path: what.to_owned(),
            source,
        })?;
    Ok((reader, size))
}

/// The answer that streams `size` bytes of ciphertext from `reader` (all,
/// or the one range `headers` asks for), read on a blocking thread.
fn ciphertext(
    (mut reader, size): (Box<dyn PartReader>, u64),
    headers: &HeaderMap,
) -> Result<Response, Refusal> {
    let (status, start, len) = match parse_range(headers.get(header::RANGE), size) {
        Range::Whole => (StatusCode::OK, 0, size),
        Range::Part { start, end } => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        Range::Unsatisfiable => return Err(Refusal::RangeNotSatisfiable { size }),
    };
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::task::spawn_blocking(move || {
        if let Err(e) = reader.seek(SeekFrom::Start(start)) {
            let _ = tx.blocking_send(Err(e));
            return;
        }
        let mut limited = reader.take(len);
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            match limited.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    if tx
                        .blocking_send(Ok(Bytes::copy_from_slice(&buf[..n])))
                        .is_err()
                    {
                        return; // the client went away
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let mut response = Response::new(Body::from_stream(stream));
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/pgp-encrypted"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{size}", start + len - 1))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    Ok(response)
}

/// The `name` of `?name=<event ID>.pgp`, as sent (an event name needs no
/// percent-decoding: anything encoded is not one).
fn event_name(query: Option<&str>) -> Option<&str> {
    query_value(query, "name")
}

/// `POST /api/v1/sealed/{id}/events?name=NAME`: stores one case event's
/// ciphertext after checking only what the intake can see: the report
/// exists, the name is an event name, the body is an encrypted OpenPGP
/// message within the size limit, and no other event has that name. The
/// event is durable before 201 is answered; the same bytes posted again
/// (a retried upload) are answered 200.
pub async fn add_event(
    State(state): State<AppState>,
    Path(id): Path<String>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Refusal> {
    use crate::case::sealed::{MAX_EVENT_CIPHERTEXT, check_shape};
    let id = authorized_report(&state, &headers, &id)?;
    let name = match event_name(query.as_deref()) {
        Some(name) if crate::store::is_event_name(name) => name.to_owned(),
        _ => {
            return Err(Refusal::InvalidEvent(
                "give the event's name as ?name=<32 hex digits>.pgp".into(),
            ));
        }
    };
    let limit = MAX_EVENT_CIPHERTEXT;
    let body = small_body(&headers, body, limit, Refusal::EventTooLarge { limit }).await?;
    check_shape(&body).map_err(Refusal::InvalidEvent)?;
    let stored_name = name.clone();
    let stored = on_store(&state, move |store| {
        store.add_event(&id, &stored_name, &body)
    })
    .await?;
    match stored {
        Ok(new) => {
            tracing::info!(new, "case event stored");
            if new {
                state.case_event_stored();
            }
            let status = if new {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok((status, Json(json!({ "name": name, "stored": new }))).into_response())
        }
        Err(StoreError::EventConflict(_)) => Err(Refusal::EventConflict),
        Err(e) => Err(store_error(e)),
    }
}

/// `GET /api/v1/sealed/{id}/events`: the names and sizes of a case's events.
pub async fn events(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    listing(&state, &headers, &id, "events", |store, id| {
        store.events(id)
    })
    .await
}

/// `GET /api/v1/sealed/{id}/events/{name}`: one event's ciphertext.
pub async fn event(
    State(state): State<AppState>,
    Path((id, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    let id = authorized_item(&state, &headers, &id, &name, crate::store::is_event_name)?;
    let bytes = from_store(&state, move |store| -> Result<Vec<u8>, StoreError> {
        let reader = store.open_event(&id, &name)?;
        let mut bytes = Vec::new();
        reader
            .take(crate::case::sealed::MAX_EVENT_CIPHERTEXT as u64)
            .read_to_end(&mut bytes)
            .map_err(|source| StoreError::Io {
                path: format!("{id}/events/{name}"),
                source,
            })?;
        Ok(bytes)
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, "application/pgp-encrypted")], bytes).into_response())
}

/// `POST /api/v1/sealed/{id}/session-keys?part=NAME`: a maintainer shared
/// part, event or follow-up file (`files/NAME`) `NAME` with a new maintainer (`embargo case share`); the
/// body is the session-key packets to add. They are checked to be nothing
/// else and inserted before the encrypted data, which stays byte-identical.
pub async fn add_session_keys(
    State(state): State<AppState>,
    Path(id): Path<String>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Refusal> {
    use crate::seal::share::{MAX_ADDED_SESSION_KEYS, MAX_HEAD_BYTES, body_offset, check_added};
    let id = authorized_report(&state, &headers, &id)?;
    // `files/NAME` may come with its slash percent-encoded (`%2F`).
    let name = query_value(query.as_deref(), "part")
        .map(|n| n.replace("%2F", "/").replace("%2f", "/"))
        .filter(|n| {
            is_part_name(n)
                || crate::store::is_event_name(n)
                || crate::store::file_of_part(n).is_some()
        })
        .ok_or_else(|| {
            Refusal::InvalidSessionKeys(
                "give the part as ?part=manifest.pgp, NNN.pgp, an event name or files/NAME".into(),
            )
        })?;
    let added = axum::body::to_bytes(body, MAX_ADDED_SESSION_KEYS)
        .await
        .map_err(|_| {
            Refusal::InvalidSessionKeys(format!(
                "more than {MAX_ADDED_SESSION_KEYS} bytes of session keys"
            ))
        })?;
    check_added(&added).map_err(|e| Refusal::InvalidSessionKeys(e.to_string()))?;
    let part = name.clone();
    let done = from_store(
        &state,
        move |store| -> Result<Result<u64, String>, StoreError> {
            let mut reader = if crate::store::is_event_name(&part) {
                store.open_event(&id, &part)?
            } else if let Some(file) = crate::store::file_of_part(&part) {
                store.open_file(&id, file)?
            } else {
                store.open_part(&id, &part)?
            };
            let io = |source| StoreError::Io {
                path: format!("{id}/{part}"),
                source,
            };
            let len = reader.seek(SeekFrom::End(0)).map_err(io)?;
            reader.seek(SeekFrom::Start(0)).map_err(io)?;
            let mut head = Vec::new();
            reader
                .take(MAX_HEAD_BYTES as u64)
                .read_to_end(&mut head)
                .map_err(io)?;
            let offset = match body_offset(&head) {
                Ok(o) => o as u64,
                Err(e) => return Ok(Err(e.to_string())),
            };
            store.insert_into_part(&id, &part, len, offset, &added)?;
            Ok(Ok(len + added.len() as u64))
        },
    )
    .await?;
    match done {
        Ok(size) => {
            tracing::info!("session keys added to a part");
            Ok(Json(json!({ "part": name, "size": size })).into_response())
        }
        Err(why) => Err(Refusal::InvalidSessionKeys(why)),
    }
}

/// The value of `key` in a raw query, as sent.
fn query_value<'a>(query: Option<&'a str>, key: &str) -> Option<&'a str> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &'static str, size: u64) -> Range {
        parse_range(Some(&HeaderValue::from_static(s)), size)
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 10), Range::Whole);
        assert_eq!(r("bytes=0-3", 10), Range::Part { start: 0, end: 3 });
        assert_eq!(r("bytes=4-", 10), Range::Part { start: 4, end: 9 });
        assert_eq!(r("bytes=-3", 10), Range::Part { start: 7, end: 9 });
        assert_eq!(r("bytes=5-100", 10), Range::Part { start: 5, end: 9 });
        assert_eq!(r("bytes=10-", 10), Range::Unsatisfiable);
        assert_eq!(r("bytes=-0", 10), Range::Unsatisfiable);
        assert_eq!(r("bytes=3-1", 10), Range::Whole);
        assert_eq!(r("bytes=0-1,3-4", 10), Range::Whole);
        assert_eq!(r("items=0-1", 10), Range::Whole);
    }
}
