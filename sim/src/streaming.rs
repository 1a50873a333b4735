//! Streaming: what each peer's simulated player (a group's `reader`) saw, the per-group figures
//! the report gives of it, and the checks of `first_byte_within`, `stalls_at_most` and
//! `stall_seconds_at_most`.
//!
//! Definitions, the same for every figure: a player's time to first byte runs from its start
//! to the first byte it read; a stall is a wait for an unverified piece after the first byte
//! (the wait after a seek included), from the moment the next byte's piece is missing to the
//! moment it is verified (or the end of the run); a wait before the first byte is not a stall.
//!
//! Each stall is also classed by what its client looked like as it began ([`StallCause`]): no
//! connected peer that unchokes it holds the piece (the swarm's choking, or the piece's rarity:
//! no picker can help), blocks of the piece are on their way, or a peer that unchokes it holds
//! the piece and none of its missing blocks is requested (the picker's or the pipeline's
//! choice). A snapshot at the stall's start, not a proof of why it lasted.
//!
//! Bounds: one [`ReaderOutcome`] per peer; the report holds a few numbers per group.

use std::fmt::Write as _;

use bt_protocol::time::Instant;
use bt_runtime::units::format_bytes;
use serde::Serialize;

use crate::engine::HostOutcome;
use crate::report::{Check, Spread};
use crate::scenario::Scenario;

/// What one peer's player did over the run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReaderOutcome {
    /// When it started reading (`None`: its start came after the end of the run).
    pub started_at: Option<Instant>,
    /// When it read its first byte.
    pub first_byte_at: Option<Instant>,
    /// Stalls after its first byte.
    pub stalls: u32,
    /// Microseconds spent in those stalls (one still going at the end counts up to the end).
    pub stall_micros: u64,
    /// Whether it was stalled when the run ended.
    pub stalled_at_end: bool,
    /// When it read the last byte of its file.
    pub finished_at: Option<Instant>,
    /// Seeks it made.
    pub seeks: u32,
    /// Its stalls by their cause as they began, in the order of [`StallCause::ALL`].
    pub by_cause: [CauseTally; 3],
    /// What its client looked like as it began waiting for its first byte, if it had to.
    pub first_wait: Option<StallCause>,
}

/// What a player's client looked like as a stall began: see the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StallCause {
    /// No connected peer that unchokes it holds the piece.
    Unavailable,
    /// Blocks of the piece are requested and on their way.
    InFlight,
    /// A peer that unchokes it holds the piece, and none of its missing blocks is requested.
    Unrequested,
}

impl StallCause {
    /// Every cause, in the order of [`ReaderOutcome::by_cause`].
    pub const ALL: [StallCause; 3] = [
        StallCause::Unavailable,
        StallCause::InFlight,
        StallCause::Unrequested,
    ];

    /// Its index in [`ReaderOutcome::by_cause`].
    pub fn index(self) -> usize {
        self as usize
    }

    fn name(self) -> &'static str {
        match self {
            StallCause::Unavailable => "no unchoking peer had the piece",
            StallCause::InFlight => "its blocks in flight",
            StallCause::Unrequested => "not requested",
        }
    }
}

/// Stalls of one cause: how many, and how long in all.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CauseTally {
    /// Stalls that began so.
    pub stalls: u32,
    /// Microseconds they lasted.
    pub micros: u64,
}

/// The median, the largest and the sum of one figure over a group's players.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Tally {
    /// Median (the lower middle of an even count).
    pub median: f64,
    /// Largest.
    pub max: f64,
    /// Sum.
    pub sum: f64,
}

impl Tally {
    fn of(values: Vec<f64>) -> Option<Tally> {
        let sum = values.iter().sum();
        Spread::of(values).map(|s| Tally {
            median: s.median,
            max: s.max,
            sum,
        })
    }
}

/// A group's players, as the report gives them.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReaderReport {
    /// The file read, by index.
    pub file: usize,
    /// Bytes per second each player reads.
    pub rate: u64,
    /// Whether the players told their client where they read (`set_reader`).
    pub deadlines: bool,
    /// Players that started reading.
    pub started: u32,
    /// Of those, the ones that read their first byte.
    pub first_byte: u32,
    /// Of those, the ones that read to the end of the file.
    pub finished: u32,
    /// Seconds from start to first byte, over those that read one.
    pub first_byte_s: Option<Spread>,
    /// Stalls per player that started.
    pub stalls: Option<Tally>,
    /// Seconds stalled per player that started.
    pub stall_s: Option<Tally>,
    /// Players stalled when the run ended.
    pub stalled_at_end: u32,
    /// The group's stalls by their cause as they began (see [`StallCause`]): stalls and
    /// seconds, for no unchoking peer holding the piece, blocks in flight, not requested.
    pub by_cause: Option<CauseReport>,
    /// The players that waited for their first byte with no unchoking peer holding its piece
    /// as they began.
    pub first_wait_unavailable: u32,
}

