//! Cases: what happens to a report after intake. Every action of a
//! maintainer (acknowledged, assessed, a reply, a fix, closed…) is an
//! *event*, sealed like a report and stored beside it, append-only; the
//! server stores events it cannot read.
//!
//! - [`book`]: a case as commands read it, and adding an event to it.
//! - [`event`]: the event plaintext (`embargo.event.v1`) and its checks.
//! - [`sealed`]: sealing an event, and opening one with every check.
//! - [`status`]: the signed, unencrypted status the intake may read
//!   (state, event names, due times) for retention and `/metrics`.
//! - [`state`]: the fold of verified events into a case state, and the
//!   obligations (deadlines) still open.

pub mod book;
pub mod event;
pub mod sealed;
pub mod state;
pub mod status;

pub use book::{Author, Case, CaseError, Writer};
pub use event::{Event, EventId, Kind, Resolution};
pub use sealed::{Opened, Signers, open_event, seal_event};
pub use state::{CaseState, Duty, Obligation, Stage};
