//! The fast engine's announces: the protocol's [`bt_protocol::tracker::Announcer`] decides when
//! and to which tracker, as in the runtime; the trip to the in-process [`super::Directory`] is
//! modelled here.
//!
//! HTTP: a TCP connect and the request take a round trip and a half to reach the tracker, the
//! answer one more trip; a tracker that is down leaves the client waiting for the runtime's
//! connect timeout (10 s). UDP (BEP 15): a connect exchange then an announce exchange, each
//! packet lost with the link's `loss` and resent after 3, 6 and 12 s as the runtime does; with
//! no answer (tracker down, or every try lost) the client gives up after 21 s.

use std::time::Duration;

use bt_protocol::time::Instant;
use bt_protocol::tracker::{AnnounceResponse, Event as AnnounceEvent, TrackerError};

use super::{Ev, HostId, State, World};
use crate::scenario::TrackerKind;

/// An announce on its way to a tracker.
pub(super) struct Request {
    tracker: usize,
    host: HostId,
    epoch: u32,
    url: String,
    event: AnnounceEvent,
    left: u64,
    /// When the client gives up if the tracker does not answer.
    gives_up_at: Instant,
}

/// A tracker's answer (or the client's timeout) on its way to a peer.
pub(super) struct Answer {
    host: HostId,
    epoch: u32,
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
    let c = bt_runtime::tracker::UDP_CONFIG;
    (0..=c.max_retries).map(|i| c.base_timeout * (1 << i)).sum()
}

impl World<'_> {
    /// Whether a UDP packet is lost.
    fn udp_lost(&mut self) -> bool {
        let loss = self.scenario.link.loss;
        loss > 0.0 && (self.net_rng.next_u64() as f64) < loss * u64::MAX as f64
    }

    /// Makes the announce peer `h`'s announcer wants now, if any.
    pub(super) fn pump_announce(&mut self, h: HostId) {
        let now = self.now();
        let host = &mut self.hosts[h as usize];
        let Some(announce) = host.announcer.as_mut().and_then(|a| a.poll_announce(now)) else {
            return;
        };
        let tracker = self
            .tracker_urls
            .iter()
            .position(|u| *u == announce.url)
            .expect("the announcer only knows our URLs");
        let left = match host.session.as_ref().and_then(|s| s.torrent(host.torrent)) {
            Some(t) if t.is_complete() => 0,
            Some(t) => {
                let layout = t.layout();
                let missing = u64::from(layout.piece_count() - t.have().count());
                (missing * u64::from(layout.piece_length())).min(layout.total_length())
            }
            None => 0,
        };
        let epoch = host.epoch;
        self.trace
            .words(&[40, u64::from(h), tracker as u64, announce.event as u64]);
        let latency = self.scenario.link.latency;
        let kind = self.scenario.trackers[tracker].kind;
        let gives_up_at = now
            + match kind {
                TrackerKind::Http => bt_runtime::tracker::CONNECT_TIMEOUT,
                TrackerKind::Udp => udp_give_up(),
            };
        // When the request reaches the tracker, if it does.
        let reaches = match kind {
            TrackerKind::Http => Some(now + latency * 3 + self.loss_delay()),
            TrackerKind::Udp => self.udp_exchanges(now, latency),
        };
        let request = Request {
            tracker,
            host: h,
            epoch,
            url: announce.url,
            event: announce.event,
            left,
            gives_up_at,
        };
        match reaches {
            Some(at) if self.trackers[tracker].up => {
                self.queue.push(at, Ev::TrackerRequest(Box::new(request)));
            }
            _ => self.give_up(request),
        }
    }

    /// The delay TCP losses add to one exchange.
    fn loss_delay(&mut self) -> Duration {
        let mut d = Duration::ZERO;
        let rto = Duration::from_millis(200).max(self.scenario.link.latency * 4);
        for i in 0..8 {
            if !self.udp_lost() {
                break;
            }
            d += rto * (1 << i);
        }
        d
    }

    /// A UDP connect exchange then the announce request: when the request reaches the tracker,
    /// or `None` if a step never got through.
    fn udp_exchanges(&mut self, now: Instant, latency: Duration) -> Option<Instant> {
        let c = bt_runtime::tracker::UDP_CONFIG;
        let mut t = now;
        // The connect exchange: request and answer must both arrive.
        let mut connected = false;
        for i in 0..=c.max_retries {
            if !self.udp_lost() && !self.udp_lost() {
                t = t + latency * 2;
                connected = true;
                break;
            }
            t = t + c.base_timeout * (1 << i);
        }
        if !connected {
            return None;
        }
        // The announce request (its answer's loss is drawn when the tracker answers).
        for i in 0..=c.max_retries {
            if !self.udp_lost() {
                return Some(t + latency);
            }
            t = t + c.base_timeout * (1 << i);
        }
        None
    }

    /// The client gives up on `request` at its deadline.
    fn give_up(&mut self, request: Request) {
        self.queue.push(
            request.gives_up_at.max(self.now()),
            Ev::TrackerAnswer(Box::new(Answer {
                host: request.host,
                epoch: request.epoch,
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
        let kind = self.scenario.trackers[request.tracker].kind;
        let latency = self.scenario.link.latency;
        // When the answer arrives: a lost UDP answer makes the client resend after its timeout
        // (the tracker answers each copy), until the client gives up.
        let mut answer_at = Some(now + latency);
        if kind == TrackerKind::Udp {
            let c = bt_runtime::tracker::UDP_CONFIG;
            let mut t = now;
            answer_at = None;
            for i in 0..=c.max_retries {
                // Try 0's request already arrived; a resent one may be lost too.
                let request_lost = i > 0 && self.udp_lost();
                let answer_lost = self.udp_lost();
                if !request_lost && !answer_lost {
                    answer_at = Some(t + latency);
                    break;
                }
                t = t + c.base_timeout * (1 << i);
            }
            if answer_at.is_none_or(|at| at > request.gives_up_at) {
                return self.give_up(request);
            }
        }
        let at = answer_at.expect("set above");
        let addr = self.hosts[request.host as usize].addr;
        self.trace
            .words(&[41, u64::from(request.host), request.tracker as u64]);
        let answer = self.trackers[request.tracker].announce(
            now,
            addr,
            request.event,
            request.left,
            bt_runtime::driver::NUMWANT as usize,
        );
        self.queue.push(
            at,
            Ev::TrackerAnswer(Box::new(Answer {
                host: request.host,
                epoch: request.epoch,
                url: request.url,
                result: Ok(answer),
            })),
        );
    }

    pub(super) fn on_tracker_answer(&mut self, answer: Answer) {
        let Answer {
            host: h,
            epoch,
            url,
            result,
        } = answer;
        let url = url.as_str();
        let now = self.now();
        let host = &mut self.hosts[h as usize];
        if host.epoch != epoch {
            return;
        }
        let Some(announcer) = host.announcer.as_mut() else {
            return;
        };
        self.trace
            .words(&[42, u64::from(h), u64::from(result.is_ok())]);
        let event = announcer
            .in_flight()
            .map_or(AnnounceEvent::None, |(_, e)| e);
        match result {
            Ok(answer) => {
                announcer.handle_success(now, url, &answer);
                if host.state == State::Up && event != AnnounceEvent::Stopped {
                    for peer in answer.peers {
                        self.add_peer(h, peer);
                    }
                }
            }
            Err(e) => announcer.handle_failure(now, url, &e),
        }
        let host = &mut self.hosts[h as usize];
        if host.state == State::Left && host.announcer.as_ref().is_some_and(|a| a.is_stopped()) {
            host.announcer = None;
        }
        self.settle(h);
    }
}
