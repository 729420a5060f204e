//! The public routes (docs/openapi.json): form, report submission (form and API),
//! keys, security.txt and health.

use std::net::IpAddr;
use std::time::Duration;

use axum::Json;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::conn::PeerAddr;
use super::error::{RateLimit, Refusal};
use super::pages::{error_page, form_page, html, receipt_page};
use super::state::{AppState, RateLimited, RateTicket};
use super::upload::{self, Kind, Refused};
use crate::clock::rfc3339;
use crate::keys::armor_certs;
use crate::metrics::{Channel as MetricsChannel, Rejection};
use crate::report::FieldErrors;

/// No script at all, nothing from another origin, no framing.
pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
/// Without `security_txt_expires`, security.txt expires this long after the
/// certificates were last changed (RFC 9116 advises less than a year).
pub const SECURITY_TXT_DEFAULT_LIFETIME: Duration = Duration::from_secs(365 * 86_400);

/// Adds the security headers every response carries.
pub async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// `GET /`: the form.
pub async fn form(State(state): State<AppState>) -> Response {
    html(
        StatusCode::OK,
        &form_page(&state, None, &FieldErrors::default(), false),
    )
}

/// `GET /static/style.css`.
pub async fn stylesheet() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../../static/style.css"),
    )
        .into_response()
}

/// `GET /api/v1/openapi.json`: the OpenAPI 3.1 description of these routes
/// (docs/openapi.json, compiled in so it always matches this build).
pub async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("../../docs/openapi.json"),
    )
        .into_response()
}

/// Refuses a browser request that another site made (CSRF), using the
/// headers browsers set themselves, so it works without JavaScript or
/// cookies. Requests without these headers (curl, scripts) pass.
pub fn check_same_origin(headers: &HeaderMap) -> Result<(), Refusal> {
    let refuse = || Refusal::CrossOrigin;
    if let Some(site) = headers.get("sec-fetch-site") {
        return match site.as_bytes() {
            b"same-origin" | b"none" => Ok(()),
            _ => Err(refuse()),
        };
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().map_err(|_| refuse())?;
        let authority = origin
            .strip_prefix("https://")
            .or_else(|| origin.strip_prefix("http://"))
            .ok_or_else(refuse)?;
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .ok_or_else(refuse)?;
        if !authority.eq_ignore_ascii_case(host) {
            return Err(refuse());
        }
    }
    Ok(())
}

/// The checks every submission passes before its body is read, in this
/// order: the peer's refusal limit, same origin, content type, the peer's
/// accepted-report limit. The ticket counts the outcome: call
/// [`RateTicket::accepted`] on success; dropped, it counts a refusal.
fn admit(state: &AppState, request: &Request) -> Result<RateTicket, Refusal> {
    let peer = peer_of(request);
    let mut ticket = state
        .rate_ticket(peer)
        .map_err(|e| rate_limited(state, e))?;
    check_same_origin(request.headers())?;
    upload::boundary(request.headers())?;
    ticket.reserve().map_err(|e| rate_limited(state, e))?;
    Ok(ticket)
}

/// The connection's peer address (memory only), when served over TCP.
fn peer_of(request: &Request) -> Option<IpAddr> {
    request
        .extensions()
        .get::<ConnectInfo<PeerAddr>>()
        .map(|ConnectInfo(PeerAddr(peer))| peer.ip())
}

fn rate_limited(state: &AppState, which: RateLimited) -> Refusal {
    let limits = &state.config().limits;
    Refusal::RateLimited(match which {
        RateLimited::Accepted => RateLimit::Accepted {
            per_minute: limits.rate_limit_per_minute,
        },
        RateLimited::Refusals => RateLimit::Refusals {
            per_minute: limits.refusal_limit_per_minute,
        },
    })
}

/// Counts a refused submission under its label.
fn count_refusal(state: &AppState, refusal: &Refusal) {
    if let Some(label) = refusal.metric() {
        state.metrics().rejected(label);
    }
}

