//! What the engines record about transports (a group's `transports`: TCP, uTP) and about the
//! fast engine's bottleneck queues (`[link] buffer`), and the expectations that judge them:
//! `uplink_share_at_least`, `queue_delay_at_most` and `utp_streams_equal` (`sim/README.md`).
//!
//! Traffic classes: what leaves an uplink is a TCP burst, a uTP datagram or a DHT datagram
//! ([`Class`]). For each uplink's group, each class and each phase (the whole run first, then
//! the scenario's `[[phase]]` windows, by the time an item leaves the uplink) the engine counts
//! the bytes carried, the items, the datagrams dropped at a full queue, and each item's queueing
//! delay: from entering the uplink's queue to leaving the uplink.
//!
//! Bounds: one [`ClassStats`] per (phase, group, class); its delay histogram has
//! [`DELAY_BUCKETS`] buckets of one millisecond (the last holds every delay at least that long),
//! allocated at the first sample. The stream check keeps the first [`MAX_MISMATCHES_KEPT`]
//! mismatches word for word and counts the rest.

use serde::Serialize;

use crate::engine::Outcome;
use crate::report::Check;
use crate::scenario::Scenario;

/// Buckets of the queueing delay histogram, one millisecond each.
pub const DELAY_BUCKETS: usize = 4096;

/// Stream mismatches kept word for word.
pub const MAX_MISMATCHES_KEPT: usize = 16;

/// What an item leaving an uplink is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    /// A burst of a TCP connection.
    Tcp,
    /// A uTP datagram.
    Utp,
    /// A DHT datagram.
    Dht,
}

impl Class {
    /// Every class, in index order.
    pub const ALL: [Class; 3] = [Class::Tcp, Class::Utp, Class::Dht];

    /// Its index in [`UplinkStats::classes`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Its name in scenario files and reports: `tcp`, `utp`, `dht`.
    pub fn name(self) -> &'static str {
        match self {
            Class::Tcp => "tcp",
            Class::Utp => "utp",
            Class::Dht => "dht",
        }
    }

    /// The class named `name`.
    pub fn from_name(name: &str) -> Option<Class> {
        Class::ALL.into_iter().find(|c| c.name() == name)
    }
}

/// One class's traffic through the uplinks of one group, in one phase.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClassStats {
    /// Bytes that left the uplinks.
    pub bytes: u64,
    /// Items (bursts, datagrams) that left the uplinks.
    pub items: u64,
    /// Datagrams dropped because the queue was full (drop-tail).
    pub dropped: u64,
    /// Their bytes.
    pub dropped_bytes: u64,
    /// The sum of the items' queueing delays, microseconds.
    pub delay_sum_us: u64,
    /// The longest queueing delay, microseconds.
    pub delay_max_us: u64,
    /// Items by queueing delay in whole milliseconds ([`DELAY_BUCKETS`] buckets, the last
    /// open-ended); empty before the first item.
    hist: Vec<u32>,
}

impl ClassStats {
    /// An item of `len` bytes left the uplink after `delay_us` in its queue.
    pub fn record(&mut self, len: u64, delay_us: u64) {
        self.bytes += len;
        self.items += 1;
        self.delay_sum_us += delay_us;
        self.delay_max_us = self.delay_max_us.max(delay_us);
        if self.hist.is_empty() {
            self.hist = vec![0; DELAY_BUCKETS];
        }
        let bucket = ((delay_us / 1000) as usize).min(DELAY_BUCKETS - 1);
        self.hist[bucket] = self.hist[bucket].saturating_add(1);
    }

    /// A datagram of `len` bytes was dropped at a full queue.
    pub fn drop(&mut self, len: u64) {
        self.dropped += 1;
        self.dropped_bytes += len;
    }

