//! Content-free notices to the `[maintainers] notify` targets: "N new
//! reports arrived", "N new case events" (with `notify_case_events`) and
//! key alerts, by mail (`mailto:` through `[smtp]`) and
//! by webhook (`https://`, a JSON body from `notify_webhook_body`).
//!
//! Intake never waits for a notice: [`NotifierHandle::report_arrived`] only
//! adds one to a counter and wakes the background task. The task sends at
//! most one report notice per `notify_window`, stating how many reports
//! arrived, and retries failed deliveries with backoff. A notice says how
//! many and nothing else: no ID, title, reporter, size or address.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lettre::message::Mailbox as Address;
use lettre::message::header::ContentType;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Smtp, WebhookTemplate};
use crate::metrics::Metrics;

/// Attempts per notice and target before it is given up (and logged).
pub const MAX_ATTEMPTS: u32 = 8;
/// Wait before the first retry; doubled after each failure, up to [`RETRY_MAX`].
pub const RETRY_FIRST: Duration = Duration::from_secs(1);
/// Longest wait between two attempts.
pub const RETRY_MAX: Duration = Duration::from_secs(120);
/// Longest one delivery (an SMTP exchange or an HTTP request) may take.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// On shutdown, how long the last notice may still take.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// A `[maintainers] notify` or `[smtp]` setting that cannot work.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotifyError {
    #[error("[maintainers] notify {target:?}: {reason}")]
    Target { target: String, reason: String },
    #[error("[smtp]: {0}")]
    Smtp(String),
    #[error("cannot read [smtp] password_file {path}: {source}")]
    Password {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot build the HTTP client for webhooks: {0}")]
    Http(#[source] reqwest::Error),
}

/// Where notices go.
#[derive(Clone, Debug)]
enum Target {
    Mail(Address),
    Webhook(reqwest::Url),
}

impl Target {
    /// How the target is named in logs: never the mail address or a
    /// webhook's path and query (which often hold a secret).
    fn describe(&self, index: usize) -> String {
        match self {
            Target::Mail(_) => format!("notify[{index}] (mailto)"),
            Target::Webhook(url) => format!(
                "notify[{index}] ({}://{})",
                url.scheme(),
                url.host_str().unwrap_or("?")
            ),
        }
    }
}

/// Parses the `notify` list: `mailto:ADDRESS`, `https://…`, or `http://…`
/// to a loopback host only (for tests and a local relay).
fn targets(config: &Config) -> Result<Vec<Target>, NotifyError> {
    let mut out = Vec::new();
    for raw in &config.maintainers.notify {
        let bad = |reason: String| NotifyError::Target {
            target: raw.clone(),
            reason,
        };
        if let Some(addr) = raw.strip_prefix("mailto:") {
            if config.smtp.is_none() {
                return Err(bad("mailto: notices need an [smtp] section".into()));
            }
            let addr = addr
                .parse::<Address>()
                .map_err(|e| bad(format!("not a mail address ({e})")))?;
            out.push(Target::Mail(addr));
            continue;
        }
        let url = reqwest::Url::parse(raw).map_err(|e| bad(format!("not a URL ({e})")))?;
        match url.scheme() {
            "https" => {}
            "http" if url.host_str().is_some_and(crate::config::is_loopback_host) => {}
            "http" => {
                return Err(bad(
                    "plain http:// is only allowed to a loopback host: use https://".into(),
                ));
            }
            other => {
                return Err(bad(format!(
                    "unsupported scheme {other:?}: use mailto: or https://"
                )));
            }
        }
        out.push(Target::Webhook(url));
    }
    Ok(out)
}

/// Wraps each line of `text` at spaces to at most `width` columns where it
/// can, so the mail stays 7-bit plain text instead of quoted-printable.
fn wrap(text: &str, width: usize) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for line in text.lines() {
        let mut column = 0;
        for word in line.split(' ') {
            if column > 0 && column + 1 + word.len() > width {
                out.push('\n');
                column = 0;
            } else if column > 0 {
                out.push(' ');
                column += 1;
            }
            out.push_str(word);
            column += word.len();
        }
        out.push('\n');
    }
    out
}

