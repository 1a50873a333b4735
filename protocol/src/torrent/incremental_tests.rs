//! Tests of [`Torrent`]'s incremental bookkeeping (interest counts, the timer set, the peers
//! `drive` looks at) against from-scratch computations, over random peer behaviour. Debug builds
//! also check every count and deadline inside the torrent after each input.

use core::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use proptest::prelude::*;

use super::{Bitfield, Torrent, TorrentConfig, TorrentOutput};
use crate::io::{ConnId, DiskDone, DiskOp};
use crate::metainfo::{BLOCK_SIZE, InfoHash, TorrentLayout};
use crate::peer::Direction;
use crate::rng::Rng;
use crate::time::Instant;
use crate::wire::{Handshake, Message, PeerId, Reserved};

const HASH: InfoHash = InfoHash([7; 20]);
const PIECES: u32 = 12;
const PEERS: u64 = 5;

fn frame(m: Message<'_>) -> Vec<u8> {
    let mut v = Vec::new();
    m.encode_into(&mut v);
    v
}

/// What a scripted peer (or the clock, or the disk) does next.
#[derive(Clone, Debug)]
enum Op {
    /// Peer `k` connects and completes its handshake.
    Connect(u64),
    /// Peer `k` announces its pieces (0: bitfield, 1: have-all, 2: have-none) and, in the same
    /// read, some haves.
    Announce(u64, u8, Vec<bool>, Vec<u32>),
    /// Peer `k` has a new piece.
    Have(u64, u32),
    /// Peer `k` unchokes (true) or chokes us.
    Choke(u64, bool),
    /// Peer `k` sends the block of our `i`-th outstanding request to it.
    SendBlock(u64, usize),
    /// Peer `k` is interested and requests a piece.
    Request(u64, u32),
    /// Peer `k` lets us request a piece while choked.
    AllowFast(u64, u32),
    /// Peer `k`'s socket closes.
    Disconnect(u64),
    /// Time passes (milliseconds).
    Tick(u64),
    /// A piece passes its hash check without being downloaded (as after a recheck).
    Verify(u32),
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    let k = 0..PEERS;
    let piece = 0..PIECES;
    prop_oneof![
        k.clone().prop_map(Op::Connect),
        (
            k.clone(),
            0u8..3,
            proptest::collection::vec(any::<bool>(), PIECES as usize),
            proptest::collection::vec(piece.clone(), 0..4)
        )
            .prop_map(|(k, m, b, h)| Op::Announce(k, m, b, h)),
        (k.clone(), piece.clone()).prop_map(|(k, p)| Op::Have(k, p)),
        (k.clone(), any::<bool>()).prop_map(|(k, u)| Op::Choke(k, u)),
        (k.clone(), 0usize..8).prop_map(|(k, i)| Op::SendBlock(k, i)),
        (k.clone(), piece.clone()).prop_map(|(k, p)| Op::Request(k, p)),
        (k.clone(), piece.clone()).prop_map(|(k, p)| Op::AllowFast(k, p)),
        k.prop_map(Op::Disconnect),
        (0u64..40_000).prop_map(Op::Tick),
        piece.prop_map(Op::Verify),
    ]
}

struct Rig {
    t: Torrent,
    now: Instant,
    layout: TorrentLayout,
}

impl Rig {
    fn new(have: &[bool]) -> Rig {
        let layout =
            TorrentLayout::new(u64::from(BLOCK_SIZE), &[u64::from(PIECES * BLOCK_SIZE)]).unwrap();
        let mut bits = Bitfield::new(PIECES);
        for (i, h) in have.iter().enumerate() {
            if *h {
                bits.set(i as u32);
            }
        }
        let t = Torrent::new(
            TorrentConfig::default(),
            HASH,
            layout.clone(),
            vec![[0; 20]; PIECES as usize],
            bits,
            PeerId([1; 20]),
            Rng::new(3),
        );
        Rig {
            t,
            now: Instant::ZERO,
            layout,
        }
    }

    /// Drains the outputs, answering disk work at once (writes succeed, hashes match).
    fn settle(&mut self) {
        let mut answers = Vec::new();
        loop {
            while let Some(out) = self.t.poll_output() {
                if let TorrentOutput::Disk(op) = out {
                    answers.push(match op {
                        DiskOp::Write { block, .. } => DiskDone::Written {
                            block,
                            result: Ok(()),
                        },
                        DiskOp::Hash { piece } => DiskDone::Hashed {
                            piece,
                            result: Ok([0; 20]),
                        },
                        DiskOp::Read { conn, block } => DiskDone::Read {
                            conn,
                            block,
                            result: Ok(bytes::Bytes::from(vec![0; block.len as usize])),
                        },
                        DiskOp::HashBlocks { piece, blocks } => DiskDone::BlockHashes {
                            piece,
                            result: Ok(vec![[0; 20]; blocks.len()]),
                        },
                    });
                }
            }
            if answers.is_empty() {
                return;
            }
            for done in answers.drain(..) {
                self.t.handle_disk(self.now, done);
            }
        }
    }

