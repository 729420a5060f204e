//! The web intake (docs/openapi.json): the report form, the API, receipts and the
//! maintainers' fetch routes.
//!
//! - [`state`]: what requests share (keys, store, limits, rate table).
//! - [`upload`]: multipart from the socket, streamed into the sealer.
//! - [`routes`]: the public routes; [`sealed`]: the maintainers' routes.
//! - [`pages`]: the form and receipt pages; [`error`]: refusals.
//! - [`conn`]: connection limits and stall deadlines; [`peers`]: per-peer caps.
//!
//! [`router`] builds the application, [`run`] serves it on a listener until
//! a shutdown signal, [`serve`] and [`demo`] are `embargo serve` and
//! `embargo demo`.

pub mod conn;
pub mod error;
pub mod pages;
pub mod peers;
pub mod routes;
pub mod sealed;
pub mod state;
pub mod upload;

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use openpgp::cert::prelude::*;
use openpgp::serialize::SerializeInto;
use sequoia_openpgp as openpgp;
use tokio::net::TcpListener;

pub use error::ApiError;
pub use state::AppState;

use crate::clock::Clock;
use crate::config::Config;
use crate::keys::{IntakeSecrets, KeyError};
use crate::store::StoreError;

/// How long in-flight uploads may still finish after SIGTERM; those still
/// running then are discarded (nothing of them stays in the store).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// What can stop the intake from serving.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IntakeError {
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "cannot listen on {addr}: {source}; check `listen` in the config and that no other process uses the port"
    )]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the server failed: {0}")]
    Serve(#[source] std::io::Error),
    #[error("cannot start the notices to [maintainers] notify: {0}")]
    Notify(String),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot prepare the demo in {dir}: {reason}")]
    Demo { dir: PathBuf, reason: String },
}

/// The whole HTTP application over `state`.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(routes::form))
        .route("/report", post(routes::submit_form))
        .route("/api/v1/reports", post(routes::submit_api))
        .route("/keys.asc", get(routes::keys_asc))
        .route("/signing-key.asc", get(routes::signing_key_asc))
        .route("/.well-known/security.txt", get(routes::security_txt))
        .route("/security.txt", get(routes::security_txt))
        .route("/healthz", get(routes::healthz))
        .route("/static/style.css", get(routes::stylesheet))
        .route("/api/v1/openapi.json", get(routes::openapi))
        .route("/api/v1/sealed", get(sealed::list))
        .route("/api/v1/sealed/{id}/{part}", get(sealed::part))
        .route("/api/v1/sealed/{id}/fetched", post(sealed::fetched))
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
) -> Result<(), IntakeError> {
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
    Ok(())
}

/// Resolves on SIGTERM or SIGINT.
async fn terminate() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot watch SIGTERM: {e}");
            std::future::pending::<()>().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// Reloads the keys on every SIGHUP (and tells the poller to, via `poller`).
fn reload_on_sighup(state: AppState, poller: std::sync::Arc<std::sync::atomic::AtomicBool>) {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::hangup()) {
        Ok(mut hup) => {
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    tracing::info!("SIGHUP: reloading certificates");
                    poller.store(true, std::sync::atomic::Ordering::SeqCst);
                    let state = state.clone();
                    let result = tokio::task::spawn_blocking(move || state.reload_keys()).await;
                    match result {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            tracing::error!("reloading keys failed, the keys in use are kept: {e}")
                        }
                        Err(e) => tracing::error!("reloading keys failed: {e}"),
                    }
                }
            });
        }
        Err(e) => tracing::error!("cannot watch SIGHUP, keys will not reload: {e}"),
    }
}

/// How often `keys_dir` is checked for added, removed or changed files.
pub const KEYS_POLL_INTERVAL: Duration = Duration::from_secs(5);

/// Reloads the keys when the files in `keys_dir` change (README: "Keys").
fn reload_on_keys_change(state: AppState) {
    tokio::spawn(async move {
        let dir = state.config().keys_dir.clone();
        let mut last = crate::keys::dir_stamp(&dir);
        let mut tick = tokio::time::interval(KEYS_POLL_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = crate::keys::dir_stamp(&dir);
            if now == last {
                continue;
            }
            last = now;
            tracing::info!("the keys directory changed: reloading certificates");
            let state = state.clone();
            match tokio::task::spawn_blocking(move || state.reload_keys()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!("reloading keys failed, the keys in use are kept: {e}")
                }
                Err(e) => tracing::error!("reloading keys failed: {e}"),
            }
        }
    });
}

