//! HTTP refusals: one enum for every request the intake turns down,
//! answered as JSON for the API and as a page for the form. Each variant
//! decides its status, its stable machine code (docs/openapi.json), its
//! message and its metric label in one place. Messages explain the limit
//! or the mistake; they never quote report content.

use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::config::Span;
use crate::metrics::Rejection;
use crate::report::FieldErrors;
use crate::units::human_size;

/// Seconds after which a client may try again when the server is busy,
/// has no usable key, or cannot reach its store (503), or after a rate
/// limit (429).
pub const RETRY_AFTER_SECS: u64 = 60;
/// Seconds after which one address may try again when its own uploads
/// fill its share of the upload slots: uploads end quickly.
pub const PEER_RETRY_AFTER_SECS: u64 = 10;

/// A refused request. Variant data are limits, sizes and field names from
/// the intake's own tables, never anything the client sent.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Refusal {
    /// Every upload slot (`max_concurrent_uploads`) is taken.
    Busy { max_concurrent_uploads: usize },
    /// The client's address already has `max_uploads_per_peer` uploads running.
    PeerBusy { max_uploads_per_peer: usize },
    /// No maintainer certificate is usable: the intake fails closed.
    NoUsableKey,
    /// The report store cannot be read or written.
    StoreUnavailable,
    /// The intake's state directory cannot record a fetch confirmation.
    StateUnavailable,
    /// An attachment is over `max_attachment_bytes`.
    FileTooLarge { limit: u64 },
    /// More attachments than `max_attachments`.
    TooManyFiles { limit: usize },
    /// More multipart parts than a report can need.
    TooManyParts { limit: usize },
    /// The text parts together are over their budget.
    TextTooLarge {
        limit: usize,
        fields: usize,
        field_bytes: usize,
    },
    /// The whole body is over what the limits allow together.
    RequestTooLarge { limit: u64 },
    /// The report's text would make a manifest larger than readers accept.
    ReportTooLarge { limit: u64 },
    /// A maintainer's fetch confirmation is over its size limit.
    ConfirmationTooLarge { limit: usize },
    /// The upload did not arrive whole, or not in time.
    Interrupted(Interruption),
    /// The request is not a well-formed submission, for this reason.
    Malformed(Malformed),
    /// The report's fields failed validation.
    InvalidReport(FieldErrors),
    /// A fetch confirmation could not be parsed (the parser's reason).
    InvalidConfirmation(String),
    /// A fetch confirmation does not match the stored ciphertext.
    ConfirmationMismatch(String),
    /// A case event is over its size limit.
    EventTooLarge { limit: usize },
    /// A case event is not a well-formed encrypted OpenPGP message, or its
    /// name is not an event name (the reason).
    InvalidEvent(String),
    /// An event of that name exists with other contents.
    EventConflict,
    /// A case status over its size limit.
    StatusTooLarge { limit: usize },
    /// A case status that is not a maintainer's signed
    /// `embargo.case-status.v1` for this report (the reason).
    InvalidStatus(String),
    /// A case status that is older than the stored one, or misses events
    /// the intake holds (the reason).
    StaleStatus(String),
    /// Shared session keys that are not only session keys, or do not fit
    /// the stored part (the reason).
    InvalidSessionKeys(String),
    /// The body is not multipart/form-data.
    UnsupportedMediaType,
    /// A browser sent the form from another site (CSRF).
    CrossOrigin,
    /// The client's address is over a per-minute limit.
    RateLimited(RateLimit),
    /// A maintainer route without a valid bearer token.
    Unauthorized,
    /// No such route, report or part.
    NotFound,
    /// security.txt asked for, but `public_url` is not set.
    NoPublicUrl,
    /// A `Range` outside the part, which has `size` bytes.
    RangeNotSatisfiable { size: u64 },
    /// What was typed is not a reply code (the parser's reason, which
    /// never quotes it).
    InvalidCode(String),
    /// No report answers to this code: wrong, unknown and deleted look
    /// exactly alike.
    UnknownCode,
    /// The peer tried more reply codes than [`super::state::CODE_ATTEMPTS`]
    /// within the window.
    TooManyCodes { attempts: u32, minutes: u64 },
    /// A follow-up without a message.
    EmptyMessage,
    /// A follow-up part out of order (the code must come first, the
    /// message before any file).
    FollowUpOrder(&'static str),
    /// A reporter-channel request that is not the JSON it should be.
    InvalidRequest(String),
    /// `[smtp]` is not configured, so no mail can be sent.
    NoSmtp,
    /// The mail could not be sent now (limits or the SMTP server).
    MailNotSent(String),
    /// A server fault: details go to the log, the client gets none.
    Internal,
}

