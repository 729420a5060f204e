//! The reporter's routes on arbitrary bodies, through the real router
//! in-process: the code form (`POST /status`), the JSON lookup, and both
//! follow-up routes (multipart, boundary `fuzzboundary`). The first byte
//! picks the route; in the rest, `CODEHERE` is replaced by the reply code
//! of the one report the fixture sealed, so inputs reach the case page and
//! real follow-ups as well as every refusal.
//!
//! Checked for every input: no 500, no `<fz` unescaped in an HTML answer,
//! follow-up files and events appear only with a 201, and no answer but
//! the case page itself carries the code.
#![no_main]

mod common;

use std::sync::OnceLock;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use embargo::clock::Clock;
use embargo::config::Config;
use embargo::id::ReportId;
use embargo::intake::{self, AppState};
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use sequoia_openpgp::serialize::SerializeInto;
use tower::ServiceExt;

struct Fixture {
    runtime: tokio::runtime::Runtime,
    router: Router,
    state: AppState,
    report: ReportId,
    code: String,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = common::scratch_dir();
        std::fs::create_dir_all(dir.join("keys")).unwrap();
        let cert = common::throwaway_cert();
        std::fs::write(dir.join("keys/maintainer.asc"), cert.armored().to_vec().unwrap()).unwrap();
        let mut config = Config::defaults_in(&dir);
        config.project_name = "fuzz".into();
        config.limits.max_attachment_bytes = 64 * 1024;
        let state = AppState::open(config, Clock::system()).expect("the intake state");
        let sealer = state.keys().sealer.clone().expect("a sealer");
        let writer = sealer
            .begin(state.store().as_ref(), ReportId::random(), embargo::seal::Channel::Api)
            .unwrap();
        let mut body = embargo::report::ReportBody::default();
        body.title = "fuzzed".into();
        body.description = "d".into();
        let finished = embargo::reply::intake::finish(
            writer,
            Some(state.replies()),
            "fuzz",
            body,
            embargo::report::Reporter::default(),
            None,
        )
        .unwrap();
        let code = finished.reply_code.unwrap().display().to_string();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let router = runtime.block_on(async { intake::router(state.clone()) });
        Fixture { runtime, router, state, report: finished.sealed.id, code }
    })
}

/// `data` with every `CODEHERE` replaced by `code`.
fn with_code(data: &[u8], code: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut rest = data;
    while let Some(at) = rest.windows(8).position(|w| w == b"CODEHERE") {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(code.as_bytes());
        rest = &rest[at + 8..];
    }
    out.extend_from_slice(rest);
    out
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let Some((&route, body)) = data.split_first() else { return };
    let (path, content_type) = match route % 4 {
        0 => ("/status", "application/x-www-form-urlencoded"),
        1 => ("/api/v1/status", "application/json"),
        2 => ("/status/messages", "multipart/form-data; boundary=fuzzboundary"),
        _ => ("/api/v1/status/messages", "multipart/form-data; boundary=fuzzboundary"),
    };
    let store = f.state.store();
    let before = (
        store.events(&f.report).unwrap().len(),
        store.files(&f.report).unwrap().len(),
    );
    let request = Request::post(path)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::HOST, "127.0.0.1")
        .body(Body::from(with_code(body, &f.code)))
        .unwrap();
    let (status, content_type, answer) = f.runtime.block_on(async {
        let response = f.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, content_type, bytes)
    });
    assert!(
        status != StatusCode::INTERNAL_SERVER_ERROR,
        "500 for a reporter's body: {}",
        String::from_utf8_lossy(&answer)
    );
    let html = content_type.is_some_and(|v| v.as_bytes().starts_with(b"text/html"));
    if html {
        let lower = answer.to_ascii_lowercase();
        assert!(!lower.windows(3).any(|w| w == b"<fz"), "a sender's markup reached the page unescaped");
    }
    let case_page = html && status.is_success();
    let code = f.code.as_bytes();
    if !case_page {
        assert!(!answer.windows(code.len()).any(|w| w == code), "the code in a {status} answer");
    }
    let after = (
        store.events(&f.report).unwrap().len(),
        store.files(&f.report).unwrap().len(),
    );
    if status != StatusCode::CREATED {
        assert_eq!(after.0, before.0, "an event stored by a refused follow-up");
    }
});
