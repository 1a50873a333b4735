//! A simulated player (a group's `reader`): reads one file in order at a fixed rate, but only
//! bytes of verified pieces, and says where it is so the engine can tell the client.
//!
//! The engine drives it with ticks, each an event of its queue ([`super::Ev::Reader`]), so its
//! reading is part of the run's deterministic event stream. At each tick the player advances by
//! `rate × elapsed` (never past the end of the verified piece it was in), then looks at the
//! piece of its next byte: verified, it reads on and asks for its next tick at that piece's end
//! or a second later, whichever is first; missing, it stalls, and asks for a tick a second later
//! (the engine also ticks it as soon as that piece is verified). A seek moves it at once.
//!
//! Invariants: `offset` only moves forward between seeks and stays within its file; a tick
//! whose generation is not the player's latest is stale and does nothing; a stall is counted
//! once, from the moment the piece is missing to the tick that finds it verified (or the end).
//! A player keeps reading while its peer is down: it reads files on disk, which a crashed
//! client leaves behind (the engine answers from the peer's resume bitfield then).
//!
//! Bounds: one pending tick per player (older ones are stale); at most a tick per piece and one
//! per second, so the events it adds grow with the file's pieces and the run's seconds.

use std::time::Duration;

use bt_protocol::time::Instant;
use bt_protocol::torrent::{ReadPosition, ReaderId};

use super::{Ev, HostId, State as HostState, World};
use crate::scenario::ReaderSpec;
use crate::streaming::{ReaderOutcome, StallCause};
use crate::trace::Kind;

/// The one reader each peer's client is told of.
const READER: ReaderId = ReaderId(0);

/// The longest a player goes without a tick (and so without telling the client where it is).
const TICK_AT_MOST: Duration = Duration::from_secs(1);

/// Where a player is in its reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Before its start.
    Waiting,
    /// Reading: the piece it is in is verified.
    Reading,
    /// The piece of its next byte is not verified (before the first byte: waiting for it).
    Stalled { piece: u32, since: Instant },
    /// It read the last byte of its file.
    Done,
}

/// What a tick leaves the player doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// Reading; the next tick is due then.
    Reading { next: Instant },
    /// Stalled on this piece; the next tick is due then (unless the piece comes first).
    Stalled { piece: u32, next: Instant },
    /// At the end of its file (now, or already before this tick).
    Done,
}

/// A state change a tick made, for the trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Change {
    /// It read its first byte, this long after its start.
    FirstByte(Duration),
    /// It stalled on this piece.
    Stall(u32),
    /// It reads again after this long stalled.
    Resume(Duration),
    /// It reached the end of its file.
    Finished,
}

/// One peer's player. See the module docs.
#[derive(Clone, Debug)]
pub(super) struct Player {
    /// Its file's first byte and end (exclusive), torrent-wide.
    file_start: u64,
    file_end: u64,
    rate: u64,
    piece_length: u64,
    /// Whether it tells the client where it reads.
    pub(super) deadlines: bool,
    /// The torrent-wide offset of the next byte it reads.
    pub(super) offset: u64,
    /// How far it may read before its next tick (the end of the verified piece it is in).
    limit: u64,
    /// When it last advanced.
    last: Instant,
    state: State,
    /// What its client looked like as the current stall began, once the engine said.
    cause: Option<StallCause>,
    /// The generation of its latest tick: ticks of other generations are stale.
    pub(super) generation: u64,
    /// What it did, for the report.
    pub(super) outcome: ReaderOutcome,
}

impl Player {
    /// A player of `spec` in a torrent of `piece_length`-byte pieces whose file `spec.file`
    /// spans `file` (start, length), not started yet.
    pub(super) fn new(spec: &ReaderSpec, file: (u64, u64), piece_length: u64) -> Player {
        Player {
            file_start: file.0,
            file_end: file.0 + file.1,
            rate: spec.rate,
            piece_length: piece_length.max(1),
            deadlines: spec.deadlines,
            offset: file.0,
            limit: file.0,
            last: Instant::ZERO,
            state: State::Waiting,
            cause: None,
            generation: 0,
            outcome: ReaderOutcome::default(),
        }
    }

