use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::collections::BTreeMap;
use std::fmt::Write as _;

use proptest::prelude::*;

use super::*;
use crate::metainfo::InfoHash;

// ---------------------------------------------------------------------------------------------
// Helpers

fn encode(message: &Message<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    message.encode_into(&mut out);
    out
}

/// `hexdump -C`-style lines: offset, 16 bytes in hex, printable ASCII.
fn hexdump(bytes: &[u8]) -> String {
    let mut out = String::new();
    for (i, line) in bytes.chunks(16).enumerate() {
        write!(out, "{:08x} ", i * 16).unwrap();
        for (j, b) in line.iter().enumerate() {
            if j == 8 {
                out.push(' ');
            }
            write!(out, " {b:02x}").unwrap();
        }
        let pad = (16 - line.len()) * 3 + usize::from(line.len() <= 8);
        out.push_str(&" ".repeat(pad));
        out.push_str("  |");
        for &b in line {
            out.push(if b.is_ascii_graphic() || b == b' ' {
                char::from(b)
            } else {
                '.'
            });
        }
        out.push_str("|\n");
    }
    out
}

/// One frame as `prefix id payload`, the payload in groups of 4 bytes.
fn frame_dump(frame: &[u8]) -> String {
    let hex = |b: &[u8]| b.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let mut out = hex(&frame[..4]);
    if let Some((id, payload)) = frame[4..].split_first() {
        write!(out, " {id:02x}").unwrap();
        for group in payload.chunks(4) {
            write!(out, " {}", hex(group)).unwrap();
        }
    }
    out
}

/// Feeds `stream` to a decoder in chunks of the given sizes (cycled), collecting every frame.
fn decode_chunked(
    limits: WireLimits,
    stream: &[u8],
    chunk_sizes: &[usize],
) -> Result<Vec<Frame>, WireError> {
    let mut decoder = FrameDecoder::new(limits);
    let mut frames = Vec::new();
    let mut rest = stream;
    let mut sizes = chunk_sizes.iter().copied().cycle();
    while !rest.is_empty() {
        let size = sizes.next().unwrap_or(rest.len()).clamp(1, rest.len());
        let (mut chunk, tail) = rest.split_at(size);
        rest = tail;
        while !chunk.is_empty() {
            let taken = decoder.extend(chunk);
            assert!(decoder.buffered_len() <= decoder.max_buffered_len());
            chunk = &chunk[taken..];
            while let Some(frame) = decoder.next_frame()? {
                frames.push(frame);
            }
        }
    }
    assert_eq!(
        decoder.buffered_len(),
        0,
        "a whole stream leaves nothing behind"
    );
    Ok(frames)
}

fn one_of_each() -> Vec<(&'static str, Message<'static>)> {
    vec![
        ("keep-alive", Message::KeepAlive),
        ("choke", Message::Choke),
        ("unchoke", Message::Unchoke),
        ("interested", Message::Interested),
        ("not interested", Message::NotInterested),
        ("have", Message::Have { piece: 0x0102_0304 }),
        ("bitfield", Message::Bitfield(&[0b1010_0000, 0xff, 0x80])),
        (
            "request",
            Message::Request {
                piece: 1,
                offset: 0x4000,
                len: 0x4000,
            },
        ),
        (
            "piece",
            Message::Piece {
                piece: 1,
                offset: 0x4000,
                data: b"data",
            },
        ),
        (
            "cancel",
            Message::Cancel {
                piece: 1,
                offset: 0x4000,
                len: 0x4000,
            },
        ),
        ("port", Message::Port(6881)),
        ("suggest piece", Message::SuggestPiece(7)),
        ("have all", Message::HaveAll),
        ("have none", Message::HaveNone),
        (
            "reject request",
            Message::RejectRequest {
                piece: 2,
                offset: 0,
                len: 0x4000,
            },
        ),
        ("allowed fast", Message::AllowedFast(9)),
        (
            "extended",
            Message::Extended {
                id: 3,
                payload: b"d1:ai1ee",
            },
        ),
        (
            "unknown",
            Message::Unknown {
                id: 21,
                payload: &[0xab, 0xcd],
            },
        ),
    ]
}

const KNOWN_IDS: [u8; 16] = [
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0x0D, 0x0E, 0x0F, 0x10, 0x11, 20,
];

fn frame_of(id: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = (u32::try_from(payload.len()).unwrap() + 1)
        .to_be_bytes()
        .to_vec();
    out.push(id);
    out.extend_from_slice(payload);
    out
}

fn handshake() -> Handshake {
    let mut reserved = Reserved::NONE;
    reserved.set_extension_protocol(true);
    reserved.set_fast(true);
    reserved.set_dht(true);
    Handshake {
        reserved,
        info_hash: InfoHash(
            *b"\x01\x23\x45\x67\x89\xab\xcd\xef\x01\x23\x45\x67\x89\xab\xcd\xef\x01\x23\x45\x67",
        ),
        peer_id: PeerId(*b"-BT0001-abcdefghijkl"),
    }
}

