//! The operations behind each command, over the library modules. `main.rs`
//! parses arguments and calls one of these.

use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::clock::{Clock, rfc3339};
use crate::config::Config;
use crate::id::ReportId;
use crate::keys::{IntakeSecrets, KeyError, Keyring};
use crate::report::{FieldErrors, RawReport};
use crate::seal::{Channel, Role, SealError, SealedReport, Sealer};
use crate::store::{FsStore, StoreError};

/// What can go wrong in a command.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppError {
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error("the report is invalid: {0}; fix the input JSON and run again (nothing was stored)")]
    Invalid(#[from] FieldErrors),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Usage(String),
}

/// Everything an intake needs: keys, secrets, store and the sealer.
pub struct Intake {
    pub config: Config,
    pub keyring: Keyring,
    pub secrets: Arc<IntakeSecrets>,
    pub store: Arc<FsStore>,
    pub sealer: Sealer,
}

impl Intake {
    /// Loads keys (failing closed without a usable one), the intake secrets
    /// and the store, and removes what an earlier crash left in staging.
    pub fn open(config: Config, clock: Clock) -> Result<Intake, AppError> {
        let keyring = Keyring::load(&config.keys_dir, clock)?;
        keyring.log_problems(config.key_expiry_warning.0);
        let recipients = keyring.recipients()?;
        let secrets = Arc::new(IntakeSecrets::load_or_create(
            &config.state_dir,
            &config.project_name,
        )?);
        let store = Arc::new(FsStore::open_and_recover(&config.store)?);
        let sealer = Sealer::new(recipients, secrets.clone(), config.message_format, clock);
        Ok(Intake {
            config,
            keyring,
            secrets,
            store,
            sealer,
        })
    }

    /// Seals a report given as input JSON plus attachment files (`embargo seal`).
    pub fn seal_files(
        &self,
        report_json: &[u8],
        attachments: &[PathBuf],
    ) -> Result<SealedReport, AppError> {
        let raw = RawReport::from_json(report_json)?;
        let (body, reporter) = raw.validate(&self.config.limits)?;
        let limits = &self.config.limits;
        if attachments.len() > limits.max_attachments {
            return Err(AppError::Usage(format!(
                "{} attachments given, but [limits] max_attachments is {}",
                attachments.len(),
                limits.max_attachments
            )));
        }
        // Open every file before anything is written, so a typo stores nothing.
        let mut files = Vec::new();
        for path in attachments {
            let file = File::open(path).map_err(|source| AppError::Read {
                path: path.clone(),
                source,
            })?;
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "attachment".into());
            files.push((name, file));
        }
        let mut writer =
            self.sealer
                .begin(self.store.as_ref(), ReportId::random(), Channel::Api)?;
        for (name, mut file) in files {
            let media_type = media_type_for(&name);
            writer.add_attachment(
                &name,
                media_type,
                Role::Poc,
                &mut file,
                limits.max_attachment_bytes,
            )?;
        }
        Ok(writer.finish(body, reporter, None)?)
    }
}

/// A media type guessed from a file name's extension; the name stays
/// untrusted and this only helps the maintainer's tools.
pub fn media_type_for(name: &str) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "txt" | "log" | "md" => "text/plain",
        "py" => "text/x-python",
        "c" | "h" => "text/x-c",
        "rs" => "text/x-rust",
        "sh" => "text/x-shellscript",
        "js" => "text/javascript",
        "html" | "htm" => "text/html",
        "json" => "application/json",
        "xml" => "application/xml",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "gz" | "tgz" => "application/gzip",
        "tar" => "application/x-tar",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "eml" => "message/rfc822",
        "pcap" => "application/vnd.tcpdump.pcap",
        _ => "application/octet-stream",
    }
}

/// When a certificate itself expires (its primary key), as `keys check`
/// shows it: `never`, or `unknown` when no valid self-signature says.
fn certificate_expiry(cert: &sequoia_openpgp::Cert, at: std::time::SystemTime) -> String {
    let policy = sequoia_openpgp::policy::StandardPolicy::new();
    match cert.with_policy(&policy, at) {
        Ok(vc) => vc
            .primary_key()
            .key_expiration_time()
            .map(rfc3339)
            .unwrap_or_else(|| "never".into()),
        Err(_) => "unknown".into(),
    }
}

/// `embargo keys check`: one row per certificate. Returns the text and
/// whether any certificate is usable.
pub fn keys_check(keyring: &Keyring, warn_within: std::time::Duration) -> (String, bool) {
    let mut out = String::new();
    let _ = writeln!(out, "Certificates in {}:", keyring.dir.display());
    if keyring.entries.is_empty() && keyring.bad_files.is_empty() {
        let _ = writeln!(
            out,
            "  (none: put the maintainers' public certificates here as *.asc or *.pgp)"
        );
    }
    let soon = keyring.expiring_within(warn_within);
    for e in &keyring.entries {
        let status = match &e.problem {
            None if soon.iter().any(|s| s.fingerprint() == e.fingerprint()) => {
                "usable (expires soon)".to_string()
            }
            None => format!(
                "usable ({} encryption subkey{})",
                e.encryption_keys.len(),
                if e.encryption_keys.len() == 1 {
                    ""
                } else {
                    "s"
                }
            ),
            Some(p) => format!("NOT USABLE: {p}"),
        };
        let expires = match (&e.problem, e.expires) {
            (_, Some(t)) => rfc3339(t),
            (None, None) => "never".into(),
            // Unusable ones (sign-only, revoked, expired) still have a
            // real expiry: the certificate's own, not "never".
            (Some(_), None) => certificate_expiry(&e.cert, keyring.checked_at),
        };
        let uid = e.user_id.as_deref().unwrap_or("(no user ID)");
        let _ = writeln!(
            out,
            "{}  expires {expires}  {uid}  [{}]\n    {status}",
            e.fingerprint().to_hex(),
            e.file.display()
        );
    }
    for b in &keyring.bad_files {
        let _ = writeln!(out, "{}\n    NOT USABLE: {}", b.file.display(), b.reason);
    }
    let usable = keyring.entries.iter().filter(|e| e.is_usable()).count();
    let _ = writeln!(
        out,
        "{usable} of {} certificates usable.",
        keyring.entries.len()
    );
    (out, usable > 0)
}

/// Resolves a configuration: `-c FILE`, else `EMBARGO_CONFIG` (read by
/// clap), else defaults relative to the current directory.
pub fn load_config(path: Option<&Path>) -> Result<Config, crate::config::ConfigError> {
    match path {
        Some(p) => Config::load(p),
        None => Ok(Config::defaults_in(Path::new("."))),
    }
}
