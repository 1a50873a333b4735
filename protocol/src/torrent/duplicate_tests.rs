//! Tests of the duplicate-connection rule of [`Torrent`]: two connections to one peer id, over
//! links that take time (the swarm harness delivers a close at once, which hides the races).

use core::net::SocketAddr;
use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::io::ConnId;
use crate::metainfo::{InfoHash, TorrentLayout};
use crate::peer::{Direction, PeerConn};
use crate::rng::Rng;
use crate::time::Instant;
use crate::wire::PeerId;

/// What happened on the wire between two torrents.
struct Outcome {
    /// Connections each node still holds, with the handshake done.
    open: [Vec<ConnId>; 2],
    /// Connections closed as duplicates, per node.
    duplicates: [Vec<ConnId>; 2],
}

/// One end of a link: the node, its handle, who opened the connection.
type End = (usize, ConnId, Direction);

/// Something that happens at a time in [`run`].
enum Happening {
    /// Bytes (or, `None`, the remote's close) reach this end.
    Arrive(usize, ConnId, Option<Bytes>),
    /// A link opens: both ends are added, each with the other node's address.
    Open(End, End),
}

/// Two torrents with peer ids `ids` and the given links, each `(trips, end, end)`: opened (both
/// ends added) that many trips after time zero. Every transmission and close takes one trip
/// (20 ms) to reach the other end. Runs for twenty trips.
fn run(ids: [u8; 2], links: &[(u32, End, End)]) -> Outcome {
    let layout = TorrentLayout::new(16 * 1024, &[64 * 1024]).unwrap();
    let hash = InfoHash([9; 20]);
    let node = |id: u8, have: Bitfield| {
        Torrent::new(
            TorrentConfig::default(),
            hash,
            layout.clone(),
            vec![[0; 20]; 4],
            have,
            PeerId([id; 20]),
            Rng::new(u64::from(id)),
        )
    };
    let mut nodes = [
        node(ids[0], Bitfield::full(layout.piece_count())),
        node(ids[1], Bitfield::new(layout.piece_count())),
    ];
    let addr = |i: usize| SocketAddr::from(([10, 0, 0, i as u8 + 1], 6881));
    let t0 = Instant::ZERO;
    let trip = Duration::from_millis(20);
    let mut remote = BTreeMap::new();
    let mut wire: BTreeMap<(Instant, u64), Happening> = BTreeMap::new();
    for (i, &(trips, x, y)) in links.iter().enumerate() {
        remote.insert((x.0, x.1), (y.0, y.1));
        remote.insert((y.0, y.1), (x.0, x.1));
        wire.insert((t0 + trip * trips, i as u64), Happening::Open(x, y));
    }
    let mut seq = links.len() as u64;
    let mut duplicates = [Vec::new(), Vec::new()];
    let mut drain =
        |n: usize, now: Instant, nodes: &mut [Torrent; 2], wire: &mut BTreeMap<_, _>| {
            while let Some(out) = nodes[n].poll_output() {
                let (to, conn, what) = match out {
                    TorrentOutput::Transmit { conn, bytes } => {
                        let (to, rc) = remote[&(n, conn)];
                        (to, rc, Some(bytes))
                    }
                    TorrentOutput::Close { conn, reason } => {
                        if reason == CloseReason::Duplicate {
                            duplicates[n].push(conn);
                        }
                        let (to, rc) = remote[&(n, conn)];
                        (to, rc, None)
                    }
                    TorrentOutput::Event(_) | TorrentOutput::Disk(_) => continue,
                };
                seq += 1;
                wire.insert((now + trip, seq), Happening::Arrive(to, conn, what));
            }
        };
    while let Some(((now, _), happening)) = wire.pop_first() {
        if now > t0 + trip * 20 {
            break;
        }
        match happening {
            Happening::Arrive(n, conn, Some(bytes)) => {
                nodes[n].handle_bytes(now, conn, &bytes);
                drain(n, now, &mut nodes, &mut wire);
            }
            Happening::Arrive(n, conn, None) => {
                nodes[n].peer_disconnected(now, conn);
                drain(n, now, &mut nodes, &mut wire);
            }
            Happening::Open(x, y) => {
                for ((n, c, d), m) in [(x, y.0), (y, x.0)] {
                    nodes[n].add_peer(now, c, addr(m), d).unwrap();
                    drain(n, now, &mut nodes, &mut wire);
                }
            }
        }
    }
    let open = |t: &Torrent| {
        t.conns()
            .filter(|c| t.peer(*c).is_some_and(PeerConn::is_connected))
            .collect()
    };
    Outcome {
        open: [open(&nodes[0]), open(&nodes[1])],
        duplicates,
    }
}

