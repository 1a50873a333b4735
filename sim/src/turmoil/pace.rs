//! Bandwidth and TCP loss in simulated time, which turmoil does not model: [`Pace`] is one
//! host's uplink and downlink, [`PacedWriter`] and [`PacedReader`] wrap a turmoil TCP stream's
//! halves so every byte the host sends or receives waits its turn on them.
//!
//! A [`Link`] serialises: it is free again at `free_at`, and `n` bytes handed to it finish at
//! `max(now, free_at) + n / rate` (exact in nanoseconds, so the rate holds over a run even though
//! tokio's timers wake on whole milliseconds). A writer reserves its chunk (at most [`CHUNK`]
//! bytes, one block message) and writes it to the socket when the reservation ends (store and
//! forward); it reserves the next only after that, so the connections of a host with data to send
//! take turns (round robin by reservation order). A reader takes what arrived (at most one
//! chunk), reserves it on the downlink, and hands it over when the reservation ends: arrivals are
//! served first come, first served, as in the fast engine.
//!
//! Loss on TCP: turmoil's own fail rate drops segments for good (its TCP has no retransmission),
//! so peer connections never go through it. Instead a chunk is "lost" with the link's loss
//! fraction and then reaches the socket one retransmission timeout late (the RTO doubling while
//! losses repeat), holding up what follows it on that connection; the uplink time it used is not
//! given back.
//!
//! Time is tokio's, which turmoil simulates; a [`Pace`] belongs to one life of one host (tokio
//! instants of a host's earlier runtime mean nothing to its next one). Bounds: a reader holds at
//! most one chunk; a writer at most one reservation.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bt_protocol::rng::Rng;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Most bytes reserved at once: a block message (16 KiB and its 13-byte header).
pub const CHUNK: usize = 16 * 1024 + 13;

/// One direction of a host's access link, `rate` bytes per second.
#[derive(Debug)]
pub struct Link {
    rate: u64,
    free_at: Mutex<Option<Instant>>,
}

impl Link {
    /// A link of `rate_bytes_per_s` (at least 1).
    pub fn new(rate_bytes_per_s: u64) -> Self {
        Link {
            rate: rate_bytes_per_s.max(1),
            free_at: Mutex::new(None),
        }
    }

    /// Reserves the link for `bytes`; returns when they have gone through.
    pub(super) fn reserve(&self, bytes: usize) -> Instant {
        let now = Instant::now();
        let mut free_at = self.free_at.lock().unwrap_or_else(|e| e.into_inner());
        let start = free_at.map_or(now, |f| f.max(now));
        let nanos = (bytes as u128 * 1_000_000_000).div_ceil(u128::from(self.rate));
        let end = start + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
        *free_at = Some(end);
        end
    }
}

/// TCP loss as a delay: see the module docs.
#[derive(Debug)]
pub struct Loss {
    /// Fraction of chunks lost (0 to 0.5, as the scenario bounds it).
    fraction: f64,
    /// The first retransmission timeout.
    rto: Duration,
    rng: Mutex<Rng>,
}

impl Loss {
    /// Chunks lost with `fraction`, resent after `rto` (doubling), drawn from `seed`.
    pub fn new(fraction: f64, rto: Duration, seed: u64) -> Self {
        Loss {
            fraction,
            rto,
            rng: Mutex::new(Rng::new(seed)),
        }
    }

    /// Whether one datagram is lost (drawn from the same stream as the chunks' losses).
    pub(super) fn datagram_lost(&self) -> bool {
        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        (rng.next_u64() as f64) < self.fraction * u64::MAX as f64
    }

    /// The extra delay of one chunk: zero, or the RTOs of its lost transmissions.
    fn delay(&self) -> Duration {
        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        let mut delay = Duration::ZERO;
        let mut rto = self.rto;
        // At most 8 tries: the fraction is at most 0.5, and TCP gives up long before.
        for _ in 0..8 {
            if (rng.next_u64() as f64) >= self.fraction * u64::MAX as f64 {
                break;
            }
            delay += rto;
            rto *= 2;
        }
        delay
    }
}

