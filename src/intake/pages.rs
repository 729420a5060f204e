//! The researcher-facing pages: the form, the receipt and error pages,
//! rendered by askama (auto-escaping) from `templates/`.

use askama::Template;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use super::error::Refusal;
use super::state::AppState;
use super::upload::Accepted;
use crate::clock::rfc3339;
use crate::config::Span;
use crate::report::{FieldErrors, RawReport, Severity};
use crate::units::human_size;

/// One form control as the template shows it.
pub struct FieldView {
    pub name: &'static str,
    pub label: &'static str,
    pub help: &'static str,
    /// `text`, `email`, `textarea`, `select`.
    pub kind: &'static str,
    pub required: bool,
    pub value: String,
    pub error: Option<String>,
    /// For selects.
    pub options: Vec<OptionView>,
    pub max_bytes: usize,
}

/// One choice of a select.
pub struct OptionView {
    pub value: &'static str,
    pub label: &'static str,
    pub selected: bool,
}

/// An error listed in the summary at the top of the form.
pub struct ErrorView {
    pub name: String,
    pub label: String,
    pub message: String,
}

/// One attachment on the receipt.
pub struct AttachmentView {
    pub name: String,
    pub size: String,
    pub sha256: String,
}

/// Label, help text and kind of every form field, in form order.
const FORM: &[(&str, &str, &str, &str, bool)] = &[
    (
        "title",
        "Title",
        "One line that names the problem, e.g. \u{201c}Path traversal in the export endpoint\u{201d}.",
        "text",
        true,
    ),
    (
        "affected_versions",
        "Affected versions",
        "Versions, commits or deployments you tested.",
        "text",
        false,
    ),
    (
        "environment",
        "Environment",
        "Operating system, configuration, browser: what someone needs to reproduce it.",
        "textarea",
        false,
    ),
    (
        "severity",
        "Severity (your estimate)",
        "If you give a CVSS vector and leave this on \u{201c}not sure\u{201d}, its rating is used.",
        "select",
        false,
    ),
    (
        "cvss_vector",
        "CVSS vector (optional)",
        "CVSS 3.0, 3.1 or 4.0, e.g. CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H.",
        "text",
        false,
    ),
    (
        "cwe",
        "CWE (optional)",
        "Weakness identifiers separated by commas, e.g. CWE-22, CWE-79.",
        "text",
        false,
    ),
    (
        "description",
        "Description",
        "What is wrong and where. Plain text; include what you expected and what happened.",
        "textarea",
        true,
    ),
    (
        "impact",
        "Impact",
        "What an attacker gains, and under which conditions.",
        "textarea",
        false,
    ),
    (
        "steps_to_reproduce",
        "Steps to reproduce",
        "Numbered steps. Attach scripts or captures below instead of pasting long ones.",
        "textarea",
        false,
    ),
    (
        "mitigations",
        "Mitigations",
        "Workarounds or fixes you know of.",
        "textarea",
        false,
    ),
    (
        "reporter_name",
        "Your name or handle (optional)",
        "Needed only if you want to be credited by name.",
        "text",
        false,
    ),
    (
        "reporter_email",
        "Your e-mail address (optional)",
        "Only for an acknowledgement and a notice when there is a new reply. Leave it empty to stay anonymous: your reply code works without it.",
        "email",
        false,
    ),
    (
        "reporter_openpgp_key",
        "Your OpenPGP public key (optional)",
        "Paste the output of gpg --armor --export YOU, so the maintainers can also answer you by encrypted mail.",
        "textarea",
        false,
    ),
    (
        "credit",
        "Credit",
        "How the advisory should credit you.",
        "select",
        false,
    ),
];

const SEVERITIES: &[(&str, &str)] = &[
    ("", "Not sure"),
    ("low", "Low"),
    ("medium", "Medium"),
    ("high", "High"),
    ("critical", "Critical"),
];
const CREDITS: &[(&str, &str)] = &[
    ("anonymous", "Do not name me"),
    ("name", "Credit me by the name above"),
];

/// A maintainer certificate as listed on the form.
pub struct KeyView {
    pub fingerprint: String,
    pub user_id: String,
    pub expires: String,
}

/// The fix deadline for one severity.
pub struct FixView {
    pub severity: String,
    pub within: String,
}

/// The policy promises shown to reporters.
pub struct PolicyView {
    pub acknowledge: String,
    /// The provisional assessment (severity, CVSS): `5 business days`.
    pub assess: String,
    pub status_update: String,
    /// Fix deadlines, most severe first.
    pub fix: Vec<FixView>,
}

