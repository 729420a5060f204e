//! The reporter's channel: the status page and its API.
//!
//! A reporter proves nothing but the reply code. Each request that carries
//! one is counted against the peer's code attempts, then the code is
//! parsed (a typo is caught by its check character before anything is
//! looked up), then Argon2id runs for it (on a blocking thread, at most
//! [`crate::reply::desk::MAX_CONCURRENT`] at once) whether or not any
//! report has it, so a wrong code and an unknown one cost the same and get
//! the same answer. The reply certificate's secret keys live only in the
//! request's memory and are wiped with it.
//!
//! Routes: `GET /status` (the code form), `POST /status` (the case page),
//! `POST /status/messages` (a follow-up from the page), and for tools
//! `POST /api/v1/status` and `POST /api/v1/status/messages`. The code is
//! never in a URL; the pages carry the same security headers as the form
//! (no script, no framing, `no-store`), and browser posts from another
//! site are refused like the form's.

use std::io;
use std::net::IpAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::conn::PeerAddr;
use super::error::Refusal;
use super::pages::{StatusCasePage, StatusPage, html};
use super::routes::check_same_origin;
use super::sealed::small_body;
use super::state::{AppState, CODE_ATTEMPTS, CODE_WINDOW};
use super::upload::{
    self, ChannelReader, HeaderBudget, Msg, SealThread, clean_file_name, multipart_error,
    multipart_reader, read_capped,
};
use crate::case::event::{Event, MAX_MESSAGE_BYTES, new_message_problem};
use crate::case::sealed::Signers;
use crate::clock::rfc3339;
use crate::reply::desk::Opened;
use crate::reply::timeline::{self, Timeline};
use crate::reply::{CodeError, ReplyCode};
use crate::seal::SealError;

/// Largest body of a code lookup (the form's or the API's).
pub const MAX_LOOKUP_BYTES: usize = 4096;

/// The API's lookup body; wiped when dropped.
#[derive(Deserialize, Zeroize, ZeroizeOnDrop)]
#[serde(deny_unknown_fields)]
struct Lookup {
    code: String,
}

/// The API follow-up's first part; wiped when dropped.
#[derive(Deserialize, Zeroize, ZeroizeOnDrop)]
#[serde(deny_unknown_fields)]
struct FollowUpJson {
    code: String,
    message: String,
}

/// Where a refusal is answered: as a page or as JSON.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Answer {
    Page,
    Json,
}

/// `GET /status`: the code form.
pub async fn status_form(State(state): State<AppState>) -> Response {
    html(StatusCode::OK, &StatusPage::new(&state, None))
}

/// `POST /status` (`application/x-www-form-urlencoded`, field `code`).
pub async fn status_page(State(state): State<AppState>, request: Request) -> Response {
    match look_up(&state, request, Answer::Page).await {
        Ok((code, opened)) => case_page(&state, &code, opened, StatusCode::OK, None).await,
        Err(e) => refused(&state, e, Answer::Page),
    }
}

/// `POST /api/v1/status` (JSON `{"code": "…"}`): the timeline as JSON.
pub async fn api_status(State(state): State<AppState>, request: Request) -> Response {
    match look_up(&state, request, Answer::Json).await {
        Ok((_, opened)) => {
            let timeline = read_timeline(&state, opened.0).await;
            match timeline {
                Ok(t) => Json(timeline_json(&t)).into_response(),
                Err(e) => e.into_response(),
            }
        }
        Err(e) => refused(&state, e, Answer::Json),
    }
}

/// `POST /status/messages` (multipart: `code`, `message`, `attachment`…).
pub async fn page_message(State(state): State<AppState>, request: Request) -> Response {
    match follow_up(&state, request, Answer::Page).await {
        Ok((code, opened, _)) => {
            let notice = "Your answer was encrypted and sent to the maintainers.";
            case_page(&state, &code, opened, StatusCode::CREATED, Some(notice)).await
        }
        Err(e) => refused(&state, e, Answer::Page),
    }
}

