//! [`Message`]: one peer wire message (BEP 3, BEP 5 `port`, BEP 6 Fast extension, BEP 10 extended),
//! borrowing its variable-length part from the buffer it was decoded from.
//!
//! A frame is a 4-byte big-endian length prefix, then (unless the length is 0, a keep-alive) one id
//! byte and the payload. Invariants: decoding never panics and never allocates; a fixed-size message
//! is accepted only at its exact length; every message [`Message::encode_into`] writes decodes back
//! to itself (an [`Message::Unknown`] with a known id decodes as that id's message instead).

use std::fmt;

use super::error::WireError;
use super::limits::WireLimits;

/// Message ids (the byte after the length prefix).
pub mod id {
    /// BEP 3 `choke`.
    pub const CHOKE: u8 = 0;
    /// BEP 3 `unchoke`.
    pub const UNCHOKE: u8 = 1;
    /// BEP 3 `interested`.
    pub const INTERESTED: u8 = 2;
    /// BEP 3 `not interested`.
    pub const NOT_INTERESTED: u8 = 3;
    /// BEP 3 `have`.
    pub const HAVE: u8 = 4;
    /// BEP 3 `bitfield`.
    pub const BITFIELD: u8 = 5;
    /// BEP 3 `request`.
    pub const REQUEST: u8 = 6;
    /// BEP 3 `piece`.
    pub const PIECE: u8 = 7;
    /// BEP 3 `cancel`.
    pub const CANCEL: u8 = 8;
    /// BEP 5 `port` (the sender's DHT port).
    pub const PORT: u8 = 9;
    /// BEP 6 `suggest piece`.
    pub const SUGGEST_PIECE: u8 = 0x0D;
    /// BEP 6 `have all`.
    pub const HAVE_ALL: u8 = 0x0E;
    /// BEP 6 `have none`.
    pub const HAVE_NONE: u8 = 0x0F;
    /// BEP 6 `reject request`.
    pub const REJECT_REQUEST: u8 = 0x10;
    /// BEP 6 `allowed fast`.
    pub const ALLOWED_FAST: u8 = 0x11;
    /// BEP 10 extended message; its first payload byte is the extended message id (0: handshake).
    pub const EXTENDED: u8 = 20;
}

/// Bytes in the length prefix of every frame.
pub const LENGTH_PREFIX_LEN: usize = 4;

/// One peer wire message. Variable-length parts borrow from the decoded buffer.
///
/// The decoder frames and checks lengths only; whether a message is allowed now (a bitfield only
/// first, Fast messages only when both sides set the Fast bit, extended messages only with the
/// extension protocol) is the peer connection's call.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// BEP 3: a zero-length frame, sent to keep an idle connection open.
    KeepAlive,
    /// BEP 3: the sender will not answer requests.
    Choke,
    /// BEP 3: the sender will answer requests.
    Unchoke,
    /// BEP 3: the sender wants pieces the receiver has.
    Interested,
    /// BEP 3: the sender wants nothing from the receiver.
    NotInterested,
    /// BEP 3: the sender has completed and verified `piece`.
    Have {
        /// Piece index.
        piece: u32,
    },
    /// BEP 3: the pieces the sender has, one bit per piece, high bit of byte 0 first; only as the
    /// first message after the handshake.
    Bitfield(&'a [u8]),
    /// BEP 3: asks for `len` bytes of `piece` from `offset`.
    Request {
        /// Piece index.
        piece: u32,
        /// Byte offset within the piece.
        offset: u32,
        /// Bytes wanted.
        len: u32,
    },
    /// BEP 3: a block of data, answering a request.
    Piece {
        /// Piece index.
        piece: u32,
        /// Byte offset within the piece.
        offset: u32,
        /// The block's bytes.
        data: &'a [u8],
    },
    /// BEP 3: withdraws an earlier request.
    Cancel {
        /// Piece index.
        piece: u32,
        /// Byte offset within the piece.
        offset: u32,
        /// Bytes that were requested.
        len: u32,
    },
    /// BEP 5: the UDP port of the sender's DHT node.
    Port(u16),
    /// BEP 6: the sender has every piece (instead of a bitfield).
    HaveAll,
    /// BEP 6: the sender has no piece (instead of a bitfield).
    HaveNone,
    /// BEP 6: the sender suggests downloading this piece (it is likely in its cache).
    SuggestPiece(u32),
    /// BEP 6: a request the sender will not answer.
    RejectRequest {
        /// Piece index.
        piece: u32,
        /// Byte offset within the piece.
        offset: u32,
        /// Bytes that were requested.
        len: u32,
    },
    /// BEP 6: the receiver may request this piece even while choked.
    AllowedFast(u32),
    /// BEP 10: an extension message; `id` 0 is the extension handshake, other ids are those the
    /// receiver assigned in its handshake's `m` dictionary.
    Extended {
        /// The extended message id.
        id: u8,
        /// The extension's payload (for the handshake, a bencoded dictionary).
        payload: &'a [u8],
    },
    /// A message id bt does not know (say BEP 52's hash messages). Peers may send extensions we did
    /// not ask for; the caller decides whether to ignore it.
    Unknown {
        /// The message id.
        id: u8,
        /// The raw payload after the id byte.
        payload: &'a [u8],
    },
}

