//! The IMAP source: one folder, drained with `UID FETCH BODY.PEEK[]`, sealed
//! messages removed by `UID EXPUNGE` of their UID alone (UIDPLUS) or
//! `UID MOVE`; IDLE when offered, polling otherwise.

use std::collections::{BTreeMap, HashSet};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use async_imap::types::Flag;
use async_imap::{Client, Session};
use futures_util::TryStreamExt;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use zeroize::Zeroizing;

use super::{Context, MailboxError, Outcome, Password};
use crate::config::{Mailbox, Tls};
use crate::id::ReportId;

/// Longest a TCP connect or TLS handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes of a message asked for in one partial fetch: the IMAP client
/// buffers one response whole, so this bounds what it holds besides the
/// poller's own copy.
const FETCH_CHUNK: usize = 1024 * 1024;
/// IDLE is re-issued after this long: servers may drop it after 30 minutes
/// (RFC 2177 §3), so stay well below.
const IDLE_MAX: Duration = Duration::from_secs(25 * 60);

/// A connection, plain (loopback only) or TLS.
#[derive(Debug)]
pub(super) enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

type ImapSession = Session<Conn>;

/// What is done with a message once its report is committed.
enum Removal {
    /// `UID STORE +FLAGS (\Deleted)` then `UID EXPUNGE <uid>` (UIDPLUS).
    Expunge,
    /// `UID MOVE <uid> <folder>` (RFC 6851).
    Move(String),
}

/// Connects, drains the folder, and (unless `once`) waits for more with IDLE
/// or polling, until shutdown.
pub(super) async fn run(
    ctx: &mut Context,
    mailbox: &Mailbox,
    once: bool,
) -> Result<(), MailboxError> {
    let removal = match mailbox.after_sealing.strip_prefix("move:") {
        Some(folder) => Removal::Move(folder.to_string()),
        None => Removal::Expunge,
    };
    let mut session = connect(mailbox).await?;
    let caps = session.capabilities().await?;
    match &removal {
        Removal::Expunge if !caps.has_str("UIDPLUS") => {
            return Err(MailboxError::Capability {
                capability: "UIDPLUS",
                why: "without UID EXPUNGE, deleting a sealed message would also expunge every message another client flagged \\Deleted; embargo refuses (use after_sealing = \"move:FOLDER\" if the server offers MOVE)",
            });
        }
        Removal::Move(_) if !caps.has_str("MOVE") => {
            return Err(MailboxError::Capability {
                capability: "MOVE",
                why: "after_sealing = \"move:…\" needs UID MOVE to move one message atomically; use after_sealing = \"delete\" with a UIDPLUS server",
            });
        }
        _ => {}
    }
    let idle = mailbox.idle && caps.has_str("IDLE");
    drop(caps);
    let selected = session.select(&mailbox.folder).await?;
    tracing::info!(
        uidvalidity = selected.uid_validity,
        idle,
        "mailbox selected"
    );
    let poll = mailbox.poll_interval.0.max(Duration::from_secs(1));
    let mut foreign = HashSet::new();
    loop {
        drain(ctx, &mut session, &removal, &mut foreign).await?;
        if ctx.shutdown.is_cancelled() {
            break;
        }
        ctx.health.drained();
        if once {
            break;
        }
        while session.unsolicited_responses.try_recv().is_ok() {}
        if idle {
            let mut handle = session.idle();
            handle.init().await?;
            let stopped = {
                let (wait, _stop) = handle.wait_with_timeout(poll.min(IDLE_MAX));
                tokio::select! {
                    r = wait => { r?; false }
                    _ = ctx.shutdown.cancelled() => true,
                }
            };
            session = handle.done().await?;
            if stopped {
                break;
            }
        } else {
            tokio::select! {
                _ = tokio::time::sleep(poll) => {}
                _ = ctx.shutdown.cancelled() => break,
            }
            session.noop().await?;
        }
    }
    let _ = session.logout().await;
    Ok(())
}

