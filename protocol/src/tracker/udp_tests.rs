//! Tests of the BEP 15 UDP announce machine: the exchange, retransmission, connection ids,
//! errors, and robustness against arbitrary datagrams.

use core::net::{IpAddr, SocketAddr};
use std::fmt::Write;
use std::time::Duration;

use proptest::prelude::*;

use super::answer_tests::{check_response_invariants, check_text, sanitized, text, usable_peers};
use super::*;
use crate::metainfo::InfoHash;
use crate::mutation::{check_accepts_some, mutated, mutations};
use crate::rng::Rng;
use crate::time::Instant;
use crate::wire::PeerId;

const TRACKER: &str = "10.0.0.1:6969";

fn secs(s: u64) -> Instant {
    Instant::from_micros(s * 1_000_000)
}

fn request() -> AnnounceRequest {
    AnnounceRequest {
        info_hash: InfoHash([0xab; 20]),
        peer_id: PeerId(*b"-BT0100-123456789012"),
        port: 6881,
        uploaded: 10,
        downloaded: 20,
        left: 30,
        event: Event::Started,
        numwant: Some(50),
        key: 0x0102_0304,
        tracker_id: None,
    }
}

fn start(tracker: &str, cached: Option<(u64, Instant)>, now: Instant) -> UdpAnnounce {
    UdpAnnounce::new(
        UdpConfig::default(),
        tracker.parse().unwrap(),
        request(),
        cached,
        &mut Rng::new(1),
        now,
    )
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap())
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(bytes[at..at + 8].try_into().unwrap())
}

/// The connect answer to a connect request.
fn connect_answer(connect: &[u8], connection_id: u64) -> Vec<u8> {
    let mut out = 0u32.to_be_bytes().to_vec();
    out.extend_from_slice(&connect[12..16]);
    out.extend_from_slice(&connection_id.to_be_bytes());
    out
}

/// The announce answer to an announce request.
fn announce_answer(announce: &[u8], interval: u32, peers: &[u8]) -> Vec<u8> {
    let mut out = 1u32.to_be_bytes().to_vec();
    out.extend_from_slice(&announce[12..16]);
    out.extend_from_slice(&interval.to_be_bytes());
    out.extend_from_slice(&3u32.to_be_bytes()); // leechers
    out.extend_from_slice(&9u32.to_be_bytes()); // seeders
    out.extend_from_slice(peers);
    out
}

#[test]
fn connect_then_announce_happy_path() {
    // Proves the whole BEP 15 exchange: connect packet, announce packet carrying the connection
    // id and every field, and the answer's peers, interval and counts.
    let mut a = start(TRACKER, None, secs(0));
    let connect = a.poll_transmit().unwrap();
    assert_eq!(connect.len(), CONNECT_REQUEST_LEN);
    assert_eq!(u64_at(&connect, 0), PROTOCOL_ID);
    assert_eq!(u32_at(&connect, 8), 0);
    assert_eq!(a.poll_transmit(), None);
    assert_eq!(a.connection(), None);

    a.handle_datagram(secs(1), &connect_answer(&connect, 0x1122_3344_5566_7788));
    assert_eq!(a.connection(), Some((0x1122_3344_5566_7788, secs(1))));
    let announce = a.poll_transmit().unwrap();
    assert_eq!(announce.len(), ANNOUNCE_REQUEST_LEN);
    assert_eq!(u64_at(&announce, 0), 0x1122_3344_5566_7788);
    assert_eq!(u32_at(&announce, 8), 1);
    assert_ne!(
        u32_at(&announce, 12),
        u32_at(&connect, 12),
        "a new transaction id"
    );
    assert_eq!(&announce[16..36], &[0xab; 20]);
    assert_eq!(&announce[36..56], b"-BT0100-123456789012");
    assert_eq!(
        (
            u64_at(&announce, 56),
            u64_at(&announce, 64),
            u64_at(&announce, 72)
        ),
        (20, 30, 10)
    );
    assert_eq!(u32_at(&announce, 80), 2, "started");
    assert_eq!(u32_at(&announce, 84), 0, "ip: the sender's");
    assert_eq!(u32_at(&announce, 88), 0x0102_0304);
    assert_eq!(u32_at(&announce, 92), 50);
    assert_eq!(&announce[96..98], &6881u16.to_be_bytes());

    let peers = [1, 2, 3, 4, 0x1a, 0xe1, 5, 6, 7, 8, 0, 80, 9, 9];
    a.handle_datagram(secs(2), &announce_answer(&announce, 1200, &peers));
    assert!(a.is_done());
    assert_eq!(a.poll_timeout(), None);
    assert_eq!(a.poll_transmit(), None);
    let answer = a.poll_result().unwrap().unwrap();
    assert_eq!(
        answer,
        AnnounceResponse {
            interval: Duration::from_secs(1200),
            min_interval: None,
            tracker_id: None,
            complete: Some(9),
            incomplete: Some(3),
            peers: vec![
                "1.2.3.4:6881".parse().unwrap(),
                "5.6.7.8:80".parse().unwrap()
            ],
            warning: None,
        }
    );
    assert_eq!(a.poll_result(), None, "the result is given once");
}

