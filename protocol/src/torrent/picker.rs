//! [`Picker`]: which block to request next, from which peer.
//!
//! Strategy: pieces already started are finished first, block by block, so a slow peer
//! never holds a piece hostage: any peer that has the piece takes its next missing block. New pieces
//! are chosen rarest-first by availability (how many connected peers have them), ties broken by a
//! per-piece key drawn once from the seeded [`Rng`] (so two bt peers with different seeds spread
//! over different pieces, and one seed always gives the same order); `Sequential` and `Random` are
//! alternatives. When every missing block is already requested, endgame: blocks in flight to other
//! peers may be requested again (the caller cancels the duplicates when one arrives).
//!
//! Priorities ([`Picker::set_priorities`]): a piece of [`FilePriority::Skip`] is never started
//! (the user did not select any file it touches); [`FilePriority::High`] pieces are started before
//! [`FilePriority::Normal`] ones, and the strategy orders pieces within a class. Started pieces are
//! finished whatever their class; a piece that becomes skipped while started is dropped.
//!
//! Readers ([`super::deadlines`]): the torrent hands the picker the pieces of its readers'
//! windows ([`Picker::set_readahead`]), started before every other new piece and in order, and
//! before each round the urgent ones ([`Picker::set_urgent`]): those are served first of all, to
//! the peers the torrent lets take them, and a late one's blocks already in flight may be asked
//! of a second peer (as in endgame, but only for those pieces).
//!
//! Invariants: never hands out a block of a piece we have, skip, or the peer lacks; a block is
//! handed to the same peer at most once while in flight (the caller's `in_flight` check);
//! `settled` is exactly `have` ∪ skipped pieces; per-piece state exists only for started pieces,
//! so memory is O(pieces) bits plus O(started pieces × blocks).

use std::collections::BTreeMap;

use super::Bitfield;
use super::deadlines::Urgent;
use crate::metainfo::{BlockRef, PieceIndex, TorrentLayout};
use crate::rng::Rng;

/// Endgame starts when at most this many blocks are still to arrive (and all are requested).
pub const ENDGAME_MAX_BLOCKS: usize = 32;

/// In endgame, the most peers one block is requested from at once.
pub const MAX_ENDGAME_REQUESTS: u16 = 2;

/// The most missing blocks of one urgent piece a peer takes in one pick: the rest go to other
/// peers, so the piece arrives at the sum of their rates.
pub const URGENT_BLOCKS_PER_PEER: usize = 4;

/// How new pieces are chosen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Strategy {
    /// Rarest first (the default, BEP 3 practice): best for the swarm's health.
    #[default]
    RarestFirst,
    /// In order: for streaming or previewing.
    Sequential,
    /// Uniformly random among available pieces.
    Random,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Block {
    Missing,
    /// Requested from this many peers (more than one only in endgame).
    Requested(u16),
    Received,
}

#[derive(Clone, Debug)]
struct Partial {
    blocks: Vec<Block>,
    received: u32,
}

/// What [`Picker::block_received`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received {
    /// The block was new; the piece still misses blocks.
    Stored,
    /// The block was new and completes the piece: hash it now.
    PieceComplete,
    /// Not wanted: a duplicate (endgame), or a piece we have or never requested.
    Unwanted,
}

/// How much a file (or a piece) is wanted, lowest first: a piece's priority is the highest of
/// the files it touches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FilePriority {
    /// Not downloaded: no piece lying wholly in skipped files is requested.
    Skip,
    /// Downloaded in the strategy's order (the default).
    #[default]
    Normal,
    /// Downloaded before every normal piece.
    High,
}

/// Chooses blocks to request for one torrent.
#[derive(Clone, Debug)]
pub struct Picker {
    layout: TorrentLayout,
    strategy: Strategy,
    have: Bitfield,
    /// Pieces we need no more: verified, or skipped ([`FilePriority::Skip`]).
    settled: Bitfield,
    /// Pieces of [`FilePriority::High`].
    high: Bitfield,
    /// Pieces in both `settled` and `hashing` (skipped, or verified before and hashed again).
    hashing_skipped: u32,
    /// Pieces whose blocks are all received and are being hashed: not picked again.
    hashing: Bitfield,
    availability: Vec<u32>,
    tiebreak: Vec<u32>,
    partial: BTreeMap<u32, Partial>,
    rng: Rng,
    /// See [`Picker::epoch`].
    epoch: u64,
    /// Pieces started by [`Picker::pick`] since the last [`Picker::take_started`]; at most one
    /// entry per piece of the torrent between two takes.
    started: Vec<PieceIndex>,
    /// Pieces dropped while started (made skipped): requests for their blocks may still be out
    /// at peers without being counted, until the piece is verified.
    orphaned: Bitfield,
    /// Pieces of the readers' windows: started before all others, in order.
    readahead: Bitfield,
    /// The urgent pieces of this round, most urgent first (at most one entry per piece).
    urgent: Vec<Urgent>,
}

