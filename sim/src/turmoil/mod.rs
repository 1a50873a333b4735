//! The turmoil engine: every simulated peer is a turmoil host running the runtime's real driver
//! over [`net::TurmoilNet`] and an in-memory [`bt_runtime::storage::MemStorage`], with disk work
//! inline so a run is a pure function of its seed.
//!
//! What is real: the driver (`bt_runtime::driver::Driver`, the code `bt get` runs: its tasks,
//! channels, timers, dialling, announcer, backpressure), the tracker
//! (`bt_runtime::trackerd::Trackerd` serving the protocol's tracker over HTTP or UDP, one host
//! per `[[tracker]]`), and turmoil's TCP and UDP with the link's latency. What is modelled on top
//! ([`pace`]): each host's upload and download bandwidth, and TCP loss as retransmission delays.
//!
//! The run: hosts join at their join times (registered with turmoil then, since turmoil's cost
//! per step grows with the hosts registered), faults fire between steps (a `pause` or `resume`
//! is a command sent to each running driver's channel, taken in the host's next step; see
//! `peer.rs`), and the engine steps
//! turmoil one tick ([`tick`]) at a time until every leecher that should complete has, every
//! group has joined and every fault has fired, or until the scenario's duration. Peers' reports
//! and the disk observers feed the engine's shared state (`peer.rs`) as they happen; the
//! fingerprint hashes them in the order turmoil runs its hosts, which is fixed.
//!
//! Determinism: turmoil's RNG is seeded from the scenario's seed and its epoch is fixed; the
//! driver takes its seed (hence its peer id) from the engine; every `select!` in the runtime is
//! `biased;`; the runtime reads time only through tokio, which turmoil drives; disk work is
//! inline. Nothing fed to the fingerprint depends on wall time or addresses in memory.
//!
//! Bounds: at most [`MAX_HOSTS`] hosts (peers, trackers, DHT bootstrap nodes); the run stops at the scenario's
//! duration; progress every [`PROGRESS_EVERY`] steps; a `pause` or `resume` fault puts at most
//! one command on each driver's bounded channel (`bt_runtime::driver::COMMAND_QUEUE`), never
//! waiting: a full channel is a violation.

mod attacker;
mod dht;
pub mod net;
pub mod pace;
mod peer;
pub mod tap;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use bt_protocol::metainfo::Metainfo;
use bt_protocol::rng::Rng;
use bt_protocol::time::Instant;
use bt_protocol::tracker::{AnnouncerConfig, TrackerConfig, TrackerServer};
use bt_runtime::storage::MemStorage;
use bt_runtime::trackerd::Trackerd;

use crate::engine::{HostEnd, HostOutcome, Outcome, Progress, RunError};
use crate::scenario::{Behaviour, EngineKind, FaultAction, Role, Scenario, TrackerKind};
use crate::trace::Kind;

use net::TurmoilNet;
use peer::{Ctx, Life, PAUSE_TAKEN_WITHIN, PORT, Shared, SimDisk};

/// Most hosts (peers, trackers, DHT bootstrap nodes) the engine runs: turmoil's cost per step grows with the
/// cube of the hosts (every host's delivery walks every link).
pub const MAX_HOSTS: u32 = 200;

/// The shortest and longest simulated time per turmoil step ([`tick`]).
pub const TICK_RANGE: (Duration, Duration) = (Duration::from_millis(1), Duration::from_millis(5));

/// Simulated time per turmoil step for a link of one-way `latency`: an eighth of it in whole
/// milliseconds, within [`TICK_RANGE`]. Turmoil hands messages over only between steps, so a
/// delivery waits up to one tick more than its latency; timers inside a host fire at their
/// exact times whatever the tick. Every step costs the same whatever happens in it (turmoil
/// walks every link for every host), so the tick sets the engine's speed.
pub fn tick(latency: Duration) -> Duration {
    let ms = (latency.as_millis() / 8) as u64;
    Duration::from_millis(ms).clamp(TICK_RANGE.0, TICK_RANGE.1)
}

