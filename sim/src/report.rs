//! [`Report`]: what a run measured, per group and for the swarm, judged against the scenario's
//! expectations and the safety observers; printed for people ([`Report::human`]) or as JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use bt_protocol::client::GoalReached;
use bt_protocol::time::Instant;
use bt_runtime::units::{format_bytes, format_count};
use serde::Serialize;

use crate::engine::{AttackOutcome, CLEAN_CLOSES, HostEnd, HostOutcome, Outcome};
use crate::scenario::{Behaviour, EngineKind, Role, Scenario};

/// Three points of a distribution, in seconds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Spread {
    /// Smallest.
    pub min: f64,
    /// Median (the lower middle of an even count).
    pub median: f64,
    /// Largest.
    pub max: f64,
}

impl Spread {
    pub(crate) fn of(mut values: Vec<f64>) -> Option<Spread> {
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        Some(Spread {
            min: values[0],
            median: values[(values.len() - 1) / 2],
            max: values[values.len() - 1],
        })
    }
}

/// One group's figures.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GroupReport {
    /// Its name.
    pub name: String,
    /// Seeder or leecher.
    pub role: Role,
    /// Peers in the group.
    pub peers: u32,
    /// Peers that joined.
    pub joined: u32,
    /// Leechers that completed.
    pub completed: u32,
    /// Peers crashed at the end.
    pub crashed: u32,
    /// Peers that had left at the end.
    pub left: u32,
    /// Seconds from joining to having every piece, over the leechers that completed.
    pub completion_s: Option<Spread>,
    /// For a magnet group: its peers that had the metadata (BEP 9) by the end.
    pub magnets_resolved: Option<u32>,
    /// For a magnet group: seconds from joining to having the metadata, over those that had it.
    pub magnet_s: Option<Spread>,
    /// New peers its peers learned through PEX (BEP 11) and queued to dial.
    pub pex_learned: u64,
    /// New peers its peers' DHT nodes (BEP 5) found and queued to dial.
    pub dht_peers: u64,
    /// DHT lookups (announces) its peers finished.
    pub dht_lookups: u64,
    /// DHT datagrams its peers sent.
    pub dht_datagrams: u64,
    /// Block bytes uploaded.
    pub uploaded: u64,
    /// Block bytes downloaded.
    pub downloaded: u64,
    /// Pieces that failed their hash check.
    pub hash_failures: u64,
    /// Bans its peers issued.
    pub bans_issued: u64,
    /// Bans of its peers by others.
    pub banned_by: u64,
    /// Connections its peers closed, by reason ([`crate::engine::close_reason_name`]; empty when
    /// the engine does not count them per group).
    pub closes: BTreeMap<String, u64>,
    /// For an attacker group: what the honest peers did to its connections.
    pub attack: Option<AttackReport>,
    /// For a group with a seeding goal (`seed_ratio`, `seed_time`): who reached it.
    pub seed_goal: Option<SeedGoalReport>,
    /// For a group with `encryption`: its policy (`prefer`, `require`, `plaintext`).
    pub encryption: Option<&'static str>,
    /// For a group with `encryption`: connections its peers' torrents took under RC4.
    pub connections_rc4: Option<u64>,
    /// For a group with `encryption`: connections its peers' torrents took in plaintext (a
    /// plaintext BitTorrent handshake, or an encrypted one that selected plaintext).
    pub connections_plaintext: Option<u64>,
    /// For a group with a `reader`: what its players saw (first byte, stalls).
    pub reader: Option<crate::streaming::ReaderReport>,
    /// For a leecher group: the share of the block payload its peers received that peers of
    /// seeder groups sent, as the wire observer saw it (`None`: not observed, see
    /// [`HostOutcome::sources`], or nothing received).
    pub from_seeders: Option<f64>,
}

/// How one group's peers fared against their seeding goal.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SeedGoalReport {
    /// The goal's share ratio, if it has one.
    pub ratio: Option<f64>,
    /// The goal's seeding time in seconds, if it has one.
    pub time_s: Option<f64>,
    /// Peers of the group that joined.
    pub joined: u32,
    /// Peers that reached the goal (in their last life that reached it) and stopped.
    pub reached: u32,
    /// Of those, by the share ratio.
    pub by_ratio: u32,
    /// Of those, by the seeding time.
    pub by_time: u32,
    /// The smallest share ratio any of them had when it reached the goal (block bytes
    /// uploaded in that life over the bytes of the pieces held).
    pub ratio_min: Option<f64>,
    /// Seconds each had seeded when it reached the goal.
    pub seeded_s: Option<Spread>,
    /// Peers that joined and did not reach it, as `group#index` (at most 5 named).
    pub not_reached: Vec<String>,
}

