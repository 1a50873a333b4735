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
//! (urgent), and, once its deadline has passed by [`LATE_GRACE`] (late), lets a second peer take
//! blocks already in flight (see [`super::Picker`]). A reader set again at the same position
//! keeps its deadlines, so the piece it waits for grows late. Pieces of a reader's window are high priority (readahead) even
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

/// An urgent piece is late this long after its deadline: then blocks in flight are asked of a
/// second peer. Not at once: the peers that have the next pieces of a stream are often few, and
/// asking each block twice would halve what they can give.
pub const LATE_GRACE: Duration = Duration::from_secs(1);

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
    /// Bytes per second it consumes; `None`: as fast as the bytes come (a torrent paces it at
    /// its download rate when it is set).
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
        let since = match self.readers.get(&id) {
            // A reader still where it was (waiting for its piece): its deadlines stand, so the
            // piece it waits for grows late.
            Some(&(since, old)) if old == position => since,
            Some(_) => now,
            None if self.readers.len() >= MAX_READERS => return Err(TooManyReaders),
            None => now,
        };
        self.readers.insert(id, (since, position));
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
            late: d.saturating_add(LATE_GRACE) <= now,
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
                [urgent_at, d.saturating_add(LATE_GRACE)]
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

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    /// 100 pieces of 1 MiB.
    fn layout() -> TorrentLayout {
        TorrentLayout::new(MIB, &[100 * MIB]).unwrap()
    }

    fn at(secs_f: f64) -> Instant {
        Instant::from_micros((secs_f * 1e6) as u64)
    }

    fn urgent_now(d: &Deadlines, now: Instant) -> Vec<(u32, bool)> {
        let mut out = Vec::new();
        d.urgent(now, |_| true, &mut out);
        out.into_iter().map(|u| (u.piece, u.late)).collect()
    }

    #[test]
    fn a_paced_reader_needs_each_piece_when_it_reaches_it() {
        // Proves the deadlines follow the reader's rate from where it is: the piece under its
        // position is due now, the next one when it has read up to it, and the window reaches
        // 20 s of reading.
        let l = layout();
        let mut d = Deadlines::default();
        let pos = ReadPosition {
            offset: 10 * MIB + MIB / 2,
            end: 100 * MIB,
            rate: Some(MIB),
        };
        d.set_reader(at(1.0), &l, ReaderId(7), pos).unwrap();
        assert_eq!(d.due()[&10], at(1.0));
        assert_eq!(d.due()[&11], at(1.5));
        assert_eq!(d.due()[&12], at(2.5));
        let window: Vec<u32> = d.window().unwrap().ones().collect();
        assert_eq!(window, (10..=30).collect::<Vec<u32>>());
        // Urgent: due within 3 s; late: due a second ago.
        assert_eq!(
            urgent_now(&d, at(1.0)),
            [(10, false), (11, false), (12, false), (13, false)]
        );
        assert_eq!(urgent_now(&d, at(2.0))[..2], [(10, true), (11, false)]);
        assert_eq!(urgent_now(&d, at(2.5))[..2], [(10, true), (11, true)]);
        // Piece 14 turns urgent at 1.5 s (due at 4.5 s); piece 10 late at 2 s.
        assert_eq!(d.next_change(at(1.0), |_| true), Some(at(1.5)));
        assert_eq!(d.next_change(at(1.0), |p| p == 10), Some(at(2.0)));
        // Set again where it was (still waiting): the deadlines stand.
        d.set_reader(at(2.0), &l, ReaderId(7), pos).unwrap();
        assert_eq!(d.due()[&10], at(1.0));
        // The reader moves on: the pieces behind it are released.
        let moved = ReadPosition {
            offset: 50 * MIB,
            ..pos
        };
        d.set_reader(at(5.0), &l, ReaderId(7), moved).unwrap();
        assert!(!d.due().contains_key(&10));
        assert!(!d.window().unwrap().get(10));
        assert_eq!(d.due()[&50], at(5.0));
    }

    #[test]
    fn readers_hold_their_own_windows_and_release_them() {
        // Proves two readers each hold a window, a piece both need keeps the earlier deadline,
        // an unpaced reader needs its first two pieces now and the rest of its window as
        // readahead only, and removing readers releases everything.
        let l = layout();
        let mut d = Deadlines::default();
        let a = ReadPosition {
            offset: 0,
            end: 100 * MIB,
            rate: Some(MIB / 4),
        };
        let b = ReadPosition {
            offset: 2 * MIB,
            end: 3 * MIB + 1,
            rate: None,
        };
        d.set_reader(at(0.0), &l, ReaderId(1), a).unwrap();
        d.set_reader(at(1.0), &l, ReaderId(2), b).unwrap();
        // a reads 5 MiB in 20 s at 256 KiB/s: 5 pieces.
        assert_eq!(
            d.window().unwrap().ones().collect::<Vec<_>>(),
            [0, 1, 2, 3, 4]
        );
        // Piece 2: a needs it at 8 s, b now (1 s).
        assert_eq!(d.due()[&2], at(1.0));
        assert_eq!(d.due()[&3], at(1.0));
        assert_eq!(d.due()[&4], at(16.0));
        assert!(d.remove_reader(&l, ReaderId(2)));
        assert_eq!(d.due()[&2], at(8.0));
        assert!(d.remove_reader(&l, ReaderId(1)));
        assert!(d.due().is_empty() && d.window().is_none() && d.is_empty());
        assert!(!d.remove_reader(&l, ReaderId(1)));
    }

    #[test]
    fn explicit_deadlines_and_the_reader_bound() {
        // Proves a deadline set per piece counts like a reader's, out-of-range pieces are
        // ignored, pieces no longer needed are never urgent, and readers past the bound are
        // refused while known ones may still move.
        let l = layout();
        let mut d = Deadlines::default();
        d.set_piece(&l, 40, Some(at(10.0)));
        d.set_piece(&l, 100, Some(at(1.0)));
        assert_eq!(d.due().len(), 1);
        assert!(urgent_now(&d, at(6.0)).is_empty());
        assert_eq!(urgent_now(&d, at(7.0)), [(40, false)]);
        let mut out = Vec::new();
        d.urgent(at(11.0), |p| p != 40, &mut out);
        assert!(out.is_empty());
        assert_eq!(d.next_change(at(11.0), |_| true), None);
        d.set_piece(&l, 40, None);
        assert!(d.is_empty());
        let pos = ReadPosition {
            offset: 0,
            end: MIB,
            rate: None,
        };
        for i in 0..MAX_READERS as u64 {
            d.set_reader(at(0.0), &l, ReaderId(i), pos).unwrap();
        }
        assert_eq!(
            d.set_reader(at(0.0), &l, ReaderId(u64::MAX), pos),
            Err(TooManyReaders)
        );
        d.set_reader(at(1.0), &l, ReaderId(0), pos).unwrap();
        // A reader at its end, or past the torrent, needs nothing.
        let mut e = Deadlines::default();
        let done = ReadPosition {
            offset: 200 * MIB,
            end: 300 * MIB,
            rate: Some(1),
        };
        e.set_reader(at(0.0), &l, ReaderId(1), done).unwrap();
        assert!(e.due().is_empty() && e.window().unwrap().is_clear());
    }
}
