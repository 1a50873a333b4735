//! The driver's DHT node (BEP 5): the protocol's sans-IO [`Dht`] on the client's UDP socket.
//!
//! The node itself, and when it bootstraps and announces which torrent, are the protocol
//! client's (`bt_protocol::client::Client`, the simulator runs the same); its datagrams travel
//! through the client's UDP socket (`runtime/src/udp.rs`), shared with uTP. The node starts
//! from the routing table a previous run saved ([`DhtSetup::saved`], see [`encode_state`]) and
//! from the bootstrap nodes, resolved by name in a task of their own ([`spawn_resolver`]) so a
//! slow resolver does not hold up the start.
//!
//! A node bound to an IPv6 address (dual-stack on `[::]`) keeps IPv6 nodes as well (BEP 32); IPv4
//! senders seen as IPv4-mapped addresses are taken as IPv4. A magnet whose metadata turns out
//! private stops its node (BEP 27).
//!
//! Bounds: the socket's (see `runtime/src/udp.rs`); the machine bounds its own state (routing
//! table, transactions, lookups, peer store).

use std::net::SocketAddr;

use bt_protocol::dht::{Dht, DhtConfig, DhtStateError, NodeId, load_state, save_state};
use bt_protocol::rng::Rng;
use bt_protocol::time::Instant;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::net::Net;

/// The longest KRPC datagram a node reads (KRPC messages are far shorter; BEP 5 nodes keep to
/// one MTU).
pub const MAX_DATAGRAM: usize = 2048;

pub use bt_protocol::dht::{EMPTY_LOOKUP_RETRY, REANNOUNCE, REBOOTSTRAP};

/// The public routers a node with no saved table starts from (what libtorrent, Transmission and
/// qBittorrent use).
pub const DEFAULT_BOOTSTRAP: &[&str] = &[
    "router.bittorrent.com:6881",
    "dht.transmissionbt.com:6881",
    "router.utorrent.com:6881",
    "dht.libtorrent.org:25401",
];

/// How to start a driver's DHT node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DhtSetup {
    /// Where to bind the UDP socket (port 0 picks one; bt uses its TCP listening port). Unused
    /// when the client's UDP socket is open already (uTP on: it opened with the listener).
    pub bind: SocketAddr,
    /// Nodes to start from, `host:port` each.
    pub bootstrap: Vec<String>,
    /// A routing table saved by an earlier run ([`encode_state`]), if any.
    pub saved: Option<Vec<u8>>,
}

/// A routing table to save between runs: our node id and the nodes we know.
pub fn encode_state(dht: &Dht) -> Vec<u8> {
    save_state(dht.id(), &dht.nodes())
}

/// The node a driver starts: the id of the routing table `saved` by an earlier run
/// ([`encode_state`]) with each of its nodes pinged, or a random id and no nodes when there is
/// no table or it cannot be read (then with the error, which the driver reports as
/// [`DhtReport::BadState`]). `ipv6` keeps IPv6 nodes as well (a node on an IPv6 socket, BEP 32).
pub fn restore_node(
    saved: Option<&[u8]>,
    ipv6: bool,
    now: Instant,
    rng: &mut Rng,
) -> (Dht, Option<DhtStateError>) {
    let (saved_id, saved_nodes, error) = match saved.map(load_state) {
        Some(Ok((id, nodes))) => (Some(id), nodes, None),
        Some(Err(e)) => (None, Vec::new(), Some(e)),
        None => (None, Vec::new(), None),
    };
    let id = saved_id.unwrap_or_else(|| {
        let mut id = [0u8; 20];
        rng.fill(&mut id);
        NodeId(id)
    });
    let config = DhtConfig {
        ipv6,
        ..DhtConfig::default()
    };
    let mut dht = Dht::new(config, id, rng.fork(0x0064_6874));
    for (_, addr) in saved_nodes {
        dht.add_node(now, addr);
    }
    (dht, error)
}

/// What the DHT tells the driver's caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DhtReport {
    /// The node listens on this UDP address.
    Listening(SocketAddr),
    /// A saved routing table could not be read (it is ignored).
    BadState(String),
    /// A bootstrap name did not resolve.
    BootstrapFailed {
        /// The `host:port` given.
        node: String,
        /// Why.
        error: String,
    },
    /// The routing table has nodes: lookups can start.
    Bootstrapped {
        /// Nodes in the table.
        nodes: usize,
    },
    /// The node stopped (a magnet's metadata showed a private torrent).
    Stopped(String),
    /// An announce (its lookup) finished.
    Announced {
        /// Peers it found in all.
        peers: usize,
        /// Nodes that took our announce.
        announced: usize,
        /// Nodes in the table now.
        nodes: usize,
    },
}

/// The bootstrap names resolved (those that did), handed to the driver.
pub(crate) struct Resolved {
    /// Their addresses.
    pub(crate) addrs: Vec<SocketAddr>,
    /// Names that failed, with why.
    pub(crate) failed: Vec<(String, String)>,
}

/// Resolves the bootstrap `names` in a task of its own (a slow resolver does not hold up the
/// start); the answer goes to `to_driver`, wrapped by `wrap`. The task ends with its answer.
pub(crate) fn spawn_resolver<N: Net, I: Send + 'static>(
    net: &N,
    names: Vec<String>,
    to_driver: mpsc::Sender<I>,
    wrap: fn(Resolved) -> I,
) -> JoinHandle<()> {
    let resolver = net.clone();
    tokio::spawn(async move {
        let mut addrs = Vec::new();
        let mut failed = Vec::new();
        for name in names {
            match resolve(&resolver, &name).await {
                Ok(found) => addrs.extend(found),
                Err(e) => failed.push((name, e)),
            }
        }
        let _ = to_driver.send(wrap(Resolved { addrs, failed })).await;
    })
}

/// Resolves `host:port` (an IP literal needs no resolver).
async fn resolve<N: Net>(net: &N, node: &str) -> Result<Vec<SocketAddr>, String> {
    if let Ok(addr) = node.parse::<SocketAddr>() {
        return Ok(vec![addr]);
    }
    let (host, port) = node
        .rsplit_once(':')
        .ok_or_else(|| "not HOST:PORT".to_owned())?;
    let port: u16 = port.parse().map_err(|_| format!("bad port `{port}`"))?;
    net.resolve(host.to_owned(), port)
        .await
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_table_restores_its_id_and_pings_its_nodes() {
        // Proves a restored node keeps the saved id and pings each saved node, and an unreadable
        // table gives a fresh id, no nodes and the error to report.
        let nodes: Vec<(NodeId, SocketAddr)> = vec![
            (NodeId([1; 20]), "10.0.0.1:6881".parse().unwrap()),
            (NodeId([2; 20]), "10.0.0.2:6882".parse().unwrap()),
        ];
        let saved = save_state(NodeId([9; 20]), &nodes);
        let mut rng = Rng::new(3);
        let (mut dht, error) = restore_node(Some(&saved), false, Instant::ZERO, &mut rng);
        assert_eq!((dht.id(), error), (NodeId([9; 20]), None));
        let mut pinged = Vec::new();
        while let Some(t) = dht.poll_transmit() {
            pinged.push(t.to);
        }
        assert_eq!(pinged, [nodes[0].1, nodes[1].1]);

        let (mut dht, error) = restore_node(Some(b"garbage"), false, Instant::ZERO, &mut rng);
        assert!(error.is_some());
        assert_ne!(dht.id(), NodeId([9; 20]));
        assert!(dht.poll_transmit().is_none());
    }
}
