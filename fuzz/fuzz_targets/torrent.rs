//! Drives a `Torrent` state machine with a script read from the fuzz input: peers connecting and
//! leaving, raw and well-formed wire messages, time passing, disk answers (right, wrong, failed;
//! also to the read back of a failed piece's blocks) and socket backpressure. It must never
//! panic, and its invariants must hold after every step: pieces we have never exceed the piece
//! count, a piece is verified only by its true hash, and a connection closed (by the torrent, for
//! a peer error, or by the driver) gets no more bytes or disk reads until it is added again.
//!
//! Set `TORRENT_DEBUG=1` to print each operation byte and the outputs it caused.
#![no_main]

use core::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

use bt_protocol::io::{ConnId, DiskOp};
use bt_protocol::metainfo::{InfoHash, TorrentLayout};
use bt_protocol::peer::Direction;
use bt_protocol::rng::Rng;
use bt_protocol::time::Instant;
use bt_protocol::torrent::{Bitfield, Torrent, TorrentConfig, TorrentEvent, TorrentOutput};
use bt_protocol::wire::{Handshake, PeerId, Reserved};
use libfuzzer_sys::fuzz_target;

#[path = "common/torrent_script.rs"]
mod torrent_script;
use torrent_script::{Answer, Script, answer_disk, wire_message};

const HASH: InfoHash = InfoHash([5; 20]);
const PIECE: u64 = 32768;
const TOTAL: u64 = 7 * PIECE + 1000;

/// The true content of the torrent: one byte value per piece.
fn piece_digest(piece: u32, len: usize) -> [u8; 20] {
    use sha1::{Digest, Sha1};
    Sha1::digest(vec![piece as u8; len]).into()
}

fuzz_target!(|data: &[u8]| {
    let layout = TorrentLayout::new(PIECE, &[TOTAL]).unwrap();
    let hashes: Vec<[u8; 20]> = layout
        .pieces()
        .map(|p| piece_digest(p.get(), layout.piece_len(p) as usize))
        .collect();
    let mut s = Script(data);
    let have_bits = s.byte().unwrap_or(0);
    let mut have = Bitfield::new(layout.piece_count());
    for i in 0..8 {
        if have_bits & (1 << i) != 0 {
            have.set(i);
        }
    }
    let mut torrent = Torrent::new(
        TorrentConfig::default(),
        HASH,
        layout.clone(),
        hashes,
        have,
        PeerId([1; 20]),
        Rng::new(u64::from(have_bits)),
    );
    let mut now = Instant::ZERO;
    let mut pending: VecDeque<DiskOp> = VecDeque::new();
    // Connections closed and not added again.
    let mut closed: BTreeSet<ConnId> = BTreeSet::new();

    let debug = std::env::var_os("TORRENT_DEBUG").is_some();
    for _ in 0..10_000 {
        let Some(op) = s.byte() else { break };
        if debug {
            eprintln!("op {op} (kind {}, conn {}) at {now:?}", op % 10, op >> 5);
        }
        let conn = ConnId(u64::from(op >> 5));
        let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, op >> 5)), 6881);
        match op % 10 {
            0 => {
                let dir = if op & 0x10 != 0 {
                    Direction::Inbound
                } else {
                    Direction::Outbound
                };
                if torrent.add_peer(now, conn, addr, dir).is_ok() {
                    closed.remove(&conn);
                }
            }
            1 => {
                let len = usize::from(s.byte().unwrap_or(0));
                let raw = s.take(len).to_vec();
                torrent.handle_bytes(now, conn, &raw);
            }
            2 => {
                let mut reserved = Reserved::NONE;
                reserved.set_fast(op & 0x10 != 0);
                reserved.set_extension_protocol(op & 0x08 != 0);
                let hs = Handshake {
                    reserved,
                    info_hash: HASH,
                    peer_id: PeerId([op; 20]),
                };
                torrent.handle_bytes(now, conn, &hs.encode());
            }
            3 => {
                let buf = wire_message(&mut s);
                torrent.handle_bytes(now, conn, &buf);
            }
            4 => {
                now = now + Duration::from_secs(u64::from(s.byte().unwrap_or(0)));
                torrent.handle_timeout(now);
            }
            5 | 6 | 7 => {
                // Answer the oldest disk op: truthfully (5), with a wrong hash (6), or a failure (7);
                // too few block hashes with bit 4 set.
                let how = Answer {
                    fail: op % 10 == 7,
                    wrong: op % 10 == 6,
                    short: op & 0x10 != 0,
                };
                answer_disk(&mut torrent, now, &mut pending, how, &layout, piece_digest);
            }
            8 => torrent.peer_disconnected(now, conn),
            _ => torrent.handle_sent(now, conn, usize::from(s.byte().unwrap_or(0)) * 1024),
        }
        while let Some(out) = torrent.poll_output() {
            if debug {
                match &out {
                    TorrentOutput::Transmit { conn, bytes } => {
                        eprintln!("  Transmit {conn:?}: {} bytes", bytes.len())
                    }
                    other => eprintln!("  {other:?}"),
                }
            }
            match out {
                TorrentOutput::Transmit { conn, .. } => {
                    assert!(
                        !closed.contains(&conn),
                        "bytes for {conn:?} after it closed"
                    );
                }
                TorrentOutput::Close { conn, .. } => {
                    assert!(!closed.contains(&conn), "{conn:?} closed twice");
                }
                TorrentOutput::Event(TorrentEvent::PeerClosed { conn, .. }) => {
                    assert!(closed.insert(conn), "{conn:?} closed twice");
                }
                TorrentOutput::Disk(d) => {
                    if let DiskOp::Read { conn, .. } = &d {
                        assert!(
                            !closed.contains(conn),
                            "a read for {conn:?} after it closed"
                        );
                    }
                    if pending.len() < 4096 {
                        pending.push_back(d);
                    }
                }
                TorrentOutput::Event(TorrentEvent::PieceVerified(p)) => {
                    assert!(torrent.have().get(p.get()));
                }
                _ => {}
            }
        }
        assert!(torrent.have().count() <= layout.piece_count());
        assert!(torrent.peer_count() <= TorrentConfig::default().max_peers);
    }
});
