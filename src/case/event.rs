//! One case event as sealed (`embargo.event.v1`): what happened to a report
//! after intake, who did it and when. The JSON comes out of ciphertext that
//! anyone with write access to a store could have planted, so
//! [`Event::from_json`] bounds and checks every field before anything else
//! looks at it.

use std::fmt;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use crate::clock::{parse_rfc3339, rfc3339_micros};
use crate::id::ReportId;
use crate::report::Severity;

/// The schema this version writes and reads.
pub const SCHEMA: &str = "embargo.event.v1";
/// Largest event plaintext accepted (the JSON, padding included).
pub const MAX_EVENT_BYTES: usize = 256 * 1024;
/// Largest message text in one event.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Largest signed receipt a `received` event holds.
pub const MAX_RECEIPT_BYTES: usize = 160 * 1024;
/// Largest message of a new event once written as a JSON string (escapes
/// included, quotes not). Twice [`MAX_MESSAGE_BYTES`]: text of quotes,
/// backslashes and line breaks stays within it, and an event with such a
/// message and [`MAX_EVENT_ATTACHMENTS`] files under the longest names
/// still fits in [`MAX_EVENT_BYTES`]. Only a message thick with other
/// control characters (six bytes each once escaped) goes over.
pub const MAX_ENCODED_MESSAGE_BYTES: usize = 2 * MAX_MESSAGE_BYTES;
/// Most files one event lists.
pub const MAX_EVENT_ATTACHMENTS: usize = 100;
/// Largest short field (a version, a commit, an advisory ID, a URL).
pub const MAX_SHORT_BYTES: usize = 512;
/// Event plaintext is padded with JSON whitespace to a multiple of this,
/// so that the size of an event says little about what it holds.
pub const PAD_TO: usize = 4096;

/// What can be wrong with an event's plaintext. No variant quotes it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventError {
    #[error("the event is larger than {MAX_EVENT_BYTES} bytes")]
    TooLarge,
    #[error("the event is not embargo event JSON: {0}")]
    Json(String),
    #[error("the event has schema {0:?}, not {SCHEMA}")]
    Schema(String),
    #[error("the event's {field} is not valid: {why}")]
    Field { field: &'static str, why: String },
}

/// What keeps `m` from being the message of an event a reader accepts.
fn stored_message_problem(m: &str) -> Option<&'static str> {
    if m.len() > MAX_MESSAGE_BYTES {
        Some("is longer than 64 KiB")
    } else if m.contains('\0') {
        Some("holds a NUL byte")
    } else {
        None
    }
}

/// What keeps `m` from being the message of a new event, if anything: a
/// reader's bounds, and [`MAX_ENCODED_MESSAGE_BYTES`] once escaped, so the
/// event is never refused as too large after its files were sealed. The
/// answer never quotes `m`.
pub fn new_message_problem(m: &str) -> Option<&'static str> {
    stored_message_problem(m).or_else(|| {
        (json_string_len(m) > MAX_ENCODED_MESSAGE_BYTES)
            .then_some("holds so many control characters that it is too long once encoded")
    })
}

/// The length of `s` as serde_json writes it into a string, without the
/// quotes: `"`, `\\` and the five short escapes take two bytes, every other
/// control character six.
fn json_string_len(s: &str) -> usize {
    s.bytes()
        .map(|b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0..0x20 => 6,
            _ => 1,
        })
        .sum()
}

/// `raw` as an event may list it for a file's name: control characters
/// dropped, then at most 255 characters and [`MAX_SHORT_BYTES`] bytes.
pub fn attachment_name(raw: &str) -> String {
    let mut name = String::new();
    for c in raw.chars().filter(|c| !c.is_control()).take(255) {
        if name.len() + c.len_utf8() > MAX_SHORT_BYTES {
            break;
        }
        name.push(c);
    }
    name
}

/// A random event ID: 32 lower-case hex digits (128 bits). The stored event
/// is named `<ID>.pgp`, so a copy under another name is detected.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventId(String);

