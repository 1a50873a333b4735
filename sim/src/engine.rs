//! The engines by name, and what a run hands to the report ([`Outcome`]).
//!
//! Both engines read the same [`Scenario`] and give the same [`Outcome`], so the report, the
//! expectations and the tests do not care which one ran: `fast` (protocol sessions on an
//! event-driven clock, `sim/src/fast/`) and `turmoil` (the real runtime driver over turmoil's
//! simulated sockets, `sim/src/turmoil/`), which refuses scenarios bigger than it can run.

use std::collections::BTreeMap;
use std::time::Duration;

use bt_protocol::client::GoalReached;
use bt_protocol::metainfo::{InfoHash, TorrentLayout};
use bt_protocol::time::Instant;
use bt_protocol::torrent::{Bitfield, FilePriority, piece_priorities};

use crate::scenario::{EngineKind, Scenario};

/// Why a run could not start.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RunError {
    /// The trace file could not be written.
    #[error("cannot write the trace: {0}")]
    Trace(String),
    /// The scenario has more hosts than the engine runs.
    #[error(
        "the turmoil engine runs at most {limit} hosts (peers, trackers and DHT bootstrap nodes: its cost per step \
         grows with the cube of the hosts), and this scenario has {hosts}; use --engine fast"
    )]
    TooManyHosts {
        /// Peers, trackers and DHT bootstrap nodes in the scenario.
        hosts: u32,
        /// The most the engine runs.
        limit: u32,
    },
    /// The scenario could not be set up (its torrent could not be built).
    #[error("cannot set up the scenario: {0}")]
    Setup(String),
}

/// A snapshot for progress displays, given every few thousand events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Simulated time.
    pub now: Instant,
    /// The run's bound.
    pub duration: Duration,
    /// Events handled so far.
    pub events: u64,
    /// Leechers that have completed.
    pub complete: u32,
    /// Peers running now.
    pub running: u32,
    /// Peers in the scenario.
    pub hosts: u32,
}

/// How a peer ended the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HostEnd {
    /// Its join time came after the end.
    NeverJoined,
    /// Running at the end.
    Running,
    /// Crashed and not restarted.
    Crashed,
    /// Left (`leave_after`) and not restarted.
    Left,
    /// Stopped by itself at its seeding goal (`seed_ratio`, `seed_time`) and not restarted.
    SeedGoal,
}

/// A peer's seeding goal reached: what the protocol said when it stopped the torrent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeedGoalOutcome {
    /// When.
    pub at: Instant,
    /// Which goal: the ratio or the time.
    pub reached: GoalReached,
    /// Block bytes the peer had uploaded in that life.
    pub uploaded: u64,
    /// Bytes of the verified pieces it held then (the ratio's denominator).
    pub held: u64,
    /// How long it had seeded.
    pub seeded: Duration,
}

impl SeedGoalOutcome {
    /// The share ratio it had: `uploaded / held` (0 when it held nothing).
    pub fn ratio(&self) -> f64 {
        if self.held == 0 {
            0.0
        } else {
            self.uploaded as f64 / self.held as f64
        }
    }
}

/// The bytes of the pieces `have` marks, in `layout` (the last piece may be short): a seeding
/// ratio's denominator.
pub fn held_bytes(layout: &TorrentLayout, have: &Bitfield) -> u64 {
    have.ones()
        .filter_map(|p| layout.piece(p))
        .map(|p| u64::from(layout.piece_len(p)))
        .sum()
}

/// Pauses and resumes the peers' torrents took: a `pause` fault that stopped a running torrent,
/// a `resume` that started a paused one again (on the turmoil engine, as the driver reported
/// them). Counted alike on both engines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct PauseCounts {
    /// Torrents that paused.
    pub(crate) paused: u64,
    /// Torrents that resumed.
    pub(crate) resumed: u64,
}

