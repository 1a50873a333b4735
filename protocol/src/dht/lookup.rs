//! [`Lookup`]: one iterative search of the DHT for the nodes closest to a target (BEP 5
//! `find_node` and `get_peers`), as a plain data structure the node machine drives.
//!
//! Candidates are kept sorted by XOR distance to the target, seeds of unknown id (bootstrap
//! addresses) first. [`Lookup::next_query`] hands out the closest candidate not yet asked, while
//! fewer than `alpha` queries are out, and only from among the `k` closest candidates that have
//! not failed: asking farther nodes cannot change the result. The lookup has converged
//! ([`Lookup::is_done`]) when those `k` closest have all answered and no query is out. The node
//! machine times queries out in two steps, as libtorrent does: after a short timeout a query
//! frees its slot and its node stops counting among the `k` closest
//! ([`Lookup::handle_slow`]; a late answer still counts), and after the full timeout the node
//! counts as failed. So a dead node costs a lookup a second, and a lookup always ends.
//!
//! Bounds: at most [`MAX_CANDIDATES`] candidates (the closest kept), at most `alpha` queries
//! out, at most [`MAX_LOOKUP_PEERS`] distinct peers remembered.

use core::net::SocketAddr;
use std::collections::BTreeSet;

use super::krpc::{CompactNode, NodeId, Token};

/// Most candidates a lookup keeps: the closest to the target.
pub const MAX_CANDIDATES: usize = 64;

/// Most distinct peers a `get_peers` lookup remembers (and reports); later ones are ignored.
pub const MAX_LOOKUP_PEERS: usize = 1_000;

/// Where a candidate stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CandidateState {
    /// Not asked yet.
    Fresh,
    /// A query is out.
    InFlight,
    /// A query is out and slow: its slot went to another node ([`Lookup::handle_slow`]); an
    /// answer still counts.
    Slow,
    /// It answered; with the write token it gave, if any (`get_peers`).
    Answered(Option<Token>),
    /// It timed out or answered with an error.
    Failed,
}

/// One node a lookup knows of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// Its id: None for a seed of unknown id (a bootstrap address) until it answers.
    pub id: Option<NodeId>,
    /// Its address.
    pub addr: SocketAddr,
    /// Where it stands.
    pub state: CandidateState,
}

/// One iterative lookup: see the module docs.
#[derive(Clone, Debug)]
pub struct Lookup {
    own: NodeId,
    target: NodeId,
    k: usize,
    alpha: usize,
    candidates: Vec<Candidate>,
    in_flight: usize,
    /// Queries out whose slot was freed early ([`Lookup::handle_slow`]): at most one per
    /// candidate address, so at most the queries this lookup sent.
    slow: BTreeSet<SocketAddr>,
    peers: BTreeSet<SocketAddr>,
}

impl Lookup {
    /// A lookup for `target` on behalf of the node `own` (never a candidate), converging on the
    /// `k` closest with `alpha` queries out at most (both at least 1), starting from `seeds`.
    pub fn new(
        own: NodeId,
        target: NodeId,
        k: usize,
        alpha: usize,
        seeds: impl IntoIterator<Item = (Option<NodeId>, SocketAddr)>,
    ) -> Self {
        let mut lookup = Lookup {
            own,
            target,
            k: k.max(1),
            alpha: alpha.max(1),
            candidates: Vec::new(),
            in_flight: 0,
            slow: BTreeSet::new(),
            peers: BTreeSet::new(),
        };
        for (id, addr) in seeds {
            lookup.insert(id, addr);
        }
        lookup
    }

    /// The id searched for.
    pub fn target(&self) -> NodeId {
        self.target
    }

    /// Queries out.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// The candidates, closest first (unknown ids first of all).
    pub fn candidates(&self) -> &[Candidate] {
        &self.candidates
    }

    /// The distinct peers found so far.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Whether the lookup has converged: the `k` closest candidates that did not fail have all
    /// answered, and no query is out.
    pub fn is_done(&self) -> bool {
        self.in_flight == 0 && self.next_fresh().is_none()
    }

    /// The `n` closest candidates that answered with a token, with it (for `announce_peer`).
    pub fn announce_targets(&self, n: usize) -> Vec<(NodeId, SocketAddr, Token)> {
        self.candidates
            .iter()
            .filter_map(|c| match (&c.state, c.id) {
                (CandidateState::Answered(Some(token)), Some(id)) => {
                    Some((id, c.addr, token.clone()))
                }
                _ => None,
            })
            .take(n)
            .collect()
    }

