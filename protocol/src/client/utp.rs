//! uTP (BEP 29) as the client's second transport: one [`Mux`] on the client's UDP socket, whose
//! connections are [`ConnId`]s like TCP ones, so the session, MSE and the torrents see no
//! difference.
//!
//! What the driver does for a TCP connection the client does here for a uTP one:
//! - dialling: [`Mux::connect`] instead of [`Output::Connect`]; the socket's `Connected` is the
//!   driver's `handle_connected`. A connect unanswered within [`UTP_CONNECT_TIMEOUT`] (shorter
//!   than the SYN's own retries), or reset, is tried at once over the next transport of the
//!   dial (see [`super::PeerList::dial_transports`]);
//! - writing: the session's transmit bytes go into the socket's send buffer; what does not fit
//!   waits in the connection's queue (at most [`MAX_UTP_QUEUE_BYTES`]; a connection whose
//!   queue would grow past it is closed), and the session hears `handle_sent` as the socket
//!   takes bytes, which keeps its backpressure (it serves a peer only while its unsent bytes
//!   stay under the send-buffer watermark, so the queue stays far below the bound);
//! - reading: `Readable` bytes go to the session as `handle_bytes`;
//! - ending: `ReadClosed` or `Closed` is the session's disconnect; a close by the session is
//!   [`crate::utp::Socket::close`] (a FIN after the bytes already taken). A socket the session
//!   is done with stays in the mux until it finishes; what it still reads is discarded;
//! - accepting: a SYN the mux accepted is [`Client::accept`]'s incoming connection (the same
//!   limits), refused with `ST_RESET` when the session refuses it ([`Mux::refuse`]).
//!
//! Observing: with [`super::ClientConfig::utp_stream_taps`] each connection keeps digests of the
//! bytes written into its socket and of those its socket delivered ([`super::utp_tap`]); when
//! it ends they wait for the driver ([`Client::take_utp_taps`]).
//!
//! Bounds: at most [`super::ClientConfig::max_utp_sockets`] sockets (the mux refuses SYNs past
//! it with `ST_RESET`, and a dial finding it full goes to the next transport); the maps between
//! connections and sockets hold only live sockets; one queue per connection as above; one read
//! buffer of [`UTP_READ_CHUNK`] bytes.

use core::net::SocketAddr;
use core::time::Duration;
use std::collections::{BTreeMap, VecDeque};

use bytes::{Buf, Bytes};

use super::utp_tap::{MAX_FINISHED_TAPS, UtpTap};
use super::{Client, ClientCloseReason, ConnInfo, ConnState, Output, PeerSource, Transport};
use crate::io::ConnId;
use crate::session::TorrentId;
use crate::time::Instant;
use crate::utp::Mux;
use crate::utp::mux::SocketId;
use crate::utp::socket::{CloseReason as UtpCloseReason, Event as UtpEvent, Role as UtpRole};

/// How long a uTP connect may go unanswered before the dial moves to the next transport (or
/// fails): the SYN is sent at 0, 1 and 3 s. libtorrent falls back to TCP after a few seconds
/// too; the socket's own SYN retries would take about 15 s.
pub const UTP_CONNECT_TIMEOUT: Duration = Duration::from_secs(4);

/// The most bytes a uTP connection's queue holds beyond the socket's send buffer.
pub const MAX_UTP_QUEUE_BYTES: usize = 4 << 20;

/// Most uTP sockets at once, by default.
pub const MAX_UTP_SOCKETS: usize = 1024;

/// The most bytes read from a socket at a time.
pub const UTP_READ_CHUNK: usize = 64 * 1024;

/// Rounds of socket events handled per input before the rest wait for the next one (a bound
/// on one drain; every event is a socket's flag, so there are at most four per socket).
const MAX_EVENT_ROUNDS: usize = 1 << 16;

/// Counters of the client's UDP socket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UdpStats {
    /// Datagrams neither uTP nor KRPC, dropped.
    pub unknown_dropped: u64,
    /// uTP connections closed because their queue would pass [`MAX_UTP_QUEUE_BYTES`].
    pub queue_overflows: u64,
}

/// One uTP connection's side in the client.
#[derive(Debug)]
struct UtpConn {
    socket: SocketId,
    /// Transmit bytes the socket had no room for, oldest first.
    queue: VecDeque<Bytes>,
    queued: usize,
    /// Its stream digests, when taps are on.
    tap: Option<Box<UtpTap>>,
}