/// `POST /report`: the form. 201 with the receipt page, or the form again.
pub async fn submit_form(State(state): State<AppState>, request: Request) -> Response {
    let ticket = match admit(&state, &request) {
        Ok(ticket) => ticket,
        Err(e) => {
            count_refusal(&state, &e);
            upload::drain(request.into_body()).await;
            return error_page(&state, &e);
        }
    };
    let peer = peer_of(&request);
    let (parts, body) = request.into_parts();
    match upload::receive(&state, &parts.headers, body, Kind::Form, peer).await {
        Ok(accepted) => {
            ticket.accepted();
            tracing::info!(channel = "web", "report sealed and stored");
            state.report_accepted(MetricsChannel::Web, &accepted.sealed);
            acknowledge(&state, &accepted);
            html(StatusCode::CREATED, &receipt_page(&state, &accepted))
        }
        Err(Refused::Invalid {
            raw,
            errors,
            had_files,
        }) => {
            // The invalid-report refusal, answered with the form again.
            state.metrics().rejected(Rejection::Invalid);
            html(
                StatusCode::BAD_REQUEST,
                &form_page(&state, Some(&raw), &errors, had_files),
            )
        }
        Err(Refused::Error(e)) => {
            tracing::info!(
                status = e.status().as_u16(),
                code = e.code(),
                "form report refused"
            );
            count_refusal(&state, &e);
            error_page(&state, &e)
        }
    }
}

/// With `[smtp]` and an address in the report: the acknowledgement, with
/// the reply code, sent in the background (a failure is logged, and never
/// changes the answer: the report is stored).
fn acknowledge(state: &AppState, accepted: &upload::Accepted) {
    if let (Some(acks), Some(addr)) = (state.acks(), &accepted.reporter_email) {
        let (acks, addr) = (acks.clone(), addr.clone());
        let id = accepted.sealed.id.clone();
        let code = accepted.reply_code.clone();
        tokio::spawn(async move { acks.acknowledge_submission(&id, &addr, code).await });
    }
}

/// `POST /api/v1/reports`: 201 with the JSON receipt.
pub async fn submit_api(State(state): State<AppState>, request: Request) -> Response {
    let ticket = match admit(&state, &request) {
        Ok(ticket) => ticket,
        Err(e) => {
            count_refusal(&state, &e);
            upload::drain(request.into_body()).await;
            return e.into_response();
        }
    };
    let peer = peer_of(&request);
    let (parts, body) = request.into_parts();
    match upload::receive(&state, &parts.headers, body, Kind::Api, peer).await {
        Ok(accepted) => {
            ticket.accepted();
            tracing::info!(channel = "api", "report sealed and stored");
            state.report_accepted(MetricsChannel::Api, &accepted.sealed);
            acknowledge(&state, &accepted);
            let sealed = &accepted.sealed;
            let body = json!({
                "id": sealed.id.to_string(),
                "received_at": rfc3339(sealed.received_at),
                "attachments": sealed.attachments.iter().map(|a| json!({
                    "name": a.name, "size": a.size, "sha256": a.sha256,
                })).collect::<Vec<_>>(),
                "recipients": sealed.recipients,
                "receipt": accepted.receipt,
                "reply_code": accepted.reply_code.as_ref().map(|c| c.display().to_string()),
            });
            (StatusCode::CREATED, Json(body)).into_response()
        }
        Err(Refused::Invalid { errors, .. }) => {
            let refusal = Refusal::InvalidReport(errors);
            count_refusal(&state, &refusal);
            refusal.into_response()
        }
        Err(Refused::Error(e)) => {
            tracing::info!(
                status = e.status().as_u16(),
                code = e.code(),
                "API report refused"
            );
            count_refusal(&state, &e);
            e.into_response()
        }
    }
}

/// `GET /keys.asc`: the maintainer certificates usable now.
pub async fn keys_asc(State(state): State<AppState>) -> Response {
    let keys = state.keys();
    let usable = keys.usable_at(state.clock().now());
    if usable.is_empty() {
        return Refusal::NoUsableKey.into_response();
    }
    match armor_certs(usable.iter().map(|e| &e.cert)) {
        Ok(text) => ([(header::CONTENT_TYPE, "application/pgp-keys")], text).into_response(),
        Err(e) => {
            tracing::error!("armoring certificates failed: {e}");
            Refusal::Internal.into_response()
        }
    }
}

