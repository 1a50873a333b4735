//! Tests of the DHT state file: the round trip with IPv4 and IPv6 nodes, the node bound, and a
//! clear error for each kind of malformed input.

use core::net::{SocketAddr, SocketAddrV6};

use proptest::prelude::*;

use super::*;
use crate::mutation::{check_accepts_some, mutated, mutations};

fn sample() -> (NodeId, Vec<(NodeId, SocketAddr)>) {
    let nodes = vec![
        (NodeId([1; 20]), "10.0.0.1:6881".parse().unwrap()),
        (NodeId([2; 20]), "[2001:db8::1]:6882".parse().unwrap()),
        (NodeId([3; 20]), "192.168.1.9:1".parse().unwrap()),
    ];
    (NodeId([9; 20]), nodes)
}

#[test]
fn round_trip_keeps_id_and_nodes() {
    // Proves load_state(save_state(id, nodes)) gives back the id and the nodes (IPv4 first).
    let (id, nodes) = sample();
    let bytes = save_state(id, &nodes);
    let (got_id, got) = load_state(&bytes).unwrap();
    assert_eq!(got_id, id);
    assert_eq!(got, vec![nodes[0], nodes[2], nodes[1]]);
    // An empty table round-trips too.
    assert_eq!(load_state(&save_state(id, &[])).unwrap(), (id, vec![]));
}

#[test]
fn at_most_max_saved_nodes_are_read() {
    // Proves the node bound holds on loading (and saving) however many nodes the file holds.
    let many: Vec<(NodeId, SocketAddr)> = (0..1500u32)
        .map(|i| {
            let addr = SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 6881));
            (NodeId([(i % 251) as u8; 20]), addr)
        })
        .collect();
    let bytes = save_state(NodeId([1; 20]), &many);
    assert_eq!(load_state(&bytes).unwrap().1.len(), MAX_SAVED_NODES);
    let mut nodes = Vec::new();
    for (id, addr) in &many {
        nodes.extend_from_slice(&id.0);
        if let SocketAddr::V4(a) = addr {
            nodes.extend_from_slice(&a.ip().octets());
        }
        nodes.extend_from_slice(&addr.port().to_be_bytes());
    }
    let mut raw = b"d2:id20:aaaaaaaaaaaaaaaaaaaa5:nodes".to_vec();
    raw.extend_from_slice(format!("{}:", nodes.len()).as_bytes());
    raw.extend_from_slice(&nodes);
    raw.push(b'e');
    assert_eq!(load_state(&raw).unwrap().1.len(), MAX_SAVED_NODES);
}

#[test]
fn malformed_state_is_refused_clearly() {
    // Proves each malformation gets its own error and none panics.
    assert!(matches!(
        load_state(b"d2:id"),
        Err(DhtStateError::Bencode(_))
    ));
    assert_eq!(load_state(b"li1ee"), Err(DhtStateError::NotADict));
    assert_eq!(load_state(b"de"), Err(DhtStateError::BadId));
    assert_eq!(load_state(b"d2:id3:abce"), Err(DhtStateError::BadId));
    assert_eq!(
        load_state(b"d2:id20:aaaaaaaaaaaaaaaaaaaa5:nodes3:abce"),
        Err(DhtStateError::BadNodes {
            key: "nodes",
            node_len: 26
        })
    );
    assert_eq!(
        load_state(b"d2:id20:aaaaaaaaaaaaaaaaaaaa6:nodes6i1ee"),
        Err(DhtStateError::BadNodes {
            key: "nodes6",
            node_len: 38
        })
    );
    let huge = vec![b'x'; MAX_STATE_LEN + 1];
    assert!(matches!(
        load_state(&huge),
        Err(DhtStateError::TooLong { .. })
    ));
    // Missing node lists read as none.
    assert_eq!(
        load_state(b"d2:id20:aaaaaaaaaaaaaaaaaaaae").unwrap(),
        (NodeId(*b"aaaaaaaaaaaaaaaaaaaa"), vec![])
    );
}

fn node() -> impl Strategy<Value = (NodeId, SocketAddr)> {
    let addr =
        prop_oneof![
            any::<core::net::SocketAddrV4>().prop_map(SocketAddr::V4),
            (any::<[u8; 16]>(), any::<u16>())
                .prop_map(|(ip, port)| SocketAddr::V6(SocketAddrV6::new(ip.into(), port, 0, 0))),
        ];
    (any::<[u8; 20]>().prop_map(NodeId), addr)
}

/// A node id and up to 40 nodes of both families.
fn table() -> impl Strategy<Value = (NodeId, Vec<(NodeId, SocketAddr)>)> {
    (
        any::<[u8; 20]>().prop_map(NodeId),
        proptest::collection::vec(node(), 0..40),
    )
}

/// `nodes` as the state file lists them: IPv4 ones first, each family in its order.
fn ipv4_first(nodes: &[(NodeId, SocketAddr)]) -> Vec<(NodeId, SocketAddr)> {
    let (v4, v6): (Vec<_>, Vec<_>) = nodes.iter().partition(|(_, a)| a.is_ipv4());
    v4.into_iter().chain(v6).collect()
}

/// The state file laid out by hand from the module's description, keys in canonical order, with
/// an unknown key and, when there are no nodes of a family, no key for it.
fn handwritten(id: NodeId, nodes: &[(NodeId, SocketAddr)]) -> Vec<u8> {
    let mut lists = [Vec::new(), Vec::new()];
    for (node, addr) in nodes {
        let list = &mut lists[usize::from(addr.is_ipv6())];
        list.extend_from_slice(&node.0);
        match addr {
            SocketAddr::V4(a) => list.extend_from_slice(&a.ip().octets()),
            SocketAddr::V6(a) => list.extend_from_slice(&a.ip().octets()),
        }
        list.extend_from_slice(&addr.port().to_be_bytes());
    }
    let mut out = b"d2:id20:".to_vec();
    out.extend_from_slice(&id.0);
    for (key, list) in ["5:nodes", "6:nodes6"].iter().zip(&lists) {
        if !list.is_empty() {
            out.extend_from_slice(format!("{key}{}:", list.len()).as_bytes());
            out.extend_from_slice(list);
        }
    }
    out.extend_from_slice(b"7:versioni2ee");
    out
}

proptest! {
    #[test]
    fn saved_and_handwritten_states_load_to_the_model((id, nodes) in table()) {
        // Proves a state of any id and nodes of both families loads back exactly, IPv4 first,
        // whether save_state wrote it or it was laid out by hand (absent keys, unknown keys).
        let expected = (id, ipv4_first(&nodes));
        prop_assert_eq!(load_state(&save_state(id, &nodes)), Ok(expected.clone()));
        prop_assert_eq!(load_state(&handwritten(id, &nodes)), Ok(expected));
    }
}

#[test]
fn mutated_states_load_within_the_invariants() {
    // Proves edited state files either load within the bounds, at most one node per 26 bytes
    // and saving back to a state that loads the same, or are refused, and that both occur.
    check_accepts_some(256, (table(), mutations(4)), |((id, nodes), edits)| {
        let bytes = mutated(&save_state(id, &nodes), &edits);
        let Ok((id, nodes)) = load_state(&bytes) else {
            return Ok(false);
        };
        prop_assert!(nodes.len() <= MAX_SAVED_NODES);
        prop_assert!(nodes.len() <= bytes.len() / 26);
        prop_assert_eq!(load_state(&save_state(id, &nodes)), Ok((id, nodes)));
        Ok(true)
    });
}
