//! Tests of [`Client`]: dialling and redialling with backoff, connect timeouts, the half-open
//! limit, announces (the whole request, `completed`, `stopped`, the UDP connection cache), and
//! whole transfers between clients through a minimal in-memory network.

use core::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::collections::BTreeMap;
use std::time::Duration;

use sha1::{Digest, Sha1};

use super::*;
use crate::harness::{answer_disk, content};
use crate::metainfo::TorrentLayout;
use crate::tracker::{AnnounceResponse, Event as AnnounceEvent};

pub(super) const HASH: InfoHash = InfoHash([7; 20]);
pub(super) const PIECE: u64 = 32 * 1024;
pub(super) const LEN: u64 = 8 * PIECE;

pub(super) fn addr(last: u8) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 2, 0, last)), 6881)
}

pub(super) fn layout() -> TorrentLayout {
    TorrentLayout::new(PIECE, &[LEN]).unwrap()
}

pub(super) fn hashes(data: &[u8]) -> Vec<[u8; 20]> {
    data.chunks(PIECE as usize)
        .map(|c| Sha1::digest(c).into())
        .collect()
}

/// A client at `addr(last)` holding the test torrent (all of it, or nothing).
pub(super) fn client(
    seed: u64,
    last: u8,
    full: bool,
    trackers: Vec<Vec<String>>,
) -> (Client, TorrentId) {
    let mut c = Client::new(ClientConfig::default(), seed);
    c.set_listen_addr(addr(last));
    let id = add_test_torrent(&mut c, HASH, full, trackers);
    (c, id)
}

/// Adds the test torrent's content under `info_hash` to `c`: all of it, or nothing.
pub(super) fn add_test_torrent(
    c: &mut Client,
    info_hash: InfoHash,
    full: bool,
    trackers: Vec<Vec<String>>,
) -> TorrentId {
    let pieces = layout().piece_count();
    let have = if full {
        Bitfield::full(pieces)
    } else {
        Bitfield::new(pieces)
    };
    c.add_torrent(
        Instant::ZERO,
        info_hash,
        layout(),
        hashes(&content(LEN)),
        have,
        bytes::Bytes::from_static(b"d4:name1:xe"),
        false,
        trackers,
    )
    .unwrap()
}

/// One client on the test network.
pub(super) struct Node {
    pub(super) client: Client,
    pub(super) addr: SocketAddr,
    pub(super) storage: Vec<u8>,
    pub(super) up: bool,
    pub(super) events: Vec<Event>,
    pub(super) connects: Vec<(Instant, SocketAddr)>,
    pub(super) closes: Vec<(ConnId, ClientCloseReason)>,
    pub(super) announces: Vec<(AnnounceId, String, AnnounceRequest, Option<UdpConnection>)>,
}

/// A network of clients: connections are pairs of handles, bytes arrive at once.
pub(super) struct Net {
    pub(super) nodes: Vec<Node>,
    /// (node, conn) -> (node, conn) of the other end.
    pub(super) links: BTreeMap<(usize, ConnId), (usize, ConnId)>,
    pub(super) now: Instant,
}

impl Net {
    pub(super) fn new() -> Self {
        Net {
            nodes: Vec::new(),
            links: BTreeMap::new(),
            now: Instant::ZERO,
        }
    }

    pub(super) fn add(&mut self, client: Client, full: bool) -> usize {
        let addr = client.listen.expect("test clients listen");
        let storage = if full {
            content(LEN)
        } else {
            vec![0; LEN as usize]
        };
        self.nodes.push(Node {
            client,
            addr,
            storage,
            up: true,
            events: Vec::new(),
            connects: Vec::new(),
            closes: Vec::new(),
            announces: Vec::new(),
        });
        self.nodes.len() - 1
    }

    /// Drains every node until nothing moves.
    pub(super) fn settle(&mut self) {
        for _ in 0..100_000 {
            let mut moved = false;
            for i in 0..self.nodes.len() {
                while let Some(out) = self.nodes[i].client.poll_output() {
                    moved = true;
                    self.carry(i, out);
                }
            }
            if !moved {
                return;
            }
        }
        panic!("the clients never settled");
    }

