//! Connections with a stall deadline: a client that keeps the server
//! waiting (on a read it should send, or a response it should take) for
//! longer than [`STALL_TIMEOUT`] is dropped. Waiting on the sealer does
//! not count: the clock runs only while the socket itself blocks.
//!
//! At most `[limits] max_connections` connections are served at once, and
//! at most `max_connections_per_peer` from one peer address (proxies in
//! `proxy_peers` aside, see [`super::peers`]); one more is answered `503`
//! with `Retry-After` and closed, so a flood of connections costs the
//! server no more than that many file descriptors, never the ones it needs
//! to finish the uploads it took, and one peer cannot take them all.
//!
//! [`serve`] runs hyper on these connections with the header read timeout
//! (`[limits] header_read_timeout`), which the stall deadline alone cannot
//! give: a client trickling a header byte a minute is never stalled.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::serve::Listener;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

use super::peers::{PeerSlot, PeerSlots};

/// How long a connection may block on its client before it is closed:
/// idle keep-alive connections, stalled headers or bodies, unread responses.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// The peer of a connection, for the in-memory rate limiter only.
#[derive(Clone, Copy, Debug)]
pub struct PeerAddr(pub SocketAddr);

/// What a connection over the limit is told before it is closed.
const BUSY_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Retry-After: 10\r\n\
Connection: close\r\n\
Content-Length: 66\r\n\
\r\n\
The server has too many connections; try again in a few seconds.\r\n";
/// What a connection over its peer's limit is told before it is closed.
const PEER_BUSY_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Retry-After: 10\r\n\
Connection: close\r\n\
Content-Length: 88\r\n\
\r\n\
Your address has too many connections open; close some and try again in a few seconds.\r\n";
/// Connections over the limit that are being answered at once; beyond
/// these, one is closed without an answer.
const BUSY_ANSWERS: usize = 64;
/// How long an over-limit connection may take to send its request before
/// the busy answer (reading it first lets the client see the answer
/// instead of a connection reset).
const BUSY_LINGER: Duration = Duration::from_millis(500);

/// File descriptors one upload may hold besides its connection: the
/// staging directory's lock, the part being written, a directory being
/// synced, one spare.
const FDS_PER_UPLOAD: u64 = 4;
/// Descriptors kept for everything else: the listeners, logs, store reads,
/// key reloads, the mailbox poller, notifications.
const FDS_RESERVED: u64 = 64;

/// How many connections to serve at once: `max_connections`, or fewer when
/// the open-file limit cannot hold them next to every upload's files. The
/// soft limit is raised toward the hard one first when it is too low.
pub fn connection_limit(limits: &crate::config::Limits) -> usize {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let others =
        limits.max_concurrent_uploads as u64 * FDS_PER_UPLOAD + FDS_RESERVED + BUSY_ANSWERS as u64;
    let wanted = limits.max_connections as u64 + others;
    let mut limit = getrlimit(Resource::Nofile);
    let soft = limit.current.unwrap_or(u64::MAX);
    if soft < wanted {
        let raised = limit.maximum.map_or(wanted, |hard| hard.min(wanted));
        if raised > soft {
            limit.current = Some(raised);
            if setrlimit(Resource::Nofile, limit).is_err() {
                limit.current = Some(soft);
            }
        }
    }
    let soft = limit.current.unwrap_or(u64::MAX);
    if soft >= wanted {
        return limits.max_connections;
    }
    let fit = soft.saturating_sub(others).max(8) as usize;
    tracing::warn!(
        "the open-file limit ({soft}) leaves room for {fit} connections, not max_connections = {}; raise it (LimitNOFILE= in the systemd unit, or ulimit -n) or lower [limits]",
        limits.max_connections
    );
    fit.min(limits.max_connections)
}

/// A TCP listener whose connections carry the stall deadline, with a bound
/// on how many are open at once.
pub struct StallingListener {
    inner: TcpListener,
    timeout: Duration,
    slots: Arc<Semaphore>,
    per_peer: Arc<PeerSlots>,
    busy: Arc<Semaphore>,
    on_shed: Box<dyn Fn() + Send>,
}

