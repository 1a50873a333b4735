//! [`PeerList`]: every address a torrent has learned, where from, and when to dial it next.
//!
//! An address is known from the moment a tracker, the DHT, a PEX message or the user names it.
//! It is dialled when the client has room, in the order it became ready (learned, or its wait
//! over). What happens to a connection decides the next try:
//! - a connect that failed or timed out waits [`RETRY_BASE`], doubling with each failure in a
//!   row up to [`RETRY_MAX`]; after [`MAX_FAILS`] failures in a row the address is forgotten
//!   (a tracker, the DHT or PEX may name it again);
//! - a connection that opened and then closed (the peer went away, a protocol error) is tried
//!   again after [`RECONNECT_AFTER`], counting as a failure only if it ended on an error. This is
//!   what brings back a seeder that restarted on the same address with no tracker to say so;
//! - a peer banned for bad data, or one that sent bad metadata, is never dialled again;
//! - a seed is not dialled while our torrent is complete (two seeds have nothing to trade);
//! - a dial whose encryption handshake failed, when plaintext is allowed, is retried at once in
//!   plaintext, and that address is dialled in plaintext from then on
//!   ([`PeerList::encryption_failed`]), as libtorrent does.
//!
//! Transports: a dial tries the transports of the client's order ([`Transport`]), starting with
//! the one that last worked with that address (a connect that completed, or a peer that
//! connected to us over it), else the order's first; a connect that fails on the first is tried
//! at once on the next ([`PeerList::dial_transports`]), and only when every transport failed is
//! the failure counted as above.
//!
//! Determinism: addresses live in ordered maps; ties in readiness go by the order learned.
//!
//! Bounds: at most [`PeerList::capacity`] addresses (new ones are ignored when full); the ready
//! and waiting sets hold only listed addresses. An address costs about 70 bytes of B-tree, and
//! 60 more while it is ready or waiting (keys are packed `AddrKey`s: an IPv6 flow label is not
//! kept).

use core::net::SocketAddr;
use core::time::Duration;
use std::collections::{BTreeMap, BTreeSet};

use crate::addr_key::AddrKey;
use crate::io::ConnId;
use crate::time::Instant;

/// First wait after a failed connect.
pub const RETRY_BASE: Duration = Duration::from_secs(15);

/// Longest wait between tries of one address.
pub const RETRY_MAX: Duration = Duration::from_secs(30 * 60);

/// Wait before dialling again a peer whose connection closed.
pub const RECONNECT_AFTER: Duration = Duration::from_secs(20);

/// Failures in a row after which an address is forgotten.
pub const MAX_FAILS: u32 = 6;

/// How a peer connection is carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Transport {
    /// A TCP connection the driver opens ([`super::Output::Connect`]).
    Tcp,
    /// A uTP connection (BEP 29) over the client's UDP socket, run inside the client.
    Utp,
}

impl Transport {
    /// The lower-case name shown to users: `tcp`, `utp`.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Utp => "utp",
        }
    }
}

/// Where an address was learned (`bt get -v` says it per connection).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PeerSource {
    /// A tracker's answer.
    Tracker,
    /// The DHT (BEP 5).
    Dht,
    /// Another peer's PEX message (BEP 11).
    Pex,
    /// Given by the user (`--peer`, a magnet's `x.pe`).
    Direct,
    /// It connected to us.
    Incoming,
}

impl PeerSource {
    /// The lower-case name shown to users: `tracker`, `dht`, `pex`, `direct`, `incoming`.
    pub fn name(self) -> &'static str {
        match self {
            PeerSource::Tracker => "tracker",
            PeerSource::Dht => "dht",
            PeerSource::Pex => "pex",
            PeerSource::Direct => "direct",
            PeerSource::Incoming => "incoming",
        }
    }
}

/// Connected peers by where they came from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceCounts {
    /// From trackers.
    pub tracker: usize,
    /// From the DHT.
    pub dht: usize,
    /// From PEX.
    pub pex: usize,
    /// Given by the user.
    pub direct: usize,
    /// Connected to us.
    pub incoming: usize,
}

impl SourceCounts {
    /// Counts one more peer from `source`.
    pub fn count(&mut self, source: PeerSource) {
        let slot = match source {
            PeerSource::Tracker => &mut self.tracker,
            PeerSource::Dht => &mut self.dht,
            PeerSource::Pex => &mut self.pex,
            PeerSource::Direct => &mut self.direct,
            PeerSource::Incoming => &mut self.incoming,
        };
        *slot += 1;
    }
}

