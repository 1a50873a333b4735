//! Tests of the [`Dht`] node machine: each server answer (ping, find_node by family, get_peers,
//! announce_peer, errors 203 and 204, BEP 43 read-only), matching answers to our queries,
//! timeouts, the lookup bounds, announces, bootstrap, and proptests of arbitrary datagrams.

use core::net::SocketAddr;
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::metainfo::InfoHash;
use crate::rng::Rng;
use crate::time::Instant;

const OWN: NodeId = NodeId([0x77; 20]);

fn dht() -> Dht {
    Dht::new(DhtConfig::default(), OWN, Rng::new(1))
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn v4(n: u32) -> SocketAddr {
    SocketAddr::from(([10, 1, (n >> 8) as u8, n as u8], 6881))
}

fn message(t: &[u8], read_only: bool, body: Body) -> Vec<u8> {
    Message {
        transaction: TransactionId::new(t).unwrap(),
        version: None,
        ip: None,
        read_only,
        body,
    }
    .encode()
}

fn query(q: Query) -> Vec<u8> {
    message(b"qq", false, Body::Query(q))
}

fn response(t: &TransactionId, r: Response) -> Vec<u8> {
    message(t.as_bytes(), false, Body::Response(r))
}

/// Every queued datagram, decoded.
fn drain(d: &mut Dht) -> Vec<(SocketAddr, Message)> {
    std::iter::from_fn(|| d.poll_transmit())
        .map(|t| (t.to, Message::decode(&t.bytes).expect("we send valid KRPC")))
        .collect()
}

/// The one datagram queued, to `to`.
fn only(d: &mut Dht, to: SocketAddr) -> Message {
    let mut out = drain(d);
    assert_eq!(out.len(), 1, "{out:?}");
    let (dest, m) = out.pop().unwrap();
    assert_eq!(dest, to);
    m
}

fn id_n(n: u32) -> NodeId {
    let mut b = [0u8; 20];
    Rng::new(u64::from(n) + 1000).fill(&mut b);
    NodeId(b)
}

/// Pings `d` from `n` nodes at `addr_of(i)`, so they sit in its table (questionable).
fn fill(d: &mut Dht, n: u32, addr_of: impl Fn(u32) -> SocketAddr) {
    for i in 0..n {
        d.handle_datagram(
            Instant::ZERO,
            addr_of(i),
            &query(Query::Ping { id: id_n(i) }),
        );
    }
    drain(d);
}

/// Adds `addr` as a node that answered our ping with `id`.
fn befriend(d: &mut Dht, now: Instant, to: SocketAddr, id: NodeId) {
    d.add_node(now, to);
    let ping = only(d, to);
    d.handle_datagram(
        now,
        to,
        &response(
            &ping.transaction,
            Response {
                id,
                ..Response::default()
            },
        ),
    );
    drain(d);
}

fn response_of(m: &Message) -> &Response {
    match &m.body {
        Body::Response(r) => r,
        other => panic!("not a response: {other:?}"),
    }
}

fn error_code(m: &Message) -> i64 {
    match &m.body {
        Body::Error { code, .. } => *code,
        other => panic!("not an error: {other:?}"),
    }
}

#[test]
fn ping_is_answered_and_the_querier_added() {
    // Proves a ping gets our id, its transaction id and (BEP 42) the querier's address back, and
    // that the querier joins the table, questionable until it answers us.
    let mut d = dht();
    let from = addr("10.0.0.5:4000");
    d.handle_datagram(Instant::ZERO, from, &query(Query::Ping { id: id_n(1) }));
    let m = only(&mut d, from);
    assert_eq!(m.transaction.as_bytes(), b"qq");
    assert_eq!(m.ip, Some(from));
    assert_eq!(response_of(&m).id, OWN);
    assert_eq!(d.node_count(), 1);
    assert_eq!(
        d.routing_table(false).status(Instant::ZERO, &id_n(1)),
        Some(NodeStatus::Questionable)
    );
}

#[test]
fn find_node_answers_the_k_closest_of_the_wanted_families() {
    // Proves find_node returns the k closest nodes, of the querier's family by default and of
    // the families BEP 32 `want` names otherwise.
    let mut d = dht();
    fill(&mut d, 20, v4);
    fill(&mut d, 5, |i| {
        SocketAddr::from(([0x2001, 0xdb8, 0, 0, 0, 0, 0, i as u16 + 1], 6881))
    });
    assert_eq!(d.routing_table(true).len(), 5);
    assert!(
        d.routing_table(false).len() > 8,
        "a full bucket caches the rest"
    );
    let target = NodeId([0x10; 20]);
    let ask = |d: &mut Dht, from: SocketAddr, want: Want| {
        d.handle_datagram(
            Instant::ZERO,
            from,
            &query(Query::FindNode {
                id: id_n(99),
                target,
                want,
            }),
        );
        // (A querier landing in a full bucket may also make us ping a questionable node.)
        let out = drain(d);
        let (_, m) = out.iter().find(|(to, _)| *to == from).expect("an answer");
        response_of(m).clone()
    };
    let v4_querier = addr("10.9.9.9:1");
    let r = ask(&mut d, v4_querier, Want::default());
    let mut expected = d.routing_table(false).closest(&target, 9);
    expected.retain(|n| n.addr != v4_querier);
    expected.truncate(8);
    assert_eq!(r.nodes, expected);
    assert_eq!(r.nodes.len(), 8);
    assert!(r.nodes6.is_empty());
    let r = ask(
        &mut d,
        v4_querier,
        Want {
            n4: false,
            n6: true,
        },
    );
    assert!(r.nodes.is_empty());
    assert_eq!(r.nodes6.len(), 5);
    let v6_querier = addr("[2001:db8::99]:1");
    let r = ask(&mut d, v6_querier, Want::default());
    assert!(r.nodes.is_empty());
    assert_eq!(r.nodes6.len(), 5);
    let r = ask(&mut d, v6_querier, Want { n4: true, n6: true });
    assert_eq!((r.nodes.len(), r.nodes6.len()), (8, 5));
}

#[test]
fn get_peers_and_announce_peer_with_tokens() {
    // Proves get_peers always gives a token and nodes, announce_peer with that token stores the
    // peer (implied_port honoured), and a later get_peers returns it in `values`.
    let mut d = dht();
    fill(&mut d, 10, v4);
    let hash = InfoHash([0xab; 20]);
    let a = addr("10.0.0.1:5000");
    let get = |d: &mut Dht, from: SocketAddr| {
        d.handle_datagram(
            Instant::ZERO,
            from,
            &query(Query::GetPeers {
                id: id_n(50),
                info_hash: hash,
                want: Want::default(),
            }),
        );
        response_of(&only(d, from)).clone()
    };
    let r = get(&mut d, a);
    assert!(r.values.is_empty());
    assert_eq!(r.nodes.len(), 8);
    let token = r.token.expect("a token");
    assert_eq!(token.as_bytes().len(), TOKEN_LEN);
    let announce = |port, implied_port, token: &Token| {
        query(Query::AnnouncePeer {
            id: id_n(50),
            info_hash: hash,
            port,
            implied_port,
            token: token.clone(),
        })
    };
    d.handle_datagram(Instant::ZERO, a, &announce(7000, false, &token));
    assert_eq!(response_of(&only(&mut d, a)).id, OWN);
    let b = addr("10.0.0.2:5000");
    assert_eq!(get(&mut d, b).values, vec![addr("10.0.0.1:7000")]);
    // implied_port: the UDP source port is stored instead.
    d.handle_datagram(Instant::ZERO, a, &announce(7000, true, &token));
    only(&mut d, a);
    let values = get(&mut d, b).values;
    assert_eq!(values.len(), 2);
    assert!(values.contains(&a));
    // An IPv6 querier gets no IPv4 values.
    assert!(get(&mut d, addr("[::1]:5000")).values.is_empty());
}

#[test]
fn bad_tokens_and_ports_get_error_203() {
    // Proves announce_peer with a made-up token, another IP's token, or port 0 is refused with
    // KRPC error 203 and stores nothing.
    let mut d = dht();
    let hash = InfoHash([1; 20]);
    let (a, c) = (addr("10.0.0.1:5000"), addr("10.0.0.3:5000"));
    d.handle_datagram(
        Instant::ZERO,
        a,
        &query(Query::GetPeers {
            id: id_n(1),
            info_hash: hash,
            want: Want::default(),
        }),
    );
    let token = response_of(&only(&mut d, a)).token.clone().unwrap();
    let announce = |port, token: Token| {
        query(Query::AnnouncePeer {
            id: id_n(1),
            info_hash: hash,
            port,
            implied_port: false,
            token,
        })
    };
    d.handle_datagram(
        Instant::ZERO,
        a,
        &announce(7000, Token::new(*b"wrong!!!").unwrap()),
    );
    assert_eq!(error_code(&only(&mut d, a)), ERROR_PROTOCOL);
    d.handle_datagram(Instant::ZERO, c, &announce(7000, token.clone()));
    assert_eq!(error_code(&only(&mut d, c)), ERROR_PROTOCOL);
    d.handle_datagram(Instant::ZERO, a, &announce(0, token.clone()));
    assert_eq!(error_code(&only(&mut d, a)), ERROR_PROTOCOL);
    assert_eq!(d.peer_store().peer_count(), 0);
    // The token survives one rotation (5 minutes), not two.
    let t = |secs: u64| Instant::from_micros(secs * 1_000_000);
    d.handle_timeout(t(301));
    d.handle_datagram(t(301), a, &announce(7000, token.clone()));
    assert_eq!(response_of(&only(&mut d, a)).id, OWN);
    d.handle_timeout(t(602));
    d.handle_datagram(t(602), a, &announce(7000, token));
    assert_eq!(error_code(&only(&mut d, a)), ERROR_PROTOCOL);
}

#[test]
fn unknown_method_gets_error_204() {
    // Proves a query of a method bt does not know is answered with KRPC error 204.
    let mut d = dht();
    let from = addr("10.0.0.1:1");
    d.handle_datagram(
        Instant::ZERO,
        from,
        &query(Query::Unknown {
            method: Method::new(*b"vote").unwrap(),
            id: id_n(1),
        }),
    );
    let m = only(&mut d, from);
    assert_eq!(error_code(&m), ERROR_METHOD_UNKNOWN);
    assert_eq!(m.transaction.as_bytes(), b"qq");
}

#[test]
fn read_only_nodes_are_answered_not_added() {
    // Proves (BEP 43) a query with ro=1 is answered but its sender stays out of the table, and
    // that a read-only node answers nothing and marks its own queries ro=1.
    let mut d = dht();
    let from = addr("10.0.0.1:1");
    d.handle_datagram(
        Instant::ZERO,
        from,
        &message(b"aa", true, Body::Query(Query::Ping { id: id_n(1) })),
    );
    assert_eq!(response_of(&only(&mut d, from)).id, OWN);
    assert_eq!(d.node_count(), 0);
    let config = DhtConfig {
        read_only: true,
        ..DhtConfig::default()
    };
    let mut ro = Dht::new(config, OWN, Rng::new(2));
    ro.handle_datagram(Instant::ZERO, from, &query(Query::Ping { id: id_n(1) }));
    assert!(drain(&mut ro).is_empty());
    ro.add_node(Instant::ZERO, from);
    assert!(only(&mut ro, from).read_only);
}

#[test]
fn answers_count_only_from_the_queried_address_and_transaction() {
    // Proves a response from another address, or with another transaction id, is dropped, and
    // the right one adds the node; a replay changes nothing.
    let mut d = dht();
    let a = addr("10.0.0.1:6881");
    d.add_node(Instant::ZERO, a);
    let ping = only(&mut d, a);
    assert_eq!(ping.transaction.as_bytes().len(), 2);
    let good = response(
        &ping.transaction,
        Response {
            id: id_n(1),
            ..Response::default()
        },
    );
    d.handle_datagram(Instant::ZERO, addr("10.0.0.2:6881"), &good);
    d.handle_datagram(Instant::ZERO, addr("10.0.0.1:6882"), &good);
    let mut other = ping.transaction.as_bytes().to_vec();
    other[0] ^= 1;
    d.handle_datagram(
        Instant::ZERO,
        a,
        &response(
            &TransactionId::new(other).unwrap(),
            Response {
                id: id_n(1),
                ..Response::default()
            },
        ),
    );
    assert_eq!(d.node_count(), 0);
    assert_eq!(d.queries_in_flight(), 1);
    d.handle_datagram(Instant::ZERO, a, &good);
    assert_eq!(d.node_count(), 1);
    assert_eq!(d.queries_in_flight(), 0);
    assert_eq!(
        d.routing_table(false).status(Instant::ZERO, &id_n(1)),
        Some(NodeStatus::Good)
    );
    d.handle_datagram(Instant::ZERO, a, &good);
    assert!(drain(&mut d).is_empty());
}

#[test]
fn unanswered_ping_times_out() {
    // Proves a query unanswered for query_timeout is dropped, and handle_timeout leaves no
    // deadline in the past.
    let mut d = dht();
    let a = addr("10.0.0.1:6881");
    d.add_node(Instant::ZERO, a);
    drain(&mut d);
    let deadline = Instant::ZERO + Duration::from_secs(5);
    assert_eq!(d.poll_timeout(), Some(deadline));
    d.handle_timeout(Instant::from_micros(4_999_999));
    assert_eq!(d.queries_in_flight(), 1, "early call");
    d.handle_timeout(deadline);
    assert_eq!(d.queries_in_flight(), 0);
    assert_eq!(d.node_count(), 0);
    assert!(d.poll_timeout().unwrap() > deadline);
}

#[test]
fn lookups_are_bounded_and_all_end() {
    // Proves at most max_lookups run and max_pending_lookups wait, further ones end at once,
    // every lookup reports LookupDone exactly once, and queries never exceed their bound.
    let mut d = dht();
    for i in 0..3 {
        d.add_node(Instant::ZERO, v4(i));
    }
    drain(&mut d);
    let hash = InfoHash([3; 20]);
    let ids: Vec<LookupId> = (0..100).map(|_| d.get_peers(Instant::ZERO, hash)).collect();
    assert_eq!(d.lookup_count(), 16);
    assert_eq!(d.pending_lookup_count(), 64);
    assert!(d.queries_in_flight() <= 256);
    for _ in 0..100 {
        drain(&mut d);
        let Some(now) = d.poll_timeout() else { break };
        if d.lookup_count() == 0 {
            break;
        }
        d.handle_timeout(now);
        assert!(d.lookup_count() <= 16);
    }
    let done: Vec<LookupId> = std::iter::from_fn(|| d.poll_event())
        .filter_map(|e| match e {
            DhtEvent::LookupDone { lookup, peers, .. } => {
                assert_eq!(peers, 0);
                Some(lookup)
            }
            _ => None,
        })
        .collect();
    let mut sorted = done.clone();
    sorted.sort();
    assert_eq!(sorted, ids);
    assert_eq!(d.lookup_count() + d.pending_lookup_count(), 0);
}

#[test]
fn a_slow_node_frees_its_slot_after_the_short_timeout_and_its_late_answer_counts() {
    // Proves a lookup keeps alpha = 3 queries out, answers free their slots at once, and a node
    // that does not answer within the short timeout (1 s) gives its slot to the next candidate
    // while its query stays out: its late answer is still taken, without freeing a slot twice.
    let mut d = dht();
    for i in 0..10 {
        befriend(&mut d, Instant::ZERO, v4(i), id_n(i));
    }
    assert_eq!(d.node_count(), 10);
    let hash = InfoHash([9; 20]);
    d.get_peers(Instant::ZERO, hash);
    let first = drain(&mut d);
    assert_eq!(first.len(), 3);
    // Two answer at once (with no nodes), the third stays silent.
    let t1 = Instant::from_micros(100_000);
    for (to, m) in &first[..2] {
        let id = (0..10)
            .map(id_n)
            .find(|id| d.routing_table(false).entry(*to).unwrap().id == *id)
            .unwrap();
        d.handle_datagram(
            t1,
            *to,
            &response(
                &m.transaction,
                Response {
                    id,
                    ..Response::default()
                },
            ),
        );
    }
    let second = drain(&mut d);
    assert_eq!(second.len(), 2, "two slots freed by the answers");
    assert_eq!(d.queries_in_flight(), 3);
    // At 1 s the silent one is slow: its slot goes to the next candidate, its query stays out.
    d.handle_timeout(Instant::from_micros(1_000_000));
    let third = drain(&mut d);
    assert_eq!(
        third.len(),
        1,
        "the short timeout frees the silent query's slot"
    );
    let silent = first[2].0;
    assert!(third.iter().all(|(to, _)| *to != silent));
    assert_eq!(d.queries_in_flight(), 4, "the slow query is still out");
    // Its late answer still counts (and takes no slot back).
    let id = d.routing_table(false).entry(silent).unwrap().id;
    d.handle_datagram(
        Instant::from_micros(1_050_000),
        silent,
        &response(
            &first[2].1.transaction,
            Response {
                id,
                ..Response::default()
            },
        ),
    );
    assert!(
        drain(&mut d).is_empty(),
        "a late answer frees no slot twice"
    );
    assert_eq!(d.queries_in_flight(), 3);
    // At 5.1 s the second wave, silent too, has failed; at most alpha queries were ever out at
    // once for slots, and every query was a get_peers.
    d.handle_timeout(Instant::from_micros(5_100_000));
    let fourth = drain(&mut d);
    assert!(
        second
            .iter()
            .chain(&third)
            .chain(&fourth)
            .all(|(_, m)| matches!(m.body, Body::Query(Query::GetPeers { .. })))
    );
}

#[test]
fn announce_uses_the_tokens_and_implied_port() {
    // Proves an announce is a get_peers lookup followed by announce_peer to the nodes that gave
    // a token, with implied_port=1 when no port is given, and LookupDone counts the acceptances.
    let mut d = dht();
    for i in 0..3 {
        befriend(&mut d, Instant::ZERO, v4(i), id_n(i));
    }
    let hash = InfoHash([4; 20]);
    let lookup = d.announce(Instant::ZERO, hash, None);
    let gets = drain(&mut d);
    assert_eq!(gets.len(), 3);
    for (i, (to, m)) in gets.iter().enumerate() {
        let id = d.routing_table(false).entry(*to).unwrap().id;
        let r = Response {
            id,
            values: vec![SocketAddr::from(([1, 2, 3, i as u8], 99))],
            token: (i != 1).then(|| Token::new(vec![i as u8; 4]).unwrap()),
            ..Response::default()
        };
        d.handle_datagram(Instant::ZERO, *to, &response(&m.transaction, r));
    }
    let announces = drain(&mut d);
    assert_eq!(announces.len(), 2, "the node without a token is skipped");
    for (to, m) in &announces {
        let Body::Query(Query::AnnouncePeer {
            implied_port,
            info_hash,
            token,
            ..
        }) = &m.body
        else {
            panic!("{m:?}");
        };
        assert!(*implied_port);
        assert_eq!(*info_hash, hash);
        assert_eq!(token.as_bytes().len(), 4);
        let id = d.routing_table(false).entry(*to).unwrap().id;
        d.handle_datagram(
            Instant::ZERO,
            *to,
            &response(
                &m.transaction,
                Response {
                    id,
                    ..Response::default()
                },
            ),
        );
    }
    let events: Vec<DhtEvent> = std::iter::from_fn(|| d.poll_event()).collect();
    let peers: usize = events
        .iter()
        .map(|e| match e {
            DhtEvent::Peers { peers, .. } => peers.len(),
            _ => 0,
        })
        .sum();
    assert_eq!(peers, 3);
    assert_eq!(
        events.last(),
        Some(&DhtEvent::LookupDone {
            lookup,
            info_hash: hash,
            peers: 3,
            announced: 2
        })
    );
}

#[test]
fn bootstrap_reports_once_and_retries_when_nobody_answers() {
    // Proves bootstrap queries the bootstrap addresses (find_node for our own id), retries after
    // BOOTSTRAP_RETRY while nobody answers, and reports Bootstrapped once when nodes arrive.
    let mut d = dht();
    let b = addr("10.0.0.1:6881");
    d.add_node(Instant::ZERO, b);
    d.bootstrap(Instant::ZERO);
    let out = drain(&mut d);
    assert_eq!(out.len(), 2, "ping and find_node");
    assert!(
        out.iter()
            .any(|(_, m)| matches!(m.body, Body::Query(Query::FindNode { target: OWN, .. })))
    );
    let mut now = Instant::ZERO + Duration::from_secs(5);
    d.handle_timeout(now);
    assert!(drain(&mut d).is_empty());
    now = now + BOOTSTRAP_RETRY;
    d.handle_timeout(now);
    let retry = drain(&mut d);
    assert_eq!(retry.len(), 1);
    let (to, m) = &retry[0];
    let r = Response {
        id: id_n(1),
        nodes: vec![CompactNode {
            id: id_n(2),
            addr: v4(2),
        }],
        ..Response::default()
    };
    d.handle_datagram(now, *to, &response(&m.transaction, r));
    let (to2, m2) = only(&mut d, v4(2)).pipe(|m| (v4(2), m));
    d.handle_datagram(
        now,
        to2,
        &response(
            &m2.transaction,
            Response {
                id: id_n(2),
                ..Response::default()
            },
        ),
    );
    assert_eq!(d.poll_event(), Some(DhtEvent::Bootstrapped { nodes: 2 }));
    assert_eq!(d.poll_event(), None);
    d.bootstrap(now);
    drain(&mut d);
    d.handle_timeout(now + Duration::from_secs(5));
    assert_eq!(d.poll_event(), None, "reported once");
}

trait Pipe: Sized {
    fn pipe<T>(self, f: impl FnOnce(Self) -> T) -> T {
        f(self)
    }
}
impl<T> Pipe for T {}

/// Asserts every bound the node promises.
fn assert_bounds(d: &Dht) {
    let c = *d.config();
    assert!(d.queries_in_flight() <= c.max_queries_in_flight);
    assert!(d.lookup_count() <= c.max_lookups);
    assert!(d.pending_lookup_count() <= c.max_pending_lookups);
    assert!(d.queued_transmits() <= c.max_transmits);
    assert!(d.queued_events() <= c.max_events);
    for v6 in [false, true] {
        let t = d.routing_table(v6);
        assert!(t.bucket_count() <= MAX_BUCKETS);
        assert!(t.max_bucket_len() <= c.k);
        assert!(t.replacement_count() <= t.bucket_count() * REPLACEMENT_CACHE);
    }
    assert!(d.peer_store().info_hash_count() <= c.store.max_info_hashes);
    assert!(d.peer_store().max_peers_held() <= c.store.max_peers_per_hash);
}

const SOURCES: [&str; 4] = [
    "10.0.0.1:6881",
    "10.0.0.2:1",
    "[2001:db8::1]:6881",
    "10.0.0.3:6881",
];

fn arb_id() -> impl Strategy<Value = NodeId> {
    prop_oneof![
        any::<[u8; 20]>().prop_map(NodeId),
        (0u8..4).prop_map(|b| NodeId([b; 20])),
        Just(OWN),
    ]
}

fn arb_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (0u8..8, 0u16..3).prop_map(|(b, p)| SocketAddr::from(([10, 0, 0, b], p))),
        (0u16..4).prop_map(|b| SocketAddr::from(([0x2001, 0xdb8, 0, 0, 0, 0, 0, b], 6881))),
        Just(addr("10.0.0.1:6881")),
    ]
}

