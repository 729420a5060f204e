//! `embargo list`: decrypts only the manifests and shows the reports sorted
//! by urgency, with the deadlines `[policy]` sets, as a table or as JSON.

use std::path::PathBuf;
use std::time::SystemTime;

use serde::Serialize;
use zeroize::Zeroize;

use super::Error;
use super::keysource::{KeyArgs, SignerArgs};
use crate::case::{Case, Duty, Opened, Signers, Stage};
use crate::clock::{Clock, parse_rfc3339, rfc3339};
use crate::config::Policy;
use crate::report::Severity;
use crate::seal::{Opener, RevealError, SignatureCheck};
use crate::store;
use sequoia_openpgp::Cert;

/// What `embargo list` was asked to do.
#[derive(Clone, Debug)]
pub struct ListArgs {
    pub store: PathBuf,
    pub keys: KeyArgs,
    pub signer: SignerArgs,
    /// Deadlines for reports sealed before the intake recorded its policy.
    pub policy: Policy,
    pub clock: Clock,
    /// Who may sign case events (every maintainer certificate known).
    pub maintainers: Vec<Cert>,
    /// Also list closed cases.
    pub all: bool,
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
    /// new, acknowledged, assessed, fixing, fixed or closed.
    pub state: Option<Stage>,
    pub assess_by: Option<String>,
    pub assess_overdue: bool,
    pub status_update_by: Option<String>,
    pub status_update_overdue: bool,
    /// Stored events that could not be verified (shown, never counted).
    pub unverified_events: usize,
    /// The reporter sent a message no maintainer has answered yet.
    pub reply_waiting: bool,
    /// When the first unanswered message arrived.
    pub reply_waiting_since: Option<String>,
    pub signature_checked: bool,
    #[serde(skip)]
    urgency: Option<Urgency>,
}

/// How a row sorts: missed obligations first, then the more severe, then
/// the earliest due, then the oldest.
type Urgency = (
    std::cmp::Reverse<bool>,
    std::cmp::Reverse<Severity>,
    Option<SystemTime>,
    SystemTime,
);

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
    let store = store::open_read_only(&args.store)?;
    let intake = args.signer.resolve()?;
    let opener = Opener::new(args.keys.open()?, intake.clone());
    let signers = Signers {
        maintainers: &args.maintainers,
        intake: intake.as_ref(),
    };
    let now = args.clock.now();
    let mut rows = Vec::new();
    for id in store.list()? {
        let row = match opener.open_manifest(store.as_ref(), &id) {
            Ok(opened) => {
                let case = Case::with_events(store.as_ref(), &opener, &signers, opened);
                if case.state.stage == Stage::Closed && !args.all {
                    continue;
                }
                row_for(&case, &args.policy, now)
            }
            Err(e) => unreadable(id.to_string(), &e),
        };
        rows.push(row);
    }
    // Most urgent first (see `Urgency`); unreadable ones last.
    rows.sort_by(|a, b| match (&a.urgency, &b.urgency) {
        (Some(x), Some(y)) => x.cmp(y).then_with(|| a.id.cmp(&b.id)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.id.cmp(&b.id),
    });
    Ok(Listing { rows, now })
}

/// The row of one readable report: its state, and the obligations still
/// open under the policy sealed at intake (`fallback` for older reports).
fn row_for(case: &Case, fallback: &Policy, now: SystemTime) -> ListRow {
    let m = &case.manifest;
    let received = parse_rfc3339(&m.received_at);
    let obligations = case.obligations(fallback, now);
    let due = |what: Duty| obligations.iter().find(|o| o.what == what);
    let by = |what: Duty| due(what).map(|o| rfc3339(o.due));
    let late = |what: Duty| due(what).is_some_and(|o| o.overdue);
    let severity = case.state.severity(m.report.severity);
    ListRow {
        id: m.id.to_string(),
        status: "ok",
        error: None,
        received_at: received.map(rfc3339),
        age_seconds: received.map(|r| now.duration_since(r).unwrap_or_default().as_secs()),
        title: Some(m.report.title.clone()),
        severity: Some(severity),
        cvss_score: m.report.cvss.as_ref().map(|c| c.score),
        cvss_rating: m.report.cvss.as_ref().map(|c| c.rating.clone()),
        attachments: Some(m.attachments.len()),
        attachments_bytes: Some(attachments_bytes(m)),
        acknowledge_by: by(Duty::Acknowledge),
        fix_by: by(Duty::Fix),
        acknowledge_overdue: late(Duty::Acknowledge),
        fix_overdue: late(Duty::Fix),
        state: Some(case.state.stage),
        assess_by: by(Duty::Assess),
        assess_overdue: late(Duty::Assess),
        status_update_by: by(Duty::StatusUpdate),
        status_update_overdue: late(Duty::StatusUpdate),
        unverified_events: case
            .events
            .iter()
            .filter(|e| matches!(e, Opened::Unverifiable { .. }))
            .count(),
        reply_waiting: case.state.reply_waiting.is_some(),
        reply_waiting_since: case.state.reply_waiting.map(rfc3339),
        signature_checked: matches!(case.signature, SignatureCheck::Verified(_)),
        urgency: Some((
            std::cmp::Reverse(obligations.iter().any(|o| o.overdue)),
            std::cmp::Reverse(severity),
            obligations.iter().map(|o| o.due).min(),
            received.unwrap_or(now),
        )),
    }
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
        state: None,
        assess_by: None,
        assess_overdue: false,
        status_update_by: None,
        status_update_overdue: false,
        unverified_events: 0,
        reply_waiting: false,
        reply_waiting_since: None,
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
}