impl SeedGoalReport {
    /// The report of the peers `hosts` (with their index in the outcome; `first` is the
    /// group's first) of group `spec`, or `None` when the group has no goal.
    fn new(
        spec: &crate::scenario::GroupSpec,
        hosts: &[(usize, &HostOutcome)],
        first: usize,
    ) -> Option<SeedGoalReport> {
        spec.seed_goal()?;
        let joined: Vec<&(usize, &HostOutcome)> = hosts
            .iter()
            .filter(|(_, h)| h.joined_at.is_some())
            .collect();
        let goals: Vec<_> = joined.iter().filter_map(|(_, h)| h.seed_goal).collect();
        let count = |ratio: bool| {
            goals
                .iter()
                .filter(|g| matches!(g.reached, GoalReached::Ratio(_)) == ratio)
                .count() as u32
        };
        Some(SeedGoalReport {
            ratio: spec.seed_ratio.map(|r| f64::from(r.thousandths()) / 1000.0),
            time_s: spec.seed_time.map(|t| t.as_secs_f64()),
            joined: joined.len() as u32,
            reached: goals.len() as u32,
            by_ratio: count(true),
            by_time: count(false),
            ratio_min: goals.iter().map(|g| g.ratio()).min_by(f64::total_cmp),
            seeded_s: Spread::of(goals.iter().map(|g| g.seeded.as_secs_f64()).collect()),
            not_reached: joined
                .iter()
                .filter(|(_, h)| h.seed_goal.is_none())
                .take(5)
                .map(|(i, _)| format!("{}#{}", spec.name, i - first))
                .collect(),
        })
    }

    /// One line: the goal, who reached it and how.
    fn summary(&self) -> String {
        let mut goal = Vec::new();
        if let Some(r) = self.ratio {
            goal.push(format!("ratio {r}"));
        }
        if let Some(t) = self.time_s {
            goal.push(format!("{t} s"));
        }
        let mut line = format!(
            "seed goal {}: {}/{} reached ({} by ratio, {} by time)",
            goal.join(" or "),
            self.reached,
            self.joined,
            self.by_ratio,
            self.by_time
        );
        if let Some(r) = self.ratio_min {
            let _ = write!(line, ", ratio at least {r:.2}");
        }
        if let Some(s) = self.seeded_s {
            let _ = write!(
                line,
                ", seeded {:.1} / {:.1} / {:.1} s",
                s.min, s.median, s.max
            );
        }
        line
    }
}

/// What became of one attacker group's connections to honest peers.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AttackReport {
    /// The attack (`sim/README.md`).
    pub attack: String,
    /// Connections that opened.
    pub connections: u64,
    /// Closed by the honest side, by reason.
    pub closed: BTreeMap<String, u64>,
    /// Closed by the honest side, in all.
    pub closed_total: u64,
    /// Of those, closed for a reason that is a clean close (the honest peer left), not a verdict.
    pub closed_clean: u64,
    /// Seconds from the honest side's open to its close, over the closed ones.
    pub close_s: Option<Spread>,
    /// Open at both ends when the run ended.
    pub open_at_end: u64,
    /// How long the oldest of those had been open, in seconds.
    pub open_oldest_s: Option<f64>,
    /// Of those, where the group is in `attackers_closed_if_interested`: the ones to an honest
    /// peer that had every piece within `attackers_close_within` of the open, so wanted
    /// nothing from the attacker (not interested).
    pub open_uninterested: u64,
    /// How long each of the others had been open, in seconds.
    #[serde(skip)]
    open_s: Vec<f64>,
    /// Seconds from open to close of each closed one.
    #[serde(skip)]
    closed_s: Vec<f64>,
    /// Ended some other way (the honest peer crashed).
    pub ended_otherwise: u64,
    /// Whether the engine measured `max_queued_to`.
    pub queues_measured: bool,
    /// The most bytes an honest peer had queued to send on one connection to an attacker.
    pub max_queued_to: u64,
    /// The most bytes an attacker had queued on one connection.
    pub max_queued_by: u64,
    /// Bytes the attackers sent.
    pub bytes_sent: u64,
    /// Bytes the attackers received.
    pub bytes_received: u64,
}

impl AttackReport {
    /// The report of `a`; `uninterested` tells, for an open connection's age and honest peer
    /// (index), whether it passes as one to a peer not interested.
    fn new(
        attack: &str,
        a: &AttackOutcome,
        uninterested: impl Fn(u64, usize) -> bool,
    ) -> AttackReport {
        let spared: Vec<bool> = a
            .open_micros
            .iter()
            .zip(&a.open_honest)
            .map(|(age, honest)| uninterested(*age, *honest))
            .collect();
        let closed_total: u64 = a.closed.values().sum();
        let closed_clean = a
            .closed
            .iter()
            .filter(|(name, _)| CLEAN_CLOSES.contains(&name.as_str()))
            .map(|(_, n)| n)
            .sum();
        AttackReport {
            attack: attack.to_owned(),
            connections: a.connections,
            closed: a.closed.clone(),
            closed_total,
            closed_clean,
            close_s: Spread::of(a.close_micros.iter().map(|m| *m as f64 / 1e6).collect()),
            open_at_end: a.open_micros.len() as u64,
            open_oldest_s: a.open_micros.iter().max().map(|m| *m as f64 / 1e6),
            open_uninterested: spared.iter().filter(|s| **s).count() as u64,
            open_s: a
                .open_micros
                .iter()
                .zip(&spared)
                .filter(|(_, s)| !**s)
                .map(|(m, _)| *m as f64 / 1e6)
                .collect(),
            closed_s: a.close_micros.iter().map(|m| *m as f64 / 1e6).collect(),
            ended_otherwise: a
                .connections
                .saturating_sub(closed_total + a.open_micros.len() as u64),
            queues_measured: a.queues_measured,
            max_queued_to: a.max_queued_to,
            max_queued_by: a.max_queued_by,
            bytes_sent: a.bytes_sent,
            bytes_received: a.bytes_received,
        }
    }

