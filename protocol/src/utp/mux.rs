//! [`Mux`]: many uTP connections on one UDP socket, routed by the remote address and the
//! connection id (BEP 29).
//!
//! Routing of a datagram from `addr` with connection id `id`:
//! - `ST_SYN`: to the socket keyed `(addr, id + 1)` if there is one (a resent SYN); else a new
//!   acceptor socket, announced by [`Mux::poll_incoming`]. Beyond [`Mux::max_sockets`] sockets a
//!   SYN is answered with `ST_RESET`, so an honest initiator fails at once rather than after its
//!   retransmissions (a reset is no larger than the SYN, so this amplifies nothing).
//! - `ST_RESET`: to the socket whose receive id is `id`, or whose send id is `id` and receive id
//!   `id ± 1` (the peer echoes the id of the packet it rejected, as libutp does); never answered.
//! - anything else: to the socket keyed `(addr, id)`; with none, the stray is answered with
//!   `ST_RESET` carrying the same id and acknowledging its sequence number.
//!
//! Undecodable datagrams are dropped. The address type is the caller's (`SocketAddr` in the
//! runtime); it only needs an order.
//!
//! Bounds: at most `max_sockets` sockets, each bounded as [`Socket`] documents; at most
//! [`MAX_PENDING_RESETS`] resets queued (more are dropped); the incoming queue holds only live
//! sockets' handles. A socket is removed once it is drained and its events were polled.
//!
//! Driving it: [`Mux::handle_datagram`] and [`Mux::handle_timeout`] in; commands on a socket
//! through [`Mux::socket_mut`], [`Mux::connect`], [`Mux::remove`] and [`Mux::refuse`]; then drain
//! [`Mux::poll_transmit`], [`Mux::poll_incoming`] and [`Mux::poll_event`], and wake at
//! [`Mux::poll_timeout`].

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::rng::Rng;
use crate::time::Instant;
use crate::utp::packet::{Header, Packet, PacketType};
use crate::utp::seq::Seq;
use crate::utp::socket::{Event, Socket};

/// The most `ST_RESET` replies waiting to be sent; more are dropped.
pub const MAX_PENDING_RESETS: usize = 64;

/// How many random receive ids [`Mux::connect`] tries before giving up.
const ID_ATTEMPTS: usize = 16;

/// A socket's handle in its [`Mux`]; never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SocketId(pub u64);

#[derive(Debug)]
struct Entry<A> {
    addr: A,
    socket: Socket,
}

/// Counters of what the multiplexer did with datagrams that reached no socket, and of the
/// resets it sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MuxStats {
    /// Datagrams that did not decode as uTP.
    pub undecodable: u64,
    /// Strays, refused SYNs and refused connections ([`Mux::refuse`]) answered with
    /// `ST_RESET`.
    pub resets_sent: u64,
    /// Resets not sent because [`MAX_PENDING_RESETS`] were already queued.
    pub resets_dropped: u64,
    /// `ST_RESET`s that matched no socket.
    pub stray_resets: u64,
}

/// The sockets of one UDP socket: see the module docs.
#[derive(Debug)]
pub struct Mux<A> {
    rng: Rng,
    max_sockets: usize,
    sockets: BTreeMap<SocketId, Entry<A>>,
    routes: BTreeMap<(A, u16), SocketId>,
    next_id: u64,
    /// Where the next `poll_transmit` starts looking, so every socket gets its turn.
    cursor: SocketId,
    resets: VecDeque<(A, Vec<u8>)>,
    incoming: VecDeque<SocketId>,
    touched: BTreeSet<SocketId>,
    stats: MuxStats,
}

impl<A: Ord + Clone> Mux<A> {
    /// An empty multiplexer holding at most `max_sockets` sockets, its ids and sequence numbers
    /// drawn from `seed`.
    pub fn new(seed: u64, max_sockets: usize) -> Self {
        Mux {
            rng: Rng::new(seed),
            max_sockets,
            sockets: BTreeMap::new(),
            routes: BTreeMap::new(),
            next_id: 0,
            cursor: SocketId(0),
            resets: VecDeque::new(),
            incoming: VecDeque::new(),
            touched: BTreeSet::new(),
            stats: MuxStats::default(),
        }
    }

