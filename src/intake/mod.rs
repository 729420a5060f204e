//! The web intake (docs/openapi.json): the report form, the API, receipts and the
//! maintainers' fetch routes.
//!
//! - [`state`]: what requests share (keys, store, limits, rate table).
//! - [`upload`]: multipart from the socket, streamed into the sealer.
//! - [`routes`]: the public routes; [`sealed`]: the maintainers' routes.
//! - [`pages`]: the form and receipt pages; [`error`]: refusals.
//! - [`conn`]: connection limits and stall deadlines; [`peers`]: per-peer caps.
//!
//! [`router`] builds the application and [`run`] serves it on a listener
//! until a shutdown future completes. Starting the process, and what runs
//! beside the intake, is [`crate::server`]'s job.

pub mod conn;
pub mod error;
pub mod pages;
pub mod peers;
pub mod reporter;
pub mod routes;
pub mod sealed;
pub mod state;
pub mod status;
pub mod upload;

use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use tokio::net::TcpListener;

pub use error::Refusal;
pub use state::{AppState, Services};

use crate::keys::KeyError;

/// How long in-flight uploads may still finish after SIGTERM; those still
/// running then are discarded (nothing of them stays in the store).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// What can stop the intake state from loading or reloading.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IntakeError {
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error(transparent)]
    Station(#[from] crate::station::StationError),
}

/// The whole HTTP application over `state`.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(routes::form))
        .route("/report", post(routes::submit_form))
        .route("/api/v1/reports", post(routes::submit_api))
        .route("/keys.asc", get(routes::keys_asc))
        .route("/signing-key.asc", get(routes::signing_key_asc))
        .route("/api/v1/policy", get(routes::policy))
        .route(
            "/status",
            get(reporter::status_form).post(reporter::status_page),
        )
        .route("/status/messages", post(reporter::page_message))
        .route("/api/v1/status", post(reporter::api_status))
        .route("/api/v1/status/messages", post(reporter::api_message))
        .route("/.well-known/security.txt", get(routes::security_txt))
        .route("/security.txt", get(routes::security_txt))
        .route("/healthz", get(routes::healthz))
        .route("/static/style.css", get(routes::stylesheet))
        .route("/api/v1/openapi.json", get(routes::openapi))
        .route("/api/v1/sealed", get(sealed::list))
        .route("/api/v1/sealed/{id}/{part}", get(sealed::part))
        .route("/api/v1/sealed/{id}/fetched", post(sealed::fetched))
        .route(
            "/api/v1/sealed/{id}/events",
            get(sealed::events).post(sealed::add_event),
        )
        .route("/api/v1/sealed/{id}/events/{name}", get(sealed::event))
        .route("/api/v1/sealed/{id}/files", get(sealed::files))
        .route("/api/v1/sealed/{id}/files/{name}", get(sealed::file))
        .route(
            "/api/v1/sealed/{id}/status",
            get(status::get).put(status::put),
        )
        .route(
            "/api/v1/sealed/{id}/session-keys",
            post(sealed::add_session_keys),
        )
        .route(
            "/api/v1/sealed/{id}/reporter-mail",
            post(reporter::reporter_mail),
        )
        .route("/metrics", get(routes::metrics_with_token))
        .fallback(routes::not_found)
        // Uploads are bounded by [limits] while they stream, not by axum's
        // buffering limit (which would cut attachments at 2 MB).
        .layer(DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn(routes::security_headers))
        .route_layer(axum::middleware::from_fn(routes::log_request))
        .with_state(state)
}

/// The metrics-only application for `metrics_listen`.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(routes::metrics_open))
        .layer(axum::middleware::from_fn(routes::security_headers))
        .with_state(state)
}

/// Serves `state` on `listener` until `shutdown` completes, then lets
/// requests in flight finish (up to [`SHUTDOWN_GRACE`]).
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let limits = &state.config().limits;
    let max_connections = conn::connection_limit(limits);
    let per_peer =
        peers::PeerSlots::new(limits.max_connections_per_peer, limits.proxy_peers.clone());
    let header_read_timeout = limits.header_read_timeout.0;
    let metrics = state.metrics().clone();
    let listener = conn::StallingListener::new(
        listener,
        conn::STALL_TIMEOUT,
        max_connections,
        per_peer,
        move || metrics.connection_shed(),
    );
    let finished = conn::serve(
        listener,
        router(state),
        header_read_timeout,
        SHUTDOWN_GRACE,
        shutdown,
    )
    .await;
    if !finished {
        tracing::warn!("uploads still running after the shutdown grace period were discarded");
    }
}
