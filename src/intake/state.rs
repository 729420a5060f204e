//! What every request shares: configuration, the current keys (reloadable),
//! the store, the upload slots and the in-memory rate limiter.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

use super::IntakeError;
use crate::clock::Clock;
use crate::config::Config;
use crate::keys::{CertEntry, IntakeSecrets, Keyring, judge};
use crate::metrics::{Channel as MetricsChannel, Metrics};
use crate::notify::NotifierHandle;
use crate::seal::Sealer;
use crate::store::FsStore;

/// Peers remembered by the rate limiter before old windows are swept.
const RATE_TABLE_SWEEP_AT: usize = 4096;
/// The rate limiter's window.
const RATE_WINDOW: Duration = Duration::from_secs(60);

/// The state shared by all handlers. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    clock: Clock,
    secrets: Arc<IntakeSecrets>,
    store: Arc<FsStore>,
    keys: RwLock<Arc<KeySet>>,
    uploads: Arc<Semaphore>,
    rate: Mutex<RateTable>,
    tokens: Vec<[u8; 32]>,
    /// The mailbox poller's health, when `serve` runs one.
    mailbox: std::sync::OnceLock<crate::mailbox::Health>,
    /// Counters for `/metrics`.
    metrics: Arc<Metrics>,
    /// Batched "new report" notices, when `serve` runs the notifier.
    notifier: std::sync::OnceLock<NotifierHandle>,
    /// Wakes the key alerts check when the keys were reloaded.
    key_recheck: Arc<tokio::sync::Notify>,
}

/// The maintainer certificates as last loaded, and the sealer built on them.
pub struct KeySet {
    pub keyring: Keyring,
    /// `None` when no certificate was usable at load time (fail closed).
    pub sealer: Option<Sealer>,
}

/// A maintainer certificate reports are not sealed to, and why.
#[derive(Clone, Debug, serde::Serialize)]
pub struct UnusableCert {
    pub fingerprint: String,
    pub reason: String,
}

impl KeySet {
    fn build(
        keyring: Keyring,
        secrets: &Arc<IntakeSecrets>,
        config: &Config,
        clock: Clock,
    ) -> KeySet {
        let sealer = keyring
            .recipients()
            .ok()
            .map(|r| Sealer::new(r, secrets.clone(), config.message_format, clock));
        KeySet { keyring, sealer }
    }

    /// Certificates usable at `now` (one that expired since loading is not).
    pub fn usable_at(&self, now: SystemTime) -> Vec<&CertEntry> {
        self.keyring
            .entries
            .iter()
            .filter(|e| e.is_usable() && judge(&e.file, e.cert.clone(), now).is_usable())
            .collect()
    }

    /// The certificates that are not usable at `now` (since loading, or
    /// since they expired or were revoked), with the reason, without file
    /// paths: `/healthz` shows them publicly.
    pub fn unusable_at(&self, now: SystemTime) -> Vec<UnusableCert> {
        self.keyring
            .entries
            .iter()
            .filter_map(|e| {
                let problem = match &e.problem {
                    Some(p) => p.clone(),
                    None => judge(&e.file, e.cert.clone(), now).problem?,
                };
                Some(UnusableCert {
                    fingerprint: e.fingerprint().to_hex(),
                    reason: problem,
                })
            })
            .collect()
    }

    /// Why no certificate is usable at `now`, without file paths (this is
    /// shown publicly by `/healthz`); `None` when one is.
    pub fn problem_at(&self, now: SystemTime) -> Option<String> {
        if !self.usable_at(now).is_empty() {
            return None;
        }
        let mut reasons: Vec<String> = self
            .keyring
            .entries
            .iter()
            .map(|e| {
                let judged = judge(&e.file, e.cert.clone(), now);
                format!(
                    "{}: {}",
                    e.fingerprint().to_hex(),
                    judged.problem.as_deref().unwrap_or("unusable")
                )
            })
            .collect();
        if !self.keyring.bad_files.is_empty() {
            reasons.push(format!(
                "{} unreadable key file(s)",
                self.keyring.bad_files.len()
            ));
        }
        if reasons.is_empty() {
            reasons.push("the keys directory holds no certificate".into());
        }
        reasons.truncate(5);
        Some(format!(
            "no usable maintainer certificate ({}): reports are refused until one is added",
            reasons.join("; ")
        ))
    }
}

