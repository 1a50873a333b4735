//! Fuzzes the KRPC codec (`bt_protocol::dht::Message`, BEP 5 / BEP 32): `decode` never panics on
//! arbitrary bytes; what it accepts keeps at most `MAX_NODES` nodes per family (IPv4 in `nodes`,
//! IPv6 in `nodes6`) and `MAX_VALUES` peers, encodes to canonical bencode (decodes without
//! warnings) that decodes back to an equal message, and `encode` is a fixed point.
#![no_main]

use bt_protocol::bencode::decode;
use bt_protocol::dht::{Body, KRPC_DECODE_LIMITS, MAX_NODES, MAX_VALUES, Message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(message) = Message::decode(data) else {
        return;
    };
    if let Body::Response(r) = &message.body {
        assert!(r.nodes.len() <= MAX_NODES && r.nodes6.len() <= MAX_NODES);
        assert!(r.values.len() <= MAX_VALUES);
        assert!(r.nodes.iter().all(|n| n.addr.is_ipv4()));
        assert!(r.nodes6.iter().all(|n| n.addr.is_ipv6()));
    }
    let encoded = message.encode();
    let canonical = decode(&encoded, KRPC_DECODE_LIMITS).expect("the encoding is bencode");
    assert!(
        canonical.warnings.is_empty(),
        "the encoding is not canonical: {:?}",
        canonical.warnings
    );
    let again = Message::decode(&encoded).expect("the encoding must decode");
    assert_eq!(again, message, "the round trip changed the message");
    assert_eq!(again.encode(), encoded, "encoding is not a fixed point");
});