    /// Its file's end (exclusive), torrent-wide: the end of what it reads.
    pub(super) fn end(&self) -> u64 {
        self.file_end
    }

    /// Bytes per second it reads.
    pub(super) fn rate(&self) -> u64 {
        self.rate
    }

    /// Whether it has read its first byte (or never will: it read to the end before).
    pub(super) fn has_read(&self) -> bool {
        self.outcome.first_byte_at.is_some() || self.state == State::Done
    }

    /// Whether it is done reading.
    pub(super) fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The piece it is stalled on, if it is.
    pub(super) fn stalled_on(&self) -> Option<u32> {
        match self.state {
            State::Stalled { piece, .. } => Some(piece),
            _ => None,
        }
    }

    /// The current stall (or the wait for the first byte) began with its client looking like
    /// `cause`.
    fn stall_began(&mut self, cause: StallCause) {
        if !matches!(self.state, State::Stalled { .. }) {
            return;
        }
        if self.outcome.first_byte_at.is_some() {
            self.cause = Some(cause);
            self.outcome.by_cause[cause.index()].stalls += 1;
        } else {
            self.outcome.first_wait = Some(cause);
        }
    }

    /// Reads what `rate` allows since its last advance, up to its limit.
    fn advance(&mut self, now: Instant) {
        if self.state == State::Reading {
            let micros = now.as_micros().saturating_sub(self.last.as_micros());
            let bytes = u128::from(self.rate) * u128::from(micros) / 1_000_000;
            let room = self.limit.saturating_sub(self.offset);
            self.offset += u64::try_from(bytes).unwrap_or(u64::MAX).min(room);
        }
        self.last = now;
    }

    /// A tick at `now`; `verified` says whether a piece is verified. The step it leaves the
    /// player in and the change it made, if any.
    pub(super) fn tick(
        &mut self,
        now: Instant,
        verified: impl Fn(u32) -> bool,
    ) -> (Step, Option<Change>) {
        if self.state == State::Done {
            return (Step::Done, None);
        }
        if self.state == State::Waiting {
            self.outcome.started_at.get_or_insert(now);
        }
        self.advance(now);
        self.generation += 1;
        if self.offset >= self.file_end {
            self.end_stall(now);
            self.state = State::Done;
            self.outcome.finished_at = Some(now);
            return (Step::Done, Some(Change::Finished));
        }
        let piece = (self.offset / self.piece_length) as u32;
        let next = now + TICK_AT_MOST;
        if !verified(piece) {
            let change = match self.state {
                State::Stalled { .. } => None,
                _ => {
                    self.state = State::Stalled { piece, since: now };
                    if self.outcome.first_byte_at.is_some() {
                        self.outcome.stalls += 1;
                    }
                    Some(Change::Stall(piece))
                }
            };
            return (Step::Stalled { piece, next }, change);
        }
        let mut change = self.end_stall(now).map(Change::Resume);
        if self.outcome.first_byte_at.is_none() {
            self.outcome.first_byte_at = Some(now);
            let started = self.outcome.started_at.unwrap_or(now);
            change = Some(Change::FirstByte(Duration::from_micros(
                now.as_micros().saturating_sub(started.as_micros()),
            )));
        }
        self.state = State::Reading;
        self.limit = ((u64::from(piece) + 1) * self.piece_length).min(self.file_end);
        let bytes = u128::from(self.limit - self.offset);
        let to_limit = (bytes * 1_000_000).div_ceil(u128::from(self.rate.max(1)));
        let to_limit = Duration::from_micros(u64::try_from(to_limit).unwrap_or(u64::MAX));
        (
            Step::Reading {
                next: now + to_limit.min(TICK_AT_MOST),
            },
            change,
        )
    }