    // ----- Getters -----

    /// The most sockets held at once.
    pub fn max_sockets(&self) -> usize {
        self.max_sockets
    }

    /// How many sockets are held.
    pub fn len(&self) -> usize {
        self.sockets.len()
    }

    /// Whether no socket is held.
    pub fn is_empty(&self) -> bool {
        self.sockets.is_empty()
    }

    /// The handles of the sockets held, in order.
    pub fn ids(&self) -> impl Iterator<Item = SocketId> + '_ {
        self.sockets.keys().copied()
    }

    /// The socket `id`, while it is held.
    pub fn socket(&self, id: SocketId) -> Option<&Socket> {
        self.sockets.get(&id).map(|e| &e.socket)
    }

    /// The remote address of socket `id`.
    pub fn remote(&self, id: SocketId) -> Option<&A> {
        self.sockets.get(&id).map(|e| &e.addr)
    }

    /// Counters.
    pub fn stats(&self) -> MuxStats {
        self.stats
    }

    // ----- Commands -----

    /// The socket `id`, for commands (`write`, `read`, `close`); its events come out of
    /// [`Mux::poll_event`].
    pub fn socket_mut(&mut self, id: SocketId) -> Option<&mut Socket> {
        let entry = self.sockets.get_mut(&id)?;
        self.touched.insert(id);
        Some(&mut entry.socket)
    }

    /// Opens a connection to `addr`; `None` when [`Mux::max_sockets`] are held or no free
    /// receive id was found.
    pub fn connect(&mut self, addr: A) -> Option<SocketId> {
        if self.sockets.len() >= self.max_sockets {
            return None;
        }
        let recv_id = (0..ID_ATTEMPTS)
            .map(|_| self.rng.next_u32() as u16)
            .find(|&id| !self.routes.contains_key(&(addr.clone(), id)))?;
        let socket = Socket::connect_with_id(&mut self.rng, recv_id);
        Some(self.insert(addr, socket))
    }

    /// Forgets socket `id` at once, sending nothing more for it (a connect given up before it
    /// was answered: a late answer is then a stray, answered with `ST_RESET`).
    pub fn remove(&mut self, id: SocketId) {
        if let Some(entry) = self.sockets.remove(&id) {
            let key = (entry.addr, entry.socket.recv_id());
            if self.routes.get(&key) == Some(&id) {
                self.routes.remove(&key);
            }
            self.touched.remove(&id);
        }
    }

    /// Refuses socket `id` (an accepted connection its user does not want): an `ST_RESET`
    /// goes to the peer (BEP 29's forceful end, so the initiator fails at once instead of
    /// talking to a FIN) and the socket is forgotten, sending nothing else. Like every reset it
    /// waits in the reset queue, and is dropped when [`MAX_PENDING_RESETS`] are waiting.
    pub fn refuse(&mut self, now: Instant, id: SocketId) {
        let Some(entry) = self.sockets.get(&id) else {
            return;
        };
        if self.resets.len() >= MAX_PENDING_RESETS {
            self.stats.resets_dropped += 1;
        } else {
            let reset = entry.socket.reset_packet(now);
            self.resets.push_back((entry.addr.clone(), reset));
            self.stats.resets_sent += 1;
        }
        self.remove(id);
    }

    // ----- Inputs -----

    /// Takes one datagram from `from` (already known to be uTP, see
    /// [`crate::utp::packet::classify`]).
    pub fn handle_datagram(&mut self, now: Instant, from: A, datagram: &[u8]) {
        let Ok(packet) = Packet::decode(datagram) else {
            self.stats.undecodable += 1;
            return;
        };
        let id = packet.header.connection_id;
        let target = match packet.header.ty {
            PacketType::Syn => self.route(&from, id.wrapping_add(1)),
            PacketType::Reset => self.route_reset(&from, id),
            _ => self.route(&from, id),
        };
        if let Some(target) = target {
            if let Some(entry) = self.sockets.get_mut(&target) {
                entry.socket.handle_packet(now, &packet);
                self.touched.insert(target);
            }
            return;
        }
        match packet.header.ty {
            PacketType::Reset => self.stats.stray_resets += 1,
            PacketType::Syn if self.sockets.len() < self.max_sockets => {
                if let Some(socket) = Socket::accept(now, &mut self.rng, &packet) {
                    let id = self.insert(from, socket);
                    self.incoming.push_back(id);
                }
            }
            _ => self.queue_reset(now, from, &packet.header),
        }
    }

    /// Fires every socket's due timers and removes the sockets that are done.
    pub fn handle_timeout(&mut self, now: Instant) {
        for (&id, entry) in &mut self.sockets {
            if entry.socket.poll_timeout().is_some_and(|t| t <= now) {
                entry.socket.handle_timeout(now);
                self.touched.insert(id);
            }
        }
        self.prune();
    }

    // ----- Outputs -----

    /// The next datagram to send and where: queued resets first, then each socket in turn.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<(A, Vec<u8>)> {
        if let Some(reset) = self.resets.pop_front() {
            return Some(reset);
        }
        let cursor = self.cursor;
        let (id, transmit) = first_transmit(self.sockets.range_mut(cursor..), now)
            .or_else(|| first_transmit(self.sockets.range_mut(..cursor), now))?;
        self.cursor = SocketId(id.0 + 1);
        Some(transmit)
    }

    /// The next socket opened by a peer's SYN.
    pub fn poll_incoming(&mut self) -> Option<SocketId> {
        while let Some(id) = self.incoming.pop_front() {
            if self.sockets.contains_key(&id) {
                return Some(id);
            }
        }
        None
    }

    /// The next event of any socket touched since the last call; a socket whose connection has
    /// ended is removed once its events are taken and it is drained.
    pub fn poll_event(&mut self) -> Option<(SocketId, Event)> {
        while let Some(&id) = self.touched.first() {
            match self.sockets.get_mut(&id).map(|e| e.socket.poll_event()) {
                Some(Some(event)) => return Some((id, event)),
                Some(None) => {
                    self.touched.remove(&id);
                    self.remove_if_drained(id);
                }
                None => {
                    self.touched.remove(&id);
                }
            }
        }
        None
    }

    /// When [`Mux::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.sockets
            .values()
            .filter_map(|e| e.socket.poll_timeout())
            .min()
    }

    // ----- Internals -----

    fn insert(&mut self, addr: A, socket: Socket) -> SocketId {
        let id = SocketId(self.next_id);
        self.next_id += 1;
        self.routes.insert((addr.clone(), socket.recv_id()), id);
        self.sockets.insert(id, Entry { addr, socket });
        self.touched.insert(id);
        id
    }

    fn route(&self, from: &A, recv_id: u16) -> Option<SocketId> {
        self.routes.get(&(from.clone(), recv_id)).copied()
    }

    /// The socket a reset with id `id` is for: receive id `id`, or send id `id` with receive
    /// id one away.
    fn route_reset(&self, from: &A, id: u16) -> Option<SocketId> {
        let sends_on = |target: SocketId| {
            self.sockets
                .get(&target)
                .is_some_and(|e| e.socket.send_id() == id)
        };
        self.route(from, id).or_else(|| {
            [id.wrapping_add(1), id.wrapping_sub(1)]
                .into_iter()
                .filter_map(|recv| self.route(from, recv))
                .find(|&t| sends_on(t))
        })
    }

    /// Queues an `ST_RESET` answering `stray` from `to`.
    fn queue_reset(&mut self, now: Instant, to: A, stray: &Header) {
        if self.resets.len() >= MAX_PENDING_RESETS {
            self.stats.resets_dropped += 1;
            return;
        }
        let reset = Packet {
            header: Header {
                ty: PacketType::Reset,
                connection_id: stray.connection_id,
                timestamp_micros: now.as_micros() as u32,
                timestamp_difference_micros: 0,
                wnd_size: 0,
                seq_nr: Seq(self.rng.next_u32() as u16),
                ack_nr: stray.seq_nr,
            },
            sack: None,
            payload: &[],
        };
        let mut out = Vec::new();
        reset.encode(&mut out);
        self.resets.push_back((to, out));
        self.stats.resets_sent += 1;
    }

    fn prune(&mut self) {
        let done: Vec<SocketId> = self
            .sockets
            .iter()
            .filter(|(id, e)| e.socket.is_drained() && !self.touched.contains(id))
            .map(|(&id, _)| id)
            .collect();
        for id in done {
            self.remove_if_drained(id);
        }
    }

    fn remove_if_drained(&mut self, id: SocketId) {
        if let Some(entry) = self.sockets.get(&id)
            && entry.socket.is_drained()
        {
            let key = (entry.addr.clone(), entry.socket.recv_id());
            if self.routes.get(&key) == Some(&id) {
                self.routes.remove(&key);
            }
            self.sockets.remove(&id);
        }
    }
}