    fn carry(&mut self, i: usize, out: Output) {
        let now = self.now;
        match out {
            Output::Connect { conn, addr, .. } => {
                self.nodes[i].connects.push((now, addr));
                let from = self.nodes[i].addr;
                let target = self.nodes.iter().position(|n| n.addr == addr && n.up);
                match target.and_then(|j| Some((j, self.nodes[j].client.accept(now, from).ok()?))) {
                    Some((j, theirs)) => {
                        self.links.insert((i, conn), (j, theirs));
                        self.links.insert((j, theirs), (i, conn));
                        self.nodes[i].client.handle_connected(now, conn);
                    }
                    None => {
                        self.nodes[i]
                            .client
                            .handle_connect_failed(now, conn, "refused".into());
                    }
                }
            }
            Output::Transmit { conn, bytes } => {
                self.nodes[i].client.handle_sent(now, conn, bytes.len());
                if let Some(&(j, theirs)) = self.links.get(&(i, conn)) {
                    self.nodes[j].client.handle_bytes(now, theirs, &bytes);
                }
            }
            Output::Close { conn, reason } => {
                self.nodes[i].closes.push((conn, reason));
                if let Some((j, theirs)) = self.links.remove(&(i, conn)) {
                    self.links.remove(&(j, theirs));
                    self.nodes[j].client.handle_disconnect(now, theirs);
                }
            }
            Output::Disk { torrent, op } => {
                let node = &mut self.nodes[i];
                let done = answer_disk(&layout(), &mut node.storage, false, op);
                node.client.handle_disk(now, torrent, done);
            }
            Output::Datagram { .. } => {}
            Output::Announce {
                id,
                url,
                request,
                udp_connection,
                ..
            } => self.nodes[i]
                .announces
                .push((id, url, *request, udp_connection)),
            Output::Event(e) => self.nodes[i].events.push(e),
        }
    }

    /// Runs timers until `until`, settling after each.
    pub(super) fn run_until(&mut self, until: Instant) {
        self.settle();
        for _ in 0..1_000_000 {
            let next = self
                .nodes
                .iter()
                .filter(|n| n.up)
                .filter_map(|n| n.client.poll_timeout())
                .min();
            match next {
                Some(at) if at <= until => {
                    self.now = self.now.max(at);
                    for n in self.nodes.iter_mut().filter(|n| n.up) {
                        n.client.handle_timeout(self.now);
                    }
                    self.settle();
                }
                _ => {
                    self.now = until;
                    return;
                }
            }
        }
        panic!("timers never ran dry");
    }

    /// Node `i` goes away: its connections reset, it answers nothing.
    pub(super) fn crash(&mut self, i: usize) {
        self.nodes[i].up = false;
        let ends: Vec<((usize, ConnId), (usize, ConnId))> = self
            .links
            .iter()
            .filter(|((n, _), _)| *n == i)
            .map(|(a, b)| (*a, *b))
            .collect();
        for (mine, (j, theirs)) in ends {
            self.links.remove(&mine);
            self.links.remove(&(j, theirs));
            self.nodes[j].client.handle_disconnect(self.now, theirs);
        }
        self.settle();
    }

    pub(super) fn complete(&self, i: usize, id: TorrentId) -> bool {
        self.nodes[i]
            .client
            .torrent(id)
            .is_some_and(Torrent::is_complete)
    }
}

pub(super) fn secs(s: u64) -> Instant {
    Instant::ZERO + Duration::from_secs(s)
}

#[test]
fn a_peer_learned_once_is_redialled_after_it_restarts_on_the_same_address() {
    // Proves the peer list brings back a seeder that went away and came back on the same
    // address, with no tracker to name it again: the leecher completes from its second life.
    let mut net = Net::new();
    // In its first life it has nothing yet (it is still checking its files, say).
    let (seeder, _) = client(1, 1, false, Vec::new());
    let (leecher, lid) = client(2, 2, false, Vec::new());
    let s = net.add(seeder, true);
    let l = net.add(leecher, false);
    net.nodes[l]
        .client
        .add_peers(Instant::ZERO, lid, PeerSource::Direct, &[addr(1)]);
    net.settle();
    assert_eq!(net.nodes[l].connects.len(), 1);
    assert_eq!(net.nodes[l].client.session().connection_count(), 1);
    // The seeder dies: the connection is reset.
    net.crash(s);
    assert!(!net.complete(l, lid));
    net.run_until(secs(5));
    // It restarts on the same address with a new client.
    let (seeder, _) = client(3, 1, true, Vec::new());
    net.nodes[s].client = seeder;
    net.nodes[s].up = true;
    net.run_until(secs(120));
    assert!(
        net.complete(l, lid),
        "connects: {:?}",
        net.nodes[l].connects
    );
    let redial = net.nodes[l].connects[1].0;
    assert_eq!(redial, Instant::ZERO + RECONNECT_AFTER);
    assert!(net.nodes[l].connects.iter().all(|(_, a)| *a == addr(1)));
}

