//! Mail to reporters over SMTP (`[smtp]`): the acknowledgement (with the
//! reply code) after a report is committed (for mail, once its message is
//! removed; for the form and the API, when the reporter left an address),
//! and the content-free "there is a new reply" notice a maintainer's
//! command asks for. They never quote the report; failures are logged and
//! never affect sealing. The web intake and the mailbox poller share one
//! [`Acker`], so one set of limits holds. (Notices to maintainers are
//! [`crate::notify`]'s.)
//!
//! A `From` address is trivially forged, so an acknowledgement is
//! backscatter unless the receiving server vouched for the sender: by
//! default only mail whose `Authentication-Results` shows a DMARC or an
//! aligned SPF pass is answered ([`crate::mailbox::message::sender_authenticated`]),
//! at most [`ACKS_PER_SENDER`] times per hour per address and
//! `[mailbox] max_acks_per_hour` in all. The global count survives restarts
//! in `state_dir` (times only, never addresses).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lettre::message::Mailbox as Address;
use lettre::message::header::ContentType;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::{Config, Policy, Smtp};
use crate::id::ReportId;
use crate::mailbox::MailboxError;
use crate::mailbox::message::{ReplyFacts, sender_authenticated};

/// Acknowledgements sent to one sender address per [`ACK_WINDOW`]; more
/// reports from it are sealed as usual but not answered, so the intake
/// cannot be used to flood a (possibly forged) address.
pub const ACKS_PER_SENDER: usize = 3;
/// The window of [`ACKS_PER_SENDER`].
pub const ACK_WINDOW: Duration = Duration::from_secs(3600);
/// Longest an SMTP exchange may take.
const SMTP_TIMEOUT: Duration = Duration::from_secs(60);

const ACK_TEMPLATE: &str = include_str!("../templates/ack.txt");
const REPLY_TEMPLATE: &str = include_str!("../templates/new-reply.txt");

/// Where reporters read replies: `public_url`'s `/status`, else a pointer
/// to the page the reporter submitted on.
fn status_url(config: &Config) -> String {
    match config.public_base() {
        Some(base) => format!("{base}/status"),
        None => "the status page (/status) of the site you reported on".into(),
    }
}

/// File in `state_dir` holding the send times (Unix seconds, one a line)
/// of the acknowledgements of the last hour.
pub const ACK_TIMES_FILE: &str = "ack-times";

/// Sends acknowledgements.
pub struct Acker {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Address,
    project: String,
    policy: Policy,
    policy_url: Option<String>,
    status_url: String,
    sent: Mutex<HashMap<String, Vec<Instant>>>,
    requires_auth: bool,
    authserv_id: Option<String>,
    per_hour: usize,
    /// Send times of the last hour, for `per_hour`; kept in `times_file`.
    times: Mutex<Vec<u64>>,
    times_file: PathBuf,
}

impl Acker {
    pub fn new(smtp: &Smtp, config: &Config) -> Result<Acker, MailboxError> {
        let (transport, from) = crate::smtp::transport(smtp, SMTP_TIMEOUT)
            .map_err(|e| MailboxError::SmtpConfig(e.to_string()))?;
        let mailbox = config.mailbox.as_ref();
        let times_file = config.state_dir.join(ACK_TIMES_FILE);
        let times = read_times(&times_file, unix_now());
        Ok(Acker {
            requires_auth: mailbox.is_none_or(|m| m.ack_requires_auth),
            authserv_id: mailbox.and_then(|m| m.ack_authserv_id.clone()),
            per_hour: mailbox.map_or(crate::config::DEFAULT_MAX_ACKS_PER_HOUR, |m| {
                m.max_acks_per_hour
            }) as usize,
            times: Mutex::new(times),
            times_file,
            transport,
            from,
            project: config.project_name.clone(),
            policy: config.policy.clone(),
            policy_url: config.policy_url.clone(),
            status_url: status_url(config),
            sent: Mutex::new(HashMap::new()),
        })
    }

    /// After a report was committed and its message removed: the reporter's
    /// acknowledgement, when one may be sent.
    pub(super) async fn acknowledge(&self, id: &ReportId, reply: &ReplyFacts) {
        match self.acknowledgement(id, reply) {
            Ok(Some(message)) => match self.transport.send(message).await {
                Ok(_) => tracing::info!(id = %id, "acknowledgement sent"),
                Err(e) => tracing::warn!(id = %id, "acknowledgement not sent: {e}"),
            },
            Ok(None) => {}
            Err(reason) => tracing::info!(id = %id, "no acknowledgement: {reason}"),
        }
    }

