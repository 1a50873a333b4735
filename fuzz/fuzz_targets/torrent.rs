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

use bt_protocol::io::{ConnId, DiskDone, DiskError, DiskOp};
use bt_protocol::metainfo::{InfoHash, TorrentLayout};
use bt_protocol::peer::Direction;
use bt_protocol::rng::Rng;
use bt_protocol::time::Instant;
use bt_protocol::torrent::{Bitfield, Torrent, TorrentConfig, TorrentEvent, TorrentOutput};
use bt_protocol::wire::{Handshake, Message, PeerId, Reserved};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

const HASH: InfoHash = InfoHash([5; 20]);
const PIECE: u64 = 32768;
const TOTAL: u64 = 7 * PIECE + 1000;

/// The true content of the torrent: one byte value per piece.
fn piece_digest(piece: u32, len: usize) -> [u8; 20] {
    use sha1::{Digest, Sha1};
    Sha1::digest(vec![piece as u8; len]).into()
}

struct Script<'a>(&'a [u8]);

impl Script<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes([
            self.byte()?,
            self.byte()?,
            self.byte()?,
            self.byte()?,
        ]))
    }
    fn take(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }
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
                let kind = s.byte().unwrap_or(0);
                let a = s.u32().unwrap_or(0) % 9;
                let offset = (u32::from(s.byte().unwrap_or(0)) % 3) * 16384;
                let len = if s.byte().unwrap_or(0) & 1 == 0 {
                    16384
                } else {
                    1000
                };
                let block_data = vec![a as u8; len as usize];
                let bits = [s.byte().unwrap_or(0)];
                let m = match kind % 12 {
                    0 => Message::Unchoke,
                    1 => Message::Choke,
                    2 => Message::Interested,
                    3 => Message::NotInterested,
                    4 => Message::Have { piece: a },
                    5 => Message::Bitfield(&bits),
                    6 => Message::HaveAll,
                    7 => Message::Request {
                        piece: a,
                        offset,
                        len,
                    },
                    8 => Message::Piece {
                        piece: a,
                        offset,
                        data: &block_data,
                    },
                    9 => Message::Cancel {
                        piece: a,
                        offset,
                        len,
                    },
                    10 => Message::RejectRequest {
                        piece: a,
                        offset,
                        len,
                    },
                    _ => Message::AllowedFast(a),
                };
                let mut buf = Vec::new();
                m.encode_into(&mut buf);
                torrent.handle_bytes(now, conn, &buf);
            }
            4 => {
                now = now + Duration::from_secs(u64::from(s.byte().unwrap_or(0)));
                torrent.handle_timeout(now);
            }
            5 | 6 | 7 => {
                // Answer the oldest disk op: truthfully (5), with a wrong hash (6), or a failure (7).
                if let Some(op_done) = pending.pop_front() {
                    let fail = op % 10 == 7;
                    let err = || DiskError("injected".into());
                    let done = match op_done {
                        DiskOp::Write { block, .. } => DiskDone::Written {
                            block,
                            result: if fail { Err(err()) } else { Ok(()) },
                        },
                        DiskOp::Hash { piece } => DiskDone::Hashed {
                            piece,
                            result: if fail {
                                Err(err())
                            } else if op % 10 == 6 {
                                Ok([0xee; 20])
                            } else {
                                Ok(piece_digest(piece.get(), layout.piece_len(piece) as usize))
                            },
                        },
                        DiskOp::HashBlocks { piece, blocks } => DiskDone::BlockHashes {
                            piece,
                            result: if fail {
                                Err(err())
                            } else {
                                // The true block (6: a wrong one), or too few digests (op 5 with
                                // bit 4 set).
                                let take = if op & 0x10 != 0 {
                                    blocks.len() / 2
                                } else {
                                    blocks.len()
                                };
                                Ok(blocks[..take]
                                    .iter()
                                    .map(|b| {
                                        use sha1::{Digest, Sha1};
                                        let byte = b.piece.get() as u8 ^ u8::from(op % 10 == 6);
                                        Sha1::digest(vec![byte; b.len as usize]).into()
                                    })
                                    .collect())
                            },
                        },
                        DiskOp::Read { conn, block } => DiskDone::Read {
                            conn,
                            block,
                            result: if fail {
                                Err(err())
                            } else {
                                Ok(Bytes::from(vec![
                                    block.piece.get() as u8;
                                    block.len as usize
                                ]))
                            },
                        },
                    };
                    let refuted = match &done {
                        DiskDone::Hashed { piece, result } => (result.as_ref().ok()
                            != Some(&piece_digest(
                                piece.get(),
                                layout.piece_len(*piece) as usize,
                            )))
                        .then_some(*piece),
                        _ => None,
                    };
                    let had = refuted.map(|p| torrent.have().get(p.get()));
                    torrent.handle_disk(now, done);
                    if let (Some(p), Some(false)) = (refuted, had) {
                        assert!(
                            !torrent.have().get(p.get()),
                            "piece {p} verified by a wrong or failed hash"
                        );
                    }
                }
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