// ---------------------------------------------------------------------------------------------
// Handshake

#[test]
fn handshake_encoding_snapshot() {
    // Proves the 68-byte layout: 19, protocol string, reserved, info hash, peer id.
    insta::assert_snapshot!(hexdump(&handshake().encode()));
}

#[test]
fn handshake_round_trips_and_ignores_following_bytes() {
    // Proves parse(encode(h)) == h and that bytes after the 68th belong to the messages.
    let mut bytes = handshake().encode().to_vec();
    assert_eq!(Handshake::parse(&bytes), Ok(handshake()));
    bytes.extend_from_slice(&encode(&Message::Interested));
    assert_eq!(Handshake::parse(&bytes), Ok(handshake()));
}

#[test]
fn short_handshake_says_how_many_bytes_are_missing() {
    // Proves a prefix of a valid handshake is Incomplete with the exact count still needed.
    let bytes = handshake().encode();
    for len in 0..HANDSHAKE_LEN {
        assert_eq!(
            Handshake::parse(&bytes[..len]),
            Err(HandshakeError::Incomplete {
                needed: HANDSHAKE_LEN - len
            })
        );
    }
}

#[test]
fn wrong_protocol_is_refused_as_soon_as_seen() {
    // Proves a non-BitTorrent stream fails on its first byte or on the protocol string, early.
    assert_eq!(
        Handshake::parse(b"\x16"),
        Err(HandshakeError::ProtocolLength { received: 0x16 })
    );
    assert_eq!(
        Handshake::parse(b"GET / HTTP/1.1\r\n"),
        Err(HandshakeError::ProtocolLength { received: b'G' })
    );
    let mut bytes = handshake().encode();
    bytes[1] = b'b';
    assert_eq!(
        Handshake::parse(&bytes[..20]),
        Err(HandshakeError::ProtocolName {
            received: *b"bitTorrent protocol"
        })
    );
    assert_eq!(
        Handshake::parse(&bytes[..19]),
        Err(HandshakeError::Incomplete { needed: 49 })
    );
}

#[test]
fn reserved_bits_sit_where_the_beps_say() {
    // Proves BEP 10 is byte 5 bit 0x10, BEP 6 byte 7 bit 0x04, BEP 5 byte 7 bit 0x01, independently.
    let mut r = Reserved::NONE;
    r.set_extension_protocol(true);
    assert_eq!(r.0, [0, 0, 0, 0, 0, 0x10, 0, 0]);
    r.set_fast(true);
    assert_eq!(r.0, [0, 0, 0, 0, 0, 0x10, 0, 0x04]);
    r.set_dht(true);
    assert_eq!(r.0, [0, 0, 0, 0, 0, 0x10, 0, 0x05]);
    assert!(r.fast() && r.dht() && r.extension_protocol());
    r.set_fast(false);
    assert_eq!(r.0, [0, 0, 0, 0, 0, 0x10, 0, 0x01]);
    assert!(!r.fast() && r.dht());
    r.set_extension_protocol(false);
    r.set_dht(false);
    assert_eq!(r, Reserved::NONE);
}

#[test]
fn unknown_reserved_bits_are_kept() {
    // Proves bits bt does not know survive parse, setters and encode.
    let mut h = handshake();
    h.reserved = Reserved([0x80, 0, 0, 0, 0, 0x01, 0, 0x08]);
    h.reserved.set_fast(true);
    let parsed = Handshake::parse(&h.encode()).unwrap();
    assert_eq!(parsed.reserved.0, [0x80, 0, 0, 0, 0, 0x01, 0, 0x0c]);
    assert!(!parsed.reserved.extension_protocol() && !parsed.reserved.dht());
}

#[test]
fn debug_forms_are_readable() {
    // Proves PeerId shows printable ASCII and escapes the rest, and Reserved names its bits.
    let mut id = [0u8; 20];
    id[..8].copy_from_slice(b"-BT0001-");
    id[8] = b'"';
    id[9] = 0xff;
    assert_eq!(
        format!("{:?}", PeerId(id)),
        r#"PeerId("-BT0001-\"\xff\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00")"#
    );
    assert_eq!(
        format!("{:?}", handshake().reserved),
        "Reserved(0000000000100005 fast extended dht)"
    );
}

// ---------------------------------------------------------------------------------------------
// Messages

#[test]
fn message_encoding_snapshot() {
    // Proves the wire bytes of every message kind (length prefix, id, payload).
    let mut out = String::new();
    for (name, message) in one_of_each() {
        writeln!(out, "{name:<15} {}", frame_dump(&encode(&message))).unwrap();
    }
    insta::assert_snapshot!(out);
}

#[test]
fn ids_are_the_bep_numbers() {
    // Proves each message's id against BEP 3 (0-8), BEP 5 (9), BEP 6 (0x0D-0x11), BEP 10 (20).
    let ids: Vec<Option<u8>> = one_of_each().iter().map(|(_, m)| m.id()).collect();
    let mut expected = vec![None];
    expected.extend(
        (0..=9)
            .chain([0x0D, 0x0E, 0x0F, 0x10, 0x11, 20, 21])
            .map(Some),
    );
    assert_eq!(ids, expected);
}