/// One notice, the same for every target.
#[derive(Clone, Debug)]
struct Notice {
    /// `reports` or `keys`.
    kind: &'static str,
    count: u64,
    subject: String,
    text: String,
}

/// What a notice is sent with.
struct Sender {
    targets: Vec<Target>,
    mail: Option<(AsyncSmtpTransport<Tokio1Executor>, Address)>,
    http: reqwest::Client,
    project: String,
    body_template: WebhookTemplate,
    window: Duration,
    metrics: Option<Arc<Metrics>>,
}

fn smtp_transport(
    smtp: &Smtp,
) -> Result<(AsyncSmtpTransport<Tokio1Executor>, Address), NotifyError> {
    crate::smtp::transport(smtp, SEND_TIMEOUT).map_err(|e| match e {
        crate::smtp::SmtpError::Password { path, source } => NotifyError::Password { path, source },
        other => NotifyError::Smtp(other.to_string()),
    })
}

impl Sender {
    fn new(config: &Config, metrics: Option<Arc<Metrics>>) -> Result<Sender, NotifyError> {
        let targets = targets(config)?;
        let mail = match &config.smtp {
            Some(smtp) if targets.iter().any(|t| matches!(t, Target::Mail(_))) => {
                Some(smtp_transport(smtp)?)
            }
            _ => None,
        };
        let http = reqwest::Client::builder()
            .timeout(SEND_TIMEOUT)
            // A redirect could lead a notice to plain http or elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("embargo/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(NotifyError::Http)?;
        Ok(Sender {
            targets,
            mail,
            http,
            project: config.project_name.clone(),
            body_template: config.maintainers.notify_webhook_body.clone(),
            window: config.maintainers.notify_window.0,
            metrics,
        })
    }

    fn reports_notice(&self, count: u64) -> Notice {
        let window = crate::config::Span(self.window);
        let reports = if count == 1 { "report" } else { "reports" };
        Notice {
            kind: "reports",
            count,
            subject: format!("[{}] {count} new vulnerability {reports}", self.project),
            text: format!(
                "{count} new vulnerability {reports} arrived at the {} intake (notices are sent at most once every {window}). \
                 They are sealed to the maintainers' keys: fetch them with `embargo fetch` and read them with `embargo decrypt`. \
                 Notices never carry report content.",
                self.project
            ),
        }
    }

    fn events_notice(&self, count: u64) -> Notice {
        let window = crate::config::Span(self.window);
        let events = if count == 1 { "event" } else { "events" };
        Notice {
            kind: "case-events",
            count,
            subject: format!("[{}] {count} new case {events}", self.project),
            text: format!(
                "Maintainers recorded {count} new case {events} at the {} intake (notices are sent at most once every {window}). \
                 Run `embargo fetch` to get them, then `embargo list` or `embargo case show ID`. \
                 Notices never carry case content.",
                self.project
            ),
        }
    }

    fn messages_notice(&self, count: u64) -> Notice {
        let window = crate::config::Span(self.window);
        let messages = if count == 1 { "message" } else { "messages" };
        Notice {
            kind: "reporter-messages",
            count,
            subject: format!("[{}] {count} new {messages} from reporters", self.project),
            text: format!(
                "Reporters sent {count} new {messages} through the status page of the {} intake (notices are sent at most once every {window}). \
                 Run `embargo fetch`: `embargo list` marks the cases REPLY WAITING, `embargo case show ID` shows them. \
                 Notices never carry case content.",
                self.project
            ),
        }
    }

    fn alert_notice(&self, alerts: &[String]) -> Notice {
        Notice {
            kind: "keys",
            count: alerts.len() as u64,
            subject: format!("[{}] maintainer key alert", self.project),
            text: alerts.join("\n"),
        }
    }

