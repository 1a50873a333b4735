//! Tests of the extension protocol of [`Torrent`]: our BEP 10 handshake, BEP 9
//! metadata serving and the magnet phase, and BEP 5 `port`. Scripted peers speak to one torrent
//! through [`Lab`] (also used by `pex_tests.rs`); the whole-swarm magnet download runs on the
//! in-memory [`Swarm`].

use core::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::harness::{NodeSpec, Swarm, content, info_dict};
use crate::io::{ConnId, DiskOp};
use crate::metainfo::{Info, InfoHash};
use crate::peer::{Direction, PeerError};
use crate::rng::Rng;
use crate::time::Instant;
use crate::wire::{
    ExtendedHandshake, FrameDecoder, Handshake, METADATA_PIECE_LEN, Message, MetadataMessage,
    PeerId, Reserved, WireLimits, metadata_piece,
};

/// 40 pieces of 32 KiB.
pub(super) const PIECE_LEN: u64 = 32 * 1024;
pub(super) const TOTAL: u64 = 40 * PIECE_LEN;

/// What the torrent sent a scripted peer, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Got {
    Extended { id: u8, payload: Vec<u8> },
    Port(u16),
    HaveNone,
    HaveAll,
    Bitfield,
    Interested,
    Other(String),
}

/// One torrent and the scripted peers connected to it.
pub(super) struct Lab {
    pub(super) t: Torrent,
    pub(super) now: Instant,
    rx: BTreeMap<ConnId, (FrameDecoder, bool)>,
    pub(super) got: BTreeMap<ConnId, Vec<Got>>,
    pub(super) events: Vec<TorrentEvent>,
    pub(super) closed: Vec<(ConnId, CloseReason)>,
    pub(super) disk: Vec<DiskOp>,
    /// Bytes handed to each connection and not yet reported sent.
    pub(super) unsent: BTreeMap<ConnId, usize>,
}

pub(super) fn addr(n: u8) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, n)), 6881)
}

pub(super) fn frame(m: Message<'_>) -> Vec<u8> {
    let mut v = Vec::new();
    m.encode_into(&mut v);
    v
}

/// Reserved bits with the Fast extension, the extension protocol, and optionally the DHT bit.
pub(super) fn reserved(dht: bool) -> Reserved {
    let mut r = Reserved::NONE;
    r.set_fast(true);
    r.set_extension_protocol(true);
    r.set_dht(dht);
    r
}

/// An extension handshake with `m` and the given metadata size and listen port.
pub(super) fn ext_hs(m: &[(&str, u8)], metadata_size: Option<u64>, port: Option<u16>) -> Vec<u8> {
    let hs = ExtendedHandshake {
        m: m.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
        metadata_size,
        port,
        ..ExtendedHandshake::default()
    };
    frame(Message::Extended {
        id: 0,
        payload: &hs.encode(),
    })
}

/// A `ut_metadata` message to our id.
pub(super) fn meta(m: MetadataMessage<'_>) -> Vec<u8> {
    let mut payload = Vec::new();
    m.encode_into(&mut payload);
    frame(Message::Extended {
        id: OUR_UT_METADATA,
        payload: &payload,
    })
}

impl Lab {
    pub(super) fn with(t: Torrent) -> Lab {
        Lab {
            t,
            now: Instant::ZERO,
            rx: BTreeMap::new(),
            got: BTreeMap::new(),
            events: Vec::new(),
            closed: Vec::new(),
            disk: Vec::new(),
            unsent: BTreeMap::new(),
        }
    }

    /// A magnet link's torrent for `hash`.
    pub(super) fn magnet(config: TorrentConfig, hash: InfoHash) -> Lab {
        Lab::with(Torrent::new_magnet(
            config,
            hash,
            PeerId([1; 20]),
            Rng::new(1),
        ))
    }

    /// A seeder of the torrent whose info dictionary is `info`.
    pub(super) fn seeder(config: TorrentConfig, info: &[u8], private: bool) -> Lab {
        let parsed = Info::from_info_bytes(info).unwrap();
        let n = parsed.layout.piece_count();
        let mut t = Torrent::new(
            config,
            InfoHash::of_info_bytes(info),
            parsed.layout,
            parsed.pieces,
            Bitfield::full(n),
            PeerId([1; 20]),
            Rng::new(1),
        );
        t.set_metadata(Bytes::from(info.to_vec()), private);
        Lab::with(t)
    }

