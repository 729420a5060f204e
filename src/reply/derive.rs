//! From a reply code to what the intake may keep and what opens replies.
//!
//! Argon2id (version 0x13) over the code's 27 canonical characters, salted
//! with 32 random bytes kept in `state_dir/reply-salt` (made once, 0600),
//! gives 64 bytes: the first 32 are the *lookup key* (the server stores
//! only its hex, mapped to the report ID), the last 32 the *seed* the reply
//! certificate's secret keys are made from.
//!
//! What protects a code is its 135 random bits, not the cost of Argon2id:
//! someone holding the salt and every lookup key still has 2^135 codes to
//! try, and stretching each try by a factor of a million adds only 20 bits
//! to that. So codes are issued with a light cost ([`CURRENT`]: 256 KiB,
//! one pass), which lets an intake seal a thousand small reports a second
//! within a small memory budget. Codes issued before that used 64 MiB and
//! three passes ([`LEGACY`]); a code no lookup key matches under the
//! current cost is tried under the legacy one, so no code given out is
//! orphaned. Changing either cost would orphan codes, so both are fixed.

use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use super::ReplyCode;

/// Argon2id parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cost {
    /// Memory, in KiB.
    pub memory_kib: u32,
    pub passes: u32,
    pub lanes: u32,
}

/// The cost codes are issued with.
pub const CURRENT: Cost = Cost {
    memory_kib: 256,
    passes: 1,
    lanes: 1,
};

/// The cost of codes issued before [`CURRENT`] (64 MiB, 3 passes).
pub const LEGACY: Cost = Cost {
    memory_kib: 64 * 1024,
    passes: 3,
    lanes: 1,
};

/// Every cost a code may have been issued with, the current one first.
pub const COSTS: [Cost; 2] = [CURRENT, LEGACY];

/// The salt's file in `state_dir`.
pub const SALT_FILE: &str = "reply-salt";

/// The per-intake salt.
#[derive(Clone)]
pub struct Salt([u8; 32]);

impl Salt {
    /// The salt in `state_dir`, made (32 random bytes, mode 0600) when
    /// there is none yet.
    pub fn load_or_create(state_dir: &Path) -> io::Result<Salt> {
        let path: PathBuf = state_dir.join(SALT_FILE);
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(mut f) => {
                let salt: [u8; 32] = rand::random();
                f.write_all(&salt)?;
                f.sync_all()?;
                return Ok(Salt(salt));
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        let mut bytes = Vec::new();
        std::fs::File::open(&path)?
            .take(64)
            .read_to_end(&mut bytes)?;
        let salt: [u8; 32] = bytes.try_into().map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} is not 32 bytes: restore it from the backup of state_dir",
                    path.display()
                ),
            )
        })?;
        Ok(Salt(salt))
    }

    #[cfg(test)]
    pub fn fixed(bytes: [u8; 32]) -> Salt {
        Salt(bytes)
    }
}

/// What a code gives.
pub struct Derived {
    /// Hex of the lookup key: what the server keeps.
    pub lookup: String,
    /// The reply certificate's seed: secret, never stored.
    pub seed: Zeroizing<[u8; 32]>,
}

/// Runs Argon2id over `code` with `salt` at the [`CURRENT`] cost.
pub fn derive(code: &ReplyCode, salt: &Salt) -> Derived {
    derive_at(code, salt, CURRENT)
}

/// Runs Argon2id over `code` with `salt` at `cost`.
pub fn derive_at(code: &ReplyCode, salt: &Salt, cost: Cost) -> Derived {
    use argon2::{Algorithm, Argon2, Params, Version};
    let params = Params::new(cost.memory_kib, cost.passes, cost.lanes, Some(64))
        .expect("fixed Argon2id parameters are valid");
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let mut out = Zeroizing::new([0u8; 64]);
    argon
        .hash_password_into(code.secret(), &salt.0, &mut *out)
        .expect("fixed Argon2id inputs are valid");
    let mut seed = Zeroizing::new([0u8; 32]);
    seed.copy_from_slice(&out[32..]);
    Derived {
        lookup: hex::encode(&out[..32]),
        seed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_code_and_salt_give_the_same_keys_and_another_salt_does_not() {
        let code = ReplyCode::generate();
        let salt = Salt::fixed([7; 32]);
        let (a, b) = (derive(&code, &salt), derive(&code, &salt));
        assert_eq!(a.lookup, b.lookup);
        assert_eq!(*a.seed, *b.seed);
        let other = derive(&code, &Salt::fixed([8; 32]));
        assert_ne!(a.lookup, other.lookup);
        assert_ne!(
            a.lookup,
            hex::encode(*a.seed),
            "lookup and seed are separate halves"
        );
    }

    #[test]
    fn the_two_costs_give_different_keys_for_the_same_code() {
        let code = ReplyCode::generate();
        let salt = Salt::fixed([7; 32]);
        let current = derive_at(&code, &salt, CURRENT);
        let legacy = derive_at(&code, &salt, LEGACY);
        assert_eq!(current.lookup, derive(&code, &salt).lookup);
        assert_ne!(current.lookup, legacy.lookup);
        assert_ne!(*current.seed, *legacy.seed);
    }

    #[test]
    fn the_salt_is_made_once_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let first = Salt::load_or_create(dir.path()).unwrap();
        let again = Salt::load_or_create(dir.path()).unwrap();
        assert_eq!(first.0, again.0);
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.path().join(SALT_FILE))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(dir.path().join(SALT_FILE), b"short").unwrap();
        assert!(Salt::load_or_create(dir.path()).is_err());
    }
}
