//! `embargo.toml`: every key optional, unknown keys rejected by name (deploy/embargo.toml).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What can go wrong while reading a configuration file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error(
        "cannot read config file {path}: {source}; check the path given with -c or EMBARGO_CONFIG"
    )]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid config value for {key}: {message}")]
    Value { key: &'static str, message: String },
}

/// A span of time written as `30s`, `15m`, `48h`, `7d` or `2w`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span(pub Duration);

impl FromStr for Span {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| format!("{s:?} has no unit: write e.g. 30s, 15m, 48h, 7d or 2w"))?;
        let (number, unit) = s.split_at(split);
        let n: u64 = number
            .parse()
            .map_err(|_| format!("{s:?} does not start with a whole number"))?;
        let unit_secs = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            "w" => 7 * 86_400,
            _ => {
                return Err(format!(
                    "{s:?} has unknown unit {unit:?}: use s, m, h, d or w"
                ));
            }
        };
        n.checked_mul(unit_secs)
            .map(|secs| Span(Duration::from_secs(secs)))
            .ok_or_else(|| format!("{s:?} is too long"))
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.as_secs();
        for (unit, size) in [("w", 7 * 86_400), ("d", 86_400), ("h", 3600), ("m", 60)] {
            if secs >= size && secs.is_multiple_of(size) {
                return write!(f, "{}{unit}", secs / size);
            }
        }
        write!(f, "{secs}s")
    }
}

impl Serialize for Span {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A deadline written as a span (`48h`) or in business days
/// (`5 business days`: Monday to Friday, UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Within {
    Span(Span),
    BusinessDays(u32),
}

impl Within {
    /// The instant this long after `from`. A business-day deadline counts
    /// whole weekdays: from a Friday afternoon, 1 business day is Monday at
    /// the same time; from a Saturday, it is Monday at the same time too.
    pub fn after(self, from: std::time::SystemTime) -> std::time::SystemTime {
        match self {
            Within::Span(s) => from + s.0,
            Within::BusinessDays(n) => {
                let mut t = time::OffsetDateTime::from(from);
                let mut left = n;
                while left > 0 {
                    t += time::Duration::DAY;
                    if !matches!(t.weekday(), time::Weekday::Saturday | time::Weekday::Sunday) {
                        left -= 1;
                    }
                }
                t.into()
            }
        }
    }
}

impl FromStr for Within {
    type Err = String;

    fn from_str(s: &str) -> Result<Within, String> {
        let t = s.trim();
        if let Some(n) = t
            .strip_suffix("business days")
            .or_else(|| t.strip_suffix("business day"))
        {
            let n: u32 = n.trim().parse().map_err(|_| {
                format!("{s:?}: write a whole number of business days, e.g. \"5 business days\"")
            })?;
            return Ok(Within::BusinessDays(n));
        }
        t.parse().map(Within::Span)
    }
}

impl fmt::Display for Within {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Within::Span(s) => s.fmt(f),
            Within::BusinessDays(1) => f.write_str("1 business day"),
            Within::BusinessDays(n) => write!(f, "{n} business days"),
        }
    }
}

impl Serialize for Within {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Within {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An instant written as RFC 3339 (`2027-06-30T00:00:00Z`) or as a date
/// (`2027-06-30`, midnight UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(pub std::time::SystemTime);

impl FromStr for Timestamp {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        crate::clock::parse_rfc3339(s)
            .or_else(|| crate::clock::parse_rfc3339(&format!("{s}T00:00:00Z")))
            .map(Timestamp)
            .ok_or_else(|| {
                format!("{s:?} is not a date like 2027-06-30 or an RFC 3339 time like 2027-06-30T00:00:00Z")
            })
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// How sealed messages are framed (docs/format.md).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageFormat {
    /// SEIPDv1 for every recipient: readable by GnuPG 2.2 and later.
    #[default]
    Compat,
    /// SEIPDv2 (AEAD) when every recipient advertises support for it.
    Rfc9580,
}

/// The whole configuration, with defaults filled in.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the web intake listens on.
    pub listen: String,
    /// Directory of maintainers' public certificates.
    pub keys_dir: PathBuf,
    /// Intake signing key, HMAC secret and poller state.
    pub state_dir: PathBuf,
    /// Where sealed reports are written: a directory (holding `reports/`).
    pub store: PathBuf,
    pub message_format: MessageFormat,
    /// Warn about certificates that expire within this span.
    pub key_expiry_warning: Span,
    pub project_name: String,
    pub policy_url: Option<String>,
    /// The address researchers reach the intake at (`https://…`, or
    /// `http://…` for a `.onion` or loopback host): every absolute URL the
    /// intake writes (security.txt) is built from it, never from a request's
    /// `Host` header. Unset: `/.well-known/security.txt` is not served.
    pub public_url: Option<String>,
    /// Latest `Expires` of security.txt (RFC 3339, or a date `2027-06-30`);
    /// it is also never later than the earliest usable key expiry. Unset:
    /// one year after the newest certificate file in `keys_dir` changed.
    pub security_txt_expires: Option<Timestamp>,
    /// Serve `/metrics` without a token on this address (e.g. a loopback
    /// port for Prometheus); on `listen` it needs a maintainer token.
    pub metrics_listen: Option<String>,
    pub limits: Limits,
    pub policy: Policy,
    pub maintainers: Maintainers,
    pub smtp: Option<Smtp>,
    pub mailbox: Option<Mailbox>,
    pub retention: Retention,
    /// What `embargo advisory` drafts name as the affected package.
    pub advisory: AdvisoryTarget,
}

/// `[advisory]` (in the intake configuration or the maintainer profile):
/// the package advisories are about. Every key optional; a draft that
/// needs a missing one says which.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AdvisoryTarget {
    /// The OSV ecosystem name: `crates.io`, `npm`, `PyPI`, `Go`, `Maven`…
    pub ecosystem: Option<String>,
    /// The package name in that ecosystem.
    pub package: Option<String>,
    /// Its package URL (`pkg:cargo/name`).
    pub purl: Option<String>,
    /// The source repository URL (fix commits link into it).
    pub repository: Option<String>,
    /// The CNA's organization UUID, for CVE records (`--format cve`).
    pub cna_org_id: Option<String>,
}

