//! [`RoutingTable`]: the k-buckets of one address family (BEP 5), with BEP 5 node liveness.
//!
//! The 160-bit id space is cut into buckets by the number of leading bits an id shares with our
//! own: bucket `i` holds the nodes sharing exactly `i` bits, except the last bucket, which holds
//! every node sharing at least as many bits as its index. Only that last bucket (the one our own
//! id falls in) splits, as BEP 5 says, so the table stays small near the root and detailed near
//! us.
//!
//! Liveness (BEP 5): a node is *good* if it answered one of our queries within
//! [`GOOD_WINDOW`], or queried us within that window after having answered once; *bad* after
//! [`MAX_FAILURES`] failed queries in a row; *questionable* otherwise. Bad nodes are replaced
//! first. A full bucket keeps newcomers in a replacement cache and asks the caller to ping its
//! least recently seen questionable node: one that fails twice is replaced by the freshest
//! replacement.
//!
//! An id never moves to another address; an address that answers one of our queries with a new
//! id (a restarted node) replaces its old entry, while a query claiming a new id for a known
//! address is ignored (queries are easier to spoof than answers to our transaction ids).
//!
//! Bounds: at most [`MAX_BUCKETS`] buckets of at most `k` nodes and [`REPLACEMENT_CACHE`]
//! replacements each; an address appears at most once in the table; our own id never does.

use core::net::SocketAddr;
use std::time::Duration;

use super::krpc::{CompactNode, NodeId};
use crate::rng::Rng;
use crate::time::Instant;

/// Most buckets in a table: one per bit of the id space.
pub const MAX_BUCKETS: usize = 160;

/// Replacement candidates kept per bucket, newest last; the oldest is dropped for a newcomer.
pub const REPLACEMENT_CACHE: usize = 8;

/// How long an answer (or a query after an answer) keeps a node good, and how long a bucket may
/// go untouched before it is refreshed (BEP 5: 15 minutes).
pub const GOOD_WINDOW: Duration = Duration::from_secs(15 * 60);

/// Failed queries in a row that make a node bad (BEP 5: "fails to respond to multiple queries in
/// a row").
pub const MAX_FAILURES: u32 = 2;

/// A node's liveness, as BEP 5 defines it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeStatus {
    /// Answered a query of ours within [`GOOD_WINDOW`], or queried us within it after having
    /// answered once.
    Good,
    /// Neither good nor bad: no activity for [`GOOD_WINDOW`], or never answered yet.
    Questionable,
    /// Failed [`MAX_FAILURES`] or more queries in a row.
    Bad,
}

/// One node of the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeEntry {
    /// The node's id.
    pub id: NodeId,
    /// The node's UDP address.
    pub addr: SocketAddr,
    /// When it last answered a query of ours.
    pub last_response: Option<Instant>,
    /// When it last queried us.
    pub last_query: Option<Instant>,
    /// Failed queries in a row.
    pub failures: u32,
    /// A liveness ping to it is out.
    pub pinging: bool,
}

impl NodeEntry {
    fn new(id: NodeId, addr: SocketAddr) -> Self {
        NodeEntry {
            id,
            addr,
            last_response: None,
            last_query: None,
            failures: 0,
            pinging: false,
        }
    }

    /// Its BEP 5 liveness at `now`.
    pub fn status(&self, now: Instant) -> NodeStatus {
        if self.failures >= MAX_FAILURES {
            return NodeStatus::Bad;
        }
        let recent = |t: Option<Instant>| t.is_some_and(|t| now.saturating_since(t) < GOOD_WINDOW);
        if recent(self.last_response) || (self.last_response.is_some() && recent(self.last_query)) {
            NodeStatus::Good
        } else {
            NodeStatus::Questionable
        }
    }

    /// The last time we heard from it, either way.
    fn last_seen(&self) -> Option<Instant> {
        self.last_response.max(self.last_query)
    }
}

