//! The command line: every subcommand and option (clap derive), and nothing
//! else. What each command does is in `commands/`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use embargo::reveal;

/// Intake for security vulnerability reports: every report is sealed to
/// the maintainers' OpenPGP certificates as it arrives.
#[derive(Parser)]
#[command(name = "embargo", version, about, long_about = None)]
pub struct Cli {
    /// Pretend the time is this RFC 3339 instant (for tests of expiry and deadlines).
    #[arg(long, global = true, hide = true)]
    pub now: Option<String>,
    /// Log format on stderr: `text`, or `json` (one object per line) for log collectors.
    #[arg(long, global = true, env = "EMBARGO_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
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
    /// Seal a report given as input JSON, with attachment files; prints the ID (stdout) and, once, the reply code the reporter reads replies with on /status (stderr).
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
        /// Where the <ID>/ directory is created (default: `out` in maintainer.toml, else .).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Table of the reports in a store, most urgent first (decrypts only manifests).
    List {
        #[command(flatten)]
        reveal: RevealOpts,
        /// Print JSON for scripts instead of the table.
        #[arg(long)]
        json: bool,
        /// Also list closed cases.
        #[arg(long)]
        all: bool,
    },
    /// Maintainer fetch tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Download complete sealed reports missing from a local store (ciphertext only); resumable.
    Fetch {
        /// The intake's base URL, e.g. https://security.example.org (or `intake_url` in maintainer.toml).
        #[arg(long)]
        from: Option<String>,
        /// File holding the fetch token, never the token itself (or `token_file` in maintainer.toml).
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// The local store, the directory that holds reports/ (or `store` in maintainer.toml).
        #[arg(long)]
        store: Option<PathBuf>,
        /// Fail when the intake sends nothing for this long, e.g. 30s or 5m (default 60s).
        #[arg(long)]
        timeout: Option<embargo::config::Span>,
        /// Stop before a report that would take this run past this many bytes (default 32 GiB).
        #[arg(long, default_value_t = reveal::fetch::DEFAULT_MAX_BYTES)]
        max_bytes: u64,
    },
    /// Draft the public advisory of a case: OSV, a CVE JSON 5.1 CNA container, the body of GitHub's advisory API call, or Markdown.
    Advisory {
        /// The report ID.
        id: String,
        /// osv, cve, ghsa or markdown.
        #[arg(long, value_parser = clap::value_parser!(embargo::advisory::Format))]
        format: embargo::advisory::Format,
        /// Write the draft to this new file (mode 0600) instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Replace the --out file if it exists.
        #[arg(long, requires = "out")]
        force: bool,
        /// Also put the steps to reproduce (and so the proof of concept) into the draft.
        #[arg(long)]
        include_steps: bool,
        /// The first affected version (default: every version before the fix).
        #[arg(long, value_name = "VERSION")]
        introduced: Option<String>,
        /// The first fixed version (default: the released fix recorded with `embargo case fix`).
        #[arg(long, value_name = "VERSION")]
        fixed: Option<String>,
        #[command(flatten)]
        reveal: RevealOpts,
    },
    /// A report's case: its timeline, and the maintainers' actions on it (sealed, signed events).
    Case {
        #[command(subcommand)]
        command: CaseCommand,
    },
}

