//! Drives a `Torrent` through the extension protocol (issue 7) with a script read from the fuzz
//! input: a magnet link's torrent (or, by the first byte, a seeder that knows its metadata)
//! meets peers that send extension handshakes (any ids, sizes, ports), `ut_metadata` pieces
//! (honest, corrupt, of the wrong length or size), requests and rejects, PEX messages, PORT
//! messages and raw extended messages, besides everything the `torrent` target sends: raw and
//! well-formed wire messages, time passing, disk answers and backpressure. It must never panic,
//! and after every step: while the metadata is unknown the layout has no piece and no disk work is
//! asked for; once known, the info bytes hash to the info hash and the layout is the real one; a
//! closed connection gets no more bytes; pieces are verified only by their true hash.
//!
//! Set `TORRENT_DEBUG=1` to print each operation byte and the outputs it caused.
#![no_main]

use core::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

use bt_protocol::io::{ConnId, DiskOp};
use bt_protocol::metainfo::{Info, InfoHash};
use bt_protocol::peer::Direction;
use bt_protocol::rng::Rng;
use bt_protocol::time::Instant;
use bt_protocol::torrent::{Bitfield, Torrent, TorrentConfig, TorrentEvent, TorrentOutput};
use bt_protocol::wire::{
    ExtendedHandshake, Handshake, Message, MetadataMessage, PeerId, PexFlags, PexMessage, Reserved,
    metadata_piece,
};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

#[path = "common/torrent_script.rs"]
mod torrent_script;
use torrent_script::{Answer, Script, answer_disk, wire_message};

const PIECE: u64 = 32768;
const TOTAL: u64 = 7 * PIECE + 1000;

/// The true content of the torrent: one byte value per piece. Digests are computed once.
fn piece_digest(piece: u32, len: usize) -> [u8; 20] {
    use sha1::{Digest, Sha1};
    static DIGESTS: std::sync::OnceLock<Vec<[u8; 20]>> = std::sync::OnceLock::new();
    let table = DIGESTS.get_or_init(|| {
        (0..8u32)
            .map(|p| {
                let len = if p == 7 { TOTAL - 7 * PIECE } else { PIECE };
                Sha1::digest(vec![p as u8; len as usize]).into()
            })
            .collect()
    });
    let full = if piece == 7 { TOTAL - 7 * PIECE } else { PIECE };
    match table.get(piece as usize) {
        Some(d) if len as u64 == full => *d,
        _ => Sha1::digest(vec![piece as u8; len]).into(),
    }
}

/// The info dictionary of the torrent (8 pieces of [`piece_digest`] content), padded with
/// `pad` bytes so that its metadata spans one or two `ut_metadata` pieces.
fn info_dict(pad: usize) -> Vec<u8> {
    let mut pieces = Vec::new();
    for p in 0..8u32 {
        let len = if p == 7 { TOTAL - 7 * PIECE } else { PIECE };
        pieces.extend_from_slice(&piece_digest(p, len as usize));
    }
    let mut info =
        format!("d6:lengthi{TOTAL}e4:name4:fuzz12:piece lengthi{PIECE}e6:pieces160:").into_bytes();
    info.extend_from_slice(&pieces);
    info.extend_from_slice(format!("5:x-pad{pad}:").as_bytes());
    info.extend(std::iter::repeat_n(b'0', pad));
    info.push(b'e');
    info
}

fn extended(id: u8, payload: &[u8]) -> Vec<u8> {
    let mut buf = Vec::new();
    Message::Extended { id, payload }.encode_into(&mut buf);
    buf
}

