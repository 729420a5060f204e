//! `maintainer.toml`: what a maintainer would otherwise repeat on every
//! command (store, key, intake, token). Found at `EMBARGO_MAINTAINER`, else
//! `$XDG_CONFIG_HOME/embargo/maintainer.toml` (`~/.config/…` without it);
//! flags given on the command line win over it. Unknown keys are refused by
//! name, and relative paths are resolved against the file's directory.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::Error;

/// Every key optional.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// The local store (the directory holding reports/).
    pub store: Option<PathBuf>,
    /// A secret key file, as `--key`.
    pub key: Option<PathBuf>,
    /// Use gpg and gpg-agent, as `--gpg`.
    #[serde(default)]
    pub gpg: bool,
    pub passphrase_file: Option<PathBuf>,
    /// The intake's base URL, as `fetch --from`.
    pub intake_url: Option<String>,
    pub token_file: Option<PathBuf>,
    /// Where `decrypt` writes, as `--out`.
    pub out: Option<PathBuf>,
    /// The package `embargo advisory` drafts are about (`[advisory]`).
    #[serde(default)]
    pub advisory: crate::config::AdvisoryTarget,
}

impl Profile {
    /// The profile in effect, if there is one.
    pub fn load() -> Result<Option<Profile>, Error> {
        let path = match std::env::var_os("EMBARGO_MAINTAINER") {
            Some(p) => PathBuf::from(p),
            None => {
                let base = std::env::var_os("XDG_CONFIG_HOME")
                    .map(PathBuf::from)
                    .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
                match base {
                    Some(b) => b.join("embargo").join("maintainer.toml"),
                    None => return Ok(None),
                }
            }
        };
        if std::env::var_os("EMBARGO_MAINTAINER").is_none() && !path.is_file() {
            return Ok(None);
        }
        Profile::read(&path).map(Some)
    }

    /// Reads the profile at `path`.
    pub fn read(path: &Path) -> Result<Profile, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut profile: Profile = toml::from_str(&text).map_err(|e| {
            Error::Usage(format!(
                "the maintainer profile {} is not valid: {}",
                path.display(),
                e.message()
            ))
        })?;
        if profile.gpg && profile.key.is_some() {
            return Err(Error::Usage(format!(
                "the maintainer profile {} gives both key and gpg = true: keep one",
                path.display()
            )));
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        for p in [
            &mut profile.store,
            &mut profile.key,
            &mut profile.passphrase_file,
            &mut profile.token_file,
            &mut profile.out,
        ]
        .into_iter()
        .flatten()
        {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        }
        Ok(profile)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_relative_to_the_file_and_unknown_keys_are_named() {
        let dir = tempfile_dir();
        let path = dir.join("maintainer.toml");
        std::fs::write(
            &path,
            "store = \"s\"\ngpg = true\nintake_url = \"https://i\"\n",
        )
        .unwrap();
        let p = Profile::read(&path).unwrap();
        assert_eq!(p.store, Some(dir.join("s")));
        assert!(p.gpg && p.key.is_none());
        std::fs::write(&path, "stor = \"s\"\n").unwrap();
        let err = Profile::read(&path).unwrap_err().to_string();
        assert!(err.contains("stor"), "{err}");
        std::fs::write(&path, "key = \"k\"\ngpg = true\n").unwrap();
        assert!(Profile::read(&path).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("embargo-profile-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