impl Picker {
    /// A picker for `layout` that already has the pieces in `have`.
    pub fn new(layout: TorrentLayout, have: Bitfield, strategy: Strategy, mut rng: Rng) -> Self {
        let n = layout.piece_count();
        let tiebreak = (0..n).map(|_| rng.next_u32()).collect();
        Picker {
            hashing: Bitfield::new(n),
            settled: have.clone(),
            high: Bitfield::new(n),
            hashing_skipped: 0,
            availability: vec![0; n as usize],
            layout,
            strategy,
            have,
            tiebreak,
            partial: BTreeMap::new(),
            rng,
            epoch: 0,
            started: Vec::new(),
            orphaned: Bitfield::new(n),
            readahead: Bitfield::new(n),
            urgent: Vec::new(),
        }
    }

    /// The pieces of the readers' windows (`None`: no reader): each is started before any piece
    /// outside, in order, whatever the strategy.
    pub fn set_readahead(&mut self, window: Option<&Bitfield>) {
        let n = self.layout.piece_count();
        let window = window
            .filter(|w| w.len() == n)
            .cloned()
            .unwrap_or_else(|| Bitfield::new(n));
        if window != self.readahead {
            self.readahead = window;
            self.epoch += 1;
        }
    }

    /// The urgent pieces from now on, most urgent first (see [`super::Deadlines`]); pieces out
    /// of range are ignored.
    pub fn set_urgent(&mut self, urgent: &[Urgent]) {
        if urgent != self.urgent.as_slice() {
            let n = self.layout.piece_count();
            self.urgent.clear();
            self.urgent
                .extend(urgent.iter().filter(|u| u.piece < n).copied());
            self.epoch += 1;
        }
    }

    /// Whether any piece is urgent.
    pub fn has_urgent(&self) -> bool {
        !self.urgent.is_empty()
    }

    /// Whether `piece` is urgent.
    pub fn is_urgent(&self, piece: u32) -> bool {
        self.urgent.iter().any(|u| u.piece == piece)
    }

    /// Whether a peer holding `peer_pieces` holds an urgent piece we still need.
    pub fn urgent_held_by(&self, peer_pieces: &Bitfield) -> bool {
        self.urgent
            .iter()
            .any(|u| peer_pieces.get(u.piece) && !self.settled.get(u.piece))
    }

