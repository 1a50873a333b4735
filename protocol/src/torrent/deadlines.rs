//! Time-critical pieces: where readers are, and which pieces they need by when.
//!
//! A reader ([`ReaderId`]: an HTTP response being streamed, a simulated player) reads a torrent's
//! bytes in order from a position ([`ReadPosition`]), at a rate or as fast as the bytes come.
//! From its position it needs, with a deadline each, the pieces of its window: the bytes it will
//! read within [`READAHEAD`] at its rate (at least [`MIN_WINDOW_PIECES`] pieces, at most
//! [`MAX_WINDOW_PIECES`]). A reader without a rate needs the first [`UNPACED_URGENT_PIECES`] of
//! its window now, and the rest of the window as readahead, without a deadline. A piece may also
//! be given a deadline directly ([`Deadlines::set_piece`]).
//!
//! The picker serves a piece whose deadline is within [`URGENT_HORIZON`] before any other
//! (urgent), and, once its deadline has passed (late), lets a second peer take blocks already in
//! flight (see [`super::Picker`]). Pieces of a reader's window are high priority (readahead) even
//! before they are urgent. Readers that go away release their pieces.
//!
//! Invariants: every deadline and window is recomputed from the readers and explicit deadlines
//! alone, so the order of commands does not matter; pieces we have or skip are never urgent.
//!
//! Bounds: at most [`MAX_READERS`] readers per torrent, each with a window of at most
//! [`MAX_WINDOW_PIECES`] pieces; explicit deadlines at most one per piece.

use std::collections::BTreeMap;
use std::time::Duration;

use super::Bitfield;
use crate::metainfo::TorrentLayout;
use crate::time::Instant;

/// Most readers one torrent keeps: more are refused ([`TooManyReaders`]).
pub const MAX_READERS: usize = 256;

/// How far ahead of a paced reader its window reaches, in its own reading time.
pub const READAHEAD: Duration = Duration::from_secs(20);

/// The fewest pieces a reader's window holds (fewer only at the end of what it reads).
pub const MIN_WINDOW_PIECES: u64 = 4;

/// The most pieces a reader's window holds.
pub const MAX_WINDOW_PIECES: u64 = 256;

/// Pieces of a reader without a rate that are needed at once: the rest of its window is
/// readahead.
pub const UNPACED_URGENT_PIECES: u64 = 2;

/// A piece whose deadline is this close (or past) is urgent: served before any other.
pub const URGENT_HORIZON: Duration = Duration::from_secs(3);

/// One reader of a torrent, as its owner numbers them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReaderId(pub u64);

/// Where a reader is and how fast it reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadPosition {
    /// The torrent-wide byte offset it reads next.
    pub offset: u64,
    /// Where what it reads ends (exclusive): its file's end, or its range's.
    pub end: u64,
    /// Bytes per second it consumes; `None`: as fast as the bytes come.
    pub rate: Option<u64>,
}

/// [`Deadlines::set_reader`] refused a reader: the torrent has [`MAX_READERS`] already.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the torrent has {MAX_READERS} readers already")]
pub struct TooManyReaders;

/// A piece's place among the time-critical ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Urgent {
    /// The piece.
    pub piece: u32,
    /// Its deadline has passed: blocks in flight may be asked of a second peer.
    pub late: bool,
}

/// The readers and explicit deadlines of one torrent: see the module docs.
#[derive(Clone, Debug, Default)]
pub struct Deadlines {
    /// Each reader's position and when it was set (its deadlines count from then).
    readers: BTreeMap<ReaderId, (Instant, ReadPosition)>,
    /// Deadlines given per piece.
    explicit: BTreeMap<u32, Instant>,
    /// Each piece's earliest deadline, from the two above.
    due: BTreeMap<u32, Instant>,
    /// Pieces of some reader's window.
    window: Option<Bitfield>,
}

impl Deadlines {
    /// Whether there is no reader and no explicit deadline.
    pub fn is_empty(&self) -> bool {
        self.readers.is_empty() && self.explicit.is_empty()
    }