impl PauseCounts {
    /// Adds them to `diagnostics` (`pauses_taken`, `resumes_taken`) when `scenario` has a
    /// `pause` or `resume` fault.
    pub(crate) fn report(&self, scenario: &Scenario, diagnostics: &mut BTreeMap<String, u64>) {
        if scenario.faults.iter().any(|f| {
            matches!(
                f.action,
                crate::scenario::FaultAction::Pause(_) | crate::scenario::FaultAction::Resume(_)
            )
        }) {
            diagnostics.insert("pauses_taken".to_owned(), self.paused);
            diagnostics.insert("resumes_taken".to_owned(), self.resumed);
        }
    }
}

/// Which pieces of `layout` lie wholly in files that `priorities` skip, by piece index: a peer
/// that selects files never writes a block of one (the write observer's rule on both engines;
/// a piece straddling a wanted file is wanted).
pub fn skipped_pieces(layout: &TorrentLayout, priorities: &[FilePriority]) -> Vec<bool> {
    piece_priorities(layout, priorities)
        .into_iter()
        .map(|p| p == FilePriority::Skip)
        .collect()
}

/// The goal observer's verdict on peer `peer` reaching `reached` at `now`, the same on both
/// engines: a ratio must be met by `sent` (block bytes the engine saw it upload in that life)
/// over `held`; a time must come no earlier than that long after `completed_at` (its
/// completion in that life), and `seeded` must be at least that time. `None` when earned, else
/// one line saying what is wrong.
pub(crate) fn unearned_goal(
    peer: usize,
    reached: GoalReached,
    sent: u64,
    held: u64,
    completed_at: Option<Instant>,
    now: Instant,
    seeded: Duration,
) -> Option<String> {
    match reached {
        GoalReached::Ratio(ratio) => (!ratio.reached(sent, held)).then(|| {
            format!(
                "peer {peer} reached its seed ratio {ratio} having sent {sent} block bytes for \
                 {held} held"
            )
        }),
        GoalReached::Time(time) => {
            let early = completed_at.is_none_or(|at| now < at + time);
            (early || seeded < time).then(|| {
                format!(
                    "peer {peer} reached its seed time {time:?} early: complete at \
                     {completed_at:?}, seeded {seeded:?}"
                )
            })
        }
    }
}

/// Block payload a peer received over its lives, by who sent it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockSources {
    /// Bytes of `piece` messages sent to it.
    pub received: u64,
    /// Of those, bytes sent by peers of seeder groups.
    pub from_seeders: u64,
}

/// What one peer did over the run (all its sessions, across restarts).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostOutcome {
    /// Its group, by index.
    pub group: usize,
    /// When it first joined.
    pub joined_at: Option<Instant>,
    /// When it first had every piece (seeders: when they joined).
    pub completed_at: Option<Instant>,
    /// How it ended.
    pub end: HostEnd,
    /// Block bytes it uploaded.
    pub uploaded: u64,
    /// Block bytes it downloaded.
    pub downloaded: u64,
    /// Pieces that failed their hash check.
    pub hash_failures: u64,
    /// Peers it banned.
    pub bans_issued: u64,
    /// Peers that banned it.
    pub banned_by: u64,
    /// Pieces it verified whose bytes were wrong (a safety violation).
    pub corrupt_pieces_kept: u64,
    /// Pieces it had verified at the end.
    pub pieces: u32,
    /// When a magnet peer first had the torrent's metadata (BEP 9); `None` for other peers and
    /// for a magnet that never got it.
    pub metadata_at: Option<Instant>,
    /// Peers it learned through PEX (BEP 11) that were new to it and queued to dial.
    pub pex_learned: u64,
    /// Peers its DHT node (BEP 5) found that were new to it and queued to dial.
    pub dht_peers: u64,
    /// DHT lookups (announces) of its node that finished.
    pub dht_lookups: u64,
    /// When its node first finished a lookup (`None`: never, or no DHT).
    pub dht_first_lookup_at: Option<Instant>,
    /// DHT datagrams its node sent (the fast engine; the turmoil engine counts them at the
    /// socket too).
    pub dht_datagrams: u64,
    /// Its seeding goal, the last time it reached it (`None`: never, or no goal).
    pub seed_goal: Option<SeedGoalOutcome>,
    /// What its simulated player saw (`None`: its group has no `reader`, or it never joined).
    pub reader: Option<crate::streaming::ReaderOutcome>,
    /// Where the block payload it received came from, as the wire observer saw it sent (`None`:
    /// not observed, on the turmoil engine or in a run where peers may encrypt).
    pub sources: Option<BlockSources>,
}