    /// After a report from the form or the API was committed: the
    /// acknowledgement to the address the reporter typed, with the reply
    /// code. The address was not proven, so the same per-address and
    /// hourly limits keep the intake from flooding someone else's.
    pub async fn acknowledge_submission(
        &self,
        id: &ReportId,
        addr: &str,
        code: Option<crate::reply::ReplyCode>,
    ) {
        let reply = ReplyFacts {
            from_addr: Some(addr.to_owned()),
            code,
            ..ReplyFacts::default()
        };
        let message = self
            .allow(addr)
            .and_then(|()| compose(&self.sender(), id, &reply));
        match message {
            Ok(message) => match self.transport.send(message).await {
                Ok(_) => tracing::info!(id = %id, "acknowledgement sent"),
                Err(e) => tracing::warn!(id = %id, "acknowledgement not sent: {e}"),
            },
            Err(reason) => tracing::info!(id = %id, "no acknowledgement: {reason}"),
        }
    }

    /// A content-free "there is a new reply" mail about report `id` to
    /// `addr` (which a maintainer's command sent along, and which is not
    /// kept), under the same limits as acknowledgements.
    pub async fn announce_reply(&self, id: &ReportId, addr: &str) -> Result<(), String> {
        self.allow(addr)?;
        let to: Address = addr
            .parse()
            .map_err(|_| "not an e-mail address".to_string())?;
        let body = fill(
            REPLY_TEMPLATE,
            &[
                ("project", &self.project),
                ("id", id.as_str()),
                ("status_url", &self.status_url),
            ],
        );
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(format!(
                "There is a new reply on your vulnerability report to {}",
                self.project
            ))
            .header(crate::smtp::AutoSubmitted("auto-generated".into()))
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|e| format!("cannot build the message: {e}"))?;
        self.transport
            .send(message)
            .await
            .map_err(|e| format!("the SMTP server did not take it: {e}"))?;
        tracing::info!(id = %id, "new-reply notice sent");
        Ok(())
    }

    fn sender(&self) -> Sender<'_> {
        Sender {
            from: &self.from,
            project: &self.project,
            policy: &self.policy,
            policy_url: self.policy_url.as_deref(),
            status_url: &self.status_url,
        }
    }

    /// The acknowledgement for `reply`, or why none is sent.
    fn acknowledgement(
        &self,
        id: &ReportId,
        reply: &ReplyFacts,
    ) -> Result<Option<Message>, String> {
        if let Some(reason) = reply.no_reply_reason {
            return Err(format!("not answering automatically ({reason})"));
        }
        let Some(addr) = &reply.from_addr else {
            return Err("no usable From".into());
        };
        if self.requires_auth
            && let Err(why) = sender_authenticated(reply, self.authserv_id.as_deref())
        {
            return Err(format!(
                "the sender is not authenticated ({why}), so the From address may be forged; set [mailbox] ack_requires_auth = false to answer anyway"
            ));
        }
        self.allow(addr)?;
        compose(&self.sender(), id, reply).map(Some)
    }

    /// Counts one acknowledgement to `addr`, or says which limit it is over.
    fn allow(&self, addr: &str) -> Result<(), String> {
        let now = Instant::now();
        let mut sent = self.sent.lock().unwrap_or_else(|e| e.into_inner());
        sent.retain(|_, times| {
            times.retain(|t| now.duration_since(*t) < ACK_WINDOW);
            !times.is_empty()
        });
        let per_sender = sent.entry(addr.to_ascii_lowercase()).or_default();
        if per_sender.len() >= ACKS_PER_SENDER {
            return Err(format!(
                "more than {ACKS_PER_SENDER} acknowledgements to this sender within the hour"
            ));
        }
        let unix = unix_now();
        let mut times = self.times.lock().unwrap_or_else(|e| e.into_inner());
        times.retain(|t| unix.saturating_sub(*t) < ACK_WINDOW.as_secs() && *t <= unix);
        if times.len() >= self.per_hour {
            return Err(format!(
                "{} acknowledgements were sent within the hour, the most [mailbox] max_acks_per_hour allows",
                self.per_hour
            ));
        }
        per_sender.push(now);
        times.push(unix);
        if let Err(e) = write_times(&self.times_file, &times) {
            // The cap still holds in memory; only a restart would forget it.
            tracing::warn!(
                file = %self.times_file.display(),
                "cannot record the acknowledgement count: {e}"
            );
        }
        Ok(())
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The send times of the last hour recorded in `path` (none if unreadable).
fn read_times(path: &Path, now: u64) -> Vec<u64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse::<u64>().ok())
        .filter(|t| *t <= now && now - t < ACK_WINDOW.as_secs())
        .collect()
}