    /// Connects scripted peer `n` (at [`addr`]`(n)`) in `direction` and sends its handshake.
    pub(super) fn connect(&mut self, n: u8, direction: Direction, reserved: Reserved) -> ConnId {
        let conn = ConnId(u64::from(n));
        self.t.add_peer(self.now, conn, addr(n), direction).unwrap();
        self.rx
            .insert(conn, (FrameDecoder::new(WireLimits::default()), false));
        let hs = Handshake {
            reserved,
            info_hash: self.t.info_hash(),
            peer_id: PeerId([n; 20]),
        };
        self.send(conn, &hs.encode());
        conn
    }

    /// Bytes from peer `conn` to the torrent.
    pub(super) fn send(&mut self, conn: ConnId, bytes: &[u8]) {
        self.t.handle_bytes(self.now, conn, bytes);
        self.drain();
    }

    /// Moves the clock on by `d` and fires the torrent's timers on the way.
    pub(super) fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        while let Some(at) = self.t.poll_timeout().filter(|at| *at <= end) {
            self.now = self.now.max(at);
            self.t.handle_timeout(self.now);
            self.drain();
        }
        self.now = end;
        self.t.handle_timeout(self.now);
        self.drain();
    }

    /// Reports every byte handed out as sent.
    pub(super) fn ack_all(&mut self) {
        let unsent = std::mem::take(&mut self.unsent);
        for (conn, n) in unsent {
            self.t.handle_sent(self.now, conn, n);
        }
        self.drain();
    }

    pub(super) fn drain(&mut self) {
        while let Some(out) = self.t.poll_output() {
            match out {
                TorrentOutput::Transmit { conn, bytes } => {
                    *self.unsent.entry(conn).or_default() += bytes.len();
                    let (dec, hs_done) = self.rx.get_mut(&conn).expect("a lab connection");
                    let got = self.got.entry(conn).or_default();
                    let mut rest: &[u8] = &bytes;
                    loop {
                        let n = dec.extend(rest);
                        rest = &rest[n..];
                        if !*hs_done {
                            match dec.take_handshake().unwrap() {
                                Some(_) => *hs_done = true,
                                None if rest.is_empty() => break,
                                None => continue,
                            }
                        }
                        while let Some(f) = dec.next_frame().unwrap() {
                            got.push(match f.message() {
                                Message::Extended { id, payload } => Got::Extended {
                                    id,
                                    payload: payload.to_vec(),
                                },
                                Message::Port(p) => Got::Port(p),
                                Message::HaveNone => Got::HaveNone,
                                Message::HaveAll => Got::HaveAll,
                                Message::Bitfield(_) => Got::Bitfield,
                                Message::Interested => Got::Interested,
                                m => Got::Other(format!("{m:?}")),
                            });
                        }
                        if rest.is_empty() {
                            break;
                        }
                    }
                }
                TorrentOutput::Close { conn, reason } => self.closed.push((conn, reason)),
                TorrentOutput::Disk(op) => self.disk.push(op),
                TorrentOutput::Event(e) => self.events.push(e),
            }
        }
    }

    /// What the torrent sent `conn` since the last call.
    pub(super) fn take(&mut self, conn: ConnId) -> Vec<Got> {
        self.got.remove(&conn).unwrap_or_default()
    }

    /// The `ut_metadata` requests sent to `conn` (on its id `their_id`) since the last call.
    pub(super) fn metadata_requests(&mut self, conn: ConnId, their_id: u8) -> Vec<u32> {
        self.take(conn)
            .into_iter()
            .filter_map(|g| match g {
                Got::Extended { id, payload } if id == their_id => {
                    match MetadataMessage::decode(&payload) {
                        Ok(MetadataMessage::Request { piece }) => Some(piece),
                        _ => None,
                    }
                }
                _ => None,
            })
            .collect()
    }

    /// The extension handshakes sent to `conn` since the last call, parsed.
    pub(super) fn handshakes(&mut self, conn: ConnId) -> Vec<ExtendedHandshake> {
        self.take(conn)
            .into_iter()
            .filter_map(|g| match g {
                Got::Extended { id: 0, payload } => {
                    Some(ExtendedHandshake::parse(&payload).unwrap())
                }
                _ => None,
            })
            .collect()
    }
}