/// What [`RoutingTable::heard_response`] or [`RoutingTable::heard_query`] did with a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Insertion {
    /// The node was in the table (or its replacement cache) and is now refreshed.
    Updated,
    /// The node joined a bucket.
    Added,
    /// The bucket is full: the node waits in its replacement cache. `ping` is the least recently
    /// seen questionable node of the bucket, which the caller should ping (BEP 5), if any is not
    /// already being pinged.
    Cached {
        /// The node to ping, if any.
        ping: Option<SocketAddr>,
    },
    /// The node was refused: our own id, an id already in the table at another address, or
    /// (from a query) an address already in the table under another id.
    Refused,
}

#[derive(Clone, Debug)]
struct Bucket {
    nodes: Vec<NodeEntry>,
    replacements: Vec<NodeEntry>,
    /// When a node of this bucket last answered or joined (None: never).
    last_changed: Option<Instant>,
}

impl Bucket {
    fn new(now: Option<Instant>) -> Self {
        Bucket {
            nodes: Vec::new(),
            replacements: Vec::new(),
            last_changed: now,
        }
    }

    /// Promotes the freshest replacement (one that answered, if any) into a free slot.
    fn promote(&mut self) {
        let pick = self
            .replacements
            .iter()
            .rposition(|n| n.last_response.is_some())
            .or_else(|| self.replacements.len().checked_sub(1));
        if let Some(i) = pick {
            let node = self.replacements.remove(i);
            self.nodes.push(node);
        }
    }
}

/// The k-buckets of one address family (BEP 5): see the module docs for the layout, liveness
/// and bounds.
///
/// Methods: getters ([`RoutingTable::len`], [`RoutingTable::status`],
/// [`RoutingTable::closest`], [`RoutingTable::nodes`], [`RoutingTable::next_refresh`]), then
/// inputs ([`RoutingTable::heard_response`], [`RoutingTable::heard_query`],
/// [`RoutingTable::failed`]) and [`RoutingTable::refresh_due`], which picks a bucket to refresh.
#[derive(Clone, Debug)]
pub struct RoutingTable {
    own: NodeId,
    k: usize,
    buckets: Vec<Bucket>,
}

impl RoutingTable {
    /// An empty table around our id `own`, with buckets of `k` nodes (at least 1).
    pub fn new(own: NodeId, k: usize) -> Self {
        RoutingTable {
            own,
            k: k.max(1),
            buckets: vec![Bucket::new(None)],
        }
    }

    /// Our own id.
    pub fn own_id(&self) -> NodeId {
        self.own
    }

    /// Nodes in the buckets that are not bad (good or questionable).
    pub fn len(&self) -> usize {
        self.entries().filter(|n| n.failures < MAX_FAILURES).count()
    }

    /// Whether no bucket holds a node that is not bad.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The number of buckets (at most [`MAX_BUCKETS`]).
    pub fn bucket_count(&self) -> usize {
        self.buckets.len()
    }

    /// Nodes in the replacement caches.
    pub fn replacement_count(&self) -> usize {
        self.buckets.iter().map(|b| b.replacements.len()).sum()
    }

    /// The largest bucket's node count (at most `k`).
    pub fn max_bucket_len(&self) -> usize {
        self.buckets
            .iter()
            .map(|b| b.nodes.len())
            .max()
            .unwrap_or(0)
    }

    /// The liveness at `now` of the node `id`, if it is in a bucket.
    pub fn status(&self, now: Instant, id: &NodeId) -> Option<NodeStatus> {
        self.bucket(id)
            .nodes
            .iter()
            .find(|n| n.id == *id)
            .map(|n| n.status(now))
    }

    /// The entry of the node at `addr`, if it is in a bucket.
    pub fn entry(&self, addr: SocketAddr) -> Option<&NodeEntry> {
        self.entries().find(|n| n.addr == addr)
    }