/// How an upload stopped before it was whole.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Interruption {
    /// The client stopped sending or the connection broke.
    Abandoned,
    /// Fewer than `min_per_second` bytes a second arrived over `window`.
    TooSlow {
        min_per_second: u64,
        window: Duration,
    },
    /// The upload took longer than `upload_timeout`.
    Deadline { limit: Span },
}

/// Why a submission's body or content type is not understood.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Malformed {
    /// multipart/form-data without a boundary parameter.
    NoBoundary,
    /// A form part whose name is not a field of the form.
    UnknownField,
    /// An API part named neither `report` nor `attachment`.
    UnknownPart,
    /// A form field sent twice; `field` is one of the known field names.
    DuplicateField { field: &'static str },
    /// The API's `report` part sent twice.
    DuplicateReport,
    /// The API request has no `report` part.
    MissingReport,
    /// A part's headers are longer than `limit` bytes.
    HeadersTooLong { limit: u64 },
    /// The body ended before its final boundary.
    Incomplete,
    /// Anything else multer cannot parse.
    Syntax,
}

/// Which per-address limit a client is over.
#[derive(Debug, Clone, Copy)]
pub enum RateLimit {
    /// Over `rate_limit_per_minute` accepted reports.
    Accepted { per_minute: u32 },
    /// Over `refusal_limit_per_minute` refused submissions.
    Refusals { per_minute: u32 },
}

