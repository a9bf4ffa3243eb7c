//! A TCP listener whose connections can be cut at will, so the fake can play an unreachable host
//! ([`super::FakeMode::DropConnections`]): new connections are closed on accept and existing keep-alive
//! connections fail on their next read or write. Everything else is plain TCP.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

pub(crate) struct CuttableListener {
    pub(crate) inner: TcpListener,
    /// Shared with the fake's state; true while connections must be dropped.
    pub(crate) cut: Arc<AtomicBool>,
}

impl axum::serve::Listener for CuttableListener {
    type Io = CuttableStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    if self.cut.load(Ordering::SeqCst) {
                        // Dropping the stream closes it before a single byte is answered.
                        drop(stream);
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    return (CuttableStream { inner: stream, cut: self.cut.clone() }, addr);
                }
                Err(e) => {
                    // Accept errors (such as running out of file descriptors) are transient; wait a little.
                    tracing::warn!(error = %e, "fake klaviyo accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

pub(crate) struct CuttableStream {
    inner: TcpStream,
    /// True while the fake drops connections; checked on every read and write.
    cut: Arc<AtomicBool>,
}

impl CuttableStream {
    fn check(&self) -> io::Result<()> {
        if self.cut.load(Ordering::SeqCst) {
            Err(io::Error::new(io::ErrorKind::ConnectionReset, "fake klaviyo drops connections"))
        } else {
            Ok(())
        }
    }
}

impl AsyncRead for CuttableStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Err(e) = self.check() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for CuttableStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if let Err(e) = self.check() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