/// `POST /api/v1/status/messages` (multipart: `followup` JSON
/// `{"code", "message"}` first, then `attachment` parts).
pub async fn api_message(State(state): State<AppState>, request: Request) -> Response {
    match follow_up(&state, request, Answer::Json).await {
        Ok((_, _, event)) => (
            StatusCode::CREATED,
            Json(json!({
                "event": event.event.to_string(),
                "at": event.at,
                "files": event.attachments.iter().map(|a| json!({
                    "name": a.name, "size": a.size, "sha256": a.sha256,
                })).collect::<Vec<_>>(),
            })),
        )
            .into_response(),
        Err(e) => refused(&state, e, Answer::Json),
    }
}

/// The reply certificate with its secret keys, and the report: only in
/// this request's memory.
struct Unlocked(Opened);

/// Refusals of the reporter's routes, as a page or as JSON.
fn refused(state: &AppState, refusal: Refusal, answer: Answer) -> Response {
    tracing::info!(
        status = refusal.status().as_u16(),
        code = refusal.code(),
        "reporter request refused"
    );
    match answer {
        Answer::Json => refusal.into_response(),
        Answer::Page => {
            let mut response = html(
                refusal.status(),
                &StatusPage::new(state, Some(refusal.message())),
            );
            refusal.decorate(&mut response);
            response
        }
    }
}

/// The connection's peer address, when served over TCP.
fn peer_of(request: &Request) -> Option<IpAddr> {
    request
        .extensions()
        .get::<ConnectInfo<PeerAddr>>()
        .map(|ConnectInfo(PeerAddr(peer))| peer.ip())
}

/// One code attempt by `peer`: counted, parsed, derived and looked up.
async fn unlock(
    state: &AppState,
    peer: Option<IpAddr>,
    typed: &str,
) -> Result<(ReplyCode, Unlocked), Refusal> {
    if !state.code_attempt(peer) {
        return Err(Refusal::TooManyCodes {
            attempts: CODE_ATTEMPTS,
            minutes: CODE_WINDOW.as_secs() / 60,
        });
    }
    let code = ReplyCode::parse(typed).map_err(code_refusal)?;
    let desk = state.replies().clone();
    let for_thread = code.clone();
    let opened = tokio::task::spawn_blocking(move || desk.open_code(&for_thread))
        .await
        .map_err(|_| Refusal::Internal)?;
    // A report deleted since (closed and past retention) is unknown too.
    match opened {
        Some(o) if state.store().contains(&o.report).unwrap_or(false) => Ok((code, Unlocked(o))),
        _ => Err(Refusal::UnknownCode),
    }
}

fn code_refusal(e: CodeError) -> Refusal {
    Refusal::InvalidCode(e.to_string())
}

/// The code of a lookup request (form field or JSON), unlocked.
async fn look_up(
    state: &AppState,
    request: Request,
    answer: Answer,
) -> Result<(ReplyCode, Unlocked), Refusal> {
    let peer = peer_of(&request);
    if let Err(e) = check_same_origin(request.headers()) {
        upload::drain(request.into_body()).await;
        return Err(e);
    }
    let (parts, body) = request.into_parts();
    let too_large = Refusal::RequestTooLarge {
        limit: MAX_LOOKUP_BYTES as u64,
    };
    let body = small_body(&parts.headers, body, MAX_LOOKUP_BYTES, too_large).await?;
    let typed = match answer {
        Answer::Page => form_value(&body, "code"),
        Answer::Json => {
            let mut lookup = serde_json::from_slice::<Lookup>(&body).map_err(|_| {
                Refusal::InvalidRequest("send JSON {\"code\": \"…\"} and nothing else".into())
            })?;
            Zeroizing::new(std::mem::take(&mut lookup.code))
        }
    };
    unlock(state, peer, &typed).await
}

/// The value of `name` in an urlencoded body (empty when absent).
fn form_value(body: &[u8], name: &str) -> Zeroizing<String> {
    let mut value = Zeroizing::new(String::new());
    for (k, v) in form_urlencoded::parse(body) {
        if k == name {
            value.push_str(&v);
            break;
        }
    }
    value
}