impl Refusal {
    /// The HTTP status of the answer.
    pub fn status(&self) -> StatusCode {
        use Refusal::*;
        match self {
            Busy { .. } | NoUsableKey | StoreUnavailable | StateUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            PeerBusy { .. } | RateLimited(_) | TooManyCodes { .. } => StatusCode::TOO_MANY_REQUESTS,
            InvalidCode(_) | EmptyMessage | FollowUpOrder(_) | InvalidRequest(_) => {
                StatusCode::BAD_REQUEST
            }
            UnknownCode => StatusCode::NOT_FOUND,
            NoSmtp => StatusCode::CONFLICT,
            MailNotSent(_) => StatusCode::SERVICE_UNAVAILABLE,
            FileTooLarge { .. }
            | TooManyFiles { .. }
            | TooManyParts { .. }
            | TextTooLarge { .. }
            | RequestTooLarge { .. }
            | ReportTooLarge { .. }
            | ConfirmationTooLarge { .. }
            | EventTooLarge { .. }
            | StatusTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Interrupted(Interruption::Abandoned) => StatusCode::BAD_REQUEST,
            Interrupted(_) => StatusCode::REQUEST_TIMEOUT,
            Malformed(_)
            | InvalidReport(_)
            | InvalidConfirmation(_)
            | InvalidEvent(_)
            | InvalidStatus(_)
            | InvalidSessionKeys(_) => StatusCode::BAD_REQUEST,
            ConfirmationMismatch(_) | EventConflict | StaleStatus(_) => StatusCode::CONFLICT,
            UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            CrossOrigin => StatusCode::FORBIDDEN,
            Unauthorized => StatusCode::UNAUTHORIZED,
            NotFound | NoPublicUrl => StatusCode::NOT_FOUND,
            RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine-readable code (part of the API contract).
    pub fn code(&self) -> &'static str {
        use Refusal::*;
        match self {
            Busy { .. } => "busy",
            PeerBusy { .. } => "too_many_uploads",
            NoUsableKey => "no_usable_key",
            StoreUnavailable => "store_unavailable",
            StateUnavailable => "state_unavailable",
            FileTooLarge { .. } => "file_too_large",
            TooManyFiles { .. } => "too_many_attachments",
            TooManyParts { .. } => "too_many_parts",
            TextTooLarge { .. } => "text_too_large",
            RequestTooLarge { .. } => "request_too_large",
            ReportTooLarge { .. } => "report_too_large",
            ConfirmationTooLarge { .. } => "confirmation_too_large",
            Interrupted(why) => why.code(),
            Malformed(why) => why.code(),
            InvalidReport(_) => "invalid_report",
            InvalidConfirmation(_) => "invalid_confirmation",
            ConfirmationMismatch(_) => "confirmation_mismatch",
            EventTooLarge { .. } => "event_too_large",
            InvalidEvent(_) => "invalid_event",
            EventConflict => "event_conflict",
            InvalidStatus(_) => "invalid_status",
            StatusTooLarge { .. } => "status_too_large",
            StaleStatus(_) => "stale_status",
            InvalidSessionKeys(_) => "invalid_session_keys",
            UnsupportedMediaType => "unsupported_media_type",
            CrossOrigin => "cross_site_request",
            RateLimited(_) => "rate_limited",
            Unauthorized => "unauthorized",
            NotFound => "not_found",
            NoPublicUrl => "no_public_url",
            RangeNotSatisfiable { .. } => "range_not_satisfiable",
            InvalidCode(_) => "invalid_code",
            UnknownCode => "unknown_code",
            TooManyCodes { .. } => "too_many_codes",
            EmptyMessage => "empty_message",
            FollowUpOrder(_) => "follow_up_order",
            InvalidRequest(_) => "invalid_request",
            NoSmtp => "no_smtp",
            MailNotSent(_) => "mail_not_sent",
            Internal => "internal",
        }
    }

    /// The label a refused report submission is counted under; `None`
    /// for refusals of the maintainer and public read routes, which are
    /// not report refusals (only a missing token is counted there).
    pub fn metric(&self) -> Option<Rejection> {
        use Refusal::*;
        Some(match self {
            Busy { .. } => Rejection::Busy,
            PeerBusy { .. } | RateLimited(_) => Rejection::RateLimited,
            NoUsableKey => Rejection::NoKey,
            StoreUnavailable => Rejection::StoreError,
            FileTooLarge { .. }
            | TooManyFiles { .. }
            | TooManyParts { .. }
            | TextTooLarge { .. }
            | RequestTooLarge { .. }
            | ReportTooLarge { .. } => Rejection::TooLarge,
            Interrupted(Interruption::Abandoned) | Malformed(_) | InvalidReport(_) => {
                Rejection::Invalid
            }
            Interrupted(_) => Rejection::Timeout,
            UnsupportedMediaType => Rejection::UnsupportedType,
            CrossOrigin | Unauthorized => Rejection::Unauthorized,
            Internal => Rejection::Internal,
            StateUnavailable
            | ConfirmationTooLarge { .. }
            | InvalidConfirmation(_)
            | ConfirmationMismatch(_)
            | EventTooLarge { .. }
            | InvalidEvent(_)
            | EventConflict
            | InvalidStatus(_)
            | StatusTooLarge { .. }
            | StaleStatus(_)
            | InvalidSessionKeys(_)
            | NotFound
            | NoPublicUrl
            | RangeNotSatisfiable { .. }
            | InvalidCode(_)
            | UnknownCode
            | TooManyCodes { .. }
            | EmptyMessage
            | FollowUpOrder(_)
            | InvalidRequest(_)
            | NoSmtp
            | MailNotSent(_) => return None,
        })
    }

    /// The message for people: what was refused and what to do.
    pub fn message(&self) -> String {
        use Refusal::*;
        match self {
            Busy {
                max_concurrent_uploads,
            } => format!(
                "{max_concurrent_uploads} uploads are already being received, the most this server takes at once; try again in a minute"
            ),
            PeerBusy {
                max_uploads_per_peer,
            } => format!(
                "{max_uploads_per_peer} uploads from your address are already being received, the most one address may send at once; wait until they finish, then send again"
            ),
            NoUsableKey => "reports cannot be accepted right now: no maintainer encryption key is usable, and this server never stores a report it cannot encrypt; nothing was stored, please try again later (GET /healthz says why)".into(),
            StoreUnavailable => {
                "the report store is unavailable; nothing was stored, please try again later".into()
            }
            StateUnavailable => {
                "the intake cannot record the confirmation now; try again later".into()
            }
            FileTooLarge { limit } => format!(
                "an attachment is larger than the limit of {limit} bytes ({}); nothing was stored",
                human_size(*limit)
            ),
            TooManyFiles { limit } => {
                format!("a report may have at most {limit} attachments; nothing was stored")
            }
            TooManyParts { limit } => format!(
                "the request has more than {limit} multipart parts, the most a report can need (each field once, plus the attachments); nothing was stored"
            ),
            TextTooLarge {
                limit,
                fields,
                field_bytes,
            } => format!(
                "the text fields together are larger than {limit} bytes ({fields} fields of at most {field_bytes} bytes each); nothing was stored"
            ),
            RequestTooLarge { limit } => format!(
                "the request is larger than {limit} bytes, more than the attachment and field limits allow"
            ),
            ReportTooLarge { limit } => format!(
                "the report's text, once encoded, would be larger than the {limit} bytes embargo reads back; send long text (or text with many control characters) as an attachment; nothing was stored"
            ),
            ConfirmationTooLarge { limit } => {
                format!("a fetch confirmation is at most {limit} bytes")
            }
            Interrupted(why) => why.message(),
            Malformed(why) => why.message(),
            InvalidReport(errors) => format!("the report is invalid: {errors}"),
            InvalidConfirmation(why) => why.clone(),
            ConfirmationMismatch(why) => {
                format!("{why}; nothing was marked: fetch the report again")
            }
            EventTooLarge { limit } => {
                format!("a case event is at most {limit} bytes of ciphertext; nothing was stored")
            }
            InvalidEvent(why) => format!("{why}; nothing was stored"),
            InvalidSessionKeys(why) => format!("{why}; the stored part is unchanged"),
            InvalidStatus(why) => format!("{why}; the stored case status is unchanged"),
            StatusTooLarge { limit } => {
                format!("a case status is at most {limit} bytes; the stored one is unchanged")
            }
            StaleStatus(why) => format!(
                "{why}; the stored case status is unchanged: fetch the case's events, then send a status computed from all of them (`embargo case sync`)"
            ),
            EventConflict => "an event of that name is stored already with other contents: events are never replaced; nothing was stored (an event is written once, under a new name)".into(),
            UnsupportedMediaType => "send the report as multipart/form-data".into(),
            CrossOrigin => "this form only accepts reports sent from its own page; open the form at / and send it from there".into(),
            RateLimited(RateLimit::Accepted { per_minute }) => format!(
                "at most {per_minute} reports a minute are accepted from one address; wait a minute and send again"
            ),
            RateLimited(RateLimit::Refusals { per_minute }) => format!(
                "at most {per_minute} refused submissions a minute are answered for one address, and yours are over that; wait a minute, fix what the earlier answers named, then send again"
            ),
            Unauthorized => {
                "a valid maintainer token is needed: send it as `Authorization: Bearer TOKEN`"
                    .into()
            }
            NotFound => "no such report or part".into(),
            NoPublicUrl => "this intake publishes no security.txt: its operator has not set public_url".into(),
            RangeNotSatisfiable { size } => format!("the part has {size} bytes"),
            InvalidCode(why) => format!("{why}; nothing was looked up"),
            UnknownCode => "no report answers to this reply code: check it character by character against the one you were given (letters and digits only; a report may also have been deleted after it was closed); nothing was stored".into(),
            TooManyCodes { attempts, minutes } => format!(
                "at most {attempts} reply codes may be tried from one address within {minutes} minutes; wait, then try again"
            ),
            EmptyMessage => "write a message to send with your follow-up; nothing was stored".into(),
            FollowUpOrder(why) => format!("{why}; nothing was stored"),
            InvalidRequest(why) => format!("{why}; nothing was stored"),
            NoSmtp => "this intake sends no mail: its operator has not configured [smtp]".into(),
            MailNotSent(why) => format!("the notice was not sent ({why}); try again later"),
            Internal => "the report could not be sealed because of a server fault; nothing was stored, please try again later".into(),
        }
    }

    /// Seconds after which trying again makes sense (`Retry-After`).
    pub fn retry_after(&self) -> Option<u64> {
        use Refusal::*;
        match self {
            Busy { .. } | NoUsableKey | StoreUnavailable | StateUnavailable | RateLimited(_) => {
                Some(RETRY_AFTER_SECS)
            }
            TooManyCodes { minutes, .. } => Some(minutes * 60),
            MailNotSent(_) => Some(RETRY_AFTER_SECS),
            PeerBusy { .. } => Some(PEER_RETRY_AFTER_SECS),
            _ => None,
        }
    }

    /// Per-field messages (invalid report), in field order.
    pub fn fields(&self) -> Option<&FieldErrors> {
        match self {
            Refusal::InvalidReport(errors) => Some(errors),
            _ => None,
        }
    }

    /// Adds the headers that go with the refusal, to the JSON answer and
    /// to the form's page alike.
    pub(crate) fn decorate(&self, response: &mut Response) {
        let headers = response.headers_mut();
        if let Some(secs) = self.retry_after() {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        match self {
            Refusal::Unauthorized => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Refusal::RangeNotSatisfiable { size } => {
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    headers.insert(header::CONTENT_RANGE, v);
                }
            }
            _ => {}
        }
    }
}

impl Interruption {
    fn code(&self) -> &'static str {
        match self {
            Interruption::Abandoned => "upload_interrupted",
            Interruption::TooSlow { .. } => "upload_too_slow",
            Interruption::Deadline { .. } => "timeout",
        }
    }

