//! Counters and gauges for `GET /metrics`, in the Prometheus text exposition
//! format (version 0.0.4).
//!
//! Every label value comes from a fixed enum in this module ([`Channel`],
//! [`Rejection`]): a metric can never carry report content, a file name, an
//! address or the size of one report (docs/threat-model.md). Bytes are only counted
//! as a running total over all reports.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::SystemTime;

use crate::clock::Clock;
use crate::keys::Keyring;

/// How a report arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    Web,
    Api,
    Email,
}

impl Channel {
    pub const ALL: [Channel; 3] = [Channel::Web, Channel::Api, Channel::Email];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Web => "web",
            Channel::Api => "api",
            Channel::Email => "email",
        }
    }
}

/// Why a request or message was refused; one label value each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// A field or the input JSON failed validation (400).
    Invalid,
    /// Over `[limits]` (413).
    TooLarge,
    /// Not multipart / not the expected content type (415).
    UnsupportedType,
    /// Over `rate_limit_per_minute` (429).
    RateLimited,
    /// Every upload slot (`max_concurrent_uploads`) taken (503).
    Busy,
    /// No usable maintainer certificate: fail closed (503).
    NoKey,
    /// The store could not take the report (503).
    StoreError,
    /// Over `upload_timeout`.
    Timeout,
    /// A maintainer route without a valid token (401).
    Unauthorized,
    /// Anything else (500).
    Internal,
}

impl Rejection {
    pub const ALL: [Rejection; 10] = [
        Rejection::Invalid,
        Rejection::TooLarge,
        Rejection::UnsupportedType,
        Rejection::RateLimited,
        Rejection::Busy,
        Rejection::NoKey,
        Rejection::StoreError,
        Rejection::Timeout,
        Rejection::Unauthorized,
        Rejection::Internal,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::Invalid => "invalid",
            Rejection::TooLarge => "too_large",
            Rejection::UnsupportedType => "unsupported_type",
            Rejection::RateLimited => "rate_limited",
            Rejection::Busy => "busy",
            Rejection::NoKey => "no_key",
            Rejection::StoreError => "store_error",
            Rejection::Timeout => "timeout",
            Rejection::Unauthorized => "unauthorized",
            Rejection::Internal => "internal",
        }
    }
}

/// `i64::MIN` in [`Metrics::earliest_expiry`]: no usable certificate expires.
const NO_EXPIRY: i64 = i64::MIN;

/// The intake's counters, updated with relaxed atomics: cheap enough for
/// every request. Share it as `Arc<Metrics>`.
#[derive(Debug)]
pub struct Metrics {
    clock: Clock,
    accepted: [AtomicU64; Channel::ALL.len()],
    rejected: [AtomicU64; Rejection::ALL.len()],
    bytes_sealed: AtomicU64,
    connections_shed: AtomicU64,
    usable_keys: AtomicU64,
    /// Unix seconds of the earliest expiry of a usable certificate.
    earliest_expiry: AtomicI64,
    poller_backlog: AtomicU64,
    poller_errors: AtomicU64,
    mail_oversized: AtomicU64,
    notices_sent: AtomicU64,
    notices_failed: AtomicU64,
    retention_deleted: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new(Clock::system())
    }
}

impl Metrics {
    /// All counters at zero; `clock` gives "now" for the days-until-expiry gauge.
    pub fn new(clock: Clock) -> Metrics {
        Metrics {
            clock,
            accepted: Default::default(),
            rejected: Default::default(),
            bytes_sealed: AtomicU64::new(0),
            connections_shed: AtomicU64::new(0),
            usable_keys: AtomicU64::new(0),
            earliest_expiry: AtomicI64::new(NO_EXPIRY),
            poller_backlog: AtomicU64::new(0),
            poller_errors: AtomicU64::new(0),
            mail_oversized: AtomicU64::new(0),
            notices_sent: AtomicU64::new(0),
            notices_failed: AtomicU64::new(0),
            retention_deleted: AtomicU64::new(0),
        }
    }