/// `embargo serve`: opens the intake and serves it on `config.listen` until
/// SIGTERM; keys reload on SIGHUP. `ready` is called with the bound address.
pub async fn serve_with(
    config: Config,
    clock: Clock,
    ready: impl FnOnce(SocketAddr),
) -> Result<(), IntakeError> {
    let state = AppState::open(config, clock)?;
    check_before_binding(state.config(), clock)?;
    // Everything running beside the intake stops with it.
    let shutdown = tokio_util::sync::CancellationToken::new();
    let metrics = state.metrics().clone();
    // The notices are set up (targets, [smtp] and its password file)
    // before any port is bound, so a configuration that cannot work
    // fails here and "listening" is never logged for it.
    let (notifier, notify_task) =
        crate::notify::Notifier::spawn(state.config(), Some(metrics.clone()), shutdown.clone())
            .map_err(|e| IntakeError::Notify(e.to_string()))?;
    let addr = state.config().listen.clone();
    let listener = TcpListener::bind(&addr)
        .await
        .map_err(|source| IntakeError::Listen {
            addr: addr.clone(),
            source,
        })?;
    let local = listener
        .local_addr()
        .map_err(|source| IntakeError::Listen { addr, source })?;
    let metrics_listener = match &state.config().metrics_listen {
        Some(addr) => {
            Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| IntakeError::Listen {
                        addr: addr.clone(),
                        source,
                    })?,
            )
        }
        None => None,
    };
    tracing::info!(%local, "web intake listening");
    if let Some(listener) = &metrics_listener
        && let Ok(addr) = listener.local_addr()
    {
        // Announced like the intake, so `metrics_listen` may use port 0.
        eprintln!("embargo: metrics listening on http://{addr}/metrics");
    }
    reload_on_keys_change(state.clone());
    state.set_notifier(notifier.clone());
    // With [mailbox], the poller shares the notices and the counters.
    let links = crate::mailbox::Links {
        notifier: Some(notifier.clone()),
        metrics: Some(metrics.clone()),
        ..Default::default()
    };
    reload_on_sighup(state.clone(), links.reload_keys.clone());
    let poller = crate::mailbox::spawn(state.config().clone(), clock, shutdown.clone(), links);
    if let Some((health, _)) = &poller {
        state.set_mailbox_health(health.clone());
    }
    let keys_state = state.clone();
    tokio::spawn(crate::alerts::daily(
        move || Some(keys_state.keys().keyring.clone()),
        clock,
        metrics.clone(),
        Some(notifier),
        state.key_recheck(),
        shutdown.clone(),
    ));
    let retention = crate::retention::spawn(
        state.store().clone(),
        state.config().state_dir.clone(),
        state.config().retention.clone(),
        clock,
        Some(metrics),
        shutdown.clone(),
    );
    if let Some(listener) = metrics_listener {
        let app = metrics_router(state.clone());
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
            if let Err(e) = served {
                tracing::error!("the metrics listener failed: {e}");
            }
        });
    }
    ready(local);
    let stop = shutdown.clone();
    let result = run(listener, state, async move {
        terminate().await;
        stop.cancel();
    })
    .await;
    shutdown.cancel();
    if let Some((_, task)) = poller {
        let _ = task.await;
    }
    if let Some(task) = retention {
        let _ = task.await;
    }
    // Reports accepted before the stop are still announced (bounded wait).
    let _ = notify_task.await;
    result
}

/// The start-up checks that need more than the configuration text (the
/// clock), made before anything is bound or spawned.
fn check_before_binding(config: &Config, clock: Clock) -> Result<(), IntakeError> {
    let now = clock.now();
    if let Some(expires) = config.security_txt_expires {
        if expires.0 > now + routes::SECURITY_TXT_DEFAULT_LIFETIME {
            return Err(IntakeError::Config(crate::config::ConfigError::Value {
                key: "security_txt_expires",
                message: format!(
                    "{} is more than a year ahead: RFC 9116 asks for less, so that an abandoned security.txt goes stale; set a date within the next year",
                    crate::clock::rfc3339(expires.0)
                ),
            }));
        }
        if expires.0 <= now {
            tracing::warn!(
                "security_txt_expires ({}) has passed: security.txt is served as expired until it is moved forward",
                crate::clock::rfc3339(expires.0)
            );
        }
    }
    // Secrets read later by the poller or the acknowledgements: a missing
    // file stops the start now rather than failing in the background.
    let files = [
        (
            "smtp.password_file",
            config.smtp.as_ref().and_then(|s| s.password_file.as_ref()),
        ),
        (
            "mailbox.password_file",
            config
                .mailbox
                .as_ref()
                .filter(|m| m.kind == "imap")
                .and_then(|m| m.password_file.as_ref()),
        ),
    ];
    for (key, path) in files {
        if let Some(path) = path
            && let Err(e) = std::fs::File::open(path)
        {
            return Err(IntakeError::Config(crate::config::ConfigError::Value {
                key,
                message: format!(
                    "cannot read {}: {e}; create it (mode 0600, the password on its first line) or fix the path",
                    path.display()
                ),
            }));
        }
    }
    if config.public_url.is_none() {
        tracing::warn!(
            "public_url is not set: /.well-known/security.txt is not served (its URLs are never taken from a request's Host header); set public_url in the config"
        );
    }
    Ok(())
}