    fn message(&self) -> String {
        match self {
            Interruption::Abandoned => {
                "the upload stopped before it was complete; nothing was stored".into()
            }
            Interruption::TooSlow {
                min_per_second,
                window,
            } => format!(
                "the upload arrived at less than {min_per_second} bytes a second over {}, the slowest this server waits for; nothing was stored; send it again over a faster or steadier connection",
                Span(*window)
            ),
            Interruption::Deadline { limit } => {
                format!("the upload took longer than the limit of {limit}; nothing was stored")
            }
        }
    }
}

impl Malformed {
    fn code(&self) -> &'static str {
        match self {
            Malformed::NoBoundary => "no_boundary",
            Malformed::UnknownField | Malformed::UnknownPart => "unknown_part",
            Malformed::DuplicateField { .. } | Malformed::DuplicateReport => "duplicate_part",
            Malformed::MissingReport => "missing_report",
            Malformed::HeadersTooLong { .. } => "headers_too_long",
            Malformed::Incomplete => "incomplete_multipart",
            Malformed::Syntax => "malformed_multipart",
        }
    }

    fn message(&self) -> String {
        match self {
            Malformed::NoBoundary => {
                "the multipart/form-data content type has no boundary parameter".into()
            }
            Malformed::UnknownField => {
                "the form sent a part this intake does not know; use the form at /".into()
            }
            Malformed::UnknownPart => {
                "parts must be named \"report\" (the input JSON) or \"attachment\" (files)".into()
            }
            Malformed::DuplicateField { field } => format!(
                "the field \"{field}\" was sent more than once; send each field once (the form at / does); nothing was stored"
            ),
            Malformed::DuplicateReport => "the part \"report\" was sent more than once; send the input JSON once; nothing was stored".into(),
            Malformed::MissingReport => "the part \"report\" (the input JSON) is missing".into(),
            Malformed::HeadersTooLong { limit } => {
                format!("a part's headers are longer than {limit} bytes")
            }
            Malformed::Incomplete => {
                "the multipart body ended before its final boundary; nothing was stored".into()
            }
            Malformed::Syntax => "the multipart body is malformed; nothing was stored".into(),
        }
    }
}