/// The client's uTP state: see the module docs.
#[derive(Debug)]
pub(super) struct UtpState {
    pub(super) mux: Mux<SocketAddr>,
    conns: BTreeMap<ConnId, UtpConn>,
    sockets: BTreeMap<SocketId, ConnId>,
    read_buf: Vec<u8>,
    pub(super) stats: UdpStats,
    /// Whether connections keep stream digests.
    taps: bool,
    /// Digests of ended connections, oldest first (at most [`MAX_FINISHED_TAPS`]).
    finished_taps: VecDeque<UtpTap>,
    /// Digests dropped because `finished_taps` was full.
    taps_dropped: u64,
}

impl UtpState {
    pub(super) fn new(seed: u64, max_sockets: usize, taps: bool) -> Self {
        UtpState {
            mux: Mux::new(seed, max_sockets),
            conns: BTreeMap::new(),
            sockets: BTreeMap::new(),
            read_buf: vec![0; UTP_READ_CHUNK],
            stats: UdpStats::default(),
            taps,
            finished_taps: VecDeque::new(),
            taps_dropped: 0,
        }
    }

    fn map(&mut self, conn: ConnId, socket: SocketId) {
        let tap = if self.taps {
            self.mux
                .socket(socket)
                .zip(self.mux.remote(socket))
                .map(|(s, remote)| {
                    let initiator = s.role() == UtpRole::Initiator;
                    Box::new(UtpTap {
                        remote: *remote,
                        initiator,
                        conn_id: if initiator { s.recv_id() } else { s.send_id() },
                        sent: Default::default(),
                        delivered: Default::default(),
                    })
                })
        } else {
            None
        };
        self.conns.insert(
            conn,
            UtpConn {
                socket,
                queue: VecDeque::new(),
                queued: 0,
                tap,
            },
        );
        self.sockets.insert(socket, conn);
    }

    /// Forgets `conn`'s socket mapping; returns the socket. Its tap waits for the driver.
    fn unmap(&mut self, conn: ConnId) -> Option<SocketId> {
        let c = self.conns.remove(&conn)?;
        self.sockets.remove(&c.socket);
        if let Some(tap) = c.tap {
            if self.finished_taps.len() == MAX_FINISHED_TAPS {
                self.finished_taps.pop_front();
                self.taps_dropped += 1;
            }
            self.finished_taps.push_back(*tap);
        }
        Some(c.socket)
    }
}

impl Client {
    /// Whether `conn` is carried by uTP inside the client.
    pub(super) fn is_utp(&self, conn: ConnId) -> bool {
        self.utp
            .as_ref()
            .is_some_and(|u| u.conns.contains_key(&conn))
    }

    /// Opens a uTP connect for dial `conn` to `addr`; false when the mux is full (or uTP off).
    pub(super) fn utp_connect(&mut self, conn: ConnId, addr: SocketAddr) -> bool {
        let Some(utp) = &mut self.utp else {
            return false;
        };
        match utp.mux.connect(addr) {
            Some(socket) => {
                utp.map(conn, socket);
                true
            }
            None => false,
        }
    }

    /// Gives up dial `conn`'s uTP connect: the socket is forgotten at once.
    pub(super) fn utp_abandon(&mut self, conn: ConnId) {
        if let Some(utp) = &mut self.utp
            && let Some(socket) = utp.unmap(conn)
        {
            utp.mux.remove(socket);
        }
    }

    /// The session wrote `bytes` for uTP connection `conn`.
    pub(super) fn utp_transmit(&mut self, now: Instant, conn: ConnId, bytes: Bytes) {
        let Some(utp) = &mut self.utp else {
            return;
        };
        let Some(c) = utp.conns.get_mut(&conn) else {
            return;
        };
        if c.queued + bytes.len() > MAX_UTP_QUEUE_BYTES {
            utp.stats.queue_overflows += 1;
            self.utp_close(now, conn);
            self.utp_disconnected(now, conn);
            return;
        }
        c.queued += bytes.len();
        c.queue.push_back(bytes);
        self.utp_flush(now, conn);
    }

    /// Moves `conn`'s queue into its socket's send buffer as far as it fits, telling the
    /// session what was taken.
    fn utp_flush(&mut self, now: Instant, conn: ConnId) {
        let Some(utp) = &mut self.utp else {
            return;
        };
        let Some(c) = utp.conns.get_mut(&conn) else {
            return;
        };
        let Some(socket) = utp.mux.socket_mut(c.socket) else {
            return;
        };
        let mut taken = 0;
        while let Some(front) = c.queue.front_mut() {
            let n = match socket.write(front) {
                Ok(n) => n,
                // Ending: the socket's `Closed` or the session's close follows.
                Err(_) => {
                    c.queue.clear();
                    c.queued = 0;
                    break;
                }
            };
            if let Some(tap) = &mut c.tap {
                tap.sent.feed(&front[..n]);
            }
            taken += n;
            c.queued -= n;
            if n < front.len() {
                front.advance(n);
                break;
            }
            c.queue.pop_front();
        }
        if taken > 0 {
            self.session.handle_sent(now, conn, taken);
        }
    }

