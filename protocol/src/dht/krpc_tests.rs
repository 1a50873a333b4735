//! Tests of the KRPC codec: the BEP 5 and BEP 32 examples byte for byte, every refusal, the
//! tolerated oddities, and proptests of the round trip and of decoding arbitrary input.

use core::net::SocketAddr;

use proptest::prelude::*;

use super::krpc::*;
use crate::metainfo::InfoHash;
use crate::mutation::{check_accepts_some, mutated, mutations};

fn t(bytes: &[u8]) -> TransactionId {
    TransactionId::new(bytes).unwrap()
}

fn id(bytes: &[u8; 20]) -> NodeId {
    NodeId(*bytes)
}

fn msg(body: Body) -> Message {
    Message {
        transaction: t(b"aa"),
        version: None,
        ip: None,
        read_only: false,
        body,
    }
}

/// Decodes `bytes` to `expected` and encodes `expected` back to exactly `bytes`.
fn assert_both_ways(bytes: &[u8], expected: &Message) {
    assert_eq!(Message::decode(bytes).as_ref(), Ok(expected));
    assert_eq!(
        expected.encode().escape_ascii().to_string(),
        bytes.escape_ascii().to_string()
    );
}

fn err(bytes: &[u8]) -> KrpcError {
    Message::decode(bytes).unwrap_err()
}

#[test]
fn bep5_ping_query_and_response() {
    // Proves the BEP 5 ping example decodes and encodes back to the same bytes.
    assert_both_ways(
        b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe",
        &msg(Body::Query(Query::Ping {
            id: id(b"abcdefghij0123456789"),
        })),
    );
    assert_both_ways(
        b"d1:rd2:id20:mnopqrstuvwxyz123456e1:t2:aa1:y1:re",
        &msg(Body::Response(Response {
            id: id(b"mnopqrstuvwxyz123456"),
            ..Response::default()
        })),
    );
}

#[test]
fn bep5_error() {
    // Proves the BEP 5 error example round-trips byte for byte.
    assert_both_ways(
        b"d1:eli201e23:A Generic Error Ocurrede1:t2:aa1:y1:ee",
        &msg(Body::Error {
            code: 201,
            message: "A Generic Error Ocurred".into(),
        }),
    );
}

#[test]
fn bep5_find_node() {
    // Proves the BEP 5 find_node query round-trips, and its response with one real 26-byte node.
    assert_both_ways(
        b"d1:ad2:id20:abcdefghij01234567896:target20:mnopqrstuvwxyz123456e1:q9:find_node1:t2:aa1:y1:qe",
        &msg(Body::Query(Query::FindNode {
            id: id(b"abcdefghij0123456789"),
            target: id(b"mnopqrstuvwxyz123456"),
            want: Want::default(),
        })),
    );
    assert_both_ways(
        b"d1:rd2:id20:0123456789abcdefghij5:nodes26:mnopqrstuvwxyz123456\x0a\x00\x00\x01\x1a\xe1e1:t2:aa1:y1:re",
        &msg(Body::Response(Response {
            id: id(b"0123456789abcdefghij"),
            nodes: vec![CompactNode {
                id: id(b"mnopqrstuvwxyz123456"),
                addr: "10.0.0.1:6881".parse().unwrap(),
            }],
            ..Response::default()
        })),
    );
}

#[test]
fn bep5_placeholder_nodes_are_refused() {
    // Proves BEP 5's illustrative `nodes9:def456...` (not whole 26-byte nodes) is refused.
    assert_eq!(
        err(b"d1:rd2:id20:0123456789abcdefghij5:nodes9:def456...e1:t2:aa1:y1:re"),
        KrpcError::BadNodesLength {
            key: "nodes",
            len: 9,
            node_len: 26
        }
    );
}

