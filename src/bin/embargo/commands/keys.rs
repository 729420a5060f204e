//! `embargo keys check` and `embargo keys signing`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;

use embargo::clock::{Clock, rfc3339};
use embargo::keys::{CertStatus, Expiry, IntakeSecrets, Keyring};

use super::load_config;
use crate::output::Output;

/// One row per certificate on stdout; exit 1 when none is usable.
pub fn check(config: Option<&Path>, clock: Clock, out: &Output) -> Result<ExitCode> {
    let config = load_config(config)?;
    let keyring = Keyring::load(&config.keys_dir, clock)?;
    out.data_raw(&render_check(&keyring, config.key_expiry_warning.0));
    // The table is on stdout either way; no usable certificate is a failure.
    keyring.usable()?;
    Ok(ExitCode::SUCCESS)
}

/// The intake's signing certificate, armored, on stdout.
pub fn signing(config: Option<&Path>, out: &Output) -> Result<ExitCode> {
    let config = load_config(config)?;
    let secrets = IntakeSecrets::load_or_create(&config.state_dir, &config.project_name)?;
    out.data_raw(&secrets.signing_cert_armored()?);
    Ok(ExitCode::SUCCESS)
}

/// The text of `keys check`.
fn render_check(keyring: &Keyring, warn_within: std::time::Duration) -> String {
    let mut out = format!("Certificates in {}:\n", keyring.dir.display());
    if keyring.entries.is_empty() && keyring.bad_files.is_empty() {
        out.push_str("  (none: put the maintainers' public certificates here as *.asc or *.pgp)\n");
    }
    for c in keyring.check(warn_within) {
        let status = match &c.status {
            CertStatus::ExpiresSoon => "usable (expires soon)".to_string(),
            CertStatus::Usable { encryption_keys: n } => {
                format!(
                    "usable ({n} encryption subkey{})",
                    if *n == 1 { "" } else { "s" }
                )
            }
            CertStatus::Unusable(p) => format!("NOT USABLE: {p}"),
        };
        let expires = match c.expires {
            Expiry::At(t) => rfc3339(t),
            Expiry::Never => "never".into(),
            Expiry::Unknown => "unknown".into(),
        };
        let uid = c.user_id.as_deref().unwrap_or("(no user ID)");
        out.push_str(&format!(
            "{}  expires {expires}  {uid}  [{}]\n    {status}\n",
            c.fingerprint.to_hex(),
            c.file.display()
        ));
    }
    for b in &keyring.bad_files {
        out.push_str(&format!(
            "{}\n    NOT USABLE: {}\n",
            b.file.display(),
            b.reason
        ));
    }
    let usable = keyring.entries.iter().filter(|e| e.is_usable()).count();
    out.push_str(&format!(
        "{usable} of {} certificates usable.\n",
        keyring.entries.len()
    ));
    out
}
