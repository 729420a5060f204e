//! `embargo.toml`: every key optional, unknown keys rejected by name (DESIGN §7).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

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

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// How sealed messages are framed (DESIGN §1.6).
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
    /// Serve `/metrics` without a token on this address (e.g. a loopback
    /// port for Prometheus); on `listen` it needs a maintainer token.
    pub metrics_listen: Option<String>,
    pub limits: Limits,
    pub policy: Policy,
    pub maintainers: Maintainers,
    pub smtp: Option<Smtp>,
    pub mailbox: Option<Mailbox>,
    pub retention: Retention,
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
            metrics_listen: None,
            limits: Limits::default(),
            policy: Policy::default(),
            maintainers: Maintainers::default(),
            smtp: None,
            mailbox: None,
            retention: Retention::default(),
        }
    }
}

/// Bounds on what one request may carry (DESIGN §7 `[limits]`).
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
        }
    }
}

/// Response deadlines promised to reporters (DESIGN §7 `[policy]`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    pub acknowledge_within: Span,
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
    pub notify_webhook_body: String,
    /// At most one notice per window; reports arriving in it are counted (5m).
    pub notify_window: Span,
}

/// The default webhook body: Slack/Mattermost-style `text` plus fields for scripts.
pub const DEFAULT_WEBHOOK_BODY: &str =
    r#"{"text": "{text}", "project": "{project}", "kind": "{kind}", "count": {count}}"#;

impl Default for Maintainers {
    fn default() -> Self {
        Maintainers {
            token_sha256: Vec::new(),
            notify: Vec::new(),
            notify_webhook_body: DEFAULT_WEBHOOK_BODY.into(),
            notify_window: Span(Duration::from_secs(5 * 60)),
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

/// The mailbox the poller drains (DESIGN §8).
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
    /// Reads `path`, resolving relative paths against the file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Config::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
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
        let body = crate::notify::fill_webhook_body(
            &self.maintainers.notify_webhook_body,
            "P",
            1,
            "reports",
            "t",
        );
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
        let limits = &self.limits;
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
        if let Some(mailbox) = &self.mailbox {
            if !["imap", "maildir"].contains(&mailbox.kind.as_str()) {
                return Err(ConfigError::Value {
                    key: "mailbox.kind",
                    message: format!("{:?} is not \"imap\" or \"maildir\"", mailbox.kind),
                });
            }
            let after = mailbox.after_sealing.as_str();
            if after != "delete" && !after.starts_with("move:") {
                return Err(ConfigError::Value {
                    key: "mailbox.after_sealing",
                    message: format!("{after:?} is not \"delete\" or \"move:FOLDER\""),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