    /// The session closes uTP connection `conn`: what fits of its queue goes into the socket,
    /// then a FIN; the socket finishes on its own, and nothing it reads reaches anyone.
    pub(super) fn utp_close(&mut self, now: Instant, conn: ConnId) {
        self.utp_flush(now, conn);
        let Some(utp) = &mut self.utp else {
            return;
        };
        if let Some(socket) = utp.unmap(conn)
            && let Some(s) = utp.mux.socket_mut(socket)
        {
            s.close();
        }
    }

    /// uTP connection `conn` ended under the session: its disconnect, as
    /// [`Client::handle_disconnect`] without the pump.
    fn utp_disconnected(&mut self, now: Instant, conn: ConnId) {
        if let Some(utp) = &mut self.utp
            && let Some(socket) = utp.unmap(conn)
            && let Some(s) = utp.mux.socket_mut(socket)
        {
            s.close();
        }
        self.disconnected(now, conn);
    }

    /// A peer's SYN opened `socket`: an incoming connection, as [`Client::accept`].
    fn utp_incoming(&mut self, now: Instant, socket: SocketId) {
        let Some(addr) = self
            .utp
            .as_ref()
            .and_then(|u| u.mux.remote(socket).copied())
        else {
            return;
        };
        match self.accept_over(now, addr, Transport::Utp) {
            Ok(conn) => {
                if let Some(utp) = &mut self.utp {
                    utp.map(conn, socket);
                }
                self.pump_needed = true;
            }
            Err(_) => {
                if let Some(utp) = &mut self.utp {
                    utp.mux.refuse(now, socket);
                }
            }
        }
    }

    /// Drains the mux after an input: incoming connections, socket events (each handled as the
    /// driver's input for a TCP connection would be), then its datagrams as
    /// [`Output::Datagram`]. Returns whether any connection or event was handled.
    pub(super) fn drive_utp(&mut self, now: Instant) -> bool {
        if self.utp.is_none() {
            return false;
        }
        let mut handled = false;
        for _ in 0..MAX_EVENT_ROUNDS {
            let utp = self.utp.as_mut().expect("checked above");
            if let Some(socket) = utp.mux.poll_incoming() {
                handled = true;
                self.utp_incoming(now, socket);
                self.collect(now);
                continue;
            }
            let Some((socket, event)) = utp.mux.poll_event() else {
                break;
            };
            handled = true;
            let Some(&conn) = utp.sockets.get(&socket) else {
                // A socket nobody owns any more: discard what it reads.
                if event == UtpEvent::Readable
                    && let Some(s) = utp.mux.socket_mut(socket)
                {
                    while s.read(&mut utp.read_buf) > 0 {}
                }
                continue;
            };
            self.utp_event(now, conn, socket, event);
            self.collect(now);
        }
        let utp = self.utp.as_mut().expect("checked above");
        while let Some((to, bytes)) = utp.mux.poll_transmit(now) {
            self.outputs.push_back(Output::Datagram { to, bytes });
        }
        handled
    }

    fn utp_event(&mut self, now: Instant, conn: ConnId, socket: SocketId, event: UtpEvent) {
        let dialing = self
            .conns
            .get(&conn)
            .is_some_and(|c| matches!(c.state, ConnState::Dialing { .. }));
        match event {
            UtpEvent::Connected if dialing => self.connected(now, conn),
            UtpEvent::Connected => {}
            UtpEvent::Readable => loop {
                let utp = self.utp.as_mut().expect("an event came");
                let Some(s) = utp.mux.socket_mut(socket) else {
                    return;
                };
                let mut buf = std::mem::take(&mut utp.read_buf);
                let n = s.read(&mut buf);
                if n > 0 {
                    if let Some(tap) = utp.conns.get_mut(&conn).and_then(|c| c.tap.as_mut()) {
                        tap.delivered.feed(&buf[..n]);
                    }
                    self.session.handle_bytes_mut(now, conn, &mut buf[..n]);
                }
                let utp = self.utp.as_mut().expect("an event came");
                utp.read_buf = buf;
                // The session may have closed it meanwhile.
                if n == 0 || !utp.conns.contains_key(&conn) {
                    return;
                }
            },
            UtpEvent::Writable => self.utp_flush(now, conn),
            UtpEvent::ReadClosed | UtpEvent::Closed(_) if dialing => {
                let why = match event {
                    UtpEvent::Closed(UtpCloseReason::Reset) => "uTP connect reset",
                    _ => "uTP connect refused",
                };
                self.dial_failed(now, conn, why.to_owned());
            }
            UtpEvent::ReadClosed | UtpEvent::Closed(_) => self.utp_disconnected(now, conn),
        }
    }

