//! An in-memory swarm harness: [`Torrent`] machines joined by links with latency and per-node
//! upload bandwidth, a clock that jumps to the next delivery or timeout, disks in memory answered
//! inline, and a step bound that reports livelock. No tokio, no threads, no real time: the same
//! seed gives the same run. It serves the protocol's tests and benchmarks, and is the seed of the
//! simulator's fast engine.

use core::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use sha1::{Digest, Sha1};

use crate::content::ContentSpec;
use crate::io::{ConnId, DiskDone, DiskOp};
use crate::metainfo::{BlockRef, InfoHash, TorrentLayout};
use crate::peer::Direction;
use crate::rng::Rng;
use crate::time::Instant;
use crate::torrent::{Bitfield, Torrent, TorrentConfig, TorrentEvent, TorrentOutput};
use crate::wire::PeerId;

/// The handshake a scripted peer `peer_id` sends for `info_hash`, with the fast extension (BEP 6).
pub fn fast_handshake(info_hash: InfoHash, peer_id: PeerId) -> Vec<u8> {
    let mut reserved = crate::wire::Reserved::NONE;
    reserved.set_fast(true);
    crate::wire::Handshake {
        reserved,
        info_hash,
        peer_id,
    }
    .encode()
    .to_vec()
}

/// A frame a torrent sent to a scripted peer, as far as the peer's tests care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sent {
    /// A request for this block.
    Request(BlockRef),
    /// A cancel of this block.
    Cancel(BlockRef),
    /// A `piece` message (a block uploaded).
    Block,
    /// Anything else.
    Other,
}

/// Takes the whole frames off `buf`, the bytes a torrent sent one scripted peer (its 68-byte
/// handshake first, if `buf` starts with one), and says what each was; a partial frame stays.
pub fn take_sent(buf: &mut Vec<u8>, layout: &TorrentLayout) -> Vec<Sent> {
    if buf.len() >= 68 && buf[0] == 19 {
        buf.drain(..68);
    }
    let mut out = Vec::new();
    while buf.len() >= 4 {
        let len = u32::from_be_bytes(buf[..4].try_into().expect("4 bytes")) as usize;
        if buf.len() < 4 + len {
            break;
        }
        let word = |at: usize| u32::from_be_bytes(buf[at..at + 4].try_into().expect("4 bytes"));
        let block = || {
            layout
                .block_at(word(5), word(9), word(13))
                .expect("the torrent names its own blocks")
        };
        out.push(match (len, buf.get(4).copied()) {
            (13, Some(crate::wire::id::REQUEST)) => Sent::Request(block()),
            (13, Some(crate::wire::id::CANCEL)) => Sent::Cancel(block()),
            (_, Some(crate::wire::id::PIECE)) => Sent::Block,
            _ => Sent::Other,
        });
        buf.drain(..4 + len);
    }
    out
}

/// The seed of the harness's content ([`crate::content`]).
pub const CONTENT_SEED: u64 = 0;

/// The torrent's first `len` bytes: [`crate::content`]'s bytes under [`CONTENT_SEED`].
pub fn content(len: u64) -> Vec<u8> {
    crate::content::bytes(
        CONTENT_SEED,
        0,
        usize::try_from(len).expect("a test-sized torrent"),
    )
}

/// Answers a [`DiskOp`] against a torrent held whole in memory (`storage` is the torrent's byte
/// stream). With `corrupt`, blocks read for peers have every bit flipped.
pub fn answer_disk(
    layout: &TorrentLayout,
    storage: &mut [u8],
    corrupt: bool,
    op: DiskOp,
) -> DiskDone {
    let at = |piece, offset: u32| (layout.piece_offset(piece) + u64::from(offset)) as usize;
    match op {
        DiskOp::Write { block, data } => {
            let start = at(block.piece, block.offset);
            storage[start..start + data.len()].copy_from_slice(&data);
            DiskDone::Written {
                block,
                result: Ok(()),
            }
        }
        DiskOp::Hash { piece } => {
            let start = at(piece, 0);
            let len = layout.piece_len(piece) as usize;
            let digest = Sha1::digest(&storage[start..start + len]).into();
            DiskDone::Hashed {
                piece,
                result: Ok(digest),
            }
        }
        DiskOp::HashBlocks { piece, blocks } => {
            let digests = blocks
                .iter()
                .map(|b| {
                    let start = at(b.piece, b.offset);
                    Sha1::digest(&storage[start..start + b.len as usize]).into()
                })
                .collect();
            DiskDone::BlockHashes {
                piece,
                result: Ok(digests),
            }
        }
        DiskOp::Read { conn, block } => {
            let start = at(block.piece, block.offset);
            let mut data = storage[start..start + block.len as usize].to_vec();
            if corrupt {
                data.iter_mut().for_each(|b| *b = !*b);
            }
            DiskDone::Read {
                conn,
                block,
                result: Ok(Bytes::from(data)),
            }
        }
    }
}

