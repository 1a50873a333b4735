//! Swarm tests on the in-memory harness: whole torrents moving between [`Torrent`] machines.

use std::time::Duration;

use crate::harness::{NodeSpec, Swarm, content};
use crate::torrent::TorrentEvent;

const MB: u64 = 1_000_000;

fn seeder(up: u64) -> NodeSpec {
    NodeSpec {
        seed: true,
        upload_bytes_per_s: up,
        corrupt: false,
    }
}

fn leecher(up: u64) -> NodeSpec {
    NodeSpec {
        seed: false,
        upload_bytes_per_s: up,
        corrupt: false,
    }
}

fn assert_data_complete(swarm: &Swarm, total: u64) {
    let expected = content(total);
    for (i, n) in swarm.nodes.iter().enumerate() {
        if n.spec.corrupt {
            continue;
        }
        assert!(
            n.completed_at.is_some(),
            "node {i} did not complete ({} pieces)",
            n.torrent.have().count()
        );
        assert!(n.storage == expected, "node {i} holds wrong data");
    }
}

#[test]
fn one_seeder_one_leecher() {
    // Proves a whole torrent (odd size, short last piece) moves from a seeder to a leecher and is
    // verified byte for byte.
    let total = 3 * MB + 12_345;
    let mut s = Swarm::new(
        1,
        65536,
        total,
        &[seeder(10 * MB), leecher(10 * MB)],
        Duration::from_millis(20),
    );
    s.connect_all();
    s.run(Duration::from_secs(600), 2_000_000);
    assert_data_complete(&s, total);
    let t = s.nodes[1].completed_at.unwrap();
    // 3 MB at 10 MB/s is 0.3 s plus round trips: well under 5 s.
    assert!(
        t < crate::time::Instant::from_micros(5_000_000),
        "took {t:?}"
    );
}

#[test]
fn twenty_leechers_mostly_feed_each_other() {
    // Proves tit-for-tat swarming: with one seeder and 20 leechers, most of the leechers' data came
    // from other leechers, not from the seeder.
    let total = 4 * MB;
    let mut specs = vec![seeder(2 * MB)];
    specs.extend(std::iter::repeat_n(leecher(2 * MB), 20));
    let mut s = Swarm::new(2, 65536, total, &specs, Duration::from_millis(30));
    s.connect_all();
    s.run(Duration::from_secs(3600), 20_000_000);
    assert_data_complete(&s, total);
    let from_seeder = s.nodes[0].torrent.stats().uploaded;
    let from_leechers: u64 = s.nodes[1..]
        .iter()
        .map(|n| n.torrent.stats().uploaded)
        .sum();
    assert!(
        from_leechers > from_seeder,
        "leechers uploaded {from_leechers} bytes, the seeder {from_seeder}"
    );
}

#[test]
fn a_very_slow_seeder_does_not_hold_up_the_end() {
    // Proves endgame: with a fast and a very slow seeder, completion stays close to the fast seeder
    // alone, because the last blocks are also requested from the fast one.
    let total = 2 * MB;
    let run = |specs: &[NodeSpec]| {
        let mut s = Swarm::new(3, 65536, total, specs, Duration::from_millis(20));
        s.connect_all();
        s.run(Duration::from_secs(3600), 5_000_000);
        assert_data_complete(&s, total);
        s.nodes.last().unwrap().completed_at.unwrap()
    };
    let fast_alone = run(&[seeder(5 * MB), leecher(MB)]);
    let with_slow = run(&[seeder(5 * MB), seeder(5_000), leecher(MB)]);
    let alone_us = fast_alone.as_micros();
    assert!(
        with_slow.as_micros() <= alone_us + alone_us / 2 + 500_000,
        "fast alone {fast_alone:?}, with a slow seeder too {with_slow:?}"
    );
}