    /// Dial `conn` failed on its current transport: it goes on at once over its fallback, or,
    /// with none left, fails as a connect does ([`Client::handle_connect_failed`]). A TCP
    /// attempt given up is the caller's to close.
    pub(super) fn dial_failed(&mut self, now: Instant, conn: ConnId, error: String) {
        let Some(info) = self.conns.get(&conn).copied() else {
            return;
        };
        let (ConnState::Dialing { deadline }, Some(torrent)) = (info.state, info.torrent) else {
            return;
        };
        if info.transport == Transport::Utp {
            self.utp_abandon(conn);
        }
        let Some(next) = info.fallback else {
            self.drop_dial(conn);
            self.connect_failed(now, torrent, info.addr, error, info.transport);
            return;
        };
        self.dial_deadlines.remove(&(deadline, conn));
        self.start_dial(now, torrent, conn, info.addr, info.source, next, None);
    }

    /// Starts dial `conn` of `torrent` to `addr` over `transport`, `fallback` next; the
    /// connection is recorded as dialling (a slot of the half-open limit, already counted).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn start_dial(
        &mut self,
        now: Instant,
        torrent: TorrentId,
        conn: ConnId,
        addr: SocketAddr,
        source: PeerSource,
        transport: Transport,
        fallback: Option<Transport>,
    ) {
        let (transport, fallback) = match transport {
            Transport::Utp if !self.utp_connect(conn, addr) => match fallback {
                Some(next) => (next, None),
                None => {
                    // The mux is full and no other transport: fail as a refused connect.
                    self.free_dial_slot(Some(torrent));
                    let error = "too many uTP sockets".to_owned();
                    self.connect_failed(now, torrent, addr, error, Transport::Utp);
                    return;
                }
            },
            other => (other, fallback),
        };
        let timeout = match transport {
            Transport::Tcp => self.config.connect_timeout,
            Transport::Utp => UTP_CONNECT_TIMEOUT.min(self.config.connect_timeout),
        };
        let deadline = now + timeout;
        self.dial_deadlines.insert((deadline, conn));
        self.conns.insert(
            conn,
            ConnInfo {
                torrent: Some(torrent),
                addr,
                source,
                state: ConnState::Dialing { deadline },
                transport,
                fallback,
            },
        );
        if transport == Transport::Tcp {
            self.outputs.push_back(Output::Connect {
                torrent,
                conn,
                addr,
            });
        }
    }

    /// Closes `conn` on whatever carries it: [`Output::Close`] for TCP, a FIN for uTP.
    pub(super) fn close_conn(&mut self, now: Instant, conn: ConnId, reason: ClientCloseReason) {
        if self.is_utp(conn) {
            self.utp_close(now, conn);
        } else {
            self.outputs.push_back(Output::Close { conn, reason });
        }
    }

    /// The stream digests of uTP connections ([`super::ClientConfig::utp_stream_taps`]): those
    /// of connections that ended since the last call, and with `live` a copy of those of the
    /// connections still open (at the end of a run). Empty while taps are off.
    pub fn take_utp_taps(&mut self, live: bool) -> Vec<UtpTap> {
        let Some(utp) = &mut self.utp else {
            return Vec::new();
        };
        let mut taps: Vec<UtpTap> = utp.finished_taps.drain(..).collect();
        if live {
            taps.extend(utp.conns.values().filter_map(|c| c.tap.as_deref().cloned()));
        }
        taps
    }

    /// Stream digests of ended connections dropped because the driver did not take them in
    /// time (more than [`MAX_FINISHED_TAPS`] waited).
    pub fn utp_taps_dropped(&self) -> u64 {
        self.utp.as_ref().map_or(0, |u| u.taps_dropped)
    }

    /// Counters of the client's UDP socket (zero while uTP is off).
    pub fn udp_stats(&self) -> UdpStats {
        self.utp.as_ref().map(|u| u.stats).unwrap_or_default()
    }

    /// The uTP multiplexer, while uTP is on.
    pub fn utp_mux(&self) -> Option<&Mux<SocketAddr>> {
        self.utp.as_ref().map(|u| &u.mux)
    }

    /// The transport carrying connection `conn` (or trying to, while it dials).
    pub fn conn_transport(&self, conn: ConnId) -> Option<Transport> {
        self.conns.get(&conn).map(|c| c.transport)
    }
}