    /// The `n` closest candidates that answered.
    pub fn answered(&self, n: usize) -> Vec<CompactNode> {
        self.candidates
            .iter()
            .filter_map(|c| match (&c.state, c.id) {
                (CandidateState::Answered(_), Some(id)) => Some(CompactNode { id, addr: c.addr }),
                _ => None,
            })
            .take(n)
            .collect()
    }

    /// The next node to ask, marked in flight: the closest fresh one among the `k` closest that
    /// have not failed, if fewer than `alpha` queries are out.
    pub fn next_query(&mut self) -> Option<SocketAddr> {
        if self.in_flight >= self.alpha {
            return None;
        }
        let i = self.next_fresh()?;
        let candidate = &mut self.candidates[i];
        candidate.state = CandidateState::InFlight;
        self.in_flight += 1;
        Some(candidate.addr)
    }

    /// A query of this lookup to `from` was answered by the node `id`, with these nodes and
    /// token. Frees the query's slot.
    pub fn handle_response(
        &mut self,
        from: SocketAddr,
        id: NodeId,
        nodes: &[CompactNode],
        token: Option<Token>,
    ) {
        self.free_slot(from);
        if let Some(i) = self.candidates.iter().position(|c| c.addr == from) {
            let mut candidate = self.candidates.remove(i);
            if id == self.own || self.candidates.iter().any(|c| c.id == Some(id)) {
                // Our own id, or another candidate's: not a usable answer.
                candidate.state = CandidateState::Failed;
                self.candidates.insert(i, candidate);
            } else {
                candidate.id = Some(id);
                candidate.state = CandidateState::Answered(token);
                self.place(candidate);
            }
        }
        for node in nodes {
            self.insert(Some(node.id), node.addr);
        }
    }

    /// Remembers the peers of a `get_peers` answer; returns those not seen before.
    pub fn handle_values(&mut self, values: &[SocketAddr]) -> Vec<SocketAddr> {
        let mut new = Vec::new();
        for peer in values {
            if self.peers.len() >= MAX_LOOKUP_PEERS {
                break;
            }
            if peer.port() != 0 && self.peers.insert(*peer) {
                new.push(*peer);
            }
        }
        new
    }

    /// A query of this lookup to `from` failed (timeout or error). Frees the query's slot.
    pub fn handle_failure(&mut self, from: SocketAddr) {
        self.free_slot(from);
        if let Some(c) = self.candidates.iter_mut().find(|c| c.addr == from) {
            c.state = CandidateState::Failed;
        }
    }

    /// The query to `from` is slow (unanswered after the short timeout, libtorrent's
    /// `short_timeout`): its slot goes to the next candidate, and it no longer counts among the
    /// `k` closest, so a dead node holds the lookup up for a second, not for the whole query
    /// timeout. Its answer, if it comes before the query times out, still counts.
    pub fn handle_slow(&mut self, from: SocketAddr) {
        if self.slow.contains(&from) {
            return;
        }
        if let Some(c) = self
            .candidates
            .iter_mut()
            .find(|c| c.addr == from && c.state == CandidateState::InFlight)
        {
            c.state = CandidateState::Slow;
            self.slow.insert(from);
            self.in_flight = self.in_flight.saturating_sub(1);
        }
    }

    /// A query to `from` ended: its slot is freed unless [`Lookup::handle_slow`] freed it.
    fn free_slot(&mut self, from: SocketAddr) {
        if !self.slow.remove(&from) {
            self.in_flight = self.in_flight.saturating_sub(1);
        }
    }

    fn next_fresh(&self) -> Option<usize> {
        let mut live = 0;
        for (i, c) in self.candidates.iter().enumerate() {
            match c.state {
                CandidateState::Failed | CandidateState::Slow => continue,
                CandidateState::Fresh => return Some(i),
                _ => {}
            }
            live += 1;
            if live >= self.k {
                return None;
            }
        }
        None
    }

    fn insert(&mut self, id: Option<NodeId>, addr: SocketAddr) {
        if id == Some(self.own)
            || addr.port() == 0
            || self
                .candidates
                .iter()
                .any(|c| c.addr == addr || (id.is_some() && c.id == id))
        {
            return;
        }
        self.place(Candidate {
            id,
            addr,
            state: CandidateState::Fresh,
        });
    }

    /// Inserts in distance order (unknown ids first), keeping the [`MAX_CANDIDATES`] closest.
    fn place(&mut self, candidate: Candidate) {
        let key = |c: &Candidate| c.id.map(|id| self.target.distance(&id));
        let new_key = key(&candidate);
        let at = self.candidates.partition_point(|c| key(c) <= new_key);
        if at >= MAX_CANDIDATES {
            return;
        }
        self.candidates.insert(at, candidate);
        self.candidates.truncate(MAX_CANDIDATES);
    }
}