/// A group's stalls by cause, summed over its players.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct CauseReport {
    /// No connected peer that unchokes the player's client held the piece.
    pub unavailable: CauseFigures,
    /// Blocks of the piece were requested and on their way.
    pub in_flight: CauseFigures,
    /// A peer that unchokes it held the piece, and none of its missing blocks was requested.
    pub unrequested: CauseFigures,
}

/// Stalls of one cause over a group: how many, and how many seconds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct CauseFigures {
    /// Stalls.
    pub stalls: u32,
    /// Seconds stalled.
    pub seconds: f64,
}

impl ReaderReport {
    /// The report of the players among `hosts` (one group's), or `None` when the group has no
    /// reader.
    pub(crate) fn new(
        spec: &crate::scenario::GroupSpec,
        hosts: &[&HostOutcome],
    ) -> Option<ReaderReport> {
        let reader = spec.reader.as_ref()?;
        let started: Vec<&ReaderOutcome> = hosts
            .iter()
            .filter_map(|h| h.reader.as_ref())
            .filter(|r| r.started_at.is_some())
            .collect();
        let first: Vec<f64> = started
            .iter()
            .filter_map(|r| Some(between(r.started_at?, r.first_byte_at?)))
            .collect();
        Some(ReaderReport {
            file: reader.file,
            rate: reader.rate,
            deadlines: reader.deadlines,
            started: started.len() as u32,
            first_byte: first.len() as u32,
            finished: started.iter().filter(|r| r.finished_at.is_some()).count() as u32,
            first_byte_s: Spread::of(first),
            stalls: Tally::of(started.iter().map(|r| f64::from(r.stalls)).collect()),
            stall_s: Tally::of(
                started
                    .iter()
                    .map(|r| r.stall_micros as f64 / 1e6)
                    .collect(),
            ),
            stalled_at_end: started.iter().filter(|r| r.stalled_at_end).count() as u32,
            first_wait_unavailable: started
                .iter()
                .filter(|r| r.first_wait == Some(StallCause::Unavailable))
                .count() as u32,
            by_cause: (!started.is_empty()).then(|| {
                let sum = |cause: StallCause| {
                    let (stalls, micros) = started.iter().fold((0, 0), |(n, t), r| {
                        let c = r.by_cause[cause.index()];
                        (n + c.stalls, t + c.micros)
                    });
                    CauseFigures {
                        stalls,
                        seconds: micros as f64 / 1e6,
                    }
                };
                CauseReport {
                    unavailable: sum(StallCause::Unavailable),
                    in_flight: sum(StallCause::InFlight),
                    unrequested: sum(StallCause::Unrequested),
                }
            }),
        })
    }

    /// One line: the players, their first byte, their stalls.
    pub(crate) fn summary(&self) -> String {
        let mut line = format!(
            "reader file {} at {}/s{}: {} started, {} read a byte",
            self.file,
            format_bytes(self.rate),
            if self.deadlines {
                ""
            } else {
                " (no deadlines)"
            },
            self.started,
            self.first_byte,
        );
        if let Some(s) = self.first_byte_s {
            let _ = write!(
                line,
                " (first byte {:.2} / {:.2} / {:.2} s)",
                s.min, s.median, s.max
            );
        }
        if self.first_wait_unavailable > 0 {
            let _ = write!(
                line,
                " ({} began waiting with no unchoking peer holding the piece)",
                self.first_wait_unavailable
            );
        }
        let _ = write!(line, ", {} read to the end", self.finished);
        if let (Some(n), Some(t)) = (self.stalls, self.stall_s) {
            let _ = write!(
                line,
                "; stalls {} / {} / {} (median / max / sum), stalled {:.2} / {:.2} / {:.2} s",
                n.median, n.max, n.sum, t.median, t.max, t.sum
            );
        }
        if self.stalled_at_end > 0 {
            let _ = write!(line, ", {} stalled at the end", self.stalled_at_end);
        }
        if let Some(c) = self.by_cause
            && self.stalls.is_some_and(|n| n.sum > 0.0)
        {
            let parts: Vec<String> = StallCause::ALL
                .iter()
                .zip([c.unavailable, c.in_flight, c.unrequested])
                .map(|(cause, f)| format!("{} {} for {:.2} s", cause.name(), f.stalls, f.seconds))
                .collect();
            let _ = write!(line, "; stalls as they began: {}", parts.join(", "));
        }
        line
    }
}

