//! The peer wire protocol: the handshake (BEP 3, reserved bits of BEP 5, 6 and 10), messages
//! (BEP 3, BEP 5 `port`, BEP 6 Fast extension, BEP 10 extended), the incremental frame decoder and
//! the BEP 10 extension handshake.
//!
//! This layer frames and checks sizes; it never decides whether a message is welcome (a bitfield
//! after other messages, Fast messages without the Fast bit, a request while choked): that is the
//! peer connection's job. Invariants: nothing here panics on any input; every buffer input can grow
//! is bounded by [`WireLimits`]; block data is never copied after it lands in the receive buffer
//! ([`Frame::payload`] is a `Bytes` view of it).

mod decoder;
mod error;
mod extended;
mod handshake;
mod limits;
mod message;
mod ut_metadata;
mod ut_pex;

pub use decoder::{Frame, FrameDecoder};
pub use error::WireError;
pub use extended::{
    EXTENDED_DECODE_LIMITS, ExtendedError, ExtendedHandshake, MAX_EXTENSION_NAME_LEN,
    MAX_EXTENSIONS,
};
pub use handshake::{HANDSHAKE_LEN, Handshake, HandshakeError, PROTOCOL, PeerId, Reserved};
pub use limits::{
    DEFAULT_MAX_BLOCK_LEN, DEFAULT_MAX_EXTENDED_LEN, UNKNOWN_PIECE_COUNT_BOUND, WireLimits,
};
pub use message::{LENGTH_PREFIX_LEN, Message, id};
pub use ut_metadata::{
    FetchProgress, METADATA_DECODE_LIMITS, METADATA_PIECE_LEN, MetadataError, MetadataFetch,
    MetadataMessage, metadata_piece, metadata_piece_count,
};
pub use ut_pex::{MAX_PEX_PEERS, PEX_DECODE_LIMITS, PexError, PexFlags, PexMessage};

#[cfg(test)]
mod tests;