impl EventId {
    /// A fresh random ID.
    pub fn random() -> EventId {
        let bytes: [u8; 16] = rand::random();
        EventId(hex::encode(bytes))
    }

    /// Parses an ID (exactly 32 lower-case hex digits).
    pub fn parse(s: &str) -> Option<EventId> {
        (s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| EventId(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name of the stored event: `<ID>.pgp`.
    pub fn file_name(&self) -> String {
        format!("{}.pgp", self.0)
    }

    /// The ID a stored event's file name claims, if it is one.
    pub fn from_file_name(name: &str) -> Option<EventId> {
        EventId::parse(name.strip_suffix(".pgp")?)
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventId({})", self.0)
    }
}

/// What an event records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// The intake's own record that the report arrived.
    Received,
    Acknowledged,
    Assessed,
    /// A status update to the reporter.
    Status,
    /// A maintainer's answer to the reporter.
    Reply,
    /// For maintainers only.
    Note,
    Fix,
    Advisory,
    Closed,
    Reopened,
    /// What the reporter sent through the status page (signed by the intake).
    ReporterMessage,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Received => "received",
            Kind::Acknowledged => "acknowledged",
            Kind::Assessed => "assessed",
            Kind::Status => "status",
            Kind::Reply => "reply",
            Kind::Note => "note",
            Kind::Fix => "fix",
            Kind::Advisory => "advisory",
            Kind::Closed => "closed",
            Kind::Reopened => "reopened",
            Kind::ReporterMessage => "reporter-message",
        }
    }

    /// Whether events of this kind are shown to the reporter (and so
    /// encrypted to the reply certificate too): everything but notes and
    /// the assessment.
    pub fn visible_by_default(self) -> bool {
        !matches!(self, Kind::Note | Kind::Assessed)
    }

    /// Whether the intake key (not a maintainer's) signs this kind.
    pub fn signed_by_intake(self) -> bool {
        matches!(self, Kind::Received | Kind::ReporterMessage)
    }
}

/// A CVSS vector as the assessment gives it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CvssVector {
    pub vector: String,
}

/// The maintainers' (provisional) assessment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assessment {
    pub severity: Severity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cvss: Option<CvssVector>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cwe: Vec<String>,
}

/// A fix, planned or released.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fix {
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    #[serde(default)]
    pub released: bool,
}

/// Public identifiers of the advisory.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Advisory {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ghsa: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cve: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// How a case was closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Resolution {
    Fixed,
    Duplicate,
    Invalid,
    Wontfix,
    OutOfScope,
}

impl Resolution {
    pub fn as_str(self) -> &'static str {
        match self {
            Resolution::Fixed => "fixed",
            Resolution::Duplicate => "duplicate",
            Resolution::Invalid => "invalid",
            Resolution::Wontfix => "wontfix",
            Resolution::OutOfScope => "out-of-scope",
        }
    }
}

impl std::str::FromStr for Resolution {
    type Err = String;

    fn from_str(s: &str) -> Result<Resolution, String> {
        Ok(match s {
            "fixed" => Resolution::Fixed,
            "duplicate" => Resolution::Duplicate,
            "invalid" => Resolution::Invalid,
            "wontfix" => Resolution::Wontfix,
            "out-of-scope" => Resolution::OutOfScope,
            _ => {
                return Err(format!(
                    "{s:?} is not a resolution: use fixed, duplicate, invalid, wontfix or out-of-scope"
                ));
            }
        })
    }
}

/// A file that came with an event, sealed as its own part.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventAttachment {
    pub file: String,
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

/// One event's plaintext. The message may hold report details: it is wiped
/// when the event is dropped.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub schema: String,
    pub report: ReportId,
    pub event: EventId,
    /// RFC 3339, UTC, to the microsecond.
    pub at: String,
    /// Hex fingerprint of the key that signed the event.
    pub author: String,
    pub kind: Kind,
    #[serde(default)]
    pub visible_to_reporter: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assessment: Option<Assessment>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix: Option<Fix>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advisory: Option<Advisory>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<Resolution>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<EventAttachment>,
    /// In a `received` event: the promises in force when the report arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<crate::seal::SealedPolicy>,
    /// In a `received` event: the severity the reporter gave (deadlines
    /// follow it until the maintainers assess the report).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    /// In a `received` event: the signed receipt the reporter was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<String>,
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Event({} {} {} by {})",
            self.report,
            self.event,
            self.kind.as_str(),
            self.author
        )
    }
}

