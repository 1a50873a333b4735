//! Tests of the routing table: bucket splits, BEP 5 liveness, the replacement cache, closest
//! order, refresh, and the bounds under arbitrary insertions.

use core::net::SocketAddr;

use proptest::prelude::*;

use super::routing::*;
use super::*;
use crate::rng::Rng;
use crate::time::Instant;

const OWN: NodeId = NodeId([0; 20]);

/// An id sharing exactly `cpl` leading bits with [`OWN`], the rest from `salt`.
fn id_at(cpl: usize, salt: u8) -> NodeId {
    let mut random = [salt; 20];
    random[19] = salt;
    id_in_bucket(&OWN, cpl, false, random)
}

fn addr(n: u32) -> SocketAddr {
    SocketAddr::from(([10, (n >> 16) as u8, (n >> 8) as u8, n as u8], 6881))
}

fn at(secs: u64) -> Instant {
    Instant::from_micros(secs * 1_000_000)
}

#[test]
fn id_in_bucket_has_the_right_prefix() {
    // Proves the helper behind refresh targets lands in the bucket it names.
    for cpl in [0, 1, 7, 8, 9, 100, 159] {
        assert_eq!(OWN.common_prefix_len(&id_at(cpl, 0xff)), cpl as u32);
        assert_eq!(OWN.common_prefix_len(&id_at(cpl, 0x00)), cpl as u32);
    }
    let last = id_in_bucket(&OWN, 5, true, [0xff; 20]);
    assert!(OWN.common_prefix_len(&last) >= 5);
}

#[test]
fn only_the_bucket_holding_our_id_splits() {
    // Proves a full far bucket does not split (the newcomer is cached) while the bucket holding
    // our own id splits until the newcomers separate.
    let mut t = RoutingTable::new(OWN, 8);
    for i in 0..8u8 {
        assert_eq!(
            t.heard_response(at(0), id_at(0, i), addr(i.into())),
            Insertion::Added
        );
    }
    assert_eq!(t.bucket_count(), 1);
    // The ninth far node splits the only bucket, then finds bucket 0 full: cached.
    assert!(matches!(
        t.heard_response(at(0), id_at(0, 100), addr(100)),
        Insertion::Cached { .. }
    ));
    assert_eq!(t.bucket_count(), 2);
    assert_eq!(t.len(), 8);
    assert_eq!(t.replacement_count(), 1);
    // Nine nodes sharing exactly 5 bits with us split the near bucket until index 6.
    for i in 0..9u8 {
        t.heard_response(at(0), id_at(5, i), addr(200 + u32::from(i)));
    }
    assert_eq!(t.bucket_count(), 7);
    assert_eq!(t.len(), 16);
    assert_eq!(t.max_bucket_len(), 8);
    // Nodes near us now go to the last bucket without trouble.
    assert_eq!(
        t.heard_response(at(0), id_at(30, 1), addr(300)),
        Insertion::Added
    );
}

#[test]
fn liveness_follows_bep5() {
    // Proves good / questionable / bad: an answer makes a node good for 15 minutes, a query only
    // keeps it good once it has answered, two failures in a row make it bad, an answer heals.
    let mut t = RoutingTable::new(OWN, 8);
    let (a, b) = (id_at(3, 1), id_at(4, 1));
    t.heard_query(at(0), a, addr(1));
    assert_eq!(t.status(at(0), &a), Some(NodeStatus::Questionable));
    t.heard_response(at(0), b, addr(2));
    assert_eq!(t.status(at(0), &b), Some(NodeStatus::Good));
    assert_eq!(t.status(at(899), &b), Some(NodeStatus::Good));
    assert_eq!(t.status(at(900), &b), Some(NodeStatus::Questionable));
    // A query after having answered once makes it good again.
    t.heard_query(at(1000), b, addr(2));
    assert_eq!(t.status(at(1000), &b), Some(NodeStatus::Good));
    // A query without an answer ever does not.
    t.heard_query(at(1000), a, addr(1));
    assert_eq!(t.status(at(1000), &a), Some(NodeStatus::Questionable));
    t.failed(addr(2));
    assert_eq!(t.status(at(1000), &b), Some(NodeStatus::Good));
    t.failed(addr(2));
    assert_eq!(t.status(at(1000), &b), Some(NodeStatus::Bad));
    assert_eq!(t.len(), 1, "bad nodes are not counted");
    t.heard_response(at(1001), b, addr(2));
    assert_eq!(t.status(at(1001), &b), Some(NodeStatus::Good));
}