    /// Adds `other`'s counts to these.
    pub fn merge(&mut self, other: &ClassStats) {
        self.bytes += other.bytes;
        self.items += other.items;
        self.dropped += other.dropped;
        self.dropped_bytes += other.dropped_bytes;
        self.delay_sum_us += other.delay_sum_us;
        self.delay_max_us = self.delay_max_us.max(other.delay_max_us);
        if !other.hist.is_empty() {
            if self.hist.is_empty() {
                self.hist = vec![0; DELAY_BUCKETS];
            }
            for (a, b) in self.hist.iter_mut().zip(&other.hist) {
                *a = a.saturating_add(*b);
            }
        }
    }

    /// The mean queueing delay in milliseconds (`None` without items).
    pub fn mean_ms(&self) -> Option<f64> {
        (self.items > 0).then(|| self.delay_sum_us as f64 / self.items as f64 / 1000.0)
    }

    /// The `q` quantile (0 to 1) of the queueing delay in milliseconds, to the bucket's upper
    /// edge (`None` without items).
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        if self.items == 0 {
            return None;
        }
        let total: u64 = self.hist.iter().map(|n| u64::from(*n)).sum();
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0u64;
        for (ms, n) in self.hist.iter().enumerate() {
            seen += u64::from(*n);
            if seen >= rank {
                let edge = (ms + 1) as f64;
                return Some(edge.min(self.delay_max_us as f64 / 1000.0));
            }
        }
        Some(self.delay_max_us as f64 / 1000.0)
    }
}

/// One group's uplinks in one phase, by class.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UplinkStats {
    /// By [`Class::index`].
    pub classes: [ClassStats; 3],
}

impl UplinkStats {
    /// Every class together.
    pub fn all(&self) -> ClassStats {
        let mut all = ClassStats::default();
        for c in &self.classes {
            all.merge(c);
        }
        all
    }
}

/// What the stream-equality observer found: for every uTP connection whose two ends were both
/// tapped, the bytes one end's client wrote into its socket against those the other end's socket
/// delivered, chunk by chunk.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamCheck {
    /// Whether the engine taps uTP streams (the fast engine does, for groups with uTP).
    pub measured: bool,
    /// Directions of connections compared (two per connection).
    pub compared: u64,
    /// Bytes delivered and found equal to those sent.
    pub bytes_compared: u64,
    /// Ends with no partner to compare with (a crash took the other's record, or an end's
    /// record was dropped past the client's bound).
    pub unpaired: u64,
    /// Directions whose delivered bytes differ from those sent, the first
    /// [`MAX_MISMATCHES_KEPT`] described.
    pub mismatches: Vec<String>,
    /// Every mismatch, including those not described.
    pub mismatch_count: u64,
}

impl StreamCheck {
    /// Records a mismatch.
    pub fn mismatch(&mut self, what: String) {
        self.mismatch_count += 1;
        if self.mismatches.len() < MAX_MISMATCHES_KEPT {
            self.mismatches.push(what);
        }
    }
}

/// The transports and bottleneck queues of a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TransportOutcome {
    /// Per group: connections its peers' torrents took, over TCP and over uTP.
    pub connections: Vec<[u64; 2]>,
    /// The uplink queue's bound in bytes, when the engine modelled one (the fast engine with
    /// `[link] buffer`, or with a group on uTP).
    pub buffer: Option<u64>,
    /// Per phase (the whole run, then the scenario's phases), per group: its uplinks' traffic.
    /// Empty when the engine measured none.
    pub uplinks: Vec<Vec<UplinkStats>>,
    /// The stream-equality observer's findings.
    pub streams: StreamCheck,
}

/// One class of one group's uplinks in one phase, as reported.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClassReport {
    /// `tcp`, `utp` or `dht`.
    pub transport: Class,
    /// Bytes that left the uplinks.
    pub bytes: u64,
    /// Its share of the bytes every class carried through these uplinks in the phase.
    pub share: f64,
    /// Bursts or datagrams.
    pub items: u64,
    /// Datagrams dropped at a full queue.
    pub dropped: u64,
    /// Its queueing delay.
    #[serde(flatten)]
    pub delays: Delays,
}

