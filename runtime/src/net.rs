//! [`Net`]: the sockets the driver uses, behind a trait so the simulator can supply turmoil's.
//!
//! The tokio implementation ([`TokioNet`]) is for the real CLI. Streams are split into owned read
//! and write halves so a reader task and a writer task can move a connection's bytes independently.
//! UDP (trackers, the DHT, uTP) goes through quinn-udp on a tokio socket: [`QuinnUdp`]
//! connected to one remote, [`QuinnBoundUdp`] bound to a local address for servers (`bt tracker`);
//! names resolve through the system resolver.

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use std::io::IoSliceMut;

use bytes::{Bytes, BytesMut};

use tokio::io::{AsyncRead, AsyncWrite, Interest};

/// TCP, UDP and name resolution as the driver needs them.
pub trait Net: Clone + Send + Sync + 'static {
    /// A UDP socket connected to one remote address.
    type Udp: NetUdp;
    /// A UDP socket bound to a local address, talking to anyone (a server's).
    type BoundUdp: NetBoundUdp;
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

    /// A UDP socket on an ephemeral local port, connected to `remote` (so the system reports an
    /// unreachable port as an error instead of silence).
    fn udp_connect(&self, remote: SocketAddr)
    -> impl Future<Output = io::Result<Self::Udp>> + Send;

    /// A UDP socket bound to `addr` (port 0 picks one), to receive from and send to anyone.
    fn udp_bind(&self, addr: SocketAddr)
    -> impl Future<Output = io::Result<Self::BoundUdp>> + Send;

    /// The addresses of `host` (a name or an IP literal) at `port`.
    fn resolve(
        &self,
        host: String,
        port: u16,
    ) -> impl Future<Output = io::Result<Vec<SocketAddr>>> + Send;
}

/// A connected UDP socket.
pub trait NetUdp: Send + Sync + 'static {
    /// Sends one datagram to the remote address.
    fn send(&self, datagram: &[u8]) -> impl Future<Output = io::Result<()>> + Send;

    /// Receives one datagram from the remote address into `buf`; returns its length (a datagram
    /// longer than `buf` is cut).
    fn recv(&self, buf: &mut [u8]) -> impl Future<Output = io::Result<usize>> + Send;
}

/// A UDP socket bound to a local address.
pub trait NetBoundUdp: Send + Sync + 'static {
    /// The address it is bound to.
    fn local_addr(&self) -> io::Result<SocketAddr>;

    /// Sends one datagram to `to`.
    fn send_to(
        &self,
        datagram: &[u8],
        to: SocketAddr,
    ) -> impl Future<Output = io::Result<()>> + Send;

    /// Receives one datagram into `buf`; returns its length (a datagram longer than `buf` is
    /// cut) and its sender.
    fn recv_from(
        &self,
        buf: &mut [u8],
    ) -> impl Future<Output = io::Result<(usize, SocketAddr)>> + Send;

    /// Sends `datagrams` in order, each to its address, in as few system calls as the socket
    /// allows (for [`QuinnBoundUdp`]: each run of consecutive datagrams to one address, of one
    /// size but a shorter last, goes out as one GSO send where the system has GSO). A datagram whose send fails is lost, as UDP goes. The default sends them one by
    /// one through [`NetBoundUdp::send_to`].
    fn send_batch(&self, datagrams: &[(SocketAddr, Vec<u8>)]) -> impl Future<Output = ()> + Send {
        async move {
            for (to, datagram) in datagrams {
                let _ = self.send_to(datagram, *to).await;
            }
        }
    }

    /// Waits for at least one datagram and appends to `out` it and whatever else one read of
    /// the socket takes (for [`QuinnBoundUdp`]: up to [`quinn_udp::BATCH_SIZE`] datagrams per
    /// system call, each buffer a GRO batch), each with its sender; `scratch` is where they
    /// are read, split in slots of [`RECV_SLOT`] bytes (a datagram longer than its slot is
    /// cut). The default reads one datagram through [`NetBoundUdp::recv_from`].
    fn recv_batch(
        &self,
        scratch: &mut [u8],
        out: &mut Vec<(SocketAddr, Bytes)>,
    ) -> impl Future<Output = io::Result<()>> + Send {
        async move {
            let (n, from) = self.recv_from(scratch).await?;
            out.push((from, Bytes::copy_from_slice(&scratch[..n])));
            Ok(())
        }
    }
}

/// The room one received datagram, or one GRO batch of them, takes in a batched read: the
/// largest UDP payload, so a GRO batch is never cut.
pub const RECV_SLOT: usize = 64 * 1024;

