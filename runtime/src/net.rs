//! [`Net`]: the sockets the driver uses, behind a trait so the simulator can supply turmoil's.
//!
//! The tokio implementation ([`TokioNet`]) is for the real CLI. Streams are split into owned read
//! and write halves so a reader task and a writer task can move a connection's bytes independently.

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncWrite};

/// TCP as the driver needs it.
pub trait Net: Clone + Send + Sync + 'static {
    /// The read half of a connection.
    type Reader: AsyncRead + Unpin + Send + 'static;
    /// The write half of a connection.
    type Writer: AsyncWrite + Unpin + Send + 'static;
    /// A listening socket.
    type Listener: Send + 'static;

    /// Opens a TCP connection.
    fn connect(
        &self,
        addr: SocketAddr,
    ) -> impl Future<Output = io::Result<(Self::Reader, Self::Writer)>> + Send;

    /// Listens on `addr` (port 0 picks one).
    fn listen(&self, addr: SocketAddr) -> impl Future<Output = io::Result<Self::Listener>> + Send;

    /// The address a listener is bound to.
    fn local_addr(listener: &Self::Listener) -> io::Result<SocketAddr>;

    /// Waits for the next incoming connection.
    fn accept(
        listener: &mut Self::Listener,
    ) -> impl Future<Output = io::Result<(Self::Reader, Self::Writer, SocketAddr)>> + Send;
}

/// Real sockets through tokio.
#[derive(Clone, Copy, Debug, Default)]
pub struct TokioNet;

impl Net for TokioNet {
    type Reader = tokio::net::tcp::OwnedReadHalf;
    type Writer = tokio::net::tcp::OwnedWriteHalf;
    type Listener = tokio::net::TcpListener;

    async fn connect(&self, addr: SocketAddr) -> io::Result<(Self::Reader, Self::Writer)> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(stream.into_split())
    }

    async fn listen(&self, addr: SocketAddr) -> io::Result<Self::Listener> {
        tokio::net::TcpListener::bind(addr).await
    }

    fn local_addr(listener: &Self::Listener) -> io::Result<SocketAddr> {
        listener.local_addr()
    }

    async fn accept(
        listener: &mut Self::Listener,
    ) -> io::Result<(Self::Reader, Self::Writer, SocketAddr)> {
        let (stream, addr) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let (r, w) = stream.into_split();
        Ok((r, w, addr))
    }
}