/// One group's uplinks in one phase, as reported.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct UplinkReport {
    /// The group.
    pub group: String,
    /// Bytes of every class.
    pub bytes: u64,
    /// The classes that carried anything.
    pub classes: Vec<ClassReport>,
    /// Every item's queueing delay.
    #[serde(flatten)]
    pub delays: Delays,
}

/// Queueing delay of the items that left, milliseconds: mean, 95th percentile, most (each
/// `None` without items).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Delays {
    /// The mean.
    pub delay_mean_ms: Option<f64>,
    /// The 95th percentile.
    pub delay_p95_ms: Option<f64>,
    /// The most.
    pub delay_max_ms: Option<f64>,
}

impl Delays {
    /// The delays of `stats`.
    pub fn of(stats: &ClassStats) -> Delays {
        Delays {
            delay_mean_ms: stats.mean_ms(),
            delay_p95_ms: stats.quantile_ms(0.95),
            delay_max_ms: (stats.items > 0).then_some(stats.delay_max_us as f64 / 1000.0),
        }
    }

    /// `mean / p95 / max` in whole milliseconds, `-` for none.
    fn human(&self) -> String {
        let ms = |x: Option<f64>| x.map_or("-".to_owned(), |v| format!("{v:.0}"));
        format!(
            "{} / {} / {}",
            ms(self.delay_mean_ms),
            ms(self.delay_p95_ms),
            ms(self.delay_max_ms)
        )
    }
}

/// One phase's uplinks, as reported.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PhaseReport {
    /// `run` for the whole run, else the scenario's phase name.
    pub phase: String,
    /// Its window, seconds (the whole run: 0 to the end).
    pub from_s: f64,
    /// See `from_s`.
    pub to_s: f64,
    /// Groups whose uplinks carried anything in it.
    pub uplinks: Vec<UplinkReport>,
}

/// Connections by transport of one group.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GroupConnections {
    /// The group.
    pub group: String,
    /// Its transports, in the order of attempts.
    pub transports: Vec<&'static str>,
    /// Connections its peers' torrents took over TCP.
    pub tcp: u64,
    /// Over uTP.
    pub utp: u64,
}

/// The stream-equality observer's findings, as reported.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StreamReport {
    /// Directions compared.
    pub compared: u64,
    /// Bytes found equal.
    pub bytes_compared: u64,
    /// Ends without a partner.
    pub unpaired: u64,
    /// Mismatches.
    pub mismatches: u64,
}

/// The transport part of a report (`None` in the report when no group uses uTP and no queue
/// was modelled).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TransportReport {
    /// The uplink queue's bound in bytes, if modelled.
    pub buffer: Option<u64>,
    /// Per group.
    pub connections: Vec<GroupConnections>,
    /// The whole run, then each phase.
    pub phases: Vec<PhaseReport>,
    /// The stream-equality observer (`None` when not measured).
    pub streams: Option<StreamReport>,
}

fn class_report(c: &ClassStats, class: Class, total: u64) -> ClassReport {
    ClassReport {
        transport: class,
        bytes: c.bytes,
        share: if total == 0 {
            0.0
        } else {
            c.bytes as f64 / total as f64
        },
        items: c.items,
        dropped: c.dropped,
        delays: Delays::of(c),
    }
}