#[derive(Template)]
#[template(path = "form.html")]
pub struct FormPage {
    pub project_name: String,
    pub policy_url: Option<String>,
    pub report_fields: Vec<FieldView>,
    pub reporter_fields: Vec<FieldView>,
    pub errors: Vec<ErrorView>,
    pub had_files: bool,
    pub keys: Vec<KeyView>,
    pub policy: PolicyView,
    pub max_attachments: usize,
    pub max_attachment_size: String,
    pub accepting: bool,
}

#[derive(Template)]
#[template(path = "receipt.html")]
pub struct ReceiptPage {
    pub project_name: String,
    pub id: String,
    pub received_at: String,
    pub attachments: Vec<AttachmentView>,
    pub receipt: String,
    /// Fingerprints of the maintainer certificates the report was sealed to.
    pub recipients: Vec<String>,
    pub policy: PolicyView,
    pub acknowledge_by: String,
    pub fix_by: Option<String>,
    pub severity: String,
    /// Shown once; the page is sent with `Cache-Control: no-store`.
    pub reply_code: Option<String>,
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub project_name: String,
    pub status: u16,
    pub title: String,
    pub message: String,
}

#[derive(Template)]
#[template(path = "status.html")]
pub struct StatusPage {
    pub project_name: String,
    pub error: Option<String>,
}

impl StatusPage {
    pub fn new(state: &AppState, error: Option<String>) -> StatusPage {
        StatusPage {
            project_name: state.config().project_name.clone(),
            error,
        }
    }
}

/// One event as the reporter sees it.
pub struct EntryView {
    pub title: String,
    /// `from-you` for the reporter's own messages.
    pub class: &'static str,
    pub at: String,
    pub details: Vec<String>,
    pub message: Option<String>,
    pub files: Vec<String>,
}

/// A promise still open.
pub struct PromiseView {
    pub what: &'static str,
    pub due: String,
    pub overdue: bool,
}

/// A published advisory; `url` only when it is an `https://` link.
pub struct AdvisoryView {
    pub label: String,
    pub url: Option<String>,
}

#[derive(Template)]
#[template(path = "status_case.html")]
pub struct StatusCasePage {
    pub project_name: String,
    pub id: String,
    pub notice: Option<String>,
    pub error: Option<String>,
    pub stage: &'static str,
    pub resolution: Option<&'static str>,
    pub open: Vec<PromiseView>,
    pub advisories: Vec<AdvisoryView>,
    pub entries: Vec<EntryView>,
    pub receipt: Option<String>,
    /// Carried in the answer form's hidden field (the page is `no-store`).
    pub code: String,
    pub max_files: usize,
    pub max_file_size: String,
}

impl StatusCasePage {
    pub fn new(
        state: &AppState,
        timeline: &crate::reply::timeline::Timeline,
        code: &crate::reply::ReplyCode,
        notice: Option<&str>,
    ) -> StatusCasePage {
        use crate::case::state::{Duty, Stage};
        let limits = &state.config().limits;
        let stage = match timeline.state.stage {
            Stage::New => "Received, not yet acknowledged",
            Stage::Acknowledged => "Acknowledged: the maintainers are looking into it",
            Stage::Assessed => "Being assessed",
            Stage::Fixing => "A fix is being prepared",
            Stage::Fixed => "A fix was released",
            Stage::Closed => "Closed",
        };
        let open = timeline
            .open
            .iter()
            .map(|o| PromiseView {
                what: match o.what {
                    Duty::Acknowledge => "An acknowledgement",
                    Duty::Assess => "An assessment",
                    Duty::StatusUpdate => "The next status update",
                    Duty::Fix => "A fix (for the severity you reported)",
                },
                due: rfc3339(o.due),
                overdue: o.overdue,
            })
            .collect();
        let advisories = timeline
            .events
            .iter()
            .filter_map(|e| e.advisory.as_ref())
            .map(|a| AdvisoryView {
                label: advisory_label(a),
                url: a.url.clone().filter(|u| u.starts_with("https://")),
            })
            .collect();
        StatusCasePage {
            project_name: state.config().project_name.clone(),
            id: timeline.report.to_string(),
            notice: notice.map(str::to_owned),
            error: None,
            stage,
            resolution: timeline.state.resolution.map(|r| r.as_str()),
            open,
            advisories,
            entries: timeline.events.iter().map(entry_view).collect(),
            receipt: timeline.receipt.clone(),
            code: code.display().to_string(),
            max_files: limits.max_attachments,
            max_file_size: human_size(limits.max_attachment_bytes),
        }
    }
}

