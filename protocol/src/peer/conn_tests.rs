//! Tests of [`PeerConn`]: two connections wired back to back, and scripted misbehaving peers.

use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::metainfo::{BlockRef, InfoHash, TorrentLayout};
use crate::time::Instant;
use crate::torrent::Bitfield;
use crate::wire::{Handshake, Message, PeerId, Reserved};

const HASH: InfoHash = InfoHash([7; 20]);

fn layout() -> TorrentLayout {
    // 4 pieces of 32 KiB (2 blocks each), the last one 20,000 bytes.
    TorrentLayout::new(32768, &[3 * 32768 + 20_000]).unwrap()
}

fn reserved(fast: bool, ext: bool) -> Reserved {
    let mut r = Reserved::NONE;
    r.set_fast(fast);
    r.set_extension_protocol(ext);
    r
}

fn conn(direction: Direction, id: u8, fast: bool) -> PeerConn {
    PeerConn::new(
        PeerConfig::default(),
        direction,
        HASH,
        PeerId([id; 20]),
        reserved(fast, true),
        layout().piece_count(),
        Instant::ZERO,
    )
}

fn t(secs: u64) -> Instant {
    Instant::from_micros(secs * 1_000_000)
}

/// Moves bytes both ways until neither side has anything to send; returns each side's events.
fn pump(a: &mut PeerConn, b: &mut PeerConn, now: Instant) -> (Vec<PeerEvent>, Vec<PeerEvent>) {
    let l = layout();
    let (mut ea, mut eb) = (Vec::new(), Vec::new());
    for _ in 0..100 {
        let mut moved = false;
        while let Some(bytes) = a.poll_transmit() {
            b.handle_bytes(now, &bytes, &l)
                .expect("b accepts a's bytes");
            moved = true;
        }
        while let Some(bytes) = b.poll_transmit() {
            a.handle_bytes(now, &bytes, &l)
                .expect("a accepts b's bytes");
            moved = true;
        }
        ea.extend(std::iter::from_fn(|| a.poll_event()));
        eb.extend(std::iter::from_fn(|| b.poll_event()));
        if !moved {
            return (ea, eb);
        }
    }
    panic!("pump did not settle");
}

fn connected(fast: bool) -> (PeerConn, PeerConn) {
    let mut a = conn(Direction::Outbound, 1, fast);
    let mut b = conn(Direction::Inbound, 2, fast);
    let (ea, eb) = pump(&mut a, &mut b, Instant::ZERO);
    assert!(matches!(ea[..], [PeerEvent::Connected { .. }]));
    assert!(matches!(eb[..], [PeerEvent::Connected { .. }]));
    (a, b)
}

/// Bytes of a handshake from a peer with `id` for `hash`.
fn their_handshake(hash: InfoHash, id: u8, fast: bool) -> Vec<u8> {
    Handshake {
        reserved: reserved(fast, true),
        info_hash: hash,
        peer_id: PeerId([id; 20]),
    }
    .encode()
    .to_vec()
}

fn frame(m: Message<'_>) -> Vec<u8> {
    let mut v = Vec::new();
    m.encode_into(&mut v);
    v
}

/// An outbound connection that has received a handshake (fast as given) and then `rest`.
fn scripted(fast: bool, rest: &[Vec<u8>]) -> Result<PeerConn, PeerError> {
    let mut c = conn(Direction::Outbound, 1, fast);
    let mut input = their_handshake(HASH, 9, fast);
    for r in rest {
        input.extend_from_slice(r);
    }
    c.handle_bytes(t(1), &input, &layout()).map(|()| c)
}

#[test]
fn handshake_negotiates_extensions() {
    // Proves the handshake completes both ways and Fast/extension support is the AND of both sides.
    let (a, b) = connected(true);
    assert!(a.is_connected() && b.is_connected());
    assert!(a.fast_extension() && a.extension_protocol());
    assert_eq!(a.peer_id(), Some(PeerId([2; 20])));
    let mut x = conn(Direction::Outbound, 1, true);
    let mut y = conn(Direction::Inbound, 2, false);
    pump(&mut x, &mut y, Instant::ZERO);
    assert!(!x.fast_extension() && !y.fast_extension());
}

