//! [`UdpAnnounce`]: one announce to a UDP tracker (BEP 15) as a state machine.
//!
//! Invariants (stated in full on [`UdpAnnounce`]): only a well-formed answer with the current
//! transaction id moves the machine; the retransmissions of one announce are bounded; at most one
//! datagram waits to be sent; nothing is sent and no timer is set once the result is out.

use core::net::SocketAddr;
use std::time::Duration;

use super::announce::{
    AnnounceRequest, AnnounceResponse, MAX_MESSAGE_LEN, PeerCollector, TrackerError,
    interval_from_secs, sanitize_text,
};
use crate::rng::Rng;
use crate::time::Instant;

/// The magic constant opening a connect request (BEP 15).
pub const PROTOCOL_ID: u64 = 0x0417_2710_1980;

/// How long a connection id may be used after it was received (BEP 15: one minute).
pub const CONNECTION_ID_LIFETIME: Duration = Duration::from_secs(60);

/// Length of a connect request.
pub const CONNECT_REQUEST_LEN: usize = 16;

/// Length of an announce request.
pub const ANNOUNCE_REQUEST_LEN: usize = 98;

const ACTION_CONNECT: u32 = 0;
const ACTION_ANNOUNCE: u32 = 1;
const ACTION_ERROR: u32 = 3;

/// Label for the child RNG of an announce, so its draws do not depend on the caller's later ones.
const RNG_LABEL: u64 = 0x7564_7074_7261_636b;

/// Retransmission tunables of a [`UdpAnnounce`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpConfig {
    /// Wait before the first retransmission; doubled after each one (BEP 15: 15 s).
    pub base_timeout: Duration,
    /// Retransmissions before giving up (BEP 15: 8, the last wait being 15 · 2^8 = 3840 s).
    pub max_retries: u32,
}