fn arb_nodes() -> impl Strategy<Value = Vec<CompactNode>> {
    proptest::collection::vec(
        (arb_id(), arb_addr()).prop_map(|(id, addr)| CompactNode { id, addr }),
        0..12,
    )
}

fn arb_body() -> impl Strategy<Value = Body> {
    let hash = prop_oneof![any::<[u8; 20]>(), (0u8..3).prop_map(|b| [b; 20])].prop_map(InfoHash);
    let want = (any::<bool>(), any::<bool>()).prop_map(|(n4, n6)| Want { n4, n6 });
    let token = proptest::collection::vec(any::<u8>(), 0..10).prop_map(|t| Token::new(t).unwrap());
    prop_oneof![
        arb_id().prop_map(|id| Body::Query(Query::Ping { id })),
        (arb_id(), arb_id(), want.clone())
            .prop_map(|(id, target, want)| Body::Query(Query::FindNode { id, target, want })),
        (arb_id(), hash.clone(), want).prop_map(|(id, info_hash, want)| Body::Query(
            Query::GetPeers {
                id,
                info_hash,
                want
            }
        )),
        (arb_id(), hash, any::<u16>(), any::<bool>(), token.clone()).prop_map(
            |(id, info_hash, port, implied_port, token)| Body::Query(Query::AnnouncePeer {
                id,
                info_hash,
                port,
                implied_port,
                token
            })
        ),
        (
            arb_id(),
            arb_nodes(),
            arb_nodes(),
            proptest::collection::vec(arb_addr(), 0..10),
            proptest::option::of(token)
        )
            .prop_map(
                |(id, nodes, nodes6, values, token)| Body::Response(Response {
                    id,
                    nodes: nodes.into_iter().filter(|n| n.addr.is_ipv4()).collect(),
                    nodes6: nodes6.into_iter().filter(|n| n.addr.is_ipv6()).collect(),
                    values,
                    token,
                })
            ),
        (200i64..206).prop_map(|code| Body::Error {
            code,
            message: "e".into()
        }),
    ]
}

