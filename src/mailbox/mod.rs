//! The mailbox poller (README: "Reports by e-mail"): IMAP and Maildir intake, exactly once.
//!
//! For each message: fetch the raw bytes without marking them seen, derive
//! the report ID from HMAC(intake secret, raw bytes), seal unless that report
//! is already committed, commit, and only then delete the message. A crash at
//! any point leaves the message in place or a committed report whose message
//! maps to the same ID the next time, so nothing is lost or sealed twice.
//!
//! - [`message`]: manifest metadata parsed from the raw bytes.
//! - `imap`: the IMAP source (async-imap over rustls); `maildir`: a Maildir.
//! - `ack`: acknowledgements to reporters (SMTP); maintainers are told by
//!   [`crate::notify`] (content-free, batched).
//! - [`Health`]: what `/healthz` reports about the poller.

pub use crate::ack;
mod imap;
mod maildir;
pub mod message;

use std::fmt;
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;
use zeroize::Zeroizing;

use crate::clock::Clock;
use crate::config::{Config, Mailbox};
use crate::id::ReportId;
use crate::metrics::Metrics;
use crate::notify::{NotifierHandle, NotifyError};
use crate::seal::{Channel, Role, SealError};
use crate::station::{Recovery, Sealing, Station, StationError};
use crate::store::StoreError;

pub use message::MailFacts;

/// Name of the poller's lock file in `state_dir`.
pub const LOCK_FILE: &str = "mailbox.lock";

