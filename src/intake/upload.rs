//! Receiving one report: multipart from the socket, each file streamed
//! through a bounded channel into the (blocking) sealer, the text fields
//! validated before anything is committed.
//!
//! Plaintext exists only in flight: in the chunks moving through the
//! channel and in the sealer's buffers. A request that fails at any point
//! drops its [`ReportWriter`], which removes the staging directory, and the
//! handler waits for that before it answers.

use std::collections::HashSet;
use std::future::Future;
use std::io::{self, Read};
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, BodyDataStream};
use axum::http::{HeaderMap, StatusCode, header};
use bytes::Bytes;
use futures_util::Stream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, Sleep};
use zeroize::Zeroizing;

use super::error::ApiError;
use super::state::{AppState, Busy, UploadSlot};
use crate::config::Limits;
use crate::id::ReportId;
use crate::keys::KeyError;
use crate::report::{FIELDS, FieldErrors, RawReport, ReportBody, Reporter};
use crate::seal::{Channel, Role, SealError, SealedReport, Sealer, media_type_for};
use crate::store::{Store, StoreError};

/// Most bytes the headers of one multipart part may take (with the part's
/// first data chunk that arrives in the same read).
pub const MAX_PART_HEADER_BYTES: u64 = 1024 * 1024;
/// Longest attachment name kept, in characters; longer names are cut.
pub const MAX_FILE_NAME_CHARS: usize = 255;
/// Chunks in flight between the socket and the sealer, per upload.
const CHANNEL_CHUNKS: usize = 2;
/// Extra room for the `report` JSON part over the sum of its fields.
const JSON_OVERHEAD_BYTES: usize = 16 * 1024;
/// Parts a request may carry besides its fields and files: the empty part
/// a form's file input sends when no file was chosen.
const SPARE_PARTS: usize = 1;

/// Most multipart parts one request may carry: every known field once,
/// `max_attachments` files and [`SPARE_PARTS`]. Parts are cheap to send
/// and each costs a header parse, so a body of a million empty parts is
/// refused at the first one over, not read to the end.
pub fn max_parts(limits: &Limits, kind: Kind) -> usize {
    let fields = match kind {
        Kind::Form => FIELDS.len(),
        Kind::Api => 1,
    };
    fields
        .saturating_add(limits.max_attachments)
        .saturating_add(SPARE_PARTS)
}

/// Most bytes all text parts of one request may carry together, counting
/// what is cut from over-long fields: the `report` JSON part's limit. A
/// field a little over `max_field_bytes` still gets the form shown again
/// with the error; a gigabyte of text is refused once this much arrived.
pub fn max_text_bytes(limits: &Limits) -> usize {
    FIELDS
        .len()
        .saturating_mul(limits.max_field_bytes)
        .saturating_add(JSON_OVERHEAD_BYTES)
}

/// Most field errors shown on the form page: two per field (a text that
/// is not UTF-8 and too long) and one more for the request itself.
pub const MAX_FIELD_ERRORS: usize = 2 * FIELDS.len() + 1;

/// Which route the upload came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `POST /report`: one part per form field.
    Form,
    /// `POST /api/v1/reports`: a `report` JSON part.
    Api,
}

/// A sealed, committed report with its signed receipt.
pub struct Accepted {
    pub sealed: SealedReport,
    pub receipt: String,
    pub severity: crate::report::Severity,
}

/// Why an upload was refused.
pub enum Refused {
    /// The fields are invalid: the form is shown again with these values.
    Invalid {
        raw: Box<RawReport>,
        errors: FieldErrors,
        had_files: bool,
    },
    /// Any other refusal.
    Error(ApiError),
}

impl From<ApiError> for Refused {
    fn from(e: ApiError) -> Refused {
        Refused::Error(e)
    }
}