/// Opens the connection with the configured protection and logs in.
async fn connect(mailbox: &Mailbox) -> Result<ImapSession, MailboxError> {
    let host = mailbox.host.clone().unwrap_or_default();
    let port = mailbox.port;
    let user = mailbox.username.clone().unwrap_or_default();
    let password = match &mailbox.password_file {
        Some(p) => Password::read(p)?,
        None => return Err(MailboxError::Config("password_file is required".into())),
    };
    let io_err = |source: io::Error| MailboxError::Connect {
        host: host.clone(),
        port,
        source,
    };
    let timed_out = || io::Error::new(io::ErrorKind::TimedOut, "timed out");
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host.as_str(), port)))
        .await
        .map_err(|_| io_err(timed_out()))?
        .map_err(io_err)?;
    let client = match mailbox.tls {
        Tls::None => {
            if !super::is_loopback(&host) {
                return Err(MailboxError::Config(format!(
                    "tls = \"none\" is refused for the non-loopback host {host}"
                )));
            }
            greeted(Client::new(Conn::Plain(tcp))).await?
        }
        Tls::Implicit => {
            greeted(Client::new(Conn::Tls(Box::new(
                tls(&host, tcp).await.map_err(io_err)?,
            ))))
            .await?
        }
        Tls::Starttls => {
            let mut plain = greeted(Client::new(tcp)).await?;
            plain.run_command_and_check_ok("STARTTLS", None).await?;
            let tcp = plain.into_inner();
            Client::new(Conn::Tls(Box::new(tls(&host, tcp).await.map_err(io_err)?)))
        }
    };
    client
        .login(&user, password.expose())
        .await
        .map_err(|(source, _)| MailboxError::Login { user, source })
}

/// Reads the server greeting.
async fn greeted<T>(mut client: Client<T>) -> Result<Client<T>, MailboxError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + std::fmt::Debug + Send,
{
    match tokio::time::timeout(CONNECT_TIMEOUT, client.read_response()).await {
        Ok(Ok(Some(_))) => Ok(client),
        Ok(Ok(None)) => Err(MailboxError::Imap(async_imap::error::Error::ConnectionLost)),
        Ok(Err(e)) => Err(MailboxError::Imap(e.into())),
        Err(_) => Err(MailboxError::Imap(
            io::Error::new(io::ErrorKind::TimedOut, "no IMAP greeting").into(),
        )),
    }
}

/// A TLS handshake verified against the Mozilla roots (webpki-roots).
async fn tls(host: &str, tcp: TcpStream) -> io::Result<TlsStream<TcpStream>> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
    )
    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    tokio::time::timeout(
        CONNECT_TIMEOUT,
        TlsConnector::from(Arc::new(config)).connect(name, tcp),
    )
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))?
}

/// One message as listed before fetching.
struct Listed {
    size: Option<u32>,
    deleted: bool,
}

/// UID, size and `\Deleted` flag of every message in the folder.
async fn list_folder(session: &mut ImapSession) -> Result<BTreeMap<u32, Listed>, MailboxError> {
    let mut listed = BTreeMap::new();
    let mut fetches = session.uid_fetch("1:*", "(UID FLAGS RFC822.SIZE)").await?;
    while let Some(f) = fetches.try_next().await? {
        if let Some(uid) = f.uid {
            let deleted = f.flags().any(|fl| fl == Flag::Deleted);
            listed.insert(
                uid,
                Listed {
                    size: f.size,
                    deleted,
                },
            );
        }
    }
    Ok(listed)
}

/// Leaves a message larger than the limit in the mailbox, said once.
fn leave_oversized(
    ctx: &mut Context,
    foreign: &mut HashSet<u32>,
    uid: u32,
    size: u64,
    (limit, setting): (u64, &str),
) {
    tracing::warn!(
        uid,
        size,
        limit,
        "message larger than {setting}: left in the mailbox; raise the limit to seal it, or remove it"
    );
    ctx.left_oversized();
    foreign.insert(uid);
}