#[test]
fn every_message_decodes_back_with_its_length() {
    // Proves encode/decode agree for each kind, and encoded_len is the bytes written.
    let limits = WireLimits::for_pieces(24);
    for (name, message) in one_of_each() {
        let bytes = encode(&message);
        assert_eq!(bytes.len(), message.encoded_len(), "{name}");
        assert_eq!(
            Message::decode(&bytes, &limits),
            Ok(Some((message, bytes.len()))),
            "{name}"
        );
        for cut in 0..bytes.len() {
            assert_eq!(
                Message::decode(&bytes[..cut], &limits),
                Ok(None),
                "{name} cut at {cut}"
            );
        }
    }
}

#[test]
fn fixed_size_messages_refuse_any_other_length() {
    // Proves IncorrectLength { id, expected, received } for every fixed-size id, one byte off each way.
    let limits = WireLimits::default();
    let fixed: [(u8, u32); 13] = [
        (id::CHOKE, 1),
        (id::UNCHOKE, 1),
        (id::INTERESTED, 1),
        (id::NOT_INTERESTED, 1),
        (id::HAVE, 5),
        (id::REQUEST, 13),
        (id::CANCEL, 13),
        (id::PORT, 3),
        (id::SUGGEST_PIECE, 5),
        (id::HAVE_ALL, 1),
        (id::HAVE_NONE, 1),
        (id::REJECT_REQUEST, 13),
        (id::ALLOWED_FAST, 5),
    ];
    for (message_id, expected) in fixed {
        let mut lens = vec![expected + 1];
        if expected > 1 {
            lens.push(expected - 1);
        }
        for received in lens {
            let bytes = frame_of(message_id, &vec![0; received as usize - 1]);
            let error = WireError::IncorrectLength {
                id: message_id,
                expected,
                received,
            };
            // From the header alone, from the whole frame, and from the body alone.
            assert_eq!(Message::decode(&bytes[..5], &limits), Err(error));
            assert_eq!(Message::decode(&bytes, &limits), Err(error));
            assert_eq!(Message::parse_body(&bytes[4..]), Err(error));
        }
    }
}

#[test]
fn variable_messages_need_their_fixed_fields() {
    // Proves TooShort for a piece without index and begin and an extended message without its id.
    let limits = WireLimits::default();
    let piece = frame_of(id::PIECE, &[0; 7]);
    let error = WireError::TooShort {
        id: id::PIECE,
        min: 9,
        received: 8,
    };
    assert_eq!(Message::decode(&piece, &limits), Err(error));
    assert_eq!(Message::parse_body(&piece[4..]), Err(error));
    let extended = frame_of(id::EXTENDED, &[]);
    let error = WireError::TooShort {
        id: id::EXTENDED,
        min: 2,
        received: 1,
    };
    assert_eq!(Message::decode(&extended, &limits), Err(error));
    assert_eq!(Message::parse_body(&extended[4..]), Err(error));
    // The shortest legal forms.
    assert_eq!(
        Message::decode(&frame_of(id::PIECE, &[0; 8]), &limits),
        Ok(Some((
            Message::Piece {
                piece: 0,
                offset: 0,
                data: &[]
            },
            13
        )))
    );
    assert_eq!(
        Message::decode(&frame_of(id::BITFIELD, &[]), &limits),
        Ok(Some((Message::Bitfield(&[]), 5)))
    );
}

#[test]
fn oversized_frames_are_refused_from_the_header() {
    // Proves FrameTooLong per id (block, bitfield by piece count, extended, unknown) from 5 bytes.
    let limits = WireLimits {
        max_block_len: 16 * 1024,
        piece_count: Some(17),
        max_extended_len: 1000,
    };
    let cases: [(u8, u32); 4] = [
        (id::PIECE, 9 + 16 * 1024),
        (id::BITFIELD, 1 + 3),
        (id::EXTENDED, 2 + 1000),
        (21, 9 + 16 * 1024),
    ];
    for (message_id, max) in cases {
        let at_max = frame_of(message_id, &vec![0; max as usize - 1]);
        assert!(
            Message::decode(&at_max, &limits).unwrap().is_some(),
            "id {message_id}"
        );
        let mut header = (max + 1).to_be_bytes().to_vec();
        header.push(message_id);
        assert_eq!(
            Message::decode(&header, &limits),
            Err(WireError::FrameTooLong {
                id: message_id,
                len: max + 1,
                max
            })
        );
    }
    // A length prefix of 4 GiB - 1 is judged without overflow.
    let mut header = u32::MAX.to_be_bytes().to_vec();
    header.push(id::PIECE);
    assert!(matches!(
        Message::decode(&header, &limits),
        Err(WireError::FrameTooLong { .. })
    ));
}