/// Answers `pieces` of `info` to the torrent from `conn`.
fn answer(lab: &mut Lab, conn: ConnId, info: &[u8], pieces: &[u32]) {
    for &piece in pieces {
        let data = metadata_piece(info, piece).unwrap();
        lab.send(
            conn,
            &meta(MetadataMessage::Data {
                piece,
                total_size: info.len() as u64,
                data,
            }),
        );
    }
}

#[test]
fn our_extension_handshake_says_what_we_offer() {
    // Proves our BEP 10 handshake goes out right after the BitTorrent one, before the piece
    // announcement, with m (ut_metadata 3, ut_pex 1), v, p, reqq, metadata_size and yourip, and
    // that the DHT port follows it to a DHT peer (BEP 5); a private torrent offers no ut_pex.
    let (info, _) = info_dict(PIECE_LEN, TOTAL, 0);
    let config = TorrentConfig {
        listen_port: Some(51413),
        dht_port: Some(6999),
        ..TorrentConfig::default()
    };
    let mut lab = Lab::seeder(config.clone(), &info, false);
    let c = lab.connect(7, Direction::Outbound, reserved(true));
    let got = lab.take(c);
    let Got::Extended { id: 0, payload } = &got[0] else {
        panic!("first message: {got:?}");
    };
    let hs = ExtendedHandshake::parse(payload).unwrap();
    assert_eq!(hs.extension_id("ut_metadata"), Some(3));
    assert_eq!(hs.extension_id("ut_pex"), Some(1));
    assert_eq!(hs.client.as_deref(), Some("bt/0.1.0"));
    assert_eq!(hs.port, Some(51413));
    assert_eq!(hs.reqq, Some(500));
    assert_eq!(hs.metadata_size, Some(info.len() as u64));
    assert_eq!(hs.yourip, Some(addr(7).ip()));
    assert_eq!(got[1], Got::Port(6999));
    assert_eq!(got[2], Got::HaveAll);

    // Without the DHT bit the peer gets no port; a private torrent offers no PEX.
    let mut lab = Lab::seeder(config, &info, true);
    let c = lab.connect(8, Direction::Outbound, reserved(false));
    let got = lab.take(c);
    assert!(!got.iter().any(|g| matches!(g, Got::Port(_))), "{got:?}");
    let Got::Extended { id: 0, payload } = &got[0] else {
        panic!("first message: {got:?}");
    };
    let hs = ExtendedHandshake::parse(payload).unwrap();
    assert_eq!(hs.extension_id("ut_pex"), None);
    assert_eq!(hs.extension_id("ut_metadata"), Some(3));

    // A peer without the extension bit gets no extension handshake.
    let mut lab = Lab::seeder(TorrentConfig::default(), &info, false);
    let mut plain = Reserved::NONE;
    plain.set_fast(true);
    let c = lab.connect(9, Direction::Inbound, plain);
    assert_eq!(lab.take(c), vec![Got::HaveAll]);
}

