//! An in-memory swarm of [`Dht`] nodes: datagrams delivered by a deterministic loop with a
//! simulated clock (latency, optional loss). Proves that every node bootstraps, that peers
//! announced by some nodes are found by all the others, that the traffic stays bounded, and that
//! the same seed gives the same transcript.

use core::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use sha1::{Digest, Sha1};

use super::*;
use crate::metainfo::InfoHash;
use crate::rng::Rng;
use crate::time::Instant;

struct Swarm {
    nodes: Vec<Dht>,
    addrs: Vec<SocketAddr>,
    index: BTreeMap<SocketAddr, usize>,
    /// (delivery time, sequence) -> (from, to, bytes).
    network: BTreeMap<(Instant, u64), (usize, SocketAddr, Vec<u8>)>,
    timers: BTreeSet<(Instant, usize)>,
    timer_of: Vec<Option<Instant>>,
    events: Vec<Vec<DhtEvent>>,
    now: Instant,
    seq: u64,
    rng: Rng,
    loss_per_mille: u64,
    datagrams: u64,
    transcript: Sha1,
}

impl Swarm {
    fn new(n: usize, seed: u64, loss_per_mille: u64) -> Swarm {
        Swarm::with_family(n, seed, loss_per_mille, false)
    }

    /// `n` nodes on IPv4 addresses (10.0.x.y), or on IPv6 ones (fd00::x) with BEP 32 enabled.
    fn with_family(n: usize, seed: u64, loss_per_mille: u64, ipv6: bool) -> Swarm {
        let mut rng = Rng::new(seed);
        let mut nodes = Vec::new();
        let mut addrs = Vec::new();
        for i in 0..n {
            let mut id = [0u8; 20];
            rng.fill(&mut id);
            let config = DhtConfig {
                ipv6,
                ..DhtConfig::default()
            };
            nodes.push(Dht::new(config, NodeId(id), rng.fork(i as u64)));
            if ipv6 {
                let ip = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, i as u16 + 1);
                addrs.push(SocketAddr::from((ip, 6881)));
            } else {
                let ip = Ipv4Addr::new(10, 0, (i / 250) as u8, (i % 250 + 1) as u8);
                addrs.push(SocketAddr::from((ip, 6881)));
            }
        }
        let index = addrs.iter().enumerate().map(|(i, a)| (*a, i)).collect();
        Swarm {
            nodes,
            addrs,
            index,
            network: BTreeMap::new(),
            timers: BTreeSet::new(),
            timer_of: vec![None; n],
            events: vec![Vec::new(); n],
            now: Instant::ZERO,
            seq: 0,
            rng,
            loss_per_mille,
            datagrams: 0,
            transcript: Sha1::new(),
        }
    }

    /// Drains node `i`'s outputs into the network and its event log, and re-arms its timer.
    fn flush(&mut self, i: usize) {
        while let Some(t) = self.nodes[i].poll_transmit() {
            self.datagrams += 1;
            self.transcript.update(self.now.as_micros().to_be_bytes());
            self.transcript.update(self.addrs[i].to_string());
            self.transcript.update(t.to.to_string());
            self.transcript.update(&t.bytes);
            assert!(t.bytes.len() <= 1500, "datagram of {} bytes", t.bytes.len());
            if self.rng.below(1000) < self.loss_per_mille {
                continue;
            }
            let latency = Duration::from_millis(10 + self.rng.below(40));
            self.seq += 1;
            self.network
                .insert((self.now + latency, self.seq), (i, t.to, t.bytes));
        }
        while let Some(e) = self.nodes[i].poll_event() {
            self.events[i].push(e);
        }
        if let Some(old) = self.timer_of[i].take() {
            self.timers.remove(&(old, i));
        }
        if let Some(at) = self.nodes[i].poll_timeout() {
            self.timers.insert((at, i));
            self.timer_of[i] = Some(at);
        }
    }

    fn command(&mut self, i: usize, f: impl FnOnce(&mut Dht, Instant)) {
        f(&mut self.nodes[i], self.now);
        self.flush(i);
    }

    /// Runs the loop until `until` (simulated), or until no work is left.
    fn run_until(&mut self, until: Instant) {
        for _ in 0..10_000_000u64 {
            let next_packet = self.network.keys().next().copied();
            let next_timer = self.timers.iter().next().copied();
            let packet_first = match (next_packet, next_timer) {
                (None, None) => break,
                (Some((t, _)), Some((u, _))) => t <= u,
                (Some(_), None) => true,
                (None, Some(_)) => false,
            };
            if packet_first {
                let key = next_packet.unwrap();
                if key.0 > until {
                    break;
                }
                let (from, to, bytes) = self.network.remove(&key).unwrap();
                self.now = self.now.max(key.0);
                if let Some(&j) = self.index.get(&to) {
                    let from = self.addrs[from];
                    self.nodes[j].handle_datagram(self.now, from, &bytes);
                    self.flush(j);
                }
            } else {
                let (at, i) = next_timer.unwrap();
                if at > until {
                    break;
                }
                self.now = self.now.max(at);
                self.nodes[i].handle_timeout(self.now);
                self.flush(i);
                assert!(
                    self.nodes[i].poll_timeout().is_none_or(|t| t > self.now),
                    "node {i} wants a timeout in the past after handle_timeout"
                );
            }
        }
        self.now = self.now.max(until);
    }

    fn check_bounds(&self) {
        for d in &self.nodes {
            let c = d.config();
            assert!(d.queries_in_flight() <= c.max_queries_in_flight);
            assert!(d.lookup_count() <= c.max_lookups);
            for v6 in [false, true] {
                assert!(d.routing_table(v6).bucket_count() <= MAX_BUCKETS);
                assert!(d.routing_table(v6).max_bucket_len() <= c.k);
            }
        }
    }
}