/// One host's links: what its connections share.
#[derive(Debug, Default)]
pub struct Pace {
    /// The uplink, if limited.
    pub up: Option<Link>,
    /// The downlink, if limited.
    pub down: Option<Link>,
    /// TCP loss on what it sends, if any.
    pub loss: Option<Loss>,
}

impl Pace {
    fn shapes_writes(&self) -> bool {
        self.up.is_some() || self.loss.is_some()
    }
}

/// A stream's write half whose writes wait for the host's uplink (and for loss).
pub struct PacedWriter<W> {
    inner: W,
    pace: Option<std::sync::Arc<Pace>>,
    /// Bytes reserved and not yet written.
    granted: usize,
    wait: Option<Pin<Box<Sleep>>>,
}

impl<W> PacedWriter<W> {
    /// Wraps `inner`; `None` writes at once.
    pub fn new(inner: W, pace: Option<std::sync::Arc<Pace>>) -> Self {
        PacedWriter {
            inner,
            pace: pace.filter(|p| p.shapes_writes()),
            granted: 0,
            wait: None,
        }
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for PacedWriter<W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let Some(pace) = &this.pace else {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        };
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        // At most two rounds: reserve, then write once the reservation ends.
        for _ in 0..2 {
            if let Some(wait) = &mut this.wait {
                ready!(wait.as_mut().poll(cx));
                this.wait = None;
            }
            if this.granted > 0 {
                let n = this.granted.min(buf.len());
                let written = ready!(Pin::new(&mut this.inner).poll_write(cx, &buf[..n]));
                if let Ok(k) = written {
                    this.granted -= k.min(this.granted);
                }
                return Poll::Ready(written);
            }
            let n = buf.len().min(CHUNK);
            let mut at = pace.up.as_ref().map_or_else(Instant::now, |l| l.reserve(n));
            if let Some(loss) = &pace.loss {
                at += loss.delay();
            }
            this.granted = n;
            this.wait = Some(Box::pin(tokio::time::sleep_until(at)));
        }
        // The second round either returned or is waiting on its timer (registered above).
        Poll::Pending
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// A stream's read half whose data waits for the host's downlink.
pub struct PacedReader<R> {
    inner: R,
    pace: Option<std::sync::Arc<Pace>>,
    /// Data taken from the socket, handed over once `wait` ends.
    held: Vec<u8>,
    /// How much of `held` was handed over.
    taken: usize,
    wait: Option<Pin<Box<Sleep>>>,
}

impl<R> PacedReader<R> {
    /// Wraps `inner`; `None` reads at once.
    pub fn new(inner: R, pace: Option<std::sync::Arc<Pace>>) -> Self {
        PacedReader {
            inner,
            pace: pace.filter(|p| p.down.is_some()),
            held: Vec::new(),
            taken: 0,
            wait: None,
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for PacedReader<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some(down) = this.pace.as_ref().and_then(|p| p.down.as_ref()) else {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        };
        // At most two rounds: take what arrived and reserve it, then hand it over.
        for _ in 0..2 {
            if let Some(wait) = &mut this.wait {
                ready!(wait.as_mut().poll(cx));
                this.wait = None;
            }
            if this.taken < this.held.len() {
                let n = (this.held.len() - this.taken).min(buf.remaining());
                buf.put_slice(&this.held[this.taken..this.taken + n]);
                this.taken += n;
                return Poll::Ready(Ok(()));
            }
            this.held.resize(CHUNK, 0);
            this.taken = 0;
            let mut into = ReadBuf::new(&mut this.held);
            let read = Pin::new(&mut this.inner).poll_read(cx, &mut into);
            let n = into.filled().len();
            this.held.truncate(n);
            match read {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                // The end of the stream passes at once.
                Poll::Ready(Ok(())) if n == 0 => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => {
                    let at = down.reserve(n);
                    this.wait = Some(Box::pin(tokio::time::sleep_until(at)));
                }
            }
        }
        Poll::Pending
    }
}
