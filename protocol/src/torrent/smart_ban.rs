//! [`SmartBan`]: telling which peer sent the wrong block of a piece that failed its hash check.
//!
//! A failed piece built from several peers' blocks says only that one of them lied; blaming all
//! of them bans honest peers whose blocks shared a piece with a liar's. So, as libtorrent's smart
//! ban does: when such a piece fails, its blocks are read back ([`DiskOp::HashBlocks`]) before it
//! is fetched again, and the SHA-1 of each is remembered with the peer that sent it. Once the
//! piece passes, the remembered blocks are read back again: a peer whose block differs from the
//! verified one sent bad data and is banned; a peer whose block matched is cleared (its entries
//! are dropped). A peer that sends two different versions of one block is banned at once: at most
//! one of them is right.
//!
//! The digests are SHA-1: a liar cannot make its block look like the good one, and an honest
//! peer's block always equals the verified data, so only liars are banned.
//!
//! Bounds: at most [`MAX_RECORDED_BLOCKS`] remembered (block, peer, digest) entries over all
//! pieces, the oldest piece's dropped first to make room (a piece with more blocks than that is
//! not remembered); at most [`MAX_SENDERS_PER_BLOCK`] peers per block; one read back pending per
//! piece in progress.

use core::net::IpAddr;
use std::collections::BTreeMap;

use crate::io::{DiskError, DiskOp};
use crate::metainfo::{BlockRef, PieceIndex};

/// Most (block, peer, digest) entries remembered over all failed pieces (about 200 KiB).
pub const MAX_RECORDED_BLOCKS: usize = 4096;

/// Most peers remembered for one block (one per failed attempt that got it from another peer).
pub const MAX_SENDERS_PER_BLOCK: usize = 4;

/// A read back in flight, and why.
#[derive(Debug)]
enum Reading {
    /// The piece failed; these peers sent its blocks. The piece waits for the answer before it
    /// is fetched again (a new write would overwrite what we want to read).
    Failed(Vec<(BlockRef, IpAddr)>),
    /// The piece passed; these remembered blocks are read to judge their senders.
    Passed(Vec<BlockRef>),
}

/// What the failed attempts of one piece held.
#[derive(Debug)]
struct PieceRecord {
    /// Order of first failure: the oldest record goes first when room is needed.
    seq: u64,
    /// Per block, each sender with the digest of what it sent.
    blocks: BTreeMap<BlockRef, Vec<(IpAddr, [u8; 20])>>,
}

/// What a [`crate::io::DiskDone::BlockHashes`] answer means for the torrent.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Judgement {
    /// The blocks of a failed piece were read (or could not be): fetch the piece again now, and
    /// ban these peers (each sent two versions of one block).
    Failed {
        /// Peers to ban.
        ban: Vec<IpAddr>,
    },
    /// The blocks of a piece that passed were read: ban these peers (their blocks differed from
    /// the verified data).
    Passed {
        /// Peers to ban.
        ban: Vec<IpAddr>,
    },
    /// No read back was asked for this piece: ignore it.
    Unexpected,
}

/// The smart-ban records of one torrent. See the module docs.
#[derive(Debug, Default)]
pub(crate) struct SmartBan {
    reading: BTreeMap<u32, Reading>,
    records: BTreeMap<u32, PieceRecord>,
    /// Entries over all records.
    entries: usize,
    next_seq: u64,
}

impl SmartBan {
    /// No records.
    pub(crate) fn new() -> Self {
        SmartBan::default()
    }

    /// Entries remembered over all pieces (at most [`MAX_RECORDED_BLOCKS`]).
    #[cfg(test)]
    pub(crate) fn recorded_blocks(&self) -> usize {
        self.entries
    }

    /// Whether `piece` waits for the read back of its failed blocks.
    #[cfg(test)]
    pub(crate) fn is_reading_failed(&self, piece: PieceIndex) -> bool {
        matches!(self.reading.get(&piece.get()), Some(Reading::Failed(_)))
    }

    /// `piece` failed its hash check; `senders` names the peer that sent each of its blocks.
    /// Returns the read back to ask for: the piece must not be fetched again before its answer.
    /// `None` when there is nothing to remember (then fetch it again at once).
    pub(crate) fn piece_failed(
        &mut self,
        piece: PieceIndex,
        senders: Vec<(BlockRef, IpAddr)>,
    ) -> Option<DiskOp> {
        if senders.is_empty() || senders.len() > MAX_RECORDED_BLOCKS {
            return None;
        }
        let blocks = senders.iter().map(|(b, _)| *b).collect();
        self.reading.insert(piece.get(), Reading::Failed(senders));
        Some(DiskOp::HashBlocks { piece, blocks })
    }

    /// `piece` passed its hash check. Returns the read back that judges the peers remembered
    /// for it, if any.
    pub(crate) fn piece_passed(&mut self, piece: PieceIndex) -> Option<DiskOp> {
        let record = self.records.get(&piece.get())?;
        let blocks: Vec<BlockRef> = record.blocks.keys().copied().collect();
        self.reading
            .insert(piece.get(), Reading::Passed(blocks.clone()));
        Some(DiskOp::HashBlocks { piece, blocks })
    }

