//! Tests of the iterative lookup: the alpha bound, convergence on the true k closest, failures
//! freeing slots, seeds of unknown id, and the candidate and peer bounds.

use core::net::SocketAddr;

use super::*;
use crate::rng::Rng;

const OWN: NodeId = NodeId([0xee; 20]);

fn addr(n: u32) -> SocketAddr {
    SocketAddr::from(([10, (n >> 16) as u8, (n >> 8) as u8, n as u8], 6881))
}

/// `n` random nodes at addresses 1..=n.
fn world(n: u32, seed: u64) -> Vec<CompactNode> {
    let mut rng = Rng::new(seed);
    (1..=n)
        .map(|i| {
            let mut b = [0u8; 20];
            rng.fill(&mut b);
            CompactNode {
                id: NodeId(b),
                addr: addr(i),
            }
        })
        .collect()
}

fn closest(world: &[CompactNode], target: &NodeId, n: usize) -> Vec<CompactNode> {
    let mut v = world.to_vec();
    v.sort_by_key(|c| target.distance(&c.id));
    v.truncate(n);
    v
}

#[test]
fn at_most_alpha_queries_are_out() {
    // Proves next_query hands out at most alpha queries until one is answered or fails.
    let w = world(20, 1);
    let mut l = Lookup::new(
        OWN,
        NodeId([0; 20]),
        8,
        3,
        w.iter().map(|c| (Some(c.id), c.addr)),
    );
    let sent: Vec<_> = std::iter::from_fn(|| l.next_query()).collect();
    assert_eq!(sent.len(), 3);
    assert_eq!(l.in_flight(), 3);
    let first = w.iter().find(|c| c.addr == sent[0]).unwrap();
    l.handle_response(sent[0], first.id, &[], None);
    assert_eq!(l.in_flight(), 2);
    assert!(l.next_query().is_some());
    assert!(l.next_query().is_none());
}

#[test]
fn converges_on_the_true_k_closest() {
    // Proves a lookup through nodes that each know part of the world finds the k nodes closest
    // to the target, and then reports itself done with nothing out.
    let w = world(300, 2);
    let target = NodeId([0x3c; 20]);
    // Each node knows its 8 nearest neighbours and one node at each distance class (the first
    // node in `w` sharing exactly b bits with it, for every b): a Kademlia-like topology.
    let knows = |node: &CompactNode| -> Vec<CompactNode> {
        let mut v = closest(&w, &node.id, 9);
        for bits in 0..8 {
            if let Some(c) = w.iter().find(|c| node.id.common_prefix_len(&c.id) == bits) {
                v.push(*c);
            }
        }
        v.retain(|c| c.addr != node.addr);
        closest(&v, &target, 8)
    };
    // Start from the four nodes farthest from the target.
    let far = closest(&w, &target, w.len());
    let seeds = far[far.len() - 4..].iter().map(|c| (Some(c.id), c.addr));
    let mut l = Lookup::new(OWN, target, 8, 3, seeds);
    let mut queries = 0;
    while let Some(to) = l.next_query() {
        queries += 1;
        let node = *w.iter().find(|c| c.addr == to).unwrap();
        l.handle_response(to, node.id, &knows(&node), None);
        assert!(queries < 200, "does not converge");
    }
    assert!(l.is_done());
    assert_eq!(l.in_flight(), 0);
    assert_eq!(l.answered(8), closest(&w, &target, 8));
    assert!(queries > 8, "the seeds are far: several hops");
}

#[test]
fn failures_free_slots_and_are_skipped() {
    // Proves a failed (timed-out) query frees its slot at once, the failed node leaves the k
    // closest, and the next closest is asked instead.
    let w = world(12, 3);
    let target = NodeId([0; 20]);
    let mut l = Lookup::new(OWN, target, 2, 1, w.iter().map(|c| (Some(c.id), c.addr)));
    let order = closest(&w, &target, 12);
    let first = l.next_query().unwrap();
    assert_eq!(first, order[0].addr);
    assert!(l.next_query().is_none(), "alpha = 1");
    l.handle_failure(first);
    assert_eq!(l.in_flight(), 0);
    let second = l.next_query().unwrap();
    assert_eq!(second, order[1].addr);
    l.handle_response(second, order[1].id, &[], None);
    let third = l.next_query().unwrap();
    assert_eq!(third, order[2].addr, "the failed node is skipped");
    l.handle_response(third, order[2].id, &[], None);
    assert!(l.is_done(), "k = 2 closest non-failed answered");
    assert!(l.next_query().is_none());
}

