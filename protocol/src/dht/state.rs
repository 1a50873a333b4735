//! Saving and loading a DHT node's identity and routing table between runs.
//!
//! The state is one bencoded dictionary: `id` (our 20-byte node id), `nodes` (compact IPv4 node
//! info, 26 bytes each, BEP 5) and `nodes6` (compact IPv6 node info, 38 bytes each, BEP 32), the
//! same encodings as KRPC answers. [`load_state`] reads at most [`MAX_SAVED_NODES`] nodes and
//! refuses anything it cannot read with a [`DhtStateError`]; it never panics.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use super::krpc::NodeId;
use crate::bencode::{DecodeError, DecodeLimits, Dict, Value, decode, encode};

/// Most nodes [`load_state`] reads (the rest are ignored) and [`save_state`] writes.
pub const MAX_SAVED_NODES: usize = 1_000;

/// Largest state file [`load_state`] reads, in bytes (1,000 IPv6 nodes take 38 KB).
pub const MAX_STATE_LEN: usize = 256 * 1024;

const LIMITS: DecodeLimits = DecodeLimits {
    max_depth: 4,
    max_tokens: 64,
};

/// Why a saved DHT state could not be loaded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DhtStateError {
    /// The file is larger than [`MAX_STATE_LEN`].
    #[error("DHT state of {len} bytes; at most {max} are read")]
    TooLong {
        /// Its length.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// The file is not bencode.
    #[error("DHT state is not valid bencode: {0}")]
    Bencode(#[from] DecodeError),
    /// The file is bencode but not a dictionary.
    #[error("DHT state is not a dictionary")]
    NotADict,
    /// `id` is missing or not a 20-byte string.
    #[error("DHT state has no 20-byte id")]
    BadId,
    /// `nodes` or `nodes6` is not a string of whole compact nodes (26 or 38 bytes each).
    #[error("DHT state's {key} is not a string of {node_len}-byte nodes")]
    BadNodes {
        /// The key.
        key: &'static str,
        /// The size of one node.
        node_len: usize,
    },
}

/// The state file for our id `id` and the nodes `nodes` (at most [`MAX_SAVED_NODES`] of them,
/// IPv4 ones in `nodes`, IPv6 ones in `nodes6`).
pub fn save_state(id: NodeId, nodes: &[(NodeId, SocketAddr)]) -> Vec<u8> {
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for (node, addr) in nodes.iter().take(MAX_SAVED_NODES) {
        let out = if addr.is_ipv4() { &mut v4 } else { &mut v6 };
        out.extend_from_slice(&node.0);
        match addr.ip() {
            IpAddr::V4(ip) => out.extend_from_slice(&ip.octets()),
            IpAddr::V6(ip) => out.extend_from_slice(&ip.octets()),
        }
        out.extend_from_slice(&addr.port().to_be_bytes());
    }
    let mut dict = Dict::new();
    dict.insert(&b"id"[..], Value::bytes(&id.0));
    dict.insert(&b"nodes"[..], Value::owned_bytes(v4));
    dict.insert(&b"nodes6"[..], Value::owned_bytes(v6));
    encode(&Value::Dict(dict)).expect("a flat dictionary is within the encoder's bounds")
}

/// Reads a state file written by [`save_state`]: our id and at most [`MAX_SAVED_NODES`] nodes
/// (IPv4 first). Missing `nodes`/`nodes6` keys read as no nodes.
pub fn load_state(bytes: &[u8]) -> Result<(NodeId, Vec<(NodeId, SocketAddr)>), DhtStateError> {
    if bytes.len() > MAX_STATE_LEN {
        return Err(DhtStateError::TooLong {
            len: bytes.len(),
            max: MAX_STATE_LEN,
        });
    }
    let decoded = decode(bytes, LIMITS)?;
    let Value::Dict(dict) = &decoded.value else {
        return Err(DhtStateError::NotADict);
    };
    let id = dict
        .get(b"id")
        .and_then(Value::as_bytes)
        .and_then(|b| <[u8; 20]>::try_from(b).ok())
        .map(NodeId)
        .ok_or(DhtStateError::BadId)?;
    let mut nodes = Vec::new();
    for (key, node_len) in [("nodes", 26), ("nodes6", 38)] {
        let Some(value) = dict.get(key.as_bytes()) else {
            continue;
        };
        let b = value
            .as_bytes()
            .filter(|b| b.len() % node_len == 0)
            .ok_or(DhtStateError::BadNodes { key, node_len })?;
        for chunk in b.chunks_exact(node_len) {
            if nodes.len() >= MAX_SAVED_NODES {
                break;
            }
            let (id, rest) = chunk.split_at(20);
            let id = NodeId(id.try_into().expect("the chunk starts with 20 id bytes"));
            let (ip, port) = rest.split_at(rest.len() - 2);
            let port = u16::from_be_bytes([port[0], port[1]]);
            let addr = if let Ok(ip) = <[u8; 4]>::try_from(ip) {
                SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ip), port))
            } else {
                let ip: [u8; 16] = ip
                    .try_into()
                    .expect("a 38-byte node holds 16 address bytes");
                SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(ip), port, 0, 0))
            };
            nodes.push((id, addr));
        }
    }
    Ok((id, nodes))
}
