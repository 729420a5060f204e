//! embargo: an intake for security vulnerability reports that seals every
//! report to the maintainers' OpenPGP certificates as it arrives.
//!
//! # Layout
//!
//! Following the data flow (README, "How it works"), from the researcher to
//! the maintainer; each module uses only those listed before it:
//!
//! - [`clock`], [`id`], [`units`]: an injectable "now", report IDs, sizes in words.
//! - [`config`]: `embargo.toml`, limits and policy deadlines.
//! - [`report`]: what a researcher sends, its validation and CVSS scoring.
//! - [`keys`]: maintainers' certificates and the intake's own signing key.
//! - [`store`]: where sealed reports live, committed atomically.
//! - [`seal`]: the sealed format: writer (encrypt, sign) and reader (decrypt, verify).
//! - [`station`]: keys, secrets and store opened once; what every channel seals with.
//! - [`case`]: what happens after intake: sealed, signed events, and the deadlines they close.
//! - [`advisory`]: drafts of the public advisory (OSV, CVE JSON 5, GHSA, Markdown) from a case.
//! - [`metrics`], [`health`]: counters for `GET /metrics`; what a service tells `/healthz`.
//! - [`notify`]: batched, content-free "new report" notices (mail, webhooks); [`smtp`].
//! - [`alerts`]: key-expiry alerts (30/7/1 days, expired, none usable).
//! - [`retention`]: `[retention]`: deletes closed cases whole, by age or once fetched.
//! - [`intake`]: the web form and API (axum), HTTP only, streaming uploads into the sealer.
//! - [`mailbox`]: the poller that seals mail from IMAP or a Maildir, exactly once.
//! - [`server`]: the running process: which services start, signals, reloads.
//! - [`reveal`]: the maintainer's side: `decrypt`, `list`, `fetch`.
//! - [`logging`]: the log filter that keeps dependencies at `info` and above.
//!
//! The `embargo` binary (`src/bin/embargo/`) sits on top: arguments, one
//! handler per command, and everything printed.
#![forbid(unsafe_code)]

pub mod ack;
pub mod advisory;
pub mod alerts;
pub mod case;
pub mod clock;
pub mod config;
pub mod health;
pub mod id;
pub mod intake;
pub mod keys;
pub mod logging;
pub mod mailbox;
pub mod metrics;
pub mod notify;
pub mod reply;
pub mod report;
pub mod retention;
pub mod reveal;
pub mod seal;
pub mod server;
pub mod smtp;
pub mod station;
pub mod store;
pub mod units;
