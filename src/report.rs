//! The report itself: what a researcher sends (form fields or input JSON,
//! docs/openapi.json), its validation, CVSS scoring and the deadlines it sets.

use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::config::{Limits, Policy};

/// Form field names, in the order the form shows them (the contract).
pub const FIELDS: &[&str] = &[
    "title",
    "affected_versions",
    "environment",
    "severity",
    "cvss_vector",
    "cwe",
    "description",
    "impact",
    "steps_to_reproduce",
    "mitigations",
    "reporter_name",
    "reporter_email",
    "reporter_openpgp_key",
    "credit",
];

/// Longest title accepted, in characters.
pub const MAX_TITLE_CHARS: usize = 300;

/// A report as typed, before validation: one optional string per form field.
#[derive(Clone, Default, Deserialize, Zeroize, ZeroizeOnDrop)]
#[serde(deny_unknown_fields)]
pub struct RawReport {
    pub title: Option<String>,
    pub affected_versions: Option<String>,
    pub environment: Option<String>,
    pub severity: Option<String>,
    pub cvss_vector: Option<String>,
    #[serde(default, deserialize_with = "cwe_list_or_string")]
    pub cwe: Option<String>,
    pub description: Option<String>,
    pub impact: Option<String>,
    pub steps_to_reproduce: Option<String>,
    pub mitigations: Option<String>,
    #[serde(skip)]
    pub reporter_name: Option<String>,
    #[serde(skip)]
    pub reporter_email: Option<String>,
    #[serde(skip)]
    pub credit: Option<String>,
    #[serde(skip)]
    pub reporter_openpgp_key: Option<String>,
}

impl fmt::Debug for RawReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RawReport(..)")
    }
}

/// `cwe` may be a JSON list or a comma-separated string; both become a string.
///
/// Read item by item, never buffered whole: an untagged enum kept every
/// item of a list as its own value first, so the 868 KB `["","",…]` the
/// text limit lets through took 22 MB to parse.
fn cwe_list_or_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    struct Cwe;
    impl<'de> serde::de::Visitor<'de> for Cwe {
        type Value = Option<String>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string or a list of strings")
        }

        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(v.to_owned()))
        }

        fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
            Ok(Some(v))
        }

        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D2: serde::Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            d.deserialize_any(self)
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = String::new();
            let mut first = true;
            while let Some(item) = seq.next_element::<String>()? {
                if !first {
                    out.push(',');
                }
                first = false;
                out.push_str(&item);
            }
            Ok(Some(out))
        }
    }
    d.deserialize_any(Cwe)
}

/// Longest unknown field name repeated back in an error.
const MAX_ECHOED_NAME_CHARS: usize = 64;

/// What is wrong with the input JSON, without its content: serde_json's
/// messages quote the offending string value (`invalid type: string
/// "…"`) and the whole of an unknown key, which may be report text or a
/// megabyte long. Kept: the position, which field is missing or repeated
/// (always one of ours), what was expected, and an unknown key only when
/// it is short and looks like a field name (a typo to fix).
fn json_error(e: &serde_json::Error) -> String {
    let position = format!(" at line {} column {}", e.line(), e.column());
    let full = e.to_string();
    let message = full.strip_suffix(&position).unwrap_or(&full);
    let expected = message
        .rfind(", expected ")
        .map(|i| &message[i..])
        .unwrap_or_default();
    let text = if e.is_data() {
        if let Some(rest) = message.strip_prefix("unknown field `") {
            let name = rest.rfind("`, expected").map(|i| &rest[..i]);
            match name {
                Some(n)
                    if n.chars().count() <= MAX_ECHOED_NAME_CHARS
                        && n.chars()
                            .all(|c| c.is_ascii_alphanumeric() || "_-".contains(c)) =>
                {
                    format!("unknown field `{n}`{expected}")
                }
                _ => format!("an unknown field{expected}"),
            }
        } else if message.starts_with("missing field `") || message.starts_with("duplicate field `")
        {
            message.to_string()
        } else {
            format!("a value has the wrong type{expected}")
        }
    } else {
        // Syntax and end-of-input messages name no input.
        message.to_string()
    };
    format!("{text}{position}")
}