/// Receives, validates and seals one report from a multipart body.
/// `peer` (when known) is counted under `max_uploads_per_peer`.
pub async fn receive(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    kind: Kind,
    peer: Option<IpAddr>,
) -> Result<Accepted, Refused> {
    let (sealer, boundary, _slot) = match admit_upload(state, headers, peer) {
        Ok(admitted) => admitted,
        Err(e) => {
            drain(body).await;
            return Err(e.into());
        }
    };
    let mut session: Option<Session> = None;
    let deadline = state.config().limits.upload_timeout.0;
    let outcome = tokio::time::timeout(
        deadline,
        receive_parts(state, &sealer, body, boundary, kind, &mut session),
    )
    .await;
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            format!(
                "the upload took longer than the limit of {}; nothing was stored",
                state.config().limits.upload_timeout
            ),
        )
        .into()),
    };
    match outcome {
        Ok(accepted) => Ok(accepted),
        Err(refused) => {
            if let Some(session) = session.take() {
                session.discard().await;
            }
            Err(refused)
        }
    }
}

/// The multipart boundary of a submission, or why its content type is
/// refused (415, or 400 without a boundary).
pub fn boundary(headers: &HeaderMap) -> Result<String, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    multer::parse_boundary(content_type).map_err(|e| match e {
        multer::Error::NoBoundary => ApiError::bad_request(
            "no_boundary",
            "the multipart/form-data content type has no boundary parameter",
        ),
        _ => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the report as multipart/form-data",
        ),
    })
}

/// The checks made before the body is read: content type, a usable key,
/// a free upload slot (held until the upload ends).
fn admit_upload(
    state: &AppState,
    headers: &HeaderMap,
    peer: Option<IpAddr>,
) -> Result<(Sealer, String, UploadSlot), ApiError> {
    let boundary = boundary(headers)?;
    let keys = state.keys();
    let Some(sealer) = keys.sealer.clone() else {
        return Err(no_key());
    };
    if let Some(problem) = keys.problem_at(state.clock().now()) {
        tracing::warn!("report refused: {problem}");
        return Err(no_key());
    }
    let limits = &state.config().limits;
    let slot = match state.try_upload_slot(peer) {
        Ok(slot) => slot,
        Err(Busy::Server) => {
            return Err(ApiError::unavailable(
                "busy",
                format!(
                    "{} uploads are already being received, the most this server takes at once; try again in a minute",
                    limits.max_concurrent_uploads
                ),
            ));
        }
        Err(Busy::Peer) => {
            return Err(ApiError {
                retry_after: Some(10),
                ..ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_uploads",
                    format!(
                        "{} uploads from your address are already being received, the most one address may send at once; wait until they finish, then send again",
                        limits.max_uploads_per_peer
                    ),
                )
            });
        }
    };
    Ok((sealer, boundary, slot))
}

/// Most bytes read and thrown away from a refused request's body, so the
/// client (a browser, typically) is ready to read the answer.
pub const DRAIN_MAX_BYTES: usize = 1024 * 1024;
/// How long draining may take.
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Reads and discards (a bounded part of) a body that will not be used.
/// Clients that are still sending when the answer comes often miss it.
pub async fn drain(body: Body) {
    use futures_util::StreamExt;
    let mut stream = body.into_data_stream();
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, async {
        let mut seen = 0usize;
        while let Some(Ok(chunk)) = stream.next().await {
            seen += chunk.len();
            if seen > DRAIN_MAX_BYTES {
                break;
            }
        }
    })
    .await;
}

fn no_key() -> ApiError {
    ApiError::unavailable(
        "no_usable_key",
        "reports cannot be accepted right now: no maintainer encryption key is usable, and this server never stores a report it cannot encrypt; nothing was stored, please try again later (GET /healthz says why)",
    )
}

