//! Tests of [`Torrent`] against a scripted peer: what it requests, and when.

use core::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::collections::BTreeMap;

use super::*;
use crate::io::{ConnId, DiskOp};
use crate::metainfo::{InfoHash, TorrentLayout};
use crate::peer::Direction;
use crate::rng::Rng;
use crate::time::Instant;
use crate::wire::{Handshake, Message, PeerId, Reserved};

const HASH: InfoHash = InfoHash([6; 20]);

fn frame(m: Message<'_>) -> Vec<u8> {
    let mut v = Vec::new();
    m.encode_into(&mut v);
    v
}

/// A leecher torrent of 8 pieces with one outbound peer that has everything and chokes us.
fn leecher_with_choking_seed() -> (Torrent, ConnId, TorrentLayout) {
    let layout = TorrentLayout::new(32768, &[8 * 32768]).unwrap();
    let mut t = Torrent::new(
        TorrentConfig::default(),
        HASH,
        layout.clone(),
        vec![[0; 20]; 8],
        Bitfield::new(8),
        PeerId([1; 20]),
        Rng::new(1),
    );
    let conn = ConnId(1);
    let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), 6881);
    t.add_peer(Instant::ZERO, conn, addr, Direction::Outbound)
        .unwrap();
    let mut reserved = Reserved::NONE;
    reserved.set_fast(true);
    let mut input = Handshake {
        reserved,
        info_hash: HASH,
        peer_id: PeerId([2; 20]),
    }
    .encode()
    .to_vec();
    input.extend(frame(Message::HaveAll));
    t.handle_bytes(Instant::ZERO, conn, &input);
    (t, conn, layout)
}

/// The requests among the torrent's outputs since the last call.
fn requests(t: &mut Torrent) -> Vec<(u32, u32)> {
    let mut sent = Vec::new();
    while let Some(out) = t.poll_output() {
        if let TorrentOutput::Transmit { bytes, .. } = out {
            sent.extend_from_slice(&bytes);
        }
    }
    // Walk the frames after the handshake (68 bytes, if present at the start).
    let mut rest: &[u8] = if sent.len() >= 68 && sent[0] == 19 {
        &sent[68..]
    } else {
        &sent
    };
    let mut found = Vec::new();
    while rest.len() >= 4 {
        let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        if len >= 13 && rest[4] == crate::wire::id::REQUEST {
            let piece = u32::from_be_bytes(rest[5..9].try_into().unwrap());
            let offset = u32::from_be_bytes(rest[9..13].try_into().unwrap());
            found.push((piece, offset));
        }
        rest = &rest[4 + len..];
    }
    found
}

#[test]
fn choked_leecher_requests_only_allowed_fast_pieces() {
    // Proves BEP 6 use of allowed-fast: while choked we request the allowed piece and nothing
    // else, and after an unchoke the rest.
    let (mut t, conn, _) = leecher_with_choking_seed();
    assert!(
        requests(&mut t).is_empty(),
        "choked, nothing allowed: no requests"
    );
    t.handle_bytes(Instant::ZERO, conn, &frame(Message::AllowedFast(5)));
    let reqs = requests(&mut t);
    assert_eq!(reqs, vec![(5, 0), (5, 16384)]);
    t.handle_bytes(Instant::ZERO, conn, &frame(Message::Unchoke));
    let reqs = requests(&mut t);
    assert!(
        !reqs.is_empty() && reqs.iter().all(|(p, _)| *p != 5),
        "{reqs:?}"
    );
}

#[test]
fn rates_and_peer_count_are_reported() {
    // Proves the getters a user interface polls.
    let (t, _, _) = leecher_with_choking_seed();
    assert_eq!(t.peer_count(), 1);
    assert_eq!(t.rates(Instant::ZERO), (0, 0));
    assert!(!t.is_complete());
}

/// Drains `t`'s outputs: the bytes transmitted to each connection, and the disk reads.
fn drain(t: &mut Torrent, sent: &mut BTreeMap<ConnId, usize>, reads: &mut Vec<DiskOp>) {
    while let Some(out) = t.poll_output() {
        match out {
            TorrentOutput::Transmit { conn, bytes } => {
                *sent.entry(conn).or_default() += bytes.len()
            }
            TorrentOutput::Disk(op @ DiskOp::Read { .. }) => reads.push(op),
            _ => {}
        }
    }
}

#[test]
fn a_block_counts_as_uploaded_once_written_and_never_when_its_connection_ends_first() {
    // Proves `uploaded` counts a block served only once the driver reports its last byte
    // written, and never one queued for a connection that ends before that: a seeding goal
    // then never counts bytes its leecher did not get.
    let layout = TorrentLayout::new(32768, &[2 * 32768]).unwrap();
    let mut storage = crate::harness::content(2 * 32768);
    let mut t = Torrent::new(
        TorrentConfig::default(),
        HASH,
        layout.clone(),
        vec![[0; 20]; 2],
        Bitfield::full(2),
        PeerId([1; 20]),
        Rng::new(1),
    );
    let now = Instant::ZERO;
    let (a, b) = (ConnId(1), ConnId(2));
    let (mut sent, mut reads) = (BTreeMap::new(), Vec::new());
    for (conn, n) in [(a, 2u8), (b, 3)] {
        let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, n)), 6881);
        t.add_peer(now, conn, addr, Direction::Inbound).unwrap();
        let mut input = crate::harness::fast_handshake(HASH, PeerId([n; 20]));
        input.extend(frame(Message::HaveNone));
        input.extend(frame(Message::Interested));
        t.handle_bytes(now, conn, &input);
        drain(&mut t, &mut sent, &mut reads);
        let request = Message::Request {
            piece: 0,
            offset: 0,
            len: 16384,
        };
        t.handle_bytes(now, conn, &frame(request));
        drain(&mut t, &mut sent, &mut reads);
    }
    assert_eq!(reads.len(), 2, "one read per peer's request");
    let before: BTreeMap<ConnId, usize> = sent.clone();
    for op in std::mem::take(&mut reads) {
        let done = crate::harness::answer_disk(&layout, &mut storage, false, op);
        t.handle_disk(now, done);
        drain(&mut t, &mut sent, &mut reads);
    }
    assert_eq!(t.stats().uploaded, 0, "queued, not yet written");

    // Everything before the block, then all of it but its last byte, then the last byte.
    t.handle_sent(now, a, before[&a]);
    let block_bytes = sent[&a] - before[&a];
    assert!(block_bytes >= 16384 + 13, "the piece message went out");
    t.handle_sent(now, a, block_bytes - 1);
    assert_eq!(t.stats().uploaded, 0, "one byte of it is still unwritten");
    t.handle_sent(now, a, 1);
    assert_eq!(t.stats().uploaded, 16384);

    // Peer b's block was queued too, but its connection ends before any of it is written.
    t.peer_disconnected(now, b);
    t.handle_sent(now, b, sent[&b]);
    assert_eq!(t.stats().uploaded, 16384, "b's block never reached it");
}
