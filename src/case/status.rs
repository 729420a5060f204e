//! The case status the intake may see (`embargo.case-status.v1`): a short
//! statement, signed by a maintainer but not encrypted, of where a case
//! stands. It is what lets the server keep its promises without reading a
//! case: retention deletes only cases whose status says `closed`, and
//! `/metrics` counts cases by state and the obligations that are overdue.
//!
//! It says only what a status must: the state, the event names it was
//! computed from, and when the acknowledgement, assessment and next status
//! update are due. It never holds the severity, and not the fix deadline
//! either, because the length of that deadline is the severity.
//!
//! Every maintainer who folds the same events computes the same state, so
//! the intake accepts a status only when it names every event the intake
//! holds for that report: a maintainer working from an older copy cannot
//! set a case back, and a replayed statement cannot close a case reopened
//! since (the `reopened` event is not among the ones it names).

use std::collections::BTreeSet;
use std::io::Read;
use std::time::SystemTime;

use openpgp::Cert;
use openpgp::parse::Parse;
use openpgp::parse::stream::{MessageLayer, MessageStructure, VerificationHelper, VerifierBuilder};
use openpgp::policy::StandardPolicy;
use openpgp::{KeyHandle, Packet};
use sequoia_openpgp as openpgp;
use serde::{Deserialize, Serialize};

use super::book::{Author, Case};
use super::sealed::{SealEventError, gpg_sign, signing_keypair};
use super::state::{CaseState, Duty, Stage};
use crate::clock::{parse_rfc3339, rfc3339_micros};
use crate::config::Policy;
use crate::id::ReportId;
use crate::store::is_event_name;
pub use crate::store::{MAX_STATUS_BYTES, STATUS_FILE};

/// The schema this version writes and reads.
pub const SCHEMA: &str = "embargo.case-status.v1";
/// Most events one status may name.
pub const MAX_STATUS_EVENTS: usize = 1000;

/// When the obligations the server may count are due (RFC 3339), absent
/// once met.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Due {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledge: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assess: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_update: Option<String>,
}

/// One case status, as signed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseStatus {
    pub schema: String,
    pub report: ReportId,
    /// When it was computed (RFC 3339 with microseconds); a newer one
    /// replaces an older one.
    pub at: String,
    pub state: Stage,
    /// The names of every stored event it was computed from, sorted.
    pub events: Vec<String>,
    #[serde(default)]
    pub due: Due,
}

/// Why a status was refused. No variant quotes the statement.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum StatusError {
    #[error("the case status is larger than {MAX_STATUS_BYTES} bytes")]
    TooLarge,
    #[error("the case status is not a signed OpenPGP message: {0}")]
    NotSigned(String),
    #[error(
        "the case status is not signed by a maintainer certificate of this intake ({0}); sign it with a key whose certificate is in keys_dir"
    )]
    Signature(String),
    #[error("the case status is not {SCHEMA} JSON: {0}")]
    Json(String),
    #[error("the case status is for report {0}, not this one")]
    OtherReport(ReportId),
}

impl CaseStatus {
    /// The status of `case` at `now`, computed from its events; `names` are
    /// the names of every event stored for it (verified or not: the status
    /// says which events its author has seen).
    pub fn of(case: &Case, names: &[String], fallback: &Policy, now: SystemTime) -> CaseStatus {
        CaseStatus::in_state(case, &case.state, names, fallback, now)
    }

    /// The status of `case` were it in `state` (the state once an event
    /// not yet stored is added, so the status can be signed first).
    pub fn in_state(
        case: &Case,
        state: &CaseState,
        names: &[String],
        fallback: &Policy,
        now: SystemTime,
    ) -> CaseStatus {
        let mut due = Due::default();
        for o in case.obligations_in(state, fallback, now) {
            let at = Some(crate::clock::rfc3339(o.due));
            match o.what {
                Duty::Acknowledge => due.acknowledge = at,
                Duty::Assess => due.assess = at,
                Duty::StatusUpdate => due.status_update = at,
                // The fix deadline's length is the severity: not told.
                Duty::Fix => {}
            }
        }
        let mut events: Vec<String> = names.to_vec();
        events.sort();
        events.dedup();
        CaseStatus {
            schema: SCHEMA.into(),
            report: case.manifest.id.clone(),
            at: rfc3339_micros(now),
            state: state.stage,
            events,
            due,
        }
    }