    /// The readers, by id.
    pub fn readers(&self) -> impl Iterator<Item = (ReaderId, ReadPosition)> + '_ {
        self.readers.iter().map(|(id, (_, p))| (*id, *p))
    }

    /// Reader `id` is now at `position` (a new reader, or one that moved or changed pace).
    pub fn set_reader(
        &mut self,
        now: Instant,
        layout: &TorrentLayout,
        id: ReaderId,
        position: ReadPosition,
    ) -> Result<(), TooManyReaders> {
        if !self.readers.contains_key(&id) && self.readers.len() >= MAX_READERS {
            return Err(TooManyReaders);
        }
        self.readers.insert(id, (now, position));
        self.recompute(layout);
        Ok(())
    }

    /// Reader `id` went away: its pieces are released. Whether it was there.
    pub fn remove_reader(&mut self, layout: &TorrentLayout, id: ReaderId) -> bool {
        let was = self.readers.remove(&id).is_some();
        if was {
            self.recompute(layout);
        }
        was
    }

    /// Piece `piece` is needed by `deadline` (`None`: no longer). Out-of-range pieces are
    /// ignored.
    pub fn set_piece(&mut self, layout: &TorrentLayout, piece: u32, deadline: Option<Instant>) {
        if piece >= layout.piece_count() {
            return;
        }
        match deadline {
            Some(d) => self.explicit.insert(piece, d),
            None => self.explicit.remove(&piece),
        };
        self.recompute(layout);
    }

    /// Every piece with a deadline, and the deadline.
    pub fn due(&self) -> &BTreeMap<u32, Instant> {
        &self.due
    }

    /// The pieces of the readers' windows (`None` without readers).
    pub fn window(&self) -> Option<&Bitfield> {
        self.window.as_ref()
    }

    /// The urgent pieces at `now` that `needed` says we still need, earliest deadline first
    /// (ties by piece), into `out`.
    pub fn urgent(&self, now: Instant, needed: impl Fn(u32) -> bool, out: &mut Vec<Urgent>) {
        out.clear();
        let horizon = now + URGENT_HORIZON;
        let mut list: Vec<(Instant, u32)> = self
            .due
            .iter()
            .filter(|&(&p, &d)| d <= horizon && needed(p))
            .map(|(&p, &d)| (d, p))
            .collect();
        list.sort_unstable();
        out.extend(list.into_iter().map(|(d, piece)| Urgent {
            piece,
            late: d <= now,
        }));
    }

    /// The next time after `now` a piece that `needed` says we need turns urgent or late: then
    /// the picker has new work.
    pub fn next_change(&self, now: Instant, needed: impl Fn(u32) -> bool) -> Option<Instant> {
        self.due
            .iter()
            .filter(|&(&p, _)| needed(p))
            .flat_map(|(_, &d)| {
                let urgent_at = Instant::from_micros(
                    d.as_micros()
                        .saturating_sub(URGENT_HORIZON.as_micros() as u64),
                );
                [urgent_at, d]
            })
            .filter(|&t| t > now)
            .min()
    }

    fn recompute(&mut self, layout: &TorrentLayout) {
        self.due = self.explicit.clone();
        if self.readers.is_empty() {
            self.window = None;
            return;
        }
        let mut window = Bitfield::new(layout.piece_count());
        let piece_len = u64::from(layout.piece_length());
        let total = layout.total_length();
        for (set_at, pos) in self.readers.values() {
            let end = pos.end.min(total);
            if pos.offset >= end || piece_len == 0 {
                continue;
            }
            let first = pos.offset / piece_len;
            let last_wanted = (end - 1) / piece_len;
            let by_rate = pos.rate.map_or(0, |r| {
                let bytes = r.saturating_mul(READAHEAD.as_secs());
                (pos.offset % piece_len + bytes).div_ceil(piece_len)
            });
            let span = by_rate.clamp(MIN_WINDOW_PIECES, MAX_WINDOW_PIECES);
            let last = last_wanted.min(first + span - 1);
            for p in first..=last {
                window.set(p as u32);
                let deadline = match pos.rate {
                    Some(rate) if rate > 0 => {
                        let ahead = (p * piece_len).saturating_sub(pos.offset);
                        set_at.saturating_add(Duration::from_micros(
                            ahead.saturating_mul(1_000_000) / rate,
                        ))
                    }
                    Some(_) => continue,
                    None if p - first < UNPACED_URGENT_PIECES => *set_at,
                    None => continue,
                };
                let e = self.due.entry(p as u32).or_insert(deadline);
                *e = (*e).min(deadline);
            }
        }
        self.window = Some(window);
    }
}
