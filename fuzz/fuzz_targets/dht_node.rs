//! Feeds a script cut from the input to a `bt_protocol::dht::Dht` node with small bounds: each
//! record is a control byte, a length byte and that many bytes. The control byte's low 3 bits
//! pick the step: a raw datagram; a datagram that, if it decodes as KRPC, gets the transaction id
//! of our last query to that address patched in (so seeds' responses match); a response built
//! from the bytes (id, nodes within a small address space, values, token) answering our last
//! query there; a time jump with `handle_timeout`; or a command (`add_node`, `bootstrap`,
//! `get_peers`, `announce`). Bits 3-4 pick which of four addresses (three IPv4, one IPv6) it is
//! from; bit 5 sets BEP 43 `ro`. After every step: nothing panicked; queries in flight, lookups
//! running and waiting, queued datagrams and events, routing tables (buckets, bucket sizes,
//! replacements) and the peer store are within their bounds; after `handle_timeout` the next
//! deadline is in the future; every datagram sent is valid KRPC of at most 1,500 bytes; every
//! lookup ends at most once and its events name a lookup we started.
#![no_main]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use bt_protocol::dht::{
    Body, CompactNode, Dht, DhtConfig, DhtEvent, LookupId, MAX_BUCKETS, Message, NodeId,
    PeerStoreConfig, REPLACEMENT_CACHE, Response, Token, TransactionId,
};
use bt_protocol::metainfo::InfoHash;
use bt_protocol::rng::Rng;
use bt_protocol::time::Instant;
use libfuzzer_sys::fuzz_target;

const OWN: NodeId = NodeId([0x77; 20]);

fn sources() -> [SocketAddr; 4] {
    [
        SocketAddr::from(([10, 0, 0, 1], 6881)),
        SocketAddr::from(([10, 0, 0, 2], 6881)),
        SocketAddr::from(([10, 0, 0, 3], 1)),
        SocketAddr::from(([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1], 6881)),
    ]
}

/// A node address from one byte: one of the sources half the time, else some other address.
fn node_addr(b: u8) -> SocketAddr {
    if b & 1 == 0 {
        sources()[usize::from(b >> 1) % 4]
    } else if b & 2 == 0 {
        SocketAddr::from(([10, 0, 1, b], 6881))
    } else {
        SocketAddr::from(([0x2001, 0xdb8, 0, 0, 0, 0, 1, u16::from(b)], 6881))
    }
}

/// A node id from one byte: few distinct ids, so collisions (and our own id) happen.
fn node_id(b: u8) -> NodeId {
    if b == 0x77 {
        OWN
    } else {
        let mut id = [b; 20];
        id[19] = b.wrapping_mul(31);
        NodeId(id)
    }
}

/// A response built from `bytes`: id, then 2-byte nodes (id byte, address byte) to `nodes` and
/// `nodes6` by family, then peers, and a token when `bytes` is odd in length.
fn response(bytes: &[u8]) -> Response {
    let (first, rest) = bytes.split_first().unwrap_or((&0, &[]));
    let mut r = Response {
        id: node_id(*first),
        token: (bytes.len() % 2 == 1)
            .then(|| Token::new(bytes.get(..4).unwrap_or(b"t").to_vec()).expect("4 bytes")),
        ..Response::default()
    };
    let (nodes, peers) = rest.split_at(rest.len().min(16));
    for pair in nodes.chunks_exact(2) {
        let node = CompactNode {
            id: node_id(pair[0]),
            addr: node_addr(pair[1]),
        };
        if node.addr.is_ipv4() {
            r.nodes.push(node);
        } else {
            r.nodes6.push(node);
        }
    }
    for p in peers {
        r.values
            .push(SocketAddr::from(([1, 2, 3, *p], u16::from(*p))));
    }
    r
}