#[test]
fn unknown_ids_come_back_as_unknown() {
    // Proves every id outside BEP 3/5/6/10 is passed up with its payload, not refused.
    let limits = WireLimits::default();
    for message_id in (0..=255u8).filter(|i| !KNOWN_IDS.contains(i)) {
        let bytes = frame_of(message_id, b"xyz");
        assert_eq!(
            Message::decode(&bytes, &limits),
            Ok(Some((
                Message::Unknown {
                    id: message_id,
                    payload: b"xyz"
                },
                8
            )))
        );
    }
}

#[test]
fn keep_alive_is_a_zero_length_frame() {
    // Proves BEP 3 "messages of length zero are keepalives" both ways.
    assert_eq!(encode(&Message::KeepAlive), [0, 0, 0, 0]);
    assert_eq!(
        Message::decode(&[0, 0, 0, 0, 7], &WireLimits::default()),
        Ok(Some((Message::KeepAlive, 4)))
    );
    assert_eq!(Message::parse_body(&[]), Ok(Message::KeepAlive));
}

#[test]
fn unknown_with_a_known_id_encodes_as_that_message() {
    // Proves the documented exception to the round trip: the id decides the decoding.
    let bytes = encode(&Message::Unknown {
        id: id::HAVE,
        payload: &[0, 0, 0, 5],
    });
    assert_eq!(
        Message::decode(&bytes, &WireLimits::default()),
        Ok(Some((Message::Have { piece: 5 }, 9)))
    );
}

#[test]
fn long_payloads_debug_as_lengths() {
    // Proves a 16 KiB block does not flood logs: Debug shows its length, short payloads in hex.
    let data = vec![0u8; 16 * 1024];
    let piece = Message::Piece {
        piece: 3,
        offset: 0,
        data: &data,
    };
    assert_eq!(
        format!("{piece:?}"),
        "Piece { piece: 3, offset: 0, data: <16384 bytes> }"
    );
    assert_eq!(
        format!("{:?}", Message::Bitfield(&[0xf0])),
        "Bitfield(0xf0)"
    );
}

// ---------------------------------------------------------------------------------------------
// Limits

#[test]
fn limits_bound_the_buffer() {
    // Proves max_frame_len is 4 + the largest per-id bound, and never below the handshake.
    let default = WireLimits::default();
    assert_eq!(default.max_bitfield_len(), UNKNOWN_PIECE_COUNT_BOUND / 8);
    assert_eq!(default.max_frame_len(), 4 + 2 + 1024 * 1024);
    let small = WireLimits {
        max_block_len: 16 * 1024,
        piece_count: Some(1000),
        max_extended_len: 100,
    };
    assert_eq!(small.max_bitfield_len(), 125);
    assert_eq!(small.max_frame_len(), 4 + 9 + 16 * 1024);
    let tiny = WireLimits {
        max_block_len: 0,
        piece_count: Some(0),
        max_extended_len: 0,
    };
    assert_eq!(tiny.max_frame_len(), HANDSHAKE_LEN);
    let huge = WireLimits {
        max_block_len: u32::MAX,
        piece_count: Some(u32::MAX),
        max_extended_len: u32::MAX,
    };
    assert_eq!(huge.length_range(id::PIECE), (9, u32::MAX));
    assert_eq!(huge.max_frame_len(), u32::MAX as usize + 4);
}

// ---------------------------------------------------------------------------------------------
// Frame decoder

fn sample_stream() -> (Vec<u8>, Vec<Message<'static>>) {
    let messages: Vec<Message<'static>> = one_of_each().into_iter().map(|(_, m)| m).collect();
    let mut stream = Vec::new();
    for m in &messages {
        m.encode_into(&mut stream);
    }
    (stream, messages)
}

#[test]
fn decoder_gives_the_same_frames_for_any_split() {
    // Proves byte-at-a-time, odd-sized and whole-stream feeding all yield the same messages.
    let (stream, messages) = sample_stream();
    let limits = WireLimits::for_pieces(24);
    for sizes in [&[1][..], &[2, 3, 5, 7], &[13], &[stream.len()]] {
        let frames = decode_chunked(limits, &stream, sizes).unwrap();
        let decoded: Vec<Message<'_>> = frames.iter().map(Frame::message).collect();
        assert_eq!(decoded, messages, "chunk sizes {sizes:?}");
    }
}

#[test]
fn decoder_takes_the_handshake_then_frames() {
    // Proves a handshake and messages arriving in one read are split correctly.
    let mut stream = handshake().encode().to_vec();
    Message::HaveAll.encode_into(&mut stream);
    let mut decoder = FrameDecoder::new(WireLimits::default());
    assert_eq!(decoder.extend(&stream[..40]), 40);
    assert_eq!(decoder.take_handshake(), Ok(None));
    assert_eq!(decoder.extend(&stream[40..]), stream.len() - 40);
    assert_eq!(decoder.take_handshake(), Ok(Some(handshake())));
    let frame = decoder.next_frame().unwrap().unwrap();
    assert_eq!(frame.message(), Message::HaveAll);
    assert_eq!(decoder.next_frame(), Ok(None));
}

