//! `embargo serve`, `embargo poll` and `embargo demo`: the long-running
//! commands, started by the library's server module; this only announces.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;

use embargo::clock::Clock;
use embargo::server::{self, Bound};

use super::load_config;
use crate::output::Output;

/// `embargo serve`: until SIGTERM.
pub fn serve(config: Option<&Path>, clock: Clock, out: &Output) -> Result<ExitCode> {
    let config = load_config(config)?;
    server::serve(config, clock, |bound| announce(out, &bound))?;
    Ok(ExitCode::SUCCESS)
}

/// `embargo poll`: until SIGTERM, or until the mailbox is drained with `--once`.
pub fn poll(config: Option<&Path>, clock: Clock, once: bool) -> Result<ExitCode> {
    let config = load_config(config)?;
    server::poll(config, clock, once)?;
    Ok(ExitCode::SUCCESS)
}

/// `embargo demo`: serves `./demo/` on loopback and says how to try it.
pub fn demo(clock: Clock, out: &Output) -> Result<ExitCode> {
    let dir = Path::new("demo");
    let shown = dir.display().to_string();
    let command = server::demo_decrypt_command(dir);
    server::demo(dir, clock, |bound| {
        out.data(format_args!(
            "embargo demo: a throwaway DEMO maintainer key is in {shown}/ (never use it for real reports).\n\n  \
             Report form:  http://{addr}/\n\n\
             Submit a report with the form, note the ID on the receipt, then decrypt it\n\
             (it appears under {shown}/revealed/ID/):\n\n  \
             embargo {command}\n  \
             (from a checkout: cargo run --release -- {command})\n\n\
             Press Ctrl-C to stop.",
            addr = bound.web
        ));
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The lines tests and operators wait for: where the server listens.
fn announce(out: &Output, bound: &Bound) {
    if let Some(metrics) = bound.metrics {
        out.note(format_args!(
            "metrics listening on http://{metrics}/metrics"
        ));
    }
    out.note(format_args!(
        "web intake listening on http://{}/",
        bound.web
    ));
}