/// What a run measured. Built by an engine, judged by [`crate::report`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The seed that ran.
    pub seed: u64,
    /// The engine that ran.
    pub engine: EngineKind,
    /// Simulated time at the end.
    pub sim_time: Instant,
    /// Events handled.
    pub events: u64,
    /// Hash of the ordered event stream ([`crate::trace::Fingerprint`]).
    pub fingerprint: u64,
    /// The torrent's info hash: the same on both engines for the same scenario and seed (both
    /// build [`bt_protocol::content::torrent`]).
    pub info_hash: InfoHash,
    /// Every peer, in scenario order (group by group).
    pub hosts: Vec<HostOutcome>,
    /// Safety violations the observers saw, the first [`MAX_VIOLATIONS_KEPT`] of them.
    pub violations: Vec<String>,
    /// All safety violations, including those not kept.
    pub violation_count: u64,
    /// Connections closed, by reason (as the protocol names it).
    pub close_reasons: BTreeMap<String, u64>,
    /// Engine-specific counts worth a look (connections at the end, ...).
    pub diagnostics: BTreeMap<String, u64>,
    /// Announces the trackers answered.
    pub announces: u64,
    /// Events handled, by kind (engine-specific names).
    pub event_counts: BTreeMap<String, u64>,
    /// Per group (by index): connections its peers closed, by [`close_reason_name`]. Empty when
    /// the engine does not count them per group.
    pub group_closes: Vec<BTreeMap<String, u64>>,
    /// Per group (by index): what honest peers did to its attackers (`None` for other groups).
    pub attacks: Vec<Option<AttackOutcome>>,
    /// Connections and dials of peers whose group sets `encryption` (empty without any).
    pub encryption: crate::encryption::EncryptionOutcome,
    /// Connections by transport, the uplink queues' traffic and the uTP stream check.
    pub transport: crate::transport::TransportOutcome,
}

/// What happened to the connections between one attacker group and honest peers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AttackOutcome {
    /// Connections that opened (the TCP connect answered, either way round).
    pub connections: u64,
    /// Of those, the ones the honest side closed, by [`close_reason_name`].
    pub closed: BTreeMap<String, u64>,
    /// For each closed one, microseconds of simulated time from the honest side's open to its
    /// close, in the order they closed.
    pub close_micros: Vec<u64>,
    /// For each connection still open at both ends when the run ended, microseconds since the
    /// honest side opened it.
    pub open_micros: Vec<u64>,
    /// For each of `open_micros`, the honest peer's index in [`Outcome::hosts`].
    pub open_honest: Vec<usize>,
    /// Whether the engine measured `max_queued_to` (the fast engine does; on the turmoil engine
    /// the runtime's queues are inside its tasks).
    pub queues_measured: bool,
    /// The most bytes an honest peer ever had queued to send on one connection to an attacker.
    pub max_queued_to: u64,
    /// The most bytes an attacker ever had queued to send on one connection (its own bound; on
    /// the turmoil engine, the most it wrote at once).
    pub max_queued_by: u64,
    /// Bytes the attackers sent.
    pub bytes_sent: u64,
    /// Bytes the attackers received.
    pub bytes_received: u64,
}

/// Close reasons that are no verdict on the peer: the other side went away, or we left.
pub const CLEAN_CLOSES: [&str; 3] = ["Disconnected", "Left", "TorrentRemoved"];