/// Reads the reporter's timeline on a blocking thread (decrypting events).
async fn read_timeline(state: &AppState, opened: Opened) -> Result<Timeline, Refusal> {
    let state = state.clone();
    tokio::task::spawn_blocking(move || {
        let keys = state.keys();
        let maintainers: Vec<_> = keys
            .keyring
            .entries
            .iter()
            .map(|e| e.cert.clone())
            .collect();
        let intake = state.secrets().signing_cert();
        let signers = Signers {
            maintainers: &maintainers,
            intake: Some(&intake),
        };
        timeline::read(
            state.store().as_ref(),
            &opened.report,
            opened.cert,
            &signers,
            state.clock().now(),
        )
    })
    .await
    .map_err(|_| Refusal::Internal)
}

/// The case page for an unlocked code.
async fn case_page(
    state: &AppState,
    code: &ReplyCode,
    unlocked: Unlocked,
    status: StatusCode,
    notice: Option<&str>,
) -> Response {
    match read_timeline(state, unlocked.0).await {
        Ok(timeline) => html(status, &StatusCasePage::new(state, &timeline, code, notice)),
        Err(e) => refused(state, e, Answer::Page),
    }
}

/// The timeline as the API answers it.
fn timeline_json(t: &Timeline) -> serde_json::Value {
    json!({
        "report": t.report.to_string(),
        "stage": t.state.stage.as_str(),
        "resolution": t.state.resolution.map(|r| r.as_str()),
        "open": t.open.iter().map(|o| json!({
            "what": o.what.as_str(),
            "due": rfc3339(o.due),
            "overdue": o.overdue,
        })).collect::<Vec<_>>(),
        "events": t.events.iter().map(event_json).collect::<Vec<_>>(),
        "receipt": t.receipt,
    })
}

fn event_json(e: &Event) -> serde_json::Value {
    json!({
        "event": e.event.to_string(),
        "at": e.at,
        "kind": e.kind.as_str(),
        "from_reporter": e.kind == crate::case::Kind::ReporterMessage,
        "message": e.message,
        "fix": e.fix,
        "advisory": e.advisory,
        "resolution": e.resolution.map(|r| r.as_str()),
        "files": e.attachments.iter().map(|a| json!({
            "name": a.name, "size": a.size, "sha256": a.sha256,
        })).collect::<Vec<_>>(),
    })
}

/// Receives a follow-up: the code first, then the message, then files
/// streamed into the sealer; the event is stored only when the body ended
/// whole. Returns the code, the unlocked certificate and the event.
async fn follow_up(
    state: &AppState,
    request: Request,
    answer: Answer,
) -> Result<(ReplyCode, Unlocked, Event), Refusal> {
    let peer = peer_of(&request);
    if let Err(e) = check_same_origin(request.headers())
        .and_then(|()| upload::boundary(request.headers()).map(|_| ()))
    {
        upload::drain(request.into_body()).await;
        return Err(e);
    }
    let slot = state.try_upload_slot(peer).map_err(|_| Refusal::Busy {
        max_concurrent_uploads: state.config().limits.max_concurrent_uploads,
    });
    let _slot = match slot {
        Ok(s) => s,
        Err(e) => {
            upload::drain(request.into_body()).await;
            return Err(e);
        }
    };
    let boundary = upload::boundary(request.headers())?;
    let limits = state.config().limits.clone();
    let deadline = limits.upload_timeout.0;
    let budget = Arc::new(HeaderBudget::default());
    let mut multipart = multipart_reader(request.into_body(), boundary, &limits, budget.clone());
    let received = tokio::time::timeout(deadline, async {
        let mut receiver = Receiver {
            state,
            answer,
            peer,
            unlocked: None,
            message: Zeroizing::new(String::new()),
            session: None,
            files: 0,
            text_left: MAX_MESSAGE_BYTES + 2 * MAX_LOOKUP_BYTES,
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
    })
    .await;
    match received {
        Ok(outcome) => outcome,
        Err(_) => Err(super::error::Interruption::Deadline {
            limit: limits.upload_timeout,
        }
        .into()),
    }
}

struct Receiver<'a> {
    state: &'a AppState,
    answer: Answer,
    peer: Option<IpAddr>,
    unlocked: Option<(ReplyCode, Unlocked)>,
    message: Zeroizing<String>,
    session: Option<Session>,
    files: usize,
    text_left: usize,
}