    async fn deliver_once(&self, target: &Target, notice: &Notice) -> Result<(), String> {
        match target {
            Target::Mail(to) => {
                let (transport, from) = self.mail.as_ref().ok_or("no [smtp] transport")?;
                let message = Message::builder()
                    .from(from.clone())
                    .to(to.clone())
                    .subject(notice.subject.clone())
                    .header(crate::smtp::AutoSubmitted("auto-generated".into()))
                    .header(ContentType::TEXT_PLAIN)
                    .body(wrap(&notice.text, 72))
                    .map_err(|e| format!("cannot build the mail: {e}"))?;
                transport
                    .send(message)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
            Target::Webhook(url) => {
                let body =
                    self.body_template
                        .fill(&self.project, notice.count, notice.kind, &notice.text);
                let response = self
                    .http
                    .post(url.clone())
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body)
                    .send()
                    .await
                    // Without the URL: its path or query may be a secret.
                    .map_err(|e| e.without_url().to_string())?;
                let status = response.status();
                if status.is_success() {
                    Ok(())
                } else {
                    Err(format!("HTTP {status}"))
                }
            }
        }
    }

    /// Delivers `notice` to target `index`, retrying with backoff.
    async fn deliver(&self, index: usize, target: &Target, notice: &Notice, attempts: u32) {
        let mut wait = RETRY_FIRST;
        for attempt in 1..=attempts {
            match self.deliver_once(target, notice).await {
                Ok(()) => {
                    tracing::info!(target = %target.describe(index), kind = notice.kind, count = notice.count, "notice sent");
                    if let Some(m) = &self.metrics {
                        m.notice_sent();
                    }
                    return;
                }
                Err(e) if attempt < attempts => {
                    tracing::warn!(target = %target.describe(index), attempt, "notice not delivered, retrying in {}s: {e}", wait.as_secs());
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(RETRY_MAX);
                }
                Err(e) => {
                    tracing::error!(target = %target.describe(index), kind = notice.kind, count = notice.count, "notice given up after {attempts} attempts: {e}");
                    if let Some(m) = &self.metrics {
                        m.notice_failed();
                    }
                }
            }
        }
    }

    /// Sends `notice` to every target at once.
    async fn send(&self, notice: &Notice, attempts: u32) {
        let all = self
            .targets
            .iter()
            .enumerate()
            .map(|(i, t)| self.deliver(i, t, notice, attempts));
        futures_util::future::join_all(all).await;
    }
}

struct Shared {
    pending: AtomicU64,
    /// Case events stored since the last notice.
    events: AtomicU64,
    /// Reporters' follow-ups stored since the last notice.
    messages: AtomicU64,
    alerts: Mutex<Vec<String>>,
    wake: Notify,
}

/// Tells the notifier that something happened; cheap to clone, never blocks.
#[derive(Clone)]
pub struct NotifierHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for NotifierHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifierHandle")
            .field("pending", &self.pending())
            .finish()
    }
}

impl NotifierHandle {
    /// One report was committed. Call after the 2xx / after the mail was
    /// sealed; it only bumps a counter.
    pub fn report_arrived(&self) {
        self.shared.pending.fetch_add(1, Ordering::Relaxed);
        self.shared.wake.notify_one();
    }

    /// One case event was stored (counted only when
    /// `[maintainers] notify_case_events` is on).
    pub fn case_event(&self) {
        self.shared.events.fetch_add(1, Ordering::Relaxed);
        self.shared.wake.notify_one();
    }

    /// A reporter sent a follow-up from the status page (always announced:
    /// someone is waiting for an answer).
    pub fn reporter_message(&self) {
        self.shared.messages.fetch_add(1, Ordering::Relaxed);
        self.shared.wake.notify_one();
    }

    /// Queues one key alert line (content-free: a fingerprint and what is
    /// wrong); it is sent without waiting for the window.
    pub fn alert(&self, line: String) {
        match self.shared.alerts.lock() {
            Ok(mut a) => a.push(line),
            Err(poisoned) => poisoned.into_inner().push(line),
        }
        self.shared.wake.notify_one();
    }

