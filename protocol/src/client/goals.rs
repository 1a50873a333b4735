//! Seeding goals: a torrent stops by itself once it has given back enough ([`SeedGoal`]), as
//! `--seed-ratio` and `--seed-time` ask.
//!
//! A goal counts only while the torrent seeds: running (not paused) with every wanted piece
//! verified. From then on the client tracks
//! - the share ratio: block bytes uploaded this run over the bytes of the verified pieces held
//!   (the torrent's size once complete, the chosen files' pieces with a selection), as qBittorrent
//!   counts a torrent it did not download itself;
//! - the seeding time: running time since the wanted pieces were all verified, paused time
//!   excluded.
//!
//! The first goal reached wins: the client emits [`Event::SeedGoalReached`] and stops the torrent
//! ([`Client::stop_torrent`]: connections closed, `stopped` announced, then [`Event::Stopped`]).
//! The ratio is a fixed-point number (thousandths), so the decision is exact and deterministic.
//!
//! A goal spans runs: a driver that kept the progress of earlier runs ([`SeedProgress`], from
//! [`Client::seed_progress`]) hands it back with [`Client::restore_seed_progress`], and both
//! counts go on from there (bytes uploaded in earlier runs count toward the ratio; their seeding
//! time toward the time). A torrent whose progress was restored keeps its seeding clock running
//! with or without a goal, so its progress can be saved again.
//!
//! Bounds: one goal and one clock per torrent; checking a goal costs a bitfield count only when
//! the upload count moved since the last check.

use core::time::Duration;

use super::{Client, Event, Output, Phase, Timer};
use crate::session::{SessionError, TorrentId};
use crate::time::Instant;

/// A share ratio in thousandths: `SeedRatio::from_thousandths(1500)` is 1.5.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeedRatio(u32);

/// The largest ratio [`SeedRatio::parse`] takes.
pub const MAX_SEED_RATIO: u32 = 1_000_000;

impl SeedRatio {
    /// The ratio `thousandths / 1000`.
    pub const fn from_thousandths(thousandths: u32) -> Self {
        SeedRatio(thousandths)
    }

    /// The ratio in thousandths.
    pub const fn thousandths(self) -> u32 {
        self.0
    }

    /// Parses a non-negative decimal (`1`, `0.5`, `2.25`), rounded to thousandths, at most
    /// [`MAX_SEED_RATIO`]; the error says what is wrong in words.
    pub fn parse(text: &str) -> Result<Self, String> {
        let value: f64 = text
            .trim()
            .parse()
            .map_err(|_| format!("`{text}` is not a number (say 1, 0.5 or 2.25)"))?;
        if !value.is_finite() || value < 0.0 {
            return Err(format!("`{text}` is not a ratio: it must be 0 or more"));
        }
        if value > f64::from(MAX_SEED_RATIO) {
            return Err(format!("`{text}` is too large: at most {MAX_SEED_RATIO}"));
        }
        Ok(SeedRatio((value * 1000.0).round() as u32))
    }

    /// Whether `uploaded` bytes over `held` bytes reach this ratio (a ratio of 0 is always
    /// reached; nothing held reaches only 0).
    pub fn reached(self, uploaded: u64, held: u64) -> bool {
        if self.0 == 0 {
            return true;
        }
        held > 0 && u128::from(uploaded) * 1000 >= u128::from(self.0) * u128::from(held)
    }
}

impl core::fmt::Display for SeedRatio {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let (whole, frac) = (self.0 / 1000, self.0 % 1000);
        if frac == 0 {
            write!(f, "{whole}")
        } else {
            let digits = format!("{frac:03}");
            write!(f, "{whole}.{}", digits.trim_end_matches('0'))
        }
    }
}

/// When a seeding torrent stops by itself: the first goal reached (none set: it seeds on).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SeedGoal {
    /// Stop once uploaded / held reaches this.
    pub ratio: Option<SeedRatio>,
    /// Stop after seeding this long.
    pub time: Option<Duration>,
}

/// Which goal a torrent reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GoalReached {
    /// The share ratio.
    Ratio(SeedRatio),
    /// The seeding time.
    Time(Duration),
}

/// How far a torrent has come toward its seeding goals over all its runs: what a driver saves
/// beside the data and restores at the next start ([`Client::restore_seed_progress`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SeedProgress {
    /// Block bytes uploaded (written to peers), over every run.
    pub uploaded: u64,
    /// Time spent seeding (running with every wanted piece verified), over every run.
    pub seeded: Duration,
}

/// A torrent's goal and its seeding clock.
#[derive(Clone, Debug)]
pub(super) struct GoalState {
    /// The goal; the default (none) for a torrent whose clock only runs to be saved.
    goal: SeedGoal,
    /// Since when it seeds without a break; `None` while it does not.
    since: Option<Instant>,
    /// Seeding time before `since` (earlier stretches, between pauses, and earlier runs).
    before: Duration,
    /// Block bytes uploaded in earlier runs.
    uploaded_before: u64,
    /// The upload count at the last ratio check (`None`: check now).
    checked_uploaded: Option<u64>,
}

impl GoalState {
    fn new(goal: SeedGoal) -> Self {
        GoalState {
            goal,
            since: None,
            before: Duration::ZERO,
            uploaded_before: 0,
            checked_uploaded: None,
        }
    }

    fn seeded(&self, now: Instant) -> Duration {
        self.before
            + self
                .since
                .map_or(Duration::ZERO, |s| now.saturating_since(s))
    }
}