#[test]
fn decoder_refuses_a_foreign_handshake() {
    // Proves take_handshake fails on the first wrong byte and consumes nothing.
    let mut decoder = FrameDecoder::new(WireLimits::default());
    let _ = decoder.extend(b"\x13BitTorrent protocoX");
    let error = Err(HandshakeError::ProtocolName {
        received: *b"BitTorrent protocoX",
    });
    assert_eq!(decoder.take_handshake(), error);
    assert_eq!(decoder.take_handshake(), error);
    assert_eq!(decoder.buffered_len(), 20);
}

#[test]
fn decoder_refuses_an_oversized_frame_before_buffering_it() {
    // Proves FrameTooLong comes from the 5-byte header and is returned again on every call.
    let mut decoder = FrameDecoder::new(WireLimits::for_pieces(8));
    let mut header = 3u32.to_be_bytes().to_vec();
    header.push(id::BITFIELD);
    assert_eq!(decoder.extend(&header), 5);
    let error = Err(WireError::FrameTooLong {
        id: id::BITFIELD,
        len: 3,
        max: 2,
    });
    assert_eq!(decoder.next_frame(), error);
    assert_eq!(decoder.next_frame(), error);
    assert_eq!(decoder.buffered_len(), 5);
}

#[test]
fn decoder_takes_only_what_fits_and_then_makes_room() {
    // Proves extend stops at the bound, and a full buffer always yields a frame.
    let limits = WireLimits {
        max_block_len: 100,
        piece_count: Some(8),
        max_extended_len: 10,
    };
    let data = [7u8; 100];
    let piece = Message::Piece {
        piece: 0,
        offset: 0,
        data: &data,
    };
    let mut stream = Vec::new();
    for _ in 0..5 {
        piece.encode_into(&mut stream);
    }
    let mut decoder = FrameDecoder::new(limits);
    assert_eq!(decoder.max_buffered_len(), 113);
    let mut rest = &stream[..];
    let mut frames = 0;
    while !rest.is_empty() {
        let taken = decoder.extend(rest);
        assert!(decoder.buffered_len() <= 113);
        if taken < rest.len() {
            assert!(
                decoder.next_frame().unwrap().is_some(),
                "a full buffer holds a frame"
            );
            frames += 1;
        }
        rest = &rest[taken..];
        while let Some(frame) = decoder.next_frame().unwrap() {
            assert_eq!(frame.message(), piece);
            frames += 1;
        }
    }
    assert_eq!(frames, 5);
}

#[test]
fn block_data_is_a_view_of_the_receive_buffer() {
    // Proves zero copy: two blocks from one read sit in one allocation, one frame apart.
    let (a, b) = ([1u8; 64], [2u8; 64]);
    let mut stream = Vec::new();
    for data in [&a, &b] {
        Message::Piece {
            piece: 0,
            offset: 0,
            data,
        }
        .encode_into(&mut stream);
    }
    let mut decoder = FrameDecoder::new(WireLimits::default());
    assert_eq!(decoder.extend(&stream), stream.len());
    let first = decoder.next_frame().unwrap().unwrap();
    let second = decoder.next_frame().unwrap().unwrap();
    let (p1, p2) = (first.payload().as_ptr(), second.payload().as_ptr());
    assert_eq!(p2 as usize - p1 as usize, 13 + 64);
    // The borrowed message and the owned payload are the same bytes.
    let Message::Piece { data, .. } = second.message() else {
        panic!("expected a piece");
    };
    assert_eq!(data.as_ptr(), p2);
    assert_eq!(second.into_payload().as_ref(), &b);
}

#[test]
fn decoder_bounds_follow_set_limits() {
    // Proves the bitfield bound tightens once the piece count is known (a magnet's metadata).
    let bitfield = frame_of(id::BITFIELD, &[0xff; 4]);
    let mut decoder = FrameDecoder::new(WireLimits::default());
    decoder.set_limits(WireLimits::for_pieces(8));
    assert_eq!(decoder.limits().piece_count, Some(8));
    let _ = decoder.extend(&bitfield);
    assert_eq!(
        decoder.next_frame(),
        Err(WireError::FrameTooLong {
            id: id::BITFIELD,
            len: 5,
            max: 2
        })
    );
    decoder.set_limits(WireLimits::for_pieces(32));
    assert_eq!(
        decoder.next_frame().unwrap().unwrap().message(),
        Message::Bitfield(&[0xff; 4])
    );
}

#[test]
fn malformed_body_is_an_error_from_the_decoder() {
    // Proves a fixed-size message with a wrong length fails in next_frame too.
    let mut decoder = FrameDecoder::new(WireLimits::default());
    let _ = decoder.extend(&frame_of(id::HAVE, &[0, 0, 1]));
    assert_eq!(
        decoder.next_frame(),
        Err(WireError::IncorrectLength {
            id: id::HAVE,
            expected: 5,
            received: 4
        })
    );
}

// ---------------------------------------------------------------------------------------------
// Extension handshake