#[test]
fn stale_short_and_foreign_datagrams_are_ignored() {
    // Proves only a well-formed answer with the current transaction id moves the machine: a
    // wrong id, a short datagram, a wrong action, or a replayed connect answer do nothing.
    let mut a = start(TRACKER, None, secs(0));
    let connect = a.poll_transmit().unwrap();
    let mut wrong_id = connect_answer(&connect, 5);
    wrong_id[7] ^= 1;
    a.handle_datagram(secs(1), &wrong_id);
    a.handle_datagram(secs(1), &connect_answer(&connect, 5)[..15]);
    a.handle_datagram(secs(1), &connect[..7]);
    a.handle_datagram(secs(1), &[]);
    let mut wrong_action = connect_answer(&connect, 5);
    wrong_action[3] = 1;
    a.handle_datagram(secs(1), &wrong_action);
    assert_eq!((a.poll_transmit(), a.connection()), (None, None));

    let replay = connect_answer(&connect, 5);
    a.handle_datagram(secs(1), &replay);
    let announce = a.poll_transmit().unwrap();
    a.handle_datagram(secs(1), &replay);
    a.handle_datagram(secs(1), &connect_answer(&connect, 6));
    assert_eq!(a.poll_transmit(), None);
    assert_eq!(a.connection(), Some((5, secs(1))));
    let mut stale = announce_answer(&announce, 60, &[]);
    stale[4..8].copy_from_slice(&connect[12..16]);
    a.handle_datagram(secs(2), &stale);
    a.handle_datagram(secs(2), &announce_answer(&announce, 60, &[])[..19]);
    assert_eq!(a.poll_result(), None);
    a.handle_datagram(secs(2), &announce_answer(&announce, 60, &[]));
    assert!(a.poll_result().unwrap().is_ok());
}

#[test]
fn retransmits_at_15_30_60_seconds_then_gives_up() {
    // Proves BEP 15's schedule: waits of 15 * 2^n s for n = 0..=8 with the same request, early
    // timer calls harmless, then Timeout after 15 * (2^9 - 1) s.
    let mut a = start(TRACKER, None, secs(0));
    let first = a.poll_transmit().unwrap();
    assert_eq!(a.poll_timeout(), Some(secs(15)));
    a.handle_timeout(secs(14));
    assert_eq!(a.poll_transmit(), None);
    a.handle_timeout(secs(15));
    assert_eq!(
        a.poll_transmit().as_ref(),
        Some(&first),
        "same request, same transaction id"
    );
    assert_eq!(a.poll_timeout(), Some(secs(45)));
    a.handle_timeout(secs(45));
    assert_eq!(a.poll_transmit().as_ref(), Some(&first));
    assert_eq!(a.poll_timeout(), Some(secs(105)));
    let mut at = secs(105);
    for n in 3..=8u32 {
        a.handle_timeout(at);
        assert!(a.poll_transmit().is_some());
        at = at + Duration::from_secs(15 << n);
        assert_eq!(a.poll_timeout(), Some(at), "wait after retransmission {n}");
    }
    assert_eq!(a.retransmissions(), 8);
    assert_eq!(at, secs(15 * 511));
    assert_eq!(a.poll_result(), None);
    a.handle_timeout(at);
    assert_eq!(a.poll_transmit(), None);
    assert_eq!(a.poll_result(), Some(Err(TrackerError::Timeout)));
    assert_eq!(a.poll_timeout(), None);
}