#[test]
fn handshake_refusals() {
    // Proves a foreign info hash and a connection to ourselves are refused (BEP 3).
    let mut c = conn(Direction::Outbound, 1, true);
    let err = c.handle_bytes(
        t(0),
        &their_handshake(InfoHash([8; 20]), 2, true),
        &layout(),
    );
    assert_eq!(err, Err(PeerError::WrongInfoHash(InfoHash([8; 20]))));
    let mut c = conn(Direction::Outbound, 1, true);
    let err = c.handle_bytes(t(0), &their_handshake(HASH, 1, true), &layout());
    assert_eq!(err, Err(PeerError::SelfConnection));
    let mut c = conn(Direction::Outbound, 1, true);
    let mut bad = their_handshake(HASH, 2, true);
    bad[0] = 18;
    assert!(matches!(
        c.handle_bytes(t(0), &bad, &layout()),
        Err(PeerError::Handshake(_))
    ));
}

#[test]
fn handshake_split_anywhere_still_works() {
    // Proves bytes arriving one at a time complete the handshake and the following messages.
    let mut c = conn(Direction::Outbound, 1, true);
    let mut input = their_handshake(HASH, 2, true);
    input.extend(frame(Message::HaveAll));
    input.extend(frame(Message::Unchoke));
    for byte in input {
        c.handle_bytes(t(0), &[byte], &layout()).unwrap();
    }
    let events: Vec<_> = std::iter::from_fn(|| c.poll_event()).collect();
    assert_eq!(events.len(), 3);
    assert!(c.peer_pieces().is_complete() && !c.peer_choking());
}

#[test]
fn request_and_serve_a_block() {
    // Proves the whole exchange: pieces, interest, unchoke, request, block, with counters.
    let (mut a, mut b) = connected(true);
    let l = layout();
    b.send_pieces(t(1), &Bitfield::full(4));
    a.send_pieces(t(1), &Bitfield::new(4));
    a.set_interested(t(1), true);
    let (ea, eb) = pump(&mut a, &mut b, t(1));
    assert_eq!(ea, [PeerEvent::Pieces]);
    assert_eq!(eb, [PeerEvent::Pieces, PeerEvent::Interested]);
    b.unchoke(t(1));
    pump(&mut a, &mut b, t(1));
    let block = l.block(l.piece(3).unwrap(), 1).unwrap();
    assert!(a.request(t(2), block));
    assert!(!a.request(t(2), block), "no duplicate request to one peer");
    let (_, eb) = pump(&mut a, &mut b, t(2));
    assert_eq!(eb, [PeerEvent::Request(block)]);
    let data = Bytes::from(vec![0x5a; block.len as usize]);
    assert!(b.send_block(t(3), block, data.clone()));
    assert!(!b.send_block(t(3), block, data.clone()), "answered once");
    let (ea, _) = pump(&mut a, &mut b, t(3));
    assert_eq!(ea, [PeerEvent::Block { block, data }]);
    assert_eq!(a.totals().0, u64::from(block.len));
    assert_eq!(b.totals().1, u64::from(block.len));
    assert_eq!(a.outstanding_len(), 0);
}

#[test]
fn cannot_request_while_choked_or_what_the_peer_lacks() {
    // Proves request() refuses blocks the peer lacks and requests while choked, unless allowed-fast.
    let (mut a, mut b) = connected(true);
    let l = layout();
    let mut some = Bitfield::new(4);
    some.set(0);
    some.set(1);
    b.send_pieces(t(1), &some);
    b.send_allowed_fast(t(1), &[1]);
    pump(&mut a, &mut b, t(1));
    let p = |i| l.block(l.piece(i).unwrap(), 0).unwrap();
    assert!(!a.request(t(1), p(0)), "choked");
    assert!(a.request(t(1), p(1)), "allowed fast while choked");
    assert!(!a.request(t(1), p(2)), "peer lacks piece 2");
    let (_, eb) = pump(&mut a, &mut b, t(1));
    assert_eq!(
        eb,
        [PeerEvent::Request(p(1))],
        "b honours allowed-fast while choking"
    );
}

