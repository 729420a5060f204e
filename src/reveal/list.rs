//! `embargo list`: decrypts only the manifests and shows the reports sorted
//! by urgency, with the deadlines `[policy]` sets, as a table or as JSON.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use zeroize::Zeroize;

use super::Error;
use super::keysource::{KeyArgs, SignerArgs};
use super::names::is_deceptive;
use crate::clock::{Clock, parse_rfc3339, rfc3339};
use crate::config::Policy;
use crate::report::{Deadlines, Severity};
use crate::seal::{Opener, RevealError, SignatureCheck};
use crate::store::{FsStore, Store};

/// Titles longer than this are cut in the table (not in JSON).
pub const TITLE_COLUMN_CHARS: usize = 50;

/// What `embargo list` was asked to do.
#[derive(Clone, Debug)]
pub struct ListArgs {
    pub store: PathBuf,
    pub keys: KeyArgs,
    pub signer: SignerArgs,
    pub policy: Policy,
    pub clock: Clock,
}

/// One report in the listing; fields are `None` when it cannot be opened.
#[derive(Clone, Debug, Serialize)]
pub struct ListRow {
    pub id: String,
    /// `ok`, or `unreadable` (see `error`).
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub received_at: Option<String>,
    pub age_seconds: Option<u64>,
    pub title: Option<String>,
    pub severity: Option<Severity>,
    pub cvss_score: Option<f64>,
    pub cvss_rating: Option<String>,
    pub attachments: Option<usize>,
    pub attachments_bytes: Option<u64>,
    pub acknowledge_by: Option<String>,
    pub fix_by: Option<String>,
    pub acknowledge_overdue: bool,
    pub fix_overdue: bool,
    pub signature_checked: bool,
    #[serde(skip)]
    urgency: Option<(SystemTime, std::cmp::Reverse<Severity>, SystemTime)>,
}

impl Drop for ListRow {
    fn drop(&mut self) {
        self.title.zeroize();
    }
}

/// The reports of a store, most urgent first.
#[derive(Debug)]
pub struct Listing {
    pub rows: Vec<ListRow>,
    pub now: SystemTime,
}

/// Opens every manifest of the store; a report the key cannot open is
/// listed with the reason, never skipped.
pub fn list(args: &ListArgs) -> Result<Listing, Error> {
    if !args.store.join("reports").is_dir() {
        return Err(Error::Read {
            path: args.store.join("reports"),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no store here (give the directory that holds reports/)",
            ),
        });
    }
    let store = FsStore::open_read_only(&args.store)?;
    let opener = Opener::new(args.keys.open()?, args.signer.resolve()?);
    let now = args.clock.now();
    let mut rows = Vec::new();
    for id in store.list()? {
        let row = match opener.open_manifest(&store, &id) {
            Ok(opened) => {
                let m = &opened.manifest;
                let received = parse_rfc3339(&m.received_at);
                let deadlines =
                    received.map(|r| Deadlines::for_report(&args.policy, r, m.report.severity));
                let overdue = |t: Option<SystemTime>| t.is_some_and(|t| now > t);
                ListRow {
                    id: id.to_string(),
                    status: "ok",
                    error: None,
                    received_at: received.map(rfc3339),
                    age_seconds: received
                        .map(|r| now.duration_since(r).unwrap_or_default().as_secs()),
                    title: Some(m.report.title.clone()),
                    severity: Some(m.report.severity),
                    cvss_score: m.report.cvss.as_ref().map(|c| c.score),
                    cvss_rating: m.report.cvss.as_ref().map(|c| c.rating.clone()),
                    attachments: Some(m.attachments.len()),
                    attachments_bytes: Some(attachments_bytes(m)),
                    acknowledge_by: deadlines.as_ref().map(|d| rfc3339(d.acknowledge_by)),
                    fix_by: deadlines.as_ref().and_then(|d| d.fix_by).map(rfc3339),
                    acknowledge_overdue: overdue(deadlines.as_ref().map(|d| d.acknowledge_by)),
                    fix_overdue: overdue(deadlines.as_ref().and_then(|d| d.fix_by)),
                    signature_checked: matches!(opened.signature, SignatureCheck::Verified(_)),
                    urgency: deadlines.map(|d| {
                        (
                            d.fix_by.unwrap_or(d.acknowledge_by),
                            std::cmp::Reverse(m.report.severity),
                            received.unwrap_or(now),
                        )
                    }),
                }
            }
            Err(e) => unreadable(id.to_string(), &e),
        };
        rows.push(row);
    }
    // Most urgent first: earliest fix deadline (the acknowledgement one when
    // the severity sets none), then higher severity; unreadable ones last.
    rows.sort_by(|a, b| match (&a.urgency, &b.urgency) {
        (Some(x), Some(y)) => x.cmp(y).then_with(|| a.id.cmp(&b.id)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.id.cmp(&b.id),
    });
    Ok(Listing { rows, now })
}

/// The attachments' total size. A manifest is signed, but whoever holds a
/// maintainer key could still craft one: the sum saturates at `u64::MAX`
/// (16777216.0 TiB in the table) instead of wrapping to a harmless-looking
/// number.
pub fn attachments_bytes(m: &crate::seal::Manifest) -> u64 {
    m.attachments
        .iter()
        .map(|a| a.size)
        .fold(0, u64::saturating_add)
}

