//! `embargo seal`: a report from input JSON and files, sealed like one
//! that came through the API; prints the ID, and the reply code once.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Result, anyhow};

use embargo::clock::Clock;
use embargo::station::{Recovery, Station};

use super::load_config;
use crate::output::Output;

pub fn run(
    config: Option<&Path>,
    report: &Path,
    attachments: &[PathBuf],
    clock: Clock,
    out: &Output,
) -> Result<ExitCode> {
    let config = load_config(config)?;
    let json = std::fs::read(report).map_err(|e| {
        anyhow!(
            "cannot read the report file {}: {e}; check the path given with --report",
            report.display()
        )
    })?;
    // Without a usable key nothing is sealed: fail before reading further.
    let sealing = Station::open(config, clock, Recovery::RemoveStale)?.sealing()?;
    let finished = sealing.seal_files(&json, attachments)?;
    out.data(&finished.sealed.id);
    if let Some(code) = &finished.reply_code {
        out.note(format_args!(
            "reply code of {} (give it to the reporter; it is shown only this once and is the only way to read replies on the status page): {}",
            finished.sealed.id,
            code.display().as_str()
        ));
    }
    Ok(ExitCode::SUCCESS)
}
