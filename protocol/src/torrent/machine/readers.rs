//! Readers of a [`Torrent`] and deadlines per piece (see [`super::super::deadlines`]): the
//! commands, and how each request round hands the picker its urgent pieces.
//!
//! Each round ([`Torrent::request_more`](super::Torrent)) recomputes the urgent pieces from the
//! deadlines and `now`; while any piece is urgent, peers are looked at fastest first, and only a
//! peer at least a quarter as fast as the fastest takes urgent blocks first (a slower one still
//! finishes started pieces, so an urgent piece only slow peers have is not starved; a late block
//! is then asked of a second peer). Meanwhile the blocks that are not urgent fill only a short
//! pipeline ([`short_pipeline`]): a peer serves requests in order, so an urgent block asked
//! behind three seconds of others would arrive late. A peer that is to serve urgent blocks and
//! has more than that short pipeline of other blocks queued (a reader arrived while the
//! pipelines were full) has the newest of them cancelled, down to the short pipeline; they go
//! back to the picker (a cancelled block that comes anyway is dropped as unrequested). The
//! torrent wakes when a needed piece turns urgent or late.
//!
//! Invariant: the picker's readahead is always the readers' windows.

use super::Torrent;
use crate::metainfo::PieceIndex;
use crate::time::Instant;
use crate::torrent::deadlines::{ReadPosition, ReaderId, TooManyReaders};

/// Why a reader or a deadline was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReaderError {
    /// A magnet link without its metadata yet: there are no pieces to read.
    #[error("the torrent has no metadata yet")]
    NoMetadata,
    /// The torrent has [`crate::torrent::MAX_READERS`] readers already.
    #[error(transparent)]
    TooMany(#[from] TooManyReaders),
}

/// The pace a reader without one ([`ReadPosition::rate`] `None`) is given, at least: it reads
/// at the torrent's download rate when it is set, or this.
pub const UNPACED_MIN_RATE: u64 = 1 << 20;

/// A peer slower than the fastest by more than this factor takes urgent blocks only after
/// faster peers (see the module docs).
const URGENT_SLOWER_BY: u64 = 4;

/// While pieces are urgent, a peer's blocks that are not urgent fill at most this share of its
/// pipeline target (half a second of its rate at the default three seconds).
const SHORT_PIPELINE_SHARE: usize = 6;

/// The fewest blocks a pipeline kept short still holds.
const SHORT_PIPELINE_MIN: usize = 4;

/// How many blocks that are not urgent a peer with pipeline target `target` may have in flight
/// while pieces are urgent: an urgent block asked later queues behind these at the peer.
pub(super) fn short_pipeline(target: usize) -> usize {
    (target / SHORT_PIPELINE_SHARE).max(SHORT_PIPELINE_MIN)
}

impl Torrent {
    /// Reader `id` is now at `position`: its window is high priority, and the pieces it needs
    /// soon are urgent. A reader without a pace reads at the torrent's download rate (at least
    /// [`UNPACED_MIN_RATE`]). Refused past [`crate::torrent::MAX_READERS`] readers, and without
    /// metadata.
    pub fn set_reader(
        &mut self,
        now: Instant,
        id: ReaderId,
        position: ReadPosition,
    ) -> Result<(), ReaderError> {
        if self.fetch.is_some() {
            return Err(ReaderError::NoMetadata);
        }
        // As fast as the bytes come is as fast as the torrent downloads: its window then holds
        // the next seconds of download, enough to keep the request pipelines busy with it.
        let position = ReadPosition {
            rate: Some(
                position
                    .rate
                    .unwrap_or_else(|| self.rates(now).0.max(UNPACED_MIN_RATE)),
            ),
            ..position
        };
        self.deadlines.set_reader(now, &self.layout, id, position)?;
        self.deadlines_changed(now);
        Ok(())
    }

    /// Reader `id` went away: its pieces go back to the strategy's order.
    pub fn remove_reader(&mut self, now: Instant, id: ReaderId) {
        if self.deadlines.remove_reader(&self.layout, id) {
            self.deadlines_changed(now);
        }
    }

    /// Piece `piece` is needed by `deadline` (`None`: no longer). Without metadata it is
    /// refused.
    pub fn set_piece_deadline(
        &mut self,
        now: Instant,
        piece: PieceIndex,
        deadline: Option<Instant>,
    ) -> Result<(), ReaderError> {
        if self.fetch.is_some() {
            return Err(ReaderError::NoMetadata);
        }
        self.deadlines
            .set_piece(&self.layout, piece.get(), deadline);
        self.deadlines_changed(now);
        Ok(())
    }

    /// The readers, by id.
    pub fn readers(&self) -> impl Iterator<Item = (ReaderId, ReadPosition)> + '_ {
        self.deadlines.readers()
    }

    fn deadlines_changed(&mut self, now: Instant) {
        self.picker.set_readahead(self.deadlines.window());
        for p in self.peers.keys() {
            self.dirty.insert(*p);
        }
        self.drive(now);
    }

    /// Before a request round: hands the picker the pieces urgent at `now`, and notes when that
    /// changes next. Whether any is urgent.
    pub(super) fn update_urgent(&mut self, now: Instant) -> bool {
        if self.deadlines.is_empty() {
            self.deadline_wake = None;
            if self.picker.has_urgent() {
                self.picker.set_urgent(&[]);
            }
            return false;
        }
        let settled = self.picker.settled();
        let needed = |p: u32| !settled.get(p);
        let mut urgent = std::mem::take(&mut self.urgent_scratch);
        self.deadlines.urgent(now, needed, &mut urgent);
        self.deadline_wake = self.deadlines.next_change(now, needed);
        self.picker.set_urgent(&urgent);
        self.urgent_scratch = urgent;
        self.picker.has_urgent()
    }

    /// While pieces are urgent: `candidates` fastest first (stable, so ties keep their order),
    /// and the rate under which a peer takes urgent blocks only after the others.
    pub(super) fn fastest_first(&self, now: Instant, candidates: &mut [crate::io::ConnId]) -> u64 {
        let rate =
            |c: &crate::io::ConnId| self.peers.get(c).map_or(0, |p| p.conn.download_rate(now));
        candidates.sort_by_key(|c| std::cmp::Reverse(rate(c)));
        let fastest = self
            .peers
            .values()
            .map(|p| p.conn.download_rate(now))
            .max()
            .unwrap_or(0);
        fastest / URGENT_SLOWER_BY
    }
}