    fn bytes(&mut self, k: u64, input: &[u8]) {
        self.t.handle_bytes(self.now, ConnId(k), input);
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Connect(k) => {
                let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 10 + k as u8)), 6881);
                if self
                    .t
                    .add_peer(self.now, ConnId(k), addr, Direction::Outbound)
                    .is_ok()
                {
                    let mut reserved = Reserved::NONE;
                    reserved.set_fast(true);
                    let hs = Handshake {
                        reserved,
                        info_hash: HASH,
                        peer_id: PeerId([10 + k as u8; 20]),
                    };
                    self.bytes(k, &hs.encode());
                }
            }
            Op::Announce(k, mode, bits, haves) => {
                let mut input = match mode {
                    0 => {
                        let mut b = Bitfield::new(PIECES);
                        for (i, on) in bits.iter().enumerate() {
                            if *on {
                                b.set(i as u32);
                            }
                        }
                        frame(Message::Bitfield(b.as_bytes()))
                    }
                    1 => frame(Message::HaveAll),
                    _ => frame(Message::HaveNone),
                };
                for piece in haves {
                    input.extend(frame(Message::Have { piece }));
                }
                self.bytes(k, &input);
            }
            Op::Have(k, piece) => self.bytes(k, &frame(Message::Have { piece })),
            Op::Choke(k, unchoke) => {
                let m = if unchoke {
                    Message::Unchoke
                } else {
                    Message::Choke
                };
                self.bytes(k, &frame(m));
            }
            Op::SendBlock(k, i) => {
                let Some(block) = self.t.peer(ConnId(k)).and_then(|p| p.outstanding().nth(i))
                else {
                    return;
                };
                let data = vec![0; block.len as usize];
                self.bytes(
                    k,
                    &frame(Message::Piece {
                        piece: block.piece.get(),
                        offset: block.offset,
                        data: &data,
                    }),
                );
            }
            Op::Request(k, piece) => {
                let mut input = frame(Message::Interested);
                input.extend(frame(Message::Request {
                    piece,
                    offset: 0,
                    len: self.layout.piece_len(self.layout.piece(piece).unwrap()),
                }));
                self.bytes(k, &input);
            }
            Op::AllowFast(k, piece) => self.bytes(k, &frame(Message::AllowedFast(piece))),
            Op::Disconnect(k) => self.t.peer_disconnected(self.now, ConnId(k)),
            Op::Tick(ms) => {
                self.now = self.now + Duration::from_millis(ms);
                if self.t.poll_timeout().is_some_and(|at| at <= self.now) {
                    self.t.handle_timeout(self.now);
                }
            }
            Op::Verify(piece) => {
                let piece = self.layout.piece(piece).unwrap();
                if !self.t.have().get(piece.get()) {
                    self.t.handle_disk(
                        self.now,
                        DiskDone::Hashed {
                            piece,
                            result: Ok([0; 20]),
                        },
                    );
                }
            }
        }
        self.settle();
    }

    /// The torrent's interest and timer agree with a from-scratch walk over every peer.
    fn check(&self) -> Result<(), TestCaseError> {
        let mut earliest = None::<Instant>;
        for c in self.t.conns() {
            let p = self.t.peer(c).unwrap();
            if p.is_connected() {
                prop_assert_eq!(
                    p.am_interested(),
                    self.t.have().lacks_any_of(p.peer_pieces()),
                    "{:?}",
                    c
                );
            }
            earliest = earliest.into_iter().chain(p.poll_timeout()).min();
        }
        if let Some(e) = earliest {
            prop_assert!(self.t.poll_timeout().is_some_and(|at| at <= e));
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn incremental_interest_and_timers_match_a_walk(
        have in proptest::collection::vec(any::<bool>(), PIECES as usize),
        ops in proptest::collection::vec(op(), 1..80),
    ) {
        // Proves the interest the torrent keeps per peer (a count updated on haves, bitfields,
        // verified pieces, connects and disconnects) equals asking "does the peer have a piece we
        // lack?" afresh, and the torrent's timer is never later than the earliest peer's, after
        // any sequence of peer messages, blocks, timeouts and verifications.
        let mut rig = Rig::new(&have);
        for op in ops {
            rig.apply(op);
            rig.check()?;
        }
    }
}

#[test]
fn haves_in_the_read_of_the_bitfield_count_once() {
    // Proves a bitfield followed by haves in the same read (events handled after the whole read)
    // is counted once: losing interest needs exactly the pieces announced.
    let mut rig = Rig::new(&[false; PIECES as usize]);
    rig.apply(Op::Connect(1));
    let mut bits = vec![false; PIECES as usize];
    bits[0] = true;
    rig.apply(Op::Announce(1, 0, bits, vec![1]));
    assert!(rig.t.peer(ConnId(1)).unwrap().am_interested());
    rig.apply(Op::Verify(0));
    assert!(rig.t.peer(ConnId(1)).unwrap().am_interested());
    rig.apply(Op::Verify(1));
    assert!(!rig.t.peer(ConnId(1)).unwrap().am_interested());
}