impl Receiver<'_> {
    async fn part(&mut self, mut field: multer::Field<'_>) -> Result<(), Refusal> {
        let name = field.name().unwrap_or("").to_owned();
        match (self.answer, name.as_str()) {
            (Answer::Page, "code") | (Answer::Json, "followup") if self.unlocked.is_none() => {
                let (bytes, truncated) = self.text(&mut field, MAX_LOOKUP_BYTES).await?;
                if truncated {
                    return Err(Refusal::InvalidCode(CodeError::Length(0).to_string()));
                }
                let (typed, message) = if self.answer == Answer::Page {
                    (
                        Zeroizing::new(String::from_utf8_lossy(&bytes).into_owned()),
                        None,
                    )
                } else {
                    let mut parsed: FollowUpJson =
                        serde_json::from_slice(&bytes).map_err(|_| {
                            Refusal::InvalidRequest(
                            "the followup part must be JSON {\"code\": \"…\", \"message\": \"…\"}"
                                .into(),
                        )
                        })?;
                    let message = Zeroizing::new(std::mem::take(&mut parsed.message));
                    (
                        Zeroizing::new(std::mem::take(&mut parsed.code)),
                        Some(message),
                    )
                };
                self.unlocked = Some(unlock(self.state, self.peer, &typed).await?);
                match message {
                    Some(message) => self.set_message(message),
                    None => Ok(()),
                }
            }
            (Answer::Page, "message") if self.unlocked.is_some() && self.session.is_none() => {
                let (bytes, truncated) = self.text(&mut field, MAX_MESSAGE_BYTES).await?;
                if truncated {
                    return Err(Refusal::InvalidRequest(format!(
                        "the message is longer than {MAX_MESSAGE_BYTES} bytes; attach long text as a file"
                    )));
                }
                let text = std::str::from_utf8(&bytes)
                    .map_err(|_| Refusal::InvalidRequest("the message is not UTF-8 text".into()))?;
                self.set_message(Zeroizing::new(text.to_owned()))
            }
            (_, "attachment") if self.unlocked.is_some() => self.attachment(field).await,
            (_, "code" | "followup") if self.unlocked.is_none() => Err(Refusal::FollowUpOrder(
                "send the reply code in the first part",
            )),
            (_, "attachment" | "message") => Err(Refusal::FollowUpOrder(
                "the reply code comes first, then the message, then the files",
            )),
            _ => Err(Refusal::FollowUpOrder(
                "a follow-up has only the parts code (or followup), message and attachment",
            )),
        }
    }

    /// Keeps the message, if an event can hold it: checked as it arrives,
    /// so no file is sealed for a follow-up that could never be stored.
    fn set_message(&mut self, message: Zeroizing<String>) -> Result<(), Refusal> {
        if let Some(why) = new_message_problem(&message) {
            return Err(Refusal::InvalidRequest(format!(
                "the message {why}; send such text as a file instead"
            )));
        }
        self.message = message;
        Ok(())
    }

    async fn text(
        &mut self,
        field: &mut multer::Field<'_>,
        cap: usize,
    ) -> Result<(Zeroizing<Vec<u8>>, bool), Refusal> {
        let limits = self.state.config().limits.clone();
        read_capped(field, cap, &mut self.text_left, &limits).await
    }

    /// One file, streamed into the sealing thread (started at the first).
    async fn attachment(&mut self, mut field: multer::Field<'_>) -> Result<(), Refusal> {
        let file_name = clean_file_name(field.file_name().unwrap_or(""));
        let Some(first) = upload::first_chunk(&mut field).await? else {
            return Ok(());
        };
        if self.message.trim().is_empty() {
            return Err(Refusal::EmptyMessage);
        }
        let limits = self.state.config().limits.clone();
        self.files += 1;
        if self.files > limits.max_attachments {
            return Err(Refusal::TooManyFiles {
                limit: limits.max_attachments,
            });
        }
        let session = self.session()?;
        let kind = "application/octet-stream";
        upload::send_file(session, field, file_name, kind, first, &limits).await
    }

    fn session(&mut self) -> Result<&mut Session, Refusal> {
        if self.session.is_none() {
            let (_, unlocked) = self.unlocked.as_ref().ok_or(Refusal::Internal)?;
            self.session = Some(start_session(self.state, &unlocked.0)?);
        }
        self.session.as_mut().ok_or(Refusal::Internal)
    }

    async fn finish(mut self) -> Result<(ReplyCode, Unlocked, Event), Refusal> {
        if self.unlocked.is_none() {
            return Err(Refusal::FollowUpOrder("the request has no reply code"));
        }
        if self.message.trim().is_empty() {
            return Err(Refusal::EmptyMessage);
        }
        let message = std::mem::take(&mut self.message);
        let mut session = match self.session.take() {
            Some(s) => s,
            None => {
                let (_, unlocked) = self.unlocked.as_ref().ok_or(Refusal::Internal)?;
                start_session(self.state, &unlocked.0)?
            }
        };
        session.send(Msg::Message(message)).await?;
        let event = session.outcome().await?;
        self.state.reporter_message_stored();
        tracing::info!("reporter follow-up sealed and stored");
        let (code, unlocked) = self.unlocked.take().ok_or(Refusal::Internal)?;
        Ok((code, unlocked, event))
    }
}

