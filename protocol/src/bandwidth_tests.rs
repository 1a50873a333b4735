//! Rate limits in whole swarms, in simulated time: a limited download or upload moves its
//! limit (within 5 % over every 10 s window once under way), requests are paced rather than
//! burst, and a session's global limit holds over the sum of its torrents.

use core::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use sha1::{Digest, Sha1};

use crate::bandwidth::TokenBucket;
use crate::harness::{NodeSpec, Swarm, answer_disk, content};
use crate::io::ConnId;
use crate::metainfo::{InfoHash, TorrentLayout};
use crate::session::{Output, Session, SessionConfig, TorrentId};
use crate::time::Instant;
use crate::torrent::{Bitfield, TorrentStats};

const MIB: u64 = 1 << 20;
const PIECE: u64 = 256 * 1024;
/// Link speed of every node: far above the limits, so only the limits bind.
const LINK: u64 = 100 * MIB;
/// Sampling step of the byte counters.
const STEP: Duration = Duration::from_millis(100);
/// The window the guarantee is about.
const WINDOW: Duration = Duration::from_secs(10);
/// Time for a transfer to get under way before the guarantee applies.
const WARM_UP: Duration = Duration::from_secs(3);

/// `d` before `t` (the clock starts at zero).
fn before(t: Instant, d: Duration) -> Instant {
    Instant::from_micros(t.as_micros().saturating_sub(d.as_micros() as u64))
}

fn spec(seed: bool) -> NodeSpec {
    NodeSpec {
        seed,
        upload_bytes_per_s: LINK,
        corrupt: false,
    }
}

/// A swarm of `total` bytes, one node per entry of `seeds` (whether it seeds), node `limited`
/// given the `download` and `upload` limits, every pair connected.
fn limited_swarm(
    total: u64,
    seeds: &[bool],
    limited: usize,
    download: Option<u64>,
    upload: Option<u64>,
) -> Swarm {
    let specs: Vec<NodeSpec> = seeds.iter().map(|s| spec(*s)).collect();
    let mut swarm = Swarm::new(7, PIECE, total, &specs, Duration::from_millis(25));
    swarm.nodes[limited]
        .torrent
        .set_rate_limits(Instant::ZERO, download, upload);
    swarm.connect_all();
    swarm
}

/// Runs `swarm` in steps of `step` until the leecher completes (or `limit` passes), sampling
/// `counter` after each step: `(time, value)`, starting with time zero.
fn sample(
    swarm: &mut Swarm,
    step: Duration,
    limit: Duration,
    counter: impl Fn(&Swarm) -> u64,
) -> Vec<(Instant, u64)> {
    let mut samples = vec![(Instant::ZERO, counter(swarm))];
    let mut t = Duration::ZERO;
    while swarm.nodes[1].completed_at.is_none() && t < limit {
        t += step;
        swarm.run(t, 10_000_000);
        samples.push((Instant::ZERO + t, counter(swarm)));
    }
    samples
}

/// Asserts that over every [`WINDOW`] within `[from, to]` the counter grew by the limit's worth
/// within 5 %; returns how many windows were checked (the caller asserts there were some).
fn assert_windows(samples: &[(Instant, u64)], rate: u64, from: Instant, to: Instant) -> usize {
    let expected = rate as f64 * WINDOW.as_secs_f64();
    let mut checked = 0;
    for (i, &(t0, b0)) in samples.iter().enumerate() {
        let Some(&(t1, b1)) = samples[i..].iter().find(|(t, _)| *t >= t0 + WINDOW) else {
            break;
        };
        if t0 < from || t1 > to {
            continue;
        }
        let moved = (b1 - b0) as f64;
        assert!(
            (moved - expected).abs() <= expected * 0.05,
            "{t0:?}..{t1:?}: {moved} bytes, limit {expected}"
        );
        checked += 1;
    }
    checked
}

/// Runs `swarm` (for at most `limit`) and asserts that node `node`'s counter (`count` of its
/// stats) grew by `rate` within 5 % over every 10 s window from the warm-up to a second before
/// the leecher (node 1) completes or the run ends, and that more than `min_windows` windows were
/// checked. Returns when the leecher completed.
fn assert_limit_holds(
    swarm: &mut Swarm,
    node: usize,
    count: fn(TorrentStats) -> u64,
    rate: u64,
    limit: Duration,
    min_windows: usize,
) -> Option<Instant> {
    let samples = sample(swarm, STEP, limit, |s| count(s.nodes[node].torrent.stats()));
    let done = swarm.nodes[1].completed_at;
    let end = done.map_or(Instant::ZERO + limit, |d| before(d, Duration::from_secs(1)));
    let windows = assert_windows(&samples, rate, Instant::ZERO + WARM_UP, end);
    assert!(windows > min_windows, "{windows} windows checked");
    done
}

