//! Tests of [`Torrent`] on a disk that fills up: scripted peers, a disk in memory that
//! fails every write while the test says it is full, a clock the test moves.

use core::net::{IpAddr, Ipv4Addr, SocketAddr};
use core::time::Duration;
use std::collections::{BTreeMap, VecDeque};

use sha1::{Digest, Sha1};

use super::*;
use crate::harness::{self, Sent};
use crate::io::{ConnId, DiskDone, DiskError, DiskOp};
use crate::metainfo::{BlockRef, InfoHash, TorrentLayout};
use crate::peer::Direction;
use crate::rng::Rng;
use crate::time::Instant;
use crate::wire::{Message, PeerId};

const HASH: InfoHash = InfoHash([9; 20]);

/// Pieces of the test torrent, two blocks each.
const PIECES: u32 = 8;
const PIECE_LEN: u32 = 32 * 1024;

const FULL: &str = "disk full writing /x/y";

fn frame(m: Message<'_>) -> Vec<u8> {
    let mut v = Vec::new();
    m.encode_into(&mut v);
    v
}

/// A leecher of an 8-piece torrent, its peers, and a disk in memory with a "full" switch.
struct Leecher {
    t: Torrent,
    layout: TorrentLayout,
    content: Vec<u8>,
    storage: Vec<u8>,
    now: Instant,
    /// While set, every write fails with [`FULL`].
    full: bool,
    /// Bytes each connection sent, not yet parsed (after the 68-byte handshake).
    sent: BTreeMap<ConnId, Vec<u8>>,
    /// Requests each connection sent that are not answered nor cancelled.
    requests: BTreeMap<ConnId, Vec<BlockRef>>,
    /// Every request sent, in order; how many requests, cancels and blocks were sent.
    asked: Vec<BlockRef>,
    requested: usize,
    cancelled: usize,
    blocks_sent: usize,
    disk: VecDeque<DiskOp>,
    events: Vec<TorrentEvent>,
    closed: usize,
}

impl Leecher {
    fn new(have: Bitfield) -> Self {
        let layout = TorrentLayout::new(u64::from(PIECE_LEN), &[u64::from(PIECES * PIECE_LEN)])
            .expect("a valid layout");
        let content = harness::content(u64::from(PIECES * PIECE_LEN));
        let hashes = content
            .chunks(PIECE_LEN as usize)
            .map(|c| Sha1::digest(c).into())
            .collect();
        let mut storage = vec![0; content.len()];
        for p in have.ones() {
            let at = (p * PIECE_LEN) as usize..((p + 1) * PIECE_LEN) as usize;
            storage[at.clone()].copy_from_slice(&content[at]);
        }
        let t = Torrent::new(
            TorrentConfig::default(),
            HASH,
            layout.clone(),
            hashes,
            have,
            PeerId([1; 20]),
            Rng::new(1),
        );
        Leecher {
            t,
            layout,
            content,
            storage,
            now: Instant::ZERO,
            full: false,
            sent: BTreeMap::new(),
            requests: BTreeMap::new(),
            asked: Vec::new(),
            requested: 0,
            cancelled: 0,
            blocks_sent: 0,
            disk: VecDeque::new(),
            events: Vec::new(),
            closed: 0,
        }
    }