/// Progress is reported every this many steps.
pub const PROGRESS_EVERY: u64 = 1000;

/// The HTTP tracker's port.
const HTTP_PORT: u16 = 80;
/// The UDP tracker's port.
const UDP_PORT: u16 = 6969;

/// The turmoil host name of tracker `index`.
fn tracker_name(index: usize) -> String {
    format!("tracker{index}")
}

/// The URL peers announce to for tracker `index` (turmoil resolves the name).
fn tracker_url(index: usize, kind: TrackerKind) -> String {
    match kind {
        TrackerKind::Http => format!("http://{}:{HTTP_PORT}/announce", tracker_name(index)),
        TrackerKind::Udp => format!("udp://{}:{UDP_PORT}/announce", tracker_name(index)),
    }
}

/// The torrent of `scenario`, its content generated from `content_seed`
/// ([`bt_protocol::content::torrent`] of [`crate::scenario::TorrentSpec::content_spec`]): the
/// torrent the fast engine builds for the same scenario and seed, which the peers' in-memory
/// storage ([`MemStorage`]) holds.
fn torrent(scenario: &Scenario, content_seed: u64) -> Result<Metainfo, String> {
    bt_protocol::content::torrent(content_seed, &scenario.torrent.content_spec()?)
        .map_err(|e| format!("cannot build the torrent's info dictionary: {e}"))
}

/// Runs `scenario` with `seed` on turmoil. See the module docs.
pub fn run(
    scenario: &Scenario,
    seed: u64,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Outcome, RunError> {
    run_with(scenario, seed, progress, None)
}

/// [`run`], writing the stream of records as text to `out` (`btsim run --trace`; records
/// named by [`crate::trace::Kind`]).
pub fn run_traced(
    scenario: &Scenario,
    seed: u64,
    progress: &mut dyn FnMut(&Progress),
    out: Box<dyn std::io::Write + Send>,
) -> Result<Outcome, RunError> {
    run_with(scenario, seed, progress, Some(out))
}

fn run_with(
    scenario: &Scenario,
    seed: u64,
    progress: &mut dyn FnMut(&Progress),
    out: Option<Box<dyn std::io::Write + Send>>,
) -> Result<Outcome, RunError> {
    let hosts =
        scenario.host_count() + scenario.trackers.len() as u32 + scenario.dht_bootstrap_count();
    if hosts > MAX_HOSTS {
        return Err(RunError::TooManyHosts {
            hosts,
            limit: MAX_HOSTS,
        });
    }
    if let Some(g) = scenario.groups.iter().find(|g| g.reader.is_some()) {
        return Err(RunError::Setup(format!(
            "group `{}` has a reader (a simulated player), which only the fast engine runs so \
             far (the runtime's driver takes no reader yet); use --engine fast",
            g.name
        )));
    }
    let meta = torrent(scenario, seed).map_err(RunError::Setup)?;
    let mut engine = Engine::new(scenario, seed, meta);
    if let Some(out) = out {
        engine.shared.lock().trace = crate::trace::Trace::with_sink(out);
    }
    engine.run(progress);
    engine
        .shared
        .lock()
        .trace
        .finish()
        .map_err(|e| RunError::Trace(e.to_string()))?;
    Ok(engine.finish(seed))
}

/// A join due at a time.
struct Join {
    at: Duration,
    host: usize,
}

struct Engine<'a> {
    scenario: &'a Scenario,
    sim: ::turmoil::Sim<'static>,
    shared: Arc<Shared>,
    ctx: Arc<Ctx>,
    disks: Vec<Arc<SimDisk>>,
    names: Vec<String>,
    /// Joins within the duration, by time.
    joins: Vec<Join>,
    next_join: usize,
    next_fault: usize,
    fault_rng: Rng,
    /// Partitions in force: pairs of group sets.
    cuts: Vec<(Vec<usize>, Vec<usize>)>,
    /// Peers registered with turmoil so far.
    registered: Vec<usize>,
    steps: u64,
    ended_at: Instant,
}