#[test]
fn choke_without_fast_voids_requests() {
    // Proves BEP 3: a choke drops every outstanding request, returned to the caller.
    let (mut a, mut b) = connected(false);
    let l = layout();
    b.send_pieces(t(1), &Bitfield::full(4));
    b.unchoke(t(1));
    pump(&mut a, &mut b, t(1));
    let blocks: Vec<_> = l.blocks(l.piece(0).unwrap()).collect();
    for blk in &blocks {
        assert!(a.request(t(1), *blk));
    }
    pump(&mut a, &mut b, t(1));
    let dropped = b.choke(t(2));
    assert_eq!(dropped, blocks, "b forgets a's queued requests");
    let (ea, _) = pump(&mut a, &mut b, t(2));
    assert_eq!(ea, [PeerEvent::Choked { dropped: blocks }]);
    assert_eq!(a.outstanding_len(), 0);
}

#[test]
fn choke_with_fast_rejects_explicitly() {
    // Proves BEP 6: with the Fast extension a choke keeps requests alive and rejects each one.
    let (mut a, mut b) = connected(true);
    let l = layout();
    b.send_pieces(t(1), &Bitfield::full(4));
    b.unchoke(t(1));
    pump(&mut a, &mut b, t(1));
    let blk = l.block(l.piece(0).unwrap(), 0).unwrap();
    assert!(a.request(t(1), blk));
    pump(&mut a, &mut b, t(1));
    b.choke(t(2));
    let (ea, _) = pump(&mut a, &mut b, t(2));
    assert_eq!(
        ea,
        [
            PeerEvent::Choked { dropped: vec![] },
            PeerEvent::Rejected(blk)
        ]
    );
    assert_eq!(a.outstanding_len(), 0);
}

/// Moves what `from` has to send into `to`, returning `to`'s first error.
fn deliver(from: &mut PeerConn, to: &mut PeerConn, now: Instant) -> Result<(), PeerError> {
    let l = layout();
    let mut result = Ok(());
    while let Some(bytes) = from.poll_transmit() {
        result = result.and(to.handle_bytes(now, &bytes, &l));
    }
    result
}

#[test]
fn a_reject_crossing_our_cancel_is_ignored() {
    // Proves the race the simulator found in every flash crowd is harmless: we cancel a request
    // (endgame) while the peer, not having seen the cancel, chokes us and rejects it (BEP 6).
    // The late reject keeps the connection open and reports nothing; a second reject for the
    // same block, which was never requested again, is a breach.
    let (mut a, mut b) = connected(true);
    let l = layout();
    b.send_pieces(t(1), &Bitfield::full(4));
    b.unchoke(t(1));
    pump(&mut a, &mut b, t(1));
    let blk = l.block(l.piece(0).unwrap(), 0).unwrap();
    assert!(a.request(t(1), blk));
    let (_, eb) = pump(&mut a, &mut b, t(1));
    assert_eq!(eb, [PeerEvent::Request(blk)]);

    assert!(a.cancel(t(2), blk));
    let cancel_in_flight: Vec<Bytes> = std::iter::from_fn(|| a.poll_transmit()).collect();
    assert_eq!(b.choke(t(2)), vec![blk], "b rejects the request it queued");
    assert_eq!(deliver(&mut b, &mut a, t(2)), Ok(()));
    let events: Vec<_> = std::iter::from_fn(|| a.poll_event()).collect();
    assert_eq!(events, [PeerEvent::Choked { dropped: vec![] }]);
    for bytes in cancel_in_flight {
        b.handle_bytes(t(2), &bytes, &l).unwrap();
    }

    let again = scripted_reject(&mut a, blk);
    assert_eq!(again, Err(PeerError::RejectUnrequested));
}

/// Feeds `c` a reject for `blk` as if from its peer.
fn scripted_reject(c: &mut PeerConn, blk: BlockRef) -> Result<(), PeerError> {
    let bytes = frame(Message::RejectRequest {
        piece: blk.piece.get(),
        offset: blk.offset,
        len: blk.len,
    });
    c.handle_bytes(t(3), &bytes, &layout())
}