/// `GET /api/v1/policy`: the promises this intake makes (`[policy]`), as
/// the manifest seals them; public, as the form shows them.
pub async fn policy(State(state): State<AppState>) -> Response {
    Json(crate::seal::manifest::SealedPolicy::from(
        &state.config().policy,
    ))
    .into_response()
}

/// `GET /signing-key.asc`: the intake signing certificate.
pub async fn signing_key_asc(State(state): State<AppState>) -> Response {
    match state.secrets().signing_cert_armored() {
        Ok(text) => ([(header::CONTENT_TYPE, "application/pgp-keys")], text).into_response(),
        Err(e) => {
            tracing::error!("armoring the signing certificate failed: {e}");
            Refusal::Internal.into_response()
        }
    }
}

/// The latest `Expires` security.txt may announce: never later than the
/// earliest expiry of a usable maintainer certificate, nor than
/// `security_txt_expires`, or without it one year after the newest
/// certificate file in `keys_dir` was changed. It never moves with the
/// time of the request, so the file of an intake nobody maintains goes
/// stale, as RFC 9116 intends.
pub fn security_txt_expires(
    config: &crate::config::Config,
    keys: &super::state::KeySet,
    now: std::time::SystemTime,
) -> std::time::SystemTime {
    let modified = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let cap = match config.security_txt_expires {
        Some(t) => t.0,
        None => keys
            .keyring
            .entries
            .iter()
            .filter_map(|e| modified(&e.file))
            .max()
            .or_else(|| modified(&config.keys_dir))
            .map_or(std::time::SystemTime::UNIX_EPOCH, |t| {
                t + SECURITY_TXT_DEFAULT_LIFETIME
            }),
    };
    let earliest_key = keys.usable_at(now).iter().filter_map(|e| e.expires).min();
    earliest_key.map_or(cap, |k| k.min(cap))
}

/// The text of security.txt for an intake reached at `base` (`public_url`).
fn security_txt_text(
    config: &crate::config::Config,
    base: &str,
    expires: std::time::SystemTime,
) -> String {
    let mut text = format!("Contact: {base}/\nEncryption: {base}/keys.asc\n");
    if let Some(policy) = &config.policy_url {
        text.push_str(&format!("Policy: {policy}\n"));
    }
    text.push_str(&format!(
        "Preferred-Languages: en\nCanonical: {base}/.well-known/security.txt\nExpires: {}\n",
        rfc3339(expires)
    ));
    text
}

/// `GET /.well-known/security.txt` and `GET /security.txt` (RFC 9116),
/// cleartext-signed by the intake key. Every URL in it comes from
/// `public_url`, never from the request; without `public_url` there is no
/// security.txt (404 saying so), rather than one pointing wherever the
/// `Host` header says.
pub async fn security_txt(State(state): State<AppState>) -> Response {
    let config = state.config();
    let Some(base) = config.public_base() else {
        return Refusal::NoPublicUrl.into_response();
    };
    let now = state.clock().now();
    let expires = security_txt_expires(config, &state.keys(), now);
    let text = security_txt_text(config, base, expires);
    match crate::seal::writer::sign_cleartext(state.secrets(), &text) {
        Ok(signed) => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            signed,
        )
            .into_response(),
        Err(e) => {
            tracing::error!("signing security.txt failed: {e}");
            Refusal::Internal.into_response()
        }
    }
}