impl<'a> Engine<'a> {
    fn new(scenario: &'a Scenario, seed: u64, meta: Metainfo) -> Self {
        let mut master = Rng::new(seed);
        let mut join_rng = master.fork(1);
        let fault_rng = master.fork(3);
        let mut tracker_rng = master.fork(4);
        let mut host_rng = master.fork(5);
        let link = &scenario.link;
        let mut sim = ::turmoil::Builder::new()
            // The engine stops at the scenario's duration; turmoil's own bound is a backstop.
            .simulation_duration(scenario.duration + Duration::from_secs(60))
            .tick_duration(tick(link.latency))
            .min_message_latency(link.latency)
            .max_message_latency(link.latency + link.jitter)
            .epoch(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
            .rng_seed(seed)
            .build();

        // Trackers: hosts from the start, each with its own seed.
        for (i, spec) in scenario.trackers.iter().enumerate() {
            let tracker_seed = tracker_rng.next_u64();
            let config = TrackerConfig {
                interval: spec.interval,
                min_interval: spec.interval,
                default_numwant: spec.max_peers as u32,
                max_numwant: spec.max_peers as u32,
                ..TrackerConfig::default()
            };
            let kind = spec.kind;
            sim.host(tracker_name(i), move || {
                let config = config.clone();
                async move {
                    let any = std::net::Ipv4Addr::UNSPECIFIED;
                    let (http, udp) = match kind {
                        TrackerKind::Http => (Some(SocketAddr::from((any, HTTP_PORT))), None),
                        TrackerKind::Udp => (None, Some(SocketAddr::from((any, UDP_PORT)))),
                    };
                    let server = TrackerServer::new(config, tracker_seed);
                    let tracker = Trackerd::bind(&TurmoilNet::default(), server, http, udp).await?;
                    tracker.run(std::future::pending(), |_| {}).await;
                    Ok(())
                }
            });
        }

        // DHT bootstrap nodes: hosts from the start, each knowing the others.
        let shared = Arc::new(Shared::default());
        let mut dht_rng = master.fork(6);
        let boots: Vec<SocketAddr> = (0..scenario.dht_bootstrap_count())
            .map(|b| SocketAddr::new(sim.lookup(dht::boot_name(b).as_str()), dht::DHT_PORT))
            .collect();
        for (b, &local) in boots.iter().enumerate() {
            let others: Vec<SocketAddr> = boots.iter().copied().filter(|a| *a != local).collect();
            let (seed, shared) = (dht_rng.next_u64(), shared.clone());
            sim.host(dht::boot_name(b as u32), move || {
                dht::boot_node(b as u32, others.clone(), seed, shared.clone())
            });
        }

        // Peers: names (hence addresses) now, in scenario order; hosts at their join times.
        shared.lock().info_hash = Some(meta.info_hash);
        shared.lock().layout = Some(meta.info.layout.clone());
        let mut group_addrs = vec![Vec::new(); scenario.groups.len()];
        let pieces = meta.info.layout.piece_count();
        let mut names = Vec::new();
        let mut disks = Vec::new();
        let mut joins = Vec::new();
        for (g, group) in scenario.groups.iter().enumerate() {
            let skipped = group
                .file_priorities(meta.info.layout.file_count())
                .map(|p| crate::engine::skipped_pieces(&meta.info.layout, &p));
            for i in 0..group.count {
                let id = names.len();
                let name = format!("{}-{i}", group.name);
                let ip = sim.lookup(name.as_str());
                shared.lock().by_ip.insert(ip, id);
                group_addrs[g].push((id, SocketAddr::new(ip, PORT)));
                names.push(name);
                shared.add_host(group, g, pieces, host_rng.next_u64(), skipped.clone());
                let layout = meta.info.layout.clone();
                let mem = match group.role {
                    Role::Seeder => MemStorage::complete(layout, seed),
                    // An attacker has no storage: its disk is never used.
                    Role::Leecher | Role::Attacker => MemStorage::empty(layout, seed),
                };
                let corrupt = group.behaviour == Behaviour::Corrupt;
                disks.push(Arc::new(SimDisk::new(mem, corrupt, id, shared.clone())));
                let (start, end) = group.join;
                let span = (end - start).as_micros() as u64;
                let at = start + Duration::from_micros(join_rng.below(span + 1));
                if at <= scenario.duration {
                    joins.push(Join { at, host: id });
                }
            }
        }
        joins.sort_by_key(|j| (j.at, j.host));

        let floor = scenario.announce_interval_floor();
        // A lost segment is resent after 200 ms or twice the round trip, whichever is longer.
        let rtt = 2 * link.latency + link.jitter;
        let loss =
            (link.loss > 0.0).then(|| (link.loss, (2 * rtt).max(Duration::from_millis(200))));
        let ctx = Arc::new(Ctx {
            meta,
            groups: scenario.groups.clone(),
            tiers: scenario
                .trackers
                .iter()
                .enumerate()
                .map(|(i, t)| vec![tracker_url(i, t.kind)])
                .collect(),
            announcer: AnnouncerConfig {
                interval_floor: floor,
                ..AnnouncerConfig::default()
            },
            loss,
            wire_blocks: Arc::default(),
            group_addrs,
            dht_bootstrap: boots.iter().map(SocketAddr::to_string).collect(),
        });
        Engine {
            scenario,
            sim,
            shared,
            ctx,
            disks,
            names,
            joins,
            next_join: 0,
            next_fault: 0,
            fault_rng,
            cuts: Vec::new(),
            registered: Vec::new(),
            steps: 0,
            ended_at: Instant::ZERO,
        }
    }

    fn now(&self) -> Instant {
        Instant::from_micros(u64::try_from(self.sim.elapsed().as_micros()).unwrap_or(u64::MAX))
    }

    /// Nothing left that could change the verdict.
    fn settled(&self) -> bool {
        self.next_join == self.joins.len()
            && self.next_fault == self.scenario.faults.len()
            && !self
                .shared
                .lock()
                .hosts
                .iter()
                .any(|h| h.should_complete() || h.goal_pending())
            && self.shared.lock().attack_open.is_empty()
    }

    fn progress(&self) -> Progress {
        let s = self.shared.lock();
        Progress {
            now: self.now(),
            duration: self.scenario.duration,
            events: s.events,
            complete: s.complete,
            running: s.hosts.iter().filter(|h| h.life == Life::Up).count() as u32,
            hosts: s.hosts.len() as u32,
        }
    }

    fn run(&mut self, progress: &mut dyn FnMut(&Progress)) {
        let end = self.scenario.duration;
        loop {
            let now = self.sim.elapsed();
            while let Some(join) = self.joins.get(self.next_join)
                && join.at <= now
            {
                let host = join.host;
                self.next_join += 1;
                self.register(host);
            }
            while let Some(fault) = self.scenario.faults.get(self.next_fault)
                && fault.at <= now
            {
                let i = self.next_fault;
                self.next_fault += 1;
                self.fault(i);
            }
            if now >= end || self.settled() {
                break;
            }
            if let Err(e) = self.sim.step() {
                let at = self.now();
                self.shared
                    .lock()
                    .violation(at, format!("the simulation stopped: {e}"));
                break;
            }
            self.steps += 1;
            if self.steps.is_multiple_of(PROGRESS_EVERY) {
                progress(&self.progress());
            }
        }
        self.ended_at = if self.settled() {
            self.now()
        } else {
            self.now().max(Instant::ZERO + end)
        };
        progress(&self.progress());
    }

    /// Makes peer `id` a turmoil host (it starts its first life at once).
    fn register(&mut self, id: usize) {
        let (ctx, shared, disk) = (
            self.ctx.clone(),
            self.shared.clone(),
            self.disks[id].clone(),
        );
        let name = self.names[id].clone();
        // Up from now: its first life begins in the next step.
        self.shared.lock().hosts[id].life = Life::Up;
        if self.scenario.groups[self.shared.lock().hosts[id].group].role == Role::Attacker {
            self.sim.host(name.as_str(), move || {
                attacker::life(ctx.clone(), shared.clone(), id)
            });
        } else {
            self.sim.host(name.as_str(), move || {
                peer::life(ctx.clone(), shared.clone(), disk.clone(), id)
            });
        }
        // The link's loss and the tracker's own reach UDP trackers through turmoil's fail rate
        // (UDP only: turmoil's TCP does not retransmit, so peer links take loss in `pace`
        // instead, and an HTTP tracker's own `loss` is not modelled on this engine).
        for (t, spec) in self.scenario.trackers.iter().enumerate() {
            let loss = 1.0 - (1.0 - self.scenario.link.loss) * (1.0 - spec.loss);
            if spec.kind == TrackerKind::Udp && loss > 0.0 {
                self.sim
                    .set_link_fail_rate(name.as_str(), tracker_name(t).as_str(), loss);
            }
        }
        // The DHT's loss reaches the links to the bootstrap hosts the same way (they carry UDP
        // only); between peers DHT datagrams share the link with TCP and are not lost.
        let dht_loss = self.scenario.dht.as_ref().map_or(0.0, |d| {
            1.0 - (1.0 - self.scenario.link.loss) * (1.0 - d.loss)
        });
        if dht_loss > 0.0 {
            for b in 0..self.scenario.dht_bootstrap_count() {
                self.sim
                    .set_link_fail_rate(name.as_str(), dht::boot_name(b).as_str(), dht_loss);
            }
        }
        // Partitions in force apply to newcomers too.
        let group = self.shared.lock().hosts[id].group;
        for (a, b) in self.cuts.clone() {
            for &other in &self.registered {
                let og = self.shared.lock().hosts[other].group;
                if (a.contains(&group) && b.contains(&og))
                    || (b.contains(&group) && a.contains(&og))
                {
                    self.sim.hold(name.as_str(), self.names[other].as_str());
                }
            }
        }
        self.registered.push(id);
    }

    /// The registered peers on either side of a cut, as name pairs.
    fn pairs_across(&self, a: &[usize], b: &[usize]) -> Vec<(usize, usize)> {
        let s = self.shared.lock();
        let mut pairs = Vec::new();
        for &x in &self.registered {
            for &y in &self.registered {
                if a.contains(&s.hosts[x].group) && b.contains(&s.hosts[y].group) {
                    pairs.push((x, y));
                }
            }
        }
        pairs
    }

    /// The peers of `target` a fault applies to, among those in `lives`.
    fn targets(&mut self, target: crate::scenario::Target, lives: &[Life]) -> Vec<usize> {
        let s = self.shared.lock();
        let members: Vec<usize> = (0..s.hosts.len())
            .filter(|&h| s.hosts[h].group == target.group && lives.contains(&s.hosts[h].life))
            .collect();
        let Some(first) = s.hosts.iter().position(|h| h.group == target.group) else {
            return Vec::new();
        };
        drop(s);
        target.choose(members, first, &mut self.fault_rng)
    }

    fn fault(&mut self, i: usize) {
        let now = self.now();
        let mut shared = self.shared.lock();
        shared.trace.at(now.as_micros());
        shared.trace.record(Kind::Fault, &[i as u64]);
        drop(shared);
        match self.scenario.faults[i].action.clone() {
            FaultAction::Pause(target) => {
                for h in self.targets(target, &[Life::Up]) {
                    self.command(h, true);
                }
            }
            FaultAction::Resume(target) => {
                self.untaken_pauses();
                for h in self.targets(target, &[Life::Up]) {
                    self.command(h, false);
                }
            }
            // Turmoil holds what crosses the cut and delivers it after the heal, as TCP would
            // once the path is back; connects across it time out meanwhile.
            FaultAction::Partition { a, b } => {
                for (x, y) in self.pairs_across(&a, &b) {
                    self.sim
                        .hold(self.names[x].as_str(), self.names[y].as_str());
                }
                self.cuts.push((a, b));
            }
            FaultAction::Heal => {
                for (a, b) in std::mem::take(&mut self.cuts) {
                    for (x, y) in self.pairs_across(&a, &b) {
                        self.sim
                            .release(self.names[x].as_str(), self.names[y].as_str());
                    }
                }
            }
            FaultAction::Crash(target) => {
                for h in self.targets(target, &[Life::Up]) {
                    self.sim.crash(self.names[h].as_str());
                    let mut s = self.shared.lock();
                    s.hosts[h].life = Life::Crashed;
                    s.hosts[h].close_life();
                }
            }
            FaultAction::Restart(target) => {
                for h in self.targets(target, &[Life::Crashed, Life::Left]) {
                    {
                        let mut s = self.shared.lock();
                        // A departing peer may still be announcing `stopped`; the bounce ends it.
                        s.hosts[h].close_life();
                        s.hosts[h].life = Life::Up;
                    }
                    self.sim.bounce(self.names[h].as_str());
                }
            }
            FaultAction::TrackerDown(t) => self.sim.crash(tracker_name(t).as_str()),
            FaultAction::TrackerUp(t) => self.sim.bounce(tracker_name(t).as_str()),
        }
    }

    /// Tells peer `h`'s running driver to pause its torrent (or to resume it): a command on its
    /// channel, taken in the host's next step. A peer whose driver is not built yet (it joined
    /// in this very step) or has stopped running is left alone, as the fast engine leaves a peer
    /// without a client.
    fn command(&mut self, h: usize, pause: bool) {
        let now = self.now();
        let mut s = self.shared.lock();
        let host = &mut s.hosts[h];
        let Some((commands, torrent)) = host.commands.clone() else {
            return;
        };
        let command = if pause {
            bt_runtime::driver::Command::Pause { torrent }
        } else {
            bt_runtime::driver::Command::Resume { torrent }
        };
        match commands.try_send(command) {
            // A paused torrent ignores another pause and says nothing: nothing to wait for.
            Ok(()) if pause && !host.paused => {
                host.pause_sent.get_or_insert(now);
            }
            Ok(()) => {}
            // Its run has ended (it is leaving): nothing left to pause.
            Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => {}
            Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => s.violation(
                now,
                format!(
                    "peer {h}'s driver left {} commands untaken",
                    bt_runtime::driver::COMMAND_QUEUE
                ),
            ),
        }
    }

    /// The observer of pause commands: every driver told to pause said it did within
    /// [`PAUSE_TAKEN_WITHIN`] (else the pause observers would pass on a peer never paused).
    fn untaken_pauses(&mut self) {
        let now = self.now();
        let mut s = self.shared.lock();
        let late: Vec<(usize, Instant)> = s
            .hosts
            .iter()
            .enumerate()
            .filter_map(|(h, host)| host.pause_sent.map(|at| (h, at)))
            .filter(|(_, at)| now.saturating_since(*at) > PAUSE_TAKEN_WITHIN)
            .collect();
        for (h, at) in late {
            s.hosts[h].pause_sent = None;
            s.violation(
                now,
                format!("peer {h} was told to pause at {at:?} and its driver never said it paused"),
            );
        }
    }

    fn finish(mut self, seed: u64) -> Outcome {
        self.untaken_pauses();
        let now = self.ended_at;
        let mut s = self.shared.lock();
        // Final observer: every verified piece of every peer holds the generated bytes.
        for (h, disk) in self.disks.iter().enumerate() {
            if s.hosts[h].life == Life::Waiting {
                continue;
            }
            let layout = &self.ctx.meta.info.layout;
            let bad = s.hosts[h]
                .verified
                .ones()
                .filter(|&p| {
                    layout
                        .piece(p)
                        .is_some_and(|p| !disk.mem.piece_is_correct(p))
                })
                .count();
            if bad > 0 {
                s.violation(
                    now,
                    format!("at the end, peer {h} holds {bad} verified pieces with wrong bytes"),
                );
            }
        }
        let hosts = s
            .hosts
            .iter()
            .map(|h| HostOutcome {
                group: h.group,
                joined_at: h.joined_at,
                completed_at: h.completed_at,
                end: match h.life {
                    // Registered in the run's last instant, it never ran.
                    _ if h.joined_at.is_none() => HostEnd::NeverJoined,
                    Life::Waiting => HostEnd::NeverJoined,
                    Life::Up => HostEnd::Running,
                    Life::Crashed => HostEnd::Crashed,
                    Life::Left if h.goal_this_life => HostEnd::SeedGoal,
                    Life::Left => HostEnd::Left,
                },
                seed_goal: h.goal,
                // Refused before the run: the driver takes no reader.
                reader: None,
                sources: None,
                uploaded: h.past_uploaded + h.life_uploaded,
                downloaded: h.past_downloaded + h.life_downloaded,
                hash_failures: h.hash_failures,
                bans_issued: h.bans_issued,
                banned_by: h.banned_by,
                corrupt_pieces_kept: h.corrupt_pieces_kept,
                metadata_at: h.metadata_at,
                pex_learned: h.pex_learned,
                dht_peers: h.dht_peers,
                dht_lookups: h.dht_lookups,
                dht_first_lookup_at: h.dht_first_lookup_at,
                dht_datagrams: h.dht_sent.load(std::sync::atomic::Ordering::Relaxed),
                pieces: if h.joined_at.is_none() {
                    0
                } else {
                    h.verified.count()
                },
            })
            .collect();
        let mut diagnostics = BTreeMap::new();
        diagnostics.insert("turmoil_steps".to_owned(), self.steps);
        diagnostics.insert(
            "wire_blocks_observed".to_owned(),
            self.ctx
                .wire_blocks
                .load(std::sync::atomic::Ordering::Relaxed),
        );
        if self.scenario.dht.is_some() {
            diagnostics.insert("dht_bootstrap_datagrams".to_owned(), s.dht_boot_datagrams);
        }
        s.pauses.report(self.scenario, &mut diagnostics);
        diagnostics.insert(
            "peer_lives".to_owned(),
            s.hosts.iter().map(|h| u64::from(h.lives)).sum(),
        );
        Outcome {
            seed,
            engine: EngineKind::Turmoil,
            sim_time: now,
            events: s.events,
            fingerprint: s.trace.value(),
            info_hash: self.ctx.meta.info_hash,
            hosts,
            violations: std::mem::take(&mut s.violations),
            violation_count: s.violation_count,
            close_reasons: std::mem::take(&mut s.close_reasons),
            diagnostics,
            announces: s.announces,
            event_counts: std::mem::take(&mut s.event_counts),
            encryption: std::mem::take(&mut s.encryption),
            transport: crate::transport::TransportOutcome {
                connections: {
                    let mut c = std::mem::take(&mut s.transport_conns);
                    c.resize(self.scenario.groups.len(), [0, 0]);
                    c
                },
                ..Default::default()
            },
            group_closes: (0..self.scenario.groups.len())
                .map(|g| s.group_closes.remove(&g).unwrap_or_default())
                .collect(),
            attacks: self
                .scenario
                .groups
                .iter()
                .enumerate()
                .map(|(g, spec)| {
                    spec.attack?;
                    let mut a = s.attacks.remove(&g).unwrap_or_default();
                    let open = s.attack_open.iter().filter(|(_, (group, ..))| *group == g);
                    a.open_micros = open
                        .clone()
                        .map(|(_, (_, at, _))| now.as_micros().saturating_sub(at.as_micros()))
                        .collect();
                    a.open_honest = open.map(|((honest, _), _)| *honest).collect();
                    Some(a)
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests;