impl AdvisoryTarget {
    /// `self`, with what it leaves out taken from `other`.
    pub fn or(self, other: AdvisoryTarget) -> AdvisoryTarget {
        AdvisoryTarget {
            ecosystem: self.ecosystem.or(other.ecosystem),
            package: self.package.or(other.package),
            purl: self.purl.or(other.purl),
            repository: self.repository.or(other.repository),
            cna_org_id: self.cna_org_id.or(other.cna_org_id),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".into(),
            keys_dir: "keys".into(),
            state_dir: "state".into(),
            store: "data".into(),
            message_format: MessageFormat::Compat,
            key_expiry_warning: Span(Duration::from_secs(30 * 86_400)),
            project_name: "Example Project".into(),
            policy_url: None,
            public_url: None,
            security_txt_expires: None,
            metrics_listen: None,
            limits: Limits::default(),
            policy: Policy::default(),
            maintainers: Maintainers::default(),
            smtp: None,
            mailbox: None,
            retention: Retention::default(),
            advisory: AdvisoryTarget::default(),
        }
    }
}

/// Bounds on what one request may carry (`[limits]` in deploy/embargo.toml).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest single attachment, in bytes (512 MiB).
    pub max_attachment_bytes: u64,
    /// Most attachments in one report (10).
    pub max_attachments: usize,
    /// Largest text field, in bytes (64 KiB).
    pub max_field_bytes: usize,
    /// Uploads sealed at the same time; more get 503 (32).
    pub max_concurrent_uploads: usize,
    /// Connections served at once; one more is answered 503 and closed, so
    /// file descriptors never run out (512; lowered at start-up to what
    /// the open-file limit allows).
    pub max_connections: usize,
    /// Longest time one upload may take from first byte to last (30m).
    pub upload_timeout: Span,
    /// Reports accepted per peer address and minute, counted in memory only (10).
    pub rate_limit_per_minute: u32,
    /// Refused submissions (wrong content type, invalid fields, too large…)
    /// per peer address and minute before every submission from it gets
    /// 429; counted apart from accepted reports, in memory only (60).
    pub refusal_limit_per_minute: u32,
    /// Uploads one peer address may have running at once, so that a few
    /// slow clients cannot take every one of `max_concurrent_uploads` (4).
    pub max_uploads_per_peer: usize,
    /// Connections one peer address may hold open at once; one more is
    /// answered 503 and closed (32).
    pub max_connections_per_peer: usize,
    /// Slowest upload kept: a body that delivers fewer bytes than this per
    /// second, over `upload_rate_window` of waiting on the client, is cut
    /// with 408 (1024).
    pub min_upload_bytes_per_second: u64,
    /// The window `min_upload_bytes_per_second` is measured over (1m).
    pub upload_rate_window: Span,
    /// Longest time a client may take to send a request's headers (and an
    /// idle keep-alive connection may wait for the next request) (30s).
    pub header_read_timeout: Span,
    /// Addresses of reverse proxies on this host (nginx, tor) that carry
    /// many reporters: the per-peer limits above do not apply to them, the
    /// proxy must limit per client address itself (none).
    pub proxy_peers: Vec<std::net::IpAddr>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_attachment_bytes: 512 * 1024 * 1024,
            max_attachments: 10,
            max_field_bytes: 64 * 1024,
            max_concurrent_uploads: 32,
            max_connections: 512,
            upload_timeout: Span(Duration::from_secs(30 * 60)),
            rate_limit_per_minute: 10,
            refusal_limit_per_minute: 60,
            max_uploads_per_peer: 4,
            max_connections_per_peer: 32,
            min_upload_bytes_per_second: 1024,
            upload_rate_window: Span(Duration::from_secs(60)),
            header_read_timeout: Span(Duration::from_secs(30)),
            proxy_peers: Vec::new(),
        }
    }
}

/// Response deadlines promised to reporters (`[policy]` in deploy/embargo.toml).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    pub acknowledge_within: Span,
    /// The provisional assessment (severity, CVSS), `5 business days` by default.
    pub assess_within: Within,
    pub status_update_within: Span,
    /// Fix deadline per severity: `critical`, `high`, `medium`, `low`.
    pub fix_within: BTreeMap<String, Span>,
}