    /// Reports and case events counted but not yet announced.
    pub fn pending(&self) -> u64 {
        self.shared.pending.load(Ordering::Relaxed)
            + self.shared.events.load(Ordering::Relaxed)
            + self.shared.messages.load(Ordering::Relaxed)
    }

    fn take_alerts(&self) -> Vec<String> {
        match self.shared.alerts.lock() {
            Ok(mut a) => std::mem::take(&mut *a),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        }
    }
}

/// The background task that sends notices.
pub struct Notifier;

impl Notifier {
    /// Checks the `notify` targets (and `[smtp]` when a `mailto:` needs it)
    /// and starts the task on the current Tokio runtime. With no targets the
    /// handle still counts, and nothing is sent. The task ends when
    /// `shutdown` is cancelled, after one last attempt (bounded by
    /// [`FLUSH_TIMEOUT`]) to announce reports still pending.
    pub fn spawn(
        config: &Config,
        metrics: Option<Arc<Metrics>>,
        shutdown: CancellationToken,
    ) -> Result<(NotifierHandle, JoinHandle<()>), NotifyError> {
        let sender = Sender::new(config, metrics)?;
        let handle = NotifierHandle {
            shared: Arc::new(Shared {
                pending: AtomicU64::new(0),
                events: AtomicU64::new(0),
                messages: AtomicU64::new(0),
                alerts: Mutex::new(Vec::new()),
                wake: Notify::new(),
            }),
        };
        let task = tokio::spawn(run(sender, handle.clone(), shutdown));
        Ok((handle, task))
    }
}

/// Sends the key alerts queued so far as one notice, if there are any.
async fn send_alerts(sender: &Sender, handle: &NotifierHandle, shutdown: &CancellationToken) {
    let alerts = handle.take_alerts();
    if !alerts.is_empty() {
        let notice = sender.alert_notice(&alerts);
        tokio::select! {
            () = sender.send(&notice, MAX_ATTEMPTS) => {}
            () = shutdown.cancelled() => {}
        }
    }
}

