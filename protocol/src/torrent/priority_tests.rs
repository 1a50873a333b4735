//! Tests of file priorities on the in-memory harness: a leecher that selects some files of a
//! multi-file torrent fetches exactly their pieces, stops, and still serves what it has.

use std::time::Duration;

use sha1::{Digest, Sha1};

use super::*;
use crate::harness::{NodeSpec, Swarm, content};
use crate::metainfo::TorrentLayout;
use crate::rng::Rng;
use crate::time::Instant;

const PIECE: u64 = 32768;

/// Files of 3 pieces + 100 bytes, 4 pieces, 2 pieces + 50 bytes: piece 3 straddles files 0 and
/// 1, piece 7 straddles files 1 and 2, pieces 4, 5 and 6 lie wholly in file 1.
const FILES: [u64; 3] = [3 * PIECE + 100, 4 * PIECE, 2 * PIECE + 50];

fn node(seed: bool) -> NodeSpec {
    NodeSpec {
        seed,
        upload_bytes_per_s: 10_000_000,
        corrupt: false,
    }
}

/// A seeder and a leecher of the three-file torrent (the harness builds single-file torrents:
/// the byte stream and the piece hashes are the same, only the file boundaries are added).
fn three_file_swarm() -> Swarm {
    let total: u64 = FILES.iter().sum();
    let mut s = Swarm::new(
        7,
        PIECE,
        total,
        &[node(true), node(false)],
        Duration::from_millis(10),
    );
    let layout = TorrentLayout::new(PIECE, &FILES).unwrap();
    let hashes: Vec<[u8; 20]> = content(total)
        .chunks(PIECE as usize)
        .map(|c| Sha1::digest(c).into())
        .collect();
    let mut rng = Rng::new(99);
    for (i, n) in s.nodes.iter_mut().enumerate() {
        let have = if n.spec.seed {
            Bitfield::full(layout.piece_count())
        } else {
            Bitfield::new(layout.piece_count())
        };
        n.torrent = Torrent::new(
            TorrentConfig::default(),
            n.torrent.info_hash(),
            layout.clone(),
            hashes.clone(),
            have,
            n.torrent.our_id(),
            rng.fork(i as u64),
        );
    }
    s.layout = layout;
    s
}

#[test]
fn leecher_selecting_files_0_and_2_fetches_only_their_pieces() {
    // Proves a piece wholly in a skipped file is never requested, straddling pieces are, the
    // download counts as done once the wanted pieces are verified (not complete as a seed), the
    // bytes received are exactly the wanted pieces', interest ends, and `left` is 0.
    let mut s = three_file_swarm();
    use FilePriority::{Normal, Skip};
    s.nodes[1]
        .torrent
        .set_file_priorities(Instant::ZERO, &[Normal, Skip, Normal])
        .unwrap();
    assert_eq!(s.nodes[1].torrent.wanted_left(), 7 * PIECE - PIECE + 150);
    s.connect_all();
    s.run(Duration::from_secs(60), 200_000);
    let leecher = &s.nodes[1];
    assert!(leecher.torrent.wanted_complete(), "wanted pieces not done");
    assert!(
        !leecher.torrent.is_complete(),
        "skipped pieces were fetched"
    );
    assert!(!leecher.events.contains(&TorrentEvent::Complete));
    let have: Vec<u32> = leecher.torrent.have().ones().collect();
    assert_eq!(have, [0, 1, 2, 3, 7, 8, 9]);
    for e in &leecher.events {
        if let TorrentEvent::PieceStarted(p) = e {
            assert!(!(4..=6).contains(&p.get()), "piece {p} of file 1 requested");
        }
    }
    let wanted_bytes = 6 * PIECE + 150;
    assert_eq!(leecher.torrent.stats().downloaded, wanted_bytes);
    assert_eq!(leecher.torrent.wanted_left(), 0);
    let conn = leecher.torrent.conns().next().expect("still connected");
    let peer = leecher.torrent.peer(conn).unwrap();
    assert!(
        !peer.am_interested(),
        "still interested after the wanted pieces"
    );
    assert!(peer.outstanding_len() == 0, "requests still out");
}

#[test]
fn selecting_more_files_later_resumes_the_download() {
    // Proves priorities can change mid-life: after the first selection is done, wanting file 1
    // makes the leecher interested again and it completes the whole torrent.
    let mut s = three_file_swarm();
    use FilePriority::{High, Normal, Skip};
    s.nodes[1]
        .torrent
        .set_file_priorities(Instant::ZERO, &[Skip, Skip, Normal])
        .unwrap();
    s.connect_all();
    s.run(Duration::from_secs(60), 200_000);
    assert!(s.nodes[1].torrent.wanted_complete());
    assert_eq!(
        s.nodes[1].torrent.have().ones().collect::<Vec<_>>(),
        [7, 8, 9]
    );
    s.nodes[1].completed_at = None;
    let now = s.now;
    s.nodes[1]
        .torrent
        .set_file_priorities(now, &[Normal, High, Normal])
        .unwrap();
    assert!(!s.nodes[1].torrent.wanted_complete());
    s.run(Duration::from_secs(120), 200_000);
    assert!(s.nodes[1].torrent.is_complete());
    assert!(s.nodes[1].storage == content(FILES.iter().sum()));
}

#[test]
fn wrong_priority_count_is_refused() {
    // Proves a list that does not match the file count is an error, not a panic or a guess.
    let mut s = three_file_swarm();
    let err = s.nodes[1]
        .torrent
        .set_file_priorities(Instant::ZERO, &[FilePriority::Normal])
        .unwrap_err();
    assert_eq!(err, FilePrioritiesError::WrongCount { given: 1, files: 3 });
}

#[test]
fn piece_priority_is_the_highest_of_its_files() {
    // Proves the file-to-piece mapping: straddling pieces take the higher priority, and a
    // zero-length file touches no piece.
    use FilePriority::{High, Normal, Skip};
    let layout = TorrentLayout::new(PIECE, &[PIECE + 10, 0, PIECE]).unwrap();
    let pieces = piece_priorities(&layout, &[Skip, High, Normal]);
    assert_eq!(pieces, [Skip, Normal, Normal]);
    let pieces = piece_priorities(&layout, &[High, Skip, Skip]);
    assert_eq!(pieces, [High, High, Skip]);
}
