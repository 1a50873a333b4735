//! The mainline DHT (BEP 5, with BEP 32 for IPv6), sans-IO.
//!
//! So far only the message codec: [`krpc`] decodes and encodes the KRPC datagrams nodes exchange
//! (queries, responses, errors). The routing table and the node machine come later.

pub mod krpc;

#[cfg(test)]
mod krpc_tests;

pub use krpc::{
    Body, BoundedBytes, CompactNode, KRPC_DECODE_LIMITS, KrpcError, MAX_DATAGRAM_LEN,
    MAX_METHOD_LEN, MAX_NODES, MAX_TOKEN_LEN, MAX_TRANSACTION_LEN, MAX_VALUES, MAX_VERSION_LEN,
    Message, Method, NodeId, Query, Response, Token, TransactionId, Version, Want,
};
