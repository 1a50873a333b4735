//! BEP 11 `ut_pex`: the peer-exchange message ([`PexMessage`]), peers added and dropped since the
//! last one, IPv4 and IPv6, with each added peer's flags.
//!
//! Invariants: decoding never panics and is bounded ([`PEX_DECODE_LIMITS`]; at most
//! [`MAX_PEX_PEERS`] entries kept of each list, the rest ignored); peers with port 0 are dropped;
//! encoding is canonical bencode and parses back to the same message.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::bencode::{DecodeError, DecodeLimits, Dict, Value, decode, encode};

/// Most entries kept from each list of one message (BEP 11: a client "should not send more than
/// 50 added and 50 dropped peers" per message; twice that is tolerated, the rest ignored).
pub const MAX_PEX_PEERS: usize = 100;

/// Bounds on decoding a message: a flat dictionary of six byte strings and a few unknown keys.
pub const PEX_DECODE_LIMITS: DecodeLimits = DecodeLimits {
    max_depth: 4,
    max_tokens: 64,
};

/// The flags of an added peer (BEP 11 `added.f`): one byte per peer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PexFlags(pub u8);

impl PexFlags {
    /// 0x01: prefers encrypted connections.
    pub const ENCRYPTION: u8 = 0x01;
    /// 0x02: a seed (or upload only).
    pub const SEED: u8 = 0x02;
    /// 0x04: supports uTP.
    pub const UTP: u8 = 0x04;
    /// 0x08: supports `ut_holepunch`.
    pub const HOLEPUNCH: u8 = 0x08;
    /// 0x10: reachable (the sender connected to it, so it accepts connections).
    pub const REACHABLE: u8 = 0x10;

    /// Whether the peer is a seed.
    pub fn is_seed(self) -> bool {
        self.0 & Self::SEED != 0
    }

    /// Whether the peer accepts incoming connections.
    pub fn is_reachable(self) -> bool {
        self.0 & Self::REACHABLE != 0
    }
}

/// One `ut_pex` message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PexMessage {
    /// Peers the sender connected to since its last message, with their flags.
    pub added: Vec<(SocketAddr, PexFlags)>,
    /// Peers it disconnected from.
    pub dropped: Vec<SocketAddr>,
}