#[test]
fn failed_connects_back_off_doubling_and_the_address_is_forgotten_after_max_fails() {
    // Proves the retry schedule: 15 s, 30 s, 60 s, ... after each failure in a row, and that an
    // address failing MAX_FAILS times is dropped rather than dialled forever.
    let mut net = Net::new();
    let (leecher, lid) = client(2, 2, false, Vec::new());
    let l = net.add(leecher, false);
    net.nodes[l]
        .client
        .add_peers(Instant::ZERO, lid, PeerSource::Direct, &[addr(9)]);
    net.run_until(secs(24 * 3600));
    let times: Vec<u64> = net.nodes[l]
        .connects
        .iter()
        .map(|(at, _)| at.as_micros() / 1_000_000)
        .collect();
    assert_eq!(times, [0, 15, 45, 105, 225, 465]);
    assert_eq!(times.len() as u32, MAX_FAILS);
    assert!(
        !net.nodes[l]
            .client
            .peer_list(lid)
            .unwrap()
            .contains(&addr(9))
    );
    let failures = net.nodes[l]
        .events
        .iter()
        .filter(|e| matches!(e, Event::ConnectFailed { .. }))
        .count();
    assert_eq!(failures, times.len());
}

#[test]
fn a_connect_with_no_answer_times_out_and_frees_its_half_open_slot() {
    // Proves the client, not the driver, ends a connect that never completes: a Close with
    // ConnectTimeout after the configured time, a ConnectFailed event, the timer named, and the
    // slot given to the next address.
    let (mut c, id) = client(2, 2, false, Vec::new());
    let many: Vec<SocketAddr> = (10..40).map(addr).collect();
    assert_eq!(
        c.add_peers(Instant::ZERO, id, PeerSource::Tracker, &many),
        30
    );
    let mut connects = Vec::new();
    while let Some(out) = c.poll_output() {
        if let Output::Connect { conn, .. } = out {
            connects.push(conn);
        }
    }
    assert_eq!(connects.len(), MAX_HALF_OPEN);
    assert_eq!(c.half_open(), MAX_HALF_OPEN);
    assert_eq!(c.poll_timeout(), Some(Instant::ZERO + CONNECT_TIMEOUT));
    c.handle_timeout(Instant::ZERO + CONNECT_TIMEOUT);
    assert_eq!(c.last_timeout_reason(), Some(Timer::Connect(connects[0])));
    let (mut timeouts, mut failed, mut new) = (0, 0, 0);
    while let Some(out) = c.poll_output() {
        match out {
            Output::Close {
                reason: ClientCloseReason::ConnectTimeout,
                ..
            } => timeouts += 1,
            Output::Event(Event::ConnectFailed { error, .. }) => {
                assert_eq!(error, "no answer within 10 s");
                failed += 1;
            }
            Output::Connect { .. } => new += 1,
            _ => {}
        }
    }
    assert_eq!((timeouts, failed), (MAX_HALF_OPEN, MAX_HALF_OPEN));
    assert_eq!(new, 30 - MAX_HALF_OPEN);
    // A late answer for a connect given up is ignored.
    c.handle_connected(Instant::ZERO + CONNECT_TIMEOUT, connects[0]);
    assert_eq!(c.session().connection_count(), 0);
}

pub(super) fn answer(peers: Vec<SocketAddr>) -> AnnounceResponse {
    AnnounceResponse {
        interval: Duration::from_secs(1800),
        min_interval: None,
        tracker_id: None,
        complete: Some(1),
        incomplete: Some(0),
        peers,
        warning: None,
    }
}

