//! What the reporter sees of a case: the events sealed to their reply
//! certificate, opened with its secret keys (made from the code for this
//! one request), checked like every event (signed by a maintainer, or by
//! the intake for what it records; bound to this report and file name),
//! and folded into the promises still open. Events not sealed to the reply
//! certificate (notes, assessments) cannot be opened here, and an event
//! that does not say it is for the reporter is left out even if it could.

use std::time::SystemTime;

use openpgp::Cert;
use sequoia_openpgp as openpgp;

use crate::case::event::{Event, Kind};
use crate::case::sealed::{MAX_EVENT_CIPHERTEXT, Opened, Signers, open_event};
use crate::case::state::{CaseState, Duty, Obligation};
use crate::id::ReportId;
use crate::report::Severity;
use crate::seal::{Opener, SecretSource};
use crate::store::Store;

/// The reporter's view of one case. Messages are wiped when it is dropped
/// (each [`Event`] wipes its own).
pub struct Timeline {
    pub report: ReportId,
    /// Reporter-visible events, oldest first: `received`, the maintainers'
    /// answers and status changes, and the reporter's own messages.
    pub events: Vec<Event>,
    /// Promises still open (acknowledgement, status update, fix).
    pub open: Vec<Obligation>,
    pub state: CaseState,
    /// The signed receipt, from the `received` event.
    pub receipt: Option<String>,
}

/// Reads the case of `report` as its reporter may see it, at `now`.
/// `reply_cert` holds the secret keys; `signers` are the maintainers'
/// certificates and the intake's.
pub fn read(
    store: &dyn Store,
    report: &ReportId,
    reply_cert: Cert,
    signers: &Signers<'_>,
    now: SystemTime,
) -> Timeline {
    let opener = Opener::new(SecretSource::Keys(vec![reply_cert]), None);
    let mut events = Vec::new();
    for info in store.events(report).unwrap_or_default() {
        if info.size > MAX_EVENT_CIPHERTEXT as u64 {
            continue;
        }
        let mut bytes = Vec::new();
        let Ok(reader) = store.open_event(report, &info.name) else {
            continue;
        };
        if std::io::Read::read_to_end(
            &mut std::io::Read::take(reader, MAX_EVENT_CIPHERTEXT as u64),
            &mut bytes,
        )
        .is_err()
        {
            continue;
        }
        if let Opened::Verified(event) = open_event(&opener, report, &info.name, &bytes, signers)
            && event.visible_to_reporter
        {
            events.push(*event);
        }
    }
    events.sort_by(|a, b| (a.time(), &a.event).cmp(&(b.time(), &b.event)));
    let refs: Vec<&Event> = events.iter().collect();
    let state = CaseState::fold(&refs);
    let received = events.iter().find(|e| e.kind == Kind::Received);
    let open = match received.and_then(|r| Some((r.time()?, r.policy.as_ref()?, r))) {
        Some((at, policy, r)) => state
            .obligations(
                &policy.policy(),
                at,
                r.severity.unwrap_or(Severity::Unknown),
                now,
            )
            .into_iter()
            // The assessment is the maintainers' own: the reporter does
            // not see it, so it would never look done here.
            .filter(|o| o.what != Duty::Assess)
            .collect(),
        None => Vec::new(),
    };
    let receipt = received.and_then(|r| r.receipt.clone());
    Timeline {
        report: report.clone(),
        events,
        open,
        state,
        receipt,
    }
}