/// The input JSON of the API and of `embargo seal --report`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InputJson {
    report: RawReport,
    #[serde(default)]
    reporter: Option<InputReporter>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct InputReporter {
    name: Option<String>,
    email: Option<String>,
    credit: Option<String>,
    openpgp_key: Option<String>,
}

impl RawReport {
    /// Parses the input JSON (`{"report": {…}, "reporter": {…}}`).
    ///
    /// The error names the offending field or position, never its content.
    pub fn from_json(bytes: &[u8]) -> Result<RawReport, FieldErrors> {
        let input: InputJson = serde_json::from_slice(bytes).map_err(|e| {
            FieldErrors::one(
                "report",
                format!("is not valid input JSON: {}", json_error(&e)),
            )
        })?;
        let mut raw = input.report.clone();
        let reporter = input.reporter.unwrap_or_default();
        raw.reporter_name = reporter.name;
        raw.reporter_email = reporter.email;
        raw.credit = reporter.credit;
        raw.reporter_openpgp_key = reporter.openpgp_key;
        Ok(raw)
    }

    /// Sets a form field by its contract name; `false` for unknown names.
    pub fn set(&mut self, name: &str, value: String) -> bool {
        let slot = match name {
            "title" => &mut self.title,
            "affected_versions" => &mut self.affected_versions,
            "environment" => &mut self.environment,
            "severity" => &mut self.severity,
            "cvss_vector" => &mut self.cvss_vector,
            "cwe" => &mut self.cwe,
            "description" => &mut self.description,
            "impact" => &mut self.impact,
            "steps_to_reproduce" => &mut self.steps_to_reproduce,
            "mitigations" => &mut self.mitigations,
            "reporter_name" => &mut self.reporter_name,
            "reporter_email" => &mut self.reporter_email,
            "credit" => &mut self.credit,
            "reporter_openpgp_key" => &mut self.reporter_openpgp_key,
            _ => return false,
        };
        *slot = Some(value);
        true
    }

    /// The typed value of a form field, for showing the form again.
    pub fn get(&self, name: &str) -> &str {
        let v = match name {
            "title" => &self.title,
            "affected_versions" => &self.affected_versions,
            "environment" => &self.environment,
            "severity" => &self.severity,
            "cvss_vector" => &self.cvss_vector,
            "cwe" => &self.cwe,
            "description" => &self.description,
            "impact" => &self.impact,
            "steps_to_reproduce" => &self.steps_to_reproduce,
            "mitigations" => &self.mitigations,
            "reporter_name" => &self.reporter_name,
            "reporter_email" => &self.reporter_email,
            "credit" => &self.credit,
            "reporter_openpgp_key" => &self.reporter_openpgp_key,
            _ => &None,
        };
        v.as_deref().unwrap_or("")
    }

    /// Validates and normalises every field, collecting all errors at once.
    pub fn validate(&self, limits: &Limits) -> Result<(ReportBody, Reporter), FieldErrors> {
        let mut errors = FieldErrors::default();
        let mut text = |name: &'static str, required: bool| -> String {
            let value = self.get(name).trim();
            if required && value.is_empty() {
                errors.push(name, "is required".into());
            } else if value.len() > limits.max_field_bytes {
                errors.push(
                    name,
                    format!(
                        "is longer than the limit of {} bytes",
                        limits.max_field_bytes
                    ),
                );
            } else if value.contains('\0') {
                errors.push(name, "contains a NUL byte".into());
            }
            value.to_string()
        };
        let title = text("title", true);
        let affected_versions = text("affected_versions", false);
        let environment = text("environment", false);
        let severity_text = text("severity", false);
        let cvss_text = text("cvss_vector", false);
        let cwe_text = text("cwe", false);
        let description = text("description", true);
        let impact = text("impact", false);
        let steps_to_reproduce = text("steps_to_reproduce", false);
        let mitigations = text("mitigations", false);
        let name = text("reporter_name", false);
        let email = text("reporter_email", false);
        let credit_text = text("credit", false);
        let key_text = text("reporter_openpgp_key", false);

