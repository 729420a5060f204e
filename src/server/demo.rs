//! `embargo demo`: a throwaway maintainer key and a store under one
//! directory, served on loopback, so that trying embargo needs no setup.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use openpgp::cert::prelude::*;
use openpgp::serialize::SerializeInto;
use sequoia_openpgp as openpgp;

use super::ServerError;
use crate::config::Config;
use crate::keys::IntakeSecrets;

/// User ID of the demo key: nobody should mistake it for a real one.
pub const DEMO_USER_ID: &str =
    "DEMO maintainer key - throwaway, do not use for real reports (embargo demo)";
/// Where `embargo demo` listens.
pub const DEMO_LISTEN: &str = "127.0.0.1:8080";

/// Prepares `dir` for the demo: a throwaway maintainer key (secret part in
/// `maintainer-secret.asc`, mode 0600; public part in `keys/`), `state/`
/// and `data/`. An existing demo key is reused. Returns the config.
pub fn prepare_demo(dir: &Path) -> Result<Config, ServerError> {
    let demo_err = |reason: String| ServerError::Demo {
        dir: dir.to_owned(),
        reason,
    };
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys).map_err(|e| demo_err(e.to_string()))?;
    let secret_path = dir.join("maintainer-secret.asc");
    if !secret_path.exists() {
        let (cert, _) = CertBuilder::general_purpose(Some(DEMO_USER_ID))
            .set_cipher_suite(CipherSuite::Cv25519)
            .generate()
            .map_err(|e| demo_err(e.to_string()))?;
        let secret = zeroize::Zeroizing::new(
            cert.as_tsk()
                .armored()
                .to_vec()
                .map_err(|e| demo_err(e.to_string()))?,
        );
        let public = cert
            .armored()
            .to_vec()
            .map_err(|e| demo_err(e.to_string()))?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&secret_path)
            .map_err(|e| demo_err(e.to_string()))?;
        f.write_all(&secret).map_err(|e| demo_err(e.to_string()))?;
        std::fs::write(keys.join("demo-maintainer.asc"), public)
            .map_err(|e| demo_err(e.to_string()))?;
    }
    let mut config = Config::defaults_in(dir);
    config.listen = DEMO_LISTEN.into();
    config.public_url = Some(format!("http://{DEMO_LISTEN}"));
    config.project_name = "embargo demo".into();
    // The intake signing key, public part beside the demo key for --signer.
    let secrets = IntakeSecrets::load_or_create(&config.state_dir, &config.project_name)?;
    std::fs::write(dir.join("signing-key.asc"), secrets.signing_cert_armored()?)
        .map_err(|e| demo_err(e.to_string()))?;
    Ok(config)
}

/// The command that decrypts report `ID` submitted to the demo in `dir`.
pub fn demo_decrypt_command(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "decrypt ID --store {d}/data --key {d}/maintainer-secret.asc --signer {d}/signing-key.asc --out {d}/revealed"
    )
}
