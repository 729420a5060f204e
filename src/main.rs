//! The `embargo` command: parses arguments, loads configuration, runs one
//! library operation and maps its outcome to an exit code.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use embargo::app::{self, Intake};
use embargo::clock::{self, Clock};

/// Intake for security vulnerability reports: every report is sealed to
/// the maintainers' OpenPGP certificates as it arrives.
#[derive(Parser)]
#[command(name = "embargo", version, about, long_about = None)]
struct Cli {
    /// Pretend the time is this RFC 3339 instant (for tests of expiry and deadlines).
    #[arg(long, global = true, hide = true)]
    now: Option<String>,
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
        /// The report: {"report": {...}, "reporter": {...}} (DESIGN §6).
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
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("EMBARGO_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .with_target(false)
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("embargo: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn clock_from(now: Option<&str>) -> Result<Clock> {
    match now {
        None => Ok(Clock::system()),
        Some(s) => clock::parse_rfc3339(s)
            .map(Clock::fixed)
            .with_context(|| format!("--now {s:?} is not an RFC 3339 time like 2026-11-23T16:40:00Z")),
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
        Command::Seal { config, report, attachments } => {
            let config = app::load_config(config.as_deref())?;
            let json = std::fs::read(&report)
                .with_context(|| format!("cannot read the report file {}", report.display()))?;
            let intake = Intake::open(config, clock)?;
            let sealed = intake.seal_files(&json, &attachments)?;
            println!("{}", sealed.id);
            Ok(ExitCode::SUCCESS)
        }
        Command::Keys { command: KeysCommand::Check { config } } => {
            let config = app::load_config(config.as_deref())?;
            let keyring = embargo::keys::Keyring::load(&config.keys_dir, clock)?;
            let (text, usable) = app::keys_check(&keyring, config.key_expiry_warning.0);
            print!("{text}");
            if usable {
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("embargo: error: {}", keyring.usable().err().map(|e| e.to_string()).unwrap_or_default());
                Ok(ExitCode::from(1))
            }
        }
        Command::Keys { command: KeysCommand::Signing { config } } => {
            let config = app::load_config(config.as_deref())?;
            let secrets = embargo::keys::IntakeSecrets::load_or_create(&config.state_dir, &config.project_name)?;
            print!("{}", secrets.signing_cert_armored()?);
            Ok(ExitCode::SUCCESS)
        }
    }
}
