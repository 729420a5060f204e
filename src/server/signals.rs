//! Signals and reloads of a running server: SIGTERM/SIGINT stop it, SIGHUP
//! and changes in `keys_dir` reload the maintainer certificates.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::intake::AppState;

/// How often `keys_dir` is checked for added, removed or changed files.
pub const KEYS_POLL_INTERVAL: Duration = Duration::from_secs(5);

/// A future that resolves on SIGTERM or SIGINT. SIGTERM is watched from
/// this call on (not from the first poll), so one sent right after start
/// stops the process cleanly instead of killing it.
pub fn terminate() -> impl std::future::Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    async move {
        let mut term = match term {
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
}

/// Sets `flag` on every SIGHUP (the poller reloads its keys before the next
/// message), and reloads the web intake's keys when `state` is given.
pub fn reload_on_sighup(state: Option<AppState>, flag: Arc<AtomicBool>) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(hup) => hup,
        Err(e) => {
            tracing::error!("cannot watch SIGHUP, keys will not reload: {e}");
            return;
        }
    };
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            flag.store(true, Ordering::SeqCst);
            if let Some(state) = &state {
                tracing::info!("SIGHUP: reloading certificates");
                reload(state.clone()).await;
            }
        }
    });
}

/// Reloads the keys when the files in `keys_dir` change (README: "Keys").
pub fn reload_on_keys_change(state: AppState) {
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
            reload(state.clone()).await;
        }
    });
}

/// One reload on a blocking thread; a failure keeps the keys in use.
async fn reload(state: AppState) {
    match tokio::task::spawn_blocking(move || state.reload_keys()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!("reloading keys failed, the keys in use are kept: {e}"),
        Err(e) => tracing::error!("reloading keys failed: {e}"),
    }
}
