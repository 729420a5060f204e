//! A case's state is the fold of its verified events in time order, and its
//! obligations follow from that state and the promises sealed at intake.
//!
//! - acknowledgement: due `acknowledge_within` after arrival, until an
//!   `acknowledged` or any reporter-visible event;
//! - assessment: due `assess_within` (business days by default) after
//!   arrival, until `assessed`;
//! - status update: due `status_update_within` after the last
//!   reporter-visible event (or arrival), again and again until closed;
//! - fix: due `fix_within` for the assessed severity (the reporter's until
//!   assessed) after arrival, until a released fix.
//!
//! A closed case owes nothing; reopening it brings back what was still open.
//!
//! A reply is *waiting* from the first `reporter-message` after the last
//! reporter-visible event a maintainer signed, until the next one.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::event::{Event, Kind, Resolution};
use crate::config::Policy;
use crate::report::Severity;

/// Where a case stands, as `embargo list` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    New,
    Acknowledged,
    Assessed,
    /// A fix is recorded but not released.
    Fixing,
    /// A released fix is recorded.
    Fixed,
    Closed,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::New => "new",
            Stage::Acknowledged => "acknowledged",
            Stage::Assessed => "assessed",
            Stage::Fixing => "fixing",
            Stage::Fixed => "fixed",
            Stage::Closed => "closed",
        }
    }
}

/// What the verified events of one case add up to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaseState {
    pub stage: Stage,
    pub acknowledged: bool,
    /// The assessed severity, when assessed (the last assessment counts).
    pub assessed: Option<Severity>,
    pub fix_released: bool,
    pub fix_recorded: bool,
    /// The last reporter-visible event.
    pub last_reporter_visible: Option<SystemTime>,
    /// Set while closed.
    pub resolution: Option<Resolution>,
    /// When the reporter's first message that no maintainer has answered
    /// yet (with any reporter-visible event: a reply, a status, an
    /// acknowledgement…) arrived; `None` when nothing waits.
    pub reply_waiting: Option<SystemTime>,
}

impl CaseState {
    /// Folds `events` (verified ones only), whatever order they come in:
    /// they are taken by time, then by event ID, so every maintainer who
    /// holds the same events sees the same state.
    pub fn fold(events: &[&Event]) -> CaseState {
        let mut sorted: Vec<&Event> = events.to_vec();
        sorted.sort_by(|a, b| (a.time(), &a.event).cmp(&(b.time(), &b.event)));
        let mut s = CaseState {
            stage: Stage::New,
            acknowledged: false,
            assessed: None,
            fix_released: false,
            fix_recorded: false,
            last_reporter_visible: None,
            resolution: None,
            reply_waiting: None,
        };
        for e in sorted {
            s.apply(e);
        }
        s.stage = s.stage_now();
        s
    }

    fn apply(&mut self, e: &Event) {
        if e.visible_to_reporter && !e.kind.signed_by_intake() {
            self.last_reporter_visible = e.time().max(self.last_reporter_visible);
            self.acknowledged = true;
            self.reply_waiting = None;
        }
        if e.kind == Kind::ReporterMessage && self.reply_waiting.is_none() {
            self.reply_waiting = e.time();
        }
        match e.kind {
            Kind::Acknowledged => self.acknowledged = true,
            Kind::Assessed => self.assessed = e.assessment.as_ref().map(|a| a.severity),
            Kind::Fix => {
                self.fix_recorded = true;
                self.fix_released |= e.fix.as_ref().is_some_and(|f| f.released);
            }
            Kind::Closed => self.resolution = e.resolution,
            Kind::Reopened => self.resolution = None,
            _ => {}
        }
    }

    fn stage_now(&self) -> Stage {
        if self.resolution.is_some() {
            Stage::Closed
        } else if self.fix_released {
            Stage::Fixed
        } else if self.fix_recorded {
            Stage::Fixing
        } else if self.assessed.is_some() {
            Stage::Assessed
        } else if self.acknowledged {
            Stage::Acknowledged
        } else {
            Stage::New
        }
    }

    /// The severity deadlines follow: the assessed one, else the reporter's.
    pub fn severity(&self, reported: Severity) -> Severity {
        self.assessed.unwrap_or(reported)
    }

