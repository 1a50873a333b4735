//! [`FrameDecoder`]: turns a byte stream split anywhere into [`Frame`]s, without copying payloads.
//!
//! Design: received bytes are appended to one `BytesMut`; each complete frame is cut off its front
//! with `split_to(..).freeze()`, so a frame is a `Bytes` view of the receive buffer and a block's
//! data reaches the disk write as a slice of it (DESIGN.md: no per-block copy). A [`Frame`] owns
//! its bytes, so the caller may keep it (or just its [`Frame::payload`]) after pulling the next one;
//! [`Frame::message`] is the borrowed [`Message`] view of it.
//!
//! Invariants:
//! - the buffer never holds more than [`WireLimits::max_frame_len`] bytes: [`FrameDecoder::extend`]
//!   takes only what fits. Since every accepted frame fits in that bound, a full buffer always
//!   starts with a whole frame (or an error), so taking frames always makes room again;
//! - a length prefix over the bound for its id is refused from the 5-byte header, before the body
//!   is buffered; after an error nothing is consumed and the same error is returned again;
//! - no input makes it panic.
//!
//! Memory: a frame the caller keeps pins the buffer allocation it was cut from; the decoder's own
//! share never exceeds the bound above.

use bytes::{Buf, Bytes, BytesMut};

use super::error::WireError;
use super::handshake::{HANDSHAKE_LEN, Handshake, HandshakeError};
use super::limits::WireLimits;
use super::message::{LENGTH_PREFIX_LEN, Message, frame_len};

/// An incremental decoder for one connection's incoming byte stream: first (optionally) the
/// handshake, then length-prefixed messages.
///
/// The driver loop: offer bytes with [`extend`](Self::extend), which takes what fits; pull frames
/// with [`next_frame`](Self::next_frame) until `Ok(None)`; repeat with the rest of the input.
///
/// ```
/// use bt_protocol::wire::{FrameDecoder, Message, WireLimits};
///
/// let mut stream = Vec::new();
/// Message::Unchoke.encode_into(&mut stream);
/// Message::Piece { piece: 1, offset: 0, data: b"block" }.encode_into(&mut stream);
///
/// let mut decoder = FrameDecoder::new(WireLimits::for_pieces(8));
/// let mut received = Vec::new();
/// // Bytes arrive in any pieces, here 3 at a time.
/// for mut chunk in stream.chunks(3) {
///     while !chunk.is_empty() {
///         let taken = decoder.extend(chunk);
///         chunk = &chunk[taken..];
///         while let Some(frame) = decoder.next_frame()? {
///             if let Message::Piece { .. } = frame.message() {
///                 // The block as `Bytes`, sharing the receive buffer: hand it to the disk write.
///                 assert_eq!(frame.payload().as_ref(), b"block");
///             }
///             received.push(format!("{:?}", frame.message()));
///         }
///     }
/// }
/// assert_eq!(received, ["Unchoke", "Piece { piece: 1, offset: 0, data: 0x626c6f636b }"]);
/// # Ok::<(), bt_protocol::wire::WireError>(())
/// ```
pub struct FrameDecoder {
    buf: BytesMut,
    limits: WireLimits,
}

impl FrameDecoder {
    /// An empty decoder bounded by `limits`.
    pub fn new(limits: WireLimits) -> Self {
        FrameDecoder {
            buf: BytesMut::new(),
            limits,
        }
    }

    /// The bounds in force.
    pub fn limits(&self) -> &WireLimits {
        &self.limits
    }

    /// Changes the bounds, say once a magnet link's metadata gives the piece count (BEP 9). Bytes
    /// already buffered stay; the next frame is judged by the new bounds.
    pub fn set_limits(&mut self, limits: WireLimits) {
        self.limits = limits;
    }

    /// Bytes received and not yet taken as a frame or handshake.
    pub fn buffered_len(&self) -> usize {
        self.buf.len()
    }

    /// The most bytes the decoder buffers: [`WireLimits::max_frame_len`].
    pub fn max_buffered_len(&self) -> usize {
        self.limits.max_frame_len()
    }

    /// Appends as much of `bytes` as fits under [`max_buffered_len`](Self::max_buffered_len) and
    /// returns how many it took. When it takes less than all of `bytes`, the buffer is full and
    /// [`next_frame`](Self::next_frame) is sure to return a frame or an error (unless the bounds
    /// were lowered since the bytes came).
    #[must_use = "bytes not taken must be offered again after pulling frames"]
    pub fn extend(&mut self, bytes: &[u8]) -> usize {
        let room = self.max_buffered_len().saturating_sub(self.buf.len());
        let taken = bytes.get(..room).unwrap_or(bytes);
        self.buf.extend_from_slice(taken);
        taken.len()
    }

    /// Takes the 68-byte handshake from the front of the buffer: `Ok(None)` until all of it has
    /// arrived; an error as soon as the protocol string is wrong (nothing is consumed then).
    /// Call it before the first [`next_frame`](Self::next_frame) on a new connection.
    pub fn take_handshake(&mut self) -> Result<Option<Handshake>, HandshakeError> {
        match Handshake::parse(&self.buf) {
            Ok(handshake) => {
                // `parse` succeeded, so the buffer holds at least HANDSHAKE_LEN bytes.
                self.buf.advance(HANDSHAKE_LEN);
                Ok(Some(handshake))
            }
            Err(HandshakeError::Incomplete { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Takes the next whole frame: `Ok(None)` while it has not fully arrived, an error when its
    /// header breaks the bounds or its body is malformed. A keep-alive is a frame too.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, WireError> {
        let Some(total) = frame_len(&self.buf, &self.limits)? else {
            return Ok(None);
        };
        if self.buf.len() < total {
            return Ok(None);
        }
        // Cut the frame off the front (total <= buffered, checked above), then drop its prefix
        // (total >= LENGTH_PREFIX_LEN by construction in `frame_len`).
        let mut body = self.buf.split_to(total);
        body.advance(LENGTH_PREFIX_LEN);
        Frame::new(body.freeze()).map(Some)
    }
}

/// One decoded message that owns its bytes: a `Bytes` view of the receive buffer.
///
/// [`Frame::message`] borrows the message from it; [`Frame::payload`] gives the variable-length
/// part (a block's data, a bitfield, an extended payload) as `Bytes`, without copying.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    /// The message with its variable-length part left empty; that part is `payload`.
    head: Message<'static>,
    payload: Bytes,
}

impl Frame {
    /// Parses a frame body (the bytes after the length prefix; empty for a keep-alive).
    fn new(body: Bytes) -> Result<Frame, WireError> {
        let message = Message::parse_body(&body)?;
        let head = message.detached();
        // The variable-length part is always the tail of the body.
        let start = body.len().saturating_sub(message.variable_part().len());
        let payload = body.slice(start..);
        Ok(Frame { head, payload })
    }

    /// The message, borrowing its variable-length part from this frame.
    pub fn message(&self) -> Message<'_> {
        self.head.with_variable_part(&self.payload)
    }

    /// The variable-length part as `Bytes` sharing the receive buffer: a `piece` message's block,
    /// a `bitfield`, an extended or unknown message's payload; empty for other messages.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// Gives up the frame for its [`payload`](Self::payload).
    pub fn into_payload(self) -> Bytes {
        self.payload
    }
}

impl std::fmt::Debug for FrameDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameDecoder")
            .field("buffered_len", &self.buf.len())
            .field("limits", &self.limits)
            .finish()
    }
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Frame").field(&self.message()).finish()
    }
}