/// The first socket in `sockets` with a datagram to send, and it.
fn first_transmit<'s, A: Clone + 's>(
    sockets: impl Iterator<Item = (&'s SocketId, &'s mut Entry<A>)>,
    now: Instant,
) -> Option<(SocketId, (A, Vec<u8>))> {
    for (&id, entry) in sockets {
        if let Some(datagram) = entry.socket.poll_transmit(now) {
            return Some((id, (entry.addr.clone(), datagram)));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::utp::socket::CloseReason;

    const A: u8 = 1;
    const B: u8 = 2;

    /// Passes datagrams between `a` (address A) and `b` (address B) at `now` until neither has
    /// any; returns how many crossed.
    fn exchange(now: Instant, a: &mut Mux<u8>, b: &mut Mux<u8>) -> usize {
        let mut crossed = 0;
        for _ in 0..10_000 {
            let mut quiet = true;
            while let Some((to, d)) = a.poll_transmit(now) {
                assert_eq!(to, B);
                b.handle_datagram(now, A, &d);
                (crossed, quiet) = (crossed + 1, false);
            }
            while let Some((to, d)) = b.poll_transmit(now) {
                assert_eq!(to, A);
                a.handle_datagram(now, B, &d);
                (crossed, quiet) = (crossed + 1, false);
            }
            if quiet {
                return crossed;
            }
        }
        panic!("the muxes never went quiet");
    }

    fn events(m: &mut Mux<u8>) -> Vec<(SocketId, Event)> {
        std::iter::from_fn(|| m.poll_event()).collect()
    }

    #[test]
    fn connects_transfers_and_forgets_sockets() {
        // Proves a SYN creates an announced socket, bytes cross both ways through the routing,
        // and both sockets are removed once finished and drained.
        let now = Instant::from_micros(1);
        let (mut a, mut b) = (Mux::new(1, 4), Mux::new(2, 4));
        let client = a.connect(B).unwrap();
        a.socket_mut(client).unwrap().write(b"ping").unwrap();
        exchange(now, &mut a, &mut b);
        let server = b.poll_incoming().expect("incoming");
        assert_eq!(b.remote(server), Some(&A));
        assert_eq!(a.socket(client).unwrap().readable_len(), 0);
        let mut buf = [0; 16];
        assert_eq!(b.socket_mut(server).unwrap().read(&mut buf), 4);
        assert_eq!(&buf[..4], b"ping");
        b.socket_mut(server).unwrap().write(b"pong").unwrap();
        b.socket_mut(server).unwrap().close();
        a.socket_mut(client).unwrap().close();
        exchange(now, &mut a, &mut b);
        assert_eq!(a.socket_mut(client).unwrap().read(&mut buf), 4);
        assert_eq!(&buf[..4], b"pong");
        assert!(events(&mut a).contains(&(client, Event::Closed(CloseReason::Finished))));
        assert!(events(&mut b).contains(&(server, Event::Closed(CloseReason::Finished))));
        let later = now + crate::utp::socket::TIME_WAIT;
        a.handle_timeout(later);
        b.handle_timeout(later);
        events(&mut a);
        events(&mut b);
        assert!(a.is_empty() && b.is_empty());
    }

    #[test]
    fn a_stray_is_reset_and_the_reset_reaches_its_socket() {
        // Proves a packet for no socket is answered with ST_RESET, which the other side routes
        // by send id to the socket that sent the stray and closes it; resets are never answered.
        let now = Instant::from_micros(1);
        let (mut a, mut b) = (Mux::new(1, 4), Mux::new(2, 4));
        let client = a.connect(B).unwrap();
        exchange(now, &mut a, &mut b);
        assert!(a.socket(client).unwrap().is_connected());
        let mut restarted = Mux::new(3, 4); // B lost its state
        a.socket_mut(client).unwrap().write(b"anyone?").unwrap();
        exchange(now, &mut a, &mut restarted);
        assert_eq!(restarted.stats().resets_sent, 1);
        assert!(events(&mut a).contains(&(client, Event::Closed(CloseReason::Reset))));
        assert!(a.is_empty());
        assert_eq!(restarted.stats().stray_resets, 0);
        // A reset for nobody is dropped silently.
        let (_, reset) = {
            let mut m = Mux::new(4, 4);
            m.handle_datagram(now, B, &stray_data());
            m.poll_transmit(now).unwrap()
        };
        restarted.handle_datagram(now, A, &reset);
        assert_eq!(restarted.poll_transmit(now), None);
        assert_eq!(restarted.stats().stray_resets, 1);
    }

    fn stray_data() -> Vec<u8> {
        let mut out = Vec::new();
        Packet {
            header: Header {
                ty: PacketType::Data,
                connection_id: 77,
                timestamp_micros: 0,
                timestamp_difference_micros: 0,
                wnd_size: 0,
                seq_nr: Seq(9),
                ack_nr: Seq(0),
            },
            sack: None,
            payload: b"x",
        }
        .encode(&mut out);
        out
    }

    #[test]
    fn a_full_mux_refuses_syns_with_a_reset() {
        // Proves the socket bound: past it a SYN is answered with ST_RESET and the initiator
        // fails at once instead of retransmitting.
        let now = Instant::from_micros(1);
        let (mut a, mut b) = (Mux::new(1, 4), Mux::new(2, 1));
        let first = a.connect(B).unwrap();
        let second = a.connect(B).unwrap();
        exchange(now, &mut a, &mut b);
        assert_eq!(b.len(), 1);
        assert!(a.socket(first).unwrap().is_connected());
        assert!(events(&mut a).contains(&(second, Event::Closed(CloseReason::Reset))));
        assert_eq!(a.connect(B).map(|_| ()), Some(()));
        let mut tiny = Mux::<u8>::new(5, 0);
        assert_eq!(tiny.connect(B), None);
    }

    #[test]
    fn a_refused_connection_is_reset_and_its_initiator_fails_at_once() {
        // Proves `refuse` answers an accepted SYN with ST_RESET alone (no ST_STATE, no FIN):
        // the initiator's connect ends as reset, and the acceptor holds nothing for it.
        let now = Instant::from_micros(1);
        let (mut a, mut b) = (Mux::new(1, 4), Mux::new(2, 4));
        let client = a.connect(B).unwrap();
        let (_, syn) = a.poll_transmit(now).unwrap();
        b.handle_datagram(now, A, &syn);
        let server = b.poll_incoming().expect("incoming");
        b.refuse(now, server);
        assert!(b.is_empty());
        let (to, reset) = b.poll_transmit(now).expect("a reset");
        assert_eq!(to, A);
        assert_eq!(Packet::decode(&reset).unwrap().header.ty, PacketType::Reset);
        assert_eq!(b.poll_transmit(now), None);
        assert_eq!(b.stats().resets_sent, 1);
        a.handle_datagram(now, B, &reset);
        assert!(events(&mut a).contains(&(client, Event::Closed(CloseReason::Reset))));
        assert!(a.is_empty());
    }

    #[test]
    fn undecodable_datagrams_are_dropped() {
        // Proves garbage reaches no socket and gets no answer.
        let now = Instant::from_micros(1);
        let mut m = Mux::<u8>::new(1, 4);
        m.handle_datagram(
            now,
            A,
            b"d1:ad2:id20:xxxxxxxxxxxxxxxxxxxxe1:q4:ping1:t2:aa1:y1:qe",
        );
        m.handle_datagram(now, A, &[0x41; 5]);
        assert_eq!(m.stats().undecodable, 2);
        assert_eq!(m.poll_transmit(now), None);
        assert!(m.is_empty());
    }
}
