//! The uTP packet (BEP 29): the 20-byte header, the extension chain and the payload.
//!
//! Layout (all fields big-endian):
//!
//! ```text
//! 0       4       8               16              24              32
//! +-------+-------+---------------+---------------+---------------+
//! | type  | ver   | extension     | connection_id                 |
//! +-------+-------+---------------+---------------+---------------+
//! | timestamp_microseconds                                        |
//! +---------------+---------------+---------------+---------------+
//! | timestamp_difference_microseconds                             |
//! +---------------+---------------+---------------+---------------+
//! | wnd_size                                                      |
//! +---------------+---------------+---------------+---------------+
//! | seq_nr                        | ack_nr                        |
//! +---------------+---------------+---------------+---------------+
//! ```
//!
//! `extension` names the first extension; each extension is `next extension type`, `length`,
//! then `length` bytes, and type 0 ends the chain. Type 1 is the selective ACK: a bitmask whose
//! bit `i` (byte `i / 8`, least significant bit first) says packet `ack_nr + 2 + i` arrived. BEP 29
//! says its length is a multiple of 4, and ours are; libtorrent sends any length (9 and 18 bytes
//! seen), so any non-zero length is taken. Other types are skipped.
//!
//! [`Packet`] borrows its selective ACK and payload from the datagram. Decoding never panics:
//! every malformed input is a [`PacketError`] naming the rule it broke. Extension chains are
//! bounded by the datagram itself (each extension takes at least two bytes).

use crate::utp::seq::Seq;

/// The fixed header's length in bytes.
pub const HEADER_LEN: usize = 20;

/// The protocol version this codec speaks (BEP 29's `ver`).
pub const VERSION: u8 = 1;

/// The selective-ACK extension's type.
pub const EXTENSION_SACK: u8 = 1;

/// The longest selective-ACK bitmask the extension's one-byte length allows (a multiple of 4).
pub const MAX_SACK_LEN: usize = 252;

/// The five packet types of BEP 29.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketType {
    /// `ST_DATA` (0): payload, consumes a sequence number.
    Data,
    /// `ST_FIN` (1): the sender's last sequence number; ends its stream.
    Fin,
    /// `ST_STATE` (2): an acknowledgement with no payload; does not consume a sequence number.
    State,
    /// `ST_RESET` (3): terminates the connection at once.
    Reset,
    /// `ST_SYN` (4): opens a connection; its `connection_id` is the initiator's receive id.
    Syn,
}

impl PacketType {
    /// The type's 4-bit code.
    pub const fn code(self) -> u8 {
        match self {
            PacketType::Data => 0,
            PacketType::Fin => 1,
            PacketType::State => 2,
            PacketType::Reset => 3,
            PacketType::Syn => 4,
        }
    }

    /// The type with 4-bit code `code`, if BEP 29 defines one.
    pub const fn from_code(code: u8) -> Option<PacketType> {
        match code {
            0 => Some(PacketType::Data),
            1 => Some(PacketType::Fin),
            2 => Some(PacketType::State),
            3 => Some(PacketType::Reset),
            4 => Some(PacketType::Syn),
            _ => None,
        }
    }
}

/// The fixed 20-byte header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The packet's type.
    pub ty: PacketType,
    /// The receiver's connection id (for a SYN, the initiator's receive id).
    pub connection_id: u16,
    /// The sender's clock, in microseconds, when it sent the packet (wraps).
    pub timestamp_micros: u32,
    /// The sender's last measurement of the one-way delay from us: its receive time minus our
    /// timestamp on the last packet it got from us (wraps; clocks are not synchronised).
    pub timestamp_difference_micros: u32,
    /// The sender's advertised receive window, in bytes.
    pub wnd_size: u32,
    /// The packet's sequence number (for `ST_STATE`, the sender's next one).
    pub seq_nr: Seq,
    /// The last sequence number the sender received in order.
    pub ack_nr: Seq,
}

