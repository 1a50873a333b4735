//! The fast engine's announces, carried as bytes between a peer and a [`Tracker`]'s
//! [`bt_protocol::tracker::TrackerServer`]. A peer's client decides when, to which tracker and
//! with what request ([`bt_protocol::client::Output::Announce`]), as in the runtime, and hears
//! the outcome through [`bt_protocol::client::Client::handle_announce`]; an attacker (which has
//! no client) keeps an [`Announcer`] of its own and announces as a seed (`left` 0) the same way.
//!
//! HTTP, as the runtime's tracker client does it: the request's bytes are
//! [`http_get_request`]; they reach the server two one-way latencies (the TCP connect) plus one
//! TCP trip after the announce starts, the answer one more TCP trip later (each trip with the
//! link's jitter and a retransmission timeout per loss, lost with the link's `loss` and the
//! tracker's own); the client reads it with [`HttpResponseReader`] and
//! [`announce_response_from_http`]. A tracker that is down when the announce starts leaves the
//! client waiting for [`TRACKER_CONNECT_TIMEOUT`]; one that is down when the request arrives, or
//! an exchange slower than [`TRACKER_HTTP_TIMEOUT`], ends with a timeout at that deadline.
//!
//! UDP (BEP 15): the engine runs the protocol's [`UdpAnnounce`] for each announce
//! ([`UDP_TRACKER_CONFIG`], from the connection id the client cached), as the runtime does: each
//! of its datagrams takes the link's latency and jitter and is lost with the link's `loss` and
//! the tracker's own; the server answers what reaches it (nothing while it is down), and the
//! answers travel back the same way. The machine's retransmission deadline is an engine event
//! (`tracker_timer`). Its result and its connection id go back to the client. Partitions do not
//! separate peers from trackers.
//!
//! Determinism: every delay and loss is drawn from the tracker's own stream
//! ([`Tracker::rng`]); every datagram is a trace record (with a hash of its bytes), and so is
//! every request a tracker answers.
//!
//! Stale work: a crash or restart bumps the peer's epoch; a UDP announce of an older life is
//! dropped at its next datagram or deadline, and an answer for an older life is not delivered.

use core::net::SocketAddr;

use bt_protocol::client::{
    AnnounceId, NUMWANT, TRACKER_CONNECT_TIMEOUT, TRACKER_HTTP_TIMEOUT, UDP_TRACKER_CONFIG,
    UdpConnection,
};
use bt_protocol::time::Instant;
use bt_protocol::tracker::{
    AnnounceRequest, AnnounceResponse, Announcer, AnnouncerConfig, Event as AnnounceEvent,
    HttpResponseReader, TrackerError, UdpAnnounce, announce_path_and_query,
    announce_response_from_http, http_get_request,
};
use bt_protocol::wire::PeerId;

use super::tracker::Tracker;
use super::{Ev, HostId, PORT, State, World, net};
use crate::scenario::TrackerKind;
use crate::trace::Kind;

/// Who an announce is for, and the URL it went to.
#[derive(Clone, Debug)]
struct Asker {
    host: HostId,
    /// The peer's life when it asked: the outcome is for that life only.
    epoch: u32,
    /// The client's handle for it; `None` for an attacker's.
    id: Option<AnnounceId>,
    url: String,
}

/// A UDP announce in flight: the protocol's machine, run for one peer.
#[derive(Debug)]
pub(super) struct Flight {
    asker: Asker,
    machine: UdpAnnounce,
    /// The deadline its `tracker_timer` event is for.
    timer_at: Option<Instant>,
}

/// An HTTP announce's request on its way to the tracker.
pub(super) struct HttpRequest {
    tracker: usize,
    asker: Asker,
    bytes: Vec<u8>,
    /// When the client gives up: the announce's start plus [`TRACKER_HTTP_TIMEOUT`].
    deadline: Instant,
}

/// An HTTP tracker's whole answer, or the client's timeout, on its way to the peer.
pub(super) struct Answer {
    asker: Asker,
    reply: Result<Vec<u8>, TrackerError>,
}

/// A UDP datagram between a peer and a tracker.
pub(super) struct Datagram {
    tracker: usize,
    /// The UDP announce it belongs to (the answer's way back to its socket).
    flight: u64,
    host: HostId,
    to_tracker: bool,
    bytes: Vec<u8>,
}

/// The peer id an attacker announces with: `-XX0001-` and its host number.
fn attacker_peer_id(h: HostId) -> PeerId {
    let mut id = *b"-XX0001-000000000000";
    id[8..].copy_from_slice(format!("{h:012}").as_bytes());
    PeerId(id)
}

