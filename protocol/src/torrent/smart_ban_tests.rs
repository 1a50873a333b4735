//! Tests of who [`Torrent`] bans for a piece that fails its hash check: scripted peers, a disk in
//! memory answered when the test says.

use core::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::collections::{BTreeMap, VecDeque};

use sha1::{Digest, Sha1};

use super::*;
use crate::harness::{self, Sent};
use crate::io::{ConnId, DiskDone, DiskError, DiskOp};
use crate::metainfo::{BlockRef, InfoHash, TorrentLayout};
use crate::peer::{Direction, PeerConfig};
use crate::rng::Rng;
use crate::time::Instant;
use crate::wire::{Handshake, Message, PeerId, Reserved};

const HASH: InfoHash = InfoHash([8; 20]);

fn frame(m: Message<'_>) -> Vec<u8> {
    let mut v = Vec::new();
    m.encode_into(&mut v);
    v
}

fn ip(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, n))
}

/// A leecher of a one-piece torrent (two blocks) and the peers it is given, each with one request
/// in flight at a time so the test knows who sends which block.
struct Leecher {
    t: Torrent,
    layout: TorrentLayout,
    content: Vec<u8>,
    storage: Vec<u8>,
    /// Bytes each connection sent, not yet parsed (after the 68-byte handshake).
    sent: BTreeMap<ConnId, Vec<u8>>,
    /// Requests each connection sent and the test has not answered (nor the torrent cancelled).
    requests: BTreeMap<ConnId, Vec<BlockRef>>,
    /// Disk work not answered yet.
    disk: VecDeque<DiskOp>,
    events: Vec<TorrentEvent>,
}

impl Leecher {
    fn new() -> Self {
        let layout = TorrentLayout::new(32768, &[32768]).unwrap();
        let content = harness::content(32768);
        let config = TorrentConfig {
            peer: PeerConfig {
                min_pipeline: 1,
                max_pipeline: 1,
                ..PeerConfig::default()
            },
            ..TorrentConfig::default()
        };
        let t = Torrent::new(
            config,
            HASH,
            layout.clone(),
            vec![Sha1::digest(&content).into()],
            Bitfield::new(1),
            PeerId([1; 20]),
            Rng::new(1),
        );
        Leecher {
            t,
            layout,
            storage: vec![0; content.len()],
            content,
            sent: BTreeMap::new(),
            requests: BTreeMap::new(),
            disk: VecDeque::new(),
            events: Vec::new(),
        }
    }

    /// A peer at 10.0.0.`n` (connection `n`) that has the piece and unchokes us.
    fn add_seed(&mut self, n: u8) -> ConnId {
        let conn = ConnId(u64::from(n));
        let addr = SocketAddr::new(ip(n), 6881);
        self.t
            .add_peer(Instant::ZERO, conn, addr, Direction::Inbound)
            .unwrap();
        let mut reserved = Reserved::NONE;
        reserved.set_fast(true);
        let mut input = Handshake {
            reserved,
            info_hash: HASH,
            peer_id: PeerId([n; 20]),
        }
        .encode()
        .to_vec();
        input.extend(frame(Message::HaveAll));
        input.extend(frame(Message::Unchoke));
        self.t.handle_bytes(Instant::ZERO, conn, &input);
        self.pump();
        conn
    }

    /// Takes the torrent's outputs: requests by connection, disk work, events.
    fn pump(&mut self) {
        while let Some(out) = self.t.poll_output() {
            match out {
                TorrentOutput::Transmit { conn, bytes } => {
                    self.sent.entry(conn).or_default().extend_from_slice(&bytes);
                }
                TorrentOutput::Disk(op) => self.disk.push_back(op),
                TorrentOutput::Event(e) => self.events.push(e),
                TorrentOutput::Close { .. } => {}
            }
        }
        for (conn, buf) in &mut self.sent {
            for sent in harness::take_sent(buf, &self.layout) {
                match sent {
                    Sent::Request(block) => self.requests.entry(*conn).or_default().push(block),
                    Sent::Cancel(block) => {
                        let left = self.requests.entry(*conn).or_default();
                        left.retain(|b| *b != block);
                        if left.is_empty() {
                            self.requests.remove(conn);
                        }
                    }
                    Sent::Block | Sent::Other => {}
                }
            }
        }
    }

    /// Answers the requests `conn` has out, with the right bytes or every bit flipped.
    fn serve(&mut self, conn: ConnId, right: bool) -> usize {
        let blocks = self.requests.remove(&conn).unwrap_or_default();
        for block in &blocks {
            let start = block.offset as usize;
            let mut data = self.content[start..start + block.len as usize].to_vec();
            if !right {
                data.iter_mut().for_each(|b| *b = !*b);
            }
            let piece = frame(Message::Piece {
                piece: block.piece.get(),
                offset: block.offset,
                data: &data,
            });
            self.t.handle_bytes(Instant::ZERO, conn, &piece);
            self.pump();
        }
        blocks.len()
    }