/// The receive and send buffer sizes asked of the kernel for a bound UDP socket. The kernel
/// caps them at its own limits (`net.core.rmem_max`, `wmem_max`) without an error, which
/// leaves the socket with what the system allows. The default (about 200 KiB on Linux) holds
/// fewer datagrams than one uTP receive window (1 MiB of payload, whose datagrams take more
/// than that in kernel memory), so a burst from a fast sender overflowed it.
pub const UDP_SOCKET_BUFFER_BYTES: usize = 4 << 20;

/// The most bytes one GSO send carries: the largest UDP payload over IPv4 (65 535 bytes less
/// the 20-byte IP and 8-byte UDP headers), the kernel's bound for the whole run of segments.
const MAX_GSO_BYTES: usize = 65_507;

/// Splits `datagrams` into runs that can each go out as one GSO send, in order: a run is
/// consecutive datagrams to one address, all the size of its first but the last, which may be
/// shorter; it holds at most `max_segments` datagrams and [`MAX_GSO_BYTES`] bytes. An empty
/// datagram is a run of its own. With `max_segments` 1 every datagram is its own run.
fn gso_groups(
    datagrams: &[(SocketAddr, Vec<u8>)],
    max_segments: usize,
) -> Vec<std::ops::Range<usize>> {
    let mut groups = Vec::new();
    let mut start = 0;
    while start < datagrams.len() {
        let (to, first) = &datagrams[start];
        let size = first.len();
        let mut end = start + 1;
        let mut bytes = size;
        if size > 0 {
            while end < datagrams.len() && end - start < max_segments {
                let (next_to, next) = &datagrams[end];
                if next_to != to || next.len() > size || bytes + next.len() > MAX_GSO_BYTES {
                    break;
                }
                bytes += next.len();
                end += 1;
                if next.len() < size {
                    break;
                }
            }
        }
        groups.push(start..end);
        start = end;
    }
    groups
}

/// Real sockets through tokio.
#[derive(Clone, Copy, Debug, Default)]
pub struct TokioNet;

impl Net for TokioNet {
    type Udp = QuinnUdp;
    type BoundUdp = QuinnBoundUdp;
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

    async fn udp_connect(&self, remote: SocketAddr) -> io::Result<Self::Udp> {
        let local = wildcard_for(remote);
        let io = tokio::net::UdpSocket::bind(local).await?;
        io.connect(remote).await?;
        let state = quinn_udp::UdpSocketState::new((&io).into())?;
        Ok(QuinnUdp { io, state, remote })
    }

    async fn udp_bind(&self, addr: SocketAddr) -> io::Result<Self::BoundUdp> {
        let io = tokio::net::UdpSocket::bind(addr).await?;
        let state = quinn_udp::UdpSocketState::new((&io).into())?;
        // Best effort: a kernel that refuses or caps the size leaves its own.
        let _ = state.set_recv_buffer_size((&io).into(), UDP_SOCKET_BUFFER_BYTES);
        let _ = state.set_send_buffer_size((&io).into(), UDP_SOCKET_BUFFER_BYTES);
        let v6 = io.local_addr()?.is_ipv6();
        Ok(QuinnBoundUdp {
            io,
            state,
            v6,
            pending: std::sync::Mutex::new(std::collections::VecDeque::new()),
        })
    }

    async fn resolve(&self, host: String, port: u16) -> io::Result<Vec<SocketAddr>> {
        Ok(tokio::net::lookup_host((host.as_str(), port))
            .await?
            .collect())
    }
}

/// A tokio UDP socket driven through quinn-udp (`sendmsg`/`recvmmsg`, with GRO on Linux).
#[derive(Debug)]
pub struct QuinnUdp {
    io: tokio::net::UdpSocket,
    state: quinn_udp::UdpSocketState,
    remote: SocketAddr,
}

impl NetUdp for QuinnUdp {
    async fn send(&self, datagram: &[u8]) -> io::Result<()> {
        let transmit = quinn_udp::Transmit {
            destination: self.remote,
            ecn: None,
            contents: datagram,
            segment_size: None,
            src_ip: None,
        };
        self.io
            .async_io(Interest::WRITABLE, || {
                self.state.try_send((&self.io).into(), &transmit)
            })
            .await
    }