/// The info dictionary of [`crate::content::torrent`] for a single file named `test` of
/// [`content`]'s `total` bytes in `piece_length` pieces, with an ignored `x-pad` key of `pad`
/// bytes added (to make the metadata span several 16 KiB `ut_metadata` pieces; the key sorts
/// last, so the dictionary stays canonical), and its info hash.
pub fn info_dict(piece_length: u64, total: u64, pad: usize) -> (Vec<u8>, InfoHash) {
    let spec = ContentSpec::single(
        "test",
        u32::try_from(piece_length).expect("a test piece length"),
        total,
    );
    let mut info = crate::content::torrent(CONTENT_SEED, &spec)
        .expect("a valid test torrent")
        .info_bytes;
    if pad > 0 {
        info.pop();
        info.extend_from_slice(format!("5:x-pad{pad}:").as_bytes());
        info.extend(std::iter::repeat_n(b'0', pad));
        info.push(b'e');
    }
    let hash = InfoHash::of_info_bytes(&info);
    (info, hash)
}

/// The piece hashes of an info dictionary made by [`info_dict`].
fn info_hashes(info: &[u8]) -> Vec<[u8; 20]> {
    crate::metainfo::Info::from_info_bytes(info)
        .expect("info_dict makes valid dictionaries")
        .pieces
}

/// How a node behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeSpec {
    /// Starts with every piece.
    pub seed: bool,
    /// Upload bandwidth in bytes per second.
    pub upload_bytes_per_s: u64,
    /// Serves corrupted blocks (every byte flipped).
    pub corrupt: bool,
}

/// One peer of the swarm.
pub struct Node {
    /// Its torrent state machine.
    pub torrent: Torrent,
    /// Its disk: the whole torrent in memory.
    pub storage: Vec<u8>,
    /// How it behaves.
    pub spec: NodeSpec,
    /// Its (simulated) address.
    pub addr: SocketAddr,
    uplink_free_at: Instant,
    /// When it verified its last wanted piece (see [`Torrent::wanted_complete`]).
    pub completed_at: Option<Instant>,
    /// Every event its torrent emitted.
    pub events: Vec<TorrentEvent>,
    /// The most peers this node ever had unchoked at once.
    pub max_unchoked: usize,
}

#[derive(Clone, Copy, Debug)]
struct Link {
    node: usize,
    remote_node: usize,
    remote_conn: ConnId,
}

/// Something the network does at a time.
enum Delivery {
    /// Bytes arrive at `conn`'s node.
    Arrive(ConnId, Bytes),
    /// The sender's uplink finished sending `len` bytes of `conn`: backpressure for the torrent.
    Sent(usize, ConnId, usize),
}

/// The swarm.
pub struct Swarm {
    /// The peers.
    pub nodes: Vec<Node>,
    /// The torrent's geometry.
    pub layout: TorrentLayout,
    links: BTreeMap<ConnId, Link>,
    deliveries: BTreeMap<(Instant, u64), Delivery>,
    seq: u64,
    next_conn: u64,
    /// The simulated clock.
    pub now: Instant,
    latency: Duration,
    /// Steps taken by [`Swarm::run`].
    pub steps: u64,
}

