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
use axum::http::{HeaderMap, header};
use bytes::Bytes;
use futures_util::Stream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, Sleep};
use zeroize::Zeroizing;

use super::error::{Interruption, Malformed, Refusal};
use super::state::{AppState, Busy, UploadSlot};
use crate::config::Limits;
use crate::id::ReportId;
use crate::keys::KeyError;
use crate::reply::Desk;
use crate::reply::intake::{Finished, finish};
use crate::report::{FIELDS, FieldErrors, RawReport, ReportBody, Reporter};
use crate::seal::{Channel, Role, SealError, SealedReport, Sealer, media_type_for};
use crate::store::{Store, StoreError};

/// Most bytes the headers of one multipart part may take (with the part's
/// first data chunk that arrives in the same read).
pub const MAX_PART_HEADER_BYTES: u64 = 1024 * 1024;
/// Longest attachment name kept, in characters; longer names are cut.
pub const MAX_FILE_NAME_CHARS: usize = 255;
/// Chunks in flight between the socket and the sealer, per upload.
pub(super) const CHANNEL_CHUNKS: usize = 2;
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
    /// Shown once to the reporter, never kept.
    pub reply_code: Option<crate::reply::ReplyCode>,
    /// Where the acknowledgement goes, if the reporter gave an address.
    pub reporter_email: Option<String>,
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
    Error(Refusal),
}

impl From<Refusal> for Refused {
    fn from(e: Refusal) -> Refused {
        Refused::Error(e)
    }
}

impl From<Malformed> for Refused {
    fn from(e: Malformed) -> Refused {
        Refused::Error(e.into())
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
    let deadline = state.config().limits.upload_timeout;
    let outcome = tokio::time::timeout(
        deadline.0,
        receive_parts(state, &sealer, body, boundary, kind, &mut session),
    )
    .await;
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(_) => Err(Refusal::from(Interruption::Deadline { limit: deadline }).into()),
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
pub fn boundary(headers: &HeaderMap) -> Result<String, Refusal> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    multer::parse_boundary(content_type).map_err(|e| match e {
        multer::Error::NoBoundary => Malformed::NoBoundary.into(),
        _ => Refusal::UnsupportedMediaType,
    })
}

/// The checks made before the body is read: content type, a usable key,
/// a free upload slot (held until the upload ends).
fn admit_upload(
    state: &AppState,
    headers: &HeaderMap,
    peer: Option<IpAddr>,
) -> Result<(Sealer, String, UploadSlot), Refusal> {
    let boundary = boundary(headers)?;
    let keys = state.keys();
    let Some(sealer) = keys.sealer.clone() else {
        return Err(Refusal::NoUsableKey);
    };
    if let Some(problem) = keys.problem_at(state.clock().now()) {
        tracing::warn!("report refused: {problem}");
        return Err(Refusal::NoUsableKey);
    }
    let limits = &state.config().limits;
    let slot = state.try_upload_slot(peer).map_err(|busy| match busy {
        Busy::Server => Refusal::Busy {
            max_concurrent_uploads: limits.max_concurrent_uploads,
        },
        Busy::Peer => Refusal::PeerBusy {
            max_uploads_per_peer: limits.max_uploads_per_peer,
        },
    })?;
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
    let mut multipart = multipart_reader(body, boundary, limits, budget.clone());
    let mut receiver = Receiver {
        state,
        limits,
        sealer,
        kind,
        session,
        raw: RawReport::default(),
        errors: FieldErrors::default(),
        seen: HashSet::new(),
        files: 0,
        parts: 0,
        text_left: max_text_bytes(limits),
    };
    loop {
        budget.start();
        let next = multipart.next_field().await;
        budget.stop();
        let Some(field) = next.map_err(multipart_error)? else {
            break;
        };
        receiver.part(field).await?;
    }
    receiver.finish().await
}

/// The multipart parser over the paced, header-capped body, with a cap on
/// the whole stream: every attachment and text part at its limit.
pub(super) fn multipart_reader(
    body: Body,
    boundary: String,
    limits: &Limits,
    budget: Arc<HeaderBudget>,
) -> multer::Multipart<'static> {
    let stream = BodyStream {
        inner: body.into_data_stream(),
        budget,
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
    multer::Multipart::with_constraints(stream, boundary, constraints)
}

/// What a multipart part is, by its name on the route it came through.
#[derive(Clone, Copy, Debug)]
enum Part {
    /// A file (`attachment`), on both routes.
    Attachment,
    /// A text part, read whole (within its cap).
    Text(TextPart),
}

/// The text parts a route knows; each may come once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum TextPart {
    /// The API's `report` part: the input JSON.
    Report,
    /// One of the form's fields (a name from [`FIELDS`]).
    Field(&'static str),
}

impl Kind {
    /// The channel the sealed report records.
    fn channel(self) -> Channel {
        match self {
            Kind::Form => Channel::Web,
            Kind::Api => Channel::Api,
        }
    }