impl From<Malformed> for Refusal {
    fn from(why: Malformed) -> Refusal {
        Refusal::Malformed(why)
    }
}

impl From<Interruption> for Refusal {
    fn from(why: Interruption) -> Refusal {
        Refusal::Interrupted(why)
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": { "code": self.code(), "message": self.message() } });
        if let Some(fields) = self.fields() {
            body["error"]["fields"] = fields
                .0
                .iter()
                .map(|(field, message)| json!({ "field": field, "message": message }))
                .collect();
        }
        let mut response = (self.status(), Json(body)).into_response();
        self.decorate(&mut response);
        response
    }
}

#[cfg(test)]
mod tests {
    use super::{Duration, FieldErrors, IntoResponse, Span, header};
    use super::{Interruption, RateLimit, Refusal, Rejection};

    /// One of every refusal (and of every reason inside one).
    fn every_refusal() -> Vec<Refusal> {
        use Refusal::*;
        vec![
            Busy {
                max_concurrent_uploads: 32,
            },
            PeerBusy {
                max_uploads_per_peer: 4,
            },
            NoUsableKey,
            StoreUnavailable,
            StateUnavailable,
            FileTooLarge { limit: 1024 },
            TooManyFiles { limit: 5 },
            TooManyParts { limit: 20 },
            TextTooLarge {
                limit: 100,
                fields: 10,
                field_bytes: 10,
            },
            RequestTooLarge { limit: 1 << 20 },
            ReportTooLarge { limit: 1 << 24 },
            ConfirmationTooLarge { limit: 1 << 16 },
            Interrupted(Interruption::Abandoned),
            Interrupted(Interruption::TooSlow {
                min_per_second: 1000,
                window: Duration::from_secs(30),
            }),
            Interrupted(Interruption::Deadline {
                limit: Span(Duration::from_secs(600)),
            }),
            Malformed(super::Malformed::NoBoundary),
            Malformed(super::Malformed::UnknownField),
            Malformed(super::Malformed::UnknownPart),
            Malformed(super::Malformed::DuplicateField { field: "title" }),
            Malformed(super::Malformed::DuplicateReport),
            Malformed(super::Malformed::MissingReport),
            Malformed(super::Malformed::HeadersTooLong { limit: 1 << 20 }),
            Malformed(super::Malformed::Incomplete),
            Malformed(super::Malformed::Syntax),
            InvalidReport(FieldErrors::one("title", "is required".into())),
            InvalidConfirmation("the body is not JSON".into()),
            ConfirmationMismatch("the SHA-256 of report.pgp differs".into()),
            EventTooLarge { limit: 1 << 20 },
            InvalidEvent("not an encrypted OpenPGP message".into()),
            EventConflict,
            InvalidStatus("not signed".into()),
            StatusTooLarge { limit: 1 << 16 },
            StaleStatus("older".into()),
            InvalidSessionKeys("not session keys".into()),
            UnsupportedMediaType,
            CrossOrigin,
            RateLimited(RateLimit::Accepted { per_minute: 5 }),
            RateLimited(RateLimit::Refusals { per_minute: 30 }),
            Unauthorized,
            NotFound,
            NoPublicUrl,
            RangeNotSatisfiable { size: 10 },
            InvalidCode("the reply code has a typo".into()),
            UnknownCode,
            TooManyCodes {
                attempts: 20,
                minutes: 10,
            },
            EmptyMessage,
            FollowUpOrder("the reply code comes first"),
            InvalidRequest("not JSON".into()),
            NoSmtp,
            MailNotSent("limit".into()),
            Internal,
        ]
    }