struct Outcome {
    transcript: [u8; 20],
    bootstrap_datagrams: u64,
    announce_datagrams: u64,
    lookup_datagrams: u64,
}

/// Bootstraps `n` nodes from 3, has 10 announce one info hash, then every other node looks it
/// up, and checks each found all 10 announcers.
fn scenario(n: usize, seed: u64, loss_per_mille: u64) -> Outcome {
    scenario_in(Swarm::new(n, seed, loss_per_mille))
}

fn scenario_in(mut s: Swarm) -> Outcome {
    let n = s.nodes.len();
    let bootstrap: Vec<SocketAddr> = s.addrs[..3].to_vec();
    // Nodes join 50 ms apart.
    for i in 0..n {
        s.run_until(Instant::from_micros(i as u64 * 50_000));
        for b in &bootstrap {
            if *b != s.addrs[i] {
                s.command(i, |d, now| d.add_node(now, *b));
            }
        }
        s.command(i, |d, now| d.bootstrap(now));
    }
    let settle = s.now + Duration::from_secs(30);
    s.run_until(settle);
    s.check_bounds();
    for (i, events) in s.events.iter().enumerate() {
        assert!(
            events
                .iter()
                .any(|e| matches!(e, DhtEvent::Bootstrapped { .. })),
            "node {i} did not bootstrap: {} nodes",
            s.nodes[i].node_count()
        );
    }
    let bootstrap_datagrams = s.datagrams;

    let info_hash = InfoHash([0x5a; 20]);
    let announcers: Vec<usize> = (0..10).map(|j| 3 + j * (n - 3) / 10).collect();
    let mut expected = BTreeSet::new();
    for (j, &i) in announcers.iter().enumerate() {
        let port = 7000 + j as u16;
        expected.insert(SocketAddr::new(s.addrs[i].ip(), port));
        s.command(i, |d, now| {
            d.announce(now, info_hash, Some(port));
        });
    }
    let settle = s.now + Duration::from_secs(30);
    s.run_until(settle);
    for &i in &announcers {
        let done = s.events[i].iter().find_map(|e| match e {
            DhtEvent::LookupDone { announced, .. } => Some(*announced),
            _ => None,
        });
        assert!(done.is_some_and(|a| a >= 1), "announcer {i} done: {done:?}");
    }
    let announce_datagrams = s.datagrams - bootstrap_datagrams;

    let mut lookups = BTreeMap::new();
    for i in 0..n {
        if !announcers.contains(&i) {
            s.events[i].clear();
            let mut id = None;
            s.command(i, |d, now| id = Some(d.get_peers(now, info_hash)));
            lookups.insert(i, id.unwrap());
        }
    }
    let settle = s.now + Duration::from_secs(30);
    s.run_until(settle);
    s.check_bounds();
    for (&i, &lookup) in &lookups {
        let mut found = BTreeSet::new();
        let mut done = false;
        for e in &s.events[i] {
            match e {
                DhtEvent::Peers {
                    lookup: l, peers, ..
                } if *l == lookup => {
                    for p in peers {
                        assert!(found.insert(*p), "node {i}: peer {p} reported twice");
                    }
                }
                DhtEvent::LookupDone {
                    lookup: l, peers, ..
                } if *l == lookup => {
                    assert_eq!(*peers, found.len());
                    done = true;
                }
                _ => {}
            }
        }
        assert!(done, "node {i}: lookup not done");
        assert!(
            expected.is_subset(&found),
            "node {i} found {} of the 10 announcers",
            expected.intersection(&found).count()
        );
    }
    let lookup_datagrams = s.datagrams - bootstrap_datagrams - announce_datagrams;
    Outcome {
        transcript: s.transcript.finalize().into(),
        bootstrap_datagrams,
        announce_datagrams,
        lookup_datagrams,
    }
}

fn report(n: usize, o: &Outcome) {
    println!(
        "{n} nodes: {} datagrams to bootstrap, {} to announce (10 nodes), {} for {} lookups",
        o.bootstrap_datagrams,
        o.announce_datagrams,
        o.lookup_datagrams,
        n - 10
    );
}

