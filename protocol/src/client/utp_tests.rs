//! Tests of uTP as the client's second transport: whole downloads between clients wired only by
//! datagrams (clean, lossy and reordering, encrypted), the fallback to TCP, the incoming
//! connection limit, and the UDP socket shared with the DHT.

use core::net::SocketAddr;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::tests::{HASH, LEN, add_test_torrent, addr, layout, secs};
use super::*;
use crate::dht::{DhtConfig, NodeId};
use crate::harness::{answer_disk, content};

/// One-way delay of a datagram.
const DELAY: Duration = Duration::from_millis(20);

struct Node {
    client: Client,
    addr: SocketAddr,
    storage: Vec<u8>,
    events: Vec<Event>,
    /// TCP connects asked for.
    connects: Vec<(Instant, SocketAddr)>,
    datagrams_sent: usize,
}

/// Clients joined by a UDP network with a delay, optional loss and reordering, and (when
/// `tcp`) a TCP network whose bytes arrive at once.
struct Net {
    nodes: Vec<Node>,
    now: Instant,
    tcp: bool,
    /// (node, conn) -> (node, conn) of the other end of a TCP connection.
    links: BTreeMap<(usize, ConnId), (usize, ConnId)>,
    /// Datagrams on their way: (arrival, order) -> (from, to, bytes).
    flying: BTreeMap<(Instant, u64), (SocketAddr, SocketAddr, Vec<u8>)>,
    order: u64,
    /// Datagrams to these addresses are lost.
    black_holes: BTreeSet<SocketAddr>,
    /// Percent of datagrams lost at random.
    loss_percent: u64,
    /// Up to this much extra delay, at random, which reorders datagrams.
    jitter: Duration,
    rng: Rng,
    lost: usize,
}

impl Net {
    fn new(tcp: bool) -> Self {
        Net {
            nodes: Vec::new(),
            now: Instant::ZERO,
            tcp,
            links: BTreeMap::new(),
            flying: BTreeMap::new(),
            order: 0,
            black_holes: BTreeSet::new(),
            loss_percent: 0,
            jitter: Duration::ZERO,
            rng: Rng::new(99),
            lost: 0,
        }
    }

    /// Adds a client at `addr(last)` with `config`, holding the test torrent (all or none of
    /// it); returns its node and the torrent.
    fn add(&mut self, last: u8, full: bool, config: ClientConfig) -> (usize, TorrentId) {
        let seed = u64::from(last);
        let mut client = Client::new(config, seed);
        client.set_listen_addr(addr(last));
        let id = add_test_torrent(&mut client, HASH, full, Vec::new());
        let storage = if full {
            content(LEN)
        } else {
            vec![0; LEN as usize]
        };
        self.nodes.push(Node {
            client,
            addr: addr(last),
            storage,
            events: Vec::new(),
            connects: Vec::new(),
            datagrams_sent: 0,
        });
        (self.nodes.len() - 1, id)
    }

    fn settle(&mut self) {
        for _ in 0..1_000_000 {
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
                let target = self.nodes.iter().position(|n| n.addr == addr);
                let accepted = target
                    .filter(|_| self.tcp)
                    .and_then(|j| Some((j, self.nodes[j].client.accept(now, from).ok()?)));
                match accepted {
                    Some((j, theirs)) => {
                        self.links.insert((i, conn), (j, theirs));
                        self.links.insert((j, theirs), (i, conn));
                        self.nodes[i].client.handle_connected(now, conn);
                    }
                    None => self.nodes[i]
                        .client
                        .handle_connect_failed(now, conn, "refused".into()),
                }
            }
            Output::Transmit { conn, bytes } => {
                self.nodes[i].client.handle_sent(now, conn, bytes.len());
                if let Some(&(j, theirs)) = self.links.get(&(i, conn)) {
                    self.nodes[j].client.handle_bytes(now, theirs, &bytes);
                }
            }
            Output::Close { conn, .. } => {
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
            Output::Datagram { to, bytes } => {
                self.nodes[i].datagrams_sent += 1;
                if self.black_holes.contains(&to) || self.rng.below(100) < self.loss_percent {
                    self.lost += 1;
                    return;
                }
                let jitter_us = self.jitter.as_micros() as u64;
                let extra = if jitter_us > 0 {
                    self.rng.below(jitter_us)
                } else {
                    0
                };
                let at = now + DELAY + Duration::from_micros(extra);
                self.order += 1;
                let from = self.nodes[i].addr;
                self.flying.insert((at, self.order), (from, to, bytes));
            }
            Output::Announce { .. } => {}
            Output::Event(e) => self.nodes[i].events.push(e),
        }
    }

