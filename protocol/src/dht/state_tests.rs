//! Tests of the DHT state file: the round trip with IPv4 and IPv6 nodes, the node bound, and a
//! clear error for each kind of malformed input.

use core::net::SocketAddr;

use super::*;

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

proptest::proptest! {
    #[test]
    fn load_state_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
        // Proves arbitrary bytes are loaded or refused, never a panic, and never over the bound.
        if let Ok((_, nodes)) = load_state(&bytes) {
            proptest::prop_assert!(nodes.len() <= MAX_SAVED_NODES);
        }
    }
}
