//! `GET`/`PUT /api/v1/sealed/{id}/status`: the signed case status a
//! maintainer's `embargo case` sends (see [`crate::case::status`]), which
//! retention and `/metrics` read. The intake accepts one only when a
//! maintainer certificate of its keys directory signed it, it is for this
//! report, and it covers every event stored here (so it is at least as
//! current as the status it replaces).

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::error::Refusal;
use super::sealed::{authorized_report, from_store, on_store, small_body, store_error};
use super::state::AppState;
use crate::case::status::{self, CaseStatus, MAX_STATUS_BYTES};
use crate::id::ReportId;
use crate::store::StoreError;

/// `GET …/status`: the stored signed status, as sent.
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    let id = authorized_report(&state, &headers, &id)?;
    let stored = from_store(&state, move |store| store.status(&id)).await?;
    match stored {
        Some(bytes) => {
            Ok(([(header::CONTENT_TYPE, "application/pgp-signature")], bytes).into_response())
        }
        None => Err(Refusal::NotFound),
    }
}

/// `PUT …/status`: replaces the stored status with a newer one.
pub async fn put(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Refusal> {
    let id = authorized_report(&state, &headers, &id)?;
    let limit = MAX_STATUS_BYTES;
    let body = small_body(&headers, body, limit, Refusal::StatusTooLarge { limit })
        .await?
        .to_vec();
    let maintainers: Vec<_> = state
        .keys()
        .keyring
        .entries
        .iter()
        .map(|e| e.cert.clone())
        .collect();
    let stored = on_store(&state, move |store| {
        let status = status::verify(&body, &maintainers, &id)
            .map_err(|e| Refusal::InvalidStatus(e.to_string()))?;
        store_if_current(store, &id, &status, &body)
    })
    .await??;
    tracing::info!(new = stored, "case status stored");
    let code = if stored {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((code, Json(json!({ "stored": stored }))).into_response())
}

/// Stores `status` (`signed`) when it covers every stored event. Events
/// are never removed, so such a status was computed from at least what the
/// stored one was, and every maintainer folding the same events gets the
/// same state: it replaces the stored one unless both name the same events
/// and the stored one is newer. `Ok(false)`: nothing changed.
fn store_if_current(
    store: &dyn crate::store::Store,
    id: &ReportId,
    status: &CaseStatus,
    signed: &[u8],
) -> Result<bool, Refusal> {
    let events = store.events(id).map_err(store_error)?;
    if !status.covers(events.iter().map(|e| e.name.as_str())) {
        return Err(Refusal::StaleStatus(
            "the intake holds case events this status was not computed from".into(),
        ));
    }
    let replaces = |current: Option<&[u8]>| {
        current
            .and_then(|c| status::read_stored(c, id))
            .is_none_or(|c| c.events != status.events || status.time() > c.time())
    };
    match store.set_status(id, signed, &replaces) {
        Ok(stored) => Ok(stored),
        Err(StoreError::NotFound(_)) => Err(Refusal::NotFound),
        Err(e) => Err(store_error(e)),
    }
}