#[test]
fn a_corrupt_peer_is_banned_and_the_data_still_completes() {
    // Proves verification: bad blocks never count, the peer that sent them is banned, and the
    // torrent completes from the honest seeder.
    let total = 2 * MB;
    let corrupt = NodeSpec {
        seed: true,
        upload_bytes_per_s: 5 * MB,
        corrupt: true,
    };
    let mut s = Swarm::new(
        4,
        65536,
        total,
        &[seeder(2 * MB), corrupt, leecher(MB)],
        Duration::from_millis(20),
    );
    s.connect_all();
    s.run(Duration::from_secs(3600), 5_000_000);
    assert_data_complete(&s, total);
    let leecher = &s.nodes[2];
    let corrupt_ip = s.nodes[1].addr.ip();
    assert!(
        leecher.torrent.is_banned(corrupt_ip),
        "events: {:?}",
        leecher
            .events
            .iter()
            .filter(|e| !matches!(e, TorrentEvent::PieceVerified(_)))
            .collect::<Vec<_>>()
    );
    assert!(
        leecher
            .events
            .iter()
            .any(|e| matches!(e, TorrentEvent::PieceFailed(_)))
    );
    assert!(!leecher.torrent.is_banned(s.nodes[0].addr.ip()));
}

#[test]
fn liars_mixed_with_honest_peers_are_banned_and_nobody_else() {
    // Proves smart ban in a swarm: two fast corrupt seeders and a slow honest one, so most pieces
    // mix good and bad blocks and fail. Every leecher completes, bans only liars, and each liar
    // is banned by some leecher.
    let total = 2 * MB;
    let liar = NodeSpec {
        seed: true,
        upload_bytes_per_s: 4 * MB,
        corrupt: true,
    };
    let mut specs = vec![seeder(MB), liar, liar];
    specs.extend(std::iter::repeat_n(leecher(MB / 2), 6));
    let mut s = Swarm::new(7, 65536, total, &specs, Duration::from_millis(30));
    s.connect_all();
    s.run(Duration::from_secs(3600), 20_000_000);
    assert_data_complete(&s, total);
    let liars = [s.nodes[1].addr.ip(), s.nodes[2].addr.ip()];
    let mut failed = 0;
    for n in &s.nodes[3..] {
        for e in &n.events {
            match e {
                TorrentEvent::PeerBanned(ip) => assert!(liars.contains(ip), "{ip} banned"),
                TorrentEvent::PieceFailed(_) => failed += 1,
                _ => {}
            }
        }
    }
    assert!(failed > 0, "pieces mixed good and bad blocks");
    for ip in liars {
        assert!(s.nodes[3..].iter().any(|n| n.torrent.is_banned(ip)), "{ip}");
    }
}

#[test]
fn the_choker_never_unchokes_more_than_its_slots() {
    // Proves the upload slot bound (4 + 1 optimistic) holds on every node throughout a busy swarm.
    let total = 2 * MB;
    let mut specs = vec![seeder(MB)];
    specs.extend(std::iter::repeat_n(leecher(MB), 12));
    let mut s = Swarm::new(5, 65536, total, &specs, Duration::from_millis(30));
    s.connect_all();
    s.run(Duration::from_secs(3600), 20_000_000);
    assert_data_complete(&s, total);
    for (i, n) in s.nodes.iter().enumerate() {
        assert!(
            n.max_unchoked <= 5,
            "node {i} had {} peers unchoked",
            n.max_unchoked
        );
    }
    assert!(s.nodes[0].max_unchoked >= 4, "the seeder used its slots");
}

#[test]
fn same_seed_same_run() {
    // Proves determinism: the same seed gives the same completion times and counters.
    let run = || {
        let mut specs = vec![seeder(MB)];
        specs.extend(std::iter::repeat_n(leecher(MB), 6));
        let mut s = Swarm::new(9, 65536, MB, &specs, Duration::from_millis(25));
        s.connect_all();
        s.run(Duration::from_secs(3600), 5_000_000);
        s.nodes
            .iter()
            .map(|n| (n.completed_at, n.torrent.stats()))
            .collect::<Vec<_>>()
    };
    assert_eq!(run(), run());
}