#[test]
fn announces_carry_the_whole_request_and_stopped_ends_the_torrent() {
    // Proves the client builds the announce itself: `started` with exact `left`, our port, 80
    // peers wanted and one key for all; the answer's peers are dialled (ours ignored);
    // `completed` follows completion; stopping sends `stopped` with numwant 0 and reports
    // Stopped when it is answered.
    let tracker = vec![vec!["http://10.2.0.100/announce".to_owned()]];
    let mut net = Net::new();
    let (seeder, _) = client(1, 1, true, Vec::new());
    let (leecher, lid) = client(2, 2, false, tracker);
    net.add(seeder, true);
    let l = net.add(leecher, false);
    net.settle();
    let (aid, url, request, _) = net.nodes[l].announces.remove(0);
    assert_eq!(url, "http://10.2.0.100/announce");
    assert_eq!(request.event, AnnounceEvent::Started);
    assert_eq!((request.left, request.port), (LEN, 6881));
    assert_eq!(request.numwant, Some(NUMWANT));
    assert_eq!(request.peer_id, net.nodes[l].client.peer_id());
    let key = request.key;
    net.nodes[l]
        .client
        .handle_announce(net.now, aid, Ok(answer(vec![addr(1), addr(2)])), None);
    net.run_until(secs(60));
    assert!(net.complete(l, lid));
    assert_eq!(net.nodes[l].connects, [(Instant::ZERO, addr(1))]);
    let (aid, _, request, _) = net.nodes[l].announces.remove(0);
    assert_eq!(
        (request.event, request.left, request.key),
        (AnnounceEvent::Completed, 0, key)
    );
    assert_eq!(request.downloaded, LEN);
    net.nodes[l]
        .client
        .handle_announce(net.now, aid, Ok(answer(Vec::new())), None);
    net.nodes[l].client.stop_torrent(net.now, lid);
    net.settle();
    let (aid, _, request, _) = net.nodes[l].announces.remove(0);
    assert_eq!(
        (request.event, request.numwant),
        (AnnounceEvent::Stopped, Some(0))
    );
    assert!(!net.nodes[l].client.is_stopped(lid));
    assert_eq!(net.nodes[l].client.session().connection_count(), 0);
    net.nodes[l]
        .client
        .handle_announce(net.now, aid, Ok(answer(Vec::new())), None);
    net.settle();
    assert!(net.nodes[l].client.all_stopped());
    assert!(
        net.nodes[l]
            .events
            .contains(&Event::Stopped { torrent: lid })
    );
}

#[test]
fn announces_wait_for_the_listen_address_and_a_torrent_stopped_before_it_announces_nothing() {
    // Proves no announce leaves with port 0: trackers given before listening hold `started`
    // back, with no timer spinning on it, until the address arrives; it then goes out at once
    // with the port. A torrent stopped before that stops without announcing.
    let tracker = vec![vec!["http://10.2.0.100/announce".to_owned()]];
    let mut c = Client::new(ClientConfig::default(), 3);
    let id = add_test_torrent(&mut c, HASH, false, tracker.clone());
    let other = add_test_torrent(&mut c, InfoHash([8; 20]), false, tracker);
    let drain = |c: &mut Client| -> Vec<AnnounceRequest> {
        std::iter::from_fn(|| c.poll_output())
            .filter_map(|out| match out {
                Output::Announce { request, .. } => Some(*request),
                _ => None,
            })
            .collect()
    };
    assert!(drain(&mut c).is_empty());
    assert!(
        c.timers()
            .iter()
            .all(|(name, _)| !matches!(name, Timer::Announce(_)))
    );
    c.stop_torrent(secs(1), other);
    assert!(drain(&mut c).is_empty());
    c.set_listen_addr(addr(2));
    let due = c.poll_timeout().expect("the held announce is due");
    assert!(due <= secs(1));
    c.handle_timeout(secs(1));
    assert_eq!(c.last_timeout_reason(), Some(Timer::Announce(id)));
    let sent = drain(&mut c);
    assert_eq!(sent.len(), 1, "only the running torrent announces");
    assert_eq!(
        (sent[0].event, sent[0].port),
        (AnnounceEvent::Started, 6881)
    );
}

