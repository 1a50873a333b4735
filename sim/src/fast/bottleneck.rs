//! The fast engine's bottleneck model: each peer's uplink as one drop-tail FIFO, shared by its
//! TCP connections and its datagrams (uTP and DHT), in front of a link that sends `len / up`
//! seconds per item.
//!
//! On when the scenario sets `[link] buffer`, or when a group lists `utp` in its `transports`
//! (then with [`DEFAULT_BUFFER`]); off, the uplink is `net`'s round robin of bursts and
//! datagrams skip it (every scenario without either key runs as before, event for event).
//!
//! With it on:
//! - TCP: a connection keeps what its session wrote in its own queue (bounded by the session's
//!   send-buffer watermark). While the FIFO has room (its bytes plus the next burst at most the
//!   bound, or the FIFO empty), the connections with bytes take turns putting a burst of at most
//!   [`super::net::QUANTUM`] into it, and the session hears `handle_sent` then, as a kernel takes
//!   bytes into its socket buffer: a loss-based TCP keeps the bottleneck full. When a burst
//!   leaves the uplink it travels as in `net` (latency, jitter, retransmission timeouts, in
//!   order per connection, the receiver's downlink).
//! - Datagrams: one arriving at a FIFO without room for it is dropped (a `queue_drop` trace
//!   record). One that leaves the uplink takes the link's latency and a uniform `0..=jitter`
//!   more, each independently (so datagrams reorder once the jitter exceeds their spacing), is
//!   lost with the link's `loss` (a DHT datagram also with `[dht] loss`), does not cross a
//!   partition, then waits for the receiver's downlink (first come, first served, with the
//!   bursts) and is handed over.
//! - Measurements: each item's queueing delay, from entering the FIFO to leaving the uplink
//!   (its own serialisation included), and its bytes, by the uplink's group, the item's class
//!   (TCP, uTP, DHT) and the phases it left in ([`crate::transport`]).
//!
//! Bounds: a FIFO holds at most its bound in bytes (a single item larger than the bound is let
//! into an empty FIFO, so a burst always moves); it is emptied when its peer crashes.

use std::collections::VecDeque;
use std::time::Duration;

use bt_protocol::io::ConnId;
use bt_protocol::time::Instant;
use bt_protocol::utp::packet::{DatagramKind, classify};

use super::dht::Datagram;
use super::net::Burst;
use super::{Ev, HostId, World};
use crate::scenario::Scenario;
use crate::trace::Kind;
use crate::transport::Class;

/// The uplink queue's bound when a group runs uTP and the file sets no `buffer`.
pub(super) const DEFAULT_BUFFER: u64 = 256 * 1024;

/// What waits in an uplink's FIFO.
pub(super) enum Payload {
    /// A TCP burst of connection end `conn`.
    Burst { conn: ConnId, burst: Burst },
    /// A datagram.
    Datagram(Box<Datagram>),
}

/// One item of an uplink's FIFO.
pub(super) struct Queued {
    /// When it entered the FIFO.
    entered: Instant,
    len: usize,
    class: Class,
    payload: Payload,
}

/// A peer's uplink FIFO (see the module docs).
#[derive(Default)]
pub(super) struct Fifo {
    items: VecDeque<Queued>,
    /// Bytes of `items`, the one being sent included.
    bytes: usize,
}

impl Fifo {
    /// Whether an item of `len` bytes fits under `bound`.
    fn has_room(&self, len: usize, bound: usize) -> bool {
        self.items.is_empty() || self.bytes + len <= bound
    }

    /// Empties it (its peer crashed).
    pub(super) fn clear(&mut self) {
        self.items.clear();
        self.bytes = 0;
    }
}

/// The class of a datagram's bytes.
pub(super) fn datagram_class(bytes: &[u8]) -> Class {
    match classify(bytes) {
        DatagramKind::Utp => Class::Utp,
        DatagramKind::Dht | DatagramKind::Other => Class::Dht,
    }
}

