//! [`Message`]: the KRPC messages of the mainline DHT (BEP 5), with BEP 32's IPv6 extensions.
//!
//! A KRPC message is one UDP datagram holding one bencoded dictionary: `t` (transaction id), `y`
//! (`q` query, `r` response, `e` error), then `q` and `a` (method and arguments), `r` (return
//! values) or `e` (`[code, message]`); `v` (client version), `ip` (BEP 42: the receiver's address
//! as the sender saw it) and `ro` (BEP 43 read-only) are optional. A response names no method:
//! the caller matches it to its query by transaction id, so decoding yields a generic
//! [`Response`] with every field any response may carry.
//!
//! Parsing is tolerant the way deployed nodes are: unknown keys are ignored, optional keys of the
//! wrong type are skipped, compact peers that are neither 6 nor 18 bytes are dropped, an unknown
//! method decodes to [`Query::Unknown`] (BEP 5: answer it with error 204). What a message cannot
//! do without (`t`, `y`, `q`/`a`, `r`, `e`, the sender's `id`, each method's required arguments)
//! missing or malformed is refused with a precise [`KrpcError`].
//!
//! Invariants: decoding never panics and is bounded (a datagram of at most [`MAX_DATAGRAM_LEN`]
//! bytes, [`KRPC_DECODE_LIMITS`], at most [`MAX_NODES`] nodes per family and [`MAX_VALUES`] peers
//! kept, every byte string in a [`BoundedBytes`]); encoding is canonical bencode, and for every
//! decoded message `decode(encode(m)) == m`.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::fmt;

use crate::bencode::{DecodeError, DecodeLimits, Dict, Value, decode, encode};
use crate::metainfo::InfoHash;

/// Largest datagram decoded, in bytes: a UDP payload cannot be larger (BEP 5 messages fit in
/// one datagram; real ones are under 1.5 KB).
pub const MAX_DATAGRAM_LEN: usize = 64 * 1024;

/// Bounds on decoding a KRPC datagram's bencode: nesting depth 16, 4,096 values. BEP 5 messages
/// nest three deep (message, arguments, `values` list); the slack is for extensions' unknown keys.
pub const KRPC_DECODE_LIMITS: DecodeLimits = DecodeLimits {
    max_depth: 16,
    max_tokens: 4096,
};

/// Longest transaction id accepted, in bytes (BEP 5 suggests 2; clients use 2 to 8).
pub const MAX_TRANSACTION_LEN: usize = 16;

/// Longest `v` (client version) kept, in bytes (BEP 5 suggests 4); a longer one is ignored.
pub const MAX_VERSION_LEN: usize = 16;

/// Longest `token` accepted, in bytes (tokens in the wild are 4 to 20 bytes).
pub const MAX_TOKEN_LEN: usize = 64;

/// Longest unknown query method name accepted, in bytes (known names are at most 17 bytes).
pub const MAX_METHOD_LEN: usize = 32;

/// Most compact nodes kept per address family in one response (BEP 5 responses carry 8); the
/// rest are dropped.
pub const MAX_NODES: usize = 256;

/// Most compact peers kept from one `values` list (libtorrent sends at most about 100); the rest
/// are dropped.
pub const MAX_VALUES: usize = 200;

/// A byte string of at most `N` bytes: the bound is checked once, at construction.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BoundedBytes<const N: usize>(Vec<u8>);

impl<const N: usize> BoundedBytes<N> {
    /// The bytes, if there are at most `N` of them.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Option<Self> {
        let bytes = bytes.into();
        (bytes.len() <= N).then_some(BoundedBytes(bytes))
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl<const N: usize> fmt::Debug for BoundedBytes<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "b\"{}\"", self.0.escape_ascii())
    }
}

/// A KRPC transaction id (`t`): chosen by the querying node, echoed in the response. At most
/// [`MAX_TRANSACTION_LEN`] bytes.
pub type TransactionId = BoundedBytes<MAX_TRANSACTION_LEN>;

/// A client version (`v`): at most [`MAX_VERSION_LEN`] bytes (BEP 5: two client letters and two
/// version bytes).
pub type Version = BoundedBytes<MAX_VERSION_LEN>;

/// A `token` from `get_peers`, handed back in `announce_peer`: at most [`MAX_TOKEN_LEN`] bytes.
pub type Token = BoundedBytes<MAX_TOKEN_LEN>;