#[test]
fn download_limit_holds_over_every_ten_second_window() {
    // Proves a leecher limited to 1 MiB/s downloads 1 MiB/s within 5 % over every 10 s window
    // once under way, from a seeder that could send 100 times faster.
    let mut swarm = limited_swarm(24 * MIB, &[true, false], 1, Some(MIB), None);
    let minute = Duration::from_secs(60);
    let done = assert_limit_holds(&mut swarm, 1, |s| s.downloaded, MIB, minute, 50);
    let done = done.expect("the download completes");
    assert!(
        done >= Instant::ZERO + Duration::from_secs(23),
        "too fast: {done:?}"
    );
}

#[test]
fn upload_limit_holds_over_every_ten_second_window() {
    // Proves a seeder limited to 1 MiB/s uploads 1 MiB/s within 5 % over every 10 s window once
    // under way, to a leecher that asks for as much as it can get.
    let mut swarm = limited_swarm(24 * MIB, &[true, false], 0, None, Some(MIB));
    let minute = Duration::from_secs(60);
    let done = assert_limit_holds(&mut swarm, 0, |s| s.uploaded, MIB, minute, 50);
    assert!(done.is_some(), "the download completes");
}

#[test]
fn requests_are_paced_not_burst() {
    // Proves requests are spread over time: between any two instants the bytes requested differ
    // from the limit's worth by at most the bucket depth (no burst above it, no gap below it).
    let rate = MIB;
    let depth = TokenBucket::depth_for(rate) as f64;
    let mut swarm = limited_swarm(12 * MIB, &[true, false], 1, Some(rate), None);
    let samples = sample(
        &mut swarm,
        Duration::from_millis(10),
        Duration::from_secs(60),
        |s| {
            let t = &s.nodes[1].torrent;
            let outstanding: u64 = t
                .conns()
                .filter_map(|c| t.peer(c))
                .flat_map(|p| p.outstanding())
                .map(|b| u64::from(b.len))
                .sum();
            t.stats().downloaded + outstanding
        },
    );
    let done = swarm.nodes[1].completed_at.expect("the download completes");
    let end = before(done, Duration::from_secs(1));
    let paced: Vec<_> = samples.iter().filter(|(t, _)| *t <= end).collect();
    // From the start: never more than a full bucket above the rate.
    for (i, (t0, b0)) in paced.iter().enumerate() {
        for (t1, b1) in &paced[i + 1..] {
            let allowed = rate as f64 * (*t1 - *t0).as_secs_f64();
            let asked = (b1 - b0) as f64;
            assert!(
                asked <= allowed + depth,
                "{t0:?}..{t1:?}: burst of {asked} bytes"
            );
            if *t0 >= Instant::ZERO + WARM_UP {
                assert!(
                    asked >= allowed - depth,
                    "{t0:?}..{t1:?}: gap, {asked} bytes"
                );
            }
        }
    }
    assert!(paced.len() > 1000, "{} samples", paced.len());
}

#[test]
fn a_limited_download_is_shared_among_its_peers() {
    // Proves the tokens go round the peers rather than to the lowest connection handle: two
    // seeders each send a fair part of a leecher's limited download, and the sum keeps to it.
    let mut swarm = limited_swarm(16 * MIB, &[true, false, true], 1, Some(MIB), None);
    let minute = Duration::from_secs(60);
    let done = assert_limit_holds(&mut swarm, 1, |s| s.downloaded, MIB, minute, 10);
    assert!(done.is_some(), "the download completes");
    let total = swarm.nodes[1].torrent.stats().downloaded;
    for seeder in [0, 2] {
        let sent = swarm.nodes[seeder].torrent.stats().uploaded;
        assert!(sent >= total / 3, "seeder {seeder} sent {sent} of {total}");
    }
}

#[test]
fn a_limited_upload_is_shared_among_its_peers() {
    // Proves a limited seeder's tokens go round its peers: each of two leechers gets a fair part
    // of its upload, and the upload keeps to the limit.
    let mut swarm = limited_swarm(16 * MIB, &[true, false, false], 0, None, Some(MIB));
    let limit = Duration::from_secs(15);
    assert_limit_holds(&mut swarm, 0, |s| s.uploaded, MIB, limit, 10);
    let seeder = &swarm.nodes[0].torrent;
    let per_peer: Vec<u64> = seeder
        .conns()
        .filter_map(|c| seeder.peer(c))
        .map(|p| p.totals().1)
        .collect();
    let total: u64 = per_peer.iter().sum();
    assert_eq!(per_peer.len(), 2);
    for sent in per_peer {
        assert!(sent >= total / 3, "{sent} of {total}");
    }
}