/// The part of [`receive`] that runs under the upload deadline.
async fn receive_parts(
    state: &AppState,
    sealer: &Sealer,
    body: Body,
    boundary: String,
    kind: Kind,
    session: &mut Option<Session>,
) -> Result<Accepted, Refused> {
    let limits = &state.config().limits;
    let budget = Arc::new(HeaderBudget::default());
    let stream = BodyStream {
        inner: body.into_data_stream(),
        budget: budget.clone(),
        yield_next: false,
        pace: Pace::new(
            limits.min_upload_bytes_per_second,
            limits.upload_rate_window.0,
        ),
    };
    let whole = (limits.max_attachments as u64)
        .saturating_mul(
            limits
                .max_attachment_bytes
                .saturating_add(MAX_PART_HEADER_BYTES),
        )
        .saturating_add(
            ((FIELDS.len() + 2) * (limits.max_field_bytes + JSON_OVERHEAD_BYTES)) as u64,
        )
        .saturating_add(MAX_PART_HEADER_BYTES);
    let constraints = multer::Constraints::new().size_limit(
        multer::SizeLimit::new()
            .whole_stream(whole)
            .per_field(u64::MAX),
    );
    let mut multipart = multer::Multipart::with_constraints(stream, boundary, constraints);

    let mut raw = RawReport::default();
    let mut errors = FieldErrors::default();
    let mut seen: HashSet<String> = HashSet::new();
    let mut files = 0usize;
    let mut parts = 0usize;
    let part_limit = max_parts(limits, kind);
    let mut text_left = max_text_bytes(limits);
    let channel = match kind {
        Kind::Form => Channel::Web,
        Kind::Api => Channel::Api,
    };
    loop {
        budget.start();
        let next = multipart.next_field().await;
        budget.stop();
        let Some(mut field) = next.map_err(multipart_error)? else {
            break;
        };
        parts += 1;
        if parts > part_limit {
            return Err(too_many_parts(part_limit).into());
        }
        let name = field.name().unwrap_or("").to_string();
        if name == "attachment" {
            let file_name = clean_file_name(field.file_name().unwrap_or(""));
            let mut first = field.chunk().await.map_err(multipart_error)?;
            while first.as_ref().is_some_and(Bytes::is_empty) {
                first = field.chunk().await.map_err(multipart_error)?;
            }
            if first.is_none() && field.file_name().is_none_or(str::is_empty) {
                continue; // a form's file input with no file chosen
            }
            files += 1;
            if files > limits.max_attachments {
                return Err(ApiError::too_large(
                    "too_many_attachments",
                    format!(
                        "a report may have at most {} attachments; nothing was stored",
                        limits.max_attachments
                    ),
                )
                .into());
            }
            if session.is_none() {
                *session = Some(Session::start(
                    sealer.clone(),
                    state.store().clone(),
                    channel,
                    state,
                ));
            }
            let Some(s) = session.as_mut() else {
                return Err(ApiError::internal().into());
            };
            let media_type = media_type_for(&file_name);
            s.send(Msg::Begin {
                name: file_name,
                media_type,
            })
            .await?;
            let mut size = 0u64;
            let mut chunk = first;
            while let Some(bytes) = chunk {
                size += bytes.len() as u64;
                if size > limits.max_attachment_bytes {
                    return Err(file_too_large(limits.max_attachment_bytes).into());
                }
                s.send(Msg::Data(bytes)).await?;
                chunk = field.chunk().await.map_err(multipart_error)?;
            }
            s.send(Msg::End).await?;
            continue;
        }
        let known = match kind {
            Kind::Form => FIELDS.contains(&name.as_str()),
            Kind::Api => name == "report",
        };
        if !known {
            return Err(ApiError::bad_request(
                "unknown_part",
                match kind {
                    Kind::Form => {
                        "the form sent a part this intake does not know; use the form at /"
                    }
                    Kind::Api => {
                        "parts must be named \"report\" (the input JSON) or \"attachment\" (files)"
                    }
                },
            )
            .into());
        }
        if !seen.insert(name.clone()) {
            // Refused at once: a browser never repeats a field, and
            // collecting one error per repetition grew without bound.
            return Err(duplicate_part(kind, &name).into());
        }
        let cap = match kind {
            Kind::Form => limits.max_field_bytes,
            Kind::Api => max_text_bytes(limits),
        };
        let (value, truncated) = read_capped(&mut field, cap, &mut text_left, limits).await?;
        match kind {
            Kind::Api => {
                if truncated {
                    return Err(text_too_large(limits).into());
                }
                raw = RawReport::from_json(&value)
                    .map_err(|e| Refused::Error(ApiError::invalid(e)))?;
            }
            Kind::Form => {
                let text = match std::str::from_utf8(&value) {
                    Ok(s) => s.to_string(),
                    Err(_) => {
                        errors.push(&name, "is not valid UTF-8 text".into());
                        String::from_utf8_lossy(&value).into_owned()
                    }
                };
                if truncated {
                    errors.push(
                        &name,
                        format!(
                            "is longer than the limit of {} bytes",
                            limits.max_field_bytes
                        ),
                    );
                }
                raw.set(&name, text);
            }
        }
    }
    if kind == Kind::Api && !seen.contains("report") {
        return Err(ApiError::bad_request(
            "missing_report",
            "the part \"report\" (the input JSON) is missing",
        )
        .into());
    }
    let validated = raw.validate(limits);
    let (body, reporter) = match validated {
        Ok(ok) if errors.is_empty() => ok,
        Ok(_) => return Err(invalid(raw, errors, files)),
        Err(more) => {
            for (field, message) in more.0 {
                if errors.for_field(&field).is_none() {
                    errors.push(&field, message);
                }
            }
            return Err(invalid(raw, errors, files));
        }
    };
    let severity = body.severity;
    if session.is_none() {
        *session = Some(Session::start(
            sealer.clone(),
            state.store().clone(),
            channel,
            state,
        ));
    }
    let Some(s) = session.take() else {
        return Err(ApiError::internal().into());
    };
    let (sealed, receipt) = s.finish(body, reporter).await?;
    Ok(Accepted {
        sealed,
        receipt,
        severity,
    })
}