/// A stable name for a close reason from its `Debug` form: the variant names down to the rule
/// broken, without the values they carry, `/`-separated, the session's `Torrent(..)` wrapper
/// left out. `Torrent(Peer(Wire(FrameTooLong { id: 7, .. })))` is `Peer/Wire/FrameTooLong`,
/// `UnknownTorrent(InfoHash(..))` is `UnknownTorrent`, `Left` stays `Left`.
pub fn close_reason_name(debug: &str) -> String {
    /// Variants that wrap another reason (their payload names the rule).
    const WRAPPERS: [&str; 7] = [
        "Torrent",
        "Peer",
        "Wire",
        "Bitfield",
        "Handshake",
        "Refused",
        "Mse",
    ];
    let mut parts = Vec::new();
    let mut rest = debug.trim();
    loop {
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let (ident, after) = rest.split_at(end);
        if ident.is_empty() {
            break;
        }
        if WRAPPERS.contains(&ident) && after.starts_with('(') {
            if ident != "Torrent" {
                parts.push(ident);
            }
            rest = &after[1..];
            continue;
        }
        parts.push(ident);
        break;
    }
    if parts.is_empty() {
        return debug.to_owned();
    }
    parts.join("/")
}

/// Violations kept word for word; the rest are only counted.
pub const MAX_VIOLATIONS_KEPT: usize = 20;

/// Runs `scenario` with `seed` on `engine`, calling `progress` now and then.
pub fn run(
    scenario: &Scenario,
    seed: u64,
    engine: EngineKind,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Outcome, RunError> {
    match engine {
        EngineKind::Fast => crate::fast::run(scenario, seed, progress),
        EngineKind::Turmoil => crate::turmoil::run(scenario, seed, progress),
    }
}

/// [`run`], writing the run's event stream as text to `trace` (one line per record: simulated
/// seconds, the record's name, its words). The fingerprint is the same as without.
pub fn run_traced(
    scenario: &Scenario,
    seed: u64,
    engine: EngineKind,
    progress: &mut dyn FnMut(&Progress),
    trace: Box<dyn std::io::Write + Send>,
) -> Result<Outcome, RunError> {
    match engine {
        EngineKind::Fast => crate::fast::run_traced(scenario, seed, progress, trace),
        EngineKind::Turmoil => crate::turmoil::run_traced(scenario, seed, progress, trace),
    }
}

#[cfg(test)]
mod tests {
    use super::close_reason_name;

    #[test]
    fn close_reason_names_keep_the_rule_and_drop_the_values() {
        // Proves the stable names: wrappers kept down to the rule, values and the session's
        // Torrent wrapper dropped, plain names unchanged.
        for (debug, name) in [
            (
                "Torrent(Peer(Wire(FrameTooLong { id: 7, len: 4294967295, max: 16393 })))",
                "Peer/Wire/FrameTooLong",
            ),
            (
                "Torrent(Peer(Bitfield(WrongLength { received: 3, expected: 4, pieces: 28 })))",
                "Peer/Bitfield/WrongLength",
            ),
            (
                "Torrent(Peer(WrongInfoHash(InfoHash(1f2e))))",
                "Peer/WrongInfoHash",
            ),
            ("UnknownTorrent(InfoHash(1f2e))", "UnknownTorrent"),
            (
                "Torrent(Peer(HandshakeTimeout(20s)))",
                "Peer/HandshakeTimeout",
            ),
            ("Refused(Banned(10.0.0.3))", "Refused/Banned"),
            ("Mse(PadTooLong(1000))", "Mse/PadTooLong"),
            ("Mse(NoSyncMarker)", "Mse/NoSyncMarker"),
            ("Torrent(Disconnected)", "Disconnected"),
            ("Left", "Left"),
            ("", ""),
        ] {
            assert_eq!(close_reason_name(debug), name, "{debug}");
        }
    }
}