/// An advisory's label: its IDs, else its URL.
fn advisory_label(a: &crate::case::event::Advisory) -> String {
    let ids: Vec<&str> = [a.ghsa.as_deref(), a.cve.as_deref()]
        .into_iter()
        .flatten()
        .collect();
    if ids.is_empty() {
        a.url
            .as_deref()
            .unwrap_or("advisory")
            .chars()
            .take(200)
            .collect()
    } else {
        ids.join(" / ")
    }
}

fn entry_view(e: &crate::case::Event) -> EntryView {
    use crate::case::Kind;
    let mut details = Vec::new();
    let title = match e.kind {
        Kind::Received => "Your report was received and sealed".to_owned(),
        Kind::Acknowledged => "The maintainers acknowledged your report".to_owned(),
        Kind::Assessed => "Assessed".to_owned(),
        Kind::Status => "Status update".to_owned(),
        Kind::Reply => "Reply from the maintainers".to_owned(),
        Kind::Note => "Note".to_owned(),
        Kind::Fix => {
            if let Some(f) = &e.fix {
                details.push(format!("Version {}", f.version));
                if let Some(c) = &f.commit {
                    details.push(format!("Commit {c}"));
                }
            }
            if e.fix.as_ref().is_some_and(|f| f.released) {
                "A fix was released".to_owned()
            } else {
                "A fix is planned".to_owned()
            }
        }
        Kind::Advisory => {
            if let Some(a) = &e.advisory {
                details.extend(a.ghsa.iter().map(|g| format!("GHSA: {g}")));
                details.extend(a.cve.iter().map(|c| format!("CVE: {c}")));
                details.extend(a.url.iter().map(|u| format!("URL: {u}")));
            }
            "An advisory was published".to_owned()
        }
        Kind::Closed => format!(
            "Closed as {}",
            e.resolution.map_or("resolved", |r| r.as_str())
        ),
        Kind::Reopened => "Reopened".to_owned(),
        Kind::ReporterMessage => "Your message".to_owned(),
    };
    EntryView {
        title,
        class: if e.kind == Kind::ReporterMessage {
            "from-you"
        } else {
            "from-them"
        },
        at: e.at.clone(),
        details,
        message: e.message.clone(),
        files: e
            .attachments
            .iter()
            .map(|a| format!("{} ({})", a.name, human_size(a.size)))
            .collect(),
    }
}