impl Message<'_> {
    /// The message id byte, or `None` for a keep-alive (which has none).
    pub fn id(&self) -> Option<u8> {
        Some(match self {
            Message::KeepAlive => return None,
            Message::Choke => id::CHOKE,
            Message::Unchoke => id::UNCHOKE,
            Message::Interested => id::INTERESTED,
            Message::NotInterested => id::NOT_INTERESTED,
            Message::Have { .. } => id::HAVE,
            Message::Bitfield(_) => id::BITFIELD,
            Message::Request { .. } => id::REQUEST,
            Message::Piece { .. } => id::PIECE,
            Message::Cancel { .. } => id::CANCEL,
            Message::Port(_) => id::PORT,
            Message::HaveAll => id::HAVE_ALL,
            Message::HaveNone => id::HAVE_NONE,
            Message::SuggestPiece(_) => id::SUGGEST_PIECE,
            Message::RejectRequest { .. } => id::REJECT_REQUEST,
            Message::AllowedFast(_) => id::ALLOWED_FAST,
            Message::Extended { .. } => id::EXTENDED,
            Message::Unknown { id, .. } => *id,
        })
    }

    /// The fixed fields after the id byte, and the variable-length part (empty if none).
    fn parts(&self) -> (FixedFields, &[u8]) {
        match *self {
            Message::KeepAlive
            | Message::Choke
            | Message::Unchoke
            | Message::Interested
            | Message::NotInterested
            | Message::HaveAll
            | Message::HaveNone => (FixedFields::None, &[]),
            Message::Have { piece }
            | Message::SuggestPiece(piece)
            | Message::AllowedFast(piece) => (FixedFields::One(piece), &[]),
            Message::Bitfield(bits) => (FixedFields::None, bits),
            Message::Request { piece, offset, len }
            | Message::Cancel { piece, offset, len }
            | Message::RejectRequest { piece, offset, len } => {
                (FixedFields::Three(piece, offset, len), &[])
            }
            Message::Piece {
                piece,
                offset,
                data,
            } => (FixedFields::Two(piece, offset), data),
            Message::Port(port) => (FixedFields::Port(port), &[]),
            Message::Extended { id, payload } => (FixedFields::Byte(id), payload),
            Message::Unknown { payload, .. } => (FixedFields::None, payload),
        }
    }

    /// Bytes [`Message::encode_into`] writes, length prefix included.
    pub fn encoded_len(&self) -> usize {
        let (fixed, variable) = self.parts();
        let id_len = usize::from(self.id().is_some());
        LENGTH_PREFIX_LEN + id_len + fixed.len() + variable.len()
    }

    /// Appends the frame (length prefix, id, payload) to `out`.
    ///
    /// # Panics
    ///
    /// If the frame would be longer than a length prefix can say (a payload over 4 GiB): a caller
    /// bug, never caused by input from a peer.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let total = self.encoded_len();
        let len = u32::try_from(total - LENGTH_PREFIX_LEN).expect(
            "wire messages bt sends are blocks, bitfields and small dictionaries, all < 4 GiB",
        );
        out.reserve(total);
        out.extend_from_slice(&len.to_be_bytes());
        let Some(message_id) = self.id() else {
            return;
        };
        out.push(message_id);
        let (fixed, variable) = self.parts();
        match fixed {
            FixedFields::None => {}
            FixedFields::Byte(b) => out.push(b),
            FixedFields::Port(port) => out.extend_from_slice(&port.to_be_bytes()),
            FixedFields::One(a) => out.extend_from_slice(&a.to_be_bytes()),
            FixedFields::Two(a, b) => {
                out.extend_from_slice(&a.to_be_bytes());
                out.extend_from_slice(&b.to_be_bytes());
            }
            FixedFields::Three(a, b, c) => {
                out.extend_from_slice(&a.to_be_bytes());
                out.extend_from_slice(&b.to_be_bytes());
                out.extend_from_slice(&c.to_be_bytes());
            }
        }
        out.extend_from_slice(variable);
    }

    /// The variable-length part (bitfield, block data, extended or unknown payload); empty for
    /// other messages.
    pub(crate) fn variable_part(&self) -> &[u8] {
        self.parts().1
    }

    /// The same message with its variable-length part left empty, so it borrows nothing.
    pub(crate) fn detached(&self) -> Message<'static> {
        match *self {
            Message::KeepAlive => Message::KeepAlive,
            Message::Choke => Message::Choke,
            Message::Unchoke => Message::Unchoke,
            Message::Interested => Message::Interested,
            Message::NotInterested => Message::NotInterested,
            Message::Have { piece } => Message::Have { piece },
            Message::Bitfield(_) => Message::Bitfield(&[]),
            Message::Request { piece, offset, len } => Message::Request { piece, offset, len },
            Message::Piece { piece, offset, .. } => Message::Piece {
                piece,
                offset,
                data: &[],
            },
            Message::Cancel { piece, offset, len } => Message::Cancel { piece, offset, len },
            Message::Port(port) => Message::Port(port),
            Message::HaveAll => Message::HaveAll,
            Message::HaveNone => Message::HaveNone,
            Message::SuggestPiece(piece) => Message::SuggestPiece(piece),
            Message::RejectRequest { piece, offset, len } => {
                Message::RejectRequest { piece, offset, len }
            }
            Message::AllowedFast(piece) => Message::AllowedFast(piece),
            Message::Extended { id, .. } => Message::Extended { id, payload: &[] },
            Message::Unknown { id, .. } => Message::Unknown { id, payload: &[] },
        }
    }
}