impl Default for Policy {
    fn default() -> Self {
        let day = 86_400;
        let fix_within = [
            ("critical", 7 * day),
            ("high", 30 * day),
            ("medium", 90 * day),
            ("low", 180 * day),
        ]
        .into_iter()
        .map(|(k, secs)| (k.to_string(), Span(Duration::from_secs(secs))))
        .collect();
        Policy {
            acknowledge_within: Span(Duration::from_secs(2 * day)),
            assess_within: Within::BusinessDays(5),
            status_update_within: Span(Duration::from_secs(7 * day)),
            fix_within,
        }
    }
}

impl Policy {
    /// The fix deadline for a severity; unknown severities get none.
    pub fn fix_deadline(&self, severity: &str) -> Option<Span> {
        self.fix_within.get(severity).copied()
    }
}

/// Who may fetch sealed reports and who is told that one arrived.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Maintainers {
    /// Hex SHA-256 of each fetch token (`embargo token new`).
    pub token_sha256: Vec<String>,
    /// Content-free "new report" notices: `mailto:` or `https://` URLs.
    pub notify: Vec<String>,
    /// JSON body POSTed to webhook targets; `{project}`, `{count}`, `{kind}`
    /// and `{text}` are replaced (string values JSON-escaped).
    pub notify_webhook_body: WebhookTemplate,
    /// At most one notice per window; reports arriving in it are counted (5m).
    pub notify_window: Span,
    /// Also announce new case events (a maintainer's action, uploaded to
    /// the intake), counted like reports; off by default.
    pub notify_case_events: bool,
}

/// `[maintainers] notify_webhook_body`: the JSON body POSTed to webhook
/// targets, with `{project}`, `{count}`, `{kind}` and `{text}` filled in.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct WebhookTemplate(pub String);

impl WebhookTemplate {
    /// Fills the webhook body template: `{project}`, `{kind}` and `{text}` as
    /// JSON-escaped string contents (put them in quotes), `{count}` as a number.
    /// One pass, so a value containing a placeholder is never expanded again.
    pub fn fill(&self, project: &str, count: u64, kind: &str, text: &str) -> String {
        let escape = |s: &str| {
            let quoted = serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
            quoted[1..quoted.len() - 1].to_string()
        };
        let values = [
            ("{project}", escape(project)),
            ("{count}", count.to_string()),
            ("{kind}", escape(kind)),
            ("{text}", escape(text)),
        ];
        let mut out = String::with_capacity(self.0.len() + 128);
        let mut rest = self.0.as_str();
        'outer: while let Some(pos) = rest.find('{') {
            out.push_str(&rest[..pos]);
            rest = &rest[pos..];
            for (name, value) in &values {
                if let Some(after) = rest.strip_prefix(name) {
                    out.push_str(value);
                    rest = after;
                    continue 'outer;
                }
            }
            out.push('{');
            rest = &rest[1..];
        }
        out.push_str(rest);
        out
    }
}

/// The default webhook body: Slack/Mattermost-style `text` plus fields for scripts.
pub const DEFAULT_WEBHOOK_BODY: &str =
    r#"{"text": "{text}", "project": "{project}", "kind": "{kind}", "count": {count}}"#;

impl Default for Maintainers {
    fn default() -> Self {
        Maintainers {
            token_sha256: Vec::new(),
            notify: Vec::new(),
            notify_webhook_body: WebhookTemplate(DEFAULT_WEBHOOK_BODY.into()),
            notify_window: Span(Duration::from_secs(5 * 60)),
            notify_case_events: false,
        }
    }
}

/// How long sealed reports stay on the server (`[retention]`); by default forever.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Retention {
    /// Delete reports that arrived longer ago than this (none: keep).
    pub max_age: Option<Span>,
    /// Delete a report once `embargo fetch` stored it and confirmed every
    /// part's SHA-256 (`POST /api/v1/sealed/<ID>/fetched`); downloads alone
    /// never count, and reports with case events are kept.
    pub delete_after_fetch: bool,
    /// How often the rules are applied (1h).
    pub interval: Span,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            max_age: None,
            delete_after_fetch: false,
            interval: Span(Duration::from_secs(3600)),
        }
    }
}

/// Outgoing mail for acknowledgements and notices.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Smtp {
    pub host: String,
    #[serde(default = "default_smtp_port")]
    pub port: u16,
    #[serde(default)]
    pub tls: Tls,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    pub from: String,
}

fn default_smtp_port() -> u16 {
    587
}

/// Whether `host` names this machine (`localhost`, 127.0.0.0/8, `::1`):
/// the only hosts plain-text mail connections may go to.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// How a mail connection is protected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tls {
    #[default]
    Implicit,
    Starttls,
    /// Plain text; refused unless the host is a loopback address.
    None,
}

