//! The intake router driven in process with `oneshot`: multipart edge
//! cases that need no server process. Each refusal is checked for its
//! status, its machine code, and that nothing reached the store.

mod common;

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use common::Site;
use embargo::clock::Clock;
use embargo::intake::conn::PeerAddr;
use http_body_util::BodyExt;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tower::ServiceExt;

const BOUNDARY: &str = "XyZzYboundary";
/// The maintainer token, for reading `/metrics`.
const TOKEN: &str = "router-test-token-0123456789";
/// Small enough that an over-long field is cheap to send.
const MAX_FIELD_BYTES: usize = 2048;

/// A deployment with one maintainer key and the intake's router over it.
/// The only place the state is built.
fn intake() -> (Site, Router) {
    let site = Site::new();
    let cert = common::sequoia_key("Maintainer <m@example.org>");
    site.add_key("maintainer.asc", &common::armored_public(&cert));
    let hash = hex::encode(Sha256::digest(TOKEN.as_bytes()));
    site.write_config(&format!(
        "[limits]\nrate_limit_per_minute = 1000\nmax_field_bytes = {MAX_FIELD_BYTES}\n[maintainers]\ntoken_sha256 = [\"{hash}\"]\n"
    ));
    let state = embargo::intake::AppState::open(site.config(), Clock::system()).unwrap();
    (site, embargo::intake::router(state))
}

/// One multipart part: its name (or none), file name, and content.
struct Part<'a> {
    name: Option<&'a str>,
    file_name: Option<&'a str>,
    content: &'a [u8],
}

fn text<'a>(name: &'a str, content: &'a [u8]) -> Part<'a> {
    Part {
        name: Some(name),
        file_name: None,
        content,
    }
}

fn file<'a>(name: &'a str, content: &'a [u8]) -> Part<'a> {
    Part {
        name: Some("attachment"),
        file_name: Some(name),
        content,
    }
}

/// A multipart/form-data body over [`BOUNDARY`], with its final boundary.
fn multipart(parts: &[Part<'_>]) -> Vec<u8> {
    let mut body = Vec::new();
    for part in parts {
        body.extend_from_slice(
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data").as_bytes(),
        );
        if let Some(name) = part.name {
            body.extend_from_slice(format!("; name=\"{name}\"").as_bytes());
        }
        if let Some(file_name) = part.file_name {
            body.extend_from_slice(
                format!("; filename=\"{file_name}\"\r\nContent-Type: application/octet-stream")
                    .as_bytes(),
            );
        }
        body.extend_from_slice(b"\r\n\r\n");
        body.extend_from_slice(part.content);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

fn report_json() -> Vec<u8> {
    common::report_json(
        "Path traversal in export",
        "The export endpoint joins user input into a path.",
    )
}

/// Sends `body` to `path` as `content_type` from a loopback peer; returns
/// the status and the body.
async fn post(
    router: &Router,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (StatusCode, Vec<u8>) {
    let mut request = Request::post(path)
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body))
        .unwrap();
    let peer = SocketAddr::from(([127, 0, 0, 1], 40_000));
    request.extensions_mut().insert(ConnectInfo(PeerAddr(peer)));
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, bytes.to_vec())
}

fn form_data() -> String {
    format!("multipart/form-data; boundary={BOUNDARY}")
}

/// Posts to the API and returns the status and the JSON answer.
async fn post_api(router: &Router, content_type: &str, body: Vec<u8>) -> (StatusCode, Value) {
    let (status, body) = post(router, "/api/v1/reports", content_type, body).await;
    let json = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&body)));
    (status, json)
}

/// Every `embargo_reports_rejected_total` count above zero, by reason.
async fn rejections(router: &Router) -> Vec<(String, u64)> {
    let request = Request::get("/metrics")
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .body(Body::empty())
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    text.lines()
        .filter_map(|line| line.strip_prefix("embargo_reports_rejected_total{reason=\""))
        .filter_map(|rest| rest.split_once("\"} "))
        .map(|(reason, count)| (reason.to_string(), count.parse().unwrap()))
        .filter(|(_, count)| *count > 0)
        .collect()
}