/// Replaces `path` with `times` (write to a temporary name, rename).
fn write_times(path: &Path, times: &[u64]) -> std::io::Result<()> {
    let text: String = times.iter().map(|t| format!("{t}\n")).collect();
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// Who acknowledges, and the policy the acknowledgement quotes.
pub struct Sender<'a> {
    pub from: &'a Address,
    pub project: &'a str,
    pub policy: &'a Policy,
    pub policy_url: Option<&'a str>,
    pub status_url: &'a str,
}

/// The acknowledgement of report `id` to the sender `reply` describes. Every
/// value taken from the reporter's message (address, Message-ID,
/// References) went through [`crate::mailbox::message::parse`]; anything lettre does
/// not accept as an address means no reply.
pub fn compose(sender: &Sender<'_>, id: &ReportId, reply: &ReplyFacts) -> Result<Message, String> {
    let Some(addr) = &reply.from_addr else {
        return Err("no usable From".into());
    };
    let to: Address = addr.parse().map_err(|_| "no usable From".to_string())?;
    let policy = sender.policy;
    let fix = |s: &str| {
        policy
            .fix_deadline(s)
            .map(|d| d.to_string())
            .unwrap_or_else(|| "(no deadline)".into())
    };
    let policy_line = match sender.policy_url {
        Some(url) => format!("\nOur security policy: {url}\n"),
        None => String::new(),
    };
    let body = fill(
        ACK_TEMPLATE,
        &[
            ("project", sender.project),
            ("id", id.as_str()),
            ("acknowledge_within", &policy.acknowledge_within.to_string()),
            ("assess_within", &policy.assess_within.to_string()),
            (
                "status_update_within",
                &policy.status_update_within.to_string(),
            ),
            ("fix_critical", &fix("critical")),
            ("fix_high", &fix("high")),
            ("fix_medium", &fix("medium")),
            ("fix_low", &fix("low")),
            ("policy", &policy_line),
            ("reply", &reply_section(reply, sender.status_url)),
        ],
    );
    let mut builder = Message::builder()
        .from(sender.from.clone())
        .to(to)
        .subject(format!(
            "Your vulnerability report to {} was received: {id}",
            sender.project
        ))
        .header(crate::smtp::AutoSubmitted("auto-replied".into()))
        .header(ContentType::TEXT_PLAIN);
    if let Some(mid) = &reply.message_id {
        builder = builder.in_reply_to(mid.clone());
        let references = match &reply.references {
            Some(r) => format!("{r} {mid}"),
            None => mid.clone(),
        };
        builder = builder.references(references);
    }
    builder
        .body(body)
        .map_err(|e| format!("cannot build the message: {e}"))
}

/// The reply code paragraph, when the report has a code.
fn reply_section(reply: &ReplyFacts, status_url: &str) -> String {
    match &reply.code {
        Some(code) => format!(
            "\nYour reply code, shown only here (we cannot send it again):\n\n    {}\n\nKeep it: with it you can read the maintainers' replies and answer\nthem at {status_url}.\n",
            code.display().as_str()
        ),
        None => String::new(),
    }
}

