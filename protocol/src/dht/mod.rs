//! The mainline DHT (BEP 5, with BEP 32 for IPv6), sans-IO.
//!
//! - [`krpc`]: the KRPC datagrams nodes exchange (queries, responses, errors).
//! - [`routing`]: the [`RoutingTable`] of k-buckets, with BEP 5 node liveness.
//! - [`token`]: the [`TokenSecrets`] behind `get_peers` write tokens.
//! - [`lookup`]: one iterative [`Lookup`] (`find_node`, `get_peers`).
//! - [`storage`]: the [`PeerStore`] of peers announced to us.
//! - [`node`]: the [`Dht`] node machine that ties them together.
//! - [`state`]: [`save_state`] and [`load_state`], the node's id and nodes between runs.
//!
//! Every structure here is bounded; the bounds are named in each module's header.

pub mod krpc;
pub mod lookup;
pub mod node;
pub mod routing;
pub mod schedule;
pub mod state;
pub mod storage;
pub mod token;

#[cfg(test)]
mod krpc_tests;
#[cfg(test)]
mod lookup_tests;
#[cfg(test)]
mod node_tests;
#[cfg(test)]
mod routing_tests;
#[cfg(test)]
mod state_tests;
#[cfg(test)]
mod swarm_tests;
#[cfg(test)]
mod token_tests;

pub use krpc::{
    Body, BoundedBytes, CompactNode, KRPC_DECODE_LIMITS, KrpcError, MAX_DATAGRAM_LEN,
    MAX_METHOD_LEN, MAX_NODES, MAX_TOKEN_LEN, MAX_TRANSACTION_LEN, MAX_VALUES, MAX_VERSION_LEN,
    Message, Method, NodeId, Query, Response, Token, TransactionId, Version, Want,
};
pub use lookup::{Candidate, CandidateState, Lookup, MAX_CANDIDATES, MAX_LOOKUP_PEERS};
pub use node::{
    BOOTSTRAP_RETRY, Dht, DhtConfig, DhtEvent, ERROR_METHOD_UNKNOWN, ERROR_PROTOCOL, LookupId,
    MAINTENANCE_INTERVAL, MAX_ANSWER_LEN, MAX_BOOTSTRAP_ADDRS, Transmit,
};
pub use routing::{
    GOOD_WINDOW, Insertion, MAX_BUCKETS, MAX_FAILURES, NodeEntry, NodeStatus, REPLACEMENT_CACHE,
    RoutingTable,
};
pub use schedule::{
    DhtSchedule, EMPTY_LOOKUP_RETRY, REANNOUNCE, REBOOTSTRAP, ScheduleEvent, TorrentDht,
    TorrentDhtEvent,
};
pub use state::{DhtStateError, MAX_SAVED_NODES, MAX_STATE_LEN, load_state, save_state};
pub use storage::{PeerStore, PeerStoreConfig};
pub use token::{TOKEN_LEN, TOKEN_ROTATION, TokenSecrets};