    /// The pieces [`Picker::pick`] started (first blocks handed out) since the last call, in
    /// order. A piece that failed its hash check starts again.
    pub fn take_started(&mut self) -> std::vec::Drain<'_, PieceIndex> {
        self.started.drain(..)
    }

    /// A counter that changes whenever blocks may have become pickable that were not: a request
    /// dropped, a piece failed, a piece started and left with missing blocks, or (near the end)
    /// anything that may start endgame. While it stays the same, a [`Picker::pick`] for a peer
    /// whose pieces and requests did not change hands out nothing if the last one ran short: the
    /// torrent uses this to skip asking again (conservative: it may change needlessly).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// How many pieces are settled, being hashed or started (each counted once).
    fn accounted(&self) -> usize {
        self.settled.count() as usize + self.hashing.count() as usize + self.partial.len()
            - self.hashing_skipped as usize
    }

    /// Whether every wanted piece is verified, being hashed or started: endgame may begin from
    /// here on.
    fn near_end(&self) -> bool {
        self.accounted() >= self.layout.piece_count() as usize
    }

    /// Our verified pieces.
    pub fn have(&self) -> &Bitfield {
        &self.have
    }

    /// The pieces we need no more: verified ones and skipped ones. A peer is interesting while it
    /// has a piece missing here.
    pub fn settled(&self) -> &Bitfield {
        &self.settled
    }

    /// Whether we still need `piece`: not verified and not skipped.
    pub fn needs(&self, piece: PieceIndex) -> bool {
        !self.settled.get(piece.get())
    }

    /// Whether every wanted (not skipped) piece is verified.
    pub fn wanted_complete(&self) -> bool {
        self.settled.is_complete()
    }

    /// Sets each piece's priority (`pieces[i]` for piece `i`; missing entries are
    /// [`FilePriority::Normal`]). Started pieces that become skipped are dropped: their blocks
    /// still in flight arrive as [`Received::Unwanted`].
    pub fn set_priorities(&mut self, pieces: &[FilePriority]) {
        let n = self.layout.piece_count();
        let mut settled = self.have.clone();
        let mut high = Bitfield::new(n);
        for i in 0..n {
            match pieces.get(i as usize).copied().unwrap_or_default() {
                FilePriority::Skip => {
                    settled.set(i);
                }
                FilePriority::Normal => {}
                FilePriority::High => {
                    high.set(i);
                }
            }
        }
        let orphaned = &mut self.orphaned;
        self.partial.retain(|i, _| {
            if settled.get(*i) {
                orphaned.set(*i);
            }
            !settled.get(*i)
        });
        self.hashing_skipped = self.hashing.ones().filter(|&i| settled.get(i)).count() as u32;
        self.settled = settled;
        self.high = high;
        self.epoch += 1;
    }

    /// How many connected peers have `piece`.
    pub fn availability(&self, piece: PieceIndex) -> u32 {
        self.availability[piece.as_usize()]
    }

    /// Whether we are in endgame: every block we lack is received or in flight, and at most
    /// [`ENDGAME_MAX_BLOCKS`] are still to arrive. Only then are blocks requested twice; earlier,
    /// deep pipelines would have every block in flight long before the end and duplicate the
    /// whole download.
    pub fn in_endgame(&self) -> bool {
        if !self.near_end() {
            return false;
        }
        let mut to_arrive = 0usize;
        for p in self.partial.values() {
            for b in &p.blocks {
                match b {
                    Block::Missing => return false,
                    Block::Requested(_) => to_arrive += 1,
                    Block::Received => {}
                }
            }
        }
        to_arrive <= ENDGAME_MAX_BLOCKS
    }

    /// A peer announced its bitfield (or have-all): count its pieces.
    pub fn add_peer(&mut self, pieces: &Bitfield) {
        for i in pieces.ones() {
            if let Some(a) = self.availability.get_mut(i as usize) {
                *a += 1;
            }
        }
    }

    /// A peer left: uncount its pieces.
    pub fn remove_peer(&mut self, pieces: &Bitfield) {
        for i in pieces.ones() {
            if let Some(a) = self.availability.get_mut(i as usize) {
                *a = a.saturating_sub(1);
            }
        }
    }

    /// A peer announced one more piece (`have`).
    pub fn peer_has(&mut self, piece: PieceIndex) {
        self.availability[piece.as_usize()] += 1;
    }

    /// Picks up to `max` blocks to request from a peer that has `peer_pieces`, skipping blocks for
    /// which `in_flight` says this peer already has a request out. Appends them to `out`.
    pub fn pick(
        &mut self,
        peer_pieces: &Bitfield,
        max: usize,
        in_flight: impl Fn(BlockRef) -> bool,
        out: &mut Vec<BlockRef>,
    ) {
        self.pick_for(peer_pieces, max, true, max, in_flight, out);
    }

    /// [`Picker::pick`], for a peer that may take urgent blocks first only if `urgent_ok` (the
    /// torrent keeps them for its faster peers), and at most `normal_max` blocks that are not
    /// urgent (the torrent keeps pipelines short while pieces are urgent, so urgent blocks asked
    /// later do not queue behind seconds of others at the peer).
    pub fn pick_for(
        &mut self,
        peer_pieces: &Bitfield,
        max: usize,
        urgent_ok: bool,
        normal_max: usize,
        in_flight: impl Fn(BlockRef) -> bool,
        out: &mut Vec<BlockRef>,
    ) {
        let start = out.len();
        // 0. Urgent pieces, most urgent first.
        if urgent_ok && !self.urgent.is_empty() {
            self.pick_urgent(peer_pieces, max, &in_flight, out);
        }
        let max = max.min(out.len() - start + normal_max);
        if out.len() - start >= max {
            return;
        }
        // 1. Finish started pieces.
        let remaining = max - (out.len() - start);
        self.pick_from_partial(peer_pieces, None, remaining, out);
        // 2. Start new pieces.
        while out.len() - start < max {
            let Some(piece) = self.choose_new_piece(peer_pieces) else {
                break;
            };
            let blocks = vec![Block::Missing; self.layout.block_count(piece) as usize];
            self.started.push(piece);
            self.partial.insert(
                piece.get(),
                Partial {
                    blocks,
                    received: 0,
                },
            );
            let remaining = max - (out.len() - start);
            self.pick_from_partial(peer_pieces, Some(piece.get()), remaining, out);
            // Its blocks not taken now are there for other peers.
            self.epoch += 1;
        }
        // Taking the last missing blocks may start endgame for other peers.
        if out.len() > start && self.near_end() {
            self.epoch += 1;
        }
        // 3. Endgame: duplicate requests for blocks in flight elsewhere.
        if out.len() - start < max && self.in_endgame() {
            let remaining = max - (out.len() - start);
            // Blocks handed out above in this call are in flight to this peer too.
            let picked_now: Vec<BlockRef> = out[start..].to_vec();
            let in_flight = |b: BlockRef| in_flight(b) || picked_now.contains(&b);
            self.pick_endgame(peer_pieces, None, remaining, &in_flight, out);
        }
    }

    /// Step 0 of a pick: missing blocks of the urgent pieces the peer has, starting them as
    /// needed, and of a late one also blocks in flight to fewer than
    /// [`MAX_ENDGAME_REQUESTS`] other peers.
    fn pick_urgent(
        &mut self,
        peer_pieces: &Bitfield,
        max: usize,
        in_flight: &dyn Fn(BlockRef) -> bool,
        out: &mut Vec<BlockRef>,
    ) {
        let start = out.len();
        let urgent = std::mem::take(&mut self.urgent);
        for u in &urgent {
            let taken = out.len() - start;
            if taken == max {
                break;
            }
            let i = u.piece;
            if !peer_pieces.get(i) || self.settled.get(i) || self.hashing.get(i) {
                continue;
            }
            if !self.partial.contains_key(&i) {
                let Some(piece) = self.layout.piece(i) else {
                    continue;
                };
                self.started.push(piece);
                let blocks = vec![Block::Missing; self.layout.block_count(piece) as usize];
                self.partial.insert(
                    i,
                    Partial {
                        blocks,
                        received: 0,
                    },
                );
                self.epoch += 1;
            }
            let before = out.len();
            // A few blocks each: an urgent piece comes from several peers at once.
            let spread = URGENT_BLOCKS_PER_PEER.min(max - taken);
            self.pick_from_partial(peer_pieces, Some(i), spread, out);
            if out.len() - before == spread && self.partial[&i].blocks.contains(&Block::Missing) {
                // Its blocks not taken now are there for other peers.
                self.epoch += 1;
            }
            if !u.late || out.len() - start == max {
                continue;
            }
            // Late: its blocks in flight elsewhere too (those just picked are this peer's).
            let picked_now: Vec<BlockRef> = out[before..].to_vec();
            let in_flight = |b: BlockRef| in_flight(b) || picked_now.contains(&b);
            let remaining = max - (out.len() - start);
            self.pick_endgame(peer_pieces, Some(i), remaining, &in_flight, out);
        }
        self.urgent = urgent;
    }

    /// Hands out missing blocks of started pieces the peer has (only `only`, if given).
    fn pick_from_partial(
        &mut self,
        peer_pieces: &Bitfield,
        only: Option<u32>,
        max: usize,
        out: &mut Vec<BlockRef>,
    ) {
        let mut taken = 0;
        for (&index, partial) in self.partial.iter_mut() {
            if taken == max {
                break;
            }
            if only.is_some_and(|o| o != index) || !peer_pieces.get(index) {
                continue;
            }
            let piece = self
                .layout
                .piece(index)
                .expect("partial pieces are in range");
            for (b, state) in partial.blocks.iter_mut().enumerate() {
                if taken == max {
                    break;
                }
                if *state == Block::Missing {
                    *state = Block::Requested(1);
                    out.push(
                        self.layout
                            .block(piece, b as u32)
                            .expect("block index in range"),
                    );
                    taken += 1;
                }
            }
        }
    }

    /// Hands out blocks requested from other peers but not from this one (endgame, or a late
    /// urgent piece: only `only`, if given).
    fn pick_endgame(
        &mut self,
        peer_pieces: &Bitfield,
        only: Option<u32>,
        max: usize,
        in_flight: &dyn Fn(BlockRef) -> bool,
        out: &mut Vec<BlockRef>,
    ) {
        let mut taken = 0;
        for (&index, partial) in self.partial.iter_mut() {
            if only.is_some_and(|o| o != index) || !peer_pieces.get(index) {
                continue;
            }
            let piece = self
                .layout
                .piece(index)
                .expect("partial pieces are in range");
            for (b, state) in partial.blocks.iter_mut().enumerate() {
                if taken == max {
                    return;
                }
                // At most MAX_ENDGAME_REQUESTS peers per block: enough to beat one slow peer,
                // not so many that every block travels many times.
                if let Block::Requested(n) = state
                    && *n < MAX_ENDGAME_REQUESTS
                {
                    let block = self
                        .layout
                        .block(piece, b as u32)
                        .expect("block index in range");
                    if !in_flight(block) {
                        *n = n.saturating_add(1);
                        out.push(block);
                        taken += 1;
                    }
                }
            }
        }
    }

    /// The next piece to start for a peer with `peer_pieces`, by strategy.
    fn choose_new_piece(&mut self, peer_pieces: &Bitfield) -> Option<PieceIndex> {
        let all = || {
            peer_pieces
                .ones_without(&self.settled, &self.hashing)
                .filter(|i| !self.partial.contains_key(i))
        };
        // The readers' windows first, in order (a reader reads in order).
        if !self.readahead.is_clear()
            && let Some(i) = all().find(|&i| self.readahead.get(i))
        {
            return self.layout.piece(i);
        }
        // High-priority pieces next: only when the peer has none are normal ones looked at.
        let high_only = !self.high.is_clear() && all().any(|i| self.high.get(i));
        let candidates = all().filter(|&i| !high_only || self.high.get(i));
        let index = match self.strategy {
            Strategy::Sequential => candidates.min(),
            Strategy::RarestFirst => candidates
                .min_by_key(|&i| (self.availability[i as usize], self.tiebreak[i as usize])),
            Strategy::Random => {
                // Reservoir sampling: one pass, uniform, no allocation.
                let mut chosen = None;
                let mut seen = 0u64;
                for i in candidates {
                    seen += 1;
                    if self.rng.below(seen) == 0 {
                        chosen = Some(i);
                    }
                }
                chosen
            }
        }?;
        self.layout.piece(index)
    }

    /// Whether `block`, arriving from a peer it was requested from, may also be in flight from
    /// another peer: `false` only when the picker counts exactly one request for it (the one
    /// answered), so the caller need not look for duplicates to cancel. Ask before
    /// [`Picker::block_received`].
    pub fn requested_elsewhere(&self, block: BlockRef) -> bool {
        let piece = block.piece.get();
        let counted_once = self.partial.get(&piece).is_some_and(|p| {
            p.blocks[(block.offset / crate::metainfo::BLOCK_SIZE) as usize] == Block::Requested(1)
        });
        !counted_once || self.orphaned.get(piece)
    }

    /// A requested block arrived (already validated against the layout).
    pub fn block_received(&mut self, block: BlockRef) -> Received {
        // (A completed piece moves from partial to hashing: this stays the same.)
        let near_end = self.near_end();
        let Some(partial) = self.partial.get_mut(&block.piece.get()) else {
            return Received::Unwanted;
        };
        let slot = &mut partial.blocks[(block.offset / crate::metainfo::BLOCK_SIZE) as usize];
        if *slot == Block::Received {
            return Received::Unwanted;
        }
        *slot = Block::Received;
        partial.received += 1;
        // One block fewer to arrive may start endgame.
        if near_end {
            self.epoch += 1;
        }
        if partial.received as usize == partial.blocks.len() {
            self.partial.remove(&block.piece.get());
            self.hashing.set(block.piece.get());
            if self.settled.get(block.piece.get()) {
                self.hashing_skipped += 1;
            }
            Received::PieceComplete
        } else {
            Received::Stored
        }
    }

    /// A request is no longer in flight without data (timeout, reject, choke, peer gone): the block
    /// may be picked again.
    pub fn request_dropped(&mut self, block: BlockRef) {
        self.epoch += 1;
        if let Some(partial) = self.partial.get_mut(&block.piece.get()) {
            let slot = &mut partial.blocks[(block.offset / crate::metainfo::BLOCK_SIZE) as usize];
            *slot = match *slot {
                Block::Requested(n) if n > 1 => Block::Requested(n - 1),
                Block::Requested(_) => Block::Missing,
                other => other,
            };
        }
    }

    /// The hash of `piece` matched: we have it.
    pub fn piece_verified(&mut self, piece: PieceIndex) {
        self.unhash(piece);
        self.have.set(piece.get());
        self.settled.set(piece.get());
        self.orphaned.clear(piece.get());
    }

    /// `piece` leaves hashing.
    fn unhash(&mut self, piece: PieceIndex) {
        if self.hashing.clear(piece.get()) && self.settled.get(piece.get()) {
            self.hashing_skipped -= 1;
        }
    }

    /// The hash of `piece` did not match: forget its blocks and fetch it again.
    pub fn piece_failed(&mut self, piece: PieceIndex) {
        self.epoch += 1;
        self.unhash(piece);
        self.partial.remove(&piece.get());
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::Strategy;
    use super::*;
    use crate::metainfo::BLOCK_SIZE;
    use crate::rng::Rng;

    fn layout(pieces: u32, piece_len: u64) -> TorrentLayout {
        TorrentLayout::new(piece_len, &[u64::from(pieces) * piece_len - 100]).unwrap()
    }

    fn bits(len: u32, ones: &[u32]) -> Bitfield {
        let mut b = Bitfield::new(len);
        for &i in ones {
            b.set(i);
        }
        b
    }

    #[test]
    fn rarest_piece_is_started_first() {
        // Proves rarest-first: the piece fewest peers have is picked before common ones.
        let mut p = Picker::new(
            layout(4, 32768),
            Bitfield::new(4),
            Strategy::RarestFirst,
            Rng::new(1),
        );
        p.add_peer(&bits(4, &[0, 1, 2, 3]));
        p.add_peer(&bits(4, &[0, 1, 3]));
        p.add_peer(&bits(4, &[0, 3]));
        let mut out = Vec::new();
        p.pick(&Bitfield::full(4), 1, |_| false, &mut out);
        assert_eq!(out[0].piece.get(), 2);
        out.clear();
        p.pick(&Bitfield::full(4), 2, |_| false, &mut out);
        // The rest of piece 2 first (partial pieces finish first), then the next rarest, piece 1.
        assert_eq!((out[0].piece.get(), out[0].offset), (2, BLOCK_SIZE));
        assert_eq!(out[1].piece.get(), 1);
    }

    #[test]
    fn sequential_goes_in_order_and_skips_what_we_have() {
        // Proves the sequential strategy and that pieces we have are never picked.
        let mut p = Picker::new(
            layout(4, 16384),
            bits(4, &[0]),
            Strategy::Sequential,
            Rng::new(1),
        );
        let mut out = Vec::new();
        p.pick(&Bitfield::full(4), 3, |_| false, &mut out);
        assert_eq!(
            out.iter().map(|b| b.piece.get()).collect::<Vec<_>>(),
            [1, 2, 3]
        );
    }

    #[test]
    fn slow_peer_does_not_hold_a_piece_hostage() {
        // Proves a second peer takes the remaining blocks of a piece the first peer started.
        let mut p = Picker::new(
            layout(1, 65536),
            Bitfield::new(1),
            Strategy::RarestFirst,
            Rng::new(3),
        );
        let mut slow = Vec::new();
        p.pick(&Bitfield::full(1), 1, |_| false, &mut slow);
        let mut fast = Vec::new();
        p.pick(&Bitfield::full(1), 3, |_| false, &mut fast);
        assert_eq!(fast.len(), 3);
        assert!(
            !fast.contains(&slow[0]),
            "the fast peer gets the other blocks first"
        );
    }

    #[test]
    fn endgame_duplicates_in_flight_blocks_once_per_peer() {
        // Proves endgame hands a block in flight elsewhere to another peer, but never twice to one.
        let mut p = Picker::new(
            layout(1, 32768),
            Bitfield::new(1),
            Strategy::RarestFirst,
            Rng::new(3),
        );
        let mut a = Vec::new();
        p.pick(&Bitfield::full(1), 10, |_| false, &mut a);
        assert_eq!(a.len(), 2);
        assert!(p.in_endgame());
        let mut b = Vec::new();
        p.pick(&Bitfield::full(1), 10, |_| false, &mut b);
        assert_eq!(b, a, "the second peer gets duplicates");
        let mine: BTreeSet<BlockRef> = a.iter().copied().collect();
        let mut again = Vec::new();
        p.pick(
            &Bitfield::full(1),
            10,
            |blk| mine.contains(&blk),
            &mut again,
        );
        assert!(again.is_empty());
        assert_eq!(p.block_received(a[0]), Received::Stored);
        assert_eq!(p.block_received(a[0]), Received::Unwanted);
        assert_eq!(p.block_received(a[1]), Received::PieceComplete);
    }

    #[test]
    fn a_block_counts_as_requested_elsewhere_only_when_it_may_be() {
        // Proves the answer that lets a received block skip the walk for duplicates: false for a
        // block requested once, true for an endgame duplicate, for a block requested once after
        // a request dropped, and for a block of a piece dropped while started and picked again.
        let mut p = Picker::new(
            layout(1, 32768),
            Bitfield::new(1),
            Strategy::Sequential,
            Rng::new(3),
        );
        let mut a = Vec::new();
        p.pick(&Bitfield::full(1), 1, |_| false, &mut a);
        assert!(!p.requested_elsewhere(a[0]), "requested from one peer only");
        p.pick(&Bitfield::full(1), 1, |_| false, &mut a);
        let mut b = Vec::new();
        p.pick(&Bitfield::full(1), 2, |_| false, &mut b);
        assert!(p.in_endgame() && b == a, "both blocks are duplicated");
        assert!(p.requested_elsewhere(a[0]), "an endgame duplicate");
        p.request_dropped(a[1]);
        assert!(
            !p.requested_elsewhere(a[1]),
            "one of its two requests is left"
        );

        let mut p = Picker::new(
            layout(2, 16384),
            Bitfield::new(2),
            Strategy::Sequential,
            Rng::new(3),
        );
        // Piece 1, started, skipped, then wanted again: the first request may still be out.
        let mut c = Vec::new();
        p.pick(&bits(2, &[1]), 1, |_| false, &mut c);
        assert_eq!(c[0].piece.get(), 1);
        p.set_priorities(&[FilePriority::Normal, FilePriority::Skip]);
        p.set_priorities(&[FilePriority::Normal, FilePriority::Normal]);
        let mut d = Vec::new();
        p.pick(&bits(2, &[1]), 1, |_| false, &mut d);
        assert_eq!(d, c);
        assert!(
            p.requested_elsewhere(d[0]),
            "the dropped piece's old request"
        );
        assert_eq!(p.block_received(d[0]), Received::PieceComplete);
    }

    #[test]
    fn failed_piece_is_fetched_again_and_dropped_requests_return() {
        // Proves a hash failure and a dropped request both make blocks pickable again.
        let mut p = Picker::new(
            layout(2, 16384),
            Bitfield::new(2),
            Strategy::Sequential,
            Rng::new(3),
        );
        let mut out = Vec::new();
        p.pick(&bits(2, &[0]), 1, |_| false, &mut out);
        assert_eq!(p.block_received(out[0]), Received::PieceComplete);
        p.piece_failed(out[0].piece);
        let mut again = Vec::new();
        p.pick(&bits(2, &[0]), 1, |_| false, &mut again);
        assert_eq!(again, out);
        p.request_dropped(again[0]);
        let mut third = Vec::new();
        p.pick(&bits(2, &[0]), 1, |_| false, &mut third);
        assert_eq!(third, out);
        assert_eq!(p.block_received(third[0]), Received::PieceComplete);
        p.piece_verified(third[0].piece);
        let mut none = Vec::new();
        p.pick(&bits(2, &[0]), 5, |_| false, &mut none);
        assert!(
            none.is_empty(),
            "we have piece 0 and the peer has nothing else"
        );
    }

    #[test]
    fn high_pieces_first_skipped_never() {
        // Proves the priority classes: high pieces start before normal ones (rarest-first within
        // the class), skipped ones never, and skipping a started piece drops it.
        use FilePriority::{High, Normal, Skip};
        let mut p = Picker::new(
            layout(4, 16384),
            Bitfield::new(4),
            Strategy::RarestFirst,
            Rng::new(5),
        );
        p.add_peer(&bits(4, &[0]));
        p.set_priorities(&[Normal, Skip, High, High]);
        let mut out = Vec::new();
        p.pick(&Bitfield::full(4), 2, |_| false, &mut out);
        let mut started: Vec<u32> = out.iter().map(|b| b.piece.get()).collect();
        started.sort_unstable();
        assert_eq!(started, [2, 3]);
        out.clear();
        p.pick(&Bitfield::full(4), 5, |_| false, &mut out);
        // Piece 0, then (endgame) duplicates of 2 and 3; never piece 1.
        assert_eq!(out[0].piece.get(), 0);
        assert!(out.iter().all(|b| b.piece.get() != 1), "{out:?}");
        p.set_priorities(&[Skip, Skip, High, High]);
        assert_eq!(p.block_received(out[0]), Received::Unwanted);
        for piece in [2, 3] {
            let b = p.layout.block(p.layout.piece(piece).unwrap(), 0).unwrap();
            assert_eq!(p.block_received(b), Received::PieceComplete);
            assert!(!p.wanted_complete());
            p.piece_verified(b.piece);
        }
        assert!(p.wanted_complete());
        assert!(!p.have().is_complete());
    }

    fn urgent(piece: u32, late: bool) -> Urgent {
        Urgent { piece, late }
    }

    #[test]
    fn urgent_pieces_come_first_and_only_for_peers_allowed_them() {
        // Proves the urgent step: urgent pieces are served before started and new ones, most
        // urgent first, whatever the strategy; a peer not allowed them first gets the others.
        let mut p = Picker::new(
            layout(8, 32768),
            Bitfield::new(8),
            Strategy::Sequential,
            Rng::new(1),
        );
        let mut out = Vec::new();
        p.pick(&Bitfield::full(8), 1, |_| false, &mut out);
        assert_eq!(out[0].piece.get(), 0, "piece 0 started");
        p.set_urgent(&[urgent(5, false), urgent(3, false)]);
        out.clear();
        p.pick(&Bitfield::full(8), 3, |_| false, &mut out);
        let pieces: Vec<u32> = out.iter().map(|b| b.piece.get()).collect();
        assert_eq!(pieces, [5, 5, 3]);
        // A peer not allowed urgent blocks first: started pieces in order (piece 3 among them:
        // started pieces are finished by anyone, so one only slow peers have is not starved).
        out.clear();
        p.pick_for(&Bitfield::full(8), 2, false, 2, |_| false, &mut out);
        let pieces: Vec<u32> = out.iter().map(|b| b.piece.get()).collect();
        assert_eq!(pieces, [0, 3]);
        // The urgent list only orders: a peer without the urgent piece gets other work.
        p.set_urgent(&[urgent(7, false)]);
        out.clear();
        p.pick(&bits(8, &[1]), 2, |_| false, &mut out);
        let pieces: Vec<u32> = out.iter().map(|b| b.piece.get()).collect();
        assert_eq!(pieces, [1, 1]);
    }

    #[test]
    fn a_late_piece_is_asked_of_a_second_peer() {
        // Proves only a late urgent piece has its blocks in flight duplicated (at most twice in
        // all, never twice to one peer), long before endgame.
        let mut p = Picker::new(
            layout(8, 32768),
            Bitfield::new(8),
            Strategy::RarestFirst,
            Rng::new(1),
        );
        p.set_urgent(&[urgent(4, false)]);
        let mut first = Vec::new();
        p.pick(&Bitfield::full(8), 2, |_| false, &mut first);
        assert!(first.iter().all(|b| b.piece.get() == 4) && first.len() == 2);
        assert!(!p.in_endgame());
        let mut second = Vec::new();
        p.pick(&Bitfield::full(8), 2, |_| false, &mut second);
        assert!(
            second.iter().all(|b| b.piece.get() != 4),
            "not late: no duplicates"
        );
        p.set_urgent(&[urgent(4, true)]);
        let mut third = Vec::new();
        p.pick(&Bitfield::full(8), 2, |_| false, &mut third);
        assert_eq!(third, first, "late: a second peer takes them");
        let mine: BTreeSet<BlockRef> = first.iter().copied().collect();
        let mut again = Vec::new();
        p.pick(&Bitfield::full(8), 4, |b| mine.contains(&b), &mut again);
        assert!(
            again.iter().all(|b| b.piece.get() != 4),
            "never twice to one peer, at most two peers: {again:?}"
        );
        assert!(p.requested_elsewhere(first[0]));
        assert_eq!(p.block_received(first[0]), Received::Stored);
        assert_eq!(p.block_received(first[0]), Received::Unwanted);
    }

    #[test]
    fn readahead_pieces_start_first_in_order() {
        // Proves the readers' windows come before high and normal pieces, lowest first even
        // under rarest-first, and that clearing them restores the strategy.
        let mut p = Picker::new(
            layout(8, 16384),
            Bitfield::new(8),
            Strategy::RarestFirst,
            Rng::new(9),
        );
        p.add_peer(&bits(8, &[0, 1, 2, 3, 4, 5]));
        p.set_priorities(&[FilePriority::High; 8]);
        p.set_readahead(Some(&bits(8, &[6, 5, 4])));
        let mut out = Vec::new();
        p.pick(&Bitfield::full(8), 3, |_| false, &mut out);
        let pieces: Vec<u32> = out.iter().map(|b| b.piece.get()).collect();
        assert_eq!(pieces, [4, 5, 6]);
        p.set_readahead(None);
        out.clear();
        p.pick(&Bitfield::full(8), 1, |_| false, &mut out);
        assert_eq!(out[0].piece.get(), 7, "the rarest of the rest");
    }

    proptest! {
        #[test]
        fn never_requests_what_we_have_or_the_peer_lacks(
            pieces in 1u32..40,
            ours in proptest::collection::vec(any::<bool>(), 40),
            theirs in proptest::collection::vec(any::<bool>(), 40),
            strategy in prop_oneof![Just(Strategy::RarestFirst), Just(Strategy::Sequential), Just(Strategy::Random)],
            seed in any::<u64>(),
            rounds in proptest::collection::vec((1usize..20, any::<bool>()), 1..20),
            marks in proptest::collection::vec(any::<u8>(), 40),
        ) {
            // Proves the picker's core safety rule over random torrents, bitfields and rounds, with
            // blocks arriving, failing and completing in between.
            let have: Vec<u32> = (0..pieces).filter(|&i| ours[i as usize]).collect();
            let peer: Vec<u32> = (0..pieces).filter(|&i| theirs[i as usize]).collect();
            let l = TorrentLayout::new(40_000, &[u64::from(pieces) * 40_000 - 7]).unwrap();
            let have_bits = bits(pieces, &have);
            let peer_bits = bits(pieces, &peer);
            let mut p = Picker::new(l.clone(), have_bits.clone(), strategy, Rng::new(seed));
            p.add_peer(&peer_bits);
            // Readers too: some pieces urgent (some late), some in a window.
            let urgent: Vec<Urgent> = (0..pieces)
                .filter(|&i| marks[i as usize] % 4 == 0)
                .map(|i| Urgent { piece: i, late: marks[i as usize] % 8 == 0 })
                .collect();
            p.set_urgent(&urgent);
            let window: Vec<u32> = (0..pieces).filter(|&i| marks[i as usize] % 3 == 0).collect();
            p.set_readahead(Some(&bits(pieces, &window)));
            let mut in_flight: BTreeSet<BlockRef> = BTreeSet::new();
            for (max, deliver) in rounds {
                let mut out = Vec::new();
                p.pick(&peer_bits, max, |b| in_flight.contains(&b), &mut out);
                prop_assert!(out.len() <= max);
                for b in &out {
                    prop_assert!(peer_bits.get(b.piece.get()), "peer lacks {:?}", b);
                    prop_assert!(!p.have().get(b.piece.get()), "we have {:?}", b);
                    prop_assert!(in_flight.insert(*b), "{:?} requested twice from one peer", b);
                    prop_assert_eq!(l.block_at(b.piece.get(), b.offset, b.len), Some(*b));
                }
                if deliver {
                    let arrived: Vec<BlockRef> = in_flight.iter().copied().collect();
                    for b in arrived {
                        in_flight.remove(&b);
                        if p.block_received(b) == Received::PieceComplete {
                            p.piece_verified(b.piece);
                        }
                    }
                }
            }
        }
    }
}