impl Client {
    /// Sets torrent `id`'s seeding goal (see the module docs), replacing any earlier one; a goal
    /// with neither part clears it. A goal already reached stops the torrent at once.
    pub fn set_seed_goal(
        &mut self,
        now: Instant,
        id: TorrentId,
        goal: SeedGoal,
    ) -> Result<(), SessionError> {
        if !self.sides.contains_key(&id) {
            return Err(SessionError::NoSuchTorrent(id));
        }
        match self.goals.get_mut(&id) {
            Some(g) => {
                g.goal = goal;
                g.checked_uploaded = None;
            }
            None if goal == SeedGoal::default() => {}
            None => {
                self.goals.insert(id, GoalState::new(goal));
            }
        }
        self.pump(now);
        Ok(())
    }

    /// Adds the progress of torrent `id`'s earlier runs (as [`Client::seed_progress`] gave it
    /// then) to its counts, and keeps its seeding clock running from now on, goal or not.
    pub fn restore_seed_progress(
        &mut self,
        now: Instant,
        id: TorrentId,
        earlier: SeedProgress,
    ) -> Result<(), SessionError> {
        if !self.sides.contains_key(&id) {
            return Err(SessionError::NoSuchTorrent(id));
        }
        let g = self
            .goals
            .entry(id)
            .or_insert_with(|| GoalState::new(SeedGoal::default()));
        g.before += earlier.seeded;
        g.uploaded_before = g.uploaded_before.saturating_add(earlier.uploaded);
        g.checked_uploaded = None;
        self.pump(now);
        Ok(())
    }

    /// Torrent `id`'s seeding goal, if any is set and not reached yet.
    pub fn seed_goal(&self, id: TorrentId) -> Option<SeedGoal> {
        self.goals
            .get(&id)
            .map(|g| g.goal)
            .filter(|g| *g != SeedGoal::default())
    }

    /// How long torrent `id` has seeded so far, earlier runs included, for a torrent with a goal
    /// or restored progress (see the module docs).
    pub fn seeding_time(&self, now: Instant, id: TorrentId) -> Option<Duration> {
        self.goals.get(&id).map(|g| g.seeded(now))
    }

    /// Torrent `id`'s progress toward seeding goals over all its runs, for a torrent with a goal
    /// or restored progress: what to save for [`Client::restore_seed_progress`] next time.
    pub fn seed_progress(&self, now: Instant, id: TorrentId) -> Option<SeedProgress> {
        let g = self.goals.get(&id)?;
        let this_run = self.session.torrent(id).map_or(0, |t| t.stats().uploaded);
        Some(SeedProgress {
            uploaded: g.uploaded_before.saturating_add(this_run),
            seeded: g.seeded(now),
        })
    }

    /// Whether some torrent has a goal set.
    pub(super) fn has_seed_goal(&self) -> bool {
        self.goals.values().any(|g| g.goal != SeedGoal::default())
    }

    /// The seeding-time deadlines, for the timer table.
    pub(super) fn seed_goal_timers(&self) -> impl Iterator<Item = (Timer, Instant)> + '_ {
        self.goals.iter().filter_map(|(id, g)| {
            let (since, time) = (g.since?, g.goal.time?);
            Some((Timer::SeedGoal(*id), since + time.saturating_sub(g.before)))
        })
    }

    /// Starts and stops the seeding clocks, and stops each torrent whose goal is reached.
    pub(super) fn check_seed_goals(&mut self, now: Instant) {
        let mut reached = Vec::new();
        for (id, g) in &mut self.goals {
            let seeding = self
                .sides
                .get(id)
                .is_some_and(|s| s.phase == Phase::Running)
                && self
                    .session
                    .torrent(*id)
                    .is_some_and(|t| t.wanted_complete());
            match (seeding, g.since) {
                (true, None) => g.since = Some(now),
                (false, Some(since)) => {
                    g.before += now.saturating_since(since);
                    g.since = None;
                }
                _ => {}
            }
            if !seeding {
                continue;
            }
            let seeded = g.seeded(now);
            if let Some(time) = g.goal.time
                && seeded >= time
            {
                reached.push((*id, GoalReached::Time(time), seeded));
                continue;
            }
            let Some(ratio) = g.goal.ratio else {
                continue;
            };
            let Some(t) = self.session.torrent(*id) else {
                continue;
            };
            let uploaded = t.stats().uploaded;
            if g.checked_uploaded == Some(uploaded) {
                continue;
            }
            g.checked_uploaded = Some(uploaded);
            if ratio.reached(g.uploaded_before.saturating_add(uploaded), held_bytes(t)) {
                reached.push((*id, GoalReached::Ratio(ratio), seeded));
            }
        }
        for (id, goal, seeded) in reached {
            // The clock stays, stopped with the torrent, so its progress can still be saved.
            let Some(g) = self.goals.get_mut(&id) else {
                continue;
            };
            g.goal = SeedGoal::default();
            let this_run = self.session.torrent(id).map_or(0, |t| t.stats().uploaded);
            let uploaded = g.uploaded_before.saturating_add(this_run);
            self.outputs
                .push_back(Output::Event(Event::SeedGoalReached {
                    torrent: id,
                    reached: goal,
                    uploaded,
                    seeded,
                }));
            self.stop_torrent(now, id);
        }
    }
}

/// The bytes of the verified pieces `t` holds.
fn held_bytes(t: &crate::torrent::Torrent) -> u64 {
    let layout = t.layout();
    let have = t.have();
    let count = u64::from(have.count());
    let pieces = layout.piece_count();
    let nominal = u64::from(layout.piece_length());
    let mut bytes = count * nominal;
    if pieces > 0
        && let Some(last) = layout.piece(pieces - 1)
        && have.get(pieces - 1)
    {
        bytes -= nominal - u64::from(layout.piece_len(last));
    }
    bytes
}