    /// The answer to a [`DiskOp::HashBlocks`] this asked for. An error, or a count of digests
    /// other than the blocks asked, judges nobody.
    pub(crate) fn handle_hashes(
        &mut self,
        piece: PieceIndex,
        result: Result<Vec<[u8; 20]>, DiskError>,
    ) -> Judgement {
        let Some(reading) = self.reading.remove(&piece.get()) else {
            return Judgement::Unexpected;
        };
        match reading {
            Reading::Failed(senders) => {
                let ban = match result {
                    Ok(digests) if digests.len() == senders.len() => {
                        self.record(piece.get(), senders, digests)
                    }
                    _ => Vec::new(),
                };
                Judgement::Failed { ban }
            }
            Reading::Passed(blocks) => {
                let record = self.forget(piece.get());
                let mut ban = Vec::new();
                if let (Ok(digests), Some(record)) = (result, record)
                    && digests.len() == blocks.len()
                {
                    for (block, good) in blocks.iter().zip(digests) {
                        let senders = record.blocks.get(block).map_or(&[][..], Vec::as_slice);
                        ban.extend(
                            senders
                                .iter()
                                .filter(|(_, digest)| *digest != good)
                                .map(|(ip, _)| *ip),
                        );
                    }
                }
                ban.sort_unstable();
                ban.dedup();
                Judgement::Passed { ban }
            }
        }
    }

    /// Remembers what each sender sent; returns the senders caught sending two versions of a
    /// block.
    fn record(
        &mut self,
        piece: u32,
        senders: Vec<(BlockRef, IpAddr)>,
        digests: Vec<[u8; 20]>,
    ) -> Vec<IpAddr> {
        while self.entries + senders.len() > MAX_RECORDED_BLOCKS {
            let oldest = self
                .records
                .iter()
                .min_by_key(|(_, r)| r.seq)
                .map(|(p, _)| *p);
            match oldest {
                Some(p) => {
                    self.forget(p);
                }
                None => break,
            }
        }
        let seq = self.next_seq;
        let record = self.records.entry(piece).or_insert_with(|| PieceRecord {
            seq,
            blocks: BTreeMap::new(),
        });
        if record.seq == seq {
            self.next_seq += 1;
        }
        let mut ban = Vec::new();
        for ((block, ip), digest) in senders.into_iter().zip(digests) {
            let list = record.blocks.entry(block).or_default();
            match list.iter().find(|(sender, _)| *sender == ip) {
                Some((_, before)) => {
                    if *before != digest {
                        ban.push(ip);
                    }
                }
                None => {
                    if list.len() >= MAX_SENDERS_PER_BLOCK {
                        list.remove(0);
                        self.entries -= 1;
                    }
                    list.push((ip, digest));
                    self.entries += 1;
                }
            }
        }
        ban.sort_unstable();
        ban.dedup();
        ban
    }

    fn forget(&mut self, piece: u32) -> Option<PieceRecord> {
        let record = self.records.remove(&piece)?;
        self.entries -= record.blocks.values().map(Vec::len).sum::<usize>();
        Some(record)
    }
}

#[cfg(test)]
mod tests {
    use core::net::Ipv4Addr;

    use super::*;
    use crate::metainfo::TorrentLayout;

