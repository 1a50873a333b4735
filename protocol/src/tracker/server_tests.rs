//! Tests of the tracker machine: bt's own HTTP and UDP client pieces talk to it in memory, and
//! the peer store's rules (expiry, `stopped`, numwant, bounds, whitelist, connection ids) hold;
//! arbitrary bytes never panic it.

use core::net::{IpAddr, SocketAddr};
use std::collections::BTreeSet;
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::bencode::{DecodeLimits, decode};
use crate::metainfo::InfoHash;
use crate::rng::Rng;
use crate::time::Instant;
use crate::tracker::{
    HttpResponseReader, TrackerError, TrackerUrl, UdpAnnounce, UdpConfig, announce_path_and_query,
    announce_request, announce_response_from_http, connect_request, http_get_request,
    parse_announce_response,
};
use crate::wire::PeerId;

const HASH: InfoHash = InfoHash([0xab; 20]);

fn secs(s: u64) -> Instant {
    Instant::from_micros(s * 1_000_000)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn request(port: u16, left: u64, event: Event) -> AnnounceRequest {
    let mut id = *b"-BT0100-000000000000";
    id[14..].copy_from_slice(format!("{port:06}").as_bytes());
    AnnounceRequest {
        info_hash: HASH,
        peer_id: PeerId(id),
        port,
        uploaded: 0,
        downloaded: 0,
        left,
        event,
        numwant: None,
        key: u32::from(port),
        tracker_id: None,
    }
}

fn server(interval_s: u64) -> TrackerServer {
    let config = TrackerConfig {
        interval: Duration::from_secs(interval_s),
        ..TrackerConfig::default()
    };
    TrackerServer::new(config, 1)
}

/// The bytes of the HTTP announce bt's client sends for `request` to `url`.
fn http_request_bytes(url: &str, request: &AnnounceRequest) -> Vec<u8> {
    let url = TrackerUrl::parse(url).unwrap();
    http_get_request(&url, &announce_path_and_query(&url, request))
}

/// One HTTP announce as bt's client makes it: request bytes from the client pieces, the answer
/// read by `HttpResponseReader` (fed in 7-byte pieces) and `announce_response_from_http`.
fn http_announce(
    tracker: &mut TrackerServer,
    now: Instant,
    from: &str,
    request: &AnnounceRequest,
) -> Result<AnnounceResponse, TrackerError> {
    let bytes = http_request_bytes("http://tracker.test:6969/announce", request);
    assert_eq!(http_head_end(&bytes), Some(bytes.len()));
    let reply = tracker.handle_http_request(now, ip(from), &bytes);
    let mut reader = HttpResponseReader::new();
    for piece in reply.chunks(7) {
        reader.feed(piece);
    }
    assert!(reader.is_complete());
    announce_response_from_http(&reader.finish()?)
}

/// One UDP announce as bt's client makes it: a `UdpAnnounce` machine whose datagrams go to the
/// tracker from `from`, the tracker's answers back to it, without loss. Returns the result and
/// the connection id for the next announce.
fn udp_announce(
    tracker: &mut TrackerServer,
    now: Instant,
    from: &str,
    tracker_addr: &str,
    request: AnnounceRequest,
    cached: Option<(u64, Instant)>,
) -> (
    Result<AnnounceResponse, TrackerError>,
    Option<(u64, Instant)>,
) {
    let mut client = UdpAnnounce::new(
        UdpConfig::default(),
        addr(tracker_addr),
        request,
        cached,
        &mut Rng::new(9),
        now,
    );
    for _ in 0..4 {
        while let Some(datagram) = client.poll_transmit() {
            if let Some(reply) = tracker.handle_datagram(now, addr(from), &datagram) {
                client.handle_datagram(now, &reply);
            }
        }
        if let Some(result) = client.poll_result() {
            return (result, client.connection());
        }
    }
    panic!("the UDP exchange did not end in four rounds");
}

fn body(reply: &[u8]) -> &[u8] {
    let at = http_head_end(reply).expect("a whole HTTP head");
    &reply[at..]
}

fn status(reply: &[u8]) -> u16 {
    std::str::from_utf8(&reply[9..12]).unwrap().parse().unwrap()
}

#[test]
fn http_round_trip_with_the_client_pieces() {
    // Proves a seeder and a leecher find each other through the tracker over HTTP, as bt's own
    // client builds the request and reads the answer: peers, counts and intervals.
    let mut t = server(1800);
    let seeder = http_announce(
        &mut t,
        secs(0),
        "10.0.0.1",
        &request(6881, 0, Event::Started),
    )
    .unwrap();
    assert_eq!(seeder.peers, []);
    assert_eq!((seeder.complete, seeder.incomplete), (Some(1), Some(0)));
    assert_eq!(seeder.interval, Duration::from_secs(1800));
    assert_eq!(seeder.min_interval, Some(Duration::from_secs(60)));
    let leecher = http_announce(
        &mut t,
        secs(1),
        "10.0.0.2",
        &request(6882, 100, Event::Started),
    )
    .unwrap();
    assert_eq!(leecher.peers, [addr("10.0.0.1:6881")]);
    assert_eq!((leecher.complete, leecher.incomplete), (Some(1), Some(1)));
    let again = http_announce(&mut t, secs(2), "10.0.0.1", &request(6881, 0, Event::None)).unwrap();
    assert_eq!(again.peers, [addr("10.0.0.2:6882")]);
    assert_eq!((t.torrent_count(), t.peer_count()), (1, 2));
    assert_eq!(t.stats().announces, 3);
}

#[test]
fn udp_round_trip_with_the_client_machine() {
    // Proves bt's BEP 15 client machine connects and announces to the tracker machine, reuses
    // the connection id, and reads peers and counts (IPv4: 6-byte entries).
    let mut t = server(900);
    let tracker = "10.0.0.100:6969";
    let (first, conn) = udp_announce(
        &mut t,
        secs(0),
        "10.0.0.1:40000",
        tracker,
        request(6881, 0, Event::Started),
        None,
    );
    let first = first.unwrap();
    assert_eq!(first.peers, []);
    assert_eq!(first.interval, Duration::from_secs(900));
    let (second, _) = udp_announce(
        &mut t,
        secs(1),
        "10.0.0.2:40001",
        tracker,
        request(6882, 5, Event::Started),
        None,
    );
    let second = second.unwrap();
    assert_eq!(second.peers, [addr("10.0.0.1:6881")]);
    assert_eq!((second.complete, second.incomplete), (Some(1), Some(1)));
    // The seeder's next announce, from a new socket as bt's runtime makes one per announce,
    // skips the connect step with its cached id.
    let connects = t.stats().connects;
    let (third, _) = udp_announce(
        &mut t,
        secs(30),
        "10.0.0.1:40002",
        tracker,
        request(6881, 0, Event::None),
        conn,
    );
    assert_eq!(third.unwrap().peers, [addr("10.0.0.2:6882")]);
    assert_eq!(t.stats().connects, connects);
    assert_eq!(t.stats().announces, 3);
}

#[test]
fn udp_over_ipv6_gives_18_byte_peers_of_the_same_family() {
    // Proves a UDP announce from an IPv6 address gets IPv6 peers (18-byte entries, which bt's
    // client reads because the tracker's address is IPv6) and no IPv4 ones.
    let mut t = server(1800);
    let tracker = "[2001:db8::100]:6969";
    http_announce(
        &mut t,
        secs(0),
        "10.0.0.1",
        &request(6881, 0, Event::Started),
    )
    .unwrap();
    let (r, _) = udp_announce(
        &mut t,
        secs(0),
        "[2001:db8::1]:5000",
        tracker,
        request(6882, 0, Event::Started),
        None,
    );
    assert_eq!(r.unwrap().peers, []);
    let (r, _) = udp_announce(
        &mut t,
        secs(1),
        "[2001:db8::2]:5000",
        tracker,
        request(6883, 9, Event::Started),
        None,
    );
    let r = r.unwrap();
    assert_eq!(r.peers, [addr("[2001:db8::1]:6882")]);
    assert_eq!((r.complete, r.incomplete), (Some(2), Some(1)));
    // An IPv4-mapped source is IPv4.
    let (r, _) = udp_announce(
        &mut t,
        secs(2),
        "[::ffff:10.0.0.9]:5000",
        "10.0.0.100:6969",
        request(6884, 9, Event::Started),
        None,
    );
    assert_eq!(r.unwrap().peers, [addr("10.0.0.1:6881")]);
}

#[test]
fn http_gives_both_families_own_first() {
    // Proves an HTTP answer holds IPv4 peers in `peers` and IPv6 ones in `peers6` (BEP 7), and
    // fills numwant from the requester's own family first.
    let mut t = server(1800);
    for i in 1..=3u16 {
        http_announce(
            &mut t,
            secs(0),
            &format!("10.0.0.{i}"),
            &request(6880 + i, 0, Event::Started),
        )
        .unwrap();
        http_announce(
            &mut t,
            secs(0),
            &format!("2001:db8::{i}"),
            &request(6890 + i, 0, Event::Started),
        )
        .unwrap();
    }
    let mut all = request(7000, 9, Event::Started);
    let r = http_announce(&mut t, secs(1), "10.0.0.50", &all).unwrap();
    let v4 = r.peers.iter().filter(|p| p.is_ipv4()).count();
    assert_eq!((r.peers.len(), v4), (6, 3));
    all.numwant = Some(4);
    let r = http_announce(&mut t, secs(2), "2001:db8::50", &all).unwrap();
    let v6 = r.peers.iter().filter(|p| p.is_ipv6()).count();
    assert_eq!((r.peers.len(), v6), (4, 3));
    // The body really carries `peers6`.
    let reply = t.handle_http_request(
        secs(3),
        ip("10.0.0.60"),
        &http_request_bytes("http://t/announce", &request(7001, 9, Event::None)),
    );
    let decoded = decode(body(&reply), DecodeLimits::default()).unwrap();
    let dict = decoded.value.as_dict().unwrap();
    assert_eq!(
        dict.get(b"peers").unwrap().as_bytes().unwrap().len(),
        3 * 6 + 6
    );
    assert_eq!(
        dict.get(b"peers6").unwrap().as_bytes().unwrap().len(),
        3 * 18 + 18
    );
}

#[test]
fn requester_is_never_in_its_own_answer_and_is_stored_once() {
    // Proves re-announces update one entry keyed by (ip, port) and never return the requester.
    let mut t = server(1800);
    for n in 0..5 {
        let r = http_announce(&mut t, secs(n), "10.0.0.1", &request(6881, 9, Event::None)).unwrap();
        assert_eq!(r.peers, []);
    }
    assert_eq!(t.peer_count(), 1);
    // Another port on the same IP is another peer.
    let r = http_announce(&mut t, secs(6), "10.0.0.1", &request(6882, 9, Event::None)).unwrap();
    assert_eq!(r.peers, [addr("10.0.0.1:6881")]);
    assert_eq!(t.peer_count(), 2);
}

#[test]
fn stopped_removes_the_peer_and_an_empty_torrent() {
    // Proves `stopped` takes the peer out at once (others stop getting it), answers with no
    // peers, and forgets a torrent whose last peer left.
    let mut t = server(1800);
    http_announce(
        &mut t,
        secs(0),
        "10.0.0.1",
        &request(6881, 0, Event::Started),
    )
    .unwrap();
    http_announce(
        &mut t,
        secs(0),
        "10.0.0.2",
        &request(6882, 9, Event::Started),
    )
    .unwrap();
    let bye = http_announce(
        &mut t,
        secs(1),
        "10.0.0.1",
        &request(6881, 0, Event::Stopped),
    )
    .unwrap();
    assert_eq!(bye.peers, []);
    assert_eq!((bye.complete, bye.incomplete), (Some(0), Some(1)));
    let r = http_announce(&mut t, secs(2), "10.0.0.3", &request(6883, 9, Event::None)).unwrap();
    assert_eq!(r.peers, [addr("10.0.0.2:6882")]);
    http_announce(
        &mut t,
        secs(3),
        "10.0.0.2",
        &request(6882, 9, Event::Stopped),
    )
    .unwrap();
    http_announce(
        &mut t,
        secs(3),
        "10.0.0.3",
        &request(6883, 9, Event::Stopped),
    )
    .unwrap();
    assert_eq!(
        (t.torrent_count(), t.peer_count(), t.poll_timeout()),
        (0, 0, None)
    );
    // Stopping twice, or a peer never seen, is harmless.
    let r = http_announce(
        &mut t,
        secs(4),
        "10.0.0.3",
        &request(6883, 9, Event::Stopped),
    )
    .unwrap();
    assert_eq!((r.complete, r.incomplete), (Some(0), Some(0)));
    assert_eq!(t.torrent_count(), 0);
}

#[test]
fn silent_peers_expire_after_two_intervals() {
    // Proves the expiry timer: a peer not heard from for 2 × interval is forgotten, by
    // handle_timeout at poll_timeout, and never given in an answer after that even when the
    // driver is late; a re-announce pushes its expiry back.
    let mut t = server(10);
    http_announce(
        &mut t,
        secs(0),
        "10.0.0.1",
        &request(6881, 0, Event::Started),
    )
    .unwrap();
    http_announce(
        &mut t,
        secs(5),
        "10.0.0.2",
        &request(6882, 0, Event::Started),
    )
    .unwrap();
    assert_eq!(t.poll_timeout(), Some(secs(20)));
    let r = http_announce(
        &mut t,
        Instant::from_micros(19_999_999),
        "10.0.0.3",
        &request(6883, 9, Event::Started),
    )
    .unwrap();
    assert_eq!(r.peers.len(), 2);
    t.handle_timeout(secs(19)); // early: nothing happens
    assert_eq!(t.peer_count(), 3);
    t.handle_timeout(secs(20));
    assert_eq!((t.peer_count(), t.poll_timeout()), (2, Some(secs(25))));
    assert_eq!(t.stats().expired, 1);
    // 10.0.0.2 re-announces at 24 s: its expiry moves to 44 s.
    http_announce(&mut t, secs(24), "10.0.0.2", &request(6882, 0, Event::None)).unwrap();
    assert_eq!(t.poll_timeout(), Some(Instant::from_micros(39_999_999)));
    // No handle_timeout call: the next announce at 41 s still sees only the live peer.
    let r = http_announce(
        &mut t,
        secs(41),
        "10.0.0.4",
        &request(6884, 9, Event::Started),
    )
    .unwrap();
    assert_eq!(r.peers, [addr("10.0.0.2:6882")]);
    assert_eq!(t.peer_count(), 2);
    t.handle_timeout(secs(1000));
    assert_eq!(
        (t.peer_count(), t.torrent_count(), t.poll_timeout()),
        (0, 0, None)
    );
}

#[test]
fn numwant_defaults_to_50_and_is_capped_at_200() {
    // Proves the numwant rules: default 50, capped at 200, 0 gives none, each answer holds
    // distinct peers and never the requester.
    let mut t = server(1800);
    for i in 0..300u32 {
        let peer = request(10_000 + i as u16, 9, Event::Started);
        let r = t.announce(
            secs(0),
            ip("10.1.0.1"),
            &AnnounceRequest {
                numwant: Some(0),
                ..peer
            },
        );
        assert_eq!(r.unwrap().peers, []);
    }
    let me = request(9999, 9, Event::None);
    for (numwant, expected) in [(None, 50), (Some(500), 200), (Some(0), 0), (Some(7), 7)] {
        let answer = t
            .announce(
                secs(1),
                ip("10.1.0.1"),
                &AnnounceRequest {
                    numwant,
                    ..me.clone()
                },
            )
            .unwrap();
        assert_eq!(answer.peers.len(), expected, "numwant {numwant:?}");
        let distinct: BTreeSet<_> = answer.peers.iter().map(|p| p.0).collect();
        assert_eq!(distinct.len(), expected);
        assert!(!distinct.contains(&addr("10.1.0.1:9999")));
        assert_eq!((answer.complete, answer.incomplete), (0, 301));
    }
}

#[test]
fn answers_are_random_but_reproducible() {
    // Proves peers are drawn at random (every peer of a large swarm shows up over a few
    // answers, not always the same ones) and that the same seed and inputs give the same bytes.
    let run = |seed: u64| {
        let mut t = TrackerServer::new(TrackerConfig::default(), seed);
        for i in 0..100u16 {
            t.announce(
                secs(0),
                ip("10.2.0.1"),
                &request(20_000 + i, 0, Event::Started),
            )
            .unwrap();
        }
        let me = AnnounceRequest {
            numwant: Some(10),
            ..request(9999, 9, Event::None)
        };
        let mut seen = BTreeSet::new();
        let mut replies = Vec::new();
        for n in 0..150 {
            let reply = t.handle_http_request(
                secs(n),
                ip("10.2.0.2"),
                &http_request_bytes("http://t/announce", &me),
            );
            for p in parse_announce_response(body(&reply)).unwrap().peers {
                seen.insert(p);
            }
            replies.push(reply);
        }
        (seen.len(), replies)
    };
    let (covered, a) = run(5);
    assert_eq!(covered, 100);
    assert_eq!(a, run(5).1);
    assert_ne!(a, run(6).1);
}

#[test]
fn seeders_are_given_only_leechers() {
    // Proves a seeder's answer holds no other seeder, and a leecher's holds both kinds.
    let mut t = server(1800);
    for i in 0..5u16 {
        t.announce(
            secs(0),
            ip("10.3.0.1"),
            &request(100 + i, 0, Event::Started),
        )
        .unwrap();
        t.announce(
            secs(0),
            ip("10.3.0.2"),
            &request(200 + i, 9, Event::Started),
        )
        .unwrap();
    }
    let seeder = t
        .announce(secs(1), ip("10.3.0.3"), &request(300, 0, Event::None))
        .unwrap();
    assert_eq!(seeder.peers.len(), 5);
    assert!(seeder.peers.iter().all(|p| p.0.ip() == ip("10.3.0.2")));
    let leecher = t
        .announce(secs(1), ip("10.3.0.4"), &request(400, 9, Event::None))
        .unwrap();
    assert_eq!(leecher.peers.len(), 11);
    assert_eq!((leecher.complete, leecher.incomplete), (6, 6));
}

#[test]
fn completed_makes_a_seeder_and_counts_in_scrape() {
    // Proves `completed` (even with a stale left) turns a leecher into a seeder once, counted as
    // `downloaded` by the HTTP (BEP 48) and UDP (BEP 15) scrapes.
    let mut t = server(1800);
    t.announce(secs(0), ip("10.4.0.1"), &request(1, 100, Event::Started))
        .unwrap();
    t.announce(secs(0), ip("10.4.0.2"), &request(2, 100, Event::Started))
        .unwrap();
    t.announce(secs(1), ip("10.4.0.1"), &request(1, 5, Event::Completed))
        .unwrap();
    t.announce(secs(2), ip("10.4.0.1"), &request(1, 0, Event::Completed))
        .unwrap();
    let expected = SwarmStats {
        complete: 1,
        incomplete: 1,
        downloaded: 1,
    };
    assert_eq!(t.swarm(&HASH), Some(expected));
    // HTTP scrape of the torrent and of an unknown one.
    let other = InfoHash([1; 20]);
    let q = |h: &InfoHash| {
        percent_encoding::percent_encode(&h.0, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let get = format!(
        "GET /scrape?info_hash={}&info_hash={} HTTP/1.0\r\n\r\n",
        q(&HASH),
        q(&other)
    );
    let reply = t.handle_http_request(secs(3), ip("10.4.0.9"), get.as_bytes());
    assert_eq!(status(&reply), 200);
    let decoded = decode(body(&reply), DecodeLimits::default()).unwrap();
    let files = decoded
        .value
        .as_dict()
        .unwrap()
        .get(b"files")
        .unwrap()
        .as_dict()
        .unwrap();
    let entry = |h: &InfoHash, k: &[u8]| {
        files
            .get(&h.0)
            .unwrap()
            .as_dict()
            .unwrap()
            .get(k)
            .unwrap()
            .as_int()
            .unwrap()
    };
    assert_eq!(
        [
            entry(&HASH, b"complete"),
            entry(&HASH, b"downloaded"),
            entry(&HASH, b"incomplete")
        ],
        [1, 1, 1]
    );
    assert_eq!(entry(&other, b"complete"), 0);
    // UDP scrape after a connect.
    let from = addr("10.4.0.9:7000");
    let connect = connect_request(77);
    let reply = t.handle_datagram(secs(3), from, &connect).unwrap();
    let mut scrape = reply[8..16].to_vec();
    scrape.extend_from_slice(&2u32.to_be_bytes());
    scrape.extend_from_slice(&78u32.to_be_bytes());
    scrape.extend_from_slice(&HASH.0);
    scrape.extend_from_slice(&other.0);
    let reply = t.handle_datagram(secs(3), from, &scrape).unwrap();
    let words: Vec<u32> = reply
        .chunks(4)
        .map(|w| u32::from_be_bytes(w.try_into().unwrap()))
        .collect();
    assert_eq!(words, [2, 78, 1, 1, 1, 0, 0, 0]);
    // A scrape that names no torrent is refused (no full scrape).
    let reply = t.handle_http_request(secs(3), ip("10.4.0.9"), b"GET /scrape HTTP/1.1\r\n\r\n");
    assert!(
        parse_announce_response(body(&reply)).is_err_and(|e| matches!(e, TrackerError::Failure(_)))
    );
}

/// A connect from `from` at `now`, returning the connection id.
fn connect(t: &mut TrackerServer, now: Instant, from: &str) -> u64 {
    let reply = t
        .handle_datagram(now, addr(from), &connect_request(1))
        .unwrap();
    assert_eq!(reply.len(), 16);
    assert_eq!(&reply[..8], &[0, 0, 0, 0, 0, 0, 0, 1]);
    u64::from_be_bytes(reply[8..16].try_into().unwrap())
}

#[test]
fn connection_ids_are_stateless_per_address_and_expire() {
    // Proves BEP 15 connection ids: none is stored, each is tied to the client's IP (not its
    // port, which changes with each socket), it is accepted in its window and the next (at
    // least two minutes) but not later, and a wrong one gets an error (action 3) that bt's
    // client reports as the tracker's failure.
    let mut t = server(1800);
    let a = connect(&mut t, secs(0), "10.5.0.1:1000");
    let b = connect(&mut t, secs(0), "10.5.0.2:1000");
    let a2 = connect(&mut t, secs(0), "10.5.0.1:1001");
    assert!(a != b && a == a2);
    assert_eq!(connect(&mut t, secs(119), "10.5.0.1:1000"), a);
    assert_eq!((t.torrent_count(), t.peer_count()), (0, 0));
    let announce = |t: &mut TrackerServer, now: Instant, from: &str, id: u64| {
        let packet = announce_request(id, 5, &request(6881, 9, Event::Started));
        let reply = t.handle_datagram(now, addr(from), &packet).unwrap();
        u32::from_be_bytes(reply[..4].try_into().unwrap())
    };
    assert_eq!(announce(&mut t, secs(1), "10.5.0.1:1000", a), 1);
    assert_eq!(announce(&mut t, secs(239), "10.5.0.1:2000", a), 1);
    assert_eq!(announce(&mut t, secs(240), "10.5.0.1:1000", a), 3);
    assert_eq!(announce(&mut t, secs(1), "10.5.0.2:1000", a), 3);
    assert_eq!(announce(&mut t, secs(1), "10.5.0.1:1000", 0x1234), 3);
    // bt's client, given a stale cached id, hears the tracker's error.
    let (result, _) = udp_announce(
        &mut t,
        secs(250),
        "10.5.0.1:1000",
        "10.0.0.100:6969",
        request(6881, 9, Event::None),
        Some((a, secs(250))),
    );
    assert!(matches!(result, Err(TrackerError::Failure(m)) if m.contains("connection id")));
    // Datagrams too short, or a connect without the magic, get no answer at all.
    assert_eq!(
        t.handle_datagram(secs(1), addr("10.5.0.1:1000"), &[0; 15]),
        None
    );
    let mut bad = connect_request(1);
    bad[0] ^= 1;
    assert_eq!(
        t.handle_datagram(secs(1), addr("10.5.0.1:1000"), &bad),
        None
    );
    // A truncated announce and an unknown action with a good id get errors.
    let id = connect(&mut t, secs(1), "10.5.0.3:1");
    let short = announce_request(id, 5, &request(6881, 9, Event::Started));
    let reply = t
        .handle_datagram(secs(1), addr("10.5.0.3:1"), &short[..97])
        .unwrap();
    assert_eq!(&reply[..8], &[0, 0, 0, 3, 0, 0, 0, 5]);
    let mut unknown = short.clone();
    unknown[11] = 9;
    let reply = t
        .handle_datagram(secs(1), addr("10.5.0.3:1"), &unknown)
        .unwrap();
    assert_eq!(&reply[8..], b"unknown action");
}

#[test]
fn whitelist_refuses_other_torrents() {
    // Proves a whitelisted tracker answers its torrents and refuses others with a failure reason
    // (HTTP 200) or an error datagram, storing nothing.
    let config = TrackerConfig {
        whitelist: Some([HASH].into()),
        ..TrackerConfig::default()
    };
    let mut t = TrackerServer::new(config, 1);
    let other = AnnounceRequest {
        info_hash: InfoHash([2; 20]),
        ..request(6881, 9, Event::Started)
    };
    let err = http_announce(&mut t, secs(0), "10.6.0.1", &other).unwrap_err();
    assert_eq!(
        err,
        TrackerError::Failure("torrent not registered with this tracker".into())
    );
    let (result, _) = udp_announce(&mut t, secs(0), "10.6.0.1:1", "10.0.0.100:1", other, None);
    assert_eq!(result.unwrap_err(), err);
    assert_eq!(t.torrent_count(), 0);
    http_announce(
        &mut t,
        secs(0),
        "10.6.0.1",
        &request(6881, 9, Event::Started),
    )
    .unwrap();
    assert_eq!(t.torrent_count(), 1);
    assert_eq!(t.stats().refused, 2);
}

#[test]
fn stores_are_bounded() {
    // Proves the bounds: a torrent beyond max_torrents is refused; a peer beyond
    // max_peers_per_torrent or max_peers is answered but not stored.
    let config = TrackerConfig {
        max_torrents: 2,
        max_peers_per_torrent: 3,
        max_peers: 5,
        ..TrackerConfig::default()
    };
    let mut t = TrackerServer::new(config, 1);
    let on = |n: u8, port: u16| AnnounceRequest {
        info_hash: InfoHash([n; 20]),
        ..request(port, 9, Event::Started)
    };
    for port in 1..=4 {
        let answer = t.announce(secs(0), ip("10.7.0.1"), &on(1, port)).unwrap();
        assert_eq!(answer.peers.len(), usize::from(port.min(4) - 1).min(3));
    }
    assert_eq!(t.swarm(&InfoHash([1; 20])).unwrap().incomplete, 3);
    for port in 1..=3 {
        t.announce(secs(0), ip("10.7.0.1"), &on(2, port)).unwrap();
    }
    assert_eq!(t.peer_count(), 5);
    assert_eq!(
        t.announce(secs(0), ip("10.7.0.1"), &on(3, 1)),
        Err(AnnounceRefusal::TooManyTorrents(2))
    );
    // A stored peer still re-announces when the store is full.
    t.announce(secs(1), ip("10.7.0.1"), &on(2, 1)).unwrap();
    assert_eq!((t.peer_count(), t.torrent_count()), (5, 2));
}

#[test]
fn http_errors_have_statuses_and_reasons() {
    // Proves what non-announces get: 400 for junk, 405 for another method, 404 for another
    // path, 431 for an oversized request, and HTTP 200 with a failure reason for a malformed
    // announce, each body a bencoded failure reason.
    let mut t = server(1800);
    let mut ask = |bytes: &[u8]| t.handle_http_request(secs(0), ip("10.8.0.1"), bytes);
    let reason = |reply: &[u8]| match parse_announce_response(body(reply)) {
        Err(TrackerError::Failure(m)) => m,
        other => panic!("no failure reason: {other:?}"),
    };
    for junk in [
        &b"\x00\x01\x02"[..],
        b"hello\r\n\r\n",
        b"GET /announce\r\n\r\n",
        b"GET / FTP/1\r\n\r\n",
    ] {
        assert_eq!(status(&ask(junk)), 400, "{junk:?}");
    }
    assert_eq!(status(&ask(b"POST /announce HTTP/1.1\r\n\r\n")), 405);
    let reply = ask(b"GET /index.html HTTP/1.1\r\n\r\n");
    assert_eq!(status(&reply), 404);
    assert!(reason(&reply).contains("/announce"));
    let mut big = b"GET /announce?".to_vec();
    big.resize(9000, b'a');
    big.extend_from_slice(b" HTTP/1.1\r\n\r\n");
    assert_eq!(status(&ask(&big)), 431);
    let good = "info_hash=%AB%AB%AB%AB%AB%AB%AB%AB%AB%AB%AB%AB%AB%AB%AB%AB%AB%AB%AB%AB&peer_id=-BT0100-000000000000";
    for (query, missing) in [
        ("peer_id=-BT0100-000000000000&port=1", "info_hash"),
        (
            "info_hash=%AB&peer_id=-BT0100-000000000000&port=1",
            "info_hash",
        ),
        (
            "info_hash=%AB%AB%AB%AB%AB%AB%AB%AB%AB%AB%AB%AB%AB%AB%AB%AB%AB%AB%AB%AB&port=1",
            "peer_id",
        ),
        (good, "port"),
        (&format!("{good}&port=0"), "port"),
        (&format!("{good}&port=70000"), "port"),
        (&format!("{good}&port=x1"), "port"),
    ] {
        let reply = ask(format!("GET /announce?{query} HTTP/1.1\r\n\r\n").as_bytes());
        assert_eq!(status(&reply), 200);
        assert_eq!(reason(&reply), format!("missing or malformed `{missing}`"));
    }
    // The `ip` parameter is ignored: the peer is stored at the connection's address.
    let reply = ask(format!(
        "GET /tracker/announce.php?{good}&port=5&ip=1.2.3.4&left=0 HTTP/1.0\n\n"
    )
    .as_bytes());
    assert_eq!(status(&reply), 200);
    let reply = ask(format!("GET /announce?{good}&port=6&left=1 HTTP/1.1\r\n\r\n").as_bytes());
    assert_eq!(
        parse_announce_response(body(&reply)).unwrap().peers,
        [addr("10.8.0.1:5")]
    );
    assert_eq!((t.stats().bad_requests, t.stats().refused), (7, 7));
}

#[test]
fn dictionary_peers_when_not_compact() {
    // Proves compact=0 gives the BEP 3 list of dictionaries (with `peer id` unless no_peer_id=1,
    // IPv6 peers as text in the same list), which bt's parser reads back.
    let mut t = server(1800);
    http_announce(
        &mut t,
        secs(0),
        "10.9.0.1",
        &request(6881, 0, Event::Started),
    )
    .unwrap();
    http_announce(
        &mut t,
        secs(0),
        "2001:db8::9",
        &request(6882, 0, Event::Started),
    )
    .unwrap();
    let query = "info_hash=%AB%AB%AB%AB%AB%AB%AB%AB%AB%AB%AB%AB%AB%AB%AB%AB%AB%AB%AB%AB&peer_id=-BT0100-000000000009&port=9&left=5&compact=0";
    let reply = t.handle_http_request(
        secs(1),
        ip("10.9.0.2"),
        format!("GET /announce?{query} HTTP/1.1\r\n\r\n").as_bytes(),
    );
    let text = String::from_utf8_lossy(body(&reply)).into_owned();
    assert!(
        text.contains("2:ip8:10.9.0.17:peer id20:-BT0100-000000006881"),
        "{text}"
    );
    assert!(text.contains("2:ip11:2001:db8::9"), "{text}");
    let peers: BTreeSet<SocketAddr> = parse_announce_response(body(&reply))
        .unwrap()
        .peers
        .into_iter()
        .collect();
    assert_eq!(
        peers,
        [addr("10.9.0.1:6881"), addr("[2001:db8::9]:6882")].into()
    );
    let reply = t.handle_http_request(
        secs(2),
        ip("10.9.0.2"),
        format!("GET /announce?{query}&no_peer_id=1 HTTP/1.1\r\n\r\n").as_bytes(),
    );
    assert!(!String::from_utf8_lossy(body(&reply)).contains("peer id"));
}

#[test]
fn head_end_finds_the_empty_line() {
    // Proves the driver's stop condition for reading a request.
    assert_eq!(
        http_head_end(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nrest"),
        Some(27)
    );
    assert_eq!(http_head_end(b"GET / HTTP/1.0\n\n"), Some(16));
    assert_eq!(http_head_end(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
    assert_eq!(http_head_end(b""), None);
}

#[test]
fn typed_answer_matches_the_parsed_one() {
    // Proves AnnounceAnswer::to_response gives what a client parses from the HTTP encoding.
    let mut a = server(1800);
    let mut b = server(1800);
    for t in [&mut a, &mut b] {
        t.announce(secs(0), ip("10.10.0.1"), &request(1, 0, Event::Started))
            .unwrap();
    }
    let me = request(2, 9, Event::Started);
    let typed = a
        .announce(secs(1), ip("10.10.0.2"), &me)
        .unwrap()
        .to_response();
    let parsed = http_announce(&mut b, secs(1), "10.10.0.2", &me).unwrap();
    assert_eq!(typed, parsed);
}

/// An HTTP announce query with fields drawn by proptest, some of them broken.
fn query_strategy() -> impl Strategy<Value = Vec<u8>> {
    let hash = prop_oneof![
        Just(HASH.0.to_vec()),
        proptest::collection::vec(any::<u8>(), 0..24)
    ];
    let field = prop_oneof![
        hash.prop_map(|h| (b"info_hash".to_vec(), h)),
        proptest::collection::vec(any::<u8>(), 0..24).prop_map(|v| (b"peer_id".to_vec(), v)),
        (0u32..70_000).prop_map(|p| (b"port".to_vec(), p.to_string().into_bytes())),
        "[a-z_]{1,10}".prop_map(|k| (k.into_bytes(), b"1".to_vec())),
        prop_oneof![
            Just("started"),
            Just("stopped"),
            Just("completed"),
            Just("x")
        ]
        .prop_map(|e| (b"event".to_vec(), e.as_bytes().to_vec())),
        "-?[0-9]{1,22}".prop_map(|n| (b"numwant".to_vec(), n.into_bytes())),
        "-?[0-9]{1,22}".prop_map(|n| (b"left".to_vec(), n.into_bytes())),
        proptest::collection::vec(any::<u8>(), 0..8).prop_map(|v| (b"compact".to_vec(), v)),
    ];
    proptest::collection::vec(field, 0..10).prop_map(|fields| {
        let mut out = Vec::new();
        for (k, v) in fields {
            out.extend(
                percent_encoding::percent_encode(&k, percent_encoding::NON_ALPHANUMERIC)
                    .to_string()
                    .bytes(),
            );
            out.push(b'=');
            out.extend(
                percent_encoding::percent_encode(&v, percent_encoding::NON_ALPHANUMERIC)
                    .to_string()
                    .bytes(),
            );
            out.push(b'&');
        }
        out
    })
}

/// Checks what must hold after any input.
fn check_invariants(t: &TrackerServer) {
    let config = t.config();
    assert!(t.torrent_count() <= config.max_torrents);
    assert!(t.peer_count() <= config.max_peers);
    assert_eq!(t.expiries.len(), t.peer_count());
    let stored: usize = t.torrents.values().map(Swarm::len).sum();
    assert_eq!(stored, t.peer_count());
    for swarm in t.torrents.values() {
        assert!(swarm.len() > 0 && swarm.len() <= config.max_peers_per_torrent);
        let pooled: usize = swarm.pools.iter().map(Vec::len).sum();
        assert_eq!(pooled, swarm.len());
    }
}

proptest! {
    #[test]
    fn junk_never_panics(
        http in proptest::collection::vec(any::<u8>(), 0..300),
        datagram in proptest::collection::vec(any::<u8>(), 0..200),
        port in any::<u16>(),
    ) {
        // Proves arbitrary bytes over HTTP and UDP never panic the tracker, every HTTP answer
        // reads as an HTTP response, and no UDP answer is larger than the bound.
        let mut t = server(60);
        let reply = t.handle_http_request(secs(1), ip("10.11.0.1"), &http);
        let mut reader = HttpResponseReader::new();
        reader.feed(&reply);
        prop_assert!(reader.is_complete());
        let mut d = datagram.clone();
        if d.len() >= 16 && port % 2 == 0 {
            let id = connect(&mut t, secs(1), "10.11.0.1:1");
            d[..8].copy_from_slice(&id.to_be_bytes());
        }
        if let Some(reply) = t.handle_datagram(secs(1), SocketAddr::new(ip("10.11.0.1"), if port % 2 == 0 { 1 } else { port }), &d) {
            prop_assert!(reply.len() >= 8 && reply.len() <= 20 + 18 * 200);
        }
        check_invariants(&t);
    }

    #[test]
    fn announce_sequences_keep_the_invariants(
        steps in proptest::collection::vec((query_strategy(), 0u8..6, 0u64..30, any::<bool>()), 1..40),
    ) {
        // Proves any sequence of (partly malformed) announces from a few addresses, with time
        // moving on, keeps the store within its bounds and consistent, answers never hold the
        // requester, and every answer parses.
        let config = TrackerConfig {
            interval: Duration::from_secs(5),
            max_torrents: 2,
            max_peers_per_torrent: 3,
            max_peers: 4,
            ..TrackerConfig::default()
        };
        let mut t = TrackerServer::new(config, 3);
        let mut now = Instant::ZERO;
        for (query, who, dt, timeout) in steps {
            now = now + Duration::from_secs(dt);
            if timeout {
                t.handle_timeout(now);
            }
            let from = IpAddr::from([10, 12, 0, who]);
            let mut get = b"GET /announce?".to_vec();
            get.extend_from_slice(&query);
            get.extend_from_slice(b" HTTP/1.1\r\n\r\n");
            let reply = t.handle_http_request(now, from, &get);
            prop_assert_eq!(status(&reply), 200);
            match parse_announce_response(body(&reply)) {
                Ok(answer) => {
                    prop_assert!(answer.peers.len() <= 50);
                    let port = query.split(|&b| b == b'&')
                        .find_map(|f| f.strip_prefix(b"port="))
                        .and_then(|p| std::str::from_utf8(p).ok()?.parse::<u16>().ok());
                    if let Some(port) = port {
                        prop_assert!(!answer.peers.contains(&SocketAddr::new(from, port)));
                    }
                }
                Err(TrackerError::Failure(_)) => {}
                Err(e) => prop_assert!(false, "unreadable answer: {e}"),
            }
            check_invariants(&t);
            if let Some(deadline) = t.poll_timeout() {
                prop_assert!(deadline > now);
            }
        }
    }
}
