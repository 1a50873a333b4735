//! [`WireLimits`]: how long each kind of message may be, so a length prefix is judged from the
//! 5-byte frame header, before its body is buffered.
//!
//! Lengths here are in length-prefix units: the id byte plus the payload, without the 4-byte prefix
//! itself. Invariants: every bound is computed with saturating arithmetic (no overflow on any
//! limits); [`WireLimits::max_frame_len`] is at least [`HANDSHAKE_LEN`] and at least 4 plus every
//! per-id bound, so a decoder buffer of that size always holds one whole frame (or the handshake).

use super::error::WireError;
use super::handshake::HANDSHAKE_LEN;
use super::message::id;

/// The block length every client uses (BEP 3: "All current implementations use 2^14 (16 kiB)").
pub const DEFAULT_MAX_BLOCK_LEN: u32 = 16 * 1024;

/// Default bound on an extended message's payload: 1 MiB. BEP 10 sets none; the largest messages
/// in use (BEP 9 `ut_metadata` pieces: 16 KiB plus a small dictionary, BEP 11 `ut_pex`) are far
/// smaller.
pub const DEFAULT_MAX_EXTENDED_LEN: u32 = 1024 * 1024;

/// The piece count assumed for the bitfield bound while the torrent's piece count is unknown (a
/// magnet link before its metadata arrives): 2^21 pieces, libtorrent's default `max_pieces`, so a
/// bitfield of at most 256 KiB.
pub const UNKNOWN_PIECE_COUNT_BOUND: u32 = 1 << 21;

/// Bounds on incoming messages. Together they bound the decoder's buffer
/// ([`WireLimits::max_frame_len`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WireLimits {
    /// Longest block a `piece` message may carry (BEP 3: 16 KiB in practice). Unknown message ids
    /// get the same bound as a `piece` message.
    pub max_block_len: u32,
    /// The torrent's piece count, which bounds the `bitfield` message; `None` while unknown, then
    /// [`UNKNOWN_PIECE_COUNT_BOUND`] is assumed.
    pub piece_count: Option<u32>,
    /// Longest payload an extended message (BEP 10, id 20) may carry after its extended id byte.
    pub max_extended_len: u32,
}

impl Default for WireLimits {
    /// 16 KiB blocks, unknown piece count, 1 MiB extended payloads.
    fn default() -> Self {
        WireLimits {
            max_block_len: DEFAULT_MAX_BLOCK_LEN,
            piece_count: None,
            max_extended_len: DEFAULT_MAX_EXTENDED_LEN,
        }
    }
}

impl WireLimits {
    /// The default limits for a torrent of `piece_count` pieces.
    pub fn for_pieces(piece_count: u32) -> Self {
        WireLimits {
            piece_count: Some(piece_count),
            ..WireLimits::default()
        }
    }

    /// Bytes in the longest acceptable bitfield: one bit per piece, rounded up.
    pub fn max_bitfield_len(&self) -> u32 {
        self.piece_count
            .unwrap_or(UNKNOWN_PIECE_COUNT_BOUND)
            .div_ceil(8)
    }

    /// The shortest and longest length prefix a message with `id` may have (equal for fixed-size
    /// messages). Unknown ids may be 1 byte up to the size of a `piece` message.
    pub fn length_range(&self, message_id: u8) -> (u32, u32) {
        let piece_max = 9u32.saturating_add(self.max_block_len);
        match message_id {
            id::CHOKE | id::UNCHOKE | id::INTERESTED | id::NOT_INTERESTED => (1, 1),
            id::HAVE_ALL | id::HAVE_NONE => (1, 1),
            id::HAVE | id::SUGGEST_PIECE | id::ALLOWED_FAST => (5, 5),
            id::REQUEST | id::CANCEL | id::REJECT_REQUEST => (13, 13),
            id::PORT => (3, 3),
            id::BITFIELD => (1, 1u32.saturating_add(self.max_bitfield_len())),
            id::PIECE => (9, piece_max),
            id::EXTENDED => (2, 2u32.saturating_add(self.max_extended_len)),
            _ => (1, piece_max),
        }
    }

    /// Checks a frame's length prefix `len` (non-zero) against the bounds for `message_id`.
    pub(crate) fn check(&self, message_id: u8, len: u32) -> Result<(), WireError> {
        let (min, max) = self.length_range(message_id);
        if min == max && len != min {
            Err(WireError::IncorrectLength {
                id: message_id,
                expected: min,
                received: len,
            })
        } else if len < min {
            Err(WireError::TooShort {
                id: message_id,
                min,
                received: len,
            })
        } else if len > max {
            Err(WireError::FrameTooLong {
                id: message_id,
                len,
                max,
            })
        } else {
            Ok(())
        }
    }

    /// The most bytes one frame can take, length prefix included: 4 plus the largest per-id bound,
    /// and never less than [`HANDSHAKE_LEN`]. This is the frame decoder's buffer bound.
    pub fn max_frame_len(&self) -> usize {
        let largest = [id::BITFIELD, id::PIECE, id::EXTENDED]
            .into_iter()
            .map(|i| self.length_range(i).1)
            .max()
            .unwrap_or(0);
        let frame = usize::try_from(largest)
            .unwrap_or(usize::MAX)
            .saturating_add(4);
        frame.max(HANDSHAKE_LEN)
    }
}
