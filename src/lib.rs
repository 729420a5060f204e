//! embargo: an intake for security vulnerability reports that seals every
//! report to the maintainers' OpenPGP certificates as it arrives.
//!
//! # Layout
//!
//! Following the data flow (README, "How it works"), from the researcher to the maintainer:
//!
//! - [`config`]: `embargo.toml`, limits and policy deadlines.
//! - [`report`]: what a researcher sends, its validation and CVSS scoring.
//! - [`keys`]: maintainers' certificates and the intake's own signing key.
//! - [`seal`]: the sealed format: writer (encrypt, sign) and reader (decrypt, verify).
//! - [`store`]: where sealed reports live, committed atomically.
//! - [`intake`]: the web form and API (axum) that stream uploads into the sealer.
//! - [`mailbox`]: the poller that seals mail from IMAP or a Maildir, exactly once.
//! - [`reveal`]: the maintainer's side: `decrypt`, `list`, `fetch`.
//! - [`id`]: report IDs; [`clock`]: an injectable "now".
//! - [`app`]: the operations behind each command (`seal`, `keys check`, …).
//! - [`metrics`]: counters for `GET /metrics` (Prometheus text, fixed labels only).
//! - [`notify`]: batched, content-free "new report" notices (mail, webhooks).
//! - [`alerts`]: key-expiry alerts (30/7/1 days, expired, none usable).
//! - [`logging`]: the log filter that keeps dependencies at `info` and above.
//! - [`retention`]: `[retention]`: deletes whole reports by age or once fetched.
#![forbid(unsafe_code)]

pub mod alerts;
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
pub mod report;
pub mod retention;
pub mod reveal;
pub mod seal;
pub mod server;
pub mod smtp;
pub mod station;
pub mod store;
pub mod units;
