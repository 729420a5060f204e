//! Both submission routes on arbitrary multipart bodies, through the real
//! router in-process: multer, the field reader, validation, the form page
//! shown again with the sender's values, and sealing into a store on tmpfs.
//! The first input byte picks the route (even: the API, odd: the form); the
//! rest is the body, with the boundary `fuzzboundary`.
//!
//! Checked for every input: no 500, nothing left in staging, and no `<fz`
//! (a tag name no template uses) unescaped in an HTML answer.
#![no_main]

mod common;

use std::sync::OnceLock;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use embargo::clock::Clock;
use embargo::config::Config;
use embargo::intake::{self, AppState};
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use sequoia_openpgp::serialize::SerializeInto;
use tower::ServiceExt;

struct Fixture {
    runtime: tokio::runtime::Runtime,
    router: Router,
    state: AppState,
    staging: std::path::PathBuf,
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
        let staging = config.store.join("reports/.staging");
        let state = AppState::open(config, Clock::system()).expect("the intake state");
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let router = runtime.block_on(async { intake::router(state.clone()) });
        Fixture { runtime, router, state, staging }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let Some((&route, body)) = data.split_first() else { return };
    let path = if route % 2 == 0 { "/api/v1/reports" } else { "/report" };
    let request = Request::post(path)
        .header(header::CONTENT_TYPE, "multipart/form-data; boundary=fuzzboundary")
        .header(header::HOST, "127.0.0.1")
        .body(Body::from(body.to_vec()))
        .unwrap();
    let (status, content_type, answer) = f.runtime.block_on(async {
        let response = f.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, content_type, bytes)
    });
    assert!(status != StatusCode::INTERNAL_SERVER_ERROR, "500 for a client's body");
    if content_type.is_some_and(|v| v.as_bytes().starts_with(b"text/html")) {
        let lower = answer.to_ascii_lowercase();
        assert!(!lower.windows(3).any(|w| w == b"<fz"), "a sender's markup reached the page unescaped");
    }
    let store = f.state.store();
    for id in store.list().unwrap() {
        store.remove(&id).unwrap();
    }
    let left = std::fs::read_dir(&f.staging).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "staging leftovers after the request ended");
});
