//! The running process: which services start, on what runtime, and how they
//! stop. `embargo serve` runs the web intake with the mailbox poller, the
//! notifier, key alerts, retention and the metrics listener beside it;
//! `embargo poll` runs the poller alone; `embargo demo` serves a throwaway
//! setup. Each service gets what it needs from here (a store, a health
//! handle, the notifier) instead of reaching for a sibling.
//!
//! - [`signals`]: SIGTERM/SIGINT, SIGHUP and `keys_dir` reloads.
//! - [`demo`]: the throwaway key and directory of `embargo demo`.

pub mod demo;
pub mod signals;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use demo::{DEMO_LISTEN, DEMO_USER_ID, demo_decrypt_command, prepare_demo};

use crate::clock::Clock;
use crate::config::{Config, ConfigError};
use crate::health::ServiceHealth;
use crate::intake::{self, AppState, Services};
use crate::keys::KeyError;
use crate::mailbox::{self, MailboxError};
use crate::metrics::Metrics;
use crate::notify::{Notifier, NotifierHandle};
use crate::station::{Recovery, Station, StationError};
use crate::store::StoreError;

/// What can stop the server from starting or running.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    #[error(transparent)]
    Station(#[from] StationError),
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Mailbox(#[from] MailboxError),
    #[error(
        "cannot listen on {addr}: {source}; check `listen` in the config and that no other process uses the port"
    )]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the server failed: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("cannot start the notices to [maintainers] notify: {0}")]
    Notify(String),
    #[error("cannot prepare the demo in {dir}: {reason}")]
    Demo {
        dir: std::path::PathBuf,
        reason: String,
    },
}

/// Where a started server listens, for the one who started it to announce.
#[derive(Clone, Copy, Debug)]
pub struct Bound {
    /// The web intake.
    pub web: SocketAddr,
    /// The metrics-only listener (`metrics_listen`), when configured.
    pub metrics: Option<SocketAddr>,
}

/// The listeners of `embargo serve`, bound before anything is spawned.
struct Listeners {
    web: TcpListener,
    metrics: Option<TcpListener>,
    bound: Bound,
}

async fn bind(addr: &str) -> Result<(TcpListener, SocketAddr), ServerError> {
    let listen_err = |source| ServerError::Listen {
        addr: addr.to_owned(),
        source,
    };
    let listener = TcpListener::bind(addr).await.map_err(listen_err)?;
    let local = listener.local_addr().map_err(listen_err)?;
    Ok((listener, local))
}

async fn bind_all(config: &Config) -> Result<Listeners, ServerError> {
    let (web, web_addr) = bind(&config.listen).await?;
    let (metrics, metrics_addr) = match &config.metrics_listen {
        Some(addr) => {
            let (l, a) = bind(addr).await?;
            (Some(l), Some(a))
        }
        None => (None, None),
    };
    Ok(Listeners {
        web,
        metrics,
        bound: Bound {
            web: web_addr,
            metrics: metrics_addr,
        },
    })
}

