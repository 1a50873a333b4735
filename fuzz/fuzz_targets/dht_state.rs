//! Fuzzes the saved DHT routing table (`dht.dat`) as the runtime loads it: the first byte says
//! whether the node is on an IPv6 socket, the rest is the file. `load_state` never panics; what it
//! accepts has at most `MAX_SAVED_NODES` nodes, the IPv4 ones first, and round-trips through
//! `save_state` (which is a fixed point). `bt_runtime::dht::restore_node`, what the driver starts
//! from, fails exactly when `load_state` does, keeps the saved id, pings only saved nodes (port
//! not 0, at most one query per node and within the in-flight bound) from that id, and its own
//! saved table (`encode_state`) loads with that id.
#![no_main]

use std::collections::HashMap;

use bt_protocol::dht::{
    Body, DhtConfig, MAX_SAVED_NODES, MAX_STATE_LEN, Message, Query, load_state, save_state,
};
use bt_protocol::rng::Rng;
use bt_protocol::time::Instant;
use bt_runtime::dht::{encode_state, restore_node};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [control, state @ ..] = data else {
        return;
    };
    let ipv6 = control & 1 != 0;
    let loaded = load_state(state);
    if state.len() > MAX_STATE_LEN {
        assert!(loaded.is_err(), "a file over MAX_STATE_LEN is refused");
    }
    if let Ok((id, nodes)) = &loaded {
        assert!(nodes.len() <= MAX_SAVED_NODES);
        let first_v6 = nodes.iter().position(|(_, a)| a.is_ipv6());
        if let Some(first_v6) = first_v6 {
            assert!(
                nodes[first_v6..].iter().all(|(_, a)| a.is_ipv6()),
                "IPv4 first"
            );
        }
        let saved = save_state(*id, nodes);
        assert_eq!(load_state(&saved).as_ref(), Ok(&(*id, nodes.clone())));
        let (id2, nodes2) = load_state(&saved).expect("loads");
        assert_eq!(
            save_state(id2, &nodes2),
            saved,
            "save_state is a fixed point"
        );
    }

    let mut rng = Rng::new(u64::from(*control));
    let (mut dht, error) = restore_node(Some(state), ipv6, Instant::ZERO, &mut rng);
    assert_eq!(
        error,
        loaded.as_ref().err().cloned(),
        "the runtime reports what failed"
    );
    let nodes = match &loaded {
        Ok((id, nodes)) => {
            assert_eq!(dht.id(), *id, "the saved id is kept");
            nodes.clone()
        }
        Err(_) => Vec::new(),
    };
    // How many times each address was saved (with a port): each ping needs one.
    let mut allowed: HashMap<_, usize> = HashMap::new();
    for (_, addr) in nodes.iter().filter(|(_, a)| a.port() != 0) {
        *allowed.entry(*addr).or_default() += 1;
    }
    let mut pings = 0;
    while let Some(t) = dht.poll_transmit() {
        let left = allowed
            .get_mut(&t.to)
            .unwrap_or_else(|| panic!("a ping to {} was not saved", t.to));
        assert!(*left > 0, "more pings to {} than it was saved", t.to);
        *left -= 1;
        let message = Message::decode(&t.bytes).expect("valid KRPC");
        assert_eq!(message.body, Body::Query(Query::Ping { id: dht.id() }));
        pings += 1;
    }
    assert!(pings <= DhtConfig::default().max_queries_in_flight);
    if !allowed.is_empty() {
        assert!(pings > 0, "a saved node is pinged");
    }
    let (id, _) = load_state(&encode_state(&dht)).expect("the node's own table loads");
    assert_eq!(id, dht.id());
});
