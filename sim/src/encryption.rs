//! What the engines record about message stream encryption (a group's `encryption` key) and the
//! expectations that judge it: `compatible_pairs_connected`, `require_connections_rc4` and
//! `incompatible_dials_backed_off` (`sim/README.md`).
//!
//! Which policies can talk ([`policies_can_talk`]): `prefer` with anyone, `require` with
//! `prefer` and `require`, `plaintext` (and a peer with the layer off) with anyone but
//! `require`.
//!
//! The backoff the dial check holds a pair to is the peer list's (`bt_protocol::client`'s
//! [`RETRY_BASE`], [`RECONNECT_AFTER`], [`RETRY_MAX`], [`MAX_FAILS`]): a `require` peer's
//! encrypted dial to a peer that never encrypts is hung up on, an error, so its k-th failure in
//! a row waits `max(RETRY_BASE * 2^(k-1), RECONNECT_AFTER)`; a peer that dials a `require` peer
//! in plaintext is refused after the connect, a connection that closed, so it waits
//! [`RECONNECT_AFTER`]. A tracker answer in between makes the address ready at once (a tracker
//! naming it again is news), so an attempt after one is not judged.
//!
//! Bounds: the pairs are at most the peers squared; each pair keeps the times of its first
//! [`MAX_TIMES_KEPT`] dials, each peer those of its first [`MAX_TIMES_KEPT`] tracker answers
//! (the rest are counted, not kept, and not judged).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use bt_protocol::client::{MAX_FAILS, RECONNECT_AFTER, RETRY_BASE, RETRY_MAX};
use bt_protocol::session::Encryption;
use bt_protocol::time::Instant;

use crate::engine::Outcome;
use crate::report::Check;
use crate::scenario::{Role, Scenario, policies_can_talk};

/// Times kept per dialling pair and per peer's tracker answers.
pub const MAX_TIMES_KEPT: usize = 256;

/// The connections and dials of peers whose group sets `encryption` (empty otherwise).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EncryptionOutcome {
    /// Per (peer, other peer): connections the first one's torrent took with the second, and
    /// how many of them run RC4.
    pub connected: BTreeMap<(usize, usize), (u64, u64)>,
    /// Per (dialler, peer dialled): when each dial started (the first [`MAX_TIMES_KEPT`]).
    pub dials: BTreeMap<(usize, usize), Vec<Instant>>,
    /// Per peer: when its tracker answers arrived (the first [`MAX_TIMES_KEPT`]).
    pub tracker_answers: BTreeMap<usize, Vec<Instant>>,
    /// Whether the engine saw the dials (the fast engine does; the runtime's driver reports
    /// only the dials that failed to connect).
    pub dials_measured: bool,
}

impl EncryptionOutcome {
    /// Peer `host`'s torrent took a connection with `remote`, under RC4 or not.
    pub fn connected(&mut self, host: usize, remote: usize, rc4: bool) {
        let e = self.connected.entry((host, remote)).or_default();
        e.0 += 1;
        e.1 += u64::from(rc4);
    }

    /// Peer `host` dialled `remote` at `at`.
    pub fn dialled(&mut self, host: usize, remote: usize, at: Instant) {
        let times = self.dials.entry((host, remote)).or_default();
        if times.len() < MAX_TIMES_KEPT {
            times.push(at);
        }
    }

    /// A tracker answer reached peer `host` at `at`.
    pub fn tracker_answered(&mut self, host: usize, at: Instant) {
        let times = self.tracker_answers.entry(host).or_default();
        if times.len() < MAX_TIMES_KEPT {
            times.push(at);
        }
    }

    /// Connections the peers `hosts` took: (all, RC4).
    pub fn counts(&self, hosts: impl Fn(usize) -> bool) -> (u64, u64) {
        self.connected
            .iter()
            .filter(|((h, _), _)| hosts(*h))
            .fold((0, 0), |(a, r), (_, (n, rc4))| (a + n, r + rc4))
    }
}

/// The least wait the peer list allows before `dialler`'s `k`-th redial (k from 1) of a peer
/// whose policy cannot talk to its own (see the module docs).
pub fn backoff_wait(dialler: Option<Encryption>, k: u32) -> Duration {
    if dialler == Some(Encryption::Require) {
        RETRY_BASE
            .saturating_mul(1 << (k.max(1) - 1).min(16))
            .min(RETRY_MAX)
            .max(RECONNECT_AFTER)
    } else {
        RECONNECT_AFTER
    }
}

fn policy(scenario: &Scenario, outcome: &Outcome, h: usize) -> Option<Encryption> {
    scenario.groups[outcome.hosts[h].group].encryption
}

fn honest(scenario: &Scenario, outcome: &Outcome, h: usize) -> bool {
    scenario.groups[outcome.hosts[h].group].role != Role::Attacker
}