/// How a connection to a listed address ended, for [`PeerList::closed`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The connect failed or timed out.
    ConnectFailed,
    /// It was open and closed cleanly (the peer went away, or we had no more use for it).
    Closed,
    /// It was open and closed on an error (a protocol violation, a timeout).
    Error,
    /// Never again: banned, or it sent bad metadata.
    Banned,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    /// Ready to dial since `.0` (also the key in `ready`).
    Ready(Instant, u64),
    /// Waiting until `.0` (also the key in `waiting`).
    Waiting(Instant, u64),
    /// Dialling or connected.
    Busy(ConnId),
    /// A seed, not dialled while we are complete.
    Seed,
    Banned,
}

/// A listed address's state, flattened into [`Known`] to keep it at 24 bytes (see
/// [`Known::slot`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SlotKind {
    Ready,
    Waiting,
    Busy,
    Seed,
    Banned,
}

#[derive(Clone, Copy, Debug)]
struct Known {
    source: PeerSource,
    /// Failures in a row (below [`MAX_FAILS`]).
    fails: u8,
    seed: bool,
    /// An encrypted handshake with it failed: dial it in plaintext.
    plaintext: bool,
    /// The transport a connection with it last completed on.
    worked: Option<Transport>,
    kind: SlotKind,
    /// Ready since, or waiting until.
    at: Instant,
    /// The order while ready or waiting; the connection while busy.
    n: u64,
}

impl Known {
    fn new(source: PeerSource, slot: Slot) -> Self {
        let mut k = Known {
            source,
            fails: 0,
            seed: false,
            plaintext: false,
            worked: None,
            kind: SlotKind::Banned,
            at: Instant::ZERO,
            n: 0,
        };
        k.set(slot);
        k
    }

    fn slot(&self) -> Slot {
        match self.kind {
            SlotKind::Ready => Slot::Ready(self.at, self.n),
            SlotKind::Waiting => Slot::Waiting(self.at, self.n),
            SlotKind::Busy => Slot::Busy(ConnId(self.n)),
            SlotKind::Seed => Slot::Seed,
            SlotKind::Banned => Slot::Banned,
        }
    }

    fn set(&mut self, slot: Slot) {
        (self.kind, self.at, self.n) = match slot {
            Slot::Ready(at, n) => (SlotKind::Ready, at, n),
            Slot::Waiting(at, n) => (SlotKind::Waiting, at, n),
            Slot::Busy(conn) => (SlotKind::Busy, Instant::ZERO, conn.0),
            Slot::Seed => (SlotKind::Seed, Instant::ZERO, 0),
            Slot::Banned => (SlotKind::Banned, Instant::ZERO, 0),
        };
    }
}

/// A torrent's known addresses: see the module docs.
#[derive(Clone, Debug)]
pub struct PeerList {
    capacity: usize,
    known: BTreeMap<AddrKey, Known>,
    /// Ready addresses: `(since, order learned, addr)`.
    ready: BTreeSet<(Instant, u64, AddrKey)>,
    /// Addresses waiting out a backoff: `(until, order, addr)`.
    waiting: BTreeSet<(Instant, u64, AddrKey)>,
    next_order: u64,
}

impl PeerList {
    /// An empty list of at most `capacity` addresses.
    pub fn new(capacity: usize) -> Self {
        PeerList {
            capacity,
            known: BTreeMap::new(),
            ready: BTreeSet::new(),
            waiting: BTreeSet::new(),
            next_order: 0,
        }
    }

    /// The most addresses it keeps.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Addresses known.
    pub fn len(&self) -> usize {
        self.known.len()
    }