/// A decoded packet; the selective ACK and payload borrow from the datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    /// The fixed header.
    pub header: Header,
    /// The selective-ACK bitmask, if the packet carries one (bit `i`: `ack_nr + 2 + i` arrived).
    /// When a packet carries several, the first counts.
    pub sack: Option<&'a [u8]>,
    /// Everything after the extension chain.
    pub payload: &'a [u8],
}

/// Why a datagram is not a uTP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// Shorter than the fixed header (BEP 29: the header is 20 bytes).
    #[error("{len} bytes, shorter than the {HEADER_LEN}-byte header")]
    TruncatedHeader {
        /// The datagram's length.
        len: usize,
    },
    /// The version nibble is not 1.
    #[error("version {0}, not {VERSION}")]
    BadVersion(u8),
    /// The type nibble names none of the five types.
    #[error("unknown packet type {0}")]
    UnknownType(u8),
    /// An extension's type and length, or its body, run past the end of the datagram.
    #[error("extension {ty} runs past the end of the datagram")]
    TruncatedExtension {
        /// The extension's type.
        ty: u8,
    },
    /// A selective ACK of no bytes (BEP 29 wants a multiple of 4; libtorrent does not keep to
    /// that, so only an empty one is refused).
    #[error("selective ACK of {0} bytes")]
    BadSackLength(u8),
}

impl<'a> Packet<'a> {
    /// Decodes one datagram.
    pub fn decode(datagram: &'a [u8]) -> Result<Packet<'a>, PacketError> {
        let Some((fixed, mut rest)) = datagram.split_first_chunk::<HEADER_LEN>() else {
            return Err(PacketError::TruncatedHeader {
                len: datagram.len(),
            });
        };
        let header = decode_header(fixed)?;
        let mut sack = None;
        let mut next = fixed[1];
        while next != 0 {
            let ty = next;
            let [following, len, body @ ..] = rest else {
                return Err(PacketError::TruncatedExtension { ty });
            };
            let Some((ext, after)) = body.split_at_checked(usize::from(*len)) else {
                return Err(PacketError::TruncatedExtension { ty });
            };
            if ty == EXTENSION_SACK {
                if *len == 0 {
                    return Err(PacketError::BadSackLength(*len));
                }
                sack.get_or_insert(ext);
            }
            next = *following;
            rest = after;
        }
        Ok(Packet {
            header,
            sack,
            payload: rest,
        })
    }

    /// Appends the encoded packet to `out`. A selective ACK longer than [`MAX_SACK_LEN`] is cut
    /// there and one whose length is not a multiple of 4 is padded with zero bytes, so the output
    /// always decodes.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let h = &self.header;
        let sack = self.sack.map(|s| &s[..s.len().min(MAX_SACK_LEN)]);
        out.push(h.ty.code() << 4 | VERSION);
        out.push(if sack.is_some() { EXTENSION_SACK } else { 0 });
        out.extend_from_slice(&h.connection_id.to_be_bytes());
        out.extend_from_slice(&h.timestamp_micros.to_be_bytes());
        out.extend_from_slice(&h.timestamp_difference_micros.to_be_bytes());
        out.extend_from_slice(&h.wnd_size.to_be_bytes());
        out.extend_from_slice(&h.seq_nr.0.to_be_bytes());
        out.extend_from_slice(&h.ack_nr.0.to_be_bytes());
        if let Some(mask) = sack {
            let padded = mask.len().div_ceil(4).max(1) * 4;
            out.push(0);
            out.push(padded as u8);
            out.extend_from_slice(mask);
            out.resize(out.len() + padded - mask.len(), 0);
        }
        out.extend_from_slice(self.payload);
    }

    /// The encoded length of this packet.
    pub fn encoded_len(&self) -> usize {
        let sack = self
            .sack
            .map_or(0, |s| 2 + s.len().min(MAX_SACK_LEN).div_ceil(4).max(1) * 4);
        HEADER_LEN + sack + self.payload.len()
    }
}