impl StallingListener {
    /// `max_connections` bounds the connections served at once, `per_peer`
    /// those of each peer; `on_shed` is called for each one turned away.
    pub fn new(
        inner: TcpListener,
        timeout: Duration,
        max_connections: usize,
        per_peer: Arc<PeerSlots>,
        on_shed: impl Fn() + Send + 'static,
    ) -> StallingListener {
        StallingListener {
            inner,
            timeout,
            slots: Arc::new(Semaphore::new(max_connections.max(1))),
            per_peer,
            busy: Arc::new(Semaphore::new(BUSY_ANSWERS)),
            on_shed: Box::new(on_shed),
        }
    }

    /// Turns a connection away: answered `response` while fewer than
    /// [`BUSY_ANSWERS`] are being answered, else closed at once.
    fn shed(&self, io: TcpStream, response: &'static [u8]) {
        (self.on_shed)();
        if let Ok(permit) = self.busy.clone().try_acquire_owned() {
            tokio::spawn(answer_busy(io, response, permit));
        }
    }
}

impl Listener for StallingListener {
    type Io = StallGuard<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (io, addr) = Listener::accept(&mut self.inner).await;
            let _ = io.set_nodelay(true);
            let Some(peer_slot) = self.per_peer.try_take(addr.ip()) else {
                self.shed(io, PEER_BUSY_RESPONSE);
                continue;
            };
            match self.slots.clone().try_acquire_owned() {
                Ok(slot) => {
                    let mut guard = StallGuard::new(io, self.timeout);
                    guard.slot = Some(slot);
                    guard.peer_slot = Some(peer_slot);
                    return (guard, addr);
                }
                Err(_) => self.shed(io, BUSY_RESPONSE),
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Listener::local_addr(&self.inner)
    }
}

/// Serves `app` on `listener` until `shutdown` completes, each connection
/// with its peer address (as `ConnectInfo<PeerAddr>`) and with hyper's
/// header read timeout; then lets the connections finish what they are
/// doing (idle ones close at once) for up to `grace`. Returns `false`
/// when some were still running after `grace`.
pub async fn serve(
    mut listener: StallingListener,
    app: axum::Router,
    header_read_timeout: Duration,
    grace: Duration,
    shutdown: impl Future<Output = ()>,
) -> bool {
    use axum::extract::ConnectInfo;
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower::ServiceExt;

    let stop = tokio_util::sync::CancellationToken::new();
    // Every connection task holds a receiver; `closed` means all ended.
    let (open_tx, open_rx) = tokio::sync::watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (io, addr) = tokio::select! {
            accepted = Listener::accept(&mut listener) => accepted,
            () = &mut shutdown => break,
        };
        let app = app.clone();
        let service = hyper::service::service_fn(move |request: hyper::Request<_>| {
            let mut request = request.map(axum::body::Body::new);
            request.extensions_mut().insert(ConnectInfo(PeerAddr(addr)));
            app.clone().oneshot(request)
        });
        let stop = stop.clone();
        let open = open_rx.clone();
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_read_timeout);
            let connection = builder.serve_connection(TokioIo::new(io), service);
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                () = stop.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
            drop(open);
        });
    }
    drop(listener);
    tracing::info!("shutting down: finishing uploads in flight");
    stop.cancel();
    drop(open_rx);
    tokio::time::timeout(grace, open_tx.closed()).await.is_ok()
}

