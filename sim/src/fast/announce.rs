//! The fast engine's announces: a peer's client decides when, to which tracker and with what
//! request ([`bt_protocol::client::Output::Announce`]), as in the runtime; the trip to the
//! in-process [`super::Directory`] is modelled here. An attacker (which has no client) keeps an
//! [`Announcer`] of its own and announces as a seed.
//!
//! HTTP: a TCP connect and the request take a round trip and a half to reach the tracker, the
//! answer one more trip; a tracker that is down leaves the client waiting for the runtime's
//! connect timeout (10 s). UDP (BEP 15): a connect exchange then an announce exchange, each
//! packet lost with the link's `loss` and the tracker's own, each exchange tried on the client's
//! schedule (0, 3 and 9 s); with no answer (tracker down, or every try lost) the client gives up
//! 21 s after the exchange began.

use std::time::Duration;

use bt_protocol::client::{AnnounceId, NUMWANT, TRACKER_CONNECT_TIMEOUT, UDP_TRACKER_CONFIG};
use bt_protocol::time::Instant;
use bt_protocol::tracker::{
    AnnounceRequest, AnnounceResponse, Announcer, AnnouncerConfig, Event as AnnounceEvent,
    TrackerError,
};

use super::{Ev, HostId, State, World};
use crate::scenario::TrackerKind;
use crate::trace::Kind;

/// An announce on its way to a tracker.
pub(super) struct Request {
    tracker: usize,
    host: HostId,
    epoch: u32,
    /// The client's handle for it; `None` for an attacker's.
    id: Option<AnnounceId>,
    url: String,
    event: AnnounceEvent,
    left: u64,
    numwant: usize,
    /// When the client gives up if the tracker does not answer.
    gives_up_at: Instant,
}

/// A tracker's answer (or the client's timeout) on its way to a peer.
pub(super) struct Answer {
    host: HostId,
    epoch: u32,
    id: Option<AnnounceId>,
    url: String,
    result: Result<AnnounceResponse, TrackerError>,
}

/// The URL peers announce to for tracker `index`.
pub(super) fn tracker_url(index: usize, kind: TrackerKind) -> String {
    match kind {
        TrackerKind::Http => format!("http://tracker{index}.sim/announce"),
        TrackerKind::Udp => format!("udp://tracker{index}.sim:6969/announce"),
    }
}

/// How long a UDP client waits for a tracker that never answers: 3 + 6 + 12 s.
fn udp_give_up() -> Duration {
    let c = UDP_TRACKER_CONFIG;
    (0..=c.max_retries).map(|i| c.base_timeout * (1 << i)).sum()
}

