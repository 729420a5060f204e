//! A case as the maintainer's commands see it: the verified report, every
//! event opened with its checks, and their fold; and adding one event.

use std::time::SystemTime;

use openpgp::Cert;
use sequoia_openpgp as openpgp;

use super::event::{Event, Kind};
use super::sealed::{
    Opened, SealEventError, Signers, open_event, seal_event, seal_event_gpg, signing_keypair,
};
use super::state::{CaseState, Obligation};
use crate::config::{MessageFormat, Policy};
use crate::id::ReportId;
use crate::keys::Recipients;
use crate::seal::reader::OpenedManifest;
use crate::seal::{Manifest, Opener, RevealError, SignatureCheck};
use crate::store::{Store, StoreError};

/// What stops a case command. Messages say what to do; none quotes plaintext.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaseError {
    #[error(transparent)]
    Reveal(#[from] RevealError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Seal(#[from] SealEventError),
    #[error(
        "report {0} is not verified: its manifest signature was not checked; give the intake's signing certificate (--signer FILE, or -c with the intake's state_dir) so that events are only added to genuine reports"
    )]
    Unverified(ReportId),
    #[error("the case of report {0} is closed: `embargo case reopen {0}` first")]
    Closed(ReportId),
    #[error("the case of report {0} is not closed: there is nothing to reopen")]
    NotClosed(ReportId),
    #[error(
        "no maintainer certificates to seal the event to: give -c FILE (the intake's keys_dir), or fetch once so that the store holds the intake's /keys.asc"
    )]
    NoRecipients,
}

/// One case, read.
#[derive(Debug)]
pub struct Case {
    pub manifest: Manifest,
    pub signature: SignatureCheck,
    /// Every stored event, verified or not, in time order (unverifiable
    /// ones last).
    pub events: Vec<Opened>,
    pub state: CaseState,
}

impl Case {
    /// Reads report `id` and its events from `store`.
    pub fn read(
        store: &dyn Store,
        opener: &Opener,
        signers: &Signers<'_>,
        id: &ReportId,
    ) -> Result<Case, CaseError> {
        let opened = opener.open_manifest(store, id)?;
        Ok(Case::with_events(store, opener, signers, opened))
    }

    /// The case of a manifest already opened: its events read and checked.
    /// An event that cannot be read is shown as unverifiable.
    pub fn with_events(
        store: &dyn Store,
        opener: &Opener,
        signers: &Signers<'_>,
        opened: OpenedManifest,
    ) -> Case {
        let id = &opened.manifest.id.clone();
        let infos = match store.events(id) {
            Ok(infos) => infos,
            Err(e) => {
                return Case {
                    events: vec![Opened::Unverifiable {
                        name: "events/".into(),
                        why: format!("cannot be listed: {e}"),
                    }],
                    state: CaseState::fold(&[]),
                    manifest: opened.manifest,
                    signature: opened.signature,
                };
            }
        };
        let mut events = Vec::new();
        for info in infos {
            let mut bytes = Vec::new();
            let read = store.open_event(id, &info.name).map(|reader| {
                std::io::Read::read_to_end(
                    &mut std::io::Read::take(reader, super::sealed::MAX_EVENT_CIPHERTEXT as u64),
                    &mut bytes,
                )
            });
            events.push(match read {
                Ok(Ok(_)) => open_event(opener, id, &info.name, &bytes, signers),
                Ok(Err(e)) => Opened::Unverifiable {
                    name: info.name.clone(),
                    why: format!("cannot be read: {e}"),
                },
                Err(e) => Opened::Unverifiable {
                    name: info.name.clone(),
                    why: format!("cannot be read: {e}"),
                },
            });
        }
        events.sort_by_key(order);
        let state = CaseState::fold(&verified(&events));
        Case {
            manifest: opened.manifest,
            signature: opened.signature,
            events,
            state,
        }
    }

    /// The reporter's public reply certificate sealed into the manifest
    ///, if the report has one.
    pub fn reply_cert(&self) -> Option<Cert> {
        use openpgp::parse::Parse;
        let armored = &self.manifest.reporter.reply_cert;
        if armored.is_empty() {
            return None;
        }
        Cert::from_bytes(armored.as_bytes())
            .ok()
            .filter(|c| !c.is_tsk())
    }

    /// When the report arrived.
    pub fn received(&self) -> Option<SystemTime> {
        crate::clock::parse_rfc3339(&self.manifest.received_at)
    }