fn decode_header(b: &[u8; HEADER_LEN]) -> Result<Header, PacketError> {
    let version = b[0] & 0x0f;
    if version != VERSION {
        return Err(PacketError::BadVersion(version));
    }
    let ty = PacketType::from_code(b[0] >> 4).ok_or(PacketError::UnknownType(b[0] >> 4))?;
    let u16_at = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
    let u32_at = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    Ok(Header {
        ty,
        connection_id: u16_at(2),
        timestamp_micros: u32_at(4),
        timestamp_difference_micros: u32_at(8),
        wnd_size: u32_at(12),
        seq_nr: Seq(u16_at(16)),
        ack_nr: Seq(u16_at(18)),
    })
}

/// Whether bit `i` of a selective-ACK bitmask is set (packet `ack_nr + 2 + i` arrived); bits past
/// the end are clear.
pub fn sack_bit(mask: &[u8], i: usize) -> bool {
    mask.get(i / 8).is_some_and(|byte| byte >> (i % 8) & 1 == 1)
}

/// What one UDP datagram on a socket shared by uTP and the DHT is (libtorrent tells them apart
/// the same way).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DatagramKind {
    /// Starts with a byte whose low nibble is version 1 and high nibble one of the five types,
    /// and is at least a header long.
    Utp,
    /// Starts with `d`: a bencoded dictionary, a KRPC message (BEP 5). `d` is 0x64, version 4,
    /// so it is never uTP.
    Dht,
    /// Neither.
    Other,
}