/// Seconds from `a` to `b`.
fn between(a: Instant, b: Instant) -> f64 {
    b.as_micros().saturating_sub(a.as_micros()) as f64 / 1e6
}

/// The players of group `g` that started, with their index within the group.
fn started(outcome_hosts: &[HostOutcome], g: usize) -> Vec<(usize, ReaderOutcome)> {
    outcome_hosts
        .iter()
        .filter(|h| h.group == g)
        .enumerate()
        .filter_map(|(i, h)| h.reader.filter(|r| r.started_at.is_some()).map(|r| (i, r)))
        .collect()
}

/// One check over a group's players that started: `bad` names what is wrong with one (`None`:
/// it passes); at least one must have started.
fn judge(
    name: String,
    group: &str,
    players: &[(usize, ReaderOutcome)],
    summary: String,
    bad: impl Fn(&ReaderOutcome) -> Option<String>,
) -> Check {
    let failed: Vec<String> = players
        .iter()
        .filter_map(|(i, r)| bad(r).map(|why| format!("{group}#{i} {why}")))
        .collect();
    let mut detail = format!("{} players started; {summary}", players.len());
    if !failed.is_empty() {
        let shown: Vec<&str> = failed.iter().take(5).map(String::as_str).collect();
        let _ = write!(detail, "; not: {}", shown.join(", "));
        if failed.len() > 5 {
            let _ = write!(detail, " and {} more", failed.len() - 5);
        }
    }
    Check {
        name,
        passed: failed.is_empty() && !players.is_empty(),
        detail,
    }
}

/// The streaming expectations of `scenario`, judged on `hosts` (the outcome's peers).
pub(crate) fn checks(scenario: &Scenario, hosts: &[HostOutcome]) -> Vec<Check> {
    let expect = &scenario.expect;
    let mut checks = Vec::new();
    for (&g, within) in &expect.first_byte_within {
        let name = &scenario.groups[g].name;
        let players = started(hosts, g);
        let w = within.as_secs_f64();
        let slowest = players
            .iter()
            .filter_map(|(_, r)| Some(between(r.started_at?, r.first_byte_at?)))
            .fold(0.0f64, f64::max);
        checks.push(judge(
            format!("{name}: first byte within {w} s"),
            name,
            &players,
            format!("the slowest first byte {slowest:.2} s after its start"),
            |r| match (r.started_at, r.first_byte_at) {
                (Some(s), Some(f)) if between(s, f) <= w => None,
                (Some(s), Some(f)) => Some(format!("after {:.2} s", between(s, f))),
                _ => Some("never".into()),
            },
        ));
    }
    for (&g, &most) in &expect.stalls_at_most {
        let name = &scenario.groups[g].name;
        let players = started(hosts, g);
        let max = players.iter().map(|(_, r)| r.stalls).max().unwrap_or(0);
        checks.push(judge(
            format!("{name}: at most {most} stalls per player"),
            name,
            &players,
            format!("at most {max} stalls"),
            |r| (r.stalls > most).then(|| format!("stalled {} times", r.stalls)),
        ));
    }
    for (&g, most) in &expect.stall_seconds_at_most {
        let name = &scenario.groups[g].name;
        let players = started(hosts, g);
        let most_micros = most.as_micros() as u64;
        let max = players
            .iter()
            .map(|(_, r)| r.stall_micros)
            .max()
            .unwrap_or(0);
        checks.push(judge(
            format!(
                "{name}: at most {} s stalled per player",
                most.as_secs_f64()
            ),
            name,
            &players,
            format!("at most {:.2} s stalled", max as f64 / 1e6),
            |r| {
                (r.stall_micros > most_micros)
                    .then(|| format!("stalled {:.2} s", r.stall_micros as f64 / 1e6))
            },
        ));
    }
    checks
}