#[test]
fn a_reject_after_our_request_timed_out_is_ignored() {
    // Proves a reject arriving after we gave up on the request (it timed out) does not close
    // the connection: like a cancelled one, the request was ours.
    let (mut a, mut b) = connected(true);
    let l = layout();
    b.send_pieces(t(1), &Bitfield::full(4));
    b.unchoke(t(1));
    pump(&mut a, &mut b, t(1));
    let blk = l.block(l.piece(1).unwrap(), 1).unwrap();
    assert!(a.request(t(1), blk));
    pump(&mut a, &mut b, t(1));
    let late = t(1) + PeerConfig::default().request_timeout;
    a.handle_timeout(late).unwrap();
    assert!(
        std::iter::from_fn(|| a.poll_event()).any(|e| e == PeerEvent::RequestTimedOut(blk)),
        "the request timed out"
    );
    assert_eq!(scripted_reject(&mut a, blk), Ok(()));
    assert_eq!(a.poll_event(), None);
}

#[test]
fn withdrawn_requests_are_remembered_within_a_bound() {
    // Proves the memory of withdrawn requests is bounded (twice the pipeline): past the bound the
    // oldest is forgotten, and a reject for it counts as one for a block never requested.
    let config = PeerConfig {
        max_pipeline: 2,
        ..PeerConfig::default()
    };
    let mut a = PeerConn::new(
        config,
        Direction::Outbound,
        HASH,
        PeerId([1; 20]),
        reserved(true, true),
        layout().piece_count(),
        Instant::ZERO,
    );
    let mut b = conn(Direction::Inbound, 2, true);
    pump(&mut a, &mut b, t(0));
    b.send_pieces(t(1), &Bitfield::full(4));
    b.unchoke(t(1));
    pump(&mut a, &mut b, t(1));
    let l = layout();
    let blocks: Vec<BlockRef> = l.pieces().flat_map(|p| l.blocks(p)).take(5).collect();
    for blk in &blocks {
        assert!(a.request(t(1), *blk));
        assert!(a.cancel(t(1), *blk));
    }
    for blk in &blocks[1..] {
        assert_eq!(scripted_reject(&mut a, *blk), Ok(()), "{blk:?} remembered");
    }
    assert_eq!(
        scripted_reject(&mut a, blocks[0]),
        Err(PeerError::RejectUnrequested),
        "the oldest was forgotten"
    );
}

#[test]
fn requests_while_choked_are_rejected_or_tolerated() {
    // Proves a choked peer's request gets a reject (Fast) or is ignored and, repeated past the
    // bound, closes the connection (no Fast).
    let l = layout();
    let req = frame(Message::Request {
        piece: 0,
        offset: 0,
        len: 16384,
    });
    let mut c = scripted(true, &[frame(Message::HaveNone), req.clone()]).unwrap();
    let sent: Vec<u8> = std::iter::from_fn(|| c.poll_transmit()).flatten().collect();
    assert!(sent.ends_with(&frame(Message::RejectRequest {
        piece: 0,
        offset: 0,
        len: 16384
    })));
    let mut c = scripted(false, std::slice::from_ref(&req)).unwrap();
    assert!(std::iter::from_fn(|| c.poll_event()).all(|e| !matches!(e, PeerEvent::Request(_))));
    let flood: Vec<u8> = req.repeat(PeerConfig::default().max_peer_requests + 1);
    assert_eq!(
        c.handle_bytes(t(2), &flood, &l),
        Err(PeerError::RequestWhileChoked)
    );
}

#[test]
fn extension_handshake_and_port_may_precede_the_piece_announcement() {
    // Proves the order libtorrent uses (extension handshake, then have-all) is accepted, and a
    // DHT port or keep-alive first does not use up the bitfield's place either.
    let ext = frame(Message::Extended {
        id: 0,
        payload: b"d1:md11:ut_metadatai1eee",
    });
    let mut c = scripted(
        true,
        &[ext, frame(Message::Port(6881)), frame(Message::HaveAll)],
    )
    .expect("accepted");
    assert!(std::iter::from_fn(|| c.poll_event()).any(|e| matches!(e, PeerEvent::Pieces)));
}

