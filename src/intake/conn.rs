//! Connections with a stall deadline: a client that keeps the server
//! waiting (on a read it should send, or a response it should take) for
//! longer than [`STALL_TIMEOUT`] is dropped. Waiting on the sealer does
//! not count: the clock runs only while the socket itself blocks.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};

/// How long a connection may block on its client before it is closed:
/// idle keep-alive connections, stalled headers or bodies, unread responses.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// The peer of a connection, for the in-memory rate limiter only.
#[derive(Clone, Copy, Debug)]
pub struct PeerAddr(pub SocketAddr);

/// A TCP listener whose connections carry the stall deadline.
pub struct StallingListener {
    inner: TcpListener,
    timeout: Duration,
}

impl StallingListener {
    pub fn new(inner: TcpListener, timeout: Duration) -> StallingListener {
        StallingListener { inner, timeout }
    }
}

impl Listener for StallingListener {
    type Io = StallGuard<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = Listener::accept(&mut self.inner).await;
        let _ = io.set_nodelay(true);
        (StallGuard::new(io, self.timeout), addr)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Listener::local_addr(&self.inner)
    }
}

impl Connected<IncomingStream<'_, StallingListener>> for PeerAddr {
    fn connect_info(stream: IncomingStream<'_, StallingListener>) -> Self {
        PeerAddr(*stream.remote_addr())
    }
}

/// An IO object that fails with `TimedOut` when a read or write has been
/// pending for longer than its timeout.
pub struct StallGuard<T> {
    io: T,
    timeout: Duration,
    read_stall: Option<Pin<Box<Sleep>>>,
    write_stall: Option<Pin<Box<Sleep>>>,
}

impl<T> StallGuard<T> {
    pub fn new(io: T, timeout: Duration) -> StallGuard<T> {
        StallGuard {
            io,
            timeout,
            read_stall: None,
            write_stall: None,
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