#[test]
fn bep5_get_peers() {
    // Proves the BEP 5 get_peers query and its response with values round-trip byte for byte.
    // BEP 5's response example has a typo (a 16-byte id declared as 20), so bencode refuses it
    // verbatim; the corrected one has the full id.
    assert!(matches!(
        err(b"d1:rd2:id20:abcdefghij01234565:token8:aoeusnth6:valuesl6:axje.u6:idhtnmee1:t2:aa1:y1:re"),
        KrpcError::Bencode(_)
    ));
    assert_both_ways(
        b"d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz123456e1:q9:get_peers1:t2:aa1:y1:qe",
        &msg(Body::Query(Query::GetPeers {
            id: id(b"abcdefghij0123456789"),
            info_hash: InfoHash(*b"mnopqrstuvwxyz123456"),
            want: Want::default(),
        })),
    );
    assert_both_ways(
        b"d1:rd2:id20:abcdefghij01234567895:token8:aoeusnth6:valuesl6:axje.u6:idhtnmee1:t2:aa1:y1:re",
        &msg(Body::Response(Response {
            id: id(b"abcdefghij0123456789"),
            values: vec![
                "97.120.106.101:11893".parse().unwrap(),
                "105.100.104.116:28269".parse().unwrap(),
            ],
            token: Some(Token::new(&b"aoeusnth"[..]).unwrap()),
            ..Response::default()
        })),
    );
}

#[test]
fn bep5_get_peers_with_nodes() {
    // Proves the BEP 5 get_peers response with nodes and a token (its `nodes9:def456...`
    // placeholder replaced by one whole node) round-trips byte for byte.
    assert_both_ways(
        b"d1:rd2:id20:abcdefghij01234567895:nodes26:mnopqrstuvwxyz123456\x0a\x00\x00\x01\x1a\xe15:token8:aoeusnthe1:t2:aa1:y1:re",
        &msg(Body::Response(Response {
            id: id(b"abcdefghij0123456789"),
            nodes: vec![CompactNode {
                id: id(b"mnopqrstuvwxyz123456"),
                addr: "10.0.0.1:6881".parse().unwrap(),
            }],
            token: Some(Token::new(&b"aoeusnth"[..]).unwrap()),
            ..Response::default()
        })),
    );
}

#[test]
fn bep32_ipv6_values() {
    // Proves an 18-byte IPv6 compact peer in `values` (BEP 32) round-trips next to an IPv4 one.
    let mut bytes = b"d1:rd2:id20:abcdefghij01234567896:valuesl6:axje.u18:".to_vec();
    bytes.extend_from_slice(&[
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 80,
    ]);
    bytes.extend_from_slice(b"ee1:t2:aa1:y1:re");
    assert_both_ways(
        &bytes,
        &msg(Body::Response(Response {
            id: id(b"abcdefghij0123456789"),
            values: vec![
                "97.120.106.101:11893".parse().unwrap(),
                "[2001:db8::2]:80".parse().unwrap(),
            ],
            ..Response::default()
        })),
    );
}

#[test]
fn encode_puts_nodes_under_their_family() {
    // Proves encode skips an IPv6 node given in `nodes` and an IPv4 one given in `nodes6`.
    let v4 = CompactNode {
        id: NodeId([1; 20]),
        addr: "10.0.0.1:1".parse().unwrap(),
    };
    let v6 = CompactNode {
        id: NodeId([2; 20]),
        addr: "[::1]:2".parse().unwrap(),
    };
    let m = msg(Body::Response(Response {
        nodes: vec![v4, v6],
        nodes6: vec![v4, v6],
        ..Response::default()
    }));
    let Body::Response(r) = Message::decode(&m.encode()).unwrap().body else {
        panic!("not a response");
    };
    assert_eq!((r.nodes, r.nodes6), (vec![v4], vec![v6]));
}

#[test]
fn bep5_announce_peer() {
    // Proves the BEP 5 announce_peer example (with implied_port) round-trips byte for byte.
    assert_both_ways(
        b"d1:ad2:id20:abcdefghij012345678912:implied_porti1e9:info_hash20:mnopqrstuvwxyz1234564:porti6881e5:token8:aoeusnthe1:q13:announce_peer1:t2:aa1:y1:qe",
        &msg(Body::Query(Query::AnnouncePeer {
            id: id(b"abcdefghij0123456789"),
            info_hash: InfoHash(*b"mnopqrstuvwxyz123456"),
            port: 6881,
            implied_port: true,
            token: Token::new(&b"aoeusnth"[..]).unwrap(),
        })),
    );
}