/// Shortest wait before retrying after a failure; doubled on each failure.
const BACKOFF_START: Duration = Duration::from_secs(1);
/// Longest wait between retries.
const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// What can go wrong in the poller. No variant carries message content.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MailboxError {
    #[error(
        "no [mailbox] section in the configuration: add one (see the example in deploy/embargo.toml) to run the poller"
    )]
    NotConfigured,
    #[error("[mailbox] {0}")]
    Config(String),
    #[error("[smtp] {0}")]
    SmtpConfig(String),
    #[error("another poller holds {path}: stop it first (two pollers on one state_dir would race)")]
    Locked { path: PathBuf },
    #[error("cannot use the lock file {path}: {source}")]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the password file {path}: {source}")]
    Password {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot connect to the IMAP server {host}:{port}: {source}")]
    Connect {
        host: String,
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error("IMAP: {0}")]
    Imap(#[source] async_imap::error::Error),
    #[error("IMAP login as {user} failed: {source}; check username and password_file")]
    Login {
        user: String,
        #[source]
        source: async_imap::error::Error,
    },
    #[error("the IMAP server does not offer {capability}: {why}")]
    Capability {
        capability: &'static str,
        why: &'static str,
    },
    #[error(transparent)]
    Station(#[from] StationError),
    #[error(transparent)]
    Keys(#[from] crate::keys::KeyError),
    #[error("sealing failed, the message stays in the mailbox: {0}")]
    Seal(#[from] SealError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("Maildir {path}: {source}")]
    Maildir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the sealing task failed: {0}")]
    Task(String),
    #[error(transparent)]
    Notify(#[from] NotifyError),
    #[error("cannot start the poller's runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

impl From<async_imap::error::Error> for MailboxError {
    fn from(e: async_imap::error::Error) -> Self {
        MailboxError::Imap(e)
    }
}

/// A password read from a file: never printed, wiped from memory on drop.
pub struct Password(Zeroizing<String>);

impl Password {
    /// Reads `path`, dropping the trailing newline editors and `echo` add.
    pub fn read(path: &Path) -> Result<Password, MailboxError> {
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|source| {
            MailboxError::Password {
                path: path.to_owned(),
                source,
            }
        })?);
        Ok(Password(Zeroizing::new(
            text.trim_end_matches(['\r', '\n']).to_string(),
        )))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(..)")
    }
}

/// The poller's health, shared with `/healthz`. Cheap to clone.
#[derive(Clone, Default)]
pub struct Health(Arc<Mutex<HealthState>>);

/// A snapshot of the poller's health.
#[derive(Clone, Debug, Default)]
pub struct HealthState {
    /// Why the poller cannot deliver right now (no usable key, store not
    /// writable, server unreachable…), or `None` while it works.
    pub problem: Option<String>,
    /// When the mailbox was last drained completely.
    pub last_drained: Option<SystemTime>,
    /// Reports sealed since the poller started.
    pub sealed: u64,
}

impl Health {
    pub fn new() -> Health {
        Health::default()
    }

    /// The current state.
    pub fn snapshot(&self) -> HealthState {
        self.0
            .lock()
            .map(|s| s.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    /// `Ok` while the poller works, else the problem (for `/healthz`: 503).
    pub fn check(&self) -> Result<(), String> {
        match self.snapshot().problem {
            None => Ok(()),
            Some(p) => Err(format!("mailbox poller: {p}")),
        }
    }

    /// The problem in words fit for a public page (`/healthz`): no paths,
    /// host names or server replies; the details are in the log.
    pub fn public_problem(&self) -> Option<String> {
        self.snapshot().problem.map(|_| {
            "the mailbox poller cannot deliver mail right now (details in the server log)".into()
        })
    }

    fn update(&self, f: impl FnOnce(&mut HealthState)) {
        match self.0.lock() {
            Ok(mut s) => f(&mut s),
            Err(e) => f(&mut e.into_inner()),
        }
    }

    fn failed(&self, problem: &MailboxError) {
        let text = problem.to_string();
        self.update(|s| s.problem = Some(text));
    }

    fn drained(&self) {
        self.update(|s| {
            s.problem = None;
            s.last_drained = Some(SystemTime::now());
        });
    }

    fn sealed_one(&self) {
        self.update(|s| s.sealed += 1);
    }
}

impl crate::health::ServiceHealth for Health {
    fn public_problem(&self) -> Option<String> {
        Health::public_problem(self)
    }
}

/// What the poller shares with the rest of a running server; all optional.
#[derive(Clone, Default)]
pub struct Links {
    /// Announces new reports (batched, content-free); the server passes
    /// the one it runs for `[maintainers] notify`.
    pub notifier: Option<NotifierHandle>,
    /// Counters for `/metrics`: reports, bytes sealed, backlog, errors.
    pub metrics: Option<Arc<Metrics>>,
    /// Set (on SIGHUP) to reload the maintainer certificates before the
    /// next message even when `keys_dir` looks unchanged.
    pub reload_keys: Arc<AtomicBool>,
    /// Sends acknowledgements; the server passes the one the web intake
    /// uses too, so both count against one set of limits.
    pub acks: Option<Arc<ack::Acker>>,
}

/// What one run of the poller did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Reports newly sealed.
    pub sealed: u64,
    /// Messages whose report was already committed (a crash before deletion).
    pub already_sealed: u64,
    /// Messages removed from the mailbox after their report was committed.
    pub removed: u64,
    /// Messages left in place (too large, or flagged deleted by another
    /// client), each counted once per run however often it is seen.
    pub left: u64,
}

/// Whether one message was sealed now or had been before.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Sealed(ReportId),
    AlreadySealed(ReportId),
}

impl Outcome {
    pub fn id(&self) -> &ReportId {
        match self {
            Outcome::Sealed(id) | Outcome::AlreadySealed(id) => id,
        }
    }
}

/// Seals one raw message exactly once (README: "Reports by e-mail"): its ID is derived from
/// its bytes; when that report is already committed nothing is written.
/// Blocking: call it from `spawn_blocking` in async code.
pub fn seal_message(intake: &Sealing, raw: &[u8]) -> Result<(Outcome, MailFacts), MailboxError> {
    let station = &intake.station;
    let id = ReportId::for_message(station.secrets.hmac_secret(), raw);
    let mut facts = message::parse(raw, &message::ParseLimits::from_config(&station.config));
    if station.store.contains(&id)? {
        return Ok((Outcome::AlreadySealed(id), facts));
    }
    let result = (|| {
        let mut writer = intake
            .sealer
            .begin(station.store.as_ref(), id.clone(), Channel::Email)?;
        let mut reader = raw;
        writer.add_attachment(
            "original-message.eml",
            "message/rfc822",
            Role::OriginalMessage,
            &mut reader,
            station.config.limits.max_attachment_bytes,
        )?;
        crate::reply::intake::finish(
            writer,
            Some(&station.replies),
            &station.config.project_name,
            facts.body.clone(),
            facts.reporter.clone(),
            Some(facts.email.clone()),
        )
    })();
    match result {
        Ok(finished) => {
            facts.reply.code = finished.reply_code;
            Ok((Outcome::Sealed(id), facts))
        }
        // Committed by an earlier run (or concurrently): done all the same.
        Err(SealError::Store(StoreError::Exists(_))) if station.store.contains(&id)? => {
            Ok((Outcome::AlreadySealed(id), facts))
        }
        Err(e) => Err(e.into()),
    }
}

/// Opens the sealing station, failing closed without a usable key, and
/// without removing stale staging directories: the poller reopens on every
/// retry and key change, and in `serve` a web upload may be creating its
/// staging directory right then. `embargo poll` cleans up once, at start,
/// under the poller lock.
fn open_sealing(config: Config, clock: Clock) -> Result<Sealing, MailboxError> {
    Ok(Station::open(config, clock, Recovery::Keep)?.sealing()?)
}

/// Checks a `[mailbox]` section before anything connects.
fn check_config(mailbox: &Mailbox) -> Result<(), MailboxError> {
    if mailbox.kind == "maildir" {
        return Ok(());
    }
    let host = mailbox
        .host
        .as_deref()
        .ok_or_else(|| MailboxError::Config("host is required for kind = \"imap\"".into()))?;
    if mailbox.tls == crate::config::Tls::None && !is_loopback(host) {
        return Err(MailboxError::Config(format!(
            "tls = \"none\" would send the password and every report in clear text to {host}: it is only allowed for a loopback host; use \"implicit\" or \"starttls\""
        )));
    }
    if mailbox.username.is_none() || mailbox.password_file.is_none() {
        return Err(MailboxError::Config(
            "username and password_file are required for kind = \"imap\"".into(),
        ));
    }
    if let Some(folder) = mailbox.after_sealing.strip_prefix("move:")
        && (folder.is_empty() || folder == mailbox.folder)
    {
        return Err(MailboxError::Config(format!(
            "after_sealing = {:?} must name another folder than {:?}",
            mailbox.after_sealing, mailbox.folder
        )));
    }
    Ok(())
}

/// Whether `host` names this machine only (127.0.0.0/8, ::1 or `localhost`).
pub use crate::config::is_loopback_host as is_loopback;

/// Takes the poller's exclusive lock in `state_dir`; held while the file lives.
pub fn lock(state_dir: &Path) -> Result<File, MailboxError> {
    let path = state_dir.join(LOCK_FILE);
    let err = |source| MailboxError::Lock {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(state_dir).map_err(err)?;
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(err)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(MailboxError::Locked { path }),
        Err(TryLockError::Error(e)) => Err(err(e)),
    }
}

/// Everything one drain needs, shared between the sources.
struct Context {
    sealing: Arc<Sealing>,
    health: Health,
    acks: Option<Arc<ack::Acker>>,
    links: Links,
    shutdown: CancellationToken,
    summary: Summary,
    /// `keys_dir` as it was when `intake` was opened.
    keys_stamp: Option<u64>,
    clock: Clock,
}

impl Context {
    /// Reopens the intake when `keys_dir` changed (a key added, renewed or
    /// removed), so that new reports are sealed to the current set; a broken
    /// new set fails closed like a failed start.
    async fn refresh_keys(&mut self) -> Result<(), MailboxError> {
        let dir = self.sealing.station.config.keys_dir.clone();
        let stamp = tokio::task::spawn_blocking(move || crate::keys::dir_stamp(&dir))
            .await
            .map_err(|e| MailboxError::Task(e.to_string()))?;
        if stamp == self.keys_stamp && !self.links.reload_keys.swap(false, Ordering::Relaxed) {
            return Ok(());
        }
        let (config, clock) = (self.sealing.station.config.clone(), self.clock);
        let intake = tokio::task::spawn_blocking(move || open_sealing(config, clock))
            .await
            .map_err(|e| MailboxError::Task(e.to_string()))??;
        tracing::info!("maintainer certificates reloaded");
        self.sealing = Arc::new(intake);
        self.keys_stamp = stamp;
        Ok(())
    }

    /// The largest message sealed, and the setting that makes it so:
    /// `[mailbox] max_mail_bytes`, or `[limits] max_attachment_bytes` when
    /// that is smaller (the original message is sealed as an attachment).
    fn mail_limit(&self) -> (u64, &'static str) {
        let config = &self.sealing.station.config;
        let mail = config
            .mailbox
            .as_ref()
            .map_or(crate::config::DEFAULT_MAX_MAIL_BYTES, |m| m.max_mail_bytes);
        let attachment = config.limits.max_attachment_bytes;
        if attachment < mail {
            (attachment, "[limits] max_attachment_bytes")
        } else {
            (mail, "[mailbox] max_mail_bytes")
        }
    }

    /// Counts a message left in the mailbox because it is too large (once
    /// per message: the sources remember what they left).
    fn left_oversized(&mut self) {
        self.summary.left += 1;
        if let Some(m) = &self.links.metrics {
            m.mail_oversized();
        }
    }

    /// Seals `raw` on a blocking thread.
    async fn seal(
        &mut self,
        raw: Zeroizing<Vec<u8>>,
    ) -> Result<(Outcome, MailFacts), MailboxError> {
        let intake = self.sealing.clone();
        let (outcome, facts, sealed_bytes) = tokio::task::spawn_blocking(move || {
            let (outcome, facts) = seal_message(&intake, &raw)?;
            let bytes = match &outcome {
                Outcome::Sealed(id) => intake
                    .station
                    .store
                    .parts(id)
                    .map(|p| p.iter().map(|p| p.size).sum())
                    .unwrap_or(0),
                Outcome::AlreadySealed(_) => 0,
            };
            Ok::<_, MailboxError>((outcome, facts, bytes))
        })
        .await
        .map_err(|e| MailboxError::Task(e.to_string()))??;
        match &outcome {
            Outcome::Sealed(_) => {
                self.summary.sealed += 1;
                self.health.sealed_one();
                if let Some(m) = &self.links.metrics {
                    m.report_accepted(crate::metrics::Channel::Email);
                    m.bytes_sealed(sealed_bytes);
                }
            }
            Outcome::AlreadySealed(_) => self.summary.already_sealed += 1,
        }
        Ok((outcome, facts))
    }

    /// After the message is gone from the mailbox: the maintainers' notice
    /// and the reporter's acknowledgement for a report sealed now (never
    /// again for one found already sealed).
    async fn after_removal(&mut self, outcome: &Outcome, facts: &MailFacts) {
        self.summary.removed += 1;
        if let Outcome::Sealed(id) = outcome {
            if let Some(notifier) = &self.links.notifier {
                notifier.report_arrived();
            }
            if let Some(acks) = &self.acks {
                acks.acknowledge(id, &facts.reply).await;
            }
        }
    }
}

/// Runs the poller until `shutdown` (or, with `once`, until the mailbox is
/// drained). Failures are retried with backoff in long-running mode and
/// shown in `health`; with `once` the first failure is returned. New
/// reports are announced through `links.notifier` when there is one.
pub async fn run(
    config: Config,
    clock: Clock,
    once: bool,
    health: Health,
    shutdown: CancellationToken,
    links: Links,
) -> Result<Summary, MailboxError> {
    let mailbox = config.mailbox.clone().ok_or(MailboxError::NotConfigured)?;
    check_config(&mailbox)?;
    let _lock = lock(&config.state_dir)?;
    let acks = match (&links.acks, &config.smtp) {
        (Some(acks), _) => Some(acks.clone()),
        (None, Some(smtp)) => Some(Arc::new(ack::Acker::new(smtp, &config)?)),
        (None, None) => None,
    };
    let mut summary = Summary::default();
    let mut backoff = BACKOFF_START;
    loop {
        let config = config.clone();
        let keys_stamp = crate::keys::dir_stamp(&config.keys_dir);
        let opened = tokio::task::spawn_blocking(move || open_sealing(config, clock))
            .await
            .map_err(|e| MailboxError::Task(e.to_string()))?;
        let result = match opened {
            Ok(intake) => {
                let mut ctx = Context {
                    sealing: Arc::new(intake),
                    health: health.clone(),
                    acks: acks.clone(),
                    links: links.clone(),
                    shutdown: shutdown.clone(),
                    summary: Summary::default(),
                    keys_stamp,
                    clock,
                };
                let result = if mailbox.kind == "maildir" {
                    maildir::run(&mut ctx, &mailbox, once).await
                } else {
                    imap::run(&mut ctx, &mailbox, once).await
                };
                summary.sealed += ctx.summary.sealed;
                summary.already_sealed += ctx.summary.already_sealed;
                summary.removed += ctx.summary.removed;
                summary.left += ctx.summary.left;
                result
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => return Ok(summary),
            Err(e) => {
                health.failed(&e);
                if let Some(m) = &links.metrics {
                    m.poller_error();
                }
                if once {
                    return Err(e);
                }
                tracing::warn!(retry_in_s = backoff.as_secs(), "mailbox poller: {e}");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.cancelled() => return Ok(summary),
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// For `embargo serve`: starts the poller in the background when
/// `[mailbox]` is configured, linked to the server's notifier and metrics. Returns its health (for `/healthz`) and task;
/// the task ends after `shutdown` is cancelled. `None` without `[mailbox]`.
pub fn spawn(
    config: Config,
    clock: Clock,
    shutdown: CancellationToken,
    links: Links,
) -> Option<(
    Health,
    tokio::task::JoinHandle<Result<Summary, MailboxError>>,
)> {
    config.mailbox.as_ref()?;
    let health = Health::new();
    let task_health = health.clone();
    let task = tokio::spawn(async move {
        let result = run(config, clock, false, task_health.clone(), shutdown, links).await;
        if let Err(e) = &result {
            tracing::error!("mailbox poller stopped: {e}");
            task_health.failed(e);
        }
        result
    });
    Some((health, task))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for h in [
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "[::1]",
            "localhost",
            "LOCALHOST",
        ] {
            assert!(is_loopback(h), "{h}");
        }
        for h in [
            "10.0.0.1",
            "imap.example.org",
            "localhost.example.org",
            "0.0.0.0",
        ] {
            assert!(!is_loopback(h), "{h}");
        }
    }

    #[test]
    fn password_trims_newline_only() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pw");
        std::fs::write(&p, " s3cret \r\n").unwrap();
        assert_eq!(Password::read(&p).unwrap().expose(), " s3cret ");
        assert_eq!(format!("{:?}", Password::read(&p).unwrap()), "Password(..)");
    }

    #[test]
    fn second_lock_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock(dir.path()).unwrap();
        assert!(matches!(lock(dir.path()), Err(MailboxError::Locked { .. })));
        drop(first);
        lock(dir.path()).unwrap();
    }

    #[test]
    fn plain_imap_only_to_loopback() {
        let mut m: Mailbox = toml::from_str(
            "host = \"imap.example.org\"\ntls = \"none\"\nusername = \"u\"\npassword_file = \"p\"",
        )
        .unwrap();
        assert!(
            check_config(&m)
                .unwrap_err()
                .to_string()
                .contains("loopback")
        );
        m.host = Some("127.0.0.1".into());
        check_config(&m).unwrap();
    }
}