    /// What a part named `name` is on this route, or why it is refused.
    fn part(self, name: &str) -> Result<Part, Malformed> {
        if name == "attachment" {
            return Ok(Part::Attachment);
        }
        match self {
            Kind::Form => FIELDS
                .iter()
                .find(|f| **f == name)
                .map(|f| Part::Text(TextPart::Field(f)))
                .ok_or(Malformed::UnknownField),
            Kind::Api if name == "report" => Ok(Part::Text(TextPart::Report)),
            Kind::Api => Err(Malformed::UnknownPart),
        }
    }

    /// Checks, at the end of the body, that every part this route needs
    /// came (the form's fields are checked by validation instead).
    fn check_complete(self, seen: &HashSet<TextPart>) -> Result<(), Malformed> {
        match self {
            Kind::Api if !seen.contains(&TextPart::Report) => Err(Malformed::MissingReport),
            Kind::Form | Kind::Api => Ok(()),
        }
    }
}

impl TextPart {
    /// The refusal when this part comes a second time. Refused at once:
    /// a browser never repeats a field, and collecting one error per
    /// repetition grew without bound. The name is one of ours, so it
    /// echoes nothing the sender chose.
    fn duplicate(self) -> Malformed {
        match self {
            TextPart::Report => Malformed::DuplicateReport,
            TextPart::Field(field) => Malformed::DuplicateField { field },
        }
    }
}

/// One upload's parts as they arrive: the fields read so far, and the
/// sealing session once a file (or the end of the body) needs one.
struct Receiver<'a> {
    state: &'a AppState,
    limits: &'a Limits,
    sealer: &'a Sealer,
    kind: Kind,
    /// Lives outside the deadline, so a timed-out upload is discarded.
    session: &'a mut Option<Session>,
    raw: RawReport,
    errors: FieldErrors,
    seen: HashSet<TextPart>,
    files: usize,
    parts: usize,
    /// Text bytes the request may still send ([`max_text_bytes`]).
    text_left: usize,
}