/// `GET /healthz`: 200 when a report could be sealed and stored now, else
/// 503. When some maintainer certificates are unusable while others
/// remain, reports are still accepted (sealed to the usable ones), so the
/// answer stays 200, for load balancers, with `"status": "degraded"`, the
/// unusable fingerprints and why, for monitoring.
pub async fn healthz(State(state): State<AppState>) -> Response {
    let now = state.clock().now();
    let keys = state.keys();
    let mut problems = Vec::new();
    if let Some(p) = keys.problem_at(now) {
        problems.push(p);
    }
    let store = state.store().clone();
    match tokio::task::spawn_blocking(move || store.check_writable()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::error!("health check: {e}");
            problems.push("the report store is not writable (details in the server log)".into());
        }
        Err(_) => problems.push("the store check failed".into()),
    }
    if let Some(problem) = state.service_health().and_then(|h| h.public_problem()) {
        problems.push(problem);
    }
    let usable = keys.usable_at(now).len();
    let unusable = keys.unusable_at(now);
    let unreadable = keys.keyring.bad_files.len();
    let total = keys.keyring.entries.len() + unreadable;
    let mut degraded = Vec::new();
    if usable > 0 && usable < total {
        degraded.push(format!(
            "{} of {total} maintainer certificates unusable: reports are sealed only to the {usable} usable one(s); renew or replace the others (see unusable_keys)",
            total - usable
        ));
        if unreadable > 0 {
            degraded.push(format!(
                "{unreadable} file(s) in the keys directory hold no readable certificate (run `embargo keys check`)"
            ));
        }
    }
    let (status, word) = if !problems.is_empty() {
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    } else if !degraded.is_empty() {
        (StatusCode::OK, "degraded")
    } else {
        (StatusCode::OK, "ok")
    };
    // Fingerprints and expiry dates only (no file paths): this is public.
    let key_alerts = crate::alerts::expiry_alerts(&keys.keyring, now);
    let body = json!({
        "status": word,
        "usable_keys": usable,
        "maintainer_keys": total,
        "unusable_keys": unusable,
        "degraded": degraded,
        "problems": problems,
        "key_alerts": key_alerts,
    });
    (status, Json(body)).into_response()
}

/// `GET /metrics` on the public listener: counts are metadata, so only a
/// maintainer token may read them here (or use `metrics_listen`).
pub async fn metrics_with_token(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(e) = super::sealed::authorize(&state, &headers) {
        return e.into_response();
    }
    metrics_text(&state).await
}

/// `GET /metrics` on `metrics_listen` (meant for a loopback address).
pub async fn metrics_open(State(state): State<AppState>) -> Response {
    metrics_text(&state).await
}

async fn metrics_text(state: &AppState) -> Response {
    use crate::case::status::{TALLIED_DUTIES, TALLIED_STATES, tally};
    let mut text = state.metrics().render();
    let (store, policy, now) = (
        state.store().clone(),
        state.config().policy.clone(),
        state.clock().now(),
    );
    if let Ok(t) = tokio::task::spawn_blocking(move || tally(store.as_ref(), &policy, now)).await {
        let count = |n: Option<&u64>| n.copied().unwrap_or(0);
        let states = TALLIED_STATES.map(|s| (s.as_str(), count(t.by_state.get(&s))));
        let duties = TALLIED_DUTIES.map(|d| (d.as_str(), count(t.overdue.get(&d))));
        crate::metrics::render_cases(&mut text, &states, &duties);
    }
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response()
}

/// Logs one line per request: method, route pattern, status and duration.
/// Never the peer address, user agent, query or body.
pub async fn log_request(request: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("(unmatched)", |p| p.as_str())
        .to_owned();
    let response = next.run(request).await;
    tracing::info!(
        target: "embargo::request",
        %method,
        route,
        status = response.status().as_u16(),
        duration_ms = started.elapsed().as_millis() as u64,
        "request"
    );
    response
}

/// Any other path.
pub async fn not_found() -> Response {
    tracing::info!(target: "embargo::request", route = "(unmatched)", status = 404, "request");
    Refusal::NotFound.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn same_origin_checks() {
        assert!(check_same_origin(&headers(&[])).is_ok());
        assert!(check_same_origin(&headers(&[("sec-fetch-site", "same-origin")])).is_ok());
        assert!(check_same_origin(&headers(&[("sec-fetch-site", "cross-site")])).is_err());
        assert!(check_same_origin(&headers(&[("sec-fetch-site", "same-site")])).is_err());
        let ok = [
            ("origin", "http://127.0.0.1:8080"),
            ("host", "127.0.0.1:8080"),
        ];
        assert!(check_same_origin(&headers(&ok)).is_ok());
        let bad = [
            ("origin", "https://evil.example"),
            ("host", "127.0.0.1:8080"),
        ];
        assert!(check_same_origin(&headers(&bad)).is_err());
        assert!(check_same_origin(&headers(&[("origin", "null"), ("host", "a")])).is_err());
    }
}