#[test]
fn a_late_bitfield_or_have_all_counts_as_haves() {
    // Proves aria2's habit (have-none, haves, then a bitfield summing them up) keeps the
    // connection, and only the pieces not announced before become `Have` events.
    let mut bits = vec![0u8; 1];
    bits[0] = 0b1100_0000; // pieces 0 and 1
    let mut c = scripted(
        true,
        &[
            frame(Message::HaveNone),
            frame(Message::Have { piece: 0 }),
            frame(Message::Bitfield(&bits)),
        ],
    )
    .expect("accepted");
    let haves: Vec<u32> = std::iter::from_fn(|| c.poll_event())
        .filter_map(|e| match e {
            PeerEvent::Have(p) => Some(p.get()),
            _ => None,
        })
        .collect();
    assert_eq!(haves, [0, 1]);
}

#[test]
fn protocol_violations_close_with_a_reason() {
    // Proves each misbehaviour maps to its typed reason.
    let cases: Vec<(bool, Vec<Vec<u8>>, PeerError)> = vec![
        (
            true,
            vec![frame(Message::Unchoke), frame(Message::HaveNone)],
            PeerError::PiecesNotFirst,
        ),
        (
            false,
            vec![frame(Message::HaveAll)],
            PeerError::FastNotNegotiated(crate::wire::id::HAVE_ALL),
        ),
        (
            true,
            vec![frame(Message::Have { piece: 4 })],
            PeerError::PieceOutOfRange(4),
        ),
        (
            true,
            vec![frame(Message::Bitfield(&[0xf1]))],
            PeerError::Bitfield(crate::torrent::BitfieldError::SpareBitsSet),
        ),
        (
            true,
            vec![frame(Message::Request {
                piece: 0,
                offset: 100,
                len: 16384,
            })],
            PeerError::InvalidBlock {
                piece: 0,
                offset: 100,
                len: 16384,
            },
        ),
        (
            true,
            vec![frame(Message::RejectRequest {
                piece: 0,
                offset: 0,
                len: 16384,
            })],
            PeerError::RejectUnrequested,
        ),
        (
            true,
            vec![frame(Message::AllowedFast(9))],
            PeerError::PieceOutOfRange(9),
        ),
    ];
    for (fast, input, expected) in cases {
        assert_eq!(scripted(fast, &input).err(), Some(expected));
    }
}

#[test]
fn timers_fire() {
    // Proves the handshake timeout, keep-alives, request timeouts, snubbing and the idle timeout.
    let mut c = conn(Direction::Outbound, 1, true);
    assert_eq!(c.poll_timeout(), Some(t(20)));
    assert!(c.handle_timeout(t(19)).is_ok());
    assert!(matches!(
        c.handle_timeout(t(20)),
        Err(PeerError::HandshakeTimeout(_))
    ));

    let l = layout();
    let mut c = scripted(true, &[frame(Message::HaveAll), frame(Message::Unchoke)]).unwrap();
    while c.poll_transmit().is_some() {}
    let blk = l.block(l.piece(0).unwrap(), 0).unwrap();
    assert!(c.request(t(1), blk));
    while c.poll_transmit().is_some() {}
    std::iter::from_fn(|| c.poll_event()).for_each(drop);
    assert_eq!(c.poll_timeout(), Some(t(31)), "the request times out first");
    c.handle_timeout(t(31)).unwrap();
    assert_eq!(c.poll_event(), Some(PeerEvent::RequestTimedOut(blk)));
    assert!(c.request(t(31), blk));
    c.handle_bytes(t(60), &frame(Message::KeepAlive), &l)
        .unwrap();
    c.handle_timeout(t(91)).unwrap();
    assert!(
        c.is_snubbed(),
        "60 s without a block while a request was out"
    );
    assert_eq!(
        c.pipeline_target(t(91)),
        1,
        "a snubbed peer gets one request at a time"
    );
    // Our last message was the request at 31 s: the keep-alive is due 90 s later.
    while c.poll_transmit().is_some() {}
    c.handle_timeout(t(120)).unwrap();
    assert!(c.poll_transmit().is_none());
    c.handle_timeout(t(121)).unwrap();
    let keepalive: Vec<u8> = std::iter::from_fn(|| c.poll_transmit()).flatten().collect();
    assert_eq!(
        keepalive,
        frame(Message::KeepAlive),
        "90 s of silence from us"
    );
    assert!(matches!(
        c.handle_timeout(t(240)),
        Err(PeerError::IdleTimeout(_))
    ));
}