async fn run(sender: Sender, handle: NotifierHandle, shutdown: CancellationToken) {
    if sender.targets.is_empty() {
        return;
    }
    loop {
        // Wait for something to say (a permit stored by notify_one is not lost).
        while handle.pending() == 0
            && handle
                .shared
                .alerts
                .lock()
                .map(|a| a.is_empty())
                .unwrap_or(true)
        {
            tokio::select! {
                () = handle.shared.wake.notified() => {}
                () = shutdown.cancelled() => return,
            }
        }
        send_alerts(&sender, &handle, &shutdown).await;
        if handle.pending() > 0 {
            // Collect for one window: a burst becomes one notice, and two
            // report notices are always at least a window apart. Key
            // alerts arriving meanwhile do not wait for the window.
            let window_end = tokio::time::Instant::now() + sender.window;
            let stopping = loop {
                tokio::select! {
                    () = tokio::time::sleep_until(window_end) => break false,
                    () = shutdown.cancelled() => break true,
                    () = handle.shared.wake.notified() => {
                        send_alerts(&sender, &handle, &shutdown).await;
                    }
                }
            };
            let reports = handle.shared.pending.swap(0, Ordering::Relaxed);
            let events = handle.shared.events.swap(0, Ordering::Relaxed);
            let messages = handle.shared.messages.swap(0, Ordering::Relaxed);
            let notices = [
                (reports > 0).then(|| sender.reports_notice(reports)),
                (events > 0).then(|| sender.events_notice(events)),
                (messages > 0).then(|| sender.messages_notice(messages)),
            ];
            for notice in notices.into_iter().flatten() {
                if stopping {
                    let _ = tokio::time::timeout(FLUSH_TIMEOUT, sender.send(&notice, 1)).await;
                } else {
                    tokio::select! {
                        () = sender.send(&notice, MAX_ATTEMPTS) => {}
                        () = shutdown.cancelled() => {}
                    }
                }
            }
        }
        if shutdown.is_cancelled() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::parse(text).unwrap()
    }

    #[test]
    fn webhook_bodies_are_json_and_values_cannot_inject() {
        let body = WebhookTemplate(crate::config::DEFAULT_WEBHOOK_BODY.into()).fill(
            "A \"quoted\" {count}",
            3,
            "reports",
            "line\nbreak",
        );
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["count"], 3);
        assert_eq!(v["project"], "A \"quoted\" {count}");
        assert_eq!(v["text"], "line\nbreak");
        assert_eq!(
            WebhookTemplate("{x} {{count}}".into()).fill("p", 2, "k", "t"),
            "{x} {2}"
        );
    }

    #[test]
    fn mail_text_is_wrapped() {
        let text = "word ".repeat(40);
        let wrapped = wrap(text.trim_end(), 72);
        assert!(wrapped.lines().all(|l| l.len() <= 72), "{wrapped}");
        assert_eq!(wrapped.split_whitespace().count(), 40);
        assert_eq!(wrap("a\nb", 72), "a\nb\n");
    }

    #[test]
    fn targets_are_checked() {
        let smtp =
            "[smtp]\nhost = \"127.0.0.1\"\nport = 2525\ntls = \"none\"\nfrom = \"s@example.org\"\n";
        let ok = config(&format!(
            "[maintainers]\nnotify = [\"mailto:a@example.org\", \"https://hooks.example.org/x\", \"http://127.0.0.1:9/x\"]\n{smtp}"
        ));
        assert_eq!(targets(&ok).unwrap().len(), 3);
        for (target, with_smtp, why) in [
            ("mailto:a@example.org", false, "[smtp]"),
            ("http://hooks.example.org/x", false, "loopback"),
            ("ftp://127.0.0.1/x", false, "scheme"),
            ("mailto:not an address", true, "address"),
        ] {
            let text = format!(
                "[maintainers]\nnotify = [\"{target}\"]\n{}",
                if with_smtp { smtp } else { "" }
            );
            // Refused when the file is read, before anything starts...
            let err = Config::parse(&text).unwrap_err();
            assert!(err.contains(why), "{target}: {err}");
            // ...and again by the notifier, for configs built in code.
            let mut built = if with_smtp {
                config(smtp)
            } else {
                Config::default()
            };
            built.maintainers.notify = vec![target.to_string()];
            let err = targets(&built).unwrap_err().to_string();
            assert!(err.contains(why), "{target}: {err}");
        }
        let mut remote_plain = config(
            "[maintainers]\nnotify = [\"mailto:a@example.org\"]\n[smtp]\nhost = \"127.0.0.1\"\ntls = \"none\"\nfrom = \"s@example.org\"",
        );
        if let Some(smtp) = remote_plain.smtp.as_mut() {
            smtp.host = "smtp.example.org".into();
        }
        assert!(
            Sender::new(&remote_plain, None)
                .err()
                .unwrap()
                .to_string()
                .contains("loopback")
        );
    }

    #[test]
    fn a_bad_template_or_window_is_refused_by_name() {
        let err = Config::parse("[maintainers]\nnotify_webhook_body = \"{text}\"").unwrap_err();
        assert!(err.contains("notify_webhook_body"), "{err}");
        let err = Config::parse("[maintainers]\nnotify_window = \"0s\"").unwrap_err();
        assert!(err.contains("notify_window"), "{err}");
        let c = Config::parse("[maintainers]\nnotify_window = \"1m\"").unwrap();
        assert_eq!(c.maintainers.notify_window.0, Duration::from_secs(60));
    }

    #[tokio::test]
    async fn without_targets_reports_are_only_counted() {
        let (handle, task) =
            Notifier::spawn(&Config::default(), None, CancellationToken::new()).unwrap();
        handle.report_arrived();
        handle.report_arrived();
        assert_eq!(handle.pending(), 2);
        task.await.unwrap();
    }
}
