//! Log filtering shared by every entry point.
//!
//! `EMBARGO_LOG` chooses embargo's own verbosity; dependencies never log
//! below `info`, whatever it says. Their debug and trace output is where
//! secrets and metadata leak: the IMAP client traces the `LOGIN` command
//! with the password and every message it fetches, hyper and rustls trace
//! peer addresses and raw bytes. A directive such as `EMBARGO_LOG=trace`
//! or `EMBARGO_LOG=async_imap=trace` therefore cannot reach them.

use tracing::Level;
use tracing::Metadata;
use tracing_subscriber::filter::{FilterFn, filter_fn};

/// The crate whose events may go below `info`.
const OWN_TARGET: &str = "embargo";

/// A filter that passes embargo's own events at every level and other
/// targets (dependencies, `log` records bridged from them) at `info` and above.
pub fn dependency_clamp() -> FilterFn<fn(&Metadata<'_>) -> bool> {
    filter_fn(allowed as fn(&Metadata<'_>) -> bool)
}

fn allowed(meta: &Metadata<'_>) -> bool {
    *meta.level() <= Level::INFO || is_own(meta.target())
}

/// Whether a target names embargo itself (`embargo` or `embargo::…`).
fn is_own(target: &str) -> bool {
    target
        .strip_prefix(OWN_TARGET)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_embargo_targets_count_as_own() {
        assert!(is_own("embargo"));
        assert!(is_own("embargo::mailbox::imap"));
        assert!(!is_own("embargoed"));
        assert!(!is_own("async_imap::client"));
        assert!(!is_own("hyper::proto::h1::conn"));
        assert!(!is_own(""));
    }
}