#[test]
fn bep32_want_and_nodes6() {
    // Proves BEP 32's `want` list and 38-byte `nodes6` entries decode and encode back exactly.
    assert_both_ways(
        b"d1:ad2:id20:abcdefghij01234567896:target20:mnopqrstuvwxyz1234564:wantl2:n42:n6ee1:q9:find_node1:t2:aa1:y1:qe",
        &msg(Body::Query(Query::FindNode {
            id: id(b"abcdefghij0123456789"),
            target: id(b"mnopqrstuvwxyz123456"),
            want: Want { n4: true, n6: true },
        })),
    );
    let mut bytes = b"d1:rd2:id20:0123456789abcdefghij6:nodes638:mnopqrstuvwxyz123456".to_vec();
    bytes.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    bytes.extend_from_slice(b"\x1a\xe1e1:t2:aa1:y1:re");
    assert_both_ways(
        &bytes,
        &msg(Body::Response(Response {
            id: id(b"0123456789abcdefghij"),
            nodes6: vec![CompactNode {
                id: id(b"mnopqrstuvwxyz123456"),
                addr: "[2001:db8::1]:6881".parse().unwrap(),
            }],
            ..Response::default()
        })),
    );
    assert_eq!(
        err(b"d1:rd2:id20:0123456789abcdefghij6:nodes626:mnopqrstuvwxyz123456\x0a\x00\x00\x01\x1a\xe1e1:t2:aa1:y1:re"),
        KrpcError::BadNodesLength { key: "nodes6", len: 26, node_len: 38 }
    );
}

#[test]
fn version_read_only_and_unknown_keys() {
    // Proves `v` and BEP 43 `ro` are kept, unknown keys and junk `want` entries are ignored.
    let decoded = Message::decode(
        b"d1:ad2:id20:abcdefghij01234567895:extrai1e6:target20:mnopqrstuvwxyz1234564:wantl2:n63:xyzi5eee1:q9:find_node2:roi1e1:t2:aa1:v4:LT\x01\x001:y1:q3:zzzlee",
    )
    .unwrap();
    assert_eq!(decoded.version, Version::new(&b"LT\x01\x00"[..]));
    assert!(decoded.read_only);
    assert_eq!(
        decoded.body,
        Body::Query(Query::FindNode {
            id: id(b"abcdefghij0123456789"),
            target: id(b"mnopqrstuvwxyz123456"),
            want: Want {
                n4: false,
                n6: true
            },
        })
    );
    assert_eq!(
        decoded.encode(),
        b"d1:ad2:id20:abcdefghij01234567896:target20:mnopqrstuvwxyz1234564:wantl2:n6ee1:q9:find_node2:roi1e1:t2:aa1:v4:LT\x01\x001:y1:qe"
    );
}

#[test]
fn bep42_ip() {
    // Proves BEP 42's `ip` (the receiver's address as the sender saw it) round-trips, and one of
    // a length that is neither 6 nor 18 is ignored.
    let mut m = msg(Body::Response(Response {
        id: id(b"mnopqrstuvwxyz123456"),
        ..Response::default()
    }));
    m.ip = Some("1.2.3.4:6881".parse().unwrap());
    assert_both_ways(
        b"d2:ip6:\x01\x02\x03\x04\x1a\xe11:rd2:id20:mnopqrstuvwxyz123456e1:t2:aa1:y1:re",
        &m,
    );
    let odd = Message::decode(b"d2:ip5:abcde1:rd2:id20:mnopqrstuvwxyz123456e1:t2:aa1:y1:re");
    assert_eq!(odd.unwrap().ip, None);
}

#[test]
fn overlong_version_is_dropped() {
    // Proves a `v` over MAX_VERSION_LEN is ignored rather than refusing the message.
    let m =
        Message::decode(b"d1:rd2:id20:mnopqrstuvwxyz123456e1:t2:aa1:v17:abcdefghijklmnopq1:y1:re")
            .unwrap();
    assert_eq!(m.version, None);
}