/// The name of a query method bt does not know: at most [`MAX_METHOD_LEN`] bytes.
pub type Method = BoundedBytes<MAX_METHOD_LEN>;

/// A 160-bit DHT node id (BEP 5), in the same space as info hashes.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub [u8; 20]);

impl NodeId {
    /// The XOR distance to `other` (BEP 5's metric); distances compare as big-endian integers,
    /// which is `NodeId`'s own ordering.
    pub fn distance(&self, other: &NodeId) -> NodeId {
        NodeId(core::array::from_fn(|i| self.0[i] ^ other.0[i]))
    }

    /// Whether `a` is strictly closer to `self` than `b` is.
    pub fn closer(&self, a: &NodeId, b: &NodeId) -> bool {
        self.distance(a) < self.distance(b)
    }

    /// The number of leading bits `self` shares with `other` (160 when equal): the routing table
    /// bucket `other` belongs to, seen from `self`.
    pub fn common_prefix_len(&self, other: &NodeId) -> u32 {
        let d = self.distance(other);
        let mut bits = 0;
        for byte in d.0 {
            bits += byte.leading_zeros();
            if byte != 0 {
                break;
            }
        }
        bits
    }
}

impl From<InfoHash> for NodeId {
    fn from(hash: InfoHash) -> Self {
        NodeId(hash.0)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NodeId(")?;
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        f.write_str(")")
    }
}

/// A node as compact node info: its id and address, 26 bytes for IPv4 (BEP 5) and 38 for IPv6
/// (BEP 32): id, address, port in network byte order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CompactNode {
    /// The node's id.
    pub id: NodeId,
    /// The node's UDP address.
    pub addr: SocketAddr,
}

/// BEP 32 `want`: which address families of nodes the querier asks for. Both false (the key
/// absent) means "the family of the socket the query came in on".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Want {
    /// `n4`: IPv4 nodes, in `nodes`.
    pub n4: bool,
    /// `n6`: IPv6 nodes, in `nodes6`.
    pub n6: bool,
}

/// A KRPC query (`y` = `q`), by method (BEP 5). Every query carries the querier's `id`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Query {
    /// `ping`: is the node alive? Answered with its id.
    Ping {
        /// The querier's node id.
        id: NodeId,
    },
    /// `find_node`: the nodes closest to `target` the queried node knows.
    FindNode {
        /// The querier's node id.
        id: NodeId,
        /// The id looked for.
        target: NodeId,
        /// BEP 32 `want`.
        want: Want,
    },
    /// `get_peers`: peers of the torrent `info_hash`, or else the closest nodes, and a token.
    GetPeers {
        /// The querier's node id.
        id: NodeId,
        /// The torrent's info hash.
        info_hash: InfoHash,
        /// BEP 32 `want`.
        want: Want,
    },
    /// `announce_peer`: the querier is a peer of `info_hash` on `port`.
    AnnouncePeer {
        /// The querier's node id.
        id: NodeId,
        /// The torrent's info hash.
        info_hash: InfoHash,
        /// The querier's peer port (ignored by the receiver when `implied_port`).
        port: u16,
        /// `implied_port` nonzero: use the UDP source port of the query instead of `port`.
        implied_port: bool,
        /// The token the queried node gave in its `get_peers` response.
        token: Token,
    },
    /// A method bt does not know (BEP 5: answer with error 204, "Method Unknown"). Encoding a
    /// known method's name here gives a message that decodes as that method (or not at all).
    Unknown {
        /// The method name (`q`).
        method: Method,
        /// The querier's node id.
        id: NodeId,
    },
}

impl Query {
    /// The querier's node id.
    pub fn id(&self) -> NodeId {
        match self {
            Query::Ping { id }
            | Query::FindNode { id, .. }
            | Query::GetPeers { id, .. }
            | Query::AnnouncePeer { id, .. }
            | Query::Unknown { id, .. } => *id,
        }
    }

    /// The method name (`q`).
    pub fn method(&self) -> &[u8] {
        match self {
            Query::Ping { .. } => b"ping",
            Query::FindNode { .. } => b"find_node",
            Query::GetPeers { .. } => b"get_peers",
            Query::AnnouncePeer { .. } => b"announce_peer",
            Query::Unknown { method, .. } => method.as_bytes(),
        }
    }
}