    /// Whether every connection was closed by the honest side for a reason that is a verdict,
    /// within `within` seconds if given (then one still open at the end for less than that is
    /// pending, not a failure), and at least one was.
    fn all_closed(&self, within: Option<f64>) -> bool {
        let pending = self
            .open_s
            .iter()
            .filter(|age| within.is_some_and(|w| **age < w))
            .count() as u64;
        let late = within.is_some_and(|w| self.closed_s.iter().any(|t| *t > w));
        self.closed_total > 0
            && self.closed_total + pending + self.open_uninterested == self.connections
            && self.closed_clean == 0
            && !late
    }

    /// One line: connections, how they ended, the time to close, the queues.
    fn summary(&self) -> String {
        let reasons: Vec<String> = self
            .closed
            .iter()
            .map(|(name, n)| format!("{name} {n}"))
            .collect();
        let mut line = format!(
            "{}: {}/{} closed by the honest side",
            self.attack, self.closed_total, self.connections
        );
        if let Some(t) = self.close_s {
            let _ = write!(line, " in {:.2} / {:.2} / {:.2} s", t.min, t.median, t.max);
        }
        if !reasons.is_empty() {
            let _ = write!(line, " ({})", reasons.join(", "));
        }
        let _ = write!(line, ", {} open at the end", self.open_at_end);
        if let Some(oldest) = self.open_oldest_s {
            let _ = write!(line, " (the oldest for {oldest:.1} s)");
        }
        if self.open_uninterested > 0 {
            let _ = write!(
                line,
                ", {} of them to peers not interested",
                self.open_uninterested
            );
        }
        if self.ended_otherwise > 0 {
            let _ = write!(line, ", {} ended otherwise", self.ended_otherwise);
        }
        line
    }
}

/// The swarm's figures.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Totals {
    /// Peers in the scenario.
    pub peers: u32,
    /// The torrent's size in bytes.
    pub torrent_bytes: u64,
    /// Block bytes uploaded by everyone.
    pub uploaded: u64,
    /// Block bytes uploaded by seeders.
    pub seeders_uploaded: u64,
    /// Seeders' share of all uploads, 0 to 1.
    pub seeders_share: f64,
    /// Simulated seconds the run lasted.
    pub sim_seconds: f64,
    /// Wall-clock seconds it took.
    pub wall_seconds: f64,
    /// Simulated seconds per wall-clock second.
    pub speed: f64,
    /// Events handled.
    pub events: u64,
    /// Announces the trackers answered.
    pub announces: u64,
    /// New peers learned through PEX by the honest peers, in all.
    pub pex_learned: u64,
    /// New peers found through the DHT by the honest peers, in all.
    pub dht_peers: u64,
    /// DHT lookups (announces) the peers finished, in all.
    pub dht_lookups: u64,
    /// DHT datagrams sent, by the peers and the bootstrap nodes.
    pub dht_datagrams: u64,
    /// Of those, sent by the bootstrap nodes.
    pub dht_bootstrap_datagrams: u64,
    /// Hash of the ordered event stream, 16 hex digits.
    pub fingerprint: String,
}

/// One expectation and whether it held.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What was expected.
    pub name: String,
    /// Whether it held.
    pub passed: bool,
    /// What was measured.
    pub detail: String,
}

/// Everything `btsim run` prints.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// The scenario file.
    pub scenario: String,
    /// The engine that ran.
    pub engine: EngineKind,
    /// The seed that ran.
    pub seed: u64,
    /// The torrent's info hash, 40 hex digits: the same on both engines for the same scenario
    /// and seed.
    pub info_hash: String,
    /// Whether every check held.
    pub passed: bool,
    /// Group by group.
    pub groups: Vec<GroupReport>,
    /// The swarm.
    pub totals: Totals,
    /// Expectations (and safety) with their verdicts.
    pub checks: Vec<Check>,
    /// Safety violations, the first few word for word.
    pub violations: Vec<String>,
    /// All safety violations.
    pub violation_count: u64,
    /// Connections closed, by reason.
    pub close_reasons: BTreeMap<String, u64>,
    /// Events handled, by kind.
    pub event_counts: BTreeMap<String, u64>,
    /// Engine-specific counts (connections at the end, ...).
    pub diagnostics: BTreeMap<String, u64>,
    /// The command that replays this run.
    pub reproduce: String,
    /// Connections by transport and the uplink queues (`None` when no group uses uTP and no
    /// queue was modelled).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transport: Option<crate::transport::TransportReport>,
}

fn secs(t: Instant) -> f64 {
    t.as_micros() as f64 / 1e6
}

/// Seconds from `a` to `b`, exact to the microsecond.
/// The share of what `hosts` received that seeders sent; `None` if any of them was not observed
/// or they received nothing.
fn from_seeders(hosts: &[&HostOutcome]) -> Option<f64> {
    let (mut received, mut seeders) = (0u64, 0u64);
    for h in hosts {
        let s = h.sources?;
        received += s.received;
        seeders += s.from_seeders;
    }
    (received > 0).then(|| seeders as f64 / received as f64)
}

fn secs_between(a: Instant, b: Instant) -> f64 {
    b.as_micros().saturating_sub(a.as_micros()) as f64 / 1e6
}

/// Whether a peer is one that `all_complete_by` waits for: a leecher, not corrupt, running at the
/// end or stopped at its seeding goal (which it reaches only once complete).
fn should_complete(scenario: &Scenario, h: &HostOutcome) -> bool {
    let g = &scenario.groups[h.group];
    g.role == Role::Leecher
        && g.behaviour != Behaviour::Corrupt
        && matches!(h.end, HostEnd::Running | HostEnd::SeedGoal)
}

