//! The reporter's way back: a reply code shown once to the reporter, and what the
//! intake derives from it with Argon2id and a per-intake salt: a lookup key
//! (the only thing the server keeps, mapped to the report ID) and,
//! deterministically, an OpenPGP reply certificate whose public part is
//! sealed into the manifest so that maintainers can encrypt
//! reporter-visible events to it.
//!
//! - [`code`]: the code (140 bits with a check character) and its parser.
//! - [`derive`]: Argon2id, the salt in `state_dir`, the lookup key and seed.
//! - [`cert`]: the reply certificate (Ed25519 + Cv25519, fixed creation time).
//! - [`desk`]: what the intake keeps (salt, lookup key → report ID), and
//!   the gate that bounds concurrent derivations.

pub mod cert;
pub mod code;
pub mod derive;
pub mod desk;
pub mod followup;
pub mod intake;
pub mod timeline;

pub use code::{CodeError, ReplyCode};
pub use derive::{COSTS, CURRENT, Cost, Derived, LEGACY, Salt};
pub use desk::{Desk, Issued};