#[derive(Clone, Debug)]
enum Step {
    /// A datagram from one of SOURCES; `reply` patches in the transaction id of the last query
    /// we sent there.
    Message {
        source: usize,
        reply: bool,
        read_only: bool,
        body: Body,
    },
    Raw {
        source: usize,
        bytes: Vec<u8>,
    },
    Wait {
        millis: u64,
    },
    AddNode {
        source: usize,
    },
    Bootstrap,
    GetPeers {
        hash: u8,
    },
    Announce {
        hash: u8,
        port: Option<u16>,
    },
}

fn arb_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0..SOURCES.len(), any::<bool>(), any::<bool>(), arb_body())
            .prop_map(|(source, reply, read_only, body)| Step::Message { source, reply, read_only, body }),
        1 => (0..SOURCES.len(), proptest::collection::vec(any::<u8>(), 0..64))
            .prop_map(|(source, bytes)| Step::Raw { source, bytes }),
        2 => (0u64..400_000).prop_map(|millis| Step::Wait { millis }),
        1 => (0..SOURCES.len()).prop_map(|source| Step::AddNode { source }),
        1 => Just(Step::Bootstrap),
        1 => (0u8..3).prop_map(|hash| Step::GetPeers { hash }),
        1 => (0u8..3, proptest::option::of(any::<u16>())).prop_map(|(hash, port)| Step::Announce { hash, port }),
    ]
}