#[test]
fn unknown_method_decodes_to_unknown() {
    // Proves an unknown method gives Query::Unknown (to answer with 204), its arguments ignored.
    let m = Message::decode(
        b"d1:ad2:id20:abcdefghij01234567896:target20:mnopqrstuvwxyz123456e1:q17:sample_infohashes1:t2:aa1:y1:qe",
    )
    .unwrap();
    let expected = msg(Body::Query(Query::Unknown {
        method: Method::new(&b"sample_infohashes"[..]).unwrap(),
        id: id(b"abcdefghij0123456789"),
    }));
    assert_eq!(m, expected);
    assert_eq!(
        m.encode(),
        b"d1:ad2:id20:abcdefghij0123456789e1:q17:sample_infohashes1:t2:aa1:y1:qe"
    );
}

#[test]
fn values_tolerate_bad_entries_and_are_bounded() {
    // Proves `values` skips entries that are not 6/18-byte strings and keeps at most MAX_VALUES.
    let mut bytes = b"d1:rd2:id20:abcdefghij01234567896:valuesl5:abcdei1e18:".to_vec();
    bytes.extend_from_slice(&[
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 80,
    ]);
    for _ in 0..MAX_VALUES + 50 {
        bytes.extend_from_slice(b"6:\x7f\x00\x00\x01\x00\x50");
    }
    bytes.extend_from_slice(b"ee1:t2:aa1:y1:re");
    let Body::Response(r) = Message::decode(&bytes).unwrap().body else {
        panic!("not a response");
    };
    assert_eq!(r.values.len(), MAX_VALUES);
    assert_eq!(
        r.values[0],
        "[2001:db8::2]:80".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(r.values[1], "127.0.0.1:80".parse::<SocketAddr>().unwrap());
}

#[test]
fn nodes_are_bounded() {
    // Proves a `nodes` string of more than MAX_NODES whole nodes keeps only the first MAX_NODES.
    let count = MAX_NODES + 3;
    let mut bytes = format!("d1:rd2:id20:abcdefghij01234567895:nodes{}:", count * 26).into_bytes();
    for i in 0..count {
        bytes.extend_from_slice(&[u8::try_from(i % 256).unwrap(); 20]);
        bytes.extend_from_slice(&[10, 0, 0, 1, 0, 80]);
    }
    bytes.extend_from_slice(b"e1:t2:aa1:y1:re");
    let Body::Response(r) = Message::decode(&bytes).unwrap().body else {
        panic!("not a response");
    };
    assert_eq!(r.nodes.len(), MAX_NODES);
}

#[test]
fn refusals() {
    // Proves each missing or malformed required part gives its own KrpcError.
    let long = vec![b' '; MAX_DATAGRAM_LEN + 1];
    assert_eq!(
        err(&long),
        KrpcError::TooLong {
            len: MAX_DATAGRAM_LEN + 1,
            max: MAX_DATAGRAM_LEN
        }
    );
    assert!(matches!(err(b"d1:t2:aa"), KrpcError::Bencode(_)));
    assert_eq!(err(b"li1ee"), KrpcError::NotADict { kind: "list" });
    assert_eq!(err(b"d1:y1:qe"), KrpcError::MissingTransaction);
    assert_eq!(err(b"d1:ti1e1:y1:qe"), KrpcError::MissingTransaction);
    assert_eq!(
        err(b"d1:t17:abcdefghijklmnopq1:y1:qe"),
        KrpcError::TransactionTooLong {
            len: 17,
            max: MAX_TRANSACTION_LEN
        }
    );
    assert_eq!(err(b"d1:t2:aae"), KrpcError::MissingType);
    assert_eq!(err(b"d1:t2:aa1:y1:xe"), KrpcError::UnknownType);
    assert_eq!(
        err(b"d1:ad2:id20:abcdefghij0123456789e1:t2:aa1:y1:qe"),
        KrpcError::MissingMethod
    );
    assert_eq!(
        err(b"d1:ad2:id20:abcdefghij0123456789e1:q33:abcdefghijklmnopqrstuvwxyz01234561:t2:aa1:y1:qe"),
        KrpcError::MethodTooLong { len: 33, max: MAX_METHOD_LEN }
    );
    assert_eq!(
        err(b"d1:q4:ping1:t2:aa1:y1:qe"),
        KrpcError::MissingArguments
    );
    assert_eq!(
        err(b"d1:ali1ee1:q4:ping1:t2:aa1:y1:qe"),
        KrpcError::MissingArguments
    );
    assert_eq!(
        err(b"d1:ade1:q4:ping1:t2:aa1:y1:qe"),
        KrpcError::MissingKey { key: "id" }
    );
    assert_eq!(
        err(b"d1:ad2:id3:abce1:q4:ping1:t2:aa1:y1:qe"),
        KrpcError::BadHashLength { key: "id", len: 3 }
    );
    assert_eq!(
        err(b"d1:ad2:id20:abcdefghij0123456789e1:q9:find_node1:t2:aa1:y1:qe"),
        KrpcError::MissingKey { key: "target" }
    );
    assert_eq!(
        err(b"d1:ad2:id20:abcdefghij0123456789e1:q9:get_peers1:t2:aa1:y1:qe"),
        KrpcError::MissingKey { key: "info_hash" }
    );
    let announce = |rest: &str| {
        format!(
            "d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz123456{rest}e1:q13:announce_peer1:t2:aa1:y1:qe"
        )
    };
    assert_eq!(
        err(announce("5:token1:x").as_bytes()),
        KrpcError::MissingKey { key: "port" }
    );
    assert_eq!(
        err(announce("4:porti65536e5:token1:x").as_bytes()),
        KrpcError::BadPort { port: 65536 }
    );
    assert_eq!(
        err(announce("4:porti1e").as_bytes()),
        KrpcError::MissingKey { key: "token" }
    );
    assert_eq!(
        err(announce(&format!("4:porti1e5:token65:{}", "x".repeat(65))).as_bytes()),
        KrpcError::TokenTooLong {
            len: 65,
            max: MAX_TOKEN_LEN
        }
    );
    assert_eq!(err(b"d1:t2:aa1:y1:re"), KrpcError::MissingReturnValues);
    assert_eq!(
        err(b"d1:rde1:t2:aa1:y1:re"),
        KrpcError::MissingKey { key: "id" }
    );
    assert_eq!(
        err(format!(
            "d1:rd2:id20:abcdefghij01234567895:token65:{}e1:t2:aa1:y1:re",
            "x".repeat(65)
        )
        .as_bytes()),
        KrpcError::TokenTooLong {
            len: 65,
            max: MAX_TOKEN_LEN
        }
    );
    assert_eq!(err(b"d1:t2:aa1:y1:ee"), KrpcError::MalformedError);
    assert_eq!(err(b"d1:eli201ee1:t2:aa1:y1:ee"), KrpcError::MalformedError);
    assert_eq!(
        err(b"d1:el3:abci201ee1:t2:aa1:y1:ee"),
        KrpcError::MalformedError
    );
}

#[test]
fn node_id_distance() {
    // Proves the XOR metric: zero to itself, symmetric, and ordering by distance as BEP 5 means.
    let a = NodeId([0; 20]);
    let mut b = NodeId([0; 20]);
    b.0[19] = 1;
    let mut c = NodeId([0; 20]);
    c.0[0] = 0x80;
    assert_eq!(a.distance(&a), NodeId([0; 20]));
    assert_eq!(a.distance(&c), c.distance(&a));
    assert!(a.closer(&b, &c));
    assert!(!a.closer(&c, &b));
    assert_eq!(a.common_prefix_len(&a), 160);
    assert_eq!(a.common_prefix_len(&b), 159);
    assert_eq!(a.common_prefix_len(&c), 0);
}

fn node_id() -> impl Strategy<Value = NodeId> {
    any::<[u8; 20]>().prop_map(NodeId)
}

fn bounded<const N: usize>() -> impl Strategy<Value = BoundedBytes<N>> {
    proptest::collection::vec(any::<u8>(), 0..=N).prop_map(|b| BoundedBytes::new(b).unwrap())
}

fn want() -> impl Strategy<Value = Want> {
    (any::<bool>(), any::<bool>()).prop_map(|(n4, n6)| Want { n4, n6 })
}

fn v4() -> impl Strategy<Value = SocketAddr> {
    any::<core::net::SocketAddrV4>().prop_map(SocketAddr::V4)
}

fn v6() -> impl Strategy<Value = SocketAddr> {
    (any::<[u8; 16]>(), any::<u16>())
        .prop_map(|(ip, port)| SocketAddr::V6(core::net::SocketAddrV6::new(ip.into(), port, 0, 0)))
}

fn query() -> impl Strategy<Value = Query> {
    let unknown = bounded::<MAX_METHOD_LEN>().prop_filter("not a known method", |m| {
        !matches!(
            m.as_bytes(),
            b"ping" | b"find_node" | b"get_peers" | b"announce_peer"
        )
    });
    prop_oneof![
        node_id().prop_map(|id| Query::Ping { id }),
        (node_id(), node_id(), want()).prop_map(|(id, target, want)| Query::FindNode {
            id,
            target,
            want
        }),
        (node_id(), any::<[u8; 20]>(), want()).prop_map(|(id, h, want)| Query::GetPeers {
            id,
            info_hash: InfoHash(h),
            want
        }),
        (
            node_id(),
            any::<[u8; 20]>(),
            any::<u16>(),
            any::<bool>(),
            bounded::<MAX_TOKEN_LEN>()
        )
            .prop_map(|(id, h, port, implied_port, token)| Query::AnnouncePeer {
                id,
                info_hash: InfoHash(h),
                port,
                implied_port,
                token
            }),
        (unknown, node_id()).prop_map(|(method, id)| Query::Unknown { method, id }),
    ]
}

fn response() -> impl Strategy<Value = Response> {
    let nodes = |addr: BoxedStrategy<SocketAddr>| {
        proptest::collection::vec(
            (node_id(), addr).prop_map(|(id, addr)| CompactNode { id, addr }),
            0..10,
        )
    };
    (
        node_id(),
        nodes(v4().boxed()),
        nodes(v6().boxed()),
        proptest::collection::vec(prop_oneof![v4(), v6()], 0..20),
        proptest::option::of(bounded::<MAX_TOKEN_LEN>()),
    )
        .prop_map(|(id, nodes, nodes6, values, token)| Response {
            id,
            nodes,
            nodes6,
            values,
            token,
        })
}

fn message() -> impl Strategy<Value = Message> {
    let body = prop_oneof![
        query().prop_map(Body::Query),
        response().prop_map(Body::Response),
        (any::<i64>(), ".{0,40}").prop_map(|(code, message)| Body::Error { code, message }),
    ];
    (
        bounded::<MAX_TRANSACTION_LEN>(),
        proptest::option::of(bounded::<MAX_VERSION_LEN>()),
        proptest::option::of(prop_oneof![v4(), v6()]),
        any::<bool>(),
        body,
    )
        .prop_map(|(transaction, version, ip, read_only, body)| Message {
            transaction,
            version,
            ip,
            read_only,
            body,
        })
}

/// Bencode-shaped bytes: a dictionary of KRPC's keys with small values of any shape.
fn bencode_shaped() -> impl Strategy<Value = Vec<u8>> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(|i| format!("i{i}e").into_bytes()),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(|b| {
            let mut out = format!("{}:", b.len()).into_bytes();
            out.extend(b);
            out
        }),
        prop_oneof![
            Just("1:q"),
            Just("1:r"),
            Just("1:e"),
            Just("4:ping"),
            Just("9:get_peers"),
            Just("13:announce_peer"),
            Just("9:find_node"),
            Just("20:abcdefghij0123456789"),
            Just("2:n4"),
            Just("2:n6")
        ]
        .prop_map(|s| s.as_bytes().to_vec()),
    ];
    let key = prop_oneof![
        Just("a"),
        Just("e"),
        Just("q"),
        Just("r"),
        Just("t"),
        Just("v"),
        Just("y"),
        Just("ro"),
        Just("id"),
        Just("nodes"),
        Just("nodes6"),
        Just("values"),
        Just("token"),
        Just("target"),
        Just("info_hash"),
        Just("port"),
        Just("implied_port"),
        Just("want")
    ];
    let value = leaf.prop_recursive(3, 32, 6, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(|items| {
                let mut out = b"l".to_vec();
                items.into_iter().for_each(|i| out.extend(i));
                out.push(b'e');
                out
            }),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("id"),
                    Just("nodes"),
                    Just("values"),
                    Just("token"),
                    Just("want"),
                    Just("port")
                ],
                inner,
                0..6
            )
            .prop_map(|entries| {
                let mut out = b"d".to_vec();
                for (k, v) in entries {
                    out.extend(format!("{}:{k}", k.len()).into_bytes());
                    out.extend(v);
                }
                out.push(b'e');
                out
            }),
        ]
    });
    proptest::collection::btree_map(key, value, 0..8).prop_map(|entries| {
        let mut out = b"d".to_vec();
        for (k, v) in entries {
            out.extend(format!("{}:{k}", k.len()).into_bytes());
            out.extend(v);
        }
        out.push(b'e');
        out
    })
}

