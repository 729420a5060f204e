//! `embargo advisory`: the public advisory of a case, drafted from the
//! decrypted report and its verified events (in memory only).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Result, anyhow};

use embargo::advisory::{Facts, Format, Options, draft};
use embargo::clock::Clock;
use embargo::config::Config;

use super::case::{Context, report_id};
use crate::cli::RevealOpts;
use crate::output::Output;

/// What was asked on the command line.
pub struct Request {
    pub id: String,
    pub format: Format,
    pub file: Option<PathBuf>,
    pub force: bool,
    pub include_steps: bool,
    pub introduced: Option<String>,
    pub fixed: Option<String>,
    pub reveal: RevealOpts,
}

pub fn run(r: Request, clock: Clock, out: &Output) -> Result<ExitCode> {
    let id = report_id(&r.id)?;
    let config = r.reveal.config.as_deref().map(Config::load).transpose()?;
    let profile = embargo::reveal::profile::Profile::load()?.unwrap_or_default();
    let ctx = Context::open(&r.reveal, out, clock)?;
    let case = ctx.read(&id)?;
    let events = case.verified();
    let options = Options {
        include_steps: r.include_steps,
        introduced: r.introduced.filter(|v| !v.trim().is_empty()),
        fixed: r.fixed.filter(|v| !v.trim().is_empty()),
        target: profile.advisory.or(config
            .as_ref()
            .map(|c| c.advisory.clone())
            .unwrap_or_default()),
        policy_url: config.and_then(|c| c.policy_url),
    };
    let facts = Facts::gather(&case.manifest, &events, &options, clock.now());
    let done = draft(&facts, r.format)?;
    for note in &done.notes {
        out.note(note);
    }
    match &r.file {
        Some(path) => write_private(path, done.text.as_bytes(), r.force)?,
        None => out.data_raw(&done.text),
    }
    if let Some(command) = &done.command {
        let input = r
            .file
            .as_deref()
            .map_or_else(|| "advisory.json".to_string(), |p| p.display().to_string());
        out.note(format_args!(
            "send it as a draft advisory with: {}",
            command.replace("FILE", &input)
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes `bytes` to a new file of mode 0600; with `force`, replaces an
/// existing one through a temporary file beside it.
fn write_private(path: &Path, bytes: &[u8], force: bool) -> Result<()> {
    let open = |p: &Path| {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(p)
    };
    let target = if force {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        path.with_file_name(format!(".{name}.{:08x}.tmp", rand::random::<u32>()))
    } else {
        path.to_path_buf()
    };
    let mut file = open(&target).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            anyhow!(
                "{} exists: give another --out, or --force to replace it",
                path.display()
            )
        } else {
            anyhow!("cannot create {}: {e}", path.display())
        }
    })?;
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    let placed = written.and_then(|()| {
        if force {
            std::fs::rename(&target, path)
        } else {
            Ok(())
        }
    });
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&target);
        return Err(anyhow!("cannot write {}: {e}", path.display()));
    }
    Ok(())
}