#[test]
fn shorter_schedule_from_config() {
    // Proves the base timeout and retry count are tunable (for tests and --announce-only).
    let config = UdpConfig {
        base_timeout: Duration::from_millis(500),
        max_retries: 1,
    };
    let mut a = UdpAnnounce::new(
        config,
        TRACKER.parse().unwrap(),
        request(),
        None,
        &mut Rng::new(3),
        secs(0),
    );
    a.poll_transmit().unwrap();
    assert_eq!(a.poll_timeout(), Some(Instant::from_micros(500_000)));
    a.handle_timeout(Instant::from_micros(500_000));
    assert!(a.poll_transmit().is_some());
    assert_eq!(a.poll_timeout(), Some(Instant::from_micros(1_500_000)));
    a.handle_timeout(Instant::from_micros(1_500_000));
    assert_eq!(a.poll_result(), Some(Err(TrackerError::Timeout)));
}

#[test]
fn connection_id_is_reused_within_60_seconds() {
    // Proves a cached connection id younger than 60 s skips the connect step, and an older one
    // does not.
    let mut fresh = start(TRACKER, Some((77, secs(100))), secs(159));
    let packet = fresh.poll_transmit().unwrap();
    assert_eq!(packet.len(), ANNOUNCE_REQUEST_LEN);
    assert_eq!(u64_at(&packet, 0), 77);
    assert_eq!(fresh.connection(), Some((77, secs(100))));

    let mut stale = start(TRACKER, Some((77, secs(100))), secs(160));
    assert_eq!(stale.poll_transmit().unwrap().len(), CONNECT_REQUEST_LEN);
    assert_eq!(stale.connection(), None);
}

#[test]
fn reconnects_when_the_connection_id_expires_mid_announce() {
    // Proves an announce retransmitted after its connection id expired goes back to connect,
    // keeping the backoff, and completes with the new id.
    let mut a = start(TRACKER, None, secs(0));
    let connect = a.poll_transmit().unwrap();
    a.handle_datagram(secs(0), &connect_answer(&connect, 1));
    let announce = a.poll_transmit().unwrap();
    a.handle_timeout(secs(15));
    assert_eq!(
        a.poll_transmit().as_ref(),
        Some(&announce),
        "id still fresh at 15 s"
    );
    a.handle_timeout(secs(45));
    assert_eq!(
        a.poll_transmit().as_ref(),
        Some(&announce),
        "id still fresh at 45 s"
    );
    a.handle_timeout(secs(105));
    let reconnect = a.poll_transmit().unwrap();
    assert_eq!(reconnect.len(), CONNECT_REQUEST_LEN);
    assert_eq!(a.connection(), None);
    assert_eq!(a.poll_timeout(), Some(secs(105 + 120)), "backoff continues");
    a.handle_datagram(secs(106), &connect_answer(&reconnect, 2));
    let announce = a.poll_transmit().unwrap();
    assert_eq!(u64_at(&announce, 0), 2);
    a.handle_datagram(secs(107), &announce_answer(&announce, 60, &[]));
    assert!(a.poll_result().unwrap().is_ok());
    assert_eq!(a.connection(), Some((2, secs(106))));
}