    /// Runs the network until `until` or until `done` holds (checked after every step).
    fn run_until(&mut self, until: Instant, mut done: impl FnMut(&Net) -> bool) {
        self.settle();
        for _ in 0..10_000_000 {
            if done(self) {
                return;
            }
            let timer = self
                .nodes
                .iter()
                .filter_map(|n| n.client.poll_timeout())
                .min();
            let arrival = self.flying.keys().next().map(|(at, _)| *at);
            let next = [timer, arrival].into_iter().flatten().min();
            match next {
                Some(at) if at <= until => {
                    self.now = self.now.max(at);
                    let now = self.now;
                    while let Some(entry) = self.flying.first_entry()
                        && entry.key().0 <= now
                    {
                        let (from, to, bytes) = entry.remove();
                        if let Some(j) = self.nodes.iter().position(|n| n.addr == to) {
                            self.nodes[j].client.handle_datagram(now, from, &bytes);
                            self.settle();
                        }
                    }
                    for n in &mut self.nodes {
                        if n.client.poll_timeout().is_some_and(|t| t <= now) {
                            n.client.handle_timeout(now);
                        }
                    }
                    self.settle();
                }
                _ => {
                    self.now = until;
                    return;
                }
            }
        }
        panic!("the network never went quiet");
    }

    fn complete(&self, i: usize, id: TorrentId) -> bool {
        self.nodes[i]
            .client
            .torrent(id)
            .is_some_and(Torrent::is_complete)
    }
}

fn config(transports: &[Transport]) -> ClientConfig {
    ClientConfig {
        transports: transports.to_vec(),
        ..ClientConfig::default()
    }
}

/// A seeder at `addr(1)` and a leecher at `addr(2)` told of it, each with its config; the
/// network runs until the leecher completes or two minutes pass.
fn pair(net: &mut Net, seeder: ClientConfig, leecher: ClientConfig) -> (usize, TorrentId) {
    net.add(1, true, seeder);
    let (l, lid) = net.add(2, false, leecher);
    net.nodes[l]
        .client
        .add_peers(Instant::ZERO, lid, PeerSource::Direct, &[addr(1)]);
    net.run_until(secs(120), |n| n.complete(l, lid));
    (l, lid)
}

/// The connections of node `i` open now, with their transports.
fn open_transports(net: &Net, i: usize) -> Vec<Transport> {
    let c = &net.nodes[i].client;
    c.conns
        .iter()
        .filter(|(_, info)| matches!(info.state, ConnState::Open))
        .map(|(_, info)| info.transport)
        .collect()
}

#[test]
fn two_clients_wired_only_by_datagrams_complete_over_utp() {
    // Proves a whole download runs over uTP inside the clients: no TCP connect is ever asked
    // for, the bytes arrive identical, and the connection is uTP on both ends.
    let mut net = Net::new(false);
    let utp = config(&[Transport::Utp, Transport::Tcp]);
    let (l, lid) = pair(&mut net, utp.clone(), utp);
    assert!(net.complete(l, lid));
    assert_eq!(net.nodes[l].storage, content(LEN));
    assert!(
        net.nodes[l].connects.is_empty(),
        "{:?}",
        net.nodes[l].connects
    );
    assert!(net.nodes.iter().all(|n| n.connects.is_empty()));
    assert_eq!(open_transports(&net, l), vec![Transport::Utp]);
    assert_eq!(open_transports(&net, 0), vec![Transport::Utp]);
    let peers = net.nodes[l].client.peer_list(lid).unwrap();
    assert_eq!(peers.last_transport(&addr(1)), Some(Transport::Utp));
    assert!(net.nodes[0].datagrams_sent as u64 > LEN / 1400);
}

#[test]
fn a_download_over_utp_survives_loss_and_reordering() {
    // Proves the stream stays whole under 2 % random loss and reordering: the leecher completes
    // with identical bytes, and datagrams really were lost.
    let mut net = Net::new(false);
    net.loss_percent = 2;
    net.jitter = Duration::from_millis(30);
    let utp = config(&[Transport::Utp]);
    let (l, lid) = pair(&mut net, utp.clone(), utp);
    assert!(net.complete(l, lid), "lost {}", net.lost);
    assert_eq!(net.nodes[l].storage, content(LEN));
    assert!(net.lost > 5, "lost {}", net.lost);
    assert!(net.nodes[l].connects.is_empty());
}

