//! Acknowledgements to reporters, sent over SMTP (`[smtp]`) after a report
//! is committed and its message removed. They never quote the report;
//! failures are logged and never affect sealing. (Notices to maintainers
//! are [`crate::notify`]'s.)

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lettre::message::Mailbox as Address;
use lettre::message::header::ContentType;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::MailboxError;
use super::message::ReplyFacts;
use crate::config::{Config, Policy, Smtp};
use crate::id::ReportId;

/// Acknowledgements sent to one sender address per [`ACK_WINDOW`]; more
/// reports from it are sealed as usual but not answered, so the intake
/// cannot be used to flood a (possibly forged) address.
pub const ACKS_PER_SENDER: usize = 3;
/// The window of [`ACKS_PER_SENDER`].
pub const ACK_WINDOW: Duration = Duration::from_secs(3600);
/// Longest an SMTP exchange may take.
const SMTP_TIMEOUT: Duration = Duration::from_secs(60);

const ACK_TEMPLATE: &str = include_str!("../../templates/ack.txt");

/// Sends acknowledgements.
pub(super) struct Acker {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Address,
    project: String,
    policy: Policy,
    policy_url: Option<String>,
    sent: Mutex<HashMap<String, Vec<Instant>>>,
}

impl Acker {
    pub(super) fn new(smtp: &Smtp, config: &Config) -> Result<Acker, MailboxError> {
        let (transport, from) = crate::smtp::transport(smtp, SMTP_TIMEOUT)
            .map_err(|e| MailboxError::SmtpConfig(e.to_string()))?;
        Ok(Acker {
            transport,
            from,
            project: config.project_name.clone(),
            policy: config.policy.clone(),
            policy_url: config.policy_url.clone(),
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
        if !self.allow(addr) {
            return Err(format!(
                "more than {ACKS_PER_SENDER} acknowledgements to this sender within the hour"
            ));
        }
        let sender = Sender {
            from: &self.from,
            project: &self.project,
            policy: &self.policy,
            policy_url: self.policy_url.as_deref(),
        };
        compose(&sender, id, reply).map(Some)
    }

    /// Counts one acknowledgement to `addr`; false when over the limit.
    fn allow(&self, addr: &str) -> bool {
        let now = Instant::now();
        let mut sent = self.sent.lock().unwrap_or_else(|e| e.into_inner());
        sent.retain(|_, times| {
            times.retain(|t| now.duration_since(*t) < ACK_WINDOW);
            !times.is_empty()
        });
        let times = sent.entry(addr.to_ascii_lowercase()).or_default();
        if times.len() >= ACKS_PER_SENDER {
            return false;
        }
        times.push(now);
        true
    }
}

/// Who acknowledges, and the policy the acknowledgement quotes.
pub struct Sender<'a> {
    pub from: &'a Address,
    pub project: &'a str,
    pub policy: &'a Policy,
    pub policy_url: Option<&'a str>,
}

/// The acknowledgement of report `id` to the sender `reply` describes. Every
/// value taken from the reporter's message (address, Message-ID,
/// References) went through [`super::message::parse`]; anything lettre does
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
            (
                "status_update_within",
                &policy.status_update_within.to_string(),
            ),
            ("fix_critical", &fix("critical")),
            ("fix_high", &fix("high")),
            ("fix_medium", &fix("medium")),
            ("fix_low", &fix("low")),
            ("policy", &policy_line),
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

    fn acker() -> Acker {
        let config = Config::parse("policy_url = \"https://example.org/sec\"\n[smtp]\nhost = \"127.0.0.1\"\nport = 2525\ntls = \"none\"\nfrom = \"Intake <intake@example.org>\"").unwrap();
        Acker::new(config.smtp.as_ref().unwrap(), &config).unwrap()
    }

    // lettre's pool needs a Tokio runtime, even when nothing is sent.
    #[tokio::test]
    async fn acknowledgement_has_id_and_policy_and_threading() {
        let a = acker();
        let id = ReportId::random();
        let reply = ReplyFacts {
            from_addr: Some("r@example.org".into()),
            message_id: Some("<m1@example.org>".into()),
            references: Some("<m0@example.org>".into()),
            no_reply_reason: None,
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
        let a = acker();
        let reply = ReplyFacts {
            from_addr: Some("r@example.org".into()),
            ..Default::default()
        };
        for _ in 0..ACKS_PER_SENDER {
            assert!(
                a.acknowledgement(&ReportId::random(), &reply)
                    .unwrap()
                    .is_some()
            );
        }
        assert!(a.acknowledgement(&ReportId::random(), &reply).is_err());
        let other = ReplyFacts {
            from_addr: Some("R2@example.org".into()),
            ..Default::default()
        };
        assert!(a.acknowledgement(&ReportId::random(), &other).is_ok());
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
