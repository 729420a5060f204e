//! Finishing a report with its way back: the reply code issued, the public
//! reply certificate sealed into the manifest, the lookup key recorded,
//! the receipt signed, and the intake's `received` event (the promises and
//! the receipt, to the maintainers and the reply certificate) added before
//! the report becomes visible. Every entry point (form, API, mail,
//! `embargo seal`) finishes its reports here.

use crate::case::event::{Event, Kind};
use crate::report::{ReportBody, Reporter};
use crate::seal::{EmailMeta, ReportWriter, SealError, SealedReport};

use super::{Desk, ReplyCode};

/// A committed report, its signed receipt and its reply code (shown once).
pub struct Finished {
    pub sealed: SealedReport,
    /// The receipt, cleartext-signed by the intake key.
    pub receipt: String,
    /// `None` only when the intake runs without a reply desk.
    pub reply_code: Option<ReplyCode>,
}

/// Seals the manifest of `writer`'s report and commits it with a reply
/// code from `desk` and a `received` event. Blocking (one Argon2id
/// derivation when `desk` is given). The lookup key is recorded before the
/// report is committed: a crash in between leaves a lookup to nothing,
/// never a report whose code does not work.
pub fn finish(
    writer: ReportWriter,
    desk: Option<&Desk>,
    project: &str,
    report: ReportBody,
    mut reporter: Reporter,
    email: Option<EmailMeta>,
) -> Result<Finished, SealError> {
    let id = writer.id().clone();
    let severity = report.severity;
    let issued = match desk {
        Some(desk) => {
            let issued = desk.issue().map_err(SealError::OpenPgp)?;
            desk.record(&issued.lookup, &id).map_err(SealError::Input)?;
            reporter.reply_cert = issued.cert_armored.clone();
            Some(issued)
        }
        None => None,
    };
    let mut pending = writer.seal_manifest(report, reporter, email)?;
    let receipt = pending.sealer_sign_cleartext(&pending.report().receipt_text(project))?;
    let mut event = Event::new(
        id,
        Kind::Received,
        pending.intake_fingerprint(),
        pending.report().received_at,
    );
    event.policy = pending.policy().cloned();
    event.severity = Some(severity);
    event.receipt = Some(receipt.clone());
    let plaintext = event
        .to_padded_json()
        .map_err(|e| SealError::OpenPgp(anyhow::anyhow!("the received event: {e}")))?;
    pending.add_intake_event(
        &event.event.file_name(),
        &plaintext,
        issued.as_ref().map(|i| &i.cert),
    )?;
    let sealed = pending.commit()?;
    Ok(Finished {
        sealed,
        receipt,
        reply_code: issued.map(|i| i.code),
    })
}
