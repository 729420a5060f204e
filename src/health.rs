//! What a service running beside the web intake tells `/healthz`. The
//! server hands the intake a [`ServiceHealth`] for each one (the mailbox
//! poller), so the intake never needs to know what the service is.

/// A background service's health, as shown publicly.
pub trait ServiceHealth: Send + Sync {
    /// Why the service cannot do its work right now, in words fit for a
    /// public page (no paths, host names or server replies); `None` while
    /// it works.
    fn public_problem(&self) -> Option<String>;
}