    /// Ends a stall at `now`: its time counts (only after the first byte: before, the wait is
    /// the time to first byte). How long it lasted, if it was one.
    fn end_stall(&mut self, now: Instant) -> Option<Duration> {
        let State::Stalled { since, .. } = self.state else {
            return None;
        };
        self.state = State::Reading;
        let cause = self.cause.take();
        self.outcome.first_byte_at?;
        let micros = now.as_micros().saturating_sub(since.as_micros());
        self.outcome.stall_micros += micros;
        if let Some(cause) = cause {
            self.outcome.by_cause[cause.index()].micros += micros;
        }
        Some(Duration::from_micros(micros))
    }

    /// Jumps to `fraction` (0 to 1) of its file at `now`; ignored once done or before its
    /// start. The caller ticks it next. Whether it moved.
    pub(super) fn seek(&mut self, now: Instant, fraction: f64) -> bool {
        if matches!(self.state, State::Done | State::Waiting) {
            return false;
        }
        self.advance(now);
        self.end_stall(now);
        let len = self.file_end - self.file_start;
        let to = (len as f64 * fraction.clamp(0.0, 1.0)) as u64;
        self.offset = self.file_start + to.min(len);
        self.limit = self.offset;
        self.outcome.seeks += 1;
        true
    }

    /// The run ends at `now`: a stall still going counts up to it.
    pub(super) fn finish(&mut self, now: Instant) {
        if matches!(self.state, State::Stalled { .. }) && self.outcome.first_byte_at.is_some() {
            self.outcome.stalled_at_end = true;
        }
        self.end_stall(now);
    }
}

