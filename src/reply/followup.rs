//! A reporter's follow-up from the status page: each file sealed (streamed,
//! unsigned) as `files/<file ID>.pgp`, then one `reporter-message` event
//! listing them with their plaintext sizes and SHA-256, signed by the
//! intake key and sealed to the maintainers and the reply certificate.
//! The files are written first, so an event never names a missing file;
//! files of a follow-up that failed before its event are unreferenced
//! ciphertext, never shown.

use std::io::Read;
use std::time::SystemTime;

use openpgp::Cert;
use sequoia_openpgp as openpgp;

use crate::case::event::{
    Event, EventAttachment, EventId, Kind, MAX_EVENT_ATTACHMENTS, attachment_name,
};
use crate::config::MessageFormat;
use crate::id::ReportId;
use crate::keys::{IntakeSecrets, Recipients};
use crate::seal::SealError;
use crate::seal::writer::{seal_signed, seal_stream};
use crate::store::Store;

/// One follow-up being written.
pub struct FollowUp<'a> {
    store: &'a dyn Store,
    report: ReportId,
    /// The maintainers and the reply certificate.
    recipients: Recipients,
    secrets: &'a IntakeSecrets,
    format: MessageFormat,
    at: SystemTime,
    files: Vec<EventAttachment>,
}

impl<'a> FollowUp<'a> {
    /// A follow-up on `report` (which must exist in `store`), sealed to
    /// `maintainers` and `reply_cert`.
    pub fn begin(
        store: &'a dyn Store,
        report: ReportId,
        maintainers: &Recipients,
        reply_cert: Cert,
        secrets: &'a IntakeSecrets,
        format: MessageFormat,
        at: SystemTime,
    ) -> FollowUp<'a> {
        FollowUp {
            store,
            report,
            recipients: maintainers.with(reply_cert),
            secrets,
            format,
            at,
            files: Vec::new(),
        }
    }

    /// Files added so far.
    pub fn file_count(&self) -> usize {
        self.files.len()
    }

    /// Seals one file read from `plaintext` (at most `limit` bytes), under
    /// the name the reporter gave (untrusted: readers sanitize it).
    pub fn add_file(
        &mut self,
        name: &str,
        plaintext: &mut dyn Read,
        limit: u64,
    ) -> Result<(), SealError> {
        if self.files.len() >= MAX_EVENT_ATTACHMENTS {
            return Err(SealError::TooManyAttachments {
                limit: MAX_EVENT_ATTACHMENTS,
            });
        }
        let file = EventId::random().file_name();
        let sink = self.store.create_file(&self.report, &file)?;
        let (size, sha256, _) = seal_stream(
            &self.recipients,
            self.format,
            self.at,
            plaintext,
            limit,
            sink,
        )?;
        self.files.push(EventAttachment {
            file,
            name: attachment_name(name),
            size,
            sha256,
        });
        Ok(())
    }

    /// Seals and stores the `reporter-message` event with `message` and
    /// the files added; returns it.
    pub fn finish(self, message: String) -> Result<Event, SealError> {
        let mut event = Event::new(
            self.report.clone(),
            Kind::ReporterMessage,
            self.secrets.signing_fingerprint().to_hex(),
            self.at,
        );
        event.visible_to_reporter = true;
        event.message = Some(message);
        event.attachments = self.files;
        let plaintext = event.to_padded_json().map_err(SealError::Event)?;
        let (ciphertext, _) = seal_signed(
            &self.recipients,
            self.format,
            self.secrets.signer()?,
            self.at,
            &plaintext,
        )?;
        self.store
            .add_event(&self.report, &event.event.file_name(), &ciphertext)?;
        Ok(event)
    }
}