impl Report {
    /// Judges `outcome` of `scenario` (read from `file`), which took `wall` to run.
    pub fn new(file: &str, scenario: &Scenario, outcome: &Outcome, wall: Duration) -> Report {
        let size = scenario.torrent.size();
        let groups: Vec<GroupReport> = scenario
            .groups
            .iter()
            .enumerate()
            .map(|(g, spec)| {
                let indexed: Vec<(usize, &HostOutcome)> = outcome
                    .hosts
                    .iter()
                    .enumerate()
                    .filter(|(_, h)| h.group == g)
                    .collect();
                let first = indexed.first().map_or(0, |(i, _)| *i);
                let hosts: Vec<&HostOutcome> = indexed.iter().map(|(_, h)| *h).collect();
                let count = |end: HostEnd| hosts.iter().filter(|h| h.end == end).count() as u32;
                let leecher = spec.role == Role::Leecher;
                let times: Vec<f64> = hosts
                    .iter()
                    .filter(|_| leecher)
                    .filter_map(|h| Some(secs_between(h.joined_at?, h.completed_at?)))
                    .collect();
                let magnet_times: Vec<f64> = hosts
                    .iter()
                    .filter(|_| spec.magnet)
                    .filter_map(|h| Some(secs_between(h.joined_at?, h.metadata_at?)))
                    .collect();
                let (conns, rc4) = outcome
                    .encryption
                    .counts(|h| outcome.hosts.get(h).is_some_and(|o| o.group == g));
                let encrypting = spec.encryption.is_some();
                GroupReport {
                    reader: crate::streaming::ReaderReport::new(spec, &hosts),
                    from_seeders: leecher.then(|| from_seeders(&hosts)).flatten(),
                    encryption: spec.encryption.map(crate::scenario::encryption_name),
                    connections_rc4: encrypting.then_some(rc4),
                    connections_plaintext: encrypting.then_some(conns - rc4),
                    seed_goal: SeedGoalReport::new(spec, &indexed, first),
                    magnets_resolved: spec.magnet.then_some(magnet_times.len() as u32),
                    magnet_s: Spread::of(magnet_times),
                    pex_learned: hosts.iter().map(|h| h.pex_learned).sum(),
                    dht_peers: hosts.iter().map(|h| h.dht_peers).sum(),
                    dht_lookups: hosts.iter().map(|h| h.dht_lookups).sum(),
                    dht_datagrams: hosts.iter().map(|h| h.dht_datagrams).sum(),
                    name: spec.name.clone(),
                    role: spec.role,
                    peers: spec.count,
                    joined: hosts.iter().filter(|h| h.joined_at.is_some()).count() as u32,
                    completed: times.len() as u32,
                    crashed: count(HostEnd::Crashed),
                    left: count(HostEnd::Left),
                    completion_s: Spread::of(times),
                    uploaded: hosts.iter().map(|h| h.uploaded).sum(),
                    downloaded: hosts.iter().map(|h| h.downloaded).sum(),
                    hash_failures: hosts.iter().map(|h| h.hash_failures).sum(),
                    bans_issued: hosts.iter().map(|h| h.bans_issued).sum(),
                    banned_by: hosts.iter().map(|h| h.banned_by).sum(),
                    closes: outcome.group_closes.get(g).cloned().unwrap_or_default(),
                    attack: match (spec.attack, outcome.attacks.get(g)) {
                        (Some(attack), Some(Some(a))) => {
                            let judged =
                                scenario.expect.attackers_closed_if_interested.contains(&g);
                            let within = scenario.expect.attackers_close_within;
                            let end = outcome.sim_time.as_micros();
                            // Not interested: the honest peer had every piece (a seeder, or a
                            // leecher that completed) by the end of the close window.
                            let uninterested = |age: u64, honest: usize| {
                                let (Some(w), Some(h)) = (within, outcome.hosts.get(honest)) else {
                                    return false;
                                };
                                let opened = end.saturating_sub(age);
                                judged
                                    && h.completed_at.is_some_and(|c| {
                                        c.as_micros() <= opened + w.as_micros() as u64
                                    })
                            };
                            Some(AttackReport::new(attack.name(), a, uninterested))
                        }
                        _ => None,
                    },
                }
            })
            .collect();
        let uploaded: u64 = groups.iter().map(|g| g.uploaded).sum();
        let seeders_uploaded: u64 = groups
            .iter()
            .filter(|g| g.role == Role::Seeder)
            .map(|g| g.uploaded)
            .sum();
        let sim_seconds = secs(outcome.sim_time);
        let boot_datagrams = outcome
            .diagnostics
            .get("dht_bootstrap_datagrams")
            .copied()
            .unwrap_or(0);
        let wall_seconds = wall.as_secs_f64();
        let totals = Totals {
            peers: scenario.host_count(),
            torrent_bytes: size,
            uploaded,
            seeders_uploaded,
            seeders_share: if uploaded == 0 {
                0.0
            } else {
                seeders_uploaded as f64 / uploaded as f64
            },
            sim_seconds,
            wall_seconds,
            speed: sim_seconds / wall_seconds.max(1e-9),
            events: outcome.events,
            announces: outcome.announces,
            pex_learned: groups
                .iter()
                .filter(|g| g.role != Role::Attacker)
                .map(|g| g.pex_learned)
                .sum(),
            dht_peers: groups
                .iter()
                .filter(|g| g.role != Role::Attacker)
                .map(|g| g.dht_peers)
                .sum(),
            dht_lookups: groups.iter().map(|g| g.dht_lookups).sum(),
            dht_datagrams: groups.iter().map(|g| g.dht_datagrams).sum::<u64>() + boot_datagrams,
            dht_bootstrap_datagrams: boot_datagrams,
            fingerprint: format!("{:016x}", outcome.fingerprint),
        };

        let mut checks = Vec::new();
        let expect = &scenario.expect;
        if let Some(by) = expect.all_complete_by {
            let by_s = by.as_secs_f64();
            let waited: Vec<(usize, &HostOutcome)> = outcome
                .hosts
                .iter()
                .enumerate()
                .filter(|(_, h)| should_complete(scenario, h))
                .collect();
            let late: Vec<String> = waited
                .iter()
                .filter(|(_, h)| h.completed_at.is_none_or(|t| secs(t) > by_s))
                .map(|(i, h)| {
                    let g = &scenario.groups[h.group];
                    let first = outcome
                        .hosts
                        .iter()
                        .position(|o| o.group == h.group)
                        .unwrap_or(0);
                    match h.completed_at {
                        Some(t) => format!("{}#{} at {:.1} s", g.name, i - first, secs(t)),
                        None => format!(
                            "{}#{} has {}/{} pieces",
                            g.name,
                            i - first,
                            h.pieces,
                            scenario.torrent.layout().piece_count()
                        ),
                    }
                })
                .collect();
            let last = waited
                .iter()
                .filter_map(|(_, h)| h.completed_at)
                .max()
                .map_or(0.0, secs);
            let done = waited.len() - late.len();
            let mut detail = format!("{done}/{} complete, the last at {last:.1} s", waited.len());
            if !late.is_empty() {
                let shown: Vec<&str> = late.iter().take(5).map(String::as_str).collect();
                let _ = write!(detail, "; not in time: {}", shown.join(", "));
                if late.len() > 5 {
                    let _ = write!(detail, " and {} more", late.len() - 5);
                }
            }
            checks.push(Check {
                name: format!("all complete by {by_s} s"),
                passed: late.is_empty(),
                detail,
            });
        }
        if let Some(within) = expect.magnets_resolved_within {
            checks.push(magnets_check(scenario, outcome, within));
        }
        if expect.seed_goals_reached {
            let goals: Vec<&SeedGoalReport> =
                groups.iter().filter_map(|g| g.seed_goal.as_ref()).collect();
            let joined: u32 = goals.iter().map(|g| g.joined).sum();
            let reached: u32 = goals.iter().map(|g| g.reached).sum();
            let missing: Vec<&str> = goals
                .iter()
                .flat_map(|g| g.not_reached.iter().map(String::as_str))
                .take(5)
                .collect();
            let mut detail = format!("{reached}/{joined} reached their goal and stopped");
            if !missing.is_empty() {
                let _ = write!(detail, "; not: {}", missing.join(", "));
                if joined - reached > missing.len() as u32 {
                    let _ = write!(
                        detail,
                        " and {} more",
                        joined - reached - missing.len() as u32
                    );
                }
            }
            checks.push(Check {
                name: "seed goals reached".into(),
                passed: reached == joined && joined > 0,
                detail,
            });
        }
        if let Some(n) = expect.pex_learned_at_least {
            let by_group: Vec<String> = groups
                .iter()
                .filter(|g| g.role != Role::Attacker && g.pex_learned > 0)
                .map(|g| format!("{} {}", g.name, g.pex_learned))
                .collect();
            checks.push(Check {
                name: format!("PEX taught at least {n} peers"),
                passed: totals.pex_learned >= n,
                detail: format!(
                    "{} new peers learned through PEX ({})",
                    totals.pex_learned,
                    if by_group.is_empty() {
                        "none".to_owned()
                    } else {
                        by_group.join(", ")
                    }
                ),
            });
        }
        if let Some(n) = expect.dht_peers_found_at_least {
            let by_group: Vec<String> = groups
                .iter()
                .filter(|g| g.role != Role::Attacker && g.dht_peers > 0)
                .map(|g| format!("{} {}", g.name, g.dht_peers))
                .collect();
            checks.push(Check {
                name: format!("the DHT found at least {n} peers"),
                passed: totals.dht_peers >= n,
                detail: format!(
                    "{} new peers found through the DHT ({}) in {} lookups",
                    totals.dht_peers,
                    if by_group.is_empty() {
                        "none".to_owned()
                    } else {
                        by_group.join(", ")
                    },
                    totals.dht_lookups
                ),
            });
        }
        if let Some(by) = expect.dht_lookups_done_by {
            checks.push(dht_lookups_check(scenario, outcome, by));
        }
        if expect.no_corrupt_piece_kept {
            let kept: u64 = outcome.hosts.iter().map(|h| h.corrupt_pieces_kept).sum();
            let failures: u64 = groups.iter().map(|g| g.hash_failures).sum();
            checks.push(Check {
                name: "no corrupt piece kept".into(),
                passed: kept == 0,
                detail: format!(
                    "{kept} kept; {failures} pieces failed their hash check and were fetched again"
                ),
            });
        }
        if let Some(x) = expect.seeder_upload_at_most {
            let times = seeders_uploaded as f64 / size as f64;
            checks.push(Check {
                name: format!("seeders upload at most {x} × the torrent"),
                passed: times <= x,
                detail: format!(
                    "{times:.2} × ({} of {})",
                    format_bytes(seeders_uploaded),
                    format_bytes(size)
                ),
            });
        }
        if expect.corrupt_peers_banned {
            let corrupt: Vec<&HostOutcome> = outcome
                .hosts
                .iter()
                .filter(|h| {
                    scenario.groups[h.group].behaviour == Behaviour::Corrupt
                        && h.joined_at.is_some()
                })
                .collect();
            let banned = corrupt.iter().filter(|h| h.banned_by > 0).count();
            checks.push(Check {
                name: "corrupt peers banned".into(),
                passed: banned == corrupt.len(),
                detail: format!("{banned}/{} banned by at least one peer", corrupt.len()),
            });
        }
        if expect.no_honest_peer_banned {
            let honest: Vec<(usize, &HostOutcome)> = outcome
                .hosts
                .iter()
                .enumerate()
                .filter(|(_, h)| {
                    let g = &scenario.groups[h.group];
                    g.behaviour != Behaviour::Corrupt && g.role != Role::Attacker
                })
                .collect();
            let banned: Vec<String> = honest
                .iter()
                .filter(|(_, h)| h.banned_by > 0)
                .map(|(i, h)| {
                    let first = outcome
                        .hosts
                        .iter()
                        .position(|o| o.group == h.group)
                        .unwrap_or(0);
                    format!(
                        "{}#{} by {}",
                        scenario.groups[h.group].name,
                        i - first,
                        h.banned_by
                    )
                })
                .collect();
            let shown: Vec<&str> = banned.iter().take(5).map(String::as_str).collect();
            checks.push(Check {
                name: "no honest peer banned".into(),
                passed: banned.is_empty(),
                detail: if banned.is_empty() {
                    format!("0 of {} banned", honest.len())
                } else {
                    format!(
                        "{} of {} banned: {}{}",
                        banned.len(),
                        honest.len(),
                        shown.join(", "),
                        if banned.len() > 5 { ", ..." } else { "" }
                    )
                },
            });
        }
        if !expect.attackers_closed.is_empty() {
            let within = expect.attackers_close_within.map(|w| w.as_secs_f64());
            let attacks: Vec<&AttackReport> = expect
                .attackers_closed
                .iter()
                .filter_map(|g| groups.get(*g).and_then(|r| r.attack.as_ref()))
                .collect();
            let failed: Vec<String> = attacks
                .iter()
                .filter(|a| !a.all_closed(within))
                .map(|a| a.summary())
                .collect();
            let names: Vec<&str> = attacks.iter().map(|a| a.attack.as_str()).collect();
            let within_text = within.map_or(String::new(), |w| format!(" within {w} s"));
            checks.push(Check {
                name: format!("attackers closed{within_text} ({})", names.join(", ")),
                passed: failed.is_empty() && attacks.len() == expect.attackers_closed.len(),
                detail: if failed.is_empty() {
                    let n: u64 = attacks.iter().map(|a| a.closed_total).sum();
                    let spared: u64 = attacks.iter().map(|a| a.open_uninterested).sum();
                    let pending: u64 = attacks.iter().map(|a| a.open_at_end).sum::<u64>() - spared;
                    let mut detail = format!(
                        "{n} connections closed by the honest side with a reason; \
                         {pending} opened too late to tell"
                    );
                    if spared > 0 {
                        let _ = write!(
                            detail,
                            "; {spared} open to peers not interested (by design)"
                        );
                    }
                    detail
                } else {
                    format!("not all: {}", failed.join("; "))
                },
            });
        }
        for (&g, allowed) in &expect.attack_reasons {
            let Some(a) = groups.get(g).and_then(|r| r.attack.as_ref()) else {
                continue;
            };
            let other: Vec<String> = a
                .closed
                .iter()
                .filter(|(name, _)| !allowed.contains(name))
                .map(|(name, n)| format!("{name} {n}"))
                .collect();
            let seen: Vec<String> = a
                .closed
                .iter()
                .map(|(name, n)| format!("{name} {n}"))
                .collect();
            checks.push(Check {
                name: format!(
                    "{} closed only with {}",
                    groups[g].name,
                    allowed.join(" or ")
                ),
                passed: other.is_empty() && a.closed_total > 0,
                detail: if other.is_empty() {
                    format!("closed: {}", seen.join(", "))
                } else {
                    format!("also: {}", other.join(", "))
                },
            });
        }
        checks.extend(crate::encryption::checks(scenario, outcome));
        checks.extend(crate::transport::checks(scenario, outcome));
        checks.extend(crate::streaming::checks(scenario, &outcome.hosts));
        if let Some(bound) = expect.queued_to_attackers_at_most {
            let attacks: Vec<&AttackReport> =
                groups.iter().filter_map(|g| g.attack.as_ref()).collect();
            let most = attacks.iter().map(|a| a.max_queued_to).max().unwrap_or(0);
            let measured = attacks.iter().all(|a| a.queues_measured);
            let name = format!(
                "honest peers queue at most {} to an attacker",
                format_bytes(bound)
            );
            // Said, not judged, where the engine cannot see the queues.
            checks.push(if measured {
                Check {
                    name,
                    passed: most <= bound,
                    detail: format!("the most on one connection: {}", format_bytes(most)),
                }
            } else {
                Check {
                    name,
                    passed: true,
                    detail: format!(
                        "not measured by the {} engine (the runtime's queues are inside its tasks)",
                        outcome.engine.name()
                    ),
                }
            });
        }
        checks.push(Check {
            name: "safety observers".into(),
            passed: outcome.violation_count == 0,
            detail: if outcome.violation_count == 0 {
                "no violation".into()
            } else {
                format!("{} violations", outcome.violation_count)
            },
        });
        let passed = checks.iter().all(|c| c.passed);
        Report {
            scenario: file.to_owned(),
            engine: outcome.engine,
            seed: outcome.seed,
            info_hash: outcome.info_hash.to_hex(),
            passed,
            groups,
            totals,
            checks,
            violations: outcome.violations.clone(),
            violation_count: outcome.violation_count,
            close_reasons: outcome.close_reasons.clone(),
            event_counts: outcome.event_counts.clone(),
            diagnostics: outcome.diagnostics.clone(),
            reproduce: reproduce(file, outcome.seed, outcome.engine, scenario.engine),
            transport: crate::transport::TransportReport::new(scenario, outcome),
        }
    }