#[test]
fn a_seeder_serves_metadata_and_a_request_flood_stays_bounded() {
    // Proves BEP 9 serving: a request in range gets the piece with total_size, one out of range a
    // reject; a flood of requests from a peer that reads nothing grows its send queue to at most
    // the watermark plus the reject slack plus one message, and serving resumes once it drains.
    let (info, _) = info_dict(PIECE_LEN, TOTAL, 40_000);
    let pieces = info.len().div_ceil(METADATA_PIECE_LEN) as u32;
    assert_eq!(pieces, 3);
    let config = TorrentConfig::default();
    let watermark = config.send_buffer_watermark;
    let mut lab = Lab::seeder(config, &info, false);
    let c = lab.connect(2, Direction::Outbound, reserved(false));
    lab.send(c, &ext_hs(&[("ut_metadata", 9)], None, None));
    lab.take(c);
    lab.send(c, &meta(MetadataMessage::Request { piece: 1 }));
    lab.send(c, &meta(MetadataMessage::Request { piece: 3 }));
    let got = lab.take(c);
    let decoded: Vec<MetadataMessage<'_>> = got
        .iter()
        .map(|g| match g {
            Got::Extended { id: 9, payload } => MetadataMessage::decode(payload).unwrap(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        decoded,
        vec![
            MetadataMessage::Data {
                piece: 1,
                total_size: info.len() as u64,
                data: metadata_piece(&info, 1).unwrap()
            },
            MetadataMessage::Reject { piece: 3 }
        ]
    );

    // The flood: 20,000 requests in one read, nothing acknowledged as sent.
    let mut flood = Vec::new();
    for i in 0..20_000u32 {
        flood.extend(meta(MetadataMessage::Request { piece: i % 3 }));
    }
    for chunk in flood.chunks(64 * 1024) {
        lab.send(c, chunk);
    }
    let queued = lab.unsent[&c];
    assert!(
        queued <= watermark + METADATA_REJECT_SLACK + METADATA_PIECE_LEN + 64,
        "send queue grew to {queued}"
    );
    let stats = lab.t.extension_stats();
    assert!(stats.metadata_dropped > 10_000, "{stats:?}");
    assert!(lab.closed.is_empty(), "{:?}", lab.closed);
    // Once the socket drains, requests are served again.
    lab.ack_all();
    lab.take(c);
    lab.send(c, &meta(MetadataMessage::Request { piece: 0 }));
    assert!(matches!(
        &lab.take(c)[..],
        [Got::Extended { id: 9, payload }]
            if matches!(MetadataMessage::decode(payload), Ok(MetadataMessage::Data { piece: 0, .. }))
    ));
}

#[test]
fn a_magnet_fetches_metadata_from_three_seeders_at_once_and_downloads() {
    // Proves the magnet phase end to end: a torrent made from the info hash alone asks three
    // seeders for metadata pieces at once (more than one serves), checks the dictionary, and
    // then downloads and verifies every piece over the same connections.
    let total = 2_000_000 + 12_345;
    let seeder = NodeSpec {
        seed: true,
        upload_bytes_per_s: 2_000_000,
        corrupt: false,
    };
    let leecher = NodeSpec {
        seed: false,
        ..seeder
    };
    let mut s = Swarm::new_with_metadata(
        11,
        65536,
        total,
        &[seeder, seeder, seeder, leecher],
        &[3],
        40_000,
        Duration::from_millis(20),
    );
    assert!(!s.nodes[3].torrent.has_metadata());
    assert!(!s.nodes[3].torrent.is_complete());
    assert_eq!(s.nodes[3].torrent.layout().piece_count(), 0);
    assert_eq!(s.nodes[3].torrent.metadata_progress(), Some((0, 0)));
    s.connect_all();
    s.run(Duration::from_secs(600), 2_000_000);
    let magnet = &s.nodes[3];
    assert!(
        magnet.events.contains(&TorrentEvent::MetadataReceived),
        "{:?}",
        magnet.events
    );
    assert!(magnet.torrent.has_metadata());
    assert_eq!(magnet.torrent.metadata_progress(), None);
    assert_eq!(magnet.torrent.layout(), &s.layout);
    assert!(
        magnet.completed_at.is_some(),
        "{} pieces",
        magnet.torrent.have().count()
    );
    assert!(
        magnet.storage == content(total),
        "the data is verified byte for byte"
    );
    assert_eq!(magnet.torrent.peer_count(), 3, "the connections were kept");
    let serving = s.nodes[..3]
        .iter()
        .filter(|n| n.torrent.extension_stats().metadata_served > 0)
        .count();
    assert!(serving >= 2, "metadata came from {serving} seeders");
    let served: u64 = s.nodes[..3]
        .iter()
        .map(|n| n.torrent.extension_stats().metadata_served)
        .sum();
    assert_eq!(served, 3, "each of the 3 metadata pieces asked once");
    // It serves the metadata in its turn.
    assert_eq!(
        magnet.torrent.info_bytes().map(|b| b.len()),
        s.nodes[0].torrent.info_bytes().map(|b| b.len())
    );
}

#[test]
fn while_fetching_nothing_is_requested_written_or_unchoked() {
    // Proves the rules of the magnet phase: Fast peers are told have-none, every peer stays
    // choked and uninterested, no disk work is asked for, and the torrent is not complete.
    let (_, hash) = info_dict(PIECE_LEN, TOTAL, 0);
    let mut lab = Lab::magnet(TorrentConfig::default(), hash);
    let c = lab.connect(2, Direction::Outbound, reserved(false));
    let got = lab.take(c);
    assert!(matches!(got[0], Got::Extended { id: 0, .. }), "{got:?}");
    assert_eq!(&got[1..], &[Got::HaveNone]);
    let hs = ExtendedHandshake::parse(match &got[0] {
        Got::Extended { payload, .. } => payload,
        _ => unreachable!(),
    })
    .unwrap();
    assert_eq!(
        hs.metadata_size, None,
        "BEP 9: no size without the metadata"
    );
    lab.send(c, &frame(Message::HaveAll));
    lab.send(c, &frame(Message::Interested));
    lab.send(c, &frame(Message::Unchoke));
    lab.advance(Duration::from_secs(25));
    let got = lab.take(c);
    assert!(
        got.iter()
            .all(|g| matches!(g, Got::Other(_)) && g != &Got::Interested),
        "{got:?}"
    );
    assert!(
        got.iter().all(|g| !format!("{g:?}").contains("Unchoke")),
        "{got:?}"
    );
    assert!(lab.disk.is_empty());
    assert!(!lab.t.is_complete());
    assert!(lab.t.have().is_empty());
    assert!(lab.t.peer(c).unwrap().am_choking());
    // A request while we have nothing is dropped, not served and not fatal.
    lab.send(
        c,
        &frame(Message::Request {
            piece: 0,
            offset: 0,
            len: 16384,
        }),
    );
    assert!(lab.closed.is_empty());
}

#[test]
fn wrong_metadata_closes_the_liar_and_an_honest_peer_resolves_it() {
    // Proves bad metadata: a peer whose pieces do not hash to the info hash is closed with
    // BadMetadata and banned, and the fetch starts over with the honest peer, which resolves it.
    let (info, hash) = info_dict(PIECE_LEN, TOTAL, 20_000);
    assert_eq!(info.len().div_ceil(METADATA_PIECE_LEN), 2);
    let mut lab = Lab::magnet(TorrentConfig::default(), hash);
    let liar = lab.connect(2, Direction::Outbound, reserved(false));
    lab.send(
        liar,
        &ext_hs(&[("ut_metadata", 4)], Some(info.len() as u64), None),
    );
    assert_eq!(lab.metadata_requests(liar, 4), vec![0, 1]);
    let honest = lab.connect(3, Direction::Outbound, reserved(false));
    lab.send(
        honest,
        &ext_hs(&[("ut_metadata", 5)], Some(info.len() as u64), None),
    );
    assert_eq!(
        lab.metadata_requests(honest, 5),
        Vec::<u32>::new(),
        "all asked"
    );
    let mut lie = info.clone();
    lie[100] ^= 0xff;
    answer(&mut lab, liar, &lie, &[0, 1]);
    assert!(
        lab.closed.contains(&(liar, CloseReason::BadMetadata)),
        "{:?}",
        lab.closed
    );
    assert!(lab.events.contains(&TorrentEvent::PeerBanned(addr(2).ip())));
    assert!(lab.t.is_banned(addr(2).ip()));
    assert!(!lab.t.has_metadata());
    assert_eq!(lab.metadata_requests(honest, 5), vec![0, 1]);
    answer(&mut lab, honest, &info, &[0, 1]);
    assert!(lab.events.contains(&TorrentEvent::MetadataReceived));
    assert!(lab.t.has_metadata());
    assert_eq!(lab.t.info_bytes().map(|b| b.to_vec()), Some(info));
    assert_eq!(lab.t.layout().piece_count(), 40);
    assert!(!lab.closed.iter().any(|(c, _)| *c == honest));
}

#[test]
fn a_metadata_size_over_the_cap_is_refused() {
    // Proves the max_metadata_size cap: a peer announcing more is never asked; one with an
    // acceptable size is.
    let (info, hash) = info_dict(PIECE_LEN, TOTAL, 0);
    let config = TorrentConfig {
        max_metadata_size: 4096,
        ..TorrentConfig::default()
    };
    let mut lab = Lab::magnet(config, hash);
    let big = lab.connect(2, Direction::Outbound, reserved(false));
    lab.send(big, &ext_hs(&[("ut_metadata", 4)], Some(100_000), None));
    assert!(lab.metadata_requests(big, 4).is_empty());
    assert_eq!(lab.t.extension_stats().metadata_sizes_refused, 1);
    assert_eq!(lab.t.metadata_progress(), Some((0, 0)));
    let fine = lab.connect(3, Direction::Outbound, reserved(false));
    lab.send(
        fine,
        &ext_hs(&[("ut_metadata", 4)], Some(info.len() as u64), None),
    );
    assert_eq!(lab.metadata_requests(fine, 4), vec![0]);
    answer(&mut lab, fine, &info, &[0]);
    assert!(lab.t.has_metadata());
    assert!(lab.closed.is_empty(), "the big one is only skipped");
}

#[test]
fn piece_announcements_before_the_metadata_are_checked_afterwards() {
    // Proves the unknown-layout mode: a bitfield of the right length sent before the metadata is
    // taken afterwards (and makes us interested), haves count too, and a bitfield of the wrong
    // length closes its connection once the piece count is known.
    let (info, hash) = info_dict(PIECE_LEN, TOTAL, 0);
    let mut lab = Lab::magnet(TorrentConfig::default(), hash);
    let good = lab.connect(2, Direction::Outbound, reserved(false));
    lab.send(
        good,
        &frame(Message::Bitfield(Bitfield::full(40).as_bytes())),
    );
    let wrong = lab.connect(3, Direction::Outbound, reserved(false));
    lab.send(wrong, &frame(Message::Bitfield(&[0xff; 6])));
    let haves = lab.connect(4, Direction::Outbound, reserved(false));
    lab.send(haves, &frame(Message::Have { piece: 7 }));
    lab.send(haves, &frame(Message::Have { piece: 39 }));
    let far = lab.connect(5, Direction::Outbound, reserved(false));
    lab.send(far, &frame(Message::Have { piece: 45 }));
    assert!(
        lab.closed.is_empty(),
        "nothing is judged yet: {:?}",
        lab.closed
    );
    lab.send(
        good,
        &ext_hs(&[("ut_metadata", 4)], Some(info.len() as u64), None),
    );
    answer(&mut lab, good, &info, &[0]);
    assert!(lab.t.has_metadata());
    assert!(
        lab.closed.contains(&(
            wrong,
            CloseReason::Peer(PeerError::Bitfield(BitfieldError::WrongLength {
                received: 6,
                expected: 5,
                pieces: 40
            }))
        )),
        "{:?}",
        lab.closed
    );
    assert!(
        lab.closed
            .contains(&(far, CloseReason::Peer(PeerError::PieceOutOfRange(45))))
    );
    let g = lab.t.peer(good).unwrap();
    assert!(g.layout_known() && g.peer_pieces().is_complete());
    assert!(g.am_interested());
    assert!(lab.take(good).contains(&Got::Interested));
    let h = lab.t.peer(haves).unwrap();
    assert_eq!(h.peer_pieces().ones().collect::<Vec<_>>(), vec![7, 39]);
    assert!(h.am_interested());
}

#[test]
fn an_unanswered_metadata_request_moves_to_another_peer() {
    // Proves the metadata request timeout: a piece asked of a silent peer is asked of another
    // after metadata_timeout, which resolves the metadata; the silent peer's late answer is
    // ignored.
    let (info, hash) = info_dict(PIECE_LEN, TOTAL, 0);
    let mut lab = Lab::magnet(TorrentConfig::default(), hash);
    let silent = lab.connect(2, Direction::Outbound, reserved(false));
    lab.send(
        silent,
        &ext_hs(&[("ut_metadata", 4)], Some(info.len() as u64), None),
    );
    assert_eq!(lab.metadata_requests(silent, 4), vec![0]);
    let other = lab.connect(3, Direction::Outbound, reserved(false));
    lab.send(
        other,
        &ext_hs(&[("ut_metadata", 6)], Some(info.len() as u64), None),
    );
    assert!(lab.metadata_requests(other, 6).is_empty());
    lab.advance(Duration::from_secs(29));
    assert!(lab.metadata_requests(other, 6).is_empty(), "not yet");
    lab.advance(Duration::from_secs(2));
    assert_eq!(lab.metadata_requests(other, 6), vec![0]);
    assert_eq!(lab.t.extension_stats().metadata_timeouts, 1);
    assert!(
        lab.metadata_requests(silent, 4).is_empty(),
        "the slow peer is not asked again at once"
    );
    answer(&mut lab, silent, &info, &[0]);
    assert!(!lab.t.has_metadata(), "the late answer is ignored");
    answer(&mut lab, other, &info, &[0]);
    assert!(lab.t.has_metadata());
}

#[test]
fn a_metadata_reject_frees_the_piece() {
    // Proves a rejected metadata request goes to another peer.
    let (info, hash) = info_dict(PIECE_LEN, TOTAL, 0);
    let mut lab = Lab::magnet(TorrentConfig::default(), hash);
    let a = lab.connect(2, Direction::Outbound, reserved(false));
    lab.send(
        a,
        &ext_hs(&[("ut_metadata", 4)], Some(info.len() as u64), None),
    );
    assert_eq!(lab.metadata_requests(a, 4), vec![0]);
    let b = lab.connect(3, Direction::Outbound, reserved(false));
    lab.send(
        b,
        &ext_hs(&[("ut_metadata", 4)], Some(info.len() as u64), None),
    );
    lab.send(a, &meta(MetadataMessage::Reject { piece: 0 }));
    assert_eq!(lab.metadata_requests(b, 4), vec![0]);
    answer(&mut lab, b, &info, &[0]);
    assert!(lab.t.has_metadata());
}

#[test]
fn invalid_metadata_with_the_right_hash_is_fatal() {
    // Proves MetadataInvalid: a dictionary that hashes right but does not parse as an info
    // dictionary (here an unsafe name) stops the fetch with the reason.
    let info =
        b"d6:lengthi5e4:name2:..12:piece lengthi16384e6:pieces20:aaaaaaaaaaaaaaaaaaaae".to_vec();
    let hash = InfoHash::of_info_bytes(&info);
    let mut lab = Lab::magnet(TorrentConfig::default(), hash);
    let a = lab.connect(2, Direction::Outbound, reserved(false));
    lab.send(
        a,
        &ext_hs(&[("ut_metadata", 4)], Some(info.len() as u64), None),
    );
    assert_eq!(lab.metadata_requests(a, 4), vec![0]);
    answer(&mut lab, a, &info, &[0]);
    assert!(
        lab.events
            .iter()
            .any(|e| matches!(e, TorrentEvent::MetadataInvalid(why) if why.contains(".."))),
        "{:?}",
        lab.events
    );
    assert!(!lab.t.has_metadata());
    lab.advance(Duration::from_secs(60));
    assert!(
        lab.metadata_requests(a, 4).is_empty(),
        "nothing more is fetched"
    );
}

#[test]
fn a_port_message_reports_the_dht_address_once() {
    // Proves BEP 5: a peer's port message gives its DHT node's address, once per connection.
    let (info, _) = info_dict(PIECE_LEN, TOTAL, 0);
    let mut lab = Lab::seeder(TorrentConfig::default(), &info, false);
    let c = lab.connect(4, Direction::Inbound, reserved(true));
    lab.send(c, &frame(Message::Port(7001)));
    lab.send(c, &frame(Message::Port(7002)));
    let ports: Vec<&TorrentEvent> = lab
        .events
        .iter()
        .filter(|e| matches!(e, TorrentEvent::DhtPort { .. }))
        .collect();
    assert_eq!(
        ports,
        vec![&TorrentEvent::DhtPort {
            addr: SocketAddr::new(addr(4).ip(), 7001)
        }]
    );
}

#[test]
fn unknown_or_malformed_extension_messages_are_ignored() {
    // Proves tolerance (BEP 10): messages on ids we never offered, a malformed handshake and a
    // malformed ut_metadata message neither close the connection nor change anything.
    let (info, _) = info_dict(PIECE_LEN, TOTAL, 0);
    let mut lab = Lab::seeder(TorrentConfig::default(), &info, false);
    let c = lab.connect(4, Direction::Outbound, reserved(false));
    lab.send(
        c,
        &frame(Message::Extended {
            id: 77,
            payload: b"x",
        }),
    );
    lab.send(
        c,
        &frame(Message::Extended {
            id: 0,
            payload: b"i3e",
        }),
    );
    lab.send(
        c,
        &frame(Message::Extended {
            id: OUR_UT_METADATA,
            payload: b"d",
        }),
    );
    assert!(lab.closed.is_empty());
    let s = lab.t.extension_stats();
    assert_eq!(
        (
            s.unknown_extended,
            s.bad_handshakes,
            s.bad_metadata_messages
        ),
        (1, 1, 1)
    );
    // A peer that resends its handshake updates its ids.
    lab.send(c, &ext_hs(&[("ut_metadata", 4)], None, None));
    lab.send(c, &ext_hs(&[("ut_metadata", 8)], None, None));
    lab.take(c);
    lab.send(c, &meta(MetadataMessage::Request { piece: 0 }));
    assert!(matches!(&lab.take(c)[..], [Got::Extended { id: 8, .. }]));
}

#[test]
fn a_lie_about_the_size_does_not_stall_the_fetch() {
    // Proves the fetch starts over when the peer whose size it took leaves and the others give
    // another size: the honest peer, refused while the liar was there, is asked then.
    let (info, hash) = info_dict(PIECE_LEN, TOTAL, 0);
    let mut lab = Lab::magnet(TorrentConfig::default(), hash);
    let liar = lab.connect(2, Direction::Outbound, reserved(false));
    lab.send(liar, &ext_hs(&[("ut_metadata", 4)], Some(50_000), None));
    assert_eq!(lab.metadata_requests(liar, 4), vec![0, 1]);
    let honest = lab.connect(3, Direction::Outbound, reserved(false));
    lab.send(
        honest,
        &ext_hs(&[("ut_metadata", 4)], Some(info.len() as u64), None),
    );
    assert!(
        lab.metadata_requests(honest, 4).is_empty(),
        "another size: refused"
    );
    lab.t.peer_disconnected(lab.now, liar);
    lab.drain();
    assert_eq!(lab.metadata_requests(honest, 4), vec![0]);
    answer(&mut lab, honest, &info, &[0]);
    assert!(lab.t.has_metadata());
}

#[test]
fn a_liar_mixed_with_an_honest_peer_is_found_and_the_honest_one_kept() {
    // Proves metadata blame with several senders: when pieces from a liar and an honest peer
    // fail together nobody is banned at once; the fetch then asks one peer at a time, and once
    // the metadata is known the peer whose piece differed from it is closed with BadMetadata and
    // banned, and the honest one is not.
    let (info, hash) = info_dict(PIECE_LEN, TOTAL, 20_000);
    let mut lab = Lab::magnet(TorrentConfig::default(), hash);
    let liar = lab.connect(2, Direction::Outbound, reserved(false));
    lab.send(
        liar,
        &ext_hs(&[("ut_metadata", 4)], Some(info.len() as u64), None),
    );
    assert_eq!(lab.metadata_requests(liar, 4), vec![0, 1]);
    let honest = lab.connect(3, Direction::Outbound, reserved(false));
    lab.send(
        honest,
        &ext_hs(&[("ut_metadata", 5)], Some(info.len() as u64), None),
    );
    // The liar rejects piece 1, which goes to the honest peer.
    lab.send(liar, &meta(MetadataMessage::Reject { piece: 1 }));
    assert_eq!(lab.metadata_requests(honest, 5), vec![1]);
    let mut lie = info.clone();
    lie[100] ^= 0xff;
    answer(&mut lab, liar, &lie, &[0]);
    answer(&mut lab, honest, &info, &[1]);
    assert!(
        lab.closed.is_empty(),
        "who lied is not known yet: {:?}",
        lab.closed
    );
    // One peer at a time now: the honest one (the liar is backed off after its reject).
    assert_eq!(lab.metadata_requests(honest, 5), vec![0, 1]);
    assert!(lab.metadata_requests(liar, 4).is_empty());
    answer(&mut lab, honest, &info, &[0, 1]);
    assert!(lab.t.has_metadata());
    assert_eq!(lab.closed, vec![(liar, CloseReason::BadMetadata)]);
    assert!(lab.t.is_banned(addr(2).ip()));
    assert!(!lab.t.is_banned(addr(3).ip()));
}

#[test]
fn the_dht_bit_follows_the_dht_port() {
    // Proves BEP 5 reserved bits: our handshake sets the DHT bit once a DHT port is known (in
    // the config, or set later for the connections made after), and not before.
    let (info, _) = info_dict(PIECE_LEN, TOTAL, 0);
    let our_reserved = |t: &mut Torrent, n: u8| {
        t.add_peer(
            Instant::ZERO,
            ConnId(u64::from(n)),
            addr(n),
            Direction::Outbound,
        )
        .unwrap();
        let Some(TorrentOutput::Transmit { bytes, .. }) = t.poll_output() else {
            panic!("our handshake goes first");
        };
        Handshake::parse(&bytes).unwrap().reserved
    };
    let mut lab = Lab::seeder(TorrentConfig::default(), &info, false);
    assert!(!our_reserved(&mut lab.t, 2).dht());
    lab.t.set_dht_port(6999);
    let r = our_reserved(&mut lab.t, 3);
    assert!(r.dht() && r.fast() && r.extension_protocol());
    let config = TorrentConfig {
        dht_port: Some(6999),
        ..TorrentConfig::default()
    };
    let mut lab = Lab::seeder(config, &info, false);
    assert!(our_reserved(&mut lab.t, 2).dht());
}