    async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut meta = [quinn_udp::RecvMeta::default()];
        loop {
            let n = self
                .io
                .async_io(Interest::READABLE, || {
                    let mut bufs = [IoSliceMut::new(&mut *buf)];
                    self.state.recv((&self.io).into(), &mut bufs, &mut meta)
                })
                .await?;
            // With GRO several datagrams of one size may arrive as one buffer; the first is
            // `stride` bytes long, and the rest (duplicates, for a tracker) are dropped.
            if n > 0 && meta[0].addr == self.remote {
                return Ok(meta[0].len.min(meta[0].stride.max(1)).min(buf.len()));
            }
        }
    }
}

/// A tokio UDP socket bound to a local address, driven through quinn-udp (batched sends as GSO
/// where the system has it, batched reads through `recvmmsg`). With GRO, several
/// datagrams from one sender may arrive as one buffer: the first is returned and the others
/// (at most quinn-udp's GRO segment count, 64) wait in `pending` for the next receives.
#[derive(Debug)]
pub struct QuinnBoundUdp {
    io: tokio::net::UdpSocket,
    state: quinn_udp::UdpSocketState,
    /// Bound to an IPv6 address (dual-stack when `[::]`): IPv4 peers are sent to at mapped
    /// addresses.
    v6: bool,
    pending: std::sync::Mutex<std::collections::VecDeque<(Vec<u8>, SocketAddr)>>,
}

impl NetBoundUdp for QuinnBoundUdp {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.local_addr()
    }

    async fn send_to(&self, datagram: &[u8], to: SocketAddr) -> io::Result<()> {
        self.transmit(datagram, None, to).await
    }

    async fn send_batch(&self, datagrams: &[(SocketAddr, Vec<u8>)]) {
        let mut joined = Vec::new();
        for group in gso_groups(datagrams, self.state.max_gso_segments()) {
            let run = &datagrams[group];
            if let [(to, datagram)] = run {
                let _ = self.transmit(datagram, None, *to).await;
                continue;
            }
            joined.clear();
            for (_, datagram) in run {
                joined.extend_from_slice(datagram);
            }
            let (to, first) = &run[0];
            if self
                .transmit(&joined, Some(first.len()), *to)
                .await
                .is_err()
            {
                // A GSO send is all or nothing. A system without GSO for this path fails it
                // (quinn-udp then reports one segment, so later batches are not joined), and
                // other failures may be one datagram's: each goes out alone instead.
                for (to, datagram) in run {
                    let _ = self.transmit(datagram, None, *to).await;
                }
            }
        }
    }

    async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        if let Some((datagram, from)) = self.pending.lock().expect("pending lock").pop_front() {
            let n = datagram.len().min(buf.len());
            buf[..n].copy_from_slice(&datagram[..n]);
            return Ok((n, from));
        }
        let mut meta = [quinn_udp::RecvMeta::default()];
        let n = self
            .io
            .async_io(Interest::READABLE, || {
                let mut bufs = [IoSliceMut::new(&mut *buf)];
                self.state.recv((&self.io).into(), &mut bufs, &mut meta)
            })
            .await?;
        let meta = &meta[0];
        let len = meta.len.min(buf.len());
        let stride = meta.stride.clamp(1, len.max(1));
        if n > 0 && len > stride {
            let mut pending = self.pending.lock().expect("pending lock");
            for segment in buf[stride..len].chunks(stride) {
                pending.push_back((segment.to_vec(), meta.addr));
            }
        }
        Ok((len.min(stride), meta.addr))
    }

    async fn recv_batch(
        &self,
        scratch: &mut [u8],
        out: &mut Vec<(SocketAddr, Bytes)>,
    ) -> io::Result<()> {
        {
            let mut pending = self.pending.lock().expect("pending lock");
            if !pending.is_empty() {
                out.extend(pending.drain(..).map(|(d, from)| (from, Bytes::from(d))));
                return Ok(());
            }
        }
        let slot = RECV_SLOT.min(scratch.len()).max(1);
        let mut meta = [quinn_udp::RecvMeta::default(); quinn_udp::BATCH_SIZE];
        let slots = scratch_slots(scratch.len(), slot);
        let n = {
            let mut chunks = scratch.chunks_mut(slot);
            let mut bufs: [IoSliceMut<'_>; quinn_udp::BATCH_SIZE] =
                std::array::from_fn(|_| IoSliceMut::new(chunks.next().unwrap_or(&mut [])));
            self.io
                .async_io(Interest::READABLE, || {
                    self.state
                        .recv((&self.io).into(), &mut bufs[..slots], &mut meta)
                })
                .await?
        };
        // One allocation for the batch: every datagram is a slice of it.
        let lens: Vec<usize> = meta[..n].iter().map(|m| m.len.min(slot)).collect();
        let mut all = BytesMut::with_capacity(lens.iter().sum());
        for (i, &len) in lens.iter().enumerate() {
            all.extend_from_slice(&scratch[i * slot..i * slot + len]);
        }
        let all = all.freeze();
        let mut at = 0;
        for (m, &len) in meta[..n].iter().zip(&lens) {
            let stride = m.stride.clamp(1, len.max(1));
            let mut segment = 0;
            while segment < len {
                let end = (segment + stride).min(len);
                out.push((m.addr, all.slice(at + segment..at + end)));
                segment = end;
            }
            at += len;
        }
        Ok(())
    }
}