impl Drop for Event {
    fn drop(&mut self) {
        if let Some(m) = &mut self.message {
            m.zeroize();
        }
    }
}

impl Event {
    /// A new event of `kind` on `report`, by `author`, at `at`; the fields
    /// that go with the kind are set by the caller.
    pub fn new(report: ReportId, kind: Kind, author: String, at: SystemTime) -> Event {
        Event {
            schema: SCHEMA.into(),
            report,
            event: EventId::random(),
            at: rfc3339_micros(at),
            author,
            kind,
            visible_to_reporter: Kind::visible_by_default(kind),
            message: None,
            assessment: None,
            fix: None,
            advisory: None,
            resolution: None,
            attachments: Vec::new(),
            policy: None,
            severity: None,
            receipt: None,
        }
    }

    /// When it happened.
    pub fn time(&self) -> Option<SystemTime> {
        parse_rfc3339(&self.at)
    }

    /// The JSON to seal, padded with trailing spaces to a multiple of
    /// [`PAD_TO`] bytes.
    pub fn to_padded_json(&self) -> Result<Zeroizing<Vec<u8>>, EventError> {
        self.check()?;
        let mut json =
            Zeroizing::new(serde_json::to_vec(self).map_err(|e| EventError::Json(e.to_string()))?);
        let padded = json.len().div_ceil(PAD_TO).max(1) * PAD_TO;
        if padded > MAX_EVENT_BYTES {
            return Err(EventError::TooLarge);
        }
        json.resize(padded, b' ');
        Ok(json)
    }

    /// Parses and checks an event's plaintext (trailing whitespace allowed).
    pub fn from_json(bytes: &[u8]) -> Result<Event, EventError> {
        if bytes.len() > MAX_EVENT_BYTES {
            return Err(EventError::TooLarge);
        }
        let event: Event =
            serde_json::from_slice(bytes).map_err(|e| EventError::Json(short(&e.to_string())))?;
        if event.schema != SCHEMA {
            return Err(EventError::Schema(event.schema.chars().take(40).collect()));
        }
        event.check()?;
        Ok(event)
    }

    /// Every field within its bounds, and what the kind needs present.
    fn check(&self) -> Result<(), EventError> {
        let bad = |field: &'static str, why: &str| {
            Err(EventError::Field {
                field,
                why: why.into(),
            })
        };
        if self.time().is_none() {
            return bad("at", "not an RFC 3339 time");
        }
        let fpr = self.author.len();
        if !(fpr == 40 || fpr == 64) || !self.author.bytes().all(|b| b.is_ascii_hexdigit()) {
            return bad("author", "not a key fingerprint (40 or 64 hex digits)");
        }
        if let Some(why) = self.message.as_deref().and_then(stored_message_problem) {
            return bad("message", why);
        }
        if let Some(r) = &self.receipt
            && (r.len() > MAX_RECEIPT_BYTES || r.contains('\0'))
        {
            return bad("receipt", "longer than 160 KiB or holds a NUL byte");
        }
        if self.attachments.len() > MAX_EVENT_ATTACHMENTS {
            return bad("attachments", "more than 100 files");
        }
        for (field, value) in self.short_fields() {
            if value.len() > MAX_SHORT_BYTES || value.chars().any(char::is_control) {
                return bad(field, "too long, or holds control characters");
            }
        }
        let needs = match self.kind {
            Kind::Assessed => self.assessment.is_some().then_some(()).ok_or("assessment"),
            Kind::Fix => self.fix.is_some().then_some(()).ok_or("fix"),
            Kind::Closed => self.resolution.is_some().then_some(()).ok_or("resolution"),
            Kind::Advisory => self
                .advisory
                .as_ref()
                .filter(|a| a.ghsa.is_some() || a.cve.is_some() || a.url.is_some())
                .map(|_| ())
                .ok_or("advisory"),
            Kind::Reply | Kind::Status | Kind::Note | Kind::ReporterMessage => self
                .message
                .as_ref()
                .filter(|m| !m.trim().is_empty())
                .map(|_| ())
                .ok_or("message"),
            _ => Ok(()),
        };
        if let Err(field) = needs {
            return bad(field, "is required for this kind of event");
        }
        Ok(())
    }

    /// The one-line fields, for the bounds check.
    fn short_fields(&self) -> Vec<(&'static str, &str)> {
        let mut out = Vec::new();
        if let Some(a) = &self.assessment {
            if let Some(c) = &a.cvss {
                out.push(("assessment.cvss", c.vector.as_str()));
            }
            out.extend(a.cwe.iter().map(|c| ("assessment.cwe", c.as_str())));
        }
        if let Some(f) = &self.fix {
            out.push(("fix.version", f.version.as_str()));
            out.extend(f.commit.iter().map(|c| ("fix.commit", c.as_str())));
        }
        if let Some(a) = &self.advisory {
            for (field, v) in [
                ("advisory.ghsa", &a.ghsa),
                ("advisory.cve", &a.cve),
                ("advisory.url", &a.url),
            ] {
                out.extend(v.iter().map(|v| (field, v.as_str())));
            }
        }
        for a in &self.attachments {
            out.push(("attachments.name", a.name.as_str()));
            out.push(("attachments.file", a.file.as_str()));
            out.push(("attachments.sha256", a.sha256.as_str()));
        }
        out
    }
}