impl<'a> Message<'a> {
    /// This message with its variable-length part (if it has one) replaced by `part`.
    pub(crate) fn with_variable_part(self, part: &'a [u8]) -> Message<'a> {
        match self {
            Message::Bitfield(_) => Message::Bitfield(part),
            Message::Piece { piece, offset, .. } => Message::Piece {
                piece,
                offset,
                data: part,
            },
            Message::Extended { id, .. } => Message::Extended { id, payload: part },
            Message::Unknown { id, .. } => Message::Unknown { id, payload: part },
            fixed => fixed,
        }
    }

    /// Decodes the frame at the start of `buf`, checking its length prefix against `limits` first.
    ///
    /// Returns the message and the bytes it took (length prefix included), `Ok(None)` if `buf`
    /// does not yet hold the whole frame, or the error. A length prefix over the bound for its id
    /// is refused as soon as the 5-byte header is present.
    pub fn decode(
        buf: &'a [u8],
        limits: &WireLimits,
    ) -> Result<Option<(Message<'a>, usize)>, WireError> {
        let Some(frame_len) = frame_len(buf, limits)? else {
            return Ok(None);
        };
        let Some(body) = buf.get(LENGTH_PREFIX_LEN..frame_len) else {
            return Ok(None);
        };
        Ok(Some((Message::parse_body(body)?, frame_len)))
    }

    /// Parses a frame's body: the bytes after the length prefix (empty for a keep-alive).
    ///
    /// Checks the structure only (exact sizes of fixed-size messages, the fixed fields of `piece`
    /// and extended messages); the bounds of [`WireLimits`] are the framing layer's.
    pub fn parse_body(body: &'a [u8]) -> Result<Message<'a>, WireError> {
        let Some((&message_id, payload)) = body.split_first() else {
            return Ok(Message::KeepAlive);
        };
        let received = prefix_len(payload);
        let incorrect = |expected: u32| WireError::IncorrectLength {
            id: message_id,
            expected,
            received,
        };
        let too_short = |min: u32| WireError::TooShort {
            id: message_id,
            min,
            received,
        };
        let empty = |m: Message<'a>| {
            if payload.is_empty() {
                Ok(m)
            } else {
                Err(incorrect(1))
            }
        };
        let one = || {
            <[u8; 4]>::try_from(payload)
                .map(u32::from_be_bytes)
                .map_err(|_| incorrect(5))
        };
        let three = || {
            <[u8; 12]>::try_from(payload)
                .map(three_u32)
                .map_err(|_| incorrect(13))
        };
        match message_id {
            id::CHOKE => empty(Message::Choke),
            id::UNCHOKE => empty(Message::Unchoke),
            id::INTERESTED => empty(Message::Interested),
            id::NOT_INTERESTED => empty(Message::NotInterested),
            id::HAVE_ALL => empty(Message::HaveAll),
            id::HAVE_NONE => empty(Message::HaveNone),
            id::HAVE => one().map(|piece| Message::Have { piece }),
            id::SUGGEST_PIECE => one().map(Message::SuggestPiece),
            id::ALLOWED_FAST => one().map(Message::AllowedFast),
            id::REQUEST => {
                three().map(|(piece, offset, len)| Message::Request { piece, offset, len })
            }
            id::CANCEL => {
                three().map(|(piece, offset, len)| Message::Cancel { piece, offset, len })
            }
            id::REJECT_REQUEST => {
                three().map(|(piece, offset, len)| Message::RejectRequest { piece, offset, len })
            }
            id::PORT => <[u8; 2]>::try_from(payload)
                .map(|p| Message::Port(u16::from_be_bytes(p)))
                .map_err(|_| incorrect(3)),
            id::BITFIELD => Ok(Message::Bitfield(payload)),
            id::PIECE => {
                let (&[p0, p1, p2, p3, o0, o1, o2, o3], data) = payload
                    .split_first_chunk::<8>()
                    .ok_or_else(|| too_short(9))?;
                Ok(Message::Piece {
                    piece: u32::from_be_bytes([p0, p1, p2, p3]),
                    offset: u32::from_be_bytes([o0, o1, o2, o3]),
                    data,
                })
            }
            id::EXTENDED => {
                let (&id, payload) = payload.split_first().ok_or_else(|| too_short(2))?;
                Ok(Message::Extended { id, payload })
            }
            _ => Ok(Message::Unknown {
                id: message_id,
                payload,
            }),
        }
    }
}

/// The total length (prefix included) of the frame at the start of `buf`, once its header is
/// present and its length prefix is within `limits`; `Ok(None)` while the header is incomplete.
pub(crate) fn frame_len(buf: &[u8], limits: &WireLimits) -> Result<Option<usize>, WireError> {
    let Some((prefix, rest)) = buf.split_first_chunk::<LENGTH_PREFIX_LEN>() else {
        return Ok(None);
    };
    let len = u32::from_be_bytes(*prefix);
    if len == 0 {
        return Ok(Some(LENGTH_PREFIX_LEN));
    }
    let Some(&message_id) = rest.first() else {
        return Ok(None);
    };
    limits.check(message_id, len)?;
    // `len` is within a bound that `WireLimits::max_frame_len` turned into a `usize` already.
    Ok(Some(
        usize::try_from(len)
            .unwrap_or(usize::MAX)
            .saturating_add(LENGTH_PREFIX_LEN),
    ))
}

/// The length prefix of a message with this payload after its id byte (saturating).
fn prefix_len(payload: &[u8]) -> u32 {
    u32::try_from(payload.len()).map_or(u32::MAX, |l| l.saturating_add(1))
}

fn three_u32([a0, a1, a2, a3, b0, b1, b2, b3, c0, c1, c2, c3]: [u8; 12]) -> (u32, u32, u32) {
    (
        u32::from_be_bytes([a0, a1, a2, a3]),
        u32::from_be_bytes([b0, b1, b2, b3]),
        u32::from_be_bytes([c0, c1, c2, c3]),
    )
}

/// The fixed-size fields after a message's id byte.
#[derive(Clone, Copy)]
enum FixedFields {
    None,
    Byte(u8),
    Port(u16),
    One(u32),
    Two(u32, u32),
    Three(u32, u32, u32),
}

impl FixedFields {
    fn len(self) -> usize {
        match self {
            FixedFields::None => 0,
            FixedFields::Byte(_) => 1,
            FixedFields::Port(_) => 2,
            FixedFields::One(_) => 4,
            FixedFields::Two(..) => 8,
            FixedFields::Three(..) => 12,
        }
    }
}

/// Payload bytes in `Debug` output: hex when short, the length otherwise.
struct Payload<'a>(&'a [u8]);