    /// A peer at 10.0.0.`n` (connection `n`) that sends `pieces` (a HaveAll or a bitfield) and,
    /// with `unchoke`, unchokes us.
    fn add_peer(&mut self, n: u8, pieces: Message<'_>, unchoke: bool) -> ConnId {
        let conn = ConnId(u64::from(n));
        let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, n)), 6881);
        self.t
            .add_peer(self.now, conn, addr, Direction::Inbound)
            .unwrap();
        let mut input = harness::fast_handshake(HASH, PeerId([n; 20]));
        input.extend(frame(pieces));
        if unchoke {
            input.extend(frame(Message::Unchoke));
        }
        self.t.handle_bytes(self.now, conn, &input);
        self.pump();
        conn
    }

    /// Takes the torrent's outputs and parses what it sent to each peer.
    fn pump(&mut self) {
        while let Some(out) = self.t.poll_output() {
            match out {
                TorrentOutput::Transmit { conn, bytes } => {
                    self.sent.entry(conn).or_default().extend_from_slice(&bytes);
                }
                TorrentOutput::Disk(op) => self.disk.push_back(op),
                TorrentOutput::Event(e) => self.events.push(e),
                TorrentOutput::Close { .. } => self.closed += 1,
            }
        }
        for (conn, buf) in &mut self.sent {
            for sent in harness::take_sent(buf, &self.layout) {
                match sent {
                    Sent::Request(block) => {
                        self.requests.entry(*conn).or_default().push(block);
                        self.asked.push(block);
                        self.requested += 1;
                    }
                    Sent::Cancel(block) => {
                        self.requests
                            .entry(*conn)
                            .or_default()
                            .retain(|b| *b != block);
                        self.cancelled += 1;
                    }
                    Sent::Block => self.blocks_sent += 1,
                    Sent::Other => {}
                }
            }
        }
    }

    /// The peer `conn` answers every request it has out with the right bytes.
    fn serve(&mut self, conn: ConnId) -> usize {
        let blocks = self.requests.remove(&conn).unwrap_or_default();
        for block in &blocks {
            let start = (self.layout.piece_offset(block.piece) + u64::from(block.offset)) as usize;
            let data = self.content[start..start + block.len as usize].to_vec();
            let piece = frame(Message::Piece {
                piece: block.piece.get(),
                offset: block.offset,
                data: &data,
            });
            self.t.handle_bytes(self.now, conn, &piece);
            self.pump();
        }
        blocks.len()
    }

    /// Answers all disk work, failing writes while the disk is full.
    fn answer_disk(&mut self) {
        while let Some(op) = self.disk.pop_front() {
            let done = match op {
                DiskOp::Write { block, .. } if self.full => DiskDone::Written {
                    block,
                    result: Err(DiskError(FULL.into())),
                },
                op => harness::answer_disk(&self.layout, &mut self.storage, false, op),
            };
            self.t.handle_disk(self.now, done);
            self.pump();
        }
    }

    /// Moves the clock to `at` and fires the torrent's timers.
    fn advance_to(&mut self, at: Instant) {
        self.now = at;
        self.t.handle_timeout(at);
        self.pump();
    }

    /// Lets `seed` serve every request and the disk answer, 10 ms at a time, until the torrent
    /// completes (at most 100 rounds).
    fn run_to_completion(&mut self, seed: ConnId) {
        for _ in 0..100 {
            if self.t.is_complete() {
                break;
            }
            self.serve(seed);
            self.answer_disk();
            self.advance_to(self.now + Duration::from_millis(10));
        }
    }

    fn disk_errors(&self) -> usize {
        self.events
            .iter()
            .filter(|e| matches!(e, TorrentEvent::DiskError(_)))
            .count()
    }

    fn verified(&self) -> Vec<u32> {
        self.events
            .iter()
            .filter_map(|e| match e {
                TorrentEvent::PieceVerified(p) => Some(p.get()),
                _ => None,
            })
            .collect()
    }

    fn retry_at(&self) -> Option<Instant> {
        self.t.write_stall().and_then(|s| s.retry_at)
    }
}

#[test]
fn a_full_disk_pauses_requests_reports_once_and_retries_with_a_doubling_backoff() {
    // Proves a failed write stops new requests (and cancels those in flight) without closing the
    // connection, is reported once for the whole stall however many writes fail, is retried after
    // 5 s, 10 s, 20 s, 40 s, 60 s, 60 s, and that once space is back the download completes.
    let mut l = Leecher::new(Bitfield::new(PIECES));
    let seed = l.add_peer(2, Message::HaveAll, true);
    assert!(l.requested > 0, "the leecher asks the seed for blocks");
    l.full = true;
    // The seed sends one block; its write fails: what is in flight then is cancelled.
    let mut rest = l.requests.remove(&seed).unwrap();
    let one = rest.remove(0);
    l.requests.insert(seed, vec![one]);
    l.serve(seed);
    l.requests.entry(seed).or_default().extend(rest);
    let in_flight = l.requests[&seed].len();
    assert!(in_flight > 0);
    l.answer_disk();
    assert_eq!(l.disk_errors(), 1);
    assert_eq!(l.cancelled, in_flight, "what was in flight is cancelled");
    assert!(l.requests.get(&seed).is_none_or(Vec::is_empty));
    let stall = l.t.write_stall().expect("a write stall").clone();
    assert_eq!(stall.error, DiskError(FULL.into()));
    assert_eq!(stall.episode, 1);
    assert_eq!(stall.retry_at, Some(Instant::ZERO + Duration::from_secs(5)));
    assert_eq!(l.t.poll_timeout(), stall.retry_at);

    // Before the retry nothing is asked, whatever the peer says and however time passes.
    let asked = l.requested;
    l.t.handle_bytes(l.now, seed, &frame(Message::KeepAlive));
    l.pump();
    l.advance_to(Instant::ZERO + Duration::from_millis(4_999));
    assert_eq!(l.requested, asked, "no request while the disk is full");

    let mut at = Instant::ZERO + Duration::from_secs(5);
    for expected_wait in [10, 20, 40, 60, 60] {
        l.advance_to(at);
        assert_eq!(l.retry_at(), None, "retrying at {at:?}");
        assert!(l.requested > asked, "the retry asks for blocks again");
        assert!(l.serve(seed) > 0);
        l.answer_disk();
        let retry_at = l.retry_at().expect("the retry failed: a new wait");
        assert_eq!(retry_at, at + Duration::from_secs(expected_wait));
        at = retry_at;
    }
    assert_eq!(l.disk_errors(), 1, "one report for the whole stall");
    assert_eq!(l.t.write_stall().map(|s| s.episode), Some(1));
    assert_eq!(l.closed, 0, "no connection is closed over a full disk");
    assert!(l.verified().is_empty());

    // Space is back: the next retry ends the stall and the download completes.
    l.full = false;
    l.advance_to(at);
    l.run_to_completion(seed);
    assert!(l.t.write_stall().is_none(), "the stall ended");
    assert!(l.t.is_complete(), "complete once space is back");
    assert_eq!(l.disk_errors(), 1);
    let mut verified = l.verified();
    verified.sort_unstable();
    assert_eq!(verified, (0..PIECES).collect::<Vec<_>>());
}