    fn ip(n: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, n))
    }

    /// A torrent of 16 pieces of 4 blocks.
    fn layout() -> TorrentLayout {
        TorrentLayout::new(4 * 16384, &[16 * 4 * 16384]).unwrap()
    }

    fn blocks(l: &TorrentLayout, piece: u32) -> Vec<BlockRef> {
        l.blocks(l.piece(piece).unwrap()).collect()
    }

    /// The digest of block `i` as sent by a liar (`false`) or as it should be.
    fn digest(i: usize, right: bool) -> [u8; 20] {
        [i as u8 + if right { 0 } else { 100 }; 20]
    }

    #[test]
    fn the_liar_is_banned_and_the_honest_peer_cleared_once_the_piece_passes() {
        // Proves the core of smart ban: a piece from an honest peer (blocks 0, 2) and a liar
        // (blocks 1, 3) fails; nobody is judged until it passes; then only the liar is banned and
        // every record of the piece is dropped.
        let l = layout();
        let p = l.piece(3).unwrap();
        let bs = blocks(&l, 3);
        let mut sb = SmartBan::new();
        let senders: Vec<_> = bs
            .iter()
            .enumerate()
            .map(|(i, b)| (*b, ip(if i % 2 == 0 { 1 } else { 2 })))
            .collect();
        let op = sb.piece_failed(p, senders).unwrap();
        assert_eq!(
            op,
            DiskOp::HashBlocks {
                piece: p,
                blocks: bs.clone()
            }
        );
        assert!(sb.is_reading_failed(p));
        let failed: Vec<_> = (0..4).map(|i| digest(i, i % 2 == 0)).collect();
        assert_eq!(
            sb.handle_hashes(p, Ok(failed)),
            Judgement::Failed { ban: vec![] }
        );
        assert!(!sb.is_reading_failed(p));
        assert_eq!(sb.recorded_blocks(), 4);

        let op = sb.piece_passed(p).unwrap();
        assert_eq!(
            op,
            DiskOp::HashBlocks {
                piece: p,
                blocks: bs
            }
        );
        let good: Vec<_> = (0..4).map(|i| digest(i, true)).collect();
        assert_eq!(
            sb.handle_hashes(p, Ok(good)),
            Judgement::Passed { ban: vec![ip(2)] }
        );
        assert_eq!(sb.recorded_blocks(), 0);
        assert_eq!(sb.piece_passed(p), None, "nothing left to judge");
    }

    #[test]
    fn a_piece_never_failed_needs_no_read_back() {
        // Proves smart ban costs nothing for pieces that pass the first time.
        let l = layout();
        let mut sb = SmartBan::new();
        assert_eq!(sb.piece_passed(l.piece(0).unwrap()), None);
    }

    #[test]
    fn two_versions_of_one_block_from_one_peer_ban_it_at_once() {
        // Proves a peer that sends different bytes for the same block in two failed attempts is
        // banned without waiting for the piece to pass, while the same bytes twice are no sign.
        let l = layout();
        let p = l.piece(1).unwrap();
        let bs = blocks(&l, 1);
        let mut sb = SmartBan::new();
        let all_from = |n| bs.iter().map(|b| (*b, ip(n))).collect::<Vec<_>>();
        let mut both: Vec<_> = all_from(1);
        both[3].1 = ip(2);
        sb.piece_failed(p, both.clone()).unwrap();
        let first: Vec<_> = (0..4).map(|i| digest(i, i != 3)).collect();
        assert_eq!(
            sb.handle_hashes(p, Ok(first.clone())),
            Judgement::Failed { ban: vec![] }
        );
        sb.piece_failed(p, both).unwrap();
        let mut second = first;
        second[3] = [7; 20];
        assert_eq!(
            sb.handle_hashes(p, Ok(second)),
            Judgement::Failed { ban: vec![ip(2)] }
        );
        assert_eq!(
            sb.recorded_blocks(),
            4,
            "the same sender is remembered once"
        );
    }

    #[test]
    fn unasked_wrong_sized_or_failed_answers_judge_nobody() {
        // Proves a driver's odd answers cannot get anyone banned: an answer nobody asked for, a
        // digest count that does not match the blocks, a read error.
        let l = layout();
        let p = l.piece(2).unwrap();
        let bs = blocks(&l, 2);
        let mut sb = SmartBan::new();
        assert_eq!(sb.handle_hashes(p, Ok(vec![])), Judgement::Unexpected);
        let senders: Vec<_> = bs.iter().map(|b| (*b, ip(1))).collect();
        sb.piece_failed(p, senders.clone()).unwrap();
        assert_eq!(
            sb.handle_hashes(p, Ok(vec![[0; 20]])),
            Judgement::Failed { ban: vec![] }
        );
        sb.piece_failed(p, senders).unwrap();
        assert_eq!(
            sb.handle_hashes(p, Err(DiskError("gone".into()))),
            Judgement::Failed { ban: vec![] }
        );
        assert_eq!(sb.recorded_blocks(), 0);
        assert_eq!(sb.piece_passed(p), None);
    }

    #[test]
    fn records_stay_within_their_bounds() {
        // Proves the memory bounds: many failed pieces keep at most MAX_RECORDED_BLOCKS entries
        // (the oldest pieces dropped first), and many senders of one block at most
        // MAX_SENDERS_PER_BLOCK.
        let l = TorrentLayout::new(4 * 16384, &[4000 * 4 * 16384]).unwrap();
        let mut sb = SmartBan::new();
        for piece in 0..(MAX_RECORDED_BLOCKS as u32 / 4 + 10) {
            let p = l.piece(piece).unwrap();
            let senders: Vec<_> = l.blocks(p).map(|b| (b, ip(1))).collect();
            sb.piece_failed(p, senders).unwrap();
            sb.handle_hashes(p, Ok(vec![[1; 20]; 4]));
            assert!(sb.recorded_blocks() <= MAX_RECORDED_BLOCKS);
        }
        assert_eq!(sb.recorded_blocks(), MAX_RECORDED_BLOCKS);
        assert_eq!(sb.piece_passed(l.piece(0).unwrap()), None, "oldest dropped");
        let newest = l.piece(MAX_RECORDED_BLOCKS as u32 / 4 + 9).unwrap();
        assert!(sb.piece_passed(newest).is_some(), "newest kept");

        let mut sb = SmartBan::new();
        let p = l.piece(0).unwrap();
        for sender in 1..=10 {
            let senders: Vec<_> = l.blocks(p).map(|b| (b, ip(sender))).collect();
            sb.piece_failed(p, senders).unwrap();
            sb.handle_hashes(p, Ok(vec![[sender; 20]; 4]));
        }
        assert_eq!(sb.recorded_blocks(), 4 * MAX_SENDERS_PER_BLOCK);
    }
}
