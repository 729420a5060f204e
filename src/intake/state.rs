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
use super::peers::{PeerSlot, PeerSlots, is_proxy, peer_key};
use crate::clock::Clock;
use crate::config::Config;
use crate::health::ServiceHealth;
use crate::keys::{CertEntry, IntakeSecrets, Keyring, judge};
use crate::metrics::{Channel as MetricsChannel, Metrics};
use crate::notify::NotifierHandle;
use crate::seal::Sealer;
use crate::station::{Recovery, Station};
use crate::store::Store;

/// Peers remembered by the rate limiter before old windows are swept.
const RATE_TABLE_SWEEP_AT: usize = 4096;
/// Reply codes one peer may try per [`CODE_WINDOW`] (each costs the
/// intake an Argon2id derivation).
pub const CODE_ATTEMPTS: u32 = 20;
/// The window of [`CODE_ATTEMPTS`].
pub const CODE_WINDOW: Duration = Duration::from_secs(600);
/// The rate limiter's window.
const RATE_WINDOW: Duration = Duration::from_secs(60);

/// The state shared by all handlers. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    /// Configuration, intake secrets and store (its keyring is the one
    /// loaded at start; the keys in use are in `keys`).
    station: Station,
    keys: RwLock<Arc<KeySet>>,
    uploads: Arc<Semaphore>,
    /// Uploads each peer has running (`max_uploads_per_peer`).
    peer_uploads: Arc<PeerSlots>,
    rate: Mutex<RateTable>,
    tokens: Vec<[u8; 32]>,
    /// The health of the service beside the intake (the mailbox poller).
    health: Option<Arc<dyn ServiceHealth>>,
    /// Counters for `/metrics`.
    metrics: Arc<Metrics>,
    /// Batched "new report" notices, when `serve` runs the notifier.
    notifier: Option<NotifierHandle>,
    /// Wakes the key alerts check when the keys were reloaded.
    key_recheck: Arc<tokio::sync::Notify>,
    acks: Option<Arc<crate::ack::Acker>>,
    /// Reply-code attempts per peer (status page and API), memory only.
    code_attempts: Mutex<HashMap<IpAddr, (Instant, u32)>>,
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
    fn build(keyring: Keyring, station: &Station) -> KeySet {
        let sealer = station.sealer_for(&keyring).ok();
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

/// What the server runs beside the intake and hands to it.
pub struct Services {
    /// Counters for `/metrics`, shared with the other services.
    pub metrics: Arc<Metrics>,
    /// Announces accepted reports (and case events, when configured), when
    /// the server runs a notifier.
    pub notifier: Option<NotifierHandle>,
    /// The health of a service `/healthz` also reports (the poller).
    pub health: Option<Arc<dyn ServiceHealth>>,
    /// Acknowledgements and new-reply notices to reporters, with `[smtp]`.
    pub acks: Option<Arc<crate::ack::Acker>>,
}

impl AppState {
    /// A state on its own (tests, fuzzing): opens the station, recovering
    /// stale staging, with fresh counters and no services beside it. A
    /// keyring without a usable certificate does not stop it: it answers
    /// 503 until keys are reloaded. Secret key material in `keys_dir` does.
    pub fn open(config: Config, clock: Clock) -> Result<AppState, IntakeError> {
        let station = Station::open(config, clock, Recovery::RemoveStale)?;
        let services = Services {
            metrics: Arc::new(Metrics::new(clock)),
            notifier: None,
            health: None,
            acks: None,
        };
        Ok(AppState::new(station, services))
    }

    /// The state over an open station and the services the server runs.
    pub fn new(station: Station, services: Services) -> AppState {
        let keys = KeySet::build(station.keyring.clone(), &station);
        let config = &station.config;
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
        let peer_uploads = PeerSlots::new(
            config.limits.max_uploads_per_peer,
            config.limits.proxy_peers.clone(),
        );
        services.metrics.set_keys(&keys.keyring);
        AppState {
            inner: Arc::new(Inner {
                station,
                keys: RwLock::new(Arc::new(keys)),
                uploads,
                peer_uploads,
                rate: Mutex::new(RateTable::default()),
                tokens,
                health: services.health,
                metrics: services.metrics,
                notifier: services.notifier,
                key_recheck: Arc::new(tokio::sync::Notify::new()),
                acks: services.acks,
                code_attempts: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The health of the service beside the intake, when one runs.
    pub fn service_health(&self) -> Option<&dyn ServiceHealth> {
        self.inner.health.as_deref()
    }

    /// Notified whenever the keys are reloaded, so key alerts (a
    /// certificate now unusable) go out at once.
    pub fn key_recheck(&self) -> Arc<tokio::sync::Notify> {
        self.inner.key_recheck.clone()
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// Counts an accepted report and announces it (content-free, batched).
    pub fn report_accepted(&self, channel: MetricsChannel, sealed: &crate::seal::SealedReport) {
        self.inner.metrics.report_accepted(channel);
        self.inner
            .metrics
            .bytes_sealed(sealed.parts.iter().map(|p| p.size).sum());
        if let Some(n) = &self.inner.notifier {
            n.report_arrived();
        }
    }

    /// Acknowledgements and new-reply notices, when `[smtp]` is set.
    pub fn acks(&self) -> Option<&Arc<crate::ack::Acker>> {
        self.inner.acks.as_ref()
    }

    /// Counts one reply-code attempt by `peer`; `false` when it had
    /// [`CODE_ATTEMPTS`] within [`CODE_WINDOW`] already. Proxies and
    /// unknown peers are not counted (the proxy limits them).
    pub(crate) fn code_attempt(&self, peer: Option<IpAddr>) -> bool {
        let Some(peer) =
            peer.filter(|p| !is_proxy(&self.inner.station.config.limits.proxy_peers, *p))
        else {
            return true;
        };
        let peer = peer_key(peer);
        let now = Instant::now();
        let mut table = self
            .inner
            .code_attempts
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if table.len() >= RATE_TABLE_SWEEP_AT {
            table.retain(|_, (start, _)| now.duration_since(*start) < CODE_WINDOW);
        }
        let entry = table.entry(peer).or_insert((now, 0));
        if now.duration_since(entry.0) >= CODE_WINDOW {
            *entry = (now, 0);
        }
        if entry.1 >= CODE_ATTEMPTS {
            return false;
        }
        entry.1 += 1;
        true
    }

    /// Announces a reporter's follow-up (always: someone is waiting).
    pub fn reporter_message_stored(&self) {
        if let Some(n) = &self.inner.notifier {
            n.reporter_message();
        }
    }

    /// Announces a stored case event, when `notify_case_events` is on.
    pub fn case_event_stored(&self) {
        if self.config().maintainers.notify_case_events
            && let Some(n) = &self.inner.notifier
        {
            n.case_event();
        }
    }

    pub fn config(&self) -> &Config {
        &self.inner.station.config
    }

    pub fn clock(&self) -> Clock {
        self.inner.station.clock()
    }

    pub fn secrets(&self) -> &Arc<IntakeSecrets> {
        &self.inner.station.secrets
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.station.store
    }

    /// The reply desk: salt and lookup keys of reply codes.
    pub fn replies(&self) -> &Arc<crate::reply::Desk> {
        &self.inner.station.replies
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
        let station = &self.inner.station;
        let keyring = station.reload_keyring()?;
        let set = Arc::new(KeySet::build(keyring, station));
        let usable = set.usable_at(station.clock().now()).len();
        self.inner.metrics.set_keys(&set.keyring);
        match self.inner.keys.write() {
            Ok(mut k) => *k = set,
            Err(poisoned) => *poisoned.into_inner() = set,
        }
        self.inner.key_recheck.notify_one();
        tracing::info!(usable, "maintainer certificates reloaded");
        Ok(())
    }

    /// An upload slot, held until the upload ends: one of the
    /// `max_concurrent_uploads`, and one of the `max_uploads_per_peer` of
    /// `peer` (when known), so that one peer cannot take every slot.
    pub(crate) fn try_upload_slot(&self, peer: Option<IpAddr>) -> Result<UploadSlot, Busy> {
        let per_peer = match peer {
            Some(ip) => Some(self.inner.peer_uploads.try_take(ip).ok_or(Busy::Peer)?),
            None => None,
        };
        let global = self
            .inner
            .uploads
            .clone()
            .try_acquire_owned()
            .map_err(|_| Busy::Server)?;
        Ok(UploadSlot {
            _global: global,
            _per_peer: per_peer,
        })
    }

    /// Starts counting one submission from `peer` against the rate limits
    /// (kept in memory only, for one minute). Refused when the peer had
    /// `refusal_limit_per_minute` refusals in this minute. The ticket
    /// counts as a refusal unless [`RateTicket::accepted`] is called.
    pub(crate) fn rate_ticket(&self, peer: Option<IpAddr>) -> Result<RateTicket, RateLimited> {
        let Some(peer) =
            peer.filter(|p| !is_proxy(&self.inner.station.config.limits.proxy_peers, *p))
        else {
            return Ok(RateTicket {
                state: self.clone(),
                peer: None,
                stage: Stage::Done,
            });
        };
        let peer = peer_key(peer);
        let limit = self.inner.station.config.limits.refusal_limit_per_minute;
        let refused = self.with_window(peer, |w| w.refused);
        if refused >= limit {
            return Err(RateLimited::Refusals);
        }
        Ok(RateTicket {
            state: self.clone(),
            peer: Some(peer),
            stage: Stage::Open,
        })
    }

    fn with_window<R>(&self, peer: IpAddr, f: impl FnOnce(&mut Window) -> R) -> R {
        let mut table = match self.inner.rate.lock() {
            Ok(t) => t,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(table.window(peer, Instant::now()))
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

/// An upload's places: one of the server's and one of its peer's.
pub(crate) struct UploadSlot {
    _global: tokio::sync::OwnedSemaphorePermit,
    _per_peer: Option<PeerSlot>,
}

/// Why no upload slot was free.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Busy {
    /// Every one of `max_concurrent_uploads` is taken.
    Server,
    /// This peer already runs `max_uploads_per_peer` uploads.
    Peer,
}

/// Which rate limit a peer is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RateLimited {
    /// `rate_limit_per_minute` reports accepted (or being received).
    Accepted,
    /// `refusal_limit_per_minute` submissions refused.
    Refusals,
}

/// Where a [`RateTicket`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Admitted past the refusal limit; counts as a refusal if dropped.
    Open,
    /// Holds a place under the accepted-report limit.
    Reserved,
    /// Counted (or never to be counted).
    Done,
}

/// One submission being counted: accepted reports against
/// `rate_limit_per_minute`, refusals against `refusal_limit_per_minute`.
/// Dropping it without [`RateTicket::accepted`] counts a refusal, so an
/// upload cut off by a timeout or a disconnect counts too.
pub(crate) struct RateTicket {
    state: AppState,
    /// `None` when the peer is not counted (unknown, or a proxy).
    peer: Option<IpAddr>,
    stage: Stage,
}

impl RateTicket {
    /// Takes a place under the accepted-report limit: refused when the
    /// peer's accepted reports and those still being received reach
    /// `rate_limit_per_minute`. That refusal is not counted again.
    pub(crate) fn reserve(&mut self) -> Result<(), RateLimited> {
        let Some(peer) = self.peer.filter(|_| self.stage == Stage::Open) else {
            return Ok(());
        };
        let limit = self.state.config().limits.rate_limit_per_minute;
        let ok = self.state.with_window(peer, |w| {
            if w.accepted.saturating_add(w.pending) >= limit {
                return false;
            }
            w.pending += 1;
            true
        });
        self.stage = if ok { Stage::Reserved } else { Stage::Done };
        if ok {
            Ok(())
        } else {
            Err(RateLimited::Accepted)
        }
    }

    /// The report was accepted: counted against `rate_limit_per_minute`.
    pub(crate) fn accepted(mut self) {
        self.settle(true);
    }

    fn settle(&mut self, accepted: bool) {
        let stage = std::mem::replace(&mut self.stage, Stage::Done);
        let Some(peer) = self.peer.filter(|_| stage != Stage::Done) else {
            return;
        };
        self.state.with_window(peer, |w| {
            if stage == Stage::Reserved {
                w.pending = w.pending.saturating_sub(1);
            }
            if accepted {
                w.accepted = w.accepted.saturating_add(1);
            } else {
                w.refused = w.refused.saturating_add(1);
            }
        });
    }
}

impl Drop for RateTicket {
    fn drop(&mut self) {
        self.settle(false);
    }
}

/// One peer's counts in the current minute.
#[derive(Clone, Copy, Debug)]
struct Window {
    start: Instant,
    accepted: u32,
    /// Reports being received now, already holding a place under the
    /// accepted limit (they outlive the window they started in).
    pending: u32,
    refused: u32,
}

/// Fixed one-minute windows per peer.
#[derive(Default)]
struct RateTable {
    windows: HashMap<IpAddr, Window>,
}

impl RateTable {
    fn window(&mut self, peer: IpAddr, now: Instant) -> &mut Window {
        if self.windows.len() >= RATE_TABLE_SWEEP_AT {
            self.windows
                .retain(|_, w| w.pending > 0 || now.duration_since(w.start) < RATE_WINDOW);
        }
        let w = self.windows.entry(peer).or_insert(Window {
            start: now,
            accepted: 0,
            pending: 0,
            refused: 0,
        });
        if now.duration_since(w.start) >= RATE_WINDOW {
            *w = Window {
                start: now,
                accepted: 0,
                pending: w.pending,
                refused: 0,
            };
        }
        w
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_windows_reset_after_a_minute_and_keep_uploads_in_flight() {
        let mut t = RateTable::default();
        let peer: IpAddr = "192.0.2.1".parse().unwrap();
        let now = Instant::now();
        t.window(peer, now).accepted = 3;
        t.window(peer, now).pending = 1;
        t.window(peer, now).refused = 7;
        assert_eq!(t.window("192.0.2.2".parse().unwrap(), now).refused, 0);
        let later = *t.window(peer, now + RATE_WINDOW);
        assert_eq!((later.accepted, later.pending, later.refused), (0, 1, 0));
    }
}