    /// The promises made at intake (sealed into the manifest), else
    /// `fallback` for reports sealed before they were recorded.
    pub fn policy(&self, fallback: &Policy) -> Policy {
        self.manifest
            .policy
            .as_ref()
            .map_or_else(|| fallback.clone(), |p| p.policy())
    }

    /// What is still owed at `now`.
    pub fn obligations(&self, fallback: &Policy, now: SystemTime) -> Vec<Obligation> {
        self.obligations_in(&self.state, fallback, now)
    }

    /// The events that verified, in time order.
    pub fn verified(&self) -> Vec<&Event> {
        verified(&self.events)
    }

    /// The state the case will be in once `event` is added.
    pub fn state_after(&self, event: &Event) -> CaseState {
        let mut events = self.verified();
        events.push(event);
        CaseState::fold(&events)
    }

    /// What is owed at `now` when the case is in `state`.
    pub fn obligations_in(
        &self,
        state: &CaseState,
        fallback: &Policy,
        now: SystemTime,
    ) -> Vec<Obligation> {
        let Some(received) = self.received() else {
            return Vec::new();
        };
        state.obligations(
            &self.policy(fallback),
            received,
            self.manifest.report.severity,
            now,
        )
    }
}

/// The verified ones of `events`.
fn verified(events: &[Opened]) -> Vec<&Event> {
    events
        .iter()
        .filter_map(|o| match o {
            Opened::Verified(e) => Some(&**e),
            Opened::Unverifiable { .. } => None,
        })
        .collect()
}

/// Verified events by time and ID, then the unverifiable ones by name.
fn order(o: &Opened) -> (u8, Option<SystemTime>, String) {
    match o {
        Opened::Verified(e) => (0, e.time(), e.event.to_string()),
        Opened::Unverifiable { name, .. } => (1, None, name.clone()),
    }
}

/// Who signs a new event.
pub enum Author {
    /// A certificate with its secret signing key unlocked (`--key`).
    Key(Box<Cert>),
    /// The user's gpg and gpg-agent (`--gpg`), with this signing key.
    Gpg {
        homedir: Option<std::path::PathBuf>,
        fingerprint: String,
    },
}

impl Author {
    /// The primary fingerprint events name as their author.
    pub fn fingerprint(&self) -> String {
        match self {
            Author::Key(cert) => cert.fingerprint().to_hex(),
            Author::Gpg { fingerprint, .. } => fingerprint.clone(),
        }
    }
}

/// Where a new event goes and who signs it.
pub struct Writer<'a> {
    pub store: &'a dyn Store,
    pub recipients: &'a Recipients,
    pub format: MessageFormat,
    pub author: &'a Author,
}

impl Writer<'_> {
    /// Whether `case` may take an event of `kind` here: its report is
    /// verified, a closed case takes only `reopened` (and only a closed one
    /// can be reopened), and there are maintainers to seal to.
    pub fn check(&self, case: &Case, kind: Kind) -> Result<(), CaseError> {
        let id = &case.manifest.id;
        if !matches!(case.signature, SignatureCheck::Verified(_)) {
            return Err(CaseError::Unverified(id.clone()));
        }
        let closed = case.state.resolution.is_some();
        match (kind, closed) {
            (Kind::Reopened, false) => return Err(CaseError::NotClosed(id.clone())),
            (Kind::Reopened, true) => {}
            (_, true) => return Err(CaseError::Closed(id.clone())),
            _ => {}
        }
        if self.recipients.certs.is_empty() {
            return Err(CaseError::NoRecipients);
        }
        Ok(())
    }

    /// Checks that `case` may take an event of `event.kind` (a closed case
    /// takes only `reopened`; only a closed one can be reopened), seals it
    /// and stores it. Nothing is stored when any step fails.
    pub fn add(&self, case: &Case, event: &Event) -> Result<String, CaseError> {
        self.check(case, event.kind)?;
        let id = &case.manifest.id;
        // What the reporter may see is sealed to their reply certificate
        // too; notes and assessments never are.
        let with_reporter = event
            .visible_to_reporter
            .then(|| case.reply_cert())
            .flatten()
            .map(|cert| self.recipients.with(cert));
        let recipients = with_reporter.as_ref().unwrap_or(self.recipients);
        let bytes = match self.author {
            Author::Key(cert) => {
                seal_event(event, recipients, self.format, signing_keypair(cert)?)?
            }
            Author::Gpg { homedir, .. } => {
                seal_event_gpg(event, recipients, self.format, homedir.as_deref())?
            }
        };
        let name = event.event.file_name();
        self.store.add_event(id, &name, &bytes)?;
        Ok(name)
    }
}
