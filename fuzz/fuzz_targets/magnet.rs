//! Fuzzes `MagnetLink::parse` on arbitrary UTF-8: never panics, and every accepted link round-trips, `parse(to_uri()) == link`, unless the written URI exceeds `MAX_URI_LEN`.
#![no_main]

use bt_protocol::metainfo::magnet::{MAX_URI_LEN, MagnetLink};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(link) = MagnetLink::parse(text) else {
        return;
    };
    let uri = link.to_uri();
    if uri.len() > MAX_URI_LEN {
        return;
    }
    match MagnetLink::parse(&uri) {
        Ok(again) => assert_eq!(again, link, "round trip through `{uri}` changed the link"),
        Err(e) => panic!("to_uri wrote `{uri}`, which parse refuses: {e}"),
    }
});
