//! Builders for the `embargo decrypt` and `embargo list` command lines the
//! tests run over and over: the option names live here, once.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::process::{Command, Output};

use super::Site;

/// The options `decrypt` and `list` share, as builder methods.
macro_rules! reveal_options {
    ($t:ty) => {
        impl $t {
            /// `--store DIR` (a site's store is the default of `new`).
            pub fn store(mut self, dir: impl AsRef<OsStr>) -> Self {
                self.0.arg("--store").arg(dir);
                self
            }
            /// `-c CONFIG`: store and signer from an intake's configuration.
            pub fn config(mut self, path: impl AsRef<OsStr>) -> Self {
                self.0.arg("-c").arg(path);
                self
            }
            /// `--key FILE`: a secret key file.
            pub fn key(mut self, path: impl AsRef<OsStr>) -> Self {
                self.0.arg("--key").arg(path);
                self
            }
            /// `--passphrase-file FILE` for a locked key.
            pub fn passphrase_file(mut self, path: impl AsRef<OsStr>) -> Self {
                self.0.arg("--passphrase-file").arg(path);
                self
            }
            /// `--signer FILE`: the pinned intake certificate.
            pub fn signer(mut self, path: impl AsRef<OsStr>) -> Self {
                self.0.arg("--signer").arg(path);
                self
            }
            /// `--gpg`: decrypt through the user's gpg-agent.
            pub fn gpg(mut self) -> Self {
                self.0.arg("--gpg");
                self
            }
            /// Any further argument.
            pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
                self.0.arg(arg);
                self
            }
            /// An environment variable for the run (e.g. GNUPGHOME).
            pub fn env(mut self, key: &str, value: impl AsRef<OsStr>) -> Self {
                self.0.env(key, value);
                self
            }
            /// The command, for callers that spawn it themselves.
            pub fn command(self) -> Command {
                self.0
            }
            /// Runs it to the end and returns what it printed.
            pub fn run(mut self) -> Output {
                self.0.output().expect("embargo runs")
            }
        }
    };
}

/// `embargo decrypt TARGET ...`, run from a site.
pub struct Decrypt(Command);

impl Decrypt {
    /// `decrypt ID --store SITE/data`.
    pub fn new(site: &Site, id: &str) -> Decrypt {
        Decrypt::target(site, id).store(site.store_dir())
    }

    /// `decrypt TARGET` with no store: a report directory, or an ID with
    /// `store`/`config` added by the caller.
    pub fn target(site: &Site, target: impl AsRef<OsStr>) -> Decrypt {
        let mut cmd = site.embargo();
        cmd.arg("decrypt").arg(target);
        Decrypt(cmd)
    }

    /// `--out DIR`: where the plaintext goes.
    pub fn out(mut self, dir: impl AsRef<OsStr>) -> Decrypt {
        self.0.arg("--out").arg(dir);
        self
    }
}

reveal_options!(Decrypt);

/// `embargo list ...`, run from a site.
pub struct List(Command);

impl List {
    /// `list --store SITE/data`.
    pub fn new(site: &Site) -> List {
        List::bare(site).store(site.store_dir())
    }

    /// `list` with no store option.
    pub fn bare(site: &Site) -> List {
        let mut cmd = site.embargo();
        cmd.arg("list");
        List(cmd)
    }

    /// `--json`: one object per report on stdout.
    pub fn json(mut self) -> List {
        self.0.arg("--json");
        self
    }
}

reveal_options!(List);