fn invalid(raw: RawReport, mut errors: FieldErrors, files: usize) -> Refused {
    errors.0.truncate(MAX_FIELD_ERRORS);
    Refused::Invalid {
        raw: Box::new(raw),
        errors,
        had_files: files > 0,
    }
}

fn too_many_parts(limit: usize) -> ApiError {
    ApiError::too_large(
        "too_many_parts",
        format!(
            "the request has more than {limit} multipart parts, the most a report can need (each field once, plus the attachments); nothing was stored"
        ),
    )
}

/// The part `name` came twice. `name` is a known field (checked before),
/// so naming it echoes nothing the sender chose.
fn duplicate_part(kind: Kind, name: &str) -> ApiError {
    let name = FIELDS
        .iter()
        .chain(&["report"])
        .find(|f| **f == name)
        .copied()
        .unwrap_or("?");
    ApiError::bad_request(
        "duplicate_part",
        match kind {
            Kind::Form => format!(
                "the field \"{name}\" was sent more than once; send each field once (the form at / does); nothing was stored"
            ),
            Kind::Api => format!(
                "the part \"{name}\" was sent more than once; send the input JSON once; nothing was stored"
            ),
        },
    )
}

fn text_too_large(limits: &Limits) -> ApiError {
    ApiError::too_large(
        "text_too_large",
        format!(
            "the text fields together are larger than {} bytes ({} fields of at most {} bytes each); nothing was stored",
            max_text_bytes(limits),
            FIELDS.len(),
            limits.max_field_bytes
        ),
    )
}

fn file_too_large(limit: u64) -> ApiError {
    ApiError::too_large(
        "file_too_large",
        format!(
            "an attachment is larger than the limit of {limit} bytes ({}); nothing was stored",
            human_size(limit)
        ),
    )
}

/// `1.5 MiB`-style sizes for messages and pages.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut value = bytes as f64;
    let mut unit = "bytes";
    for u in UNITS {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = u;
    }
    let text = format!("{value:.1}");
    format!("{} {unit}", text.strip_suffix(".0").unwrap_or(&text))
}

/// Reads a text part, keeping at most `cap` bytes (the rest is read and
/// dropped). Every byte, kept or not, is taken from `text_left`: when that
/// runs out the request is refused. Returns the bytes and whether there
/// were more.
async fn read_capped(
    field: &mut multer::Field<'_>,
    cap: usize,
    text_left: &mut usize,
    limits: &Limits,
) -> Result<(Zeroizing<Vec<u8>>, bool), ApiError> {
    let mut value = Zeroizing::new(Vec::new());
    let mut truncated = false;
    while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
        *text_left = text_left
            .checked_sub(chunk.len())
            .ok_or_else(|| text_too_large(limits))?;
        let room = cap.saturating_sub(value.len());
        if chunk.len() > room {
            value.extend_from_slice(&chunk[..room]);
            truncated = true;
        } else {
            value.extend_from_slice(&chunk);
        }
    }
    Ok((value, truncated))
}