impl TransportReport {
    /// The report of `outcome`, or `None` when the run had nothing to say about transports.
    pub fn new(scenario: &Scenario, outcome: &Outcome) -> Option<TransportReport> {
        let t = &outcome.transport;
        let any_utp = scenario
            .groups
            .iter()
            .any(|g| g.transports.contains(&bt_protocol::client::Transport::Utp));
        if !any_utp && t.buffer.is_none() {
            return None;
        }
        let connections = scenario
            .groups
            .iter()
            .enumerate()
            .map(|(g, spec)| {
                let [tcp, utp] = t.connections.get(g).copied().unwrap_or_default();
                GroupConnections {
                    group: spec.name.clone(),
                    transports: spec.transports.iter().map(|t| t.name()).collect(),
                    tcp,
                    utp,
                }
            })
            .collect();
        let end_s = outcome.sim_time.as_micros() as f64 / 1e6;
        let phases = t
            .uplinks
            .iter()
            .enumerate()
            .map(|(p, groups)| {
                let (phase, from_s, to_s) = match p.checked_sub(1) {
                    None => ("run".to_owned(), 0.0, end_s),
                    Some(i) => {
                        let ph = &scenario.phases[i];
                        (
                            ph.name.clone(),
                            ph.from.as_secs_f64(),
                            ph.to.as_secs_f64().min(end_s),
                        )
                    }
                };
                let uplinks = groups
                    .iter()
                    .enumerate()
                    .filter_map(|(g, stats)| {
                        let all = stats.all();
                        if all.items == 0 && all.dropped == 0 {
                            return None;
                        }
                        let classes = Class::ALL
                            .into_iter()
                            .map(|c| (c, &stats.classes[c.index()]))
                            .filter(|(_, s)| s.items > 0 || s.dropped > 0)
                            .map(|(c, s)| class_report(s, c, all.bytes))
                            .collect();
                        Some(UplinkReport {
                            group: scenario.groups[g].name.clone(),
                            bytes: all.bytes,
                            classes,
                            delays: Delays::of(&all),
                        })
                    })
                    .collect();
                PhaseReport {
                    phase,
                    from_s,
                    to_s,
                    uplinks,
                }
            })
            .collect();
        Some(TransportReport {
            buffer: t.buffer,
            connections,
            phases,
            streams: t.streams.measured.then_some(StreamReport {
                compared: t.streams.compared,
                bytes_compared: t.streams.bytes_compared,
                unpaired: t.streams.unpaired,
                mismatches: t.streams.mismatch_count,
            }),
        })
    }

    /// The lines `btsim run` prints.
    pub fn human(&self) -> Vec<String> {
        let mut lines = Vec::new();
        let conns: Vec<String> = self
            .connections
            .iter()
            .map(|c| {
                format!(
                    "{} [{}] {} tcp / {} utp",
                    c.group,
                    c.transports.join(","),
                    c.tcp,
                    c.utp
                )
            })
            .collect();
        lines.push(format!("connections by transport: {}", conns.join("; ")));
        if let Some(b) = self.buffer {
            lines.push(format!(
                "uplink queues: drop-tail FIFO of {} per peer (queueing delay: mean / p95 / max ms)",
                bt_runtime::units::format_bytes(b)
            ));
        }
        for p in &self.phases {
            for u in &p.uplinks {
                let classes: Vec<String> = u
                    .classes
                    .iter()
                    .map(|c| {
                        let mut s = format!(
                            "{} {} {:.1}% ({})",
                            c.transport.name(),
                            bt_runtime::units::format_bytes(c.bytes),
                            c.share * 100.0,
                            c.delays.human()
                        );
                        if c.dropped > 0 {
                            s.push_str(&format!(", {} dropped", c.dropped));
                        }
                        s
                    })
                    .collect();
                lines.push(format!(
                    "  {} {:.0}-{:.0} s, {} up: {}; all ({})",
                    p.phase,
                    p.from_s,
                    p.to_s,
                    u.group,
                    classes.join(", "),
                    u.delays.human()
                ));
            }
        }
        if let Some(s) = &self.streams {
            lines.push(format!(
                "utp streams: {} directions compared, {} equal, {} mismatched, {} ends unpaired",
                s.compared,
                bt_runtime::units::format_bytes(s.bytes_compared),
                s.mismatches,
                s.unpaired
            ));
        }
        lines
    }
}

/// The index in [`TransportOutcome::uplinks`] of the phase named `phase` (`None`: the run).
fn phase_index(scenario: &Scenario, phase: Option<&str>) -> usize {
    phase
        .and_then(|name| scenario.phases.iter().position(|p| p.name == name))
        .map_or(0, |i| i + 1)
}