impl World<'_> {
    /// Peer `h`'s client asks for an announce (`udp_connection`: the id it cached for a UDP
    /// tracker).
    pub(super) fn announce(
        &mut self,
        h: HostId,
        id: AnnounceId,
        url: String,
        request: AnnounceRequest,
        udp_connection: Option<UdpConnection>,
    ) {
        self.send_announce(h, Some(id), url, request, udp_connection);
    }

    /// Attacker `h` gets an announcer, which says `started` (none when there is no tracker).
    pub(super) fn start_attacker_announcer(&mut self, h: HostId) {
        if self.tracker_urls.is_empty() {
            return;
        }
        let now = self.now();
        let config = AnnouncerConfig {
            interval_floor: self.scenario.announce_interval_floor(),
            ..AnnouncerConfig::default()
        };
        let tiers = self.tracker_urls.iter().map(|u| vec![u.clone()]).collect();
        let host = &mut self.hosts[h as usize];
        let mut announcer = Announcer::new(config, tiers, &mut host.rng);
        announcer.started(now);
        host.announcer = Some(announcer);
    }

    /// Makes the announce attacker `h`'s announcer wants now, if any, as a seed.
    pub(super) fn pump_attacker_announce(&mut self, h: HostId) {
        let now = self.now();
        let host = &mut self.hosts[h as usize];
        let Some(announce) = host.announcer.as_mut().and_then(|a| a.poll_announce(now)) else {
            return;
        };
        let request = AnnounceRequest {
            info_hash: self.content.info_hash,
            peer_id: attacker_peer_id(h),
            port: PORT,
            uploaded: 0,
            downloaded: 0,
            left: 0,
            event: announce.event,
            numwant: Some(NUMWANT),
            key: h,
            tracker_id: announce.tracker_id,
        };
        self.send_announce(h, None, announce.url, request, None);
    }

    /// Starts an announce to the tracker of `url` over its transport.
    fn send_announce(
        &mut self,
        h: HostId,
        id: Option<AnnounceId>,
        url: String,
        request: AnnounceRequest,
        udp_connection: Option<UdpConnection>,
    ) {
        let Some(t) = self.trackers.iter().position(|x| x.url == url) else {
            return;
        };
        self.trace.record(
            Kind::Announce,
            &[u64::from(h), t as u64, request.event as u64],
        );
        let asker = Asker {
            host: h,
            epoch: self.hosts[h as usize].epoch,
            id,
            url,
        };
        match self.trackers[t].kind {
            TrackerKind::Http => self.send_http(t, asker, &request),
            TrackerKind::Udp => self.start_udp(t, asker, request, udp_connection),
        }
    }

    // ---- HTTP ----

    fn send_http(&mut self, t: usize, asker: Asker, request: &AnnounceRequest) {
        let now = self.now();
        let link = &self.scenario.link;
        let tracker = &mut self.trackers[t];
        if !tracker.up {
            // Nobody answers the SYN.
            let why = format!(
                "{}: no answer to connect in {} s",
                tracker.addr,
                TRACKER_CONNECT_TIMEOUT.as_secs()
            );
            let answer = Answer {
                asker,
                reply: Err(TrackerError::Unreachable(why)),
            };
            self.queue.push(
                now + TRACKER_CONNECT_TIMEOUT,
                Ev::TrackerAnswer(Box::new(answer)),
            );
            return;
        }
        let url = &tracker.parsed_url;
        let bytes = http_get_request(url, &announce_path_and_query(url, request));
        let loss = net::both_losses(link.loss, tracker.loss);
        // SYN and SYN-ACK, then the request.
        let reaches = now + link.latency * 2 + net::tcp_trip(link, loss, &mut tracker.rng);
        let deadline = now + TRACKER_HTTP_TIMEOUT;
        if reaches >= deadline {
            let answer = Answer {
                asker,
                reply: Err(TrackerError::Timeout),
            };
            self.queue
                .push(deadline, Ev::TrackerAnswer(Box::new(answer)));
            return;
        }
        let request = HttpRequest {
            tracker: t,
            asker,
            bytes,
            deadline,
        };
        self.queue
            .push(reaches, Ev::TrackerRequest(Box::new(request)));
    }

    /// An HTTP request reaches its tracker, which answers it (if it is up).
    pub(super) fn on_tracker_request(&mut self, request: HttpRequest) {
        let now = self.now();
        let HttpRequest {
            tracker: t,
            asker,
            bytes,
            deadline,
        } = request;
        let link = &self.scenario.link;
        let ip = self.hosts[asker.host as usize].addr.ip();
        let tracker = &mut self.trackers[t];
        let (at, reply) = if tracker.up {
            self.trace
                .record(Kind::TrackerRequest, &[u64::from(asker.host), t as u64]);
            let reply = tracker.server().handle_http_request(now, ip, &bytes);
            let loss = net::both_losses(link.loss, tracker.loss);
            let arrives = now + net::tcp_trip(link, loss, &mut tracker.rng);
            if arrives < deadline {
                (arrives, Ok(reply))
            } else {
                (deadline, Err(TrackerError::Timeout))
            }
        } else {
            // Connected, then silence until the client's deadline.
            (deadline, Err(TrackerError::Timeout))
        };
        self.queue
            .push(at, Ev::TrackerAnswer(Box::new(Answer { asker, reply })));
    }

    /// An HTTP answer (or the client's timeout) reaches the peer, which reads it.
    pub(super) fn on_tracker_answer(&mut self, answer: Answer) {
        let result = answer.reply.and_then(|bytes| {
            let mut reader = HttpResponseReader::new();
            reader.feed(&bytes);
            announce_response_from_http(&reader.finish()?)
        });
        self.deliver(answer.asker, result, None);
    }

    // ---- UDP ----

    fn start_udp(
        &mut self,
        t: usize,
        asker: Asker,
        request: AnnounceRequest,
        cached: Option<UdpConnection>,
    ) {
        let now = self.now();
        let addr = self.trackers[t].addr;
        let rng = &mut self.hosts[asker.host as usize].rng;
        let machine = UdpAnnounce::new(UDP_TRACKER_CONFIG, addr, request, cached, rng, now);
        let tracker = &mut self.trackers[t];
        let f = tracker.next_flight;
        tracker.next_flight += 1;
        tracker.flights.insert(
            f,
            Flight {
                asker,
                machine,
                timer_at: None,
            },
        );
        self.pump_flight(t, f);
    }

    /// After any input to UDP announce `f` of tracker `t`: sends its datagrams, hands its result
    /// over, or waits for its deadline.
    fn pump_flight(&mut self, t: usize, f: u64) {
        let now = self.now();
        let Some(flight) = self.trackers[t].flights.get_mut(&f) else {
            return;
        };
        let out: Vec<Vec<u8>> = std::iter::from_fn(|| flight.machine.poll_transmit()).collect();
        let host = flight.asker.host;
        if let Some(result) = flight.machine.poll_result() {
            let flight = self.trackers[t].flights.remove(&f).expect("found above");
            return self.deliver(flight.asker, result, flight.machine.connection());
        }
        if let Some(at) = flight.machine.poll_timeout().map(|at| at.max(now))
            && flight.timer_at != Some(at)
        {
            flight.timer_at = Some(at);
            self.queue.push(
                at,
                Ev::TrackerTimer {
                    tracker: t as u32,
                    flight: f,
                },
            );
        }
        for bytes in out {
            self.send_tracker_datagram(t, f, host, true, bytes);
        }
    }

    /// The UDP announce `f` of tracker `t`, unless it belongs to an earlier life of its peer
    /// (then it is dropped).
    fn live_flight(&mut self, t: usize, f: u64) -> Option<&mut Flight> {
        let flight = self.trackers[t].flights.get(&f)?;
        if self.hosts[flight.asker.host as usize].epoch != flight.asker.epoch {
            self.trackers[t].flights.remove(&f);
            return None;
        }
        self.trackers[t].flights.get_mut(&f)
    }

    /// UDP announce `f`'s deadline, if it still waits for this one.
    pub(super) fn on_tracker_timer(&mut self, t: usize, f: u64) {
        let now = self.now();
        let Some(flight) = self.live_flight(t, f) else {
            return;
        };
        if flight.timer_at != Some(now) {
            return;
        }
        flight.timer_at = None;
        flight.machine.handle_timeout(now);
        self.pump_flight(t, f);
    }

    /// Puts a datagram between peer `host` and tracker `t` on the network.
    fn send_tracker_datagram(
        &mut self,
        t: usize,
        f: u64,
        host: HostId,
        to_tracker: bool,
        bytes: Vec<u8>,
    ) {
        let link = &self.scenario.link;
        let tracker = &mut self.trackers[t];
        tracker.datagrams += 1;
        let ids = [u64::from(host), t as u64, u64::from(to_tracker)];
        self.trace.record(
            Kind::TrackerDatagram,
            &[
                ids[0],
                ids[1],
                ids[2],
                bytes.len() as u64,
                super::dht::fnv(&bytes),
            ],
        );
        let loss = net::both_losses(link.loss, tracker.loss);
        let Some(delay) = net::datagram_trip(link, loss, &mut tracker.rng) else {
            tracker.datagrams_lost += 1;
            self.trace.record(Kind::TrackerLost, &ids);
            return;
        };
        let datagram = Datagram {
            tracker: t,
            flight: f,
            host,
            to_tracker,
            bytes,
        };
        let at = self.now() + delay;
        self.queue.push(at, Ev::TrackerDatagram(Box::new(datagram)));
    }

    /// A UDP datagram arrives: at the tracker, which answers it (if it is up), or at the peer's
    /// announce (dropped if that announce has ended: its socket is closed).
    pub(super) fn on_tracker_datagram(&mut self, d: Datagram) {
        let now = self.now();
        let Datagram {
            tracker: t,
            flight: f,
            host,
            to_tracker,
            bytes,
        } = d;
        if to_tracker {
            let from: SocketAddr = self.hosts[host as usize].addr;
            let tracker = &mut self.trackers[t];
            if !tracker.up {
                tracker.datagrams_lost += 1;
                self.trace
                    .record(Kind::TrackerLost, &[u64::from(host), t as u64, 1]);
                return;
            }
            self.trace
                .record(Kind::TrackerRequest, &[u64::from(host), t as u64]);
            if let Some(reply) = tracker.server().handle_datagram(now, from, &bytes) {
                self.send_tracker_datagram(t, f, host, false, reply);
            }
            return;
        }
        let Some(flight) = self.live_flight(t, f) else {
            return;
        };
        flight.machine.handle_datagram(now, &bytes);
        self.pump_flight(t, f);
    }

    // ---- the outcome ----

    /// Hands an announce's outcome to the peer's client (with the UDP connection id to keep),
    /// or to the attacker's announcer.
    fn deliver(
        &mut self,
        asker: Asker,
        result: Result<AnnounceResponse, TrackerError>,
        udp_connection: Option<UdpConnection>,
    ) {
        let Asker {
            host: h,
            epoch,
            id,
            url,
        } = asker;
        let now = self.now();
        let host = &mut self.hosts[h as usize];
        if host.epoch != epoch {
            return;
        }
        if let Some(id) = id {
            // The client's: it learns the peers and reports the answer as an event.
            if let Some(client) = host.client.as_mut() {
                client.handle_announce(now, id, result, udp_connection);
            }
            self.settle(h);
            return;
        }
        let Some(announcer) = host.announcer.as_mut() else {
            return;
        };
        self.trace.record(
            Kind::TrackerAnswer,
            &[u64::from(h), u64::from(result.is_ok())],
        );
        let event = announcer
            .in_flight()
            .map_or(AnnounceEvent::None, |(_, e)| e);
        match result {
            Ok(answer) => {
                announcer.handle_success(now, &url, &answer);
                if host.state == State::Up && event != AnnounceEvent::Stopped {
                    for peer in answer.peers {
                        self.attacker_learn(h, peer);
                    }
                }
            }
            Err(e) => announcer.handle_failure(now, &url, &e),
        }
        let host = &mut self.hosts[h as usize];
        if host.state == State::Left && host.announcer.as_ref().is_some_and(|a| a.is_stopped()) {
            host.announcer = None;
        }
        self.settle(h);
    }

    /// The trackers' figures for the report: peers still tracked at the end, requests refused
    /// or unreadable, and, with a UDP tracker, connects answered and datagrams sent and lost.
    pub(super) fn tracker_diagnostics(
        &mut self,
        into: &mut std::collections::BTreeMap<String, u64>,
    ) {
        if self.trackers.is_empty() {
            return;
        }
        let end = self.ended_at;
        let peers: usize = self.trackers.iter_mut().map(|t| t.finish(end)).sum();
        let sum = |f: fn(&Tracker) -> u64| self.trackers.iter().map(f).sum::<u64>();
        into.insert("tracker_peers_at_end".to_owned(), peers as u64);
        into.insert("tracker_refused".to_owned(), sum(|t| t.stats().refused));
        into.insert(
            "tracker_bad_requests".to_owned(),
            sum(|t| t.stats().bad_requests),
        );
        if self.trackers.iter().any(|t| t.kind == TrackerKind::Udp) {
            into.insert(
                "tracker_udp_connects".to_owned(),
                sum(|t| t.stats().connects),
            );
            into.insert("tracker_udp_datagrams".to_owned(), sum(|t| t.datagrams));
            into.insert(
                "tracker_udp_datagrams_lost".to_owned(),
                sum(|t| t.datagrams_lost),
            );
        }
    }
}
