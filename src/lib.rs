//! embargo: an intake for security vulnerability reports that seals every
//! report to the maintainers' OpenPGP certificates as it arrives.
//!
//! # Layout
//!
//! Following the data flow of DESIGN §2, from the researcher to the maintainer:
//!
//! - [`config`]: `embargo.toml`, limits and policy deadlines.
//! - [`report`]: what a researcher sends, its validation and CVSS scoring.
//! - [`keys`]: maintainers' certificates and the intake's own signing key.
//! - [`seal`]: the sealed format: writer (encrypt, sign) and reader (decrypt, verify).
//! - [`store`]: where sealed reports live, committed atomically.
//! - [`id`]: report IDs; [`clock`]: an injectable "now".
//! - [`app`]: the operations behind each command (`seal`, `keys check`, …).
#![forbid(unsafe_code)]

pub mod app;
pub mod clock;
pub mod config;
pub mod id;
pub mod keys;
pub mod report;
pub mod seal;
pub mod store;
