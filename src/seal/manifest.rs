//! The manifest: the signed, encrypted table of contents of a report
//! (docs/format.md).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::config::{Policy, Span, Within};
use crate::id::ReportId;
use crate::report::{ReportBody, Reporter};

/// The schema this version writes and reads.
pub const SCHEMA: &str = "embargo.report.v1";

/// How a report arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Zeroize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Web,
    Api,
    Email,
}

/// What an attachment is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Zeroize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// A file the reporter attached.
    Poc,
    /// The raw bytes of a report that arrived by mail.
    OriginalMessage,
}

/// One attachment: where its ciphertext is and what the plaintext must be.
#[derive(Clone, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct AttachmentEntry {
    /// Part file name, `001.pgp`…
    pub file: String,
    /// The name the reporter gave (untrusted: sanitize before use).
    pub name: String,
    pub size: u64,
    /// Hex SHA-256 of the plaintext.
    pub sha256: String,
    pub media_type: String,
    pub role: Role,
}

impl fmt::Debug for AttachmentEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AttachmentEntry({}, {} bytes)", self.file, self.size)
    }
}

/// Metadata of a report that arrived by mail.
#[derive(Clone, Default, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct EmailMeta {
    #[serde(default)]
    pub message_id: String,
    #[serde(default)]
    pub from: String,
    #[serde(default)]
    pub subject: String,
    #[serde(default)]
    pub date: String,
    /// `pgp-mime`, `inline-pgp` or `none`.
    #[serde(default)]
    pub encryption: String,
    /// Names of the mail's own attachments (their bytes stay in the message).
    #[serde(default)]
    pub attachments: Vec<String>,
}

/// The manifest JSON.
#[derive(Clone, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct Manifest {
    pub schema: String,
    #[zeroize(skip)]
    pub id: ReportId,
    pub received_at: String,
    pub channel: Channel,
    pub report: ReportBody,
    #[serde(default)]
    pub reporter: Reporter,
    #[serde(default)]
    pub attachments: Vec<AttachmentEntry>,
    #[serde(default)]
    pub email: Option<EmailMeta>,
    #[serde(default)]
    pub recipients: Vec<String>,
    #[serde(default)]
    pub signing_key: String,
    /// The `[policy]` in force when the report arrived: the promises made
    /// to this reporter, which deadlines are computed from. Absent in
    /// reports sealed before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[zeroize(skip)]
    pub policy: Option<SealedPolicy>,
}

/// The promises of `[policy]` as sealed into a manifest. Unlike the
/// configuration, unknown keys are ignored (a newer intake may add some).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedPolicy {
    pub acknowledge_within: Span,
    #[serde(default = "default_assess_within")]
    pub assess_within: Within,
    pub status_update_within: Span,
    #[serde(default)]
    pub fix_within: BTreeMap<String, Span>,
}

fn default_assess_within() -> Within {
    Policy::default().assess_within
}

impl From<&Policy> for SealedPolicy {
    fn from(p: &Policy) -> SealedPolicy {
        SealedPolicy {
            acknowledge_within: p.acknowledge_within,
            assess_within: p.assess_within,
            status_update_within: p.status_update_within,
            fix_within: p.fix_within.clone(),
        }
    }
}

impl SealedPolicy {
    /// The promises as a [`Policy`] for deadline arithmetic.
    pub fn policy(&self) -> Policy {
        Policy {
            acknowledge_within: self.acknowledge_within,
            assess_within: self.assess_within,
            status_update_within: self.status_update_within,
            fix_within: self.fix_within.clone(),
        }
    }
}

impl fmt::Debug for Manifest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Manifest({}, {} attachments)",
            self.id,
            self.attachments.len()
        )
    }
}

/// Why a manifest could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    #[error("the manifest is not valid JSON for {SCHEMA}: {0}")]
    Json(String),
    #[error("the manifest has schema {0:?}, but this embargo reads {SCHEMA}: upgrade embargo")]
    Schema(String),
    #[error(
        "the manifest lists attachment {0:?} in a way this embargo does not accept (bad part name, duplicate, or not numbered from 001)"
    )]
    Parts(String),
}

impl Manifest {
    /// Parses and checks manifest JSON (untrusted input: never panics).
    pub fn from_json(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        #[derive(Deserialize)]
        struct Probe {
            schema: Option<String>,
        }
        let probe: Probe =
            serde_json::from_slice(bytes).map_err(|e| ManifestError::Json(e.to_string()))?;
        match probe.schema.as_deref() {
            Some(SCHEMA) => {}
            other => {
                return Err(ManifestError::Schema(
                    other.unwrap_or("(none)").chars().take(64).collect(),
                ));
            }
        }
        let manifest: Manifest =
            serde_json::from_slice(bytes).map_err(|e| ManifestError::Json(e.to_string()))?;
        for (i, a) in manifest.attachments.iter().enumerate() {
            if a.file != crate::store::attachment_part_name(i + 1)
                || a.sha256.len() != 64
                || !a.sha256.bytes().all(|b| b.is_ascii_hexdigit())
            {
                return Err(ManifestError::Parts(a.file.chars().take(40).collect()));
            }
        }
        Ok(manifest)
    }

    /// Serializes to JSON; the buffer is wiped when dropped.
    pub fn to_json(&self) -> zeroize::Zeroizing<Vec<u8>> {
        // Serializing plain data structures to a Vec cannot fail.
        zeroize::Zeroizing::new(serde_json::to_vec_pretty(self).unwrap_or_default())
    }
}
