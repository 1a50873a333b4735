//! Fuzzes the BEP 10 extension handshake (`ExtendedHandshake`), the only extended payload bt
//! decodes, two ways on every input:
//!
//! - the input as a payload: `parse` never panics; what it accepts stays within `MAX_EXTENSIONS`
//!   names of at most `MAX_EXTENSION_NAME_LEN` bytes, and round-trips: `parse(encode(h)) == h`,
//!   the encoding is canonical bencode (decodes without warnings, re-encodes to itself) and
//!   `encode` is a fixed point; framed as `Message::Extended { id: 0, .. }` and fed through the
//!   `FrameDecoder` in chunks, the same payload comes out (or is refused as too long);
//! - the input as `Arbitrary` fields of a handshake: `encode` never panics and `parse(encode(h))`
//!   gives `h` back, up to what the encoding cannot say (port 0, a `metadata_size` over
//!   `i64::MAX`), or the bound error when `m` is over the bounds.
#![no_main]

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::collections::BTreeMap;

use arbitrary::{Arbitrary, Unstructured};
use bt_protocol::bencode::{DecodeLimits, decode, encode};
use bt_protocol::wire::{
    ExtendedError, ExtendedHandshake, FrameDecoder, MAX_EXTENSION_NAME_LEN, MAX_EXTENSIONS,
    Message, WireLimits,
};
use libfuzzer_sys::fuzz_target;

/// A handshake's fields, as the fuzzer builds them.
#[derive(Arbitrary, Debug)]
struct Fields {
    m: Vec<(String, u8)>,
    port: Option<u16>,
    client: Option<String>,
    yourip: Option<IpAddr>,
    ipv4: Option<Ipv4Addr>,
    ipv6: Option<Ipv6Addr>,
    reqq: Option<u32>,
    metadata_size: Option<u64>,
}

fuzz_target!(|data: &[u8]| {
    payload(data);
    framed(data);
    if let Ok(fields) = Fields::arbitrary_take_rest(Unstructured::new(data)) {
        structured(fields);
    }
});

fn payload(data: &[u8]) {
    let Ok(h) = ExtendedHandshake::parse(data) else {
        return;
    };
    assert!(h.m.len() <= MAX_EXTENSIONS, "{} extensions kept", h.m.len());
    for (name, &id) in &h.m {
        assert!(
            name.len() <= MAX_EXTENSION_NAME_LEN,
            "name of {} bytes",
            name.len()
        );
        assert_eq!(h.extension_id(name), (id != 0).then_some(id));
    }
    assert_ne!(h.port, Some(0), "port 0 kept");
    let encoded = h.encode();
    let again = ExtendedHandshake::parse(&encoded).expect("an encoded handshake must parse");
    assert_eq!(again, h, "parse(encode(h)) != h");
    assert_eq!(again.encode(), encoded, "encode is not a fixed point");
    let value = decode(&encoded, DecodeLimits::default()).expect("encode gives bencode");
    assert!(
        value.warnings.is_empty(),
        "encode is not canonical: {:?}",
        value.warnings
    );
    assert_eq!(encode(&value.value).unwrap(), encoded);
}

/// The payload as an extension handshake frame, fed through the frame decoder in chunks.
fn framed(data: &[u8]) {
    let Some((&control, payload)) = data.split_first() else {
        return;
    };
    let mut frame = Vec::new();
    Message::Extended { id: 0, payload }.encode_into(&mut frame);
    let limits = WireLimits {
        // Sometimes a bound the payload is over.
        max_extended_len: if control & 0x80 != 0 {
            u32::from(control & 0x7f)
        } else {
            WireLimits::default().max_extended_len
        },
        ..WireLimits::default()
    };
    let fits = payload.len() <= limits.max_extended_len as usize;
    let chunk = usize::from(control & 0x0f) + 1;
    let mut decoder = FrameDecoder::new(limits);
    let mut input = &frame[..];
    let f = loop {
        let taken = decoder.extend(&input[..input.len().min(chunk)]);
        input = &input[taken..];
        match decoder.next_frame() {
            Ok(Some(f)) => break f,
            Ok(None) => {
                assert!(!input.is_empty(), "the whole frame offered, yet no frame");
                assert!(taken > 0, "the decoder is full, yet no frame");
            }
            Err(e) => {
                assert!(!fits, "a payload within the bound refused: {e}");
                return;
            }
        }
    };
    assert!(fits, "a payload over the bound accepted");
    assert_eq!(f.message(), Message::Extended { id: 0, payload });
    assert_eq!(f.payload().as_ref(), payload);
    assert!(input.is_empty() && decoder.buffered_len() == 0);
}

fn structured(fields: Fields) {
    let h = ExtendedHandshake {
        m: fields.m.iter().cloned().collect::<BTreeMap<_, _>>(),
        port: fields.port,
        client: fields.client,
        yourip: fields.yourip,
        ipv4: fields.ipv4,
        ipv6: fields.ipv6,
        reqq: fields.reqq,
        metadata_size: fields.metadata_size,
    };
    let encoded = h.encode();
    let parsed = ExtendedHandshake::parse(&encoded);
    let longest = h.m.keys().map(String::len).max().unwrap_or(0);
    if h.m.len() > MAX_EXTENSIONS {
        assert_eq!(
            parsed,
            Err(ExtendedError::TooManyExtensions {
                count: h.m.len(),
                max: MAX_EXTENSIONS
            })
        );
        return;
    }
    if longest > MAX_EXTENSION_NAME_LEN {
        assert!(
            matches!(parsed, Err(ExtendedError::ExtensionNameTooLong { len, max })
                if len > MAX_EXTENSION_NAME_LEN && max == MAX_EXTENSION_NAME_LEN),
            "{parsed:?}"
        );
        return;
    }
    let expected = ExtendedHandshake {
        port: h.port.filter(|&p| p != 0),
        metadata_size: h.metadata_size.filter(|&s| i64::try_from(s).is_ok()),
        ..h.clone()
    };
    assert_eq!(parsed, Ok(expected));
}
