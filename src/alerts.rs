//! Key-expiry alerts: a maintainer certificate that expires in 30, 7 or 1
//! days, one that expired or became unusable, and the loud one: no usable
//! certificate at all, so the intake refuses every report (fail closed).
//!
//! Alerts name certificates only by fingerprint (public, like `/keys.asc`)
//! and never by file path, so they can be shown by `/healthz` and sent
//! through the notice channels. [`daily`] runs the check once a day.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::clock::{Clock, rfc3339};
use crate::keys::{Keyring, judge};
use crate::metrics::Metrics;

/// Days before expiry at which a warning is given, most urgent last.
pub const THRESHOLDS_DAYS: [u64; 3] = [30, 7, 1];

/// How often [`daily`] checks.
pub const CHECK_EVERY: Duration = Duration::from_secs(86_400);

/// How bad it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Expires within 30 days.
    Days30,
    /// Expires within 7 days.
    Days7,
    /// Expires within 1 day.
    Days1,
    /// Was usable when keys were loaded, has expired since: no longer used.
    Expired,
    /// Not usable (expired, revoked, no encryption subkey) when loaded.
    Unusable,
    /// Some certificates are unusable while others remain: reports are
    /// sealed to fewer maintainers than are configured.
    Degraded,
    /// No certificate is usable: every report is refused until one is added.
    NoUsableKey,
}

impl Level {
    fn for_days_left(days: u64) -> Option<Level> {
        match days {
            d if d < THRESHOLDS_DAYS[2] => Some(Level::Days1),
            d if d < THRESHOLDS_DAYS[1] => Some(Level::Days7),
            d if d < THRESHOLDS_DAYS[0] => Some(Level::Days30),
            _ => None,
        }
    }
}

/// One thing about the maintainer keys that needs a human.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Alert {
    pub level: Level,
    /// Hex fingerprint of the certificate; `None` for [`Level::NoUsableKey`].
    pub fingerprint: Option<String>,
    /// When it expires or expired (RFC 3339), when known.
    pub expires: Option<String>,
    /// What it means and what to do, without file paths.
    pub message: String,
}

impl Alert {
    /// The alert as one line for a notice: fingerprint and message, no path.
    pub fn notice_line(&self) -> String {
        match &self.fingerprint {
            Some(fpr) => format!("{fpr}: {}", self.message),
            None => self.message.clone(),
        }
    }
}

/// The alerts for `keyring` at `now`, most urgent first.
///
/// A certificate expiring in under 30, 7 or 1 day(s) gives the matching
/// warning; one that expired since the keyring was loaded gives
/// [`Level::Expired`] (the sealer already stops using it at its expiry);
/// one unusable at load gives [`Level::Unusable`]; and when nothing is
/// usable at `now` there is also a [`Level::NoUsableKey`] alert.
pub fn expiry_alerts(keyring: &Keyring, now: SystemTime) -> Vec<Alert> {
    let mut alerts = Vec::new();
    let mut usable_now = 0;
    for entry in &keyring.entries {
        let fingerprint = Some(entry.fingerprint().to_hex());
        if let Some(problem) = &entry.problem {
            alerts.push(Alert {
                level: Level::Unusable,
                fingerprint,
                expires: None,
                message: format!("certificate not used: {problem}"),
            });
            continue;
        }
        // Judged again at `now`: revocations or expiry since loading count.
        let judged = judge(&entry.file, entry.cert.clone(), now);
        let expires = entry.expires.map(rfc3339);
        if let Some(problem) = judged.problem {
            let expired = entry.expires.is_some_and(|t| t <= now);
            let message = if expired {
                format!(
                    "certificate expired {}: reports are no longer sealed to it; ask its maintainer to extend it, then reload keys (SIGHUP)",
                    expires.as_deref().unwrap_or("")
                )
            } else {
                format!("certificate no longer used: {problem}")
            };
            alerts.push(Alert {
                level: if expired {
                    Level::Expired
                } else {
                    Level::Unusable
                },
                fingerprint,
                expires,
                message,
            });
            continue;
        }
        usable_now += 1;
        let Some(at) = entry.expires else { continue };
        let left = at.duration_since(now).unwrap_or_default();
        let days = left.as_secs() / 86_400;
        if let Some(level) = Level::for_days_left(days) {
            alerts.push(Alert {
                level,
                fingerprint,
                message: format!(
                    "certificate expires in {} ({}): ask its maintainer to extend it and publish the new certificate, then reload keys (SIGHUP)",
                    human_left(left),
                    expires.as_deref().unwrap_or("")
                ),
                expires,
            });
        }
    }
    let unusable = alerts
        .iter()
        .filter(|a| matches!(a.level, Level::Expired | Level::Unusable))
        .filter_map(|a| a.fingerprint.clone())
        .collect::<Vec<_>>();
    let total = keyring.entries.len() + keyring.bad_files.len();
    if usable_now > 0 && usable_now < total {
        let mut named = unusable.join(", ");
        if !keyring.bad_files.is_empty() {
            if !named.is_empty() {
                named.push_str("; ");
            }
            named.push_str(&format!(
                "{} key file(s) holding no readable certificate",
                keyring.bad_files.len()
            ));
        }
        alerts.push(Alert {
            level: Level::Degraded,
            fingerprint: None,
            expires: None,
            message: format!(
                "{} of {total} maintainer certificates unusable ({named}): reports are sealed only to the {usable_now} usable one(s), so the others cannot read new reports; renew or replace the unusable certificates, then reload keys (SIGHUP)",
                total - usable_now
            ),
        });
    }
    if usable_now == 0 {
        alerts.push(Alert {
            level: Level::NoUsableKey,
            fingerprint: None,
            expires: None,
            message: "NO usable maintainer certificate: the intake refuses every report (HTTP 503, mail left in the mailbox) until a valid certificate is added to keys_dir and keys are reloaded".into(),
        });
    }
    alerts.sort_by_key(|a| std::cmp::Reverse(a.level));
    alerts
}

