//! The sealing station: what every entry point needs to seal a report (the
//! maintainers' certificates, the intake's own secrets, the store) built in
//! one place, for `embargo seal`, the web intake and the mailbox poller.
//!
//! Opening a station never needs a usable certificate: the web intake keeps
//! serving (and answers 503) until one is added. Sealing does:
//! [`Station::sealer`] fails closed.

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use crate::clock::Clock;
use crate::config::Config;
use crate::id::ReportId;
use crate::keys::{IntakeSecrets, KeyError, Keyring};
use crate::reply::Desk;
use crate::reply::intake::{Finished, finish};
use crate::report::{FieldErrors, RawReport};
use crate::seal::{Channel, Role, SealError, Sealer, media_type_for};
use crate::store::{self, Store, StoreError};

/// What can stop a station from opening or sealing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StationError {
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error("the report is invalid: {0}; fix the input JSON and run again (nothing was stored)")]
    Invalid(#[from] FieldErrors),
    #[error("cannot read {path}: {source}; check the path and that it is readable")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// More attachments than `[limits] max_attachments`: a usage error.
    #[error(
        "{given} attachments given, but [limits] max_attachments is {limit}; attach fewer files (an archive holds many) or raise the limit"
    )]
    TooManyAttachments { given: usize, limit: usize },
    #[error(
        "cannot open the reply desk in {dir} (reply-salt, replies/): {source}; check that state_dir is writable by the user running embargo, and restore reply-salt from a backup if it was lost"
    )]
    Replies {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl StationError {
    /// Whether the caller asked for something that cannot be done (exit 2),
    /// rather than something failing while it was done.
    pub fn is_usage(&self) -> bool {
        matches!(self, StationError::TooManyAttachments { .. })
    }
}

/// Whether opening also removes what an interrupted writer left in staging.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recovery {
    /// At start-up, when no other writer can be busy in this store.
    RemoveStale,
    /// When a writer may be staging right now (the poller reopening while
    /// the web intake runs in the same process).
    Keep,
}

/// Keys, secrets and store, loaded once and shared.
pub struct Station {
    pub config: Config,
    pub keyring: Keyring,
    pub secrets: Arc<IntakeSecrets>,
    pub store: Arc<dyn Store>,
    /// Reply codes: the salt and the lookup keys.
    pub replies: Arc<Desk>,
    clock: Clock,
}

impl Station {
    /// Loads the maintainer certificates (a secret key among them stops
    /// here; an unusable set is logged, not refused), the intake secrets
    /// and the store.
    pub fn open(config: Config, clock: Clock, recovery: Recovery) -> Result<Station, StationError> {
        let keyring = Keyring::load(&config.keys_dir, clock)?;
        let secrets = Arc::new(IntakeSecrets::load_or_create(
            &config.state_dir,
            &config.project_name,
        )?);
        let store = match recovery {
            Recovery::RemoveStale => store::open_and_recover(&config.store)?,
            Recovery::Keep => store::open(&config.store)?,
        };
        let replies =
            Arc::new(
                Desk::open(&config.state_dir).map_err(|source| StationError::Replies {
                    dir: config.state_dir.clone(),
                    source,
                })?,
            );
        // Said once everything opened, so a start that fails says only why.
        keyring.log_problems(config.key_expiry_warning.0);
        Ok(Station {
            config,
            keyring,
            secrets,
            store,
            replies,
            clock,
        })
    }

    /// The clock the station seals with.
    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// A sealer to the usable certificates of the keyring loaded at open;
    /// fails closed when there is none.
    pub fn sealer(&self) -> Result<Sealer, KeyError> {
        self.sealer_for(&self.keyring)
    }

    /// A sealer to the usable certificates of `keyring` (one reloaded since).
    pub fn sealer_for(&self, keyring: &Keyring) -> Result<Sealer, KeyError> {
        let recipients = keyring.recipients()?;
        Ok(Sealer::new(
            recipients,
            self.secrets.clone(),
            self.config.message_format,
            self.clock,
        )
        .with_policy(&self.config.policy))
    }

    /// Reads `keys_dir` again (a reload), logging what is wrong with it.
    pub fn reload_keyring(&self) -> Result<Keyring, KeyError> {
        let keyring = Keyring::load(&self.config.keys_dir, self.clock)?;
        keyring.log_problems(self.config.key_expiry_warning.0);
        Ok(keyring)
    }

    /// The station with a sealer to the usable certificates loaded at open;
    /// fails closed when there is none.
    pub fn sealing(self) -> Result<Sealing, KeyError> {
        let sealer = self.sealer()?;
        Ok(Sealing {
            station: self,
            sealer,
        })
    }
}

/// A station that can seal now: the CLI's `seal` and the poller use one.
pub struct Sealing {
    pub station: Station,
    pub sealer: Sealer,
}

impl Sealing {
    /// Seals a report given as input JSON plus attachment files (`embargo
    /// seal`). Every file is opened before anything is written, so a typo
    /// stores nothing.
    pub fn seal_files(
        &self,
        report_json: &[u8],
        attachments: &[PathBuf],
    ) -> Result<Finished, StationError> {
        let limits = &self.station.config.limits;
        let raw = RawReport::from_json(report_json)?;
        let (body, reporter) = raw.validate(limits)?;
        if attachments.len() > limits.max_attachments {
            return Err(StationError::TooManyAttachments {
                given: attachments.len(),
                limit: limits.max_attachments,
            });
        }
        let mut files = Vec::new();
        for path in attachments {
            let file = File::open(path).map_err(|source| StationError::Read {
                path: path.clone(),
                source,
            })?;
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "attachment".into());
            files.push((name, file));
        }
        let mut writer = self.sealer.begin(
            self.station.store.as_ref(),
            ReportId::random(),
            Channel::Api,
        )?;
        for (name, mut file) in files {
            writer.add_attachment(
                &name,
                media_type_for(&name),
                Role::Poc,
                &mut file,
                limits.max_attachment_bytes,
            )?;
        }
        Ok(finish(
            writer,
            Some(&self.station.replies),
            &self.station.config.project_name,
            body,
            reporter,
            None,
        )?)
    }
}
