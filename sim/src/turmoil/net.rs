//! [`TurmoilNet`]: the runtime's [`Net`] over turmoil's simulated TCP and UDP, so a simulated peer
//! runs the same driver code as `bt get`. Names resolve through turmoil's host table (turmoil
//! gives an unknown name a fresh address, so a lookup never fails).
//!
//! TCP streams go through [`PacedReader`] and [`PacedWriter`]: with a [`Pace`] (see
//! [`TurmoilNet::paced`]) the host's bandwidth and TCP loss apply; without one they pass bytes
//! straight through. Around them, [`super::tap`] lets the wire observer read both directions
//! when one is given ([`TurmoilNet::observed`]). UDP is not paced for announces and the DHT (a few
//! hundred bytes at most); a uTP datagram sent from a bound socket of a paced net waits its turn
//! on the host's uplink like a TCP chunk (the runtime's bounded send queue holds what waits) and
//! is lost with the link's loss (uTP resends it), so uTP meets the same bandwidth and loss as
//! TCP; turmoil adds latency and jitter to every datagram. The datagrams a bound socket sends
//! are counted when a counter is given ([`TurmoilNet::counting_udp`]).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bt_protocol::utp::packet::{DatagramKind, classify};
use bt_runtime::net::{Net, NetBoundUdp, NetUdp};

use super::pace::{Pace, PacedReader, PacedWriter};
use super::tap::{Observer, TappedReader, TappedWriter, tap};

type Reader = TappedReader<PacedReader<turmoil::net::tcp::OwnedReadHalf>>;
type Writer = TappedWriter<PacedWriter<turmoil::net::tcp::OwnedWriteHalf>>;

/// Sockets of the turmoil host the calling task runs on.
#[derive(Clone, Debug, Default)]
pub struct TurmoilNet {
    pace: Option<Arc<Pace>>,
    observer: Option<Observer>,
    /// Datagrams sent through sockets from [`Net::udp_bind`].
    udp_sent: Option<Arc<AtomicU64>>,
}

impl TurmoilNet {
    /// Streams whose bytes wait for `pace`'s links (shared by every connection made through
    /// this value and its clones).
    pub fn paced(pace: Arc<Pace>) -> Self {
        TurmoilNet {
            pace: Some(pace),
            observer: None,
            udp_sent: None,
        }
    }

    /// Bound UDP sockets count the DHT datagrams they send (not uTP's) in `sent`.
    pub fn counting_udp(mut self, sent: Arc<AtomicU64>) -> Self {
        self.udp_sent = Some(sent);
        self
    }

    /// Streams the wire observer reads, reporting to `observer`.
    pub fn observed(mut self, observer: Observer) -> Self {
        self.observer = Some(observer);
        self
    }

    fn wrap(&self, stream: turmoil::net::TcpStream) -> (Reader, Writer) {
        let remote = stream
            .peer_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let (r, w) = stream.into_split();
        tap(
            PacedReader::new(r, self.pace.clone()),
            PacedWriter::new(w, self.pace.clone()),
            remote,
            self.observer.as_ref(),
        )
    }
}

/// A listener that remembers the pace its accepted streams get.
pub struct TurmoilListener {
    inner: turmoil::net::TcpListener,
    net: TurmoilNet,
}

impl Net for TurmoilNet {
    type Udp = TurmoilUdp;
    type BoundUdp = TurmoilBoundUdp;
    type Reader = Reader;
    type Writer = Writer;
    type Listener = TurmoilListener;

    async fn connect(&self, addr: SocketAddr) -> io::Result<(Self::Reader, Self::Writer)> {
        Ok(self.wrap(turmoil::net::TcpStream::connect(addr).await?))
    }

    async fn listen(&self, addr: SocketAddr) -> io::Result<Self::Listener> {
        Ok(TurmoilListener {
            inner: turmoil::net::TcpListener::bind(addr).await?,
            net: self.clone(),
        })
    }

    fn local_addr(listener: &Self::Listener) -> io::Result<SocketAddr> {
        listener.inner.local_addr()
    }

    async fn accept(
        listener: &mut Self::Listener,
    ) -> io::Result<(Self::Reader, Self::Writer, SocketAddr)> {
        let (stream, addr) = listener.inner.accept().await?;
        let (r, w) = listener.net.wrap(stream);
        Ok((r, w, addr))
    }

    async fn udp_connect(&self, remote: SocketAddr) -> io::Result<Self::Udp> {
        let local = bt_runtime::net::wildcard_for(remote);
        let socket = turmoil::net::UdpSocket::bind(local).await?;
        Ok(TurmoilUdp { socket, remote })
    }

    async fn udp_bind(&self, addr: SocketAddr) -> io::Result<Self::BoundUdp> {
        Ok(TurmoilBoundUdp(
            turmoil::net::UdpSocket::bind(addr).await?,
            self.udp_sent.clone(),
            self.pace.clone(),
        ))
    }

    async fn resolve(&self, host: String, port: u16) -> io::Result<Vec<SocketAddr>> {
        let ips = turmoil::lookup_many(host.as_str());
        if ips.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no simulated host is named {host}"),
            ));
        }
        Ok(ips
            .into_iter()
            .map(|ip| SocketAddr::new(ip, port))
            .collect())
    }
}

/// A turmoil UDP socket that talks to one remote address.
pub struct TurmoilUdp {
    socket: turmoil::net::UdpSocket,
    remote: SocketAddr,
}

impl NetUdp for TurmoilUdp {
    async fn send(&self, datagram: &[u8]) -> io::Result<()> {
        self.socket.send_to(datagram, self.remote).await.map(|_| ())
    }

    async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let (n, from) = self.socket.recv_from(buf).await?;
            if from == self.remote {
                return Ok(n);
            }
        }
    }
}

/// A turmoil UDP socket bound to a local address (a simulated tracker's, a client's for the DHT
/// and uTP), with the counter of datagrams sent, if any, and the host's links, which uTP
/// datagrams wait for.
pub struct TurmoilBoundUdp(
    turmoil::net::UdpSocket,
    Option<Arc<AtomicU64>>,
    Option<Arc<Pace>>,
);

impl NetBoundUdp for TurmoilBoundUdp {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }

    async fn send_to(&self, datagram: &[u8], to: SocketAddr) -> io::Result<()> {
        if let Some(pace) = &self.2
            && classify(datagram) == DatagramKind::Utp
        {
            if let Some(up) = &pace.up {
                tokio::time::sleep_until(up.reserve(datagram.len())).await;
            }
            if pace.loss.as_ref().is_some_and(|l| l.datagram_lost()) {
                return Ok(());
            }
        }
        self.0.send_to(datagram, to).await?;
        if let Some(sent) = &self.1
            && classify(datagram) != DatagramKind::Utp
        {
            sent.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.0.recv_from(buf).await
    }
}