impl Receiver<'_> {
    /// Takes one part, in the order they arrive.
    async fn part(&mut self, field: multer::Field<'_>) -> Result<(), Refused> {
        self.parts += 1;
        let limit = max_parts(self.limits, self.kind);
        if self.parts > limit {
            return Err(Refusal::TooManyParts { limit }.into());
        }
        match self.kind.part(field.name().unwrap_or(""))? {
            Part::Attachment => Ok(self.attachment(field).await?),
            Part::Text(text) => {
                if !self.seen.insert(text) {
                    return Err(text.duplicate().into());
                }
                match text {
                    TextPart::Report => self.report_json(field).await,
                    TextPart::Field(name) => Ok(self.form_field(name, field).await?),
                }
            }
        }
    }

    /// The API's `report` part: the input JSON, refused whole when it is
    /// over the text budget or invalid.
    async fn report_json(&mut self, mut field: multer::Field<'_>) -> Result<(), Refused> {
        let cap = max_text_bytes(self.limits);
        let (value, truncated) =
            read_capped(&mut field, cap, &mut self.text_left, self.limits).await?;
        if truncated {
            return Err(text_too_large(self.limits).into());
        }
        self.raw = RawReport::from_json(&value).map_err(Refusal::InvalidReport)?;
        Ok(())
    }

    /// One form field: kept (cut at `max_field_bytes`), with an error for
    /// the form page when it is not UTF-8 or was cut.
    async fn form_field(
        &mut self,
        name: &'static str,
        mut field: multer::Field<'_>,
    ) -> Result<(), Refusal> {
        let limits = self.limits;
        let (value, truncated) = read_capped(
            &mut field,
            limits.max_field_bytes,
            &mut self.text_left,
            limits,
        )
        .await?;
        let text = match std::str::from_utf8(&value) {
            Ok(s) => s.to_string(),
            Err(_) => {
                self.errors.push(name, "is not valid UTF-8 text".into());
                String::from_utf8_lossy(&value).into_owned()
            }
        };
        if truncated {
            self.errors.push(
                name,
                format!(
                    "is longer than the limit of {} bytes",
                    limits.max_field_bytes
                ),
            );
        }
        self.raw.set(name, text);
        Ok(())
    }

    /// One attachment, streamed into the sealer chunk by chunk. The empty
    /// part of a form's file input with no file chosen is skipped.
    async fn attachment(&mut self, mut field: multer::Field<'_>) -> Result<(), Refusal> {
        let file_name = clean_file_name(field.file_name().unwrap_or(""));
        let Some(first) = first_chunk(&mut field).await? else {
            return Ok(());
        };
        let limits = self.limits;
        self.files += 1;
        if self.files > limits.max_attachments {
            return Err(Refusal::TooManyFiles {
                limit: limits.max_attachments,
            });
        }
        let media_type = media_type_for(&file_name);
        let session = self.session();
        send_file(session, field, file_name, media_type, first, limits).await
    }

    /// The end of the body: validates the fields and commits the report.
    async fn finish(mut self) -> Result<Accepted, Refused> {
        self.kind.check_complete(&self.seen)?;
        let (body, reporter) = match self.raw.validate(self.limits) {
            Ok(ok) if self.errors.is_empty() => ok,
            Ok(_) => return Err(invalid(self.raw, self.errors, self.files)),
            Err(more) => {
                for (field, message) in more.0 {
                    if self.errors.for_field(&field).is_none() {
                        self.errors.push(&field, message);
                    }
                }
                return Err(invalid(self.raw, self.errors, self.files));
            }
        };
        let severity = body.severity;
        let session = self.take_session();
        let reporter_email = (!reporter.email.is_empty()).then(|| reporter.email.clone());
        let finished = session.finish(body, reporter).await?;
        Ok(Accepted {
            sealed: finished.sealed,
            receipt: finished.receipt,
            reply_code: finished.reply_code,
            reporter_email,
            severity,
        })
    }

    /// The sealing session, started when first needed.
    fn session(&mut self) -> &mut Session {
        let session = self.take_session();
        self.session.insert(session)
    }

    /// The sealing session, taken out (started if there was none).
    fn take_session(&mut self) -> Session {
        match self.session.take() {
            Some(session) => session,
            None => start_session(
                self.sealer.clone(),
                self.state.store().clone(),
                self.kind.channel(),
                self.state,
            ),
        }
    }
}

fn invalid(raw: RawReport, mut errors: FieldErrors, files: usize) -> Refused {
    errors.0.truncate(MAX_FIELD_ERRORS);
    Refused::Invalid {
        raw: Box::new(raw),
        errors,
        had_files: files > 0,
    }
}

fn text_too_large(limits: &Limits) -> Refusal {
    Refusal::TextTooLarge {
        limit: max_text_bytes(limits),
        fields: FIELDS.len(),
        field_bytes: limits.max_field_bytes,
    }
}