/// The sealing thread of one follow-up: each file as it arrives, then the
/// event once the message comes.
type Session = SealThread<Event>;

fn start_session(state: &AppState, opened: &Opened) -> Result<Session, Refusal> {
    let keys = state.keys();
    if keys.sealer.is_none() {
        return Err(Refusal::NoUsableKey);
    }
    let recipients = keys
        .keyring
        .recipients()
        .map_err(|_| Refusal::NoUsableKey)?;
    let reply_cert = opened.cert.clone().strip_secret_key_material();
    let report = opened.report.clone();
    let store = state.store().clone();
    let secrets = state.secrets().clone();
    let format = state.config().message_format;
    let limit = state.config().limits.max_attachment_bytes;
    let now = state.clock().now();
    Ok(SealThread::spawn(move |mut rx| {
        let mut follow_up = crate::reply::followup::FollowUp::begin(
            store.as_ref(),
            report,
            &recipients,
            reply_cert,
            &secrets,
            format,
            now,
        );
        loop {
            match rx.blocking_recv() {
                Some(Msg::Begin { name, .. }) => {
                    follow_up.add_file(&name, &mut ChannelReader::new(&mut rx), limit)?;
                }
                Some(Msg::Message(message)) => return follow_up.finish(message.to_string()),
                Some(Msg::Data(_) | Msg::End | Msg::Finish(_)) => {
                    return Err(SealError::Input(io::Error::other(
                        "file data outside a file",
                    )));
                }
                None => {
                    return Err(SealError::Input(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "follow-up abandoned",
                    )));
                }
            }
        }
    }))
}

/// Largest body of a new-reply notice request.
const MAX_MAIL_REQUEST_BYTES: usize = 1024;

/// `POST /api/v1/sealed/{id}/reporter-mail` (maintainer token, JSON
/// `{"to": "address"}`): a content-free "there is a new reply" mail to the
/// reporter, through `[smtp]`. The address is used for this mail only and
/// never stored or logged.
pub async fn reporter_mail(
    State(state): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    if let Err(e) = super::sealed::authorize(&state, &parts.headers) {
        return e.into_response();
    }
    let Ok(id) = id.parse::<crate::id::ReportId>() else {
        return Refusal::NotFound.into_response();
    };
    if !state.store().contains(&id).unwrap_or(false) {
        return Refusal::NotFound.into_response();
    }
    let too_large = Refusal::RequestTooLarge {
        limit: MAX_MAIL_REQUEST_BYTES as u64,
    };
    let body = match small_body(&parts.headers, body, MAX_MAIL_REQUEST_BYTES, too_large).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct MailRequest {
        to: String,
    }
    let Ok(request) = serde_json::from_slice::<MailRequest>(&body) else {
        return Refusal::InvalidRequest("send JSON {\"to\": \"address\"}".into()).into_response();
    };
    if !crate::report::is_plausible_email(&request.to) {
        return Refusal::InvalidRequest("\"to\" is not an e-mail address".into()).into_response();
    }
    let Some(acks) = state.acks() else {
        return Refusal::NoSmtp.into_response();
    };
    match acks.announce_reply(&id, &request.to).await {
        Ok(()) => (StatusCode::ACCEPTED, Json(json!({ "sent": true }))).into_response(),
        Err(why) => {
            tracing::info!(id = %id, "new-reply notice not sent: {why}");
            Refusal::MailNotSent(why).into_response()
        }
    }
}