fn human_left(left: Duration) -> String {
    let days = left.as_secs() / 86_400;
    match days {
        0 => format!("{} hour(s)", left.as_secs() / 3600),
        1 => "1 day".into(),
        d => format!("{d} days"),
    }
}

/// When the alerts for `keyring` next change on their own: the earliest
/// expiry, after `now`, of a certificate usable at load time. Checked
/// then, an expiring certificate is announced at once, not at the next
/// daily check.
pub fn next_change(keyring: &Keyring, now: SystemTime) -> Option<SystemTime> {
    keyring
        .entries
        .iter()
        .filter(|e| e.is_usable())
        .filter_map(|e| e.expires)
        .filter(|t| *t > now)
        .min()
}

/// Remembers which alerts were already sent, so each certificate is
/// announced once per level (30, 7, 1 days, expired) rather than daily,
/// and a degraded keyring once per set of unusable certificates.
/// [`Level::NoUsableKey`] is repeated at every check while it lasts.
#[derive(Debug, Default)]
pub struct AlertTracker {
    sent: HashSet<AlertKey>,
}

/// What makes an alert the same one again.
type AlertKey = (Option<String>, Level, Option<String>);

fn alert_key(a: &Alert) -> AlertKey {
    // A degraded alert names no single certificate: its text (which
    // certificates, how many) tells one state from the next.
    let text = (a.level == Level::Degraded).then(|| a.message.clone());
    (a.fingerprint.clone(), a.level, text)
}

impl AlertTracker {
    /// The alerts of `alerts` not sent before; records them as sent.
    pub fn fresh(&mut self, alerts: &[Alert]) -> Vec<Alert> {
        let current: HashSet<AlertKey> = alerts.iter().map(alert_key).collect();
        // Forget what no longer holds (a renewed key may expire again later).
        self.sent.retain(|k| current.contains(k));
        alerts
            .iter()
            .filter(|a| a.level == Level::NoUsableKey || self.sent.insert(alert_key(a)))
            .cloned()
            .collect()
    }
}