/// Seals and removes every message in the folder, until none is left but
/// those it must leave (too large, or another client's `\Deleted`).
async fn drain(
    ctx: &mut Context,
    session: &mut ImapSession,
    removal: &Removal,
    foreign: &mut HashSet<u32>,
) -> Result<(), MailboxError> {
    let (limit, setting) = ctx.mail_limit();
    // UIDs removed in this drain: one seen again was not really removed.
    let mut removed = HashSet::new();
    loop {
        ctx.refresh_keys().await?;
        let uids = session.uid_search("ALL").await?;
        if uids.iter().all(|u| foreign.contains(u)) {
            return Ok(());
        }
        let listed = list_folder(session).await?;
        if let Some(m) = &ctx.links.metrics {
            m.set_poller_backlog(listed.keys().filter(|u| !foreign.contains(u)).count() as u64);
        }
        let mut progress = false;
        for (uid, item) in listed {
            if ctx.shutdown.is_cancelled() {
                return Ok(());
            }
            if foreign.contains(&uid) {
                continue;
            }
            if removed.contains(&uid) {
                tracing::warn!(
                    uid,
                    "the server still lists a message it was told to remove: leaving it"
                );
                foreign.insert(uid);
                continue;
            }
            // Checked before fetching, so a huge message is never read.
            if let Some(size) = item.size.filter(|s| u64::from(*s) > limit) {
                leave_oversized(ctx, foreign, uid, u64::from(size), (limit, setting));
                continue;
            }
            let Some(raw) = fetch(session, uid, item.size, limit).await? else {
                continue;
            };
            if raw.len() as u64 > limit {
                leave_oversized(ctx, foreign, uid, raw.len() as u64, (limit, setting));
                continue;
            }
            if item.deleted {
                // Ours if its report is committed (a crash between STORE and
                // EXPUNGE); otherwise another client's business: leave it.
                let id = ReportId::for_message(ctx.sealing.station.secrets.hmac_secret(), &raw);
                if !ctx.sealing.station.store.contains(&id)? {
                    tracing::info!(
                        uid,
                        "message flagged \\Deleted by another client: left alone"
                    );
                    ctx.summary.left += 1;
                    foreign.insert(uid);
                    continue;
                }
            }
            let (outcome, facts) = ctx.seal(raw).await?;
            match &outcome {
                Outcome::Sealed(id) => tracing::info!(uid, id = %id, "sealed"),
                Outcome::AlreadySealed(id) => {
                    tracing::info!(uid, id = %id, "already sealed earlier; removing the message")
                }
            }
            remove(session, uid, removal).await?;
            removed.insert(uid);
            tracing::info!(uid, id = %outcome.id(), "removed from the mailbox");
            ctx.after_removal(&outcome, &facts).await;
            progress = true;
        }
        if !progress {
            return Ok(());
        }
    }
}

/// The raw bytes of message `uid`, without setting `\Seen`, fetched in
/// [`FETCH_CHUNK`] pieces (`BODY.PEEK[]<offset.length>`) into one buffer
/// sized from `RFC822.SIZE`: the whole message is held once, not also in
/// the IMAP client's response buffer. Stops after `limit` + 1 bytes (the
/// caller leaves such a message); `None` if the message went away.
async fn fetch(
    session: &mut ImapSession,
    uid: u32,
    size: Option<u32>,
    limit: u64,
) -> Result<Option<Zeroizing<Vec<u8>>>, MailboxError> {
    let capacity = size.map_or(0, |s| u64::from(s).min(limit.saturating_add(1)));
    let mut raw = Zeroizing::new(Vec::with_capacity(usize::try_from(capacity).unwrap_or(0)));
    loop {
        let mut chunk = None;
        {
            let query = format!("(UID BODY.PEEK[]<{}.{FETCH_CHUNK}>)", raw.len());
            let mut fetches = session.uid_fetch(uid.to_string(), &query).await?;
            while let Some(f) = fetches.try_next().await? {
                if f.uid == Some(uid)
                    && let Some(body) = f.body()
                {
                    append_wiped(&mut raw, body);
                    chunk = Some(body.len());
                }
            }
        }
        match chunk {
            None => return Ok(None),
            Some(n) if n < FETCH_CHUNK || raw.len() as u64 > limit => return Ok(Some(raw)),
            Some(_) => {}
        }
    }
}

/// Appends `bytes` to `buf`; when it must grow, the old allocation is
/// wiped rather than freed with plaintext in it.
fn append_wiped(buf: &mut Zeroizing<Vec<u8>>, bytes: &[u8]) {
    if buf.capacity() - buf.len() < bytes.len() {
        let mut bigger = Zeroizing::new(Vec::with_capacity(
            (buf.len() + bytes.len()).max(buf.capacity() * 2),
        ));
        bigger.extend_from_slice(buf);
        *buf = bigger;
    }
    buf.extend_from_slice(bytes);
}

/// Removes message `uid` and nothing else.
async fn remove(
    session: &mut ImapSession,
    uid: u32,
    removal: &Removal,
) -> Result<(), MailboxError> {
    match removal {
        Removal::Expunge => {
            {
                let mut updates = session
                    .uid_store(uid.to_string(), "+FLAGS.SILENT (\\Deleted)")
                    .await?;
                while updates.try_next().await?.is_some() {}
            }
            let expunged = session.uid_expunge(uid.to_string()).await?;
            let mut expunged = std::pin::pin!(expunged);
            while expunged.try_next().await?.is_some() {}
        }
        Removal::Move(folder) => session.uid_mv(uid.to_string(), folder).await?,
    }
    Ok(())
}
