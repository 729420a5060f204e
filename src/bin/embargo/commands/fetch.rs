//! `embargo fetch`: complete sealed reports (ciphertext only) from an
//! intake into a local store.

use std::process::ExitCode;

use anyhow::Result;

use embargo::reveal;

use crate::output::Output;

pub fn run(args: reveal::FetchArgs, out: &Output) -> Result<ExitCode> {
    let summary = reveal::fetch(&args, &out.progress())?;
    for id in &summary.fetched {
        out.data(id);
    }
    out.note(format_args!(
        "fetched {} new report(s) ({} bytes); {} already here",
        summary.fetched.len(),
        summary.bytes,
        summary.already_present
    ));
    if summary.events_fetched + summary.events_sent > 0 {
        out.note(format_args!(
            "case events: {} from other maintainers fetched from the intake, {} sent to it",
            summary.events_fetched, summary.events_sent
        ));
    }
    if summary.files_fetched > 0 {
        out.note(format_args!(
            "follow-up files: {} from reporters fetched from the intake ({}); `embargo case show ID` lists them, `embargo case files ID` decrypts them",
            summary.files_fetched,
            crate::output::human_size(summary.files_bytes)
        ));
    }
    if summary.statuses_sent > 0 {
        out.note(format_args!(
            "case statuses: {} sent to the intake",
            summary.statuses_sent
        ));
    }
    for id in &summary.statuses_stale {
        out.note(format_args!(
            "the intake holds events of report {id} that its case status here was not computed from: `embargo case sync {id}` (with your key) computes it again"
        ));
    }
    if summary.shared > 0 {
        out.note(format_args!(
            "shared session keys: {} part(s) brought in line with the intake",
            summary.shared
        ));
    }
    if summary.confirmed > 0 {
        out.note(format_args!(
            "confirmed {} stored report(s) to the intake, which may now delete its copies",
            summary.confirmed
        ));
    }
    // What was fetched is complete and stays; stopping early is still a failure.
    match summary.cap_message() {
        Some(message) => Err(anyhow::anyhow!(message)),
        None => Ok(ExitCode::SUCCESS),
    }
}