/// The key check for `embargo serve`: once at start, whenever `recheck` is
/// notified (keys reloaded), at the instant a usable certificate expires,
/// and at least every [`CHECK_EVERY`], it gets the current keyring from
/// `keyring`, updates the key gauges of `metrics`, logs every alert and
/// hands each fresh one to `send` (the server passes the notifier's
/// queue). Ends when `shutdown` is cancelled.
pub async fn daily<F>(
    keyring: F,
    clock: Clock,
    metrics: Arc<Metrics>,
    send: impl Fn(&Alert) + Send + 'static,
    recheck: Arc<tokio::sync::Notify>,
    shutdown: tokio_util::sync::CancellationToken,
) where
    F: Fn() -> Option<Keyring> + Send + Sync + 'static,
{
    let keyring = Arc::new(keyring);
    let mut tracker = AlertTracker::default();
    loop {
        let get = keyring.clone();
        let mut wait = CHECK_EVERY;
        if let Ok(Some(ring)) = tokio::task::spawn_blocking(move || get()).await {
            metrics.set_keys(&ring);
            let now = clock.now();
            let alerts = expiry_alerts(&ring, now);
            for a in &alerts {
                let fpr = a.fingerprint.as_deref().unwrap_or("-");
                match a.level {
                    Level::NoUsableKey | Level::Expired | Level::Degraded => {
                        tracing::error!(fingerprint = fpr, "{}", a.message)
                    }
                    _ => tracing::warn!(fingerprint = fpr, "{}", a.message),
                }
            }
            for a in tracker.fresh(&alerts) {
                send(&a);
            }
            if let Some(at) = next_change(&ring, now) {
                // Just past the expiry, so the certificate is judged expired.
                let until = at.duration_since(now).unwrap_or_default() + Duration::from_secs(1);
                wait = wait.min(until);
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = recheck.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Keyring;
    use openpgp::cert::prelude::*;
    use sequoia_openpgp as openpgp;
    use std::path::Path;

    const DAY: u64 = 86_400;

    fn t0() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    /// A certificate created a day before t0 that expires `days` after t0.
    fn cert(uid: &str, days: Option<u64>) -> openpgp::Cert {
        let created = t0() - Duration::from_secs(DAY);
        CertBuilder::general_purpose(Some(uid))
            .set_creation_time(created)
            .set_validity_period(days.map(|d| Duration::from_secs((d + 1) * DAY)))
            .generate()
            .unwrap()
            .0
    }

    fn ring(certs: Vec<openpgp::Cert>, loaded: SystemTime) -> Keyring {
        let clock = Clock::fixed(loaded);
        Keyring {
            dir: "keys".into(),
            entries: certs
                .into_iter()
                .map(|c| judge(Path::new("keys/x.asc"), c, clock.now()))
                .collect(),
            bad_files: vec![],
            checked_at: loaded,
        }
    }

    fn levels(alerts: &[Alert]) -> Vec<Level> {
        alerts.iter().map(|a| a.level).collect()
    }

    #[test]
    fn thresholds_30_7_1_and_expired_with_a_fixed_clock() {
        let c = cert("a@example.org", Some(40));
        let keys = ring(vec![c.clone()], Clock::fixed(t0()).now());
        let at = |days_after: u64, hours: u64| {
            t0() + Duration::from_secs(days_after * DAY + hours * 3600)
        };
        assert!(
            expiry_alerts(&keys, at(0, 0)).is_empty(),
            "40 days left: nothing to say"
        );
        assert_eq!(levels(&expiry_alerts(&keys, at(11, 0))), [Level::Days30]);
        assert_eq!(levels(&expiry_alerts(&keys, at(34, 0))), [Level::Days7]);
        let one = expiry_alerts(&keys, at(39, 12));
        assert_eq!(levels(&one), [Level::Days1]);
        assert!(one[0].message.contains("12 hour(s)"), "{}", one[0].message);
        assert_eq!(
            one[0].fingerprint.as_deref(),
            Some(c.fingerprint().to_hex().as_str())
        );
        assert!(
            !one[0].message.contains("keys/x.asc"),
            "no file paths in alerts"
        );
        // Past expiry: the key is not used and it was the last one.
        assert_eq!(
            levels(&expiry_alerts(&keys, at(41, 0))),
            [Level::NoUsableKey, Level::Expired]
        );
    }

    #[test]
    fn the_last_usable_key_expiring_is_a_loud_fail_closed_alert_but_another_key_keeps_intake_open()
    {
        let short = cert("short@example.org", Some(2));
        let long = cert("long@example.org", None);
        let later = t0() + Duration::from_secs(3 * DAY);
        let both = ring(vec![short.clone(), long], t0());
        let degraded = expiry_alerts(&both, later);
        assert_eq!(levels(&degraded), [Level::Degraded, Level::Expired]);
        assert!(
            degraded[0]
                .message
                .starts_with("1 of 2 maintainer certificates unusable")
                && degraded[0].message.contains(&short.fingerprint().to_hex()),
            "{}",
            degraded[0].message
        );
        let alone = ring(vec![short], t0());
        let alerts = expiry_alerts(&alone, later);
        assert_eq!(levels(&alerts), [Level::NoUsableKey, Level::Expired]);
        assert!(alerts[0].message.contains("refuses every report"));
        // Loaded after expiry: unusable from the start, still fail closed.
        let loaded_late = ring(vec![cert("x@example.org", Some(2))], later);
        assert_eq!(
            levels(&expiry_alerts(&loaded_late, later)),
            [Level::NoUsableKey, Level::Unusable]
        );
        assert_eq!(
            levels(&expiry_alerts(&ring(vec![], t0()), t0())),
            [Level::NoUsableKey]
        );
    }

    #[test]
    fn each_level_is_sent_once_but_no_usable_key_repeats() {
        let keys = ring(vec![cert("a@example.org", Some(20))], t0());
        let mut tracker = AlertTracker::default();
        let first = expiry_alerts(&keys, t0());
        assert_eq!(tracker.fresh(&first).len(), 1);
        assert!(
            tracker
                .fresh(&expiry_alerts(&keys, t0() + Duration::from_secs(DAY)))
                .is_empty()
        );
        let week = expiry_alerts(&keys, t0() + Duration::from_secs(14 * DAY));
        assert_eq!(levels(&tracker.fresh(&week)), [Level::Days7]);
        let gone = expiry_alerts(&keys, t0() + Duration::from_secs(21 * DAY));
        assert_eq!(
            levels(&tracker.fresh(&gone)),
            [Level::NoUsableKey, Level::Expired]
        );
        assert_eq!(levels(&tracker.fresh(&gone)), [Level::NoUsableKey]);
    }
}