/// `embargo serve`: opens the station and serves it on `config.listen`
/// until SIGTERM; keys reload on SIGHUP and when `keys_dir` changes.
/// `ready` is called once every listener is bound.
pub async fn serve_with(
    config: Config,
    clock: Clock,
    ready: impl FnOnce(Bound),
) -> Result<(), ServerError> {
    // Watched from the start: a SIGTERM during start-up stops it cleanly.
    let terminated = signals::terminate();
    let station = Station::open(config, clock, Recovery::RemoveStale)?;
    check_before_binding(&station.config, clock)?;
    let config = station.config.clone();
    // Everything running beside the intake stops with it.
    let shutdown = CancellationToken::new();
    let metrics = Arc::new(Metrics::new(clock));
    // The notices are set up (targets, [smtp] and its password file)
    // before any port is bound, so a configuration that cannot work
    // fails here and "listening" is never logged for it.
    let (notifier, notify_task) = Notifier::spawn(&config, Some(metrics.clone()), shutdown.clone())
        .map_err(|e| ServerError::Notify(e.to_string()))?;
    let acks = match &config.smtp {
        Some(smtp) => Some(Arc::new(
            crate::ack::Acker::new(smtp, &config)
                .map_err(|e| ServerError::Notify(e.to_string()))?,
        )),
        None => None,
    };
    let listeners = bind_all(&config).await?;
    tracing::info!(local = %listeners.bound.web, "web intake listening");
    // With [mailbox], the poller shares the notices and the counters.
    let links = mailbox::Links {
        notifier: Some(notifier.clone()),
        metrics: Some(metrics.clone()),
        acks: acks.clone(),
        ..Default::default()
    };
    let reload_flag = links.reload_keys.clone();
    let poller = mailbox::spawn(config.clone(), clock, shutdown.clone(), links);
    let health = poller
        .as_ref()
        .map(|(h, _)| Arc::new(h.clone()) as Arc<dyn ServiceHealth>);
    let state = AppState::new(
        station,
        Services {
            metrics: metrics.clone(),
            notifier: Some(notifier.clone()),
            health,
            acks,
        },
    );
    signals::reload_on_keys_change(state.clone());
    signals::reload_on_sighup(Some(state.clone()), reload_flag);
    spawn_beside(&state, notifier, listeners.metrics, &shutdown);
    let retention = crate::retention::spawn(
        state.store().clone(),
        config.state_dir.clone(),
        config.retention.clone(),
        clock,
        Some(metrics),
        shutdown.clone(),
    );
    ready(listeners.bound);
    let stop = shutdown.clone();
    intake::run(listeners.web, state, async move {
        terminated.await;
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
    Ok(())
}

/// The key alerts and the metrics-only listener, which end with `shutdown`.
fn spawn_beside(
    state: &AppState,
    notifier: NotifierHandle,
    metrics_listener: Option<TcpListener>,
    shutdown: &CancellationToken,
) {
    let keys_state = state.clone();
    tokio::spawn(crate::alerts::daily(
        move || Some(keys_state.keys().keyring.clone()),
        state.clock(),
        state.metrics().clone(),
        move |alert| notifier.alert(alert.notice_line()),
        state.key_recheck(),
        shutdown.clone(),
    ));
    if let Some(listener) = metrics_listener {
        let app = intake::metrics_router(state.clone());
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
}

/// The start-up checks that need more than the configuration text (the
/// clock), made before anything is bound or spawned.
fn check_before_binding(config: &Config, clock: Clock) -> Result<(), ServerError> {
    let now = clock.now();
    if let Some(expires) = config.security_txt_expires {
        if expires.0 > now + intake::routes::SECURITY_TXT_DEFAULT_LIFETIME {
            return Err(ServerError::Config(ConfigError::Value {
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
    check_secret_files(config)?;
    if config.public_url.is_none() {
        tracing::warn!(
            "public_url is not set: /.well-known/security.txt is not served (its URLs are never taken from a request's Host header); set public_url in the config"
        );
    }
    Ok(())
}

/// Secrets read later by the poller or the acknowledgements: a missing
/// file stops the start now rather than failing in the background.
fn check_secret_files(config: &Config) -> Result<(), ServerError> {
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
            return Err(ServerError::Config(ConfigError::Value {
                key,
                message: format!(
                    "cannot read {}: {e}; create it (mode 0600, the password on its first line) or fix the path",
                    path.display()
                ),
            }));
        }
    }
    Ok(())
}

/// `embargo serve`, on a runtime of its own.
pub fn serve(config: Config, clock: Clock, ready: impl FnOnce(Bound)) -> Result<(), ServerError> {
    runtime(None)?.block_on(serve_with(config, clock, ready))
}

/// `embargo demo`: prepares `dir` (see [`prepare_demo`]) and serves it on
/// [`DEMO_LISTEN`].
pub fn demo(
    dir: &std::path::Path,
    clock: Clock,
    ready: impl FnOnce(Bound),
) -> Result<(), ServerError> {
    let config = prepare_demo(dir)?;
    serve(config, clock, ready)
}

/// The runtime a long-running command runs on; `workers` caps its threads
/// (the poller alone needs few), else one per core.
fn runtime(workers: Option<usize>) -> Result<tokio::runtime::Runtime, ServerError> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = workers {
        builder.worker_threads(n);
    }
    builder.enable_all().build().map_err(ServerError::Runtime)
}

/// `embargo poll`: the mailbox poller alone, on its own runtime, stopping
/// cleanly (between messages) on SIGTERM or SIGINT; SIGHUP reloads the
/// maintainer certificates. With `[maintainers] notify`, it runs its own
/// notifier and flushes it before returning.
pub fn poll(config: Config, clock: Clock, once: bool) -> Result<mailbox::Summary, ServerError> {
    runtime(Some(2))?.block_on(async {
        let shutdown = CancellationToken::new();
        let mut links = mailbox::Links::default();
        signals::reload_on_sighup(None, links.reload_keys.clone());
        let stop = shutdown.clone();
        let terminated = signals::terminate();
        tokio::spawn(async move {
            terminated.await;
            tracing::info!("stopping after the current message");
            stop.cancel();
        });
        // What a killed run left in staging; safe here: no web intake runs in
        // this process, and the poller lock keeps other pollers out.
        let guard = mailbox::lock(&config.state_dir)?;
        crate::store::open_and_recover(&config.store)?;
        drop(guard);
        let notices = CancellationToken::new();
        let mut own = None;
        if !config.maintainers.notify.is_empty() {
            let (handle, task) =
                Notifier::spawn(&config, None, notices.clone()).map_err(MailboxError::from)?;
            links.notifier = Some(handle);
            own = Some(task);
        }
        let result =
            mailbox::run(config, clock, once, mailbox::Health::new(), shutdown, links).await;
        if let Some(task) = own {
            // Announces what is still pending (bounded by notify::FLUSH_TIMEOUT).
            notices.cancel();
            let _ = task.await;
        }
        let summary = result?;
        tracing::info!(
            sealed = summary.sealed,
            already_sealed = summary.already_sealed,
            removed = summary.removed,
            left = summary.left,
            "mailbox poller done"
        );
        Ok(summary)
    })
}
