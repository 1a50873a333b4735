//! [`Socket`]: one uTP connection (BEP 29) as a sans-IO machine: a reliable, ordered byte
//! stream over datagrams, with LEDBAT congestion control.
//!
//! Roles and ids: the initiator ([`Socket::connect`]) picks a random receive id and sends with
//! id + 1; its SYN carries the receive id. The acceptor ([`Socket::accept`]) sends with the SYN's
//! id and receives on id + 1. Every other packet carries the receiver's id. Both sides start
//! their sequence numbers at a random point; an `ST_STATE` carries the sender's next number.
//!
//! Reliability: `ST_DATA`, `ST_FIN` and `ST_SYN` consume sequence numbers and are kept until
//! acknowledged, cumulatively (`ack_nr`) or selectively (the SACK extension). A packet is resent
//! at once (a fast retransmit, once per transmission) when three duplicate `ST_STATE` ACKs name
//! the packet before it, or when a selective ACK shows three later packets arrived; that loss
//! halves the congestion window, once per round trip. The retransmission timer (see
//! [`Congestion`]) resends everything outstanding and drops the window to one packet; after
//! [`MAX_TIMEOUTS`] consecutive timeouts ([`MAX_SYN_RETRANSMITS`] for the SYN) the connection
//! ends with [`CloseReason::TimedOut`].
//!
//! Windows: the sender keeps bytes in flight under the congestion window and the peer's
//! advertised window (`wnd_size`); when the peer's window is closed and nothing is in flight, a
//! probe packet goes out after [`ZERO_WINDOW_PROBE`]. We advertise our free receive space.
//!
//! Ending: [`Socket::close`] sends `ST_FIN` once the send buffer is drained. The peer's FIN ends
//! the read side once everything before it is delivered ([`Event::ReadClosed`]). When both have
//! happened and our FIN is acknowledged the socket is [`CloseReason::Finished`], and for
//! [`TIME_WAIT`] it still acknowledges resent packets (our last ACK may have been lost) before
//! it is drained. `ST_RESET` ends at
//! once. A socket whose peer goes silent after our FIN was acknowledged, or an accepted socket
//! that never hears from its initiator, times out after [`IDLE_TIMEOUT`].
//!
//! Bounds: the send buffer holds at most [`SEND_BUFFER_BYTES`]; at most [`MAX_OUTSTANDING`]
//! packets of at most [`MAX_PAYLOAD`] bytes await acknowledgement; the receive side holds at most
//! [`RECV_BUFFER_BYTES`] in at most [`MAX_REORDER_PACKETS`] out-of-order packets. Datagrams are at
//! most [`PACKET_SIZE`] bytes. Events are flags, so the event queue is bounded too.
//!
//! # Driving it
//!
//! Getters; inputs [`Socket::handle_datagram`] and [`Socket::handle_timeout`]; commands
//! [`Socket::write`], [`Socket::read`], [`Socket::close`]; outputs [`Socket::poll_transmit`],
//! [`Socket::poll_event`], [`Socket::poll_timeout`]. After every input or command, drain
//! `poll_transmit` until `None` and `poll_event` until `None`, then wake at `poll_timeout`.
//! Early or repeated `handle_timeout` calls are harmless.

use core::time::Duration;
use std::collections::VecDeque;

use crate::rng::Rng;
use crate::time::Instant;
use crate::utp::congestion::Congestion;
use crate::utp::packet::{HEADER_LEN, Header, Packet, PacketType, sack_bit};
use crate::utp::recv::{Arrival, ReceiveBuffer};
use crate::utp::seq::Seq;

pub use crate::utp::recv::{MAX_REORDER_PACKETS, MAX_SACK_BYTES, RECV_BUFFER_BYTES};

/// The largest datagram we send, in bytes: safe on IPv4 paths without MTU probing.
pub const PACKET_SIZE: usize = 1400;

/// The most payload one packet carries (the packet size less the header).
pub const MAX_PAYLOAD: usize = PACKET_SIZE - HEADER_LEN;

/// The most bytes [`Socket::write`] buffers before they are sent.
pub const SEND_BUFFER_BYTES: usize = 1 << 20;

/// The most packets awaiting acknowledgement.
pub const MAX_OUTSTANDING: usize = 1024;