fn unreadable(id: String, e: &RevealError) -> ListRow {
    let error = match e {
        RevealError::NoMatchingKey { .. } => "not encrypted to this key".to_string(),
        RevealError::Gpg { .. } => {
            "gpg has no secret key for it (not encrypted to this key?)".to_string()
        }
        other => other.to_string().chars().take(300).collect(),
    };
    ListRow {
        id,
        status: "unreadable",
        error: Some(error),
        received_at: None,
        age_seconds: None,
        title: None,
        severity: None,
        cvss_score: None,
        cvss_rating: None,
        attachments: None,
        attachments_bytes: None,
        acknowledge_by: None,
        fix_by: None,
        acknowledge_overdue: false,
        fix_overdue: false,
        signature_checked: false,
        urgency: None,
    }
}

impl Listing {
    /// The rows as a JSON array, for scripts.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(&self.rows).unwrap_or_else(|_| "[]".into())
    }

    /// Whether no manifest signature could be checked (no signer pinned).
    pub fn any_unchecked(&self) -> bool {
        self.rows
            .iter()
            .any(|r| r.status == "ok" && !r.signature_checked)
    }

    /// The table; overdue dates in red when `colour` (a terminal).
    pub fn to_table(&self, colour: bool) -> String {
        let header = [
            "ID",
            "RECEIVED (UTC)",
            "AGE",
            "SEVERITY",
            "FILES",
            "SIZE",
            "ACK DUE",
            "FIX DUE",
            "TITLE",
        ];
        let mut cells: Vec<Vec<(String, bool)>> = Vec::new();
        for r in &self.rows {
            let mut row = vec![(r.id.clone(), false)];
            if let Some(error) = &r.error {
                row.extend(std::iter::repeat_n(("-".to_string(), false), 7));
                row.push((format!("CANNOT OPEN: {}", one_line(error, 120)), true));
                cells.push(row);
                continue;
            }
            let received = r.received_at.as_deref().and_then(parse_rfc3339);
            row.push((
                received.map(short_time).unwrap_or_else(|| "?".into()),
                false,
            ));
            row.push((
                r.age_seconds
                    .map(|s| age(Duration::from_secs(s)))
                    .unwrap_or_else(|| "?".into()),
                false,
            ));
            let severity = r.severity.map(|s| s.to_string()).unwrap_or_default();
            let severity = match r.cvss_score {
                Some(score) => format!("{severity} {score:.1}"),
                None => severity,
            };
            row.push((severity, false));
            row.push((r.attachments.unwrap_or(0).to_string(), false));
            row.push((size(r.attachments_bytes.unwrap_or(0)), false));
            for (due, overdue) in [
                (&r.acknowledge_by, r.acknowledge_overdue),
                (&r.fix_by, r.fix_overdue),
            ] {
                let text = due
                    .as_deref()
                    .and_then(parse_rfc3339)
                    .map(short_time)
                    .unwrap_or_else(|| "-".into());
                row.push((
                    if overdue {
                        format!("{text} OVERDUE")
                    } else {
                        text
                    },
                    overdue,
                ));
            }
            row.push((
                one_line(r.title.as_deref().unwrap_or(""), TITLE_COLUMN_CHARS),
                false,
            ));
            cells.push(row);
        }
        let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
        for row in &cells {
            for (w, (text, _)) in widths.iter_mut().zip(row) {
                *w = (*w).max(text.chars().count());
            }
        }
        let mut out = String::new();
        let last = header.len() - 1;
        for (i, h) in header.iter().enumerate() {
            let _ = if i == last {
                writeln!(out, "{h}")
            } else {
                write!(out, "{h:<w$}  ", w = widths[i])
            };
        }
        for row in &cells {
            for (i, (text, alert)) in row.iter().enumerate() {
                let pad = widths[i].saturating_sub(text.chars().count());
                let shown = if *alert && colour {
                    format!("\x1b[1;31m{text}\x1b[0m")
                } else {
                    text.clone()
                };
                let _ = if i == last {
                    writeln!(out, "{shown}")
                } else {
                    write!(out, "{shown}{}  ", " ".repeat(pad))
                };
            }
        }
        let unreadable = self.rows.iter().filter(|r| r.error.is_some()).count();
        let overdue = self
            .rows
            .iter()
            .filter(|r| r.acknowledge_overdue || r.fix_overdue)
            .count();
        let _ = writeln!(
            out,
            "{} report{}, {overdue} overdue, {unreadable} cannot be opened with this key (now {}).",
            self.rows.len(),
            if self.rows.len() == 1 { "" } else { "s" },
            rfc3339(self.now)
        );
        out
    }
}

/// One line of untrusted text for a terminal: no control or bidi characters, at most `max` characters.
fn one_line(s: &str, max: usize) -> String {
    let clean: String = s
        .chars()
        .map(|c| {
            if c == '\n' || c == '\t' || c == '\r' {
                ' '
            } else {
                c
            }
        })
        .filter(|c| !c.is_control() && !is_deceptive(*c))
        .collect();
    if clean.chars().count() > max {
        let mut cut: String = clean.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    } else {
        clean
    }
}

fn short_time(t: SystemTime) -> String {
    let t = time::OffsetDateTime::from(t);
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]");
    t.format(&format).unwrap_or_else(|_| "?".into())
}

fn age(d: Duration) -> String {
    let s = d.as_secs();
    let (days, hours, minutes) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60);
    if days > 0 {
        format!("{days}d {hours}h")
    } else if hours > 0 {
        format!("{hours}h {minutes}m")
    } else {
        format!("{minutes}m")
    }
}

fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_plain_and_short() {
        assert_eq!(one_line("a\u{202E}b\x1b[31mc\nd", 50), "ab[31mc d");
        assert_eq!(one_line("abcdef", 4), "abc…");
        assert_eq!(age(Duration::from_secs(3 * 86_400 + 7200)), "3d 2h");
        assert_eq!(age(Duration::from_secs(59)), "0m");
        assert_eq!(size(1536), "1.5 KiB");
    }
}