        check_title(&title, &mut errors);
        let cvss = parse_cvss(&cvss_text, &mut errors);
        let severity = parse_severity(&severity_text, cvss.as_ref(), &mut errors);
        let cwe = match parse_cwe(&cwe_text) {
            Ok(list) => list,
            Err(e) => {
                errors.push("cwe", e);
                Vec::new()
            }
        };
        if !email.is_empty() && !is_plausible_email(&email) {
            errors.push(
                "reporter_email",
                "is not an e-mail address like name@example.org".into(),
            );
        }
        let credit = parse_credit(&credit_text, &mut errors);
        let openpgp_key = match reporter_key(&key_text) {
            Ok(key) => key,
            Err(why) => {
                errors.push("reporter_openpgp_key", why.into());
                String::new()
            }
        };
        if credit == Credit::Name && name.is_empty() {
            errors.push("reporter_name", "is needed to credit you by name".into());
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let body = ReportBody {
            title,
            affected_versions,
            environment,
            severity,
            cvss,
            cwe,
            description,
            impact,
            steps_to_reproduce,
            mitigations,
        };
        Ok((
            body,
            Reporter {
                name,
                email,
                credit,
                openpgp_key,
                reply_cert: String::new(),
            },
        ))
    }
}

/// The reporter's own OpenPGP certificate, armored again from what was
/// pasted (public parts only), or why it is refused; empty stays empty.
fn reporter_key(text: &str) -> Result<String, &'static str> {
    use openpgp::parse::Parse;
    use openpgp::serialize::SerializeInto;
    use sequoia_openpgp as openpgp;
    if text.is_empty() {
        return Ok(String::new());
    }
    let cert = openpgp::Cert::from_bytes(text.as_bytes()).map_err(
        |_| "is not an OpenPGP public key (paste the output of gpg --armor --export YOU)",
    )?;
    if cert.is_tsk() {
        return Err(
            "holds a secret key: paste only the public key (gpg --armor --export, not --export-secret-keys)",
        );
    }
    let armored = cert.armored().to_vec().map_err(
        |_| "is not an OpenPGP public key (paste the output of gpg --armor --export YOU)",
    )?;
    String::from_utf8(armored).map_err(|_| "is not an OpenPGP public key")
}

/// A title is one line of at most [`MAX_TITLE_CHARS`] characters.
fn check_title(title: &str, errors: &mut FieldErrors) {
    if title.chars().count() > MAX_TITLE_CHARS {
        errors.push(
            "title",
            format!("is longer than {MAX_TITLE_CHARS} characters"),
        );
    }
    if title.chars().any(char::is_control) {
        errors.push(
            "title",
            "must be one line without control characters".into(),
        );
    }
}

/// The CVSS vector, when one is given and it parses.
fn parse_cvss(text: &str, errors: &mut FieldErrors) -> Option<CvssScore> {
    if text.is_empty() {
        return None;
    }
    match CvssScore::parse(text) {
        Ok(c) => Some(c),
        Err(e) => {
            errors.push("cvss_vector", e);
            None
        }
    }
}

/// The severity given, else the one the CVSS vector implies.
fn parse_severity(text: &str, cvss: Option<&CvssScore>, errors: &mut FieldErrors) -> Severity {
    match text.to_ascii_lowercase().as_str() {
        "" => cvss.map_or(Severity::Unknown, |c| c.severity()),
        s => match s.parse() {
            Ok(s) => s,
            Err(()) => {
                errors.push(
                    "severity",
                    "must be low, medium, high, critical or unknown".into(),
                );
                Severity::Unknown
            }
        },
    }
}

/// `name` or `anonymous` (the default).
fn parse_credit(text: &str, errors: &mut FieldErrors) -> Credit {
    match text {
        "" | "anonymous" => Credit::Anonymous,
        "name" => Credit::Name,
        _ => {
            errors.push("credit", "must be \"name\" or \"anonymous\"".into());
            Credit::Anonymous
        }
    }
}

/// Validation errors, one or more per field, in field order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldErrors(pub Vec<(String, String)>);

impl FieldErrors {
    pub fn one(field: &str, message: String) -> FieldErrors {
        FieldErrors(vec![(field.into(), message)])
    }

    pub fn push(&mut self, field: &str, message: String) {
        self.0.push((field.into(), message));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The first error for `field`, if any.
    pub fn for_field(&self, field: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(f, _)| f == field)
            .map(|(_, m)| m.as_str())
    }
}

impl fmt::Display for FieldErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (field, message)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{field} {message}")?;
        }
        Ok(())
    }
}

impl std::error::Error for FieldErrors {}