#[test]
fn a_silent_tracker_is_reported_slow_and_does_not_hold_up_the_stop() {
    // Proves the slow-tracker notice after 4 s, and that a torrent whose `stopped` announce
    // gets no answer still stops after STOP_ANNOUNCE_TIMEOUT.
    let tracker = vec![vec!["udp://10.2.0.100:6969".to_owned()]];
    let (mut c, id) = client(2, 2, false, tracker);
    let mut first = None;
    while let Some(out) = c.poll_output() {
        if let Output::Announce { id, .. } = out {
            first = Some(id);
        }
    }
    let first = first.expect("started is announced");
    c.handle_timeout(Instant::ZERO + SLOW_TRACKER_NOTICE);
    assert_eq!(c.last_timeout_reason(), Some(Timer::SlowTracker(id)));
    let slow: Vec<Output> = std::iter::from_fn(|| c.poll_output()).collect();
    assert!(matches!(
        slow.as_slice(),
        [Output::Event(Event::TrackerSlow { waited, .. })] if *waited == SLOW_TRACKER_NOTICE
    ));
    // It answers, with a connection id to keep; the next announce offers it back.
    let connection = (0xabcd, Instant::ZERO + SLOW_TRACKER_NOTICE);
    c.handle_announce(secs(5), first, Ok(answer(Vec::new())), Some(connection));
    c.stop_torrent(secs(6), id);
    let mut stopped = None;
    while let Some(out) = c.poll_output() {
        if let Output::Announce {
            request,
            udp_connection,
            ..
        } = out
        {
            stopped = Some((request.event, udp_connection));
        }
    }
    assert_eq!(stopped, Some((AnnounceEvent::Stopped, Some(connection))));
    c.handle_timeout(secs(6) + STOP_ANNOUNCE_TIMEOUT);
    assert!(c.all_stopped());
}

#[test]
fn three_torrents_share_one_client_and_complete_from_one_seeding_client() {
    // Proves one client runs several torrents at once: connections are routed by info hash to
    // the right torrent on both sides, and every torrent completes.
    let hashes_of = |n: u8| InfoHash([n; 20]);
    let mut net = Net::new();
    let mut seeder = Client::new(ClientConfig::default(), 1);
    seeder.set_listen_addr(addr(1));
    let mut leecher = Client::new(ClientConfig::default(), 2);
    leecher.set_listen_addr(addr(2));
    let mut ids = Vec::new();
    for n in 1..=3 {
        for (c, full) in [(&mut seeder, true), (&mut leecher, false)] {
            let id = add_test_torrent(c, hashes_of(n), full, Vec::new());
            if !full {
                ids.push(id);
            }
        }
    }
    net.add(seeder, true);
    let l = net.add(leecher, false);
    for &id in &ids {
        net.nodes[l]
            .client
            .add_peers(Instant::ZERO, id, PeerSource::Direct, &[addr(1)]);
    }
    net.run_until(secs(60));
    // The test network has one storage per node: the three torrents hold the same bytes, so
    // one storage serves them all.
    for &id in &ids {
        assert!(net.complete(l, id), "torrent {id:?} incomplete");
        assert!(
            net.nodes[l]
                .client
                .peer_list(id)
                .unwrap()
                .contains(&addr(1))
        );
    }
    assert_eq!(net.nodes[l].connects.len(), 3);
}

/// A client like [`client`] with an encryption policy.
fn client_encrypting(
    seed: u64,
    last: u8,
    full: bool,
    policy: Option<Encryption>,
) -> (Client, TorrentId) {
    let mut config = ClientConfig::default();
    config.session.encryption = policy;
    let mut c = Client::new(config, seed);
    c.set_listen_addr(addr(last));
    let id = add_test_torrent(&mut c, HASH, full, Vec::new());
    (c, id)
}

/// A leecher with `leecher` policy given a seeder with `seeder` policy: the network after two
/// minutes, the leecher's node and torrent.
fn encrypted_swarm(
    seeder: Option<Encryption>,
    leecher: Option<Encryption>,
) -> (Net, usize, TorrentId) {
    let mut net = Net::new();
    let (s, _) = client_encrypting(1, 1, true, seeder);
    let (l, lid) = client_encrypting(2, 2, false, leecher);
    net.add(s, true);
    let l = net.add(l, false);
    net.nodes[l]
        .client
        .add_peers(Instant::ZERO, lid, PeerSource::Direct, &[addr(1)]);
    net.run_until(secs(120));
    (net, l, lid)
}

