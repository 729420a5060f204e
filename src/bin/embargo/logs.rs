//! Logs go to stderr, filtered by `EMBARGO_LOG`. Servers log at `info` by
//! default (one line per request); one-shot commands only warn.
//!
//! Whatever `EMBARGO_LOG` says, only embargo's own events go below `info`:
//! dependencies trace their I/O (the IMAP client logs the LOGIN line and
//! every fetched message, hyper logs peer addresses), so their debug and
//! trace events are dropped by [`embargo::logging::dependency_clamp`].

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, filter::FilterExt};

use crate::cli::{Cli, Command};
use crate::output::Output;

/// Installs the subscriber for the whole process.
pub fn init(cli: &Cli, out: &Output) {
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
            .with_ansi(out.stderr_colour)
            .with_filter(filter)
            .boxed()
    };
    tracing_subscriber::registry().with(layer).init();
}