/// How many duplicate ACKs, or later packets selectively acknowledged, declare a packet lost.
pub const DUP_ACK_LIMIT: usize = 3;

/// Consecutive retransmission timeouts after which an established connection is given up.
pub const MAX_TIMEOUTS: u32 = 6;

/// SYN retransmissions before a connect is given up (with the 1 s initial RTO doubling: about
/// 15 s in all).
pub const MAX_SYN_RETRANSMITS: u32 = 3;

/// How long a closed window may stall a sender with nothing in flight before it sends a probe,
/// and how often a probe the closed window kept out is resent (without back-off: a peer that
/// answers is alive; [`MAX_TIMEOUTS`] unanswered probes in a row end the connection).
pub const ZERO_WINDOW_PROBE: Duration = Duration::from_secs(1);

/// How long a peer may stay silent while we wait for it: an accepted connection before the
/// initiator's first packet after its SYN, and a connection whose FIN was acknowledged before
/// the peer's FIN.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a finished socket stays to acknowledge resent packets before it is drained.
pub const TIME_WAIT: Duration = Duration::from_secs(10);

/// Why a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// Both streams ended: the peer's FIN arrived with everything before it, and ours was
    /// acknowledged.
    Finished,
    /// The peer sent `ST_RESET`.
    Reset,
    /// No answer: the SYN went unanswered [`MAX_SYN_RETRANSMITS`] times, a packet timed out
    /// [`MAX_TIMEOUTS`] times running, or the peer stayed silent for [`IDLE_TIMEOUT`].
    TimedOut,
}

/// What a socket tells its user; see [`Socket::poll_event`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// The handshake finished: the initiator got the acceptor's `ST_STATE`, or the acceptor
    /// answered the SYN.
    Connected,
    /// New in-order bytes can be read.
    Readable,
    /// Room came back in the send buffer after a write that did not take everything.
    Writable,
    /// The peer's stream ended: everything before its FIN was delivered.
    ReadClosed,
    /// The connection ended.
    Closed(CloseReason),
}

/// Why [`Socket::write`] took nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// [`Socket::close`] was called: the stream is ending.
    #[error("the stream was closed for writing")]
    Closing,
    /// The connection has ended.
    #[error("the connection has ended")]
    Closed,
}

/// Which end opened the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Sent the SYN.
    Initiator,
    /// Answered a SYN.
    Acceptor,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    SynSent,
    Connected,
    Closed(CloseReason),
}

/// The timers: one table of deadlines, the earliest is `poll_timeout`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Timer {
    Retransmit,
    ZeroWindow,
    Idle,
    Drain,
}

const TIMERS: [Timer; 4] = [
    Timer::Retransmit,
    Timer::ZeroWindow,
    Timer::Idle,
    Timer::Drain,
];

/// A packet that consumed a sequence number and awaits acknowledgement.
#[derive(Debug)]
struct Sent {
    ty: PacketType,
    payload: Vec<u8>,
    sent_at: Instant,
    transmissions: u32,
    /// Not counted in flight: to be (re)sent.
    need_resend: bool,
    /// To be resent regardless of the windows (a fast retransmit).
    forced: bool,
    /// Already fast-retransmitted since its last timeout.
    fast_resent: bool,
}

/// Counters for tests, logs and the driver's statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SocketStats {
    /// Datagrams sent.
    pub packets_sent: u64,
    /// Packets resent after a timeout.
    pub timeout_resends: u64,
    /// Packets resent by fast retransmit (duplicate or selective ACKs).
    pub fast_resends: u64,
    /// Datagrams received that did not decode, or were invalid for this connection.
    pub invalid_received: u64,
    /// Data packets received that were already delivered or buffered.
    pub duplicates_received: u64,
}

