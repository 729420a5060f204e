//! Asking the intake to tell a reporter there is something new: the
//! address goes along with this one request (the maintainer has it from
//! the decrypted manifest) and the intake sends a content-free mail
//! through its `[smtp]`; it keeps neither the address nor the mail.

use serde_json::json;

use super::{Error, Http};
use crate::id::ReportId;

use super::cases::Intake;

/// What became of a new-reply notice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MailOutcome {
    Sent,
    /// The intake sends no mail (no `[smtp]`).
    NoSmtp,
    /// The intake refused or could not send it, with its reason.
    NotSent(String),
}

/// Asks `intake` to send report `id`'s reporter at `to` a content-free
/// "there is a new reply" notice.
pub fn mail_reporter(intake: &Intake, id: &ReportId, to: &str) -> Result<MailOutcome, Error> {
    let http = Http::connect(&intake.from, &intake.token_file, intake.timeout)?;
    let url = format!("{}/api/v1/sealed/{id}/reporter-mail", http.base);
    let response = http
        .client
        .post(&url)
        .bearer_auth(http.token.as_str())
        .json(&json!({ "to": to }))
        .send()
        .map_err(|e| http.send_err(&url, e))?;
    let status = response.status();
    if status.is_success() {
        return Ok(MailOutcome::Sent);
    }
    if status == reqwest::StatusCode::UNAUTHORIZED {
        return Err(Error::Unauthorized {
            status: status.as_u16(),
        });
    }
    let body: serde_json::Value = response.json().unwrap_or_default();
    if body["error"]["code"] == "no_smtp" {
        return Ok(MailOutcome::NoSmtp);
    }
    let message: String = body["error"]["message"]
        .as_str()
        .unwrap_or("no reason given")
        .chars()
        .take(300)
        .collect();
    Ok(MailOutcome::NotSent(format!("{status}: {message}")))
}
