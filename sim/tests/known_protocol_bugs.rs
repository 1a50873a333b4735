//! Protocol bugs the simulator found, reduced to the smallest reproduction. Each test asserts
//! the bug is still there; when one fails, the protocol was fixed: turn the test around.

use bt_protocol::metainfo::{InfoHash, TorrentLayout};
use bt_protocol::peer::{Direction, PeerConfig, PeerConn, PeerError, PeerEvent};
use bt_protocol::time::Instant;
use bt_protocol::torrent::Bitfield;
use bt_protocol::wire::{PeerId, Reserved};

/// Moves everything `from` has to send into `to`.
fn pump(from: &mut PeerConn, to: &mut PeerConn, now: Instant, layout: &TorrentLayout) {
    while let Some(bytes) = from.poll_transmit() {
        to.handle_bytes(now, &bytes, layout)
            .expect("a well-behaved stream");
    }
}

#[test]
fn a_reject_crossing_our_cancel_closes_the_connection() {
    // Proves the race seen in every flash crowd (`Torrent(Peer(RejectUnrequested))` among the
    // close reasons: 21 connections in sim/scenarios/flash-crowd.toml): we cancel a request
    // (endgame: the block came from elsewhere) while the peer, not having seen the cancel yet,
    // chokes us and, as BEP 6 asks, rejects the request. The reject reaches us for a block we no
    // longer count as requested and `PeerConn::handle_bytes` fails with `RejectUnrequested`, so
    // the connection to a good peer is dropped. A late `piece` for a cancelled block is ignored
    // (conn.rs, `Message::Piece`); a late `reject` should be too (libtorrent ignores it).
    let layout = TorrentLayout::new(32 * 1024, &[64 * 1024]).unwrap();
    let t0 = Instant::ZERO;
    let mut reserved = Reserved::NONE;
    reserved.set_fast(true);
    let hash = InfoHash([7; 20]);
    let new = |direction, id| {
        PeerConn::new(
            PeerConfig::default(),
            direction,
            hash,
            PeerId([id; 20]),
            reserved,
            layout.piece_count(),
            t0,
        )
    };
    let mut us = new(Direction::Outbound, 1);
    let mut them = new(Direction::Inbound, 2);
    pump(&mut us, &mut them, t0, &layout);
    pump(&mut them, &mut us, t0, &layout);
    them.send_pieces(t0, &Bitfield::full(layout.piece_count()));
    them.unchoke(t0);
    pump(&mut them, &mut us, t0, &layout);
    us.set_interested(t0, true);
    let block = layout.block(layout.piece(0).unwrap(), 0).unwrap();
    assert!(us.request(t0, block));
    pump(&mut us, &mut them, t0, &layout);
    assert!(
        std::iter::from_fn(|| them.poll_event()).any(|e| e == PeerEvent::Request(block)),
        "the peer queued our request"
    );

    // Both at once: our cancel is on the wire while the peer chokes us and rejects the request.
    assert!(us.cancel(t0, block));
    let _cancel_in_flight: Vec<_> = std::iter::from_fn(|| us.poll_transmit()).collect();
    let dropped = them.choke(t0);
    assert_eq!(dropped, vec![block]);

    let mut result = Ok(());
    while let Some(bytes) = them.poll_transmit() {
        result = result.and(us.handle_bytes(t0, &bytes, &layout));
    }
    assert_eq!(
        result,
        Err(PeerError::RejectUnrequested),
        "fixed? then expect Ok(()) here and move this test to the protocol's conformance tests"
    );
}