impl QuinnBoundUdp {
    /// Sends `contents` to `to` in one system call: one datagram, or with `segment_size`
    /// several of that size (the last may be shorter) through GSO.
    async fn transmit(
        &self,
        contents: &[u8],
        segment_size: Option<usize>,
        to: SocketAddr,
    ) -> io::Result<()> {
        let to = match to {
            SocketAddr::V4(v4) if self.v6 => {
                SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port())
            }
            _ => to,
        };
        let transmit = quinn_udp::Transmit {
            destination: to,
            ecn: None,
            contents,
            segment_size,
            src_ip: None,
        };
        self.io
            .async_io(Interest::WRITABLE, || {
                self.state.try_send((&self.io).into(), &transmit)
            })
            .await
    }
}

/// How many slots of `slot` bytes a scratch buffer of `len` bytes holds for one batched
/// read: at least one, at most [`quinn_udp::BATCH_SIZE`].
fn scratch_slots(len: usize, slot: usize) -> usize {
    (len / slot).clamp(1, quinn_udp::BATCH_SIZE)
}

/// The wildcard address, any port, of `remote`'s family: where a UDP socket that talks to
/// `remote` binds.
pub fn wildcard_for(remote: SocketAddr) -> SocketAddr {
    if remote.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lens(datagrams: &[(SocketAddr, Vec<u8>)], max: usize) -> Vec<Vec<usize>> {
        gso_groups(datagrams, max)
            .into_iter()
            .map(|g| datagrams[g].iter().map(|(_, d)| d.len()).collect())
            .collect()
    }

    fn to(port: u16, len: usize) -> (SocketAddr, Vec<u8>) {
        (SocketAddr::from(([127, 0, 0, 1], port)), vec![0; len])
    }

    #[test]
    fn same_address_and_size_go_together_in_order() {
        let d = [to(1, 1400), to(1, 1400), to(1, 1400), to(1, 1400)];
        assert_eq!(gso_groups(&d, 64), vec![0..4]);
    }

    #[test]
    fn a_shorter_datagram_ends_a_run() {
        let d = [
            to(1, 1400),
            to(1, 1400),
            to(1, 20),
            to(1, 1400),
            to(1, 1400),
        ];
        assert_eq!(lens(&d, 64), vec![vec![1400, 1400, 20], vec![1400, 1400]]);
    }

    #[test]
    fn a_longer_datagram_starts_a_run() {
        let d = [to(1, 20), to(1, 1400), to(1, 1400)];
        assert_eq!(lens(&d, 64), vec![vec![20], vec![1400, 1400]]);
    }

    #[test]
    fn another_address_splits() {
        let d = [to(1, 1400), to(2, 1400), to(2, 1400), to(1, 1400)];
        assert_eq!(gso_groups(&d, 64), vec![0..1, 1..3, 3..4]);
    }

    #[test]
    fn the_segment_count_is_bounded() {
        let d: Vec<_> = (0..10).map(|_| to(1, 100)).collect();
        assert_eq!(gso_groups(&d, 4), vec![0..4, 4..8, 8..10]);
        assert_eq!(gso_groups(&d, 1).len(), 10);
    }

    #[test]
    fn the_bytes_are_bounded() {
        let d: Vec<_> = (0..64).map(|_| to(1, 1400)).collect();
        let groups = gso_groups(&d, 64);
        assert_eq!(groups[0], 0..MAX_GSO_BYTES / 1400);
        assert!(groups.iter().all(|g| g.len() * 1400 <= MAX_GSO_BYTES));
        assert_eq!(groups.iter().map(|g| g.len()).sum::<usize>(), 64);
    }

    #[test]
    fn an_empty_datagram_is_alone() {
        let d = [to(1, 0), to(1, 0), to(1, 5)];
        assert_eq!(gso_groups(&d, 64), vec![0..1, 1..2, 2..3]);
        assert!(gso_groups(&[], 64).is_empty());
    }
}