impl fmt::Debug for Payload<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.len() <= 32 {
            f.write_str("0x")?;
            for b in self.0 {
                write!(f, "{b:02x}")?;
            }
            Ok(())
        } else {
            write!(f, "<{} bytes>", self.0.len())
        }
    }
}

impl fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Message::KeepAlive => f.write_str("KeepAlive"),
            Message::Choke => f.write_str("Choke"),
            Message::Unchoke => f.write_str("Unchoke"),
            Message::Interested => f.write_str("Interested"),
            Message::NotInterested => f.write_str("NotInterested"),
            Message::Have { piece } => f.debug_struct("Have").field("piece", &piece).finish(),
            Message::Bitfield(bits) => f.debug_tuple("Bitfield").field(&Payload(bits)).finish(),
            Message::Request { piece, offset, len } => f
                .debug_struct("Request")
                .field("piece", &piece)
                .field("offset", &offset)
                .field("len", &len)
                .finish(),
            Message::Piece {
                piece,
                offset,
                data,
            } => f
                .debug_struct("Piece")
                .field("piece", &piece)
                .field("offset", &offset)
                .field("data", &Payload(data))
                .finish(),
            Message::Cancel { piece, offset, len } => f
                .debug_struct("Cancel")
                .field("piece", &piece)
                .field("offset", &offset)
                .field("len", &len)
                .finish(),
            Message::Port(port) => f.debug_tuple("Port").field(&port).finish(),
            Message::HaveAll => f.write_str("HaveAll"),
            Message::HaveNone => f.write_str("HaveNone"),
            Message::SuggestPiece(piece) => f.debug_tuple("SuggestPiece").field(&piece).finish(),
            Message::RejectRequest { piece, offset, len } => f
                .debug_struct("RejectRequest")
                .field("piece", &piece)
                .field("offset", &offset)
                .field("len", &len)
                .finish(),
            Message::AllowedFast(piece) => f.debug_tuple("AllowedFast").field(&piece).finish(),
            Message::Extended { id, payload } => f
                .debug_struct("Extended")
                .field("id", &id)
                .field("payload", &Payload(payload))
                .finish(),
            Message::Unknown { id, payload } => f
                .debug_struct("Unknown")
                .field("id", &id)
                .field("payload", &Payload(payload))
                .finish(),
        }
    }
}