    /// One report committed to the store through `channel`.
    pub fn report_accepted(&self, channel: Channel) {
        self.accepted[channel as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// One request or message refused for `reason`.
    pub fn rejected(&self, reason: Rejection) {
        self.rejected[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// A connection over `max_connections` was answered 503 and closed.
    pub fn connection_shed(&self) {
        self.connections_shed.fetch_add(1, Ordering::Relaxed);
    }

    /// Ciphertext bytes committed (add the sum of a report's parts).
    pub fn bytes_sealed(&self, bytes: u64) {
        self.bytes_sealed.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Sets the key gauges from a freshly loaded keyring (start, SIGHUP,
    /// daily check).
    pub fn set_keys(&self, keyring: &Keyring) {
        let usable = keyring.entries.iter().filter(|e| e.is_usable()).count();
        self.usable_keys.store(usable as u64, Ordering::Relaxed);
        let expiry = keyring
            .earliest_expiry()
            .map(unix_secs)
            .unwrap_or(NO_EXPIRY);
        self.earliest_expiry.store(expiry, Ordering::Relaxed);
    }

    /// Messages waiting in the mailbox at the poller's last look.
    pub fn set_poller_backlog(&self, messages: u64) {
        self.poller_backlog.store(messages, Ordering::Relaxed);
    }

    /// One failed poll (connection, login, sealing).
    pub fn poller_error(&self) {
        self.poller_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// One message left in the mailbox for being larger than the poller
    /// seals (counted once per message and poller run).
    pub fn mail_oversized(&self) {
        self.mail_oversized.fetch_add(1, Ordering::Relaxed);
    }

    /// One notice delivered to one target.
    pub fn notice_sent(&self) {
        self.notices_sent.fetch_add(1, Ordering::Relaxed);
    }

    /// One notice given up on after its retries.
    pub fn notice_failed(&self) {
        self.notices_failed.fetch_add(1, Ordering::Relaxed);
    }

    /// Reports deleted by the retention task.
    pub fn retention_deleted(&self, reports: u64) {
        self.retention_deleted.fetch_add(reports, Ordering::Relaxed);
    }

    /// Current value of the accepted counter of `channel`.
    pub fn accepted(&self, channel: Channel) -> u64 {
        self.accepted[channel as usize].load(Ordering::Relaxed)
    }

    /// Days (fractional) from now until the earliest usable certificate
    /// expires: negative once it has, `+Inf` when none expires, `NaN` when
    /// no certificate is usable.
    pub fn days_until_expiry(&self) -> f64 {
        if self.usable_keys.load(Ordering::Relaxed) == 0 {
            return f64::NAN;
        }
        match self.earliest_expiry.load(Ordering::Relaxed) {
            NO_EXPIRY => f64::INFINITY,
            at => (at - unix_secs(self.clock.now())) as f64 / 86_400.0,
        }
    }

    /// Everything, in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);

        header(
            &mut out,
            "embargo_reports_accepted_total",
            "counter",
            "Reports sealed and committed, by channel.",
        );
        for c in Channel::ALL {
            let _ = writeln!(
                out,
                "embargo_reports_accepted_total{{channel=\"{}\"}} {}",
                c.as_str(),
                load(&self.accepted[c as usize])
            );
        }
        header(
            &mut out,
            "embargo_reports_rejected_total",
            "counter",
            "Reports or requests refused, by reason.",
        );
        for r in Rejection::ALL {
            let _ = writeln!(
                out,
                "embargo_reports_rejected_total{{reason=\"{}\"}} {}",
                r.as_str(),
                load(&self.rejected[r as usize])
            );
        }
        let plain = self.plain_series();
        for (name, kind, help, value) in plain {
            header(&mut out, name, kind, help);
            let _ = writeln!(out, "{name} {value}");
        }
        out
    }
    /// The series without labels: name, type, help and value.
    fn plain_series(&self) -> [(&'static str, &'static str, &'static str, String); 10] {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        [
            (
                "embargo_sealed_bytes_total",
                "counter",
                "Ciphertext bytes committed, over all reports.",
                load(&self.bytes_sealed).to_string(),
            ),
            (
                "embargo_connections_shed_total",
                "counter",
                "Connections over [limits] max_connections, answered 503 and closed.",
                load(&self.connections_shed).to_string(),
            ),
            (
                "embargo_usable_keys",
                "gauge",
                "Maintainer certificates usable at the last key load.",
                load(&self.usable_keys).to_string(),
            ),
            (
                "embargo_key_expiry_days",
                "gauge",
                "Days until the earliest usable certificate expires (+Inf: never; NaN: none usable).",
                prom_float(self.days_until_expiry()),
            ),
            (
                "embargo_poller_backlog",
                "gauge",
                "Messages waiting in the mailbox at the poller's last look.",
                load(&self.poller_backlog).to_string(),
            ),
            (
                "embargo_poller_errors_total",
                "counter",
                "Failed mailbox polls.",
                load(&self.poller_errors).to_string(),
            ),
            (
                "embargo_poller_oversized_total",
                "counter",
                "Messages left in the mailbox for exceeding max_mail_bytes (once per message and run).",
                load(&self.mail_oversized).to_string(),
            ),
            (
                "embargo_notices_sent_total",
                "counter",
                "New-report and key notices delivered (per target).",
                load(&self.notices_sent).to_string(),
            ),
            (
                "embargo_notices_failed_total",
                "counter",
                "Notices given up on after retries (per target).",
                load(&self.notices_failed).to_string(),
            ),
            (
                "embargo_retention_deleted_total",
                "counter",
                "Reports deleted by [retention].",
                load(&self.retention_deleted).to_string(),
            ),
        ]
    }
}

/// The `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Appends the case gauges, computed at scrape time from the stored case
/// statuses: cases by state, and overdue obligations by kind. Labels are
/// fixed words, never a report ID.
pub fn render_cases(out: &mut String, by_state: &[(&str, u64)], overdue: &[(&str, u64)]) {
    header(
        out,
        "embargo_cases",
        "gauge",
        "Cases by state, from the case statuses maintainers sent (a report without one is new).",
    );
    for (state, n) in by_state {
        let _ = writeln!(out, "embargo_cases{{state=\"{state}\"}} {n}");
    }
    header(
        out,
        "embargo_obligations_overdue",
        "gauge",
        "Open cases whose acknowledgement, assessment or status update is overdue, by obligation.",
    );
    for (what, n) in overdue {
        let _ = writeln!(
            out,
            "embargo_obligations_overdue{{obligation=\"{what}\"}} {n}"
        );
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn prom_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v:.3}")
    }
}

fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};
    use std::time::Duration;

    /// Parses exposition text strictly: every line is `# HELP`, `# TYPE` or
    /// a sample `name{labels} value`. Returns (name, labels, value) samples.
    fn parse(text: &str) -> Vec<(String, BTreeMap<String, String>, f64)> {
        let mut typed = BTreeSet::new();
        let mut samples = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                assert!(rest.split_once(' ').is_some(), "HELP without text: {line}");
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(["counter", "gauge"].contains(&kind), "{line}");
                assert!(typed.insert(name.to_string()), "TYPE given twice: {line}");
                continue;
            }
            assert!(!line.starts_with('#'), "stray comment: {line}");
            let (series, value) = line.rsplit_once(' ').unwrap();
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                "NaN" => f64::NAN,
                v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
            };
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => {
                    let inner = rest
                        .strip_suffix('}')
                        .unwrap_or_else(|| panic!("unclosed labels: {line}"));
                    let labels = inner
                        .split(',')
                        .map(|kv| {
                            let (k, v) = kv.split_once('=').unwrap();
                            let v = v
                                .strip_prefix('"')
                                .and_then(|v| v.strip_suffix('"'))
                                .unwrap();
                            (k.to_string(), v.to_string())
                        })
                        .collect();
                    (name.to_string(), labels)
                }
                None => (series.to_string(), BTreeMap::new()),
            };
            assert!(
                name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "name {name}"
            );
            assert!(typed.contains(&name), "sample before its TYPE: {line}");
            samples.push((name, labels, value));
        }
        samples
    }

    fn value(
        samples: &[(String, BTreeMap<String, String>, f64)],
        name: &str,
        label: Option<(&str, &str)>,
    ) -> f64 {
        samples
            .iter()
            .find(|(n, l, _)| {
                n == name && label.is_none_or(|(k, v)| l.get(k).map(String::as_str) == Some(v))
            })
            .map(|(_, _, v)| *v)
            .unwrap_or_else(|| panic!("no sample {name} {label:?}"))
    }

    #[test]
    fn values_change_as_reports_arrive_and_are_refused() {
        let m = Metrics::default();
        let before = parse(&m.render());
        assert_eq!(
            value(
                &before,
                "embargo_reports_accepted_total",
                Some(("channel", "web"))
            ),
            0.0
        );
        m.report_accepted(Channel::Web);
        m.report_accepted(Channel::Web);
        m.report_accepted(Channel::Email);
        m.rejected(Rejection::TooLarge);
        m.rejected(Rejection::RateLimited);
        m.bytes_sealed(1000);
        m.bytes_sealed(24);
        m.set_poller_backlog(7);
        m.poller_error();
        m.notice_sent();
        m.retention_deleted(2);
        let after = parse(&m.render());
        assert_eq!(
            value(
                &after,
                "embargo_reports_accepted_total",
                Some(("channel", "web"))
            ),
            2.0
        );
        assert_eq!(
            value(
                &after,
                "embargo_reports_accepted_total",
                Some(("channel", "api"))
            ),
            0.0
        );
        assert_eq!(
            value(
                &after,
                "embargo_reports_accepted_total",
                Some(("channel", "email"))
            ),
            1.0
        );
        assert_eq!(
            value(
                &after,
                "embargo_reports_rejected_total",
                Some(("reason", "too_large"))
            ),
            1.0
        );
        assert_eq!(
            value(
                &after,
                "embargo_reports_rejected_total",
                Some(("reason", "rate_limited"))
            ),
            1.0
        );
        assert_eq!(
            value(
                &after,
                "embargo_reports_rejected_total",
                Some(("reason", "invalid"))
            ),
            0.0
        );
        assert_eq!(value(&after, "embargo_sealed_bytes_total", None), 1024.0);
        assert_eq!(value(&after, "embargo_poller_backlog", None), 7.0);
        assert_eq!(value(&after, "embargo_poller_errors_total", None), 1.0);
        assert_eq!(value(&after, "embargo_notices_sent_total", None), 1.0);
        assert_eq!(value(&after, "embargo_retention_deleted_total", None), 2.0);
        assert!(
            value(&after, "embargo_key_expiry_days", None).is_nan(),
            "no keys loaded yet"
        );
        assert_eq!(m.accepted(Channel::Web), 2);
    }

    #[test]
    fn key_gauges_follow_the_keyring_and_the_clock() {
        use openpgp::cert::prelude::*;
        use sequoia_openpgp as openpgp;
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let (cert, _) = CertBuilder::general_purpose(Some("a@example.org"))
            .set_creation_time(start - Duration::from_secs(3600))
            .set_validity_period(Duration::from_secs(10 * 86_400 + 3600))
            .generate()
            .unwrap();
        let (forever, _) = CertBuilder::general_purpose(Some("b@example.org"))
            .set_creation_time(start - Duration::from_secs(3600))
            .set_validity_period(None)
            .generate()
            .unwrap();
        let entry = |c| crate::keys::judge(std::path::Path::new("k.asc"), c, start);
        let keyring = |entries| Keyring {
            dir: "keys".into(),
            entries,
            bad_files: vec![],
            checked_at: start,
        };

        let m = Metrics::new(Clock::fixed(start + Duration::from_secs(3 * 86_400)));
        m.set_keys(&keyring(vec![entry(cert.clone()), entry(forever.clone())]));
        let s = parse(&m.render());
        assert_eq!(value(&s, "embargo_usable_keys", None), 2.0);
        assert_eq!(value(&s, "embargo_key_expiry_days", None), 7.0);

        m.set_keys(&keyring(vec![entry(forever)]));
        assert_eq!(
            value(&parse(&m.render()), "embargo_key_expiry_days", None),
            f64::INFINITY
        );

        let late = Metrics::new(Clock::fixed(start + Duration::from_secs(12 * 86_400)));
        late.set_keys(&keyring(vec![entry(cert)]));
        assert_eq!(
            value(&parse(&late.render()), "embargo_key_expiry_days", None),
            -2.0,
            "expired two days ago"
        );
    }

    #[test]
    fn no_label_outside_the_fixed_sets() {
        let m = Metrics::default();
        for c in Channel::ALL {
            m.report_accepted(c);
        }
        for r in Rejection::ALL {
            m.rejected(r);
        }
        let allowed: BTreeMap<&str, BTreeSet<&str>> = [
            ("channel", Channel::ALL.iter().map(|c| c.as_str()).collect()),
            (
                "reason",
                Rejection::ALL.iter().map(|r| r.as_str()).collect(),
            ),
        ]
        .into_iter()
        .collect();
        let samples = parse(&m.render());
        assert!(samples.len() >= 3 + 10 + 8, "{samples:?}");
        for (name, labels, _) in &samples {
            assert!(labels.len() <= 1, "{name} has several labels");
            for (k, v) in labels {
                let values = allowed
                    .get(k.as_str())
                    .unwrap_or_else(|| panic!("label {k} on {name} is not allowed"));
                assert!(
                    values.contains(v.as_str()),
                    "label value {v:?} on {name} is not in the fixed set"
                );
            }
        }
        // Every label value is a fixed, distinct identifier.
        let values: Vec<&str> = Rejection::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(values.iter().collect::<BTreeSet<_>>().len(), values.len());
        assert!(
            values
                .iter()
                .all(|v| v.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
        );
    }
}