    /// What is still owed at `now`, from the `policy` promised at intake
    /// for a report that arrived at `received` with severity `reported`.
    pub fn obligations(
        &self,
        policy: &Policy,
        received: SystemTime,
        reported: Severity,
        now: SystemTime,
    ) -> Vec<Obligation> {
        if self.stage == Stage::Closed {
            return Vec::new();
        }
        let mut out = Vec::new();
        let mut owe = |what: Duty, due: SystemTime| {
            out.push(Obligation {
                what,
                due,
                overdue: now > due,
            })
        };
        if !self.acknowledged {
            owe(Duty::Acknowledge, received + policy.acknowledge_within.0);
        }
        if self.assessed.is_none() {
            owe(Duty::Assess, policy.assess_within.after(received));
        }
        let since = self.last_reporter_visible.unwrap_or(received);
        owe(Duty::StatusUpdate, since + policy.status_update_within.0);
        if !self.fix_released
            && let Some(span) = policy.fix_deadline(self.severity(reported).as_str())
        {
            owe(Duty::Fix, received + span.0);
        }
        out
    }
}

/// One thing the maintainers promised to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Duty {
    Acknowledge,
    Assess,
    StatusUpdate,
    Fix,
}

impl Duty {
    pub fn as_str(self) -> &'static str {
        match self {
            Duty::Acknowledge => "acknowledge",
            Duty::Assess => "assess",
            Duty::StatusUpdate => "status_update",
            Duty::Fix => "fix",
        }
    }
}