    /// The contract, written out once more: status, code, metric label.
    /// The match has no catch-all, so a new variant does not compile
    /// until all three are decided here too.
    fn expected(r: &Refusal) -> (u16, &'static str, Option<Rejection>) {
        use super::Interruption as I;
        use super::Malformed as M;
        use Refusal::*;
        match r {
            Busy { .. } => (503, "busy", Some(Rejection::Busy)),
            PeerBusy { .. } => (429, "too_many_uploads", Some(Rejection::RateLimited)),
            NoUsableKey => (503, "no_usable_key", Some(Rejection::NoKey)),
            StoreUnavailable => (503, "store_unavailable", Some(Rejection::StoreError)),
            StateUnavailable => (503, "state_unavailable", None),
            FileTooLarge { .. } => (413, "file_too_large", Some(Rejection::TooLarge)),
            TooManyFiles { .. } => (413, "too_many_attachments", Some(Rejection::TooLarge)),
            TooManyParts { .. } => (413, "too_many_parts", Some(Rejection::TooLarge)),
            TextTooLarge { .. } => (413, "text_too_large", Some(Rejection::TooLarge)),
            RequestTooLarge { .. } => (413, "request_too_large", Some(Rejection::TooLarge)),
            ReportTooLarge { .. } => (413, "report_too_large", Some(Rejection::TooLarge)),
            ConfirmationTooLarge { .. } => (413, "confirmation_too_large", None),
            Interrupted(I::Abandoned) => (400, "upload_interrupted", Some(Rejection::Invalid)),
            Interrupted(I::TooSlow { .. }) => (408, "upload_too_slow", Some(Rejection::Timeout)),
            Interrupted(I::Deadline { .. }) => (408, "timeout", Some(Rejection::Timeout)),
            Malformed(M::NoBoundary) => (400, "no_boundary", Some(Rejection::Invalid)),
            Malformed(M::UnknownField | M::UnknownPart) => {
                (400, "unknown_part", Some(Rejection::Invalid))
            }
            Malformed(M::DuplicateField { .. } | M::DuplicateReport) => {
                (400, "duplicate_part", Some(Rejection::Invalid))
            }
            Malformed(M::MissingReport) => (400, "missing_report", Some(Rejection::Invalid)),
            Malformed(M::HeadersTooLong { .. }) => {
                (400, "headers_too_long", Some(Rejection::Invalid))
            }
            Malformed(M::Incomplete) => (400, "incomplete_multipart", Some(Rejection::Invalid)),
            Malformed(M::Syntax) => (400, "malformed_multipart", Some(Rejection::Invalid)),
            InvalidCode(_) => (400, "invalid_code", None),
            UnknownCode => (404, "unknown_code", None),
            TooManyCodes { .. } => (429, "too_many_codes", None),
            EmptyMessage => (400, "empty_message", None),
            FollowUpOrder(_) => (400, "follow_up_order", None),
            InvalidRequest(_) => (400, "invalid_request", None),
            NoSmtp => (409, "no_smtp", None),
            MailNotSent(_) => (503, "mail_not_sent", None),
            InvalidReport(_) => (400, "invalid_report", Some(Rejection::Invalid)),
            InvalidConfirmation(_) => (400, "invalid_confirmation", None),
            ConfirmationMismatch(_) => (409, "confirmation_mismatch", None),
            EventTooLarge { .. } => (413, "event_too_large", None),
            InvalidEvent(_) => (400, "invalid_event", None),
            EventConflict => (409, "event_conflict", None),
            InvalidStatus(_) => (400, "invalid_status", None),
            StatusTooLarge { .. } => (413, "status_too_large", None),
            StaleStatus(_) => (409, "stale_status", None),
            InvalidSessionKeys(_) => (400, "invalid_session_keys", None),
            UnsupportedMediaType => (
                415,
                "unsupported_media_type",
                Some(Rejection::UnsupportedType),
            ),
            CrossOrigin => (403, "cross_site_request", Some(Rejection::Unauthorized)),
            RateLimited(_) => (429, "rate_limited", Some(Rejection::RateLimited)),
            Unauthorized => (401, "unauthorized", Some(Rejection::Unauthorized)),
            NotFound => (404, "not_found", None),
            NoPublicUrl => (404, "no_public_url", None),
            RangeNotSatisfiable { .. } => (416, "range_not_satisfiable", None),
            Internal => (500, "internal", Some(Rejection::Internal)),
        }
    }