#[test]
fn swarm_of_50_finds_every_announcer_deterministically() {
    // Proves bootstrap, announce and get_peers work across 50 nodes, traffic is bounded, and two
    // runs with one seed give the same datagrams in the same order.
    let a = scenario(50, 7, 0);
    report(50, &a);
    let n = 50u64;
    assert!(a.bootstrap_datagrams < n * 40, "{}", a.bootstrap_datagrams);
    assert!(a.announce_datagrams < 10 * 60, "{}", a.announce_datagrams);
    assert!(a.lookup_datagrams < (n - 10) * 40, "{}", a.lookup_datagrams);
    let b = scenario(50, 7, 0);
    assert_eq!(
        a.transcript, b.transcript,
        "same seed, different transcript"
    );
    let c = scenario(50, 8, 0);
    assert_ne!(a.transcript, c.transcript);
}

#[test]
fn swarm_of_50_with_loss_still_finds_every_announcer() {
    // Proves timeouts and retries through other nodes carry lookups through 5% datagram loss.
    let a = scenario(50, 11, 50);
    report(50, &a);
}

#[test]
fn swarm_of_200_finds_every_announcer() {
    // Proves the same at 200 nodes, where buckets split and lookups take several hops.
    let a = scenario(200, 3, 0);
    report(200, &a);
    let n = 200u64;
    assert!(a.bootstrap_datagrams < n * 50, "{}", a.bootstrap_datagrams);
    assert!(a.lookup_datagrams < (n - 10) * 40, "{}", a.lookup_datagrams);
}

#[test]
fn idle_swarm_keeps_its_tables_with_bounded_refresh_traffic() {
    // Proves that over an idle hour (bucket refreshes every 15 minutes, token rotations,
    // maintenance) every node keeps a populated table, the clock always moves forward, and the
    // background traffic stays small.
    let n = 50;
    let mut s = Swarm::new(n, 21, 0);
    let bootstrap: Vec<SocketAddr> = s.addrs[..3].to_vec();
    for i in 0..n {
        s.run_until(Instant::from_micros(i as u64 * 50_000));
        for b in &bootstrap {
            if *b != s.addrs[i] {
                s.command(i, |d, now| d.add_node(now, *b));
            }
        }
        s.command(i, |d, now| d.bootstrap(now));
    }
    s.run_until(s.now + Duration::from_secs(30));
    let before = s.datagrams;
    let start = s.now;
    s.run_until(start + Duration::from_secs(3600));
    s.check_bounds();
    let idle = s.datagrams - before;
    println!("{n} nodes idle for an hour: {idle} datagrams");
    for (i, d) in s.nodes.iter().enumerate() {
        assert!(d.node_count() >= 8, "node {i} has {} nodes", d.node_count());
    }
    // Each node refreshes a few buckets per 15 minutes, a lookup of about 20 datagrams each
    // (measured: about 200 datagrams per node per hour).
    assert!(idle < n as u64 * 400, "{idle}");
}

#[test]
fn ipv6_swarm_finds_every_announcer() {
    // Proves the BEP 32 path: nodes on IPv6 addresses fill their IPv6 tables from `nodes6` and
    // find IPv6 peers.
    let a = scenario_in(Swarm::with_family(50, 5, 0, true));
    report(50, &a);
}

#[test]
fn saved_state_bootstraps_a_restarted_node() {
    // Proves a node's saved nodes (Dht::nodes -> save_state -> load_state) are enough to
    // bootstrap it again after a restart, without the bootstrap nodes.
    let n = 30;
    let mut s = Swarm::new(n, 9, 0);
    let bootstrap: Vec<SocketAddr> = s.addrs[..3].to_vec();
    for i in 0..n {
        s.run_until(Instant::from_micros(i as u64 * 50_000));
        for b in &bootstrap {
            if *b != s.addrs[i] {
                s.command(i, |d, now| d.add_node(now, *b));
            }
        }
        s.command(i, |d, now| d.bootstrap(now));
    }
    s.run_until(s.now + Duration::from_secs(30));
    let victim = 20;
    let saved = save_state(s.nodes[victim].id(), &s.nodes[victim].nodes());
    let (id, nodes) = load_state(&saved).unwrap();
    assert_eq!(id, s.nodes[victim].id());
    assert!(nodes.len() >= 8);
    s.nodes[victim] = Dht::new(DhtConfig::default(), id, Rng::new(99));
    s.events[victim].clear();
    for (_, addr) in nodes.iter().filter(|(_, a)| !bootstrap.contains(a)) {
        s.command(victim, |d, now| d.add_node(now, *addr));
    }
    s.command(victim, |d, now| d.bootstrap(now));
    s.run_until(s.now + Duration::from_secs(30));
    assert!(
        s.events[victim]
            .iter()
            .any(|e| matches!(e, DhtEvent::Bootstrapped { .. }))
    );
    assert!(s.nodes[victim].node_count() >= 8);
}
