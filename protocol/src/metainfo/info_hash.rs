//! [`InfoHash`]: the 20-byte SHA-1 of a torrent's `info` dictionary (BEP 3), the name of a swarm.

use std::fmt;

use sha1::{Digest, Sha1};

/// The SHA-1 of the exact bytes of a torrent's bencoded `info` value (BEP 3, v1 torrents).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InfoHash(pub [u8; 20]);

impl InfoHash {
    /// Hashes the raw bytes of an `info` dictionary as they stand in the file.
    pub fn of_info_bytes(info: &[u8]) -> Self {
        InfoHash(Sha1::digest(info).into())
    }

    /// The 40-character lowercase hex form used by trackers' web pages, magnets and `bt info`.
    pub fn to_hex(&self) -> String {
        data_encoding::HEXLOWER.encode(&self.0)
    }

    /// The 20 raw bytes.
    pub fn as_bytes(&self) -> &[u8; 20] {
        &self.0
    }
}

impl fmt::Display for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InfoHash({})", self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lowercase_and_complete() {
        let h = InfoHash([0xab; 20]);
        assert_eq!(h.to_hex(), "ab".repeat(20));
        assert_eq!(format!("{h}").len(), 40);
    }

    #[test]
    fn hashes_the_given_bytes() {
        // SHA-1("abc") from FIPS 180-1.
        assert_eq!(
            InfoHash::of_info_bytes(b"abc").to_hex(),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
    }
}