/// A KRPC response's return values (`y` = `r`, the `r` dictionary), whatever the query was.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Response {
    /// The responder's node id.
    pub id: NodeId,
    /// `nodes`: IPv4 compact node info, at most [`MAX_NODES`]. Encoding skips entries whose
    /// address is IPv6.
    pub nodes: Vec<CompactNode>,
    /// `nodes6` (BEP 32): IPv6 compact node info, at most [`MAX_NODES`]. Encoding skips entries
    /// whose address is IPv4.
    pub nodes6: Vec<CompactNode>,
    /// `values`: compact peers (6 bytes IPv4, 18 bytes IPv6), at most [`MAX_VALUES`].
    pub values: Vec<SocketAddr>,
    /// `token` (answers to `get_peers`).
    pub token: Option<Token>,
}

/// What a message is: a query, a response or an error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// `y` = `q`.
    Query(Query),
    /// `y` = `r`.
    Response(Response),
    /// `y` = `e`: `e` = `[code, message]` (BEP 5: 201 generic, 202 server, 203 protocol, 204
    /// method unknown).
    Error {
        /// The error code.
        code: i64,
        /// The message (lossily decoded as UTF-8).
        message: String,
    },
}

/// One KRPC message: one datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// `t`: the transaction id.
    pub transaction: TransactionId,
    /// `v`: the sender's client version, if it sent one of at most [`MAX_VERSION_LEN`] bytes.
    pub version: Option<Version>,
    /// `ip` (BEP 42): the receiver's address as the sender saw it (6 or 18 bytes on the wire;
    /// another length is ignored). Responses carry it so a node learns its external address.
    pub ip: Option<SocketAddr>,
    /// `ro` nonzero (BEP 43): the sender is read-only and should not be queried or put in a
    /// routing table.
    pub read_only: bool,
    /// The query, response or error.
    pub body: Body,
}