/// The checks the scenario's expectations ask for, in the order `sim/README.md` lists them.
pub(crate) fn checks(scenario: &Scenario, outcome: &Outcome) -> Vec<Check> {
    let t = &outcome.transport;
    let expect = &scenario.expect;
    let mut checks = Vec::new();
    let phase_name = |p: &Option<String>| p.clone().unwrap_or_else(|| "the run".to_owned());
    for e in &expect.uplink_share_at_least {
        let name = format!(
            "{} of {}'s uplink bytes in {} at least {:.0}%",
            e.transport.name(),
            scenario.groups[e.group].name,
            phase_name(&e.phase),
            e.share * 100.0
        );
        let stats = t
            .uplinks
            .get(phase_index(scenario, e.phase.as_deref()))
            .and_then(|g| g.get(e.group));
        checks.push(match stats {
            // Said, not judged, where the engine models no uplink queue.
            None => Check {
                name,
                passed: true,
                detail: format!("not measured by the {} engine", outcome.engine.name()),
            },
            Some(s) => {
                let all = s.all().bytes;
                let mine = s.classes[e.transport.index()].bytes;
                let share = if all == 0 {
                    0.0
                } else {
                    mine as f64 / all as f64
                };
                Check {
                    name,
                    passed: all > 0 && share >= e.share,
                    detail: format!(
                        "{:.1}% ({} of {})",
                        share * 100.0,
                        bt_runtime::units::format_bytes(mine),
                        bt_runtime::units::format_bytes(all)
                    ),
                }
            }
        });
    }
    for e in &expect.queue_delay_at_most {
        let what = e.transport.map_or("every item", |c| c.name());
        let name = format!(
            "queueing delay of {what} at {}'s uplink in {}: p95 at most {} ms",
            scenario.groups[e.group].name,
            phase_name(&e.phase),
            e.p95_ms
        );
        let stats = t
            .uplinks
            .get(phase_index(scenario, e.phase.as_deref()))
            .and_then(|g| g.get(e.group));
        checks.push(match stats {
            // Said, not judged, where the engine models no uplink queue.
            None => Check {
                name,
                passed: true,
                detail: format!("not measured by the {} engine", outcome.engine.name()),
            },
            Some(s) => {
                let c = match e.transport {
                    Some(class) => s.classes[class.index()].clone(),
                    None => s.all(),
                };
                match c.quantile_ms(0.95) {
                    None => Check {
                        name,
                        passed: false,
                        detail: "nothing left the uplink".to_owned(),
                    },
                    Some(p95) => Check {
                        name,
                        passed: p95 <= e.p95_ms as f64,
                        detail: format!(
                            "p95 {p95:.0} ms (mean {:.0}, max {:.0}) over {} items",
                            c.mean_ms().unwrap_or(0.0),
                            c.delay_max_us as f64 / 1000.0,
                            c.items
                        ),
                    },
                }
            }
        });
    }
    if expect.utp_streams_equal {
        let s = &t.streams;
        let name = "uTP byte streams delivered equal those sent".to_owned();
        checks.push(if !s.measured {
            // Said, not judged, where the engine does not tap the clients.
            Check {
                name,
                passed: true,
                detail: format!("not measured by the {} engine", outcome.engine.name()),
            }
        } else {
            let mut detail = format!(
                "{} directions, {} compared, {} mismatched, {} ends unpaired",
                s.compared,
                bt_runtime::units::format_bytes(s.bytes_compared),
                s.mismatch_count,
                s.unpaired
            );
            for m in &s.mismatches {
                detail.push_str("; ");
                detail.push_str(m);
            }
            Check {
                name,
                passed: s.mismatch_count == 0 && s.compared > 0 && s.bytes_compared > 0,
                detail,
            }
        });
    }
    checks
}