#[test]
fn full_bucket_pings_questionable_then_replaces_bad() {
    // Proves a full bucket caches newcomers and names its least recently seen questionable node
    // to ping; that node failing twice is replaced by the freshest replacement; a bad node is
    // replaced first by a newcomer.
    let mut t = RoutingTable::new(OWN, 2);
    // Two far nodes (bucket 0 after the split) and fill.
    t.heard_response(at(0), id_at(0, 1), addr(1));
    t.heard_response(at(10), id_at(0, 2), addr(2));
    t.heard_response(at(0), id_at(1, 1), addr(50)); // forces the split
    assert!(t.bucket_count() >= 2);
    // All good: cached, nothing to ping.
    assert_eq!(
        t.heard_response(at(20), id_at(0, 3), addr(3)),
        Insertion::Cached { ping: None }
    );
    // Later both are questionable: the least recently seen (addr 1) is named.
    let later = at(20 + 900);
    assert_eq!(
        t.heard_response(later, id_at(0, 4), addr(4)),
        Insertion::Cached {
            ping: Some(addr(1))
        }
    );
    t.set_pinging(addr(1));
    // While that ping is out, the next questionable node is named.
    assert_eq!(
        t.heard_query(later, id_at(0, 5), addr(5)),
        Insertion::Cached {
            ping: Some(addr(2))
        }
    );
    t.failed(addr(1));
    assert!(t.entry(addr(1)).is_some(), "one failure is not bad");
    t.failed(addr(1));
    assert!(t.entry(addr(1)).is_none(), "bad and replaced");
    // The freshest replacement that answered (addr 4) took its place.
    assert!(t.entry(addr(4)).is_some());
    // A bad node with no replacement left is replaced by the next newcomer.
    let mut u = RoutingTable::new(OWN, 1);
    u.heard_response(at(0), id_at(0, 1), addr(1));
    u.heard_response(at(0), id_at(1, 1), addr(9)); // split
    u.failed(addr(1));
    u.failed(addr(1));
    assert_eq!(u.len(), 1);
    assert_eq!(
        u.heard_response(at(1), id_at(0, 2), addr(2)),
        Insertion::Added
    );
    assert!(u.entry(addr(1)).is_none());
}

#[test]
fn refuses_own_id_and_moved_addresses() {
    // Proves our own id never enters, nor an id at a second address, nor a second id claimed by
    // a query from a known address; an answer with a new id replaces the restarted node.
    let mut t = RoutingTable::new(OWN, 8);
    assert_eq!(t.heard_response(at(0), OWN, addr(1)), Insertion::Refused);
    t.heard_response(at(0), id_at(2, 1), addr(1));
    assert_eq!(
        t.heard_response(at(0), id_at(2, 1), addr(2)),
        Insertion::Refused
    );
    assert_eq!(
        t.heard_query(at(0), id_at(3, 1), addr(1)),
        Insertion::Refused
    );
    assert_eq!(
        t.heard_response(at(0), id_at(2, 1), addr(1)),
        Insertion::Updated
    );
    assert_eq!(t.len(), 1);
    // An answer to our query with a new id: the node restarted, its old entry goes.
    assert_eq!(
        t.heard_response(at(1), id_at(3, 1), addr(1)),
        Insertion::Added
    );
    assert_eq!(t.len(), 1);
    assert_eq!(t.entry(addr(1)).unwrap().id, id_at(3, 1));
}