    /// Every node in the buckets that is not bad, bucket by bucket.
    pub fn nodes(&self) -> impl Iterator<Item = &NodeEntry> + '_ {
        self.entries().filter(|n| n.failures < MAX_FAILURES)
    }

    /// The `n` nodes closest to `target` (bad ones left out), closest first.
    pub fn closest(&self, target: &NodeId, n: usize) -> Vec<CompactNode> {
        let mut all: Vec<CompactNode> = self
            .nodes()
            .map(|e| CompactNode {
                id: e.id,
                addr: e.addr,
            })
            .collect();
        all.sort_by_key(|c| target.distance(&c.id));
        all.truncate(n);
        all
    }

    /// When the next bucket refresh is due: the earliest bucket touched [`GOOD_WINDOW`] ago
    /// (None while the table is empty, as there is nobody to ask).
    pub fn next_refresh(&self) -> Option<Instant> {
        if self.is_empty() {
            return None;
        }
        self.buckets
            .iter()
            .filter_map(|b| b.last_changed)
            .min()
            .map(|t| t + GOOD_WINDOW)
    }

    /// Records that the node `id` at `addr` answered a query of ours at `now`, adding it if
    /// there is room.
    pub fn heard_response(&mut self, now: Instant, id: NodeId, addr: SocketAddr) -> Insertion {
        self.heard(now, id, addr, true)
    }

    /// Records that the node `id` at `addr` queried us at `now`, adding it (questionable until it
    /// answers one of our queries) if there is room.
    pub fn heard_query(&mut self, now: Instant, id: NodeId, addr: SocketAddr) -> Insertion {
        self.heard(now, id, addr, false)
    }

    /// Records that a query to `addr` failed (timed out). A node failing [`MAX_FAILURES`] in a
    /// row turns bad and, if its bucket has a replacement, is replaced at once.
    pub fn failed(&mut self, addr: SocketAddr) {
        for bucket in &mut self.buckets {
            if let Some(i) = bucket.nodes.iter().position(|n| n.addr == addr) {
                let node = &mut bucket.nodes[i];
                node.failures = node.failures.saturating_add(1);
                node.pinging = false;
                if node.failures >= MAX_FAILURES && !bucket.replacements.is_empty() {
                    bucket.nodes.remove(i);
                    bucket.promote();
                }
                return;
            }
            if let Some(i) = bucket.replacements.iter().position(|n| n.addr == addr) {
                bucket.replacements.remove(i);
                return;
            }
        }
    }

    /// Marks that a liveness ping to `addr` is out (so it is not asked for again meanwhile).
    pub fn set_pinging(&mut self, addr: SocketAddr) {
        for bucket in &mut self.buckets {
            if let Some(n) = bucket.nodes.iter_mut().find(|n| n.addr == addr) {
                n.pinging = true;
            }
        }
    }

    /// If a bucket went untouched for [`GOOD_WINDOW`], touches it and returns a random id in its
    /// range, for a `find_node` lookup (BEP 5 bucket refresh). Call until None.
    pub fn refresh_due(&mut self, now: Instant, rng: &mut Rng) -> Option<NodeId> {
        if self.is_empty() {
            return None;
        }
        let last = self.buckets.len() - 1;
        let index = self.buckets.iter().position(|b| {
            b.last_changed
                .is_some_and(|t| now.saturating_since(t) >= GOOD_WINDOW)
        })?;
        self.buckets[index].last_changed = Some(now);
        let mut random = [0u8; 20];
        rng.fill(&mut random);
        Some(id_in_bucket(&self.own, index, index == last, random))
    }

    fn entries(&self) -> impl Iterator<Item = &NodeEntry> + '_ {
        self.buckets.iter().flat_map(|b| b.nodes.iter())
    }

    fn bucket_index(&self, id: &NodeId) -> usize {
        let cpl = self.own.common_prefix_len(id) as usize;
        cpl.min(self.buckets.len() - 1)
    }

    fn bucket(&self, id: &NodeId) -> &Bucket {
        &self.buckets[self.bucket_index(id)]
    }

    fn heard(&mut self, now: Instant, id: NodeId, addr: SocketAddr, response: bool) -> Insertion {
        if id == self.own {
            return Insertion::Refused;
        }
        let touch = |n: &mut NodeEntry| {
            if response {
                n.last_response = Some(now);
                n.failures = 0;
                n.pinging = false;
            } else {
                n.last_query = Some(now);
            }
        };
        // Already known? An id does not move to another address; an address answering our
        // query with a new id is a node that restarted: its old entry goes.
        let mut restarted = None;
        for (b, bucket) in self.buckets.iter_mut().enumerate() {
            if let Some(i) = bucket
                .nodes
                .iter()
                .position(|n| n.addr == addr || n.id == id)
            {
                let n = &mut bucket.nodes[i];
                if n.id == id && n.addr == addr {
                    touch(n);
                    if response {
                        bucket.last_changed = Some(now);
                    }
                    return Insertion::Updated;
                }
                if n.id == id || !response {
                    return Insertion::Refused;
                }
                restarted = Some((b, i));
                break;
            }
        }
        if let Some((b, i)) = restarted {
            let bucket = &mut self.buckets[b];
            bucket.nodes.remove(i);
            bucket.promote();
        }
        let mut node = NodeEntry::new(id, addr);
        touch(&mut node);
        // Replacements with the same address or id are dropped: the newest word wins.
        for bucket in &mut self.buckets {
            bucket.replacements.retain(|n| n.addr != addr && n.id != id);
        }
        for _ in 0..=MAX_BUCKETS {
            let index = self.bucket_index(&id);
            let count = self.buckets.len();
            let last = count - 1;
            let k = self.k;
            let bucket = &mut self.buckets[index];
            if bucket.nodes.len() < k {
                bucket.nodes.push(node);
                bucket.last_changed = Some(now);
                return Insertion::Added;
            }
            if let Some(bad) = bucket.nodes.iter().position(|n| n.failures >= MAX_FAILURES) {
                bucket.nodes[bad] = node;
                bucket.last_changed = Some(now);
                return Insertion::Added;
            }
            if index == last && count < MAX_BUCKETS {
                self.split(now);
                continue;
            }
            if bucket.replacements.len() >= REPLACEMENT_CACHE {
                bucket.replacements.remove(0);
            }
            bucket.replacements.push(node);
            let ping = bucket
                .nodes
                .iter()
                .filter(|n| !n.pinging && n.status(now) == NodeStatus::Questionable)
                .min_by_key(|n| n.last_seen())
                .map(|n| n.addr);
            return Insertion::Cached { ping };
        }
        Insertion::Refused
    }

    /// Splits the last bucket: the nodes sharing more bits with us than its index move to a new
    /// last bucket.
    fn split(&mut self, now: Instant) {
        let index = self.buckets.len() - 1;
        let own = self.own;
        let deeper = |n: &NodeEntry| own.common_prefix_len(&n.id) as usize > index;
        let old = &mut self.buckets[index];
        let mut new = Bucket::new(Some(now));
        let (moved, kept): (Vec<_>, Vec<_>) = old.nodes.drain(..).partition(deeper);
        old.nodes = kept;
        new.nodes = moved;
        let (moved, kept): (Vec<_>, Vec<_>) = old.replacements.drain(..).partition(deeper);
        old.replacements = kept;
        new.replacements = moved;
        while old.nodes.len() < self.k && !old.replacements.is_empty() {
            old.promote();
        }
        self.buckets.push(new);
    }
}

/// An id sharing exactly `index` leading bits with `own` (at least `index` if `last`), the other
/// bits taken from `random`.
pub(crate) fn id_in_bucket(own: &NodeId, index: usize, last: bool, random: [u8; 20]) -> NodeId {
    let mut out = random;
    for bit in 0..index.min(160) {
        let (byte, mask) = (bit / 8, 0x80u8 >> (bit % 8));
        out[byte] = (out[byte] & !mask) | (own.0[byte] & mask);
    }
    if !last && index < 160 {
        let (byte, mask) = (index / 8, 0x80u8 >> (index % 8));
        out[byte] = (out[byte] & !mask) | (!own.0[byte] & mask);
    }
    NodeId(out)
}