#[test]
fn error_action_is_a_failure_with_the_message() {
    // Proves action 3 with our transaction id ends the announce with the tracker's message, at
    // either step.
    let mut a = start(TRACKER, None, secs(0));
    let connect = a.poll_transmit().unwrap();
    let mut error = 3u32.to_be_bytes().to_vec();
    error.extend_from_slice(&connect[12..16]);
    error.extend_from_slice(b"torrent not registered\n");
    a.handle_datagram(secs(1), &error);
    assert_eq!(
        a.poll_result(),
        Some(Err(TrackerError::Failure("torrent not registered".into())))
    );
    assert_eq!((a.poll_transmit(), a.poll_timeout()), (None, None));

    let mut a = start(TRACKER, Some((9, secs(0))), secs(0));
    let announce = a.poll_transmit().unwrap();
    let mut error = 3u32.to_be_bytes().to_vec();
    error.extend_from_slice(&announce[12..16]);
    a.handle_datagram(secs(1), &error);
    assert_eq!(
        a.poll_result(),
        Some(Err(TrackerError::Failure(
            "(an error without a message)".into()
        )))
    );
}

#[test]
fn ipv6_tracker_gives_18_byte_peers() {
    // Proves BEP 15's IPv6 note: an IPv6 tracker's peers are 16-byte addresses plus port, while
    // an IPv4-mapped tracker address still means 6-byte peers.
    let mut a = start("[2001:db8::1]:6969", Some((1, secs(0))), secs(0));
    let announce = a.poll_transmit().unwrap();
    let mut peers = vec![
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7, 0x1a, 0xe1,
    ];
    peers.extend_from_slice(&[1, 2, 3]); // a partial entry, ignored
    a.handle_datagram(secs(1), &announce_answer(&announce, 60, &peers));
    assert_eq!(
        a.poll_result().unwrap().unwrap().peers,
        vec!["[2001:db8::7]:6881".parse::<SocketAddr>().unwrap()]
    );

    let mut a = start("[::ffff:10.0.0.1]:6969", Some((1, secs(0))), secs(0));
    let announce = a.poll_transmit().unwrap();
    a.handle_datagram(
        secs(1),
        &announce_answer(&announce, 60, &[1, 2, 3, 4, 0, 1]),
    );
    assert_eq!(
        a.poll_result().unwrap().unwrap().peers,
        vec!["1.2.3.4:1".parse::<SocketAddr>().unwrap()]
    );
}

#[test]
fn transaction_ids_come_from_the_seed() {
    // Proves determinism: the same seed gives the same transaction ids, another seed others.
    let first = |seed| {
        let mut rng = Rng::new(seed);
        let mut a = UdpAnnounce::new(
            UdpConfig::default(),
            TRACKER.parse().unwrap(),
            request(),
            None,
            &mut rng,
            secs(0),
        );
        a.poll_transmit().unwrap()
    };
    assert_eq!(first(5), first(5));
    assert_ne!(first(5), first(6));
}

#[test]
fn counters_beyond_i64_and_default_numwant() {
    // Proves huge counters saturate at i64::MAX and numwant None is sent as -1.
    let mut r = request();
    r.left = u64::MAX;
    r.numwant = None;
    r.event = Event::None;
    let packet = announce_request(1, 2, &r);
    assert_eq!(u64_at(&packet, 64), i64::MAX as u64);
    assert_eq!(u32_at(&packet, 80), 0);
    assert_eq!(u32_at(&packet, 92), u32::MAX, "-1");
}

fn hexdump(bytes: &[u8]) -> String {
    let mut out = String::new();
    for (i, line) in bytes.chunks(16).enumerate() {
        write!(out, "{:08x} ", i * 16).unwrap();
        for b in line {
            write!(out, " {b:02x}").unwrap();
        }
        out.push('\n');
    }
    out
}

#[test]
fn announce_packet_snapshot() {
    // Proves the exact bytes of a BEP 15 connect and announce request.
    let mut r = request();
    r.event = Event::Completed;
    let out = format!(
        "connect:\n{}announce:\n{}",
        hexdump(&connect_request(0xcafe_f00d)),
        hexdump(&announce_request(0x0102_0304_0506_0708, 0xcafe_f00d, &r))
    );
    insta::assert_snapshot!(out);
}

