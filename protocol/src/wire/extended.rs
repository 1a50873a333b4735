//! [`ExtendedHandshake`]: the BEP 10 extension handshake dictionary (extended message id 0).
//!
//! BEP 10: "All parts of the dictionary are optional" and unknown names "should be ignored", so
//! parsing is tolerant: unknown keys, optional keys of the wrong type or out of range, and `m`
//! entries that are not a UTF-8 name mapped to an id in 0..=255 are skipped. It refuses only what
//! is not a dictionary at all, or is beyond bt's bounds. Invariants: parsing never panics and is
//! bounded ([`EXTENDED_DECODE_LIMITS`], at most [`MAX_EXTENSIONS`] names of at most
//! [`MAX_EXTENSION_NAME_LEN`] bytes); encoding is canonical bencode and parses back to the same
//! value.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::collections::BTreeMap;

use crate::bencode::{DecodeError, DecodeLimits, Dict, Value, decode, encode};

/// Most entries accepted in the `m` dictionary (clients in the wild send a dozen or fewer).
pub const MAX_EXTENSIONS: usize = 64;

/// Longest extension name accepted in `m`, in bytes (names in use are like `ut_metadata`).
pub const MAX_EXTENSION_NAME_LEN: usize = 64;

/// Bounds on decoding the handshake's bencode: nesting depth 16, 4,096 values. The handshake is a
/// flat dictionary of about a dozen keys and an `m` of at most [`MAX_EXTENSIONS`] entries.
pub const EXTENDED_DECODE_LIMITS: DecodeLimits = DecodeLimits {
    max_depth: 16,
    max_tokens: 4096,
};

/// Why an extension handshake payload is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExtendedError {
    /// BEP 10: "The payload of the handshake message is a bencoded dictionary"; this is not
    /// decodable bencode (or exceeds [`EXTENDED_DECODE_LIMITS`]).
    #[error("extension handshake is not valid bencode: {0}")]
    Bencode(#[from] DecodeError),
    /// BEP 10: the payload must be a dictionary; it is another bencode value.
    #[error("extension handshake is a {kind}, not a dictionary")]
    NotADict {
        /// The kind of value found.
        kind: &'static str,
    },
    /// BEP 10 `m` maps extension names to ids; bt accepts at most [`MAX_EXTENSIONS`] of them.
    #[error("extension handshake lists {count} extensions; at most {max} are accepted")]
    TooManyExtensions {
        /// Entries in `m`.
        count: usize,
        /// The bound.
        max: usize,
    },
    /// BEP 10 `m` keys are extension names; bt accepts names of at most
    /// [`MAX_EXTENSION_NAME_LEN`] bytes.
    #[error("extension name of {len} bytes; at most {max} are accepted")]
    ExtensionNameTooLong {
        /// The name's length in bytes.
        len: usize,
        /// The bound.
        max: usize,
    },
}

/// The BEP 10 extension handshake: which extensions the sender supports, under which ids, and a
/// few facts about the sender. It may be sent again later to change the ids (id 0 disables).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExtendedHandshake {
    /// `m`: extension name -> the extended message id the sender wants to receive it under;
    /// 0 means the extension is not supported or is now disabled.
    pub m: BTreeMap<String, u8>,
    /// `p`: the sender's TCP listen port (1..=65535).
    pub port: Option<u16>,
    /// `v`: the sender's client name and version (lossily decoded as UTF-8).
    pub client: Option<String>,
    /// `yourip`: the receiver's address as the sender sees it (4 or 16 bytes on the wire).
    pub yourip: Option<IpAddr>,
    /// `ipv4`: the sender's IPv4 address, if it has one.
    pub ipv4: Option<Ipv4Addr>,
    /// `ipv6`: the sender's IPv6 address, if it has one.
    pub ipv6: Option<Ipv6Addr>,
    /// `reqq`: how many outstanding requests the sender queues without dropping any.
    pub reqq: Option<u32>,
    /// `metadata_size` (BEP 9): the size of the info dictionary, in bytes.
    pub metadata_size: Option<u64>,
}

impl ExtendedHandshake {
    /// The id the sender assigned to extension `name`, if it supports it (id 0 means it does not).
    pub fn extension_id(&self, name: &str) -> Option<u8> {
        self.m.get(name).copied().filter(|&id| id != 0)
    }