/// Why a datagram is not a KRPC message bt accepts.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KrpcError {
    /// A KRPC message is one UDP datagram, so at most [`MAX_DATAGRAM_LEN`] bytes.
    #[error("datagram of {len} bytes; at most {max} are accepted")]
    TooLong {
        /// The datagram's length.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// BEP 5: "A KRPC message is a single dictionary"; this is not decodable bencode (or exceeds
    /// [`KRPC_DECODE_LIMITS`]).
    #[error("KRPC message is not valid bencode: {0}")]
    Bencode(#[from] DecodeError),
    /// BEP 5: a KRPC message is a dictionary; this is another bencode value.
    #[error("KRPC message is a {kind}, not a dictionary")]
    NotADict {
        /// The kind of value found.
        kind: &'static str,
    },
    /// BEP 5: "Every message has a key "t" with a string value representing a transaction ID";
    /// it is missing or not a string.
    #[error("KRPC message has no transaction id (t)")]
    MissingTransaction,
    /// BEP 5 `t`: bt accepts transaction ids of at most [`MAX_TRANSACTION_LEN`] bytes.
    #[error("transaction id of {len} bytes; at most {max} are accepted")]
    TransactionTooLong {
        /// The id's length.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// BEP 5: "Every message also has a key "y" with a single character value"; it is missing or
    /// not a string.
    #[error("KRPC message has no message type (y)")]
    MissingType,
    /// BEP 5: `y` is `q`, `r` or `e`; it is something else.
    #[error("KRPC message type (y) is not q, r or e")]
    UnknownType,
    /// BEP 5: a query has "q" with the method name; it is missing or not a string.
    #[error("KRPC query has no method name (q)")]
    MissingMethod,
    /// BEP 5 `q`: bt accepts unknown method names of at most [`MAX_METHOD_LEN`] bytes.
    #[error("query method name of {len} bytes; at most {max} are accepted")]
    MethodTooLong {
        /// The name's length.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// BEP 5: a query has "a" with a dictionary of named arguments; it is missing or not a
    /// dictionary.
    #[error("KRPC query has no arguments dictionary (a)")]
    MissingArguments,
    /// BEP 5: a response has "r" with a dictionary of return values; it is missing or not a
    /// dictionary.
    #[error("KRPC response has no return values dictionary (r)")]
    MissingReturnValues,
    /// BEP 5: an error has "e", a list of an integer code and a string message; it is missing or
    /// not so.
    #[error("KRPC error has no [code, message] list (e)")]
    MalformedError,
    /// BEP 5: a required argument or return value (`id`, `target`, `info_hash`, `port`, `token`)
    /// is missing or has the wrong type.
    #[error("KRPC message lacks the required key {key}")]
    MissingKey {
        /// The key.
        key: &'static str,
    },
    /// BEP 5: node ids, targets and info hashes are 20-byte strings; this one is not.
    #[error("{key} is {len} bytes, not 20")]
    BadHashLength {
        /// The key (`id`, `target` or `info_hash`).
        key: &'static str,
        /// Its length.
        len: usize,
    },
    /// BEP 5 `announce_peer`: `port` is a TCP port; this integer is outside 0..=65535.
    #[error("announce_peer port {port} is not a port number")]
    BadPort {
        /// The integer sent.
        port: i64,
    },
    /// BEP 5 `token`: bt accepts tokens of at most [`MAX_TOKEN_LEN`] bytes.
    #[error("token of {len} bytes; at most {max} are accepted")]
    TokenTooLong {
        /// The token's length.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// BEP 5 (`nodes`, 26 bytes per node) and BEP 32 (`nodes6`, 38 bytes per node): the string's
    /// length is not a multiple of the node size.
    #[error("{key} is {len} bytes, not a multiple of {node_len}")]
    BadNodesLength {
        /// The key (`nodes` or `nodes6`).
        key: &'static str,
        /// The string's length.
        len: usize,
        /// The size of one compact node.
        node_len: usize,
    },
}

const V4_NODE_LEN: usize = 26;
const V6_NODE_LEN: usize = 38;

impl Message {
    /// Decodes one datagram.
    pub fn decode(datagram: &[u8]) -> Result<Message, KrpcError> {
        if datagram.len() > MAX_DATAGRAM_LEN {
            return Err(KrpcError::TooLong {
                len: datagram.len(),
                max: MAX_DATAGRAM_LEN,
            });
        }
        let decoded = decode(datagram, KRPC_DECODE_LIMITS)?;
        let Value::Dict(dict) = &decoded.value else {
            return Err(KrpcError::NotADict {
                kind: decoded.value.kind(),
            });
        };
        let t = bytes(dict, b"t").ok_or(KrpcError::MissingTransaction)?;
        let transaction = TransactionId::new(t).ok_or(KrpcError::TransactionTooLong {
            len: t.len(),
            max: MAX_TRANSACTION_LEN,
        })?;
        let version = bytes(dict, b"v").and_then(Version::new);
        let read_only = int(dict, b"ro").is_some_and(|ro| ro != 0);
        let ip = bytes(dict, b"ip").and_then(compact_addr);
        let body = match bytes(dict, b"y").ok_or(KrpcError::MissingType)? {
            b"q" => Body::Query(decode_query(dict)?),
            b"r" => Body::Response(decode_response(dict)?),
            b"e" => decode_error(dict)?,
            _ => return Err(KrpcError::UnknownType),
        };
        Ok(Message {
            transaction,
            version,
            ip,
            read_only,
            body,
        })
    }

    /// The datagram: canonical bencode (keys sorted), absent options and false flags left out.
    pub fn encode(&self) -> Vec<u8> {
        let mut dict = Dict::new();
        dict.insert(&b"t"[..], Value::bytes(self.transaction.as_bytes()));
        if let Some(version) = &self.version {
            dict.insert(&b"v"[..], Value::bytes(version.as_bytes()));
        }
        if let Some(ip) = &self.ip {
            let mut b = Vec::with_capacity(18);
            push_compact_addr(&mut b, ip);
            dict.insert(&b"ip"[..], Value::owned_bytes(b));
        }
        if self.read_only {
            dict.insert(&b"ro"[..], Value::Int(1));
        }
        match &self.body {
            Body::Query(query) => {
                dict.insert(&b"y"[..], Value::bytes(b"q"));
                dict.insert(&b"q"[..], Value::bytes(query.method()));
                dict.insert(&b"a"[..], Value::Dict(encode_query(query)));
            }
            Body::Response(response) => {
                dict.insert(&b"y"[..], Value::bytes(b"r"));
                dict.insert(&b"r"[..], Value::Dict(encode_response(response)));
            }
            Body::Error { code, message } => {
                dict.insert(&b"y"[..], Value::bytes(b"e"));
                dict.insert(
                    &b"e"[..],
                    Value::List(vec![Value::Int(*code), Value::bytes(message.as_bytes())]),
                );
            }
        }
        encode(&Value::Dict(dict))
            .expect("a depth-3 dictionary is within the encoder's depth bound")
    }
}

fn bytes<'d>(dict: &'d Dict<'_>, key: &[u8]) -> Option<&'d [u8]> {
    dict.get(key).and_then(Value::as_bytes)
}

fn int(dict: &Dict<'_>, key: &[u8]) -> Option<i64> {
    dict.get(key).and_then(Value::as_int)
}

/// A required 20-byte string.
fn hash(dict: &Dict<'_>, key: &'static str) -> Result<[u8; 20], KrpcError> {
    let b = bytes(dict, key.as_bytes()).ok_or(KrpcError::MissingKey { key })?;
    <[u8; 20]>::try_from(b).map_err(|_| KrpcError::BadHashLength { key, len: b.len() })
}

fn decode_want(args: &Dict<'_>) -> Want {
    let mut want = Want::default();
    for family in args.get(b"want").and_then(Value::as_list).unwrap_or(&[]) {
        match family.as_bytes() {
            Some(b"n4") => want.n4 = true,
            Some(b"n6") => want.n6 = true,
            _ => {}
        }
    }
    want
}

fn decode_query(dict: &Dict<'_>) -> Result<Query, KrpcError> {
    let method = bytes(dict, b"q").ok_or(KrpcError::MissingMethod)?;
    let args = dict
        .get(b"a")
        .and_then(Value::as_dict)
        .ok_or(KrpcError::MissingArguments)?;
    let id = NodeId(hash(args, "id")?);
    Ok(match method {
        b"ping" => Query::Ping { id },
        b"find_node" => Query::FindNode {
            id,
            target: NodeId(hash(args, "target")?),
            want: decode_want(args),
        },
        b"get_peers" => Query::GetPeers {
            id,
            info_hash: InfoHash(hash(args, "info_hash")?),
            want: decode_want(args),
        },
        b"announce_peer" => {
            let info_hash = InfoHash(hash(args, "info_hash")?);
            let port = int(args, b"port").ok_or(KrpcError::MissingKey { key: "port" })?;
            let port = u16::try_from(port).map_err(|_| KrpcError::BadPort { port })?;
            let token = bytes(args, b"token").ok_or(KrpcError::MissingKey { key: "token" })?;
            Query::AnnouncePeer {
                id,
                info_hash,
                port,
                implied_port: int(args, b"implied_port").is_some_and(|i| i != 0),
                token: Token::new(token).ok_or(KrpcError::TokenTooLong {
                    len: token.len(),
                    max: MAX_TOKEN_LEN,
                })?,
            }
        }
        other => Query::Unknown {
            method: Method::new(other).ok_or(KrpcError::MethodTooLong {
                len: other.len(),
                max: MAX_METHOD_LEN,
            })?,
            id,
        },
    })
}

fn decode_nodes(
    r: &Dict<'_>,
    key: &'static str,
    node_len: usize,
) -> Result<Vec<CompactNode>, KrpcError> {
    let Some(b) = bytes(r, key.as_bytes()) else {
        return Ok(Vec::new());
    };
    if b.len() % node_len != 0 {
        return Err(KrpcError::BadNodesLength {
            key,
            len: b.len(),
            node_len,
        });
    }
    Ok(b.chunks_exact(node_len)
        .take(MAX_NODES)
        .map(|chunk| {
            let (id, addr) = chunk.split_at(20);
            CompactNode {
                id: NodeId(id.try_into().expect("the chunk holds 20 id bytes")),
                addr: compact_addr(addr).expect("the rest is 6 or 18 bytes"),
            }
        })
        .collect())
}

/// A compact address: 4 or 16 address bytes, then the port, both in network byte order.
fn compact_addr(b: &[u8]) -> Option<SocketAddr> {
    let port = |p: &[u8]| u16::from_be_bytes([p[0], p[1]]);
    match b.len() {
        6 => {
            let ip: [u8; 4] = b[..4].try_into().ok()?;
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(ip),
                port(&b[4..]),
            )))
        }
        18 => {
            let ip: [u8; 16] = b[..16].try_into().ok()?;
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(ip),
                port(&b[16..]),
                0,
                0,
            )))
        }
        _ => None,
    }
}