/// An error text cut short: serde may quote the input.
fn short(s: &str) -> String {
    s.split(" at line")
        .next()
        .unwrap_or(s)
        .chars()
        .take(80)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(kind: Kind) -> Event {
        let mut e = Event::new(
            ReportId::random(),
            kind,
            "A".repeat(40),
            SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000),
        );
        e.message = Some("thanks, we are on it".into());
        e
    }

    #[test]
    fn an_event_survives_its_padded_json() {
        let e = sample(Kind::Reply);
        let json = e.to_padded_json().unwrap();
        assert_eq!(json.len() % PAD_TO, 0);
        assert_eq!(Event::from_json(&json).unwrap(), e);
        assert!(e.visible_to_reporter);
        assert!(!sample(Kind::Note).visible_to_reporter);
    }

    #[test]
    fn the_encoded_length_of_a_message_is_what_serde_json_writes() {
        let mut every: String = (0..0x80u8).map(char::from).collect();
        every.push_str("é€𝄞\u{7f}\u{202e}");
        for s in [every.as_str(), "", "plain", "\"\\\n"] {
            assert_eq!(
                json_string_len(s),
                serde_json::to_string(s).unwrap().len() - 2,
                "{s:?}"
            );
        }
    }

    #[test]
    fn the_largest_new_reporter_message_with_the_most_files_still_makes_an_event() {
        // Two bytes each once escaped: as long as a message may be encoded.
        let quotes = "\"".repeat(MAX_MESSAGE_BYTES);
        assert_eq!(new_message_problem(&quotes), None);
        let mut e = Event::new(
            ReportId::random(),
            Kind::ReporterMessage,
            "A".repeat(64),
            SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000),
        );
        e.message = Some(quotes);
        e.attachments = (0..MAX_EVENT_ATTACHMENTS)
            .map(|_| EventAttachment {
                file: EventId::random().file_name(),
                // The name that is longest once escaped: 255 characters,
                // as many escaped quotes as the bytes allow.
                name: attachment_name(&("\"".repeat(170) + &"\u{1d11e}".repeat(200))),
                size: u64::MAX,
                sha256: "f".repeat(64),
            })
            .collect();
        let json = e.to_padded_json().unwrap();
        assert!(json.len() <= MAX_EVENT_BYTES);
        assert_eq!(Event::from_json(&json).unwrap(), e);
    }

    #[test]
    fn a_file_name_is_cut_to_what_an_event_accepts() {
        assert_eq!(attachment_name("a\u{0}b\u{202e}\nc.txt"), "ab\u{202e}c.txt");
        for raw in ["x".repeat(300), "\u{1d11e}".repeat(300), "é".repeat(300)] {
            let name = attachment_name(&raw);
            assert!(name.len() <= MAX_SHORT_BYTES && name.chars().count() <= 255);
            // Cut only where one of the two bounds is reached.
            let full = name.chars().count() == 255 || name.len() > MAX_SHORT_BYTES - 4;
            assert!(raw.starts_with(&name) && full, "{}", name.len());
        }
        let mut e = sample(Kind::ReporterMessage);
        e.attachments.push(EventAttachment {
            file: EventId::random().file_name(),
            name: attachment_name(&"\u{1d11e}".repeat(255)),
            size: 1,
            sha256: "f".repeat(64),
        });
        e.to_padded_json().unwrap();
    }

    #[test]
    fn a_new_message_with_a_nul_or_too_many_escapes_is_refused_without_quoting_it() {
        assert_eq!(new_message_problem("hi\0there"), Some("holds a NUL byte"));
        let long = "x".repeat(MAX_MESSAGE_BYTES + 1);
        assert_eq!(new_message_problem(&long), Some("is longer than 64 KiB"));
        // Within the byte limit, but six bytes each once escaped.
        let controls = "\u{1}".repeat(MAX_MESSAGE_BYTES);
        let why = new_message_problem(&controls).unwrap();
        assert!(why.contains("control characters"), "{why}");
        assert_eq!(new_message_problem(&"\u{1}".repeat(1000)), None);
        // An event that holds it would have been too large to store.
        let mut e = sample(Kind::ReporterMessage);
        e.message = Some(controls);
        assert_eq!(e.to_padded_json().unwrap_err(), EventError::TooLarge);
    }

    #[test]
    fn short_and_long_messages_pad_to_the_same_size() {
        let mut long = sample(Kind::Note);
        long.message = Some("x".repeat(3000));
        let short = sample(Kind::Note);
        assert_eq!(
            long.to_padded_json().unwrap().len(),
            short.to_padded_json().unwrap().len()
        );
    }

    #[test]
    fn what_a_kind_needs_is_required() {
        for (kind, field) in [
            (Kind::Assessed, "assessment"),
            (Kind::Fix, "fix"),
            (Kind::Closed, "resolution"),
            (Kind::Advisory, "advisory"),
        ] {
            let e = sample(kind);
            assert_eq!(
                e.to_padded_json().unwrap_err(),
                EventError::Field {
                    field,
                    why: "is required for this kind of event".into()
                }
            );
        }
        let mut e = sample(Kind::Reply);
        e.message = Some("  ".into());
        assert!(e.to_padded_json().is_err());
    }

    #[test]
    fn hostile_plaintext_is_refused_without_echoing_it() {
        let e = sample(Kind::Note);
        let mut json = serde_json::to_value(&e).unwrap();
        json["schema"] = "embargo.event.v9 SECRET".into();
        let err = Event::from_json(&serde_json::to_vec(&json).unwrap()).unwrap_err();
        assert!(matches!(err, EventError::Schema(_)));
        json["schema"] = SCHEMA.into();
        json["author"] = "not-hex SECRET".into();
        let err = Event::from_json(&serde_json::to_vec(&json).unwrap()).unwrap_err();
        assert!(!err.to_string().contains("SECRET"));
        assert_eq!(
            Event::from_json(&vec![b' '; MAX_EVENT_BYTES + 1]).unwrap_err(),
            EventError::TooLarge
        );
        let err = Event::from_json(b"{\"schema\": \"SECRET").unwrap_err();
        assert!(!err.to_string().contains("SECRET"), "{err}");
    }

    #[test]
    fn event_ids_and_file_names() {
        let id = EventId::random();
        assert_eq!(EventId::from_file_name(&id.file_name()), Some(id));
        assert_eq!(EventId::from_file_name("ABCDEF.pgp"), None);
        assert_eq!(EventId::from_file_name("../x.pgp"), None);
    }
}