/// A file name as stored in the manifest: the last path component, without
/// control characters or leading dots, at most [`MAX_FILE_NAME_CHARS`].
/// The manifest keeps names untrusted; this only keeps them tame.
pub fn clean_file_name(raw: &str) -> String {
    let base = raw.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = base.chars().filter(|c| !c.is_control()).collect();
    let cleaned: String = cleaned
        .trim()
        .trim_start_matches('.')
        .chars()
        .take(MAX_FILE_NAME_CHARS)
        .collect();
    if cleaned.trim().is_empty() {
        "attachment".into()
    } else {
        cleaned
    }
}

/// Maps multipart parse failures to client errors, without echoing input.
fn multipart_error(e: multer::Error) -> ApiError {
    match e {
        multer::Error::StreamReadFailed(source) => match source.downcast_ref::<BodyError>() {
            Some(BodyError::TooSlow {
                min_per_second,
                window,
            }) => ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "upload_too_slow",
                format!(
                    "the upload arrived at less than {min_per_second} bytes a second over {}, the slowest this server waits for; nothing was stored; send it again over a faster or steadier connection",
                    crate::config::Span(*window)
                ),
            ),
            Some(BodyError::HeadersTooLong) => ApiError::bad_request(
                "headers_too_long",
                format!(
                    "a part's headers are longer than {} bytes",
                    MAX_PART_HEADER_BYTES
                ),
            ),
            _ => ApiError::bad_request(
                "upload_interrupted",
                "the upload stopped before it was complete; nothing was stored",
            ),
        },
        multer::Error::StreamSizeExceeded { limit } => ApiError::too_large(
            "request_too_large",
            format!(
                "the request is larger than {limit} bytes, more than the attachment and field limits allow"
            ),
        ),
        multer::Error::IncompleteStream | multer::Error::IncompleteFieldData { .. } => {
            ApiError::bad_request(
                "incomplete_multipart",
                "the multipart body ended before its final boundary; nothing was stored",
            )
        }
        _ => ApiError::bad_request(
            "malformed_multipart",
            "the multipart body is malformed; nothing was stored",
        ),
    }
}

/// Maps sealing failures to answers; details go to the log only.
fn seal_error(e: SealError) -> ApiError {
    match e {
        SealError::TooLarge { limit } => file_too_large(limit),
        SealError::TooManyAttachments { limit } => ApiError::too_large(
            "too_many_attachments",
            format!("a report may have at most {limit} attachments"),
        ),
        SealError::Keys(KeyError::NoUsableKey { .. }) => {
            tracing::warn!("report refused: no maintainer certificate is usable any more");
            ApiError::unavailable(
                "no_usable_key",
                "reports cannot be accepted right now: no maintainer encryption key is usable; nothing was stored",
            )
        }
        SealError::Store(StoreError::Io { .. }) => {
            tracing::error!("the store is not writable: {e}");
            ApiError::unavailable(
                "store_unavailable",
                "the report store is unavailable; nothing was stored, please try again later",
            )
        }
        SealError::Input(_) => ApiError::bad_request(
            "upload_interrupted",
            "the upload stopped before it was complete; nothing was stored",
        ),
        other => {
            tracing::error!("sealing failed: {other}");
            ApiError::internal()
        }
    }
}

/// What the receiving side tells the sealing thread.
enum Msg {
    Begin {
        name: String,
        media_type: &'static str,
    },
    Data(Bytes),
    End,
    Finish(Box<(ReportBody, Reporter)>),
}

/// The sealing thread of one upload and the channel that feeds it.
struct Session {
    tx: mpsc::Sender<Msg>,
    /// Taken when awaited (a finished handle must not be polled again).
    handle: Option<JoinHandle<Result<(SealedReport, String), SealError>>>,
}