    /// The bencoded dictionary to send as the payload of `Extended { id: 0, .. }`, in canonical
    /// form; `m` is always present (possibly empty), absent options are left out.
    pub fn encode(&self) -> Vec<u8> {
        let mut m = Dict::new();
        for (name, &id) in &self.m {
            m.insert(name.as_bytes().to_vec(), Value::Int(i64::from(id)));
        }
        let mut dict = Dict::new();
        dict.insert(&b"m"[..], Value::Dict(m));
        if let Some(port) = self.port {
            dict.insert(&b"p"[..], Value::Int(i64::from(port)));
        }
        if let Some(client) = &self.client {
            dict.insert(&b"v"[..], Value::string(client.clone()));
        }
        if let Some(ip) = self.yourip {
            let bytes = match ip {
                IpAddr::V4(v4) => v4.octets().to_vec(),
                IpAddr::V6(v6) => v6.octets().to_vec(),
            };
            dict.insert(&b"yourip"[..], Value::owned_bytes(bytes));
        }
        if let Some(ip) = self.ipv4 {
            dict.insert(&b"ipv4"[..], Value::owned_bytes(ip.octets().to_vec()));
        }
        if let Some(ip) = self.ipv6 {
            dict.insert(&b"ipv6"[..], Value::owned_bytes(ip.octets().to_vec()));
        }
        if let Some(reqq) = self.reqq {
            dict.insert(&b"reqq"[..], Value::Int(i64::from(reqq)));
        }
        if let Some(size) = self.metadata_size {
            // Sizes above i64::MAX cannot be bencoded by bt; no info dictionary is that large.
            if let Ok(size) = i64::try_from(size) {
                dict.insert(&b"metadata_size"[..], Value::Int(size));
            }
        }
        encode(&Value::Dict(dict))
            .expect("a depth-2 dictionary is within the encoder's depth bound")
    }

    /// Parses a peer's extension handshake payload (the bytes after the extended id byte 0).
    pub fn parse(payload: &[u8]) -> Result<ExtendedHandshake, ExtendedError> {
        let decoded = decode(payload, EXTENDED_DECODE_LIMITS)?;
        let Value::Dict(dict) = &decoded.value else {
            return Err(ExtendedError::NotADict {
                kind: decoded.value.kind(),
            });
        };
        let int = |key: &[u8]| dict.get(key).and_then(Value::as_int);
        let bytes = |key: &[u8]| dict.get(key).and_then(Value::as_bytes);
        Ok(ExtendedHandshake {
            m: parse_m(dict.get(b"m"))?,
            port: int(b"p")
                .and_then(|p| u16::try_from(p).ok())
                .filter(|&p| p != 0),
            client: bytes(b"v").map(|v| String::from_utf8_lossy(v).into_owned()),
            yourip: bytes(b"yourip").and_then(|b| match b.len() {
                4 => ipv4(b).map(IpAddr::V4),
                16 => ipv6(b).map(IpAddr::V6),
                _ => None,
            }),
            ipv4: bytes(b"ipv4").and_then(ipv4),
            ipv6: bytes(b"ipv6").and_then(ipv6),
            reqq: int(b"reqq").and_then(|r| u32::try_from(r).ok()),
            metadata_size: int(b"metadata_size").and_then(|s| u64::try_from(s).ok()),
        })
    }
}

/// The `m` dictionary: bounded, skipping entries that are not a UTF-8 name with an id in 0..=255.
fn parse_m(m: Option<&Value<'_>>) -> Result<BTreeMap<String, u8>, ExtendedError> {
    let mut out = BTreeMap::new();
    let Some(m) = m.and_then(Value::as_dict) else {
        return Ok(out);
    };
    if m.len() > MAX_EXTENSIONS {
        return Err(ExtendedError::TooManyExtensions {
            count: m.len(),
            max: MAX_EXTENSIONS,
        });
    }
    for (name, id) in m.iter() {
        if name.len() > MAX_EXTENSION_NAME_LEN {
            return Err(ExtendedError::ExtensionNameTooLong {
                len: name.len(),
                max: MAX_EXTENSION_NAME_LEN,
            });
        }
        let (Ok(name), Some(id)) = (
            std::str::from_utf8(name),
            id.as_int().and_then(|i| u8::try_from(i).ok()),
        ) else {
            continue;
        };
        out.insert(name.to_owned(), id);
    }
    Ok(out)
}

fn ipv4(bytes: &[u8]) -> Option<Ipv4Addr> {
    <[u8; 4]>::try_from(bytes).ok().map(Ipv4Addr::from)
}

fn ipv6(bytes: &[u8]) -> Option<Ipv6Addr> {
    <[u8; 16]>::try_from(bytes).ok().map(Ipv6Addr::from)
}