/// The ends of a connection between nodes 0 and 1 with handles `c0` and `c1`, opened by node 0
/// if `by_0`, opened `trips` after time zero.
fn link(trips: u32, c0: ConnId, c1: ConnId, by_0: bool) -> (u32, End, End) {
    let (d0, d1) = if by_0 {
        (Direction::Outbound, Direction::Inbound)
    } else {
        (Direction::Inbound, Direction::Outbound)
    };
    (trips, (0, c0, d0), (1, c1, d1))
}

#[test]
fn two_peers_dialling_each_other_at_once_keep_one_connection() {
    // Proves the simultaneous-open fix: A dials B while B dials A, each end sees the inbound
    // connection complete first, and both keep the same one: the connection opened by the peer
    // with the lower peer id, whichever of the two it is. (Before, each end kept the first to
    // complete at that end, so each closed the one the other kept and none survived.)
    let (a1, b1, b2, a2) = (ConnId(1), ConnId(2), ConnId(3), ConnId(4));
    let links = [link(0, a1, b1, true), link(0, a2, b2, false)];
    // A has the lower id: A's connection survives.
    let out = run([1, 2], &links);
    assert_eq!(out.open, [vec![a1], vec![b1]]);
    assert_eq!(out.duplicates, [vec![a2], vec![b2]]);
    // B has the lower id: B's connection survives.
    let out = run([2, 1], &links);
    assert_eq!(out.open, [vec![a2], vec![b2]]);
    assert_eq!(out.duplicates, [vec![a1], vec![b1]]);
}

#[test]
fn a_redial_never_replaces_an_established_connection() {
    // Proves that once a connection is up, a second one to the same peer is closed at both ends,
    // whoever opened either and whichever id is lower: the end that receives the second
    // handshake closes it without answering, so the dialler never completes it. (A driver cannot
    // always tell it is connected to a peer: an inbound connection comes from another port than
    // the one the tracker gives.)
    let (e0, e1, n0, n1) = (ConnId(1), ConnId(2), ConnId(3), ConnId(4));
    for ids in [[1, 2], [2, 1]] {
        for first_by_0 in [true, false] {
            for second_by_0 in [true, false] {
                let case =
                    format!("ids {ids:?}, by node 0: first {first_by_0}, second {second_by_0}");
                let out = run(
                    ids,
                    &[link(0, e0, e1, first_by_0), link(5, n0, n1, second_by_0)],
                );
                assert_eq!(out.open, [vec![e0], vec![e1]], "{case}");
                let callee = usize::from(second_by_0);
                let mut duplicates = [vec![], vec![]];
                duplicates[callee] = vec![[n0, n1][callee]];
                assert_eq!(out.duplicates, duplicates, "{case}");
            }
        }
    }
}

#[test]
fn a_second_dial_at_once_from_the_same_end_is_the_duplicate() {
    // Proves that when one peer dials twice at once, the first connection is kept whichever id
    // is lower: B closes the second on seeing its handshake, before answering it, so A sees it
    // closed by B.
    let (a1, b1, a2, b2) = (ConnId(1), ConnId(2), ConnId(3), ConnId(4));
    for ids in [[1, 2], [2, 1]] {
        let out = run(ids, &[link(0, a1, b1, true), link(0, a2, b2, true)]);
        assert_eq!(out.open, [vec![a1], vec![b1]], "ids {ids:?}");
        assert_eq!(out.duplicates, [vec![], vec![b2]], "ids {ids:?}");
    }
}