#[test]
fn two_clients_that_prefer_encryption_transfer_under_rc4() {
    let (net, l, lid) = encrypted_swarm(Some(Encryption::Prefer), Some(Encryption::Prefer));
    assert!(net.complete(l, lid));
    assert_eq!(net.nodes[l].connects.len(), 1);
    let (_, conn) = *net
        .links
        .keys()
        .find(|(n, _)| *n == l)
        .expect("still connected");
    assert!(net.nodes[l].client.session().is_rc4(conn));
}

#[test]
fn a_peer_that_hangs_up_on_encryption_is_redialled_at_once_in_plaintext() {
    // The seeder has no encryption at all: it refuses the encrypted handshake as not
    // BitTorrent. A leecher that prefers encryption tries again in plaintext, at once.
    let (net, l, lid) = encrypted_swarm(None, Some(Encryption::Prefer));
    assert!(
        net.complete(l, lid),
        "connects: {:?}",
        net.nodes[l].connects
    );
    let connects = &net.nodes[l].connects;
    assert_eq!(connects.len(), 2, "{connects:?}");
    assert_eq!(
        connects[0].0, connects[1].0,
        "the plaintext retry waits for nothing"
    );
    assert!(
        net.nodes[l]
            .client
            .peer_list(lid)
            .unwrap()
            .plaintext_only(&addr(1))
    );
    assert!(
        net.nodes[l].events.iter().any(|e| matches!(
            e,
            Event::ConnectFailed { error, .. } if error.contains("trying plaintext")
        )),
        "{:?}",
        net.nodes[l].events
    );
}

#[test]
fn a_client_that_requires_encryption_never_talks_plaintext() {
    let (net, l, lid) = encrypted_swarm(None, Some(Encryption::Require));
    assert!(!net.complete(l, lid));
    // Each failure waits out a backoff: no retry in plaintext, no storm of dials.
    let connects = &net.nodes[l].connects;
    assert!(connects.len() <= 4, "{connects:?}");
    assert!(connects.windows(2).all(|w| w[1].0 > w[0].0), "{connects:?}");
}

#[test]
fn a_reader_gets_its_pieces_first_and_releases_them() {
    // Proves the reader commands reach the picker through the client: a leecher with a reader
    // at piece 5 verifies pieces 5 and 6 (its urgent ones) before any other, and one whose
    // reader went away again downloads in the strategy's order; a reader of an unknown
    // torrent is refused.
    use crate::torrent::{ReadPosition, ReaderId, Strategy, TorrentEvent};
    let verified_order = |reader: bool| {
        let mut net = Net::new();
        let (s, _) = client(1, 1, true, Vec::new());
        let mut config = ClientConfig::default();
        config.session.torrent.strategy = Strategy::Sequential;
        let mut c = Client::new(config, 2);
        c.set_listen_addr(addr(2));
        let lid = add_test_torrent(&mut c, HASH, false, Vec::new());
        let at = ReadPosition {
            offset: 5 * PIECE + 100,
            end: LEN,
            rate: None,
        };
        c.set_reader(Instant::ZERO, lid, ReaderId(1), at).unwrap();
        if !reader {
            c.remove_reader(Instant::ZERO, lid, ReaderId(1));
        }
        net.add(s, true);
        let l = net.add(c, false);
        net.nodes[l]
            .client
            .add_peers(Instant::ZERO, lid, PeerSource::Direct, &[addr(1)]);
        net.run_until(secs(30));
        assert!(net.complete(l, lid));
        net.nodes[l]
            .events
            .iter()
            .filter_map(|e| match e {
                Event::Torrent {
                    event: TorrentEvent::PieceVerified(p),
                    ..
                } => Some(p.get()),
                _ => None,
            })
            .collect::<Vec<u32>>()
    };
    let with = verified_order(true);
    let mut first: Vec<u32> = with[..2].to_vec();
    first.sort_unstable();
    assert_eq!(first, [5, 6], "{with:?}");
    // Its window (pieces 5 to 7) before the rest.
    assert_eq!(with[2], 7, "{with:?}");
    let without = verified_order(false);
    assert_eq!(without, (0..8).collect::<Vec<u32>>());
    let (mut c, _) = client(3, 3, false, Vec::new());
    let at = ReadPosition {
        offset: 0,
        end: 1,
        rate: None,
    };
    assert!(
        c.set_reader(Instant::ZERO, TorrentId(99), ReaderId(1), at)
            .is_err()
    );
}
