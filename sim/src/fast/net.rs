//! The fast engine's network: connections as TCP streams between peers.
//!
//! A connection has two ends, each a [`Conn`] in the [`ConnTable`] under its own [`ConnId`] (the
//! handle the peer's session knows it by). What a session transmits is queued on its end; the
//! peer's uplink serves its connections round robin, one burst of at most [`QUANTUM`] bytes at a
//! time, each taking `len / up` seconds ([`World::start_uplink`]). When a burst has left the
//! uplink the session hears `handle_sent` (the protocol's backpressure; bursts under
//! [`SMALL_BURST`] are reported with the next large one, see [`World::on_uplink_done`]) and the
//! burst travels:
//! latency, plus jitter, plus for each loss a retransmission timeout, never overtaking what the
//! same end sent before (TCP is in order). At the far end it waits for the receiver's downlink
//! (first come, first served, `len / down` seconds), then the session gets the bytes, one
//! `handle_bytes` per burst.
//!
//! Opening: the dialler's SYN reaches the other peer after one trip, which accepts (its session
//! routes the connection by the handshake) and answers; the dialler's session gets `connect`
//! when the answer arrives. Nobody answering (crashed, partitioned) times the dial out after the
//! runtime's connect timeout; a refusal comes back as a reset. Closing: what is queued is sent,
//! then a FIN, which the other end's session hears as `handle_disconnect`. Bytes for an end that
//! no longer exists at a running peer (it restarted) are answered with a reset.
//!
//! With the bottleneck model on (`[link] buffer`, or a group on uTP) the uplink is a drop-tail
//! FIFO shared with the peer's datagrams instead of the round robin above, and the session
//! hears `handle_sent` when a burst enters it (see [`super::bottleneck`]); the rest is the same.
//!
//! Partitions: a burst sent across a cut is held (by the sender's TCP) and sent, in order, when the
//! cut heals, unless the sender crashed meanwhile; a SYN across a cut is lost.

#[allow(clippy::disallowed_types)]
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::time::Duration;

use bt_protocol::io::ConnId;
use bt_protocol::rng::Rng;
use bt_protocol::time::Instant;
use bytes::Bytes;

use super::{Ev, HostId, State, World, host_addr, host_of_ip};
use crate::scenario::{LinkSpec, Role};
use crate::trace::Kind;

/// The most bytes one uplink burst carries (a block and its header, with room for a few small
/// messages queued behind it).
pub(super) const QUANTUM: usize = 16 * 1024 + 256;

/// Bursts shorter than this are reported sent lazily (see [`World::on_uplink_done`]).
const SMALL_BURST: usize = 1024;

/// Lazily reported bytes are reported once they reach this.
const REPORT_AT: usize = 16 * 1024;

/// The shortest retransmission timeout (Linux's `TCP_RTO_MIN`).
const MIN_RTO: Duration = Duration::from_millis(200);

/// The longest retransmission timeout.
const MAX_RTO: Duration = Duration::from_secs(60);

/// Retransmissions of one burst before the model stops drawing losses (the delay is bounded).
const MAX_LOSSES: u32 = 8;

/// Something sent on a connection.
#[derive(Clone, Debug)]
pub(super) enum Item {
    /// Bytes of the stream.
    Data(Bytes),
    /// The accepting side's answer to a SYN.
    Open,
    /// The end of the stream (or a reset).
    Fin,
}

impl Item {
    fn len(&self) -> usize {
        match self {
            Item::Data(b) => b.len(),
            Item::Open | Item::Fin => 0,
        }
    }
}

/// Items sent together.
#[derive(Clone, Debug, Default)]
pub(super) struct Burst {
    items: Vec<Item>,
    len: usize,
}

impl Burst {
    fn one(item: Item) -> Burst {
        Burst {
            len: item.len(),
            items: vec![item],
        }
    }

    pub(super) fn has_fin(&self) -> bool {
        matches!(self.items.last(), Some(Item::Fin))
    }

    /// Its bytes.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Whether it carries nothing at all.
    pub(super) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// A burst waiting for a partition to heal.
pub(super) struct Held {
    from: ConnId,
    to: ConnId,
    from_host: HostId,
    to_host: HostId,
    /// The sender's life when it sent it.
    epoch: u32,
    burst: Burst,
}

/// Where one end of a connection is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ConnState {
    /// We dialled; no answer yet.
    Dialing,
    /// The session owns it.
    Open,
    /// The session closed it; what is queued still goes out, then a FIN.
    Closing,
}