#[test]
fn a_peer_that_never_answers_utp_is_dialled_over_tcp_within_the_fallback_bound() {
    // Proves the fallback: uTP first, the SYNs vanish, and within UTP_CONNECT_TIMEOUT the same
    // dial goes on over TCP, with no backoff, and completes; the peer list remembers TCP.
    let mut net = Net::new(true);
    net.black_holes.insert(addr(1));
    let (l, lid) = pair(
        &mut net,
        config(&[Transport::Tcp]),
        config(&[Transport::Utp, Transport::Tcp]),
    );
    assert!(net.complete(l, lid));
    assert_eq!(net.nodes[l].storage, content(LEN));
    let connects = &net.nodes[l].connects;
    assert_eq!(connects.len(), 1, "{connects:?}");
    assert_eq!(connects[0].1, addr(1));
    assert!(connects[0].0 <= Instant::ZERO + UTP_CONNECT_TIMEOUT);
    assert!(
        net.nodes[l].datagrams_sent >= 2,
        "the SYN went out and was resent"
    );
    assert_eq!(open_transports(&net, l), vec![Transport::Tcp]);
    let peers = net.nodes[l].client.peer_list(lid).unwrap();
    assert_eq!(peers.last_transport(&addr(1)), Some(Transport::Tcp));
    assert_eq!(peers.fails(&addr(1)), Some(0));
    // Next time TCP is first.
    assert_eq!(
        peers.dial_transports(&addr(1), &[Transport::Utp, Transport::Tcp]),
        (Transport::Tcp, Some(Transport::Utp))
    );
}

#[test]
fn with_tcp_only_no_utp_datagram_is_ever_sent() {
    // Proves `[Tcp]` keeps uTP off: the download runs over TCP and neither client sends a
    // datagram (neither runs a DHT).
    let mut net = Net::new(true);
    let tcp = config(&[Transport::Tcp]);
    let (l, lid) = pair(&mut net, tcp.clone(), tcp);
    assert!(net.complete(l, lid));
    assert!(net.nodes.iter().all(|n| n.datagrams_sent == 0));
    assert!(net.nodes[l].client.utp_mux().is_none());
    assert_eq!(net.nodes[l].connects.len(), 1);
}

#[test]
fn a_dial_that_fails_on_every_transport_backs_off_once() {
    // Proves a peer unreachable over both transports counts one failure per dial (not one
    // per transport), after uTP's short timeout and TCP's refusal, and is then left waiting.
    let mut net = Net::new(false);
    net.black_holes.insert(addr(1));
    let (l, lid) = pair(
        &mut net,
        config(&[Transport::Utp]),
        config(&[Transport::Utp, Transport::Tcp]),
    );
    assert!(!net.complete(l, lid));
    let peers = net.nodes[l].client.peer_list(lid).unwrap();
    let connects = &net.nodes[l].connects;
    // Dials at 0, 15, 45 s (backoff 15 s doubling) within two minutes: each a uTP try, then
    // TCP 4 s later.
    assert!((2..=4).contains(&connects.len()), "{connects:?}");
    assert!(
        connects[0].0 == Instant::ZERO + UTP_CONNECT_TIMEOUT,
        "{connects:?}"
    );
    assert_eq!(peers.fails(&addr(1)), Some(connects.len() as u32));
    let failures = net.nodes[l]
        .events
        .iter()
        .filter(|e| matches!(e, Event::ConnectFailed { .. }))
        .count();
    assert_eq!(failures, connects.len());
}

/// Runs a seeder whose torrent takes one peer, and two leechers dialling it, over
/// `transports` on every client; returns the most peers the seeder had at once.
fn peak_peers_of_a_one_peer_seeder(transports: &[Transport]) -> usize {
    let mut net = Net::new(true);
    let mut seeder = config(transports);
    seeder.session.torrent.max_peers = 1;
    let (s, sid) = net.add(1, true, seeder);
    for last in [2, 3] {
        let (l, lid) = net.add(last, false, config(transports));
        net.nodes[l]
            .client
            .add_peers(Instant::ZERO, lid, PeerSource::Direct, &[addr(1)]);
    }
    let mut peak = 0;
    let mut when = Instant::ZERO;
    while when < secs(30) {
        when = when + Duration::from_millis(100);
        net.run_until(when, |_| false);
        let peers = net.nodes[s].client.torrent(sid).unwrap().peer_count();
        peak = peak.max(peers);
    }
    peak
}

#[test]
fn an_incoming_utp_connection_obeys_the_same_peer_limit_as_tcp() {
    // Proves the accept path is shared: a seeder limited to one peer never has two, over uTP
    // as over TCP, and does have one.
    assert_eq!(peak_peers_of_a_one_peer_seeder(&[Transport::Tcp]), 1);
    assert_eq!(peak_peers_of_a_one_peer_seeder(&[Transport::Utp]), 1);
}