impl Session {
    fn start(sealer: Sealer, store: Arc<dyn Store>, channel: Channel, state: &AppState) -> Session {
        let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
        let limit = state.config().limits.max_attachment_bytes;
        let project = state.config().project_name.clone();
        let handle = tokio::task::spawn_blocking(move || {
            seal_session(&sealer, store.as_ref(), channel, limit, &project, rx)
        });
        Session {
            tx,
            handle: Some(handle),
        }
    }

    /// Waits for the sealing thread to end and returns its result.
    async fn outcome(&mut self) -> Result<(SealedReport, String), ApiError> {
        let Some(handle) = self.handle.take() else {
            return Err(ApiError::internal());
        };
        match handle.await {
            Ok(Ok(done)) => Ok(done),
            Ok(Err(e)) => Err(seal_error(e)),
            Err(_) => Err(ApiError::internal()),
        }
    }

    /// Sends a message; if the sealing thread has stopped, its error.
    async fn send(&mut self, msg: Msg) -> Result<(), ApiError> {
        if self.tx.send(msg).await.is_ok() {
            return Ok(());
        }
        // The thread stopped early: its result says why.
        match self.outcome().await {
            Ok(_) => Err(ApiError::internal()),
            Err(e) => Err(e),
        }
    }

    async fn finish(
        mut self,
        body: ReportBody,
        reporter: Reporter,
    ) -> Result<(SealedReport, String), ApiError> {
        self.send(Msg::Finish(Box::new((body, reporter)))).await?;
        self.outcome().await
    }

    /// Stops the thread without committing and waits until the staged
    /// report is gone.
    async fn discard(self) {
        let Session { tx, handle } = self;
        drop(tx);
        if let Some(handle) = handle {
            let _ = handle.await;
        }
    }
}

/// The sealing thread: begins the report, seals each file as its chunks
/// arrive, and commits only on `Finish`. If the channel closes first, the
/// writer is dropped and the staged report removed.
fn seal_session(
    sealer: &Sealer,
    store: &dyn Store,
    channel: Channel,
    limit: u64,
    project: &str,
    mut rx: mpsc::Receiver<Msg>,
) -> Result<(SealedReport, String), SealError> {
    let mut writer = sealer.begin(store, ReportId::random(), channel)?;
    loop {
        match rx.blocking_recv() {
            Some(Msg::Begin { name, media_type }) => {
                let mut reader = ChannelReader {
                    rx: &mut rx,
                    chunk: Bytes::new(),
                };
                writer.add_attachment(&name, media_type, Role::Poc, &mut reader, limit)?;
            }
            Some(Msg::Finish(fields)) => {
                let (body, reporter) = *fields;
                let sealed = writer.finish(body, reporter, None)?;
                let receipt = sealer.sign_cleartext(&sealed.receipt_text(project))?;
                return Ok((sealed, receipt));
            }
            Some(Msg::Data(_) | Msg::End) => {
                return Err(SealError::Input(io::Error::other(
                    "file data outside a file",
                )));
            }
            None => {
                return Err(SealError::Input(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "upload abandoned",
                )));
            }
        }
    }
}

/// One file's bytes as a blocking `Read`, ending at `Msg::End`.
struct ChannelReader<'a> {
    rx: &'a mut mpsc::Receiver<Msg>,
    chunk: Bytes,
}

impl Read for ChannelReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if !self.chunk.is_empty() {
                let n = buf.len().min(self.chunk.len());
                buf[..n].copy_from_slice(&self.chunk.split_to(n));
                return Ok(n);
            }
            match self.rx.blocking_recv() {
                Some(Msg::Data(bytes)) => self.chunk = bytes,
                Some(Msg::End) => return Ok(0),
                Some(_) => return Err(io::Error::other("unexpected message inside a file")),
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "upload abandoned",
                    ));
                }
            }
        }
    }
}

/// Counts bytes read while multer looks for a part's headers.
#[derive(Default)]
struct HeaderBudget {
    active: AtomicBool,
    used: AtomicU64,
}

impl HeaderBudget {
    fn start(&self) {
        self.used.store(0, Ordering::Relaxed);
        self.active.store(true, Ordering::Relaxed);
    }

