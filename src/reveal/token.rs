//! Fetch tokens: a maintainer keeps the token, the server keeps only its
//! SHA-256 (`[maintainers] token_sha256`).

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Every token starts with this, so a leaked one is easy to recognise.
pub const TOKEN_PREFIX: &str = "embargo_";
/// Random bytes in a token (256 bits).
pub const TOKEN_BYTES: usize = 32;

/// A new token and the configuration line for the server.
pub struct NewToken {
    /// The secret the maintainer puts in a `--token-file`.
    pub token: Zeroizing<String>,
    /// The token's hex SHA-256: one entry of `[maintainers] token_sha256`.
    pub sha256: String,
    /// `token_sha256 = ["…"]`, for a config that lists no token yet.
    pub config_line: String,
}

impl NewToken {
    /// The list entry for `token_sha256`, quoted and with a trailing comma,
    /// so it pastes into an existing list (one or several lines) unchanged.
    pub fn list_entry(&self) -> String {
        format!("\"{}\",", self.sha256)
    }
}

/// Writes `token` and a newline to a new file `path`, mode 0600; never
/// replaces an existing file (nor follows a symbolic link there).
pub fn write_token_file(path: &std::path::Path, token: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    let line = Zeroizing::new(format!("{token}\n"));
    file.write_all(line.as_bytes())?;
    file.sync_all()
}

/// Makes a new random fetch token (`embargo_` and 64 hex digits).
pub fn new_token() -> NewToken {
    let mut bytes = Zeroizing::new([0u8; TOKEN_BYTES]);
    rand::Rng::fill(&mut rand::rngs::OsRng, &mut bytes[..]);
    let token = Zeroizing::new(format!("{TOKEN_PREFIX}{}", hex::encode(&bytes[..])));
    let sha256 = token_sha256(&token);
    let config_line = format!("token_sha256 = [\"{sha256}\"]");
    NewToken {
        token,
        sha256,
        config_line,
    }
}

/// The hex SHA-256 of a token's UTF-8 bytes: what the server stores.
pub fn token_sha256(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_hashed_as_utf8() {
        let a = new_token();
        let b = new_token();
        assert_ne!(*a.token, *b.token);
        assert_eq!(a.token.len(), TOKEN_PREFIX.len() + 2 * TOKEN_BYTES);
        assert_eq!(
            a.config_line,
            format!("token_sha256 = [\"{}\"]", token_sha256(&a.token))
        );
        assert_eq!(a.list_entry(), format!("\"{}\",", a.sha256));
        // sha256("abc")
        assert_eq!(
            token_sha256("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