    /// When it was computed.
    pub fn time(&self) -> Option<SystemTime> {
        parse_rfc3339(&self.at)
    }

    /// Whether it was computed from every event in `stored`.
    pub fn covers<'a>(&self, stored: impl IntoIterator<Item = &'a str>) -> bool {
        let mine: BTreeSet<&str> = self.events.iter().map(String::as_str).collect();
        stored.into_iter().all(|name| mine.contains(name))
    }

    /// The time an obligation is due, when open.
    pub fn due(&self, what: Duty) -> Option<SystemTime> {
        let at = match what {
            Duty::Acknowledge => &self.due.acknowledge,
            Duty::Assess => &self.due.assess,
            Duty::StatusUpdate => &self.due.status_update,
            Duty::Fix => &None,
        };
        at.as_deref().and_then(parse_rfc3339)
    }

    /// The JSON that is signed.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses and checks the JSON of a status for report `id`.
    pub fn from_json(json: &[u8], id: &ReportId) -> Result<CaseStatus, StatusError> {
        let status: CaseStatus = serde_json::from_slice(json)
            .map_err(|e| StatusError::Json(format!("line {}, column {}", e.line(), e.column())))?;
        let bad = |why: &str| Err(StatusError::Json(why.into()));
        if status.schema != SCHEMA {
            return bad("another schema");
        }
        if &status.report != id {
            return Err(StatusError::OtherReport(status.report));
        }
        if status.time().is_none() {
            return bad("`at` is not an RFC 3339 time");
        }
        if status.events.len() > MAX_STATUS_EVENTS {
            return bad("it names too many events");
        }
        if !status.events.iter().all(|n| is_event_name(n)) {
            return bad("it names something that is not an event");
        }
        let due = &status.due;
        let times = [&due.acknowledge, &due.assess, &due.status_update];
        if times
            .iter()
            .any(|t| t.as_deref().is_some_and(|t| parse_rfc3339(t).is_none()))
        {
            return bad("a due time is not an RFC 3339 time");
        }
        Ok(status)
    }

    /// Signs the status as `author`: a signed OpenPGP message, not
    /// encrypted (the intake reads it).
    pub fn sign(&self, author: &Author) -> Result<Vec<u8>, SealEventError> {
        let json = self.to_json();
        match author {
            // Signed at the real time: `at` inside says when it was computed
            // (which `--now` may move), the signature when it was made.
            Author::Key(cert) => sign_with(signing_keypair(cert)?, SystemTime::now(), &json),
            Author::Gpg {
                homedir,
                fingerprint,
            } => gpg_sign(homedir.as_deref(), fingerprint, &json),
        }
    }
}

fn sign_with(
    keypair: openpgp::crypto::KeyPair,
    at: SystemTime,
    json: &[u8],
) -> Result<Vec<u8>, SealEventError> {
    let signed = crate::seal::writer::signed_message(keypair, at, json)
        .map_err(|e| SealEventError::Gpg(format!("cannot sign the case status: {e}")))?;
    Ok(signed.to_vec())
}

/// Verifies a signed status for report `id`: a good signature by one of
/// `maintainers`, then the JSON's checks.
pub fn verify(
    signed: &[u8],
    maintainers: &[Cert],
    id: &ReportId,
) -> Result<CaseStatus, StatusError> {
    if signed.len() > MAX_STATUS_BYTES {
        return Err(StatusError::TooLarge);
    }
    only_signed_data(signed)?;
    let policy = StandardPolicy::new();
    let helper = Checker {
        certs: maintainers,
        good: false,
        why: None,
    };
    let mut verifier = VerifierBuilder::from_bytes(signed)
        .map_err(|e| StatusError::NotSigned(short(&e)))?
        .with_policy(&policy, None, helper)
        .map_err(|e| refusal(&e))?;
    let mut json = Vec::new();
    let read = (&mut verifier)
        .take(MAX_STATUS_BYTES as u64)
        .read_to_end(&mut json);
    let helper = verifier.into_helper();
    if let Err(e) = read {
        return Err(helper
            .why
            .map(StatusError::Signature)
            .unwrap_or_else(|| StatusError::NotSigned(e.to_string())));
    }
    if !helper.good {
        return Err(StatusError::Signature(
            helper.why.unwrap_or_else(|| "no good signature".into()),
        ));
    }
    CaseStatus::from_json(&json, id)
}

