//! The DHT's bootstrap nodes on the turmoil engine: each a host of its own (`dhtN`) running a
//! bare protocol [`Dht`] over a turmoil UDP socket, with no torrent. The peers run the runtime's
//! own DHT node (`Driver::start_dht`), started from these nodes' `ip:port`.
//!
//! The loop: drain the machine's datagrams to the socket, then wait (`biased;`) for a datagram
//! (`handle_datagram`) or the machine's deadline (`handle_timeout`). Its id comes from the
//! node's seed, so a run is a function of the scenario's seed. Each datagram it receives is a
//! trace record (the node, the length), in turmoil's fixed order.
//!
//! Bounds: a datagram read is at most [`bt_runtime::dht::MAX_DATAGRAM`] bytes; the machine
//! bounds its own state and its send queue.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bt_protocol::dht::{Dht, DhtConfig, NodeId};
use bt_protocol::rng::Rng;
use bt_protocol::time::Instant;
use bt_runtime::dht::MAX_DATAGRAM;

use super::peer::{Shared, sim_now};
use crate::trace::Kind;

/// The port bootstrap nodes listen on (the peers' DHT port too).
pub(super) const DHT_PORT: u16 = super::peer::PORT;

/// The turmoil host name of bootstrap node `index`.
pub(super) fn boot_name(index: u32) -> String {
    format!("dht{index}")
}

/// Bootstrap node `index`, knowing the other nodes `others`, until its host stops.
pub(super) async fn boot_node(
    index: u32,
    others: Vec<SocketAddr>,
    seed: u64,
    shared: Arc<Shared>,
) -> ::turmoil::Result {
    // Turmoil binds only the unspecified address (the host's own).
    let any = SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, DHT_PORT));
    let socket = ::turmoil::net::UdpSocket::bind(any).await?;
    let mut rng = Rng::new(seed);
    let mut id = [0u8; 20];
    rng.fill(&mut id);
    let mut dht = Dht::new(DhtConfig::default(), NodeId(id), rng.fork(0x0064_6874));
    let now = sim_now();
    for addr in others {
        dht.add_node(now, addr);
    }
    dht.bootstrap(now);
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let mut sent = 0;
        while let Some(t) = dht.poll_transmit() {
            // A failed send is a lost datagram, as UDP goes.
            if socket.send_to(&t.bytes, t.to).await.is_ok() {
                sent += 1;
            }
        }
        while dht.poll_event().is_some() {}
        shared.lock().dht_boot_datagrams += sent;
        let wait = dht.poll_timeout().map_or(Duration::from_secs(3600), |at| {
            Duration::from_micros(at.as_micros().saturating_sub(sim_now().as_micros()))
        });
        tokio::select! {
            biased;
            got = socket.recv_from(&mut buf) => {
                let now = sim_now();
                if let Ok((n, from)) = got {
                    record(&shared, index, n, now);
                    dht.handle_datagram(now, from, &buf[..n]);
                }
            }
            () = tokio::time::sleep(wait) => dht.handle_timeout(sim_now()),
        }
    }
}

/// A datagram of `len` bytes reached bootstrap node `index`.
fn record(shared: &Shared, index: u32, len: usize, now: Instant) {
    let mut s = shared.lock();
    s.trace.at(now.as_micros());
    s.trace
        .record(Kind::DhtBootReceived, &[u64::from(index), len as u64]);
}