fn extended_sample() -> ExtendedHandshake {
    ExtendedHandshake {
        m: BTreeMap::from([
            ("ut_metadata".to_owned(), 2),
            ("ut_pex".to_owned(), 1),
            ("lt_donthave".to_owned(), 0),
        ]),
        port: Some(6881),
        client: Some("bt 0.1.0".to_owned()),
        yourip: Some(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7))),
        ipv4: Some(Ipv4Addr::new(198, 51, 100, 1)),
        ipv6: Some(Ipv6Addr::LOCALHOST),
        reqq: Some(500),
        metadata_size: Some(31_235),
    }
}

#[test]
fn extended_handshake_encoding_snapshot() {
    // Proves the canonical bencode of a full extension handshake (keys sorted, m first).
    insta::assert_snapshot!(hexdump(&extended_sample().encode()));
}

#[test]
fn extended_handshake_round_trips() {
    // Proves parse(encode(h)) == h, for a full and an empty handshake.
    let h = extended_sample();
    assert_eq!(ExtendedHandshake::parse(&h.encode()), Ok(h));
    let empty = ExtendedHandshake::default();
    assert_eq!(empty.encode(), b"d1:mdee");
    assert_eq!(ExtendedHandshake::parse(&empty.encode()), Ok(empty));
}

#[test]
fn extended_handshake_from_the_wild_parses() {
    // Proves a libtorrent-style handshake with unknown keys and unsorted m parses, keys ignored.
    let payload = b"d12:complete_agoi-1e1:md6:ut_pexi1e11:LT_metadatai2e11:upload_onlyi3ee\
13:metadata_sizei40000e1:pi51413e4:reqqi512e11:upload_onlyi1e1:v15:qBittorrent 5.06:yourip4:\x7f\x00\x00\x01e";
    let h = ExtendedHandshake::parse(payload).unwrap();
    assert_eq!(h.extension_id("ut_pex"), Some(1));
    assert_eq!(h.extension_id("LT_metadata"), Some(2));
    assert_eq!(h.extension_id("ut_metadata"), None);
    assert_eq!(h.port, Some(51413));
    assert_eq!(h.reqq, Some(512));
    assert_eq!(h.metadata_size, Some(40_000));
    assert_eq!(h.client.as_deref(), Some("qBittorrent 5.0"));
    assert_eq!(h.yourip, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    assert_eq!(h.ipv4, None);
}

#[test]
fn extended_handshake_ignores_wrong_typed_keys() {
    // Proves wrong types and out-of-range values of optional keys are skipped, not refused.
    let payload = b"d4:ipv43:abc1:md1:ai300e1:bi-1e1:c1:x1:di0e1:ei255ee13:metadata_sizei-5e\
1:pi0e4:reqq2:xx1:vi7e6:yourip5:abcdee";
    let h = ExtendedHandshake::parse(payload).unwrap();
    assert_eq!(
        h.m,
        BTreeMap::from([("d".to_owned(), 0), ("e".to_owned(), 255)])
    );
    assert_eq!(h.extension_id("d"), None);
    assert_eq!(
        h,
        ExtendedHandshake {
            m: h.m.clone(),
            ..ExtendedHandshake::default()
        }
    );
    // m of the wrong type is treated as empty; a port above 65535 is ignored.
    let h = ExtendedHandshake::parse(b"d1:mli1ee1:pi70000ee").unwrap();
    assert_eq!(h, ExtendedHandshake::default());
    // A non-UTF-8 name is skipped; non-UTF-8 v is decoded lossily.
    let h = ExtendedHandshake::parse(b"d1:md2:\xff\xfei1ee1:v2:a\xffe").unwrap();
    assert!(h.m.is_empty());
    assert_eq!(h.client.as_deref(), Some("a\u{fffd}"));
}

#[test]
fn extended_handshake_refuses_what_is_not_a_dictionary() {
    // Proves NotADict and Bencode errors for payloads that are not a bencoded dictionary.
    assert_eq!(
        ExtendedHandshake::parse(b"li1ee"),
        Err(ExtendedError::NotADict { kind: "list" })
    );
    assert!(matches!(
        ExtendedHandshake::parse(b"d1:m"),
        Err(ExtendedError::Bencode(_))
    ));
    assert!(matches!(
        ExtendedHandshake::parse(b""),
        Err(ExtendedError::Bencode(_))
    ));
    // Nesting past the decode limits is refused, not recursed into.
    let deep = format!("d1:x{}{}e", "l".repeat(100), "e".repeat(100));
    assert!(matches!(
        ExtendedHandshake::parse(deep.as_bytes()),
        Err(ExtendedError::Bencode(_))
    ));
}

#[test]
fn extended_handshake_bounds_m() {
    // Proves at most MAX_EXTENSIONS names of at most MAX_EXTENSION_NAME_LEN bytes are accepted.
    let m_of = |names: &[String]| {
        let mut s = String::from("d1:md");
        for n in names {
            write!(s, "{}:{n}i1e", n.len()).unwrap();
        }
        s.push_str("ee");
        s
    };
    let names: Vec<String> = (0..MAX_EXTENSIONS).map(|i| format!("ext{i:03}")).collect();
    assert_eq!(
        ExtendedHandshake::parse(m_of(&names).as_bytes())
            .unwrap()
            .m
            .len(),
        MAX_EXTENSIONS
    );
    let mut too_many = names.clone();
    too_many.push("ext999".to_owned());
    assert_eq!(
        ExtendedHandshake::parse(m_of(&too_many).as_bytes()),
        Err(ExtendedError::TooManyExtensions {
            count: MAX_EXTENSIONS + 1,
            max: MAX_EXTENSIONS
        })
    );
    let long = vec!["x".repeat(MAX_EXTENSION_NAME_LEN + 1)];
    assert_eq!(
        ExtendedHandshake::parse(m_of(&long).as_bytes()),
        Err(ExtendedError::ExtensionNameTooLong {
            len: MAX_EXTENSION_NAME_LEN + 1,
            max: MAX_EXTENSION_NAME_LEN
        })
    );
    let longest = vec!["x".repeat(MAX_EXTENSION_NAME_LEN)];
    assert!(ExtendedHandshake::parse(m_of(&longest).as_bytes()).is_ok());
}

// ---------------------------------------------------------------------------------------------
// Property tests

/// An owned description of a message, so proptest can generate and shrink it.
#[derive(Clone, Debug)]
struct Spec {
    kind: u8,
    a: u32,
    b: u32,
    c: u32,
    small: u16,
    bytes: Vec<u8>,
}

impl Spec {
    fn message(&self) -> Message<'_> {
        let (a, b, c, bytes) = (self.a, self.b, self.c, &self.bytes[..]);
        match self.kind % 18 {
            0 => Message::KeepAlive,
            1 => Message::Choke,
            2 => Message::Unchoke,
            3 => Message::Interested,
            4 => Message::NotInterested,
            5 => Message::Have { piece: a },
            6 => Message::Bitfield(bytes),
            7 => Message::Request {
                piece: a,
                offset: b,
                len: c,
            },
            8 => Message::Piece {
                piece: a,
                offset: b,
                data: bytes,
            },
            9 => Message::Cancel {
                piece: a,
                offset: b,
                len: c,
            },
            10 => Message::Port(self.small),
            11 => Message::HaveAll,
            12 => Message::HaveNone,
            13 => Message::SuggestPiece(a),
            14 => Message::RejectRequest {
                piece: a,
                offset: b,
                len: c,
            },
            15 => Message::AllowedFast(a),
            16 => Message::Extended {
                id: self.small as u8,
                payload: bytes,
            },
            _ => {
                let unknown: Vec<u8> = (0..=255).filter(|i| !KNOWN_IDS.contains(i)).collect();
                Message::Unknown {
                    id: unknown[usize::from(self.small) % unknown.len()],
                    payload: bytes,
                }
            }
        }
    }
}