/// Reads a status the store holds (verified when it was stored) without
/// checking its signature again: retention and `/metrics` trust the store
/// as they trust its other files.
pub fn read_stored(signed: &[u8], id: &ReportId) -> Option<CaseStatus> {
    use openpgp::parse::PacketParserResult;
    if signed.len() > MAX_STATUS_BYTES {
        return None;
    }
    let mut ppr = openpgp::parse::PacketParser::from_bytes(signed).ok()?;
    while let PacketParserResult::Some(mut pp) = ppr {
        if let Packet::Literal(_) = &pp.packet {
            let mut json = Vec::new();
            (&mut pp)
                .take(MAX_STATUS_BYTES as u64)
                .read_to_end(&mut json)
                .ok()?;
            return CaseStatus::from_json(&json, id).ok();
        }
        ppr = pp.recurse().ok()?.1;
    }
    None
}

/// A signed message here is one-pass signature, literal data, signature:
/// no encryption, no compression, nothing nested (what `gpg --sign
/// --compress-algo none` and embargo make).
fn only_signed_data(signed: &[u8]) -> Result<(), StatusError> {
    use openpgp::parse::PacketParserResult;
    let not = |why: &str| Err(StatusError::NotSigned(why.into()));
    let mut ppr = openpgp::parse::PacketParser::from_bytes(signed)
        .map_err(|_| StatusError::NotSigned("not OpenPGP data".into()))?;
    let mut literals = 0;
    while let PacketParserResult::Some(pp) = ppr {
        match &pp.packet {
            Packet::OnePassSig(_) | Packet::Signature(_) => {}
            Packet::Literal(_) => literals += 1,
            _ => return not("it holds packets other than signatures and literal data"),
        }
        ppr = match pp.next() {
            Ok((_, next)) => next,
            Err(_) => return not("damaged packet framing"),
        };
    }
    if literals != 1 {
        return not("it does not hold exactly one literal data packet");
    }
    Ok(())
}

fn short(e: &anyhow::Error) -> String {
    e.to_string().chars().take(200).collect()
}

fn refusal(e: &anyhow::Error) -> StatusError {
    StatusError::Signature(short(e))
}

struct Checker<'a> {
    certs: &'a [Cert],
    good: bool,
    why: Option<String>,
}

impl VerificationHelper for Checker<'_> {
    fn get_certs(&mut self, _ids: &[KeyHandle]) -> openpgp::Result<Vec<Cert>> {
        Ok(self.certs.to_vec())
    }

    fn check(&mut self, structure: MessageStructure) -> openpgp::Result<()> {
        for layer in structure.into_iter() {
            if let MessageLayer::SignatureGroup { results } = layer {
                if results.iter().any(Result::is_ok) {
                    self.good = true;
                } else if let Some(Err(e)) = results.first() {
                    self.why = Some(e.to_string().chars().take(200).collect());
                }
            }
        }
        if self.good {
            Ok(())
        } else {
            let why = self
                .why
                .clone()
                .unwrap_or_else(|| "it carries no signature".into());
            self.why = Some(why.clone());
            Err(anyhow::anyhow!(why))
        }
    }
}

/// What `/metrics` counts: cases by state, and open obligations that are
/// overdue, by kind (the fix deadline is not known to the intake).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub by_state: std::collections::BTreeMap<Stage, u64>,
    pub overdue: std::collections::BTreeMap<Duty, u64>,
}

/// The states and the obligations a tally has a line for, always.
pub const TALLIED_STATES: [Stage; 6] = [
    Stage::New,
    Stage::Acknowledged,
    Stage::Assessed,
    Stage::Fixing,
    Stage::Fixed,
    Stage::Closed,
];
pub const TALLIED_DUTIES: [Duty; 3] = [Duty::Acknowledge, Duty::Assess, Duty::StatusUpdate];