/// One end of a connection.
#[derive(Debug)]
pub(super) struct Conn {
    pub(super) host: HostId,
    pub(super) remote: ConnId,
    pub(super) remote_host: HostId,
    pub(super) state: ConnState,
    /// What waits for the uplink.
    out: std::collections::VecDeque<Item>,
    /// Whether it is in its peer's round-robin list.
    active: bool,
    /// When the last thing this end sent arrives: later sends arrive no sooner.
    stream_at: Instant,
    /// Bytes sent and not yet reported to the session (`handle_sent`).
    unreported: usize,
    /// The wire observer's view of what this end sent.
    watch: Box<crate::watch::EndWatch>,
    /// When it opened (the SYN accepted, or its answer arrived).
    opened_at: Instant,
    /// Bytes of data in `out`.
    queued: usize,
    /// The other end is an attacker's.
    to_attacker: bool,
    /// This end is an attacker's.
    is_attacker: bool,
    /// Either end's session has the encryption layer (its group sets `encryption`), so the
    /// stream may be an MSE handshake and RC4.
    may_encrypt: bool,
}

impl Conn {
    /// A new end of peer `host` to `remote` (of `remote_host`), in `state`, at `now`.
    fn new(
        world: &World<'_>,
        host: HostId,
        remote: ConnId,
        remote_host: HostId,
        state: ConnState,
    ) -> Conn {
        let now = world.now();
        Conn {
            host,
            remote,
            remote_host,
            state,
            out: Default::default(),
            active: false,
            stream_at: now,
            unreported: 0,
            watch: Box::default(),
            opened_at: now,
            queued: 0,
            to_attacker: world.hosts[remote_host as usize].attacker.is_some(),
            is_attacker: world.hosts[host as usize].attacker.is_some(),
            may_encrypt: world.encrypts(host) || world.encrypts(remote_host),
        }
    }

    /// Bytes of data waiting for the uplink.
    pub(super) fn queued(&self) -> usize {
        self.queued
    }

    /// When it opened.
    pub(super) fn opened_at(&self) -> Instant {
        self.opened_at
    }

    /// The bytes of the burst [`Conn::take_burst`] would take now.
    pub(super) fn next_burst_len(&self) -> usize {
        let (mut len, mut any) = (0, false);
        for item in &self.out {
            if any && len + item.len() > QUANTUM {
                break;
            }
            len += item.len();
            any = true;
            if matches!(item, Item::Fin) {
                break;
            }
        }
        len
    }

    /// Takes the next burst off its queue: items in order up to [`QUANTUM`] bytes (at least
    /// one), ending at a FIN.
    pub(super) fn take_burst(&mut self) -> Burst {
        let mut burst = Burst::default();
        while let Some(item) = self.out.front() {
            if !burst.items.is_empty() && burst.len + item.len() > QUANTUM {
                break;
            }
            let item = self.out.pop_front().expect("peeked");
            self.queued -= item.len();
            burst.len += item.len();
            let fin = matches!(item, Item::Fin);
            burst.items.push(item);
            if fin {
                break;
            }
        }
        burst
    }

    /// Whether more waits in its queue.
    pub(super) fn has_more(&self) -> bool {
        !self.out.is_empty()
    }

    /// It left its peer's round-robin list.
    pub(super) fn set_inactive(&mut self) {
        self.active = false;
    }

    /// `len` bytes of it were sent: the bytes to report to its session now, if any. Small
    /// bursts (control messages, HAVEs) are reported with the next large one or once they add
    /// up: the send-buffer watermark is about blocks, and a report costs the session a pass
    /// over its peers.
    pub(super) fn taken(&mut self, len: usize) -> Option<usize> {
        self.unreported += len;
        (self.state == ConnState::Open
            && self.unreported > 0
            && (len >= SMALL_BURST || self.unreported >= REPORT_AT))
            .then(|| std::mem::take(&mut self.unreported))
    }
}

/// A hasher for [`ConnId`]s: the splitmix64 finaliser, so every bit of a handle reaches the low
/// bits the table indexes by. Handles differ mostly in their high bits (each client numbers its
/// own from a base of its own), and a single multiply would leave the low bits of the hash to
/// the low bits of the handle: every client's n-th connection would share a bucket.
/// Deterministic; the table is only ever looked up, never iterated.
#[derive(Default)]
pub(super) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        let mut x = self.0;
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// Every connection end, by handle. Looked up only, never iterated (so its order cannot leak
/// into the run).
#[allow(clippy::disallowed_types)]
pub(super) type ConnTable = HashMap<ConnId, Conn, BuildHasherDefault<IdHasher>>;