#[test]
fn a_reader_arriving_mid_download_does_not_wait_behind_the_queued_requests() {
    // Proves a reader that arrives while the pipeline to the only seeder is full gets its
    // pieces after a short pipeline, not after everything queued: the leecher has downloaded
    // from a 1 MB/s seeder for 4 s (its pipeline holds about 176 blocks, close to 3 s) when a
    // reader starts at piece 200 of 256; pieces 200 and 201 are verified within 1.5 s, because
    // the newest requests for other pieces are cancelled down to a short pipeline (without that
    // they would come after the whole queue, about 3 s later).
    let total = 16 * MB;
    let piece = 65536;
    let mut s = Swarm::new(
        4,
        piece,
        total,
        &[seeder(MB), leecher(4 * MB)],
        Duration::from_millis(20),
    );
    s.connect_all();
    s.run(Duration::from_secs(4), 1_000_000);
    assert!(!s.nodes[1].torrent.have().get(200) && !s.nodes[1].torrent.have().get(201));
    let queued = s.nodes[1]
        .torrent
        .conns()
        .filter_map(|c| s.nodes[1].torrent.peer(c))
        .map(|p| p.outstanding_len())
        .sum::<usize>();
    assert!(
        queued >= 64,
        "a pipeline of seconds: {queued} blocks queued"
    );
    let position = crate::torrent::ReadPosition {
        offset: 200 * piece,
        end: total,
        rate: None,
    };
    s.nodes[1]
        .torrent
        .set_reader(s.now, crate::torrent::ReaderId(1), position)
        .unwrap();
    // `run` takes the time since the start: 1.5 s after the reader's.
    s.run(Duration::from_millis(5500), 1_000_000);
    let have = s.nodes[1].torrent.have();
    assert!(have.get(200) && have.get(201), "not within 1.5 s");
    s.run(Duration::from_secs(600), 5_000_000);
    assert_data_complete(&s, total);
}

#[test]
fn a_reader_mid_torrent_gets_its_pieces_first_despite_a_slow_seeder() {
    // Proves the urgent pieces reach a reader quickly even when a very slow seeder took some of
    // their blocks: a leecher reading from piece 20 (no pace known: its first two pieces are
    // needed at once) of a 256-piece torrent, with a fast seeder (16 MB take it 3.2 s) and a
    // very slow one (20 kB/s: a piece takes it 3.2 s), verifies piece 20 first and both 20 and
    // 21 within 1.5 s (once late, blocks held by the slow seeder are asked of the fast one), and
    // the whole torrent still arrives.
    let total = 16 * MB;
    let piece = 65536;
    let mut s = Swarm::new(
        4,
        piece,
        total,
        &[seeder(5 * MB), seeder(20_000), leecher(MB)],
        Duration::from_millis(20),
    );
    s.connect_all();
    let position = crate::torrent::ReadPosition {
        offset: 20 * piece + 1000,
        end: total,
        rate: None,
    };
    s.nodes[2]
        .torrent
        .set_reader(s.now, crate::torrent::ReaderId(1), position)
        .unwrap();
    s.run(Duration::from_millis(1500), 1_000_000);
    let have = s.nodes[2].torrent.have();
    assert!(
        have.get(20) && have.get(21),
        "{:?}",
        have.ones().collect::<Vec<_>>()
    );
    let verified: Vec<u32> = s.nodes[2]
        .events
        .iter()
        .filter_map(|e| match e {
            TorrentEvent::PieceVerified(p) => Some(p.get()),
            _ => None,
        })
        .collect();
    assert_eq!(verified[0], 20, "{verified:?}");
    assert!(verified.len() < 200, "{} pieces by 1.5 s", verified.len());
    s.run(Duration::from_secs(600), 5_000_000);
    assert_data_complete(&s, total);
}
