//! The wire observer on turmoil: [`TappedReader`] and [`TappedWriter`] wrap a connection's halves
//! at one host and hand every byte that passes, in order, to one shared
//! `EndWatch` (`sim/src/watch.rs`), which checks the rules (no block to a peer we choke unless
//! allowed fast; requests in flight under the cap). A breach goes to the engine's observer
//! callback. The taps sit between the driver and the paced socket, so they see exactly what the
//! driver wrote and read.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::watch::{Breach, EndWatch};

/// Where a host's taps report: the rule breaches, and a count of blocks seen (proof they read).
#[derive(Clone)]
pub struct Observer {
    /// Called with the words of each breach (without the host's name).
    pub report: Arc<dyn Fn(String) + Send + Sync>,
    /// Blocks (and rejects) seen arriving, over every connection of every host.
    pub blocks: Arc<AtomicU64>,
    /// Most requests in flight to one peer.
    pub cap: usize,
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observer").field("cap", &self.cap).finish()
    }
}

/// One connection's observed state, shared by its two halves.
struct Tap {
    end: EndWatch,
    observer: Observer,
    remote: std::net::SocketAddr,
}

/// Wraps both halves of a connection to `remote`; without an observer they pass through.
pub fn tap<R, W>(
    reader: R,
    writer: W,
    remote: std::net::SocketAddr,
    observer: Option<&Observer>,
) -> (TappedReader<R>, TappedWriter<W>) {
    let tap = observer.map(|o| {
        Arc::new(Mutex::new(Tap {
            end: EndWatch::default(),
            observer: o.clone(),
            remote,
        }))
    });
    (
        TappedReader {
            inner: reader,
            tap: tap.clone(),
        },
        TappedWriter { inner: writer, tap },
    )
}

fn lock(tap: &Mutex<Tap>) -> std::sync::MutexGuard<'_, Tap> {
    tap.lock().unwrap_or_else(|e| e.into_inner())
}

/// A read half whose bytes the observer sees as they are handed to the driver.
pub struct TappedReader<R> {
    inner: R,
    tap: Option<Arc<Mutex<Tap>>>,
}

impl<R: AsyncRead + Unpin> AsyncRead for TappedReader<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let (Poll::Ready(Ok(())), Some(tap)) = (&result, &this.tap) {
            let mut t = lock(tap);
            let seen = t.end.received(&buf.filled()[before..]);
            t.observer.blocks.fetch_add(seen, Ordering::Relaxed);
        }
        result
    }
}

/// A write half whose bytes the observer sees as the socket accepts them.
pub struct TappedWriter<W> {
    inner: W,
    tap: Option<Arc<Mutex<Tap>>>,
}

impl<W: AsyncWrite + Unpin> AsyncWrite for TappedWriter<W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let (Poll::Ready(Ok(n)), Some(tap)) = (&result, &this.tap) {
            let mut t = lock(tap);
            let t = &mut *t;
            let (cap, remote) = (t.observer.cap, t.remote);
            let report = t.observer.report.clone();
            t.end.sent(&buf[..*n], cap, &mut |_, _| {}, &mut |b| {
                report(match b {
                    Breach::BlockWhileChoking { piece } => format!(
                        "sent a block of piece {piece} to {remote}, which it chokes, outside the allowed-fast set"
                    ),
                    Breach::TooManyRequests { in_flight } => format!(
                        "has {in_flight} requests in flight to {remote}, over the cap of {cap}"
                    ),
                });
            });
        }
        result
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