#[test]
fn pipeline_follows_the_measured_rate() {
    // Proves the pipeline depth is the bandwidth-delay product, clamped to the configured bounds.
    let (mut a, mut b) = connected(true);
    let l = layout();
    assert_eq!(a.pipeline_target(t(0)), PeerConfig::default().min_pipeline);
    b.send_pieces(t(0), &Bitfield::full(4));
    b.unchoke(t(0));
    pump(&mut a, &mut b, t(0));
    // Move 4 MiB/s for 5 s: the same 7 blocks over and over.
    for s in 0..5u64 {
        for k in 0..256u64 {
            let now = Instant::from_micros(s * 1_000_000 + k * 3_900);
            let blk = l
                .block(l.piece((k % 3) as u32).unwrap(), (k % 2) as u32)
                .unwrap();
            assert!(a.request(now, blk));
            pump(&mut a, &mut b, now);
            assert!(b.send_block(now, blk, Bytes::from(vec![0; blk.len as usize])));
            pump(&mut a, &mut b, now);
        }
    }
    let target = a.pipeline_target(t(5));
    // 4 MiB/s x 3 s / 16 KiB = 768, capped at 250.
    assert_eq!(target, PeerConfig::default().max_pipeline);
    assert!(a.download_rate(t(5)) > 3_000_000);
}

proptest! {
    #[test]
    fn arbitrary_bytes_after_the_handshake_never_panic(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..20),
        fast in any::<bool>(),
    ) {
        // Proves hostile input only ever yields events or a typed error.
        let mut c = conn(Direction::Outbound, 1, fast);
        let l = layout();
        if c.handle_bytes(t(0), &their_handshake(HASH, 2, fast), &l).is_err() {
            return Err(TestCaseError::fail("valid handshake refused"));
        }
        for chunk in chunks {
            if c.handle_bytes(t(1), &chunk, &l).is_err() {
                break;
            }
            while c.poll_event().is_some() {}
            while c.poll_transmit().is_some() {}
        }
        let _ = c.handle_timeout(t(1000));
    }
}

#[test]
fn timeouts_after_odd_times_are_harmless() {
    // Proves early and repeated handle_timeout calls change nothing.
    let mut c = scripted(true, &[frame(Message::HaveAll)]).unwrap();
    for _ in 0..3 {
        c.handle_timeout(t(1)).unwrap();
        c.handle_timeout(Instant::ZERO).unwrap();
    }
    while c.poll_transmit().is_some() {}
    assert!(c.poll_timeout().unwrap() > t(1));
}

#[test]
fn the_frame_timeout_runs_per_frame_not_per_stream() {
    // Proves the frame timeout measures each frame from its own first byte: a slow but steady
    // peer whose every read ends mid-frame (haves cut in 5-byte reads, 20 s apart, so each frame
    // takes 40 s) stays open for ten minutes, while one frame left unfinished closes at 60 s.
    let l = layout();
    let mut c = scripted(true, &[frame(Message::HaveNone)]).unwrap();
    let stream: Vec<u8> = (0..15u32)
        .flat_map(|i| frame(Message::Have { piece: i % 4 }))
        .collect();
    let mut now = t(1);
    for chunk in stream.chunks(5) {
        now = now + std::time::Duration::from_secs(20);
        c.handle_timeout(now).expect("a steady peer stays");
        c.handle_bytes(now, chunk, &l).expect("valid haves");
    }
    assert!(now >= t(500), "the stream ran for minutes");
    assert_eq!(c.receive_buffered_len(), 0, "every frame completed");
    c.handle_bytes(now, &frame(Message::Have { piece: 1 })[..3], &l)
        .unwrap();
    let timeout = PeerConfig::default().frame_timeout;
    let due = now + timeout;
    assert!(
        c.poll_timeout() <= Some(due),
        "the unfinished frame has a deadline"
    );
    c.handle_timeout(now + (timeout - std::time::Duration::from_micros(1)))
        .unwrap();
    assert_eq!(
        c.handle_timeout(due),
        Err(PeerError::FrameTimeout(PeerConfig::default().frame_timeout))
    );
}