/// Checks that exactly one refusal was counted, under `reason`.
async fn assert_counted(router: &Router, reason: &str) {
    assert_eq!(rejections(router).await, [(reason.to_string(), 1)]);
}

/// Checks a JSON refusal's status and code, and that nothing was
/// committed or left in staging.
fn assert_refused(site: &Site, (status, json): &(StatusCode, Value), want: StatusCode, code: &str) {
    assert_eq!(*status, want, "{json}");
    assert_eq!(json["error"]["code"], code, "{json}");
    assert!(
        json["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{json}"
    );
    assert_eq!(site.report_ids(), Vec::<String>::new(), "nothing committed");
    assert_eq!(
        site.staging_entries(),
        Vec::<String>::new(),
        "nothing staged"
    );
}

#[tokio::test]
async fn a_content_type_without_a_boundary_is_refused() {
    let (site, router) = intake();
    let body = multipart(&[text("report", &report_json())]);
    let answer = post_api(&router, "multipart/form-data", body).await;
    assert_refused(&site, &answer, StatusCode::BAD_REQUEST, "no_boundary");
    assert_counted(&router, "invalid").await;
}

#[tokio::test]
async fn a_boundary_that_is_not_in_the_body_is_refused() {
    let (site, router) = intake();
    let body = multipart(&[text("report", &report_json())]);
    let answer = post_api(&router, "multipart/form-data; boundary=elsewhere", body).await;
    assert_refused(
        &site,
        &answer,
        StatusCode::BAD_REQUEST,
        "incomplete_multipart",
    );
    assert_counted(&router, "invalid").await;
}

#[tokio::test]
async fn a_body_cut_inside_a_part_is_refused() {
    let (site, router) = intake();
    let whole = multipart(&[
        text("report", &report_json()),
        file("poc.txt", &[b'x'; 4096]),
    ]);
    let cut = whole[..whole.len() - 1000].to_vec();
    let answer = post_api(&router, &form_data(), cut).await;
    assert_refused(
        &site,
        &answer,
        StatusCode::BAD_REQUEST,
        "incomplete_multipart",
    );
    assert_counted(&router, "invalid").await;
}

#[tokio::test]
async fn a_second_report_part_is_refused() {
    let (site, router) = intake();
    let json = report_json();
    let body = multipart(&[text("report", &json), text("report", &json)]);
    let answer = post_api(&router, &form_data(), body).await;
    assert_refused(&site, &answer, StatusCode::BAD_REQUEST, "duplicate_part");
    assert_counted(&router, "invalid").await;
    let message = answer.1["error"]["message"].as_str().unwrap();
    assert_eq!(
        message,
        "the part \"report\" was sent more than once; send the input JSON once; nothing was stored"
    );
}

#[tokio::test]
async fn a_part_without_a_name_is_refused() {
    let (site, router) = intake();
    let nameless = Part {
        name: None,
        file_name: None,
        content: b"who am I",
    };
    let body = multipart(&[text("report", &report_json()), nameless]);
    let answer = post_api(&router, &form_data(), body).await;
    assert_refused(&site, &answer, StatusCode::BAD_REQUEST, "unknown_part");
    assert_counted(&router, "invalid").await;
}

#[tokio::test]
async fn an_api_request_without_the_report_part_is_refused() {
    let (site, router) = intake();
    let body = multipart(&[file("poc.txt", b"x")]);
    let answer = post_api(&router, &form_data(), body).await;
    assert_refused(&site, &answer, StatusCode::BAD_REQUEST, "missing_report");
    assert_counted(&router, "invalid").await;
}

#[tokio::test]
async fn a_wrong_content_type_is_refused() {
    let (site, router) = intake();
    let answer = post_api(&router, "application/json", report_json()).await;
    assert_refused(
        &site,
        &answer,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
    assert_counted(&router, "unsupported_type").await;
}

#[tokio::test]
async fn a_report_part_over_the_text_budget_is_refused() {
    let (site, router) = intake();
    // Every field at its cap, and then some: more than the JSON may carry.
    let huge = "a".repeat(common::report_json("t", "d").len() + 14 * MAX_FIELD_BYTES + 20_000);
    let json = common::report_json("Too long", &huge);
    let body = multipart(&[text("report", &json)]);
    let answer = post_api(&router, &form_data(), body).await;
    assert_refused(
        &site,
        &answer,
        StatusCode::PAYLOAD_TOO_LARGE,
        "text_too_large",
    );
    assert_counted(&router, "too_large").await;
}

/// Posts to the form route; returns the status and the page.
async fn post_form(router: &Router, body: Vec<u8>) -> (StatusCode, String) {
    let (status, page) = post(router, "/report", &form_data(), body).await;
    (status, String::from_utf8(page).unwrap())
}

#[tokio::test]
async fn an_unknown_form_field_is_refused_with_a_page() {
    let (site, router) = intake();
    let body = multipart(&[
        text("title", b"Title"),
        text("description", b"Description"),
        text("favourite_colour", b"blue"),
    ]);
    let (status, page) = post_form(&router, body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
    assert!(page.contains("Error 400"), "{page}");
    assert!(
        page.contains("the form sent a part this intake does not know"),
        "{page}"
    );
    assert!(!page.contains("favourite_colour"), "the name is not echoed");
    assert_eq!(site.report_ids(), Vec::<String>::new());
    assert_counted(&router, "invalid").await;
}

#[tokio::test]
async fn a_form_field_over_its_cap_shows_the_form_again() {
    let (site, router) = intake();
    let long = vec![b'a'; MAX_FIELD_BYTES + 1];
    let body = multipart(&[text("title", &long), text("description", b"Description")]);
    let (status, page) = post_form(&router, body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
    assert!(
        page.contains(&format!(
            "is longer than the limit of {MAX_FIELD_BYTES} bytes"
        )),
        "{page}"
    );
    assert!(page.contains("<form"), "the form is shown again: {page}");
    assert_eq!(site.report_ids(), Vec::<String>::new());
    assert_eq!(site.staging_entries(), Vec::<String>::new());
    assert_counted(&router, "invalid").await;
}

#[tokio::test]
async fn an_api_report_is_accepted_and_stored() {
    let (site, router) = intake();
    let body = multipart(&[
        text("report", &report_json()),
        file("poc.txt", b"GET /export?path=../../etc/passwd\n"),
        // An attachment with a name but no bytes is a file of its own.
        file("empty.txt", b""),
        // A part named attachment with neither name nor bytes is what a
        // form's unused file input sends: skipped.
        Part {
            name: Some("attachment"),
            file_name: Some(""),
            content: b"",
        },
    ]);
    let (status, json) = post_api(&router, &form_data(), body).await;
    assert_eq!(status, StatusCode::CREATED, "{json}");
    let id = json["id"].as_str().unwrap().to_string();
    assert_eq!(site.report_ids(), vec![id]);
    let names: Vec<&str> = json["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["poc.txt", "empty.txt"], "{json}");
    assert_eq!(json["attachments"][1]["size"], 0, "{json}");
    assert!(
        json["receipt"]
            .as_str()
            .unwrap()
            .contains("BEGIN PGP SIGNED MESSAGE")
    );
}

#[tokio::test]
async fn a_form_field_sent_twice_is_refused_with_a_page() {
    let (site, router) = intake();
    let body = multipart(&[
        text("title", b"Title"),
        text("description", b"Description"),
        text("title", b"Another title"),
    ]);
    let (status, page) = post_form(&router, body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
    assert!(
        page.contains("was sent more than once; send each field once"),
        "{page}"
    );
    assert!(!page.contains("Another title"), "the value is not echoed");
    assert_eq!(site.report_ids(), Vec::<String>::new());
    assert_counted(&router, "invalid").await;
}