    /// The report for people.
    pub fn human(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "btsim: {}, seed {}, {} engine",
            self.scenario,
            self.seed,
            self.engine.name()
        );
        let _ = writeln!(
            out,
            "{:<14} {:<7} {:>6} {:>6}  {:<26} {:>10} {:>10} {:>6} {:>5}",
            "group",
            "role",
            "peers",
            "done",
            "completion s min/med/max",
            "up",
            "down",
            "hashf",
            "bans"
        );
        for g in &self.groups {
            let done = match g.role {
                Role::Seeder | Role::Attacker => "-".to_owned(),
                Role::Leecher => g.completed.to_string(),
            };
            let completion = g.completion_s.map_or("-".to_owned(), |s| {
                format!("{:.1} / {:.1} / {:.1}", s.min, s.median, s.max)
            });
            let role = match g.role {
                Role::Seeder => "seeder",
                Role::Leecher => "leecher",
                Role::Attacker => "attacker",
            };
            let _ = writeln!(
                out,
                "{:<14} {:<7} {:>6} {:>6}  {:<26} {:>10} {:>10} {:>6} {:>5}",
                g.name,
                role,
                g.peers,
                done,
                completion,
                format_bytes(g.uploaded),
                format_bytes(g.downloaded),
                g.hash_failures,
                g.bans_issued
            );
            let mut notes = Vec::new();
            if g.joined < g.peers {
                notes.push(format!("{} never joined", g.peers - g.joined));
            }
            if g.crashed > 0 {
                notes.push(format!("{} crashed at the end", g.crashed));
            }
            if g.left > 0 {
                notes.push(format!("{} left", g.left));
            }
            if g.banned_by > 0 {
                notes.push(format!("banned {} times by others", g.banned_by));
            }
            if let Some(resolved) = g.magnets_resolved {
                let mut note = format!("magnets: {resolved}/{} had the metadata", g.joined);
                if let Some(m) = g.magnet_s {
                    let _ = write!(
                        note,
                        " in {:.2} / {:.2} / {:.2} s from joining",
                        m.min, m.median, m.max
                    );
                }
                notes.push(note);
            }
            if g.pex_learned > 0 {
                notes.push(format!("learned {} peers through PEX", g.pex_learned));
            }
            if let (Some(policy), Some(rc4), Some(plain)) =
                (g.encryption, g.connections_rc4, g.connections_plaintext)
            {
                notes.push(format!(
                    "encryption {policy}: {rc4} connections RC4, {plain} plaintext"
                ));
            }
            if g.dht_lookups > 0 || g.dht_datagrams > 0 {
                notes.push(format!(
                    "DHT: found {} peers in {} lookups, {} datagrams sent",
                    g.dht_peers,
                    format_count(g.dht_lookups),
                    format_count(g.dht_datagrams)
                ));
            }
            if !notes.is_empty() {
                let _ = writeln!(out, "{:<14} ({})", "", notes.join(", "));
            }
            if let Some(a) = &g.attack {
                let _ = writeln!(out, "{:<14} {}", "", a.summary());
            }
            if let Some(goal) = &g.seed_goal {
                let _ = writeln!(out, "{:<14} {}", "", goal.summary());
            }
            if let Some(reader) = &g.reader {
                let _ = writeln!(out, "{:<14} {}", "", reader.summary());
            }
            if let Some(a) = g.attack.as_ref().filter(|a| a.queues_measured) {
                let _ = writeln!(
                    out,
                    "{:<14} queued: honest peers at most {} on one connection to it, it at most {}",
                    "",
                    format_bytes(a.max_queued_to),
                    format_bytes(a.max_queued_by)
                );
            }
        }
        let t = &self.totals;
        let _ = writeln!(
            out,
            "swarm: {} peers, {} torrent; seeders uploaded {:.0}% of {} ({:.2} × the torrent)",
            format_count(u64::from(t.peers)),
            format_bytes(t.torrent_bytes),
            t.seeders_share * 100.0,
            format_bytes(t.uploaded),
            t.seeders_uploaded as f64 / t.torrent_bytes as f64
        );
        let shares: Vec<String> = self
            .groups
            .iter()
            .filter_map(|g| Some(format!("{} {:.0}%", g.name, g.from_seeders? * 100.0)))
            .collect();
        if !shares.is_empty() {
            let _ = writeln!(
                out,
                "from the seeders: {} of what each leecher group downloaded",
                shares.join(", ")
            );
        }
        if t.dht_datagrams > 0 {
            let _ = writeln!(
                out,
                "dht: {} peers found in {} lookups; {} datagrams ({} from the bootstrap nodes)",
                format_count(t.dht_peers),
                format_count(t.dht_lookups),
                format_count(t.dht_datagrams),
                format_count(t.dht_bootstrap_datagrams)
            );
        }
        let _ = writeln!(
            out,
            "run: {:.1} s simulated in {:.2} s wall ({:.0}× real time), {} events, {} announces, fingerprint {}",
            t.sim_seconds,
            t.wall_seconds,
            t.speed,
            format_count(t.events),
            format_count(t.announces),
            t.fingerprint
        );
        if let Some(t) = &self.transport {
            for line in t.human() {
                let _ = writeln!(out, "{line}");
            }
        }
        for c in &self.checks {
            let _ = writeln!(
                out,
                "{} {}: {}",
                if c.passed { "ok  " } else { "FAIL" },
                c.name,
                c.detail
            );
        }
        for v in &self.violations {
            let _ = writeln!(out, "     {v}");
        }
        if self.violation_count > self.violations.len() as u64 {
            let _ = writeln!(
                out,
                "     ... and {} more",
                self.violation_count - self.violations.len() as u64
            );
        }
        if self.passed {
            let _ = writeln!(out, "PASS");
        } else {
            let _ = writeln!(out, "FAIL; reproduce with: {}", self.reproduce);
        }
        out
    }
}