impl Swarm {
    /// A swarm as [`Swarm::new`], but for the real info dictionary of [`info_dict`] (with `pad`
    /// bytes of padding): every node knows it ([`Torrent::set_metadata`]) except those listed in
    /// `magnets`, which start from the info hash alone ([`Torrent::new_magnet`]).
    pub fn new_with_metadata(
        seed: u64,
        piece_length: u64,
        total: u64,
        specs: &[NodeSpec],
        magnets: &[usize],
        pad: usize,
        latency: Duration,
    ) -> Swarm {
        let (info, hash) = info_dict(piece_length, total, pad);
        let mut swarm = Swarm::new(seed, piece_length, total, specs, latency);
        let mut rng = Rng::new(seed ^ 0x6d61_676e);
        for (i, node) in swarm.nodes.iter_mut().enumerate() {
            let id = node.torrent.our_id();
            node.torrent = if magnets.contains(&i) {
                Torrent::new_magnet(TorrentConfig::default(), hash, id, rng.fork(i as u64))
            } else {
                let have = if node.spec.seed {
                    Bitfield::full(swarm.layout.piece_count())
                } else {
                    Bitfield::new(swarm.layout.piece_count())
                };
                let hashes = info_hashes(&info);
                let mut t = Torrent::new(
                    TorrentConfig::default(),
                    hash,
                    swarm.layout.clone(),
                    hashes,
                    have,
                    id,
                    rng.fork(i as u64),
                );
                t.set_metadata(Bytes::from(info.clone()), false);
                t
            };
        }
        swarm
    }