/// The mailbox the poller drains (README: "Reports by e-mail").
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mailbox {
    #[serde(default = "default_mailbox_kind")]
    pub kind: String,
    pub host: Option<String>,
    #[serde(default = "default_imap_port")]
    pub port: u16,
    #[serde(default)]
    pub tls: Tls,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    /// IMAP folder, or the Maildir path when `kind = "maildir"`.
    #[serde(default = "default_folder")]
    pub folder: String,
    #[serde(default = "default_after_sealing")]
    pub after_sealing: String,
    #[serde(default = "default_poll_interval")]
    pub poll_interval: Span,
    #[serde(default = "default_true")]
    pub idle: bool,
    /// Largest message sealed; a larger one is left in the mailbox with a
    /// warning ([`DEFAULT_MAX_MAIL_BYTES`]).
    #[serde(default = "default_max_mail_bytes")]
    pub max_mail_bytes: u64,
    /// Raw bytes of one header that are decoded for the manifest; the rest
    /// stays in the sealed original ([`DEFAULT_MAX_HEADER_BYTES`]).
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: usize,
    /// Deepest MIME nesting read for metadata ([`DEFAULT_MAX_MIME_DEPTH`]).
    #[serde(default = "default_max_mime_depth")]
    pub max_mime_depth: usize,
    /// Most MIME parts read for metadata ([`DEFAULT_MAX_MIME_PARTS`]).
    #[serde(default = "default_max_mime_parts")]
    pub max_mime_parts: usize,
    /// Acknowledge only mail whose receiving server vouches for the sender
    /// (DMARC or aligned SPF pass in `Authentication-Results`), so forged
    /// senders get no backscatter (true).
    #[serde(default = "default_true")]
    pub ack_requires_auth: bool,
    /// The authserv-id of the receiving server's `Authentication-Results`
    /// header; unset: the topmost such header is used.
    #[serde(default)]
    pub ack_authserv_id: Option<String>,
    /// Acknowledgements sent per hour in all, counted in `state_dir`
    /// ([`DEFAULT_MAX_ACKS_PER_HOUR`]).
    #[serde(default = "default_max_acks_per_hour")]
    pub max_acks_per_hour: u32,
}

/// `[mailbox] max_mail_bytes`: 64 MiB.
pub const DEFAULT_MAX_MAIL_BYTES: u64 = 64 * 1024 * 1024;
/// `[mailbox] max_header_bytes`: 16 KiB.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 16 * 1024;
/// `[mailbox] max_mime_depth`: 16.
pub const DEFAULT_MAX_MIME_DEPTH: usize = 16;
/// `[mailbox] max_mime_parts`: 256.
pub const DEFAULT_MAX_MIME_PARTS: usize = 256;
/// `[mailbox] max_acks_per_hour`: 20.
pub const DEFAULT_MAX_ACKS_PER_HOUR: u32 = 20;

fn default_max_mail_bytes() -> u64 {
    DEFAULT_MAX_MAIL_BYTES
}
fn default_max_header_bytes() -> usize {
    DEFAULT_MAX_HEADER_BYTES
}
fn default_max_mime_depth() -> usize {
    DEFAULT_MAX_MIME_DEPTH
}
fn default_max_mime_parts() -> usize {
    DEFAULT_MAX_MIME_PARTS
}
fn default_max_acks_per_hour() -> u32 {
    DEFAULT_MAX_ACKS_PER_HOUR
}

fn default_mailbox_kind() -> String {
    "imap".into()
}
fn default_imap_port() -> u16 {
    993
}
fn default_folder() -> String {
    "INBOX".into()
}
fn default_after_sealing() -> String {
    "delete".into()
}
fn default_poll_interval() -> Span {
    Span(Duration::from_secs(60))
}
fn default_true() -> bool {
    true
}

impl Config {
    /// The configuration a command runs with: `-c FILE` (or
    /// `EMBARGO_CONFIG`, which the command line reads), else the defaults
    /// relative to the current directory.
    pub fn load_or_defaults(path: Option<&Path>) -> Result<Config, ConfigError> {
        match path {
            Some(p) => Config::load(p),
            None => Ok(Config::defaults_in(Path::new("."))),
        }
    }