    fn stop(&self) {
        self.active.store(false, Ordering::Relaxed);
    }
}

/// Why the body stream stopped.
#[derive(Debug, thiserror::Error)]
enum BodyError {
    #[error("part headers too long")]
    HeadersTooLong,
    #[error("the upload is slower than the minimum rate")]
    TooSlow {
        min_per_second: u64,
        window: Duration,
    },
    #[error("reading the request body failed")]
    Read,
}

/// The request body as multer reads it: one chunk per poll, so multer's
/// buffer never holds more than a chunk or two (it reads until the source
/// would block), and a cap on bytes read while looking for part headers.
struct BodyStream {
    inner: BodyDataStream,
    budget: Arc<HeaderBudget>,
    yield_next: bool,
    pace: Pace,
}

/// The minimum upload rate: over every `window` of time spent waiting on
/// the client (not on the sealer, which only makes us read later), at
/// least `min_per_second × window` bytes must arrive. A slow client then
/// holds an upload slot for about one window, not for `upload_timeout`.
struct Pace {
    min_per_second: u64,
    window: Duration,
    /// Time spent waiting on the client in the current window.
    waited: Duration,
    /// Bytes received in the current window.
    bytes: u64,
    /// Since when the current wait runs.
    waiting_since: Option<Instant>,
    alarm: Option<Pin<Box<Sleep>>>,
}

impl Pace {
    fn new(min_per_second: u64, window: Duration) -> Pace {
        Pace {
            min_per_second,
            window,
            waited: Duration::ZERO,
            bytes: 0,
            waiting_since: None,
            alarm: None,
        }
    }

    fn too_slow(&self) -> BodyError {
        BodyError::TooSlow {
            min_per_second: self.min_per_second,
            window: self.window,
        }
    }

    /// Ends the current wait at `now`; then, if a whole window was waited,
    /// checks it and starts the next.
    fn account(&mut self, now: Instant) -> Result<(), BodyError> {
        if let Some(since) = self.waiting_since.take() {
            self.waited += now.saturating_duration_since(since);
        }
        if self.waited < self.window {
            return Ok(());
        }
        let needed = u128::from(self.min_per_second) * self.window.as_millis() / 1000;
        if u128::from(self.bytes) < needed {
            return Err(self.too_slow());
        }
        self.waited = Duration::ZERO;
        self.bytes = 0;
        Ok(())
    }

    /// Data arrived.
    fn received(&mut self, n: usize) -> Result<(), BodyError> {
        self.alarm = None;
        self.bytes = self.bytes.saturating_add(n as u64);
        self.account(Instant::now())
    }

    /// The client made us wait: arms an alarm for the end of the window
    /// and fails once it rings with too few bytes received.
    fn waiting(&mut self, cx: &mut Context<'_>) -> Result<(), BodyError> {
        if self.min_per_second == 0 {
            return Ok(());
        }
        loop {
            let now = Instant::now();
            let since = *self.waiting_since.get_or_insert(now);
            let alarm = self.alarm.get_or_insert_with(|| {
                let left = self.window.saturating_sub(self.waited);
                Box::pin(tokio::time::sleep_until(since + left))
            });
            if alarm.as_mut().poll(cx).is_pending() {
                return Ok(());
            }
            // A window of waiting passed: check it, and wait on in the next.
            self.alarm = None;
            self.account(now)?;
            self.waiting_since = Some(now);
        }
    }
}

