//! `embargo case …`: the timeline of a report, and the maintainers' actions
//! on it, each a signed event sealed to every maintainer.

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Result, anyhow, bail};
use sequoia_openpgp as openpgp;

use embargo::case::event::{Advisory, Assessment, CvssVector, Fix};
use embargo::case::status::CaseStatus;
use embargo::case::{Author, Case, Event, Kind, Opened, Resolution, Signers, Writer};
use embargo::clock::{Clock, rfc3339};
use embargo::config::MessageFormat;
use embargo::id::ReportId;
use embargo::keys::Keyring;
use embargo::reveal;
use embargo::reveal::names::{one_line, sanitize};
use embargo::seal::{Opener, SecretSource};
use embargo::store;

use super::Maintainer;
use crate::cli::{CaseArgs, CaseCommand, IntakeOpts, RevealOpts};
use crate::output::Output;

/// Longest line of an event's message shown by `case show`.
const MESSAGE_LINE_CHARS: usize = 500;

pub fn run(command: CaseCommand, clock: Clock, out: &Output) -> Result<ExitCode> {
    let (args, kind) = match &command {
        CaseCommand::Show { case, json } => return show(case, *json, clock, out),
        CaseCommand::Sync {
            ids,
            reveal,
            intake,
        } => return sync(ids, reveal, intake, clock, out),
        CaseCommand::Files {
            id,
            reveal,
            intake,
            out: dir,
        } => return files(id, reveal, intake, dir.clone(), clock, out),
        CaseCommand::Share {
            ids,
            all,
            cert,
            reveal,
        } => return super::share::run(ids, *all, cert, reveal, out),
        CaseCommand::Ack { case } => (case, Kind::Acknowledged),
        CaseCommand::Assess { case, .. } => (case, Kind::Assessed),
        CaseCommand::Reply { case } => (case, Kind::Reply),
        CaseCommand::Note { case } => (case, Kind::Note),
        CaseCommand::Fix { case, .. } => (case, Kind::Fix),
        CaseCommand::Advisory { case, .. } => (case, Kind::Advisory),
        CaseCommand::Close { case, .. } => (case, Kind::Closed),
        CaseCommand::Reopen { case } => (case, Kind::Reopened),
    };
    let id = report_id(&args.id)?;
    let ctx = Context::open(&args.reveal, out, clock)?;
    let intake = intake_of(&args.intake)?;
    ctx.refuse_unknown(&id)?;
    if let Some(intake) = &intake {
        exchange(intake, &ctx, &id, out);
    }
    let case = ctx.read(&id)?;
    let author = ctx.author()?;
    let mut event = Event::new(
        case.manifest.id.clone(),
        kind,
        author.fingerprint(),
        clock.now(),
    );
    event.message = message(args.message.as_deref(), kind)?;
    fill(&mut event, &command)?;
    let recipients = ctx.keyring.recipients()?;
    let writer = Writer {
        store: ctx.store.as_ref(),
        recipients: &recipients,
        format: MessageFormat::Compat,
        author: &author,
    };
    // Checked and signed before anything is stored: a refusal or a failed
    // signature leaves nothing behind, and asks for no signature in vain.
    writer.check(&case, kind)?;
    let status = ctx.status_after(&case, &event, &author, clock)?;
    writer.add(&case, &event)?;
    ctx.store.set_status(&id, &status, &|_| true)?;
    out.note(format_args!(
        "recorded {} on report {id} (event {})",
        kind.as_str(),
        event.event
    ));
    match &intake {
        Some(intake) => {
            exchange(intake, &ctx, &id, out);
            if event.visible_to_reporter && !args.no_mail {
                mail_reporter(intake, &case, out);
            }
        }
        None => out.note("no intake configured (--intake or intake_url): `embargo fetch` sends it"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Asks the intake to tell the reporter (at the address in the report, if
/// any) that there is something new; what happened is told, never fatal.
fn mail_reporter(intake: &reveal::fetch::Intake, case: &Case, out: &Output) {
    use reveal::fetch::MailOutcome;
    let to = case.manifest.reporter.email.as_str();
    if to.is_empty() {
        return;
    }
    let id = &case.manifest.id;
    match reveal::fetch::mail_reporter(intake, id, to) {
        Ok(MailOutcome::Sent) => out.note(format_args!(
            "the reporter of {id} was mailed that there is something new on the status page"
        )),
        Ok(MailOutcome::NoSmtp) => out.note(format_args!(
            "the intake sends no mail ([smtp] is not set): the reporter of {id} sees it on the status page"
        )),
        Ok(MailOutcome::NotSent(why)) => out.note(format_args!(
            "the intake did not mail the reporter of {id} ({why}); they see it on the status page"
        )),
        Err(e) => out.note(format_args!(
            "could not ask the intake to mail the reporter of {id} ({})",
            crate::error::describe(&anyhow::Error::from(e))
        )),
    }
}

/// `--intake` and `--token-file`, else the maintainer profile's; `None`
/// with `--offline` or when neither names an intake.
fn intake_of(opts: &IntakeOpts) -> Result<Option<reveal::fetch::Intake>> {
    if opts.offline {
        return Ok(None);
    }
    let profile = reveal::profile::Profile::load()?.unwrap_or_default();
    let Some(from) = opts.intake.clone().or(profile.intake_url) else {
        return Ok(None);
    };
    let token_file = opts.token_file.clone().or(profile.token_file).ok_or_else(|| {
        crate::error::Usage(
            "an intake needs the maintainer token: give --token-file FILE (or `token_file` in maintainer.toml), or --offline".into(),
        )
    })?;
    Ok(Some(reveal::fetch::Intake {
        from,
        token_file,
        timeout: reveal::fetch::DEFAULT_TIMEOUT,
    }))
}

/// Exchanges the events of `id` with the intake and sends its status. A
/// failure is told, not fatal: what was written stays in the local store,
/// and the next exchange or `embargo fetch` sends it.
fn exchange(intake: &reveal::fetch::Intake, ctx: &Context, id: &ReportId, out: &Output) {
    use reveal::fetch::StatusSent;
    match reveal::fetch::sync_case(intake, ctx.store.as_ref(), id) {
        Ok(done) => {
            if done.events_fetched > 0 {
                out.note(format_args!(
                    "{} event(s) of report {id} from other maintainers fetched from the intake",
                    done.events_fetched
                ));
            }
            if done.files_fetched > 0 {
                out.note(format_args!(
                    "{} follow-up file(s) of report {id} from the reporter fetched from the intake ({})",
                    done.files_fetched,
                    crate::output::human_size(done.files_bytes)
                ));
            }
            if done.events_sent > 0 {
                out.note(format_args!(
                    "{} event(s) of report {id} sent to the intake",
                    done.events_sent
                ));
            }
            if done.status == StatusSent::Stale {
                out.note(format_args!(
                    "the intake holds events of report {id} newer than this store's case status: `embargo case sync {id}` brings it up to date"
                ));
            }
        }
        Err(e) => out.note(format_args!(
            "could not exchange report {id} with the intake ({}); everything stays in the local store, and the next case command or `embargo fetch` sends it",
            crate::error::describe(&anyhow::Error::from(e))
        )),
    }
}

/// `case sync`: every named report (or every one in the store) exchanged
/// with the intake, its status computed again where it no longer names
/// every event, then sent.
fn sync(
    ids: &[String],
    opts: &RevealOpts,
    intake: &IntakeOpts,
    clock: Clock,
    out: &Output,
) -> Result<ExitCode> {
    let intake = intake_of(intake)?.ok_or_else(|| {
        crate::error::Usage(
            "case sync needs an intake: give --intake URL and --token-file FILE (or intake_url and token_file in maintainer.toml)".into(),
        )
    })?;
    let ctx = Context::open(opts, out, clock)?;
    let ids: Vec<ReportId> = if ids.is_empty() {
        ctx.store.list()?
    } else {
        ids.iter().map(|s| report_id(s)).collect::<Result<_>>()?
    };
    let author = ctx.author()?;
    let (mut events, mut files, mut statuses) = (0usize, 0usize, 0usize);
    for id in &ids {
        let before = reveal::fetch::sync_case(&intake, ctx.store.as_ref(), id)?;
        events += before.events_fetched + before.events_sent;
        files += before.files_fetched;
        if ctx.status_is_current(id)? && before.status != reveal::fetch::StatusSent::Stale {
            continue;
        }
        ctx.record_status(id, &author, clock)?;
        let after = reveal::fetch::sync_case(&intake, ctx.store.as_ref(), id)?;
        events += after.events_fetched + after.events_sent;
        files += after.files_fetched;
        statuses += usize::from(after.status == reveal::fetch::StatusSent::Sent);
    }
    out.note(format_args!(
        "synced {} case(s) with the intake: {events} event(s) moved, {files} follow-up file(s) fetched, {statuses} case status(es) computed again and sent",
        ids.len()
    ));
    Ok(ExitCode::SUCCESS)
}

pub(super) fn report_id(s: &str) -> Result<ReportId> {
    s.parse().map_err(|_| {
        anyhow!(
            "{} is not a report ID (like K7Q3M-2XDA9-TF4BC-1ZP0R)",
            one_line(s, 40)
        )
    })
}

/// The fields that go with each kind of action.
fn fill(event: &mut Event, command: &CaseCommand) -> Result<()> {
    match command {
        CaseCommand::Assess {
            severity,
            cvss,
            cwe,
            ..
        } => {
            let severity = severity.to_ascii_lowercase().parse().map_err(|()| {
                anyhow!("--severity {severity:?}: use critical, high, medium, low or unknown")
            })?;
            if let Some(v) = cvss {
                embargo::report::CvssScore::parse(v).map_err(|e| anyhow!("--cvss {v:?}: {e}"))?;
            }
            event.assessment = Some(Assessment {
                severity,
                cvss: cvss.clone().map(|vector| CvssVector { vector }),
                cwe: cwe.iter().map(|c| c.trim().to_ascii_uppercase()).collect(),
            });
        }
        CaseCommand::Fix {
            fix_version,
            commit,
            released,
            ..
        } => {
            event.fix = Some(Fix {
                version: fix_version.clone(),
                commit: commit.clone(),
                released: *released,
            });
        }
        CaseCommand::Advisory { ghsa, cve, url, .. } => {
            if ghsa.is_none() && cve.is_none() && url.is_none() {
                bail!("give at least one of --ghsa, --cve and --url");
            }
            event.advisory = Some(Advisory {
                ghsa: ghsa.clone(),
                cve: cve.clone(),
                url: url.clone(),
            });
        }
        CaseCommand::Close { resolution, .. } => {
            event.resolution = Some(resolution.parse::<Resolution>().map_err(|e| anyhow!(e))?);
        }
        _ => {}
    }
    Ok(())
}

/// The event's text: `--message FILE`, `-` for stdin; `reply` and `note`
/// need one, and read stdin when it is not a terminal.
fn message(file: Option<&Path>, kind: Kind) -> Result<Option<String>> {
    let needs = matches!(kind, Kind::Reply | Kind::Note);
    let text = match file {
        Some(p) if p == Path::new("-") => Some(read_stdin()?),
        Some(p) => Some(std::fs::read_to_string(p).map_err(|e| {
            anyhow!(
                "cannot read the message file {}: {e}; give a readable UTF-8 text file, or - for stdin",
                p.display()
            )
        })?),
        None if needs && !std::io::IsTerminal::is_terminal(&std::io::stdin()) => {
            Some(read_stdin()?)
        }
        None if needs => Some(edit()?),
        None => None,
    };
    let text = text.filter(|t| !t.trim().is_empty());
    if needs && text.is_none() {
        bail!(
            "a {} needs text: give --message FILE, or pipe it in (--message -)",
            kind.as_str()
        );
    }
    Ok(text)
}

/// Opens `$VISUAL` or `$EDITOR` on an empty file in `$XDG_RUNTIME_DIR`
/// (memory-backed and private to the user), reads what was written, then
/// overwrites and removes the file: the text is case plaintext.
fn edit() -> Result<String> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
    let dir = std::env::var_os("XDG_RUNTIME_DIR")
        .map(std::path::PathBuf::from)
        .filter(|d| {
            std::fs::metadata(d).is_ok_and(|m| {
                m.is_dir() && m.permissions().mode() & 0o077 == 0 && m.uid() == rustix::process::getuid().as_raw()
            })
        })
        .ok_or_else(|| {
            anyhow!("no private place to edit the text in (XDG_RUNTIME_DIR is unset or not private): give --message FILE, or pipe the text in with --message -")
        })?;
    let path = dir.join(format!(
        "embargo-message-{:016x}.txt",
        rand::random::<u64>()
    ));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| anyhow!("cannot create {}: {e}", path.display()))?;
    let editor = std::env::var("VISUAL")
        .or_else(|_| std::env::var("EDITOR"))
        .unwrap_or_else(|_| "vi".into());
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("embargo")
        .arg(&path)
        .status();
    let text = std::fs::read_to_string(&path);
    if let Ok(meta) = std::fs::metadata(&path) {
        let _ = std::fs::write(&path, vec![0u8; meta.len() as usize]);
    }
    let _ = std::fs::remove_file(&path);
    match status {
        Ok(s) if s.success() => {}
        _ => bail!("the editor ({editor}) failed; nothing was recorded"),
    }
    text.map_err(|e| anyhow!("cannot read what the editor wrote: {e}"))
}

fn read_stdin() -> Result<String> {
    let mut text = String::new();
    std::io::stdin()
        .take(embargo::case::event::MAX_MESSAGE_BYTES as u64 + 1)
        .read_to_string(&mut text)
        .map_err(|e| anyhow!("cannot read the message from stdin: {e}"))?;
    Ok(text)
}

/// Everything a case command opens: the store, the key, who may sign.
pub(super) struct Context {
    store: std::sync::Arc<dyn store::Store>,
    opener: Opener,
    source_certs: Vec<openpgp::Cert>,
    /// `--gpg`, with the homedir it uses.
    gpg: Option<Option<std::path::PathBuf>>,
    /// The maintainers' keyring: every certificate verifies signatures
    /// (events signed before one expired stay verified); the usable ones
    /// are what new events are sealed to.
    keyring: Keyring,
    maintainers: Vec<openpgp::Cert>,
    intake: Option<openpgp::Cert>,
    fallback_policy: embargo::config::Policy,
}

impl Context {
    pub(super) fn open(opts: &RevealOpts, out: &Output, clock: Clock) -> Result<Context> {
        let m = Maintainer::resolve(opts.clone(), out)?;
        let root = reveal::store_root(m.store.as_deref(), None)?;
        if !root.join("reports").is_dir() {
            bail!(
                "no store at {}: give --store DIR (the directory holding reports/)",
                root.display()
            );
        }
        let store = store::open(&root)?;
        let keyring = maintainer_keyring(&root, m.keys_dir.as_deref(), clock)?;
        let maintainers = keyring.entries.iter().map(|e| e.cert.clone()).collect();
        let intake = m.signer.resolve()?;
        let source = m.keys.open()?;
        let (source_certs, gpg) = match &source {
            SecretSource::Keys(certs) => (certs.clone(), None),
            SecretSource::Gpg { homedir } => (Vec::new(), Some(homedir.clone())),
        };
        Ok(Context {
            store,
            opener: Opener::new(source, intake.clone()),
            source_certs,
            gpg,
            keyring,
            maintainers,
            intake,
            fallback_policy: m.policy,
        })
    }

    pub(super) fn read(&self, id: &ReportId) -> Result<Case> {
        let signers = Signers {
            maintainers: &self.maintainers,
            intake: self.intake.as_ref(),
        };
        Ok(Case::read(self.store.as_ref(), &self.opener, &signers, id)?)
    }

    /// An ID this store does not hold is refused (with the same message as
    /// reading it) before anything is sent to an intake.
    fn refuse_unknown(&self, id: &ReportId) -> Result<()> {
        if !self.store.contains(id)? {
            self.read(id)?;
        }
        Ok(())
    }

    /// The names of every event stored here for `id`.
    fn event_names(&self, id: &ReportId) -> Result<Vec<String>> {
        Ok(self.store.events(id)?.into_iter().map(|e| e.name).collect())
    }

    /// Computes the case status of `id` from every event stored here,
    /// signs it as `author` and keeps it beside the report (the intake
    /// gets it with the events).
    fn record_status(&self, id: &ReportId, author: &Author, clock: Clock) -> Result<()> {
        let case = self.read(id)?;
        let names = self.event_names(id)?;
        let status = CaseStatus::of(&case, &names, &self.fallback_policy, clock.now());
        let signed = status.sign(author)?;
        self.store.set_status(id, &signed, &|_| true)?;
        Ok(())
    }

    /// The signed status of `case` once `event` (not stored yet) is added.
    fn status_after(
        &self,
        case: &Case,
        event: &Event,
        author: &Author,
        clock: Clock,
    ) -> Result<Vec<u8>> {
        let id = &case.manifest.id;
        let mut names = self.event_names(id)?;
        names.push(event.event.file_name());
        let state = case.state_after(event);
        let status = CaseStatus::in_state(case, &state, &names, &self.fallback_policy, clock.now());
        Ok(status.sign(author)?)
    }

    /// Whether the status kept here names every event stored here.
    fn status_is_current(&self, id: &ReportId) -> Result<bool> {
        let names = self.event_names(id)?;
        Ok(self
            .store
            .status(id)?
            .and_then(|s| embargo::case::status::read_stored(&s, id))
            .is_some_and(|s| {
                s.events.len() == names.len() && s.covers(names.iter().map(String::as_str))
            }))
    }

    /// Who signs: the `--key` certificate, or gpg's signing key.
    fn author(&self) -> Result<Author> {
        if let Some(homedir) = &self.gpg {
            let fingerprint = embargo::case::sealed::gpg_signing_key(homedir.as_deref())?;
            return Ok(Author::Gpg {
                homedir: homedir.clone(),
                fingerprint,
            });
        }
        let cert = self
            .source_certs
            .first()
            .cloned()
            .ok_or_else(|| anyhow!("no secret key to sign with: give --key FILE or --gpg"))?;
        Ok(Author::Key(Box::new(cert)))
    }
}

/// The maintainers events are sealed to and signed by.
fn maintainer_keyring(root: &Path, keys_dir: Option<&Path>, clock: Clock) -> Result<Keyring> {
    reveal::maintainer_keyring(root, keys_dir, clock)?.ok_or_else(|| {
        anyhow!(
            "no maintainer certificates: give -c FILE (the intake's configuration, for its keys_dir), or fetch once so that the store holds the intake's keys"
        )
    })
}

fn show(args: &CaseArgs, json: bool, clock: Clock, out: &Output) -> Result<ExitCode> {
    let id = report_id(&args.id)?;
    let ctx = Context::open(&args.reveal, out, clock)?;
    ctx.refuse_unknown(&id)?;
    // The others' events first, so the timeline is the team's.
    if let Some(intake) = intake_of(&args.intake)? {
        exchange(&intake, &ctx, &id, out);
    }
    let case = ctx.read(&id)?;
    let now = clock.now();
    let obligations = case.obligations(&ctx.fallback_policy, now);
    if json {
        out.data(show_json(&case, &obligations));
        return Ok(ExitCode::SUCCESS);
    }
    let m = &case.manifest;
    let mut text = format!(
        "Report {}  received {}  severity {}\nTitle: {}\nState: {}\n",
        m.id,
        m.received_at,
        case.state.severity(m.report.severity),
        one_line(&m.report.title, 200),
        case.state.stage.as_str()
    );
    if let Some(since) = case.state.reply_waiting {
        text.push_str(&format!(
            "{}: the reporter wrote on {} and no maintainer has answered yet (`embargo case reply {}`)\n",
            super::list::REPLY_WAITING,
            rfc3339(since),
            m.id
        ));
    }
    if obligations.is_empty() {
        text.push_str("Due: nothing\n");
    }
    for o in &obligations {
        text.push_str(&format!(
            "Due: {} by {}{}\n",
            o.what.as_str().replace('_', " "),
            rfc3339(o.due),
            if o.overdue { " OVERDUE" } else { "" }
        ));
    }
    text.push_str("Timeline:\n");
    let fetched: Vec<String> = ctx.store.files(&id)?.into_iter().map(|f| f.name).collect();
    for e in &case.events {
        text.push_str(&timeline_line(e, &ctx.maintainers, &fetched));
    }
    out.data_raw(&text);
    Ok(ExitCode::SUCCESS)
}

/// `case files`: every follow-up file of the case's verified reporter
/// messages, decrypted and checked, into `dir`.
fn files(
    id: &str,
    opts: &RevealOpts,
    intake: &IntakeOpts,
    dir: Option<std::path::PathBuf>,
    clock: Clock,
    out: &Output,
) -> Result<ExitCode> {
    let id = report_id(id)?;
    let dir = super::out_dir(dir)?;
    let ctx = Context::open(opts, out, clock)?;
    ctx.refuse_unknown(&id)?;
    // The intake may hold files (and messages) not fetched yet.
    if let Some(intake) = intake_of(intake)? {
        exchange(&intake, &ctx, &id, out);
    }
    let case = ctx.read(&id)?;
    let saved = reveal::files::save_files(
        ctx.store.as_ref(),
        &ctx.opener,
        &case,
        &dir,
        crate::output::interrupted,
        &out.progress(),
    )?;
    if saved.is_empty() {
        let why = if ctx.intake.is_none() {
            " (reporter messages are signed by the intake: give its certificate with --signer, or fetch once so that the store holds it)"
        } else {
            ""
        };
        out.note(format_args!(
            "report {id} has no follow-up files in verified reporter messages{why}"
        ));
        return Ok(ExitCode::SUCCESS);
    }
    for file in &saved {
        out.data(file.path.display());
    }
    out.note(format_args!(
        "{} follow-up file(s) of report {id} written to {}: each matched the size and SHA-256 in its intake-signed reporter message; open them with care",
        saved.len(),
        dir.display()
    ));
    Ok(ExitCode::SUCCESS)
}

fn author_name(fpr: &str, maintainers: &[openpgp::Cert]) -> String {
    maintainers
        .iter()
        .find(|c| c.fingerprint().to_hex().eq_ignore_ascii_case(fpr))
        .and_then(|c| c.userids().next().map(|u| u.userid().to_string()))
        .map(|u| one_line(&u, 80))
        .unwrap_or_else(|| fpr.to_owned())
}

/// One event of the timeline; `fetched` names the follow-up files the
/// local store holds.
fn timeline_line(e: &Opened, maintainers: &[openpgp::Cert], fetched: &[String]) -> String {
    match e {
        Opened::Unverifiable { name, why } => {
            format!(
                "  UNVERIFIABLE {name}: {} (not counted)\n",
                one_line(why, 200)
            )
        }
        Opened::Verified(e) => {
            // Only the intake key signs one (`open_event` checks): it holds
            // what the reporter sent through the status page.
            let author = if e.kind == Kind::ReporterMessage {
                "the reporter, through the intake".to_owned()
            } else {
                author_name(&e.author, maintainers)
            };
            let mut line = format!(
                "  {}  {}  by {}{}\n",
                e.at,
                e.kind.as_str(),
                author,
                if e.visible_to_reporter {
                    "  (reporter sees it)"
                } else {
                    ""
                }
            );
            if let Some(msg) = &e.message {
                for l in msg.lines() {
                    line.push_str(&format!("      {}\n", one_line(l, MESSAGE_LINE_CHARS)));
                }
            }
            if e.kind == Kind::ReporterMessage {
                for (n, a) in e.attachments.iter().enumerate() {
                    let fallback = format!("file-{:03}", n + 1);
                    line.push_str(&format!(
                        "      file: {} ({}){}\n",
                        sanitize(&a.name, &fallback),
                        crate::output::human_size(a.size),
                        if fetched.contains(&a.file) {
                            ""
                        } else {
                            "  not fetched yet"
                        }
                    ));
                }
            }
            line
        }
    }
}

fn show_json(case: &Case, obligations: &[embargo::case::Obligation]) -> String {
    let events: Vec<serde_json::Value> = case
        .events
        .iter()
        .map(|o| match o {
            Opened::Verified(e) => serde_json::json!({ "verified": true, "event": e }),
            Opened::Unverifiable { name, why } => {
                serde_json::json!({ "verified": false, "name": name, "why": why })
            }
        })
        .collect();
    let due: Vec<serde_json::Value> = obligations
        .iter()
        .map(|o| serde_json::json!({ "what": o.what, "due": rfc3339(o.due), "overdue": o.overdue }))
        .collect();
    let m = &case.manifest;
    serde_json::to_string_pretty(&serde_json::json!({
        "id": m.id,
        "title": m.report.title,
        "received_at": m.received_at,
        "severity": case.state.severity(m.report.severity),
        "state": case.state.stage,
        "reply_waiting": case.state.reply_waiting.map(rfc3339),
        "due": due,
        "events": events,
    }))
    .unwrap_or_default()
}