    /// A swarm for a torrent of `total` bytes in `piece_length` pieces, one node per spec.
    pub fn new(
        seed: u64,
        piece_length: u64,
        total: u64,
        specs: &[NodeSpec],
        latency: Duration,
    ) -> Swarm {
        let layout = TorrentLayout::new(piece_length, &[total]).expect("valid test layout");
        let data = content(total);
        let hashes = crate::content::piece_hashes(CONTENT_SEED, &layout);
        let info_hash = InfoHash([0x42; 20]);
        let mut rng = Rng::new(seed);
        let nodes = specs
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                let have = if spec.seed {
                    Bitfield::full(layout.piece_count())
                } else {
                    Bitfield::new(layout.piece_count())
                };
                let mut id = [0u8; 20];
                id[..3].copy_from_slice(b"-bt");
                id[4..12].copy_from_slice(&(i as u64).to_be_bytes());
                let torrent = Torrent::new(
                    TorrentConfig::default(),
                    info_hash,
                    layout.clone(),
                    hashes.clone(),
                    have,
                    PeerId(id),
                    rng.fork(i as u64),
                );
                Node {
                    torrent,
                    storage: if spec.seed {
                        data.clone()
                    } else {
                        vec![0; total as usize]
                    },
                    spec: *spec,
                    addr: SocketAddr::new(
                        IpAddr::V4(Ipv4Addr::new(10, 0, (i >> 8) as u8, i as u8)),
                        6881,
                    ),
                    uplink_free_at: Instant::ZERO,
                    completed_at: spec.seed.then_some(Instant::ZERO),
                    events: Vec::new(),
                    max_unchoked: 0,
                }
            })
            .collect();
        Swarm {
            nodes,
            layout,
            links: BTreeMap::new(),
            deliveries: BTreeMap::new(),
            seq: 0,
            next_conn: 1,
            now: Instant::ZERO,
            latency,
            steps: 0,
        }
    }

    /// Opens a connection from node `a` to node `b`.
    pub fn connect(&mut self, a: usize, b: usize) {
        let ca = ConnId(self.next_conn);
        let cb = ConnId(self.next_conn + 1);
        self.next_conn += 2;
        let (addr_a, addr_b) = (self.nodes[a].addr, self.nodes[b].addr);
        if self.nodes[b]
            .torrent
            .add_peer(self.now, cb, addr_a, Direction::Inbound)
            .is_err()
        {
            return;
        }
        if self.nodes[a]
            .torrent
            .add_peer(self.now, ca, addr_b, Direction::Outbound)
            .is_err()
        {
            self.nodes[b].torrent.peer_disconnected(self.now, cb);
            return;
        }
        self.links.insert(
            ca,
            Link {
                node: a,
                remote_node: b,
                remote_conn: cb,
            },
        );
        self.links.insert(
            cb,
            Link {
                node: b,
                remote_node: a,
                remote_conn: ca,
            },
        );
        self.drain(a);
        self.drain(b);
    }

    /// Connects every pair of nodes.
    pub fn connect_all(&mut self) {
        for a in 0..self.nodes.len() {
            for b in a + 1..self.nodes.len() {
                self.connect(a, b);
            }
        }
    }

    /// Handles node `i`'s outputs until it has none: sends, closes, disk work (answered at once).
    fn drain(&mut self, i: usize) {
        // Bounded: each disk answer produces finitely many outputs; a broken machine that loops
        // forever here is caught by this bound.
        for _ in 0..1_000_000 {
            let Some(out) = self.nodes[i].torrent.poll_output() else {
                let unchoked = self.unchoked_count(i);
                let node = &mut self.nodes[i];
                node.max_unchoked = node.max_unchoked.max(unchoked);
                return;
            };
            match out {
                TorrentOutput::Transmit { conn, bytes } => self.transmit(i, conn, bytes),
                TorrentOutput::Close { conn, .. } => {
                    if let Some(link) = self.links.remove(&conn) {
                        self.links.remove(&link.remote_conn);
                        let now = self.now;
                        self.nodes[link.remote_node]
                            .torrent
                            .peer_disconnected(now, link.remote_conn);
                        self.drain(link.remote_node);
                    }
                }
                TorrentOutput::Disk(op) => {
                    let done = self.disk(i, op);
                    let now = self.now;
                    self.nodes[i].torrent.handle_disk(now, done);
                }
                TorrentOutput::Event(e) => {
                    if e == TorrentEvent::Complete
                        || (matches!(e, TorrentEvent::PieceVerified(_))
                            && self.nodes[i].torrent.wanted_complete())
                    {
                        self.nodes[i].completed_at.get_or_insert(self.now);
                    }
                    self.nodes[i].events.push(e);
                }
            }
        }
        panic!("node {i} produced outputs without end");
    }

    fn unchoked_count(&self, i: usize) -> usize {
        let t = &self.nodes[i].torrent;
        t.conns()
            .filter(|c| t.peer(*c).is_some_and(|p| !p.am_choking()))
            .count()
    }

    fn transmit(&mut self, from: usize, conn: ConnId, bytes: Bytes) {
        let Some(link) = self.links.get(&conn).copied() else {
            return;
        };
        let node = &mut self.nodes[from];
        let start = node.uplink_free_at.max(self.now);
        let micros = bytes.len() as u64 * 1_000_000 / node.spec.upload_bytes_per_s.max(1);
        node.uplink_free_at = start + Duration::from_micros(micros);
        let sent_at = node.uplink_free_at;
        let at = sent_at + self.latency;
        self.seq += 1;
        self.deliveries
            .insert((sent_at, self.seq), Delivery::Sent(from, conn, bytes.len()));
        self.seq += 1;
        self.deliveries
            .insert((at, self.seq), Delivery::Arrive(link.remote_conn, bytes));
    }

    fn disk(&mut self, i: usize, op: DiskOp) -> DiskDone {
        let node = &mut self.nodes[i];
        answer_disk(&self.layout, &mut node.storage, node.spec.corrupt, op)
    }

    /// Runs until every node is complete, nothing is left to happen, `max_time` passes, or
    /// `max_steps` steps (then it panics: livelock).
    pub fn run(&mut self, max_time: Duration, max_steps: u64) {
        let deadline = Instant::ZERO + max_time;
        loop {
            if self
                .nodes
                .iter()
                .all(|n| n.completed_at.is_some() || n.spec.corrupt)
            {
                return;
            }
            self.steps += 1;
            assert!(
                self.steps <= max_steps,
                "no progress after {max_steps} steps: livelock?"
            );
            let next_delivery = self.deliveries.keys().next().map(|(t, _)| *t);
            let next_timer = self
                .nodes
                .iter()
                .filter_map(|n| n.torrent.poll_timeout())
                .min();
            let Some(next) = next_delivery.into_iter().chain(next_timer).min() else {
                return;
            };
            if next > deadline {
                return;
            }
            self.now = self.now.max(next);
            let now = self.now;
            while let Some(entry) = self.deliveries.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                match entry.remove() {
                    Delivery::Arrive(conn, bytes) => {
                        if let Some(link) = self.links.get(&conn).copied() {
                            self.nodes[link.node]
                                .torrent
                                .handle_bytes(now, conn, &bytes);
                            self.drain(link.node);
                        }
                    }
                    Delivery::Sent(node, conn, len) => {
                        self.nodes[node].torrent.handle_sent(now, conn, len);
                        self.drain(node);
                    }
                }
            }
            for i in 0..self.nodes.len() {
                if self.nodes[i]
                    .torrent
                    .poll_timeout()
                    .is_some_and(|t| t <= now)
                {
                    self.nodes[i].torrent.handle_timeout(now);
                    self.drain(i);
                }
            }
        }
    }
}