/// The case subcommands. Each action signs an event with --key or --gpg, seals it to every maintainer and stores it beside the report.
#[derive(Subcommand)]
pub enum CaseCommand {
    /// The report summary, the timeline (who, when, what) and what is still due.
    Show {
        #[command(flatten)]
        case: CaseArgs,
        /// Print JSON for scripts instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Decrypt the files the reporter sent with follow-up messages into --out DIR, checked and with safe names.
    ///
    /// Only files that a verified reporter message (signed by the intake key)
    /// names are written, each after its size and SHA-256 matched the
    /// message. Names are made safe as `embargo decrypt` makes them; a file
    /// already in DIR is never replaced (the new one gets -2, -3… instead).
    /// When any file fails its check, nothing is written. Files come into
    /// the store with `embargo fetch` (or here first, with an intake).
    Files {
        /// The report ID.
        id: String,
        #[command(flatten)]
        reveal: RevealOpts,
        #[command(flatten)]
        intake: IntakeOpts,
        /// Where the files are written, created if needed (default: `out` in maintainer.toml, else .).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Record that the report was acknowledged (reporter-visible).
    Ack {
        #[command(flatten)]
        case: CaseArgs,
    },
    /// Record the (provisional) assessment: severity, CVSS vector, CWE.
    Assess {
        #[command(flatten)]
        case: CaseArgs,
        /// critical, high, medium, low or unknown.
        #[arg(long)]
        severity: String,
        /// A CVSS 3.0, 3.1 or 4.0 vector.
        #[arg(long)]
        cvss: Option<String>,
        /// CWE identifiers, e.g. CWE-78 (repeatable, or comma-separated).
        #[arg(long, value_delimiter = ',')]
        cwe: Vec<String>,
    },
    /// A message to the reporter (text from --message FILE, - for stdin, or $EDITOR).
    Reply {
        #[command(flatten)]
        case: CaseArgs,
    },
    /// A note for maintainers only (text from --message FILE, - for stdin, or $EDITOR).
    Note {
        #[command(flatten)]
        case: CaseArgs,
    },
    /// Record a fix: the version, its commit, and whether it is released.
    Fix {
        #[command(flatten)]
        case: CaseArgs,
        #[arg(long = "version")]
        fix_version: String,
        #[arg(long)]
        commit: Option<String>,
        /// The fix is published (the fix deadline is met).
        #[arg(long)]
        released: bool,
    },
    /// Record the public advisory's identifiers.
    Advisory {
        #[command(flatten)]
        case: CaseArgs,
        #[arg(long)]
        ghsa: Option<String>,
        #[arg(long)]
        cve: Option<String>,
        #[arg(long)]
        url: Option<String>,
    },
    /// Close the case: fixed, duplicate, invalid, wontfix or out-of-scope.
    Close {
        #[command(flatten)]
        case: CaseArgs,
        #[arg(long = "as")]
        resolution: String,
    },
    /// Reopen a closed case.
    Reopen {
        #[command(flatten)]
        case: CaseArgs,
    },
    /// Exchange the events of cases with the intake and send each case's signed status (state and due times, what retention and /metrics read), computed again where the intake holds newer events.
    Sync {
        /// Report IDs (default: every report in the store).
        ids: Vec<String>,
        #[command(flatten)]
        reveal: RevealOpts,
        #[command(flatten)]
        intake: IntakeOpts,
    },
    /// Give a new maintainer access to existing reports, events and follow-up files: adds session keys for --cert to every part, changing nothing else.
    Share {
        /// Report IDs (or --all).
        #[arg(required_unless_present = "all")]
        ids: Vec<String>,
        /// Every report in the store.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
        /// The new maintainer's public certificate.
        #[arg(long)]
        cert: PathBuf,
        #[command(flatten)]
        reveal: RevealOpts,
    },
}

/// What every case command takes: the report, where it is, whose key.
#[derive(clap::Args)]
pub struct CaseArgs {
    /// The report ID.
    pub id: String,
    #[command(flatten)]
    pub reveal: RevealOpts,
    #[command(flatten)]
    pub intake: IntakeOpts,
    /// The event's text from this file (`-`: stdin).
    #[arg(long)]
    pub message: Option<PathBuf>,
    /// Send the reporter no "there is a new reply" mail. Without it, an
    /// event the reporter sees (ack, reply, status, fix, advisory, close,
    /// reopen) asks the intake to mail the address in the report, if it
    /// has one and the intake has [smtp]; the mail says only that there is
    /// something new on the status page.
    #[arg(long)]
    pub no_mail: bool,
}

/// The intake a case command exchanges events with at once.
#[derive(clap::Args, Clone)]
pub struct IntakeOpts {
    /// The intake's URL, e.g. https://security.example.org (or `intake_url` in maintainer.toml): events and the case status go there at once, and the others' events come first. Without one, `embargo fetch` carries them.
    #[arg(long = "intake", value_name = "URL")]
    pub intake: Option<String>,
    /// File holding the maintainer token for the intake (or `token_file` in maintainer.toml).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Work on the local store only, even when an intake is configured.
    #[arg(long, conflicts_with = "intake")]
    pub offline: bool,
}

/// Key, store and signer options of `decrypt` and `list`.
#[derive(clap::Args, Clone)]
pub struct RevealOpts {
    /// The store: the directory that holds reports/ (or `store` in -c FILE).
    #[arg(long)]
    pub store: Option<PathBuf>,
    /// Secret key file (armored or binary), e.g. from `gpg --export-secret-keys`.
    /// (Or `key` in maintainer.toml.)
    #[arg(long, conflicts_with = "gpg")]
    pub key: Option<PathBuf>,
    /// File whose first line is the passphrase of --key (else asked on the terminal).
    #[arg(long, conflicts_with = "gpg")]
    pub passphrase_file: Option<PathBuf>,
    /// Decrypt with your gpg-agent (keys in GnuPG's keyring or on a smartcard; respects GNUPGHOME).
    #[arg(long)]
    pub gpg: bool,
    /// The intake's signing certificate: manifests must be signed by it.
    #[arg(long)]
    pub signer: Option<PathBuf>,
    /// Configuration giving the store, [policy] and the intake's state_dir.
    #[arg(short = 'c', long = "config", env = "EMBARGO_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Make a new fetch token: the token on stdout (or in --out FILE), the hash for [maintainers] token_sha256 on stderr.
    New {
        /// Write the token to this new file (mode 0600; never overwrites) instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
pub enum KeysCommand {
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