impl AppState {
    /// Loads keys, intake secrets and the store for serving. Unlike
    /// [`crate::app::Intake::open`], a keyring without a usable certificate
    /// does not stop the server: it answers 503 until keys are reloaded.
    /// Secret key material in `keys_dir` still does.
    pub fn open(config: Config, clock: Clock) -> Result<AppState, IntakeError> {
        let keyring = Keyring::load(&config.keys_dir, clock)?;
        let secrets = Arc::new(IntakeSecrets::load_or_create(
            &config.state_dir,
            &config.project_name,
        )?);
        let store = Arc::new(FsStore::open_and_recover(&config.store)?);
        Ok(AppState::from_parts(config, clock, keyring, secrets, store))
    }

    /// Builds the state from parts already loaded (see [`crate::app::Intake`]).
    pub fn from_parts(
        config: Config,
        clock: Clock,
        keyring: Keyring,
        secrets: Arc<IntakeSecrets>,
        store: Arc<FsStore>,
    ) -> AppState {
        keyring.log_problems(config.key_expiry_warning.0);
        let keys = KeySet::build(keyring, &secrets, &config, clock);
        let tokens = config
            .maintainers
            .token_sha256
            .iter()
            .filter_map(|t| {
                hex::decode(t)
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
            })
            .collect();
        let uploads = Arc::new(Semaphore::new(config.limits.max_concurrent_uploads));
        let metrics = Arc::new(Metrics::new(clock));
        metrics.set_keys(&keys.keyring);
        AppState {
            inner: Arc::new(Inner {
                config,
                clock,
                secrets,
                store,
                keys: RwLock::new(Arc::new(keys)),
                uploads,
                rate: Mutex::new(RateTable::default()),
                tokens,
                mailbox: std::sync::OnceLock::new(),
                metrics,
                notifier: std::sync::OnceLock::new(),
                key_recheck: Arc::new(tokio::sync::Notify::new()),
            }),
        }
    }

    /// Lets `/healthz` report the mailbox poller started next to the intake.
    pub fn set_mailbox_health(&self, health: crate::mailbox::Health) {
        let _ = self.inner.mailbox.set(health);
    }

    /// The mailbox poller's health, when one runs in this process.
    pub fn mailbox_health(&self) -> Option<&crate::mailbox::Health> {
        self.inner.mailbox.get()
    }