/// The `dht_lookups_done_by` check: every honest peer with a DHT node that joined had its first
/// lookup finished by `by`.
fn dht_lookups_check(scenario: &Scenario, outcome: &Outcome, by: Duration) -> Check {
    let by_s = by.as_secs_f64();
    let nodes: Vec<(usize, &HostOutcome)> = outcome
        .hosts
        .iter()
        .enumerate()
        .filter(|(_, h)| {
            let g = &scenario.groups[h.group];
            g.dht && g.role != Role::Attacker && h.joined_at.is_some()
        })
        .collect();
    let late: Vec<String> = nodes
        .iter()
        .filter(|(_, h)| h.dht_first_lookup_at.is_none_or(|t| secs(t) > by_s))
        .map(|(i, h)| {
            let g = &scenario.groups[h.group];
            let first = outcome
                .hosts
                .iter()
                .position(|o| o.group == h.group)
                .unwrap_or(0);
            match h.dht_first_lookup_at {
                Some(t) => format!("{}#{} at {:.1} s", g.name, i - first, secs(t)),
                None => format!("{}#{} never", g.name, i - first),
            }
        })
        .collect();
    let last = nodes
        .iter()
        .filter_map(|(_, h)| h.dht_first_lookup_at)
        .max()
        .map_or(0.0, secs);
    let mut detail = format!(
        "{}/{} nodes finished a lookup, the last first one at {last:.1} s",
        nodes.len() - late.len(),
        nodes.len()
    );
    if !late.is_empty() {
        let shown: Vec<&str> = late.iter().take(5).map(String::as_str).collect();
        let _ = write!(detail, "; not in time: {}", shown.join(", "));
        if late.len() > 5 {
            let _ = write!(detail, " and {} more", late.len() - 5);
        }
    }
    Check {
        name: format!("DHT lookups done by {by_s} s"),
        passed: late.is_empty() && !nodes.is_empty(),
        detail,
    }
}