/// One uTP connection: see the module docs.
#[derive(Debug)]
pub struct Socket {
    role: Role,
    state: State,
    /// The acceptor's record of the SYN it answered, to answer it again if resent, until the
    /// initiator's first other packet.
    peer_syn: Option<Seq>,
    /// The acceptor owes a resent SYN its `ST_STATE`.
    syn_ack_pending: bool,
    /// Our first sequence number: what an `ST_STATE` answering a SYN names.
    isn: Seq,
    confirmed: bool,
    recv_id: u16,
    send_id: u16,
    /// The next sequence number to use.
    seq_nr: Seq,
    /// The last sequence number the peer acknowledged cumulatively.
    acked: Seq,
    /// Slot `i` is packet `acked + 1 + i`; `None` once selectively acknowledged.
    outstanding: VecDeque<Option<Sent>>,
    in_flight: usize,
    pending_resends: usize,
    send_buf: VecDeque<u8>,
    recv: ReceiveBuffer,
    cc: Congestion,
    peer_wnd: usize,
    reply_micros: u32,
    dup_acks: usize,
    /// Losses of packets up to this number do not cut the window again.
    loss_seq: Seq,
    timeouts: u32,
    ack_pending: bool,
    advertised_wnd: usize,
    probe: bool,
    close_requested: bool,
    fin_seq: Option<Seq>,
    write_blocked: bool,
    timers: [Option<Instant>; TIMERS.len()],
    events: Events,
    stats: SocketStats,
}

/// Pending events, one flag each.
#[derive(Debug, Default)]
struct Events {
    connected: bool,
    readable: bool,
    writable: bool,
    read_closed: bool,
    closed: Option<CloseReason>,
}

impl Socket {
    fn new(role: Role, recv_id: u16, send_id: u16, seq_nr: Seq, ack_nr: Seq) -> Socket {
        Socket {
            role,
            state: State::SynSent,
            peer_syn: None,
            syn_ack_pending: false,
            isn: seq_nr,
            confirmed: false,
            recv_id,
            send_id,
            seq_nr,
            acked: seq_nr.minus(1),
            outstanding: VecDeque::new(),
            in_flight: 0,
            pending_resends: 0,
            send_buf: VecDeque::new(),
            recv: ReceiveBuffer::new(ack_nr),
            cc: Congestion::new(),
            peer_wnd: PACKET_SIZE,
            reply_micros: 0,
            dup_acks: 0,
            loss_seq: seq_nr.minus(1),
            timeouts: 0,
            ack_pending: false,
            advertised_wnd: RECV_BUFFER_BYTES,
            probe: false,
            close_requested: false,
            fin_seq: None,
            write_blocked: false,
            timers: [None; TIMERS.len()],
            events: Events::default(),
            stats: SocketStats::default(),
        }
    }

    /// Opens a connection with a random receive id; the SYN is the first `poll_transmit`.
    pub fn connect(rng: &mut Rng) -> Socket {
        let recv_id = rng.next_u32() as u16;
        Self::connect_with_id(rng, recv_id)
    }

    /// Opens a connection receiving on `recv_id` (a multiplexer picks one not in use).
    pub fn connect_with_id(rng: &mut Rng, recv_id: u16) -> Socket {
        let seq = Seq(rng.next_u32() as u16);
        let mut s = Socket::new(
            Role::Initiator,
            recv_id,
            recv_id.wrapping_add(1),
            seq,
            Seq(0),
        );
        s.push_outstanding(PacketType::Syn, Vec::new());
        s
    }

    /// Answers the SYN `syn` (a packet of type [`PacketType::Syn`]; anything else gives `None`):
    /// the socket is connected and its first `poll_transmit` is the `ST_STATE` reply.
    pub fn accept(now: Instant, rng: &mut Rng, syn: &Packet<'_>) -> Option<Socket> {
        let h = &syn.header;
        if h.ty != PacketType::Syn {
            return None;
        }
        let seq = Seq(rng.next_u32() as u16);
        let id = h.connection_id;
        let mut s = Socket::new(Role::Acceptor, id.wrapping_add(1), id, seq, h.seq_nr);
        s.state = State::Connected;
        s.peer_syn = Some(h.seq_nr);
        s.peer_wnd = h.wnd_size as usize;
        s.reply_micros = micros32(now).wrapping_sub(h.timestamp_micros);
        s.syn_ack_pending = true;
        s.events.connected = true;
        s.set_timer(Timer::Idle, now + IDLE_TIMEOUT);
        Some(s)
    }

    // ----- Getters -----

    /// Which end opened the connection.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The id packets to us carry.
    pub fn recv_id(&self) -> u16 {
        self.recv_id
    }

    /// The id our packets carry.
    pub fn send_id(&self) -> u16 {
        self.send_id
    }