#[test]
fn an_honest_rechoke_pace_is_no_choke_storm() {
    // Proves the choke window slides: a peer that chokes and unchokes us every 10 s (a normal
    // rechoke) stays open for ten minutes, while 21 chokes within one minute close it.
    let l = layout();
    let mut c = scripted(true, &[frame(Message::HaveAll)]).unwrap();
    c.set_interested(t(1), true);
    for i in 0..60u64 {
        let now = t(2 + i * 10);
        let pair = [frame(Message::Unchoke), frame(Message::Choke)].concat();
        c.handle_bytes(now, &pair, &l).expect("a choke every 10 s");
    }
    let config = PeerConfig::default();
    let start = t(1000);
    let mut result = Ok(());
    for i in 0..=config.max_chokes {
        let pair = [frame(Message::Unchoke), frame(Message::Choke)].concat();
        result = c.handle_bytes(
            start + std::time::Duration::from_secs(u64::from(i)),
            &pair,
            &l,
        );
        if result.is_err() {
            assert_eq!(
                i, config.max_chokes,
                "the 21st choke in a minute is the storm"
            );
        }
    }
    assert_eq!(
        result,
        Err(PeerError::ChokeStorm {
            chokes: config.max_chokes + 1,
            window: config.choke_window
        })
    );
}

#[test]
fn late_blocks_of_withdrawn_requests_are_not_unrequested() {
    // Proves blocks that answer requests we cancelled, or that a choke voided (no Fast), are
    // dropped as waste without counting towards the unrequested-block bound; a block never
    // requested counts.
    let l = layout();
    let config = PeerConfig {
        max_unrequested_blocks: 0,
        ..PeerConfig::default()
    };
    for fast in [true, false] {
        let mut c = PeerConn::new(
            config.clone(),
            Direction::Outbound,
            HASH,
            PeerId([1; 20]),
            reserved(fast, true),
            l.piece_count(),
            t(0),
        );
        let mut hs = their_handshake(HASH, 9, fast);
        hs.extend(frame(Message::Bitfield(&[0xf0])));
        hs.extend(frame(Message::Unchoke));
        c.handle_bytes(t(1), &hs, &l).unwrap();
        let a = l.block(l.piece(0).unwrap(), 0).unwrap();
        let b = l.block(l.piece(0).unwrap(), 1).unwrap();
        assert!(c.request(t(1), a) && c.request(t(1), b));
        assert!(c.cancel(t(1), a));
        if !fast {
            c.handle_bytes(t(2), &frame(Message::Choke), &l).unwrap();
        }
        let data = vec![0; 16384];
        for blk in [a, b] {
            let m = Message::Piece {
                piece: 0,
                offset: blk.offset,
                data: &data,
            };
            c.handle_bytes(t(3), &frame(m), &l)
                .expect("a late block is not a breach");
        }
        let never = l.block(l.piece(1).unwrap(), 0).unwrap();
        let m = Message::Piece {
            piece: 1,
            offset: never.offset,
            data: &data,
        };
        assert_eq!(
            c.handle_bytes(t(3), &frame(m), &l),
            Err(PeerError::UnrequestedBlocks(0)),
            "fast: {fast}"
        );
    }
}