impl Default for UdpConfig {
    /// BEP 15's schedule: 15 s doubling, 8 retransmissions.
    fn default() -> Self {
        UdpConfig {
            base_timeout: Duration::from_secs(15),
            max_retries: 8,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Connect {
        transaction: u32,
    },
    Announce {
        transaction: u32,
        connection_id: u64,
    },
    Done,
}

/// One announce to one UDP tracker.
///
/// The exchange: a 16-byte connect request gets a connection id; a 98-byte announce request
/// carrying that id gets the peers. A connection id may be used for [`CONNECTION_ID_LIFETIME`]
/// after it was received, so a fresh one from an earlier announce (see
/// [`UdpAnnounce::connection`]) skips the connect step.
///
/// Methods, in the quinn-proto order:
/// - getters: [`UdpAnnounce::tracker`], [`UdpAnnounce::connection`],
///   [`UdpAnnounce::retransmissions`], [`UdpAnnounce::poll_timeout`];
/// - input: [`UdpAnnounce::handle_datagram`] (what came from the tracker's address),
///   [`UdpAnnounce::handle_timeout`];
/// - output: [`UdpAnnounce::poll_transmit`] (a datagram to send to the tracker) and
///   [`UdpAnnounce::poll_result`] (once, at the end), drained after every input.
///
/// Retransmission (BEP 15): a request unanswered for `base_timeout * 2^n` is sent again, n
/// counting the retransmissions of the current step; after [`UdpConfig::max_retries`]
/// retransmissions it ends with [`TrackerError::Timeout`]. The first connect answer starts the
/// announce step with a fresh count (a lossy path would otherwise spend the announce's tries on
/// the connect: found by `btsim`, sim/scenarios/lossy-udp-tracker.toml); later ones do not, so a
/// tracker that answers connects but never announces cannot keep it going forever (at most
/// `2 · (max_retries + 1)` datagrams). The BEP's values, 15 s and 8, give up on a silent tracker
/// after 15 · (2^9 − 1) s = 2 h 7 min 45 s. A retransmission
/// reuses the transaction id, so a late answer to the first copy still counts; an announce
/// retransmitted after its connection id expired goes back to the connect step.
///
/// Invariants: datagrams too short for their action, with another transaction id or an
/// unexpected action are ignored (a stale or spoofed answer cannot end the announce); only an
/// error (action 3) with our transaction id ends it early. At most one datagram waits in
/// [`UdpAnnounce::poll_transmit`]; after the result nothing more is sent and no timer is set.
/// Peers follow the rules of [`super::AnnounceResponse`]: 6-byte entries, or 18-byte ones when
/// the tracker's address is IPv6 (BEP 15's IPv6 note); a partial entry at the end is ignored.
///
/// The driver loop (here against a tracker that never answers, with a short schedule):
///
/// ```
/// use std::time::Duration;
/// use bt_protocol::{rng::Rng, time::Instant};
/// use bt_protocol::tracker::{AnnounceRequest, Event, TrackerError, UdpAnnounce, UdpConfig};
/// # use bt_protocol::{metainfo::InfoHash, wire::PeerId};
/// # let request = AnnounceRequest {
/// #     info_hash: InfoHash([1; 20]), peer_id: PeerId([2; 20]), port: 6881, uploaded: 0,
/// #     downloaded: 0, left: 100, event: Event::Started, numwant: None, key: 7, tracker_id: None,
/// # };
/// let config = UdpConfig { base_timeout: Duration::from_secs(1), max_retries: 2 };
/// let tracker = "127.0.0.1:6969".parse().unwrap();
/// let mut now = Instant::ZERO;
/// let mut udp = UdpAnnounce::new(config, tracker, request, None, &mut Rng::new(1), now);
/// let mut sent = 0;
/// let result = loop {
///     while let Some(_datagram) = udp.poll_transmit() {
///         sent += 1; // socket.send_to(&_datagram, udp.tracker())
///     }
///     if let Some(result) = udp.poll_result() {
///         break result;
///     }
///     // Wait for a datagram from the tracker (then `handle_datagram`) or the deadline:
///     now = udp.poll_timeout().expect("a timer runs until the result");
///     udp.handle_timeout(now);
/// };
/// assert_eq!((sent, result), (3, Err(TrackerError::Timeout)));
/// assert_eq!(now, Instant::from_micros(7_000_000)); // waits of 1 + 2 + 4 s
/// ```
#[derive(Clone, Debug)]
pub struct UdpAnnounce {
    config: UdpConfig,
    tracker: SocketAddr,
    request: AnnounceRequest,
    rng: Rng,
    step: Step,
    connection: Option<(u64, Instant)>,
    retransmissions: u32,
    /// Whether a connect answer may still reset `retransmissions` (only the first does).
    fresh_count_left: bool,
    deadline: Option<Instant>,
    transmit: Option<Vec<u8>>,
    result: Option<Result<AnnounceResponse, TrackerError>>,
}

impl UdpAnnounce {
    /// Starts announcing `request` to the tracker at `tracker`. A `cached_connection` (id and
    /// when it was received) younger than [`CONNECTION_ID_LIFETIME`] skips the connect step.
    /// Transaction ids come from a child of `rng`. The first datagram is ready at once.
    pub fn new(
        config: UdpConfig,
        tracker: SocketAddr,
        request: AnnounceRequest,
        cached_connection: Option<(u64, Instant)>,
        rng: &mut Rng,
        now: Instant,
    ) -> Self {
        let mut announce = UdpAnnounce {
            config,
            tracker,
            request,
            rng: rng.fork(RNG_LABEL),
            step: Step::Done,
            connection: None,
            retransmissions: 0,
            fresh_count_left: true,
            deadline: None,
            transmit: None,
            result: None,
        };
        match cached_connection.filter(|&(_, at)| now - at < CONNECTION_ID_LIFETIME) {
            Some((connection_id, at)) => {
                announce.connection = Some((connection_id, at));
                announce.start_announce(connection_id, now);
            }
            None => announce.start_connect(now),
        }
        announce
    }

    // ---- getters ----

    /// The tracker's address.
    pub fn tracker(&self) -> SocketAddr {
        self.tracker
    }

    /// The connection id in use and when it was received, to hand to the next announce to the
    /// same tracker.
    pub fn connection(&self) -> Option<(u64, Instant)> {
        self.connection
    }

    /// Retransmissions of the current step so far (of the connect and the announce together
    /// once a connect answer has reset the count).
    pub fn retransmissions(&self) -> u32 {
        self.retransmissions
    }

    /// Whether the announce has ended (its result may still wait in
    /// [`UdpAnnounce::poll_result`]).
    pub fn is_done(&self) -> bool {
        self.step == Step::Done
    }

    /// When [`UdpAnnounce::handle_timeout`] has something to do; `None` once done.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    // ---- input ----

    /// A datagram from the tracker's address.
    pub fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) {
        let (Some(action), Some(transaction)) = (be_u32(datagram, 0), be_u32(datagram, 4)) else {
            return;
        };
        let expected = match self.step {
            Step::Connect { transaction } | Step::Announce { transaction, .. } => transaction,
            Step::Done => return,
        };
        if transaction != expected {
            return;
        }
        match (action, self.step) {
            (ACTION_ERROR, _) => {
                let message = sanitize_text(&datagram[8..], MAX_MESSAGE_LEN);
                let message = if message.is_empty() {
                    "(an error without a message)".to_owned()
                } else {
                    message
                };
                self.finish(Err(TrackerError::Failure(message)));
            }
            (ACTION_CONNECT, Step::Connect { .. }) => {
                if let Some(connection_id) = be_u64(datagram, 8) {
                    self.connection = Some((connection_id, now));
                    if std::mem::take(&mut self.fresh_count_left) {
                        self.retransmissions = 0;
                    }
                    self.start_announce(connection_id, now);
                }
            }
            (ACTION_ANNOUNCE, Step::Announce { .. }) if datagram.len() >= 20 => {
                let field = |at| be_u32(datagram, at).unwrap_or_default();
                let entry_len = if self.tracker.ip().to_canonical().is_ipv6() {
                    18
                } else {
                    6
                };
                let mut peers = PeerCollector::default();
                peers.push_compact(&datagram[20..], entry_len);
                self.finish(Ok(AnnounceResponse {
                    interval: interval_from_secs(i64::from(field(8))),
                    min_interval: None,
                    tracker_id: None,
                    complete: Some(field(16)),
                    incomplete: Some(field(12)),
                    peers: peers.into_peers(),
                    warning: None,
                }));
            }
            _ => {}
        }
    }

    /// The clock reached [`UdpAnnounce::poll_timeout`] (early calls do nothing): retransmit,
    /// reconnect if the connection id expired, or give up.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.deadline {
            Some(deadline) if now >= deadline => {}
            _ => return,
        }
        if self.retransmissions >= self.config.max_retries {
            return self.finish(Err(TrackerError::Timeout));
        }
        self.retransmissions += 1;
        if let (Step::Announce { .. }, Some((_, at))) = (self.step, self.connection)
            && now - at >= CONNECTION_ID_LIFETIME
        {
            self.connection = None;
            return self.start_connect(now);
        }
        self.send(now);
    }

    // ---- output ----

    /// The next datagram to send to [`UdpAnnounce::tracker`].
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmit.take()
    }

    /// The outcome, given once when the announce ends.
    pub fn poll_result(&mut self) -> Option<Result<AnnounceResponse, TrackerError>> {
        self.result.take()
    }

    // ---- internals ----

    fn start_connect(&mut self, now: Instant) {
        self.step = Step::Connect {
            transaction: self.rng.next_u32(),
        };
        self.send(now);
    }

    fn start_announce(&mut self, connection_id: u64, now: Instant) {
        self.step = Step::Announce {
            transaction: self.rng.next_u32(),
            connection_id,
        };
        self.send(now);
    }

    /// Queues the current step's request and arms its timer.
    fn send(&mut self, now: Instant) {
        let packet = match self.step {
            Step::Connect { transaction } => connect_request(transaction),
            Step::Announce {
                transaction,
                connection_id,
            } => announce_request(connection_id, transaction, &self.request),
            Step::Done => return,
        };
        self.transmit = Some(packet);
        let factor = 1u32.checked_shl(self.retransmissions).unwrap_or(u32::MAX);
        self.deadline = Some(now + self.config.base_timeout.saturating_mul(factor));
    }

    fn finish(&mut self, result: Result<AnnounceResponse, TrackerError>) {
        self.step = Step::Done;
        self.deadline = None;
        self.transmit = None;
        self.result = Some(result);
    }
}