/// Why a `ut_pex` payload is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PexError {
    /// BEP 11: the message is a bencoded dictionary; this is not decodable bencode.
    #[error("ut_pex message is not valid bencode: {0}")]
    Bencode(#[from] DecodeError),
    /// BEP 11: the message is a dictionary; this is another value.
    #[error("ut_pex message is a {0}, not a dictionary")]
    NotADict(&'static str),
    /// BEP 11: compact peers are 6 bytes (IPv4) or 18 bytes (IPv6) each; this list's length is
    /// not a multiple.
    #[error("ut_pex `{key}` of {len} bytes is not a list of {entry}-byte peers")]
    BadPeerList {
        /// The key.
        key: &'static str,
        /// Its length.
        len: usize,
        /// The entry size.
        entry: usize,
    },
}

fn compact(addr: &SocketAddr) -> Vec<u8> {
    let mut v = match addr.ip() {
        IpAddr::V4(ip) => ip.octets().to_vec(),
        IpAddr::V6(ip) => ip.octets().to_vec(),
    };
    v.extend_from_slice(&addr.port().to_be_bytes());
    v
}

/// The peers of a compact list under `key` (entries of `entry` bytes), at most
/// [`MAX_PEX_PEERS`], in order, with their index in the list (for the flags).
fn peers(
    dict: &Dict<'_>,
    key: &'static str,
    entry: usize,
) -> Result<Vec<(usize, SocketAddr)>, PexError> {
    let Some(bytes) = dict.get(key.as_bytes()).and_then(Value::as_bytes) else {
        return Ok(Vec::new());
    };
    if !bytes.len().is_multiple_of(entry) {
        return Err(PexError::BadPeerList {
            key,
            len: bytes.len(),
            entry,
        });
    }
    Ok(bytes
        .chunks_exact(entry)
        .take(MAX_PEX_PEERS)
        .enumerate()
        .filter_map(|(i, c)| {
            let (ip, port) = c.split_at(entry - 2);
            let port = u16::from_be_bytes([port[0], port[1]]);
            let ip = match <[u8; 4]>::try_from(ip) {
                Ok(v4) => IpAddr::V4(Ipv4Addr::from(v4)),
                Err(_) => IpAddr::V6(Ipv6Addr::from(
                    <[u8; 16]>::try_from(ip).expect("18-byte entries hold 16 bytes of address"),
                )),
            };
            (port != 0).then_some((i, SocketAddr::new(ip, port)))
        })
        .collect())
}

impl PexMessage {
    /// Decodes a `ut_pex` payload (after the extended message id byte). Unknown keys, and keys
    /// of the wrong type, are ignored; a missing flag byte reads as no flags.
    pub fn decode(payload: &[u8]) -> Result<PexMessage, PexError> {
        let decoded = decode(payload, PEX_DECODE_LIMITS)?;
        let dict = decoded
            .value
            .as_dict()
            .ok_or(PexError::NotADict(decoded.value.kind()))?;
        let flags = |key: &str| {
            dict.get(key.as_bytes())
                .and_then(Value::as_bytes)
                .unwrap_or_default()
        };
        let mut added = Vec::new();
        for (key, entry) in [("added", 6), ("added6", 18)] {
            let f = flags(&format!("{key}.f"));
            for (i, addr) in peers(dict, key, entry)? {
                added.push((addr, PexFlags(f.get(i).copied().unwrap_or(0))));
            }
        }
        let mut dropped = Vec::new();
        for (key, entry) in [("dropped", 6), ("dropped6", 18)] {
            dropped.extend(peers(dict, key, entry)?.into_iter().map(|(_, a)| a));
        }
        Ok(PexMessage { added, dropped })
    }

    /// The payload: canonical bencode with the six lists (IPv4 and IPv6 apart; empty lists
    /// included, as libtorrent sends them).
    pub fn encode(&self) -> Vec<u8> {
        let mut dict = Dict::new();
        let (mut a4, mut f4, mut a6, mut f6) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (addr, flags) in &self.added {
            if addr.is_ipv4() {
                a4.extend(compact(addr));
                f4.push(flags.0);
            } else {
                a6.extend(compact(addr));
                f6.push(flags.0);
            }
        }
        let (mut d4, mut d6) = (Vec::new(), Vec::new());
        for addr in &self.dropped {
            if addr.is_ipv4() {
                d4.extend(compact(addr));
            } else {
                d6.extend(compact(addr));
            }
        }
        for (key, bytes) in [
            ("added", a4),
            ("added.f", f4),
            ("added6", a6),
            ("added6.f", f6),
            ("dropped", d4),
            ("dropped6", d6),
        ] {
            dict.insert(key.as_bytes().to_vec(), Value::owned_bytes(bytes));
        }
        encode(&Value::Dict(dict)).expect("a flat dictionary of byte strings encodes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v4(a: [u8; 4], port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::from(a)), port)
    }

    #[test]
    fn a_message_with_every_list_round_trips() {
        // Proves IPv4 and IPv6 added peers keep their flags, dropped peers come back, and the
        // encoding is canonical bencode that decodes to the same message.
        let m = PexMessage {
            added: vec![
                (
                    v4([10, 0, 0, 1], 6881),
                    PexFlags(PexFlags::SEED | PexFlags::REACHABLE),
                ),
                (
                    SocketAddr::new("2001:db8::1".parse().unwrap(), 51413),
                    PexFlags(PexFlags::UTP),
                ),
            ],
            dropped: vec![v4([10, 0, 0, 2], 1), "[2001:db8::2]:2".parse().unwrap()],
        };
        let bytes = m.encode();
        assert_eq!(PexMessage::decode(&bytes), Ok(m.clone()));
        let decoded = decode(&bytes, PEX_DECODE_LIMITS).unwrap();
        assert!(
            decoded.warnings.is_empty(),
            "canonical: {:?}",
            decoded.warnings
        );
        assert!(m.added[0].1.is_seed() && m.added[0].1.is_reachable());
    }

    #[test]
    fn lists_are_bounded_and_bad_lists_refused() {
        // Proves at most MAX_PEX_PEERS entries are kept per list, port 0 is dropped, missing
        // flags read as none, and a list of the wrong length is refused naming its key.
        let many: Vec<u8> = (0..300u32)
            .flat_map(|i| {
                let [_, a, b, c] = i.to_be_bytes();
                [10, a, b, c, 0x1a, 0xe1]
            })
            .collect();
        let mut dict = Dict::new();
        dict.insert(&b"added"[..], Value::owned_bytes(many));
        dict.insert(&b"dropped"[..], Value::owned_bytes(vec![1, 2, 3, 4, 0, 0]));
        let m = PexMessage::decode(&encode(&Value::Dict(dict)).unwrap()).unwrap();
        assert_eq!(m.added.len(), MAX_PEX_PEERS);
        assert!(m.added.iter().all(|(_, f)| *f == PexFlags(0)));
        assert!(m.dropped.is_empty(), "port 0 dropped");
        assert_eq!(
            PexMessage::decode(b"d5:added5:12345e"),
            Err(PexError::BadPeerList {
                key: "added",
                len: 5,
                entry: 6
            })
        );
        assert_eq!(
            PexMessage::decode(b"li1ee"),
            Err(PexError::NotADict("list"))
        );
        assert!(matches!(
            PexMessage::decode(b"d"),
            Err(PexError::Bencode(_))
        ));
        assert_eq!(PexMessage::decode(b"de"), Ok(PexMessage::default()));
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = PexMessage::decode(&bytes);
        }

        #[test]
        fn messages_round_trip(
            added in proptest::collection::vec((any::<[u8; 4]>(), 1u16.., any::<u8>()), 0..50),
            dropped in proptest::collection::vec((any::<[u8; 16]>(), 1u16..), 0..50),
        ) {
            // IPv4 added first, then IPv6, as the encoding orders them.
            let m = PexMessage {
                added: added.iter().map(|(a, p, f)| (v4(*a, *p), PexFlags(*f))).collect(),
                dropped: dropped
                    .iter()
                    .map(|(a, p)| SocketAddr::new(IpAddr::V6(Ipv6Addr::from(*a)), *p))
                    .collect(),
            };
            prop_assert_eq!(PexMessage::decode(&m.encode()), Ok(m));
        }
    }
}