impl World<'_> {
    /// Peer `h` joined for the first time: its player, if its group has a `reader`, starts
    /// `start` later, and its seeks are queued from then.
    pub(super) fn start_player(&mut self, h: HostId) {
        let now = self.now();
        let host = &self.hosts[h as usize];
        let Some(spec) = &self.scenario.groups[host.group].reader else {
            return;
        };
        let layout = &self.content.layout;
        let file = layout
            .file_range(spec.file)
            .expect("the scenario checked the file index");
        let player = Player::new(spec, file, u64::from(layout.piece_length()));
        self.hosts[h as usize].player = Some(Box::new(player));
        self.readers_waiting += 1;
        let start = now + spec.start;
        self.queue.push(
            start,
            Ev::Reader {
                host: h,
                generation: 0,
            },
        );
        for (i, (at, _)) in spec.seeks.iter().enumerate() {
            self.queue.push(
                start + *at,
                Ev::ReaderSeek {
                    host: h,
                    seek: i as u32,
                },
            );
        }
    }

    /// What peer `h`'s client looks like as its player stalls on `piece` (see
    /// [`StallCause`]). A peer that is down has no peer to get it from.
    fn stall_cause(&self, h: HostId, piece: u32) -> StallCause {
        let host = &self.hosts[h as usize];
        let Some(t) = host.client.as_ref().and_then(|c| c.torrent(host.torrent)) else {
            return StallCause::Unavailable;
        };
        let mut held = false;
        for c in t.conns() {
            let Some(p) = t.peer(c) else {
                continue;
            };
            if p.outstanding().any(|b| b.piece.get() == piece) {
                return StallCause::InFlight;
            }
            held |= !p.peer_choking() && p.peer_pieces().get(piece);
        }
        if held {
            StallCause::Unrequested
        } else {
            StallCause::Unavailable
        }
    }

    /// A tick of peer `h`'s player (`generation` `None`: a tick the engine makes at once, after
    /// a seek): it reads on, stalls or resumes, the trace records it, its next tick is queued,
    /// and its client is told.
    pub(super) fn on_reader(&mut self, h: HostId, generation: Option<u64>) {
        let now = self.now();
        let host = &mut self.hosts[h as usize];
        let have = host
            .client
            .as_ref()
            .and_then(|c| c.torrent(host.torrent))
            .map(|t| t.have())
            .or(host.resume.as_ref());
        let Some(player) = host.player.as_mut() else {
            return;
        };
        if generation.is_some_and(|g| g != player.generation) {
            return;
        }
        let (was_started, had_read) = (player.outcome.started_at.is_some(), player.has_read());
        let (step, change) = player.tick(now, |p| have.is_some_and(|b| b.get(p)));
        let (offset, next_generation) = (player.offset, player.generation);
        let read_now = !had_read && player.has_read();
        let w = u64::from(h);
        if !was_started {
            self.trace.record(Kind::ReaderStart, &[w, offset]);
        }
        self.trace.record(Kind::ReaderAt, &[w, offset]);
        match change {
            Some(Change::FirstByte(waited)) => self
                .trace
                .record(Kind::ReaderFirstByte, &[w, waited.as_micros() as u64]),
            Some(Change::Stall(piece)) => {
                let cause = self.stall_cause(h, piece);
                if let Some(player) = self.hosts[h as usize].player.as_mut() {
                    player.stall_began(cause);
                }
                self.trace.record(Kind::ReaderStall, &[w, u64::from(piece)])
            }
            Some(Change::Resume(stalled)) => self
                .trace
                .record(Kind::ReaderResume, &[w, stalled.as_micros() as u64]),
            Some(Change::Finished) => self.trace.record(Kind::ReaderDone, &[w]),
            None => {}
        }
        if read_now {
            self.readers_waiting -= 1;
        }
        if let Step::Reading { next } | Step::Stalled { next, .. } = step {
            self.queue.push(
                next,
                Ev::Reader {
                    host: h,
                    generation: next_generation,
                },
            );
        }
        self.tell_reader(h);
        self.settle(h);
    }

    /// Peer `h`'s player makes its seek `seek`, then reads on at once.
    pub(super) fn on_reader_seek(&mut self, h: HostId, seek: usize) {
        let now = self.now();
        let host = &mut self.hosts[h as usize];
        let Some((_, fraction)) = self.scenario.groups[host.group]
            .reader
            .as_ref()
            .and_then(|r| r.seeks.get(seek))
        else {
            return;
        };
        let Some(player) = host.player.as_mut() else {
            return;
        };
        if !player.seek(now, *fraction) {
            return;
        }
        let offset = player.offset;
        self.trace.record(Kind::ReaderSeek, &[u64::from(h), offset]);
        self.on_reader(h, None);
    }

    /// Piece `piece` of peer `h` is verified: a player stalled on it reads on now (its pending
    /// tick is left stale).
    pub(super) fn wake_player(&mut self, h: HostId, piece: u32) {
        let Some(player) = self.hosts[h as usize].player.as_ref() else {
            return;
        };
        if player.stalled_on() == Some(piece) {
            let generation = player.generation;
            let now = self.now();
            self.queue.push(
                now,
                Ev::Reader {
                    host: h,
                    generation,
                },
            );
        }
    }

    /// Tells peer `h`'s client where its player is (`set_reader` with its rate), or that it is
    /// gone (`remove_reader`, at the end of its file); nothing for a player without deadlines,
    /// one not started, or a peer not running. The caller settles the peer.
    pub(super) fn tell_reader(&mut self, h: HostId) {
        let now = self.now();
        let host = &mut self.hosts[h as usize];
        let (Some(player), Some(client), HostState::Up) =
            (host.player.as_ref(), host.client.as_mut(), host.state)
        else {
            return;
        };
        if !player.deadlines || player.outcome.started_at.is_none() {
            return;
        }
        let torrent = host.torrent;
        if player.is_done() {
            client.remove_reader(now, torrent, READER);
            return;
        }
        let position = ReadPosition {
            offset: player.offset,
            end: player.end(),
            rate: Some(player.rate()),
        };
        if let Err(e) = client.set_reader(now, torrent, READER, position) {
            self.violation(format!("peer {h}: its client refused its reader: {e}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::streaming::CauseTally;

    fn spec(rate: u64) -> ReaderSpec {
        ReaderSpec {
            file: 0,
            rate,
            start: Duration::ZERO,
            seeks: Vec::new(),
            deadlines: true,
        }
    }

    fn at(secs: f64) -> Instant {
        Instant::from_micros((secs * 1e6) as u64)
    }

    #[test]
    fn a_player_reads_verified_pieces_at_its_rate_and_stalls_on_a_missing_one() {
        // Proves the player reads a verified piece at its rate, ticks at the piece's end,
        // stalls on the next missing piece (counted only after the first byte), and counts
        // the stall's time when the piece comes.
        let mut p = Player::new(&spec(100), (0, 400), 100);
        // Nothing verified at the start: a wait for the first byte, not a stall.
        let (step, change) = p.tick(at(0.0), |_| false);
        assert_eq!(
            step,
            Step::Stalled {
                piece: 0,
                next: at(1.0)
            }
        );
        assert_eq!(change, Some(Change::Stall(0)));
        assert_eq!(p.outcome.stalls, 0);
        // Piece 0 verified at 0.5 s: the first byte, a tick at the piece's end a second later.
        let (step, change) = p.tick(at(0.5), |piece| piece == 0);
        assert_eq!(step, Step::Reading { next: at(1.5) });
        assert_eq!(change, Some(Change::FirstByte(Duration::from_millis(500))));
        // At its end, piece 1 is missing: a stall.
        let (step, change) = p.tick(at(1.5), |piece| piece == 0);
        assert_eq!(p.offset, 100);
        assert_eq!(
            step,
            Step::Stalled {
                piece: 1,
                next: at(2.5)
            }
        );
        assert_eq!(change, Some(Change::Stall(1)));
        assert_eq!(p.outcome.stalls, 1);
        // Pieces 1 to 3 arrive at 2 s: it reads on after half a second stalled.
        let (_, change) = p.tick(at(2.0), |_| true);
        assert_eq!(change, Some(Change::Resume(Duration::from_millis(500))));
        for t in [3.0, 4.0] {
            assert!(matches!(p.tick(at(t), |_| true).0, Step::Reading { .. }));
        }
        assert_eq!(
            p.tick(at(5.0), |_| true),
            (Step::Done, Some(Change::Finished))
        );
        assert_eq!(p.outcome.stall_micros, 500_000);
        assert_eq!(p.outcome.finished_at, Some(at(5.0)));
    }

    #[test]
    fn a_stall_keeps_the_cause_it_began_with_and_the_first_wait_has_its_own() {
        // Proves the cause the engine gives at a stall's start counts that stall and its time
        // (one cause per stall, however long), and that the wait before the first byte, no
        // stall, keeps its cause apart.
        let mut p = Player::new(&spec(100), (0, 400), 100);
        p.tick(at(0.0), |_| false);
        p.stall_began(StallCause::Unavailable);
        p.tick(at(0.5), |piece| piece == 0);
        p.tick(at(1.5), |piece| piece == 0);
        p.stall_began(StallCause::InFlight);
        p.tick(at(2.0), |piece| piece <= 1);
        p.tick(at(3.0), |piece| piece <= 1);
        p.stall_began(StallCause::Unrequested);
        p.finish(at(3.25));
        let tally = |stalls, micros| CauseTally { stalls, micros };
        assert_eq!(
            p.outcome.by_cause,
            [tally(0, 0), tally(1, 500_000), tally(1, 250_000)]
        );
        assert_eq!(p.outcome.first_wait, Some(StallCause::Unavailable));
        assert_eq!(p.outcome.stalls, 2);
        assert_eq!(p.outcome.stall_micros, 750_000);
    }

    #[test]
    fn a_tick_comes_at_least_every_second_and_a_seek_moves_the_player() {
        // Proves a slow reader still ticks every second, never reads past the verified piece
        // it is in, and a seek jumps to the fraction of its file (here the second file).
        let mut p = Player::new(&spec(10), (1000, 1000), 500);
        let (step, _) = p.tick(at(0.0), |_| true);
        assert_eq!(step, Step::Reading { next: at(1.0) });
        p.tick(at(1.0), |_| true);
        assert_eq!(p.offset, 1010);
        assert!(p.seek(at(2.0), 0.5));
        assert_eq!(p.offset, 1500);
        let (step, _) = p.tick(at(2.0), |piece| piece != 3);
        assert_eq!(
            step,
            Step::Stalled {
                piece: 3,
                next: at(3.0)
            }
        );
        assert_eq!(p.outcome.seeks, 1);
        p.finish(at(4.0));
        assert!(p.outcome.stalled_at_end);
        assert_eq!(p.outcome.stall_micros, 2_000_000);
    }
}