    #[test]
    fn the_api_document_lists_exactly_the_codes_refusals_carry() {
        let doc: serde_json::Value =
            serde_json::from_str(include_str!("../../docs/openapi.json")).unwrap();
        let listed: std::collections::BTreeSet<String> = doc["components"]["schemas"]["Error"]
            ["properties"]["error"]["properties"]["code"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect();
        let carried: std::collections::BTreeSet<String> = every_refusal()
            .iter()
            .map(|r| r.code().to_owned())
            .collect();
        assert_eq!(
            listed, carried,
            "edit REFUSAL_CODES in scripts/openapi.py, then regenerate docs/openapi.json"
        );
    }

    #[test]
    fn every_refusal_has_its_status_code_and_label() {
        for r in every_refusal() {
            let (status, code, label) = expected(&r);
            assert_eq!(r.status().as_u16(), status, "{r:?}");
            assert_eq!(r.code(), code, "{r:?}");
            assert_eq!(r.metric(), label, "{r:?}");
            let message = r.message();
            assert!(!message.is_empty() && !message.contains('{'), "{r:?}");
            let waits = matches!(status, 429 | 503);
            assert_eq!(r.retry_after().is_some(), waits, "{r:?}");
        }
    }

    #[test]
    fn headers_go_with_the_refusal() {
        let answer = Refusal::Unauthorized.into_response();
        assert_eq!(answer.headers()[header::WWW_AUTHENTICATE], "Bearer");
        let answer = Refusal::PeerBusy {
            max_uploads_per_peer: 4,
        }
        .into_response();
        assert_eq!(answer.headers()[header::RETRY_AFTER], "10");
        let answer = Refusal::NoUsableKey.into_response();
        assert_eq!(answer.headers()[header::RETRY_AFTER], "60");
        let answer = Refusal::RangeNotSatisfiable { size: 10 }.into_response();
        assert_eq!(answer.headers()[header::CONTENT_RANGE], "bytes */10");
        let answer = Refusal::NotFound.into_response();
        assert!(answer.headers().get(header::RETRY_AFTER).is_none());
    }
}