fn push_compact_addr(out: &mut Vec<u8>, addr: &SocketAddr) {
    match addr.ip() {
        IpAddr::V4(ip) => out.extend_from_slice(&ip.octets()),
        IpAddr::V6(ip) => out.extend_from_slice(&ip.octets()),
    }
    out.extend_from_slice(&addr.port().to_be_bytes());
}

fn decode_response(dict: &Dict<'_>) -> Result<Response, KrpcError> {
    let r = dict
        .get(b"r")
        .and_then(Value::as_dict)
        .ok_or(KrpcError::MissingReturnValues)?;
    let token = match bytes(r, b"token") {
        Some(t) => Some(Token::new(t).ok_or(KrpcError::TokenTooLong {
            len: t.len(),
            max: MAX_TOKEN_LEN,
        })?),
        None => None,
    };
    Ok(Response {
        id: NodeId(hash(r, "id")?),
        nodes: decode_nodes(r, "nodes", V4_NODE_LEN)?,
        nodes6: decode_nodes(r, "nodes6", V6_NODE_LEN)?,
        values: r
            .get(b"values")
            .and_then(Value::as_list)
            .unwrap_or(&[])
            .iter()
            .filter_map(|peer| peer.as_bytes().and_then(compact_addr))
            .take(MAX_VALUES)
            .collect(),
        token,
    })
}