/// A BEP 15 connect request.
pub fn connect_request(transaction: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(CONNECT_REQUEST_LEN);
    out.extend_from_slice(&PROTOCOL_ID.to_be_bytes());
    out.extend_from_slice(&ACTION_CONNECT.to_be_bytes());
    out.extend_from_slice(&transaction.to_be_bytes());
    out
}

/// A BEP 15 announce request: counters above `i64::MAX` are sent as `i64::MAX`, `numwant`
/// `None` as −1 (the tracker's default), the IP address field as 0 (the sender's).
pub fn announce_request(
    connection_id: u64,
    transaction: u32,
    request: &AnnounceRequest,
) -> Vec<u8> {
    let signed = |n: u64| i64::try_from(n).unwrap_or(i64::MAX).to_be_bytes();
    let numwant = request
        .numwant
        .map_or(-1, |n| i32::try_from(n).unwrap_or(i32::MAX));
    let mut out = Vec::with_capacity(ANNOUNCE_REQUEST_LEN);
    out.extend_from_slice(&connection_id.to_be_bytes());
    out.extend_from_slice(&ACTION_ANNOUNCE.to_be_bytes());
    out.extend_from_slice(&transaction.to_be_bytes());
    out.extend_from_slice(&request.info_hash.0);
    out.extend_from_slice(&request.peer_id.0);
    out.extend_from_slice(&signed(request.downloaded));
    out.extend_from_slice(&signed(request.left));
    out.extend_from_slice(&signed(request.uploaded));
    out.extend_from_slice(&request.event.udp_code().to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&request.key.to_be_bytes());
    out.extend_from_slice(&numwant.to_be_bytes());
    out.extend_from_slice(&request.port.to_be_bytes());
    out
}

fn be_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn be_u64(bytes: &[u8], at: usize) -> Option<u64> {
    let b: [u8; 8] = bytes.get(at..at + 8)?.try_into().ok()?;
    Some(u64::from_be_bytes(b))
}