/// Reads a text part, keeping at most `cap` bytes (the rest is read and
/// dropped). Every byte, kept or not, is taken from `text_left`: when that
/// runs out the request is refused. Returns the bytes and whether there
/// were more.
pub(super) async fn read_capped(
    field: &mut multer::Field<'_>,
    cap: usize,
    text_left: &mut usize,
    limits: &Limits,
) -> Result<(Zeroizing<Vec<u8>>, bool), Refusal> {
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
pub(super) fn multipart_error(e: multer::Error) -> Refusal {
    match e {
        multer::Error::StreamReadFailed(source) => match source.downcast_ref::<BodyError>() {
            Some(BodyError::TooSlow {
                min_per_second,
                window,
            }) => Interruption::TooSlow {
                min_per_second: *min_per_second,
                window: *window,
            }
            .into(),
            Some(BodyError::HeadersTooLong) => Malformed::HeadersTooLong {
                limit: MAX_PART_HEADER_BYTES,
            }
            .into(),
            _ => Interruption::Abandoned.into(),
        },
        multer::Error::StreamSizeExceeded { limit } => Refusal::RequestTooLarge { limit },
        multer::Error::IncompleteStream | multer::Error::IncompleteFieldData { .. } => {
            Malformed::Incomplete.into()
        }
        _ => Malformed::Syntax.into(),
    }
}

/// Maps sealing failures to answers; details go to the log only.
pub(super) fn seal_error(e: SealError) -> Refusal {
    match e {
        SealError::TooLarge { limit } => Refusal::FileTooLarge { limit },
        SealError::TooManyAttachments { limit } => Refusal::TooManyFiles { limit },
        SealError::ManifestTooLarge { limit } => Refusal::ReportTooLarge { limit },
        SealError::Keys(KeyError::NoUsableKey { .. }) => {
            tracing::warn!("report refused: no maintainer certificate is usable any more");
            Refusal::NoUsableKey
        }
        SealError::Store(StoreError::Io { .. }) | SealError::Output(_) => {
            tracing::error!("the store is not writable: {e}");
            Refusal::StoreUnavailable
        }
        SealError::Input(_) => Interruption::Abandoned.into(),
        // Only a sender's input makes an event invalid (a follow-up's
        // message, say); the reason quotes none of it.
        SealError::Event(e) => Refusal::InvalidEvent(e.to_string()),
        other => {
            tracing::error!("sealing failed: {other}");
            Refusal::Internal
        }
    }
}

/// What the receiving side tells a sealing thread.
pub(super) enum Msg {
    Begin {
        name: String,
        media_type: &'static str,
    },
    Data(Bytes),
    End,
    /// A report's fields: commit it.
    Finish(Box<(ReportBody, Reporter)>),
    /// A follow-up's message: store it.
    Message(Zeroizing<String>),
}

/// A blocking sealing thread and the bounded channel that feeds it: a
/// report's upload, or a reporter's follow-up.
pub(super) struct SealThread<T> {
    tx: mpsc::Sender<Msg>,
    /// Taken when awaited (a finished handle must not be polled again).
    handle: Option<JoinHandle<Result<T, SealError>>>,
}

impl<T: Send + 'static> SealThread<T> {
    /// Runs `work` on a blocking thread, reading what [`Self::send`] sends.
    pub(super) fn spawn(
        work: impl FnOnce(mpsc::Receiver<Msg>) -> Result<T, SealError> + Send + 'static,
    ) -> SealThread<T> {
        let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
        SealThread {
            tx,
            handle: Some(tokio::task::spawn_blocking(move || work(rx))),
        }
    }

    /// Waits for the sealing thread to end and returns its result.
    pub(super) async fn outcome(&mut self) -> Result<T, Refusal> {
        let Some(handle) = self.handle.take() else {
            return Err(Refusal::Internal);
        };
        match handle.await {
            Ok(Ok(done)) => Ok(done),
            Ok(Err(e)) => Err(seal_error(e)),
            Err(_) => Err(Refusal::Internal),
        }
    }

    /// Sends a message; if the sealing thread has stopped, its error.
    pub(super) async fn send(&mut self, msg: Msg) -> Result<(), Refusal> {
        if self.tx.send(msg).await.is_ok() {
            return Ok(());
        }
        // The thread stopped early: its result says why.
        match self.outcome().await {
            Ok(_) => Err(Refusal::Internal),
            Err(e) => Err(e),
        }
    }

    /// Stops the thread without committing and waits until what it
    /// staged is gone.
    pub(super) async fn discard(self) {
        let SealThread { tx, handle } = self;
        drop(tx);
        if let Some(handle) = handle {
            let _ = handle.await;
        }
    }
}