#[test]
fn closest_is_sorted_by_distance_and_skips_bad_nodes() {
    // Proves closest(target, n) returns the n nearest non-bad nodes, nearest first.
    let mut t = RoutingTable::new(OWN, 8);
    let mut rng = Rng::new(5);
    let mut ids = Vec::new();
    for i in 0..40u32 {
        let mut b = [0u8; 20];
        rng.fill(&mut b);
        ids.push((NodeId(b), addr(i)));
        t.heard_response(at(0), NodeId(b), addr(i));
    }
    let target = NodeId([0x42; 20]);
    let got = t.closest(&target, 5);
    assert_eq!(got.len(), 5);
    for w in got.windows(2) {
        assert!(target.distance(&w[0].id) < target.distance(&w[1].id));
    }
    let mut in_table: Vec<NodeId> = t.nodes().map(|n| n.id).collect();
    in_table.sort_by_key(|id| target.distance(id));
    assert_eq!(
        got.iter().map(|c| c.id).collect::<Vec<_>>(),
        in_table[..5].to_vec()
    );
    // The nearest turns bad: it is skipped.
    let nearest = got[0].addr;
    t.failed(nearest);
    t.failed(nearest);
    assert!(t.closest(&target, 5).iter().all(|c| c.addr != nearest));
}

#[test]
fn untouched_bucket_is_refreshed_with_an_id_in_its_range() {
    // Proves a bucket untouched for 15 minutes yields one refresh target in its own range, and
    // is then considered touched.
    let mut t = RoutingTable::new(OWN, 8);
    let mut rng = Rng::new(1);
    assert_eq!(t.refresh_due(at(0), &mut rng), None, "empty table");
    t.heard_response(at(0), id_at(3, 1), addr(1));
    assert_eq!(t.next_refresh(), Some(at(900)));
    assert_eq!(t.refresh_due(at(899), &mut rng), None);
    assert!(t.refresh_due(at(900), &mut rng).is_some(), "due");
    assert_eq!(t.refresh_due(at(900), &mut rng), None);
    assert_eq!(t.next_refresh(), Some(at(1800)));
    // With several buckets, each target lands in its bucket.
    for i in 0..9u8 {
        t.heard_response(at(1000), id_at(0, i), addr(10 + u32::from(i)));
    }
    let mut seen = Vec::new();
    while let Some(target) = t.refresh_due(at(5000), &mut rng) {
        seen.push(OWN.common_prefix_len(&target));
    }
    assert_eq!(seen.len(), t.bucket_count());
    assert_eq!(seen[0], 0);
    assert!(seen[seen.len() - 1] >= (t.bucket_count() - 1) as u32);
}

proptest! {
    #[test]
    fn bounds_hold_under_arbitrary_traffic(
        ops in proptest::collection::vec((any::<[u8; 20]>(), 0u32..64, 0u8..3, 0u64..2000), 1..400)
    ) {
        // Proves no sequence of answers, queries and failures breaks the table's bounds: at most
        // 160 buckets, k nodes and 8 replacements each, each address once, never our own id.
        let own = NodeId([0x80; 20]);
        let mut t = RoutingTable::new(own, 8);
        for (id, a, kind, secs) in ops {
            let now = at(secs);
            match kind {
                0 => { t.heard_response(now, NodeId(id), addr(a)); }
                1 => { t.heard_query(now, NodeId(id), addr(a)); }
                _ => t.failed(addr(a)),
            }
            prop_assert!(t.bucket_count() <= MAX_BUCKETS);
            prop_assert!(t.max_bucket_len() <= 8);
            prop_assert!(t.replacement_count() <= t.bucket_count() * REPLACEMENT_CACHE);
            let mut addrs: Vec<SocketAddr> = t.nodes().map(|n| n.addr).collect();
            let n = addrs.len();
            addrs.sort();
            addrs.dedup();
            prop_assert_eq!(addrs.len(), n);
            prop_assert!(t.nodes().all(|n| n.id != own));
        }
    }
}