/// `m` as BEP 5 (and BEP 32, 42, 43) lay a message out, written from the BEPs rather than by
/// [`Message::encode`], with the optional forms other clients send: `ro` and `implied_port` as
/// explicit zeros, an empty `want` list and unknown keys.
fn bep5_wire(m: &Message) -> Vec<u8> {
    use crate::bencode::{Dict, Value, encode};
    let compact = |addr: &SocketAddr| {
        let mut b = match addr.ip() {
            core::net::IpAddr::V4(ip) => ip.octets().to_vec(),
            core::net::IpAddr::V6(ip) => ip.octets().to_vec(),
        };
        b.extend_from_slice(&addr.port().to_be_bytes());
        b
    };
    let nodes = |list: &[CompactNode]| {
        let mut b = Vec::new();
        for n in list {
            b.extend_from_slice(&n.id.0);
            b.extend(compact(&n.addr));
        }
        Value::owned_bytes(b)
    };
    let want = |w: &Want| {
        let mut list = Vec::new();
        if w.n6 {
            list.push(Value::bytes(b"n6"));
        }
        if w.n4 {
            list.push(Value::bytes(b"n4"));
        }
        Value::List(list)
    };
    let hash = |h: &[u8; 20]| Value::owned_bytes(h.to_vec());
    let mut d = Dict::new();
    d.insert(&b"t"[..], Value::owned_bytes(m.transaction.as_bytes()));
    if let Some(v) = &m.version {
        d.insert(&b"v"[..], Value::owned_bytes(v.as_bytes()));
    }
    if let Some(ip) = &m.ip {
        d.insert(&b"ip"[..], Value::owned_bytes(compact(ip)));
    }
    d.insert(&b"ro"[..], Value::Int(i64::from(m.read_only)));
    d.insert(&b"zz unknown"[..], Value::List(vec![Value::Int(7)]));
    match &m.body {
        Body::Query(q) => {
            let mut a = Dict::new();
            a.insert(&b"id"[..], hash(&q.id().0));
            a.insert(&b"zz unknown"[..], Value::Int(1));
            match q {
                Query::Ping { .. } | Query::Unknown { .. } => {}
                Query::FindNode {
                    target, want: w, ..
                } => {
                    a.insert(&b"target"[..], hash(&target.0));
                    a.insert(&b"want"[..], want(w));
                }
                Query::GetPeers {
                    info_hash, want: w, ..
                } => {
                    a.insert(&b"info_hash"[..], hash(&info_hash.0));
                    a.insert(&b"want"[..], want(w));
                }
                Query::AnnouncePeer {
                    info_hash,
                    port,
                    implied_port,
                    token,
                    ..
                } => {
                    a.insert(&b"info_hash"[..], hash(&info_hash.0));
                    a.insert(&b"port"[..], Value::Int(i64::from(*port)));
                    a.insert(&b"implied_port"[..], Value::Int(i64::from(*implied_port)));
                    a.insert(&b"token"[..], Value::owned_bytes(token.as_bytes()));
                }
            }
            d.insert(&b"y"[..], Value::bytes(b"q"));
            d.insert(&b"q"[..], Value::owned_bytes(q.method()));
            d.insert(&b"a"[..], Value::Dict(a));
        }
        Body::Response(r) => {
            let mut out = Dict::new();
            out.insert(&b"id"[..], hash(&r.id.0));
            out.insert(&b"zz unknown"[..], Value::bytes(b"x"));
            if !r.nodes.is_empty() {
                out.insert(&b"nodes"[..], nodes(&r.nodes));
            }
            if !r.nodes6.is_empty() {
                out.insert(&b"nodes6"[..], nodes(&r.nodes6));
            }
            if !r.values.is_empty() {
                let values = r
                    .values
                    .iter()
                    .map(|p| Value::owned_bytes(compact(p)))
                    .collect();
                out.insert(&b"values"[..], Value::List(values));
            }
            if let Some(token) = &r.token {
                out.insert(&b"token"[..], Value::owned_bytes(token.as_bytes()));
            }
            d.insert(&b"y"[..], Value::bytes(b"r"));
            d.insert(&b"r"[..], Value::Dict(out));
        }
        Body::Error { code, message } => {
            d.insert(&b"y"[..], Value::bytes(b"e"));
            let e = vec![Value::Int(*code), Value::owned_bytes(message.as_bytes())];
            d.insert(&b"e"[..], Value::List(e));
        }
    }
    encode(&Value::Dict(d)).unwrap()
}