impl World<'_> {
    /// Records an item of `class` and `len` bytes that left peer `h`'s uplink after `delay_us`,
    /// in the run and in every phase it left in.
    fn record_left(&mut self, h: HostId, class: Class, len: usize, delay_us: u64) {
        let g = self.hosts[h as usize].group;
        for p in phases_at(self.scenario, self.now()) {
            self.transport.uplinks[p][g].classes[class.index()].record(len as u64, delay_us);
        }
    }

    /// Records a datagram dropped at peer `h`'s full uplink.
    fn record_drop(&mut self, h: HostId, class: Class, len: usize) {
        let g = self.hosts[h as usize].group;
        for p in phases_at(self.scenario, self.now()) {
            self.transport.uplinks[p][g].classes[class.index()].drop(len as u64);
        }
    }

    /// Peer `h`'s TCP connections fill its FIFO while it has room, round robin, and their
    /// sessions hear what was taken; then the uplink starts if it is idle.
    pub(super) fn fill_fifo(&mut self, h: HostId) {
        let bound = self.buffer.expect("the bottleneck model is on") as usize;
        let now = self.now();
        let mut reports: Vec<(ConnId, usize)> = Vec::new();
        loop {
            let host = &mut self.hosts[h as usize];
            let Some(&conn) = host.active.front() else {
                break;
            };
            let Some(c) = self.conns.get_mut(&conn) else {
                host.active.pop_front();
                continue;
            };
            let len = c.next_burst_len();
            if !host.fifo.has_room(len, bound) {
                break;
            }
            host.active.pop_front();
            let burst = c.take_burst();
            if burst.is_empty() {
                c.set_inactive();
                continue;
            }
            if c.has_more() && !burst.has_fin() {
                host.active.push_back(conn);
            } else {
                c.set_inactive();
            }
            if let Some(sent) = c.taken(burst.len()) {
                reports.push((conn, sent));
            }
            host.fifo.bytes += burst.len();
            host.fifo.items.push_back(Queued {
                entered: now,
                len: burst.len(),
                class: Class::Tcp,
                payload: Payload::Burst { conn, burst },
            });
        }
        self.serve_fifo(h);
        for (conn, sent) in reports {
            if let Some(client) = self.hosts[h as usize].client.as_mut() {
                client.handle_sent(now, conn, sent);
            }
        }
    }

    /// Starts sending the head of peer `h`'s FIFO if its uplink is idle.
    fn serve_fifo(&mut self, h: HostId) {
        let now = self.now();
        let host = &mut self.hosts[h as usize];
        if host.uplink_busy {
            return;
        }
        let Some(head) = host.fifo.items.front() else {
            return;
        };
        let micros = host
            .up_rate
            .map_or(0, |rate| (head.len as u64 * 1_000_000).div_ceil(rate));
        host.uplink_busy = true;
        let epoch = host.epoch;
        self.queue.push(
            now + Duration::from_micros(micros),
            Ev::QueueDone { host: h, epoch },
        );
    }

    /// A datagram from peer `h` enters its FIFO, or is dropped when there is no room.
    pub(super) fn queue_datagram(&mut self, h: HostId, d: Datagram) {
        let bound = self.buffer.expect("the bottleneck model is on") as usize;
        let now = self.now();
        let class = datagram_class(d.bytes());
        let len = d.bytes().len();
        let host = &mut self.hosts[h as usize];
        if !host.fifo.has_room(len, bound) {
            self.trace
                .record(Kind::QueueDrop, &[u64::from(h), len as u64]);
            self.record_drop(h, class, len);
            return;
        }
        host.fifo.bytes += len;
        host.fifo.items.push_back(Queued {
            entered: now,
            len,
            class,
            payload: Payload::Datagram(Box::new(d)),
        });
        self.serve_fifo(h);
    }

    /// The head of peer `h`'s FIFO has left its uplink: it travels on, the next starts, and the
    /// connections refill the room it freed.
    pub(super) fn on_queue_done(&mut self, h: HostId, epoch: u32) {
        let now = self.now();
        let host = &mut self.hosts[h as usize];
        if host.epoch != epoch {
            return;
        }
        host.uplink_busy = false;
        let Some(item) = host.fifo.items.pop_front() else {
            return;
        };
        host.fifo.bytes -= item.len;
        let delay_us = (now - item.entered).as_micros() as u64;
        self.record_left(h, item.class, item.len, delay_us);
        match item.payload {
            Payload::Burst { conn, burst } => {
                self.trace
                    .record(Kind::Sent, &[u64::from(h), conn.0, burst.len() as u64]);
                if let Some(c) = self.conns.get(&conn) {
                    let (remote, remote_host) = (c.remote, c.remote_host);
                    let fin = burst.has_fin();
                    self.transit(conn, remote, h, remote_host, burst);
                    if fin {
                        self.forget_end(conn);
                    }
                }
            }
            Payload::Datagram(d) => {
                self.trace
                    .record(Kind::QueueLeft, &[u64::from(h), item.len as u64, delay_us]);
                self.datagram_out(*d);
            }
        }
        self.fill_fifo(h);
        self.settle(h);
    }

    /// A datagram that crossed the links reaches peer `h`'s downlink: handed over once the
    /// downlink has taken it (first come, first served, with the bursts).
    pub(super) fn on_datagram_arrive(&mut self, h: Option<HostId>, d: Datagram) {
        let now = self.now();
        let rate = h.and_then(|h| self.hosts[h as usize].down_rate);
        match (h, rate) {
            (Some(h), Some(rate)) => {
                let micros = (d.bytes().len() as u64 * 1_000_000).div_ceil(rate);
                let host = &mut self.hosts[h as usize];
                host.down_free_at = host.down_free_at.max(now) + Duration::from_micros(micros);
                let at = host.down_free_at;
                self.queue.push(at, Ev::DhtDatagram(Box::new(d)));
            }
            _ => self.on_datagram(d),
        }
    }
}

/// The indices in [`crate::transport::TransportOutcome::uplinks`] of the run (0) and of every
/// phase of `scenario` that `at` falls in.
fn phases_at(scenario: &Scenario, at: Instant) -> impl Iterator<Item = usize> + '_ {
    let t = Duration::from_micros(at.as_micros());
    std::iter::once(0).chain(
        scenario
            .phases
            .iter()
            .enumerate()
            .filter(move |(_, p)| p.from <= t && t < p.to)
            .map(|(i, _)| i + 1),
    )
}
