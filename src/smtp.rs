//! Outgoing mail through `[smtp]`: one transport builder for the reporters'
//! acknowledgements and the maintainers' notices.

use std::path::PathBuf;
use std::time::Duration;

use lettre::message::Mailbox as Address;
use lettre::message::header::{Header, HeaderName, HeaderValue};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, Tokio1Executor};
use zeroize::Zeroizing;

use crate::config::{Smtp, Tls, is_loopback_host};

/// Why `[smtp]` cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SmtpError {
    #[error("[smtp] is unusable: {0}")]
    Config(String),
    #[error("cannot read the SMTP password file {path}: {source}")]
    Password {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A transport for `smtp` and its `from` address. `tls = "none"` is refused
/// unless the host is a loopback address.
pub fn transport(
    smtp: &Smtp,
    timeout: Duration,
) -> Result<(AsyncSmtpTransport<Tokio1Executor>, Address), SmtpError> {
    let bad = SmtpError::Config;
    let from: Address = smtp
        .from
        .parse()
        .map_err(|e| bad(format!("from = {:?} is not an address: {e}", smtp.from)))?;
    let builder = match smtp.tls {
        Tls::Implicit => AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.host)
            .map_err(|e| bad(e.to_string()))?,
        Tls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host)
            .map_err(|e| bad(e.to_string()))?,
        Tls::None if is_loopback_host(&smtp.host) => {
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host)
        }
        Tls::None => {
            return Err(bad(format!(
                "tls = \"none\" is only allowed for a loopback host, not {}: use \"implicit\" or \"starttls\"",
                smtp.host
            )));
        }
    };
    let mut builder = builder.port(smtp.port).timeout(Some(timeout));
    match (&smtp.username, &smtp.password_file) {
        (Some(user), Some(path)) => {
            let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|source| {
                SmtpError::Password {
                    path: path.clone(),
                    source,
                }
            })?);
            let password = text.trim_end_matches(['\r', '\n']).to_string();
            builder = builder.credentials(Credentials::new(user.clone(), password));
        }
        (None, None) => {}
        _ => return Err(bad("username and password_file go together".into())),
    }
    Ok((builder.build(), from))
}

/// The `Auto-Submitted` header (RFC 3834) that tells other robots not to
/// answer: `auto-replied` for acknowledgements, `auto-generated` for notices.
#[derive(Clone)]
pub struct AutoSubmitted(pub String);

impl Header for AutoSubmitted {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Auto-Submitted")
    }

    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AutoSubmitted(s.trim().to_string()))
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.clone())
    }
}
