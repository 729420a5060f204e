//! The Maildir source: a message is claimed by renaming it from `new/` to
//! `cur/`, sealed, then unlinked and the directory fsynced. Whatever is in
//! `cur/` when the poller starts (claimed by a run that crashed) is sealed
//! again, which maps it to the committed report by its content-derived ID.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use zeroize::Zeroizing;

use super::{Context, MailboxError, Outcome};
use crate::config::Mailbox;

pub(super) async fn run(
    ctx: &mut Context,
    mailbox: &Mailbox,
    once: bool,
) -> Result<(), MailboxError> {
    let root = PathBuf::from(&mailbox.folder);
    for sub in ["new", "cur"] {
        let dir = root.join(sub);
        if !dir.is_dir() {
            return Err(MailboxError::Maildir {
                path: dir,
                source: io::Error::new(
                    io::ErrorKind::NotFound,
                    "not a directory: [mailbox] folder must be a Maildir (with new/ and cur/)",
                ),
            });
        }
    }
    let poll = mailbox.poll_interval.0.max(Duration::from_secs(1));
    // Messages left for being too large: warned about and counted once.
    let mut left = HashSet::new();
    loop {
        drain(ctx, &root, &mut left).await?;
        if ctx.shutdown.is_cancelled() {
            return Ok(());
        }
        ctx.health.drained();
        if once {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            _ = ctx.shutdown.cancelled() => return Ok(()),
        }
    }
}

/// Seals and removes every message in `cur/` (leftover claims) and `new/`,
/// except those too large (remembered in `left`).
async fn drain(
    ctx: &mut Context,
    root: &Path,
    left: &mut HashSet<PathBuf>,
) -> Result<(), MailboxError> {
    let (limit, setting) = ctx.mail_limit();
    let cur = root.join("cur");
    loop {
        ctx.refresh_keys().await?;
        let mut pending = Vec::new();
        for name in list(&cur)? {
            if !is_trashed(&name) {
                pending.push(cur.join(&name));
            }
        }
        for name in list(&root.join("new"))? {
            pending.push(root.join("new").join(name));
        }
        // Forget what is gone, so the set stays as small as the Maildir.
        left.retain(|p| pending.contains(p));
        pending.retain(|p| !left.contains(p));
        if let Some(m) = &ctx.links.metrics {
            m.set_poller_backlog(pending.len() as u64);
        }
        let mut progress = false;
        for path in pending {
            if ctx.shutdown.is_cancelled() {
                return Ok(());
            }
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let size = match fs::metadata(&path) {
                Ok(m) => m.len(),
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(source) => return Err(MailboxError::Maildir { path, source }),
            };
            if size > limit {
                tracing::warn!(
                    file = %name,
                    size,
                    limit,
                    "message larger than {setting}: left in the Maildir; raise the limit to seal it, or remove it"
                );
                ctx.left_oversized();
                left.insert(path);
                continue;
            }
            let claimed = if path.parent() == Some(cur.as_path()) {
                path
            } else {
                let target = cur.join(claimed_name(&name));
                match fs::rename(&path, &target) {
                    Ok(()) => target,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(source) => return Err(MailboxError::Maildir { path, source }),
                }
            };
            let raw = match fs::read(&claimed) {
                Ok(bytes) => Zeroizing::new(bytes),
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(source) => {
                    return Err(MailboxError::Maildir {
                        path: claimed,
                        source,
                    });
                }
            };
            let (outcome, facts) = ctx.seal(raw).await?;
            match &outcome {
                Outcome::Sealed(id) => tracing::info!(file = %name, id = %id, "sealed"),
                Outcome::AlreadySealed(id) => {
                    tracing::info!(file = %name, id = %id, "already sealed earlier; removing the message")
                }
            }
            let dir = cur.clone();
            tokio::task::spawn_blocking(move || unlink_durably(&claimed, &dir))
                .await
                .map_err(|e| MailboxError::Task(e.to_string()))??;
            ctx.after_removal(&outcome, &facts).await;
            progress = true;
        }
        if !progress {
            return Ok(());
        }
    }
}

/// File names in `dir`, skipping dot files.
fn list(dir: &Path) -> Result<Vec<String>, MailboxError> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map_err(|source| MailboxError::Maildir {
            path: dir.to_owned(),
            source,
        })?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    Ok(names)
}

/// The `cur/` name of a message from `new/` (Maildir info `:2,`, no flags).
fn claimed_name(name: &str) -> String {
    if name.contains(":2,") {
        name.to_string()
    } else {
        format!("{name}:2,")
    }
}

/// Whether a `cur/` message carries the Maildir "trashed" flag (`T`):
/// another client deleted it, so it is not a report to seal.
fn is_trashed(name: &str) -> bool {
    name.rsplit_once(":2,")
        .is_some_and(|(_, flags)| flags.contains('T'))
}

fn unlink_durably(path: &Path, dir: &Path) -> Result<(), MailboxError> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(MailboxError::Maildir {
                path: path.to_owned(),
                source,
            });
        }
    }
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| MailboxError::Maildir {
            path: dir.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maildir_names() {
        assert_eq!(claimed_name("123.M1P2.host"), "123.M1P2.host:2,");
        assert_eq!(claimed_name("123.host:2,S"), "123.host:2,S");
        assert!(is_trashed("1.host:2,ST"));
        assert!(!is_trashed("1.host:2,S"));
        assert!(!is_trashed("1.hosT"));
    }
}