/// An announce answered in its BEP 15 form: over IPv4 or IPv6, any interval and counts, compact
/// peers from a small pool (so that repeats, port 0 and the unspecified address occur), or an
/// error with a message.
#[derive(Clone, Debug)]
struct UdpAnswer {
    error: Option<String>,
    v6: bool,
    interval: u32,
    leechers: u32,
    seeders: u32,
    peers: Vec<(u8, u16)>,
}

impl UdpAnswer {
    fn tracker(&self) -> &'static str {
        if self.v6 { "[2001:db8::1]:1" } else { TRACKER }
    }

    fn peer(&self, &(host, port): &(u8, u16)) -> SocketAddr {
        if self.v6 {
            SocketAddr::new(
                IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, u16::from(host)]),
                port,
            )
        } else {
            SocketAddr::new(IpAddr::from([10, 0, 0, host]), port)
        }
    }

    /// The announce answer's bytes for the announce request `announce`.
    fn bytes(&self, announce: &[u8]) -> Vec<u8> {
        let action: u32 = if self.error.is_some() { 3 } else { 1 };
        let mut out = action.to_be_bytes().to_vec();
        out.extend_from_slice(&announce[12..16]);
        if let Some(message) = &self.error {
            out.extend_from_slice(message.as_bytes());
            return out;
        }
        for n in [self.interval, self.leechers, self.seeders] {
            out.extend_from_slice(&n.to_be_bytes());
        }
        for p in &self.peers {
            match self.peer(p) {
                SocketAddr::V4(a) => out.extend_from_slice(&a.ip().octets()),
                SocketAddr::V6(a) => out.extend_from_slice(&a.ip().octets()),
            }
            out.extend_from_slice(&p.1.to_be_bytes());
        }
        out
    }

    /// What BEP 15 says the answer means.
    fn expected(&self) -> Result<AnnounceResponse, TrackerError> {
        if let Some(message) = &self.error {
            return Err(TrackerError::Failure(sanitized(message)));
        }
        Ok(AnnounceResponse {
            interval: match self.interval {
                0 => DEFAULT_INTERVAL,
                n => Duration::from_secs(u64::from(n)).min(MAX_INTERVAL),
            },
            complete: Some(self.seeders),
            incomplete: Some(self.leechers),
            peers: usable_peers(self.peers.iter().map(|p| self.peer(p))),
            ..AnnounceResponse::default()
        })
    }
}

fn udp_answer() -> impl Strategy<Value = UdpAnswer> {
    let host = prop_oneof![Just(0u8), 1u8..4, any::<u8>()];
    let port = prop_oneof![Just(0u16), Just(6881), any::<u16>()];
    (
        prop_oneof![3 => Just(None), 1 => text().prop_map(Some)],
        any::<bool>(),
        prop_oneof![Just(0u32), 1u32..100_000, any::<u32>()],
        any::<u32>(),
        any::<u32>(),
        proptest::collection::vec((host, port), 0..30),
    )
        .prop_map(
            |(error, v6, interval, leechers, seeders, peers)| UdpAnswer {
                error,
                v6,
                interval,
                leechers,
                seeders,
                peers,
            },
        )
}

/// Connects `answer`'s announce, then gives it `reply(announce request)` as the tracker's answer:
/// the result, if the machine finished.
fn udp_exchange(
    answer: &UdpAnswer,
    reply: impl FnOnce(&[u8]) -> Vec<u8>,
) -> Option<Result<AnnounceResponse, TrackerError>> {
    let mut a = start(answer.tracker(), None, secs(0));
    let connect = a.poll_transmit().unwrap();
    a.handle_datagram(secs(1), &connect_answer(&connect, 7));
    let announce = a.poll_transmit().unwrap();
    a.handle_datagram(secs(1), &reply(&announce));
    a.poll_result()
}

