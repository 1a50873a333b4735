//! Fuzzes the bencode decoder: never panics, `decode_prefix` spans at most the input, and whatever decodes re-encodes to a canonical fixed point (decodes without warnings to an equal value, re-encodes to the same bytes).
#![no_main]

use bt_protocol::bencode::{DecodeLimits, decode, decode_prefix, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = DecodeLimits::default();

    if let Ok((_, span)) = decode_prefix(data, limits) {
        assert!(
            span <= data.len(),
            "decode_prefix span {span} > input length {}",
            data.len()
        );
    }

    let Ok(decoded) = decode(data, limits) else {
        return;
    };
    let encoded = encode(&decoded.value).expect("a decoded value must encode");
    let again = decode(&encoded, limits).expect("the canonical encoding must decode");
    assert!(
        again.warnings.is_empty(),
        "the canonical encoding decodes with warnings: {:?}",
        again.warnings
    );
    assert_eq!(
        again.value, decoded.value,
        "the round trip changed the value"
    );
    let reencoded = encode(&again.value).expect("a decoded value must encode");
    assert_eq!(reencoded, encoded, "encoding is not a fixed point");
});
