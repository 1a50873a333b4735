//! [`WireError`]: why a peer's message stream cannot be framed. Each is a protocol violation (or a
//! peer far outside what bt accepts); the caller closes the connection with it as the reason.
//!
//! All lengths are in length-prefix units: the id byte plus the payload, without the 4-byte prefix.

/// A frame that cannot be accepted. After one, the stream is out of step: close the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// A length prefix longer than the bound for its message id ([`super::WireLimits`]), found from
    /// the 5-byte header before the body is buffered. BEP 3 for `piece`: blocks are 2^14 bytes and
    /// "all current implementations ... close connections which request an amount greater than
    /// that"; for `bitfield`: one bit per piece, and "clients should drop the connection if they
    /// receive bitfields that are not of the correct size". BEP 10 sets no bound on extended
    /// messages; bt bounds them (put a limit on everything).
    #[error("message id {id}: length {len} exceeds the bound {max}")]
    FrameTooLong {
        /// The message id.
        id: u8,
        /// The length prefix received.
        len: u32,
        /// The largest length accepted for this id.
        max: u32,
    },
    /// A fixed-size message with another length. Sizes: BEP 3 `choke`, `unchoke`, `interested`,
    /// `not interested` 1; `have` 5; `request`, `cancel` 13. BEP 5 `port` 3. BEP 6 `have all`,
    /// `have none` 1; `suggest piece`, `allowed fast` 5; `reject request` 13.
    #[error("message id {id}: length {received}, expected {expected}")]
    IncorrectLength {
        /// The message id.
        id: u8,
        /// The only length this message may have.
        expected: u32,
        /// The length prefix received.
        received: u32,
    },
    /// A variable-size message too short for its fixed fields: BEP 3 `piece` carries index and
    /// begin (length at least 9); BEP 10 extended messages carry an extended message id (at least 2).
    #[error("message id {id}: length {received} is below the minimum {min}")]
    TooShort {
        /// The message id.
        id: u8,
        /// The shortest length this message may have.
        min: u32,
        /// The length prefix received.
        received: u32,
    },
}