#[test]
fn chokes_answering_our_lost_interest_are_no_storm() {
    // Proves the chokes our own interest flapping invites do not count: we lose and regain
    // interest 100 times within a minute, and each time the peer's choke arrives just after we
    // are interested again (it crossed our interested on the wire), then it unchokes us; the
    // connection stays open. Uninvited chokes while we stay interested still close it.
    let l = layout();
    let mut c = scripted(true, &[frame(Message::HaveAll)]).unwrap();
    for i in 0..100u64 {
        let now = t(2) + std::time::Duration::from_millis(i * 500);
        c.set_interested(now, false);
        c.set_interested(now, true);
        let pair = [frame(Message::Choke), frame(Message::Unchoke)].concat();
        c.handle_bytes(now, &pair, &l).expect("an invited choke");
    }
    let later = t(200);
    let storm = [frame(Message::Choke), frame(Message::Unchoke)]
        .concat()
        .repeat(PeerConfig::default().max_chokes as usize + 1);
    assert!(matches!(
        c.handle_bytes(later, &storm, &l),
        Err(PeerError::ChokeStorm { .. })
    ));
}

/// A connection of unknown piece count (at most 100 pieces) that has taken the peer's handshake.
fn unlaid() -> PeerConn {
    let mut c = PeerConn::new_unknown_layout(
        PeerConfig::default(),
        Direction::Outbound,
        HASH,
        PeerId([1; 20]),
        reserved(true, true),
        100,
        Instant::ZERO,
    );
    c.handle_bytes(
        Instant::ZERO,
        &their_handshake(HASH, 2, true),
        &TorrentLayout::empty(),
    )
    .unwrap();
    while c.poll_event().is_some() {}
    c
}

fn message(m: Message<'_>) -> Vec<u8> {
    let mut v = Vec::new();
    m.encode_into(&mut v);
    v
}

#[test]
fn announcements_before_the_layout_are_kept_then_checked() {
    // Proves the unknown-layout mode: a bitfield and haves are kept without events, become the
    // peer's pieces with one Pieces event once the layout is known; a bitfield of the wrong size
    // then fails, and an index past the bound fails at once.
    let empty = TorrentLayout::empty();
    let mut c = unlaid();
    let bits = [0b1010_0000];
    c.handle_bytes(Instant::ZERO, &message(Message::Bitfield(&bits)), &empty)
        .unwrap();
    c.handle_bytes(Instant::ZERO, &message(Message::Have { piece: 3 }), &empty)
        .unwrap();
    c.handle_bytes(Instant::ZERO, &message(Message::AllowedFast(1)), &empty)
        .unwrap();
    assert_eq!(c.poll_event(), None);
    assert!(!c.layout_known());
    c.set_layout(&layout()).unwrap();
    assert!(c.layout_known());
    assert_eq!(c.poll_event(), Some(PeerEvent::Pieces));
    assert_eq!(c.peer_pieces().ones().collect::<Vec<_>>(), vec![0, 2, 3]);
    assert!(matches!(c.poll_event(), Some(PeerEvent::AllowedFast(p)) if p.get() == 1));

    let mut c = unlaid();
    c.handle_bytes(Instant::ZERO, &message(Message::Bitfield(&[0, 0])), &empty)
        .unwrap();
    assert!(matches!(
        c.set_layout(&layout()),
        Err(PeerError::Bitfield(_))
    ));

    let mut c = unlaid();
    assert_eq!(
        c.handle_bytes(
            Instant::ZERO,
            &message(Message::Have { piece: 100 }),
            &empty
        ),
        Err(PeerError::PieceOutOfRange(100))
    );

    let mut c = unlaid();
    c.handle_bytes(Instant::ZERO, &message(Message::Have { piece: 50 }), &empty)
        .unwrap();
    assert_eq!(c.set_layout(&layout()), Err(PeerError::PieceOutOfRange(50)));

    // Have-all before the layout: every piece.
    let mut c = unlaid();
    c.handle_bytes(Instant::ZERO, &message(Message::HaveAll), &empty)
        .unwrap();
    c.set_layout(&layout()).unwrap();
    assert!(c.peer_pieces().is_complete());
    assert_eq!(c.peer_pieces().len(), 4);
}
