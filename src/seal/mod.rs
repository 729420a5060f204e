//! The sealed-report format, version 1 (docs/format.md): `manifest` (the signed
//! table of contents), `writer` (sealing), `seipd` (embargo's own SEIPDv1
//! packet writer, padded, the `compat` default), `seipd_reader` (its
//! reader, which opens `compat` attachments), `cfb` (its CFB decryption
//! over AES-ECB), `offload` (hashing on the second core) and `reader` (opening).

mod cfb;
pub mod manifest;
mod media;
mod offload;
pub mod reader;
pub mod seipd;
pub mod seipd_reader;
pub mod share;
pub mod writer;

pub use manifest::{AttachmentEntry, Channel, EmailMeta, Manifest, Role, SealedPolicy};
pub use media::media_type_for;
pub use reader::{Opener, RevealError, SecretSource, SignatureCheck};
pub use writer::{PendingReport, ReportWriter, SealError, SealedReport, Sealer, Seipd1Engine};