/// Runs `steps` against a node with small bounds, checking every bound after each step.
fn run_steps(steps: Vec<Step>) {
    let config = DhtConfig {
        max_lookups: 2,
        max_pending_lookups: 2,
        max_queries_in_flight: 8,
        max_transmits: 16,
        max_events: 4,
        ipv6: true,
        store: PeerStoreConfig {
            max_info_hashes: 2,
            max_peers_per_hash: 2,
            ttl: Duration::from_secs(60),
        },
        ..DhtConfig::default()
    };
    let mut d = Dht::new(config, OWN, Rng::new(7));
    let mut now = Instant::ZERO;
    let mut last_tx: Vec<Option<TransactionId>> = vec![None; SOURCES.len()];
    let sources: Vec<SocketAddr> = SOURCES.iter().map(|s| addr(s)).collect();
    for step in steps {
        match step {
            Step::Message {
                source,
                reply,
                read_only,
                body,
            } => {
                let t = match (&last_tx[source], reply) {
                    (Some(t), true) => t.clone(),
                    _ => TransactionId::new(*b"zz").unwrap(),
                };
                d.handle_datagram(
                    now,
                    sources[source],
                    &message(t.as_bytes(), read_only, body),
                );
            }
            Step::Raw { source, bytes } => d.handle_datagram(now, sources[source], &bytes),
            Step::Wait { millis } => {
                now = now + Duration::from_millis(millis);
                d.handle_timeout(now);
                assert!(d.poll_timeout().is_none_or(|t| t > now));
            }
            Step::AddNode { source } => d.add_node(now, sources[source]),
            Step::Bootstrap => d.bootstrap(now),
            Step::GetPeers { hash } => {
                d.get_peers(now, InfoHash([hash; 20]));
            }
            Step::Announce { hash, port } => {
                d.announce(now, InfoHash([hash; 20]), port);
            }
        }
        assert_bounds(&d);
        // Drain some of the time only, so the queues' bounds are exercised.
        if now.as_micros() % 3 != 1 {
            while let Some(t) = d.poll_transmit() {
                let m = Message::decode(&t.bytes).expect("we send valid KRPC");
                if matches!(m.body, Body::Query(_))
                    && let Some(i) = sources.iter().position(|s| *s == t.to)
                {
                    last_tx[i] = Some(m.transaction);
                }
            }
            while d.poll_event().is_some() {}
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_or_grow_state(
        datagrams in proptest::collection::vec((0..SOURCES.len(), proptest::collection::vec(any::<u8>(), 0..200)), 0..40)
    ) {
        // Proves handle_datagram survives arbitrary bytes within the bounds.
        run_steps(datagrams.into_iter().map(|(source, bytes)| Step::Raw { source, bytes }).collect());
    }

    #[test]
    fn arbitrary_krpc_never_panics_or_grows_state(steps in proptest::collection::vec(arb_step(), 0..80)) {
        // Proves well-formed queries, responses (many matching our transactions) and errors,
        // mixed with commands and time jumps, never panic the node or break a bound.
        run_steps(steps);
    }
}

#[test]
fn get_peers_answers_fit_in_one_datagram() {
    // Proves a get_peers answer with a full store of IPv6 peers and both node families stays
    // within MAX_ANSWER_LEN, by carrying fewer peers.
    let config = DhtConfig {
        ipv6: true,
        ..DhtConfig::default()
    };
    let mut d = Dht::new(config, OWN, Rng::new(1));
    fill(&mut d, 30, v4);
    fill(&mut d, 30, |i| {
        SocketAddr::from(([0x2001, 0xdb8, 0, 0, 0, 0, 1, i as u16], 6881))
    });
    let hash = InfoHash([5; 20]);
    let get_peers = query(Query::GetPeers {
        id: id_n(1),
        info_hash: hash,
        want: Want { n4: true, n6: true },
    });
    for i in 0..100u16 {
        let from = SocketAddr::from(([0x2001, 0xdb8, 0, 0, 0, 0, 2, i], 6881));
        d.handle_datagram(Instant::ZERO, from, &get_peers);
        let out = drain(&mut d);
        let (_, m) = out.iter().find(|(to, _)| *to == from).unwrap();
        let token = response_of(m).token.clone().unwrap();
        let announce = query(Query::AnnouncePeer {
            id: id_n(1),
            info_hash: hash,
            port: 7000,
            implied_port: false,
            token,
        });
        d.handle_datagram(Instant::ZERO, from, &announce);
        drain(&mut d);
    }
    assert_eq!(d.peer_store().peer_count(), 100);
    let from = addr("[2001:db8::3:1]:6881");
    d.handle_datagram(Instant::ZERO, from, &get_peers);
    let out: Vec<Transmit> = std::iter::from_fn(|| d.poll_transmit()).collect();
    let answer = out.iter().find(|t| t.to == from).unwrap();
    assert!(
        answer.bytes.len() <= MAX_ANSWER_LEN,
        "{}",
        answer.bytes.len()
    );
    let r = response_of(&Message::decode(&answer.bytes).unwrap()).clone();
    assert_eq!((r.nodes.len(), r.nodes6.len()), (8, 8));
    assert!(r.values.len() >= 30, "{}", r.values.len());
}

#[test]
fn full_bucket_pings_its_oldest_questionable_node_and_replaces_it_when_silent() {
    // Proves the machine acts on BEP 5's replacement rule: a newcomer to a full bucket makes it
    // ping the least recently seen questionable node; silent twice, that node is replaced by a
    // cached newcomer.
    let mut d = dht();
    let far = |i: u8| NodeId([0x80 + i; 20]); // first bit differs from OWN's: one far bucket
    for i in 0..8u8 {
        let t = Instant::from_micros(u64::from(i));
        d.handle_datagram(t, v4(u32::from(i)), &query(Query::Ping { id: far(i) }));
    }
    drain(&mut d);
    assert_eq!(d.node_count(), 8);
    let mut now = Instant::from_micros(100);
    d.handle_datagram(now, v4(100), &query(Query::Ping { id: far(100) }));
    let out = drain(&mut d);
    let pings: Vec<SocketAddr> = out
        .iter()
        .filter(|(_, m)| matches!(m.body, Body::Query(Query::Ping { .. })))
        .map(|(to, _)| *to)
        .collect();
    assert_eq!(pings, vec![v4(0)], "the least recently seen is pinged");
    assert_eq!(d.node_count(), 8, "the newcomer waits in the cache");
    now = now + Duration::from_secs(5);
    d.handle_timeout(now);
    assert!(d.routing_table(false).entry(v4(0)).is_some(), "one failure");
    d.handle_datagram(now, v4(101), &query(Query::Ping { id: far(101) }));
    let out = drain(&mut d);
    assert!(
        out.iter()
            .any(|(to, m)| *to == v4(0) && matches!(m.body, Body::Query(_)))
    );
    now = now + Duration::from_secs(5);
    d.handle_timeout(now);
    assert!(
        d.routing_table(false).entry(v4(0)).is_none(),
        "bad, replaced"
    );
    assert!(
        d.routing_table(false).entry(v4(101)).is_some(),
        "the freshest newcomer"
    );
    assert_eq!(d.node_count(), 8);
}
