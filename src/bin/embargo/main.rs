//! The `embargo` command: parses arguments, loads configuration, runs one
//! library operation and maps its outcome to an exit code.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use embargo::app::{self, Intake};
use embargo::clock::{self, Clock};
use embargo::reveal;

/// Intake for security vulnerability reports: every report is sealed to
/// the maintainers' OpenPGP certificates as it arrives.
#[derive(Parser)]
#[command(name = "embargo", version, about, long_about = None)]
struct Cli {
    /// Pretend the time is this RFC 3339 instant (for tests of expiry and deadlines).
    #[arg(long, global = true, hide = true)]
    now: Option<String>,
    /// Log format on stderr: `text`, or `json` (one object per line) for log collectors.
    #[arg(long, global = true, env = "EMBARGO_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run only the mailbox poller: seal mail from [mailbox] exactly once.
    Poll {
        #[arg(short = 'c', long = "config", env = "EMBARGO_CONFIG")]
        config: Option<PathBuf>,
        /// Drain the mailbox once and exit (for cron); otherwise run until SIGTERM.
        #[arg(long)]
        once: bool,
    },
    /// Run the web intake (and the mailbox poller if [mailbox] is configured) until SIGTERM; SIGHUP reloads keys.
    Serve {
        #[arg(short = 'c', long = "config", env = "EMBARGO_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Try embargo: make a throwaway DEMO maintainer key under ./demo/ and serve on 127.0.0.1:8080.
    Demo,
    /// Seal a report given as input JSON, with attachment files; prints the ID.
    Seal {
        #[arg(short = 'c', long = "config", env = "EMBARGO_CONFIG")]
        config: Option<PathBuf>,
        /// The report: {"report": {...}, "reporter": {...}} (see docs/format.md, "Input JSON").
        #[arg(long)]
        report: PathBuf,
        /// Files to attach (proofs of concept, logs).
        attachments: Vec<PathBuf>,
    },
    /// Inspect the maintainers' certificates and the intake signing key.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Verify and decrypt one report into OUT/<ID>/ (all or nothing).
    Decrypt {
        /// A report ID, or the path of a report directory (STORE/reports/<ID>).
        report: String,
        #[command(flatten)]
        reveal: RevealOpts,
        /// Where the <ID>/ directory is created.
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
    /// Table of the reports in a store, most urgent first (decrypts only manifests).
    List {
        #[command(flatten)]
        reveal: RevealOpts,
        /// Print JSON for scripts instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Maintainer fetch tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Download complete sealed reports missing from a local store (ciphertext only); resumable.
    Fetch {
        /// The intake's base URL, e.g. https://security.example.org.
        #[arg(long)]
        from: String,
        /// File holding the fetch token (never give it as an argument).
        #[arg(long)]
        token_file: PathBuf,
        /// The local store (the directory that holds reports/).
        #[arg(long)]
        store: PathBuf,
        /// Fail when the intake sends nothing for this long, e.g. 30s or 5m (default 60s).
        #[arg(long)]
        timeout: Option<embargo::config::Span>,
        /// Stop before a report that would take this run past this many bytes (default 32 GiB).
        #[arg(long, default_value_t = reveal::fetch::DEFAULT_MAX_BYTES)]
        max_bytes: u64,
    },
}

/// Key, store and signer options of `decrypt` and `list`.
#[derive(clap::Args)]
struct RevealOpts {
    /// The store: the directory that holds reports/ (or `store` in -c FILE).
    #[arg(long)]
    store: Option<PathBuf>,
    /// Secret key file (armored or binary), e.g. from `gpg --export-secret-keys`.
    #[arg(long, required_unless_present = "gpg", conflicts_with = "gpg")]
    key: Option<PathBuf>,
    /// File whose first line is the passphrase of --key (else asked on the terminal).
    #[arg(long, requires = "key", conflicts_with = "gpg")]
    passphrase_file: Option<PathBuf>,
    /// Decrypt with your gpg-agent (keys in GnuPG's keyring or on a smartcard; respects GNUPGHOME).
    #[arg(long)]
    gpg: bool,
    /// The intake's signing certificate: manifests must be signed by it.
    #[arg(long)]
    signer: Option<PathBuf>,
    /// Configuration giving the store, [policy] and the intake's state_dir.
    #[arg(short = 'c', long = "config", env = "EMBARGO_CONFIG")]
    config: Option<PathBuf>,
}

impl RevealOpts {
    /// The store, key and signer choices, and the policy for deadlines.
    fn resolve(
        self,
    ) -> Result<(
        Option<PathBuf>,
        reveal::KeyArgs,
        reveal::SignerArgs,
        embargo::config::Policy,
    )> {
        let config = self
            .config
            .as_deref()
            .map(embargo::config::Config::load)
            .transpose()?;
        let keys = reveal::KeyArgs {
            key: self.key,
            passphrase_file: self.passphrase_file,
            gpg: self.gpg,
        };
        let signer = reveal::SignerArgs {
            signer: self.signer,
            state_dir: config.as_ref().map(|c| c.state_dir.clone()),
        };
        let store = self
            .store
            .or_else(|| config.as_ref().map(|c| c.store.clone()));
        Ok((
            store,
            keys,
            signer,
            config.map(|c| c.policy).unwrap_or_default(),
        ))
    }
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Make a new fetch token: the token on stdout (or in --out FILE), the hash for [maintainers] token_sha256 on stderr.
    New {
        /// Write the token to this new file (mode 0600; never overwrites) instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// List certificates with fingerprint, user ID, status and expiry; exit 1 if none is usable.
    Check {
        #[arg(short = 'c', long = "config", env = "EMBARGO_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Print the intake signing certificate (armored).
    Signing {
        #[arg(short = 'c', long = "config", env = "EMBARGO_CONFIG")]
        config: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs(&cli);
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("embargo: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Logs go to stderr, filtered by `EMBARGO_LOG`. Servers log at `info` by
/// default (one line per request); one-shot commands only warn.
///
/// Whatever `EMBARGO_LOG` says, only embargo's own events go below `info`:
/// dependencies trace their I/O (the IMAP client logs the LOGIN line and
/// every fetched message, hyper logs peer addresses), so their debug and
/// trace events are dropped by [`embargo::logging::dependency_clamp`].
fn init_logs(cli: &Cli) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{Layer, filter::FilterExt};

    let default = match cli.command {
        Command::Serve { .. } | Command::Poll { .. } | Command::Demo => "info",
        _ => "warn",
    };
    let env = tracing_subscriber::EnvFilter::try_from_env("EMBARGO_LOG")
        .unwrap_or_else(|_| default.into());
    let filter = env.and(embargo::logging::dependency_clamp());
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false);
    let layer = if cli.log_format == "json" {
        layer
            .json()
            .with_current_span(false)
            .with_filter(filter)
            .boxed()
    } else {
        // Colour codes only for a person at a terminal, never into journald or files.
        layer
            .with_ansi(
                std::io::IsTerminal::is_terminal(&std::io::stderr())
                    && std::env::var_os("NO_COLOR").is_none(),
            )
            .with_filter(filter)
            .boxed()
    };
    tracing_subscriber::registry().with(layer).init();
}

fn clock_from(now: Option<&str>) -> Result<Clock> {
    match now {
        None => Ok(Clock::system()),
        Some(s) => clock::parse_rfc3339(s).map(Clock::fixed).with_context(|| {
            format!("--now {s:?} is not an RFC 3339 time like 2026-11-23T16:40:00Z")
        }),
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let clock = clock_from(cli.now.as_deref())?;
    match cli.command {
        Command::Poll { config, once } => {
            let config = app::load_config(config.as_deref())?;
            embargo::mailbox::poll_command(config, clock, once)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve { config } => {
            let config = app::load_config(config.as_deref())?;
            embargo::intake::serve(config, clock)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo => {
            embargo::intake::demo(std::path::Path::new("demo"), clock)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Seal {
            config,
            report,
            attachments,
        } => {
            let config = app::load_config(config.as_deref())?;
            let json = std::fs::read(&report)
                .with_context(|| format!("cannot read the report file {}", report.display()))?;
            let intake = Intake::open(config, clock)?;
            let sealed = intake.seal_files(&json, &attachments)?;
            println!("{}", sealed.id);
            Ok(ExitCode::SUCCESS)
        }
        Command::Keys {
            command: KeysCommand::Check { config },
        } => {
            let config = app::load_config(config.as_deref())?;
            let keyring = embargo::keys::Keyring::load(&config.keys_dir, clock)?;
            let (text, usable) = app::keys_check(&keyring, config.key_expiry_warning.0);
            print!("{text}");
            if usable {
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!(
                    "embargo: error: {}",
                    keyring
                        .usable()
                        .err()
                        .map(|e| e.to_string())
                        .unwrap_or_default()
                );
                Ok(ExitCode::from(1))
            }
        }
        Command::Decrypt {
            report,
            reveal: opts,
            out,
        } => {
            let (store, keys, signer, policy) = opts.resolve()?;
            let args = reveal::DecryptArgs {
                target: report,
                store,
                out,
                keys,
                signer,
                policy,
            };
            Ok(match reveal::decrypt(&args) {
                Ok(done) => {
                    let signature = match &done.signature {
                        embargo::seal::SignatureCheck::Verified(fpr) => {
                            format!("manifest signed by the intake key {fpr}")
                        }
                        _ => {
                            eprintln!("{}", reveal::keysource::UNCHECKED_SIGNATURE_WARNING);
                            "manifest signature NOT checked".into()
                        }
                    };
                    eprintln!(
                        "embargo: report {} decrypted: {} attachment(s) matched the manifest's sizes and SHA-256, {signature}; see report.md",
                        done.id,
                        done.files.len()
                    );
                    println!("{}", done.dir.display());
                    ExitCode::SUCCESS
                }
                Err(e) => reveal_failed(e),
            })
        }
        Command::List { reveal: opts, json } => {
            let (store, keys, signer, policy) = opts.resolve()?;
            let store = match reveal::store_root(store.as_deref(), None) {
                Ok(s) => s,
                Err(e) => return Ok(reveal_failed(e)),
            };
            Ok(
                match reveal::list(&reveal::ListArgs {
                    store,
                    keys,
                    signer,
                    policy,
                    clock,
                }) {
                    Ok(listing) => {
                        if listing.any_unchecked() {
                            eprintln!("{}", reveal::keysource::UNCHECKED_SIGNATURE_WARNING);
                        }
                        if json {
                            println!("{}", listing.to_json());
                        } else {
                            use std::io::IsTerminal;
                            let colour = std::io::stdout().is_terminal()
                                && std::env::var_os("NO_COLOR").is_none();
                            print!("{}", listing.to_table(colour));
                        }
                        ExitCode::SUCCESS
                    }
                    Err(e) => reveal_failed(e),
                },
            )
        }
        Command::Token {
            command: TokenCommand::New { out },
        } => {
            let token = reveal::new_token();
            match &out {
                Some(path) => {
                    reveal::token::write_token_file(path, &token.token).map_err(|e| {
                        if e.kind() == std::io::ErrorKind::AlreadyExists {
                            anyhow::anyhow!(
                                "{} already exists: `token new` never overwrites a file; choose another --out or remove it first",
                                path.display()
                            )
                        } else {
                            anyhow::anyhow!(
                                "cannot create the token file {}: {e}; check that its directory exists and is writable",
                                path.display()
                            )
                        }
                    })?;
                    eprintln!(
                        "embargo: wrote the new fetch token to {} (mode 0600): the maintainer uses it with `embargo fetch --token-file`",
                        path.display()
                    );
                }
                None => {
                    println!("{}", token.token.as_str());
                    eprintln!(
                        "embargo: the new fetch token is on stdout: the maintainer keeps it in a file only they can read (chmod 600) for `embargo fetch --token-file`"
                    );
                }
            }
            eprintln!(
                "embargo: on the intake, add this entry to the token_sha256 list in [maintainers] of embargo.toml, keeping the entries already there:"
            );
            eprintln!("{}", token.list_entry());
            Ok(ExitCode::SUCCESS)
        }
        Command::Fetch {
            from,
            token_file,
            store,
            timeout,
            max_bytes,
        } => Ok(
            match reveal::fetch(&reveal::FetchArgs {
                from,
                token_file,
                store,
                timeout: timeout.map_or(reveal::fetch::DEFAULT_TIMEOUT, |t| t.0),
                max_bytes,
            }) {
                Ok(summary) => {
                    for id in &summary.fetched {
                        println!("{id}");
                    }
                    eprintln!(
                        "embargo: fetched {} new report(s) ({} bytes); {} already here",
                        summary.fetched.len(),
                        summary.bytes,
                        summary.already_present
                    );
                    if summary.confirmed > 0 {
                        eprintln!(
                            "embargo: confirmed {} stored report(s) to the intake, which may now delete its copies",
                            summary.confirmed
                        );
                    }
                    match summary.cap_message() {
                        Some(message) => {
                            eprintln!("embargo: error: {message}");
                            ExitCode::from(1)
                        }
                        None => ExitCode::SUCCESS,
                    }
                }
                Err(e) => reveal_failed(e),
            },
        ),
        Command::Keys {
            command: KeysCommand::Signing { config },
        } => {
            let config = app::load_config(config.as_deref())?;
            let secrets = embargo::keys::IntakeSecrets::load_or_create(
                &config.state_dir,
                &config.project_name,
            )?;
            print!("{}", secrets.signing_cert_armored()?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Reports a maintainer-command failure: exit 2 for usage, 1 otherwise.
fn reveal_failed(e: reveal::Error) -> ExitCode {
    eprintln!("embargo: error: {e}");
    ExitCode::from(e.exit_code())
}