fn spec() -> impl Strategy<Value = Spec> {
    spec_with_payload(300)
}

fn spec_with_payload(max_len: usize) -> impl Strategy<Value = Spec> {
    (
        any::<u8>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<u16>(),
        proptest::collection::vec(any::<u8>(), 0..max_len),
    )
        .prop_map(|(kind, a, b, c, small, bytes)| Spec {
            kind,
            a,
            b,
            c,
            small,
            bytes,
        })
}

/// Bytes that look like a stream often enough to get past the first header: valid frames with
/// small payloads, frame headers with small lengths and any id, a valid handshake, and raw noise,
/// concatenated.
fn hostile_stream() -> impl Strategy<Value = Vec<u8>> {
    let segment = prop_oneof![
        12 => spec_with_payload(48).prop_map(|spec| encode(&spec.message())),
        1 => (
            0u32..80,
            prop_oneof![proptest::sample::select(&KNOWN_IDS[..]), any::<u8>()]
        )
            .prop_map(|(len, id)| {
                let mut header = len.to_be_bytes().to_vec();
                header.push(id);
                header
            }),
        1 => Just(handshake().encode().to_vec()),
        1 => proptest::collection::vec(any::<u8>(), 0..40),
    ];
    proptest::collection::vec(segment, 0..60).prop_map(|segments| segments.concat())
}

/// Limits every generated message fits in (payloads under 300 bytes), with a small buffer.
const PROP_LIMITS: WireLimits = WireLimits {
    max_block_len: 300,
    piece_count: Some(2400),
    max_extended_len: 300,
};

