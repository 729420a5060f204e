//! One handler per command: each turns its arguments into a library call
//! and the result into output. Shared steps (the clock, the configuration,
//! the maintainer options) are here.

mod advisory;
mod case;
mod decrypt;
mod fetch;
mod keys;
mod list;
mod seal;
mod serve;
mod share;
mod token;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;

use embargo::clock::{self, Clock};
use embargo::config::{Config, Policy};
use embargo::reveal;

use crate::cli::{Cli, Command, KeysCommand, RevealOpts, TokenCommand};
use crate::error::Usage;
use crate::output::Output;

/// Runs the command `cli` names.
pub fn run(cli: Cli, out: &Output) -> Result<ExitCode> {
    let clock = clock_from(cli.now.as_deref())?;
    match cli.command {
        Command::Poll { config, once } => serve::poll(config.as_deref(), clock, once),
        Command::Serve { config } => serve::serve(config.as_deref(), clock, out),
        Command::Demo => serve::demo(clock, out),
        Command::Seal {
            config,
            report,
            attachments,
        } => seal::run(config.as_deref(), &report, &attachments, clock, out),
        Command::Keys { command } => match command {
            KeysCommand::Check { config } => keys::check(config.as_deref(), clock, out),
            KeysCommand::Signing { config } => keys::signing(config.as_deref(), out),
        },
        Command::Decrypt {
            report,
            reveal,
            out: dir,
        } => decrypt::run(report, reveal, out_dir(dir)?, out),
        Command::List { reveal, json, all } => list::run(reveal, json, all, clock, out),
        Command::Case { command } => case::run(command, clock, out),
        Command::Advisory {
            id,
            format,
            out: file,
            force,
            include_steps,
            introduced,
            fixed,
            reveal,
        } => advisory::run(
            advisory::Request {
                id,
                format,
                file,
                force,
                include_steps,
                introduced,
                fixed,
                reveal,
            },
            clock,
            out,
        ),
        Command::Token {
            command: TokenCommand::New { out: file },
        } => token::new(file.as_deref(), out),
        Command::Fetch {
            from,
            token_file,
            store,
            timeout,
            max_bytes,
        } => {
            let profile = reveal::profile::Profile::load()?.unwrap_or_default();
            let missing = |flag: &str, key: &str| {
                Usage(format!(
                    "fetch needs {flag} (or `{key}` in the maintainer profile, maintainer.toml)"
                ))
            };
            fetch::run(
                reveal::FetchArgs {
                    from: from
                        .or(profile.intake_url)
                        .ok_or_else(|| missing("--from URL", "intake_url"))?,
                    token_file: token_file
                        .or(profile.token_file)
                        .ok_or_else(|| missing("--token-file FILE", "token_file"))?,
                    store: store
                        .or(profile.store)
                        .ok_or_else(|| missing("--store DIR", "store"))?,
                    timeout: timeout.map_or(reveal::fetch::DEFAULT_TIMEOUT, |t| t.0),
                    max_bytes,
                },
                out,
            )
        }
    }
}

/// The clock: the system's, or the instant `--now` pretends it is.
fn clock_from(now: Option<&str>) -> Result<Clock> {
    match now {
        None => Ok(Clock::system()),
        Some(s) => match clock::parse_rfc3339(s) {
            Some(t) => Ok(Clock::fixed(t)),
            None => Err(Usage(format!(
                "--now {s:?} is not an RFC 3339 time like 2026-11-23T16:40:00Z"
            ))
            .into()),
        },
    }
}

/// Where plaintext goes: `--out`, else `out` in the maintainer profile,
/// else the current directory.
fn out_dir(flag: Option<PathBuf>) -> Result<PathBuf> {
    Ok(match flag {
        Some(d) => d,
        None => reveal::profile::Profile::load()?
            .and_then(|p| p.out)
            .unwrap_or_else(|| PathBuf::from(".")),
    })
}

/// `-c FILE` (or `EMBARGO_CONFIG`), else the defaults in the current directory.
fn load_config(path: Option<&Path>) -> Result<Config> {
    Ok(Config::load_or_defaults(path)?)
}

/// The store, key and signer choices of `decrypt` and `list`, and the
/// policy for deadlines.
struct Maintainer {
    store: Option<PathBuf>,
    keys: reveal::KeyArgs,
    signer: reveal::SignerArgs,
    policy: Policy,
    /// The intake's `keys_dir`, when `-c` gave a configuration.
    keys_dir: Option<PathBuf>,
}

impl Maintainer {
    fn resolve(opts: RevealOpts, out: &Output) -> Result<Maintainer> {
        let config = opts.config.as_deref().map(Config::load).transpose()?;
        // Flags win; the profile fills in what they leave out.
        let profile = reveal::profile::Profile::load()?.unwrap_or_default();
        let flag_chose = opts.key.is_some() || opts.gpg;
        let keys = reveal::KeyArgs {
            key: opts.key.or(if flag_chose { None } else { profile.key }),
            passphrase_file: opts.passphrase_file.or(profile.passphrase_file),
            gpg: opts.gpg || (!flag_chose && profile.gpg),
            ask: out.passphrase_prompt(),
        };
        if keys.key.is_none() && !keys.gpg {
            return Err(Usage(
                "no secret key: give --key FILE or --gpg (or `key` or `gpg = true` in the maintainer profile, maintainer.toml)".into(),
            )
            .into());
        }
        let store = opts
            .store
            .or_else(|| config.as_ref().map(|c| c.store.clone()))
            .or(profile.store);
        let signer = reveal::SignerArgs {
            signer: opts.signer,
            state_dir: config.as_ref().map(|c| c.state_dir.clone()),
            store: store.clone(),
        };
        // The intake's promises: -c's, else the ones fetch saved.
        let policy = match &config {
            Some(c) => c.policy.clone(),
            None => store
                .as_deref()
                .and_then(reveal::saved_policy)
                .unwrap_or_default(),
        };
        Ok(Maintainer {
            store,
            keys,
            signer,
            keys_dir: config.as_ref().map(|c| c.keys_dir.clone()),
            policy,
        })
    }
}