    /// Whether no address is known.
    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }

    /// Whether `addr` is known.
    pub fn contains(&self, addr: &SocketAddr) -> bool {
        self.known.contains_key(&AddrKey::new(*addr))
    }

    /// Where `addr` was learned first.
    pub fn source(&self, addr: &SocketAddr) -> Option<PeerSource> {
        self.known.get(&AddrKey::new(*addr)).map(|k| k.source)
    }

    /// Consecutive failures of `addr`.
    pub fn fails(&self, addr: &SocketAddr) -> Option<u32> {
        self.known
            .get(&AddrKey::new(*addr))
            .map(|k| u32::from(k.fails))
    }

    /// Addresses ready to dial now.
    pub fn ready_count(&self) -> usize {
        self.ready.len()
    }

    /// When the first waiting address becomes ready.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.waiting.first().map(|(at, _, _)| *at)
    }

    /// Learns `addr` from `source`; returns whether it was new. An address already known that
    /// waits out a backoff becomes ready now if `source` is the user or a tracker (a tracker
    /// naming it again is fresh news); otherwise nothing changes.
    pub fn add(&mut self, now: Instant, addr: SocketAddr, source: PeerSource) -> bool {
        let addr = AddrKey::new(addr);
        if let Some(k) = self.known.get_mut(&addr) {
            if let Slot::Waiting(at, order) = k.slot()
                && matches!(source, PeerSource::Direct | PeerSource::Tracker)
            {
                self.waiting.remove(&(at, order, addr));
                k.set(Slot::Ready(now, order));
                self.ready.insert((now, order, addr));
            }
            return false;
        }
        if self.known.len() >= self.capacity {
            return false;
        }
        let order = self.next_order;
        self.next_order += 1;
        self.known
            .insert(addr, Known::new(source, Slot::Ready(now, order)));
        self.ready.insert((now, order, addr));
        true
    }

    /// Moves waiting addresses whose time has come to the ready set.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(at, order, addr)) = self.waiting.first()
            && at <= now
        {
            self.waiting.pop_first();
            if let Some(k) = self.known.get_mut(&addr) {
                k.set(Slot::Ready(at, order));
                self.ready.insert((at, order, addr));
            }
        }
    }

    /// The next address to dial, now marked busy with `conn`, and where it came from.
    pub fn take_ready(&mut self, conn: ConnId) -> Option<(SocketAddr, PeerSource)> {
        let (_, _, addr) = self.ready.pop_first()?;
        let k = self
            .known
            .get_mut(&addr)
            .expect("ready addresses are known");
        k.set(Slot::Busy(conn));
        Some((addr.addr(), k.source))
    }

    /// A connection to `addr` ended as `ending`: schedules the next try (see the module docs).
    /// `seed` says the peer had every piece.
    pub fn closed(&mut self, now: Instant, addr: SocketAddr, ending: Ending, seed: bool) {
        let addr = AddrKey::new(addr);
        let Some(k) = self.known.get_mut(&addr) else {
            return;
        };
        k.seed |= seed;
        self.unslot(addr);
        let k = self.known.get_mut(&addr).expect("checked above");
        let wait = match ending {
            Ending::Banned => {
                k.set(Slot::Banned);
                return;
            }
            Ending::Closed => {
                k.fails = 0;
                RECONNECT_AFTER
            }
            Ending::ConnectFailed | Ending::Error => {
                k.fails += 1;
                if u32::from(k.fails) >= MAX_FAILS {
                    self.known.remove(&addr);
                    return;
                }
                RETRY_BASE
                    .saturating_mul(1 << (k.fails - 1).min(16))
                    .min(RETRY_MAX)
            }
        };
        let wait = if ending == Ending::Error {
            wait.max(RECONNECT_AFTER)
        } else {
            wait
        };
        let order = self.next_order;
        self.next_order += 1;
        k.set(Slot::Waiting(now + wait, order));
        self.waiting.insert((now + wait, order, addr));
    }

    /// Our torrent became complete (`true`) or not: known seeds leave (or rejoin) the dial
    /// order.
    pub fn set_complete(&mut self, now: Instant, complete: bool) {
        let seeds: Vec<AddrKey> = self
            .known
            .iter()
            .filter(|(_, k)| k.seed && !matches!(k.slot(), Slot::Busy(_) | Slot::Banned))
            .map(|(a, _)| *a)
            .collect();
        for addr in seeds {
            self.unslot(addr);
            let k = self.known.get_mut(&addr).expect("listed above");
            if complete {
                k.set(Slot::Seed);
            } else {
                let order = self.next_order;
                self.next_order += 1;
                k.set(Slot::Ready(now, order));
                self.ready.insert((now, order, addr));
            }
        }
    }

    /// Takes `addr` out of the ready and waiting sets.
    fn unslot(&mut self, addr: AddrKey) {
        if let Some(k) = self.known.get(&addr) {
            match k.slot() {
                Slot::Ready(at, order) => {
                    self.ready.remove(&(at, order, addr));
                }
                Slot::Waiting(at, order) => {
                    self.waiting.remove(&(at, order, addr));
                }
                Slot::Busy(_) | Slot::Seed | Slot::Banned => {}
            }
        }
    }

    /// Marks `addr` busy with an incoming connection, if it is known (a peer that dialled us
    /// from its listening address), so it is not dialled meanwhile.
    pub fn connected_in(&mut self, addr: SocketAddr, conn: ConnId) {
        let addr = AddrKey::new(addr);
        if self.known.contains_key(&addr) {
            self.unslot(addr);
            if let Some(k) = self.known.get_mut(&addr) {
                k.set(Slot::Busy(conn));
            }
        }
    }

    /// Marks `addr` banned (smart ban): never dialled again.
    pub fn ban(&mut self, addr: SocketAddr) {
        let addr = AddrKey::new(addr);
        if self.known.contains_key(&addr) {
            self.unslot(addr);
            if let Some(k) = self.known.get_mut(&addr) {
                k.set(Slot::Banned);
            }
        }
    }

    /// Every known address on `ip` (a ban is per IP).
    pub fn addrs_on(&self, ip: core::net::IpAddr) -> Vec<SocketAddr> {
        self.known
            .keys()
            .map(|a| a.addr())
            .filter(|a| a.ip() == ip)
            .collect()
    }

    /// Ends every wait now: each address waiting for its retry is ready to dial at once (a
    /// paused torrent resumes). Banned addresses, seeds skipped while complete, and those dialled
    /// or connected stay as they are.
    pub fn wake(&mut self, now: Instant) {
        while let Some((_, order, addr)) = self.waiting.pop_first() {
            if let Some(k) = self.known.get_mut(&addr) {
                k.set(Slot::Ready(now, order));
                self.ready.insert((now, order, addr));
            }
        }
    }

    /// Whether `addr` is to be dialled in plaintext (an encrypted handshake with it failed).
    pub fn plaintext_only(&self, addr: &SocketAddr) -> bool {
        self.known
            .get(&AddrKey::new(*addr))
            .is_some_and(|k| k.plaintext)
    }

    /// Our dial to `addr` failed in its encryption handshake: it is dialled again at once, in
    /// plaintext (see [`PeerList::plaintext_only`]). An address already marked counts the
    /// failure as any other ([`Ending::Error`]).
    pub fn encryption_failed(&mut self, now: Instant, addr: SocketAddr) {
        let key = AddrKey::new(addr);
        match self.known.get_mut(&key) {
            Some(k) if !k.plaintext => k.plaintext = true,
            Some(_) => return self.closed(now, addr, Ending::Error, false),
            None => return,
        }
        self.unslot(key);
        let order = self.next_order;
        self.next_order += 1;
        if let Some(k) = self.known.get_mut(&key) {
            k.set(Slot::Ready(now, order));
            self.ready.insert((now, order, key));
        }
    }

    /// Whether `addr` is dialled or connected now.
    pub fn is_busy(&self, addr: &SocketAddr) -> bool {
        self.known
            .get(&AddrKey::new(*addr))
            .is_some_and(|k| matches!(k.slot(), Slot::Busy(_)))
    }

    /// A connection with `addr` completed over `transport`: it is tried first next time.
    pub fn transport_worked(&mut self, addr: SocketAddr, transport: Transport) {
        if let Some(k) = self.known.get_mut(&AddrKey::new(addr)) {
            k.worked = Some(transport);
        }
    }

    /// The transport a connection with `addr` last completed on.
    pub fn last_transport(&self, addr: &SocketAddr) -> Option<Transport> {
        self.known.get(&AddrKey::new(*addr)).and_then(|k| k.worked)
    }

    /// The transport to dial `addr` on first, and the one to try at once if that connect fails,
    /// out of `order` (the client's, most preferred first): the one that last worked with
    /// `addr` if `order` has it, else `order`'s first; the fallback is the next other one in
    /// `order`. An empty `order` means TCP.
    pub fn dial_transports(
        &self,
        addr: &SocketAddr,
        order: &[Transport],
    ) -> (Transport, Option<Transport>) {
        let first = self
            .last_transport(addr)
            .filter(|t| order.contains(t))
            .or_else(|| order.first().copied())
            .unwrap_or(Transport::Tcp);
        let fallback = order.iter().copied().find(|t| *t != first);
        (first, fallback)
    }
}