#[test]
fn a_pair_that_requires_encryption_completes_over_utp_under_rc4() {
    // Proves MSE runs over uTP unchanged: both require encryption, the download completes
    // over uTP alone, and the connection is RC4.
    let mut net = Net::new(false);
    let mut require = config(&[Transport::Utp]);
    require.session.encryption = Some(Encryption::Require);
    let (l, lid) = pair(&mut net, require.clone(), require);
    assert!(net.complete(l, lid));
    assert_eq!(net.nodes[l].storage, content(LEN));
    assert!(net.nodes[l].connects.is_empty());
    let conn = *net.nodes[l]
        .client
        .conns
        .keys()
        .next()
        .expect("still connected");
    assert_eq!(
        net.nodes[l].client.conn_transport(conn),
        Some(Transport::Utp)
    );
    assert!(net.nodes[l].client.session().is_rc4(conn));
}

#[test]
fn the_dht_and_utp_share_the_udp_socket() {
    // Proves datagrams are sorted by kind: with both clients running a DHT node and uTP on one
    // socket, each node learns the other by KRPC while the download runs over uTP, and no
    // datagram is misrouted (none undecodable as uTP, none dropped as unknown).
    let mut net = Net::new(false);
    let utp = config(&[Transport::Utp]);
    let (s, _) = net.add(1, true, utp.clone());
    let (l, lid) = net.add(2, false, utp);
    for (i, other) in [(s, addr(2)), (l, addr(1))] {
        let id = NodeId([i as u8 + 1; 20]);
        let dht = Dht::new(DhtConfig::default(), id, Rng::new(i as u64));
        let c = &mut net.nodes[i].client;
        c.start_dht(Instant::ZERO, dht, 6881);
        c.dht_bootstrap(Instant::ZERO, vec![other]);
    }
    net.nodes[l]
        .client
        .add_peers(Instant::ZERO, lid, PeerSource::Direct, &[addr(1)]);
    net.run_until(secs(120), |n| n.complete(l, lid));
    assert!(net.complete(l, lid));
    assert_eq!(net.nodes[l].storage, content(LEN));
    for n in &net.nodes {
        assert_eq!(n.client.dht().unwrap().node_count(), 1);
        assert_eq!(n.client.udp_stats().unknown_dropped, 0);
        assert_eq!(n.client.utp_mux().unwrap().stats().undecodable, 0);
        assert!(n.connects.is_empty());
    }
    assert!(
        net.nodes[l]
            .events
            .iter()
            .any(|e| matches!(e, Event::DhtBootstrapped { .. })),
        "{:?}",
        net.nodes[l].events
    );
}

#[test]
fn a_refused_incoming_utp_connection_is_reset_and_its_dial_fails_at_once() {
    // Proves a uTP connection the session refuses on arrival (its connection limit) is answered
    // with ST_RESET, not a handshake and a FIN: the dialler's attempt ends as reset, well before
    // its connect timeout, and counts as a failed connect rather than a short-lived peer.
    let mut net = Net::new(false);
    let mut seeder = config(&[Transport::Utp]);
    seeder.session.max_connections = 1;
    let (s, _) = net.add(1, true, seeder);
    let (first, fid) = net.add(2, false, config(&[Transport::Utp]));
    net.nodes[first]
        .client
        .add_peers(Instant::ZERO, fid, PeerSource::Direct, &[addr(1)]);
    net.run_until(secs(1), |_| false);
    assert_eq!(open_transports(&net, first), vec![Transport::Utp]);
    let (second, sid) = net.add(3, false, config(&[Transport::Utp]));
    let start = net.now;
    net.nodes[second]
        .client
        .add_peers(start, sid, PeerSource::Direct, &[addr(1)]);
    let failed = |n: &Net| {
        n.nodes[second]
            .events
            .iter()
            .any(|e| matches!(e, Event::ConnectFailed { .. }))
    };
    net.run_until(start + UTP_CONNECT_TIMEOUT / 2, failed);
    let failures: Vec<_> = net.nodes[second]
        .events
        .iter()
        .filter_map(|e| match e {
            Event::ConnectFailed {
                error, transport, ..
            } => Some((error.clone(), *transport)),
            _ => None,
        })
        .collect();
    assert_eq!(
        failures,
        vec![("uTP connect reset".to_owned(), Transport::Utp)]
    );
    assert!(open_transports(&net, second).is_empty());
    assert_eq!(
        net.nodes[s].client.utp_mux().unwrap().stats().resets_sent,
        1
    );
}