    /// Reads `path`, resolving relative paths against the file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Config::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            // TOML's own text ends in a newline: no blank line after the error.
            message: message.trim_end().to_owned(),
        })?;
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        config.resolve_paths(base);
        Ok(config)
    }

    /// Parses configuration text; paths stay as written.
    pub fn parse(text: &str) -> Result<Config, String> {
        let config: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }

    /// The configuration used when no file is given: defaults, relative to `base`.
    pub fn defaults_in(base: &Path) -> Config {
        let mut config = Config::default();
        config.resolve_paths(base);
        config
    }

    fn resolve_paths(&mut self, base: &Path) {
        let join = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        join(&mut self.keys_dir);
        join(&mut self.state_dir);
        join(&mut self.store);
        if let Some(p) = self.smtp.as_mut().and_then(|s| s.password_file.as_mut()) {
            join(p);
        }
        if let Some(mailbox) = &mut self.mailbox {
            if let Some(p) = &mut mailbox.password_file {
                join(p);
            }
            if mailbox.kind == "maildir" {
                let mut folder = PathBuf::from(&mailbox.folder);
                join(&mut folder);
                mailbox.folder = folder.to_string_lossy().into_owned();
            }
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.store.to_string_lossy().starts_with("s3://") {
            return Err(ConfigError::Value {
                key: "store",
                message:
                    "S3-compatible stores are not supported by this build yet; use a directory"
                        .into(),
            });
        }
        for severity in self.policy.fix_within.keys() {
            if !["critical", "high", "medium", "low"].contains(&severity.as_str()) {
                return Err(ConfigError::Value {
                    key: "policy.fix_within",
                    message: format!(
                        "unknown severity {severity:?}: use critical, high, medium or low"
                    ),
                });
            }
        }
        for token in &self.maintainers.token_sha256 {
            if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ConfigError::Value {
                    key: "maintainers.token_sha256",
                    message: "each entry must be 64 hex digits; make one with `embargo token new`"
                        .into(),
                });
            }
        }
        let body = self
            .maintainers
            .notify_webhook_body
            .fill("P", 1, "reports", "t");
        if let Err(e) = serde_json::from_str::<serde_json::Value>(&body) {
            return Err(ConfigError::Value {
                key: "maintainers.notify_webhook_body",
                message: format!(
                    "is not JSON once filled in ({e}); put string placeholders in quotes: \"{{text}}\""
                ),
            });
        }
        if self.maintainers.notify_window.0.is_zero() {
            return Err(ConfigError::Value {
                key: "maintainers.notify_window",
                message: "must be longer than 0s (the default is 5m)".into(),
            });
        }
        if self.retention.interval.0.is_zero() {
            return Err(ConfigError::Value {
                key: "retention.interval",
                message: "must be longer than 0s (the default is 1h)".into(),
            });
        }
        self.limits.validate()?;
        self.validate_cross_fields()?;
        let ports = [
            ("smtp.port", self.smtp.as_ref().map(|s| s.port)),
            ("mailbox.port", self.mailbox.as_ref().map(|m| m.port)),
        ];
        if let Some((key, _)) = ports.iter().find(|(_, p)| *p == Some(0)) {
            return Err(ConfigError::Value {
                key,
                message: "port 0 cannot be connected to: give the server's port, or leave it out for the default".into(),
            });
        }
        if let Some(mailbox) = &self.mailbox {
            mailbox.validate()?;
        }
        Ok(())
    }
}

/// Whether two `listen`-style addresses would bind the same socket. Port 0
/// asks the system for a free port each time, so two of them never clash.
fn same_listener(a: &str, b: &str) -> bool {
    let (a, b) = (a.trim(), b.trim());
    match (
        a.parse::<std::net::SocketAddr>(),
        b.parse::<std::net::SocketAddr>(),
    ) {
        (Ok(x), Ok(y)) => x == y && x.port() != 0,
        _ => a == b && !a.ends_with(":0"),
    }
}

/// Largest `[limits] max_field_bytes`: a report's thirteen text fields at
/// six bytes per byte (a control character, escaped) stay well within the
/// 16 MiB a reader takes of a manifest. The writer checks the actual size
/// as well.
pub const MAX_FIELD_BYTES: usize = 160 * 1024;

impl Limits {
    /// The limits that would refuse everything or never time out.
    fn validate(&self) -> Result<(), ConfigError> {
        let limits = self;
        if limits.max_concurrent_uploads == 0
            || limits.rate_limit_per_minute == 0
            || limits.max_connections == 0
        {
            return Err(ConfigError::Value {
                key: "limits",
                message: "max_concurrent_uploads, max_connections and rate_limit_per_minute must be at least 1"
                    .into(),
            });
        }
        if limits.refusal_limit_per_minute == 0
            || limits.max_uploads_per_peer == 0
            || limits.max_connections_per_peer == 0
        {
            return Err(ConfigError::Value {
                key: "limits",
                message: "refusal_limit_per_minute, max_uploads_per_peer and max_connections_per_peer must be at least 1"
                    .into(),
            });
        }
        if limits.max_field_bytes == 0 {
            return Err(ConfigError::Value {
                key: "limits.max_field_bytes",
                message: "must be at least 1: title and description are required, so with 0 every report is refused (the default is 65536)".into(),
            });
        }
        if limits.max_field_bytes > MAX_FIELD_BYTES {
            return Err(ConfigError::Value {
                key: "limits.max_field_bytes",
                message: format!(
                    "must be at most {MAX_FIELD_BYTES}: every field goes into the report's manifest, which readers take up to 16 MiB, and escaped text can take six times its size there (the default is 65536; long text belongs in an attachment)"
                ),
            });
        }
        if limits.max_attachments > crate::case::event::MAX_EVENT_ATTACHMENTS {
            return Err(ConfigError::Value {
                key: "limits.max_attachments",
                message: format!(
                    "must be at most {}: a report's receipt and a follow-up's event list every file, and more would not fit (the default is 10)",
                    crate::case::event::MAX_EVENT_ATTACHMENTS
                ),
            });
        }
        if limits.upload_rate_window.0.is_zero() || limits.header_read_timeout.0.is_zero() {
            return Err(ConfigError::Value {
                key: "limits",
                message: "upload_rate_window and header_read_timeout must be longer than 0s (the defaults are 1m and 30s)"
                    .into(),
            });
        }
        Ok(())
    }
}

impl Mailbox {
    /// `kind` and `after_sealing` are one of the values the poller knows.
    fn validate(&self) -> Result<(), ConfigError> {
        if !["imap", "maildir"].contains(&self.kind.as_str()) {
            return Err(ConfigError::Value {
                key: "mailbox.kind",
                message: format!("{:?} is not \"imap\" or \"maildir\"", self.kind),
            });
        }
        let after = self.after_sealing.as_str();
        if after != "delete" && !after.starts_with("move:") {
            return Err(ConfigError::Value {
                key: "mailbox.after_sealing",
                message: format!("{after:?} is not \"delete\" or \"move:FOLDER\""),
            });
        }
        Ok(())
    }
}