    /// Answers the oldest disk work as the disk in memory does; returns what it was.
    fn answer_disk(&mut self) -> Option<DiskOp> {
        let op = self.disk.pop_front()?;
        let done = harness::answer_disk(&self.layout, &mut self.storage, false, op.clone());
        self.t.handle_disk(Instant::ZERO, done);
        self.pump();
        Some(op)
    }

    /// Answers disk work until the next op is of a kind `stop` picks (left unanswered), or none
    /// is left.
    fn answer_disk_until(&mut self, stop: impl Fn(&DiskOp) -> bool) {
        while self.disk.front().is_some_and(|op| !stop(op)) {
            self.answer_disk();
        }
    }

    fn bans(&self) -> Vec<IpAddr> {
        self.events
            .iter()
            .filter_map(|e| match e {
                TorrentEvent::PeerBanned(ip) => Some(*ip),
                _ => None,
            })
            .collect()
    }

    fn failed(&self) -> usize {
        self.events
            .iter()
            .filter(|e| matches!(e, TorrentEvent::PieceFailed(_)))
            .count()
    }
}

fn is_hash_blocks(op: &DiskOp) -> bool {
    matches!(op, DiskOp::HashBlocks { .. })
}

#[test]
fn only_the_peer_whose_block_was_wrong_is_banned() {
    // Proves smart ban end to end in the torrent: an honest peer and a liar each send one block
    // of a piece, which fails; nobody is banned, and the piece is not requested again until its
    // blocks are read back; fetched again from both (right this time) it passes, its blocks are
    // read back once more, and the liar alone is banned.
    let mut l = Leecher::new();
    let honest = l.add_seed(2);
    let liar = l.add_seed(3);
    assert_eq!(l.serve(honest, true), 1);
    assert_eq!(l.serve(liar, false), 1);
    l.answer_disk_until(is_hash_blocks);
    assert_eq!(l.failed(), 1);
    assert!(
        l.bans().is_empty(),
        "the failure alone cannot tell who lied"
    );
    let Some(DiskOp::HashBlocks { blocks, .. }) = l.disk.front().cloned() else {
        panic!("the failed piece's blocks are read back: {:?}", l.disk);
    };
    assert_eq!(blocks.len(), 2);
    assert!(
        l.requests.is_empty(),
        "nothing is fetched again before the read back: {:?}",
        l.requests
    );

    l.answer_disk();
    assert_eq!(
        l.requests.len(),
        2,
        "fetched again from both: {:?}",
        l.requests
    );
    assert_eq!(l.serve(honest, true) + l.serve(liar, true), 2);
    l.answer_disk_until(is_hash_blocks);
    assert!(l.t.is_complete());
    assert!(
        l.bans().is_empty(),
        "judged only once the good data is read"
    );
    assert!(matches!(l.answer_disk(), Some(DiskOp::HashBlocks { .. })));
    assert_eq!(l.bans(), vec![ip(3)]);
    assert!(l.t.is_banned(ip(3)) && !l.t.is_banned(ip(2)));
    assert!(l.t.peer(liar).is_none() && l.t.peer(honest).is_some());
}

#[test]
fn a_peer_that_sent_a_failed_piece_alone_is_banned_at_once() {
    // Proves the fallback: when every block of a failed piece came from one peer, it is banned
    // on the spot, without reading anything back.
    let mut l = Leecher::new();
    let liar = l.add_seed(3);
    assert_eq!(l.serve(liar, false), 1);
    assert_eq!(
        l.serve(liar, false),
        1,
        "the second block, once the first is in"
    );
    while l.answer_disk().is_some() {}
    assert_eq!(l.failed(), 1);
    assert_eq!(l.bans(), vec![ip(3)]);
    assert!(l.t.peer(liar).is_none());
}

#[test]
fn a_piece_failed_by_the_disk_blames_nobody() {
    // Proves a hash that could not be computed (a read error) bans no sender and fetches the
    // piece again.
    let mut l = Leecher::new();
    let a = l.add_seed(2);
    assert_eq!(l.serve(a, true), 1);
    assert_eq!(l.serve(a, true), 1);
    l.answer_disk_until(|op| matches!(op, DiskOp::Hash { .. }));
    let Some(DiskOp::Hash { piece }) = l.disk.pop_front() else {
        panic!("a hash: {:?}", l.disk);
    };
    l.t.handle_disk(
        Instant::ZERO,
        DiskDone::Hashed {
            piece,
            result: Err(DiskError("read error".into())),
        },
    );
    l.pump();
    assert_eq!(l.failed(), 1);
    assert!(l.bans().is_empty());
    assert!(l.disk.is_empty(), "nothing read back");
    assert_eq!(l.requests.get(&a).map(Vec::len), Some(1), "fetched again");
}