/// A file part's first bytes (empty chunks skipped); `None` for the empty
/// part a form's file input sends when no file was chosen.
pub(super) async fn first_chunk(
    field: &mut multer::Field<'_>,
) -> Result<Option<Option<Bytes>>, Refusal> {
    let mut first = field.chunk().await.map_err(multipart_error)?;
    while first.as_ref().is_some_and(Bytes::is_empty) {
        first = field.chunk().await.map_err(multipart_error)?;
    }
    if first.is_none() && field.file_name().is_none_or(str::is_empty) {
        return Ok(None);
    }
    Ok(Some(first))
}

/// Streams one file part (its `first` chunk already read) into `thread`
/// as `Begin`, `Data`…, `End`, refused once it passes
/// `max_attachment_bytes`.
pub(super) async fn send_file<T: Send + 'static>(
    thread: &mut SealThread<T>,
    mut field: multer::Field<'_>,
    name: String,
    media_type: &'static str,
    first: Option<Bytes>,
    limits: &Limits,
) -> Result<(), Refusal> {
    thread.send(Msg::Begin { name, media_type }).await?;
    let mut size = 0u64;
    let mut chunk = first;
    while let Some(bytes) = chunk {
        size += bytes.len() as u64;
        if size > limits.max_attachment_bytes {
            return Err(Refusal::FileTooLarge {
                limit: limits.max_attachment_bytes,
            });
        }
        thread.send(Msg::Data(bytes)).await?;
        chunk = field.chunk().await.map_err(multipart_error)?;
    }
    thread.send(Msg::End).await
}

/// The sealing thread of one upload.
type Session = SealThread<Finished>;

fn start_session(
    sealer: Sealer,
    store: Arc<dyn Store>,
    channel: Channel,
    state: &AppState,
) -> Session {
    let limit = state.config().limits.max_attachment_bytes;
    let project = state.config().project_name.clone();
    let desk = state.replies().clone();
    SealThread::spawn(move |rx| {
        seal_session(&sealer, store.as_ref(), &desk, channel, limit, &project, rx)
    })
}

impl Session {
    async fn finish(mut self, body: ReportBody, reporter: Reporter) -> Result<Finished, Refusal> {
        self.send(Msg::Finish(Box::new((body, reporter)))).await?;
        self.outcome().await
    }
}

/// The sealing thread: begins the report, seals each file as its chunks
/// arrive, and commits only on `Finish`. If the channel closes first, the
/// writer is dropped and the staged report removed.
fn seal_session(
    sealer: &Sealer,
    store: &dyn Store,
    desk: &Desk,
    channel: Channel,
    limit: u64,
    project: &str,
    mut rx: mpsc::Receiver<Msg>,
) -> Result<Finished, SealError> {
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
                return finish(writer, Some(desk), project, body, reporter, None);
            }
            Some(Msg::Data(_) | Msg::End | Msg::Message(_)) => {
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
pub(super) struct ChannelReader<'a> {
    rx: &'a mut mpsc::Receiver<Msg>,
    chunk: Bytes,
}

impl<'a> ChannelReader<'a> {
    pub(super) fn new(rx: &'a mut mpsc::Receiver<Msg>) -> ChannelReader<'a> {
        ChannelReader {
            rx,
            chunk: Bytes::new(),
        }
    }
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
pub(super) struct HeaderBudget {
    active: AtomicBool,
    used: AtomicU64,
}

impl HeaderBudget {
    pub(super) fn start(&self) {
        self.used.store(0, Ordering::Relaxed);
        self.active.store(true, Ordering::Relaxed);
    }

    pub(super) fn stop(&self) {
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
}