/// Two sessions joined by links with latency: a minimal event-driven driver for session tests.
struct Net {
    sessions: [Session; 2],
    /// Each session's storage, per torrent.
    storage: [BTreeMap<TorrentId, Vec<u8>>; 2],
    layouts: BTreeMap<TorrentId, TorrentLayout>,
    /// `(session, conn)` to the other end.
    links: BTreeMap<(usize, ConnId), (usize, ConnId)>,
    deliveries: BTreeMap<(Instant, u64), (usize, ConnId, Bytes)>,
    seq: u64,
    now: Instant,
}

impl Net {
    const LATENCY: Duration = Duration::from_millis(25);

    /// Session 0 seeds and session 1 leeches one torrent of each size (same ids in both).
    fn new(sizes: &[u64]) -> Net {
        let mut sessions = [
            Session::new(SessionConfig::default(), 1),
            Session::new(SessionConfig::default(), 2),
        ];
        let mut storage = [BTreeMap::new(), BTreeMap::new()];
        let mut layouts = BTreeMap::new();
        for (i, &size) in sizes.iter().enumerate() {
            let layout = TorrentLayout::new(PIECE, &[size]).unwrap();
            let data = content(size);
            let hashes: Vec<[u8; 20]> = data
                .chunks(PIECE as usize)
                .map(|c| Sha1::digest(c).into())
                .collect();
            let hash = InfoHash([i as u8 + 1; 20]);
            for (side, session) in sessions.iter_mut().enumerate() {
                let have = if side == 0 {
                    Bitfield::full(layout.piece_count())
                } else {
                    Bitfield::new(layout.piece_count())
                };
                let id = session
                    .add_torrent(hash, layout.clone(), hashes.clone(), have)
                    .unwrap();
                let bytes = if side == 0 {
                    data.clone()
                } else {
                    vec![0; size as usize]
                };
                storage[side].insert(id, bytes);
                layouts.insert(id, layout.clone());
            }
        }
        Net {
            sessions,
            storage,
            layouts,
            links: BTreeMap::new(),
            deliveries: BTreeMap::new(),
            seq: 0,
            now: Instant::ZERO,
        }
    }

    /// The leecher opens one connection per torrent to the seeder.
    fn connect(&mut self) {
        let addr = |last| SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 2, 0, last)), 6881);
        let ids: Vec<TorrentId> = self.layouts.keys().copied().collect();
        for id in ids {
            let (out, inc) = (ConnId(u64::from(id.0) + 1), ConnId(u64::from(id.0) + 101));
            self.sessions[1]
                .connect(self.now, id, out, addr(1))
                .unwrap();
            self.sessions[0].accept(self.now, inc, addr(2)).unwrap();
            self.links.insert((1, out), (0, inc));
            self.links.insert((0, inc), (1, out));
            self.drain(1);
            self.drain(0);
        }
    }

    fn drain(&mut self, side: usize) {
        for _ in 0..1_000_000 {
            let Some(out) = self.sessions[side].poll_output() else {
                return;
            };
            let now = self.now;
            match out {
                Output::Transmit { conn, bytes } => {
                    self.sessions[side].handle_sent(now, conn, bytes.len());
                    if let Some(&(to, remote)) = self.links.get(&(side, conn)) {
                        self.seq += 1;
                        self.deliveries
                            .insert((now + Self::LATENCY, self.seq), (to, remote, bytes));
                    }
                }
                Output::Disk { torrent, op } => {
                    let storage = self.storage[side].get_mut(&torrent).expect("known torrent");
                    let done = answer_disk(&self.layouts[&torrent], storage, false, op);
                    self.sessions[side].handle_disk(now, torrent, done);
                }
                Output::Close { .. } | Output::Event { .. } => {}
            }
        }
        panic!("session {side} produced outputs without end");
    }

    /// Runs until `until`.
    fn run(&mut self, until: Instant) {
        for _ in 0..10_000_000 {
            let delivery = self.deliveries.keys().next().map(|(t, _)| *t);
            let timers = self.sessions.iter().filter_map(Session::poll_timeout);
            let Some(next) = delivery.into_iter().chain(timers).min() else {
                return;
            };
            if next > until {
                return;
            }
            self.now = self.now.max(next);
            while let Some(entry) = self.deliveries.first_entry() {
                if entry.key().0 > self.now {
                    break;
                }
                let (side, conn, bytes) = entry.remove();
                self.sessions[side].handle_bytes(self.now, conn, &bytes);
                self.drain(side);
            }
            for side in 0..2 {
                if self.sessions[side]
                    .poll_timeout()
                    .is_some_and(|t| t <= self.now)
                {
                    self.sessions[side].handle_timeout(self.now);
                    self.drain(side);
                }
            }
        }
        panic!("no progress: livelock?");
    }

    fn downloaded(&self, id: TorrentId) -> u64 {
        self.sessions[1]
            .torrent(id)
            .expect("known")
            .stats()
            .downloaded
    }

    fn complete(&self, id: TorrentId) -> bool {
        self.sessions[1].torrent(id).expect("known").is_complete()
    }
}