/// Counts the cases of `store` at `now`. A report without a status is a
/// new case whose obligations run from its arrival under `policy` (the
/// intake's own promises).
pub fn tally(store: &dyn crate::store::Store, policy: &Policy, now: SystemTime) -> Tally {
    let mut t = Tally::default();
    let Ok(ids) = store.list() else {
        return t;
    };
    for id in ids {
        let stored = store
            .status(&id)
            .ok()
            .flatten()
            .and_then(|s| read_stored(&s, &id));
        let (state, due) = match stored {
            Some(s) => (s.state, TALLIED_DUTIES.map(|d| (d, s.due(d)))),
            None => {
                let Some(arrived) = store.arrived_at(&id) else {
                    continue;
                };
                (
                    Stage::New,
                    [
                        (
                            Duty::Acknowledge,
                            Some(arrived + policy.acknowledge_within.0),
                        ),
                        (Duty::Assess, Some(policy.assess_within.after(arrived))),
                        (
                            Duty::StatusUpdate,
                            Some(arrived + policy.status_update_within.0),
                        ),
                    ],
                )
            }
        };
        *t.by_state.entry(state).or_default() += 1;
        if state == Stage::Closed {
            continue;
        }
        for (duty, at) in due {
            if at.is_some_and(|at| now > at) {
                *t.overdue.entry(duty).or_default() += 1;
            }
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use openpgp::cert::prelude::*;

    fn status(id: &ReportId) -> CaseStatus {
        CaseStatus {
            schema: SCHEMA.into(),
            report: id.clone(),
            at: "2026-11-24T09:00:00.000001Z".into(),
            state: Stage::Acknowledged,
            events: vec![format!("{}.pgp", "a".repeat(32))],
            due: Due {
                acknowledge: None,
                assess: Some("2026-11-30T09:00:00Z".into()),
                status_update: Some("2026-12-01T09:00:00Z".into()),
            },
        }
    }

    fn key() -> Cert {
        CertBuilder::general_purpose(Some("m@example.org"))
            .generate()
            .unwrap()
            .0
    }

    #[test]
    fn a_maintainers_signed_status_verifies_and_nothing_else_does() {
        let id = ReportId::random();
        let (signer, stranger) = (key(), key());
        let s = status(&id);
        let signed = s.sign(&Author::Key(Box::new(signer.clone()))).unwrap();
        let public = signer.clone().strip_secret_key_material();
        assert_eq!(
            verify(&signed, std::slice::from_ref(&public), &id).unwrap(),
            s
        );
        assert_eq!(read_stored(&signed, &id), Some(s.clone()));
        // Another report's status, another signer, a damaged one: refused.
        assert!(matches!(
            verify(&signed, std::slice::from_ref(&public), &ReportId::random()),
            Err(StatusError::OtherReport(_))
        ));
        let stranger = stranger.strip_secret_key_material();
        assert!(matches!(
            verify(&signed, &[stranger], &id),
            Err(StatusError::Signature(_))
        ));
        let mut flipped = signed.clone();
        let at = flipped.len() / 2;
        flipped[at] ^= 0x01;
        assert!(verify(&flipped, std::slice::from_ref(&public), &id).is_err());
        assert!(
            verify(
                &signed[..signed.len() - 10],
                std::slice::from_ref(&public),
                &id
            )
            .is_err()
        );
        assert!(verify(b"{}", &[public], &id).is_err());
    }

    #[test]
    fn a_status_covers_only_the_events_it_names() {
        let id = ReportId::random();
        let s = status(&id);
        let mine = s.events[0].clone();
        assert!(s.covers([mine.as_str()]));
        assert!(s.covers([]));
        let other = format!("{}.pgp", "b".repeat(32));
        assert!(!s.covers([mine.as_str(), other.as_str()]));
    }

    #[test]
    fn hostile_status_json_is_refused() {
        let id = ReportId::random();
        let mut s = status(&id);
        s.events = vec!["../../manifest.pgp".into()];
        assert!(CaseStatus::from_json(&s.to_json(), &id).is_err());
        let mut s = status(&id);
        s.due.assess = Some("tomorrow".into());
        assert!(CaseStatus::from_json(&s.to_json(), &id).is_err());
        let mut s = status(&id);
        s.schema = "other".into();
        assert!(CaseStatus::from_json(&s.to_json(), &id).is_err());
        assert!(CaseStatus::from_json(b"[", &id).is_err());
    }
}
