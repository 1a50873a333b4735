//! [`Tracker`]: one `[[tracker]]` of the fast engine, the protocol's own
//! [`TrackerServer`] (what `bt tracker` runs) at an address of its own, with the scenario's
//! faults and loss around it.
//!
//! The server answers the bytes a client sends: HTTP requests whole, after the TCP model's delay,
//! and BEP 15 datagrams one by one (`announce.rs` carries both). Its configuration comes from the
//! scenario: `interval` is the interval it gives, with no min interval (0: a client may send its
//! `completed` at once), `peers` both the default and the largest numwant it grants. While `up`
//! is false it answers nothing.
//!
//! The server's expiry timer is not an engine event: the server forgets silent peers at the
//! start of every input, so its answers never hold expired peers, and [`Tracker::finish`] runs
//! the timer once at the end for the figures.
//!
//! Bounds: the server's own ([`bt_protocol::tracker::TrackerConfig`]: peers, torrents, answer
//! sizes); the UDP announces in flight ([`Tracker::flights`]) are at most one per running peer's
//! client (one torrent each) or attacker, plus those of lives a crash ended, each dropped at its
//! next datagram or timer (within 21 s).

use core::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::collections::BTreeMap;
use std::time::Duration;

use bt_protocol::rng::Rng;
use bt_protocol::time::Instant;
use bt_protocol::tracker::{ServerStats, TrackerConfig, TrackerServer, TrackerUrl};

use super::announce::Flight;
use crate::scenario::{TrackerKind, TrackerSpec};

/// The port UDP trackers listen on (and the one in their URL).
const UDP_PORT: u16 = 6969;

/// The port HTTP trackers listen on.
const HTTP_PORT: u16 = 80;

/// One tracker and the UDP announces in flight to it. See the module docs.
#[derive(Debug)]
pub(super) struct Tracker {
    server: TrackerServer,
    /// HTTP or UDP.
    pub(super) kind: TrackerKind,
    /// Its address: 10.254.0.(index + 1), no peer's (peers are 10.x.y.z below 10.254).
    pub(super) addr: SocketAddr,
    /// The URL peers announce to.
    pub(super) url: String,
    /// The same, parsed.
    pub(super) parsed_url: TrackerUrl,
    /// Fraction of packets to and from it lost, besides the link's.
    pub(super) loss: f64,
    /// Whether it answers.
    pub(super) up: bool,
    /// Jitter and loss of the packets to and from it (one stream per tracker, so its traffic
    /// draws nothing from the peers' links).
    pub(super) rng: Rng,
    /// UDP announces in flight to it, by flight number.
    pub(super) flights: BTreeMap<u64, Flight>,
    /// The next flight's number.
    pub(super) next_flight: u64,
    /// UDP datagrams sent to or from it.
    pub(super) datagrams: u64,
    /// UDP datagrams to or from it that the network lost, or that reached it while down.
    pub(super) datagrams_lost: u64,
}

impl Tracker {
    /// Tracker number `index` of `spec`, its server seeded from `rng`.
    pub(super) fn new(index: usize, spec: &TrackerSpec, mut rng: Rng) -> Self {
        let max_peers = u32::try_from(spec.max_peers).unwrap_or(u32::MAX);
        let config = TrackerConfig {
            interval: spec.interval,
            min_interval: Duration::ZERO,
            default_numwant: max_peers,
            max_numwant: max_peers,
            ..TrackerConfig::default()
        };
        let n = index as u32 + 1;
        let ip = IpAddr::V4(Ipv4Addr::new(10, 254, (n >> 8) as u8, n as u8));
        let (port, url) = match spec.kind {
            TrackerKind::Http => (HTTP_PORT, format!("http://tracker{index}.sim/announce")),
            TrackerKind::Udp => (
                UDP_PORT,
                format!("udp://tracker{index}.sim:{UDP_PORT}/announce"),
            ),
        };
        let parsed_url = TrackerUrl::parse(&url).expect("a well-formed URL");
        Tracker {
            server: TrackerServer::new(config, rng.next_u64()),
            kind: spec.kind,
            addr: SocketAddr::new(ip, port),
            url,
            parsed_url,
            loss: spec.loss,
            up: true,
            rng,
            flights: BTreeMap::new(),
            next_flight: 0,
            datagrams: 0,
            datagrams_lost: 0,
        }
    }

    /// The server, to hand requests to.
    pub(super) fn server(&mut self) -> &mut TrackerServer {
        &mut self.server
    }

    /// What the server served.
    pub(super) fn stats(&self) -> ServerStats {
        self.server.stats()
    }

    /// The run ended at `end`: forgets the peers silent too long, and gives how many it still
    /// tracks.
    pub(super) fn finish(&mut self, end: Instant) -> usize {
        self.server.handle_timeout(end);
        self.server.peer_count()
    }
}