/// How bad the reporter thinks it is.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Default, Zeroize,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    #[default]
    Unknown,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Unknown => "unknown",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl FromStr for Severity {
    type Err = ();

    fn from_str(s: &str) -> Result<Severity, ()> {
        Ok(match s {
            "unknown" => Severity::Unknown,
            "low" => Severity::Low,
            "medium" => Severity::Medium,
            "high" => Severity::High,
            "critical" => Severity::Critical,
            _ => return Err(()),
        })
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether the reporter wants public credit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default, Zeroize)]
#[serde(rename_all = "lowercase")]
pub enum Credit {
    Name,
    #[default]
    Anonymous,
}

/// A validated CVSS vector with its computed score (manifest `report.cvss`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Zeroize)]
pub struct CvssScore {
    pub vector: String,
    pub version: String,
    pub score: f64,
    pub rating: String,
}

impl CvssScore {
    /// Parses and scores a CVSS 3.0, 3.1 or 4.0 vector.
    pub fn parse(vector: &str) -> Result<CvssScore, String> {
        let version = if vector.starts_with("CVSS:3.0/") {
            "3.0"
        } else if vector.starts_with("CVSS:3.1/") {
            "3.1"
        } else if vector.starts_with("CVSS:4.0/") {
            "4.0"
        } else {
            return Err("must start with CVSS:3.0/, CVSS:3.1/ or CVSS:4.0/".into());
        };
        let parsed = cvss::Cvss::from_str(vector)
            .map_err(|e| format!("is not a valid CVSS {version} vector ({e})"))?;
        let score = parsed.score();
        if !score.is_finite() {
            return Err(format!("is not a valid CVSS {version} vector"));
        }
        Ok(CvssScore {
            vector: vector.to_string(),
            version: version.into(),
            score: (score * 10.0).round() / 10.0,
            rating: parsed.severity().as_str().to_string(),
        })
    }

    /// The severity this score implies ("none" counts as low).
    pub fn severity(&self) -> Severity {
        match self.rating.as_str() {
            "critical" => Severity::Critical,
            "high" => Severity::High,
            "medium" => Severity::Medium,
            "low" | "none" => Severity::Low,
            _ => Severity::Unknown,
        }
    }
}

/// Most CWE identifiers one report may list.
pub const MAX_CWE_IDS: usize = 32;

fn too_many_cwe() -> String {
    format!("lists more than {MAX_CWE_IDS} CWE identifiers")
}

/// Parses `CWE-79, CWE-78` (or bare numbers) into a normalised list.
pub fn parse_cwe(text: &str) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for item in text
        .split([',', ' ', ';'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let upper = item.to_ascii_uppercase();
        let digits = upper.strip_prefix("CWE-").unwrap_or(&upper);
        match digits.parse::<u32>() {
            Ok(n)
                if !digits.is_empty()
                    && digits.len() <= 7
                    && digits.bytes().all(|b| b.is_ascii_digit()) =>
            {
                let id = format!("CWE-{n}");
                if !out.contains(&id) {
                    out.push(id);
                }
                // Stop here: the duplicate check is quadratic, and a 64 KiB
                // field holds some 12,000 identifiers (a second of CPU).
                if out.len() > MAX_CWE_IDS {
                    return Err(too_many_cwe());
                }
            }
            _ => return Err("must be a list of CWE identifiers like CWE-78, CWE-79".into()),
        }
    }
    Ok(out)
}

/// A deliberately simple syntax check: one `@`, no spaces or controls, a
/// dotted domain. Deliverability cannot be checked without contacting it.
pub fn is_plausible_email(s: &str) -> bool {
    if s.len() > 254
        || s.chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>()[]\\,;:\"".contains(c))
    {
        return false;
    }
    match s.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && local.len() <= 64
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains("..")
        }
        None => false,
    }
}

/// The validated report as stored in the manifest (`report`).
#[derive(Clone, Serialize, Deserialize, Default, Zeroize, ZeroizeOnDrop)]
pub struct ReportBody {
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub affected_versions: String,
    #[serde(default)]
    pub environment: String,
    #[serde(default)]
    pub severity: Severity,
    #[serde(default)]
    pub cvss: Option<CvssScore>,
    #[serde(default)]
    pub cwe: Vec<String>,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub impact: String,
    #[serde(default)]
    pub steps_to_reproduce: String,
    #[serde(default)]
    pub mitigations: String,
}