#[test]
fn data_packets_that_arrive_together_are_acknowledged_together() {
    // Proves the deferred ACK: uTP data packets handed over in one batch (`handle_datagrams`)
    // are answered only after the last of them, so every packet back acknowledges the whole
    // batch and at most one of them is a bare ST_STATE; one at a time, each got its own.
    use crate::utp::packet::{Packet, PacketType};
    let ty = |bytes: &[u8]| Packet::decode(bytes).ok().map(|p| p.header.ty);
    let mut net = Net::new(false);
    let utp = config(&[Transport::Utp]);
    let (s, _) = net.add(1, true, utp.clone());
    let (l, lid) = net.add(2, false, utp);
    net.nodes[l]
        .client
        .add_peers(Instant::ZERO, lid, PeerSource::Direct, &[addr(1)]);
    let to_leecher = |n: &Net| {
        n.flying
            .values()
            .filter(|(_, to, b)| *to == addr(2) && ty(b) == Some(PacketType::Data))
            .count()
    };
    net.run_until(secs(60), |n| to_leecher(n) >= 8);
    assert!(
        to_leecher(&net) >= 8,
        "the seeder never had 8 packets in flight"
    );
    // Everything on its way to the leecher arrives now, in one batch.
    let keys: Vec<_> = net
        .flying
        .iter()
        .filter(|(_, (_, to, _))| *to == addr(2))
        .map(|(k, _)| *k)
        .collect();
    let batch: Vec<(SocketAddr, Vec<u8>)> = keys
        .iter()
        .map(|k| {
            let (from, _, bytes) = net.flying.remove(k).unwrap();
            (from, bytes)
        })
        .collect();
    let last_data = batch
        .iter()
        .filter_map(|(_, b)| Packet::decode(b).ok())
        .filter(|p| p.header.ty == PacketType::Data)
        .map(|p| p.header.seq_nr)
        .next_back()
        .unwrap();
    let now = net.now;
    net.nodes[l]
        .client
        .handle_datagrams(now, batch.iter().map(|(from, b)| (*from, &b[..])));
    let mut answers = Vec::new();
    while let Some(out) = net.nodes[l].client.poll_output() {
        if let Output::Datagram { to, bytes } = &out
            && *to == addr(1)
        {
            answers.push(
                Packet::decode(bytes)
                    .map(|p| (p.header.ty, p.header.ack_nr))
                    .unwrap(),
            );
        }
        net.carry(l, out);
    }
    assert!(!answers.is_empty());
    assert!(
        answers.iter().all(|&(_, ack)| ack == last_data),
        "{answers:?}, last data {last_data:?}"
    );
    let bare_acks = answers
        .iter()
        .filter(|(ty, _)| *ty == PacketType::State)
        .count();
    assert!(bare_acks <= 1, "{answers:?}");
    // The download goes on from there.
    net.run_until(secs(120), |n| n.complete(l, lid));
    assert!(net.complete(l, lid));
    assert_eq!(net.nodes[s].storage, net.nodes[l].storage);
}

#[test]
fn a_dial_that_finds_every_utp_socket_taken_fails_at_once_and_frees_its_slot() {
    // Proves a uTP-only dial that finds the mux full fails at once, as a refused connect, and
    // gives its half-open slot back: the client's count equals the dials still under way.
    let mut net = Net::new(false);
    net.black_holes.insert(addr(1));
    net.add(1, true, config(&[Transport::Utp]));
    net.add(3, true, config(&[Transport::Utp]));
    let leecher = ClientConfig {
        max_utp_sockets: 1,
        ..config(&[Transport::Utp])
    };
    let (l, lid) = net.add(2, false, leecher);
    net.nodes[l]
        .client
        .add_peers(Instant::ZERO, lid, PeerSource::Direct, &[addr(1), addr(3)]);
    net.run_until(secs(1), |_| false);
    let full: Vec<_> = net.nodes[l]
        .events
        .iter()
        .filter_map(|e| match e {
            Event::ConnectFailed {
                addr,
                error,
                transport,
                ..
            } if error == "too many uTP sockets" => Some((*addr, *transport)),
            _ => None,
        })
        .collect();
    assert_eq!(full.len(), 1, "{:?}", net.nodes[l].events);
    assert_eq!(full[0].1, Transport::Utp);
    let client = &net.nodes[l].client;
    let dialing = client
        .conns
        .values()
        .filter(|info| matches!(info.state, ConnState::Dialing { .. }))
        .count();
    assert_eq!(client.half_open, dialing);
    assert_eq!(client.sides[&lid].dialing, dialing);
}