impl Stream for BodyStream {
    type Item = Result<Bytes, BodyError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.yield_next {
            self.yield_next = false;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(bytes))) => {
                if let Err(e) = self.pace.received(bytes.len()) {
                    return Poll::Ready(Some(Err(e)));
                }
                if self.budget.active.load(Ordering::Relaxed) {
                    let used = self
                        .budget
                        .used
                        .fetch_add(bytes.len() as u64, Ordering::Relaxed)
                        + bytes.len() as u64;
                    if used > MAX_PART_HEADER_BYTES {
                        return Poll::Ready(Some(Err(BodyError::HeadersTooLong)));
                    }
                }
                self.yield_next = true;
                Poll::Ready(Some(Ok(bytes)))
            }
            Poll::Ready(Some(Err(_))) => Poll::Ready(Some(Err(BodyError::Read))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match self.pace.waiting(cx) {
                Ok(()) => Poll::Pending,
                Err(e) => Poll::Ready(Some(Err(e))),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_tamed() {
        assert_eq!(clean_file_name("../../etc/passwd"), "passwd");
        assert_eq!(clean_file_name("..\\..\\boot.ini"), "boot.ini");
        assert_eq!(clean_file_name("a/"), "attachment");
        assert_eq!(clean_file_name(".."), "attachment");
        assert_eq!(clean_file_name(".hidden"), "hidden");
        assert_eq!(clean_file_name("bad\u{0}\u{7}\nname.txt"), "badname.txt");
        assert_eq!(
            clean_file_name(&"x".repeat(4096)).chars().count(),
            MAX_FILE_NAME_CHARS
        );
        assert_eq!(clean_file_name(""), "attachment");
    }

    #[test]
    fn parts_and_errors_are_bounded_by_the_limits() {
        let limits = Limits::default();
        assert_eq!(
            max_parts(&limits, Kind::Form),
            FIELDS.len() + limits.max_attachments + 1
        );
        assert_eq!(
            max_parts(&limits, Kind::Api),
            1 + limits.max_attachments + 1
        );
        assert_eq!(
            max_text_bytes(&limits),
            FIELDS.len() * limits.max_field_bytes + JSON_OVERHEAD_BYTES
        );
        let mut errors = FieldErrors::default();
        for _ in 0..1000 {
            errors.push("title", "x".into());
        }
        let Refused::Invalid { errors, .. } = invalid(RawReport::default(), errors, 0) else {
            panic!("not an invalid report");
        };
        assert_eq!(errors.0.len(), MAX_FIELD_ERRORS);
    }

    /// A body that sends `chunk` bytes every `every`, `count` times.
    fn paced_body(chunk: usize, every: Duration, count: usize) -> BodyStream {
        let stream = futures_util::stream::unfold(0usize, move |sent| async move {
            if sent == count {
                return None;
            }
            tokio::time::sleep(every).await;
            Some((Ok::<_, io::Error>(Bytes::from(vec![b'x'; chunk])), sent + 1))
        });
        BodyStream {
            inner: Body::from_stream(stream).into_data_stream(),
            budget: Arc::new(HeaderBudget::default()),
            yield_next: false,
            pace: Pace::new(1000, Duration::from_millis(400)),
        }
    }

    async fn read_all(mut body: BodyStream) -> Result<u64, BodyError> {
        use futures_util::StreamExt;
        let mut total = 0;
        while let Some(chunk) = body.next().await {
            total += chunk?.len() as u64;
        }
        Ok(total)
    }

    #[tokio::test]
    async fn a_body_under_the_minimum_rate_is_cut_after_one_window() {
        let started = std::time::Instant::now();
        // 10 bytes every 50 ms: 200 bytes a second, under 1000.
        let result = read_all(paced_body(10, Duration::from_millis(50), 1000)).await;
        assert!(
            matches!(
                result,
                Err(BodyError::TooSlow {
                    min_per_second: 1000,
                    ..
                })
            ),
            "{result:?}"
        );
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(400) && took < Duration::from_secs(3),
            "{took:?}"
        );
        // A client that goes silent is cut too, without sending anything.
        let started = std::time::Instant::now();
        let silent = read_all(paced_body(10, Duration::from_secs(30), 1)).await;
        assert!(
            matches!(silent, Err(BodyError::TooSlow { .. })),
            "{silent:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[tokio::test]
    async fn a_body_at_the_minimum_rate_is_read_whole() {
        // 200 bytes every 50 ms: 4000 bytes a second, for over two windows.
        let total = read_all(paced_body(200, Duration::from_millis(50), 20)).await;
        assert_eq!(total.ok(), Some(4000));
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_size(10), "10 bytes");
        assert_eq!(human_size(512 * 1024 * 1024), "512 MiB");
        assert_eq!(human_size(1536), "1.5 KiB");
    }
}