/// Replaces each `{name}` in `template`.
fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = template.to_string();
    for (name, value) in values {
        out = out.replace(&format!("{{{name}}}"), value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An Acker with its state in `dir`; `mailbox` is extra `[mailbox]` text.
    fn acker_in(dir: &Path, mailbox: &str) -> Acker {
        let config = Config::parse(&format!(
            "state_dir = {:?}\npolicy_url = \"https://example.org/sec\"\n[smtp]\nhost = \"127.0.0.1\"\nport = 2525\ntls = \"none\"\nfrom = \"Intake <intake@example.org>\"\n[mailbox]\nkind = \"maildir\"\n{mailbox}",
            dir.display().to_string()
        ))
        .unwrap();
        Acker::new(config.smtp.as_ref().unwrap(), &config).unwrap()
    }

    /// Facts of a mail from `addr` that the receiving server authenticated.
    fn passing(addr: &str) -> ReplyFacts {
        let domain = addr.rsplit_once('@').unwrap().1;
        ReplyFacts {
            from_addr: Some(addr.into()),
            auth_results: vec![format!("mx.example.org; dmarc=pass header.from={domain}")],
            ..Default::default()
        }
    }

    // lettre's pool needs a Tokio runtime, even when nothing is sent.
    #[tokio::test]
    async fn acknowledgement_has_id_and_policy_and_threading() {
        let dir = tempfile::tempdir().unwrap();
        let a = acker_in(dir.path(), "");
        let id = ReportId::random();
        let reply = ReplyFacts {
            message_id: Some("<m1@example.org>".into()),
            references: Some("<m0@example.org>".into()),
            ..passing("r@example.org")
        };
        let m = a.acknowledgement(&id, &reply).unwrap().unwrap();
        let text = String::from_utf8(m.formatted()).unwrap();
        assert!(text.contains(id.as_str()), "{text}");
        assert!(text.contains("In-Reply-To: <m1@example.org>"), "{text}");
        assert!(
            text.contains("References: <m0@example.org> <m1@example.org>"),
            "{text}"
        );
        assert!(text.contains("Auto-Submitted: auto-replied"), "{text}");
        assert!(
            text.contains("within 2d") && text.contains("https://example.org/sec"),
            "{text}"
        );
        assert!(!text.contains('{'), "unfilled placeholder: {text}");
    }

    // lettre's pool needs a Tokio runtime, even when nothing is sent.
    #[tokio::test]
    async fn rate_limited_per_sender() {
        let dir = tempfile::tempdir().unwrap();
        let a = acker_in(dir.path(), "");
        let reply = passing("r@example.org");
        for _ in 0..ACKS_PER_SENDER {
            assert!(
                a.acknowledgement(&ReportId::random(), &reply)
                    .unwrap()
                    .is_some()
            );
        }
        assert!(a.acknowledgement(&ReportId::random(), &reply).is_err());
        let other = passing("R2@example.org");
        assert!(a.acknowledgement(&ReportId::random(), &other).is_ok());
    }

    // lettre's pool needs a Tokio runtime, even when nothing is sent.
    #[tokio::test]
    async fn unauthenticated_senders_get_no_acknowledgement() {
        let dir = tempfile::tempdir().unwrap();
        let a = acker_in(dir.path(), "");
        let forged = ReplyFacts {
            from_addr: Some("victim@example.org".into()),
            ..Default::default()
        };
        let err = a.acknowledgement(&ReportId::random(), &forged).unwrap_err();
        assert!(
            err.contains("not authenticated") && err.contains("ack_requires_auth"),
            "{err}"
        );
        // Not counted against the sender or the hour.
        assert!(a.times.lock().unwrap().is_empty());
        let open = acker_in(dir.path(), "ack_requires_auth = false");
        assert!(
            open.acknowledgement(&ReportId::random(), &forged)
                .unwrap()
                .is_some()
        );
    }

    // lettre's pool needs a Tokio runtime, even when nothing is sent.
    #[tokio::test]
    async fn the_hourly_cap_is_global_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let a = acker_in(dir.path(), "max_acks_per_hour = 2");
        for n in 0..2 {
            let reply = passing(&format!("r{n}@example.org"));
            assert!(
                a.acknowledgement(&ReportId::random(), &reply)
                    .unwrap()
                    .is_some()
            );
        }
        let err = a
            .acknowledgement(&ReportId::random(), &passing("r9@example.org"))
            .unwrap_err();
        assert!(err.contains("max_acks_per_hour"), "{err}");
        let recorded = std::fs::read_to_string(dir.path().join(ACK_TIMES_FILE)).unwrap();
        assert_eq!(recorded.lines().count(), 2, "{recorded}");
        assert!(
            !recorded.contains('@'),
            "addresses must not be stored: {recorded}"
        );
        drop(a);
        let again = acker_in(dir.path(), "max_acks_per_hour = 2");
        assert!(
            again
                .acknowledgement(&ReportId::random(), &passing("r8@example.org"))
                .is_err()
        );
        // Times older than the hour no longer count.
        let old = unix_now() - ACK_WINDOW.as_secs() - 5;
        std::fs::write(dir.path().join(ACK_TIMES_FILE), format!("{old}\n{old}\n")).unwrap();
        let later = acker_in(dir.path(), "max_acks_per_hour = 2");
        assert!(
            later
                .acknowledgement(&ReportId::random(), &passing("r7@example.org"))
                .is_ok()
        );
    }

    // lettre's pool needs a Tokio runtime, even when nothing is sent.
    #[tokio::test]
    async fn plain_smtp_only_to_loopback() {
        // Config::parse refuses this already; Acker checks it again.
        let mut config =
            Config::parse("[smtp]\nhost = \"127.0.0.1\"\ntls = \"none\"\nfrom = \"i@example.org\"")
                .unwrap();
        if let Some(smtp) = config.smtp.as_mut() {
            smtp.host = "smtp.example.org".into();
        }
        assert!(
            Acker::new(config.smtp.as_ref().unwrap(), &config)
                .err()
                .unwrap()
                .to_string()
                .contains("loopback")
        );
    }
}
