//! `embargo seal`: a report from input JSON and files, sealed like one
//! that came through the API; prints the ID.

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
    let sealed = sealing.seal_files(&json, attachments)?;
    out.data(sealed.id);
    Ok(ExitCode::SUCCESS)
}