/// An open obligation and when it is (or was) due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Obligation {
    pub what: Duty,
    pub due: SystemTime,
    pub overdue: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::case::event::{Assessment, Fix};
    use crate::clock::parse_rfc3339;
    use crate::config::Within;
    use crate::id::ReportId;

    fn at(s: &str) -> SystemTime {
        parse_rfc3339(s).unwrap()
    }

    fn event(kind: Kind, when: &str) -> Event {
        let mut e = Event::new(ReportId::random(), kind, "B".repeat(40), at(when));
        e.message = Some("m".into());
        e
    }

    fn due(obligations: &[Obligation], what: Duty) -> Option<Obligation> {
        obligations.iter().copied().find(|o| o.what == what)
    }

    #[test]
    fn business_days_skip_the_weekend() {
        // 2026-11-27 is a Friday.
        let friday = at("2026-11-27T15:00:00Z");
        assert_eq!(
            Within::BusinessDays(1).after(friday),
            at("2026-11-30T15:00:00Z")
        );
        assert_eq!(
            Within::BusinessDays(5).after(friday),
            at("2026-12-04T15:00:00Z")
        );
        let saturday = at("2026-11-28T10:00:00Z");
        assert_eq!(
            Within::BusinessDays(1).after(saturday),
            at("2026-11-30T10:00:00Z")
        );
        assert_eq!("5 business days".parse(), Ok(Within::BusinessDays(5)));
        assert!("five business days".parse::<Within>().is_err());
    }

    #[test]
    fn obligations_close_as_events_arrive() {
        let policy = Policy::default();
        let received = at("2026-11-23T09:00:00Z"); // a Monday
        let fresh = CaseState::fold(&[]);
        let owed = fresh.obligations(
            &policy,
            received,
            Severity::High,
            at("2026-11-26T09:00:00Z"),
        );
        assert!(due(&owed, Duty::Acknowledge).unwrap().overdue);
        let assess = due(&owed, Duty::Assess).unwrap();
        assert_eq!(assess.due, at("2026-11-30T09:00:00Z"));
        assert!(!assess.overdue);
        assert_eq!(
            due(&owed, Duty::Fix).unwrap().due,
            at("2026-12-23T09:00:00Z")
        );

        let ack = event(Kind::Acknowledged, "2026-11-24T09:00:00Z");
        let mut assessed = event(Kind::Assessed, "2026-11-25T09:00:00Z");
        assessed.assessment = Some(Assessment {
            severity: Severity::Critical,
            cvss: None,
            cwe: vec![],
        });
        let state = CaseState::fold(&[&assessed, &ack]);
        assert_eq!(state.stage, Stage::Assessed);
        let owed = state.obligations(
            &policy,
            received,
            Severity::High,
            at("2026-11-26T09:00:00Z"),
        );
        assert!(due(&owed, Duty::Acknowledge).is_none());
        assert!(due(&owed, Duty::Assess).is_none());
        // The assessed severity sets the fix deadline: critical is 7 days.
        assert_eq!(
            due(&owed, Duty::Fix).unwrap().due,
            at("2026-11-30T09:00:00Z")
        );
        // The acknowledgement was told to the reporter: the next status
        // update counts from it.
        assert_eq!(
            due(&owed, Duty::StatusUpdate).unwrap().due,
            at("2026-12-01T09:00:00Z")
        );

        let reply = event(Kind::Reply, "2026-11-27T09:00:00Z");
        let mut fix = event(Kind::Fix, "2026-11-28T09:00:00Z");
        fix.fix = Some(Fix {
            version: "1.4.2".into(),
            commit: None,
            released: true,
        });
        let state = CaseState::fold(&[&ack, &assessed, &reply, &fix]);
        assert_eq!(state.stage, Stage::Fixed);
        let owed = state.obligations(
            &policy,
            received,
            Severity::High,
            at("2026-12-10T09:00:00Z"),
        );
        assert!(due(&owed, Duty::Fix).is_none());
        // The released fix was told to the reporter too: a week from it.
        let status = due(&owed, Duty::StatusUpdate).unwrap();
        assert_eq!(status.due, at("2026-12-05T09:00:00Z"));
        assert!(status.overdue);
    }

    #[test]
    fn a_closed_case_owes_nothing_until_reopened() {
        let policy = Policy::default();
        let received = at("2026-11-23T09:00:00Z");
        let mut closed = event(Kind::Closed, "2026-11-24T09:00:00Z");
        closed.resolution = Some(Resolution::Duplicate);
        let state = CaseState::fold(&[&closed]);
        assert_eq!(state.stage, Stage::Closed);
        assert!(
            state
                .obligations(&policy, received, Severity::Low, at("2027-06-01T00:00:00Z"))
                .is_empty()
        );
        let reopened = event(Kind::Reopened, "2026-11-25T09:00:00Z");
        let state = CaseState::fold(&[&reopened, &closed]);
        // The reporter was told of the closing and the reopening, so the
        // acknowledgement is done; the next status update is owed again.
        assert_eq!(state.stage, Stage::Acknowledged);
        let owed = state.obligations(&policy, received, Severity::Low, at("2027-06-01T00:00:00Z"));
        assert!(due(&owed, Duty::Acknowledge).is_none());
        let update = due(&owed, Duty::StatusUpdate).unwrap();
        assert_eq!(update.due, at("2026-12-02T09:00:00Z"));
        assert!(update.overdue);
    }

    #[test]
    fn a_reply_counts_as_acknowledgement_but_a_reporter_message_does_not() {
        let reply = event(Kind::Reply, "2026-11-24T09:00:00Z");
        assert!(CaseState::fold(&[&reply]).acknowledged);
        let mut from_reporter = event(Kind::ReporterMessage, "2026-11-24T09:00:00Z");
        from_reporter.visible_to_reporter = true;
        assert!(!CaseState::fold(&[&from_reporter]).acknowledged);
    }

    #[test]
    fn a_reporter_message_waits_for_the_next_reporter_visible_event_of_a_maintainer() {
        let reporter = |when: &str| {
            let mut e = event(Kind::ReporterMessage, when);
            e.visible_to_reporter = true;
            e
        };
        let first = reporter("2026-11-24T09:00:00Z");
        let second = reporter("2026-11-25T09:00:00Z");
        assert_eq!(CaseState::fold(&[]).reply_waiting, None);
        assert_eq!(
            CaseState::fold(&[&second, &first]).reply_waiting,
            Some(at("2026-11-24T09:00:00Z")),
            "the oldest unanswered message counts"
        );
        // A note (and an assessment) is not an answer the reporter sees.
        let note = event(Kind::Note, "2026-11-26T09:00:00Z");
        assert!(!note.visible_to_reporter);
        assert!(CaseState::fold(&[&first, &note]).reply_waiting.is_some());
        for kind in [Kind::Reply, Kind::Status, Kind::Acknowledged] {
            let answer = event(kind, "2026-11-26T09:00:00Z");
            assert_eq!(
                CaseState::fold(&[&first, &second, &answer]).reply_waiting,
                None,
                "{kind:?}"
            );
            // An answer given before the message does not answer it.
            let earlier = event(kind, "2026-11-23T09:00:00Z");
            assert_eq!(
                CaseState::fold(&[&earlier, &second]).reply_waiting,
                Some(at("2026-11-25T09:00:00Z")),
                "{kind:?}"
            );
        }
        // After a reply, a new message waits again.
        let reply = event(Kind::Reply, "2026-11-24T12:00:00Z");
        assert_eq!(
            CaseState::fold(&[&first, &reply, &second]).reply_waiting,
            Some(at("2026-11-25T09:00:00Z"))
        );
    }
}