    /// Notified whenever the keys are reloaded, so key alerts (a
    /// certificate now unusable) go out at once.
    pub fn key_recheck(&self) -> Arc<tokio::sync::Notify> {
        self.inner.key_recheck.clone()
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// Lets reports accepted here be announced by `serve`'s notifier.
    pub fn set_notifier(&self, notifier: NotifierHandle) {
        let _ = self.inner.notifier.set(notifier);
    }

    /// Counts an accepted report and announces it (content-free, batched).
    pub fn report_accepted(&self, channel: MetricsChannel, sealed: &crate::seal::SealedReport) {
        self.inner.metrics.report_accepted(channel);
        self.inner
            .metrics
            .bytes_sealed(sealed.parts.iter().map(|p| p.size).sum());
        if let Some(n) = self.inner.notifier.get() {
            n.report_arrived();
        }
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub fn clock(&self) -> Clock {
        self.inner.clock
    }

    pub fn secrets(&self) -> &Arc<IntakeSecrets> {
        &self.inner.secrets
    }

    pub fn store(&self) -> &Arc<FsStore> {
        &self.inner.store
    }

    /// The keys currently in use.
    pub fn keys(&self) -> Arc<KeySet> {
        match self.inner.keys.read() {
            Ok(k) => k.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Re-reads `keys_dir` (SIGHUP). If it cannot be read, or now holds a
    /// secret key, the keys in use are kept and the error is returned.
    pub fn reload_keys(&self) -> Result<(), IntakeError> {
        let keyring = Keyring::load(&self.inner.config.keys_dir, self.inner.clock)?;
        keyring.log_problems(self.inner.config.key_expiry_warning.0);
        let set = Arc::new(KeySet::build(
            keyring,
            &self.inner.secrets,
            &self.inner.config,
            self.inner.clock,
        ));
        let usable = set.usable_at(self.inner.clock.now()).len();
        self.inner.metrics.set_keys(&set.keyring);
        match self.inner.keys.write() {
            Ok(mut k) => *k = set,
            Err(poisoned) => *poisoned.into_inner() = set,
        }
        self.inner.key_recheck.notify_one();
        tracing::info!(usable, "maintainer certificates reloaded");
        Ok(())
    }

    /// An upload slot, or `None` when `max_concurrent_uploads` are running.
    pub(crate) fn try_upload_slot(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.inner.uploads.clone().try_acquire_owned().ok()
    }

    /// Counts one request from `peer`; `false` when it is over the limit.
    /// Addresses live only in this table, in memory, for one minute.
    pub(crate) fn rate_allow(&self, peer: IpAddr) -> bool {
        let limit = self.inner.config.limits.rate_limit_per_minute;
        let mut table = match self.inner.rate.lock() {
            Ok(t) => t,
            Err(poisoned) => poisoned.into_inner(),
        };
        table.allow(peer_key(peer), limit, Instant::now())
    }

    /// Whether `token` is one of the maintainers' fetch tokens. Every
    /// configured hash is compared, in constant time.
    pub(crate) fn token_ok(&self, token: &str) -> bool {
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut ok = subtle::Choice::from(0u8);
        for expected in &self.inner.tokens {
            ok |= hash.ct_eq(expected);
        }
        bool::from(ok)
    }
}

/// IPv6 peers are counted per /64, which one host usually holds whole.
fn peer_key(peer: IpAddr) -> IpAddr {
    match peer {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
            let mut s = v6.segments();
            s[4..].fill(0);
            IpAddr::V6(s.into())
        }
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// Fixed one-minute windows per peer.
#[derive(Default)]
struct RateTable {
    windows: HashMap<IpAddr, (Instant, u32)>,
}

impl RateTable {
    fn allow(&mut self, peer: IpAddr, limit: u32, now: Instant) -> bool {
        if self.windows.len() >= RATE_TABLE_SWEEP_AT {
            self.windows
                .retain(|_, (start, _)| now.duration_since(*start) < RATE_WINDOW);
        }
        let entry = self.windows.entry(peer).or_insert((now, 0));
        if now.duration_since(entry.0) >= RATE_WINDOW {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
        entry.1 <= limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_windows_reset_after_a_minute() {
        let mut t = RateTable::default();
        let peer: IpAddr = "192.0.2.1".parse().unwrap();
        let now = Instant::now();
        assert!(t.allow(peer, 2, now));
        assert!(t.allow(peer, 2, now));
        assert!(!t.allow(peer, 2, now));
        assert!(t.allow("192.0.2.2".parse().unwrap(), 2, now));
        assert!(t.allow(peer, 2, now + RATE_WINDOW));
    }

    #[test]
    fn ipv6_peers_share_a_slash_64() {
        let a = peer_key("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = peer_key("2001:db8:1:2:bbbb::2".parse().unwrap());
        assert_eq!(a, b);
        assert_eq!(
            peer_key("::ffff:192.0.2.1".parse().unwrap()),
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
    }
}