#[test]
fn global_limit_holds_over_the_sum_of_torrents() {
    // Proves a session's global download limit of 1 MiB/s holds within 5 % over the sum of two
    // torrents over every 10 s window, and that a torrent capped by its own limit (256 KiB/s)
    // keeps to it while the other takes the rest of the global rate.
    let (a, b) = (TorrentId(0), TorrentId(1));
    let mut net = Net::new(&[5 * MIB, 20 * MIB]);
    net.sessions[1].set_rate_limits(Instant::ZERO, Some(MIB), None);
    net.sessions[1]
        .set_torrent_rate_limits(Instant::ZERO, a, Some(MIB / 4), None)
        .unwrap();
    net.connect();
    let mut samples = vec![(Instant::ZERO, 0, 0)];
    let (mut a_done, mut b_done) = (None, None);
    while b_done.is_none() && net.now < Instant::ZERO + Duration::from_secs(60) {
        let t = samples.last().expect("not empty").0 + STEP;
        net.run(t);
        samples.push((t, net.downloaded(a), net.downloaded(b)));
        if a_done.is_none() && net.complete(a) {
            a_done = Some(t);
        }
        if net.complete(b) {
            b_done = Some(t);
        }
    }
    let (a_done, b_done) = (a_done.expect("a completes"), b_done.expect("b completes"));
    let second = Duration::from_secs(1);
    let sum: Vec<(Instant, u64)> = samples.iter().map(|&(t, a, b)| (t, a + b)).collect();
    let from = Instant::ZERO + WARM_UP;
    let windows = assert_windows(&sum, MIB, from, before(b_done, second));
    assert!(windows > 50, "{windows} windows checked for the sum");
    let only_a: Vec<(Instant, u64)> = samples.iter().map(|&(t, a, _)| (t, a)).collect();
    let windows = assert_windows(&only_a, MIB / 4, from, before(a_done, second));
    assert!(
        windows > 20,
        "{windows} windows checked for the capped torrent"
    );
}

#[test]
fn session_limits_split_cap_and_lift() {
    // Proves the session's commands: a global limit is split evenly when set, an own limit caps
    // a torrent's share, a torrent added under a global limit waits for the next division, an
    // unknown torrent is refused, and lifting the global limit leaves only the own limits.
    let mut net = Net::new(&[MIB, MIB]);
    let (a, b) = (TorrentId(0), TorrentId(1));
    let s = &mut net.sessions[1];
    let limits = |s: &Session, id| s.torrent(id).expect("known").rate_limits();
    assert_eq!(limits(s, a), (None, None), "unlimited by default");
    assert_eq!(s.poll_timeout(), None, "no division without a global limit");
    let now = Instant::ZERO;
    s.set_rate_limits(now, Some(1000), Some(4000));
    assert_eq!(limits(s, a), (Some(500), Some(2000)));
    assert_eq!(s.poll_timeout(), Some(now + Duration::from_secs(1)));
    s.set_torrent_rate_limits(now, a, Some(100), None).unwrap();
    assert_eq!(limits(s, a), (Some(100), Some(2000)));
    assert_eq!(limits(s, b), (Some(500), Some(2000)));
    let c = s
        .add_torrent(
            InfoHash([9; 20]),
            TorrentLayout::new(PIECE, &[PIECE]).unwrap(),
            vec![[0; 20]],
            Bitfield::new(1),
        )
        .unwrap();
    assert_eq!(limits(s, c), (Some(0), Some(0)), "a newcomer waits");
    assert!(
        s.set_torrent_rate_limits(now, TorrentId(99), None, None)
            .is_err()
    );
    s.set_rate_limits(now, None, None);
    assert_eq!(limits(s, a), (Some(100), None));
    assert_eq!(limits(s, b), (None, None));
    assert_eq!(limits(s, c), (None, None));
    assert_eq!(s.poll_timeout(), None);
}