#[test]
fn unknown_seeds_go_first_then_take_their_place() {
    // Proves bootstrap addresses (no id yet) are asked first, and once they answer sit by their
    // id's distance; an answer with our own id counts as a failure.
    let target = NodeId([0; 20]);
    let near = CompactNode {
        id: NodeId([0; 20]),
        addr: addr(1),
    };
    let boot = addr(99);
    let mine = addr(98);
    let mut l = Lookup::new(
        OWN,
        target,
        8,
        3,
        [(Some(near.id), near.addr), (None, boot), (None, mine)],
    );
    assert_eq!(l.candidates()[0].id, None);
    let a = l.next_query().unwrap();
    let b = l.next_query().unwrap();
    assert!([a, b].contains(&boot) && [a, b].contains(&mine));
    l.handle_response(boot, NodeId([0xff; 20]), &[], None);
    l.handle_response(mine, OWN, &[], None);
    let c = l.candidates();
    assert_eq!(c.last().unwrap().addr, boot, "farthest from the target");
    assert!(
        c.iter()
            .any(|c| c.addr == mine && c.state == CandidateState::Failed)
    );
}

#[test]
fn candidates_and_peers_are_bounded_and_deduplicated() {
    // Proves at most MAX_CANDIDATES candidates (the closest) are kept, no address or id twice,
    // and peers are reported once each, up to MAX_LOOKUP_PEERS, port 0 never.
    let w = world(500, 4);
    let target = NodeId([0x11; 20]);
    let mut l = Lookup::new(OWN, target, 8, 3, [(Some(w[0].id), w[0].addr)]);
    let to = l.next_query().unwrap();
    l.handle_response(to, w[0].id, &w, None);
    l.handle_response(to, w[0].id, &w, None);
    assert_eq!(l.candidates().len(), MAX_CANDIDATES);
    let ids: Vec<NodeId> = l.candidates().iter().filter_map(|c| c.id).collect();
    let expected: Vec<NodeId> = closest(&w, &target, MAX_CANDIDATES)
        .iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(ids, expected);
    let peers: Vec<SocketAddr> = (0..1500)
        .map(|i| SocketAddr::from(([1, 2, (i >> 8) as u8, i as u8], 1 + i as u16)))
        .collect();
    assert_eq!(l.handle_values(&peers[..10]).len(), 10);
    assert_eq!(l.handle_values(&peers[..20]).len(), 10, "only the new ones");
    assert!(
        l.handle_values(&[SocketAddr::from(([1, 1, 1, 1], 0))])
            .is_empty()
    );
    l.handle_values(&peers);
    assert_eq!(l.peer_count(), MAX_LOOKUP_PEERS);
}

#[test]
fn announce_targets_are_the_closest_that_gave_a_token() {
    // Proves announce_peer goes to the k closest answered nodes that handed out a token.
    let w = world(10, 5);
    let target = NodeId([0; 20]);
    let order = closest(&w, &target, 10);
    let mut l = Lookup::new(OWN, target, 3, 10, w.iter().map(|c| (Some(c.id), c.addr)));
    while let Some(to) = l.next_query() {
        let node = order.iter().find(|c| c.addr == to).unwrap();
        let token = (node.addr != order[1].addr).then(|| Token::new(b"tok".to_vec()).unwrap());
        l.handle_response(to, node.id, &[], token);
    }
    let targets: Vec<SocketAddr> = l.announce_targets(3).iter().map(|t| t.1).collect();
    assert_eq!(targets, vec![order[0].addr, order[2].addr]);
}
