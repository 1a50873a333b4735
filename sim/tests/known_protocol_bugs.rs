//! Protocol bugs the simulator found, reduced to the smallest reproduction. Each test asserts
//! the bug is still there; when one fails, the protocol was fixed: turn the test around.

use bt_protocol::metainfo::{InfoHash, TorrentLayout};
use bt_protocol::peer::Direction;
use bt_protocol::time::Instant;
use bt_protocol::torrent::Bitfield;
use bt_protocol::wire::PeerId;

#[test]
fn two_peers_dialling_each_other_at_once_end_up_with_no_connection() {
    // Proves the simultaneous-open case behind many of the `Torrent(Duplicate)` closes the
    // scenarios report (788 in sim/scenarios/churn.toml): A dials B while B dials A. Each side
    // keeps the connection whose handshake completed first *at that side* and closes the other as
    // a duplicate (machine.rs, `PeerEvent::Connected`). At A the inbound one completes first
    // (B's handshake arrives after one trip, the answer to A's own after two); at B likewise the
    // inbound one. So A keeps B->A and closes A->B, B keeps A->B and closes B->A: each close
    // reaches the other side a trip later, after it has closed its own, and both links die.
    // (The protocol's own harness delivers a close instantly, which hides this.) libtorrent
    // breaks the tie the same way on both sides, by comparing peer ids.
    use std::collections::BTreeMap;
    use std::net::SocketAddr;
    use std::time::Duration;

    use bt_protocol::io::ConnId;
    use bt_protocol::rng::Rng;
    use bt_protocol::torrent::{CloseReason, Torrent, TorrentConfig, TorrentEvent, TorrentOutput};

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
        node(1, Bitfield::full(layout.piece_count())),
        node(2, Bitfield::new(layout.piece_count())),
    ];
    let addr = |i: usize| SocketAddr::from(([10, 0, 0, i as u8 + 1], 6881));
    // Connection ends: (node, conn) <-> (node, conn). Link 1: A->B; link 2: B->A.
    let (a1, b1, b2, a2) = (ConnId(1), ConnId(2), ConnId(3), ConnId(4));
    let remote: BTreeMap<(usize, ConnId), (usize, ConnId)> = [
        ((0, a1), (1, b1)),
        ((1, b1), (0, a1)),
        ((1, b2), (0, a2)),
        ((0, a2), (1, b2)),
    ]
    .into();
    let trip = Duration::from_millis(20);
    let t0 = Instant::ZERO;
    nodes[0]
        .add_peer(t0, a1, addr(1), Direction::Outbound)
        .unwrap();
    nodes[1]
        .add_peer(t0, b1, addr(0), Direction::Inbound)
        .unwrap();
    nodes[1]
        .add_peer(t0, b2, addr(0), Direction::Outbound)
        .unwrap();
    nodes[0]
        .add_peer(t0, a2, addr(1), Direction::Inbound)
        .unwrap();

    // (time, seq) -> (node, conn, Some(bytes) or None for the remote's close)
    let mut wire: BTreeMap<(Instant, u64), (usize, ConnId, Option<bytes::Bytes>)> = BTreeMap::new();
    let mut seq = 0;
    let mut duplicates = 0;
    let mut drain =
        |n: usize, now: Instant, nodes: &mut [Torrent; 2], wire: &mut BTreeMap<_, _>| {
            while let Some(out) = nodes[n].poll_output() {
                let (to, conn, what) = match out {
                    TorrentOutput::Transmit { conn, bytes } => {
                        let (to, rc) = remote[&(n, conn)];
                        (to, rc, Some(bytes))
                    }
                    TorrentOutput::Close { conn, .. } => {
                        let (to, rc) = remote[&(n, conn)];
                        (to, rc, None)
                    }
                    TorrentOutput::Event(TorrentEvent::PeerClosed {
                        reason: CloseReason::Duplicate,
                        ..
                    }) => {
                        duplicates += 1;
                        continue;
                    }
                    TorrentOutput::Event(_) | TorrentOutput::Disk(_) => continue,
                };
                seq += 1;
                wire.insert((now + trip, seq), (to, conn, what));
            }
        };
    drain(0, t0, &mut nodes, &mut wire);
    drain(1, t0, &mut nodes, &mut wire);
    while let Some(((now, _), (n, conn, what))) = wire.pop_first() {
        if now > Instant::ZERO + trip * 10 {
            break;
        }
        match what {
            Some(bytes) => nodes[n].handle_bytes(now, conn, &bytes),
            None => nodes[n].peer_disconnected(now, conn),
        }
        drain(n, now, &mut nodes, &mut wire);
    }
    assert_eq!(duplicates, 2, "each side closed one link as a duplicate");
    assert_eq!(
        (nodes[0].peer_count(), nodes[1].peer_count()),
        (0, 0),
        "fixed? then one connection survives"
    );
}