/// The `magnets_resolved_within` check: every magnet peer that joined had its metadata within
/// `within` of joining.
fn magnets_check(scenario: &Scenario, outcome: &Outcome, within: Duration) -> Check {
    let within_s = within.as_secs_f64();
    let magnets: Vec<(usize, &HostOutcome)> = outcome
        .hosts
        .iter()
        .enumerate()
        .filter(|(_, h)| scenario.groups[h.group].magnet && h.joined_at.is_some())
        .collect();
    let mut slowest = 0.0f64;
    let late: Vec<String> = magnets
        .iter()
        .filter_map(|(i, h)| {
            let joined = h.joined_at?;
            let first = outcome
                .hosts
                .iter()
                .position(|o| o.group == h.group)
                .unwrap_or(0);
            let name = format!("{}#{}", scenario.groups[h.group].name, i - first);
            match h.metadata_at {
                Some(at) => {
                    let took = secs_between(joined, at);
                    slowest = slowest.max(took);
                    (took > within_s).then(|| format!("{name} after {took:.2} s"))
                }
                None => Some(format!("{name} never")),
            }
        })
        .collect();
    let resolved = magnets
        .iter()
        .filter(|(_, h)| h.metadata_at.is_some())
        .count();
    let mut detail = format!(
        "{resolved}/{} had the metadata, the slowest {slowest:.2} s after joining",
        magnets.len()
    );
    if !late.is_empty() {
        let shown: Vec<&str> = late.iter().take(5).map(String::as_str).collect();
        let _ = write!(detail, "; not in time: {}", shown.join(", "));
        if late.len() > 5 {
            let _ = write!(detail, " and {} more", late.len() - 5);
        }
    }
    Check {
        name: format!("magnets resolved within {within_s} s"),
        passed: late.is_empty() && !magnets.is_empty(),
        detail,
    }
}

/// The command that replays a run: the file, the seed, and the engine when it differs from the
/// file's.
pub fn reproduce(file: &str, seed: u64, engine: EngineKind, file_engine: EngineKind) -> String {
    let quoted = if file.contains(|c: char| c.is_whitespace() || "'\"$`\\".contains(c)) {
        format!("'{}'", file.replace('\'', "'\\''"))
    } else {
        file.to_owned()
    };
    let mut cmd = format!("btsim run {quoted} --seed {seed}");
    if engine != file_engine {
        let _ = write!(cmd, " --engine {}", engine.name());
    }
    cmd
}