    /// Whether the handshake finished and the connection has not ended.
    pub fn is_connected(&self) -> bool {
        self.state == State::Connected
    }

    /// Why the connection ended, once it has.
    pub fn close_reason(&self) -> Option<CloseReason> {
        match self.state {
            State::Closed(r) => Some(r),
            _ => None,
        }
    }

    /// Whether the socket has nothing left to do and can be dropped: ended, and past
    /// [`TIME_WAIT`] if it finished cleanly.
    pub fn is_drained(&self) -> bool {
        matches!(self.state, State::Closed(_)) && self.timers[Timer::Drain as usize].is_none()
    }

    /// Bytes that can be read now.
    pub fn readable_len(&self) -> usize {
        self.recv.readable_len()
    }

    /// Whether the peer's stream has ended and everything in it was delivered.
    pub fn is_read_closed(&self) -> bool {
        self.recv.at_eof()
    }

    /// Room left in the send buffer, in bytes.
    pub fn send_capacity(&self) -> usize {
        SEND_BUFFER_BYTES - self.send_buf.len()
    }

    /// Bytes written and not yet acknowledged (buffered or in packets awaiting an ACK).
    pub fn unacked_bytes(&self) -> usize {
        let packets: usize = self
            .outstanding
            .iter()
            .flatten()
            .map(|s| s.payload.len())
            .sum();
        self.send_buf.len() + packets
    }

    /// Payload bytes in flight (sent, not acknowledged, not declared lost).
    pub fn bytes_in_flight(&self) -> usize {
        self.in_flight
    }

    /// The congestion state: window, RTT, RTO, queueing delay.
    pub fn congestion(&self) -> &Congestion {
        &self.cc
    }

    /// The peer's last advertised receive window, in bytes.
    pub fn peer_window(&self) -> usize {
        self.peer_wnd
    }

    /// Counters.
    pub fn stats(&self) -> SocketStats {
        self.stats
    }

    /// The `ST_RESET` that ends this connection forcefully (BEP 29), as the peer takes it: on
    /// the id our packets carry, with our next sequence number, acknowledging the last packet
    /// received in order. Nothing changes here; the caller forgets the socket.
    pub(crate) fn reset_packet(&self, now: Instant) -> Vec<u8> {
        let packet = Packet {
            header: Header {
                ty: PacketType::Reset,
                connection_id: self.send_id,
                timestamp_micros: micros32(now),
                timestamp_difference_micros: self.reply_micros,
                wnd_size: 0,
                seq_nr: self.seq_nr,
                ack_nr: self.recv.ack_nr(),
            },
            sack: None,
            payload: &[],
        };
        let mut out = Vec::with_capacity(packet.encoded_len());
        packet.encode(&mut out);
        out
    }

    // ----- Inputs -----