/// Checks what a decoded message promises whatever the datagram held: the node, peer and byte
/// string bounds, each node list in its own family, and a canonical re-encoding.
fn check_message_invariants(m: &Message) -> Result<(), TestCaseError> {
    if let Body::Response(r) = &m.body {
        prop_assert!(r.nodes.len() <= MAX_NODES && r.nodes6.len() <= MAX_NODES);
        prop_assert!(r.values.len() <= MAX_VALUES);
        prop_assert!(
            r.nodes.iter().all(|n| n.addr.is_ipv4()),
            "IPv6 node in nodes"
        );
        prop_assert!(
            r.nodes6.iter().all(|n| n.addr.is_ipv6()),
            "IPv4 node in nodes6"
        );
    }
    prop_assert!(m.transaction.as_bytes().len() <= MAX_TRANSACTION_LEN);
    let again = Message::decode(&m.encode());
    prop_assert_eq!(again.as_ref(), Ok(m));
    Ok(())
}

proptest! {
    #[test]
    fn encode_then_decode_is_identity(m in message()) {
        // Proves decode(encode(m)) == m for every message whose fields are within bounds.
        prop_assert_eq!(Message::decode(&m.encode()), Ok(m));
    }

    #[test]
    fn bep5_messages_decode_to_the_model(m in message()) {
        // Proves queries of every method, responses and errors, laid out from the BEPs with the
        // optional forms other clients send, decode to exactly the message they describe.
        let wire = bep5_wire(&m);
        prop_assert_eq!(Message::decode(&wire), Ok(m), "{}", wire.escape_ascii());
    }

    #[test]
    fn decode_never_panics_on_bencode_shaped_input(bytes in bencode_shaped()) {
        // Proves decoding dictionaries of KRPC keys with values of any shape never panics (they
        // are almost never valid messages: mutated_messages_decode_within_the_invariants checks
        // what the decoder accepts).
        let _ = Message::decode(&bytes);
    }
}

#[test]
fn mutated_messages_decode_within_the_invariants() {
    // Proves edited well-formed messages either decode within the bounds, re-encoding to
    // themselves, or are refused with a KrpcError, and that both outcomes occur.
    check_accepts_some(
        256,
        (message(), mutations(4)),
        |(m, edits)| match Message::decode(&mutated(&bep5_wire(&m), &edits)) {
            Ok(m) => check_message_invariants(&m).map(|()| true),
            Err(_) => Ok(false),
        },
    );
}