fn decode_error(dict: &Dict<'_>) -> Result<Body, KrpcError> {
    let e = dict
        .get(b"e")
        .and_then(Value::as_list)
        .ok_or(KrpcError::MalformedError)?;
    match e {
        [code, message, ..] => match (code.as_int(), message.as_bytes()) {
            (Some(code), Some(message)) => Ok(Body::Error {
                code,
                message: String::from_utf8_lossy(message).into_owned(),
            }),
            _ => Err(KrpcError::MalformedError),
        },
        _ => Err(KrpcError::MalformedError),
    }
}

fn encode_want(args: &mut Dict<'_>, want: Want) {
    let mut list = Vec::new();
    if want.n4 {
        list.push(Value::bytes(b"n4"));
    }
    if want.n6 {
        list.push(Value::bytes(b"n6"));
    }
    if !list.is_empty() {
        args.insert(&b"want"[..], Value::List(list));
    }
}

fn encode_query(query: &Query) -> Dict<'_> {
    let mut args = Dict::new();
    let id = query.id();
    args.insert(&b"id"[..], Value::owned_bytes(id.0.to_vec()));
    match query {
        Query::Ping { .. } | Query::Unknown { .. } => {}
        Query::FindNode { target, want, .. } => {
            args.insert(&b"target"[..], Value::bytes(&target.0));
            encode_want(&mut args, *want);
        }
        Query::GetPeers {
            info_hash, want, ..
        } => {
            args.insert(&b"info_hash"[..], Value::bytes(&info_hash.0));
            encode_want(&mut args, *want);
        }
        Query::AnnouncePeer {
            info_hash,
            port,
            implied_port,
            token,
            ..
        } => {
            args.insert(&b"info_hash"[..], Value::bytes(&info_hash.0));
            args.insert(&b"port"[..], Value::Int(i64::from(*port)));
            if *implied_port {
                args.insert(&b"implied_port"[..], Value::Int(1));
            }
            args.insert(&b"token"[..], Value::bytes(token.as_bytes()));
        }
    }
    args
}

fn encode_nodes(nodes: &[CompactNode], v6: bool) -> Option<Value<'static>> {
    let mut out = Vec::new();
    for node in nodes.iter().filter(|n| n.addr.is_ipv6() == v6) {
        out.extend_from_slice(&node.id.0);
        push_compact_addr(&mut out, &node.addr);
    }
    (!out.is_empty()).then(|| Value::owned_bytes(out))
}

fn encode_response(response: &Response) -> Dict<'_> {
    let mut r = Dict::new();
    r.insert(&b"id"[..], Value::bytes(&response.id.0));
    if let Some(nodes) = encode_nodes(&response.nodes, false) {
        r.insert(&b"nodes"[..], nodes);
    }
    if let Some(nodes6) = encode_nodes(&response.nodes6, true) {
        r.insert(&b"nodes6"[..], nodes6);
    }
    if !response.values.is_empty() {
        let values = response
            .values
            .iter()
            .map(|peer| {
                let mut b = Vec::with_capacity(18);
                push_compact_addr(&mut b, peer);
                Value::owned_bytes(b)
            })
            .collect();
        r.insert(&b"values"[..], Value::List(values));
    }
    if let Some(token) = &response.token {
        r.insert(&b"token"[..], Value::bytes(token.as_bytes()));
    }
    r
}