proptest! {
    #[test]
    fn announce_answers_parse_to_the_model(answer in udp_answer()) {
        // Proves a BEP 15 announce answer's interval, counts and IPv4 or IPv6 peers, or an error's
        // message, are read as the model says, with the documented normalisation.
        let result = udp_exchange(&answer, |announce| answer.bytes(announce));
        prop_assert_eq!(result, Some(answer.expected()));
    }

    #[test]
    fn arbitrary_datagrams_never_panic(
        datagrams in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..120), 0..6),
        patch_transaction in any::<bool>(),
        cached in any::<bool>(),
        v6 in any::<bool>(),
    ) {
        // Proves handle_datagram survives arbitrary bytes at any step (with the right
        // transaction id patched in, to reach past the id check), and the machine keeps its
        // invariants: known packet sizes, one result, nothing sent after it.
        let tracker = if v6 { "[2001:db8::1]:1" } else { TRACKER };
        let mut a = start(tracker, cached.then_some((1, secs(0))), secs(0));
        let mut last = a.poll_transmit().unwrap();
        let mut results = 0;
        for mut d in datagrams {
            if patch_transaction && d.len() >= 8 {
                d[4..8].copy_from_slice(&last[12..16]);
            }
            a.handle_datagram(secs(1), &d);
            if let Some(p) = a.poll_transmit() {
                prop_assert!(p.len() == CONNECT_REQUEST_LEN || p.len() == ANNOUNCE_REQUEST_LEN);
                last = p;
            }
            if let Some(result) = a.poll_result() {
                results += 1;
                if let Ok(answer) = result {
                    prop_assert!(answer.peers.len() <= 120 / 6);
                }
                prop_assert!(a.is_done());
                prop_assert_eq!(a.poll_timeout(), None);
            }
        }
        prop_assert!(results <= 1);
    }
}

#[test]
fn the_first_connect_answer_gives_the_announce_its_own_retransmissions() {
    // Proves a connect that needed retries does not eat the announce's: after the connect was
    // sent three times (15 + 30 s), the announce still gets 9 sends before Timeout. A second
    // connect answer (the id expired during the announce) does not reset the count again.
    let mut a = start(TRACKER, None, secs(0));
    let connect = a.poll_transmit().unwrap();
    a.handle_timeout(secs(15));
    a.handle_timeout(secs(45));
    assert_eq!(a.retransmissions(), 2);
    a.handle_datagram(secs(50), &connect_answer(&connect, 5));
    assert_eq!(a.retransmissions(), 0, "a fresh count for the announce");
    let announce = a.poll_transmit().unwrap();
    assert_eq!(announce[8..12], [0, 0, 0, 1], "the announce step");
    assert_eq!(a.poll_timeout(), Some(secs(65)));
    // Past the connection id's lifetime the announce goes back to connect; its answer keeps
    // the count.
    a.handle_timeout(secs(65));
    a.handle_timeout(secs(95));
    a.handle_timeout(secs(155));
    let reconnect = a.poll_transmit().unwrap();
    assert_eq!(reconnect[8..12], [0, 0, 0, 0], "back to connect");
    assert_eq!(a.retransmissions(), 3);
    a.handle_datagram(secs(156), &connect_answer(&reconnect, 6));
    assert_eq!(
        a.retransmissions(),
        3,
        "only the first connect answer resets"
    );
    assert!(a.poll_transmit().is_some());
}

#[test]
fn mutated_announce_answers_keep_the_invariants() {
    // Proves edited announce answers are ignored, refused with a clean text, or read within the
    // invariants of AnnounceResponse, and that some are read and some are not.
    check_accepts_some(
        256,
        (udp_answer(), mutations(3)),
        |(answer, edits)| match udp_exchange(&answer, |announce| {
            mutated(&answer.bytes(announce), &edits)
        }) {
            Some(Ok(a)) => check_response_invariants(&a).map(|()| true),
            Some(Err(TrackerError::Failure(text))) => check_text(&text).map(|()| false),
            Some(Err(e)) => Err(TestCaseError::fail(format!("unexpected error {e:?}"))),
            None => Ok(false),
        },
    );
}