fuzz_target!(|data: &[u8]| {
    let config = DhtConfig {
        k: 4,
        max_lookups: 2,
        max_pending_lookups: 2,
        max_queries_in_flight: 8,
        max_transmits: 16,
        max_events: 6,
        max_values_per_answer: 5,
        ipv6: data.first().is_some_and(|b| b & 1 == 1),
        store: PeerStoreConfig {
            max_info_hashes: 3,
            max_peers_per_hash: 3,
            ttl: Duration::from_secs(120),
        },
        ..DhtConfig::default()
    };
    let mut dht = Dht::new(config, OWN, Rng::new(7));
    let sources = sources();
    let mut now = Instant::ZERO;
    let mut last_tx: [Option<TransactionId>; 4] = Default::default();
    let mut started: BTreeSet<LookupId> = BTreeSet::new();
    let mut ended: BTreeSet<LookupId> = BTreeSet::new();
    let mut input = data.get(1..).unwrap_or(&[]);
    let mut step = 0u64;
    while let [control, len, rest @ ..] = input {
        let take = usize::from(*len).min(rest.len());
        let (bytes, tail) = rest.split_at(take);
        input = tail;
        step += 1;
        let source = usize::from((control >> 3) & 3);
        let from = sources[source];
        let read_only = control & 0x20 != 0;
        let mut timed_out = false;
        match control & 7 {
            0 => dht.handle_datagram(now, from, bytes),
            1 => {
                if let Ok(mut m) = Message::decode(bytes) {
                    if let Some(t) = &last_tx[source] {
                        m.transaction = t.clone();
                    }
                    m.read_only |= read_only;
                    dht.handle_datagram(now, from, &m.encode());
                } else {
                    dht.handle_datagram(now, from, bytes);
                }
            }
            2 => {
                let Some(t) = last_tx[source].clone() else {
                    continue;
                };
                let body = if control & 0x40 != 0 {
                    Body::Error {
                        code: 201,
                        message: "x".into(),
                    }
                } else {
                    Body::Response(response(bytes))
                };
                let m = Message {
                    transaction: t,
                    version: None,
                    ip: None,
                    read_only,
                    body,
                };
                dht.handle_datagram(now, from, &m.encode());
            }
            3 => {
                let jump = u64::from(bytes.first().copied().unwrap_or(1));
                now = now + Duration::from_millis(jump * jump * 40);
                dht.handle_timeout(now);
                timed_out = true;
            }
            4 => dht.add_node(now, node_addr(bytes.first().copied().unwrap_or(0))),
            5 => dht.bootstrap(now),
            6 | 7 => {
                let hash = InfoHash([bytes.first().copied().unwrap_or(0) % 3; 20]);
                let id = if control & 7 == 6 {
                    dht.get_peers(now, hash)
                } else {
                    let port = bytes.get(1).map(|p| u16::from(*p));
                    dht.announce(now, hash, port)
                };
                assert!(started.insert(id), "lookup ids are fresh");
            }
            _ => unreachable!(),
        }

        let c = *dht.config();
        assert!(dht.queries_in_flight() <= c.max_queries_in_flight);
        assert!(dht.lookup_count() <= c.max_lookups);
        assert!(dht.pending_lookup_count() <= c.max_pending_lookups);
        assert!(dht.queued_transmits() <= c.max_transmits);
        assert!(dht.queued_events() <= c.max_events);
        for v6 in [false, true] {
            let t = dht.routing_table(v6);
            assert!(t.bucket_count() <= MAX_BUCKETS);
            assert!(t.max_bucket_len() <= c.k);
            assert!(t.replacement_count() <= t.bucket_count() * REPLACEMENT_CACHE);
            assert!(t.nodes().all(|n| n.id != OWN));
        }
        assert!(dht.peer_store().info_hash_count() <= c.store.max_info_hashes);
        assert!(dht.peer_store().max_peers_held() <= c.store.max_peers_per_hash);
        if timed_out {
            assert!(
                dht.poll_timeout().is_none_or(|t| t > now),
                "deadline in the past"
            );
        }
        // Leave the queues undrained now and then, so their bounds are reached.
        if step % 5 == 4 {
            continue;
        }
        while let Some(t) = dht.poll_transmit() {
            assert!(t.bytes.len() <= 1500, "datagram of {} bytes", t.bytes.len());
            let m = Message::decode(&t.bytes).expect("we send valid KRPC");
            if let Body::Query(_) = m.body
                && let Some(i) = sources.iter().position(|s| *s == t.to)
            {
                last_tx[i] = Some(m.transaction);
            }
        }
        while let Some(event) = dht.poll_event() {
            match event {
                DhtEvent::Peers { lookup, peers, .. } => {
                    assert!(started.contains(&lookup) && !ended.contains(&lookup));
                    assert!(!peers.is_empty());
                }
                DhtEvent::LookupDone { lookup, .. } => {
                    assert!(started.contains(&lookup));
                    assert!(ended.insert(lookup), "a lookup ended twice");
                }
                DhtEvent::Bootstrapped { nodes } => assert!(nodes > 0),
            }
        }
    }
});