impl fmt::Debug for ReportBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReportBody(..)")
    }
}

/// Who reported it, as stored in the manifest (`reporter`).
#[derive(Clone, Serialize, Deserialize, Default, Zeroize, ZeroizeOnDrop)]
pub struct Reporter {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub credit: Credit,
    /// The reporter's own OpenPGP certificate, armored, if they gave one:
    /// maintainers may also answer by encrypted mail.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub openpgp_key: String,
    /// The public reply certificate, armored: reporter-visible
    /// events are encrypted to it as well. Empty in reports sealed before.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reply_cert: String,
}

impl fmt::Debug for Reporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Reporter(..)")
    }
}

/// The promises `[policy]` makes for one report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deadlines {
    pub acknowledge_by: SystemTime,
    pub fix_by: Option<SystemTime>,
}

impl Deadlines {
    pub fn for_report(policy: &Policy, received: SystemTime, severity: Severity) -> Deadlines {
        Deadlines {
            acknowledge_by: received + policy.acknowledge_within.0,
            fix_by: policy
                .fix_deadline(severity.as_str())
                .map(|s| received + s.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(pairs: &[(&str, &str)]) -> RawReport {
        let mut r = RawReport::default();
        for (k, v) in pairs {
            assert!(r.set(k, v.to_string()));
        }
        r
    }

    #[test]
    fn required_fields_and_all_errors_at_once() {
        let errors = raw(&[("severity", "urgent"), ("cwe", "XSS")])
            .validate(&Limits::default())
            .unwrap_err();
        for field in ["title", "description", "severity", "cwe"] {
            assert!(errors.for_field(field).is_some(), "{field}: {errors}");
        }
    }

    #[test]
    fn cvss_versions_are_scored() {
        let v31 = CvssScore::parse("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H").unwrap();
        assert_eq!(
            (v31.score, v31.rating.as_str(), v31.version.as_str()),
            (9.8, "critical", "3.1")
        );
        let v30 = CvssScore::parse("CVSS:3.0/AV:L/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N").unwrap();
        assert_eq!(v30.rating, "low");
        let v40 =
            CvssScore::parse("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N")
                .unwrap();
        assert_eq!((v40.score, v40.rating.as_str()), (9.3, "critical"));
        assert!(CvssScore::parse("AV:N/AC:L/Au:N/C:P/I:P/A:P").is_err());
        assert!(CvssScore::parse("CVSS:3.1/AV:X").is_err());
    }

    #[test]
    fn severity_defaults_to_the_cvss_rating() {
        let (body, reporter) = raw(&[
            ("title", "t"),
            ("description", "d"),
            (
                "cvss_vector",
                "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
            ),
            ("cwe", "cwe-78, 79"),
        ])
        .validate(&Limits::default())
        .unwrap();
        assert_eq!(body.severity, Severity::Critical);
        assert_eq!(body.cwe, vec!["CWE-78", "CWE-79"]);
        assert_eq!(reporter.credit, Credit::Anonymous);
    }

    #[test]
    fn a_pasted_public_key_is_kept_and_a_secret_one_refused() {
        use openpgp::cert::prelude::*;
        use openpgp::parse::Parse;
        use openpgp::serialize::SerializeInto;
        use sequoia_openpgp as openpgp;
        let (cert, _) = CertBuilder::general_purpose(Some("r@example.org"))
            .generate()
            .unwrap();
        let public = String::from_utf8(cert.armored().to_vec().unwrap()).unwrap();
        let secret = String::from_utf8(cert.as_tsk().armored().to_vec().unwrap()).unwrap();
        let with_key = |key: &str| {
            let mut raw = RawReport::default();
            raw.set("title", "t".into());
            raw.set("description", "d".into());
            raw.set("reporter_openpgp_key", key.into());
            raw.validate(&Limits::default())
        };
        let (_, reporter) = with_key(&public).unwrap();
        assert!(reporter.openpgp_key.contains("BEGIN PGP PUBLIC KEY BLOCK"));
        let parsed = openpgp::Cert::from_bytes(reporter.openpgp_key.as_bytes()).unwrap();
        assert_eq!(parsed.fingerprint(), cert.fingerprint());
        assert!(!parsed.is_tsk());
        for bad in [secret.as_str(), "not a key at all"] {
            let errors = with_key(bad).unwrap_err();
            let why = errors
                .for_field("reporter_openpgp_key")
                .expect("the field is named");
            assert!(!why.contains("BEGIN"), "{why}");
        }
        assert!(with_key("").unwrap().1.openpgp_key.is_empty());
    }

    #[test]
    fn field_limits_and_email() {
        let limits = Limits {
            max_field_bytes: 8,
            ..Limits::default()
        };
        let e = raw(&[("title", "t"), ("description", "123456789")])
            .validate(&limits)
            .unwrap_err();
        assert!(e.for_field("description").unwrap().contains("8 bytes"));
        for good in ["a@b.org", "first.last+tag@sub.example.com"] {
            assert!(is_plausible_email(good), "{good}");
        }
        for bad in [
            "",
            "a",
            "a@b",
            "a @b.org",
            "a@b..org",
            "<a@b.org>",
            "a@@b.org",
        ] {
            assert!(!is_plausible_email(bad), "{bad}");
        }
    }

    #[test]
    fn input_json_accepts_cwe_list_or_string_and_rejects_unknown_fields() {
        let r = RawReport::from_json(br#"{"report":{"title":"t","description":"d","cwe":["CWE-1","CWE-2"]},"reporter":{"name":"n","credit":"name"}}"#).unwrap();
        assert_eq!(r.get("cwe"), "CWE-1,CWE-2");
        assert_eq!(r.get("reporter_name"), "n");
        let e = RawReport::from_json(br#"{"report":{"titel":"t"}}"#).unwrap_err();
        assert!(e.to_string().contains("titel"), "{e}");
        assert!(RawReport::from_json(b"not json").is_err());
    }

    #[test]
    fn cwe_lists_stop_at_the_first_identifier_over_the_limit() {
        let ids: Vec<String> = (1..=12_000).map(|n| n.to_string()).collect();
        let long = format!("{},not-a-cwe", ids.join(","));
        // Refused at the 33rd identifier, before the rest is even looked at.
        assert_eq!(
            parse_cwe(&long).unwrap_err(),
            "lists more than 32 CWE identifiers"
        );
        let exactly: Vec<String> = (1..=MAX_CWE_IDS).map(|n| format!("CWE-{n}")).collect();
        assert_eq!(parse_cwe(&exactly.join(", ")).unwrap(), exactly);
        // Repeats are not counted twice.
        let repeated = vec!["CWE-79"; 1000].join(",");
        assert_eq!(parse_cwe(&repeated).unwrap(), vec!["CWE-79"]);
    }

    #[test]
    fn input_json_errors_never_repeat_values_or_long_keys() {
        let message = |json: &[u8]| {
            let e = RawReport::from_json(json).unwrap_err();
            assert_eq!(e.0.len(), 1);
            e.0[0].1.clone()
        };
        assert_eq!(
            message(br#"{"report":"SECRET TEXT"}"#),
            "is not valid input JSON: a value has the wrong type, expected struct RawReport at line 1 column 23"
        );
        assert_eq!(
            message(br#"{"report":{"title":["SECRET"]}}"#),
            "is not valid input JSON: a value has the wrong type, expected a string at line 1 column 19"
        );
        assert_eq!(
            message(br#"{"report":{"title":"t","cwe":{"SECRET":1}}}"#),
            "is not valid input JSON: a value has the wrong type, expected a string or a list of strings at line 1 column 30"
        );
        let long_key = format!(r#"{{"report":{{"{}":1}}}}"#, "SECRET".repeat(100_000));
        let long = message(long_key.as_bytes());
        assert!(!long.contains("SECRET"), "{long}");
        assert!(long.len() < 400, "{} bytes", long.len());
        assert!(
            long.starts_with("is not valid input JSON: an unknown field, expected one of `title`"),
            "{long}"
        );
        assert!(!message(br#"{"report":{"SECRET TEXT":1}}"#).contains("SECRET"));
        assert!(
            !message(br#"{"reporter":{"name":"SECRET"},"report":{"title":1}}"#).contains("SECRET")
        );
        assert_eq!(
            message(br#"{"report":{"title":"a","title":"b"}}"#),
            "is not valid input JSON: duplicate field `title` at line 1 column 30"
        );
        assert!(message(br#"{"reporter":{}}"#).contains("missing field `report`"));
    }
}
