//! Fuzzes BEP 11 `ut_pex`: `PexMessage::decode` never panics; what it accepts keeps at most
//! `MAX_PEX_PEERS` entries per list and no port 0, and encodes to bytes that decode to the same
//! message (a fixed point after the first decode's bounds and filters).
#![no_main]

use bt_protocol::wire::{MAX_PEX_PEERS, PexMessage};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(m) = PexMessage::decode(data) else {
        return;
    };
    assert!(m.added.len() <= 2 * MAX_PEX_PEERS && m.dropped.len() <= 2 * MAX_PEX_PEERS);
    assert!(m.added.iter().all(|(a, _)| a.port() != 0));
    assert!(m.dropped.iter().all(|a| a.port() != 0));
    let again = m.encode();
    assert_eq!(PexMessage::decode(&again).as_ref(), Ok(&m), "round trip");
    assert_eq!(PexMessage::decode(&again).map(|m| m.encode()), Ok(again));
});