/// Sorts a datagram received on a shared UDP socket by its first byte (and length).
pub fn classify(datagram: &[u8]) -> DatagramKind {
    match datagram.first() {
        Some(b'd') => DatagramKind::Dht,
        Some(&b)
            if b & 0x0f == VERSION
                && PacketType::from_code(b >> 4).is_some()
                && datagram.len() >= HEADER_LEN =>
        {
            DatagramKind::Utp
        }
        _ => DatagramKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header(ty: PacketType) -> Header {
        Header {
            ty,
            connection_id: 0x1234,
            timestamp_micros: 0xdead_beef,
            timestamp_difference_micros: 7,
            wnd_size: 1 << 20,
            seq_nr: Seq(65535),
            ack_nr: Seq(3),
        }
    }

    fn encode(p: &Packet<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        p.encode(&mut out);
        assert_eq!(out.len(), p.encoded_len());
        out
    }

    #[test]
    fn header_layout_is_pinned() {
        // Proves the byte layout of BEP 29's header: type/version nibbles, big-endian fields.
        let p = Packet {
            header: header(PacketType::Syn),
            sack: None,
            payload: b"",
        };
        assert_eq!(
            encode(&p),
            [
                0x41, 0, 0x12, 0x34, 0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 7, 0, 0x10, 0, 0, 0xff, 0xff,
                0, 3
            ]
        );
    }

    #[test]
    fn malformed_input_names_the_rule() {
        // Proves each kind of malformed datagram gets its own error rather than a panic.
        let good = encode(&Packet {
            header: header(PacketType::State),
            sack: Some(&[1, 0, 0, 0]),
            payload: b"",
        });
        assert_eq!(
            Packet::decode(&good[..19]),
            Err(PacketError::TruncatedHeader { len: 19 })
        );
        let mut v2 = good.clone();
        v2[0] = 0x22;
        assert_eq!(Packet::decode(&v2), Err(PacketError::BadVersion(2)));
        let mut t5 = good.clone();
        t5[0] = 0x51;
        assert_eq!(Packet::decode(&t5), Err(PacketError::UnknownType(5)));
        assert_eq!(
            Packet::decode(&good[..21]),
            Err(PacketError::TruncatedExtension { ty: 1 })
        );
        assert_eq!(
            Packet::decode(&good[..23]),
            Err(PacketError::TruncatedExtension { ty: 1 })
        );
        let mut zero_len = good[..22].to_vec();
        zero_len[21] = 0;
        assert_eq!(
            Packet::decode(&zero_len),
            Err(PacketError::BadSackLength(0))
        );
    }

    #[test]
    fn a_selective_ack_of_any_length_decodes_as_libtorrent_sends_them() {
        // Proves a SACK whose length is not a multiple of 4 (libtorrent sent 9 bytes, the one
        // below, on loopback) is read, not refused: refusing it dropped libtorrent's packets,
        // and a bt upload to libtorrent stalled for good.
        let mut datagram = vec![0x01, 1];
        datagram.extend_from_slice(&[0; 18]);
        datagram.extend_from_slice(&[0, 9, 0, 0, 0, 0, 0xc0, 0xff, 0xff, 0xff, 0xff]);
        datagram.extend_from_slice(b"xyz");
        let p = Packet::decode(&datagram).expect("a 9-byte SACK decodes");
        let mask = p.sack.expect("the SACK is there");
        assert_eq!(mask.len(), 9);
        assert!(!sack_bit(mask, 37) && sack_bit(mask, 38) && sack_bit(mask, 71));
        assert_eq!(p.payload, b"xyz");
    }

    #[test]
    fn unknown_extensions_are_skipped() {
        // Proves an unknown extension before and after the SACK is skipped and the payload found.
        let mut d = encode(&Packet {
            header: header(PacketType::Data),
            sack: None,
            payload: b"",
        });
        d[1] = 2; // extension bitmask (BEP 29's old type 2), then SACK, then unknown 9
        d.extend_from_slice(&[1, 8, 0, 0, 0, 0, 0, 0, 0, 0]);
        d.extend_from_slice(&[9, 4, 0b101, 0, 0, 0]);
        d.extend_from_slice(&[0, 1, 0xaa]);
        d.extend_from_slice(b"payload");
        let p = Packet::decode(&d).unwrap();
        assert_eq!(p.sack, Some(&[0b101, 0, 0, 0][..]));
        assert_eq!(p.payload, b"payload");
        assert!(sack_bit(p.sack.unwrap(), 0));
        assert!(!sack_bit(p.sack.unwrap(), 1));
        assert!(sack_bit(p.sack.unwrap(), 2));
        assert!(!sack_bit(p.sack.unwrap(), 4000));
    }

    #[test]
    fn tells_utp_from_dht() {
        // Proves the first-byte test: KRPC starts with `d`, uTP with type<<4|1.
        let syn = encode(&Packet {
            header: header(PacketType::Syn),
            sack: None,
            payload: b"",
        });
        assert_eq!(classify(&syn), DatagramKind::Utp);
        assert_eq!(classify(b"d1:ad2:id20:"), DatagramKind::Dht);
        assert_eq!(classify(&syn[..10]), DatagramKind::Other);
        assert_eq!(classify(&[0x51; 20]), DatagramKind::Other);
        assert_eq!(classify(&[]), DatagramKind::Other);
    }

    fn any_header() -> impl Strategy<Value = Header> {
        (
            0u8..5,
            any::<u16>(),
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            any::<u16>(),
            any::<u16>(),
        )
            .prop_map(|(ty, id, ts, diff, wnd, seq, ack)| Header {
                ty: PacketType::from_code(ty).unwrap(),
                connection_id: id,
                timestamp_micros: ts,
                timestamp_difference_micros: diff,
                wnd_size: wnd,
                seq_nr: Seq(seq),
                ack_nr: Seq(ack),
            })
    }

    proptest! {
        #[test]
        fn round_trips(
            header in any_header(),
            sack in proptest::option::of((1usize..=63).prop_flat_map(|w| proptest::collection::vec(any::<u8>(), w * 4))),
            payload in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            // Proves every header, every valid SACK and every payload survive encode then decode.
            let p = Packet { header, sack: sack.as_deref(), payload: &payload };
            let bytes = encode(&p);
            prop_assert_eq!(Packet::decode(&bytes), Ok(p));
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            // Proves arbitrary bytes decode or fail, and what decodes re-encodes to a decodable packet.
            if let Ok(p) = Packet::decode(&bytes) {
                let again = encode(&p);
                prop_assert_eq!(Packet::decode(&again).map(|q| q.header), Ok(p.header));
            }
        }
    }
}