impl World<'_> {
    /// Whether a packet to or from `tracker` is lost: the link's loss, then the tracker's own.
    fn udp_lost(&mut self, tracker: usize) -> bool {
        let link = self.scenario.link.loss;
        let own = self.scenario.trackers[tracker].loss;
        let loss = 1.0 - (1.0 - link) * (1.0 - own);
        loss > 0.0 && (self.net_rng.next_u64() as f64) < loss * u64::MAX as f64
    }

    /// Peer `h`'s client asks for an announce.
    pub(super) fn announce(
        &mut self,
        h: HostId,
        id: AnnounceId,
        url: String,
        request: AnnounceRequest,
    ) {
        let numwant = request.numwant.unwrap_or(NUMWANT) as usize;
        self.send_announce(h, Some(id), url, request.event, request.left, numwant);
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
        self.send_announce(h, None, announce.url, announce.event, 0, NUMWANT as usize);
    }

    /// Puts an announce on its way to the tracker of `url`.
    fn send_announce(
        &mut self,
        h: HostId,
        id: Option<AnnounceId>,
        url: String,
        event: AnnounceEvent,
        left: u64,
        numwant: usize,
    ) {
        let now = self.now();
        let Some(tracker) = self.tracker_urls.iter().position(|u| *u == url) else {
            return;
        };
        let epoch = self.hosts[h as usize].epoch;
        self.trace.record(
            Kind::Announce,
            &[u64::from(h), tracker as u64, event as u64],
        );
        let latency = self.scenario.link.latency;
        let kind = self.scenario.trackers[tracker].kind;
        // When the request reaches the tracker (if it does) and when the client gives up.
        let (reaches, gives_up_at) = match kind {
            TrackerKind::Http => (
                Some(now + latency * 3 + self.loss_delay(tracker)),
                now + TRACKER_CONNECT_TIMEOUT,
            ),
            TrackerKind::Udp => self.udp_exchanges(tracker, now, latency),
        };
        let request = Request {
            tracker,
            host: h,
            epoch,
            id,
            url,
            event,
            left,
            numwant,
            gives_up_at,
        };
        match reaches {
            Some(at) if self.trackers[tracker].up => {
                self.queue.push(at, Ev::TrackerRequest(Box::new(request)));
            }
            _ => self.give_up(request),
        }
    }

    /// The delay TCP losses add to one exchange with `tracker`.
    fn loss_delay(&mut self, tracker: usize) -> Duration {
        let mut d = Duration::ZERO;
        let rto = Duration::from_millis(200).max(self.scenario.link.latency * 4);
        for i in 0..8 {
            if !self.udp_lost(tracker) {
                break;
            }
            d += rto * (1 << i);
        }
        d
    }

    /// A UDP connect exchange then the announce exchange, each with the runtime's tries (the
    /// announce's count starts afresh once connected, as `UdpAnnounce` does): when the request
    /// that gets an answer reaches the tracker (`None` if a step never got through), and when
    /// the client gives up if the tracker does not answer it.
    fn udp_exchanges(
        &mut self,
        tracker: usize,
        now: Instant,
        latency: Duration,
    ) -> (Option<Instant>, Instant) {
        let c = UDP_TRACKER_CONFIG;
        let tries = |start: Instant, world: &mut Self| {
            let mut t = start;
            for i in 0..=c.max_retries {
                // A try counts when the request and its answer both arrive.
                if !world.udp_lost(tracker) && !world.udp_lost(tracker) {
                    return (Some(t), start + udp_give_up());
                }
                t = t + c.base_timeout * (1 << i);
            }
            (None, start + udp_give_up())
        };
        let connected = match tries(now, self) {
            (Some(sent), _) => sent + latency * 2,
            (None, give_up) => return (None, give_up),
        };
        match tries(connected, self) {
            (Some(sent), give_up) => (Some(sent + latency), give_up),
            (None, give_up) => (None, give_up),
        }
    }

    /// The client gives up on `request` at its deadline.
    fn give_up(&mut self, request: Request) {
        self.queue.push(
            request.gives_up_at.max(self.now()),
            Ev::TrackerAnswer(Box::new(Answer {
                host: request.host,
                epoch: request.epoch,
                id: request.id,
                url: request.url,
                result: Err(TrackerError::Timeout),
            })),
        );
    }

    pub(super) fn on_tracker_request(&mut self, request: Request) {
        let now = self.now();
        if !self.trackers[request.tracker].up {
            return self.give_up(request);
        }
        // The answer arrives one latency later: the losses on the way (which UDP try got
        // through, TCP's retransmissions) were drawn when the request left.
        let at = now + self.scenario.link.latency;
        let addr = self.hosts[request.host as usize].addr;
        self.trace.record(
            Kind::TrackerRequest,
            &[u64::from(request.host), request.tracker as u64],
        );
        let answer = self.trackers[request.tracker].announce(
            now,
            addr,
            request.event,
            request.left,
            request.numwant,
        );
        self.queue.push(
            at,
            Ev::TrackerAnswer(Box::new(Answer {
                host: request.host,
                epoch: request.epoch,
                id: request.id,
                url: request.url,
                result: Ok(answer),
            })),
        );
    }

    pub(super) fn on_tracker_answer(&mut self, answer: Answer) {
        let Answer {
            host: h,
            epoch,
            id,
            url,
            result,
        } = answer;
        let now = self.now();
        let host = &mut self.hosts[h as usize];
        if host.epoch != epoch {
            return;
        }
        if let Some(id) = id {
            // The client's: it learns the peers and reports the answer as an event.
            if let Some(client) = host.client.as_mut() {
                client.handle_announce(now, id, result, None);
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
}