/// The checks the scenario's expectations ask for, in the order `sim/README.md` lists them.
pub(crate) fn checks(scenario: &Scenario, outcome: &Outcome) -> Vec<Check> {
    let e = &outcome.encryption;
    let expect = &scenario.expect;
    let mut checks = Vec::new();
    if expect.compatible_pairs_connected {
        let n = outcome.hosts.len();
        let mut pairs = 0u64;
        let mut missing = Vec::new();
        for a in 0..n {
            for b in a + 1..n {
                let (ha, hb) = (&outcome.hosts[a], &outcome.hosts[b]);
                let leecher =
                    |h: &crate::engine::HostOutcome| scenario.groups[h.group].role == Role::Leecher;
                if !honest(scenario, outcome, a)
                    || !honest(scenario, outcome, b)
                    || ha.joined_at.is_none()
                    || hb.joined_at.is_none()
                    || !(leecher(ha) || leecher(hb))
                    || !policies_can_talk(
                        policy(scenario, outcome, a),
                        policy(scenario, outcome, b),
                    )
                {
                    continue;
                }
                pairs += 1;
                if !e.connected.contains_key(&(a, b)) && !e.connected.contains_key(&(b, a)) {
                    missing.push(format!("{a}-{b}"));
                }
            }
        }
        let mut detail = format!(
            "{} of {pairs} pairs connected",
            pairs - missing.len() as u64
        );
        if !missing.is_empty() {
            let _ = write!(
                detail,
                "; never: {}",
                missing[..missing.len().min(8)].join(", ")
            );
        }
        checks.push(Check {
            name: "every pair whose policies can talk connected".into(),
            passed: missing.is_empty() && pairs > 0,
            detail,
        });
    }
    if expect.require_connections_rc4 {
        let requires = |h: usize| policy(scenario, outcome, h) == Some(Encryption::Require);
        let (mut all, mut plain) = (0u64, Vec::new());
        for (&(h, r), &(n, rc4)) in &e.connected {
            if requires(h) || requires(r) {
                all += n;
                if rc4 < n {
                    plain.push(format!("{h}-{r}"));
                }
            }
        }
        let mut detail = format!("{all} connections with a require peer");
        if !plain.is_empty() {
            let _ = write!(
                detail,
                "; in plaintext: {}",
                plain[..plain.len().min(8)].join(", ")
            );
        }
        checks.push(Check {
            name: "connections of require peers run RC4".into(),
            passed: plain.is_empty() && all > 0,
            detail,
        });
    }
    if expect.incompatible_dials_backed_off && !e.dials_measured {
        checks.push(Check {
            name: "dials between policies that cannot talk wait out the backoff".into(),
            passed: true,
            detail: format!(
                "not measured by the {} engine (the driver does not report its dials)",
                outcome.engine.name()
            ),
        });
    } else if expect.incompatible_dials_backed_off {
        let (mut pairs, mut dials, mut early) = (0u64, 0u64, Vec::new());
        let mut shortest: Option<Duration> = None;
        for (&(h, r), times) in &e.dials {
            let (ph, pr) = (policy(scenario, outcome, h), policy(scenario, outcome, r));
            if !honest(scenario, outcome, r) || policies_can_talk(ph, pr) {
                continue;
            }
            pairs += 1;
            dials += times.len() as u64;
            let answers = e.tracker_answers.get(&h).map_or(&[][..], Vec::as_slice);
            // Failures in a row before each redial; the address is forgotten at MAX_FAILS and
            // only news (a tracker answer) brings it back, with none.
            let mut k = 0u32;
            for w in times.windows(2) {
                let (prev, next) = (w[0], w[1]);
                k += 1;
                let news = answers.iter().any(|t| prev <= *t && *t <= next);
                if news {
                    if k >= MAX_FAILS {
                        k = 0;
                    }
                    continue;
                }
                let gap = next - prev;
                shortest = Some(shortest.map_or(gap, |s| s.min(gap)));
                let wait = backoff_wait(ph, k);
                if gap < wait {
                    early.push(format!(
                        "{h}->{r} {:.2} s after the last (wait {} s)",
                        gap.as_secs_f64(),
                        wait.as_secs()
                    ));
                }
            }
        }
        let mut detail = format!(
            "{dials} dials over {pairs} pairs that cannot talk; the shortest judged gap {}",
            shortest.map_or("none".to_owned(), |s| format!("{:.2} s", s.as_secs_f64()))
        );
        if !early.is_empty() {
            let _ = write!(
                detail,
                "; {} too early: {}",
                early.len(),
                early[..early.len().min(5)].join(", ")
            );
        }
        checks.push(Check {
            name: "dials between policies that cannot talk wait out the backoff".into(),
            passed: early.is_empty() && pairs > 0,
            detail,
        });
    }
    checks
}