/// `embargo serve`, on a runtime of its own.
pub fn serve(config: Config, clock: Clock) -> Result<(), IntakeError> {
    runtime()?.block_on(serve_with(config, clock, |addr| {
        eprintln!("embargo: web intake listening on http://{addr}/");
    }))
}

fn runtime() -> Result<tokio::runtime::Runtime, IntakeError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(IntakeError::Serve)
}

/// User ID of the demo key: nobody should mistake it for a real one.
pub const DEMO_USER_ID: &str =
    "DEMO maintainer key - throwaway, do not use for real reports (embargo demo)";
/// Where `embargo demo` listens.
pub const DEMO_LISTEN: &str = "127.0.0.1:8080";

/// Prepares `dir` for the demo: a throwaway maintainer key (secret part in
/// `maintainer-secret.asc`, mode 0600; public part in `keys/`), `state/`
/// and `data/`. An existing demo key is reused. Returns the config.
pub fn prepare_demo(dir: &Path) -> Result<Config, IntakeError> {
    let demo_err = |reason: String| IntakeError::Demo {
        dir: dir.to_owned(),
        reason,
    };
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys).map_err(|e| demo_err(e.to_string()))?;
    let secret_path = dir.join("maintainer-secret.asc");
    if !secret_path.exists() {
        let (cert, _) = CertBuilder::general_purpose(Some(DEMO_USER_ID))
            .set_cipher_suite(CipherSuite::Cv25519)
            .generate()
            .map_err(|e| demo_err(e.to_string()))?;
        let secret = zeroize::Zeroizing::new(
            cert.as_tsk()
                .armored()
                .to_vec()
                .map_err(|e| demo_err(e.to_string()))?,
        );
        let public = cert
            .armored()
            .to_vec()
            .map_err(|e| demo_err(e.to_string()))?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&secret_path)
            .map_err(|e| demo_err(e.to_string()))?;
        f.write_all(&secret).map_err(|e| demo_err(e.to_string()))?;
        std::fs::write(keys.join("demo-maintainer.asc"), public)
            .map_err(|e| demo_err(e.to_string()))?;
    }
    let mut config = Config::defaults_in(dir);
    config.listen = DEMO_LISTEN.into();
    config.public_url = Some(format!("http://{DEMO_LISTEN}"));
    config.project_name = "embargo demo".into();
    // The intake signing key, public part beside the demo key for --signer.
    let secrets = IntakeSecrets::load_or_create(&config.state_dir, &config.project_name)?;
    std::fs::write(dir.join("signing-key.asc"), secrets.signing_cert_armored()?)
        .map_err(|e| demo_err(e.to_string()))?;
    Ok(config)
}

/// The command that decrypts report `ID` submitted to the demo in `dir`.
pub fn demo_decrypt_command(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "decrypt ID --store {d}/data --key {d}/maintainer-secret.asc --signer {d}/signing-key.asc --out {d}/revealed"
    )
}

/// `embargo demo`: prepares `./demo/` and serves on 127.0.0.1:8080.
pub fn demo(dir: &Path, clock: Clock) -> Result<(), IntakeError> {
    let config = prepare_demo(dir)?;
    let shown = dir.display().to_string();
    let command = demo_decrypt_command(dir);
    runtime()?.block_on(serve_with(config, clock, |addr| {
        println!("embargo demo: a throwaway DEMO maintainer key is in {shown}/ (never use it for real reports).");
        println!();
        println!("  Report form:  http://{addr}/");
        println!();
        println!("Submit a report with the form, note the ID on the receipt, then decrypt it");
        println!("(it appears under {shown}/revealed/ID/):");
        println!();
        println!("  embargo {command}");
        println!("  (from a checkout: cargo run --release -- {command})");
        println!();
        println!("Press Ctrl-C to stop.");
    }))
}