fuzz_target!(|data: &[u8]| {
    let mut s = Script(data);
    let setup = s.byte().unwrap_or(0);
    static INFOS: std::sync::OnceLock<[(Vec<u8>, Info); 2]> = std::sync::OnceLock::new();
    let infos = INFOS.get_or_init(|| {
        [0, 20_000].map(|pad| {
            let info = info_dict(pad);
            let parsed = Info::from_info_bytes(&info).unwrap();
            (info, parsed)
        })
    });
    let (info, parsed) = &infos[usize::from(setup & 1)];
    let layout = parsed.layout.clone();
    let hash = InfoHash::of_info_bytes(&info);
    let config = TorrentConfig {
        listen_port: (setup & 4 != 0).then_some(6881),
        dht_port: (setup & 8 != 0).then_some(6999),
        pex_interval: Duration::from_secs(60),
        ..TorrentConfig::default()
    };
    let mut torrent = if setup & 2 != 0 {
        let mut t = Torrent::new(
            config,
            hash,
            layout.clone(),
            parsed.pieces.clone(),
            Bitfield::full(layout.piece_count()),
            PeerId([1; 20]),
            Rng::new(u64::from(setup)),
        );
        t.set_metadata(Bytes::from(info.clone()), setup & 16 != 0);
        t
    } else {
        Torrent::new_magnet(config, hash, PeerId([1; 20]), Rng::new(u64::from(setup)))
    };
    let mut now = Instant::ZERO;
    let mut pending: VecDeque<DiskOp> = VecDeque::new();
    // Connections closed and not added again.
    let mut closed: BTreeSet<ConnId> = BTreeSet::new();

    let debug = std::env::var_os("TORRENT_DEBUG").is_some();
    for _ in 0..10_000 {
        let Some(op) = s.byte() else { break };
        if debug {
            eprintln!("op {op} (kind {}, conn {}) at {now:?}", op % 16, op >> 5);
        }
        let conn = ConnId(u64::from(op >> 5));
        let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, op >> 5)), 6881);
        match op % 16 {
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
                // The kind takes the low 4 bits of `op`: the extensions come from their own byte
                // (the extension protocol is on unless bit 1 says otherwise).
                let flags = s.byte().unwrap_or(0);
                let mut reserved = Reserved::NONE;
                reserved.set_fast(flags & 1 != 0);
                reserved.set_extension_protocol(flags & 2 == 0);
                reserved.set_dht(flags & 4 != 0);
                let hs = Handshake {
                    reserved,
                    info_hash: hash,
                    peer_id: PeerId([op ^ flags; 20]),
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
                    fail: op % 16 == 7,
                    wrong: op % 16 == 6,
                    short: op & 0x10 != 0,
                };
                answer_disk(&mut torrent, now, &mut pending, how, &layout, piece_digest);
            }
            8 => torrent.peer_disconnected(now, conn),
            9 => torrent.handle_sent(now, conn, usize::from(s.byte().unwrap_or(0)) * 1024),
            10 => {
                // An extension handshake: ids, size (true or not), port, our address.
                let flags = s.byte().unwrap_or(0);
                let mut m = std::collections::BTreeMap::new();
                m.insert("ut_metadata".to_owned(), s.byte().unwrap_or(0) % 4);
                if flags & 1 != 0 {
                    m.insert("ut_pex".to_owned(), s.byte().unwrap_or(0) % 4);
                }
                let size = match flags >> 6 {
                    0 => Some(info.len() as u64),
                    1 => None,
                    2 => Some(u64::from(s.u32().unwrap_or(0))),
                    _ => Some(u64::MAX),
                };
                let hs = ExtendedHandshake {
                    m,
                    port: (flags & 2 != 0).then_some(6881),
                    yourip: (flags & 4 != 0).then_some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9))),
                    metadata_size: size,
                    ..ExtendedHandshake::default()
                };
                torrent.handle_bytes(now, conn, &extended(0, &hs.encode()));
            }
            11 => {
                // A metadata piece: honest, corrupt, cut short, or with another total size.
                let piece = u32::from(s.byte().unwrap_or(0) % 3);
                let how = s.byte().unwrap_or(0);
                let mut data = metadata_piece(&info, piece).unwrap_or_default().to_vec();
                if how & 1 != 0 && !data.is_empty() {
                    let at = usize::from(how) % data.len();
                    data[at] ^= 0x55;
                }
                if how & 2 != 0 {
                    data.truncate(usize::from(how));
                }
                let total_size = if how & 4 != 0 {
                    12345
                } else {
                    info.len() as u64
                };
                let mut payload = Vec::new();
                MetadataMessage::Data {
                    piece,
                    total_size,
                    data: &data,
                }
                .encode_into(&mut payload);
                torrent.handle_bytes(now, conn, &extended(3, &payload));
            }
            12 => {
                let piece = u32::from(s.byte().unwrap_or(0));
                let m = if piece & 0x80 != 0 {
                    MetadataMessage::Reject { piece: piece % 4 }
                } else {
                    MetadataMessage::Request { piece: piece % 4 }
                };
                let mut payload = Vec::new();
                m.encode_into(&mut payload);
                let count = usize::from(s.byte().unwrap_or(0) % 64) + 1;
                let one = extended(3, &payload);
                torrent.handle_bytes(now, conn, &one.repeat(count));
            }
            13 => {
                let n = s.byte().unwrap_or(0) % 8;
                let added = (0..n)
                    .map(|i| {
                        let a = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 1, i)), 6881);
                        (a, PexFlags(i))
                    })
                    .collect();
                let m = PexMessage {
                    added,
                    dropped: vec![addr],
                };
                torrent.handle_bytes(now, conn, &extended(1, &m.encode()));
            }
            14 => {
                let mut buf = Vec::new();
                Message::Port(u16::from(s.byte().unwrap_or(0))).encode_into(&mut buf);
                torrent.handle_bytes(now, conn, &buf);
            }
            _ => {
                let id = s.byte().unwrap_or(0) % 5;
                let len = usize::from(s.byte().unwrap_or(0));
                let raw = s.take(len).to_vec();
                torrent.handle_bytes(now, conn, &extended(id, &raw));
            }
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
                    assert!(torrent.has_metadata(), "disk work before the metadata");
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
        if torrent.has_metadata() {
            let bytes = torrent.info_bytes().expect("known metadata is served");
            assert_eq!(InfoHash::of_info_bytes(bytes), hash);
            assert_eq!(torrent.layout(), &layout);
        } else {
            assert_eq!(torrent.layout().piece_count(), 0);
            assert!(!torrent.is_complete());
            assert!(torrent.info_bytes().is_none());
        }
        assert!(torrent.peer_count() <= TorrentConfig::default().max_peers);
    }
});