/// Answers 503 on a connection over the limit: reads the request head for
/// a moment, writes the answer, and reads a little more before closing, so
/// that closing with unread bytes does not reset the connection under the
/// answer.
async fn answer_busy(mut io: TcpStream, response: &'static [u8], _permit: OwnedSemaphorePermit) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = [0u8; 4096];
    let mut head = Vec::new();
    let _ = tokio::time::timeout(BUSY_LINGER, async {
        while let Ok(n) = io.read(&mut buf).await {
            head.extend_from_slice(&buf[..n]);
            if n == 0 || head.len() > 64 * 1024 || head.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    })
    .await;
    let _ = tokio::time::timeout(BUSY_LINGER, async {
        io.write_all(response).await?;
        io.shutdown().await?;
        let mut drained = 0;
        while drained < 1024 * 1024 {
            match io.read(&mut buf).await? {
                0 => break,
                n => drained += n,
            }
        }
        io::Result::Ok(())
    })
    .await;
}

/// An IO object that fails with `TimedOut` when a read or write has been
/// pending for longer than its timeout.
pub struct StallGuard<T> {
    io: T,
    timeout: Duration,
    read_stall: Option<Pin<Box<Sleep>>>,
    write_stall: Option<Pin<Box<Sleep>>>,
    /// The connection's place under `max_connections`, freed on drop.
    slot: Option<OwnedSemaphorePermit>,
    /// Its place under `max_connections_per_peer`, freed on drop.
    peer_slot: Option<PeerSlot>,
}

impl<T> StallGuard<T> {
    pub fn new(io: T, timeout: Duration) -> StallGuard<T> {
        StallGuard {
            io,
            timeout,
            read_stall: None,
            write_stall: None,
            slot: None,
            peer_slot: None,
        }
    }
}

/// Passes `poll` through, clearing the deadline in `slot` when it is ready;
/// a pending poll arms the deadline and fails with `TimedOut` once it passed.
fn guard<R>(
    poll: Poll<io::Result<R>>,
    slot: &mut Option<Pin<Box<Sleep>>>,
    timeout: Duration,
    cx: &mut Context<'_>,
) -> Poll<io::Result<R>> {
    if poll.is_ready() {
        *slot = None;
        return poll;
    }
    let sleep =
        slot.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(Instant::now() + timeout)));
    if sleep.as_mut().poll(cx).is_ready() {
        Poll::Ready(Err(timed_out()))
    } else {
        Poll::Pending
    }
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "the client stalled")
}

impl<T: AsyncRead + Unpin> AsyncRead for StallGuard<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let poll = Pin::new(&mut this.io).poll_read(cx, buf);
        guard(poll, &mut this.read_stall, this.timeout, cx)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for StallGuard<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let poll = Pin::new(&mut this.io).poll_write(cx, buf);
        guard(poll, &mut this.write_stall, this.timeout, cx)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let poll = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        guard(poll, &mut this.write_stall, this.timeout, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn the_busy_answers_are_well_formed() {
        for response in [BUSY_RESPONSE, PEER_BUSY_RESPONSE] {
            busy_answer_is_well_formed(response);
        }
    }

    fn busy_answer_is_well_formed(response: &[u8]) {
        let text = std::str::from_utf8(response).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(length, body.len());
        assert!(head.starts_with("HTTP/1.1 503 "));
    }

    #[tokio::test]
    async fn a_stalled_read_times_out_and_progress_resets_the_clock() {
        let (client, server) = tokio::io::duplex(64);
        let mut guarded = StallGuard::new(server, Duration::from_millis(400));
        let mut client = client;
        let writer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            client.write_all(b"a").await.unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
            client.write_all(b"b").await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(client);
        });
        let mut byte = [0u8; 1];
        guarded.read_exact(&mut byte).await.unwrap();
        guarded.read_exact(&mut byte).await.unwrap();
        assert_eq!(&byte, b"b");
        let started = std::time::Instant::now();
        let err = guarded.read_exact(&mut byte).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(2));
        writer.abort();
    }

    #[tokio::test]
    async fn a_write_the_client_never_reads_times_out() {
        let (client, server) = tokio::io::duplex(64);
        let mut guarded = StallGuard::new(server, Duration::from_millis(300));
        let started = std::time::Instant::now();
        let err = tokio::time::timeout(Duration::from_secs(5), guarded.write_all(&[0u8; 4096]))
            .await
            .expect("the guard must end the stalled write, not hang")
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(300));
        drop(client);
    }
}