/// Whether a packet is lost, with probability `loss` (no draw when `loss` is 0).
pub(super) fn lost(rng: &mut Rng, loss: f64) -> bool {
    loss > 0.0 && (rng.next_u64() as f64) < loss * u64::MAX as f64
}

/// The loss of a path lost with `a` and, independently, with `b`.
pub(super) fn both_losses(a: f64, b: f64) -> f64 {
    1.0 - (1.0 - a) * (1.0 - b)
}

/// One TCP trip over `link` whose packets are lost with `loss`: the latency, a uniform
/// `0..=jitter` more, and a retransmission timeout per loss (from the larger of [`MIN_RTO`] and
/// four latencies, doubling up to [`MAX_RTO`], at most [`MAX_LOSSES`] of them).
pub(super) fn tcp_trip(link: &LinkSpec, loss: f64, rng: &mut Rng) -> Duration {
    let mut d = link.latency;
    let jitter = link.jitter.as_micros() as u64;
    if jitter > 0 {
        d += Duration::from_micros(rng.below(jitter + 1));
    }
    let mut rto = MIN_RTO.max(link.latency * 4);
    for _ in 0..MAX_LOSSES {
        if !lost(rng, loss) {
            break;
        }
        d += rto;
        rto = (rto * 2).min(MAX_RTO);
    }
    d
}

/// One datagram's trip over `link`, lost with `loss` (never resent): its delay, the latency and a
/// uniform `0..=jitter` more, or `None` when it is lost.
pub(super) fn datagram_trip(link: &LinkSpec, loss: f64, rng: &mut Rng) -> Option<Duration> {
    let mut delay = link.latency;
    let jitter = link.jitter.as_micros() as u64;
    if jitter > 0 {
        delay += Duration::from_micros(rng.below(jitter + 1));
    }
    (!lost(rng, loss)).then_some(delay)
}