    /// Takes one datagram addressed to this connection.
    pub fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) {
        match Packet::decode(datagram) {
            Ok(packet) => self.handle_packet(now, &packet),
            Err(_) => self.stats.invalid_received += 1,
        }
    }

    /// Takes one decoded packet addressed to this connection.
    pub fn handle_packet(&mut self, now: Instant, p: &Packet<'_>) {
        let h = &p.header;
        match (self.state, h.ty) {
            (State::Closed(CloseReason::Finished), PacketType::Data | PacketType::Fin) => {
                // Time-wait: the peer missed our last ACK and resends; everything it sent
                // arrived, so acknowledge it all again.
                self.ack_pending |= !self.is_drained();
                return;
            }
            (State::Closed(_), _) => return,
            (_, PacketType::Syn) => {
                // A resent SYN: our ST_STATE was lost.
                self.syn_ack_pending |= self.peer_syn == Some(h.seq_nr);
                return;
            }
            (State::SynSent, ty)
                if h.ack_nr != self.acked.next()
                    || ty != PacketType::State && ty != PacketType::Reset =>
            {
                self.stats.invalid_received += 1;
                return;
            }
            _ => {}
        }
        // An ACK of a packet we never sent: not this connection's peer.
        if self.seq_nr.minus(1).precedes(h.ack_nr) {
            self.stats.invalid_received += 1;
            return;
        }
        if h.ty == PacketType::Reset {
            self.end(now, CloseReason::Reset);
            return;
        }
        if self.state == State::SynSent {
            self.state = State::Connected;
            self.recv = ReceiveBuffer::new(h.seq_nr.minus(1));
            self.events.connected = true;
        }
        self.heard_from_peer(now, p);
        self.handle_ack(now, p);
        if matches!(h.ty, PacketType::Data | PacketType::Fin) {
            self.take_payload(p);
        }
        self.check_finished(now);
    }

    /// Fires the timers that are due; harmless when none is.
    pub fn handle_timeout(&mut self, now: Instant) {
        for timer in TIMERS {
            let slot = &mut self.timers[timer as usize];
            if slot.is_some_and(|t| t <= now) {
                *slot = None;
                self.fire(now, timer);
            }
        }
    }

    // ----- Commands -----

    /// Buffers as much of `bytes` as fits in the send buffer; returns how much it took.
    /// When it takes less than everything, an [`Event::Writable`] follows once room comes back.
    pub fn write(&mut self, bytes: &[u8]) -> Result<usize, WriteError> {
        if matches!(self.state, State::Closed(_)) {
            return Err(WriteError::Closed);
        }
        if self.close_requested {
            return Err(WriteError::Closing);
        }
        let n = bytes.len().min(self.send_capacity());
        self.send_buf.extend(&bytes[..n]);
        self.write_blocked |= n < bytes.len();
        Ok(n)
    }

    /// Moves up to `out.len()` in-order bytes into `out`; returns how many (0 when none are
    /// ready; [`Socket::is_read_closed`] says whether more can come).
    pub fn read(&mut self, out: &mut [u8]) -> usize {
        let n = self.recv.read(out);
        // Tell a sender stalled on our window that it opened.
        if self.state == State::Connected
            && self.recv.free_bytes() >= self.advertised_wnd + 4 * MAX_PAYLOAD
        {
            self.ack_pending = true;
        }
        n
    }

    /// Ends our stream: an `ST_FIN` follows the data already written. Reading goes on until
    /// the peer's FIN.
    pub fn close(&mut self) {
        self.close_requested = true;
    }

    // ----- Outputs -----

    /// The next datagram to send, if any.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        let datagram = match self.state {
            State::Closed(_) => self.take_ack(now),
            _ => self
                .take_syn_ack(now)
                .or_else(|| self.resend(now))
                .or_else(|| self.send_new(now))
                .or_else(|| self.take_ack(now)),
        }?;
        self.stats.packets_sent += 1;
        Some(datagram)
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        let e = &mut self.events;
        if std::mem::take(&mut e.connected) {
            return Some(Event::Connected);
        }
        if std::mem::take(&mut e.readable) {
            return Some(Event::Readable);
        }
        if std::mem::take(&mut e.writable) {
            return Some(Event::Writable);
        }
        if std::mem::take(&mut e.read_closed) {
            return Some(Event::ReadClosed);
        }
        e.closed.take().map(Event::Closed)
    }

    /// When [`Socket::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.iter().flatten().min().copied()
    }

    // ----- Internals: receiving -----

    /// Bookkeeping for any valid packet: liveness, the delay echo, the peer's window.
    fn heard_from_peer(&mut self, now: Instant, p: &Packet<'_>) {
        let h = &p.header;
        if self.role == Role::Acceptor && !self.confirmed {
            self.confirmed = true;
            self.peer_syn = None;
            self.timers[Timer::Idle as usize] = None;
        }
        // Any valid packet shows the peer is alive (as libtorrent counts it).
        self.timeouts = 0;
        if self.fin_acked() && !self.recv.at_eof() {
            self.set_timer(Timer::Idle, now + IDLE_TIMEOUT);
        }
        self.reply_micros = micros32(now).wrapping_sub(h.timestamp_micros);
        if h.timestamp_difference_micros != 0 {
            self.cc.on_delay_sample(now, h.timestamp_difference_micros);
        }
        self.peer_wnd = h.wnd_size as usize;
        if self.peer_wnd >= MAX_PAYLOAD {
            self.timers[Timer::ZeroWindow as usize] = None;
        }
    }

    /// Cumulative, duplicate and selective acknowledgement; loss detection; the window update.
    fn handle_ack(&mut self, now: Instant, p: &Packet<'_>) {
        let h = &p.header;
        let in_flight_before = self.in_flight;
        let mut acked_bytes = 0;
        if h.ack_nr == self.acked && h.ty == PacketType::State && !self.outstanding.is_empty() {
            self.dup_acks += 1;
        }
        if self.acked.precedes(h.ack_nr) {
            for _ in 0..h.ack_nr.since(self.acked) {
                if let Some(Some(sent)) = self.outstanding.pop_front() {
                    acked_bytes += self.ack_one(now, sent);
                }
            }
            self.acked = h.ack_nr;
            self.dup_acks = 0;
        }
        if let (Some(mask), true) = (p.sack, h.ack_nr == self.acked) {
            acked_bytes += self.handle_sack(now, mask);
        }
        if self.dup_acks >= DUP_ACK_LIMIT {
            self.declare_lost(0);
        }
        if acked_bytes > 0 {
            self.cc.on_ack(acked_bytes, in_flight_before);
            let timer = (!self.outstanding.is_empty()).then(|| now + self.cc.rto());
            self.timers[Timer::Retransmit as usize] = timer;
            self.write_room_came_back();
        }
    }

    /// Acknowledges one packet; returns its payload length.
    fn ack_one(&mut self, now: Instant, sent: Sent) -> usize {
        if sent.need_resend {
            self.pending_resends -= 1;
        } else {
            self.in_flight -= sent.payload.len();
        }
        if sent.transmissions == 1 {
            self.cc.on_rtt_sample(now.saturating_since(sent.sent_at));
        }
        sent.payload.len()
    }

    /// Takes a selective ACK relative to `acked` (the packet's `ack_nr`): acknowledges the
    /// packets it marks and declares lost those with [`DUP_ACK_LIMIT`] marked packets after them.
    fn handle_sack(&mut self, now: Instant, mask: &[u8]) -> usize {
        // Bit i is packet acked + 2 + i, which is outstanding slot i + 1.
        let span = (mask.len() * 8).min(self.outstanding.len().saturating_sub(1));
        let mut acked_bytes = 0;
        let mut marked_after = 0;
        for slot in (0..=span).rev() {
            if slot > 0 && sack_bit(mask, slot - 1) {
                marked_after += 1;
                if let Some(sent) = self.outstanding[slot].take() {
                    acked_bytes += self.ack_one(now, sent);
                }
            } else if marked_after >= DUP_ACK_LIMIT {
                self.declare_lost(slot);
            }
        }
        acked_bytes
    }

    /// Marks outstanding slot `slot` for a fast retransmit, unless already done since it was
    /// last sent; cuts the window if the loss is of a packet sent after the last cut.
    fn declare_lost(&mut self, slot: usize) {
        let seq = self.acked.plus(slot as u16 + 1);
        let Some(Some(sent)) = self.outstanding.get_mut(slot) else {
            return;
        };
        if sent.fast_resent || sent.need_resend {
            return;
        }
        sent.fast_resent = true;
        sent.need_resend = true;
        sent.forced = true;
        self.in_flight -= sent.payload.len();
        self.pending_resends += 1;
        self.stats.fast_resends += 1;
        if self.loss_seq.precedes(seq) {
            self.cc.on_loss();
            self.loss_seq = self.seq_nr.minus(1);
        }
    }

    /// Takes the payload of an `ST_DATA` or `ST_FIN`.
    fn take_payload(&mut self, p: &Packet<'_>) {
        let h = &p.header;
        let was_eof = self.recv.at_eof();
        match self
            .recv
            .insert(h.seq_nr, p.payload, h.ty == PacketType::Fin)
        {
            Arrival::InOrder(n) => self.events.readable |= n > 0,
            Arrival::Duplicate => self.stats.duplicates_received += 1,
            Arrival::Buffered | Arrival::Dropped => {}
        }
        self.ack_pending = true;
        if self.recv.at_eof() && !was_eof {
            self.events.read_closed = true;
        }
    }

    fn fin_acked(&self) -> bool {
        self.fin_seq.is_some_and(|f| f.precedes_or_eq(self.acked))
    }

    /// Ends the connection cleanly once both streams have.
    fn check_finished(&mut self, now: Instant) {
        if self.state == State::Connected && self.fin_acked() {
            if self.recv.at_eof() {
                self.end(now, CloseReason::Finished);
            } else if self.timers[Timer::Idle as usize].is_none() {
                self.set_timer(Timer::Idle, now + IDLE_TIMEOUT);
            }
        }
    }

    fn end(&mut self, now: Instant, reason: CloseReason) {
        self.state = State::Closed(reason);
        self.events.closed = Some(reason);
        self.timers = [None; TIMERS.len()];
        if reason == CloseReason::Finished {
            self.set_timer(Timer::Drain, now + TIME_WAIT);
        } else {
            self.ack_pending = false;
        }
    }

    fn write_room_came_back(&mut self) {
        if self.write_blocked && self.send_capacity() > 0 {
            self.write_blocked = false;
            self.events.writable = true;
        }
    }

    // ----- Internals: timers -----

    fn set_timer(&mut self, timer: Timer, at: Instant) {
        self.timers[timer as usize] = Some(at);
    }

    fn fire(&mut self, now: Instant, timer: Timer) {
        match timer {
            Timer::Retransmit => self.on_retransmit_timeout(now),
            Timer::ZeroWindow => self.probe = true,
            Timer::Idle => self.end(now, CloseReason::TimedOut),
            Timer::Drain => {}
        }
    }

    fn on_retransmit_timeout(&mut self, now: Instant) {
        if self.outstanding.is_empty() {
            return;
        }
        self.timeouts += 1;
        let limit = match self.state {
            State::SynSent => MAX_SYN_RETRANSMITS,
            _ => MAX_TIMEOUTS,
        };
        if self.timeouts > limit {
            self.end(now, CloseReason::TimedOut);
            return;
        }
        // A packet the peer's closed window kept out is no sign of congestion: probe again at
        // the probe interval, without backing off or shrinking the window.
        let window_stall = self.peer_wnd < self.outstanding_front_len();
        if !window_stall {
            self.cc.on_timeout();
        }
        for sent in self.outstanding.iter_mut().flatten() {
            sent.fast_resent = false;
            sent.forced = false;
            if !sent.need_resend {
                sent.need_resend = true;
                self.in_flight -= sent.payload.len();
                self.pending_resends += 1;
            }
        }
        self.loss_seq = self.seq_nr.minus(1);
        let wait = if window_stall {
            ZERO_WINDOW_PROBE
        } else {
            self.cc.rto()
        };
        self.set_timer(Timer::Retransmit, now + wait);
    }

    /// The payload length of the oldest packet awaiting acknowledgement.
    fn outstanding_front_len(&self) -> usize {
        match self.outstanding.front() {
            Some(Some(sent)) => sent.payload.len(),
            _ => 0,
        }
    }

    // ----- Internals: sending -----

    /// Bytes the windows let us add in flight now.
    fn window_room(&self) -> usize {
        self.cc
            .cwnd()
            .min(self.peer_wnd)
            .saturating_sub(self.in_flight)
    }

    /// The first packet due for a resend that may go now, sent.
    fn resend(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self.pending_resends == 0 {
            return None;
        }
        let slot = self
            .outstanding
            .iter()
            .position(|s| s.as_ref().is_some_and(|s| s.need_resend))?;
        let sent = self.outstanding[slot].as_ref()?;
        if !sent.forced && self.in_flight > 0 && self.window_room() < sent.payload.len() {
            return None;
        }
        if sent.transmissions > 0 && !sent.forced {
            self.stats.timeout_resends += 1;
        }
        self.transmit_slot(now, slot)
    }

    /// Sends outstanding slot `slot` (first time or again) and counts it in flight.
    fn transmit_slot(&mut self, now: Instant, slot: usize) -> Option<Vec<u8>> {
        let seq = self.acked.plus(slot as u16 + 1);
        let sent = self.outstanding.get_mut(slot)?.as_mut()?;
        sent.need_resend = false;
        sent.forced = false;
        sent.transmissions += 1;
        sent.sent_at = now;
        let (ty, payload) = (sent.ty, std::mem::take(&mut sent.payload));
        self.pending_resends -= 1;
        self.in_flight += payload.len();
        self.probe = false;
        if self.timers[Timer::Retransmit as usize].is_none() {
            self.set_timer(Timer::Retransmit, now + self.cc.rto());
        }
        let datagram = self.build(now, ty, seq, &payload);
        if let Some(Some(sent)) = self.outstanding.get_mut(slot) {
            sent.payload = payload;
        }
        Some(datagram)
    }

    /// Packs new data (or the FIN) into a packet and sends it, if the windows allow.
    fn send_new(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self.state != State::Connected
            || self.fin_seq.is_some()
            || self.outstanding.len() >= MAX_OUTSTANDING
        {
            return None;
        }
        if self.send_buf.is_empty() {
            if !self.close_requested {
                return None;
            }
            self.fin_seq = Some(self.seq_nr);
            self.push_outstanding(PacketType::Fin, Vec::new());
            return self.transmit_slot(now, self.outstanding.len() - 1);
        }
        let mut len = self.send_buf.len().min(MAX_PAYLOAD);
        let room = self.window_room();
        if room < len {
            // With nothing in flight, send what the peer's window takes; a closed window
            // gets a one-byte probe once the probe timer fired.
            if self.in_flight > 0 || room == 0 && !self.probe {
                if self.in_flight == 0 && self.timers[Timer::ZeroWindow as usize].is_none() {
                    self.set_timer(Timer::ZeroWindow, now + ZERO_WINDOW_PROBE);
                }
                return None;
            }
            len = room.max(1);
        }
        let payload: Vec<u8> = self.send_buf.drain(..len).collect();
        self.push_outstanding(PacketType::Data, payload);
        self.write_room_came_back();
        self.transmit_slot(now, self.outstanding.len() - 1)
    }

    /// Queues a packet that consumes the next sequence number, unsent.
    fn push_outstanding(&mut self, ty: PacketType, payload: Vec<u8>) {
        self.outstanding.push_back(Some(Sent {
            ty,
            payload,
            sent_at: Instant::ZERO,
            transmissions: 0,
            need_resend: true,
            forced: false,
            fast_resent: false,
        }));
        self.pending_resends += 1;
        self.seq_nr = self.seq_nr.next();
    }

    /// The acceptor's `ST_STATE` answering a SYN (first or resent): it names our first
    /// sequence number, so the initiator's receive side starts there whatever we sent since.
    fn take_syn_ack(&mut self, now: Instant) -> Option<Vec<u8>> {
        if !std::mem::take(&mut self.syn_ack_pending) {
            return None;
        }
        Some(self.build(now, PacketType::State, self.isn, &[]))
    }

    /// An `ST_STATE` if an acknowledgement is owed.
    fn take_ack(&mut self, now: Instant) -> Option<Vec<u8>> {
        if !self.ack_pending {
            return None;
        }
        Some(self.build(now, PacketType::State, self.seq_nr, &[]))
    }

    /// Encodes a packet of ours with the current acknowledgement, window and delay echo; any
    /// packet we send carries the acknowledgement, so none is owed after it.
    fn build(&mut self, now: Instant, ty: PacketType, seq: Seq, payload: &[u8]) -> Vec<u8> {
        let wnd = self.recv.free_bytes();
        self.advertised_wnd = wnd;
        self.ack_pending = false;
        let mut scratch = [0; MAX_SACK_BYTES];
        let room = PACKET_SIZE.saturating_sub(HEADER_LEN + 2 + payload.len());
        let sack = match ty {
            PacketType::Syn => None,
            _ => self.recv.sack(&mut scratch, room),
        };
        let packet = Packet {
            header: Header {
                ty,
                connection_id: if ty == PacketType::Syn {
                    self.recv_id
                } else {
                    self.send_id
                },
                timestamp_micros: micros32(now),
                timestamp_difference_micros: self.reply_micros,
                wnd_size: u32::try_from(wnd).unwrap_or(u32::MAX),
                seq_nr: seq,
                ack_nr: if ty == PacketType::Syn {
                    Seq(0)
                } else {
                    self.recv.ack_nr()
                },
            },
            sack,
            payload,
        };
        let mut out = Vec::with_capacity(packet.encoded_len());
        packet.encode(&mut out);
        out
    }
}

/// Our clock on the wire: microseconds, wrapping at 2^32.
fn micros32(now: Instant) -> u32 {
    now.as_micros() as u32
}