impl Config {
    /// The `public_url` without a trailing slash, ready to append paths to.
    pub fn public_base(&self) -> Option<&str> {
        self.public_url.as_deref().map(|u| u.trim_end_matches('/'))
    }

    /// Rules that tie one setting to another, or to the machine it points
    /// at, checked before anything starts (a server that would fail later
    /// never binds its port).
    fn validate_cross_fields(&self) -> Result<(), ConfigError> {
        let value = |key: &'static str, message: String| Err(ConfigError::Value { key, message });
        if let Some(url) = &self.public_url {
            check_public_url(url).or_else(|m| value("public_url", m))?;
        }
        if let Some(url) = &self.policy_url {
            check_policy_url(url).or_else(|m| value("policy_url", m))?;
        }
        for target in &self.maintainers.notify {
            check_notify_target(target, self.smtp.is_some())
                .or_else(|m| value("maintainers.notify", format!("{target:?}: {m}")))?;
        }
        if let Some(smtp) = &self.smtp {
            if smtp.tls == Tls::None && !is_loopback_host(&smtp.host) {
                return value(
                    "smtp.tls",
                    format!(
                        "tls = \"none\" would send mail and the password in clear text to {}: it is only allowed for a loopback host; use \"implicit\" or \"starttls\"",
                        smtp.host
                    ),
                );
            }
            if smtp.username.is_some() != smtp.password_file.is_some() {
                return value(
                    "smtp.username",
                    "username and password_file go together: give both, or neither for a relay without login".into(),
                );
            }
            if smtp.from.parse::<lettre::message::Mailbox>().is_err() {
                return value(
                    "smtp.from",
                    format!(
                        "{:?} is not a mail address like \"Example Security <security@example.org>\"",
                        smtp.from
                    ),
                );
            }
        }
        if let Some(metrics) = &self.metrics_listen
            && same_listener(metrics, &self.listen)
        {
            return value(
                "metrics_listen",
                format!(
                    "is the same address as listen ({metrics}): use another port, e.g. 127.0.0.1:9180"
                ),
            );
        }
        if self.limits.upload_timeout.0.is_zero() {
            return value(
                "limits.upload_timeout",
                "must be longer than 0s (the default is 30m)".into(),
            );
        }
        if self.retention.max_age.is_some_and(|a| a.0.is_zero()) {
            return value(
                "retention.max_age",
                "0s would delete every report as soon as it is sealed: give a span like \"90d\", or remove the key to keep reports".into(),
            );
        }
        if let Some(mailbox) = &self.mailbox {
            check_mailbox(mailbox)?;
        }
        Ok(())
    }
}

/// `public_url`: absolute, https (http only for onion services and
/// loopback hosts), no credentials, query or fragment.
fn check_public_url(raw: &str) -> Result<(), String> {
    let url = web_url(raw)?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("{raw:?} must not have a query (?) or fragment (#)"));
    }
    Ok(())
}

/// `policy_url`: like `public_url`, but a query or fragment may point into
/// a longer page.
fn check_policy_url(raw: &str) -> Result<(), String> {
    web_url(raw).map(|_| ())
}

/// An absolute https URL (http only for onion services and loopback
/// hosts) without credentials, written exactly as it is used: the raw
/// text goes into security.txt lines and mails, while URL parsing drops
/// line breaks and surrounding spaces, so a "\nContact: …" inside would
/// pass the parse and add a line to the signed file.
fn web_url(raw: &str) -> Result<reqwest::Url, String> {
    if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{raw:?} contains a space, line break or control character: write the URL alone, percent-encoding any space"
        ));
    }
    let url = reqwest::Url::parse(raw).map_err(|e| {
        format!(
            "{raw:?} is not an absolute URL ({e}): write it like \"https://security.example.org\""
        )
    })?;
    let host = url.host_str().ok_or_else(|| {
        format!("{raw:?} has no host: write it like \"https://security.example.org\"")
    })?;
    match url.scheme() {
        "https" => {}
        "http" if host.ends_with(".onion") || is_loopback_host(host) => {}
        "http" => {
            return Err(format!(
                "{raw:?} uses plain http: use https:// (http:// only for a .onion or loopback host)"
            ));
        }
        other => return Err(format!("{raw:?}: scheme {other:?} is not https")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("{raw:?} must not hold a user name or password"));
    }
    Ok(url)
}

/// One `[maintainers] notify` entry: `mailto:` (needs `[smtp]`), `https://`,
/// or `http://` to a loopback host.
fn check_notify_target(raw: &str, have_smtp: bool) -> Result<(), String> {
    if let Some(addr) = raw.strip_prefix("mailto:") {
        if !have_smtp {
            return Err("mailto: notices are sent through [smtp], which is not configured: add an [smtp] section or remove the mailto: entry".into());
        }
        return addr
            .parse::<lettre::Address>()
            .map(|_| ())
            .map_err(|e| format!("not a mail address ({e})"));
    }
    let url =
        reqwest::Url::parse(raw).map_err(|e| format!("not a mailto: or https:// URL ({e})"))?;
    match url.scheme() {
        "https" => Ok(()),
        "http" if url.host_str().is_some_and(is_loopback_host) => Ok(()),
        "http" => Err("plain http:// is only allowed to a loopback host: use https://".into()),
        other => Err(format!(
            "unsupported scheme {other:?}: use mailto: or https://"
        )),
    }
}