impl World<'_> {
    /// Whether a partition separates peers `a` and `b`.
    pub(super) fn cut(&self, a: HostId, b: HostId) -> bool {
        if self.cuts.is_empty() {
            return false;
        }
        let (ga, gb) = (self.hosts[a as usize].group, self.hosts[b as usize].group);
        self.cuts.iter().any(|(left, right)| {
            (left.contains(&ga) && right.contains(&gb))
                || (left.contains(&gb) && right.contains(&ga))
        })
    }

    /// One trip's delay between peers: [`tcp_trip`] over the link.
    fn trip(&mut self) -> Duration {
        let link = &self.scenario.link;
        tcp_trip(link, link.loss, &mut self.net_rng)
    }

    /// Sends `burst` from end `from` to end `to` (peers `from_host` to `to_host`): now, or when
    /// the partition between them heals.
    pub(super) fn transit(
        &mut self,
        from: ConnId,
        to: ConnId,
        from_host: HostId,
        to_host: HostId,
        burst: Burst,
    ) {
        self.transit_not_before(from, to, from_host, to_host, burst, Instant::ZERO);
    }

    /// [`World::transit`], arriving no sooner than `not_before`; gives the arrival time, or
    /// `None` when a partition holds the burst.
    fn transit_not_before(
        &mut self,
        from: ConnId,
        to: ConnId,
        from_host: HostId,
        to_host: HostId,
        burst: Burst,
        not_before: Instant,
    ) -> Option<Instant> {
        if self.cut(from_host, to_host) {
            let epoch = self.hosts[from_host as usize].epoch;
            self.held.push(Held {
                from,
                to,
                from_host,
                to_host,
                epoch,
                burst,
            });
            return None;
        }
        let trip = self.trip();
        let mut at = (self.now() + trip).max(not_before);
        if let Some(c) = self.conns.get_mut(&from) {
            at = at.max(c.stream_at);
            c.stream_at = at;
        }
        self.queue.push(at, Ev::Arrive { to, from, burst });
        Some(at)
    }

    /// [`World::forget`], for the bottleneck model.
    pub(super) fn forget_end(&mut self, conn: ConnId) {
        self.forget(conn);
    }

    /// Bursts held by a partition, after the heal: each sent, in order, unless its sender
    /// crashed meanwhile (its TCP went with it). A connection closed meanwhile still delivers what
    /// it had sent, FIN included, as a closed socket keeps retransmitting.
    pub(super) fn resend_held(&mut self) {
        let mut last: std::collections::BTreeMap<ConnId, Instant> = Default::default();
        for held in std::mem::take(&mut self.held) {
            if self.hosts[held.from_host as usize].epoch != held.epoch {
                continue;
            }
            let not_before = last.get(&held.from).copied().unwrap_or(Instant::ZERO);
            if let Some(at) = self.transit_not_before(
                held.from,
                held.to,
                held.from_host,
                held.to_host,
                held.burst,
                not_before,
            ) {
                last.insert(held.from, at);
            }
        }
    }

    /// Queues `item` on peer `h`'s end `conn` for its uplink.
    pub(super) fn enqueue(&mut self, h: HostId, conn: ConnId, item: Item) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        debug_assert_eq!(c.host, h);
        // The observer's rules are for two protocol peers: an attacker breaks them on purpose,
        // and its choke storms void requests the observer would count as in flight. It reads
        // BitTorrent messages, not an MSE handshake or RC4.
        let watched = !(c.to_attacker || c.is_attacker || c.may_encrypt);
        if let Item::Data(bytes) = &item
            && watched
        {
            // The wire observer reads the stream in the order the session wrote it.
            let mut answered = std::mem::take(&mut self.wire_answered);
            let mut breaches = Vec::new();
            let block_bytes = c.watch.sent(
                bytes,
                self.max_pipeline,
                &mut |piece, begin| answered.push((piece, begin)),
                &mut |b| breaches.push(b),
            );
            self.hosts[h as usize].life_block_bytes += block_bytes;
            let (remote, remote_host) = (c.remote, c.remote_host);
            let seeder = self.scenario.groups[self.hosts[h as usize].group].role == Role::Seeder;
            let sources = &mut self.hosts[remote_host as usize].sources;
            sources.received += block_bytes;
            if seeder {
                sources.from_seeders += block_bytes;
            }
            self.wire_answers += answered.len() as u64;
            if let Some(r) = self.conns.get_mut(&remote) {
                for &(piece, begin) in &answered {
                    r.watch.answered(piece, begin);
                }
            }
            answered.clear();
            self.wire_answered = answered;
            for b in breaches {
                self.violation(match b {
                    crate::watch::Breach::BlockWhileChoking { piece } => format!(
                        "peer {h} sent a block of piece {piece} to peer {remote_host}, which it chokes, outside the allowed-fast set"
                    ),
                    crate::watch::Breach::TooManyRequests { in_flight } => format!(
                        "peer {h} has {in_flight} requests in flight to peer {remote_host}, over the cap of {}",
                        self.max_pipeline
                    ),
                });
            }
        }
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.queued += item.len();
        if c.to_attacker || c.is_attacker {
            let (queued, to) = (c.queued as u64, c.to_attacker);
            let attacker = if to { c.remote_host } else { c.host };
            let group = self.hosts[attacker as usize].group;
            if let Some(Some(a)) = self.attacks.get_mut(group) {
                if to {
                    a.max_queued_to = a.max_queued_to.max(queued);
                } else {
                    a.max_queued_by = a.max_queued_by.max(queued);
                }
            }
        }
        c.out.push_back(item);
        if !c.active {
            c.active = true;
            self.hosts[h as usize].active.push_back(conn);
        }
        self.start_uplink(h);
    }

    /// The session closed `conn`: flush and FIN. A dial not answered yet is just forgotten.
    pub(super) fn close_local(&mut self, h: HostId, conn: ConnId, reason: String) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        match c.state {
            ConnState::Closing => return,
            ConnState::Dialing => {
                self.forget(conn);
                return;
            }
            ConnState::Open => c.state = ConnState::Closing,
        }
        let (to_attacker, remote_host, opened_at) = (c.to_attacker, c.remote_host, c.opened_at);
        let name = crate::engine::close_reason_name(&reason);
        if to_attacker {
            let micros = (self.now() - opened_at).as_micros() as u64;
            let group = self.hosts[remote_host as usize].group;
            self.trace.record(
                Kind::AttackClosed,
                &[u64::from(h), crate::trace::Fingerprint::of_str(&name)],
            );
            if let Some(Some(a)) = self.attacks.get_mut(group) {
                *a.closed.entry(name.clone()).or_default() += 1;
                a.close_micros.push(micros);
            }
        }
        let group = self.hosts[h as usize].group;
        *self.group_closes[group].entry(name).or_default() += 1;
        *self.close_reasons.entry(reason).or_default() += 1;
        self.enqueue(h, conn, Item::Fin);
    }

    /// Drops every connection of peer `h` without a word (a crash, or a restart after leaving)
    /// and empties its dial queue.
    pub(super) fn drop_links(&mut self, h: HostId) {
        let host = &mut self.hosts[h as usize];
        host.uplink_busy = false;
        host.fifo.clear();
        host.active.clear();
        host.candidates.clear();
        host.dialing = 0;
        for conn in std::mem::take(&mut host.conns) {
            let Some(c) = self.conns.remove(&conn) else {
                continue;
            };
            if c.is_attacker {
                self.attack_end_gone(h, conn);
            } else if c.to_attacker {
                // The attacker does not hold on to a dead connection either.
                self.forget(c.remote);
            }
        }
    }

    /// Removes end `conn` from the table and from its peer's books.
    fn forget(&mut self, conn: ConnId) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        if c.is_attacker {
            self.attack_end_gone(c.host, conn);
        }
        let host = &mut self.hosts[c.host as usize];
        host.conns.remove(&conn);
        if c.state == ConnState::Dialing && c.is_attacker {
            host.dialing -= 1;
        }
    }

    /// Starts peer `h`'s next burst if its uplink is idle.
    /// With the bottleneck model on, fills its FIFO instead ([`World::fill_fifo`]).
    pub(super) fn start_uplink(&mut self, h: HostId) {
        if self.buffer.is_some() {
            return self.fill_fifo(h);
        }
        let now = self.now();
        let host = &mut self.hosts[h as usize];
        if host.uplink_busy {
            return;
        }
        while let Some(conn) = host.active.pop_front() {
            let Some(c) = self.conns.get_mut(&conn) else {
                continue;
            };
            c.active = false;
            let burst = c.take_burst();
            if burst.items.is_empty() {
                continue;
            }
            if !c.out.is_empty() && !burst.has_fin() {
                c.active = true;
                host.active.push_back(conn);
            }
            let micros = host
                .up_rate
                .map_or(0, |rate| (burst.len as u64 * 1_000_000).div_ceil(rate));
            host.uplink_busy = true;
            let epoch = host.epoch;
            self.queue.push(
                now + Duration::from_micros(micros),
                Ev::UplinkDone {
                    host: h,
                    epoch,
                    conn,
                    burst,
                },
            );
            return;
        }
    }

    pub(super) fn on_uplink_done(&mut self, h: HostId, epoch: u32, conn: ConnId, burst: Burst) {
        let now = self.now();
        let host = &mut self.hosts[h as usize];
        if host.epoch != epoch {
            return;
        }
        host.uplink_busy = false;
        self.trace
            .record(Kind::Sent, &[u64::from(h), conn.0, burst.len as u64]);
        let mut told = false;
        if let Some(c) = self.conns.get_mut(&conn) {
            let (remote, remote_host) = (c.remote, c.remote_host);
            if let Some(sent) = c.taken(burst.len)
                && let Some(client) = self.hosts[h as usize].client.as_mut()
            {
                client.handle_sent(now, conn, sent);
                told = true;
            }
            let fin = burst.has_fin();
            self.transit(conn, remote, h, remote_host, burst);
            if fin {
                self.forget(conn);
            }
        }
        self.start_uplink(h);
        if told {
            self.settle(h);
        }
    }

    pub(super) fn on_arrive(&mut self, to: ConnId, from: ConnId, burst: Burst) {
        let now = self.now();
        let Some(c) = self.conns.get(&to) else {
            return self.on_deliver(to, from, burst);
        };
        let host = &mut self.hosts[c.host as usize];
        match host.down_rate {
            None => self.on_deliver(to, from, burst),
            Some(rate) => {
                let micros = (burst.len as u64 * 1_000_000).div_ceil(rate);
                host.down_free_at = host.down_free_at.max(now) + Duration::from_micros(micros);
                let at = host.down_free_at;
                self.queue.push(at, Ev::Deliver { to, from, burst });
            }
        }
    }

    pub(super) fn on_deliver(&mut self, to: ConnId, from: ConnId, burst: Burst) {
        let now = self.now();
        let Some(c) = self.conns.get(&to) else {
            // No such end. If the sender is still there and the receiver runs (it restarted,
            // so this end belongs to its previous life), it answers with a reset.
            if !burst.has_fin()
                && let Some(sender) = self.conns.get(&from)
                && self.hosts[sender.remote_host as usize].state == State::Up
            {
                let (fh, th) = (sender.remote_host, sender.host);
                self.trace.record(Kind::Reset, &[from.0]);
                self.transit_reset(to, from, fh, th);
            }
            return;
        };
        let (h, state) = (c.host, c.state);
        self.trace
            .record(Kind::Delivered, &[u64::from(h), to.0, burst.len as u64]);
        match state {
            ConnState::Dialing => {
                match burst.items.first() {
                    Some(Item::Open) => {
                        let c = self.conns.get_mut(&to).expect("looked up above");
                        c.state = ConnState::Open;
                        c.opened_at = now;
                        let is_attacker = c.is_attacker;
                        let host = &mut self.hosts[h as usize];
                        if is_attacker {
                            host.dialing -= 1;
                            self.attack_open(h, to, true);
                            self.settle(h);
                            return;
                        }
                        match host.client.as_mut() {
                            Some(client) => client.handle_connected(now, to),
                            None => self.close_local(h, to, "NoClient".into()),
                        }
                    }
                    // A reset: the dial failed.
                    _ => {
                        self.forget(to);
                        if let Some(client) = self.hosts[h as usize].client.as_mut() {
                            client.handle_connect_failed(now, to, "connection refused".into());
                        }
                    }
                }
            }
            ConnState::Open if self.hosts[h as usize].attacker.is_some() => {
                // An attacker's script reads what it wants (the rest is discarded); a FIN means
                // the honest side closed.
                let group = self.hosts[h as usize].group;
                if let Some(Some(a)) = self.attacks.get_mut(group) {
                    a.bytes_received += burst.len as u64;
                }
                if self.hosts[h as usize]
                    .attacker
                    .as_ref()
                    .is_some_and(|a| a.reads())
                {
                    for item in &burst.items {
                        if let Item::Data(b) = item {
                            self.attack_received(h, to, b);
                        }
                    }
                }
                if burst.has_fin() {
                    self.forget(to);
                }
            }
            ConnState::Open => {
                // One read of everything the burst carries, as a socket read returns all that
                // has arrived: one `handle_bytes` per burst.
                let fin = burst.has_fin();
                let data: Vec<&Bytes> = burst
                    .items
                    .iter()
                    .filter_map(|i| match i {
                        Item::Data(b) => Some(b),
                        Item::Open | Item::Fin => None,
                    })
                    .collect();
                if let Some(client) = self.hosts[h as usize].client.as_mut() {
                    match data.as_slice() {
                        [] => {}
                        [one] => client.handle_bytes(now, to, one),
                        many => {
                            self.read_buf.clear();
                            for b in many {
                                self.read_buf.extend_from_slice(b);
                            }
                            client.handle_bytes(now, to, &self.read_buf);
                        }
                    }
                }
                if fin && self.conns.contains_key(&to) {
                    self.forget(to);
                    if let Some(client) = self.hosts[h as usize].client.as_mut() {
                        client.handle_disconnect(now, to);
                    }
                }
            }
            // We closed it: what still comes is dropped; our FIN is on its way.
            ConnState::Closing => {}
        }
        self.settle(h);
    }

    /// A reset from (what was) end `from` to end `to`.
    fn transit_reset(&mut self, from: ConnId, to: ConnId, from_host: HostId, to_host: HostId) {
        if self.cut(from_host, to_host) {
            return;
        }
        let at = self.now() + self.trip();
        self.queue.push(
            at,
            Ev::Deliver {
                to,
                from,
                burst: Burst::one(Item::Fin),
            },
        );
    }

    /// A SYN from end `from` of peer `from_host` reaches peer `to_host`: its client accepts
    /// (giving the new end its handle) or refuses (a reset); a peer that is not running does not
    /// answer, and the dial times out.
    pub(super) fn on_syn(&mut self, from: ConnId, from_host: HostId, to_host: HostId) {
        let now = self.now();
        let world_conn = ConnId(self.next_conn);
        let host = &mut self.hosts[to_host as usize];
        if host.state != State::Up {
            return;
        }
        let to = match (&host.attacker, host.client.as_mut()) {
            (Some(_), _) => (host.conns.len() < self.scenario.groups[host.group].max_peers)
                .then_some(world_conn),
            (None, Some(client)) => client.accept(now, host_addr(from_host)).ok(),
            (None, None) => None,
        };
        let Some(to) = to else {
            // Refused: a reset to an end with no partner.
            self.transit_reset(ConnId(0), from, to_host, from_host);
            return;
        };
        if to == world_conn {
            self.next_conn += 1;
        }
        self.trace
            .record(Kind::SynReaches, &[u64::from(to_host), to.0]);
        self.hosts[to_host as usize].conns.insert(to);
        if let Some(dialler) = self.conns.get_mut(&from) {
            dialler.remote = to;
        }
        let c = Conn::new(self, to_host, from, from_host, ConnState::Open);
        self.conns.insert(to, c);
        self.transit(to, from, to_host, from_host, Burst::one(Item::Open));
        self.attack_open(to_host, to, false);
        self.settle(to_host);
    }

    /// An attacker's dial not answered in time is given up (a client times out its own).
    pub(super) fn on_connect_timeout(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        if c.state == ConnState::Dialing {
            let h = c.host;
            self.trace.record(Kind::ConnectTimeout, &[conn.0]);
            self.forget(conn);
            self.settle(h);
        }
    }

    /// Queues an address for attacker `h` to dial, once per address and never another
    /// attacker's.
    pub(super) fn attacker_learn(&mut self, h: HostId, addr: std::net::SocketAddr) {
        let hosts = self.hosts.len();
        let Some(other) = host_of_ip(addr.ip()).filter(|o| (*o as usize) < hosts) else {
            return;
        };
        let other_attacks = self.hosts[other as usize].attacker.is_some();
        let host = &mut self.hosts[h as usize];
        let Some(a) = host.attacker.as_mut() else {
            return;
        };
        if other_attacks || addr == host.addr || !a.tried.insert(addr) {
            return;
        }
        host.candidates.push_back(addr);
    }

    /// Attacker `h` dials what it learned while under its group's `max_peers`, at most
    /// [`bt_protocol::client::MAX_HALF_OPEN`] at a time.
    pub(super) fn attacker_dial_more(&mut self, h: HostId) {
        loop {
            let host = &mut self.hosts[h as usize];
            if host.state != State::Up {
                return;
            }
            let max_peers = self.scenario.groups[host.group].max_peers;
            if host.dialing >= bt_protocol::client::MAX_HALF_OPEN || host.conns.len() >= max_peers {
                return;
            }
            let Some(addr) = host.candidates.pop_front() else {
                return;
            };
            let conn = ConnId(self.next_conn);
            self.next_conn += 1;
            self.hosts[h as usize].dialing += 1;
            self.dial(h, conn, addr);
            self.queue.push(
                self.now() + bt_protocol::client::CONNECT_TIMEOUT,
                Ev::ConnectTimeout(conn),
            );
        }
    }

    /// End `conn` of peer `h` dials `addr` (its client asked, or its attacker script): the SYN
    /// reaches the other peer after one trip, unless a partition drops it.
    pub(super) fn dial(&mut self, h: HostId, conn: ConnId, addr: std::net::SocketAddr) {
        let now = self.now();
        let hosts = self.hosts.len();
        let to_host = host_of_ip(addr.ip()).filter(|o| (*o as usize) < hosts);
        self.hosts[h as usize].conns.insert(conn);
        let Some(to_host) = to_host else {
            // Nobody there: the client's connect timeout ends it.
            return;
        };
        if self.encrypts(h) && self.hosts[to_host as usize].attacker.is_none() {
            self.encryption.dialled(h as usize, to_host as usize, now);
        }
        // The far end's handle is known once it accepts.
        let c = Conn::new(self, h, ConnId(0), to_host, ConnState::Dialing);
        self.conns.insert(conn, c);
        self.trace
            .record(Kind::Dial, &[u64::from(h), u64::from(to_host)]);
        if self.cut(h, to_host) {
            return;
        }
        let at = now + self.trip();
        self.conns.get_mut(&conn).expect("inserted above").stream_at = at;
        self.queue.push(
            at,
            Ev::Syn {
                from: conn,
                from_host: h,
                to_host,
            },
        );
    }
}
