//! The 68-byte BitTorrent handshake (BEP 3) and its reserved bits (BEP 5, 6, 10).
//!
//! Layout: `19`, `"BitTorrent protocol"`, 8 reserved bytes, the 20-byte info hash, the 20-byte peer
//! id. Invariants: [`Handshake::parse`] reads only the first [`HANDSHAKE_LEN`] bytes of its input and
//! never panics; [`Handshake::encode`] followed by [`Handshake::parse`] gives back the same value,
//! reserved bits we do not know included (they are kept, not cleared).

use std::fmt;

use crate::metainfo::InfoHash;

/// The protocol string every BEP 3 handshake starts with, after its length byte.
pub const PROTOCOL: &[u8; 19] = b"BitTorrent protocol";

/// Bytes in a handshake: 1 + 19 + 8 + 20 + 20.
pub const HANDSHAKE_LEN: usize = 68;

/// Why bytes are not (yet) a handshake.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// BEP 3: the handshake is 68 bytes; fewer have arrived. Not a protocol violation: wait for
    /// `needed` more bytes.
    #[error("handshake incomplete: {needed} more bytes needed")]
    Incomplete {
        /// How many more bytes are needed.
        needed: usize,
    },
    /// BEP 3: "The handshake starts with character nineteen (decimal) followed by the string
    /// 'BitTorrent protocol'." The first byte was something else (often an encrypted (MSE) or
    /// non-BitTorrent connection).
    #[error("handshake protocol string length is {received}, not 19")]
    ProtocolLength {
        /// The first byte received.
        received: u8,
    },
    /// BEP 3: the 19 bytes after the length byte must be `BitTorrent protocol`.
    #[error("handshake protocol string is {:?}, not \"BitTorrent protocol\"", String::from_utf8_lossy(.received))]
    ProtocolName {
        /// The 19 bytes received.
        received: [u8; 19],
    },
}

/// The 8 reserved handshake bytes: each bit announces an extension the sender supports.
///
/// Bits bt knows have getters and setters; every other bit is kept as received.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Reserved(pub [u8; 8]);

impl Reserved {
    /// BEP 10 extension protocol: byte 5, bit `0x10`.
    const EXTENSION_PROTOCOL: (usize, u8) = (5, 0x10);
    /// BEP 6 Fast extension: byte 7, bit `0x04`.
    const FAST: (usize, u8) = (7, 0x04);
    /// BEP 5 DHT: byte 7, bit `0x01`.
    const DHT: (usize, u8) = (7, 0x01);

    /// No extension announced.
    pub const NONE: Reserved = Reserved([0; 8]);

    fn bit(&self, (byte, mask): (usize, u8)) -> bool {
        self.0[byte] & mask != 0
    }

    fn set_bit(&mut self, (byte, mask): (usize, u8), on: bool) {
        if on {
            self.0[byte] |= mask;
        } else {
            self.0[byte] &= !mask;
        }
    }

    /// Whether the sender supports the BEP 6 Fast extension (byte 7, bit `0x04`).
    pub fn fast(&self) -> bool {
        self.bit(Self::FAST)
    }

    /// Announces (or withdraws) the BEP 6 Fast extension.
    pub fn set_fast(&mut self, on: bool) {
        self.set_bit(Self::FAST, on);
    }

    /// Whether the sender supports the BEP 10 extension protocol (byte 5, bit `0x10`).
    pub fn extension_protocol(&self) -> bool {
        self.bit(Self::EXTENSION_PROTOCOL)
    }

    /// Announces (or withdraws) the BEP 10 extension protocol.
    pub fn set_extension_protocol(&mut self, on: bool) {
        self.set_bit(Self::EXTENSION_PROTOCOL, on);
    }

    /// Whether the sender runs a BEP 5 DHT node (byte 7, bit `0x01`); it may then send `port`.
    pub fn dht(&self) -> bool {
        self.bit(Self::DHT)
    }

    /// Announces (or withdraws) BEP 5 DHT support.
    pub fn set_dht(&mut self, on: bool) {
        self.set_bit(Self::DHT, on);
    }
}

impl fmt::Debug for Reserved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Reserved(")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        for (on, name) in [
            (self.fast(), "fast"),
            (self.extension_protocol(), "extended"),
            (self.dht(), "dht"),
        ] {
            if on {
                write!(f, " {name}")?;
            }
        }
        f.write_str(")")
    }
}

/// A peer's 20-byte id (BEP 3). Most clients start it with an Azureus-style tag such as
/// `-BT0001-`; its `Debug` form shows printable ASCII as is and other bytes as `\xNN`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerId(pub [u8; 20]);

impl PeerId {
    /// The 20 raw bytes.
    pub fn as_bytes(&self) -> &[u8; 20] {
        &self.0
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PeerId(\"")?;
        for &b in &self.0 {
            if b.is_ascii_graphic() || b == b' ' {
                if b == b'"' || b == b'\\' {
                    f.write_str("\\")?;
                }
                write!(f, "{}", char::from(b))?;
            } else {
                write!(f, "\\x{b:02x}")?;
            }
        }
        f.write_str("\")")
    }
}

/// The first thing each side of a peer connection sends (BEP 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handshake {
    /// Extensions the sender supports.
    pub reserved: Reserved,
    /// The torrent the sender wants to talk about.
    pub info_hash: InfoHash,
    /// The sender's id.
    pub peer_id: PeerId,
}

impl Handshake {
    /// The 68 bytes to send.
    pub fn encode(&self) -> [u8; HANDSHAKE_LEN] {
        let mut out = [0u8; HANDSHAKE_LEN];
        let (len, rest) = out.split_at_mut(1);
        len[0] = 19;
        let (protocol, rest) = rest.split_at_mut(19);
        protocol.copy_from_slice(PROTOCOL);
        let (reserved, rest) = rest.split_at_mut(8);
        reserved.copy_from_slice(&self.reserved.0);
        let (info_hash, peer_id) = rest.split_at_mut(20);
        info_hash.copy_from_slice(&self.info_hash.0);
        peer_id.copy_from_slice(&self.peer_id.0);
        out
    }

    /// Parses the handshake at the start of `bytes`; bytes past [`HANDSHAKE_LEN`] are not looked
    /// at (they are the first messages, for the frame decoder).
    ///
    /// The protocol string is checked as soon as it is present, so a connection that is not
    /// BitTorrent fails before 68 bytes arrive.
    pub fn parse(bytes: &[u8]) -> Result<Handshake, HandshakeError> {
        if let Some(&first) = bytes.first()
            && usize::from(first) != PROTOCOL.len()
        {
            return Err(HandshakeError::ProtocolLength { received: first });
        }
        if let Some(name) = bytes.get(1..20)
            && name != PROTOCOL
        {
            let mut received = [0u8; 19];
            received.copy_from_slice(name);
            return Err(HandshakeError::ProtocolName { received });
        }
        let Some((head, _)) = bytes.split_first_chunk::<HANDSHAKE_LEN>() else {
            return Err(HandshakeError::Incomplete {
                needed: HANDSHAKE_LEN - bytes.len(),
            });
        };
        let (_, rest) = head.split_at(20);
        let (reserved, rest) = rest.split_at(8);
        let (info_hash, peer_id) = rest.split_at(20);
        let mut handshake = Handshake {
            reserved: Reserved::NONE,
            info_hash: InfoHash([0; 20]),
            peer_id: PeerId([0; 20]),
        };
        handshake.reserved.0.copy_from_slice(reserved);
        handshake.info_hash.0.copy_from_slice(info_hash);
        handshake.peer_id.0.copy_from_slice(peer_id);
        Ok(handshake)
    }
}