/// `[mailbox]`: what the poller needs to connect, checked before start.
fn check_mailbox(mailbox: &Mailbox) -> Result<(), ConfigError> {
    let value = |key: &'static str, message: String| Err(ConfigError::Value { key, message });
    if mailbox.poll_interval.0.is_zero() {
        return value(
            "mailbox.poll_interval",
            "must be longer than 0s (the default is 60s)".into(),
        );
    }
    if mailbox.kind != "imap" {
        return Ok(());
    }
    let Some(host) = mailbox.host.as_deref() else {
        return value("mailbox.host", "is required for kind = \"imap\"".into());
    };
    if mailbox.tls == Tls::None && !is_loopback_host(host) {
        return value(
            "mailbox.tls",
            format!(
                "tls = \"none\" would send the password and every report in clear text to {host}: it is only allowed for a loopback host; use \"implicit\" or \"starttls\""
            ),
        );
    }
    if mailbox.username.is_none() || mailbox.password_file.is_none() {
        return value(
            "mailbox.username",
            "username and password_file are required for kind = \"imap\"".into(),
        );
    }
    if let Some(folder) = mailbox.after_sealing.strip_prefix("move:")
        && (folder.is_empty() || folder == mailbox.folder)
    {
        return value(
            "mailbox.after_sealing",
            format!(
                "{:?} must name another folder than {:?}",
                mailbox.after_sealing, mailbox.folder
            ),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_never_clashes_with_itself() {
        assert!(super::same_listener("127.0.0.1:8080", " 127.0.0.1:8080"));
        assert!(super::same_listener("[::1]:9180", "[::1]:9180"));
        assert!(!super::same_listener("127.0.0.1:0", "127.0.0.1:0"));
        assert!(!super::same_listener("127.0.0.1:8080", "127.0.0.1:9180"));
        assert!(super::same_listener("localhost:8080", "localhost:8080"));
        assert!(!super::same_listener("localhost:0", "localhost:0"));
    }

    #[test]
    fn spans_parse_and_print() {
        assert_eq!(
            "48h".parse::<Span>().unwrap().0,
            Duration::from_secs(48 * 3600)
        );
        assert_eq!("7d".parse::<Span>().unwrap().to_string(), "1w");
        assert_eq!("90s".parse::<Span>().unwrap().to_string(), "90s");
        assert!("7".parse::<Span>().is_err());
        assert!("d".parse::<Span>().is_err());
        assert!("7y".parse::<Span>().is_err());
        assert!("99999999999999999999d".parse::<Span>().is_err());
    }

    #[test]
    fn empty_config_is_all_defaults() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.listen, "127.0.0.1:8080");
        assert_eq!(c.limits.max_attachment_bytes, 512 * 1024 * 1024);
        assert_eq!(c.policy.fix_deadline("critical").unwrap().to_string(), "1w");
        assert_eq!(c.message_format, MessageFormat::Compat);
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = Config::parse("listne = \"x\"").unwrap_err();
        assert!(err.contains("listne"), "{err}");
        let err = Config::parse("[limits]\nmax_attachmnets = 3").unwrap_err();
        assert!(err.contains("max_attachmnets"), "{err}");
    }

    #[test]
    fn example_config_parses() {
        let text = include_str!("../deploy/embargo.toml");
        let c = Config::parse(text).unwrap();
        assert_eq!(c.policy.fix_deadline("high").unwrap().to_string(), "30d");
        // It starts as shipped: no notice target that needs a section it
        // leaves commented out.
        assert!(c.smtp.is_none() && c.maintainers.notify.is_empty());
    }

    #[test]
    fn every_cross_field_rule_is_checked_at_parse_time_and_names_its_key() {
        let smtp = "[smtp]\nhost = \"smtp.example.org\"\nfrom = \"S <s@example.org>\"\n";
        let imap =
            "[mailbox]\nhost = \"imap.example.org\"\nusername = \"u\"\npassword_file = \"p\"\n";
        let cases: Vec<(String, &str, &str)> = vec![
            (
                "[maintainers]\nnotify = [\"mailto:team@example.org\"]".into(),
                "maintainers.notify",
                "[smtp], which is not configured",
            ),
            (
                format!("[maintainers]\nnotify = [\"mailto:not an address\"]\n{smtp}"),
                "maintainers.notify",
                "not a mail address",
            ),
            (
                "[maintainers]\nnotify = [\"http://hooks.example.org/x\"]".into(),
                "maintainers.notify",
                "only allowed to a loopback host",
            ),
            (
                "[maintainers]\nnotify = [\"ftp://example.org/\"]".into(),
                "maintainers.notify",
                "unsupported scheme",
            ),
            (
                "[smtp]\nhost = \"smtp.example.org\"\ntls = \"none\"\nfrom = \"s@example.org\""
                    .into(),
                "smtp.tls",
                "only allowed for a loopback host",
            ),
            (
                format!("{smtp}username = \"u\""),
                "smtp.username",
                "go together",
            ),
            (
                "[smtp]\nhost = \"h\"\nfrom = \"nobody\"".into(),
                "smtp.from",
                "not a mail address",
            ),
            (
                "listen = \"127.0.0.1:8080\"\nmetrics_listen = \"127.0.0.1:8080\"".into(),
                "metrics_listen",
                "same address as listen",
            ),
            (
                "[limits]\nupload_timeout = \"0s\"".into(),
                "limits.upload_timeout",
                "longer than 0s",
            ),
            (
                "[retention]\nmax_age = \"0d\"".into(),
                "retention.max_age",
                "delete every report",
            ),
            (
                "[mailbox]\nusername = \"u\"\npassword_file = \"p\"".into(),
                "mailbox.host",
                "required",
            ),
            (
                format!("{imap}tls = \"none\""),
                "mailbox.tls",
                "only allowed for a loopback host",
            ),
            (
                "[mailbox]\nhost = \"imap.example.org\"".into(),
                "mailbox.username",
                "required",
            ),
            (
                format!("{imap}after_sealing = \"move:INBOX\""),
                "mailbox.after_sealing",
                "another folder",
            ),
            (
                format!("{imap}poll_interval = \"0s\""),
                "mailbox.poll_interval",
                "longer than 0s",
            ),
            (
                "public_url = \"http://security.example.org\"".into(),
                "public_url",
                "plain http",
            ),
            (
                "public_url = \"security.example.org\"".into(),
                "public_url",
                "not an absolute URL",
            ),
            (
                "public_url = \"https://u:p@security.example.org\"".into(),
                "public_url",
                "user name or password",
            ),
            (
                "public_url = \"https://security.example.org/?x=1\"".into(),
                "public_url",
                "query",
            ),
            (
                "public_url = \"https://security.example.org/\\nContact: mailto:x@example.org\""
                    .into(),
                "public_url",
                "line break",
            ),
            (
                "public_url = \" https://security.example.org\"".into(),
                "public_url",
                "space",
            ),
            (
                "policy_url = \"https://example.org/p\\r\\nContact: mailto:x@example.org\"".into(),
                "policy_url",
                "line break",
            ),
            (
                "policy_url = \"javascript:alert(1)\"".into(),
                "policy_url",
                "has no host",
            ),
            (
                "policy_url = \"http://example.org/security\"".into(),
                "policy_url",
                "plain http",
            ),
            (
                "[limits]\nmax_field_bytes = 0".into(),
                "limits.max_field_bytes",
                "every report is refused",
            ),
            (
                "[limits]\nmax_field_bytes = 163841".into(),
                "limits.max_field_bytes",
                "at most 163840",
            ),
            (
                "[limits]\nmax_attachments = 101".into(),
                "limits.max_attachments",
                "at most 100",
            ),
            (
                "[smtp]\nhost = \"127.0.0.1\"\ntls = \"none\"\nfrom = \"s@example.org\"\nport = 0"
                    .into(),
                "smtp.port",
                "port 0",
            ),
            (format!("{imap}port = 0"), "mailbox.port", "port 0"),
            (
                "security_txt_expires = \"next year\"".into(),
                "security_txt_expires",
                "not a date",
            ),
        ];
        for (text, key, phrase) in cases {
            let err = Config::parse(&text).unwrap_err();
            assert!(
                err.contains(key) && err.contains(phrase),
                "{text:?} gave {err:?}, expected {key} / {phrase}"
            );
        }
        // What these rules allow.
        for ok in [
            format!(
                "[maintainers]\nnotify = [\"mailto:team@example.org\", \"https://h.example.org/x\", \"http://127.0.0.1:9/x\"]\n{smtp}"
            ),
            "public_url = \"http://abcdefghijklmnop.onion\"".into(),
            "public_url = \"https://security.example.org/intake/\"".into(),
            "policy_url = \"https://example.org/security#embargo\"".into(),
            "policy_url = \"http://abcdefghijklmnop.onion/policy?lang=en\"".into(),
            "[smtp]\nhost = \"127.0.0.1\"\ntls = \"none\"\nfrom = \"s@example.org\"".into(),
            "security_txt_expires = \"2027-06-30\"".into(),
            "security_txt_expires = \"2027-06-30T12:00:00Z\"".into(),
            "[mailbox]\nkind = \"maildir\"\nfolder = \"Maildir\"".into(),
            imap.to_string(),
            "[limits]\nmax_attachments = 100\nmax_field_bytes = 163840".into(),
        ] {
            assert!(
                Config::parse(&ok).is_ok(),
                "{ok:?}: {:?}",
                Config::parse(&ok).err()
            );
        }
        let c = Config::parse("public_url = \"https://security.example.org/intake/\"").unwrap();
        assert_eq!(c.public_base(), Some("https://security.example.org/intake"));
    }

    #[test]
    fn relative_paths_follow_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("embargo.toml");
        std::fs::write(&path, "keys_dir = \"k\"\nstore = \"/abs\"").unwrap();
        let c = Config::load(&path).unwrap();
        assert_eq!(c.keys_dir, dir.path().join("k"));
        assert_eq!(c.store, PathBuf::from("/abs"));
        assert_eq!(c.state_dir, dir.path().join("state"));
    }
}