#[test]
fn verified_pieces_stay_and_uploads_go_on_while_the_disk_is_full() {
    // Proves a full disk loses no verified piece, gives the piece whose write failed back to the
    // picker (fetched whole again later), and still serves a peer's requests for what we have.
    let mut have = Bitfield::new(PIECES);
    have.set(0);
    have.set(1);
    let mut l = Leecher::new(have);
    let seed = l.add_peer(2, Message::HaveAll, true);
    let leecher = l.add_peer(3, Message::HaveNone, false);
    l.t.handle_bytes(l.now, leecher, &frame(Message::Interested));
    l.pump();

    // One block of a piece is written, the other fails: the piece goes back to the picker.
    let first = l.requests[&seed][0];
    let partner = l
        .layout
        .blocks(first.piece)
        .find(|b| *b != first)
        .expect("two blocks a piece");
    assert!(l.requests[&seed].contains(&partner));
    l.requests.insert(seed, vec![first]);
    l.serve(seed);
    l.answer_disk();
    l.full = true;
    l.requests.insert(seed, vec![partner]);
    l.serve(seed);
    l.answer_disk();
    assert!(l.t.write_stall().is_some());
    assert_eq!(l.t.have().count(), 2, "verified pieces stay");

    // The other peer asks for a block of piece 0: it is read and sent while the stall lasts.
    let sent = l.blocks_sent;
    l.t.handle_bytes(
        l.now,
        leecher,
        &frame(Message::Request {
            piece: 0,
            offset: 0,
            len: 16384,
        }),
    );
    l.pump();
    l.answer_disk();
    assert_eq!(l.blocks_sent, sent + 1, "uploads go on during the stall");
    assert!(l.t.write_stall().is_some());

    // After the retry, with space back, the failed piece is fetched whole again.
    l.full = false;
    l.advance_to(Instant::ZERO + Duration::from_secs(5));
    let asked_before = l.asked.len();
    l.run_to_completion(seed);
    assert!(l.t.is_complete());
    assert!(l.t.write_stall().is_none());
    let again = &l.asked[asked_before..];
    assert!(
        again.contains(&first) && again.contains(&partner),
        "both blocks of the failed piece are asked again: {again:?}"
    );
    assert_eq!(l.storage, l.content, "the data is whole and right");
}

#[test]
fn a_stall_ends_only_when_a_whole_piece_is_written_after_the_retry() {
    // Proves one successful write after the retry (a rewrite into space a full disk still has)
    // does not end the stall while its piece's other block fails, a second stall counts as a new
    // episode with its own report, and the backoff restarts at 5 s.
    let mut l = Leecher::new(Bitfield::new(PIECES));
    let seed = l.add_peer(2, Message::HaveAll, true);
    l.full = true;
    let one = l.requests[&seed][0];
    l.requests.insert(seed, vec![one]);
    l.serve(seed);
    l.answer_disk();
    l.advance_to(Instant::ZERO + Duration::from_secs(5));
    // After the retry: the first block of a piece is written, its partner fails.
    let asked = l.requests[&seed].clone();
    let (a, b) = {
        let piece = asked[0].piece;
        let mut blocks = asked.iter().filter(|x| x.piece == piece);
        (*blocks.next().unwrap(), *blocks.next().unwrap())
    };
    l.full = false;
    l.requests.insert(seed, vec![a]);
    l.serve(seed);
    l.answer_disk();
    assert!(l.t.write_stall().is_some(), "one block is not a piece");
    l.full = true;
    l.requests.insert(seed, vec![b]);
    l.serve(seed);
    l.answer_disk();
    let stall = l.t.write_stall().expect("still stalled").clone();
    assert_eq!(stall.backoff, Duration::from_secs(10));
    assert_eq!(l.disk_errors(), 1);

    // Space back: a whole piece ends it.
    l.full = false;
    l.advance_to(l.retry_at().unwrap());
    let piece = l.requests[&seed][0].piece;
    let whole: Vec<BlockRef> = l.requests[&seed]
        .iter()
        .copied()
        .filter(|x| x.piece == piece)
        .collect();
    assert_eq!(whole.len(), 2);
    l.requests.insert(seed, whole);
    l.serve(seed);
    l.answer_disk();
    assert!(l.t.write_stall().is_none(), "a whole piece ends the stall");

    // A new failure is a new stall, reported again, from the first wait.
    l.full = true;
    l.serve(seed);
    l.answer_disk();
    let stall = l.t.write_stall().expect("a second stall").clone();
    assert_eq!(stall.episode, 2);
    assert_eq!(stall.backoff, Duration::from_secs(5));
    assert_eq!(l.disk_errors(), 2);
}