proptest! {
    #[test]
    fn message_round_trip(spec in spec()) {
        // Proves decode(encode(m)) == m, consuming exactly encoded_len bytes, for any message.
        let message = spec.message();
        let bytes = encode(&message);
        prop_assert_eq!(bytes.len(), message.encoded_len());
        prop_assert_eq!(
            Message::decode(&bytes, &PROP_LIMITS),
            Ok(Some((message, bytes.len())))
        );
        let frames = decode_chunked(PROP_LIMITS, &bytes, &[bytes.len()]).unwrap();
        prop_assert_eq!(frames.len(), 1);
        prop_assert_eq!(frames[0].message(), message);
    }

    #[test]
    fn split_stream_decodes_as_unsplit(
        specs in proptest::collection::vec(spec(), 0..24),
        chunk_sizes in proptest::collection::vec(1usize..700, 1..16),
    ) {
        // Proves a message stream split anywhere decodes to the same messages as whole.
        let messages: Vec<Message<'_>> = specs.iter().map(Spec::message).collect();
        let mut stream = Vec::new();
        for m in &messages {
            m.encode_into(&mut stream);
        }
        let whole = decode_chunked(PROP_LIMITS, &stream, &[stream.len().max(1)]).unwrap();
        let split = decode_chunked(PROP_LIMITS, &stream, &chunk_sizes).unwrap();
        let whole: Vec<Message<'_>> = whole.iter().map(Frame::message).collect();
        let split: Vec<Message<'_>> = split.iter().map(Frame::message).collect();
        prop_assert_eq!(&whole, &messages);
        prop_assert_eq!(&split, &messages);
    }

    #[test]
    fn arbitrary_bytes_never_panic_or_overgrow(
        bytes in hostile_stream(),
        chunk_sizes in proptest::collection::vec(1usize..300, 1..8),
        max_block_len in 0u32..64,
        piece_count in proptest::option::of(0u32..200),
        max_extended_len in 0u32..64,
        handshake_first in any::<bool>(),
    ) {
        // Proves hostile input only ever yields frames or a typed error, within the buffer bound.
        let limits = WireLimits { max_block_len, piece_count, max_extended_len };
        let mut decoder = FrameDecoder::new(limits);
        let mut rest = &bytes[..];
        let mut sizes = chunk_sizes.iter().copied().cycle();
        let mut in_handshake = handshake_first;
        'feed: while !rest.is_empty() {
            let size = sizes.next().unwrap_or(1).min(rest.len());
            let taken = decoder.extend(&rest[..size]);
            prop_assert!(decoder.buffered_len() <= decoder.max_buffered_len());
            rest = &rest[taken..];
            if in_handshake {
                match decoder.take_handshake() {
                    Ok(Some(_)) => in_handshake = false,
                    Ok(None) => continue,
                    Err(_) => break 'feed,
                }
            }
            loop {
                match decoder.next_frame() {
                    Ok(Some(frame)) => {
                        let message = frame.message();
                        // What the decoder accepts is within the bounds and re-encodes to itself.
                        prop_assert!(message.encoded_len() <= limits.max_frame_len());
                        let again = encode(&message);
                        prop_assert_eq!(Message::decode(&again, &limits), Ok(Some((message, again.len()))));
                    }
                    Ok(None) => break,
                    Err(_) => break 'feed,
                }
            }
            // Progress: if nothing was taken, the buffer was full and must have yielded a frame.
            prop_assert!(taken > 0 || decoder.buffered_len() < decoder.max_buffered_len());
        }
    }

    #[test]
    fn message_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        // Proves the standalone decoders take any bytes without panicking.
        let _ = Message::decode(&bytes, &WireLimits::default());
        let _ = Message::parse_body(&bytes);
        let _ = Handshake::parse(&bytes);
        let _ = ExtendedHandshake::parse(&bytes);
    }

    #[test]
    fn handshake_round_trip(reserved in any::<[u8; 8]>(), info_hash in any::<[u8; 20]>(), peer_id in any::<[u8; 20]>()) {
        // Proves parse(encode(h)) == h for every reserved, info hash and peer id.
        let h = Handshake { reserved: Reserved(reserved), info_hash: InfoHash(info_hash), peer_id: PeerId(peer_id) };
        prop_assert_eq!(Handshake::parse(&h.encode()), Ok(h));
    }

    #[test]
    fn extended_handshake_round_trip(
        m in proptest::collection::btree_map("[a-zA-Z_]{1,64}", any::<u8>(), 0..=MAX_EXTENSIONS),
        port in proptest::option::of(1u16..),
        client in proptest::option::of(".{0,40}"),
        yourip in proptest::option::of(any::<IpAddr>()),
        ipv4 in proptest::option::of(any::<Ipv4Addr>()),
        ipv6 in proptest::option::of(any::<Ipv6Addr>()),
        reqq in proptest::option::of(any::<u32>()),
        metadata_size in proptest::option::of(0..=i64::MAX as u64),
    ) {
        // Proves parse(encode(h)) == h for any handshake within the bounds.
        let h = ExtendedHandshake { m, port, client, yourip, ipv4, ipv6, reqq, metadata_size };
        prop_assert_eq!(ExtendedHandshake::parse(&h.encode()), Ok(h));
    }

    #[test]
    fn extended_handshake_parse_never_panics(
        payload in proptest::collection::vec(prop_oneof![Just(b'd'), Just(b'e'), Just(b'i'), Just(b'l'), Just(b':'), Just(b'1'), Just(b'4'), any::<u8>()], 0..200),
    ) {
        // Proves bencode-flavoured garbage yields a handshake or a typed error, never a panic.
        let _ = ExtendedHandshake::parse(&payload);
    }
}