/// Writes a span the way people say it: `48 hours`, `7 days`.
pub fn span_words(span: Span) -> String {
    let secs = span.0.as_secs();
    let (n, unit) = if secs.is_multiple_of(86_400) && secs >= 3 * 86_400 {
        (secs / 86_400, "day")
    } else if secs.is_multiple_of(3600) && secs >= 3600 {
        (secs / 3600, "hour")
    } else if secs.is_multiple_of(60) && secs >= 60 {
        (secs / 60, "minute")
    } else {
        (secs, "second")
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

/// A deadline the way people say it: `5 business days`, `48 hours`.
pub fn within_words(within: crate::config::Within) -> String {
    match within {
        crate::config::Within::Span(span) => span_words(span),
        other => other.to_string(),
    }
}

fn policy_view(state: &AppState) -> PolicyView {
    let p = &state.config().policy;
    let fix = ["critical", "high", "medium", "low"]
        .iter()
        .filter_map(|s| {
            p.fix_deadline(s).map(|span| FixView {
                severity: s.to_string(),
                within: span_words(span),
            })
        })
        .collect();
    PolicyView {
        acknowledge: span_words(p.acknowledge_within),
        assess: within_words(p.assess_within),
        status_update: span_words(p.status_update_within),
        fix,
    }
}

/// Groups a hex fingerprint by four for reading aloud.
pub fn grouped(hex: &str) -> String {
    hex.as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

fn field_views(raw: Option<&RawReport>, errors: &FieldErrors, max_bytes: usize) -> Vec<FieldView> {
    FORM.iter()
        .map(|&(name, label, help, kind, required)| {
            let value = raw.map(|r| r.get(name).to_string()).unwrap_or_default();
            let options = match name {
                "severity" => SEVERITIES,
                "credit" => CREDITS,
                _ => &[],
            }
            .iter()
            .map(|&(v, l)| OptionView {
                value: v,
                label: l,
                selected: value.eq_ignore_ascii_case(v),
            })
            .collect();
            FieldView {
                name,
                label,
                help,
                kind,
                required,
                error: errors.for_field(name).map(str::to_string),
                value,
                options,
                max_bytes,
            }
        })
        .collect()
}

/// The form, empty or filled in again with `raw` and its `errors`.
pub fn form_page(
    state: &AppState,
    raw: Option<&RawReport>,
    errors: &FieldErrors,
    had_files: bool,
) -> FormPage {
    let config = state.config();
    let keys_now = state.keys();
    let now = state.clock().now();
    let keys = keys_now
        .usable_at(now)
        .into_iter()
        .map(|e| KeyView {
            fingerprint: grouped(&e.fingerprint().to_hex()),
            user_id: e.user_id.clone().unwrap_or_default(),
            expires: e.expires.map(rfc3339).unwrap_or_else(|| "never".into()),
        })
        .collect::<Vec<_>>();
    let mut fields = field_views(raw, errors, config.limits.max_field_bytes);
    let reporter_fields = fields.split_off(10);
    FormPage {
        project_name: config.project_name.clone(),
        policy_url: config.policy_url.clone(),
        report_fields: fields,
        reporter_fields,
        errors: errors
            .0
            .iter()
            .map(|(f, m)| ErrorView {
                name: f.clone(),
                label: label_of(f).to_string(),
                message: m.clone(),
            })
            .collect(),
        had_files,
        accepting: !keys.is_empty(),
        keys,
        policy: policy_view(state),
        max_attachments: config.limits.max_attachments,
        max_attachment_size: human_size(config.limits.max_attachment_bytes),
    }
}

fn label_of(field: &str) -> &str {
    FORM.iter()
        .find(|f| f.0 == field)
        .map(|f| f.1)
        .unwrap_or(field)
}

/// The receipt page for an accepted report.
pub fn receipt_page(state: &AppState, accepted: &Accepted) -> ReceiptPage {
    let config = state.config();
    let received = accepted.sealed.received_at;
    let deadlines =
        crate::report::Deadlines::for_report(&config.policy, received, accepted.severity);
    ReceiptPage {
        project_name: config.project_name.clone(),
        id: accepted.sealed.id.to_string(),
        received_at: rfc3339(received),
        attachments: accepted
            .sealed
            .attachments
            .iter()
            .map(|a| AttachmentView {
                name: a.name.clone(),
                size: human_size(a.size),
                sha256: a.sha256.clone(),
            })
            .collect(),
        receipt: accepted.receipt.clone(),
        recipients: accepted.sealed.recipients.clone(),
        policy: policy_view(state),
        acknowledge_by: rfc3339(deadlines.acknowledge_by),
        fix_by: deadlines.fix_by.map(rfc3339),
        severity: if accepted.severity == Severity::Unknown {
            String::new()
        } else {
            accepted.severity.to_string()
        },
        reply_code: accepted
            .reply_code
            .as_ref()
            .map(|c| c.display().to_string()),
    }
}

/// Renders a template as an HTML response with `status`.
pub fn html<T: Template>(status: StatusCode, page: &T) -> Response {
    match page.render() {
        Ok(body) => (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            Html(body),
        )
            .into_response(),
        Err(e) => {
            tracing::error!("rendering a page failed: {e}");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

/// An error as a page (for the form's routes).
pub fn error_page(state: &AppState, error: &Refusal) -> Response {
    let status = error.status();
    let title = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "Too large",
        StatusCode::TOO_MANY_REQUESTS => "Too many reports",
        StatusCode::SERVICE_UNAVAILABLE => "Not accepting reports right now",
        StatusCode::REQUEST_TIMEOUT => "The upload took too long",
        StatusCode::FORBIDDEN => "Refused",
        StatusCode::NOT_FOUND => "Not found",
        _ => "The report could not be accepted",
    };
    let page = ErrorPage {
        project_name: state.config().project_name.clone(),
        status: status.as_u16(),
        title: title.into(),
        message: error.message(),
    };
    let mut response = html(status, &page);
    error.decorate(&mut response);
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn spans_in_words() {
        assert_eq!(span_words(Span(Duration::from_secs(48 * 3600))), "48 hours");
        assert_eq!(span_words(Span(Duration::from_secs(7 * 86_400))), "7 days");
        assert_eq!(span_words(Span(Duration::from_secs(86_400))), "24 hours");
        assert_eq!(span_words(Span(Duration::from_secs(60))), "1 minute");
    }

    #[test]
    fn form_order_is_the_contract() {
        let names: Vec<&str> = FORM.iter().map(|f| f.0).collect();
        assert_eq!(names, crate::report::FIELDS);
    }
}
